#!/usr/bin/env bash
# Creates (or updates) the virtual environment .venv with the pinned
# requirements (the core, every extra, the test, docs and release tools) and
# arsm_jax installed in editable mode. Idempotent. Serves both README
# commands:
#   bash scripts/setup.sh && .venv/bin/python experiments/main.py --config=configs/toy.py --workdir=runs/toy
#   bash scripts/setup.sh && .venv/bin/python -m pytest -q -n auto tests
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt
"$VENV/bin/python" -m pip install -q --no-deps -e .
echo "arsm_jax installed in $VENV"
