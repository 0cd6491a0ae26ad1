#!/usr/bin/env bash
# scripts/scale-out.sh: N echo-server instances on loopback ports, HAProxy in front of them.
#
#   scripts/scale-out.sh N [--model M] [--front HOST:PORT] [--stats HOST:PORT]
#                          [--server-args "ARGS"] [--bin PATH]
#
# Our first design note's "many single-threaded instances, each on its own port, behind a
# layer-4 load balancer", on one machine: each instance is a separate `echo-server` process
# (default `--model event-loop`, one thread), bound to 127.0.0.1:0 so the kernel picks its port;
# HAProxy (deploy/haproxy.cfg, filled in here) listens on the front address and spreads
# connections round robin, health-checking every instance. Try it from another terminal:
#
#   socat - TCP:127.0.0.1:7070                  # type lines, they come back
#   target/release/echo-bench --addr 127.0.0.1:7070 --conns 64 --size 64 --duration 5s
#   curl -s '127.0.0.1:7071/;csv' | cut -d, -f1,2,5,8,18   # HAProxy's per-server counters
#
# Ctrl-C stops HAProxy, then every instance (SIGTERM: each drains and prints its final stats
# line, printed here, so you can see how the connections were spread).
# --bin runs that echo-server binary instead of building target/release/echo-server (for
# measurements: the binary cannot change between runs).
# Needs haproxy (Debian/Ubuntu: apt-get install haproxy).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

N=""
MODEL=event-loop
FRONT=127.0.0.1:7070
STATS=127.0.0.1:7071
SERVER_ARGS=""
SERVER=""

usage() {
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}
die() { echo "scale-out.sh: $*" >&2; exit 1; }
say() { echo "scale-out.sh: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --front) FRONT="$2"; shift 2 ;;
        --stats) STATS="$2"; shift 2 ;;
        --server-args) SERVER_ARGS="$2"; shift 2 ;;
        --bin) SERVER="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option $1" ;;
        *) [[ -z "$N" ]] || die "N given twice"; N="$1"; shift ;;
    esac
done
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 64 ]] || { usage >&2; die "N must be 1..64"; }
command -v haproxy >/dev/null 2>&1 ||
    die "haproxy not found. Install it: Debian/Ubuntu 'apt-get install haproxy', Fedora 'dnf install haproxy'."

if [[ -z "$SERVER" ]]; then
    say "building echo-server (release)"
    (cd "$ROOT" && cargo build --quiet --release --bin echo-server)
    SERVER="$TARGET_DIR/release/echo-server"
fi
[[ -x "$SERVER" ]] || die "$SERVER is not an executable"

WORK="$(mktemp -d -t rawloop-scale.XXXXXX)"
HAPROXY_PID=""
SERVER_PIDS=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # HAProxy first, so no new connection reaches an instance that is shutting down.
    if [[ -n "$HAPROXY_PID" ]]; then
        kill -TERM "$HAPROXY_PID" 2>/dev/null || true
        wait "$HAPROXY_PID" 2>/dev/null || true
    fi
    for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
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
SERVER_LINES=""
for ((i = 0; i < N; i++)); do
    # shellcheck disable=SC2086 # SERVER_ARGS is a list of words on purpose.
    "$SERVER" --model "$MODEL" --bind 127.0.0.1:0 $SERVER_ARGS \
        >"$WORK/echo$i.out" 2>"$WORK/echo$i.err" &
    SERVER_PIDS+=($!)
done
for ((i = 0; i < N; i++)); do
    addr=""
    for _ in $(seq 100); do
        addr="$(sed -n 's/^listening on //p' "$WORK/echo$i.out" | head -n1)"
        [[ -n "$addr" ]] && break
        kill -0 "${SERVER_PIDS[$i]}" 2>/dev/null ||
            { cat "$WORK/echo$i.err" >&2; die "instance echo$i exited"; }
        sleep 0.1
    done
    [[ -n "$addr" ]] || die "instance echo$i did not print 'listening on' within 10 s"
    say "echo$i: echo-server --model $MODEL on $addr (pid ${SERVER_PIDS[$i]})"
    SERVER_LINES+="    server echo$i $addr"$'\n'
done

# --- HAProxy ----------------------------------------------------------------------------------
# Fill in the template line by line: {{SERVERS}} is a line of its own, replaced by N lines.
while IFS= read -r line; do
    if [[ "$line" == "{{SERVERS}}" ]]; then
        printf '%s' "$SERVER_LINES"
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
    (exec 3<>"/dev/tcp/${FRONT%:*}/${FRONT##*:}") 2>/dev/null && break
    kill -0 "$HAPROXY_PID" 2>/dev/null || die "haproxy exited (is $FRONT or $STATS in use?)"
    sleep 0.1
done

echo "front: $FRONT  ($N x echo-server --model $MODEL behind HAProxy, round robin)"
echo "stats: http://$STATS/"
echo "Ctrl-C to stop."
# Returns when any instance or HAProxy exits (or on Ctrl-C, through the trap).
wait -n "$HAPROXY_PID" "${SERVER_PIDS[@]}" || true
say "a process exited on its own; stopping everything"
exit 1
