// Losing the network or the server: the widget says so, refuses changes
// without queueing them, and catches up by itself afterwards.
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
  srv = await startServer();
  site = await startSite();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await site?.close();
  await srv?.close();
});

/** @param {import('playwright-core').Page} page */
const state = (page) => page.locator('[data-imagechat-status]').getAttribute('data-state');

/** Creates a chat over REST as another anonymous user, the way a tenant's other visitor would. @param {string} urlId @param {string} text */
async function restCreate(urlId, text) {
  const s = await (await fetch(`${srv.url}/api/v1/sessions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tenantId: 'demo' }) })).json();
  const res = await fetch(`${srv.url}/api/v1/chats`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${s.token}` },
    body: JSON.stringify({ urlId, x: 70, y: 70, text }),
  });
  assert.equal(res.status, 201);
  return (await res.json()).chat;
}

test('offline: visible status, markers stay, changes refused and never sent later; others’ changes arrive after', async () => {
  const a = await browser.newContext();
  const b = await browser.newContext();
  const pa = await openImage(a, site, srv.url, 'offline');
  const pb = await openImage(b, site, srv.url, 'offline');
  await createAt(pa, 25, 30, 'Before the tunnel');
  await markers(pb).first().waitFor();
  const first = /** @type {string} */ (await markers(pa).first().getAttribute('data-chat-id'));

  await a.setOffline(true);
  await until(async () => (await state(pa)) === 'offline', 5000);
  assert.equal(await markers(pa).count(), 1, 'existing markers stay visible');
  assert.ok(await markers(pa).first().isVisible());

  // Creating fails with a message and leaves no marker.
  const layer = pa.locator('[data-imagechat-layer]');
  const box = /** @type {{x: number, y: number, width: number, height: number}} */ (await layer.boundingBox());
  await pa.mouse.click(box.x + box.width * 0.6, box.y + box.height * 0.6);
  await pa.locator('[data-imagechat-error]').waitFor({ timeout: 2000 });
  assert.match(/** @type {string} */ (await pa.locator('[data-imagechat-error]').textContent()), /offline/i);
  assert.equal(await markers(pa).count(), 1);

  // A reply typed offline is refused, and stays in the box for the user.
  await markers(pa).first().click();
  const thread = pa.locator('[data-imagechat-thread]');
  await thread.locator('[data-imagechat-composer] textarea').fill('typed while offline');
  await thread.locator('[data-imagechat-composer] [type=submit]').click();
  await pa.locator('[data-imagechat-error]').waitFor({ timeout: 2000 });
  assert.equal(await thread.locator('[data-imagechat-comment]').count(), 1);
  assert.equal(await thread.locator('[data-imagechat-composer] textarea').inputValue(), 'typed while offline');

  // Meanwhile B adds a chat and a reply.
  await createAt(pb, 80, 20, 'Made while A was offline');
  await markers(pb).nth(1).waitFor();
  await pb.locator(`[data-imagechat-marker][data-chat-id="${first}"]`).click();
  await pb.locator('[data-imagechat-thread] [data-imagechat-composer] textarea').fill('Reply while A was offline');
  await pb.locator('[data-imagechat-thread] [data-imagechat-composer] [type=submit]').click();
  await pb.locator('[data-imagechat-thread] [data-imagechat-comment]').nth(1).waitFor();
  assert.equal(await markers(pa).count(), 1, 'nothing arrives while offline');

  const t0 = Date.now();
  await a.setOffline(false);
  await until(async () => (await state(pa)) === 'live', 5000);
  console.log(`online→live: ${Date.now() - t0} ms`);
  await until(async () => (await markers(pa).count()) === 2, 3000);
  await thread.locator('[data-imagechat-comment]').nth(1).waitFor({ timeout: 3000 });
  assert.equal(await thread.locator('[data-imagechat-comment]').nth(1).locator('p').textContent(), 'Reply while A was offline');

  // Nothing typed offline was sent later.
  await sleep(1500);
  const texts = await pb.locator('[data-imagechat-thread] [data-imagechat-comment] p').allTextContents();
  assert.ok(!texts.includes('typed while offline'), `sent later: ${texts}`);
  assert.equal(await markers(pb).count(), 2);
  await a.close();
  await b.close();
});

test('server restarted under the page: the widget reconnects by itself and picks up what it missed', async () => {
  const ctx = await browser.newContext();
  const page = await openImage(ctx, site, srv.url, 'restart');
  await createAt(page, 40, 40, 'Survives a restart');
  await until(async () => !((await markers(page).first().getAttribute('data-chat-id')) || 'pending-').startsWith('pending-'));

  await srv.stop();
  await until(async () => (await state(page)) === 'offline', 5000);
  await sleep(1500); // a few failed attempts: the backoff grows
  await srv.restart();
  // Changed before the page is back: it must pick this up.
  await restCreate('restart', 'Written while the page was reconnecting');
  const t0 = Date.now();
  await until(async () => (await state(page)) === 'live', 20000);
  console.log(`server back→live: ${Date.now() - t0} ms`);
  await until(async () => (await markers(page).count()) === 2, 5000);

  // And it is live again, not just resynced.
  await restCreate('restart', 'And one after');
  await until(async () => (await markers(page).count()) === 3, 2000);
  await ctx.close();
});

test('a refused session token is replaced by a fresh one without the user noticing', async () => {
  const ctx = await browser.newContext();
  const page = await openImage(ctx, site, srv.url, 'token');
  await createAt(page, 50, 50, 'Before the token went bad');
  // Stored, not just shown: a reload must not cut the request short.
  await until(async () => !((await markers(page).first().getAttribute('data-chat-id')) || 'pending-').startsWith('pending-'));
  // Replace the stored token with one the server never issued, then reload.
  const changed = await page.evaluate(() => {
    for (let i = 0; i < localStorage.length; i++) {
      const k = /** @type {string} */ (localStorage.key(i));
      if (!k.startsWith('imagechat:')) continue;
      const s = JSON.parse(/** @type {string} */ (localStorage.getItem(k)));
      s.token = 'not-a-token-the-server-issued';
      localStorage.setItem(k, JSON.stringify(s));
      return true;
    }
    return false;
  });
  assert.ok(changed, 'the anonymous session is kept in localStorage');
  await page.reload();
  await until(async () => (await state(page)) === 'live', 10000);
  await until(async () => (await markers(page).count()) === 1, 3000);
  assert.equal(await page.locator('[data-imagechat-error]').count(), 0, 'no error shown for a silent token refresh');
  await createAt(page, 20, 20, 'After a fresh token');
  await until(async () => (await markers(page).count()) === 2, 3000).catch(async (e) => {
    const why = `state ${await state(page)}, errors ${JSON.stringify(await page.locator('[data-imagechat-error]').allTextContents())}, markers ${await markers(page).count()}`;
    throw new Error(`${e.message}: ${why}`);
  });
  await sleep(300);
  assert.equal(await page.locator('[data-imagechat-error]').count(), 0);
  await ctx.close();
});

test('a missed event is recovered by seq, and a frozen socket is noticed by the unanswered ping', async () => {
  const a = await browser.newContext();
  const b = await browser.newContext();
  // Route A's WebSocket through a proxy that can lose one event or freeze the connection.
  let dropNextEvent = false;
  let freezeCurrent = false;
  let connections = 0;
  /** @type {string[]} */
  const subscribes = [];
  await a.routeWebSocket(/\/api\/v1\/ws$/, (ws) => {
    connections++;
    let frozen = false;
    const server = ws.connectToServer();
    ws.onMessage((m) => {
      if (String(m).includes('"subscribe"')) subscribes.push(String(m));
      if (!frozen) server.send(m);
    });
    server.onMessage((m) => {
      if (freezeCurrent) frozen = true;
      if (frozen) return;
      if (dropNextEvent && String(m).includes('"new-image-chat"')) {
        dropNextEvent = false;
        return;
      }
      ws.send(m);
    });
  });
  const pageA = await openImage(a, site, srv.url, 'lossy');
  const pb = await openImage(b, site, srv.url, 'lossy');

  dropNextEvent = true;
  await createAt(pb, 10, 10, 'Lost on the way to A');
  await markers(pb).first().waitFor();
  await sleep(300);
  assert.equal(await markers(pageA).count(), 0, 'the event was dropped');
  await createAt(pb, 20, 20, 'The next one shows the gap');
  await until(async () => (await markers(pageA).count()) === 2, 3000);
  assert.ok(subscribes.length >= 2 && /"seq":\d+/.test(subscribes[subscribes.length - 1]), 'resubscribed from its seq');

  freezeCurrent = true;
  await sleep(100);
  await createAt(pb, 30, 30, 'Sent into a frozen socket');
  await until(async () => (await markers(pb).count()) === 3);
  const t0 = Date.now();
  await until(async () => (await state(pageA)) !== 'live', 35000, 200); // ping every 15 s + 10 s for the pong
  const noticed = Date.now() - t0;
  console.log(`frozen socket noticed after ${noticed} ms`);
  freezeCurrent = false;
  await until(async () => (await state(pageA)) === 'live', 10000);
  await until(async () => (await markers(pageA).count()) === 3, 3000);
  assert.ok(connections >= 2, 'a new connection was made');
  await a.close();
  await b.close();
});
