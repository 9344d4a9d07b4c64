import pytest

from hessbench.metrics import answer_errors, cost_to_eps, time_to_eps
from hessbench.records import CostToEps, Reference
from hessbench.solvers.result import TraceRow

REF = Reference(lambda_max=10.0, lambda_min=-1.0, method="exact")


def row(i, lmax, lmin):
    return TraceRow(step=i, seconds=0.5 * i, data_passes=float(i), hvp_calls=i,
                    lambda_max=lmax, lambda_min=lmin)


def test_time_to_eps_is_reached_and_stayed():
    trace = [row(1, 9.0, None), row(2, 9.95, -0.5), row(3, 10.5, -0.995), row(4, 9.99, -0.999),
             row(5, 10.0, -1.0)]
    assert time_to_eps(trace, REF, 0.01, "max").data_passes == 4  # left at step 3
    assert time_to_eps(trace, REF, 0.1, "max").data_passes == 1
    assert time_to_eps(trace, REF, 0.01, "min").data_passes == 3
    both = time_to_eps(trace, REF, 0.01)
    assert both == CostToEps("both", 0.01, data_passes=4.0, seconds=2.0, hvp_calls=4)
    assert both.reached
    never = time_to_eps(trace[:3], REF, 0.01)
    assert not never.reached and never.seconds is None and never.hvp_calls is None
    costs = cost_to_eps(trace, REF)
    assert [(c.end, c.eps) for c in costs] == [(e, eps) for eps in (0.1, 0.01)
                                              for e in ("max", "min", "both")]
    assert costs[-1] == both


def test_errors_relative_and_scaled():
    e = answer_errors(9.0, -0.5, REF)
    assert e.rel_error_max == pytest.approx(0.1)
    assert e.rel_error_min == pytest.approx(0.5)
    assert e.scaled_error_min == pytest.approx(0.05)
    assert e.relative("min") == e.rel_error_min
    assert answer_errors(None, None, REF).rel_error_max is None
