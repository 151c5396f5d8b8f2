// The official TypeScript MCP SDK's server as a peer of mcp_trio.client's tests (test_client_peers.py).
//
//     node tests/ts_peer_server.mjs PEER_DIR stdio
//     node tests/ts_peer_server.mjs PEER_DIR http [--json]     (prints the port, then serves /mcp)
//
// PEER_DIR is bench/peers/ts, where `npm ci` installed the pinned SDK: it is loaded from there,
// so this file needs no node_modules of its own. Streamable HTTP with sessions (one transport
// and one McpServer per session, as the SDK's examples do), SSE answers unless --json, the
// session's GET stream for what the server says unprompted.
//
// Tools: echo(text); progress (two progress notifications, then "done"); logs (an info log
// line, then "logged"); ask_name (elicits a name from the client); add_tool (registers a new
// tool, so the SDK sends notifications/tools/list_changed). A resource test://hello, a prompt
// greet(name).
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [peerDir, mode, flag] = process.argv.slice(2);
const require = createRequire(join(peerDir, 'package.json'));
const { McpServer } = require('@modelcontextprotocol/sdk/server/mcp.js');
const { StdioServerTransport } = require('@modelcontextprotocol/sdk/server/stdio.js');
const { StreamableHTTPServerTransport } = require('@modelcontextprotocol/sdk/server/streamableHttp.js');
const { isInitializeRequest } = require('@modelcontextprotocol/sdk/types.js');
const { z } = require('zod');

function peerServer() {
  const server = new McpServer({ name: 'ts-sdk-peer', version: '1.0.0' }, { capabilities: { logging: {} } });
  server.registerTool('echo', { description: 'Return the text unchanged.', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }));
  server.registerTool('progress', { description: 'Report progress twice, then answer.' }, async (extra) => {
    const token = extra._meta?.progressToken;
    if (token !== undefined) {
      for (const progress of [1, 2]) {
        await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress, total: 2 } });
      }
    }
    return { content: [{ type: 'text', text: 'done' }] };
  });
  server.registerTool('logs', { description: 'Log one line, then answer.' }, async (extra) => {
    await server.sendLoggingMessage({ level: 'info', data: 'working on it' }, extra.sessionId);
    return { content: [{ type: 'text', text: 'logged' }] };
  });
  server.registerTool('ask_name', { description: 'Ask the client for a name.' }, async (extra) => {
    const answer = await server.server.elicitInput({
      message: 'Your name?',
      requestedSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] },
    }, { relatedRequestId: extra.requestId });
    return { content: [{ type: 'text', text: answer.action === 'accept' ? `Hello, ${answer.content.name}!` : 'no name' }] };
  });
  let added = 0;
  server.registerTool('add_tool', { description: 'Register one more tool.' }, async () => {
    added += 1;
    server.registerTool(`added_${added}`, { description: 'Added at run time.' }, async () => ({ content: [{ type: 'text', text: 'new' }] }));
    return { content: [{ type: 'text', text: `added_${added}` }] };
  });
  server.registerResource('hello', 'test://hello', { mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, text: 'hello' }] }));
  server.registerPrompt('greet', { description: 'Greet someone.', argsSchema: { name: z.string() } },
    ({ name }) => ({ messages: [{ role: 'user', content: { type: 'text', text: `Hello ${name}` } }] }));
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

function serveHttp(json) {
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
            enableJsonResponse: json,
            onsessioninitialized: (sid) => sessions.set(sid, created),
          });
          created.onclose = () => created.sessionId && sessions.delete(created.sessionId);
          await peerServer().connect(created);
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
  http.listen(0, '127.0.0.1', () => console.log(http.address().port));
}

if (mode === 'stdio') {
  await peerServer().connect(new StdioServerTransport());
} else if (mode === 'http') {
  serveHttp(flag === '--json');
} else {
  console.error('usage: node ts_peer_server.mjs PEER_DIR stdio | http [--json]');
  process.exit(2);
}
