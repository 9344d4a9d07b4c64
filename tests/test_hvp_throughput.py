"""scripts/hvp_throughput.py on quadratic-small: every operator (torch, the JAX variants) timed
in the same rounds, and each product checked against torch's float64 product."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("jax")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "hvp_throughput.py"


def test_variants_are_timed_and_agree_with_float64(tmp_path, capsys, one_torch_thread, _cache):
    spec = importlib.util.spec_from_file_location("hvp_throughput", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "t.json"
    assert script.main(["--problems", "quadratic-small", "--repeats", "2", "--warmup", "0",
                        "--torch-threads", "1", "--jax-variants", "auto/NHWC",
                        "forward-over-reverse/NCHW", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["backend"] for r in results] == ["torch", "jax", "jax:forward-over-reverse/NCHW"]
    for r in results:  # float32 products of the same vector, against torch's float64 one
        assert r["relative_error_vs_float64"] < 1e-5 and r["samples_per_second"] > 0
    assert "jax:forward-over-reverse/NCHW" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main(["--problems", "quadratic-small", "--jax-variants", "linearized"])
