"""The generic caption layout: what a line becomes, round trip, and bad input named by file, line and field."""

import json

import pytest

from hybridbatch.data.captions import Caption, CaptionSet, ImageItem, load_caption_jsonl, save_caption_jsonl
from hybridbatch.data.errors import InputError


def _write(folder, rows, images=("a.png", "b.png")):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name in images:
        (folder / "images" / name).write_bytes(b"not checked here")
    path = folder / "set.jsonl"
    path.write_text("".join((json.dumps(r, ensure_ascii=False) if isinstance(r, dict) else r) + "\n" for r in rows),
                    encoding="utf-8")
    return path


GOOD = [
    {"id": "a", "image": "images/a.png", "captions": {"en": ["a cat", "a small cat"], "de": ["eine Katze"],
                                                        "pt_BR": ["um gato"]}},
    "",
    {"id": "b", "image": "images/b.png", "captions": {"en": ["a dog"]}},
]


def test_line_becomes_images_captions_ids_and_groups(tmp_path):
    cs = load_caption_jsonl(_write(tmp_path, GOOD))
    assert cs.name == "set" and [i.id for i in cs.images] == ["a", "b"]
    assert cs.images[0].source == str(tmp_path / "images" / "a.png")
    by_id = {c.id: c for c in cs.captions}
    assert sorted(by_id) == ["a/de/0", "a/en/0", "a/en/1", "a/pt-BR/0", "b/en/0"]
    assert by_id["a/pt-BR/0"] == Caption("a/pt-BR/0", "um gato", "pt-BR", ("a",), "a#0")
    # same position in different languages = translations (one group); another position = its own group
    assert {c.id for c in cs.captions if c.group == "a#0"} == {"a/en/0", "a/de/0", "a/pt-BR/0"}
    assert by_id["a/en/1"].group == "a#1" and by_id["b/en/0"].group == "b#0"
    assert cs.stats() == {"de": 1, "en": 3, "pt-BR": 1}
    cs.validate()


def test_round_trip_keeps_relative_paths(tmp_path):
    src = load_caption_jsonl(_write(tmp_path, GOOD))
    out = save_caption_jsonl(tmp_path / "copy.jsonl", src)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["image"] == "images/a.png" and rows[0]["captions"]["pt-BR"] == ["um gato"]
    back = load_caption_jsonl(out)
    assert back.images == src.images and back.captions == src.captions


def test_absolute_image_path_and_outside_folder(tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "x.png").write_bytes(b"x")
    path = _write(tmp_path / "set", [{"id": "x", "image": str(other / "x.png"), "captions": {}}], images=())
    cs = load_caption_jsonl(path)
    assert cs.images[0].source == str(other / "x.png") and cs.captions == []
    save_caption_jsonl(tmp_path / "set" / "again.jsonl", cs)
    assert json.loads((tmp_path / "set" / "again.jsonl").read_text())["image"] == str(other / "x.png")


def test_check_images_false_allows_missing_files(tmp_path):
    path = _write(tmp_path, [{"id": "z", "image": "images/none.png", "captions": {"en": ["z"]}}])
    assert [i.id for i in load_caption_jsonl(path, check_images=False).images] == ["z"]


def test_save_refuses_what_the_layout_cannot_hold(tmp_path):
    img = ImageItem("a", str(tmp_path / "a.png"))
    two = CaptionSet("s", [img, ImageItem("b", str(tmp_path / "b.png"))],
                     [Caption("c", "both", "en", ("a", "b"))])
    with pytest.raises(ValueError, match="names 2 images"):
        save_caption_jsonl(tmp_path / "s.jsonl", two)
    with pytest.raises(ValueError, match="bytes"):
        save_caption_jsonl(tmp_path / "s.jsonl", CaptionSet("s", [ImageItem("a", b"\x89PNG")], []))
    assert not (tmp_path / "s.jsonl").exists()


A = {"id": "a", "image": "images/a.png", "captions": {"en": ["a cat"]}}


@pytest.mark.parametrize("row, field", [
    ("{broken", None),
    ('["a list"]', None),
    ({**A, "extra": 1}, "extra"),
    ({"id": "b", "image": "images/b.png"}, "captions"),
    ({"image": "images/b.png", "captions": {}}, "id"),
    ({**A, "id": "a"}, "id"),  # duplicate
    ({**A, "id": "has space"}, "id"),
    ({**A, "id": 7}, "id"),
    ({**A, "id": "b", "image": "images/missing.png"}, "image"),
    ({**A, "id": "b", "image": ""}, "image"),
    ({**A, "id": "b", "captions": {"xx-klingon": ["x"]}}, "captions.xx-klingon"),
    ({**A, "id": "b", "captions": {"en!": ["x"]}}, "captions.en!"),
    ({**A, "id": "b", "captions": {"pt_BR": ["x"], "pt-br": ["y"]}}, "captions.pt-br"),
    ({**A, "id": "b", "captions": {"en": "not a list"}}, "captions.en"),
    ({**A, "id": "b", "captions": {"en": ["ok", "  "]}}, "captions.en"),
    ({**A, "id": "b", "captions": {"en": [3]}}, "captions.en"),
    ({**A, "id": "b", "captions": ["en"]}, "captions"),
])
def test_bad_input_names_file_line_field(tmp_path, row, field):
    path = _write(tmp_path, [A, "", row])
    with pytest.raises(InputError) as err:
        load_caption_jsonl(path)
    assert err.value.path == str(path) and err.value.line == 3 and err.value.field == field
