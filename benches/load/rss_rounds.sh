#!/usr/bin/env bash
# The gateway's memory over back-to-back rounds of wrk at the same connection count
# (default: 4 rounds of 5 s, 256 connections, the bearer request): after each round and
# 1.5 s later, its peak and current anonymous memory and how many upstream connections it
# holds. A gateway whose memory or upstream connection count creeps up from round to round
# shows it here.
#
#   bash benches/load/rss_rounds.sh
#   GATEWAY_BIN=/path/to/portcullis C=256 D=5s ROUNDS=4 SC=public bash benches/load/rss_rounds.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/load/tools.sh
. benches/load/tools.sh
need wrk wrk
# shellcheck source=benches/load/common.sh
. benches/load/common.sh
GATEWAY_BIN=${GATEWAY_BIN:-$REL/portcullis}
"$GATEWAY_BIN" serve -c "$tmp/gateway.toml" 2>/dev/null & GW=$!; pids+=($GW)
wait_http "http://127.0.0.1:$A/readyz" 200
scenario_request "${SC:-bearer}"
state() {
    awk '/VmHWM|RssAnon/ { printf "%s %.1f MB  ", $1, $2 / 1024 }' "/proc/$GW/status"
    echo "upstream connections: $(ss -Htn state established "( dport = :$U )" | wc -l)"
}
echo "before: $(state)"
for r in $(seq 1 "${ROUNDS:-4}"); do
    rps=$(wrk -t2 -c"${C:-256}" -d"${D:-5s}" -H "$hdr" "http://127.0.0.1:$G$path" | awk '/Requests\/sec/ { print $2 }')
    echo "round $r ($rps req/s): $(state)"
    sleep 1.5
    echo "  1.5 s later: $(state)"
done
