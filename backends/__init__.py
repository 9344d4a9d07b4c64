"""HVP operators: the Hessian of a mean loss over N samples as a linear operator on flat vectors.

Every backend subclasses :class:`hessbench.backends.base.HVPOperator`, which validates shapes, checks
that each HVP is finite and charges every HVP to a :class:`hessbench.backends.base.CostMeter`.
Backends import lazily: ``import hessbench.backends.torch`` or ``import hessbench.backends.jax``.
"""

from hessbench.backends.base import CostMeter, HVPOperator, NonFiniteHVPError

__all__ = ["BACKENDS", "CostMeter", "HVPOperator", "NonFiniteHVPError"]

#: the backends every problem builds its operator on (``Problem.operator(backend)``)
BACKENDS = ("torch", "jax")
