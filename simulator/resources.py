"""Locates the built-in folders (device_profiles/, scenarios/) in a source checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

__all__ = ["builtin_dir"]

_PACKAGE = Path(__file__).resolve().parent


def builtin_dir(name: str) -> Path:
    """`name` is 'device_profiles' or 'scenarios'.

    A wheel carries them inside the package as `simulator/_builtin/<name>`; in a checkout (or an
    editable install) they sit beside the package. The wheel location is tried first: beside an
    installed package is site-packages, where another distribution's folder of the same name may lie.
    """
    for candidate in (_PACKAGE / "_builtin" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"built-in folder '{name}' not found beside or inside {_PACKAGE}")
