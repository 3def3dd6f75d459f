// Interop tests for the taskwire CLI itself (not the fixture server), driven by the official
// TypeScript SDK (@modelcontextprotocol/sdk 1.32.2) and its experimental task client on the
// 2025-11-25 wire:
//
//   * `taskwire serve --config examples/devtools.toml --store memory`, over Streamable HTTP
//     (`--http 127.0.0.1:0`) and over stdio (`--stdio`, through StdioClientTransport):
//       - progress_demo as a task: "step i/5" status messages, result "counted to 5";
//       - `wait` cancelled with tasks/cancel: its process tree (`sh` + two `sleep N`) is gone
//         within 5 s;
//       - `wait` past its 5 s timeout: the task ends `failed` and the `sleep N` processes are gone
//         within 4 s after that.
//     The `sleep N` processes are found by scanning /proc/*/cmdline for argv exactly
//     ["sleep", N], with N a number unique to the test.
//   * `taskwire proxy --task-tools trigger-long-running-operation --store memory -- <upstream>` in
//     front of @modelcontextprotocol/server-everything (stdio), over Streamable HTTP. The upstream
//     runs behind the stdio tap (stdio-tap.mjs), which logs what the proxy sends upstream and what
//     comes back:
//       - the long-running tool as a task: upstream progress becomes the task's statusMessage (and
//         notifications/progress with the client's own token);
//       - tasks/cancel sends notifications/cancelled upstream for the upstream tools/call's id.
//
// The binary is TASKWIRE_BIN (default <repo>/target/debug/taskwire). Loopback only. Every test and
// every request has a timeout; every server process is killed in an after/afterEach hook or a
// finally block (and, as a last resort, when the test process exits); leftover `sleep N`
// processes of a failed test are killed by pid.
//
// Run: node --test --test-timeout=60000 ts/cli.test.mjs   (from tests/interop, after `npm ci`)

import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

import {
  LISTEN_TIMEOUT_MS, REPO, TASKWIRE, TASK_TTL_MS, alive, closeConn, collect, connectClient, createTask, killPid, opts,
  pollTask, sleep, startListening, textOf,
} from './helpers.mjs';
import { STDIO_TAP, formatLog } from './wiretap.mjs';

const DEVTOOLS = path.join(REPO, 'examples', 'devtools.toml');
const EVERYTHING = path.join(REPO, 'tests', 'interop', 'node_modules', '@modelcontextprotocol', 'server-everything',
  'dist', 'index.js');
const LONG_TOOL = 'trigger-long-running-operation';
const RELATED_TASK = 'io.modelcontextprotocol/related-task';
const LISTENING = /listening on (http:\/\/127\.0\.0\.1:(\d+)\/mcp)/;
const TEST_TIMEOUT_MS = 30_000;
const PROGRESS_TEXT = /^\d+(\.\d+)?\/\d+(\.\d+)?$/; // what the proxy makes of {progress, total} without a message

// ---------------------------------------------------------------------------------------------
// Processes by argv (/proc/*/cmdline, NUL-separated)

/** A number of seconds no other test (or anything else on the machine) uses: base + 4 random decimals. */
function uniqueSeconds(base) {
  for (;;) {
    const n = Number((base + Math.random()).toFixed(4));
    // The server turns the JSON number into the argv text; keep it unambiguous (no trailing zero).
    if (/^\d+\.\d{3}[1-9]$/.test(String(n))) return n;
  }
}

/** PIDs of live processes whose argv is exactly ["sleep", arg] (argv[0] may be a path to sleep). */
function sleepPids(arg) {
  const found = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let raw;
    try { raw = fs.readFileSync(`/proc/${entry}/cmdline`, 'latin1'); } catch { continue; }
    const argv = raw.split('\0');
    if (argv.at(-1) === '') argv.pop();
    if (argv.length === 2 && path.basename(argv[0]) === 'sleep' && argv[1] === arg) {
      // A zombie still has no cmdline, but be sure: skip state Z.
      try {
        const stat = fs.readFileSync(`/proc/${entry}/stat`, 'latin1');
        if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      } catch { continue; }
      found.push(Number(entry));
    }
  }
  return found;
}

/** Poll until no `sleep arg` process is left or `ms` passed; returns the PIDs still there (empty = gone). */
async function waitNoSleep(arg, ms) {
  const end = performance.now() + ms;
  for (;;) {
    const left = sleepPids(arg);
    if (left.length === 0 || performance.now() > end) return left;
    await sleep(100);
  }
}

/** Backstop after a failed test: kill (by pid) the `sleep arg` processes it left behind. */
function killSleeps(arg) {
  for (const pid of sleepPids(arg)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

// ---------------------------------------------------------------------------------------------
// taskwire serve, over HTTP and stdio

const SERVE_ARGS = ['serve', '--config', DEVTOOLS, '--store', 'memory'];

const serveTransports = {
  http: {
    server: null,
    async setup() {
      this.server = await startListening(TASKWIRE, [...SERVE_ARGS, '--http', '127.0.0.1:0'], {
        pattern: LISTENING, label: 'taskwire serve',
      });
    },
    async teardown() { if (this.server) await killPid(this.server.proc.pid); this.server = null; },
    makeTransport() { return new StreamableHTTPClientTransport(this.server.url); },
  },
  stdio: {
    async setup() { /* each connection spawns its own `taskwire serve --stdio` */ },
    async teardown() {},
    makeTransport() {
      return new StdioClientTransport({ command: TASKWIRE, args: [...SERVE_ARGS, '--stdio'], stderr: 'ignore' });
    },
  },
};

assert.ok(fs.existsSync(TASKWIRE), `taskwire binary not found: ${TASKWIRE} (set TASKWIRE_BIN)`);
assert.ok(fs.existsSync(DEVTOOLS), `tools file not found: ${DEVTOOLS}`);

for (const [name, kind] of Object.entries(serveTransports)) {
  describe(`taskwire serve (examples/devtools.toml) over ${name}, TS SDK 1.32.2 tasks`, { timeout: 180_000 }, () => {
    let conn;
    const sleepArgs = []; // `sleep N` argv texts the tests started: killed by pid after each test

    before(async () => { await kind.setup(); }, { timeout: LISTEN_TIMEOUT_MS + 5_000 });
    after(async () => { await kind.teardown(); }, { timeout: 10_000 });

    beforeEach(async () => {
      conn = await connectClient(kind.makeTransport());
    }, { timeout: 20_000 });

    afterEach(async () => {
      try {
        await closeConn(conn);
      } finally {
        conn = null;
        for (const a of sleepArgs.splice(0)) killSleeps(a);
      }
    }, { timeout: 15_000 });

    test('progress_demo {steps:5, seconds:0.1} via callToolStream: "step i/5" statuses, result "counted to 5"', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      assert.equal(conn.negotiated(), '2025-11-25');
      assert.ok(conn.client.getServerCapabilities()?.tasks?.requests?.tools?.call, 'server advertises task-augmented tools/call');
      // The whole run is ~0.5 s and the SDK polls at the server's pollInterval, so the stream alone
      // may see only the states before and after the steps. Alongside it, tasks/get the same task
      // every 50 ms: a "step i/5" statusMessage must show up in either.
      const stream = conn.client.experimental.tasks.callToolStream(
        { name: 'progress_demo', arguments: { steps: 5, seconds: 0.1 } },
        CallToolResultSchema,
        opts({ task: { ttl: TASK_TTL_MS } }),
      );
      const msgs = [];
      const polled = [];
      let done = false;
      const poller = (async () => {
        while (!done) {
          const id = msgs[0]?.task?.taskId;
          if (id) polled.push(await conn.client.experimental.tasks.getTask(id, opts()));
          await sleep(50);
        }
      })();
      try {
        for await (const m of stream) msgs.push(m);
      } finally {
        done = true;
        await poller;
      }
      const types = msgs.map((m) => m.type);
      assert.equal(types[0], 'taskCreated', `stream: ${JSON.stringify(types)}`);
      assert.equal(types.at(-1), 'result', `stream: ${JSON.stringify(msgs.map((m) => m.error?.message ?? m.type))}`);
      const created = msgs[0].task;
      assert.equal(created.status, 'working');

      const statuses = msgs.filter((m) => m.type === 'taskStatus').map((m) => m.task);
      assert.ok(statuses.length >= 1, 'at least one taskStatus');
      for (const s of [...statuses, ...polled]) assert.equal(s.taskId, created.taskId);
      assert.equal(statuses.at(-1).status, 'completed');
      const show = (list) => JSON.stringify(list.map((s) => [s.status, s.statusMessage]));
      t.diagnostic(`pollInterval ${created.pollInterval} ms; stream statuses: ${show(statuses)}; polled: ${show(polled)}`);
      const steps = [...statuses, ...polled].filter((s) => s.status === 'working' && /step \d\/5/.test(s.statusMessage ?? ''));
      assert.ok(steps.length >= 1, `no working status carried a "step i/5" statusMessage: stream ${show(statuses)}, polled ${show(polled)}`);

      const result = msgs.at(-1).result;
      assert.notEqual(result.isError, true, JSON.stringify(result));
      assert.match(textOf(result), /counted to 5/);
    });

    test('wait as a task, cancelled: its `sleep N` processes are gone within 5 s', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const seconds = uniqueSeconds(30);
      const arg = String(seconds);
      sleepArgs.push(arg);
      const { task } = await createTask(conn.client, 'wait', { seconds });
      assert.equal(task.status, 'working');
      await pollTask(conn.client, task.taskId, (t) => t.status !== 'working' || /^waiting/.test(t.statusMessage ?? ''),
        { what: 'statusMessage "waiting …"' });
      const running = (await conn.client.experimental.tasks.getTask(task.taskId, opts()));
      assert.equal(running.status, 'working', JSON.stringify(running));
      assert.match(running.statusMessage ?? '', /^waiting/);

      // The shell starts `sleep N &` and `sleep N`: both must be there before we cancel.
      let before = [];
      for (let i = 0; i < 30 && before.length < 2; i++) { before = sleepPids(arg); if (before.length < 2) await sleep(100); }
      t.diagnostic(`sleep ${arg} pids before tasks/cancel: ${before}`);
      assert.ok(before.length >= 1, `no "sleep ${arg}" process while the task is working`);

      const cancelled = await conn.client.experimental.tasks.cancelTask(task.taskId, opts());
      assert.equal(cancelled.status, 'cancelled');
      const left = await waitNoSleep(arg, 5_000);
      assert.deepEqual(left, [], `"sleep ${arg}" processes still alive 5 s after tasks/cancel (pids ${left}; before cancel: ${before})`);
      assert.equal((await conn.client.experimental.tasks.getTask(task.taskId, opts())).status, 'cancelled');
    });

    test('wait as a task past its 5 s timeout: task failed, `sleep N` processes gone within 4 s', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const seconds = uniqueSeconds(41);
      const arg = String(seconds);
      sleepArgs.push(arg);
      const t0 = performance.now();
      const { task } = await createTask(conn.client, 'wait', { seconds });
      assert.equal(task.status, 'working');

      let during = [];
      for (let i = 0; i < 30 && during.length < 2; i++) { during = sleepPids(arg); if (during.length < 2) await sleep(100); }
      t.diagnostic(`sleep ${arg} pids while running: ${during}`);
      assert.ok(during.length >= 1, `no "sleep ${arg}" process while the task is working`);

      const seen = await pollTask(conn.client, task.taskId, (t) => t.status !== 'working',
        { deadlineMs: 15_000, intervalMs: 200, what: 'a terminal status' });
      const final = seen.at(-1);
      const elapsed = performance.now() - t0;
      t.diagnostic(`terminal after ${Math.round(elapsed)} ms: ${JSON.stringify([final.status, final.statusMessage])}`);
      assert.equal(final.status, 'failed', JSON.stringify(final));
      assert.ok(elapsed >= 4_500, `the task ended after ${Math.round(elapsed)} ms, before its 5 s timeout`);

      const left = await waitNoSleep(arg, 4_000);
      assert.deepEqual(left, [], `"sleep ${arg}" processes still alive 4 s after the task failed on its timeout (pids ${left}; while running: ${during})`);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// taskwire proxy in front of @modelcontextprotocol/server-everything (stdio, behind the tap)

/** Read the stdio tap's log: [{dir: 'out' (proxy -> upstream) | 'in', msg}]. */
function readTap(logFile) {
  try {
    return fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  } catch { return []; }
}

/** Poll the tap log until `pred(log)` returns a truthy value (returned) or `ms` passed (undefined). */
async function waitTap(logFile, pred, ms) {
  const end = performance.now() + ms;
  for (;;) {
    const v = pred(readTap(logFile));
    if (v || performance.now() > end) return v;
    await sleep(100);
  }
}

/** The upstream tools/call the proxy sent for `args` (matched on the exact arguments). */
const upstreamCall = (log, args) => log.find((e) => e.dir === 'out' && e.msg.method === 'tools/call'
  && e.msg.params?.name === LONG_TOOL && JSON.stringify(e.msg.params?.arguments) === JSON.stringify(args))?.msg;

describe('taskwire proxy --task-tools trigger-long-running-operation -- server-everything, over HTTP', { timeout: 180_000 }, () => {
  let proxy;
  let conn;
  let tmp;
  let logFile;
  let pidFile;

  before(async () => {
    assert.ok(fs.existsSync(EVERYTHING), `server-everything not installed: ${EVERYTHING} (npm ci)`);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'taskwire-proxy-'));
    logFile = path.join(tmp, 'upstream.log');
    pidFile = path.join(tmp, 'upstream.pid');
    proxy = await startListening(TASKWIRE, [
      'proxy', '--http', '127.0.0.1:0', '--task-tools', LONG_TOOL, '--store', 'memory',
      '--', process.execPath, STDIO_TAP, logFile, pidFile, '--', process.execPath, EVERYTHING, 'stdio',
    ], { pattern: LISTENING, label: 'taskwire proxy' });
  }, { timeout: LISTEN_TIMEOUT_MS + 5_000 });

  after(async () => {
    try {
      if (proxy) await killPid(proxy.proc.pid);
    } finally {
      // The tap and the upstream go when the proxy closes their stdin; make sure by pid.
      let pids = [];
      try { pids = fs.readFileSync(pidFile, 'utf8').trim().split(/\s+/).map(Number).filter(Boolean); } catch { /* never started */ }
      for (let i = 0; i < 20 && pids.some(alive); i++) await sleep(100);
      for (const pid of pids) if (alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    }
  }, { timeout: 15_000 });

  beforeEach(async () => {
    conn = await connectClient(new StreamableHTTPClientTransport(proxy.url));
  }, { timeout: 20_000 });

  afterEach(async () => {
    try { await closeConn(conn); } finally { conn = null; }
  }, { timeout: 15_000 });

  test('tools/list: the long-running tool is task-capable (optional), others are not', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { tools } = await conn.client.listTools(undefined, opts());
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    assert.ok(byName[LONG_TOOL], `upstream tool missing: ${Object.keys(byName)}`);
    assert.equal(byName[LONG_TOOL].execution?.taskSupport, 'optional');
    assert.ok(byName.echo, 'echo passes through');
    assert.ok([undefined, 'forbidden'].includes(byName.echo.execution?.taskSupport), JSON.stringify(byName.echo));
  });

  test('long-running tool as a task via callToolStream: progress statusMessage, result comes back', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const args = { duration: 3, steps: 3 };
    const progressSeen = [];
    const msgs = await collect(conn.client.experimental.tasks.callToolStream(
      { name: LONG_TOOL, arguments: args },
      CallToolResultSchema,
      opts({ task: { ttl: TASK_TTL_MS }, onprogress: (p) => progressSeen.push(p) }),
    ));
    const sent = conn.wireOut.find((m) => m.method === 'tools/call' && m.params?.name === LONG_TOOL);
    const wireProgress = conn.wireIn.filter((m) => m.method === 'notifications/progress');
    t.diagnostic(`our tools/call _meta ${JSON.stringify(sent?.params?._meta)}; onprogress: ${JSON.stringify(progressSeen)}; progress on the wire: ${JSON.stringify(wireProgress)}`);
    const types = msgs.map((m) => m.type);
    assert.equal(types[0], 'taskCreated', `stream: ${JSON.stringify(types)}`);
    assert.equal(types.at(-1), 'result', `stream: ${JSON.stringify(msgs.map((m) => m.error?.message ?? m.type))}`);
    const statuses = msgs.filter((m) => m.type === 'taskStatus').map((m) => m.task);
    t.diagnostic(`statuses: ${JSON.stringify(statuses.map((s) => [s.status, s.statusMessage]))}`);
    assert.equal(statuses.at(-1).status, 'completed');
    const progress = statuses.filter((s) => s.status === 'working' && PROGRESS_TEXT.test(s.statusMessage ?? ''));
    assert.ok(progress.length >= 1,
      `no working status carried a progress statusMessage: ${JSON.stringify(statuses.map((t) => [t.status, t.statusMessage]))}`);
    const result = msgs.at(-1).result;
    assert.notEqual(result.isError, true, JSON.stringify(result));
    assert.equal(textOf(result), 'Long running operation completed. Duration: 3 seconds, Steps: 3.');

    // 2025-11-25: the upstream's progress also reaches us as notifications/progress with OUR token
    // (the SDK put one on the task-augmented tools/call because we passed onprogress).
    const token = sent?.params?._meta?.progressToken;
    assert.ok(token !== undefined, `the SDK sent no progressToken: ${JSON.stringify(sent)}`);
    assert.ok(wireProgress.length >= 1, 'no notifications/progress reached the client');
    for (const m of wireProgress) assert.equal(m.params.progressToken, token, JSON.stringify(m));
    assert.deepEqual(progressSeen.map((p) => [p.progress, p.total]), [[1, 3], [2, 3], [3, 3]]);
    for (const p of progressSeen) assert.equal(p._meta?.[RELATED_TASK]?.taskId, msgs[0].task.taskId, JSON.stringify(p));

    // The proxy asked the upstream for progress (a progressToken on its tools/call).
    const log = readTap(logFile);
    const call = upstreamCall(log, args);
    assert.ok(call, `no upstream tools/call for ${JSON.stringify(args)}:\n${formatLog(log)}`);
    assert.ok(call.params?._meta?.progressToken !== undefined, `upstream tools/call without progressToken: ${JSON.stringify(call)}`);
  });

  test('tasks/cancel sends notifications/cancelled upstream for the upstream tools/call', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const args = { duration: 30, steps: 30 };
    const { task } = await createTask(conn.client, LONG_TOOL, args);
    assert.equal(task.status, 'working');
    const seen = await pollTask(conn.client, task.taskId, (t) => t.status !== 'working' || PROGRESS_TEXT.test(t.statusMessage ?? ''),
      { deadlineMs: 10_000, intervalMs: 200, what: 'a progress statusMessage' });
    assert.equal(seen.at(-1).status, 'working', JSON.stringify(seen.at(-1)));

    const call = upstreamCall(readTap(logFile), args);
    assert.ok(call, `no upstream tools/call for ${JSON.stringify(args)}:\n${formatLog(readTap(logFile))}`);

    const cancelled = await conn.client.experimental.tasks.cancelTask(task.taskId, opts());
    assert.equal(cancelled.status, 'cancelled');
    const note = await waitTap(logFile, (log) => log.find((e) => e.dir === 'out' && e.msg.method === 'notifications/cancelled'
      && e.msg.params?.requestId === call.id), 5_000);
    t.diagnostic(`upstream tools/call id ${JSON.stringify(call.id)}; cancel sent upstream: ${JSON.stringify(note?.msg)}`);
    assert.ok(note, `no notifications/cancelled {requestId: ${JSON.stringify(call.id)}} sent upstream within 5 s of tasks/cancel:\n${formatLog(readTap(logFile))}`);
    assert.equal((await conn.client.experimental.tasks.getTask(task.taskId, opts())).status, 'cancelled');
  });
});
