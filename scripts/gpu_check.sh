#!/usr/bin/env bash
# hessbench GPU check: one JSON file of results in at most 8 minutes on one GPU.
#
#   bash scripts/gpu_check.sh                        # writes gpu_check.json, prints a summary
#   bash scripts/gpu_check.sh --out h200.json        # another file name
#   bash scripts/gpu_check.sh --total-seconds 900    # more time: the sections' caps grow with it
#   bash scripts/gpu_check.sh --only lanczos-resnet18 precision-resnet18
#   bash scripts/gpu_check.sh --dry-run --out x.json # tiny sizes on the CPU (1-2 minutes)
#
# What it measures (details: the docstring of scripts/gpu_check.py): both backends' CUDA
# products against float64 on the CPU (TF32 verified off), gradient vs Hessian-vector product
# vs matmat per vector for ResNet-20 and ResNet-18 (batch 512, eager and compiled), one float32
# lanczos solve of both ends on ResNet-18 over 50,000 synthetic CIFAR-shaped samples (the GPU
# goal: both ends within 1% in under 60 s), bf16 and TF32 solves, and with several visible GPUs
# the distributed solve (torchrun, one process per GPU). Weights are random (seeded), data
# synthetic: nothing is downloaded, nothing is trained.
#
# What the machine needs: Python >= 3.10 with CUDA builds of torch and JAX (recent versions
# are fine; this project pins others for its CPU tests), numpy, scipy, scikit-learn, tqdm and
# filelock (a dependency of torch). The script installs nothing and reaches no index:
#
#  * array-api-compat (pure Python; missing from the usual GPU images; asv is not needed).
#    Bring its wheel along in wheels/: git-ignored, so copy the folder with the checkout (a
#    git clone does not bring it). On any machine with network, in the checkout:
#
#        python3 -m pip download --no-deps --only-binary=:all: -d wheels/ array-api-compat==1.16.0
#
#    When a package does not import, the script puts wheels/*.whl on PYTHONPATH (a pure-Python
#    wheel imports from its zip file). To install it instead:
#        python3 -m pip install --no-index --no-deps wheels/*.whl
#
#  * hessbench itself. Used as installed when `import hessbench` finds this checkout. Otherwise
#    the script builds a temporary tree of symbolic links that places solvers/ and backends/ at
#    hessbench/solvers and hessbench/backends, as pyproject.toml's package-dir does, and puts it
#    first on PYTHONPATH (a bare PYTHONPATH=. does not work: the folders are mapped); the tree
#    is removed at exit. To install instead (needs setuptools >= 68 in the environment):
#        python3 -m pip install --no-index --no-deps --no-build-isolation -e .
#
# Environment: PYTHON (default python3); GPU_CHECK_WHEELS (default wheels); GPU_CHECK_LINK_TREE=1
# uses the link tree even when hessbench is installed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WHEELS="${GPU_CHECK_WHEELS:-$REPO/wheels}"

# run from / so that the checkout's own hessbench/ folder (cwd) does not shadow the link tree
missing() {  # the modules among "$@" that Python cannot find
    (cd / && "$PYTHON" -c 'import importlib.util as u, sys
print(" ".join(m for m in sys.argv[1:] if u.find_spec(m) is None))' "$@")
}

NEEDED=(numpy scipy sklearn torch tqdm filelock array_api_compat)
lack="$(missing "${NEEDED[@]}")"
if [ -n "$lack" ]; then
    shopt -s nullglob
    for w in "$WHEELS"/*.whl; do PYTHONPATH="$w${PYTHONPATH:+:$PYTHONPATH}"; done
    shopt -u nullglob
    export PYTHONPATH
    still="$(missing $lack)"
    if [ -n "$still" ]; then
        echo "gpu_check: Python ($PYTHON) lacks: $still; no wheel in $WHEELS provides it." >&2
        echo "  array-api-compat, on a machine with network, in this checkout:" >&2
        echo "    python3 -m pip download --no-deps --only-binary=:all: -d wheels/" \
             "array-api-compat==1.16.0" >&2
        exit 2
    fi
    echo "gpu_check: $lack from the wheels in $WHEELS (on PYTHONPATH)"
fi

ours() (  # hessbench (with solvers and backends) imports, from this checkout
    cd / && "$PYTHON" - "$REPO" <<'EOF' >/dev/null 2>&1
import os, sys
import hessbench, hessbench.solvers, hessbench.backends
real = lambda p: os.path.realpath(p)
sys.exit(0 if real(hessbench.__file__).startswith(real(sys.argv[1]) + os.sep) else 1)
EOF
)

LINKS=""
cleanup() { if [ -n "$LINKS" ]; then rm -rf -- "$LINKS"; fi; }
trap cleanup EXIT
if [ "${GPU_CHECK_LINK_TREE:-0}" = 1 ] || ! ours; then
    LINKS="$(mktemp -d "${TMPDIR:-/tmp}/hessbench-links.XXXXXX")"
    mkdir "$LINKS/hessbench"
    for f in "$REPO"/hessbench/*; do
        [ "$(basename "$f")" = __pycache__ ] || ln -s "$f" "$LINKS/hessbench/"
    done
    ln -s "$REPO/solvers" "$LINKS/hessbench/solvers"
    ln -s "$REPO/backends" "$LINKS/hessbench/backends"
    export PYTHONPATH="$LINKS${PYTHONPATH:+:$PYTHONPATH}"
    if ! (cd / && "$PYTHON" -c "import hessbench.solvers, hessbench.backends"); then
        echo "gpu_check: hessbench does not import from the link tree $LINKS" >&2
        exit 2
    fi
    echo "gpu_check: hessbench from this checkout through the link tree $LINKS"
fi

status=0
"$PYTHON" "$REPO/scripts/gpu_check.py" --out gpu_check.json "$@" || status=$?
exit "$status"
