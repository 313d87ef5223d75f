"""One error type for bad input: it names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input data, located: `file:line: field: message`."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.message = message
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}{what}{message}")
