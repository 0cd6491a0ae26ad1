# shellcheck shell=bash
# scripts/lib.sh: helpers shared by the scripts of this directory. Sourced, never run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Every message names the script that prints it (`scale-out.sh: ...`), and every script checks
# the tools it needs before it starts anything, so a missing tool is one clear message, never a
# half-started set-up to clean up:
#
#   need haproxy haproxy          # tool, then the Debian/Ubuntu package that provides it
#   need nft nftables
#   needs_met                     # exits 2 listing every missing tool, if any
#
# Exit statuses shared by the scripts: 0 done, 1 something failed, 2 cannot run here (a missing
# tool, no root for a network namespace), 130/143 stopped by SIGINT/SIGTERM.

# haproxy, nft and ip live in /usr/sbin on Debian, which is not on an ordinary user's PATH.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# The name used in messages: the sourcing script's file name.
SCRIPT_NAME="$(basename "${BASH_SOURCE[1]:-${0}}")"
# Tools found missing by `need`, as "tool (package)" words, reported by `needs_met`.
MISSING_TOOLS=()

say() { echo "$SCRIPT_NAME: $*" >&2; }
die() { say "$*"; exit 1; }

# need TOOL PACKAGE: records TOOL as missing unless it is on the PATH. PACKAGE is the Debian and
# Ubuntu package that provides it (the one CI installs).
need() {
    command -v "$1" >/dev/null 2>&1 || MISSING_TOOLS+=("$1 (package $2)")
}

# needs_met: exits 2 with one message if any `need` found its tool missing.
needs_met() {
    [[ ${#MISSING_TOOLS[@]} -eq 0 ]] && return 0
    say "missing: $(printf '%s, ' "${MISSING_TOOLS[@]}" | sed 's/, $//')"
    local packages
    packages="$(printf '%s\n' "${MISSING_TOOLS[@]}" | sed -n 's/.*(package \(.*\))$/\1/p' |
        sort -u | paste -sd' ' -)"
    say "install them first, e.g. Debian/Ubuntu: sudo apt-get install $packages"
    exit 2
}

# wait_for_line FILE PATTERN PID [SECONDS]: prints the first line of FILE matching the extended
# regular expression PATTERN, waiting up to SECONDS (default 10) for it. Fails if PID exits
# first or time runs out (without printing anything).
wait_for_line() {
    local file="$1" pattern="$2" pid="$3" tries=$((${4:-10} * 10)) line
    for ((; tries > 0; tries--)); do
        line="$(grep -E -m1 -- "$pattern" "$file" 2>/dev/null || true)"
        [[ -n "$line" ]] && { printf '%s\n' "$line"; return 0; }
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
