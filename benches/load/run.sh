#!/usr/bin/env bash
# Load benchmark: portcullis against a do-nothing pass-through proxy, in the same run on
# the same machine, both in front of the same small upstream.
#
#   bash benches/load/run.sh            # 10 s per run at 32 and 256 connections
#   DURATION=5s CONNS="32" bash benches/load/run.sh
#   WRITE=docs/performance.md bash benches/load/run.sh   # also write the results there
#   GATEWAY_BIN=/path/to/other/portcullis bash benches/load/run.sh   # compare another build
#   PT_PER_CORE=2 bash benches/load/run.sh   # the pass-through thread-per-core as well
#   PORTCULLIS_SERVER__RUNTIME=shared bash benches/load/run.sh   # the gateway work-stealing
#
# Scenarios (each alternated with a baseline run of the same request, headers included,
# through the pass-through proxy):
#   public   public rule, no credential
#   bearer   valid RS256 bearer token, scope rule, roles extraction (repeated token: cached)
#   session  valid encrypted session cookie, role rule
#   deny     no credential on a protected path (401)
#   cold     valid RS256 bearer tokens, a different one on every request (COLD_N distinct
#            tokens round-robin, benches/load/cold.lua), to a second gateway with the same
#            configuration but tokens.cache_size = 0, so every request verifies a
#            signature (a 10000-entry cache answers about 45 % of a 20000-token cycle: its
#            scan-resistant policy keeps part of it); the cache hits are checked to be 0
#   SCENARIOS="bearer cold" bash benches/load/run.sh   # a subset
# Reported: requests/s, p50/p99 latency, CPU time per request, the proxy's peak RSS, and
# the ratio of each portcullis scenario to the baseline run next to it; every figure is
# the median of ROUNDS (default 3) alternating runs, because on a small machine where
# wrk, proxy and upstream share the cores single runs vary by 10 % or more. Then the RSS
# with IDLE (default 10000) idle keep-alive connections open.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
# CONNS="" runs no load: only the idle-connection measurement.
CONNS=${CONNS-"32 256"}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-10000}
WRITE=${WRITE:-}
SCENARIOS=${SCENARIOS:-"public bearer session deny cold"}
[ -n "$CONNS" ] || SCENARIOS=""

# shellcheck source=benches/load/tools.sh
. benches/load/tools.sh
need wrk wrk

if [[ " $SCENARIOS " == *" cold "* ]]; then export BENCH_COLD_TOKENS=${BENCH_COLD_TOKENS:-20000}; fi
# shellcheck source=benches/load/common.sh
. benches/load/common.sh

ulimit -n 65536 2>/dev/null || ulimit -n 20000 2>/dev/null || true
# PT_PER_CORE=N: the pass-through in the thread-per-core layout too (N threads).
PER_CORE=${PT_PER_CORE:-0} "$REL/examples/passthrough" "127.0.0.1:$P" "http://127.0.0.1:$U" & PT=$!; pids+=($PT)
# The idle test holds its connections longer than the default 10 s keep-alive limit
# (opening 10 000 of them takes seconds): without this the first ones would be closed
# before the RSS is read, and fewer than IDLE would be measured.
PORTCULLIS_SERVER__HEADER_READ_TIMEOUT=${IDLE_TIMEOUT:-120s} \
    "${GATEWAY_BIN:-$REL/portcullis}" serve -c "$tmp/gateway.toml" 2>"$tmp/gateway.log" & GW=$!; pids+=($GW)
wait_http "http://127.0.0.1:$A/readyz" 200
wait_http "http://127.0.0.1:$P/" 200
curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$G/api/x" >/dev/null
curl -sf -H "Cookie: $COOKIE" "http://127.0.0.1:$G/app/x" >/dev/null
GWC="" C=$(free_port) CA=$(free_port)
if [[ " $SCENARIOS " == *" cold "* ]]; then
    # The cold gateway: the same configuration on other ports, without the cache.
    sed -e "s|127.0.0.1:$G|127.0.0.1:$C|g" -e "s|127.0.0.1:$A|127.0.0.1:$CA|" "$tmp/gateway.toml" > "$tmp/gateway-cold.toml"
    printf '[tokens]\ncache_size = 0\n' >> "$tmp/gateway-cold.toml"
    "${GATEWAY_BIN:-$REL/portcullis}" serve -c "$tmp/gateway-cold.toml" 2>"$tmp/gateway-cold.log" & GWC=$!; pids+=($GWC)
    wait_http "http://127.0.0.1:$CA/readyz" 200
    wait_cold_tokens
    curl -sf -H "Authorization: Bearer $(head -n 1 "$COLD_TOKENS")" "http://127.0.0.1:$C/api/x" >/dev/null
fi
cold_line=""

results="$tmp/results.md"
{
    echo "| connections | scenario | req/s | p50 ms | p99 ms | baseline req/s | baseline p99 ms | ratio | p99 delta ms | CPU us/req | baseline CPU us/req | peak RSS MB |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
} > "$results"

# Each scenario runs ROUNDS times, each time right after a baseline run; the table shows
# the medians (the ratio is the median of the per-round ratios).
for c in $CONNS; do
    for scenario in $SCENARIOS; do
        R_RPS="" R_P50="" R_P99="" R_CPU="" B_RPS="" B_P99="" B_CPU="" RATIO="" DELTA=""
        gw=$GW gport=$G gadmin=$A
        [ "$scenario" = cold ] && gw=$GWC gport=$C gadmin=$CA
        read -r hits0 misses0 < <(cache_counts "$gadmin")
        for _ in $(seq 1 "$ROUNDS"); do
            # The baseline gets the same request (path and headers) as the scenario, so both
            # proxies move the same bytes; only the gateway's own work differs.
            scenario_request "$scenario"
            read -r brps bp50 bp99 bcpu < <(run "$PT" "$c" "http://127.0.0.1:$P$path" "$hdr")
            read -r rps p50 p99 cpu < <(run "$gw" "$c" "http://127.0.0.1:$gport$path" "$hdr")
            R_RPS+=" $rps" R_P50+=" $(to_ms "$p50")" R_P99+=" $(to_ms "$p99")" R_CPU+=" $cpu"
            B_RPS+=" $brps" B_P99+=" $(to_ms "$bp99")" B_CPU+=" $bcpu"
            RATIO+=" $(awk -v a="$rps" -v b="$brps" 'BEGIN { printf "%.3f", a/b }')"
            DELTA+=" $(awk -v a="$(to_ms "$p99")" -v b="$(to_ms "$bp99")" 'BEGIN { printf "%.3f", a-b }')"
            echo "  $c $scenario: ratio $(awk -v a="$rps" -v b="$brps" 'BEGIN { printf "%.2f", a/b }') ($rps / $brps req/s)" >&2
        done
        m() { median <<<"$1"; }
        line="| $c | $scenario | $(m "$R_RPS") | $(m "$R_P50") | $(m "$R_P99") | $(m "$B_RPS") | $(m "$B_P99") | $(awk -v r="$(m "$RATIO")" 'BEGIN { printf "%.2f", r }') | $(awk -v d="$(m "$DELTA")" 'BEGIN { printf "%+.3f", d }') | $(m "$R_CPU") | $(m "$B_CPU") | $(hwm "$gw") |"
        echo "$line" | tee -a "$results" >&2
        if [ "$scenario" = cold ]; then
            read -r hits1 misses1 < <(cache_counts "$gadmin")
            cold_line+="${cold_line:+; }$c connections: $((hits1 - hits0)) cache hits"
            echo "cold, $c connections: $((hits1 - hits0)) verified-token cache hits (must be 0), $COLD_N distinct tokens" >&2
        fi
    done
done

PT_PEAK=$(hwm "$PT") GW_PEAK=$(hwm "$GW")  # before the idle test raises them
echo "baseline (pass-through) peak RSS: $PT_PEAK MB" >&2
echo "portcullis peak RSS under load: $GW_PEAK MB" >&2

idle_line=""
# idle_test PID PORT: opens IDLE keep-alive connections to PORT, one request each, and
# reads the process's RSS while all of them are open and idle; prints one line.
idle_test() {
    local proc=$1 port=$2 before held open_now upstream_now rss_now ipid
    before=$(rss "$proc")
    rm -f "$tmp/idle.done"
    python3 - "$port" "$IDLE" "$tmp/idle.done" "${IDLE_PATH:-/public/x}" <<'PY' &
import socket, sys, time, os
port, n, done, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
socks = []
req = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\n\r\n"
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    socks.append(s)
for s in socks:  # read each response so the connection is idle, kept alive
    s.settimeout(10)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
open(done, "w").write(str(len(socks)))
time.sleep(30)
PY
    ipid=$!  # runs in a command substitution: killed and waited for below, not via pids
    for _ in $(seq 1 1200); do [ -s "$tmp/idle.done" ] && break; sleep 0.1; done
    held=$(cat "$tmp/idle.done" 2>/dev/null || echo 0)
    for i in $(seq 1 "${IDLE_WAIT:-0}"); do sleep 1; echo "  idle ${i}s: RSS $(rss "$proc") MB" >&2; done
    open_now=$(ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l)
    # The upstream connections the proxy keeps idle in its pool hold memory too.
    upstream_now=$(ss -Htnp state established "( dport = :$U )" 2>/dev/null | grep -c "pid=$proc," || true)
    rss_now=$(rss "$proc")
    kill "$ipid" 2>/dev/null || true
    wait "$ipid" 2>/dev/null || true
    # Let the proxy see the closes before the next test.
    for _ in $(seq 1 100); do
        [ "$(ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l)" -lt 10 ] && break
        sleep 0.1
    done
    echo "$held idle keep-alive connections ($open_now open when measured, $upstream_now upstream connections kept): RSS $rss_now MB (before: $before MB)"
}
if [ "$IDLE" -gt 0 ]; then
    # The pass-through first: what hyper itself holds per connection, the floor.
    pt_idle=$(idle_test "$PT" "$P")
    echo "pass-through: $pt_idle" >&2
    gw_idle=$(idle_test "$GW" "$G")
    echo "portcullis: $gw_idle" >&2
    idle_line="portcullis: $gw_idle; pass-through: $pt_idle"
fi

if [ -n "$WRITE" ]; then
    {
        echo "## Load benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, wrk -t$THREADS, $DURATION per run)"
        echo
        echo "Command: \`DURATION=$DURATION CONNS=\"$CONNS\" ROUNDS=$ROUNDS SCENARIOS=\"$SCENARIOS\" bash benches/load/run.sh\`"
        echo
        cat "$results"
        echo
        echo "- baseline (pass-through) peak RSS: $PT_PEAK MB; portcullis peak RSS under load: $GW_PEAK MB"
        [ -n "$idle_line" ] && echo "- $idle_line"
        [ -n "$cold_line" ] && echo "- cold: a second gateway with tokens.cache_size = 0 (peak RSS $(hwm "$GWC") MB), $COLD_N distinct tokens round-robin; $cold_line"
    } > "$WRITE.new"
    echo "results written to $WRITE.new" >&2
fi
cat "$results"
