// Shared by the browser test and benchmark: the static server, headless Chromium through
// playwright-core (installed by scripts/setup.sh into $BIOEDGE_CACHE/node), a local-only guard.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
export { serve } from '../../wasm/serve.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CACHE = process.env.BIOEDGE_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'bioedge');
export const NODE_DIR = path.join(CACHE, 'node');
export const CHROMIUM = process.env.BIOEDGE_CHROMIUM ?? '/usr/bin/chromium';

export function die(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

/** Parses `--key value` pairs. */
export function args(defaults = {}) {
  const out = { ...defaults };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 2) {
    if (!a[i].startsWith('--') || a[i + 1] === undefined) die(`bad argument ${a[i]}`);
    out[a[i].slice(2)] = a[i + 1];
  }
  return out;
}

/** Headless Chromium with a fresh profile; every request must go to `origin`. */
export async function browser(origin) {
  if (!fs.existsSync(CHROMIUM)) die(`${CHROMIUM} not found: run scripts/setup.sh (apt-get install chromium)`);
  let chromium;
  try {
    ({ chromium } = createRequire(path.join(NODE_DIR, 'index.js'))('playwright-core'));
  } catch (e) {
    die(`playwright-core not found under ${NODE_DIR}: run scripts/setup.sh (${e.message})`);
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'bioedge-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const foreign = [];
  context.on('request', (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) foreign.push(r.url()); });
  const close = async () => {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { context, foreign, close };
}
