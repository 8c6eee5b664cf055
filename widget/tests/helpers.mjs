// Shared test plumbing: a real imagechat server per test file, Debian's
// Chromium, and small page helpers. Each test file starts its own server on
// a free port with its own database, so files never see each other's data.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const WIDGET_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const SHOTS = join(WIDGET_DIR, 'tests', 'screenshots');

/** @returns {Promise<number>} a port nobody listens on right now */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = /** @type {import('node:net').AddressInfo} */ (s.address());
      s.close(() => resolve(addr.port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Servers still running: killed when this process exits, whatever the reason. @type {Set<import('node:child_process').ChildProcess>} */
const running = new Set();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/**
 * Starts `$IMAGECHAT_BIN serve` on a free port with a fresh SQLite database.
 * `restart()` kills it and starts it again on the same port and database.
 * @param {{adminKey?: string, writeRate?: number, args?: string[]}} [opts]
 */
export async function startServer(opts = {}) {
  const bin = process.env.IMAGECHAT_BIN;
  if (!bin) throw new Error('IMAGECHAT_BIN must name the imagechat server binary');
  const dir = mkdtempSync(join(tmpdir(), 'imagechat-widget-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  // Uploads go beside the database: the default (imagechat-uploads in the working directory) would fill the source tree.
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--database', `sqlite://${join(dir, 'x.db')}`, '--uploads', `file://${join(dir, 'uploads')}`, '--write-rate-per-minute', String(opts.writeRate ?? 0)];
  if (opts.adminKey) args.push('--admin-key', opts.adminKey);
  // Only while iterating by hand: the real runs test the files embedded in the binary.
  // WIDGET_ASSETS_DIR points at another copy (say, an older widget, to see a new test fail on it).
  if (process.env.WIDGET_ASSETS_FROM_DISK === '1') args.push('--assets-dir', process.env.WIDGET_ASSETS_DIR || WIDGET_DIR);
  args.push(...(opts.args || []));
  /** @type {import('node:child_process').ChildProcess | null} */
  let proc = null;
  let logs = '';

  async function start() {
    // The server reads IMAGECHAT_* variables too: none of the caller's may change what is tested.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('IMAGECHAT_')));
    proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...env, RUST_LOG: process.env.RUST_LOG || 'warn' } });
    const child = proc;
    running.add(child);
    child.once('exit', () => running.delete(child));
    proc.stdout?.on('data', (d) => (logs += d));
    proc.stderr?.on('data', (d) => (logs += d));
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}:\n${logs.slice(-3000)}`);
      try {
        const res = await fetch(`${url}/healthz`);
        if (res.status === 200) return;
      } catch (_) {
        /* not up yet */
      }
      await sleep(100);
    }
    throw new Error(`server did not become healthy:\n${logs.slice(-3000)}`);
  }

  async function stop() {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  }

  await start();
  return {
    url,
    port,
    logs: () => logs,
    stop,
    async restart() {
      await stop();
      await start();
    },
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A second origin for test pages (the site that embeds the widget), so every
 * test also exercises the cross-origin path: CORS, the script's own origin as
 * the default server, one session per site.
 */
export async function startSite() {
  /** @type {Map<string, {body: string, headers: Record<string, string>}>} */
  const pages = new Map();
  const port = await freePort();
  const server = createHttpServer((req, res) => {
    const path = (req.url || '').split('?')[0];
    const page = pages.get(path);
    const type = path.endsWith('.js') ? 'text/javascript' : path.endsWith('.css') ? 'text/css' : 'text/html; charset=utf-8';
    res.writeHead(page ? 200 : 404, { 'content-type': type, ...(page ? page.headers : {}) });
    res.end(page ? page.body : 'not found');
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', () => r(null)));
  const url = `http://localhost:${port}`;
  return {
    url,
    /**
     * Serves `body` at `path` (HTML, or by its extension .js / .css), with extra response headers such as a CSP.
     * @param {string} path @param {string} body @param {Record<string, string>} [headers]
     */
    add(path, body, headers = {}) {
      pages.set(path, { body, headers });
      return url + path;
    },
    close: () => new Promise((r) => server.close(() => r(null))),
  };
}

/**
 * Opens a page of the test site that attaches the widget to one image with
 * the given urlId, so each test has its own image.
 * @param {import('playwright-core').BrowserContext} context
 * @param {{url: string, add: (path: string, html: string) => string}} site
 * @param {string} server imagechat server URL
 * @param {string} urlId
 * @param {{width?: number, options?: Record<string, unknown>, wait?: boolean}} [o]
 */
export async function openImage(context, site, server, urlId, o = {}) {
  const page = await context.newPage();
  const href = site.add(
    `/img/${encodeURIComponent(urlId)}/${o.width || 800}`,
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>imagechat test</title></head>
<body style="margin:0;padding:24px;font-family:sans-serif"><main><h1 style="font-size:18px">Test image</h1>
<img id="img" src="${server}/static/demo.svg" alt="Travel app mockup" style="display:block;width:${o.width || 800}px;max-width:100%;height:auto">
</main><script src="${server}/imagechat.js"></script>
<script>window.__counts = []; window.chat = ImageChat.attach(document.getElementById('img'), Object.assign({ tenantId: 'demo', urlId: ${JSON.stringify(urlId)}, locale: 'en', onCountChange: (n) => window.__counts.push(n) }, ${JSON.stringify(o.options || {})}));</script>
</body></html>`,
  );
  await page.goto(href);
  if (o.wait !== false) await live(page);
  return page;
}

/** Waits until the widget says it is live. @param {import('playwright-core').Page} page */
export async function live(page, timeout = 10000) {
  await page.locator('[data-imagechat-status][data-state=live]').first().waitFor({ timeout });
}

/**
 * Clicks the image at (x%, y%), types text and posts it.
 * @param {import('playwright-core').Page} page @param {number} x @param {number} y @param {string} text
 */
export async function createAt(page, x, y, text) {
  const layer = page.locator('[data-imagechat-layer]').first();
  const box = await layer.boundingBox();
  if (!box) throw new Error('no layer');
  await page.mouse.click(box.x + (box.width * x) / 100, box.y + (box.height * y) / 100);
  const composer = page.locator('[data-imagechat-composer]');
  await composer.locator('textarea').fill(text);
  await composer.locator('[type=submit]').click();
}

/** @param {import('playwright-core').Page} page */
export function markers(page) {
  return page.locator('[data-imagechat-marker]');
}

/** Polls fn until it returns a truthy value. @template T @param {() => Promise<T>} fn */
export async function until(fn, timeout = 10000, every = 50) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeout} ms`);
    await sleep(every);
  }
}

export function shotsDir() {
  mkdirSync(SHOTS, { recursive: true });
  return SHOTS;
}

export const median = (/** @type {number[]} */ xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export { sleep };

/**
 * Creates a tenant through the operator API (the server needs `adminKey`).
 * @param {{url: string}} srv @param {string} adminKey @param {string} tenantId
 * @param {{anonymous?: 'none' | 'read' | 'write', secret?: string}} [o]
 */
export async function createTenant(srv, adminKey, tenantId, o = {}) {
  const res = await fetch(`${srv.url}/api/v1/admin/tenants`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${adminKey}` },
    body: JSON.stringify({ tenantId, anonymous: o.anonymous || 'none', secret: o.secret }),
  });
  if (res.status !== 201) throw new Error(`tenant ${tenantId}: ${res.status} ${await res.text()}`);
  return res.json();
}

/**
 * FastComments-style secure SSO for one user, signed with the tenant's secret (protocol §3).
 * @param {string} secret @param {Record<string, unknown>} user
 */
export async function ssoFor(secret, user) {
  const { createHmac } = await import('node:crypto');
  const userDataJSONBase64 = Buffer.from(JSON.stringify(user)).toString('base64');
  const timestamp = Date.now();
  const verificationHash = createHmac('sha256', secret).update(String(timestamp) + userDataJSONBase64).digest('hex');
  return { userDataJSONBase64, verificationHash, timestamp };
}

/**
 * A REST client of one session, as a tenant's backend or a test would use it.
 * @param {{url: string}} srv @param {string} tenantId @param {unknown} [sso] none: an anonymous session
 */
export async function apiAs(srv, tenantId, sso) {
  const res = await fetch(`${srv.url}/api/v1/sessions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tenantId, sso: sso || null }) });
  if (res.status !== 200) throw new Error(`session: ${res.status} ${await res.text()}`);
  const session = await res.json();
  /** @param {string} method @param {string} path @param {unknown} [body] @returns {Promise<{status: number, data: any}>} */
  const call = async (method, path, body) => {
    const r = await fetch(srv.url + path, {
      method,
      headers: { Authorization: `Bearer ${session.token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = text;
    }
    return { status: r.status, data };
  };
  return { session, call };
}

/** The stable hook of the element with focus, looking into shadow roots. @param {import('playwright-core').Page} page */
export function focusedHook(page) {
  return page.evaluate(() => {
    let el = document.activeElement;
    while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
    if (!el) return '';
    const hook = [...el.attributes].map((a) => a.name).find((n) => n.startsWith('data-imagechat-'));
    return `${el.tagName.toLowerCase()}${hook ? `[${hook}]` : ''}`;
  });
}
