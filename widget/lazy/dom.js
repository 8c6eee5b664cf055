// DOM helpers the lazy files share (imported from ./dom.js, which the
// server serves beside them).
// SPDX-License-Identifier: MIT OR Apache-2.0

/**
 * An element with attributes and text content (never HTML).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag @param {Record<string, string>} [attrs] @param {string} [text] @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, text) {
  const el = document.createElement(tag);
  for (const k in attrs) el.setAttribute(k, attrs[k]);
  if (text) el.textContent = text;
  return el;
}

/** A button of the widget's look (class `b`) that says `text`. @param {string} text @param {Record<string, string>} [attrs] */
export const button = (text, attrs) => h('button', Object.assign({ class: 'b', type: 'button' }, attrs), text);

/** A 20×20 icon of one path, hidden from assistive technology. @param {string} d the path */
export function icon(d) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 20 20');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', d);
  svg.append(path);
  return svg;
}
