// The benchmark page, driven by bench/browser.mjs, one configuration per page load (onnxruntime-web
// fixes its thread count at its first session): ours (tract in wasm) on `workers` Web Workers, or
// onnxruntime-web (wasm execution provider) on `threads` threads. The same ONNX bytes and the same
// preprocessed patches (cut by our wasm) for both.
//   - per batch size: ms per spot of the model alone over the first `spots` grid patches, batches
//     spread over the workers (ours) or run one after another (ort, parallel inside);
//   - the whole tissue grid, crop + preprocess + model, in the batch size that was fastest above:
//     wall time. Ours as the page does it (pool.js); ort with our wasm preprocessing on the page's thread.
// Each is timed `repeat` times after one untimed pass (wasm tier-up, allocations); the fastest counts.
import init, { SpotModel, Slide } from './pkg/bioedge_wasm.js';
import * as ort from './ort/ort.wasm.min.mjs';
import { Pool, WorkerClient } from './pool.js';

const bytes = async (url) => {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
};

// runs `[i, j)` chunks on parallel lanes (each lane: one call at a time), values in chunk order
async function runChunks(lanes, chunks, out, k) {
  let next = 0;
  await Promise.all(lanes.map(async (lane) => {
    for (let c = next++; c < chunks.length; c = next++) {
      const [i, j] = chunks[c];
      out.set(await lane(i, j), i * k);
    }
  }));
  return out;
}

const split = (n, b) => Array.from({ length: Math.ceil(n / b) }, (_, c) => [c * b, Math.min(n, (c + 1) * b)]);

window.runBench = async ({ model: modelUrl = 'model.onnx', image = 'example.jpg', spots = 32, batches = [1, 8], runtime = 'ours', workers = 1, threads = 1, repeat = 3 } = {}) => {
  await init();
  const mb = await bytes(modelUrl);
  const ib = await bytes(image);
  const model = new SpotModel(mb, modelUrl);
  const slide = new Slide(ib, image);
  const side = model.patchSide() ?? 290;
  const step = side / model.patchSpan();
  const gridXy = slide.grid(step);
  const gridN = gridXy.length / 2;
  const xy = gridXy.slice(0, 2 * spots);
  const n = xy.length / 2;
  const s = model.inputSize(), len = 3 * s * s, k = model.genes().length;
  const all = new Float32Array(n * len);
  for (let i = 0; i < n; i++) all.set(model.tensor(slide, xy[2 * i], xy[2 * i + 1], side), i * len);

  let lanes, grid, effective, main = null, pool = null;
  if (runtime === 'ours') {
    pool = new Pool();
    pool.setModel(mb.buffer.slice(0), modelUrl);
    const clients = await pool.resize(workers);
    lanes = clients.map((c) => (i, j) => {
      const input = all.slice(i * len, j * len);
      return c.call('run', { input, n: j - i }, [input.buffer]);
    });
    // the grid as the page does it: the main worker holds the image
    main = new WorkerClient();
    await main.call('model', { bytes: mb.buffer.slice(0), name: modelUrl });
    await main.call('image', { bytes: ib.buffer.slice(0), name: image, maxSide: 64 });
    grid = async (batch) => {
      if (workers === 1) return main.call('grid', { side, step, batch });
      const sp = await main.call('spots', { side, step });
      return pool.grid(main, sp, side, k, workers, null, batch);
    };
    effective = workers;
  } else if (runtime === 'ort') {
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.wasmPaths = new URL('ort/', location.href).href;
    const session = await ort.InferenceSession.create(mb, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
    const input = session.inputNames[0];
    const run = async (data, m) => (await session.run({ [input]: new ort.Tensor('float32', data, [m, 3, s, s]) })).expression.data;
    lanes = [(i, j) => run(all.slice(i * len, j * len), j - i)];
    grid = async (batch) => {
      const values = new Float32Array(gridN * k);
      const t = performance.now();
      for (const [i, j] of split(gridN, batch)) {
        const data = new Float32Array((j - i) * len);
        for (let p = i; p < j; p++) data.set(model.tensor(slide, gridXy[2 * p], gridXy[2 * p + 1], side), (p - i) * len);
        values.set(await run(data, j - i), i * k);
      }
      return { values, ms: performance.now() - t };
    };
    effective = ort.env.wasm.numThreads;
  } else {
    throw new Error(`runtime ${runtime}: expected ours or ort`);
  }

  const results = [];
  for (const b of batches) {
    const chunks = split(n, b);
    // warm-up: every lane runs this batch size once (tract plans one per shape), then one whole pass
    await Promise.all(lanes.map((lane) => lane(...chunks[0])));
    let out = await runChunks(lanes, chunks, new Float32Array(n * k), k);
    let ms = Infinity;
    for (let r = 0; r < repeat; r++) {
      const t = performance.now();
      out = await runChunks(lanes, chunks, new Float32Array(n * k), k);
      ms = Math.min(ms, (performance.now() - t) / n);
    }
    results.push({ batch: b, spots: n, ms, values: Array.from(out) });
  }
  const gridBatch = results.reduce((b, x) => (x.ms < b.ms ? x : b)).batch;
  let g = await grid(gridBatch); // warm-up
  for (let r = 0, best = Infinity; r < repeat; r++) {
    const x = await grid(gridBatch);
    if (x.ms < best) [g, best] = [x, x.ms];
  }
  const r = {
    runtime, workers, threads, effective, genes: k, side, results,
    grid: { spots: gridN, batch: gridBatch, ms: g.ms, values: Array.from(g.values) },
    ortVersion: ort.env.versions?.web ?? '?', userAgent: navigator.userAgent, crossOriginIsolated, cores: navigator.hardwareConcurrency,
  };
  for (const w of pool?.workers ?? []) w.client.terminate();
  main?.terminate();
  document.getElementById('out').textContent = JSON.stringify({ ...r, results: results.map(({ values, ...x }) => x), grid: { ...r.grid, values: undefined } }, null, 2);
  return r;
};
