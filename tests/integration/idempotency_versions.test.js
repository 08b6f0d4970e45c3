'use strict';
// Issue 2: idempotent re-send, duplicate_id, per-(stream,key) versions, expected_version and
// concurrent writers.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

let s;
let c;
before(async () => { s = await h.startSluice({ name: 'idem' }); c = s.client(); });
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

describe('idempotency', () => {
  test('re-sending the same id and content → 200, Idempotent-Replay: true, the original answer', async () => {
    const env = { id: 'idem-' + h.rand(4), type: 'file.stored', data: { a: 1, b: [1, 2] }, key: 'f1', metadata: { m: 1 } };
    const first = await c.publish(env);
    h.assertStatus(first, 201);
    assert.notEqual(first.headers.get('idempotent-replay'), 'true');
    // something else in between so a replay cannot be mistaken for a new append
    h.assertStatus(await c.publish({ type: 'file.stored', data: {} }), 201);
    for (let i = 0; i < 2; i++) {
      const again = await c.publish(env);
      h.assertStatus(again, 200);
      assert.equal(again.headers.get('idempotent-replay'), 'true');
      assert.deepEqual(again.body, first.body, 'the original answer (same position, version, time)');
    }
    // key order inside data must not matter: same content
    const reordered = { metadata: { m: 1 }, key: 'f1', data: { b: [1, 2], a: 1 }, type: 'file.stored', id: env.id };
    const r3 = await c.publish(reordered);
    h.assertStatus(r3, 200);
    assert.equal(r3.body.position, first.body.position);
    // only one stored
    const q = h.assertStatus(await c.get('/v1/events?stream=file.events&key=f1'), 200);
    assert.equal(q.events.filter((e) => e.id === env.id).length, 1);
    assert.equal(q.events.length, 1, 'the key got one version');
  });

  test('same id with different content → 409 duplicate_id, original unchanged', async () => {
    const env = { id: 'dup-' + h.rand(4), type: 'file.stored', data: { a: 1 } };
    const first = await c.publish(env);
    h.assertStatus(first, 201);
    const variants = [
      { ...env, data: { a: 2 } },
      { ...env, type: 'file.deleted' },
      { ...env, key: 'other' },
      { ...env, user_id: 'someone' },
      { ...env, metadata: { x: 1 } },
    ];
    for (const v of variants) h.assertProblem(await c.publish(v), 409, 'duplicate_id');
    const ev = h.assertStatus(await c.get('/v1/events/' + env.id), 200);
    assert.deepEqual(ev.data, { a: 1 });
    assert.equal(ev.type, 'file.stored');
    assert.equal(ev.position, first.body.position);
  });

  test('a duplicate id inside an atomic batch fails the whole batch', async () => {
    const id = 'dupb-' + h.rand(4);
    h.assertStatus(await c.publish({ id, type: 'file.stored', data: { a: 1 } }), 201);
    const other = 'dupb-other-' + h.rand(4);
    const res = await c.publish([{ id: other, type: 'file.stored', data: {} }, { id, type: 'file.stored', data: { a: 2 } }]);
    h.assertProblem(res, 409, 'duplicate_id');
    h.assertProblem(await c.get('/v1/events/' + other), 404, 'not_found');
  });

  test('re-sending a whole stored batch → 200 replay with the original positions', async () => {
    const tag = h.rand(4);
    const batch = [0, 1, 2].map((i) => ({ id: `rb-${tag}-${i}`, type: 'file.stored', data: { i } }));
    const first = await c.publish(batch);
    h.assertStatus(first, 201);
    const again = await c.publish(batch);
    h.assertStatus(again, 200);
    assert.equal(again.headers.get('idempotent-replay'), 'true');
    assert.deepEqual(again.body.events.map((e) => e.position), first.body.events.map((e) => e.position));
  });

  test('10 concurrent sends of one new id → one 201, the rest 200 replays, one stored event', async () => {
    const env = { id: 'race-' + h.rand(4), type: 'file.stored', data: { r: 1 } };
    const all = await Promise.all(Array.from({ length: 10 }, () => c.publish(env)));
    const statuses = all.map((r) => r.status).sort();
    assert.equal(all.filter((r) => r.status === 201).length, 1, `statuses ${statuses}: ${all.map(h.describeRes).join('\n')}`);
    assert.equal(all.filter((r) => r.status === 200).length, 9, `statuses ${statuses}`);
    const positions = new Set(all.map((r) => r.body.position));
    assert.equal(positions.size, 1, 'same position everywhere');
    const q = h.assertStatus(await c.get('/v1/events?correlation_id=' + env.id), 200);
    assert.equal(q.events.length, 1);
  });

  test('identical content without an id is two events with two new ids', async () => {
    const a = await c.publish({ type: 'file.stored', data: {} });
    const b = await c.publish({ type: 'file.stored', data: {} });
    h.assertStatus(a, 201);
    h.assertStatus(b, 201);
    assert.notEqual(a.body.id, b.body.id, 'identical content without id is two events');
  });
});

describe('key and version', () => {
  test('events of one (stream, key) get versions 1, 2, 3; other keys and streams count separately', async () => {
    const k = 'acct-' + h.rand(4);
    const vs = [];
    for (let i = 0; i < 3; i++) {
      const r = await c.publish({ type: 'account.credited', data: { i }, key: k });
      h.assertStatus(r, 201);
      assert.equal(r.body.key, k);
      assert.equal(r.body.stream, 'account.events');
      vs.push(r.body.version);
    }
    assert.deepEqual(vs, [1, 2, 3]);
    const other = await c.publish({ type: 'account.credited', data: {}, key: k + '-b' });
    assert.equal(h.assertStatus(other, 201).version, 1);
    const otherStream = await c.publish({ type: 'account.credited', data: {}, key: k, stream: 'ledger.events' });
    assert.equal(h.assertStatus(otherStream, 201).version, 1, 'version is per (stream, key)');
    const next = await c.publish({ type: 'account.debited', data: {}, key: k });
    assert.equal(h.assertStatus(next, 201).version, 4, 'type does not matter, (stream, key) does');

    const q = h.assertStatus(await c.get(`/v1/events?stream=account.events&key=${k}`), 200);
    assert.deepEqual(q.events.map((e) => e.version), [1, 2, 3, 4]);
  });

  test('expected_version 0 on a new key → 201 version 1; again → 409 version_conflict current_version 1', async () => {
    const k = 'new-' + h.rand(4);
    const r1 = await c.publish({ type: 'cart.created', data: {}, key: k, expected_version: 0 });
    assert.equal(h.assertStatus(r1, 201).version, 1);
    const r2 = await c.publish({ type: 'cart.created', data: {}, key: k, expected_version: 0 });
    const p = h.assertProblem(r2, 409, 'version_conflict');
    assert.equal(p.current_version, 1);
  });

  test('matching expected_version appends; mismatches → 409 with current_version', async () => {
    const k = 'ev-' + h.rand(4);
    for (let v = 0; v < 3; v++) {
      const r = await c.publish({ type: 'cart.item_added', data: { v }, key: k, expected_version: v });
      assert.equal(h.assertStatus(r, 201).version, v + 1);
    }
    for (const wrong of [0, 1, 2, 4, 99]) {
      const r = await c.publish({ type: 'cart.item_added', data: {}, key: k, expected_version: wrong });
      assert.equal(h.assertProblem(r, 409, 'version_conflict').current_version, 3, `expected_version ${wrong}`);
    }
    const fresh = await c.publish({ type: 'cart.item_added', data: {}, key: 'never-' + h.rand(4), expected_version: 3 });
    assert.equal(h.assertProblem(fresh, 409, 'version_conflict').current_version, 0, 'current_version 0 for a key with no events');
    const q = h.assertStatus(await c.get(`/v1/events?stream=cart.events&key=${k}`), 200);
    assert.equal(q.events.length, 3, 'conflicts stored nothing');
  });

  test('a batch on one key: versions in order; a conflict fails the whole atomic batch', async () => {
    const k = 'bk-' + h.rand(4);
    const r = await c.publish([
      { type: 'doc.edited', data: { n: 1 }, key: k, expected_version: 0 },
      { type: 'doc.edited', data: { n: 2 }, key: k },
      { type: 'doc.edited', data: { n: 3 }, key: k, expected_version: 2 },
    ]);
    h.assertStatus(r, 201);
    assert.deepEqual(r.body.events.map((e) => e.version), [1, 2, 3]);

    const tag = h.rand(4);
    const bad = await c.publish([
      { id: `ok-${tag}`, type: 'doc.edited', data: {}, key: 'unrelated-' + tag },
      { type: 'doc.edited', data: {}, key: k, expected_version: 1 },
    ]);
    const p = h.assertProblem(bad, 409, 'version_conflict');
    // the conflicting event's current_version: at the top, or in its entry of errors[]
    const entry = (p.errors || []).find((e) => e.index === 1);
    assert.equal(p.current_version ?? entry?.current_version, 3, bad.text);
    if (entry) assert.equal(entry.current_version, 3);
    h.assertProblem(await c.get(`/v1/events/ok-${tag}`), 404, 'not_found');
  });

  test('20 concurrent writers on one key with the same expected_version → exactly one 201', async () => {
    const k = 'hot-' + h.rand(4);
    for (const expected of [0, 1, 2]) {
      const all = await Promise.all(Array.from({ length: 20 }, (_, i) =>
        c.publish({ type: 'seat.reserved', data: { writer: i }, key: k, expected_version: expected })));
      const wins = all.filter((r) => r.status === 201);
      const losses = all.filter((r) => r.status === 409);
      assert.equal(wins.length, 1, `exactly one winner at expected_version ${expected}: ${all.map((r) => r.status)}`);
      assert.equal(losses.length, 19, `the rest conflict: ${all.filter((r) => r.status !== 201 && r.status !== 409).map(h.describeRes)}`);
      assert.equal(wins[0].body.version, expected + 1);
      for (const l of losses) {
        assert.equal(l.body.code, 'version_conflict');
        assert.equal(l.body.current_version, expected + 1);
      }
    }
    const q = h.assertStatus(await c.get(`/v1/events?stream=seat.events&key=${k}`), 200);
    assert.deepEqual(q.events.map((e) => e.version), [1, 2, 3]);
  });

  test('concurrent appends without expected_version all succeed with versions 1..N', async () => {
    const k = 'free-' + h.rand(4);
    const all = await Promise.all(Array.from({ length: 20 }, (_, i) => c.publish({ type: 'tick.happened', data: { i }, key: k })));
    for (const r of all) h.assertStatus(r, 201);
    assert.deepEqual(all.map((r) => r.body.version).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
    // version order equals position order
    const byPos = [...all].sort((a, b) => a.body.position - b.body.position);
    assert.deepEqual(byPos.map((r) => r.body.version), Array.from({ length: 20 }, (_, i) => i + 1));
  });

  test("one producer's bad or conflicting event never fails another producer's request", async () => {
    const k = 'mix-' + h.rand(4);
    h.assertStatus(await c.publish({ type: 'mix.seed', data: {}, key: k }), 201);
    const jobs = [];
    for (let i = 0; i < 30; i++) {
      if (i % 3 === 0) jobs.push(c.publish({ type: 'mix.bad', data: {}, key: k, expected_version: 0 }).then((r) => ['conflict', r]));
      else if (i % 3 === 1) jobs.push(c.publish({ type: 'Mix.Bad', data: {} }).then((r) => ['invalid', r]));
      else jobs.push(c.publish({ type: 'mix.good', data: { i } }).then((r) => ['good', r]));
    }
    for (const [kind, r] of await Promise.all(jobs)) {
      if (kind === 'good') h.assertStatus(r, 201);
      if (kind === 'conflict') h.assertProblem(r, 409, 'version_conflict');
      if (kind === 'invalid') h.assertProblem(r, 400, 'invalid_envelope');
    }
  });

  test('positions are gap-free: every stored event, in position order, is previous + 1', async () => {
    const { events } = await h.readAllPages(c, {}, { limit: 1000 });
    assert.ok(events.length > 50);
    for (let i = 1; i < events.length; i++) {
      assert.equal(events[i].position, events[i - 1].position + 1, `gap after position ${events[i - 1].position}`);
    }
    const info = h.assertStatus(await c.get('/v1/info'), 200);
    assert.equal(info.head_position, events[events.length - 1].position);
  });
});
