"""Image-text retrieval evaluated with the text side's machinery: one encoding, three settings, same files.

An image-caption set is turned into text-side `Benchmark`s whose "candidates" or "queries" are images (language
tag `IMAGE`), so the exact chunked search, the trec_eval-equal metrics and the rank distance are reused as is:

- monolingual slot = **text -> image** per caption language (queries: the captions in X; candidates: all images;
  relevant: the images the caption describes). Measures follow the CLIP convention: R@k = `success@k` (a hit is
  any relevant image in the top k), plus mAP.
- crosslingual slot = **text -> text through shared images**: a caption in X against the captions in Y != X;
  relevant: the captions in Y of the same image(s). Macro over ordered pairs, like cross-lingual QA retrieval.
- multilingual slot = **image -> pooled multilingual captions**: each image against the captions of every
  language at once; relevant: all its captions. mAP, R@k, and the rank distance (max - min rank of its relevant
  captions: a model that keeps one language's captions above the others has a large one).

metrics.json keeps the text side's keys (so `hybridbatch compare`, its report and its claims work unchanged) and
adds `setting_names` saying what each slot means here.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.data.captions import CaptionSet
from hybridbatch.evaluation.settings import Evaluation, Run, evaluate_embeddings

IMAGE = "image"  # the "language" of an image in the benchmarks built here
SETTING_NAMES = {"monolingual": "text -> image (per caption language)",
                 "crosslingual": "text -> text through shared images (X -> Y)",
                 "multilingual": "image -> pooled multilingual captions"}
T2I_MEASURES = ("map", "success@1", "success@5", "success@10")
POOLED_MEASURES = ("map", "success@1", "success@10", "recall@10", "recall@100")


def text_to_image_benchmark(cs: CaptionSet, languages: list[str] | None = None) -> Benchmark:
    captions = [c for c in cs.captions if languages is None or c.lang in languages]
    queries = [Text(c.id, c.text, c.lang) for c in captions]
    corpus = [Text(i.id, "", IMAGE) for i in cs.images]
    qrels = {c.id: dict.fromkeys(c.image_ids, 1) for c in captions}
    return Benchmark(f"{cs.name}:text->image", queries, corpus, qrels)


def image_to_text_benchmark(cs: CaptionSet, languages: list[str] | None = None) -> Benchmark:
    captions = [c for c in cs.captions if languages is None or c.lang in languages]
    rel: dict[str, dict[str, int]] = defaultdict(dict)
    for c in captions:
        for image_id in c.image_ids:
            rel[image_id][c.id] = 1
    queries = [Text(i.id, "", IMAGE) for i in cs.images]
    corpus = [Text(c.id, c.text, c.lang) for c in captions]
    return Benchmark(f"{cs.name}:image->text", queries, corpus, dict(rel))


def text_to_text_benchmark(cs: CaptionSet, languages: list[str] | None = None) -> Benchmark:
    """Captions against captions of other languages; relevant: those sharing an image."""
    captions = [c for c in cs.captions if languages is None or c.lang in languages]
    by_image: dict[str, list] = defaultdict(list)
    for c in captions:
        for image_id in c.image_ids:
            by_image[image_id].append(c)
    qrels: dict[str, dict[str, int]] = {}
    for c in captions:
        rel = {o.id: 1 for image_id in c.image_ids for o in by_image[image_id] if o.lang != c.lang}
        if rel:
            qrels[c.id] = rel
    texts = [Text(c.id, c.text, c.lang) for c in captions]
    return Benchmark(f"{cs.name}:text->text", texts, texts, qrels)


def _relabel_to_languages(summary: dict | None) -> dict | None:
    """A cross-setting summary keyed 'de-image' (text -> image) or 'image-de' (image -> text) -> one keyed 'de'."""
    if summary is None:
        return None

    def language(pair: str) -> str:
        if pair.startswith(f"{IMAGE}-"):
            return pair[len(IMAGE) + 1:]
        return pair[:-len(IMAGE) - 1] if pair.endswith(f"-{IMAGE}") else pair

    out = {k: v for k, v in summary.items() if k != "per_pair"}
    out["per_language"] = {language(pair): v for pair, v in summary["per_pair"].items()}
    return out


def evaluate_image_text(model, cs: CaptionSet, languages: list[str] | None = None, *, images=None,
                        batch_size: int = 64, memory_mb: float = 512.0, k: int = 100,
                        show_progress: bool = True, max_batch_pixels: int | None = None) -> Evaluation:
    """Encode every caption and image once; evaluate the three directions.

    `model` has `encode_texts(list[str]) -> (n, d)` and `encode_images(list[PIL.Image]) -> (n, d)`, normalized.
    A model whose image embeddings are not one vector per image (BLIP-2: one per query token) must have
    `similarity(text_emb, image_emb) -> (n_texts, n_images)`; its score matrices are searched through an
    identity corpus (exact, but memory grows with captions x images: fine for sets of up to ~20k captions).
    `images` may give the decoded images in `cs.images` order; else they are opened here and encoded a batch
    at a time (`batch_size` images, at most `max_batch_pixels` decoded pixels; `data.images.map_image_batches`).
    """
    from hybridbatch.data.images import DEFAULT_BATCH_PIXELS, map_image_batches

    languages = sorted(languages) if languages else cs.languages
    cs = cs.subset(cs.name, languages=set(languages))
    t0 = time.perf_counter()
    texts = [c.text for c in cs.captions]
    text_emb = np.asarray(model.encode_texts(texts, batch_size=batch_size), dtype=np.float32)
    if images is not None:
        image_emb = np.asarray(model.encode_images(images), dtype=np.float32)
    else:
        parts = map_image_batches(((i.source, f"{cs.name}: image {i.id}") for i in cs.images),
                                  lambda batch: np.asarray(model.encode_images(batch), dtype=np.float32),
                                  batch_size, max_batch_pixels=max_batch_pixels or DEFAULT_BATCH_PIXELS)
        image_emb = np.concatenate(parts) if parts else np.asarray(model.encode_images([]), dtype=np.float32)
    t1 = time.perf_counter()
    caption_row = {c.id: j for j, c in enumerate(cs.captions)}
    t2i = text_to_image_benchmark(cs, languages)
    i2t = image_to_text_benchmark(cs, languages)
    t2i_q = text_emb[[caption_row[q.id] for q in t2i.queries]]
    i2t_c = text_emb[[caption_row[c.id] for c in i2t.corpus]]
    if image_emb.ndim == 2:
        t2i_pair, i2t_pair = (t2i_q, image_emb), (image_emb, i2t_c)
    else:  # a model scoring text-image pairs otherwise (BLIP-2's max over query tokens): its score matrix
        scores = np.asarray(model.similarity(t2i_q, image_emb), dtype=np.float32)  # (n_captions, n_images)
        t2i_pair = (scores, np.eye(len(cs.images), dtype=np.float32))
        i2t_pair = (np.asarray(model.similarity(i2t_c, image_emb), dtype=np.float32).T,
                    np.eye(len(i2t.corpus), dtype=np.float32))
        image_emb = None

    e_t2i = evaluate_embeddings(t2i, *t2i_pair, k=k, measures=T2I_MEASURES, memory_mb=memory_mb)
    e_i2t = evaluate_embeddings(i2t, *i2t_pair, k=k, measures=POOLED_MEASURES, memory_mb=memory_mb)
    e_t2t = None  # caption X -> Y through shared images: needs two caption languages
    if len(languages) > 1:
        t2t = text_to_text_benchmark(cs, languages)
        rows = [caption_row[q.id] for q in t2t.queries]
        e_t2t = evaluate_embeddings(t2t, text_emb[rows], text_emb[rows], k=k, measures=POOLED_MEASURES,
                                    memory_mb=memory_mb)
    t2 = time.perf_counter()

    metrics = {
        "benchmark": cs.name, "kind": "image-text", "setting_names": SETTING_NAMES,
        "measures": list(dict.fromkeys(T2I_MEASURES + POOLED_MEASURES)),
        "languages": languages,
        "monolingual": _relabel_to_languages(e_t2i.metrics["crosslingual"]),
        "crosslingual": e_t2t.metrics.get("crosslingual") if e_t2t else None,
        "multilingual": _pooled_image_summary(e_i2t.metrics),
        "image_to_text_per_language": _relabel_to_languages(e_i2t.metrics["crosslingual"]),
        "counts": {"images": len(cs.images), "captions": len(cs.captions)},
        "timing": {"encode_s": round(t1 - t0, 3), "score_s": round(t2 - t1, 3),
                   "texts": len(texts), "images": len(cs.images)},
    }
    # per-query keys in the text side's form `lang:id` (significance tests stratify by the query language)
    lang_of = {c.id: c.lang for c in cs.captions}
    t2i_keys, t2i_scores = e_t2i.per_query["crosslingual"]
    per_query = {
        "monolingual": ([f"{lang_of[k.rsplit('>', 1)[0]]}:{k.rsplit('>', 1)[0]}" for k in t2i_keys], t2i_scores)}
    if e_t2t is not None and e_t2t.metrics.get("crosslingual") is not None:
        t2t_keys, t2t_scores = e_t2t.per_query["crosslingual"]
        per_query["crosslingual"] = ([f"{lang_of[k.rsplit('>', 1)[0]]}:{k}" for k in t2t_keys], t2t_scores)
    pooled = e_i2t.metrics.get("multilingual") is not None  # captions of two or more languages
    if pooled:
        i2t_keys, i2t_scores = e_i2t.per_query["multilingual"]
        per_query["multilingual"] = ([f"{IMAGE}:{k}" for k in i2t_keys], i2t_scores)
    runs = {"monolingual": top_k_run([q.id for q in t2i.queries], *t2i_pair[:1], [i.id for i in cs.images],
                                     t2i_pair[1], k)}
    if pooled:
        runs["multilingual"] = e_i2t.runs["multilingual"]
    return Evaluation(metrics, per_query, runs)


def top_k_run(query_ids: list[str], queries: np.ndarray, doc_ids: list[str], docs: np.ndarray, k: int,
              chunk: int = 1024) -> Run:
    """The top k of each query by dot product (for the run file of a one-block corpus)."""
    k = min(k, len(doc_ids))
    index = np.zeros((len(query_ids), k), dtype=np.int64)
    scores = np.zeros((len(query_ids), k), dtype=np.float32)
    for start in range(0, len(query_ids), chunk):
        s = queries[start:start + chunk] @ docs.T
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        index[start:start + chunk], scores[start:start + chunk] = top, np.take_along_axis(s, top, axis=1)
    return Run(list(query_ids), index, scores, list(doc_ids))


def _pooled_image_summary(metrics: dict) -> dict | None:
    """The pooled image->text block; its 'own language' share is meaningless for images and is dropped."""
    block = metrics.get("multilingual")
    if block is None:
        return None
    block = dict(block)
    block.pop("own_language_top10", None)
    for breakdown in block.get("per_language", {}).values():
        breakdown.pop("own_language_top10", None)
    return block


def write_image_text_evaluation(evaluation: Evaluation, out_dir: str | Path) -> Path:
    from hybridbatch.evaluation.outputs import write_evaluation

    return write_evaluation(evaluation, out_dir)
