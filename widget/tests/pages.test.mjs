// The pages the server ships: the demo at /, the script at /imagechat.js,
// static files, and screenshots for people to look at.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createAt, launch, markers, openImage, shotsDir, sleep, startServer, startSite, until } from './helpers.mjs';

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

test('the server ships the widget, the demo page, the dashboard and their files', async () => {
  for (const [path, type, needle] of [
    ['/imagechat.js', /javascript/, 'ImageChat'],
    ['/', /html/, 'imagechat.js'],
    ['/admin', /html/, 'admin.js'],
    ['/static/demo.svg', /svg/, '<svg'],
    ['/static/admin.js', /javascript/, 'tenant'],
    ['/static/admin.css', /css/, 'body'],
  ]) {
    const res = await fetch(srv.url + path);
    assert.equal(res.status, 200, path);
    assert.match(res.headers.get('content-type') || '', /** @type {RegExp} */ (type), path);
    assert.ok((await res.text()).includes(/** @type {string} */ (needle)), path);
  }
});

test('demo page: live at once, embed snippet names this server; screenshots light, dark and with a thread', async () => {
  for (const colorScheme of /** @type {const} */ (['light', 'dark'])) {
    const ctx = await browser.newContext({ colorScheme, viewport: { width: 1280, height: 1000 }, reducedMotion: 'reduce' });
    const page = await ctx.newPage();
    /** @type {string[]} */
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${srv.url}/`);
    await page.locator('[data-imagechat-status][data-state=live]').waitFor();
    assert.match(/** @type {string} */ (await page.locator('#snippet').textContent()), new RegExp(`${srv.url}/imagechat.js`));
    assert.match(/** @type {string} */ (await page.locator('main').textContent()), /second tab|phone/);
    if (colorScheme === 'light') {
      await createAt(page, 74, 80, 'Can we make “Continue to payment” stand out more?');
      await createAt(page, 22, 52, 'Love this photo. Is it the real hotel?');
      await until(async () => (await markers(page).count()) === 2);
      await markers(page).nth(1).click();
      await page.locator('[data-imagechat-thread] [data-imagechat-composer] textarea').fill('Yes, from their press kit.');
      await page.locator('[data-imagechat-thread] [data-imagechat-composer] [type=submit]').click();
      await page.locator('[data-imagechat-thread] [data-imagechat-comment]').nth(1).waitFor();
      await page.locator('[data-imagechat-thread] [data-imagechat-action=resolve]').click();
      await until(async () => (await markers(page).nth(1).getAttribute('data-resolved')) === 'true');
      await page.keyboard.press('Escape');
    }
    await until(async () => (await markers(page).count()) === 2);
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg === 'rgb(248, 250, 252)', colorScheme === 'light', `${colorScheme} background ${bg}`);
    const host = page.locator('#demo + div');
    assert.equal(await host.getAttribute('data-theme'), colorScheme, 'the widget follows the page');
    // The page's theme switch takes the widget along, both ways.
    await page.locator('#theme').click();
    assert.equal(await host.getAttribute('data-theme'), colorScheme === 'light' ? 'dark' : 'light');
    await page.locator('#theme').click();
    assert.equal(await host.getAttribute('data-theme'), colorScheme);
    await sleep(200);
    await page.screenshot({ path: join(shotsDir(), `demo-${colorScheme}.png`), fullPage: true });
    await markers(page).first().click();
    await page.locator('[data-imagechat-thread]').waitFor();
    await sleep(200);
    await page.screenshot({ path: join(shotsDir(), `thread-${colorScheme}.png`) });
    assert.deepEqual(errors, []);
    await ctx.close();
  }
});

test('the dark class on body switches an auto-themed widget; Japanese text when asked', async () => {
  const ctx = await browser.newContext({ colorScheme: 'light' });
  const page = await openImage(ctx, site, srv.url, 'theme-and-locale', { options: { locale: 'ja' } });
  const host = page.locator('#img + div');
  assert.equal(await host.getAttribute('data-theme'), 'light');
  await page.evaluate(() => document.body.classList.add('dark'));
  await until(async () => (await host.getAttribute('data-theme')) === 'dark', 2000);
  assert.equal(await page.locator('[data-imagechat-status]').textContent(), 'ライブ');
  await page.evaluate(() => /** @type {any} */ (window).chat.update({ locale: 'en', theme: 'light', readonly: true }));
  assert.equal(await host.getAttribute('data-theme'), 'light');
  assert.equal(await page.locator('[data-imagechat-status]').textContent(), 'Live');
  // Readonly: a click on the image opens no composer.
  const box = /** @type {{x: number, y: number, width: number, height: number}} */ (await page.locator('[data-imagechat-layer]').boundingBox());
  await page.mouse.click(box.x + 50, box.y + 50);
  await sleep(200);
  assert.equal(await page.locator('[data-imagechat-composer]').count(), 0);
  await ctx.close();
});

test('the default urlId is the page URL + # + image src, shortened with a hash past 1024 bytes', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const long = 'ü'.repeat(700); // 1400 bytes once percent-encoded… and more
  const href = site.add(
    '/default-url-id',
    `<!doctype html><html lang="en"><head><title>ids</title></head><body>
<img id="short" src="${srv.url}/static/demo.svg" alt="Short" width="300">
<img id="long" src="${srv.url}/static/demo.svg?v=${long}" alt="Long" width="300">
<script src="${srv.url}/imagechat.js"></script>
<script>window.s = ImageChat.attach(document.getElementById('short'), { tenantId: 'demo' });
window.l = ImageChat.attach(document.getElementById('long'), { tenantId: 'demo' });</script></body></html>`,
  );
  await page.goto(`${href}#some-hash`);
  await until(async () => (await page.locator('[data-imagechat-status][data-state=live]').count()) === 2);
  const [short, longId] = await page.evaluate(() => [/** @type {any} */ (window).s.urlId, /** @type {any} */ (window).l.urlId]);
  assert.equal(short, `${href}#${srv.url}/static/demo.svg`);
  assert.ok(new TextEncoder().encode(longId).length <= 1024, `${longId.length} chars`);
  assert.ok(longId.startsWith(`${href}#${srv.url}/static/demo.svg?v=`));
  assert.match(longId, /~[0-9a-f]{16}$/);
  await ctx.close();
});

test('the demo page fits a phone without sideways scrolling', async () => {
  const ctx = await browser.newContext({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true });
  const page = await ctx.newPage();
  await page.goto(`${srv.url}/`);
  await page.locator('[data-imagechat-status][data-state=live]').waitFor();
  assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 375);
  await page.screenshot({ path: join(shotsDir(), 'demo-phone.png'), fullPage: true });
  await ctx.close();
});

test('images added later with data-imagechat-tenant attach by themselves; a destroyed one stays gone', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const href = site.add(
    '/added-later',
    `<!doctype html><html lang="en"><head><title>later</title></head><body><main id="app"></main>
<script src="${srv.url}/imagechat.js"></script></body></html>`,
  );
  await page.goto(href);
  await page.evaluate((src) => {
    const img = document.createElement('img');
    Object.assign(img, { src, alt: 'Added by the app', width: 400, id: 'late' });
    img.dataset.imagechatTenant = 'demo';
    img.dataset.imagechatUrlId = 'added-later';
    document.getElementById('app')?.append(img);
  }, `${srv.url}/static/demo.svg`);
  await page.locator('[data-imagechat-status][data-state=live]').waitFor();
  await page.evaluate(() => /** @type {any} */ (window).ImageChat.attach(document.getElementById('late'), { tenantId: 'demo' }).destroy());
  await page.evaluate(() => document.getElementById('app')?.append(document.createElement('p')));
  await sleep(300);
  assert.equal(await page.locator('[data-imagechat-layer]').count(), 0);
  await ctx.close();
});
