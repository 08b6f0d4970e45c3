'use strict';
// bench/lib.js — what the Node drivers of the benchmarks share (bench/consumer/bench.js,
// bench/webhooks/bench.js, bench/groups/bench.js): their settings from the environment, and
// CPU read from /proc — a process's ticks, a process tree's (the PostgreSQL cluster), the
// backends of one database, the machine's busy time, context switches — plus perf record of a
// pid and a percentile. One copy, so every benchmark counts CPU the same way.
const fs = require('node:fs');
const { spawn } = require('node:child_process');

// A setting: the variable's value, else `d`; a variable without default must be set.
const env = (k, d) => {
  const v = process.env[k];
  if (v === undefined || v === '') {
    if (d === undefined) throw new Error(`${k} is not set`);
    return d;
  }
  return v;
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The p-quantile of an ascending array (NaN when empty).
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN);

// utime + stime (+ cutime + cstime with `children`) of a /proc/.../stat, in ticks; null if gone.
function statTicks(path, children) {
  let s;
  try { s = fs.readFileSync(path, 'utf8'); } catch (_) { return null; }
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
}

// The pids whose parent is `pid` (every process's stat: no CONFIG_PROC_CHILDREN needed).
function childrenOf(pid) {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    let s;
    try { s = fs.readFileSync(`/proc/${d}/stat`, 'utf8'); } catch (_) { continue; }
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    if (Number(f[1]) === pid) out.push(Number(d));
  }
  return out;
}

// The postmaster's children serving database `db` (a backend's title names its database:
// "postgres: user db host(port) state").
function backendsOf(pid, db) {
  const out = [];
  for (const c of childrenOf(pid)) {
    let cmd;
    try { cmd = fs.readFileSync(`/proc/${c}/cmdline`, 'utf8'); } catch (_) { continue; }
    if (cmd.split(/[\s\0]+/)[2] === db) out.push(c);
  }
  return out;
}

// A process and its live children (exited ones are in its cutime/cstime once reaped).
function treeTicks(pid) {
  if (!pid) return null;
  let t = statTicks(`/proc/${pid}/stat`, true);
  if (t === null) return null;
  for (const c of childrenOf(pid)) t += statTicks(`/proc/${c}/stat`, true) || 0;
  return t;
}

// The machine: busy and total ticks from /proc/stat's first line.
function machineTicks() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user..steal (guest is in user)
  return { busy: total - f[3] - f[4], total };
}

// Context switches of every thread of `pid` (voluntary + involuntary).
function ctxSwitches(pid) {
  let n = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    let st;
    try { st = fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8'); } catch (_) { continue; }
    for (const m of st.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) n += Number(m[1]);
  }
  return n;
}

// perf record (DWARF call graphs) of `pid` into `out` from now until the returned function is
// awaited; `say` reports a perf that cannot start.
async function perfStart(pid, out, say) {
  const p = spawn('perf', ['record', '-F', '999', '--call-graph', 'dwarf,8192', '-q', '-p', String(pid), '-o', out], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise((resolve) => p.on('exit', resolve).on('error', (e) => { say(`perf: ${e.message}`); resolve(); }));
  await sleep(300); // perf attaches
  return async () => { p.kill('SIGINT'); await exited; };
}

module.exports = { env, sleep, pct, statTicks, childrenOf, backendsOf, treeTicks, machineTicks, ctxSwitches, perfStart };
