#!/usr/bin/env python3
"""A Standard Webhooks receiver for the webhook tests (protocol §12).

Every delivery is verified with the independent `standardwebhooks` package,
not with the server's own code. Started by the integration tests and by
scripts/webhook-latency.py:

    python3 tests/receivers/webhook_receiver.py

binds 127.0.0.1 on a free port, prints one line `{"port": N}` and serves
until it is killed or its standard input reaches end of file.

Deliveries: `POST /hook/<name>`. What the endpoint answers depends on its
mode: `ok` 204, `fail` 500, `slow` 200 after `delay` seconds (default 12),
`drop` closes the connection without an answer, `redirect` 302 to
`/hook/<name>-redirected`. Every attempt is recorded as

    {"name", "mode", "webhookId", "webhookTimestamp", "signature",
     "receivedAtMs", "verified", "verifyError"?, "body", "raw",
     "status", "answeredAtMs", "headers", "peer"}

where `status` is the status answered (null when none was: `drop`, or a
`slow` answer whose client had gone) and `headers` holds every request
header (lower-case names, the last value of each); `peer` is the sender's
address and port (one per connection). Attempts answered with a
2xx are accepted: duplicates by `webhook-id` are counted and dropped, and
an accepted body whose `data` has `urlId` and `seq` must have a seq above
the last accepted one of (name, data.tenantId, data.urlId), else an entry
is added to `orderErrors`. Accepted deliveries are kept in the order they
were answered (for every mode but `slow`, the order they arrived in).

Control (JSON):
    POST   /control/<name>  {"secret"?: "whsec_…", "mode"?: …, "delay"?: s}
    GET    /control/<name>  {"attempts", "accepted", "duplicates",
                             "orderErrors", "unverified"}
                            (`?counts`: the same keys, each a number)
    DELETE /control/<name>  forgets the endpoint (records, secret and mode;
                            `?keep=state` forgets the records only)
    GET    /control         {"endpoints": [name, …]}
`unverified` counts every attempt, accepted or not, that failed
verification (an attempt with no secret set fails with "no secret").
"""

import json
import os
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from standardwebhooks.webhooks import Webhook

MODES = ("ok", "fail", "slow", "drop", "redirect")
DEFAULT_DELAY = 12.0

LOCK = threading.Lock()
ENDPOINTS = {}


def new_endpoint():
    return {
        "secret": None,
        "webhook": None,
        "mode": "ok",
        "delay": DEFAULT_DELAY,
        "attempts": [],
        "accepted": [],
        "seen": set(),
        "duplicates": 0,
        "orderErrors": [],
        "lastSeq": {},
        "unverified": 0,
    }


def endpoint(name):
    """The endpoint named `name`, made on first use. Call with LOCK held."""
    ep = ENDPOINTS.get(name)
    if ep is None:
        ep = ENDPOINTS[name] = new_endpoint()
    return ep


def now_ms():
    return time.time() * 1000.0


def accept(ep, attempt):
    """Counts a 2xx-answered attempt: drops duplicates, checks seq order. LOCK held."""
    wid = attempt["webhookId"]
    if wid is not None and wid in ep["seen"]:
        ep["duplicates"] += 1
        return
    if wid is not None:
        ep["seen"].add(wid)
    ep["accepted"].append(attempt)
    body = attempt["body"]
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict) and "urlId" in data and "seq" in data:
        key = (data.get("tenantId"), data.get("urlId"))
        seq = data.get("seq")
        last = ep["lastSeq"].get(key)
        if last is not None and not (isinstance(seq, (int, float)) and seq > last):
            ep["orderErrors"].append(
                {
                    "tenantId": key[0],
                    "urlId": key[1],
                    "seq": seq,
                    "lastSeq": last,
                    "webhookId": wid,
                    "type": body.get("type"),
                }
            )
        if isinstance(seq, (int, float)) and (last is None or seq > last):
            ep["lastSeq"][key] = seq


def peer_closed(sock):
    """True when the client has closed its side of the connection."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class RawJson(str):
    """A JSON text already serialized."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes
    server_version = "webhook-receiver"

    def log_message(self, fmt, *args):
        pass

    # -- helpers -----------------------------------------------------------

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status, body=None, headers=()):
        if isinstance(body, RawJson):
            data = body.encode()
        else:
            data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)
        self.wfile.flush()

    def route(self):
        parts = urlsplit(self.path)
        segments = parts.path.strip("/").split("/", 1)
        kind = segments[0]
        name = unquote(segments[1]) if len(segments) > 1 else ""
        return kind, name, parse_qs(parts.query, keep_blank_values=True)

    # -- deliveries --------------------------------------------------------

    def deliver(self, name):
        received = now_ms()
        raw = self.read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            ep = endpoint(name)
            mode, delay, hook = ep["mode"], ep["delay"], ep["webhook"]
        verified, error = False, None
        if hook is None:
            error = "no secret"
        else:
            try:
                hook.verify(raw, headers)
                verified = True
            except Exception as e:  # the package's verification error, or a bad header
                error = f"{type(e).__name__}: {e}"
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        attempt = {
            "name": name,
            "mode": mode,
            "webhookId": headers.get("webhook-id"),
            "webhookTimestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "receivedAtMs": received,
            "verified": verified,
            "body": body,
            "raw": raw.decode("utf-8", errors="replace"),
            "status": None,
            "answeredAtMs": None,
            "headers": headers,
            "peer": "%s:%d" % self.client_address[:2],
        }
        if error is not None:
            attempt["verifyError"] = error
        with LOCK:
            ep["attempts"].append(attempt)
            if not verified:
                ep["unverified"] += 1

        if mode == "drop":
            self.close_connection = True
            with LOCK:
                attempt["answeredAtMs"] = now_ms()
            return
        if mode == "fail":
            status, extra = 500, ()
        elif mode == "redirect":
            host = "%s:%d" % self.server.server_address[:2]
            status, extra = 302, (("Location", f"http://{host}/hook/{name}-redirected"),)
        elif mode == "slow":
            time.sleep(delay)
            if peer_closed(self.connection):
                self.close_connection = True
                with LOCK:
                    attempt["answeredAtMs"] = now_ms()
                    attempt["answerError"] = "the client closed the connection before the answer"
                return
            status, extra = 200, ()
        else:
            status, extra = 204, ()
        # A 2xx counts once it is being answered, so a test that sees the
        # answer also sees the delivery in `accepted`.
        with LOCK:
            attempt["status"] = status
            attempt["answeredAtMs"] = now_ms()
            if 200 <= status < 300:
                accept(ep, attempt)
        try:
            self.answer(status, None, extra)
        except OSError as e:
            with LOCK:
                attempt["answerError"] = str(e)
            self.close_connection = True

    # -- control -----------------------------------------------------------

    def report(self, name, counts):
        """The endpoint's report, serialized under the lock (attempts change as they are answered)."""
        with LOCK:
            ep = ENDPOINTS.get(name) or new_endpoint()
            if counts:
                return json.dumps({
                    "attempts": len(ep["attempts"]),
                    "accepted": len(ep["accepted"]),
                    "duplicates": ep["duplicates"],
                    "orderErrors": len(ep["orderErrors"]),
                    "unverified": ep["unverified"],
                })
            return json.dumps({
                "attempts": ep["attempts"],
                "accepted": ep["accepted"],
                "duplicates": ep["duplicates"],
                "orderErrors": ep["orderErrors"],
                "unverified": ep["unverified"],
            })

    def configure(self, name):
        try:
            req = json.loads(self.read_body() or b"{}")
            if not isinstance(req, dict):
                raise ValueError("the body must be a JSON object")
            hook = None
            if req.get("secret") is not None:
                hook = Webhook(req["secret"])
            mode = req.get("mode")
            if mode is not None and mode not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}")
            delay = req.get("delay")
            if delay is not None and not (isinstance(delay, (int, float)) and delay >= 0):
                raise ValueError("delay must be a number of seconds >= 0")
        except Exception as e:
            return self.answer(400, {"error": f"{type(e).__name__}: {e}"})
        with LOCK:
            ep = endpoint(name)
            if hook is not None:
                ep["secret"], ep["webhook"] = req["secret"], hook
            if mode is not None:
                ep["mode"] = mode
            if delay is not None:
                ep["delay"] = float(delay)
            state = {"mode": ep["mode"], "delay": ep["delay"], "secret": ep["secret"] is not None}
        self.answer(200, state)

    def do_POST(self):
        kind, name, _ = self.route()
        if kind == "hook" and name:
            return self.deliver(name)
        if kind == "control" and name:
            return self.configure(name)
        self.read_body()
        self.answer(404, {"error": "not found"})

    def do_GET(self):
        kind, name, query = self.route()
        if kind == "control" and name:
            return self.answer(200, RawJson(self.report(name, "counts" in query)))
        if kind == "control":
            with LOCK:
                return self.answer(200, {"endpoints": sorted(ENDPOINTS)})
        if kind == "healthz":
            return self.answer(200, {"ok": True})
        self.answer(404, {"error": "not found"})

    def do_DELETE(self):
        kind, name, query = self.route()
        if kind == "control" and name:
            with LOCK:
                old = ENDPOINTS.pop(name, None)
                if old is not None and query.get("keep") == ["state"]:
                    ep = endpoint(name)
                    for k in ("secret", "webhook", "mode", "delay"):
                        ep[k] = old[k]
            return self.answer(204)
        self.answer(404, {"error": "not found"})


def exit_on_eof():
    """Ends the process when standard input closes, so a dying test leaks nothing."""
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except Exception:
        pass
    os._exit(0)


def main():
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=exit_on_eof, daemon=True).start()
    sys.stdout.write(json.dumps({"port": server.server_address[1]}) + "\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
