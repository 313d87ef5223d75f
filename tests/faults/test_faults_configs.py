"""Configs that cannot run are refused before any work: never another exception, never after a model loads.

Unknown keys, wrong types and alpha outside [0, 1] are tested key by key in tests/training/test_config.py
and tests/experiments/test_grid.py; here a property test throws arbitrary damage at both configs and asks
only that the answer is a valid config or a `ConfigError`. The data-dependent refusals (batch larger than
the training groups, languages with no data) are shown to come before the model is loaded and before the
run folder gets any file; the preflight module makes the same checks for a compare grid.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.faults_inputs import mutate_json
from helpers.training_toys import base_config, write_config
from hybridbatch.cli import main_compare, main_train
from hybridbatch.experiments import runner
from hybridbatch.experiments.grid import compare_config_from_dict
from hybridbatch.experiments.grid_preflight import check_data, preflight_grid
from hybridbatch.training import trainer as trainer_module
from hybridbatch.training.config import ConfigError, config_from_dict, save_config
from hybridbatch.training.preflight import PreflightError, check_languages

FAST = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TRAIN = base_config("some/model", "data.jsonl", "out", checkpoint={"every": 5, "keep_last": 2},
                    early_stopping={"val_fraction": 0.2, "patience": 2, "every": 5})
GRID = {"base_models": ["me5-small"], "samplers": ["mono", "cross", "hybrid"], "alphas": [0.25, 0.5],
        "seeds": [0, 1], "benchmarks": ["xquad-r:test", "mlqa-r@en,de"], "zero_shot_benchmark": "mlqa-r@en,de",
        "train": {"data": {"source": "xquad-r:train", "languages": ["en", "de"]}, "batch_size": 8, "steps": 5},
        "eval": {"batch_size": 16}, "output_dir": "grid", "significance": {"n_resamples": 500}}


@FAST
@given(data=st.data())
def test_any_damaged_training_config_is_valid_or_a_config_error(data):
    raw, _ = data.draw(mutate_json(TRAIN))
    try:
        config_from_dict(raw, "run.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("run.yaml: ")


@FAST
@given(data=st.data())
def test_any_damaged_compare_config_is_valid_or_a_config_error(data):
    raw, _ = data.draw(mutate_json(GRID))  # no train.sampler to damage: see the xfail below
    try:
        compare_config_from_dict(raw, "grid.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("grid.yaml: ")


@pytest.mark.parametrize("sampler", ["hybrid", [1, 2]])
def test_a_train_sampler_that_is_not_a_mapping_is_a_config_error(sampler):
    with pytest.raises(ConfigError, match="sampler"):
        compare_config_from_dict({**GRID, "train": {**GRID["train"], "sampler": sampler}}, "grid.yaml")


# --------------------------------------------------------------------------------------------- data-dependent
@pytest.mark.parametrize(("override", "message"), [
    ({"batch_size": 64}, r"batch_size 64 is larger than the number of training groups \(24"),
    ({"data": {"languages": ["en", "fr"]}}, r"data.languages \['fr'\] have no data"),
    ({"data": {"languages": ["en", "EN"]}}, r"twice"),
])
def test_impossible_data_is_refused_before_the_model_loads(tmp_path, toy_data, monkeypatch, capsys, override,
                                                           message):
    raw = base_config("some/model", toy_data, tmp_path / "run", steps=3)
    for key, value in override.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    monkeypatch.setattr(trainer_module, "load_model", lambda *a: pytest.fail("the model was loaded"))
    with pytest.raises(ConfigError, match=message):
        trainer_module.train(config_from_dict(raw))
    run = tmp_path / "run"  # refused at validation (no folder), or under the lock: no config, metrics, checkpoint
    assert not run.exists() or [p.name for p in run.iterdir()] == [".lock"]
    with pytest.raises(ConfigError, match=message):
        check_data(config_from_dict(raw))  # the same refusal, for a preflight that holds no lock
    assert main_train([str(write_config(tmp_path / "run.yaml", raw))]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_resuming_with_another_config_is_refused_before_the_model_loads(tmp_path, toy_data, monkeypatch):
    class ModelLoaded(Exception):
        pass

    def load_model(*args):
        raise ModelLoaded

    raw = base_config("some/model", toy_data, tmp_path / "run", steps=3)
    save_config(config_from_dict({**raw, "lr": 0.1}), tmp_path / "run")
    monkeypatch.setattr(trainer_module, "load_model", load_model)
    with pytest.raises(ConfigError, match=r"cannot resume .*run: the config differs from .*config.yaml in \['lr'\]"):
        trainer_module.train(config_from_dict(raw), resume=True)
    save_config(config_from_dict(raw), tmp_path / "run")
    with pytest.raises(ModelLoaded):  # keys that do not change the training (checkpoint.*) may change
        trainer_module.train(config_from_dict({**raw, "checkpoint": {"every": 1}}), resume=True)


def test_malformed_language_codes_are_named_by_the_config_and_the_preflight(tmp_path, toy_data):
    raw = base_config("some/model", toy_data, tmp_path / "run")
    for languages, message in ((["en", "english"], "malformed language code 'english'"),
                               (["en", "xx"], "unknown language code 'xx'"),
                               (["pt_BR", "pt-br"], r"lists \['pt-BR'\] twice")):
        raw["data"]["languages"] = languages
        with pytest.raises(ConfigError, match=rf"data.languages.*{message}"):
            config_from_dict(raw)  # validation refuses it, naming the key
        config = config_from_dict({**raw, "data": {**raw["data"], "languages": ["en", "de"]}})
        config.data.__dict__["languages"] = languages  # as if built around validation: the preflight still names it
        with pytest.raises(PreflightError, match=rf"data.languages.*{message}"):
            check_languages(config)


def test_the_app_names_a_malformed_language_code(tmp_path, toy_data, capsys):
    raw = base_config("some/model", toy_data, tmp_path / "run")
    raw["data"]["languages"] = ["en", "english"]
    assert main_train([str(write_config(tmp_path / "run.yaml", raw))]) == 2


# --------------------------------------------------------------------------------------------- compare grid
def toy_grid(tmp_path, toy_data, batch_size: int = 8, languages: tuple[str, ...] = ("en", "de")) -> dict:
    return {"base_models": ["tiny"], "samplers": ["mono", "hybrid"], "seeds": [0],
            "benchmarks": [str(tmp_path / "bench")], "output_dir": str(tmp_path / "grid"),
            "train": {"data": {"source": str(toy_data), "languages": list(languages)}, "batch_size": batch_size,
                      "steps": 2}}


@pytest.mark.parametrize(("change", "message"), [
    ({"batch_size": 32}, "batch_size 32 is larger than the number of training groups"),
    ({"languages": ("en", "fr")}, r"\['fr'\] have no data"),
])
def test_preflight_grid_refuses_impossible_data_without_a_model(tmp_path, toy_data, monkeypatch, change, message):
    config = compare_config_from_dict(toy_grid(tmp_path, toy_data, **change))
    monkeypatch.setattr(runner, "load_run_model", lambda *a: pytest.fail("a model was loaded"))
    with pytest.raises(ConfigError, match=message):
        preflight_grid(config)
    assert not (tmp_path / "grid").exists()
    preflight_grid(compare_config_from_dict(toy_grid(tmp_path, toy_data)))  # the valid grid passes


def test_compare_refuses_impossible_data_before_loading_a_model(tmp_path, toy_data, monkeypatch):
    path = tmp_path / "grid.yaml"
    path.write_text(__import__("yaml").safe_dump(toy_grid(tmp_path, toy_data, batch_size=32)))
    monkeypatch.setattr(runner, "load_run_model", lambda *a: pytest.fail("a model was loaded"))
    assert main_compare([str(path), "--no-progress"]) == 2
