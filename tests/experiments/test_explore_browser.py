"""The explorer page in a real browser: headless Chromium opens it from a file:// URL with `#q=<id>` in the
URL, runs its script, and the DOM it renders must show the ranks of the pooled TREC run, system by system.

Skipped only when no Chromium binary is installed (CI installs Debian's `chromium`)."""

from __future__ import annotations

import html
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hybridbatch.experiments.explore import build_explorer

_spec = importlib.util.spec_from_file_location("explore_helpers", Path(__file__).with_name("test_explore.py"))
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]


def rendered_dom(page: Path, fragment: str, profile: Path) -> str:
    result = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                             page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def shown_systems(dom: str) -> dict[str, dict]:
    """Per system column: the answer badges {doc: rank or ''} and the listed (doc, rank) rows."""
    cols = dom[dom.index('<div id="cols">'):dom.index('<div id="agg">')]
    out = {}
    for name, body in re.findall(r'<div class="sys" data-system="([^"]*)">(.*?)</ol></div>', cols, re.S):
        badges = re.findall(r'class="relrank"[^>]*data-doc="([^"]*)" data-rank="([^"]*)"', body)
        rows = re.findall(r'<li class="doc[^"]*" data-doc="([^"]*)" data-rank="(\d+)"', body)
        out[html.unescape(name)] = {"answers": dict(badges), "rows": [(d, int(r)) for d, r in rows],
                                    "marked": re.findall(r'<li class="doc rel" data-doc="([^"]*)"', body)}
    return out


def test_page_shows_the_trec_ranks_of_the_chosen_query(tmp_path):
    grid = helpers.make_grid(tmp_path)
    page = build_explorer(grid, sample=1000, top=10)
    folders = {"tiny/zero-shot": "tiny/zero-shot", "tiny/mono (seed 0)": "tiny/mono/seed0",
               "tiny/hybrid@0.5 (seed 0)": "tiny/hybrid@0.5/seed0"}
    beyond = 0
    for qid in ("de:q7", "zh:q0"):
        dom = rendered_dom(page, f"#b=0&q={qid}", tmp_path / "profile")
        assert f'id="qid" data-q="{qid}"' in dom
        shown = shown_systems(dom)
        assert list(shown) == ["tiny/zero-shot", "tiny/mono (seed 0)", "tiny/hybrid@0.5 (seed 0)"]
        answers = {f"{lang}:{qid.split(':q')[1]}:0:0" for lang in helpers.LANGS}
        for name, seen in shown.items():
            run = helpers.trec_ranks(grid / "runs" / folders[name] / "eval" / "toy" / "runs" / "multilingual.trec")
            rank_of = dict(run[qid])
            assert seen["rows"] == run[qid][:10]
            assert seen["answers"] == {d: str(rank_of.get(d, "")) for d in answers}
            assert set(seen["marked"]) == {d for d, r in run[qid][:10] if d in answers}
            beyond += list(seen["answers"].values()).count("")
    assert beyond > 0  # the biased system (mono) puts answers beyond the run's depth: shown as such


def test_second_benchmark_and_unknown_query(tmp_path):
    grid = helpers.make_grid(tmp_path)
    page = build_explorer(grid, sample=1000, top=10)
    dom = rendered_dom(page, "#b=1&q=en:q2", tmp_path / "profile")
    shown = shown_systems(dom)
    run = helpers.trec_ranks(grid / "runs" / "tiny" / "zero-shot" / "eval" / "toy-b" / "runs" / "multilingual.trec")
    assert list(shown) == ["tiny/zero-shot"] and shown["tiny/zero-shot"]["rows"] == run["en:q2"][:10]
    dom = rendered_dom(page, "#b=0&q=nope", tmp_path / "profile")
    assert "Query nope is not embedded" in dom
