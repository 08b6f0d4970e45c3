'use strict';
// Issue 3: the CloudEvents HTTP binding on POST /v1/events — structured, batch and binary
// modes, produced by the `cloudevents` npm SDK as a real client and sent with fetch. Checks the
// mapping onto the stored envelope, idempotent re-sends, and schema validation of ce.data.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
let sdk;
try {
  sdk = require('cloudevents'); // tests/package.json; install with `npm ci --prefix tests`
} catch (e) {
  throw new Error(`the cloudevents npm SDK is missing: run \`npm ci --prefix tests\` (${e.message})`);
}
const { CloudEvent, HTTP } = sdk;
const h = require('./lib/harness');

let s;
let c;
before(async () => { s = await h.startSluice({ name: 'cloudevents', env: { SLUICE_ALLOW_UNKNOWN_TYPES: '0' } }); c = s.client(); });
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

// A seed-catalog type and its shipped example.
const TYPE = 'file.uploaded';
const STREAM = 'contextual.events';
const EXAMPLE = JSON.parse(fs.readFileSync(path.join(h.REPO, 'schemas', 'examples', TYPE + '.json'), 'utf8'));
const CE_TIME = '2024-03-01T09:30:00.125Z';

function fileUploaded(attrs = {}) {
  return new CloudEvent({
    type: TYPE,
    source: '/tests/cloudevents',
    id: 'ce-' + h.rand(6),
    subject: 'file-' + h.rand(4),
    time: CE_TIME,
    datacontenttype: 'application/json',
    data: { ...EXAMPLE },
    ...attrs,
  });
}

// Sends an SDK message ({headers, body}) as the SDK produced it.
function send(msg, client = c) {
  return client.request('POST', '/v1/events', { headers: msg.headers, body: msg.body });
}
function batchMessage(events) {
  return { headers: { 'content-type': 'application/cloudevents-batch+json; charset=utf-8' }, body: JSON.stringify(events) };
}

async function stored(id) {
  return h.assertStatus(await c.get('/v1/events/' + encodeURIComponent(id)), 200);
}

// The CloudEvent's mapping onto the stored envelope.
function assertMapped(ev, ce, { binary = false } = {}) {
  const txt = JSON.stringify(ev);
  assert.equal(ev.id, ce.id, txt);
  assert.equal(ev.type, ce.type, txt);
  assert.equal(ev.source, ce.source, `ce.source → source: ${txt}`);
  assert.equal(ev.key, ce.subject === undefined ? null : ce.subject, `ce.subject → key: ${txt}`);
  assert.equal(ev.stream, STREAM, `the type's registered stream: ${txt}`);
  assert.deepEqual(ev.data, ce.data, txt);
  assert.equal(ev.correlation_id, ce.correlationid === undefined ? ce.id : ce.correlationid, `correlationid: ${txt}`);
  assert.equal(ev.causation_id === undefined ? null : ev.causation_id, ce.causationid === undefined ? null : ce.causationid, `causationid: ${txt}`);
  assert.equal(ev.user_id === undefined ? null : ev.user_id, ce.userid === undefined ? null : ce.userid, `userid: ${txt}`);
  assert.equal(ev.schema_version, 1, txt);
  assert.match(ev.time, h.TIME_RE);
  assert.ok(Date.parse(ev.time) > Date.parse(CE_TIME) + 86400000, `time is the ingestion time, not ce.time: ${txt}`);
  if (ce.time === undefined) assert.equal(ev.occurred_at, null, `no ce.time, no occurred_at: ${txt}`);
  else assert.equal(Date.parse(ev.occurred_at), Date.parse(ce.time), `ce.time → occurred_at (issue 15): ${txt}`);

  assert.ok(ev.metadata && typeof ev.metadata.cloudevents === 'object', `metadata.cloudevents: ${txt}`);
  const m = ev.metadata.cloudevents;
  assert.equal(m.specversion, '1.0', txt);
  assert.ok(!('time' in m), `ce.time is mapped, not kept twice: ${txt}`);
  if (ce.datacontenttype) assert.match(m.datacontenttype, binary ? /^application\/json/ : /^application\/json$/, txt);
  for (const [k, v] of Object.entries(ce)) {
    if (['id', 'type', 'source', 'subject', 'time', 'specversion', 'datacontenttype', 'data', 'data_base64',
      'correlationid', 'causationid', 'userid'].includes(k) || v === undefined) continue;
    assert.equal(m[k], v, `extension ${k} kept in metadata.cloudevents: ${txt}`);
  }
  assert.ok(!('data' in m) && !('data_base64' in m), `data is not duplicated into metadata: ${txt}`);
}

describe('structured mode (application/cloudevents+json)', () => {
  test('201; the stored event carries the mapped fields and the rest under metadata.cloudevents', async () => {
    const ce = fileUploaded({ correlationid: 'corr-' + h.rand(3), causationid: 'cause-1', userid: 'user-42', tenantregion: 'eu' });
    const msg = HTTP.structured(ce);
    assert.match(msg.headers['content-type'], /^application\/cloudevents\+json/);
    const res = await send(msg);
    h.assertStatus(res, 201);
    assert.equal(res.body.id, ce.id);
    assert.equal(res.body.stream, STREAM);
    assert.equal(res.body.key, ce.subject);
    assert.equal(res.body.version, 1, 'first event of this subject');
    assertMapped(await stored(ce.id), ce);
  });

  test('the SDK\'s default id (a UUID) and no extensions: correlation_id defaults to the id', async () => {
    const ce = new CloudEvent({ type: TYPE, source: 'urn:tests', data: { ...EXAMPLE } });
    const res = await send(HTTP.structured(ce));
    h.assertStatus(res, 201);
    assert.equal(res.body.id, ce.id);
    assert.equal(res.body.key, null, 'no subject → no key');
    const ev = await stored(ce.id);
    assert.equal(ev.correlation_id, ce.id);
    assert.equal(ev.source, 'urn:tests');
    assert.equal(ev.metadata.cloudevents.specversion, '1.0');
  });

  test('re-sending the same CloudEvent is an idempotent replay (200, Idempotent-Replay: true)', async () => {
    const ce = fileUploaded({ correlationid: 'corr-r' });
    const msg = HTTP.structured(ce);
    const first = await send(msg);
    h.assertStatus(first, 201);
    h.assertStatus(await send(HTTP.structured(fileUploaded())), 201); // something in between
    const again = await send(msg);
    h.assertStatus(again, 200);
    assert.equal(again.headers.get('idempotent-replay'), 'true');
    assert.deepEqual(again.body, first.body);
    const q = h.assertStatus(await c.get(`/v1/events?stream=${STREAM}&key=${encodeURIComponent(ce.subject)}`), 200);
    assert.equal(q.events.length, 1, 'stored once');
  });

  test('the same id with different data → 409 duplicate_id', async () => {
    const ce = fileUploaded();
    h.assertStatus(await send(HTTP.structured(ce)), 201);
    const changed = ce.cloneWith({ data: { ...EXAMPLE, filename: 'other.pdf' } });
    h.assertProblem(await send(HTTP.structured(changed)), 409, 'duplicate_id');
    assert.equal((await stored(ce.id)).data.filename, EXAMPLE.filename);
  });

  test('data that violates the schema → 422 schema_violation with /data paths; nothing stored', async () => {
    const data = { ...EXAMPLE, file_size: 'big', is_browser_viewable: 'yes' };
    const ce = fileUploaded({ data });
    const p = h.assertProblem(await send(HTTP.structured(ce)), 422, 'schema_violation');
    const got = p.errors.map((e) => `${e.index} ${e.path} ${e.keyword}`).sort();
    assert.deepEqual(got, ['0 /data/file_size type', '0 /data/is_browser_viewable type'], JSON.stringify(p));
    h.assertProblem(await c.get('/v1/events/' + ce.id), 404, 'not_found');

    const missing = { ...EXAMPLE };
    delete missing.file_id;
    const ce2 = fileUploaded({ data: missing });
    const p2 = h.assertProblem(await send(HTTP.structured(ce2)), 422, 'schema_violation');
    assert.ok(p2.errors.some((e) => e.keyword === 'required' &&
      (e.path === '/data/file_id' || (e.path === '/data' && e.message.includes('file_id')))), JSON.stringify(p2));
  });

  test('a type outside Sluice\'s dot notation → 400 invalid_envelope at /type', async () => {
    for (const type of ['com.example.FileUploaded', 'FileUploaded', 'com.example.file-uploaded']) {
      const ce = fileUploaded({ type });
      const p = h.assertProblem(await send(HTTP.structured(ce)), 400, 'invalid_envelope');
      assert.ok(p.errors.some((e) => e.path === '/type'), JSON.stringify(p));
      h.assertProblem(await c.get('/v1/events/' + ce.id), 404, 'not_found');
    }
  });

  test('a well-formed but unregistered type → 422 unknown_type', async () => {
    const ce = fileUploaded({ type: `x${h.rand(3)}.never.registered` });
    h.assertProblem(await send(HTTP.structured(ce)), 422, 'unknown_type');
    h.assertProblem(await c.get('/v1/events/' + ce.id), 404, 'not_found');
  });

  test('data that is not a JSON object → 400 invalid_envelope at /data', async () => {
    const ce = new CloudEvent({ type: TYPE, source: '/t', id: 'txt-' + h.rand(4), datacontenttype: 'text/plain', data: 'hello' });
    const p = h.assertProblem(await send(HTTP.structured(ce)), 400, 'invalid_envelope');
    assert.ok(p.errors.some((e) => e.path === '/data'), JSON.stringify(p));
  });

  test('without a token → 401; a read-only key → 403', async () => {
    const ce = fileUploaded();
    h.assertProblem(await send(HTTP.structured(ce), c.withToken(null)), 401, 'unauthenticated');
    const ro = s.client((await h.createKey(s, 'default', ['read'])).token);
    h.assertProblem(await send(HTTP.structured(ce), ro), 403, 'forbidden');
    h.assertProblem(await c.get('/v1/events/' + ce.id), 404, 'not_found');
  });
});

describe('binary mode (ce-* headers, JSON body)', () => {
  test('201; the stored event carries the mapped fields and the rest under metadata.cloudevents', async () => {
    const ce = fileUploaded({ correlationid: 'corr-b' + h.rand(3), causationid: 'cause-b', userid: 'user-b', traceparent: '00-abc-def-01' });
    const msg = HTTP.binary(ce);
    assert.equal(msg.headers['ce-id'], ce.id, 'the SDK sent ce-* headers');
    const res = await send(msg);
    h.assertStatus(res, 201);
    assert.equal(res.body.id, ce.id);
    assert.equal(res.body.stream, STREAM);
    assert.equal(res.body.key, ce.subject);
    assertMapped(await stored(ce.id), ce, { binary: true });
  });

  test('events with one subject get consecutive versions of that key', async () => {
    const subject = 'file-v-' + h.rand(4);
    const r1 = await send(HTTP.binary(fileUploaded({ subject })));
    const r2 = await send(HTTP.binary(fileUploaded({ subject })));
    h.assertStatus(r1, 201);
    h.assertStatus(r2, 201);
    assert.equal(r1.body.version, 1);
    assert.equal(r2.body.version, 2);
  });

  test('re-sending the same CloudEvent is an idempotent replay', async () => {
    const ce = fileUploaded({ userid: 'u-replay' });
    const first = await send(HTTP.binary(ce));
    h.assertStatus(first, 201);
    const again = await send(HTTP.binary(ce));
    h.assertStatus(again, 200);
    assert.equal(again.headers.get('idempotent-replay'), 'true');
    assert.deepEqual(again.body, first.body);
  });

  test('data that violates the schema → 422 schema_violation; nothing stored', async () => {
    const ce = fileUploaded({ data: { ...EXAMPLE, is_browser_viewable: 'yes' } });
    const p = h.assertProblem(await send(HTTP.binary(ce)), 422, 'schema_violation');
    assert.deepEqual(p.errors.map((e) => `${e.index} ${e.path} ${e.keyword}`), ['0 /data/is_browser_viewable type'], JSON.stringify(p));
    h.assertProblem(await c.get('/v1/events/' + ce.id), 404, 'not_found');
  });

  test('a type outside Sluice\'s dot notation → 400 invalid_envelope at /type', async () => {
    const ce = fileUploaded({ type: 'com.example.FileUploaded' });
    const p = h.assertProblem(await send(HTTP.binary(ce)), 400, 'invalid_envelope');
    assert.ok(p.errors.some((e) => e.path === '/type'), JSON.stringify(p));
  });
});

describe('batch mode (application/cloudevents-batch+json)', () => {
  test('201 {events:[...]} in order; each stored with its mapping', async () => {
    const subject = 'file-batch-' + h.rand(4);
    const ces = [
      fileUploaded({ subject, correlationid: 'corr-batch' }),
      fileUploaded({ subject, correlationid: 'corr-batch', causationid: 'cause-x' }),
      fileUploaded({ subject: undefined, userid: 'u-batch', batchext: 'yes' }),
    ];
    const res = await send(batchMessage(ces));
    h.assertStatus(res, 201);
    assert.ok(Array.isArray(res.body.events) && res.body.events.length === 3, res.text);
    res.body.events.forEach((e, i) => {
      assert.equal(e.id, ces[i].id);
      assert.equal(e.stream, STREAM);
      if (i > 0) assert.equal(e.position, res.body.events[i - 1].position + 1, 'one atomic batch');
    });
    assert.equal(res.body.events[0].version, 1);
    assert.equal(res.body.events[1].version, 2);
    assert.equal(res.body.events[2].key, null);
    for (const ce of ces) assertMapped(await stored(ce.id), ce);
  });

  test('re-sending the whole batch is an idempotent replay with the original positions', async () => {
    const ces = [fileUploaded(), fileUploaded()];
    const msg = batchMessage(ces);
    const first = await send(msg);
    h.assertStatus(first, 201);
    const again = await send(msg);
    h.assertStatus(again, 200);
    assert.equal(again.headers.get('idempotent-replay'), 'true');
    assert.deepEqual(again.body.events.map((e) => e.position), first.body.events.map((e) => e.position));
  });

  test('one event violating the schema → 422 with its index; the batch is atomic', async () => {
    const bad = { ...EXAMPLE, mime_type: 7 };
    delete bad.user_id;
    const ces = [fileUploaded(), fileUploaded({ data: bad }), fileUploaded()];
    const p = h.assertProblem(await send(batchMessage(ces)), 422, 'schema_violation');
    assert.ok(p.errors.length >= 2, JSON.stringify(p));
    assert.ok(p.errors.every((e) => e.index === 1), `only index 1: ${JSON.stringify(p)}`);
    assert.ok(p.errors.some((e) => e.path === '/data/mime_type' && e.keyword === 'type'), JSON.stringify(p));
    assert.ok(p.errors.some((e) => e.keyword === 'required' &&
      (e.path === '/data/user_id' || (e.path === '/data' && e.message.includes('user_id')))), JSON.stringify(p));
    for (const ce of ces) h.assertProblem(await c.get('/v1/events/' + ce.id), 404, 'not_found');
  });

  test('a batch body that is not an array → 400', async () => {
    const res = await send({ headers: { 'content-type': 'application/cloudevents-batch+json' }, body: HTTP.structured(fileUploaded()).body });
    assert.equal(res.status, 400, h.describeRes(res));
    assert.match(res.contentType, /^application\/problem\+json/);
  });
});
