"""Atomic writes: a reader never sees a half-written file or folder.

`atomic_write` writes one file; `atomic_folder` (or `temp_folder_beside` + `replace_folder`, for writers that
publish from another place than where they started) builds a folder beside its destination and renames it
into place. Knows nothing about what the files hold.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path`, fsync, then rename over `path`.

    If the block raises, the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> None:
    """Strict JSON, atomically: a NaN or infinite float (e.g. a rank distance no query defines) becomes null."""
    with atomic_write(path) as handle:
        json.dump(finite_or_null(obj), handle, indent=2, ensure_ascii=False, allow_nan=False)
        handle.write("\n")


def finite_or_null(obj: Any) -> Any:
    """`obj` with every non-finite float (in dicts, lists and tuples, at any depth) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite_or_null(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(value) for value in obj]
    return obj


# ------------------------------------------------------------------------------------------- atomic folders
def temp_folder_beside(dest: str | Path) -> Path:
    """An empty folder `.NAME.XXXX.tmp` beside `dest` (its parents made), with the mode `mkdir` would give."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    return tmp


def follow_umask(folder: str | Path) -> None:
    """Give `folder` and everything in it the modes `mkdir` / `open` would (mkdtemp and mkstemp make
    owner-only entries; a shared cache or run folder should follow the umask instead)."""
    umask = _umask()
    for path in [Path(folder), *Path(folder).rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def replace_folder(tmp: str | Path, dest: str | Path, *, check: Callable[[Path], None] | None = None,
                   done: Callable[[Path], bool] | None = None) -> None:
    """Rename the finished folder `tmp` onto `dest`.

    An existing `dest` is first passed to `check` (which raises to refuse replacing it), then moved into a
    folder `.NAME.XXXX.old` beside it and removed only after the rename: a crash in between leaves the old
    copy whole. If the rename fails because another writer put a folder at `dest` meanwhile and `done(dest)`
    says theirs is finished, theirs stays and `tmp` is left to the caller to remove.
    """
    tmp, dest = Path(tmp), Path(dest)
    old = None
    if dest.exists() or dest.is_symlink():
        if check is not None:
            check(dest)
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.replace(dest, old / dest.name)
    try:
        os.replace(tmp, dest)
    except OSError:
        if done is not None and dest.is_dir() and done(dest):
            pass  # a concurrent writer finished first: theirs is as good as ours
        else:
            if old is not None and not dest.exists():
                os.replace(old / dest.name, dest)  # put the old copy back
                old.rmdir()
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_folder(dest: str | Path, *, check: Callable[[Path], None] | None = None,
                  done: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield an empty folder beside `dest`; when the block ends without error, give its entries the modes the
    umask gives and rename it onto `dest` (`replace_folder`: `check` may refuse an existing `dest`, `done`
    accepts a concurrent writer's). The temporary folder is removed whatever happens; if the block raises,
    `dest` is left as it was.
    """
    tmp = temp_folder_beside(dest)
    try:
        yield tmp
        follow_umask(tmp)
        replace_folder(tmp, dest, check=check, done=done)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
