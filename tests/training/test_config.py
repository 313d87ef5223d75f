"""Config validation: every mistake is named (key and file) before any data or model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers.training_toys import base_config, write_config
from hybridbatch.training.config import (
    ConfigError,
    apply_overrides,
    config_differences,
    config_from_dict,
    load_config,
    parse_override,
    save_config,
)
from hybridbatch.training.training_data import prepare_data


@pytest.fixture
def config_file(tmp_path, toy_data):
    return write_config(tmp_path / "run.yaml", base_config("some/model", toy_data, tmp_path / "run"))


def test_defaults_and_round_trip(config_file, tmp_path):
    config = load_config(config_file)
    assert (config.lr, config.weight_decay, config.temperature) == (0.002, 0.01, 0.05)
    assert config.nonfinite_loss == "stop" and config.checkpoint.keep_last == 2
    saved = save_config(config, tmp_path / "out")
    assert config_differences(load_config(saved), config) == []


def test_unknown_key_names_key_and_file(config_file):
    raw = yaml.safe_load(config_file.read_text())
    raw["sampler"]["alpah"] = 0.3
    raw["bacth_size"] = 4
    config_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(config_file)
    message = str(err.value)
    assert str(config_file) in message
    assert "sampler.alpah: unknown key" in message and "bacth_size: unknown key" in message


def test_wrong_type_names_key(config_file):
    with pytest.raises(ConfigError, match=r"batch_size: .*integer"):
        load_config(config_file, ["batch_size=many"])
    with pytest.raises(ConfigError, match=r"data.languages"):
        load_config(config_file, ["data.languages=7"])


def test_missing_required_key(tmp_path):
    with pytest.raises(ConfigError, match="steps: required key is missing"):
        config_from_dict({"model": "m", "data": {"source": "x", "languages": ["en"]}, "batch_size": 2,
                          "output_dir": "o"})


@pytest.mark.parametrize(("text", "key", "value"), [
    ("sampler.alpha=0.3", ["sampler", "alpha"], 0.3),
    ("steps=100", ["steps"], 100),
    ("symmetric=true", ["symmetric"], True),
    ("model=me5-small", ["model"], "me5-small"),
    ("data.languages=[en, de]", ["data", "languages"], ["en", "de"]),
    ("output_dir=runs/a=b", ["output_dir"], "runs/a=b"),
])
def test_override_parsing(text, key, value):
    assert parse_override(text) == (key, value)


def test_overrides_apply_and_validate(config_file):
    config = load_config(config_file, ["sampler.alpha=0.3", "steps=7", "checkpoint.every=2"])
    assert (config.sampler.alpha, config.steps, config.checkpoint.every) == (0.3, 7, 2)
    with pytest.raises(ConfigError, match="bad override"):
        load_config(config_file, ["alpha"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"steps": 3}, ["steps.x=1"])


@pytest.mark.parametrize("alpha", [-0.1, 1.5, ".nan"])
def test_alpha_out_of_range(config_file, alpha):
    with pytest.raises(ConfigError, match=r"sampler.alpha: .*alpha must be in \[0, 1\]"):
        load_config(config_file, [f"sampler.alpha={alpha}"])


@pytest.mark.parametrize(("override", "message"), [
    ("sampler.name=zigzag", "unknown sampler"),
    ("nonfinite_loss=ignore", "nonfinite_loss"),
    ("warmup_steps=50", "warmup_steps"),
    ("early_stopping.patience=2", "val_fraction"),
    ("data.languages=[en]", "at least 2"),
])
def test_impossible_combinations(config_file, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config_file, [override])


def test_data_checks_when_loaded(config_file):
    with pytest.raises(ConfigError, match=r"batch_size 64 is larger than the number of training groups \(24"):
        prepare_data(load_config(config_file, ["batch_size=64"]))
    with pytest.raises(ConfigError, match=r"\['fr'\] have no data"):
        prepare_data(load_config(config_file, ["data.languages=[en, fr]"]))
    with pytest.raises(ConfigError, match="neither a LAReQA spec"):
        prepare_data(load_config(config_file, ["data.source=missing.jsonl"]))


def test_validation_split_is_seeded_and_disjoint(config_file):
    a = prepare_data(load_config(config_file, ["early_stopping.val_fraction=0.25"]))
    b = prepare_data(load_config(config_file, ["early_stopping.val_fraction=0.25"]))
    assert [g.id for g in a.val] == [g.id for g in b.val] and len(a.val) == 6
    assert not {g.id for g in a.val} & {g.id for g in a.train}


def test_shipped_configs_validate():
    root = Path(__file__).resolve().parents[2] / "configs"
    smoke = load_config(root / "train" / "smoke.yaml")
    assert smoke.model == "tiny" and smoke.data.languages == ["en", "de", "zh"]
    full = load_config(root / "train" / "xquad-hybrid.yaml")
    assert (full.model, full.sampler.name, full.sampler.alpha, full.batch_size) == ("me5-small", "hybrid", 0.5, 32)
    assert full.freeze_word_embeddings and full.max_seq_length == 128 and len(full.data.languages) == 11


def test_app_reports_config_errors_with_exit_code_2(config_file, capsys):
    from hybridbatch.cli import main_train

    assert main_train([str(config_file), "sampler.alpha=2", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(config_file) in err and "sampler.alpha" in err
