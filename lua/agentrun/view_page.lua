-- view_page.lua -- the fixed parts of the page agentrun.view writes: markup, style and script.
--
-- `head` ends inside the <script type="application/json"> element that holds
-- the data; `tail` closes it and carries the script that draws the page. The
-- script reads the data with JSON.parse and puts every text of it in the
-- page through textContent or an attribute, never as markup. The page's
-- Content-Security-Policy forbids every request, so nothing it holds can
-- reach the network.
local M = {}

M.head = [==[<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">
<meta name="color-scheme" content="light dark">
<title>agentrun</title>
<link rel="icon" href="data:,">
<style>
:root {
  --bg: #ffffff; --fg: #1d2430; --muted: #5b6472; --line: #d9dee5; --panel: #f5f7fa; --link: #1f5fbf;
  --focus: #ff9f1a; --row: #eef3fb;
  --completed: #2e8b57; --failed: #d1423f; --budget_exhausted: #d88a12; --interrupted: #7a5cc7;
  --running: #2b7bd6; --waiting: #0f9aa8; --other: #8a8f98;
  --tin: #4c78a8; --tout: #f58518;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #14171c; --fg: #e3e7ed; --muted: #9aa3af; --line: #333a44; --panel: #1c2027; --link: #7fb0ff;
    --row: #222935;
    --completed: #4fbf7f; --failed: #f0625f; --budget_exhausted: #f2a93b; --interrupted: #a58cf0;
    --running: #5aa2f0; --waiting: #3fc4d1; --other: #9aa0a8;
    --tin: #6f9fd6; --tout: #f7a35c;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font-size: 14px; line-height: 1.4; }
header.top { padding: 12px 20px; border-bottom: 1px solid var(--line); display: flex; gap: 16px; align-items: baseline; flex-wrap: wrap; }
header.top h1 { font-size: 18px; margin: 0; }
header.top .sub { color: var(--muted); }
main { padding: 16px 20px 40px; max-width: 1400px; }
a { color: var(--link); }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 1px; }
h2 { font-size: 17px; margin: 22px 0 8px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.muted { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 120px; }
.card .v { font-size: 20px; font-weight: 600; }
.card .k { color: var(--muted); font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 14px; margin-top: 14px; }
.chart { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
.chart h3 { margin: 0 0 4px; font-size: 13px; }
.chart svg { width: 100%; height: auto; display: block; }
.chart svg text { fill: var(--muted); font-size: 10px; }
.chart svg .axis { stroke: var(--line); }
.legend { display: flex; flex-wrap: wrap; gap: 10px; font-size: 12px; color: var(--muted); margin-top: 4px; }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
.controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin: 8px 0; }
.controls input, .controls select { font: inherit; padding: 4px 6px; background: var(--bg); color: var(--fg); border: 1px solid var(--line); border-radius: 4px; }
.controls input[type=search] { min-width: 260px; }
table.runs { border-collapse: collapse; width: 100%; }
table.runs th, table.runs td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.runs th button { font: inherit; font-weight: 600; background: none; border: 0; color: var(--fg); cursor: pointer; padding: 0; }
table.runs th[aria-sort=ascending] button::after { content: " \25B2"; }
table.runs th[aria-sort=descending] button::after { content: " \25BC"; }
table.runs td.num, table.runs th.num { text-align: right; white-space: nowrap; }
table.runs tbody tr:hover { background: var(--row); cursor: pointer; }
table.runs td.goal { max-width: 520px; }
table.runs td.goal a { text-decoration: none; color: var(--fg); }
table.runs td.goal a:hover { text-decoration: underline; }
.why { display: block; font-size: 12px; margin-top: 2px; }
.why.failed { color: var(--failed); }
.why.budget_exhausted { color: var(--budget_exhausted); }
.why.waiting, .why.interrupted { color: var(--muted); }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 12px; color: #fff; white-space: nowrap; }
.nowrap { white-space: nowrap; }
.mono, pre, code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
dl.record { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.record dt { color: var(--muted); }
dl.record dd { margin: 0; min-width: 0; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 4px; padding: 8px; margin: 4px 0; white-space: pre-wrap; word-break: break-word; max-height: none; }
.alert { border-left: 4px solid var(--failed); background: var(--panel); padding: 8px 12px; margin: 10px 0; }
.alert.budget_exhausted { border-color: var(--budget_exhausted); }
.alert.waiting, .alert.interrupted { border-color: var(--waiting); }
.trim { color: var(--budget_exhausted); font-size: 12px; }
.timeline { position: relative; border: 1px solid var(--line); border-radius: 6px; background: var(--panel); padding: 6px 8px 4px; }
.lane { display: grid; grid-template-columns: 110px 1fr; align-items: center; min-height: 22px; }
.lane .lname { color: var(--muted); font-size: 12px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.track { position: relative; height: 18px; border-bottom: 1px dashed var(--line); }
.bar { position: absolute; top: 2px; height: 14px; min-width: 3px; border: 0; border-radius: 2px; padding: 0; cursor: pointer; opacity: .9; }
.bar:hover, .bar.sel { opacity: 1; outline: 2px solid var(--fg); }
.ticks { display: grid; grid-template-columns: 110px 1fr; font-size: 11px; color: var(--muted); }
.ticks .scale { position: relative; height: 16px; }
.ticks .scale span { position: absolute; transform: translateX(-50%); white-space: nowrap; }
.ticks .scale span:first-child { transform: none; }
.ticks .scale span:last-child { transform: translateX(-100%); }
details.step { border: 1px solid var(--line); border-radius: 4px; margin: 4px 0; }
details.step > summary { padding: 4px 8px; cursor: pointer; display: flex; gap: 10px; flex-wrap: wrap; align-items: baseline; }
details.step[open] > summary { border-bottom: 1px solid var(--line); background: var(--panel); }
details.step .body { padding: 6px 10px; }
.kind { display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff; font-size: 12px; }
button.more { font: inherit; font-size: 12px; margin: 2px 0 6px; cursor: pointer; background: var(--panel); color: var(--link); border: 1px solid var(--line); border-radius: 4px; padding: 2px 8px; }
table.plain { border-collapse: collapse; }
table.plain th, table.plain td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
nav.back { margin-bottom: 6px; }
.hint { color: var(--muted); font-size: 12px; }
</style>
</head>
<body>
<header class="top"><h1 id="title">agentrun</h1><span class="sub" id="subtitle"></span></header>
<main id="app"><noscript>This page draws the runs with JavaScript; the data is in the page's source.</noscript></main>
<script type="application/json" id="agentrun-data">]==]

M.tail = [==[</script>
<script>
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('agentrun-data').textContent);
  var RUNS = D.runs, META = D.meta || {}, SUMMARY = D.summary || {};
  var STATUSES = ['completed', 'failed', 'budget_exhausted', 'interrupted', 'waiting', 'running'];
  var KIND_COLOURS = { llm: '#4c78a8', tool: '#f58518', thought: '#b279a2', observation: '#54a24b',
    message: '#72b7b2', error: '#e45756', wait: '#0f9aa8', response: '#9c755f', intent: '#eeca3b' };
  var byId = new Map(), forks = new Map(), children = new Map();
  RUNS.forEach(function (r) { byId.set(r.id, r); });
  RUNS.forEach(function (r) {
    if (r.forked_from && r.forked_from.run) push(forks, r.forked_from.run, r);
    if (r.parent) push(children, r.parent, r);
  });
  function push(map, k, v) { if (!map.has(k)) map.set(k, []); map.get(k).push(v); }

  // ---- building blocks: every text goes in through textContent ----
  function el(tag, props) {
    var e = document.createElement(tag);
    if (props) for (var k in props) {
      var v = props[k];
      if (v === undefined || v === null) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k === 'cls') e.className = v;
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, String(v));
    }
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function add(e, kid) {
    if (kid === undefined || kid === null || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach(function (k) { add(e, k); }); return; }
    e.appendChild(typeof kid === 'object' ? kid : document.createTextNode(String(kid)));
  }
  var SVGNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function statusColour(s) { return 'var(--' + (STATUSES.indexOf(s) >= 0 ? s : 'other') + ')'; }
  function kindColour(k) {
    if (KIND_COLOURS[k]) return KIND_COLOURS[k];
    var h = 0;
    for (var i = 0; i < k.length; i++) h = (h * 31 + k.charCodeAt(i)) % 360;
    return 'hsl(' + h + ', 45%, 50%)';
  }
  function badge(status, colourOf) { return el('span', { cls: 'badge', style: 'background:' + statusColour(colourOf || status), text: status }); }

  // ---- formatting ----
  // 12,345 (toLocaleString is slow over thousands of cells)
  function num(n) {
    n = n || 0;
    var s = String(Math.abs(n)), i = s.indexOf('.'), int = i < 0 ? s : s.slice(0, i), out = '';
    while (int.length > 3) { out = ',' + int.slice(-3) + out; int = int.slice(0, -3); }
    return (n < 0 ? '-' : '') + int + out + (i < 0 ? '' : s.slice(i));
  }
  function cost(c) {
    c = c || 0;
    if (c === 0) return '0';
    if (c >= 100) return String(Number(c.toFixed(2)));
    if (c >= 1) return String(Number(c.toFixed(3)));
    // three significant digits in plain decimals (8e-7 is 0.0000008), to
    // the nano-unit a cost is stored in
    var places = Math.min(9, Math.max(2, 2 - Math.floor(Math.log10(c))));
    return c.toFixed(places).replace(/0+$/, '').replace(/\.$/, '');
  }
  function dur(ms) {
    if (ms === undefined || ms === null) return '';
    if (ms < 1000) return ms + ' ms';
    var s = ms / 1000;
    if (s < 60) return (s < 10 ? s.toFixed(2) : s.toFixed(1)) + ' s';
    var m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + Math.round(s - m * 60) + ' s';
    var h = Math.floor(m / 60);
    return h + ' h ' + (m - h * 60) + ' min';
  }
  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function day(ms) { var d = new Date(ms); return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()); }
  function date(ms) {
    if (!ms) return '';
    var d = new Date(ms);
    return day(ms) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function tokens(u) { return u ? (u.total_tokens || 0) : 0; }
  function pretty(v) { return typeof v === 'string' ? v : JSON.stringify(v, null, 2); }
  function oneLine(s, n) { s = String(s).replace(/\s+/g, ' ').trim(); return s.length > n ? s.slice(0, n - 1) + '\u2026' : s; }

  // Why a run ended as it did, in a line.
  function why(r) {
    if (r.status === 'failed') return r.error ? String(r.error) : 'failed';
    if (r.status === 'budget_exhausted' && r.limit) {
      var s = 'limit ' + r.limit.name + ' reached';
      if (r.limit.reached !== undefined) s += ' (' + r.limit.reached + ' \u2265 ' + r.limit.value + ')';
      return s;
    }
    if (r.status === 'budget_exhausted') return 'budget exhausted';
    if (r.status === 'waiting') return r.response !== undefined ? 'answered, waiting to be resumed' : 'waiting for a response';
    if (r.status === 'interrupted') return 'interrupted (resumable)';
    return '';
  }

  // A value as readable text: JSON pretty-printed; long text folded with a
  // button that shows the rest; a value cut when the page was written says so.
  var FOLD = 1200, FOLD_LINES = 24;
  function valueBlock(v, trimmedBytes, inline) {
    var text = pretty(v), box = el('div', { cls: 'value' });
    if (inline && text.length <= 200 && text.indexOf('\n') < 0) {
      box.appendChild(el('span', { text: text }));
      if (trimmedBytes) box.appendChild(el('span', { cls: 'trim', text: ' \u2702 cut in this page: ' + num(trimmedBytes) + ' bytes in the store' }));
      return box;
    }
    var lines = text.split('\n');
    var folded = text.length > FOLD || lines.length > FOLD_LINES;
    var head = folded ? lines.slice(0, FOLD_LINES).join('\n').slice(0, FOLD) : text;
    var pre = el('pre', { text: head + (folded ? '\u2026' : '') });
    box.appendChild(pre);
    if (folded) {
      var more = el('button', { cls: 'more', type: 'button', 'aria-expanded': 'false',
        text: 'Show all (' + num(text.length) + ' characters)' });
      more.addEventListener('click', function () {
        var open = more.getAttribute('aria-expanded') === 'true';
        pre.textContent = open ? head + '\u2026' : text;
        more.setAttribute('aria-expanded', open ? 'false' : 'true');
        more.textContent = open ? 'Show all (' + num(text.length) + ' characters)' : 'Show less';
      });
      box.appendChild(more);
    }
    if (trimmedBytes) box.appendChild(el('div', { cls: 'trim',
      text: '\u2702 cut in this page: ' + num(trimmedBytes) + ' bytes in the store, the first ' +
        num(new TextEncoder().encode(String(v)).length) + ' shown' }));
    return box;
  }
  function trimmedOf(obj, field) { return obj.trimmed && obj.trimmed[field]; }

  function runLink(id, label) {
    if (byId.has(id)) return el('a', { href: '#run=' + encodeURIComponent(id), text: label || id, cls: 'mono' });
    return el('span', { cls: 'mono', title: 'not in this page', text: (label || id) + ' (not in this page)' });
  }

  // ---- overview ----
  var totals = { runs: RUNS.length, by: {}, inTok: 0, outTok: 0, tokens: 0, cost: 0, steps: 0, lat: 0, latN: 0 };
  RUNS.forEach(function (r) {
    totals.by[r.status] = (totals.by[r.status] || 0) + 1;
    var u = r.usage || {};
    totals.inTok += u.input_tokens || 0; totals.outTok += u.output_tokens || 0; totals.tokens += u.total_tokens || 0;
    totals.cost += u.cost || 0; totals.steps += r.iterations || 0;
    if (r.latency_ms !== undefined && r.finished_at) { totals.lat += r.latency_ms; totals.latN++; }
  });

  function cards() {
    var box = el('div', { cls: 'cards', id: 'cards' });
    box.appendChild(el('div', { cls: 'card' }, el('div', { cls: 'v', text: num(totals.runs) }), el('div', { cls: 'k', text: 'runs' })));
    STATUSES.concat(Object.keys(totals.by).filter(function (s) { return STATUSES.indexOf(s) < 0; })).forEach(function (s) {
      if (!totals.by[s]) return;
      box.appendChild(el('div', { cls: 'card', 'data-status': s },
        el('div', { cls: 'v', style: 'color:' + statusColour(s), text: num(totals.by[s]) }), el('div', { cls: 'k', text: s })));
    });
    [[num(totals.steps), 'steps'], [num(totals.tokens), 'tokens (' + num(totals.inTok) + ' in, ' + num(totals.outTok) + ' out)'],
     [cost(totals.cost), 'cost'], [totals.latN ? dur(Math.round(totals.lat / totals.latN)) : '\u2013', 'mean latency']]
      .forEach(function (c) { box.appendChild(el('div', { cls: 'card' }, el('div', { cls: 'v', text: c[0] }), el('div', { cls: 'k', text: c[1] }))); });
    return box;
  }

  // Days (or groups of days, for long spans) from the first run to the last.
  function buckets() {
    if (!RUNS.length) return { keys: [], of: function () { return 0; } };
    var min = Infinity, max = -Infinity;
    RUNS.forEach(function (r) { min = Math.min(min, r.created_at); max = Math.max(max, r.created_at); });
    var DAY = 86400000, first = new Date(day(min) + 'T00:00:00').getTime();
    var days = Math.floor((max - first) / DAY) + 1, per = Math.max(1, Math.ceil(days / 90));
    var keys = [];
    for (var i = 0; i < days; i += per) keys.push(day(first + i * DAY + DAY / 2));
    return { keys: keys, per: per, of: function (ms) { return Math.floor(Math.floor((ms - first) / DAY) / per); } };
  }

  // A bar chart: series = [{name, colour, values[]}] stacked per key.
  function barChart(title, keys, series, fmt, id, label) {
    var W = 560, H = 190, L = 48, B = 30, T = 8, R = 8;
    var sums = keys.map(function (_, i) { return series.reduce(function (a, s) { return a + (s.values[i] || 0); }, 0); });
    var max = Math.max.apply(null, sums.concat([0])) || 1;
    var g = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': title });
    g.appendChild(svg('title', {}, title));
    g.appendChild(svg('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, 'class': 'axis' }));
    [0, 0.5, 1].forEach(function (f) {
      var y = H - B - f * (H - B - T);
      g.appendChild(svg('text', { x: L - 4, y: y + 3, 'text-anchor': 'end' }, fmt(max * f)));
      g.appendChild(svg('line', { x1: L, y1: y, x2: W - R, y2: y, 'class': 'axis', 'stroke-dasharray': '2 3' }));
    });
    var n = Math.max(keys.length, 1), slot = (W - L - R) / n, bw = Math.max(2, Math.min(40, slot * 0.75));
    keys.forEach(function (k, i) {
      var x = L + i * slot + (slot - bw) / 2, y = H - B;
      series.forEach(function (s) {
        var v = s.values[i] || 0;
        if (!v) return;
        var h = v / max * (H - B - T);
        var rect = svg('rect', { x: x, y: y - h, width: bw, height: h, fill: s.colour, 'class': 'seg' });
        rect.appendChild(svg('title', {}, k + ' \u00b7 ' + s.name + ': ' + fmt(v)));
        g.appendChild(rect);
        y -= h;
      });
      var every = Math.ceil(n / 8);
      if (i % every === 0) g.appendChild(svg('text', { x: L + i * slot + slot / 2, y: H - B + 14, 'text-anchor': 'middle' }, label ? label(k) : k.slice(5)));
    });
    var legend = el('div', { cls: 'legend' }, series.filter(function (s) { return s.values.some(function (v) { return v; }); })
      .map(function (s) { return el('span', {}, el('span', { cls: 'sw', style: 'background:' + s.colour }), s.name); }));
    return el('figure', { cls: 'chart', id: id, style: 'margin:0' }, el('h3', { text: title }), g, legend);
  }

  function charts() {
    var b = buckets(), box = el('div', { cls: 'charts' });
    function perStatus(value) {
      return STATUSES.map(function (s) {
        var vals = b.keys.map(function () { return 0; });
        RUNS.forEach(function (r) { if (r.status === s) vals[b.of(r.created_at)] += value(r); });
        return { name: s, colour: statusColour(s), values: vals };
      });
    }
    var per = b.per > 1 ? ' (per ' + b.per + ' days)' : ' per day';
    box.appendChild(barChart('Cost' + per + ', by status', b.keys, perStatus(function (r) { return (r.usage || {}).cost || 0; }), cost, 'chart-cost'));
    box.appendChild(barChart('Runs' + per + ', by status', b.keys, perStatus(function () { return 1; }), num, 'chart-runs'));
    var tin = b.keys.map(function () { return 0; }), tout = b.keys.map(function () { return 0; });
    RUNS.forEach(function (r) { var u = r.usage || {}, i = b.of(r.created_at); tin[i] += u.input_tokens || 0; tout[i] += u.output_tokens || 0; });
    box.appendChild(barChart('Tokens' + per + ', in and out', b.keys,
      [{ name: 'input tokens', colour: 'var(--tin)', values: tin }, { name: 'output tokens', colour: 'var(--tout)', values: tout }],
      function (v) { return v >= 1e6 ? (v / 1e6).toFixed(1) + 'M' : v >= 1e4 ? Math.round(v / 1e3) + 'k' : num(Math.round(v)); }, 'chart-tokens'));
    var edges = [100, 1000, 10000, 60000, 600000, 3600000], names = ['<100 ms', '<1 s', '<10 s', '<1 min', '<10 min', '<1 h', '\u22651 h'];
    var lat = perStatus(function () { return 0; }).map(function (s) { s.values = names.map(function () { return 0; }); return s; });
    RUNS.forEach(function (r) {
      if (!r.finished_at) return;
      var i = 0;
      while (i < edges.length && r.latency_ms >= edges[i]) i++;
      lat[STATUSES.indexOf(r.status)] && lat[STATUSES.indexOf(r.status)].values[i]++;
    });
    box.appendChild(barChart('Latency of finished runs', names, lat, num, 'chart-latency', function (k) { return k; }));
    return box;
  }

  // ---- runs table ----
  var COLUMNS = [
    { key: 'agent', label: 'Agent', get: function (r) { return r.agent; } },
    { key: 'goal', label: 'Goal', get: function (r) { return r.goal; } },
    { key: 'status', label: 'Status', get: function (r) { return r.status; } },
    { key: 'steps', label: 'Steps', num: true, get: function (r) { return r.iterations || 0; } },
    { key: 'tokens', label: 'Tokens', num: true, get: function (r) { return tokens(r.usage); } },
    { key: 'cost', label: 'Cost', num: true, get: function (r) { return (r.usage || {}).cost || 0; } },
    { key: 'latency', label: 'Latency', num: true, get: function (r) { return r.finished_at ? r.latency_ms : -1; } },
    { key: 'started', label: 'Started', num: true, get: function (r) { return r.created_at; } }
  ];
  var table = { sort: 'started', dir: -1, rows: [] };

  function runsSection() {
    var sec = el('section', { id: 'runs', 'aria-label': 'runs' });
    sec.appendChild(el('h2', { text: 'Runs' }));
    var agents = Array.from(new Set(RUNS.map(function (r) { return r.agent; }))).sort();
    var statuses = STATUSES.filter(function (s) { return totals.by[s]; });
    var fStatus = el('select', { id: 'f-status', 'aria-label': 'status' }, el('option', { value: '', text: 'every status' }),
      statuses.map(function (s) { return el('option', { value: s, text: s + ' (' + totals.by[s] + ')' }); }));
    var fAgent = el('select', { id: 'f-agent', 'aria-label': 'agent' }, el('option', { value: '', text: 'every agent' }),
      agents.map(function (a) { return el('option', { value: a, text: a }); }));
    var fText = el('input', { id: 'f-text', type: 'search', placeholder: 'Search goal, error, id, user\u2026  (/)', 'aria-label': 'search' });
    var shown = el('span', { id: 'shown', cls: 'muted', 'aria-live': 'polite' });
    sec.appendChild(el('div', { cls: 'controls' }, fStatus, fAgent, fText, shown));
    var head = el('tr', {}, COLUMNS.map(function (c) {
      var th = el('th', { cls: c.num ? 'num' : '', scope: 'col', 'data-key': c.key });
      th.appendChild(el('button', { type: 'button', text: c.label, onclick: function () { sortBy(c.key); } }));
      return th;
    }));
    var body = el('tbody');
    var tbl = el('table', { cls: 'runs', id: 'runs-table' }, el('thead', {}, head), body);
    sec.appendChild(tbl);
    if (!RUNS.length) sec.appendChild(el('p', { cls: 'muted', text: 'No run matched the selection.' }));
    table.rows = RUNS.map(function (r) {
      var u = r.usage || {}, w = why(r), href = '#run=' + encodeURIComponent(r.id);
      var tr = el('tr', { 'data-id': r.id, 'data-status': r.status },
        el('td', { text: r.agent }),
        el('td', { cls: 'goal' }, el('a', { href: href, text: oneLine(r.goal, 140) }),
          w ? el('span', { cls: 'why ' + r.status, text: oneLine(w, 160) }) : null),
        el('td', {}, badge(r.status)),
        el('td', { cls: 'num', text: num(r.iterations) }),
        el('td', { cls: 'num', title: num(u.input_tokens) + ' in, ' + num(u.output_tokens) + ' out', text: num(u.total_tokens) }),
        el('td', { cls: 'num', text: cost(u.cost) }),
        el('td', { cls: 'num', text: r.finished_at ? dur(r.latency_ms) : '\u2013' }),
        el('td', { cls: 'num', text: date(r.created_at) }));
      tr.addEventListener('click', function (ev) { if (ev.target.tagName !== 'A') location.hash = href; });
      var text = [r.id, r.agent, r.goal, r.user, r.edition, r.error, r.status].filter(Boolean).join('\n').toLowerCase();
      return { run: r, tr: tr, text: text };
    });
    function apply() {
      var s = fStatus.value, a = fAgent.value, q = fText.value.trim().toLowerCase(), n = 0;
      var col = COLUMNS.filter(function (c) { return c.key === table.sort; })[0];
      var rows = table.rows.slice().sort(function (x, y) {
        var p = col.get(x.run), q2 = col.get(y.run);
        var c = typeof p === 'string' ? p.localeCompare(q2) : p - q2;
        return c !== 0 ? c * table.dir : (x.run.id < y.run.id ? 1 : -1);
      });
      var frag = document.createDocumentFragment();
      rows.forEach(function (row) {
        var ok = (!s || row.run.status === s) && (!a || row.run.agent === a) && (!q || row.text.indexOf(q) >= 0);
        row.tr.hidden = !ok;
        if (ok) n++;
        frag.appendChild(row.tr);
      });
      body.appendChild(frag);
      head.querySelectorAll('th').forEach(function (th) {
        if (th.getAttribute('data-key') === table.sort) th.setAttribute('aria-sort', table.dir > 0 ? 'ascending' : 'descending');
        else th.removeAttribute('aria-sort');
      });
      shown.textContent = 'showing ' + num(n) + ' of ' + num(RUNS.length);
    }
    function sortBy(key) {
      if (table.sort === key) table.dir = -table.dir;
      else { table.sort = key; table.dir = COLUMNS.filter(function (c) { return c.key === key; })[0].num ? -1 : 1; }
      apply();
    }
    fStatus.addEventListener('change', apply); fAgent.addEventListener('change', apply); fText.addEventListener('input', apply);
    apply();
    return sec;
  }

  // ---- a run's page ----
  function field(dl, name, value) {
    if (value === undefined || value === null || value === '') return;
    dl.appendChild(el('dt', { text: name }));
    dl.appendChild(el('dd', {}, value));
  }
  // key value pairs, the keys of `first` first (when present), then the rest sorted
  function kv(obj, first) {
    obj = obj || {};
    var keys = (first || []).filter(function (k) { return k in obj; });
    Object.keys(obj).sort().forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); });
    return keys.map(function (k) {
      var v = obj[k];
      return el('span', { cls: 'nowrap' }, k + ' ', el('b', { text: typeof v === 'number' && /cost/.test(k) ? cost(v) : typeof v === 'number' ? num(v) : typeof v === 'string' ? v : JSON.stringify(v) }), '  ');
    });
  }

  function timeline(r, steps, openStep) {
    var box = el('div', { cls: 'timeline', id: 'timeline', role: 'group', 'aria-label': 'timeline of the steps' });
    if (!steps.length) { box.appendChild(el('div', { cls: 'muted', text: 'No steps.' })); return box; }
    var t0 = r.created_at, t1 = r.finished_at || r.updated_at || r.created_at;
    steps.forEach(function (s) { t0 = Math.min(t0, s.at - (s.duration_ms || 0)); t1 = Math.max(t1, s.at); });
    var span = Math.max(t1 - t0, 1), kinds = [];
    steps.forEach(function (s) { if (kinds.indexOf(s.kind) < 0) kinds.push(s.kind); });
    kinds.forEach(function (k) {
      var track = el('div', { cls: 'track' });
      steps.forEach(function (s) {
        if (s.kind !== k) return;
        var start = s.at - (s.duration_ms || 0);
        var label = 'step ' + s.seq + ': ' + s.kind + (s.name ? ' ' + s.name : '') + ', ' + dur(s.duration_ms || 0) + ', at +' + dur(start - t0);
        track.appendChild(el('button', { type: 'button', cls: 'bar', 'data-seq': s.seq, title: label, 'aria-label': label,
          style: 'left:' + ((start - t0) / span * 100).toFixed(3) + '%;width:' + ((s.duration_ms || 0) / span * 100).toFixed(3) + '%;background:' + kindColour(s.kind),
          onclick: function () { openStep(s.seq, true); } }));
      });
      box.appendChild(el('div', { cls: 'lane' }, el('span', { cls: 'lname', title: k, text: k }), track));
    });
    var scale = el('div', { cls: 'scale' });
    [0, 0.25, 0.5, 0.75, 1].forEach(function (f) { scale.appendChild(el('span', { style: 'left:' + f * 100 + '%', text: '+' + dur(Math.round(span * f)) })); });
    box.appendChild(el('div', { cls: 'ticks' }, el('span'), scale));
    return box;
  }

  function stepBlock(r, s, t0) {
    var u = s.usage || {};
    var sum = el('summary', {},
      el('span', { cls: 'mono', text: '#' + s.seq }),
      el('span', { cls: 'kind', style: 'background:' + kindColour(s.kind), text: s.kind }),
      s.name ? el('b', { text: s.name }) : null,
      u.total_tokens ? el('span', { cls: 'muted', text: num(u.input_tokens) + ' in / ' + num(u.output_tokens) + ' out' }) : null,
      s.cost ? el('span', { cls: 'muted', text: 'cost ' + cost(s.cost) }) : null,
      el('span', { cls: 'muted', text: dur(s.duration_ms || 0) }),
      el('span', { cls: 'muted', text: '+' + dur(s.at - t0) }),
      s.content !== undefined && !s.trimmed ? el('span', { cls: 'muted', text: oneLine(pretty(s.content), 90) }) : null,
      s.trimmed ? el('span', { cls: 'trim', text: '\u2702 cut' }) : null);
    var d = el('details', { cls: 'step', id: 'step-' + s.seq, 'data-seq': s.seq }, sum);
    var filled = false;
    d.addEventListener('toggle', function () {
      if (!d.open || filled) return;
      filled = true;
      var body = el('div', { cls: 'body' });
      var dl = el('dl', { cls: 'record' });
      field(dl, 'at', date(s.at));
      if (Object.keys(u).some(function (k) { return u[k]; })) field(dl, 'usage', kv(u, ['input_tokens', 'output_tokens', 'total_tokens']));
      body.appendChild(dl);
      if (s.content !== undefined) body.appendChild(valueBlock(s.content, trimmedOf(s, 'content')));
      else body.appendChild(el('div', { cls: 'muted', text: 'no content' }));
      d.appendChild(body);
    });
    return d;
  }

  function runPage(r, seq) {
    var page = el('section', { id: 'run', 'data-id': r.id, 'aria-label': 'run ' + r.id });
    page.appendChild(el('nav', { cls: 'back' }, el('a', { href: '#', id: 'back', text: '\u2190 All runs' }), el('span', { cls: 'hint', text: '  (Esc)' })));
    page.appendChild(el('h2', {}, r.agent + ' ', badge(r.status), ' ', el('span', { cls: 'mono muted', text: r.id })));
    var w = why(r);
    if (w) page.appendChild(el('div', { cls: 'alert ' + r.status, id: 'why', role: 'note' }, el('b', { text: r.status + ': ' }), w));
    var dl = el('dl', { cls: 'record', id: 'record' });
    field(dl, 'goal', valueBlock(r.goal, trimmedOf(r, 'goal'), true));
    if (r.parent) field(dl, 'parent run', runLink(r.parent));
    if (r.forked_from) field(dl, 'forked from', [runLink(r.forked_from.run), ' after step ' + r.forked_from.seq]);
    var f = forks.get(r.id) || [], c = children.get(r.id) || [];
    if (f.length) field(dl, 'forks', f.map(function (x) { return el('div', {}, runLink(x.id), ' after step ' + x.forked_from.seq + ' ', badge(x.status)); }));
    if (c.length) field(dl, 'sub-runs', c.map(function (x) { return el('div', {}, runLink(x.id), ' ' + x.agent + ' ', badge(x.status)); }));
    field(dl, 'user', r.user); field(dl, 'edition', r.edition);
    field(dl, 'times', [date(r.created_at), r.finished_at ? ' \u2192 ' + date(r.finished_at) + ' (' + dur(r.latency_ms) + ')' : ' (last write ' + date(r.updated_at) + ')']);
    field(dl, 'steps', num(r.iterations));
    field(dl, 'usage', kv(r.usage, ['input_tokens', 'output_tokens', 'total_tokens', 'cost']));
    if (r.budget && Object.keys(r.budget).length) field(dl, 'budget', kv(r.budget));
    if (r.limit) field(dl, 'limit reached', kv(r.limit, ['name', 'value', 'reached']));
    if (r.request !== undefined) field(dl, 'request (waited for)', valueBlock(r.request, trimmedOf(r, 'request'), true));
    if (r.response !== undefined) field(dl, 'response', valueBlock(r.response, trimmedOf(r, 'response'), true));
    else if (r.status === 'waiting') field(dl, 'response', el('span', { cls: 'muted', text: 'not given yet' }));
    page.appendChild(dl);
    // the long values go below the transcript
    var more = el('dl', { cls: 'record', id: 'values' });
    if (r.error !== undefined) field(more, 'error', valueBlock(r.error, trimmedOf(r, 'error')));
    if (r.output !== undefined) field(more, 'output', valueBlock(r.output, trimmedOf(r, 'output')));
    if (r.metadata && (typeof r.metadata !== 'object' || Object.keys(r.metadata).length)) field(more, 'metadata', valueBlock(r.metadata, trimmedOf(r, 'metadata')));

    var steps = r.steps || [];
    var t0 = r.created_at;
    steps.forEach(function (s) { t0 = Math.min(t0, s.at - (s.duration_ms || 0)); });
    var blocks = new Map();
    function openStep(n, focus) {
      var d = blocks.get(n);
      if (!d) return;
      d.open = true;
      page.querySelectorAll('.bar.sel').forEach(function (b) { b.classList.remove('sel'); });
      var bar = page.querySelector('.bar[data-seq="' + n + '"]');
      if (bar) bar.classList.add('sel');
      d.scrollIntoView({ block: 'nearest' });
      if (focus) d.querySelector('summary').focus();
    }
    page.appendChild(el('h3', { text: 'Timeline' }));
    page.appendChild(timeline(r, steps, openStep));
    var kinds = [];
    steps.forEach(function (s) { if (kinds.indexOf(s.kind) < 0) kinds.push(s.kind); });
    page.appendChild(el('div', { cls: 'legend' }, kinds.map(function (k) { return el('span', {}, el('span', { cls: 'sw', style: 'background:' + kindColour(k) }), k); })));

    page.appendChild(el('h3', { text: 'Steps (' + num(steps.length) + ')' }));
    var list = el('div', { id: 'steps' });
    steps.forEach(function (s) { var b = stepBlock(r, s, t0); blocks.set(s.seq, b); list.appendChild(b); });
    page.appendChild(list);
    if (more.children.length) { page.appendChild(el('h3', { text: 'Output and metadata' })); page.appendChild(more); }
    if (r.checkpoint) {
      page.appendChild(el('h3', { text: 'Checkpoint' }));
      page.appendChild(el('div', { id: 'checkpoint' }, el('div', { cls: 'muted', text: 'after step ' + r.checkpoint.seq }),
        valueBlock(r.checkpoint.state, trimmedOf(r.checkpoint, 'state'))));
    }
    if (r.intents && r.intents.length) {
      page.appendChild(el('h3', { text: 'Intents' }));
      var it = el('table', { cls: 'plain', id: 'intents' }, el('thead', {}, el('tr', {}, ['key', 'name', 'status', 'intended', 'settled', 'args', 'result']
        .map(function (h) { return el('th', { scope: 'col', text: h }); }))));
      var ib = el('tbody');
      r.intents.forEach(function (x) {
        function stepRef(n) { return n ? el('a', { href: '#run=' + encodeURIComponent(r.id) + '&step=' + n, text: 'step ' + n }) : '\u2013'; }
        ib.appendChild(el('tr', { 'data-status': x.status }, el('td', { cls: 'mono', text: x.key }), el('td', { text: x.name || '' }),
          el('td', {}, badge(x.status, x.status === 'settled' ? 'completed' : x.status === 'failed' ? 'failed' : 'waiting')), el('td', {}, stepRef(x.intent_seq)),
          el('td', {}, stepRef(x.result_seq)), el('td', {}, x.args !== undefined ? valueBlock(x.args, trimmedOf(x, 'args')) : ''),
          el('td', {}, x.result !== undefined ? valueBlock(x.result, trimmedOf(x, 'result')) : '')));
      });
      it.appendChild(ib);
      page.appendChild(it);
    }

    if (r.steps_left_out) page.appendChild(el('p', { cls: 'trim', id: 'steps-left-out',
      text: '\u2702 ' + num(r.steps_left_out) + ' more steps are not in this page (max_steps = ' + num((META.limits || {}).max_steps) + '): `agentrun show ' + r.id + '` prints them.' }));
    if (seq) setTimeout(function () { openStep(seq, true); }, 0);
    return page;
  }

  // ---- the page and its routes ----
  var app = document.getElementById('app');
  document.getElementById('title').textContent = META.title || 'agentrun';
  document.title = (META.title || 'agentrun') + ' \u2013 ' + RUNS.length + ' runs';
  var sub = num(RUNS.length) + ' runs \u00b7 written ' + date(META.generated_at);
  if (META.backend) sub += ' \u00b7 from a ' + META.backend + ' store';
  if (META.filters) sub += ' \u00b7 filters ' + JSON.stringify(META.filters);
  if (SUMMARY.matching > RUNS.length) sub += ' \u00b7 ' + num(SUMMARY.matching - RUNS.length) + ' more matched, not shown';
  document.getElementById('subtitle').textContent = sub;
  app.textContent = '';
  var overview = el('section', { id: 'overview', 'aria-label': 'overview' }, el('h2', { text: 'Overview' }), cards(), charts());
  if (SUMMARY.trimmed || SUMMARY.steps_left_out) overview.appendChild(el('p', { cls: 'trim', id: 'trim-note',
    text: '\u2702 To keep this page small, ' + num(SUMMARY.trimmed) + ' long values are cut (marked \u2702) and ' +
      num(SUMMARY.steps_left_out) + ' steps are left out; the store has them whole.' }));
  var home = el('div', { id: 'home' }, overview, runsSection());
  app.appendChild(home);
  var current = null, lastRun = null;

  function route() {
    var h = location.hash.replace(/^#/, ''), params = new URLSearchParams(h);
    var id = params.get('run'), r = id && byId.get(id);
    if (current) { current.remove(); current = null; }
    if (r) {
      home.hidden = true;
      current = runPage(r, Number(params.get('step')) || 0);
      app.appendChild(current);
      lastRun = id;
      window.scrollTo(0, 0);
      current.querySelector('#back').focus();
    } else {
      home.hidden = false;
      if (id) app.insertBefore(el('p', { cls: 'alert', id: 'missing', text: 'No run ' + id + ' in this page.' }), home);
      var row = lastRun && home.querySelector('tr[data-id="' + CSS.escape(lastRun) + '"] a');
      if (row) row.focus();
    }
  }
  window.addEventListener('hashchange', function () {
    var m = document.getElementById('missing');
    if (m) m.remove();
    route();
  });
  document.addEventListener('keydown', function (ev) {
    var typing = /^(INPUT|SELECT|TEXTAREA)$/.test(ev.target.tagName);
    if (ev.key === 'Escape' && current) { location.hash = ''; ev.preventDefault(); }
    else if (ev.key === '/' && !typing && !current) { document.getElementById('f-text').focus(); ev.preventDefault(); }
  });
  route();
  // how long the page took to draw itself, for whoever measures it
  document.documentElement.setAttribute('data-drawn-ms', String(Math.round(performance.now())));
  document.documentElement.setAttribute('data-ready', '1');
})();
</script>
</body>
</html>
]==]

return M
