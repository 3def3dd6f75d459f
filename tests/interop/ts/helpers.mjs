// Shared helpers for the TypeScript SDK interop tests (clients.test.mjs, tasks.test.mjs, cli.test.mjs).
// Not a test file itself (node --test only picks up *.test.mjs): importing it has no side effects
// other than registering the exit hook that kills leftover server processes.
//
// Everything talks to 127.0.0.1 only. Every server process started through these helpers (or by a
// StdioClientTransport registered with trackStdio) is killed by killPid / closeConn, and as a last
// resort when the test process exits.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateTaskResultSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..', '..');
export const FIXTURES = process.env.TASKWIRE_FIXTURES || path.join(REPO, 'target', 'debug', 'taskwire-fixtures');
// The taskwire CLI itself (`taskwire serve` / `taskwire proxy`, ts/cli.test.mjs).
export const TASKWIRE = process.env.TASKWIRE_BIN || path.join(REPO, 'target', 'debug', 'taskwire');

export const TEST_TIMEOUT_MS = 20_000; // per test
export const REQUEST_TIMEOUT_MS = 10_000; // per MCP request (the SDK default is 60 s)
export const LISTEN_TIMEOUT_MS = 10_000; // waiting for the HTTP server to print its address

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A timer that does not keep the process alive (for bounding waits in hooks).
export const unrefSleep = (ms) => new Promise((r) => setTimeout(r, ms).unref());
export const opts = (extra = {}) => ({ timeout: REQUEST_TIMEOUT_MS, ...extra });

// ---------------------------------------------------------------------------------------------
// Process bookkeeping: every child we (or StdioClientTransport) start is killed at the end.

export const children = new Set();
process.on('exit', () => {
  for (const pid of children) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
});

export function alive(pid) {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

export async function killPid(pid) {
  if (!pid || !alive(pid)) { children.delete(pid); return; }
  try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
  for (let i = 0; i < 20 && alive(pid); i++) await sleep(50);
  if (alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  children.delete(pid);
}

/** Start `taskwire-fixtures --http 127.0.0.1:0` and resolve with {proc, url} once it printed its address. */
export function startHttpServer() {
  return startListening(FIXTURES, ['--http', '127.0.0.1:0'], {
    pattern: /taskwire-fixtures: listening on (http:\/\/127\.0\.0\.1:(\d+)\/mcp)/,
    label: 'fixture server',
  });
}

/**
 * Spawn `command args` (stdout ignored, stderr drained) and resolve with {proc, url, stderr()} once
 * stderr matched `pattern` (group 1 = the URL). Rejects (and kills it) if it exits first or does not
 * print the address within LISTEN_TIMEOUT_MS. The process is registered in `children`.
 */
export function startListening(command, args, { pattern, label = command, env } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...(env ? { env } : {}) });
    children.add(proc.pid);
    let stderr = '';
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      proc.kill('SIGKILL');
      reject(new Error(`${label} did not print its address within ${LISTEN_TIMEOUT_MS} ms; stderr:\n${stderr}`));
    }, LISTEN_TIMEOUT_MS);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      stderr += chunk; // keep draining so the pipe never fills
      if (stderr.length > 1_000_000) stderr = stderr.slice(-100_000);
      const m = pattern.exec(stderr);
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
        reject(new Error(`${label} exited early (code ${code}, signal ${sig}); stderr:\n${stderr}`));
      }
    });
  });
}

/** The default elicitation answer of the conformance fixtures (test_elicitation). */
const defaultElicitReply = () => ({ action: 'accept', content: { username: 'u', email: 'e@x' } });

/**
 * Connect a fresh SDK Client. Returns {client, transport, elicitations, elicitRequests, wireIn,
 * wireOut, negotiated(), setElicitReply(fn)}.
 * The negotiated protocol version is captured from transport.setProtocolVersion, which the SDK
 * Client calls after a successful initialize on any transport that has (or is given) the method.
 * `elicitations` holds the params of every elicitation/create the handler got, `elicitRequests`
 * the whole requests (including params._meta); the reply is `setElicitReply`'s function of the
 * request (default: accept {username, email}).
 */
export async function connectClient(transport) {
  let negotiated;
  const origSet = transport.setProtocolVersion?.bind(transport);
  transport.setProtocolVersion = (v) => { negotiated = v; origSet?.(v); };

  const client = new Client(
    { name: 'taskwire-interop-ts', version: '0.0.1' },
    { capabilities: { elicitation: {} } },
  );
  const elicitations = [];
  const elicitRequests = [];
  let elicitReply = defaultElicitReply;
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    elicitations.push(req.params);
    elicitRequests.push(req);
    return elicitReply(req);
  });
  // Register the stdio child as soon as it exists, even if connect fails.
  const origStart = transport.start.bind(transport);
  transport.start = async () => {
    try { return await origStart(); } finally { trackStdio(transport); }
  };
  await client.connect(transport, { timeout: REQUEST_TIMEOUT_MS });
  trackStdio(transport);

  // Wire tap: every JSON-RPC message in arrival order (in) and every message sent (out), so tests can
  // check what the server actually put on the wire, independently of how the SDK dispatches it.
  const wireIn = [];
  const wireOut = [];
  const origOnMessage = transport.onmessage;
  transport.onmessage = (msg, extra) => { wireIn.push(msg); origOnMessage?.(msg, extra); };
  const origSend = transport.send.bind(transport);
  transport.send = (msg, options) => { wireOut.push(msg); return origSend(msg, options); };
  return {
    client, transport, elicitations, elicitRequests, wireIn, wireOut,
    negotiated: () => negotiated,
    setElicitReply: (fn) => { elicitReply = fn; },
  };
}

function trackStdio(transport) {
  if (transport instanceof StdioClientTransport && transport.pid) children.add(transport.pid);
}

/** Close a connection from connectClient; the stdio server process is always killed. */
export async function closeConn(conn) {
  if (!conn) return;
  const pid = conn.transport instanceof StdioClientTransport ? conn.transport.pid : null;
  try {
    if (conn.transport instanceof StreamableHTTPClientTransport) {
      await Promise.race([conn.transport.terminateSession().catch(() => {}), unrefSleep(5_000)]);
    }
    await Promise.race([conn.client.close(), unrefSleep(5_000)]);
  } finally {
    if (pid) await killPid(pid);
  }
}

/**
 * The transports every suite runs over. stdio: each connection spawns its own
 * `taskwire-fixtures --stdio` (through StdioClientTransport); http: one server per suite
 * (setup/teardown), each connection is its own session on it.
 */
export function makeTransports() {
  return {
    stdio: {
      async setup() { /* each connection spawns its own stdio server through StdioClientTransport */ },
      async teardown() {},
      makeTransport() {
        return new StdioClientTransport({ command: FIXTURES, args: ['--stdio'], stderr: 'ignore' });
      },
    },
    http: {
      server: null,
      async setup() { this.server = await startHttpServer(); },
      async teardown() { if (this.server) await killPid(this.server.proc.pid); this.server = null; },
      makeTransport() { return new StreamableHTTPClientTransport(this.server.url); },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Tasks (2025-11-25) through the SDK's request API and its experimental tasks client.

export const TASK_TTL_MS = 60_000;

export const textOf = (result) => (result?.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');

/** Task-augmented tools/call (interop.md §9b): resolves with the CreateTaskResult. */
export function createTask(client, name, args) {
  return client.request(
    { method: 'tools/call', params: { name, arguments: args, task: { ttl: TASK_TTL_MS } } },
    CreateTaskResultSchema,
    opts(),
  );
}

/** Poll tasks/get until `pred(task)` holds; returns every observed task (last one satisfies pred). */
export async function pollTask(client, taskId, pred, { deadlineMs = 10_000, intervalMs = 100, what = 'the expected state' } = {}) {
  const seen = [];
  const end = performance.now() + deadlineMs;
  for (;;) {
    const task = await client.experimental.tasks.getTask(taskId, opts());
    seen.push(task);
    if (pred(task)) return seen;
    if (performance.now() > end) {
      assert.fail(`task ${taskId} did not reach ${what} within ${deadlineMs} ms; saw ${JSON.stringify(seen.map((t) => [t.status, t.statusMessage]))}`);
    }
    await sleep(intervalMs);
  }
}

/** Drain an async generator (callToolStream) into an array. */
export async function collect(stream) {
  const out = [];
  for await (const msg of stream) out.push(msg);
  return out;
}
