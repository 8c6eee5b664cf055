#!/usr/bin/env python3
"""End-to-end check of the test receivers, before any test relies on them.

Starts webhook_receiver.py and smtp_sink.py as the integration tests do and
drives them over the wire: deliveries signed with standardwebhooks' own
signing (good, bad, stale, without a secret), duplicate dropping, seq order
checking, the fail/drop/redirect/slow modes, the control API, an e-mail with
text and HTML parts sent with smtplib, and exit at end of standard input.

    python3 tests/receivers/selftest.py
"""

import base64
import http.client
import json
import os
import secrets
import smtplib
import subprocess
import sys
import time
import traceback
import uuid
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

from standardwebhooks.webhooks import Webhook

HERE = os.path.dirname(os.path.abspath(__file__))


def start(script):
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{script} printed nothing (exit {proc.wait()})")
    return proc, json.loads(line)


def request(port, method, path, body=None, headers=None, timeout=10):
    """(status, headers, parsed JSON or None) of one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        hdrs = dict(headers or {})
        if data is not None and not isinstance(body, bytes):
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, dict(resp.getheaders()), (json.loads(raw) if raw else None)
    finally:
        conn.close()


def new_secret():
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Sender:
    """Signs and sends deliveries to one endpoint, as a Standard Webhooks sender does."""

    def __init__(self, port, name, secret):
        self.port, self.name, self.hook = port, name, Webhook(secret)

    def send(self, data, msg_id=None, at=None, signature=None, timeout=10):
        msg_id = msg_id or "msg_" + uuid.uuid4().hex
        at = at or datetime.now(tz=timezone.utc)
        body = json.dumps({"type": "image-chat-updated", "timestamp": at.isoformat(), "data": data}).encode()
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature or self.hook.sign(msg_id, at, body),
        }
        status, hdrs, _ = request(self.port, "POST", f"/hook/{self.name}", body, headers, timeout)
        return status, hdrs, msg_id


def event(url_id, seq, tenant="acme"):
    return {"tenantId": tenant, "epoch": "e1", "urlId": url_id, "seq": seq, "broadcastId": None, "at": 1}


# -- webhook receiver ---------------------------------------------------------


def check_verified_delivery(port):
    secret = new_secret()
    assert request(port, "POST", "/control/good", {"secret": secret})[0] == 200
    s = Sender(port, "good", secret)
    status, _, wid = s.send(event("img-1", 1))
    assert status == 204, status
    r = request(port, "GET", "/control/good")[2]
    assert len(r["attempts"]) == 1 and len(r["accepted"]) == 1, r
    a = r["accepted"][0]
    assert a["verified"] is True and "verifyError" not in a, a
    assert a["webhookId"] == wid and a["name"] == "good" and a["mode"] == "ok", a
    assert a["body"]["data"]["seq"] == 1 and json.loads(a["raw"]) == a["body"], a
    assert a["signature"].startswith("v1,") and a["webhookTimestamp"].isdigit(), a
    assert abs(a["receivedAtMs"] - time.time() * 1000) < 5000, a
    assert r["unverified"] == 0 and r["duplicates"] == 0 and r["orderErrors"] == [], r


def check_bad_signatures(port):
    secret = new_secret()
    request(port, "POST", "/control/bad", {"secret": secret})
    s = Sender(port, "bad", secret)
    other = Sender(port, "bad", new_secret())
    # Signed with another secret.
    at = datetime.now(tz=timezone.utc)
    body = b'{"data": {}}'
    assert s.send(event("img-1", 1), signature=other.hook.sign("x", at, body))[0] == 204
    # A valid signature, but over a body that was changed afterwards.
    s2 = Sender(port, "bad", secret)
    wid = "msg_tampered"
    good_sig = s2.hook.sign(wid, at, json.dumps({"type": "t", "timestamp": at.isoformat(), "data": {}}))
    assert s.send(event("img-1", 2), msg_id=wid, at=at, signature=good_sig)[0] == 204
    # Correctly signed but ten minutes old.
    assert s.send(event("img-1", 3), at=at - timedelta(minutes=10))[0] == 204
    r = request(port, "GET", "/control/bad")[2]
    assert [a["verified"] for a in r["attempts"]] == [False, False, False], r
    assert all(a["verifyError"] for a in r["attempts"]), r
    assert "too old" in r["attempts"][2]["verifyError"], r["attempts"][2]
    assert r["unverified"] == 3, r
    # No secret set at all.
    status, _, _ = Sender(port, "nosecret", secret).send(event("img-1", 1))
    assert status == 204
    r = request(port, "GET", "/control/nosecret")[2]
    assert r["attempts"][0]["verified"] is False and r["attempts"][0]["verifyError"] == "no secret", r
    assert r["unverified"] == 1, r


def check_duplicates(port):
    secret = new_secret()
    request(port, "POST", "/control/dup", {"secret": secret})
    s = Sender(port, "dup", secret)
    _, _, wid = s.send(event("img-1", 1))
    s.send(event("img-1", 1), msg_id=wid)  # a retry: same id, signed anew
    s.send(event("img-1", 1), msg_id=wid)
    s.send(event("img-1", 2))
    r = request(port, "GET", "/control/dup")[2]
    assert len(r["attempts"]) == 4 and r["duplicates"] == 2, r
    assert [a["body"]["data"]["seq"] for a in r["accepted"]] == [1, 2], r
    assert r["orderErrors"] == [] and r["unverified"] == 0, r


def check_order(port):
    secret = new_secret()
    request(port, "POST", "/control/order", {"secret": secret})
    s = Sender(port, "order", secret)
    s.send(event("img-1", 1))
    s.send(event("img-2", 1))  # another image: its own sequence
    s.send(event("img-1", 1, tenant="other"))  # another tenant's equal urlId: unrelated
    s.send(event("img-1", 3))  # a gap is not an order error
    _, _, wid = s.send(event("img-1", 2))  # behind: an order error
    s.send({"tenantId": "acme", "userId": "u1", "notification": {}})  # no seq: not checked
    r = request(port, "GET", "/control/order")[2]
    assert len(r["accepted"]) == 6, r
    assert len(r["orderErrors"]) == 1, r["orderErrors"]
    e = r["orderErrors"][0]
    assert (e["tenantId"], e["urlId"], e["seq"], e["lastSeq"], e["webhookId"]) == ("acme", "img-1", 2, 3, wid), e


def check_modes(port):
    secret = new_secret()
    s = Sender(port, "modes", secret)
    request(port, "POST", "/control/modes", {"secret": secret, "mode": "fail"})
    assert s.send(event("img-1", 1))[0] == 500
    request(port, "POST", "/control/modes", {"mode": "redirect"})
    status, headers, _ = s.send(event("img-1", 1))
    assert status == 302, status
    assert headers["Location"].endswith("/hook/modes-redirected"), headers
    request(port, "POST", "/control/modes", {"mode": "drop"})
    try:
        status = s.send(event("img-1", 1))[0]
        raise AssertionError(f"drop mode answered {status}")
    except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine):
        pass
    r = request(port, "GET", "/control/modes")[2]
    assert [a["mode"] for a in r["attempts"]] == ["fail", "redirect", "drop"], r
    assert [a["status"] for a in r["attempts"]] == [500, 302, None], r
    assert all(a["verified"] for a in r["attempts"]), r
    assert r["accepted"] == [], r
    # Back to ok: the same message (same webhook-id) is accepted once.
    request(port, "POST", "/control/modes", {"mode": "ok"})
    wid = r["attempts"][0]["webhookId"]
    assert s.send(event("img-1", 1), msg_id=wid)[0] == 204
    r = request(port, "GET", "/control/modes")[2]
    assert len(r["accepted"]) == 1 and r["duplicates"] == 0, r
    assert request(port, "GET", "/control/modes-redirected")[2]["attempts"] == []
    # Bad control requests.
    assert request(port, "POST", "/control/modes", {"mode": "sideways"})[0] == 400
    assert request(port, "POST", "/control/modes", {"delay": -1})[0] == 400


def check_slow(port):
    secret = new_secret()
    s = Sender(port, "slow", secret)
    request(port, "POST", "/control/slow", {"secret": secret, "mode": "slow", "delay": 0.5})
    t0 = time.monotonic()
    assert s.send(event("img-1", 1))[0] == 200
    assert time.monotonic() - t0 >= 0.5
    # A sender that gives up before the answer: not accepted.
    request(port, "POST", "/control/slow", {"delay": 1.5})
    try:
        s.send(event("img-1", 2), timeout=0.3)
        raise AssertionError("the slow answer came early")
    except TimeoutError:
        pass
    time.sleep(1.6)
    r = request(port, "GET", "/control/slow")[2]
    assert [a["status"] for a in r["attempts"]] == [200, None], r
    assert len(r["accepted"]) == 1 and r["attempts"][1]["answerError"], r
    assert r["attempts"][0]["mode"] == "slow", r


def check_delete(port):
    secret = new_secret()
    s = Sender(port, "del", secret)
    request(port, "POST", "/control/del", {"secret": secret, "mode": "fail"})
    s.send(event("img-1", 1))
    assert request(port, "DELETE", "/control/del?keep=state")[0] == 204
    r = request(port, "GET", "/control/del")[2]
    assert r == {"attempts": [], "accepted": [], "duplicates": 0, "orderErrors": [], "unverified": 0}, r
    assert s.send(event("img-1", 1))[0] == 500  # mode kept
    assert request(port, "DELETE", "/control/del")[0] == 204
    assert s.send(event("img-1", 1))[0] == 204  # back to ok, and no secret
    r = request(port, "GET", "/control/del")[2]
    assert r["attempts"][0]["verifyError"] == "no secret", r
    assert "del" in request(port, "GET", "/control")[2]["endpoints"]
    counts = request(port, "GET", "/control/del?counts")[2]
    assert counts == {"attempts": 1, "accepted": 1, "duplicates": 0, "orderErrors": 0, "unverified": 1}, counts


def check_keepalive(port):
    """Several deliveries on one HTTP/1.1 connection, as a pooling client sends them."""
    secret = new_secret()
    request(port, "POST", "/control/keep", {"secret": secret})
    hook = Webhook(secret)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for seq in range(1, 6):
        at = datetime.now(tz=timezone.utc)
        wid = f"msg_keep_{seq}"
        body = json.dumps({"type": "t", "timestamp": at.isoformat(), "data": event("k", seq)}).encode()
        conn.request("POST", "/hook/keep", body, {
            "content-type": "application/json", "webhook-id": wid,
            "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": hook.sign(wid, at, body)})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 204, resp.status
    conn.close()
    r = request(port, "GET", "/control/keep")[2]
    assert len(r["accepted"]) == 5 and r["unverified"] == 0 and r["orderErrors"] == [], r


# -- SMTP sink ----------------------------------------------------------------


def check_mail(ports):
    msg = EmailMessage()
    msg["From"] = "imagechat <noreply@example.test>"
    msg["To"] = "alice@example.test"
    msg["Subject"] = "2 new replies — 新しい返信"
    msg["List-Unsubscribe"] = "<http://127.0.0.1:1/api/v1/unsubscribe?token=abc.def>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content("Bob replied: hello\nhttp://example.test/page\n")
    msg.add_alternative("<p>Bob replied: <b>hello</b> — 返信</p>", subtype="html")
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as smtp:
        refused = smtp.send_message(msg, from_addr="bounce@example.test", to_addrs=["alice@example.test", "b@example.test"])
        assert refused == {}, refused
    status, _, got = request(ports["http"], "GET", "/messages")
    assert status == 200 and len(got) == 1, got
    m = got[0]
    assert m["mailFrom"] == "bounce@example.test", m
    assert m["rcptTos"] == ["alice@example.test", "b@example.test"], m
    assert m["subject"] == "2 new replies — 新しい返信", m["subject"]
    assert m["headers"]["List-Unsubscribe"] == ["<http://127.0.0.1:1/api/v1/unsubscribe?token=abc.def>"], m["headers"]
    assert m["headers"]["List-Unsubscribe-Post"] == ["List-Unsubscribe=One-Click"], m["headers"]
    assert m["headers"]["Subject"] == [m["subject"]] and "To" in m["headers"], m["headers"]
    assert m["text"] == "Bob replied: hello\nhttp://example.test/page\n", repr(m["text"])
    assert m["html"].strip() == "<p>Bob replied: <b>hello</b> — 返信</p>", repr(m["html"])
    assert "List-Unsubscribe: " in m["raw"] and "multipart/alternative" in m["raw"], m["raw"]
    # A plain message: no html part.
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("a@example.test", ["c@example.test"], b"Subject: plain\r\n\r\njust text\r\n")
    got = request(ports["http"], "GET", "/messages")[2]
    assert len(got) == 2 and got[1]["text"] == "just text\n" and got[1]["html"] is None, got[1]
    assert request(ports["http"], "DELETE", "/messages")[0] == 204
    assert request(ports["http"], "GET", "/messages")[2] == []


def check_exit_on_eof(proc):
    proc.stdin.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the process outlived the end of its standard input")


def main():
    procs = []
    passed, failed = 0, 0
    try:
        hook_proc, hook = start("webhook_receiver.py")
        procs.append(hook_proc)
        sink_proc, sink = start("smtp_sink.py")
        procs.append(sink_proc)
        assert set(hook) == {"port"} and set(sink) == {"smtp", "http"}
        port = hook["port"]
        checks = [
            (check_verified_delivery, port),
            (check_bad_signatures, port),
            (check_duplicates, port),
            (check_order, port),
            (check_modes, port),
            (check_slow, port),
            (check_delete, port),
            (check_keepalive, port),
            (check_mail, sink),
            (check_exit_on_eof, hook_proc),
            (check_exit_on_eof, sink_proc),
        ]
        for fn, arg in checks:
            try:
                fn(arg)
                passed += 1
                print(f"ok   {fn.__name__}")
            except Exception:
                failed += 1
                print(f"FAIL {fn.__name__}")
                traceback.print_exc()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    print(f"receivers: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
