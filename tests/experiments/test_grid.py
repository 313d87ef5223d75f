"""The compare config: validation, the grid's expansion into named runs, benchmark specs, the demo's budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hybridbatch.experiments.grid import (
    ZERO_SHOT,
    benchmark_slug,
    compare_config_from_dict,
    expand,
    load_benchmark_spec,
    load_compare_config,
    model_label,
    parse_benchmark_spec,
    pending_tasks,
)
from hybridbatch.training.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def raw_config(tmp_path, **overrides) -> dict:
    raw = {
        "base_models": ["me5-small"],
        "samplers": ["mono", "cross", "hybrid"],
        "seeds": [0, 1],
        "benchmarks": ["xquad-r:test", "mlqa-r"],
        "zero_shot_benchmark": "mlqa-r",
        "train": {"data": {"source": "xquad-r:train", "languages": ["en", "de"]}, "batch_size": 8, "steps": 5},
        "output_dir": str(tmp_path / "grid"),
    }
    raw.update(overrides)
    return raw


def test_defaults_and_expansion(tmp_path):
    config = compare_config_from_dict(raw_config(tmp_path))
    assert config.in_domain == "xquad-r:test" and config.claim_hybrid == "hybrid@0.5"
    runs = expand(config)
    assert [r.name for r in runs] == [
        "me5-small/zero-shot",
        "me5-small/mono/seed0", "me5-small/mono/seed1",
        "me5-small/cross/seed0", "me5-small/cross/seed1",
        "me5-small/hybrid@0.5/seed0", "me5-small/hybrid@0.5/seed1",
    ]
    zero, hybrid = runs[0], runs[-1]
    assert zero.system == ZERO_SHOT and zero.train is None and zero.seed is None
    assert hybrid.folder == tmp_path / "grid" / "runs" / "me5-small" / "hybrid@0.5" / "seed1"
    t = hybrid.train
    assert (t.model, t.seed, t.sampler.name, t.sampler.alpha, t.steps) == ("me5-small", 1, "hybrid", 0.5, 5)
    assert t.output_dir == str(hybrid.train_dir) and t.eval.benchmarks == [] and not t.eval.final
    assert runs[1].train.sampler.name == "mono"
    assert hybrid.eval_dir("xquad-r:test@en,de").name == "xquad-r-test@en,de"
    # nothing done yet: every run trained (zero-shot aside) and evaluated on both benchmarks
    tasks = pending_tasks(config)
    assert sum(k == "train" for k, _, _ in tasks) == 6 and sum(k == "eval" for k, _, _ in tasks) == 14


def test_alpha_sweep_and_two_base_models(tmp_path):
    config = compare_config_from_dict(raw_config(
        tmp_path, base_models=["me5-small", "/models/my-encoder/"], samplers=["hybrid"],
        alphas=[0, 0.25, 1], seeds=[3], include_zero_shot=True, zero_shot_benchmark=None))
    names = [r.name for r in expand(config)]
    assert names == ["me5-small/zero-shot", "me5-small/hybrid@0/seed3", "me5-small/hybrid@0.25/seed3",
                     "me5-small/hybrid@1/seed3", "my-encoder/zero-shot", "my-encoder/hybrid@0/seed3",
                     "my-encoder/hybrid@0.25/seed3", "my-encoder/hybrid@1/seed3"]
    assert config.claim_alpha == 0  # 0.5 not swept: the first alpha
    assert expand(config)[-1].train.model == "/models/my-encoder/"


@pytest.mark.parametrize(("change", "message"), [
    ({"bogus": 1}, "bogus: unknown key"),
    ({"samplers": ["mono", "zigzag"]}, "samplers: unknown ['zigzag']"),
    ({"seeds": [0, 0]}, "seeds lists a value twice"),
    ({"seeds": [-1]}, "seeds.0: Input should be greater than or equal to 0"),
    ({"alphas": [0.5, 1.5]}, "alphas.1: Input should be less than or equal to 1"),
    ({"in_domain": "xquad-r"}, "in_domain 'xquad-r' is not one of the benchmarks"),
    ({"zero_shot_benchmark": "xquad-r:test"}, "must differ from in_domain"),
    ({"claim_alpha": 0.3}, "claim_alpha 0.3 is not one of the alphas"),
    ({"benchmarks": ["xquad-r:test@en,xx"]}, "unknown language code 'xx'"),
    ({"base_models": ["a/enc", "b/enc"]}, "base_models (by label) lists a value twice"),
    ({"significance": {"method": "t-test"}}, "significance.method"),
    ({"eval": {"fast": "turbo"}}, "eval.fast: unknown fast-path kind 'turbo'"),
])
def test_invalid_configs_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError) as err:
        compare_config_from_dict(raw_config(tmp_path, **change), "grid.yaml")
    assert "grid.yaml" in str(err.value) and message in str(err.value)


def test_train_section_is_validated_per_run_and_grid_keys_are_refused(tmp_path):
    raw = raw_config(tmp_path)
    raw["train"]["sampler"] = {"alpha": 0.3}
    raw["train"]["seed"] = 4
    with pytest.raises(ConfigError, match=r"\['seed', 'sampler.alpha'\] are set by the grid"):
        compare_config_from_dict(raw)
    raw = raw_config(tmp_path)
    raw["train"]["batch_size"] = 0
    with pytest.raises(ConfigError, match=r"(?s)^grid.yaml: train: of run me5-small/mono/seed0.*batch_size"):
        compare_config_from_dict(raw, "grid.yaml")
    raw = raw_config(tmp_path, samplers=["cross"])
    raw["train"]["data"]["languages"] = ["en"]
    with pytest.raises(ConfigError, match="sampler 'cross' needs at least 2"):
        compare_config_from_dict(raw)


def test_overrides_and_labels(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw_config(tmp_path)))
    config = load_compare_config(path, ["seeds=[7]", "train.steps=9", "significance.n_resamples=500"])
    assert config.seeds == [7] and expand(config)[1].train.steps == 9 and config.significance.n_resamples == 500
    assert model_label("intfloat/multilingual-e5-small") == "multilingual-e5-small"
    assert benchmark_slug("/data/toy bench@en,de") == "data_toy_bench@en,de"


def test_benchmark_specs():
    assert parse_benchmark_spec("xquad-r:test@en,DE") == ("xquad-r:test", ["en", "de"])
    assert parse_benchmark_spec("mlqa-r") == ("mlqa-r", None)
    assert parse_benchmark_spec("/data/a@b/folder") == ("/data/a@b/folder", None)  # '@' in a folder name
    with pytest.raises(ValueError, match="listed twice"):
        parse_benchmark_spec("mlqa-r@en,en")


def test_language_subset_of_a_benchmark(lareqa_dir):
    bench = load_benchmark_spec("xquad-r:test@en,zh", lareqa_dir)
    assert bench.name == "xquad-r:test@en,zh" and bench.query_languages == bench.corpus_languages == ["en", "zh"]
    assert len(bench.queries) == 2 * 578 and all(q.id in bench.qrels for q in bench.queries)
    assert all(cid.split(":")[0] in ("en", "zh") for rels in bench.qrels.values() for cid in rels)
    with pytest.raises(ConfigError, match=r"\['el'\] not among the languages of mlqa-r"):
        load_benchmark_spec("mlqa-r@en,el", lareqa_dir)


def test_shipped_configs_validate_and_the_demo_fits_its_budget(lareqa_dir, tmp_path, capsys):
    from hybridbatch.cli import main_demo
    from hybridbatch.experiments.demo import demo_config_path, describe_estimate, estimate_seconds

    assert demo_config_path() == ROOT / "configs" / "demo.yaml"
    full = load_compare_config(ROOT / "configs" / "compare" / "xquad-full.yaml", [f"output_dir={tmp_path / 'full'}"])
    assert len(expand(full)) == 10 and full.zero_shot_benchmark == "mlqa-r"
    demo = load_compare_config(demo_config_path(), [f"output_dir={tmp_path / 'demo'}",
                                                    f"train.data.data_dir={lareqa_dir}"])
    estimate = estimate_seconds(demo, native_bf16=False)
    assert estimate["train_steps"] == 90 and estimate["eval_texts"] == 4 * 4712 and estimate["train_texts"] == 90 * 64
    assert 7 * 60 <= estimate["total_s"] <= 10 * 60, estimate  # measured in fp32 on 2 idle cores: 7.9 min
    assert estimate["configured_s"] == estimate["total_s"]  # no native bf16: the fp32 time
    native = estimate_seconds(demo, native_bf16=True)  # precision auto + eval.fast auto on a native-bf16 CPU
    # measured with bf16 on 2 idle cores: 3 min 46 s (Zen 5), 6 min 04 s (Zen 4)
    assert 3.5 * 60 <= native["configured_s"] <= 7 * 60 and native["total_s"] == estimate["total_s"], native
    assert estimate["embedding_steps"] == 0  # the demo freezes the word embeddings
    # The paper recipe trains them: seeds 1-2 of alpha .25 / .75 (4 trainings, 8 evaluations) took 29 min 55 s
    # (Zen 4 class, bf16 evaluation, fp32 training); the first estimate (no word-embedding term, x3.2 bf16
    # encoding) said 16 min.
    paper = load_compare_config(ROOT / "configs" / "compare" / "paper-xquad-me5.yaml",
                                [f"output_dir={tmp_path / 'paper'}", "include_zero_shot=false", "samplers=[hybrid]",
                                 "alphas=[0.25, 0.75]", "seeds=[1, 2]", f"train.data.data_dir={lareqa_dir}"])
    alpha = estimate_seconds(paper, native_bf16=True)
    assert alpha["train_steps"] == alpha["embedding_steps"] == 32 and alpha["eval_texts"] == 4 * (12783 + 24733)
    assert 24 * 60 <= alpha["configured_s"] <= 36 * 60, alpha
    assert main_demo(["--dry-run", f"output_dir={tmp_path / 'demo'}", f"train.data.data_dir={lareqa_dir}"]) == 0
    listing = capsys.readouterr().out
    assert "me5-small/hybrid@0.5/seed0: to train" in listing and "7 task(s) to do" in listing
    assert "estimated wall time on 2 CPU cores: 9 min in fp32" in listing and "scaled" not in listing
    # another base model is scaled by its measured cost; an unmeasured one says it is counted as me5-small
    gemma = load_compare_config(ROOT / "configs" / "compare" / "paper-xquad-gemma.yaml",
                                [f"output_dir={tmp_path / 'gemma'}", f"train.data.data_dir={lareqa_dir}"])
    me5 = load_compare_config(ROOT / "configs" / "compare" / "paper-xquad-me5.yaml",
                              [f"output_dir={tmp_path / 'me5'}", f"train.data.data_dir={lareqa_dir}"])
    gemma_s, me5_s = estimate_seconds(gemma, native_bf16=True), estimate_seconds(me5, native_bf16=True)
    assert gemma_s["train_texts"] == me5_s["train_texts"] and gemma_s["eval_texts"] == me5_s["eval_texts"]
    assert 4 * me5_s["configured_s"] < gemma_s["configured_s"] < 6 * me5_s["configured_s"]
    assert "embeddinggemma-300m x5.5 training / x4.3 encoding" in describe_estimate(gemma_s)
    assert "not measured: counted at me5-small's cost" in describe_estimate({**me5_s, "models": ["labse"]})


def test_eval_fast_is_applied_to_every_text_model_of_the_grid(tmp_path, monkeypatch):
    """`eval.fast` reaches load_run_model: the evaluated model is make_fast's copy, for trained and zero-shot rows."""
    import hybridbatch.experiments.runner as runner
    import hybridbatch.models.registry as registry
    import hybridbatch.retrieval.fast_encode as fast_encode
    from hybridbatch.experiments.grid import expand

    config = compare_config_from_dict(raw_config(tmp_path, eval={"fast": "auto"}), "grid.yaml")
    calls = []
    monkeypatch.setattr(registry, "load_sentence_transformer", lambda target, device: ("model", target))
    monkeypatch.setattr(fast_encode, "make_fast", lambda model, kind: calls.append((model, kind)) or "fast")
    zero_shot = next(run for run in expand(config) if run.train is None)
    model, _, _ = runner.load_run_model(zero_shot, config)
    assert model == "fast" and calls == [(("model", zero_shot.model), "auto")]


def test_a_wrong_benchmark_fails_before_any_training(tmp_path, monkeypatch):
    """Every benchmark the grid will evaluate is loaded before the first training task (issue 15's neighbour:
    `compare` with a misspelt benchmark used to train every run first)."""
    import hybridbatch.experiments.runner as runner
    from hybridbatch.data.errors import InputError

    missing = str(tmp_path / "no-such-benchmark")
    config = compare_config_from_dict(raw_config(tmp_path, benchmarks=["xquad-r:test", missing],
                                                 zero_shot_benchmark=missing), "grid.yaml")
    monkeypatch.setattr(runner, "train_run", lambda run: pytest.fail("trained before the benchmarks loaded"))
    with pytest.raises(InputError, match="no-such-benchmark"):
        runner.run_grid(config, progress=False)
