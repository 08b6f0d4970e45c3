'use strict';
// Hostile input, part 3 (issue 8): SQL injection through every filter. Every query, path and
// header parameter of every operation in openapi/openapi.yaml is read from the document
// itself (so a new parameter is covered as soon as it is documented) and sent a battery of
// injection payloads, one parameter at a time, the others at valid values:
//   - the answer is never 5xx and never a hang; a 4xx is a problem+json document whose
//     status field is the HTTP status;
//   - a 2xx carries exactly the right results: event reads (the list, an entity's history, a
//     flow, the long poll) are checked against a model of the events stored here, where the
//     payloads themselves are keys, correlation ids and user ids, so `key=' OR '1'='1` must
//     return exactly the one event whose key is that string; dead letters and projection
//     states against the fixtures; a payload in a path names nothing, so reads by name or id
//     answer 404;
//   - the string fields of every JSON request body (read from the operation's schema, plus
//     the filter fields the document leaves open) get the same battery: never 5xx, and an
//     event published with a payload as its key, id, stream, source … reads back with
//     exactly that value;
//   - afterwards the data is intact: the same tables, the events stored before (count and
//     digest), keys, dead letters and projections, and no table the payloads tried to create.
// A parameter with no value strategy below fails the run (a new parameter must say how to
// reach PostgreSQL with it), as does a JSON body without a base body. Requests go over node:http with the payload percent-encoded by
// hand (%00, %FF and friends exactly as written), not through fetch, which would normalise
// them.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const YAML = require('yaml');
const h = require('./lib/harness');
const kit = require('./lib/groups_kit');

const DOC = YAML.parse(fs.readFileSync(path.join(h.REPO, 'openapi', 'openapi.yaml'), 'utf8'));
const METHODS = ['get', 'put', 'post', 'delete', 'patch'];
const REQUEST_TIMEOUT_MS = 30000; // "no hang" bound for one answer

// ---------------------------------------------------------------- the payloads

// `v`: the text (percent-encoded as UTF-8 when sent); `enc`: bytes already encoded, for what
// is not text (a NUL, invalid UTF-8), with `v` null.
const PAYLOADS = [
  { v: "' OR '1'='1" },
  { v: "' OR 1=1 --" },
  { v: "\" OR \"\"=\"" },
  { v: "'; DROP TABLE events; --" },
  { v: "'); DELETE FROM events; --" },
  { v: "1; DROP TABLE events" },
  { v: "'; CREATE TABLE hostile_pwned(x int); --" },
  { v: "'; UPDATE events SET type = 'pwned.type'; --" },
  { v: "' UNION SELECT id, tenant_id FROM api_keys --" },
  { v: "'; SELECT pg_terminate_backend(pg_backend_pid()); --" },
  { v: "$$; DROP TABLE events; $$" },
  { v: '$$' },
  { v: '$1' },
  { v: '\\' },
  { v: "\\'; DROP TABLE events; --" },
  { v: "E'\\x27 OR 1=1'" },
  { v: '%' },
  { v: '_' },
  { v: '*' },
  { v: '{a,b}' },
  { v: '{"a":1}' },
  { v: "ARRAY['x']" },
  { v: 'a\u0000b', enc: 'a%00b' },
  { v: null, enc: '%00' },
  { v: null, enc: '%FF' },
  { v: null, enc: '%C0%A7' },            // an overlong "'"
  { v: null, enc: '%ED%A0%80' },         // a UTF-16 surrogate in UTF-8
  { v: null, enc: '%F4%90%80%80' },      // past U+10FFFF
  { v: '\u2019 OR \u20181\u2019=\u20181' }, // typographic quotes
  { v: '\uFF07 OR \uFF071\uFF07=\uFF071' }, // fullwidth apostrophes
  { v: '\u02BC; DROP TABLE events; --' },   // a modifier-letter apostrophe
  { v: '\u2028\u2029' },
  { v: '\r\nX-Injected: 1' },
  { v: '../../etc/passwd' },
  { v: '' },
  { v: ' 1' },
  { v: '-1' },
  { v: '0' },
  { v: '99999999999999999999999' },
  { v: '1e3' },
  { v: '0x10' },
  { v: 'NaN' },
  { v: 'null' },
  { v: 'true' },
  { v: 'A'.repeat(4000) },
  { v: '\u00e9'.repeat(2000) },
  { v: "'".repeat(1000) },
];

const isText = (v) => typeof v === 'string' && !v.includes('\u0000') && v.isWellFormed();
const chars = (v) => [...v].length;
const encoded = (p) => (p.enc !== undefined ? p.enc : encodeURIComponent(p.v));
const show = (p) => (p.enc !== undefined ? p.enc : JSON.stringify(p.v.length > 40 ? `${p.v.slice(0, 20)}…(${p.v.length})` : p.v));

// ---------------------------------------------------------------- the fixtures

const STREAM = 'hostile.sql';
const OTHER_STREAM = 'hostile.other';
const fx = {}; // ids and names of what the fixtures created
let s;
let A;
let prefix;
let model = [];      // every stored event, as GET /v1/events returns them
let deadLetters = []; // every open dead letter
let states = new Map(); // projection hostile-keys: key → count
let snapshot;        // the database before the battery

// The payloads that can be stored as an envelope's key, correlation_id and user_id.
const storable = () => PAYLOADS.filter((p) => isText(p.v) && p.v.length > 0 && chars(p.v) <= 256);

// The database as a few comparable strings. Events, dead letters and tables must not change
// at all; keys and projections the battery created (a payload can be a valid name) are
// revoked or deleted before the comparison.
function dbSnapshot() {
  const q = (sql) => h.psql(s.dbUrl, sql);
  return {
    // Partitions of the event log come and go as Sluice adds them ahead of need: not counted.
    tables: q("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace " +
      "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'f') AND NOT c.relispartition"),
    events: q(`SELECT count(*) FROM events WHERE position <= ${fx.head}`),
    eventsDigest: q(`SELECT md5(string_agg(position || '|' || id || '|' || type || '|' || stream || '|' || coalesce(key, '') || '|' || data::text || '|' || coalesce(correlation_id, '') || '|' || coalesce(user_id, ''), ',' ORDER BY position)) FROM events WHERE position <= ${fx.head}`),
    keys: q("SELECT string_agg(id || ':' || tenant_id, ',' ORDER BY id) FROM api_keys WHERE revoked_at IS NULL"),
    deadLetters: q("SELECT string_agg(id || ':' || status || ':' || source, ',' ORDER BY id) FROM dead_letters"),
    projections: q("SELECT string_agg(name, ',' ORDER BY name) FROM projections"),
    pwned: q("SELECT count(*) FROM pg_class WHERE relname LIKE 'hostile_pwned%'"),
  };
}

before(async () => {
  prefix = kit.newPrefix();
  // Webhooks point at a closed loopback port (allowed here) and match no event.
  s = await h.startSluice({ name: 'hostile-sql', env: { SLUICE_REDIS_PREFIX: prefix, SLUICE_ACCESS_LOG: 'off', SLUICE_WEBHOOK_ALLOW_PRIVATE: '1' } });
  A = s.client();

  // Events whose key, correlation id and user id are the payloads themselves, and others.
  const batch = storable().map((p, i) => ({ type: 'hostile.probe', stream: STREAM, key: p.v, correlation_id: p.v, user_id: p.v, data: { i } }));
  for (let i = 0; i < 4; i++) batch.push({ type: 'hostile.plain', stream: STREAM, key: `plain-${i % 2}`, data: { i } });
  for (let i = 0; i < 3; i++) batch.push({ type: 'other.thing', stream: OTHER_STREAM, key: 'other', user_id: 'u-other', data: { i } });
  h.assertStatus(await A.publish(batch), 201);
  // The event POST /v1/events?atomic=<payload> re-sends: every later send is an idempotent replay.
  fx.atomicEnvelope = { id: 'hostile-atomic', type: 'hostile.atomic', stream: OTHER_STREAM, data: { n: 1 } };
  h.assertStatus(await A.publish(fx.atomicEnvelope), 201);

  // A projection keyed by the envelope's key (its states are keyed by the payloads), and a
  // sum that cannot apply a string: one dead letter.
  h.assertStatus(await A.post('/v1/projections', { name: 'hostile-keys', filter: { streams: [STREAM] }, key: '/key', reduce: 'count' }), 201);
  h.assertStatus(await A.post('/v1/projections', { name: 'hostile-sum', filter: { types: ['hostile.bad'] }, key: '/key', reduce: 'sum', path: '/data/n' }), 201);
  const bad = h.assertStatus(await A.publish({ type: 'hostile.bad', stream: STREAM, key: 'bad-1', data: { n: 'not a number' } }), 201);
  await h.waitFor(async () => {
    const r = await A.get(`/v1/projections/hostile-keys/state?min_position=${bad.position}&timeout_ms=5000&limit=1000`);
    return r.status === 200 && !r.body.has_more ? r : null;
  }, { timeout: 60000, what: 'projection hostile-keys caught up' }).then((r) => {
    states = new Map(r.body.states.map((x) => [x.key, x.state]));
  });
  deadLetters = (await h.waitFor(async () => {
    const r = await A.get('/v1/dead-letters');
    return r.status === 200 && r.body.dead_letters.length === 1 ? r.body.dead_letters : null;
  }, { timeout: 60000, what: 'the dead letter of hostile-sum' }));
  fx.deadLetterId = String(deadLetters[0].id);

  h.assertStatus(await A.post(`/v1/streams/${STREAM}/groups`, { name: 'g1', start: '0' }), 201);
  fx.replayId = h.assertStatus(await A.post('/v1/replays', { filter: { stream: STREAM }, target: { redis_stream: `${prefix}replay:hostile` } }), 202).id;
  fx.keyId = (await h.createKey(s, 'hostile', ['read'], 'hostile key')).id;
  h.assertStatus(await A.post('/v1/webhooks', { name: 'hostile-hook', url: 'http://127.0.0.1:9/hostile', filter: { types: ['hostile.none'] } }), 201);
  fx.schemaType = h.assertStatus(await A.get('/v1/schemas'), 200).schemas[0].type;

  const nd = await A.get('/v1/events', { headers: { Accept: 'application/x-ndjson' } });
  model = nd.text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  fx.eventId = model[0].id;
  fx.head = model[model.length - 1].position;
  fx.key = storable()[0].v;
  assert.ok(model.length >= storable().length + 8, `stored ${model.length} events`);
  snapshot = dbSnapshot();
});

after(async () => {
  if (s) await s.stop().finally(() => s.cleanup());
  if (prefix) await kit.deletePrefix(prefix);
});

// ---------------------------------------------------------------- the document

function deref(v) {
  for (let i = 0; v && typeof v.$ref === 'string' && i < 16; i++) {
    v = v.$ref.slice(2).split('/').reduce((o, k) => (o == null ? o : o[k.replace(/~1/g, '/').replace(/~0/g, '~')]), DOC);
  }
  return v;
}

// Every operation with its parameters (path-level ones first, overridden by the operation's).
function operations() {
  const ops = [];
  for (const [template, item] of Object.entries(DOC.paths || {})) {
    for (const m of METHODS) {
      const op = item[m];
      if (!op) continue;
      const params = new Map();
      for (const p of [...(item.parameters || []), ...(op.parameters || [])].map(deref)) params.set(`${p.in}:${p.name}`, p);
      ops.push({ method: m.toUpperCase(), template, id: `${m.toUpperCase()} ${template}`, params: [...params.values()], body: !!op.requestBody, requestBody: deref(op.requestBody) });
    }
  }
  return ops;
}

// ---------------------------------------------------------------- value strategies

// How to reach PostgreSQL with each parameter: `base` is its valid value while another
// parameter carries the payload (required path parameters always have one; query
// parameters with `always` are sent too, e.g. timeout_ms=0 so a long poll answers at once).
// Looked up as "METHOD template in:name", then "template in:name", then "in:name".
const STRATEGIES = {
  'path:stream': { base: () => STREAM },
  'path:key': { base: () => fx.key },
  'path:correlation_id': { base: () => fx.key },
  'path:group': { base: () => 'g1' },
  'path:type': { base: () => fx.schemaType },
  'path:n': { base: () => '1' },
  '/v1/events/{id} path:id': { base: () => fx.eventId },
  '/v1/replays/{id} path:id': { base: () => fx.replayId },
  '/v1/dead-letters/{id} path:id': { base: () => fx.deadLetterId },
  '/v1/dead-letters/{id}/reprocess path:id': { base: () => fx.deadLetterId },
  '/v1/dead-letters/{id}/discard path:id': { base: () => fx.deadLetterId },
  '/v1/keys/{id} path:id': { base: () => fx.keyId },
  '/v1/projections/{name} path:name': { base: () => 'hostile-keys' },
  '/v1/projections/{name}/state path:name': { base: () => 'hostile-keys' },
  '/v1/projections/{name}/reset path:name': { base: () => 'hostile-keys' },
  '/v1/webhooks/{name} path:name': { base: () => 'hostile-hook' },
  '/v1/webhooks/{name}/pause path:name': { base: () => 'hostile-hook' },
  '/v1/webhooks/{name}/resume path:name': { base: () => 'hostile-hook' },
  '/v1/webhooks/{name}/rotate-secret path:name': { base: () => 'hostile-hook' },
  'query:atomic': {},
  'query:stream': {},
  'query:type': {},
  'query:key': {},
  'query:correlation_id': {},
  'query:user_id': {},
  'query:since': {},
  'query:until': {},
  'query:after': {},
  'query:limit': {},
  'query:from_position': {},
  'query:min_position': {},
  'query:group': {},
  'query:source': {},
  'query:event_id': {},
  'query:status': {},
  'query:older_than_ms': {},
  'query:version': {},
  'query:where': {},
  'query:timeout_ms': { base: () => '0', always: true },
  '/{file} path:file': { base: () => 'app.js' },
  'header:Last-Event-ID': {},
};

function strategyFor(op, p) {
  const k = `${p.in}:${p.name}`;
  return STRATEGIES[`${op.id} ${k}`] || STRATEGIES[`${op.template} ${k}`] || STRATEGIES[k] || null;
}

// The body an operation needs so that its parameters reach the store.
const BODIES = {
  'POST /v1/events': () => fx.atomicEnvelope,
  'PUT /v1/streams/{stream}': () => ({ retention: { max_age_ms: null } }),
  'POST /v1/streams/{stream}/groups': () => ({ name: 'g-hostile', start: '$' }),
  'POST /v1/streams/{stream}/groups/{group}/nack': () => ({ event_id: fx.eventId, error: 'hostile', retryable: true }),
  'POST /v1/streams/{stream}/groups/{group}/fetch': () => ({ consumer: 'w-hostile', max: 1 }),
  'POST /v1/streams/{stream}/groups/{group}/ack': () => ({ receipts: ['1.1.0.w-hostile'] }),
  'POST /v1/streams/{stream}/groups/{group}/extend': () => ({ receipts: ['1.1.0.w-hostile'], ms: 1000 }),
  'PUT /v1/schemas/{type}/compatibility': () => ({ compatibility: 'BACKWARD' }),
  'POST /v1/schemas/{type}/validate': () => ({}),
  'POST /v1/projections': () => ({ name: 'hostile-never', reduce: 'count' }),
  'POST /v1/replays': () => ({ target: { redis_stream: `${prefix}replay:never` } }),
  'POST /v1/dead-letters/reprocess': () => ({ dry_run: true }),
  'POST /v1/schemas': () => ({}),
  'POST /v1/keys': () => ({}),
};

// ---------------------------------------------------------------- bodies

// The string fields of a JSON body schema, as paths (an array of strings is given one
// element): {path: [...], array}.
function stringFields(schema, prefix = [], depth = 0) {
  schema = deref(schema);
  if (!schema || depth > 3) return [];
  if (schema.oneOf) {
    const obj = schema.oneOf.map(deref).find((x) => x.type === 'object' || x.properties);
    return obj ? stringFields(obj, prefix, depth) : [];
  }
  const isString = (x) => [].concat(x.type || []).includes('string') || (Array.isArray(x.enum) && x.enum.every((e) => typeof e === 'string'));
  const out = [];
  for (const [name, sub0] of Object.entries(schema.properties || {})) {
    const sub = deref(sub0);
    const types = [].concat(sub.type || []);
    if (isString(sub)) out.push({ path: [...prefix, name] });
    else if (types.includes('array') && sub.items && isString(deref(sub.items))) out.push({ path: [...prefix, name], array: true });
    else if (types.includes('object') || sub.properties) out.push(...stringFields(sub, [...prefix, name], depth + 1));
  }
  return out;
}

function setPath(obj, p, value) {
  let o = obj;
  for (const k of p.slice(0, -1)) o = o[k] = o[k] && typeof o[k] === 'object' ? o[k] : {};
  o[p[p.length - 1]] = value;
}

// A valid body per operation (n: a counter, for names that must be new); the payload
// replaces one field of it.
const BODY_BASES = {
  'POST /v1/events': () => ({ type: 'hostile.body', stream: OTHER_STREAM, key: 'k', correlation_id: 'c', causation_id: 'ca', user_id: 'u', source: 's', data: {} }),
  'POST /v1/projections': (n) => ({ name: `hb-${n}`, filter: { streams: [STREAM], types: ['hostile.probe'] }, key: '/key', reduce: 'count', path: '/data' }),
  'POST /v1/replays': (n) => ({ filter: { stream: STREAM }, target: { redis_stream: `${prefix}replay:b${n}` } }),
  'POST /v1/streams/{stream}/groups': (n) => ({ name: `gb-${n}`, start: '$' }),
  'POST /v1/streams/{stream}/groups/{group}/nack': () => ({ event_id: fx.eventId, error: 'hostile', retryable: true }),
  'POST /v1/streams/{stream}/groups/{group}/fetch': () => ({ consumer: 'w-hostile', max: 1 }),
  'POST /v1/streams/{stream}/groups/{group}/ack': () => ({ receipts: ['1.1.0.w-hostile'] }),
  'POST /v1/streams/{stream}/groups/{group}/extend': () => ({ receipts: ['1.1.0.w-hostile'], ms: 1000 }),
  'POST /v1/dead-letters/reprocess': () => ({ stream: STREAM, group: 'g1', ids: [fx.deadLetterId], dry_run: true }),
  'POST /v1/schemas': () => ({ type: 'hostile.registered', stream: STREAM, description: 'd', schema: { type: 'object' } }),
  'PUT /v1/schemas/{type}/compatibility': () => ({ compatibility: 'BACKWARD' }),
  'POST /v1/keys': () => ({ tenant_id: 'hostile', scopes: ['read'], name: 'n' }),
  // Many attempts, so that a payload filter matching events retries past the test, never a
  // dead letter (the dead-letter checks know of one).
  'POST /v1/webhooks': (n) => ({ name: `hb-${n}`, url: 'http://127.0.0.1:9/hb', filter: { streams: [OTHER_STREAM], types: ['hostile.none'] }, max_deliveries: 100 }),
};

// Fields the document leaves open (a replay's filter is GET /v1/events's), and fields that
// need a wrapper: Redis stream names stay under this run's prefix, cleaned up with it. A
// field here replaces the schema's field of the same path.
const EXTRA_BODY_FIELDS = {
  'POST /v1/replays': [
    ...['stream', 'type', 'key', 'correlation_id', 'user_id', 'since', 'until'].map((f) => ({ path: ['filter', f] })),
    { path: ['target', 'redis_stream'], wrap: (v) => `${prefix}${v}` },
  ],
};

function bodyFields(op, schema) {
  const extra = EXTRA_BODY_FIELDS[op.id] || [];
  const key = (f) => f.path.join('.');
  const fields = stringFields(schema).filter((f) => !extra.some((x) => key(x) === key(f)));
  return [...fields, ...extra];
}

const created = { keys: [], projections: [] }; // by the body battery, removed before the comparison

// ---------------------------------------------------------------- the models

// RFC 3339 as Sluice reads it (server/timeutil.c): → epoch ms, or null.
function parseTime(v) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/.exec(v);
  if (!m) return null;
  const [y, mo, d, hh, mi, ss] = m.slice(1, 7).map(Number);
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  if (mo < 1 || mo > 12 || d < 1 || d > days[mo - 1] || hh > 23 || mi > 59 || ss > 60) return null;
  let off = 0;
  if (m[9]) {
    if (Number(m[10]) > 23 || Number(m[11]) > 59) return null;
    off = (Number(m[10]) * 60 + Number(m[11])) * (m[9] === '+' ? 1 : -1);
  }
  const t = new Date(0);
  t.setUTCFullYear(y, mo - 1, d);
  t.setUTCHours(hh, mi, ss, 0);
  return t.getTime() + Number(((m[7] || '') + '000').slice(0, 3)) - off * 60000;
}

// strtoll(v, &end, 10) with *end == 0, no overflow: → BigInt or null.
function parseLL(v) {
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)$/.exec(v);
  if (!m) return null;
  const n = BigInt(m[1]);
  return n > 9223372036854775807n || n < -9223372036854775808n ? null : n;
}

const TYPE_RE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const typeOk = (t) => t.length <= 128 && TYPE_RE.test(t);

// The filters of GET /v1/events (server/store.c) over `model`: → {valid, events, more}.
// `exact` holds filters taken from the path (an entity's history, a flow), which are
// compared as they are.
function eventsModel(q, { paged = true, defaultLimit = 100, exact = {} } = {}) {
  const bad = { valid: false };
  const text = (name, max) => {
    if (!(name in q)) return true;
    return isText(q[name]) && q[name].length > 0 && chars(q[name]) <= max;
  };
  if (!text('stream', 128) || !text('key', 256) || !text('correlation_id', 256) || !text('user_id', 256)) return bad;
  let types = null;
  if ('type' in q) {
    if (!isText(q.type)) return bad;
    const parts = q.type.split(',').filter(Boolean);
    if (parts.length > 32) return bad;
    types = [];
    for (const t of parts) {
      if (t === '*') continue;
      const prefix = t.length > 2 && t.endsWith('.*');
      if (!typeOk(prefix ? t.slice(0, -2) + '.x' : t)) return bad;
      types.push(prefix ? { prefix: t.slice(0, -1) } : { exact: t });
    }
    if (parts.includes('*') || types.length === 0) types = null;
  }
  if ('where' in q) {
    // No payload of the battery is a condition list; an empty list, or null, is no condition.
    let w;
    try { w = JSON.parse(q.where); } catch { return bad; }
    if (w !== null && (!Array.isArray(w) || w.length)) return bad;
  }
  let since = null;
  let until = null;
  if ('since' in q && (!isText(q.since) || (since = parseTime(q.since)) === null)) return bad;
  if ('until' in q && (!isText(q.until) || (until = parseTime(q.until)) === null)) return bad;
  let afterPos = 0n;
  if ('after' in q && (!isText(q.after) || (afterPos = parseLL(q.after)) === null || afterPos < 0n)) return bad;
  let limit = defaultLimit;
  if ('limit' in q) {
    const l = isText(q.limit) ? parseLL(q.limit) : null;
    if (l === null || l < 1n || (paged && l > 1000n)) return bad;
    limit = Number(l);
  }
  const f = { ...q, ...exact };
  const all = model.filter((e) =>
    (!('stream' in f) || e.stream === f.stream) &&
    (!('key' in f) || e.key === f.key) &&
    (!('correlation_id' in f) || e.correlation_id === f.correlation_id) &&
    (!('user_id' in f) || e.user_id === f.user_id) &&
    (!types || types.some((t) => (t.exact ? e.type === t.exact : e.type.startsWith(t.prefix)))) &&
    (since === null || Date.parse(e.time) >= since) &&
    (until === null || Date.parse(e.time) < until) &&
    BigInt(e.position) > afterPos);
  return { valid: true, events: all.slice(0, limit), more: all.length > limit };
}

function sameEvents(got, want, what) {
  const g = got.map((e) => `${e.position}:${e.id}`);
  const w = want.map((e) => `${e.position}:${e.id}`);
  assert.deepEqual(g, w, `${what}: the events answered are not exactly the matching ones`);
}

// Checks of a 2xx answer, by operation; `sent` maps "in:name" → the decoded value sent
// (null when it is not text).
const CHECKS = {
  'GET /v1/events'(res, sent) {
    const q = queryOf(sent);
    const m = eventsModel(q);
    assert.ok(m.valid, `a filter Sluice should refuse was answered ${res.status}`);
    sameEvents(res.json.events, m.events, 'GET /v1/events');
    assert.equal(res.json.has_more, m.more, 'has_more');
  },
  'GET /v1/streams/{stream}/keys/{key}'(res, sent) {
    const m = eventsModel(queryOf(sent), { defaultLimit: 1000, exact: { stream: sent['path:stream'], key: sent['path:key'] } });
    assert.ok(m.valid, `paging Sluice should refuse was answered ${res.status}`);
    sameEvents(res.json.events, m.events, 'an entity\'s history');
  },
  'GET /v1/correlations/{correlation_id}'(res, sent) {
    const m = eventsModel(queryOf(sent), { defaultLimit: 1000, exact: { correlation_id: sent['path:correlation_id'] } });
    assert.ok(m.valid, `paging Sluice should refuse was answered ${res.status}`);
    sameEvents(res.json.events, m.events, 'a flow');
  },
  'GET /v1/streams/{stream}'(res, sent) {
    assert.equal(res.json.stream, sent['path:stream']);
    assert.equal(res.json.event_count, model.filter((e) => e.stream === sent['path:stream']).length, 'event_count');
  },
  'GET /v1/streams/{stream}/groups'(res, sent) {
    for (const g of res.json.groups) {
      assert.ok(g.name === 'g-hostile' || (g.name === 'g1' && sent['path:stream'] === STREAM), `a group ${JSON.stringify(g.name)} listed on ${JSON.stringify(sent['path:stream'])}`);
    }
  },
  'GET /v1/events/wait'(res, sent) {
    if (res.status === 204) return;
    const q = queryOf(sent);
    delete q.timeout_ms;
    const m = eventsModel({ ...q, limit: '1000' });
    assert.ok(m.valid, 'a long poll Sluice should refuse was answered');
    assert.ok(m.events.some((e) => e.id === res.json.id), `the long poll answered event ${res.json.id}, which does not match its filter`);
  },
  'GET /v1/subscribe'(res) {
    assert.match(res.contentType, /^text\/event-stream/);
  },
  'GET /v1/dead-letters'(res, sent) {
    const q = queryOf(sent);
    const want = deadLetters.filter((d) =>
      (!('stream' in q) || d.stream === q.stream) && (!('group' in q) || d.group === q.group) &&
      (!('type' in q) || d.type === q.type) && (!('event_id' in q) || d.event_id === q.event_id) &&
      (!('source' in q) || d.source === q.source || d.source.startsWith(`${q.source}:`)) &&
      (!('status' in q) ? ['open', 'reprocessing'].includes(d.status) : d.status === q.status) &&
      (!('after' in q) || Number(d.id) > Number(q.after)));
    const limit = 'limit' in q ? Number(q.limit) : 100;
    assert.deepEqual(res.json.dead_letters.map((d) => d.id), want.slice(0, limit).map((d) => d.id), 'the dead letters answered are not exactly the matching ones');
  },
  'GET /v1/projections/{name}/state'(res, sent) {
    assert.equal(sent['path:name'], 'hostile-keys', 'a payload named a projection');
    const key = sent['query:key'];
    if (key !== undefined) {
      assert.ok(states.has(key), `state answered for a key the projection does not hold: ${JSON.stringify(key)}`);
      assert.equal(res.json.key, key);
      assert.deepEqual(res.json.state, states.get(key));
      return;
    }
    for (const st of res.json.states) assert.ok(states.has(st.key), `a state of a key the projection does not hold: ${JSON.stringify(st.key)}`);
  },
  'POST /v1/events'(res) {
    assert.equal(res.json.id, fx.atomicEnvelope.id, 'the re-sent event');
  },
  'POST /v1/schemas/{type}/validate'(res, sent) {
    assert.equal(sent['path:type'], fx.schemaType, 'a payload named a schema type');
  },
  'PUT /v1/streams/{stream}'(res, sent) {
    assert.equal(res.json.stream, sent['path:stream']);
  },
  'POST /v1/streams/{stream}/groups'(res, sent) {
    assert.match(sent['path:stream'], /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'a group was created on a stream that is not a stream name');
  },
};

function queryOf(sent) {
  const q = {};
  for (const [k, v] of Object.entries(sent)) if (k.startsWith('query:')) q[k.slice(6)] = v;
  return q;
}

// ---------------------------------------------------------------- the client

// One request; resolves {status, contentType, text, json}. A stream (SSE, NDJSON) resolves at
// its headers and is closed.
function send(method, pathAndQuery, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({
      host: '127.0.0.1', port: s.httpPort, method, path: pathAndQuery, agent: false,
      headers: { Authorization: `Bearer ${s.adminToken}`, Connection: 'close', ...(data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {}), ...headers },
    }, (res) => {
      const contentType = res.headers['content-type'] || '';
      if (/event-stream|ndjson/.test(contentType)) {
        res.destroy();
        resolve({ status: res.statusCode, contentType, text: '', json: undefined });
        return;
      }
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        if (/json/.test(contentType) && text) { try { json = JSON.parse(text); } catch (_) { json = undefined; } }
        resolve({ status: res.statusCode, contentType, text, json });
      });
      res.on('error', reject);
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms (a hang)`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

// Builds the request for `op` with `target` (a parameter) carrying `payload`; → {method, url,
// headers, body, sent} or null when the payload cannot travel in that place (a header value
// holds no CR, LF or NUL).
function build(op, target, payload) {
  const sent = {};
  let url = op.template;
  const query = [];
  const headers = {};
  for (const p of op.params) {
    const k = `${p.in}:${p.name}`;
    const st = strategyFor(op, p);
    let raw;
    if (p === target) {
      if (p.in === 'header') {
        if (!isText(payload.v) || /[\r\n\u0000]/.test(payload.v)) return null;
        raw = Buffer.from(payload.v, 'utf8').toString('latin1');
      } else {
        raw = encoded(payload);
      }
      sent[k] = isText(payload.v) ? payload.v : null;
    } else if (st.base && (p.in === 'path' || st.always)) {
      const v = st.base(op);
      raw = p.in === 'header' ? v : encodeURIComponent(v);
      sent[k] = v;
    } else {
      continue;
    }
    if (p.in === 'path') url = url.replace(`{${p.name}}`, raw);
    else if (p.in === 'query') query.push(`${encodeURIComponent(p.name)}=${raw}`);
    else if (p.in === 'header') headers[p.name] = raw;
  }
  if (query.length) url += '?' + query.join('&');
  return { method: op.method, url, headers, body: op.body ? BODIES[op.id]() : undefined, sent };
}

function checkAnswer(op, target, payload, req, res) {
  const what = `${req.method} ${req.url.length > 160 ? req.url.slice(0, 160) + '…' : req.url} (${target.in} ${target.name} = ${show(payload)})`;
  assert.ok(res.status < 500, `${what}: HTTP ${res.status} ${res.text.slice(0, 300)}`);
  if (res.status >= 400) {
    assert.match(res.contentType, /^application\/problem\+json/, `${what}: a ${res.status} that is not a problem document: ${res.contentType} ${res.text.slice(0, 200)}`);
    assert.ok(res.json && typeof res.json.code === 'string', `${what}: the problem has no code: ${res.text.slice(0, 200)}`);
    assert.equal(res.json.status, res.status, `${what}: the problem's status field`);
    return;
  }
  try {
    if (CHECKS[op.id]) {
      if (/json/.test(res.contentType) && res.status !== 204) assert.ok(res.json !== undefined, `unparsable JSON: ${res.text.slice(0, 200)}`);
      CHECKS[op.id](res, req.sent);
    } else if (target.in === 'path') {
      assert.fail(`HTTP ${res.status}: a payload in the path named something that exists: ${res.text.slice(0, 200)}`);
    }
  } catch (e) {
    e.message = `${what}: ${e.message}`;
    throw e;
  }
}

// ---------------------------------------------------------------- the tests

describe('SQL injection through every documented parameter', () => {
  test('every parameter of every operation has a value strategy, and every operation with a body a body', () => {
    const missing = [];
    let n = 0;
    for (const op of operations()) {
      for (const p of op.params) {
        n++;
        const st = strategyFor(op, p);
        if (!st) missing.push(`${op.id}: ${p.in} parameter '${p.name}' has no value strategy`);
        else if (p.in === 'path' && !st.base) missing.push(`${op.id}: path parameter '${p.name}' has no valid value`);
      }
      if (op.body && op.params.length && !BODIES[op.id]) missing.push(`${op.id}: takes a body and parameters but has no body strategy`);
    }
    assert.ok(n >= 40, `the document lists only ${n} parameters`);
    assert.deepEqual(missing, [], 'parameters without a strategy');
  });

  test('with valid values every read answers 2xx, with exactly the matching results', async () => {
    const checked = [];
    for (const op of operations()) {
      if (op.method !== 'GET' || !op.params.length) continue;
      const req = build(op, null, null);
      const res = await send(req.method, req.url, req);
      assert.ok(res.status >= 200 && res.status < 300, `${op.id} with valid values: HTTP ${res.status} ${res.text.slice(0, 300)}`);
      if (CHECKS[op.id]) CHECKS[op.id](res, req.sent);
      checked.push(op.id);
    }
    // The payloads stored as keys are found again, exactly, through every filter.
    for (const p of storable()) {
      for (const f of ['key', 'correlation_id', 'user_id']) {
        const res = await send('GET', `/v1/events?${f}=${encoded(p)}`);
        assert.equal(res.status, 200, `GET /v1/events?${f}=${show(p)}: HTTP ${res.status} ${res.text.slice(0, 200)}`);
        assert.equal(res.json.events.length, 1, `${f}=${show(p)} finds its one event`);
        CHECKS['GET /v1/events'](res, { [`query:${f}`]: p.v });
      }
    }
    assert.ok(checked.includes('GET /v1/events'), 'GET /v1/events is in the document');
  });

  test('a battery of injection payloads through each parameter: never 5xx, exact results or a problem', async (t) => {
    const failures = [];
    let requests = 0;
    let skipped = 0;
    const jobs = [];
    for (const op of operations()) {
      for (const target of op.params) {
        for (const payload of PAYLOADS) {
          const req = build(op, target, payload);
          if (!req) { skipped++; continue; }
          jobs.push({ op, target, payload, req });
        }
      }
    }
    let next = 0;
    const worker = async () => {
      while (next < jobs.length) {
        const j = jobs[next++];
        requests++;
        try {
          const res = await send(j.req.method, j.req.url, j.req);
          checkAnswer(j.op, j.target, j.payload, j.req, res);
        } catch (e) {
          failures.push(e.message);
        }
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    t.diagnostic(`${requests} requests over ${operations().filter((o) => o.params.length).length} operations; ${skipped} payloads that cannot travel in a header skipped`);
    assert.ok(requests > 1000, `only ${requests} requests`);
    assert.deepEqual(failures.slice(0, 40), [], `${failures.length} answers were wrong`);
  });

  test('the same battery through every string field of every JSON body: never 5xx, published values exact', async (t) => {
    const failures = [];
    const jobs = [];
    for (const op of operations()) {
      const media = op.requestBody && op.requestBody.content && op.requestBody.content['application/json'];
      if (!media) continue;
      const fields = bodyFields(op, media.schema);
      if (!fields.length) continue;
      if (!BODY_BASES[op.id]) { failures.push(`${op.id}: takes JSON with string fields but has no base body`); continue; }
      for (const field of fields) {
        for (const payload of PAYLOADS) {
          if (!isText(payload.v)) continue; // JSON text cannot carry it
          jobs.push({ op, field, payload });
        }
      }
    }
    let n = 0;
    let next = 0;
    const published = [];
    const worker = async () => {
      while (next < jobs.length) {
        const { op, field, payload } = jobs[next++];
        const body = BODY_BASES[op.id](n++);
        const value = field.wrap ? field.wrap(payload.v) : payload.v;
        setPath(body, field.path, field.array ? [value] : value);
        const url = op.template.replace(/\{([^}]+)\}/g, (_, name) => encodeURIComponent(strategyFor(op, { in: 'path', name }).base(op)));
        const what = `${op.id} ${field.path.join('.')} = ${show(payload)}`;
        try {
          const res = await send(op.method, url, { body });
          assert.ok(res.status < 500, `HTTP ${res.status} ${res.text.slice(0, 300)}`);
          if (res.status >= 400) {
            assert.match(res.contentType, /^application\/problem\+json/, `a ${res.status} that is not a problem document`);
            assert.equal(res.json.status, res.status, 'the problem\'s status field');
          } else if (op.id === 'POST /v1/events') {
            published.push({ id: res.json.id, field: field.path.join('.'), value });
          } else if (op.id === 'POST /v1/keys') {
            created.keys.push(res.json.id);
          } else if (op.id === 'POST /v1/projections') {
            created.projections.push(body.name);
          }
        } catch (e) {
          failures.push(`${what}: ${e.message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    // What was published with a payload reads back with exactly that payload.
    for (const p of published) {
      const res = await send('GET', '/v1/events/' + encodeURIComponent(p.id));
      if (res.status !== 200) { failures.push(`event ${p.id} (${p.field} = ${JSON.stringify(p.value).slice(0, 60)}) does not read back: ${res.status}`); continue; }
      const got = p.field === 'stream' ? res.json.stream : res.json[p.field];
      if (got !== p.value) failures.push(`event ${p.id}: ${p.field} reads back as ${JSON.stringify(got).slice(0, 80)}, sent ${JSON.stringify(p.value).slice(0, 80)}`);
    }
    t.diagnostic(`${jobs.length} bodies; ${published.length} events published with a payload in a field, each read back`);
    assert.ok(jobs.length > 500, `only ${jobs.length} bodies`);
    assert.ok(published.length > 50, `only ${published.length} events were published with payloads`);
    assert.equal(failures.length, 0, `${failures.length} answers were wrong:\n${failures.slice(0, 40).join('\n')}`);
  });

  test('afterwards the data is intact and Sluice still serves', async () => {
    for (const id of created.keys) h.assertStatus(await A.del('/v1/keys/' + encodeURIComponent(id)), 204);
    for (const name of created.projections) h.assertStatus(await A.del('/v1/projections/' + encodeURIComponent(name)), 204);
    const now = dbSnapshot();
    assert.equal(now.pwned, '0', 'a payload created a table');
    assert.deepEqual(now, snapshot, 'tables, events, keys, dead letters and projections are as before the battery');
    const nd = await A.get('/v1/events', { headers: { Accept: 'application/x-ndjson' } });
    const events = nd.text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.position <= fx.head);
    assert.deepEqual(events, model, 'every event stored before reads back unchanged');
    h.assertStatus(await A.publish({ type: 'hostile.after', stream: OTHER_STREAM, data: {} }), 201);
  });
});
