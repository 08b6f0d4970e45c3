'use strict';
// Issue 16: webhooks (API.md "Webhooks"). Sluice POSTs each matching event to a REAL HTTP
// receiver started by the test (lib/webhook_receiver.js: a node:http server on 127.0.0.1 that
// records every request's headers and raw body and answers by a script: 204, 500, 410, a delay
// past timeout_ms, a 302). Covered: Standard Webhooks signatures, checked by the test's own
// verifier (node:crypto, independent of Sluice) that first reproduces the specification's
// published test vector, and the two signatures of a secret rotation; the registry (create,
// list, get, delete, validation, scope); filters (streams, types, where); retries with each
// backoff strategy and timeout_ms; a dead letter after max_deliveries and its reprocess;
// pause/resume and 410 Gone; ordering "key" under a failing key; kill -9 of the delivering
// instance of two (at least once, nothing skipped); refused destinations (loopback, a name
// resolving to 127.0.0.1, private ranges, link-local/metadata always) and redirects not
// followed; tenant isolation.
//
// Sluices here run with SLUICE_WEBHOOK_ALLOW_PRIVATE=1 (the receiver is on 127.0.0.1), except
// the one that proves loopback is refused without it. Each sluice has its own
// SLUICE_REDIS_PREFIX. Every wait is a poll with a generous "no hang" bound; the only timing
// assertions are lower bounds the server must respect (a retry never comes before its backoff).
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('./lib/harness');
const { Receiver } = require('./lib/webhook_receiver');
const { allDeadLetters, deletePrefix } = require('./lib/groups_kit');

const WAIT_MS = 30000; // "no hang" bound for one expected state
const SECRET_RE = /^whsec_[A-Za-z0-9+/]{32}$/; // whsec_ + base64 of 24 bytes
const WEBHOOK_FIELDS = ['name', 'url', 'filter', 'max_deliveries', 'retry', 'timeout_ms', 'max_per_second', 'ordering',
  'headers', 'status', 'paused_reason', 'position', 'lag', 'delivered', 'failed', 'retrying', 'dead_letters',
  'last_success_at', 'last_failure', 'next_attempt_at', 'created_at'];

// ---------------------------------------------------------------- Standard Webhooks, verified here

// "v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>", key = base64-decoded secret after
// "whsec_" (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md).
function expectedSignature(secret, id, timestamp, raw) {
  assert.ok(secret.startsWith('whsec_'), `a secret starts with whsec_: ${secret}`);
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return 'v1,' + crypto.createHmac('sha256', key).update(`${id}.${timestamp}.`).update(raw).digest('base64');
}

const signatureEntries = (header) => String(header || '').split(' ').filter(Boolean);

function sameString(a, b) {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

// The receiver's check: one of the space-separated signatures is the one `secret` makes.
function verifies(secret, { id, timestamp, raw, signature }) {
  const want = expectedSignature(secret, id, timestamp, raw);
  return signatureEntries(signature).some((s) => sameString(s, want));
}

function deliveryOf(rec) {
  return { id: rec.headers['webhook-id'], timestamp: rec.headers['webhook-timestamp'], raw: rec.raw, signature: rec.headers['webhook-signature'] };
}

// What every delivery must be: a signed POST of JSON, timestamp in Unix seconds close to its
// arrival (the specification's replay tolerance is 5 minutes).
function assertSignedDelivery(rec, secret, what) {
  const d = deliveryOf(rec);
  assert.equal(rec.method, 'POST', what);
  assert.match(String(rec.headers['content-type']), /^application\/json\b/, `${what}: content type`);
  assert.ok(d.id, `${what}: webhook-id`);
  assert.match(String(d.timestamp), /^\d{10}$/, `${what}: webhook-timestamp is Unix seconds`);
  assert.ok(Math.abs(Number(d.timestamp) - rec.receivedAt / 1000) < 300, `${what}: webhook-timestamp ${d.timestamp} within 5 minutes of arrival`);
  assert.ok(signatureEntries(d.signature).every((s) => /^v1,[A-Za-z0-9+/]{43}=$/.test(s)), `${what}: webhook-signature entries: ${d.signature}`);
  assert.ok(verifies(secret, d), `${what}: the signature verifies with the webhook's secret (${d.signature})`);
}

// ---------------------------------------------------------------- sluice, webhooks, events

async function startWebhookSluice(name, { allowPrivate = true, ...opts } = {}) {
  const prefix = `itwh${h.rand(4)}:`;
  const s = await h.startSluice({
    name, ...opts,
    env: { SLUICE_REDIS_PREFIX: prefix, SLUICE_WEBHOOK_ALLOW_PRIVATE: allowPrivate ? '1' : undefined, ...(opts.env || {}) },
  });
  s.redisPrefix = prefix;
  return s;
}

// Stops with exit code 0 (SIGTERM), whatever a test did; always reaps and cleans up.
async function stopSluice(s) {
  if (!s) return;
  try { await s.stop(); } finally {
    await s.cleanup();
    await deletePrefix(s.redisPrefix);
  }
}

const hookPath = (name, what = '') => `/v1/webhooks/${encodeURIComponent(name)}${what}`;
const typeBase = () => `wh${h.rand(4)}`;
const hookName = (what) => `${what}-${h.rand(3)}`;

async function createWebhook(c, body) {
  const res = await c.post('/v1/webhooks', body);
  h.assertStatus(res, 201);
  assert.match(String(res.body.secret), SECRET_RE, `the 201 shows the secret: ${res.text}`);
  return res.body;
}

const webhookInfo = async (c, name) => h.assertStatus(await c.get(hookPath(name)), 200);

// Waits until the webhook's checkpoint covers `position` (every event up to it delivered,
// dead-lettered or not matching).
function waitCheckpoint(c, name, position, timeout = WAIT_MS) {
  return h.waitFor(async () => {
    const w = await webhookInfo(c, name);
    return w.position >= position && w;
  }, { timeout, interval: 50, what: `webhook ${name} to cover position ${position}` });
}

// Publishes envelopes as one batch; the acks in order.
async function publish(c, envs) {
  const res = await c.publish(envs);
  h.assertStatus(res, 201);
  return Array.isArray(res.body.events) ? res.body.events : [res.body];
}

function waitReceived(rx, ids, { timeout = WAIT_MS, what = 'deliveries' } = {}) {
  const want = [...ids];
  return h.waitFor(() => {
    const got = rx.ids();
    return want.every((id) => got.has(id));
  }, { timeout, interval: 20, what: `${what}: ${want.length} ids at ${rx.url} (has ${rx.ids().size})` });
}

// Receivers and webhooks a test makes, closed and deleted whatever happens.
async function withKit(c, fn) {
  const receivers = [];
  const hooks = [];
  const kit = {
    async receiver(answer) {
      const r = await Receiver.start(answer);
      receivers.push(r);
      return r;
    },
    async webhook(body, client = c) {
      const w = await createWebhook(client, body);
      hooks.push([client, w.name]);
      return w;
    },
  };
  try {
    return await fn(kit);
  } finally {
    for (const [cl, name] of hooks) { try { await cl.del(hookPath(name)); } catch (_) { /* gone with its sluice */ } }
    for (const r of receivers) await r.close();
  }
}

// Prometheus text → value of `name` whose labels include every one of `labels` (any order).
async function metric(c, name, labels) {
  const res = await c.get('/metrics');
  assert.equal(res.status, 200, h.describeRes(res));
  for (const line of res.text.split('\n')) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...m[2].matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

// Waits until metric() reads `want` (gauges may be refreshed after the state they show).
async function waitMetric(c, name, labels, want) {
  let last;
  await h.waitFor(async () => { last = await metric(c, name, labels); return last === want; },
    { timeout: WAIT_MS, interval: 100, what: `${name}${JSON.stringify(labels)} = ${want}` }).catch((e) => {
    throw new Error(`${e.message}; it reads ${last}`);
  });
}

// ---------------------------------------------------------------- signatures

describe('webhooks: Standard Webhooks signatures', () => {
  let s;
  let c;
  before(async () => { s = await startWebhookSluice('wh-sign'); c = s.client(); });
  after(async () => { await stopSluice(s); });

  test('the test verifier reproduces the specification\'s test vector and rejects any change to it', () => {
    // From the Standard Webhooks specification and its reference libraries' tests.
    const v = {
      secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
      id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      timestamp: '1614265330',
      raw: Buffer.from('{"test": 2432232314}'),
      signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    };
    assert.equal(expectedSignature(v.secret, v.id, v.timestamp, v.raw), v.signature);
    assert.ok(verifies(v.secret, v));
    assert.ok(verifies(v.secret, { ...v, signature: `v1,${Buffer.alloc(32, 7).toString('base64')} ${v.signature}` }), 'one valid entry among several');
    const changed = {
      id: { id: 'msg_p5jXN8AQM9LWM0D4loKWxJeK' },
      timestamp: { timestamp: '1614265331' },
      body: { raw: Buffer.from('{"test": 2432232315}') },
      'body whitespace': { raw: Buffer.from('{"test":2432232314}') },
      version: { signature: 'v2,' + v.signature.slice(3) },
      'no signature': { signature: '' },
      secret: { secret: 'whsec_' + Buffer.alloc(24, 1).toString('base64') },
    };
    for (const [what, ch] of Object.entries(changed)) {
      const x = { ...v, ...ch };
      assert.equal(verifies(x.secret, x), false, `a changed ${what} does not verify`);
    }
  });

  test('every delivery is a signed POST of the stored envelope: webhook-id = event id, the signature verifies with the secret shown at creation, the webhook\'s own headers are sent', async () => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      const rx = await kit.receiver(() => 204);
      const w = await kit.webhook({ name: hookName('sign'), url: `${rx.url}/hooks/in?src=sluice`, filter: { types: [`${t}.*`] }, headers: { 'X-Hook-Token': 'tok-123' } });
      assert.equal(w.status, 'active');
      const envs = [
        { type: `${t}.plain`, stream: `${t}.events`, data: { n: 1 } },
        { type: `${t}.unicode`, stream: `${t}.events`, data: { s: 'é—✓ 😀 "quoted" \\ / \n\t \u001f', arr: [1.5, -0, 1e21, null, true] } },
        { type: `${t}.keyed`, stream: `${t}.events`, key: 'k/1', data: { n: 2 }, metadata: { m: 'x' }, correlation_id: 'corr-1', user_id: 'u-1', source: 'test' },
        { type: `${t}.big`, stream: `${t}.events`, data: { pad: 'x'.repeat(20000) } },
        { id: `client-${h.rand(4)}`, type: `${t}.plain`, stream: `${t}.other`, data: { n: 3 } },
      ];
      const acks = await publish(c, envs);
      const ids = acks.map((a) => a.id);
      await waitReceived(rx, ids);
      await waitCheckpoint(c, w.name, acks[acks.length - 1].position);

      const other = 'whsec_' + crypto.randomBytes(24).toString('base64');
      assert.equal(rx.requests.length, ids.length, 'one delivery per event (nothing failed)');
      for (const rec of rx.requests) {
        const what = `delivery of ${rec.id}`;
        assertSignedDelivery(rec, w.secret, what);
        assert.ok(ids.includes(rec.id), `${what}: webhook-id is one of the published event ids`);
        assert.equal(signatureEntries(rec.headers['webhook-signature']).length, 1, `${what}: one signature outside a rotation`);
        assert.equal(verifies(other, deliveryOf(rec)), false, `${what}: another secret does not verify it`);
        assert.equal(rec.path, '/hooks/in?src=sluice', `${what}: the URL's path and query`);
        assert.equal(rec.headers['x-hook-token'], 'tok-123', `${what}: the webhook's own header`);
        const stored = h.assertStatus(await c.get(`/v1/events/${encodeURIComponent(rec.id)}`), 200);
        assert.deepEqual(rec.json, stored, `${what}: the body is the stored envelope`);
      }
      // Sluice's own secret format: 24 random bytes, different per webhook.
      const w2 = await kit.webhook({ name: hookName('sign2'), url: `${rx.url}/x`, filter: { types: [`${t}.none`] } });
      assert.notEqual(w2.secret, w.secret);
      assert.equal(Buffer.from(w.secret.slice(6), 'base64').length, 24);
      const got = await webhookInfo(c, w.name);
      assert.equal(got.secret, undefined, 'GET never shows the secret');
      assert.ok(!JSON.stringify(h.assertStatus(await c.get('/v1/webhooks'), 200)).includes(w.secret.slice(6)), 'the list never shows a secret');
    });
  });

  test('rotate-secret: every later delivery carries two signatures, one valid with the old secret and one with the new', async () => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      const rx = await kit.receiver(() => 204);
      const w = await kit.webhook({ name: hookName('rot'), url: `${rx.url}/r`, filter: { types: [`${t}.*`] } });
      const [first] = await publish(c, [{ type: `${t}.before`, stream: `${t}.events`, data: { n: 0 } }]);
      await waitReceived(rx, [first.id]);
      const before = rx.attemptsOf(first.id)[0];
      assertSignedDelivery(before, w.secret, 'before the rotation');
      assert.equal(signatureEntries(before.headers['webhook-signature']).length, 1);

      const rot = h.assertStatus(await c.post(hookPath(w.name, '/rotate-secret')), 200);
      assert.equal(rot.name, w.name);
      assert.match(String(rot.secret), SECRET_RE);
      assert.notEqual(rot.secret, w.secret);

      // Events published after the 200, one at a time until a delivery carries both signatures;
      // then a batch. Every one of them must carry both (checked last, to say how many did not).
      const afterRotate = [];
      const signatures = (a) => rx.attemptsOf(a.id).map((r) => signatureEntries(r.headers['webhook-signature']).length);
      await h.waitFor(async () => {
        const [a] = await publish(c, [{ type: `${t}.after`, stream: `${t}.events`, data: { probe: afterRotate.length } }]);
        afterRotate.push(a);
        await waitReceived(rx, [a.id]);
        return signatures(a)[0] === 2;
      }, { timeout: WAIT_MS, interval: 100, what: 'a delivery signed with both secrets' });
      const batch = await publish(c, Array.from({ length: 4 }, (_, i) => ({ type: `${t}.after`, stream: `${t}.events`, data: { i } })));
      afterRotate.push(...batch);
      await waitReceived(rx, batch.map((a) => a.id));
      for (const a of batch) {
        for (const rec of rx.attemptsOf(a.id)) {
          const d = deliveryOf(rec);
          const entries = signatureEntries(d.signature);
          assert.equal(entries.length, 2, `during the rotation two signatures: ${d.signature}`);
          const byOld = entries.filter((e) => verifies(w.secret, { ...d, signature: e }));
          const byNew = entries.filter((e) => verifies(rot.secret, { ...d, signature: e }));
          assert.equal(byOld.length, 1, `one signature verifies with the old secret: ${d.signature}`);
          assert.equal(byNew.length, 1, `one signature verifies with the new secret: ${d.signature}`);
          assert.notEqual(byOld[0], byNew[0]);
          assertSignedDelivery(rec, rot.secret, `delivery of ${a.id} after the rotation`);
        }
      }
      const oneSignature = afterRotate.filter((a) => signatures(a).some((n) => n !== 2));
      for (const a of oneSignature) for (const rec of rx.attemptsOf(a.id)) assertSignedDelivery(rec, w.secret, 'signed with the old secret');
      assert.deepEqual(oneSignature.map((a) => a.position), [],
        `${oneSignature.length} of ${afterRotate.length} events published after rotate-secret answered 200 were delivered with the old signature only`);
      h.assertProblem(await c.post(hookPath('no-such-hook', '/rotate-secret')), 404, 'not_found');
    });
  });
});

// ---------------------------------------------------------------- registry, filters

describe('webhooks: registry and filters', () => {
  let s;
  let c;
  before(async () => { s = await startWebhookSluice('wh-registry'); c = s.client(); });
  after(async () => { await stopSluice(s); });

  test('create, list, get, delete; 409 for a name that exists; a deleted webhook delivers nothing more', async () => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      const keep = await kit.receiver(() => 204);
      const gone = await kit.receiver(() => 204);
      const body = {
        name: hookName('a.b:c_d'), url: `${keep.url}/k`, filter: { streams: [`${t}.events`], types: [`${t}.*`], where: [{ path: '/data/n', op: 'gte', value: 0 }] },
        max_deliveries: 7, retry: { strategy: 'linear', base_delay_ms: 250, max_delay_ms: 5000, jitter: false }, timeout_ms: 4000,
        max_per_second: 500, ordering: 'key', headers: { 'X-A': '1' },
      };
      const w = await kit.webhook(body);
      for (const f of ['name', 'url', 'max_deliveries', 'timeout_ms', 'max_per_second', 'ordering', 'headers']) assert.deepEqual(w[f], body[f], `201 ${f}`);
      assert.deepEqual(w.retry, body.retry);
      assert.deepEqual(w.filter.streams, body.filter.streams);
      assert.deepEqual(w.filter.types, body.filter.types);
      assert.deepEqual(w.filter.where, body.filter.where);
      const g = await webhookInfo(c, w.name);
      for (const f of WEBHOOK_FIELDS) assert.ok(f in g, `GET has ${f}: ${JSON.stringify(g)}`);
      assert.equal(g.status, 'active');
      assert.equal(g.paused_reason, null);
      assert.equal(g.lag, 0);
      assert.equal(g.last_failure, null);
      assert.match(g.created_at, h.TIME_RE);

      // defaults
      const d = await kit.webhook({ name: hookName('defaults'), url: `${gone.url}/g`, filter: { streams: [`${t}.events`] } });
      assert.equal(d.max_deliveries, 5);
      assert.deepEqual(d.retry, { strategy: 'exponential', base_delay_ms: 1000, max_delay_ms: 30000, jitter: true });
      assert.equal(d.timeout_ms, 10000);
      assert.equal(d.max_per_second, null);
      assert.equal(d.ordering, 'none');

      const list = h.assertStatus(await c.get('/v1/webhooks'), 200);
      assert.ok(Array.isArray(list.webhooks));
      assert.deepEqual(list.webhooks.map((x) => x.name).filter((n) => n === w.name || n === d.name).sort(), [w.name, d.name].sort());

      h.assertProblem(await c.post('/v1/webhooks', { ...body, url: `${gone.url}/other` }), 409, 'conflict');
      assert.equal((await webhookInfo(c, w.name)).url, body.url, 'the 409 changed nothing');

      // d delivers before it is deleted: the DELETE must stop a webhook that is running.
      const [warm] = await publish(c, [{ type: `${t}.warm`, stream: `${t}.events`, data: { n: 0 } }]);
      await waitReceived(gone, [warm.id], { what: 'the first delivery' });
      await waitReceived(keep, [warm.id], { what: 'the first delivery' });
      gone.requests.length = 0;
      const del = await c.del(hookPath(d.name));
      assert.equal(del.status, 204, h.describeRes(del));
      h.assertProblem(await c.get(hookPath(d.name)), 404, 'not_found');
      h.assertProblem(await c.del(hookPath(d.name)), 404, 'not_found');
      for (const what of ['/pause', '/resume', '/rotate-secret']) h.assertProblem(await c.post(hookPath(d.name, what)), 404, 'not_found');

      const acks = await publish(c, Array.from({ length: 3 }, (_, i) => ({ type: `${t}.x`, stream: `${t}.events`, key: `k${i}`, data: { n: i } })));
      await waitReceived(keep, acks.map((a) => a.id));
      await waitCheckpoint(c, w.name, acks[2].position);
      await h.sleep(300); // a deleted webhook's late delivery would show by now
      assert.deepEqual(gone.requests.map((r) => r.json && r.json.position), [], `events published after DELETE answered 204 were delivered to the deleted webhook (positions ${acks[0].position}…${acks[2].position})`);
    });
  });

  test('invalid bodies → 400 invalid_request (a bad where → 400 invalid_filter); the webhook routes need the admin scope', async () => {
    await withKit(c, async (kit) => {
      const rx = await kit.receiver(() => 204);
      const url = `${rx.url}/v`;
      const bad = [
        {},
        { url },
        { name: 'no-url' },
        { name: '', url },
        { name: 'has space', url },
        { name: 'x'.repeat(65), url },
        { name: 'sl/ash', url },
        { name: 'ok', url: 'ftp://example.com/x' },
        { name: 'ok', url: 'not a url' },
        { name: 'ok', url: 42 },
        { name: 'ok', url, max_deliveries: 0 },
        { name: 'ok', url, max_deliveries: '3' },
        { name: 'ok', url, timeout_ms: 0 },
        { name: 'ok', url, ordering: 'fifo' },
        { name: 'ok', url, retry: { strategy: 'cubic' } },
        { name: 'ok', url, retry: { base_delay_ms: -1 } },
        { name: 'ok', url, headers: { 'X-A': 5 } },
        { name: 'ok', url, start: 'yesterday' },
        { name: 'ok', url, extra: true },
        [],
      ];
      const wrong = [];
      for (const b of bad) {
        const res = await c.post('/v1/webhooks', b);
        if (res.status !== 400 || !res.body || res.body.code !== 'invalid_request') wrong.push(`${JSON.stringify(b)} → ${h.describeRes(res)}`);
      }
      assert.deepEqual(wrong, [], 'each is 400 invalid_request');
      h.assertProblem(await c.post('/v1/webhooks', { name: 'ok', url, filter: { where: [{ path: '/data/x', op: 'near', value: 1 }] } }), 400, 'invalid_filter');
      const streamsNotList = await c.post('/v1/webhooks', { name: 'ok', url, filter: { streams: 'a' } });
      assert.equal(streamsNotList.status, 400, h.describeRes(streamsNotList));
      assert.ok(['invalid_request', 'invalid_filter'].includes(streamsNotList.body.code), h.describeRes(streamsNotList));
      h.assertProblem(await c.request('POST', '/v1/webhooks', { body: '{"name":', headers: { 'Content-Type': 'application/json' } }), 400, 'invalid_json');
      assert.ok(!h.assertStatus(await c.get('/v1/webhooks'), 200).webhooks.some((w) => w.name === 'ok'), 'nothing was created');

      const w = await kit.webhook({ name: hookName('scoped'), url, filter: { types: ['nothing.here'] } });
      const k = await h.createKey(s, 'default', ['publish', 'read', 'subscribe', 'consume', 'schemas']);
      const u = c.withToken(k.token);
      for (const res of [
        await u.get('/v1/webhooks'),
        await u.post('/v1/webhooks', { name: hookName('x'), url }),
        await u.get(hookPath(w.name)),
        await u.del(hookPath(w.name)),
        await u.post(hookPath(w.name, '/pause')),
        await u.post(hookPath(w.name, '/resume')),
        await u.post(hookPath(w.name, '/rotate-secret')),
      ]) assert.equal(res.status, 403, h.describeRes(res));
      assert.equal((await c.get('/v1/webhooks', { token: null })).status, 401);
      assert.equal((await webhookInfo(c, w.name)).status, 'active', 'nothing changed');
    });
  });

  test('filters: streams, types (exact and prefix.*), where — only matching events arrive', async () => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      const S1 = `${t}.one`;
      const S2 = `${t}.two`;
      const types = [`${t}.a`, `${t}.b`, `${t}.p.x`, `${t}.p.y`, `${t}.px`];
      const colors = ['red', 'green', 'blue'];
      const defs = {
        streams: { filter: { streams: [S1] }, match: (e) => e.stream === S1 },
        types: { filter: { types: [`${t}.a`, `${t}.p.*`] }, match: (e) => e.type === `${t}.a` || e.type.startsWith(`${t}.p.`) },
        where: { filter: { streams: [S1, S2], where: [{ path: '/data/n', op: 'gt', value: 5 }] }, match: (e) => e.data.n > 5 },
        all: {
          filter: { streams: [S1], types: [`${t}.p.*`], where: [{ path: '/data/color', op: 'in', value: ['red', 'blue'] }, { path: '/data/n', op: 'gte', value: 3 }] },
          match: (e) => e.stream === S1 && e.type.startsWith(`${t}.p.`) && ['red', 'blue'].includes(e.data.color) && e.data.n >= 3,
        },
      };
      const hooks = {};
      for (const [k, d] of Object.entries(defs)) {
        const rx = await kit.receiver(() => 204);
        hooks[k] = { rx, w: await kit.webhook({ name: hookName(`f-${k}`), url: `${rx.url}/${k}`, filter: d.filter }), match: d.match };
      }
      const envs = [];
      for (let i = 0; i < 60; i++) envs.push({ type: types[i % types.length], stream: i % 2 ? S2 : S1, data: { n: i % 10, color: colors[i % 3] } });
      const acks = [];
      for (let i = 0; i < envs.length; i += 20) acks.push(...await publish(c, envs.slice(i, i + 20)));
      const last = acks[acks.length - 1].position;
      for (const [k, x] of Object.entries(hooks)) {
        const want = envs.map((e, i) => (x.match(e) ? acks[i].id : null)).filter(Boolean);
        assert.ok(want.length > 0 && want.length < envs.length, `filter ${k} selects some, not all (${want.length})`);
        await waitReceived(x.rx, want, { what: `filter ${k}` });
        await waitCheckpoint(c, x.w.name, last);
        const got = x.rx.requests.map((r) => r.id);
        assert.deepEqual([...new Set(got)].sort(), [...want].sort(), `filter ${k}: exactly the matching events`);
        assert.equal(got.length, want.length, `filter ${k}: each once (nothing failed)`);
        for (const r of x.rx.requests) assert.ok(x.match(r.json), `filter ${k}: ${r.body.slice(0, 300)} matches`);
      }
    });
  });
});

describe('webhooks: a backlog larger than the window', () => {
  let s;
  let c;
  before(async () => { s = await startWebhookSluice('wh-backlog'); c = s.client(); });
  after(async () => { await stopSluice(s); });

  // Each webhook reads the log ahead into a window of 1,024 events; webhooks of different
  // speeds share the reads, so a fast one is far ahead while a slow one waits for room.
  test('3,000 events owed to webhooks of different speeds: each receives every event exactly once, none skipped', { timeout: 180000 }, async () => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      const S = `${t}.backlog`;
      const acks = [];
      for (let i = 0; i < 3000; i += 500) {
        acks.push(...await publish(c, Array.from({ length: 500 }, (_, k) => ({ type: `${t}.x`, stream: S, data: { i: i + k } }))));
      }
      const speeds = { fast: 0, medium: 2, slow: 10 };
      const hooks = {};
      for (const [k, delayMs] of Object.entries(speeds)) {
        const rx = await kit.receiver(() => (delayMs ? { status: 204, delayMs } : 204));
        hooks[k] = { rx, w: await kit.webhook({ name: hookName(`bl-${k}`), url: `${rx.url}/${k}`, filter: { streams: [S] }, start: '0' }) };
      }
      const want = acks.map((a) => a.id);
      for (const [k, x] of Object.entries(hooks)) {
        await waitReceived(x.rx, want, { timeout: 120000, what: `webhook ${k}` });
        await waitCheckpoint(c, x.w.name, acks[acks.length - 1].position);
        const got = x.rx.requests.map((r) => r.id);
        assert.equal(got.length, want.length, `webhook ${k}: each event once`);
      }
    });
  });
});

// ---------------------------------------------------------------- failures

describe('webhooks: retries, timeouts, dead letters', () => {
  let s;
  let c;
  before(async () => { s = await startWebhookSluice('wh-retry'); c = s.client(); });
  after(async () => { await stopSluice(s); });

  test('retries follow the configured backoff (fixed, linear, exponential; no jitter): same webhook-id and body each attempt, never before the delay', async (ctx) => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      const cases = {
        fixed: { retry: { strategy: 'fixed', base_delay_ms: 200, max_delay_ms: 10000, jitter: false }, fails: 2, gaps: [200, 200] },
        linear: { retry: { strategy: 'linear', base_delay_ms: 120, max_delay_ms: 10000, jitter: false }, fails: 2, gaps: [120, 240] },
        exponential: { retry: { strategy: 'exponential', base_delay_ms: 100, max_delay_ms: 10000, jitter: false }, fails: 3, gaps: [100, 200, 400] },
      };
      const run = {};
      for (const [k, x] of Object.entries(cases)) {
        // 500 for the first `fails` attempts of an event, then 204.
        const rx = await kit.receiver((rec, r) => (r.attemptsOf(rec.id).length <= x.fails ? { status: 500, body: 'try later' } : 204));
        const w = await kit.webhook({ name: hookName(`r-${k}`), url: `${rx.url}/${k}`, filter: { types: [`${t}.${k}`] }, max_deliveries: 5, retry: x.retry });
        run[k] = { rx, w };
      }
      const acks = {};
      for (const k of Object.keys(cases)) [acks[k]] = await publish(c, [{ type: `${t}.${k}`, stream: `${t}.events`, data: { k } }]);
      for (const [k, x] of Object.entries(cases)) {
        const { rx, w } = run[k];
        const id = acks[k].id;
        await h.waitFor(() => rx.attemptsOf(id).some((r) => r.status === 204), { timeout: WAIT_MS, what: `${k}: a successful attempt` });
        // The receiver answered; Sluice counts the delivery once it has read the answer.
        const info = await h.waitFor(async () => {
          const x = await webhookInfo(c, w.name);
          return x.delivered >= 1 && x.position >= acks[k].position && x;
        }, { timeout: WAIT_MS, what: `${k}: the delivery counted` });
        const attempts = rx.attemptsOf(id);
        assert.deepEqual(attempts.map((r) => r.status), [...Array(x.fails).fill(500), 204], `${k}: ${x.fails} failures, then the success, nothing after`);
        const stored = h.assertStatus(await c.get(`/v1/events/${encodeURIComponent(id)}`), 200);
        for (const [i, r] of attempts.entries()) {
          assert.deepEqual(r.json, stored, `${k}: attempt ${i + 1} is the stored envelope (GET /v1/events/{id})`);
          assertSignedDelivery(r, w.secret, `${k} attempt ${i + 1}`);
        }
        if (!attempts.every((r) => r.raw.equals(attempts[0].raw))) ctx.diagnostic(`${k}: the attempts' bodies are equal JSON, not the same bytes`);
        for (let i = 1; i < attempts.length; i++) {
          const gap = attempts[i].receivedAt - attempts[i - 1].answeredAt;
          // 10 ms for the two clocks' granularity; the server may wait longer, never shorter.
          assert.ok(gap >= x.gaps[i - 1] - 10, `${k}: attempt ${i + 1} came ${gap} ms after failure ${i}, before the backoff ${x.gaps[i - 1]} ms`);
        }
        assert.equal(info.status, 'active');
        assert.ok(info.delivered >= 1, JSON.stringify(info));
        assert.ok(info.last_failure && info.last_failure.position === acks[k].position, `${k}: last_failure names the event: ${JSON.stringify(info)}`);
        assert.match(String(info.last_failure.error), /500/, `${k}: last_failure says what the endpoint answered`);
        assert.match(info.last_success_at, h.TIME_RE);
      }
      const fx = run.fixed.w.name;
      await waitMetric(c, 'sluice_webhook_deliveries_total', { tenant: 'default', webhook: fx, outcome: 'delivered' }, 1);
      await waitMetric(c, 'sluice_webhook_deliveries_total', { tenant: 'default', webhook: fx, outcome: 'failed' }, 2);
      // Every attempt, failed or delivered, is one observation of the latency histogram.
      const hl = { tenant: 'default', webhook: fx };
      assert.equal(await metric(c, 'sluice_webhook_attempt_seconds_count', hl), 3);
      assert.equal(await metric(c, 'sluice_webhook_attempt_seconds_bucket', { ...hl, le: '+Inf' }), 3);
      assert.ok(await metric(c, 'sluice_webhook_attempt_seconds_sum', hl) > 0);
    });
  });

  test('an answer later than timeout_ms is a failed attempt: the connection is dropped and the event sent again', async () => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      // First attempt: answer only after 3 s (timeout 300 ms); then at once.
      const rx = await kit.receiver((rec, r) => (r.attemptsOf(rec.id).length === 1 ? { status: 204, delayMs: 3000 } : 204));
      const w = await kit.webhook({ name: hookName('timeout'), url: `${rx.url}/slow`, filter: { types: [`${t}.*`] }, timeout_ms: 300, max_deliveries: 3, retry: { strategy: 'fixed', base_delay_ms: 100, max_delay_ms: 100, jitter: false } });
      const [a] = await publish(c, [{ type: `${t}.x`, stream: `${t}.events`, data: {} }]);
      await h.waitFor(() => rx.attemptsOf(a.id).some((r) => r.status === 204), { timeout: WAIT_MS, what: 'the second attempt answered' });
      const info = await waitCheckpoint(c, w.name, a.position);
      const attempts = rx.attemptsOf(a.id);
      assert.ok(attempts.length >= 2, `attempts: ${attempts.length}`);
      assert.equal(attempts[0].clientGone, true, 'Sluice hung up on the slow answer');
      // 50 ms for the time the first request took to arrive: the timeout runs from its sending.
      assert.ok(attempts[1].receivedAt - attempts[0].receivedAt >= 300 + 100 - 50, 'the retry came after timeout + backoff');
      assert.ok(info.last_failure && info.last_failure.position === a.position, JSON.stringify(info));
      assert.equal(info.dead_letters, 0);
    });
  });

  test('after max_deliveries a dead letter with source webhook:<name>; reprocess delivers it again (same webhook-id) and the letter is resolved', async () => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      let healthy = false;
      const rx = await kit.receiver(() => (healthy ? 204 : 500));
      const w = await kit.webhook({ name: hookName('dead'), url: `${rx.url}/d`, filter: { types: [`${t}.*`] }, max_deliveries: 2, retry: { strategy: 'fixed', base_delay_ms: 100, max_delay_ms: 100, jitter: false } });
      const [bad, next] = await publish(c, [
        { type: `${t}.x`, stream: `${t}.events`, data: { n: 1 } },
        { type: `${t}.x`, stream: `${t}.events`, data: { n: 2 } },
      ]);
      const source = `webhook:${w.name}`;
      await h.waitFor(async () => (await allDeadLetters(c, { source })).length >= 2, { timeout: WAIT_MS, what: `dead letters of ${source}` });
      const letters = await allDeadLetters(c, { source });
      assert.deepEqual(letters.map((x) => x.event_id).sort(), [bad.id, next.id].sort(), 'both events, once each');
      const info = await waitCheckpoint(c, w.name, next.position);
      assert.equal(info.dead_letters, 2, JSON.stringify(info));
      assert.equal(rx.attemptsOf(bad.id).length, 2, 'exactly max_deliveries attempts');
      assert.equal(rx.attemptsOf(next.id).length, 2);
      const one = letters.find((x) => x.event_id === bad.id);
      assert.equal(one.source, source);
      assert.equal(one.status, 'open');
      assert.equal(one.stream, `${t}.events`);
      assert.equal(one.event_position, bad.position);
      assert.equal(one.delivery_count, 2);
      assert.ok(one.errors.length >= 1 && /500/.test(JSON.stringify(one.errors)), `errors say 500: ${JSON.stringify(one.errors)}`);
      assert.ok((await allDeadLetters(c, { source: 'webhook' })).some((x) => x.id === one.id), 'the kind alone lists it');
      assert.equal((await allDeadLetters(c, { source: `webhook:${w.name}x` })).length, 0);

      healthy = true;
      const rep = h.assertStatus(await c.post(`/v1/dead-letters/${one.id}/reprocess`, {}), 200);
      assert.ok(['reprocessing', 'resolved'].includes(rep.status), JSON.stringify(rep));
      await h.waitFor(() => rx.attemptsOf(bad.id).some((r) => r.status === 204), { timeout: WAIT_MS, what: 'the reprocessed delivery' });
      const resolved = await h.waitFor(async () => {
        const x = h.assertStatus(await c.get(`/v1/dead-letters/${one.id}`), 200);
        return x.status === 'resolved' && x;
      }, { timeout: WAIT_MS, what: 'the letter resolved' });
      assert.equal(resolved.history[resolved.history.length - 1].status, 'resolved');
      const redelivered = rx.attemptsOf(bad.id).filter((r) => r.status === 204);
      assert.equal(redelivered.length, 1, 'delivered once by the reprocess');
      assertSignedDelivery(redelivered[0], w.secret, 'the reprocessed delivery');
      // The same stored envelope (live deliveries carry the text written at commit, retries
      // PostgreSQL's: the same JSON, spaced differently).
      assert.deepEqual(JSON.parse(redelivered[0].raw), JSON.parse(rx.attemptsOf(bad.id)[0].raw), 'the same stored envelope');
      // Reprocessing a resolved letter again delivers nothing more.
      h.assertStatus(await c.post(`/v1/dead-letters/${one.id}/reprocess`, {}), 200);
      await h.sleep(500);
      assert.equal(rx.attemptsOf(bad.id).filter((r) => r.status === 204).length, 1);
      assert.equal(rx.attemptsOf(next.id).length, 2, 'the other letter was not touched');
      assert.equal(h.assertStatus(await c.get(`/v1/dead-letters/${letters.find((x) => x.event_id === next.id).id}`), 200).status, 'open');
    });
  });

  test('a 302 redirect is not followed: it is a failed attempt and the Location target receives nothing', async () => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      const target = await kit.receiver(() => 204);
      const rx = await kit.receiver(() => ({ status: 302, headers: { Location: `${target.url}/elsewhere` } }));
      const w = await kit.webhook({ name: hookName('redirect'), url: `${rx.url}/moved`, filter: { types: [`${t}.*`] }, max_deliveries: 2, retry: { strategy: 'fixed', base_delay_ms: 100, max_delay_ms: 100, jitter: false } });
      const [a] = await publish(c, [{ type: `${t}.x`, stream: `${t}.events`, data: {} }]);
      await h.waitFor(async () => (await allDeadLetters(c, { source: `webhook:${w.name}` })).length === 1, { timeout: WAIT_MS, what: 'the dead letter' });
      const info = await h.waitFor(async () => {
        const x = await webhookInfo(c, w.name);
        return x.failed >= 2 && x.position >= a.position && x;
      }, { timeout: WAIT_MS, what: 'both failures counted' });
      assert.equal(rx.attemptsOf(a.id).length, 2, 'two attempts, both failed');
      assert.equal(target.requests.length, 0, 'the redirect target received nothing');
      assert.match(String(info.last_failure && info.last_failure.error), /302|redirect/i, JSON.stringify(info));
      assert.equal(info.delivered, 0);
    });
  });
});

// ---------------------------------------------------------------- pause, ordering

describe('webhooks: pause/resume, 410 Gone, ordering by key', () => {
  let s;
  let c;
  before(async () => { s = await startWebhookSluice('wh-pause'); c = s.client(); });
  after(async () => { await stopSluice(s); });

  test('paused: nothing is delivered; resumed: the events held back arrive, in order', async () => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      const rx = await kit.receiver(() => 204);
      const fence = await kit.receiver(() => 204);
      const w = await kit.webhook({ name: hookName('paused'), url: `${rx.url}/p`, filter: { types: [`${t}.*`] }, ordering: 'key' });
      const f = await kit.webhook({ name: hookName('fence'), url: `${fence.url}/f`, filter: { types: [`${t}.*`] } });
      // Both deliver before the pause: the pause must stop a webhook that is running.
      const [warm] = await publish(c, [{ type: `${t}.warm`, stream: `${t}.events`, key: 'one', data: {} }]);
      await waitReceived(rx, [warm.id], { what: 'the first delivery' });
      await waitReceived(fence, [warm.id], { what: 'the first delivery' });
      rx.requests.length = 0;
      const p = h.assertStatus(await c.post(hookPath(w.name, '/pause')), 200);
      assert.equal(p.status, 'paused');
      const start = p.position;
      const acks = await publish(c, Array.from({ length: 10 }, (_, i) => ({ type: `${t}.x`, stream: `${t}.events`, key: 'one', data: { i } })));
      await waitReceived(fence, acks.map((a) => a.id), { what: 'the active webhook' });
      await waitCheckpoint(c, f.name, acks[9].position);
      await h.sleep(500); // a paused webhook's delivery would show by now
      // Checked at the end (after resume has been tried too): nothing delivered while paused.
      const whilePaused = rx.requests.map((r) => r.json && r.json.position);
      const info = await webhookInfo(c, w.name);
      assert.equal(info.status, 'paused');
      await waitMetric(c, 'sluice_webhook_paused', { tenant: 'default', webhook: w.name }, 1);

      const r = h.assertStatus(await c.post(hookPath(w.name, '/resume')), 200);
      assert.equal(r.status, 'active');
      assert.equal(r.paused_reason, null);
      await waitReceived(rx, acks.map((a) => a.id), { what: 'after resume' });
      await waitCheckpoint(c, w.name, acks[9].position);
      assert.deepEqual(rx.requests.map((x) => x.id), acks.map((a) => a.id), 'each once, in position order');
      await waitMetric(c, 'sluice_webhook_paused', { tenant: 'default', webhook: w.name }, 0);
      // pause and resume are idempotent
      assert.equal(h.assertStatus(await c.post(hookPath(w.name, '/resume')), 200).status, 'active');
      assert.equal(h.assertStatus(await c.post(hookPath(w.name, '/pause')), 200).status, 'paused');
      assert.equal(h.assertStatus(await c.post(hookPath(w.name, '/pause')), 200).status, 'paused');

      assert.deepEqual(whilePaused, [], `events published after POST /pause answered 200 were delivered while paused (positions ${acks[0].position}…${acks[9].position})`);
      // The checkpoint is saved a moment after a delivery (at most 250 ms later), so the one
      // delivered before the pause may land after it; nothing published after the pause does.
      assert.ok(info.position >= start && info.position <= warm.position,
        `a paused webhook's checkpoint stays at or before the last event delivered before the pause (${start}…${warm.position}), was ${info.position}`);
      assert.equal(info.lag, acks[9].position - info.position);
    });
  });

  test('410 Gone pauses the webhook (paused_reason names 410); after resume the event is delivered', async () => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      let gone = true;
      const rx = await kit.receiver(() => (gone ? { status: 410, body: 'gone' } : 204));
      const w = await kit.webhook({ name: hookName('gone'), url: `${rx.url}/g`, filter: { types: [`${t}.*`] }, max_deliveries: 5, retry: { strategy: 'fixed', base_delay_ms: 100, max_delay_ms: 100, jitter: false } });
      const [a] = await publish(c, [{ type: `${t}.x`, stream: `${t}.events`, data: {} }]);
      const info = await h.waitFor(async () => {
        const x = await webhookInfo(c, w.name);
        return x.status === 'paused' && x;
      }, { timeout: WAIT_MS, what: 'the webhook paused by the 410' });
      assert.match(String(info.paused_reason), /410/, JSON.stringify(info));
      const n = rx.attemptsOf(a.id).length;
      assert.equal(n, 1, 'one attempt, answered 410, then paused');
      assert.equal(info.dead_letters, 0);
      await h.sleep(500);
      assert.equal(rx.requests.length, 1, 'nothing more while paused');
      await waitMetric(c, 'sluice_webhook_paused', { tenant: 'default', webhook: w.name }, 1);

      gone = false;
      h.assertStatus(await c.post(hookPath(w.name, '/resume')), 200);
      await h.waitFor(() => rx.attemptsOf(a.id).some((r) => r.status === 204), { timeout: WAIT_MS, what: 'the delivery after resume' });
      const after2 = await waitCheckpoint(c, w.name, a.position);
      assert.equal(after2.status, 'active');
      assert.equal(after2.paused_reason, null);
    });
  });

  test('ordering "key": a failing key does not block the others; each key\'s events arrive in position order, one at a time', { timeout: 180000 }, async () => {
    await withKit(c, async (kit) => {
      const t = typeBase();
      const stream = `${t}.events`;
      // "bad" always fails; the good keys answer after 0–8 ms, long enough for an overlap to show.
      const rx = await kit.receiver((rec) => (rec.json && rec.json.key === 'bad' ? 500 : { status: 204, delayMs: crypto.randomInt(0, 9) }));
      const w = await kit.webhook({ name: hookName('keyed'), url: `${rx.url}/k`, filter: { streams: [stream] }, ordering: 'key', max_deliveries: 100, retry: { strategy: 'fixed', base_delay_ms: 200, max_delay_ms: 200, jitter: false } });
      const good = ['g0', 'g1', 'g2', 'g3'];
      const byKey = new Map([...good, 'bad'].map((k) => [k, []]));
      for (let i = 0; i < 25; i++) {
        const envs = ['bad', ...good].map((k) => ({ type: `${t}.x`, stream, key: k, data: { i } }));
        const acks = await publish(c, envs);
        acks.forEach((a, j) => byKey.get(envs[j].key).push(a));
      }
      const goodIds = good.flatMap((k) => byKey.get(k).map((a) => a.id));
      await waitReceived(rx, goodIds, { timeout: 60000, what: 'every good key\'s events' });
      const firstBad = byKey.get('bad')[0];
      await h.waitFor(() => rx.attemptsOf(firstBad.id).length >= 3, { timeout: WAIT_MS, what: 'the bad key retried' });
      for (const k of good) {
        const got = rx.requests.filter((r) => r.json && r.json.key === k).map((r) => r.json.position);
        assert.deepEqual(got, byKey.get(k).map((a) => a.position), `key ${k}: each event once, in position order`);
      }
      assert.deepEqual(rx.overlaps, [], 'no two deliveries of one key in flight at once');
      const badSeen = new Set(rx.requests.filter((r) => r.json && r.json.key === 'bad').map((r) => r.id));
      assert.deepEqual([...badSeen], [firstBad.id], 'the failing key\'s later events wait behind its first');
      const info = await webhookInfo(c, w.name);
      assert.ok(info.retrying >= 1, JSON.stringify(info));
    });
  });
});

// ---------------------------------------------------------------- tenants

describe('webhooks: tenant isolation', () => {
  let s;
  let c;
  before(async () => { s = await startWebhookSluice('wh-tenants'); c = s.client(); });
  after(async () => { await stopSluice(s); });

  test('another tenant\'s admin key sees 404 for the webhook, may use the same name, and its events never reach the first tenant\'s webhook', async () => {
    const kb = await h.createKey(s, `wht${h.rand(3)}`, ['admin', 'publish', 'read']);
    const b = c.withToken(kb.token);
    await withKit(c, async (kit) => {
      const t = typeBase();
      const rxA = await kit.receiver(() => 204);
      const rxB = await kit.receiver(() => 204);
      const name = hookName('shared');
      const filter = { streams: [`${t}.events`], types: [`${t}.*`] };
      const wA = await kit.webhook({ name, url: `${rxA.url}/a`, filter });
      for (const res of [
        await b.get(hookPath(name)),
        await b.del(hookPath(name)),
        await b.post(hookPath(name, '/pause')),
        await b.post(hookPath(name, '/resume')),
        await b.post(hookPath(name, '/rotate-secret')),
      ]) h.assertProblem(res, 404, 'not_found');
      assert.ok(!h.assertStatus(await b.get('/v1/webhooks'), 200).webhooks.some((x) => x.name === name), 'B\'s list does not show A\'s webhook');
      const a0 = await webhookInfo(c, name);
      assert.equal(a0.status, 'active', 'B changed nothing');
      // B's own webhook of the same name and filter.
      const wB = await kit.webhook({ name, url: `${rxB.url}/b`, filter }, b);
      assert.notEqual(wB.secret, wA.secret);
      assert.deepEqual(h.assertStatus(await c.get('/v1/webhooks'), 200).webhooks.filter((x) => x.name === name).map((x) => x.url), [`${rxA.url}/a`]);

      const envs = (n) => Array.from({ length: n }, (_, i) => ({ type: `${t}.x`, stream: `${t}.events`, data: { i } }));
      const acksB = await publish(b, envs(5));
      const acksA = await publish(c, envs(3));
      await waitReceived(rxB, acksB.map((x) => x.id), { what: 'B\'s events at B\'s webhook' });
      await waitReceived(rxA, acksA.map((x) => x.id), { what: 'A\'s events at A\'s webhook' });
      const head = Math.max(...acksA.map((x) => x.position), ...acksB.map((x) => x.position));
      await waitCheckpoint(c, name, head);
      await h.waitFor(async () => h.assertStatus(await b.get(hookPath(name)), 200).position >= head, { timeout: WAIT_MS, what: 'B\'s checkpoint' });
      assert.deepEqual(rxA.requests.map((r) => r.id).sort(), acksA.map((x) => x.id).sort(), 'A\'s webhook got A\'s events only');
      assert.deepEqual(rxB.requests.map((r) => r.id).sort(), acksB.map((x) => x.id).sort(), 'B\'s webhook got B\'s events only');
      for (const r of rxA.requests) { assert.equal(r.json.tenant_id, 'default'); assertSignedDelivery(r, wA.secret, 'A'); }
      for (const r of rxB.requests) { assert.equal(r.json.tenant_id, kb.tenant_id); assertSignedDelivery(r, wB.secret, 'B'); }
      assert.equal((await allDeadLetters(b, { source: `webhook:${name}` })).length, 0);
    });
  });
});

// ---------------------------------------------------------------- destinations

describe('webhooks: refused destinations', () => {
  test('without SLUICE_WEBHOOK_ALLOW_PRIVATE: loopback (by address and by a name resolving to 127.0.0.1), private ranges and link-local/metadata → 422 forbidden_destination', async () => {
    const s = await startWebhookSluice('wh-strict', { allowPrivate: false });
    try {
      const c = s.client();
      await withKit(c, async (kit) => {
        const rx = await kit.receiver(() => 204);
        const urls = [
          `${rx.url}/hook`,
          `http://localhost:${rx.port}/hook`,
          'http://169.254.169.254/latest/meta-data',
          'http://169.254.0.1/x',
          'http://10.1.2.3/x',
          'http://172.16.5.4/x',
          'http://192.168.1.1/x',
          'http://127.0.0.2/x',
          'http://0.0.0.0/x',
          `http://[::1]:${rx.port}/x`,
          'http://[fe80::1]/x',
          'https://[::ffff:127.0.0.1]/x',
        ];
        const wrong = [];
        for (const url of urls) {
          const res = await c.post('/v1/webhooks', { name: hookName('refused'), url });
          if (res.status !== 422 || !res.body || res.body.code !== 'forbidden_destination') wrong.push(`${url} → ${h.describeRes(res)}`);
          else h.assertProblem(res, 422, 'forbidden_destination');
        }
        assert.deepEqual(wrong, [], 'each is refused');
        assert.equal(h.assertStatus(await c.get('/v1/webhooks'), 200).webhooks.length, 0, 'nothing was registered');
        const [a] = await publish(c, [{ type: 'whstrict.x', stream: 'whstrict.events', data: {} }]);
        assert.ok(a.position > 0);
        await h.sleep(300);
        assert.equal(rx.requests.length, 0, 'the loopback receiver got nothing');
      });
      await s.stop();
    } finally {
      await s.cleanup();
      await deletePrefix(s.redisPrefix);
    }
  });

  test('with SLUICE_WEBHOOK_ALLOW_PRIVATE=1: loopback is allowed, link-local/metadata is still refused', async () => {
    const s = await startWebhookSluice('wh-private', { allowPrivate: true });
    try {
      const c = s.client();
      await withKit(c, async (kit) => {
        const rx = await kit.receiver(() => 204);
        for (const url of ['http://169.254.169.254/latest/meta-data', 'http://169.254.0.1/x', 'http://[fe80::1]/x']) {
          h.assertProblem(await c.post('/v1/webhooks', { name: hookName('meta'), url }), 422, 'forbidden_destination');
        }
        const w = await kit.webhook({ name: hookName('local'), url: `http://localhost:${rx.port}/ok`, filter: { types: ['whlocal.*'] } });
        const [a] = await publish(c, [{ type: 'whlocal.x', stream: 'whlocal.events', data: {} }]);
        await waitReceived(rx, [a.id]);
        assertSignedDelivery(rx.requests[0], w.secret, 'to localhost');
      });
      await s.stop();
    } finally {
      await s.cleanup();
      await deletePrefix(s.redisPrefix);
    }
  });
});

// ---------------------------------------------------------------- failover

describe('webhooks: leader failover', () => {
  test('kill -9 of the instance delivering webhooks, mid-deliveries: the survivor takes over; every event is delivered at least once, none skipped', { timeout: 300000 }, async (t) => {
    const db = await h.freshDatabase();
    const adminToken = 'adm_' + h.rand(16);
    const prefix = `itwh${h.rand(4)}:`;
    const env = { SLUICE_REDIS_PREFIX: prefix, SLUICE_WEBHOOK_ALLOW_PRIVATE: '1' };
    const handles = [];
    let rx;
    try {
      const started = await Promise.allSettled([
        h.startSluice({ name: 'wh-fo-a', dbUrl: db.url, adminToken, env }),
        h.startSluice({ name: 'wh-fo-b', dbUrl: db.url, adminToken, env }),
      ]);
      for (const r of started) if (r.status === 'fulfilled') handles.push(r.value);
      for (const r of started) if (r.status === 'rejected') throw r.reason;
      const delivers = (x) => x.logs.some((l) => /this instance delivers webhooks/.test(l));
      const leader = (await h.waitFor(() => {
        const l = handles.filter(delivers);
        return l.length === 1 && l;
      }, { timeout: WAIT_MS, what: 'one instance delivering webhooks' }))[0];
      const survivor = handles.find((x) => x !== leader);
      const c = survivor.client();

      rx = await Receiver.start(() => ({ status: 204, delayMs: 5 }));
      const w = await createWebhook(c, { name: 'failover', url: `${rx.url}/fo`, filter: { types: ['whfo.*'] }, max_deliveries: 100, retry: { strategy: 'fixed', base_delay_ms: 100, max_delay_ms: 100, jitter: false } });
      // The deliverer has the webhook before the burst: one event through, then the 300.
      const [warm] = await publish(c, [{ type: 'whfo.warm', stream: 'whfo.events', data: {} }]);
      await waitReceived(rx, [warm.id], { what: 'the first delivery' });
      const warmRequests = rx.requests.length;

      const N = 300;
      const acks = [];
      let killedAt = null;
      let publishedAtKill = null;
      const publisher = (async () => {
        for (let i = 0; i < N; i += 5) {
          acks.push(...await publish(c, Array.from({ length: 5 }, (_, j) => ({ type: 'whfo.x', stream: 'whfo.events', key: `k${(i + j) % 7}`, data: { i: i + j } }))));
          await h.sleep(10);
        }
      })();
      await h.waitFor(() => rx.ids().size - 1 >= 60 || acks.length === N, { timeout: 60000, interval: 5, what: 'deliveries under way' });
      killedAt = rx.ids().size - 1;
      publishedAtKill = acks.length;
      await leader.kill9();
      await publisher;
      await h.waitFor(() => delivers(survivor), { timeout: WAIT_MS, what: 'the survivor to take over' });
      await waitReceived(rx, acks.map((a) => a.id), { timeout: 120000, what: 'every event after the failover' });
      await waitCheckpoint(c, w.name, acks[acks.length - 1].position, 60000);

      t.diagnostic(`killed with ${killedAt} of ${N} delivered, ${publishedAtKill} published; ${rx.requests.length - warmRequests} requests in all (${rx.requests.length - warmRequests - N} repeated)`);
      assert.ok(killedAt > 0 && killedAt < N, `the kill came mid-deliveries (${killedAt} of ${N} delivered)`);
      const published = new Set(acks.map((a) => a.id));
      assert.equal(published.size, N);
      published.add(warm.id);
      const missing = [...published].filter((id) => !rx.ids().has(id));
      assert.deepEqual(missing, [], 'no event skipped');
      for (const r of rx.requests) {
        assert.ok(published.has(r.id), `only published events: ${r.id}`);
        assertSignedDelivery(r, w.secret, `delivery of ${r.id}`);
      }
      await survivor.stop();
    } finally {
      if (rx) await rx.close();
      for (const x of handles) await x.cleanup();
      db.drop();
      await deletePrefix(prefix);
    }
  });
});
