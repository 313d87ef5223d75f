"""data/names.py: every name family gives the data its loader gives (the paths eval, grid and image-text used
before), `@languages` restricts exactly as the grid did, and bad names keep their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridbatch.data.beir_layout import load_generic, write_generic
from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.data.captions import load_caption_jsonl
from hybridbatch.data.errors import InputError
from hybridbatch.data.miracl import load_miracl
from hybridbatch.data.names import (
    MissingLanguages,
    parse_benchmark_spec,
    resolve_benchmark,
    resolve_caption_set,
)

MIRACL = Path(__file__).parent / "fixtures" / "miracl"
LANGS = ("en", "de", "fr")


def same_data(a: Benchmark, b: Benchmark) -> bool:
    """The same texts and judgements (a corpus streamed from disk read out)."""
    return (a.queries, list(a.corpus), a.qrels, a.query_groups) == (b.queries, list(b.corpus), b.qrels, b.query_groups)


def grid_subset(bench: Benchmark, spec: str, langs: list[str]) -> Benchmark:
    """What the grid's `load_benchmark_spec` did with `@languages` before data/names.py: load the base, subset."""
    return bench.subset(spec, set(langs), set(langs))


@pytest.fixture
def toy_folder(tmp_path) -> Path:
    queries = [Text(f"{lang}:q{i}", f"question {i} in {lang}", lang) for lang in LANGS for i in range(3)]
    corpus = [Text(f"{lang}:c{i}", f"answer {i} in {lang}", lang) for lang in LANGS for i in range(3)]
    qrels = {f"{x}:q{i}": {f"{y}:c{i}": 1 for y in LANGS} for x in LANGS for i in range(3)}
    write_generic(Benchmark("toy", queries, corpus, qrels), tmp_path / "toy")
    return tmp_path / "toy"


def test_parse_benchmark_spec():
    assert parse_benchmark_spec("xquad-r:test@en,DE") == ("xquad-r:test", ["en", "de"])
    assert parse_benchmark_spec("mlqa-r") == ("mlqa-r", None)
    assert parse_benchmark_spec("/data/a@b/folder") == ("/data/a@b/folder", None)  # '@' in a folder name
    assert parse_benchmark_spec("emoji-cldr:test@en,pt_BR") == ("emoji-cldr:test", ["en", "pt-BR"])
    with pytest.raises(ValueError, match="listed twice"):
        parse_benchmark_spec("mlqa-r@en,en")


def test_a_generic_folder_with_and_without_languages(toy_folder):
    plain = resolve_benchmark(toy_folder)
    assert plain.name == "toy" and same_data(plain, load_generic(toy_folder))
    assert same_data(resolve_benchmark(str(toy_folder)), plain)
    spec = f"{toy_folder}@de,en"
    restricted = resolve_benchmark(spec)
    assert restricted.name == spec and restricted.query_languages == restricted.corpus_languages == ["de", "en"]
    assert same_data(restricted, grid_subset(load_generic(toy_folder), spec, ["de", "en"]))
    assert len(restricted.queries) == 6 and all(len(rels) == 2 for rels in restricted.qrels.values())


def test_an_existing_folder_whose_name_ends_in_languages_is_that_folder(toy_folder, tmp_path):
    odd = tmp_path / "bench@en"
    toy_folder.rename(odd)
    assert same_data(resolve_benchmark(str(odd)), load_generic(odd))


def test_a_language_the_benchmark_lacks_is_named(toy_folder):
    with pytest.raises(MissingLanguages, match=r"\['zh'\] not among the languages of .*toy \(queries \['de', "
                                               r"'en', 'fr'\], candidates \['de', 'en', 'fr'\]\)"):
        resolve_benchmark(f"{toy_folder}@en,zh")
    assert issubclass(MissingLanguages, InputError)  # exit 2 under the one table


@pytest.mark.parametrize("name, expected", [
    ("does-not-exist", r"does-not-exist: unknown benchmark: not xquad-r\[:train\|:test\], mlqa-r"),
    ("does-not-exist@en,de", r"does-not-exist: unknown benchmark: not xquad-r"),
])
def test_an_unknown_name_keeps_its_one_line_error(tmp_path, monkeypatch, name, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=expected):
        resolve_benchmark(name)


def test_a_file_is_not_a_benchmark(tmp_path):
    (tmp_path / "qrels.tsv").write_text("q\tc\t1\n")
    with pytest.raises(InputError, match="benchmark is a file, expected a folder"):
        resolve_benchmark(tmp_path / "qrels.tsv")


def test_miracl_reads_its_own_languages_and_split():
    for spec in (f"miracl:{MIRACL}", f"miracl:{MIRACL}@de", f"miracl:{MIRACL}@de#train"):
        ours, theirs = resolve_benchmark(spec), load_miracl(spec)
        assert ours.name == theirs.name and same_data(ours, theirs) and ours.skipped == theirs.skipped
    # the grid's old path (all languages, then the subset) gives the same texts and judgements
    spec = f"miracl:{MIRACL}@de"
    assert same_data(resolve_benchmark(spec), grid_subset(load_miracl(f"miracl:{MIRACL}"), spec, ["de"]))


def test_lareqa_names_and_their_languages(lareqa_dir):
    from hybridbatch.data.lareqa import load_lareqa

    full = load_lareqa("xquad-r:test", lareqa_dir)
    ours = resolve_benchmark("xquad-r:test", lareqa_dir)
    assert ours.name == full.name == "xquad-r:test" and same_data(ours, full)
    restricted = resolve_benchmark("xquad-r:test@en,de", data_dir=lareqa_dir)
    assert same_data(restricted, grid_subset(full, "xquad-r:test@en,de", ["en", "de"]))
    assert restricted.name == "xquad-r:test@en,de" and len(restricted.queries) == 2 * 578
    with pytest.raises(MissingLanguages, match=r"\['el'\] not among the languages of mlqa-r"):
        resolve_benchmark("mlqa-r@en,el", lareqa_dir)


# --------------------------------------------------------------------------------------------- caption sets
def write_captions(folder: Path) -> Path:
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(3):
        (folder / "images" / f"{i}.png").write_bytes(b"not opened here")
        rows.append({"id": f"img{i}", "image": f"images/{i}.png",
                     "captions": {"en": [f"picture {i}"], "de": [f"Bild {i}"], "fr": [f"image {i}"]}})
    path = folder / "caps.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_caption_file_with_and_without_languages(tmp_path):
    path = write_captions(tmp_path)
    plain, reference = resolve_caption_set(str(path)), load_caption_jsonl(path)
    assert plain.name == reference.name and plain.images == reference.images and plain.captions == reference.captions
    restricted = resolve_caption_set(f"{path}@fr,en")
    assert restricted.name == reference.name and restricted.languages == ["en", "fr"]
    assert restricted.images == reference.images
    assert restricted.captions == [c for c in reference.captions if c.lang in ("en", "fr")]
    with pytest.raises(MissingLanguages, match=r"\['zh'\] not among the caption languages of .*caps.jsonl"):
        resolve_caption_set(f"{path}@en,zh")


@pytest.mark.parametrize("name, loader, expected", [
    ("emoji-cldr:test", "emoji_cldr.load_emoji_cldr", ("test",)),
    ("emoji-cldr:", "emoji_cldr.load_emoji_cldr", ("train",)),
    ("openclipart:all", "openclipart.load_openclipart", ("all",)),
    ("xm3600:/d/xm", "published_vl.load_xm3600", (Path("/d/xm/captions.jsonl"), Path("/d/xm/images"))),
    ("multi30k:/d/m30k", "published_vl.load_multi30k", (Path("/d/m30k"),)),
    ("mmmu:/d/mmmu", "published_vl.load_mmmu", (Path("/d/mmmu"),)),
    ("xmmmu:/d/xmmmu", "published_vl.load_xmmmu", (Path("/d/xmmmu"),)),
])
def test_each_caption_set_name_reaches_its_loader(monkeypatch, name, loader, expected):
    from hybridbatch.data.captions import Caption, CaptionSet, ImageItem

    calls = []

    def fake(*args):
        calls.append(args)
        return CaptionSet("fake", [ImageItem("i", b"")], [Caption("c", "text", "en", ("i",), "i#0")])

    module, func = loader.split(".")
    monkeypatch.setattr(f"hybridbatch.data.{module}.{func}", fake)
    assert resolve_caption_set(name).name == "fake" and calls == [expected]
    assert resolve_caption_set(f"{name}@en").languages == ["en"]


@pytest.mark.parametrize("kind", ["emoji-cldr", "openclipart"])
def test_a_caption_set_split_that_does_not_exist_names_the_set(kind):
    """`emoji-cldr:nope` said only "split must be one of ..." (no set named); now one located InputError."""
    from hybridbatch.data.errors import InputError
    from hybridbatch.data.names import resolve_caption_set

    with pytest.raises(InputError, match=rf"caption set '{kind}:nope': no split 'nope'; expected {kind}:train or "):
        resolve_caption_set(f"{kind}:nope")
