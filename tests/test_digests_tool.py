"""benchmarks/digests.py without its runs: comparison, the other-CPU warning, stored files, the base worktree."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


tools = _load("digest_tools")
digests = _load("digests")

HERE = {
    "cpu_model": "Intel(R) Xeon(R) Processor",
    "machine": "x86_64",
    "cpu_capability": "AVX512",
    "torch": "2.13.0+cpu",
    "python": "3.11.7",
    "threads": 1,
}


# --- comparison ----------------------------------------------------------------------------------------------


def test_identical_digests_are_no_difference() -> None:
    runs = {"a": {"rounds.csv": "1", "clients.csv": "2"}, "b": {"rounds.csv": "3"}}
    result = tools.compare(tools.Recorded(runs), tools.Recorded(json.loads(json.dumps(runs))), "x.json")
    assert (result.files, result.different, result.not_comparable) == (3, [], {})
    assert result.summary() == "no difference(s) in 3 files"


def test_a_changed_or_missing_file_is_a_difference_naming_run_and_file() -> None:
    got = tools.Recorded({"a": {"rounds.csv": "1", "clients.csv": "2"}, "b": {"rounds.csv": "3"}})
    want = tools.Recorded({"a": {"rounds.csv": "1", "clients.csv": "9"}, "b": {"rounds.csv": "3", "events.csv": "4"}})
    result = tools.compare(got, want, "x.json")
    # a: rounds, clients; b: rounds, events (stored only) -> 4 files, 2 differ
    assert result.files == 4
    assert result.different == [("a", "clients.csv"), ("b", "events.csv")]
    assert result.summary() == "2 difference(s) in 4 files (runs: a, b)"


def test_a_run_the_base_refused_or_never_recorded_is_not_comparable() -> None:
    got = tools.Recorded({"a": {"rounds.csv": "1"}, "new": {"rounds.csv": "2"}, "old": {"rounds.csv": "3"}})
    want = tools.Recorded({"old": {"rounds.csv": "other"}}, {"new": "the base refused it (unknown key)"})
    result = tools.compare(got, want, "x.json")
    assert result.different == [("old", "rounds.csv")]
    assert result.not_comparable == {"a": "not recorded in x.json", "new": "the base refused it (unknown key)"}
    assert result.summary().endswith("; 2 run(s) not comparable: a, new")


# --- the other-CPU warning -----------------------------------------------------------------------------------


def test_no_warning_on_the_same_cpu() -> None:
    assert tools.cpu_warning(dict(HERE), HERE, "d.json", ["t1"]) is None


def test_another_cpu_model_is_one_line_naming_both_and_the_timing_only_runs() -> None:
    stored = {**HERE, "cpu_model": "AMD EPYC 7B13"}
    line = tools.cpu_warning(stored, HERE, "d.json", ["city-timing", "seq-timing"])
    assert line is not None and "\n" not in line
    assert "'AMD EPYC 7B13'" in line and "'Intel(R) Xeon(R) Processor'" in line
    assert "training runs' digests may then differ for that reason alone" in line
    assert line.endswith("timing-only runs must match on any CPU: city-timing, seq-timing")


def test_another_kernel_set_on_the_same_model_warns_too() -> None:
    line = tools.cpu_warning({**HERE, "cpu_capability": "AVX2"}, HERE, "d.json", ["t"])
    assert line is not None and "'AVX2'" in line and "CPU model" not in line


def test_a_file_without_machine_facts_warns() -> None:
    line = tools.cpu_warning({}, HERE, "old.json", ["t"])
    assert line is not None and "does not say on which CPU" in line


def test_the_timing_only_runs_are_those_that_train_nothing() -> None:
    assert digests.timing_only() == [
        "city-1000-timing",
        "churn-deadline-battery-timing",
        "battery-timing-sequential",
        "sequential-arrival-timing",
        "sequential-round_robin-timing",
        "quickstart-timing-turns",
    ]


def test_other_software_or_runs_warn_separately() -> None:
    assert tools.list_warning(dict(HERE), HERE, "L", "d.json") is None
    line = tools.list_warning({**HERE, "torch": "2.3.0", "run_list": "old"}, HERE, "L", "d.json")
    assert line is not None and "'2.3.0'" in line and "run list" in line


# --- stored files --------------------------------------------------------------------------------------------


def test_the_older_bare_format_loads_without_facts(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"a": {"rounds.csv": "1"}}))
    rec = tools.load_recorded(path)
    assert (rec.runs, rec.not_comparable, rec.facts) == ({"a": {"rounds.csv": "1"}}, {}, {})


def test_a_stored_file_round_trips(tmp_path: Path) -> None:
    rec = tools.Recorded({"a": {"rounds.csv": "1"}}, {"b": "refused"}, {"commit": "c"}).with_facts(HERE, "L")
    path = tmp_path / "d.json"
    path.write_text(json.dumps(rec.to_json()))
    assert tools.load_recorded(path) == rec
    assert rec.facts["cpu_model"] == HERE["cpu_model"] and rec.facts["run_list"] == "L"


@pytest.mark.parametrize(
    "text, key",
    [("{", "not JSON"), ('{"format": 7, "runs": {}}', "'format'"), ('{"format": 2, "runs": {"a": [1]}}', "'runs'")],
)
def test_a_damaged_stored_file_is_refused_by_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "d.json"
    path.write_text(text)
    with pytest.raises(tools.BadInput, match=key):
        tools.load_recorded(path)


def test_base_digests_are_reused_only_from_the_same_commit_machine_and_runs(tmp_path: Path) -> None:
    path = tmp_path / "base.json"
    rec = tools.Recorded({"a": {"rounds.csv": "1"}}, {"b": "refused"}, {"commit": "c1", "dirty": False})
    path.write_text(json.dumps(rec.with_facts(HERE, "L").to_json()))
    assert tools.reusable(path, "c1", HERE, "L", ["a", "b"]) is not None
    assert tools.reusable(path, "c2", HERE, "L", ["a"]) is None  # another commit
    assert tools.reusable(path, "c1", {**HERE, "cpu_model": "other"}, "L", ["a"]) is None
    assert tools.reusable(path, "c1", {**HERE, "torch": "2.3.0"}, "L", ["a"]) is None
    assert tools.reusable(path, "c1", HERE, "L2", ["a"]) is None  # the run list changed
    assert tools.reusable(path, "c1", HERE, "L", ["a", "z"]) is None  # z never recorded
    assert tools.reusable(tmp_path / "absent.json", "c1", HERE, "L", ["a"]) is None


# --- the base worktree ---------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture()
def tiny_repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository of two commits; returns it and the first commit's hash."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f.txt").write_text("first\n")
    _git(repo, "add", "f.txt")
    _git(repo, "commit", "-q", "-m", "one")
    first = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "f.txt").write_text("second\n")
    _git(repo, "commit", "-q", "-am", "two")
    return repo, first


def _worktrees(repo: Path) -> int:
    return _git(repo, "worktree", "list", "--porcelain").count("worktree ")


def test_the_base_worktree_holds_the_commit_and_is_removed_after(tiny_repo: tuple[Path, str], tmp_path: Path) -> None:
    repo, first = tiny_repo
    assert tools.resolve_commit(repo, first[:7]) == first
    with tools.base_worktree(repo, first, tmp_path) as tree:
        assert (tree / "f.txt").read_text() == "first\n"
        assert _worktrees(repo) == 2
        (tree / "left_by_a_run.txt").write_text("x")  # untracked files do not stop the removal
    assert not tree.exists() and _worktrees(repo) == 1
    assert (repo / "f.txt").read_text() == "second\n"


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_the_base_worktree_is_removed_when_interrupted(
    tiny_repo: tuple[Path, str], tmp_path: Path, error: type[BaseException]
) -> None:
    repo, first = tiny_repo
    with pytest.raises(error):
        with tools.base_worktree(repo, first, tmp_path) as tree:
            raise error()
    assert not tree.exists() and _worktrees(repo) == 1


def test_an_unknown_base_commit_is_bad_input(tiny_repo: tuple[Path, str]) -> None:
    repo, _ = tiny_repo
    with pytest.raises(tools.BadInput, match="'nope' is not a commit"):
        tools.resolve_commit(repo, "nope")


def test_the_tree_commit_says_whether_the_tree_differs(tiny_repo: tuple[Path, str]) -> None:
    repo, _ = tiny_repo
    assert tools.tree_commit(repo) == {"commit": _git(repo, "rev-parse", "HEAD").strip(), "dirty": False}
    (repo / "new.py").write_text("")
    assert tools.tree_commit(repo)["dirty"] is True


# --- the command line (refused before any run) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--base", "HEAD", "--check", "x.json"], "--base and --check"),
        (["--only", "no-such-run"], "--only: no run named no-such-run"),
        (["--jobs", "0"], "--jobs"),
    ],
)
def test_bad_command_lines_are_one_error_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert digests.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_damaged_check_file_is_refused_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.json"
    path.write_text("not json")
    assert digests.main(["--check", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path}: not JSON")


@pytest.mark.benchmark
def test_the_stored_digests_hold_for_this_tree() -> None:
    """The 20 real runs (minutes): the stored digests, recorded on this machine, match the current tree."""
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "digests.py"),
            "--check",
            str(REPO / "benchmarks" / "digests.json"),
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1].startswith("no difference(s) in ")
