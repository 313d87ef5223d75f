"""`hybridbatch data export | stats | build-emoji | build-openclipart`: benchmarks, their layouts, image-caption builds.

Argument handling and printing only; loading and building are hybridbatch.data's.
"""

from __future__ import annotations

import argparse
import json
import time

from hybridbatch.cli.common import add_command, add_command_group, add_data_args


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


def add_commands(sub) -> None:
    data = add_command_group(sub, "data", help="benchmarks and their layouts")
    p = add_command(data, "export", _export, help="write a benchmark in the generic layout")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="replace the layout's files in an existing folder")
    add_data_args(p)
    p = add_command(data, "stats", _stats, help="questions and candidates per language")
    p.add_argument("--benchmark", required=True)
    add_data_args(p)

    p = add_command(data, "build-emoji", _build_emoji, help="render Noto emoji and their CLDR names into the cache")
    p.add_argument("--keywords", action="store_true", help="also CLDR keyword lists as extra captions")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache holds a finished build")
    p = add_command(data, "build-openclipart", _build_openclipart,
                    help="Openclipart PNGs and their SVG titles (English) into the cache")
    p.add_argument("--keywords", action="store_true", help="also the SVG keywords as extra captions")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache holds a finished build")
