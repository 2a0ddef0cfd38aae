#!/bin/bash
# README command 2: set up (idempotent) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
exec .venv/bin/python -m pytest -q "$@"
