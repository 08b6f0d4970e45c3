'use strict';
// The contract check: every HTTP answer Sluice gives the integration tests must be one that
// openapi/openapi.yaml (OpenAPI 3.1, schemas in JSON Schema 2020-12) documents.
//
// Why: the document is what clients are generated from and what the dashboard reads; a
// status, content type or field the server sends but the document does not describe (or
// describes wrongly) breaks them silently. harness.js calls assertAnswer() on every answer
// it receives, so the whole integration suite doubles as the document's test.
//
// For one answer (method, path, status, content type, body):
//   - the operation is found by method and path template (a literal segment beats a
//     {parameter}; HEAD uses GET's operation);
//   - the response is the one for the exact status, else its `4XX` form, else `default`;
//   - the content type (without parameters) must be one the response declares; a response
//     that declares no content must come without a body;
//   - JSON bodies (application/json, application/problem+json) must parse and validate
//     against the declared schema with ajv's 2020-12 validator (formats from ajv-formats,
//     strict mode, so a schema typo fails the load, not silently passes); a problem's
//     `status` field must equal the HTTP status;
//   - streams (NDJSON, SSE) are checked by status and content type only.
// Requests outside every operation: a documented path with an undocumented method must
// answer 405 `method_not_allowed` with `Allow` naming exactly the documented methods; an
// undocumented path must answer 404 `not_found`. Both are problem documents. GET of a file of
// web/ by its path (the dashboard's scripts, styles, vendored libraries) must answer 200.
const fs = require('node:fs');
const path = require('node:path');
const assert = require('node:assert/strict');
const Ajv2020 = require('ajv/dist/2020');
const addFormats = require('ajv-formats');
const YAML = require('yaml');

const DOC_PATH = path.resolve(__dirname, '..', '..', '..', 'openapi', 'openapi.yaml');
const SCHEMAS_ID = 'https://sluice.dev/openapi.yaml';
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const JSON_TYPES = new Set(['application/json', 'application/problem+json']);
const STREAM_TYPES = new Set(['application/x-ndjson', 'text/event-stream']);

const WEB_DIR = path.resolve(__dirname, '..', '..', '..', 'web');

// Whether a URL path names a file of the dashboard (web/), as server/web.c serves them.
function isWebFile(urlPath) {
  let rel;
  try {
    rel = decodeURIComponent(urlPath);
  } catch (_) {
    return false;
  }
  const file = path.resolve(WEB_DIR, '.' + rel);
  if (!file.startsWith(WEB_DIR + path.sep)) return false;
  try {
    return fs.statSync(file).isFile();
  } catch (_) {
    return false;
  }
}

function mediaType(contentType) {
  return String(contentType || '').split(';')[0].trim().toLowerCase();
}

// `#/components/schemas/X` → an absolute reference into the schema registered as SCHEMAS_ID.
function rewriteRefs(v) {
  if (Array.isArray(v)) return v.map(rewriteRefs);
  if (!v || typeof v !== 'object') return v;
  const o = {};
  for (const [k, x] of Object.entries(v)) {
    o[k] = k === '$ref' && typeof x === 'string' && x.startsWith('#/components/schemas/')
      ? `${SCHEMAS_ID}#/$defs/${x.slice('#/components/schemas/'.length)}`
      : rewriteRefs(x);
  }
  return o;
}

// Resolves an OpenAPI (not JSON Schema) reference such as #/components/responses/NotFound.
function deref(doc, v) {
  for (let i = 0; v && typeof v.$ref === 'string' && i < 16; i++) {
    assert.ok(v.$ref.startsWith('#/'), `only local references are supported: ${v.$ref}`);
    v = v.$ref.slice(2).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduce((o, k) => (o == null ? o : o[k]), doc);
    assert.ok(v, 'dangling reference');
  }
  return v;
}

class Contract {
  constructor(doc) {
    this.doc = doc;
    this.ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false, strictTuples: false });
    addFormats(this.ajv);
    // OpenAPI 3.1's own schema keywords are annotations here.
    this.ajv.addVocabulary(['discriminator', 'xml', 'externalDocs', 'example']);
    this.ajv.addSchema({ $id: SCHEMAS_ID, $defs: rewriteRefs((doc.components || {}).schemas || {}) });

    this.paths = []; // {template, re, literal, ops: {METHOD: {id, responses}}}
    for (const [template, item] of Object.entries(doc.paths || {})) {
      const segs = template.split('/');
      const re = new RegExp('^' + segs.map((s) => (/^\{[^}]+\}$/.test(s) ? '[^/]+'
        : s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/') + '$');
      const ops = {};
      for (const m of METHODS) {
        if (!item[m]) continue;
        const op = item[m];
        const responses = {};
        for (const [status, r0] of Object.entries(op.responses || {})) {
          const r = deref(doc, r0);
          const content = {};
          for (const [mt, media] of Object.entries(r.content || {})) {
            let validate = null;
            if (JSON_TYPES.has(mt) && media.schema) {
              try {
                validate = this.ajv.compile(rewriteRefs(media.schema));
              } catch (e) {
                throw new Error(`openapi.yaml: ${m.toUpperCase()} ${template} ${status} ${mt}: ${e.message}`);
              }
            }
            content[mt] = { validate };
          }
          responses[status] = { content, hasContent: Object.keys(content).length > 0 };
        }
        ops[m.toUpperCase()] = { id: op.operationId || `${m.toUpperCase()} ${template}`, responses };
      }
      this.paths.push({ template, re, params: segs.filter((s) => s.startsWith('{')).length, ops });
    }
    // The most literal template first: /v1/events/wait before /v1/events/{id}.
    this.paths.sort((a, b) => a.params - b.params);
    const problem = ((doc.components || {}).schemas || {}).Problem;
    this.validateProblem = problem ? this.ajv.compile({ $ref: `${SCHEMAS_ID}#/$defs/Problem` }) : null;
  }

  // → {op, template} for method + path, or {allowed: [methods]} when only the path is
  // documented, or null.
  operation(method, urlPath) {
    const m = method.toUpperCase() === 'HEAD' ? 'GET' : method.toUpperCase();
    const allowed = new Set();
    for (const p of this.paths) {
      if (!p.re.test(urlPath)) continue;
      if (p.ops[m]) return { op: p.ops[m], template: p.template };
      for (const k of Object.keys(p.ops)) allowed.add(k);
    }
    return allowed.size ? { allowed: [...allowed].sort() } : null;
  }

  // Every way this answer breaks the document, as strings (empty: it conforms).
  // a = {method, path (may carry a query), status, contentType, text, headers (Headers or object)}
  check(a) {
    const urlPath = String(a.path).split('?')[0];
    const mt = mediaType(a.contentType);
    const text = a.text === undefined || a.text === null ? '' : String(a.text);
    const found = this.operation(a.method, urlPath);
    const errors = [];
    const checkBody = (validate, what) => {
      if (STREAM_TYPES.has(mt) || !JSON_TYPES.has(mt)) return;
      let body;
      try {
        body = JSON.parse(text);
      } catch (e) {
        errors.push(`${what}: the ${mt} body is not JSON (${e.message})`);
        return;
      }
      if (validate && !validate(body)) {
        errors.push(`${what}: the body does not validate:\n` + validate.errors.map((e) =>
          `  ${e.instancePath || '(root)'} ${e.message} (${e.schemaPath}${
            e.params && Object.keys(e.params).length ? ' ' + JSON.stringify(e.params) : ''})`).join('\n'));
      }
      if (mt === 'application/problem+json' && body && typeof body === 'object' && body.status !== a.status) {
        errors.push(`${what}: the problem's status field is ${JSON.stringify(body.status)}`);
      }
    };

    if (!found && (a.method === 'GET' || a.method === 'HEAD') && isWebFile(urlPath)) {
      // The dashboard's other static files, served by path beside `/` (the document's get_root
      // describes them; OpenAPI has no template for a path of several segments).
      if (a.status !== 200 && a.status !== 304) errors.push(`${a.method} ${urlPath} (a file of web/) → HTTP ${a.status}: expected 200`);
      return errors;
    }

    if (!found || found.allowed) {
      // Outside every operation: only the router's own 404 / 405 answers are acceptable.
      const expect = found ? 405 : 404;
      const code = found ? 'method_not_allowed' : 'not_found';
      const what = `${a.method} ${urlPath} (${found ? 'undocumented method; documented: ' +
        found.allowed.join(', ') : 'undocumented path'}) → HTTP ${a.status} ${mt || '(no content type)'}`;
      if (a.status !== expect) errors.push(`${what}: expected ${expect} ${code}`);
      if (mt !== 'application/problem+json') errors.push(`${what}: expected application/problem+json`);
      else {
        checkBody(this.validateProblem, what);
        try {
          if (JSON.parse(text).code !== code) errors.push(`${what}: expected the problem code ${code}`);
        } catch (_) { /* reported above */ }
      }
      if (found && a.status === 405) {
        const allow = headerOf(a.headers, 'allow');
        const got = [...new Set(String(allow || '').split(',').map((s) => s.trim()).filter(Boolean))].sort();
        if (got.join(',') !== found.allowed.join(',')) {
          errors.push(`${what}: Allow is ${JSON.stringify(allow)}, the document has ${found.allowed.join(', ')}`);
        }
      }
      return errors;
    }

    const { op, template } = found;
    const st = String(a.status);
    const key = op.responses[st] ? st : op.responses[`${st[0]}XX`] ? `${st[0]}XX` : op.responses.default ? 'default' : null;
    const what = `${op.id} (${a.method} ${template}) → HTTP ${a.status} ${mt || '(no content type)'}`;
    if (!key) {
      errors.push(`${what}: status ${a.status} is not documented (documented: ${Object.keys(op.responses).join(', ')})`);
      return errors;
    }
    const resp = op.responses[key];
    if (!resp.hasContent) {
      if (text.length > 0 && a.method.toUpperCase() !== 'HEAD') {
        errors.push(`${what}: response ${key} documents no content, but a ${text.length}-byte body came`);
      }
      return errors;
    }
    if (!mt) {
      errors.push(`${what}: no Content-Type; response ${key} declares ${Object.keys(resp.content).join(', ')}`);
      return errors;
    }
    const media = resp.content[mt] || resp.content[mt.split('/')[0] + '/*'] || resp.content['*/*'];
    if (!media) {
      errors.push(`${what}: content type ${mt} is not declared for ${key} (declared: ${Object.keys(resp.content).join(', ')})`);
      return errors;
    }
    if (a.method.toUpperCase() !== 'HEAD') checkBody(media.validate, what);
    return errors;
  }

  // Throws an AssertionError naming the operation, status and every error.
  assertAnswer(a) {
    const errors = this.check(a);
    if (errors.length) {
      const body = a.text === undefined ? '(body not read: a stream)' : String(a.text).slice(0, 1500);
      assert.fail(`answer breaks openapi/openapi.yaml:\n${errors.join('\n')}\nbody: ${body}`);
    }
  }
}

function headerOf(headers, name) {
  if (!headers) return undefined;
  if (typeof headers.get === 'function') return headers.get(name);
  for (const k of Object.keys(headers)) if (k.toLowerCase() === name) return headers[k];
  return undefined;
}

let loaded = null;
// The contract of openapi/openapi.yaml, parsed and compiled once per process.
function contract() {
  if (!loaded) loaded = new Contract(YAML.parse(fs.readFileSync(DOC_PATH, 'utf8')));
  return loaded;
}

function isStream(contentType) { return STREAM_TYPES.has(mediaType(contentType)); }

module.exports = { Contract, contract, isStream, mediaType, DOC_PATH };
