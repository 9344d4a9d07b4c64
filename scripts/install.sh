#!/usr/bin/env bash
# Install hessbench with its test, benchmark (asv) and report (matplotlib) dependencies into the
# current Python environment. torch is installed first, pinned by constraints.txt (the CPU build
# on this machine); every later install keeps that pin.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip install --quiet --disable-pip-version-check -c constraints.txt torch
$PY -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,bench,report]"
# the JAX backend (a CPU jaxlib; on a GPU install the jax[cuda12] build you want); the
# constraints keep torch pinned
$PY -m pip install --quiet --disable-pip-version-check -c constraints.txt jax jaxlib
