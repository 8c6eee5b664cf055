// imagechat for writers: the drawing tool bar, drawing shapes with the
// mouse, touch and keyboard, editing a drawn shape (protocol §10), moving a
// pin, and the actions of a thread (resolve, delete, edit and delete a
// comment).
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// A module imagechat.js imports on demand from /imagechat/regions.js, once
// per page, for a user who may write: visitors who only read never load it.
// Everything a reader sees stays in imagechat.js: markers, the shapes of
// every chat, threads, live updates. A page whose policy refuses this file
// still shows all of it, and its writers can still place pins and reply;
// only what this file adds is missing. Like imagechat.js it is plain
// JavaScript checked by `tsc --checkJs --strict`, and it needs no inline
// style: its CSS is a constructable stylesheet adopted by the view's shadow
// root, positions are CSSOM writes.
//
// It talks to imagechat.js only through the `View` described below, and
// changes the model only through the view's own calls (`openComposer`, then
// the view's create; `run` with `conn.mutate` for the rest, the answer
// applied through the room).
//
// Where the marker of a shape sits (the chat's x, y): the top-left corner of
// a rectangle, the upper-left point of an ellipse's outline (at 45°), the
// first point of a polygon and the tail of an arrow, whose head stays free
// to point at what the comment is about.
//
// Editing: a chat's shape is selected while its thread is open or its
// marker (or one of its handles) has focus, if the user may move the chat.
// A selected shape shows a handle on each of its points (the corners of a
// rectangle or of an ellipse's bounds, a polygon's points, an arrow's two
// ends), right after its marker in the tab order; dragging a handle moves
// that point, dragging the shape moves all of it. The marker itself is the
// handle of the point it sits on (dragging it moves that point; an
// ellipse's marker moves the whole ellipse); the handle under it is still
// there for the keyboard. Keys: arrows move the focused handle's point, or
// on the marker the whole shape (Shift: 10 %), Enter saves, Escape drops.

import { h, button, icon } from './dom.js';

/**
 * @typedef {{x: number, y: number}} Pt a point in percent of the picture
 * @typedef {{type: 'rect', x: number, y: number, w: number, h: number}
 *   | {type: 'ellipse', cx: number, cy: number, rx: number, ry: number}
 *   | {type: 'polygon', points: number[][]}
 *   | {type: 'arrow', x1: number, y1: number, x2: number, y2: number}} Shape
 * @typedef {Shape['type']} Kind
 * @typedef {'pin' | Kind} Tool
 * @typedef {{id: string, url: string, contentType: string, width: number, height: number}} Attachment
 * @typedef {{id: string, text: string, user: {id: string}, attachments?: Attachment[], mentions?: {id: string, name: string}[]}} Comment
 * @typedef {{id: string, x: number, y: number, user: {id: string}, shape?: Shape, pending?: boolean, resolved?: boolean, comments: Comment[]}} Chat
 * @typedef {{id: string, head: HTMLElement, confirm: boolean}} Thread an open thread: its head, and whether deleting it asks to confirm
 * @typedef {{id: string, x: number, y: number, shape?: Shape}} Moving
 * @typedef {{pic: {l: number, t: number, w: number, h: number}}} Geo
 */

/**
 * The parts of imagechat.js's View this file uses: its contract with the core.
 * @typedef {object} View
 * @property {HTMLElement} host the element whose shadow root holds the widget (`lang` is its locale)
 * @property {ShadowRoot} root
 * @property {HTMLElement} layer the focusable layer over the image
 * @property {HTMLElement} pic the picture's box inside the layer: markers and shapes, in percent
 * @property {HTMLElement} draftEl the new chat's marker
 * @property {HTMLElement} toggle the hide/show button, beside which the tool bar goes
 * @property {HTMLElement} descEl the layer's description (what the keys do)
 * @property {HTMLElement | null} composer the new-chat composer, if open
 * @property {Thread | null} thread the open thread
 * @property {Map<string, HTMLButtonElement>} markers
 * @property {{chats: Map<string, Chat>, putChat: (chat: Chat) => void, putComment: (chatId: string, c: Comment) => void, dropComment: (chatId: string, commentId: string) => void}} room the model of the image
 * @property {{mutate: (method: string, path: string, body: Record<string, unknown> | undefined, apply: (data: any) => void) => Promise<unknown>}} conn sends one change (applied once, by its answer or its echo)
 * @property {(fn: () => Promise<unknown>) => Promise<boolean>} run runs a change if live, re-renders, shows an error if it fails
 * @property {{placing: string, tools: Record<string, string>, cancel: string, empty: string}} t the core's strings
 * @property {Tool | string} tool the chosen tool ('pin' is the core's own)
 * @property {boolean} hide markers and shapes hidden by the toggle
 * @property {{x: number, y: number} | null} draft the point of a pin being placed by keyboard
 * @property {Shape | undefined} draftShape the new chat's shape, drawn by the core before its marker
 * @property {Moving | null} moving a marker and shape shown somewhere else than stored (being edited)
 * @property {Geo | null} g the last measurement of the picture, in client px
 * @property {boolean} suppressClick set for the click that ends a drag of a marker (it opens no thread)
 * @property {(e: MouseEvent, loose?: boolean) => Pt | null} point percent of the picture under a pointer (clamped when loose)
 * @property {() => boolean} canWrite
 * @property {() => boolean} ready whether a change may be sent now (else it says why)
 * @property {(thing: {user: {id: string}}) => boolean} mayManage whether the user may move, edit or delete it
 * @property {() => string} state the room's state: 'live', 'connecting' or 'offline'
 * @property {(at: Pt, text?: string, shape?: Shape) => void} openComposer
 * @property {(m: Element, id?: string, sh?: Shape) => Element | undefined} shape draws a shape before a marker
 * @property {(ev: null) => void} render
 * @property {() => void} renderThread
 * @property {(li: HTMLLIElement, chat: Chat, c: Comment) => void} fillComment shows a comment as it is stored (and calls `comment` here)
 * @property {(msg: string) => void} showError
 * @property {(text: string) => void} announce says something through the polite live region
 * @property {(form: HTMLElement, from?: HTMLElement | Attachment[] | null, mentions?: {id: string, name: string}[]) => void} wire lets a composer attach images (lazy/attachments.js), starting with `from`'s, and mention people (lazy/mentions.js), starting with `mentions`
 * @property {{ids: (form: HTMLElement) => string[] | undefined} | null} mn lazy/mentions.js's part of the view, once loaded: the users a composer mentions
 * @property {(form: HTMLElement) => Attachment[]} atts the images attached in a composer so far
 */

const STRINGS = {
  en: {
    pin: 'Pin',
    tools: 'Drawing tools',
    help: {
      drag: (/** @type {string} */ what) =>
        `${what}: drag on the image. Keyboard: Enter starts at the centre, arrow keys move the point (Shift for bigger steps), Space fixes it and goes to the next, Enter writes the comment, Escape cancels.`,
      polygon:
        'Polygon: click its points, then click the first point, double-click or press Enter to close it. Keyboard: Enter starts at the centre, arrow keys move the point (Shift for bigger steps), Space fixes it and adds the next, Enter closes the polygon and writes the comment, Escape cancels.',
    },
    point: (/** @type {number} */ n, /** @type {Pt} */ p) => `Point ${n} at ${Math.round(p.x)} %, ${Math.round(p.y)} %`,
    small: 'Too small to be a shape: move the point further.',
    corner: (/** @type {number} */ n) => `Corner ${n}`,
    vertex: (/** @type {number} */ n) => `Point ${n}`,
    tail: 'Start of the arrow',
    head: 'Head of the arrow',
    of: (/** @type {string} */ handle, /** @type {string} */ shape) => `${handle} of the ${shape.toLowerCase()}`,
    edit: 'Drag it, or use the arrow keys (Shift for bigger steps); Enter saves, Escape cancels.',
    moveHint: 'Arrow keys move this marker, Enter saves.',
    editText: 'Edit',
    save: 'Save',
    del: 'Delete',
    delChat: 'Delete thread',
    confirmDel: 'Delete for everyone?',
    resolve: 'Resolve',
    reopen: 'Reopen',
  },
  ja: {
    pin: 'ピン',
    tools: '描画ツール',
    help: {
      drag: (/** @type {string} */ what) =>
        `${what}: 画像上をドラッグします。キーボード: Enter で中央から開始、矢印キーで点を移動（Shift で大きく）、Space で確定して次の点へ、Enter でコメントを書き、Escape で取り消します。`,
      polygon:
        '多角形: 点を順にクリックし、最初の点をクリックするかダブルクリックか Enter で閉じます。キーボード: Enter で中央から開始、矢印キーで点を移動（Shift で大きく）、Space で確定して次の点を追加、Enter で閉じてコメントを書き、Escape で取り消します。',
    },
    point: (/** @type {number} */ n, /** @type {Pt} */ p) => `点 ${n}: ${Math.round(p.x)} %, ${Math.round(p.y)} %`,
    small: '図形として小さすぎます。点をもっと離してください。',
    corner: (/** @type {number} */ n) => `角 ${n}`,
    vertex: (/** @type {number} */ n) => `点 ${n}`,
    tail: '矢印の始点',
    head: '矢印の先端',
    of: (/** @type {string} */ handle, /** @type {string} */ shape) => `${shape}の${handle}`,
    edit: 'ドラッグするか矢印キーで動かします（Shift で大きく）。Enter で保存、Escape で取り消します。',
    moveHint: '矢印キーでこのマーカーを移動し、Enter で保存します。',
    editText: '編集',
    save: '保存',
    del: '削除',
    delChat: 'スレッドを削除',
    confirmDel: '全員から削除しますか？',
    resolve: '解決',
    reopen: '再開',
  },
};

/** Most points of a polygon (protocol §10). */
const MAX_POINTS = 64;

/** @type {Tool[]} */
const TOOLS = ['pin', 'rect', 'ellipse', 'polygon', 'arrow'];

/** Tool bar icons: stroked paths on a 20 × 20 grid. */
const ICONS = {
  pin: 'M10 18s-6-5.6-6-10a6 6 0 0 1 12 0c0 4.4-6 10-6 10zm0-8a2 2 0 1 0 0-4 2 2 0 0 0 0 4z',
  rect: 'M3 5h14v10H3z',
  ellipse: 'M2 10a8 5.5 0 1 0 16 0 8 5.5 0 1 0-16 0',
  polygon: 'M10 2.5 17.5 8l-3 9h-9l-3-9z',
  arrow: 'M4 16 16 4m-7 0h7v7',
};

const CSS = `
.rt{position:absolute;right:38px;top:6px;display:flex;gap:2px;padding:2px;border-radius:8px;background:#111827d0;zoom:var(--k);visibility:var(--v)}
.rt button{display:grid;place-items:center;width:28px;height:28px;padding:4px;margin:0;border:0;border-radius:6px;background:none;color:#fff;cursor:pointer}
.rt [aria-pressed=true]{background:var(--acc)}
.rt button:focus-visible{outline:2px solid #fff;outline-offset:-2px}
.rt path,.tg path{stroke-linejoin:round;stroke-linecap:round}
.rt path{fill:none;stroke:currentColor;stroke-width:1.6}
.layer.dt{cursor:crosshair;touch-action:none}
.hd{position:absolute;z-index:2;width:calc(var(--s) - 4px);height:calc(var(--s) - 4px);margin:calc(var(--s) / -2 + 2px) 0 0 calc(var(--s) / -2 + 2px);padding:0;border:0;border-radius:50%;background:none;cursor:grab;pointer-events:auto;touch-action:none}
.hd::before{content:'';position:absolute;inset:22%;border-radius:50%;background:#fff;border:2px solid var(--acc);box-shadow:0 1px 3px rgba(0,0,0,.45)}
.hd:hover::before,.hd:focus::before{background:var(--acc);border-color:#fff}
.hd:focus-visible{outline:3px solid var(--fg);outline-offset:0}
.hd.under{z-index:0}.hd.under:focus-visible{z-index:3}
.sh.ed>*{pointer-events:visiblePainted;cursor:move;touch-action:none;stroke-width:4px;fill-opacity:.25}
.pt{position:absolute;width:10px;height:10px;margin:-5px 0 0 -5px;border-radius:50%;background:#fff;border:2px solid var(--acc);pointer-events:none;z-index:2}
.pt.first{width:18px;height:18px;margin:-9px 0 0 -9px}
.pt.cur{width:16px;height:16px;margin:-8px 0 0 -8px;background:var(--acc);box-shadow:0 0 0 2px #fff}
.m.drag{transition:none;cursor:grabbing;transform:scale(1.3)}
.acts{display:flex;gap:4px;margin-top:2px}
button.l{background:none;border:0;color:var(--mut);padding:2px 6px;min-height:24px;text-decoration:underline}
.off [data-imagechat-action]:not([data-imagechat-action=edit]){opacity:.55}
.confirm{display:flex;gap:6px;align-items:center;flex-wrap:wrap;background:var(--soft);border-radius:6px;padding:6px;margin:4px 0}
.confirm span{flex:1;font-size:13px}
@media (forced-colors:active){.hd::before,.pt{background:Canvas;border-color:CanvasText}.pt.cur,.hd:focus::before{background:Highlight}[aria-pressed=true]{outline:2px solid Highlight}}
@media (prefers-reduced-motion:reduce){*{transition:none!important}}
`;

/** @type {CSSStyleSheet | undefined} */
let sheet;

// ---------------------------------------------------------------- geometry

/** Percent kept in 0..100, with 2 decimals (the marker's precision). @param {number} v */
const r2 = (v) => Math.round(Math.min(100, Math.max(0, v)) * 100) / 100;
/** Percent with at most 3 decimals, as the server stores shapes. @param {number} v */
const r3 = (v) => Math.round(v * 1000) / 1000;

/**
 * The shape of a kind through its defining points: two opposite corners of a
 * rectangle or of an ellipse's bounding box, an arrow's tail and head, a
 * polygon's points in order.
 * @param {Kind} type @param {Pt[]} p @returns {Shape}
 */
function make(type, p) {
  const [a, b = a] = p;
  const [l, t, w, h] = [Math.min(a.x, b.x), Math.min(a.y, b.y), Math.abs(a.x - b.x), Math.abs(a.y - b.y)];
  if (type === 'rect') return { type, x: r3(l), y: r3(t), w: r3(w), h: r3(h) };
  if (type === 'ellipse') return { type, cx: r3(l + w / 2), cy: r3(t + h / 2), rx: r3(w / 2), ry: r3(h / 2) };
  if (type === 'arrow') return { type, x1: r3(a.x), y1: r3(a.y), x2: r3(b.x), y2: r3(b.y) };
  return { type: 'polygon', points: p.map((q) => [r3(q.x), r3(q.y)]) };
}

/**
 * The points a user can take hold of: the corners of a rectangle or of an
 * ellipse's bounding box (clockwise from the top left), a polygon's points,
 * an arrow's tail and head.
 * @param {Shape} s @returns {Pt[]}
 */
function grips(s) {
  if (s.type === 'polygon') return s.points.map(([x, y]) => ({ x, y }));
  if (s.type === 'arrow') return [{ x: s.x1, y: s.y1 }, { x: s.x2, y: s.y2 }];
  const [l, t, w, h] = s.type === 'rect' ? [s.x, s.y, s.w, s.h] : [s.cx - s.rx, s.cy - s.ry, 2 * s.rx, 2 * s.ry];
  return [{ x: l, y: t }, { x: l + w, y: t }, { x: l + w, y: t + h }, { x: l, y: t + h }];
}

/** The shape with grip `i` at `p` (a corner moves, its opposite stays). @param {Shape} s @param {number} i @param {Pt} p */
function regrip(s, i, p) {
  const g = grips(s);
  if (s.type === 'rect' || s.type === 'ellipse') return make(s.type, [p, g[(i + 2) % 4]]);
  g[i] = p;
  return make(s.type, g);
}

/** The shape moved by (dx, dy), as far as it stays inside the picture. @param {Shape} s @param {number} dx @param {number} dy */
function shift(s, dx, dy) {
  const g = grips(s);
  const xs = g.map((p) => p.x);
  const ys = g.map((p) => p.y);
  dx = Math.min(100 - Math.max(...xs), Math.max(-Math.min(...xs), dx));
  dy = Math.min(100 - Math.max(...ys), Math.max(-Math.min(...ys), dy));
  const moved = g.map((p) => ({ x: p.x + dx, y: p.y + dy }));
  return make(s.type, s.type === 'rect' || s.type === 'ellipse' ? [moved[0], moved[2]] : moved);
}

/** Where the chat's marker sits on its shape (see the top of this file). @param {Shape} s @returns {Pt} */
function anchor(s) {
  if (s.type === 'rect') return { x: r2(s.x), y: r2(s.y) };
  if (s.type === 'ellipse') return { x: r2(s.cx - s.rx * Math.SQRT1_2), y: r2(s.cy - s.ry * Math.SQRT1_2) };
  if (s.type === 'polygon') return { x: r2(s.points[0][0]), y: r2(s.points[0][1]) };
  return { x: r2(s.x1), y: r2(s.y1) };
}

/** Whether a shape is big enough to mean something (and valid for the server). @param {Shape} s */
function sizable(s) {
  if (s.type === 'rect') return s.w >= 0.5 && s.h >= 0.5;
  if (s.type === 'ellipse') return s.rx >= 0.25 && s.ry >= 0.25;
  if (s.type === 'arrow') return Math.hypot(s.x2 - s.x1, s.y2 - s.y1) >= 1;
  return s.points.length >= 3 && s.points.length <= MAX_POINTS;
}

/** A polygon's points without repeats (a double click adds its point twice). @param {Pt[]} pts */
const distinct = (pts) => pts.filter((p, i) => !i || Math.hypot(p.x - pts[i - 1].x, p.y - pts[i - 1].y) >= 0.5);

// ---------------------------------------------------------------- DOM




/** @param {Element} el @param {Pt} p */
function place(el, p) {
  const s = /** @type {HTMLElement} */ (el).style;
  s.left = p.x + '%';
  s.top = p.y + '%';
}

// ---------------------------------------------------------------- tools

/**
 * A shape being drawn. `pts` are its points so far, the last one moving;
 * `kb` while the keyboard moves it; `pid` is the pointer dragging it (rect,
 * ellipse, arrow) and `from` where that drag began (client px); `hover`
 * where the mouse is while a polygon is clicked together; `prev` the shape
 * of an open composer it may replace.
 * @typedef {{pts: Pt[], kb?: boolean, pid?: number, from?: Pt, hover?: Pt | null, prev?: Shape}} Drawing
 */

/**
 * A drag of a shape being edited: of grip `i`, or of the whole shape
 * (`i` = -1) from `start`; `marker` when it was taken by its marker. `live`
 * once it moved far enough to be a drag.
 * @typedef {{chat: Chat, base: Shape, i: number, pid: number, start: Pt, from: Pt, live: boolean, marker: boolean}} Drag
 */

class Regions {
  /** @param {View} view */
  constructor(view) {
    this.v = view;
    /** @type {Drawing | null} */
    this.draw = null;
    /** @type {Drag | null} */
    this.drag = null;
    /** The chat whose marker or handles have focus (its shape shows handles while the thread is closed). @type {string | null} */
    this.focusId = null;
    /** @type {HTMLButtonElement[]} */
    this.grips = [];
    /** The chat the grips are for. @type {string | null} */
    this.gripsFor = null;
    /** @type {HTMLElement[]} */
    this.dots = [];
    /** Markers that listen for moves. @type {WeakSet<Element>} */
    this.wired = new WeakSet();

    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
    }
    view.root.adoptedStyleSheets = [...view.root.adoptedStyleSheets, sheet];
    this.bar = h('div', { class: 'rt', role: 'group' });
    for (const tool of TOOLS) {
      const b = h('button', { type: 'button', 'data-imagechat-tool': tool, 'aria-pressed': 'false' });
      b.append(icon(ICONS[tool]));
      b.addEventListener('click', (e) => {
        this.setTool(tool);
        // Chosen from the keyboard: the layer, where the keys draw, takes focus and says how.
        if (!e.detail) view.layer.focus();
      });
      this.bar.append(b);
    }
    view.toggle.before(this.bar);
    this.hint = h('div', { class: 'sr', id: 'ic-hd' });
    view.root.append(this.hint);

    const layer = view.layer;
    layer.addEventListener('pointerdown', (e) => this.down(e));
    layer.addEventListener('pointermove', (e) => this.over(e));
    layer.addEventListener('pointerup', (e) => this.up(e));
    layer.addEventListener('pointercancel', (e) => this.up(e));
    layer.addEventListener('pointerleave', () => this.draw && this.draw.hover && ((this.draw.hover = null), this.paint()));
    layer.addEventListener('dblclick', () => view.tool === 'polygon' && this.draw && this.finish());
    view.root.addEventListener('focusin', (e) => {
      const el = /** @type {HTMLElement} */ (e.composedPath()[0]);
      const id = el.getAttribute('data-chat-id') || (el.classList.contains('hd') && this.gripsFor);
      if (id || el === layer) {
        this.focusId = id || null;
        this.sync();
      }
    });
  }

  /** The strings of the view's locale. */
  get s() {
    return STRINGS[this.v.host.lang === 'ja' ? 'ja' : 'en'];
  }

  /** @param {Tool} tool */
  setTool(tool) {
    const v = this.v;
    this.cancel();
    v.tool = tool;
    if (!v.composer) v.draft = null; // a pin being placed by keyboard
    v.render(null);
  }

  // ------------------------------------------------------------ drawing

  /** @param {Pt[]} pts @param {Partial<Drawing>} [more] */
  begin(pts, more) {
    this.draw = Object.assign({ pts, prev: this.v.draftShape }, more);
    this.paint();
  }

  /** Shows the shape being drawn (the core draws it before the new chat's marker) and its points. */
  paint() {
    const v = this.v;
    const d = this.draw;
    const pts = d ? (d.hover ? [...d.pts, d.hover] : d.pts) : [];
    v.draftShape = d ? make(/** @type {Kind} */ (v.tool), pts) : v.draftShape;
    v.shape(v.draftEl, '', v.draftShape);
    // Dots on the points: the moving one (keyboard) stands out, a polygon's first can be clicked to close it.
    const keyed = d && d.kb;
    const shown = d && (v.tool === 'polygon' || keyed) ? d.pts : [];
    while (this.dots.length > shown.length) /** @type {HTMLElement} */ (this.dots.pop()).remove();
    shown.forEach((p, i) => {
      const dot = this.dots[i] || (this.dots[i] = h('span', { class: 'pt', 'aria-hidden': 'true' }));
      if (!dot.isConnected) v.pic.append(dot);
      dot.classList.toggle('cur', !!keyed && i === shown.length - 1);
      dot.classList.toggle('first', !keyed && !i && v.tool === 'polygon');
      place(dot, p);
    });
  }

  /** Adds the next point 10 % right of and below the last one (kept inside); a polygon's last possible point finishes it. */
  next() {
    const d = /** @type {Drawing} */ (this.draw);
    if (d.pts.length === MAX_POINTS) return this.finish();
    const last = d.pts[d.pts.length - 1];
    d.pts.push({ x: r2(last.x + 10), y: r2(last.y + 10) });
    this.paint();
    this.v.announce(this.s.point(d.pts.length, d.pts[d.pts.length - 1]));
  }

  /** The shape is done: the composer opens for it (keeping text already typed in an open one). */
  finish() {
    const v = this.v;
    const d = this.draw;
    if (!d) return;
    const s = make(/** @type {Kind} */ (v.tool), v.tool === 'polygon' ? distinct(d.pts) : d.pts);
    if (!sizable(s)) {
      if (d.from) return this.cancel();
      if (v.tool === 'polygon') d.pts = distinct(d.pts);
      if (d.kb) v.announce(this.s.small);
      return this.paint();
    }
    this.draw = null;
    this.paint();
    const ta = v.composer && v.composer.querySelector('textarea');
    v.openComposer(anchor(s), ta ? ta.value : '', s);
  }

  /** Drops a drawing in progress; true if there was one. */
  cancel() {
    const d = this.draw;
    if (!d) return false;
    this.draw = null;
    this.v.draftShape = d.prev;
    this.paint();
    return true;
  }

  /**
   * A click on the layer (imagechat.js asks first): adds a polygon's point,
   * or closes it on its first point; true when the click was ours.
   * @param {MouseEvent} e
   */
  click(e) {
    const v = this.v;
    if (v.tool === 'pin') return false;
    if (v.tool !== 'polygon' || !v.canWrite()) return true;
    const p = v.point(e);
    const d = this.draw;
    if (!p) return true;
    if (!d) {
      if (v.ready()) this.begin([p]);
      return true;
    }
    d.kb = false;
    const first = d.pts[0];
    const pic = v.g ? v.g.pic : { w: 100, h: 100 };
    // Within 10 px of the first point closes the polygon.
    if (d.pts.length >= 3 && Math.hypot(((p.x - first.x) * pic.w) / 100, ((p.y - first.y) * pic.h) / 100) <= 10) return this.finish(), true;
    d.pts.push(p);
    this.paint();
    if (d.pts.length === MAX_POINTS) this.finish();
    return true;
  }

  /**
   * Keys on the layer (imagechat.js asks first); true when they were ours.
   * Enter (or Space) starts at the centre; arrows move the current point, 1 %
   * or with Shift 10 %; Space fixes it and starts the next; Enter finishes
   * (a polygon of three points or more closes) and opens the composer; Esc
   * cancels, or with nothing in progress goes back to the pin.
   * @param {KeyboardEvent} e
   */
  key(e) {
    const v = this.v;
    const d = this.draw;
    const k = e.key;
    if (v.tool === 'pin') return false;
    if (k === 'Enter' || k === ' ') {
      e.preventDefault();
      const two = v.tool !== 'polygon';
      if (!d) {
        if (v.canWrite() && v.ready()) {
          this.begin([{ x: 50, y: 50 }], { kb: true });
          v.announce(this.s.point(1, { x: 50, y: 50 }));
        }
      } else if (k === 'Enter' && d.pts.length >= (two ? 2 : 3)) this.finish();
      else if (!(two && d.pts.length >= 2)) this.next();
    } else if (d && k.startsWith('Arrow')) {
      e.preventDefault();
      if (d.pid != null) return true; // a drag is under way
      d.kb = true;
      d.hover = null;
      const p = d.pts[d.pts.length - 1];
      const step = e.shiftKey ? 10 : 1;
      if (k === 'ArrowLeft') p.x = r2(p.x - step);
      if (k === 'ArrowRight') p.x = r2(p.x + step);
      if (k === 'ArrowUp') p.y = r2(p.y - step);
      if (k === 'ArrowDown') p.y = r2(p.y + step);
      this.paint();
    } else if (k === 'Escape') {
      e.preventDefault();
      if (!this.cancel()) this.setTool('pin');
    }
    return true;
  }

  // ------------------------------------------------------------ pointers

  /** A press on the layer starts a drag-drawn shape; on a handle or a selected shape, an edit. @param {PointerEvent} e */
  down(e) {
    const v = this.v;
    const el = /** @type {Element} */ (e.target);
    if (e.button !== 0) return;
    if (el === v.layer) {
      if (v.tool === 'pin' || v.tool === 'polygon' || v.thread || !v.canWrite()) return;
      const p = v.point(e);
      if (!p || !v.ready()) return;
      e.preventDefault();
      v.layer.setPointerCapture(e.pointerId);
      this.begin([p, { x: p.x, y: p.y }], { pid: e.pointerId, from: { x: e.clientX, y: e.clientY } });
      return;
    }
    const chat = this.selected();
    if (!chat || !chat.shape) return;
    const marker = el === v.markers.get(chat.id);
    // A marker is the handle of the point it sits on (a mouse's: a finger on a marker scrolls the page).
    if (marker && e.pointerType === 'touch') return;
    const i = el.classList.contains('hd') ? this.grips.indexOf(/** @type {HTMLButtonElement} */ (el)) : marker ? this.under(this.shown(chat), chat) : el.matches('.ed>*') ? -1 : -2;
    if (i < -1) return;
    if (!marker) e.preventDefault(); // a marker still takes focus and its click
    el.setPointerCapture(e.pointerId);
    const start = /** @type {Pt} */ (v.point(e, true));
    this.drag = { chat, base: this.shown(chat), i, pid: e.pointerId, start, from: { x: e.clientX, y: e.clientY }, live: false, marker };
  }

  /** The grip the chat's marker sits on, or -1 (then dragging the marker moves the whole shape). @param {Shape} s @param {{x: number, y: number}} at */
  under(s, at) {
    return grips(s).findIndex((p) => Math.hypot(p.x - at.x, p.y - at.y) < 0.5);
  }

  /** @param {PointerEvent} e */
  over(e) {
    const v = this.v;
    const d = this.draw;
    if (d && d.pid === e.pointerId) {
      d.pts[1] = /** @type {Pt} */ (v.point(e, true));
      this.paint();
    } else if (d && v.tool === 'polygon' && !d.kb && e.pointerType === 'mouse') {
      d.hover = v.point(e, true);
      this.paint();
    }
    const g = this.drag;
    if (!g || g.pid !== e.pointerId) return;
    if (!g.live && Math.hypot(e.clientX - g.from.x, e.clientY - g.from.y) < 3) return;
    g.live = true;
    const p = /** @type {Pt} */ (v.point(e, true));
    this.preview(g.chat, g.i < 0 ? shift(g.base, p.x - g.start.x, p.y - g.start.y) : regrip(g.base, g.i, p));
  }

  /** @param {PointerEvent} e */
  up(e) {
    const d = this.draw;
    if (d && d.pid === e.pointerId && d.from) {
      // A press without a drag draws nothing (and the click that follows places nothing).
      if (e.type === 'pointerup' && Math.hypot(e.clientX - d.from.x, e.clientY - d.from.y) >= 4) this.finish();
      else this.cancel();
    }
    const g = this.drag;
    if (!g || g.pid !== e.pointerId) return;
    this.drag = null;
    if (g.live && g.marker) {
      // The click that ends dragging a marker does not open or close its thread.
      this.v.suppressClick = true;
      setTimeout(() => (this.v.suppressClick = false), 0);
    }
    if (g.live && e.type === 'pointerup') this.commit(g.chat);
    else this.unpreview();
  }

  // ------------------------------------------------------------ editing

  /** The chat whose shape is selected for editing: its thread is open or its marker (or handle) has focus, and the user may move it. */
  selected() {
    const v = this.v;
    const id = v.thread ? v.thread.id : this.focusId;
    const chat = id ? v.room.chats.get(id) : undefined;
    return chat && chat.shape && !chat.pending && !v.hide && v.mayManage(chat) ? chat : null;
  }

  /** A chat's shape as shown now (being edited or stored). @param {Chat} chat */
  shown(chat) {
    const m = this.v.moving;
    return /** @type {Shape} */ ((m && m.id === chat.id && m.shape) || chat.shape);
  }

  /** Shows a chat with another shape (its marker on it) until it is saved or dropped. @param {Chat} chat @param {Shape} s */
  preview(chat, s) {
    if (!sizable(s)) return;
    this.v.moving = Object.assign({ id: chat.id, shape: s }, anchor(s));
    this.v.render(null);
  }

  unpreview() {
    const v = this.v;
    if (!v.moving) return;
    v.moving = null;
    v.render(null);
  }

  /** Stores the previewed shape (the core sends the PATCH, shows it at once and undoes it if refused). @param {Chat} chat */
  commit(chat) {
    const v = this.v;
    const m = v.moving;
    v.moving = null;
    if (m && m.id === chat.id && m.shape) this.move(chat, { x: m.x, y: m.y, shape: m.shape });
    else v.render(null);
  }

  /**
   * Keys on a shaped chat's marker (imagechat.js hands them over): arrows move
   * the whole shape, Enter saves, Escape drops the change.
   * @param {KeyboardEvent} e @param {Chat} chat
   */
  markerKey(e, chat) {
    this.keyEdit(e, chat, (s, dx, dy) => shift(s, dx, dy));
  }

  /**
   * @param {KeyboardEvent} e @param {Chat} chat
   * @param {(s: Shape, dx: number, dy: number) => Shape} change the shape moved by a key's step
   */
  keyEdit(e, chat, change) {
    const v = this.v;
    const editing = v.moving && v.moving.id === chat.id;
    if (!v.mayManage(chat)) return;
    if (e.key.startsWith('Arrow')) {
      const step = e.shiftKey ? 10 : 1;
      const dx = e.key === 'ArrowLeft' ? -step : e.key === 'ArrowRight' ? step : 0;
      const dy = e.key === 'ArrowUp' ? -step : e.key === 'ArrowDown' ? step : 0;
      this.preview(chat, change(this.shown(chat), dx, dy));
    } else if (editing && e.key === 'Enter') this.commit(chat);
    else if (editing && e.key === 'Escape') this.unpreview();
    else return;
    e.preventDefault();
    e.stopPropagation();
  }

  // ------------------------------------------------------------ moving

  /**
   * Lets a marker move, for a user who may move its chat: a pin's is dragged
   * (a finger first holds it for half a second, so a swipe that starts on it
   * scrolls the page) or moved with the arrow keys, Enter saving and Escape
   * dropping; a shape's marker hands its keys to `markerKey`.
   * @param {HTMLButtonElement} m @param {string} id
   */
  wire(m, id) {
    const v = this.v;
    this.wired.add(m);
    /** @type {{x: number, y: number, id: number, armed: boolean} | null} */
    let down = null;
    m.addEventListener('pointerdown', (e) => {
      const chat = v.room.chats.get(id);
      if (e.button !== 0 || !chat || chat.pending || chat.shape || !v.mayManage(chat)) return;
      const d = (down = { x: e.clientX, y: e.clientY, id: e.pointerId, armed: e.pointerType !== 'touch' });
      if (d.armed) m.setPointerCapture(e.pointerId); // keep getting moves once the pointer leaves the small marker
      else
        setTimeout(() => {
          if (down !== d) return;
          d.armed = true;
          m.classList.add('drag');
        }, 500);
    });
    // Once armed, the finger drags the marker instead of scrolling.
    m.addEventListener('touchmove', (e) => down && down.armed && e.preventDefault(), { passive: false });
    m.addEventListener('contextmenu', (e) => down && e.preventDefault());
    m.addEventListener('pointermove', (e) => {
      if (!down || down.id !== e.pointerId) return;
      if (!down.armed) {
        if (Math.hypot(e.clientX - down.x, e.clientY - down.y) > 8) down = null;
        return;
      }
      if (!m.classList.contains('drag')) {
        if (Math.hypot(e.clientX - down.x, e.clientY - down.y) < 5) return;
        m.classList.add('drag');
      }
      place(m, /** @type {Pt} */ (v.point(e, true)));
    });
    const end = (/** @type {PointerEvent} */ e) => {
      if (!down || down.id !== e.pointerId) return;
      down = null;
      if (!m.classList.contains('drag')) return;
      m.classList.remove('drag');
      // The click that ends the drag does not open or close the thread.
      v.suppressClick = true;
      setTimeout(() => (v.suppressClick = false), 0);
      const chat = v.room.chats.get(id);
      if (chat && e.type === 'pointerup') this.move(chat, /** @type {Pt} */ (v.point(e, true)));
      else v.render(null);
    };
    m.addEventListener('pointerup', end);
    m.addEventListener('pointercancel', end);
    m.addEventListener('keydown', (e) => {
      const chat = v.room.chats.get(id);
      if (!chat || chat.pending) return;
      if (chat.shape) return this.markerKey(e, chat);
      const mv = v.moving;
      if (e.key.startsWith('Arrow') && v.mayManage(chat)) {
        const p = mv && mv.id === id ? mv : (v.moving = { id, x: chat.x, y: chat.y });
        const step = e.shiftKey ? 10 : 1;
        if (e.key === 'ArrowLeft') p.x = r2(p.x - step);
        if (e.key === 'ArrowRight') p.x = r2(p.x + step);
        if (e.key === 'ArrowUp') p.y = r2(p.y - step);
        if (e.key === 'ArrowDown') p.y = r2(p.y + step);
        v.render(null);
      } else if (mv && mv.id === id && (e.key === 'Enter' || e.key === 'Escape')) {
        v.moving = null;
        if (e.key === 'Enter') this.move(chat, mv);
        else v.render(null);
      } else return;
      e.preventDefault();
      e.stopPropagation();
    });
    // Leaving the marker drops a move not saved.
    m.addEventListener('blur', () => {
      if (v.moving && v.moving.id === id) {
        v.moving = null;
        v.render(null);
      }
    });
  }

  /**
   * Stores a new place of a chat's marker (and its new shape, if it has
   * one): shown at once, put back if the server refuses.
   * @param {Chat} chat @param {{x: number, y: number, shape?: Shape}} to
   */
  move(chat, to) {
    const v = this.v;
    const room = v.room;
    const from = { x: chat.x, y: chat.y, shape: chat.shape };
    to = { x: to.x, y: to.y, shape: to.shape || chat.shape };
    if (JSON.stringify(from) === JSON.stringify(to) || !v.ready()) return v.render(null);
    Object.assign(chat, to);
    v.render(null);
    v.run(() =>
      v.conn.mutate('PATCH', `/api/v1/chats/${encodeURIComponent(chat.id)}`, to, (d) => room.putChat(d.chat)).catch((e) => {
        Object.assign(chat, from);
        throw e;
      }),
    );
  }

  // ------------------------------------------------------------ thread actions

  /**
   * Adds resolve / reopen and, for its creator and moderators, delete (which
   * asks first, in a row below) to an open thread's head, before its close
   * button: imagechat.js calls it each time it renders the head.
   * @param {Chat} chat @param {Thread} th @param {HTMLElement} close
   */
  head(chat, th, close) {
    const v = this.v;
    const s = this.s;
    const path = `/api/v1/chats/${encodeURIComponent(chat.id)}`;
    if (!v.canWrite()) return;
    const res = button(chat.resolved ? s.reopen : s.resolve, { 'data-imagechat-action': 'resolve', 'aria-pressed': String(!!chat.resolved) });
    res.onclick = () => v.run(() => v.conn.mutate('PATCH', path, { resolved: !chat.resolved }, (d) => v.room.putChat(d.chat)));
    close.before(res);
    if (v.mayManage(chat)) {
      const del = button(s.del, { 'data-imagechat-action': 'delete-chat', 'aria-label': s.delChat });
      del.onclick = () => {
        th.confirm = true;
        v.renderThread();
        const ok = th.head.querySelector('[data-imagechat-action=confirm]');
        if (ok instanceof HTMLElement) ok.focus();
      };
      close.before(del);
    }
    if (th.confirm) {
      const room = v.room;
      th.head.append(
        this.confirmRow(
          () => v.run(() => v.conn.mutate('DELETE', path, undefined, () => room.chats.delete(chat.id))),
          () => {
            th.confirm = false;
            v.renderThread();
          },
        ),
      );
    }
  }

  /**
   * Adds edit and delete to a comment the user may change (imagechat.js
   * calls it each time it fills one in): editing swaps its text for a
   * composer (Ctrl+Enter saves, Escape cancels) whose images can be removed
   * and added to (lazy/attachments.js); deleting asks first.
   * @param {HTMLLIElement} li @param {Chat} chat @param {Comment} c
   */
  comment(li, chat, c) {
    const v = this.v;
    const s = this.s;
    const t = v.t;
    const room = v.room;
    const path = `/api/v1/chats/${encodeURIComponent(chat.id)}/comments/${encodeURIComponent(c.id)}`;
    const edit = button(s.editText, { class: 'b l', 'data-imagechat-action': 'edit' });
    const del = button(s.del, { class: 'b l', 'data-imagechat-action': 'delete' });
    const acts = h('div', { class: 'acts' });
    acts.append(edit, del);
    li.append(acts);
    del.onclick = () => {
      acts.replaceWith(
        this.confirmRow(
          () => v.run(() => v.conn.mutate('DELETE', path, undefined, () => room.dropComment(chat.id, c.id))),
          () => v.fillComment(li, chat, c),
        ),
      );
      const ok = li.querySelector('[data-imagechat-action=confirm]');
      if (ok instanceof HTMLElement) ok.focus();
    };
    edit.onclick = () => {
      const ta = h('textarea', { dir: 'auto', 'aria-label': s.editText, maxlength: '2000' });
      ta.value = c.text;
      const save = button(s.save, { class: 'b p', type: 'submit', 'data-imagechat-action': 'save' });
      const cancel = button(t.cancel);
      const done = () => {
        const cur = room.chats.get(chat.id);
        const now = cur && cur.comments.find((x) => x.id === c.id);
        if (cur && now) v.fillComment(li, cur, now);
        const again = li.querySelector('[data-imagechat-action=edit]');
        if (again instanceof HTMLElement) again.focus();
      };
      cancel.onclick = done;
      ta.addEventListener('keydown', (e) => {
        if (e.key === 'Escape') {
          e.preventDefault();
          e.stopPropagation();
          done();
        } else if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) save.click();
      });
      const row = h('div', { class: 'row' });
      row.append(cancel, save);
      const form = h('form', { 'data-imagechat-composer': '', 'aria-label': s.editText });
      form.noValidate = true;
      form.append(ta, row);
      form.onsubmit = async (e) => {
        e.preventDefault();
        const text = ta.value.trim();
        if (!text) return v.showError(t.empty);
        /** @type {Record<string, unknown>} */
        const body = { text };
        // Without the key the comment keeps its images; a changed list (even empty) replaces them.
        // (No tray: lazy/attachments.js did not load, and the images stay as they are.)
        const ids = v.atts(form).map((a) => a.id);
        if (form.querySelector('.tray') && ids.join() !== (c.attachments || []).map((a) => a.id).join()) body.attachments = ids;
        // Who it mentions now (none: `[]`, when it mentioned someone before). (No `@` picker: lazy/mentions.js did not load, and the mentions stay as they are.)
        const men = v.mn && form.querySelector('[data-imagechat-mention-list]') ? v.mn.ids(form) || [] : null;
        if (men && (men.length || (c.mentions && c.mentions.length))) body.mentions = men;
        save.disabled = true;
        if (await v.run(() => v.conn.mutate('PATCH', path, body, (d) => room.putComment(chat.id, d.comment)))) done();
        else save.disabled = false;
      };
      li.replaceChildren(/** @type {Element} */ (li.firstElementChild), form);
      v.wire(form, c.attachments || [], c.mentions);
      ta.focus();
    };
  }

  /** A "Delete for everyone? [Delete] [Cancel]" row. @param {() => void} yes @param {() => void} no */
  confirmRow(yes, no) {
    const s = this.s;
    const ok = button(s.del, { class: 'b p', 'data-imagechat-action': 'confirm' });
    const cancel = button(this.v.t.cancel);
    ok.onclick = yes;
    cancel.onclick = no;
    const row = h('div', { class: 'confirm', role: 'group', 'aria-label': s.confirmDel });
    row.append(h('span', {}, s.confirmDel), ok, cancel);
    return row;
  }

  /** Keeps the tool bar, the layer's description, the markers' moves, the grips of the selected shape and the drawing in step with the view: imagechat.js calls it after each render. */
  sync() {
    const v = this.v;
    const s = this.s;
    const writable = v.canWrite();
    this.bar.hidden = !writable;
    this.bar.setAttribute('aria-label', s.tools);
    for (const b of this.bar.children) {
      const tool = b.getAttribute('data-imagechat-tool') || '';
      b.setAttribute('aria-pressed', String(tool === v.tool));
      b.setAttribute('title', tool === 'pin' ? s.pin : v.t.tools[tool]);
    }
    if (!writable && this.draw) {
      this.draw = null;
      queueMicrotask(() => this.paint());
    }
    v.layer.classList.toggle('dt', v.tool !== 'pin' && writable);
    const help = v.tool === 'pin' ? v.t.placing : v.tool === 'polygon' ? s.help.polygon : s.help.drag(v.t.tools[v.tool]);
    if (v.descEl.textContent !== help) v.descEl.textContent = help;
    this.hint.textContent = s.edit;
    for (const [id, m] of v.markers) {
      if (!this.wired.has(m)) this.wire(m, id);
      const c = v.room.chats.get(id);
      if (c && v.mayManage(c)) m.setAttribute('aria-description', s.moveHint);
      else m.removeAttribute('aria-description');
    }

    // The selected shape takes pointers (to be dragged) and shows its grips right after its marker, so Tab reaches them next.
    const chat = this.selected();
    for (const el of v.pic.querySelectorAll('.sh.ed')) el.classList.remove('ed');
    const m = chat && v.markers.get(chat.id);
    if (!chat || !m) {
      for (const g of this.grips) g.remove();
      this.grips = [];
      this.gripsFor = null;
      return;
    }
    const shape = this.shown(chat);
    const w = m.previousElementSibling;
    if (w && w.classList.contains('sh')) w.classList.add('ed');
    const pts = grips(shape);
    if (this.gripsFor !== chat.id || this.grips.length !== pts.length) {
      for (const g of this.grips) g.remove();
      this.grips = pts.map((_, i) => {
        const g = h('button', { type: 'button', class: 'hd', 'data-imagechat-handle': String(i), 'aria-describedby': 'ic-hd' });
        g.addEventListener('keydown', (e) => {
          const c = this.selected();
          if (c) this.keyEdit(e, c, (sh, dx, dy) => {
            const p = grips(sh)[i];
            return regrip(sh, i, { x: r2(p.x + dx), y: r2(p.y + dy) });
          });
        });
        g.addEventListener('blur', () => !this.drag && this.unpreview());
        return g;
      });
      this.gripsFor = chat.id;
    }
    const kind = v.t.tools[shape.type];
    const under = this.under(shape, v.moving && v.moving.id === chat.id ? v.moving : chat);
    this.grips.forEach((g, i) => {
      if (g.previousElementSibling !== (i ? this.grips[i - 1] : m)) (i ? this.grips[i - 1] : m).after(g);
      place(g, pts[i]);
      g.classList.toggle('under', i === under);
      const name = shape.type === 'arrow' ? (i ? s.head : s.tail) : shape.type === 'polygon' ? s.vertex(i + 1) : s.corner(i + 1);
      g.setAttribute('aria-label', s.of(name, kind));
    });
  }
}

/**
 * The entry point imagechat.js calls once per view.
 * @param {View} view
 */
export function regions(view) {
  return new Regions(view);
}
