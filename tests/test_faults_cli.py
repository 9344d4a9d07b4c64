"""Issue 11, rows 3, 7, 8 and 10: user errors are refused before any work, in one line
(``error: ...``, exit status 2) that names the problem; output paths that must not be replaced
are left alone; listings are whole; a closed pipe ends quietly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hessbench.reference
import hessbench.runner
from hessbench import backends, solvers
from hessbench.cli import main, summary_line
from hessbench.problems.base import Problem
from hessbench.problems.nets import NetProblem
from hessbench.problems.quadratic import QuadraticProblem
from hessbench.seeds import SeedError, parse_seeds
from hessbench.solvers.base import Solver
from hessbench.registry import OptionError, accepts
from hessbench.validate import check_grid

RUN = ["run", "-p", "quadratic-small", "-s", "lanczos", "-q"]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if any training, reference, operator or solve starts."""
    def started(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(hessbench.runner, "compute_reference", started)
    monkeypatch.setattr(hessbench.reference, "compute_reference", started)
    for cls, name in ((Problem, "operator"), (NetProblem, "trained_model"),
                      (NetProblem, "torch_parts"), (QuadraticProblem, "torch_parts"),
                      (Solver, "solve")):
        monkeypatch.setattr(cls, name, started)


def fails(argv, capsys):
    """main(argv)'s exit status and its stderr; stdout must be empty."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert out == ""
    return code, err


# -- row 3: late validation -----------------------------------------------------------------
def test_output_in_an_unwritable_place_is_refused_before_the_run(tmp_path, capsys, no_work):
    blocker = tmp_path / "somefile"
    blocker.write_text("a file, not a folder")
    out = blocker / "out.json"
    assert fails([*RUN, "-o", str(out)], capsys) == (
        2, f"error: cannot write '{out}': '{blocker}' is a file, not a folder; choose another "
           "output path\n")
    assert blocker.read_text() == "a file, not a folder"


def test_output_in_a_read_only_folder_is_refused_before_the_run(tmp_path, capsys, no_work):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: permissions do not stop writing (see the file test)")
        code, err = fails([*RUN, "-o", str(folder / "out.json")], capsys)
    finally:
        folder.chmod(0o755)
    assert code == 2 and err == (f"error: cannot write in the folder '{folder}' (Permission "
                                 "denied); choose a writable place or fix its permissions\n")
    assert list(folder.iterdir()) == []


def test_unknown_backend_is_refused_before_training(tmp_path, capsys, no_work):
    argv = ["run", "-p", "digits-cnn", "-s", "lanczos", "--backend", "tf", "-o",
            str(tmp_path / "r.json"), "-q"]
    assert fails(argv, capsys) == (
        2, f"error: unknown backend 'tf'; available: {', '.join(backends.available())}\n")
    assert not (tmp_path / "r.json").exists()


def _missing_cuda_device() -> tuple[str, str]:
    """A CUDA device this machine lacks and the error line it gets."""
    if not torch.cuda.is_available():
        why = (f"this PyTorch ({torch.__version__}) was built without CUDA"
               if not torch.backends.cuda.is_built() else
               "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
        return "cuda", (f"error: device 'cuda' is not available: {why}; use --device cpu or "
                        "leave --device out\n")
    n = torch.cuda.device_count()
    return f"cuda:{n}", (f"error: device 'cuda:{n}' does not exist: this machine has {n} CUDA "
                         f"device(s), cuda:0 to cuda:{n - 1}\n")


def test_missing_cuda_device_is_refused_before_training(tmp_path, capsys, no_work):
    device, line = _missing_cuda_device()
    argv = ["run", "-p", "digits-cnn", "-s", "lanczos", "--device", device, "-o",
            str(tmp_path / "r.json"), "-q"]
    assert fails(argv, capsys) == (2, line)  # was an AssertionError after training
    assert not (tmp_path / "r.json").exists()


def test_demo_checks_every_name_before_the_first_reference(tmp_path, capsys, no_work):
    argv = ["demo", "--problems", "digits-cnn", "--solvers", "lanczos", "nope", "-o",
            str(tmp_path / "demo"), "-q"]
    assert fails(argv, capsys) == (
        2, f"error: unknown solver 'nope'; available: {', '.join(solvers.available())}\n")
    assert not (tmp_path / "demo").exists()


# -- row 7: one line instead of a traceback ------------------------------------------------
@pytest.mark.parametrize("argv, line", [
    (["-s", "lanczos", "--solver-option", "nonexistent=3"],
     "error: solver 'lanczos' has no option 'nonexistent'; its options: tol=0.001, "
     "max_steps=500"),
    (["-s", "lanczos", "--solver-option", "max_steps=abc"],
     "error: solver 'lanczos': option max_steps must be int, got 'abc' (str); e.g. "
     "max_steps=500"),
    (["-s", "arpack", "--solver-option", "ncv=2.5"],
     "error: solver 'arpack': option ncv must be int | None, got 2.5 (float)"),
    (["-s", "lanczos", "--solver-option", "max_steps"],
     "error: --solver-option 'max_steps' is not of the form KEY=VALUE (see the options that "
     "hessbench problems / hessbench solvers list)"),
    (["-s", "lanczos", "--tol", "2"], "error: solver 'lanczos': tol must be in (0, 1), got 2.0"),
    (["-s", "lanczos", "--max-passes", "-1"],
     "error: bad budget: budget max_passes must be positive, got -1.0"),
], ids=["unknown-option", "wrong-type", "optional-int", "no-equals", "tol", "budget"])
def test_bad_solver_settings_are_one_line(argv, line, tmp_path, capsys, no_work):
    out = tmp_path / "r.json"
    assert fails(["run", "-p", "quadratic-small", *argv, "-o", str(out), "-q"], capsys) == (
        2, line + "\n")
    assert not out.exists()


def test_an_int_is_accepted_where_a_float_is_expected():
    assert solvers.get("oja", eta0=1).eta0 == 1
    assert accepts(3, "float") and accepts(None, "int | None") and accepts((1, None),
                                                                           "Sequence[int | None]")
    assert not accepts(True, "int") and not accepts(1, "bool") and not accepts("1", "float")


def test_a_bad_problem_option_is_one_line(tmp_path, capsys, no_work):
    argv = ["run", "-p", "synthetic-cifar-resnet20", "-s", "lanczos", "--problem-option",
            "subset=abc", "-o", str(tmp_path / "r.json"), "-q"]
    assert fails(argv, capsys) == (
        2, "error: problem 'synthetic-cifar-resnet20': option subset must be int, got 'abc' "
           "(str); e.g. subset=256\n")
    argv[6] = "download=1"  # a bool option
    argv[2] = "cifar10-resnet20"
    assert fails(argv, capsys) == (
        2, "error: problem 'cifar10-resnet20': option download must be bool, got 1 (int); e.g. "
           "download=False\n")


def test_a_missing_optional_dependency_names_the_extra(monkeypatch, tmp_path, capsys, no_work):
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax -> ModuleNotFoundError
    for name in ("hessbench.jax_models", "hessbench.backends.jax"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    argv = [*RUN, "--backend", "jax", "-o", str(tmp_path / "r.json")]
    assert fails(argv, capsys) == (
        2, "error: backend 'jax' needs the Python package 'jax', which is not installed: "
           "pip install 'hessbench[jax]'\n")


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, capsys, no_work):
    code = main(["--debug", *RUN, "--solver-option", "nonexistent=3", "-o",
                 str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("Traceback (most recent call last):")
    assert "OptionError" in err and err.endswith(
        "error: solver 'lanczos' has no option 'nonexistent'; its options: tol=0.001, "
        "max_steps=500\n")


def test_an_internal_error_keeps_its_traceback(monkeypatch):
    import hessbench.cli

    def bug(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(hessbench.cli, "cmd_solvers", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["solvers"])


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hessbench.runner, "run_one", interrupted)
    out = tmp_path / "r.json"
    assert fails([*RUN, "-o", str(out)], capsys) == (
        130, f"interrupted: nothing was written to {out}\n")
    assert not out.exists()


# -- row 8: outputs that must not be replaced ---------------------------------------------
def test_output_at_a_symlink_is_refused_and_the_link_kept(tmp_path, capsys, no_work):
    target = tmp_path / "target.json"
    target.write_text("keep me")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert fails([*RUN, "-o", str(link)], capsys) == (
        2, f"error: {link} is a symbolic link (to {target}); hessbench replaces its output "
           "files and will not replace a link: give the real path or another file name\n")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "keep me"


def test_output_at_a_device_is_refused(capsys, no_work):
    assert fails([*RUN, "-o", os.devnull], capsys) == (
        2, f"error: {os.devnull} is not a regular file; hessbench writes a new file there by "
           "replacing it: give a file name that is new or a regular file\n")
    assert Path(os.devnull).is_char_device()


# -- row 10: seeds, listings, a closed pipe ------------------------------------------------
@pytest.mark.parametrize("seeds, line", [
    ("5-0", "error: bad seeds '5-0': the range '5-0' is empty; write it from low to high, "
            "e.g. 0-5"),
    ("0,1,1", "error: bad seeds '0,1,1': seed(s) 1 given more than once: give each seed once "
              "(each would be counted as another seed)"),
    ("0-2,x", "error: bad seeds '0-2,x': 'x' is neither a seed nor a range; use non-negative "
              "integers, e.g. 0-4 or 0,2,5"),
], ids=["empty-range", "duplicate", "syntax"])
def test_bad_seed_lists_name_the_text(seeds, line, tmp_path, capsys, no_work):
    out = tmp_path / "cmp"
    argv = ["compare", "--problems", "quadratic-small", "--solvers", "lanczos", "--seeds", seeds,
            "-o", str(out), "-q"]
    assert fails(argv, capsys) == (2, line + "\n")
    assert not out.exists()  # was: 0 runs, or "No such file .../summary.json"


def test_seed_lists_and_grids_parse_and_check():
    assert parse_seeds("0-2, 5") == [0, 1, 2, 5] and parse_seeds("7") == [7]
    with pytest.raises(SeedError, match=r"^seed\(s\) 0 given more than once"):
        check_grid(["quadratic-small"], ["lanczos"], [0, 0])
    with pytest.raises(OptionError, match="option max_steps must be int"):
        check_grid(["quadratic-small"], ["lanczos", "power"], [0],
                   solver_options={"max_steps": "many"})


def test_a_negative_seed_names_the_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*RUN, "--seed", "-5", "-o", "r.json"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "hessbench run: error: argument --seed: must be a non-negative integer (0, 1, 2, ...), "
        "got '-5'")


def test_solvers_lists_whole_summaries_and_options(capsys):
    assert main(["solvers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        f"{'lanczos':26s} Full-reorthogonalisation Lanczos on full-data HVPs (one data pass per "
        "step).",
        f"{'':26s} options: tol=0.001, max_steps=500",
        f"{'power':26s} Shifted power iteration (lambda_min via c I - H).",
        f"{'':26s} options: tol=0.001, max_steps=1000"]
    # was cut mid-sentence: "Momentum power iteration. Options: ``tol``, ``batch_size`` (None..."
    assert f"{'momentum-power':26s} Momentum power iteration." in lines
    assert len(lines) == 2 * len(solvers.available())
    assert all(line.rstrip().endswith(".") for line in lines[::2])
    assert not any(mark in line for line in lines for mark in ("``", ":class:", ":func:"))


def test_summary_line_drops_markup_and_keeps_the_first_sentence():
    doc = """Uses :class:`~hessbench.solvers.Budget` and ``tol``, e.g. 1e-3. Options: ``x``.

    More text."""
    assert summary_line(doc) == "Uses Budget and tol, e.g. 1e-3."
    assert summary_line(None) == ""


def test_a_closed_pipe_ends_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before hessbench writes (like `| head -1` exiting)
    try:
        proc = subprocess.run([sys.executable, "-m", "hessbench.cli", "solvers"],
                              stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert proc.stderr.decode() == "" and proc.returncode == 1  # was a BrokenPipeError traceback
