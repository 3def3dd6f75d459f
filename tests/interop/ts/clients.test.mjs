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
import { existsSync } from 'node:fs';

import { CallToolResultSchema, McpError } from '@modelcontextprotocol/sdk/types.js';

import {
  FIXTURES, LISTEN_TIMEOUT_MS, TEST_TIMEOUT_MS, closeConn, connectClient, makeTransports, opts,
} from './helpers.mjs';

// ---------------------------------------------------------------------------------------------
// The same suite for both transports (process bookkeeping, server spawning: ./helpers.mjs).

const transports = makeTransports();

assert.ok(existsSync(FIXTURES), `fixture binary not found: ${FIXTURES} (set TASKWIRE_FIXTURES)`);

for (const [name, kind] of Object.entries(transports)) {
  describe(`TS SDK 1.32.2 over ${name}`, { timeout: 120_000 }, () => {
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
