#!/usr/bin/env python3
"""Runs wrk with benches/zipf.lua and prints its figures as one JSON object.

    benches/wrk.py HOST:PORT CODES_FILE SECONDS [CONNECTIONS]

Keys: rps, requests, errors (socket errors plus answers that are not 2xx or
3xx), p50_us, p99_us (wrk's own percentiles, from --latency).
"""
import json
import os
import re
import subprocess
import sys

addr, codes, secs = sys.argv[1], sys.argv[2], sys.argv[3]
conns = sys.argv[4] if len(sys.argv) > 4 else "64"
out = subprocess.run(
    ["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency", "-s", "benches/zipf.lua",
     f"http://{addr}", "--", codes, "1.0", "1000",
     os.path.join(os.path.dirname(os.path.abspath(__file__)), "agents.txt")],
    check=True, capture_output=True, text=True,
).stdout


def micros(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
non3xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
errors += int(non3xx.group(1)) if non3xx else 0
print(json.dumps({
    "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
    "requests": int(re.search(r"(\d+) requests in", out).group(1)),
    "errors": errors,
    "p50_us": micros(pct["50"]),
    "p99_us": micros(pct["99"]),
}))
