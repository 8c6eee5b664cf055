// imagechat tenant dashboard: usage, live connections, images, moderation
// (the image itself with its markers and shapes), annotations out and in,
// webhook endpoints with their deliveries.
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Plain script served at /static/admin.js, type-checked with tsc --checkJs.
// Signs in with tenant id + secret (the server sets an HttpOnly cookie), then
// reads the tenant API on the same origin. Everything user-supplied is shown
// with textContent.
(function () {
  'use strict';

  /**
   * @typedef {{date: string, pubSubMessageCount: number, pubSubBandwidth: number,
   *   conversationCreateCount: number, commentCreateCount: number, peakConnections: number}} Day
   * @typedef {'pubSubMessageCount' | 'pubSubBandwidth' | 'conversationCreateCount' | 'commentCreateCount' | 'peakConnections'} Metric
   * @typedef {{urlId: string, chatCount: number, lastActivity: number, seq: number}} Image
   * @typedef {{id: string, name: string}} User
   * @typedef {{id: string, user: User, text: string, createdAt: number}} Comment
   * @typedef {{type: string, points?: number[][], [k: string]: unknown}} Shape protocol §10
   * @typedef {{id: string, x: number, y: number, resolved: boolean, user: User, createdAt: number, comments: Comment[], shape?: Shape}} Chat
   * @typedef {{id: string, url: string, events: string[], createdAt: number | string}} Webhook protocol §12
   * @typedef {{at: number | string, webhookId: string, status: number | null, error?: string, durationMs: number}} Delivery
   */

  const NS = 'http://www.w3.org/2000/svg';
  /** Shape types, their SVG elements and their names. @type {Record<string, [string, string]>} */
  const SHAPES = { rect: ['rect', 'rectangle'], ellipse: ['ellipse', 'ellipse'], polygon: ['polygon', 'polygon'], arrow: ['line', 'arrow'] };

  const LIVE_EVERY = 5000;
  const DATA_EVERY = 15000;

  /** @template {HTMLElement} T @param {string} id @returns {T} */
  function $(id) {
    const el = document.getElementById(id);
    if (!el) throw new Error(`#${id} missing`);
    return /** @type {T} */ (el);
  }

  /**
   * @param {string} tag @param {string} [text] @param {string} [cls]
   * @returns {HTMLElement}
   */
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text != null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  /** 1536 → "1.5 KB" (powers of 1024). @param {number} n */
  function bytes(n) {
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
  }

  const num = new Intl.NumberFormat('en');
  /** @param {Metric} m @param {number} v */
  const fmt = (m, v) => (m === 'pubSubBandwidth' ? bytes(v) : num.format(v));

  /** @param {number} ms */
  function ago(ms) {
    if (!ms) return '–';
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 60) return 'just now';
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return new Date(ms).toLocaleDateString();
  }

  class HttpError extends Error {
    /** @param {number} status @param {string} message @param {string} [code] @param {string} [field] */
    constructor(status, message, code, field) {
      super(message);
      this.status = status;
      /** The error's `code` (protocol §5), when the server sent one. */
      this.code = code;
      /** The request field it is about, when the server named one. */
      this.field = field;
    }
  }

  /** @param {string} method @param {string} path @param {unknown} [body] @returns {Promise<any>} */
  async function api(method, path, body) {
    /** @type {RequestInit} */
    const init = { method, credentials: 'same-origin', headers: body === undefined ? {} : { 'Content-Type': 'application/json' } };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(path, init);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      if (res.status === 401 && path !== '/api/v1/tenant/login') showSignIn();
      const err = data.error || {};
      throw new HttpError(res.status, err.message || res.statusText, err.code, err.field);
    }
    return data;
  }

  /** @type {ReturnType<typeof setInterval>[]} */
  let timers = [];
  /** @type {Day[]} */
  let days = [];
  /** @type {string | null} */
  let openUrlId = null;

  function showSignIn() {
    for (const t of timers) clearInterval(t);
    timers = [];
    $('dash').hidden = true;
    $('who').hidden = true;
    $('logout').hidden = true;
    $('signin').hidden = false;
    resetHooks();
    $('tenantId').focus();
  }

  /** @param {string} tenantId */
  function showDashboard(tenantId) {
    $('signin').hidden = true;
    $('dash').hidden = false;
    const who = $('who');
    who.textContent = `Tenant: ${tenantId}`;
    who.hidden = false;
    $('logout').hidden = false;
    document.title = `${tenantId} · imagechat dashboard`;
    refreshAll();
    timers = [setInterval(refreshLive, LIVE_EVERY), setInterval(refreshData, DATA_EVERY)];
  }

  /** @param {unknown} e */
  function report(e) {
    if (e instanceof HttpError && e.status === 401) return;
    const p = $('dash-error');
    p.textContent = `Something went wrong: ${e instanceof Error ? e.message : String(e)}`;
    p.hidden = false;
  }

  function refreshAll() {
    refreshLive();
    refreshData();
  }

  async function refreshLive() {
    try {
      const live = await api('GET', '/api/v1/tenant/live');
      $('live-connections').textContent = num.format(live.connections);
      $('live-subscriptions').textContent = num.format(live.subscriptions);
    } catch (e) {
      report(e);
    }
  }

  async function refreshData() {
    await Promise.all([loadUsage(), loadImages(), openUrlId ? loadChats(openUrlId) : null, loadHooks()]);
  }

  /** @param {Date} d */
  const ymd = (d) => d.toISOString().slice(0, 10);

  async function loadUsage() {
    const n = Number(/** @type {HTMLSelectElement} */ ($('range')).value);
    const to = new Date();
    const from = new Date(to.getTime() - (n - 1) * 86400000);
    try {
      const data = await api('GET', `/api/v1/tenant/usage?from=${ymd(from)}&to=${ymd(to)}`);
      days = /** @type {Day[]} */ (data.days).slice().sort((a, b) => a.date.localeCompare(b.date));
      $('dash-error').hidden = true;
      renderUsage();
    } catch (e) {
      report(e);
    }
  }

  function metric() {
    return /** @type {Metric} */ (/** @type {HTMLSelectElement} */ ($('metric')).value);
  }

  function renderUsage() {
    const sum = (/** @type {Metric} */ k) => days.reduce((a, d) => a + (d[k] || 0), 0);
    const span = days.length === 1 ? 'today' : `${days.length} days`;
    $('sum-messages-label').textContent = `Messages, ${span}`;
    $('sum-bandwidth-label').textContent = `Bandwidth, ${span}`;
    $('sum-messages').textContent = num.format(sum('pubSubMessageCount'));
    $('sum-bandwidth').textContent = bytes(sum('pubSubBandwidth'));
    drawChart($('chart'), days, metric());
    const tbody = /** @type {HTMLTableSectionElement} */ ($('usage').querySelector('tbody'));
    tbody.replaceChildren(
      ...days
        .slice()
        .reverse()
        .map((d) => {
          const tr = el('tr');
          const th = el('th', d.date);
          th.setAttribute('scope', 'row');
          tr.append(
            th,
            el('td', num.format(d.pubSubMessageCount)),
            el('td', bytes(d.pubSubBandwidth)),
            el('td', num.format(d.conversationCreateCount)),
            el('td', num.format(d.commentCreateCount)),
            el('td', num.format(d.peakConnections)),
          );
          return tr;
        }),
    );
  }

  /** A bar chart of one metric per day, drawn as inline SVG. @param {HTMLElement} box @param {Day[]} data @param {Metric} m */
  function drawChart(box, data, m) {
    const W = 900;
    const H = 240;
    const pad = { l: 64, r: 12, t: 12, b: 28 };
    const max = Math.max(1, ...data.map((d) => d[m] || 0));
    // Four grid steps of a round size (1, 2 or 5 times a power of ten, at
    // least 1: the counts are whole), so every grid line has an exact label.
    const raw = max / 4;
    const pow = 10 ** Math.floor(Math.log10(raw));
    const step = Math.max(1, [1, 2, 5, 10].map((f) => f * pow).find((v) => v >= raw) || raw);
    const top = step * 4;
    /** @param {string} tag @param {Record<string, string | number>} attrs @param {string} [text] */
    const s = (tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
      if (text != null) e.textContent = text;
      return e;
    };
    const label = /** @type {HTMLSelectElement} */ ($('metric')).selectedOptions[0].textContent || m;
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${label} per day, ${data.length} days, highest ${fmt(m, max)}` });
    const ih = H - pad.t - pad.b;
    const iw = W - pad.l - pad.r;
    for (let i = 0; i <= 4; i++) {
      const y = pad.t + ih - (ih * i) / 4;
      svg.append(s('line', { class: 'grid', x1: pad.l, x2: W - pad.r, y1: y, y2: y }));
      svg.append(s('text', { x: pad.l - 8, y: y + 4, 'text-anchor': 'end' }, fmt(m, step * i)));
    }
    const bw = iw / Math.max(1, data.length);
    const every = Math.ceil(data.length / 10);
    data.forEach((d, i) => {
      const v = d[m] || 0;
      const bh = (ih * v) / top;
      const x = pad.l + i * bw;
      const r = s('rect', { class: 'bar', x: x + bw * 0.15, y: pad.t + ih - bh, width: Math.max(1, bw * 0.7), height: Math.max(v ? 1 : 0, bh), rx: 2 });
      r.append(s('title', {}, `${d.date}: ${fmt(m, v)}`));
      svg.append(r);
      if (i % every === 0 || i === data.length - 1) svg.append(s('text', { x: x + bw / 2, y: H - 8, 'text-anchor': 'middle' }, d.date.slice(5)));
    });
    box.replaceChildren(svg);
  }

  async function loadImages() {
    try {
      const data = await api('GET', '/api/v1/tenant/images');
      /** @type {Image[]} */
      const images = data.images;
      const tbody = /** @type {HTMLTableSectionElement} */ ($('images').querySelector('tbody'));
      $('images-empty').hidden = images.length > 0;
      tbody.replaceChildren(
        ...images.map((img) => {
          const tr = el('tr');
          tr.dataset.urlId = img.urlId;
          const open = el('button', 'Moderate', 'btn');
          open.setAttribute('type', 'button');
          open.setAttribute('aria-label', `Moderate chats on ${img.urlId}`);
          open.addEventListener('click', () => openImage(img.urlId));
          const when = el('td', ago(img.lastActivity));
          if (img.lastActivity) when.title = new Date(img.lastActivity).toLocaleString();
          const act = el('td');
          act.append(open);
          tr.append(el('td', img.urlId), el('td', num.format(img.chatCount)), when, act);
          return tr;
        }),
      );
    } catch (e) {
      report(e);
    }
  }

  /** @param {string} urlId */
  async function openImage(urlId) {
    openUrlId = urlId;
    $('mod-url').textContent = urlId;
    $('moderation').hidden = false;
    $('mod-import-result').textContent = '';
    // A plain same-origin link: the dashboard's cookie authorises the download.
    /** @type {HTMLAnchorElement} */ ($('mod-export')).href = `/api/v1/annotations?urlId=${encodeURIComponent(urlId)}`;
    await loadChats(urlId);
    $('mod-title').scrollIntoView({ block: 'nearest' });
    $('mod-close').focus();
  }

  /** @param {string} urlId */
  async function loadChats(urlId) {
    try {
      const data = await api('GET', `/api/v1/tenant/chats?urlId=${encodeURIComponent(urlId)}`);
      if (openUrlId !== urlId) return;
      /** @type {Chat[]} */
      const chats = data.chats;
      drawPicture(urlId, data.imageUrl, chats);
      const list = $('chats');
      if (!chats.length) {
        list.replaceChildren(el('li', 'No chats on this image.', 'muted'));
        return;
      }
      list.replaceChildren(...chats.map((c, i) => chatItem(c, i + 1)));
    } catch (e) {
      report(e);
    }
  }

  /**
   * The image itself (from the address the widget reported) with every chat's
   * shape and numbered marker over it, at their percentages of the picture.
   * @param {string} urlId @param {string | undefined} imageUrl @param {Chat[]} chats
   */
  function drawPicture(urlId, imageUrl, chats) {
    const stage = $('mod-stage');
    const img = /** @type {HTMLImageElement} */ ($('mod-img'));
    const svg = $('mod-shapes');
    const caption = $('mod-caption');
    for (const pin of stage.querySelectorAll('.pin')) pin.remove();
    svg.replaceChildren();
    if (!imageUrl) {
      stage.hidden = true;
      img.removeAttribute('src');
      caption.textContent = 'No picture: the address of this image is not known yet (the widget reports it with each new chat).';
      return;
    }
    stage.hidden = false;
    if (img.getAttribute('src') !== imageUrl) img.src = imageUrl;
    img.alt = `The image discussed as ${urlId}`;
    img.onerror = () => {
      stage.hidden = true;
      caption.textContent = `The image could not be loaded from ${imageUrl}.`;
    };
    caption.textContent = chats.length ? `${chats.length} chat${chats.length === 1 ? '' : 's'} on the picture, numbered as in the list below.` : 'No chats on this picture.';
    const head = document.createElementNS(NS, 'marker');
    for (const [k, v] of Object.entries({ id: 'mod-head', viewBox: '0 0 10 10', refX: '6', refY: '5', markerWidth: '5', markerHeight: '5', orient: 'auto' })) head.setAttribute(k, v);
    const tip = document.createElementNS(NS, 'path');
    tip.setAttribute('d', 'M0 0l10 5-10 5z');
    head.append(tip);
    svg.append(head);
    chats.forEach((c, i) => {
      const kind = c.shape && SHAPES[c.shape.type];
      if (c.shape && kind) {
        // Like the widget: percentages of the picture; a polygon's points in a stretched 100 × 100 box.
        const box = document.createElementNS(NS, 'svg');
        if (c.shape.points) {
          box.setAttribute('viewBox', '0 0 100 100');
          box.setAttribute('preserveAspectRatio', 'none');
        }
        const g = document.createElementNS(NS, kind[0]);
        g.setAttribute('class', c.resolved ? 'shape resolved' : 'shape');
        g.dataset.chatId = c.id;
        for (const [k, v] of Object.entries(c.shape)) {
          if (k !== 'type') g.setAttribute(k === 'w' ? 'width' : k === 'h' ? 'height' : k, Array.isArray(v) ? v.join(' ') : `${v}%`);
        }
        box.append(g);
        svg.append(box);
      }
      const pin = el('span', c.resolved ? '✓' : String(i + 1), c.resolved ? 'pin resolved' : 'pin');
      pin.dataset.chatId = c.id;
      pin.style.left = `${c.x}%`;
      pin.style.top = `${c.y}%`;
      stage.append(pin);
    });
  }

  /** Highlights a chat's marker on the picture while its row is pointed at or focused. @param {HTMLElement} li @param {string} id */
  function linkRow(li, id) {
    const on = (/** @type {boolean} */ v) => () => {
      li.classList.toggle('on', v);
      for (const pin of $('mod-stage').querySelectorAll('.pin')) if (/** @type {HTMLElement} */ (pin).dataset.chatId === id) pin.classList.toggle('on', v);
    };
    li.addEventListener('mouseenter', on(true));
    li.addEventListener('mouseleave', on(false));
    li.addEventListener('focusin', on(true));
    li.addEventListener('focusout', on(false));
  }

  /** Imports a file of annotations (W3C or IIIF JSON-LD) into the open image, says how it went and shows the result. */
  async function importFile() {
    const input = /** @type {HTMLInputElement} */ ($('mod-import-file'));
    const file = input.files && input.files[0];
    const urlId = openUrlId;
    input.value = '';
    if (!file || !urlId) return;
    const out = $('mod-import-result');
    out.textContent = `Importing ${file.name}…`;
    try {
      const res = await fetch(`/api/v1/tenant/annotations?urlId=${encodeURIComponent(urlId)}`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/ld+json' },
        body: await file.text(),
      });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) {
        if (res.status === 401) return showSignIn();
        out.textContent = `Nothing was imported from ${file.name}: ${(data.error && data.error.message) || res.statusText}`;
        return;
      }
      /** @type {{index: number, reason: string}[]} */
      const skipped = data.skipped || [];
      out.textContent =
        `Imported ${data.imported} annotation${data.imported === 1 ? '' : 's'} from ${file.name}` +
        (skipped.length ? `; skipped ${skipped.length}: ${skipped.map((s) => `#${s.index} (${s.reason})`).join(', ')}.` : '.');
      await Promise.all([loadChats(urlId), loadImages()]);
    } catch (e) {
      out.textContent = `Nothing was imported: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  /** @param {Chat} c @param {number} n */
  function chatItem(c, n) {
    const li = el('li');
    li.dataset.chatId = c.id;
    const pin = el('span', c.resolved ? '✓' : String(n), c.resolved ? 'pin resolved' : 'pin');
    pin.setAttribute('aria-hidden', 'true');
    const body = el('div', undefined, 'body');
    const first = c.comments[0];
    body.append(
      el('p', first ? first.text : '', 'text'),
      el(
        'div',
        `${c.user.name} · ${new Date(c.createdAt).toLocaleString()} · ${c.comments.length} comment${c.comments.length === 1 ? '' : 's'} · ${c.shape && SHAPES[c.shape.type] ? `${SHAPES[c.shape.type][1]} ` : ''}at ${c.x.toFixed(1)}%, ${c.y.toFixed(1)}%${c.resolved ? ' · resolved' : ''}`,
        'meta',
      ),
    );
    const del = /** @type {HTMLButtonElement} */ (el('button', 'Delete', 'btn danger'));
    del.setAttribute('type', 'button');
    del.setAttribute('aria-label', `Delete chat ${n}`);
    del.dataset.action = 'delete';
    del.addEventListener('click', () => {
      if (del.dataset.action === 'delete') {
        del.dataset.action = 'confirm';
        del.textContent = 'Delete for everyone';
        del.className = 'btn danger primary';
        del.setAttribute('aria-label', `Confirm: delete chat ${n} for everyone`);
        return;
      }
      del.disabled = true;
      api('DELETE', `/api/v1/tenant/chats/${encodeURIComponent(c.id)}`)
        .then(() => {
          li.remove();
          loadImages();
        })
        .catch((e) => {
          del.disabled = false;
          report(e);
        });
    });
    li.append(pin, body, del);
    linkRow(li, c.id);
    return li;
  }

  // ------------------------------------------------------------ webhooks (protocol §12)

  /** Endpoints a tenant may have (more is `409 conflict`). */
  const MAX_HOOKS = 10;
  /** Each endpoint's list item and what refreshes its open deliveries, by endpoint id. @type {Map<string, {li: HTMLLIElement, deliveries: () => Promise<void>}>} */
  const hookItems = new Map();

  /** @param {number | string} at milliseconds or an ISO 8601 time */
  const when = (at) => new Date(at).toLocaleString();

  /** @param {number | null | undefined} status */
  const delivered = (status) => status != null && status >= 200 && status < 300;

  /** "✓ Delivered" or "✗ Failed": a word as well as a glyph and a colour. @param {boolean} ok @param {string} text */
  function outcome(ok, text) {
    const s = el('span', undefined, ok ? 'outcome ok' : 'outcome fail');
    const glyph = el('span', ok ? '✓' : '✗', 'glyph');
    glyph.setAttribute('aria-hidden', 'true');
    s.append(glyph, text);
    return s;
  }

  async function loadHooks() {
    try {
      const data = await api('GET', '/api/v1/tenant/webhooks');
      renderHooks(/** @type {Webhook[]} */ (data.webhooks));
    } catch (e) {
      report(e);
    }
  }

  /**
   * Shows the endpoints in the server's order. Items already shown stay as
   * they are (with their test results, open deliveries and focus); gone ones
   * go, new ones come.
   * @param {Webhook[]} hooks
   */
  function renderHooks(hooks) {
    const list = $('hooks');
    const ids = new Set(hooks.map((h) => h.id));
    for (const [id, item] of hookItems) {
      if (!ids.has(id)) {
        item.li.remove();
        hookItems.delete(id);
      }
    }
    hooks.forEach((h, i) => {
      let item = hookItems.get(h.id);
      if (!item) {
        item = hookItem(h);
        hookItems.set(h.id, item);
      }
      // Moved only when out of place: moving an element takes the focus from it.
      if (list.children[i] !== item.li) list.insertBefore(item.li, list.children[i] || null);
    });
    $('hooks-empty').hidden = hooks.length > 0;
    $('hooks-count').textContent = `${hooks.length} of ${MAX_HOOKS} endpoints`;
    for (const item of hookItems.values()) item.deliveries();
  }

  /** Forgets the signed-in tenant's endpoints and any secret on screen. */
  function resetHooks() {
    hookItems.clear();
    $('hooks').replaceChildren();
    $('hooks-count').textContent = '';
    hideSecret();
    clearHookErrors();
  }

  /** @param {Webhook} h */
  function hookItem(h) {
    const li = /** @type {HTMLLIElement} */ (el('li', undefined, 'hook'));
    li.dataset.webhookId = h.id;
    const head = el('div', undefined, 'hook-head');
    const body = el('div', undefined, 'body');
    const events = el('div', undefined, 'events');
    events.append(el('span', 'Events:', 'muted'), ...h.events.map((t) => el('code', t)));
    body.append(el('p', h.url, 'url'), events, el('div', `Added ${when(h.createdAt)}`, 'meta'));

    const test = el('button', 'Send test event', 'btn');
    test.setAttribute('type', 'button');
    test.setAttribute('aria-label', `Send test event to ${h.url}`);
    test.dataset.action = 'test';
    const del = el('button', 'Delete', 'btn danger');
    del.setAttribute('type', 'button');
    del.setAttribute('aria-label', `Delete endpoint ${h.url}`);
    del.dataset.action = 'delete';
    const actions = el('div', undefined, 'actions');
    actions.append(test, del);
    head.append(body, actions);

    // The test's outcome, spoken politely where it appears.
    const result = el('p', undefined, 'result');
    result.setAttribute('role', 'status');

    const details = /** @type {HTMLDetailsElement} */ (el('details', undefined, 'deliveries'));
    const summary = el('summary', 'Recent deliveries');
    summary.append(el('span', ` to ${h.url}`, 'sr'));
    const bar = el('div', undefined, 'row');
    const again = el('button', 'Refresh', 'btn');
    again.setAttribute('type', 'button');
    again.setAttribute('aria-label', `Refresh deliveries to ${h.url}`);
    bar.append(el('span', 'Latest 100 attempts, newest first', 'muted'), again);
    const table = el('table');
    const caption = el('caption', `Deliveries to ${h.url}, newest first`, 'sr');
    const thead = el('thead');
    const hr = el('tr');
    for (const name of ['Time', 'Result', 'Status', 'Duration', 'Message id']) {
      const th = el('th', name);
      th.setAttribute('scope', 'col');
      hr.append(th);
    }
    thead.append(hr);
    const tbody = el('tbody');
    table.append(caption, thead, tbody);
    const wrap = el('div', undefined, 'scroll');
    // Scrolls when long or narrow: reachable by keyboard, as the usage table.
    wrap.tabIndex = 0;
    wrap.setAttribute('role', 'region');
    wrap.setAttribute('aria-label', `Deliveries to ${h.url}`);
    wrap.append(table);
    wrap.hidden = true;
    const empty = el('p', 'No deliveries yet.', 'muted empty');
    empty.hidden = true;
    details.append(summary, bar, wrap, empty);

    // One load at a time, in order: a later one always shows the latest list.
    /** @type {Promise<void>} */
    let chain = Promise.resolve();
    async function load() {
      try {
        const data = await api('GET', `/api/v1/tenant/webhooks/${encodeURIComponent(h.id)}/deliveries`);
        /** @type {Delivery[]} */
        const rows = data.deliveries;
        empty.hidden = rows.length > 0;
        wrap.hidden = rows.length === 0;
        tbody.replaceChildren(...rows.map(deliveryRow));
      } catch (e) {
        if (!(e instanceof HttpError && e.status === 404)) report(e);
      }
    }
    function deliveries() {
      if (details.open) chain = chain.then(load);
      return chain;
    }
    details.addEventListener('toggle', () => deliveries());
    again.addEventListener('click', () => deliveries());

    test.addEventListener('click', async () => {
      if (test.getAttribute('aria-disabled') === 'true') return;
      // Not `disabled`: that would take the keyboard focus away.
      test.setAttribute('aria-disabled', 'true');
      result.className = 'result';
      result.replaceChildren('Sending a test event…');
      try {
        /** @type {{status: number | null, error?: string, durationMs: number}} */
        const r = await api('POST', `/api/v1/tenant/webhooks/${encodeURIComponent(h.id)}/test`);
        const ok = delivered(r.status);
        const answer = r.status != null ? `HTTP ${r.status}` : r.error || 'no answer';
        result.className = ok ? 'result ok' : 'result fail';
        result.replaceChildren(
          outcome(ok, ok ? 'Test event delivered' : 'Test event failed'),
          `: ${answer}${r.status != null && r.error ? ` (${r.error})` : ''} ${r.status != null ? 'in' : 'after'} ${num.format(r.durationMs)} ms`,
        );
        details.open = true;
        await deliveries();
      } catch (e) {
        if (e instanceof HttpError && e.status === 401) return;
        result.className = 'result fail';
        result.replaceChildren(`Could not send a test event: ${e instanceof Error ? e.message : String(e)}`);
      } finally {
        test.removeAttribute('aria-disabled');
      }
    });

    // Two steps, as for chats: the first press asks, the second deletes.
    const unask = () => {
      if (del.dataset.action !== 'confirm') return;
      del.dataset.action = 'delete';
      del.textContent = 'Delete';
      del.className = 'btn danger';
      del.setAttribute('aria-label', `Delete endpoint ${h.url}`);
    };
    del.addEventListener('blur', unask);
    del.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') unask();
    });
    del.addEventListener('click', async () => {
      if (del.getAttribute('aria-disabled') === 'true') return;
      if (del.dataset.action === 'delete') {
        del.dataset.action = 'confirm';
        del.textContent = 'Delete for good';
        del.className = 'btn danger primary';
        del.setAttribute('aria-label', `Delete for good: endpoint ${h.url} and its deliveries`);
        return;
      }
      del.setAttribute('aria-disabled', 'true');
      try {
        await api('DELETE', `/api/v1/tenant/webhooks/${encodeURIComponent(h.id)}`);
        // The focus goes to the next endpoint, or the previous, or the form.
        const next = /** @type {HTMLElement | null} */ (li.nextElementSibling || li.previousElementSibling);
        li.remove();
        hookItems.delete(h.id);
        if ($('hook-secret').dataset.webhookId === h.id) hideSecret();
        $('hooks-status').textContent = `Endpoint ${h.url} deleted.`;
        (next ? /** @type {HTMLElement} */ (next.querySelector('button')) : $('hook-url')).focus();
        await loadHooks();
      } catch (e) {
        del.removeAttribute('aria-disabled');
        if (e instanceof HttpError && e.status === 404) return loadHooks();
        report(e);
      }
    });

    li.append(head, result, details);
    return { li, deliveries };
  }

  /** @param {Delivery} d */
  function deliveryRow(d) {
    const tr = el('tr');
    const ok = delivered(d.status);
    tr.className = ok ? 'ok' : 'fail';
    const th = el('th', when(d.at));
    th.setAttribute('scope', 'row');
    const res = el('td');
    res.append(outcome(ok, ok ? 'Delivered' : 'Failed'));
    const status = d.status != null ? String(d.status) + (d.error ? ` · ${d.error}` : '') : d.error || 'no answer';
    const id = el('td');
    id.append(el('code', d.webhookId));
    tr.append(th, res, el('td', status, 'status'), el('td', `${num.format(d.durationMs)} ms`), id);
    return tr;
  }

  function clearHookErrors() {
    for (const id of ['hook-url-error', 'hook-events-error', 'hook-error']) {
      const p = $(id);
      p.textContent = '';
      p.hidden = true;
    }
    $('hook-url').removeAttribute('aria-invalid');
  }

  /** Shows an error beside the field it is about and takes the focus there. @param {'url' | 'events'} field @param {string} message */
  function fieldError(field, message) {
    const p = $(`hook-${field}-error`);
    p.textContent = message;
    p.hidden = false;
    if (field === 'url') {
      $('hook-url').setAttribute('aria-invalid', 'true');
      $('hook-url').focus();
    } else {
      /** @type {HTMLElement} */ ($('hook-events').querySelector('input')).focus();
    }
  }

  /** @param {string} message */
  function formError(message) {
    const p = $('hook-error');
    p.textContent = message;
    p.hidden = false;
  }

  /** @param {{id: string, url: string, secret: string}} created */
  function showSecret(created) {
    $('hook-secret-url').textContent = created.url;
    const input = /** @type {HTMLInputElement} */ ($('hook-secret-value'));
    input.value = created.secret;
    $('hook-secret-copied').textContent = '';
    $('hook-secret').hidden = false;
    $('hook-secret').dataset.webhookId = created.id;
    input.focus();
    input.select();
  }

  function hideSecret() {
    /** @type {HTMLInputElement} */ ($('hook-secret-value')).value = '';
    $('hook-secret-url').textContent = '';
    $('hook-secret-copied').textContent = '';
    $('hook-secret').hidden = true;
  }

  $('hook-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const form = /** @type {HTMLFormElement} */ ($('hook-form'));
    const add = $('hook-add');
    if (add.getAttribute('aria-disabled') === 'true') return;
    clearHookErrors();
    const url = /** @type {HTMLInputElement} */ ($('hook-url')).value.trim();
    const events = [...form.querySelectorAll('input[name=events]:checked')].map((i) => /** @type {HTMLInputElement} */ (i).value);
    if (!url) return fieldError('url', 'Enter the URL your endpoint receives events at.');
    if (!events.length) return fieldError('events', 'Choose at least one event.');
    add.setAttribute('aria-disabled', 'true');
    try {
      /** @type {{id: string, url: string, events: string[], secret: string}} */
      const created = await api('POST', '/api/v1/tenant/webhooks', { url, events });
      form.reset();
      $('hooks-status').textContent = `Endpoint ${created.url} added.`;
      showSecret(created);
      await loadHooks();
    } catch (err) {
      if (!(err instanceof HttpError)) return formError(`Could not add the endpoint: ${err instanceof Error ? err.message : String(err)}`);
      if (err.status === 401) return;
      if (err.field === 'url' || err.field === 'events') return fieldError(err.field, err.message);
      if (err.status === 409) return formError(`You already have ${MAX_HOOKS} endpoints, the most a tenant may have: delete one to add another. (${err.message})`);
      formError(`Could not add the endpoint: ${err.message}`);
    } finally {
      add.removeAttribute('aria-disabled');
    }
  });

  $('hook-secret-copy').addEventListener('click', async () => {
    const input = /** @type {HTMLInputElement} */ ($('hook-secret-value'));
    const said = $('hook-secret-copied');
    said.textContent = '';
    let ok = false;
    try {
      await navigator.clipboard.writeText(input.value);
      ok = true;
    } catch (_) {
      // No clipboard API (a plain-http address) or no permission: the old way, through the selected field.
      input.focus();
      input.select();
      try {
        ok = document.execCommand('copy');
      } catch (_) {
        ok = false;
      }
      $('hook-secret-copy').focus();
    }
    said.textContent = ok ? 'Secret copied to the clipboard.' : 'Could not copy: select the secret and copy it yourself.';
  });

  $('hook-secret-done').addEventListener('click', () => {
    const item = hookItems.get($('hook-secret').dataset.webhookId || '');
    hideSecret();
    (item ? /** @type {HTMLElement} */ (item.li.querySelector('button')) : $('hook-url')).focus();
  });

  $('login').addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = $('login-error');
    err.hidden = true;
    const tenantId = /** @type {HTMLInputElement} */ ($('tenantId')).value.trim();
    const secret = /** @type {HTMLInputElement} */ ($('secret')).value;
    try {
      const me = await api('POST', '/api/v1/tenant/login', { tenantId, secret });
      /** @type {HTMLInputElement} */ ($('secret')).value = '';
      showDashboard(me.tenantId);
    } catch (e) {
      err.textContent = e instanceof HttpError && e.status === 401 ? 'Wrong tenant id or secret.' : `Could not sign in: ${e instanceof Error ? e.message : e}`;
      err.hidden = false;
    }
  });
  $('logout').addEventListener('click', async () => {
    await api('POST', '/api/v1/tenant/logout').catch(() => null);
    showSignIn();
  });
  $('refresh').addEventListener('click', refreshAll);
  $('range').addEventListener('change', loadUsage);
  $('metric').addEventListener('change', renderUsage);
  $('mod-import').addEventListener('click', () => $('mod-import-file').click());
  $('mod-import-file').addEventListener('change', importFile);
  $('mod-close').addEventListener('click', () => {
    openUrlId = null;
    $('moderation').hidden = true;
  });

  api('GET', '/api/v1/tenant/me').then(
    (me) => showDashboard(me.tenantId),
    () => showSignIn(),
  );
})();
