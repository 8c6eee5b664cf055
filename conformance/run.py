#!/usr/bin/env python3
"""Black-box conformance suite for the imagechat wire contract (docs/protocol.md).

Runs against a live server and needs only the Python 3 standard library:

    python3 run.py --base http://127.0.0.1:8080 --admin-key KEY [-k NAME] [-v]

Each check creates its own tenants and urlIds, so it can run against a server
that already holds data. Run it against a server with its default write limits
(a burst of at least 7 writes per user is assumed) or pass --no-rate-limit.
The last line is 'N passed, M failed'; the exit code is 0 only when nothing
failed.
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid

ARGS = None
RUN = uuid.uuid4().hex[:8]


# ---------------------------------------------------------------- HTTP ------

class Reply:
    def __init__(self, status, headers, body):
        self.status, self.body = status, body
        self.headers = {k.lower(): v for k, v in headers.items()}  # header names are case-insensitive

    def json(self):
        return json.loads(self.body.decode() or "null")


def http(method, path, body=None, token=None, headers=None, raw=None, basic=None):
    url = ARGS.base.rstrip("/") + path
    h = {"accept": "application/json"}
    data = None
    if raw is not None:
        data = raw
        h["content-type"] = "application/json"
    elif body is not None:
        data = json.dumps(body).encode()
        h["content-type"] = "application/json"
    if token:
        h["authorization"] = "Bearer " + token
    if basic:
        h["authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return Reply(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.headers, e.read())


def q(s):
    return urllib.parse.quote(s, safe="")


# ----------------------------------------------------------- WebSocket ------

class WS:
    """A minimal RFC 6455 client over asyncio streams: enough for text frames."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer
        self.closed = None  # (code, reason) once a close frame arrived
        self.inbox = []     # decoded messages not yet taken
        self.frames = []    # raw text payloads received, for size checks
        self.errors = []    # protocol faults seen by the reader
        self.arrived = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._reader())

    @classmethod
    async def connect(cls, path="/api/v1/ws", origin=None):
        u = urllib.parse.urlparse(ARGS.base)
        host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
        if u.scheme == "https":
            import ssl
            ctx = ssl.create_default_context()
            if ARGS.insecure:
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        else:
            reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if origin:
            lines.append(f"Origin: {origin}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            writer.close()
            raise ConnectionError(f"upgrade refused: {status.decode(errors='replace')}")
        want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        if want not in head:
            raise ConnectionError("bad Sec-WebSocket-Accept")
        return cls(reader, writer)

    async def _send_frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.w.write(head + mask + masked)
        await self.w.drain()

    async def send(self, obj):
        await self._send_frame(0x1, json.dumps(obj).encode())

    async def send_text(self, text):
        await self._send_frame(0x1, text.encode())

    async def _read_frame(self):
        b0, b1 = await self.r.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await self.r.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.r.readexactly(8), "big")
        mask = await self.r.readexactly(4) if b1 & 0x80 else None
        data = await self.r.readexactly(n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return b0 & 0x80, b0 & 0x0F, data

    async def _reader(self):
        """Background task: read every frame into the inbox; answer pings; note a close."""
        parts, op0 = [], None
        try:
            while True:
                fin, op, data = await self._read_frame()
                if op == 0x9:
                    await self._send_frame(0xA, data)
                    continue
                if op == 0xA:
                    continue
                if op == 0x8:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                    self.closed = (code, data[2:].decode(errors="replace"))
                    try:
                        await self._send_frame(0x8, data[:2])
                    except Exception:
                        pass
                    return
                if op in (0x1, 0x2):
                    op0 = op
                parts.append(data)
                if not fin:
                    continue
                payload, parts = b"".join(parts), []
                if op0 != 0x1:
                    self.errors.append("server sent a binary frame")
                    continue
                self.frames.append(payload)
                msg = json.loads(payload)
                self.inbox.extend(msg if isinstance(msg, list) else [msg])
                self.arrived.set()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            if self.closed is None:
                self.closed = (1006, "connection dropped")
        except Exception as e:  # noqa: BLE001 - reported by the next recv
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            self.arrived.set()

    async def recv(self, pred=lambda m: True, timeout=5.0, what="a message", keep=False):
        """The first message (in arrival order) that matches pred; earlier non-matching ones stay queued.
        With keep=True the message stays in the inbox too."""
        deadline = time.monotonic() + timeout
        while True:
            if self.errors:
                raise AssertionError(f"bad frame from the server: {self.errors[0]}")
            for i, m in enumerate(self.inbox):
                if pred(m):
                    return m if keep else self.inbox.pop(i)
            left = deadline - time.monotonic()
            if self.closed is not None:
                raise ConnectionError(f"connection closed {self.closed} while waiting for {what}; queued: {short(self.inbox)}")
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; queued: {short(self.inbox)}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def quiet(self, pred, seconds=1.0):
        """Assert that nothing matching pred arrives within `seconds`."""
        try:
            m = await self.recv(pred, timeout=seconds)
        except AssertionError:
            return
        raise AssertionError(f"unexpected message: {short(m)}")

    async def closed_with(self, timeout=12.0):
        deadline = time.monotonic() + timeout
        while self.closed is None and time.monotonic() < deadline:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        return self.closed

    def close(self):
        self.task.cancel()
        try:
            self.w.close()
        except Exception:
            pass


def short(x, n=300):
    s = json.dumps(x)
    return s if len(s) <= n else s[:n] + "…"


# ------------------------------------------------------------- helpers ------

def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def eq(got, want, what):
    check(got == want, f"{what}: got {got!r}, want {want!r}")


def new_tenant(anonymous="write", origins=None, secret=None):
    tid = f"conf-{RUN}-{uuid.uuid4().hex[:6]}"
    body = {"tenantId": tid}
    if anonymous is not None:
        body["anonymous"] = anonymous
    if origins is not None:
        body["origins"] = origins
    if secret:
        body["secret"] = secret
    r = http("POST", "/api/v1/admin/tenants", body, token=ARGS.admin_key)
    eq(r.status, 201, f"create tenant {tid}: {r.body[:200]!r}")
    j = r.json()
    eq(j["tenantId"], tid, "tenantId echoed")
    check(isinstance(j.get("secret"), str) and j["secret"], "a secret is returned")
    return tid, j["secret"]


def sso(secret, user, ts=None, tamper=False):
    b = base64.b64encode(json.dumps(user).encode()).decode()
    ts = int(time.time() * 1000) if ts is None else ts
    h = hmac.new(secret.encode(), (str(ts) + b).encode(), hashlib.sha256).hexdigest()
    if tamper:
        h = h[:-1] + ("0" if h[-1] != "0" else "1")
    return {"userDataJSONBase64": b, "verificationHash": h, "timestamp": ts}


def session(tid, sso_obj=None, headers=None):
    body = {"tenantId": tid}
    if sso_obj:
        body["sso"] = sso_obj
    return http("POST", "/api/v1/sessions", body, headers=headers)


def token(tid, sso_obj=None):
    r = session(tid, sso_obj)
    eq(r.status, 200, f"session for {tid}: {r.body[:200]!r}")
    return r.json()["token"]


def url_id(tag="img"):
    return f"https://site.example/page-{RUN}?q=1#{tag}-{uuid.uuid4().hex[:8]}.png"


def snapshot(tok, u):
    r = http("GET", f"/api/v1/chats?urlId={q(u)}", token=tok)
    eq(r.status, 200, f"snapshot: {r.body[:200]!r}")
    return r.json()


def create(tok, u, x=25.5, y=30.25, text="Look at this corner", bid=None):
    r = http("POST", "/api/v1/chats", {"urlId": u, "x": x, "y": y, "text": text, "broadcastId": bid}, token=tok)
    eq(r.status, 201, f"create chat: {r.body[:200]!r}")
    return r.json()


async def connect(tok, origin=None):
    ws = await WS.connect(origin=origin)
    await ws.send({"type": "hello", "token": tok})
    m = await ws.recv(lambda m: m.get("type") in ("welcome", "error"), what="welcome")
    eq(m["type"], "welcome", f"hello answered: {short(m)}")
    return ws


async def subscribe(ws, u, epoch=None, seq=None):
    rid = uuid.uuid4().hex[:8]
    msg = {"type": "subscribe", "id": rid, "urlId": u}
    if epoch is not None:
        msg["epoch"] = epoch
    if seq is not None:
        msg["seq"] = seq
    await ws.send(msg)
    ours = lambda m: m.get("type") in ("subscribed", "error") and m.get("id") == rid  # noqa: E731
    await ws.recv(ours, what="subscribed", keep=True)
    at = next(i for i, m in enumerate(ws.inbox) if ours(m))
    early = [m for m in ws.inbox[:at] if is_event(u)(m)]
    check(not early, f"events of {u} arrived before 'subscribed': {short(early)}")
    m = ws.inbox.pop(at)
    eq(m["type"], "subscribed", f"subscribe answered: {short(m)}")
    return m


def is_event(u, typ=None):
    kinds = ("new-image-chat", "image-chat-updated", "deleted-image-chat")
    return lambda m: m.get("urlId") == u and m.get("type") in kinds and (typ is None or m["type"] == typ)


def bid():
    return str(uuid.uuid4())


# -------------------------------------------------------------- checks ------

CHECKS = []


def case(fn):
    CHECKS.append(fn)
    return fn


@case
async def health():
    eq(http("GET", "/healthz").status, 200, "/healthz")
    eq(http("GET", "/readyz").status, 200, "/readyz")


@case
async def anonymous_session():
    tid, _ = new_tenant("write")
    r = session(tid)
    eq(r.status, 200, "anonymous session")
    j = r.json()
    check(j["user"]["anonymous"] is True, "user.anonymous")
    check(j["user"]["id"].startswith("anon:"), "anonymous id starts with anon:")
    check(j["user"]["name"], "anonymous user has a display name")
    check(j["expiresAt"] > time.time() * 1000, "expiresAt in the future")
    eq(j["canWrite"], True, "anonymous user may write under policy write")
    tr, _ = new_tenant("read")
    eq(session(tr).json()["canWrite"], False, "anonymous user may not write under policy read")
    tid2, _ = new_tenant("none")
    eq(session(tid2).status, 401, "anonymous session on a tenant with policy none")
    eq(session(f"nope-{RUN}").status, 404, "session for an unknown tenant")


@case
async def sso_sessions():
    tid, secret = new_tenant("none")
    user = {"id": "u-1", "username": "Alice", "avatar": "https://a.example/a.png"}
    r = session(tid, sso(secret, user))
    eq(r.status, 200, f"valid SSO: {r.body[:200]!r}")
    j = r.json()
    eq(j["user"]["id"], "u-1", "SSO user id")
    eq(j["user"]["name"], "Alice", "SSO user name")
    check(not j["user"].get("anonymous", False), "SSO user not anonymous")
    check("avatar" in j["user"], "SSO avatar kept")
    eq(j["moderator"], False, "plain SSO user is not a moderator")
    m = session(tid, sso(secret, {"id": "m-1", "username": "Mod", "isModerator": True})).json()
    eq(m["moderator"], True, "isModerator makes a moderator")
    eq(session(tid, sso(secret, user, tamper=True)).status, 401, "tampered hash")
    eq(session(tid, sso("wrong-secret", user)).status, 401, "hash with the wrong secret")
    old = int(time.time() * 1000) - 3 * 86400 * 1000
    eq(session(tid, sso(secret, user, ts=old)).status, 401, "timestamp 3 days old")
    fut = int(time.time() * 1000) + 3600 * 1000
    eq(session(tid, sso(secret, user, ts=fut)).status, 401, "timestamp 1 hour ahead")
    now = int(time.time() * 1000)
    eq(session(tid, sso(secret, user, ts=now - 86400 * 1000)).status, 200, "timestamp 1 day old")
    eq(session(tid, sso(secret, user, ts=now + 4 * 60 * 1000)).status, 200, "timestamp 4 minutes ahead")
    eq(session(tid, sso(secret, user, ts=now + 6 * 60 * 1000)).status, 401, "timestamp 6 minutes ahead")
    up = sso(secret, user)
    up["verificationHash"] = up["verificationHash"].upper()
    eq(session(tid, up).status, 200, "hash in upper-case hex")
    a = session(tid, sso(secret, {"id": "adm-1", "username": "Admin", "isAdmin": True})).json()
    eq(a["moderator"], True, "isAdmin makes a moderator")
    for label, u in (("id of 257 chars", {"id": "i" * 257, "username": "U"}), ("username of 101", {"id": "u", "username": "n" * 101}),
                     ("no username", {"id": "u"}), ("empty id", {"id": "", "username": "U"}),
                     ("reserved anon: id", {"id": "anon:x", "username": "U"})):
        eq(session(tid, sso(secret, u)).status, 401, label)
    m = session(tid, sso(secret, {"id": "i" * 256, "username": "n" * 100, "avatar": "javascript:alert(1)"}))
    eq(m.status, 200, "longest id and username")
    check("avatar" not in m.json()["user"], "a non-http avatar is dropped")
    bad = sso(secret, user)
    bad["userDataJSONBase64"] = base64.b64encode(b"not json").decode()
    bad["verificationHash"] = hmac.new(secret.encode(), (str(bad["timestamp"]) + bad["userDataJSONBase64"]).encode(),
                                       hashlib.sha256).hexdigest()
    eq(session(tid, bad).status, 401, "signed but malformed user data")


@case
async def empty_snapshot_and_auth():
    tid, _ = new_tenant("read")
    tok = token(tid)
    u = url_id()
    s = snapshot(tok, u)
    eq(s["seq"], 0, "seq of an image never written")
    eq(s["chats"], [], "chats of an image never written")
    check(isinstance(s["epoch"], str), "epoch is a string")
    eq(http("GET", f"/api/v1/chats?urlId={q(u)}").status, 401, "snapshot without a token")
    eq(http("GET", f"/api/v1/chats?urlId={q(u)}", token="garbage").status, 401, "snapshot with a garbage token")
    r = http("POST", "/api/v1/chats", {"urlId": u, "x": 1, "y": 1, "text": "hi"}, token=tok)
    eq(r.status, 403, "anonymous create when the policy is read")
    eq(snapshot(tok, u)["seq"], 0, "refused create logged nothing")


@case
async def create_broadcast_and_echo():
    tid, _ = new_tenant("write")
    ta, tb = token(tid), token(tid)
    u = url_id()
    wa, wb = await connect(ta), await connect(tb)
    try:
        await subscribe(wa, u)
        sb = await subscribe(wb, u)
        eq(sb["seq"], 0, "subscribed seq of an empty image")
        b = bid()
        j = create(ta, u, x=12.5, y=87.75, text="The logo is cut off here", bid=b)
        chat = j["chat"]
        eq(j["seq"], 1, "first event takes seq 1")
        eq((chat["x"], chat["y"], chat["resolved"]), (12.5, 87.75, False), "created chat fields")
        check("urlId" not in chat, "a chat does not repeat its urlId")
        eq(chat["user"].get("anonymous"), True, "anonymous author flagged")
        check("editedAt" not in chat["comments"][0], "editedAt omitted until edited")
        eq(len(chat["comments"]), 1, "a new chat holds its first comment")
        eq(chat["comments"][0]["text"], "The logo is cut off here", "first comment text")
        for ws, who in ((wb, "other user"), (wa, "author's own connection")):
            ev = await ws.recv(is_event(u, "new-image-chat"), what=f"new-image-chat at the {who}")
            eq(ev["seq"], 1, f"event seq at the {who}")
            eq(ev["broadcastId"], b, f"broadcastId echoed to the {who}")
            eq(ev["chat"]["id"], chat["id"], f"chat id at the {who}")
            eq(ev["chat"]["comments"][0]["text"], "The logo is cut off here", f"comment text at the {who}")
            check(isinstance(ev["at"], int), "event has an integer 'at'")
    finally:
        wa.close(), wb.close()


@case
async def event_size():
    tid, _ = new_tenant("write")
    tok = token(tid)
    u = "https://shop.example/p/1#hero.jpg"
    ws = await connect(tok)
    try:
        await subscribe(ws, u)
        create(tok, u, x=33.3333, y=66.6667, text="x" * 60, bid=bid())
        ev = await ws.recv(is_event(u, "new-image-chat"), what="new-image-chat")
        size = len(json.dumps(ev, separators=(",", ":"), ensure_ascii=False).encode())
        print(f"    new-image-chat with a 60-char comment: {size} bytes")
        check(size < 1024, f"new-image-chat is {size} bytes, want < 1024")
    finally:
        ws.close()


@case
async def updates_and_permissions():
    tid, secret = new_tenant("write")
    ta, tb = token(tid), token(tid)
    tm = token(tid, sso(secret, {"id": "mod-1", "username": "Moderator", "isModerator": True}))
    u = url_id()
    ws = await connect(tb)
    try:
        await subscribe(ws, u)
        chat = create(ta, u, bid=bid())["chat"]
        cid = chat["id"]
        first = chat["comments"][0]["id"]
        await ws.recv(is_event(u, "new-image-chat"))
        seq = 1

        async def expect(op, b):
            nonlocal seq
            seq += 1
            ev = await ws.recv(is_event(u), what=op)
            eq(ev["type"], "image-chat-updated", f"{op} event type")
            eq(ev["seq"], seq, f"{op} seq")
            eq(ev["chatId"], cid, f"{op} chatId")
            eq(ev["change"]["op"], op, "change op")
            eq(ev["broadcastId"], b, f"{op} broadcastId")
            return ev

        b = bid()
        r = http("POST", f"/api/v1/chats/{cid}/comments", {"text": "Agreed, move it left", "broadcastId": b}, token=tb)
        eq(r.status, 201, f"reply: {r.body[:200]!r}")
        reply = r.json()["comment"]
        ev = await expect("comment-added", b)
        eq(ev["change"]["comment"]["text"], "Agreed, move it left", "added comment text")

        b = bid()
        r = http("PATCH", f"/api/v1/chats/{cid}/comments/{reply['id']}", {"text": "Agreed, move it 10px left", "broadcastId": b}, token=tb)
        eq(r.status, 200, f"edit own comment: {r.body[:200]!r}")
        ev = await expect("comment-edited", b)
        check(ev["change"]["comment"]["editedAt"], "edited comment has editedAt")

        before = snapshot(ta, u)["seq"]
        eq(http("PATCH", f"/api/v1/chats/{cid}/comments/{first}", {"text": "hijack"}, token=tb).status, 403,
           "editing someone else's comment")
        eq(http("PATCH", f"/api/v1/chats/{cid}", {"x": 1, "y": 1}, token=tb).status, 403,
           "moving someone else's chat")
        eq(http("DELETE", f"/api/v1/chats/{cid}/comments/{first}", token=tb).status, 403,
           "deleting someone else's comment")
        eq(http("DELETE", f"/api/v1/chats/{cid}", token=tb).status, 403, "deleting someone else's chat")
        eq(snapshot(ta, u)["seq"], before, "refused mutations logged nothing")

        b = bid()
        eq(http("PATCH", f"/api/v1/chats/{cid}", {"x": 40, "y": 12.5, "broadcastId": b}, token=ta).status, 200, "move own chat")
        ev = await expect("moved", b)
        eq((ev["change"]["x"], ev["change"]["y"]), (40, 12.5), "moved to")

        b = bid()
        eq(http("PATCH", f"/api/v1/chats/{cid}", {"resolved": True, "broadcastId": b}, token=tb).status, 200,
           "anyone who may write may resolve")
        ev = await expect("resolved", b)
        eq(ev["change"]["resolved"], True, "resolved flag")

        b = bid()
        eq(http("DELETE", f"/api/v1/chats/{cid}/comments/{reply['id']}?broadcastId={b}", token=tm).status, 200,
           "moderator deletes a comment")
        ev = await expect("comment-deleted", b)
        eq(ev["change"]["commentId"], reply["id"], "deleted comment id")

        s = snapshot(tb, u)
        eq(s["seq"], seq, "snapshot seq after updates")
        c = s["chats"][0]
        eq((c["x"], c["y"], c["resolved"]), (40, 12.5, True), "snapshot reflects move and resolve")
        eq([x["id"] for x in c["comments"]], [first], "snapshot comments after delete")

        b = bid()
        eq(http("DELETE", f"/api/v1/chats/{cid}/comments/{first}?broadcastId={b}", token=ta).status, 200,
           "author deletes the last comment")
        ev = await ws.recv(is_event(u), what="event after deleting the last comment")
        eq(ev["type"], "deleted-image-chat", "deleting the last comment deletes the chat")
        eq(ev["chatId"], cid, "deleted chat id")
        eq(snapshot(tb, u)["chats"], [], "snapshot empty after the chat is gone")
    finally:
        ws.close()


@case
async def moderator_and_tenant_delete():
    tid, secret = new_tenant("write")
    ta = token(tid)
    tm = token(tid, sso(secret, {"id": "mod-2", "username": "Mod", "isModerator": True}))
    u = url_id()
    ws = await connect(ta)
    try:
        await subscribe(ws, u)
        c1 = create(ta, u, bid=bid())["chat"]["id"]
        c2 = create(ta, u, bid=bid())["chat"]["id"]
        b = bid()
        eq(http("DELETE", f"/api/v1/chats/{c1}?broadcastId={b}", token=tm).status, 200, "moderator deletes a chat")
        ev = await ws.recv(is_event(u, "deleted-image-chat"), what="deleted-image-chat")
        eq((ev["chatId"], ev["broadcastId"]), (c1, b), "deleted event")
        eq(http("DELETE", f"/api/v1/tenant/chats/{c2}", basic=(tid, "wrong")).status, 401, "tenant API with a wrong secret")
        eq(http("DELETE", f"/api/v1/tenant/chats/{c2}", basic=(tid, secret)).status, 200, "tenant API moderation delete")
        ev = await ws.recv(is_event(u, "deleted-image-chat"), what="deleted-image-chat from the tenant API")
        eq(ev["chatId"], c2, "tenant delete event")
        eq(snapshot(ta, u)["chats"], [], "both chats gone")
    finally:
        ws.close()


@case
async def recovery_by_seq():
    tid, _ = new_tenant("write")
    tok = token(tid)
    u = url_id()
    create(tok, u, bid=bid())
    s = snapshot(tok, u)
    epoch, seq = s["epoch"], s["seq"]
    ids = [create(tok, u, x=i, y=i, text=f"missed {i}", bid=bid())["chat"]["id"] for i in range(5)]
    ws = await connect(tok)
    try:
        m = await subscribe(ws, u, epoch=epoch, seq=seq)
        eq(m["recovered"], True, "recovered with the current epoch and a retained seq")
        eq(m["seq"], seq + 5, "subscribed seq is the latest")
        got = [await ws.recv(is_event(u), what=f"replayed event {i}") for i in range(5)]
        eq([e["seq"] for e in got], list(range(seq + 1, seq + 6)), "replayed seqs in order")
        eq([e["chat"]["id"] for e in got], ids, "replayed chats")
        live = create(tok, u, bid=bid())["chat"]["id"]
        ev = await ws.recv(is_event(u), what="live event after replay")
        eq((ev["seq"], ev["chat"]["id"]), (seq + 6, live), "live event follows the replay")
    finally:
        ws.close()
    for label, kw in (("wrong epoch", {"epoch": "not-" + str(epoch), "seq": seq}), ("no position", {})):
        ws = await connect(tok)
        try:
            m = await subscribe(ws, u, **kw)
            eq(m["recovered"], False, f"{label} is not recovered")
            eq(m["epoch"], epoch, f"{label}: subscribed names the current epoch")
            await ws.quiet(is_event(u), 0.7)
        finally:
            ws.close()


@case
async def events_endpoint():
    tid, _ = new_tenant("write")
    tok = token(tid)
    u = url_id()
    epoch = snapshot(tok, u)["epoch"]
    for i in range(3):
        create(tok, u, text=f"e{i}", bid=bid())
    epoch = snapshot(tok, u)["epoch"]
    r = http("GET", f"/api/v1/events?urlId={q(u)}&epoch={q(epoch)}&since=1", token=tok)
    eq(r.status, 200, f"events: {r.body[:200]!r}")
    j = r.json()
    eq([e["seq"] for e in j["events"]], [2, 3], "events since 1")
    eq(j["seq"], 3, "events seq")
    eq(j["events"][0]["chat"]["comments"][0]["text"], "e1", "event body")
    r = http("GET", f"/api/v1/events?urlId={q(u)}&epoch=bogus&since=1", token=tok)
    eq(r.status, 410, "events with a stale epoch")
    eq(r.json()["error"]["code"], "history_gone", "error code")


@case
async def tenant_isolation():
    t1, _ = new_tenant("write")
    t2, s2 = new_tenant("write")
    k1, k2 = token(t1), token(t2)
    u = url_id("shared")
    w2 = await connect(k2)
    try:
        await subscribe(w2, u)
        cid = create(k1, u, bid=bid())["chat"]["id"]
        await w2.quiet(is_event(u), 1.0)
        eq(snapshot(k2, u)["chats"], [], "other tenant's snapshot of the same urlId")
        for method, path, body in (("PATCH", f"/api/v1/chats/{cid}", {"resolved": True}),
                                   ("DELETE", f"/api/v1/chats/{cid}", None),
                                   ("POST", f"/api/v1/chats/{cid}/comments", {"text": "cross"})):
            eq(http(method, path, body, token=k2).status, 404, f"{method} {path} from another tenant")
        eq(snapshot(k1, u)["seq"], 1, "nothing logged by the other tenant")
        _, s3 = new_tenant("write")
        eq(http("DELETE", f"/api/v1/tenant/chats/{cid}", basic=(t2, s3)).status, 401,
           "tenant API with another tenant's secret")
        eq(http("DELETE", f"/api/v1/tenant/chats/{cid}", basic=(t2, s2)).status, 404,
           "tenant API deleting another tenant's chat")
        eq(len(snapshot(k1, u)["chats"]), 1, "the chat is still there")
    finally:
        w2.close()


@case
async def bad_input_changes_nothing():
    tid, _ = new_tenant("write")
    owner = tok = token(tid)
    u = url_id()
    cid = create(tok, u, bid=bid())["chat"]["id"]
    ok = {"urlId": u, "x": 10, "y": 10, "text": "fine"}
    bad = [
        ("x below 0", "x", {**ok, "x": -0.01}), ("x above 100", "x", {**ok, "x": 100.5}),
        ("y missing", "y", {k: v for k, v in ok.items() if k != "y"}), ("x a string", "x", {**ok, "x": "10"}),
        ("text empty", "text", {**ok, "text": " \n\t "}), ("text of 2001 é", "text", {**ok, "text": "é" * 2001}),
        ("text of 2001 emoji", "text", {**ok, "text": "😀" * 2001}),
        ("urlId empty", "urlId", {**ok, "urlId": ""}), ("urlId of 1025 bytes", "urlId", {**ok, "urlId": "u" * 1025}),
        ("urlId of 513 é (1026 bytes)", "urlId", {**ok, "urlId": "é" * 513}),
        ("urlId control char", "urlId", {**ok, "urlId": "a\u0000b"}), ("broadcastId bad", "broadcastId", {**ok, "broadcastId": "a b"}),
        ("text not a string", "text", {**ok, "text": ["x"]}),
    ]
    for i, (label, field, body) in enumerate(bad):
        if i % 5 == 0:
            tok = token(tid)  # stay far below any write rate limit
        r = http("POST", "/api/v1/chats", body, token=tok)
        eq(r.status, 400, f"{label}: status ({r.body[:120]!r})")
        err = r.json()["error"]
        eq(err["code"], "invalid_input", f"{label}: error code")
        eq(err.get("field"), field, f"{label}: error field")
    for label, raw in (("not JSON", b"{nope"), ("JSON array", b"[]")):
        eq(http("POST", "/api/v1/chats", raw=raw, token=tok).status, 400, label)
    eq(http("POST", "/api/v1/chats", raw=b'{"text":"' + b"a" * 70000 + b'"}', token=tok).status, 413, "70 KB body")
    eq(http("POST", f"/api/v1/chats/{cid}/comments", {"text": ""}, token=tok).status, 400, "empty reply")
    eq(http("PATCH", f"/api/v1/chats/{cid}", {"x": 500, "y": 1}, token=owner).status, 400, "move out of range")
    eq(http("PATCH", f"/api/v1/chats/{cid}", {"x": 5}, token=owner).status, 400, "move with x alone")
    eq(http("POST", "/api/v1/chats/does-not-exist/comments", {"text": "hi"}, token=tok).status, 404, "reply to a missing chat")
    s = snapshot(tok, u)
    eq(s["seq"], 1, "bad input logged nothing")
    eq(len(s["chats"]), 1, "bad input stored nothing")
    eq(s["chats"][0]["comments"][0]["text"], "Look at this corner", "stored chat untouched")
    edge = url_id("edges")
    for label, body in (("2000 é (4000 bytes)", {**ok, "urlId": edge, "text": "é" * 2000}),
                        ("2000 emoji (4000 UTF-16 units)", {**ok, "urlId": edge, "text": "😀" * 2000}),
                        ("2000 chars padded with white space", {**ok, "urlId": edge, "text": "  " + "a" * 2000 + "\n"}),
                        ("urlId of 512 é (1024 bytes)", {**ok, "urlId": "é" * 512}),
                        ("x = 0 and y = 100", {**ok, "urlId": edge, "x": 0, "y": 100})):
        r = http("POST", "/api/v1/chats", body, token=token(tid))
        eq(r.status, 201, f"{label} is accepted ({r.body[:120]!r})")
    c = http("POST", "/api/v1/chats", {**ok, "urlId": edge, "text": "  trimmed \n"}, token=token(tid)).json()["chat"]
    eq(c["comments"][0]["text"], "trimmed", "text is stored trimmed")


@case
async def websocket_rules():
    tid, _ = new_tenant("write")
    tok = token(tid)
    ws = await WS.connect()
    try:
        await ws.send({"type": "hello", "token": "garbage"})
        code = await ws.closed_with()
        check(code and code[0] == 4401, f"bad token closes with 4401, got {code}")
    finally:
        ws.close()
    ws = await WS.connect()
    try:
        await ws.send({"type": "ping"})
        m = await ws.recv(lambda m: m.get("type") == "error", what="error for a message before hello")
        eq(m["code"], "unauthorized", "message before hello")
        code = await ws.closed_with(3)
        check(code and code[0] == 4401, f"message before hello closes with 4401, got {code}")
    finally:
        ws.close()
    ws = await WS.connect()
    try:
        await ws.send({"type": "hello", "token": tok})
        m = await ws.recv(lambda m: m.get("type") == "welcome", what="welcome")
        check(m["user"]["id"].startswith("anon:") and m["moderator"] is False, f"welcome names the user: {short(m)}")
        check(isinstance(m["heartbeat"], int) and 5 <= m["heartbeat"] <= 120, f"heartbeat seconds: {m.get('heartbeat')}")
        await ws.send({"type": "ping"})
        await ws.recv(lambda m: m.get("type") == "pong", what="pong")
        pad = 16384 - len(json.dumps({"type": "ping", "p": ""}))
        await ws.send({"type": "ping", "p": "x" * pad})
        await ws.recv(lambda m: m.get("type") == "pong", what="pong for a frame of exactly 16 KiB")
        await ws.send_text("{not json")
        m = await ws.recv(lambda m: m.get("type") == "error", what="error for a bad frame")
        eq(m["code"], "invalid_message", "bad frame error code")
        await ws.send({"type": "subscribe", "id": "big", "urlId": "u" * 1025})
        m = await ws.recv(lambda m: m.get("type") == "error", what="error for a bad urlId")
        eq(m.get("id"), "big", "error names the request id")
        u = url_id()
        await subscribe(ws, u)
        await ws.send({"type": "unsubscribe", "id": "un", "urlId": u})
        await ws.recv(lambda m: m.get("type") == "unsubscribed", what="unsubscribed")
        create(tok, u, bid=bid())
        await ws.quiet(is_event(u), 0.8)
        await ws.send({"type": "ping"})
        await ws.recv(lambda m: m.get("type") == "pong", what="pong after all that")
        await ws.send({"type": "ping", "p": "x" * (pad + 1)})
        code = await ws.closed_with(5)
        check(code and code[0] == 1009, f"a frame one byte over 16 KiB closes with 1009, got {code}")
    finally:
        ws.close()


@case
async def subscription_limit():
    tid, _ = new_tenant("read")
    tok = token(tid)
    ws = await connect(tok)
    try:
        for i in range(100):
            await ws.send({"type": "subscribe", "id": f"s{i}", "urlId": f"lim-{i}"})
        for i in range(100):
            await ws.recv(lambda m, i=i: m.get("id") == f"s{i}" and m.get("type") == "subscribed", what=f"subscribed s{i}")
        await ws.send({"type": "subscribe", "id": "s100", "urlId": "lim-100"})
        m = await ws.recv(lambda m: m.get("id") == "s100", what="reply to the 101st subscribe")
        eq((m["type"], m.get("code")), ("error", "too_many_subscriptions"), "the 101st subscription")
    finally:
        ws.close()


@case
async def presence_counts():
    tid, _ = new_tenant("read")
    u = url_id()
    socks = [await connect(token(tid)) for _ in range(3)]
    try:
        for ws in socks:
            await subscribe(ws, u)
        await socks[0].recv(lambda m: m.get("type") == "presence" and m.get("urlId") == u and m["viewers"] == 3,
                            timeout=4, what="presence viewers=3")
        socks[2].close()
        await socks[0].recv(lambda m: m.get("type") == "presence" and m.get("urlId") == u and m["viewers"] == 2,
                            timeout=6, what="presence viewers=2 after one left")
        obs = socks[0]
        obs.inbox.clear()
        more = [await connect(token(tid)) for _ in range(6)]
        socks += more
        for ws in more:
            await subscribe(ws, u)
        await asyncio.sleep(2.5)
        seen = [m for m in obs.inbox if m.get("type") == "presence" and m.get("urlId") == u]
        check(1 <= len(seen) <= 3, f"{len(seen)} presence messages in 2.5 s for 6 joins, want coalescing to <= 1/s")
        eq(seen[-1]["viewers"], 8, "the last presence count")
    finally:
        for ws in socks:
            ws.close()


@case
async def origin_rules():
    tid, _ = new_tenant("write", origins=["https://allowed.example"])
    eq(session(tid, headers={"origin": "https://evil.example"}).status, 403, "session from a foreign origin")
    r = session(tid, headers={"origin": "https://allowed.example"})
    eq(r.status, 200, "session from the allowed origin")
    tok = r.json()["token"]
    eq(session(tid).status, 200, "session without an Origin header (server to server)")
    ws = await connect(tok, origin="https://allowed.example")
    ws.close()
    ws = await WS.connect(origin="https://evil.example")
    try:
        await ws.send({"type": "hello", "token": tok})
        m = await ws.recv(lambda m: m.get("type") in ("welcome", "error"), what="answer to a foreign origin")
        eq((m["type"], m.get("code")), ("error", "forbidden"), "hello from a foreign origin")
        code = await ws.closed_with(3)
        check(code and code[0] == 4403, f"foreign origin closes with 4403, got {code}")
    finally:
        ws.close()
    open_tid, _ = new_tenant("write")
    ws = await connect(token(open_tid), origin="https://anything.example")  # no origin list: any origin
    ws.close()
    empty_tid, _ = new_tenant("write", origins=[])
    eq(session(empty_tid, headers={"origin": "https://anything.example"}).status, 200, "an empty origin list allows any")


@case
async def cors():
    tid, _ = new_tenant("write", origins=["https://allowed.example"])
    r = http("OPTIONS", "/api/v1/chats", headers={"origin": "https://allowed.example",
             "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type"})
    check(r.status in (200, 204), f"preflight answered {r.status}")
    eq(r.headers.get("access-control-allow-origin"), "https://allowed.example", "preflight allow-origin")
    check("authorization" in r.headers.get("access-control-allow-headers", "").lower(), "preflight allows Authorization")
    r = session(tid, headers={"origin": "https://allowed.example"})
    eq(r.headers.get("access-control-allow-origin"), "https://allowed.example", "session allow-origin")
    tok = r.json()["token"]
    u = url_id()
    r = http("GET", f"/api/v1/chats?urlId={q(u)}", token=tok, headers={"origin": "https://allowed.example"})
    eq((r.status, r.headers.get("access-control-allow-origin")), (200, "https://allowed.example"), "snapshot allow-origin")
    r = http("GET", f"/api/v1/chats?urlId={q(u)}", token=tok, headers={"origin": "https://evil.example"})
    eq(r.status, 403, "a token call from a foreign origin")
    check("access-control-allow-origin" not in r.headers, "no allow-origin for a foreign origin")
    r = http("GET", f"/api/v1/chats?urlId={q(u)}", token="expired-or-garbage", headers={"origin": "https://allowed.example"})
    eq(r.status, 401, "garbage token")
    check("access-control-allow-origin" in r.headers, "a 401 still carries CORS headers")


@case
async def rate_limit():
    if ARGS.no_rate_limit:
        print("    skipped: the server runs without a write rate limit")
        return
    tid, _ = new_tenant("write")
    tok = token(tid)
    u = url_id()
    statuses = []
    for i in range(25):
        r = http("POST", "/api/v1/chats", {"urlId": u, "x": 1, "y": 1, "text": f"r{i}"}, token=tok)
        statuses.append(r.status)
        if r.status == 429:
            eq(r.json()["error"]["code"], "rate_limited", "429 code")
            check(int(r.headers.get("retry-after", "0")) >= 1, f"Retry-After {r.headers.get('retry-after')}")
    check(429 in statuses, f"25 writes at once by one user were never limited: {statuses}")
    eq(statuses.count(201) + statuses.count(429), 25, f"only 201 and 429 ({statuses})")
    eq(snapshot(tok, u)["seq"], statuses.count(201), "a limited write logged nothing")
    eq(http("POST", "/api/v1/chats", {"urlId": u, "x": 1, "y": 1, "text": "other user"}, token=token(tid)).status, 201,
       "another user is not limited")


@case
async def operator_api():
    eq(http("POST", "/api/v1/admin/tenants", {"tenantId": "x-" + uuid.uuid4().hex[:6]}, token="wrong").status, 401,
       "wrong operator key")
    tid, _ = new_tenant()
    r = http("POST", "/api/v1/admin/tenants", {"tenantId": tid}, token=ARGS.admin_key)
    eq((r.status, r.json()["error"]["code"]), (409, "conflict"), "a tenant that exists")
    eq(http("POST", "/api/v1/admin/tenants", {"tenantId": "Bad_Id"}, token=ARGS.admin_key).status, 400, "bad tenant id")
    given = "given-" + uuid.uuid4().hex
    r = http("POST", "/api/v1/admin/tenants", {"tenantId": "g-" + uuid.uuid4().hex[:6], "secret": given}, token=ARGS.admin_key)
    eq(r.json()["secret"], given, "a given secret is kept")
    d, _ = new_tenant(anonymous=None)
    eq(session(d).status, 401, "anonymous policy defaults to none")
    eq(http("GET", "/api/v1/nope").status, 404, "unknown route")


@case
async def usage_and_metrics():
    tid, secret = new_tenant("write")
    first = time.strftime("%Y-%m-%d", time.gmtime())
    tok = token(tid)
    u = url_id()
    socks = [await connect(tok) for _ in range(3)]
    try:
        await subscribe(socks[0], u)
        cids = [create(tok, u, text=f"usage {i}", bid=bid())["chat"]["id"] for i in range(3)]
        eq(http("POST", f"/api/v1/chats/{cids[0]}/comments", {"text": "a reply"}, token=tok).status, 201, "reply")
        for _ in range(4):
            await socks[0].recv(is_event(u))
    finally:
        for ws in socks:
            ws.close()
    last = time.strftime("%Y-%m-%d", time.gmtime())
    deadline = time.monotonic() + 10
    while True:
        r = http("GET", f"/api/v1/tenant/usage?from={first}&to={last}", basic=(tid, secret))
        eq(r.status, 200, f"usage: {r.body[:200]!r}")
        days = r.json()["days"]
        total = {k: sum(d.get(k, 0) for d in days) for k in
                 ("pubSubMessageCount", "pubSubBandwidth", "conversationCreateCount", "commentCreateCount")}
        if total["pubSubMessageCount"] >= 4 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    eq(days[0].get("date"), first, "usage day")
    check(total["pubSubMessageCount"] >= 4, f"pubSubMessageCount {total['pubSubMessageCount']} counts 4 deliveries")
    check(total["pubSubBandwidth"] >= 4 * 100, f"pubSubBandwidth {total['pubSubBandwidth']} counts their bytes")
    eq(total["conversationCreateCount"], 3, "conversationCreateCount")
    eq(total["commentCreateCount"], 4, "commentCreateCount counts first comments and replies")
    check(max(d["peakConnections"] for d in days) >= 3, f"peakConnections {[d['peakConnections'] for d in days]}")
    eq(http("GET", f"/api/v1/tenant/usage?from={first}&to={last}", basic=(tid, "nope")).status, 401, "usage with a wrong secret")
    r = http("GET", "/metrics", headers={"accept": "text/plain"})
    eq(r.status, 200, "/metrics")
    check(b"# TYPE" in r.body, "/metrics is Prometheus text")


@case
async def snapshot_equals_replay():
    """Folding the event log from seq 0 must give exactly the snapshot."""
    tid, secret = new_tenant("write")
    ta, tb = token(tid), token(tid)
    u = url_id()
    cids = [create(ta, u, x=i * 10, y=5, text=f"c{i}", bid=bid())["chat"]["id"] for i in range(4)]
    r = http("POST", f"/api/v1/chats/{cids[0]}/comments", {"text": "reply"}, token=tb)
    eq(r.status, 201, "reply")
    for label, (method, path, body, tok) in {
        "move": ("PATCH", f"/api/v1/chats/{cids[1]}", {"x": 99.5, "y": 0}, ta),
        "resolve": ("PATCH", f"/api/v1/chats/{cids[2]}", {"resolved": True}, tb),
        "delete": ("DELETE", f"/api/v1/chats/{cids[3]}", None, ta),
        "edit": ("PATCH", f"/api/v1/chats/{cids[0]}/comments/{r.json()['comment']['id']}", {"text": "reply v2"}, tb),
        "no-op move": ("PATCH", f"/api/v1/chats/{cids[1]}", {"x": 99.5, "y": 0}, ta),
    }.items():
        eq(http(method, path, body, token=tok).status, 200, label)
    s = snapshot(ta, u)
    eq([c["id"] for c in s["chats"]], cids[:3], "snapshot chats oldest first")
    eq(s["seq"], 9, "the no-op move logged nothing")
    ev = http("GET", f"/api/v1/events?urlId={q(u)}&epoch={q(s['epoch'])}&since=0", token=ta).json()["events"]
    eq([e["seq"] for e in ev], list(range(1, s["seq"] + 1)), "log is gap-free from 1")
    state = {}
    for e in ev:
        if e["type"] == "new-image-chat":
            state[e["chat"]["id"]] = e["chat"]
        elif e["type"] == "deleted-image-chat":
            state.pop(e["chatId"], None)
        else:
            c, ch = state[e["chatId"]], e["change"]
            if ch["op"] == "comment-added":
                c["comments"].append(ch["comment"])
            elif ch["op"] == "comment-edited":
                c["comments"] = [ch["comment"] if x["id"] == ch["comment"]["id"] else x for x in c["comments"]]
            elif ch["op"] == "comment-deleted":
                c["comments"] = [x for x in c["comments"] if x["id"] != ch["commentId"]]
            elif ch["op"] == "moved":
                c["x"], c["y"] = ch["x"], ch["y"]
            elif ch["op"] == "resolved":
                c["resolved"] = ch["resolved"]

    def norm(c):
        return (c["id"], c["x"], c["y"], c["resolved"], c["user"]["id"],
                [(x["id"], x["text"], x["user"]["id"], x.get("editedAt")) for x in c["comments"]])

    eq(sorted(map(norm, state.values())), sorted(map(norm, s["chats"])), "replayed log equals snapshot")


# ---------------------------------------------------------------- main ------

async def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=os.environ.get("IMAGECHAT_URL", "http://127.0.0.1:8080"))
    p.add_argument("--admin-key", default=os.environ.get("IMAGECHAT_ADMIN_KEY"))
    p.add_argument("--insecure", action="store_true", help="accept any TLS certificate")
    p.add_argument("--no-rate-limit", action="store_true",
                   help="the server runs with --write-rate-per-minute 0: skip the rate-limit check")
    p.add_argument("-k", dest="only", help="run only checks whose name contains this")
    p.add_argument("-v", action="store_true", help="print tracebacks")
    ARGS = p.parse_args()
    if not ARGS.admin_key:
        p.error("--admin-key (or IMAGECHAT_ADMIN_KEY) is required")
    passed = failed = 0
    for fn in CHECKS:
        if ARGS.only and ARGS.only not in fn.__name__:
            continue
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(fn(), 60)
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - t0:.1f}s)")
        except Exception as e:  # noqa: BLE001 - every failure is reported the same way
            failed += 1
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}")
            if ARGS.v:
                traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
