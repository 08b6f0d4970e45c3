// jsondiff.js — a small structural JSON diff for the schema browser.
//
// diff(a, b) → [{op: 'add'|'remove'|'change', path, from?, to?}], paths as JSON Pointers
// (RFC 6901), in document order. Objects are compared key by key (keys sorted). Arrays are
// aligned by a longest common subsequence of deeply-equal items, so inserting one entry
// into `required` reads as one addition, not a cascade of changes; inside a run of
// unmatched items, items at the same offset that are both containers are diffed
// recursively, other pairs are changes, and the rest are additions or removals.
// A removal's path points into `a` (the old document); every other path into `b`.

export function diff(a, b, path = '') {
  const out = [];
  walk(a, b, path, out);
  return out;
}

const esc = (k) => '/' + String(k).replace(/~/g, '~0').replace(/\//g, '~1');
const kind = (v) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
const isContainer = (v) => v !== null && typeof v === 'object';

export function equal(a, b) {
  if (a === b) return true;
  const ka = kind(a);
  if (ka !== kind(b)) return false;
  if (ka === 'array') return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  if (ka === 'object') {
    const keys = Object.keys(a);
    if (keys.length !== Object.keys(b).length) return false;
    return keys.every((k) => Object.prototype.hasOwnProperty.call(b, k) && equal(a[k], b[k]));
  }
  return false; // numbers, strings, booleans already compared with ===
}

function walk(a, b, path, out) {
  if (equal(a, b)) return;
  const ka = kind(a);
  const kb = kind(b);
  if (ka === 'object' && kb === 'object') {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of keys) {
      const inA = Object.prototype.hasOwnProperty.call(a, k);
      const inB = Object.prototype.hasOwnProperty.call(b, k);
      const p = path + esc(k);
      if (inA && !inB) out.push({ op: 'remove', path: p, from: a[k] });
      else if (!inA && inB) out.push({ op: 'add', path: p, to: b[k] });
      else walk(a[k], b[k], p, out);
    }
    return;
  }
  if (ka === 'array' && kb === 'array') {
    diffArrays(a, b, path, out);
    return;
  }
  out.push({ op: 'change', path, from: a, to: b });
}

// Index pairs [i, j] of a longest common subsequence (deep equality). Arrays in schemas are
// short; past MAX_CELLS the alignment falls back to position by position.
const MAX_CELLS = 250000;

function lcs(a, b) {
  const n = a.length;
  const m = b.length;
  if (n * m > MAX_CELLS) {
    const pairs = [];
    for (let i = 0; i < Math.min(n, m); i++) if (equal(a[i], b[i])) pairs.push([i, i]);
    return pairs;
  }
  const t = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      t[i][j] = equal(a[i], b[j]) ? t[i + 1][j + 1] + 1 : Math.max(t[i + 1][j], t[i][j + 1]);
    }
  }
  const pairs = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (equal(a[i], b[j])) { pairs.push([i, j]); i++; j++; } else if (t[i + 1][j] >= t[i][j + 1]) i++; else j++;
  }
  return pairs;
}

function diffArrays(a, b, path, out) {
  const pairs = lcs(a, b);
  pairs.push([a.length, b.length]); // sentinel: flush the tail
  let i = 0;
  let j = 0;
  for (const [pi, pj] of pairs) {
    // a[i..pi) and b[j..pj) are the unmatched run before this match.
    const na = pi - i;
    const nb = pj - j;
    const paired = Math.min(na, nb);
    for (let k = 0; k < paired; k++) {
      const x = a[i + k];
      const y = b[j + k];
      if (isContainer(x) && isContainer(y) && kind(x) === kind(y)) walk(x, y, path + esc(j + k), out);
      else out.push({ op: 'change', path: path + esc(j + k), from: x, to: y });
    }
    for (let k = paired; k < na; k++) out.push({ op: 'remove', path: path + esc(i + k), from: a[i + k] });
    for (let k = paired; k < nb; k++) out.push({ op: 'add', path: path + esc(j + k), to: b[j + k] });
    i = pi + 1;
    j = pj + 1;
  }
}
