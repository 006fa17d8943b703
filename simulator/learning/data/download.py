"""Fetching the standard dataset files from their official mirrors (md5-checked) and unpacking archives."""

from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from simulator.config.dataset_files import RESOURCES, Resource, archive_name
from simulator.errors import InputError

__all__ = ["Resource", "RESOURCES", "archive_name", "fetch", "extract", "how_to_get"]

_CHUNK_BYTES = 1 << 20


def how_to_get(name: str, root: Path) -> str:
    """One sentence telling a user how to obtain the dataset's files."""
    resources = RESOURCES.get(name, ())
    source = resources[0].url if len(resources) == 1 else resources[0].url.rsplit("/", 1)[0] + "/"
    fetch_hint = f"set dataset.download: true to fetch them from {source}, or download them yourself into {root}"
    if name == "fashion_mnist":
        return f"install the Debian package (apt-get install dataset-fashion-mnist), or {fetch_hint}"
    return fetch_hint


def fetch(name: str, root: Path, *, only: Iterable[str] | None = None, timeout_s: float = 60.0) -> list[Path]:
    """Download the published files of `name` (those named in `only`, default all) absent from `root`.

    Returns the paths written. Each file streams into a temporary file beside its destination, is
    md5-checked, then renamed into place, so an interrupted or corrupt transfer never leaves a file under
    the real name. Raises InputError when the network or the mirror fails, or the checksum does not match.
    """
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the dataset folder {root}: {exc.strerror or exc}") from None
    wanted = None if only is None else set(only)
    written = []
    for res in RESOURCES[name]:
        dest = root / res.filename
        if dest.exists() or (wanted is not None and res.filename not in wanted):
            continue
        _download(res, dest, name, timeout_s)
        written.append(dest)
    return written


def _download(res: Resource, dest: Path, name: str, timeout_s: float) -> None:
    try:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        problem = f"cannot write into the dataset folder: {exc.strerror or exc}"
        raise InputError(problem, file=str(dest.parent)) from None
    tmp = Path(tmp_name)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(res.url, timeout=timeout_s) as response:
            while chunk := response.read(_CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != res.md5:
            raise InputError(
                f"downloaded {res.url} but its md5 is {digest.hexdigest()}, not the published {res.md5}; "
                "nothing was kept (try again, or fetch the file by hand)",
                file=str(dest),
            )
        os.replace(tmp, dest)
    # URLError (no network, DNS, HTTP status), timeouts, resets, truncated bodies and bad URLs all land here.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise InputError(
            f"cannot download {res.url} ({reason}); dataset files missing from {dest.parent}: {dest.name}; "
            f"{how_to_get(name, dest.parent)}",
            file=str(dest.parent),
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def extract(archive: Path, members: Iterable[str], root: Path) -> list[Path]:
    """Unpack the named regular-file members of a .tar.gz into `root` (paths kept); returns those written.

    Only the listed names are written (never a path from the archive itself, so nothing can land outside
    `root`), each through a temporary file and a rename. One streaming pass: a .tar.gz has no index.
    """
    wanted = set(members)
    written: list[Path] = []
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                rel = member.name.removeprefix("./")
                source = tar.extractfile(member) if rel in wanted and member.isfile() else None
                if source is None:
                    continue
                dest = root / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
                try:
                    with os.fdopen(fd, "wb") as out:
                        while chunk := source.read(_CHUNK_BYTES):
                            out.write(chunk)
                    os.replace(tmp_name, dest)
                finally:
                    Path(tmp_name).unlink(missing_ok=True)
                written.append(dest)
    except (tarfile.TarError, OSError, EOFError) as exc:
        problem = f"cannot unpack the archive ({exc}); delete it and fetch it again"
        raise InputError(problem, file=str(archive)) from None
    return written
