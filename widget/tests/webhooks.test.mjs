// The dashboard's webhooks: add an endpoint and see its secret once, send a
// signed test event to a receiver in this process and see it delivered, see
// failures as failures, the form's checks and the server's refusals beside
// the field, the limit of 10, deleting; and a loopback URL refused by a
// server that does not allow private addresses.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launch, shotsDir, startServer, until } from './helpers.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const ADMIN_KEY = 'admin-key-for-webhook-tests';
const TENANT = 'hook-shop';
const SECRET = 'a-long-tenant-secret-for-webhook-tests';
const BASIC = `Basic ${Buffer.from(`${TENANT}:${SECRET}`).toString('base64')}`;

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
/** @type {import('playwright-core').Browser} */
let browser;

/** @typedef {{path: string, headers: import('node:http').IncomingHttpHeaders, body: string, method: string}} Received */
/** Every request the receiver got, in order. @type {Received[]} */
const received = [];
/** @type {import('node:http').Server} */
let receiver;
let recvUrl = '';

before(async () => {
  srv = await startServer({ adminKey: ADMIN_KEY, args: ['--webhook-allow-private', '--webhook-retry-base-ms', '200'] });
  await createTenant(srv.url);
  browser = await launch();
  // A receiver on loopback: /ok answers 204, anything else 500.
  receiver = createServer((req, res) => {
    /** @type {Buffer[]} */
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url || '').split('?')[0];
      received.push({ method: req.method || '', path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(path === '/ok' ? 204 : 500);
      res.end(path === '/ok' ? undefined : 'receiver says no');
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', () => r(null)));
  recvUrl = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (receiver.address()).port}`;
});
after(async () => {
  await browser?.close();
  await srv?.close();
  receiver?.closeAllConnections();
  await new Promise((r) => (receiver ? receiver.close(() => r(null)) : r(null)));
});

/** @param {string} server */
async function createTenant(server) {
  const res = await fetch(`${server}/api/v1/admin/tenants`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ADMIN_KEY}` },
    body: JSON.stringify({ tenantId: TENANT, anonymous: 'write', secret: SECRET }),
  });
  assert.equal(res.status, 201, await res.text());
}

/** Signs in to the dashboard in a fresh context. @param {import('playwright-core').BrowserContext} ctx @param {string} server */
async function signIn(ctx, server) {
  const page = await ctx.newPage();
  await page.goto(`${server}/admin`);
  await page.locator('#tenantId').fill(TENANT);
  await page.locator('#secret').fill(SECRET);
  await page.locator('#login [type=submit]').click();
  await page.locator('#dash').waitFor();
  return page;
}

/** The endpoints as the API lists them (tenant Basic auth). @param {string} server @returns {Promise<Record<string, unknown>[]>} */
async function listHooks(server) {
  const res = await fetch(`${server}/api/v1/tenant/webhooks`, { headers: { Authorization: BASIC } });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()).webhooks;
}

/** @param {import('playwright-core').Page} page @param {string} url */
const hookItem = (page, url) => page.locator('#hooks li.hook').filter({ has: page.locator('.url', { hasText: url }) });

/** @param {import('playwright-core').Page} page @param {string} label */
async function axe(page, label) {
  // Through the debugging protocol: the dashboard's CSP (rightly) refuses inline scripts.
  await page.evaluate(AXE);
  const audit = await page.evaluate(() => /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] }));
  assert.deepEqual(
    audit.violations.filter((/** @type {{impact: string}} */ v) => v.impact === 'serious' || v.impact === 'critical').map((/** @type {{id: string}} */ v) => v.id),
    [],
    label,
  );
}

/**
 * Checks a delivery the way a receiver should (Standard Webhooks): the
 * signature over `${id}.${timestamp}.${body}` with the secret's key, and a
 * fresh timestamp. Returns the parsed body.
 * @param {Received} r @param {string} secret
 */
function verify(r, secret) {
  assert.equal(r.method, 'POST');
  assert.match(String(r.headers['content-type']), /^application\/json/);
  const id = /** @type {string} */ (r.headers['webhook-id']);
  const ts = /** @type {string} */ (r.headers['webhook-timestamp']);
  const sigs = /** @type {string} */ (r.headers['webhook-signature']);
  assert.ok(id, 'webhook-id');
  assert.match(ts, /^\d+$/, 'webhook-timestamp in Unix seconds');
  assert.ok(Math.abs(Number(ts) - Date.now() / 1000) < 60, `webhook-timestamp ${ts} is now`);
  assert.ok(sigs, 'webhook-signature');
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const want = `v1,${createHmac('sha256', key).update(`${id}.${ts}.${r.body}`).digest('base64')}`;
  assert.ok(sigs.split(' ').includes(want), `signature ${sigs}, want ${want}`);
  return JSON.parse(r.body);
}

test('add an endpoint, see its secret once, send a signed test event and see it delivered; real events follow', async () => {
  const url = `${recvUrl}/ok`;
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 1000 }, permissions: ['clipboard-read', 'clipboard-write'] });
  const page = await signIn(ctx, srv.url);
  await page.locator('#hooks-empty').waitFor();
  assert.equal(await page.locator('#hooks-count').textContent(), '0 of 10 endpoints');
  const boxes = page.locator('#hook-events input[type=checkbox]');
  assert.equal(await boxes.count(), 4);
  for (const b of await boxes.all()) assert.equal(await b.isChecked(), true, 'every event is checked at first');

  await page.getByLabel('Endpoint URL').fill(url);
  await page.getByRole('button', { name: 'Add endpoint' }).click();

  // The secret, once, with a note that says so; the focus is on it.
  const secretBox = page.locator('#hook-secret-value');
  await page.locator('#hook-secret').waitFor();
  const secret = await secretBox.inputValue();
  assert.match(secret, /^whsec_[A-Za-z0-9+/]+={0,2}$/);
  assert.ok(Buffer.from(secret.slice(6), 'base64').length >= 24, 'at least 24 random bytes');
  assert.match(/** @type {string} */ (await page.locator('#hook-secret').textContent()), /Shown once/);
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), 'hook-secret-value');
  const item = hookItem(page, url);
  await item.waitFor();
  assert.deepEqual(await item.locator('.events code').allTextContents(), ['new-image-chat', 'image-chat-updated', 'deleted-image-chat', 'notification']);
  assert.equal(await page.locator('#hooks-count').textContent(), '1 of 10 endpoints');
  assert.equal(await page.getByLabel('Endpoint URL').inputValue(), '', 'the form is ready for another');
  await page.screenshot({ path: join(shotsDir(), 'webhooks-secret.png'), fullPage: true });
  await axe(page, 'axe with the secret shown');

  await page.getByRole('button', { name: 'Copy' }).click();
  await until(async () => /copied/i.test(/** @type {string} */ (await page.locator('#hook-secret-copied').textContent())));
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);

  // Done: the secret is gone from the page, and no listing has it.
  await page.getByRole('button', { name: 'Done' }).click();
  assert.equal(await page.locator('#hook-secret').isVisible(), false);
  assert.equal(await secretBox.inputValue(), '');
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.textContent), 'Send test event', 'the focus goes to the new endpoint');
  const listed = await listHooks(srv.url);
  assert.equal(listed.length, 1);
  assert.equal(listed[0].url, url);
  assert.equal('secret' in listed[0], false, 'the list has no secrets');
  await page.reload();
  await item.waitFor();
  assert.equal((await page.content()).includes(secret), false, 'a reload does not show the secret');

  // Send a test event: one signed POST, its status inline, the attempt in the deliveries.
  await item.getByRole('button', { name: /send test event/i }).click();
  const result = item.locator('.result');
  await until(async () => /delivered/i.test(/** @type {string} */ (await result.textContent())), 15000);
  assert.match(/** @type {string} */ (await result.textContent()), /HTTP 204 in \d+ ms/);
  const tests = received.filter((r) => r.path === '/ok');
  assert.equal(tests.length, 1, 'one attempt, no retries');
  const body = verify(tests[0], secret);
  console.log(`test event body: ${tests[0].body.slice(0, 300)}`);
  assert.equal(typeof body.type, 'string');
  assert.equal(body.data.tenantId, TENANT);
  const rows = item.locator('.deliveries tbody tr');
  await until(async () => (await rows.count()) === 1);
  assert.equal(await item.locator('.deliveries').evaluate((d) => /** @type {HTMLDetailsElement} */ (d).open), true, 'the deliveries open');
  const cells = await rows.first().locator('th, td').allTextContents();
  console.log(`delivery row: ${cells.join(' | ')}`);
  assert.match(cells[1], /Delivered/);
  assert.equal(cells[2], '204');
  assert.match(cells[3], /^\d[\d,]* ms$/);

  // A real event: a new chat reaches the receiver, signed, and is listed newest first.
  const { token } = await (await fetch(`${srv.url}/api/v1/sessions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tenantId: TENANT }) })).json();
  const made = await fetch(`${srv.url}/api/v1/chats`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ urlId: 'hooked-image', x: 40, y: 40, text: 'Tell the webhook' }),
  });
  assert.equal(made.status, 201, await made.text());
  await until(() => Promise.resolve(received.filter((r) => r.path === '/ok').length >= 2), 15000);
  const event = verify(received.filter((r) => r.path === '/ok')[1], secret);
  assert.equal(event.type, 'new-image-chat');
  assert.equal(event.data.tenantId, TENANT);
  assert.equal(event.data.urlId, 'hooked-image');
  await until(async () => {
    await item.getByRole('button', { name: /refresh deliveries/i }).click();
    await page.waitForTimeout(200);
    return (await rows.count()) === 2;
  });
  assert.equal(await rows.first().locator('code').textContent(), received.filter((r) => r.path === '/ok')[1].headers['webhook-id'], 'newest first, by its webhook-id');
  await page.screenshot({ path: join(shotsDir(), 'webhooks-delivered.png'), fullPage: true });
  await axe(page, 'axe with deliveries shown');
  await ctx.close();
});

test('a failing endpoint shows its failures: an HTTP error, and no answer at all', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 1100 } });
  const page = await signIn(ctx, srv.url);
  const url = `${recvUrl}/fail`;
  await page.getByLabel('Endpoint URL').fill(url);
  for (const t of ['image-chat-updated', 'deleted-image-chat', 'notification']) await page.getByRole('checkbox', { name: new RegExp(t) }).uncheck();
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.locator('#hook-secret').waitFor();
  await page.getByRole('button', { name: 'Done' }).click();
  const item = hookItem(page, url);
  await item.waitFor();
  assert.deepEqual(await item.locator('.events code').allTextContents(), ['new-image-chat'], 'only the chosen event');
  assert.deepEqual((await listHooks(srv.url)).find((h) => h.url === url)?.events, ['new-image-chat']);

  const before = received.filter((r) => r.path === '/fail').length;
  await item.getByRole('button', { name: /send test event/i }).click();
  const result = item.locator('.result');
  await until(async () => /failed/i.test(/** @type {string} */ (await result.textContent())), 15000);
  assert.match(/** @type {string} */ (await result.textContent()), /HTTP 500/);
  assert.equal(received.filter((r) => r.path === '/fail').length, before + 1, 'one attempt');
  const row = item.locator('.deliveries tbody tr').first();
  await row.waitFor();
  const cells = await row.locator('th, td').allTextContents();
  assert.match(cells[1], /Failed/, 'said in words, not only in colour');
  assert.match(cells[2], /^500/);

  // Nobody listening: no status, the error instead.
  const dead = 'http://127.0.0.1:1/';
  await page.getByLabel('Endpoint URL').fill(dead);
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.locator('#hook-secret').waitFor();
  await page.getByRole('button', { name: 'Done' }).click();
  const deadItem = hookItem(page, dead);
  await deadItem.getByRole('button', { name: /send test event/i }).click();
  await until(async () => /failed/i.test(/** @type {string} */ (await deadItem.locator('.result').textContent())), 20000);
  const said = /** @type {string} */ (await deadItem.locator('.result').textContent());
  console.log(`no answer: ${said}`);
  assert.doesNotMatch(said, /HTTP \d/);
  const deadRow = deadItem.locator('.deliveries tbody tr').first();
  await deadRow.waitFor();
  const deadCells = await deadRow.locator('th, td').allTextContents();
  console.log(`no answer row: ${deadCells.join(' | ')}`);
  assert.match(deadCells[1], /Failed/);
  assert.doesNotMatch(deadCells[2], /^\d+$/, 'an error, not a status');
  assert.ok(deadCells[2].length > 0);
  await page.screenshot({ path: join(shotsDir(), 'webhooks-failing.png'), fullPage: true });
  await ctx.close();
});

test('the form checks its fields, shows the server refusals beside them, stops at 10; delete asks first', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 1000 } });
  const page = await signIn(ctx, srv.url);
  await page.locator('#hooks li.hook').first().waitFor();
  let posts = 0;
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().endsWith('/api/v1/tenant/webhooks')) posts++;
  });

  // No event chosen, no URL: said beside the field, nothing sent.
  await page.getByLabel('Endpoint URL').fill('https://hooks.example/in');
  for (const b of await page.locator('#hook-events input').all()) await b.uncheck();
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.locator('#hook-events-error').waitFor();
  assert.match(/** @type {string} */ (await page.locator('#hook-events-error').textContent()), /at least one/i);
  assert.equal(await page.evaluate(() => /** @type {HTMLInputElement} */ (document.activeElement).value), 'new-image-chat', 'the focus goes to the events');
  await page.getByRole('checkbox', { name: /notification/ }).check();
  await page.getByLabel('Endpoint URL').fill('  ');
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.locator('#hook-url-error').waitFor();
  assert.equal(await page.locator('#hook-events-error').isVisible(), false);
  assert.equal(posts, 0, 'nothing sent');

  // The server's refusal of a URL: beside the URL field, which is marked and focused.
  await page.getByLabel('Endpoint URL').fill('ftp://hooks.example/in');
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await until(async () => posts === 1 && (await page.locator('#hook-url-error').isVisible()));
  const urlError = /** @type {string} */ (await page.locator('#hook-url-error').textContent());
  console.log(`ftp URL refused: ${urlError}`);
  assert.ok(urlError.length > 0);
  assert.equal(await page.getByLabel('Endpoint URL').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), 'hook-url');
  // The field's error is its description.
  assert.match(/** @type {string} */ (await page.getByLabel('Endpoint URL').getAttribute('aria-describedby')), /hook-url-error/);

  // Up to 10: the 11th is refused, said above the button.
  const have = (await listHooks(srv.url)).length;
  for (let i = have; i < 10; i++) {
    const res = await fetch(`${srv.url}/api/v1/tenant/webhooks`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: BASIC },
      body: JSON.stringify({ url: `${recvUrl}/spare-${i}`, events: ['deleted-image-chat'] }),
    });
    assert.equal(res.status, 201, await res.text());
  }
  await page.locator('#refresh').click();
  await until(async () => (await page.locator('#hooks li.hook').count()) === 10);
  assert.equal(await page.locator('#hooks-count').textContent(), '10 of 10 endpoints');
  await page.getByLabel('Endpoint URL').fill(`${recvUrl}/eleventh`);
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.locator('#hook-error').waitFor();
  assert.match(/** @type {string} */ (await page.locator('#hook-error').textContent()), /10 endpoints/);
  assert.equal(await page.locator('#hook-url-error').isVisible(), false, 'the earlier field error went');
  assert.equal(await page.locator('#hook-url').getAttribute('aria-invalid'), null);
  await page.locator('#hook-form').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(shotsDir(), 'webhooks-limit.png'), fullPage: true });

  // Delete asks first; then the endpoint is gone, here and on the server.
  const url = `${recvUrl}/fail`;
  const item = hookItem(page, url);
  await item.getByRole('button', { name: /delete endpoint/i }).click();
  const confirm = item.getByRole('button', { name: /delete for good/i });
  assert.equal(await confirm.textContent(), 'Delete for good');
  assert.equal((await listHooks(srv.url)).length, 10, 'nothing deleted yet');
  await confirm.click();
  await item.waitFor({ state: 'detached' });
  assert.equal(await page.locator('#hooks li.hook').count(), 9);
  const left = await listHooks(srv.url);
  assert.equal(left.length, 9);
  assert.equal(left.some((h) => h.url === url), false);
  assert.equal(await page.locator('#hooks-count').textContent(), '9 of 10 endpoints');
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.textContent), 'Send test event', 'the focus goes to a neighbour');
  // Asking again and leaving it: nothing happens.
  const other = page.locator('#hooks li.hook').first();
  await other.getByRole('button', { name: /delete endpoint/i }).click();
  await page.keyboard.press('Escape');
  assert.equal(await other.getByRole('button', { name: /delete endpoint/i }).textContent(), 'Delete');
  assert.equal((await listHooks(srv.url)).length, 9);
  await ctx.close();
});

test('without --webhook-allow-private a loopback URL is refused, beside the URL field', async () => {
  const strict = await startServer({ adminKey: ADMIN_KEY });
  try {
    await createTenant(strict.url);
    const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    const page = await signIn(ctx, strict.url);
    await page.locator('#hooks-empty').waitFor();
    await page.getByLabel('Endpoint URL').fill('http://127.0.0.1:1/');
    await page.getByRole('button', { name: 'Add endpoint' }).click();
    const err = page.locator('#hook-url-error');
    await err.waitFor();
    console.log(`loopback refused: ${await err.textContent()}`);
    assert.equal(await page.getByLabel('Endpoint URL').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), 'hook-url');
    assert.equal(await page.locator('#hook-secret').isVisible(), false, 'no secret');
    assert.equal(await page.locator('#hooks li.hook').count(), 0);
    assert.equal((await listHooks(strict.url)).length, 0);
    await page.locator('#webhooks').scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(shotsDir(), 'webhooks-private-refused.png'), fullPage: true });
    await axe(page, 'axe with a field error');
    await ctx.close();
  } finally {
    await strict.close();
  }
});
