#!/usr/bin/env bash
# Real Keycloak for portcullis' end-to-end tests.
#
#   tests/e2e/keycloak.sh fetch   download + unpack the pinned Keycloak (cached)
#   tests/e2e/keycloak.sh start   start it on 127.0.0.1 with deploy/keycloak/*-realm.json
#                                 imported; waits until the realm answers, prints the URL
#   tests/e2e/keycloak.sh stop    stop the instance named in the state file, remove its run dir
#   tests/e2e/keycloak.sh status  print the state file and whether the process lives
#
# Environment (all optional):
#   KEYCLOAK_VERSION       pinned version below
#   PORTCULLIS_CACHE       cache root (default ~/.cache/portcullis); Keycloak lives in $PORTCULLIS_CACHE/keycloak
#   KEYCLOAK_STATE         state file (default ${TMPDIR:-/tmp}/portcullis-keycloak.env)
#   KEYCLOAK_PORT          HTTP port (default: a free port)
#   KEYCLOAK_MGMT_PORT     management (health) port (default: a free port)
#   KEYCLOAK_REALM_DIR     directory with *-realm.json files (default: <repo>/deploy/keycloak)
#   KEYCLOAK_START_TIMEOUT seconds to wait for readiness (default 240)
#   JAVA_OPTS_KC_HEAP      heap options (default "-Xms256m -Xmx768m")
#   JAVA_HOME / JAVA       which java to use
set -euo pipefail

KEYCLOAK_VERSION="${KEYCLOAK_VERSION:-26.7.3}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE_DIR="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/keycloak"
KC_DIST="$CACHE_DIR/keycloak-$KEYCLOAK_VERSION"
# start-dev re-augments the server (~20 s) whenever the build-time options differ
# from the last build. The result (lib/quarkus) is cached here after the first
# start and copied into later runs; Keycloak itself re-checks the options, so a
# stale cache only costs time (the stamp records version and build options).
DEV_BUILD_OPTS=(--health-enabled=true)
KC_DEV_BUILD="$CACHE_DIR/keycloak-$KEYCLOAK_VERSION.devbuild"
DEV_BUILD_STAMP="$KEYCLOAK_VERSION start-dev ${DEV_BUILD_OPTS[*]}"
STATE_FILE="${KEYCLOAK_STATE:-${TMPDIR:-/tmp}/portcullis-keycloak.env}"
REALM_DIR="${KEYCLOAK_REALM_DIR:-$REPO_ROOT/deploy/keycloak}"
START_TIMEOUT="${KEYCLOAK_START_TIMEOUT:-240}"
REALM_PROBE="${KEYCLOAK_PROBE_REALM:-myorg}"

log() { printf 'keycloak.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

java_bin() {
    if [[ -n "${JAVA:-}" ]]; then echo "$JAVA"
    elif [[ -n "${JAVA_HOME:-}" ]]; then echo "$JAVA_HOME/bin/java"
    else echo java; fi
}

check_java() {
    local j major
    j="$(java_bin)"
    if ! command -v "$j" >/dev/null 2>&1; then
        die "java not found. Install a Java 17+ runtime, e.g. 'apt-get install -y openjdk-17-jre-headless', or set JAVA_HOME."
    fi
    major="$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -n1)"
    major="${major#1.}"
    if [[ -z "$major" || "$major" -lt 17 ]]; then
        die "Keycloak $KEYCLOAK_VERSION needs Java 17 or newer, '$j' is version '${major:-unknown}'. Install e.g. 'apt-get install -y openjdk-17-jre-headless'."
    fi
}

check_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || die "'$t' is required but not installed (Debian: apt-get install -y $t)."
    done
}

cmd_fetch() {
    check_java
    if [[ -x "$KC_DIST/bin/kc.sh" && -f "$KC_DIST/.portcullis-complete" ]]; then
        log "Keycloak $KEYCLOAK_VERSION already present in $KC_DIST"
        echo "$KC_DIST"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn (Apache Maven) not found; it fetches Keycloak from Maven Central. Install it: 'apt-get install -y maven'."
    check_tools unzip
    local t0=$SECONDS zip="$CACHE_DIR/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip" tmp
    mkdir -p "$CACHE_DIR"
    if [[ ! -s "$zip" ]]; then
        log "downloading org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip with mvn"
        mvn -B -q dependency:copy \
            "-Dartifact=org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
            "-DoutputDirectory=$CACHE_DIR" -Dstyle.color=never >&2 \
            || die "mvn could not fetch org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip"
    fi
    [[ -s "$zip" ]] || die "expected $zip after mvn dependency:copy"
    tmp="$(mktemp -d "$CACHE_DIR/unpack.XXXXXX")"
    unzip -q "$zip" -d "$tmp" || { rm -rf "$tmp"; die "could not unzip $zip"; }
    [[ -x "$tmp/keycloak-$KEYCLOAK_VERSION/bin/kc.sh" ]] || { rm -rf "$tmp"; die "unexpected layout in $zip"; }
    rm -rf "$KC_DIST"
    mv "$tmp/keycloak-$KEYCLOAK_VERSION" "$KC_DIST"
    rmdir "$tmp"
    touch "$KC_DIST/.portcullis-complete"
    rm -f "$zip"   # the unpacked tree (and Maven's local repository) keep what is needed
    log "fetched Keycloak $KEYCLOAK_VERSION into $KC_DIST in $((SECONDS - t0))s"
    echo "$KC_DIST"
}

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local p i
    for i in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 30000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    die "could not find a free port"
}

read_state() {
    [[ -f "$STATE_FILE" ]] || return 1
    KEYCLOAK_PID="" KEYCLOAK_URL="" KEYCLOAK_RUN_DIR="" KEYCLOAK_LOG=""
    local k v
    while IFS='=' read -r k v; do
        case "$k" in
            KEYCLOAK_PID|KEYCLOAK_URL|KEYCLOAK_RUN_DIR|KEYCLOAK_LOG|KEYCLOAK_MGMT_URL) printf -v "$k" '%s' "$v" ;;
        esac
    done <"$STATE_FILE"
}

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

save_dev_build() {
    local src="$1" tmp
    tmp="$(mktemp -d "$CACHE_DIR/devbuild.XXXXXX")" || return 1
    cp -a "$src" "$tmp/quarkus" && printf '%s' "$DEV_BUILD_STAMP" >"$tmp/.stamp" || { rm -rf "$tmp"; return 1; }
    rm -rf "$KC_DEV_BUILD"
    mv "$tmp" "$KC_DEV_BUILD" || { rm -rf "$tmp"; return 1; }
    log "cached the dev-mode build in $KC_DEV_BUILD (later starts skip the ~20s re-augmentation)"
}

cmd_start() {
    check_java
    check_tools curl
    [[ -x "$KC_DIST/bin/kc.sh" ]] || cmd_fetch >/dev/null
    if read_state && alive "$KEYCLOAK_PID"; then
        die "a Keycloak started by this script is already running (pid $KEYCLOAK_PID, $KEYCLOAK_URL); run '$0 stop' first or set KEYCLOAK_STATE"
    fi
    shopt -s nullglob
    local realms=("$REALM_DIR"/*-realm.json)
    shopt -u nullglob
    [[ ${#realms[@]} -gt 0 ]] || die "no *-realm.json in $REALM_DIR"

    local t0=$SECONDS port mgmt run url log pid
    port="${KEYCLOAK_PORT:-$(free_port)}"
    mgmt="${KEYCLOAK_MGMT_PORT:-$(free_port)}"
    [[ "$mgmt" != "$port" ]] || mgmt="$(free_port)"
    url="http://127.0.0.1:$port"

    # The cached distribution is never modified: every run gets its own copy
    # (~190 MB, under a second), so the dev-file database, the dev-mode build
    # under lib/quarkus and data/import belong to this run only.
    run="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-keycloak.XXXXXX")"
    cp -a "$KC_DIST/." "$run/kc"
    if [[ -f "$KC_DEV_BUILD/.stamp" && "$(cat "$KC_DEV_BUILD/.stamp")" == "$DEV_BUILD_STAMP" ]]; then
        cp -a "$KC_DEV_BUILD/quarkus/." "$run/kc/lib/quarkus/"
    fi
    mkdir -p "$run/kc/data/import"
    cp "${realms[@]}" "$run/kc/data/import/"
    log="$run/keycloak.log"

    {
        echo "KEYCLOAK_PID=__pending__"
        echo "KEYCLOAK_URL=$url"
        echo "KEYCLOAK_MGMT_URL=http://127.0.0.1:$mgmt"
        echo "KEYCLOAK_RUN_DIR=$run"
        echo "KEYCLOAK_LOG=$log"
    } >"$STATE_FILE"

    log "starting Keycloak $KEYCLOAK_VERSION on $url (management on 127.0.0.1:$mgmt, run dir $run)"
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    (
        export KC_BOOTSTRAP_ADMIN_USERNAME="${KC_BOOTSTRAP_ADMIN_USERNAME:-admin}"
        export KC_BOOTSTRAP_ADMIN_PASSWORD="${KC_BOOTSTRAP_ADMIN_PASSWORD:-admin}"
        export JAVA_OPTS_KC_HEAP="${JAVA_OPTS_KC_HEAP:--Xms256m -Xmx768m}"
        j="$(java_bin)"; [[ "$j" == */* ]] && export JAVA="$j"
        cd "$run"
        exec "${launcher[@]}" "$run/kc/bin/kc.sh" start-dev \
            --import-realm \
            --http-host=127.0.0.1 \
            --http-port="$port" \
            --hostname="$url" \
            --hostname-strict=false \
            "${DEV_BUILD_OPTS[@]}" \
            --http-management-host=127.0.0.1 \
            --http-management-port="$mgmt" \
            --log-console-color=false \
            </dev/null >"$log" 2>&1
    ) &
    pid=$!
    sed -i "s/^KEYCLOAK_PID=.*/KEYCLOAK_PID=$pid/" "$STATE_FILE"

    # Readiness: poll the realm's discovery document (it exists only once the
    # realm import has finished and the HTTP listener serves requests).
    local probe="$url/realms/$REALM_PROBE/.well-known/openid-configuration" code
    while :; do
        if ! alive "$pid"; then
            log "Keycloak exited before it was ready; last lines of $log:"
            tail -n 60 "$log" >&2 || true
            cmd_stop >/dev/null 2>&1 || true
            exit 1
        fi
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$probe" || true)"
        [[ "$code" == 200 ]] && break
        if (( SECONDS - t0 >= START_TIMEOUT )); then
            log "Keycloak not ready after ${START_TIMEOUT}s (last status ${code:-none} from $probe); last lines of $log:"
            tail -n 60 "$log" >&2 || true
            cmd_stop >/dev/null 2>&1 || true
            exit 1
        fi
        sleep 0.5
    done
    if grep -q 'augmentation completed' "$log" 2>/dev/null; then save_dev_build "$run/kc/lib/quarkus" || true; fi
    log "Keycloak ready at $url after $((SECONDS - t0))s (state: $STATE_FILE)"
    echo "$url"
}

cmd_stop() {
    if ! read_state; then
        log "no state file at $STATE_FILE; nothing to stop"
        return 0
    fi
    local pid="$KEYCLOAK_PID" i
    if [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid"; then
        # With setsid the launcher leads its own process group: signal the group
        # (kc.sh and its java child), else just the pid we started.
        local target="$pid"
        if [[ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$pid" ]]; then target="-$pid"; fi
        kill -TERM -- "$target" 2>/dev/null || true
        for i in $(seq 1 60); do
            alive "$pid" || break
            sleep 0.5
        done
        if alive "$pid"; then
            log "Keycloak (pid $pid) still running after 30s; sending KILL"
            kill -KILL -- "$target" 2>/dev/null || true
            for i in $(seq 1 20); do alive "$pid" || break; sleep 0.25; done
        fi
        # reap it if it is our child (same shell), ignore otherwise
        wait "$pid" 2>/dev/null || true
        log "stopped Keycloak (pid $pid)"
    fi
    if [[ -n "$KEYCLOAK_RUN_DIR" && -d "$KEYCLOAK_RUN_DIR" && "$KEYCLOAK_RUN_DIR" == */portcullis-keycloak.* ]]; then
        rm -rf "$KEYCLOAK_RUN_DIR"
    fi
    rm -f "$STATE_FILE"
}

cmd_status() {
    if ! read_state; then echo "not running (no $STATE_FILE)"; return 1; fi
    cat "$STATE_FILE"
    if alive "$KEYCLOAK_PID"; then echo "running"; else echo "not running"; return 1; fi
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
