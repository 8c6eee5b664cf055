// The tenant dashboard: sign in, see one's own usage, moderate a chat and
// watch it vanish from a viewer's page; the image view with its shapes,
// annotations exported and imported.
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
  // Through the debugging protocol: the dashboard's CSP (rightly) refuses inline scripts.
  await page.evaluate(AXE);
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

/** Signs in to the dashboard in a fresh context. @param {import('playwright-core').BrowserContext} ctx */
async function signIn(ctx) {
  const page = await ctx.newPage();
  await page.goto(`${srv.url}/admin`);
  await page.locator('#tenantId').fill(TENANT);
  await page.locator('#secret').fill(SECRET);
  await page.locator('#login [type=submit]').click();
  await page.locator('#dash').waitFor();
  return page;
}

test('the image view shows the picture with its markers and shapes; export downloads JSON-LD; import says what it took', async () => {
  const urlId = 'regions-on-dashboard';
  const imageUrl = `${srv.url}/static/demo.svg`;
  const { token } = await (await fetch(`${srv.url}/api/v1/sessions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tenantId: TENANT }) })).json();
  /** @param {string} u @param {object} body */
  const create = async (u, body) => {
    const res = await fetch(`${srv.url}/api/v1/chats`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }, body: JSON.stringify({ urlId: u, ...body }) });
    assert.equal(res.status, 201, await res.text());
  };
  const rect = { type: 'rect', x: 10, y: 20, w: 30, h: 25 };
  await create(urlId, { x: 10, y: 20, text: 'The header is too tall', shape: rect, imageUrl });
  await create(urlId, { x: 60, y: 60, text: 'This card', shape: { type: 'polygon', points: [[60, 60], [80, 58], [78, 85], [62, 88]] }, imageUrl });
  await create(urlId, { x: 90, y: 15, text: 'A plain pin', imageUrl });
  await create('no-picture-known', { x: 50, y: 50, text: 'Sent without an image address' });

  const ctx = await browser.newContext({ viewport: { width: 1200, height: 1000 } });
  const page = await signIn(ctx);
  const row = page.locator('#images tbody tr', { has: page.locator(`td:text-is("${urlId}")`) });
  await row.getByRole('button').click();
  const img = page.locator('#mod-img');
  await until(async () => (await img.evaluate((i) => /** @type {HTMLImageElement} */ (i).naturalWidth)) > 0);
  assert.equal(await img.getAttribute('src'), imageUrl);
  assert.equal(await page.locator('#mod-shapes [data-chat-id]').count(), 2, 'two shapes');
  assert.equal(await page.locator('#mod-stage .pin').count(), 3, 'three markers');
  // The rectangle sits at its percentages of the picture.
  const ib = /** @type {{x: number, y: number, width: number, height: number}} */ (await img.boundingBox());
  const rb = await page.locator('#mod-shapes rect').evaluate((r) => {
    const b = r.getBoundingClientRect();
    return [b.x, b.y, b.width, b.height];
  });
  const want = [ib.x + ib.width * 0.1, ib.y + ib.height * 0.2, ib.width * 0.3, ib.height * 0.25];
  assert.ok(rb.every((v, i) => Math.abs(v - want[i]) < 1), `rect at ${rb}, want ${want}`);
  assert.match(/** @type {string} */ (await page.locator('#chats li').first().textContent()), /rectangle at 10\.0%, 20\.0%/);
  await page.screenshot({ path: join(shotsDir(), 'dashboard-picture.png'), fullPage: true });
  // Through the debugging protocol: the dashboard's CSP (rightly) refuses inline scripts.
  await page.evaluate(AXE);
  const audit = await page.evaluate(() => /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] }));
  assert.deepEqual(
    audit.violations.filter((/** @type {{impact: string}} */ v) => v.impact === 'serious' || v.impact === 'critical').map((/** @type {{id: string}} */ v) => v.id),
    [],
    'axe on the image view',
  );

  // Export: a download of the image's W3C AnnotationPage.
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#mod-export').click()]);
  const exported = JSON.parse(readFileSync(/** @type {string} */ (await download.path()), 'utf8'));
  assert.equal(exported.type, 'AnnotationPage');
  assert.equal(exported['@context'], 'http://www.w3.org/ns/anno.jsonld');
  assert.equal(exported.items.filter((/** @type {{motivation: string}} */ a) => a.motivation === 'commenting').length, 3);
  assert.equal(exported.items[0].target.source, imageUrl);

  // Import: a small AnnotationPage of a rectangle and a reply to it.
  const annotations = {
    '@context': 'http://www.w3.org/ns/anno.jsonld',
    type: 'AnnotationPage',
    items: [
      {
        id: 'https://annotations.example/a/1',
        type: 'Annotation',
        motivation: 'commenting',
        body: { type: 'TextualBody', value: 'Imported rectangle', format: 'text/plain', purpose: 'commenting' },
        target: { source: 'https://images.example/shoe.jpg', selector: { type: 'FragmentSelector', conformsTo: 'http://www.w3.org/TR/media-frags/', value: 'xywh=percent:50,10,20,30' } },
        creator: { id: 'https://people.example/ana', type: 'Person', name: 'Ana' },
      },
      { id: 'https://annotations.example/a/2', type: 'Annotation', motivation: 'replying', body: { type: 'TextualBody', value: 'An imported reply' }, target: 'https://annotations.example/a/1' },
    ],
  };
  const posted = page.waitForRequest((r) => r.method() === 'POST' && r.url().includes('/api/v1/tenant/annotations'));
  await page.locator('#mod-import-file').setInputFiles({ name: 'page.jsonld', mimeType: 'application/ld+json', buffer: Buffer.from(JSON.stringify(annotations)) });
  assert.match(/** @type {string} */ ((await posted).headers()['content-type']), /^application\/ld\+json/);
  await until(async () => /Imported 2 annotations/.test(/** @type {string} */ (await page.locator('#mod-import-result').textContent())), 5000);
  await until(async () => (await page.locator('#chats li[data-chat-id]').count()) === 4, 5000);
  assert.equal(await page.locator('#mod-shapes [data-chat-id]').count(), 3, 'the imported rectangle is drawn');
  await page.screenshot({ path: join(shotsDir(), 'dashboard-imported.png'), fullPage: true });

  // An image whose address is not known says so instead of showing a broken picture.
  await page.locator('#images tbody tr', { has: page.locator('td:text-is("no-picture-known")') }).getByRole('button').click();
  await until(async () => /not known/.test(/** @type {string} */ (await page.locator('#mod-caption').textContent())));
  assert.equal(await page.locator('#mod-stage').isVisible(), false);
  await ctx.close();
});
