'use strict';
// Hostile input, part 2 (issue 8): a flood of 10,000 WebSocket connections against an
// instance whose connection limit (SLUICE_WS_MAX_CONNECTIONS) is lower. Shown here:
//   - exactly the free slots are upgraded (101); every connection over the limit is answered
//     503 with Retry-After and an `overloaded` problem document, then closed — never upgraded,
//     never closed without an answer, never left hanging;
//   - Sluice does not crash and its RSS stays bounded by the limit, not by the flood: a
//     second flood while the first one's connections are held (all of it refused) leaves
//     no memory behind, and what the held connections cost stays under PER_CONNECTION_KIB
//     each (a 4 KiB receive buffer per connection: with the 64 KiB one Sluice had before,
//     4,000 held connections cost about 26 KiB each under the sanitizers, and repeated
//     floods grew a release build's RSS by 14 MB each);
//   - subscribers connected before the floods receive every event published during them,
//     in order, with no gap and no duplicate;
//   - when the flood lets go every slot is released: a third flood gets exactly as many
//     upgrades as the first, and afterwards a new subscriber connects and receives events.
// The flooding client is cheap on purpose: plain sockets with a hand-written upgrade request,
// closed with a reset (no TIME_WAIT left on the machine's port range).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const WebSocket = require('ws');
const h = require('./lib/harness');

const LIMIT = 4000;           // SLUICE_WS_MAX_CONNECTIONS of this instance
const FLOOD = 10000;          // connections attempted by each flood
const IN_FLIGHT = 256;        // handshakes in progress at once
const SUBSCRIBERS = 3;        // connected before the flood, counted in the limit
const PER_CONNECTION_KIB = 20; // RSS bound per held connection: about 6 KiB in a release build,
                               // 14 KiB under the sanitizers (redzones)
const RSS_SLACK_MIB = 24;     // allocator and sanitizer slack on top (ASan's quarantine is 16 MiB)
const REFUSAL_SLACK_MIB = 16; // what 10,000 refused connections may leave behind, at most
const WAIT_MS = 60000;        // "no hang" bound for one expected state
const STREAM = 'hostile.flood';

function vmRssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

function openFilesLimit(pid = 'self') {
  const line = fs.readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  return Number(line.split(/\s+/)[3]);
}

let s;
let c;
let upgradeHead;

before(async () => {
  // node raises its soft descriptor limit to the hard one at start; sluice inherits it.
  const fds = openFilesLimit();
  assert.ok(fds >= FLOOD + 1024, `the flood needs ${FLOOD + 1024} open files; this process may have ${fds} (raise \`ulimit -Hn\`)`);
  s = await h.startSluice({ name: 'hostile-ws', env: { SLUICE_WS_MAX_CONNECTIONS: String(LIMIT), SLUICE_ACCESS_LOG: 'off' } });
  c = s.client();
  assert.ok(openFilesLimit(s.proc.pid) >= LIMIT + 1024, 'sluice may hold its connection limit in descriptors');
  upgradeHead = `GET /v1/ws?token=${s.adminToken} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
    'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
});

after(async () => {
  if (s) await s.stop().finally(() => s.cleanup());
});

// One hand-made upgrade; resolves {sock, status, data} once the answer's head (and, for a
// refusal, its body) is in, or {sock, status: null, data} when the server closed without one.
function attempt() {
  return new Promise((resolve) => {
    const sock = net.connect(s.wsPort, '127.0.0.1');
    let data = '';
    let done = false;
    const finish = (r) => { if (!done) { done = true; resolve({ sock, ...r }); } };
    const timer = setTimeout(() => { finish({ status: null, data, hung: true }); }, WAIT_MS);
    sock.on('connect', () => sock.write(upgradeHead));
    sock.on('data', (d) => {
      data += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n/.exec(data);
      if (!m) return;
      const length = /^content-length: *(\d+)/im.exec(m[2]);
      if (m[1] === '101' || (length && data.length >= m[0].length + Number(length[1]))) {
        clearTimeout(timer);
        finish({ status: Number(m[1]), data });
      }
    });
    sock.on('error', () => { /* a reset is a refusal too */ });
    sock.on('close', () => { clearTimeout(timer); finish({ status: null, data }); });
  });
}

// FLOOD attempts, IN_FLIGHT at a time, sampling the server's RSS; → {results, peakKiB}.
async function flood() {
  const results = [];
  let next = 0;
  let peak = vmRssKiB(s.proc.pid);
  const sampler = setInterval(() => { try { peak = Math.max(peak, vmRssKiB(s.proc.pid)); } catch (_) { /* exited */ } }, 100);
  try {
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (next < FLOOD) {
        next++;
        results.push(await attempt());
      }
    }));
    peak = Math.max(peak, vmRssKiB(s.proc.pid));
  } finally {
    clearInterval(sampler);
  }
  return { results, peak };
}

// Upgraded connections are reset; refused ones were closed by Sluice after its answer (a
// reset of a socket already shutting down would leave node's handle open for ever).
function release(results) {
  for (const r of results) {
    if (r.status === 101 && typeof r.sock.resetAndDestroy === 'function' && !r.sock.destroyed) r.sock.resetAndDestroy();
    else r.sock.destroy();
  }
}

// A clean refusal: 503, Retry-After, and the `overloaded` problem document (API.md: limits
// answer with codes, + Retry-After).
function cleanRefusal(r) {
  if (r.hung || r.status !== 503) return false;
  const [head, body] = [r.data.slice(0, r.data.indexOf('\r\n\r\n')), r.data.slice(r.data.indexOf('\r\n\r\n') + 4)];
  if (!/^retry-after: *\d+\r?$/im.test(head) || !/^content-type: *application\/problem\+json\r?$/im.test(head)) return false;
  try {
    const p = JSON.parse(body);
    return p.status === 503 && p.code === 'overloaded' && typeof p.detail === 'string';
  } catch (_) { return false; }
}

function tally(results) {
  const upgraded = results.filter((r) => r.status === 101);
  const refused = results.filter((r) => r.status !== 101);
  const wrong = refused.filter((r) => !cleanRefusal(r));
  return { upgraded: upgraded.length, refused: refused.length, wrong };
}

async function wsConnections() {
  return h.assertStatus(await c.get('/v1/info'), 200).ws_connections;
}

// A subscriber on STREAM; `events` collects the positions it receives.
async function subscriber(id) {
  const ws = new WebSocket(`ws://127.0.0.1:${s.wsPort}/v1/ws?token=${s.adminToken}`, { perMessageDeflate: false, handshakeTimeout: 30000 });
  const sub = { ws, events: [], subscribed: false, closed: null };
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString('utf8'));
    if (m.op === 'subscribed') sub.subscribed = true;
    if (m.op === 'event') sub.events.push(m.event.position);
  });
  ws.on('close', (code) => { sub.closed = code; });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  ws.send(JSON.stringify({ op: 'subscribe', id, streams: [STREAM] }));
  await h.waitFor(() => sub.subscribed, { timeout: WAIT_MS, what: `subscriber ${id} subscribed` });
  return sub;
}

test(`floods of ${FLOOD} WebSocket connections over a limit of ${LIMIT}: clean refusals, bounded memory, subscribers served, every slot released`, async (t) => {
  const subs = [];
  for (let i = 0; i < SUBSCRIBERS; i++) subs.push(await subscriber(`s${i}`));
  assert.equal(await wsConnections(), SUBSCRIBERS);
  const rss0 = vmRssKiB(s.proc.pid);

  // Publish while the floods run; every subscriber must get all of it.
  const published = [];
  let flooding = true;
  const publisher = (async () => {
    for (let i = 0; flooding || i < 5; i++) {
      const ack = h.assertStatus(await c.publish({ type: 'hostile.flood', stream: STREAM, data: { i } }), 201);
      published.push(ack.position);
      await h.sleep(25);
    }
  })();
  let first;
  let second;
  try {
    // 1. The flood fills every free slot; the rest is refused.
    first = await flood();
    const t1 = tally(first.results);
    t.diagnostic(`flood 1: ${t1.upgraded} upgraded, ${t1.refused} refused; RSS ${rss0} KiB → peak ${first.peak} KiB`);
    assert.equal(s.exitInfo, null, 'sluice is still running');
    assert.deepEqual(t1.wrong.slice(0, 5).map((r) => ({ status: r.status, data: r.data.slice(0, 300), hung: !!r.hung })), [], `${t1.wrong.length} refusals were not clean`);
    assert.equal(t1.upgraded, LIMIT - SUBSCRIBERS, 'exactly the free slots were upgraded');
    assert.equal(await wsConnections(), LIMIT);

    // 2. Another flood while those are held: all refused, and it leaves no memory behind.
    const held = vmRssKiB(s.proc.pid);
    second = await flood();
    const t2 = tally(second.results);
    t.diagnostic(`flood 2 (at the limit): ${t2.upgraded} upgraded, ${t2.refused} refused; RSS ${held} KiB → peak ${second.peak} KiB`);
    assert.equal(s.exitInfo, null, 'sluice is still running');
    assert.deepEqual(t2.wrong.slice(0, 5).map((r) => ({ status: r.status, data: r.data.slice(0, 300), hung: !!r.hung })), [], `${t2.wrong.length} refusals at the limit were not clean`);
    assert.equal(t2.upgraded, 0, 'nothing is upgraded at the limit');
    assert.ok(second.peak - held <= REFUSAL_SLACK_MIB * 1024, `${FLOOD} refused connections grew RSS from ${held} to ${second.peak} KiB`);
  } finally {
    flooding = false;
    await publisher;
  }
  const bound = rss0 + LIMIT * PER_CONNECTION_KIB + RSS_SLACK_MIB * 1024;
  assert.ok(Math.max(first.peak, second.peak) <= bound, `RSS peaked at ${Math.max(first.peak, second.peak)} KiB holding ${LIMIT} connections (bound ${bound} KiB)`);
  for (const sub of subs) {
    await h.waitFor(() => sub.events.length >= published.length, { timeout: WAIT_MS, what: 'every event reached the subscribers' });
    assert.deepEqual(sub.events, published, `a subscriber got every one of the ${published.length} events published during the floods, in order, once`);
    assert.equal(sub.closed, null, 'no subscriber was closed');
  }

  // 3. Let go: every slot comes back, for another flood as for the first.
  release(first.results);
  release(second.results);
  await h.waitFor(async () => (await wsConnections()) === SUBSCRIBERS, { timeout: WAIT_MS, what: `ws_connections back to ${SUBSCRIBERS}` });
  const third = await flood();
  const t3 = tally(third.results);
  t.diagnostic(`flood 3: ${t3.upgraded} upgraded, ${t3.refused} refused; RSS peak ${third.peak} KiB`);
  assert.deepEqual(t3.wrong.slice(0, 5).map((r) => ({ status: r.status, data: r.data.slice(0, 300), hung: !!r.hung })), [], `${t3.wrong.length} refusals of the third flood were not clean`);
  assert.equal(t3.upgraded, LIMIT - SUBSCRIBERS, 'the released slots were all available again');
  assert.ok(third.peak <= bound, `RSS peaked at ${third.peak} KiB in the third flood (bound ${bound} KiB)`);
  release(third.results);
  await h.waitFor(async () => (await wsConnections()) === SUBSCRIBERS, { timeout: WAIT_MS, what: `ws_connections back to ${SUBSCRIBERS} after the third flood` });

  // A new subscriber connects and is served; the old ones still are.
  const late = await subscriber('late');
  subs.push(late);
  const ack = h.assertStatus(await c.publish({ type: 'hostile.flood', stream: STREAM, data: { late: true } }), 201);
  for (const sub of subs) await h.waitFor(() => sub.events.includes(ack.position), { timeout: WAIT_MS, what: 'a subscriber got the event after the floods' });
  for (const sub of subs) sub.ws.terminate();
});
