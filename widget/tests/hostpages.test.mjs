// The widget as a guest on real pages: a kit of small host pages, each with
// markup that sites really have (strict CSP, links, object-fit, scrolling
// panels, carousels, single-page apps, transforms, fixed headers, lightboxes,
// neighbours, touch, forced colors, hostile CSS, keyboard shortcuts), served
// from the test site's origin. Every page is screenshotted into
// tests/screenshots/host-*.png for people to look at.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launch, live, markers, shotsDir, sleep, startServer, startSite, until } from './helpers.mjs';

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
  return res.json();
}

/** A chat stored before the page opens. @param {string} urlId @param {number} x @param {number} y */
async function seed(urlId, x, y, text = `A note at ${x}, ${y}`) {
  return /** @type {string} */ ((await api('POST', '/api/v1/chats', { urlId, x, y, text })).chat.id);
}

/** The stored chats of an image. @param {string} urlId @returns {Promise<{id: string, x: number, y: number}[]>} */
async function stored(urlId) {
  return (await api('GET', `/api/v1/chats?urlId=${encodeURIComponent(urlId)}`)).chats;
}

const IMG = () => `${srv.url}/static/demo.svg`; // 1200 × 760

/**
 * A host page: its markup, then the widget and an attach script. With `csp`
 * the attach script is a file of the site (no inline script) and the policy
 * is sent as a response header.
 * @param {string} name @param {string} body @param {string} script
 * @param {{csp?: string, css?: string, headExtra?: string}} [o]
 */
function hostPage(name, body, script, o = {}) {
  const css = o.css ? `<link rel="stylesheet" href="/${name}.css">` : '';
  if (o.css) site.add(`/${name}.css`, o.css);
  const inline = o.csp ? `<script src="/${name}.js"></script>` : `<script>${script}</script>`;
  if (o.csp) site.add(`/${name}.js`, script);
  return site.add(
    `/${name}`,
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${name}</title>${css}${o.headExtra || ''}</head>
<body>${body}<script src="${srv.url}/imagechat.js"></script>${inline}</body></html>`,
    o.csp ? { 'content-security-policy': o.csp } : {},
  );
}

/** attach() calls for images by id: [id, urlId | null (default), extra options]. @param {[string, string | null, object?][]} list */
const attachAll = (list) =>
  list
    .map(([id, urlId, extra]) => `window[${JSON.stringify(id)}] = ImageChat.attach(document.getElementById(${JSON.stringify(id)}), Object.assign({ tenantId: 'demo', locale: 'en'${urlId ? `, urlId: ${JSON.stringify(urlId)}` : ''} }, ${JSON.stringify(extra || {})}));`)
    .join('\n');

/** @typedef {{x: number, y: number, width: number, height: number}} Box */

/** @param {import('playwright-core').Locator} l @returns {Promise<Box>} */
async function box(l) {
  const b = await l.boundingBox();
  if (!b) throw new Error('not visible');
  return b;
}

/** The layer of the widget on image #id. @param {import('playwright-core').Page} page @param {string} id */
const layerOf = (page, id) => page.locator(`#${id} + div [data-imagechat-layer]`);

/** The centre of a marker. @param {import('playwright-core').Page} page @param {string} chatId */
async function markerCentre(page, chatId) {
  const b = await box(page.locator(`[data-imagechat-marker][data-chat-id="${chatId}"]`));
  return { x: b.x + b.width / 2, y: b.y + b.height / 2 };
}

/** Asserts a marker is centred on a client point (1.5 px). @param {import('playwright-core').Page} page @param {string} chatId @param {{x: number, y: number}} want @param {string} what */
async function assertAt(page, chatId, want, what) {
  const got = await markerCentre(page, chatId);
  assert.ok(Math.abs(got.x - want.x) < 1.5 && Math.abs(got.y - want.y) < 1.5, `${what}: marker at ${got.x.toFixed(1)}, ${got.y.toFixed(1)}, want ${want.x.toFixed(1)}, ${want.y.toFixed(1)}`);
}

/** A point at (x %, y %) of an element's box (a plain image: its picture). @param {Box} b @param {number} x @param {number} y */
const at = (b, x, y) => ({ x: b.x + (b.width * x) / 100, y: b.y + (b.height * y) / 100 });

/** Opens the composer with a click at a client point, writes and posts; waits until it is stored under urlId. @param {import('playwright-core').Page} page @param {{x: number, y: number}} p @param {string} urlId */
async function postAt(page, p, urlId, text = 'Posted from a host page') {
  const before = (await stored(urlId)).length;
  await page.mouse.click(p.x, p.y);
  const composer = page.locator('[data-imagechat-composer]');
  await composer.locator('textarea').fill(text, { timeout: 3000 });
  await composer.locator('[type=submit]').click({ timeout: 3000 });
  return until(async () => {
    const chats = await stored(urlId);
    return chats.length > before && chats[chats.length - 1];
  }, 3000);
}

/** @param {{x: number, y: number}} c @param {number} x @param {number} y @param {string} what */
function assertStored(c, x, y, what) {
  assert.ok(Math.abs(c.x - x) < 0.6 && Math.abs(c.y - y) < 0.6, `${what}: stored at ${c.x}, ${c.y}, want ${x}, ${y}`);
}

/** @param {import('playwright-core').Page} page @param {string} name */
const shot = (page, name) => page.screenshot({ path: join(shotsDir(), `host-${name}.png`) });

/** @param {import('playwright-core').Page} page */
async function newMarkersSettled(page) {
  await until(async () => !(await markers(page).evaluateAll((els) => els.some((e) => (e.getAttribute('data-chat-id') || '').startsWith('pending-')))), 3000);
}

test('strict CSP without unsafe-inline (style-src self, default-src *): styled, clickable, nothing refused', async () => {
  const ws = srv.url.replace(/^http/, 'ws');
  const policies = {
    'style-self': `default-src 'none'; script-src 'self' ${srv.url}; connect-src ${srv.url} ${ws}; img-src 'self' ${srv.url}; style-src 'self'`,
    'default-star': `default-src * ${ws}`,
  };
  for (const [name, csp] of Object.entries(policies)) {
    const urlId = `csp-${name}`;
    const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
    const page = await ctx.newPage();
    /** @type {string[]} */
    const refused = [];
    page.on('console', (m) => /Content Security Policy/i.test(m.text()) && refused.push(m.text()));
    const href = hostPage(
      `csp-${name}`,
      `<main><h1>Strict CSP</h1><img id="img" src="${IMG()}" alt="Mockup"></main>`,
      `window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
${attachAll([['img', urlId]])}`,
      { csp, css: 'body{margin:0;padding:24px;font-family:sans-serif} img{display:block;width:600px;height:auto}' },
    );
    await page.goto(href);
    await live(page);
    const img = await box(page.locator('#img'));
    const layer = await box(layerOf(page, 'img'));
    assert.deepEqual([layer.x, layer.y, layer.width, layer.height].map(Math.round), [img.x, img.y, img.width, img.height].map(Math.round), `${name}: the layer covers the image`);
    const c = await postAt(page, at(img, 75, 25), urlId);
    assertStored(c, 75, 25, name);
    await newMarkersSettled(page);
    await assertAt(page, c.id, at(img, 75, 25), name);
    await markers(page).first().click();
    const thread = page.locator('[data-imagechat-thread]');
    const look = await thread.evaluate((el) => {
      const cs = getComputedStyle(el);
      return { position: cs.position, bg: cs.backgroundColor, radius: cs.borderTopLeftRadius };
    });
    assert.equal(look.position, 'fixed', `${name}: the thread is styled`);
    assert.notEqual(look.bg, 'rgba(0, 0, 0, 0)', `${name}: the thread has its background`);
    await sleep(200);
    await shot(page, `csp-${name}`);
    assert.deepEqual(await page.evaluate(() => /** @type {any} */ (window).__violations), [], `${name}: nothing was refused`);
    assert.deepEqual(refused, [], name);
    await ctx.close();
  }
});

test('an image inside <a href>: placing, writing, posting and opening never follow the link or reach the page', async () => {
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await ctx.newPage();
  site.add('/elsewhere', '<!doctype html><title>elsewhere</title><p>You left the page.</p>');
  const href = hostPage(
    'link',
    `<main style="padding:24px"><a id="link" href="/elsewhere"><img id="img" src="${IMG()}" alt="Product" style="display:block;width:600px"></a></main>`,
    `window.__hostClicks = 0;
document.addEventListener('click', () => window.__hostClicks++);
${attachAll([['img', 'link']])}`,
  );
  await page.goto(href);
  await live(page);
  const img = await box(page.locator('#img'));
  const c = await postAt(page, at(img, 30, 40), 'link');
  assertStored(c, 30, 40, 'link');
  await newMarkersSettled(page);
  await markers(page).first().click();
  await page.locator('[data-imagechat-thread] textarea').click();
  await page.locator('[data-imagechat-thread] [type=submit]').click(); // empty: an error, no navigation
  await sleep(300);
  assert.equal(page.url(), href, 'still on the page');
  assert.equal(await page.evaluate(() => /** @type {any} */ (window).__hostClicks), 0, "the page's click handlers saw nothing");
  await shot(page, 'link');
  await ctx.close();
});

test('object-fit cover and contain: markers on the picture, cropped ones counted, letterbox clicks ignored', async () => {
  const [inside, cropped] = [await seed('fit-cover', 60, 40), await seed('fit-cover', 95, 50)];
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await ctx.newPage();
  const href = hostPage(
    'object-fit',
    `<main style="padding:24px;display:flex;gap:24px;align-items:flex-start">
<img id="cover" src="${IMG()}" alt="Cover" style="width:300px;height:300px;object-fit:cover">
<img id="contain" src="${IMG()}" alt="Contain" style="width:600px;height:200px;object-fit:contain;object-position:0% 50%;background:#ddd"></main>`,
    attachAll([
      ['cover', 'fit-cover'],
      ['contain', 'fit-contain'],
    ]),
  );
  await page.goto(href);
  await until(async () => (await page.locator('[data-imagechat-status][data-state=live]').count()) === 2);
  await markers(page).first().waitFor();
  // Cover: 1200 × 760 scaled by 300/760 is 473.7 × 300, centred: 86.8 px cut on each side.
  const cv = await box(page.locator('#cover'));
  const s = 300 / 760;
  const pic = { x: cv.x - (1200 * s - 300) / 2, y: cv.y, width: 1200 * s, height: 300 };
  await until(async () => (await page.locator(`[data-chat-id="${cropped}"]`).isHidden()), 2000);
  await assertAt(page, inside, at(pic, 60, 40), 'cover');
  assert.match(/** @type {string} */ (await page.locator('#cover + div').evaluate((h) => h.shadowRoot?.textContent)), /1 hidden/);
  const c1 = await postAt(page, { x: cv.x + 230, y: cv.y + 60 }, 'fit-cover');
  assertStored(c1, ((230 + (1200 * s - 300) / 2) / (1200 * s)) * 100, 20, 'cover click');
  // Contain: 1200 × 760 scaled by 200/760 is 315.8 × 200 at the left; the rest is a bar.
  const ct = await box(page.locator('#contain'));
  await page.mouse.click(ct.x + 500, ct.y + 100);
  await sleep(300);
  assert.equal(await page.locator('#contain + div [data-imagechat-composer]').count(), 0, 'a click on the letterbox bar does nothing');
  const c2 = await postAt(page, { x: ct.x + 158, y: ct.y + 50 }, 'fit-contain');
  assertStored(c2, (158 / 315.79) * 100, 25, 'contain click');
  await newMarkersSettled(page);
  await assertAt(page, c2.id, { x: ct.x + 158, y: ct.y + 50 }, 'contain');
  await shot(page, 'object-fit');
  await ctx.close();
});

test('a scrolling panel and a banner inserted above: markers follow within a frame, a click right after a scroll lands where it was made', async () => {
  const id = await seed('scroll-panel', 75, 25);
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await ctx.newPage();
  const href = hostPage(
    'scroll-panel',
    `<main style="padding:24px"><div id="top"></div><div id="panel" style="height:360px;width:640px;overflow:auto;border:2px solid #888">
<p style="height:150px;margin:0">Text above the image</p><img id="img" src="${IMG()}" alt="In a panel" style="display:block;width:600px"><p style="height:400px">Below</p></div></main>`,
    attachAll([['img', 'scroll-panel']]),
  );
  await page.goto(href);
  await live(page);
  await markers(page).first().waitFor();
  await page.evaluate(() => (/** @type {HTMLElement} */ (document.getElementById('panel')).scrollTop = 100));
  await sleep(50);
  await assertAt(page, id, at(await box(page.locator('#img')), 75, 25), 'after scrolling the panel');
  const [img, layer] = [await box(page.locator('#img')), await box(layerOf(page, 'img'))];
  assert.deepEqual([layer.x, layer.y, layer.width, layer.height].map(Math.round), [img.x, img.y, img.width, img.height].map(Math.round), 'the layer follows the scroll');
  await page.evaluate(() => (/** @type {HTMLElement} */ (document.getElementById('panel')).scrollTop = 120));
  await sleep(50);
  const c = await postAt(page, at(await box(page.locator('#img')), 55, 35), 'scroll-panel');
  assertStored(c, 55, 35, 'a click 50 ms after a scroll');
  await page.evaluate(() => document.getElementById('top')?.insertAdjacentHTML('afterbegin', '<div style="height:120px;background:#fde68a">A banner</div>'));
  await sleep(50);
  await assertAt(page, id, at(await box(page.locator('#img')), 75, 25), 'after a banner was inserted above');
  // Scrolled out of the panel: the marker is clipped with the image, not drawn over the page.
  await page.evaluate(() => (/** @type {HTMLElement} */ (document.getElementById('panel')).scrollTop = 330));
  await sleep(100);
  const hit = await page.evaluate((chatId) => {
    const m = /** @type {HTMLElement} */ (document.querySelector('#img + div')?.shadowRoot?.querySelector(`[data-chat-id="${chatId}"]`));
    const r = m.getBoundingClientRect();
    const panel = /** @type {HTMLElement} */ (document.getElementById('panel')).getBoundingClientRect();
    return { above: r.bottom < panel.top, hit: document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2)?.id || '' };
  }, id);
  assert.ok(hit.above, 'the marker is above the panel');
  assert.notEqual(hit.hit, 'img', 'an image point scrolled out of the panel shows no marker');
  await shot(page, 'scroll-panel');
  await ctx.close();
});

test('carousel and single-page app: a new src or page URL switches to that picture’s discussion', async () => {
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await ctx.newPage();
  const href = hostPage(
    'carousel',
    `<main style="padding:24px"><img id="img" src="${IMG()}?slide=1" alt="Slide" style="display:block;width:600px"></main>`,
    attachAll([['img', null]]),
  );
  const slide = (/** @type {number} */ n, path = '/carousel') => `${site.url}${path}#${IMG()}?slide=${n}`;
  const second = await seed(slide(2), 30, 30, 'On the second slide');
  await page.goto(href);
  await live(page);
  assert.equal(await page.evaluate(() => /** @type {any} */ (window).img.urlId), slide(1));
  assert.equal(await markers(page).count(), 0);
  await page.evaluate((src) => (/** @type {HTMLImageElement} */ (document.getElementById('img')).src = src), `${IMG()}?slide=2`);
  await page.locator(`[data-chat-id="${second}"]`).waitFor({ timeout: 3000 });
  assert.equal(await page.evaluate(() => /** @type {any} */ (window).img.urlId), slide(2));
  const c = await postAt(page, at(await box(page.locator('#img')), 60, 60), slide(2));
  assertStored(c, 60, 60, 'new chat on the second slide');
  assert.equal((await stored(slide(1))).length, 0, 'nothing went to the first slide');
  // A single-page app goes to another product: new URL and new picture.
  await page.evaluate((src) => {
    history.pushState({}, '', '/product-b');
    /** @type {HTMLImageElement} */ (document.getElementById('img')).src = src;
  }, `${IMG()}?slide=3`);
  await until(async () => (await markers(page).count()) === 0, 3000);
  assert.equal(await page.evaluate(() => /** @type {any} */ (window).img.urlId), slide(3, '/product-b'));
  // Back: the old product page and its picture again.
  await page.goBack();
  await page.evaluate((src) => (/** @type {HTMLImageElement} */ (document.getElementById('img')).src = src), `${IMG()}?slide=2`);
  await until(async () => (await markers(page).count()) === 2, 3000);
  // An inactive slide hidden with visibility: hidden shows no markers either.
  await page.evaluate(() => ((/** @type {HTMLElement} */ (document.querySelector('main'))).style.visibility = 'hidden'));
  await until(async () => !(await markers(page).first().isVisible()), 2000);
  await page.evaluate(() => ((/** @type {HTMLElement} */ (document.querySelector('main'))).style.visibility = ''));
  await until(async () => markers(page).first().isVisible(), 2000);
  await shot(page, 'carousel');
  await ctx.close();
});

test('an ancestor transform: scale(0.8) and CSS zoom: 1.5: the layer covers the image, clicks land where they are made', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1300, height: 900 } });
  const page = await ctx.newPage();
  const href = hostPage(
    'transforms',
    `<main style="padding:24px;display:flex;gap:24px;align-items:flex-start">
<div style="transform:scale(0.8);transform-origin:0 0;width:480px"><img id="scaled" src="${IMG()}" alt="Scaled" style="display:block;width:480px;height:300px"></div>
<div style="zoom:1.5"><img id="zoomed" src="${IMG()}" alt="Zoomed" style="display:block;width:400px;height:250px"></div></main>`,
    attachAll([
      ['scaled', 'scaled'],
      ['zoomed', 'zoomed'],
    ]),
  );
  await page.goto(href);
  await until(async () => (await page.locator('[data-imagechat-status][data-state=live]').count()) === 2);
  for (const id of ['scaled', 'zoomed']) {
    const img = await box(page.locator(`#${id}`));
    await until(async () => {
      const layer = await box(layerOf(page, id));
      return [layer.x - img.x, layer.y - img.y, layer.width - img.width, layer.height - img.height].every((d) => Math.abs(d) < 1.5);
    }, 2000).catch(async () => assert.fail(`${id}: layer ${JSON.stringify(await box(layerOf(page, id)))} over image ${JSON.stringify(img)}`));
    const c = await postAt(page, at(img, 75, 25), id);
    assertStored(c, 75, 25, id);
    await newMarkersSettled(page);
    await assertAt(page, c.id, at(img, 75, 25), id);
  }
  await shot(page, 'transforms');
  await ctx.close();
});

test('a fixed header with the highest z-index on a phone: the full-screen thread is above it', async () => {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 700 }, isMobile: true, hasTouch: true });
  const page = await ctx.newPage();
  const href = hostPage(
    'fixed-header',
    `<header style="position:fixed;top:0;left:0;right:0;height:64px;z-index:2147483647;background:#111827;color:#fff;display:flex;align-items:center;padding:0 16px;font:18px sans-serif">Shop</header>
<main style="padding:80px 12px 12px"><img id="img" src="${IMG()}" alt="Product" style="display:block;width:100%"></main>`,
    attachAll([['img', 'fixed-header']]),
  );
  await page.goto(href);
  await live(page);
  await postAt(page, at(await box(page.locator('#img')), 40, 50), 'fixed-header');
  await newMarkersSettled(page);
  await markers(page).first().click();
  const thread = page.locator('[data-imagechat-thread]');
  await thread.waitFor();
  await sleep(200);
  for (const sel of ['h2', '[data-imagechat-action=resolve]', '[data-imagechat-action=delete-chat]', 'button[aria-label=Close]']) {
    const top = await thread.locator(sel).evaluate((el) => {
      const r = el.getBoundingClientRect();
      const [x, y] = [r.left + r.width / 2, r.top + r.height / 2];
      const host = /** @type {Element} */ (document.querySelector('#img + div'));
      return document.elementFromPoint(x, y) === host && el.contains(/** @type {ShadowRoot} */ (host.shadowRoot).elementFromPoint(x, y));
    });
    assert.ok(top, `${sel} is on top`);
  }
  await shot(page, 'fixed-header');
  await thread.locator('button[aria-label=Close]').click({ timeout: 3000 });
  await thread.waitFor({ state: 'detached', timeout: 2000 });
  await ctx.close();
});

test('the same <img> moved into a lightbox takes its markers along, and back', async () => {
  const id = await seed('lightbox', 40, 60);
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await ctx.newPage();
  const href = hostPage(
    'lightbox',
    `<main style="padding:24px"><div id="gallery"><img id="img" src="${IMG()}" alt="Photo" style="display:block;width:300px"></div></main>
<div id="modal" style="display:none;position:fixed;inset:0;background:rgba(0,0,0,.85);align-items:center;justify-content:center"></div>`,
    `${attachAll([['img', 'lightbox']])}
window.openBox = () => { const m = document.getElementById('modal'), i = document.getElementById('img'); m.style.display = 'flex'; m.append(i); i.style.width = '800px'; document.getElementById('gallery').style.display = 'none'; };
window.closeBox = () => { const g = document.getElementById('gallery'), i = document.getElementById('img'); g.style.display = ''; g.append(i); i.style.width = '300px'; document.getElementById('modal').style.display = 'none'; };`,
  );
  await page.goto(href);
  await live(page);
  await markers(page).first().waitFor();
  await page.evaluate(() => /** @type {any} */ (window).openBox());
  await until(async () => page.locator(`[data-chat-id="${id}"]`).isVisible(), 2000);
  await sleep(100);
  await assertAt(page, id, at(await box(page.locator('#img')), 40, 60), 'in the lightbox');
  await shot(page, 'lightbox');
  await page.evaluate(() => /** @type {any} */ (window).closeBox());
  await sleep(100);
  await assertAt(page, id, at(await box(page.locator('#img')), 40, 60), 'back in the gallery');
  await ctx.close();
});

test('two images side by side: the first one’s composer over the second takes the click; one composer per page', async () => {
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await ctx.newPage();
  const href = hostPage(
    'neighbours',
    `<main style="padding:24px;display:flex;gap:8px"><img id="a" src="${IMG()}" alt="Left" style="width:360px"><img id="b" src="${IMG()}" alt="Right" style="width:360px"></main>`,
    attachAll([
      ['a', 'neighbour-a'],
      ['b', 'neighbour-b'],
    ]),
  );
  await page.goto(href);
  await until(async () => (await page.locator('[data-imagechat-status][data-state=live]').count()) === 2);
  const c = await postAt(page, at(await box(page.locator('#a')), 50, 50), 'neighbour-a');
  assertStored(c, 50, 50, 'posted on the left image');
  assert.equal((await stored('neighbour-b')).length, 0);
  await page.mouse.click(...Object.values(at(await box(page.locator('#a')), 20, 20)));
  await page.locator('[data-imagechat-composer] textarea').fill('Half written');
  await page.mouse.click(...Object.values(at(await box(page.locator('#b')), 80, 80)));
  await sleep(100);
  assert.equal(await page.locator('[data-imagechat-composer]').count(), 1, 'at most one new-chat composer on the page');
  assert.equal(await page.locator('#b + div [data-imagechat-composer]').count(), 1);
  await shot(page, 'neighbours');
  await ctx.close();
});

test('touch: a swipe that starts on one’s own marker scrolls the page; a long press moves it', async () => {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 700 }, isMobile: true, hasTouch: true });
  const page = await ctx.newPage();
  const href = hostPage(
    'touch',
    `<main style="padding:12px"><img id="img" src="${IMG()}" alt="Product" style="display:block;width:100%"><div style="height:2000px"></div></main>`,
    attachAll([['img', 'touch']]),
  );
  await page.goto(href);
  await live(page);
  const c = await postAt(page, at(await box(page.locator('#img')), 50, 50), 'touch');
  await newMarkersSettled(page);
  /** @type {string[]} */
  const patches = [];
  page.on('request', (r) => r.method() === 'PATCH' && patches.push(r.postData() || ''));
  const cdp = await ctx.newCDPSession(page);
  /** @param {string} type @param {number} x @param {number} y */
  const touch = (type, x, y) => cdp.send('Input.dispatchTouchEvent', { type, touchPoints: type === 'touchEnd' ? [] : [{ x, y }] });
  let m = await markerCentre(page, c.id);
  await touch('touchStart', m.x, m.y);
  for (let i = 1; i <= 10; i++) {
    await touch('touchMove', m.x, m.y - i * 15);
    await sleep(16);
  }
  await touch('touchEnd', 0, 0);
  await sleep(500);
  assert.deepEqual(patches, [], 'a swipe moves nothing');
  assert.ok((await page.evaluate(() => scrollY)) > 50, 'the swipe scrolled the page');
  const [chat] = await stored('touch');
  assertStored(chat, 50, 50, 'the marker stayed');
  await page.evaluate(() => scrollTo(0, 0));
  await sleep(200);
  // A deliberate gesture: press, hold, then drag.
  m = await markerCentre(page, c.id);
  const img = await box(page.locator('#img'));
  await touch('touchStart', m.x, m.y);
  await sleep(700);
  for (let i = 1; i <= 10; i++) {
    await touch('touchMove', m.x + (img.width * 0.2 * i) / 10, m.y);
    await sleep(16);
  }
  await touch('touchEnd', 0, 0);
  await until(async () => patches.length === 1, 3000);
  assert.ok(Math.abs(JSON.parse(patches[0]).x - 70) < 1.5 && Math.abs(JSON.parse(patches[0]).y - 50) < 1.5, patches[0]);
  await shot(page, 'touch');
  await ctx.close();
});

test('forced colors: the focused image layer shows an outline; markers keep a visible edge', async () => {
  await seed('forced', 30, 40);
  const ctx = await browser.newContext({ forcedColors: 'active', reducedMotion: 'reduce' });
  const page = await ctx.newPage();
  const href = hostPage('forced-colors', `<main style="padding:24px"><img id="img" src="${IMG()}" alt="Product" style="display:block;width:600px"></main>`, attachAll([['img', 'forced']]));
  await page.goto(href);
  await live(page);
  await page.keyboard.press('Tab');
  const ring = await layerOf(page, 'img').evaluate((el) => {
    const cs = getComputedStyle(el);
    return { focused: el.matches(':focus-visible'), style: cs.outlineStyle, width: parseFloat(cs.outlineWidth) };
  });
  assert.ok(ring.focused, 'the layer has keyboard focus');
  assert.ok(ring.style !== 'none' && ring.width >= 2, `focus indicator ${JSON.stringify(ring)}`);
  const edge = await markers(page).first().evaluate((el) => {
    const cs = getComputedStyle(el);
    return { style: cs.borderTopStyle, width: parseFloat(cs.borderTopWidth), color: cs.borderTopColor, bg: cs.backgroundColor };
  });
  assert.ok(edge.style === 'solid' && edge.width >= 2 && edge.color !== edge.bg, `marker edge ${JSON.stringify(edge)}`);
  await shot(page, 'forced-colors');
  await ctx.close();
});

test("the page's CSS stays out: * { font-size: 30px !important } reaches no comment or text box", async () => {
  await seed('hostile-css', 40, 40, 'Readable at the widget’s own size');
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await ctx.newPage();
  const href = hostPage(
    'hostile-css',
    `<main><img id="img" src="${IMG()}" alt="Product"></main>`,
    attachAll([['img', 'hostile-css']]),
    { css: '* { font-size: 30px !important; letter-spacing: 4px !important; color: #c00 !important; line-height: 3 !important } img { display: block; width: 600px; margin: 24px }' },
  );
  await page.goto(href);
  await live(page);
  await markers(page).first().click();
  const thread = page.locator('[data-imagechat-thread]');
  await thread.locator('[data-imagechat-comment]').first().waitFor();
  const look = (/** @type {import('playwright-core').Locator} */ l) => l.evaluate((el) => [getComputedStyle(el).fontSize, getComputedStyle(el).letterSpacing]);
  for (const [what, l] of /** @type {const} */ ([
    ['comment', thread.locator('[data-imagechat-comment] p').first()],
    ['reply box', thread.locator('textarea')],
    ['status', page.locator('[data-imagechat-status]')],
  ])) {
    const [size, spacing] = await look(l);
    assert.ok(parseFloat(size) <= 16, `${what}: font-size ${size}`);
    assert.equal(spacing, 'normal', `${what}: letter-spacing`);
  }
  await shot(page, 'hostile-css');
  await ctx.close();
});

test("keys stay in the widget: the page's keydown listeners and shortcuts see nothing while the user places and writes", async () => {
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await ctx.newPage();
  const href = hostPage(
    'shortcuts',
    `<main style="padding:24px"><input id="search" aria-label="Search"><img id="img" src="${IMG()}" alt="Product" style="display:block;width:600px"></main>`,
    `window.__keys = [];
const guard = (e) => { if (e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement) return; window.__keys.push(e.type + ':' + e.key); if (e.key === 'j') document.getElementById('search').focus(); };
document.addEventListener('keydown', guard);
document.addEventListener('keyup', guard);
window.addEventListener('keypress', guard);
document.addEventListener('input', (e) => window.__keys.push('input'));
${attachAll([['img', 'shortcuts']])}`,
  );
  await page.goto(href);
  await live(page);
  await layerOf(page, 'img').focus();
  for (const k of ['Enter', 'ArrowRight', 'Shift+ArrowDown', 'Escape', 'Enter', 'ArrowLeft', 'Enter']) await page.keyboard.press(k);
  await page.keyboard.type('j and k are the page’s shortcuts');
  assert.equal(await page.locator('[data-imagechat-composer] textarea').inputValue(), 'j and k are the page’s shortcuts');
  await page.keyboard.press('Escape');
  assert.deepEqual(await page.evaluate(() => /** @type {any} */ (window).__keys), []);
  await shot(page, 'shortcuts');
  await ctx.close();
});

test('readonly: the image layer does not offer to place markers', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const href = hostPage('readonly', `<main style="padding:24px"><img id="img" src="${IMG()}" alt="Product" style="display:block;width:600px"></main>`, attachAll([['img', 'readonly', { readonly: true }]]));
  await page.goto(href);
  await live(page);
  const layer = layerOf(page, 'img');
  const said = await layer.evaluate((el) => `${el.getAttribute('aria-label')} ${el.getAttribute('aria-describedby') ? el.getRootNode() instanceof ShadowRoot && /** @type {ShadowRoot} */ (el.getRootNode()).getElementById(/** @type {string} */ (el.getAttribute('aria-describedby')))?.textContent : ''}`);
  assert.doesNotMatch(said, /Enter|place|Arrow/i, said);
  await page.evaluate(() => /** @type {any} */ (window).img.update({ readonly: false }));
  assert.match(/** @type {string} */ (await layer.getAttribute('aria-label')), /Enter/);
  await ctx.close();
});

test('markup that already worked keeps working: <picture>/srcset, RTL, iframe, 400 % zoom, remounts, lazy images far below', async () => {
  const ids = { picture: await seed('ok-picture', 25, 75), rtl: await seed('ok-rtl', 25, 75), lazy: await seed('ok-lazy', 25, 75), remount: await seed('ok-remount', 25, 75), frame: await seed('ok-frame', 25, 75) };
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await ctx.newPage();
  const href = hostPage(
    'already-working',
    `<main style="padding:24px">
<picture><source srcset="${IMG()}?w=2 2x, ${IMG()}?w=1 1x"><img id="picture" src="${IMG()}" alt="Picture" style="display:block;width:400px"></picture>
<section dir="rtl" style="margin-top:16px;text-align:right"><p>نص من اليمين إلى اليسار</p><img id="rtl" src="${IMG()}" alt="RTL" style="width:400px"></section>
<div id="holder" style="margin-top:16px"><img id="remount" src="${IMG()}" alt="Remounted" style="display:block;width:400px"></div>
<div style="height:3000px"></div>
<img id="lazy" loading="lazy" src="${IMG()}?lazy" alt="Lazy" style="display:block;width:400px"></main>`,
    `${attachAll([
      ['picture', 'ok-picture'],
      ['rtl', 'ok-rtl'],
      ['remount', 'ok-remount'],
      ['lazy', 'ok-lazy'],
    ])}`,
  );
  await page.goto(href);
  await until(async () => (await page.locator('[data-imagechat-status][data-state=live]').count()) === 4);
  for (const id of ['picture', 'rtl', 'remount']) {
    await page.locator(`[data-chat-id="${ids[/** @type {'rtl'} */ (id)]}"]`).waitFor();
    await assertAt(page, ids[/** @type {'rtl'} */ (id)], at(await box(page.locator(`#${id}`)), 25, 75), id);
  }
  // A framework remounts the image: out of the DOM, then back.
  await page.evaluate(() => {
    const i = /** @type {HTMLElement} */ (document.getElementById('remount'));
    i.remove();
    setTimeout(() => document.getElementById('holder')?.append(i), 50);
  });
  await sleep(300);
  await assertAt(page, ids.remount, at(await box(page.locator('#remount')), 25, 75), 'remounted');
  await page.screenshot({ path: join(shotsDir(), 'host-already-working.png'), fullPage: true, clip: { x: 0, y: 0, width: 900, height: 1000 } });
  await page.locator('#lazy').scrollIntoViewIfNeeded();
  await until(async () => (await page.locator('#lazy').evaluate((i) => /** @type {HTMLImageElement} */ (i).complete && /** @type {HTMLImageElement} */ (i).naturalWidth > 0)), 3000);
  await sleep(100);
  await assertAt(page, ids.lazy, at(await box(page.locator('#lazy')), 25, 75), 'lazy');

  // An iframe of the site, and a page zoomed to 400 % (320 CSS px wide).
  const inner = hostPage('framed', `<img id="img" src="${IMG()}" alt="Framed" style="display:block;width:100%">`, attachAll([['img', 'ok-frame']]));
  const outer = site.add('/framing', `<!doctype html><html lang="en"><title>frame</title><body style="margin:24px"><iframe src="${inner}" title="Framed image" style="width:500px;height:400px;border:1px solid #888"></iframe></body></html>`);
  await page.goto(outer);
  const frame = page.frameLocator('iframe');
  await frame.locator(`[data-chat-id="${ids.frame}"]`).waitFor();
  const fb = await box(frame.locator('#img'));
  const fm = await box(frame.locator(`[data-chat-id="${ids.frame}"]`));
  assert.ok(Math.abs(fm.x + fm.width / 2 - (fb.x + fb.width * 0.25)) < 1.5 && Math.abs(fm.y + fm.height / 2 - (fb.y + fb.height * 0.75)) < 1.5, 'iframe');
  await ctx.close();
  const zoomed = await browser.newContext({ viewport: { width: 320, height: 256 }, deviceScaleFactor: 4 });
  const zp = await zoomed.newPage();
  await zp.goto(inner);
  await live(zp);
  const c = await postAt(zp, at(await box(zp.locator('#img')), 60, 40), 'ok-frame');
  assertStored(c, 60, 40, '400 %');
  assert.ok((await zp.evaluate(() => document.documentElement.scrollWidth)) <= 320, 'no sideways scrolling at 320 px');
  await shot(zp, 'zoom-400');
  await zoomed.close();
});

test('an open thread (in the top layer) stays beside its marker while the page scrolls, and scrolls away with it', async () => {
  const id = await seed('scroll-thread', 30, 30);
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await ctx.newPage();
  const href = hostPage('scroll-thread', `<main style="padding:24px"><img id="img" src="${IMG()}" alt="Product" style="display:block;width:600px"><div style="height:3000px"></div></main>`, attachAll([['img', 'scroll-thread']]));
  await page.goto(href);
  await live(page);
  await page.locator(`[data-chat-id="${id}"]`).click();
  const thread = page.locator('[data-imagechat-thread]');
  await thread.waitFor();
  const beside = async () => {
    const [m, t] = [await markerCentre(page, id), await box(thread)];
    return Math.abs(t.y - (m.y - 20)) < 2 && t.x > m.x;
  };
  assert.ok(await beside(), 'beside its marker');
  await page.mouse.wheel(0, 150);
  await until(beside, 2000);
  await page.evaluate(() => scrollTo(0, 2000));
  await until(async () => { const t = await thread.boundingBox(); return !!t && t.y + t.height < 0; }, 2000);
  await page.evaluate(() => scrollTo(0, 0));
  await until(beside, 2000);
  await ctx.close();
});

test('nothing runs while nothing moves', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const href = hostPage('idle', `<main style="padding:24px"><img id="img" src="${IMG()}" alt="Product" style="display:block;width:600px"></main>`, attachAll([['img', 'idle']]));
  await page.goto(href);
  await live(page);
  await sleep(300);
  const frames = await page.evaluate(async () => {
    let n = 0;
    const raf = window.requestAnimationFrame;
    window.requestAnimationFrame = (cb) => (n++, raf(cb));
    const host = /** @type {Element} */ (document.querySelector('#img + div'));
    const writes = [];
    new MutationObserver((r) => writes.push(...r)).observe(host, { attributes: true });
    await new Promise((r) => setTimeout(r, 1500));
    return { n, writes: writes.length };
  });
  assert.deepEqual(frames, { n: 0, writes: 0 });
  await ctx.close();
});
