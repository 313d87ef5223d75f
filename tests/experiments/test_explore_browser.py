"""The explorer page in a real browser: headless Chromium opens it from a file:// URL with `#q=<id>` in the
URL, runs its script, and the DOM it renders must show the ranks of the pooled TREC run, system by system.

Skipped only when no Chromium binary is installed (CI installs Debian's `chromium`)."""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
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
         "--enable-logging=stderr", "--v=0"]


def rendered_dom(page: Path, fragment: str, profile: Path) -> str:
    result = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                             "--dump-dom", page.resolve().as_uri() + fragment], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Uncaught" not in result.stderr, result.stderr[-2000:]  # no script error in the console
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


class DevTools:
    """Chromium driven over --remote-debugging-pipe (fd 3 in, fd 4 out; JSON messages ending in NUL)."""

    def __init__(self, url: str, profile: Path):
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()

        def wire():  # the child's fds 3 and 4 are the pipe's ends (kept: pass_fds is applied after this)
            a, b = os.dup(to_chrome), os.dup(from_chrome)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                                      url], pass_fds=(3, 4, to_chrome, from_chrome), preexec_fn=wire,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._id = b"", 0
        page = next(t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._in, 1 << 16)
                assert chunk, "chromium closed the pipe"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply["result"]

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", self.session, expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        os.close(self._in)
        os.close(self._out)


def test_search_and_click_select_a_query(tmp_path):
    """Type in the search box, click the hit, then click a 'most biased' entry: the page follows, and shows
    the TREC ranks of each."""
    grid = helpers.make_grid(tmp_path)
    page = build_explorer(grid, sample=1000, top=10)
    browser = DevTools(page.resolve().as_uri(), tmp_path / "profile")
    try:
        browser.wait_for("document.querySelectorAll('#cols .sys').length === 3")
        assert browser.js("document.getElementById('qid').dataset.q") == browser.js(
            "document.querySelector('#most li').dataset.q")  # the default query: the most biased one
        hit = browser.js("(() => { const s = document.getElementById('search'); s.value = 'question 5 in zh';"
                         " s.dispatchEvent(new Event('input')); const hits = document.querySelectorAll('#hits li');"
                         " hits[0].click(); return [...hits].map(li => li.dataset.q); })()")
        assert hit == ["zh:q5"]
        browser.wait_for("document.getElementById('qid').dataset.q === 'zh:q5'")
        target = browser.js("document.querySelectorAll('#least li')[2].dataset.q")
        browser.js("document.querySelectorAll('#least li')[2].click()")
        browser.wait_for(f"document.getElementById('qid').dataset.q === {json.dumps(target)}")
        assert browser.js("location.hash") == f"#b=0&q={target.replace(':', '%3A')}"
        shown = shown_systems(browser.js("document.documentElement.outerHTML"))
    finally:
        browser.close()
    run = helpers.trec_ranks(grid / "runs" / "tiny" / "zero-shot" / "eval" / "toy" / "runs" / "multilingual.trec")
    assert shown["tiny/zero-shot"]["rows"] == run[target][:10]


def test_texts_with_markup_stay_text(tmp_path):
    """A query text holding `</script>` or `<!--` neither ends the embedded data nor becomes markup."""
    grid = helpers.make_grid(tmp_path)
    queries = tmp_path / "toy" / "queries.jsonl"
    nasty = '</script><script>document.title="owned"</script><!-- <b>bold</b> & "q"'
    lines = [json.loads(line) for line in queries.read_text().splitlines()]
    lines[0]["text"] = nasty
    queries.write_text("".join(json.dumps(line) + "\n" for line in lines))
    page = build_explorer(grid, sample=1000, top=10)
    assert page.read_text().count("</script>") == 2  # the data's and the code's
    dom = rendered_dom(page, f"#b=0&q={lines[0]['_id']}", tmp_path / "profile")
    assert "<title>Language bias explorer</title>" in dom and "<b>bold</b>" not in dom
    assert html.escape(nasty, quote=False) in dom
