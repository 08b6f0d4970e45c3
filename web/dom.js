// dom.js — small DOM helpers. Every value that came from the server is set as text
// (textContent / text nodes), never as HTML, so event data cannot inject markup.

// h('tr', {class: 'x', onclick: fn, dataset: {id: 1}}, 'text', node, [more, nodes])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'class') el.className = v;
      else if (k in el && typeof v !== 'string') el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// Replaces el's children; like h(), it skips null/false and flattens arrays (the DOM's own
// replaceChildren would print them as "null" and "a,b").
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

// Replaces the content of a status line (role=status/alert elements live in index.html).
export function say(el, text, kind = '') {
  el.textContent = text || '';
  el.dataset.kind = kind;
  el.hidden = !text;
}

export function fmtNum(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return typeof n === 'number' ? n.toLocaleString('en-US') : String(n);
}

export function fmtMs(v) {
  if (v === null || v === undefined) return '—';
  return v < 10 ? `${v.toFixed(2)} ms` : `${Math.round(v).toLocaleString('en-US')} ms`;
}

export function fmtPct(v) {
  if (v === null || v === undefined) return '—';
  const p = v <= 1 ? v * 100 : v; // rates come as fractions; tolerate percentages
  return `${p >= 99.95 || p === 0 ? p.toFixed(0) : p.toFixed(1)} %`;
}

// "04:23:50.479" for today, else the date too; the full ISO time goes in a title.
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const t = d.toLocaleTimeString('en-GB', { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  const today = new Date().toDateString() === d.toDateString();
  return today ? t : `${d.toISOString().slice(0, 10)} ${t}`;
}

export function timeEl(iso) {
  return h('time', { datetime: iso || '', title: iso || '' }, fmtTime(iso));
}

export function ago(iso) {
  if (!iso) return '—';
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

// Pretty JSON with light syntax colouring, built from text nodes.
export function jsonView(value, { label } = {}) {
  const pre = h('pre', { class: 'json', tabindex: '0', 'aria-label': label || 'JSON' });
  const text = JSON.stringify(value, null, 2);
  if (text === undefined) { pre.textContent = 'undefined'; return pre; }
  const re = /("(?:[^"\\]|\\.)*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  let m;
  const frag = document.createDocumentFragment();
  while ((m = re.exec(text))) {
    if (m.index > last) frag.append(text.slice(last, m.index));
    if (m[1]) {
      frag.append(h('span', { class: m[2] ? 'j-key' : 'j-str' }, m[1]));
      if (m[2]) frag.append(m[2]);
    } else if (m[3]) {
      frag.append(h('span', { class: 'j-lit' }, m[3]));
    } else {
      frag.append(h('span', { class: 'j-num' }, m[4]));
    }
    last = re.lastIndex;
  }
  frag.append(text.slice(last));
  pre.append(frag);
  return pre;
}

// Parses "a, b c" into ['a', 'b', 'c'].
export function splitList(s) {
  return String(s || '').split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
}

// A table with a caption-less header row; rows are appended by the caller.
export function table(headers, { label, className = '' } = {}) {
  const tbody = h('tbody');
  const el = h('table', { class: `grid ${className}`, 'aria-label': label },
    h('thead', null, h('tr', null, headers.map((x) => {
      const [text, cls] = Array.isArray(x) ? x : [x, ''];
      return h('th', { scope: 'col', class: cls }, text);
    }))),
    tbody);
  return { el, tbody };
}

export function badge(text, kind = text) {
  return h('span', { class: `badge badge-${String(kind).replace(/[^a-z0-9_-]/gi, '')}` }, text);
}

// Bounded-concurrency map over items (keeps a panel from opening 50 requests at once).
export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let i = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (i < items.length) {
      const k = i++;
      out[k] = await fn(items[k], k);
    }
  });
  await Promise.all(workers);
  return out;
}
