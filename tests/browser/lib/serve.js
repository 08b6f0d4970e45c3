'use strict';
// A stand-in for sluice's own static serving, for a sluice that does not serve web/ yet
// (GET / answers 404): serves web/ from disk, fresh on every request, and passes every
// other request through to the real sluice unchanged. No answer is invented: /v1/* comes
// from sluice. Used only when SLUICE_BROWSER_PROXY=1 or sluice's GET / is 404.

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

const WEB = path.resolve(__dirname, '..', '..', '..', 'web');
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.json': 'application/json',
  '.png': 'image/png', '.md': 'text/plain; charset=utf-8', '.txt': 'text/plain; charset=utf-8',
};

function webFile(urlPath) {
  const p = urlPath === '/' ? '/index.html' : urlPath;
  const full = path.resolve(WEB, '.' + decodeURIComponent(p));
  if (!full.startsWith(WEB + path.sep)) return null;
  try {
    if (!fs.statSync(full).isFile()) return null;
  } catch (_) {
    return null;
  }
  return full;
}

// Resolves to {url, close()}.
function serveWeb(sluiceUrl) {
  const target = new URL(sluiceUrl);
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const file = req.method === 'GET' && !u.pathname.startsWith('/v1/') ? webFile(u.pathname) : null;
    if (file) {
      res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
      fs.createReadStream(file).pipe(res);
      return;
    }
    const up = http.request({
      host: target.hostname, port: target.port, method: req.method, path: req.url,
      headers: { ...req.headers, host: target.host },
    }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
    req.pipe(up);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
      });
    });
  });
}

module.exports = { serveWeb, WEB };

// node tests/browser/lib/serve.js http://127.0.0.1:18080 [port] — for working on web/ by hand.
if (require.main === module) {
  serveWeb(process.argv[2] || 'http://127.0.0.1:8080').then((s) => console.log(`dashboard at ${s.url}`));
}
