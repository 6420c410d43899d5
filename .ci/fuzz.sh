#!/usr/bin/env bash
# Fuzz stage: builds every target of fuzz/ with cargo-fuzz (libFuzzer + AddressSanitizer)
# and runs each for FUZZ_SECONDS seconds, starting from the committed corpus in
# fuzz/corpus/<target>/.
#
# Exit status: 0 when every target ran clean, or when this machine cannot build fuzzers at
# all ("fuzz stage skipped: <reason>"); 1 on any finding (crash, panic, failed assertion,
# timeout, out-of-memory), printing the reproducer's path and contents, or when the fuzz
# targets themselves do not compile.
#
# Environment:
#   FUZZ_SECONDS      seconds per target (default 60)
#   FUZZ_TARGETS      space-separated targets to run (default: all in fuzz/Cargo.toml)
#   FUZZ_TIMEOUT      seconds one input may take before it counts as a finding (default 10)
#   FUZZ_JOBS         targets fuzzed at the same time (default: the number of CPUs)
#   FUZZ_OUT          where run corpora, artifacts and logs go (default: a new temporary
#                     directory); never inside the committed corpus
#   FUZZ_TARGET_DIR   cargo target dir of the fuzz build (default: outside the checkout,
#                     $XDG_CACHE_HOME/portcullis-fuzz/target, so later runs reuse it)
#   FUZZ_CACHE_MB     size past which that target dir loses its old builds of portcullis
#                     and the fuzz targets before the build, and is emptied if that is
#                     not enough (default 4096)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

t0=$(date +%s)
seconds=${FUZZ_SECONDS:-60}
timeout=${FUZZ_TIMEOUT:-10}
target_dir=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-fuzz/target}

skip() {
    echo "fuzz stage skipped: $*"
    exit 0
}

# --- What the machine has -------------------------------------------------------------
command -v cargo >/dev/null 2>&1 || skip "cargo is not installed"
command -v rustup >/dev/null 2>&1 ||
    skip "rustup is not installed (cargo-fuzz needs a nightly or RUSTC_BOOTSTRAP toolchain)"
cxx=${CXX:-}
if [ -z "$cxx" ]; then
    for c in c++ g++ clang++; do
        if command -v "$c" >/dev/null 2>&1; then
            cxx=$c
            break
        fi
    done
fi
[ -n "$cxx" ] && command -v "$cxx" >/dev/null 2>&1 ||
    skip "no C++ compiler (libFuzzer is built from C++ source by libfuzzer-sys)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    t=$(date +%s)
    cargo install --locked cargo-fuzz >/dev/null 2>&1 ||
        skip "cargo-fuzz is not installed and 'cargo install --locked cargo-fuzz' failed"
    echo "cargo-fuzz installed in $(($(date +%s) - t))s"
fi
cargo fuzz --version

targets=${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -vx portcullis-fuzz)}
[ -n "$targets" ] || {
    echo "no fuzz targets found in fuzz/Cargo.toml" >&2
    exit 1
}

# The fuzz crate is a workspace of its own; start its lock file from the gateway's so
# both build the same dependency versions.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock

out=${FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/portcullis-fuzz.XXXXXX")}
mkdir -p "$out"
out=$(cd "$out" && pwd)
case "$out/" in
"$root"/fuzz/corpus/*) echo "FUZZ_OUT must not be inside fuzz/corpus" >&2 && exit 1 ;;
esac
echo "run corpora, artifacts and logs: $out"

# --- Build: nightly if installed, else stable with RUSTC_BOOTSTRAP=1 ------------------
fuzz() { cargo ${toolchain:+"+$toolchain"} fuzz "$@"; }

# The fuzzers are run from copies in $out/bin: the target dir may be shared with other
# checkouts, whose builds replace target/<triple>/release/<target>. The build and the copy
# hold a lock on the target dir, where flock exists.
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="$out/bin"
mkdir -p "$target_dir" "$bin_dir"
exec 9>"$target_dir/.portcullis-fuzz.lock"

build() {
    local t rc=0 target
    t=$(date +%s)
    echo "building the fuzz targets with $label (target dir $target_dir)"
    command -v flock >/dev/null 2>&1 && flock 9
    # Checkouts in other places and new toolchains build new artifacts beside the old
    # ones. Past FUZZ_CACHE_MB (default 4096), the cache first loses every build of the
    # crates a new commit rebuilds anyway (portcullis, the fuzz crate and its targets:
    # about 600 MB a set); only if that is not enough does it start over (a build from
    # nothing takes 5-13 minutes on 2 cores).
    local size_mb cap=${FUZZ_CACHE_MB:-4096} rel="$target_dir/$triple/release" name
    size_mb=$(du -sm "$target_dir" 2>/dev/null | cut -f1)
    if [ "${size_mb:-0}" -gt "$cap" ]; then
        # Every target of the fuzz crate, not just the ones FUZZ_TARGETS picks.
        for name in portcullis portcullis_fuzz $(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml); do
            rm -rf "$rel/deps/$name"-* "$rel/deps/lib$name"-* "$rel/.fingerprint/$name"-* "$rel/build/$name"-*
        done
        rm -rf "$rel/incremental"
        local before=$size_mb
        size_mb=$(du -sm "$target_dir" 2>/dev/null | cut -f1)
        echo "fuzz target dir held ${before} MB; without the builds of portcullis and its fuzz targets: ${size_mb} MB"
    fi
    if [ "${size_mb:-0}" -gt "$cap" ]; then
        echo "fuzz target dir holds ${size_mb} MB: starting it over"
        find "$target_dir" -mindepth 1 -maxdepth 1 ! -name .portcullis-fuzz.lock -exec rm -rf {} +
    fi
    (cd fuzz && fuzz build --target-dir "$target_dir") >"$out/build-$1.log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        for target in $targets; do
            ln -f "$target_dir/$triple/release/$target" "$bin_dir/$target" 2>/dev/null ||
                cp -f "$target_dir/$triple/release/$target" "$bin_dir/$target" || rc=1
        done
    fi
    command -v flock >/dev/null 2>&1 && flock -u 9
    echo "build with $label: exit $rc after $(($(date +%s) - t))s"
    return $rc
}

built=
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=nightly label=nightly
    if build nightly; then
        built=1
    else
        tail -n 20 "$out/build-nightly.log"
    fi
fi
if [ -z "$built" ]; then
    toolchain= label="stable with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
    if build stable; then
        built=1
    else
        tail -n 20 "$out/build-stable.log"
    fi
fi
if [ -z "$built" ]; then
    # Is it the toolchain or the targets? A plain check of the fuzz crate tells.
    unset RUSTC_BOOTSTRAP
    if (cd fuzz && cargo check --bins --target-dir "$target_dir/plain") >"$out/build-plain.log" 2>&1; then
        skip "no installed toolchain can build fuzzers (sanitizer runtime missing?); see $out/build-*.log"
    fi
    tail -n 40 "$out/build-plain.log"
    echo "the fuzz targets do not compile" >&2
    exit 1
fi
echo "build done after $(($(date +%s) - t0))s"

# --- Run: FUZZ_JOBS targets at a time ---------------------------------------------------
# One target: fuzz it, then write its report to $out/<target>.report and its verdict
# (0 clean, 1 finding) to $out/<target>.verdict.
run_target() {
    local target=$1 t rc found f corpus artifacts log seeds
    t=$(date +%s)
    corpus="$out/corpus/$target"
    artifacts="$out/artifacts/$target"
    log="$out/$target.log"
    mkdir -p "$corpus" "$artifacts"
    seeds=0
    if [ -d "fuzz/corpus/$target" ]; then
        cp -R "fuzz/corpus/$target/." "$corpus/"
        seeds=$(find "fuzz/corpus/$target" -type f | wc -l)
    fi
    # As `cargo fuzz run` would run it.
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0" \
        RUST_BACKTRACE=${RUST_BACKTRACE:-1} \
        "$bin_dir/$target" -max_total_time="$seconds" -timeout="$timeout" \
        -rss_limit_mb=2048 -artifact_prefix="$artifacts/" -print_final_stats=1 \
        "$corpus" >"$log" 2>&1
    rc=$?
    found=$(find "$artifacts" -type f | sort)
    {
        echo "--- $target: ${seconds}s from $seeds seed(s)"
        if [ "$rc" -eq 0 ] && [ -z "$found" ]; then
            grep -E '^(Done|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" |
                tr -s ' \n' ' '
            echo
            echo "$target: clean in $(($(date +%s) - t))s;" \
                "corpus $seeds -> $(find "$corpus" -type f | wc -l) entries (kept in $corpus)"
        else
            echo "$target: FINDING (exit $rc) after $(($(date +%s) - t))s; fuzzer output:"
            # From the first line of the report (panic, sanitizer, timeout, OOM) on.
            grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED)' "$log" |
                awk '/panicked at|==[0-9]+==ERROR|ERROR: libFuzzer|ALARM: working on the last Unit|out-of-memory/ { on = 1 } on' |
                head -n 120 | grep . || tail -n 60 "$log"
            [ -n "$found" ] || echo "$target: no reproducer was written; full log: $log"
            for f in $found; do
                echo "reproducer: $f ($(wc -c <"$f") bytes)"
                echo "  replay: $bin_dir/$target $f"
                echo "      or: (cd fuzz && cargo ${toolchain:++$toolchain }fuzz run $target $f)"
                echo "  base64: $(head -c 4096 "$f" | base64 | tr -d '\n')"
            done
        fi
    } >"$out/$target.report"
    if [ "$rc" -eq 0 ] && [ -z "$found" ]; then
        echo 0 >"$out/$target.verdict"
    else
        echo 1 >"$out/$target.verdict"
    fi
}

jobs_max=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs_max" -ge 1 ] 2>/dev/null || jobs_max=1
echo "fuzzing $(echo $targets | wc -w) target(s), ${seconds}s each, $jobs_max at a time"
t=$(date +%s)
for target in $targets; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
        wait -n
    done
    run_target "$target" &
done
wait
echo "fuzzing took $(($(date +%s) - t))s"

failed=()
for target in $targets; do
    echo
    cat "$out/$target.report" 2>/dev/null || echo "$target: no report"
    [ "$(cat "$out/$target.verdict" 2>/dev/null)" = 0 ] || failed+=("$target")
done

echo
echo "fuzz stage took $(($(date +%s) - t0))s (build included)"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz findings in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz stage: every target ran ${seconds}s without a finding"
