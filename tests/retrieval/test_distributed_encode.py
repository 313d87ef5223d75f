"""Two CPU processes (torchrun, gloo) encode one store: it reads back as the single-process store.

One torchrun launch runs both jobs (a success and a refused publish): on a loaded 2-core machine starting
the two processes takes most of a minute, a job a second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hybridbatch.data.benchmark import Text
from hybridbatch.retrieval.embeddings import encode_to_store, read_embeddings, read_meta

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("encode_dist_worker.py")
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
LANGS = ["en", "de", "zh"]
WORDS = ["river", "bank", "Fluss", "Ufer", "河", "岸", "money", "Geld", "钱", "water", "Wasser", "水"]


def _texts(n: int) -> list[Text]:
    """Texts of varied length (so the length sort matters); a repeated text tests the dedup path."""
    texts = [Text(f"c{i:02d}", " ".join(WORDS[j % len(WORDS)] for j in range(i, i + 1 + i % 5)), LANGS[i % 3])
             for i in range(n)]
    texts[-1] = Text("dup", texts[0].text, "en")
    return texts


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]))
    return env


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> dict:
    """The tiny model, and the two jobs' folders after one 2-process launch."""
    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    if not Path(TORCHRUN).exists():
        pytest.skip("torchrun not installed")
    tmp = tmp_path_factory.mktemp("dist")
    texts = _texts(13)
    model = build_tiny_sentence_transformer(tmp / "tiny", texts=[t.text for t in texts], seed=0)
    ok, refused = tmp / "ok" / "store", tmp / "refused" / "store"
    ok.mkdir(parents=True)
    (ok / "meta.json").write_text("{}")  # a previous (stale) store: replaced
    refused.mkdir(parents=True)
    (refused / "notes.txt").write_text("not a store")  # not ours: the main process refuses to replace it
    jobs = [{"texts": [t.__dict__ for t in texts], "store": str(ok), "dtype": "float32", "shard_size": 4},
            {"texts": [t.__dict__ for t in texts[:5]], "store": str(refused), "dtype": "float16",
             "shard_size": 100}]
    (tmp / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node", "2", str(WORKER), str(model), str(tmp / "jobs.json")]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"tmp": tmp, "model": model, "texts": texts, "ok": ok, "refused": refused}


def _ranks(store: Path) -> list[dict]:
    return [json.loads((store.parent / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_two_processes_write_the_single_process_store(launched, tmp_path):
    import torch
    from sentence_transformers import SentenceTransformer

    store, texts = launched["ok"], launched["texts"]
    assert [(r["rank"], r["world"], r["error"]) for r in _ranks(store)] == [(0, 2, None), (1, 2, None)]

    torch.set_num_threads(1)
    single = encode_to_store(SentenceTransformer(str(launched["model"]), device="cpu"), texts, tmp_path / "single",
                             prefix="passage: ", batch_size=4, shard_size=4)
    ids, langs, emb = read_embeddings(store)
    ids1, langs1, emb1 = read_embeddings(single)
    assert ids == ids1 == [t.id for t in texts]
    assert langs == langs1 == [t.lang for t in texts]
    np.testing.assert_allclose(emb, emb1, rtol=0, atol=1e-6)  # other batches: only float rounding may differ
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    meta, meta1 = read_meta(store), read_meta(single)
    assert meta["fingerprint"] == meta1["fingerprint"]
    assert meta["processes"] == 2 and meta["count"] == 13
    # ranks get texts [0, 6) and [6, 13); shards of at most 4 rows, numbered across ranks
    assert [(s["file"], s["rows"]) for s in meta["shards"]] == [("emb-00000.npy", 4), ("emb-00001.npy", 2),
                                                                ("emb-00002.npy", 4), ("emb-00003.npy", 3)]
    assert sorted(p.name for p in store.iterdir()) == ["emb-00000.npy", "emb-00001.npy", "emb-00002.npy",
                                                       "emb-00003.npy", "ids.txt", "langs.txt", "meta.json"]
    assert sorted(p.name for p in store.parent.iterdir()) == ["rank0.json", "rank1.json", "store"]  # no temp left


def test_a_failure_reaches_every_rank_and_publishes_nothing(launched):
    store = launched["refused"]
    for r in _ranks(store):
        assert "not an embedding store" in r["error"]  # rank 1 learns of the main process's failure too
    assert sorted(p.name for p in store.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in store.parent.iterdir()) == ["rank0.json", "rank1.json", "store"]
