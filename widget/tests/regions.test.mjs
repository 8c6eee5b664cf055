// Regions (widget.md "Regions", protocol §10): drawing every shape with the
// mouse, touch and the keyboard alone; what the create request carries; a
// second viewer of another size seeing it at the same place; live reshapes;
// hide/show; object-fit and scrolling panels; the lazy file (loaded only for
// writers, once, and its refusal by a strict policy); axe with a shape
// selected. Screenshots of every shape, light and dark, land in
// tests/screenshots/regions-*.png.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launch, live, markers, openImage, shotsDir, sleep, startServer, startSite, until } from './helpers.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
/** @type {Awaited<ReturnType<typeof startSite>>} */
let site;
/** @type {import('playwright-core').Browser} */
let browser;
/** @type {string} */
let token;

before(async () => {
  srv = await startServer();
  site = await startSite();
  browser = await launch();
  token = (await api('POST', '/api/v1/sessions', { tenantId: 'demo' }, '')).token;
});
after(async () => {
  await browser?.close();
  await site?.close();
  await srv?.close();
});

/** @param {string} method @param {string} path @param {unknown} [body] @param {string} [tok] */
async function api(method, path, body, tok = token) {
  /** @type {Record<string, string>} */
  const headers = { 'Content-Type': 'application/json' };
  if (tok) headers.Authorization = `Bearer ${tok}`;
  const res = await fetch(srv.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}

/**
 * @typedef {{type: string, [k: string]: any}} Shape
 * @typedef {{id: string, x: number, y: number, resolved: boolean, shape?: Shape, comments: {text: string}[]}} Chat
 * @typedef {{x: number, y: number, width: number, height: number}} Box
 */

/** A chat with a shape, stored before a page opens. @param {string} urlId @param {Shape | undefined} shape @param {number} x @param {number} y */
async function seed(urlId, shape, x, y, text = `A ${shape ? shape.type : 'pin'}`) {
  return /** @type {Chat} */ ((await api('POST', '/api/v1/chats', { urlId, x, y, text, shape })).chat);
}

/** @param {string} urlId @returns {Promise<Chat[]>} */
async function stored(urlId) {
  return (await api('GET', `/api/v1/chats?urlId=${encodeURIComponent(urlId)}`)).chats;
}

const IMG = () => `${srv.url}/static/demo.svg`; // 1200 × 760

/** The four kinds, as the seeds of several tests. */
const SHAPES = {
  rect: { shape: { type: 'rect', x: 10, y: 12, w: 30, h: 20 }, at: [10, 12] },
  ellipse: { shape: { type: 'ellipse', cx: 65, cy: 25, rx: 15, ry: 12 }, at: [54.39, 16.51] },
  polygon: { shape: { type: 'polygon', points: [[15, 55], [40, 50], [45, 80], [20, 88]] }, at: [15, 55] },
  arrow: { shape: { type: 'arrow', x1: 85, y1: 85, x2: 62, y2: 58 }, at: [85, 85] },
};

/** @param {import('playwright-core').Locator} l @returns {Promise<Box>} */
async function box(l) {
  const b = await l.boundingBox();
  if (!b) throw new Error('not visible');
  return b;
}

/** A point at (x %, y %) of a box. @param {Box} b @param {number} x @param {number} y */
const at = (b, x, y) => ({ x: b.x + (b.width * x) / 100, y: b.y + (b.height * y) / 100 });

/** The box a shape covers, in percent (a rectangle's, an ellipse's bounds, a polygon's or arrow's extent). @param {Shape} s */
function extent(s) {
  if (s.type === 'rect') return [s.x, s.y, s.w, s.h];
  if (s.type === 'ellipse') return [s.cx - s.rx, s.cy - s.ry, 2 * s.rx, 2 * s.ry];
  const pts = s.type === 'arrow' ? [[s.x1, s.y1], [s.x2, s.y2]] : s.points;
  const xs = pts.map((/** @type {number[]} */ p) => p[0]);
  const ys = pts.map((/** @type {number[]} */ p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)];
}

/**
 * Asserts a chat's drawn shape covers `s` on the picture `pic` (client px) within `tol` px.
 * @param {import('playwright-core').Page} page @param {string} id @param {Shape} s @param {Box} pic @param {string} what
 */
async function assertDrawn(page, id, s, pic, what, tol = 1) {
  const el = page.locator(`[data-imagechat-shape][data-chat-id="${id}"]`);
  assert.equal(await el.getAttribute('data-shape-type'), s.type, `${what}: type`);
  const got = await el.evaluate((e) => {
    const r = e.getBoundingClientRect();
    return [r.x, r.y, r.width, r.height];
  });
  const [x, y, w, h] = extent(s);
  const want = [pic.x + (pic.width * x) / 100, pic.y + (pic.height * y) / 100, (pic.width * w) / 100, (pic.height * h) / 100];
  assert.ok(
    got.every((v, i) => Math.abs(v - want[i]) <= tol),
    `${what}: drawn at ${got.map((v) => v.toFixed(1))}, want ${want.map((v) => v.toFixed(1))}`,
  );
}

/** @param {Record<string, number | number[][] | string>} got @param {Record<string, number | number[][] | string>} want @param {string} what */
function assertShape(got, want, what, tol = 0.35) {
  assert.ok(got, `${what}: no shape`);
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), what);
  const flat = (/** @type {unknown} */ v) => [v].flat(2);
  for (const k of Object.keys(want)) {
    const [a, b] = [flat(got[k]), flat(want[k])];
    assert.equal(a.length, b.length, `${what}.${k}`);
    a.forEach((v, i) => (typeof v === 'number' ? assert.ok(Math.abs(v - /** @type {number} */ (b[i])) <= tol, `${what}.${k}: ${JSON.stringify(got)} want ${JSON.stringify(want)}`) : assert.equal(v, b[i])));
  }
}

const layerOf = (/** @type {import('playwright-core').Page} */ page) => page.locator('[data-imagechat-layer]').first();
const toolOf = (/** @type {import('playwright-core').Page} */ page, /** @type {string} */ name) => page.locator(`[data-imagechat-tool=${name}]`).first();

/** Which tool is pressed. @param {import('playwright-core').Page} page */
const pressed = (page) => page.locator('[data-imagechat-tool][aria-pressed=true]').getAttribute('data-imagechat-tool');

/** Writes in the open composer and posts; returns the request body and the stored chat. @param {import('playwright-core').Page} page @param {string} urlId @param {string} text */
async function post(page, urlId, text, keyboard = false) {
  const request = page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/api/v1/chats');
  const ta = page.locator('[data-imagechat-composer] textarea');
  await ta.waitFor({ timeout: 3000 });
  if (keyboard) {
    await page.keyboard.type(text);
    await page.keyboard.press('Control+Enter');
  } else {
    await ta.fill(text);
    await page.locator('[data-imagechat-composer] [type=submit]').click();
  }
  const body = JSON.parse(/** @type {string} */ ((await request).postData()));
  const chat = /** @type {Chat} */ (await until(async () => (await stored(urlId)).find((c) => c.comments[0].text === text), 3000));
  await until(async () => (await page.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`).count()) === 1, 3000);
  return { body, chat };
}

/** A mouse drag between two client points. @param {import('playwright-core').Page} page @param {{x: number, y: number}} a @param {{x: number, y: number}} b */
async function drag(page, a, b) {
  await page.mouse.move(a.x, a.y);
  await page.mouse.down();
  await page.mouse.move(b.x, b.y, { steps: 8 });
  await page.mouse.up();
}

/** Presses Tab until the focused element (inside the widget too) matches `sel`. @param {import('playwright-core').Page} page @param {string} sel */
async function tabTo(page, sel) {
  for (let i = 0; i < 30; i++) {
    await page.keyboard.press('Tab');
    const ok = await page.evaluate((s) => {
      let el = document.activeElement;
      while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
      return !!el && el.matches(s);
    }, sel);
    if (ok) return;
  }
  throw new Error(`Tab never reached ${sel}`);
}

/** The focused element's stable hook. @param {import('playwright-core').Page} page */
function focused(page) {
  return page.evaluate(() => {
    let el = document.activeElement;
    while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
    const hook = el && [...el.attributes].map((a) => a.name).find((n) => n.startsWith('data-imagechat-'));
    return el ? `${el.tagName.toLowerCase()}${hook ? `[${hook}]` : ''}` : '';
  });
}

/**
 * A host page of the test site with its own markup; with `csp`, the attach
 * script is a file and the policy a response header.
 * @param {string} name @param {string} body @param {string} script @param {{csp?: string}} [o]
 */
function hostPage(name, body, script, o = {}) {
  if (o.csp) site.add(`/${name}.js`, script);
  return site.add(
    `/${name}`,
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${name}</title></head>
<body>${body}<script src="${srv.url}/imagechat.js"></script>${o.csp ? `<script src="/${name}.js"></script>` : `<script>${script}</script>`}</body></html>`,
    o.csp ? { 'content-security-policy': o.csp } : {},
  );
}

/** @param {string} id @param {string} urlId @param {object} [extra] */
const attachJs = (id, urlId, extra = {}) =>
  `window[${JSON.stringify(id)}] = ImageChat.attach(document.getElementById(${JSON.stringify(id)}), Object.assign({ tenantId: 'demo', locale: 'en', urlId: ${JSON.stringify(urlId)} }, ${JSON.stringify(extra)}));`;

/** Requests of the lazy file a page makes. @param {import('playwright-core').Page} page */
function lazyRequests(page) {
  /** @type {string[]} */
  const seen = [];
  page.on('request', (r) => new URL(r.url()).pathname.startsWith('/imagechat/') && seen.push(new URL(r.url()).pathname));
  return seen;
}

test('mouse: drag a rectangle, an ellipse and an arrow, click a polygon together; the request says shape, imageUrl and pageUrl', async () => {
  const urlId = 'mouse-shapes';
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await openImage(ctx, site, srv.url, urlId);
  await page.evaluate(() => history.replaceState(null, '', location.href + '#a-fragment'));
  const pageUrl = page.url().split('#')[0];
  await toolOf(page, 'rect').waitFor();
  assert.equal(await pressed(page), 'pin', 'the pin is the default tool');
  const pic = await box(layerOf(page));

  await toolOf(page, 'rect').click();
  assert.equal(await pressed(page), 'rect');
  await drag(page, at(pic, 20, 20), at(pic, 50, 40));
  let { body, chat } = await post(page, urlId, 'Rectangle by mouse');
  assertShape(body.shape, { type: 'rect', x: 20, y: 20, w: 30, h: 20 }, 'rect request');
  assert.equal(body.imageUrl, IMG(), 'imageUrl is the resolved src');
  assert.equal(body.pageUrl, pageUrl, 'pageUrl is the page without its hash');
  assert.ok(Math.abs(body.x - 20) < 0.35 && Math.abs(body.y - 20) < 0.35, 'a rectangle’s marker sits on its top-left corner');
  assertShape(/** @type {any} */ (chat.shape), body.shape, 'rect stored', 0.001);
  await assertDrawn(page, chat.id, /** @type {Shape} */ (chat.shape), pic, 'rect');
  assert.match(/** @type {string} */ (await page.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`).getAttribute('aria-label')), /^Rectangle, thread 1 by /);
  assert.equal(await pressed(page), 'rect', 'the tool stays chosen');

  await toolOf(page, 'ellipse').click();
  await drag(page, at(pic, 60, 20), at(pic, 80, 50));
  ({ body, chat } = await post(page, urlId, 'Ellipse by mouse'));
  assertShape(body.shape, { type: 'ellipse', cx: 70, cy: 35, rx: 10, ry: 15 }, 'ellipse request');
  assert.ok(Math.abs(body.x - (70 - 10 * Math.SQRT1_2)) < 0.35 && Math.abs(body.y - (35 - 15 * Math.SQRT1_2)) < 0.35, 'an ellipse’s marker sits on its outline, upper left');
  await assertDrawn(page, chat.id, /** @type {Shape} */ (chat.shape), pic, 'ellipse');

  await toolOf(page, 'arrow').click();
  await drag(page, at(pic, 10, 70), at(pic, 30, 90));
  ({ body, chat } = await post(page, urlId, 'Arrow by mouse'));
  assertShape(body.shape, { type: 'arrow', x1: 10, y1: 70, x2: 30, y2: 90 }, 'arrow request');
  assert.ok(Math.abs(body.x - 10) < 0.35 && Math.abs(body.y - 70) < 0.35, 'an arrow’s marker sits on its tail');
  await assertDrawn(page, chat.id, /** @type {Shape} */ (chat.shape), pic, 'arrow');

  // A polygon: click its points, close it on the first one.
  await toolOf(page, 'polygon').click();
  for (const [x, y] of [[40, 55], [55, 55], [50, 75], [40.3, 55.4]]) await page.mouse.click(at(pic, x, y).x, at(pic, x, y).y);
  ({ body, chat } = await post(page, urlId, 'Polygon closed on its first point'));
  assertShape(body.shape, { type: 'polygon', points: [[40, 55], [55, 55], [50, 75]] }, 'polygon request');
  assert.ok(Math.abs(body.x - 40) < 0.35 && Math.abs(body.y - 55) < 0.35, 'a polygon’s marker sits on its first point');
  await assertDrawn(page, chat.id, /** @type {Shape} */ (chat.shape), pic, 'polygon');
  // … or with a double click on the last point, or Enter.
  for (const [x, y] of [[60, 60], [75, 62]]) await page.mouse.click(at(pic, x, y).x, at(pic, x, y).y);
  await page.mouse.dblclick(at(pic, 70, 80).x, at(pic, 70, 80).y);
  ({ body } = await post(page, urlId, 'Polygon closed by a double click'));
  assertShape(body.shape, { type: 'polygon', points: [[60, 60], [75, 62], [70, 80]] }, 'polygon by double click');
  for (const [x, y] of [[80, 10], [95, 10], [90, 30], [82, 25]]) await page.mouse.click(at(pic, x, y).x, at(pic, x, y).y);
  await page.keyboard.press('Enter');
  ({ body } = await post(page, urlId, 'Polygon closed by Enter'));
  assertShape(body.shape, { type: 'polygon', points: [[80, 10], [95, 10], [90, 30], [82, 25]] }, 'polygon by Enter');

  // A press without a drag draws nothing; Escape cancels a polygon half done, then goes back to the pin.
  await toolOf(page, 'rect').click();
  await page.mouse.click(at(pic, 70, 70).x, at(pic, 70, 70).y);
  await sleep(150);
  assert.equal(await page.locator('[data-imagechat-composer]').count(), 0, 'a click with the rectangle tool opens nothing');
  await toolOf(page, 'polygon').click();
  await page.mouse.click(at(pic, 70, 70).x, at(pic, 70, 70).y);
  await page.mouse.click(at(pic, 80, 70).x, at(pic, 80, 70).y);
  await page.keyboard.press('Escape');
  assert.equal(await pressed(page), 'polygon', 'Escape first cancels the polygon in progress');
  await page.keyboard.press('Escape');
  assert.equal(await pressed(page), 'pin', 'Escape with nothing in progress goes back to the pin');
  assert.equal((await stored(urlId)).length, 6);
  await ctx.close();
});

test('keyboard alone: every shape drawn from the tool bar and the layer, as widget.md says', async () => {
  const urlId = 'keyboard-shapes';
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 }, reducedMotion: 'reduce' });
  const page = await openImage(ctx, site, srv.url, urlId);
  await toolOf(page, 'rect').waitFor();
  /** @type {[string, string[], Record<string, any>][]} */
  const cases = [
    // Enter: a point at the centre; arrows move it 1 %, Shift 10 %; Space fixes it and starts the next 10 % right of and below; Enter writes.
    ['rect', ['Enter', 'ArrowRight', 'ArrowRight', 'ArrowRight', 'Space', 'Shift+ArrowDown', 'Enter'], { type: 'rect', x: 53, y: 50, w: 10, h: 20 }],
    ['ellipse', ['Enter', 'Shift+ArrowLeft', 'Space', 'ArrowDown', 'ArrowDown', 'ArrowDown', 'ArrowDown', 'ArrowDown', 'Enter'], { type: 'ellipse', cx: 45, cy: 57.5, rx: 5, ry: 7.5 }],
    ['arrow', ['Enter', 'Space', 'Shift+ArrowRight', 'Enter'], { type: 'arrow', x1: 50, y1: 50, x2: 70, y2: 60 }],
    ['polygon', ['Enter', 'Space', 'Shift+ArrowUp', 'Space', 'Enter'], { type: 'polygon', points: [[50, 50], [60, 50], [70, 60]] }],
  ];
  for (const [tool, keys, want] of cases) {
    await tabTo(page, `[data-imagechat-tool=${tool}]`);
    await page.keyboard.press('Enter');
    assert.equal(await pressed(page), tool);
    assert.equal(await focused(page), 'div[data-imagechat-layer]', `${tool}: choosing a tool by keyboard puts focus where it draws`);
    for (const k of keys) await page.keyboard.press(k);
    assert.equal(await focused(page), 'textarea', `${tool}: Enter opened the composer`);
    const { body, chat } = await post(page, urlId, `A ${tool} drawn with keys`, true);
    assertShape(body.shape, want, `${tool} by keyboard`, 0.001);
    assertShape(/** @type {any} */ (chat.shape), want, `${tool} stored`, 0.001);
    assert.equal(await focused(page), 'div[data-imagechat-layer]', `${tool}: back on the layer after posting`);
  }
  // The layer says how to draw with the chosen tool.
  const described = await layerOf(page).evaluate((el) => /** @type {ShadowRoot} */ (el.getRootNode()).getElementById(/** @type {string} */ (el.getAttribute('aria-describedby')))?.textContent || '');
  assert.match(described, /Enter closes the polygon/);
  // Escape cancels a shape in progress, then (nothing in progress) goes back to the pin.
  await page.keyboard.press('Enter');
  await page.keyboard.press('Space');
  await page.keyboard.press('Escape');
  assert.equal(await pressed(page), 'polygon');
  await page.keyboard.press('Escape');
  assert.equal(await pressed(page), 'pin');
  assert.equal((await stored(urlId)).length, 4);
  await ctx.close();
});

test('a second viewer with another screen size sees every shape on the same part of the picture, within a pixel', async () => {
  const urlId = 'two-sizes';
  for (const { shape, at: [x, y] } of Object.values(SHAPES)) await seed(urlId, shape, x, y);
  const a = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const b = await browser.newContext({ viewport: { width: 420, height: 700 }, deviceScaleFactor: 2 });
  const pa = await openImage(a, site, srv.url, urlId, { width: 1000 });
  const pb = await openImage(b, site, srv.url, urlId, { width: 1000 });
  await until(async () => (await pb.locator('[data-imagechat-shape]').count()) === 4);
  // A draws one more live; B sees it appear.
  await toolOf(pa, 'rect').click();
  const picA = await box(layerOf(pa));
  await drag(pa, at(picA, 55, 60), at(picA, 75, 72));
  const { chat } = await post(pa, urlId, 'Drawn while B watches');
  await pb.locator(`[data-imagechat-shape][data-chat-id="${chat.id}"]`).waitFor({ timeout: 3000 });
  const all = await stored(urlId);
  for (const [page, what] of /** @type {const} */ ([[pa, 'A'], [pb, 'B']])) {
    const pic = await box(layerOf(page));
    for (const c of all) await assertDrawn(page, c.id, /** @type {Shape} */ (c.shape), pic, `${what} ${c.shape?.type}`);
  }
  // The layer is smaller on B: the same shape is a smaller box there, at the same percentages.
  assert.ok((await box(layerOf(pb))).width < (await box(layerOf(pa))).width / 2);
  await a.close();
  await b.close();
});

test('the creator reshapes by dragging a handle, the whole shape and with keys; another viewer sees each change live', async () => {
  const urlId = 'reshape-live';
  const a = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const b = await browser.newContext({ viewport: { width: 700, height: 700 } });
  const pa = await openImage(a, site, srv.url, urlId);
  const pb = await openImage(b, site, srv.url, urlId);
  const pic = await box(layerOf(pa));
  await toolOf(pa, 'rect').click();
  await drag(pa, at(pic, 20, 20), at(pic, 50, 40));
  const { chat } = await post(pa, urlId, 'Resize me');
  const shapeB = pb.locator(`[data-imagechat-shape][data-chat-id="${chat.id}"]`);
  await shapeB.waitFor();
  // B may not move A's chat: no handles there, even with its thread open.
  await pb.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`).click();
  await pb.locator('[data-imagechat-thread]').waitFor();
  assert.equal(await pb.locator('[data-imagechat-handle]').count(), 0, 'no handles for a chat one may not move');
  await pb.keyboard.press('Escape');

  // Opening the thread selects the shape: four corner handles. Closing it (focus back on the marker) keeps them.
  await pa.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`).click();
  await pa.locator('[data-imagechat-thread]').waitFor();
  assert.equal(await pa.locator('[data-imagechat-handle]').count(), 4);
  await pa.keyboard.press('Escape');
  await pa.locator('[data-imagechat-thread]').waitFor({ state: 'detached' });
  assert.equal(await pa.locator('[data-imagechat-handle]').count(), 4);
  const corner = pa.locator('[data-imagechat-handle="2"]');
  const c = await box(corner);
  /** @type {any[]} */
  const patches = [];
  pa.on('request', (r) => r.method() === 'PATCH' && patches.push(JSON.parse(r.postData() || '{}')));
  await drag(pa, { x: c.x + c.width / 2, y: c.y + c.height / 2 }, at(pic, 60, 55));
  await until(async () => patches.length === 1, 3000);
  assertShape(patches[0].shape, { type: 'rect', x: 20, y: 20, w: 40, h: 35 }, 'the corner moved');
  await until(async () => (await shapeB.getAttribute('width')) === '40%' && (await shapeB.getAttribute('height')) === '35%', 3000);

  // Dragging the shape itself moves it, its marker along.
  const inside = at(pic, 40, 45);
  await drag(pa, inside, { x: inside.x + pic.width * 0.1, y: inside.y + pic.height * 0.05 });
  await until(async () => patches.length === 2, 3000);
  assertShape(patches[1].shape, { type: 'rect', x: 30, y: 25, w: 40, h: 35 }, 'the whole shape moved');
  assert.ok(Math.abs(patches[1].x - 30) < 0.35 && Math.abs(patches[1].y - 25) < 0.35, 'its marker moved with it');
  await until(async () => (await shapeB.getAttribute('x')) === `${patches[1].shape.x}%`, 3000);
  await until(async () => {
    const m = await box(pb.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`));
    const p = at(await box(layerOf(pb)), patches[1].x, patches[1].y);
    return Math.abs(m.x + m.width / 2 - p.x) < 1.5 && Math.abs(m.y + m.height / 2 - p.y) < 1.5;
  }, 3000);

  // Dragging the marker moves the corner it sits on; the click that ends the drag opens nothing.
  const mk = await box(pa.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`));
  await drag(pa, { x: mk.x + mk.width / 2, y: mk.y + mk.height / 2 }, at(pic, 20, 25));
  await until(async () => patches.length === 3, 3000);
  assertShape(patches[2].shape, { type: 'rect', x: 20, y: 25, w: 50, h: 35 }, 'the marker’s corner moved');
  assert.equal(await pa.locator('[data-imagechat-thread]').count(), 0, 'no thread opened');

  // Keys: a handle's arrows move that point, Enter saves; the marker's arrows move the whole shape.
  await pa.locator(`[data-imagechat-marker][data-chat-id="${chat.id}"]`).focus();
  await pa.keyboard.press('Tab');
  assert.equal(await focused(pa), 'button[data-imagechat-handle]', 'the handles come right after their marker');
  await pa.keyboard.press('Shift+ArrowLeft');
  await pa.keyboard.press('Enter');
  await until(async () => patches.length === 4, 3000);
  assertShape(patches[3].shape, { type: 'rect', x: 10, y: 25, w: 60, h: 35 }, 'the top-left corner moved 10 % left');
  await pa.keyboard.press('Shift+Tab');
  await pa.keyboard.press('ArrowDown');
  await pa.keyboard.press('ArrowDown');
  await pa.keyboard.press('Enter');
  await until(async () => patches.length === 5, 3000);
  assertShape(patches[4].shape, { type: 'rect', x: 10, y: 27, w: 60, h: 35 }, 'the marker’s arrows move the whole shape');
  await until(async () => (await shapeB.getAttribute('y')) === '27%', 3000);
  const [last] = await stored(urlId);
  assertShape(/** @type {any} */ (last.shape), { type: 'rect', x: 10, y: 27, w: 60, h: 35 }, 'stored');
  await a.close();
  await b.close();
});

test('reshapes from elsewhere apply live: another type, and null turns the chat back into a pin', async () => {
  const urlId = 'reshape-api';
  const chat = await seed(urlId, SHAPES.rect.shape, 10, 12);
  const ctx = await browser.newContext();
  const page = await openImage(ctx, site, srv.url, urlId, { options: { readonly: true } });
  const el = page.locator(`[data-imagechat-shape][data-chat-id="${chat.id}"]`);
  await el.waitFor();
  await api('PATCH', `/api/v1/chats/${chat.id}`, { shape: SHAPES.ellipse.shape, x: 54.39, y: 16.51 });
  await until(async () => (await el.getAttribute('data-shape-type')) === 'ellipse', 3000);
  await assertDrawn(page, chat.id, SHAPES.ellipse.shape, await box(layerOf(page)), 'reshaped to an ellipse');
  assert.match(/** @type {string} */ (await markers(page).first().getAttribute('aria-label')), /^Ellipse, /);
  await api('PATCH', `/api/v1/chats/${chat.id}`, { shape: null });
  await el.waitFor({ state: 'detached', timeout: 3000 });
  assert.equal(await markers(page).count(), 1, 'the marker stays, a pin again');
  assert.match(/** @type {string} */ (await markers(page).first().getAttribute('aria-label')), /^Thread 1 by /);
  await ctx.close();
});

test('the toggle hides and shows every marker and shape, for readers too', async () => {
  const urlId = 'toggle';
  const chat = await seed(urlId, SHAPES.polygon.shape, 15, 55);
  await seed(urlId, undefined, 70, 30);
  for (const readonly of [false, true]) {
    const ctx = await browser.newContext();
    const page = await openImage(ctx, site, srv.url, urlId, { options: { readonly } });
    const shape = page.locator(`[data-imagechat-shape][data-chat-id="${chat.id}"]`);
    const toggle = page.locator('[data-imagechat-toggle-markers]');
    await shape.waitFor();
    assert.equal(await toggle.getAttribute('aria-pressed'), 'false');
    await toggle.click();
    assert.equal(await toggle.getAttribute('aria-pressed'), 'true');
    await until(async () => !(await shape.isVisible()) && !(await markers(page).first().isVisible()) && !(await markers(page).nth(1).isVisible()), 2000);
    if (!readonly) assert.equal(await toolOf(page, 'rect').isVisible(), false, 'no tools while everything is hidden');
    // Nothing to click while hidden: a click on the image opens no composer.
    const pic = await box(layerOf(page));
    await page.mouse.click(at(pic, 50, 50).x, at(pic, 50, 50).y);
    assert.equal(await page.locator('[data-imagechat-composer]').count(), 0);
    await toggle.click();
    await until(async () => (await shape.isVisible()) && (await markers(page).first().isVisible()), 2000);
    assert.equal(await toolOf(page, 'rect').count(), readonly ? 0 : 1, readonly ? 'readers get no tools' : 'writers get their tools back');
    await ctx.close();
  }
});

test('object-fit: cover and a scrolling panel: a shape stays on its part of the picture, within a frame of a scroll', async () => {
  const cover = await seed('shape-cover', { type: 'rect', x: 40, y: 30, w: 20, h: 40 }, 40, 30);
  const panelShape = { type: 'ellipse', cx: 70, cy: 40, rx: 10, ry: 15 };
  const inPanel = await seed('shape-panel', panelShape, 62.93, 29.39);
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await ctx.newPage();
  const href = hostPage(
    'shape-fit-scroll',
    `<main style="padding:24px;display:flex;gap:24px;align-items:flex-start">
<img id="cover" src="${IMG()}" alt="Cover" style="width:300px;height:300px;object-fit:cover">
<div id="panel" style="height:360px;width:640px;overflow:auto;border:2px solid #888"><p style="height:150px;margin:0">Text above</p>
<img id="inpanel" src="${IMG()}" alt="In a panel" style="display:block;width:600px"><p style="height:400px">Below</p></div></main>`,
    `${attachJs('cover', 'shape-cover')}\n${attachJs('inpanel', 'shape-panel')}`,
  );
  await page.goto(href);
  await until(async () => (await page.locator('[data-imagechat-status][data-state=live]').count()) === 2);
  await page.locator('[data-imagechat-shape]').nth(1).waitFor();
  // Cover: 1200 × 760 scaled by 300/760 is 473.7 × 300, centred: 86.8 px cut on each side.
  const cv = await box(page.locator('#cover'));
  const s = 300 / 760;
  const pic = { x: cv.x - (1200 * s - 300) / 2, y: cv.y, width: 1200 * s, height: 300 };
  await assertDrawn(page, cover.id, /** @type {Shape} */ (cover.shape), pic, 'cover');
  // The panel scrolls: the shape follows within a frame.
  for (const top of [100, 180]) {
    await page.evaluate((t) => (/** @type {HTMLElement} */ (document.getElementById('panel')).scrollTop = t), top);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    await assertDrawn(page, inPanel.id, panelShape, await box(page.locator('#inpanel')), `panel scrolled to ${top}`);
  }
  // Scrolled out of the panel, the shape is clipped with the picture, not drawn over the page.
  await page.evaluate(() => (/** @type {HTMLElement} */ (document.getElementById('panel')).scrollTop = 520));
  await sleep(100);
  const hit = await page.evaluate((chatId) => {
    const host = /** @type {Element} */ (document.querySelector('#inpanel + div'));
    const el = /** @type {Element} */ (host.shadowRoot?.querySelector(`[data-imagechat-shape][data-chat-id="${chatId}"]`));
    const r = el.getBoundingClientRect();
    const panel = /** @type {HTMLElement} */ (document.getElementById('panel')).getBoundingClientRect();
    const x = r.left + r.width / 2;
    return { above: r.bottom < panel.top, clipped: getComputedStyle(host).clipPath, at: document.elementFromPoint(x, r.top + r.height / 2) === host };
  }, inPanel.id);
  assert.ok(hit.above, 'the shape is above the panel');
  assert.ok(!hit.at, `nothing of the widget is there to see (${hit.clipped})`);
  await page.screenshot({ path: join(shotsDir(), 'regions-fit-scroll.png') });
  await ctx.close();
});

test('touch: with a tool chosen a finger draws instead of scrolling', async () => {
  const urlId = 'touch-shapes';
  const ctx = await browser.newContext({ viewport: { width: 390, height: 700 }, isMobile: true, hasTouch: true });
  const page = await openImage(ctx, site, srv.url, urlId, { width: 800 });
  await page.evaluate(() => document.body.append(Object.assign(document.createElement('div'), { style: 'height:2000px' })));
  await toolOf(page, 'rect').tap();
  assert.equal(await pressed(page), 'rect');
  const cdp = await ctx.newCDPSession(page);
  /** @param {string} type @param {number} x @param {number} y */
  const touch = (type, x, y) => cdp.send('Input.dispatchTouchEvent', { type, touchPoints: type === 'touchEnd' ? [] : [{ x, y }] });
  const pic = await box(layerOf(page));
  const [from, to] = [at(pic, 20, 20), at(pic, 60, 70)];
  await touch('touchStart', from.x, from.y);
  for (let i = 1; i <= 10; i++) {
    await touch('touchMove', from.x + ((to.x - from.x) * i) / 10, from.y + ((to.y - from.y) * i) / 10);
    await sleep(16);
  }
  await touch('touchEnd', 0, 0);
  assert.equal(await page.evaluate(() => scrollY), 0, 'the page did not scroll');
  const { body } = await post(page, urlId, 'Drawn with a finger');
  assertShape(body.shape, { type: 'rect', x: 20, y: 20, w: 40, h: 50 }, 'touch rect', 0.6);
  await page.screenshot({ path: join(shotsDir(), 'regions-touch.png') });
  await ctx.close();
});

test('the lazy file: never for readers (who still see shapes), once per page for writers, and a policy that refuses it leaves pins working', async () => {
  const urlId = 'lazy-readers';
  const chat = await seed(urlId, SHAPES.arrow.shape, 85, 85);
  // A reader of an image with a shape, and one of an image without: the core file alone.
  for (const [id, extra] of /** @type {const} */ ([[urlId, { readonly: true }], ['lazy-empty', { readonly: true }]])) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const seen = lazyRequests(page);
    await page.goto(hostPage(`lazy-reader-${id}`, `<img id="img" src="${IMG()}" alt="Product" style="display:block;width:600px">`, attachJs('img', id, extra)));
    await live(page);
    if (id === urlId) await page.locator(`[data-imagechat-shape][data-chat-id="${chat.id}"]`).waitFor();
    await sleep(300);
    assert.deepEqual(seen, [], `${id}: a reader loads no lazy file`);
    assert.equal(await page.locator('[data-imagechat-tool]').count(), 0, 'and gets no tools');
    await ctx.close();
  }
  // A writer with two images: one request, tools on both.
  const ctx = await browser.newContext({ viewport: { width: 1300, height: 700 } });
  const page = await ctx.newPage();
  const seen = lazyRequests(page);
  await page.goto(
    hostPage(
      'lazy-writer',
      `<main style="display:flex;gap:8px"><img id="a" src="${IMG()}" alt="A" style="width:600px"><img id="b" src="${IMG()}?b" alt="B" style="width:600px"></main>`,
      `${attachJs('a', urlId)}\n${attachJs('b', 'lazy-b')}`,
    ),
  );
  await until(async () => (await page.locator('[data-imagechat-tool=rect]').count()) === 2);
  await sleep(300);
  // regions.js, and the DOM helpers the lazy files share: each once.
  assert.deepEqual([...seen].sort(), ['/imagechat/dom.js', '/imagechat/regions.js'], 'fetched once for the page');
  await ctx.close();

  // A policy that allows imagechat.js by its path only: the lazy file is refused; shapes still show, pins still work.
  const ws = srv.url.replace(/^http/, 'ws');
  const strict = await browser.newContext();
  const sp = await strict.newPage();
  /** @type {string[]} */
  const errors = [];
  sp.on('pageerror', (e) => errors.push(e.message));
  const href = hostPage(
    'lazy-refused',
    `<img id="img" src="${IMG()}" alt="Product" style="display:block;width:600px">`,
    attachJs('img', urlId),
    { csp: `default-src 'none'; script-src 'self' ${srv.url}/imagechat.js; connect-src ${srv.url} ${ws}; img-src 'self' ${srv.url}; style-src 'self'` },
  );
  await sp.goto(href);
  await live(sp);
  await sp.locator(`[data-imagechat-shape][data-chat-id="${chat.id}"]`).waitFor();
  await sleep(300);
  assert.equal(await sp.locator('[data-imagechat-tool]').count(), 0, 'no tools without the lazy file');
  const pic = await box(layerOf(sp));
  await sp.mouse.click(at(pic, 30, 30).x, at(pic, 30, 30).y);
  const { body } = await post(sp, urlId, 'A pin under a strict policy');
  assert.equal(body.shape, undefined);
  assert.deepEqual(errors, [], 'nothing threw');
  await strict.close();
});

test('strict policies that allow imagechat.js (its server as a source, or a nonce with strict-dynamic) load the tools and draw without a violation', async () => {
  const urlId = 'lazy-strict-ok';
  const ws = srv.url.replace(/^http/, 'ws');
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await ctx.newPage();
  await page.goto(
    hostPage(
      'lazy-strict',
      `<img id="img" src="${IMG()}" alt="Product" width="600">`,
      `window.__violations = []; document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));\n${attachJs('img', urlId)}`,
      { csp: `default-src 'none'; script-src 'self' ${srv.url}; connect-src ${srv.url} ${ws}; img-src 'self' ${srv.url}; style-src 'self'` },
    ),
  );
  await live(page);
  await toolOf(page, 'ellipse').click();
  const pic = await box(layerOf(page));
  await drag(page, at(pic, 30, 30), at(pic, 60, 60));
  const { chat } = await post(page, urlId, 'Ellipse under a strict policy');
  await assertDrawn(page, chat.id, /** @type {Shape} */ (chat.shape), await box(layerOf(page)), 'strict');
  assert.deepEqual(await page.evaluate(() => /** @type {any} */ (window).__violations), []);
  await ctx.close();

  // A nonce with 'strict-dynamic' (no host list): the import made by the nonced script is trusted too.
  const nctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const np = await nctx.newPage();
  const nonce = 'n0nceForRegionsTest';
  await np.goto(
    site.add(
      '/lazy-nonce',
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>nonce</title></head><body><img id="img" src="${IMG()}" alt="Product" width="600">
<script nonce="${nonce}" src="${srv.url}/imagechat.js"></script><script nonce="${nonce}">window.__violations = []; document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
${attachJs('img', 'lazy-nonce')}</script></body></html>`,
      { 'content-security-policy': `script-src 'nonce-${nonce}' 'strict-dynamic'; object-src 'none'; base-uri 'none'` },
    ),
  );
  await live(np);
  await toolOf(np, 'arrow').click();
  const npic = await box(layerOf(np));
  await drag(np, at(npic, 20, 20), at(npic, 40, 50));
  const drawn = await post(np, 'lazy-nonce', 'Arrow under a nonce policy');
  assertShape(/** @type {any} */ (drawn.chat.shape), { type: 'arrow', x1: 20, y1: 20, x2: 40, y2: 50 }, 'nonce');
  assert.deepEqual(await np.evaluate(() => /** @type {any} */ (window).__violations), []);
  await nctx.close();
});

test('axe finds nothing serious with a shape selected (thread open, handles shown), light and dark; screenshots of every shape', async () => {
  const urlId = 'shapes-look';
  const ctx0 = await browser.newContext();
  const creator = await openImage(ctx0, site, srv.url, urlId);
  await toolOf(creator, 'polygon').waitFor();
  // The creator's own chats (so the handles show), one of them resolved.
  const own = await creator.evaluate(async ([server, u, shapes]) => {
    const s = JSON.parse(/** @type {string} */ (localStorage.getItem(Object.keys(localStorage).find((k) => k.startsWith('imagechat:')) || '')));
    const ids = [];
    for (const [i, { shape, at }] of Object.values(shapes).entries()) {
      const res = await fetch(`${server}/api/v1/chats`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${s.token}` }, body: JSON.stringify({ urlId: u, x: at[0], y: at[1], text: `Look at this ${shape.type} (${i + 1})`, shape }) });
      ids.push((await res.json()).chat.id);
    }
    await fetch(`${server}/api/v1/chats/${ids[1]}`, { method: 'PATCH', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${s.token}` }, body: JSON.stringify({ resolved: true }) });
    return ids;
  }, /** @type {const} */ ([srv.url, urlId, SHAPES]));
  const state = await ctx0.storageState();
  await ctx0.close();
  for (const colorScheme of /** @type {const} */ (['light', 'dark'])) {
    const ctx = await browser.newContext({ colorScheme, reducedMotion: 'reduce', viewport: { width: 1000, height: 760 }, storageState: state });
    const page = await openImage(ctx, site, srv.url, urlId, { width: 900 });
    await until(async () => (await page.locator('[data-imagechat-shape]').count()) === 4);
    await toolOf(page, 'rect').waitFor();
    await sleep(200);
    await page.screenshot({ path: join(shotsDir(), `regions-${colorScheme}.png`) });
    const pic = await box(layerOf(page));
    for (const [type, { shape }] of Object.entries(SHAPES)) {
      const [x, y, w, h] = extent(shape);
      const clip = { x: pic.x + (pic.width * (x - 6)) / 100, y: pic.y + (pic.height * (y - 6)) / 100, width: (pic.width * (w + 12)) / 100, height: (pic.height * (h + 12)) / 100 };
      await page.screenshot({ path: join(shotsDir(), `regions-${type}-${colorScheme}.png`), clip });
    }
    // Hovering a marker highlights its shape.
    const stroke = (/** @type {string} */ id) => page.locator(`[data-imagechat-shape][data-chat-id="${id}"]`).evaluate((el) => parseFloat(getComputedStyle(el).strokeWidth));
    const before = await stroke(own[0]);
    await page.locator(`[data-imagechat-marker][data-chat-id="${own[0]}"]`).hover();
    assert.ok((await stroke(own[0])) > before, 'hovering the marker highlights its shape');
    // Select the polygon: its thread opens, its shape is emphasised and shows its handles.
    await page.locator(`[data-imagechat-marker][data-chat-id="${own[2]}"]`).click();
    await page.locator('[data-imagechat-thread]').waitFor();
    assert.equal(await page.locator('[data-imagechat-handle]').count(), 4);
    assert.ok((await stroke(own[2])) > before, 'an open thread emphasises its shape');
    await sleep(150);
    await page.screenshot({ path: join(shotsDir(), `regions-selected-${colorScheme}.png`) });
    await page.addScriptTag({ content: AXE });
    const result = await page.evaluate(() => /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] }));
    /** @type {{id: string, impact: string, help: string, nodes: {target: unknown}[]}[]} */
    const bad = result.violations.filter((/** @type {{impact: string}} */ v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${JSON.stringify(v.nodes.map((n) => n.target))})`), [], colorScheme);
    await ctx.close();
  }
  // Forced colors: shapes and handles stay visible.
  const fc = await browser.newContext({ forcedColors: 'active', viewport: { width: 1000, height: 760 }, storageState: state });
  const page = await openImage(fc, site, srv.url, urlId, { width: 900 });
  await until(async () => (await page.locator('[data-imagechat-shape]').count()) === 4);
  await page.locator(`[data-imagechat-marker][data-chat-id="${own[0]}"]`).click();
  await page.locator('[data-imagechat-handle]').first().waitFor();
  await sleep(150);
  await page.screenshot({ path: join(shotsDir(), 'regions-forced-colors.png') });
  await fc.close();
});
