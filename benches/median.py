#!/usr/bin/env python3
"""Picks the median of paired rounds, for measurements on a noisy machine.

    ... | benches/median.py NAME KEY

Reads one round per line: the baseline's JSON object, a tab, Snowlink's JSON
object (as printed by loadgen or wrk.py). Each round's ratio is Snowlink's
KEY over the baseline's. Prints two JSON lines, {"bench": "NAME_baseline"}
and {"bench": "NAME"}, from the round whose ratio is the median, the second
with "rounds": every round's ratio in run order.
"""
import json
import sys

name, key = sys.argv[1], sys.argv[2]
rounds = []
for line in sys.stdin:
    if line.strip():
        base, snow = (json.loads(part) for part in line.rstrip("\n").split("\t"))
        rounds.append((snow[key] / base[key], base, snow))
if not rounds:
    sys.exit(f"median.py: no rounds of {name}")
ratios = [round(r, 3) for r, _, _ in rounds]
_, base, snow = sorted(rounds, key=lambda t: t[0])[(len(rounds) - 1) // 2]
print(json.dumps({"bench": f"{name}_baseline", **base}))
print(json.dumps({"bench": name, **snow, "rounds": ratios}))
