// Smoke check for server.js: start it on port 0, connect two raw WebSocket
// clients (the `ws` package engine.io itself depends on), subscribe both to a
// room, POST /write, and check both receive 42["new-image-chat",{...}].
// Usage: npm ci && node smoke.mjs
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = fileURLToPath(new URL('.', import.meta.url));
const require = createRequire(import.meta.url);
// Resolve ws from engine.io's own dependency tree; it is not a dependency of this package.
const WebSocket = createRequire(require.resolve('engine.io'))('ws');

const server = spawn(process.execPath, ['server.js', '--port', '0'], {
  cwd: here,
  stdio: ['ignore', 'pipe', 'inherit'],
});
const stdoutLines = [];
const base = await new Promise((resolve, reject) => {
  let buf = '';
  server.stdout.setEncoding('utf8');
  server.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      stdoutLines.push(line);
      const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (m) resolve(m[1]);
    }
  });
  server.on('exit', (code) => reject(new Error(`server exited: ${code}`)));
  setTimeout(() => reject(new Error('server did not start')), 5000);
});
console.log(`server: ${base}`);

// A minimal Socket.IO client over a raw WebSocket: records every text message.
function client(name) {
  const url = base.replace('http', 'ws') + '/socket.io/?EIO=4&transport=websocket';
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const msgs = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    assert.equal(isBinary, false);
    const s = data.toString('utf8');
    msgs.push(s);
    if (s === '2') ws.send('3'); // Engine.IO ping -> pong
    for (const w of waiters.splice(0)) w();
  });
  const next = (pred, what) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${name}: timed out waiting for ${what}`)), 3000);
      const check = () => {
        const i = msgs.findIndex(pred);
        if (i >= 0) {
          clearTimeout(t);
          resolve(msgs.splice(i, 1)[0]);
        } else waiters.push(check);
      };
      check();
    });
  return { name, ws, msgs, next };
}

async function handshake(c, room) {
  const open = await c.next((m) => m.startsWith('0'), 'open packet');
  const info = JSON.parse(open.slice(1));
  assert.equal(typeof info.sid, 'string');
  assert.deepEqual(info.upgrades, []);
  assert.equal(info.pingInterval, 25000);
  assert.equal(info.pingTimeout, 20000);
  c.ws.send('40');
  const connect = await c.next((m) => m.startsWith('40'), 'connect packet');
  assert.equal(typeof JSON.parse(connect.slice(2)).sid, 'string');
  c.ws.send(`42${JSON.stringify(['subscribe', room])}`);
  const sub = await c.next((m) => m.startsWith('42["subscribed"'), 'subscribed');
  return { open, connect, sub };
}

async function post(path, body, headers = {}) {
  const res = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  return { status: res.status, text: await res.text() };
}

let failed = false;
try {
  const room = 'img-1';
  const a = client('a');
  const b = client('b');
  const other = client('other');
  const ha = await handshake(a, room);
  await handshake(b, room);
  await handshake(other, 'img-2');
  console.log('wire (client a):');
  console.log(`  <- ${ha.open}`);
  console.log('  -> 40');
  console.log(`  <- ${ha.connect}`);
  console.log(`  -> 42["subscribe","${room}"]`);
  console.log(`  <- ${ha.sub}`);
  assert.equal(ha.sub, '42["subscribed",{"urlId":"img-1","seq":0}]');

  const h = await fetch(base + '/healthz');
  assert.equal(h.status, 200);

  const w = await post('/write', JSON.stringify({ urlId: room, x: 25.5, y: 30.25, text: 'Is this shadow intentional?', broadcastId: 'b-1' }));
  assert.equal(w.status, 201);
  assert.deepEqual(JSON.parse(w.text), { seq: 1 });

  const got = [];
  for (const c of [a, b]) {
    const m = await c.next((s) => s.startsWith('42["new-image-chat",'), 'new-image-chat');
    const [name, ev] = JSON.parse(m.slice(2));
    assert.equal(name, 'new-image-chat');
    assert.deepEqual(Object.keys(ev), ['type', 'chat', 'urlId', 'seq', 'broadcastId', 'at']);
    assert.equal(ev.type, 'new-image-chat');
    assert.equal(ev.urlId, room);
    assert.equal(ev.seq, 1);
    assert.equal(ev.broadcastId, 'b-1');
    assert.match(ev.chat.id, /^[A-Za-z0-9_-]{10}$/);
    assert.equal(ev.chat.x, 25.5);
    assert.equal(ev.chat.y, 30.25);
    assert.equal(ev.chat.resolved, false);
    assert.match(ev.chat.user.id, /^anon:[A-Za-z0-9_-]{12}$/);
    assert.deepEqual(ev.chat.user, { id: ev.chat.user.id, name: 'Teal Owl', anonymous: true });
    assert.equal(ev.chat.comments.length, 1);
    assert.deepEqual(ev.chat.comments[0], { id: '1', user: ev.chat.user, text: 'Is this shadow intentional?', createdAt: ev.at });
    assert.equal(ev.chat.createdAt, ev.at);
    got.push(m);
  }
  assert.equal(got[0], got[1]);
  console.log(`  <- ${got[0]}`);
  console.log(`new-image-chat message for the sample above: ${Buffer.byteLength(got[0])} bytes`);

  // A second subscriber now sees the room's seq.
  const late = client('late');
  const hl = await handshake(late, room);
  assert.equal(hl.sub, '42["subscribed",{"urlId":"img-1","seq":1}]');

  // The sizes imagechat's own test uses: 33-character urlId, 60-character
  // comment, 36-character broadcastId.
  const u = 'https://shop.example/p/1#hero.jpg';
  assert.equal(u.length, 33);
  a.ws.send(`42${JSON.stringify(['subscribe', u])}`);
  await a.next((s) => s.startsWith('42["subscribed"'), 'subscribed');
  const w2 = await post('/write', JSON.stringify({ urlId: u, x: 33.3333, y: 66.6667, text: 'x'.repeat(60), broadcastId: '0f8fad5b-d9cb-469f-a165-70867728950e' }));
  assert.equal(w2.status, 201);
  const m2 = await a.next((s) => s.startsWith('42["new-image-chat",'), 'new-image-chat (sized)');
  const payload = Buffer.byteLength(m2);
  const header = payload < 126 ? 2 : payload < 65536 ? 4 : 10; // server frames are unmasked
  console.log(`new-image-chat, 33-char urlId, 60-char comment, 36-char broadcastId: ${payload} bytes of WebSocket payload (${payload + header} bytes with the frame header)`);
  console.log(`  <- ${m2}`);

  // The room that was not written to got nothing.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(other.msgs.filter((s) => s.startsWith('42["new-image-chat"')).length, 0);
  assert.equal(b.msgs.filter((s) => s.startsWith('42["new-image-chat"')).length, 0); // b is not in u

  // Rejections.
  for (const bad of ['not json', '[1,2]', '"s"', 'null', '42', '{}', '{"urlId":7}']) {
    const r = await post('/write', bad);
    assert.equal(r.status, 400, `${bad} -> ${r.status}`);
  }
  const big = JSON.stringify({ urlId: room, x: 1, y: 1, text: 'y'.repeat(64 * 1024) });
  assert.equal((await post('/write', big)).status, 413);
  // Only the WebSocket transport is offered; Engine.IO refuses polling itself.
  const poll = await fetch(base + '/socket.io/?EIO=4&transport=polling');
  assert.equal(poll.status, 400);
  const r404 = await fetch(base + '/nope');
  assert.equal(r404.status, 404);
  // Exactly 64 KiB is accepted.
  const pad = 64 * 1024 - Buffer.byteLength(JSON.stringify({ urlId: 'img-3', text: '' }));
  const edge = JSON.stringify({ urlId: 'img-3', text: 'z'.repeat(pad) });
  assert.equal(Buffer.byteLength(edge), 64 * 1024);
  assert.equal((await post('/write', edge)).status, 201);

  for (const c of [a, b, other, late]) c.ws.close();
  console.log('checks: ok');
} catch (err) {
  failed = true;
  console.error(err);
}

const code = await new Promise((resolve) => {
  server.removeAllListeners('exit');
  server.on('exit', (c, sig) => resolve(c ?? sig));
  server.kill('SIGTERM');
});
assert.equal(stdoutLines.length, 1, `stdout: ${JSON.stringify(stdoutLines)}`);
console.log(`server exit after SIGTERM: ${code}; stdout lines: ${stdoutLines.length}`);
process.exit(failed || code !== 0 ? 1 : 0);
