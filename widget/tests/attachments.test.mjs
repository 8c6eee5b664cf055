// Images in comments (protocol §14): pasting, dropping and picking them in
// every composer, upload progress, what is refused before and after the
// upload, at most four, editing them away, offline, thumbnails another
// viewer sees live, the full-size viewer by keyboard, and the screenshot
// pages /s/new and /s/{id}. The images are made here, byte by byte (PNG) or
// on a canvas (JPEG): no binary fixtures.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import { launch, markers, openImage, shotsDir, sleep, startServer, startSite, until, focusedHook } from './helpers.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
/** @type {Awaited<ReturnType<typeof startSite>>} */
let site;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  srv = await startServer();
  site = await startSite();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await site?.close();
  await srv?.close();
});

// ---------------------------------------------------------------- fixtures

const CRC = new Int32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
/** @param {Uint8Array} b */
const crc32 = (b) => {
  let c = -1;
  for (const x of b) c = CRC[(c ^ x) & 255] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
};
/** @param {string} type @param {Buffer} data */
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/**
 * A real RGB PNG of w × h: a gradient with a hue per `seed`, or noise (which
 * does not compress, to make a file big enough to watch it upload).
 * @param {number} w @param {number} h @param {{seed?: number, noise?: boolean}} [o]
 */
function png(w, h, o = {}) {
  const seed = o.seed || 0;
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * (w * 3 + 1) + 1 + x * 3;
      if (o.noise) raw.set([Math.random() * 256, Math.random() * 256, Math.random() * 256], i);
      else raw.set([(x * 255) / w, (y * 255) / h, (seed * 70 + 90) % 256], i);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bits per sample
  ihdr[9] = 2; // RGB
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** A file for `setInputFiles`. @param {string} name @param {string} mimeType @param {Buffer} buffer */
const file = (name, mimeType, buffer) => ({ name, mimeType, buffer });

// ---------------------------------------------------------------- helpers

/** @typedef {import('playwright-core').Page} Page */

const focused = focusedHook;

/** Opens the new-chat composer at (x%, y%) and waits for its attach control. @param {Page} page */
async function compose(page, x = 30, y = 30) {
  const box = /** @type {{x: number, y: number, width: number, height: number}} */ (await page.locator('[data-imagechat-layer]').boundingBox());
  await page.mouse.click(box.x + (box.width * x) / 100, box.y + (box.height * y) / 100);
  const form = page.locator('[data-imagechat-composer]');
  await form.locator('input[type=file]').waitFor({ state: 'attached' });
  return form;
}

/**
 * Pastes files into a composer's textarea, as the browser does for a copied
 * screenshot: a ClipboardEvent whose DataTransfer holds File objects.
 * @param {import('playwright-core').Locator} textarea @param {{name: string, mimeType: string, buffer: Buffer}[]} files
 */
function paste(textarea, files) {
  return textarea.evaluate(
    (ta, fs) => {
      const dt = new DataTransfer();
      for (const f of fs) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.mimeType }));
      ta.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, composed: true, cancelable: true }));
    },
    files.map((f) => ({ name: f.name, mimeType: f.mimeType, b64: f.buffer.toString('base64') })),
  );
}

/**
 * Drops files on an element: dragenter, dragover and drop with a DataTransfer.
 * @param {import('playwright-core').Locator} target @param {{name: string, mimeType: string, buffer: Buffer}[]} files
 * @param {{jpeg?: boolean}} [o] jpeg: also a JPEG drawn on a canvas by the page
 */
function drop(target, files, o = {}) {
  return target.evaluate(
    async (el, { fs, jpeg }) => {
      const dt = new DataTransfer();
      for (const f of fs) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.mimeType }));
      if (jpeg) {
        const c = document.createElement('canvas');
        c.width = 240;
        c.height = 160;
        const g = /** @type {CanvasRenderingContext2D} */ (c.getContext('2d'));
        g.fillStyle = '#0ea5e9';
        g.fillRect(0, 0, 240, 160);
        g.fillStyle = '#f97316';
        g.beginPath();
        g.arc(120, 80, 50, 0, 7);
        g.fill();
        const blob = /** @type {Blob} */ (await new Promise((r) => c.toBlob(r, 'image/jpeg', 0.9)));
        dt.items.add(new File([blob], 'photo.jpg', { type: 'image/jpeg' }));
      }
      for (const type of ['dragenter', 'dragover', 'drop']) el.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, composed: true, cancelable: true }));
    },
    { fs: files.map((f) => ({ name: f.name, mimeType: f.mimeType, b64: f.buffer.toString('base64') })), jpeg: !!o.jpeg },
  );
}

/** Waits until a composer's tray holds `n` stored images and none still uploading. @param {import('playwright-core').Locator} form @param {number} n */
async function stored(form, n) {
  await until(async () => (await form.locator('[data-imagechat-attachment][data-state=done]').count()) === n && !(await form.locator('[data-imagechat-attachment][data-state=uploading]').count()), 15000);
}

/**
 * File choosers a page opens. Listening from the start: Playwright turns on
 * its interception of file choosers when the first listener comes, and a
 * chooser opened before that has happened is lost.
 * @param {Page} page
 */
function choosers(page) {
  /** @type {import('playwright-core').FileChooser[]} */
  const seen = [];
  page.on('filechooser', (c) => seen.push(c));
  return async () => {
    await until(async () => seen.length > 0, 5000);
    return /** @type {import('playwright-core').FileChooser} */ (seen.shift());
  };
}

/** Upload requests a page sends. @param {Page} page */
function uploadsOf(page) {
  /** @type {import('playwright-core').Request[]} */
  const seen = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().includes('/api/v1/uploads')) seen.push(r);
  });
  return seen;
}

/** Posts the open new-chat composer and waits for its chat to be stored. @param {Page} page @param {string} text */
async function post(page, text) {
  const form = page.locator('[data-imagechat-composer]');
  await form.locator('textarea').fill(text);
  const created = page.waitForResponse((r) => r.request().method() === 'POST' && /\/api\/v1\/chats$/.test(r.url()));
  await form.locator('[type=submit]').click();
  const res = await created;
  assert.equal(res.status(), 201);
  return { body: res.request().postDataJSON(), chat: (await res.json()).chat };
}

/** Runs axe; returns its serious and critical findings. @param {Page} page */
async function axe(page) {
  // Evaluated, not added as a script tag: the screenshot pages' CSP allows no inline script.
  await page.evaluate(AXE);
  const result = await page.evaluate(() => /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((/** @type {{impact: string}} */ v) => v.impact === 'serious' || v.impact === 'critical')
    .map((/** @type {{id: string, help: string, nodes: {target: unknown}[]}} */ v) => `${v.id}: ${v.help} (${JSON.stringify(v.nodes.map((n) => n.target))})`);
}

// ---------------------------------------------------------------- widget

test('a pasted screenshot uploads with progress, posts with its chat, shows live at another viewer and opens full size by keyboard', async () => {
  const a = await browser.newContext({ viewport: { width: 1100, height: 800 }, reducedMotion: 'reduce' });
  const b = await browser.newContext({ viewport: { width: 1100, height: 800 }, reducedMotion: 'reduce' });
  const pa = await openImage(a, site, srv.url, 'att-paste');
  const pb = await openImage(b, site, srv.url, 'att-paste');
  const sent = uploadsOf(pa);
  const form = await compose(pa);

  // A slow uplink, so the progress bar has something to show.
  const cdp = await a.newCDPSession(pa);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 256 * 1024 });
  const big = png(420, 300, { noise: true }); // about 380 KB: a second and a half at 256 KB/s
  await paste(form.locator('textarea'), [file('image.png', 'image/png', big)]);
  const item = form.locator('[data-imagechat-attachment]');
  await item.waitFor();
  /** @type {number[]} */
  const seen = [];
  await until(async () => {
    const v = await item.locator('progress').getAttribute('value').catch(() => null);
    if (v != null) seen.push(Number(v));
    return (await item.getAttribute('data-state')) === 'done';
  }, 15000, 40);
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  assert.ok(seen.some((v) => v > 0 && v < 100), `progress was shown on the way: ${seen.join(' ')}`);
  assert.equal(await item.locator('progress').count(), 0, 'no progress bar once stored');
  assert.equal(sent.length, 1);
  const headers = await sent[0].allHeaders();
  assert.equal(headers['content-type'], 'image/png');
  assert.match(headers.authorization || '', /^Bearer /);
  const id = /** @type {string} */ (await item.getAttribute('data-imagechat-attachment'));
  assert.ok(id.length >= 16, `an upload id: ${id}`);
  assert.equal(await item.locator('button').getAttribute('aria-label'), 'Remove image.png');
  // What the tray shows now comes from the server.
  await until(() => item.locator('img').evaluate((/** @type {HTMLImageElement} */ i) => i.complete && i.naturalWidth === 420 && !i.src.startsWith('blob:')));

  // A second, smaller one: the tray shows both before posting.
  await paste(form.locator('textarea'), [file('image.png', 'image/png', png(160, 240, { seed: 2 }))]);
  await stored(form, 2);
  await form.locator('textarea').fill('The header overlaps the search box');
  await pa.screenshot({ path: join(shotsDir(), 'attachments-composer.png') });

  const { body, chat } = await post(pa, 'The header overlaps the search box');
  assert.equal(body.attachments.length, 2);
  assert.equal(body.attachments[0], id);
  assert.equal(chat.comments[0].attachments.length, 2);
  assert.deepEqual(Object.keys(chat.comments[0].attachments[0]).sort(), ['contentType', 'height', 'id', 'url', 'width']);

  // B sees the chat arrive, and the thumbnails in its thread.
  const mb = pb.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`);
  await mb.waitFor({ timeout: 3000 });
  await mb.click();
  const thread = pb.locator('[data-imagechat-thread]');
  const thumbs = thread.locator('[data-imagechat-attachment]');
  await until(async () => (await thumbs.count()) === 2);
  const img = thumbs.first().locator('img');
  assert.equal(await img.getAttribute('alt'), 'Image 1 of 2, open full size');
  // Sized before it loads (no layout shift): 420 × 300 fits 96 × 72 as 96 × 69.
  assert.deepEqual([await img.getAttribute('width'), await img.getAttribute('height')], ['96', '69']);
  await until(() => img.evaluate((/** @type {HTMLImageElement} */ i) => i.complete && i.naturalWidth === 420));
  await sleep(200);
  await pb.screenshot({ path: join(shotsDir(), 'attachments-thread.png') });

  // Keyboard: from the reply box, Shift+Tab goes back to the last thumbnail, then the first.
  assert.equal(await focused(pb), 'textarea');
  await pb.keyboard.press('Shift+Tab');
  await pb.keyboard.press('Shift+Tab');
  assert.equal(await focused(pb), 'button[data-imagechat-attachment]');
  await pb.keyboard.press('Enter');
  const viewer = pb.locator('[data-imagechat-viewer]');
  await viewer.waitFor();
  assert.equal(await viewer.evaluate((d) => /** @type {HTMLDialogElement} */ (d).open && d.matches(':modal')), true, 'a modal dialog');
  assert.equal(await viewer.locator('h2').textContent(), 'Image 1 of 2');
  assert.equal(await viewer.getAttribute('aria-labelledby'), await viewer.locator('h2').getAttribute('id'));
  const full = viewer.locator('img');
  await until(() => full.evaluate((/** @type {HTMLImageElement} */ i) => i.complete && i.naturalWidth === 420));
  const fb = /** @type {{width: number, height: number}} */ (await full.boundingBox());
  assert.ok(Math.abs(fb.width - 420) < 2 && Math.abs(fb.height - 300) < 2, `shown at its own size: ${JSON.stringify(fb)}`);
  assert.ok((await focused(pb)).startsWith('button'), 'focus moved into the viewer');
  assert.ok(await viewer.evaluate((d) => d.contains(/** @type {ShadowRoot} */ (d.getRootNode()).activeElement)));
  await sleep(200);
  await pb.screenshot({ path: join(shotsDir(), 'attachments-viewer.png') });
  assert.deepEqual(await axe(pb), [], 'axe with the viewer open');
  // Arrow keys go to the other image; Escape closes and gives focus back to the thumbnail.
  await pb.keyboard.press('ArrowRight');
  assert.equal(await viewer.locator('h2').textContent(), 'Image 2 of 2');
  await until(() => full.evaluate((/** @type {HTMLImageElement} */ i) => i.complete && i.naturalWidth === 160));
  await pb.keyboard.press('Escape');
  await viewer.waitFor({ state: 'detached' });
  assert.equal(await focused(pb), 'button[data-imagechat-attachment]');
  assert.equal(await thread.count(), 1, 'Escape closed the viewer, not the thread');
  await pb.keyboard.press('Escape');
  await thread.waitFor({ state: 'detached' });

  // A reader of the same image who never opened a thumbnail never loaded the viewer.
  await a.close();
  await b.close();
});

test('drop and pick in a reply; a JPEG too; the attach button works from the keyboard; replies carry their images live', async () => {
  const a = await browser.newContext({ reducedMotion: 'reduce' });
  const b = await browser.newContext({ reducedMotion: 'reduce' });
  const pa = await openImage(a, site, srv.url, 'att-reply');
  const pb = await openImage(b, site, srv.url, 'att-reply');
  const chooser = choosers(pa);
  await compose(pa);
  const { chat } = await post(pa, 'Plain first comment');
  await pb.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`).waitFor();
  await pb.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`).click();
  await pa.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`).click();
  const reply = pa.locator('[data-imagechat-thread] [data-imagechat-composer]');
  await reply.locator('input[type=file]').waitFor({ state: 'attached' });
  assert.equal(await reply.locator('input[type=file]').getAttribute('accept'), 'image/png,image/jpeg,image/webp,image/gif');

  // Drop: a PNG from the test and a JPEG drawn on a canvas by the page.
  await drop(reply, [file('diagram.png', 'image/png', png(200, 120, { seed: 3 }))], { jpeg: true });
  await stored(reply, 2);
  const types = await reply.locator('[data-imagechat-attachment] img').evaluateAll((imgs) => imgs.map((i) => /** @type {HTMLImageElement} */ (i).alt));
  assert.deepEqual(types, ['diagram.png', 'photo.jpg']);

  // Pick, by keyboard: Tab from the reply text goes through the images' remove buttons to the file control, named by its label; Space opens the chooser.
  await reply.locator('textarea').focus();
  for (const want of ['button', 'button', 'input']) {
    await pa.keyboard.press('Tab');
    assert.equal(await focused(pa), want);
  }
  assert.equal(await reply.locator('input[type=file]').evaluate((i) => /** @type {HTMLInputElement} */ (i).labels?.[0]?.textContent), 'Attach image');
  await pa.keyboard.press('Space');
  await (await chooser()).setFiles(file('third.png', 'image/png', png(90, 90, { seed: 4 })));
  await stored(reply, 3);
  // Remove the middle one by keyboard: focus stays in the tray.
  await reply.locator('[data-imagechat-attachment]').nth(1).locator('button').focus();
  await pa.keyboard.press('Enter');
  await stored(reply, 2);
  assert.equal(await focused(pa), 'button');

  await reply.locator('textarea').fill('Two pictures of it');
  const sent = pa.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/comments'));
  await reply.locator('[type=submit]').click();
  const res = await sent;
  assert.equal(res.status(), 201);
  assert.equal(res.request().postDataJSON().attachments.length, 2);
  // The reply box is empty again, images included.
  await until(async () => (await reply.locator('[data-imagechat-attachment]').count()) === 0);
  assert.equal(await reply.locator('textarea').inputValue(), '');
  // B sees the reply with its thumbnails (comment-added carries them).
  const second = pb.locator('[data-imagechat-thread] [data-imagechat-comment]').nth(1);
  await second.waitFor({ timeout: 3000 });
  await until(async () => (await second.locator('[data-imagechat-attachment] img').count()) === 2);
  // diagram.png and third.png: the JPEG was the one removed.
  for (const [i, w] of [[0, 200], [1, 90]]) await until(() => second.locator('[data-imagechat-attachment] img').nth(i).evaluate((/** @type {HTMLImageElement} */ el, want) => el.complete && el.naturalWidth === want, w));
  await a.close();
  await b.close();
});

test('refused before uploading: a type that is not an image, a file over 10 MiB, a fifth image; in English and Japanese', async () => {
  const ctx = await browser.newContext();
  const page = await openImage(ctx, site, srv.url, 'att-refused');
  const sent = uploadsOf(page);
  const form = await compose(page);
  const input = form.locator('input[type=file]');
  const error = page.locator('[data-imagechat-error]');

  await input.setInputFiles(file('notes.txt', 'text/plain', Buffer.from('not a picture')));
  await error.waitFor();
  assert.match(/** @type {string} */ (await error.textContent()), /notes\.txt: only PNG, JPEG, WebP and GIF images can be attached/);
  await input.setInputFiles(file('vector.svg', 'image/svg+xml', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')));
  await until(async () => /vector\.svg: only PNG/.test((await error.textContent()) || ''));
  await input.setInputFiles(file('huge.png', 'image/png', Buffer.concat([png(10, 10), Buffer.alloc(10 * 1024 * 1024)])));
  await until(async () => /huge\.png is too large: at most 10 MB/.test((await error.textContent()) || ''));
  assert.equal(await form.locator('[data-imagechat-attachment]').count(), 0);
  assert.equal(sent.length, 0, 'nothing was sent');

  // Five at once: four go, the fifth is refused; the attach button goes away when full.
  await input.setInputFiles([1, 2, 3, 4, 5].map((i) => file(`s${i}.png`, 'image/png', png(40 + i, 30, { seed: i }))));
  await until(async () => /At most 4 images per comment/.test((await error.textContent()) || ''));
  await stored(form, 4);
  assert.equal(sent.length, 4);
  assert.equal(await form.locator('label', { hasText: 'Attach image' }).isHidden(), true);
  // A paste beyond four is refused too.
  await paste(form.locator('textarea'), [file('image.png', 'image/png', png(20, 20))]);
  await sleep(200);
  assert.equal(await form.locator('[data-imagechat-attachment]').count(), 4);
  assert.equal(sent.length, 4);
  await ctx.close();

  // The same in Japanese.
  const ja = await browser.newContext();
  const pj = await openImage(ja, site, srv.url, 'att-refused-ja', { options: { locale: 'ja' } });
  const fj = await compose(pj);
  assert.equal(await fj.locator('label', { hasText: '画像を添付' }).count(), 1);
  await fj.locator('input[type=file]').setInputFiles(file('memo.txt', 'text/plain', Buffer.from('x')));
  await pj.locator('[data-imagechat-error]').waitFor();
  assert.match(/** @type {string} */ (await pj.locator('[data-imagechat-error]').textContent()), /memo\.txt: 添付できるのは PNG、JPEG、WebP、GIF の画像だけです/);
  await fj.locator('input[type=file]').setInputFiles(file('big.png', 'image/png', Buffer.alloc(10 * 1024 * 1024 + 1)));
  await until(async () => /big\.png は大きすぎます（10 MB まで）/.test((await pj.locator('[data-imagechat-error]').textContent()) || ''));
  await ja.close();
});

test('refused by the server: a PNG sent as a JPEG and a truncated PNG show the server’s reason; a post waits for uploads to finish', async () => {
  const ctx = await browser.newContext();
  const page = await openImage(ctx, site, srv.url, 'att-server-refused');
  const sent = uploadsOf(page);
  const form = await compose(page);
  const input = form.locator('input[type=file]');
  const error = page.locator('[data-imagechat-error]');

  const answer = page.waitForResponse((r) => r.url().includes('/api/v1/uploads'));
  await input.setInputFiles(file('really-a-png.jpg', 'image/jpeg', png(64, 64)));
  assert.equal((await answer).status(), 400);
  await until(async () => /really-a-png\.jpg was refused: /.test((await error.textContent().catch(() => '')) || ''));
  assert.equal(await form.locator('[data-imagechat-attachment]').count(), 0, 'a refused image leaves the tray');

  const whole = png(64, 64, { seed: 5 });
  const answer2 = page.waitForResponse((r) => r.url().includes('/api/v1/uploads'));
  await input.setInputFiles(file('cut.png', 'image/png', whole.subarray(0, whole.length - 30)));
  assert.equal((await answer2).status(), 400);
  await until(async () => /cut\.png was refused: /.test((await error.textContent().catch(() => '')) || ''));
  assert.equal(sent.length, 2);

  // Posting while an image is still on its way is refused with a message; once stored, it goes.
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 128 * 1024 });
  await input.setInputFiles(file('slow.png', 'image/png', png(300, 300, { noise: true })));
  await form.locator('textarea').fill('Too quick');
  await form.locator('[type=submit]').click();
  await until(async () => /Wait until the images have finished uploading/.test((await error.textContent().catch(() => '')) || ''));
  assert.equal(await markers(page).count(), 0, 'nothing was posted');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await stored(form, 1);
  const { body } = await post(page, 'Now with its image');
  assert.equal(body.attachments.length, 1);
  await ctx.close();
});

test('a server with a lower size limit and a used-up daily quota: its 413 and 429 are told apart, in the widget and on /s/new', async () => {
  const small = await startServer({ args: ['--upload-max-bytes', '50000', '--upload-quota-bytes-per-day', '3000'] });
  try {
    const ctx = await browser.newContext();
    const page = await openImage(ctx, site, small.url, 'att-limits');
    const form = await compose(page);
    const input = form.locator('input[type=file]');
    const error = page.locator('[data-imagechat-error]');
    // The session names this server's limit: a larger file is refused before it is sent.
    const sent = uploadsOf(page);
    await input.setInputFiles(file('wide.png', 'image/png', png(160, 160, { noise: true }))); // about 77 KB: under 10 MiB, over this server's 50,000 bytes
    await until(async () => (await error.textContent().catch(() => '')) === 'wide.png is too large: at most 48 KB.');
    assert.equal(sent.length, 0, 'nothing was sent');
    // A server that refuses anyway (its limit unknown to the widget) is told apart from the default limit.
    const answer = page.waitForResponse((r) => r.url().includes('/api/v1/uploads'));
    await page.route('**/api/v1/uploads', (route) => route.fulfill({ status: 413, contentType: 'application/json', body: '{"error":{"code":"payload_too_large","message":"the upload is larger than 50000 bytes"}}' }));
    await input.setInputFiles(file('small.png', 'image/png', png(30, 30, { seed: 9 })));
    assert.equal((await answer).status(), 413);
    await until(async () => (await error.textContent().catch(() => '')) === 'small.png is larger than this server takes.');
    await page.unroute('**/api/v1/uploads');
    // Random pixels: about 2.7 KB stored however they are compressed, so one fits the 3,000 bytes and two do not.
    await input.setInputFiles(file('first.png', 'image/png', png(30, 30, { noise: true })));
    await stored(form, 1);
    const refused = page.waitForResponse((r) => r.url().includes('/api/v1/uploads'));
    await input.setInputFiles(file('second.png', 'image/png', png(30, 30, { noise: true, seed: 1 })));
    assert.equal((await refused).status(), 429);
    await until(async () => (await error.textContent().catch(() => '')) === 'This site’s uploads for today are used up. Try again tomorrow.');
    assert.equal(await form.locator('[data-imagechat-attachment]').count(), 1);

    const p2 = await ctx.newPage();
    await p2.goto(`${small.url}/s/new`);
    await p2.locator('#file').setInputFiles(file('third.png', 'image/png', png(30, 30, { noise: true, seed: 2 })));
    await until(async () => (await p2.locator('#error').textContent()) === 'This site’s uploads for today are used up. Try again tomorrow.');
    assert.equal(new URL(p2.url()).pathname, '/s/new', 'it stays on the page');
    await ctx.close();
  } finally {
    await small.close();
  }
});

test('editing a comment: no key keeps its images, removing one sends the rest, removing all sends []; others see it live', async () => {
  const a = await browser.newContext({ reducedMotion: 'reduce' });
  const b = await browser.newContext({ reducedMotion: 'reduce' });
  const pa = await openImage(a, site, srv.url, 'att-edit');
  const pb = await openImage(b, site, srv.url, 'att-edit');
  const form = await compose(pa);
  await form.locator('input[type=file]').setInputFiles([file('one.png', 'image/png', png(80, 60, { seed: 1 })), file('two.png', 'image/png', png(60, 80, { seed: 2 }))]);
  await stored(form, 2);
  const { chat } = await post(pa, 'Two screenshots');
  const [one, two] = chat.comments[0].attachments.map((/** @type {{id: string}} */ x) => x.id);
  for (const p of [pa, pb]) {
    await p.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`).click();
    await until(async () => (await p.locator('[data-imagechat-thread] [data-imagechat-comment] [data-imagechat-attachment]').count()) === 2);
  }
  const ca = pa.locator('[data-imagechat-thread] [data-imagechat-comment]').first();
  const cb = pb.locator('[data-imagechat-thread] [data-imagechat-comment]').first();
  /** Edits the comment: `remove` images by position, new text; returns the PATCH body. @param {number[]} remove @param {string} text */
  const edit = async (remove, text) => {
    await ca.locator('[data-imagechat-action=edit]').click();
    const box = ca.locator('[data-imagechat-composer]');
    await box.locator('input[type=file]').waitFor({ state: 'attached' });
    for (const i of [...remove].sort().reverse()) await box.locator('[data-imagechat-attachment]').nth(i).locator('button').click();
    await box.locator('textarea').fill(text);
    const patched = pa.waitForResponse((r) => r.request().method() === 'PATCH' && r.url().includes('/comments/'));
    await box.locator('[data-imagechat-action=save]').click();
    const res = await patched;
    assert.equal(res.status(), 200);
    return res.request().postDataJSON();
  };

  // Text only: the request has no `attachments`, and both images stay.
  const b1 = await edit([], 'Two screenshots (edited)');
  assert.equal('attachments' in b1, false);
  await until(async () => (await cb.locator('.txt').textContent()) === 'Two screenshots (edited)');
  assert.equal(await cb.locator('[data-imagechat-attachment]').count(), 2);

  // The editor shows the comment's images with remove buttons; removing the first sends the second.
  const b2 = await edit([0], 'Only the second one matters');
  assert.deepEqual(b2.attachments, [two]);
  await until(async () => (await cb.locator('[data-imagechat-attachment]').count()) === 1);
  assert.equal(await cb.locator('[data-imagechat-attachment]').getAttribute('data-imagechat-attachment'), two);
  assert.notEqual(one, two);

  // Removing the last sends [] and the comment has none left, here and there.
  const b3 = await edit([0], 'No pictures after all');
  assert.deepEqual(b3.attachments, []);
  await until(async () => (await cb.locator('[data-imagechat-attachment]').count()) === 0 && (await cb.locator('.txt').textContent()) === 'No pictures after all');
  assert.equal(await ca.locator('[data-imagechat-attachment]').count(), 0);
  await a.close();
  await b.close();
});

test('offline, attaching fails like every other change: a message, and nothing is sent', async () => {
  const ctx = await browser.newContext();
  const page = await openImage(ctx, site, srv.url, 'att-offline');
  const sent = uploadsOf(page);
  const form = await compose(page);
  await form.locator('textarea').fill('Kept while offline');
  await ctx.setOffline(true);
  await until(async () => (await page.locator('[data-imagechat-status]').getAttribute('data-state')) === 'offline', 5000);
  await form.locator('input[type=file]').setInputFiles(file('offline.png', 'image/png', png(50, 50)));
  await paste(form.locator('textarea'), [file('image.png', 'image/png', png(20, 20))]);
  await page.locator('[data-imagechat-error]').first().waitFor();
  assert.match(/** @type {string} */ (await page.locator('[data-imagechat-error]').first().textContent()), /offline/i);
  await sleep(300);
  assert.equal(await form.locator('[data-imagechat-attachment]').count(), 0);
  assert.equal(sent.length, 0);
  assert.equal(await form.locator('textarea').inputValue(), 'Kept while offline');
  // Back online, the same works.
  await ctx.setOffline(false);
  await until(async () => (await page.locator('[data-imagechat-status]').getAttribute('data-state')) === 'live', 15000);
  await form.locator('input[type=file]').setInputFiles(file('online.png', 'image/png', png(50, 50)));
  await stored(form, 1);
  await ctx.close();
});

// ---------------------------------------------------------------- pages

/**
 * Opens a page of the server and records script errors and what its CSP
 * blocked (Chromium reports each refusal on the console; an init script
 * listening for securitypolicyviolation would keep file choosers from opening).
 * @param {import('playwright-core').BrowserContext} ctx @param {string} url
 */
async function openPage(ctx, url) {
  const page = await ctx.newPage();
  /** @type {string[]} */
  const problems = [];
  /** @type {string[]} */
  const blocked = [];
  page.on('pageerror', (e) => problems.push(`error: ${e.message}`));
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) blocked.push(m.text());
  });
  const res = await page.goto(url);
  return { page, res, problems, csp: async () => blocked };
}

test('/s/new: pick a screenshot by keyboard, watch it upload, land on its page; another visitor sees new markers live; copy link', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, reducedMotion: 'reduce', permissions: ['clipboard-read', 'clipboard-write'] });
  const { page, res, problems, csp } = await openPage(ctx, `${srv.url}/s/new`);
  const chooser = choosers(page);
  assert.equal(res?.status(), 200);
  assert.match(res?.headers()['content-security-policy'] || '', /script-src 'self'/);
  assert.equal(await page.locator('h1').textContent(), 'Share a screenshot');

  // Refused before uploading, with a clear message.
  await page.locator('#file').setInputFiles(file('notes.txt', 'text/plain', Buffer.from('x')));
  await page.locator('#error').waitFor();
  assert.match(/** @type {string} */ (await page.locator('#error').textContent()), /notes\.txt is not a PNG, JPEG, WebP or GIF image/);
  assert.equal(await page.locator('#error').getAttribute('role'), 'alert');

  // Keyboard only: Tab to the file control, Space opens the chooser.
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 256 * 1024 });
  for (let i = 0; i < 6 && (await page.evaluate(() => document.activeElement?.id)) !== 'file'; i++) await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'file', 'the file control is reachable by Tab');
  await page.keyboard.press('Space');
  const upload = page.waitForRequest((r) => r.method() === 'POST' && r.url().includes('/api/v1/uploads'));
  await (await chooser()).setFiles(file('screenshot.png', 'image/png', png(640, 400, { noise: true }))); // about 770 KB: three seconds
  const req = await upload;
  assert.match(req.url(), /\/api\/v1\/uploads\?purpose=page$/);
  await page.locator('#progress').waitFor();
  assert.equal(await page.locator('#error').isHidden(), true, 'the old error is gone');
  await page.screenshot({ path: join(shotsDir(), 'share-new-uploading.png') });
  await page.waitForURL((u) => /^\/s\/[^/]+$/.test(u.pathname) && u.pathname !== '/s/new', { timeout: 30000 });
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  const id = decodeURIComponent(new URL(page.url()).pathname.slice(3));
  assert.ok(id.length >= 16, `an upload id: ${id}`);

  // Its page: the image large with the widget on it.
  const shot = page.locator('#shot');
  await until(() => shot.evaluate((/** @type {HTMLImageElement} */ i) => i.complete && i.naturalWidth === 640));
  assert.equal(await shot.getAttribute('width'), '640');
  assert.equal(await shot.getAttribute('height'), '400');
  assert.match(/** @type {string} */ (await shot.getAttribute('src')), new RegExp(`/api/v1/uploads/${id}$`));
  await page.locator('#shot + div [data-imagechat-status][data-state=live]').waitFor();
  const box = /** @type {{width: number, height: number}} */ (await shot.boundingBox());
  assert.ok(Math.abs(box.width - 640) < 1 && Math.abs(box.height / box.width - 400 / 640) < 0.01, `its own size (the page is wider), its own aspect: ${JSON.stringify(box)}`);

  // Another visitor opens the link and sees a marker made here, live.
  const other = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, colorScheme: 'dark', reducedMotion: 'reduce' });
  const o = await openPage(other, page.url());
  await o.page.locator('[data-imagechat-status][data-state=live]').waitFor();
  const layer = page.locator('[data-imagechat-layer]');
  const lb = /** @type {{x: number, y: number, width: number, height: number}} */ (await layer.boundingBox());
  await page.mouse.click(lb.x + lb.width * 0.4, lb.y + lb.height * 0.5);
  await page.locator('[data-imagechat-composer] textarea').fill('This button is cut off');
  await page.locator('[data-imagechat-composer] [type=submit]').click();
  await markers(o.page).first().waitFor({ timeout: 3000 });
  const chats = await (await fetch(`${srv.url}/api/v1/chats?urlId=${encodeURIComponent(`upload:${id}`)}`, { headers: { Authorization: `Bearer ${await sessionToken()}` } })).json();
  assert.equal(chats.chats.length, 1, 'the chat belongs to urlId upload:{id}');
  assert.equal(chats.chats[0].comments[0].text, 'This button is cut off');

  // Copy link: the address lands on the clipboard and a status says so.
  await page.locator('#copy').click();
  await until(async () => (await page.locator('#copied').textContent()) === 'Link copied to the clipboard.');
  assert.equal(await page.locator('#copied').getAttribute('role'), 'status');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), page.url());

  assert.deepEqual(await csp(), [], 'nothing was blocked by the page’s CSP');
  assert.deepEqual(await o.csp(), []);
  assert.deepEqual([...problems, ...o.problems], []);
  await ctx.close();
  await other.close();
});

/** A token of a fresh anonymous session of the demo tenant. */
async function sessionToken() {
  const s = await (await fetch(`${srv.url}/api/v1/sessions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tenantId: 'demo' }) })).json();
  return s.token;
}

/** Uploads a PNG for a page, the way /s/new does. @param {Buffer} bytes */
async function pageUpload(bytes) {
  const res = await fetch(`${srv.url}/api/v1/uploads?purpose=page`, { method: 'POST', headers: { 'Content-Type': 'image/png', Authorization: `Bearer ${await sessionToken()}` }, body: bytes });
  assert.equal(res.status, 201);
  return (await res.json()).upload;
}

test('/s/new takes a paste and a drop, and shows the server’s refusal; an unknown /s/{id} is a 404', async () => {
  const ctx = await browser.newContext();
  const { page, csp } = await openPage(ctx, `${srv.url}/s/new?tenant=demo`);
  // A PNG body named a JPEG: the server refuses it, and the page says why.
  await page.evaluate((b64) => {
    const dt = new DataTransfer();
    dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], 'image.jpg', { type: 'image/jpeg' }));
    document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, png(50, 50).toString('base64'));
  await page.locator('#error').waitFor();
  assert.match(/** @type {string} */ (await page.locator('#error').textContent()), /^The image was refused: /);
  // A drop of a real one goes through.
  await page.evaluate((b64) => {
    const dt = new DataTransfer();
    dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], 'dropped.png', { type: 'image/png' }));
    for (const type of ['dragenter', 'dragover', 'drop']) document.body.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, png(120, 80).toString('base64'));
  await page.waitForURL((u) => u.pathname !== '/s/new');
  await page.locator('[data-imagechat-status][data-state=live]').waitFor();
  assert.deepEqual(await csp(), []);
  const missing = await fetch(`${srv.url}/s/no-such-upload-${Date.now()}`);
  assert.equal(missing.status, 404);
  await ctx.close();
});

test('the screenshot pages and the widget’s attachments on them: screenshots at phone and desktop sizes, light and dark; axe finds nothing serious', async () => {
  const up = await pageUpload(png(1200, 750, { seed: 6 }));
  for (const [name, viewport, isMobile] of /** @type {const} */ ([
    ['desktop', { width: 1280, height: 900 }, false],
    ['phone', { width: 390, height: 844 }, true],
  ])) {
    for (const colorScheme of /** @type {const} */ (['light', 'dark'])) {
      const ctx = await browser.newContext({ viewport, isMobile, hasTouch: isMobile, colorScheme, reducedMotion: 'reduce' });
      const n = await openPage(ctx, `${srv.url}/s/new`);
      await n.page.locator('#file').setInputFiles(file('notes.txt', 'text/plain', Buffer.from('x'))); // with its error showing
      await n.page.locator('#error').waitFor();
      await n.page.screenshot({ path: join(shotsDir(), `share-new-${name}-${colorScheme}.png`), fullPage: true });
      assert.deepEqual(await axe(n.page), [], `/s/new ${name} ${colorScheme}`);
      assert.deepEqual(await n.csp(), []);

      const s = await openPage(ctx, `${srv.url}/s/${encodeURIComponent(up.id)}`);
      await s.page.locator('[data-imagechat-status][data-state=live]').waitFor();
      if (name === 'desktop' && colorScheme === 'light') {
        const lb = /** @type {{x: number, y: number, width: number, height: number}} */ (await s.page.locator('[data-imagechat-layer]').boundingBox());
        await s.page.mouse.click(lb.x + lb.width * 0.7, lb.y + lb.height * 0.3);
        await s.page.locator('[data-imagechat-composer] textarea').fill('Why is this empty?');
        await s.page.locator('[data-imagechat-composer] [type=submit]').click();
      }
      await markers(s.page).first().waitFor();
      await until(() => s.page.locator('#shot').evaluate((/** @type {HTMLImageElement} */ i) => i.complete && i.naturalWidth === 1200));
      await sleep(200);
      await s.page.screenshot({ path: join(shotsDir(), `share-${name}-${colorScheme}.png`), fullPage: true });
      assert.deepEqual(await axe(s.page), [], `/s/{id} ${name} ${colorScheme}`);

      // The widget's own parts on this page (its strict CSP included): a reply with two images, its thumbnails, the viewer.
      await markers(s.page).first().click();
      const thread = s.page.locator('[data-imagechat-thread]');
      const reply = thread.locator('[data-imagechat-composer]');
      await reply.locator('input[type=file]').waitFor({ state: 'attached' });
      await paste(reply.locator('textarea'), [file('image.png', 'image/png', png(1600, 1000, { seed: 7 })), file('image.png', 'image/png', png(300, 600, { seed: 8 }))]);
      await stored(reply, 2);
      await reply.locator('textarea').fill(`Two screenshots (${name}, ${colorScheme})`);
      await sleep(150);
      await s.page.screenshot({ path: join(shotsDir(), `attachments-composer-${name}-${colorScheme}.png`) });
      const before = await thread.locator('[data-imagechat-comment]').count();
      await reply.locator('[type=submit]').click();
      const last = thread.locator('[data-imagechat-comment]').nth(before);
      await until(async () => (await last.locator('[data-imagechat-attachment] img').count()) === 2);
      await until(() => last.locator('[data-imagechat-attachment] img').nth(1).evaluate((/** @type {HTMLImageElement} */ i) => i.complete && i.naturalWidth === 300));
      await last.scrollIntoViewIfNeeded();
      await sleep(150);
      await s.page.screenshot({ path: join(shotsDir(), `attachments-thread-${name}-${colorScheme}.png`) });
      await last.locator('[data-imagechat-attachment]').first().click();
      const viewer = s.page.locator('[data-imagechat-viewer]');
      const big = viewer.locator('img');
      await until(() => big.evaluate((/** @type {HTMLImageElement} */ i) => i.complete && i.naturalWidth === 1600));
      const vb = /** @type {{x: number, y: number, width: number, height: number}} */ (await big.boundingBox());
      assert.ok(vb.x >= 0 && vb.y >= 0 && vb.x + vb.width <= viewport.width + 0.5 && vb.y + vb.height <= viewport.height + 0.5, `a large image fits the screen: ${JSON.stringify(vb)}`);
      assert.ok(Math.abs(vb.width / vb.height - 1.6) < 0.02, 'and keeps its aspect');
      await sleep(150);
      await s.page.screenshot({ path: join(shotsDir(), `attachments-viewer-${name}-${colorScheme}.png`) });
      assert.deepEqual(await axe(s.page), [], `viewer ${name} ${colorScheme}`);
      await s.page.keyboard.press('Escape');
      await viewer.waitFor({ state: 'detached' });
      assert.deepEqual(await s.csp(), []);
      assert.deepEqual([...n.problems, ...s.problems], []);
      await ctx.close();
    }
  }
});
