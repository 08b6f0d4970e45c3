'use strict';
// Issue 2: GET /health, GET /ready, GET /v1/info (head_position), SIGTERM exit code.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

let s;
let c;
before(async () => { s = await h.startSluice({ name: 'ops' }); c = s.client(); });
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

function findValue(obj, pred, pathSoFar = '') {
  if (pred(obj)) return pathSoFar || '/';
  if (obj && typeof obj === 'object') {
    for (const [k, v] of Object.entries(obj)) {
      const r = findValue(v, pred, `${pathSoFar}/${k}`);
      if (r) return r;
    }
  }
  return null;
}

test('GET /health → 200 without a token', async () => {
  const r = await c.get('/health', { token: null });
  h.assertStatus(r, 200);
});

test('GET /ready → 200 without a token while PostgreSQL is up', async () => {
  const r = await c.get('/ready', { token: null });
  h.assertStatus(r, 200);
});

test('GET /v1/info on an empty store: version, ports, head_position 0', async () => {
  const r = await c.get('/v1/info');
  const info = h.assertStatus(r, 200);
  assert.equal(typeof info.version, 'string');
  assert.equal(info.head_position, 0, `no events yet: ${r.text}`);
  if (s.wsPort > 0) assert.ok(findValue(info, (v) => v === s.wsPort), `info names the WebSocket port ${s.wsPort}: ${r.text}`);
  assert.ok(findValue(info, (v) => v === s.httpPort), `info names the HTTP port ${s.httpPort}: ${r.text}`);
  assert.ok(findValue(info, (v) => v === 1000), `info names the batch limit: ${r.text}`);
  assert.ok(findValue(info, (v) => v === 4 * 1024 * 1024), `info names the body limit: ${r.text}`);
});

test('head_position equals the last committed position after each publish', async () => {
  let last = 0;
  for (let i = 0; i < 5; i++) {
    const p = await c.publish(i % 2 ? [{ type: 'ops.tick', data: { i } }, { type: 'ops.tick', data: { i } }] : { type: 'ops.tick', data: { i } });
    h.assertStatus(p, 201);
    last = i % 2 ? p.body.events[1].position : p.body.position;
    const info = h.assertStatus(await c.get('/v1/info'), 200);
    assert.equal(info.head_position, last);
  }
  // every position up to head_position is readable
  const { events } = await h.readAllPages(c, {}, { limit: 1000 });
  assert.equal(events.length, 7);
  for (let i = 1; i < events.length; i++) assert.equal(events[i].position, events[i - 1].position + 1, 'no gaps');
  assert.equal(events[events.length - 1].position, last);
});

test('a rejected publish does not move head_position', async () => {
  const before = h.assertStatus(await c.get('/v1/info'), 200).head_position;
  h.assertProblem(await c.publish({ type: 'Nope', data: {} }), 400, 'invalid_envelope');
  h.assertProblem(await c.publish({ type: 'ops.tick', data: {} }, { token: 'bad' }), 401, 'unauthenticated');
  assert.equal(h.assertStatus(await c.get('/v1/info'), 200).head_position, before);
});

test('the log is JSON lines with a listening line', () => {
  const json = s.logJson();
  assert.ok(json.some((l) => l.msg === 'listening' && l.http_port === s.httpPort && l.ws_port === s.wsPort));
});

test('the request log: one JSON line per request with request id, method, route, status, duration, tenant and the correlation id it concerns', async () => {
  const rid = 'ops-' + h.rand(4);
  const cid = 'flow-' + h.rand(4);
  const one = await c.publish({ type: 'ops.tick', data: {}, correlation_id: cid }, { headers: { 'X-Request-Id': rid } });
  h.assertStatus(one, 201);
  assert.equal(one.headers.get('x-request-id'), rid, 'the client\'s X-Request-Id is echoed');
  const batch = await c.publish([{ type: 'ops.tick', data: {}, correlation_id: cid }, { type: 'ops.tick', data: {}, correlation_id: cid }], { headers: { 'X-Request-Id': rid + 'b' } });
  h.assertStatus(batch, 201);
  const mixed = await c.publish([{ type: 'ops.tick', data: {}, correlation_id: cid }, { type: 'ops.tick', data: {} }], { headers: { 'X-Request-Id': rid + 'm' } });
  h.assertStatus(mixed, 201);
  h.assertStatus(await c.get(`/v1/correlations/${cid}`, { headers: { 'X-Request-Id': rid + 'c' } }), 200);
  h.assertStatus(await c.get(`/v1/events?correlation_id=${cid}`, { headers: { 'X-Request-Id': rid + 'q' } }), 200);
  const line = async (id) => {
    await h.waitFor(() => s.logJson().some((l) => l.msg === 'request' && l.request_id === id), { timeout: 5000, what: `the log line of ${id}` });
    return s.logJson().find((l) => l.msg === 'request' && l.request_id === id);
  };
  const l = await line(rid);
  assert.equal(l.method, 'POST');
  assert.equal(l.route, '/v1/events');
  assert.equal(l.status, 201);
  assert.equal(typeof l.duration_ms, 'number');
  assert.equal(l.tenant, 'default');
  assert.equal(l.correlation_id, cid, 'a publish names its events\' correlation id');
  assert.equal((await line(rid + 'b')).correlation_id, cid, 'a batch that shares one');
  assert.equal((await line(rid + 'm')).correlation_id, undefined, 'a batch of several flows names none');
  const byPath = await line(rid + 'c');
  assert.equal(byPath.route, '/v1/correlations/{correlation_id}');
  assert.equal(byPath.correlation_id, cid);
  assert.equal((await line(rid + 'q')).correlation_id, cid, 'a read filtered by correlation id');
});

test('SIGTERM on an idle server exits 0 and the next start on the same database keeps the events', async () => {
  const db = await h.freshDatabase();
  try {
    const a = await h.startSluice({ name: 'ops-restart', dbUrl: db.url });
    let p;
    try {
      p = await a.client().publish({ type: 'ops.kept', data: { v: 1 } });
      h.assertStatus(p, 201);
      await a.stop(); // asserts exit code 0
    } finally {
      await a.cleanup();
    }
    const b = await h.startSluice({ name: 'ops-restart2', dbUrl: db.url });
    try {
      const ev = h.assertStatus(await b.client().get('/v1/events/' + p.body.id), 200);
      assert.deepEqual(ev.data, { v: 1 });
      assert.equal(h.assertStatus(await b.client().get('/v1/info'), 200).head_position, p.body.position);
      const next = await b.client().publish({ type: 'ops.kept', data: { v: 2 } });
      assert.equal(h.assertStatus(next, 201).position, p.body.position + 1);
    } finally {
      await b.stop().finally(() => b.cleanup());
    }
  } finally {
    db.drop();
  }
});

test('two instances started at once on one empty database: migrations under a lock, one gap-free log', { timeout: 180000 }, async () => {
  const db = await h.freshDatabase();
  const adminToken = 'adm_' + h.rand(16); // instances of one deployment share the admin token
  const started = await Promise.allSettled([
    h.startSluice({ name: 'twin-a', dbUrl: db.url, adminToken }),
    h.startSluice({ name: 'twin-b', dbUrl: db.url, adminToken }),
  ]);
  const handles = started.filter((r) => r.status === 'fulfilled').map((r) => r.value);
  try {
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    const [a, b] = handles;
    const acked = [];
    await Promise.all([a, b].flatMap((inst, n) => Array.from({ length: 4 }, async (_, w) => {
      const c = inst.client();
      for (let i = 0; i < 40; i++) {
        const r = await c.publish({ id: `twin-${n}-${w}-${i}`, type: 'twin.wrote', data: { n, w, i }, key: `k${w}` });
        h.assertStatus(r, 201);
        acked.push(r.body);
      }
    })));
    const { events } = await h.readAllPages(a.client(), {}, { limit: 1000 });
    assert.equal(events.length, 320);
    for (let i = 1; i < events.length; i++) assert.equal(events[i].position, events[i - 1].position + 1, 'no gaps across instances');
    const byId = new Map(events.map((e) => [e.id, e]));
    for (const x of acked) assert.equal(byId.get(x.id).position, x.position);
    for (let w = 0; w < 4; w++) {
      const vs = events.filter((e) => e.key === `k${w}`).map((e) => e.version);
      assert.deepEqual(vs, Array.from({ length: 80 }, (_, i) => i + 1), `versions of k${w} across instances`);
    }
    const files = require('node:fs').readdirSync(require('node:path').join(h.REPO, 'migrations')).filter((f) => /^\d{3}_.*\.sql$/.test(f));
    assert.equal(Number(h.psql(db.url, 'SELECT count(*) FROM schema_migrations')), files.length, 'every migration applied once');
    for (const x of handles) await x.stop();
  } finally {
    for (const x of handles) await x.cleanup();
    db.drop();
  }
});
