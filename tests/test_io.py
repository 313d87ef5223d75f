"""`hybridbatch.io.atomic_folder` / `replace_folder`: a folder appears whole or not at all, an old copy stays
whole until the new one is in place, a refused or failed replacement leaves what was there."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from hybridbatch import io as hio


def entries(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_finished_block_replaces_the_old_folder_with_umask_modes(tmp_path):
    dest = tmp_path / "store"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    old_umask = os.umask(0o027)
    try:
        with hio.atomic_folder(dest) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".store.") and tmp.name.endswith(".tmp")
            fd, name = tempfile.mkstemp(dir=tmp)  # 0600, as a library writing through mkstemp leaves it
            os.write(fd, b"new")
            os.close(fd)
            os.rename(name, tmp / "new.txt")
            (tmp / "sub").mkdir(mode=0o700)
            assert not (dest / "new.txt").exists()  # nothing visible before the block ends
    finally:
        os.umask(old_umask)
    assert entries(dest) == ["new.txt", "sub"] and (dest / "new.txt").read_text() == "new"
    assert entries(tmp_path) == ["store"]  # no temporary or old folder left
    assert stat.S_IMODE(dest.stat().st_mode) == 0o750
    assert stat.S_IMODE((dest / "sub").stat().st_mode) == 0o750
    assert stat.S_IMODE((dest / "new.txt").stat().st_mode) == 0o640


def test_a_failing_block_leaves_the_old_folder_and_no_temporary(tmp_path):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "weights").write_text("old")
    with pytest.raises(RuntimeError, match="disk"), hio.atomic_folder(dest) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("disk full")
    assert (dest / "weights").read_text() == "old" and entries(tmp_path) == ["model"]


def test_check_refuses_a_foreign_folder_before_touching_it(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "precious.txt").write_text("keep me")

    def refuse(folder):
        raise FileExistsError(f"{folder} is not ours")

    with pytest.raises(FileExistsError, match="not ours"), hio.atomic_folder(dest, check=refuse) as tmp:
        (tmp / "x").write_text("x")
    assert (dest / "precious.txt").read_text() == "keep me" and entries(tmp_path) == ["out"]
    with hio.atomic_folder(tmp_path / "new", check=refuse) as tmp:  # no folder there: nothing to check
        (tmp / "x").write_text("x")
    assert entries(tmp_path / "new") == ["x"]


def test_a_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    dest = tmp_path / "set"
    dest.mkdir()
    (dest / "a").write_text("old")
    real = os.replace

    def failing(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(hio.os, "replace", failing)
    with pytest.raises(OSError, match="No space"), hio.atomic_folder(dest) as tmp:
        (tmp / "a").write_text("new")
    assert (dest / "a").read_text() == "old" and entries(tmp_path) == ["set"]


def test_a_concurrent_finished_writer_wins_only_when_done_says_so(tmp_path, monkeypatch):
    real = os.replace

    def theirs_first(src, dst):
        if str(src).endswith(".tmp"):  # another writer puts its finished folder there just before us
            (tmp_path / "set").mkdir()
            (tmp_path / "set" / "build.json").write_text("theirs")
        return real(src, dst)

    monkeypatch.setattr(hio.os, "replace", theirs_first)
    with hio.atomic_folder(tmp_path / "set", done=lambda d: (d / "build.json").is_file()) as tmp:
        (tmp / "build.json").write_text("ours")
    assert (tmp_path / "set" / "build.json").read_text() == "theirs" and entries(tmp_path) == ["set"]
    (tmp_path / "set" / "build.json").unlink()
    with pytest.raises(OSError), hio.atomic_folder(tmp_path / "set", done=lambda d: False) as tmp:
        (tmp / "build.json").write_text("ours")


def test_write_json_is_strict_json_with_null_for_non_finite(tmp_path):
    """metrics.json must parse in any JSON reader: NaN / inf (e.g. an undefined rank distance) become null."""
    import json
    import math

    from hybridbatch.io import write_json

    write_json(tmp_path / "m.json", {"a": math.nan, "b": [1.5, math.inf, {"c": -math.inf}], "d": (0.25, "x")})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.5, None, {"c": None}], "d": [0.25, "x"]}
