"""`hybridbatch explore RUN_OR_GRID [...]`: one self-contained HTML page to look at language bias query by query.

The page (inline CSS and JS, its data as embedded JSON; no server, no network, works from a file:// URL)
shows, for a chosen query, each system's pooled multilingual top k coloured by candidate language with its
relevant answers (one per language) marked and their ranks; lists of the most and least biased queries by
rank distance; and per query language, where the answers in every language rank and the language mix of the
top 10. `#q=<query id>` (and `b=<benchmark index>`) in the URL selects a query. The data is built by
`explore_data`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from hybridbatch.experiments.explore_data import benchmark_data, find_systems, load_benchmark_for
from hybridbatch.io import atomic_write

EXPLORER_FILE = "explorer.html"
log = logging.getLogger(__name__)


def explorer_data(paths: str | Path | list, sample: int = 300, top: int = 30, benchmark: str | None = None,
                  data_dir: str | None = None) -> dict:
    """The JSON the page embeds: one entry per benchmark found under `paths` (evaluation folders or grid
    outputs; systems of several paths on the same benchmark are shown side by side)."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    merged: dict[str, list] = {}
    for path in paths:
        for label, systems in find_systems(path).items():
            shown = merged.setdefault(label, [])
            for system in systems:
                if system.name in {s.name for s in shown}:
                    system.name = f"{system.name} [{system.folder}]"
                shown.append(system)
    out = []
    for label, systems in merged.items():
        bench, why_not = load_benchmark_for(systems[0].metrics, benchmark, data_dir)
        if why_not:
            log.warning("%s: %s; the page shows rankings without texts or marked answers (--benchmark names "
                        "it)", label, why_not)
        out.append(benchmark_data(label, systems, bench, why_not, sample, top))
    return {"source": [str(p) for p in paths], "benchmarks": out}


def build_explorer(paths: str | Path | list, out: str | Path | None = None, sample: int = 300, top: int = 30,
                   benchmark: str | None = None, data_dir: str | None = None) -> Path:
    """Write the explorer page for evaluation folders or compare grid outputs (default FIRST/explorer.html)."""
    data = explorer_data(paths, sample=sample, top=top, benchmark=benchmark, data_dir=data_dir)
    first = paths if isinstance(paths, str | Path) else paths[0]
    target = Path(out) if out is not None else Path(first) / EXPLORER_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target) as handle:
        handle.write(render_page(data))
    return target


def _finite(obj):
    """NaN and infinities become null (JSON.parse refuses NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def embedded_json(data: dict) -> str:
    """The data as it sits in the page's <script type="application/json"> element."""
    text = json.dumps(_finite(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c")  # "<" only occurs inside strings: no "</script>" or "<!--" in the page


def read_embedded(page: str) -> dict:
    """The data back out of a page written by `build_explorer` (for tests and tools)."""
    start = page.index(_DATA_OPEN) + len(_DATA_OPEN)
    return json.loads(page[start:page.index("</script>", start)])


_DATA_OPEN = '<script type="application/json" id="data">'

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;font-size:14px}
header{padding:8px 16px;background:#f3f3f3;border-bottom:1px solid #ddd}
header h1{font-size:18px;margin:0 0 4px}#note{color:#555;font-size:12px}
#wrap{display:flex;align-items:flex-start}
#side{width:300px;flex:none;padding:8px 12px;border-right:1px solid #ddd;font-size:12px}
#side ol,#side ul{padding-left:18px;margin:4px 0 10px}#side li{cursor:pointer;margin:2px 0}
#side li:hover{text-decoration:underline}#search{width:95%}
main{flex:1;padding:8px 16px;min-width:0}
#cols,.aggrow{display:flex;gap:12px;align-items:flex-start;overflow-x:auto}
.sys{flex:1;min-width:240px;border:1px solid #ddd;border-radius:4px;padding:6px;overflow-x:auto}
.sys h3{font-size:13px;margin:0 0 4px}
.strip{position:relative;height:18px;background:#f6f6f6;border:1px solid #ddd;margin:4px 0}
.tick{position:absolute;top:0;width:4px;height:16px;margin-left:-2px}
.relrank{display:inline-block;padding:0 5px;margin:1px 2px;border-radius:3px;color:#fff;font-weight:bold}
ol.top{list-style:none;padding:0;margin:4px 0;font-size:12px}
ol.top li{padding:1px 4px;margin:1px 0;border-left:6px solid;white-space:nowrap;overflow:hidden;
 text-overflow:ellipsis}
ol.top li.rel{outline:2px solid #222;font-weight:bold}
.rk{display:inline-block;width:26px;text-align:right;margin-right:4px;color:#555}
.lg{display:inline-block;min-width:22px;text-align:center;color:#fff;border-radius:2px;margin-right:4px}
table.h{border-collapse:collapse;font-size:11px;margin:2px 0}table.h td,table.h th{border:1px solid #ddd;
 padding:1px 4px;text-align:right;white-space:nowrap}
.mix{display:flex;height:14px;border:1px solid #999;margin:3px 0}.mix div{height:100%}
.mix div.own{outline:2px solid #000;outline-offset:-2px}
.legend span{margin-right:8px}.muted{color:#777}
"""

_JS = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const PAL = ['#4e79a7','#f28e2b','#e15759','#59a14f','#b07aa1','#76b7b2','#edc948','#ff9da7','#9c755f',
             '#8cd17d','#d37295','#499894','#86bcb6','#a0cbe8'];
const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const fmt = (v, d) => v === null || v === undefined ? '–' : Number(v).toFixed(d);
let B = null, bi = 0;
function col(lang) { const i = B.langs.indexOf(lang); return i < 0 ? '#999' : PAL[i % PAL.length]; }
function chip(lang) { return `<span class="lg" style="background:${col(lang)}">${esc(lang)}</span>`; }
function params() { const p = new URLSearchParams(location.hash.slice(1));
  return {b: parseInt(p.get('b') || '0', 10) || 0, q: p.get('q')}; }
function go(q) { location.hash = 'b=' + bi + '&q=' + encodeURIComponent(q); }
function snippet(q) { const e = B.queries[q]; return e && e.text ? ' – ' + esc(e.text.slice(0, 60)) : ''; }
function item(q, extra) { return `<li data-q="${esc(q)}">${esc(q)} ${extra || ''}${snippet(q)}</li>`; }
function bindList(el) { el.querySelectorAll('li[data-q]').forEach(li => li.onclick = () => go(li.dataset.q)); }

function renderSide() {
  const s = parseInt($('bsys').value || '0', 10), lists = B.biased[s] || {most: [], least: []};
  const rd = q => { const e = B.queries[q]; return e ? '(' + fmt(e.sys[s].rd, 0) + ')' : ''; };
  $('most').innerHTML = lists.most.map(q => item(q, rd(q))).join('');
  $('least').innerHTML = lists.least.map(q => item(q, rd(q))).join('');
  bindList($('most')); bindList($('least')); search();
}
function search() {
  const t = $('search').value.trim().toLowerCase();
  const hits = t ? Object.keys(B.queries).filter(q => q.toLowerCase().includes(t) ||
    B.queries[q].text.toLowerCase().includes(t)).slice(0, 50) : [];
  $('hits').innerHTML = hits.map(q => item(q)).join('') || (t ? '<li class="muted">no embedded query matches</li>' : '');
  bindList($('hits'));
}
function renderQuery(q) {
  const e = B.queries[q];
  if (q === undefined) { $('query').innerHTML = '<p>No query to show.</p>'; $('cols').innerHTML = ''; return; }
  if (!e) { $('query').innerHTML = '<p>Query ' + esc(q) + ' is not embedded (see the note above).</p>';
    $('cols').innerHTML = ''; return; }
  const doc = i => B.docs[i], dlang = i => B.langs[doc(i)[1]] || '?';
  let h = `<h2 id="qid" data-q="${esc(q)}">${chip(e.lang)} ${esc(q)}</h2><p>${esc(e.text)}</p>`;
  if (e.rel.length) h += '<p><b>Relevant answers</b> (one per language):</p><ul>' + e.rel.map(i =>
    `<li>${chip(dlang(i))} <span class="muted">${esc(doc(i)[0])}</span> ${esc(doc(i)[2])}</li>`).join('') + '</ul>';
  else if (!B.answersKnown) h += '<p class="muted">Relevant answers unknown: the benchmark could not be loaded.</p>';
  $('query').innerHTML = h;
  $('cols').innerHTML = B.systems.map((name, s) => {
    const r = e.sys[s], rel = new Set(e.rel);
    const badges = e.rel.map((i, j) => { const rank = r.relRanks[j];
      return `<span class="relrank" style="background:${col(dlang(i))}" data-doc="${esc(doc(i)[0])}" ` +
        `data-rank="${rank === null ? '' : rank}">${esc(dlang(i))} ${rank === null ? '>' + B.depth : rank}</span>`;
    }).join('');
    const ticks = e.rel.map((i, j) => { const rank = r.relRanks[j] === null ? B.depth + 1 : r.relRanks[j];
      return `<div class="tick" title="${esc(dlang(i))} ${rank}" style="left:${100 * (rank - 1) / B.depth}%;` +
        `background:${col(dlang(i))}"></div>`; }).join('');
    const rows = r.top.map(([i, rank]) => { const lang = dlang(i), c = col(lang);
      return `<li class="doc${rel.has(i) ? ' rel' : ''}" data-doc="${esc(doc(i)[0])}" data-rank="${rank}" ` +
        `style="border-color:${c};background:${c}22" title="${esc(doc(i)[0])}"><span class="rk">${rank}</span>` +
        `${chip(lang)}${rel.has(i) ? '★ ' : ''}${esc(doc(i)[2] || doc(i)[0])}</li>`; }).join('');
    return `<div class="sys" data-system="${esc(name)}"><h3>${esc(name)}</h3>` +
      `<div>rank distance <b class="rd">${fmt(r.rd, 0)}</b>; answers at ${badges || '–'}</div>` +
      `<div class="strip" title="ranks 1..${B.depth}">${ticks}</div><ol class="top">${rows}</ol></div>`;
  }).join('');
}
function renderAgg() {
  const qlangs = [...new Set(B.aggregates.flatMap(a => Object.keys(a.mix)))].sort();
  $('agg').innerHTML = qlangs.map(ql => '<h3>' + chip(ql) + ' queries</h3><div class="aggrow">' +
    B.systems.map((name, s) => {
      const a = B.aggregates[s], hist = a.hist[ql] || {}, mix = a.mix[ql] || {};
      const head = '<tr><th>answer in</th>' + B.buckets.map(b => `<th>${b}</th>`).join('') + '</tr>';
      const body = Object.keys(hist).sort().map(dl => { const row = hist[dl], n = row.reduce((x, y) => x + y, 0);
        return `<tr><th>${chip(dl)}</th>` + row.map(c => `<td style="background:rgba(78,121,167,${(c / n).toFixed(2)})">` +
          `${c || ''}</td>`).join('') + '</tr>'; }).join('');
      const bars = Object.keys(mix).sort().map(l => `<div class="${l === ql ? 'own' : ''}" title="${esc(l)} ` +
        `${(100 * mix[l]).toFixed(1)}%" style="width:${100 * mix[l]}%;background:${col(l)}"></div>`).join('');
      return `<div class="sys"><h3>${esc(name)}</h3><div class="muted">${a.queries[ql] || 0} queries</div>` +
        (body ? `<table class="h">${head}${body}</table>` : '') + '<div>language mix of the top 10' +
        (ql in mix ? `; own language <b>${(100 * mix[ql]).toFixed(1)}%</b>` : '') + `</div><div class="mix">${bars}</div></div>`;
    }).join('') + '</div>').join('');
}
function render() {
  const p = params();
  bi = Math.min(Math.max(p.b, 0), D.benchmarks.length - 1); const changed = B !== D.benchmarks[bi];
  B = D.benchmarks[bi];
  if (changed) {
    $('bench').value = bi; $('bsys').innerHTML = B.systems.map((n, i) => `<option value="${i}">${esc(n)}</option>`).join('');
    const s = B.summary.map((m, i) => `<b>${esc(B.systems[i])}</b>: mAP ${fmt(m.map, 3)}, rank distance ` +
      `${fmt(m.rank_distance, 1)}, own language in top 10 ${fmt(m.own_language_top10, 3)}`).join(' · ');
    $('note').innerHTML = `Benchmark <code>${esc(B.benchmark)}</code> (${esc(B.kind)}). ${s}.<br>` +
      `Per-query rankings are embedded for ${B.queriesEmbedded} of ${B.queriesInRun} queries` +
      (B.queriesEmbedded < B.queriesInRun ? ' (a sample stratified by query language, plus each system\'s 10 ' +
        'most and least biased)' : '') + `; each list shows the top ${B.top} of the pooled run (depth ${B.depth}). ` +
      'The per-language histograms and top-10 mixes count every query of the run.' +
      (B.kind === 'image-text' ? ' Image-text: the queries are images, ranked against the pooled captions.' : '') +
      (B.systems.some(n => n.includes('(seed ')) ? ' A system trained with several seeds is shown by its lowest ' +
        'seed (rankings are not averaged).' : '') +
      (B.note ? ' <b>' + esc(B.note) + '</b>' : '');
    $('legend').innerHTML = 'Languages: ' + B.langs.map(l => '<span>' + chip(l) + '</span>').join('');
    renderSide(); renderAgg();
  }
  const fallback = (B.biased[0] && B.biased[0].most[0]) || Object.keys(B.queries)[0];
  renderQuery(p.q && B.queries[p.q] ? p.q : (p.q || fallback));
}
$('bench').innerHTML = D.benchmarks.map((b, i) => `<option value="${i}">${esc(b.label)}</option>`).join('');
$('bench').onchange = () => { location.hash = 'b=' + $('bench').value; };
$('bsys').onchange = renderSide; $('search').oninput = search;
window.addEventListener('hashchange', render);
render();
"""


def render_page(data: dict) -> str:
    title = "Language bias explorer"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style></head><body>\n"
            f'<header><h1>{title} <select id="bench"></select></h1><div id="note"></div>'
            '<div class="legend" id="legend"></div></header>\n'
            '<div id="wrap"><div id="side"><b>Find a query</b> (id or text)<br><input id="search" '
            'placeholder="e.g. en:56de... or a word"><ul id="hits"></ul>'
            '<b>Most biased</b> (largest rank distance) for <select id="bsys"></select><ol id="most"></ol>'
            '<b>Least biased</b><ol id="least"></ol></div>\n'
            '<main><section id="query"></section><div id="cols"></div>'
            '<h2>Per query language: where the answers rank, and the language mix of the top 10</h2>'
            '<div id="agg"></div></main></div>\n'
            f"{_DATA_OPEN}{embedded_json(data)}</script>\n<script>{_JS}</script>\n</body></html>\n")
