'use strict';
// The unknown commit outcome: the network between Sluice and PostgreSQL is cut while
// commits are in flight, several times, at random moments, under a publish load in which
// every event carries a client id. A cut after COMMIT was sent leaves Sluice not knowing
// whether the batch committed; it must find out (reconnect, look the ids up) before it
// answers: 201 if it committed, 503 only if it did not. A stored event must never be
// answered 503 — a client that believes a 503 and gives up (or publishes the same fact
// under another id) would act on a falsehood.
//
// The partition is the one of partition.test.js: a private PostgreSQL in a network
// namespace, reached across a veth pair (HTTP stays on loopback). Three kinds of cut (see
// CUT_PLAN): the link down (frames vanish: no reset, no refusal), PostgreSQL's answers
// dropped (a COMMIT in flight commits, its answer is lost), and an aimed one in which the
// COMMIT is lost on the way and reaches the abandoned session only after Sluice has
// reconnected and asked. Each cut outlasts Sluice's store deadline
// (SLUICE_STORE_TIMEOUT_MS). During the others two more clients publish too (the load's
// writers may all be held by requests in flight). A statement trigger in the test's
// database makes every INSERT into events slower, so that a cut at a random moment almost
// always catches a COMMIT in flight rather than the lookups before it.
//
// Asserted, with the network back, by SQL on the events table:
//   - every answer is 201, 200 (an idempotent repeat) or 503 store_unavailable with
//     Retry-After, and none is missing (a generous bound: a request in flight at a cut may
//     be held until the outcome is known; partition.test.js checks 503 latency);
//   - every id answered 201/200 is stored exactly once, at the position its answer named,
//     with its own data;
//   - no id answered 503 is stored;
//   - positions run 1 … N with no hole;
//   - publishing each 503'd request again, with the same ids, answers 201 (200 if it had
//     been stored after all) and leaves it stored exactly once.
// Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for the namespace; skipped with the reason
// otherwise. The namespace, veth and PostgreSQL are removed at the end whatever happened.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFile, execFileSync, spawn } = require('node:child_process');
const h = require('./lib/harness');
const f = require('./lib/flow');
const { deletePrefix } = require('../lib/redis.js');

const SCRIPT = path.join(h.REPO, 'scripts', 'services.sh');
const STORE_TIMEOUT_MS = 3000;   // SLUICE_STORE_TIMEOUT_MS
// The cuts, in order: `both` takes the namespace's end of the veth down (nothing passes);
// `replies` drops only what PostgreSQL sends (a pfifo of length 0 on the namespace's end):
// a COMMIT sent reaches the server and commits, its answer never comes back — the purest
// unknown outcome. Lengths (ms) below and above the 10 s TCP user timeout of Sluice's
// sockets.
// `late` is aimed, not random: the test holds the event log's advisory lock (from inside
// the namespace) until the appender waits on it, drops everything the host sends (a pfifo
// of length 0 on the host's end) and lets the lock go: the lookups' answer comes back, the
// pipeline with INSERT and COMMIT that follows is lost — not yet executed, still in the
// kernel's send queue of a connection Sluice then abandons. Past Sluice's deadline only
// small packets pass (a tbf whose bucket is smaller than a full segment): Sluice reconnects
// and asks whether the batch committed — it has not, yet. Then everything passes, and the
// kernel retransmits the pipeline to the abandoned session, which still holds the lock and
// its open transaction: it commits. A Sluice that answered 503 on the strength of its
// lookup has answered 503 for a stored event. (Before it asks, Sluice must make sure the
// abandoned session can no longer commit: end it, or wait for the lock it holds.)
const CUT_PLAN = [
  { kind: 'both', ms: 4500 }, { kind: 'replies', ms: 5000 }, { kind: 'late' },
  { kind: 'both', ms: 12000 }, { kind: 'replies', ms: 12000 }, { kind: 'late' },
  { kind: 'both', ms: 6000 }, { kind: 'replies', ms: 4000 },
];
const EVENT_LOG_LOCK = '7341263002'; // server/locks.h LOCK_EVENT_LOG
const CUTS = CUT_PLAN.length;
const SLOW_INSERT_MS = 25;
const RECOVER_MS = 90000;        // server keepalives end abandoned sessions in ~25 s
const WRITERS = 8;
const SEED = Number(process.env.SLUICE_IT_SEED || Date.now() % 1000000);

function prng(seed) { // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------- names and addresses

const pid = process.pid;
const NS = `sluice-co-${pid}`;
const HOST_IF = `slc${pid}h`; // at most 15 characters
const NS_IF = `slc${pid}n`;
// A /30 in 10.150.0.0–10.199.255.255 (partition.test.js uses 10.200–10.249): .1 host, .2 namespace.
const net24 = `10.${150 + ((pid >> 14) % 50)}.${(pid >> 6) & 255}`;
const HOST_ADDR = `${net24}.${((pid & 63) << 2) + 1}`;
const NS_ADDR = `${net24}.${((pid & 63) << 2) + 2}`;

function ip(...args) {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
}
function ipQuiet(...args) {
  try { ip(...args); return true; } catch (_) { return false; }
}
function tc(...args) { // on the host's side (the namespace's: ip netns exec NS tc …)
  return execFileSync('tc', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
}

function missingPrivilege() {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  const eff = m ? BigInt('0x' + m[1]) : 0n;
  if ((eff & (1n << 12n)) && (eff & (1n << 21n))) return null;
  return `creating a network namespace needs CAP_NET_ADMIN and CAP_SYS_ADMIN (root); this process (uid ${
    process.getuid()}) has CapEff ${m ? m[1] : '?'}`;
}

// Namespaces of earlier runs of this file that were killed before their cleanup ran.
function sweepStale() {
  let list = '';
  try { list = ip('netns', 'list'); } catch (_) { return; }
  for (const line of list.split('\n')) {
    const m = /^sluice-co-(\d+)\b/.exec(line.trim());
    if (!m || Number(m[1]) === pid) continue;
    try { process.kill(Number(m[1]), 0); continue; } catch (e) { if (e.code !== 'ESRCH') continue; }
    const name = `sluice-co-${m[1]}`;
    let pids = '';
    try { pids = ip('netns', 'pids', name); } catch (_) { /* none */ }
    for (const p of pids.split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(p), 'SIGKILL'); } catch (_) { /* gone */ }
    }
    ipQuiet('netns', 'del', name);
    ipQuiet('link', 'del', `slc${m[1]}h`);
  }
}

// ---------------------------------------------------------------- PostgreSQL in the namespace

const runDir = fs.mkdtempSync(path.join(h.TMP, 'pg-commit-outcome-'));
let nsCreated = false;
let pgStarted = false;
let sluice = null;
let db = null;
let prefix = null;
let lockHolder = null; // the psql session (in the namespace) holding the event log's lock

function pgEnv() {
  const vars = {};
  const file = path.join(runDir, 'env');
  if (!fs.existsSync(file)) return vars;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) vars[m[1]] = m[2].trim().replace(/^'(.*)'$/, '$1');
  }
  return vars;
}

function services(cmd) {
  const env = { ...process.env, SLUICE_RUN_DIR: runDir };
  for (const k of Object.keys(env)) {
    if (k === 'SLUICE_DATABASE_URL' || k.startsWith('SLUICE_PG_') || k.startsWith('SLUICE_REDIS_')) delete env[k];
  }
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', NS, 'bash', SCRIPT, cmd, 'pg'], { env, timeout: 300000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`scripts/services.sh ${cmd} pg (in ${NS}) failed (${err.code}): ${stdout}\n${stderr}`));
        else resolve(stdout + stderr);
      });
  });
}

function stopPgSync() {
  const v = pgEnv();
  if (!v.SLUICE_PG_BIN || !v.SLUICE_PG_DATA) return;
  const args = [`${v.SLUICE_PG_BIN}/pg_ctl`, '-D', v.SLUICE_PG_DATA, '-m', 'immediate', '-w', '-t', '30', 'stop'];
  try {
    if (process.getuid() === 0) execFileSync('runuser', ['-u', 'postgres', '--', ...args], { stdio: 'ignore', timeout: 60000, cwd: '/' });
    else execFileSync(args[0], args.slice(1), { stdio: 'ignore', timeout: 60000 });
  } catch (_) { /* not running */ }
}

function removeNetworkSync() {
  if (!nsCreated) return;
  ipQuiet('netns', 'del', NS);
  ipQuiet('link', 'del', HOST_IF);
  nsCreated = false;
}

process.on('exit', () => {
  if (lockHolder) { try { lockHolder.kill('SIGKILL'); } catch (_) { /* gone */ } }
  if (pgStarted) stopPgSync();
  removeNetworkSync();
});

after(async () => {
  if (sluice) await sluice.cleanup();
  if (lockHolder) { try { lockHolder.kill('SIGKILL'); } catch (_) { /* gone */ } }
  if (nsCreated) {
    ipQuiet('-n', NS, 'link', 'set', NS_IF, 'up');
    ipQuiet('netns', 'exec', NS, 'tc', 'qdisc', 'del', 'dev', NS_IF, 'root');
    try { tc('qdisc', 'del', 'dev', HOST_IF, 'root'); } catch (_) { /* none */ }
  }
  if (db) { try { db.drop(); } catch (e) { console.error(`drop ${db.name}: ${e.message}`); } }
  if (prefix && process.env.SLUICE_REDIS_URL) await deletePrefix(process.env.SLUICE_REDIS_URL, prefix);
  if (pgStarted) {
    await services('clean').catch((e) => { console.error(String(e)); stopPgSync(); });
    pgStarted = false;
  }
  removeNetworkSync();
  fs.rmSync(runDir, { recursive: true, force: true });
});

// psql inside the namespace (PostgreSQL's loopback there: never cut).
function nsPsql(url, sql) {
  return execFileSync('ip', ['netns', 'exec', NS, 'psql', url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 }).trim();
}

// A psql session inside the namespace that takes the event log's advisory lock and lets it
// go on release(). Resolves once the lock is held.
async function holdEventLog(url) {
  const p = spawn('ip', ['netns', 'exec', NS, 'psql', url, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1'], { stdio: ['pipe', 'pipe', 'pipe'] });
  lockHolder = p;
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => p.on('exit', r));
  const saw = (word) => h.waitFor(() => out.includes(word), { timeout: 15000, interval: 5, what: `psql to print ${word} (stderr: ${err})` });
  p.stdin.write(`SELECT 'locked' FROM (SELECT pg_advisory_lock(${EVENT_LOG_LOCK})) x;\n`);
  await saw('locked');
  return {
    async release() {
      p.stdin.write(`SELECT 'released' FROM (SELECT pg_advisory_unlock(${EVENT_LOG_LOCK})) x;\n`);
      await saw('released');
      p.stdin.end('\\q\n');
      await h.race(exited, 10000, null);
      lockHolder = null;
    },
  };
}

// Cuts the network the way `kind` says (`both`, `replies`); returns the heal.
function cut(kind) {
  if (kind === 'both') {
    ip('-n', NS, 'link', 'set', NS_IF, 'down');
    return () => ip('-n', NS, 'link', 'set', NS_IF, 'up');
  }
  assert.equal(kind, 'replies');
  ip('netns', 'exec', NS, 'tc', 'qdisc', 'add', 'dev', NS_IF, 'root', 'pfifo', 'limit', '0');
  return () => ip('netns', 'exec', NS, 'tc', 'qdisc', 'del', 'dev', NS_IF, 'root');
}

// ---------------------------------------------------------------- the test

const reason = missingPrivilege();

test(`network cut while commits are in flight, ${CUTS} times: no id answered 503 is stored, every 201 stored once, 503s retried store once (seed ${SEED})`,
  { skip: reason || false, timeout: 600000 }, async (t) => {
    const rnd = prng(SEED);
    sweepStale();
    try {
      ip('netns', 'add', NS);
    } catch (e) {
      if (e.code === 'ENOENT') throw new Error('`ip` (iproute2) not found: scripts/install-deps.sh installs it');
      const why = String(e.stderr || e.message).trim();
      if (/not permitted|permission denied/i.test(why)) { t.skip(`ip netns add refused: ${why}`); return; }
      throw new Error(`ip netns add ${NS} failed: ${why}`);
    }
    nsCreated = true;
    ip('link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', NS_IF, 'netns', NS);
    ip('addr', 'add', `${HOST_ADDR}/30`, 'dev', HOST_IF);
    ip('link', 'set', HOST_IF, 'up');
    ip('-n', NS, 'addr', 'add', `${NS_ADDR}/30`, 'dev', NS_IF);
    ip('-n', NS, 'link', 'set', NS_IF, 'up');
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    // Frames to the namespace's end vanish while it is down (no neighbour resolution failure).
    const mac = /link\/ether\s+([0-9a-f:]+)/.exec(ip('-n', NS, 'link', 'show', NS_IF))[1];
    ip('neigh', 'replace', NS_ADDR, 'lladdr', mac, 'dev', HOST_IF, 'nud', 'permanent');

    await services('start');
    pgStarted = true;
    let v = pgEnv();
    assert.ok(v.SLUICE_PG_DATA && v.SLUICE_PG_PORT, `services.sh wrote ${runDir}/env: ${JSON.stringify(v)}`);
    fs.appendFileSync(path.join(v.SLUICE_PG_DATA, 'postgresql.conf'),
      `# commit_outcome.test.js: reachable across the veth; commit times for the diagnostics\n` +
      `listen_addresses = '127.0.0.1,${NS_ADDR}'\ntrack_commit_timestamp = on\n`);
    fs.appendFileSync(path.join(v.SLUICE_PG_DATA, 'pg_hba.conf'), `host all all ${HOST_ADDR}/32 trust\n`);
    await services('stop');
    await services('start');
    v = pgEnv();
    db = await h.freshDatabase(`postgresql://sluice@${NS_ADDR}:${v.SLUICE_PG_PORT}/sluice`);
    prefix = `itco${h.rand(4)}:`;
    sluice = await h.startSluice({
      name: 'commit-outcome', dbUrl: db.url,
      env: { SLUICE_REDIS_PREFIX: prefix, SLUICE_STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS) },
    });
    const c = sluice.client();
    // Widen the window the test is about: every INSERT into events takes SLOW_INSERT_MS more
    // (a statement trigger, in this test's own database), so at a random cut the round trip
    // in flight is far more likely the one carrying COMMIT than the lookups before it.
    // (Not for the `late` cuts: a slow INSERT there would let Sluice's cancel of the
    // abandoned query win the race the cut is about.)
    h.psql(db.url, `CREATE TABLE commit_outcome_knob (sleep_ms int NOT NULL);
                    INSERT INTO commit_outcome_knob VALUES (${SLOW_INSERT_MS});
                    CREATE FUNCTION commit_outcome_slow() RETURNS trigger LANGUAGE plpgsql AS
                      $$ BEGIN PERFORM pg_sleep((SELECT sleep_ms FROM commit_outcome_knob) / 1000.0); RETURN NULL; END $$;
                    CREATE TRIGGER commit_outcome_slow AFTER INSERT ON events
                      FOR EACH STATEMENT EXECUTE FUNCTION commit_outcome_slow();`);
    const slowInserts = (ms) => h.psql(db.url, `UPDATE commit_outcome_knob SET sleep_ms = ${ms}`);
    const nsUrl = `postgresql://sluice@127.0.0.1:${v.SLUICE_PG_PORT}/${db.name}`;

    // The load: every event has a client id and a tag (the same string) in its data.
    // Singles, batches of 2–20, keyed batches (the key's versions are decided under the lock).
    const bad = []; // answers that are neither 201/200 nor a proper 503
    const spans = []; // [sentAt, answeredAt] of every answered request
    const publishers = (label, writers) => f.startLoad({
      writers,
      target: () => c,
      // A request in flight at a cut may be held until Sluice knows whether it committed
      // (after the heal, and after the abandoned session ended): bounded, generously.
      timeout: RECOVER_MS,
      pauseMs: label === 'co' ? 100 : 500, // a client honouring Retry-After, briefly
      make: (w, n) => {
        const base = `${label}-w${w}-${n}`;
        const kind = (w + n) % 3;
        const size = kind === 0 ? 1 : 2 + ((n * 5 + w) % 19);
        return Array.from({ length: size }, (_, j) => {
          const id = size === 1 ? base : `${base}-${j}`;
          return { id, type: kind === 2 ? 'co.keyed' : 'co.event', ...(kind === 2 ? { key: `${label}${w}` } : {}), data: { tag: id, pad: 'x'.repeat(1500) } };
        });
      },
      onAnswer: ({ envs, r, sentAt, answeredAt }) => {
        spans.push([sentAt, answeredAt]);
        if (r.status === 201 || r.status === 200) return;
        // The outcome could not be learned within the store timeout: said so, never a 503.
        if (r.status === 500 && /could not be learned/.test(r.text)) return;
        try {
          h.assertProblem(r, 503, 'store_unavailable');
          assert.match(r.headers.get('retry-after') || '', /^\d+$/, 'Retry-After in seconds');
        } catch (e) {
          bad.push(`${envs[0].id}: ${e.message.split('\n')[0]}`);
        }
      },
    });
    const load = publishers('co', WRITERS);
    // While the network is cut, a couple of clients more publish (the load's writers may all
    // be held by requests in flight): answered 503 fast, or held until the outcome is known.
    const probes = [];

    const cuts = [];
    try {
      await f.waitAcked(load, 400, { timeout: 120000, what: 'load before the first cut' });
      for (let i = 0; i < CUTS; i++) {
        await h.sleep(200 + Math.floor(rnd() * 1300));
        const failedBefore = load.failed.length;
        const { kind, ms } = CUT_PLAN[i];
        let tCut;
        let probe = null;
        if (kind === 'late') {
          slowInserts(0);
          const holder = await holdEventLog(nsUrl);
          await h.waitFor(() => Number(nsPsql(nsUrl, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")) > 0,
            { timeout: 10000, interval: 5, what: `the appender to wait on the event log's lock (${EVENT_LOG_LOCK}, server/locks.h)` });
          tc('qdisc', 'add', 'dev', HOST_IF, 'root', 'pfifo', 'limit', '0'); // nothing reaches PostgreSQL
          tCut = Date.now();
          await holder.release(); // the lookups' answer comes back; the COMMIT after it is lost
          await h.sleep(STORE_TIMEOUT_MS + 300);
          // Small packets only: Sluice can reconnect and ask (and a fixed Sluice can end the
          // abandoned session); the lost pipeline (INSERT with 1.5 kB per event) stays lost.
          tc('qdisc', 'replace', 'dev', HOST_IF, 'root', 'tbf', 'rate', '100mbit', 'burst', '1200', 'limit', '100000');
          const tSmall = Date.now();
          await h.waitFor(() => load.failed.some((x) => x.sentAt < tCut && x.answeredAt >= tSmall), { timeout: 3500, interval: 20 })
            .catch(() => { /* answered at the deadline already (or held): heal anyway */ });
          tc('qdisc', 'del', 'dev', HOST_IF, 'root'); // now the kernel's retransmission gets through
        } else {
          const heal = cut(kind);
          tCut = Date.now();
          // (past the store deadline: the appender knows by then that the connection is gone)
          const probeAt = Math.min(STORE_TIMEOUT_MS + 500, ms - 500);
          await h.sleep(probeAt);
          probe = publishers(`probe${i + 1}`, 2);
          probes.push(probe);
          await h.sleep(ms - probeAt);
          heal();
        }
        const tHeal = Date.now();
        if (probe) await probe.stop();
        // Back: a publish sent after the heal answered 201, then a stretch of load.
        await h.waitFor(() => load.lastAckSentAt > tHeal,
          { timeout: RECOVER_MS, interval: 100, what: `a 201 after heal ${i + 1}` });
        const tBack = Date.now();
        await f.waitAcked(load, 150, { timeout: RECOVER_MS, what: `load after heal ${i + 1}` });
        if (kind === 'late') slowInserts(SLOW_INSERT_MS);
        cuts.push({ tCut, tHeal, i, kind, cutMs: tHeal - tCut, recoverMs: tBack - tHeal,
          r503: load.failed.length - failedBefore, ...(probe ? { probes503: probe.failed.length, probes201: probe.acked.size } : {}) });
      }
    } finally {
      await load.stop();
      for (const p of probes) await p.stop();
    }
    h.psql(db.url, 'DROP TRIGGER commit_outcome_slow ON events; DROP TABLE commit_outcome_knob'); // the cuts are over
    t.diagnostic(`cuts: ${JSON.stringify(cuts.map(({ tCut, tHeal, ...k }) => k))}`);
    // Every request of the load and of the probes, together.
    const all = {
      acked: new Map([load, ...probes].flatMap((x) => [...x.acked])),
      failed: [load, ...probes].flatMap((x) => x.failed),
      lost: [load, ...probes].flatMap((x) => x.lost),
    };
    assert.deepEqual(bad, [], 'every answer is a 201/200, a 503 store_unavailable with Retry-After, or a 500 saying the outcome is unknown');
    assert.deepEqual(all.lost.map((x) => `${x.ids[0]}: ${x.error}`), [], 'every publish was answered');
    // The cuts caught requests in flight (sent before, answered after): else the unknown
    // outcome was never at stake and this test proved nothing.
    const spanning = cuts.map((k) => spans.filter(([s0, s1]) => s0 < k.tCut && s1 > k.tCut).length);
    assert.ok(spanning.some((n) => n > 0), `a request was in flight at some cut: ${JSON.stringify(spanning)}`);
    const waited = all.failed.filter((x) => x.answeredAt - x.sentAt >= STORE_TIMEOUT_MS - 500);
    t.diagnostic(`${all.acked.size} events acknowledged; requests in flight at each cut ${JSON.stringify(spanning)}; ${
      all.failed.length} requests answered 503, ${waited.length} of them after waiting on the store`);

    // ---- what is stored, by SQL
    const rows = () => f.storedRows(db.url);
    let stored = rows();
    f.assertStoreSane(stored);
    const byId = new Map();
    for (const r of stored) {
      assert.ok(!byId.has(r.id), `${r.id} stored twice`);
      assert.equal(r.tag, r.id, `the event stored as ${r.id} carries its own data`);
      byId.set(r.id, r);
    }
    const ackFailures = [];
    for (const [tag, ack] of all.acked) {
      const r = byId.get(tag);
      if (!r) ackFailures.push(`${tag} answered ${ack.status} at ${ack.position}, not stored`);
      else if (r.position !== ack.position) ackFailures.push(`${tag} answered ${ack.status} at ${ack.position}, stored at ${r.position}`);
    }
    assert.deepEqual(ackFailures, [], 'every id answered 201/200 is stored where its answer said');
    // The heart of it: a 503 means "not stored".
    // A 500 whose detail says the outcome could not be learned in time is honest either way
    // (it may or may not be stored); every other failure must mean "not stored".
    const unknown = (x) => x.status === 500 && x.code === 'internal' && /could not be learned/.test(x.text);
    const unknownIds = all.failed.filter(unknown).flatMap((x) => x.ids);
    all.failed = all.failed.filter((x) => !unknown(x));
    const failedIds = all.failed.flatMap((x) => x.ids);
    const storedBut503 = failedIds.filter((id) => byId.has(id));
    // Each such request, with when it was committed (PostgreSQL's commit timestamp) relative
    // to the cut and the heal: at the cut (the answer was lost) or after the heal (what the
    // kernel retransmitted of the abandoned connection arrived and was executed).
    const lies = all.failed.filter((x) => x.ids.some((id) => byId.has(id))).map((x) => {
      const id = x.ids.find((i) => byId.has(i));
      const cut = cuts.find((k) => k.tCut <= x.answeredAt && x.sentAt <= k.tHeal) || cuts.find((k) => x.sentAt <= k.tHeal);
      let when = '';
      try {
        const ct = Math.round(Number(h.psql(db.url, `SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000 FROM events WHERE id = '${id}'`)));
        if (cut && ct) when = `; committed ${ct - cut.tCut} ms after cut ${cut.i + 1} (${cut.kind}, healed at ${cut.tHeal - cut.tCut} ms), answered 503 at ${x.answeredAt - cut.tCut} ms`;
      } catch (_) { /* no commit timestamp: the diagnostic is only shorter */ }
      return `${x.ids[0]}${x.ids.length > 1 ? ` (+${x.ids.length - 1})` : ''} stored at ${byId.get(id).position}, 503 after ${x.answeredAt - x.sentAt} ms${when}`;
    });
    t.diagnostic(`${storedBut503.length} events in ${lies.length} requests answered 503 are stored`);
    // (asserted at the end, so that the retries below are checked whatever happened here)

    // ---- retry every 503'd request with the same ids: stored once
    // (eight at a time, as the writers were; each request once)
    const retryAnswers = {};
    const queue = [...all.failed];
    await Promise.all(Array.from({ length: WRITERS }, async () => {
      for (let x = queue.shift(); x; x = queue.shift()) {
        const r = await c.publish(x.envs.length === 1 ? x.envs[0] : x.envs, { timeout: RECOVER_MS });
        retryAnswers[r.status] = (retryAnswers[r.status] || 0) + 1;
        assert.ok(r.status === 201 || r.status === 200, `retry of ${x.ids[0]}: ${h.describeRes(r)}`);
        const acks = x.envs.length === 1 ? [r.body] : r.body.events;
        acks.forEach((a, j) => assert.equal(a.id, x.ids[j], `retry of ${x.ids[0]}: the answer names the id sent`));
      }
    }));
    t.diagnostic(`retries of the 503'd requests answered ${JSON.stringify(retryAnswers)}`);
    stored = rows();
    f.assertStoreSane(stored);
    const afterRetry = new Map();
    for (const r of stored) {
      assert.ok(!afterRetry.has(r.id), `${r.id} stored twice after the retries`);
      afterRetry.set(r.id, r);
    }
    for (const id of [...all.acked.keys(), ...failedIds]) assert.ok(afterRetry.has(id), `${id} is stored after the retries`);
    const unknownStored = unknownIds.filter((id) => afterRetry.has(id)).length;
    assert.equal(stored.length, all.acked.size + failedIds.length + unknownStored,
      'nothing is stored but what was acknowledged, retried, or answered "outcome unknown"');
    assert.deepEqual(lies, [], 'no request answered 503 was stored (stored events answered 503)');

    await sluice.stop();
    sluice = null;
  });
