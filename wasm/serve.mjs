// A tiny static file server bound to 127.0.0.1: `node wasm/serve.mjs ROOT [PORT]`.
// Also imported by the browser test and benchmark.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json',
  '.onnx': 'application/octet-stream', '.jpg': 'image/jpeg', '.png': 'image/png', '.tif': 'image/tiff',
};

/** Serves `root` on 127.0.0.1:`port` (0 = any free port); resolves to the server. */
export function serve(root, port = 0) {
  root = path.resolve(root);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    let file = path.join(root, decodeURIComponent(url.pathname));
    if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
    if (file.endsWith(path.sep)) file = path.join(file, 'index.html');
    fs.readFile(file, (err, data) => {
      if (err) { res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'); return; }
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
      res.end(data);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [root = 'out/web', port = '8080'] = process.argv.slice(2);
  if (!fs.existsSync(path.join(root, 'index.html'))) {
    console.error(`${root}/index.html not found: run bash wasm/build.sh first`);
    process.exit(1);
  }
  const s = await serve(root, Number(port));
  console.log(`serving ${root} on http://127.0.0.1:${s.address().port}/ (Ctrl-C to stop)`);
}
