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
# The limit is far above what the bench reaches: it measures the service, not the limit.
KEY=$("$BIN/snowlink" keys create --data-dir "$work/data" --name bench --rate-limit 1000000/s)
port=$(free_port)
SNOWLINK_LOG=warn "$BIN/snowlink" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --cache-capacity "$((LINKS * 2))" &
pids+=($!)
wait_port "$port"

printf '{"bench":"create",%s\n' "$("$BIN/loadgen" --addr "127.0.0.1:$port" --mode create --key "$KEY" \
  --connections "$CONNS" --duration 600 --max-requests "$LINKS" --out "$work/codes" | cut -c2-)"

base=$(free_port)
"$BIN/bare-actix" "127.0.0.1:$base" &
pids+=($!)
wait_port "$base"

run() { "$BIN/loadgen" --addr "127.0.0.1:$1" --codes "$work/codes" --connections "$CONNS" --duration "$SECS" "${@:2}" | cut -c2-; }
# Warm both (the cache, the allocator), then measure, baseline first.
run "$port" >/dev/null; run "$base" >/dev/null
printf '{"bench":"redirect_baseline",%s\n' "$(run "$base")"
snow=$(run "$port")
printf '{"bench":"redirect",%s\n' "$snow"
half=$(python3 -c "import json,sys; print(json.loads('{'+sys.argv[1])['rps']/2)" "$snow")
printf '{"bench":"redirect_half_load","rate":%s,%s\n' "$half" "$(run "$port" --rate "$half")"
# The bare server at the same rate: what the machine and the load generator
# alone cost the tail.
printf '{"bench":"redirect_half_load_baseline","rate":%s,%s\n' "$half" "$(run "$base" --rate "$half")"

# The same redirects under wrk, an independent load generator (Debian's),
# baseline first.
if command -v wrk >/dev/null; then
  printf '{"bench":"redirect_wrk_baseline",%s\n' "$(benches/wrk.py "127.0.0.1:$base" "$work/codes" "$SECS" "$CONNS" | cut -c2-)"
  printf '{"bench":"redirect_wrk",%s\n' "$(benches/wrk.py "127.0.0.1:$port" "$work/codes" "$SECS" "$CONNS" | cut -c2-)"
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
  local n=$1 dir="$work/mem-$1" p pid key
  key=$("$BIN/snowlink" keys create --data-dir "$dir" --name bench --rate-limit 1000000/s)
  p=$(free_port)
  SNOWLINK_LOG=warn "$BIN/snowlink" serve --data-dir "$dir" --listen "127.0.0.1:$p" --cache-capacity "$((n * 2))" &
  pid=$!
  pids+=("$pid")
  wait_port "$p"
  "$BIN/loadgen" --addr "127.0.0.1:$p" --mode create --key "$key" \
    --connections "$CONNS" --duration 900 --max-requests "$n" --out "$dir/codes" >/dev/null
  "$BIN/loadgen" --addr "127.0.0.1:$p" --mode sweep --codes "$dir/codes" --connections "$CONNS" --duration 900 >/dev/null
  printf '%s %s' "$(wc -l < "$dir/codes")" "$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")"
  kill "$pid"
}
read -r small_links small_rss <<< "$(rss_at "$LINKS")"
read -r big_links big_rss <<< "$(rss_at "${MEMORY_LINKS:-1000000}")"
printf '{"bench":"memory","links_small":%s,"rss_small_kib":%s,"links_big":%s,"rss_big_kib":%s}\n' \
  "$small_links" "$small_rss" "$big_links" "$big_rss"
