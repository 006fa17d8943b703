"""A run folder written whole: its files go into a temporary folder beside it, reach the disk with one sync, and
the folder takes its place in one rename, so a crash leaves the old folder or the complete new one."""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from simulator.errors import InputError, clip
from simulator.output.fsio import TMP_SUFFIX, check_output_dir, os_problem
from simulator.output.run_folder import LOCK, MARKER, RunFolder, is_ours, marker_text, protected_reason

__all__ = ["write_whole_folder", "write_files", "check_whole_folder"]

SUMMARY = "summary.json"  # its presence marks a finished run: moved last where files are moved one by one


def write_whole_folder(
    out: Path, write: Callable[[Path], None], *, overwrite: bool, protect: Iterable[Path] = (), key: str = "--out"
) -> None:
    """Make `out` a run folder holding what `write(folder)` puts into the fresh folder it is given.

    No file is synced on its own: one sync of the file system puts them all on disk, then the folder is renamed
    into place (an absent or empty `out`) or exchanged with the old one in one step (`overwrite`), and the old
    one is deleted. Refused as RunFolder.claim refuses: a folder holding files that this tool did not write, one
    holding a run without `overwrite`, a protected folder (the current directory, one holding a file in
    `protect`), a folder another process is writing."""
    protect = list(protect)
    shown = clip(str(out), 120)  # errors name the folder as given
    target = check_whole_folder(out, overwrite=overwrite, protect=protect, key=key)
    try:
        if not os.path.isdir(target.parent):  # mostly there: one stat, not a refused mkdir and a stat
            target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the folder: {os_problem(err)}", file=shown, key=key) from None
    _clear_leftovers(target)
    try:
        tmp = _new_folder(target.parent, f".{target.name}.{secrets.token_hex(8)}{TMP_SUFFIX}")
    except OSError:  # a parent this process may not write in (`out` a mount point, say): write inside `out`
        _write_in_place(out, write, overwrite=overwrite, protect=protect, key=key)
        return
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # while held, this temporary folder is a live writer's (_clear_leftovers)
        _write_file(tmp / MARKER, marker_text())
        write(tmp)
        _sync(fd)
        _install(tmp, target, overwrite, protect, key, shown)
    except _CannotMove:  # `out` is a mount point, or on another file system than its parent
        shutil.rmtree(tmp, ignore_errors=True)
        _write_in_place(out, write, overwrite=overwrite, protect=protect, key=key)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(fd)


# What a rename answers when the folder cannot be moved or swapped at all (not when something is in the way).
_CANNOT_MOVE = frozenset({errno.EXDEV, errno.EBUSY, errno.EACCES, errno.EPERM, errno.EROFS})


class _CannotMove(Exception):
    """The written folder cannot take the place of `out` by a rename."""


def _new_folder(parent: Path, name: str) -> Path:
    """A new folder (its mode as mkdir makes it, under the umask)."""
    path = parent / name
    os.mkdir(path)
    return path


def _write_in_place(
    out: Path, write: Callable[[Path], None], *, overwrite: bool, protect: list[Path], key: str
) -> None:
    """Where no folder can be made or renamed beside `out`: the files are written inside it (RunFolder.claim's
    refusals, lock and marker; with `overwrite`, the old run's files are deleted first), into a temporary folder
    there, synced, then moved into place one by one, the summary last."""
    with RunFolder(out, key=key).claim(existing="replace" if overwrite else "refuse", protect=protect):
        inner = _new_folder(out, f".{secrets.token_hex(8)}{TMP_SUFFIX}")
        try:
            write(inner)
            fd = os.open(inner, os.O_RDONLY | os.O_DIRECTORY)
            try:
                _sync(fd)
            finally:
                os.close(fd)
            _move_files(inner, out)
        except BaseException:
            shutil.rmtree(inner, ignore_errors=True)
            raise


def check_whole_folder(out: Path, *, overwrite: bool, protect: Iterable[Path] = (), key: str = "--out") -> Path:
    """What write_whole_folder refuses before it writes anything, checked early (before a long computation);
    returns the folder's absolute path (the folder a link names, never the link)."""
    check_output_dir(out, key)
    # absolute (the temporary folder goes beside it, "." included)
    target = out.resolve() if out.is_symlink() else Path(os.path.abspath(out))
    _refuse(target, overwrite, list(protect), key, clip(str(out), 120))
    return target


def write_files(folder: Path, files: dict[str, str | bytes]) -> None:
    """Each file into the (new, private) folder, unsynced: write_whole_folder syncs them all at once."""
    base = os.fspath(folder)
    for name, data in files.items():
        _write_file(os.path.join(base, name), data)


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _write_file(path: str | Path, data: str | bytes) -> None:
    """A new file holding `data`, written straight to its descriptor: a file object's buffer would only add a
    stat, a terminal check and a seek per file."""
    view = memoryview(data.encode() if isinstance(data, str) else data)
    fd = os.open(path, _NEW_FILE, 0o644)
    try:
        while view:  # a write may take less than all (a signal, a full disk answers with an error instead)
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _entries(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _refuse(target: Path, overwrite: bool, protect: list[Path], key: str, shown: str) -> None:
    held = [name for name in _entries(target) if name not in (MARKER, LOCK)]
    if not held:
        return
    if not is_ours(target):
        if not overwrite:
            raise InputError(
                "already holds files; choose another --out (or an empty or new folder)", file=shown, key=key
            )
        raise InputError(
            f"holds files but is not a run folder this tool wrote (no marker file {MARKER}); --overwrite and "
            "--resume only touch such folders",
            file=shown,
            key=key,
        )
    if not overwrite:
        raise InputError(
            "already holds a run; pass --overwrite to replace it, or choose another --out", file=shown, key=key
        )
    why = protected_reason(target, protect)
    if why:
        raise InputError(f"--overwrite refused: {why}", file=shown, key=key)


def _install(tmp: Path, target: Path, overwrite: bool, protect: list[Path], key: str, shown: str) -> None:
    """The written folder `tmp` in the place of `target`."""
    if _rename_into_place(tmp, target, key, shown):
        return
    folder = RunFolder(target, key=key)
    folder.lock()  # refuses while another process writes the folder
    try:
        _refuse(target, overwrite, protect, key, shown)  # again, now that nobody else writes it
        if protected_reason(target) is not None:  # the current directory (else refused above) stays itself
            _move_files(tmp, target)
            folder.release()
            return
        try:
            _exchange(tmp, target)
        except OSError as err:
            if err.errno in _CANNOT_MOVE:
                raise _CannotMove from None
            raise InputError(f"cannot replace the folder: {os_problem(err)}", file=shown, key=key) from None
    except BaseException:
        folder.release()
        raise
    folder.release(remove=False)  # the lock file went with the old folder, deleted now
    shutil.rmtree(tmp, ignore_errors=True)


def _rename_into_place(tmp: Path, target: Path, key: str, shown: str) -> bool:
    """One rename where no folder is in the way (none, or an empty one that is not the current directory)."""
    if os.path.lexists(target) and (_entries(target) or protected_reason(target) is not None):
        return False
    try:
        os.rename(tmp, target)
    except OSError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):  # another process filled it meanwhile
            return False
        if err.errno in _CANNOT_MOVE:
            raise _CannotMove from None
        raise InputError(f"cannot write the folder: {os_problem(err)}", file=shown, key=key) from None
    return True


def _move_files(tmp: Path, target: Path) -> None:
    """The files one by one into `target`, the summary last (its presence marks a finished run)."""
    names = sorted(os.listdir(tmp), key=lambda name: (name != MARKER, name == SUMMARY))
    for name in names:
        os.replace(tmp / name, target / name)
    os.rmdir(tmp)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders' names in one step (Linux renameat2); elsewhere in three renames, undone if the second
    fails; a crash between them leaves the old folder beside `b` as `.NAME.<hex>.old` (never swept away)."""
    exchange = _libc_function("renameat2")
    if exchange is not None:
        if exchange(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        import ctypes

        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a real failure, not a missing feature
            raise OSError(code, os.strerror(code), str(b))
    aside = b.with_name(f".{b.name}.{secrets.token_hex(4)}.old")
    os.rename(b, aside)
    try:
        os.rename(a, b)
    except BaseException:
        os.rename(aside, b)
        raise
    os.rename(aside, a)


def _sync(fd: int) -> None:
    """Every file written so far reaches the disk before a name points at the folder (a crash never leaves a
    folder of empty files): one syncfs() of the folder's file system on Linux, else one sync()."""
    syncfs = _libc_function("syncfs")
    if syncfs is None or syncfs(fd) != 0:
        os.sync()


@functools.lru_cache(maxsize=None)
def _libc_function(name: str) -> Any:
    """A C library function by name (argument types set), or None where the platform lacks it."""
    import ctypes

    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = {
        "syncfs": [ctypes.c_int],
        "renameat2": [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint],
    }[name]
    return function


def _clear_leftovers(target: Path) -> None:
    """Temporary folders beside `target` left by a writer that was killed: ours (marker), and not locked."""
    prefix = f".{target.name}."
    try:
        found = [e.path for e in os.scandir(target.parent) if e.name.startswith(prefix) and e.name.endswith(TMP_SUFFIX)]
    except OSError:
        return
    for path in found:
        if os.path.islink(path) or not os.path.isdir(path) or not is_ours(Path(path)):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass  # a live writer's
        finally:
            os.close(fd)
