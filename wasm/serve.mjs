// A tiny static file server bound to 127.0.0.1: `node wasm/serve.mjs ROOT [PORT] [--isolate]`.
// --isolate sends Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy:
// require-corp, making the page cross-origin isolated (SharedArrayBuffer, so onnxruntime-web's
// threads). Also imported by the browser test and benchmark.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json',
  '.onnx': 'application/octet-stream', '.jpg': 'image/jpeg', '.png': 'image/png', '.tif': 'image/tiff',
};

/** Headers that make a page cross-origin isolated (all our files are same-origin). */
export const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

/** Serves `root` on 127.0.0.1:`port` (0 = any free port); resolves to the server. `isolate`: send ISOLATION. */
export function serve(root, port = 0, { isolate = false } = {}) {
  root = path.resolve(root);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    let file = path.join(root, decodeURIComponent(url.pathname));
    if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
    if (file.endsWith(path.sep)) file = path.join(file, 'index.html');
    fs.readFile(file, (err, data) => {
      if (err) { res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'); return; }
      const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store', ...(isolate ? ISOLATION : {}) });
      res.end(data);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const isolate = argv.includes('--isolate');
  const bad = argv.find((a) => a.startsWith('-') && a !== '--isolate');
  const [root = 'out/web', port = '8080'] = argv.filter((a) => !a.startsWith('-'));
  if (bad || !/^\d+$/.test(port)) {
    console.error('usage: node wasm/serve.mjs ROOT [PORT] [--isolate]');
    process.exit(2);
  }
  if (!fs.existsSync(path.join(root, 'index.html'))) {
    console.error(`${root}/index.html not found: run bash wasm/build.sh first`);
    process.exit(1);
  }
  const s = await serve(root, Number(port), { isolate });
  console.log(`serving ${root} on http://127.0.0.1:${s.address().port}/${isolate ? ' (cross-origin isolated)' : ''} (Ctrl-C to stop)`);
}
