"""User-facing input errors: one line naming the file, the key path and the problem."""

from __future__ import annotations

__all__ = ["InputError", "clip", "MAX_LINE"]

MAX_LINE = 600  # an error line never grows past this, whatever the input held


def clip(text: object, limit: int = 40) -> str:
    """`text` on one line, cut to `limit` characters (an error never echoes unbounded input)."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: max(1, limit - 3)] + "..."


class InputError(Exception):
    """Bad user input (scenario, profile, data). The CLI prints it as one line and exits with status 2."""

    def __init__(self, problem: str, *, file: str | None = None, key: str | None = None) -> None:
        self.problem = problem
        self.file = file
        self.key = key
        super().__init__(self.one_line())

    def one_line(self) -> str:
        file = clip(self.file, 160) if self.file else None
        key = clip(self.key, 120) if self.key else None
        where = ": ".join(part for part in (file, key) if part)
        text = f"{where}: {self.problem}" if where else self.problem
        return clip(text, MAX_LINE)  # always a single line, bounded

    def at(self, *, file: str | None = None, key: str | None = None) -> "InputError":
        """The same problem, located (keeps an already-known location)."""
        return InputError(self.problem, file=self.file or file, key=self.key or key)
