#!/usr/bin/env bash
# A local portcullis demo without Docker: Keycloak, a demo upstream and the gateway.
#
#   bash deploy/local/demo.sh           start everything, print the URL, run until Ctrl-C
#   bash deploy/local/demo.sh --check   start everything, check it with curl, stop, exit 0/1
#
# What it does:
#   1. cargo build --release
#   2. tests/e2e/keycloak.sh start (fetches Keycloak with Maven the first time) with
#      KEYCLOAK_PORT=8180, so the issuer is http://127.0.0.1:8180/realms/myorg
#   3. deploy/demo/upstream.py on 127.0.0.1:3000
#   4. the gateway with deploy/compose/gateway.toml plus environment overrides for the
#      local addresses (the file itself is the one docker-compose.yml uses)
#   5. waits for the gateway's /readyz, then prints how to use it
# On exit, Ctrl-C or TERM it stops everything it started, by PID.
#
# Needs: cargo, python3, curl, Java 17+ (and Maven for the first Keycloak fetch).
#
# Environment (all optional):
#   DEMO_BIN       (unset) a portcullis binary to run instead of building the release one
#   KEYCLOAK_PORT  (8180)  Keycloak HTTP port; the issuer is http://127.0.0.1:$KEYCLOAK_PORT/realms/myorg
#   GATEWAY_PORT   (8080)  the gateway
#   ADMIN_PORT     (9090)  the gateway's admin listener (/healthz /readyz /metrics)
#   UPSTREAM_PORT  (3000)  deploy/demo/upstream.py
#   READY_TIMEOUT  (90)    seconds to wait for the gateway's /readyz
#   Plus everything tests/e2e/keycloak.sh reads (PORTCULLIS_CACHE, JAVA_HOME, ...).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CONFIG="$REPO_ROOT/deploy/compose/gateway.toml"
KEYCLOAK_SH="$REPO_ROOT/tests/e2e/keycloak.sh"

KEYCLOAK_PORT="${KEYCLOAK_PORT:-8180}"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
ADMIN_PORT="${ADMIN_PORT:-9090}"
UPSTREAM_PORT="${UPSTREAM_PORT:-3000}"
READY_TIMEOUT="${READY_TIMEOUT:-90}"

KC_URL="http://127.0.0.1:$KEYCLOAK_PORT"
ISSUER="$KC_URL/realms/myorg"
GW_URL="http://127.0.0.1:$GATEWAY_PORT"
ADMIN_URL="http://127.0.0.1:$ADMIN_PORT"
TOKEN_URL="$ISSUER/protocol/openid-connect/token"

MODE=run
case "${1:-}" in
    "") ;;
    --check) MODE=check ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

say() { printf 'demo: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

for tool in cargo python3 curl; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required but not installed"
done

port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}
for p in "$KEYCLOAK_PORT" "$GATEWAY_PORT" "$ADMIN_PORT" "$UPSTREAM_PORT"; do
    port_free "$p" || die "port 127.0.0.1:$p is in use (set KEYCLOAK_PORT / GATEWAY_PORT / ADMIN_PORT / UPSTREAM_PORT)"
done

cd "$REPO_ROOT"
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-demo.XXXXXX")"
export KEYCLOAK_STATE="$RUN_DIR/keycloak.env"   # a private Keycloak instance, not the default one
export KEYCLOAK_PORT
STEP_PID=""       # a long-running step run in the background (build, Keycloak start)
KC_STARTED=0
UPSTREAM_PID=""
GATEWAY_PID=""
KEEP_RUN_DIR=0
T0=$SECONDS

stop_pid() {   # stop_pid PID NAME SECONDS: TERM, wait, then KILL
    local pid="$1" name="$2" grace="$3" i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 4; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) did not stop; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    say "stopped $name (pid $pid)"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_pid "$STEP_PID" "background step" 5
    stop_pid "$GATEWAY_PID" "gateway" 15
    stop_pid "$UPSTREAM_PID" "upstream" 5
    if [[ "$KC_STARTED" == 1 || -f "$KEYCLOAK_STATE" ]]; then
        bash "$KEYCLOAK_SH" stop || true
    fi
    if [[ "$KEEP_RUN_DIR" == 1 ]]; then
        say "logs kept in $RUN_DIR"
    else
        rm -rf "$RUN_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# Runs "$@" in the background and waits, so that INT/TERM are handled at once
# (bash runs traps only after a foreground command returns).
run_step() {
    "$@" &
    STEP_PID=$!
    local rc=0
    wait "$STEP_PID" || rc=$?
    STEP_PID=""
    return "$rc"
}

show_logs() {
    KEEP_RUN_DIR=1
    local f
    for f in "$RUN_DIR"/gateway.log "$RUN_DIR"/upstream.log; do
        [[ -f "$f" ]] || continue
        say "last lines of $f:"
        tail -n 30 "$f" >&2
    done
}

# --- 1. build ---------------------------------------------------------------------------
t=$SECONDS
if [[ -n "${DEMO_BIN:-}" ]]; then
    # A binary built already (CI passes the one its tests built, to skip a release build).
    BIN="$DEMO_BIN"
    say "using $BIN (DEMO_BIN)"
else
    say "building the release binary (cargo build --release; the first build takes minutes)"
    run_step cargo build --release || die "cargo build --release failed"
    TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    BIN="$TARGET_DIR/release/portcullis"
fi
[[ -x "$BIN" ]] || die "no binary at $BIN"
say "build: $((SECONDS - t))s"

# The gateway's settings: the compose file with local addresses.
gateway_env=(
    "PORTCULLIS_SERVER__LISTEN=127.0.0.1:$GATEWAY_PORT"
    "PORTCULLIS_SERVER__ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT"
    "PORTCULLIS_SERVER__PUBLIC_URL=$GW_URL"
    "PORTCULLIS_OIDC__ISSUER=$ISSUER"
    "PORTCULLIS_UPSTREAM__URL=http://127.0.0.1:$UPSTREAM_PORT"
    "PORTCULLIS_SESSION__STORE=cookie"
)
env "${gateway_env[@]}" "$BIN" check -c "$CONFIG" >&2 || die "the configuration is invalid"

# --- 2. Keycloak ------------------------------------------------------------------------
t=$SECONDS
say "starting Keycloak on $KC_URL (tests/e2e/keycloak.sh; 15-60 s)"
KC_STARTED=1
run_step bash "$KEYCLOAK_SH" start >/dev/null || die "Keycloak did not start"
say "keycloak: $((SECONDS - t))s"

# --- 3. upstream ------------------------------------------------------------------------
python3 -u "$REPO_ROOT/deploy/demo/upstream.py" --host 127.0.0.1 --port "$UPSTREAM_PORT" \
    >"$RUN_DIR/upstream.log" 2>&1 &
UPSTREAM_PID=$!
t=$SECONDS
until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$UPSTREAM_PORT/"; do
    kill -0 "$UPSTREAM_PID" 2>/dev/null || { show_logs; die "the upstream exited"; }
    ((SECONDS - t < 20)) || { show_logs; die "the upstream did not answer within 20s"; }
    sleep 0.2
done

# --- 4. gateway -------------------------------------------------------------------------
t=$SECONDS
env "${gateway_env[@]}" "$BIN" serve -c "$CONFIG" >"$RUN_DIR/gateway.log" 2>&1 &
GATEWAY_PID=$!

# --- 5. readiness -----------------------------------------------------------------------
while :; do
    if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
        show_logs
        die "the gateway exited"
    fi
    kill -0 "$UPSTREAM_PID" 2>/dev/null || { show_logs; die "the upstream exited"; }
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$ADMIN_URL/readyz" || true)"
    [[ "$code" == 200 ]] && break
    if ((SECONDS - t >= READY_TIMEOUT)); then
        show_logs
        die "the gateway was not ready after ${READY_TIMEOUT}s (last /readyz status: ${code:-none})"
    fi
    sleep 0.25
done
say "gateway ready: $((SECONDS - t))s (total $((SECONDS - T0))s)"

# --- checks -----------------------------------------------------------------------------
FAILED=0
expect() {   # expect NAME WANT GOT
    if [[ "$2" == "$3" ]]; then
        say "ok   $1 -> $3"
    else
        say "FAIL $1 -> $3 (expected $2)"
        FAILED=1
    fi
}
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" || true; }

# Logs a user in the way a browser does (cookies, redirects, Keycloak's login form)
# and prints "<status> <X-Auth-User>" for each PATH fetched afterwards.
browser_login() {   # browser_login USER PASSWORD PATH...
    python3 - "$GW_URL" "$@" <<'EOF'
import html, http.cookiejar, json, re, sys, urllib.error, urllib.parse, urllib.request

base, user, password, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]


class LocalhostPolicy(http.cookiejar.DefaultCookiePolicy):
    # Keycloak marks its cookies Secure even over http; browsers still send them to
    # localhost / 127.0.0.1 (a "potentially trustworthy" origin), Python does not.
    def return_ok_secure(self, cookie, request):
        return True


jar = http.cookiejar.CookieJar(LocalhostPolicy())
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
hdrs = {"Accept": "text/html"}

page = opener.open(urllib.request.Request(base + "/", headers=hdrs), timeout=20).read().decode()
m = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page) or re.search(
    r'<form[^>]*action="([^"]+)"[^>]*id="kc-form-login"', page)
if not m:
    sys.exit("no Keycloak login form on the page the gateway redirected to")
action = html.unescape(m.group(1))
form = urllib.parse.urlencode({"username": user, "password": password, "credentialId": ""}).encode()
opener.open(urllib.request.Request(action, data=form, headers=hdrs), timeout=20).read()

for path in paths:
    req = urllib.request.Request(base + path, headers={"Accept": "application/json"})
    try:
        resp = opener.open(req, timeout=20)
        body = json.loads(resp.read().decode())
        ident = {k.lower(): v for k, v in body.get("identity", {}).items()}
        print(resp.status, ident.get("x-auth-user", "-"))
    except urllib.error.HTTPError as e:
        print(e.code, "-")
EOF
}

run_checks() {
    local token body code out

    expect "GET /api/public (anonymous)" 200 "$(status "$GW_URL/api/public")"
    expect "GET /api/private (anonymous)" 401 "$(status "$GW_URL/api/private")"
    expect "GET /api/private (anonymous browser: login = deny)" 401 \
        "$(status -H 'Accept: text/html' "$GW_URL/api/private")"
    code="$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Accept: text/html' "$GW_URL/" || true)"
    expect "GET / (anonymous browser) redirects to Keycloak" "302 $ISSUER/protocol/openid-connect/auth" "${code%%\?*}"

    body="$(curl -s --max-time 10 -u test_api_client:test-api-secret \
        -d grant_type=client_credentials -d scope=test_api_access "$TOKEN_URL" || true)"
    token="$(printf '%s' "$body" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])' 2>/dev/null || true)"
    if [[ -z "$token" ]]; then
        say "FAIL client-credentials token from $TOKEN_URL: ${body:0:300}"
        FAILED=1
        return
    fi
    expect "GET /api/private-scoped (token with test_api_access)" 200 \
        "$(status -H "Authorization: Bearer $token" "$GW_URL/api/private-scoped")"
    out="$(curl -s --max-time 10 -H "Authorization: Bearer $token" -H 'Accept: application/json' \
        "$GW_URL/api/private-scoped/items?x=1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
i = {k.lower(): v for k, v in d["identity"].items()}
print(d["path"], i.get("x-auth-user", "-"))' 2>/dev/null || true)"
    expect "upstream sees the path and X-Auth-User" \
        "/api/private-scoped/items?x=1 service-account-test_api_client" "$out"
    expect "GET /api/private-scoped (forged X-Auth-User, no token)" 401 \
        "$(status -H 'X-Auth-User: alice' "$GW_URL/api/private-scoped")"

    body="$(curl -s --max-time 10 -u test_api_client:test-api-secret \
        -d grant_type=client_credentials "$TOKEN_URL" || true)"
    token="$(printf '%s' "$body" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])' 2>/dev/null || true)"
    expect "GET /api/private-scoped (token without the scope)" 403 \
        "$(status -H "Authorization: Bearer $token" "$GW_URL/api/private-scoped")"

    out="$(browser_login alice alice / /admin/ 2>&1 | tr '\n' ' ' || true)"
    expect "browser login alice/alice, then / and /admin/" "200 alice 200 alice " "$out"
    out="$(browser_login bob bob / /admin/ 2>&1 | tr '\n' ' ' || true)"
    expect "browser login bob/bob, then / and /admin/" "200 bob 403 - " "$out"
}

if [[ "$MODE" == check ]]; then
    t=$SECONDS
    run_checks
    say "checks: $((SECONDS - t))s"
    if [[ "$FAILED" != 0 ]]; then
        show_logs
        die "some checks failed"
    fi
    say "all checks passed in $((SECONDS - T0))s; stopping"
    exit 0
fi

cat <<EOF

  portcullis demo is running.

    Gateway:   $GW_URL                 (open it in a browser)
    Admin:     $ADMIN_URL/readyz  /healthz  /metrics
    Keycloak:  $KC_URL                 (admin console: admin / admin)
    Upstream:  http://127.0.0.1:$UPSTREAM_PORT  (deploy/demo/upstream.py; shows the headers it gets)

  Users (realm myorg):
    alice / alice   gateway roles admin, user   (may open /admin/)
    bob   / bob     gateway role user           (gets 403 on /admin/)

  Machine client (client credentials):
    TOKEN=\$(curl -s -u test_api_client:test-api-secret -d grant_type=client_credentials \\
        -d scope=test_api_access $TOKEN_URL \\
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    curl -i $GW_URL/api/public                                          # 200
    curl -i $GW_URL/api/private                                         # 401
    curl -i -H "Authorization: Bearer \$TOKEN" $GW_URL/api/private-scoped  # 200

  Logs: $RUN_DIR/gateway.log, $RUN_DIR/upstream.log
  Press Ctrl-C to stop everything.

EOF

# Run until interrupted or until the gateway or the upstream exits.
while kill -0 "$GATEWAY_PID" 2>/dev/null && kill -0 "$UPSTREAM_PID" 2>/dev/null; do
    sleep 1 &
    STEP_PID=$!
    wait "$STEP_PID" || true
    STEP_PID=""
done
show_logs
die "the gateway or the upstream exited"
