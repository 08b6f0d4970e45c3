'use strict';
// Redis unreachable, then stopped, while two instances take a continuous publish load (two
// tenants, several streams, singles and batches). The relay must catch up from PostgreSQL
// and leave every stream holding every stored event exactly once, in position order, entry
// id <position>-0 — compared with what PostgreSQL holds (SELECT position … FROM events), the
// source of truth, not with what the test thinks it published.
//   1. frozen: the Redis process is stopped with SIGSTOP for a few seconds (connections and
//      connects hang, commands pile up in its socket buffers and run when it resumes with
//      SIGCONT — after the relay gave up on them);
//   2. stopped: SHUTDOWN SAVE (it comes back with exactly what it had acknowledged), and
//      while it is down the relay leader is killed with SIGKILL: the other instance takes
//      the leadership and relays the backlog once Redis returns.
// Publishing never fails meanwhile (a Redis outage delays fan-out, never a publish).
// A private Redis (scripts/services.sh with its own run dir) so the suite's is never touched.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');
const svc = require('./lib/services');
const f = require('./lib/flow');
const { withRedis, xrangeAll } = require('../lib/redis.js');

const CATCH_UP_MS = 60000;

// ---------------------------------------------------------------- a private Redis

const runDir = fs.mkdtempSync(path.join(h.TMP, 'redis-relay-outage-'));
let privateRedis = false;
let frozenPid = null;

function services(cmd) { return svc.services(runDir, cmd, 'redis', { timeout: 120000 }); }

function redisPid() {
  const pid = Number(fs.readFileSync(path.join(runDir, 'redis.pid'), 'utf8').trim());
  assert.ok(Number.isInteger(pid) && pid > 0, 'the private Redis wrote its pid');
  return pid;
}

function alive(pid) {
  try { process.kill(pid, 0); return true; } catch (_) { return false; }
}

const thaw = () => {
  if (frozenPid) { try { process.kill(frozenPid, 'SIGCONT'); } catch (_) { /* gone */ } frozenPid = null; }
};
process.on('exit', thaw);

after(async () => {
  thaw();
  if (privateRedis) await services('clean').catch((e) => console.error(String(e)));
  fs.rmSync(runDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- the test

test('Redis frozen, then stopped (and the relay leader killed meanwhile): the relay catches up from PostgreSQL, every stored event in Redis exactly once, in order', { timeout: 300000 }, async (t) => {
  await services('start');
  privateRedis = true;
  const url = /SLUICE_REDIS_URL=(\S+)/.exec(fs.readFileSync(path.join(runDir, 'env'), 'utf8'))[1];
  const prefix = `itro${h.rand(4)}:`;
  const db = await h.freshDatabase();
  const adminToken = 'adm_' + h.rand(16);
  const env = { SLUICE_REDIS_URL: url, SLUICE_REDIS_PREFIX: prefix };
  const handles = [];
  let load = null;
  const start = async (name) => { const s = await h.startSluice({ name, dbUrl: db.url, adminToken, env }); handles.push(s); return s; };
  const info = async (s) => h.assertStatus(await s.client().get('/v1/info', { timeout: 20000 }), 200);
  try {
    const A = await start('ro-a');
    await h.waitFor(async () => (await info(A)).relay_leader === true, { timeout: 30000, what: 'A to lead the relay' });
    const B = await start('ro-b');
    const key = await h.createKey(A, 'tenant-ro', ['publish', 'read']);
    const clients = { A: A.client(), B: B.client(), At: A.client(key.token), Bt: B.client(key.token) };
    // B reloads its key table once a second: wait until it knows the new key.
    await h.waitFor(async () => (await clients.Bt.get('/v1/events?limit=1')).status === 200, { timeout: 30000, what: 'B to know the tenant key' });
    let aDead = false;
    // w % 4: 0 → A, 1 → B, 2 → A as tenant-ro, 3 → B as tenant-ro (A's go to B once A is dead)
    const target = (w) => {
      const onA = w % 2 === 0 && !aDead;
      const tenant = w % 4 >= 2;
      return clients[(onA ? 'A' : 'B') + (tenant ? 't' : '')];
    };
    load = f.startLoad({
      writers: 8,
      target,
      make: (w, n) => {
        const tag = `w${w}-${n}`;
        if (n % 3 === 2) {
          return Array.from({ length: 1 + ((n + w) % 20) }, (_, j) => ({
            type: j % 2 ? 'ro.odd' : 'ro.even', stream: j % 3 === 0 ? 'ro.side' : undefined, data: { tag: `${tag}-${j}` },
          }));
        }
        return [{ ...(n % 2 ? { id: `id-${tag}` } : {}), type: 'ro.one', data: { tag } }];
      },
    });
    const noFailures = (what) => assert.deepEqual(load.failed.map((x) => `${x.tags[0]}: ${x.status} ${x.text}`), [], `every publish answered 201 (${what})`);
    const entriesNow = () => withRedis(url, async (r) => {
      let n = 0;
      for (const k of await r.keys(prefix + '*')) if ((await r.type(k)) === 'stream') n += await r.xlen(k);
      return n;
    });

    await f.waitAcked(load, 400, { what: 'load before the outages' });
    await h.waitFor(async () => (await entriesNow()) >= 200, { timeout: CATCH_UP_MS, what: 'the relay to write 200 entries' });

    // ---- 1. frozen
    const pid = redisPid();
    process.kill(pid, 'SIGSTOP');
    frozenPid = pid;
    let acked = load.acked.size;
    await h.sleep(4000);
    assert.ok(load.acked.size > acked + 50, `publishing went on while Redis was frozen (${load.acked.size - acked} events)`);
    thaw();
    await f.waitAcked(load, 300, { what: 'load after Redis resumed' });
    noFailures('Redis frozen and resumed');

    // ---- 2. stopped, with its data; the relay leader killed while it is down
    await withRedis(url, async (r) => {
      await r.shutdown('SAVE').catch(() => { /* the connection ends with the server */ });
    }).catch(() => {});
    await h.waitFor(() => !alive(pid), { timeout: 30000, what: 'Redis to exit after SHUTDOWN SAVE' });
    acked = load.acked.size;
    await h.sleep(1500);
    aDead = true; // A's writers move to B
    await A.kill9();
    await h.sleep(1500);
    assert.ok(load.acked.size > acked + 50, `publishing went on while Redis was down (${load.acked.size - acked} events)`);
    await services('start');
    await f.waitAcked(load, 300, { what: 'load after Redis came back' });
    await load.stop();
    // A's writers may have lost a request to the kill (no answer); nothing else may fail.
    noFailures('to the end');
    assert.ok(load.lost.every((x) => Number(x.tags[0].slice(1).split('-')[0]) % 2 === 0), `only requests to A went unanswered: ${JSON.stringify(load.lost).slice(0, 400)}`);
    await h.waitFor(async () => (await info(B)).relay_leader === true, { timeout: 30000, what: 'B to lead the relay' });

    // ---- Redis against PostgreSQL
    const rows = f.storedRows(db.url);
    const N = rows.length;
    f.assertStoreSane(rows);
    for (const [tag, ack] of load.acked) assert.equal(rows[ack.position - 1]?.tag, tag, `${tag} stored at ${ack.position}`);
    const groups = new Map(); // Redis key → stored rows, in position order
    for (const r of rows) {
      const k = r.tenant === 'default' ? `${prefix}${r.stream}` : `${prefix}${r.tenant}:${r.stream}`;
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(r);
    }
    assert.equal(groups.size, 4, `two tenants × two streams: ${[...groups.keys()]}`);
    await withRedis(url, async (r) => {
      for (const [k, want] of groups) {
        const last = want[want.length - 1].position;
        await h.waitFor(async () => {
          const top = await r.xrevrange(k, '+', '-', 'COUNT', 1);
          return top.length > 0 && Number(top[0][0].split('-')[0]) >= last;
        }, { timeout: CATCH_UP_MS, interval: 100, what: `${k} to reach position ${last}` });
      }
      await h.sleep(300);
      let total = 0;
      for (const [k, want] of groups) {
        const entries = await xrangeAll(r, k);
        total += entries.length;
        for (const e of entries) {
          assert.match(e.id, /^\d+-0$/, `${k}: entry id ${e.id}`);
          const p = Number(e.id.split('-')[0]);
          assert.equal(e.fields.position, String(p), `${k} ${e.id}: position field`);
          assert.equal(e.fields.id, rows[p - 1]?.id, `${k} ${e.id}: the event stored at ${p}`);
          assert.equal(JSON.parse(e.fields.event).position, p, `${k} ${e.id}: event.position`);
        }
        f.assertExactly(entries.map((e) => Number(e.id.split('-')[0])), want.map((x) => x.position), `Redis ${k} against SELECT position FROM events`);
      }
      assert.equal(total, N, 'Redis holds as many entries as PostgreSQL holds events');
      // nothing else under the prefix is a stream
      for (const k of await r.keys(prefix + '*')) if ((await r.type(k)) === 'stream') assert.ok(groups.has(k), `unexpected stream ${k}`);
    });
    await h.waitFor(async () => (await info(B)).relay_lag === 0, { timeout: CATCH_UP_MS, what: 'relay_lag 0 on B' });

    t.diagnostic(`${N} events stored (${load.acked.size} acknowledged, ${load.lost.length} requests lost to the kill of A) in ${groups.size} streams`);
    const relayLog = (s) => s.logJson().filter((j) => j.component === 'relay' || /relay|redis/i.test(j.msg || '')).map((j) => j.msg);
    t.diagnostic(`relay log: A ${JSON.stringify(relayLog(A))}; B ${JSON.stringify(relayLog(B))}`);
    await B.stop();
  } finally {
    thaw();
    if (load) await load.stop();
    for (const x of handles) await x.cleanup();
    db.drop();
  }
});
