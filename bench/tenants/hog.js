'use strict';
// bench/tenants/hog.js — the noisy tenant of bench/tenants/run.sh: it holds its caps of long
// polls and history catch-ups for as long as it runs, and keeps asking for more.
//
//   - BENCH_POLLS + BENCH_EXTRA long polls (GET /v1/events/wait for a correlation id that
//     never comes, timeout_ms BENCH_POLL_TIMEOUT_MS, 20000 by default), each re-asked as soon
//     as it is answered (204 on timeout; 429 past the tenant's cap, then after its Retry-After);
//   - BENCH_CATCHUPS + BENCH_EXTRA WebSocket connections, each subscribing from position 0 to
//     the tenant's `hog.mark` events (one in every 1,000 of its history): the server reads the
//     whole history for each; once a connection has every mark (BENCH_MARKS) its catch-up is
//     done and it subscribes again; a subscribe refused (rate_limited past the cap) is retried
//     after a second.
// Prints `READY …` once every cap is held (the polls parked, the catch-ups running), a
// `STATE …` line every second, and on SIGTERM `DONE …` with what it saw (the minimum held
// while it ran after READY, and the refusals). Environment: BENCH_URL, BENCH_WS_PORT,
// BENCH_TOKEN (the tenant's key: read, subscribe), BENCH_POLLS, BENCH_CATCHUPS, BENCH_EXTRA,
// BENCH_MARKS, BENCH_MAX_SECONDS (it ends by itself after this long, as on SIGTERM),
// BENCH_POLL_TIMEOUT_MS (its long polls' timeout_ms: shorter makes them churn).
const path = require('node:path');
const WebSocket = require(path.join(__dirname, '..', '..', 'tests', 'node_modules', 'ws'));

const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const URL_ = env('BENCH_URL');
const WS_URL = `ws://127.0.0.1:${env('BENCH_WS_PORT')}/v1/ws?token=${encodeURIComponent(env('BENCH_TOKEN'))}`;
const TOKEN = env('BENCH_TOKEN');
const POLLS = Number(env('BENCH_POLLS', '500'));
const CATCHUPS = Number(env('BENCH_CATCHUPS', '64'));
const EXTRA = Number(env('BENCH_EXTRA', '20'));
const MARKS = Number(env('BENCH_MARKS', '1'));
const MAX_S = Number(env('BENCH_MAX_SECONDS', '600'));
const POLL_TIMEOUT_MS = Number(env('BENCH_POLL_TIMEOUT_MS', '20000'));

let stopping = false;
const st = {
  pollsParked: 0, pollsAnswered: 0, pollsRefused: 0, pollErrors: 0,
  catchupsRunning: 0, catchupsDone: 0, catchupsRefused: 0, wsErrors: 0,
};
let ready = false;
let minPolls = Infinity;
let minCatchups = Infinity;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function pollLoop(n) {
  while (!stopping) {
    let parked = true;
    st.pollsParked++;
    try {
      const res = await fetch(`${URL_}/v1/events/wait?correlation_id=hog-never-${n}&timeout_ms=${POLL_TIMEOUT_MS}`,
        { headers: { Authorization: `Bearer ${TOKEN}` } });
      await res.text();
      st.pollsParked--;
      parked = false;
      if (res.status === 429) {
        st.pollsRefused++;
        await sleep(1000 * Number(res.headers.get('retry-after') || 1));
      } else {
        st.pollsAnswered++;
      }
    } catch (_) {
      if (parked) st.pollsParked--;
      st.pollErrors++;
      await sleep(500);
    }
  }
}

// A refused poll is parked for only an instant: what is held is parked minus those in flight
// being refused, which the server answers at once; the sampled count is close enough, and
// the minimum below is taken over one-second samples.

function catchupConn(n) {
  return new Promise((resolve) => {
    const ws = new WebSocket(WS_URL, { perMessageDeflate: false });
    let sub = 0;
    let marks = 0;
    let running = false;
    const subscribe = () => {
      if (stopping) return;
      sub++;
      marks = 0;
      ws.send(JSON.stringify({ op: 'subscribe', id: `c${n}-${sub}`, from_position: 0, types: ['hog.mark'] }));
    };
    ws.on('open', subscribe);
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString('utf8'));
      if (m.op === 'subscribed') {
        running = true;
        st.catchupsRunning++;
      } else if (m.op === 'error') {
        if (m.code === 'rate_limited' || m.code === 'overloaded') st.catchupsRefused++;
        else st.wsErrors++;
        setTimeout(subscribe, 1000);
      } else if (m.op === 'event' && m.sub === `c${n}-${sub}`) {
        if (++marks >= MARKS) { // the whole history has been read: again
          running = false;
          st.catchupsRunning--;
          st.catchupsDone++;
          ws.send(JSON.stringify({ op: 'unsubscribe', id: m.sub }));
          subscribe();
        }
      }
    });
    ws.on('error', () => { st.wsErrors++; });
    ws.on('close', () => {
      if (running) st.catchupsRunning--;
      resolve();
    });
    catchupConn.all.push(ws);
  });
}
catchupConn.all = [];

function line(tag) {
  return `${tag} polls_parked=${st.pollsParked} polls_answered=${st.pollsAnswered} polls_refused=${st.pollsRefused} ` +
    `poll_errors=${st.pollErrors} catchups_running=${st.catchupsRunning} catchups_done=${st.catchupsDone} ` +
    `catchups_refused=${st.catchupsRefused} ws_errors=${st.wsErrors}`;
}

async function main() {
  const loops = [];
  for (let i = 0; i < POLLS + EXTRA; i++) loops.push(pollLoop(i));
  for (let i = 0; i < CATCHUPS + EXTRA; i++) loops.push(catchupConn(i));
  const t0 = Date.now();
  const timer = setInterval(() => {
    if (!ready && st.pollsRefused > 0 && st.catchupsRunning >= CATCHUPS && st.pollsParked >= POLLS) {
      ready = true;
      console.log(line('READY'));
    } else if (!ready && Date.now() - t0 > 120000) {
      console.log(line('NOT-READY'));
    }
    if (ready) {
      minPolls = Math.min(minPolls, st.pollsParked);
      minCatchups = Math.min(minCatchups, st.catchupsRunning);
    }
    console.log(line('STATE'));
  }, 1000);
  const finish = () => {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    console.log(`${line('DONE')} min_polls_held=${minPolls === Infinity ? 0 : minPolls} ` +
      `min_catchups_held=${minCatchups === Infinity ? 0 : minCatchups}`);
    for (const ws of catchupConn.all) ws.terminate();
    setTimeout(() => process.exit(0), 200);
  };
  process.on('SIGTERM', finish);
  setTimeout(finish, MAX_S * 1000).unref();
  await Promise.all(loops);
}

main().catch((e) => { console.error(e); process.exit(1); });
