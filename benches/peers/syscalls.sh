#!/usr/bin/env bash
# System calls per request: portcullis, the pass-through baseline and nginx (plain proxy,
# benches/peers/nginx.conf), each counted by `strace -c` over one wrk run of the same
# bearer request (GET /api/x, the benchmark token), on 127.0.0.1.
#
#   bash benches/peers/syscalls.sh
#   DURATION=5s CONNS=8 bash benches/peers/syscalls.sh
#   GATEWAY_BIN=/path/to/portcullis bash benches/peers/syscalls.sh
#
# strace slows every process it traces, so the request rates it prints mean nothing; the
# counts per request are what this is for. Not part of cargo test or .ci/run.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-3s}
CONNS=${CONNS:-4}

# shellcheck source=benches/load/tools.sh
. benches/load/tools.sh
need "strace wrk nginx-light" strace wrk nginx

# shellcheck source=benches/load/common.sh
. benches/load/common.sh
GATEWAY_BIN=${GATEWAY_BIN:-$REL/portcullis}

"$GATEWAY_BIN" serve -c "$tmp/gateway.toml" 2>/dev/null & GW=$!; pids+=($GW)
"$REL/examples/passthrough" "127.0.0.1:$P" "http://127.0.0.1:$U" & PT=$!; pids+=($PT)
NG_PORT=$(free_port)
mkdir -p "$tmp/nginx"
sed -e "s#@DIR@#$tmp/nginx#g" -e "s#@UPSTREAM@#$U#g" -e "s#@PORT@#$NG_PORT#g" \
    benches/peers/nginx.conf > "$tmp/nginx/nginx.conf"
nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" & NG=$!; pids+=($NG)
wait_http "http://127.0.0.1:$A/readyz" 200
wait_http "http://127.0.0.1:$P/public/x" 200
wait_http "http://127.0.0.1:$NG_PORT/public/x" 200

# Every thread of these processes.
threads() {
    local p t
    for p in "$@"; do
        for t in /proc/"$p"/task/*; do printf -- '-p %s ' "${t##*/}"; done
    done
}

# Prints one table row: name, requests, system calls per request, the three most
# frequent calls per request.
count() { # name port pid...
    local name=$1 port=$2
    shift 2
    local url="http://127.0.0.1:$port/api/x" hdr="Authorization: Bearer $TOKEN"
    wrk -t1 -c"$CONNS" -d1s -H "$hdr" "$url" >/dev/null  # warm-up: pools, caches
    # shellcheck disable=SC2046
    strace -c -f -o "$tmp/$name.strace" $(threads "$@") 2>/dev/null & local st=$!
    # strace has attached once it has stopped each thread once; wait for its first report
    # of the process instead of a fixed delay.
    for _ in $(seq 1 100); do
        grep -q "TracerPid:[[:space:]]*$st" /proc/"$1"/status 2>/dev/null && break
        sleep 0.05
    done
    local n
    n=$(wrk -t1 -c"$CONNS" -d"$DURATION" -H "$hdr" "$url" | awk '/requests in/ { print $1 }')
    kill -INT "$st"
    wait "$st" 2>/dev/null || true
    # strace -c: "% time  seconds  usecs/call  calls  [errors]  syscall", then a total.
    awk -v name="$name" -v n="$n" '
        $NF == "total" { total = $4; next }
        $4 ~ /^[0-9]+$/ && NF >= 5 { calls[$NF] = $4 }
        END {
            top = ""
            for (k = 0; k < 3; k++) {
                best = ""
                for (c in calls) if (best == "" || calls[c] > calls[best]) best = c
                if (best == "") break
                top = top sprintf("%s%s %.2f", top == "" ? "" : ", ", best, calls[best] / n)
                delete calls[best]
            }
            printf "| %s | %d | %.2f | %s |\n", name, n, total / n, top
        }' "$tmp/$name.strace"
}

echo "| proxy | requests | system calls per request | most frequent, per request |"
echo "| --- | --- | --- | --- |"
count portcullis "$G" "$GW"
count pass-through "$P" "$PT"
# nginx: the master and its workers.
# shellcheck disable=SC2046
count nginx "$NG_PORT" "$NG" $(pgrep -P "$NG" | tr '\n' ' ')
