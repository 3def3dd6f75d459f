// mcpdo (npm @modelcontextprotocol/inspector 2.12.0, the inspector's connection CLI) as a real
// task client of taskwire-fixtures: `tools/call slow_compute ... --task` in the legacy era
// (2025-11-25: initialize, client-requested `params.task`, tasks/get + tasks/result) and in the
// modern era (2026-07-28: server/discover + per-request _meta, extension
// io.modelcontextprotocol/tasks, the server decides to create the task, tasks/get inlines the
// result), over Streamable HTTP and over stdio (`mcpdo connect -- <cmd>`).
//
// mcpdo runs commands through a background daemon that holds the connections. Everything it keeps
// (catalog, secrets file, daemon socket/lock/log) lives under a fresh temp HOME (gotcha G12 of
// docs/interop.md); the daemon is stopped with `mcpdo daemon stop` in the after hook and killed by
// pid if it is still there. Every mcpdo command is bounded by MCPDO_TIMEOUT_MS.
//
// Besides what mcpdo prints (--format json), the tests check the wire through taps (wiretap.mjs):
// a loopback logging proxy in front of the HTTP server, and a stdio relay in front of
// `taskwire-fixtures --stdio` that also records the server's pid so the after hook can kill it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { FIXTURES, REPO, alive, children, killPid, sleep, startHttpServer } from './helpers.mjs';
import { STDIO_TAP, formatLog, startHttpTap } from './wiretap.mjs';

const MCPDO = path.join(REPO, 'tests', 'interop', 'node_modules', '@modelcontextprotocol', 'inspector',
  'clients', 'mcpdo', 'build', 'mcp-bin.js');
const MCPDO_TIMEOUT_MS = 20_000; // per mcpdo command (a connect is ~1 s, a 1 s task call ~1.5 s)
const TEST_TIMEOUT_MS = 45_000;

const LEGACY = '2025-11-25';
const MODERN = '2026-07-28';
const TASKS_EXT = 'io.modelcontextprotocol/tasks';
const RELATED_TASK = 'io.modelcontextprotocol/related-task';

// ---------------------------------------------------------------------------------------------
// mcpdo runner, isolated in a temp HOME

let home; // temp dir: HOME, catalog, daemon dir, stdio tap logs
let daemonPid = null;

function mcpdoEnv() {
  const env = { ...process.env };
  // Never reach a daemon / catalog / config outside our temp dir.
  for (const k of ['MCP_INSPECTOR_DAEMON_DIR', 'MCP_INSPECTOR_DAEMON_TOKEN', 'MCP_STORAGE_DIR',
    'MCP_CLIENT_CONFIG_PATH', 'MCP_INSPECTOR_SECRET_KEY', 'MCP_INSPECTOR_SECRET_KEY_FILE',
    'MCP_INSPECTOR_SECRET_FILE', 'MCP_ALLOW_DEFAULT_CONNECTION', 'XDG_RUNTIME_DIR', 'DBUS_SESSION_BUS_ADDRESS']) delete env[k];
  return {
    ...env,
    HOME: home,
    USERPROFILE: home,
    MCP_CATALOG_PATH: path.join(home, 'mcp.json'),
    MCP_INSPECTOR_SECRET_STORE: 'file', // no keychain here; keep the (empty) secrets file in the temp HOME
    MCP_AUTO_OPEN_ENABLED: 'false',
    NO_COLOR: '1',
  };
}

/** Run `mcpdo ...args`, bounded; resolves {code, signal, stdout, stderr, ms, cmd}. */
function mcpdo(args, { timeout = MCPDO_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const cmd = `mcpdo ${args.join(' ')}`;
    const p = spawn(process.execPath, [MCPDO, ...args], { env: mcpdoEnv(), cwd: home, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(p.pid);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    p.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    p.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { timedOut = true; p.kill('SIGKILL'); }, timeout);
    p.on('error', (e) => { clearTimeout(timer); children.delete(p.pid); reject(e); });
    // 'exit', not 'close': a daemon spawned by this command must not be able to hold us up
    // through inherited pipes. Give the pipes a moment to drain after the exit.
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      children.delete(p.pid);
      setTimeout(() => {
        const r = { code, signal, stdout, stderr, ms: Date.now() - t0, cmd };
        if (timedOut) reject(new Error(`${cmd}: no exit within ${timeout} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
        else resolve(r);
      }, 50);
    });
  });
}

/** Run mcpdo with --format json, require exit 0, parse stdout. */
async function mcpdoJson(args, opts) {
  const r = await mcpdo(['--format', 'json', ...args], opts);
  const where = `${r.cmd} (exit ${r.code}${r.signal ? `, ${r.signal}` : ''}, ${r.ms} ms)\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  assert.equal(r.code, 0, `non-zero exit: ${where}`);
  try {
    return { json: JSON.parse(r.stdout), where };
  } catch (e) {
    assert.fail(`stdout is not JSON (${e.message}): ${where}`);
  }
}

async function noteDaemonPid() {
  if (daemonPid) return;
  const r = await mcpdo(['--format', 'json', 'daemon', 'status'], { timeout: 10_000 });
  try {
    const pid = JSON.parse(r.stdout).pid;
    if (Number.isInteger(pid) && pid > 0) {
      daemonPid = pid;
      children.add(pid); // last-resort kill at process exit (helpers.mjs)
    }
  } catch { /* no daemon yet */ }
}

// ---------------------------------------------------------------------------------------------
// wire helpers

async function waitFor(fn, ms = 2_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v || Date.now() > end) return v;
    await sleep(25);
  }
}

/** The response (an 'in' entry) to the request with id `id`, after log position `from`. */
const responseTo = (log, id, from = 0) =>
  log.slice(from).find((e) => e.dir === 'in' && e.msg.id === id && ('result' in e.msg || 'error' in e.msg));

const requestsOf = (log, method, from = 0) => log.slice(from).filter((e) => e.dir === 'out' && e.msg.method === method);

const resultText = (result) => (result?.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');

// ---------------------------------------------------------------------------------------------
// the scenario: connect in one era, run a task-augmented tools/call, check output and wire

const LABEL = 'x';
const SECONDS = 1;
const EXPECTED_TEXT = `Computed ${LABEL} in ${SECONDS} s`;

/**
 * @param conn    connection name
 * @param era     'legacy' | 'modern'
 * @param target  connect arguments after `connect` (URL + --transport, or -- cmd...)
 * @param wire    () => current log (array of {dir, msg})
 */
async function taskCallScenario({ conn, era, target, wire }) {
  const from = wire().length;

  // connect
  const { json: connected, where: connWhere } = await mcpdoJson(['connect', '--connection', conn, '--era', era, ...target]);
  assert.equal(connected.name, conn, connWhere);
  assert.equal(connected.protocolEra, era, connWhere);
  await noteDaemonPid();

  const { json: shown, where: showWhere } = await mcpdoJson(['connections/show', conn]);
  assert.equal(shown.protocolEra, era, showWhere);
  if (era === 'legacy') {
    assert.equal(shown.protocolVersion, LEGACY, showWhere);
    assert.ok(shown.capabilities?.tasks?.requests?.tools?.call, `server must advertise 2025-11-25 task-augmented tools/call: ${showWhere}`);
  } else {
    assert.equal(shown.protocolVersion, MODERN, showWhere);
    assert.ok(shown.capabilities?.extensions?.[TASKS_EXT], `server must advertise ${TASKS_EXT}: ${showWhere}`);
  }

  // the task call
  const callFrom = wire().length;
  const { json: out, where } = await mcpdoJson(['--conn', conn, 'tools/call', 'slow_compute', `seconds:=${SECONDS}`, `label:=${LABEL}`, '--task']);
  assert.notEqual(out.isError, true, `tool error: ${where}`);
  assert.equal(resultText(out), EXPECTED_TEXT, where);

  // what went over the wire for this call
  const calls = await waitFor(() => {
    const c = requestsOf(wire(), 'tools/call', callFrom).filter((e) => e.msg.params?.name === 'slow_compute');
    return c.length && responseTo(wire(), c[0].msg.id, callFrom) ? c : null;
  });
  const wireDump = () => `\nwire (this connection):\n${formatLog(wire().slice(from))}`;
  assert.ok(calls, `no answered tools/call slow_compute on the wire${wireDump()}`);
  assert.equal(calls.length, 1, `expected one tools/call${wireDump()}`);
  const call = calls[0].msg;
  const created = responseTo(wire(), call.id, callFrom).msg;
  assert.ok(created.result, `tools/call failed on the wire${wireDump()}`);

  let taskId;
  if (era === 'legacy') {
    // 2025-11-25: the client asks for a task; the server answers CreateTaskResult {task:{...}}
    assert.ok(call.params?.task && typeof call.params.task === 'object', `mcpdo --task must send params.task${wireDump()}`);
    taskId = created.result.task?.taskId;
    assert.ok(typeof taskId === 'string' && taskId, `CreateTaskResult {task:{taskId}} expected${wireDump()}`);
    assert.ok(['working', 'completed'].includes(created.result.task.status), wireDump());
    // mcpdo prints the final result with the related-task marker of that task
    assert.equal(out._meta?.[RELATED_TASK]?.taskId, taskId, `printed result must name the task: ${where}`);
    // it polled tasks/get and fetched the payload with tasks/result
    const gets = await waitFor(() => {
      const g = requestsOf(wire(), 'tasks/get', callFrom).filter((e) => e.msg.params?.taskId === taskId);
      return g.length && responseTo(wire(), g.at(-1).msg.id, callFrom) ? g : null;
    });
    assert.ok(gets, `mcpdo should poll tasks/get${wireDump()}`);
    const lastGet = responseTo(wire(), gets.at(-1).msg.id, callFrom).msg;
    assert.equal(lastGet.result?.status, 'completed', wireDump());
    const results = requestsOf(wire(), 'tasks/result', callFrom).filter((e) => e.msg.params?.taskId === taskId);
    assert.equal(results.length, 1, `mcpdo should fetch tasks/result once${wireDump()}`);
    const payload = (await waitFor(() => responseTo(wire(), results[0].msg.id, callFrom)))?.msg;
    assert.equal(resultText(payload?.result), EXPECTED_TEXT, wireDump());
  } else {
    // 2026-07-28 + tasks extension: per-request _meta envelope, the server decides to create the
    // task and answers a flat CreateTaskResult; tasks/get returns the result inline when done
    assert.equal(call.params?._meta?.['io.modelcontextprotocol/protocolVersion'], MODERN, wireDump());
    assert.ok(call.params?._meta?.['io.modelcontextprotocol/clientCapabilities']?.extensions?.[TASKS_EXT],
      `mcpdo should declare ${TASKS_EXT} on the call${wireDump()}`);
    assert.ok(requestsOf(wire(), 'server/discover', from).length >= 1, `modern connect should use server/discover${wireDump()}`);
    assert.equal(requestsOf(wire(), 'initialize', from).length, 0, `modern era must not initialize${wireDump()}`);
    assert.equal(created.result.resultType, 'task', `slow_compute should run as a task (resultType "task")${wireDump()}`);
    taskId = created.result.taskId;
    assert.ok(typeof taskId === 'string' && taskId, wireDump());
    assert.ok(Number.isInteger(created.result.ttlMs), wireDump());
    const gets = await waitFor(() => {
      const g = requestsOf(wire(), 'tasks/get', callFrom).filter((e) => e.msg.params?.taskId === taskId);
      return g.length && responseTo(wire(), g.at(-1).msg.id, callFrom) ? g : null;
    });
    assert.ok(gets, `mcpdo should poll tasks/get${wireDump()}`);
    const lastGet = responseTo(wire(), gets.at(-1).msg.id, callFrom).msg;
    assert.equal(lastGet.result?.status, 'completed', wireDump());
    assert.equal(resultText(lastGet.result?.result), EXPECTED_TEXT, wireDump());
    assert.equal(requestsOf(wire(), 'tasks/result', callFrom).length, 0, `tasks/result does not exist in the extension${wireDump()}`);
  }

  // and mcpdo's own task view of it afterwards
  const { json: got, where: getWhere } = await mcpdoJson(['--conn', conn, 'tasks/get', taskId]);
  assert.equal(got.task?.taskId, taskId, getWhere);
  assert.equal(got.task?.status, 'completed', getWhere);
  if (era === 'modern') assert.equal(resultText(got.task?.raw?.result), EXPECTED_TEXT, getWhere);
  return taskId;
}

// ---------------------------------------------------------------------------------------------

let http = null; // {server, tap}
const stdioTaps = []; // {log, pidFile}

before(async () => {
  assert.ok(fs.existsSync(MCPDO), `mcpdo not installed at ${MCPDO} (npm ci in tests/interop)`);
  assert.ok(fs.existsSync(FIXTURES), `fixture binary not found: ${FIXTURES}`);
  // short path: the daemon's unix socket lives in $HOME/.mcp-inspector (107-byte limit)
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'tw-mcpdo-'));
});

after(async () => {
  if (home) {
    try { await mcpdo(['daemon', 'stop'], { timeout: 10_000 }); } catch { /* killed below */ }
    if (daemonPid) {
      for (let i = 0; i < 40 && alive(daemonPid); i++) await sleep(50);
      await killPid(daemonPid);
    }
  }
  for (const t of stdioTaps) {
    let pids = [];
    try { pids = fs.readFileSync(t.pidFile, 'utf8').trim().split(/\s+/).map(Number).filter((n) => n > 0); } catch { /* never started */ }
    for (const pid of pids) await killPid(pid);
  }
  if (http) {
    await http.tap?.close();
    if (http.server) await killPid(http.server.proc.pid);
  }
  if (home) fs.rmSync(home, { recursive: true, force: true });
});

describe('mcpdo over Streamable HTTP', () => {
  before(async () => {
    http = {};
    http.server = await startHttpServer();
    http.tap = await startHttpTap(http.server.url);
  });

  for (const era of ['legacy', 'modern']) {
    test(`tools/call --task, ${era} era`, { timeout: TEST_TIMEOUT_MS }, async () => {
      await taskCallScenario({
        conn: `http-${era}`,
        era,
        target: [http.tap.url.href, '--transport', 'http'],
        wire: () => http.tap.log,
      });
    });
  }
});

describe('mcpdo over stdio (connect -- taskwire-fixtures --stdio)', () => {
  for (const era of ['legacy', 'modern']) {
    test(`tools/call --task, ${era} era`, { timeout: TEST_TIMEOUT_MS }, async () => {
      const tap = { logFile: path.join(home, `stdio-${era}.log`), pidFile: path.join(home, `stdio-${era}.pid`) };
      stdioTaps.push(tap);
      const readLog = () => {
        try {
          return fs.readFileSync(tap.logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
        } catch { return []; }
      };
      await taskCallScenario({
        conn: `stdio-${era}`,
        era,
        target: ['--', process.execPath, STDIO_TAP, tap.logFile, tap.pidFile, '--', FIXTURES, '--stdio'],
        wire: readLog,
      });
    });
  }
});
