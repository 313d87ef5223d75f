"""The one parser of `hybridbatch`: every command registered, global flags anywhere, no torch before a command runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import hybridbatch
from hybridbatch.cli import build_parser, main, parse_args

SRC = str(Path(hybridbatch.__file__).resolve().parents[1])
COMMANDS = {"eval", "encode", "score", "eval-vl", "data", "models", "train", "train-vl", "compare", "demo", "explore"}


def subcommands(parser) -> dict:
    return next(action.choices for action in parser._actions if action.dest == "command")


def test_every_command_is_in_the_one_parser_and_in_help(capsys):
    assert set(subcommands(build_parser())) == COMMANDS
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    listing = capsys.readouterr().out.split("{", 1)[1].split("}", 1)[0].split(",")
    assert set(listing) == COMMANDS


def test_importing_and_parsing_import_no_torch():
    code = ("import sys; import hybridbatch.cli as cli; cli.build_parser(); "
            "cli.parse_args(['train', 'c.yaml', '--dry-run']); "
            "cli.parse_args(['eval', '--model', 'm', '--benchmark', 'b', '--out', 'o']); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": SRC}, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["-v", "train", "c.yaml"], ["train", "-v", "c.yaml"], ["train", "c.yaml", "-v"],
                                  ["data", "-v", "stats", "--benchmark", "b"], ["-v", "data", "stats", "--benchmark", "b"],
                                  ["eval", "--model", "m", "--benchmark", "b", "--out", "o", "-v"]])
def test_global_flags_anywhere(argv):
    assert parse_args(argv).verbose is True
    assert parse_args([a for a in argv if a != "-v"]).verbose is False


def test_overrides_may_follow_options():
    args = parse_args(["train", "c.yaml", "a=1", "--dry-run", "b=2", "--resume", "c=3"])
    assert (args.config, args.overrides, args.dry_run, args.resume) == ("c.yaml", ["a=1", "b=2", "c=3"], True, True)
    args = parse_args(["demo", "--dry-run", "a=1", "--no-progress", "b=2"])
    assert (args.config, args.overrides) == ("a=1", ["b=2"])  # the demo moves a `key=value` config to overrides


@pytest.mark.parametrize("argv, message", [
    (["train", "c.yaml", "--bogus", "a=1"], "hybridbatch train: error: unrecognized arguments: --bogus"),
    (["train", "c.yaml", "--force"], "hybridbatch train: error: --force only applies to --resume"),
    (["score", "--qrels", "q", "--run", "r", "extra"], "hybridbatch: error: unrecognized arguments: extra"),
])
def test_usage_errors_exit_2_with_the_commands_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message
