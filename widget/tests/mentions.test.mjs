// Mentions, notifications and following (protocol §13) as the widget shows
// them: `@` suggestions chosen by keyboard alone in every kind of composer,
// what the server stores, mentioned names highlighted for every viewer, the
// notifications button of SSO users counting live in every tab of the
// mentioned user, opening a notification, marking read, paging, Follow /
// Unfollow, and nothing of it for anonymous visitors. Screenshots:
// `mentions-*.png`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { apiAs, createTenant, focusedHook, launch, live, markers, openImage, shotsDir, sleep, ssoFor, startServer, startSite, until } from './helpers.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const ADMIN_KEY = 'admin-key-for-mention-tests';
const SECRET = 'mention-tenant-secret';
const TENANT = 'team';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
/** @type {Awaited<ReturnType<typeof startSite>>} */
let site;
/** @type {import('playwright-core').Browser} */
let browser;

/** The people of these tests. Two names start with "A", so `@A` offers both. */
const BEA = { id: 'u-bea', username: 'Bea Writer' };
const ALEX = { id: 'u-alex', username: 'Alex Kim' };
const AVERY = { id: 'u-avery', username: 'Avery Stone' };
const CARLOS = { id: 'u-carlos', username: 'Carlos Díaz' };

/** @typedef {import('playwright-core').Page} Page */

/** @param {Record<string, unknown>} user */
const sso = (user) => ssoFor(SECRET, user);

before(async () => {
  srv = await startServer({ adminKey: ADMIN_KEY });
  site = await startSite();
  browser = await launch();
  await createTenant(srv, ADMIN_KEY, TENANT, { anonymous: 'write', secret: SECRET });
  // SSO users join the directory when they first get a session.
  for (const u of [BEA, ALEX, AVERY, CARLOS]) await apiAs(srv, TENANT, await sso(u));
});
after(async () => {
  await browser?.close();
  await site?.close();
  await srv?.close();
});

/**
 * A page of the test site with one image of `urlId`, for `user` (SSO) or an anonymous visitor.
 * @param {import('playwright-core').BrowserContext} ctx @param {string} urlId @param {Record<string, unknown> | null} user
 * @param {Record<string, unknown>} [more] other options
 */
async function openAs(ctx, urlId, user, more = {}) {
  return openImage(ctx, site, srv.url, urlId, { options: { tenantId: TENANT, ...(user ? { sso: await sso(user) } : {}), ...more } });
}

/** The new-chat composer, opened from the keyboard alone (layer, Enter, Enter), once its `@` picker is there. @param {Page} page */
async function composeByKeyboard(page) {
  await page.locator('[data-imagechat-layer]').focus();
  await page.keyboard.press('Enter'); // a marker at the centre
  await page.keyboard.press('Enter'); // its composer
  const form = page.locator('[data-imagechat-composer]');
  await form.locator('textarea[aria-autocomplete=list]').waitFor();
  assert.equal(await focusedHook(page), 'textarea');
  return form;
}

/** The suggestions of the open `@` list. @param {Page} page */
const options = (page) => page.locator('[data-imagechat-mention-list] [role=option]');

/** The name of the active suggestion, checked against the textarea's aria-activedescendant. @param {Page} page */
async function active(page) {
  const opt = page.locator('[data-imagechat-mention-list] [role=option][aria-selected=true]');
  await until(async () => (await opt.count()) === 1);
  const id = await opt.getAttribute('id');
  const ta = page.locator('textarea[aria-controls]');
  assert.equal(await ta.getAttribute('aria-activedescendant'), id);
  return /** @type {string} */ ((await opt.textContent()) || '').trim();
}

/** The stored chats of an image, as the server answers them. @param {string} urlId */
async function stored(urlId) {
  const api = await apiAs(srv, TENANT, await sso(BEA));
  const res = await api.call('GET', `/api/v1/chats?urlId=${encodeURIComponent(urlId)}`);
  assert.equal(res.status, 200);
  return /** @type {any[]} */ (res.data.chats);
}

/** The notifications button of a page once its count is known. @param {Page} page */
async function bell(page) {
  const b = page.locator('[data-imagechat-notifications]');
  await b.waitFor();
  return b;
}

/** Waits until a page's button says `n` unread (attribute, badge and name). @param {Page} page @param {number} n */
async function unread(page, n, timeout = 5000) {
  const b = await bell(page);
  await until(async () => (await b.getAttribute('data-unread')) === String(n), timeout);
  const label = /** @type {string} */ (await b.getAttribute('aria-label'));
  if (n) assert.match(label, new RegExp(`${n} unread|未読 ${n} 件`));
  else assert.doesNotMatch(label, /unread|未読/);
}

/** Waits for a marker that is stored (not pending) and returns its chat id. @param {Page} page */
async function storedMarker(page, nth = 0) {
  let id = '';
  await until(async () => {
    id = (await markers(page).nth(nth).getAttribute('data-chat-id').catch(() => null)) || '';
    return id && !id.startsWith('pending-');
  });
  return id;
}

test('`@` offers people by keyboard alone: arrows, Enter chooses, Escape closes only the list; the new chat stores its mentions and every viewer sees the names highlighted', async () => {
  const [cb, cr] = await Promise.all([browser.newContext({ reducedMotion: 'reduce' }), browser.newContext({ reducedMotion: 'reduce' })]);
  const bea = await openAs(cb, 'mention-keyboard', BEA);
  const reader = await openAs(cr, 'mention-keyboard', null);
  const form = await composeByKeyboard(bea);

  // `@A`: both people whose name starts with A, the first one active, and a screen reader hears how many.
  await bea.keyboard.type('Could @A');
  await until(async () => (await options(bea).count()) === 2);
  const names = (await options(bea).allTextContents()).map((s) => s.trim()).sort();
  assert.deepEqual(names, ['Alex Kim', 'Avery Stone']);
  const list = bea.locator('[data-imagechat-mention-list]');
  assert.equal(await list.getAttribute('role'), 'listbox');
  assert.equal(await bea.locator('textarea[aria-autocomplete=list]').getAttribute('aria-controls'), await list.getAttribute('id'));
  const first = await active(bea);
  await until(async () => /2 people found/.test((await bea.locator('[aria-live=polite]').first().textContent()) || ''), 2000);
  await bea.screenshot({ path: join(shotsDir(), 'mentions-suggestions.png') });

  // ArrowDown goes to the other one, ArrowUp back, ArrowDown again; Enter writes it into the text.
  await bea.keyboard.press('ArrowDown');
  const second = await active(bea);
  assert.notEqual(second, first);
  await bea.keyboard.press('ArrowUp');
  assert.equal(await active(bea), first);
  await bea.keyboard.press('ArrowDown');
  assert.equal(await active(bea), second);
  await bea.keyboard.press('Enter');
  await list.waitFor({ state: 'hidden' });
  assert.equal(await form.locator('textarea').inputValue(), `Could @${second} `);
  assert.equal(await focusedHook(bea), 'textarea');

  // Escape closes the suggestions, not the composer.
  await bea.keyboard.type('and @Car');
  await until(async () => (await options(bea).count()) === 1);
  await bea.keyboard.press('Escape');
  await list.waitFor({ state: 'hidden' });
  assert.equal(await form.count(), 1);
  assert.equal(await focusedHook(bea), 'textarea');
  // Typed but not chosen: not a mention. A stale answer never reopens the list.
  await bea.keyboard.type('los look at this?');
  await sleep(400);
  assert.equal(await list.isVisible(), false);
  const text = `Could @${second} and @Carlos look at this?`;
  assert.equal(await form.locator('textarea').inputValue(), text);
  await bea.screenshot({ path: join(shotsDir(), 'mentions-composer.png') });

  await bea.keyboard.press('Control+Enter');
  const id = await storedMarker(bea);
  const want = second === 'Alex Kim' ? ALEX : AVERY;
  const chat = (await stored('mention-keyboard')).find((c) => c.id === id);
  assert.ok(chat, 'the chat is stored');
  assert.deepEqual(
    chat.comments[0].mentions.map((/** @type {{id: string, name: string}} */ u) => [u.id, u.name]),
    [[want.id, want.username]],
  );
  assert.equal(chat.comments[0].text, text);

  // The writer and an anonymous reader see the chosen name highlighted (and only that one), as text.
  for (const p of [bea, reader]) {
    await markers(p).first().waitFor();
    await markers(p).first().click();
    const c = p.locator('[data-imagechat-thread] [data-imagechat-comment]').first();
    await c.locator('[data-imagechat-mention]').waitFor();
    assert.deepEqual(await c.locator('[data-imagechat-mention]').allTextContents(), [`@${second}`]);
    assert.equal(await c.locator('p').textContent(), text);
  }
  await reader.screenshot({ path: join(shotsDir(), 'mentions-highlighted.png') });
  await Promise.all([cb.close(), cr.close()]);
});

test('the reply box and the edit of a comment offer `@` too; the edit sends who it mentions now', async () => {
  const ctx = await browser.newContext({ reducedMotion: 'reduce' });
  const bea = await openAs(ctx, 'mention-reply-edit', BEA);
  const form = await composeByKeyboard(bea);
  await form.locator('textarea').fill('First words');
  await bea.keyboard.press('Control+Enter');
  const id = await storedMarker(bea);
  await markers(bea).first().click();
  const thread = bea.locator(`[data-imagechat-thread][data-chat-id="${id}"]`);
  const reply = thread.locator('[data-imagechat-composer] textarea[aria-autocomplete=list]');
  await reply.waitFor();
  await reply.focus();
  await bea.keyboard.type('Over to @al');
  await until(async () => (await options(bea).count()) === 1);
  assert.equal(await active(bea), 'Alex Kim');
  await bea.keyboard.press('Enter');
  await bea.keyboard.type('for the copy.');
  await bea.keyboard.press('Control+Enter');
  await until(async () => (await thread.locator('[data-imagechat-comment]').count()) === 2);
  let chat = (await stored('mention-reply-edit')).find((c) => c.id === id);
  assert.deepEqual(chat.comments[1].mentions.map((/** @type {{id: string}} */ u) => u.id), [ALEX.id]);
  assert.equal(chat.comments[1].text, 'Over to @Alex Kim for the copy.');
  await thread.locator('[data-imagechat-comment]').nth(1).locator('[data-imagechat-mention]').waitFor();

  // Edit the reply: Alex's name goes, Avery's comes.
  const second = thread.locator('[data-imagechat-comment]').nth(1);
  await second.locator('[data-imagechat-action=edit]').click();
  const edit = second.locator('[data-imagechat-composer] textarea[aria-autocomplete=list]');
  await edit.waitFor();
  await edit.fill('');
  await edit.focus();
  await bea.keyboard.type('Over to @Av');
  await until(async () => (await options(bea).count()) === 1);
  await bea.keyboard.press('Enter');
  await bea.keyboard.type('instead.');
  await bea.keyboard.press('Control+Enter');
  await until(async () => ((await second.locator('p').textContent()) || '') === 'Over to @Avery Stone instead.');
  chat = (await stored('mention-reply-edit')).find((c) => c.id === id);
  assert.deepEqual(chat.comments[1].mentions.map((/** @type {{id: string}} */ u) => u.id), [AVERY.id]);
  assert.deepEqual(await second.locator('[data-imagechat-mention]').allTextContents(), ['@Avery Stone']);
  await ctx.close();
});

test('the mentioned user’s count rises live in every tab; opening a notification opens its thread there and the count goes down everywhere', async () => {
  const cb = await browser.newContext();
  const ca = await browser.newContext({ reducedMotion: 'reduce' });
  const bea = await openAs(cb, 'notify-here', BEA);
  // Alex has two tabs: one shows the image the chat will be on, the other another image.
  const here = await openAs(ca, 'notify-here', ALEX);
  const there = await openAs(ca, 'notify-elsewhere', ALEX);
  const b0 = Number(await (await bell(here)).getAttribute('data-unread'));
  await unread(there, b0);

  const form = await composeByKeyboard(bea);
  await bea.keyboard.type('Price looks off, @Ale');
  await until(async () => (await options(bea).count()) === 1);
  await bea.keyboard.press('Enter');
  await bea.keyboard.press('Control+Enter');
  const id = await storedMarker(bea);
  assert.equal(await form.count(), 0);
  for (const p of [here, there]) await unread(p, b0 + 1);
  await here.screenshot({ path: join(shotsDir(), 'mentions-bell.png') });

  // By keyboard: the button opens the list with focus on the newest entry; Enter opens that thread on this page.
  const b = await bell(here);
  await b.focus();
  await here.keyboard.press('Enter');
  assert.equal(await b.getAttribute('aria-expanded'), 'true');
  const entry = here.locator(`[data-imagechat-notification][data-chat-id="${id}"]`);
  await entry.waitFor();
  assert.match(/** @type {string} */ (await entry.textContent()), /Bea Writer mentioned you.*Price looks off, @Alex Kim/);
  await until(async () => (await focusedHook(here)) === 'button[data-imagechat-notification]');
  await here.screenshot({ path: join(shotsDir(), 'mentions-notifications.png') });
  await here.addScriptTag({ content: AXE });
  const result = await here.evaluate(() => /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] }));
  /** @type {{id: string, impact: string, help: string, nodes: {target: unknown}[]}[]} */
  const bad = result.violations.filter((/** @type {{impact: string}} */ v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${JSON.stringify(v.nodes.map((n) => n.target))})`), []);

  await here.keyboard.press('Enter');
  const thread = here.locator(`[data-imagechat-thread][data-chat-id="${id}"]`);
  await thread.waitFor();
  assert.equal(await here.locator('[data-imagechat-notification]').count(), 0, 'the list closed');
  assert.equal(await focusedHook(here), 'textarea');
  for (const p of [here, there]) await unread(p, b0);

  // In the other tab the image is not shown: the entry is marked read and the list says so.
  await bea.keyboard.press('Escape');
  const id2 = await (async () => {
    const f = await composeByKeyboard(bea);
    await f.locator('textarea').fill('Also @');
    await bea.keyboard.type('Alex');
    await until(async () => (await options(bea).count()) === 1);
    await bea.keyboard.press('Enter');
    await bea.keyboard.press('Control+Enter');
    await until(async () => (await markers(bea).count()) === 2);
    return storedMarker(bea, 1);
  })();
  for (const p of [here, there]) await unread(p, b0 + 1);
  const tb = await bell(there);
  await tb.click();
  const e2 = there.locator(`[data-imagechat-notification][data-chat-id="${id2}"]`);
  await e2.waitFor();
  assert.equal(await e2.getAttribute('data-read'), 'false');
  await e2.click();
  await until(async () => (await e2.getAttribute('data-read')) === 'true');
  assert.equal(await there.locator('[data-imagechat-thread]').count(), 0);
  assert.match(/** @type {string} */ (await there.locator('[role=dialog] [role=alert]').textContent()), /not on this page/);
  for (const p of [here, there]) await unread(p, b0);
  // Escape closes the list and gives focus back to the button.
  await e2.focus();
  await there.keyboard.press('Escape');
  await e2.waitFor({ state: 'detached' });
  assert.equal(await focusedHook(there), 'button[data-imagechat-notifications]');
  await Promise.all([cb.close(), ca.close()]);
});

test('mark all read, and fifty at a time with a button for older ones', async () => {
  const api = await apiAs(srv, TENANT, await sso(BEA));
  const { status, data } = await api.call('POST', '/api/v1/chats', { urlId: 'notify-many', x: 10, y: 10, text: 'Start @Carlos Díaz', mentions: [CARLOS.id] });
  assert.equal(status, 201, JSON.stringify(data));
  const chatId = data.chat.id;
  for (let i = 1; i <= 54; i++) {
    const r = await api.call('POST', `/api/v1/chats/${chatId}/comments`, { text: `Reply ${i} for @Carlos Díaz`, mentions: [CARLOS.id] });
    assert.equal(r.status, 201, JSON.stringify(r.data));
  }
  const ctx = await browser.newContext({ reducedMotion: 'reduce' });
  const carlos = await openAs(ctx, 'notify-many', CARLOS, { locale: 'ja' });
  await unread(carlos, 55);
  const b = await bell(carlos);
  assert.equal(await b.locator('b').textContent(), '55');
  await b.click();
  const entries = carlos.locator('[data-imagechat-notification]');
  await until(async () => (await entries.count()) === 50);
  assert.match(/** @type {string} */ (await entries.first().textContent()), /Bea Writer さんがあなたをメンションしました.*Reply 54/);
  const more = carlos.locator('[data-imagechat-action=more]');
  await more.focus();
  await carlos.keyboard.press('Enter');
  await until(async () => (await entries.count()) === 55);
  assert.equal(await focusedHook(carlos), 'button[data-imagechat-notification]', 'focus goes to the first older entry');
  assert.equal(await carlos.locator('[data-imagechat-action=more]').count(), 0);
  assert.match(/** @type {string} */ (await entries.last().textContent()), /Start/);
  await carlos.screenshot({ path: join(shotsDir(), 'mentions-notifications-ja.png') });

  await carlos.locator('[data-imagechat-action=read-all]').click();
  await unread(carlos, 0);
  await until(async () => (await carlos.locator('[data-imagechat-notification][data-read=false]').count()) === 0);
  const after = await (await apiAs(srv, TENANT, await sso(CARLOS))).call('GET', '/api/v1/notifications');
  assert.equal(after.data.unread, 0);
  await ctx.close();
});

test('Follow / Unfollow in an open thread toggles what the server keeps; writing follows; followers hear of replies; anonymous visitors see neither button', async () => {
  const [cb, ca, cv] = await Promise.all([browser.newContext(), browser.newContext({ reducedMotion: 'reduce' }), browser.newContext()]);
  const bea = await openAs(cb, 'follow', BEA);
  const avery = await openAs(ca, 'follow', AVERY);
  const anon = await openAs(cv, 'follow', null);
  const f = await composeByKeyboard(bea);
  await f.locator('textarea').fill('Who wants to follow this?');
  await bea.keyboard.press('Control+Enter');
  const id = await storedMarker(bea);
  const averyApi = await apiAs(srv, TENANT, await sso(AVERY));
  const following = async () => (await averyApi.call('GET', `/api/v1/chats/${id}/follow`)).data.following;

  await markers(avery).first().click();
  const thread = avery.locator(`[data-imagechat-thread][data-chat-id="${id}"]`);
  const follow = thread.locator('[data-imagechat-action=follow]');
  await follow.waitFor();
  assert.equal((await follow.textContent())?.trim(), 'Follow');
  assert.equal(await following(), false);
  await follow.click();
  await until(async () => (await follow.textContent())?.trim() === 'Unfollow');
  assert.equal(await following(), true);
  assert.equal(await focusedHook(avery), 'button[data-imagechat-action]', 'focus stays on the button');
  await avery.screenshot({ path: join(shotsDir(), 'mentions-follow.png') });

  // A follower hears of a reply.
  const before0 = Number(await (await bell(avery)).getAttribute('data-unread'));
  await markers(bea).first().click();
  const reply = bea.locator('[data-imagechat-thread] [data-imagechat-composer] textarea');
  await reply.fill('A reply for the followers');
  await bea.keyboard.press('Control+Enter');
  await unread(avery, before0 + 1);

  await avery.keyboard.press('Enter'); // focus is on the button: Unfollow
  await until(async () => (await follow.textContent())?.trim() === 'Follow');
  assert.equal(await following(), false);

  // Writing in the chat follows it, and the open thread says so.
  await thread.locator('[data-imagechat-composer] textarea').fill('I will keep an eye on it');
  await thread.locator('[data-imagechat-composer] [type=submit]').click();
  await until(async () => (await follow.textContent())?.trim() === 'Unfollow');
  assert.equal(await following(), true);

  // Anonymous visitors: no follow button, no notifications button.
  await markers(anon).first().click();
  await anon.locator('[data-imagechat-thread] [data-imagechat-comment]').first().waitFor();
  await sleep(500);
  assert.equal(await anon.locator('[data-imagechat-action=follow]').count(), 0);
  assert.equal(await anon.locator('[data-imagechat-notifications]').count(), 0);
  await Promise.all([cb.close(), ca.close(), cv.close()]);
});

test('one notifications button per page, in the first image; it moves to the next image when that one goes', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const user = await sso(ALEX);
  const href = site.add(
    '/two-images-bell',
    `<!doctype html><html lang="en"><head><title>two</title></head><body style="margin:0;padding:16px">
<img id="a" src="${srv.url}/static/demo.svg" alt="A" width="360"><img id="b" src="${srv.url}/static/demo.svg" alt="B" width="360">
<script src="${srv.url}/imagechat.js"></script>
<script>window.a = ImageChat.attach(document.getElementById('a'), { tenantId: '${TENANT}', urlId: 'bell-a', sso: ${JSON.stringify(user)} });
ImageChat.attach(document.getElementById('b'), { tenantId: '${TENANT}', urlId: 'bell-b', sso: ${JSON.stringify(user)} });</script></body></html>`,
  );
  await page.goto(href);
  await until(async () => (await page.locator('[data-imagechat-status][data-state=live]').count()) === 2);
  const b = await bell(page);
  await sleep(300);
  assert.equal(await page.locator('[data-imagechat-notifications]').count(), 1);
  const inA = () => page.evaluate(() => !!document.getElementById('a')?.nextElementSibling?.shadowRoot?.querySelector('[data-imagechat-notifications]'));
  assert.equal(await inA(), true);
  await page.evaluate(() => /** @type {any} */ (window).a.destroy());
  await until(async () => (await page.locator('[data-imagechat-notifications]').count()) === 1 && !(await inA()));
  await b.waitFor();
  await live(page);
  await ctx.close();
});

test('light, dark, forced colors and a phone: suggestions, highlighted names, the button and its list stay visible; axe finds nothing serious with the suggestions open', async () => {
  // Something to be notified of and to read, once.
  const api = await apiAs(srv, TENANT, await sso(BEA));
  const made = await api.call('POST', '/api/v1/chats', { urlId: 'mention-looks', x: 70, y: 30, text: 'Ping @Avery Stone about the header', mentions: [AVERY.id] });
  assert.equal(made.status, 201, JSON.stringify(made.data));
  for (const [name, o] of /** @type {const} */ ([
    ['light', { colorScheme: 'light', forcedColors: 'none', viewport: { width: 1000, height: 700 } }],
    ['dark', { colorScheme: 'dark', forcedColors: 'none', viewport: { width: 1000, height: 700 } }],
    ['forced', { colorScheme: 'dark', forcedColors: 'active', viewport: { width: 1000, height: 700 } }],
    ['phone', { colorScheme: 'light', forcedColors: 'none', viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true }],
  ])) {
    const ctx = await browser.newContext({ ...o, reducedMotion: 'reduce' });
    const page = await openAs(ctx, 'mention-looks', AVERY);
    await markers(page).first().click();
    const thread = page.locator('[data-imagechat-thread]');
    await thread.locator('[data-imagechat-mention]').waitFor();
    const reply = thread.locator('[data-imagechat-composer] textarea[aria-autocomplete=list]');
    await reply.waitFor();
    await reply.focus();
    await page.keyboard.type('Thanks @A');
    await until(async () => (await options(page).count()) === 2);
    await page.screenshot({ path: join(shotsDir(), `mentions-thread-${name}.png`) });
    if (name !== 'phone') {
      await page.addScriptTag({ content: AXE });
      const result = await page.evaluate(() => /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] }));
      /** @type {{id: string, impact: string, help: string, nodes: {target: unknown}[]}[]} */
      const bad = result.violations.filter((/** @type {{impact: string}} */ v) => v.impact === 'serious' || v.impact === 'critical');
      assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${JSON.stringify(v.nodes.map((n) => n.target))})`), [], name);
    }
    await page.keyboard.press('Escape'); // the list
    await page.keyboard.press('Escape'); // the thread
    await thread.waitFor({ state: 'detached' });
    const b = await bell(page);
    await b.click();
    await page.locator('[data-imagechat-notification]').first().waitFor();
    if (name === 'phone') {
      const box = /** @type {{x: number, y: number, width: number, height: number}} */ (await page.locator('[role=dialog]:has([data-imagechat-notification])').boundingBox());
      assert.ok(box.x >= 0 && box.x + box.width <= 375, `the list fits the screen: ${JSON.stringify(box)}`);
    }
    await page.screenshot({ path: join(shotsDir(), `mentions-list-${name}.png`) });
    await ctx.close();
  }
});
