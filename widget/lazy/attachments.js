// imagechat attachments: the uploader of every composer (pick, paste, drop,
// with progress) and the viewer that opens an attached image full size
// (protocol §14).
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// A module imagechat.js imports on demand from /imagechat/attachments.js,
// once per page: when a composer opens (new chat, reply, edit) or when a
// thumbnail is first activated. Thumbnails themselves are drawn by
// imagechat.js, so a reader who never opens one never loads this file. Like
// the rest of the widget it is plain JavaScript checked by
// `tsc --checkJs --strict` and needs no inline style: its CSS is a
// constructable stylesheet adopted by the view's shadow root.
//
// Each composer keeps its images in a tray (one `[data-imagechat-attachment]`
// per image, with a progress bar while it uploads and a remove button).
// Files are checked here first (type, size, at most four), then sent one
// request each as the raw body of `POST /api/v1/uploads` with
// XMLHttpRequest, whose upload progress fetch cannot report. The comment
// request carries the ids of the finished ones (`list`); a composer refuses
// to be sent while one is still uploading. Like every other change, nothing
// is attached while the view is not live.

import { h, icon } from './dom.js';

/**
 * @typedef {{id: string, url: string, contentType: string, width: number, height: number}} Attachment
 * @typedef {{token: string, uploadMaxBytes?: number}} Session
 * @typedef {{name: string, el: HTMLLIElement, img: HTMLImageElement, up: Attachment | null, xhr: XMLHttpRequest | null, blob: string, st: Tray}} Item
 *   one image of a composer: `up` once stored, `xhr` while it uploads, `blob` its local preview
 * @typedef {{form: HTMLElement, items: Item[], tray: HTMLUListElement, input: HTMLInputElement, pick: HTMLLabelElement}} Tray
 */

/**
 * The parts of imagechat.js's View this file uses: its contract with the core.
 * @typedef {object} View
 * @property {HTMLElement} host the element whose shadow root holds the widget (`lang` is its locale)
 * @property {ShadowRoot} root
 * @property {{server: string, session: Session | null, getSession: () => Promise<Session>, dropSession: (s: Session | null) => void}} conn
 * @property {{close: string, network: string, notLive: string, rate: (s: number) => string}} t the core's strings
 * @property {() => boolean} canWrite
 * @property {() => boolean} ready whether a change may be sent now (else it says why)
 * @property {(text: string) => void} announce says something through the polite live region
 * @property {() => void} clearError removes the error shown over the image, if any
 * @property {() => void} placeCards puts the open composer and thread beside their point again (they grow with a tray)
 */

/** What the server takes (protocol §14). */
const TYPES = ['image/png', 'image/jpeg', 'image/webp', 'image/gif'];
const MAX = 4;
/** The server's default `--upload-max-bytes`; a session may name another. */
const MAX_BYTES = 10 * 1024 * 1024;

/** A size for people: `48 KB`, `10 MB`, `2.5 MB`. @param {number} b */
const size = (b) => (b >= 1048576 ? `${+(b / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.floor(b / 1024))} KB`);

const STRINGS = {
  en: {
    attach: 'Attach image',
    attachHint: 'Pick, paste or drop PNG, JPEG, WebP or GIF images, up to 4',
    list: 'Attached images',
    remove: (/** @type {string} */ n) => `Remove ${n}`,
    uploading: (/** @type {string} */ n) => `Uploading ${n}`,
    done: (/** @type {string} */ n) => `${n} attached`,
    type: (/** @type {string} */ n) => `${n}: only PNG, JPEG, WebP and GIF images can be attached.`,
    big: (/** @type {string} */ n, /** @type {string} */ max) => `${n} is too large: at most ${max}.`,
    tooBig: (/** @type {string} */ n) => `${n} is larger than this server takes.`,
    quota: 'This site’s uploads for today are used up. Try again tomorrow.',
    max: `At most ${MAX} images per comment.`,
    refused: (/** @type {string} */ n, /** @type {string} */ m) => `${n} was refused: ${m}`,
    busy: 'Wait until the images have finished uploading.',
    view: (/** @type {number} */ i, /** @type {number} */ n) => `Image ${i} of ${n}`,
    prev: 'Previous image',
    next: 'Next image',
  },
  ja: {
    attach: '画像を添付',
    attachHint: 'PNG、JPEG、WebP、GIF の画像を選択・貼り付け・ドロップ（4 枚まで）',
    list: '添付画像',
    remove: (/** @type {string} */ n) => `${n} を削除`,
    uploading: (/** @type {string} */ n) => `${n} をアップロード中`,
    done: (/** @type {string} */ n) => `${n} を添付しました`,
    type: (/** @type {string} */ n) => `${n}: 添付できるのは PNG、JPEG、WebP、GIF の画像だけです。`,
    big: (/** @type {string} */ n, /** @type {string} */ max) => `${n} は大きすぎます（${max} まで）。`,
    tooBig: (/** @type {string} */ n) => `${n} はこのサーバーが受け付けるサイズを超えています。`,
    quota: 'このサイトの今日のアップロード量の上限に達しました。明日またお試しください。',
    max: `1 件のコメントに添付できる画像は ${MAX} 枚までです。`,
    refused: (/** @type {string} */ n, /** @type {string} */ m) => `${n} は受け付けられませんでした: ${m}`,
    busy: '画像のアップロードが終わるまでお待ちください。',
    view: (/** @type {number} */ i, /** @type {number} */ n) => `画像 ${i}/${n}`,
    prev: '前の画像',
    next: '次の画像',
  },
};

/** A paper clip on a 20 × 20 grid. */
const CLIP = 'M13.5 6.5 7.8 12.2a1.6 1.6 0 0 0 2.3 2.3l6-6a3.2 3.2 0 0 0-4.6-4.6l-6.2 6.2a4.8 4.8 0 0 0 6.8 6.8l5.2-5.2';

const STYLE = `
.ab{position:relative;margin:0 auto 0 0;display:inline-flex;align-items:center;gap:4px;font-size:13px;min-height:28px;padding:3px 10px;border-radius:6px;border:1px solid var(--line);background:var(--soft);color:var(--fg);cursor:pointer}
.ab:has(:focus-visible){outline:2px solid var(--acc);outline-offset:1px}
.ab svg{width:16px;height:16px;fill:none;stroke:currentColor;stroke-width:1.6;stroke-linecap:round}
.tray{list-style:none;display:flex;flex-wrap:wrap;gap:6px;margin:6px 0 0;padding:0}
.tray li{position:relative;width:64px;height:64px;border:1px solid var(--line);border-radius:6px;background:var(--soft);overflow:hidden}
.tray img{display:block;width:100%;height:100%;object-fit:cover}
.tray [data-state=uploading] img{opacity:.45}
.tray progress{position:absolute;left:4px;bottom:4px;width:calc(100% - 8px);height:8px;appearance:none;border:1px solid #111827;border-radius:4px;background:#fff;overflow:hidden}
.tray progress::-webkit-progress-bar{background:#fff}
.tray progress::-webkit-progress-value{background:#1d4ed8}
.tray progress::-moz-progress-bar{background:#1d4ed8}
.rm{position:absolute;top:2px;right:2px;width:24px;height:24px;padding:0;margin:0;border:1px solid #fff;border-radius:50%;background:#111827e0;color:#fff;font:16px/1 system-ui,sans-serif;cursor:pointer}
.rm:focus-visible{outline:2px solid var(--acc);outline-offset:1px}
.aerr{margin:6px 0 0;padding:4px 8px;border-radius:6px;background:var(--bad);color:#fff;font-size:13px}
:host([data-theme=dark]) .aerr{color:#450a0a}
.drop{outline:2px dashed var(--acc);outline-offset:2px}
.vw[open]{display:flex;flex-direction:column;width:100vw;height:100dvh;max-width:none;max-height:none;margin:0;padding:0;border:0;background:#0b1120f2;color:#f9fafb}
.vw::backdrop{background:#0008}
.vh{display:flex;align-items:center;gap:6px;padding:8px 12px}
.vh h2{flex:1;margin:0;font-size:14px}
.vw button.b{background:#1f2937;border-color:#4b5563;color:#f9fafb}
.vw button.b:focus-visible{outline:2px solid #93c5fd;outline-offset:1px}
.vw button.b{font-size:20px;min-width:40px;min-height:40px}
.vw button.x{font-size:24px}
.vb{flex:1;min-height:0;display:flex;align-items:center;justify-content:center;padding:0 8px 8px}
.vb img{display:block;max-width:100%;max-height:100%;width:auto;height:auto;object-fit:contain;background:#fff}
@media (forced-colors:active){.rm,.vw{border:1px solid CanvasText}}
`;

/** @type {CSSStyleSheet | undefined} */
let sheet;


/**
 * Sends one file as the raw body of a POST, reporting upload progress (0..1).
 * Resolves with the status (0: the network failed or it was aborted), the
 * parsed JSON answer and Retry-After; never rejects.
 * @param {string} url @param {File} file @param {string} token @param {(p: number) => void} progress
 * @param {(x: XMLHttpRequest) => void} started
 * @returns {Promise<{status: number, data: any, retry: number}>}
 */
function post(url, file, token, progress, started) {
  return new Promise((resolve) => {
    const x = new XMLHttpRequest();
    x.open('POST', url);
    x.setRequestHeader('Authorization', `Bearer ${token}`);
    x.setRequestHeader('Content-Type', file.type);
    x.upload.onprogress = (e) => e.lengthComputable && progress(e.loaded / e.total);
    x.onload = () => {
      let data = null;
      try {
        data = JSON.parse(x.responseText);
      } catch (_) {
        /* not JSON (a proxy's page): the status says enough */
      }
      resolve({ status: x.status, data, retry: Number(x.getResponseHeader('Retry-After')) || 0 });
    };
    x.onerror = x.onabort = x.ontimeout = () => resolve({ status: 0, data: null, retry: 0 });
    x.send(file);
    started(x);
  });
}

class Attachments {
  /** @param {View} view */
  constructor(view) {
    this.v = view;
    /** Each composer's tray. @type {WeakMap<HTMLElement, Tray>} */
    this.trays = new WeakMap();
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLE);
    }
    view.root.adoptedStyleSheets = [...view.root.adoptedStyleSheets, sheet];
    // The view cancels every click inside it (so that none follows a link of
    // the page), which would keep the attach label and its file input from
    // opening the file chooser: their clicks stop at the host, before the
    // view sees them.
    view.host.addEventListener(
      'click',
      (e) => {
        const t = e.composedPath()[0];
        if (t instanceof Element && t.closest('.ab')) e.stopPropagation();
      },
      true,
    );
  }

  /** An upload's address as this page must ask for it: the server may name it by its path alone. @param {string} url */
  abs(url) {
    return new URL(url, this.v.conn.server).href;
  }

  /** The strings of the view's locale. */
  get s() {
    return STRINGS[this.v.host.lang === 'ja' ? 'ja' : 'en'];
  }

  // ------------------------------------------------------------ composer

  /**
   * Gives a composer (a form whose buttons are in its `.row`) its attach
   * button, file input, tray, paste and drop. `from` is the composer it
   * replaces (its images, uploading or not, move over) or the attachments a
   * comment being edited has.
   * @param {HTMLElement} form @param {HTMLElement | Attachment[] | null | false} [from]
   */
  composer(form, from) {
    if (this.trays.has(form) || !this.v.canWrite()) return;
    const s = this.s;
    // The file input itself takes focus and keys (inside its label, which is what shows): on phones it offers the camera roll.
    const input = h('input', { type: 'file', class: 'sr', accept: TYPES.join(','), multiple: '' });
    const pick = h('label', { class: 'ab', title: s.attachHint });
    pick.append(input, icon(CLIP), s.attach);
    const tray = h('ul', { class: 'tray', 'aria-label': s.list });
    /** @type {Tray} */
    const st = { form, items: [], tray, input, pick };
    this.trays.set(form, st);
    const row = form.querySelector('.row');
    if (row) row.prepend(pick);
    else form.append(pick);
    (row || pick).before(tray);

    input.onchange = () => {
      this.add(st, [...(input.files || [])]);
      input.value = '';
    };
    form.addEventListener('paste', (e) => {
      const files = [...(e.clipboardData ? e.clipboardData.files : [])];
      if (!files.length) return; // text pastes as text
      e.preventDefault();
      e.stopPropagation();
      this.add(st, files);
    });
    const hasFiles = (/** @type {DragEvent} */ e) => !!e.dataTransfer && [...e.dataTransfer.types].includes('Files');
    for (const type of ['dragenter', 'dragover']) {
      form.addEventListener(type, (e) => {
        if (!hasFiles(/** @type {DragEvent} */ (e))) return;
        e.preventDefault();
        form.classList.add('drop');
      });
    }
    form.addEventListener('dragleave', (e) => {
      if (!form.contains(/** @type {Node | null} */ (e.relatedTarget))) form.classList.remove('drop');
    });
    form.addEventListener('drop', (e) => {
      form.classList.remove('drop');
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.stopPropagation();
      this.add(st, [...(/** @type {DataTransfer} */ (e.dataTransfer).files)]);
    });
    // A comment is not sent while one of its images is still on its way (capturing: before the core's own handler).
    form.addEventListener(
      'submit',
      (e) => {
        if (!st.items.some((it) => !it.up)) return;
        e.preventDefault();
        e.stopImmediatePropagation();
        this.say(st, s.busy);
      },
      true,
    );

    if (from instanceof HTMLElement) {
      const old = this.trays.get(from);
      if (old) for (const it of old.items) this.put(st, it);
    } else if (from) for (const a of from) this.put(st, this.item(st, a.id, this.abs(a.url), a));
    this.paint(st);
  }

  /** The stored images of a composer, in order. @param {HTMLElement} form @returns {Attachment[]} */
  list(form) {
    const st = this.trays.get(form);
    return st ? /** @type {Attachment[]} */ (st.items.map((it) => it.up).filter(Boolean)) : [];
  }

  /** Empties a composer's tray (its comment was sent). @param {HTMLElement} form */
  clear(form) {
    const st = this.trays.get(form);
    if (st) for (const it of [...st.items]) this.drop(it);
  }

  /** Checks files and uploads those that may go. @param {Tray} st @param {File[]} files */
  add(st, files) {
    const s = this.s;
    const v = this.v;
    if (!files.length || !v.ready()) return;
    /** @type {string[]} */
    const bad = [];
    const limit = (v.conn.session && v.conn.session.uploadMaxBytes) || MAX_BYTES;
    for (const f of files) {
      const name = f.name || 'image';
      if (!TYPES.includes(f.type)) bad.push(s.type(name));
      else if (f.size > limit) bad.push(s.big(name, size(limit)));
      else if (st.items.length >= MAX) {
        bad.push(s.max);
        break;
      } else {
        const blob = URL.createObjectURL(f);
        const it = this.item(st, '', blob, null);
        it.name = name;
        it.blob = blob;
        this.put(st, it);
        this.upload(it, f);
      }
    }
    this.say(st, bad.join(' '));
    this.paint(st);
  }

  /**
   * One image of a tray: its picture, a progress bar while it uploads, and a
   * button that removes it.
   * @param {Tray} st @param {string} id @param {string} src @param {Attachment | null} up
   * @returns {Item}
   */
  item(st, id, src, up) {
    const el = h('li', { 'data-imagechat-attachment': id, 'data-state': up ? 'done' : 'uploading' });
    const img = h('img', { src, alt: '' });
    const rm = h('button', { class: 'rm', type: 'button' }, '×');
    el.append(img, rm);
    /** @type {Item} */
    const it = { name: '', el, img, up, xhr: null, blob: '', st };
    rm.onclick = () => {
      const i = it.st.items.indexOf(it);
      const tray = it.st;
      this.drop(it);
      // Focus stays in the tray (the next image's button), else goes back to the attach button.
      const next = tray.items[Math.min(i, tray.items.length - 1)];
      (next ? /** @type {HTMLElement} */ (next.el.querySelector('.rm')) : tray.pick).focus();
    };
    return it;
  }

  /** @param {Tray} st @param {Item} it */
  put(st, it) {
    it.st = st;
    st.items.push(it);
    st.tray.append(it.el);
    this.label(it);
  }

  /** Names an image's picture, progress and remove button. @param {Item} it */
  label(it) {
    const s = this.s;
    const i = it.st.items.indexOf(it) + 1;
    const name = it.name || s.view(i, it.st.items.length);
    it.img.alt = name;
    /** @type {HTMLElement} */ (it.el.querySelector('.rm')).setAttribute('aria-label', s.remove(name));
    const bar = it.el.querySelector('progress');
    if (bar) bar.setAttribute('aria-label', s.uploading(name));
  }

  /** Removes an image from its tray, stopping its upload. @param {Item} it */
  drop(it) {
    const st = it.st;
    if (it.xhr) it.xhr.abort();
    it.xhr = null;
    st.items = st.items.filter((x) => x !== it);
    it.el.remove();
    if (it.blob) URL.revokeObjectURL(it.blob);
    this.paint(st);
  }

  /** Hides an empty tray, and the attach button once the tray is full; names the images in order. @param {Tray} st */
  paint(st) {
    st.tray.hidden = !st.items.length;
    st.pick.hidden = st.items.length >= MAX;
    if (st.pick.hidden && st.input === this.v.root.activeElement) st.form.querySelector('textarea')?.focus();
    for (const it of st.items) this.label(it);
    this.v.placeCards();
  }

  /**
   * Shows (or with '' removes) the error of a composer, where its user looks
   * (over the image it could hide behind the composer, or behind a thread
   * that fills a phone's screen). One error at a time, as the core shows them.
   * @param {Tray} st @param {string} msg
   */
  say(st, msg) {
    st.form.querySelector('.aerr')?.remove();
    if (msg) this.v.clearError();
    if (msg) st.tray.after(h('p', { class: 'aerr', role: 'alert', 'data-imagechat-error': '' }, msg));
    this.v.placeCards();
  }

  /**
   * Uploads one image with progress; a refused token is replaced once. What
   * the server refuses leaves the tray with the server's reason.
   * @param {Item} it @param {File} file
   */
  async upload(it, file) {
    const v = this.v;
    const s = this.s;
    const bar = h('progress', { max: '100', value: '0' });
    it.el.append(bar);
    this.label(it);
    let res = { status: 0, data: /** @type {any} */ (null), retry: 0 };
    for (let i = 0; i < 2; i++) {
      /** @type {Session} */
      let session;
      try {
        session = await v.conn.getSession();
      } catch (_) {
        break;
      }
      if (!it.st.items.includes(it)) return; // removed meanwhile
      res = await post(
        `${v.conn.server}/api/v1/uploads`,
        file,
        session.token,
        (p) => (bar.value = Math.round(p * 100)),
        (x) => (it.xhr = x),
      );
      it.xhr = null;
      if (!it.st.items.includes(it)) return; // removed (aborted) meanwhile
      if (res.status !== 401) break;
      v.conn.dropSession(session);
    }
    bar.remove();
    const up = res.data && res.data.upload;
    if (res.status === 201 && up) {
      it.up = up;
      it.el.setAttribute('data-imagechat-attachment', up.id);
      it.el.setAttribute('data-state', 'done');
      // What the server stored (metadata gone, EXIF orientation applied) replaces the local preview.
      it.img.src = this.abs(up.url);
      v.announce(s.done(it.name));
      return;
    }
    const err = res.data && res.data.error;
    // A 413 means this server's limit is below the one checked here; a long Retry-After is the daily quota, not the write rate.
    const why =
      res.status === 0
        ? v.t.network
        : res.status === 413
          ? s.tooBig(it.name)
          : res.status === 429
            ? res.retry > 300
              ? s.quota
              : v.t.rate(res.retry || 1)
            : s.refused(it.name, (err && (err.message || err.code || err)) || String(res.status));
    const st = it.st;
    this.drop(it);
    this.say(st, why);
  }

  // ------------------------------------------------------------ viewer

  /**
   * Opens attachment `i` of `list` full size in a modal dialog: focus moves
   * into it, arrow keys (and buttons) go through the others, Escape, the
   * close button or a click beside the picture close it, and focus goes back
   * to the thumbnail (or to the same attachment's new thumbnail, when a live
   * update redrew the comment meanwhile).
   * @param {HTMLElement} thumb @param {Attachment[]} list @param {number} i
   */
  show(thumb, list, i) {
    const s = this.s;
    const v = this.v;
    const dlg = h('dialog', { class: 'vw', 'aria-labelledby': 'ic-vt', 'data-imagechat-viewer': '' });
    const title = h('h2', { id: 'ic-vt' });
    const close = h('button', { class: 'b x', type: 'button', 'aria-label': v.t.close }, '×');
    const prev = h('button', { class: 'b', type: 'button', 'aria-label': s.prev }, '‹');
    const next = h('button', { class: 'b', type: 'button', 'aria-label': s.next }, '›');
    const img = h('img', {});
    const body = h('div', { class: 'vb' });
    body.append(img);
    const head = h('div', { class: 'vh' });
    head.append(title);
    if (list.length > 1) head.append(prev, next);
    head.append(close);
    dlg.append(head, body);
    const go = (/** @type {number} */ j) => {
      i = (j + list.length) % list.length;
      const a = list[i];
      title.textContent = s.view(i + 1, list.length);
      img.src = this.abs(a.url);
      img.alt = s.view(i + 1, list.length);
      img.width = a.width;
      img.height = a.height;
    };
    const done = () => {
      dlg.close();
      dlg.remove();
      const id = list[i] && list[i].id;
      const back = thumb.isConnected ? thumb : v.root.querySelector(`.at[data-imagechat-attachment="${CSS.escape(id)}"]`);
      if (back instanceof HTMLElement) back.focus();
    };
    close.onclick = done;
    prev.onclick = () => go(i - 1);
    next.onclick = () => go(i + 1);
    // Escape closes it here, so focus goes where this file says.
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      done();
    });
    dlg.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        e.stopPropagation();
        done();
      } else if (list.length > 1 && (e.key === 'ArrowLeft' || e.key === 'ArrowRight')) {
        e.preventDefault();
        go(i + (e.key === 'ArrowLeft' ? -1 : 1));
      }
    });
    // A click beside the picture (on the dialog's own backdrop area) closes it.
    dlg.addEventListener('click', (e) => (e.target === dlg || e.target === body) && done());
    go(i);
    v.root.append(dlg);
    dlg.showModal();
    close.focus();
  }
}


/**
 * The entry point imagechat.js calls once per view.
 * @param {View} view
 */
export function attachments(view) {
  return new Attachments(view);
}
