// Links to a chat (protocol §10): e-mails point to the pageUrl with
// #imagechat-{chatId}, and the widget opens that thread once the chat is
// known: on load and on hashchange, scrolling its image into view and moving
// focus into the thread. An id no image knows does nothing.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, live, sleep, startServer, startSite } from './helpers.mjs';

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
  const res = await fetch(`${srv.url}/api/v1/sessions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tenantId: 'demo' }) });
  token = (await res.json()).token;
});
after(async () => {
  await browser?.close();
  await site?.close();
  await srv?.close();
});

/** A chat stored before the page opens. @param {string} urlId @param {number} x @param {number} y @param {string} text @returns {Promise<string>} its id */
async function seed(urlId, x, y, text) {
  const res = await fetch(`${srv.url}/api/v1/chats`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ urlId, x, y, text }),
  });
  assert.equal(res.status, 201);
  return (await res.json()).chat.id;
}

/**
 * A long page with two attached images, each far below the fold.
 * @param {string} name @param {Record<string, unknown>} [extra] more options of both attach() calls
 */
function longPage(name, extra = {}) {
  const img = (/** @type {string} */ id) => `<div style="height:1400px"></div><img id="${id}" src="${srv.url}/static/demo.svg?${id}" alt="Picture ${id}" style="display:block;width:600px">`;
  const attach = (/** @type {string} */ id) =>
    `ImageChat.attach(document.getElementById('${id}'), Object.assign({ tenantId: 'demo', locale: 'en', urlId: 'link-${id}' }, ${JSON.stringify(extra)}));`;
  return site.add(
    `/${name}`,
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${name}</title></head>
<body style="margin:0">${img('a')}${img('b')}<div style="height:1400px"></div>
<script src="${srv.url}/imagechat.js"></script><script>${attach('a')}${attach('b')}</script></body></html>`,
  );
}

/** What the page shows of an image and where focus is, seen from the page. @param {import('playwright-core').Page} page @param {string} img */
function look(page, img) {
  return page.evaluate((img) => {
    const r = /** @type {Element} */ (document.getElementById(img)).getBoundingClientRect();
    let el = document.activeElement;
    while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
    const thread = el && el.closest('[data-imagechat-thread]');
    return { inView: r.top >= 0 && r.bottom <= innerHeight, focusIn: thread ? thread.getAttribute('data-chat-id') : null };
  }, img);
}

test('#imagechat-{chatId} opens that thread on load and on hashchange, with its image in view and focus in it; an unknown id does nothing', async () => {
  await seed('link-a', 30, 30, 'On the first image');
  const onB = await seed('link-b', 60, 40, 'On the second image');
  const alsoB = await seed('link-b', 20, 70, 'Another one on the second image');
  const href = longPage('links');
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await ctx.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));

  // On load: the thread opens once the snapshot of its image is in.
  await page.goto(`${href}#imagechat-${onB}`);
  const thread = page.locator('[data-imagechat-thread]');
  await page.locator(`[data-imagechat-thread][data-chat-id="${onB}"]`).waitFor();
  await sleep(200);
  assert.equal(await thread.count(), 1, 'one thread');
  assert.deepEqual(await look(page, 'b'), { inView: true, focusIn: onB }, 'its image is scrolled into view and focus is in the thread');
  assert.match(/** @type {string} */ (await thread.textContent()), /On the second image/);

  // Closed, it stays closed when the image changes again: the link opens it once.
  await page.keyboard.press('Escape');
  await thread.waitFor({ state: 'detached' });
  const later = await seed('link-b', 80, 80, 'Arrives live');
  await page.locator(`[data-imagechat-marker][data-chat-id="${later}"]`).waitFor();
  await sleep(200);
  assert.equal(await thread.count(), 0);

  // On hashchange, from the top of the page.
  await page.evaluate(() => scrollTo(0, 0));
  await page.evaluate((id) => (location.hash = `#imagechat-${id}`), alsoB);
  await page.locator(`[data-imagechat-thread][data-chat-id="${alsoB}"]`).waitFor();
  await sleep(200);
  assert.deepEqual(await look(page, 'b'), { inView: true, focusIn: alsoB });

  // An id no image knows, and a fragment of the page's own: nothing happens.
  await page.keyboard.press('Escape');
  await thread.waitFor({ state: 'detached' });
  await page.evaluate(() => scrollTo(0, 0));
  for (const hash of ['#imagechat-no-such-chat', '#imagechat-%E0%A4%A', '#top']) {
    await page.evaluate((h) => (location.hash = h), hash);
    await sleep(400);
    assert.equal(await thread.count(), 0, hash);
    assert.equal(await page.evaluate(() => scrollY), 0, `${hash}: no scroll`);
  }
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('a reader follows a link with the core file alone', async () => {
  const id = await seed('link-a', 45, 55, 'Read me');
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await ctx.newPage();
  /** @type {string[]} */
  const lazy = [];
  page.on('request', (r) => new URL(r.url()).pathname.startsWith('/imagechat/') && lazy.push(r.url()));
  await page.goto(`${longPage('links-reader', { readonly: true })}#imagechat-${id}`);
  await live(page);
  await page.locator(`[data-imagechat-thread][data-chat-id="${id}"]`).waitFor();
  await sleep(200);
  assert.deepEqual(await look(page, 'a'), { inView: true, focusIn: id });
  assert.equal(await page.locator('[data-imagechat-thread] [data-imagechat-composer]').count(), 0, 'no reply box for a reader');
  assert.deepEqual(lazy, []);
  await ctx.close();
});
