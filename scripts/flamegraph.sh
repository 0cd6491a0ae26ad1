#!/usr/bin/env bash
# scripts/flamegraph.sh: profile one echo-server model under load and draw its flamegraph.
#
#   scripts/flamegraph.sh [--model M] [--seconds S] [--out FILE] [--minwidth PCT]
#                         [--call-graph dwarf|fp] [--server-args "ARGS"] [--keep]
#                         [--] [echo-bench args...]
#
# What it does, in order:
#   1. builds `echo-server` with the `profiling` cargo profile (release + debug symbols) and
#      RUSTFLAGS="-C force-frame-pointers=yes" (a cargo profile cannot set rustflags on stable),
#      and `echo-bench` with `--release`;
#   2. starts `echo-server --model M --bind 127.0.0.1:0 --syscall-stats` and reads its port from
#      the first stdout line (`listening on <addr>`);
#   3. drives it with `echo-bench` for S seconds plus a warm-up (default bench arguments below;
#      any argument the script does not know is passed to echo-bench);
#   4. after the warm-up, records the server with
#      `perf record -e cpu-clock -F 999 --call-graph dwarf -p PID -- sleep S`
#      (cpu-clock is a software event: it works in VMs where hardware counters do not;
#      `--call-graph fp` walks frame pointers instead: 30x less data, but stacks stop at glibc);
#   5. stops the server with SIGTERM and prints its final stats line, whose `syscalls_per_msg`
#      field is the server's own count of the syscalls the flamegraph shows (docs/profiling.md);
#   6. writes the flamegraph with inferno (perf script | inferno-collapse-perf |
#      inferno-flamegraph) to --out, by default target/flame-M.svg (inside the build directory,
#      which git ignores), and prints its path.
#
# The server and the load generator are killed on any exit (trap), Ctrl-C included.
# Needs perf (Debian: apt-get install linux-perf; Ubuntu: linux-tools-$(uname -r)) and, to see
# kernel frames (the syscalls), kernel.perf_event_paranoid <= 1 or root. inferno is installed
# with `cargo install inferno` when missing, which needs network access (crates.io).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

MODEL=reactor-pool
SECONDS_TO_RECORD=5
WARMUP=1
OUT=""
MINWIDTH=0.1
CALL_GRAPH=dwarf
SERVER_ARGS=""
KEEP=0
BENCH_ARGS=()

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --seconds) SECONDS_TO_RECORD="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --minwidth) MINWIDTH="$2"; shift 2 ;;
        --call-graph) CALL_GRAPH="$2"; shift 2 ;;
        --server-args) SERVER_ARGS="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; BENCH_ARGS+=("$@"); break ;;
        *) BENCH_ARGS+=("$1"); shift ;;
    esac
done
OUT="${OUT:-$TARGET_DIR/flame-$MODEL.svg}"
mkdir -p "$(dirname "$OUT")"
if [[ ${#BENCH_ARGS[@]} -eq 0 ]]; then
    # Ping-pong on 32 connections, 64-byte messages: a syscall-bound load, which is what an
    # echo server is. One bench thread leaves the other core(s) to the server.
    BENCH_ARGS=(--conns 32 --size 64 --depth 1 --threads 1)
fi

# --- tools ------------------------------------------------------------------------------------
# Ubuntu ships perf as linux-tools-$(uname -r), Fedora as perf.
need perf linux-perf
needs_met
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v inferno-flamegraph >/dev/null 2>&1; then
    say "inferno not found: running 'cargo install inferno' (once, a few minutes, needs network)"
    cargo install inferno || die "'cargo install inferno' failed (no network access?)"
fi
paranoid="$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo 2)"
if [[ "$(id -u)" != 0 && "$paranoid" -gt 1 ]]; then
    say "kernel.perf_event_paranoid=$paranoid: kernel frames (the syscalls) will be missing."
    say "  to see them: sudo sysctl kernel.perf_event_paranoid=1"
fi

# --- build ------------------------------------------------------------------------------------
say "building echo-server (profile 'profiling', frame pointers) and echo-bench (release)"
(cd "$ROOT" && RUSTFLAGS="${RUSTFLAGS:-} -C force-frame-pointers=yes" \
    cargo build --quiet --profile profiling --bin echo-server)
(cd "$ROOT" && cargo build --quiet --release -p echo-bench)
SERVER="$TARGET_DIR/profiling/echo-server"
BENCH="$TARGET_DIR/release/echo-bench"

# --- processes and cleanup --------------------------------------------------------------------
WORK="$(mktemp -d -t rawloop-flame.XXXXXX)"
SERVER_PID=""
LOAD_PID=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [[ -n "$LOAD_PID" ]] && kill "$LOAD_PID" 2>/dev/null || true
    # A second signal makes the server exit at once, so this never waits for a drain.
    [[ -n "$SERVER_PID" ]] && kill -TERM "$SERVER_PID" 2>/dev/null &&
        kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    if [[ "$KEEP" == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck disable=SC2086 # SERVER_ARGS is a list of words on purpose.
"$SERVER" --model "$MODEL" --bind 127.0.0.1:0 --syscall-stats $SERVER_ARGS \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do
    grep -q '^listening on ' "$WORK/server.out" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; die "echo-server exited"; }
    sleep 0.1
done
ADDR="$(sed -n 's/^listening on //p' "$WORK/server.out" | head -n1)"
[[ -n "$ADDR" ]] || die "echo-server did not print 'listening on' within 10 s"
say "echo-server --model $MODEL (pid $SERVER_PID) on $ADDR"

# The fallback load: a single-threaded Python ping-pong over many connections. It is far
# slower than echo-bench, so the server idles more; use it only to get a first picture.
python_load() {
    python3 - "$ADDR" "$1" <<'EOF'
import selectors, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
deadline = time.time() + float(sys.argv[2])
msg = b"x" * 64
sel = selectors.DefaultSelector()
for _ in range(32):
    s = socket.create_connection((host, int(port)))
    s.setblocking(False)
    s.send(msg)
    sel.register(s, selectors.EVENT_READ, [0])
n = 0
while time.time() < deadline:
    for key, _ in sel.select(0.1):
        got = key.fileobj.recv(65536)
        if not got:
            sys.exit("server closed a connection")
        key.data[0] += len(got)
        if key.data[0] >= len(msg):
            key.data[0] -= len(msg)
            n += 1
            key.fileobj.send(msg)
print(f"python load: {n} round trips")
EOF
}

# echo-bench warms up for 1 s (its --warmup default), then measures for --duration: the
# recording below (after our own 1 s warm-up) ends inside its measured window.
LOAD_SECONDS=$((SECONDS_TO_RECORD + 2))
if "$BENCH" --help 2>&1 | grep -q -- '--addr'; then
    say "load: echo-bench ${BENCH_ARGS[*]} --duration ${LOAD_SECONDS}s"
    "$BENCH" --addr "$ADDR" "${BENCH_ARGS[@]}" --duration "${LOAD_SECONDS}s" \
        --server-pid "$SERVER_PID" >"$WORK/bench.out" 2>&1 &
else
    say "echo-bench is not usable yet: falling back to a Python ping-pong loop (32 conns, 64 B)"
    python_load "$((LOAD_SECONDS + 1))" >"$WORK/bench.out" 2>&1 &
fi
LOAD_PID=$!
sleep "$WARMUP"
kill -0 "$LOAD_PID" 2>/dev/null || { cat "$WORK/bench.out" >&2; die "the load generator exited early"; }

# --- record -----------------------------------------------------------------------------------
# prefork serves in child processes: record the parent and every child it forked.
PIDS="$SERVER_PID"
children="$(pgrep -P "$SERVER_PID" | paste -sd, - || true)"
[[ -n "$children" ]] && PIDS="$PIDS,$children"
say "recording pid(s) $PIDS for ${SECONDS_TO_RECORD}s"
perf record -q -e cpu-clock -F 999 --call-graph "$CALL_GRAPH" -p "$PIDS" -o "$WORK/perf.data" \
    -- sleep "$SECONDS_TO_RECORD" 2>"$WORK/perf.err" ||
    { cat "$WORK/perf.err" >&2; die "perf record failed"; }

# --- stop, report -----------------------------------------------------------------------------
wait "$LOAD_PID" || say "the load generator exited with status $? (see below)"
LOAD_PID=""
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || say "echo-server exited with status $?"
SERVER_PID=""
echo "--- load generator"
cat "$WORK/bench.out"
echo "--- echo-server final stats"
grep 'final=1' "$WORK/server.out" || say "no final stats line (see $WORK/server.err)"

# --- draw -------------------------------------------------------------------------------------
say "folding stacks (perf script can take a minute on dwarf call graphs)"
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf >"$WORK/stacks.folded"
# perf script prints each cpu-clock sample with its period in nanoseconds, and
# inferno-collapse-perf weighs stacks by it: the counts are nanoseconds of CPU time.
cpu_ms="$(awk '{ n += $NF } END { printf "%d", n / 1e6 }' "$WORK/stacks.folded")"
[[ "$cpu_ms" -gt 0 ]] || die "perf recorded no samples"
inferno-flamegraph --minwidth "$MINWIDTH" --countname ns --hash \
    --title "echo-server --model $MODEL" \
    --subtitle "perf cpu-clock 999 Hz, ${SECONDS_TO_RECORD}s, ${CALL_GRAPH} stacks, load: ${BENCH_ARGS[*]}" \
    <"$WORK/stacks.folded" >"$OUT"
say "$cpu_ms ms of CPU in ${SECONDS_TO_RECORD}s, $(du -h "$OUT" | cut -f1)"
echo "wrote $OUT"
