"""Issue 15, training side: no NaN model called trained, no run history rewritten, no config that explodes.

Each test here failed before its fix: `lr: .inf` trained a model of NaN weights and exited 0; `steps: true`
was one step; a 64-bit seed passed `--dry-run`; a non-UTF-8 or list-shaped YAML and a YAML alias bomb gave a
traceback or a 52 MB message; `--dry-run` rewrote a run's config.yaml so that `--resume` with another sampler
looked consistent; a misspelt `eval.benchmarks` entry was found after the last step and lost the run;
`output_dir=` trained into the current folder. The same faults are probed in `train-vl` and `compare`.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from PIL import Image

from helpers.training_toys import base_config, write_config
from hybridbatch.cli import main_compare, main_train, main_train_vl
from hybridbatch.data.captions import Caption, CaptionSet, ImageItem, save_caption_jsonl
from hybridbatch.training import preflight
from hybridbatch.training import trainer as trainer_module
from hybridbatch.training.config import ConfigError, config_from_dict, load_config, save_config
from hybridbatch.training.image_text_config import load_image_text_config


def one_line_error(capsys, limit: int = 1000) -> str:
    """The `hybridbatch: error: ...` line on stderr (the one exit-code table's format), and the whole message (with its `  key: problem` lines, progress bars
    and log lines aside) shorter than `limit`; no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "it/s" not in line and " WARNING " not in line]
    starts = [i for i, line in enumerate(lines) if line.startswith("hybridbatch: error: ")]
    assert len(starts) == 1, err[:1000]
    message = "\n".join(lines[starts[0]:])
    assert len(message) < limit, message[:1000]
    return lines[starts[0]]


def no_model_load(monkeypatch):
    monkeypatch.setattr(trainer_module, "load_model", lambda *a: pytest.fail("the model was loaded"))


@pytest.fixture
def train_yaml(tmp_path, toy_data):
    return write_config(tmp_path / "run.yaml", base_config("some/model", toy_data, tmp_path / "run", steps=3))


@pytest.fixture
def grid_yaml(tmp_path, toy_data):
    grid = {"base_models": ["tiny"], "samplers": ["mono"], "seeds": [0], "benchmarks": ["xquad-r:test"],
            "train": {"data": {"source": str(toy_data), "languages": ["en", "de"]}, "batch_size": 8, "steps": 2},
            "output_dir": str(tmp_path / "grid")}
    return write_config(tmp_path / "grid.yaml", grid)


@pytest.fixture
def vl_yaml(tmp_path):
    """A caption set of 6 one-colour images with en/de captions, and a train-vl config on it."""
    (tmp_path / "img").mkdir()
    images, captions = [], []
    for i in range(6):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "img" / f"{i}.png")
        images.append(ImageItem(f"i{i}", str(tmp_path / "img" / f"{i}.png")))
        captions += [Caption(f"i{i}/{lang}", f"{lang} picture {i}", lang, (f"i{i}",), f"i{i}#0") for lang in ("en", "de")]
    save_caption_jsonl(tmp_path / "captions.jsonl", CaptionSet("toy", images, captions))
    raw = {"text_model": "tiny", "data": {"source": str(tmp_path / "captions.jsonl"), "languages": ["en", "de"]},
           "batch_size": 4, "steps": 3, "output_dir": str(tmp_path / "vl")}
    return write_config(tmp_path / "vl.yaml", raw)


# --------------------------------------------------------------------------------------------- numbers
BAD_NUMBERS = ["lr=.inf", "lr=.nan", "lr=-.inf", "lr=true", "lr=1e6", "temperature=.inf", "temperature=.nan",
               "temperature=0", "weight_decay=.inf", "weight_decay=.nan", "max_grad_norm=.inf",
               "early_stopping.min_delta=.inf", "early_stopping.val_fraction=.nan", "steps=true", "batch_size=true",
               "grad_accum=false", "checkpoint.every=true", "symmetric=1", "eval.final=0",
               f"seed={2**64}", f"seed={2**32}", "seed=-1", "sampler.alpha=.inf"]


@pytest.mark.parametrize("override", BAD_NUMBERS)
@pytest.mark.parametrize("dry_run", [True, False])
def test_non_finite_or_absurd_hyperparameters_are_config_errors(train_yaml, tmp_path, monkeypatch, capsys,
                                                                override, dry_run):
    no_model_load(monkeypatch)
    assert main_train([str(train_yaml), override, *(["--dry-run"] if dry_run else [])]) == 2
    err = one_line_error(capsys)
    assert override.split("=")[0] in err
    assert not (tmp_path / "run").exists()


def test_a_seed_numpy_cannot_take_is_refused_and_the_largest_it_takes_runs(train_yaml):
    with pytest.raises(ConfigError, match="seed: Input should be less than or equal to 4294967295"):
        load_config(train_yaml, [f"seed={2**32}"])
    assert load_config(train_yaml, [f"seed={2**32 - 1}"]).seed == 2**32 - 1


@pytest.mark.parametrize("override", ["lr=.inf", "head_lr=.nan", "temperature=1", "text_text_weight=.inf",
                                      "steps=true", "lock_image=1", f"seed={2**64}", "weight_decay=.nan"])
def test_train_vl_refuses_the_same_numbers(vl_yaml, tmp_path, capsys, override):
    assert main_train_vl([str(vl_yaml), override, "--dry-run"]) == 2
    one_line_error(capsys)
    assert not (tmp_path / "vl").exists()


@pytest.mark.parametrize("override", ["train.lr=.inf", "train.temperature=.nan", "train.steps=true", "seeds=[true]",
                                      f"seeds=[{2**32}]"])
def test_compare_refuses_the_same_numbers_in_its_train_section(grid_yaml, capsys, override):
    assert main_compare([str(grid_yaml), override, "--dry-run"]) == 2
    one_line_error(capsys, limit=1000)


# --------------------------------------------------------------------------------------------- YAML files
def alias_bomb() -> str:
    """9 levels of 9 aliases: about 400 bytes that expand to 9**9 (387 million) strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\nmodel: *i\n"


BAD_FILES = {
    "latin-1": ("model: café\n".encode("latin-1"), "not UTF-8 text"),
    "a list": (b"- model: x\n- steps: 3\n", "expected a mapping"),
    "an alias bomb": (alias_bomb().encode(), "expands to more than"),
    "a self-reference": (b"model: &x [*x]\n", "refers to the mapping or list that contains it"),
    "a huge value": (("output_dir: [" + ", ".join(["'" + "x" * 1000 + "'"] * 500) + "]\n").encode(), "invalid"),
    "a huge file": (b"# " + b"x" * (2 << 20) + b"\nmodel: x\n", "a config is at most"),
}


@pytest.mark.parametrize("overrides", [[], ["steps=3"]])
@pytest.mark.parametrize("kind", BAD_FILES)
@pytest.mark.parametrize("command", [main_train, main_train_vl, main_compare])
def test_a_bad_yaml_file_is_one_short_line_naming_the_file(tmp_path, capsys, command, kind, overrides):
    data, message = BAD_FILES[kind]
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    assert command([str(path), *overrides, "--dry-run"]) == 2
    err = one_line_error(capsys, limit=1500)
    assert str(path) in err and message in err


def test_an_alias_bomb_in_an_override_is_refused(train_yaml, capsys):
    bomb = "{" + alias_bomb().strip().replace("\n", ", ").replace("model: *i", "z: *i") + "}"
    assert yaml.safe_load(bomb)["z"][0][0][0][0][0][0][0][0][0] == "lol"  # a real bomb
    assert main_train([str(train_yaml), f"model={bomb}", "--dry-run"]) == 2
    assert "expands to more than" in one_line_error(capsys)


def test_error_messages_quote_at_most_a_few_hundred_characters_of_a_value():
    raw = base_config("m", "d.jsonl", "out", steps="9" * 100_000 + "x")
    raw["data"]["languages"] = ["en"] * 50_000
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, "run.yaml")
    assert len(str(caught.value)) < 1200 and "…" in str(caught.value)
    raw["data"]["languages"] = list(range(50_000))  # 50,000 wrong types: 20 lines, then a count
    with pytest.raises(ConfigError, match=r"\.\.\. and 4998\d more") as caught:
        config_from_dict(raw, "run.yaml")
    assert len(str(caught.value)) < 3000


# --------------------------------------------------------------------------------------------- NaN weights
def train_tiny(tmp_path, toy_data, tiny_model, **overrides):
    raw = base_config(tiny_model, toy_data, tmp_path / "run", steps=3, nonfinite_loss="skip", **overrides)
    return write_config(tmp_path / "run.yaml", raw)


def test_a_non_finite_learning_rate_stops_before_any_update_even_with_skip(tmp_path, toy_data, tiny_model,
                                                                           monkeypatch, capsys):
    """What `lr: .inf` did at step 1 (warm-up: inf * 0 = NaN), with the config check out of the way."""
    make = trainer_module.make_scheduler
    monkeypatch.setattr(trainer_module, "make_scheduler", lambda opt, cfg: (make(opt, cfg), torch.optim.lr_scheduler
                        .LambdaLR(opt, lambda step: math.nan))[1])
    assert main_train([str(train_tiny(tmp_path, toy_data, tiny_model))]) == 3
    assert "learning rate nan at step 1 is not finite" in one_line_error(capsys)
    assert not (tmp_path / "run" / "model").exists()


def test_an_update_that_makes_a_weight_nan_stops_the_run_and_saves_no_model(tmp_path, toy_data, tiny_model,
                                                                            monkeypatch, capsys):
    make = trainer_module.make_optimizer

    def poisoned(model, config):
        optimizer = make(model, config)
        first = next(p for p in model.parameters() if p.requires_grad)
        optimizer.register_step_post_hook(lambda *a: first.data.view(-1)[0].fill_(math.nan))
        return optimizer

    monkeypatch.setattr(trainer_module, "make_optimizer", poisoned)
    assert main_train([str(train_tiny(tmp_path, toy_data, tiny_model))]) == 3
    assert "non-finite weights after the update of step 1" in one_line_error(capsys)
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "summary.json").exists()


# --------------------------------------------------------------------------------------------- dry run, resume
def fake_interrupted_run(tmp_path, toy_data):
    """A hybrid run folder with a metrics log and a checkpoint folder, as an interrupted run leaves it."""
    run = tmp_path / "run"
    save_config(config_from_dict(base_config("some/model", toy_data, run, steps=3)), run)
    (run / "batches.jsonl").write_text("the hybrid batches trained so far\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "type": "cross"}\n')
    (run / "checkpoints").mkdir()
    return run


def test_a_dry_run_never_rewrites_a_run_folder_and_resume_then_refuses_the_change(tmp_path, toy_data, train_yaml,
                                                                                  monkeypatch, capsys):
    run = fake_interrupted_run(tmp_path, toy_data)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main_train([str(train_yaml), "sampler.name=mono", "--dry-run"]) == 0
    assert f"{run}.dry-run" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"} == before
    assert yaml.safe_load((tmp_path / "run.dry-run" / "config.yaml").read_text())["sampler"]["name"] == "mono"
    no_model_load(monkeypatch)
    assert main_train([str(train_yaml), "sampler.name=mono", "--resume"]) == 2
    err = one_line_error(capsys)
    assert "['sampler.name']" in err and "--force" in err


def test_resume_force_continues_with_the_change_and_records_it(tmp_path, toy_data, tiny_model, capsys):
    cfg = write_config(tmp_path / "run.yaml", base_config(tiny_model, toy_data, tmp_path / "run", steps=2,
                                                          checkpoint={"every": 2}))
    assert main_train([str(cfg)]) == 0
    assert main_train([str(cfg), "steps=4", "sampler.name=mono", "--resume"]) == 2
    with pytest.raises(SystemExit):  # --force needs --resume
        main_train([str(cfg), "steps=4", "sampler.name=mono", "--force"])
    assert main_train([str(cfg), "steps=4", "sampler.name=mono", "--resume", "--force"]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "config_changes.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["from_step"] == 2
    assert records[0]["changed"] == {"sampler.name": {"was": "hybrid", "now": "mono"}, "steps": {"was": 2, "now": 4}}
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["type"] for m in metrics if "type" in m][2:] == ["mono", "mono"]


def test_resume_refuses_training_data_edited_since_unless_forced(tmp_path, toy_data, tiny_model, capsys):
    """Same config, other texts (a data file edited between sessions): `--resume` used to continue silently."""
    import shutil

    data = tmp_path / "toy.jsonl"
    shutil.copy(toy_data, data)
    cfg = write_config(tmp_path / "run.yaml", base_config(tiny_model, data, tmp_path / "run", steps=2,
                                                          checkpoint={"every": 2}))
    assert main_train([str(cfg)]) == 0
    fingerprint = (tmp_path / "run" / "data.sha256").read_text().strip()
    assert len(fingerprint) == 64
    assert main_train([str(cfg), "--resume"]) == 0  # unchanged data: resumes (here: nothing left to do)
    lines = data.read_text(encoding="utf-8").splitlines()
    data.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # one group fewer
    capsys.readouterr()
    assert main_train([str(cfg), "--resume"]) == 2
    assert "data (contents" in one_line_error(capsys)
    assert main_train([str(cfg), "--resume", "--force"]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "config_changes.jsonl").read_text().splitlines()]
    change = records[-1]["changed"]["data (contents: sha256 of every training text)"]
    assert change["was"] == fingerprint and change["now"] != fingerprint
    assert (tmp_path / "run" / "data.sha256").read_text().strip() == change["now"]


def test_a_dry_run_of_train_vl_never_rewrites_a_finished_run(vl_yaml, tmp_path, capsys):
    run = tmp_path / "vl"
    run.mkdir()
    (run / "config.yaml").write_text("the config it was trained with\n")
    (run / "summary.json").write_text("{}\n")
    (run / "model").mkdir()
    assert main_train_vl([str(vl_yaml), "sampler.name=mono", "--dry-run"]) == 0
    assert (run / "config.yaml").read_text() == "the config it was trained with\n"
    assert not (run / "batches.jsonl").exists()
    assert (tmp_path / "vl.dry-run" / "batches.jsonl").is_file()
    assert "vl.dry-run" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- benchmarks
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_wrong_benchmark_is_found_before_training(train_yaml, tmp_path, monkeypatch, capsys, dry_run):
    no_model_load(monkeypatch)
    code = main_train([str(train_yaml), "eval.benchmarks=[xquad-r:tset]", *(["--dry-run"] if dry_run else [])])
    assert code == 2
    assert "eval.benchmarks: 'xquad-r:tset' cannot be loaded" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_train_vl_loads_its_evaluation_sets_before_training(vl_yaml, tmp_path, capsys):
    assert main_train_vl([str(vl_yaml), f"eval.benchmarks=[{tmp_path / 'nope.jsonl'}]", "--dry-run"]) == 2
    one_line_error(capsys)


def test_the_model_is_saved_before_the_final_evaluation(tmp_path, toy_data, tiny_model, monkeypatch):
    class EvaluationFailed(Exception):
        pass

    def failing(self, model, out_dir):
        raise EvaluationFailed("the benchmark went away")

    monkeypatch.setattr(preflight, "check_benchmarks", lambda *a: None)
    monkeypatch.setattr(trainer_module.BenchmarkEvaluator, "__call__", failing)
    config = config_from_dict(base_config(tiny_model, toy_data, tmp_path / "run", steps=2,
                                          eval={"final": True, "benchmarks": ["somewhere"]}))
    with pytest.raises(EvaluationFailed):
        trainer_module.train(config)
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps_done"] == 2 and "the benchmark went away" in summary["final_eval_error"]


# --------------------------------------------------------------------------------------------- output folders
@pytest.mark.parametrize("value", ["", ".", "./", "CWD", "PARENT"])
@pytest.mark.parametrize("dry_run", [True, False])
def test_the_current_folder_is_never_an_output_folder(train_yaml, tmp_path, monkeypatch, capsys, value, dry_run):
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text("someone else's config\n")
    monkeypatch.chdir(work)
    no_model_load(monkeypatch)
    value = {"CWD": str(work), "PARENT": ".."}.get(value, value)
    assert main_train([str(train_yaml), f"output_dir={value}", *(["--dry-run"] if dry_run else [])]) == 2
    one_line_error(capsys)
    assert sorted(p.name for p in work.iterdir()) == ["config.yaml"]
    assert (work / "config.yaml").read_text() == "someone else's config\n"


def test_a_folder_of_other_files_is_never_an_output_folder(train_yaml, tmp_path, monkeypatch, capsys):
    other = tmp_path / "papers"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    no_model_load(monkeypatch)
    for args in (["--dry-run"], []):
        assert main_train([str(train_yaml), f"output_dir={other}", *args]) == 2
        assert "not a run folder and already holds other files (notes.txt)" in one_line_error(capsys)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("value", ["", ".", "OTHER"])
def test_train_vl_and_compare_refuse_the_same_output_folders(vl_yaml, grid_yaml, tmp_path, monkeypatch, capsys,
                                                             value):
    other = tmp_path / "papers"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(other)
    value = str(other) if value == "OTHER" else value
    assert main_train_vl([str(vl_yaml), f"output_dir={value}", "--dry-run"]) == 2
    one_line_error(capsys)
    assert main_train_vl([str(vl_yaml), f"output_dir={value}"]) == 2
    one_line_error(capsys)
    for args in (["--dry-run"], ["--report-only"], ["--no-progress"]):
        assert main_compare([str(grid_yaml), f"output_dir={value}", *args]) == 2
        one_line_error(capsys)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_the_vl_config_refuses_an_empty_output_dir(vl_yaml):
    with pytest.raises(ConfigError, match="output_dir: is empty"):
        load_image_text_config(vl_yaml, ["output_dir="])


def test_train_vl_stops_on_non_finite_weights_and_saves_no_model(vl_yaml, tmp_path, monkeypatch):
    from hybridbatch.models.image_towers import build_tiny_clip_vision
    from hybridbatch.models.tiny import build_tiny_sentence_transformer
    from hybridbatch.training import image_text

    texts = [f"{lang} picture {i}" for i in range(6) for lang in ("en", "de")]
    text_model = build_tiny_sentence_transformer(tmp_path / "text", texts=texts, seed=0)
    tower = build_tiny_clip_vision(tmp_path / "tower", seed=0)
    make = image_text.make_optimizer

    def poisoned(model, config):
        optimizer, scheduler = make(model, config)
        head = next(p for p in model.parameters() if p.requires_grad)
        optimizer.register_step_post_hook(lambda *a: head.data.view(-1)[0].fill_(math.inf))
        return optimizer, scheduler

    monkeypatch.setattr(image_text, "make_optimizer", poisoned)
    config = load_image_text_config(vl_yaml, [f"text_model={text_model}", f"image_tower=hf-clip-vision:{tower}",
                                              "embed_dim=16", "freeze_word_embeddings=false"])
    with pytest.raises(image_text.NonFiniteImageTextLoss, match="non-finite weights after the update"):
        image_text.train_image_text(config)
    assert not (tmp_path / "vl" / "model").exists() and not (tmp_path / "vl" / "summary.json").exists()
