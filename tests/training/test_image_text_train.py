"""Image-text training end to end on tiny models: the language-aware batches, the run folder, the evaluation,
the CLI (train-vl, eval-vl with the CLIP and BLIP-2 paths) and an image-text compare grid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.vl_toys import vl_config
from hybridbatch.training.config import ConfigError


def test_train_vl_writes_a_complete_run_with_language_aware_batches(vl_assets, tmp_path):
    from hybridbatch.models.image_text_dual_encoder import ImageTextDualEncoder
    from hybridbatch.training.image_text import train_image_text

    run = train_image_text(vl_config(vl_assets, tmp_path / "run"))
    batches = [json.loads(line) for line in (run / "batches.jsonl").read_text().splitlines()]
    assert len(batches) == 12 and {b["type"] for b in batches} == {"mono", "cross"}
    for b in batches:
        assert len(set(b["images"])) == len(b["images"]) == 8  # no image twice in a batch
        if b["type"] == "mono":
            assert len(set(b["caption_langs"])) == 1 and b["second_caption_langs"] is None
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert len(losses) == 12 and all(np.isfinite(losses))
    # it learns on data whose text names the picture (the caption <-> image term, present in every batch type)
    caption_image = [r["image_caption_loss"] for r in records]
    assert np.mean(caption_image[-3:]) < np.mean(caption_image[:3])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["images"] == 24 and summary["images_dropped"] == 0
    metrics = json.loads(next((run / "eval").glob("*/metrics.json")).read_text())
    assert metrics["kind"] == "image-text"
    assert set(metrics["monolingual"]["per_language"]) == {"de", "en", "fr"}
    assert set(metrics["crosslingual"]["per_pair"]) == {f"{a}-{b}" for a in "de en fr".split()
                                                       for b in "de en fr".split() if a != b}
    assert metrics["multilingual"]["queries"] == 24 and metrics["multilingual"]["rank_distance"] >= 2
    # the saved folder reproduces the evaluation exactly
    from hybridbatch.evaluation.image_text import evaluate_image_text
    from hybridbatch.training.image_text import load_caption_source

    model = ImageTextDualEncoder.load(run / "model")
    again = evaluate_image_text(model, load_caption_source(str(vl_assets[0] / "captions.jsonl")),
                                show_progress=False)
    assert again.metrics["monolingual"]["map"] == pytest.approx(metrics["monolingual"]["map"], abs=1e-6)


def test_bad_image_text_configs_are_refused_before_any_model_loads(vl_assets, tmp_path):
    from hybridbatch.training.image_text import dry_run_image_text

    with pytest.raises(ConfigError, match="alpha"):
        vl_config(vl_assets, tmp_path / "a", sampler={"name": "hybrid", "alpha": 1.5})
    with pytest.raises(ConfigError, match="unknown key"):
        vl_config(vl_assets, tmp_path / "b", steps_typo=3)
    with pytest.raises(ConfigError, match="larger than the number of groups"):
        dry_run_image_text(vl_config(vl_assets, tmp_path / "c", batch_size=64))
    with pytest.raises(ConfigError, match="0 images have captions"):
        dry_run_image_text(vl_config(vl_assets, tmp_path / "d", data={
            "source": str(vl_assets[0] / "captions.jsonl"), "languages": ["en", "ja"]}))
    run = dry_run_image_text(vl_config(vl_assets, tmp_path / "e", sampler={"name": "mono"}))
    batches = [json.loads(line) for line in (run / "batches.jsonl").read_text().splitlines()]
    assert all(len(set(b["caption_langs"])) == 1 for b in batches) and not (run / "model").exists()


@pytest.mark.parametrize("kind", ["clip", "blip2"])
def test_eval_vl_runs_the_clip_and_blip2_paths_end_to_end(vl_assets, tmp_path, kind):
    from hybridbatch.cli import main
    from hybridbatch.models.vl_baselines import build_tiny_blip2, build_tiny_clip

    folder = (build_tiny_clip if kind == "clip" else build_tiny_blip2)(tmp_path / kind)
    out = tmp_path / "eval"
    assert main(["eval-vl", "--model", str(folder), "--benchmark", str(vl_assets[0] / "captions.jsonl"),
                 "--languages", "en", "de", "--out", str(out), "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["monolingual"]["per_language"]) == {"de", "en"}
    assert 0 < metrics["multilingual"]["map"] <= 1
    assert (out / "runs" / "monolingual.trec").read_text().count("\n") == 48 * 24  # every caption, 24 images


def test_image_text_compare_grid_reports_and_resumes(vl_assets, tmp_path):
    import yaml

    from hybridbatch.cli import main_compare

    root, text_model, tower = vl_assets
    config = {"kind": "image-text", "base_models": [str(text_model)], "samplers": ["en-en", "mono", "hybrid"],
              "include_zero_shot": False, "seeds": [0], "benchmarks": [str(root / "captions.jsonl")],
              "train": {"image_tower": f"hf-clip-vision:{tower}", "embed_dim": 16,
                        "freeze_word_embeddings": False,
                        "data": {"source": str(root / "captions.jsonl"), "languages": ["en", "de", "fr"]},
                        "batch_size": 8, "steps": 3, "lr": 1e-3, "head_lr": 1e-2},
              "output_dir": str(tmp_path / "grid"), "significance": {"n_resamples": 200}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main_compare([str(path), "--no-progress"]) == 0
    report = (tmp_path / "grid" / "report.md").read_text()
    assert "en-en" in report and "hybrid" in report
    metrics = sorted((tmp_path / "grid" / "runs").glob("*/*/*/eval/*/metrics.json"))
    assert len(metrics) == 3
    stamp = [m.stat().st_mtime_ns for m in metrics]
    assert main_compare([str(path), "--no-progress"]) == 0  # nothing left to do: nothing redone
    assert [m.stat().st_mtime_ns for m in metrics] == stamp
    # an untrained image-text model has random projections: no zero-shot row, a clear refusal instead
    assert main_compare([str(path), "include_zero_shot=true", "--dry-run"]) == 2
