"""Reading line-oriented input (JSONL, TREC runs, qrels) with errors that name the file and the line.

`utf8_lines` decodes a binary file line by line (a UTF-8 byte order mark at the start is ignored; a line
that is not UTF-8 is an `InputError` naming it); `jsonl_objects` yields the JSON object of every non-blank
line of a JSONL file (gzipped if its name ends in `.gz`), and malformed JSON, a number too long to convert,
nesting too deep or a value that is not an object is an `InputError` naming the file and line;
`trec_run_lines` yields the six columns of every line of a TREC run. This module
knows nothing about what the rows mean: each loader checks its own fields and names them.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hybridbatch.data.errors import InputError

UTF8_BOM = b"\xef\xbb\xbf"


def utf8_lines(handle: Iterable[bytes], path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a binary file; a line that is not UTF-8 is an `InputError`."""
    for line_no, raw in enumerate(handle, start=1):
        if line_no == 1 and raw.startswith(UTF8_BOM):  # a byte order mark is not part of the first line
            raw = raw[len(UTF8_BOM):]
        try:
            yield line_no, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})", path=path,
                             line=line_no) from exc


def parse_json_line(line: str, path: str | Path, line_no: int) -> Any:
    """The JSON value of one line; anything `json.loads` refuses is an `InputError` naming file and line."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON ({exc.msg} at column {exc.colno})", path=path, line=line_no) from exc
    except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep
        raise InputError(f"malformed JSON ({exc})", path=path, line=line_no) from None


def jsonl_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line of the JSONL file `path` (read as gzip if it ends in
    `.gz`). A file that cannot be opened is an `InputError` "cannot read (...)"."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        handle = opener(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", path=path) from exc
    with handle:
        for line_no, line in utf8_lines(handle, path):
            if not line.strip():
                continue
            row = parse_json_line(line, path, line_no)
            if not isinstance(row, dict):
                raise InputError(f"expected a JSON object, got {type(row).__name__}", path=path, line=line_no)
            yield line_no, row


def has_lone_surrogate(node: Any) -> bool:
    """True if a string anywhere in `node` (a parsed JSON value) holds half of a UTF-16 pair: legal as a JSON
    escape, but not text any tokenizer or UTF-8 writer can take."""
    if isinstance(node, str):
        return any(0xD800 <= ord(ch) <= 0xDFFF for ch in node)
    if isinstance(node, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in node.items())
    if isinstance(node, list):
        return any(has_lone_surrogate(v) for v in node)
    return False


def trec_run_lines(lines: Iterable[tuple[int, str]], path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, the 6 columns) of each non-blank line of a TREC run given as (line number, text) pairs
    (e.g. `utf8_lines`); another column count is an `InputError` naming the file and line."""
    for line_no, line in lines:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise InputError(f"expected 6 columns (qid Q0 docid rank score tag), got {len(parts)}",
                             path=path, line=line_no)
        yield line_no, parts
