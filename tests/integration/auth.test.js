'use strict';
// Issue 2: API keys, scopes and tenants — 401/403, tenant isolation, POST/GET/DELETE /v1/keys,
// keys hashed at rest, `sluice keys create`, `sluice migrate`, `sluice --help`, SLUICE_AUTH=off.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const h = require('./lib/harness');

let s;
let admin;
before(async () => { s = await h.startSluice({ name: 'auth' }); admin = s.client(); });
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

const ev = (extra = {}) => ({ type: 'auth.checked', data: { x: 1 }, ...extra });

describe('401 unauthenticated', () => {
  const routes = [['GET', '/v1/events'], ['POST', '/v1/events'], ['GET', '/v1/events/some-id'], ['GET', '/v1/keys'], ['POST', '/v1/keys']];
  for (const [method, p] of routes) {
    test(`${method} ${p} without a token, with a bad token, with a malformed header`, async () => {
      const body = method === 'POST' ? JSON.stringify(ev()) : undefined;
      const headers = method === 'POST' ? { 'Content-Type': 'application/json' } : {};
      h.assertProblem(await admin.request(method, p, { body, headers, token: null }), 401, 'unauthenticated');
      h.assertProblem(await admin.request(method, p, { body, headers, token: 'not-a-real-token' }), 401, 'unauthenticated');
      h.assertProblem(await admin.request(method, p, { body, headers, token: s.adminToken + 'x' }), 401, 'unauthenticated');
      h.assertProblem(await admin.request(method, p, { body, headers: { ...headers, Authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } }), 401, 'unauthenticated');
      h.assertProblem(await admin.request(method, p, { body, headers: { ...headers, Authorization: 'Bearer' } }), 401, 'unauthenticated');
    });
  }

  test('a rejected publish stores nothing', async () => {
    const id = 'unauth-' + h.rand(4);
    h.assertProblem(await admin.publish(ev({ id }), { token: 'nope' }), 401, 'unauthenticated');
    h.assertProblem(await admin.get('/v1/events/' + id), 404, 'not_found');
  });
});

describe('403 forbidden for a missing scope', () => {
  test('read-only key cannot publish; publish-only key cannot read; non-admin keys cannot manage keys', async () => {
    const ro = s.client((await h.createKey(s, 'default', ['read'])).token);
    const po = s.client((await h.createKey(s, 'default', ['publish'])).token);
    const sub = s.client((await h.createKey(s, 'default', ['subscribe', 'schemas'])).token);
    const both = s.client((await h.createKey(s, 'default', ['publish', 'read'])).token);

    const id = 'scoped-' + h.rand(4);
    h.assertProblem(await ro.publish(ev({ id })), 403, 'forbidden');
    h.assertProblem(await sub.publish(ev({ id })), 403, 'forbidden');
    h.assertProblem(await admin.get('/v1/events/' + id), 404, 'not_found');

    const okPub = await po.publish(ev({ id }));
    h.assertStatus(okPub, 201);
    h.assertProblem(await po.get('/v1/events/' + id), 403, 'forbidden');
    h.assertProblem(await po.get('/v1/events'), 403, 'forbidden');
    h.assertProblem(await sub.get('/v1/events'), 403, 'forbidden');
    assert.equal(h.assertStatus(await ro.get('/v1/events/' + id), 200).id, id);
    assert.ok(h.assertStatus(await ro.get('/v1/events'), 200).events.some((e) => e.id === id));

    for (const c of [ro, po, sub, both]) {
      h.assertProblem(await c.get('/v1/keys'), 403, 'forbidden');
      h.assertProblem(await c.post('/v1/keys', { tenant_id: 'default', scopes: ['admin'] }), 403, 'forbidden');
      h.assertProblem(await c.del('/v1/keys/whatever'), 403, 'forbidden');
    }
    h.assertStatus(await both.publish(ev()), 201);
  });
});

describe('tenant isolation', () => {
  test("tenant B cannot see tenant A's events by id or by query; B's publish lands in B", async () => {
    const keyB = await h.createKey(s, 'tenant-b', ['publish', 'read'], 'b');
    assert.equal(keyB.tenant_id, 'tenant-b');
    const B = s.client(keyB.token);
    const A = admin; // tenant default

    const aId = 'iso-' + h.rand(4);
    const aRes = await A.publish({ id: aId, type: 'iso.created', data: { owner: 'A' }, key: 'shared-key', correlation_id: 'corr-iso', user_id: 'user-iso' });
    h.assertStatus(aRes, 201);
    assert.equal(aRes.body.version, 1);

    h.assertProblem(await B.get('/v1/events/' + aId), 404, 'not_found');
    for (const q of ['', '?stream=iso.events', '?type=iso.created', '?type=iso.*', '?key=shared-key', '?correlation_id=corr-iso', '?user_id=user-iso', '?after=0&limit=1000']) {
      const r = h.assertStatus(await B.get('/v1/events' + q), 200);
      assert.deepEqual(r.events, [], `B sees nothing for ${q || '(no filter)'}: ${JSON.stringify(r).slice(0, 500)}`);
    }
    const nd = await B.get('/v1/events', { headers: { Accept: 'application/x-ndjson' } });
    h.assertStatus(nd, 200);
    assert.equal(nd.text.trim(), '', 'B sees nothing in NDJSON');

    // B uses the same client id, stream and key: its own event, its own version numbering.
    const bRes = await B.publish({ id: aId, type: 'iso.created', data: { owner: 'B' }, key: 'shared-key' });
    h.assertStatus(bRes, 201);
    assert.equal(bRes.body.version, 1, "B's (stream, key) does not continue A's versions");
    const bEv = h.assertStatus(await B.get('/v1/events/' + aId), 200);
    assert.equal(bEv.tenant_id, 'tenant-b');
    assert.deepEqual(bEv.data, { owner: 'B' });
    const bAll = h.assertStatus(await B.get('/v1/events?limit=1000'), 200).events;
    assert.equal(bAll.length, 1);
    assert.ok(bAll.every((e) => e.tenant_id === 'tenant-b'));

    const bExpected = await B.publish({ type: 'iso.created', data: {}, key: 'shared-key', expected_version: 1 });
    assert.equal(h.assertStatus(bExpected, 201).version, 2);

    // A still sees exactly its own
    const aEv = h.assertStatus(await A.get('/v1/events/' + aId), 200);
    assert.deepEqual(aEv.data, { owner: 'A' });
    assert.equal(aEv.tenant_id, 'default');
    const aIso = h.assertStatus(await A.get('/v1/events?stream=iso.events&limit=1000'), 200).events;
    assert.deepEqual(aIso.map((e) => e.id), [aId]);
    const aConflict = await A.publish({ type: 'iso.created', data: {}, key: 'shared-key', expected_version: 2 });
    assert.equal(h.assertProblem(aConflict, 409, 'version_conflict').current_version, 1, "A's version is not B's");

    // B's re-send of A's id with A's content is B's idempotent replay, never A's answer
    const bReplay = await B.publish({ id: aId, type: 'iso.created', data: { owner: 'B' }, key: 'shared-key' });
    h.assertStatus(bReplay, 200);
    assert.equal(bReplay.body.position, bRes.body.position);
    const bDup = await B.publish({ id: aId, type: 'iso.created', data: { owner: 'A' }, key: 'shared-key', correlation_id: 'corr-iso', user_id: 'user-iso' });
    h.assertProblem(bDup, 409, 'duplicate_id');
  });
});

describe('/v1/keys', () => {
  test('POST creates a key whose token works once shown; GET lists without secrets; DELETE revokes', async () => {
    const created = await admin.post('/v1/keys', { tenant_id: 'tenant-k', scopes: ['publish', 'read'], name: 'ci key' });
    h.assertStatus(created, 201);
    const k = created.body;
    assert.equal(typeof k.id, 'string');
    assert.equal(typeof k.token, 'string');
    assert.ok(k.token.length >= 20, 'a token of some strength');
    assert.equal(k.tenant_id, 'tenant-k');
    assert.deepEqual([...k.scopes].sort(), ['publish', 'read']);

    const kc = s.client(k.token);
    const pub = await kc.publish(ev());
    h.assertStatus(pub, 201);
    assert.equal(h.assertStatus(await kc.get('/v1/events/' + pub.body.id), 200).tenant_id, 'tenant-k');

    const list = await admin.get('/v1/keys');
    h.assertStatus(list, 200);
    const keys = Array.isArray(list.body) ? list.body : list.body.keys;
    assert.ok(Array.isArray(keys), `GET /v1/keys lists keys: ${list.text.slice(0, 300)}`);
    const mine = keys.find((x) => x.id === k.id);
    assert.ok(mine, 'the new key is listed');
    assert.equal(mine.tenant_id, 'tenant-k');
    assert.equal(mine.name, 'ci key');
    assert.deepEqual([...mine.scopes].sort(), ['publish', 'read']);
    assert.ok(!('token' in mine), 'no token in the list');
    assert.ok(!list.text.includes(k.token), 'the token is shown once only');

    const del = await admin.del('/v1/keys/' + encodeURIComponent(k.id));
    assert.ok(del.status === 204 || del.status === 200, h.describeRes(del));
    h.assertProblem(await kc.get('/v1/events'), 401, 'unauthenticated');
    h.assertProblem(await kc.publish(ev()), 401, 'unauthenticated');
    h.assertProblem(await admin.del('/v1/keys/' + encodeURIComponent(k.id)), 404, 'not_found');
    const after = h.assertStatus(await admin.get('/v1/keys'), 200);
    const afterKeys = Array.isArray(after) ? after : after.keys;
    const still = afterKeys.find((x) => x.id === k.id);
    assert.ok(!still || still.revoked_at || still.deleted_at || still.revoked === true, 'deleted key not listed as active');
    // the event it published stays
    h.assertStatus(await admin.withToken((await h.createKey(s, 'tenant-k', ['read'])).token).get('/v1/events/' + pub.body.id), 200);
  });

  test('with two instances on one database, a key made or deleted on one holds on the other within a bound', async () => {
    const other = await h.startSluice({ name: 'auth-twin', dbUrl: s.dbUrl, adminToken: s.adminToken });
    try {
      const k = await h.createKey(s, 'tenant-twin', ['read'], 'twin');
      await h.waitFor(async () => (await other.client(k.token).get('/v1/events')).status === 200,
        { timeout: 10000, interval: 50, what: 'the other instance to accept a new key' });
      const del = await admin.del('/v1/keys/' + encodeURIComponent(k.id));
      assert.ok(del.status === 204 || del.status === 200, h.describeRes(del));
      await h.waitFor(async () => (await other.client(k.token).get('/v1/events')).status === 401,
        { timeout: 10000, interval: 50, what: 'the other instance to reject a deleted key' });
      await other.stop();
    } finally {
      await other.cleanup();
    }
  });

  test('a key for tenant X with admin scope is still confined to tenant X for events', async () => {
    const xa = s.client((await h.createKey(s, 'tenant-x', ['admin', 'publish', 'read'])).token);
    const aId = 'xadm-' + h.rand(4);
    h.assertStatus(await admin.publish(ev({ id: aId })), 201);
    h.assertProblem(await xa.get('/v1/events/' + aId), 404, 'not_found');
  });

  test('invalid key requests → 400', async () => {
    for (const body of [{ tenant_id: 't', scopes: ['bogus'] }, { tenant_id: 't', scopes: 'read' }, { tenant_id: '', scopes: ['read'] }, { tenant_id: 't', scopes: [] }]) {
      const res = await admin.post('/v1/keys', body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${h.describeRes(res)}`);
      assert.match(res.contentType, /^application\/problem\+json/);
    }
  });

  test('tokens are stored hashed: no token appears in a dump of the database', async () => {
    const k = await h.createKey(s, 'tenant-h', ['read'], 'hashed');
    const dump = execFileSync('pg_dump', ['--data-only', s.dbUrl], { encoding: 'utf8', maxBuffer: 256 << 20 });
    assert.ok(dump.length > 0);
    assert.ok(dump.includes('tenant-h'), 'the key is in the database');
    assert.ok(!dump.includes(k.token), 'the plain token is not');
  });
});

describe('CLI', () => {
  test('`sluice keys create` prints a key that the running server accepts', async () => {
    const r = await h.runSluiceCli(['keys', 'create', '--tenant', 'cli-tenant', '--scopes', 'publish,read', '--name', 'from-cli'],
      { env: { SLUICE_DATABASE_URL: s.dbUrl } });
    assert.equal(r.code, 0, `exit code; stderr: ${r.stderr}`);
    const k = JSON.parse(r.stdout.trim());
    for (const f of ['id', 'token', 'tenant_id', 'scopes']) assert.ok(f in k, `${f} in ${r.stdout}`);
    assert.equal(k.tenant_id, 'cli-tenant');
    assert.deepEqual([...k.scopes].sort(), ['publish', 'read']);
    const kc = s.client(k.token);
    // The server may cache keys briefly; a key made by the CLI must work within a short bound.
    const pub = await h.waitFor(async () => { const r = await kc.publish(ev()); return r.status === 201 && r; },
      { timeout: 10000, interval: 100, what: 'the CLI-made key to be accepted' });
    const got = h.assertStatus(await kc.get('/v1/events/' + pub.body.id), 200);
    assert.equal(got.tenant_id, 'cli-tenant');
    const listed = h.assertStatus(await admin.get('/v1/keys'), 200);
    const keys = Array.isArray(listed) ? listed : listed.keys;
    assert.ok(keys.some((x) => x.id === k.id && x.name === 'from-cli'));
  });

  test('`sluice keys create` with a bad scope fails with a nonzero exit and no key', async () => {
    const r = await h.runSluiceCli(['keys', 'create', '--tenant', 'cli-bad', '--scopes', 'publish,bogus'],
      { env: { SLUICE_DATABASE_URL: s.dbUrl } });
    assert.notEqual(r.code, 0, `stdout: ${r.stdout}`);
    const listed = h.assertStatus(await admin.get('/v1/keys'), 200);
    const keys = Array.isArray(listed) ? listed : listed.keys;
    assert.ok(!keys.some((x) => x.tenant_id === 'cli-bad'));
  });

  test('`sluice migrate` applies migrations to an empty database and is idempotent', async () => {
    const db = await h.freshDatabase();
    try {
      const r1 = await h.runSluiceCli(['migrate'], { env: { SLUICE_DATABASE_URL: db.url } });
      assert.equal(r1.code, 0, `migrate: ${r1.stderr}`);
      const n1 = Number(h.psql(db.url, 'SELECT count(*) FROM schema_migrations'));
      assert.ok(n1 >= 1, 'schema_migrations records the applied migrations');
      const tables = h.psql(db.url, "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'");
      assert.match(tables, /events/);
      const r2 = await h.runSluiceCli(['migrate'], { env: { SLUICE_DATABASE_URL: db.url } });
      assert.equal(r2.code, 0, `second migrate: ${r2.stderr}`);
      assert.equal(Number(h.psql(db.url, 'SELECT count(*) FROM schema_migrations')), n1);
    } finally {
      db.drop();
    }
  });

  test('`sluice --help` lists the configuration variables', async () => {
    const r = await h.runSluiceCli(['--help']);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout + r.stderr;
    for (const v of ['SLUICE_DATABASE_URL', 'SLUICE_REDIS_URL', 'SLUICE_HTTP_PORT', 'SLUICE_WS_PORT', 'SLUICE_BIND',
      'SLUICE_ADMIN_TOKEN', 'SLUICE_AUTH', 'SLUICE_MAX_BODY_BYTES', 'SLUICE_MAX_BATCH', 'SLUICE_LOG_LEVEL']) {
      assert.ok(out.includes(v), `--help mentions ${v}`);
    }
  });
});

describe('SLUICE_AUTH=off', () => {
  test('serves without tokens and warns in the log', async () => {
    const open = await h.startSluice({ name: 'authoff', env: { SLUICE_AUTH: 'off' } });
    try {
      const c = open.client(null);
      const r = await c.publish(ev());
      h.assertStatus(r, 201);
      h.assertStatus(await c.get('/v1/events/' + r.body.id), 200);
      const warn = open.logJson().find((l) => /warn/i.test(String(l.level)) && /auth/i.test(JSON.stringify(l)));
      assert.ok(warn, `a warning about auth being off in the log:\n${open.logs.slice(0, 20).join('\n')}`);
    } finally {
      await open.stop().finally(() => open.cleanup());
    }
  });

  test('without SLUICE_ADMIN_TOKEN a token is generated and printed once, and works', async () => {
    const gen = await h.startSluice({ name: 'gentoken', env: { SLUICE_ADMIN_TOKEN: undefined } });
    try {
      // find a printed token: any string in stdout/stderr that authenticates as admin
      const text = gen.output();
      const candidates = [...new Set(text.match(/[A-Za-z0-9_\-.]{20,}/g) || [])];
      let found = null;
      for (const t of candidates.slice(0, 200)) {
        const r = await gen.client(t).get('/v1/keys');
        if (r.status === 200) { found = t; break; }
      }
      assert.ok(found, `a working admin token is printed at first start:\n${gen.logs.slice(0, 30).join('\n')}`);
    } finally {
      await gen.stop().finally(() => gen.cleanup());
    }
  });
});
