"""Property tests over the image-caption JSONL layout (`data/captions.py`) and image files (`data/images.py`):
awkward but legal captions load unchanged; any damage is an `InputError` naming file, line and field."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers.faults_inputs import bad_langs, damaged_bytes, good_langs, lines_bytes, mutate_json, texts
from hybridbatch.data.captions import load_caption_jsonl
from hybridbatch.data.errors import InputError
from hybridbatch.data.images import open_image
from hybridbatch.data.languages import normalize_lang

FAST = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
image_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)


def _image(folder: Path) -> str:
    path = folder / "pic.png"
    if not path.exists():
        Image.new("RGB", (4, 4), (200, 10, 10)).save(path)
    return "pic.png"


@st.composite
def caption_records(draw) -> list[dict]:
    langs = draw(st.lists(good_langs, min_size=1, max_size=3, unique_by=lambda c: normalize_lang(c)))
    n = draw(st.integers(1, 4))
    iids = draw(st.lists(image_ids, min_size=n, max_size=n, unique=True))
    return [{"id": i, "image": "pic.png",
             "captions": {lang: draw(st.lists(texts, min_size=1, max_size=2)) for lang in langs}} for i in iids]


@FAST
@given(records=caption_records())
def test_valid_caption_files_load_every_caption_unchanged(tmp_path, records):
    _image(tmp_path)
    path = tmp_path / "captions.jsonl"
    path.write_bytes(lines_bytes(records))
    cs = load_caption_jsonl(path)
    assert [i.id for i in cs.images] == [r["id"] for r in records]
    got = {(c.image_ids[0], c.lang): [] for c in cs.captions}
    for c in cs.captions:
        got[(c.image_ids[0], c.lang)].append(c.text)
    for r in records:
        for lang, caps in r["captions"].items():
            assert got[(r["id"], normalize_lang(lang))] == caps


@FAST
@given(records=caption_records(), data=st.data())
def test_field_damage_names_file_line_and_field(tmp_path, records, data):
    _image(tmp_path)
    index = data.draw(st.integers(0, len(records) - 1))
    mutated, where = data.draw(mutate_json(records[index]))
    records = [*records[:index], mutated, *records[index + 1:]]
    path = tmp_path / "captions.jsonl"
    path.write_bytes(lines_bytes(records))
    try:
        cs = load_caption_jsonl(path)
    except InputError as error:
        assert (error.path, error.line) == (str(path), index + 1), error
        if where:
            assert error.field is not None and error.field.split(".")[0] == str(where[0]), error
        return
    assert len(cs.images) == len(records)  # the mutation happened to be legal


@FAST
@given(records=caption_records(), data=st.data())
def test_damaged_bytes_give_input_error(tmp_path, records, data):
    _image(tmp_path)
    damaged, kind, line = data.draw(damaged_bytes(lines_bytes(records)))
    path = tmp_path / "captions.jsonl"
    path.write_bytes(damaged)
    try:
        load_caption_jsonl(path)
    except InputError as error:
        assert error.path == str(path)
        if kind == "invalid-utf8":
            assert error.line == line
        return
    assert kind in ("truncate", "nul-bytes")


@FAST
@given(records=caption_records(), code=bad_langs)
def test_bad_language_codes_are_named(tmp_path, records, code):
    _image(tmp_path)
    records[-1]["captions"] = {**records[-1]["captions"], code: ["text"]}
    path = tmp_path / "captions.jsonl"
    path.write_bytes(lines_bytes(records))
    with pytest.raises(InputError) as err:
        load_caption_jsonl(path)
    assert (err.value.path, err.value.line) == (str(path), len(records))
    assert err.value.field is not None and err.value.field.startswith("captions")


@FAST
@given(blob=st.binary(max_size=512), cut=st.integers(0, 300))
def test_any_damaged_image_bytes_are_an_input_error_or_an_rgb_image(blob, cut):
    good = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(good, format="PNG")
    for data in (blob, good.getvalue()[:cut], good.getvalue()[:cut] + blob):
        try:
            image = open_image(data, where="fuzz")
        except InputError as error:
            assert error.path == "fuzz"
            continue
        assert image.mode == "RGB" and image.width > 0 and image.height > 0
