// Browser benchmark, one run: ms per spot for our wasm (tract) vs onnxruntime-web (wasm EP,
// 1 thread) on the same ONNX file and patches, in headless Chromium on 127.0.0.1.
//   bash wasm/build.sh && node bench/browser.mjs [--model out/spot-small.onnx] [--spots 32]
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, args, browser, die, serve } from '../tests/js/lib.mjs';

const a = args({ web: path.join(ROOT, 'out/web'), spots: '32' });
const web = path.resolve(a.web);
if (!fs.existsSync(path.join(web, 'ort/ort.wasm.min.mjs'))) die(`${web}/ort missing: run scripts/setup.sh then bash wasm/build.sh`);
let model = 'model.onnx';
if (a.model) {
  fs.copyFileSync(a.model, path.join(web, 'bench-model.onnx'));
  model = 'bench-model.onnx';
} else if (!fs.existsSync(path.join(web, model))) die('no out/web/model.onnx: pass --model');

const server = await serve(web, 0);
const origin = `http://127.0.0.1:${server.address().port}/`;
const { context, foreign, close } = await browser(origin);
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
  await page.goto(`${origin}bench.html`);
  await page.waitForFunction(() => window.runBench);
  const r = await page.evaluate((o) => window.runBench(o), { model, spots: Number(a.spots) });
  console.log(`model ${a.model ?? 'out/web/model.onnx'} (${r.genes} genes), ${r.results[0].spots} patches of the example image, ${r.userAgent.match(/Chrome\/[\d.]+/)?.[0]}, onnxruntime-web ${r.ortVersion}, 1 thread each`);
  console.log('| batch | ours (tract wasm) ms/spot | onnxruntime-web ms/spot | ours/ort | ours incl. crop+preprocess ms/spot | max abs diff |');
  console.log('|---|---|---|---|---|---|');
  for (const x of r.results) {
    console.log(`| ${x.batch} | ${x.oursMs.toFixed(1)} | ${x.ortMs.toFixed(1)} | ${(x.oursMs / x.ortMs).toFixed(2)}× | ${x.e2eMs.toFixed(1)} | ${x.maxDiff.toExponential(1)} |`);
  }
  if (foreign.length) die(`requests left 127.0.0.1: ${foreign.join(', ')}`);
} finally {
  await close();
  server.close();
  if (a.model) fs.rmSync(path.join(web, 'bench-model.onnx'), { force: true });
}
