// imagechat mentions and notifications (protocol §13): the `@` picker of
// every composer, the notifications button and its list, and following a
// thread.
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// A module imagechat.js imports on demand from /imagechat/mentions.js, once
// per page: when a composer opens (new chat, reply, edit), or as soon as a
// view knows its user signed in with SSO (they get the notifications button
// and the follow button of a thread), or when a thread shows a comment that
// mentions someone (whose names this file highlights). Like the rest of the
// widget it is plain JavaScript checked by
// `tsc --checkJs --strict` and needs no inline style: its CSS is a
// constructable stylesheet adopted by the view's shadow root.
//
// Mentions. Typing `@` and the first letters of a name asks
// `GET /api/v1/users?q=PREFIX` (150 ms after the last key; an answer to an
// older question is dropped) and lists who matches under the text. The
// textarea keeps focus and points at the current suggestion with
// `aria-activedescendant` (a listbox of options with `aria-selected`); the
// view's polite live region says how many there are. ArrowDown / ArrowUp
// move, Enter chooses, Escape closes the list (and only the list). A chosen
// user is written as `@Name ` and highlighted in the text by a backdrop
// behind the (transparent) textarea; a composer keeps the ids it chose, and
// `ids()` gives those whose `@Name` is still in the text (at most ten) for
// the `mentions` of the request.
//
// Notifications. One button per connection of an SSO user (in practice one
// per page), in the top left corner of the first image that connection
// shows: `data-unread` and a badge say how many are unread. It opens a list
// (`GET /api/v1/notifications`, fifty at a time); choosing an entry marks it
// read and, when this page shows its image, opens its thread there. The
// counts follow the user's `notification` and `notifications` messages on
// the WebSocket, which every connection of the user receives.
//
// Following. An open thread of an SSO user has a Follow / Unfollow button;
// its state is read (`GET /api/v1/chats/{id}/follow`) when the thread opens
// and again whenever the user has written in it (writing follows a chat).

import { h, button, icon } from './dom.js';

/**
 * @typedef {{id: string, name: string, avatar?: string, anonymous?: boolean}} User
 * @typedef {{id: string, at: number, reason: string, urlId: string, chatId: string, commentId: string, by: User, excerpt: string, read: boolean}} Note
 * @typedef {{token: string, user: User}} Session
 * @typedef {{id: string, user: User}} Comment
 * @typedef {{id: string, pending?: boolean, comments: Comment[]}} Chat
 * @typedef {{id: string, head: HTMLElement}} Thread an open thread (a new object each time one opens)
 * @typedef {{form: HTMLElement, ta: HTMLTextAreaElement, back: HTMLElement, list: HTMLElement, chosen: Map<string, string>,
 *   users: User[], i: number, at: number, req: number, timer: ReturnType<typeof setTimeout> | undefined, none: string | null}} Picker
 *   one composer: its chosen users (id → name), the suggestions shown and the active one, where the `@` being completed starts,
 *   the number of the latest question, and a prefix nobody's name starts with
 */

/**
 * The parts of imagechat.js's Connection this file uses.
 * @typedef {object} Conn
 * @property {Session | null} session
 * @property {(method: string, path: string, body?: unknown) => Promise<any>} api an authenticated REST call
 * @property {Map<string, {views: Set<View>, chats: Map<string, Chat>}>} rooms the images this connection shows, by urlId
 * @property {((m: any) => void) | null} on called with every message the WebSocket brings
 */

/**
 * The parts of imagechat.js's View this file uses: its contract with the core.
 * @typedef {object} View
 * @property {HTMLElement} host the element whose shadow root holds the widget (`lang` is its locale)
 * @property {ShadowRoot} root
 * @property {HTMLImageElement} img
 * @property {Conn} conn
 * @property {{chats: Map<string, Chat>}} room
 * @property {Thread | null} thread
 * @property {boolean} hide markers hidden by the toggle
 * @property {{close: string, gone: string}} t the core's strings
 * @property {() => string} me the user's id
 * @property {(fn: () => Promise<unknown>) => Promise<boolean>} run runs a change if live, re-renders, shows an error if it fails
 * @property {(text: string) => void} announce says something through the polite live region
 * @property {(el: HTMLElement) => void} pop shows a card in the top layer
 * @property {(id: string, focus: boolean) => void} openThread
 * @property {() => void} renderThread
 * @property {() => void} placeCards puts the open composer and thread beside their point again (they grow with a list)
 * @property {(ms: number) => string} ago a time, relative to now
 */

const STRINGS = {
  en: {
    people: 'People to mention',
    found: (/** @type {number} */ n) => `${n} ${n === 1 ? 'person' : 'people'} found. Up and down arrows choose, Enter inserts, Escape closes.`,
    chosen: (/** @type {string} */ name) => `${name} will be notified.`,
    bell: (/** @type {number} */ n) => (n ? `Notifications, ${n} unread` : 'Notifications'),
    title: 'Notifications',
    readAll: 'Mark all read',
    more: 'Show older',
    none: 'No notifications yet.',
    loading: 'Loading…',
    failed: 'Could not load the notifications.',
    notRead: 'Could not mark them read. Try again.',
    unread: 'Unread: ',
    mention: (/** @type {string} */ name) => `${name} mentioned you`,
    reply: (/** @type {string} */ name) => `${name} replied`,
    fresh: (/** @type {string} */ what) => `New notification: ${what}`,
    elsewhere: 'That thread is not on this page.',
    follow: 'Follow',
    unfollow: 'Unfollow',
    followHint: 'Get notified of new comments in this thread',
    unfollowHint: 'Stop notifications of this thread',
  },
  ja: {
    people: 'メンションする人',
    found: (/** @type {number} */ n) => `${n} 人見つかりました。上下の矢印キーで選び、Enter で挿入、Escape で閉じます。`,
    chosen: (/** @type {string} */ name) => `${name} さんに通知されます。`,
    bell: (/** @type {number} */ n) => (n ? `通知（未読 ${n} 件）` : '通知'),
    title: '通知',
    readAll: 'すべて既読にする',
    more: '以前の通知を表示',
    none: '通知はまだありません。',
    loading: '読み込み中…',
    failed: '通知を読み込めませんでした。',
    notRead: '既読にできませんでした。もう一度お試しください。',
    unread: '未読: ',
    mention: (/** @type {string} */ name) => `${name} さんがあなたをメンションしました`,
    reply: (/** @type {string} */ name) => `${name} さんが返信しました`,
    fresh: (/** @type {string} */ what) => `新しい通知: ${what}`,
    elsewhere: 'そのスレッドはこのページにはありません。',
    follow: 'フォロー',
    unfollow: 'フォロー解除',
    followHint: 'このスレッドの新しいコメントを通知します',
    unfollowHint: 'このスレッドの通知を止めます',
  },
};
/** @typedef {typeof STRINGS.en} Strings */

/** Notifications come fifty at a time (protocol §13). */
const PAGE = 50;
/** Mentions per comment. */
const MAX = 10;

/** A bell on a 20 × 20 grid. */
const BELL = 'M5 14V9a5 5 0 0 1 10 0v5l1.5 2h-13zm3 2.5a2 2 0 0 0 4 0';

const CSS = `
.mn{background:color-mix(in srgb,var(--acc) 20%,transparent);border-radius:3px;font-weight:600}
.mw{position:relative}
.mb{position:absolute;inset:0;overflow:hidden;pointer-events:none;white-space:pre-wrap;overflow-wrap:break-word;padding:6px;border:1px solid transparent;border-radius:6px;color:transparent;background:var(--bg);scrollbar-gutter:stable}
.mw textarea{position:relative;background:transparent;scrollbar-gutter:stable}
.mb mark{color:transparent;background:color-mix(in srgb,var(--acc) 24%,transparent);border-radius:3px}
.ml{list-style:none;margin:4px 0 0;padding:2px;border:1px solid var(--line);border-radius:6px;background:var(--bg);max-height:176px;overflow:auto}
.ml li{display:flex;align-items:center;gap:8px;padding:4px 6px;border-radius:4px;cursor:pointer;min-height:28px}
.ml li[aria-selected=true]{background:var(--acc);color:#fff}
.ml img,.ml .av{width:20px;height:20px;border-radius:50%;flex:none;object-fit:cover}
.ml .av{display:grid;place-items:center;background:var(--soft);color:var(--fg);font-size:11px;font-weight:700}.av::before{content:attr(data-letter)}
.nb{position:absolute;left:6px;top:6px;width:28px;height:28px;padding:4px;border:0;border-radius:6px;background:#111827d0;color:#fff;cursor:pointer;zoom:var(--k);visibility:var(--v)}
.nb[aria-expanded=true]{background:var(--acc)}
.nb:focus-visible{outline:2px solid var(--fg);outline-offset:1px}
.nb svg{display:block;width:20px;height:20px;fill:none;stroke:currentColor;stroke-width:1.6;stroke-linejoin:round}
.nb b{position:absolute;left:18px;top:-5px;min-width:18px;height:18px;padding:0 4px;border-radius:9px;border:1px solid #fff;background:#dc2626;color:#fff;font:700 11px/16px system-ui,sans-serif;text-align:center}
.nl{width:340px;display:flex;flex-direction:column;max-height:min(70vh,480px)}
.nl ul{list-style:none;margin:0;padding:0;overflow:auto;flex:1}
.nl p{margin:8px 2px;color:var(--mut)}
.ne{position:relative;display:block;width:100%;margin:0;padding:7px 6px 7px 20px;border:0;border-top:1px solid var(--line);background:none;color:inherit;font:inherit;text-align:left;cursor:pointer}
.nl li:first-child .ne{border-top:0}
.ne:hover{background:var(--soft)}
.ne:focus-visible{outline:2px solid var(--acc);outline-offset:-2px}
.ne[data-read=false]::before{content:'';position:absolute;left:6px;top:13px;width:8px;height:8px;border-radius:50%;background:var(--acc)}
.ne[data-read=true] .nw{font-weight:400}
.nw{font-weight:700}
.ne time{color:var(--mut);font-size:12px;margin-left:6px}
.ex{display:block;color:var(--mut);font-size:13px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.nl .row{justify-content:center;flex-wrap:wrap}.nl .row p{flex-basis:100%;text-align:center;margin:2px}
@media (max-width:767.98px){.nl{left:8px!important;right:8px!important;width:auto;max-width:none}}
@media (forced-colors:active){.mn,.mb mark{outline:1px solid CanvasText}.ml li[aria-selected=true]{outline:2px solid Highlight}.nb b,.ne[data-read=false]::before{border:1px solid CanvasText}}
`;

/** @type {CSSStyleSheet | undefined} */
let sheet;
/** Ids for the listboxes and their options (ARIA references within the shadow root). */
let serial = 0;




/** The strings of a view's locale. @param {View} v @returns {Strings} */
const strings = (v) => STRINGS[v.host.lang === 'ja' ? 'ja' : 'en'];

/** Whether the connection's user signed in with SSO (only they have notifications and follow chats). @param {Conn} conn */
const signedIn = (conn) => !!conn.session && !conn.session.user.anonymous;

/**
 * A regular expression that finds each `@Name` of `names` (the longest
 * first, so `@Al` does not take the start of `@Alice`); null for none.
 * @param {Iterable<string>} names
 */
function finder(names) {
  const alts = [...new Set(names)]
    .filter(Boolean)
    .sort((a, b) => b.length - a.length)
    .map((n) => '@' + n.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&'));
  return alts.length ? new RegExp(`(${alts.join('|')})`) : null;
}

// ---------------------------------------------------------------- notifications

/** The notifications button of a connection. @type {WeakMap<Conn, Bell>} */
const bells = new WeakMap();

class Bell {
  /** @param {Conn} conn @param {View} view the first view to show it */
  constructor(conn, view) {
    this.conn = conn;
    this.v = view;
    this.unread = 0;
    /** The loaded entries, newest first (while the list is open). @type {Note[]} */
    this.notes = [];
    /** @type {Map<string, HTMLButtonElement>} */
    this.els = new Map();
    this.more = false;
    /** Loads of the first page so far (an answer to an older one fills nothing), and counts the WebSocket brought (newer than any answer on its way). */
    this.loads = 0;
    this.counts = 0;
    this.btn = h('button', { type: 'button', class: 'nb', 'data-imagechat-notifications': '', 'aria-haspopup': 'dialog', 'aria-expanded': 'false' });
    this.badge = h('b', { 'aria-hidden': 'true' });
    this.btn.append(icon(BELL), this.badge);
    this.btn.hidden = true; // until the count is known
    this.btn.onclick = () => (this.panel ? this.close(true) : this.open());
    /** @type {HTMLElement | null} */
    this.panel = null;
    /** @type {HTMLUListElement | null} */
    this.ul = null;
    /** @type {HTMLElement | null} */
    this.foot = null;
    // A pointer anywhere else closes the open list.
    this.outside = (/** @type {Event} */ e) => {
      const path = e.composedPath();
      if (this.panel && !path.includes(this.panel) && !path.includes(this.btn)) this.close(false);
    };
    this.place = () => this.position();
    conn.on = (m) => this.message(m);
    this.home(view);
    this.load();
  }

  get s() {
    return strings(this.v);
  }

  /**
   * Keeps the button in the first view of the page (in document order) that
   * shows it: each view offers itself as it syncs. While the button has focus
   * or its list is open it stays where it is, unless its view left the page.
   * @param {View} view
   */
  home(view) {
    if (view === this.v && this.btn.isConnected) return;
    if (!view.host.isConnected) return;
    const here = this.btn.isConnected && this.v.host.isConnected;
    if (here && (this.panel || this.v.root.activeElement === this.btn || !(view.host.compareDocumentPosition(this.v.host) & Node.DOCUMENT_POSITION_FOLLOWING))) return;
    this.close(false);
    this.v = view;
    view.root.append(this.btn);
    this.paint();
  }

  /** Shows the count (attribute, badge, name), writing only what changed: it runs on every frame anything moves. */
  paint() {
    if (this.btn.hidden) return; // the count is not known yet
    const n = this.unread;
    const label = this.s.bell(n);
    if (this.btn.getAttribute('data-unread') === String(n) && this.btn.getAttribute('aria-label') === label) return;
    this.btn.setAttribute('data-unread', String(n));
    this.btn.setAttribute('aria-label', label);
    this.btn.title = label;
    this.badge.textContent = n > 99 ? '99+' : String(n);
    this.badge.hidden = !n;
  }

  /** The first page: the count, and the entries when the list is open. */
  async load() {
    const n = ++this.loads;
    const counts = this.counts;
    try {
      const d = await this.conn.api('GET', '/api/v1/notifications');
      if (n !== this.loads) return;
      if (counts === this.counts) this.unread = d.unread || 0;
      this.btn.hidden = false;
      this.paint();
      if (this.panel) this.fill(d.notifications || [], false);
    } catch (e) {
      if (this.panel && n === this.loads) this.say(this.s.failed);
    }
  }

  /** The next page, older than the last entry shown. */
  async older() {
    const last = this.notes[this.notes.length - 1];
    if (!last) return;
    try {
      const d = await this.conn.api('GET', `/api/v1/notifications?before=${encodeURIComponent(last.id)}`);
      if (this.panel) this.fill(d.notifications || [], true);
    } catch (e) {
      this.tell(this.s.failed);
    }
  }

  /** @param {any} m a message of the WebSocket */
  message(m) {
    if (m.type === 'welcome') return this.load(); // (re)connected: what came meanwhile
    if (m.type !== 'notification' && m.type !== 'notifications') return;
    if (typeof m.unread === 'number') {
      this.unread = m.unread;
      this.counts++;
    }
    this.paint();
    const note = /** @type {Note | undefined} */ (m.notification);
    if (note) {
      this.v.announce(this.s.fresh(this.what(note)));
      if (this.panel && !this.els.has(note.id)) {
        this.notes.unshift(note);
        this.ul?.prepend(this.entry(note));
        this.ul?.querySelector('p')?.remove();
      }
    } else if (this.panel) {
      // Read elsewhere (another tab): which ones, the first page says.
      if (!this.unread) for (const x of this.notes) this.mark(x);
      else this.refresh();
    }
  }

  /** Brings the read state of the entries shown up to date. */
  async refresh() {
    try {
      const d = await this.conn.api('GET', '/api/v1/notifications');
      for (const x of /** @type {Note[]} */ (d.notifications || [])) if (x.read) this.mark(this.notes.find((y) => y.id === x.id));
    } catch (_) {
      /* the count is right; the dots catch up next time */
    }
  }

  /** @param {Note} n */
  what(n) {
    return n.reason === 'mention' ? this.s.mention(n.by.name) : this.s.reply(n.by.name);
  }

  open() {
    const s = this.s;
    const v = this.v;
    const close = h('button', { class: 'b x', type: 'button', 'aria-label': v.t.close }, '×');
    close.onclick = () => this.close(true);
    const all = button(s.readAll, { 'data-imagechat-action': 'read-all' });
    all.onclick = () => this.read(null);
    const head = h('div', { class: 'head' });
    head.append(h('h2', { id: 'ic-nt' }, s.title), all, close);
    this.ul = h('ul');
    this.foot = h('div', { class: 'row' });
    const panel = h('div', { class: 'card nl', role: 'dialog', 'aria-labelledby': 'ic-nt', tabindex: '-1' });
    panel.append(head, this.ul, this.foot);
    panel.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape') return;
      e.preventDefault();
      this.close(true);
    });
    this.panel = panel;
    this.notes = [];
    this.els.clear();
    this.say(s.loading);
    v.pop(panel);
    this.btn.setAttribute('aria-expanded', 'true');
    this.position();
    panel.focus();
    document.addEventListener('pointerdown', this.outside, true);
    addEventListener('scroll', this.place, true);
    addEventListener('resize', this.place);
    this.load();
  }

  /** @param {boolean} refocus give focus back to the button */
  close(refocus) {
    const p = this.panel;
    if (!p) return;
    this.panel = this.ul = this.foot = null;
    this.loads++; // an answer on its way fills nothing
    p.remove();
    this.btn.setAttribute('aria-expanded', 'false');
    document.removeEventListener('pointerdown', this.outside, true);
    removeEventListener('scroll', this.place, true);
    removeEventListener('resize', this.place);
    if (refocus) this.btn.focus();
  }

  /** Below the button (above it when there is no room below), inside the viewport. */
  position() {
    const p = this.panel;
    if (!p) return;
    const r = this.btn.getBoundingClientRect();
    // Ancestors' CSS zoom reaches the top layer too: undo it, so px are client px (as the core does for its cards).
    p.style.zoom = String(1 / (/** @type {any} */ (this.v.host).currentCSSZoom || 1));
    const vw = document.documentElement.clientWidth;
    const w = p.offsetWidth;
    const ht = p.offsetHeight;
    const top = r.bottom + 6 + ht <= innerHeight - 8 ? r.bottom + 6 : Math.max(8, r.top - 6 - ht);
    p.style.left = Math.max(8, Math.min(r.left, vw - w - 8)) + 'px';
    p.style.top = top + 'px';
  }

  /** Shows a line instead of entries (loading, nothing, a failure). @param {string} text */
  say(text) {
    if (!this.ul) return;
    this.ul.replaceChildren(h('p', { role: 'status' }, text));
  }

  /** Says what went wrong below the entries (they stay). @param {string} text */
  tell(text) {
    if (!this.foot) return;
    this.foot.querySelector('p')?.remove();
    this.foot.prepend(h('p', { role: 'alert' }, text));
    this.position();
  }

  /** Shows entries: a first page (replacing), or the next one (appending). @param {Note[]} list @param {boolean} append */
  fill(list, append) {
    const ul = this.ul;
    const foot = this.foot;
    if (!ul || !foot) return;
    // Focus goes to the first entry once there is one (the list itself held it while loading); after "more", to the first older one.
    const act = this.v.root.activeElement;
    const move = !!act && (act === this.panel || foot.contains(act));
    if (!append) {
      this.notes = [];
      this.els.clear();
      ul.replaceChildren();
    }
    const firstNew = list.find((n) => !this.els.has(n.id));
    for (const n of list) {
      if (this.els.has(n.id)) continue;
      this.notes.push(n);
      ul.append(this.entry(n));
    }
    if (!this.notes.length) this.say(this.s.none);
    this.more = list.length >= PAGE;
    foot.replaceChildren();
    if (this.more) {
      const more = button(this.s.more, { 'data-imagechat-action': 'more' });
      more.onclick = () => this.older();
      foot.append(more);
    }
    this.position();
    const target = firstNew && this.els.get(firstNew.id);
    if (move) (target || /** @type {HTMLElement} */ (this.panel)).focus();
  }

  /** One entry: who, why, when, and the start of the comment. @param {Note} n */
  entry(n) {
    const s = this.s;
    const b = h('button', { type: 'button', class: 'ne', 'data-imagechat-notification': '', 'data-chat-id': n.chatId, 'data-read': String(!!n.read) });
    const dot = h('span', { class: 'sr' }, n.read ? '' : s.unread);
    const when = h('time', { datetime: new Date(n.at).toISOString() }, this.v.ago(n.at));
    b.append(dot, h('span', { class: 'nw' }, this.what(n)), when, h('span', { class: 'ex', dir: 'auto' }, n.excerpt || ''));
    b.onclick = () => this.choose(n);
    this.els.set(n.id, b);
    const li = h('li');
    li.append(b);
    return li;
  }

  /** Shows an entry as read. @param {Note | undefined} n */
  mark(n) {
    if (!n) return;
    n.read = true;
    const b = this.els.get(n.id);
    if (!b) return;
    b.setAttribute('data-read', 'true');
    const dot = b.querySelector('.sr');
    if (dot) dot.textContent = '';
  }

  /** Marks some notifications read (null: all). @param {Note[] | null} list */
  async read(list) {
    if (list && !list.length) return;
    try {
      const d = await this.conn.api('POST', '/api/v1/notifications/read', list ? { ids: list.map((n) => n.id) } : {});
      if (typeof d.unread === 'number') this.unread = d.unread;
      for (const n of list || this.notes) this.mark(n);
      this.paint();
    } catch (e) {
      this.tell(this.s.notRead);
    }
  }

  /** Opens an entry's thread where this page shows its image, and marks it read. @param {Note} n */
  choose(n) {
    const room = this.conn.rooms.get(n.urlId);
    const view = room && [...room.views].find((v) => v.host.isConnected && v.room.chats.has(n.chatId));
    this.read(n.read ? [] : [n]);
    if (!view) {
      this.mark(n);
      this.tell(this.s.elsewhere);
      return;
    }
    this.close(false);
    if (view.hide) view.hide = false;
    view.img.scrollIntoView({ block: 'center' });
    view.openThread(n.chatId, true);
  }
}

// ---------------------------------------------------------------- mentions and following

class Mentions {
  /** @param {View} view */
  constructor(view) {
    this.v = view;
    /** Each composer's picker. @type {WeakMap<HTMLElement, Picker>} */
    this.pickers = new WeakMap();
    /** What the server says about following each opened thread, and how many of its comments were the user's then. @type {WeakMap<Thread, {on: boolean | null, mine: number}>} */
    this.follows = new WeakMap();
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
    }
    view.root.adoptedStyleSheets = [...view.root.adoptedStyleSheets, sheet];
    this.sync();
  }

  get s() {
    return strings(this.v);
  }

  /** Each time the view follows its image (every frame anything moved): the connection's notifications button (SSO users), kept on the page. */
  sync() {
    const conn = this.v.conn;
    if (!signedIn(conn)) return;
    const bell = bells.get(conn);
    if (!bell) bells.set(conn, new Bell(conn, this.v));
    else {
      bell.home(this.v);
      if (bell.v === this.v) bell.paint(); // the locale may have changed
    }
  }

  // ------------------------------------------------------------ composer

  /**
   * Gives a composer its `@` picker. `from` is the composer it replaces (its
   * chosen users move over); `seed` the users a comment being edited
   * mentions.
   * @param {HTMLElement} form @param {HTMLElement | unknown} [from] @param {User[]} [seed]
   */
  composer(form, from, seed) {
    const ta = form.querySelector('textarea');
    if (!ta || this.pickers.has(form)) return;
    const id = `ic-ml${++serial}`;
    const list = h('ul', { class: 'ml', role: 'listbox', id, 'data-imagechat-mention-list': '', 'aria-label': this.s.people });
    list.hidden = true;
    const back = h('div', { class: 'mb', 'aria-hidden': 'true', dir: 'auto' });
    const wrap = h('div', { class: 'mw' });
    /** @type {Picker} */
    const p = { form, ta, back, list, chosen: new Map(), users: [], i: -1, at: 0, req: 0, timer: undefined, none: null };
    for (const u of seed || []) p.chosen.set(u.id, u.name);
    const old = from instanceof HTMLElement && this.pickers.get(from);
    if (old) for (const [k, n] of old.chosen) p.chosen.set(k, n);
    this.pickers.set(form, p);

    // The textarea moves into a wrapper with the highlighting behind it, keeping focus and caret.
    const focused = this.v.root.activeElement === ta;
    const [a, b, dir] = [ta.selectionStart, ta.selectionEnd, ta.selectionDirection];
    ta.before(wrap);
    wrap.append(back, ta);
    wrap.after(list);
    if (focused) {
      ta.focus();
      ta.setSelectionRange(a, b, dir || undefined);
    }
    ta.setAttribute('aria-autocomplete', 'list');
    this.paint(p);
    // The core empties a reply box once its comment is sent, by setting its value (no input event): the highlighting follows that too.
    const value = /** @type {PropertyDescriptor} */ (Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value'));
    Object.defineProperty(ta, 'value', {
      configurable: true,
      get: () => value.get?.call(ta),
      set: (x) => {
        value.set?.call(ta, x);
        this.paint(p);
      },
    });

    ta.addEventListener('input', () => {
      this.paint(p);
      this.look(p);
    });
    ta.addEventListener('scroll', () => (back.scrollTop = ta.scrollTop));
    ta.addEventListener('blur', () => setTimeout(() => this.v.root.activeElement !== ta && this.hide(p), 0));
    // Before the composer's own keys (Ctrl+Enter, an edit's Escape): while the list is open, these keys are the list's.
    form.addEventListener(
      'keydown',
      (e) => {
        if (e.target !== ta || list.hidden || e.isComposing) return;
        const n = p.users.length;
        if (e.key === 'ArrowDown' || e.key === 'ArrowUp') this.activate(p, (p.i + (e.key === 'ArrowDown' ? 1 : n - 1)) % n);
        else if (e.key === 'Enter' && !e.ctrlKey && !e.metaKey && !e.shiftKey && !e.altKey) this.choose(p, p.users[p.i]);
        else if (e.key === 'Escape') this.hide(p);
        else return;
        e.preventDefault();
        e.stopPropagation();
      },
      true,
    );
    // A pointer on a suggestion chooses it without taking focus from the text.
    list.addEventListener('pointerdown', (e) => e.preventDefault());
    list.addEventListener('click', (e) => {
      const li = e.target instanceof Element && e.target.closest('li');
      if (li) this.choose(p, p.users[[...list.children].indexOf(li)]);
    });
  }

  /**
   * Highlights each `@Name` of the users a stored comment mentions in its
   * text (a `<p>` imagechat.js filled with the text alone).
   * @param {HTMLElement} p @param {User[]} users
   */
  mark(p, users) {
    const re = finder(users.map((u) => u.name));
    const text = p.textContent || '';
    if (!re || !re.test(text)) return;
    p.replaceChildren(...text.split(re).map((x, i) => (i % 2 ? h('span', { class: 'mn', 'data-imagechat-mention': '' }, x) : x)));
  }

  /** The ids of the users a composer mentions: chosen, and still named in its text. @param {HTMLElement} form @returns {string[] | undefined} */
  ids(form) {
    const p = this.pickers.get(form);
    if (!p) return undefined;
    const text = p.ta.value;
    const ids = [...p.chosen].filter(([, name]) => text.includes('@' + name)).map(([id]) => id);
    return ids.length ? ids.slice(0, MAX) : undefined;
  }

  /** Redraws the highlighting behind the text. @param {Picker} p */
  paint(p) {
    const text = p.ta.value;
    const re = finder(p.chosen.values());
    const parts = re ? text.split(re) : [text];
    // A space after a last line break keeps that empty line, as the textarea shows it.
    p.back.replaceChildren(...parts.map((x, i) => (i % 2 ? h('mark', {}, x) : x)), ' ');
    p.back.scrollTop = p.ta.scrollTop;
  }

  /** Looks for an `@` being typed right before the caret and, after a pause, asks who matches. @param {Picker} p */
  look(p) {
    clearTimeout(p.timer);
    p.req++; // an answer on its way is to an older question now
    const caret = p.ta.selectionStart;
    const m = p.ta.selectionEnd === caret ? /(^|[^\w.+-])@([^@\n]{0,30})$/.exec(p.ta.value.slice(0, caret)) : null;
    const q = m ? m[2] : '';
    // An `@` right after a letter or digit of the Latin alphabet is an e-mail address, not a mention (after a Japanese word it is one).
    // A space right after the `@`, or after a finished name, ends the question; so does a prefix already known to match nobody.
    if (!m || /^\s|\s$/.test(q) || (p.none !== null && q.toLowerCase().startsWith(p.none))) return this.hide(p);
    const at = caret - q.length - 1;
    p.timer = setTimeout(() => this.ask(p, q, at), 150);
  }

  /** @param {Picker} p @param {string} q @param {number} at where its `@` is */
  async ask(p, q, at) {
    const n = ++p.req;
    /** @type {User[] | null} */
    let users = null;
    try {
      const d = await this.v.conn.api('GET', `/api/v1/users?q=${encodeURIComponent(q)}`);
      users = Array.isArray(d) ? d : [];
    } catch (_) {
      /* nobody to suggest now: the text stays as typed */
    }
    if (n !== p.req || !p.form.isConnected) return; // an older question, or the composer went
    if (!users || !users.length) {
      if (users) p.none = q.toLowerCase();
      return this.hide(p);
    }
    p.none = null;
    p.at = at;
    p.users = users.slice(0, MAX);
    const base = p.list.id;
    p.list.replaceChildren(
      ...p.users.map((u, i) => {
        const li = h('li', { role: 'option', id: `${base}-${i}`, 'aria-selected': 'false' });
        // The first letter when there is no picture (drawn by CSS, so that the option's text is the name alone).
        const letter = () => h('span', { class: 'av', 'aria-hidden': 'true', 'data-letter': [...u.name][0] || '?' });
        const pic = u.avatar ? h('img', { src: u.avatar, alt: '', referrerpolicy: 'no-referrer' }) : letter();
        if (pic instanceof HTMLImageElement) pic.onerror = () => pic.replaceWith(letter());
        li.append(pic, h('span', { dir: 'auto' }, u.name));
        return li;
      }),
    );
    const wasHidden = p.list.hidden;
    p.list.hidden = false;
    p.ta.setAttribute('aria-controls', base);
    this.activate(p, 0);
    if (wasHidden || p.users.length) this.v.announce(this.s.found(p.users.length));
    this.v.placeCards();
  }

  /** Makes suggestion `i` the active one. @param {Picker} p @param {number} i */
  activate(p, i) {
    p.i = i;
    [...p.list.children].forEach((li, k) => li.setAttribute('aria-selected', String(k === i)));
    const li = p.list.children[i];
    if (!li) return;
    p.ta.setAttribute('aria-activedescendant', li.id);
    li.scrollIntoView({ block: 'nearest' });
  }

  /** Closes the suggestions (and forgets a question on its way). @param {Picker} p */
  hide(p) {
    clearTimeout(p.timer);
    p.req++;
    if (p.list.hidden) return;
    p.list.hidden = true;
    p.list.replaceChildren();
    p.users = [];
    p.i = -1;
    p.ta.removeAttribute('aria-activedescendant');
    p.ta.removeAttribute('aria-controls');
    this.v.placeCards();
  }

  /** Writes `@Name ` over the `@…` being typed and remembers the user. @param {Picker} p @param {User | undefined} u */
  choose(p, u) {
    if (!u) return;
    const ta = p.ta;
    const end = ta.selectionStart;
    const at = p.at <= end && ta.value[p.at] === '@' ? p.at : end;
    ta.focus();
    ta.setRangeText(`@${u.name} `, at, end, 'end');
    p.chosen.set(u.id, u.name);
    this.hide(p);
    this.paint(p);
    this.v.announce(this.s.chosen(u.name));
  }

  // ------------------------------------------------------------ following

  /**
   * Adds Follow / Unfollow to an open thread's head (before its close
   * button) for SSO users: imagechat.js calls it each time it renders the
   * head. The state is read when the thread opens and again after the user
   * wrote in it (writing follows).
   * @param {Chat} chat @param {Thread} th @param {HTMLElement} close
   */
  head(chat, th, close) {
    const v = this.v;
    if (!signedIn(v.conn) || chat.pending) return;
    const me = v.me();
    const mine = chat.comments.filter((c) => c.user.id === me).length;
    let st = this.follows.get(th);
    const path = `/api/v1/chats/${encodeURIComponent(chat.id)}/follow`;
    if (!st || st.mine !== mine) {
      const state = { on: st ? st.on : null, mine };
      this.follows.set(th, (st = state));
      v.conn.api('GET', path).then(
        (d) => {
          if (this.follows.get(th) !== state) return;
          state.on = !!d.following;
          if (v.thread === th) v.renderThread();
        },
        () => {},
      );
    }
    if (st.on === null) return;
    const s = this.s;
    const on = st.on;
    const b = button(on ? s.unfollow : s.follow, { 'data-imagechat-action': 'follow', title: on ? s.unfollowHint : s.followHint });
    const state = st;
    b.onclick = () =>
      v.run(async () => {
        await v.conn.api(on ? 'DELETE' : 'POST', path);
        state.on = !on;
      });
    close.before(b);
  }
}

/**
 * The entry point imagechat.js calls once per view.
 * @param {View} view
 */
export function mentions(view) {
  return new Mentions(view);
}
