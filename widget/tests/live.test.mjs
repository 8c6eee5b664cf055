// Two viewers of one image: every change of one appears at the other, live,
// and the author never sees its own change twice.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createAt, launch, markers, median, openImage, sleep, startServer, startSite, until } from './helpers.mjs';

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

/** Records when each marker first appears, and when a composer was last submitted. @param {import('playwright-core').Page} page */
async function watch(page) {
  await page.evaluate(() => {
    const w = /** @type {any} */ (window);
    const root = /** @type {ShadowRoot} */ (/** @type {Element} */ (document.querySelector('#img')?.nextElementSibling).shadowRoot);
    w.__seen = {};
    const scan = () => {
      for (const m of root.querySelectorAll('[data-imagechat-marker]')) {
        const id = m.getAttribute('data-chat-id') || '';
        if (!(id in w.__seen)) w.__seen[id] = Date.now();
      }
    };
    new MutationObserver(scan).observe(root, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-chat-id'] });
    scan();
    root.addEventListener('submit', () => (w.__submitAt = Date.now()), true);
  });
}

/** Marker ids in the page, in DOM order. @param {import('playwright-core').Page} page */
const ids = (page) => markers(page).evaluateAll((els) => els.map((e) => e.getAttribute('data-chat-id') || ''));

/** The marker's centre as percentages of the layer. @param {import('playwright-core').Page} page @param {string} id */
async function position(page, id) {
  const layer = await page.locator('[data-imagechat-layer]').boundingBox();
  const m = await page.locator(`[data-imagechat-marker][data-chat-id="${id}"]`).boundingBox();
  if (!layer || !m) throw new Error('not visible');
  return { x: ((m.x + m.width / 2 - layer.x) / layer.width) * 100, y: ((m.y + m.height / 2 - layer.y) / layer.height) * 100 };
}

/** @param {string[]} xs */
const unique = (xs) => new Set(xs).size === xs.length;

describe('two viewers of one image', () => {
  test('create appears at the other viewer within a second; reply, edit, resolve, move, delete follow', async () => {
    const a = await browser.newContext({ viewport: { width: 1100, height: 800 } });
    const b = await browser.newContext({ viewport: { width: 1100, height: 800 } });
    const pa = await openImage(a, site, srv.url, 'live-two-viewers');
    const pb = await openImage(b, site, srv.url, 'live-two-viewers');
    await watch(pa);
    await watch(pb);

    // Both see each other.
    await until(async () => (await pa.locator('[data-imagechat-viewers]').textContent()) === '2');
    await until(async () => (await pb.locator('[data-imagechat-viewers]').textContent()) === '2');

    /** @type {number[]} */
    const times = [];
    const spots = [
      [15, 20],
      [30, 60],
      [45, 25],
      [60, 70],
      [75, 35],
      [20, 80],
      [85, 15],
    ];
    for (const [i, [x, y]] of spots.entries()) {
      await createAt(pa, x, y, `Note ${i + 1}: is this spacing right?`);
      await until(async () => (await ids(pb)).length === i + 1, 3000);
      const id = (await ids(pb))[i];
      const [seen, submitted] = await Promise.all([pb.evaluate((id) => /** @type {any} */ (window).__seen[id], id), pa.evaluate(() => /** @type {any} */ (window).__submitAt)]);
      times.push(seen - submitted);
      // The author sees exactly one marker for it, with the server's id.
      await until(async () => {
        const mine = await ids(pa);
        return mine.length === i + 1 && mine.every((m) => !m.startsWith('pending-'));
      }, 3000);
    }
    const med = median(times);
    console.log(`create→remote marker median: ${Math.round(med)} ms (n=${times.length}, max ${Math.max(...times)} ms)`);
    assert.ok(med < 1000, `median ${med} ms`);
    assert.ok(Math.max(...times) < 3000);
    await sleep(300); // echoes have arrived by now: still no duplicates
    assert.deepEqual(await ids(pa), await ids(pb));
    assert.ok(unique(await ids(pa)));
    const counts = await pa.evaluate(() => /** @type {any} */ (window).__counts);
    assert.equal(counts[counts.length - 1], spots.length, 'onCountChange reports the stored count');

    const target = (await ids(pa))[0];
    const markerA = pa.locator(`[data-imagechat-marker][data-chat-id="${target}"]`);
    const markerB = pb.locator(`[data-imagechat-marker][data-chat-id="${target}"]`);

    // Reply from B shows at A (thread open at A) exactly once; B sees its own reply once.
    await markerA.click();
    const threadA = pa.locator(`[data-imagechat-thread][data-chat-id="${target}"]`);
    await threadA.waitFor();
    await markerB.click();
    const threadB = pb.locator(`[data-imagechat-thread][data-chat-id="${target}"]`);
    await threadB.locator('[data-imagechat-composer] textarea').fill('Looks fine to me');
    await threadB.locator('[data-imagechat-composer] [type=submit]').click();
    await threadA.locator('[data-imagechat-comment]').nth(1).waitFor({ timeout: 1500 });
    assert.equal(await threadA.locator('[data-imagechat-comment]').nth(1).locator('p').textContent(), 'Looks fine to me');
    // A hears it through the polite live region; B, who wrote it, does not.
    await until(async () => /Looks fine to me/.test((await pa.locator('[aria-live=polite]').textContent()) || ''), 1500);
    assert.doesNotMatch((await pb.locator('[aria-live=polite]').textContent()) || '', /Looks fine to me/);
    await sleep(300);
    assert.equal(await threadB.locator('[data-imagechat-comment]').count(), 2);
    assert.equal(await threadA.locator('[data-imagechat-comment]').count(), 2);
    // The reply box was cleared after sending.
    assert.equal(await threadB.locator('[data-imagechat-composer] textarea').inputValue(), '');

    // Edit by A: only the author gets edit controls.
    const firstA = threadA.locator('[data-imagechat-comment]').first();
    assert.equal(await threadB.locator('[data-imagechat-comment]').first().locator('[data-imagechat-action=edit]').count(), 0, 'B may not edit A');
    await firstA.locator('[data-imagechat-action=edit]').click();
    await firstA.locator('textarea').fill('Note 1: spacing fixed in v2');
    await firstA.locator('[data-imagechat-action=save]').click();
    await until(async () => (await threadB.locator('[data-imagechat-comment]').first().locator('p').textContent()) === 'Note 1: spacing fixed in v2', 1500);
    assert.equal(await firstA.locator('p').textContent(), 'Note 1: spacing fixed in v2');

    // Resolve by B; A's marker turns resolved.
    await threadB.locator('[data-imagechat-action=resolve]').click();
    await until(async () => (await markerA.getAttribute('data-resolved')) === 'true', 1500);
    // B's own marker turns on its answer or its echo, whichever comes first:
    // a few ms either side of A's event, so it is awaited too.
    await until(async () => (await markerB.getAttribute('data-resolved')) === 'true', 1500);
    await threadB.locator('[data-imagechat-action=resolve]').click();
    await until(async () => (await markerA.getAttribute('data-resolved')) === 'false', 1500);

    // Move by A (drag); B's marker follows.
    await pa.keyboard.press('Escape');
    await threadA.waitFor({ state: 'detached' });
    await pb.keyboard.press('Escape');
    const before = await position(pb, target);
    const layer = /** @type {{x: number, y: number, width: number, height: number}} */ (await pa.locator('[data-imagechat-layer]').boundingBox());
    const mb = /** @type {{x: number, y: number, width: number, height: number}} */ (await markerA.boundingBox());
    await pa.mouse.move(mb.x + mb.width / 2, mb.y + mb.height / 2);
    await pa.mouse.down();
    await pa.mouse.move(layer.x + layer.width * 0.5, layer.y + layer.height * 0.5, { steps: 8 });
    await pa.mouse.up();
    await until(async () => {
      const p = await position(pb, target);
      return Math.abs(p.x - 50) < 1.5 && Math.abs(p.y - 50) < 1.5;
    }, 2000);
    assert.ok(Math.abs(before.x - 50) > 5, 'it really moved');
    assert.equal(await threadA.count(), 0, 'a drag does not open the thread');

    // Delete the chat from A (with confirmation); it vanishes at B.
    await markerA.click();
    await threadA.locator('[data-imagechat-action=delete-chat]').click();
    await threadA.locator('[data-imagechat-action=confirm]').click();
    await markerB.waitFor({ state: 'detached', timeout: 1500 });
    await markerA.waitFor({ state: 'detached', timeout: 1500 });
    await sleep(300);
    assert.equal((await ids(pa)).length, spots.length - 1);
    assert.deepEqual(await ids(pa), await ids(pb));

    // Deleting the only comment of a chat deletes the chat too.
    const last = (await ids(pa))[0];
    await pa.locator(`[data-imagechat-marker][data-chat-id="${last}"]`).click();
    await pa.locator(`[data-imagechat-thread][data-chat-id="${last}"]`).waitFor();
    await pa.locator(`[data-imagechat-thread] [data-imagechat-comment] [data-imagechat-action=delete]`).first().click();
    await pa.locator('[data-imagechat-thread] [data-imagechat-action=confirm]').click();
    await pb.locator(`[data-imagechat-marker][data-chat-id="${last}"]`).waitFor({ state: 'detached', timeout: 1500 });
    // A's own marker goes on its answer or its echo, a few ms either side
    // of B's event: awaited too.
    await pa.locator(`[data-imagechat-marker][data-chat-id="${last}"]`).waitFor({ state: 'detached', timeout: 1500 });
    assert.equal((await ids(pa)).length, spots.length - 2);

    // B leaves: A's viewer count follows.
    await b.close();
    await until(async () => (await pa.locator('[data-imagechat-viewers]').textContent()) === '1', 3000);
    await a.close();
  });

  test('two tabs of one browser stay in sync and share one identity', async () => {
    const ctx = await browser.newContext();
    const p1 = await openImage(ctx, site, srv.url, 'live-two-tabs');
    const p2 = await openImage(ctx, site, srv.url, 'live-two-tabs');
    await createAt(p1, 40, 40, 'From tab one');
    await markers(p2).first().waitFor({ timeout: 1500 });
    await markers(p2).first().click();
    const thread = p2.locator('[data-imagechat-thread]');
    // Same person in both tabs: tab two may edit what tab one wrote.
    await thread.locator('[data-imagechat-comment] [data-imagechat-action=edit]').waitFor();
    await thread.locator('[data-imagechat-composer] textarea').fill('And from tab two');
    await thread.locator('[data-imagechat-composer] [type=submit]').click();
    await markers(p1).first().click();
    await p1.locator('[data-imagechat-thread] [data-imagechat-comment]').nth(1).waitFor({ timeout: 1500 });
    await sleep(300);
    assert.equal(await p1.locator('[data-imagechat-thread] [data-imagechat-comment]').count(), 2);
    assert.equal(await p2.locator('[data-imagechat-thread] [data-imagechat-comment]').count(), 2);
    assert.equal(await markers(p1).count(), 1);
    assert.equal(await markers(p2).count(), 1);
    await ctx.close();
  });

  test('several images on one page share one WebSocket', async () => {
    const ctx = await browser.newContext();
    let sockets = 0;
    let closed = 0;
    const page = await ctx.newPage();
    page.on('websocket', (ws) => {
      sockets++;
      ws.on('close', () => closed++);
    });
    const href = site.add(
      '/three-images',
      `<!doctype html><html lang="en"><head><title>three</title></head><body>
${[1, 2, 3].map((i) => `<img id="i${i}" src="${srv.url}/static/demo.svg" alt="Mockup ${i}" width="300">`).join('\n')}
<script src="${srv.url}/imagechat.js"></script>
<script>for (const i of [1, 2, 3]) window['c' + i] = ImageChat.attach(document.getElementById('i' + i), { tenantId: 'demo', urlId: 'shared-socket-' + i });
window.same = ImageChat.attach(document.getElementById('i1'), { tenantId: 'demo' }) === window.c1;</script></body></html>`,
    );
    await page.goto(href);
    await until(async () => (await page.locator('[data-imagechat-status][data-state=live]').count()) === 3);
    assert.equal(sockets, 1);
    assert.equal(await page.evaluate(() => /** @type {any} */ (window).same), true, 'attaching twice returns the existing instance');
    // destroy() removes every trace.
    await page.evaluate(() => /** @type {any} */ (window).c2.destroy());
    assert.equal(await page.locator('[data-imagechat-layer]').count(), 2);
    assert.equal(closed, 0, 'the others still use the socket');
    // The last one gone, the socket goes too.
    await page.evaluate(() => ['c1', 'c3'].forEach((c) => /** @type {any} */ (window)[c].destroy()));
    assert.equal(await page.locator('[data-imagechat-layer]').count(), 0);
    await until(async () => closed === 1, 2000);
    assert.equal(sockets, 1);
    await ctx.close();
  });
});
