# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# The virtual environment is built from requirements.lock (exact versions with hashes, made by scripts/lock.sh),
# from nothing, whenever the lock or pyproject.toml changes. torch is the CPU build that this project's machines
# keep on disk; on another machine install the torch you need first and then `pip install -e .` (see README).
PY := .venv/bin/python
VENV_OK := .venv/.installed

$(VENV_OK): requirements.lock pyproject.toml
	rm -rf .venv
	python3 -m venv .venv
	.venv/bin/pip install -q --no-deps --require-hashes -r requirements.lock
	.venv/bin/pip install -q --no-deps -e .
	touch $(VENV_OK)

venv: $(VENV_OK)

demo: $(VENV_OK)
	$(PY) cli.py probe --model smollm2-135m-instruct --task capitals --out runs/demo

test: $(VENV_OK)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

lint: $(VENV_OK)
	.venv/bin/ruff check .

.PHONY: venv demo test lint
