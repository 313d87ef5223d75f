"""Published image-text benchmarks (XM3600, Multi30K, MMMU, xMMMU) read from fixtures written in their formats."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pytest
from PIL import Image

from helpers.published_vl_toys import SCHEMA, image_bytes, mmmu_row, write_mmmu, write_parquet, write_xmmmu
from hybridbatch.data.errors import InputError
from hybridbatch.data.published_vl import (
    XM3600_LANGUAGES,
    load_mmmu,
    load_multi30k,
    load_xm3600,
    load_xmmmu,
)


# ------------------------------------------------------------------------------------------------ XM3600
def xm3600_record(key: str, n: int = 2) -> dict:
    """A captions.jsonl line as published: image/key, image/locale, then one object per language."""
    record: dict = {"image/key": key, "image/locale": "en"}
    for lang in XM3600_LANGUAGES:
        texts = [f"{lang} caption {i} of {key}" for i in range(n)]
        record[lang] = {"caption": texts, "caption/tokenized": texts,
                        "caption/tokenized/lowercase": [t.lower() for t in texts]}
    return record


def write_xm3600(tmp_path, records, image_keys):
    images = tmp_path / "images"
    images.mkdir()
    for key in image_keys:
        (images / f"{key}.jpg").write_bytes(image_bytes((200, 10, 10), "JPEG"))
    path = tmp_path / "captions.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path, images


def test_xm3600_all_36_languages_each_caption_its_own_group(tmp_path):
    path, images = write_xm3600(tmp_path, [xm3600_record("000411001ff7dd4f"), xm3600_record("00a1b2")],
                                ["000411001ff7dd4f", "00a1b2"])
    cs = load_xm3600(path, images)
    cs.validate()
    assert len(cs.languages) == 36 and "quz" in cs.languages and "fil" in cs.languages
    assert cs.stats() == {lang: 4 for lang in XM3600_LANGUAGES}
    assert [i.id for i in cs.images] == ["000411001ff7dd4f", "00a1b2"]
    assert cs.images[0].source == str(images / "000411001ff7dd4f.jpg")
    de = [c for c in cs.captions if c.lang == "de" and c.image_ids == ("00a1b2",)]
    assert [c.text for c in de] == ["de caption 0 of 00a1b2", "de caption 1 of 00a1b2"]
    assert len({c.id for c in cs.captions}) == len(cs.captions) and all(c.group == "" for c in cs.captions)
    assert cs.skipped == {}


def test_xm3600_language_filter_missing_image_skip_and_strict(tmp_path):
    record = xm3600_record("k2")
    record["en"]["caption"].append("   ")
    path, images = write_xm3600(tmp_path, [xm3600_record("k1"), record], ["k2"])
    cs = load_xm3600(path, images, languages=["EN", "PT", "quz"])
    assert cs.stats() == {"en": 2, "pt": 2, "quz": 2}
    assert [i.id for i in cs.images] == ["k2"]
    assert cs.skipped == {"images missing from images_dir": 1, "captions of missing images": 6, "empty captions": 1}
    with pytest.raises(InputError) as err:
        load_xm3600(path, images, strict=True)
    assert err.value.line == 1 and err.value.field == "image/key" and "k1.jpg" in str(err.value)


@pytest.mark.parametrize("mutate, line, field", [
    (lambda r: r.pop("image/key"), 2, "image/key"),
    (lambda r: r.update({"xx": {"caption": ["a"]}}), 2, "xx"),
    (lambda r: r["de"].update({"caption": "not a list"}), 2, "de.caption"),
])
def test_xm3600_bad_input_names_file_line_field(tmp_path, mutate, line, field):
    bad = xm3600_record("k2")
    mutate(bad)
    path, images = write_xm3600(tmp_path, [xm3600_record("k1"), bad], ["k1", "k2"])
    with pytest.raises(InputError) as err:
        load_xm3600(path, images)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), line, field)
    with pytest.raises(InputError, match="languages"):
        load_xm3600(path, images, languages=["klingon"])


# ---------------------------------------------------------------------------------------------- Multi30K
MULTI30K = {
    "en": ["Two young guys with shaggy hair look at their hands.", "Several men in hard hats operate a pulley."],
    "de": ["Zwei junge weiße Männer sind im Freien.", "Mehrere Männer mit Schutzhelmen bedienen ein Antriebsradsystem."],
    "fr": ["Deux jeunes hommes blancs sont dehors.", "Plusieurs hommes en casque font fonctionner une poulie."],
    "cs": ["Dva mladí bílí muži jsou venku.", "Několik mužů v přilbách ovládá kladkový systém."],
}


def write_multi30k(tmp_path, split="test_2016_flickr", names=("1000092795.jpg", "10002456.jpg"), gz=True):
    task1 = tmp_path / "multi30k-dataset" / "data" / "task1"
    (task1 / "raw").mkdir(parents=True)
    (task1 / "image_splits").mkdir()
    (task1 / "image_splits" / f"{split}.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
    for lang, lines in MULTI30K.items():
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        if gz:
            (task1 / "raw" / f"{split}.{lang}.gz").write_bytes(gzip.compress(data))
        else:
            (task1 / "raw" / f"{split}.{lang}").write_bytes(data)
    images = tmp_path / "flickr30k-images"
    images.mkdir()
    for name in names:
        (images / name.split("#")[0]).write_bytes(image_bytes((0, 0, 255), "JPEG"))
    return tmp_path / "multi30k-dataset", images


def test_multi30k_lines_are_translations_sharing_a_group(tmp_path):
    root, images = write_multi30k(tmp_path)
    cs = load_multi30k(root, images_dir=images)
    cs.validate()
    assert cs.name == "multi30k-test_2016_flickr" and cs.stats() == {"cs": 2, "de": 2, "en": 2, "fr": 2}
    assert [(i.id, i.source) for i in cs.images] == [("1000092795", str(images / "1000092795.jpg")),
                                                     ("10002456", str(images / "10002456.jpg"))]
    by_group = {}
    for c in cs.captions:
        by_group.setdefault(c.group, {})[c.lang] = c
    assert sorted(by_group) == ["test_2016_flickr/1", "test_2016_flickr/2"]
    second = by_group["test_2016_flickr/2"]
    assert second["de"].text == MULTI30K["de"][1] and second["cs"].image_ids == ("10002456",)
    assert {c.image_ids for c in by_group["test_2016_flickr/1"].values()} == {("1000092795",)}


def test_multi30k_plain_files_mscoco_names_and_missing_images(tmp_path):
    names = ("COCO_val2014_000000398076.jpg#657409", "COCO_train2014_000000117071.jpg#367178")
    root, images = write_multi30k(tmp_path, split="test_2017_mscoco", names=names, gz=False)
    (images / "COCO_train2014_000000117071.jpg").unlink()
    cs = load_multi30k(root / "data" / "task1", split="test_2017_mscoco", languages=("en", "DE"),
                       images_dir=images)
    assert [i.id for i in cs.images] == ["COCO_val2014_000000398076"]
    assert [(c.id, c.text) for c in cs.captions] == [("test_2017_mscoco/1/de", MULTI30K["de"][0]),
                                                     ("test_2017_mscoco/1/en", MULTI30K["en"][0])]
    assert cs.skipped == {"lines whose image is missing": 1}
    with pytest.raises(InputError) as err:
        load_multi30k(root, split="test_2017_mscoco", images_dir=images, strict=True)
    assert err.value.line == 2 and err.value.path.endswith("test_2017_mscoco.txt")


def test_multi30k_bad_input(tmp_path):
    root, images = write_multi30k(tmp_path)
    fr = root / "data" / "task1" / "raw" / "test_2016_flickr.fr.gz"
    fr.write_bytes(gzip.compress(b"une seule ligne\n"))
    with pytest.raises(InputError, match="1 lines") as err:
        load_multi30k(root, images_dir=images)
    assert err.value.path == str(fr)
    assert len(load_multi30k(root, languages=("en", "de"), images_dir=images).captions) == 4
    with pytest.raises(InputError) as err:
        load_multi30k(root, languages=("en", "xx"), images_dir=images)
    assert err.value.field == "languages"
    with pytest.raises(InputError, match="no it captions"):
        load_multi30k(root, languages=("en", "it"), images_dir=images)
    with pytest.raises(InputError, match="unknown split"):
        load_multi30k(root, split="test_2099", images_dir=images)


# ------------------------------------------------------------------------------------------------- MMMU
def test_mmmu_questions_images_and_skips(tmp_path):
    write_mmmu(tmp_path)
    cs = load_mmmu(tmp_path)
    cs.validate()
    assert {c.id: c.text for c in cs.captions} == {
        "dev_Accounting_1": "What is the balance?", "validation_Accounting_1": "Compare and .",
        "validation_Art_Theory_1": "Which style is ?"}
    two = next(c for c in cs.captions if c.id == "validation_Accounting_1")
    assert two.image_ids == ("validation_Accounting_1/image_1", "validation_Accounting_1/image_2")
    assert two.lang == "en" and two.group == "validation_Accounting_1"
    art = next(i for i in cs.images if i.id == "validation_Art_Theory_1/image_1")
    assert Image.open(io.BytesIO(art.source)).getpixel((0, 0)) == (1, 2, 3)
    assert cs.skipped == {"questions empty without their image placeholders": 1}
    only = load_mmmu(tmp_path, splits=("test",), subjects=["Art_Theory"])
    assert [c.id for c in only.captions] == ["test_Art_Theory_1"]


def test_mmmu_single_folder_copy_and_subject_filter_by_id(tmp_path):
    write_parquet(tmp_path / "data" / "validation-00000-of-00002.parquet",
                  [mmmu_row("validation_Art_Theory_1", "Q1 <image 1>"), mmmu_row("validation_Math_3", "Q2")])
    cs = load_mmmu(tmp_path, splits="validation", subjects=["Art_Theory"])
    assert [c.id for c in cs.captions] == ["validation_Art_Theory_1"]


def test_mmmu_image_given_only_by_path_or_as_plain_binary(tmp_path):
    row = mmmu_row("validation_Geo_1", "Where? <image 1> <image 2>", 2)
    row["image_1"] = {"bytes": None, "path": "pics/a.png"}
    write_parquet(tmp_path / "Geo" / "validation-00000-of-00001.parquet", [row])
    plain = pa.schema([(f.name, pa.binary()) if f.name.startswith("image_") else f for f in SCHEMA])
    write_parquet(tmp_path / "Geo" / "dev-00000-of-00001.parquet",
                  [mmmu_row("dev_Geo_1", "Plain <image 1>") | {f"image_{k}": None for k in range(1, 8)}
                   | {"image_1": b"raw-bytes"}], plain)
    cs = load_mmmu(tmp_path)
    sources = {i.id: i.source for i in cs.images}
    assert sources["validation_Geo_1/image_1"] == str(tmp_path / "Geo" / "pics" / "a.png")
    assert isinstance(sources["validation_Geo_1/image_2"], bytes)
    assert sources["dev_Geo_1/image_1"] == b"raw-bytes"


def test_mmmu_bad_input(tmp_path):
    write_mmmu(tmp_path)
    with pytest.raises(InputError, match="unknown subject 'Physics'"):
        load_mmmu(tmp_path, subjects=["Physics"])
    with pytest.raises(InputError, match="unknown split"):
        load_mmmu(tmp_path, splits=("train",))
    no_question = pa.schema([f for f in SCHEMA if f.name != "question"])
    rows = [{k: v for k, v in mmmu_row("dev_Bio_1", "q").items() if k != "question"}]
    bad = write_parquet(tmp_path / "Bio" / "dev-00000-of-00001.parquet", rows, no_question)
    with pytest.raises(InputError) as err:
        load_mmmu(tmp_path, splits=("dev",))
    assert (err.value.path, err.value.field) == (str(bad), "question")
    wrong = pa.schema([(f.name, pa.string()) if f.name == "image_1" else f for f in SCHEMA])
    row = mmmu_row("dev_Bio_1", "q") | {"image_1": "not an image"}
    write_parquet(bad, [row], wrong)
    with pytest.raises(InputError, match="image struct") as err:
        load_mmmu(tmp_path, splits=("dev",))
    assert err.value.field == "image_1"
    write_parquet(bad, [mmmu_row("dev_Bio_1", "q"), mmmu_row(None, "q")])
    with pytest.raises(InputError) as err:
        load_mmmu(tmp_path, splits=("dev",), subjects=["Bio"])
    assert (err.value.line, err.value.field) == (2, "id")
    write_parquet(bad, [mmmu_row("dev_Accounting_1", "duplicate of another file")])
    with pytest.raises(InputError, match="duplicate id"):
        load_mmmu(tmp_path, splits=("dev",))


# ------------------------------------------------------------------------------------------------ xMMMU
def test_xmmmu_translations_share_a_group_and_images_come_from_one_copy(tmp_path):
    write_xmmmu(tmp_path)
    cs = load_xmmmu(tmp_path)
    cs.validate()
    assert cs.stats() == {"en": 2, "fr": 1, "ja": 1}
    art1 = {c.lang: c for c in cs.captions if c.group == "validation_Art_1"}
    assert art1["fr"].text == "Qu'est-ce que ?" and art1["ja"].text == "は何ですか？"
    assert {c.image_ids for c in art1.values()} == {("validation_Art_1/image_1",)}
    [image] = [i for i in cs.images if i.id == "validation_Art_1/image_1"]
    assert Image.open(io.BytesIO(image.source)).getpixel((0, 0)) == (10, 0, 0)  # the English copy
    french_images = load_xmmmu(tmp_path, image_lang="FR").images
    assert Image.open(io.BytesIO(french_images[0].source)).getpixel((0, 0)) == (0, 10, 0)
    complete = load_xmmmu(tmp_path, languages=["en", "fr"], complete_only=True)
    assert [c.id for c in complete.captions] == ["validation_Art_1/en", "validation_Art_1/fr"]
    assert complete.skipped == {"questions not in every language": 1}


def test_xmmmu_language_folders(tmp_path):
    write_parquet(tmp_path / "default" / "de" / "0000.parquet", [mmmu_row("validation_Art_1", "Was ist das?")])
    write_parquet(tmp_path / "default" / "pt_BR" / "0000.parquet", [mmmu_row("validation_Art_1", "O que é?")])
    cs = load_xmmmu(tmp_path)
    assert cs.stats() == {"de": 1, "pt-BR": 1} and len(cs.images) == 1
    assert {c.group for c in cs.captions} == {"validation_Art_1"}


def test_xmmmu_bad_input(tmp_path):
    write_xmmmu(tmp_path)
    with pytest.raises(InputError, match="no files for language 'de'") as err:
        load_xmmmu(tmp_path, languages=["en", "de"])
    assert err.value.field == "languages"
    odd = write_parquet(tmp_path / "data" / "translated_MMMU_val_300_with_image_Klingon.parquet", [])
    with pytest.raises(InputError) as err:
        load_xmmmu(tmp_path)
    assert (err.value.path, err.value.field) == (str(odd), "language")
    odd.unlink()
    no_id = pa.schema([f for f in SCHEMA if f.name != "id"])
    bad = write_parquet(tmp_path / "data" / "translated_MMMU_val_300_with_image_Hindi.parquet",
                        [{k: v for k, v in mmmu_row("x", "q").items() if k != "id"}], no_id)
    for complete_only in (False, True):
        with pytest.raises(InputError) as err:
            load_xmmmu(tmp_path, complete_only=complete_only)
        assert (err.value.path, err.value.field) == (str(bad), "id")
