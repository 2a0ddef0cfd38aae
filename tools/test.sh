#!/bin/bash
# README command 2: set up (idempotent), lint (ruff), type-check (mypy), then the whole test suite.
# Extra arguments go to pytest (e.g. tools/test.sh -k region -x).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
echo "lint: ruff check"
.venv/bin/ruff check --quiet .
echo "types: mypy"
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
