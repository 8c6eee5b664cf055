// When the server says no: the optimistic marker is taken back, the text is
// kept, and the reason is shown.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createAt, launch, markers, openImage, sleep, startServer, startSite, until } from './helpers.mjs';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
/** @type {Awaited<ReturnType<typeof startSite>>} */
let site;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  srv = await startServer({ writeRate: 1, args: ['--write-burst', '2'] });
  site = await startSite();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await site?.close();
  await srv?.close();
});

test('a refused create rolls its marker back, keeps the text and says why', async () => {
  const ctx = await browser.newContext();
  const page = await openImage(ctx, site, srv.url, 'limits');
  await createAt(page, 20, 20, 'First');
  await createAt(page, 40, 40, 'Second');
  await until(async () => (await markers(page).evaluateAll((els) => els.filter((e) => !(e.getAttribute('data-chat-id') || '').startsWith('pending-')).length)) === 2);

  // Hold the third request a moment so the optimistic marker can be seen.
  await page.route('**/api/v1/chats', async (route) => {
    await sleep(400);
    await route.continue();
  });
  await createAt(page, 60, 60, 'Third is one too many');
  await until(async () => (await markers(page).count()) === 3, 300); // shown at once
  await page.locator('[data-imagechat-error]').waitFor({ timeout: 3000 });
  assert.match(/** @type {string} */ (await page.locator('[data-imagechat-error]').textContent()), /too many|try again/i);
  assert.equal(await markers(page).count(), 2, 'the optimistic marker is gone');
  // The words are not lost: the composer is back with them.
  assert.equal(await page.locator('[data-imagechat-composer] textarea').inputValue(), 'Third is one too many');
  await ctx.close();
});

test('an answer lost on the way back is no failure when the echo shows the change was stored', async () => {
  const ctx = await browser.newContext();
  const page = await openImage(ctx, site, srv.url, 'lost-answer');
  await page.route('**/api/v1/chats', async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    const res = await route.fetch(); // the server stores it and broadcasts the event…
    await sleep(300); // …which reaches the page first…
    assert.equal(res.status(), 201);
    await route.abort('connectionreset'); // …and the answer never arrives.
  });
  await createAt(page, 50, 50, 'Stored although the answer was lost');
  await until(async () => {
    const ids = await markers(page).evaluateAll((els) => els.map((e) => e.getAttribute('data-chat-id') || ''));
    return ids.length === 1 && !ids[0].startsWith('pending-');
  }, 3000);
  await sleep(500);
  assert.equal(await markers(page).count(), 1);
  assert.equal(await page.locator('[data-imagechat-error]').count(), 0);
  assert.equal(await page.locator('[data-imagechat-composer]').count(), 0, 'nothing to post again');
  await ctx.close();
});
