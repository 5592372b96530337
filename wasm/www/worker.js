// Heavy work off the main thread: decoding, preprocessing and the model (tract in WebAssembly).
import init, { SpotModel, Slide } from './pkg/bioedge_wasm.js';

const ready = init();
let model = null;
let slide = null;
const BATCH = 4;

function need() {
  if (!model) throw new Error('load a spot model first');
  if (!slide) throw new Error('load an image first');
}

const handlers = {
  async model({ bytes, name }) {
    const m = new SpotModel(new Uint8Array(bytes), name);
    model?.free();
    model = m;
    return { card: JSON.parse(m.cardJson()), genes: m.genes(), side: m.patchSide() ?? null, size: m.inputSize() };
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
  async grid({ side }, id) {
    need();
    const xy = slide.grid(side);
    const ids = slide.gridIds(side);
    const n = ids.length;
    if (n === 0) throw new Error(`no tissue spots on the grid (patch side ${side} px)`);
    const genes = model.genes().length;
    const values = new Float32Array(n * genes);
    const t = performance.now();
    for (let i = 0; i < n; i += BATCH) {
      const j = Math.min(n, i + BATCH);
      values.set(model.predict(slide, xy.subarray(2 * i, 2 * j), side), i * genes);
      postMessage({ id, progress: j / n, done: j, total: n, ms: performance.now() - t });
    }
    return [{ ids, xy, values, side, ms: performance.now() - t }, [values.buffer, xy.buffer]];
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
