# Sourced by the benchmark scripts before anything else.
#
#   need "DEBIAN PACKAGES" TOOL...
#
# Goes on when every TOOL is on the PATH. Otherwise installs the packages with apt-get when
# run as root on Debian, or says what to install and exits.
need() {
    local packages=$1 tool missing=()
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        apt-get update -qq && apt-get install -y -qq $packages >/dev/null && return 0
    fi
    echo "missing: ${missing[*]} (Debian: apt-get install $packages)" >&2
    exit 1
}
