"""`hybridbatch demo`: the first grid a new user runs, and the arithmetic of what a grid costs.

The demo is a small but real comparison (configs/demo.yaml): me5-small trained with mono, cross and
hybrid batches on four languages, plus the untrained model, evaluated on the held-out XQuAD-R half in
those languages, in about 15 minutes on 2 CPU cores. `estimate_seconds` is the sum written in that
config's comments, computed from the config itself so that the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from pathlib import Path

from hybridbatch.experiments.grid import CompareConfig, Task, expand, load_benchmark_spec

DEMO_CONFIG = Path("configs") / "demo.yaml"
# Measured on 2 CPU cores (see configs/xquad-hybrid.yaml): one me5-small step, batch 32, frozen word
# embeddings, max_seq_length 128; and me5-small encoding throughput over XQuAD-R sentences.
STEP_S = 5.0  # me5-small, batch 32, max length 128, frozen word embeddings, 2 cores (measured 8-10 s CPU)
TEXTS_PER_S = 50.0
OVERHEAD_S = 60.0  # loading data and models, the report's figures and tests


def demo_config_path() -> Path:
    """configs/demo.yaml of this source tree, else of the current folder."""
    beside_source = Path(__file__).resolve().parents[3] / DEMO_CONFIG
    return beside_source if beside_source.is_file() else DEMO_CONFIG


def estimate_seconds(config: CompareConfig, tasks: list[Task] | None = None, step_s: float = STEP_S,
                     texts_per_s: float = TEXTS_PER_S, overhead_s: float = OVERHEAD_S) -> dict[str, float]:
    """Wall time of `tasks` (default: the whole grid from scratch): steps x step_s + texts / rate."""
    if tasks is None:
        runs = expand(config)
        tasks = [("train", r, None) for r in runs if r.train is not None]
        tasks += [("eval", r, b) for r in runs for b in config.benchmarks]
    texts = {}
    for spec in {b for kind, _, b in tasks if kind == "eval"}:
        bench = load_benchmark_spec(spec, config.data_dir)
        texts[spec] = len(bench.queries) + len(bench.corpus)
    train_steps = sum(r.train.steps * r.train.grad_accum for kind, r, _ in tasks if kind == "train")
    eval_texts = sum(texts[b] for kind, _, b in tasks if kind == "eval")
    train_s, eval_s = train_steps * step_s, eval_texts / texts_per_s
    total = train_s + eval_s + (overhead_s if tasks else 0.0)
    return {"train_steps": train_steps, "train_s": train_s, "eval_texts": eval_texts, "eval_s": eval_s,
            "total_s": total}


def describe_estimate(estimate: dict[str, float]) -> str:
    return (f"estimated wall time on 2 CPU cores: {estimate['total_s'] / 60:.0f} min "
            f"({estimate['train_steps']:.0f} training steps x {STEP_S} s = {estimate['train_s']:.0f} s; "
            f"{estimate['eval_texts']:.0f} texts to encode / {TEXTS_PER_S:.0f} per s = "
            f"{estimate['eval_s']:.0f} s; overhead ~{OVERHEAD_S:.0f} s)")
