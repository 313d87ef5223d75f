"""`hybridbatch demo`: the first grid a new user runs, and the arithmetic of what a grid costs.

The demo is a small but real comparison (configs/demo.yaml): me5-small trained with mono, cross and
hybrid batches on four languages, plus the untrained model, evaluated on the held-out XQuAD-R half in
those languages, in a few minutes on 2 CPU cores. `estimate_seconds` (the arithmetic: estimate.py) is the sum
written in that config's comments, computed from the config itself so that the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from pathlib import Path

from hybridbatch.experiments import estimate
from hybridbatch.experiments.estimate import describe_estimate  # noqa: F401 - the demo's names
from hybridbatch.experiments.grid import CompareConfig, Task, expand

DEMO_CONFIG = Path("configs") / "demo.yaml"


def demo_config_path() -> Path:
    """configs/demo.yaml of this source tree, else of the current folder."""
    beside_source = Path(__file__).resolve().parents[3] / DEMO_CONFIG
    return beside_source if beside_source.is_file() else DEMO_CONFIG


def estimate_seconds(config: CompareConfig, tasks: list[Task] | None = None,
                     native_bf16: bool | None = None) -> dict[str, float]:
    """`estimate.estimate_seconds` of `tasks`, by default the whole grid from scratch."""
    if tasks is None:
        runs = expand(config)
        tasks = [("train", r, None) for r in runs if r.train is not None]
        tasks += [("eval", r, b) for r in runs for b in config.benchmarks]
    return estimate.estimate_seconds(config, tasks, native_bf16)
