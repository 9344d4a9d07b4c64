#!/usr/bin/env bash
# Install hessbench and its test dependencies into the current Python environment.
# torch is installed first, pinned by constraints.txt (the CPU build on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip install --quiet --disable-pip-version-check -c constraints.txt torch
$PY -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
