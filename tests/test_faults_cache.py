"""Faults in the on-disk cache (issue 11, rows 4 and 6): corrupt, edited, legacy and
concurrently built checkpoints and references are detected, moved aside and rebuilt (or sealed),
never used silently nor left stuck. Every test uses its own temporary cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import hessbench.reference as reference
from hessbench.cache import FILES_KEY, HASH_KEY, file_sha256, plain, tensor_digest, values_sha256
from hessbench.files import CacheWarning, atomic_write, move_aside
from hessbench.problems.nets import NetProblem
from hessbench.training import Recipe


def _tiny_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))


def _tiny_data(config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(40, 4, generator=gen, dtype=torch.float64),
            torch.randint(0, 3, (40,), generator=gen))


def tiny_problem() -> NetProblem:
    """A 51-parameter MLP on 40 random samples: trains in ms, dense reference in ms."""
    return NetProblem(name="tiny-net", description="tiny test net", dtype="float64",
                      config=dict(kind="net", version=1, model="tiny", seed=0),
                      make_model=_tiny_model, load_data=_tiny_data, batch_size=40,
                      recipe=Recipe(steps=30, lr=1e-2, optimizer="adam", dtype="float64"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HESSBENCH_CACHE", str(tmp_path))
    return tmp_path


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _one(folder: Path, pattern: str) -> Path:
    (path,) = folder.glob(pattern)
    return path


def _strip_hashes(json_path: Path) -> None:
    """Make an entry legacy (as written before hashes existed)."""
    json_path.write_text(json.dumps(plain(json.loads(json_path.read_text())), indent=1))


def _no_temporaries(folder: Path) -> None:
    assert not list(folder.rglob("*.tmp")), list(folder.rglob("*.tmp"))


def _pair_consistent(json_path: Path, data_path: Path) -> None:
    record = json.loads(json_path.read_text())
    assert record[FILES_KEY] == {data_path.name: file_sha256(data_path)}
    assert record[HASH_KEY] == values_sha256(record)


# -- checkpoints ---------------------------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True], ids=["sealed", "legacy"])
def test_truncated_checkpoint_is_named_moved_aside_and_retrained(cache, legacy):
    clean = _weights(tiny_problem().trained_model(progress=False)[0])
    pt = _one(cache / "checkpoints", "*.pt")
    if legacy:
        _strip_hashes(pt.with_suffix(".json"))
    pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    why = "unreadable checkpoint" if legacy else "its sha256 .* differs from .* \\(truncated"
    name = re.escape(pt.name)
    with pytest.warns(CacheWarning, match=f"{name}: {why}.*moved aside to {name}"
                                          r"\.corrupt-\d+(-\d+)? and rebuilding"):
        model, info = tiny_problem().trained_model(progress=False)
    assert len(list(pt.parent.glob(f"{pt.name}.corrupt-*"))) == 1
    rebuilt = _weights(model)
    assert rebuilt.keys() == clean.keys()
    assert all(torch.equal(rebuilt[k], clean[k]) for k in clean)
    _pair_consistent(pt.with_suffix(".json"), pt)
    assert "final_loss" in info and HASH_KEY not in info


def test_checkpoint_missing_its_pt_is_named_moved_aside_and_retrained(cache):
    clean = _weights(tiny_problem().trained_model(progress=False)[0])
    pt = _one(cache / "checkpoints", "*.pt")
    pt.unlink()
    info = pt.with_suffix(".json")
    with pytest.warns(CacheWarning, match=f"{re.escape(info.name)}: its data file "
                                          f"{re.escape(pt.name)} is missing"):
        model, _ = tiny_problem().trained_model(progress=False)
    assert all(torch.equal(model.state_dict()[k], clean[k]) for k in clean)
    _pair_consistent(info, pt)


def test_legacy_checkpoint_is_sealed_not_retrained(cache, monkeypatch):
    clean = _weights(tiny_problem().trained_model(progress=False)[0])
    pt = _one(cache / "checkpoints", "*.pt")
    _strip_hashes(pt.with_suffix(".json"))
    before = pt.read_bytes()
    monkeypatch.setattr("hessbench.problems.nets.train", _must_not_run)
    model, _ = tiny_problem().trained_model(progress=False)
    assert all(torch.equal(model.state_dict()[k], clean[k]) for k in clean)
    assert pt.read_bytes() == before
    _pair_consistent(pt.with_suffix(".json"), pt)


def _must_not_run(*args, **kwargs):
    raise AssertionError("the cached entry was rebuilt")


# -- references ----------------------------------------------------------------------------------
@pytest.fixture
def dense_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = reference._dense

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(reference, "_dense", counting)
    return calls


def test_reference_json_brace_is_named_moved_aside_and_rebuilt(cache, dense_calls):
    truth = reference.compute_reference(tiny_problem(), progress=False)
    path = _one(cache / "references", "*-dense.json")
    path.write_text("{")
    name = re.escape(path.name)
    with pytest.warns(CacheWarning, match=f"{name}: invalid JSON .*moved aside to "
                                          rf"{name}\.corrupt-\d+(-\d+)? and rebuilding"):
        again = reference.compute_reference(tiny_problem(), progress=False)
    assert len(dense_calls) == 2
    assert again["lambda_min"] == truth["lambda_min"]
    _pair_consistent(path, _one(cache / "references", "*-vectors.npz"))


def test_truncated_reference_vectors_are_moved_aside_and_rebuilt(cache, dense_calls):
    truth = reference.compute_reference(tiny_problem(), progress=False)
    npz = _one(cache / "references", "*-vectors.npz")
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.warns(CacheWarning, match=f"{re.escape(npz.name)}: its sha256 .* differs"):
        again = reference.compute_reference(tiny_problem(), progress=False)
    assert len(dense_calls) == 2 and again["lambda_max"] == truth["lambda_max"]


@pytest.mark.parametrize("how, caught_by", [
    ("edited", "its values do not match their entry_sha256"),  # hash left stale
    ("resealed", "lambda_min=.* does not verify against its stored vector"),  # hash redone
    ("legacy", "lambda_min=.* does not verify against its stored vector"),  # no hashes
])
def test_wrong_lambda_min_is_detected_and_recomputed(cache, dense_calls, how, caught_by):
    truth = reference.compute_reference(tiny_problem(), progress=False)
    path = _one(cache / "references", "*-dense.json")
    record = json.loads(path.read_text())
    wrong = truth["lambda_min"] + 0.05 * (truth["lambda_max"] - truth["lambda_min"])
    record["lambda_min"] = wrong  # valid: a number between the true ends
    if how == "resealed":
        record[HASH_KEY] = values_sha256(record)
    elif how == "legacy":
        record = plain(record)
    path.write_text(json.dumps(record, indent=1))
    with pytest.warns(CacheWarning, match=f"{re.escape(path.name)}: {caught_by}"):
        again = reference.compute_reference(tiny_problem(), progress=False)
    assert len(dense_calls) == 2
    assert again["lambda_min"] == pytest.approx(truth["lambda_min"], rel=1e-12)
    assert again["lambda_min"] != pytest.approx(wrong, rel=1e-3)
    assert json.loads(path.read_text())["lambda_min"] == again["lambda_min"]


def test_legacy_reference_is_verified_and_sealed_not_recomputed(cache, dense_calls, recwarn):
    truth = reference.compute_reference(tiny_problem(), progress=False)
    path = _one(cache / "references", "*-dense.json")
    npz = _one(cache / "references", "*-vectors.npz")
    _strip_hashes(path)
    vectors = npz.read_bytes()
    assert reference.compute_reference(tiny_problem(), progress=False) == truth
    assert len(dense_calls) == 1 and not [w for w in recwarn if w.category is CacheWarning]
    assert npz.read_bytes() == vectors
    _pair_consistent(path, npz)


def test_reference_verification_tolerance_is_relative_to_the_spectrum(cache):
    ref = reference.compute_reference(tiny_problem(), progress=False)
    parts = tiny_problem().torch_parts(progress=False)
    from hessbench.problems.base import torch_operator

    op = torch_operator(parts, dtype="float64")
    npz = _one(cache / "references", "*-vectors.npz")
    import numpy as np

    with np.load(npz) as z:
        vectors = {k: z[k] for k in ("max", "min")}
    scale = max(abs(ref["lambda_max"]), abs(ref["lambda_min"]))
    assert reference.verify_reference(ref, vectors, op) is None
    nudged = {**ref, "lambda_min": ref["lambda_min"] + 1e-2 * reference.VERIFY_RTOL * scale}
    assert reference.verify_reference(nudged, vectors, op) is None  # rounding-size: accepted
    off = {**ref, "lambda_min": ref["lambda_min"] + 1e3 * reference.VERIFY_RTOL * scale}
    assert "lambda_min" in reference.verify_reference(off, vectors, op)


# -- atomic writes -------------------------------------------------------------------------------
def test_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "entry.json"
    atomic_write(target, '{"old": 1}')

    def half_then_fail(f):
        f.write(b'{"new": ')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == '{"old": 1}'
    _no_temporaries(tmp_path)


def test_moving_aside_twice_keeps_both_copies(tmp_path):
    target = tmp_path / "entry.json"
    for text in ("first", "second"):
        target.write_text(text)
        with pytest.warns(CacheWarning, match="entry.json: bad; moved aside"):
            move_aside(target, "bad")
    kept = sorted(p.read_text() for p in tmp_path.glob("entry.json.corrupt-*"))
    assert kept == ["first", "second"] and not target.exists()


def test_crash_while_writing_a_reference_leaves_no_entry_and_the_next_run_builds(
        cache, monkeypatch, recwarn):
    import hessbench.files as files

    real_fsync, synced = files.os.fsync, []

    def fsync_fails_on_the_json(fd):  # the vectors file syncs, then the disk is full
        synced.append(fd)
        if len(synced) == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    tiny_problem().trained_model(progress=False)  # the checkpoint first, untouched
    monkeypatch.setattr(files.os, "fsync", fsync_fails_on_the_json)
    with pytest.raises(OSError, match="No space left"):
        reference.compute_reference(tiny_problem(), progress=False)
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert not list((cache / "references").glob("*.json"))  # no half-written commit point
    _no_temporaries(cache)
    ref = reference.compute_reference(tiny_problem(), progress=False)
    assert ref["method"] == "dense"
    assert not [w for w in recwarn if w.category is CacheWarning]


# -- concurrent builders -------------------------------------------------------------------------
BUILDER = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
import hessbench.problems.nets as nets
from hessbench.cache import tensor_digest
from test_faults_cache import tiny_problem

trained = []
real_train = nets.train
def slow_train(*args, **kwargs):  # widen the window in which both would build
    trained.append(1)
    time.sleep(1.0)
    return real_train(*args, **kwargs)
nets.train = slow_train

folder = Path({folder!r})
(folder / f"ready-{{sys.argv[1]}}").touch()
deadline = time.monotonic() + 60
while len(list(folder.glob("ready-*"))) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
model, info = tiny_problem().trained_model(progress=False)
print(json.dumps({{"trained": len(trained), "digest": tensor_digest(model.state_dict())}}))
"""


def test_concurrent_builders_of_one_checkpoint_both_succeed_with_a_consistent_pair(cache):
    script = cache / "builder.py"
    script.write_text(textwrap.dedent(BUILDER.format(tests=str(Path(__file__).parent),
                                                     folder=str(cache))))
    env = {**os.environ, "HESSBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(i)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-2000:]
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            p.kill()
    assert sorted(o["trained"] for o in outs) == [0, 1]  # the first built, the other loaded
    assert outs[0]["digest"] == outs[1]["digest"]
    pt = _one(cache / "checkpoints", "*.pt")
    _pair_consistent(pt.with_suffix(".json"), pt)
    saved = torch.load(pt, weights_only=True)  # float64; trained_model hands out float32
    assert tensor_digest({k: v.float() for k, v in saved.items()}) == outs[0]["digest"]
    _no_temporaries(cache)
