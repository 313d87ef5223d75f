"""One error type for bad input: it names the file, the line and the field."""

from __future__ import annotations

import errno
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


def path_problem(path: str | Path, want: str = "file") -> str | None:
    """What keeps `path` from being read as a `want` ("file" or "folder"), in words; None when nothing does."""
    p = Path(path)
    try:
        p.stat()
    except FileNotFoundError:
        return "is a dangling symlink (its target does not exist)" if p.is_symlink() else "does not exist"
    except NotADirectoryError:
        return "does not exist (a parent is a file, not a folder)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop (too many levels of symbolic links)"
        return f"cannot be read ({exc.strerror or exc})"
    if want == "file" and p.is_dir():
        return "is a folder, expected a file"
    if want == "folder" and not p.is_dir():
        return "is a file, expected a folder"
    return None


def require_path(path: str | Path, what: str, want: str = "file") -> Path:
    """`path` if it can be read as a `want`, else an `InputError`: '<path>: <what> <problem>'."""
    problem = path_problem(path, want)
    if problem:
        raise InputError(f"{what} {problem}", path=path)
    return Path(path)
