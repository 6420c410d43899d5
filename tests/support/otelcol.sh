#!/usr/bin/env bash
# A real OpenTelemetry Collector for tests/traces.rs, built from Go modules and cached
# outside the checkout.
#
#   tests/support/otelcol.sh            build it if missing, print the binary's path
#   tests/support/otelcol.sh --cached   print the path if it is already built, else exit 1
#
# The collector is made by the OpenTelemetry Collector Builder (ocb, itself installed with
# `go install`) from the manifest below: the OTLP receiver (HTTP and gRPC), the debug
# exporter and the contrib file exporter, all of one release. Modules come from the Go
# module proxy; nothing else is downloaded. The first build takes about two minutes;
# later calls only check that the cached binary answers and return at once.
#
# Environment (all optional):
#   OTELCOL_VERSION    collector release (default below; core and contrib modules alike)
#   PORTCULLIS_CACHE   cache root (default ~/.cache/portcullis); the collector lives in
#                      $PORTCULLIS_CACHE/otelcol/<version>/otelcol-portcullis
#   GO                 the go command (default: `go` on PATH, else /usr/local/go/bin/go)
set -euo pipefail

# v0.161.0: the newest release at which the contrib file exporter resolves from the
# module proxy together with the core modules.
OTELCOL_VERSION="${OTELCOL_VERSION:-v0.161.0}"
CACHE_DIR="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/otelcol/$OTELCOL_VERSION"
BIN="$CACHE_DIR/otelcol-portcullis"

log() { printf 'otelcol.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

manifest() {
    cat <<EOF
dist:
  name: otelcol-portcullis
  description: OpenTelemetry Collector for the portcullis trace tests
  version: "$OTELCOL_VERSION"
  output_path: "$1"
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver $OTELCOL_VERSION
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/debugexporter $OTELCOL_VERSION
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter $OTELCOL_VERSION
EOF
}

# The binary counts as built when it runs and lists the components the tests use
# (a half-written or foreign file does not).
usable() {
    [[ -x "$BIN" ]] || return 1
    local listed
    listed="$("$BIN" components 2>/dev/null)" || return 1
    grep -q 'name: otlp' <<<"$listed" && grep -q 'name: file' <<<"$listed"
}

if [[ "${1:-}" == "--cached" ]]; then
    usable || exit 1
    printf '%s\n' "$BIN"
    exit 0
fi
[[ $# -eq 0 ]] || die "unknown argument: $1 (usage: otelcol.sh [--cached])"

if usable; then
    printf '%s\n' "$BIN"
    exit 0
fi

GO="${GO:-$(command -v go || true)}"
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
fi
[[ -n "$GO" ]] || die "the collector is built with Go, but no go command was found (set GO=/path/to/go)"

mkdir -p "$CACHE_DIR"
# One build at a time per cache directory; a second caller waits and then finds it built.
exec 9>"$CACHE_DIR/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if usable; then
    printf '%s\n' "$BIN"
    exit 0
fi

t0=$SECONDS
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--buildvcs=false}"
OCB="$CACHE_DIR/tools/builder"
if [[ ! -x "$OCB" ]]; then
    log "installing the collector builder $OTELCOL_VERSION"
    GOBIN="$CACHE_DIR/tools" "$GO" install "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION" >&2 \
        || die "go install go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION failed"
fi

work="$(mktemp -d "$CACHE_DIR/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
manifest "$work/src" >"$work/manifest.yaml"
log "building the collector $OTELCOL_VERSION (otlp receiver, debug and file exporters); this takes a few minutes once"
"$OCB" --config "$work/manifest.yaml" >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    die "the collector build failed (log above)"
}
cp "$work/manifest.yaml" "$CACHE_DIR/manifest.yaml"
mv -f "$work/src/otelcol-portcullis" "$BIN.tmp"
mv -f "$BIN.tmp" "$BIN"
usable || die "the built collector at $BIN does not list the otlp receiver and file exporter"
log "built $BIN in $((SECONDS - t0))s"
printf '%s\n' "$BIN"
