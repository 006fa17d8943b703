"""The parts of benchmarks/digests.py that run nothing: stored digests, comparison, machine facts, git worktrees."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BadInput",
    "Recorded",
    "Comparison",
    "compare",
    "load_recorded",
    "reusable",
    "machine_facts",
    "cpu_model",
    "cpu_warning",
    "list_warning",
    "resolve_commit",
    "tree_commit",
    "base_worktree",
]

FORMAT = 2
# What decides the low bits of a training run besides the code: the CPU (its model and the kernel set torch
# dispatches to on it) and the software. A stored file recorded under other values is no evidence about the code.
CPU_FACTS = ("cpu_model", "machine", "cpu_capability")
SOFTWARE_FACTS = ("torch", "python", "threads")
_LABELS = {
    "cpu_model": "CPU model",
    "machine": "architecture",
    "cpu_capability": "torch CPU kernels",
    "torch": "torch",
    "python": "Python",
    "threads": "threads",
}

Digests = dict[str, dict[str, str]]  # run -> result file -> SHA-256


class BadInput(Exception):
    """A bad command line or stored file: reported as one `error:` line, exit status 2."""


@dataclass(frozen=True)
class Recorded:
    """The digests of one tree's runs, the runs that tree refused, and where and from what they were recorded."""

    runs: Digests
    not_comparable: dict[str, str] = field(default_factory=dict)  # run -> why (the tree refused it)
    facts: dict[str, Any] = field(default_factory=dict)  # commit, dirty, CPU_FACTS, SOFTWARE_FACTS, run_list

    def with_facts(self, machine: dict[str, Any], run_list: str) -> Recorded:
        return Recorded(self.runs, self.not_comparable, {**self.facts, **machine, "run_list": run_list})

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "recorded": self.facts, "runs": self.runs, "not_comparable": self.not_comparable}


@dataclass(frozen=True)
class Comparison:
    """What differs between two sets of digests."""

    files: int  # result files compared
    different: list[tuple[str, str]]  # (run, file), a file one side lacks included
    not_comparable: dict[str, str]  # run -> why

    def summary(self) -> str:
        if self.different:
            runs = sorted({run for run, _ in self.different})
            line = f"{len(self.different)} difference(s) in {self.files} files (runs: {', '.join(runs)})"
        else:
            line = f"no difference(s) in {self.files} files"
        if self.not_comparable:
            line += f"; {len(self.not_comparable)} run(s) not comparable: {', '.join(self.not_comparable)}"
        return line


def compare(got: Recorded, want: Recorded, against: str) -> Comparison:
    """Compare `got`'s runs with `want`'s; a run `want` refused or lacks is not comparable, not a difference."""
    different: list[tuple[str, str]] = []
    not_comparable: dict[str, str] = {}
    files = 0
    for run, digests in got.runs.items():
        if run in want.not_comparable:
            not_comparable[run] = want.not_comparable[run]
        elif run not in want.runs:
            not_comparable[run] = f"not recorded in {against}"
        else:
            stored = want.runs[run]
            for name in sorted(set(digests) | set(stored)):
                files += 1
                if digests.get(name) != stored.get(name):
                    different.append((run, name))
    for run, why in got.not_comparable.items():
        not_comparable.setdefault(run, why)
    return Comparison(files, different, not_comparable)


def load_recorded(path: Path) -> Recorded:
    """The digests stored in `path` (this format, or the older bare {run: {file: digest}})."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"{path}: cannot be read ({type(err).__name__})") from err
    except ValueError as err:
        raise BadInput(f"{path}: not JSON ({err})") from err
    if isinstance(doc, dict) and "format" not in doc:
        doc = {"format": FORMAT, "recorded": {}, "runs": doc, "not_comparable": {}}  # recorded before the facts
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BadInput(f"{path}: key 'format': not {FORMAT}, the format this script writes")
    runs, refused, facts = doc.get("runs"), doc.get("not_comparable", {}), doc.get("recorded", {})
    if not (
        isinstance(runs, dict)
        and all(isinstance(d, dict) and all(isinstance(v, str) for v in d.values()) for d in runs.values())
    ):
        raise BadInput(f"{path}: key 'runs': not a mapping of run -> file -> digest")
    if not (isinstance(refused, dict) and all(isinstance(v, str) for v in refused.values())):
        raise BadInput(f"{path}: key 'not_comparable': not a mapping of run -> reason")
    if not isinstance(facts, dict):
        raise BadInput(f"{path}: key 'recorded': not a mapping")
    return Recorded(runs, refused, facts)


def reusable(path: Path, commit: str, machine: dict[str, Any], run_list: str, names: Sequence[str]) -> Recorded | None:
    """The digests in `path` if they are `commit`'s, recorded here with this run list and cover `names`; else None."""
    if not path.is_file():
        return None
    try:
        rec = load_recorded(path)
    except BadInput:
        return None  # recorded again and overwritten
    facts = rec.facts
    same = (
        facts.get("commit") == commit
        and facts.get("dirty") is False
        and facts.get("run_list") == run_list
        and all(facts.get(k) == machine.get(k) for k in CPU_FACTS + SOFTWARE_FACTS)
    )
    covered = all(n in rec.runs or n in rec.not_comparable for n in names)
    return rec if same and covered else None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or what platform knows of it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts(python: str, threads: int) -> dict[str, Any]:
    """This machine's CPU and the interpreter's software, as stored beside digests."""
    probe = (
        "import json, platform, torch; print(json.dumps({'torch': torch.__version__, "
        "'cpu_capability': torch.backends.cpu.get_cpu_capability(), 'python': platform.python_version()}))"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    try:
        software = json.loads(done.stdout)
    except ValueError:
        software = {"torch": "unknown", "cpu_capability": "unknown", "python": platform.python_version()}
    return {"cpu_model": cpu_model(), "machine": platform.machine(), **software, "threads": threads}


def cpu_warning(stored: dict[str, Any], here: dict[str, Any], source: str, timing_only: Sequence[str]) -> str | None:
    """One line when `stored` digests were recorded on another CPU (or an unknown one); None on the same CPU."""
    tail = (
        f"training runs' digests may then differ for that reason alone (record the base here with --base "
        f"COMMIT); timing-only runs must match on any CPU: {', '.join(timing_only)}"
    )
    if "cpu_model" not in stored:
        return f"warning: {source} does not say on which CPU it was recorded: {tail}"
    changed = [
        f"{_LABELS[k]} {stored.get(k)!r}, here {here.get(k)!r}" for k in CPU_FACTS if stored.get(k) != here.get(k)
    ]
    return f"warning: {source} was recorded on another CPU ({'; '.join(changed)}): {tail}" if changed else None


def list_warning(stored: dict[str, Any], here: dict[str, Any], run_list: str, source: str) -> str | None:
    """One line when `stored` digests came from other software or another run list than this script's."""
    changed = [
        f"{_LABELS[k]} {stored.get(k)!r}, here {here.get(k)!r}"
        for k in SOFTWARE_FACTS
        if k in stored and stored.get(k) != here.get(k)
    ]
    if "run_list" in stored and stored["run_list"] != run_list:
        changed.append("the run list of benchmarks/digests.py changed since")
    if not changed:
        return None
    return f"warning: {source} was recorded with other software or runs ({'; '.join(changed)})"


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def resolve_commit(root: Path, rev: str) -> str:
    """The full hash of the commit `rev` names in the repository at `root`."""
    done = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    if done.returncode != 0:
        raise BadInput(f"--base: '{rev}' is not a commit of the repository at {root}")
    return done.stdout.strip()


def tree_commit(root: Path) -> dict[str, Any]:
    """The commit checked out at `root` and whether the tree differs from it (uncommitted or untracked files)."""
    head = _git(root, "rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": "unknown", "dirty": True}
    return {"commit": head.stdout.strip(), "dirty": bool(_git(root, "status", "--porcelain").stdout.strip())}


@contextmanager
def base_worktree(root: Path, commit: str, folder: Path) -> Iterator[Path]:
    """`commit` checked out (detached) in a new git worktree under `folder`; removed on leaving, whatever happened."""
    tree = folder / "base-tree"
    try:
        added = _git(root, "worktree", "add", "--detach", "--quiet", str(tree), commit)
        if added.returncode != 0:
            raise BadInput(f"--base: cannot check out {commit[:12]} in a worktree: {added.stderr.strip()[-300:]}")
        yield tree
    finally:
        # twice forced: removes a tree with files the runs left, and one `worktree add` left locked when interrupted;
        # it also unregisters a tree whose folder is already gone
        _git(root, "worktree", "remove", "--force", "--force", str(tree))
        shutil.rmtree(tree, ignore_errors=True)
