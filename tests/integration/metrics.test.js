'use strict';
// GET /metrics (API.md "Operations", issue 7) after traffic of every kind the metrics cover:
// publishes stored and rejected (several problem codes), a WebSocket and an SSE subscriber,
// a consumer group with a real worker, group and projection dead letters, a projection. The
// exposition must pass Prometheus's own parser and linter (`promtool check metrics`, from
// Debian's prometheus package, installed by scripts/install-deps.sh) with no error and no
// warning; the counts must match the traffic; and label values must stay bounded: no event
// ids, ULIDs, keys, correlation or user ids, consumer names or unregistered names — only the
// registered streams and types (or `_other`), Sluice's problem codes, and the names of
// projections and groups an admin defined.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const WebSocket = require('ws');
const h = require('./lib/harness');
const kit = require('./lib/groups_kit');
const { contract } = require('./lib/contract');

const WAIT_MS = 30000; // "no hang" bound for one expected state

// `promtool check metrics` reads the exposition on stdin; it prints parse errors and lint
// problems and exits non-zero on either.
function promtool(text) {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 60000 });
  if (r.error && r.error.code === 'ENOENT') {
    assert.fail('promtool is not installed: scripts/install-deps.sh installs Debian\'s prometheus package');
  }
  return { status: r.status, output: `${r.stdout || ''}${r.stderr || ''}`.trim() };
}

// Samples of an exposition that promtool accepted: [{name, labels: {…}, value}].
function samples(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `sample line: ${line}`);
    const labels = {};
    const lre = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
    let l;
    while ((l = lre.exec(m[2] || '')) !== null) labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function one(all, name, labels = {}) {
  const hits = all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.equal(hits.length, 1, `exactly one ${name}${JSON.stringify(labels)}: ${JSON.stringify(hits)}`);
  return hits[0].value;
}

describe('GET /metrics after every kind of traffic', () => {
  let s;
  let c;
  let prefix;
  let worker;
  let ws;
  let sse;
  let text;
  let all;
  const t = kit.typeBase();
  const stream = `${t}.events`;
  const okType = `${t}.ok`;
  const badType = `${t}.bad`;
  const projection = `sum-${t}`;
  const group = `workers-${t}`;
  const secrets = {
    id: `evt-${h.rand(6)}`, key: `user-${h.rand(6)}`, correlation: `corr-${h.rand(6)}`, user: `u-${h.rand(6)}`,
    unknownType: `${t}.nosuch`, badType: 'Not A Type', spyStream: `spy${h.rand(4)}`, consumer: `w-${h.rand(4)}`,
  };
  const wsEvents = [];
  let sseText = '';

  before(async () => {
    ({ s, c, prefix } = await kit.startGroupsSluice('metrics', { env: { SLUICE_ALLOW_UNKNOWN_TYPES: '0' } }));
    secrets.token = s.adminToken;
    for (const [type, schema] of [[okType, { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } }], [badType, { type: 'object' }]]) {
      h.assertStatus(await c.post('/v1/schemas', { type, schema }), 201);
    }

    // live subscribers: one WebSocket, one SSE
    ws = new WebSocket(`ws://127.0.0.1:${s.wsPort}/v1/ws?token=${s.adminToken}`, { perMessageDeflate: false });
    const subscribed = new Promise((resolve, reject) => {
      ws.on('message', (d) => {
        const m = JSON.parse(d.toString('utf8'));
        if (m.op === 'subscribed') resolve();
        if (m.op === 'event') wsEvents.push(m.event);
      });
      ws.once('error', reject);
    });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    ws.send(JSON.stringify({ op: 'subscribe', id: 's1', streams: [stream] }));
    assert.notEqual(await h.race(subscribed, WAIT_MS, 'timeout'), 'timeout', 'WebSocket subscribed');
    sse = new AbortController();
    const res = await fetch(`${s.url}/v1/subscribe?stream=${stream}`, { headers: { Authorization: `Bearer ${s.adminToken}` }, signal: sse.signal });
    assert.equal(res.status, 200);
    (async () => {
      const dec = new TextDecoder();
      try { for await (const chunk of res.body) sseText += dec.decode(chunk, { stream: true }); } catch (_) { /* aborted */ }
    })();

    // a consumer group whose worker dead-letters every bad event, and a projection that
    // cannot sum a string
    await kit.createGroup(c, stream, { name: group, max_deliveries: 3, ack_timeout_ms: 5000, retry: { base_delay_ms: 100, max_delay_ms: 400, jitter: true } });
    worker = await new kit.Worker({ key: kit.keyOf(prefix, stream), group, name: secrets.consumer, client: c, stream,
      decide: (d) => (d.type === badType ? 'fatal' : 'ack') }).start();
    h.assertStatus(await c.post('/v1/projections', { name: projection, filter: { types: [okType, badType] }, reduce: 'sum', path: '/data/v' }), 201);

    // stored: a batch and one event carrying every id a label must never show
    await kit.publishN(c, okType, 5, (i) => ({ n: i, v: i }));
    await kit.publishN(c, badType, 2, () => ({ v: 'not a number' }));
    h.assertStatus(await c.publish({ type: okType, data: { n: 9, v: 1 }, id: secrets.id, key: secrets.key, correlation_id: secrets.correlation, user_id: secrets.user }), 201);

    // rejected, by code
    h.assertProblem(await c.request('POST', '/v1/events', { body: '{', headers: { 'Content-Type': 'application/json' } }), 400, 'invalid_json');
    h.assertProblem(await c.publish({ type: secrets.badType, data: {} }), 400, 'invalid_envelope');
    h.assertProblem(await c.publish({ type: okType, data: { n: 'x' } }), 422, 'schema_violation');
    h.assertProblem(await c.publish({ type: secrets.unknownType, data: {} }), 422, 'unknown_type');
    h.assertProblem(await c.publish({ type: okType, data: { n: 1 }, key: secrets.key, expected_version: 7 }), 409, 'version_conflict');
    h.assertProblem(await c.publish({ type: okType, stream: secrets.spyStream, data: { n: 1 }, key: secrets.key, expected_version: 3 }), 409, 'version_conflict');
    h.assertProblem(await c.get('/v1/events', { token: 'sk_wrong' }), 401, 'unauthenticated');
    h.assertProblem(await c.get(`/v1/events/${secrets.id}-missing`), 404, 'not_found');

    // everything has happened: deliveries, dead letters, the projection caught up
    await h.waitFor(() => wsEvents.length >= 8 && (sseText.match(/^event: event$/gm) || []).length >= 8,
      { timeout: WAIT_MS, what: 'the WebSocket and SSE subscribers to get all 8 events' });
    await kit.waitDeadLetters(c, { source: 'group' }, 2);
    await kit.waitDeadLetters(c, { source: `projection:${projection}` }, 2);
    const head = h.assertStatus(await c.get('/v1/info'), 200).head_position;
    await h.waitFor(async () => h.assertStatus(await c.get(`/v1/projections/${projection}`), 200).position >= head,
      { timeout: WAIT_MS, what: 'the projection to reach the head' });
    worker.assertHealthy();

    const m = await c.get('/metrics', { token: null });
    h.assertStatus(m, 200);
    assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
    text = m.text;
    all = samples(text);
  });

  after(async () => {
    if (ws) ws.terminate();
    if (sse) sse.abort();
    if (worker) await worker.stop().catch(() => {});
    if (s) await s.stop().finally(() => s.cleanup());
    if (prefix) await kit.deletePrefix(prefix);
  });

  test('promtool check metrics: no parse error, no lint problem', () => {
    const r = promtool(text);
    assert.equal(r.output, '', `promtool check metrics said:\n${r.output}\n--- exposition:\n${text}`);
    assert.equal(r.status, 0, `promtool exit status ${r.status}`);
  });

  test('promtool is strict: a broken exposition fails it', () => {
    const broken = promtool('# TYPE x counter\nx{a="1"} 1\nx{a="1"} 2\n');
    assert.notEqual(broken.status, 0, 'a duplicate series is refused');
    const lint = promtool('# HELP sluice_thing_count A counter without _total.\n# TYPE sluice_thing_count counter\nsluice_thing_count 1\n');
    assert.notEqual(lint.status, 0, 'a lint problem fails the check');
    assert.match(lint.output, /_total/);
  });

  test('publish counts and the latency histogram match the traffic', () => {
    const ok = { stream, type: okType };
    assert.equal(one(all, 'sluice_events_published_total', { ...ok, outcome: 'stored' }), 6);
    assert.equal(one(all, 'sluice_events_published_total', { ...ok, outcome: 'failed' }), 1, 'the version conflict on a registered stream');
    assert.equal(one(all, 'sluice_events_published_total', { stream, type: badType, outcome: 'stored' }), 2);
    assert.equal(one(all, 'sluice_publish_duration_seconds_count', ok), 7);
    assert.equal(one(all, 'sluice_publish_duration_seconds_bucket', { ...ok, le: '+Inf' }), 7);
    assert.ok(one(all, 'sluice_publish_duration_seconds_sum', ok) > 0);
    const buckets = all.filter((x) => x.name === 'sluice_publish_duration_seconds_bucket' && x.labels.stream === stream && x.labels.type === okType);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'buckets are cumulative');
    assert.ok(one(all, 'sluice_appender_batch_events_count') >= 3);
    assert.ok(one(all, 'sluice_appender_batch_events_sum') >= 8);
  });

  test('rejections by problem code, answers by class', () => {
    for (const code of ['invalid_json', 'invalid_envelope', 'schema_violation', 'unknown_type', 'unauthenticated', 'not_found']) {
      assert.ok(one(all, 'sluice_rejections_total', { code }) >= 1, code);
    }
    assert.ok(one(all, 'sluice_rejections_total', { code: 'version_conflict' }) >= 2);
    assert.ok(one(all, 'sluice_http_responses_total', { class: '4xx' }) >= 8);
    assert.ok(one(all, 'sluice_http_responses_total', { class: '2xx' }) >= 5);
  });

  test('subscribers, relay, projection lag and dead letters', () => {
    assert.equal(one(all, 'sluice_ws_connections'), 1);
    assert.equal(one(all, 'sluice_ws_slow_closes_total'), 0);
    assert.equal(one(all, 'sluice_relay_leader'), 1);
    assert.ok(one(all, 'sluice_head_position') >= 8);
    assert.ok(one(all, 'sluice_relay_lag_events') >= 0);
    assert.equal(one(all, 'sluice_projection_lag_events', { projection }), 0);
    assert.ok(one(all, 'sluice_dead_letters', { source: 'group', status: 'open' }) >= 2);
    const g = { tenant: 'default', stream, group };
    assert.ok(one(all, 'sluice_group_dead', g) >= 2, 'the dead-lettered entries stay parked in the group');
    assert.ok(one(all, 'sluice_group_pending', g) >= one(all, 'sluice_group_dead', g), 'parked entries are pending');
    assert.equal(one(all, 'sluice_group_consumers', g), 1, 'the worker');
    assert.ok(one(all, 'sluice_group_lag', g) >= 0);
    assert.ok(one(all, 'sluice_group_retrying', g) >= 0);
    assert.ok(one(all, 'sluice_dead_letters', { source: 'projection', status: 'open' }) >= 2);
    assert.equal(one(all, 'sluice_build_info'), 1);
  });

  test('label values are bounded: registered names, fixed codes, no ids or user values', async () => {
    const streams = new Set(h.assertStatus(await c.get('/v1/streams'), 200).streams.map((x) => x.stream));
    const registry = h.assertStatus(await c.get('/v1/schemas'), 200).schemas;
    for (const x of registry) streams.add(x.stream);
    const types = new Set(registry.map((x) => x.type));
    const projections = new Set(h.assertStatus(await c.get('/v1/projections'), 200).projections.map((x) => x.name));
    const groups = new Set(h.assertStatus(await c.get(kit.groupsPath(stream)), 200).groups.map((x) => x.name));
    const codes = new Set(contract().doc.components.schemas.Problem.properties.code.enum);
    const allowed = {
      stream: (v) => streams.has(v) || v === '_other',
      type: (v) => types.has(v) || v === '_other',
      outcome: (v) => v === 'stored' || v === 'failed',
      le: (v) => v === '+Inf' || Number.isFinite(Number(v)),
      code: (v) => codes.has(v),
      class: (v) => /^[1-5]xx$/.test(v),
      version: (v) => /^\d+\.\d+\.\d+/.test(v),
      projection: (v) => projections.has(v),
      source: (v) => v === 'group' || v === 'projection',
      status: (v) => ['open', 'reprocessing', 'resolved', 'discarded'].includes(v),
      group: (v) => groups.has(v),
      // tenants exist only by an admin's key; this sluice serves the default one alone
      tenant: (v) => v === 'default',
    };
    const never = new Set(Object.values(secrets));
    for (const x of all) {
      for (const [k, v] of Object.entries(x.labels)) {
        assert.ok(allowed[k], `${x.name}: label ${k} is not a known bounded label (${JSON.stringify(x.labels)})`);
        assert.ok(allowed[k](v), `${x.name}: ${k}="${v}" is not a registered or fixed value`);
        assert.ok(!never.has(v) && ![...never].some((sv) => v.includes(sv)), `${x.name}: ${k}="${v}" carries a user value`);
        assert.doesNotMatch(v, /[0-9A-HJKMNP-TV-Z]{26}/, `${x.name}: ${k}="${v}" looks like a ULID`);
      }
    }
    assert.ok(!text.includes(secrets.spyStream), 'a stream that never stored an event is no label');
  });
});
