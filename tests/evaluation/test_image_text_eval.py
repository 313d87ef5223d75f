"""Image-text evaluation: the three directions against brute-force rankings of a fake encoder."""

from __future__ import annotations

import numpy as np
import pytest

from hybridbatch.data.captions import Caption, CaptionSet, ImageItem
from hybridbatch.evaluation.image_text import evaluate_image_text


class FakeEncoder:
    """Looks each text / image up in a table of fixed unit vectors."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = {k: v / np.linalg.norm(v) for k, v in table.items()}

    def encode_texts(self, texts, batch_size=64):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)

    def encode_images(self, images, batch_size=32):
        return np.stack([self.table[i] for i in images]).astype(np.float32)


def _toy(seed: int = 0, n_images: int = 7, langs=("de", "en", "zh")):
    rng = np.random.default_rng(seed)
    images = [ImageItem(f"img{i}", b"") for i in range(n_images)]
    captions, table = [], {}
    for i in range(n_images):
        center = rng.normal(size=16)
        table[f"img{i}"] = center + rng.normal(scale=0.8, size=16)
        for lang in langs:
            text = f"{lang}:{i}"
            table[text] = center + rng.normal(scale=0.8, size=16) + (3.0 if lang == "zh" else 0.0)
            captions.append(Caption(f"img{i}/{lang}/0", text, lang, (f"img{i}",), f"img{i}#0"))
    return CaptionSet("toy", images, captions), FakeEncoder(table)


def _rank_of(scores: np.ndarray, target: int) -> int:
    return int((scores > scores[target]).sum()) + 1  # no exact ties in random data


def test_text_to_image_per_language_matches_brute_force():
    cs, enc = _toy()
    ev = evaluate_image_text(enc, cs, images=[i.id for i in cs.images], show_progress=False)
    img = enc.encode_images([i.id for i in cs.images])
    for lang in ("de", "en", "zh"):
        caps = [c for c in cs.captions if c.lang == lang]
        q = enc.encode_texts([c.text for c in caps])
        ranks = [_rank_of(q[j] @ img.T, int(c.image_ids[0][3:])) for j, c in enumerate(caps)]
        block = ev.metrics["monolingual"]["per_language"][lang]
        assert block["success@1"] == pytest.approx(np.mean([r == 1 for r in ranks]))
        assert block["map"] == pytest.approx(np.mean([1 / r for r in ranks]))
    assert ev.metrics["setting_names"]["monolingual"].startswith("text -> image")


def test_image_to_pooled_captions_and_rank_distance_match_brute_force():
    cs, enc = _toy(seed=1)
    ev = evaluate_image_text(enc, cs, images=[i.id for i in cs.images], show_progress=False)
    img = enc.encode_images([i.id for i in cs.images])
    txt = enc.encode_texts([c.text for c in cs.captions])
    aps, distances = [], []
    for i in range(len(cs.images)):
        scores = img[i] @ txt.T
        rel = [j for j, c in enumerate(cs.captions) if c.image_ids == (f"img{i}",)]
        ranks = sorted(_rank_of(scores, j) for j in rel)
        aps.append(np.mean([(n + 1) / r for n, r in enumerate(ranks)]))
        distances.append(ranks[-1] - ranks[0])
    pooled = ev.metrics["multilingual"]
    assert pooled["map"] == pytest.approx(np.mean(aps))
    assert pooled["rank_distance"] == pytest.approx(np.mean(distances))
    # the zh captions are shifted away from everything: they sit far down in the pooled ranking
    assert pooled["rank_distance"] > 3


def test_text_to_text_through_shared_images_is_crosslingual_only():
    cs, enc = _toy(seed=2)
    ev = evaluate_image_text(enc, cs, ["de", "en"], images=[i.id for i in cs.images], show_progress=False)
    cross = ev.metrics["crosslingual"]
    assert set(cross["per_pair"]) == {"de-en", "en-de"}
    de = [c for c in cs.captions if c.lang == "de"]
    en = [c for c in cs.captions if c.lang == "en"]
    qd, qe = enc.encode_texts([c.text for c in de]), enc.encode_texts([c.text for c in en])
    ranks = [_rank_of(qd[j] @ qe.T, j) for j in range(len(de))]
    assert cross["per_pair"]["de-en"]["map"] == pytest.approx(np.mean([1 / r for r in ranks]))
    assert ev.metrics["languages"] == ["de", "en"]
    assert ev.metrics["counts"] == {"images": 7, "captions": 14}


def test_per_query_keys_carry_the_query_language_for_stratified_tests():
    from hybridbatch.experiments.significance import stratum_of

    cs, enc = _toy(seed=3)
    ev = evaluate_image_text(enc, cs, images=[i.id for i in cs.images], show_progress=False)
    keys = {setting: ev.per_query[setting][0] for setting in ("monolingual", "crosslingual", "multilingual")}
    assert {stratum_of("monolingual", k) for k in keys["monolingual"]} == {"de", "en", "zh"}
    assert "de-en" in {stratum_of("crosslingual", k) for k in keys["crosslingual"]}
    assert {stratum_of("multilingual", k) for k in keys["multilingual"]} == {"image"}
    assert len(keys["monolingual"]) == len(cs.captions)


def test_one_caption_language_gives_text_to_image_and_image_to_text_only(tmp_path):
    """An English-only set (openclipart): no caption X -> Y and no pooled multilingual block, no crash; the
    image -> caption direction is still scored per language, and the files are written."""
    from hybridbatch.evaluation.outputs import write_evaluation

    cs, enc = _toy(seed=4, langs=("en",))
    ev = evaluate_image_text(enc, cs, images=[i.id for i in cs.images], show_progress=False)
    img = enc.encode_images([i.id for i in cs.images])
    q = enc.encode_texts([c.text for c in cs.captions])
    ranks = [_rank_of(q[j] @ img.T, int(c.image_ids[0][3:])) for j, c in enumerate(cs.captions)]
    assert ev.metrics["monolingual"]["map"] == pytest.approx(np.mean([1 / r for r in ranks]))
    assert ev.metrics["crosslingual"] is None and ev.metrics["multilingual"] is None
    i2t = ev.metrics["image_to_text_per_language"]["per_language"]["en"]
    ranks_i2t = [_rank_of(img[i] @ q.T, i) for i in range(len(cs.images))]  # caption i belongs to image i
    assert i2t["map"] == pytest.approx(np.mean([1 / r for r in ranks_i2t]))
    assert set(ev.per_query) == {"monolingual"} and set(ev.runs) == {"monolingual"}
    write_evaluation(ev, tmp_path / "out")
    assert (tmp_path / "out" / "metrics.json").is_file()


def test_image_to_text_per_language_is_keyed_by_caption_language():
    cs, enc = _toy(seed=5)
    ev = evaluate_image_text(enc, cs, images=[i.id for i in cs.images], show_progress=False)
    img = enc.encode_images([i.id for i in cs.images])
    per_language = ev.metrics["image_to_text_per_language"]["per_language"]
    assert set(per_language) == {"de", "en", "zh"}
    for lang in ("de", "en", "zh"):
        caps = [c for c in cs.captions if c.lang == lang]  # caption j of this language belongs to image j
        q = enc.encode_texts([c.text for c in caps])
        assert per_language[lang]["map"] == pytest.approx(np.mean([1 / _rank_of(img[i] @ q.T, i)
                                                                   for i in range(len(cs.images))]))
