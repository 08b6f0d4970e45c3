'use strict';
// bench/unauth/slow_bodies.js — the attacker of bench/unauth/run.sh. Samples sluice's VmRSS
// (/proc/<pid>/status) every 50 ms and prints one JSON line:
// {before_kib, peak_kib, after_kib, connections, answers}.
//
//   node slow_bodies.js PORT PID slow [CONNECTIONS=500] [SECONDS=10]
//     CONNECTIONS loopback connections kept up for SECONDS, each sending the headers of a
//     request that announces a 4 MB body without a valid token, 1 KiB of it, then 64 bytes
//     every 100 ms until sluice closes it, whereupon it connects again. The mix: POST
//     /v1/events without a token, with a wrong token, POST /v1/schemas without a token, and
//     GET /health with a Content-Length (a route that takes no body).
//   node slow_bodies.js PORT PID burst [CONNECTIONS=64] [BYTES=3145728]
//     CONNECTIONS connections at once, each sending GET /health with a body of BYTES as fast
//     as sluice reads it (issue 13's report: this grew sluice by about 200 MB).
// Loopback only; bounded (SECONDS; a burst ends when every connection has closed, or after
// 60 s), then every socket is destroyed.
const fs = require('node:fs');
const net = require('node:net');

const [port, pid, mode] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4] || 'slow'];
const CONNECTIONS = Number(process.argv[5] || (mode === 'burst' ? 64 : 500));
const SECONDS = Number(process.argv[6] || 10);
const BYTES = Number(process.argv[6] || 3 * 1024 * 1024);
if (!port || !pid || !['slow', 'burst'].includes(mode)) {
  console.error('usage: node slow_bodies.js PORT PID slow|burst [CONNECTIONS] [SECONDS|BYTES]');
  process.exit(2);
}

const HEADS = [
  'POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n',
  'POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_wrong\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n',
  'POST /v1/schemas HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n',
  'GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n',
];
const FIRST = Buffer.alloc(1024, 'a'); // sent with the headers
const TRICKLE = Buffer.alloc(64, 'b'); // then this every TRICKLE_MS
const TRICKLE_MS = 100;

function rssKiB() {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

const answers = {};
let connections = 0;
let stopping = false;
const open = new Set();

function attack(i) {
  if (stopping) return;
  connections++;
  const sock = net.connect(port, '127.0.0.1');
  open.add(sock);
  let head = '';
  let timer = null;
  sock.setNoDelay(true);
  sock.on('connect', () => {
    sock.write(HEADS[i % HEADS.length]);
    sock.write(FIRST);
    timer = setInterval(() => { if (sock.writable) sock.write(TRICKLE); }, TRICKLE_MS);
  });
  sock.on('data', (d) => { if (head.length < 16) head += d.toString('latin1'); });
  sock.on('error', () => { /* a reset is a close too */ });
  sock.on('close', () => {
    clearInterval(timer);
    open.delete(sock);
    const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
    const k = m ? m[1] : 'closed without an answer';
    answers[k] = (answers[k] || 0) + 1;
    if (!stopping) setTimeout(() => attack(i), 10);
  });
}

// One GET /health with a body of BYTES, written as fast as the socket takes it.
function burst(body) {
  return new Promise((resolve) => {
    connections++;
    const sock = net.connect(port, '127.0.0.1');
    open.add(sock);
    let head = '';
    sock.on('connect', () => {
      sock.write(`GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: ${BYTES}\r\n\r\n`);
      sock.write(body);
    });
    sock.on('data', (d) => {
      head += d.toString('latin1');
      if (/\r\n\r\n[\s\S]*\}/.test(head)) sock.destroy(); // the whole (small JSON) answer is in
    });
    sock.on('error', () => { /* a reset is a close too */ });
    sock.on('close', () => {
      open.delete(sock);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      const k = m ? m[1] : 'closed without an answer';
      answers[k] = (answers[k] || 0) + 1;
      resolve();
    });
  });
}

const before = rssKiB();
let peak = before;
const sampler = setInterval(() => { try { peak = Math.max(peak, rssKiB()); } catch (_) { /* gone */ } }, 50);
let reported = false;
function report() {
  if (reported) return;
  reported = true;
  stopping = true;
  try { peak = Math.max(peak, rssKiB()); } catch (_) { /* gone */ }
  for (const s of open) s.destroy();
  setTimeout(() => {
    clearInterval(sampler);
    let after = 0;
    try { after = rssKiB(); } catch (_) { /* gone */ }
    console.log(JSON.stringify({ before_kib: before, peak_kib: peak, after_kib: after, connections, answers }));
  }, 1000);
}
if (mode === 'slow') {
  for (let i = 0; i < CONNECTIONS; i++) attack(i);
  setTimeout(report, SECONDS * 1000);
} else {
  const body = Buffer.alloc(BYTES, 'a');
  const limit = setTimeout(report, 60000);
  Promise.all(Array.from({ length: CONNECTIONS }, () => burst(body))).then(() => { clearTimeout(limit); report(); });
}
