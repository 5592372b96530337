// Web Workers running worker.js: one promise per request, and data-parallel grid prediction over
// several of them. Used by the page (app.js) and the benchmark page (bench.js).

/**
 * Spots per model call, in the one-worker and the many-worker grid alike. 1: tract's plan made for
 * batch 1 cost the least CPU per spot in wasm (the plain CNN: 8.0 ms at 1, 12.3 at 8; the TCGN-style
 * model: 19.6 at 1, 23.7 at 8).
 */
export const BATCH = 1;

/**
 * Model calls per message to a grid worker: each round trip (crops from the main worker, then
 * predictCrops) cost about 10 ms of waiting in headless Chromium, as much as the model itself
 * (plain CNN: 0.64 s for a 64-spot grid on 2 workers with one spot per message, 0.32 s with 4).
 */
export const CALLS_PER_MESSAGE = 4;

/** Workers for the grid by default: one per logical core the browser reports (at most 16). */
export const defaultWorkers = () => Math.max(1, Math.min(16, navigator.hardwareConcurrency || 1));

/** One worker.js: `call(type, args, transfer, onProgress)` resolves to the handler's result. */
export class WorkerClient {
  constructor(onError) {
    this.worker = new Worker(new URL('worker.js', import.meta.url), { type: 'module' });
    this.pending = new Map();
    this.nextId = 1;
    this.worker.onmessage = (e) => {
      const m = e.data;
      const p = this.pending.get(m.id);
      if (!p) return;
      if (m.progress !== undefined) { p.onProgress?.(m); return; }
      this.pending.delete(m.id);
      m.ok ? p.resolve(m.result) : p.reject(new Error(m.error));
    };
    this.dead = false;
    this.worker.onerror = (e) => {
      this.dead = true;
      const err = new Error(`worker failed: ${e.message ?? e}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      onError?.(err);
    };
  }

  call(type, args, transfer = [], onProgress) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, type, args }, transfer);
    });
  }

  terminate() {
    this.worker.terminate();
    for (const p of this.pending.values()) p.reject(new Error('worker stopped'));
    this.pending.clear();
  }
}

/**
 * Model workers for the grid. Each loads the wasm module and the model once; the image stays in the
 * page's main worker, which cuts the patches (`crops`), so N workers do not hold N decoded images.
 */
export class Pool {
  constructor() {
    this.workers = [];
    this.model = null; // { bytes, name }
  }

  /** A new model for every worker (loaded lazily, by `resize`). `bytes` is kept, not transferred. */
  setModel(bytes, name) {
    this.model = { bytes, name };
    for (const w of this.workers) w.ready = null;
  }

  /** Grows or shrinks the pool to `n` workers, each with the current model loaded. */
  async resize(n) {
    if (!this.model) throw new Error('load a spot model first');
    this.workers = this.workers.filter((w) => !w.client.dead);
    while (this.workers.length > n) this.workers.pop().client.terminate();
    while (this.workers.length < n) this.workers.push({ client: new WorkerClient(), ready: null });
    for (const w of this.workers) {
      if (!w.ready) {
        const { bytes, name } = this.model;
        w.ready = w.client.call('model', { bytes, name }); // cloned, not transferred
        w.ready.catch(() => { w.ready = null; });
      }
    }
    await Promise.all(this.workers.map((w) => w.ready));
    return this.workers.map((w) => w.client);
  }

  /**
   * The grid of `spots` ({ ids, xy }) on `n` workers: chunks of CALLS_PER_MESSAGE batches of `batch`
   * spots in grid order, taken by whichever worker is free; patches are cut by `main` (the worker holding the image); values are
   * written at their batch's place, so the result equals the one-worker grid's.
   */
  async grid(main, spots, side, genes, n, onProgress, batch = BATCH) {
    const clients = await this.resize(n);
    const total = spots.ids.length;
    const values = new Float32Array(total * genes);
    const chunk = batch * CALLS_PER_MESSAGE;
    const chunks = Math.ceil(total / chunk);
    let next = 0, done = 0, failed = false;
    const t = performance.now();
    // the next chunk in grid order, its patches requested from `main` at once
    const take = () => {
      const b = next++;
      if (b >= chunks || failed) return null;
      const i = b * chunk, j = Math.min(total, i + chunk);
      const crops = main.call('crops', { xy: spots.xy.slice(2 * i, 2 * j), side });
      crops.catch(() => {}); // a failure is reported where it is awaited
      return { i, j, crops };
    };
    await Promise.all(clients.map(async (w) => {
      // each worker asks for its next patches before predicting the current ones, so cutting
      // (main worker) and the model (this worker) overlap
      for (let cur = take(); cur && !failed; ) {
        let nxt = null;
        try {
          const { bytes, cropSide } = await cur.crops;
          nxt = take();
          const v = await w.call('predictCrops', { bytes, cropSide, batch }, [bytes.buffer]);
          values.set(v, cur.i * genes);
        } catch (e) {
          failed = true;
          throw e;
        }
        done += cur.j - cur.i;
        onProgress?.({ progress: done / total, done, total, ms: performance.now() - t });
        cur = nxt;
      }
    }));
    return { ids: spots.ids, xy: spots.xy, values, side, step: spots.step, ms: performance.now() - t, workers: clients.length };
  }
}
