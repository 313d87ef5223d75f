"""Baseline rows of an image-text compare grid: pretrained models evaluated as they are, beside the trained runs.

`baselines: [ID, ...]` in an image-text compare config lists models evaluated by the same evaluator on the same
benchmarks as the trained runs: a CLIP or BLIP-2 (ITM/ITC) checkpoint by hub id or folder, or any `train-vl` model
folder (`dual_encoder.json`). Each becomes, under every base model of the grid, a row `baseline-<label>` (the
label is the id's last part), so the report's paired tests compare it with the trained samplers on the same
per-query keys (query language included; an image with all its captions is one resampling unit).

A baseline whose weights cannot be had (a hub id not in the local cache while offline, a folder that is not a
checkpoint) is never skipped silently: it has no evaluation, its row in the report says
"not run: weights unavailable", and the claims that need it say "not checked".

The English-only trained model is the `en-en` sampler: image-text grids list it by default
(`IMAGE_TEXT_SAMPLERS`). Kept free of torch imports, like `grid.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

from hybridbatch.experiments.grid_spec import GridRun, model_label
from hybridbatch.experiments.run_kind import CompareConfig
from hybridbatch.experiments.run_kind_image_text import IMAGE_TEXT_SAMPLERS  # noqa: F401 - its home is the kind

BASELINE_PREFIX = "baseline-"
BASELINES_FOLDER = "baselines"
NOT_RUN = "not run: weights unavailable"
_OFFLINE = ("1", "true", "yes", "on")


def baseline_system(model: str) -> str:
    return BASELINE_PREFIX + model_label(model)


def is_baseline(system: str) -> bool:
    return system.startswith(BASELINE_PREFIX)


def baseline_runs(config: CompareConfig, base: str) -> list[GridRun]:
    """One row per configured baseline under base model `base`; all bases share one evaluation folder."""
    root = Path(config.output_dir) / "runs" / BASELINES_FOLDER
    return [GridRun(f"{base}/{baseline_system(m)}", base, m, baseline_system(m), None, root / model_label(m), None,
                    config.run_kind) for m in config.baselines]


def weights_unavailable(model: str) -> str | None:
    """Why a baseline cannot be loaded here (`NOT_RUN` and the reason), or None when it can be tried.

    A folder must hold `dual_encoder.json` (train-vl) or `config.json` (a transformers checkpoint). A hub id is
    available when its config is in the local Hugging Face cache; not cached and offline (`HF_HUB_OFFLINE`), it
    is unavailable; online, loading is tried (and a failure stops the grid with the loader's message).
    """
    path = Path(model)
    if path.is_dir():
        if (path / "dual_encoder.json").is_file() or (path / "config.json").is_file():
            return None
        return f"{NOT_RUN} ({model} holds neither dual_encoder.json nor config.json)"
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        return f"{NOT_RUN} ({model} is not a folder nor a hub id)"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - installed with transformers
        return f"{NOT_RUN} (huggingface_hub is not installed)"
    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _OFFLINE:
        return f"{NOT_RUN} ({model} is not in the local Hugging Face cache and the hub is offline)"
    return None


def not_run_reason(run: GridRun) -> str | None:
    """For a baseline row: why it is not evaluated (None: it is or will be). Other rows: None."""
    return weights_unavailable(run.model) if is_baseline(run.system) else None


def not_run_rows(config: CompareConfig) -> list[tuple[str, str, str]]:
    """(base, system, reason) of every baseline row that cannot be evaluated here, for the report's tables."""
    if not getattr(config, "baselines", None):
        return []
    return [(run.base, run.system, reason) for base in config.base_models
            for run in baseline_runs(config, model_label(base)) if (reason := not_run_reason(run))]
