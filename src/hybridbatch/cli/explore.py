"""`hybridbatch explore RUN_OR_GRID ...`: one self-contained HTML page of per-query language bias
(built by hybridbatch.experiments.explore)."""

from __future__ import annotations

import argparse
import json

from hybridbatch.cli.common import add_command


def _explore(args: argparse.Namespace) -> int:
    from hybridbatch.experiments.explore import build_explorer

    out = build_explorer(args.paths, args.html, sample=args.sample, top=args.top, benchmark=args.benchmark,
                         data_dir=args.data_dir)
    print(json.dumps({"out": str(out), "size_kb": round(out.stat().st_size / 1024, 1)}))
    return 0


def add_commands(sub) -> None:
    p = add_command(sub, "explore", _explore,
                    help="one self-contained HTML page to look at language bias query by query, "
                         "from an evaluation folder or a compare grid's output")
    p.add_argument("paths", nargs="+", metavar="RUN_OR_GRID",
                   help="`eval --out` folders or compare grid output_dirs (several: side by side)")
    # dest html: a file, rebuilt in place (the shared check of an existing `--out` wants a folder)
    p.add_argument("--out", dest="html", default=None, help="the HTML file (default FIRST/explorer.html)")
    p.add_argument("--sample", type=int, default=300, help="queries whose rankings are embedded, per benchmark "
                                                            "(stratified by language, plus the most/least biased)")
    p.add_argument("--top", type=int, default=30, help="candidates shown per ranking")
    p.add_argument("--benchmark", default=None, help="the benchmark to read texts and answers from (default: "
                                                     "the one metrics.json names)")
    p.add_argument("--data-dir", help="folder holding xquad-r/ and mlqa-r/ (else $HYBRIDBATCH_LAREQA_DIR)")
