#!/usr/bin/env python3
"""Stats route benchmark: GET /api/v1/links/{code}/stats of the hottest link
over 30 days, answered by a running service from the lake, against one
`snowlink-analytics stats` process for the same question (what each
question cost when the routes started a process per question).

    benches/stats_route.py SNOWLINK_BIN ANALYTICS_BIN LAKE CODE FIRST_DAY [RUNS]

It starts the service on a free port with a new data folder and `--lake
LAKE` (a folder, or an s3:// URL with its settings in the AWS_* environment),
creates a key and a link whose alias is CODE, asks once (cold: the query
server starts and loads the tables), then RUNS times (warm), and compares
the route's document with the process's. Prints one JSON object.
"""
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

snowlink, analytics, lake, code, first_day = sys.argv[1:6]
runs = int(sys.argv[6]) if len(sys.argv) > 6 else 20
since = datetime.date.fromisoformat(first_day)
until = since + datetime.timedelta(days=30)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, key, body=None):
    req = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {key}"})
    if body is not None:
        req.add_header("Content-Type", "application/json")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            data = r.read()
    except urllib.error.HTTPError as e:
        sys.exit(f"{url}: {e.code} {e.read().decode(errors='replace')}")
    return time.perf_counter() - start, data


with tempfile.TemporaryDirectory() as data:
    key = subprocess.run(
        [snowlink, "keys", "create", "--data-dir", data, "--name", "bench", "--rate-limit", "1000000/s"],
        check=True, capture_output=True, text=True,
    ).stdout.strip().split()[-1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [snowlink, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--lake", lake],
        env={**os.environ, "SNOWLINK_LOG": "warn"},
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        request(f"{base}/api/v1/links", key,
                json.dumps({"url": "https://example.com/hot", "alias": code}).encode())
        url = f"{base}/api/v1/links/{code}/stats?since={since}&until={until}"
        cold, first = request(url, key)
        warm = []
        for _ in range(runs):
            t, answer = request(url, key)
            warm.append(t)
        doc = json.loads(answer)
        assert doc == json.loads(first), "the warm answer differs from the cold one"
        cli = []
        for _ in range(max(3, runs // 4)):
            start = time.perf_counter()
            out = subprocess.run(
                [analytics, "--lake", lake, "stats", code, "--since", str(since), "--until", str(until)],
                check=True, capture_output=True, text=True,
            ).stdout
            cli.append(time.perf_counter() - start)
        same = json.loads(out) == doc
        print(json.dumps({
            "bench": "stats_route_warm",
            "lake": "s3" if lake.startswith("s3://") else "local",
            "clicks": doc.get("clicks"),
            "warm_ms": round(statistics.median(warm) * 1000, 1),
            "warm_max_ms": round(max(warm) * 1000, 1),
            "cold_ms": round(cold * 1000, 1),
            "process_ms": round(statistics.median(cli) * 1000, 1),
            "same_answer": same,
            "runs": runs,
        }), flush=True)
        if not same:
            print("stats route: the route and the process answer differently", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)
