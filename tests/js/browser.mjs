// End-to-end test of the browser page in headless Chromium: bad inputs show errors; a spot model
// (dropped on the page) and the bundled example image give grid and clicked-spot predictions equal to
// native `infer slide` (tract) within 1e-4; the grid split over several Web Workers equals the
// one-worker grid exactly; no request leaves 127.0.0.1; a screenshot is saved.
//
// node tests/js/browser.mjs --model M.onnx --infer PATH/TO/infer [--bad-model WRONG_FAMILY.onnx]
//      [--gene NAME] [--screenshot out/browser.png] [--web out/web] [--tmp DIR] [--isolate 1]
// (--isolate 1: the page served cross-origin isolated, COOP/COEP, as bench/browser.mjs also measures it)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ROOT, args, browser, die, serve } from './lib.mjs';

const TOL = 1e-4;
const a = args({ web: path.join(ROOT, 'out/web'), screenshot: path.join(ROOT, 'out/browser.png') });
if (!a.model || !a.infer) die('need --model and --infer');
const web = path.resolve(a.web);
const example = path.join(web, 'example.jpg');
for (const f of [path.join(web, 'index.html'), path.join(web, 'pkg/bioedge_wasm_bg.wasm'), example]) {
  if (!fs.existsSync(f)) die(`${f} missing: run bash wasm/build.sh`);
}
const tmp = a.tmp ?? fs.mkdtempSync(path.join(os.tmpdir(), 'bioedge-browser-'));

function csv(file) {
  const [head, ...rows] = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(','));
  return { genes: head.slice(3), rows: rows.map((r) => ({ id: r[0], x: +r[1], y: +r[2], values: r.slice(3).map(Number) })) };
}
function infer(...extra) {
  const out = path.join(tmp, `native-${Date.now()}.csv`);
  execFileSync(a.infer, ['slide', '--model', a.model, '--image', example, '--backend', 'tract', '--out', out, ...extra], { stdio: ['ignore', 'ignore', 'inherit'] });
  return csv(out);
}
function maxDiff(x, y) {
  if (x.length !== y.length) die(`length ${x.length} vs ${y.length}`);
  return x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
}

const server = await serve(web, 0, { isolate: a.isolate === '1' });
const origin = `http://127.0.0.1:${server.address().port}/`;
const { context, foreign, close } = await browser(origin);
const page = context.pages()[0] ?? await context.newPage();
page.on('console', (m) => console.log(`[page] ${m.text()}`));
page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
let failed = false;
const check = (ok, msg) => { console.log(`${ok ? 'ok  ' : 'FAIL'} ${msg}`); if (!ok) failed = true; };

try {
  // 3 grid workers (more than this 2-core box has): batches finish out of order and are put back in place
  await page.goto(`${origin}?auto=0&workers=3`);
  await page.waitForFunction(() => window.bioedge);
  const idle = () => page.waitForFunction(() => !window.bioedge.busy, null, { timeout: 300_000 });
  const errorAfter = async (sel, file) => {
    await page.evaluate(() => { window.bioedge.error = null; });
    await page.setInputFiles(sel, file);
    await page.waitForFunction(() => window.bioedge.error, null, { timeout: 60_000 });
    const shown = await page.locator('#error').isVisible();
    return shown ? page.evaluate(() => window.bioedge.error) : '(not shown)';
  };

  // errors are shown on the page
  const text = path.join(tmp, 'not-an-image.jpg');
  fs.writeFileSync(text, 'hello, this is text');
  let e = await errorAfter('#model-file', example);
  check(/not an ONNX model/.test(e), `an image as model: "${e}"`);
  if (a['bad-model']) {
    e = await errorAfter('#model-file', a['bad-model']);
    check(/not a spot model/.test(e), `wrong model family: "${e}"`);
  }
  e = await errorAfter('#image-file', text);
  check(/not-an-image\.jpg/.test(e) && /not a recognised image|decode/.test(e), `unreadable image: "${e}"`);
  await page.setInputFiles('#image-file', []);

  // model by drag and drop (the pickers were used above), bundled example image by its button
  const drop = await page.evaluateHandle(([b64, name]) => {
    const dt = new DataTransfer();
    dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name));
    return dt;
  }, [fs.readFileSync(a.model).toString('base64'), path.basename(a.model)]);
  await page.dispatchEvent('#view', 'drop', { dataTransfer: drop });
  await page.waitForFunction(() => window.bioedge.model && !window.bioedge.busy, null, { timeout: 120_000 });
  await page.click('#example');
  await page.waitForFunction(() => window.bioedge.image && !window.bioedge.busy, null, { timeout: 60_000 });
  check(!(await page.evaluate(() => window.bioedge.error)), 'model and example image loaded without error');
  const names = await page.evaluate(() => [window.bioedge.model.name, window.bioedge.image.name]);
  check(names[0] === path.basename(a.model) && names[1] === 'example.jpg', `dropped model and example image: ${names.join(', ')}`);

  // whole grid (3 workers) vs `infer slide --grid`
  const predictGrid = async () => {
    await page.evaluate(() => { window.bioedge.grid = null; });
    await page.click('#predict-grid');
    await page.waitForFunction(() => window.bioedge.grid || window.bioedge.error, null, { timeout: 600_000 });
    await idle();
    const g = await page.evaluate(() => {
      const g = window.bioedge.grid;
      return g && { ids: g.ids, xy: Array.from(g.xy), values: Array.from(g.values), ms: g.ms, workers: g.workers, genes: window.bioedge.model.genes };
    });
    if (!g) die(`grid failed: ${await page.evaluate(() => window.bioedge.error)}`);
    return g;
  };
  const grid = await predictGrid();
  check(grid.workers === 3, `grid predicted on ${grid.workers} workers`);
  const ref = infer('--grid');
  check(JSON.stringify(ref.genes) === JSON.stringify(grid.genes), `genes from the card (${grid.genes.length})`);
  check(JSON.stringify(ref.rows.map((r) => r.id)) === JSON.stringify(grid.ids), `same ${grid.ids.length} grid spots as infer slide --grid`);
  const xyDiff = maxDiff(ref.rows.flatMap((r) => [r.x, r.y]), grid.xy);
  check(xyDiff < 0.01, `grid positions agree (max diff ${xyDiff.toExponential(2)} px)`);
  const gridDiff = maxDiff(ref.rows.flatMap((r) => r.values), grid.values);
  check(gridDiff <= TOL, `grid predictions: max |browser - native| = ${gridDiff.toExponential(2)} (≤ ${TOL})`);
  const msPerSpot = grid.ms / grid.ids.length;

  // the same grid on one worker: the very same numbers
  await page.fill('#workers', '1');
  const single = await predictGrid();
  check(single.workers === 1 && JSON.stringify(single.ids) === JSON.stringify(grid.ids), `one-worker grid: same ${single.ids.length} spots`);
  const same = single.values.length === grid.values.length && single.values.every((v, i) => Object.is(v, grid.values[i]));
  check(same, `3-worker grid equals the one-worker grid exactly (max diff ${maxDiff(single.values, grid.values).toExponential(2)})`);
  await page.fill('#workers', '0');
  await page.evaluate(() => { window.bioedge.error = null; });
  await page.click('#predict-grid');
  await page.waitForFunction(() => window.bioedge.error, null, { timeout: 60_000 });
  e = await page.evaluate(() => window.bioedge.error);
  check(/workers "0"/.test(e), `0 workers: "${e}"`);
  await page.fill('#workers', '3');

  // a clicked spot vs `infer slide --spots`
  const box = await page.locator('#overlay').boundingBox();
  await page.mouse.click(box.x + box.width * 0.37, box.y + box.height * 0.61);
  await page.waitForFunction(() => window.bioedge.selected || window.bioedge.error, null, { timeout: 60_000 });
  await idle();
  const sel = await page.evaluate(() => { const s = window.bioedge.selected; return s && { x: s.x, y: s.y, values: Array.from(s.values) }; });
  if (!sel) die(`spot failed: ${await page.evaluate(() => window.bioedge.error)}`);
  const spots = path.join(tmp, 'clicked.tsv');
  fs.writeFileSync(spots, `x\ty\tpixel_x\tpixel_y\tselected\n1\t1\t${Math.fround(sel.x)}\t${Math.fround(sel.y)}\t1\n`);
  const one = infer('--spots', spots);
  const spotDiff = maxDiff(one.rows[0].values, sel.values);
  check(spotDiff <= TOL, `clicked spot (${sel.x.toFixed(1)}, ${sel.y.toFixed(1)}): max |browser - native| = ${spotDiff.toExponential(2)}`);
  const rows = await page.locator('#top-genes tbody tr').count();
  check(rows > 0, `top-genes table shows ${rows} rows`);

  // heatmap of a chosen gene (default: the most variable over the grid), then a screenshot
  const k = grid.genes.length, n = grid.ids.length;
  let gi = a.gene ? grid.genes.indexOf(a.gene) : -1;
  if (a.gene && gi < 0) die(`--gene ${a.gene} is not an output of the model`);
  if (gi < 0) {
    const variance = (g) => { const c = grid.ids.map((_, i) => grid.values[i * k + g]); const m = c.reduce((s, v) => s + v, 0) / n; return c.reduce((s, v) => s + (v - m) ** 2, 0); };
    gi = [...Array(k).keys()].reduce((b, g) => (variance(g) > variance(b) ? g : b), 0);
  }
  await page.selectOption('#gene', String(gi));
  check(await page.locator('#legend').isVisible(), `heatmap legend for ${grid.genes[gi]}`);
  fs.mkdirSync(path.dirname(path.resolve(a.screenshot)), { recursive: true });
  await page.screenshot({ path: a.screenshot, fullPage: true });
  console.log(`screenshot: ${a.screenshot}`);
  console.log(`browser: ${n} grid spots in ${(grid.ms / 1000).toFixed(2)} s on 3 workers, ${(single.ms / 1000).toFixed(2)} s on 1 (${msPerSpot.toFixed(1)} and ` +
    `${(single.ms / n).toFixed(1)} ms per spot; crop + preprocess + model; timings not checked)`);
  check(foreign.length === 0, `no request left 127.0.0.1${foreign.length ? ': ' + foreign.join(', ') : ''}`);
} finally {
  await close();
  server.close();
}
if (failed) die('browser test failed');
console.log('browser test passed');
