// imagechat widget: live threaded conversations on any image.
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// One classic script, no dependencies, no build step: this file is what the
// server sends at /imagechat.js. It is type-checked with
// `tsc --noEmit --checkJs --strict` through the JSDoc below.
//
// Map of the file:
//   strings      English and Japanese UI text
//   Connection   one session + one WebSocket per (server, identity), shared by
//                every attached image of the page; reconnects and resyncs
//   Room         the model of one image (urlId): chats, epoch, seq
//   geometry     where an image's picture is on screen (object-fit, transforms,
//                zoom, scrolling), and `kick`: re-measure in the next frame
//                after anything could have moved
//   View         what one attached image shows: layer, markers, composer,
//                thread, status; lives in an open shadow root right after the
//                image, its cards in the browser's top layer
//   attach()     the public entry point (global `ImageChat`)
//
// Invariants: the model changes only through the apply* functions; a change
// of this tab is applied once, by whichever of its REST answer and its
// WebSocket echo (same broadcastId) arrives first; events are applied in seq
// order with no gap, else the room resyncs; nothing is queued while offline.
(function () {
  'use strict';

  /**
   * @typedef {{id: string, name: string, avatar?: string, anonymous?: boolean}} User
   * @typedef {{id: string, url: string, contentType: string, width: number, height: number}} Attachment protocol §14
   * @typedef {{id: string, user: User, text: string, createdAt: number, editedAt?: number, attachments?: Attachment[], mentions?: User[]}} Comment
   * @typedef {{type: string, points?: number[][], [k: string]: unknown}} Shape protocol §10
   * @typedef {{id: string, x: number, y: number, resolved: boolean, user: User, createdAt: number,
   *   updatedAt?: number, comments: Comment[], pending?: boolean, shape?: Shape}} Chat
   * @typedef {{token: string, user: User, moderator: boolean, canWrite: boolean, expiresAt: number}} Session
   * @typedef {{op: string, comment?: Comment, commentId?: string, x?: number, y?: number, resolved?: boolean, shape?: Shape | null}} Change
   * @typedef {{type: string, urlId: string, seq: number, broadcastId: string | null, at: number,
   *   chat?: Chat, chatId?: string, change?: Change}} ChatEvent
   * @typedef {{userDataJSONBase64: string, verificationHash: string, timestamp: number}} Sso
   * @typedef {'auto' | 'light' | 'dark'} Theme
   * @typedef {{tenantId: string, server?: string, urlId?: string, sso?: Sso, locale?: string,
   *   readonly?: boolean, theme?: Theme, markerSize?: number, onCountChange?: (count: number) => void}} Options
   * @typedef {{applied: boolean, tmp?: string}} Own
   * @typedef {'connecting' | 'live' | 'offline'} State
   */

  const script = /** @type {HTMLScriptElement | null} */ (document.currentScript);
  const DEFAULT_SERVER = script && script.src ? new URL(script.src, location.href).origin : location.origin;
  // What not every visitor needs is loaded on demand from beside this script: /imagechat/NAME.js.
  const LAZY = new URL('imagechat/', script && script.src ? script.src : DEFAULT_SERVER + '/').href;
  /** Shape types and their SVG elements. @type {Record<string, string>} */
  const SHAPES = { rect: 'rect', ellipse: 'ellipse', polygon: 'polygon', arrow: 'line' };
  /** The lazy files, each imported once per page. @type {Record<string, Promise<any>>} */
  const mods = {};
  const load = (/** @type {string} */ n) => (mods[n] = mods[n] || import(`${LAZY}${n}.js`));
  /** The chat a link names in the page's fragment (protocol §10: `pageUrl#imagechat-{chatId}`), until the view that knows it opens it. */
  let linked = '';
  const PING_EVERY = 15000;
  const PONG_TIMEOUT = 10000;
  const MAX_BACKOFF = 30000;

  // ---------------------------------------------------------------- strings

  const STRINGS = {
    en: {
      layer: 'Image discussion. Press Enter to place a new comment marker.',
      layerRo: 'Image discussion.',
      cropped: (/** @type {number} */ n) => `${n} hidden by cropping`,
      placing: 'Arrow keys move the new marker, Shift for bigger steps, Enter writes the comment, Escape cancels.',
      marker: (/** @type {number} */ n, /** @type {string} */ name, /** @type {string} */ text, /** @type {number} */ replies, /** @type {boolean} */ resolved, /** @type {string} */ kind) =>
        `${kind ? `${kind}, thread` : 'Thread'} ${n} by ${name}${resolved ? ', resolved' : ''}: ${text}${replies ? ` (${replies} ${replies === 1 ? 'reply' : 'replies'})` : ''}`,
      tools: { rect: 'Rectangle', ellipse: 'Ellipse', polygon: 'Polygon', arrow: 'Arrow' },
      hideAll: 'Hide markers and shapes',
      thread: (/** @type {number} */ n) => `Thread ${n}`,
      newComment: 'New comment',
      reply: 'Reply',
      post: 'Post',
      cancel: 'Cancel',
      close: 'Close',
      resolved: 'Resolved',
      edited: 'edited',
      you: 'you',
      live: 'Live',
      connecting: 'Connecting…',
      offline: 'Offline — reconnecting…',
      viewing: 'viewing',
      hint: 'Click the image to comment',
      placeholder: 'Write a comment…',
      placeholderReply: 'Reply…',
      empty: 'Write something first.',
      notLive: 'You are offline. Nothing was sent; try again when the connection is back.',
      network: 'Network error. Nothing was sent.',
      rate: (/** @type {number} */ s) => `Too many changes. Try again in ${s} s.`,
      failed: 'That did not work',
      gone: 'This thread was deleted.',
      said: (/** @type {string} */ name, /** @type {string} */ text) => `${name}: ${text}`,
      dismiss: 'Dismiss',
      image: (/** @type {number} */ i, /** @type {number} */ n) => `Image ${i} of ${n}, open full size`,
    },
    ja: {
      layer: '画像ディスカッション。Enter キーで新しいコメントのマーカーを置きます。',
      layerRo: '画像ディスカッション。',
      cropped: (/** @type {number} */ n) => `${n} 件は切り取られて非表示`,
      placing: '矢印キーでマーカーを移動（Shift で大きく）、Enter でコメントを書き、Escape で取り消します。',
      marker: (/** @type {number} */ n, /** @type {string} */ name, /** @type {string} */ text, /** @type {number} */ replies, /** @type {boolean} */ resolved, /** @type {string} */ kind) =>
        `${kind ? `${kind}、` : ''}スレッド ${n}（${name}${resolved ? '、解決済み' : ''}）: ${text}${replies ? `（返信 ${replies} 件）` : ''}`,
      tools: { rect: '矩形', ellipse: '楕円', polygon: '多角形', arrow: '矢印' },
      hideAll: 'マーカーと図形を隠す',
      thread: (/** @type {number} */ n) => `スレッド ${n}`,
      newComment: '新しいコメント',
      reply: '返信',
      post: '投稿',
      cancel: 'キャンセル',
      close: '閉じる',
      resolved: '解決済み',
      edited: '編集済み',
      you: 'あなた',
      live: 'ライブ',
      connecting: '接続中…',
      offline: 'オフライン — 再接続中…',
      viewing: '人が閲覧中',
      hint: '画像をクリックしてコメント',
      placeholder: 'コメントを書く…',
      placeholderReply: '返信を書く…',
      empty: 'まず何か書いてください。',
      notLive: 'オフラインです。送信されていません。接続が戻ってから再度お試しください。',
      network: 'ネットワークエラー。送信されていません。',
      rate: (/** @type {number} */ s) => `変更が多すぎます。${s} 秒後にお試しください。`,
      failed: '失敗しました',
      gone: 'このスレッドは削除されました。',
      said: (/** @type {string} */ name, /** @type {string} */ text) => `${name}: ${text}`,
      dismiss: '閉じる',
      image: (/** @type {number} */ i, /** @type {number} */ n) => `画像 ${i}/${n}（拡大表示）`,
    },
  };
  /** @typedef {typeof STRINGS.en} Strings */

  /** @param {string | undefined} locale */
  function pickLocale(locale) {
    const l = (locale || navigator.language || 'en').toLowerCase();
    return l.startsWith('ja') ? 'ja' : 'en';
  }

  // ---------------------------------------------------------------- helpers

  /** A v4 UUID; crypto.randomUUID exists only in secure contexts. */
  function uuid() {
    if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    return '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) => (+c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (+c / 4)))).toString(16));
  }

  /** 64-bit FNV-1a as 16 hex digits: a stable short name for a long urlId. */
  function fnv(/** @type {string} */ s) {
    let h = 0xcbf29ce484222325n;
    for (const byte of new TextEncoder().encode(s)) h = ((h ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
    return h.toString(16).padStart(16, '0');
  }

  /** The default urlId: page URL without hash + '#' + the image's src, at most 1024 bytes. */
  function defaultUrlId(/** @type {HTMLImageElement} */ img) {
    const id = location.href.split('#')[0] + '#' + (img.src || img.currentSrc);
    if (new TextEncoder().encode(id).length <= 1024) return id;
    const keep = 1024 - 17;
    let prefix = '';
    let bytes = 0;
    for (const ch of id) {
      const n = new TextEncoder().encode(ch).length;
      if (bytes + n > keep) break;
      prefix += ch;
      bytes += n;
    }
    return prefix + '~' + fnv(id);
  }

  /**
   * @template {keyof HTMLElementTagNameMap} K
   * @param {K} tag
   * @param {Record<string, string | boolean | number>} [attrs]
   * @param {(Node | string | null | false)[]} [kids]
   * @returns {HTMLElementTagNameMap[K]}
   */
  function h(tag, attrs, kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false) continue;
      if (k === 'text') el.textContent = String(v);
      else if (k === 'class') el.className = String(v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids || []) if (kid) el.append(kid);
    return el;
  }

  /** An SVG element. @param {string} tag @param {Record<string, string>} [attrs] @param {Element} [kid] @returns {SVGElement} */
  function svg(tag, attrs, kid) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const k in attrs) el.setAttribute(k, attrs[k]);
    if (kid) el.append(kid);
    return /** @type {SVGElement} */ (el);
  }

  /** A resolved (ASCII) URL if http(s) and at most 2048 bytes (§10 imageUrl, pageUrl). @param {string} url */
  const web = (url) => (/^https?:/.test(url) && url.length <= 2048 ? url : undefined);

  /** An error that carries the server's code, for the message shown to the user. */
  class ApiError extends Error {
    /** @param {number} status @param {string} code @param {string} message @param {number} [retryAfter] */
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter || 0;
    }
  }

  /** @param {unknown} e @param {Strings} t */
  function describe(e, t) {
    if (e instanceof ApiError) {
      if (e.status === 0) return t.network;
      if (e.status === 429) return t.rate(e.retryAfter || 1);
      return `${t.failed}: ${e.message}`;
    }
    return t.failed;
  }

  const clamp = (/** @type {number} */ v) => Math.round(Math.min(100, Math.max(0, v)) * 100) / 100;

  // ---------------------------------------------------------------- model

  /** The chats of one image and its log position. */
  class Room {
    /** @param {Connection} conn @param {string} urlId */
    constructor(conn, urlId) {
      this.conn = conn;
      this.urlId = urlId;
      /** @type {Map<string, Chat>} */
      this.chats = new Map();
      /** @type {string | null} */
      this.epoch = null;
      this.seq = 0;
      /** True once a snapshot was loaded: (epoch, seq) names where we are. */
      this.loaded = false;
      /** True while subscribed and in sync. */
      this.ready = false;
      this.everReady = false;
      /** Live events held back while a snapshot loads (null when not loading). */
      /** @type {ChatEvent[] | null} */
      this.buffer = null;
      /** @type {number | null} */
      this.viewers = null;
      /** @type {Set<View>} */
      this.views = new Set();
    }

    /** @param {ChatEvent | null} [ev] an applied event of someone else, for announcements */
    notify(ev) {
      for (const v of this.views) v.render(ev || null);
    }

    /** @param {Chat} chat */
    putChat(chat) {
      this.chats.set(chat.id, chat);
    }

    /** @param {string} tmp @param {Chat} chat the server's chat replacing an optimistic one */
    swapChat(tmp, chat) {
      if (!this.chats.has(tmp)) return this.putChat(chat);
      this.chats = new Map([...this.chats].map(([id, c]) => (id === tmp ? [chat.id, chat] : [id, c])));
    }

    /** @param {string} chatId @param {Comment} comment */
    putComment(chatId, comment) {
      const chat = this.chats.get(chatId);
      if (!chat) return;
      const i = chat.comments.findIndex((c) => c.id === comment.id);
      if (i >= 0) chat.comments[i] = comment;
      else {
        chat.comments.push(comment);
        chat.comments.sort((a, b) => a.createdAt - b.createdAt);
      }
    }

    /** @param {string} chatId @param {string} commentId */
    dropComment(chatId, commentId) {
      const chat = this.chats.get(chatId);
      if (!chat) return;
      chat.comments = chat.comments.filter((c) => c.id !== commentId);
      if (!chat.comments.length) this.chats.delete(chatId);
    }

    /** Applies one logged event to the model. @param {ChatEvent} ev */
    applyEvent(ev) {
      const chatId = ev.chatId || '';
      if (ev.type === 'new-image-chat' && ev.chat) this.putChat(ev.chat);
      else if (ev.type === 'deleted-image-chat') this.chats.delete(chatId);
      else if (ev.type === 'image-chat-updated' && ev.change) {
        const ch = ev.change;
        const chat = this.chats.get(chatId);
        if ((ch.op === 'comment-added' || ch.op === 'comment-edited') && ch.comment) this.putComment(chatId, ch.comment);
        else if (ch.op === 'comment-deleted' && ch.commentId) this.dropComment(chatId, ch.commentId);
        else if (ch.op === 'moved' && chat && ch.x != null && ch.y != null) Object.assign(chat, { x: ch.x, y: ch.y });
        else if (ch.op === 'resolved' && chat && ch.resolved != null) chat.resolved = ch.resolved;
        else if (ch.op === 'reshaped' && chat) chat.shape = ch.shape || undefined; // null: a pin again
        if (chat) chat.updatedAt = ev.at;
      }
    }
  }

  // ---------------------------------------------------------------- connection

  /** @type {Map<string, Connection>} */
  const connections = new Map();

  /** One session and one WebSocket shared by every image of the page with the same server and identity. */
  class Connection {
    /** @param {string} server @param {string} tenantId @param {Sso | undefined} sso @param {string} key */
    constructor(server, tenantId, sso, key) {
      this.server = server.replace(/\/+$/, '');
      this.tenantId = tenantId;
      this.sso = sso;
      this.key = key;
      /** @type {Session | null} */
      this.session = null;
      /** @type {Promise<Session> | null} */
      this.sessionP = null;
      /** @type {WebSocket | null} */
      this.ws = null;
      /** @type {State} */
      this.state = 'connecting';
      this.attempt = 0;
      this.closed = false;
      this.reqId = 0;
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      this.retryTimer = undefined;
      /** @type {ReturnType<typeof setInterval> | undefined} */
      this.pingTimer = undefined;
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      this.pongTimer = undefined;
      /** @type {Map<string, Room>} */
      this.rooms = new Map();
      /** This tab's own mutations by broadcastId. @type {Map<string, Own>} */
      this.own = new Map();
      /** Sees every message first (lazy/mentions.js). @type {any} */
      this.on = null;
      this.onOnline = () => {
        this.attempt = 0;
        if (this.state === 'live') this.ping();
        else this.connect();
      };
      // Browsers may freeze an open socket when the network goes: close it ourselves.
      this.onOffline = () => this.lost();
      this.onVisible = () => {
        if (document.visibilityState === 'visible') this.ping();
      };
      addEventListener('online', this.onOnline);
      addEventListener('offline', this.onOffline);
      document.addEventListener('visibilitychange', this.onVisible);
      this.storeKey = `imagechat:${this.server}:${tenantId}`;
      this.connect();
    }

    /** A session token, reused while valid; anonymous sessions survive reloads so authors keep their comments. */
    getSession() {
      if (this.session && this.session.expiresAt > Date.now() + 60000) return Promise.resolve(this.session);
      if (!this.sessionP) {
        if (!this.sso) {
          try {
            const s = /** @type {Session} */ (JSON.parse(localStorage.getItem(this.storeKey) || 'null'));
            if (s && s.token && s.expiresAt > Date.now() + 60000) return Promise.resolve((this.session = s));
          } catch (_) {
            /* storage unavailable: fetch a session */
          }
        }
        this.sessionP = this.fetchJson('POST', '/api/v1/sessions', { tenantId: this.tenantId, sso: this.sso || null }, null)
          .then((s) => {
            this.session = /** @type {Session} */ (s);
            if (!this.sso) {
              try {
                localStorage.setItem(this.storeKey, JSON.stringify(s));
              } catch (_) {
                /* not persisted */
              }
            }
            return this.session;
          })
          .finally(() => (this.sessionP = null));
      }
      return this.sessionP;
    }

    /** Forgets a refused token so the next call fetches a new one. @param {Session | null} s */
    dropSession(s) {
      if (s && this.session && this.session.token !== s.token) return;
      this.session = null;
      try {
        if (!this.sso) localStorage.removeItem(this.storeKey);
      } catch (_) {
        /* nothing stored */
      }
    }

    /**
     * @param {string} method @param {string} path @param {unknown} body @param {string | null} token
     * @returns {Promise<any>}
     */
    async fetchJson(method, path, body, token) {
      /** @type {Record<string, string>} */
      const headers = {};
      if (token) headers.Authorization = `Bearer ${token}`;
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      let res;
      try {
        res = await fetch(this.server + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (_) {
        throw new ApiError(0, 'network', 'network error');
      }
      const data = await res.json().catch(() => ({}));
      if (!res.ok) {
        const err = (data && data.error) || {};
        throw new ApiError(res.status, err.code || 'error', err.message || res.statusText, Number(res.headers.get('Retry-After')) || 0);
      }
      return data;
    }

    /** An authenticated REST call; a refused token is replaced once. @param {string} method @param {string} path @param {unknown} [body] */
    async api(method, path, body) {
      for (let i = 0; ; i++) {
        const s = await this.getSession();
        try {
          return await this.fetchJson(method, path, body, s.token);
        } catch (e) {
          if (i || !(e instanceof ApiError) || e.status !== 401) throw e;
          this.dropSession(s);
        }
      }
    }

    /** @param {string} urlId */
    room(urlId) {
      let room = this.rooms.get(urlId);
      if (!room) {
        room = new Room(this, urlId);
        this.rooms.set(urlId, room);
        if (this.state === 'live') this.subscribe(room);
      }
      return room;
    }

    /** @param {Room} room */
    release(room) {
      if (room.views.size) return;
      this.rooms.delete(room.urlId);
      if (this.state === 'live') this.send({ type: 'unsubscribe', urlId: room.urlId });
      if (!this.rooms.size) this.close();
    }

    close() {
      this.closed = true;
      connections.delete(this.key);
      removeEventListener('online', this.onOnline);
      removeEventListener('offline', this.onOffline);
      document.removeEventListener('visibilitychange', this.onVisible);
      clearTimeout(this.retryTimer);
      this.drop();
    }

    /** @param {object} msg */
    send(msg) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
    }

    async connect() {
      if (this.closed) return;
      clearTimeout(this.retryTimer);
      this.drop();
      /** @type {Session} */
      let s;
      try {
        s = await this.getSession();
      } catch (e) {
        // A refused session (unknown tenant, origin not allowed) is worth saying; a network error is the status's job.
        if (e instanceof ApiError && e.status && e.status !== 429) this.tell((t) => describe(e, t));
        return this.lost();
      }
      if (this.closed || this.ws) return;
      const ws = new WebSocket(this.server.replace(/^http/, 'ws') + '/api/v1/ws');
      this.ws = ws;
      // A handshake or hello that hangs counts as lost, like an unanswered ping.
      this.pongTimer = setTimeout(() => this.lost(), PONG_TIMEOUT);
      ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token: s.token }));
      ws.onmessage = (e) => {
        if (this.ws !== ws) return;
        let data;
        try {
          data = JSON.parse(String(e.data));
        } catch (_) {
          return;
        }
        for (const m of Array.isArray(data) ? data : [data]) this.handle(m, s);
      };
      ws.onclose = (e) => {
        if (this.ws !== ws) return;
        if (e.code === 4401) this.dropSession(s);
        this.lost();
      };
    }

    /** Detaches and closes the current socket, if any. */
    drop() {
      clearInterval(this.pingTimer);
      clearTimeout(this.pongTimer);
      this.pongTimer = undefined;
      const ws = this.ws;
      this.ws = null;
      if (ws) {
        ws.onopen = ws.onmessage = ws.onclose = null;
        try {
          ws.close();
        } catch (_) {
          /* already closed */
        }
      }
    }

    /** The connection is gone (closed, failed, unanswered ping or browser offline): say so and retry. */
    lost() {
      this.drop();
      if (this.closed) return;
      this.state = 'offline';
      for (const room of this.rooms.values()) {
        room.ready = false;
        room.buffer = null;
        room.notify();
      }
      clearTimeout(this.retryTimer);
      const delay = Math.min(MAX_BACKOFF, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      this.attempt++;
      this.retryTimer = setTimeout(() => this.connect(), delay);
    }

    ping() {
      if (!this.ws || this.state !== 'live' || this.pongTimer) return;
      this.send({ type: 'ping' });
      this.pongTimer = setTimeout(() => this.lost(), PONG_TIMEOUT);
    }

    /** Shows a message on every view of this connection. @param {(t: Strings) => string} msg */
    tell(msg) {
      for (const r of this.rooms.values()) for (const v of r.views) v.showError(msg(v.t));
    }

    /** @param {Room} room subscribes, resuming from (epoch, seq) when the room has them */
    subscribe(room) {
      room.ready = false;
      /** @type {Record<string, unknown>} */
      const msg = { type: 'subscribe', id: `s${++this.reqId}`, urlId: room.urlId };
      if (room.loaded) Object.assign(msg, { epoch: room.epoch, seq: room.seq });
      this.send(msg);
    }

    /** @param {any} m one server message @param {Session} s the session this socket said hello with */
    handle(m, s) {
      this.on?.(m);
      const room = m.urlId != null ? this.rooms.get(m.urlId) : undefined;
      switch (m.type) {
        case 'welcome':
          this.session = Object.assign({}, s, { user: m.user, moderator: !!m.moderator });
          clearTimeout(this.pongTimer);
          this.pongTimer = undefined;
          this.state = 'live';
          this.attempt = 0;
          this.pingTimer = setInterval(() => this.ping(), PING_EVERY);
          for (const r of this.rooms.values()) this.subscribe(r);
          return;
        case 'pong':
          clearTimeout(this.pongTimer);
          this.pongTimer = undefined;
          return;
        case 'subscribed':
          if (!room) return;
          room.viewers = m.viewers;
          if (m.recovered && room.loaded && m.epoch === room.epoch) {
            room.ready = room.everReady = true;
            room.notify();
          } else this.loadSnapshot(room);
          return;
        case 'presence':
          if (room) {
            room.viewers = m.viewers;
            room.notify();
          }
          return;
        case 'error':
          // unauthorized: the server closes with 4401 and we reconnect with a fresh token, nothing to tell.
          if (m.code === 'unauthorized') this.dropSession(s);
          else this.tell((t) => `${t.failed}: ${m.message || m.code}`);
          return;
        case 'new-image-chat':
        case 'image-chat-updated':
        case 'deleted-image-chat':
          if (!room) return;
          if (room.buffer) room.buffer.push(m);
          else this.onEvent(room, m);
      }
    }

    /** @param {Room} room */
    async loadSnapshot(room) {
      room.buffer = room.buffer || [];
      try {
        const snap = await this.api('GET', `/api/v1/chats?urlId=${encodeURIComponent(room.urlId)}`);
        if (!room.buffer) return; // the connection was lost meanwhile
        const pending = [...room.chats.values()].filter((c) => c.pending);
        room.chats = new Map(/** @type {Chat[]} */ (snap.chats).map((c) => [c.id, c]));
        for (const c of pending) room.chats.set(c.id, c);
        room.epoch = snap.epoch;
        room.seq = snap.seq;
        room.loaded = true;
        const held = room.buffer;
        room.buffer = null;
        room.ready = room.everReady = true;
        for (const ev of held) if (ev.seq > room.seq) this.onEvent(room, ev, true);
        room.notify();
      } catch (e) {
        if (room.buffer) this.lost();
      }
    }

    /** @param {Room} room @param {ChatEvent} ev @param {boolean} [quiet] */
    onEvent(room, ev, quiet) {
      if (ev.seq <= room.seq) return;
      if (ev.seq !== room.seq + 1) return this.subscribe(room); // a gap: resync from where we are
      room.seq = ev.seq;
      const own = ev.broadcastId ? this.own.get(ev.broadcastId) : undefined;
      if (own) {
        // This tab's change: apply it unless its REST answer already did.
        if (own.applied) this.own.delete(/** @type {string} */ (ev.broadcastId));
        else {
          own.applied = true;
          if (own.tmp) room.chats.delete(own.tmp);
          room.applyEvent(ev);
        }
        if (!quiet) room.notify();
        return;
      }
      room.applyEvent(ev);
      if (!quiet) room.notify(ev);
    }

    /**
     * Runs one mutation of this tab; `apply` applies its answer unless the echo came first.
     * @param {string} method @param {string} path @param {Record<string, unknown> | undefined} body
     * @param {(data: any, own: Own) => void} apply @param {string} [tmp]
     */
    async mutate(method, path, body, apply, tmp) {
      const bid = uuid();
      /** @type {Own} */
      const own = { applied: false, tmp };
      this.own.set(bid, own);
      if (this.own.size > 500) this.own.delete(/** @type {string} */ (this.own.keys().next().value));
      try {
        const data = body
          ? await this.api(method, path, Object.assign({}, body, { broadcastId: bid }))
          : await this.api(method, `${path}?broadcastId=${bid}`);
        if (own.applied) this.own.delete(bid);
        else {
          own.applied = true;
          apply(data, own);
        }
        return data;
      } catch (e) {
        // The answer was lost but the echo proves the change was stored: that is a success.
        if (own.applied) return null;
        this.own.delete(bid);
        throw e;
      }
    }
  }

  // ---------------------------------------------------------------- geometry
  //
  // Where an image's picture is on screen, in client (viewport) px. Read from
  // the image's border box as the browser draws it, so ancestor transforms
  // (scale, translate), CSS zoom and scrolling are already in; `k` is client
  // px per CSS px of the image. The picture is the content box, or with
  // object-fit/object-position the rendered picture inside it (it may be
  // smaller: letterbox bars; or larger: cropped). Chats are percentages of the
  // picture. Views measure anew on every frame something could have moved
  // (see `kick`) and at the moment of each click.

  /** @typedef {{l: number, t: number, w: number, h: number}} Rect */
  /** @typedef {{box: Rect, pic: Rect, k: number, seen: boolean}} Geo `seen`: not visibility: hidden (the widget inherits nothing, so it asks) */

  /** @param {HTMLImageElement} img @returns {Geo} */
  function measure(img) {
    const r = img.getBoundingClientRect();
    const cs = getComputedStyle(img);
    const k = r.width / img.offsetWidth || 1;
    const seen = cs.visibility === 'visible';
    const n = (/** @type {string} */ side) => ((parseFloat(cs.getPropertyValue(`border-${side}-width`)) || 0) + (parseFloat(cs.getPropertyValue(`padding-${side}`)) || 0)) * k;
    const box = { l: r.left + n('left'), t: r.top + n('top'), w: 0, h: 0 };
    box.w = Math.max(0, r.right - n('right') - box.l);
    box.h = Math.max(0, r.bottom - n('bottom') - box.t);
    const fit = cs.objectFit;
    const nw = img.naturalWidth;
    const nh = img.naturalHeight;
    if (fit === 'fill' || !nw || !nh) return { box, pic: box, k, seen };
    const contain = Math.min(box.w / nw, box.h / nh);
    const s = fit === 'contain' ? contain : fit === 'cover' ? Math.max(box.w / nw, box.h / nh) : fit === 'none' ? k : Math.min(contain, k);
    const w = nw * s;
    const h = nh * s;
    const [px, py] = cs.objectPosition.split(' ');
    const off = (/** @type {string} */ v, /** @type {number} */ free) => (/%$/.test(v) ? (free * parseFloat(v)) / 100 : parseFloat(v) * k || 0);
    return { box, pic: { l: box.l + off(px, box.w - w), t: box.t + off(py || '50%', box.h - h), w, h }, k, seen };
  }

  /** Percent of the picture at a client point; null off the visible picture unless `loose`. @param {Geo} g @param {number} cx @param {number} cy @param {boolean} [loose] */
  function toPct(g, cx, cy, loose) {
    const { box: b, pic: p } = g;
    const x = ((cx - p.l) / (p.w || 1)) * 100;
    const y = ((cy - p.t) / (p.h || 1)) * 100;
    if (!loose && (x < 0 || y < 0 || x > 100 || y > 100 || cx < b.l || cy < b.t || cx > b.l + b.w || cy > b.t + b.h)) return null;
    return { x: clamp(x), y: clamp(y) };
  }

  /** The client point of a percentage, and whether the content box shows it. @param {Geo} g @param {{x: number, y: number}} at */
  function toClient(g, at) {
    const { box: b, pic: p } = g;
    const x = p.l + (p.w * at.x) / 100;
    const y = p.t + (p.h * at.y) / 100;
    return { x, y, shown: x > b.l - 0.5 && y > b.t - 0.5 && x < b.l + b.w + 0.5 && y < b.t + b.h + 0.5 };
  }

  /** The part of the viewport the image's scrolling/clipping ancestors let it show. @param {Element} img */
  function clipOf(img) {
    const c = { l: -1e5, t: -1e5, r: 1e5, b: 1e5 };
    for (let e = img.parentElement; e && e !== document.body && e !== document.documentElement; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.overflowX !== 'visible' || cs.overflowY !== 'visible') {
        const q = e.getBoundingClientRect();
        c.l = Math.max(c.l, q.left);
        c.t = Math.max(c.t, q.top);
        c.r = Math.min(c.r, q.right);
        c.b = Math.min(c.b, q.bottom);
      }
      if (cs.position === 'fixed') break;
    }
    return c;
  }

  /** Live views; `kick` re-measures them in the next frame, and keeps doing so while anything moves. @type {Set<View>} */
  const views = new Set();
  let frameId = 0;
  const kick = () => {
    frameId = frameId || requestAnimationFrame(() => {
      frameId = 0;
      autoAttach();
      for (const v of views) if (v.sync()) kick();
    });
  };
  // What can move an image: scrolling anywhere, loads, DOM and style changes,
  // transitions, the window, the page URL (single-page apps). Nothing runs
  // while nothing happens.
  for (const type of ['scroll', 'load', 'transitionrun', 'transitionend', 'animationstart', 'animationend']) document.addEventListener(type, kick, true);
  addEventListener('resize', kick);
  addEventListener('popstate', kick);
  /** @type {any} */ (window).navigation?.addEventListener('currententrychange', kick);
  const resized = new ResizeObserver(kick);
  // Content above that grows or shrinks (a web font arriving, a video's size) changes the page's height.
  resized.observe(document.documentElement);
  document.fonts?.addEventListener('loadingdone', kick);

  // ---------------------------------------------------------------- view

  // Adopted by every shadow root (no <style> element, no style attribute: a
  // strict CSP allows both this and CSSOM property writes). The host element
  // is reset with !important, which beats any rule of the page, so nothing of
  // the page's CSS is inherited; it takes its box from --l/--t/--w/--h. The
  // UI's languages run left to right on any page; users' text picks its own
  // direction (dir=auto).
  const CSS = `
:host{all:initial!important;position:absolute!important;display:block!important;z-index:1000!important;left:var(--l)!important;top:var(--t)!important;width:var(--w)!important;height:var(--h)!important;clip-path:var(--c)!important}
:host>*{direction:ltr;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Hiragino Sans","Noto Sans JP",sans-serif;color:var(--fg);
--bg:#fff;--fg:#111827;--mut:#4b5563;--line:#d1d5db;--acc:#1d4ed8;--ok:#15803d;--bad:#b91c1c;--soft:#f3f4f6;--shadow:0 8px 28px rgba(0,0,0,.22)}
:host([data-theme=dark])>*{--bg:#1f2937;--fg:#f9fafb;--mut:#d1d5db;--line:#4b5563;--acc:#2563eb;--bad:#fca5a5;--soft:#374151;--shadow:0 8px 28px rgba(0,0,0,.6)}
*{box-sizing:border-box}[hidden]{display:none!important}
.layer{position:absolute;inset:0;cursor:crosshair;outline:none;-webkit-tap-highlight-color:transparent}
.layer,.bar,.tg{visibility:var(--v)}.bar,.err,.tg{zoom:var(--k)}
.layer:focus-visible{outline:3px solid var(--acc);outline-offset:-3px}
.layer.ro{cursor:default;pointer-events:none}
.pic{position:absolute;pointer-events:none}
.m{position:absolute;z-index:1;width:var(--s);height:var(--s);margin:calc(var(--s) / -2) 0 0 calc(var(--s) / -2);border-radius:50% 50% 50% 4px;border:2px solid #fff;background:var(--acc);color:#fff;font:700 calc(var(--s) * .43)/1 system-ui,sans-serif;
display:flex;align-items:center;justify-content:center;cursor:pointer;box-shadow:0 2px 6px rgba(0,0,0,.35);padding:0;transition:transform .15s,left .2s,top .2s;pointer-events:auto}
.m:hover,.m[aria-expanded=true]{transform:scale(1.15)}
.m:focus-visible{outline:3px solid var(--fg);outline-offset:2px}
.m[data-resolved=true]{background:var(--ok)}
.sh{position:absolute;left:0;top:0;width:100%;height:100%;overflow:visible;filter:drop-shadow(0 0 1px #fff)}
.sh>*{fill:var(--acc);fill-opacity:.12;stroke:var(--acc);stroke-width:2.5px;vector-effect:non-scaling-stroke}
line{marker-end:url(#ah)}marker path{fill:context-stroke;stroke:none}
.sh:has(+[data-resolved=true])>*{fill:var(--ok);stroke:var(--ok)}
.sh:has(+:is(:hover,:focus,[aria-expanded=true]))>*{stroke-width:4px;fill-opacity:.25}
.sh:has(+.pending)>*{opacity:.6}.sh:has(+.draft)>*{stroke-dasharray:6 4}
.tg{position:absolute;right:6px;top:6px;width:28px;height:28px;padding:4px;border:0;border-radius:6px;background:#111827d0;color:#fff;cursor:pointer}
.tg[aria-pressed=true]{background:var(--acc)}.tg:focus-visible{outline:2px solid var(--fg);outline-offset:1px}
.tg path{fill:none;stroke:currentColor;stroke-width:1.6}
.m.pending{opacity:.6;cursor:progress}
.m.draft{background:rgba(29,78,216,.28);border:2px dashed var(--acc);box-shadow:0 0 0 2px #fff;pointer-events:none}
.card{position:fixed;inset:auto;margin:0;overflow:visible;width:300px;height:auto;max-width:calc(100vw - 16px);background:var(--bg);color:var(--fg);border:1px solid var(--line);border-radius:10px;box-shadow:var(--shadow);padding:10px;cursor:auto;animation:pop .14s ease-out}
@keyframes pop{from{opacity:0;transform:translateY(4px)}}
.thread{display:flex;flex-direction:column;max-height:min(70vh,480px)}
.head{display:flex;align-items:center;gap:6px;margin-bottom:6px}
.head h2{font-size:14px;margin:0;flex:1}
.list{list-style:none;margin:0;padding:0;overflow:auto;flex:1}
.c{padding:6px 0;border-top:1px solid var(--line)}
.c:first-child{border-top:0}
.meta{color:var(--mut);font-size:12px;display:flex;gap:6px;flex-wrap:wrap}
.meta b{color:var(--fg)}
.txt{margin:2px 0 0;white-space:pre-wrap;overflow-wrap:anywhere}
.at{padding:0;margin:4px 4px 0 0;vertical-align:top;border:1px solid var(--line);border-radius:6px;background:var(--soft);cursor:zoom-in}.at img{display:block;border-radius:5px}
textarea{display:block;width:100%;min-height:60px;resize:vertical;font:inherit;color:var(--fg);background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:6px;margin:0}
textarea:focus{outline:2px solid var(--acc);outline-offset:0}
form{margin:8px 0 0}form.card{margin:0}
.row{display:flex;gap:6px;justify-content:flex-end;align-items:center;margin-top:6px}
button.b{font:inherit;font-size:13px;min-height:28px;padding:3px 10px;border-radius:6px;border:1px solid var(--line);background:var(--soft);color:var(--fg);cursor:pointer;margin:0}
button.b:focus-visible{outline:2px solid var(--acc);outline-offset:1px}
button.p{background:var(--acc);border-color:var(--acc);color:#fff}
button.x{background:none;border:0;font-size:20px;line-height:1;min-width:28px;color:var(--mut)}
.off button.p{opacity:.55}
.bar{position:absolute;left:6px;bottom:6px;display:flex;gap:8px;align-items:center;max-width:calc(100% - 12px);padding:3px 9px;border-radius:999px;background:rgba(17,24,39,.82);color:#fff;font-size:12px;pointer-events:none;white-space:nowrap;overflow:hidden}
.dot{width:8px;height:8px;border-radius:50%;background:#4ade80;display:inline-block;margin-right:5px}
[data-state=connecting] .dot{background:#facc15}
[data-state=offline] .dot{background:#f87171}
.st[data-state=offline]{font-weight:700}
.hint{opacity:.85}
.err{position:absolute;left:50%;top:8px;transform:translateX(-50%);width:max-content;max-width:min(92%,420px);display:flex;gap:8px;align-items:center;background:var(--bad);color:#fff;border-radius:8px;padding:6px 6px 6px 12px;box-shadow:var(--shadow);font-size:13px}
:host([data-theme=dark]) .err{color:#450a0a}
.err button{color:inherit}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
@media (max-width:767.98px){form.card{left:8px!important;right:8px!important;top:auto!important;bottom:8px!important;width:auto;max-width:none}.thread{inset:0!important;width:auto;max-width:none;max-height:none;border-radius:0;border:0}}
@media (prefers-reduced-motion:reduce){*{transition:none!important;animation:none!important}}
`;

  /** @type {WeakMap<HTMLImageElement, View>} */
  const attached = new WeakMap();
  /** Images whose widget was destroyed: auto-attach leaves them alone. @type {WeakSet<HTMLImageElement>} */
  const destroyed = new WeakSet();

  /** @type {CSSStyleSheet | undefined} */
  let sheet;
  /** The view whose new-chat composer is open. @type {View | null} */
  let composing = null;

  /** What one attached image shows. */
  class View {
    /** @param {HTMLImageElement} img @param {Options} opts */
    constructor(img, opts) {
      this.img = img;
      this.opts = Object.assign({ readonly: false, theme: /** @type {Theme} */ ('auto'), markerSize: 28 }, opts);
      this.t = STRINGS[pickLocale(this.opts.locale)];
      const server = (opts.server || DEFAULT_SERVER).replace(/\/+$/, '');
      const key = JSON.stringify([server, opts.tenantId, opts.sso || null]);
      let conn = connections.get(key);
      if (!conn) connections.set(key, (conn = new Connection(server, opts.tenantId, opts.sso, key)));
      this.conn = conn;
      /** @type {string} */
      this.urlId = '';
      /** @type {number | null} */
      this.count = null;
      /** @type {Map<string, HTMLButtonElement>} */
      this.markers = new Map();
      /** The point of a marker being placed (composer or keyboard). @type {{x: number, y: number} | null} */
      this.draft = null;
      /** The new chat's shape (`draftShape`), the drawing tool and, for users who may write, lazy/regions.js once loaded. */
      this.tool = 'pin';
      /** @type {any} */
      this.rg = null;
      this.hide = false;
      /** @type {HTMLFormElement | null} */
      this.composer = null;
      /** @type {{id: string, el: HTMLElement, list: HTMLUListElement, head: HTMLElement, form: HTMLFormElement | null, items: Map<string, HTMLLIElement>, confirm: boolean} | null} */
      this.thread = null;
      /** A marker (and shape) being moved: its chat and where it is shown now. @type {{id: string, x: number, y: number, shape?: Shape} | null} */
      this.moving = null;
      this.suppressClick = false;
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      this.errTimer = undefined;
      /** The last geometry, and the values written from it (to write only changes). @type {Geo | null} */
      this.g = null;
      this.written = '';
      /** @type {Record<string, number> | null} */
      this.out = null;
      this.idKey = '';
      /** @type {Room} */
      this.room = /** @type {any} */ (null);

      this.host = h('div');
      this.root = this.host.attachShadow({ mode: 'open' });
      this.root.adoptedStyleSheets = [sheet || ((sheet = new CSSStyleSheet()), sheet.replaceSync(CSS), sheet)];
      this.layer = h('div', { class: 'layer', 'data-imagechat-layer': true, tabindex: 0, role: 'group' });
      this.pic = h('div', { class: 'pic' });
      this.draftEl = h('div', { class: 'm draft', hidden: true, 'aria-hidden': 'true' });
      this.statusEl = h('span', { class: 'st', 'data-imagechat-status': true, 'data-state': 'connecting', role: 'status' });
      this.viewersEl = h('span', { 'data-imagechat-viewers': true });
      this.viewersWrap = h('span', {}, [this.viewersEl, ' ', h('span', { class: 'vl' })]);
      this.hintEl = h('span', { class: 'hint' });
      this.cropEl = h('span');
      this.liveEl = h('div', { class: 'sr', 'aria-live': 'polite' });
      this.descEl = h('div', { class: 'sr', id: 'ic-desc' });
      // The head of every arrow.
      const defs = svg('svg', {}, svg('marker', { id: 'ah', viewBox: '0 0 10 10', refX: '6', refY: '5', markerWidth: '5', markerHeight: '5', orient: 'auto' }, svg('path', { d: 'M0 0l10 5-10 5z' })));
      // Hides and shows every marker and shape (the lazy tool bar goes beside it).
      this.toggle = h('button', { class: 'tg', type: 'button', 'data-imagechat-toggle-markers': true });
      this.toggle.append(svg('svg', { viewBox: '0 0 20 20' }, svg('path', { d: 'M1 10q9-12 18 0-9 12-18 0zm6 0a3 3 0 0 0 6 0 3 3 0 0 0-6 0' })));
      this.toggle.onclick = () => {
        this.hide = !this.hide;
        this.closeThread(false);
        this.render(null);
      };
      this.root.append(this.layer, this.toggle, h('div', { class: 'bar' }, [this.statusEl, this.viewersWrap, this.cropEl, this.hintEl]), this.liveEl, this.descEl);
      this.layer.append(this.pic);
      this.pic.append(defs, this.draftEl);
      img.after(this.host);

      this.layer.addEventListener('click', (e) => this.onLayerClick(e));
      this.layer.addEventListener('keydown', (e) => this.onLayerKey(e));
      this.root.addEventListener('keydown', (e) => this.onRootKey(/** @type {KeyboardEvent} */ (e)));
      // The page's handlers and links never see what happens in the widget:
      // nothing bubbles out of it, and an image inside <a href> does not
      // navigate (submit buttons still submit).
      for (const type of ['click', 'auxclick', 'dblclick', 'keydown', 'keyup', 'keypress', 'beforeinput', 'input']) this.host.addEventListener(type, (e) => e.stopPropagation());
      for (const type of ['click', 'auxclick', 'dblclick'])
        this.root.addEventListener(
          type,
          (e) => {
            e.preventDefault();
            const b = /** @type {Element} */ (e.composedPath()[0]).closest('[type=submit]');
            if (type === 'click' && b instanceof HTMLButtonElement && b.form) b.form.requestSubmit(b);
          },
          true,
        );

      this.media = matchMedia('(prefers-color-scheme: dark)');
      this.onTheme = () => this.applyTheme();
      this.media.addEventListener('change', this.onTheme);

      const view = this;
      /** The public instance: the same object for every attach() of this image. */
      this.handle = Object.freeze({
        get urlId() {
          return view.urlId;
        },
        /** @param {Partial<Options>} o */
        update: (/** @type {Partial<Options>} */ o) => this.update(o),
        destroy: () => this.destroy(),
      });
      this.join(opts.urlId || defaultUrlId(img));
      views.add(this);
      resized.observe(img);
      this.applyOptions();
      this.sync();
    }

    /** Shows this image's discussion of `urlId` (again: a carousel or a single-page app changed the image). @param {string} urlId */
    join(urlId) {
      const old = this.room;
      if (old) {
        this.closeComposer(false);
        this.closeThread(false);
        old.views.delete(this);
      }
      this.urlId = urlId;
      this.count = null;
      this.room = this.conn.room(urlId);
      this.room.views.add(this);
      if (old) this.conn.release(old);
      this.render(null);
    }

    /** Changes readonly, theme, locale or markerSize. @param {Partial<Options>} opts */
    update(opts) {
      for (const k of /** @type {const} */ (['readonly', 'theme', 'locale', 'markerSize'])) if (opts && opts[k] !== undefined) Object.assign(this.opts, { [k]: opts[k] });
      this.t = STRINGS[pickLocale(this.opts.locale)];
      this.applyOptions();
      if (this.thread) this.openThread(this.thread.id, false);
      this.render(null);
    }

    /** Removes every trace from the page and unsubscribes. */
    destroy() {
      if (!views.delete(this)) return;
      attached.delete(this.img);
      destroyed.add(this.img);
      resized.unobserve(this.img);
      this.media.removeEventListener('change', this.onTheme);
      clearTimeout(this.errTimer);
      this.closeComposer(false);
      this.host.remove();
      this.room.views.delete(this);
      this.conn.release(this.room);
    }

    applyOptions() {
      this.applyTheme();
      this.descEl.textContent = this.t.placing;
      this.viewersWrap.lastElementChild && (this.viewersWrap.lastElementChild.textContent = this.t.viewing);
      this.host.lang = pickLocale(this.opts.locale);
      this.out = null;
      kick();
    }

    applyTheme() {
      const th = this.opts.theme;
      const dark = th === 'dark' || (th !== 'light' && (this.media.matches || document.body.classList.contains('dark')));
      if (this.host.getAttribute('data-theme') !== (dark ? 'dark' : 'light')) this.host.setAttribute('data-theme', dark ? 'dark' : 'light');
    }

    /**
     * Follows the image: keeps the overlay beside it wherever it moves in the
     * DOM, switches discussion when its src or the page URL changes (default
     * urlId only), and lays the overlay over its content box and picture.
     * @returns {boolean} whether anything moved (then the next frame looks again)
     */
    sync() {
      const { img, host } = this;
      if (img.parentNode !== host.parentNode) {
        this.closeComposer(false);
        this.closeThread(false);
        if (img.isConnected) img.after(host);
        else host.remove();
      }
      this.applyTheme();
      this.mn?.sync();
      if (!this.opts.urlId && this.idKey !== (this.idKey = location.href.split('#')[0] + img.src)) {
        const id = defaultUrlId(img);
        if (id !== this.urlId) this.join(id);
      }
      if (!host.isConnected) return false;
      const g = measure(img);
      const { box, pic } = g;
      const hr = host.getBoundingClientRect();
      const s = host.style;
      const px = (/** @type {string} */ v) => parseFloat(s.getPropertyValue(v)) || 0;
      // Client px per px of the host's own coordinates (ancestor transforms, zoom).
      const kh = hr.width && px('--w') ? hr.width / px('--w') : g.k;
      const c = clipOf(img);
      const size = Math.max(24, Number(this.opts.markerSize) || 28);
      const prev = this.out;
      // Moves under 0.1 px are layout rounding: writing them would only start a see-saw.
      const near = (/** @type {number} */ a, /** @type {number} */ b) => Math.abs(a - b) < 0.1;
      /** @type {Record<string, number>} */
      const out = {
        '--l': px('--l') + (near(box.l, hr.left) ? 0 : (box.l - hr.left) / kh),
        '--t': px('--t') + (near(box.t, hr.top) ? 0 : (box.t - hr.top) / kh),
        '--w': box.w / kh,
        '--h': box.h / kh,
        '--s': size / kh,
      };
      const clip = [c.t - box.t, box.l + box.w - c.r, box.t + box.h - c.b, c.l - box.l].map((v) => Math.round(v / kh) + 'px').join(' ');
      const shown = box.w > 0 && box.h > 0 && g.seen;
      const key = [clip, shown, pic.l, pic.t, pic.w, pic.h, box.l, box.t].map((v) => (typeof v === 'number' ? v.toFixed(1) : v)).join();
      this.g = g;
      if (key === this.written && prev && Object.keys(out).every((k) => near(out[k], prev[k]))) return false;
      this.written = key;
      this.out = out;
      for (const [k, v] of Object.entries(out)) s.setProperty(k, v.toFixed(2) + 'px');
      s.setProperty('--c', `inset(${clip})`);
      s.setProperty('--v', shown ? 'visible' : 'hidden');
      s.setProperty('--k', String(1 / kh)); // the status line and errors keep their size under transforms and zoom
      Object.assign(this.pic.style, { left: (pic.l - box.l) / kh + 'px', top: (pic.t - box.t) / kh + 'px', width: pic.w / kh + 'px', height: pic.h / kh + 'px' });
      this.hintEl.hidden = box.w / kh < 480; // small images keep the status line short
      // A hidden image (closed lightbox, collapsed tab) leaves nothing floating in the top layer.
      if (!shown) {
        this.closeComposer(false);
        this.closeThread(false);
      }
      this.crop();
      this.placeCards();
      return true;
    }

    /** Hides the markers whose point is cropped away (object-fit: cover) and says how many. */
    crop() {
      const g = this.g;
      let n = 0;
      for (const [id, m] of this.markers) {
        const chat = this.room.chats.get(id);
        m.hidden = !!g && !!chat && !toClient(g, chat).shown;
        if (m.hidden) n++;
      }
      this.cropEl.textContent = n ? this.t.cropped(n) : '';
    }

    /** Puts the open composer and thread (in the top layer, so in client px) beside their point. */
    placeCards() {
      const g = this.g;
      const chat = this.thread && this.room.chats.get(this.thread.id);
      for (const [el, at, m] of /** @type {[HTMLElement | null | undefined, {x: number, y: number} | null | undefined, Element | undefined][]} */ ([
        [this.composer, this.draft, this.draftEl],
        [this.thread && this.thread.el, chat && (this.moving && this.moving.id === chat.id ? this.moving : chat), chat && this.markers.get(chat.id)],
      ])) {
        if (!el || !at || !g) continue;
        const p = toClient(g, at);
        const gap = Math.max(24, Number(this.opts.markerSize) || 28) / 2 + 6;
        const vw = document.documentElement.clientWidth;
        const w = el.offsetWidth;
        const ht = el.offsetHeight;
        // Kept inside the viewport while its point is; scrolled away with it otherwise.
        const off = p.x < 0 || p.y < 0 || p.x > vw || p.y > innerHeight;
        const fit = (/** @type {number} */ v, /** @type {number} */ max) => (off ? v : Math.max(8, Math.min(v, max - 8))) + 'px';
        // Ancestors' CSS zoom reaches the top layer too: undo it, so card px are client px.
        el.style.zoom = String(1 / (/** @type {any} */ (this.host).currentCSSZoom || 1));
        // Beside the marker's shape, if it has one, rather than over it.
        const s = m && m.previousElementSibling;
        const r = (s && s.classList.contains('sh') && s.firstElementChild?.getBoundingClientRect()) || { left: p.x, right: p.x };
        el.style.left = fit(at.x > 55 ? Math.min(p.x, r.left) - gap - w : Math.max(p.x, r.right) + gap, vw - w);
        el.style.top = fit(at.y > 60 ? p.y + 20 - ht : p.y - 20, innerHeight - ht);
      }
    }

    /** Loads lazy/regions.js once per page; failing, pins still work and shapes still show. */
    regions() {
      this.rgP = load('regions').then((m) => {
        if (!views.has(this)) return; // destroyed meanwhile
        this.rg = m.regions(this);
        this.render(null);
      }, console.warn);
    }

    me() {
      return this.conn.session?.user.id || '';
    }

    canWrite() {
      return !this.opts.readonly && !this.hide && !!this.conn.session?.canWrite;
    }

    /** @param {{user: User}} thing */
    mayManage(thing) {
      return this.canWrite() && (thing.user.id === this.me() || !!this.conn.session?.moderator);
    }

    /** @returns {State} */
    state() {
      const c = this.conn.state;
      if (c === 'live' && !this.room.ready) return this.room.everReady ? 'offline' : 'connecting';
      return c;
    }

    /** True when a mutation may be sent now; otherwise says why. */
    ready() {
      if (this.state() === 'live') return true;
      this.showError(this.t.notLive);
      return false;
    }

    /** @param {string} msg */
    showError(msg) {
      this.clearError();
      const close = h('button', { class: 'b x', type: 'button', 'aria-label': this.t.dismiss, text: '×' });
      const el = h('div', { class: 'err', 'data-imagechat-error': true, role: 'alert' }, [h('span', { text: msg }), close]);
      close.onclick = () => this.clearError();
      this.root.append(el);
      this.errTimer = setTimeout(() => this.clearError(), 8000);
    }

    clearError() {
      clearTimeout(this.errTimer);
      const el = this.root.querySelector('[data-imagechat-error]');
      if (el) el.remove();
    }

    /** @param {string} text */
    announce(text) {
      this.liveEl.textContent = '';
      setTimeout(() => (this.liveEl.textContent = text), 50);
    }

    /** @param {User} u */
    name(u) {
      return u.id === this.me() ? `${u.name} (${this.t.you})` : u.name;
    }

    /** Chats in display order, numbered from 1. */
    ordered() {
      return [...this.room.chats.values()];
    }

    // ------------------------------------------------------------ render

    /** @param {ChatEvent | null} ev an event of someone else that was just applied */
    render(ev) {
      const t = this.t;
      const state = this.state();
      const label = t[state];
      // A live region: touch it only when the state really changes.
      if (this.statusEl.textContent !== label) this.statusEl.replaceChildren(h('i', { class: 'dot', 'aria-hidden': 'true' }), label);
      this.statusEl.setAttribute('data-state', state);
      const v = this.room.viewers;
      this.viewersEl.textContent = v == null ? '' : String(v);
      this.viewersWrap.hidden = v == null;
      const writable = this.canWrite();
      this.hintEl.textContent = writable && state === 'live' && !this.room.chats.size ? t.hint : '';
      this.layer.classList.toggle('ro', !writable);
      // Readonly users are not told about placing markers.
      this.layer.setAttribute('aria-label', writable ? t.layer : t.layerRo);
      if (writable) this.layer.setAttribute('aria-describedby', 'ic-desc');
      else this.layer.removeAttribute('aria-describedby');
      for (const el of this.root.querySelectorAll('.card')) el.classList.toggle('off', state !== 'live');
      if (!writable && this.composer) this.closeComposer(false);
      if (writable && !this.rgP) this.regions();
      if (this.me() && !this.conn.session?.user.anonymous) this.mentions().catch(console.warn);
      this.pic.hidden = this.hide;
      this.toggle.title = t.hideAll;
      this.toggle.setAttribute('aria-pressed', String(this.hide));

      const chats = this.ordered();
      const seen = new Set();
      chats.forEach((chat, i) => {
        seen.add(chat.id);
        let m = this.markers.get(chat.id);
        if (!m) {
          m = this.makeMarker(chat.id);
          this.markers.set(chat.id, m);
          this.pic.append(m);
        }
        const mv = this.moving && this.moving.id === chat.id ? this.moving : chat;
        if (!m.classList.contains('drag')) {
          m.style.left = mv.x + '%';
          m.style.top = mv.y + '%';
        }
        const shape = mv.shape || chat.shape;
        const sh = this.shape(m, chat.id, shape);
        m.setAttribute('data-resolved', String(!!chat.resolved));
        m.classList.toggle('pending', !!chat.pending);
        m.textContent = chat.resolved ? '✓' : String(i + 1);
        const first = chat.comments[0];
        m.setAttribute('aria-label', t.marker(i + 1, this.name(chat.user), first ? first.text.slice(0, 80) : '', Math.max(0, chat.comments.length - 1), !!chat.resolved, sh && shape ? /** @type {Record<string, string>} */ (t.tools)[shape.type] : ''));
        m.setAttribute('aria-expanded', String(!!this.thread && this.thread.id === chat.id));
      });
      for (const [id, m] of this.markers) {
        if (!seen.has(id)) {
          this.shape(m);
          m.remove();
          this.markers.delete(id);
        }
      }
      this.shape(this.draftEl, '', this.draftShape);
      if (this.draft) {
        this.draftEl.hidden = false;
        this.draftEl.style.left = this.draft.x + '%';
        this.draftEl.style.top = this.draft.y + '%';
      } else this.draftEl.hidden = true;
      if (this.thread) this.renderThread();
      this.crop();
      this.placeCards();

      const count = chats.filter((c) => !c.pending).length;
      if (this.room.loaded && count !== this.count) {
        this.count = count;
        if (this.opts.onCountChange) {
          try {
            this.opts.onCountChange(count);
          } catch (e) {
            console.error(e);
          }
        }
      }
      if (ev) this.announceEvent(ev);
      if (this.rg) this.rg.sync();
      // A link to a chat of this image (#imagechat-{chatId}) opens its thread, once.
      if (linked && this.room.chats.has(linked)) {
        const id = linked;
        linked = '';
        this.img.scrollIntoView({ block: 'center' });
        this.openThread(id, true);
      }
    }

    /**
     * Draws a shape in percent of the picture just before its marker `m`, whose
     * state styles it; none (or an unknown type) removes it.
     * @param {Element} m @param {string} [id] the chat's ('' for the new chat) @param {Shape} [sh]
     */
    shape(m, id, sh) {
      let w = m.previousElementSibling;
      const tag = sh && SHAPES[sh.type];
      if (!w || !w.classList.contains('sh')) w = null;
      else if (w.firstElementChild?.localName !== tag) {
        w.remove();
        w = null;
      }
      if (!sh || !tag) return;
      if (!w) {
        // Polygon points are bare numbers: a 100 × 100 viewBox stretched over the picture (the stroke keeps its width).
        w = svg('svg', sh.points ? { class: 'sh', viewBox: '0 0 100 100', preserveAspectRatio: 'none' } : { class: 'sh' }, svg(tag, id ? { 'data-imagechat-shape': '', 'data-chat-id': id, 'data-shape-type': sh.type } : {}));
        m.before(w);
      }
      const g = /** @type {Element} */ (w.firstElementChild);
      for (const [k, v] of Object.entries(sh)) if (k !== 'type') g.setAttribute(k === 'w' ? 'width' : k === 'h' ? 'height' : k, Array.isArray(v) ? v.join(' ') : v + '%');
      return w;
    }

    /** @param {ChatEvent} ev */
    announceEvent(ev) {
      const c = ev.type === 'new-image-chat' && ev.chat ? ev.chat.comments[0] : ev.change && ev.change.op === 'comment-added' ? ev.change.comment : null;
      if (c) this.announce(this.t.said(c.user.name, c.text));
    }

    /** @param {string} id */
    makeMarker(id) {
      const m = h('button', { class: 'm', type: 'button', 'data-imagechat-marker': true, 'data-chat-id': id, 'aria-haspopup': 'dialog' });
      // Moving it (pointer and keys) comes with the lazy file, for users who may.
      m.addEventListener('click', (e) => {
        e.stopPropagation();
        const chat = this.room.chats.get(id);
        if (this.suppressClick || !chat || chat.pending) return;
        if (this.thread && this.thread.id === id) this.closeThread(true);
        else this.openThread(id, true);
      });
      return m;
    }

    /** Percent of the picture under a pointer, measured now. @param {MouseEvent} e @param {boolean} [loose] clamp instead of null off the picture */
    point(e, loose) {
      return toPct(measure(this.img), e.clientX, e.clientY, loose);
    }

    // ------------------------------------------------------------ input

    /** @param {MouseEvent} e */
    onLayerClick(e) {
      if (e.target !== this.layer || !this.canWrite()) return;
      if (this.thread) {
        this.closeThread(false);
        return;
      }
      if (this.rg && this.rg.click(e)) return;
      // Clicks on letterbox bars (object-fit: contain) do nothing.
      const at = this.point(e);
      if (!at || !this.ready()) return;
      // A click elsewhere while writing moves the new marker and keeps the text and images.
      const f = this.composer;
      const ta = f && f.querySelector('textarea');
      this.openComposer(at, ta ? ta.value : '', undefined, f);
    }

    /** @param {KeyboardEvent} e */
    onLayerKey(e) {
      if (e.target !== this.layer || (this.rg && this.rg.key(e))) return;
      const d = this.draft;
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        if (!this.canWrite()) return;
        if (!this.ready()) return;
        if (!d) {
          this.draft = { x: 50, y: 50 };
          this.render(null);
        } else this.openComposer(d);
      } else if (d && e.key.startsWith('Arrow')) {
        e.preventDefault();
        const step = e.shiftKey ? 10 : 1;
        if (e.key === 'ArrowLeft') d.x = clamp(d.x - step);
        if (e.key === 'ArrowRight') d.x = clamp(d.x + step);
        if (e.key === 'ArrowUp') d.y = clamp(d.y - step);
        if (e.key === 'ArrowDown') d.y = clamp(d.y + step);
        this.render(null);
      } else if (e.key === 'Escape' && d) {
        e.preventDefault();
        this.draft = null;
        this.render(null);
      }
    }

    /** Escape closes the innermost open thing. @param {KeyboardEvent} e */
    onRootKey(e) {
      if (e.key !== 'Escape' || e.defaultPrevented) return;
      const path = e.composedPath();
      if (this.composer && path.includes(this.composer)) {
        e.preventDefault();
        this.closeComposer(true);
      } else if (this.thread && path.includes(this.thread.el)) {
        e.preventDefault();
        this.closeThread(true);
      }
    }

    // ------------------------------------------------------------ composer

    /** @param {{x: number, y: number}} at @param {string} [text] @param {Shape} [shape] @param {HTMLElement | Attachment[] | null | false} [from] */
    openComposer(at, text, shape, from) {
      this.closeThread(false);
      this.closeComposer(false);
      // At most one new-chat composer on the page.
      if (composing) composing.closeComposer(false);
      composing = this;
      const t = this.t;
      this.draft = { x: at.x, y: at.y };
      this.draftShape = shape;
      const ta = h('textarea', { dir: 'auto', 'aria-label': t.newComment, placeholder: t.placeholder, maxlength: 2000, required: true });
      ta.value = text || '';
      const cancel = h('button', { class: 'b', type: 'button', text: t.cancel });
      const form = h('form', { class: 'card', 'data-imagechat-composer': true, 'aria-label': t.newComment }, [
        ta,
        h('div', { class: 'row' }, [cancel, h('button', { class: 'b p', type: 'submit', text: t.post })]),
      ]);
      form.noValidate = true;
      cancel.onclick = () => this.closeComposer(true);
      ta.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
          e.preventDefault();
          form.requestSubmit();
        }
      });
      form.onsubmit = (e) => {
        e.preventDefault();
        const text = ta.value.trim();
        if (!text) return this.showError(t.empty);
        if (!this.ready()) return;
        const at = /** @type {{x: number, y: number}} */ (this.draft);
        const sh = this.draftShape;
        const atts = this.atts(form);
        this.closeComposer(true);
        this.create(at, text, sh, atts, this.mn?.ids(form));
      };
      this.composer = form;
      this.pop(form);
      this.render(null);
      this.wire(form, from);
      ta.focus();
    }

    /** @param {boolean} refocus */
    closeComposer(refocus) {
      const had = !!this.composer || !!this.draft;
      if (this.composer) this.composer.remove();
      if (composing === this) composing = null;
      this.composer = null;
      this.draft = null;
      this.draftShape = undefined;
      if (had) this.render(null);
      if (refocus) this.layer.focus();
    }

    /** Shows a card in the browser's top layer, above anything of the page. @param {HTMLElement} el */
    pop(el) {
      el.popover = 'manual';
      this.root.append(el);
      // Without popover support (older browsers) the card stays a fixed box over the page.
      if (el.isConnected && el.showPopover) el.showPopover();
    }

    /** Creates a chat, showing its marker before the server answers. @param {{x: number, y: number}} at @param {string} text @param {Shape} [shape] @param {Attachment[]} [atts] @param {string[]} [mentions] ids */
    async create(at, text, shape, atts = [], mentions) {
      const s = this.conn.session;
      if (!s) return;
      const tmp = `pending-${uuid()}`;
      const now = Date.now();
      const room = this.room;
      const body = { urlId: this.urlId, x: at.x, y: at.y, text, shape, attachments: atts.map((a) => a.id), mentions, imageUrl: web(this.img.currentSrc || this.img.src), pageUrl: web(location.href.split('#')[0]) };
      room.putChat({ id: tmp, x: at.x, y: at.y, shape, resolved: false, user: s.user, createdAt: now, comments: [{ id: tmp, user: s.user, text, createdAt: now, attachments: atts }], pending: true });
      room.notify();
      try {
        await this.conn.mutate('POST', '/api/v1/chats', body, (d) => room.swapChat(tmp, d.chat), tmp);
      } catch (e) {
        room.chats.delete(tmp);
        room.notify();
        if (this.canWrite() && !this.composer && !this.thread) this.openComposer(at, text, shape, atts);
        this.showError(describe(e, this.t));
        return;
      }
      room.chats.delete(tmp); // in case the echo placed the real chat first
      room.notify();
    }

    /** Runs a mutation and reports failure to the user. @param {() => Promise<unknown>} fn */
    async run(fn) {
      if (!this.ready()) return false;
      try {
        await fn();
        this.room.notify();
        return true;
      } catch (e) {
        this.room.notify();
        this.showError(describe(e, this.t));
        return false;
      }
    }

    // ------------------------------------------------------------ thread

    /** @param {string} id @param {boolean} focus */
    openThread(id, focus) {
      const chat = this.room.chats.get(id);
      if (!chat) return;
      const t = this.t;
      const old = this.thread && this.thread.id === id && this.thread.form;
      const keepText = old ? old.querySelector('textarea')?.value || '' : '';
      this.closeComposer(false);
      if (this.thread) this.thread.el.remove();
      const head = h('div');
      const list = h('ul', { class: 'list' });
      const el = h('div', { class: 'card thread', role: 'dialog', 'data-imagechat-thread': true, 'data-chat-id': id }, [head, list]);
      /** @type {HTMLFormElement | null} */
      let form = null;
      if (this.canWrite()) {
        const ta = h('textarea', { dir: 'auto', 'aria-label': t.reply, placeholder: t.placeholderReply, maxlength: 2000 });
        ta.value = keepText;
        const send = h('button', { class: 'b p', type: 'submit', text: t.reply });
        form = h('form', { 'data-imagechat-composer': true, 'aria-label': t.reply }, [ta, h('div', { class: 'row' }, [send])]);
        form.noValidate = true;
        const f = form;
        ta.addEventListener('keydown', (e) => {
          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            f.requestSubmit();
          }
        });
        form.onsubmit = async (e) => {
          e.preventDefault();
          const text = ta.value.trim();
          if (!text) return this.showError(t.empty);
          // Not `disabled`: that would drop keyboard focus from the button.
          if (send.getAttribute('aria-disabled') === 'true') return;
          send.setAttribute('aria-disabled', 'true');
          const room = this.room;
          const body = { text, attachments: this.atts(f).map((a) => a.id), mentions: this.mn?.ids(f) };
          const ok = await this.run(() => this.conn.mutate('POST', `/api/v1/chats/${encodeURIComponent(id)}/comments`, body, (d) => room.putComment(id, d.comment)));
          send.removeAttribute('aria-disabled');
          if (ok) {
            ta.value = '';
            this.att?.clear(f);
          }
        };
        el.append(form);
        this.wire(form, old);
      }
      this.thread = { id, el, list, head, form, items: new Map(), confirm: false };
      this.pop(el);
      this.render(null);
      if (focus) {
        const target = form ? form.querySelector('textarea') : head.querySelector('button');
        if (target) target.focus();
      }
    }

    /** @param {boolean} refocus return focus to the thread's marker */
    closeThread(refocus) {
      const th = this.thread;
      if (!th) return;
      th.el.remove();
      this.thread = null;
      this.render(null);
      const m = this.markers.get(th.id);
      if (refocus) (m || this.layer).focus();
    }

    renderThread() {
      const th = /** @type {NonNullable<View['thread']>} */ (this.thread);
      const t = this.t;
      const chats = this.ordered();
      const chat = this.room.chats.get(th.id);
      if (!chat) {
        const hadFocus = th.el.contains(this.root.activeElement);
        this.thread = null;
        th.el.remove();
        this.announce(t.gone);
        if (hadFocus) this.layer.focus();
        return;
      }
      th.el.setAttribute('aria-label', t.thread(chats.indexOf(chat) + 1));
      const title = h('h2', { text: t.thread(chats.indexOf(chat) + 1) + (chat.resolved ? ` · ${t.resolved}` : '') });
      const close = h('button', { class: 'b x', type: 'button', 'aria-label': t.close, text: '×' });
      close.onclick = () => this.closeThread(true);
      const focused = this.root.activeElement;
      const focusAction = focused instanceof HTMLElement && th.head.contains(focused) ? focused.getAttribute('data-imagechat-action') || 'close' : null;
      th.head.replaceChildren(h('div', { class: 'head' }, [title, close]));
      // Resolve and delete (and its confirmation) come with the lazy file, for users who may.
      this.mn?.head(chat, th, close);
      if (this.rg) this.rg.head(chat, th, close);
      if (focusAction && !th.confirm) {
        const again = th.head.querySelector(focusAction === 'close' ? '.x' : `[data-imagechat-action=${focusAction}]`);
        if (again instanceof HTMLElement) again.focus();
      }

      const ids = new Set(chat.comments.map((c) => c.id));
      for (const [id, li] of th.items) {
        if (!ids.has(id)) {
          li.remove();
          th.items.delete(id);
        }
      }
      chat.comments.forEach((c, i) => {
        let li = th.items.get(c.id);
        if (!li) {
          li = h('li', { class: 'c', 'data-imagechat-comment': true, 'data-comment-id': c.id });
          th.items.set(c.id, li);
        }
        if (th.list.children[i] !== li) th.list.insertBefore(li, th.list.children[i] || null);
        // Rebuild only what changed, so focus and half-typed edits survive live updates.
        const sig = JSON.stringify([c.text, c.editedAt, c.attachments, this.name(c.user), this.mayManage(c), !!chat.pending, !!this.rg]);
        if (li.dataset.sig === sig || li.querySelector('textarea, .confirm')) return;
        const act = this.root.activeElement;
        const focusAction = act instanceof HTMLElement && li.contains(act) ? act.getAttribute('data-imagechat-action') : null;
        this.fillComment(li, chat, c);
        li.dataset.sig = sig;
        const again = focusAction && li.querySelector(`[data-imagechat-action=${focusAction}]`);
        if (again instanceof HTMLElement) again.focus();
      });
    }

    /** Shows a comment (its text, never HTML); edit and delete come with the lazy file, for users who may. @param {HTMLLIElement} li @param {Chat} chat @param {Comment} c */
    fillComment(li, chat, c) {
      delete li.dataset.sig;
      const time = h('time', { datetime: new Date(c.createdAt).toISOString(), title: new Date(c.createdAt).toLocaleString(pickLocale(this.opts.locale)), text: this.ago(c.createdAt) });
      const meta = h('div', { class: 'meta' }, [h('b', { text: this.name(c.user) }), time, c.editedAt ? h('span', { text: `(${this.t.edited})` }) : null]);
      const p = h('p', { class: 'txt', dir: 'auto', text: c.text });
      if (c.mentions) this.mentions().then((m) => m.mark(p, c.mentions), console.warn);
      li.replaceChildren(meta, p, this.thumbs(c.attachments || []));
      if (this.rg && !chat.pending && this.mayManage(c)) this.rg.comment(li, chat, c);
    }

    /** Thumbnails, sized before they load; the viewer is lazy (a new tab without it). @param {Attachment[]} list */
    thumbs(list) {
      return h(
        'div',
        {},
        list.map((a, i) => {
          const k = Math.min(1, 96 / a.width, 72 / a.height);
          const src = new URL(a.url, this.conn.server).href; // the server may name it by its path
          const b = h('button', { class: 'at', type: 'button', 'data-imagechat-attachment': a.id }, [h('img', { src, alt: this.t.image(i + 1, list.length), width: Math.round(a.width * k), height: Math.round(a.height * k) })]);
          b.onclick = () => this.attachments().then((m) => m.show(b, list, i), () => open(src));
          return b;
        }),
      );
    }

    /** The images attached in a composer. @param {HTMLElement} f @returns {Attachment[]} */
    atts(f) {
      return this.att ? this.att.list(f) : [];
    }

    /** lazy/attachments.js, on first use. @returns {Promise<any>} */
    attachments() {
      return (this.attP = this.attP || load('attachments').then((m) => (this.att = m.attachments(this))));
    }

    /** lazy/mentions.js (`@`, notifications, follow), on first use. @returns {Promise<any>} */
    mentions() {
      return (this.mnP = this.mnP || load('mentions').then((m) => ((this.mn = m.mentions(this)), this.render(null), this.mn)));
    }

    /** Images and `@` in a composer, taking over those of `from`; `u`: the users an edited comment mentions. @param {HTMLElement} form @param {HTMLElement | Attachment[] | null | false} [from] @param {User[]} [u] */
    wire(form, from, u) {
      this.attachments().then((a) => form.isConnected && a.composer(form, from), console.warn);
      this.mentions().then((m) => form.isConnected && m.composer(form, from, u), console.warn);
    }

    /** @param {number} ms */
    ago(ms) {
      const rtf = new Intl.RelativeTimeFormat(pickLocale(this.opts.locale), { numeric: 'auto', style: 'short' });
      const s = Math.round((ms - Date.now()) / 1000);
      if (s > -45) return rtf.format(0, 'second');
      if (s > -3600) return rtf.format(Math.round(s / 60), 'minute');
      if (s > -86400) return rtf.format(Math.round(s / 3600), 'hour');
      return rtf.format(Math.round(s / 86400), 'day');
    }
  }

  // ---------------------------------------------------------------- public API

  /**
   * Attaches a discussion to an image (or to the first image inside an element).
   * @param {Element} el
   * @param {Options} opts
   */
  function attach(el, opts) {
    const img = el instanceof HTMLImageElement ? el : el && el.querySelector('img');
    if (!img) throw new Error('ImageChat.attach: no <img> found');
    if (!opts || !opts.tenantId) throw new Error('ImageChat.attach: tenantId is required');
    let view = attached.get(img);
    if (!view) {
      view = new View(img, opts);
      attached.set(img, view);
    }
    return view.handle;
  }

  function autoAttach() {
    for (const img of document.querySelectorAll('img[data-imagechat-tenant]')) {
      const i = /** @type {HTMLImageElement} */ (img);
      if (!attached.has(i) && !destroyed.has(i) && i.dataset.imagechatTenant) attach(i, { tenantId: i.dataset.imagechatTenant, urlId: i.dataset.imagechatUrlId || undefined });
    }
  }
  // DOM and style changes anywhere may move an image (layout shifts) or add
  // one to attach (single-page apps): look again in the next frame.
  new MutationObserver(kick).observe(document.documentElement, { childList: true, subtree: true, attributes: true, characterData: true });

  /** Reads the chat a link names in the page's fragment, on load and on every change of it. */
  const follow = () => {
    const m = /^#imagechat-(.+)/.exec(location.hash);
    try {
      linked = m ? decodeURIComponent(m[1]) : '';
    } catch (_) {
      linked = '';
    }
    for (const v of views) v.render(null);
  };
  addEventListener('hashchange', follow);
  follow();

  /** @type {any} */ (window).ImageChat = { attach, version: '1' };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', autoAttach);
  else autoAttach();
})();
