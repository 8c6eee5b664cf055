// The tenant dashboard: sign in, see one's own usage, moderate a chat and
// watch it vanish from a viewer's page.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createAt, launch, markers, openImage, shotsDir, startServer, startSite, until } from './helpers.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const ADMIN_KEY = 'admin-key-for-dashboard-tests';
const TENANT = 'acme-shop';
const SECRET = 'a-long-tenant-secret-for-tests';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
/** @type {Awaited<ReturnType<typeof startSite>>} */
let site;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  srv = await startServer({ adminKey: ADMIN_KEY });
  site = await startSite();
  browser = await launch();
  const res = await fetch(`${srv.url}/api/v1/admin/tenants`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ADMIN_KEY}` },
    body: JSON.stringify({ tenantId: TENANT, anonymous: 'write', secret: SECRET }),
  });
  assert.equal(res.status, 201, await res.text());
});
after(async () => {
  await browser?.close();
  await site?.close();
  await srv?.close();
});

test('sign in, see usage of our own activity, delete a chat and see it vanish for a viewer', async () => {
  const viewerCtx = await browser.newContext();
  const viewer = await openImage(viewerCtx, site, srv.url, 'product-42-hero', { options: { tenantId: TENANT } });
  await createAt(viewer, 20, 30, 'Colour looks off here');
  await createAt(viewer, 70, 60, 'Price should be bold');
  await until(async () => (await markers(viewer).count()) === 2 && !(await markers(viewer).evaluateAll((els) => els.some((e) => (e.getAttribute('data-chat-id') || '').startsWith('pending-')))));
  await markers(viewer).first().click();
  await viewer.locator('[data-imagechat-thread] [data-imagechat-composer] textarea').fill('Agreed');
  await viewer.locator('[data-imagechat-thread] [data-imagechat-composer] [type=submit]').click();
  await viewer.locator('[data-imagechat-thread] [data-imagechat-comment]').nth(1).waitFor();
  await viewer.keyboard.press('Escape');

  const ctx = await browser.newContext({ viewport: { width: 1200, height: 1000 } });
  const page = await ctx.newPage();
  await page.goto(`${srv.url}/admin`);
  await page.locator('#tenantId').fill(TENANT);
  await page.locator('#secret').fill('wrong');
  await page.locator('#login [type=submit]').click();
  await page.locator('#login-error').waitFor();
  assert.match(/** @type {string} */ (await page.locator('#login-error').textContent()), /wrong/i);
  await page.locator('#secret').fill(SECRET);
  await page.locator('#login [type=submit]').click();
  await page.locator('#dash').waitFor();
  assert.match(/** @type {string} */ (await page.locator('#who').textContent()), new RegExp(TENANT));

  // Usage counters are flushed every few seconds: refresh until today's row shows our activity.
  const today = new Date().toISOString().slice(0, 10);
  const row = page.locator('#usage tbody tr', { has: page.locator(`th:text-is("${today}")`) });
  await until(
    async () => {
      await page.locator('#refresh').click();
      await page.waitForTimeout(300);
      const cells = await row.locator('td').allTextContents();
      return cells.length === 5 && cells[2] === '2' && cells[3] === '3' && Number(cells[0].replace(/,/g, '')) > 0;
    },
    30000,
    700,
  );
  const cells = await row.locator('td').allTextContents();
  console.log(`dashboard today: messages ${cells[0]}, bandwidth ${cells[1]}, conversations ${cells[2]}, comments ${cells[3]}, peak ${cells[4]}`);
  assert.match(cells[1], /^\d+(\.\d)? (B|KB|MB)$/, 'bandwidth in human units');
  assert.ok(Number(cells[4]) >= 1, 'peak connections');
  assert.ok(await page.locator('#chart svg rect.bar').count() >= 7, 'a bar per day');
  await until(async () => Number(await page.locator('#live-connections').textContent()) >= 1, 10000);

  // Images, latest first, with our image and its chat count.
  const img = page.locator('#images tbody tr', { has: page.locator('td:text-is("product-42-hero")') });
  await img.waitFor();
  assert.equal(await img.locator('td').nth(1).textContent(), '2');
  await page.screenshot({ path: join(shotsDir(), 'dashboard.png'), fullPage: true });
  await page.addScriptTag({ content: AXE });
  const audit = await page.evaluate(() => /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] }));
  assert.deepEqual(
    audit.violations.filter((/** @type {{impact: string}} */ v) => v.impact === 'serious' || v.impact === 'critical').map((/** @type {{id: string}} */ v) => v.id),
    [],
    'axe on the dashboard',
  );

  // Moderate: open the image's chats and delete one; the viewer sees it vanish.
  await img.getByRole('button').click();
  const items = page.locator('#chats li[data-chat-id]');
  await until(async () => (await items.count()) === 2);
  const doomed = /** @type {string} */ (await items.first().getAttribute('data-chat-id'));
  assert.equal(await items.first().locator('.text').textContent(), 'Colour looks off here');
  await page.screenshot({ path: join(shotsDir(), 'dashboard-moderation.png'), fullPage: true });
  await items.first().getByRole('button').click();
  await items.first().getByRole('button', { name: /confirm/i }).click();
  await viewer.locator(`[data-imagechat-marker][data-chat-id="${doomed}"]`).waitFor({ state: 'detached', timeout: 2000 });
  assert.equal(await markers(viewer).count(), 1);
  await until(async () => (await items.count()) === 1);

  // Sign out: back to the form, and the API refuses us.
  await page.locator('#logout').click();
  await page.locator('#signin').waitFor();
  const me = await page.evaluate(() => fetch('/api/v1/tenant/me').then((r) => r.status));
  assert.equal(me, 401);
  await ctx.close();
  await viewerCtx.close();
});
