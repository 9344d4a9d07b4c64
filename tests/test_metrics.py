import pytest

from hessbench.metrics import errors, time_to_eps

REF = {"lambda_max": 10.0, "lambda_min": -1.0}


def row(i, lmax, lmin):
    return {"step": i, "seconds": 0.5 * i, "data_passes": float(i), "hvp_calls": i,
            "lambda_max": lmax, "lambda_min": lmin}


def test_time_to_eps_is_reached_and_stayed():
    trace = [row(1, 9.0, None), row(2, 9.95, -0.5), row(3, 10.5, -0.995), row(4, 9.99, -0.999),
             row(5, 10.0, -1.0)]
    assert time_to_eps(trace, REF, 0.01, ("max",))["data_passes"] == 4  # left at step 3
    assert time_to_eps(trace, REF, 0.1, ("max",))["data_passes"] == 1
    assert time_to_eps(trace, REF, 0.01, ("min",))["data_passes"] == 3
    both = time_to_eps(trace, REF, 0.01)
    assert both == {"data_passes": 4.0, "seconds": 2.0, "hvp_calls": 4}
    assert time_to_eps(trace[:3], REF, 0.01) is None


def test_errors_relative_and_scaled():
    e = errors({"lambda_max": 9.0, "lambda_min": -0.5}, REF)
    assert e["rel_error_max"] == pytest.approx(0.1)
    assert e["rel_error_min"] == pytest.approx(0.5)
    assert e["scaled_error_min"] == pytest.approx(0.05)
    assert errors({"lambda_max": None, "lambda_min": None}, REF)["rel_error_max"] is None
