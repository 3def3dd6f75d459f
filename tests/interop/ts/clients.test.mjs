// Interop tests: the official TypeScript MCP SDK (@modelcontextprotocol/sdk 1.32.2, pinned in
// ../package.json) as a real client of the taskwire fixture server, over stdio and over
// Streamable HTTP. The fixture binary is $TASKWIRE_FIXTURES (default: target/debug/taskwire-fixtures).
//
// Everything talks to 127.0.0.1 only. Every test has a timeout, every request has a timeout, and every
// server process this file starts is killed in an after/afterEach hook (and, as a last resort, when the
// test process exits).
//
// Run: node --test ts/        (from tests/interop, after `npm ci`)

import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, ElicitRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..', '..');
const FIXTURES = process.env.TASKWIRE_FIXTURES || path.join(REPO, 'target', 'debug', 'taskwire-fixtures');

const TEST_TIMEOUT_MS = 20_000; // per test
const REQUEST_TIMEOUT_MS = 10_000; // per MCP request (the SDK default is 60 s)
const LISTEN_TIMEOUT_MS = 10_000; // waiting for the HTTP server to print its address

// ---------------------------------------------------------------------------------------------
// Process bookkeeping: every child we (or StdioClientTransport) start is killed at the end.

const children = new Set();
process.on('exit', () => {
  for (const pid of children) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
});

function alive(pid) {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

async function killPid(pid) {
  if (!pid || !alive(pid)) { children.delete(pid); return; }
  try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
  for (let i = 0; i < 20 && alive(pid); i++) await sleep(50);
  if (alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  children.delete(pid);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A timer that does not keep the process alive (for bounding waits in hooks).
const unrefSleep = (ms) => new Promise((r) => setTimeout(r, ms).unref());

/** Start `taskwire-fixtures --http 127.0.0.1:0` and resolve with {proc, url} once it printed its address. */
function startHttpServer() {
  return new Promise((resolve, reject) => {
    const proc = spawn(FIXTURES, ['--http', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(proc.pid);
    let stderr = '';
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      proc.kill('SIGKILL');
      reject(new Error(`fixture server did not print its address within ${LISTEN_TIMEOUT_MS} ms; stderr:\n${stderr}`));
    }, LISTEN_TIMEOUT_MS);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      stderr += chunk; // keep draining so the pipe never fills
      if (stderr.length > 1_000_000) stderr = stderr.slice(-100_000);
      const m = /taskwire-fixtures: listening on (http:\/\/127\.0\.0\.1:(\d+)\/mcp)/.exec(stderr);
      if (m && !settled) {
        settled = true;
        clearTimeout(timer);
        resolve({ proc, url: new URL(m[1]), stderr: () => stderr });
      }
    });
    proc.on('error', (e) => { if (!settled) { settled = true; clearTimeout(timer); reject(e); } });
    proc.on('exit', (code, sig) => {
      children.delete(proc.pid);
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`fixture server exited early (code ${code}, signal ${sig}); stderr:\n${stderr}`));
      }
    });
  });
}

/**
 * Connect a fresh SDK Client. Returns {client, transport, negotiated()}.
 * The negotiated protocol version is captured from transport.setProtocolVersion, which the SDK
 * Client calls after a successful initialize on any transport that has (or is given) the method.
 */
async function connectClient(transport) {
  let negotiated;
  const origSet = transport.setProtocolVersion?.bind(transport);
  transport.setProtocolVersion = (v) => { negotiated = v; origSet?.(v); };

  const client = new Client(
    { name: 'taskwire-interop-ts', version: '0.0.1' },
    { capabilities: { elicitation: {} } },
  );
  const elicitations = [];
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    elicitations.push(req.params);
    return { action: 'accept', content: { username: 'u', email: 'e@x' } };
  });
  await client.connect(transport, { timeout: REQUEST_TIMEOUT_MS });

  // Wire tap: every JSON-RPC message in arrival order (in) and every message sent (out), so tests can
  // check what the server actually put on the wire, independently of how the SDK dispatches it.
  const wireIn = [];
  const wireOut = [];
  const origOnMessage = transport.onmessage;
  transport.onmessage = (msg, extra) => { wireIn.push(msg); origOnMessage?.(msg, extra); };
  const origSend = transport.send.bind(transport);
  transport.send = (msg, options) => { wireOut.push(msg); return origSend(msg, options); };
  return { client, transport, elicitations, wireIn, wireOut, negotiated: () => negotiated };
}

const opts = (extra = {}) => ({ timeout: REQUEST_TIMEOUT_MS, ...extra });

// ---------------------------------------------------------------------------------------------
// The same suite for both transports.

const transports = {
  stdio: {
    async setup() { /* each test spawns its own stdio server through StdioClientTransport */ },
    async teardown() {},
    makeTransport() {
      const t = new StdioClientTransport({ command: FIXTURES, args: ['--stdio'], stderr: 'ignore' });
      return t;
    },
  },
  http: {
    server: null,
    async setup() { this.server = await startHttpServer(); },
    async teardown() { if (this.server) await killPid(this.server.proc.pid); this.server = null; },
    makeTransport() { return new StreamableHTTPClientTransport(this.server.url); },
  },
};

assert.ok(existsSync(FIXTURES), `fixture binary not found: ${FIXTURES} (set TASKWIRE_FIXTURES)`);

for (const [name, kind] of Object.entries(transports)) {
  describe(`TS SDK 1.32.2 over ${name}`, { timeout: 120_000 }, () => {
    let conn; // fresh client per test

    before(async () => { await kind.setup(); }, { timeout: LISTEN_TIMEOUT_MS + 5_000 });
    after(async () => { await kind.teardown(); }, { timeout: 10_000 });

    beforeEach(async () => {
      const transport = kind.makeTransport();
      conn = await connectClient(transport);
      if (transport instanceof StdioClientTransport && transport.pid) children.add(transport.pid);
    }, { timeout: TEST_TIMEOUT_MS });

    afterEach(async () => {
      if (!conn) return;
      const pid = conn.transport instanceof StdioClientTransport ? conn.transport.pid : null;
      try {
        if (conn.transport instanceof StreamableHTTPClientTransport) {
          await conn.transport.terminateSession().catch(() => {});
        }
        await Promise.race([conn.client.close(), unrefSleep(5_000)]);
      } finally {
        if (pid) await killPid(pid); // the stdio server process is always killed
        conn = null;
      }
    }, { timeout: 15_000 });

    test('connect: negotiates 2025-11-25 with taskwire-fixtures', { timeout: TEST_TIMEOUT_MS }, async () => {
      assert.equal(conn.negotiated(), '2025-11-25');
      const info = conn.client.getServerVersion();
      assert.equal(info?.name, 'taskwire-fixtures');
      assert.ok(conn.client.getServerCapabilities()?.tools, 'server advertises the tools capability');
    });

    test('listTools contains echo, sleep_ms, test_simple_text', { timeout: TEST_TIMEOUT_MS }, async () => {
      const { tools } = await conn.client.listTools(undefined, opts());
      const names = tools.map((t) => t.name);
      for (const want of ['echo', 'sleep_ms', 'test_simple_text']) {
        assert.ok(names.includes(want), `tools/list lacks ${want}: ${names.join(', ')}`);
      }
    });

    test('callTool echo returns the exact text', { timeout: TEST_TIMEOUT_MS }, async () => {
      const text = `hello ✓ from ts/${name} "quoted" \n newline`;
      const res = await conn.client.callTool({ name: 'echo', arguments: { text } }, CallToolResultSchema, opts());
      assert.notEqual(res.isError, true);
      assert.deepEqual(res.content, [{ type: 'text', text }]);
    });

    test('progress: test_tool_with_progress reports 0..100 of 100', { timeout: TEST_TIMEOUT_MS }, async () => {
      const seen = [];
      const res = await conn.client.callTool(
        { name: 'test_tool_with_progress', arguments: {} },
        CallToolResultSchema,
        opts({ onprogress: (p) => seen.push(p) }),
      );
      assert.notEqual(res.isError, true);

      // What the server sent: >= 3 notifications/progress for our token, non-decreasing, ending at
      // 100/100, all before the tools/call response (arrival order on the wire).
      const req = conn.wireOut.find((m) => m.method === 'tools/call' && m.params?.name === 'test_tool_with_progress');
      assert.ok(req, 'tools/call was sent');
      const token = req.params._meta?.progressToken;
      assert.notEqual(token, undefined, 'the SDK attached a progressToken (onprogress given)');
      const respIdx = conn.wireIn.findIndex((m) => m.id === req.id && ('result' in m || 'error' in m));
      assert.ok(respIdx >= 0, 'response seen on the wire');
      const progress = conn.wireIn
        .map((m, i) => ({ m, i }))
        .filter(({ m }) => m.method === 'notifications/progress' && m.params?.progressToken === token);
      assert.ok(progress.length >= 3, `expected >= 3 progress notifications, wire had ${JSON.stringify(progress.map((x) => x.m.params))}`);
      for (const { m, i } of progress) {
        assert.ok(i < respIdx, `progress ${JSON.stringify(m.params)} arrived after the response`);
      }
      const vals = progress.map(({ m }) => m.params);
      for (let i = 1; i < vals.length; i++) {
        assert.ok(vals[i].progress >= vals[i - 1].progress, `progress decreased: ${JSON.stringify(vals)}`);
      }
      assert.equal(vals.at(-1).progress, 100);
      assert.equal(vals.at(-1).total, 100);

      // What the SDK handed to onprogress. TS SDK 1.32.x dispatches notifications on a microtask but
      // responses synchronously and drops the progress handler on the response, so when the final
      // progress notification and the response arrive in the same read (typical over stdio pipes)
      // the SDK silently loses that last callback although the server sent it in order. Known client
      // bug: modelcontextprotocol/typescript-sdk#2580 (fix proposed in PR #2586). Under load more
      // than the last one can share that read. So here: onprogress fired, and every callback matches
      // the wire notifications in order (the strict >= 3 / 100-of-100 checks are on the wire above).
      assert.ok(seen.length >= 1, `onprogress got ${JSON.stringify(seen)}`);
      assert.ok(seen.length <= vals.length);
      seen.forEach((p, i) => {
        assert.equal(p.progress, vals[i].progress);
        assert.equal(p.total, vals[i].total);
      });
    });

    test('cancellation with an AbortSignal; the client stays usable', { timeout: TEST_TIMEOUT_MS }, async () => {
      const ac = new AbortController();
      const t0 = performance.now();
      const timer = setTimeout(() => ac.abort('interop-cancel'), 200);
      try {
        await assert.rejects(
          conn.client.callTool(
            { name: 'sleep_ms', arguments: { ms: 10_000 } },
            CallToolResultSchema,
            { signal: ac.signal, timeout: 15_000 },
          ),
          (e) => { assert.match(String(e?.message ?? e), /interop-cancel/); return true; },
        );
      } finally {
        clearTimeout(timer);
      }
      const elapsed = performance.now() - t0;
      assert.ok(elapsed < 3_000, `aborted call took ${Math.round(elapsed)} ms to reject (sleep was 10 s)`);
      const call = conn.wireOut.find((m) => m.method === 'tools/call' && m.params?.name === 'sleep_ms');
      const cancelled = conn.wireOut.find((m) => m.method === 'notifications/cancelled');
      assert.ok(cancelled, 'the SDK sent notifications/cancelled');
      assert.equal(cancelled.params.requestId, call.id);

      // The same connection keeps working after notifications/cancelled.
      await conn.client.ping(opts());
      const res = await conn.client.callTool({ name: 'echo', arguments: { text: 'after-cancel' } }, CallToolResultSchema, opts());
      assert.deepEqual(res.content, [{ type: 'text', text: 'after-cancel' }]);
      // And a short sleep completes normally (the server is not wedged behind the cancelled one).
      const t1 = performance.now();
      const short = await conn.client.callTool({ name: 'sleep_ms', arguments: { ms: 50 } }, CallToolResultSchema, opts());
      assert.notEqual(short.isError, true);
      assert.ok(performance.now() - t1 < 5_000);
      // The spec says the receiver of notifications/cancelled SHOULD NOT answer the cancelled request.
      assert.deepEqual(conn.wireIn.filter((m) => m.id === call.id), [], 'no response for the cancelled request');
    });

    test('elicitation round trip: test_elicitation -> elicitation/create -> accept', { timeout: TEST_TIMEOUT_MS }, async () => {
      const res = await conn.client.callTool(
        { name: 'test_elicitation', arguments: { message: 'Who are you?' } },
        CallToolResultSchema,
        opts(),
      );
      assert.equal(conn.elicitations.length, 1, 'exactly one elicitation/create reached the client');
      assert.equal(conn.elicitations[0].message, 'Who are you?');
      assert.notEqual(res.isError, true, JSON.stringify(res));
      const text = res.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');
      assert.ok(text.includes('u'), `result text should carry the accepted content: ${text}`);
      assert.match(text, /accept/i, `result text should report the accept action: ${text}`);
    });

    test('tool error: test_error_handling -> isError true', { timeout: TEST_TIMEOUT_MS }, async () => {
      const res = await conn.client.callTool({ name: 'test_error_handling', arguments: {} }, CallToolResultSchema, opts());
      assert.equal(res.isError, true);
      assert.ok(res.content.length >= 1 && res.content[0].type === 'text');
    });

    test('unknown tool -> MCP error -32602', { timeout: TEST_TIMEOUT_MS }, async () => {
      await assert.rejects(
        conn.client.callTool({ name: 'no_such_tool_xyz', arguments: {} }, CallToolResultSchema, opts()),
        (e) => {
          assert.ok(e instanceof McpError, `expected McpError, got ${e}`);
          assert.equal(e.code, -32602);
          return true;
        },
      );
    });
  });
}
