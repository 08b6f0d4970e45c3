'use strict';
// Private servers for the fault tests: scripts/services.sh run against a run directory of the
// test's own, so the PostgreSQL, Redis or replica it starts can be stopped, frozen or cut off
// without touching the suite's shared servers.
//   services(runDir, cmd, what) — `scripts/services.sh CMD WHAT` with SLUICE_RUN_DIR=runDir and
//     none of the suite's server settings in its environment (the servers must be new ones);
//     resolves to its output, rejects with it.
//   readEnvFile(runDir) — the variables services.sh wrote to runDir/env.
const { execFile } = require('node:child_process');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const SCRIPT = path.resolve(__dirname, '..', '..', '..', 'scripts', 'services.sh');

function services(runDir, cmd, what, { timeout = 300000 } = {}) {
  const env = { ...process.env, SLUICE_RUN_DIR: runDir };
  for (const k of Object.keys(env)) {
    if (k === 'SLUICE_DATABASE_URL' || k === 'SLUICE_READ_DATABASE_URL' || k.startsWith('SLUICE_PG_') ||
      k.startsWith('SLUICE_REDIS_')) delete env[k];
  }
  return new Promise((resolve, reject) => {
    execFile('bash', [SCRIPT, cmd, what], { env, timeout, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`scripts/services.sh ${cmd} ${what} failed (${err.code}): ${stdout}\n${stderr}`));
      else resolve(stdout + stderr);
    });
  });
}

function readEnvFile(runDir) {
  const file = path.join(runDir, 'env');
  assert.ok(fs.existsSync(file), `${file} written by services.sh`);
  const vars = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2].trim();
    if ((v.startsWith("'") && v.endsWith("'")) || (v.startsWith('"') && v.endsWith('"'))) v = v.slice(1, -1);
    vars[m[1]] = v;
  }
  return vars;
}

module.exports = { services, readEnvFile };
