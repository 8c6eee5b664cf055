#!/usr/bin/env python3
"""Resident memory per idle, subscribed WebSocket connection.

Starts the server binary on a fresh database, opens a warm-up batch of
connections (so runtime pools and allocator arenas exist), reads the
server's VmRSS, opens N more idle connections that each say hello and
subscribe, waits for the server to settle, reads VmRSS again and reports
(after - before) / N. Standard library only.

    python3 bench/idle_memory.py --bin target/release/imagechat --connections 5000
"""
import argparse
import asyncio
import base64
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def open_conn(port, token, url_id):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    w.write((f"GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await r.readuntil(b"\r\n\r\n")
    w.write(frame(json.dumps({"type": "hello", "token": token}).encode()))
    w.write(frame(json.dumps({"type": "subscribe", "id": 1, "urlId": url_id}).encode()))
    await w.drain()
    got = b""
    while b"subscribed" not in got:
        chunk = await r.read(4096)
        if not chunk:
            raise ConnectionError("closed before subscribed")
        got += chunk
    return r, w


async def drain_forever(r):
    try:
        while await r.read(4096):
            pass
    except Exception:
        pass


async def open_many(port, token, n, images, batch=200):
    conns = []
    for start in range(0, n, batch):
        conns += await asyncio.gather(*(open_conn(port, token, f"img-{(start + i) % images}")
                                        for i in range(min(batch, n - start))))
    # Keep reading so presence messages never pile up in kernel buffers.
    tasks = [asyncio.create_task(drain_forever(r)) for r, _ in conns]
    return conns, tasks


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default="target/release/imagechat")
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--images", type=int, default=50, help="spread subscriptions over this many images")
    p.add_argument("--warmup", type=int, default=200)
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = args.connections + args.warmup + 100
    if hard < need:
        sys.exit(f"the open-file limit {hard} is below the {need} this run needs")
    tmp = tempfile.mkdtemp()
    port = free_port()
    server = subprocess.Popen([args.bin, "serve", "--listen", f"127.0.0.1:{port}",
                               "--database", f"sqlite://{tmp}/idle.db",
                               # every socket comes from one loopback address
                               "--websockets-per-address", "0",
                               "--sessions-per-address-per-minute", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except Exception:
                time.sleep(0.05)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/sessions", method="POST",
                                     data=b'{"tenantId":"demo"}', headers={"content-type": "application/json"})
        token = json.loads(urllib.request.urlopen(req).read())["token"]
        warm, warm_tasks = await open_many(port, token, args.warmup, args.images)
        await asyncio.sleep(2)
        before = rss_kib(server.pid)
        t0 = time.monotonic()
        conns, tasks = await open_many(port, token, args.connections, args.images)
        opened = time.monotonic() - t0
        await asyncio.sleep(3)
        after = rss_kib(server.pid)
        per = (after - before) * 1024 / args.connections
        cpu = [int(x) for x in open(f"/proc/{server.pid}/stat").read().rsplit(")", 1)[1].split()[11:13]]
        await asyncio.sleep(5)
        cpu2 = [int(x) for x in open(f"/proc/{server.pid}/stat").read().rsplit(")", 1)[1].split()[11:13]]
        idle_cpu = (sum(cpu2) - sum(cpu)) / os.sysconf("SC_CLK_TCK") / 5
        print(json.dumps({
            "connections": args.connections, "images": args.images,
            "rss_before_kib": before, "rss_after_kib": after,
            "bytes_per_connection": round(per), "open_seconds": round(opened, 2),
            "idle_cpu_fraction": round(idle_cpu, 4),
        }))
        print(f"{args.connections} idle subscribed connections: {per / 1024:.2f} KiB resident each "
              f"({before} KiB -> {after} KiB); idle CPU {idle_cpu * 100:.2f}% of a core")
        for t in tasks + warm_tasks:
            t.cancel()
        for _, w in conns + warm:
            w.close()
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
