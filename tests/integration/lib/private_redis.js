'use strict';
// A redis-server of one test's own, for tests that kill or restart Redis: the suite's shared
// Redis (SLUICE_REDIS_URL) is never stopped. The server runs without persistence (--save ''
// --appendonly no), so a restart comes back empty, as a Redis that lost its data does.
//
//   const r = await PrivateRedis.start();   // on a free port of 127.0.0.1
//   r.url                                     // redis://127.0.0.1:<port>/0
//   await r.restartEmpty();                   // SIGKILL, then a new empty server, same port
//   r.freeze(); r.thaw();                     // SIGSTOP / SIGCONT: a Redis that hangs
//   await r.stop();                           // SIGKILL; safe to call twice
//
// Every server still running when the test process exits is killed (SIGKILL).
const { spawn } = require('node:child_process');
const net = require('node:net');
const h = require('./harness');

const live = new Set(); // redis-server processes not yet seen exiting
process.on('exit', () => {
  for (const p of live) { try { p.kill('SIGKILL'); } catch (_) { /* already gone */ } }
});

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const p = srv.address().port; srv.close(() => resolve(p)); });
    srv.on('error', reject);
  });
}

function accepts(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port }, () => { sock.destroy(); resolve(true); });
    sock.on('error', () => resolve(false));
  });
}

class PrivateRedis {
  constructor(port) {
    this.port = port;
    this.proc = null;
    this.exited = null;
  }

  static async start() {
    const r = new PrivateRedis(await freePort());
    await r.launch();
    return r;
  }

  get url() { return `redis://127.0.0.1:${this.port}/0`; }

  async launch() {
    const proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    live.add(proc);
    this.exited = new Promise((resolve) => proc.once('exit', () => { live.delete(proc); resolve(); }));
    this.proc = proc;
    await h.waitFor(async () => {
      if (!live.has(proc)) throw new Error(`redis-server on port ${this.port} exited`);
      return accepts(this.port);
    }, { timeout: 10000, interval: 50, what: `redis-server to listen on port ${this.port}` });
  }

  async stop() {
    const p = this.proc;
    if (!p) return;
    this.proc = null;
    if (live.has(p)) p.kill('SIGKILL');
    await this.exited;
  }

  // SIGSTOP: connects are accepted by the kernel and commands pile up unanswered.
  freeze() { if (this.proc) this.proc.kill('SIGSTOP'); }

  thaw() { if (this.proc) this.proc.kill('SIGCONT'); }

  // Kills the server (SIGKILL: no goodbye to its clients) and starts a new, empty one on
  // the same port.
  async restartEmpty() {
    await this.stop();
    await this.launch();
  }
}

module.exports = { PrivateRedis };
