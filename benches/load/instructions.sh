#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: portcullis per scenario and
# the pass-through proxy, each serving the same fixed number of keep-alive requests.
# Unlike requests/s, instruction counts do not depend on what else the machine is doing,
# so this is the figure to compare builds with (user-space work only: the kernel's share,
# the same for both proxies, is not counted).
#
#   bash benches/load/instructions.sh                       # 2000 requests per scenario
#   N=5000 bash benches/load/instructions.sh
#   GATEWAY_BIN=/path/to/other/portcullis bash benches/load/instructions.sh
#   TELEMETRY=http://127.0.0.1:4318 bash benches/load/instructions.sh   # with [telemetry]
#   KEEP=target/callgrind bash benches/load/instructions.sh   # keep each window's profile
#                                            # (then: callgrind_annotate target/callgrind/bearer)
#   NGINX=1 bash benches/load/instructions.sh   # also nginx as a plain proxy (one process,
#                                            # benches/peers/nginx.conf), the same requests
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-2000}
CONC=${CONC:-4}

# shellcheck source=benches/load/tools.sh
. benches/load/tools.sh
need "valgrind apache2-utils" valgrind ab
if [ "${NGINX:-0}" = 1 ]; then need nginx-light nginx; fi

# shellcheck source=benches/load/common.sh
. benches/load/common.sh
GATEWAY_BIN=${GATEWAY_BIN:-$REL/portcullis}

# Both proxies under callgrind, counting from the first request on.
valgrind --tool=callgrind --callgrind-out-file="$tmp/pt.%p" --collect-atstart=yes \
    "$REL/examples/passthrough" "127.0.0.1:$P" "http://127.0.0.1:$U" 2>"$tmp/pt.log" & PT=$!; pids+=($PT)
valgrind --tool=callgrind --callgrind-out-file="$tmp/gw.%p" --collect-atstart=yes \
    "$GATEWAY_BIN" serve -c "$tmp/gateway.toml" 2>"$tmp/gw.log" & GW=$!; pids+=($GW)
wait_http "http://127.0.0.1:$A/readyz" 200
wait_http "http://127.0.0.1:$P/public/x" 200
if [ "${NGINX:-0}" = 1 ]; then
    # Its peer-benchmark configuration, in one process (no master, one worker) so that
    # callgrind counts all of it.
    NG_PORT=$(free_port)
    mkdir -p "$tmp/nginx"
    sed -e "s#@DIR@#$tmp/nginx#g" -e "s#@UPSTREAM@#$U#g" -e "s#@PORT@#$NG_PORT#g" \
        -e "s#^worker_processes auto;#worker_processes 1; master_process off;#" \
        benches/peers/nginx.conf > "$tmp/nginx/nginx.conf"
    valgrind --tool=callgrind --callgrind-out-file="$tmp/ngx.%p" --collect-atstart=yes \
        nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" 2>"$tmp/ngx.log" & NG=$!; pids+=($NG)
    wait_http "http://127.0.0.1:$NG_PORT/public/x" 200
fi

# Zeroes the counters, sends N requests, dumps; prints the instructions of that window.
count() { # name pid url [header]
    local name=$1 pid=$2 url=$3 hdr=${4:-"X-Bench: 1"}
    ab -q -n 200 -c "$CONC" -k -H "$hdr" "$url" >/dev/null  # warm caches and pools
    callgrind_control --zero "$pid" >/dev/null
    local before
    before=$(ls "$tmp" | wc -l)
    ab -q -n "$N" -c "$CONC" -k -H "$hdr" "$url" >"$tmp/ab.txt"
    grep -q "Failed requests:        0" "$tmp/ab.txt" || { echo "requests failed: $(grep Failed "$tmp/ab.txt")" >&2; exit 1; }
    callgrind_control --dump "$pid" >/dev/null
    for _ in $(seq 1 100); do [ "$(ls "$tmp" | wc -l)" -gt "$before" ] && break; sleep 0.1; done
    local dump
    dump=$(ls -t "$tmp"/*."$pid".* 2>/dev/null | head -1)
    awk '/^summary:/ { print $2 }' "$dump"
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$name"; fi
    rm -f "$dump"
}

nginx_rows=""
echo "| scenario | portcullis instructions/request | pass-through instructions/request | ratio |"
echo "| --- | --- | --- | --- |"
for scenario in public bearer session deny; do
    # The pass-through gets the same request, headers included.
    scenario_request "$scenario"
    base=$(count "pass-through-$scenario" "$PT" "http://127.0.0.1:$P$path" "$hdr")
    ir=$(count "$scenario" "$GW" "http://127.0.0.1:$G$path" "$hdr")
    awk -v g="$ir" -v b="$base" -v n="$N" -v s="$scenario" \
        'BEGIN { printf "| %s | %.0f | %.0f | %.2f |\n", s, g / n, b / n, g / b }'
    if [ "${NGINX:-0}" = 1 ]; then
        ng=$(count "nginx-$scenario" "$NG" "http://127.0.0.1:$NG_PORT$path" "$hdr")
        nginx_rows+="| $scenario | $(awk -v x="$ng" -v n="$N" 'BEGIN { printf "%.0f", x / n }') | $(awk -v g="$ir" -v x="$ng" 'BEGIN { printf "%.2f", g / x }') |"$'\n'
    fi
done
if [ "${NGINX:-0}" = 1 ]; then
    # nginx does not authenticate: its deny row is a forwarded request.
    echo
    echo "| scenario | nginx (plain proxy) instructions/request | portcullis / nginx |"
    echo "| --- | --- | --- |"
    printf '%s' "$nginx_rows"
fi
