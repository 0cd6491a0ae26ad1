#!/usr/bin/env bash
# scripts/scale-out.sh: N echo-server instances on N loopback ports behind one front address,
# balanced by HAProxy (the default) or by an nftables DNAT rule in the kernel.
#
#   scripts/scale-out.sh [--via haproxy|nft] N [--model M] [--front HOST:PORT]
#                        [--stats HOST:PORT] [--server-args "ARGS"] [--bin PATH] [-- COMMAND...]
#
# Our first design note's "many single-threaded instances, each on its own port, behind a
# layer-4 load balancer", on one machine: each instance is a separate `echo-server` process
# (default `--model event-loop`, one thread) bound to 127.0.0.1:0, so the kernel picks its port.
#
# --via haproxy (default): HAProxy (deploy/haproxy.cfg, filled in here) listens on the front
#   address (default 127.0.0.1:7070; its statistics page on --stats, default 127.0.0.1:7071),
#   spreads connections round robin and health-checks every instance with an echo. Talk to it
#   from a second terminal: `socat - TCP:127.0.0.1:7070`.
# --via nft: the script first moves into a private network namespace of its own (`unshare -n`,
#   loopback only, so nothing touches the host's network), then starts the instances there and
#   loads one nftables rule: new connections to the front address are DNATed to the instances'
#   ports in turn (`numgen inc mod N`). No process sits in between, and nothing checks health.
#   Needs root (CAP_NET_ADMIN); otherwise it says "needs root (network namespace)" and exits 2.
#   Talk to it by entering the namespace: the script prints the `nsenter` command line, e.g.
#   `nsenter --target PID --net socat - TCP:127.0.0.1:7070`.
#
# -- COMMAND...: once everything is up, run COMMAND (inside the namespace with --via nft), then
#   stop everything and exit with COMMAND's status. COMMAND finds in its environment
#   RAWLOOP_FRONT (host:port), RAWLOOP_BACKENDS and RAWLOOP_BACKEND_PIDS (space-separated, in
#   instance order echo0, echo1, ...).
#
# When an instance dies the others and the balancer keep running, and the script says what
# happens next: HAProxy's check takes the dead one out; the DNAT rule keeps sending every Nth
# new connection to its closed port, where it is refused. The script stops when the balancer
# dies, when no instance is left, or on Ctrl-C / SIGTERM: HAProxy first, then SIGTERM to every
# instance (each drains and prints its final stats line, printed here, so you can see how the
# connections were spread).
# --bin runs that echo-server binary instead of building target/release/echo-server (for
# measurements: the binary cannot change between runs).
# Needs haproxy (package haproxy), or for --via nft: nft (nftables), ip (iproute2), unshare and
# nsenter (util-linux), and root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

ORIGINAL_ARGS=("$@")
VIA=haproxy
N=""
MODEL=event-loop
FRONT=127.0.0.1:7070
STATS=127.0.0.1:7071
SERVER_ARGS=""
SERVER=""
COMMAND=()

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --via) VIA="$2"; shift 2 ;;
        --model) MODEL="$2"; shift 2 ;;
        --front) FRONT="$2"; shift 2 ;;
        --stats) STATS="$2"; shift 2 ;;
        --server-args) SERVER_ARGS="$2"; shift 2 ;;
        --bin) SERVER="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; COMMAND=("$@"); break ;;
        -*) usage >&2; die "unknown option $1" ;;
        *) [[ -z "$N" ]] || die "N given twice"; N="$1"; shift ;;
    esac
done
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 64 ]] || { usage >&2; die "N must be 1..64"; }
[[ "$FRONT" =~ ^[0-9.]+:[0-9]+$ ]] || die "--front must be IPv4:PORT, not $FRONT"
case "$VIA" in
    haproxy) need haproxy haproxy ;;
    nft) need nft nftables; need ip iproute2; need unshare util-linux ;;
    *) die "--via must be haproxy or nft, not $VIA" ;;
esac
needs_met

# The namespace the nft path runs in: entered here, by re-running this script under
# `unshare --net` (unshare(2) then exec: same pid, so `nsenter --target $$` reaches it). The
# build happens first, outside, where cargo can still reach the network if it needs to.
if [[ "$VIA" == nft && -z "${RAWLOOP_SCALE_HOST_NETNS:-}" ]]; then
    if [[ "$(id -u)" != 0 ]] || ! unshare --net true 2>/dev/null; then
        say "needs root (network namespace): --via nft creates a private network namespace and"
        say "loads nftables rules in it, which takes CAP_NET_ADMIN. Run it with sudo."
        exit 2
    fi
fi
if [[ -z "$SERVER" ]]; then
    say "building echo-server (release)"
    (cd "$ROOT" && cargo build --quiet --release --bin echo-server)
    SERVER="$TARGET_DIR/release/echo-server"
fi
[[ -x "$SERVER" ]] || die "$SERVER is not an executable"
if [[ "$VIA" == nft && -z "${RAWLOOP_SCALE_HOST_NETNS:-}" ]]; then
    RAWLOOP_SCALE_HOST_NETNS="$(readlink /proc/self/ns/net)"
    export RAWLOOP_SCALE_HOST_NETNS
    exec unshare --net -- bash "${BASH_SOURCE[0]}" --bin "$SERVER" "${ORIGINAL_ARGS[@]}"
fi
if [[ "$VIA" == nft ]]; then
    # Never load rules into the network namespace we were started in.
    [[ "$(readlink /proc/self/ns/net)" != "$RAWLOOP_SCALE_HOST_NETNS" ]] ||
        die "still in the starting network namespace; refusing to load nftables rules"
    ip link set lo up
fi

WORK="$(mktemp -d -t rawloop-scale.XXXXXX)"
HAPROXY_PID=""
COMMAND_PID=""
SERVER_PIDS=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [[ -n "$COMMAND_PID" ]] && { kill -TERM "$COMMAND_PID" 2>/dev/null || true; }
    # HAProxy first, so no new connection reaches an instance that is shutting down.
    if [[ -n "$HAPROXY_PID" ]]; then
        kill -TERM "$HAPROXY_PID" 2>/dev/null || true
        wait "$HAPROXY_PID" 2>/dev/null || true
    fi
    for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -n "$COMMAND_PID" ]] && { wait "$COMMAND_PID" 2>/dev/null || true; }
    for ((i = 0; i < ${#SERVER_PIDS[@]}; i++)); do
        echo "echo$i: $(grep 'final=1' "$WORK/echo$i.out" | tail -n1 || echo '(no final stats)')"
    done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'echo; exit 0' INT
trap 'exit 143' TERM

# --- the instances ----------------------------------------------------------------------------
for ((i = 0; i < N; i++)); do
    # shellcheck disable=SC2086 # SERVER_ARGS is a list of words on purpose.
    "$SERVER" --model "$MODEL" --bind 127.0.0.1:0 $SERVER_ARGS \
        >"$WORK/echo$i.out" 2>"$WORK/echo$i.err" &
    SERVER_PIDS+=($!)
done
BACKENDS=()
for ((i = 0; i < N; i++)); do
    line="$(wait_for_line "$WORK/echo$i.out" '^listening on ' "${SERVER_PIDS[$i]}")" ||
        { cat "$WORK/echo$i.err" >&2; die "instance echo$i did not start"; }
    BACKENDS+=("${line#listening on }")
    say "echo$i: echo-server --model $MODEL on ${BACKENDS[$i]} (pid ${SERVER_PIDS[$i]})"
done

# --- the balancer -----------------------------------------------------------------------------
start_haproxy() {
    local line server_lines=""
    for ((i = 0; i < N; i++)); do server_lines+="    server echo$i ${BACKENDS[$i]}"$'\n'; done
    # Fill in the template line by line: {{SERVERS}} is a line of its own, replaced by N lines.
    while IFS= read -r line; do
        if [[ "$line" == "{{SERVERS}}" ]]; then
            printf '%s' "$server_lines"
        else
            line="${line//\{\{FRONT\}\}/$FRONT}"
            printf '%s\n' "${line//\{\{STATS\}\}/$STATS}"
        fi
    done <"$ROOT/deploy/haproxy.cfg" >"$WORK/haproxy.cfg"
    haproxy -c -q -f "$WORK/haproxy.cfg" || die "haproxy rejected $WORK/haproxy.cfg"
    # Process substitution, not a pipe, so that $! is HAProxy itself and not the `sed`.
    haproxy -db -f "$WORK/haproxy.cfg" 2> >(sed -u 's/^/haproxy: /' >&2) &
    HAPROXY_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/${FRONT%:*}/${FRONT##*:}") 2>/dev/null && return 0
        kill -0 "$HAPROXY_PID" 2>/dev/null || die "haproxy exited (is $FRONT or $STATS in use?)"
        sleep 0.1
    done
    die "haproxy did not listen on $FRONT within 10 s"
}

# One rule in the nat table's output hook, which sees the first packet of every connection made
# from this namespace (later packets follow the conntrack entry, both ways: the replies get the
# front address back as their source). `numgen inc mod N` counts connections, so they go to the
# instances in turn, like HAProxy's round robin; `jhash ip saddr . tcp sport mod N` would hash
# the client's address and port instead, as SO_REUSEPORT does.
start_nft() {
    local map="" port
    for ((i = 0; i < N; i++)); do
        port="${BACKENDS[$i]##*:}"
        map+="${map:+, }$i : $port"
    done
    nft -f - <<EOF || die "nft rejected the DNAT rule"
table ip rawloop_scale {
    chain output {
        type nat hook output priority -100; policy accept;
        ip daddr ${FRONT%:*} tcp dport ${FRONT##*:} dnat to 127.0.0.1 : numgen inc mod $N map { $map }
    }
}
EOF
}

# Waits for the processes to end one by one and says what each end means. Returns never: the
# script exits with COMMAND's status, or 1 when the balancer or the last instance is gone.
watch_until_done() {
    local watched=("${SERVER_PIDS[@]}") alive=$N done_pid status
    [[ -n "$HAPROXY_PID" ]] && watched+=("$HAPROXY_PID")
    [[ -n "$COMMAND_PID" ]] && watched+=("$COMMAND_PID")
    local remaining pid
    while true; do
        done_pid=""
        status=0
        wait -n -p done_pid "${watched[@]}" || status=$?
        [[ -n "$done_pid" ]] || continue
        remaining=()
        for pid in "${watched[@]}"; do [[ "$pid" == "$done_pid" ]] || remaining+=("$pid"); done
        watched=("${remaining[@]}")
        if [[ "$done_pid" == "$COMMAND_PID" ]]; then
            COMMAND_PID=""
            exit "$status"
        elif [[ "$done_pid" == "$HAPROXY_PID" ]]; then
            HAPROXY_PID=""
            die "haproxy exited with status $status; stopping everything"
        fi
        for ((i = 0; i < N; i++)); do
            [[ "${SERVER_PIDS[$i]}" == "$done_pid" ]] && say_instance_gone "$i" "$status"
        done
        alive=$((alive - 1))
        [[ "$alive" -gt 0 ]] || die "no instance left; stopping"
    done
}

say_instance_gone() {
    local how="exited with status $2"
    [[ "$2" -gt 128 ]] && how="was killed by signal $(($2 - 128))"
    say "echo$1 (pid ${SERVER_PIDS[$1]}) $how; $((alive - 1)) of $N instances left."
    if [[ "$VIA" == haproxy ]]; then
        say "  HAProxy keeps serving $FRONT: its health check takes echo$1 out, and until then a"
        say "  refused connect is retried on another instance (retries 2, option redispatch)."
    else
        say "  The DNAT rule has no health check: it still sends one new connection in $N to"
        say "  ${BACKENDS[$1]}, where nothing listens, and that connection is refused."
    fi
}

if [[ "$VIA" == haproxy ]]; then
    start_haproxy
    echo "front: $FRONT  ($N x echo-server --model $MODEL behind HAProxy, round robin)"
    echo "stats: http://$STATS/"
else
    start_nft
    echo "front: $FRONT  ($N x echo-server --model $MODEL behind an nftables DNAT rule, round robin)"
    echo "namespace: private network namespace of pid $$; enter it to connect, e.g."
    echo "  nsenter --target $$ --net socat - TCP:$FRONT"
fi

# --- run until the balancer or the last instance dies, the command ends, or a signal ----------
if [[ ${#COMMAND[@]} -gt 0 ]]; then
    # An explicit `<&0`, or bash gives a background command /dev/null as its input.
    RAWLOOP_FRONT="$FRONT" RAWLOOP_BACKENDS="${BACKENDS[*]}" \
        RAWLOOP_BACKEND_PIDS="${SERVER_PIDS[*]}" "${COMMAND[@]}" <&0 &
    COMMAND_PID=$!
else
    echo "Ctrl-C to stop."
fi
watch_until_done
