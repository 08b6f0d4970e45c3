'use strict';
// The contract checker itself (lib/contract.js), which harness.js runs on every answer the
// integration suite receives: it loads openapi/openapi.yaml in ajv's strict mode, passes
// real answers of a real sluice, and reports each kind of break — a body that does not
// validate, an undocumented status, an undeclared content type, a problem whose status field
// disagrees, an answer on an undocumented path or method — naming the operation and status.
// A checker that never fails would prove nothing about the document.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const { contract, Contract } = require('./lib/contract');

const problem = (status, code) => JSON.stringify({ type: `https://sluice.dev/problems/${code}`, title: 'x', status, code });

describe('the contract checker reports every kind of break', () => {
  const c = contract();

  test('the document loads and compiles in strict mode', () => {
    assert.ok(c.paths.length >= 30, `paths: ${c.paths.length}`);
    assert.ok(c.operation('GET', '/v1/events/wait').template === '/v1/events/wait', 'a literal segment beats {id}');
    assert.equal(c.operation('GET', '/v1/events/abc').template, '/v1/events/{id}');
    assert.deepEqual(c.operation('PATCH', '/v1/events'), { allowed: ['GET', 'POST'] });
    assert.equal(c.operation('GET', '/v1/nothing/here'), null);
  });

  test('a body that does not validate names the operation, the status and ajv\'s error', () => {
    const errs = c.check({ method: 'GET', path: '/health', status: 200, contentType: 'application/json', text: '{"status":"fine"}' });
    assert.equal(errs.length, 1, JSON.stringify(errs));
    assert.match(errs[0], /get_health \(GET \/health\) → HTTP 200 application\/json/);
    assert.match(errs[0], /\/status must be equal to constant/);
    assert.throws(() => c.assertAnswer({ method: 'GET', path: '/health', status: 200, contentType: 'application/json', text: '{"status":"fine"}' }),
      (e) => e instanceof assert.AssertionError && /breaks openapi\/openapi.yaml/.test(e.message) && /body: \{"status":"fine"\}/.test(e.message));
    // a missing required field, through a $ref into components/schemas
    const pub = c.check({ method: 'POST', path: '/v1/events', status: 201, contentType: 'application/json', text: '{"id":"a","position":1}' });
    assert.equal(pub.length, 1);
    assert.match(pub[0], /post_v1_events .* HTTP 201/);
    // a JSON content type whose body is not JSON
    assert.match(c.check({ method: 'GET', path: '/health', status: 200, contentType: 'application/json', text: 'ok' })[0], /not JSON/);
  });

  test('an undocumented status, content type or body is reported', () => {
    assert.match(c.check({ method: 'GET', path: '/health', status: 418, contentType: 'application/json', text: '{}' })[0],
      /status 418 is not documented \(documented: .*200/);
    assert.match(c.check({ method: 'GET', path: '/v1/info', status: 200, contentType: 'text/html', text: '<p>' })[0],
      /content type text\/html is not declared for 200/);
    assert.match(c.check({ method: 'GET', path: '/v1/events/wait', status: 204, contentType: 'application/json', text: '{}' })[0],
      /documents no content, but a 2-byte body came/);
    assert.match(c.check({ method: 'GET', path: '/v1/info', status: 200, contentType: '', text: '{}' })[0], /no Content-Type/);
  });

  test('a problem document is checked against Problem and its status field', () => {
    assert.deepEqual(c.check({ method: 'GET', path: '/v1/events/x', status: 404, contentType: 'application/problem+json', text: problem(404, 'not_found') }), []);
    assert.match(c.check({ method: 'GET', path: '/v1/events/x', status: 404, contentType: 'application/problem+json', text: problem(400, 'not_found') })[0],
      /status field is 400/);
    assert.match(c.check({ method: 'GET', path: '/v1/events/x', status: 404, contentType: 'application/problem+json', text: problem(404, 'no_such_code') })[0],
      /\/code must be equal to one of the allowed values/);
  });

  test('answers outside every operation: only 404 not_found and 405 with the documented Allow', () => {
    assert.deepEqual(c.check({ method: 'GET', path: '/nope', status: 404, contentType: 'application/problem+json', text: problem(404, 'not_found') }), []);
    assert.match(c.check({ method: 'GET', path: '/nope', status: 200, contentType: 'text/html', text: '<p>' }).join('\n'), /undocumented path.*expected 404 not_found/);
    const allow = (v) => c.check({ method: 'PATCH', path: '/v1/events', status: 405, contentType: 'application/problem+json', text: problem(405, 'method_not_allowed'), headers: { Allow: v } });
    assert.deepEqual(allow('POST, GET'), []);
    assert.match(allow('GET').join('\n'), /Allow is "GET", the document has GET, POST/);
    // the dashboard's files of web/ are served by path: 200, nothing else; no escape from web/
    assert.deepEqual(c.check({ method: 'GET', path: '/app.js', status: 200, contentType: 'text/javascript', text: '' }), []);
    assert.match(c.check({ method: 'GET', path: '/app.js', status: 500, contentType: 'text/plain', text: '' }).join('\n'), /a file of web\/.*expected 200/);
    assert.match(c.check({ method: 'GET', path: '/../Makefile', status: 200, contentType: 'text/plain', text: '' }).join('\n'), /undocumented path/);
  });

  test('streams are checked by status and content type only', () => {
    assert.deepEqual(c.check({ method: 'GET', path: '/v1/subscribe', status: 200, contentType: 'text/event-stream' }), []);
    assert.deepEqual(c.check({ method: 'GET', path: '/v1/events', status: 200, contentType: 'application/x-ndjson', text: '{"a":1}\n{' }), []);
    assert.match(c.check({ method: 'GET', path: '/v1/subscribe', status: 200, contentType: 'application/x-ndjson' })[0], /not declared/);
  });

  test('a schema mistake fails the load (strict mode), not the validation', () => {
    const doc = structuredClone(c.doc);
    doc.components.schemas.Problem.properties.code.enmu = ['x'];
    assert.throws(() => new Contract(doc), /strict mode: unknown keyword: "enmu"/);
  });
});

describe('the contract check on a real sluice', () => {
  let s;
  before(async () => { s = await h.startSluice({ name: 'contract' }); });
  after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

  test('real answers pass; the same answers altered are reported by the harness check', async () => {
    const cl = s.client();
    const info = await cl.get('/v1/info'); // checked by the harness on the way in
    h.assertStatus(info, 200);
    const pub = await cl.publish({ type: 'contract.checked', data: { n: 1 } });
    h.assertStatus(pub, 201);
    const base = { method: 'GET', path: '/v1/info', status: info.status, contentType: info.contentType, headers: info.headers };
    assert.doesNotThrow(() => h.checkAnswer({ ...base, text: info.text }));
    const { head_position: _, ...noHead } = info.body;
    assert.throws(() => h.checkAnswer({ ...base, text: JSON.stringify(noHead) }),
      /get_v1_info \(GET \/v1\/info\) → HTTP 200 application\/json: the body does not validate:\n.*must have required property 'head_position'/);
    assert.throws(() => h.checkAnswer({ ...base, text: JSON.stringify({ ...info.body, auth: 'maybe' }) }), /\/auth must be equal to one of the allowed values/);
    assert.throws(() => h.checkAnswer({ ...base, status: 201, text: info.text }), /status 201 is not documented/);
    const p = { method: 'POST', path: '/v1/events', status: 201, contentType: pub.contentType, text: JSON.stringify({ ...pub.body, position: String(pub.body.position) }) };
    assert.throws(() => h.checkAnswer(p), /post_v1_events \(POST \/v1\/events\) → HTTP 201/);
  });

  test('a test\'s own fetch() is checked too', async () => {
    assert.equal(globalThis.fetch.name, 'checkedFetch', 'the harness wraps fetch()');
    const res = await fetch(`${s.url}/v1/events/no-such-id`, { headers: { Authorization: `Bearer ${s.adminToken}` } });
    assert.equal(res.status, 404);
    assert.equal((await res.json()).code, 'not_found', 'the checked body is handed back intact');
    const sse = new AbortController();
    const live = await fetch(`${s.url}/v1/subscribe`, { headers: { Authorization: `Bearer ${s.adminToken}` }, signal: sse.signal });
    assert.equal(live.status, 200);
    assert.match(live.headers.get('content-type'), /^text\/event-stream/, 'a stream is handed back unread');
    sse.abort();
    await live.body.cancel().catch(() => {});
  });
});
