#!/usr/bin/env python3
"""Webhook delivery latency, from a write's commit to the receiver (protocol §12).

Starts the given imagechat binary on a temporary SQLite database and the
test receiver (tests/receivers/webhook_receiver.py, which verifies every
delivery with the standardwebhooks package), registers a webhook for a
fresh tenant, then writes comments over REST in three phases, each on
images of its own and each starting once the last one's deliveries are in:
one writer pacing its comments (--pace-ms apart, so no delivery queues
behind another: the latency alone), one writer sending them back to back,
and several concurrent writers each on its own image. A write's
commit time is the moment its 2xx answer arrived; each delivery is matched
to its write by (urlId, seq) and the comment's id.

Prints p50/p90/p99/max of received − answered and of received − sent (ms),
the writes' own round trips, the rates at which writes were answered and
deliveries received, and the loopback floor: the median round trip
of a trivial HTTP POST from this script to the receiver in the same run.
Exits non-zero when a delivery is missing, unverified, out of order or not
shaped as §12 says, 30 s after the last write.

    python3 scripts/webhook-latency.py --bin target/release/imagechat --count 500
    python3 scripts/webhook-latency.py --bin target/release/imagechat --short
"""

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECEIVER = os.path.join(ROOT, "tests", "receivers", "webhook_receiver.py")
ADMIN_KEY = "latency-admin-key"
TENANT = "latency"
ENDPOINT = "latency"


def now_ms():
    return time.time() * 1000.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive HTTP/1.1 connection; JSON in and out."""

    def __init__(self, port, timeout=30):
        self.port, self.timeout, self.conn = port, timeout, None

    def call(self, method, path, body=None, headers=None):
        """(status, parsed body, sent ms, answered ms)."""
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                self.conn.connect()
            try:
                sent = now_ms()
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                raw = resp.read()
                answered = now_ms()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if resp.getheader("connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed, sent, answered

    def close(self):
        if self.conn is not None:
            self.conn.close()


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def expect(what, status, body, want):
    if status != want:
        raise SystemExit(f"{what}: expected {want}, got {status} {json.dumps(body)[:400]}")
    return body


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


class Run:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="webhook-latency-")
        self.server = self.receiver = None
        self.writes = []  # {"phase", "urlId", "seq", "commentId"?, "chatId"?, "sent", "answered", "measured"}
        self.lock = threading.Lock()

    # -- processes ---------------------------------------------------------

    def start_server(self):
        self.port = free_port()
        cmd = [
            self.args.bin, "serve",
            "--listen", f"127.0.0.1:{self.port}",
            "--database", f"sqlite://{self.work}/latency.db",
            "--uploads", f"file://{self.work}/uploads",
            "--admin-key", ADMIN_KEY,
            "--webhook-allow-private",
            "--write-rate-per-minute", "0",
            "--sessions-per-address-per-minute", "0",
            "--anonymous-writes-per-address-per-minute", "0",
        ]
        self.log_path = os.path.join(self.work, "server.log")
        self.log = open(self.log_path, "wb")
        self.server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise SystemExit(f"imagechat exited with {self.server.returncode}:\n{self.server_log()}")
            try:
                if Client(self.port, 1).call("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"imagechat did not answer /healthz within 20 s:\n{self.server_log()}")

    def start_receiver(self):
        self.receiver = subprocess.Popen(
            [sys.executable, RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        line = self.receiver.stdout.readline()
        if not line:
            raise SystemExit("the webhook receiver did not start")
        self.rport = json.loads(line)["port"]

    def server_log(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        if self.receiver is not None:
            try:
                self.receiver.stdin.close()
                self.receiver.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.receiver.kill()
                self.receiver.wait()
        shutil.rmtree(self.work, ignore_errors=True)

    # -- setup -------------------------------------------------------------

    def setup(self):
        api = Client(self.port)
        status, body, _, _ = api.call(
            "POST", "/api/v1/admin/tenants",
            {"tenantId": TENANT, "anonymous": "write"},
            {"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        self.secret = expect("POST /api/v1/admin/tenants", status, body, 201)["secret"]
        self.auth = {"Authorization": basic(TENANT, self.secret)}
        url = f"http://127.0.0.1:{self.rport}/hook/{ENDPOINT}"
        status, body, _, _ = api.call("POST", "/api/v1/tenant/webhooks", {"url": url}, self.auth)
        hook = expect("POST /api/v1/tenant/webhooks", status, body, 201)
        problems = []
        if not re.fullmatch(r"whsec_[A-Za-z0-9+/]+={0,2}", str(hook.get("secret"))):
            problems.append(f"secret {hook.get('secret')!r} is not whsec_ + base64")
        elif len(base64.b64decode(hook["secret"][6:])) < 24:
            problems.append("secret has fewer than 24 random bytes")
        if hook.get("url") != url or not hook.get("id"):
            problems.append(f"answer {hook} does not echo the url or lacks an id")
        want_events = {"new-image-chat", "image-chat-updated", "deleted-image-chat", "notification"}
        if set(hook.get("events") or []) != want_events:
            problems.append(f"default events {hook.get('events')} are not {sorted(want_events)}")
        if problems:
            raise SystemExit("POST /api/v1/tenant/webhooks: " + "; ".join(problems))
        rc = Client(self.rport)
        expect("receiver control", *rc.call("POST", f"/control/{ENDPOINT}", {"secret": hook["secret"]})[:2], 200)
        api.close()
        rc.close()

    def session(self, api):
        status, body, _, _ = api.call("POST", "/api/v1/sessions", {"tenantId": TENANT})
        return {"Authorization": "Bearer " + expect("POST /api/v1/sessions", status, body, 200)["token"]}

    # -- writes ------------------------------------------------------------

    def writer(self, phase, url_id, count, pace, errors):
        api = Client(self.port)
        try:
            auth = self.session(api)
            status, body, sent, answered = api.call(
                "POST", "/api/v1/chats", {"urlId": url_id, "x": 10, "y": 20, "text": "latency probe"}, auth
            )
            body = expect("POST /api/v1/chats", status, body, 201)
            chat_id = body["chat"]["id"]
            with self.lock:
                self.writes.append({"phase": phase, "urlId": url_id, "seq": body["seq"], "chatId": chat_id,
                                    "sent": sent, "answered": answered, "measured": False})
            for i in range(count):
                status, body, sent, answered = api.call(
                    "POST", f"/api/v1/chats/{chat_id}/comments", {"text": f"comment {i}"}, auth
                )
                body = expect("POST /api/v1/chats/{id}/comments", status, body, 201)
                with self.lock:
                    self.writes.append({"phase": phase, "urlId": url_id, "seq": body["seq"],
                                        "commentId": body["comment"]["id"], "sent": sent,
                                        "answered": answered, "measured": True})
                if pace:
                    time.sleep(pace)
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            errors.append(f"{phase} writer on {url_id}: {e}")
        finally:
            api.close()

    def phase(self, name, writers, count, pace=0.0):
        errors = []
        per = [count // writers + (1 if i < count % writers else 0) for i in range(writers)]
        threads = [
            threading.Thread(target=self.writer, args=(name, f"https://latency.example/{name}/{i}#img", per[i], pace, errors))
            for i in range(writers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise SystemExit("writes failed:\n" + "\n".join(errors))

    def loopback_floor(self, n=200):
        c = Client(self.rport)
        rtts = []
        for _ in range(n):
            _, _, sent, answered = c.call("POST", "/control/_floor", {})
            rtts.append(answered - sent)
        c.close()
        return median(rtts)

    # -- collection --------------------------------------------------------

    def drain(self, timeout):
        """Waits (at most `timeout` s) until the receiver accepted a delivery for every write so far."""
        rc = Client(self.rport)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = rc.call("GET", f"/control/{ENDPOINT}?counts")[1]
            if counts["accepted"] >= len(self.writes):
                break
            time.sleep(0.05)
        rc.close()

    def collect(self, timeout):
        expected = {(w["urlId"], w["seq"]): w for w in self.writes}
        rc = Client(self.rport)
        deadline = time.monotonic() + timeout
        while True:
            report = expect("receiver report", *rc.call("GET", f"/control/{ENDPOINT}")[:2], 200)
            got = {}
            for a in report["accepted"]:
                data = (a.get("body") or {}).get("data") or {}
                got.setdefault((data.get("urlId"), data.get("seq")), a)
            if all(k in got for k in expected) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        rc.close()
        return expected, got, report

    def check(self, expected, got, report):
        """Every problem found, as lines of text."""
        problems = []
        missing = [k for k in expected if k not in got]
        if missing:
            problems.append(f"{len(missing)} of {len(expected)} deliveries missing, e.g. {missing[:3]}")
        if report["unverified"]:
            bad = [a for a in report["attempts"] if not a["verified"]][:3]
            problems.append(f"{report['unverified']} attempts unverified, e.g. "
                            + "; ".join(f"{a['webhookId']}: {a.get('verifyError')}" for a in bad))
        if report["orderErrors"]:
            problems.append(f"{len(report['orderErrors'])} seq order errors, e.g. {report['orderErrors'][:3]}")
        shape = []
        for key, w in expected.items():
            a = got.get(key)
            if a is None:
                continue
            body = a.get("body") or {}
            data = body.get("data") or {}
            ctype = (a.get("headers") or {}).get("content-type", "")
            if not ctype.startswith("application/json"):
                shape.append(f"{key}: content-type {ctype!r}")
            if not re.fullmatch(r"\d+", a.get("webhookTimestamp") or ""):
                shape.append(f"{key}: webhook-timestamp {a.get('webhookTimestamp')!r} is not integer seconds")
            if data.get("tenantId") != TENANT or not isinstance(data.get("epoch"), str):
                shape.append(f"{key}: data lacks tenantId/epoch: {json.dumps(data)[:200]}")
            if body.get("type") != data.get("type"):
                shape.append(f"{key}: type {body.get('type')!r} differs from data.type {data.get('type')!r}")
            try:
                ts = datetime.fromisoformat(body.get("timestamp")).timestamp() * 1000
                if abs(ts - data.get("at", -1e18)) > 1:
                    shape.append(f"{key}: timestamp {body.get('timestamp')} is not the event's at {data.get('at')}")
            except (TypeError, ValueError):
                shape.append(f"{key}: timestamp {body.get('timestamp')!r} is not ISO 8601")
            if "commentId" in w:
                change = data.get("change") or {}
                if (data.get("type"), change.get("op"), (change.get("comment") or {}).get("id")) != (
                        "image-chat-updated", "comment-added", w["commentId"]):
                    shape.append(f"{key}: expected comment-added of {w['commentId']}, got {json.dumps(data)[:200]}")
            elif data.get("type") != "new-image-chat" or (data.get("chat") or {}).get("id") != w["chatId"]:
                shape.append(f"{key}: expected new-image-chat of {w['chatId']}, got {json.dumps(data)[:200]}")
        if shape:
            problems.append(f"{len(shape)} deliveries not shaped as §12 says, e.g.\n    " + "\n    ".join(shape[:5]))
        return problems


def row(label, values):
    if not values:
        return f"{label:<34} {'-':>8}"
    return f"{label:<34} " + " ".join(
        f"{v:8.2f}" for v in (percentile(values, 50), percentile(values, 90), percentile(values, 99), max(values))
    )


def rate(times):
    """Events per second over the span of `times` (ms)."""
    if len(times) < 2 or max(times) == min(times):
        return "-"
    return f"{(len(times) - 1) * 1000 / (max(times) - min(times)):.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "imagechat"))
    ap.add_argument("--count", type=int, default=500, help="comments per phase (default 500)")
    ap.add_argument("--writers", type=int, default=4, help="writers of the concurrent phase (default 4)")
    ap.add_argument("--short", action="store_true", help="the test command's form: --count 50")
    ap.add_argument("--pace-ms", type=float, default=50.0,
                    help="gap between the paced phase's writes (default 50), so no delivery waits for another")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for deliveries after the last write")
    args = ap.parse_args()
    if args.short:
        args.count = 50
    if not os.access(args.bin, os.X_OK):
        raise SystemExit(f"{args.bin} is not an executable")

    run = Run(args)
    try:
        run.start_server()
        run.start_receiver()
        run.setup()
        floor_before = run.loopback_floor()
        phases = [
            (f"paced-{args.pace_ms:g}ms", 1, min(args.count, 100), args.pace_ms / 1000),
            ("sequential", 1, args.count, 0.0),
            (f"concurrent-x{args.writers}", args.writers, args.count, 0.0),
        ]
        for name, writers, count, pace in phases:
            run.phase(name, writers, count, pace)
            run.drain(args.timeout)  # each phase starts with no backlog
        last_answer = max(w["answered"] for w in run.writes)
        floor_after = run.loopback_floor()
        expected, got, report = run.collect(args.timeout - (now_ms() - last_answer) / 1000)
        problems = run.check(expected, got, report)
        if run.server.poll() is not None:
            problems.append(f"imagechat exited with {run.server.returncode} during the run")

        print(f"webhook delivery latency, ms: {min(args.count, 100)} comments paced, {args.count} back to back, "
              f"{args.count} from {args.writers} concurrent writers "
              f"(imagechat {os.path.relpath(args.bin)}, SQLite, loopback)")
        print(f"{'':<34} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
        rates = []
        for name, _, _, _ in phases:
            ws = [w for w in run.writes if w["phase"] == name and w["measured"] and (w["urlId"], w["seq"]) in got]
            recv = [got[(w["urlId"], w["seq"])]["receivedAtMs"] for w in ws]
            print(row(f"{name}: received - answered", [r - w["answered"] for r, w in zip(recv, ws)]))
            print(row(f"{name}: received - sent", [r - w["sent"] for r, w in zip(recv, ws)]))
            print(row(f"{name}: write round trip", [w["answered"] - w["sent"] for w in ws]))
            rates.append(f"{name} {rate([w['answered'] for w in ws])}/{rate(recv)}")
        print("writes/s answered / deliveries/s received: " + ", ".join(rates))
        print(f"loopback floor (median POST round trip to the receiver): "
              f"{floor_before:.3f} ms before, {floor_after:.3f} ms after the writes")
        attempts = len(report["attempts"])
        peers = len({a.get("peer") for a in report["attempts"]})
        print(f"deliveries: {len(got)}/{len(expected)} received, {attempts} attempts on {peers} connections, "
              f"{report['duplicates']} duplicates, {report['unverified']} unverified, "
              f"{len(report['orderErrors'])} order errors")
        if problems:
            print("FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
            print("--- server log\n" + run.server_log(), file=sys.stderr)
            return 1
        return 0
    finally:
        run.stop()


if __name__ == "__main__":
    sys.exit(main())
