"""Every `hybridbatch` command, run as a user runs it (a subprocess), with bad input: one line, documented code.

The exit codes come from one table (`hybridbatch.cli.exit_codes`): 2 bad input or config, 3 non-finite numbers,
4 run folder in use, 5 the system refused, 1 a bug. Here every command gets a missing file, a symlink loop, a
folder where a file should be, or a malformed config; each must exit 2 with exactly one stderr line starting
`hybridbatch: error:` and no traceback. Also: `hybridbatch --help` lists every command without importing torch,
and global flags work before any command (`hybridbatch -v train --help`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hybridbatch

SRC = str(Path(hybridbatch.__file__).resolve().parents[1])
COMMANDS = ("eval", "encode", "score", "data", "eval-vl", "models", "train", "train-vl", "compare", "demo",
            "explore")


def hybridbatch_cli(args: list[str], tmp: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                   "HYBRIDBATCH_CACHE": str(tmp / "cache"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "hybridbatch.cli", *args], cwd=tmp, env=environment,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """Bad inputs: a symlink loop, a folder, a benchmark folder without corpus.jsonl, broken configs."""
    tmp = tmp_path_factory.mktemp("bad-inputs")
    os.symlink(tmp / "loop", tmp / "loop")
    (tmp / "folder").mkdir()
    (tmp / "folder-with-files").mkdir()
    (tmp / "folder-with-files" / "notes.txt").write_text("mine")
    good = tmp / "bench-with-corpus"
    (good / "qrels").mkdir(parents=True)
    (good / "corpus.jsonl").write_text('{"_id": "c1", "text": "an answer", "lang": "en"}\n')
    (good / "queries.jsonl").write_text('{"_id": "q1", "text": "what", "lang": "en"}\n')
    (good / "qrels" / "test.tsv").write_text("q1\tc1\t1\n")
    bench = tmp / "bench-without-corpus"
    (bench / "qrels").mkdir(parents=True)
    (bench / "queries.jsonl").write_text('{"_id": "q1", "text": "what", "lang": "en"}\n')
    (bench / "qrels" / "test.tsv").write_text("q1\tc1\t1\n")
    (tmp / "list.yaml").write_text("- just\n- a list\n")
    (tmp / "unknown-key.yaml").write_text("no_such_key: 1\n")
    (tmp / "not-utf8.yaml").write_bytes(b"model: caf\xe9\n")
    (tmp / "qrels.tsv").write_text("q1\tc1\t1\n")
    (tmp / "cache-is-a-file").write_text("x")
    return tmp


MISSING = "does-not-exist"
CASES = {
    "eval: no such benchmark": (["eval", "--model", "me5-small", "--benchmark", MISSING, "--out", "o"], None,
                                "unknown benchmark"),
    "eval: benchmark folder without corpus.jsonl": (
        ["eval", "--model", "me5-small", "--benchmark", "bench-without-corpus", "--out", "o"], None,
        "corpus.jsonl: missing file of the generic layout"),
    "eval: benchmark is a symlink loop": (["eval", "--model", "me5-small", "--benchmark", "loop", "--out", "o"], None,
                                          "symlink loop"),
    "encode: no such benchmark": (["encode", "--model", "me5-small", "--benchmark", MISSING, "--out", "o"], None,
                                  "unknown benchmark"),
    "score: qrels missing": (["score", "--qrels", MISSING, "--run", "qrels.tsv"], None, "qrels file does not exist"),
    "score: run is a folder": (["score", "--qrels", "qrels.tsv", "--run", "folder"], None, "run file is a folder"),
    "score: run is a symlink loop": (["score", "--qrels", "qrels.tsv", "--run", "loop"], None, "symlink loop"),
    "data export: no such benchmark": (["data", "export", "--benchmark", MISSING, "--out", "o"], None,
                                       "unknown benchmark"),
    "data export: out is a folder of other files": (["data", "export", "--benchmark", "bench-with-corpus", "--out",
                                                     "folder-with-files"], None, "folder exists and is not empty"),
    "data stats: benchmark is a file": (["data", "stats", "--benchmark", "qrels.tsv"], None, "expected a folder"),
    "data build-emoji: cache is a file": (["data", "build-emoji"], "cache-is-a-file", "cache-is-a-file"),
    "data build-openclipart: cache is a file": (["data", "build-openclipart"], "cache-is-a-file", "cache-is-a-file"),
    "models build: unknown name": (["models", "build", "no-such-model"], None, "unknown model"),
    "train: config missing": (["train", MISSING + ".yaml"], None, MISSING),
    "train: unknown key": (["train", "unknown-key.yaml", "--dry-run"], None, "unknown-key.yaml: invalid config; model: required"),
    "train-vl: config is a folder": (["train-vl", "folder"], None, "folder"),
    "compare: config is a symlink loop": (["compare", "loop"], None, "loop"),
    "demo: config missing": (["demo", MISSING + ".yaml"], None, MISSING),
    "eval-vl: caption file missing": (["eval-vl", "--model", "m", "--benchmark", MISSING + ".jsonl", "--out", "o"],
                                      None, MISSING),
    "train: config is a list, plus an override": (["train", "list.yaml", "steps=2"], None, "list.yaml"),
    "compare: config not UTF-8": (["compare", "not-utf8.yaml"], None, "not-utf8.yaml"),
    "explore: no such folder": (["explore", MISSING], None, "neither an evaluation folder"),
    "explore: a folder without an evaluation": (["explore", "folder"], None, "neither an evaluation folder"),
}


def test_every_command_has_a_bad_input_case():
    covered = {name.split(":")[0].split()[0] for name in CASES}
    assert covered == set(COMMANDS)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, bad):
    args, cache, expected = CASES[case]
    result = hybridbatch_cli(args, bad, env={"HYBRIDBATCH_CACHE": str(bad / cache)} if cache else None)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hybridbatch: error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert len(lines[0]) <= len("hybridbatch: error: ") + 300


def test_verbose_adds_the_traceback_before_the_one_line(bad):
    result = hybridbatch_cli(["-v", "train", "unknown-key.yaml", "--dry-run"], bad)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("hybridbatch: error: unknown-key.yaml: invalid config")


def test_help_lists_every_command_without_importing_torch(bad):
    result = hybridbatch_cli(["--help"], bad, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0
    listed = result.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert set(listed) == set(COMMANDS)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "hybridbatch" in imported and "argparse" in imported and "torch" not in imported


@pytest.mark.parametrize("command", ["train", "train-vl", "compare", "demo"])
def test_global_flags_work_before_the_commands_with_their_own_parsers(command, bad):
    result = hybridbatch_cli(["-v", command, "--help"], bad)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: hybridbatch {command}")


@pytest.mark.parametrize("args, expected", [
    (["eval", "--depth", "0"], "--depth must be at least 1, got 0"),  # was an IndexError after encoding
    (["eval", "--memory-mb", "nan"], "--memory-mb must be a positive number, got nan"),
    (["eval", "--memory-mb", "-1"], "--memory-mb must be a positive number"),  # was accepted
    (["eval", "--batch-size", "-1"], "--batch-size must be at least 1, got -1"),  # was accepted, exit 0
    (["eval", "--embeddings", "afile"], "--embeddings is a file, expected a folder"),
    (["eval", "--out", "afile"], "--out is a file, expected a folder"),  # was FileExistsError after encoding
    (["encode", "--max-seq-length", "-1"], "--max-seq-length must be at least 1"),  # was an OverflowError
    (["encode", "--shard-size", "0"], "--shard-size must be at least 1"),
    (["encode", "--threads", "0"], "--threads must be at least 1"),
    (["encode", "--out", "afile"], "--out is a file, expected a folder"),
    (["data", "export", "--out", "afile"], "--out is a file, expected a folder"),
    (["eval-vl", "--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_bad_arguments_are_refused_before_any_model_loads(args, expected, tmp_path, monkeypatch, capsys):
    from hybridbatch.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    needed = {"eval": ["--model", "m", "--benchmark", "b", "--out", "o"],
              "encode": ["--model", "m", "--benchmark", "b", "--out", "o"],
              "eval-vl": ["--model", "m", "--benchmark", "b", "--out", "o"], "data": ["--benchmark", "b"]}[args[0]]
    assert main([*args[:2 if args[0] == "data" else 1], *needed, *args[2 if args[0] == "data" else 1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hybridbatch: error: ") and expected in err[0], err
