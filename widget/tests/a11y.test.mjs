// Keyboard-only use, text-only comments, small screens, resizing, and an
// automated accessibility audit with a thread open.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { join } from 'node:path';
import { createAt, launch, markers, openImage, shotsDir, sleep, startServer, startSite, until } from './helpers.mjs';

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

/** The stable hook on the element that has focus, looking into the widget's shadow root. @param {import('playwright-core').Page} page */
function focused(page) {
  return page.evaluate(() => {
    let el = document.activeElement;
    while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
    if (!el) return '';
    const hook = [...el.attributes].map((a) => a.name).find((n) => n.startsWith('data-imagechat-'));
    return `${el.tagName.toLowerCase()}${hook ? `[${hook}]` : ''}${el.getAttribute('data-chat-id') ? `#${el.getAttribute('data-chat-id')}` : ''}`;
  });
}

/** Centre of a marker as percentages of the layer. @param {import('playwright-core').Page} page */
async function markerPercent(page, nth = 0) {
  const layer = /** @type {{x: number, y: number, width: number, height: number}} */ (await page.locator('[data-imagechat-layer]').boundingBox());
  const m = /** @type {{x: number, y: number, width: number, height: number}} */ (await markers(page).nth(nth).boundingBox());
  return { x: ((m.x + m.width / 2 - layer.x) / layer.width) * 100, y: ((m.y + m.height / 2 - layer.y) / layer.height) * 100 };
}

test('keyboard only: place a marker, write, open its thread, reply, Esc returns focus to the marker', async () => {
  const ctx = await browser.newContext({ reducedMotion: 'reduce' });
  const page = await openImage(ctx, site, srv.url, 'keyboard');
  await page.keyboard.press('Tab');
  assert.equal(await focused(page), 'div[data-imagechat-layer]');
  await page.keyboard.press('Enter'); // a marker at the centre
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Shift+ArrowDown'); // a bigger step
  await page.keyboard.press('Enter'); // opens the composer
  assert.equal(await focused(page), 'textarea');
  await page.locator('[data-imagechat-composer] input[type=file]').waitFor({ state: 'attached' });
  await page.keyboard.type('Typed without a mouse');
  await page.keyboard.press('Tab'); // Attach image (lazy/attachments.js)
  await page.keyboard.press('Tab'); // Cancel
  await page.keyboard.press('Tab'); // Post
  await page.keyboard.press('Enter');
  await until(async () => {
    const id = await markers(page).first().getAttribute('data-chat-id').catch(() => null);
    return id && !id.startsWith('pending-');
  });
  const at = await markerPercent(page);
  assert.ok(Math.abs(at.x - 52) < 1 && Math.abs(at.y - 60) < 1, `marker at ${JSON.stringify(at)}`);
  assert.equal(await focused(page), 'div[data-imagechat-layer]');

  // Esc cancels a marker being placed.
  await page.keyboard.press('Enter');
  await page.keyboard.press('Escape');
  await page.keyboard.press('Enter');
  await page.keyboard.press('Escape'); // in the composer: back to the layer
  assert.equal(await focused(page), 'div[data-imagechat-layer]');
  assert.equal(await page.locator('[data-imagechat-composer]').count(), 0);
  assert.equal(await markers(page).count(), 1);

  // Tab reaches the marker, which says what it is.
  await page.keyboard.press('Tab');
  const id = /** @type {string} */ (await markers(page).first().getAttribute('data-chat-id'));
  assert.equal(await focused(page), `button[data-imagechat-marker]#${id}`);
  assert.match(/** @type {string} */ (await markers(page).first().getAttribute('aria-label')), /Typed without a mouse/);
  await page.keyboard.press('Enter');
  const thread = page.locator(`[data-imagechat-thread][data-chat-id="${id}"]`);
  await thread.waitFor();
  assert.equal(await thread.getAttribute('role'), 'dialog');
  assert.equal(await focused(page), 'textarea');
  await thread.locator('[data-imagechat-composer] input[type=file]').waitFor({ state: 'attached' });
  await page.keyboard.type('A keyboard reply');
  await page.keyboard.press('Tab'); // Attach image
  await page.keyboard.press('Tab'); // Reply
  await page.keyboard.press('Enter');
  await thread.locator('[data-imagechat-comment]').nth(1).waitFor();
  await page.keyboard.press('Escape');
  await thread.waitFor({ state: 'detached' });
  assert.equal(await focused(page), `button[data-imagechat-marker]#${id}`);

  // Arrow keys move one's own marker; Enter saves.
  await page.keyboard.press('Shift+ArrowLeft');
  const patched = page.waitForResponse((r) => r.request().method() === 'PATCH' && r.url().includes('/api/v1/chats/'));
  await page.keyboard.press('Enter');
  assert.equal((await patched).status(), 200);
  const moved = await markerPercent(page);
  assert.ok(Math.abs(moved.x - 42) < 1, `moved to ${JSON.stringify(moved)}`);
  await page.reload();
  await page.locator('[data-imagechat-status][data-state=live]').waitFor();
  await markers(page).first().waitFor();
  assert.ok(Math.abs((await markerPercent(page)).x - 42) < 1, 'the move was stored');
  await ctx.close();
});

test('a comment that looks like HTML is shown as text and runs nothing', async () => {
  const a = await browser.newContext();
  const b = await browser.newContext();
  const evil = '<img src=x onerror="window.__pwned=1"><b>bold</b>';
  const pa = await openImage(a, site, srv.url, 'xss');
  const pb = await openImage(b, site, srv.url, 'xss');
  await createAt(pa, 50, 50, evil);
  for (const p of [pa, pb]) {
    await markers(p).first().waitFor();
    await until(async () => !((await markers(p).first().getAttribute('data-chat-id')) || 'pending-').startsWith('pending-'));
    await markers(p).first().click();
    const c = p.locator('[data-imagechat-thread] [data-imagechat-comment]').first();
    await c.waitFor();
    assert.equal(await c.locator('p').textContent(), evil);
    assert.equal(await c.locator('p *').count(), 0);
    await sleep(300);
    assert.equal(await p.evaluate(() => /** @type {any} */ (window).__pwned), undefined);
  }
  await a.close();
  await b.close();
});

test('on a phone-sized screen the thread is full-screen', async () => {
  const ctx = await browser.newContext({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const page = await openImage(ctx, site, srv.url, 'mobile', { width: 800 });
  const layer = /** @type {{x: number, y: number, width: number, height: number}} */ (await page.locator('[data-imagechat-layer]').boundingBox());
  assert.ok(layer.width <= 375 - 48 + 1, 'the image shrank to the screen');
  await page.touchscreen.tap(layer.x + layer.width * 0.3, layer.y + layer.height * 0.3);
  await page.locator('[data-imagechat-composer] textarea').fill('From my phone');
  await page.locator('[data-imagechat-composer] [type=submit]').tap();
  await until(async () => !((await markers(page).first().getAttribute('data-chat-id')) || 'pending-').startsWith('pending-'));
  await markers(page).first().tap();
  const thread = page.locator('[data-imagechat-thread]');
  await thread.waitFor();
  await sleep(300);
  const box = /** @type {{x: number, y: number, width: number, height: number}} */ (await thread.boundingBox());
  assert.deepEqual([Math.round(box.x), Math.round(box.y), Math.round(box.width), Math.round(box.height)], [0, 0, 375, 667]);
  await page.screenshot({ path: join(shotsDir(), 'thread-phone.png') });
  await ctx.close();
});

test('markers keep their place when the image is resized; the layer covers exactly the content box', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await openImage(ctx, site, srv.url, 'resize', { width: 900 });
  await page.evaluate(() => Object.assign(/** @type {HTMLElement} */ (document.getElementById('img')).style, { padding: '10px', border: '6px solid #888' }));
  await sleep(200);
  const check = async () => {
    const img = /** @type {{x: number, y: number, width: number, height: number}} */ (await page.locator('#img').boundingBox());
    const layer = /** @type {{x: number, y: number, width: number, height: number}} */ (await page.locator('[data-imagechat-layer]').boundingBox());
    const want = [img.x + 16, img.y + 16, img.width - 32, img.height - 32];
    const got = [layer.x, layer.y, layer.width, layer.height];
    return got.every((v, i) => Math.abs(v - want[i]) < 1.5);
  };
  await until(check, 2000);
  await createAt(page, 30, 40, 'Left edge of the card');
  await createAt(page, 80, 75, 'The total');
  await until(async () => (await markers(page).count()) === 2);
  const before = [await markerPercent(page, 0), await markerPercent(page, 1)];

  await page.evaluate(() => ((/** @type {HTMLElement} */ (document.getElementById('img'))).style.width = '500px'));
  await until(check, 2000);
  // Content above the image grows: the image moves down, the markers follow.
  await page.evaluate(() => document.querySelector('h1')?.insertAdjacentHTML('afterend', '<p style="height:120px">A banner</p>'));
  await until(check, 2000);
  await page.setViewportSize({ width: 700, height: 900 });
  await until(check, 2000);
  const afterResize = [await markerPercent(page, 0), await markerPercent(page, 1)];
  for (const i of [0, 1]) {
    assert.ok(Math.abs(afterResize[i].x - before[i].x) < 0.8 && Math.abs(afterResize[i].y - before[i].y) < 0.8, `marker ${i}: ${JSON.stringify(before[i])} → ${JSON.stringify(afterResize[i])}`);
  }
  await ctx.close();
});

test('axe finds no serious or critical problem with a thread open, light, dark and in forced colors', async () => {
  for (const [colorScheme, forcedColors] of /** @type {const} */ ([
    ['light', 'none'],
    ['dark', 'none'],
    ['dark', 'active'],
  ])) {
    const ctx = await browser.newContext({ colorScheme, forcedColors, reducedMotion: 'reduce' });
    const page = await ctx.newPage();
    await page.goto(`${srv.url}/`);
    await page.locator('[data-imagechat-status][data-state=live]').waitFor();
    if (!(await markers(page).count())) await createAt(page, 62, 42, 'Is “Continue to payment” clear enough?');
    await until(async () => !((await markers(page).first().getAttribute('data-chat-id')) || 'pending-').startsWith('pending-'));
    await markers(page).first().click();
    await page.locator('[data-imagechat-thread]').waitFor();
    await page.addScriptTag({ content: AXE });
    const result = await page.evaluate(() => /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] }));
    /** @type {{id: string, impact: string, help: string, nodes: {target: unknown}[]}[]} */
    const bad = result.violations.filter((/** @type {{impact: string}} */ v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(
      bad.map((v) => `${v.id}: ${v.help} (${JSON.stringify(v.nodes.map((n) => n.target))})`),
      [],
      `${colorScheme} mode, forced colors ${forcedColors}`,
    );
    await ctx.close();
  }
});

test('an image that loads late (lazy) gets its markers in the right place', async () => {
  const s = await (await fetch(`${srv.url}/api/v1/sessions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tenantId: 'demo' }) })).json();
  const res = await fetch(`${srv.url}/api/v1/chats`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${s.token}` },
    body: JSON.stringify({ urlId: 'lazy', x: 25, y: 75, text: 'Placed before the image loaded' }),
  });
  assert.equal(res.status, 201);
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const href = site.add(
    '/lazy',
    `<!doctype html><html lang="en"><head><title>lazy</title></head><body><main>
<img id="img" alt="Loaded late" style="display:block;width:640px;height:auto">
<script src="${srv.url}/imagechat.js"></script>
<script>ImageChat.attach(document.getElementById('img'), { tenantId: 'demo', urlId: 'lazy' });
setTimeout(() => { document.getElementById('img').src = ${JSON.stringify(`${srv.url}/static/demo.svg`)}; }, 700);</script></main></body></html>`,
  );
  await page.goto(href);
  await page.locator('[data-imagechat-status][data-state=live]').waitFor();
  await markers(page).first().waitFor({ state: 'attached' });
  await until(async () => {
    const layer = await page.locator('[data-imagechat-layer]').boundingBox();
    return !!layer && layer.height > 300;
  }, 5000);
  await until(async () => {
    const p = await markerPercent(page);
    return Math.abs(p.x - 25) < 0.8 && Math.abs(p.y - 75) < 0.8;
  }, 2000);
  await ctx.close();
});
