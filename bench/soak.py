#!/usr/bin/env python3
"""Soak test of a running `baton serve` (a benchmark, not a CI test).

  python3 bench/soak.py --url http://127.0.0.1:8000 --pid PID [--minutes 30] [--clients 128]

Keeps --clients concurrent clients busy for --minutes. Each client loops, picking per
request: a well-formed streaming completion read to its end (most of them); one it
disconnects from at a random point (10 %); junk bytes or a malformed request (5 %);
a stalled, half-sent request (5 %). Every well-formed request must end with
finish_reason and [DONE] (or a 429 when the queue is full); anything else is a failure.
Every 10 s it samples the server's RSS and open descriptors (from /proc/PID), and prints
a JSON summary at the end: requests by outcome, failures, and the RSS/descriptor series
(first, last, max after the first minute). Standard library only.
"""
import argparse
import asyncio
import json
import os
import random
import time
from urllib.parse import urlparse


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def n_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Stats:
    def __init__(self):
        self.outcomes = {}
        self.failures = []

    def count(self, what):
        self.outcomes[what] = self.outcomes.get(what, 0) + 1

    def fail(self, what):
        self.count("failed")
        if len(self.failures) < 20:
            self.failures.append(what)


def request_bytes(host, body, extra=""):
    data = json.dumps(body).encode()
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{extra}Connection: close\r\n\r\n").encode()
    return head + data


async def well_formed(host, port, stats, rng, disconnect):
    body = {"prompt": f"story {rng.randrange(1 << 30)}", "max_tokens": rng.randrange(8, 64),
            "stream": True, "ignore_eos": True}
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request_bytes(host, body))
        await writer.drain()
        got = b""
        cut = rng.randrange(1, 2000) if disconnect else None
        while True:
            chunk = await asyncio.wait_for(reader.read(4096), timeout=120)
            if not chunk:
                break
            got += chunk
            if cut is not None and len(got) >= cut:
                stats.count("disconnected")
                return
        if cut is not None:
            stats.count("disconnected")
            return
        status = got[9:12]
        if status == b"429":
            stats.count("busy")
        elif status == b"200" and b'"finish_reason":"length"' in got and b"data: [DONE]" in got:
            stats.count("ok")
        else:
            stats.fail(got[:300].decode(errors="replace"))
    except Exception as e:  # a well-formed request must never see an error
        if disconnect:
            stats.count("disconnected")
        else:
            stats.fail(f"{type(e).__name__}: {e}")
    finally:
        writer.close()


async def junk(host, port, stats, rng):
    choices = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096))),
        b"GARBAGE\r\n\r\n",
        b"POST /v1/completions HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
        request_bytes(host, {"messages": [{"role": "user", "content": [{"type": 5}]}]}),
        request_bytes(host, {"prompt": "x", "logprobs": 4294967297}),
    ]
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(rng.choice(choices))
        await writer.drain()
        await asyncio.wait_for(reader.read(65536), timeout=30)
        writer.close()
    except Exception:
        pass
    stats.count("junk")


async def stall(host, port, stats, rng):
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(rng.uniform(1, 40))
        writer.close()
    except Exception:
        pass
    stats.count("stalled")


async def client(host, port, stats, rng, until):
    while time.monotonic() < until:
        p = rng.random()
        if p < 0.10:
            await well_formed(host, port, stats, rng, disconnect=True)
        elif p < 0.15:
            await junk(host, port, stats, rng)
        elif p < 0.20:
            await stall(host, port, stats, rng)
        else:
            await well_formed(host, port, stats, rng, disconnect=False)


async def sampler(pid, series, until):
    t0 = time.monotonic()
    while time.monotonic() < until:
        series.append((round(time.monotonic() - t0), rss_kb(pid), n_fds(pid)))
        await asyncio.sleep(10)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    u = urlparse(a.url)
    until = time.monotonic() + a.minutes * 60
    stats = Stats()
    series = []
    rng = random.Random(a.seed)
    tasks = [client(u.hostname, u.port, stats, random.Random(rng.random()), until)
             for _ in range(a.clients)]
    await asyncio.gather(sampler(a.pid, series, until), *tasks)
    settled = [s for s in series if s[0] >= 60] or series
    print(json.dumps({
        "minutes": a.minutes, "clients": a.clients, "outcomes": stats.outcomes,
        "failures": stats.failures,
        "rss_kb": {"first": series[0][1], "after_1min_min": min(s[1] for s in settled),
                   "after_1min_max": max(s[1] for s in settled), "last": series[-1][1]},
        "fds": {"first": series[0][2], "after_1min_max": max(s[2] for s in settled),
                "last": series[-1][2]},
        "series": series,
    }))


if __name__ == "__main__":
    asyncio.run(main())
