// The package in a browser: headless Chromium loads src/index.js as native
// ES modules (msgpackr through an import map, no bundler, no `ws`) from a
// page of a small server here, which also passes /v1/ to a member, so the
// page and /v1/ws share an origin (the server holds browsers to the
// same-origin rule). The page writes and reads over /v1/ws with the
// browser's own WebSocket and posts what it saw back.
//
// Chromium is /usr/bin/chromium or chromium on PATH (as the Go dashboard
// test finds it); without one the test is skipped, or fails when
// CONSENSUS_REQUIRE_BROWSER=1 (as CI sets).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createServer, request } from 'node:http';
import { connect } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster } from './cluster.js';
import { createClient } from '../src/index.js';

const pkgRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function chromiumPath() {
  for (const name of ['/usr/bin/chromium', 'chromium', 'chromium-browser']) {
    try {
      return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || null;
    } catch { /* not this one */ }
  }
  return null;
}

const chromium = chromiumPath();
const skip = chromium === null && process.env.CONSENSUS_REQUIRE_BROWSER !== '1'
  ? 'no Chromium found (/usr/bin/chromium, or chromium on PATH); install Debian\'s chromium package' : false;

const page = `<!doctype html>
<meta charset="utf-8">
<title>consensus client in a browser</title>
<script type="importmap">{ "imports": { "msgpackr": "/node_modules/msgpackr/index.js" } }</script>
<script type="module">
  const report = (r) => fetch('/result', { method: 'POST', body: JSON.stringify(r) });
  try {
    const { createClient } = await import('/src/index.js');
    const client = createClient({ endpoints: [location.host], requestTimeout: 10000 });
    const revision = await client.put('browser:k', { hello: 'chromium', ua: navigator.userAgent.includes('Chrome') });
    const item = await client.get('browser:k');
    const lease = await client.grant(5000);
    const kept = await client.keepAlive(lease.id);
    await client.revoke(lease.id);
    client.close();
    report({ ok: true, revision, item, lease: lease.id, kept: kept.id, node: typeof process !== 'undefined' });
  } catch (e) {
    report({ ok: false, error: String(e && e.stack || e), code: e && e.code });
  }
</script>`;

let cluster;
let server;
let browserDir;

before(async () => {
  if (skip) return;
  cluster = await new Cluster(3).start();
});

after(async () => {
  server?.close();
  server?.closeAllConnections?.();
  await cluster?.stop();
  if (browserDir) rmSync(browserDir, { recursive: true, force: true });
});

// serve answers the page, the package's modules, and /result; it passes
// /v1/ (HTTP and the WebSocket upgrade) to member, Host header unchanged.
function serve(member, onResult) {
  const files = (path) => {
    const f = resolve(pkgRoot, '.' + path);
    const allowed = [join(pkgRoot, 'src') + sep, join(pkgRoot, 'node_modules', 'msgpackr') + sep];
    return allowed.some((d) => f.startsWith(d)) && f.endsWith('.js') ? f : null;
  };
  const [host, port] = member.split(':');
  const s = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(page);
    } else if (path === '/result' && req.method === 'POST') {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => { res.end('{}'); onResult(JSON.parse(body)); });
    } else if (path.startsWith('/v1/')) {
      const up = request({ host, port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      up.on('error', () => { res.writeHead(502); res.end(); });
      req.pipe(up);
    } else if (files(path)) {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
      res.end(readFileSync(files(path)));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  s.on('upgrade', (req, socket, head) => {
    const up = connect(Number(port), host, () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(raw + '\r\n');
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  return new Promise((res) => s.listen(0, '127.0.0.1', () => res(s)));
}

test('in headless Chromium the package puts and gets over the browser\'s WebSocket', { skip }, async () => {
  assert.ok(chromium, 'CONSENSUS_REQUIRE_BROWSER=1 but no Chromium found: install Debian\'s chromium package');
  const leader = await cluster.waitLeader();
  let resolveResult;
  const result = new Promise((r) => { resolveResult = r; });
  server = await serve(cluster.http[leader], resolveResult);
  const url = `http://127.0.0.1:${server.address().port}/`;
  browserDir = mkdtempSync(join(tmpdir(), 'consensus-js-chromium-'));
  // Its own process group, so that its helper processes go with it.
  const browser = spawn(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    `--user-data-dir=${browserDir}`, url], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let log = '';
  browser.stderr.on('data', (b) => { log = (log + b).slice(-4000); });
  const exited = new Promise((r) => browser.once('exit', r));
  let timer;
  try {
    const r = await Promise.race([
      result,
      exited.then((code) => { throw new Error(`chromium exited (${code}) before the page reported: ${log}`); }),
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`no report from the page within 60 s: ${log}`)), 60000); }),
    ]);
    assert.equal(r.ok, true, r.error);
    assert.equal(r.node, false, 'the page ran as a browser page, not Node');
    assert.deepEqual(r.item.value, { hello: 'chromium', ua: true });
    assert.equal(r.item.revision, r.revision);
    assert.equal(r.kept, r.lease);
    // The write is in the cluster, as a Node client sees it.
    const c = createClient({ endpoints: cluster.endpoints });
    try {
      assert.deepEqual((await c.get('browser:k')).value, { hello: 'chromium', ua: true });
    } finally {
      c.close();
    }
  } finally {
    clearTimeout(timer);
    try { process.kill(-browser.pid, 'SIGKILL'); } catch { /* gone */ }
    await exited;
  }
});
