#!/bin/bash
# Idempotent set-up: system packages (apt) and the project venv at .venv/.
# Run as root (apt-get, and the FUSE/mount-namespace integration needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="fuse3 libfuse3-3 ndctl daxctl jq uuid-runtime umockdev util-linux python3-venv keyutils libtracefs1 libtraceevent1"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing packages:$missing (run as root to install them)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "setup: installing system packages:$missing (apt)"
    log=$(mktemp -t cxlsys-apt.XXXX)
    if ! { apt-get update -qq && apt-get install -y -qq $missing; } >"$log" 2>&1; then
        tail -n 25 "$log" >&2
        echo "setup: apt-get failed (whole log: $log)" >&2
        exit 1
    fi
    rm -f "$log"
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import cxlsys, mfusepy, rich, pyfakefs, pytest, attrs, ruff, mypy" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
    # quiet on success (pip's index warnings and setuptools' editable-install banner are noise
    # there), the log's tail and its path on failure
    echo "setup: installing the project into .venv (pip; log in .venv/pip.log)"
    .venv/bin/pip install -q --upgrade pip >.venv/pip.log 2>&1 || true
    if ! .venv/bin/pip install -q -e '.[dev]' >>.venv/pip.log 2>&1; then
        tail -n 25 .venv/pip.log >&2
        echo "setup: pip install failed (whole log: .venv/pip.log)" >&2
        exit 1
    fi
    touch .venv/.installed
fi
# bytecode for the project's own modules, written once here: with PYTHONDONTWRITEBYTECODE set (as
# in many CI images) every run would compile them again (~0.3 s of each `cxlsys` start)
.venv/bin/python -m compileall -q cxlsys fuse_mount tools >/dev/null
echo "setup: ok ($(.venv/bin/python --version), cxl $(cxl version 2>/dev/null || echo missing))"
