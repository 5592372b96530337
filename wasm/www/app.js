// The page: file picker / drag and drop, canvas, heatmap overlay, top-gene table. All model work
// happens in Web Workers (worker.js): the main one holds the image and model; the whole grid is
// split over a pool of model workers (pool.js). Results are also exposed on `window.bioedge` for tests.
import { BATCH, Pool, WorkerClient, defaultWorkers } from './pool.js';

const $ = (id) => document.getElementById(id);
const PREVIEW_SIDE = 1600;

const state = { sideOverride: null, model: null, image: null, grid: null, selected: null, gene: 0, busy: false, error: null, loaded: 0 };
window.bioedge = state;

const main = new WorkerClient((e) => showError(e.message));
const call = (type, args, transfer, onProgress) => main.call(type, args, transfer, onProgress);
const pool = new Pool();
// grid workers: `?workers=N`, else one per core; editable on the page
$('workers').value = Number(new URLSearchParams(location.search).get('workers')) || defaultWorkers();

function showError(msg) {
  state.error = msg;
  $('error').textContent = msg;
  $('error').hidden = false;
}
function clearError() { state.error = null; $('error').hidden = true; }
function status(msg) { $('status').textContent = msg; }
function progress(v) { const p = $('progress'); p.hidden = v === null; if (v !== null) p.value = v; }

async function busy(label, f) {
  state.busy = true;
  clearError();
  status(label);
  try { return await f(); } catch (e) { showError(e.message); status('Error.'); return null; }
  finally { state.busy = false; progress(null); refreshButtons(); }
}

function refreshButtons() {
  $('predict-grid').disabled = !(state.model && state.image) || state.busy;
  $('gene').disabled = !state.model;
}

async function loadModel(bytes, name) {
  const copy = bytes.slice(0); // for the grid workers
  const r = await busy(`Loading model ${name}…`, () => call('model', { bytes, name }, [bytes]));
  if (!r) return;
  pool.setModel(copy, name);
  // the grid workers load it in the background
  try { pool.resize(workers()).catch(() => {}); } catch { /* a bad workers field is reported at predict time */ }
  state.model = { ...r, name };
  state.grid = null; state.selected = null;
  // the card's exact side is used until the field is edited
  state.sideOverride = null;
  if (r.side) $('side').value = r.side.toFixed(1);
  const sel = $('gene');
  sel.replaceChildren(...r.genes.map((g, i) => new Option(g, i)));
  state.gene = 0;
  const c = r.card;
  $('model-info').textContent = `Model ${name}: ${c.family}, ${r.genes.length} genes, input ${r.size}×${r.size}, ` +
    `patch side ${r.side ? r.side.toFixed(1) + ' px' : 'not in card'}${r.span !== 1 ? ` (${r.span} spot spacings)` : ''}` +
    `${c.description ? ' — ' + c.description : ''}`;
  status('Model loaded.' + (state.image ? ' Click the image or predict the whole grid.' : ' Now open an image.'));
  state.loaded++;
  refreshButtons();
  draw();
}

async function loadImage(bytes, name) {
  const r = await busy(`Decoding ${name}…`, () => call('image', { bytes, name, maxSide: PREVIEW_SIDE }, [bytes]));
  if (!r) return;
  state.image = { ...r, name };
  state.grid = null; state.selected = null;
  for (const id of ['image-canvas', 'overlay']) { $(id).width = r.pw; $(id).height = r.ph; }
  $('image-canvas').getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(r.rgba.buffer), r.pw, r.ph), 0, 0);
  delete state.image.rgba;
  status(`Image ${name}: ${r.width}×${r.height} px.` + (state.model ? ' Click the image or predict the whole grid.' : ' Now open a spot model.'));
  state.loaded++;
  refreshButtons();
  draw();
}

function side() {
  if (state.sideOverride === null && state.model?.side) return state.model.side;
  const s = Number($('side').value);
  if (!(s >= 1)) throw new Error(`patch side "${$('side').value}" must be a number ≥ 1`);
  return s;
}

function workers() {
  const n = Number($('workers').value);
  if (!(Number.isInteger(n) && n >= 1 && n <= 64)) throw new Error(`workers "${$('workers').value}" must be a whole number from 1 to 64`);
  return n;
}

// one worker: the main worker alone; more: the pool, with patches cut by the main worker
async function predictGrid() {
  const r = await busy('Predicting the grid…', async () => {
    // the grid steps by the spot spacing: the patch side over the card's patch span
    const s = side(), st = s / state.model.span, n = workers();
    const label = `${n} worker${n > 1 ? 's' : ''}`;
    const onProgress = (m) => {
      progress(m.progress);
      status(`Predicting the grid on ${label}: ${m.done}/${m.total} spots, ${(m.ms / m.done).toFixed(0)} ms per spot`);
    };
    if (n === 1) {
      progress(0);
      return call('grid', { side: s, step: st, batch: BATCH }, [], onProgress);
    }
    const spots = await call('spots', { side: s, step: st });
    status(`Loading the model into ${label}…`);
    await pool.resize(n);
    progress(0);
    return pool.grid(main, spots, s, state.model.genes.length, n, onProgress);
  });
  if (!r) return;
  state.grid = r;
  status(`Grid: ${r.ids.length} tissue spots in ${(r.ms / 1000).toFixed(1)} s on ${r.workers} worker${r.workers > 1 ? 's' : ''} ` +
    `(${(r.ms / r.ids.length).toFixed(1)} ms per spot).`);
  draw();
}

async function predictSpot(x, y) {
  const r = await busy(`Predicting spot at (${x.toFixed(0)}, ${y.toFixed(0)})…`, () => call('spot', { x, y, side: side() }));
  if (!r) return;
  state.selected = r;
  status(`Spot at (${x.toFixed(0)}, ${y.toFixed(0)}) in ${r.ms.toFixed(0)} ms.`);
  draw();
}

// viridis, 5 stops (as infer::slide::viridis)
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(t) {
  t = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * 4;
  const i = Math.min(3, Math.floor(t)), f = t - i;
  return STOPS[i].map((a, c) => Math.round(a * (1 - f) + STOPS[i + 1][c] * f));
}

function draw() {
  const cv = $('overlay'), ctx = cv.getContext('2d');
  ctx.clearRect(0, 0, cv.width, cv.height);
  const img = state.image;
  if (!img) return;
  const f = img.factor;
  const g = state.grid, k = state.model?.genes.length;
  if (g && k && g.values.length === g.ids.length * k) {
    const col = Array.from({ length: g.ids.length }, (_, i) => g.values[i * k + state.gene]);
    const lo = Math.min(...col), hi = Math.max(...col), span = hi > lo ? hi - lo : 1;
    const s = g.step / f;
    ctx.globalAlpha = 0.6;
    col.forEach((v, i) => {
      const [r, gg, b] = viridis((v - lo) / span);
      ctx.fillStyle = `rgb(${r},${gg},${b})`;
      ctx.fillRect(g.xy[2 * i] / f - s / 2, g.xy[2 * i + 1] / f - s / 2, s, s);
    });
    ctx.globalAlpha = 1;
    $('legend').hidden = false;
    $('legend-lo').textContent = lo.toFixed(3);
    $('legend-hi').textContent = `${hi.toFixed(3)} (${state.model.genes[state.gene]})`;
  } else {
    $('legend').hidden = true;
  }
  const sel = state.selected;
  const body = $('top-genes').tBodies[0];
  if (sel && state.model) {
    const s = sel.side / f;
    ctx.lineWidth = 3; ctx.strokeStyle = '#ff2d55';
    ctx.strokeRect(sel.x / f - s / 2, sel.y / f - s / 2, s, s);
    const order = [...sel.values.keys()].sort((a, b) => sel.values[b] - sel.values[a]).slice(0, 15);
    body.replaceChildren(...order.map((gi, r) => {
      const tr = document.createElement('tr');
      for (const t of [r + 1, state.model.genes[gi], sel.values[gi].toFixed(4)]) tr.insertCell().textContent = t;
      return tr;
    }));
    $('spot-info').textContent = `Spot at (${sel.x.toFixed(0)}, ${sel.y.toFixed(0)}) px, patch ${sel.side.toFixed(1)} px: top genes`;
  } else {
    body.replaceChildren();
  }
}

async function readFile(file) { return file.arrayBuffer(); }
function isOnnx(file) { return /\.onnx$/i.test(file.name); }

$('model-file').addEventListener('change', async (e) => {
  const f = e.target.files[0];
  if (f) await loadModel(await readFile(f), f.name);
});
$('image-file').addEventListener('change', async (e) => {
  const f = e.target.files[0];
  if (f) await loadImage(await readFile(f), f.name);
});
$('example').addEventListener('click', () => fetchInto('example.jpg', loadImage));
$('predict-grid').addEventListener('click', predictGrid);
$('side').addEventListener('change', (e) => { state.sideOverride = Number(e.target.value); });
$('gene').addEventListener('change', (e) => { state.gene = Number(e.target.value); draw(); });
$('overlay').addEventListener('click', (e) => {
  if (!state.image || state.busy) return;
  const cv = e.currentTarget, rect = cv.getBoundingClientRect();
  const x = (e.clientX - rect.left) * cv.width / rect.width * state.image.factor;
  const y = (e.clientY - rect.top) * cv.height / rect.height * state.image.factor;
  if (!state.model) { showError('load a spot model first'); return; }
  predictSpot(x, y);
});
// drag and drop anywhere: .onnx files are models, everything else an image
document.addEventListener('dragover', (e) => { e.preventDefault(); document.body.classList.add('dragging'); });
document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
document.addEventListener('drop', async (e) => {
  e.preventDefault();
  document.body.classList.remove('dragging');
  for (const f of e.dataTransfer.files) {
    if (isOnnx(f)) await loadModel(await readFile(f), f.name);
    else await loadImage(await readFile(f), f.name);
  }
});

async function fetchInto(url, load) {
  const r = await fetch(url).catch(() => null);
  if (!r?.ok) return false;
  await load(await r.arrayBuffer(), url);
  return true;
}

// the model and example image copied in by wasm/build.sh; `?auto=0` starts empty
if (new URLSearchParams(location.search).get('auto') !== '0') {
  (async () => {
    if (!(await fetchInto('model.onnx', loadModel))) status('No bundled model: open a spot model (.onnx).');
    await fetchInto('example.jpg', loadImage);
  })();
}
refreshButtons();
