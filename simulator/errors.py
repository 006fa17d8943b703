"""User-facing input errors: one line naming the file, the key path and the problem."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(Exception):
    """Bad user input (scenario, profile, data). The CLI prints it as one line and exits with status 2."""

    def __init__(self, problem: str, *, file: str | None = None, key: str | None = None) -> None:
        self.problem = problem
        self.file = file
        self.key = key
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ": ".join(part for part in (self.file, self.key) if part)
        text = f"{where}: {self.problem}" if where else self.problem
        return " ".join(text.split())  # always a single line

    def at(self, *, file: str | None = None, key: str | None = None) -> "InputError":
        """The same problem, located (keeps an already-known location)."""
        return InputError(self.problem, file=self.file or file, key=self.key or key)
