// Browser benchmark, one run: our wasm (tract) on 1 and N Web Workers vs onnxruntime-web (wasm EP)
// on 1 and N threads, the same ONNX file and patches, in headless Chromium on 127.0.0.1, with the page
// served plain and cross-origin isolated (COOP/COEP: what onnxruntime-web's threads need).
// N = navigator.hardwareConcurrency unless given. Per configuration: ms per spot of the model alone
// (batches 1 and 8 over --spots patches) and the whole tissue grid's wall time (crop + preprocess +
// model, in that configuration's fastest batch size). See wasm/www/bench.js.
//   bash wasm/build.sh && node bench/browser.mjs [--model out/spot-small.onnx] [--spots 32]
//        [--isolation both|on|off] [--workers N] [--threads N] [--batches 1,8] [--repeat 3]
// Times are the fastest of --repeat timed passes, each after an untimed one.
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, args, browser, die, serve } from '../tests/js/lib.mjs';

const a = args({ web: path.join(ROOT, 'out/web'), spots: '32', isolation: 'both', batches: '1,8', repeat: '3' });
const web = path.resolve(a.web);
if (!fs.existsSync(path.join(web, 'ort/ort.wasm.min.mjs'))) die(`${web}/ort missing: run scripts/setup.sh then bash wasm/build.sh`);
const modes = { both: [false, true], on: [true], off: [false] }[a.isolation];
if (!modes) die(`--isolation ${a.isolation}: expected both, on or off`);
const count = (name, max = 64) => {
  if (a[name] === undefined) return undefined;
  const v = Number(a[name]);
  if (!Number.isInteger(v) || v < 1 || v > max) die(`--${name} ${a[name]}: expected a whole number from 1 to ${max}`);
  return v;
};
const spots = count('spots', 10000);
const repeat = count('repeat', 100);
const batches = a.batches.split(',').map(Number);
if (batches.some((b) => !Number.isInteger(b) || b < 1)) die(`--batches ${a.batches}: expected sizes like 1,8`);
let model = 'model.onnx';
if (a.model) {
  if (!fs.existsSync(a.model)) die(`${a.model} not found`);
  fs.copyFileSync(a.model, path.join(web, 'bench-model.onnx'));
  model = 'bench-model.onnx';
} else if (!fs.existsSync(path.join(web, model))) die('no out/web/model.onnx: pass --model');

const plural = (n, w) => `${n} ${w}${n > 1 ? 's' : ''}`;

// one page load per configuration: onnxruntime-web fixes its threads at its first session
async function measure(isolate) {
  const server = await serve(web, 0, { isolate });
  const origin = `http://127.0.0.1:${server.address().port}/`;
  const { context, foreign, close } = await browser(origin);
  const rows = [];
  try {
    const page = context.pages()[0] ?? await context.newPage();
    page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'warning' || m.type() === 'error') console.error(`[page] ${m.text()}`); });
    const open = async () => {
      await page.goto(`${origin}bench.html`);
      await page.waitForFunction(() => window.runBench);
    };
    await open();
    const [cores, isolated] = await page.evaluate(() => [navigator.hardwareConcurrency, crossOriginIsolated]);
    if (isolated !== isolate) die(`page crossOriginIsolated = ${isolated}, expected ${isolate}`);
    const n = count('workers') ?? cores, t = count('threads') ?? cores;
    const configs = [...new Set([1, n])].map((w) => ({ runtime: 'ours', workers: w }))
      .concat([...new Set([1, t])].map((th) => ({ runtime: 'ort', threads: th })));
    for (const c of configs) {
      await open();
      const r = await page.evaluate((o) => window.runBench(o), { ...c, model, spots, batches, repeat });
      console.error(`  ${r.runtime} ${r.runtime === 'ours' ? plural(r.workers, 'worker') : plural(r.effective, 'thread')}, isolated ${isolate}: ` +
        r.results.map((x) => `batch ${x.batch} ${x.ms.toFixed(1)} ms/spot`).join(', ') + `, grid ${(r.grid.ms / 1000).toFixed(2)} s`);
      rows.push({ ...r, isolated: isolate });
    }
    if (foreign.length) die(`requests left 127.0.0.1: ${foreign.join(', ')}`);
  } finally {
    await close();
    server.close();
  }
  return rows;
}

let rows = [];
try {
  for (const isolate of modes) rows = rows.concat(await measure(isolate));
} finally {
  if (a.model) fs.rmSync(path.join(web, 'bench-model.onnx'), { force: true });
}

const diff = (x, y) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
const ref = rows.find((r) => r.runtime === 'ours' && r.workers === 1) ?? rows[0];
const label = (r) => (r.runtime === 'ours' ? `ours (tract wasm), ${plural(r.workers, 'worker')}`
  : `onnxruntime-web, ${plural(r.threads, 'thread')}${r.effective !== r.threads ? ` (ran ${r.effective}: page not isolated)` : ''}`);
const f = rows[0];
console.log(`model ${a.model ?? 'out/web/model.onnx'} (${f.genes} genes), example image: ${f.results[0].spots} patches per batch size and the whole tissue grid (${f.grid.spots} spots), ` +
  `${f.userAgent.match(/Chrome\/[\d.]+/)?.[0]}, onnxruntime-web ${f.ortVersion}, navigator.hardwareConcurrency ${f.cores}; fastest of ${repeat} passes; ms per spot, lower is better`);
console.log(`| runtime | isolated | ${batches.map((b) => `batch ${b} ms/spot`).join(' | ')} | grid wall s | grid ms/spot (batch) | max abs diff vs ours 1 worker |`);
console.log(`|---|---|${batches.map(() => '---|').join('')}---|---|---|`);
for (const r of rows) {
  const d = Math.max(...r.results.map((x, i) => diff(x.values, ref.results[i].values)), diff(r.grid.values, ref.grid.values));
  console.log(`| ${label(r)} | ${r.isolated ? 'yes' : 'no'} | ${r.results.map((x) => x.ms.toFixed(1)).join(' | ')} | ${(r.grid.ms / 1000).toFixed(2)} | ` +
    `${(r.grid.ms / r.grid.spots).toFixed(1)} (${r.grid.batch}) | ${d === 0 ? '0 (identical)' : d.toExponential(1)} |`);
}
// same batch, same threads: ours on W workers vs ort on W threads (ort's threads from the isolated page when measured)
const best = (pred, key) => rows.filter(pred).reduce((b, r) => (b && key(b) <= key(r) ? b : r), null);
console.log('\nsame batch, same parallelism (ours: W workers; onnxruntime-web: W threads, isolated page when measured):');
console.log(`| W | ${batches.map((b) => `batch ${b}: ours / ort`).join(' | ')} | grid: ours / ort |`);
console.log(`|---|${batches.map(() => '---|').join('')}---|`);
for (const w of [...new Set(rows.filter((r) => r.runtime === 'ours').map((r) => r.workers))]) {
  const ours = best((r) => r.runtime === 'ours' && r.workers === w, (r) => r.grid.ms);
  const ort = best((r) => r.runtime === 'ort' && r.threads === w && r.effective === w, (r) => r.grid.ms);
  if (!ours || !ort) continue;
  console.log(`| ${w} | ${ours.results.map((x, i) => `${(x.ms / ort.results[i].ms).toFixed(2)}×`).join(' | ')} | ${(ours.grid.ms / ort.grid.ms).toFixed(2)}× |`);
}
const bo = best((r) => r.runtime === 'ours', (r) => r.grid.ms), bt = best((r) => r.runtime === 'ort', (r) => r.grid.ms);
console.log(`\nwhole grid, best configuration each: ${label(bo)} ${(bo.grid.ms / 1000).toFixed(2)} s vs ${label(bt)}${bt.isolated ? ' (isolated)' : ''} ` +
  `${(bt.grid.ms / 1000).toFixed(2)} s: ours / ort = ${(bo.grid.ms / bt.grid.ms).toFixed(2)}×`);
const many = rows.filter((r) => r.runtime === 'ours' && r.workers > 1);
for (const r of many) {
  const d = diff(r.grid.values, ref.grid.values);
  console.log(`ours ${r.workers}-worker grid${r.isolated ? ' (isolated page)' : ''} vs 1-worker grid: ${d === 0 ? 'identical' : `max abs diff ${d.toExponential(1)}`}`);
}
