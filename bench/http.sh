#!/usr/bin/env bash
# HTTP throughput and latency of the gateway on the fake adapter, next to a
# bare actix-web server answering the same paths with the same JSON
# (bench/baseline). See docs/PERFORMANCE.md.
#
#   bench/http.sh                       # 3 rounds of 10 s per run, 64 connections
#   DURATION=30s ROUNDS=3 bench/http.sh
#
# Settings (environment): DURATION (wrk -d, default 10s), WARMUP (default 2s,
# not recorded), CONNECTIONS (default 64), THREADS (wrk -t, default 2),
# ROUNDS (default 3), QUIET_WAIT (seconds to wait for an idle machine before
# each run, default 30), SKIP_BUILD=1 (use the binaries already in
# target/release), GATEWAY_BIN / BASELINE_BIN (other binaries to measure,
# e.g. experimental builds). WAGATE__SERVER__WORKERS and BASELINE_WORKERS
# pass through (default for both: one worker per CPU).
#
# Needs: cargo, python3 (JWKS file server, JSON parsing), curl, and wrk
# (installed with apt-get when missing and run as root).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
ISSUER=https://bench.wagate.invalid
AUDIENCE=wagate
ORG=bench
CONTACT=14155550123@s.whatsapp.net

log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'bench/http.sh: %s\n' "$*" >&2; exit 1; }

for tool in cargo python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing wrk (apt-get)"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
    else
        die "wrk is required (Debian/Ubuntu: apt-get install wrk)"
    fi
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building release binaries"
    cargo build --release -p wagate -p wagate-bench-baseline >&2
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
GATEWAY=${GATEWAY_BIN:-$TARGET_DIR/release/wagate}
BASELINE=${BASELINE_BIN:-$TARGET_DIR/release/wagate-bench-baseline}
MINT=$TARGET_DIR/release/wagate-bench-mint-jwt
for bin in "$GATEWAY" "$BASELINE" "$MINT"; do
    [ -x "$bin" ] || die "$bin missing (build without SKIP_BUILD=1)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wagate-bench.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # URL NAME
    local i
    for i in $(seq 1 200); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    tail -n 20 "$WORK"/*.log >&2 2>/dev/null || true
    die "$2 did not answer at $1"
}

json_field() { # FIELD < JSON
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# --- the JWKS the gateway trusts: the public half of the rsa-1 test key ---
JWKS_PORT=$(free_port)
mkdir -p "$WORK/jwks"
python3 - "$ROOT/crates/auth/tests/keys/rsa-1.jwk.json" >"$WORK/jwks/jwks.json" <<'EOF'
import json, sys
print(json.dumps({"keys": [json.load(open(sys.argv[1]))]}))
EOF
python3 -m http.server "$JWKS_PORT" --bind 127.0.0.1 --directory "$WORK/jwks" \
    >"$WORK/jwks.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$JWKS_PORT/jwks.json" "JWKS server"

# --- the gateway, on the fake adapter and a fresh database ---
GW_PORT=$(free_port)
GW="http://127.0.0.1:$GW_PORT"
unset RUST_LOG
export WAGATE__SERVER__BIND=127.0.0.1:$GW_PORT
export WAGATE__DATABASE__URL=sqlite://$WORK/wagate.db
export WAGATE__LOG__LEVEL=warn
export WAGATE__WHATSAPP__ADAPTER=fake
# The benchmark measures throughput, not the per-credential limit (one key
# and one token drive every request), nor the per-session WhatsApp pace.
export WAGATE__LIMITS__REQUESTS_PER_SECOND=0
export WAGATE__LIMITS__WHATSAPP_CALLS_PER_MINUTE=0
export WAGATE__AUTH__JWT__JWKS_URL=http://127.0.0.1:$JWKS_PORT/jwks.json
export WAGATE__AUTH__JWT__ISSUER=$ISSUER
export WAGATE__AUTH__JWT__AUDIENCE=$AUDIENCE

KEY=$("$GATEWAY" api-key create --org "$ORG" --name bench \
    --capabilities read,send,manage,admin --json | json_field key)
"$GATEWAY" serve >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
wait_http "$GW/healthz" "gateway"
wait_http "$GW/readyz" "gateway (ready: database and JWKS)"

AUTH="Authorization: Bearer $KEY"
SESSION=$(curl -fsS -X POST "$GW/api/v1/sessions" -H "$AUTH" \
    -H 'Content-Type: application/json' -d '{"name":"bench"}' | json_field id)
curl -fsS -o /dev/null -X POST "$GW/api/v1/sessions/$SESSION/connect" -H "$AUTH"
curl -fsS -o /dev/null "$GW/api/v1/sessions/$SESSION/qr" -H "$AUTH" # the fake phone scans it
STATUS=$(curl -fsS "$GW/api/v1/sessions/$SESSION" -H "$AUTH" | json_field status)
[ "$STATUS" = connected ] || die "session $SESSION is $STATUS, not connected"

JWT=$("$MINT" --key "$ROOT/crates/auth/tests/keys/rsa-1.key.pem" --kid rsa-1 --alg RS256 \
    --org "$ORG" --role owner --iss "$ISSUER" --aud "$AUDIENCE")
PICTURE_PATH=/api/v1/sessions/$SESSION/contacts/$CONTACT/picture
SESSION_PATH=/api/v1/sessions/$SESSION
curl -fsS -o /dev/null "$GW$PICTURE_PATH" -H "Authorization: Bearer $JWT" \
    || die "the gateway refused the RS256 JWT"

# --- the baseline ---
BL_PORT=$(free_port)
BL="http://127.0.0.1:$BL_PORT"
"$BASELINE" "127.0.0.1:$BL_PORT" >"$WORK/baseline.log" 2>&1 &
BL_PID=$!
PIDS+=("$BL_PID")
wait_http "$BL$PICTURE_PATH" "baseline"

# Same body from both, or the comparison means nothing.
GW_BODY=$(curl -fsS "$GW$PICTURE_PATH" -H "$AUTH")
BL_BODY=$(curl -fsS "$BL$PICTURE_PATH")
[ "$GW_BODY" = "$BL_BODY" ] || die "bodies differ: gateway $GW_BODY, baseline $BL_BODY"

mib() { # PID FIELD: a /proc/PID/status memory field in MiB
    awk -v k="$2:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$1/status"
}
GW_RSS_IDLE=$(mib "$GW_PID" VmRSS)

# --- load ---
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %.0f %.0f %.0f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end
EOF

RESULTS=$WORK/results.tsv
: >"$RESULTS"
NCPU=$(nproc)
TICKS=$(getconf CLK_TCK)

# CPU ticks: busy ticks of the whole machine; user+system ticks of one process.
machine_busy() { awk '/^cpu /{print $2+$3+$4+$9; exit}' /proc/stat; }
machine_total() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat; }
process_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# Waits (up to QUIET_WAIT seconds, default 30) until the machine is idle
# (under 10% busy over one second), so runs do not share the CPUs with
# someone else's build; the busy share of other processes during each run
# is reported either way.
wait_quiet() {
    local deadline=$((SECONDS + ${QUIET_WAIT:-30})) b0 t0 b1 t1
    while :; do
        b0=$(machine_busy); t0=$(machine_total); sleep 1
        b1=$(machine_busy); t1=$(machine_total)
        [ $(((b1 - b0) * 100)) -lt $(((t1 - t0) * 10)) ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "machine still busy ($(((b1 - b0) * 100 / (t1 - t0)))%), measuring anyway"
            return 0
        fi
    done
}

run() { # ROUND NAME SERVER_PID URL [HEADER]
    local round=$1 name=$2 pid=$3 url=$4 out b0 s0 t0 b1 s1 t1 wrk_cpu other
    shift 4
    local args=(-t "$THREADS" -c "$CONNECTIONS" -s "$WORK/report.lua")
    if [ $# -gt 0 ]; then args+=(-H "$1"); fi
    wait_quiet
    wrk "${args[@]}" -d "$WARMUP" "$url" >/dev/null
    b0=$(machine_busy); s0=$(process_ticks "$pid"); t0=$(machine_total)
    # bash's `time` gives wrk's own CPU seconds (user + system).
    { TIMEFORMAT='%3U %3S'; time wrk "${args[@]}" -d "$DURATION" "$url" >"$WORK/wrk.out"; } 2>"$WORK/wrk.time"
    b1=$(machine_busy); s1=$(process_ticks "$pid"); t1=$(machine_total)
    out=$(grep '^RESULT ' "$WORK/wrk.out") || die "wrk failed on $name: $(cat "$WORK/wrk.out")"
    wrk_cpu=$(awk -v hz="$TICKS" '{printf "%d", ($1 + $2) * hz}' "$WORK/wrk.time")
    # Share of all CPUs used by anything other than this server and wrk.
    other=$(awk -v b=$((b1 - b0)) -v s=$((s1 - s0)) -v w="$wrk_cpu" -v t=$((t1 - t0)) \
        'BEGIN { o = (b - s - w) / t * 100; if (o < 0) o = 0; printf "%.0f", o }')
    # round name rps p50_us p99_us max_us non2xx socket_errors server_cpu% other_busy%
    local server_cpu
    server_cpu=$(awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) -v n="$NCPU" 'BEGIN { printf "%.0f", s / t * n * 100 }')
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "${out#RESULT }" "$server_cpu" "$other" | tr ' ' '\t' >>"$RESULTS"
    log "$(printf 'round %s %-26s req/s p50_us p99_us max_us non2xx sockerr: %s  server %s%% CPU, others %s%%' \
        "$round" "$name" "${out#RESULT }" "$server_cpu" "$other")"
}

log "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION (after $WARMUP warm-up), $ROUNDS rounds, baseline/gateway alternating"
for round in $(seq 1 "$ROUNDS"); do
    run "$round" baseline:picture "$BL_PID" "$BL$PICTURE_PATH"
    run "$round" gateway:picture_api_key "$GW_PID" "$GW$PICTURE_PATH" "$AUTH"
    run "$round" baseline:picture "$BL_PID" "$BL$PICTURE_PATH"
    run "$round" gateway:picture_jwt_rs256 "$GW_PID" "$GW$PICTURE_PATH" "Authorization: Bearer $JWT"
    run "$round" baseline:session "$BL_PID" "$BL$SESSION_PATH"
    run "$round" gateway:session_api_key "$GW_PID" "$GW$SESSION_PATH" "$AUTH"
done

# --- report ---
MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
REV=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then REV="$REV+changes"; fi
echo
echo "wagate HTTP benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $NCPU CPUs (${MODEL:-unknown}), $REV"
echo "wrk $(wrk --version 2>&1 | head -n1 | awk '{print $2}') -t$THREADS -c$CONNECTIONS -d$DURATION per run, $ROUNDS rounds, baseline and gateway alternating; both servers with their default workers (one per CPU)"
echo "memory: gateway RSS $GW_RSS_IDLE MiB before the load (fake adapter, 1 session), $(mib "$GW_PID" VmRSS) MiB after, peak $(mib "$GW_PID" VmHWM) MiB; baseline peak $(mib "$BL_PID" VmHWM) MiB"
python3 - "$RESULTS" <<'EOF'
import statistics, sys
from collections import defaultdict

runs = defaultdict(list)
for line in open(sys.argv[1]):
    rnd, name, rps, p50, p99, mx, non2xx, sockerr, cpu, other = line.rstrip("\n").split("\t")
    runs[name].append((float(rps), float(p50), float(p99), float(mx),
                       int(non2xx) + int(sockerr), float(cpu), float(other)))

def agg(name):
    r = runs[name]
    # Medians over rounds, so one round disturbed by another process does not
    # decide the figure; the per-run lines above show every round.
    return dict(rps=statistics.median(x[0] for x in r), p50=statistics.median(x[1] for x in r),
                p99=statistics.median(x[2] for x in r), errors=sum(x[4] for x in r),
                cpu=statistics.median(x[5] for x in r), other=max(x[6] for x in r))

def ms(us):
    return f"{us / 1000:.2f} ms"

rows = [
    ("GET picture, API key", "gateway:picture_api_key", "baseline:picture", 0.60),
    ("GET picture, RS256 JWT", "gateway:picture_jwt_rs256", "baseline:picture", 0.45),
    ("GET session, API key", "gateway:session_api_key", "baseline:session", None),
]
print()
print(f"{'route':<23} {'server':<8} {'req/s':>8} {'p50':>8} {'p99':>8} {'vs base':>7} {'CPU':>5} {'others':>6} {'errors':>6}")
failed = []
noisy = 0.0
for label, gw, bl, target in rows:
    b, g = agg(bl), agg(gw)
    ratio = g["rps"] / b["rps"]
    noisy = max(noisy, b["other"], g["other"])
    for who, a, shown in (("baseline", b, ""), ("gateway", g, f"{ratio:.0%}")):
        print(f"{label if who == 'baseline' else '':<23} {who:<8} {a['rps']:>8.0f} {ms(a['p50']):>8} "
              f"{ms(a['p99']):>8} {shown:>7} {a['cpu']:>4.0f}% {a['other']:>5.0f}% {a['errors']:>6}")
    if target is not None and ratio < target:
        failed.append(f"{label}: {ratio:.0%} of the baseline's req/s (target >= {target:.0%})")
    if g["p99"] >= 5000:
        failed.append(f"{label}: p99 {ms(g['p99'])} (target < 5 ms)")
    if g["errors"]:
        failed.append(f"{label}: {g['errors']} errors or non-2xx answers")
print()
print("req/s, p50, p99, CPU: medians over rounds (CPU: the server's CPU time, 100% = one core);")
print("vs base: gateway req/s / baseline req/s; others: worst share of all CPUs used by other")
print("processes during a run; errors: non-2xx answers + socket errors, all runs.")
print("targets: picture >= 60% of the baseline's req/s with an API key, >= 45% with an RS256 JWT;")
print("gateway p99 < 5 ms.")
if noisy > 5:
    print(f"WARNING: other processes used up to {noisy:.0f}% of the CPUs during a run; figures are noisy.")
if failed:
    print("MISSED:")
    for f in failed:
        print("  - " + f)
else:
    print("all targets met")
EOF
