// The screenshot pages (protocol §14): /s/new, where a visitor pastes, drops
// or picks an image that is uploaded and gets its own page, and /s/{id},
// that page: the image full width with the widget attached (by its
// data-imagechat-* attributes: urlId `upload:{id}`) and a "Copy link" button.
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Both pages are served with a strict Content-Security-Policy (scripts and
// styles from 'self' only, nothing inline), so everything they do is here
// and the server's data reaches it through data- attributes. A visitor's
// session is the widget's own: the same anonymous session, kept in
// localStorage under the same key, so whoever uploads a screenshot is the
// same user in the widget on its page.
(function () {
  'use strict';

  const TYPES = ['image/png', 'image/jpeg', 'image/webp', 'image/gif'];
  /** The server's default `--upload-max-bytes`; a session may name another. */
  /** What a session of a server that does not say its limit may send. */
  const DEFAULT_MAX_BYTES = 10 * 1024 * 1024;
  /** A size for people: `512 KB`, `10 MB`, `2.5 MB`. @param {number} b */
  const size = (b) => (b >= 1048576 ? `${+(b / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.floor(b / 1024))} KB`);

  const STRINGS = {
    en: {
      dark: 'Dark mode',
      light: 'Light mode',
      uploadingTo: (/** @type {number} */ p) => `Uploading: ${p} %`,
      uploaded: 'Uploaded. Opening its page…',
      copied: 'Link copied to the clipboard.',
      copyFailed: 'Could not copy: copy the address from the address bar instead.',
      type: (/** @type {string} */ n) => `${n} is not a PNG, JPEG, WebP or GIF image.`,
      big: (/** @type {string} */ n, /** @type {string} */ max) => `${n} is too large: at most ${max}.`,
      tooBig: (/** @type {string} */ n) => `${n} is larger than this server takes.`,
      quota: 'This site’s uploads for today are used up. Try again tomorrow.',
      refused: (/** @type {string} */ m) => `The image was refused: ${m}`,
      rate: (/** @type {number} */ s) => `Too many uploads. Try again in ${s} s.`,
      network: 'Network error: the image was not uploaded. Check your connection and try again.',
      offline: 'You are offline: the image was not uploaded. Try again when the connection is back.',
      readOnly: 'This site does not take uploads from visitors.',
      session: (/** @type {string} */ m) => `Could not start a session: ${m}`,
    },
    ja: {
      dark: 'ダークモード',
      light: 'ライトモード',
      title: 'スクリーンショットを共有',
      lead: '画像を貼り付け・ドロップ・選択してください。専用のページとリンクができ、開いた人は誰でもライブでコメントできます。',
      drop: 'ここに画像を貼り付けるかドロップ',
      paste: '貼り付け:',
      types: 'PNG、JPEG、WebP、GIF',
      pick: '画像を選ぶ',
      uploading: 'アップロード中',
      footer: 'ここで共有した画像は、リンクを知っている人なら誰でも見られます。コメントも公開されます。',
      another: '別の画像を共有',
      shared: '共有されたスクリーンショット',
      copy: 'リンクをコピー',
      shotAlt: '共有されたスクリーンショット',
      caption: '画像をクリックまたはタップすると、その場所にコメントできます（キーボード: フォーカスして Enter）。リンクを開いている人全員に、コメントがすぐ表示されます。',
      footerShare: 'この画像は、リンクを知っている人なら誰でも見られます。コメントも公開されます。',
      uploadingTo: (/** @type {number} */ p) => `アップロード中: ${p} %`,
      uploaded: 'アップロードしました。ページを開いています…',
      copied: 'リンクをクリップボードにコピーしました。',
      copyFailed: 'コピーできませんでした。アドレスバーからコピーしてください。',
      type: (/** @type {string} */ n) => `${n} は PNG、JPEG、WebP、GIF の画像ではありません。`,
      big: (/** @type {string} */ n, /** @type {string} */ max) => `${n} は大きすぎます（${max} まで）。`,
      tooBig: (/** @type {string} */ n) => `${n} はこのサーバーが受け付けるサイズを超えています。`,
      quota: 'このサイトの今日のアップロード量の上限に達しました。明日またお試しください。',
      refused: (/** @type {string} */ m) => `画像は受け付けられませんでした: ${m}`,
      rate: (/** @type {number} */ s) => `アップロードが多すぎます。${s} 秒後にお試しください。`,
      network: 'ネットワークエラー: 画像はアップロードされていません。接続を確かめてもう一度お試しください。',
      offline: 'オフラインです。画像はアップロードされていません。接続が戻ってからお試しください。',
      readOnly: 'このサイトは訪問者からのアップロードを受け付けていません。',
      session: (/** @type {string} */ m) => `セッションを開始できませんでした: ${m}`,
    },
  };
  const ja = (navigator.language || 'en').toLowerCase().startsWith('ja');
  const t = ja ? STRINGS.ja : STRINGS.en;

  /** @param {string} id */
  const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

  // The pages are written in English; other languages replace the text of every [data-t].
  if (ja) {
    document.documentElement.lang = 'ja';
    for (const el of document.querySelectorAll('[data-t]')) {
      const s = /** @type {Record<string, unknown>} */ (t)[el.getAttribute('data-t') || ''];
      if (typeof s === 'string') el.textContent = s;
    }
    for (const el of document.querySelectorAll('[data-t-alt]')) {
      const s = /** @type {Record<string, unknown>} */ (t)[el.getAttribute('data-t-alt') || ''];
      if (typeof s === 'string') el.setAttribute('alt', s);
    }
  }

  // ------------------------------------------------------------ theme

  // As on the demo page: the system's choice, or the button's, which the widget follows too.
  const themeBtn = $('theme');
  const prefersDark = matchMedia('(prefers-color-scheme: dark)').matches;
  const isDark = () => document.body.classList.contains('dark') || (prefersDark && !document.body.classList.contains('light'));
  const showTheme = () => {
    themeBtn.textContent = isDark() ? t.light : t.dark;
    themeBtn.setAttribute('aria-pressed', String(isDark()));
  };
  themeBtn.addEventListener('click', () => {
    const dark = !isDark();
    document.body.classList.toggle('dark', dark);
    document.body.classList.toggle('light', !dark);
    const img = document.getElementById('shot');
    const chat = /** @type {any} */ (window).ImageChat;
    if (img && chat && img.dataset.imagechatTenant) chat.attach(img, { tenantId: img.dataset.imagechatTenant, urlId: img.dataset.imagechatUrlId }).update({ theme: dark ? 'dark' : 'light' });
    showTheme();
  });
  showTheme();

  if (document.body.classList.contains('share')) sharePage();
  else newPage();

  // ------------------------------------------------------------ /s/{id}

  function sharePage() {
    const copy = $('copy');
    const said = $('copied');
    copy.addEventListener('click', async () => {
      said.textContent = '';
      let ok = false;
      try {
        await navigator.clipboard.writeText(location.href);
        ok = true;
      } catch (_) {
        // No clipboard API (a plain-http address) or no permission: the old way, through a selected text.
        const ta = document.createElement('textarea');
        ta.className = 'sr';
        ta.value = location.href;
        document.body.append(ta);
        ta.select();
        try {
          ok = document.execCommand('copy');
        } catch (_) {
          ok = false;
        }
        ta.remove();
        copy.focus();
      }
      // A polite status: screen readers hear that it worked without losing their place.
      said.textContent = ok ? t.copied : t.copyFailed;
    });
  }

  // ------------------------------------------------------------ /s/new

  function newPage() {
    const tenant = new URLSearchParams(location.search).get('tenant') || 'demo';
    const server = location.origin;
    // The widget's own key: the uploader is the same visitor on the screenshot's page.
    const storeKey = `imagechat:${server}:${tenant}`;
    const zone = $('drop');
    const input = /** @type {HTMLInputElement} */ ($('file'));
    const progress = $('progress');
    const bar = /** @type {HTMLProgressElement} */ ($('bar'));
    const pct = $('pct');
    const status = $('status');
    const error = $('error');
    const preview = /** @type {HTMLImageElement} */ ($('preview'));
    let busy = false;

    /** @param {string} msg */
    const fail = (msg) => {
      busy = false;
      zone.classList.remove('busy');
      progress.hidden = true;
      status.textContent = '';
      error.textContent = msg;
      error.hidden = false;
    };

    /** @returns {Promise<{token: string, canWrite: boolean, expiresAt: number, uploadMaxBytes?: number}>} */
    async function session() {
      try {
        const s = JSON.parse(localStorage.getItem(storeKey) || 'null');
        if (s && s.token && s.expiresAt > Date.now() + 60000) return s;
      } catch (_) {
        /* storage unavailable: fetch a session */
      }
      const res = await fetch(`${server}/api/v1/sessions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tenantId: tenant, sso: null }) });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error((data.error && data.error.message) || res.statusText || String(res.status));
      try {
        localStorage.setItem(storeKey, JSON.stringify(data));
      } catch (_) {
        /* not kept */
      }
      return data;
    }

    /**
     * The file as the raw body of POST /api/v1/uploads?purpose=page, with progress.
     * @param {File} file @param {string} token @returns {Promise<{status: number, data: any, retry: number}>}
     */
    function post(file, token) {
      return new Promise((resolve) => {
        const x = new XMLHttpRequest();
        x.open('POST', `${server}/api/v1/uploads?purpose=page`);
        x.setRequestHeader('Authorization', `Bearer ${token}`);
        x.setRequestHeader('Content-Type', file.type);
        x.upload.onprogress = (e) => {
          if (!e.lengthComputable) return;
          const p = Math.round((e.loaded / e.total) * 100);
          bar.value = p;
          pct.textContent = `${p} %`;
          bar.setAttribute('aria-valuetext', t.uploadingTo(p));
        };
        x.onload = () => {
          let data = null;
          try {
            data = JSON.parse(x.responseText);
          } catch (_) {
            /* not JSON: the status says enough */
          }
          resolve({ status: x.status, data, retry: Number(x.getResponseHeader('Retry-After')) || 0 });
        };
        x.onerror = x.onabort = x.ontimeout = () => resolve({ status: 0, data: null, retry: 0 });
        x.send(file);
      });
    }

    /** Checks, uploads and opens the image's page. @param {File | undefined} file */
    async function send(file) {
      if (!file || busy) return;
      const name = file.name || 'image';
      error.hidden = true;
      if (!TYPES.includes(file.type)) return fail(t.type(name));
      if (!navigator.onLine) return fail(t.offline);
      busy = true;
      zone.classList.add('busy');
      bar.value = 0;
      pct.textContent = '0 %';
      progress.hidden = false;
      status.textContent = t.uploadingTo(0);
      if (preview.src.startsWith('blob:')) URL.revokeObjectURL(preview.src);
      preview.src = URL.createObjectURL(file);
      preview.hidden = false;
      let res = { status: 0, data: /** @type {any} */ (null), retry: 0 };
      for (let i = 0; i < 2; i++) {
        let s;
        try {
          s = await session();
        } catch (e) {
          return fail(e instanceof TypeError ? t.network : t.session(/** @type {Error} */ (e).message));
        }
        if (!s.canWrite) return fail(t.readOnly);
        const max = s.uploadMaxBytes || DEFAULT_MAX_BYTES;
        if (file.size > max) return fail(t.big(name, size(max)));
        res = await post(file, s.token);
        if (res.status !== 401) break;
        // A refused token (expired, or the server's secret changed): a fresh session, once.
        try {
          localStorage.removeItem(storeKey);
        } catch (_) {
          /* nothing kept */
        }
      }
      const up = res.data && res.data.upload;
      if (res.status === 201 && up) {
        bar.value = 100;
        pct.textContent = '100 %';
        status.textContent = t.uploaded;
        location.assign(`/s/${encodeURIComponent(up.id)}`);
        return;
      }
      const err = (res.data && res.data.error) || {};
      const msg = typeof err === 'string' ? res.data.message || err : err.message || err.code;
      fail(
        res.status === 0
          ? navigator.onLine
            ? t.network
            : t.offline
          : res.status === 413
            ? t.tooBig(name)
            : res.status === 429
              ? res.retry > 300
                ? t.quota
                : t.rate(res.retry || 1)
              : t.refused(msg || String(res.status)),
      );
    }

    input.addEventListener('change', () => {
      send(input.files ? input.files[0] : undefined);
      input.value = '';
    });
    // A paste anywhere on the page (Ctrl+V, ⌘V, or the phone's paste) takes the first image.
    document.addEventListener('paste', (e) => {
      const file = [...(e.clipboardData ? e.clipboardData.files : [])][0];
      if (!file) return;
      e.preventDefault();
      send(file);
    });
    // The whole page takes a drop; the zone shows it while files are dragged over the window.
    const hasFiles = (/** @type {DragEvent} */ e) => !!e.dataTransfer && [...e.dataTransfer.types].includes('Files');
    for (const type of ['dragenter', 'dragover']) {
      document.addEventListener(type, (e) => {
        if (!hasFiles(/** @type {DragEvent} */ (e))) return;
        e.preventDefault();
        zone.classList.add('over');
      });
    }
    document.addEventListener('dragleave', (e) => {
      if (!e.relatedTarget) zone.classList.remove('over');
    });
    document.addEventListener('drop', (e) => {
      zone.classList.remove('over');
      if (!hasFiles(e)) return;
      e.preventDefault();
      send(/** @type {DataTransfer} */ (e.dataTransfer).files[0]);
    });
  }
})();
