// run.js -- the browser tests of the page agentrun.view writes: Debian's chromium, headless, driven by playwright-core.
//
//   node tests/browser/run.js DIR [ARTIFACTS]
//
// DIR holds what fixture.lua made: fx.html + fx.json (every status and
// feature), large.html + large.json (1,000 runs of 20 steps) and, when the
// PostgreSQL pass ran, pg.html + pg.json. Screenshots go to ARTIFACTS
// (default DIR). Each test opens the page in a fresh page of one browser,
// with every request but the page's own file refused and counted, and every
// console error and page error kept: a test fails if either happened. Ends
// on "N passed, N failed".
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const dir = path.resolve(process.argv[2] || 'build/browser');
const artifacts = path.resolve(process.argv[3] || dir);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const only = process.env.VIEW_TEST; // run one test by name

function load(name) {
  const json = path.join(dir, name + '.json');
  if (!fs.existsSync(json)) return null;
  return { html: path.join(dir, name + '.html'), url: 'file://' + path.join(dir, name + '.html'), x: JSON.parse(fs.readFileSync(json, 'utf8')) };
}
const fx = load('fx'), large = load('large'), pg = load('pg');
if (!fx) { console.error('run.js: no fixture in ' + dir + ' (run fixture.lua first)'); process.exit(1); }

function assert(cond, msg) { if (!cond) throw new Error(msg); }
// JSON text with object keys sorted, so that equal values compare equal.
function canon(v) {
  if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
  if (v && typeof v === 'object') return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}';
  return JSON.stringify(v);
}
function eq(got, want, msg) {
  if (canon(got) !== canon(want)) throw new Error(msg + ': got ' + JSON.stringify(got) + ', expected ' + JSON.stringify(want));
}

let browser;
// Opens a page file in a fresh context; `trouble` collects what must not happen.
async function open(page_, opts = {}) {
  const context = await browser.newContext({ colorScheme: opts.colorScheme || 'light', viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const trouble = [];
  await context.route('**/*', (route) => {
    const u = route.request().url();
    if (u === page_.url) return route.continue();
    trouble.push('request: ' + u);
    return route.abort();
  });
  page.on('request', (req) => { if (req.url() !== page_.url && !req.url().startsWith('data:')) trouble.push('request seen: ' + req.url()); });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') trouble.push('console ' + m.type() + ': ' + m.text()); });
  page.on('pageerror', (e) => trouble.push('page error: ' + e.message));
  page.on('dialog', (d) => { trouble.push('dialog: ' + d.message()); d.dismiss(); });
  await page.goto(page_.url);
  await page.waitForSelector('html[data-ready="1"]');
  return { page, context, trouble };
}
async function close(s) {
  await s.context.close();
  eq(s.trouble, [], 'requests, console errors or dialogs');
}
const visibleRows = (page) => page.$$eval('#runs-table tbody tr:not([hidden])', (rs) => rs.map((r) => r.getAttribute('data-id')));
const cellValues = (page, col) => page.$$eval('#runs-table tbody tr:not([hidden])', (rs, c) => rs.map((r) => r.children[c].textContent), col);

const tests = [];
function test(name, fn) { tests.push({ name, fn }); }

test('the table has one row per run and the overview counts each status', async () => {
  const s = await open(fx);
  eq((await visibleRows(s.page)).length, fx.x.runs, 'rows');
  for (const [status, n] of Object.entries(fx.x.by_status)) {
    eq(await s.page.textContent(`#cards .card[data-status="${status}"] .v`), String(n), 'card of ' + status);
  }
  eq(await s.page.textContent('#shown'), `showing ${fx.x.runs} of ${fx.x.runs}`, 'shown');
  for (const id of ['chart-cost', 'chart-runs', 'chart-tokens', 'chart-latency']) {
    assert(await s.page.$$eval(`#${id} svg rect.seg`, (r) => r.length) > 0, id + ' draws bars');
  }
  await close(s);
});

test('each column sorts both ways', async () => {
  const s = await open(fx);
  const columns = ['agent', 'goal', 'status', 'steps', 'tokens', 'cost', 'latency', 'started'];
  const numeric = { steps: 1, tokens: 1, cost: 1 };
  for (let c = 0; c < columns.length; c++) {
    const key = columns[c];
    for (let click = 0; click < 2; click++) {
      await s.page.click(`#runs-table th[data-key="${key}"] button`);
      const dirn = await s.page.getAttribute(`#runs-table th[data-key="${key}"]`, 'aria-sort');
      assert(dirn === 'ascending' || dirn === 'descending', key + ' has aria-sort');
      const vals = await cellValues(s.page, c);
      eq(vals.length, fx.x.runs, 'rows after sorting by ' + key);
      if (key in numeric || key === 'agent' || key === 'status' || key === 'started') {
        const conv = key in numeric ? vals.map((v) => Number(v.replace(/,/g, ''))) : vals;
        for (let i = 1; i < conv.length; i++) {
          const cmp = typeof conv[i] === 'number' ? conv[i] - conv[i - 1] : conv[i].localeCompare(conv[i - 1]);
          assert(dirn === 'ascending' ? cmp >= 0 : cmp <= 0, `${key} ${dirn}: ${conv[i - 1]} then ${conv[i]}`);
        }
      }
    }
  }
  // the first click on cost puts the most expensive run first
  await s.page.click('#runs-table th[data-key="agent"] button');
  await s.page.click('#runs-table th[data-key="cost"] button');
  eq(await s.page.getAttribute('#runs-table th[data-key="cost"]', 'aria-sort'), 'descending', 'cost sorts descending first');
  await close(s);
});

test('filters by status, agent and text, and together', async () => {
  const s = await open(fx);
  await s.page.selectOption('#f-status', 'failed');
  const failed = await visibleRows(s.page);
  eq(failed.length, fx.x.by_status.failed, 'failed rows');
  assert(failed.includes(fx.x.ids.failed), 'the failed run is listed');
  await s.page.selectOption('#f-status', '');
  await s.page.selectOption('#f-agent', 'searcher');
  eq(await visibleRows(s.page), [fx.x.ids.sub], 'rows of agent searcher');
  await s.page.selectOption('#f-agent', '');
  await s.page.fill('#f-text', 'q3 REPORT');
  // (a fork of the main run keeps its goal, so it matches too)
  const matching = [fx.x.ids.main, fx.x.ids.sub].concat(fx.x.ids.fork ? [fx.x.ids.fork] : []);
  eq((await visibleRows(s.page)).sort(), matching.sort(), 'text search, any case');
  await s.page.fill('#f-text', 'segfault');
  eq(await visibleRows(s.page), [fx.x.ids.failed], 'search finds the error text');
  await s.page.selectOption('#f-status', 'completed');
  eq(await visibleRows(s.page), [], 'filters combine');
  eq(await s.page.textContent('#shown'), `showing 0 of ${fx.x.runs}`, 'shown');
  await close(s);
});

test('a failed or budget-exhausted run says why in its row', async () => {
  const s = await open(fx);
  const why = (id) => s.page.textContent(`#runs-table tr[data-id="${id}"] .why`);
  assert((await why(fx.x.ids.failed)).startsWith('tool crashed: segfault in the PDF parser'), 'failed run shows its error');
  eq(await why(fx.x.ids.exhausted), 'limit max_cost reached (0.0112 \u2265 0.01)', 'exhausted run shows its limit');
  // a tiny cost reads as a plain decimal, never in exponent notation
  eq(await s.page.textContent(`#runs-table tr[data-id="${fx.x.ids.sub}"] td.num:nth-child(6)`), '0.0000008', 'tiny cost');
  await close(s);
});

test('a run page has one timeline bar per step, coloured by kind', async () => {
  const s = await open(fx);
  await s.page.click(`#runs-table tr[data-id="${fx.x.ids.main}"] td.goal a`);
  await s.page.waitForSelector('#run');
  eq(await s.page.$$eval('#timeline .bar', (b) => b.length), fx.x.main_steps, 'bars');
  eq(await s.page.$$eval('#steps details.step', (b) => b.length), fx.x.main_steps, 'step blocks');
  const lanes = await s.page.$$eval('#timeline .lname', (l) => l.map((x) => x.textContent));
  eq(lanes, ['llm', 'tool', 'thought', 'message'], 'one lane per kind');
  // bars are placed by time: step 2 starts after step 1 ends
  const left = await s.page.$$eval('#timeline .bar', (b) => Object.fromEntries(b.map((x) => [x.dataset.seq, parseFloat(x.style.left)])));
  assert(left[2] > left[1] && left[4] > left[3], 'bars follow the steps in time');
  eq(await s.page.textContent('#checkpoint .muted'), 'after step 4', 'checkpoint');
  await close(s);
});

test('opening a step shows its content, JSON pretty-printed and long text folded', async () => {
  const s = await open(fx);
  await s.page.goto(fx.url + '#run=' + fx.x.ids.main);
  await s.page.waitForSelector('#timeline');
  await s.page.click('#timeline .bar[data-seq="2"]');
  await s.page.waitForSelector('#step-2[open] pre');
  const pre = await s.page.textContent('#step-2 pre');
  eq(JSON.parse(pre), { query: 'Q3 report', results: ['q3.pdf', 'q3-notes.txt'] }, 'content');
  assert(pre.includes('\n  "query": "Q3 report"'), 'indented JSON: ' + pre);
  await s.page.click('#step-3 summary');
  const folded = await s.page.textContent('#step-3 pre');
  assert(folded.endsWith('\u2026') && folded.length < 1500, 'long text folded');
  await s.page.click('#step-3 button.more');
  const whole = await s.page.textContent('#step-3 pre');
  assert(whole.split('\n').length === 120 && whole.endsWith('quarterly figures.'), 'whole text after expanding');
  await close(s);
});

test('script in goals and step content shows as text and runs nothing', async () => {
  const html = fs.readFileSync(fx.html, 'utf8');
  const data = html.slice(html.indexOf('<script type="application/json"'));
  assert(!data.slice(data.indexOf('>') + 1, data.indexOf('</script>')).includes('<'), 'no "<" inside the data block');
  assert(!/\u2028|\u2029/.test(html), 'no raw U+2028/U+2029 in the page');
  const s = await open(fx);
  eq(await s.page.textContent(`#runs-table tr[data-id="${fx.x.ids.injection}"] td.goal a`), fx.x.evil, 'goal shown as text');
  await s.page.goto(fx.url + '#run=' + fx.x.ids.injection + '&step=1');
  await s.page.waitForSelector('#step-1[open] pre');
  eq(await s.page.textContent('#step-1 pre'), fx.x.evil, 'step content shown as text');
  await s.page.click('#step-2 summary');
  assert((await s.page.textContent('#step-2 pre')).includes('<img src=x onerror='), 'markup shown as text');
  eq(await s.page.evaluate(() => window.__pwned), undefined, 'no injected script ran');
  eq(await s.page.$$eval('script', (x) => x.length), 2, 'the page has only its own two scripts');
  eq(await s.page.$$eval('img', (x) => x.length), 0, 'no injected element');
  await close(s);
});

test('parent and sub-runs link both ways', async () => {
  const s = await open(fx);
  await s.page.goto(fx.url + '#run=' + fx.x.ids.sub);
  await s.page.waitForSelector('#record');
  await s.page.click(`#record a[href="#run=${fx.x.ids.main}"]`);
  await s.page.waitForSelector(`#run[data-id="${fx.x.ids.main}"]`);
  await s.page.click(`#record a[href="#run=${fx.x.ids.sub}"]`);
  await s.page.waitForSelector(`#run[data-id="${fx.x.ids.sub}"]`);
  await close(s);
});

test('forks link to their run and back, when the library has forks', async () => {
  if (!fx.x.features.fork) return 'skip';
  const s = await open(fx);
  await s.page.goto(fx.url + '#run=' + fx.x.ids.fork);
  await s.page.waitForSelector('#record');
  assert((await s.page.textContent('#record')).includes('after step 2'), 'forked after step 2');
  await s.page.click(`#record a[href="#run=${fx.x.ids.main}"]`);
  await s.page.waitForSelector(`#run[data-id="${fx.x.ids.main}"]`);
  await s.page.click(`#record a[href="#run=${fx.x.ids.fork}"]`);
  await s.page.waitForSelector(`#run[data-id="${fx.x.ids.fork}"]`);
  await close(s);
});

test('a waiting run shows its request, and its response once given, when the library has waits', async () => {
  if (!fx.x.features.wait) return 'skip';
  const s = await open(fx);
  await s.page.goto(fx.url + '#run=' + fx.x.ids.waiting);
  await s.page.waitForSelector('#record');
  let rec = await s.page.textContent('#record');
  assert(rec.includes('Approve the booking') && rec.includes('not given yet'), 'request, no response');
  await s.page.goto(fx.url + '#run=' + fx.x.ids.answered);
  await s.page.waitForSelector(`#run[data-id="${fx.x.ids.answered}"]`);
  rec = await s.page.textContent('#record');
  assert(rec.includes('yes, 10 of 40'), 'response shown');
  await close(s);
});

test('a run with intents lists them with their status, when the library has intents', async () => {
  if (!fx.x.features.intents) return 'skip';
  const s = await open(fx);
  await s.page.goto(fx.url + '#run=' + fx.x.ids.intents);
  await s.page.waitForSelector('#intents');
  eq(await s.page.$$eval('#intents tbody tr', (r) => r.map((x) => x.dataset.status)), ['settled', 'failed', 'pending'], 'intents');
  await close(s);
});

test('the keyboard reaches everything: rows, a run, back, search', async () => {
  const s = await open(fx);
  const p = s.page;
  await p.keyboard.press('/');
  eq(await p.evaluate(() => document.activeElement.id), 'f-text', '/ focuses the search');
  await p.keyboard.type('Q3 report');
  await p.keyboard.press('Tab'); // leaves the search box for the first header button
  let hops = 0;
  while (hops++ < 20 && !(await p.evaluate(() => !!document.activeElement.closest('td.goal')))) await p.keyboard.press('Tab');
  assert(hops < 20, 'a run link is reachable with Tab');
  await p.keyboard.press('Enter');
  await p.waitForSelector('#run');
  eq(await p.evaluate(() => document.activeElement.id), 'back', 'the run page focuses its back link');
  await p.keyboard.press('Escape');
  await p.waitForSelector('#run', { state: 'detached' });
  assert(await p.evaluate(() => !!document.activeElement.closest('td.goal')), 'back on the run it came from');
  await close(s);
});

test('visiting every run and opening every step makes no request and logs no error', async () => {
  const s = await open(fx);
  const requests = [];
  s.page.on('requestfinished', (r) => requests.push(r.url()));
  await s.page.click('#runs-table th[data-key="cost"] button');
  await s.page.selectOption('#f-status', 'completed');
  await s.page.selectOption('#f-status', '');
  const ids = await visibleRows(s.page);
  for (const id of ids) {
    await s.page.goto(fx.url + '#run=' + id);
    await s.page.waitForSelector(`#run[data-id="${id}"]`);
    for (const d of await s.page.$$('#steps details.step summary')) await d.click();
    for (const b of await s.page.$$('#run button.more')) await b.click();
  }
  eq(requests, [], 'requests made');
  await close(s);
});

test('dark mode follows prefers-color-scheme', async () => {
  const light = await open(fx);
  const dark = await open(fx, { colorScheme: 'dark' });
  const bg = (s) => s.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  eq(await bg(light), 'rgb(255, 255, 255)', 'light background');
  eq(await bg(dark), 'rgb(20, 23, 28)', 'dark background');
  await close(light);
  await close(dark);
});

test('screenshots of the overview and of a run page', async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  const s = await open(fx);
  await s.page.screenshot({ path: path.join(artifacts, 'view-overview.png'), fullPage: false });
  await s.page.goto(fx.url + '#run=' + fx.x.ids.main + '&step=2');
  await s.page.waitForSelector('#step-2[open]');
  await s.page.evaluate(() => window.scrollTo(0, 0));
  await s.page.screenshot({ path: path.join(artifacts, 'view-run.png'), fullPage: false });
  await close(s);
  for (const f of ['view-overview.png', 'view-run.png']) assert(fs.statSync(path.join(artifacts, f)).size > 10000, f + ' written');
});

test('a thousand runs of twenty steps make a page under 10 MB that opens whole', async () => {
  if (!large) return 'skip';
  const size = fs.statSync(large.html).size;
  assert(size < 10 * 1024 * 1024, 'page of ' + size + ' bytes');
  eq(large.x.steps, 20000, 'steps in the page');
  const s = await open(large);
  const ms = Number(await s.page.getAttribute('html', 'data-drawn-ms'));
  eq((await visibleRows(s.page)).length, 1000, 'rows');
  await s.page.goto(large.url + '#run=' + (await visibleRows(s.page))[0]);
  await s.page.waitForSelector('#timeline');
  eq(await s.page.$$eval('#timeline .bar', (b) => b.length), 20, 'bars');
  await close(s);
  console.log(`    (${(size / 1048576).toFixed(1)} MB, drawn ${ms} ms after navigation started)`);
});

test('the page made from a PostgreSQL store shows the same', async () => {
  if (!pg) return 'skip';
  const s = await open(pg);
  eq((await visibleRows(s.page)).length, pg.x.runs, 'rows');
  eq(pg.x.runs, fx.x.runs, 'same runs as on SQLite');
  await s.page.goto(pg.url + '#run=' + pg.x.ids.main);
  await s.page.waitForSelector('#timeline');
  eq(await s.page.$$eval('#timeline .bar', (b) => b.length), pg.x.main_steps, 'bars');
  await close(s);
});

(async () => {
  let passed = 0, failed = 0, skipped = 0;
  // Chromium's own background traffic (updates, sync, QUIC probes) is turned
  // off: the page is tested alone, and the machine may have no network.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  for (const t of tests) {
    if (only && t.name !== only) continue;
    try {
      const r = await t.fn();
      if (r === 'skip') { skipped++; console.log('skip: ' + t.name); } else { passed++; console.log('ok: ' + t.name); }
    } catch (e) {
      failed++;
      console.log('FAIL: ' + t.name + '\n  ' + String(e && e.stack || e).split('\n').slice(0, 4).join('\n  '));
    }
  }
  await browser.close();
  console.log(`browser: ${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''));
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.error(e); console.log('0 passed, 1 failed'); process.exit(1); });
