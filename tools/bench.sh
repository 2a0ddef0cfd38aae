#!/bin/bash
# The benchmark command (issue 12): sets the project up if needed, then prints every figure with
# its baseline and ratio and writes bench/RESULTS.md.  Arguments go to tools/bench.py (--runs N,
# --only P1,P3, --ndctl NDCTL_GIT_DIR, --results FILE).  Needs root and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || tools/setup.sh
exec .venv/bin/python -m tools.bench "$@"
