// Interop tests for durable tasks on the 2025-11-25 wire (experimental core tasks): the official
// TypeScript SDK (@modelcontextprotocol/sdk 1.32.2) experimental task client
// (client.experimental.tasks.callToolStream / getTask / getTaskResult / listTasks / cancelTask and
// task-augmented client.request(..., CreateTaskResultSchema)) against taskwire-fixtures, over stdio
// and over Streamable HTTP. See docs: shared/docs/interop.md §6, §9b; protocol.md §3.
//
// Task fixture tools (taskwire-fixtures): slow_compute (optional), failing_job (required),
// protocol_error_job (optional), confirm_delete (optional, elicitation), multi_input (optional, two
// elicitations), greet (never a task).
//
// Loopback only. Every test and every request has a timeout; every server process is killed in an
// afterEach/after hook or a finally block (and, as a last resort, when the test process exits).
//
// Run: node --test ts/        (from tests/interop, after `npm ci`)

import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';

import { CallToolResultSchema, CreateTaskResultSchema, McpError } from '@modelcontextprotocol/sdk/types.js';

import {
  FIXTURES, LISTEN_TIMEOUT_MS, TASK_TTL_MS, TEST_TIMEOUT_MS, closeConn, collect, connectClient, createTask, makeTransports,
  opts, pollTask, sleep, textOf,
} from './helpers.mjs';

const RELATED_TASK = 'io.modelcontextprotocol/related-task';

function assertMcpError(code) {
  return (e) => {
    assert.ok(e instanceof McpError, `expected McpError, got ${e?.stack ?? e}`);
    assert.equal(e.code, code, `expected code ${code}, got ${e.code}: ${e.message}`);
    return true;
  };
}

function assertTaskShape(task) {
  assert.equal(typeof task.taskId, 'string');
  assert.ok(task.taskId.length > 0);
  assert.equal(typeof task.createdAt, 'string');
  assert.equal(typeof task.lastUpdatedAt, 'string');
  assert.ok('ttl' in task, `task lacks the ttl key: ${JSON.stringify(task)}`);
}

const transports = makeTransports();

assert.ok(existsSync(FIXTURES), `fixture binary not found: ${FIXTURES} (set TASKWIRE_FIXTURES)`);

for (const [name, kind] of Object.entries(transports)) {
  describe(`TS SDK 1.32.2 tasks (2025-11-25) over ${name}`, { timeout: 180_000 }, () => {
    let conn; // fresh client per test

    before(async () => { await kind.setup(); }, { timeout: LISTEN_TIMEOUT_MS + 5_000 });
    after(async () => { await kind.teardown(); }, { timeout: 10_000 });

    beforeEach(async () => {
      conn = await connectClient(kind.makeTransport());
    }, { timeout: TEST_TIMEOUT_MS });

    afterEach(async () => {
      try {
        await closeConn(conn); // the stdio server process is always killed
      } finally {
        conn = null;
      }
    }, { timeout: 15_000 });

    test('capabilities: tasks {list, cancel, requests.tools.call}; tools/list shows execution.taskSupport', { timeout: TEST_TIMEOUT_MS }, async () => {
      assert.equal(conn.negotiated(), '2025-11-25');
      const tasks = conn.client.getServerCapabilities()?.tasks;
      assert.ok(tasks, 'server advertises capabilities.tasks');
      assert.ok(tasks.list, `tasks.list missing: ${JSON.stringify(tasks)}`);
      assert.ok(tasks.cancel, `tasks.cancel missing: ${JSON.stringify(tasks)}`);
      assert.ok(tasks.requests?.tools?.call, `tasks.requests.tools.call missing: ${JSON.stringify(tasks)}`);

      const { tools } = await conn.client.listTools(undefined, opts());
      const support = Object.fromEntries(tools.map((t) => [t.name, t.execution?.taskSupport]));
      assert.equal(support.slow_compute, 'optional');
      assert.equal(support.failing_job, 'required');
      assert.equal(support.protocol_error_job, 'optional');
      assert.equal(support.confirm_delete, 'optional');
      assert.equal(support.multi_input, 'optional');
      assert.equal(support.test_tool_with_task, 'required');
      assert.ok(support.greet === undefined || support.greet === 'forbidden', `greet taskSupport: ${support.greet}`);
    });

    test('callToolStream slow_compute: taskCreated, taskStatus, result "Computed x in 1.5 s"', { timeout: TEST_TIMEOUT_MS }, async () => {
      const msgs = await collect(conn.client.experimental.tasks.callToolStream(
        { name: 'slow_compute', arguments: { seconds: 1.5, label: 'x' } },
        CallToolResultSchema,
        opts({ task: { ttl: TASK_TTL_MS } }),
      ));
      const types = msgs.map((m) => m.type);
      assert.equal(types[0], 'taskCreated', `stream: ${JSON.stringify(types)}`);
      assert.equal(types.at(-1), 'result', `stream: ${JSON.stringify(msgs.map((m) => m.error?.message ?? m.type))}`);
      assert.ok(!types.includes('error'));

      const created = msgs[0].task;
      assertTaskShape(created);
      assert.equal(created.status, 'working');
      assert.equal(typeof created.ttl, 'number', `created task ttl: ${JSON.stringify(created)}`);
      assert.ok(created.ttl > 0);
      assert.equal(typeof created.pollInterval, 'number', `created task pollInterval: ${JSON.stringify(created)}`);
      assert.ok(created.pollInterval > 0);

      const statuses = msgs.filter((m) => m.type === 'taskStatus').map((m) => m.task);
      assert.ok(statuses.length >= 1, 'at least one taskStatus');
      for (const t of statuses) assert.equal(t.taskId, created.taskId);
      assert.equal(statuses.at(-1).status, 'completed');
      // Progress becomes the statusMessage ("computing <label>") while the task works.
      const messages = statuses.map((t) => t.statusMessage).filter((m) => m !== undefined);
      assert.ok(messages.length >= 1, `no taskStatus carried a statusMessage: ${JSON.stringify(statuses)}`);
      for (const m of messages) assert.equal(m, 'computing x');

      const result = msgs.at(-1).result;
      assert.notEqual(result.isError, true);
      assert.equal(textOf(result), 'Computed x in 1.5 s');
      assert.equal(result._meta?.[RELATED_TASK]?.taskId, created.taskId, 'tasks/result carries related-task _meta');

      // What the SDK put on the wire: the task-augmented tools/call with our ttl.
      const call = conn.wireOut.find((m) => m.method === 'tools/call' && m.params?.name === 'slow_compute');
      assert.deepEqual(call.params.task, { ttl: TASK_TTL_MS });
    });

    test('getTask working -> completed; listTasks lists only the connection\'s own tasks', { timeout: TEST_TIMEOUT_MS }, async () => {
      // A second, independent connection: over HTTP a second session on the SAME server (the real
      // isolation check); over stdio a second server process (isolated trivially).
      const other = await connectClient(kind.makeTransport());
      try {
        const a = (await createTask(conn.client, 'slow_compute', { seconds: 1, label: 'a' })).task;
        const b = (await createTask(other.client, 'slow_compute', { seconds: 1, label: 'b' })).task;
        assert.notEqual(a.taskId, b.taskId);

        const first = await conn.client.experimental.tasks.getTask(a.taskId, opts());
        assertTaskShape(first);
        assert.equal(first.taskId, a.taskId);
        assert.equal(first.status, 'working');

        const listA = (await conn.client.experimental.tasks.listTasks(undefined, opts())).tasks.map((t) => t.taskId);
        const listB = (await other.client.experimental.tasks.listTasks(undefined, opts())).tasks.map((t) => t.taskId);
        assert.ok(listA.includes(a.taskId), `A's tasks/list lacks its own task: ${JSON.stringify(listA)}`);
        assert.ok(!listA.includes(b.taskId), `A's tasks/list shows B's task: ${JSON.stringify(listA)}`);
        assert.ok(listB.includes(b.taskId), `B's tasks/list lacks its own task: ${JSON.stringify(listB)}`);
        assert.ok(!listB.includes(a.taskId), `B's tasks/list shows A's task: ${JSON.stringify(listB)}`);

        // Not asserted: tasks/get of A's id from B's session. Without authentication the engine
        // treats the (128-bit random) task id as the capability (crates/engine Owner::admits) and
        // scopes only listings to the session, so B may read A's task by id.

        const seen = await pollTask(conn.client, a.taskId, (t) => t.status !== 'working');
        assert.equal(seen.at(-1).status, 'completed', `statuses: ${JSON.stringify(seen.map((t) => t.status))}`);
        const res = await conn.client.experimental.tasks.getTaskResult(a.taskId, CallToolResultSchema, opts());
        assert.equal(textOf(res), 'Computed a in 1 s');

        // Still listed (as completed) after it finished, and still not in the other list.
        const later = (await conn.client.experimental.tasks.listTasks(undefined, opts())).tasks;
        const mine = later.find((t) => t.taskId === a.taskId);
        assert.equal(mine?.status, 'completed', JSON.stringify(later));
        assert.ok(!later.some((t) => t.taskId === b.taskId));
      } finally {
        await closeConn(other);
      }
    });

    test('cancelTask on slow_compute {seconds:60} -> cancelled; stays cancelled; cancelling again -> -32602', { timeout: TEST_TIMEOUT_MS }, async () => {
      const created = (await createTask(conn.client, 'slow_compute', { seconds: 60, label: 'long' })).task;
      assert.equal(created.status, 'working');
      const t0 = performance.now();
      const cancelled = await conn.client.experimental.tasks.cancelTask(created.taskId, opts());
      assert.ok(performance.now() - t0 < 5_000, 'tasks/cancel answered promptly');
      assert.equal(cancelled.taskId, created.taskId);
      assert.equal(cancelled.status, 'cancelled');

      const got = await conn.client.experimental.tasks.getTask(created.taskId, opts());
      assert.equal(got.status, 'cancelled');
      await sleep(300);
      assert.equal((await conn.client.experimental.tasks.getTask(created.taskId, opts())).status, 'cancelled');

      await assert.rejects(conn.client.experimental.tasks.cancelTask(created.taskId, opts()), assertMcpError(-32602));
      // The connection keeps working.
      const res = await conn.client.callTool({ name: 'greet', arguments: { name: 'after-cancel' } }, CallToolResultSchema, opts());
      assert.notEqual(res.isError, true);
    });

    test('input_required: confirm_delete elicitation relayed through tasks/result -> "Deleted a.txt"', { timeout: TEST_TIMEOUT_MS }, async () => {
      conn.setElicitReply(() => ({ action: 'accept', content: { confirm: true } }));
      const created = (await createTask(conn.client, 'confirm_delete', { filename: 'a.txt' })).task;
      const taskId = created.taskId;
      const seen = await pollTask(conn.client, taskId, (t) => t.status === 'input_required');
      for (const t of seen.slice(0, -1)) assert.equal(t.status, 'working');
      assert.equal(conn.elicitations.length, 0, 'nothing is elicited before tasks/result');

      // tasks/result blocks, relays the queued elicitation/create to our handler, then returns.
      const res = await conn.client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, opts());
      assert.notEqual(res.isError, true, JSON.stringify(res));
      assert.equal(textOf(res), 'Deleted a.txt');
      assert.equal(res._meta?.[RELATED_TASK]?.taskId, taskId);

      assert.equal(conn.elicitRequests.length, 1, 'exactly one elicitation/create reached the handler');
      const req = conn.elicitRequests[0];
      assert.equal(req.params._meta?.[RELATED_TASK]?.taskId, taskId, `elicitation _meta: ${JSON.stringify(req.params._meta)}`);
      assert.deepEqual(req.params.requestedSchema?.properties?.confirm, { type: 'boolean' });
      const onWire = conn.wireIn.filter((m) => m.method === 'elicitation/create');
      assert.equal(onWire.length, 1);
      assert.equal(onWire[0].params._meta?.[RELATED_TASK]?.taskId, taskId);
      // Our answer went back as the response to that request.
      const answer = conn.wireOut.find((m) => m.id === onWire[0].id && 'result' in m);
      assert.deepEqual(answer?.result, { action: 'accept', content: { confirm: true } });

      assert.equal((await conn.client.experimental.tasks.getTask(taskId, opts())).status, 'completed');
    });

    test('input_required: confirm_delete declined -> "Kept b.txt"', { timeout: TEST_TIMEOUT_MS }, async () => {
      conn.setElicitReply(() => ({ action: 'decline' }));
      const { taskId } = (await createTask(conn.client, 'confirm_delete', { filename: 'b.txt' })).task;
      await pollTask(conn.client, taskId, (t) => t.status === 'input_required');
      const res = await conn.client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, opts());
      assert.equal(textOf(res), 'Kept b.txt');
      assert.equal(conn.elicitRequests.length, 1);
    });

    test('input_required: multi_input relays both elicitations -> "Got A and B"', { timeout: TEST_TIMEOUT_MS }, async () => {
      conn.setElicitReply((req) => ({
        action: 'accept',
        content: { name: /first/i.test(req.params.message) ? 'A' : 'B', confirm: true },
      }));
      const { taskId } = (await createTask(conn.client, 'multi_input', {})).task;
      await pollTask(conn.client, taskId, (t) => t.status === 'input_required');
      const res = await conn.client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, opts());
      assert.equal(textOf(res), 'Got A and B');
      assert.equal(conn.elicitRequests.length, 2, JSON.stringify(conn.elicitations));
      for (const r of conn.elicitRequests) assert.equal(r.params._meta?.[RELATED_TASK]?.taskId, taskId);
    });

    test('failing_job via callToolStream: stream ends with an error; task failed; tasks/result is the isError result', { timeout: TEST_TIMEOUT_MS }, async () => {
      // TS SDK 1.32.2 Protocol.requestStream: on a terminal "failed" status it does NOT call
      // tasks/result; it yields {type:'error', error: McpError(-32603, "Task <id> failed")} and ends.
      const msgs = await collect(conn.client.experimental.tasks.callToolStream(
        { name: 'failing_job', arguments: {} },
        CallToolResultSchema,
        opts({ task: { ttl: TASK_TTL_MS } }),
      ));
      const types = msgs.map((m) => m.type);
      assert.equal(types[0], 'taskCreated', JSON.stringify(types));
      assert.ok(!types.includes('result'), `unexpected result in stream: ${JSON.stringify(msgs)}`);
      const taskId = msgs[0].task.taskId;
      const statuses = msgs.filter((m) => m.type === 'taskStatus').map((m) => m.task.status);
      assert.equal(statuses.at(-1), 'failed', JSON.stringify(statuses));
      const last = msgs.at(-1);
      assert.equal(last.type, 'error');
      assert.ok(last.error instanceof McpError);
      assert.equal(last.error.code, -32603);
      assert.match(last.error.message, new RegExp(`Task ${taskId} failed`));

      assert.equal((await conn.client.experimental.tasks.getTask(taskId, opts())).status, 'failed');
      // On 2025-11-25 the tool error is still the task's result.
      const res = await conn.client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, opts());
      assert.equal(res.isError, true);
      assert.ok(textOf(res).length > 0);
      assert.equal(res._meta?.[RELATED_TASK]?.taskId, taskId);
    });

    test('protocol_error_job: task failed; tasks/result answers the JSON-RPC error', { timeout: TEST_TIMEOUT_MS }, async () => {
      const { taskId } = (await createTask(conn.client, 'protocol_error_job', {})).task;
      const seen = await pollTask(conn.client, taskId, (t) => t.status !== 'working');
      assert.equal(seen.at(-1).status, 'failed');
      await assert.rejects(
        conn.client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, opts()),
        (e) => {
          assert.ok(e instanceof McpError, `expected McpError, got ${e}`);
          assert.ok(Number.isInteger(e.code) && e.code < 0, `JSON-RPC error code: ${e.code}`);
          return true;
        },
      );
    });

    test('plain callTool on failing_job (taskSupport required) is refused', { timeout: TEST_TIMEOUT_MS }, async () => {
      // (a) Before tools/list the SDK does not know the tool is task-only: it sends the plain
      // tools/call and the server must refuse it (-32601, protocol.md §3.1).
      await assert.rejects(
        conn.client.callTool({ name: 'failing_job', arguments: {} }, CallToolResultSchema, opts()),
        assertMcpError(-32601),
      );
      // (b) After tools/list the SDK refuses it locally (-32600 "requires task-based execution").
      await conn.client.listTools(undefined, opts());
      const sentBefore = conn.wireOut.filter((m) => m.method === 'tools/call').length;
      await assert.rejects(
        conn.client.callTool({ name: 'failing_job', arguments: {} }, CallToolResultSchema, opts()),
        (e) => {
          assert.ok(e instanceof McpError);
          assert.equal(e.code, -32600);
          assert.match(e.message, /requires task-based execution/);
          return true;
        },
      );
      assert.equal(conn.wireOut.filter((m) => m.method === 'tools/call').length, sentBefore, 'refused client-side');
    });

    test('greet is never a task; slow_compute without params.task answers directly', { timeout: TEST_TIMEOUT_MS }, async () => {
      const res = await conn.client.callTool({ name: 'greet', arguments: { name: 'Bo' } }, CallToolResultSchema, opts());
      assert.notEqual(res.isError, true);
      assert.ok(textOf(res).includes('Bo'), textOf(res));
      await assert.rejects(createTask(conn.client, 'greet', { name: 'Bo' }), assertMcpError(-32601));

      const direct = await conn.client.callTool({ name: 'slow_compute', arguments: { seconds: 0.2, label: 'd' } }, CallToolResultSchema, opts());
      assert.equal(textOf(direct), 'Computed d in 0.2 s');
    });

    test('getTask on an unknown task id -> -32602', { timeout: TEST_TIMEOUT_MS }, async () => {
      await assert.rejects(conn.client.experimental.tasks.getTask('no-such-task-0000', opts()), assertMcpError(-32602));
      await assert.rejects(conn.client.experimental.tasks.cancelTask('no-such-task-0000', opts()), assertMcpError(-32602));
      await assert.rejects(
        conn.client.experimental.tasks.getTaskResult('no-such-task-0000', CallToolResultSchema, opts()),
        assertMcpError(-32602),
      );
    });
  });
}
