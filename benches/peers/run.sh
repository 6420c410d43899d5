#!/usr/bin/env bash
# Peer benchmark: portcullis against the gateways users would pick instead, on one
# machine, in one run, with the same RSA key (one JWKS), the same RS256 bearer token, the
# same upstream and the same wrk settings.
#
#   bash benches/peers/run.sh                      # every peer, 2 rounds of 10 s runs
#   PEERS="portcullis nginx" bash benches/peers/run.sh
#   WRITE=/tmp/peers.md bash benches/peers/run.sh  # also write the table to that file
#   COLD=0 bash benches/peers/run.sh               # without the cold-token runs
#
# Started, all on 127.0.0.1, each from the configuration file beside this script:
#   pass-through   examples/passthrough.rs, the do-nothing hyper proxy (the baseline)
#   portcullis     this checkout's release build (portcullis.toml)
#   nginx          Debian's nginx as a plain proxy, no authentication (nginx.conf)
#   apache         Debian's apache2 + libapache2-mod-auth-openidc, AuthType oauth20,
#                  local JWT validation against the JWKS (apache.conf)
#   oauth2-proxy   v7.15.6, skip_jwt_bearer_tokens (oauth2-proxy.cfg); it cannot require
#                  a scope, and verifies signature, iss, aud and exp
#   oathkeeper     Ory Oathkeeper v0.40.9, jwt authenticator (oathkeeper.yml)
# in front of examples/bench_upstream.rs, with examples/bench_env.rs as the provider
# (discovery + JWKS) that also mints the token (see benches/load/common.sh).
#
# Installing: the Debian packages with apt-get (as root; otherwise the script says what
# to install and goes on without that peer); the Go peers are built once with the go
# command into ${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/peers/NAME-VERSION/ and
# reused from there. Nothing is installed into the checkout. A peer that cannot be
# installed or started is reported with the reason, and the others still run.
#
# Before measuring, each proxy is probed: the valid token must pass (200), and the script
# records which of these it refuses: no token, a bad signature, no test_api_access scope,
# another audience, another issuer, an expired token. The table's "refuses" column is that
# probe's result, not a claim.
#
# Measuring: for ROUNDS rounds (default 2), for each proxy a pass-through run and then
# the proxy's run, each a WARMUP (2 s) wrk run and then a measured DURATION (10 s) run
# with --latency, CONNS (32) connections, THREADS (2) threads, the same request
# (GET /api/x with the bearer token). The table shows medians over the rounds; the ratio
# is the median of each round's ratio to the pass-through run just before it. CPU us/req
# is the user + system CPU time of the proxy's processes (master and workers, from
# /proc/PID/stat) per request of the measured run; peak RSS is the sum of VmHWM over
# those processes at the end (for the multi-process peers, pages they share are counted
# once per process).
#
# Cold tokens (unless COLD=0): the same rounds again, but every request carries another of
# COLD_N (20000) distinct valid tokens that differ only in their jti (benches/load/cold.lua,
# round-robin), so no proxy can answer from a cache of verified tokens and every request
# costs a signature check. portcullis runs them as a second instance with
# tokens.cache_size = 0 (with the cache, a 10000-entry cache answers about 45 % of a
# 20000-token cycle), and its cache hits are read from /metrics (0). A second table shows
# these runs, with each proxy's throughput against Apache's. Not part of cargo test or
# .ci/run.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
PEERS=${PEERS:-"portcullis nginx apache oauth2-proxy oathkeeper"}
COLD=${COLD:-1}
WRITE=${WRITE:-}
OAUTH2_PROXY_VERSION=v7.15.6
OATHKEEPER_VERSION=v0.40.9
CACHE="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/peers"
HERE=benches/peers

notes=()     # why a peer is missing, for the table's footnotes
note() { echo "peers: $1" >&2; notes+=("$1"); }

is_root() { [ "$(id -u)" = 0 ]; }
apt_updated=""
apt_install() { # packages... (root and apt-get only)
    is_root && command -v apt-get >/dev/null 2>&1 || return 1
    if [ -z "$apt_updated" ]; then apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if ! command -v wrk >/dev/null 2>&1 && ! apt_install wrk; then
    echo "wrk is missing: install it (Debian: apt-get install wrk)" >&2
    exit 1
fi

if [ "$COLD" = 1 ]; then export BENCH_COLD_TOKENS=${BENCH_COLD_TOKENS:-20000}; fi
# shellcheck source=benches/load/common.sh
. benches/load/common.sh
# The provider signs the cold tokens on every core: wait before measuring anything.
if [ "$COLD" = 1 ]; then wait_cold_tokens; fi

ulimit -n 65536 2>/dev/null || true

# A proxy may be several processes (nginx and Apache: a master and its workers): the CPU
# time and the peak RSS are summed over the process and its descendants.
tree_pids() {
    echo "$1"
    local c
    for c in $(pgrep -P "$1" || true); do tree_pids "$c"; done
}
cpu_ticks() { # replaces common.sh's single-process version
    local t=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
tree_hwm() {
    local kb=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        kb=$((kb + ${v:-0}))
    done
    awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }'
}

# render TEMPLATE OUT KEY=VALUE...: the template with each @KEY@ replaced
render() {
    local in=$1 out=$2 kv args=()
    shift 2
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$in" > "$out"
}

JWKS="$ISSUER/protocol/openid-connect/certs"
declare -A PID PORT VERSION REFUSES ADMIN
started=()

wait_up() { # name url: waits for any HTTP answer from url while the process lives
    local name=$1 url=$2 code
    for _ in $(seq 1 300); do
        if ! kill -0 "${PID[$name]}" 2>/dev/null; then
            note "$name: exited at start (log: $(tail -n 3 "$tmp/$name/log" 2>/dev/null | tr '\n' ' '))"
            return 1
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)
        [ "$code" != "000" ] && return 0
        sleep 0.1
    done
    note "$name: no answer on $url within 30 s"
    return 1
}

launch() { # name cmd...: starts a proxy in the background, its output to $tmp/NAME/log
    local name=$1
    shift
    "$@" >"$tmp/$name/log" 2>&1 &
    PID[$name]=$!
    pids+=($!)
}

start_passthrough() {
    mkdir -p "$tmp/pass-through"
    PORT[pass-through]=$P
    launch pass-through "$REL/examples/passthrough" "127.0.0.1:$P" "http://127.0.0.1:$U"
    VERSION[pass-through]="examples/passthrough.rs"
    wait_up pass-through "http://127.0.0.1:$P/"
}

# start_portcullis [NAME CACHE_SIZE]: portcullis, or (for the cold runs) a second
# instance with another cache size
start_portcullis() {
    local name=${1:-portcullis} cache=${2:-10000} d admin
    d=$tmp/$name
    mkdir -p "$d"
    PORT[$name]=$(free_port) admin=$(free_port)
    render "$HERE/portcullis.toml" "$d/gateway.toml" PORT="${PORT[$name]}" \
        ADMIN_PORT="$admin" UPSTREAM="$U" ISSUER="$ISSUER" CACHE_SIZE="$cache"
    launch "$name" "${GATEWAY_BIN:-$REL/portcullis}" serve -c "$d/gateway.toml"
    if [ -n "${GATEWAY_BIN:-}" ]; then
        # A binary built elsewhere: the checkout says nothing about it.
        VERSION[$name]="$("$GATEWAY_BIN" --version 2>/dev/null | awk '{print $NF}') ($(basename "$GATEWAY_BIN"))"
    else
        VERSION[$name]="$(git describe --always --dirty 2>/dev/null || echo unknown)"
    fi
    ADMIN[$name]=$admin
    wait_up "$name" "http://127.0.0.1:$admin/readyz"
    wait_http "http://127.0.0.1:$admin/readyz" 200
}

start_nginx() {
    if ! command -v nginx >/dev/null 2>&1 && ! apt_install nginx; then
        note "nginx: not installed, and apt-get cannot install it here (needs root and Debian: apt-get install nginx)"
        return 1
    fi
    local d=$tmp/nginx
    mkdir -p "$d"
    PORT[nginx]=$(free_port)
    render "$HERE/nginx.conf" "$d/nginx.conf" DIR="$d" PORT="${PORT[nginx]}" UPSTREAM="$U"
    launch nginx nginx -p "$d" -c "$d/nginx.conf"
    VERSION[nginx]="$(nginx -v 2>&1 | sed 's|.*nginx/||')"
    wait_up nginx "http://127.0.0.1:${PORT[nginx]}/"
}

start_apache() {
    if ! { have_pkg apache2 && have_pkg libapache2-mod-auth-openidc; } &&
        ! apt_install apache2 libapache2-mod-auth-openidc; then
        note "apache: apache2 or libapache2-mod-auth-openidc is not installed, and apt-get cannot install them here (needs root and Debian: apt-get install apache2 libapache2-mod-auth-openidc)"
        return 1
    fi
    local d=$tmp/apache user=""
    mkdir -p "$d"
    # Apache will not serve as root: as root its workers run as www-data
    is_root && user="User www-data
Group www-data"
    # mod_auth_openidc fetches a JWKS only over https: relay it over TLS, with a
    # self-signed certificate for 127.0.0.1 that apache.conf trusts as its CA bundle
    if ! openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 -keyout "$d/jwks.key" -out "$d/jwks.crt" >/dev/null 2>&1; then
        note "apache: openssl could not make the certificate for the TLS JWKS relay"
        return 1
    fi
    # the workers (www-data when run as root) read the certificate: traverse-only
    # directories and a readable certificate, nothing else opened up
    chmod 711 "$tmp" "$d" && chmod 644 "$d/jwks.crt"
    local jwks_port
    jwks_port=$(free_port)
    python3 "$HERE/tls_jwks.py" "$jwks_port" "$d/jwks.crt" "$d/jwks.key" "$JWKS" >"$d/jwks.log" 2>&1 &
    pids+=($!)
    local ok=""
    for _ in $(seq 1 100); do
        curl -sf --cacert "$d/jwks.crt" "https://127.0.0.1:$jwks_port/certs" >/dev/null && ok=1 && break
        sleep 0.1
    done
    if [ -z "$ok" ]; then
        note "apache: the TLS JWKS relay did not start ($(tail -n 2 "$d/jwks.log" | tr '\n' ' '))"
        return 1
    fi
    PORT[apache]=$(free_port)
    render "$HERE/apache.conf" "$d/apache.conf" DIR="$d" PORT="${PORT[apache]}" UPSTREAM="$U" \
        ISSUER="$ISSUER" JWKS_TLS="https://127.0.0.1:$jwks_port/certs" USER="${user//$'\n'/\\n}"
    launch apache /usr/sbin/apache2 -f "$d/apache.conf" -DFOREGROUND
    VERSION[apache]="$(/usr/sbin/apache2 -v | sed -n 's|.*Apache/\([^ ]*\).*|\1|p') + mod_auth_openidc $(dpkg-query -W -f='${Version}' libapache2-mod-auth-openidc)"
    wait_up apache "http://127.0.0.1:${PORT[apache]}/"
}

# go_build NAME VERSION BINARY: ensures $CACHE/NAME-VERSION/BINARY, building it when absent
go_build() {
    local name=$1 version=$2 bin=$3 dir=$CACHE/$1-$2
    [ -x "$dir/$bin" ] && return 0
    if ! command -v go >/dev/null 2>&1; then
        note "$name: the go command is missing (it builds $name $version into $dir)"
        return 1
    fi
    mkdir -p "$dir"
    echo "building $name $version into $dir (once)..." >&2
    case $name in
        oauth2-proxy)
            GOBIN="$dir" go install "github.com/oauth2-proxy/oauth2-proxy/v7@$version" >"$dir/build.log" 2>&1 ;;
        oathkeeper)
            # Its go.mod has a replace directive, so `go install module@version` refuses
            # it; building inside the downloaded module honours the directive.
            local src
            src=$(go mod download -json "github.com/ory/oathkeeper@$version" 2>"$dir/build.log" |
                sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
            [ -n "$src" ] && (cd "$src" && go build -trimpath -o "$dir/$bin" .) >>"$dir/build.log" 2>&1 ;;
    esac || true
    if [ ! -x "$dir/$bin" ]; then
        note "$name: building $version failed ($(grep -v '^go: downloading' "$dir/build.log" | tail -n 2 | tr '\n' ' '))"
        return 1
    fi
}

start_oauth2_proxy() {
    go_build oauth2-proxy "$OAUTH2_PROXY_VERSION" oauth2-proxy || return 1
    local d=$tmp/oauth2-proxy
    mkdir -p "$d"
    PORT[oauth2-proxy]=$(free_port)
    render "$HERE/oauth2-proxy.cfg" "$d/oauth2-proxy.cfg" PORT="${PORT[oauth2-proxy]}" \
        UPSTREAM="$U" ISSUER="$ISSUER"
    launch oauth2-proxy "$CACHE/oauth2-proxy-$OAUTH2_PROXY_VERSION/oauth2-proxy" --config "$d/oauth2-proxy.cfg"
    VERSION[oauth2-proxy]="$OAUTH2_PROXY_VERSION"
    wait_up oauth2-proxy "http://127.0.0.1:${PORT[oauth2-proxy]}/ping"
}

start_oathkeeper() {
    go_build oathkeeper "$OATHKEEPER_VERSION" oathkeeper || return 1
    local d=$tmp/oathkeeper
    mkdir -p "$d"
    PORT[oathkeeper]=$(free_port)
    local kv=(DIR="$d" PORT="${PORT[oathkeeper]}" API_PORT="$(free_port)" PROM_PORT="$(free_port)"
        UPSTREAM="$U" ISSUER="$ISSUER" JWKS="$JWKS")
    render "$HERE/oathkeeper.yml" "$d/oathkeeper.yml" "${kv[@]}"
    render "$HERE/oathkeeper-rules.json" "$d/rules.json" "${kv[@]}"
    launch oathkeeper "$CACHE/oathkeeper-$OATHKEEPER_VERSION/oathkeeper" serve --config "$d/oathkeeper.yml"
    VERSION[oathkeeper]="$OATHKEEPER_VERSION"
    wait_up oathkeeper "http://127.0.0.1:${PORT[oathkeeper]}/"
}

# probe NAME: the valid token must pass; records which bad requests the proxy refuses
probe() {
    local name=$1 url="http://127.0.0.1:${PORT[$1]}/api/x" code refused=() passed=() label tok
    # a bad signature: one character in the middle of the signature changed
    local sig=${TOKEN##*.} head=${TOKEN%.*}
    local mid=$((${#sig} / 2)) c=${sig:$((${#sig} / 2)):1}
    local badsig="$head.${sig:0:$mid}$([ "$c" = A ] && echo B || echo A)${sig:$((mid + 1))}"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$url" || true)
    if [ "$code" != 200 ]; then
        local log=$tmp/$name/log
        [ -s "$tmp/$name/error.log" ] && log=$tmp/$name/error.log
        note "$name: the valid token got $code, not 200 ($(tail -n 2 "$log" | tr '\n' ' '))"
        return 1
    fi
    [ "$name" = pass-through ] || [ "$name" = nginx ] || {
        for label in "no token" "bad signature" "no scope" "wrong aud" "wrong iss" "expired"; do
            case $label in
                "no token") tok="" ;;
                "bad signature") tok=$badsig ;;
                "no scope") tok=$NOSCOPE_TOKEN ;;
                "wrong aud") tok=$WRONGAUD_TOKEN ;;
                "wrong iss") tok=$WRONGISS_TOKEN ;;
                "expired") tok=$EXPIRED_TOKEN ;;
            esac
            code=$(curl -s -o /dev/null -w '%{http_code}' ${tok:+-H "Authorization: Bearer $tok"} "$url" || true)
            if [ "$code" = 200 ]; then passed+=("$label"); else refused+=("$label"); fi
        done
    }
    if [ "$name" = pass-through ] || [ "$name" = nginx ]; then
        REFUSES[$name]="nothing (no authentication)"
    else
        REFUSES[$name]="$(IFS=,; echo "${refused[*]}" | sed 's/,/, /g')"
        if [ ${#passed[@]} -gt 0 ]; then
            REFUSES[$name]+="; lets through: $(IFS=,; echo "${passed[*]}" | sed 's/,/, /g')"
        fi
    fi
    echo "peers: $name refuses ${REFUSES[$name]}" >&2
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start_passthrough && probe pass-through || { echo "the pass-through baseline does not work" >&2; exit 1; }
for name in $PEERS; do
    case $name in
        portcullis) start_portcullis ;;
        nginx) start_nginx ;;
        apache) start_apache ;;
        oauth2-proxy) start_oauth2_proxy ;;
        oathkeeper) start_oathkeeper ;;
        *) note "$name: unknown peer (known: portcullis nginx apache oauth2-proxy oathkeeper)"; false ;;
    esac && probe "$name" && started+=("$name") || true
done

# measure PID URL [cold] -> "rps p99_ms cpu_us_per_request non2xx"; with "cold", every
# request carries another of the cold tokens
measure() {
    local pid=$1 url=$2 out t0 t1
    local hdr=(-H "Authorization: Bearer $TOKEN")
    [ "${3:-}" = cold ] && hdr=(-s benches/load/cold.lua)
    wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "${hdr[@]}" "$url" >/dev/null 2>&1
    t0=$(cpu_ticks "$pid")
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${hdr[@]}" "$url" || true)
    t1=$(cpu_ticks "$pid")
    local rps p99 total bad cpu
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    bad=$(awk '/Non-2xx or 3xx responses/ {print $NF}' <<<"$out")
    cpu=$(awk -v a="$t0" -v b="$t1" -v n="$total" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
    [ -n "$rps" ] && [ "${total:-0}" -gt 0 ] || { echo "0 0 0 0"; return; }
    echo "$rps $p99 $cpu ${bad:-0}"
}

declare -A RPS RATIO P99 CPU BAD DEAD
B_RPS="" B_P99="" B_CPU=""
for round in $(seq 1 "$ROUNDS"); do
    for name in "${started[@]}"; do
        [ -n "${DEAD[$name]:-}" ] && continue
        read -r brps bp99 bcpu _ < <(measure "${PID[pass-through]}" "http://127.0.0.1:$P/api/x")
        read -r rps p99 cpu bad < <(measure "${PID[$name]}" "http://127.0.0.1:${PORT[$name]}/api/x")
        if ! kill -0 "${PID[$name]}" 2>/dev/null || [ "$rps" = 0 ]; then
            note "$name: stopped answering during round $round ($(tail -n 2 "$tmp/$name/log" | tr '\n' ' '))"
            DEAD[$name]=1
            continue
        fi
        B_RPS+=" $brps" B_P99+=" $bp99" B_CPU+=" $bcpu"
        RPS[$name]+=" $rps" P99[$name]+=" $p99" CPU[$name]+=" $cpu" BAD[$name]+=" $bad"
        RATIO[$name]+=" $(awk -v a="$rps" -v b="$brps" 'BEGIN { printf "%.3f", a / b }')"
        echo "  round $round $name: $rps req/s, pass-through $brps ($(awk -v a="$rps" -v b="$brps" 'BEGIN { printf "%.2f", a / b }')x)$([ "$bad" = 0 ] || echo ", $bad non-2xx")" >&2
    done
done

# The cold-token rounds: the same order, every request another valid token; portcullis
# is a second instance without the verified-token cache (portcullis-cold).
declare -A C_RPS C_RATIO C_P99 C_CPU C_BAD CDEAD
CB_RPS="" CB_P99="" CB_CPU="" cold_cache="" cold=()
if [ "$COLD" = 1 ] && [ ${#started[@]} -gt 0 ]; then
    wait_cold_tokens
    first_cold="Authorization: Bearer $(head -n 1 "$COLD_TOKENS")"
    for name in "${started[@]}"; do
        [ -n "${DEAD[$name]:-}" ] && continue
        target=$name
        if [ "$name" = portcullis ]; then
            start_portcullis portcullis-cold 0 || continue
            target=portcullis-cold
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "$first_cold" "http://127.0.0.1:${PORT[$target]}/api/x" || true)
        if [ "$code" != 200 ]; then
            note "$name: a cold token got $code, not 200 (no cold runs)"
            continue
        fi
        cold+=("$name")
    done
    [ -n "${ADMIN[portcullis-cold]:-}" ] && read -r hits0 _ < <(cache_counts "${ADMIN[portcullis-cold]}")
    for round in $(seq 1 "$ROUNDS"); do
        for name in "${cold[@]}"; do
            [ -n "${CDEAD[$name]:-}" ] && continue
            target=$name
            [ "$name" = portcullis ] && target=portcullis-cold
            read -r brps bp99 bcpu _ < <(measure "${PID[pass-through]}" "http://127.0.0.1:$P/api/x" cold)
            read -r rps p99 cpu bad < <(measure "${PID[$target]}" "http://127.0.0.1:${PORT[$target]}/api/x" cold)
            if ! kill -0 "${PID[$target]}" 2>/dev/null || [ "$rps" = 0 ]; then
                note "$name: stopped answering during cold round $round ($(tail -n 2 "$tmp/$target/log" | tr '\n' ' '))"
                CDEAD[$name]=1
                continue
            fi
            CB_RPS+=" $brps" CB_P99+=" $bp99" CB_CPU+=" $bcpu"
            C_RPS[$name]+=" $rps" C_P99[$name]+=" $p99" C_CPU[$name]+=" $cpu" C_BAD[$name]+=" $bad"
            C_RATIO[$name]+=" $(awk -v a="$rps" -v b="$brps" 'BEGIN { printf "%.3f", a / b }')"
            echo "  cold round $round $name: $rps req/s, pass-through $brps ($(awk -v a="$rps" -v b="$brps" 'BEGIN { printf "%.2f", a / b }')x)$([ "$bad" = 0 ] || echo ", $bad non-2xx")" >&2
        done
    done
    if [ -n "${ADMIN[portcullis-cold]:-}" ]; then
        read -r hits1 _ < <(cache_counts "${ADMIN[portcullis-cold]}")
        cold_cache="portcullis ran these with \`tokens.cache_size = 0\` (a second instance, the same configuration otherwise): $((hits1 - hits0)) verified-token cache hits, so every request was a signature check"
        echo "peers: $cold_cache" >&2
    fi
fi

m() { median <<<"$1" | awk '{ printf "%.1f", $1 }'; }
results=$tmp/peers.md
{
    echo "| proxy | version | refuses (probed) | req/s | x pass-through | CPU us/req | p99 ms | peak RSS MB |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    echo "| pass-through (baseline) | ${VERSION[pass-through]} | nothing (no authentication) | $(median <<<"$B_RPS" | awk '{printf "%.0f", $1}') | 1.00 | $(m "$B_CPU") | $(median <<<"$B_P99" | awk '{printf "%.2f", $1}') | $(tree_hwm "${PID[pass-through]}") |"
    for name in "${started[@]}"; do
        [ -n "${DEAD[$name]:-}" ] && continue
        flag=""
        total_bad=$(tr ' ' '\n' <<<"${BAD[$name]}" | awk '{ s += $1 } END { print s + 0 }')
        [ "$total_bad" -gt 0 ] && flag=" ($total_bad non-2xx responses!)"
        echo "| $name | ${VERSION[$name]} | ${REFUSES[$name]} | $(median <<<"${RPS[$name]}" | awk '{printf "%.0f", $1}')$flag | $(median <<<"${RATIO[$name]}" | awk '{printf "%.2f", $1}') | $(m "${CPU[$name]}") | $(median <<<"${P99[$name]}" | awk '{printf "%.2f", $1}') | $(tree_hwm "${PID[$name]}") |"
    done
    if [ -n "$CB_RPS" ]; then
        echo
        echo "Cold tokens: every request another valid token ($COLD_N distinct, round-robin), so every request is a signature check."
        echo
        echo "| proxy | cold req/s | x pass-through | x apache | CPU us/req | p99 ms |"
        echo "| --- | --- | --- | --- | --- | --- |"
        echo "| pass-through (baseline) | $(median <<<"$CB_RPS" | awk '{printf "%.0f", $1}') | 1.00 | | $(m "$CB_CPU") | $(median <<<"$CB_P99" | awk '{printf "%.2f", $1}') |"
        apache_rps=""
        [ -n "${C_RPS[apache]:-}" ] && apache_rps=$(median <<<"${C_RPS[apache]}")
        for name in "${cold[@]}"; do
            [ -n "${C_RPS[$name]:-}" ] || continue
            flag=""
            total_bad=$(tr ' ' '\n' <<<"${C_BAD[$name]}" | awk '{ s += $1 } END { print s + 0 }')
            [ "$total_bad" -gt 0 ] && flag=" ($total_bad non-2xx responses!)"
            rps=$(median <<<"${C_RPS[$name]}")
            vs_apache=""
            [ -n "$apache_rps" ] && [ "$name" != nginx ] && vs_apache=$(awk -v a="$rps" -v b="$apache_rps" 'BEGIN { printf "%.2f", a / b }')
            label=$name
            [ "$name" = portcullis ] && label="portcullis (cache off)"
            echo "| $label | $(awk -v r="$rps" 'BEGIN {printf "%.0f", r}')$flag | $(median <<<"${C_RATIO[$name]}" | awk '{printf "%.2f", $1}') | $vs_apache | $(m "${C_CPU[$name]}") | $(median <<<"${C_P99[$name]}" | awk '{printf "%.2f", $1}') |"
        done
        [ -n "$cold_cache" ] && { echo; echo "- $cold_cache"; }
    fi
    for n in "${notes[@]}"; do echo; echo "- not measured: $n"; done
} > "$results"

if [ -n "$WRITE" ]; then
    {
        echo "Peer benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, wrk -t$THREADS -c$CONNS, $WARMUP warm-up + $DURATION per run, medians of $ROUNDS rounds; load average (1, 5, 15 min) $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
        echo
        cat "$results"
    } > "$WRITE"
    echo "results written to $WRITE" >&2
fi
cat "$results"
