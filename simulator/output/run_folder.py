"""Owning a run folder: a marker file says this tool wrote it, a lock keeps a second process out of it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from simulator.errors import InputError, clip
from simulator.output.fsio import TMP_SUFFIX, check_output_dir, os_problem
from simulator.version import __version__

__all__ = ["MARKER", "LOCK", "RunFolder", "is_ours", "marker_text", "protected_reason"]

MARKER = ".splitee-run"  # written first into every folder this tool creates; `--overwrite` needs it
LOCK = ".splitee.lock"  # flock()ed by the one process writing the folder; the kernel drops it when that process dies
_KEEP = (MARKER, LOCK)


def is_ours(folder: Path) -> bool:
    """The folder holds this tool's marker file (a regular file, not a link)."""
    marker = folder / MARKER
    return marker.is_file() and not marker.is_symlink()


def protected_reason(folder: Path, protect: Iterable[Path] = ()) -> str | None:
    """Why `folder` must never be emptied: the root, the home folder, the working directory or one above it, or
    a folder holding one of `protect` (e.g. the scenario file). None if nothing forbids it."""
    try:
        target = folder.resolve()
        cwd = Path.cwd().resolve()
    except (OSError, RuntimeError):
        return "its path cannot be resolved"
    if target == Path(target.anchor):
        return "it is the root folder"
    if target == Path.home().resolve():
        return "it is your home folder"
    if cwd == target or target in cwd.parents:
        return "it is the current directory or one above it"
    for p in protect:
        try:
            held = Path(p).resolve()
        except (OSError, RuntimeError):
            continue
        if target in held.parents:
            return f"it holds {clip(held.name, 40)}, which this command reads"
    return None


class RunFolder:
    """The right to write one run folder, for as long as the object is held (`with RunFolder(...) as f:`).

    `claim` checks the path, creates the folder (marker first), takes the lock and, with `replace`, empties a
    folder of ours. A second process claiming the same folder gets an InputError at once. A lock left by a
    process that was killed is no obstacle: the kernel releases an flock() with its holder."""

    def __init__(self, path: Path, *, key: str = "--out") -> None:
        self.path = path
        self.key = key
        self._fd: int | None = None
        self.created = False  # this claim made the folder: a run refused before writing anything removes it

    # --- the lock ---
    def lock(self) -> None:
        """Take the folder's lock, or refuse (InputError) while another process holds it."""
        lock = self.path / LOCK
        for _ in range(10):  # the lock file may be unlinked by its holder between our open and our flock
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise InputError(
                    f"cannot create the lock file {LOCK}: {os_problem(err)}", file=self._shown(), key=self.key
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f" (process {holder})" if holder else ""
                raise InputError(
                    f"another splitee process{who} is writing this run folder; wait for it to finish, "
                    "or choose another --out",
                    file=self._shown(),
                    key=self.key,
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino
            except OSError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return
            os.close(fd)  # we locked a file its holder had already removed: try the new one
        raise InputError("cannot take the run folder's lock (it keeps changing)", file=self._shown(), key=self.key)

    def release(self, *, remove: bool = True) -> None:
        """Drop the lock (and, with `remove`, its file): the folder is free for the next command."""
        if self._fd is None:
            return
        try:
            if remove:
                os.unlink(self.path / LOCK)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if (
            exc_type is not None
            and self.created
            and self._fd is not None
            and all(p.name in _KEEP for p in _entries(self.path))
        ):
            (self.path / MARKER).unlink(missing_ok=True)
            self.release()
            try:
                self.path.rmdir()
            except OSError:
                pass
            return
        self.release()

    def _shown(self) -> str:
        return clip(str(self.path), 120)

    # --- claiming ---
    def claim(self, *, existing: str, protect: Iterable[Path] = ()) -> "RunFolder":
        """Create or take over the folder. `existing` says what a folder that already holds files may be:
        'refuse' (a new run), 'resume' (continue it: must be ours) or 'replace' (--overwrite: must be ours; its
        contents are deleted once the lock is held)."""
        path = self.path
        check_output_dir(path, self.key)
        fresh = not path.exists()
        if fresh:
            try:
                path.mkdir(parents=True)
                self.created = True
            except FileExistsError:
                fresh = False  # another process made it meanwhile: the lock below settles who writes it
            except OSError as err:
                raise InputError(
                    f"cannot create the folder: {os_problem(err)}", file=self._shown(), key=self.key
                ) from None
        held = [p for p in _entries(path) if p.name not in _KEEP]
        if held and not is_ours(path):
            if existing == "refuse":
                raise InputError(
                    "already holds files; choose another --out (or an empty or new folder)",
                    file=self._shown(),
                    key=self.key,
                )
            raise InputError(
                "holds files but is not a run folder this tool wrote (no marker file "
                f"{MARKER}); --overwrite and --resume only touch such folders",
                file=self._shown(),
                key=self.key,
            )
        if existing == "replace" and held:
            why = protected_reason(path, protect)
            if why:
                raise InputError(f"--overwrite refused: {why}", file=self._shown(), key=self.key)
        if not is_ours(path):
            _write_marker(path, self)
        self.lock()
        held = [p for p in _entries(path) if p.name not in _KEEP]  # again, now that nobody else writes
        if held and existing == "refuse" and not fresh:
            self.release()
            raise InputError(
                "already holds a run; pass --resume to continue it, --overwrite to replace it, or choose another --out",
                file=self._shown(),
                key=self.key,
            )
        if existing == "replace":
            for p in held:
                _remove(p)
        else:
            for p in held:  # temporary files of a writer that was killed mid-write
                if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file():
                    _remove(p)
        return self


def _entries(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError:
        return []


def _write_marker(path: Path, folder: RunFolder) -> None:
    try:
        fd = os.open(path / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return
    except OSError as err:
        raise InputError(
            f"cannot write into the folder: {os_problem(err)}", file=folder._shown(), key=folder.key
        ) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(marker_text())


def marker_text() -> str:
    """The marker file's content: which tool, which version."""
    return json.dumps({"written_by": "hetero-splitee-sim", "version": __version__}) + "\n"


def _remove(p: Path) -> None:
    """A file, a link (never what it points at) or a whole folder of the run."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink(missing_ok=True)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
