#!/usr/bin/env node
// Checks the shipped event-type catalog (schemas/*.json) and its examples (schemas/examples/).
// Node 20, no dependencies. Usage: node schemas/check.mjs   (exits 1 on any problem)
//
// For every schemas/<type>.json:
//   - valid JSON; exactly the top-level fields type, stream, description, schema
//   - file name = type; type matches ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$ and is <= 128 chars
//   - stream is a non-empty string (<= 256 chars), description a non-empty string
//   - schema root is an object schema with "$schema": 2020-12
//   - only the keywords Sluice's validator supports appear anywhere in the schema, with values
//     of the right shape (formats from the supported list, patterns that compile, ...)
//   - every $ref is "#/$defs/..." and resolves inside the same file
// For every type, schemas/examples/<type>.json exists and its `data` validates against the
// schema (with the small validator below), and dropping any one required top-level property
// makes it invalid. No example exists without a type.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DIR = path.dirname(fileURLToPath(import.meta.url));
const EX_DIR = path.join(DIR, 'examples');
const TYPE_RE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const DIALECT = 'https://json-schema.org/draft/2020-12/schema';
const TOP_FIELDS = ['type', 'stream', 'description', 'schema'];
const ALLOWED = new Set([
  'type', 'enum', 'const', 'properties', 'required', 'additionalProperties', 'patternProperties',
  'propertyNames', 'minProperties', 'maxProperties', 'dependentRequired', 'dependentSchemas',
  'items', 'prefixItems', 'contains', 'minContains', 'maxContains', 'minItems', 'maxItems',
  'uniqueItems', 'minLength', 'maxLength', 'pattern', 'minimum', 'maximum', 'exclusiveMinimum',
  'exclusiveMaximum', 'multipleOf', 'allOf', 'anyOf', 'oneOf', 'not', 'if', 'then', 'else',
  '$ref', '$defs', 'format', 'title', 'description', 'examples', 'default', '$comment', '$schema',
]);
const FORMATS = new Set(['date-time', 'date', 'time', 'email', 'uri', 'uuid', 'ipv4', 'ipv6', 'hostname']);
const TYPES = new Set(['null', 'boolean', 'object', 'array', 'number', 'string', 'integer']);
const ONE = ['additionalProperties', 'propertyNames', 'items', 'contains', 'not', 'if', 'then', 'else'];
const MAP = ['properties', 'patternProperties', '$defs', 'dependentSchemas'];
const LIST = ['prefixItems', 'allOf', 'anyOf', 'oneOf'];
const NONNEG_INT = ['minProperties', 'maxProperties', 'minContains', 'maxContains', 'minItems',
  'maxItems', 'minLength', 'maxLength'];
const NUMBERS = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'];

const problems = [];
const fail = (file, where, msg) => problems.push(`${file}${where ? ` ${where}` : ''}: ${msg}`);
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const esc = (s) => String(s).replace(/~/g, '~0').replace(/\//g, '~1');

function resolvePointer(root, ref) {
  // ref is "#/..." ; returns undefined when it does not resolve
  let node = root;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (node === null || typeof node !== 'object' || !Object.prototype.hasOwnProperty.call(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

function compiles(p) {
  try { new RegExp(p, 'u'); return true; } catch { return false; }
}

// ---------- static check of one schema document ----------
function walk(file, root, s, ptr) {
  if (typeof s === 'boolean') return;
  if (!isObj(s)) { fail(file, ptr || '/', 'a schema must be an object or a boolean'); return; }
  for (const [k, v] of Object.entries(s)) {
    const at = `${ptr}/${esc(k)}`;
    if (!ALLOWED.has(k)) { fail(file, at, `keyword "${k}" is not supported by Sluice's validator`); continue; }
    if (ONE.includes(k)) walk(file, root, v, at);
    else if (MAP.includes(k)) {
      if (!isObj(v)) fail(file, at, `"${k}" must be an object of schemas`);
      else for (const [name, sub] of Object.entries(v)) {
        if (k === 'patternProperties' && !compiles(name)) fail(file, at, `pattern "${name}" does not compile`);
        walk(file, root, sub, `${at}/${esc(name)}`);
      }
    } else if (LIST.includes(k)) {
      if (!Array.isArray(v) || v.length === 0) fail(file, at, `"${k}" must be a non-empty array of schemas`);
      else v.forEach((sub, i) => walk(file, root, sub, `${at}/${i}`));
    } else if (k === 'type') {
      const list = Array.isArray(v) ? v : [v];
      if (list.length === 0 || !list.every((t) => TYPES.has(t)) || new Set(list).size !== list.length)
        fail(file, at, `invalid type ${JSON.stringify(v)}`);
    } else if (k === 'enum') {
      if (!Array.isArray(v) || v.length === 0) fail(file, at, 'enum must be a non-empty array');
    } else if (k === 'required') {
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string') || new Set(v).size !== v.length)
        fail(file, at, 'required must be an array of unique strings');
      else if (isObj(s.properties)) for (const r of v)
        if (!(r in s.properties)) fail(file, at, `required "${r}" is not declared in properties`);
    } else if (k === 'dependentRequired') {
      if (!isObj(v) || !Object.values(v).every((a) => Array.isArray(a) && a.every((x) => typeof x === 'string')))
        fail(file, at, 'dependentRequired must map names to arrays of strings');
    } else if (NONNEG_INT.includes(k)) {
      if (!Number.isInteger(v) || v < 0) fail(file, at, `${k} must be a non-negative integer`);
    } else if (NUMBERS.includes(k)) {
      if (typeof v !== 'number') fail(file, at, `${k} must be a number`);
    } else if (k === 'multipleOf') {
      if (typeof v !== 'number' || !(v > 0)) fail(file, at, 'multipleOf must be a number > 0');
    } else if (k === 'uniqueItems') {
      if (typeof v !== 'boolean') fail(file, at, 'uniqueItems must be a boolean');
    } else if (k === 'pattern') {
      if (typeof v !== 'string' || !compiles(v)) fail(file, at, `pattern ${JSON.stringify(v)} does not compile`);
    } else if (k === 'format') {
      if (!FORMATS.has(v)) fail(file, at, `format "${v}" is not one Sluice asserts`);
    } else if (k === '$ref') {
      if (typeof v !== 'string' || !v.startsWith('#/$defs/')) fail(file, at, `$ref ${JSON.stringify(v)} must point into "#/$defs/"`);
      else if (resolvePointer(root, v) === undefined) fail(file, at, `$ref ${v} does not resolve in this file`);
    } else if (k === '$schema') {
      if (ptr !== '') fail(file, at, '$schema is only allowed at the schema root');
      else if (v !== DIALECT) fail(file, at, `$schema must be "${DIALECT}"`);
    } else if (k === 'title' || k === 'description' || k === '$comment') {
      if (typeof v !== 'string') fail(file, at, `${k} must be a string`);
    } else if (k === 'examples') {
      if (!Array.isArray(v)) fail(file, at, 'examples must be an array');
    }
  }
}

// ---------- a small 2020-12 validator for the examples (supported keywords only) ----------
const FORMAT_RE = {
  'date-time': /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$/,
  date: /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/,
  time: /^([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$/,
  email: /^[^\s@]+@[^\s@]+$/,
  uri: /^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$/,
  uuid: /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/,
  ipv4: /^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/,
  hostname: /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/,
};
const isIPv6 = (s) => {
  if (!/^[0-9A-Fa-f:.]+$/.test(s) || (s.match(/::/g) || []).length > 1) return false;
  let parts = s.split(':');
  let groups = 0;
  const last = parts[parts.length - 1];
  if (last.includes('.')) { if (!FORMAT_RE.ipv4.test(last)) return false; groups += 2; parts = parts.slice(0, -1); }
  for (const p of parts) if (p !== '') { if (!/^[0-9A-Fa-f]{1,4}$/.test(p)) return false; groups++; }
  return s.includes('::') ? groups < 8 : groups === 8;
};
function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}
function deepEqual(a, b) {
  if (a === b) return true;
  if (typeOf(a) !== typeOf(b) && !(typeof a === 'number' && typeof b === 'number')) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObj(a)) {
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}
// Returns a list of "pointer: message" errors.
function validate(root, s, v, ptr = '', errs = []) {
  if (s === true) return errs;
  if (s === false) { errs.push(`${ptr || '/'}: false schema`); return errs; }
  const e = (m) => errs.push(`${ptr || '/'}: ${m}`);
  if (s.$ref !== undefined) validate(root, resolvePointer(root, s.$ref), v, ptr, errs);
  if (s.type !== undefined) {
    const list = Array.isArray(s.type) ? s.type : [s.type];
    const t = typeOf(v);
    if (!list.some((x) => x === t || (x === 'number' && t === 'integer'))) e(`expected ${list.join('|')}, got ${t}`);
  }
  if (s.enum && !s.enum.some((x) => deepEqual(x, v))) e(`not one of ${JSON.stringify(s.enum)}`);
  if ('const' in s && !deepEqual(s.const, v)) e(`not equal to ${JSON.stringify(s.const)}`);
  if (typeof v === 'string') {
    const len = [...v].length;
    if (s.minLength !== undefined && len < s.minLength) e(`shorter than ${s.minLength}`);
    if (s.maxLength !== undefined && len > s.maxLength) e(`longer than ${s.maxLength}`);
    if (s.pattern !== undefined && !new RegExp(s.pattern, 'u').test(v)) e(`does not match ${s.pattern}`);
    if (s.format !== undefined) {
      const ok = s.format === 'ipv6' ? isIPv6(v) : FORMAT_RE[s.format].test(v);
      if (!ok) e(`not a valid ${s.format}`);
    }
  }
  if (typeof v === 'number') {
    if (s.minimum !== undefined && v < s.minimum) e(`less than ${s.minimum}`);
    if (s.maximum !== undefined && v > s.maximum) e(`greater than ${s.maximum}`);
    if (s.exclusiveMinimum !== undefined && v <= s.exclusiveMinimum) e(`not greater than ${s.exclusiveMinimum}`);
    if (s.exclusiveMaximum !== undefined && v >= s.exclusiveMaximum) e(`not less than ${s.exclusiveMaximum}`);
    if (s.multipleOf !== undefined && !Number.isInteger(v / s.multipleOf)) e(`not a multiple of ${s.multipleOf}`);
  }
  if (Array.isArray(v)) {
    if (s.minItems !== undefined && v.length < s.minItems) e(`fewer than ${s.minItems} items`);
    if (s.maxItems !== undefined && v.length > s.maxItems) e(`more than ${s.maxItems} items`);
    if (s.uniqueItems && v.some((x, i) => v.findIndex((y) => deepEqual(x, y)) !== i)) e('items are not unique');
    const pre = s.prefixItems || [];
    pre.forEach((sub, i) => { if (i < v.length) validate(root, sub, v[i], `${ptr}/${i}`, errs); });
    if (s.items !== undefined) for (let i = pre.length; i < v.length; i++) validate(root, s.items, v[i], `${ptr}/${i}`, errs);
    if (s.contains !== undefined) {
      const n = v.filter((x) => validate(root, s.contains, x, ptr, []).length === 0).length;
      const min = s.minContains ?? 1;
      if (n < min) e(`contains fewer than ${min} matching items`);
      if (s.maxContains !== undefined && n > s.maxContains) e(`contains more than ${s.maxContains} matching items`);
    }
  }
  if (isObj(v)) {
    const keys = Object.keys(v);
    if (s.minProperties !== undefined && keys.length < s.minProperties) e(`fewer than ${s.minProperties} properties`);
    if (s.maxProperties !== undefined && keys.length > s.maxProperties) e(`more than ${s.maxProperties} properties`);
    for (const r of s.required || []) if (!(r in v)) e(`missing required property "${r}"`);
    for (const [k, deps] of Object.entries(s.dependentRequired || {}))
      if (k in v) for (const dep of deps) if (!(dep in v)) e(`"${k}" requires "${dep}"`);
    for (const [k, sub] of Object.entries(s.dependentSchemas || {})) if (k in v) validate(root, sub, v, ptr, errs);
    for (const k of keys) {
      const at = `${ptr}/${esc(k)}`;
      let matched = false;
      if (s.properties && k in s.properties) { matched = true; validate(root, s.properties[k], v[k], at, errs); }
      for (const [p, sub] of Object.entries(s.patternProperties || {}))
        if (new RegExp(p, 'u').test(k)) { matched = true; validate(root, sub, v[k], at, errs); }
      if (!matched && s.additionalProperties !== undefined) validate(root, s.additionalProperties, v[k], at, errs);
      if (s.propertyNames !== undefined) validate(root, s.propertyNames, k, at, errs);
    }
  }
  if (s.allOf) for (const sub of s.allOf) validate(root, sub, v, ptr, errs);
  if (s.anyOf && !s.anyOf.some((sub) => validate(root, sub, v, ptr, []).length === 0)) e('matches none of anyOf');
  if (s.oneOf && s.oneOf.filter((sub) => validate(root, sub, v, ptr, []).length === 0).length !== 1) e('does not match exactly one of oneOf');
  if (s.not !== undefined && validate(root, s.not, v, ptr, []).length === 0) e('matches the "not" schema');
  if (s.if !== undefined) {
    const ok = validate(root, s.if, v, ptr, []).length === 0;
    if (ok && s.then !== undefined) validate(root, s.then, v, ptr, errs);
    if (!ok && s.else !== undefined) validate(root, s.else, v, ptr, errs);
  }
  return errs;
}

// ---------- run ----------
const files = fs.readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();
const types = new Set();
const streams = new Map();
for (const f of files) {
  let doc;
  try { doc = JSON.parse(fs.readFileSync(path.join(DIR, f), 'utf8')); }
  catch (err) { fail(f, '', `invalid JSON: ${err.message}`); continue; }
  if (!isObj(doc)) { fail(f, '', 'top level must be an object'); continue; }
  const keys = Object.keys(doc);
  for (const k of TOP_FIELDS) if (!keys.includes(k)) fail(f, '', `missing top-level field "${k}"`);
  for (const k of keys) if (!TOP_FIELDS.includes(k)) fail(f, '', `unexpected top-level field "${k}"`);
  const { type, stream, description, schema } = doc;
  const before = problems.length;
  if (typeof type !== 'string' || !TYPE_RE.test(type) || type.length > 128) fail(f, '/type', `invalid event type ${JSON.stringify(type)}`);
  if (f !== `${type}.json`) fail(f, '/type', `file name must be "${type}.json"`);
  if (typeof stream !== 'string' || stream.length === 0 || stream.length > 256) fail(f, '/stream', 'stream must be a non-empty string of at most 256 chars');
  if (typeof description !== 'string' || description.trim() === '') fail(f, '/description', 'description must be a non-empty string');
  if (!isObj(schema)) { fail(f, '/schema', 'schema must be an object'); continue; }
  if (schema.$schema !== DIALECT) fail(f, '/schema', `root must declare "$schema": "${DIALECT}"`);
  if (schema.type !== 'object') fail(f, '/schema', 'root must be {"type": "object"} (data is a JSON object)');
  walk(f, schema, schema, '');
  if (typeof type === 'string') { types.add(type); streams.set(stream, (streams.get(stream) || 0) + 1); }
  if (problems.length !== before) continue;

  // the example
  const exFile = path.join(EX_DIR, `${type}.json`);
  let ex;
  try { ex = JSON.parse(fs.readFileSync(exFile, 'utf8')); }
  catch (err) { fail(`examples/${type}.json`, '', err.code === 'ENOENT' ? 'missing example' : `invalid JSON: ${err.message}`); continue; }
  const errs = validate(schema, schema, ex);
  for (const m of errs) fail(`examples/${type}.json`, '', `does not validate: ${m}`);
  if (errs.length === 0 && isObj(ex)) for (const r of schema.required || []) {
    const copy = { ...ex };
    delete copy[r];
    if (validate(schema, schema, copy).length === 0) fail(`examples/${type}.json`, '', `still valid without required "${r}"`);
  }
}
if (fs.existsSync(EX_DIR)) for (const f of fs.readdirSync(EX_DIR).sort())
  if (!f.endsWith('.json') || !types.has(f.slice(0, -5))) fail(`examples/${f}`, '', 'no schema for this example');

if (problems.length) {
  for (const p of problems) console.error(`FAIL ${p}`);
  console.error(`${problems.length} problem(s) in ${files.length} schema file(s)`);
  process.exit(1);
}
console.log(`ok: ${types.size} event types on ${streams.size} streams, every schema and example checked`);
