// Heavy work off the main thread: decoding, preprocessing and the model (tract in WebAssembly).
// The page's main worker holds the image and the model; the grid's extra workers (pool.js) hold
// only the model and predict patches the main worker cut (`crops` → `predictCrops`).
import init, { SpotModel, Slide } from './pkg/bioedge_wasm.js';

const ready = init();
let model = null;
let slide = null;

function need() {
  if (!model) throw new Error('load a spot model first');
  if (!slide) throw new Error('load an image first');
}

const handlers = {
  async model({ bytes, name }) {
    const m = new SpotModel(new Uint8Array(bytes), name);
    model?.free();
    model = m;
    return { card: JSON.parse(m.cardJson()), genes: m.genes(), side: m.patchSide() ?? null, span: m.patchSpan(), size: m.inputSize() };
  },
  async image({ bytes, name, maxSide }) {
    const s = new Slide(new Uint8Array(bytes), name);
    slide?.free();
    slide = s;
    const p = s.preview(maxSide);
    const rgba = p.rgba();
    const out = { width: s.width(), height: s.height(), pw: p.width, ph: p.height, factor: p.factor, rgba };
    p.free();
    return [out, [rgba.buffer]];
  },
  async spot({ x, y, side }, id) {
    need();
    const t = performance.now();
    const values = model.predict(slide, Float32Array.of(x, y), side);
    return { x, y, side, values, ms: performance.now() - t };
  },
  // the grid's spots over tissue, every `step` px (the spot spacing: the patch side, or less for
  // a model whose patch also covers the neighbours)
  async spots({ side, step = side }) {
    if (!slide) throw new Error('load an image first');
    const ids = slide.gridIds(step);
    if (ids.length === 0) throw new Error(`no tissue spots on the grid (step ${step} px)`);
    const xy = slide.grid(step);
    return [{ ids, xy, step }, [xy.buffer]];
  },
  // the whole grid in this worker, `batch` spots per model call
  async grid({ side, step = side, batch = 1 }, id) {
    need();
    if (!(Number.isInteger(batch) && batch >= 1)) throw new Error(`grid: batch ${batch} must be a whole number ≥ 1`);
    const xy = slide.grid(step);
    const ids = slide.gridIds(step);
    const n = ids.length;
    if (n === 0) throw new Error(`no tissue spots on the grid (step ${step} px)`);
    const genes = model.genes().length;
    const values = new Float32Array(n * genes);
    const t = performance.now();
    for (let i = 0; i < n; i += batch) {
      const j = Math.min(n, i + batch);
      values.set(model.predict(slide, xy.subarray(2 * i, 2 * j), side), i * genes);
      postMessage({ id, progress: j / n, done: j, total: n, ms: performance.now() - t });
    }
    return [{ ids, xy, values, side, step, ms: performance.now() - t, workers: 1 }, [values.buffer, xy.buffer]];
  },
  // patches for another worker's predictCrops
  async crops({ xy, side }) {
    if (!slide) throw new Error('load an image first');
    const bytes = slide.crops(xy, side);
    // round(side)² RGB bytes per patch, as the wasm rounds it
    const cropSide = Math.round(Math.sqrt(bytes.length / 3 / (xy.length / 2)));
    return [{ bytes, cropSide }, [bytes.buffer]];
  },
  // `batch` patches per model call (all at once by default), values in patch order
  async predictCrops({ bytes, cropSide, batch = Infinity }) {
    if (!model) throw new Error('load a spot model first');
    if (!(batch === Infinity || (Number.isInteger(batch) && batch >= 1))) throw new Error(`predictCrops: batch ${batch} must be a whole number ≥ 1`);
    const px = 3 * cropSide * cropSide, n = bytes.length / px;
    if (!(batch < n)) {
      const values = model.predictCrops(bytes, cropSide);
      return [values, [values.buffer]];
    }
    const parts = [];
    for (let i = 0; i < n; i += batch) parts.push(model.predictCrops(bytes.subarray(i * px, Math.min(n, i + batch) * px), cropSide));
    const values = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    parts.reduce((o, p) => (values.set(p, o), o + p.length), 0);
    return [values, [values.buffer]];
  },
  // benchmarks: the model alone on preprocessed tensors
  async run({ input, n }) {
    if (!model) throw new Error('load a spot model first');
    const values = model.run(input, n);
    return [values, [values.buffer]];
  },
};

onmessage = async (e) => {
  const { id, type, args } = e.data;
  try {
    await ready;
    const r = await handlers[type](args, id);
    const [result, transfer] = Array.isArray(r) ? r : [r, []];
    postMessage({ id, ok: true, result }, transfer);
  } catch (err) {
    postMessage({ id, ok: false, error: String(err?.message ?? err) });
  }
};
