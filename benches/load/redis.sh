#!/usr/bin/env bash
# Session requests with the Redis session store against the cookie store, in the same run:
# two gateways (one per store) in front of the same upstream, the same session (a cookie
# that holds it, and a cookie that names it in a real redis-server on 127.0.0.1), wrk
# alternating between them.
#
#   bash benches/load/redis.sh                    # 10 s per run, 32 connections, 3 rounds
#   DURATION=5s CONNS="32 256" bash benches/load/redis.sh
#
# Reported per store: requests/s, p50/p99 latency and the gateway's CPU time per request
# (medians of ROUNDS alternating runs), and the ratio of Redis to cookie.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}

# shellcheck source=benches/load/tools.sh
. benches/load/tools.sh
need "wrk redis-server" wrk redis-server

R=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
redis_dir=$(mktemp -d)
redis-server --port "$R" --bind 127.0.0.1 --save "" --appendonly no --dir "$redis_dir" >/dev/null & REDIS_PID=$!
trap 'kill $REDIS_PID 2>/dev/null || true; rm -rf "$redis_dir"' EXIT
for _ in $(seq 1 200); do redis-cli -p "$R" ping >/dev/null 2>&1 && break; sleep 0.05; done
export BENCH_REDIS_URL="redis://127.0.0.1:$R/0"

# shellcheck source=benches/load/common.sh
. benches/load/common.sh
pids+=("$REDIS_PID")
trap 'cleanup; rm -rf "$redis_dir"' EXIT

G2=$(free_port); A2=$(free_port)
sed -e "s/127.0.0.1:$G\"/127.0.0.1:$G2\"/" -e "s/127.0.0.1:$A\"/127.0.0.1:$A2\"/" \
    -e "s|^refresh = false|refresh = false\nstore = \"redis\"\nredis_url = \"$BENCH_REDIS_URL\"|" \
    "$tmp/gateway.toml" > "$tmp/redis.toml"
"${GATEWAY_BIN:-$REL/portcullis}" serve -c "$tmp/gateway.toml" 2>"$tmp/cookie.log" & GC=$!; pids+=($GC)
"${GATEWAY_BIN:-$REL/portcullis}" serve -c "$tmp/redis.toml" 2>"$tmp/redis.log" & GR=$!; pids+=($GR)
wait_http "http://127.0.0.1:$A/readyz" 200
wait_http "http://127.0.0.1:$A2/readyz" 200
curl -sf -H "Cookie: $COOKIE" "http://127.0.0.1:$G/app/x" >/dev/null
curl -sf -H "Cookie: $REDIS_COOKIE" "http://127.0.0.1:$G2/app/x" >/dev/null

echo "| connections | store | req/s | p50 ms | p99 ms | CPU us/req | req/s vs cookie |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for c in $CONNS; do
    C_RPS="" C_P50="" C_P99="" C_CPU="" R_RPS="" R_P50="" R_P99="" R_CPU="" RATIO=""
    for _ in $(seq 1 "$ROUNDS"); do
        read -r crps cp50 cp99 ccpu < <(run "$GC" "$c" "http://127.0.0.1:$G/app/x" "Cookie: $COOKIE")
        read -r rrps rp50 rp99 rcpu < <(run "$GR" "$c" "http://127.0.0.1:$G2/app/x" "Cookie: $REDIS_COOKIE")
        C_RPS+=" $crps" C_P50+=" $(to_ms "$cp50")" C_P99+=" $(to_ms "$cp99")" C_CPU+=" $ccpu"
        R_RPS+=" $rrps" R_P50+=" $(to_ms "$rp50")" R_P99+=" $(to_ms "$rp99")" R_CPU+=" $rcpu"
        RATIO+=" $(awk -v a="$rrps" -v b="$crps" 'BEGIN { printf "%.3f", a/b }')"
        echo "  $c: redis $rrps req/s, cookie $crps req/s" >&2
    done
    m() { median <<<"$1"; }
    echo "| $c | cookie | $(m "$C_RPS") | $(m "$C_P50") | $(m "$C_P99") | $(m "$C_CPU") | 1.00 |"
    echo "| $c | redis | $(m "$R_RPS") | $(m "$R_P50") | $(m "$R_P99") | $(m "$R_CPU") | $(awk -v r="$(m "$RATIO")" 'BEGIN { printf "%.2f", r }') |"
done
