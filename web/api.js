// api.js — the dashboard's only way to talk HTTP to Sluice: the token (kept in
// localStorage), a fetch wrapper that turns RFC 9457 problem documents into ApiError,
// and a bus for "the token was refused" so one place can tell the operator.

const TOKEN_KEY = 'sluice.token';

export class ApiError extends Error {
  // status: HTTP status (0 = the network failed); problem: the parsed problem document or null.
  constructor(status, problem, message) {
    super(message);
    this.status = status;
    this.problem = problem;
    this.code = problem && problem.code ? problem.code : (status === 0 ? 'network' : `http_${status}`);
  }

  // A route this server does not have (yet): the panel shows "not available" instead of an error.
  get missingRoute() { return this.status === 404 && this.code === 'not_found' && /no route/.test(this.message); }
}

export const session = {
  token: readToken(),
  info: null, // GET /v1/info once the token is accepted
};

function readToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
}

export function setToken(token) {
  session.token = token;
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch (_) { /* private mode: the token lives for this page only */ }
}

// Listeners for a 401 on any request (the token is wrong or was revoked).
const unauthorized = new Set();
export function onUnauthorized(fn) { unauthorized.add(fn); }

// Encodes one path segment (stream, group, type, id, correlation id).
export const seg = (s) => encodeURIComponent(String(s));

// fetch → parsed JSON (null for 204). Throws ApiError for every non-2xx answer and for
// network failures; AbortError passes through untouched.
export async function api(path, { method = 'GET', body, signal, quiet401 = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method, headers, signal, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, null, `Sluice is unreachable (${e.message})`);
  }
  const type = res.headers.get('content-type') || '';
  let data = null;
  if (res.status !== 204) {
    const text = await res.text();
    if (text && /json/.test(type)) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
  }
  if (!res.ok) {
    const problem = data && typeof data === 'object' && data.code ? data : null;
    const message = problem ? (problem.detail || problem.title || problem.code) : `HTTP ${res.status}`;
    const err = new ApiError(res.status, problem, message);
    if (res.status === 401 && !quiet401) for (const fn of unauthorized) fn(err);
    throw err;
  }
  return data;
}

// A human sentence for an error shown in a panel.
export function describeError(err, what = 'this') {
  if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
  if (err.status === 401) return 'The token was refused (401). Enter a valid token above.';
  if (err.status === 403) return `This token may not read ${what}: ${err.message}`;
  if (err.missingRoute) return `This Sluice build has no ${what} route yet (404).`;
  if (err.status === 0) return err.message;
  return `${err.message} (${err.status}${err.problem ? ' ' + err.code : ''})`;
}
