// Who may do what: SSO users, moderators, anonymous visitors, read-only
// tenants — as the widget shows it.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createAt, launch, markers, openImage, sleep, startServer, startSite, until } from './helpers.mjs';

const ADMIN_KEY = 'admin-key-for-identity-tests';
const SECRET = 'identity-tenant-secret';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
/** @type {Awaited<ReturnType<typeof startSite>>} */
let site;
/** @type {import('playwright-core').Browser} */
let browser;

/** @param {string} tenantId @param {'none' | 'read' | 'write'} anonymous */
async function tenant(tenantId, anonymous) {
  const res = await fetch(`${srv.url}/api/v1/admin/tenants`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ADMIN_KEY}` },
    body: JSON.stringify({ tenantId, anonymous, secret: SECRET }),
  });
  assert.equal(res.status, 201, await res.text());
}

/** FastComments-style secure SSO for one user. @param {Record<string, unknown>} user */
function sso(user) {
  const userDataJSONBase64 = Buffer.from(JSON.stringify(user)).toString('base64');
  const timestamp = Date.now();
  const verificationHash = createHmac('sha256', SECRET).update(String(timestamp) + userDataJSONBase64).digest('hex');
  return { userDataJSONBase64, verificationHash, timestamp };
}

before(async () => {
  srv = await startServer({ adminKey: ADMIN_KEY });
  site = await startSite();
  browser = await launch();
  await tenant('shop', 'write');
  await tenant('gallery', 'read');
});
after(async () => {
  await browser?.close();
  await site?.close();
  await srv?.close();
});

test('SSO users see their names; a moderator may remove anyone’s chat, an anonymous visitor may not', async () => {
  const [ca, cm, cv] = await Promise.all([browser.newContext(), browser.newContext(), browser.newContext()]);
  const alice = await openImage(ca, site, srv.url, 'sso-image', { options: { tenantId: 'shop', sso: sso({ id: 'u-alice', username: 'Alice Example' }) } });
  const mod = await openImage(cm, site, srv.url, 'sso-image', { options: { tenantId: 'shop', sso: sso({ id: 'u-mod', username: 'Mo Derator', isModerator: true }) } });
  const anon = await openImage(cv, site, srv.url, 'sso-image', { options: { tenantId: 'shop' } });

  await createAt(alice, 40, 40, 'Signed in and commenting');
  for (const p of [mod, anon]) await markers(p).first().waitFor();
  const id = /** @type {string} */ (await markers(mod).first().getAttribute('data-chat-id'));
  assert.match(/** @type {string} */ (await markers(anon).first().getAttribute('aria-label')), /Alice Example/);

  // The anonymous visitor may reply and resolve, but not edit or delete Alice's words.
  await markers(anon).first().click();
  const anonThread = anon.locator('[data-imagechat-thread]');
  await anonThread.waitFor();
  assert.equal(await anonThread.locator('[data-imagechat-action=resolve]').count(), 1);
  assert.equal(await anonThread.locator('[data-imagechat-action=delete-chat]').count(), 0);
  assert.equal(await anonThread.locator('[data-imagechat-comment] [data-imagechat-action=edit]').count(), 0);
  assert.match(/** @type {string} */ (await anonThread.locator('[data-imagechat-comment]').first().textContent()), /Alice Example/);

  // The moderator may, and everyone sees the chat go.
  await markers(mod).first().click();
  const modThread = mod.locator('[data-imagechat-thread]');
  await modThread.locator('[data-imagechat-comment] [data-imagechat-action=edit]').waitFor();
  await modThread.locator('[data-imagechat-action=delete-chat]').click();
  await modThread.locator('[data-imagechat-action=confirm]').click();
  for (const p of [alice, anon, mod]) await p.locator(`[data-imagechat-marker][data-chat-id="${id}"]`).waitFor({ state: 'detached', timeout: 2000 });
  // The thread that was open at the anonymous visitor closed with it.
  await anonThread.waitFor({ state: 'detached', timeout: 2000 });
  await Promise.all([ca.close(), cm.close(), cv.close()]);
});

test('different identities on one page use different connections', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  let sockets = 0;
  page.on('websocket', () => sockets++);
  const href = site.add(
    '/two-identities',
    `<!doctype html><html lang="en"><head><title>two</title></head><body>
<img id="a" src="${srv.url}/static/demo.svg" alt="A" width="300"><img id="b" src="${srv.url}/static/demo.svg" alt="B" width="300">
<script src="${srv.url}/imagechat.js"></script>
<script>ImageChat.attach(document.getElementById('a'), { tenantId: 'shop', urlId: 'ids-a', sso: ${JSON.stringify(sso({ id: 'u-carol', username: 'Carol' }))} });
ImageChat.attach(document.getElementById('b'), { tenantId: 'shop', urlId: 'ids-b' });</script></body></html>`,
  );
  await page.goto(href);
  await until(async () => (await page.locator('[data-imagechat-status][data-state=live]').count()) === 2);
  assert.equal(sockets, 2);
  await ctx.close();
});

test('a read-only tenant shows markers and threads but no composer', async () => {
  // Someone signed in writes; the anonymous visitor may only read.
  const cw = await browser.newContext();
  const cr = await browser.newContext();
  const writer = await openImage(cw, site, srv.url, 'read-only', { options: { tenantId: 'gallery', sso: sso({ id: 'u-curator', username: 'Curator' }) } });
  await createAt(writer, 60, 30, 'Curator’s note');
  const reader = await openImage(cr, site, srv.url, 'read-only', { options: { tenantId: 'gallery' } });
  await markers(reader).first().waitFor();
  const box = /** @type {{x: number, y: number, width: number, height: number}} */ (await reader.locator('[data-imagechat-layer]').boundingBox());
  await reader.mouse.click(box.x + box.width * 0.2, box.y + box.height * 0.8);
  await sleep(200);
  assert.equal(await reader.locator('[data-imagechat-composer]').count(), 0);
  await markers(reader).first().click();
  const thread = reader.locator('[data-imagechat-thread]');
  await thread.waitFor();
  assert.equal(await thread.locator('[data-imagechat-comment]').count(), 1);
  assert.equal(await thread.locator('[data-imagechat-composer]').count(), 0);
  assert.equal(await thread.locator('[data-imagechat-action]').count(), 0);
  await Promise.all([cw.close(), cr.close()]);
});
