#!/usr/bin/env bash
# HTTP benchmarks: durable creates, then redirects over the links made with a
# Zipf popularity, against the bare actix-web baseline, in one run, with the
# project's load generator and with wrk; then the service's memory with
# every link cached, at LINKS and MEMORY_LINKS links.
#   benches/http.sh [LINKS] [SECONDS]
# Prints one JSON object per measurement. Release binaries are built first.
set -euo pipefail
cd "$(dirname "$0")/.."
LINKS=${1:-100000}
SECS=${2:-10}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-5}
# wrk, the independent load generator, from Debian's packages.
if ! command -v wrk >/dev/null && command -v apt-get >/dev/null; then
  echo "==> installing wrk" >&2
  { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
    || echo "==> wrk could not be installed: its rows are skipped" >&2
fi
cargo build --release -q -p snowlink -p snowlink-benches --bins
BIN=target/release
work=$(mktemp -d)
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
pids=()
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB" >&2
# serve DIR LINKS: a fresh service on DIR with room for LINKS links in its
# cache, and an API key; sets $port, $pid and $key. The key's limit is far
# above what the bench reaches: it measures the service, not the limit.
serve() {
  key=$("$BIN/snowlink" keys create --data-dir "$1" --name bench --rate-limit 1000000/s)
  port=$(free_port)
  SNOWLINK_LOG=warn "$BIN/snowlink" serve --data-dir "$1" --listen "127.0.0.1:$port" --cache-capacity "$(($2 * 2))" &
  pid=$!
  pids+=("$pid")
  wait_port "$port"
}
serve "$work/data" "$LINKS"
KEY=$key

creates() { "$BIN/loadgen" --addr "127.0.0.1:$1" --mode create --key "$2" \
  --connections "$CONNS" --duration 600 --max-requests "$LINKS" --out "$3"; }
# Creates: ROUNDS runs, each into an empty store (the first one's links are
# the redirects' links); the run with the median rate is reported.
{
  creates "$port" "$KEY" "$work/codes"
  # A subshell: its serve calls leave the first service's $port alone.
  for r in $(seq 2 "$ROUNDS"); do
    dir="$work/create-$r"
    serve "$dir" "$LINKS"
    creates "$port" "$key" "$dir/codes"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
} | python3 -c "
import json, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
median = sorted(runs, key=lambda r: r['rps'])[(len(runs) - 1) // 2]
print(json.dumps({'bench': 'create', **median, 'rounds': [round(r['rps']) for r in runs]}))"

# bare VAR ROUTING: starts a bare-actix server and sets VAR to its port.
bare() {
  local p
  p=$(free_port)
  "$BIN/bare-actix" "127.0.0.1:$p" "$2" &
  pids+=($!)
  wait_port "$p"
  printf -v "$1" '%s' "$p"
}
bare base route
# The stricter baseline: a bare server answering from its default service,
# with no path pattern for the router to match, as Snowlink answers codes.
bare strict default

run() { "$BIN/loadgen" --addr "127.0.0.1:$1" --codes "$work/codes" --connections "$CONNS" --duration "$SECS" "${@:2}"; }
# Warm both (the cache, the allocator), then measure. Each comparison is
# ROUNDS rounds of (baseline, Snowlink) back to back; the round with the
# median ratio is reported, with every round's ratio, so one noisy moment
# on a shared machine does not decide the figure.
# Each round also runs the stricter baseline, so both ratios share
# Snowlink's round and the moment's noise.
run "$port" >/dev/null; run "$base" >/dev/null; run "$strict" >/dev/null
for _ in $(seq "$ROUNDS"); do
  s=$(run "$strict"); b=$(run "$base"); n=$(run "$port")
  printf '%s\t%s\n' "$b" "$n" >> "$work/redirect.rounds"
  printf '%s\t%s\n' "$s" "$n" >> "$work/strict.rounds"
done
benches/median.py redirect rps < "$work/redirect.rounds" | tee "$work/redirect.jsonl"
benches/median.py redirect_strict rps < "$work/strict.rounds"
half=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[1])['rps']/2)" "$work/redirect.jsonl")
# The bare server at the same rate: what the machine and the load generator
# alone cost the tail.
for _ in $(seq "$ROUNDS"); do
  printf '%s\t%s\n' "$(run "$base" --rate "$half")" "$(run "$port" --rate "$half")"
done | benches/median.py redirect_half_load p99_us | python3 -c "
import json, sys
for line in sys.stdin:
    print(json.dumps({**json.loads(line), 'rate': float(sys.argv[1])}))" "$half"

# The same redirects under wrk, an independent load generator (Debian's).
if command -v wrk >/dev/null; then
  for _ in $(seq "$ROUNDS"); do
    printf '%s\t%s\n' "$(benches/wrk.py "127.0.0.1:$base" "$work/codes" "$SECS" "$CONNS")" \
      "$(benches/wrk.py "127.0.0.1:$port" "$work/codes" "$SECS" "$CONNS")"
  done | benches/median.py redirect_wrk rps
fi

# Every redirect above was a click: how many reached the spool, and how
# many were shed because the spooler could not keep up.
printf '{"bench":"redirect_clicks",%s}\n' "$(python3 - "$port" <<'PY'
import sys, urllib.request, time
def read():
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
    return {k: float(v) for k, v in (l.rsplit(" ", 1) for l in text.splitlines() if l.startswith(("snowlink_clicks_", "snowlink_spool_writes")))}
# The spooler commits every few milliseconds: let it catch up first.
time.sleep(2)
m = read()
print(f'"enqueued":{m["snowlink_clicks_enqueued_total"]:.0f},"spooled":{m["snowlink_clicks_spooled_total"]:.0f},"dropped":{m["snowlink_clicks_dropped_total"]:.0f},"spool_writes":{m["snowlink_spool_writes_total"]:.0f}')
PY
)"

# Memory: the resident set of a fresh service holding N links, each
# created through the API and then fetched once (so each is in the cache),
# at LINKS and at MEMORY_LINKS (default 1,000,000).
rss_at() {
  local n=$1 dir="$work/mem-$1" port pid key
  serve "$dir" "$n"
  "$BIN/loadgen" --addr "127.0.0.1:$port" --mode create --key "$key" \
    --connections "$CONNS" --duration 900 --max-requests "$n" --out "$dir/codes" >/dev/null
  "$BIN/loadgen" --addr "127.0.0.1:$port" --mode sweep --codes "$dir/codes" --connections "$CONNS" --duration 900 >/dev/null
  printf '%s %s' "$(wc -l < "$dir/codes")" "$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")"
  kill "$pid"
}
read -r small_links small_rss <<< "$(rss_at "$LINKS")"
read -r big_links big_rss <<< "$(rss_at "${MEMORY_LINKS:-1000000}")"
printf '{"bench":"memory","links_small":%s,"rss_small_kib":%s,"links_big":%s,"rss_big_kib":%s}\n' \
  "$small_links" "$small_rss" "$big_links" "$big_rss"
