#!/usr/bin/env python3
"""An SMTP sink for the e-mail digest tests (protocol §13).

A real SMTP server (aiosmtpd's Controller) on 127.0.0.1 keeps every message
it receives; a small HTTP server beside it hands them to the tests:

    python3 tests/receivers/smtp_sink.py

binds both on free ports, prints one line `{"smtp": N, "http": M}` and
serves until it is killed or its standard input reaches end of file.

Each message is parsed with the standard `email` package (policy
email.policy.default) and kept as

    {"mailFrom", "rcptTos": [...], "subject", "headers": {Name: [values]},
     "text", "html", "raw", "receivedAtMs"}

where `headers` holds every header under its original name (values decoded
as the policy does, RFC 2047 words included), `text` and `html` are the
decoded text/plain and text/html parts with "\n" line ends (null when
absent) and `raw` is the whole message as received.

    GET    /messages   the messages, in arrival order
    DELETE /messages   forgets them
"""

import email
import email.policy
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

LOCK = threading.Lock()
MESSAGES = []


def part_text(msg, subtype):
    """The decoded text of the message's text/<subtype> part, or None."""
    part = msg.get_body(preferencelist=(subtype,))
    if part is None:
        for p in msg.walk():
            if p.get_content_type() == f"text/{subtype}" and not p.is_multipart():
                part = p
                break
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    try:
        text = part.get_content()
    except Exception:
        payload = part.get_payload(decode=True) or b""
        text = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    return text.replace("\r\n", "\n")


def parse(envelope):
    data = envelope.original_content or envelope.content or b""
    if isinstance(data, str):
        data = data.encode("utf-8", errors="surrogateescape")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    headers = {}
    for name, value in msg.items():
        headers.setdefault(name, []).append(str(value))
    return {
        "mailFrom": envelope.mail_from,
        "rcptTos": list(envelope.rcpt_tos),
        "subject": str(msg["subject"]) if msg["subject"] is not None else None,
        "headers": headers,
        "text": part_text(msg, "plain"),
        "html": part_text(msg, "html"),
        "raw": data.decode("utf-8", errors="replace"),
        "receivedAtMs": time.time() * 1000.0,
    }


class Sink:
    """aiosmtpd handler: keeps every message."""

    async def handle_DATA(self, server, session, envelope):
        try:
            message = parse(envelope)
        except Exception as e:  # keep what arrived even if it does not parse
            raw = envelope.original_content or envelope.content or b""
            message = {
                "mailFrom": envelope.mail_from,
                "rcptTos": list(envelope.rcpt_tos),
                "subject": None,
                "headers": {},
                "text": None,
                "html": None,
                "raw": raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw,
                "receivedAtMs": time.time() * 1000.0,
                "parseError": f"{type(e).__name__}: {e}",
            }
        with LOCK:
            MESSAGES.append(message)
        return "250 Message accepted for delivery"


class FreePortController(Controller):
    """A Controller bound to port 0: asks the listening socket which port it got."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.split("?")[0] == "/messages":
            with LOCK:
                return self.answer(200, list(MESSAGES))
        self.answer(404, {"error": "not found"})

    def do_DELETE(self):
        if self.path.split("?")[0] == "/messages":
            with LOCK:
                MESSAGES.clear()
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
    smtp = FreePortController(Sink(), hostname="127.0.0.1", port=0, enable_SMTPUTF8=True)
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    http.daemon_threads = True
    threading.Thread(target=exit_on_eof, daemon=True).start()
    sys.stdout.write(json.dumps({"smtp": smtp.port, "http": http.server_address[1]}) + "\n")
    sys.stdout.flush()
    http.serve_forever()


if __name__ == "__main__":
    main()
