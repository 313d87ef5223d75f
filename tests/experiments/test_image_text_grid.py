"""Baselines as rows of an image-text compare: tiny random CLIP and BLIP-2 checkpoints (and a train-vl folder)
evaluated by the same evaluator on the same benchmark as the trained samplers and compared with paired tests; a
baseline whose weights cannot be had is a row saying "not run: weights unavailable", never a silent skip;
`en-en` and `mixed-same` are rows of an image-text grid by default."""

from __future__ import annotations

import pytest
import yaml

from hybridbatch.experiments.grid import compare_config_from_dict, expand, pending_tasks
from hybridbatch.experiments.grid_baselines import NOT_RUN, weights_unavailable
from hybridbatch.training.config import ConfigError

UNAVAILABLE = "hybridbatch-tests/no-such-clip"  # a hub id no cache holds


def _grid(vl_assets, out, **extra):
    root, text_model, tower = vl_assets
    raw = {"kind": "image-text", "base_models": [str(text_model)], "samplers": ["en-en", "mono", "cross", "hybrid"],
           "include_zero_shot": False, "seeds": [0], "benchmarks": [str(root / "captions.jsonl")],
           "train": {"image_tower": f"hf-clip-vision:{tower}", "embed_dim": 16, "freeze_word_embeddings": False,
                     "data": {"source": str(root / "captions.jsonl"), "languages": ["en", "de", "fr"]},
                     "batch_size": 8, "steps": 3, "lr": 1e-3, "head_lr": 1e-2},
           "output_dir": str(out), "significance": {"n_resamples": 200}}
    raw.update(extra)
    return raw


def test_image_text_grids_have_en_en_and_mixed_same_rows_by_default(vl_assets, tmp_path):
    raw = _grid(vl_assets, tmp_path / "g")
    del raw["samplers"]
    config = compare_config_from_dict(raw)
    assert config.samplers == ["en-en", "mono", "mixed-same", "cross", "hybrid"]
    assert [r.system for r in expand(config)][:2] == ["en-en", "mono"]
    text = {"base_models": ["tiny"], "benchmarks": ["xquad-r:test"], "train": {"data": {"languages": ["en", "de"]}},
            "output_dir": str(tmp_path / "t"), "baselines": ["openai/clip-vit-base-patch32"]}
    with pytest.raises(ConfigError, match="only image-text grids"):
        compare_config_from_dict(text)
    with pytest.raises(ConfigError, match="twice"):
        compare_config_from_dict(_grid(vl_assets, tmp_path / "g", baselines=["a/clip", "b/clip"]))


def test_weights_unavailable_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights_unavailable(UNAVAILABLE).startswith(NOT_RUN)
    assert "neither" in weights_unavailable(str(tmp_path))  # an empty folder is no checkpoint
    (tmp_path / "config.json").write_text("{}")
    assert weights_unavailable(str(tmp_path)) is None


def test_baselines_are_rows_of_the_compare_with_paired_tests(vl_assets, tmp_path, monkeypatch):
    from hybridbatch.cli import main_compare
    from hybridbatch.models.vl_baselines import build_tiny_blip2, build_tiny_clip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clip = build_tiny_clip(tmp_path / "models" / "tiny-clip")
    blip2 = build_tiny_blip2(tmp_path / "models" / "tiny-blip2", num_query_tokens=4)
    raw = _grid(vl_assets, tmp_path / "grid", baselines=[str(clip), str(blip2), UNAVAILABLE],
                samplers=["en-en", "mono", "mixed-same", "cross", "hybrid"])
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = compare_config_from_dict(raw)
    systems = [r.system for r in expand(config)]
    assert systems[:3] == ["baseline-tiny-clip", "baseline-tiny-blip2", "baseline-no-such-clip"]
    tasks = pending_tasks(config)
    assert [(k, r.system) for k, r, _ in tasks if r.train is None] == [
        ("eval", "baseline-tiny-clip"), ("eval", "baseline-tiny-blip2")]  # nothing queued for the unavailable one

    assert main_compare([str(path), "--no-progress"]) == 0
    out = tmp_path / "grid"
    for name in ("tiny-clip", "tiny-blip2"):  # evaluated once, by the evaluator of the trained runs
        (metrics,) = (out / "runs" / "baselines" / name / "eval").glob("*/metrics.json")
        assert (metrics.parent / "per_query.tsv.gz").is_file()
    report = (out / "report.md").read_text()
    rows = {line.split("|")[2].strip(): line for line in report.splitlines()
            if line.startswith("|") and len(line.split("|")) > 4}
    assert "baseline-tiny-clip" in rows and "baseline-tiny-blip2" in rows and "en-en" in rows
    assert "not run: weights unavailable" in rows["baseline-no-such-clip"]
    assert "not complete" not in report  # the unavailable baseline is a stated row, not a missing run
    # paired tests of the baselines against the trained samplers, on the same per-query keys
    tests = [line for line in report.splitlines() if line.startswith("| baseline-tiny-")]
    assert any("| mono |" in line for line in tests) and any("| cross |" in line for line in tests)
    # the image-text claims: stated, the one needing the unavailable baseline not checked, with the reason
    claims = report[report.index("## Image-text claims"):]
    it2 = next(line for line in claims.splitlines() if "pretrained baselines" in line and line.startswith("|"))
    assert "baseline-no-such-clip: not run: weights unavailable" in it2
    assert "| not checked |" in it2 or "| does not hold |" in it2
    assert any("caption X -> caption Y" in line for line in claims.splitlines())  # IT3: cross vs mixed-same
    # run again: nothing redone, the unavailable row still stated
    assert main_compare([str(path), "--no-progress"]) == 0
    assert "not run: weights unavailable" in (out / "report.md").read_text()


# --------------------------------------------------------------------------------------------- claims
def _system(maps: dict[str, float], seed: int, n: int = 40):
    """(per-query table, metrics.json) of a system whose text -> image mAP per caption language is about `maps`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    mono = {f"{lang}:img{i}/{lang}/0": {"map": float(np.clip(m + rng.normal(0, 0.05), 0, 1))}
            for lang, m in maps.items() for i in range(n)}
    per_language = {lang: {"map": float(np.mean([r["map"] for k, r in mono.items() if k.startswith(f"{lang}:")]))}
                    for lang in maps}
    metrics = {"monolingual": {"map": float(np.mean([v["map"] for v in per_language.values()])),
                               "per_language": per_language}}
    return {"monolingual": mono}, metrics


def test_image_text_views_keep_the_languages_they_name():
    from hybridbatch.experiments.claims_image_text import NON_EN, UNSEEN, per_query_views, scores_with_views

    table, metrics = _system({"en": 0.9, "de": 0.5, "fr": 0.3}, seed=0)
    views = per_query_views(table, trained=["en", "de"])
    assert {k.split(":")[0] for k in views[NON_EN]} == {"de", "fr"}
    assert {k.split(":")[0] for k in views[UNSEEN]} == {"fr"}
    scores = scores_with_views(metrics, {"monolingual": metrics["monolingual"]["map"]}, ["en", "de"])
    per = metrics["monolingual"]["per_language"]
    assert scores[NON_EN] == pytest.approx((per["de"]["map"] + per["fr"]["map"]) / 2)
    assert scores[UNSEEN] == pytest.approx(per["fr"]["map"])


def test_image_text_claims_read_the_non_english_view_and_state_unrun_baselines():
    from hybridbatch.experiments.claims import comparisons_from_per_query, scores_from_metrics
    from hybridbatch.experiments.claims_image_text import (
        check_image_text_claims,
        per_query_views,
        scores_with_views,
    )
    from hybridbatch.experiments.grouping import caption_group

    trained = ["en", "de"]
    systems = {  # hybrid: better in de / fr, worse in English than the English-only model
        "hybrid@0.5": _system({"en": 0.6, "de": 0.7, "fr": 0.6}, 1),
        "en-en": _system({"en": 0.9, "de": 0.3, "fr": 0.3}, 2),
        "baseline-clip": _system({"en": 0.95, "de": 0.8, "fr": 0.8}, 3),
    }
    per_query = {s: per_query_views(t, trained) for s, (t, _) in systems.items()}
    scores = {s: scores_with_views(m, scores_from_metrics(m), trained) for s, (_, m) in systems.items()}
    compare = comparisons_from_per_query(per_query, n_resamples=500, group_of=caption_group)
    verdicts = {v.id: v for v in check_image_text_claims(
        scores, compare, hybrid="hybrid@0.5", baselines=["baseline-clip", "baseline-blip2"],
        not_run={"baseline-blip2": "not run: weights unavailable"})}
    assert verdicts["IT1"].verdict == "holds"  # on non-English captions, though en-en wins in English
    assert verdicts["IT6"].verdict == "holds"  # fr was never trained on
    assert verdicts["IT2"].verdict == "does not hold"  # the (made-up) CLIP is better: a failure stays a failure
    assert "baseline-blip2: not run: weights unavailable" in verdicts["IT2"].evidence
    assert "IT3" not in verdicts  # no cross / mixed-same in the table: left out, never invented
    only_unrun = {v.id: v for v in check_image_text_claims(
        scores, compare, hybrid="hybrid@0.5", baselines=["baseline-blip2"],
        not_run={"baseline-blip2": "not run: weights unavailable"})}
    assert only_unrun["IT2"].verdict == "not checked" and "weights unavailable" in only_unrun["IT2"].evidence
