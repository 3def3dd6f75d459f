// TypeScript SDK 1.32 peer server: tools echo + sleep_ms.
// usage: node server.mjs http PORT [--stateful] | node server.mjs stdio
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

function makeServer() {
  const s = new McpServer({ name: 'bench', version: '1.0.0' });
  s.registerTool('echo', { description: 'Echo the input text', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }));
  s.registerTool('sleep_ms', { description: 'Sleep ms milliseconds', inputSchema: { ms: z.number() } },
    async ({ ms }) => { await new Promise((r) => setTimeout(r, ms)); return { content: [{ type: 'text', text: 'ok' }] }; });
  return s;
}

const mode = process.argv[2] || 'http';
if (mode === 'stdio') {
  await makeServer().connect(new StdioServerTransport());
} else {
  const port = Number(process.argv[3] || 8003);
  const stateful = process.argv.includes('--stateful');
  const sessions = new Map();
  const srv = http.createServer(async (req, res) => {
    if (req.url !== '/mcp') { res.writeHead(404).end(); return; }
    if (!stateful) {
      // The SDK's documented stateless pattern: a fresh server and transport per request.
      const server = makeServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      res.on('close', () => { transport.close(); server.close(); });
      await server.connect(transport);
      await transport.handleRequest(req, res);
      return;
    }
    const sid = req.headers['mcp-session-id'];
    let transport = sid && sessions.get(sid);
    if (!transport) {
      transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => sessions.set(id, transport) });
      await makeServer().connect(transport);
    }
    await transport.handleRequest(req, res);
  });
  srv.keepAliveTimeout = 65000;
  srv.listen(port, '127.0.0.1');
}
