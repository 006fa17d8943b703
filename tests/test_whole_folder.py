"""A run folder written whole (output.whole_folder): it appears complete or not at all, replaces an old run of
ours only with overwrite and in one step, keeps the refusals of a claimed folder, and leaves no temporary
folder behind; and the CSV writer for event traces (output.csv_cells) writes csv.writer's bytes, in the order a
stable sort by the first cells gives."""

from __future__ import annotations

import csv
import fcntl
import io
import math
import os
from pathlib import Path

import pytest

from simulator.errors import InputError
from simulator.output.csv_cells import csv_cells
from simulator.output.run_folder import LOCK, MARKER, RunFolder
from simulator.output.whole_folder import write_files, write_whole_folder


def _files(**files: str) -> object:
    return lambda folder: write_files(folder, {name.replace("_", "."): text for name, text in files.items()})


def _tree(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def _beside(folder: Path) -> list[str]:
    """Whatever sits beside the folder (temporary folders included)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


def test_a_new_folder_appears_whole(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "run"
    write_whole_folder(out, _files(rounds_csv="r\n", summary_json="{}\n"), overwrite=False)
    assert _tree(out) == {MARKER: _tree(out)[MARKER], "rounds.csv": "r\n", "summary.json": "{}\n"}
    assert '"written_by": "hetero-splitee-sim"' in _tree(out)[MARKER]
    assert _beside(out) == []  # no temporary folder left
    assert (out.stat().st_mode & 0o777) == 0o777 & ~_umask()  # as mkdir makes a folder, not owner-only


def test_overwrite_replaces_an_old_run_in_one_step(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write_whole_folder(out, _files(rounds_csv="old\n", events_csv="old\n"), overwrite=False)
    with pytest.raises(InputError, match="already holds a run"):
        write_whole_folder(out, _files(rounds_csv="new\n"), overwrite=False)
    write_whole_folder(out, _files(rounds_csv="new\n"), overwrite=True)
    assert set(_tree(out)) == {MARKER, "rounds.csv"} and _tree(out)["rounds.csv"] == "new\n"  # nothing old left
    assert _beside(out) == []


def test_a_failed_write_leaves_the_old_folder_and_nothing_beside(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write_whole_folder(out, _files(rounds_csv="old\n", summary_json="{}\n"), overwrite=False)
    before = _tree(out)

    def half_then_fail(folder: Path) -> None:
        write_files(folder, {"rounds.csv": "new\n"})
        raise ValueError("disk full")

    with pytest.raises(ValueError):
        write_whole_folder(out, half_then_fail, overwrite=True)
    assert _tree(out) == before and _beside(out) == []


def test_refusals_of_a_claimed_folder_stay(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="not a run folder this tool wrote"):
        write_whole_folder(foreign, _files(rounds_csv="x\n"), overwrite=True)
    with pytest.raises(InputError, match="already holds files"):
        write_whole_folder(foreign, _files(rounds_csv="x\n"), overwrite=False)
    assert _tree(foreign) == {"notes.txt": "keep"}
    # a run another process is writing (it holds the lock) is not replaced
    out = tmp_path / "run"
    write_whole_folder(out, _files(rounds_csv="old\n"), overwrite=False)
    held = RunFolder(out)
    held.lock()
    try:
        with pytest.raises(InputError, match="another splitee process"):
            write_whole_folder(out, _files(rounds_csv="new\n"), overwrite=True)
    finally:
        held.release()
    assert _tree(out)["rounds.csv"] == "old\n" and _beside(out) == ["mine"]


def test_an_empty_folder_is_filled_and_the_current_one_stays_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    write_whole_folder(empty, _files(rounds_csv="r\n"), overwrite=False)
    assert _tree(empty)["rounds.csv"] == "r\n"
    here = tmp_path / "here"
    here.mkdir()
    inode = here.stat().st_ino
    monkeypatch.chdir(here)
    write_whole_folder(Path("."), _files(rounds_csv="r\n", summary_json="{}\n"), overwrite=False)
    assert here.stat().st_ino == inode and set(_tree(here)) == {MARKER, "rounds.csv", "summary.json"}
    assert LOCK not in os.listdir(here) and sorted(os.listdir(tmp_path)) == ["empty", "here"]


def test_a_killed_writers_temporary_folder_is_cleared_a_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "run"
    dead, live = tmp_path / ".run.dead1234.tmp", tmp_path / ".run.live5678.tmp"
    for folder in (dead, live):
        folder.mkdir()
        (folder / MARKER).write_text("{}\n")
    # what only looks like a leftover: a folder of the same name pattern without our marker, a link to one of ours,
    # and an old run set aside by an interrupted swap
    foreign, link, aside = tmp_path / ".run.notours1.tmp", tmp_path / ".run.link9999.tmp", tmp_path / ".run.ab12.old"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("theirs\n")
    link.symlink_to(dead)
    aside.mkdir()
    (aside / MARKER).write_text("{}\n")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a writer still at work
    try:
        write_whole_folder(out, _files(rounds_csv="r\n"), overwrite=False)
        assert _beside(out) == sorted([live.name, foreign.name, link.name, aside.name])
        assert (foreign / "notes.txt").read_text() == "theirs\n" and not dead.exists()
    finally:
        os.close(fd)


def test_an_interrupted_three_rename_swap_puts_the_old_run_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without renameat2 the swap is three renames; a failure at the second undoes the first."""
    from simulator.output import whole_folder

    out = tmp_path / "run"
    write_whole_folder(out, _files(rounds_csv="old\n", summary_json="{}\n"), overwrite=False)
    before = _tree(out)
    real_libc = whole_folder._libc_function
    monkeypatch.setattr(whole_folder, "_libc_function", lambda name: None if name == "renameat2" else real_libc(name))
    renames: list[tuple[str, str]] = []
    real_rename = os.rename

    def second_fails(a: object, b: object) -> None:
        renames.append((str(a), str(b)))
        if len(renames) == 2:
            raise KeyboardInterrupt  # Ctrl-C between the renames
        real_rename(a, b)

    monkeypatch.setattr(whole_folder.os, "rename", second_fails)
    with pytest.raises(KeyboardInterrupt):
        write_whole_folder(out, _files(rounds_csv="new\n"), overwrite=True)
    monkeypatch.setattr(whole_folder.os, "rename", real_rename)
    assert _tree(out) == before and _beside(out) == []  # the old run where it was, nothing aside
    write_whole_folder(out, _files(rounds_csv="new\n"), overwrite=True)  # and the next write works
    assert _tree(out)["rounds.csv"] == "new\n" and _beside(out) == []


@pytest.mark.parametrize("where", ["no folder beside", "a mount point"])
def test_where_nothing_can_go_beside_the_folder_it_is_written_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A parent this process may not write in, or `out` on another file system (a rename answers EXDEV): the
    files are written inside `out`, with the claimed folder's refusals and marker."""
    import errno

    from simulator.output import whole_folder

    out = tmp_path / "run"
    write_whole_folder(out, _files(rounds_csv="old\n", events_csv="old\n"), overwrite=False)
    if where == "no folder beside":
        real_new = whole_folder._new_folder

        def refuse_beside(parent: Path, name: str) -> Path:
            if parent == tmp_path:
                raise PermissionError(errno.EACCES, "Permission denied", str(parent))
            return real_new(parent, name)

        monkeypatch.setattr(whole_folder, "_new_folder", refuse_beside)
    else:
        real_rename = os.rename

        def cross_device(a: object, b: object) -> None:
            if out in (Path(str(a)), Path(str(b))):  # a mount point is neither renamed nor renamed onto
                raise OSError(errno.EXDEV, "Invalid cross-device link", str(b))
            real_rename(a, b)

        monkeypatch.setattr(whole_folder.os, "rename", cross_device)
        monkeypatch.setattr(whole_folder, "_libc_function", lambda name: None)
    with pytest.raises(InputError, match="already holds a run"):
        write_whole_folder(out, _files(rounds_csv="new\n"), overwrite=False)
    write_whole_folder(out, _files(rounds_csv="new\n", summary_json="{}\n"), overwrite=True)
    assert set(_tree(out)) == {MARKER, "rounds.csv", "summary.json"}  # the old run's events.csv is gone
    assert _tree(out)["rounds.csv"] == "new\n" and _beside(out) == []
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _by_csv_module(columns: list[str], rows: list[tuple[object, ...]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def test_csv_cells_writes_the_csv_modules_bytes() -> None:
    nan = math.nan
    rows = [
        (0.0, 0.1, "rpi4-0", "compute", 1, 0.0, 3.0, nan),
        (0.1, 0.30000000000000004, "a,b", "tx", 1, -0.0, 3, 1e-300),  # a comma, -0.0 after 0.0, an int
        (0.30000000000000004, 1e22, 'say "hi"', "rx", 2, 0.0, 3.0, float("inf")),  # quotes; 3 after 3.0
        (-0.0, 2.5, "", "line\nbreak", True, 1, 3.0, nan),  # an empty name, a newline, a bool beside ints
        (2.5, 2.5, "rpi4-0", "compute", 2, 1.0, None, -2.5),
    ]
    columns = ["t_start", "t_end", "entity", "kind", "round", "bytes", "flops", "energy_j"]
    assert csv_cells(columns, rows) == _by_csv_module(columns, rows)
    # a zero kept from one column is not the -0.0 of the next
    zeros = [(0.0, -0.0, 1.5), (0.0, 0.0, -0.0)]
    assert (
        csv_cells(["a", "b", "c"], zeros)
        == _by_csv_module(["a", "b", "c"], zeros)
        == "a,b,c\n0.0,-0.0,1.5\n0.0,0.0,-0.0\n"
    )
    assert csv_cells(columns, []) == "t_start,t_end,entity,kind,round,bytes,flops,energy_j\n"
    # columns of floats alone, printed together: NaNs and infinities, the extremes, integral floats, a value
    # shared by two columns, and one column with -0.0 beside pooled ones
    inf = math.inf
    floats = [
        (nan, 0.0, 1e-300, 5e-324, 2.0**70, "n,1", 10**30),
        (-inf, 0.1, 1e16, 1.7976931348623157e308, 0.1, 'q"', -(10**30)),
        (inf, -0.0, 123456789.0, 1e-5, nan, "x\ny", 0),
        (0.30000000000000004, 0.1, 1e-300, -1e-5, 0.0, "", 7),
    ]
    wide = ["a", "b", "c", "d", "e", "f", "g"]
    assert csv_cells(wide, floats) == _by_csv_module(wide, floats)
    assert csv_cells(["name"], [("",), ("x",)]) == _by_csv_module(["name"], [("",), ("x",)]) == 'name\n""\nx\n'


def _sorted_by_csv_module(columns: list[str], rows: list[tuple[object, ...]], width: int) -> str:
    return _by_csv_module(columns, sorted(rows, key=lambda r: r[:width]))


def test_csv_cells_sorts_stably_by_the_first_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    # by hand: ties on the two key cells keep their order, whatever the later cells; 0.0 and -0.0 tie
    rows = [(1.0, "b", 9, 0.5), (0.0, "z", 1, 2.0), (1.0, "a", 3, 1.0), (1.0, "b", 1, 0.25), (-0.0, "z", 0, 0.0)]
    want = "t,e,r,x\n0.0,z,1,2.0\n-0.0,z,0,0.0\n1.0,a,3,1.0\n1.0,b,9,0.5\n1.0,b,1,0.25\n"
    assert csv_cells(["t", "e", "r", "x"], rows, sort_width=2) == want
    nan, inf = math.nan, math.inf
    columns = ["t_start", "t_end", "entity", "kind", "round", "bytes", "flops", "energy_j"]
    cases = [
        # ties on all four keys with later cells out of order; names needing quotes; an int among floats
        [
            (2.0, 3.0, "c,1", "tx", 2, 5.0, 0.0, 1.0),
            (1.0, 3.0, 'q"', "rx", 1, 1.0, 3, 0.1),
            (2.0, 3.0, "c,1", "tx", 1, 4.0, 0.0, nan),
            (1.0, 2.0, "", "idle", 10**30, 0.0, 0.0, 5e-324),
            (2.0, 3.0, "c,1", "tx", 1, 4.0, 0.0, -inf),
        ],
        # NaN and -0.0 in the keys; a key column of mixed numbers (1 == 1.0 == True)
        [
            (nan, 1.0, "a", "k", 1, 0.0, 0.0, 0.0),
            (0.0, -0.0, "a", "k", 1, -0.0, 1.0, 2.0),
            (-0.0, 0.0, "b", "k", 2, 0.0, 1.0, 2.0),
        ],
        [
            (1.0, 1, "a", "k", 1, 0.0, 0.0, 0.0),
            (0.5, True, "a", "k", 1, 0.0, 0.0, 0.0),
            (1.0, 1.0, "a", "k", 2, 0.0, 0.0, 0.0),
        ],
        # text keys with upper case, accents and empty names; an entity given as None (printed empty)
        [
            (0.0, 1.0, "é", "tx", 1, 0.0, 0.0, 0.0),
            (0.0, 1.0, "B", "tx", 1, 0.0, 0.0, 0.0),
            (0.0, 1.0, "a", "tx", 1, 0.0, 0.0, 0.0),
        ],
        [(0.0, 1.0, "", "tx", 1, inf, 0.0, 0.0), (0.0, 1.0, None, "rx", 1, 0.0, 0.0, 0.0)],
    ]
    for rows in cases:
        try:
            want = _sorted_by_csv_module(columns, rows, 4)
        except TypeError:  # None beside a text: the sort cannot order them, nor may the writer
            with pytest.raises(TypeError):
                csv_cells(columns, rows, sort_width=4)
            continue
        assert csv_cells(columns, rows, sort_width=4) == want
    # tables beyond the whole-table limit: sorted by the sort itself and written in chunks, alike
    monkeypatch.setattr("simulator.output.csv_cells._WHOLE", 2)
    monkeypatch.setattr("simulator.output.csv_cells._CHUNK", 2)
    for rows in cases[:4]:
        assert csv_cells(columns, rows, sort_width=4) == _sorted_by_csv_module(columns, rows, 4)
    assert csv_cells(["name"], [("b",), ("",)], sort_width=1) == 'name\n""\nb\n'
