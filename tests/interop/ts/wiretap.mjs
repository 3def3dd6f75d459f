// Wire taps for clients we do not control (mcpdo): they record every JSON-RPC message a client
// sends to the fixture server and every message the server sends back, so a test can check what
// really went over the wire. Not a test file itself (node --test only picks up *.test.mjs).
//
//   startHttpTap(targetUrl)  a loopback HTTP proxy (127.0.0.1, ephemeral port) in front of the
//                            Streamable HTTP server; JSON and SSE response bodies are passed through
//                            unchanged while they stream, and parsed as they arrive.
//   STDIO_TAP                a node script to put in front of `taskwire-fixtures --stdio`:
//                            `node STDIO_TAP <logfile> <pidfile> -- <cmd> [args...]` relays stdin /
//                            stdout line by line and appends `{"dir":"out"|"in","msg":...}` lines to
//                            <logfile>; <pidfile> gets "<tap pid> <server pid>" so the test can kill
//                            both even if the client that spawned them does not.
//
// Log entries (both taps): {dir: 'out' (client -> server) | 'in' (server -> client), msg, http?}.

import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const STDIO_TAP = path.join(path.dirname(fileURLToPath(import.meta.url)), 'stdio-tap.mjs');

/** Parse the JSON-RPC messages of one HTTP body (application/json or text/event-stream). */
function messagesOf(contentType, text) {
  const out = [];
  const push = (s) => {
    s = s.trim();
    if (!s) return;
    try {
      const v = JSON.parse(s);
      for (const m of Array.isArray(v) ? v : [v]) out.push(m);
    } catch { out.push({ unparsed: s }); }
  };
  if ((contentType || '').includes('text/event-stream')) {
    for (const ev of text.split(/\r?\n\r?\n/)) {
      const data = ev.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
      if (data.length) push(data.join('\n'));
    }
  } else {
    push(text);
  }
  return out;
}

/**
 * Start a logging proxy for `target` (a URL on 127.0.0.1). Resolves with
 * {url, log, exchanges, close()}: `url` is the proxy's address with the target's path, `log` the
 * message entries in arrival order, `exchanges` one record per HTTP request
 * ({method, reqHeaders, reqBody, status, resHeaders, resBody}, resBody growing while it streams).
 */
export function startHttpTap(target) {
  const t = new URL(target);
  const log = [];
  const exchanges = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const reqBody = Buffer.concat(chunks).toString('utf8');
      const ex = { method: req.method, url: req.url, reqHeaders: { ...req.headers }, reqBody, status: null, resHeaders: null, resBody: '' };
      exchanges.push(ex);
      for (const msg of reqBody ? messagesOf('application/json', reqBody) : []) log.push({ dir: 'out', msg, http: ex });
      const headers = { ...req.headers, host: t.host };
      delete headers['content-length'];
      if (reqBody) headers['content-length'] = Buffer.byteLength(reqBody);
      const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers }, (ur) => {
        ex.status = ur.statusCode;
        ex.resHeaders = { ...ur.headers };
        res.writeHead(ur.statusCode, ur.headers);
        const ct = ur.headers['content-type'] || '';
        const sse = ct.includes('text/event-stream');
        let pending = '';
        ur.setEncoding('utf8');
        ur.on('data', (s) => {
          ex.resBody += s;
          res.write(s);
          if (sse) {
            // log complete events as they arrive (an SSE stream may stay open)
            pending += s;
            const parts = pending.split(/\r?\n\r?\n/);
            pending = parts.pop();
            for (const p of parts) for (const msg of messagesOf(ct, p + '\n\n')) log.push({ dir: 'in', msg, http: ex });
          }
        });
        ur.on('end', () => {
          if (sse) { for (const msg of messagesOf(ct, pending)) log.push({ dir: 'in', msg, http: ex }); }
          else if (ex.resBody.trim()) { for (const msg of messagesOf(ct, ex.resBody)) log.push({ dir: 'in', msg, http: ex }); }
          res.end();
        });
        ur.on('error', () => res.destroy());
      });
      up.on('error', (e) => {
        ex.status = 502;
        ex.resBody = String(e);
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(String(e));
      });
      res.on('close', () => up.destroy());
      up.end(reqBody || undefined);
    });
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const url = new URL(t.pathname + t.search, `http://127.0.0.1:${server.address().port}`);
      resolve({
        url, log, exchanges,
        close: () => new Promise((r) => {
          for (const s of sockets) s.destroy();
          server.close(() => r());
        }),
      });
    });
  });
}

/** Render a log for an assertion message: one line per message, truncated. */
export function formatLog(log, max = 400) {
  return log.map((e) => {
    const s = JSON.stringify(e.msg);
    const h = e.http ? ` [${e.http.method}${e.dir === 'in' ? ` ${e.http.status}` : ''}]` : '';
    return `${e.dir === 'out' ? '>>' : '<<'}${h} ${s.length > max ? s.slice(0, max) + '...' : s}`;
  }).join('\n');
}
