"""Wall-clock time of a full solve, of one HVP and of one ``matmat``; peak memory of an HVP.

Timed code ends with the operator's ``synchronize()`` (CUDA) and waits for JAX arrays
(``block_until_ready``), so asynchronous devices are timed honestly. Operators are built and
warmed up in ``setup`` by ``op.warm_up`` (one product, and one block of each width the timed
code multiplies: a block solver's ``block_size``, the ``matmat`` k), as ``hessbench run`` does;
checkpoints are trained/loaded once in ``setup_cache``.
"""

from __future__ import annotations

import numpy as np

from . import common


def _prepare() -> bool:
    common.prepare_problems()
    return True


_prepare.timeout = 3600  # first run: trains the networks (cached in HESSBENCH_CACHE)


class Solve:
    """One full solve (both ends, tol 1e-3, at most 300 data passes), seed 0."""

    params = (common.BACKENDS, common.PROBLEMS, common.SOLVERS)
    param_names = ("backend", "problem", "solver")
    setup_cache = staticmethod(_prepare)
    timeout = 900
    number = 1            # one solve per sample
    repeat = (3, 10, 60.0)  # 3 to 10 samples, stop adding after 60 s
    warmup_time = 0       # setup already warmed the operator up
    rounds = 1

    def setup(self, _ready: bool, backend: str, problem: str, solver: str) -> None:
        from hessbench import solvers
        from hessbench.runner import warm_up_blocks

        self.solver = solvers.get(solver, tol=common.TOL)
        self.op = common.operator(backend, problem, warm_up_blocks(self.solver))
        self.budget = solvers.Budget(**common.BUDGET)

    def time_solve(self, _ready: bool, backend: str, problem: str, solver: str) -> None:
        result = self.solver.solve(self.op, which="both", seed=common.TIMED_SEED,
                                   budget=self.budget)
        self.op.synchronize()
        if result.status == "failed":
            raise RuntimeError(f"{solver} failed on {problem}: {result.message}")


class HVP:
    """One full-data Hessian-vector product (N samples, one data pass)."""

    params = (common.BACKENDS, common.PROBLEMS)
    param_names = ("backend", "problem")
    setup_cache = staticmethod(_prepare)
    timeout = 600
    warmup_time = 0.5

    def setup(self, _ready: bool, backend: str, problem: str) -> None:
        self.op = common.operator(backend, problem)
        self.v = self.op.random_vector(np.random.default_rng(1))

    def time_hvp(self, _ready: bool, backend: str, problem: str) -> None:
        common.block(self.op.matvec(self.v))
        self.op.synchronize()

    def peakmem_hvp(self, _ready: bool, backend: str, problem: str) -> None:
        # asv reports the peak resident set size of the whole benchmark process
        # (interpreter, framework and data included), after setup and one HVP.
        common.block(self.op.matvec(self.v))
        self.op.synchronize()


class Matmat:
    """One full-data product with a block of k vectors (``op.matmat``, k data passes)."""

    params = (common.BACKENDS, common.PROBLEMS, [4, 16])
    param_names = ("backend", "problem", "k")
    setup_cache = staticmethod(_prepare)
    timeout = 600
    warmup_time = 0.5

    def setup(self, _ready: bool, backend: str, problem: str, k: int) -> None:
        self.op = common.operator(backend, problem, (k,))  # warms up the batched path
        rng = np.random.default_rng(2)
        self.V = self.op.asarray(rng.standard_normal((self.op.size, k)))

    def time_matmat(self, _ready: bool, backend: str, problem: str, k: int) -> None:
        common.block(self.op.matmat(self.V))
        self.op.synchronize()
