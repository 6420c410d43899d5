# Shared by the load scripts (sourced, not run): builds the release binaries, starts the
# upstream and the benchmark provider on 127.0.0.1, and writes the gateway configuration
# with the scenarios' rules. Afterwards: $REL, $tmp, pids, U (upstream), P (for the
# pass-through), G / A (gateway main / admin), $tmp/gateway.toml, and from the provider
# ISSUER, TOKEN and COOKIE, and COLD_TOKENS (a file of COLD_N distinct valid tokens for
# the cold scenario; call wait_cold_tokens before using it). Everything started is stopped on exit, by PID. With
# TELEMETRY set to an OTLP/HTTP endpoint, the configuration gets [telemetry] too.

REL="${CARGO_TARGET_DIR:-target}/release"
echo "building release binaries..." >&2
cargo build --release --quiet --bin portcullis --example passthrough --example bench_upstream --example bench_env --features test-util

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { # url, expected status (up to 60 s: valgrind starts slowly)
    for _ in $(seq 1 600); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
        [ "$code" = "$2" ] && return 0
        sleep 0.1
    done
    echo "no $2 from $1" >&2
    return 1
}

U=$(free_port); P=$(free_port); G=$(free_port); A=$(free_port)
SECRET="bench-session-secret-0123456789abcdef"
"$REL/examples/bench_upstream" "127.0.0.1:$U" & pids+=($!)
# BENCH_COLD_TOKENS: how many cold tokens the provider signs (0, unless a script wants
# them: signing takes every core for a few seconds, so such a script waits for them
# before it measures anything).
BENCH_COLD_TOKENS=${BENCH_COLD_TOKENS:-0} "$REL/examples/bench_env" "$tmp/env" "$SECRET" ${BENCH_REDIS_URL:+"$BENCH_REDIS_URL"} & pids+=($!)
for _ in $(seq 1 200); do [ -s "$tmp/env" ] && break; sleep 0.05; done
# shellcheck disable=SC1091
. "$tmp/env"

cat > "$tmp/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$G"
admin_listen = "127.0.0.1:$A"
public_url = "http://127.0.0.1:$G"
[upstream]
url = "http://127.0.0.1:$U"
[oidc]
issuer = "$ISSUER"
client_id = "gateway"
client_secret = "bench"
[session]
secret = "$SECRET"
refresh = false
[log]
level = "${LOG_LEVEL:-info}"
[[rule]]
path = "/public/**"
access = "public"
[[rule]]
path = "/api/**"
scopes = ["test_api_access"]
any_roles = ["user"]
login = "deny"
[[rule]]
path = "/app/**"
roles = ["admin"]
TOML
# TELEMETRY=http://127.0.0.1:4318: the gateway also sends a span per request there.
if [ -n "${TELEMETRY:-}" ]; then
    printf '[telemetry]\notlp_endpoint = "%s"\n' "$TELEMETRY" >> "$tmp/gateway.toml"
fi

# The request of each scenario, for both proxies: path and one header line, or a wrk
# script that makes the requests (cold: a different valid token on every request).
scenario_request() {
    script=""
    case $1 in
        public)  path=/public/x hdr="X-Bench: public" ;;
        bearer)  path=/api/x hdr="Authorization: Bearer $TOKEN" ;;
        session) path=/app/x hdr="Cookie: $COOKIE" ;;
        deny)    path=/api/x hdr="Accept: application/json" ;;
        cold)    path=/api/x hdr="X-Bench: cold" script=benches/load/cold.lua ;;
    esac
}

# The cold tokens are signed after the env file is written: wait for their file (the
# provider renames it into place when it is complete).
wait_cold_tokens() {
    for _ in $(seq 1 1800); do [ -s "$COLD_TOKENS" ] && break; sleep 0.1; done
    [ -s "$COLD_TOKENS" ] || { echo "no cold tokens in $COLD_TOKENS" >&2; return 1; }
    export COLD_TOKENS COLD_THREADS="$THREADS"
}

# cache_counts ADMIN_PORT -> "hits misses" of the gateway's verified-token cache so far
cache_counts() {
    curl -sf "http://127.0.0.1:$1/metrics" | awk '
        /^portcullis_token_cache_total\{result="hit"\}/ { h = $2 }
        /^portcullis_token_cache_total\{result="miss"\}/ { m = $2 }
        END { printf "%d %d\n", h, m }'
}

# Measuring helpers (wrk runs, CPU time, RSS).
hwm() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run PID CONNS URL [header...] -> prints "rps p50 p99 cpu_us_per_request" (the CPU time,
# user + system, that process PID spent per request during the measured run); with
# $script set, wrk runs that script (which makes the requests) too
run() {
    local pid=$1 conns=$2 url=$3; shift 3
    local hdrs=()
    for h in "$@"; do hdrs+=(-H "$h"); done
    [ -n "${script:-}" ] && hdrs+=(-s "$script")
    wrk -t"$THREADS" -c"$conns" -d"$WARMUP" "${hdrs[@]}" "$url" >/dev/null 2>&1
    local out t0 t1
    t0=$(cpu_ticks "$pid")
    out=$(wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency "${hdrs[@]}" "$url")
    t1=$(cpu_ticks "$pid")
    local rps p50 p99 total cpu
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=$(awk -v a="$t0" -v b="$t1" -v n="$total" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
    echo "$rps $p50 $p99 $cpu"
}

to_ms() { # 1.23ms / 456.00us / 1.2s -> ms
    awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
