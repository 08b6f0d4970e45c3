'use strict';
// Issue 17: Sluice on a Redis Cluster (API.md "Scale-out"; server/redis_cluster.h). A real
// cluster of three masters and three replicas on loopback, started here with
// `scripts/services.sh start cluster` in a run dir of this file's own and cleaned at the end,
// with SLUICE_REDIS_URL=redis+cluster://… . Covered: the relay adds every event to its stream
// (`<prefix><stream>`, the name workers XREADGROUP) in order and exactly once, streams spread
// over every master; a consumer group through the consumer API (fetch, ack, nack → retry →
// dead letter), whose scripts touch the stream and the hashes beside it in one call (so they
// must share its slot); a stream's slot migrated to another master while Sluice runs (ASK
// during the move, MOVED after it); and failovers while publishing — a replica promoted by
// CLUSTER FAILOVER, and a master killed with SIGKILL — with every event relayed once (XRANGE
// holds each position exactly once, checked against PostgreSQL's events table).
// Waits poll for a state within "no hang" bounds; nothing asserts on durations.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const IORedis = require('ioredis');
const h = require('./lib/harness');
const { storedRows } = require('./lib/flow');
const { command } = require('../lib/redis.js');

const SCRIPT = path.join(h.REPO, 'scripts', 'services.sh');
const CATCH_UP_MS = 60000; // "no hang" bound for the relay to catch up
const FAILOVER_MS = 60000; // "no hang" bound for a replica to take over
const FIXED_100 = { strategy: 'fixed', base_delay_ms: 100, max_delay_ms: 10000, jitter: false };

let runDir; // this file's own scripts/services.sh run dir
let clusterUrl; // redis+cluster://127.0.0.1:p1,…
let ports; // the six nodes' ports

function services(cmd) {
  return execFileSync(SCRIPT, [cmd, 'cluster'], {
    env: { ...process.env, SLUICE_RUN_DIR: runDir }, encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'], timeout: 180000,
  });
}

before(() => {
  runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-cluster-'));
  services('start');
  const env = fs.readFileSync(path.join(runDir, 'env'), 'utf8');
  clusterUrl = /SLUICE_REDIS_CLUSTER_URL=(\S+)/.exec(env)[1];
  ports = /SLUICE_REDIS_CLUSTER_PORTS="([^"]+)"/.exec(env)[1].split(' ').map(Number);
  assert.equal(ports.length, 6);
});

// The cluster's servers are daemons, not children: cleaned after the tests, or when the test
// process exits early (the harness turns SIGINT/SIGTERM into an exit).
let cleaned = false;
function cleanCluster() {
  if (cleaned || !runDir) return;
  cleaned = true;
  try { services('clean'); } finally { fs.rmSync(runDir, { recursive: true, force: true }); }
}
process.on('exit', () => { try { cleanCluster(); } catch (_) { /* best effort */ } });
after(cleanCluster);

// ---------------------------------------------------------------- the cluster

const nodeUrl = (port) => `redis://127.0.0.1:${port}`;
const onNode = (port, ...args) => command(nodeUrl(port), args, { timeoutMs: 10000 });

// Ports of nodes that answer PING.
async function livePorts() {
  const out = [];
  for (const p of ports) {
    try { if (await onNode(p, 'PING') === 'PONG') out.push(p); } catch (_) { /* down */ }
  }
  return out;
}

// CLUSTER NODES as one live node sees it: [{id, port, master (bool), masterId, failed, slots: [[lo, hi]]}].
async function topology() {
  const [p] = await livePorts();
  const text = await onNode(p, 'CLUSTER', 'NODES');
  return text.trim().split('\n').map((line) => {
    const f = line.split(' ');
    const flags = f[2].split(',');
    const slots = f.slice(8).filter((s) => !s.startsWith('[')).map((s) => {
      const [lo, hi] = s.split('-').map(Number);
      return [lo, hi === undefined ? lo : hi];
    });
    return {
      id: f[0], port: Number(f[1].split(':')[1].split('@')[0]), master: flags.includes('master'),
      masterId: f[3], failed: flags.includes('fail') || flags.includes('fail?'), slots,
    };
  });
}

async function keySlot(key) {
  const [p] = await livePorts();
  return Number(await onNode(p, 'CLUSTER', 'KEYSLOT', key));
}

// The master serving `slot` now (as the first live node sees it).
async function ownerOf(slot) {
  const nodes = await topology();
  const m = nodes.find((n) => n.master && !n.failed && n.slots.some(([lo, hi]) => slot >= lo && slot <= hi));
  assert.ok(m, `slot ${slot} has a master: ${JSON.stringify(nodes)}`);
  return m;
}

// Every live node reports a healthy cluster.
async function waitHealthy(what) {
  await h.waitFor(async () => {
    for (const p of await livePorts()) {
      const info = await onNode(p, 'CLUSTER', 'INFO');
      if (!/cluster_state:ok/.test(info)) return false;
    }
    return true;
  }, { timeout: FAILOVER_MS, interval: 200, what });
}

// A cluster client (ioredis follows MOVED and ASK) for fn(r); always disconnected.
async function withCluster(fn) {
  const live = await livePorts();
  const r = new IORedis.Cluster(live.map((port) => ({ host: '127.0.0.1', port })), {
    redisOptions: { protocol: 2, connectTimeout: 10000 },
    slotsRefreshTimeout: 5000,
  });
  try {
    await new Promise((resolve, reject) => {
      r.once('ready', resolve);
      r.once('error', reject);
    });
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

// The positions in stream `key`, in XRANGE order.
async function positionsIn(r, key) {
  const out = [];
  let start = '-';
  for (;;) {
    const page = await r.xrange(key, start, '+', 'COUNT', 1000);
    for (const [id, kv] of page) {
      const m = /^(\d+)-0$/.exec(id);
      assert.ok(m, `${key}: entry id ${id} is <position>-0`);
      const fields = {};
      for (let i = 0; i < kv.length; i += 2) fields[kv[i]] = kv[i + 1];
      assert.equal(fields.position, m[1], `${key} ${id}: its position field`);
      assert.equal(JSON.parse(fields.event).position, Number(m[1]), `${key} ${id}: its event`);
      out.push(Number(m[1]));
    }
    if (page.length < 1000) return out;
    start = '(' + page[page.length - 1][0];
  }
}

// Strictly increasing and exactly `want` (sorted positions): each position once, none missing.
function assertExactly(got, want, what) {
  for (let i = 1; i < got.length; i++) if (got[i] <= got[i - 1]) assert.fail(`${what}: ${got[i]} after ${got[i - 1]} (out of order or doubled)`);
  const gs = new Set(got);
  const ws = new Set(want);
  const missing = want.filter((p) => !gs.has(p));
  const extra = got.filter((p) => !ws.has(p));
  assert.ok(missing.length === 0 && extra.length === 0,
    `${what}: ${got.length} entries, ${want.length} events; missing ${JSON.stringify(missing.slice(0, 20))}; unexpected ${JSON.stringify(extra.slice(0, 20))}`);
}

// Waits until the relay has caught up with PostgreSQL, then checks every stream of `streams`
// holds exactly its events, in order, once. Returns the events per stream.
async function assertRelayed(s, prefix, streams) {
  const rows = storedRows(s.dbUrl);
  const head = rows.length ? rows[rows.length - 1].position : 0;
  const want = new Map(streams.map((st) => [st, []]));
  for (const r of rows) if (want.has(r.stream)) want.get(r.stream).push(r.position);
  await withCluster(async (r) => {
    await h.waitFor(async () => Number(await r.get(`${prefix}relay:position`)) >= head,
      { timeout: CATCH_UP_MS, interval: 100, what: `the relay to reach position ${head}` });
    for (const [st, ps] of want) assertExactly(await positionsIn(r, prefix + st), ps, prefix + st);
  });
  return want;
}

// ---------------------------------------------------------------- Sluice

const newPrefix = () => `itc${h.rand(4)}:`;

async function startClusterSluice(name) {
  const prefix = newPrefix();
  const s = await h.startSluice({ name, env: { SLUICE_REDIS_URL: clusterUrl, SLUICE_REDIS_PREFIX: prefix } });
  return { s, c: s.client(), prefix };
}

async function stopSluice(s) {
  await s.stop().finally(() => s.cleanup());
}

// Publishes n events round-robin over `streams` in batches of 10; returns their positions.
async function publishOver(c, streams, n, tag = 'x') {
  const out = [];
  for (let i = 0; i < n; i += 10) {
    const batch = [];
    for (let k = i; k < Math.min(n, i + 10); k++) batch.push({ type: 'cluster.published', stream: streams[k % streams.length], data: { tag, k } });
    const res = await c.publish(batch);
    h.assertStatus(res, 201);
    out.push(...res.body.events.map((e) => e.position));
  }
  return out;
}

// Publishes in a loop until stop(): batches of 10 over `streams`; counts what was acknowledged.
function startPublishing(c, streams) {
  const st = { stopped: false, acked: 0, errors: [] };
  st.done = (async () => {
    for (let n = 0; !st.stopped; n++) {
      const batch = streams.map((stream, k) => ({ type: 'cluster.load', stream, data: { n, k } }));
      try {
        const res = await c.publish(batch);
        if (res.status === 201) st.acked += batch.length;
        else st.errors.push(res.status);
      } catch (e) {
        st.errors.push(String(e));
      }
      await h.sleep(10);
    }
  })();
  st.stop = async () => { st.stopped = true; await st.done; };
  st.waitMore = async (more, what) => {
    const want = st.acked + more;
    await h.waitFor(() => st.acked >= want, { timeout: CATCH_UP_MS, interval: 20, what });
  };
  return st;
}

const groupsPath = (stream) => `/v1/streams/${encodeURIComponent(stream)}/groups`;
const opPath = (stream, group, op) => `${groupsPath(stream)}/${encodeURIComponent(group)}/${op}`;

async function fetchN(c, stream, group, consumer, n) {
  const got = [];
  const deadline = Date.now() + CATCH_UP_MS;
  while (got.length < n) {
    assert.ok(Date.now() < deadline, `${consumer} fetched ${got.length} of ${n} messages of ${group}`);
    const res = await c.post(opPath(stream, group, 'fetch'), { consumer, max: n - got.length, wait_ms: 1000 });
    got.push(...h.assertStatus(res, 200).messages);
  }
  return got;
}

// ---------------------------------------------------------------- the tests

test('the relay adds every event to <prefix><stream> on the cluster: in order, once, streams on every master', { timeout: 180000 }, async () => {
  const { s, c, prefix } = await startClusterSluice('cluster-relay');
  try {
    // Twelve streams or more, until every master has some.
    const streams = [];
    const owners = new Set();
    for (let i = 0; i < 100 && (streams.length < 12 || owners.size < 3); i++) {
      streams.push(`orders${i}.events`);
      owners.add((await ownerOf(await keySlot(prefix + streams[i]))).id);
    }
    assert.equal(owners.size, 3, 'the streams land on all three masters');
    await publishOver(c, streams, 600);
    await assertRelayed(s, prefix, streams);
    // A tenant's streams are <prefix><tenant>:<stream>.
    const key = await h.createKey(s, 'acme', ['publish']);
    const acme = c.withToken(key.token);
    h.assertStatus(await acme.publish({ type: 'cluster.tenant', stream: 'orders0.events', data: {} }), 201);
    await withCluster((r) => h.waitFor(async () => (await r.xlen(`${prefix}acme:orders0.events`)) === 1,
      { timeout: CATCH_UP_MS, what: 'the tenant\'s stream' }));
  } finally {
    await stopSluice(s);
  }
});

test('a consumer group on the cluster: fetch, ack, nack → retry → dead letter; its hashes share the stream\'s slot', { timeout: 180000 }, async () => {
  const { s, c, prefix } = await startClusterSluice('cluster-groups');
  try {
    const stream = 'billing.events';
    const key = prefix + stream;
    const created = h.assertStatus(await c.post(groupsPath(stream), { name: 'g', start: '$', max_deliveries: 2, ack_timeout_ms: 30000, retry: FIXED_100 }), 201);
    assert.equal(created.redis_stream, key, 'the group\'s stream keeps its name');
    const [ev1, ev2] = (await publishOver(c, [stream], 2));
    // ack
    const [m1] = await fetchN(c, stream, 'g', 'w1', 1);
    assert.equal(m1.event.position, ev1);
    assert.equal(m1.attempt, 1);
    assert.deepEqual(h.assertStatus(await c.post(opPath(stream, 'g', 'ack'), { receipts: [m1.receipt] }), 200), { acked: 1, stale: [] });
    // nack with a delay: the due hash is written beside the stream
    const [m2] = await fetchN(c, stream, 'g', 'w1', 1);
    assert.equal(m2.event.position, ev2);
    const later = h.assertStatus(await c.post(opPath(stream, 'g', 'nack'), { receipt: m2.receipt, error: 'later', delay_ms: 300 }), 200);
    assert.equal(later.status, 'retry_scheduled');
    const due = `{${key}}:due:g`;
    await withCluster(async (r) => {
      assert.equal(await r.exists(due), 1, `${due} holds the retry's due time`);
      assert.equal(await keySlot(due), await keySlot(key), 'the due hash shares the stream\'s slot');
      const groups = await r.xinfo('GROUPS', key);
      assert.ok(groups.some((g) => g[1] === 'g'), `the group is on ${key}`);
    });
    // the retry comes back as attempt 2; its nack is the last: a dead letter
    const [r2] = await fetchN(c, stream, 'g', 'w2', 1);
    assert.deepEqual([r2.event.position, r2.attempt], [ev2, 2]);
    const dead = h.assertStatus(await c.post(opPath(stream, 'g', 'nack'), { receipt: r2.receipt, error: 'again', retryable: true }), 200);
    assert.equal(dead.status, 'dead_lettered');
    const dls = h.assertStatus(await c.get(`/v1/dead-letters?stream=${stream}&group=g`), 200).dead_letters;
    assert.deepEqual(dls.map((d) => [d.event_position, d.delivery_count]), [[ev2, 2]]);
    const res = await c.post(opPath(stream, 'g', 'fetch'), { consumer: 'w3', wait_ms: 500 });
    assert.deepEqual(h.assertStatus(res, 200).messages, [], 'a dead letter is delivered no more');
  } finally {
    await stopSluice(s);
  }
});

test('a stream\'s slot migrated to another master while Sluice runs: ASK during the move, MOVED after it; relayed once', { timeout: 180000 }, async () => {
  const { s, c, prefix } = await startClusterSluice('cluster-moved');
  try {
    const stream = 'moving.events';
    const key = prefix + stream;
    h.assertStatus(await c.post(groupsPath(stream), { name: 'g', start: '0', max_deliveries: 3, ack_timeout_ms: 30000, retry: FIXED_100 }), 201);
    const slot = await keySlot(key);
    const src = await ownerOf(slot);
    const dst = (await topology()).find((n) => n.master && !n.failed && n.id !== src.id);
    await publishOver(c, [stream], 20, 'before');
    await assertRelayed(s, prefix, [stream]);
    // The move, as redis-cli --cluster reshard does it: IMPORTING, MIGRATING, MIGRATE, NODE.
    await onNode(dst.port, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', src.id);
    await onNode(src.port, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', dst.id);
    const keys = await onNode(src.port, 'CLUSTER', 'GETKEYSINSLOT', slot, 1000);
    assert.ok(keys.includes(key), `the stream is in slot ${slot}: ${JSON.stringify(keys)}`);
    await onNode(src.port, 'MIGRATE', '127.0.0.1', dst.port, '', 0, 10000, 'KEYS', ...keys);
    // The keys are on dst, the slot still src's: src answers ASK.
    await publishOver(c, [stream], 20, 'asked');
    await assertRelayed(s, prefix, [stream]);
    for (const n of (await topology()).filter((x) => x.master && !x.failed)) {
      await onNode(n.port, 'CLUSTER', 'SETSLOT', slot, 'NODE', dst.id);
    }
    await h.waitFor(async () => (await ownerOf(slot)).id === dst.id, { timeout: FAILOVER_MS, what: 'the slot to move' });
    // src answers MOVED now.
    await publishOver(c, [stream], 20, 'moved');
    const want = await assertRelayed(s, prefix, [stream]);
    assert.equal(want.get(stream).length, 60);
    assert.equal(Number(await onNode(dst.port, 'XLEN', key)), 60, 'the stream lives on its new master');
    // The relay followed ASK and MOVED: no batch of its failed on them (it would have
    // logged the refusal, then connected again and read the map afresh).
    const refused = s.logs.filter((l) => /redis refused an entry/.test(l));
    assert.deepEqual(refused, [], 'the relay followed the redirections');
    // The consumer API (scripts over the stream and its hashes) follows the move too.
    const got = await fetchN(c, stream, 'g', 'w1', 60);
    assert.deepEqual(got.map((m) => m.event.position), want.get(stream));
    const acked = h.assertStatus(await c.post(opPath(stream, 'g', 'ack'), { receipts: got.map((m) => m.receipt) }), 200);
    assert.equal(acked.acked, 60);
  } finally {
    await stopSluice(s);
  }
});

test('failovers while publishing — a replica promoted by CLUSTER FAILOVER, a master killed — lose and double no relayed entry', { timeout: 300000 }, async () => {
  const { s, c, prefix } = await startClusterSluice('cluster-failover');
  const streams = Array.from({ length: 9 }, (_, i) => `fail${i}.events`);
  const load = startPublishing(c, streams);
  try {
    h.assertStatus(await c.post(groupsPath(streams[0]), { name: 'g', start: '$', max_deliveries: 3, ack_timeout_ms: 30000, retry: FIXED_100 }), 201);
    await load.waitMore(200, 'events published before the first failover');

    // 1. A manual failover: the replica of the master of streams[0] takes over.
    const slot0 = await keySlot(prefix + streams[0]);
    const old0 = await ownerOf(slot0);
    const replica0 = (await topology()).find((n) => !n.master && n.masterId === old0.id && !n.failed);
    assert.ok(replica0, `master ${old0.port} has a replica`);
    assert.equal(await onNode(replica0.port, 'CLUSTER', 'FAILOVER'), 'OK');
    await h.waitFor(async () => (await ownerOf(slot0)).id === replica0.id, { timeout: FAILOVER_MS, interval: 100, what: 'the replica to be promoted' });
    await waitHealthy('the cluster after the manual failover');
    await load.waitMore(200, 'events published after the manual failover');

    // 2. A master dies (SIGKILL); its replica is promoted once the others agree it failed.
    const victim = (await topology()).find((n) => n.master && !n.failed && n.slots.length > 0 && n.id !== replica0.id);
    const heir = (await topology()).find((n) => !n.master && n.masterId === victim.id && !n.failed);
    assert.ok(heir, `master ${victim.port} has a replica`);
    const pid = Number(fs.readFileSync(path.join(runDir, 'cluster', `${ports.indexOf(victim.port) + 1}.pid`), 'utf8'));
    process.kill(pid, 'SIGKILL');
    await load.waitMore(50, 'events published while the master is down');
    await h.waitFor(async () => {
      const nodes = await topology();
      const hn = nodes.find((n) => n.id === heir.id);
      return hn && hn.master && hn.slots.length > 0;
    }, { timeout: FAILOVER_MS, interval: 100, what: 'the dead master\'s replica to be promoted' });
    await waitHealthy('the cluster after the master died');
    await load.waitMore(200, 'events published after the second failover');
  } finally {
    await load.stop();
  }
  try {
    assert.ok(load.acked >= 650, `the load went on through both failovers: ${load.acked} acknowledged, errors ${JSON.stringify(load.errors.slice(0, 5))}`);
    const want = await assertRelayed(s, prefix, streams);
    // The group on streams[0] (whose master was failed over) still delivers, in order.
    const n0 = want.get(streams[0]).length;
    assert.ok(n0 > 0);
    const got = await fetchN(c, streams[0], 'g', 'after', Math.min(n0, 50));
    const ps = got.map((m) => m.event.position);
    assert.deepEqual(ps, [...ps].sort((a, b) => a - b), 'delivered in position order');
  } finally {
    await stopSluice(s);
  }
});
