'use strict';
// `where` (server/filter.h): conditions on JSON Pointers into the stored envelope, taken by
// every reader. Live delivery matches in memory on the envelope's text (the appender's for
// this instance's commits), a WebSocket or SSE catch-up matches in memory on the text
// PostgreSQL gives back, and GET /v1/events (pages and NDJSON), replays and projections
// become SQL: the four must agree, event for event.
//
// The agreement: a corpus of events with varied data (strings with escapes and non-ASCII
// text, integers, reals written as 1.0 / 0.1 / 1e3 / 1e300, booleans, null, nested objects,
// arrays, keys with '/' '~' and '"', missing fields, metadata) is published while one live
// WebSocket subscription per `where` case listens; then, case by case, the live ids, the
// pages of GET /v1/events?where=, its NDJSON, and a WebSocket catch-up (from_position 0)
// are each compared with the set a JavaScript evaluation of the same conditions picks from
// the stored envelopes. Then SSE, the long poll, replays and projections with `where`; every
// malformed condition answering 400 invalid_filter naming it; and tenant sealing.
//
// Completion without timing: a connection's messages are queued in the hub's delivery order,
// so a fence event on an unfiltered subscription of the same connection proves every live
// delivery before it arrived. Catch-ups run one at a time (SLUICE_TENANT_CATCHUPS=1): a
// second catch-up subscribed behind one is accepted only once the first has queued all its
// history, so its `subscribed` answer marks the end of the first's events.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const { Peer, Stream } = require('./lib/sealed');
const redis = require('../lib/redis.js');

const WAIT_MS = 30000;

// ---------------------------------------------------------------- the reference evaluator

// {found, value} for a JSON Pointer into a document (RFC 6901: an array index is decimal
// digits without a leading zero).
function resolve(doc, ptr) {
  const segs = ptr.slice(1).split('/').map((x) => x.replace(/~1/g, '/').replace(/~0/g, '~'));
  let v = doc;
  for (const seg of segs) {
    if (v === null || typeof v !== 'object') return { found: false };
    if (Array.isArray(v)) {
      if (!/^(0|[1-9][0-9]*)$/.test(seg) || Number(seg) >= v.length) return { found: false };
      v = v[Number(seg)];
    } else {
      if (!Object.prototype.hasOwnProperty.call(v, seg)) return { found: false };
      v = v[seg];
    }
  }
  return { found: true, value: v };
}

// JSON equality, numbers by value (JSON.parse made every number a double).
function jsonEqual(a, b) {
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual(a[k], b[k]));
}

// Strings compare byte by byte in UTF-8 (code point order), not as UTF-16 units.
const byteCmp = (a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

// -1/0/1, or null when the kinds differ (the condition fails).
function orderCmp(v, want) {
  if (typeof want === 'number') return typeof v === 'number' ? Math.sign(v - want) : null;
  return typeof v === 'string' ? byteCmp(v, want) : null;
}

function holds(cond, env) {
  const { found, value } = resolve(env, cond.path);
  const w = cond.value;
  switch (cond.op) {
    case 'exists': return found === w;
    case 'ne': return !found || !jsonEqual(value, w);
    case 'eq': return found && jsonEqual(value, w);
    case 'in': return found && w.some((x) => jsonEqual(value, x));
    case 'prefix': return found && typeof value === 'string' && value.startsWith(w);
    default: {
      if (!found) return false;
      const r = orderCmp(value, w);
      if (r === null) return false;
      return { gt: r > 0, gte: r >= 0, lt: r < 0, lte: r <= 0 }[cond.op];
    }
  }
}

const matchesWhere = (where, env) => where.every((c) => holds(c, env));

// ---------------------------------------------------------------- helpers

const P = 'wh' + h.rand(3);            // the corpus's type prefix
const FENCE_TYPE = 'fence' + h.rand(3) + '.done';
const NOTHING_TYPE = 'nothing' + h.rand(3) + '.never';
const YEAR = String(new Date().getUTCFullYear());

let s;
let A; // tenant default (the admin token)
let B; // tenant-b
let bKey;
let redisPrefix;

async function pub(client, envs) {
  const res = await client.publish(envs);
  h.assertStatus(res, 201);
  return Array.isArray(envs) ? res.body.events : [res.body];
}

// Publishes envelopes given as JSON text (so a number can be written 1.0 or 1e3, a string
// with \u escapes) as one batch.
async function pubText(client, texts) {
  const res = await client.request('POST', '/v1/events', {
    body: '[' + texts.join(',') + ']', headers: { 'Content-Type': 'application/json' },
  });
  h.assertStatus(res, 201);
  return res.body.events;
}

async function ndjson(client, query) {
  const res = await client.get('/v1/events?' + new URLSearchParams(query), { headers: { Accept: 'application/x-ndjson' }, timeout: 60000 });
  h.assertStatus(res, 200);
  return res.text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

const whereQ = (where) => ({ where: typeof where === 'string' ? where : JSON.stringify(where) });

// A case's `where` as sent: its own JSON text when it has one (a real written 1.0).
const whereText = ([, where, raw]) => raw || JSON.stringify(where);

// Subscribes with `where` given as JSON text; resolves with the answer for `id`.
async function subscribeText(peer, id, where, extra = {}) {
  const head = JSON.stringify({ op: 'subscribe', id, ...extra });
  peer.ws.send(head.slice(0, -1) + ',"where":' + where + '}');
  return peer.until((m) => (m.op === 'subscribed' || m.op === 'error') && m.id === id, `answer to subscribe ${id}`);
}

// Subscribes on `peer`, retrying while the tenant's one catch-up slot is taken; a fresh id
// per attempt (the peer finds answers by id). Resolves with the accepted id.
async function subscribeRetry(peer, base, sub, where) {
  for (let attempt = 0; ; attempt++) {
    const id = `${base}-${attempt}`;
    const m = where === undefined ? await peer.subscribe({ id, ...sub }) : await subscribeText(peer, id, where, sub);
    if (m.op === 'subscribed') return id;
    assert.equal(m.code, 'rate_limited', `subscribe ${JSON.stringify(sub)} answered ${JSON.stringify(m)}`);
    assert.ok(attempt < 2000, 'the catch-up slot frees');
    await h.sleep(10);
  }
}

// Every event a WebSocket catch-up (from_position 0) with `where` delivers: the events of
// the subscription before a second catch-up's `subscribed` answer.
async function catchUp(client, token, where, { types } = {}) {
  const peer = await Peer.open(s, { token });
  try {
    const id = await subscribeRetry(peer, 'c', { from_position: 0, ...(types ? { types } : {}) },
      typeof where === 'string' ? where : JSON.stringify(where));
    const closer = await subscribeRetry(peer, 'z', { types: [NOTHING_TYPE], from_position: 0 });
    const end = peer.msgs.findIndex((m) => m.op === 'subscribed' && m.id === closer);
    const before = peer.msgs.slice(0, end);
    const errors = before.filter((m) => m.op === 'error' && m.code !== 'rate_limited');
    assert.deepEqual(errors, [], 'no error during the catch-up');
    return before.filter((m) => m.op === 'event' && m.sub === id).map((m) => m.event);
  } finally {
    peer.close();
    await peer.waitClose(5000);
  }
}

// "what: got …, expected …; missing […], unexpected […]" over tags, or null when equal.
function diff(what, got, want) {
  const g = new Set(got);
  const w = new Set(want);
  const missing = want.filter((x) => !g.has(x));
  const extra = got.filter((x) => !w.has(x));
  const dup = got.length !== g.size;
  if (!missing.length && !extra.length && !dup) return null;
  return `${what}: got ${got.length}, expected ${want.length}; missing ${JSON.stringify(missing)}; unexpected ${JSON.stringify(extra)}${dup ? '; duplicates' : ''}`;
}

function assertIncreasing(evs, what) {
  for (let i = 1; i < evs.length; i++) assert.ok(evs[i].position > evs[i - 1].position, `${what}: in position order`);
}

before(async () => {
  redisPrefix = `itwh${h.rand(4)}:`;
  s = await h.startSluice({ name: 'where', env: { SLUICE_REDIS_PREFIX: redisPrefix, SLUICE_TENANT_CATCHUPS: '1' } });
  A = s.client();
  bKey = await h.createKey(s, 'tenant-b', ['read', 'publish', 'subscribe', 'admin'], 'b');
  B = s.client(bKey.token);
});

after(async () => {
  if (s) await s.stop().finally(() => s.cleanup());
  if (redisPrefix) await redis.deletePrefix(process.env.SLUICE_REDIS_URL, redisPrefix);
});

// ---------------------------------------------------------------- the corpus

const T = (x) => `${P}.${x}`;
const S = (x) => `${P}-${x}`;
const L = 'L'.repeat(300);

// tag → envelope fields besides data, and data as JSON text (written as given).
const CORPUS = [
  ['pdf-big', { type: T('file.uploaded'), stream: S('files'), key: 'f1', user_id: 'alice', metadata: { origin: 'web', trace: { id: 't1' } } },
    JSON.stringify({ mime_type: 'application/pdf', file_size: 2000000, name: 'report.pdf', tags: ['a', 'b', 'c'], owner: { id: 'u1', plan: 'pro' }, ok: true, flag: null, s: 'abc' })],
  ['pdf-edge', { type: T('file.uploaded'), stream: S('files'), key: 'f2', user_id: 'bob' },
    JSON.stringify({ mime_type: 'application/pdf', file_size: 1000000, name: 'edge.pdf', tags: ['b'], ok: false, s: 'ABC' })],
  ['png-real', { type: T('file.uploaded'), stream: S('files'), user_id: 'bob', metadata: { origin: 'api' } },
    '{"mime_type":"image/png","file_size":1000001.5,"name":"pic.png","tags":[],"flag":false,"s":""}'],
  ['txt-strsize', { type: T('file.uploaded'), stream: S('files'), correlation_id: 'corr-1' },
    JSON.stringify({ mime_type: 'text/plain', file_size: '2000000', name: 'notes.txt', flag: true, ok: 'true', s: 'été' })],
  ['one-real', { type: T('num.real'), stream: S('nums') },
    '{"file_size":1.0,"n":1.0,"obj":{"a":1.0,"b":[1.0,2]},"s":"\\ud83d\\ude00"}'],
  ['one-int', { type: T('num.int'), stream: S('nums') },
    JSON.stringify({ file_size: 1, n: 1, obj: { b: [1, 2], a: 1 }, s: '\uE000' })],
  ['tenth', { type: T('num.real'), stream: S('nums') }, '{"file_size":0.1,"n":0.1,"s":"a"}'],
  ['kilo-exp', { type: T('num.real'), stream: S('nums') }, '{"file_size":1e3,"n":1E+3}'],
  ['kilo-int', { type: T('num.int'), stream: S('nums') }, '{"file_size":1000,"n":-1000}'],
  ['zero', { type: T('num.int'), stream: S('nums') }, '{"file_size":0,"n":-0}'],
  ['neg', { type: T('num.real'), stream: S('nums') }, '{"file_size":-5,"n":-2.5}'],
  ['big', { type: T('num.big'), stream: S('nums') }, '{"big":1e300,"tiny":1e-300,"n":123456789012}'],
  ['negbig', { type: T('num.big'), stream: S('nums') }, '{"big":-1e300,"tiny":-1e-300,"n":0.5e1}'],
  ['escaped', { type: T('text.escaped'), stream: S('text'), source: 'svc-a' },
    '{"name":"Caf\\u00e9 \\"quoted\\" back\\\\slash \\/ tab\\t","uni":"\\u00e9t\\u00e9","q\\"k":"v","a\\/b":1,"s":"\\u4e2d\\u6587"}'],
  ['unicode', { type: T('text.unicode'), stream: S('text'), source: 'svc-b' },
    JSON.stringify({ name: 'Café "quoted" back\\slash / tab\t', uni: 'été', emoji: '😀 grin', s: 'z' })],
  ['tilde', { type: T('text.keys'), stream: S('text') },
    JSON.stringify({ 'a/b': 2, 'm~n': 3, '': 'empty-key', 'q"k': 'w' })],
  ['nested', { type: T('doc.nested'), stream: S('docs'), key: 'd1', user_id: 'carol' },
    JSON.stringify({ owner: { plan: 'pro', id: 'u1' }, quota: { used: 5, max: 10 }, items: [{ sku: 'x', qty: 2 }, { sku: 'y', qty: 1 }] })],
  ['nested2', { type: T('doc.nested'), stream: S('docs'), key: 'd1', user_id: 'carol' },
    JSON.stringify({ owner: { id: 'u2', plan: 'free', extra: true }, items: [{ sku: 'y', qty: 3 }] })],
  ['tags-xyz', { type: T('doc.tags'), stream: S('docs') }, JSON.stringify({ tags: ['x', 'y', 'z'], 0: 'zero-key' })],
  ['tags-objkeys', { type: T('doc.tags'), stream: S('docs') }, JSON.stringify({ tags: { '01': 'o1', '-1': 'm1', 0: 'z', 1: 'one' } })],
  ['mixed', { type: T('doc.mixed'), stream: S('docs') }, JSON.stringify({ tags: [1, '1', true, null, { k: 1 }, [1]] })],
  ['long', { type: T('text.long'), stream: S('text') }, JSON.stringify({ name: L + 'end', tags: [L], s: L })],
  ['nulls', { type: T('doc.nulls'), stream: S('docs') }, JSON.stringify({ flag: null, mime_type: null, owner: null })],
  ['empty', { type: T('doc.empty'), stream: S('docs') }, '{}'],
  ['meta', { type: T('doc.meta'), stream: S('docs'), metadata: { origin: 'api', trace: { id: 't2' }, level: 3 } }, '{"n":3}'],
  ['note1', { type: T('note.added'), stream: S('notes'), correlation_id: 'corr-1', causation_id: 'cause-1', source: 'svc-a', user_id: 'alice' },
    JSON.stringify({ text: 'hello', n: 7 })],
  ['note2', { type: T('note.added'), stream: S('notes'), correlation_id: 'corr-2', source: 'svc-b', key: 'n1' },
    JSON.stringify({ text: 'Hello', n: 8, tags: ['a'] })],
  ['deleted', { type: T('file.deleted'), stream: S('files'), key: 'f1', user_id: 'alice' },
    JSON.stringify({ mime_type: 'application/pdf', reason: 'gone' })],
  ['deleted2', { type: T('file.deleted'), stream: S('files'), key: 'f1' }, JSON.stringify({ reason: 'again', file_size: null })],
  ['bigobj', { type: T('num.big'), stream: S('nums') }, '{"o":{"big":1e300,"t":1e-300,"i":[1,2.5]},"tags":[[1,2],{"k":[3]}]}'],
  ['control', { type: T('text.control'), stream: S('text') }, '{"name":"a\\u0001b\\nc\\u001f","cl\\u00e9":"v\\u00e9","s":"\\u007f"}'],
  ['deep', { type: T('doc.deep'), stream: S('docs') }, JSON.stringify({ a: { b: { c: { d: { e: { f: { g: { h: [0, { i: 'deep' }] } } } } } } } })],
];

function envText(tag, fields, dataText, idPrefix = P) {
  return JSON.stringify({ id: `${idPrefix}-${tag}`, ...fields }).slice(0, -1) + ',"data":' + dataText + '}';
}

// The `where` cases: [name, where]. Each is a live subscription, a catch-up, pages, NDJSON.
const CASES = [
  ['contract example', [{ path: '/data/mime_type', op: 'eq', value: 'application/pdf' }, { path: '/data/file_size', op: 'gt', value: 1000000 }]],
  ['eq string', [{ path: '/data/mime_type', op: 'eq', value: 'application/pdf' }]],
  ['ne string (absent holds)', [{ path: '/data/mime_type', op: 'ne', value: 'application/pdf' }]],
  ['in strings', [{ path: '/data/mime_type', op: 'in', value: ['application/pdf', 'image/png'] }]],
  ['in mixed kinds', [{ path: '/data/flag', op: 'in', value: [null, true, 'x', 1] }]],
  ['gt number', [{ path: '/data/file_size', op: 'gt', value: 1000000 }]],
  ['gte number', [{ path: '/data/file_size', op: 'gte', value: 1000000 }]],
  ['lt 1', [{ path: '/data/file_size', op: 'lt', value: 1 }]],
  ['lte 1', [{ path: '/data/file_size', op: 'lte', value: 1 }]],
  ['eq 1 (1.0 too)', [{ path: '/data/file_size', op: 'eq', value: 1 }]],
  ['eq 1.5 real', [{ path: '/data/file_size', op: 'eq', value: 1000001.5 }]],
  ['eq 1000 (1e3 too)', [{ path: '/data/n', op: 'eq', value: 1000 }]],
  ['eq 1000.0, a real', [{ path: '/data/file_size', op: 'eq', value: 1000 }], '[{"path":"/data/file_size","op":"eq","value":1000.0}]'],
  ['lte 1.0, a real', [{ path: '/data/n', op: 'lte', value: 1 }], '[{"path":"/data/n","op":"lte","value":1.0}]'],
  ['object eq with reals', [{ path: '/data/obj', op: 'eq', value: { a: 1, b: [1, 2] } }], '[{"path":"/data/obj","op":"eq","value":{"b":[1,2.0],"a":1.0}}]'],
  ['eq 0.1', [{ path: '/data/n', op: 'eq', value: 0.1 }]],
  ['gt 0.1 lt 1000', [{ path: '/data/n', op: 'gt', value: 0.1 }, { path: '/data/n', op: 'lt', value: 1000 }]],
  ['eq -0 / 0', [{ path: '/data/n', op: 'eq', value: 0 }]],
  ['eq 5 (0.5e1)', [{ path: '/data/n', op: 'eq', value: 5 }]],
  ['ne number (absent holds)', [{ path: '/data/n', op: 'ne', value: 1 }]],
  ['gt string on a mixed field', [{ path: '/data/file_size', op: 'gt', value: '1' }]],
  ['eq string vs numbers', [{ path: '/data/file_size', op: 'eq', value: '2000000' }]],
  ['gte empty string: strings only', [{ path: '/data/file_size', op: 'gte', value: '' }]],
  ['prefix', [{ path: '/data/mime_type', op: 'prefix', value: 'image/' }]],
  ['prefix on numbers never', [{ path: '/data/file_size', op: 'prefix', value: '1' }]],
  ['prefix empty', [{ path: '/data/s', op: 'prefix', value: '' }]],
  ['exists true (null counts)', [{ path: '/data/flag', op: 'exists', value: true }]],
  ['exists false', [{ path: '/data/flag', op: 'exists', value: false }]],
  ['eq null', [{ path: '/data/flag', op: 'eq', value: null }]],
  ['ne null', [{ path: '/data/flag', op: 'ne', value: null }]],
  ['ne true', [{ path: '/data/flag', op: 'ne', value: true }]],
  ['eq false', [{ path: '/data/ok', op: 'eq', value: false }]],
  ['eq "true" is not true', [{ path: '/data/ok', op: 'eq', value: 'true' }]],
  ['array index 0', [{ path: '/data/tags/0', op: 'eq', value: 'a' }]],
  ['array index 1 exists', [{ path: '/data/tags/1', op: 'exists', value: true }]],
  ['array index -1 (an object key only)', [{ path: '/data/tags/-1', op: 'exists', value: true }]],
  ['array index 01 (an object key only)', [{ path: '/data/tags/01', op: 'exists', value: true }]],
  ['array index 01 eq', [{ path: '/data/tags/01', op: 'ne', value: 'o1' }, { path: '/data/tags', op: 'exists', value: true }]],
  ['object key 0 and array index 0', [{ path: '/data/tags/0', op: 'exists', value: true }]],
  ['array index +1 and " 1" (object keys only)', [{ path: '/data/tags/+1', op: 'exists', value: false }, { path: '/data/tags/ 1', op: 'exists', value: false }, { path: '/data/tags', op: 'exists', value: true }]],
  ['array index -1 inside a path', [{ path: '/data/items/-1/sku', op: 'exists', value: true }]],
  ['nested arrays', [{ path: '/data/tags/0/1', op: 'eq', value: 2 }, { path: '/data/tags/1/k/0', op: 'gte', value: 3 }]],
  ['array of objects', [{ path: '/data/items/1/sku', op: 'eq', value: 'y' }]],
  ['array of objects gt', [{ path: '/data/items/0/qty', op: 'gt', value: 1 }]],
  ['array index out of range', [{ path: '/data/tags/5', op: 'exists', value: true }]],
  ['mixed array elements', [{ path: '/data/tags/4/k', op: 'eq', value: 1 }, { path: '/data/tags/5/0', op: 'eq', value: 1 }, { path: '/data/tags/3', op: 'eq', value: null }]],
  ['nested eq', [{ path: '/data/owner/id', op: 'eq', value: 'u1' }]],
  ['object eq (key order)', [{ path: '/data/owner', op: 'eq', value: { id: 'u1', plan: 'pro' } }]],
  ['object ne', [{ path: '/data/owner', op: 'ne', value: { plan: 'pro', id: 'u1' } }, { path: '/data/owner', op: 'exists', value: true }]],
  ['object eq, numbers by value (1 vs 1.0)', [{ path: '/data/obj', op: 'eq', value: { a: 1, b: [1, 2] } }]],
  ['array eq, numbers by value', [{ path: '/data/obj/b', op: 'eq', value: [1, 2] }]],
  ['in objects', [{ path: '/data/obj', op: 'in', value: [{ a: 2 }, { a: 1, b: [1, 2] }] }]],
  ['object eq with 1e300 and 1e-300 inside', [{ path: '/data/o', op: 'eq', value: { big: 1e300, t: 1e-300, i: [1, 2.5] } }]],
  ['in with 1e300', [{ path: '/data/o/big', op: 'in', value: [1, 1e300] }]],
  ['control characters', [{ path: '/data/name', op: 'eq', value: 'a\u0001b\nc\u001f' }]],
  ['non-ASCII key', [{ path: '/data/clé', op: 'eq', value: 'vé' }]],
  ['DEL character gt', [{ path: '/data/s', op: 'gte', value: '\u007f' }]],
  ['deep path', [{ path: '/data/a/b/c/d/e/f/g/h/1/i', op: 'eq', value: 'deep' }]],
  ['array eq', [{ path: '/data/tags', op: 'eq', value: ['b'] }]],
  ['empty array eq', [{ path: '/data/tags', op: 'eq', value: [] }]],
  ['escaped string eq', [{ path: '/data/name', op: 'eq', value: 'Café "quoted" back\\slash / tab\t' }]],
  ['\\u escapes eq', [{ path: '/data/uni', op: 'eq', value: 'été' }]],
  ['key with a quote', [{ path: '/data/q"k', op: 'eq', value: 'v' }]],
  ['key with a slash (~1)', [{ path: '/data/a~1b', op: 'gte', value: 1 }]],
  ['key with a tilde (~0)', [{ path: '/data/m~0n', op: 'eq', value: 3 }]],
  ['empty key', [{ path: '/data/', op: 'eq', value: 'empty-key' }]],
  ['strings by code point: gt U+E000', [{ path: '/data/s', op: 'gt', value: '\uE000' }]],
  ['strings by code point: lt emoji', [{ path: '/data/s', op: 'lt', value: '😀' }]],
  ['strings: gte a', [{ path: '/data/s', op: 'gte', value: 'a' }]],
  ['strings: lt a', [{ path: '/data/s', op: 'lt', value: 'a' }]],
  ['long string eq', [{ path: '/data/name', op: 'eq', value: L + 'end' }]],
  ['long string prefix and lt', [{ path: '/data/s', op: 'prefix', value: 'LLL' }, { path: '/data/tags/0', op: 'lte', value: L }]],
  ['1e300 gt', [{ path: '/data/big', op: 'gt', value: 1e299 }]],
  ['-1e300 lt', [{ path: '/data/big', op: 'lt', value: -1e299 }]],
  ['1e-300 gt 0', [{ path: '/data/tiny', op: 'gt', value: 0 }]],
  ['1e-300 eq', [{ path: '/data/tiny', op: 'eq', value: 1e-300 }]],
  ['-1e-300 lt 0', [{ path: '/data/tiny', op: 'lt', value: 0 }]],
  ['big integer eq', [{ path: '/data/n', op: 'eq', value: 123456789012 }]],
  ['/data eq {}', [{ path: '/data', op: 'eq', value: {} }]],
  ['/data exists false', [{ path: '/data', op: 'exists', value: false }]],
  ['/type eq', [{ path: '/type', op: 'eq', value: T('note.added') }]],
  ['/type prefix', [{ path: '/type', op: 'prefix', value: T('file.') }]],
  ['/type in, gt', [{ path: '/type', op: 'in', value: [T('doc.tags'), T('doc.mixed'), T('note.added')] }, { path: '/type', op: 'gt', value: T('doc.n') }]],
  ['/stream eq', [{ path: '/stream', op: 'eq', value: S('notes') }]],
  ['/stream ne', [{ path: '/stream', op: 'ne', value: S('notes') }]],
  ['/key exists (null counts)', [{ path: '/key', op: 'exists', value: true }]],
  ['/key eq null', [{ path: '/key', op: 'eq', value: null }]],
  ['/key eq, /version gt', [{ path: '/key', op: 'eq', value: 'f1' }, { path: '/version', op: 'gt', value: 1 }]],
  ['/key ne', [{ path: '/key', op: 'ne', value: 'f1' }]],
  ['/version eq null', [{ path: '/version', op: 'eq', value: null }]],
  ['/user_id eq', [{ path: '/user_id', op: 'eq', value: 'alice' }]],
  ['/user_id ne', [{ path: '/user_id', op: 'ne', value: 'alice' }]],
  ['/user_id eq null', [{ path: '/user_id', op: 'eq', value: null }]],
  ['/user_id in, gte', [{ path: '/user_id', op: 'in', value: ['bob', 'carol', null] }, { path: '/user_id', op: 'gte', value: 'c' }]],
  ['/correlation_id prefix', [{ path: '/correlation_id', op: 'prefix', value: 'corr-' }]],
  ['/causation_id eq', [{ path: '/causation_id', op: 'eq', value: 'cause-1' }]],
  ['/source in', [{ path: '/source', op: 'in', value: ['svc-a', 'svc-b'] }]],
  ['/source eq null', [{ path: '/source', op: 'eq', value: null }]],
  // tenant-b's copy of the corpus takes the first positions of the fresh database
  ['/position window', [{ path: '/position', op: 'gt', value: CORPUS.length + 8 }, { path: '/position', op: 'lte', value: CORPUS.length + 20 }]],
  ['/position eq', [{ path: '/position', op: 'eq', value: CORPUS.length + 12 }]],
  ['/time gt', [{ path: '/time', op: 'gt', value: '2000-01-01T00:00:00.000Z' }]],
  ['/time lt', [{ path: '/time', op: 'lt', value: '2000-01-01T00:00:00.000Z' }]],
  ['/time prefix', [{ path: '/time', op: 'prefix', value: YEAR + '-' }]],
  ['/id in', [{ path: '/id', op: 'in', value: [`${P}-nested`, `${P}-mixed`, 'nope'] }]],
  ['/id gt', [{ path: '/id', op: 'gt', value: `${P}-n` }]],
  ['/schema_version eq null', [{ path: '/schema_version', op: 'eq', value: null }]],
  ['/tenant_id eq default', [{ path: '/tenant_id', op: 'eq', value: 'default' }]],
  ['/tenant_id eq tenant-b', [{ path: '/tenant_id', op: 'eq', value: 'tenant-b' }]],
  ['/tenant_id ne default', [{ path: '/tenant_id', op: 'ne', value: 'default' }]],
  ['/tenant_id in, prefix', [{ path: '/tenant_id', op: 'in', value: ['tenant-b'] }]],
  ['/tenant_id prefix t', [{ path: '/tenant_id', op: 'prefix', value: 't' }]],
  ['/metadata/origin eq', [{ path: '/metadata/origin', op: 'eq', value: 'web' }]],
  ['/metadata exists (null counts)', [{ path: '/metadata', op: 'exists', value: true }]],
  ['/metadata eq null', [{ path: '/metadata', op: 'eq', value: null }]],
  ['/metadata/trace/id prefix, /metadata/level', [{ path: '/metadata/trace/id', op: 'prefix', value: 't' }, { path: '/metadata/level', op: 'ne', value: 3 }]],
  ['/metadata/level gte', [{ path: '/metadata/level', op: 'gte', value: 3 }]],
  ['combination', [{ path: '/type', op: 'prefix', value: T('') }, { path: '/data/file_size', op: 'gte', value: 0.1 }, { path: '/data/flag', op: 'ne', value: true }, { path: '/data/tags', op: 'exists', value: true }]],
  ['sixteen conditions', [
    { path: '/type', op: 'prefix', value: T('file.') }, { path: '/data/mime_type', op: 'in', value: ['application/pdf', 'image/png'] },
    { path: '/data/file_size', op: 'gte', value: 1000000 }, { path: '/data/file_size', op: 'lte', value: 3000000 },
    { path: '/data/name', op: 'exists', value: true }, { path: '/data/reason', op: 'exists', value: false },
    { path: '/data/ok', op: 'ne', value: 'x' }, { path: '/data/tags', op: 'ne', value: [] },
    { path: '/stream', op: 'eq', value: S('files') }, { path: '/key', op: 'ne', value: 'zz' },
    { path: '/user_id', op: 'in', value: ['alice', 'bob'] }, { path: '/tenant_id', op: 'eq', value: 'default' },
    { path: '/position', op: 'gt', value: 0 }, { path: '/time', op: 'gt', value: '2000' },
    { path: '/metadata/nothing', op: 'exists', value: false }, { path: '/data/s', op: 'lt', value: 'zzz' }]],
];

// ---------------------------------------------------------------- agreement

// The stored envelopes of the corpus (tenant default), in order: set by the agreement's
// before(), read by the sections after it.
let model;

describe('live, catch-up, pages and NDJSON agree with each other and with the model', () => {
  const live = new Map(); // case index → events delivered live
  const peers = [];

  before(async () => {
    // One live subscription per case, fifteen a connection, each connection with an
    // unfiltered fence subscription.
    for (let i = 0; i < CASES.length; i += 15) {
      const peer = await Peer.open(s, { token: s.adminToken });
      peers.push(peer);
      for (let k = i; k < Math.min(i + 15, CASES.length); k++) {
        const m = await subscribeText(peer, 'w' + k, whereText(CASES[k]));
        assert.equal(m.op, 'subscribed', `case ${CASES[k][0]}: ${JSON.stringify(m)}`);
      }
      const m = await peer.subscribe({ id: 'fence', types: [FENCE_TYPE] });
      assert.equal(m.op, 'subscribed');
    }
    // tenant-b first: the same envelopes (and ids), which no default-tenant reader may see
    await pubText(B, CORPUS.map(([tag, f, d]) => envText(tag, f, d)));
    // the corpus: singles and batches
    const texts = CORPUS.map(([tag, f, d]) => envText(tag, f, d));
    for (let i = 0; i < texts.length;) {
      const n = Math.min(1 + (i % 4), texts.length - i);
      await pubText(A, texts.slice(i, i + n));
      i += n;
    }
    const fence = await pub(A, { type: FENCE_TYPE, data: {} });
    for (const peer of peers) {
      await peer.until((m) => m.op === 'event' && m.sub === 'fence' && m.event.id === fence[0].id, 'the fence');
    }
    for (const peer of peers) {
      for (const m of peer.msgs) {
        if (m.op === 'error') assert.fail(`an error on a live connection: ${JSON.stringify(m)}`);
        if (m.op !== 'event' || m.sub === 'fence') continue;
        const k = Number(m.sub.slice(1));
        if (!live.has(k)) live.set(k, []);
        live.get(k).push(m.event);
      }
    }
    model = (await ndjson(A, {})).filter((e) => e.type !== FENCE_TYPE);
    assert.equal(model.length, CORPUS.length, 'the tenant holds the corpus (and the fence)');
  });

  after(async () => {
    for (const p of peers) { p.close(); await p.waitClose(5000); }
  });

  test('the corpus is stored as written (numbers, escapes)', () => {
    const by = new Map(model.map((e) => [e.id.slice(P.length + 1), e]));
    assert.equal(by.get('escaped').data.name, 'Café "quoted" back\\slash / tab\t');
    assert.equal(by.get('escaped').data['q"k'], 'v');
    assert.equal(by.get('one-real').data.s, '😀');
    assert.equal(by.get('kilo-exp').data.n, 1000);
    assert.equal(by.get('big').data.big, 1e300);
    assert.equal(by.get('big').data.tiny, 1e-300);
    assert.equal(by.get('pdf-big').metadata.trace.id, 't1');
    assert.equal(by.get('empty').metadata, null);
    // the battery has both kinds of answers
    const sizes = CASES.map(([, w]) => model.filter((e) => matchesWhere(w, e)).length);
    assert.ok(sizes.filter((n) => n === 0).length >= 5, 'some cases select nothing');
    assert.ok(sizes.filter((n) => n > 0 && n < model.length).length >= 60, 'most cases select a part');
  });

  CASES.forEach((c, k) => {
    const [name, where] = c;
    const text = whereText(c);
    test(`${name}: ${text.slice(0, 160)}`, async () => {
      const tag = (e) => (e.tenant_id === 'default' ? '' : e.tenant_id + ':') + e.id.slice(P.length + 1);
      const want = model.filter((e) => matchesWhere(where, e)).map(tag);
      const problems = [];
      const check = (what, all) => {
        assertIncreasing(all, what);
        const evs = all.filter((e) => e.type !== FENCE_TYPE);
        const d = diff(what, evs.map(tag), want);
        if (d) problems.push(d);
      };
      check('live WebSocket', live.get(k) || []);
      const pages = await h.readAllPages(A, whereQ(text), { limit: 7 });
      check('GET /v1/events pages', pages.events);
      check('GET /v1/events NDJSON', await ndjson(A, whereQ(text)));
      check('WebSocket catch-up', await catchUp(A, s.adminToken, text));
      if (problems.length) assert.fail(`model ${JSON.stringify(want)}\n  ${problems.join('\n  ')}`);
    });
  });
});

// ---------------------------------------------------------------- SSE

// The complete `event` blocks of a text/event-stream body, their data parsed.
function sseEvents(text) {
  const blocks = text.split('\n\n');
  blocks.pop(); // not yet complete
  return blocks.map((b) => b.split('\n'))
    .filter((lines) => lines.includes('event: event'))
    .map((lines) => JSON.parse(lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n')));
}

// Opens an SSE stream, retrying while the tenant's catch-up slot is taken (429).
async function openSse(path, token = s.adminToken) {
  return h.waitFor(async () => {
    const st = await Stream.open(s, path, { token, accept: 'text/event-stream' });
    if (st.status === 429) return false;
    assert.equal(st.status, 200, st.text);
    return st;
  }, { timeout: WAIT_MS, interval: 20, what: `SSE ${path}` });
}

async function sseUntil(st, id) {
  await h.waitFor(() => sseEvents(st.text).some((e) => e.id === id) || st.endInfo,
    { timeout: WAIT_MS, interval: 20, what: `event ${id} on the SSE stream` });
  assert.equal(st.endInfo, null, 'the stream is open');
  return sseEvents(st.text);
}

describe('SSE ?where=', () => {
  const P2 = 'ss' + h.rand(3);
  const where = [{ path: '/data/n', op: 'gte', value: 5 }, { path: '/data/kind', op: 'in', value: ['a', 'b'] }];
  const q = () => new URLSearchParams({ type: `${P2}.*`, where: JSON.stringify(where) });
  const sent = [];

  test('live: only matching events arrive', async () => {
    const st = await openSse('/v1/subscribe?' + q());
    try {
      const envs = Array.from({ length: 12 }, (_, i) => ({ type: `${P2}.item`, data: { n: i, kind: ['a', 'b', 'c'][i % 3] } }));
      envs.push({ type: `${P2}.other`, data: { n: 7 } });
      envs.push({ type: `${P2}.item`, data: { n: '9', kind: 'a' } });
      envs.push({ type: `${P2}.item`, data: { n: 100, kind: 'a' } }); // matches: the last
      for (let i = 0; i < envs.length; i += 5) sent.push(...(await pub(A, envs.slice(i, i + 5))).map((a, k) => ({ ...envs[i + k], id: a.id })));
      const got = await sseUntil(st, sent[sent.length - 1].id);
      const want = sent.filter((e) => matchesWhere(where, e)).map((e) => e.id);
      assert.deepEqual(got.map((e) => e.id), want);
      assert.equal(want.length, 5);
    } finally { st.abort(); }
  });

  test('from_position: history and live, the same filter', async () => {
    const st = await openSse('/v1/subscribe?' + q() + '&from_position=0');
    try {
      const later = await pub(A, [{ type: `${P2}.item`, data: { n: 6, kind: 'c' } }, { type: `${P2}.item`, data: { n: 50, kind: 'b' } }]);
      const got = await sseUntil(st, later[1].id);
      const want = sent.filter((e) => matchesWhere(where, e)).map((e) => e.id).concat([later[1].id]);
      assert.deepEqual(got.map((e) => e.id), want);
    } finally { st.abort(); }
  });
});

// ---------------------------------------------------------------- long poll

describe('long poll /v1/events/wait?where=', () => {
  const P3 = 'lp' + h.rand(3);
  const wait = (q, timeout = 70000) => A.get('/v1/events/wait?' + new URLSearchParams(q), { timeout });

  test('an already stored match: the first one that matches', async () => {
    const evs = await pub(A, [0, 5, 9, 12].map((n) => ({ type: `${P3}.x`, data: { n, tag: n > 8 ? 'hot' : 'cold' } })));
    const r = await wait({ type: `${P3}.*`, where: JSON.stringify([{ path: '/data/tag', op: 'eq', value: 'hot' }]), timeout_ms: '5000' });
    h.assertStatus(r, 200);
    assert.equal(r.body.id, evs[2].id);
    const r2 = await wait({ type: `${P3}.*`, after: String(evs[2].position), where: JSON.stringify([{ path: '/data/n', op: 'gt', value: 9 }]), timeout_ms: '5000' });
    assert.equal(h.assertStatus(r2, 200).id, evs[3].id);
  });

  test('a match published during the wait answers it; non-matching events do not', async () => {
    const head = h.assertStatus(await A.get('/v1/info'), 200).head_position;
    let settled = false;
    const pending = wait({ type: `${P3}.*`, after: String(head), where: JSON.stringify([{ path: '/data/answer', op: 'eq', value: 42 }]), timeout_ms: '30000' });
    pending.then(() => { settled = true; }, () => { settled = true; });
    await h.sleep(300);
    await pub(A, { type: `${P3}.x`, data: { answer: 41 } });
    await pub(A, { type: `${P3}.x`, data: { answer: '42' } });
    await pub(A, { type: `${P3}.x`, data: {} });
    await h.sleep(300);
    assert.equal(settled, false, 'non-matching events do not answer the waiter');
    const match = await pub(A, { type: `${P3}.x`, data: { answer: 42.0, n: 1 } });
    const r = await pending;
    assert.equal(h.assertStatus(r, 200).id, match[0].id);
  });
});

// ---------------------------------------------------------------- replays and projections

const REPLAY_CASES = () => [
  CASES.find((c) => c[0] === 'contract example'),
  CASES.find((c) => c[0] === 'object eq, numbers by value (1 vs 1.0)'),
  CASES.find((c) => c[0] === 'array index -1 (an object key only)'),
  CASES.find((c) => c[0] === '/metadata eq null'),
  CASES.find((c) => c[0] === 'ne string (absent holds)'),
];

// The corpus's types but the one holding 1e300 (see the last section).
const SMALL_NUMBER_TYPES = () => [...new Set(CORPUS.map(([, f]) => f.type))].filter((x) => x !== T('num.big'));

// Starts a replay of `filter` and checks the Redis stream holds exactly the model's events
// of `types` that `where` matches.
async function replayExactly(filter, types, what, timeout = 60000) {
  assert.ok(model, 'the corpus is published');
  const want = model.filter((e) => types.includes(e.type) && matchesWhere(filter.where, e)).map((e) => e.position);
  const key = `${redisPrefix}replay:${h.rand(4)}`;
  const started = h.assertStatus(await A.post('/v1/replays', { filter, target: { redis_stream: key } }), 202);
  assert.deepEqual(started.filter, filter, 'the filter as given');
  assert.equal(started.total, want.length, 'total');
  const done = await h.waitFor(async () => {
    const x = h.assertStatus(await A.get('/v1/replays/' + started.id), 200);
    return x.status !== 'running' ? x : false;
  }, { timeout, what: `the replay ${what} to finish` });
  assert.equal(done.status, 'done', JSON.stringify(done));
  assert.equal(done.replayed, want.length);
  const entries = await redis.withRedis(process.env.SLUICE_REDIS_URL, (r) => redis.xrangeAll(r, key));
  assert.deepEqual(entries.map((e) => Number(e.id.split('-')[0])), want, what);
  for (const e of entries) assert.ok(matchesWhere(filter.where, JSON.parse(e.fields.event)), 'each entry matches');
}

describe('replays with filter.where', () => {
  REPLAY_CASES().forEach((c) => {
    test(`${c[0]}: only matching events reach the Redis stream`, async () => {
      const types = SMALL_NUMBER_TYPES();
      await replayExactly({ types, where: c[1] }, types, c[0]);
    });
  });
});

describe('projections with filter.where', () => {
  const countState = async (client, name) => {
    const res = await client.get(`/v1/projections/${name}/state?key=`);
    if (res.status === 404) return 0;
    return h.assertStatus(res, 200).state;
  };
  const waitLive = (client, name, position) => h.waitFor(async () => {
    const x = h.assertStatus(await client.get('/v1/projections/' + name), 200);
    assert.notEqual(x.status, 'failed', JSON.stringify(x));
    return x.status === 'live' && x.position >= position ? x : false;
  }, { timeout: 60000, what: `${name} live at ${position}` });

  REPLAY_CASES().forEach((c, i) => {
    test(`${c[0]}: a count of the matching events only, history then new events`, async () => {
      assert.ok(model, 'the corpus is published');
      const where = c[1];
      const name = `whcount${i}`;
      const def = { name, filter: { types: [`${P}.*`], where }, reduce: 'count' };
      const created = h.assertStatus(await A.post('/v1/projections', def), 201);
      assert.deepEqual(created.filter, def.filter);
      let head = h.assertStatus(await A.get('/v1/info'), 200).head_position;
      await waitLive(A, name, head);
      const want = model.filter((e) => matchesWhere(where, e)).length;
      assert.equal(await countState(A, name), want, 'the catch-up counted the matching events');
      // a copy of every corpus event whose count the condition decides, published again
      const again = model.filter((e) => e.type.startsWith(`${P}.`)).slice(0, 12)
        .map((e) => ({ type: e.type, stream: e.stream, data: e.data, metadata: e.metadata ?? undefined }));
      const acks = await pub(A, again);
      head = acks[acks.length - 1].position;
      await waitLive(A, name, head);
      const stored = await ndjson(A, { after: String(acks[0].position - 1), type: `${P}.*` });
      const more = stored.filter((e) => e.position >= acks[0].position && matchesWhere(where, e)).length;
      model.push(...stored.filter((e) => e.position >= acks[0].position));
      assert.equal(await countState(A, name), want + more, 'new events counted the same way');
    });
  });
});

// ---------------------------------------------------------------- invalid_filter

const GOOD = { path: '/data/x', op: 'eq', value: 1 };
// [what, where as JSON text, what the detail names]
const BAD = [
  ['not JSON', '[{"path":', /where/],
  ['empty', '', /where/],
  ['not an array', JSON.stringify(GOOD), /where must be an array/],
  ['17 conditions', JSON.stringify(Array(17).fill(GOOD)), /at most 16/],
  ['a condition not an object', JSON.stringify([GOOD, 1]), /where\[1\]/],
  ['unknown op', JSON.stringify([GOOD, { path: '/data/x', op: 'regex', value: 'x' }]), /where\[1\]\.op/],
  ['pointer without a leading slash', JSON.stringify([GOOD, { path: 'data/x', op: 'eq', value: 1 }]), /where\[1\]\.path/],
  ['pointer with a bad escape', JSON.stringify([GOOD, { path: '/data/a~2', op: 'eq', value: 1 }]), /where\[1\]\.path/],
  ['empty pointer', JSON.stringify([GOOD, { path: '', op: 'eq', value: 1 }]), /where\[1\]\.path/],
  ['pointer too long', JSON.stringify([GOOD, { path: '/data/' + 'x'.repeat(600), op: 'eq', value: 1 }]), /where\[1\]\.path/],
  ['path not a string', JSON.stringify([GOOD, { path: 5, op: 'eq', value: 1 }]), /where\[1\]\.path/],
  ['path outside the envelope', JSON.stringify([GOOD, { path: '/foo', op: 'eq', value: 1 }]), /where\[1\]\.path/],
  ['path root /', JSON.stringify([GOOD, { path: '/', op: 'eq', value: 1 }]), /where\[1\]\.path/],
  ['path inside a scalar field', JSON.stringify([GOOD, { path: '/type/x', op: 'eq', value: 1 }]), /where\[1\]\.path/],
  ['in with a non-array', JSON.stringify([GOOD, { path: '/data/x', op: 'in', value: 'x' }]), /where\[1\] \(in\)/],
  ['in with an empty array', JSON.stringify([GOOD, { path: '/data/x', op: 'in', value: [] }]), /where\[1\] \(in\)/],
  ['in with 65 values', JSON.stringify([GOOD, { path: '/data/x', op: 'in', value: Array(65).fill(1) }]), /where\[1\] \(in\)/],
  ['gt with an object', JSON.stringify([GOOD, { path: '/data/x', op: 'gt', value: {} }]), /where\[1\] \(gt\)/],
  ['lte with a boolean', JSON.stringify([GOOD, { path: '/data/x', op: 'lte', value: true }]), /where\[1\] \(lte\)/],
  ['prefix with a number', JSON.stringify([GOOD, { path: '/data/x', op: 'prefix', value: 5 }]), /where\[1\] \(prefix\)/],
  ['exists with a non-boolean', JSON.stringify([GOOD, { path: '/data/x', op: 'exists', value: 'yes' }]), /where\[1\] \(exists\)/],
  ['no value', JSON.stringify([GOOD, { path: '/data/x', op: 'eq' }]), /where\[1\]/],
  ['unknown member', JSON.stringify([GOOD, { path: '/data/x', op: 'eq', value: 1, note: 'x' }]), /where\[1\] has an unknown member 'note'/],
];

describe('400 invalid_filter', () => {
  for (const [what, text, names] of BAD) {
    test(`${what}: GET /v1/events, NDJSON, the long poll and SSE`, async () => {
      const q = '?' + new URLSearchParams({ where: text });
      const p = h.assertProblem(await A.get('/v1/events' + q), 400, 'invalid_filter');
      assert.match(p.detail, names);
      h.assertProblem(await A.get('/v1/events' + q, { headers: { Accept: 'application/x-ndjson' } }), 400, 'invalid_filter');
      h.assertProblem(await A.get('/v1/events/wait' + q + '&timeout_ms=100'), 400, 'invalid_filter');
      h.assertProblem(await A.get('/v1/subscribe' + q, { headers: { Accept: 'text/event-stream' } }), 400, 'invalid_filter');
    });
  }

  test('WebSocket subscribe: an error invalid_filter naming the condition; the connection goes on', async () => {
    const peer = await Peer.open(s, { token: s.adminToken });
    try {
      for (const [what, text, names] of BAD) {
        let value;
        try { value = JSON.parse(text); } catch (_) { continue; } // only JSON reaches the member
        const id = 'bad' + h.rand(3);
        const m = await peer.subscribe({ id, where: value });
        assert.equal(m.op, 'error', `${what}: ${JSON.stringify(m)}`);
        assert.equal(m.code, 'invalid_filter', `${what}: ${JSON.stringify(m)}`);
        assert.match(m.message, names, what);
      }
      const ok = await peer.subscribe({ id: 'good', where: [GOOD] });
      assert.equal(ok.op, 'subscribed');
    } finally { peer.close(); await peer.waitClose(5000); }
  });

  test('replays and projections: 400 invalid_filter naming the condition; nothing is created', async () => {
    for (const [what, text, names] of BAD) {
      let value;
      try { value = JSON.parse(text); } catch (_) { continue; }
      const r = h.assertProblem(await A.post('/v1/replays', { filter: { where: value }, target: { redis_stream: `${redisPrefix}replay:bad` } }), 400, 'invalid_filter');
      assert.match(r.detail, names, `replay: ${what}`);
      const p = h.assertProblem(await A.post('/v1/projections', { name: 'badwhere', filter: { where: value }, reduce: 'count' }), 400, 'invalid_filter');
      // a projection lists what is wrong with its definition in errors[]
      assert.match([p.detail, ...(p.errors || []).map((e) => e.message)].join('\n'), names, `projection: ${what}`);
    }
    h.assertProblem(await A.get('/v1/projections/badwhere'), 404, 'not_found');
    assert.equal(await redis.command(process.env.SLUICE_REDIS_URL, ['EXISTS', `${redisPrefix}replay:bad`]), 0);
  });
});

// ---------------------------------------------------------------- tenant sealing

describe('a where on /tenant_id never shows another tenant\'s events', () => {
  const OTHER = [
    [{ path: '/tenant_id', op: 'eq', value: 'default' }],
    [{ path: '/tenant_id', op: 'ne', value: 'tenant-b' }],
    [{ path: '/tenant_id', op: 'in', value: ['default', 'tenant-b'] }, { path: '/tenant_id', op: 'prefix', value: 'de' }],
    [{ path: '/tenant_id', op: 'lt', value: 'tenant-b' }],
  ];

  test('history, NDJSON, catch-up and live of tenant-b', async () => {
    const own = await ndjson(B, whereQ([{ path: '/tenant_id', op: 'eq', value: 'tenant-b' }]));
    assert.ok(own.length >= CORPUS.length, 'tenant-b sees its own events');
    assert.ok(own.every((e) => e.tenant_id === 'tenant-b'));
    const FENCE_B = 'fenceb' + h.rand(3) + '.done';
    const peer = await Peer.open(s, { token: bKey.token });
    try {
      for (let i = 0; i < OTHER.length; i++) assert.equal((await peer.subscribe({ id: 'o' + i, where: OTHER[i] })).op, 'subscribed');
      assert.equal((await peer.subscribe({ id: 'fence', types: [FENCE_B] })).op, 'subscribed');
      for (const where of OTHER) {
        assert.deepEqual((await h.readAllPages(B, whereQ(where))).events, [], JSON.stringify(where));
        assert.deepEqual(await ndjson(B, whereQ(where)), [], JSON.stringify(where));
        assert.deepEqual(await catchUp(B, bKey.token, where), [], JSON.stringify(where));
      }
      await pub(A, CORPUS.slice(0, 3).map(([tag, f]) => ({ ...f, data: { tag } })));
      const fence = await pub(B, { type: FENCE_B, data: {} });
      await peer.until((m) => m.op === 'event' && m.sub === 'fence' && m.event.id === fence[0].id, 'the fence');
      const leaked = peer.msgs.filter((m) => m.op === 'event' && m.sub !== 'fence');
      assert.deepEqual(leaked, [], 'no live event of another tenant');
    } finally { peer.close(); await peer.waitClose(5000); }
  });

  test('replays and projections of tenant-b', async () => {
    const key = `${redisPrefix}tenant-b:replay:seal:${h.rand(3)}`;
    const r = h.assertStatus(await B.post('/v1/replays', { filter: { where: OTHER[0] }, target: { redis_stream: key } }), 202);
    assert.equal(r.total, 0);
    const def = { name: 'sealcount', filter: { where: OTHER[1] }, reduce: 'count' };
    h.assertStatus(await B.post('/v1/projections', def), 201);
    const head = h.assertStatus(await B.get('/v1/info'), 200).head_position;
    await h.waitFor(async () => {
      const x = h.assertStatus(await B.get('/v1/projections/sealcount'), 200);
      return x.status === 'live' && x.position >= head;
    }, { timeout: 60000, what: 'the projection live' });
    h.assertProblem(await B.get('/v1/projections/sealcount/state?key='), 404, 'not_found');
  });
});

// ---------------------------------------------------------------- numbers PostgreSQL writes in full

// jsonb keeps 1e300 as a numeric and writes it back as its 301 digits (1e20 as 21): more
// than a JSON integer of jansson holds. Readers of stored JSON text must still read it: the
// events (a replay's rows) and a stored filter or definition holding such a `where` value.
// (Last: a failure here may leave a replay job stuck or the instance down.)
describe('numbers PostgreSQL writes out in full', () => {
  const BIG_WHERE = [{ path: '/data/big', op: 'gt', value: 1e299 }];

  test('a replay whose filter holds 1e299: the filter as given, only the matching event', async () => {
    await replayExactly({ types: [T('num.big')], where: BIG_WHERE }, [T('num.big')], 'with 1e299 in its filter', 20000);
  });

  test('a replay over events holding 1e300 finishes with exactly the matching events', async () => {
    const where = [{ path: '/data/tiny', op: 'exists', value: true }];
    await replayExactly({ types: [T('num.big')], where }, [T('num.big')], 'over 1e300', 20000);
  });

  test('a projection whose filter holds 1e299: the definition as given, the matching events counted', async () => {
    const def = { name: 'whbig', filter: { types: [`${P}.*`], where: BIG_WHERE }, reduce: 'count' };
    const created = h.assertStatus(await A.post('/v1/projections', def), 201);
    assert.deepEqual(created.filter, def.filter);
    const head = h.assertStatus(await A.get('/v1/info'), 200).head_position;
    await h.waitFor(async () => {
      const x = h.assertStatus(await A.get('/v1/projections/whbig'), 200);
      assert.notEqual(x.status, 'failed', JSON.stringify(x));
      return x.status === 'live' && x.position >= head;
    }, { timeout: 60000, what: 'whbig live' });
    // the projection tests above publish copies of corpus events: count from the model
    const want = model.filter((e) => e.type.startsWith(`${P}.`) && matchesWhere(BIG_WHERE, e)).length;
    assert.ok(want >= 1);
    assert.equal(h.assertStatus(await A.get('/v1/projections/whbig/state?key='), 200).state, want);
  });
});
