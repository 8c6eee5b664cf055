'use strict';
// Socket.IO 4 comparison peer for imagechat's benchmarks.
//
// One HTTP server, one port:
//   GET  /socket.io/?EIO=4&transport=websocket  Socket.IO (WebSocket only)
//   POST /write                                  broadcast a new-image-chat event to a room
//   GET  /healthz                                200
//
// Clients emit `subscribe` with a urlId; the socket joins the room of that
// name and is answered with `subscribed` {urlId, seq}. POST /write bumps the
// room's in-memory seq and emits `new-image-chat` to the room. Nothing is
// stored. See README.md for what this does and does not do.

const http = require('node:http');
const crypto = require('node:crypto');
const { Server } = require('socket.io');

const MAX_BODY = 64 * 1024;

function parsePort(argv, env) {
  let raw;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') raw = argv[++i];
    else if (a.startsWith('--port=')) raw = a.slice('--port='.length);
  }
  if (raw === undefined) raw = env.PORT;
  if (raw === undefined || raw === '') return 0;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    process.stderr.write(`invalid port: ${raw}\n`);
    process.exit(2);
  }
  return n;
}

// Short random ids from the URL-safe base64 alphabet.
function randomId(len) {
  return crypto.randomBytes(Math.ceil((len * 3) / 4)).toString('base64url').slice(0, len);
}

// The one user every event is attributed to: an anonymous user, as imagechat
// describes one (id "anon:" + 12 characters, a generated name).
const USER = Object.freeze({ id: `anon:${randomId(12)}`, name: 'Teal Owl', anonymous: true });

// urlId -> last seq handed out. In memory only; starts at 0.
const seqs = new Map();

function sendJson(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

// Reads at most MAX_BODY bytes; calls done(err, buffer). err.status is 413
// when the body is larger.
function readBody(req, done) {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_BODY) {
    req.resume();
    return done(Object.assign(new Error('body too large'), { status: 413 }));
  }
  const chunks = [];
  let size = 0;
  let finished = false;
  req.on('data', (chunk) => {
    if (finished) return;
    size += chunk.length;
    if (size > MAX_BODY) {
      finished = true;
      chunks.length = 0;
      return done(Object.assign(new Error('body too large'), { status: 413 }));
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (finished) return;
    finished = true;
    done(null, Buffer.concat(chunks, size));
  });
  req.on('error', (err) => {
    if (finished) return;
    finished = true;
    done(Object.assign(err, { status: 400 }));
  });
}

function handleWrite(io, req, res) {
  readBody(req, (err, buf) => {
    if (err) {
      // Let a client that is still sending see the answer, then drop the connection.
      if (err.status === 413) res.setHeader('connection', 'close');
      return sendJson(res, err.status || 400, { error: err.status === 413 ? 'too_large' : 'invalid_input' });
    }
    let body;
    try {
      body = JSON.parse(buf.toString('utf8'));
    } catch {
      return sendJson(res, 400, { error: 'invalid_input', message: 'body is not JSON' });
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return sendJson(res, 400, { error: 'invalid_input', message: 'body is not a JSON object' });
    }
    const { urlId, x, y, text, broadcastId } = body;
    // The room's name: the only field that must have a type.
    if (typeof urlId !== 'string' || urlId === '') {
      return sendJson(res, 400, { error: 'invalid_input', message: 'urlId must be a non-empty string' });
    }
    const seq = (seqs.get(urlId) || 0) + 1;
    seqs.set(urlId, seq);
    const at = Date.now();
    const event = {
      type: 'new-image-chat',
      chat: {
        id: randomId(10),
        x,
        y,
        resolved: false,
        user: USER,
        createdAt: at,
        comments: [{ id: String(seq), user: USER, text, createdAt: at }],
      },
      urlId,
      seq,
      broadcastId: broadcastId === undefined ? null : broadcastId,
      at,
    };
    io.to(urlId).emit('new-image-chat', event);
    sendJson(res, 201, { seq });
  });
}

function main() {
  const port = parsePort(process.argv.slice(2), process.env);
  const host = process.env.HOST || '127.0.0.1';

  // Registered before Socket.IO attaches: Engine.IO then answers /socket.io/
  // itself and passes every other request to this handler.
  const httpServer = http.createServer((req, res) => {
    const path = req.url.split('?', 1)[0];
    if (path === '/write') {
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST');
        return sendJson(res, 405, { error: 'method_not_allowed' });
      }
      return handleWrite(io, req, res);
    }
    if (path === '/healthz') {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        return sendJson(res, 405, { error: 'method_not_allowed' });
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
      return res.end('ok\n');
    }
    sendJson(res, 404, { error: 'not_found' });
  });

  const io = new Server(httpServer, {
    transports: ['websocket'],
    perMessageDeflate: false,
    httpCompression: false,
    serveClient: false,
    // pingInterval / pingTimeout left at their defaults (25000 / 20000 ms).
  });

  io.on('connection', (socket) => {
    socket.on('subscribe', (urlId) => {
      if (typeof urlId !== 'string' || urlId === '') return;
      socket.join(urlId);
      socket.emit('subscribed', { urlId, seq: seqs.get(urlId) || 0 });
    });
  });

  httpServer.on('error', (err) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  });

  httpServer.listen(port, host, () => {
    const { port: actual } = httpServer.address();
    const shown = host.includes(':') ? `[${host}]` : host;
    process.stdout.write(`listening on http://${shown}:${actual}\n`);
  });

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    // Closes every Socket.IO connection and the HTTP server.
    io.close(() => process.exit(0));
    httpServer.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main();
