'use strict';
// Issue 2: PostgreSQL stopped → publish answers 503 store_unavailable + Retry-After within a
// bounded time (never a hang); when PostgreSQL returns, publishing works again without
// restarting sluice. Uses a second, private PostgreSQL from scripts/services.sh.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const h = require('./lib/harness');
const svc = require('./lib/services');

const SCRIPT = path.join(h.REPO, 'scripts', 'services.sh');
const BOUND_MS = 10000; // "within a few seconds": a bound proving no hang, not a benchmark

const runDir = fs.mkdtempSync(path.join(h.TMP, 'pg-outage-'));
let pgStarted = false;
let sluice = null;

function services(cmd) { return svc.services(runDir, cmd, 'pg'); }

function readEnvFile() {
  const vars = svc.readEnvFile(runDir);
  assert.ok(vars.SLUICE_DATABASE_URL, `SLUICE_DATABASE_URL in ${runDir}/env`);
  return vars;
}

after(async () => {
  if (sluice) await sluice.cleanup();
  if (pgStarted) {
    // `clean` stops it and removes its data; if the script fails, stop our server by its data dir
    await services('clean').catch((e) => {
      console.error(String(e));
      try {
        const v = readEnvFile();
        const args = [`${v.SLUICE_PG_BIN}/pg_ctl`, '-D', v.SLUICE_PG_DATA, '-m', 'immediate', '-w', 'stop'];
        if (process.getuid() === 0) execFileSync('runuser', ['-u', 'postgres', '--', ...args], { stdio: 'ignore', timeout: 60000, cwd: '/' });
        else execFileSync(args[0], args.slice(1), { stdio: 'ignore', timeout: 60000 });
      } catch (_) { /* nothing more to do */ }
    });
  }
  fs.rmSync(runDir, { recursive: true, force: true });
});

async function timed(promise) {
  const t0 = Date.now();
  const r = await promise;
  return [r, Date.now() - t0];
}

test('PostgreSQL stopped → 503 store_unavailable quickly; back → publishing works without a restart', { timeout: 600000 }, async () => {
  assert.ok(fs.existsSync(SCRIPT), `${SCRIPT} exists`);
  await services('start');
  pgStarted = true;
  const pgEnv = readEnvFile();
  const db = await h.freshDatabase(pgEnv.SLUICE_DATABASE_URL);
  sluice = await h.startSluice({ name: 'outage', dbUrl: db.url });
  const c = sluice.client();

  const before = [];
  for (let i = 0; i < 5; i++) {
    const r = await c.publish({ type: 'outage.before', data: { i }, key: 'k' });
    before.push(h.assertStatus(r, 201));
  }
  h.assertStatus(await c.get('/ready', { token: null }), 200);

  await services('stop');

  // the first publish after the stop answers 503 within the bound
  const [r1, ms1] = await timed(c.publish({ id: 'during-0', type: 'outage.during', data: {} }, { timeout: BOUND_MS + 5000 }));
  h.assertProblem(r1, 503, 'store_unavailable');
  assert.ok(ms1 < BOUND_MS, `503 after ${ms1} ms, bound ${BOUND_MS} ms`);
  assert.match(r1.headers.get('retry-after') || '', /^\d+$/, 'Retry-After in seconds');

  // many at once, single and batch and keyed: all 503 within the bound, none hangs
  const t0 = Date.now();
  const many = await Promise.all(Array.from({ length: 12 }, (_, i) => {
    if (i % 3 === 0) return c.publish([{ id: `during-b${i}-0`, type: 'outage.during', data: {} }, { id: `during-b${i}-1`, type: 'outage.during', data: {} }], { timeout: BOUND_MS + 5000 });
    if (i % 3 === 1) return c.publish({ id: `during-${i}`, type: 'outage.during', data: {}, key: 'k', expected_version: 5 }, { timeout: BOUND_MS + 5000 });
    return c.publish({ id: `during-${i}`, type: 'outage.during', data: {} }, { timeout: BOUND_MS + 5000 });
  }));
  for (const r of many) {
    h.assertProblem(r, 503, 'store_unavailable');
    assert.ok(r.headers.get('retry-after'), 'Retry-After');
  }
  assert.ok(Date.now() - t0 < BOUND_MS, `12 concurrent publishes answered within ${BOUND_MS} ms`);

  // the HTTP server itself is not blocked; readiness reports the outage
  const [health, hms] = await timed(c.get('/health', { token: null, timeout: BOUND_MS }));
  h.assertStatus(health, 200);
  assert.ok(hms < BOUND_MS);
  const [ready, rms] = await timed(c.get('/ready', { token: null, timeout: BOUND_MS + 5000 }));
  assert.equal(ready.status, 503, `/ready during the outage: ${h.describeRes(ready)}`);
  assert.ok(rms < BOUND_MS);
  const [read, readMs] = await timed(c.get('/v1/events/' + before[0].id, { timeout: BOUND_MS + 5000 }));
  assert.equal(read.status, 503, `a read during the outage: ${h.describeRes(read)}`);
  assert.match(read.contentType, /^application\/problem\+json/);
  assert.ok(readMs < BOUND_MS);

  const restartLog = await services('start');
  const pgEnv2 = readEnvFile();
  assert.equal(pgEnv2.SLUICE_DATABASE_URL, pgEnv.SLUICE_DATABASE_URL,
    `PostgreSQL came back at the same address (scripts/services.sh start pg said: ${restartLog.trim()})`);

  // publishing comes back by itself; until then only 503s
  let back;
  await h.waitFor(async () => {
    const r = await c.publish({ type: 'outage.after', data: { probe: true } }, { timeout: BOUND_MS + 5000 });
    if (r.status === 201) { back = r; return true; }
    h.assertProblem(r, 503, 'store_unavailable');
    return false;
  }, { timeout: 60000, interval: 250, what: 'publishing to work again after PostgreSQL restarted' });
  assert.ok(back.body.position > before[before.length - 1].position);

  // the keyed stream continues where it was; history is intact; no gaps were created
  const k = await c.publish({ type: 'outage.after', data: {}, key: 'k', expected_version: 5 });
  assert.equal(h.assertStatus(k, 201).version, 6);
  // reads come back too (within a bound), and then stay back: 10 reads in a row succeed
  await h.waitFor(async () => (await c.get('/v1/events/' + before[0].id)).status === 200,
    { timeout: 30000, interval: 100, what: 'reads to work again after PostgreSQL restarted' });
  await h.waitFor(async () => {
    for (let i = 0; i < 10; i++) if ((await c.get('/v1/events/' + before[0].id)).status !== 200) return false;
    return true;
  }, { timeout: 30000, interval: 100, what: '10 successful reads in a row after PostgreSQL restarted' });
  for (const b of before) assert.equal(h.assertStatus(await c.get('/v1/events/' + b.id), 200).position, b.position);
  const { events } = await h.readAllPages(c, {}, { limit: 1000 });
  for (let i = 1; i < events.length; i++) assert.equal(events[i].position, events[i - 1].position + 1, 'no gaps');
  await h.waitFor(async () => (await c.get('/ready', { token: null })).status === 200, { timeout: 30000, what: '/ready 200 again' });

  // the ids that got 503 can be re-sent: stored now (201), or already stored (200), never a conflict
  for (const id of ['during-0', 'during-2']) {
    const r = await c.publish({ id, type: 'outage.during', data: {} });
    assert.ok(r.status === 201 || r.status === 200, `${id}: ${h.describeRes(r)}`);
  }

  await sluice.stop(); // SIGTERM → exit 0
  sluice = null;
  db.drop();
});
