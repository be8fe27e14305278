#!/usr/bin/env python3
"""Query benchmark: snowlink-analytics against DuckDB on the same lake.

    benches/query.py ANALYTICS_BIN LAKE HOT_CODE [RUNS] [S3_LAKE]

For each question (top links, daily time series of one link, referrer
breakdown of one link) it times RUNS whole `snowlink-analytics` invocations
(process start to last line printed) and RUNS DuckDB executions of the same
question on the same files (connect, query and fetch, inside this Python
process: DuckDB's process start is not counted, which favours it). Both
answers are compared, so a fast wrong answer cannot win. Both leave the
clicks of known bots out, as snowlink-analytics does by default. Prints one JSON
object per question with the medians and the ratio.

With S3_LAKE (an s3:// URL of the same lake on an S3 server, its settings
in the AWS_* environment), each round also times the same invocation
against it, checks it gives the local answer, and reports its median and
its ratio to the local one.
"""
import json
import statistics
import subprocess
import sys
import time

import duckdb

binary, lake, code = sys.argv[1], sys.argv[2], sys.argv[3]
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
s3_lake = sys.argv[5] if len(sys.argv) > 5 else None
files = f"read_parquet('{lake}/clicks/date=*/*.parquet', hive_partitioning = true)"

QUESTIONS = [
    (
        "query_top",
        ["top", "--limit", "10"],
        f"SELECT code, COUNT(*) AS clicks, COUNT(DISTINCT visitor_id) AS unique_visitors "
        f"FROM {files} WHERE NOT is_bot GROUP BY code ORDER BY clicks DESC, code LIMIT 10",
    ),
    (
        "query_timeseries",
        ["timeseries", code, "--by", "day"],
        f"SELECT CAST(date_trunc('day', ts) AS DATE) AS bucket, COUNT(*) AS clicks "
        f"FROM {files} WHERE code = '{code}' AND NOT is_bot GROUP BY 1 ORDER BY 1",
    ),
    (
        "query_breakdown_referrer",
        ["breakdown", code, "--by", "referrer"],
        f"SELECT COALESCE(referrer_host, '(none)') AS referrer, COUNT(*) AS clicks, "
        f"COUNT(DISTINCT visitor_id) AS unique_visitors "
        f"FROM {files} WHERE code = '{code}' AND NOT is_bot GROUP BY 1 ORDER BY clicks DESC, 1",
    ),
]


def ours(args, where=lake):
    start = time.perf_counter()
    out = subprocess.run(
        [binary, "--lake", where, "--format", "csv", *args],
        check=True, capture_output=True, text=True,
    ).stdout
    return time.perf_counter() - start, out


def theirs(sql):
    start = time.perf_counter()
    con = duckdb.connect()
    rows = con.execute(sql).fetchall()
    con.close()
    return time.perf_counter() - start, rows


def counts(csv_text):
    """The numeric columns of our CSV, row by row."""
    lines = csv_text.strip().splitlines()[1:]
    return [[int(x) for x in line.split(",")[1:]] for line in lines]


for name, args, sql in QUESTIONS:
    ours_times, theirs_times, s3_times = [], [], []
    ours_out = theirs_rows = s3_out = None
    for _ in range(runs):
        t, ours_out = ours(args)
        ours_times.append(t)
        t, theirs_rows = theirs(sql)
        theirs_times.append(t)
        if s3_lake:
            t, s3_out = ours(args, s3_lake)
            s3_times.append(t)
    mine = counts(ours_out)
    duck = [[int(v) for v in row[1:]] for row in theirs_rows]
    agree = mine == duck
    a, b = statistics.median(ours_times), statistics.median(theirs_times)
    result = {
        "bench": name,
        "snowlink_ms": round(a * 1000, 1),
        "duckdb_ms": round(b * 1000, 1),
        "ratio": round(a / b, 3),
        "same_answer": agree,
        "runs": runs,
    }
    if s3_lake:
        s3 = statistics.median(s3_times)
        result["s3_ms"] = round(s3 * 1000, 1)
        result["s3_ratio"] = round(s3 / a, 3)
        result["s3_same_answer"] = s3_out == ours_out
    print(json.dumps(result), flush=True)
    if not agree:
        print(f"{name}: answers differ\nours: {mine[:5]}\nduckdb: {duck[:5]}", file=sys.stderr)
    if s3_lake and s3_out != ours_out:
        print(f"{name}: the S3 lake answers differently", file=sys.stderr)
