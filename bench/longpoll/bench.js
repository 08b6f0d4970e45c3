'use strict';
// bench/longpoll/bench.js — the long-poll cost benchmark's driver (run by bench/longpoll/run.sh,
// which starts the servers and sluice and passes them in the environment: BENCH_URL,
// BENCH_TOKEN (a read key of tenant `poller`), BENCH_PID (sluice), BENCH_PG_PID (the
// postmaster), BENCH_DB and BENCH_DB_URL (sluice's database), BENCH_POLLS, BENCH_SECONDS,
// BENCH_TIMEOUT_MS, BENCH_ROWS (a file for make bench's summary rows)).
//
// What a long poll costs the server while it churns: BENCH_POLLS clients (fetch, keep-alive)
// each loop GET /v1/events/wait?correlation_id=<never published>&timeout_ms=BENCH_TIMEOUT_MS,
// re-asking as soon as the 204 comes, for BENCH_SECONDS after 2 s unmeasured. Each one is a
// request, a stored lookup on a pooled PostgreSQL connection, a hub subscription and a 204:
// per long poll, CPU µs of sluice (all its threads), of the PostgreSQL backends serving its
// database, and of this client, from /proc.
// Baseline, same run, same database: the stored lookup alone — the very SQL Sluice sent for
// this filter, read from pg_stat_activity's `query` of its pooled backends after the long
// polls (parameters: tenant, correlation id, after 0, limit 1) — run by 4 node-postgres clients (as many as Sluice's pool) for BENCH_SECONDS, once as a named
// prepared statement and once unnamed (parsed and planned on every run, as Sluice did before
// its reads were prepared): PostgreSQL CPU µs per lookup, read from those clients' own
// backends. Prints one table; exit 1 when a long poll was answered other than 204.
const fs = require('node:fs');
const path = require('node:path');
const { env, sleep, statTicks, backendsOf } = require('../lib.js');
const { Client } = require(path.join(__dirname, '..', 'peer-node', 'node_modules', 'pg'));

const URL_ = env('BENCH_URL');
const TOKEN = env('BENCH_TOKEN');
const PID = Number(env('BENCH_PID'));
const PG_PID = Number(env('BENCH_PG_PID'));
const DB = env('BENCH_DB');
const DB_URL = env('BENCH_DB_URL');
const POLLS = Number(env('BENCH_POLLS', '500'));
const SECONDS = Number(env('BENCH_SECONDS', '10'));
const TIMEOUT_MS = env('BENCH_TIMEOUT_MS', '1000');
const ROWS = env('BENCH_ROWS', '');
const TICK_US = 1e6 / 100; // CLK_TCK = 100 on Linux

// The lookup's SQL as Sluice's pooled backends last ran it (the long polls' stored lookup):
// the baseline runs exactly that, whatever server/store.c writes.
async function lookupSql() {
  const c = new Client({ connectionString: DB_URL });
  await c.connect();
  try {
    const r = await c.query(
      "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() " +
      "AND query LIKE '%correlation_id = $2 AND position > $3%' LIMIT 1");
    if (!r.rows.length) throw new Error('no backend of sluice ran the long polls\' lookup');
    return r.rows[0].query;
  } finally {
    await c.end();
  }
}

const pgTicks = (pids) => pids.reduce((a, p) => a + (statTicks(`/proc/${p}/stat`, false) || 0), 0);

async function longPolls(seconds) {
  let answered = 0, bad = 0, stop = false;
  const loop = async (n) => {
    while (!stop) {
      const r = await fetch(`${URL_}/v1/events/wait?correlation_id=never-${n}&timeout_ms=${TIMEOUT_MS}`,
        { headers: { Authorization: `Bearer ${TOKEN}` } });
      await r.text();
      if (r.status === 204) answered++;
      else { bad++; await sleep(200); }
    }
  };
  const loops = Array.from({ length: POLLS }, (_, i) => loop(i));
  await sleep(2000); // warm-up: every client has asked, the pool's statements are prepared
  const a0 = answered;
  const s0 = statTicks(`/proc/${PID}/stat`, false);
  const backends = backendsOf(PG_PID, DB);
  const p0 = pgTicks(backends);
  const c0 = process.cpuUsage();
  const t0 = Date.now();
  await sleep(seconds * 1000);
  const n = answered - a0;
  const s1 = statTicks(`/proc/${PID}/stat`, false);
  const p1 = pgTicks(backends);
  const c1 = process.cpuUsage(c0);
  const secs = (Date.now() - t0) / 1000;
  stop = true;
  await Promise.all(loops);
  return {
    n, bad, rate: n / secs,
    sluice: ((s1 - s0) * TICK_US) / n, pg: ((p1 - p0) * TICK_US) / n, client: (c1.user + c1.system) / n,
  };
}

async function lookups(seconds, named, sql) {
  const clients = await Promise.all(Array.from({ length: 4 }, async () => {
    const c = new Client({ connectionString: DB_URL });
    await c.connect();
    c.backend = Number((await c.query('SELECT pg_backend_pid() AS p')).rows[0].p);
    return c;
  }));
  let n = 0, stop = false, i = 0;
  const run = async (c) => {
    while (!stop) {
      const values = ['poller', `never-${i++ % POLLS}`, '0', '1'];
      await c.query(named ? { name: 'lookup', text: sql, values } : { text: sql, values });
      n++;
    }
  };
  const warm = Date.now() + 1000;
  let runs = clients.map(run);
  while (Date.now() < warm) await sleep(100);
  stop = true;
  await Promise.all(runs);
  stop = false;
  const pids = clients.map((c) => c.backend);
  const p0 = pgTicks(pids);
  const n0 = n;
  runs = clients.map(run);
  await sleep(seconds * 1000);
  const p1 = pgTicks(pids);
  const done = n - n0;
  stop = true;
  await Promise.all(runs);
  await Promise.all(clients.map((c) => c.end()));
  return { n: done, pg: ((p1 - p0) * TICK_US) / done };
}

(async () => {
  const lp = await longPolls(SECONDS);
  const sql = await lookupSql();
  const named = await lookups(SECONDS, true, sql);
  const unnamed = await lookups(SECONDS, false, sql);
  const f = (x) => x.toFixed(1);
  console.log(`\nbench/longpoll — ${POLLS} long polls re-asked as soon as answered (timeout_ms ${TIMEOUT_MS}), ${SECONDS} s measured`);
  console.log('run                                              per second   CPU µs each: sluice   postgres   client');
  console.log(`Sluice long polls (request + stored lookup + 204)  ${f(lp.rate).padStart(9)}   ${f(lp.sluice).padStart(19)}   ${f(lp.pg).padStart(8)}   ${f(lp.client).padStart(6)}`);
  console.log(`lookup alone, named prepared statement (4 pg)      ${f(named.n / SECONDS).padStart(9)}   ${'-'.padStart(19)}   ${f(named.pg).padStart(8)}        -`);
  console.log(`lookup alone, unnamed (planned every time)         ${f(unnamed.n / SECONDS).padStart(9)}   ${'-'.padStart(19)}   ${f(unnamed.pg).padStart(8)}        -`);
  console.log(`answers other than 204: ${lp.bad}`);
  if (ROWS) { // make bench's summary row: measure, Sluice, baseline (run.sh adds target and verdict)
    fs.appendFileSync(ROWS,
      `PostgreSQL CPU per long poll, ${POLLS} polls re-asked every ${TIMEOUT_MS} ms\t${f(lp.pg)} µs (sluice ${f(lp.sluice)} µs)\t` +
      `the lookup alone: prepared ${f(named.pg)} µs (${(lp.pg / named.pg).toFixed(2)}x), unnamed ${f(unnamed.pg)} µs\n`);
  }
  process.exit(lp.bad ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(1); });
