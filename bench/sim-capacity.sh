#!/usr/bin/env bash
# wa-sim's capacity: N concurrent client connections (default 10,000) to a
# release `wa-sim`, each through the Noise handshake to its pair-device IQ,
# all held open at once. The clients are the capacity test
# (crates/whatsapp-sim/tests/capacity.rs) in another process, dialing the
# simulator through WA_SIM_ADDR. See docs/PERFORMANCE.md.
#
#   bench/sim-capacity.sh            # N = 10000
#   bench/sim-capacity.sh 2000
#   SKIP_BUILD=1 bench/sim-capacity.sh
#
# Settings (environment): HOLD (seconds to hold all connections open while
# the simulator's memory is read, default 10); PROFILE (cargo profile of
# the client process, default release); CLIENT (an already built capacity
# test binary to run instead of `cargo test`); SKIP_BUILD=1 (use the
# binaries already built).
#
# Each connection costs a descriptor on both sides: both processes raise
# their soft open-files limit to the hard one (`ulimit -n`), which must be
# above N plus a few hundred.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
N=${1:-10000}
HOLD=${HOLD:-10}
PROFILE=${PROFILE:-release}
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive number" >&2; exit 1; }

log() { printf '>> %s\n' "$*" >&2; }

ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((N + 256)) ]; then
    echo "the open-files limit ($(ulimit -n)) is too low for $N connections" >&2
    exit 1
fi

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building wa-sim (release) and the capacity test ($PROFILE)"
    cargo build --release -p wa-sim >&2
    [ -n "${CLIENT:-}" ] || cargo test --profile "$PROFILE" -p wagate-whatsapp-sim --test capacity --no-run >&2
fi
client() {
    if [ -n "${CLIENT:-}" ]; then "$CLIENT" --nocapture
    else cargo test --profile "$PROFILE" -q -p wagate-whatsapp-sim --test capacity -- --nocapture; fi
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wa-sim-capacity.XXXXXX")
SIM_PID=""
cleanup() {
    [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADDR=127.0.0.1:$PORT
cp "$TARGET_DIR/release/wa-sim" "$WORK/wa-sim"
"$WORK/wa-sim" --listen "$ADDR" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "http://$ADDR/admin/health" 2>/dev/null && break
    sleep 0.05
done
status() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }
connections() { curl -fsS "http://$ADDR/admin/health" | python3 -c 'import json, sys; print(json.load(sys.stdin)["connections"])'; }
rss0=$(status "$SIM_PID" VmRSS)

log "dialing $N connections to wa-sim on $ADDR (64 handshakes at a time)"
start=$(date +%s.%N)
WA_SIM_ADDR=$ADDR WA_SIM_CONNECTIONS=$N WA_SIM_HOLD_SECS=$HOLD client >"$WORK/client.log" 2>&1 &
CLIENT_PID=$!
held=""
while kill -0 "$CLIENT_PID" 2>/dev/null; do
    c=$(connections 2>/dev/null || echo 0)
    if [ "$c" -ge "$N" ] && [ -z "$held" ]; then
        held=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        sleep 2
        rss1=$(status "$SIM_PID" VmRSS); hwm1=$(status "$SIM_PID" VmHWM)
        thr1=$(status "$SIM_PID" Threads); fd1=$(fds "$SIM_PID"); cpu1=$(cpu_s "$SIM_PID")
        c1=$(connections)
    fi
    sleep 0.2
done
if ! wait "$CLIENT_PID"; then
    cat "$WORK/client.log" >&2
    echo "the capacity test failed" >&2
    exit 1
fi
[ -n "$held" ] || { cat "$WORK/client.log" >&2; echo "never saw $N connections" >&2; exit 1; }
grep -E 'handshaken|test result' "$WORK/client.log" >&2 || true

REV=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then REV="$REV + uncommitted changes"; fi
echo
echo "wa-sim capacity — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $REV; clients: the capacity test (${CLIENT:-$PROFILE})"
awk -v n="$N" -v c="$c1" -v t="$held" -v r0="$rss0" -v r1="$rss1" -v h="$hwm1" -v th="$thr1" -v fd="$fd1" -v cpu="$cpu1" 'BEGIN {
    printf "%d connections open at once (health: %d) %s s after the first dial\n", n, c, t
    printf "wa-sim RSS %.1f MiB idle -> %.0f MiB holding them (peak %.0f MiB): %.1f KiB per connection\n", r0 / 1024, r1 / 1024, h / 1024, (r1 - r0) / n
    printf "wa-sim: %d threads, %d open descriptors, %s s of CPU for the handshakes\n", th, fd, cpu
}'
