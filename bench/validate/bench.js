// bench.js — validations per second of ajv (draft 2020-12, ajv-formats) on
// the schemas and instances in cases.json: the baseline for Sluice's
// validator (bench.c). Same mix, same semantics as Sluice's publish path:
// every violation collected (allErrors), formats asserted.
//
// Usage: node bench.js CASES.json [SECONDS [all|valid|invalid]]
// Prints the validity of each instance, then "ajv: N validations/s of CPU time
// (...)": per CPU-second of the process (GC and compiler threads included), as
// bench.c reports, plus the wall-clock rate.
'use strict';
const fs = require('fs');
const Ajv2020 = require('ajv/dist/2020');
const addFormats = require('ajv-formats');

const file = process.argv[2];
const seconds = Number(process.argv[3] || 3);
const only = process.argv[4] || 'all';
const { cases } = JSON.parse(fs.readFileSync(file, 'utf8'));

const ajv = new Ajv2020({ allErrors: true, strict: false });
addFormats(ajv);

let mix = [];
for (const c of cases) {
  const validate = ajv.compile(c.schema);
  for (const inst of c.instances) mix.push([validate, inst]);
}

console.log('validity: ' + mix.map(([v, i]) => (v(i) ? 1 : 0)).join(' '));
if (only !== 'all') mix = mix.filter(([v, i]) => v(i) === (only === 'valid'));

const now = () => Number(process.hrtime.bigint()) / 1e9;
let end = now() + 0.3;
while (now() < end) for (const [v, i] of mix) v(i);

let count = 0;
let reported = 0;
const cpu0 = process.cpuUsage();
const t0 = now();
end = t0 + seconds;
let t;
do {
  for (let round = 0; round < 64; round++) {
    for (const [v, i] of mix) {
      if (!v(i)) reported += v.errors.length;
    }
  }
  count += 64 * mix.length;
} while ((t = now()) < end);
const used = process.cpuUsage(cpu0);
const cpu = (used.user + used.system) / 1e6;
console.log(
  `ajv: ${Math.round(count / cpu)} validations/s of CPU time (${Math.round(count / (t - t0))}/s of wall time; ` +
    `${mix.length} instances, ${count} validations in ${(t - t0).toFixed(2)} s, ${cpu.toFixed(2)} s CPU, ` +
    `${reported} violations listed)`,
);
