"""The README's and docs/' examples run as written: shell blocks (runs shortened), the notebook example (executed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
NOTEBOOK_MARK = "<!-- notebook-example"


def doc_pages() -> list[Path]:
    """README.md, then docs/'s pages in the site's nav order (mkdocs.yml): the order a reader follows, and the
    order the examples build on each other (the tour and "Using it" make the runs "Figures and reports" draws)."""
    import yaml

    def flatten(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [page for item in nav for page in flatten(item)]
        if isinstance(nav, dict):
            return [page for value in nav.values() for page in flatten(value)]
        return []

    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    pages = [REPO / "docs" / page for page in flatten(nav)]
    return [README, *(page for page in pages if page.is_file())]  # reference/ pages are other READMEs


# Every `splitee run` / `sweep` in the README, shortened so that the default suite stays fast: same commands,
# same scenarios, fewer rounds, steps and images (a timing-only fleet: fewer rounds and a tenth of the clients).
SHRINK = [
    "training.rounds=2",
    "training.local_steps=1",
    "dataset.max_train=640",
    "dataset.max_test=200",
    "eval.every=1",
]

TINY_RUN = """\
name: {name}
seed: 0
dataset: {{name: synthetic, synthetic: {{train_size: 200, test_size: 100, image_size: 8}}}}
model: {{width: 4}}
training: {{rounds: 2, local_steps: 2, batch_size: 16}}
strategy: {{name: {strategy}}}
clients:
  - {{device: rpi4, link: wifi4, cut: 1, count: 2}}
  - {{device: rpi_zero2w, link: ble, cut: 2}}
eval: {{thresholds: [0.0, 0.5, 1.0]}}
output: {{progress: false, checkpoint_every: 0}}
"""


def readme_blocks(language: str) -> list[tuple[str, str]]:
    """(the section heading above it, the code) of every fenced block in that language, in reading order."""
    blocks = []
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S):
            heading = re.findall(r"^#+ (.+)$", text[: match.start()], flags=re.M)
            blocks.append((heading[-1] if heading else "", match.group(1)))
    return blocks


def notebook_example() -> tuple[Path, str]:
    """(the page, the code) of the marked notebook example; exactly one page holds it."""
    [page] = [p for p in doc_pages() if NOTEBOOK_MARK in p.read_text(encoding="utf-8")]
    text = page.read_text(encoding="utf-8")
    at = text.index(NOTEBOOK_MARK)
    match = re.compile(r"^```python\n(.*?)^```", flags=re.M | re.S).search(text, at)
    assert match is not None and text[at : match.start()].count("\n") == 1, "the marked block must follow the mark"
    return page, match.group(1)


# --- the notebook example ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with runs/quickstart (Averaging) and runs/seq (Sequential): small real runs whose third client
    is on BLE, as in the quickstart, so that the example's replay changes a BLE uplink."""
    from simulator.commands.runner import run_scenario
    from simulator.config.scenario import load_scenario

    base = tmp_path_factory.mktemp("notebook")
    for name, strategy in (("quickstart", "averaging"), ("seq", "sequential")):
        path = base / f"{name}.yaml"
        path.write_text(TINY_RUN.format(name=name, strategy=strategy))
        run_scenario(load_scenario(path), base / "runs" / name)
    return base


def test_the_readme_notebook_example_runs(
    two_runs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # pandas' .plot goes through pyplot: no display in CI
    monkeypatch.chdir(two_runs)
    page, code = notebook_example()
    exec(compile(code, str(page), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert (two_runs / "accuracy_vs_time.png").read_bytes().startswith(b"\x89PNG")
    summary = json.loads((two_runs / "runs" / "quickstart" / "summary.json").read_text())
    assert str(summary["final_accuracy"]) in out  # the example prints summary.json's value
    before, after = (float(x) for x in re.search(r"([\d.]+) s -> ([\d.]+) s", out).groups())
    assert before == pytest.approx(summary["sim_time_s"], abs=0.05)
    assert after < before  # a faster uplink for the BLE client, whose uploads hold the round up
    # exits by cut: the mean over the clients at each cut at the last evaluation, from clients.csv by hand
    import csv

    with (two_runs / "runs" / "quickstart" / "clients.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["round"] == "2"]
    by_cut = {
        1: [float(r["exit_accuracy"]) for r in rows if r["cut"] == "1"],
        2: [float(r["exit_accuracy"]) for r in rows if r["cut"] == "2"],
    }
    expected = {cut: round(sum(v) / len(v), 3) for cut, v in by_cut.items()}
    assert f"'quickstart': {expected}" in out


# --- the shell examples ----------------------------------------------------------------------------------------

_SHIM = """\
#!{python}
# `splitee` for the README test: the real command line, with runs and sweeps shortened (SHRINK).
import sys
from pathlib import Path

import yaml

sys.path.insert(0, {repo!r})
from simulator.cli import main

SHRINK = {shrink!r}


argv = sys.argv[1:]
if argv[:1] == ["run"] and "--timing-only" in argv:  # a tenth of the fleet, each client with its share of data
    fleet = yaml.safe_load(Path(argv[1]).read_text())["clients"]
    argv += ["--set", SHRINK[0]]
    counts = [max(1, c.get('count', 1) // 10) for c in fleet]
    argv += [a for i, n in enumerate(counts) for a in ("--set", f"clients.{{i}}.count={{n}}")]
elif argv[:1] == ["run"]:
    argv += [arg for item in SHRINK for arg in ("--set", item)]
elif argv[:1] == ["sweep"]:
    path = Path(argv[1]).resolve()
    spec = yaml.safe_load(path.read_text())
    spec["base"] = str((path.parent / spec["base"]).resolve())
    spec["set"] = list(spec.get("set") or []) + SHRINK
    short = Path("short-" + path.name)
    short.write_text(yaml.safe_dump(spec))
    argv[1] = str(short)
sys.exit(main(argv))
"""


def _shim(folder: Path) -> Path:
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "splitee"
    shim.write_text(_SHIM.format(python=sys.executable, repo=str(REPO), shrink=SHRINK))
    shim.chmod(0o755)
    return bin_dir


def _shell_blocks(*headings: str) -> list[str]:
    return [code for heading, code in readme_blocks("bash") if heading.startswith(headings)]


def _run_blocks(folder: Path, lines: list[str]) -> subprocess.CompletedProcess[str]:
    (folder / "scenarios").symlink_to(REPO / "scenarios")
    env = {
        **os.environ,
        "PATH": f"{_shim(folder)}{os.pathsep}{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }
    script = ["set -euo pipefail", "splitee run scenarios/quickstart.yaml --out runs/quickstart --overwrite", *lines]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=folder, env=env, capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _shortened(argv: list[str]) -> list[str]:
    """The shim's shortening, in this process: a run gets SHRINK (a timing-only fleet: fewer rounds, a tenth
    of the clients)."""
    if argv[:1] != ["run"]:
        return argv
    if "--timing-only" not in argv:
        return argv + [arg for item in SHRINK for arg in ("--set", item)]
    import yaml

    fleet = yaml.safe_load(Path(argv[1]).read_text())["clients"]
    counts = [f"clients.{i}.count={max(1, c.get('count', 1) // 10)}" for i, c in enumerate(fleet)]
    return argv + [arg for item in [SHRINK[0], *counts] for arg in ("--set", item)]


def test_the_using_it_commands_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make quickstart`'s run, then every command of the README's tour and of "Using it", in order, in this
    process (runs shortened, the city fleet to a tenth)."""
    import shlex

    from simulator.cli import main

    (tmp_path / "scenarios").symlink_to(REPO / "scenarios")
    monkeypatch.chdir(tmp_path)
    lines = ["splitee run scenarios/quickstart.yaml --out runs/quickstart --overwrite"]
    lines += [
        line for block in _shell_blocks("A five-minute tour", "Using it") for line in block.splitlines() if line.strip()
    ]
    printed = ""
    for line in lines:
        # as the shell would: a word with a wildcard becomes the sorted paths it matches
        argv = [
            path
            for word in shlex.split(line, comments=True)
            for path in (sorted(map(str, Path().glob(word))) if "*" in word else [word])
        ]
        assert argv[0] == "splitee", line
        assert main(_shortened(argv[1:])) == 0, (line, capsys.readouterr())
        printed += capsys.readouterr().out
    for name in ("report.html", "report.md", "timeline.png", "energy.png", "accuracy-by-cut.png"):
        assert (tmp_path / "runs" / "quickstart" / name).is_file(), name  # splitee run writes its report
    replay = json.loads((tmp_path / "runs" / "qs-fast-ble" / "summary.json").read_text())
    assert replay["replay"]["set"] == ["clients.2.link.uplink_bps=1.4e6"]
    assert replay["sim_time_s"] < replay["replay"]["original_sim_time_s"]  # x2 is faster, not slower
    assert "1,000 clients in 4 groups" in printed  # the city fleet (a tenth of it here) is grouped
    # the tour: a redrawn timeline and energy figure, a Sequential run, the trade-off of the two, a replay
    for name in ("timeline.png", "energy.png", "tradeoff.png"):
        assert f"runs/quickstart/{name}" in printed, name  # `splitee plot` prints the path it wrote
    sequential = json.loads((tmp_path / "runs" / "sequential" / "summary.json").read_text())
    assert sequential["strategy"] == "sequential"
    faster = json.loads((tmp_path / "runs" / "faster-ble" / "summary.json").read_text())
    assert faster["sim_time_s"] < faster["replay"]["original_sim_time_s"]


@pytest.mark.slow
def test_the_tutorial_and_figure_commands_run(tmp_path: Path) -> None:
    """The tutorial's strategy comparison and sweep, and every `splitee plot` example (runs shortened)."""
    _run_blocks(
        tmp_path,
        _shell_blocks("Using it", "Tutorial", "Figures and reports")
        + ["ls runs/compare/averaging/tradeoff.png runs/sweeps/weak_share_bandwidth/heatmap.png"],
    )


def test_readme_names_the_run_folder_options() -> None:
    text = "\n".join(page.read_text(encoding="utf-8") for page in doc_pages())
    for option in ("--overwrite", "--resume", "--no-report", "--verbose", "--quiet", "--threads"):
        assert option in text, option
