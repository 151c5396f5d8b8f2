// The official TypeScript MCP SDK's server, as the peer we compare against (on Node 22).
//
//     node server.mjs stdio
//     node server.mjs http --port N
//
// The same tool as mcp_trio's demo app, echo(text) -> text, through the SDK's high-level
// McpServer. Over HTTP: Streamable HTTP at /mcp with sessions (one transport and one
// McpServer per session, as the SDK's own examples do) and JSON responses
// (enableJsonResponse), so each call is answered with one JSON body like the workload it
// is compared on. Served by node:http directly (no Express), the leanest setup the SDK
// supports. A request naming an unknown session gets 404; a non-initialize POST without a
// session, 400.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

function echoServer() {
  const server = new McpServer({ name: 'ts-sdk-echo', version: '1.0.0' });
  server.registerTool(
    'echo',
    { description: 'Return the text unchanged.', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
  return server;
}

function refuse(res, status, message) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32600, message } }));
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function serveHttp(port) {
  const sessions = new Map();
  const http = createServer(async (req, res) => {
    try {
      if (req.url !== '/mcp') return refuse(res, 404, 'not found');
      const id = req.headers['mcp-session-id'];
      let transport = id === undefined ? undefined : sessions.get(id);
      if (id !== undefined && transport === undefined) return refuse(res, 404, 'session not found');
      if (req.method === 'POST') {
        const body = await readJson(req);
        if (transport === undefined) {
          if (!isInitializeRequest(body)) return refuse(res, 400, 'missing Mcp-Session-Id');
          const created = new StreamableHTTPServerTransport({
            sessionIdGenerator: () => randomUUID(),
            enableJsonResponse: true,
            onsessioninitialized: (sid) => sessions.set(sid, created),
          });
          created.onclose = () => created.sessionId && sessions.delete(created.sessionId);
          await echoServer().connect(created);
          transport = created;
        }
        await transport.handleRequest(req, res, body);
      } else if (transport !== undefined) {
        await transport.handleRequest(req, res);
      } else {
        refuse(res, 400, 'missing Mcp-Session-Id');
      }
    } catch (error) {
      if (!res.headersSent) refuse(res, 400, String(error));
    }
  });
  http.listen(port, '127.0.0.1');
}

const [mode, flag, value] = process.argv.slice(2);
if (mode === 'stdio') {
  await echoServer().connect(new StdioServerTransport());
} else if (mode === 'http' && flag === '--port') {
  serveHttp(Number(value));
} else {
  console.error('usage: node server.mjs stdio | node server.mjs http --port N');
  process.exit(2);
}
