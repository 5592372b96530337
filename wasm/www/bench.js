// ms per spot: our wasm (tract) vs onnxruntime-web (wasm execution provider, 1 thread), the same
// ONNX bytes and the same preprocessed patches (made by our wasm). Driven by bench/browser.mjs.
import init, { SpotModel, Slide } from './pkg/bioedge_wasm.js';
import * as ort from './ort/ort.wasm.min.mjs';

const bytes = async (url) => {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
};

window.runBench = async ({ model: modelUrl = 'model.onnx', image = 'example.jpg', spots = 32, batches = [1, 8] } = {}) => {
  await init();
  const mb = await bytes(modelUrl);
  const model = new SpotModel(mb, modelUrl);
  const slide = new Slide(await bytes(image), image);
  const side = model.patchSide() ?? 290;
  const xy = slide.grid(side).slice(0, 2 * spots);
  const n = xy.length / 2;
  const s = model.inputSize(), len = 3 * s * s, k = model.genes().length;
  const all = new Float32Array(n * len);
  for (let i = 0; i < n; i++) all.set(model.tensor(slide, xy[2 * i], xy[2 * i + 1], side), i * len);

  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = new URL('ort/', location.href).href;
  const session = await ort.InferenceSession.create(mb, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });

  const results = [];
  for (const b of batches) {
    const chunks = [];
    for (let i = 0; i < n; i += b) chunks.push([i, Math.min(n, i + b)]);
    const input = ([i, j]) => all.slice(i * len, j * len);
    // warm-up (wasm tier-up, allocations): one untimed pass over all patches each
    for (const c of chunks) {
      model.run(input(c), c[1] - c[0]);
      await session.run({ image: new ort.Tensor('float32', input(c), [c[1] - c[0], 3, s, s]) });
    }
    const ours = new Float32Array(n * k), theirs = new Float32Array(n * k);
    let t = performance.now();
    for (const c of chunks) ours.set(model.run(input(c), c[1] - c[0]), c[0] * k);
    const oursMs = (performance.now() - t) / n;
    t = performance.now();
    for (const c of chunks) {
      const out = await session.run({ image: new ort.Tensor('float32', input(c), [c[1] - c[0], 3, s, s]) });
      theirs.set(out.expression.data, c[0] * k);
    }
    const ortMs = (performance.now() - t) / n;
    // ours end to end: crop + preprocess + model
    t = performance.now();
    for (const [i, j] of chunks) model.predict(slide, xy.subarray(2 * i, 2 * j), side);
    const e2eMs = (performance.now() - t) / n;
    const maxDiff = ours.reduce((m, v, i) => Math.max(m, Math.abs(v - theirs[i])), 0);
    results.push({ batch: b, spots: n, oursMs, ortMs, e2eMs, maxDiff });
  }
  const r = { genes: k, side, results, ortVersion: ort.env.versions?.web ?? '?', userAgent: navigator.userAgent, crossOriginIsolated };
  document.getElementById('out').textContent = JSON.stringify(r, null, 2);
  return r;
};
