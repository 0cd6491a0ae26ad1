#!/usr/bin/env bash
# scripts/scale-bench.sh: what a layer-4 balancer costs per message, side by side: the client
# talking to echo-server directly, through an nftables DNAT rule, and through HAProxy.
#
#   scripts/scale-bench.sh [--rounds R] [--duration D] [--warmup W] [--clients "1 32"]
#                          [--backends B] [--out DIR]
#
# Four set-ups, all up at once inside a private network namespace (loopback only, so the host's
# firewall rules and other traffic stay out of the measurement):
#   direct     echo-server --model event-loop (B > 1: --model prefork --workers B);
#   conntrack  the same, in a namespace of its own whose one firewall rule (`ct state`) turns on
#              connection tracking, as most hosts' firewalls do: the part of nft's cost that
#              is connection tracking, not the DNAT itself;
#   nft        scripts/scale-out.sh --via nft B (B instances, one DNAT rule, its own namespace);
#   haproxy    scripts/scale-out.sh B (B instances behind HAProxy).
# Each round drives each set-up in turn with echo-bench ping-pong (64-byte messages, depth 1,
# one generator thread) for every client count, the order of the set-ups rotating from round to
# round; the table printed at the end holds the medians over the R rounds (default 3).
#
# Where the CPU is counted, per echoed message:
#   server   the server side's process tree, from echo-bench --server-pid: the echo-server
#            (direct, conntrack), the instances (nft), HAProxy and the instances (haproxy);
#   client   echo-bench's own CPU;
#   softirq  the ksoftirqd threads, from /proc/PID/stat over the whole run, scaled to the
#            measured window.
# The kernel's network work (TCP, loopback delivery, conntrack and the DNAT rewrite) runs in
# the syscalls of whichever process sends, or in a softirq right after them, and is charged to
# that process; only softirq work deferred to ksoftirqd is not. So the nft balancer has no
# process of its own: its cost shows as extra CPU in the client's and the server's columns,
# and `total` (server + client + softirq) is the figure to compare across set-ups.
#
# Raw results: DIR/runs.tsv and one echo-bench JSON per run (default DIR: target/scale-bench).
# Needs root (network namespaces, nftables), haproxy, nft, ip, unshare, nsenter.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

ORIGINAL_ARGS=("$@")
ROUNDS=3
DURATION=5s
WARMUP=1s
CLIENTS="1 32"
BACKENDS=1
OUT="$TARGET_DIR/scale-bench"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --warmup) WARMUP="$2"; shift 2 ;;
        --clients) CLIENTS="$2"; shift 2 ;;
        --backends) BACKENDS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument $1" ;;
    esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ && "$BACKENDS" =~ ^[1-9][0-9]?$ ]] ||
    die "--rounds and --backends must be positive numbers"

need haproxy haproxy
need nft nftables
need ip iproute2
need unshare util-linux
need nsenter util-linux
needs_met
if [[ -z "${RAWLOOP_BENCH_HOST_NETNS:-}" ]]; then
    if [[ "$(id -u)" != 0 ]] || ! unshare --net true 2>/dev/null; then
        say "needs root (network namespace): the set-ups run in private network namespaces."
        exit 2
    fi
    say "building echo-server and echo-bench (release)"
    (cd "$ROOT" && cargo build --quiet --release -p rawloop -p echo-bench)
    RAWLOOP_BENCH_HOST_NETNS="$(readlink /proc/self/ns/net)"
    export RAWLOOP_BENCH_HOST_NETNS
    exec unshare --net -- bash "${BASH_SOURCE[0]}" "${ORIGINAL_ARGS[@]}"
fi
[[ "$(readlink /proc/self/ns/net)" != "$RAWLOOP_BENCH_HOST_NETNS" ]] ||
    die "still in the starting network namespace"
ip link set lo up

SERVER="$TARGET_DIR/release/echo-server"
BENCH="$TARGET_DIR/release/echo-bench"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT"/*.json "$OUT/runs.tsv"

PIDS=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the three set-ups ------------------------------------------------------------------------
declare -A ADDR PID ENTER
DIRECT_ARGS=(--model event-loop)
[[ "$BACKENDS" == 1 ]] || DIRECT_ARGS=(--model prefork --workers "$BACKENDS")
"$SERVER" "${DIRECT_ARGS[@]}" --bind 127.0.0.1:7101 >"$OUT/direct.log" 2>&1 &
PID[direct]=$!; ADDR[direct]=127.0.0.1:7101; ENTER[direct]=""
# unshare(2) then exec, twice (unshare, then bash): the pid is the echo-server's in the end.
CONNTRACK_RULE='table ip rawloop_ct {
    chain output {
        type filter hook output priority 0; policy accept;
        ct state established accept
    }
}'
# shellcheck disable=SC2016 # $0.. are the inner shell's.
unshare --net -- bash -c 'ip link set lo up && nft -f - <<<"$1" && exec "$0" "${@:2}"' "$SERVER" \
    "$CONNTRACK_RULE" "${DIRECT_ARGS[@]}" --bind 127.0.0.1:7105 >"$OUT/conntrack.log" 2>&1 &
PID[conntrack]=$!; ADDR[conntrack]=127.0.0.1:7105
ENTER[conntrack]="nsenter --target ${PID[conntrack]} --net"
"$ROOT/scripts/scale-out.sh" --via nft "$BACKENDS" --bin "$SERVER" --front 127.0.0.1:7102 \
    >"$OUT/nft.log" 2>&1 &
PID[nft]=$!; ADDR[nft]=127.0.0.1:7102; ENTER[nft]="nsenter --target ${PID[nft]} --net"
"$ROOT/scripts/scale-out.sh" "$BACKENDS" --bin "$SERVER" --front 127.0.0.1:7103 \
    --stats 127.0.0.1:7104 >"$OUT/haproxy.log" 2>&1 &
PID[haproxy]=$!; ADDR[haproxy]=127.0.0.1:7103; ENTER[haproxy]=""
PIDS=("${PID[direct]}" "${PID[conntrack]}" "${PID[nft]}" "${PID[haproxy]}")
for setup in direct conntrack; do
    wait_for_line "$OUT/$setup.log" '^listening on ' "${PID[$setup]}" >/dev/null ||
        die "echo-server ($setup) did not start: $(cat "$OUT/$setup.log")"
done
for setup in nft haproxy; do
    wait_for_line "$OUT/$setup.log" '^Ctrl-C to stop' "${PID[$setup]}" 30 >/dev/null ||
        die "scale-out.sh --via $setup did not start: $(cat "$OUT/$setup.log")"
done

# CPU ticks (USER_HZ) of every ksoftirqd thread, summed.
ksoftirqd_ticks() {
    local total=0 pid fields
    for pid in $(pgrep '^ksoftirqd/'); do
        fields="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null)" || continue
        # Fields 14 and 15 of stat(5) (utime, stime) are the 12th and 13th after "(comm) ".
        total=$((total + $(echo "$fields" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}

# The first value of "key": in an echo-bench JSON report (its first occurrence).
json_field() { grep -m1 "\"$2\":" "$1" | sed 's/.*: *//; s/[,}]*$//'; }

# One echo-bench run against one set-up; appends a row to runs.tsv.
run_one() {
    local setup="$1" clients="$2" round="$3" json ticks_before ticks_after start end
    json="$OUT/$setup-c$clients-r$round.json"
    ticks_before="$(ksoftirqd_ticks)"
    start="$(date +%s.%N)"
    # shellcheck disable=SC2086 # ENTER is a command prefix (nsenter ...) or nothing.
    ${ENTER[$setup]} "$BENCH" --addr "${ADDR[$setup]}" --conns "$clients" --size 64 --depth 1 \
        --threads 1 --warmup "$WARMUP" --duration "$DURATION" --server-pid "${PID[$setup]}" \
        --json >"$json" 2>"$json.err" || die "echo-bench failed on $setup: $(cat "$json.err")"
    end="$(date +%s.%N)"
    ticks_after="$(ksoftirqd_ticks)"
    [[ "$(json_field "$json" ok)" == true ]] || die "echo-bench reported errors on $setup ($json)"
    local msgs window p50 p99 server client softirq
    msgs="$(json_field "$json" messages)"
    window="$(json_field "$json" window_s)"
    p50="$(json_field "$json" p50)"
    p99="$(json_field "$json" p99)"
    server="$(json_field "$json" cpu_us_per_msg)"
    client="$(json_field "$json" client_cpu_us_per_msg)"
    softirq="$(awk -v t=$((ticks_after - ticks_before)) -v hz="$(getconf CLK_TCK)" \
        -v w="$window" -v s="$start" -v e="$end" -v m="$msgs" \
        'BEGIN { printf "%.3f", t / hz * 1e6 * (w / (e - s)) / m }')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$setup" "$clients" "$round" \
        "$(json_field "$json" msgs_per_sec)" "$p50" "$p99" "$server" "$client" "$softirq" \
        >>"$OUT/runs.tsv"
    say "round $round, $clients client(s), $setup: $(tail -n1 "$OUT/runs.tsv" | cut -f4-)"
}

SETUPS=(direct conntrack nft haproxy)
for ((round = 1; round <= ROUNDS; round++)); do
    for clients in $CLIENTS; do
        for ((k = 0; k < ${#SETUPS[@]}; k++)); do
            run_one "${SETUPS[$(((k + round - 1) % ${#SETUPS[@]}))]}" "$clients" "$round"
        done
    done
done

# --- medians ----------------------------------------------------------------------------------
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column_median() { awk -F'\t' -v s="$1" -v c="$2" -v k="$3" '$1 == s && $2 == c { print $k }' \
    "$OUT/runs.tsv" | median; }
echo
echo "medians of $ROUNDS round(s), $BACKENDS backend(s), ${DURATION} windows; CPU in us per message"
echo "| clients | set-up | msg/s | p50 us | p99 us | server | client | softirq | total |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
for clients in $CLIENTS; do
    for setup in "${SETUPS[@]}"; do
        total="$(awk -F'\t' -v s="$setup" -v c="$clients" \
            '$1 == s && $2 == c { print $7 + $8 + $9 }' "$OUT/runs.tsv" | median)"
        printf '| %s | %s | %.0f | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f |\n' "$clients" "$setup" \
            "$(column_median "$setup" "$clients" 4)" "$(column_median "$setup" "$clients" 5)" \
            "$(column_median "$setup" "$clients" 6)" "$(column_median "$setup" "$clients" 7)" \
            "$(column_median "$setup" "$clients" 8)" "$(column_median "$setup" "$clients" 9)" \
            "$total"
    done
done
echo "raw runs: $OUT/runs.tsv"
