"""Locates the built-in folders (device_profiles/, scenarios/) in a source checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

__all__ = ["builtin_dir"]

_PACKAGE = Path(__file__).resolve().parent


def builtin_dir(name: str) -> Path:
    """`name` is 'device_profiles' or 'scenarios'.

    In a checkout (or an editable install) they sit beside the package; a wheel carries them
    inside the package as `simulator/_builtin/<name>`.
    """
    for candidate in (_PACKAGE.parent / name, _PACKAGE / "_builtin" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"built-in folder '{name}' not found beside or inside {_PACKAGE}")
