#!/usr/bin/env bash
# Runs the end-to-end suites against one real Keycloak:
#   bearer   tests/e2e_keycloak.rs  bearer tokens from Keycloak's token endpoint
#   browser  tests/e2e_browser.rs   browser login with Chromium (tests/e2e/browser/session.mjs)
#
#   tests/e2e/run.sh                       # both suites
#   tests/e2e/run.sh tampered              # extra arguments go to both test binaries (filters, --nocapture, ...)
#   E2E_SUITES=browser tests/e2e/run.sh    # only one suite
#
# Stages: fetch Keycloak (cached), build the test binaries, start a private Keycloak
# instance (own state file, own run dir, free ports), run the bearer suite, make sure the
# browser prerequisites are there (Chromium, the driver's node_modules), run the browser
# suite, and always stop Keycloak again on exit, whatever happened. Prints how long each
# stage took and exits non-zero if any stage fails. (Ctrl-C stops everything at once; a
# TERM sent to this script alone takes effect when the running stage's command returns,
# then Keycloak is stopped as usual.)
#
# Environment: everything tests/e2e/keycloak.sh understands (KEYCLOAK_VERSION,
# PORTCULLIS_CACHE, KEYCLOAK_START_TIMEOUT, JAVA_HOME, ...), except KEYCLOAK_STATE, which
# this script always sets to a fresh private file. Also:
#   E2E_SUITES      "bearer browser" (default), or just one of them
#   E2E_OUTPUT      where the browser suite saves screenshots (default target/e2e-output)
#   CHROMIUM_PATH   the browser (default /usr/bin/chromium; installed with apt-get when
#                   missing and running as root)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
KC_SH="$SCRIPT_DIR/keycloak.sh"
cd "$REPO_ROOT"

log() { printf 'run.sh: %s\n' "$*" >&2; }

SUITES="${E2E_SUITES:-bearer browser}"
want() { [[ " $SUITES " == *" $1 "* ]]; }
want bearer || want browser || { log "E2E_SUITES=\"$SUITES\" names no suite (bearer, browser)"; exit 2; }
CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
export CHROMIUM_PATH
BROWSER_DIR="$SCRIPT_DIR/browser"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

TIMINGS=()
STAGE="" STAGE_T0=""
stage_begin() {
    STAGE="$1" STAGE_T0="$(now)"
    printf '\n==> %s\n' "$STAGE" >&2
}
stage_end() {
    local t
    t="$(elapsed "$STAGE_T0")"
    TIMINGS+=("$(printf '%-14s %6ss' "$STAGE" "$t")")
    log "$STAGE took ${t}s"
    STAGE=""
}

RUN_T0="$(now)"
STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-e2e.XXXXXX")"
export KEYCLOAK_STATE="$STATE_DIR/keycloak.env"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n "$STAGE" ]]; then
        TIMINGS+=("$(printf '%-14s %6ss (failed)' "$STAGE" "$(elapsed "$STAGE_T0")")")
    fi
    if [[ -f "$KEYCLOAK_STATE" ]]; then
        local t
        t="$(now)"
        printf '\n==> stop\n' >&2
        "$KC_SH" stop
        TIMINGS+=("$(printf '%-14s %6ss' stop "$(elapsed "$t")")")
    fi
    rm -rf "$STATE_DIR"
    printf '\n==> timings\n' >&2
    local line
    for line in "${TIMINGS[@]}"; do printf '  %s\n' "$line" >&2; done
    printf '  %-14s %6ss\n' total "$(elapsed "$RUN_T0")" >&2
    if [[ $rc -eq 0 ]]; then log "PASSED"; else log "FAILED (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stage_begin fetch
"$KC_SH" fetch >/dev/null
stage_end

# Compile before Keycloak starts: a build error then costs no Keycloak start, and the
# test stages below measure the tests, not the compiler.
TEST_BINS=()
want bearer && TEST_BINS+=(--test e2e_keycloak)
want browser && TEST_BINS+=(--test e2e_browser)
stage_begin build
cargo test "${TEST_BINS[@]}" --no-run
stage_end

stage_begin start
"$KC_SH" start >/dev/null
# The state file is KEY=value lines (KEYCLOAK_PID, KEYCLOAK_URL, KEYCLOAK_MGMT_URL, ...).
set -a
# shellcheck disable=SC1090
. "$KEYCLOAK_STATE"
set +a
[[ -n "${KEYCLOAK_URL:-}" ]] || { log "no KEYCLOAK_URL in $KEYCLOAK_STATE"; exit 1; }
log "Keycloak pid $KEYCLOAK_PID at $KEYCLOAK_URL (log: $KEYCLOAK_LOG)"
stage_end

keycloak_log_tail() {
    log "last lines of the Keycloak log ($KEYCLOAK_LOG):"
    tail -n 30 "$KEYCLOAK_LOG" >&2 || true
}

if want bearer; then
    stage_begin bearer
    if ! cargo test --test e2e_keycloak -- --ignored --test-threads=1 "$@"; then
        log "bearer tests failed"
        keycloak_log_tail
        exit 1
    fi
    stage_end
fi

if want browser; then
    # Chromium (Debian's package) and the driver's playwright-core.
    stage_begin browser-setup
    if [[ ! -x "$CHROMIUM_PATH" ]]; then
        if [[ "$CHROMIUM_PATH" == /usr/bin/chromium && "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            log "no $CHROMIUM_PATH: installing Debian's chromium"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        fi
        [[ -x "$CHROMIUM_PATH" ]] || {
            log "no browser at $CHROMIUM_PATH: install Debian's Chromium as root ('apt-get install -y chromium') or set CHROMIUM_PATH"
            exit 1
        }
    fi
    command -v node >/dev/null 2>&1 || { log "node (Node.js 20+) is required for the browser suite: install it (https://nodejs.org or your distribution's nodejs)"; exit 1; }
    node_major="$(node -p 'process.versions.node.split(".")[0]')"
    [[ "$node_major" -ge 20 ]] || { log "Node.js 20+ is required, found $(node --version)"; exit 1; }
    if [[ ! -d "$BROWSER_DIR/node_modules/playwright-core" ]]; then
        command -v npm >/dev/null 2>&1 || { log "npm is required to install the browser driver's dependencies"; exit 1; }
        log "installing the browser driver's dependencies (npm ci in $BROWSER_DIR)"
        (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund)
    fi
    log "$("$CHROMIUM_PATH" --version 2>/dev/null || echo "$CHROMIUM_PATH"), node $(node --version)"
    stage_end

    stage_begin browser
    if ! cargo test --test e2e_browser -- --ignored --test-threads=1 "$@"; then
        log "browser tests failed; screenshots are in ${E2E_OUTPUT:-$REPO_ROOT/target/e2e-output}"
        keycloak_log_tail
        exit 1
    fi
    log "screenshots: ${E2E_OUTPUT:-$REPO_ROOT/target/e2e-output}"
    stage_end
fi
