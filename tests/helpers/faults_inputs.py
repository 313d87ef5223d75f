"""Hypothesis strategies for bad input: awkward texts, language codes, JSON values and file damage.

Shared by the loader property tests. Every strategy here produces *data*, never files; the tests write
them and check that a loader either accepts the input unchanged, skips it in a documented, counted way,
or raises `InputError` naming the file, the line and the field.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from hypothesis import strategies as st

# Texts a loader must pass through unchanged: right-to-left scripts with direction marks, both Unicode
# normalization forms of the same word, control and zero-width characters, line/paragraph separators that
# are not JSONL line ends, emoji, and one very long text.
SPECIAL_TEXTS = [
    "مرحبا بالعالم",  # Arabic (RTL)
    "שלום עולם \u200f(עברית)\u200e",  # Hebrew with RLM / LRM marks
    unicodedata.normalize("NFC", "café naïve Ångström"),
    unicodedata.normalize("NFD", "café naïve Ångström"),
    "bell\x07 esc\x1b del\x7f nul\x00 inside",
    "zero\u200bwidth\ufeffbom",
    "line\u2028separator\u2029paragraph\x85next",
    "emoji 🙂👩‍🔬 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "tab\tand\rcarriage return",
    "x" * 100_000,
]
texts = st.one_of(
    st.sampled_from(SPECIAL_TEXTS),
    st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != ""),
)
GOOD_LANGS = ["en", "de", "zh-TW", "pt_BR", "AR", "sr-Latn", "yue", "es-419"]
good_langs = st.sampled_from(GOOD_LANGS)
# Codes that `normalize_lang` refuses: unknown primary subtags, malformed tags, empty, non-ASCII look-alikes.
BAD_LANGS = ["xx", "english", "e n", "", "-en", "en--US", "ＥＮ", "e\u0301n", "zz-ZZ", "en_", "123", "qqq"]
bad_langs = st.sampled_from(BAD_LANGS)
ids = st.text(alphabet=st.characters(categories=("L", "N"), include_characters="-_:."), min_size=1, max_size=12)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=6)


def wrong_type_for(value: Any) -> st.SearchStrategy:
    """A JSON value of another type than `value` (a string stays a non-string, a dict a non-dict...)."""
    return json_values.filter(lambda other: type(other) is not type(value))


def lines_bytes(records: list[Any]) -> bytes:
    """JSONL as the documented layouts are written: UTF-8, no ASCII escaping, one record per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def line_of_offset(data: bytes, offset: int) -> int:
    """1-based line number of the byte at `offset` (JSONL lines end with b'\\n')."""
    return data.count(b"\n", 0, offset) + 1


@st.composite
def damaged_bytes(draw, data: bytes) -> tuple[bytes, str, int | None]:
    """`data` damaged as files get damaged: cut short, or with bytes that are not UTF-8 put in.

    Returns (new bytes, kind, line of the damage or None when the damage cannot be pinned to a line).
    """
    kind = draw(st.sampled_from(["truncate", "invalid-utf8", "nul-bytes"]))
    offset = draw(st.integers(0, max(0, len(data) - 1)))
    if kind == "truncate":
        return data[:offset], kind, None
    junk = b"\xff\xfe" if kind == "invalid-utf8" else b"\x00"
    return data[:offset] + junk + data[offset:], kind, line_of_offset(data, offset)


@st.composite
def mutate_json(draw, obj: Any) -> tuple[Any, list[Any]]:
    """A copy of `obj` with one node (chosen along a random path) deleted or replaced by another type.

    Returns (mutated object, the path of keys/indices to the mutated node).
    """
    root = json.loads(json.dumps(obj))
    node, path = root, []
    while True:
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) \
            if isinstance(node, list) else []
        if not children:
            break
        key, child = draw(st.sampled_from(children))
        path.append(key)
        if not isinstance(child, (dict, list)) or draw(st.booleans()):
            break
        node = child
    if not path:
        return draw(wrong_type_for(root)), path
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[last]
    else:
        parent[last] = draw(wrong_type_for(parent[last]))
    return root, path
