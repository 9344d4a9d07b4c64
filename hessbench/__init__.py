"""hessbench: benchmark harness for stochastic eigensolvers of neural-network Hessians.

Packages: ``solvers`` (the eigensolvers), ``backends`` (HVP operators), ``hessbench`` (problems,
references, runner, metrics, CLI).
"""

__version__ = "0.1.0"
