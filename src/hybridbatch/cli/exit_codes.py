"""One table from exception kinds to exit codes, used by every `hybridbatch` command.

| code | meaning |
|---|---|
| 0 | done |
| 1 | internal error: a bug (the message says which exception; `-v` also prints the traceback) |
| 2 | bad input, config or arguments: a missing / unreadable-as-text / wrong-kind path, malformed data, an unknown model or benchmark; nothing was written |
| 3 | stopped on non-finite numbers: a NaN/inf training loss, NaN/inf embeddings or scores in evaluation |
| 4 | the run folder (or grid output) is in use by another process, or already holds a run |
| 5 | the system refused: disk full, permission denied, read-only file system, I/O error |
| 130 | interrupted (Ctrl-C) |

Every error prints exactly one line on stderr, `hybridbatch: error: <message>` (the message's lines joined
by "; ", at most 300 characters). This module knows no command: exception classes of the lower layers are named
here by module and class, and matched only when their module is already imported (an exception of a
module never imported cannot be raised), so importing this module imports nothing heavy (no torch).
"""

from __future__ import annotations

import errno
import logging
import sys
import traceback
from collections.abc import Callable

OK, INTERNAL, BAD_INPUT, NON_FINITE, RUN_BUSY, SYSTEM, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
MAX_MESSAGE = 300

# (module, class name) -> code; checked in this order, the first match wins (subclasses before bases).
_TABLE: tuple[tuple[str, str, int], ...] = (
    ("hybridbatch.evaluation.metrics", "MetricOutOfRange", INTERNAL),
    ("hybridbatch.training.rundir", "RunLocked", RUN_BUSY),
    ("hybridbatch.training.rundir", "RunExists", RUN_BUSY),
    ("hybridbatch.training.trainer", "NonFiniteLoss", NON_FINITE),
    ("hybridbatch.training.image_text", "NonFiniteImageTextLoss", NON_FINITE),
    ("hybridbatch.retrieval.search", "NonFiniteEmbeddings", NON_FINITE),
    ("hybridbatch.retrieval.store_format", "NonFiniteStoreEmbeddings", NON_FINITE),
    ("hybridbatch.data.errors", "InputError", BAD_INPUT),
    ("hybridbatch.training.config", "ConfigError", BAD_INPUT),
    ("hybridbatch.models.registry", "UnknownModelError", BAD_INPUT),
    ("hybridbatch.models.offline", "OfflinePackageMissing", BAD_INPUT),
    ("hybridbatch.training.checkpoint", "CorruptCheckpoint", BAD_INPUT),
    ("yaml", "YAMLError", BAD_INPUT),
)
# OSErrors that mean "the path you gave is wrong" (bad input), not "the system refused".
_BAD_PATH_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.EEXIST}


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an exception, from the table above."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    for module_name, class_name, code in _TABLE:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return code
    if isinstance(exc, OSError):
        return BAD_INPUT if exc.errno in _BAD_PATH_ERRNOS or exc.errno is None else SYSTEM
    if isinstance(exc, (UnicodeError, ValueError)):  # a value the user gave (or a file held) is wrong
        return BAD_INPUT
    return INTERNAL


def one_line(exc: BaseException) -> str:
    """`hybridbatch: error: <the message's lines joined by '; ', at most MAX_MESSAGE characters>`."""
    text = str(exc).strip()
    if isinstance(exc, KeyError):  # KeyError's str is the repr of the key
        text = f"missing key {text}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]  # a list of bad keys stays on one line
    first = "; ".join(lines) if lines else type(exc).__name__
    if len(first) > MAX_MESSAGE:
        first = first[:MAX_MESSAGE - 3] + "..."
    code = exit_code_for(exc)
    if code == INTERNAL:
        first = f"internal error ({type(exc).__name__}): {first} (rerun with -v for the traceback)"
    elif code == INTERRUPTED:
        first = "interrupted"
    return f"hybridbatch: error: {first}"


def report_error(exc: BaseException) -> int:
    """Print the one-line error (and, with -v / debug logging, the traceback first); return the exit code."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        traceback.print_exception(exc, file=sys.stderr)
    print(one_line(exc), file=sys.stderr)
    return exit_code_for(exc)


def run_command(func: Callable, args) -> int:
    """`func(args)` -> its exit code (None counts as 0); any exception -> one line on stderr and its code."""
    try:
        code = func(args)
    except SystemExit:  # argparse usage errors and explicit exits keep their own code and message
        raise
    except BaseException as exc:  # noqa: BLE001 - this is the one place that turns exceptions into exit codes
        return report_error(exc)
    return OK if code is None else int(code)
