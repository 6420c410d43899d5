#!/usr/bin/env bash
# Runs the end-to-end bearer-token suite (tests/e2e_keycloak.rs) against a real Keycloak.
#
#   tests/e2e/run.sh                 # every test
#   tests/e2e/run.sh tampered        # extra arguments go to the test binary (filters, --nocapture, ...)
#
# Stages: fetch Keycloak (cached), build the test binary, start a private Keycloak
# instance (own state file, own run dir, free ports), run the tests, and always stop
# Keycloak again on exit, whatever happened. Prints how long each stage took and exits
# non-zero if any stage fails. (Ctrl-C stops everything at once; a TERM sent to this
# script alone takes effect when the running stage's command returns, then Keycloak is
# stopped as usual.)
#
# Environment: everything tests/e2e/keycloak.sh understands (KEYCLOAK_VERSION,
# PORTCULLIS_CACHE, KEYCLOAK_START_TIMEOUT, JAVA_HOME, ...), except KEYCLOAK_STATE, which
# this script always sets to a fresh private file.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
KC_SH="$SCRIPT_DIR/keycloak.sh"
cd "$REPO_ROOT"

log() { printf 'run.sh: %s\n' "$*" >&2; }

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
    TIMINGS+=("$(printf '%-8s %6ss' "$STAGE" "$t")")
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
        TIMINGS+=("$(printf '%-8s %6ss (failed)' "$STAGE" "$(elapsed "$STAGE_T0")")")
    fi
    if [[ -f "$KEYCLOAK_STATE" ]]; then
        local t
        t="$(now)"
        printf '\n==> stop\n' >&2
        "$KC_SH" stop
        TIMINGS+=("$(printf '%-8s %6ss' stop "$(elapsed "$t")")")
    fi
    rm -rf "$STATE_DIR"
    printf '\n==> timings\n' >&2
    local line
    for line in "${TIMINGS[@]}"; do printf '  %s\n' "$line" >&2; done
    printf '  %-8s %6ss\n' total "$(elapsed "$RUN_T0")" >&2
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
# test stage below measures the tests, not the compiler.
stage_begin build
cargo test --test e2e_keycloak --no-run
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

stage_begin tests
if ! cargo test --test e2e_keycloak -- --ignored --test-threads=1 "$@"; then
    log "tests failed; last lines of the Keycloak log ($KEYCLOAK_LOG):"
    tail -n 30 "$KEYCLOAK_LOG" >&2 || true
    exit 1
fi
stage_end
