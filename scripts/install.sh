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
# the peer libraries of hessbench[peers] (PyHessian, hessian-eigenthings, curvlinops; see the
# README, "The tools users run today"), pinned as in pyproject.toml. Installed with --no-deps:
# backpack-for-pytorch (curvlinops' dependency) requires torchvision, which would replace the
# pinned CPU torch; what these packages really import is installed next (no torch among them).
TORCH_BEFORE=$($PY -c "import torch; print(torch.__version__)")
$PY -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps \
    pyhessian==0.1 hessian-eigenthings==1.0.0a5 curvlinops-for-pytorch==3.0.1 \
    backpack-for-pytorch==1.7.1 linear_operator==0.6.1 einconv==0.1.0 unfoldNd==0.2.3
$PY -m pip install --quiet --disable-pip-version-check -c constraints.txt \
    "einops>=0.3" "opt-einsum>=3.4" packaging
TORCH_AFTER=$($PY -c "import torch; print(torch.__version__)")
if [ "$TORCH_BEFORE" != "$TORCH_AFTER" ]; then
    echo "install.sh: torch changed from $TORCH_BEFORE to $TORCH_AFTER while installing the peers" >&2
    exit 1
fi
