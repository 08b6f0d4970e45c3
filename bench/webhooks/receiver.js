'use strict';
// bench/webhooks/receiver.js — the webhook benchmark's endpoint (started by
// bench/webhooks/run.sh, one process per BENCH_RECEIVERS): a lean node:http server on
// 127.0.0.1 that answers every delivery 204 once its body has arrived, as a real endpoint
// would, and notes what it needs for the figures and nothing more:
//   POST /h/<webhook>   a delivery: counted for <webhook>; its webhook-id header (the event
//                       id) and its arrival time (epoch ms, µs resolution) are kept. The body
//                       is read, not parsed: the driver knows each event's `time` from the 201.
//   GET  /_stats        {"total","bytes","first","last","connections","by":{webhook: count}}
//                       (first/last: arrival times of the first and the latest delivery;
//                       connections: TCP connections accepted, control ones included).
//   GET  /_records      {webhook: [[id, arrival ms], ...]} — every delivery since the last
//   POST /_reset        reset (which forgets them all and zeroes the counters).
// Prints its port ({"port":N}) on stdout once listening, to the file named by argv[2] if
// given. Exits on SIGTERM, SIGINT, or when its parent (run.sh) is gone.
const fs = require('node:fs');
const http = require('node:http');
const { performance } = require('node:perf_hooks');

const now = () => performance.timeOrigin + performance.now();
let state;
function reset() {
  state = { total: 0, bytes: 0, first: 0, last: 0, connections: 0, by: new Map() };
}
reset();

function delivery(req, res, name) {
  let bytes = 0;
  req.on('data', (c) => { bytes += c.length; });
  req.on('error', () => {});
  req.on('end', () => {
    const t = now();
    let rec = state.by.get(name);
    if (!rec) state.by.set(name, (rec = []));
    rec.push([req.headers['webhook-id'] || '', t]);
    state.total++;
    state.bytes += bytes;
    if (!state.first) state.first = t;
    state.last = t;
    res.writeHead(204);
    res.end();
  });
}

function control(req, res, body) {
  const s = JSON.stringify(body);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(s) });
  res.end(s);
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url.startsWith('/h/')) return delivery(req, res, req.url.slice(3));
  req.resume();
  req.on('end', () => {
    if (req.method === 'GET' && req.url === '/_stats') {
      const by = {};
      for (const [k, v] of state.by) by[k] = v.length;
      return control(req, res, { total: state.total, bytes: state.bytes, first: state.first, last: state.last, connections: state.connections, by });
    }
    if (req.method === 'GET' && req.url === '/_records') return control(req, res, Object.fromEntries(state.by));
    if (req.method === 'POST' && req.url === '/_reset') {
      reset();
      return control(req, res, { ok: true });
    }
    res.writeHead(404);
    res.end();
  });
});
server.on('connection', () => { state.connections++; });
server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;
server.listen(0, '127.0.0.1', () => {
  const line = JSON.stringify({ port: server.address().port }) + '\n';
  if (process.argv[2]) fs.writeFileSync(process.argv[2], line);
  else process.stdout.write(line);
});
const bye = () => process.exit(0);
process.on('SIGTERM', bye);
process.on('SIGINT', bye);
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) bye(); }, 1000).unref();
