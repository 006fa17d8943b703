"""Safe file output: atomic writes through unpredictable temporary names, and output paths checked up front."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from simulator.errors import InputError, clip

__all__ = ["atomic_write", "check_output_file", "check_output_dir", "os_problem", "TMP_SUFFIX"]

TMP_SUFFIX = ".tmp"  # temporary files are `.<name>.<random>.tmp` beside their target


def os_problem(err: OSError) -> str:
    """An OSError as a short phrase without the path (the caller names the file)."""
    return (err.strerror or type(err).__name__).lower()


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a new temporary file beside `path`, then rename it over `path`: a reader never sees half a file.

    The temporary name is random and created with O_EXCL (`tempfile.mkstemp`), so a symlink planted at a
    predictable name is never followed; the rename replaces `path` itself, never what a symlink there points at."""
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())  # the data is on disk before the name points at it (a crash leaves old or new)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _first_existing(path: Path) -> Path:
    """`path` or its nearest existing ancestor."""
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: Path, key: str) -> None:
    """A folder the tool may create or write into: not a file or device, not below a file, writable."""
    shown = clip(str(path), 80)
    if os.path.lexists(path):
        if path.is_symlink() and not path.exists():
            raise InputError("is a broken symbolic link, not a folder", file=shown, key=key)
        if not path.is_dir():
            raise InputError(f"is {_kind(path)}, not a folder", file=shown, key=key)
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError("this folder is not writable", file=shown, key=key)
        return
    anc = _first_existing(path.absolute())
    if not anc.is_dir():
        raise InputError(f"cannot create a folder below {clip(str(anc), 60)}: it is {_kind(anc)}", file=shown, key=key)
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(f"cannot create the folder: {clip(str(anc), 60)} is not writable", file=shown, key=key)


def check_output_file(path: Path, key: str) -> None:
    """A regular file the tool may (re)write: not a folder or device, its folder creatable and writable."""
    shown = clip(str(path), 80)
    if os.path.lexists(path):
        st = os.stat(path) if path.exists() else None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise InputError(f"is {_kind(path)}, not a regular file", file=shown, key=key)
        if path.is_symlink():
            raise InputError("is a symbolic link; give the file itself", file=shown, key=key)
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise InputError("its folder is not writable", file=shown, key=key)
        return
    check_output_dir(path.parent, key)


def _kind(path: Path) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "unreadable"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
