#!/usr/bin/env bash
# Events and webhooks: delivery latency, throughput, a backlog with the
# receiver down, a hanging receiver beside a healthy one, 100 hanging
# webhooks of five other organizations, and the writer's cost of fan-out. The release
# gateway on the fake adapter, loopback receivers. See docs/PERFORMANCE.md
# ("Events and webhooks") and docs/events.md.
#
#   bench/events.sh                    # ~20 min after the build today (the (c) drain
#                                      # alone ~7 min); ~5 min if the targets were met
#   SKIP_BUILD=1 bench/events.sh       # use target/release/wagate as it is
#   RATE=400 BACKLOG=20000 bench/events.sh
#
# What it measures, against the targets of docs/events.md ("Performance"):
#
#   (a) event committed -> webhook received, at RATE (200) session.status
#       events a second for PACE_SECONDS (30 s, after WARMUP 3 s): the
#       receiver's arrival time minus the event's occurredAt (same clock;
#       occurredAt has millisecond resolution, so figures are up to 1 ms
#       high). Events come from disconnect/connect cycles of SESSIONS linked
#       sessions on the fake adapter (disconnect: one event, connect:
#       connecting + connected). Target: p99 <= 50 ms.
#   (d) the same, with a second webhook whose receiver accepts connections
#       and never answers (every attempt waits webhooks.timeout, 10 s):
#       the healthy webhook's p99. Target: <= 2x its p99 alone (a).
#   (e) the same as (a), while ATTACK_ORGS (5) other organizations have
#       ATTACK_HOOKS (20) webhooks each (100) to the receiver that never
#       answers, every one with two webhook.test deliveries queued (and
#       retried): the healthy webhook's p99. Target: <= 2x its p99 alone
#       (a). Each attacking organization holds its share of the delivery
#       slots (webhooks.max_in_flight / 8) with hanging sends throughout.
#   (b) deliveries a second to one receiver that answers at once: a backlog
#       of at least SUSTAIN (30,000) events queued to a new webhook with
#       POST /webhooks/{id}/replay, from the replay request to the last
#       arrival (the dispatcher alone, not limited by how fast events can be
#       made); and, for the record, a live run (wrk making events as fast
#       as the API takes them for CHURN_SECONDS, 20 s, one webhook):
#       events made a second, deliveries a second, and the delay to deliver
#       the rest once the load stops. Target: >= 2,000 a second.
#   (c) BACKLOG (100,000) pending deliveries with the receiver down
#       (connection refused): every event of the log replayed to a webhook
#       whose port has no listener, DOWN (10) s of failed attempts, then the
#       receiver starts on that port. The gateway's RSS (VmRSS) before the
#       replay, and its peak during the down time and the drain (sampled
#       every 0.2 s); the drain rate from the receiver's start to the last
#       delivery. Targets: <= 64 MiB more RSS, >= 2,000 a second.
#   (f) the single writer's cost of fan-out, for the record: wrk making
#       events as fast as the API takes them for FANOUT_SECONDS (15 s),
#       first with no webhook, then with the organization at its cap of 25
#       webhooks (webhooks.max_per_org) all wanting every event ("*",
#       pointed at the hanging receiver so that sending costs next to
#       nothing: what is measured is queuing, 25 delivery rows per event in
#       the event's transaction). Events made a second, calls a second and
#       their p50/p99, and delivery rows written a second, each way; and
#       that a 26th webhook is refused (409 limit_reached).
#
# The retry schedule is shortened (webhooks.retry_schedule =
# RETRY_SCHEDULE, default "0s,1s,1s,1s,1s,1s,1s,1s": eight attempts, one
# second apart, +-20 % jitter) so that deliveries that failed while the
# receiver was down are due again within a second or so of its return;
# with the default schedule (5 s, then 5 min, ...) the drain would wait
# for the schedule, not for the gateway.
#
# Receivers: bench/events/receiver.py (asyncio, standard library; answers
# 204 at once, records the arrival time and the body; its capacity on one
# keep-alive connection is measured with wrk first and printed). Event
# generation and queries: bench/events/driver.py; the wrk script:
# bench/events/churn.lua. The gateway's database is only read, read-only,
# to count events and pending deliveries.
#
# Settings (environment): RATE, PACE_SECONDS, WARMUP, SESSIONS (default
# 32), ATTACK_ORGS, ATTACK_HOOKS, FANOUT_SECONDS,
# SUSTAIN, CHURN_SECONDS, CHURN_CONNECTIONS (wrk -c, default 8),
# BACKLOG, DOWN, RETRY_SCHEDULE, DRAIN_TIMEOUT (s, default 900: a drain not
# over by then is reported with the rate so far),
# QUIET_WAIT (s to wait for an idle machine before starting, default 60),
# SKIP_BUILD=1, GATEWAY_BIN (another binary), KEEP=1 (keep the work folder:
# database, logs). WAGATE__SERVER__WORKERS passes through.
#
# Shared setup (work folder, cleanup, free ports, waiting for HTTP): bench/lib.sh.
#
# Needs: cargo, python3 (standard library only), curl, wrk (installed with
# apt-get when missing and run as root).
set -euo pipefail

BENCH=events
. "$(dirname "$0")/lib.sh"

RATE=${RATE:-200}
PACE_SECONDS=${PACE_SECONDS:-30}
WARMUP=${WARMUP:-3}
SESSIONS=${SESSIONS:-32}
SUSTAIN=${SUSTAIN:-30000}
CHURN_SECONDS=${CHURN_SECONDS:-20}
CHURN_THREADS=2
CHURN_CONNECTIONS=${CHURN_CONNECTIONS:-8}
BACKLOG=${BACKLOG:-100000}
DOWN=${DOWN:-10}
RETRY_SCHEDULE=${RETRY_SCHEDULE:-0s,1s,1s,1s,1s,1s,1s,1s}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-900}
ATTACK_ORGS=${ATTACK_ORGS:-5}
ATTACK_HOOKS=${ATTACK_HOOKS:-20}
FANOUT_SECONDS=${FANOUT_SECONDS:-15}
# webhooks.max_per_org and the share of webhooks.max_in_flight (64) one
# organization may hold: the gateway's defaults.
MAX_PER_ORG=25
ORG_SLOTS=8
ORG=bench

need_tools cargo python3 curl
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing wrk (apt-get)"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
    else
        die "wrk is required (Debian/Ubuntu: apt-get install wrk)"
    fi
fi
[ "$SESSIONS" -ge $((2 * CHURN_CONNECTIONS)) ] \
    || die "SESSIONS ($SESSIONS) must be at least 2 x CHURN_CONNECTIONS ($CHURN_CONNECTIONS)"

if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${GATEWAY_BIN:-}" ]; then
    log "building the release gateway"
    cargo build --release -p wagate >&2
fi
SOURCE_BIN=${GATEWAY_BIN:-$TARGET_DIR/release/wagate}
[ -x "$SOURCE_BIN" ] || die "$SOURCE_BIN missing (build without SKIP_BUILD=1)"

bench_work

# The tree the binary was (presumably) built from, read now: others may commit meanwhile.
REV=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then REV="$REV + uncommitted changes"; fi
[ -z "${GATEWAY_BIN:-}" ] || REV="$REV (GATEWAY_BIN=$GATEWAY_BIN)"

# A private copy: a rebuild of target/release during the run changes nothing.
GW_BIN=$WORK/wagate
cp "$SOURCE_BIN" "$GW_BIN"
DRIVER=$ROOT/bench/events/driver.py
RECEIVER=$ROOT/bench/events/receiver.py
driver() { python3 "$DRIVER" "$@"; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
machine_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8; exit}' /proc/stat; }
machine_total() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8; exit}' /proc/stat; }
TICKS=$(getconf CLK_TCK)
NCPU=$(nproc)

# Waits (up to QUIET_WAIT s) for the machine to be idle (under 10 % busy
# over one second), so the run does not share the CPUs with a build.
wait_quiet() {
    local deadline=$((SECONDS + ${QUIET_WAIT:-60})) b0 t0 b1 t1
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

# Per phase: the gateway's CPU (100 % = one core) and the whole machine's
# busy share, between phase_start and phase_end.
phase_start() { P_G0=$(cpu_ticks "$GW_PID"); P_B0=$(machine_busy); P_T0=$(machine_total); }
phase_end() { # NAME
    local g1 b1 t1
    g1=$(cpu_ticks "$GW_PID"); b1=$(machine_busy); t1=$(machine_total)
    printf '%s\t%s\t%s\n' "$1" \
        "$(awk -v g=$((g1 - P_G0)) -v t=$((t1 - P_T0)) -v n="$NCPU" 'BEGIN { printf "%.0f", t ? g / t * n * 100 : 0 }')" \
        "$(awk -v b=$((b1 - P_B0)) -v t=$((t1 - P_T0)) 'BEGIN { printf "%.0f", t ? b / t * 100 : 0 }')" \
        >>"$WORK/cpu.tsv"
}
: >"$WORK/cpu.tsv"

# Results, one "name<TAB>json" line each, for the report.
RESULTS=$WORK/results.tsv
: >"$RESULTS"
record() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }

start_receiver() { # PORT MODE NAME: prints the pid
    python3 "$RECEIVER" "$1" "$2" >"$WORK/receiver-$3.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$1/__stats" "receiver $3"
    echo "$pid"
}

wait_quiet

# --- receivers ---
OK_PORT=$(free_port)
HANG_PORT=$(free_port)
start_receiver "$OK_PORT" ok ok >/dev/null
start_receiver "$HANG_PORT" hang hang >/dev/null
OK=127.0.0.1:$OK_PORT

# The receiver's own capacity, one keep-alive connection, one request at a
# time (as the gateway sends to one webhook).
cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"cursor":"7","data":{"lastError":null,"previous":"connecting","status":"connected"},"id":"evt_01M8JH7MZ95AWC2VRSVVSM0889","occurredAt":"2026-11-29T02:12:50.273Z","orgId":"bench","sessionId":"sess_01M8JH75C1SSGBYM0VW6MQZGFQ","type":"session.status"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["webhook-id"] = "evt_01M8JH7MZ95AWC2VRSVVSM0889"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.0f %.0f\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99)))
end
EOF
RCV_CAP=$(wrk -t1 -c1 -d3s -s "$WORK/post.lua" "http://$OK/hook" | awk '/^RESULT/ {print $2, $3, $4}')
curl -fsS -o /dev/null "http://$OK/__reset"
log "receiver alone, one connection: req/s p50_us p99_us = $RCV_CAP"

# --- the gateway ---
GW_PORT=$(free_port)
GW=127.0.0.1:$GW_PORT
DB=$WORK/wagate.db
unset RUST_LOG
export WAGATE__SERVER__BIND=$GW
export WAGATE__DATABASE__URL=sqlite://$DB
export WAGATE__LOG__LEVEL=warn
export WAGATE__WHATSAPP__ADAPTER=fake
export WAGATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS=true
export WAGATE__WEBHOOKS__RETRY_SCHEDULE=$RETRY_SCHEDULE
# One API key drives everything: no per-credential or WhatsApp pacing.
export WAGATE__LIMITS__REQUESTS_PER_SECOND=0
export WAGATE__LIMITS__WHATSAPP_CALLS_PER_MINUTE=0

KEY=$("$GW_BIN" api-key create --org "$ORG" --name events-bench \
    --capabilities read,send,manage,admin --json | jget key) || die "cannot create an API key"
[ -n "$KEY" ] || die "cannot create an API key"
ATTACK_KEYS=()
for i in $(seq 1 "$ATTACK_ORGS"); do
    k=$("$GW_BIN" api-key create --org "attacker$i" --name events-bench --capabilities admin --json | jget key) \
        || die "cannot create an API key"
    ATTACK_KEYS+=("$k")
done
"$GW_BIN" serve >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
wait_http "http://$GW/readyz" "gateway"
RSS_START=$(rss_kib "$GW_PID")

log "linking $SESSIONS sessions on the fake adapter"
driver link "$GW" "$KEY" "$SESSIONS" >"$WORK/ids" || die "linking failed (KEEP=1 keeps the logs)"
[ "$(wc -l <"$WORK/ids")" -eq "$SESSIONS" ] || die "linked $(wc -l <"$WORK/ids") sessions, not $SESSIONS"

wait_pending_zero() { # WEBHOOK TIMEOUT_S: until none of its deliveries is pending
    local deadline=$((SECONDS + $2))
    while [ "$(driver pending "$DB" "$1")" != 0 ]; do
        [ "$SECONDS" -ge "$deadline" ] && { log "webhook $1 still has pending deliveries after $2 s"; return 1; }
        sleep 0.2
    done
}

paced() { # NAME WEBHOOK: RATE events/s, latency at the receiver $OK
    local name=$1 hook=$2 out t0 t1 lat
    curl -fsS -o /dev/null "http://$OK/__reset"
    log "$name: $RATE events/s for $WARMUP + $PACE_SECONDS s"
    phase_start
    out=$(driver pace "$GW" "$KEY" "$RATE" $((WARMUP + PACE_SECONDS)) "$WORK/ids") || die "$name: generating events failed"
    phase_end "$name"
    [ "$(jget errors <<<"$out")" = 0 ] || die "$name: calls failed: $out"
    wait_pending_zero "$hook" 60 || true
    sleep 0.5
    t0=$(python3 -c "print($(jget t0 <<<"$out") + $WARMUP)")
    t1=$(jget t1 <<<"$out")
    lat=$(driver latency "$OK" "$DB" "$t0" "$t1")
    log "$name: $lat (driver: $out)"
    record "$name" "$(python3 -c 'import json, sys; a = json.loads(sys.argv[1]); a["late"] = json.loads(sys.argv[2])["late"]; print(json.dumps(a))' "$lat" "$out")"
}

# --- (a) latency at RATE events/s, one webhook ---
HOOK_A=$(driver webhook "$GW" "$KEY" "http://$OK/a") || die "cannot create a webhook"
paced a "$HOOK_A"

# --- (d) the same beside a hanging receiver ---
HOOK_H=$(driver webhook "$GW" "$KEY" "http://127.0.0.1:$HANG_PORT/hang") || die "cannot create a webhook"
paced d "$HOOK_A"
HANG_PENDING=$(driver pending "$DB" "$HOOK_H")
driver delete-webhook "$GW" "$KEY" "$HOOK_H"

hanging_requests() { python3 -c 'import json, sys, urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))["n"])' "http://127.0.0.1:$HANG_PORT/__stats"; }

# --- (e) the same beside 100 hanging webhooks of five other organizations ---
curl -fsS -o /dev/null "http://127.0.0.1:$HANG_PORT/__reset"
log "e: $ATTACK_ORGS organizations x $ATTACK_HOOKS webhooks to the hanging receiver, two test deliveries each"
for i in $(seq 1 "$ATTACK_ORGS"); do
    driver hooks "$GW" "${ATTACK_KEYS[$((i - 1))]}" "http://127.0.0.1:$HANG_PORT/evil$i" "$ATTACK_HOOKS" 2 \
        >"$WORK/attack-$i.ids" || die "e: cannot create the attackers' webhooks"
done
# Until every attacker holds its share of the slots with hanging sends.
WANT=$((ATTACK_ORGS * ORG_SLOTS))
deadline=$((SECONDS + 30))
while [ "$(hanging_requests)" -lt "$WANT" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
log "e: $(hanging_requests) sends hanging (want $WANT)"
paced e "$HOOK_A"
ATTACK_SENDS=$(hanging_requests)
ATTACK_PENDING=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("SELECT count(*) FROM deliveries WHERE state = '"'"'pending'"'"' AND org_id LIKE '"'"'attacker%'"'"'").fetchone()[0])' "$DB")
for i in $(seq 1 "$ATTACK_ORGS"); do
    # shellcheck disable=SC2046
    driver delete-webhook "$GW" "${ATTACK_KEYS[$((i - 1))]}" $(cat "$WORK/attack-$i.ids")
done

# wrk making events as fast as the gateway takes them: in the background
# until stopped (SIGINT: wrk prints its summary), or for a fixed time.
churn_start() { # SECONDS OUT
    EVENTS_IDS_FILE=$WORK/ids EVENTS_THREADS=$CHURN_THREADS EVENTS_KEY=$KEY \
        wrk -t"$CHURN_THREADS" -c"$CHURN_CONNECTIONS" -d"$1"s --timeout 10s -s "$ROOT/bench/events/churn.lua" \
        "http://$GW" >"$2" 2>&1 &
    CHURN_PID=$!
    PIDS+=("$CHURN_PID")
}
churn_check() { # OUT NAME: wrk's summary "requests seconds p50_us p99_us non2xx sockerr"
    local r
    r=$(grep '^RESULT ' "$1") || die "$2: wrk failed: $(cat "$1")"
    set -- $r "$2"
    # RESULT requests seconds non2xx sockerr p50_us p99_us
    [ "$2" -gt 0 ] || die "$8: no call answered"
    # 409s or timeouts (wrk --timeout 10s) only mean fewer events; say so.
    if [ "$4" != 0 ] || [ "$5" != 0 ]; then log "$8: $4 non-2xx answers, $5 socket errors or timeouts"; fi
    echo "$2 $3 $6 $7 $4 $5"
}

# --- (b, live) events as fast as the API takes them, one webhook ---
curl -fsS -o /dev/null "http://$OK/__reset"
log "b-live: wrk -t$CHURN_THREADS -c$CHURN_CONNECTIONS disconnect/connect for $CHURN_SECONDS s, webhook a"
EV0=$(driver count "$DB")
phase_start
T0=$(date +%s.%N)
churn_start "$CHURN_SECONDS" "$WORK/churn-live.out"
wait "$CHURN_PID"
T1=$(date +%s.%N)
phase_end b-live
WRK_LIVE=$(churn_check "$WORK/churn-live.out" b-live)
EV1=$(driver count "$DB")
LIVE_RATE=$(driver rate "$OK" "$T0" "$T1")
S_END=$SECONDS
wait_pending_zero "$HOOK_A" "$DRAIN_TIMEOUT" || die "b-live: deliveries still pending"
LAG=$((SECONDS - S_END))
DONE=$(driver wait "$OK" 0 1)
record b-live "$(python3 -c '
import json, sys
ev0, ev1, t0, t1, lag = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
rate, done, wrk = json.loads(sys.argv[6]), json.loads(sys.argv[7]), sys.argv[8].split()
print(json.dumps({"events": ev1 - ev0, "made_rate": (ev1 - ev0) / (t1 - t0), "delivered_rate": rate["rate"],
                  "delivered_in_window": rate["n"], "tail": max(0.0, done["last"] - t1) if done["last"] else None,
                  "calls": int(wrk[0]), "calls_rate": int(wrk[0]) / float(wrk[1]),
                  "call_p50_ms": float(wrk[2]) / 1000, "call_p99_ms": float(wrk[3]) / 1000,
                  "call_errors": int(wrk[4]) + int(wrk[5])}))' \
    "$EV0" "$EV1" "$T0" "$T1" "$LAG" "$LIVE_RATE" "$DONE" "$WRK_LIVE")"
log "b-live: $(tail -n1 "$RESULTS" | cut -f2)"
driver delete-webhook "$GW" "$KEY" "$HOOK_A"

fill_to() { # N NAME: events (no webhook) until the log holds N
    local n=$1 have
    have=$(driver count "$DB")
    [ "$have" -ge "$n" ] && return 0
    log "$2: making events (no webhook) until the log holds $n (now $have)"
    local e0=$have t0 t1
    phase_start
    t0=$(date +%s.%N)
    churn_start 3600 "$WORK/churn-$2.out"
    while [ "$(driver count "$DB")" -lt "$n" ]; do
        kill -0 "$CHURN_PID" 2>/dev/null || die "$2: wrk stopped: $(cat "$WORK/churn-$2.out")"
        sleep 0.5
    done
    kill -INT "$CHURN_PID"
    wait "$CHURN_PID" || true
    t1=$(date +%s.%N)
    phase_end "$2"
    churn_check "$WORK/churn-$2.out" "$2" >/dev/null
    have=$(driver count "$DB")
    record "$2" "$(python3 -c 'import json, sys; e0, e1, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]); print(json.dumps({"events": e1 - e0, "rate": (e1 - e0) / (t1 - t0)}))' "$e0" "$have" "$t0" "$t1")"
    log "$2: $(tail -n1 "$RESULTS" | cut -f2)"
}

# --- (b) a replayed backlog to one receiver ---
fill_to "$SUSTAIN" fill-b
curl -fsS -o /dev/null "http://$OK/__reset"
HOOK_B=$(driver webhook "$GW" "$KEY" "http://$OK/b") || die "cannot create a webhook"
log "b: replaying the whole log to a new webhook"
phase_start
REPLAY=$(driver replay "$GW" "$KEY" "$HOOK_B" 0)
Q=$(jget queued <<<"$REPLAY")
DONE=$(driver wait "$OK" "$Q" "$DRAIN_TIMEOUT")
phase_end b
[ "$(jget done <<<"$DONE")" = True ] || log "b: only $(jget unique <<<"$DONE") of $Q deliveries arrived within $DRAIN_TIMEOUT s"
[ -n "$(jget first <<<"$DONE")" ] || die "b: no delivery arrived"
# Over what arrived (all of it unless DRAIN_TIMEOUT ran out).
record b "$(python3 -c '
import json, sys
r, d = json.loads(sys.argv[1]), json.loads(sys.argv[2])
q, n, first = r["queued"], d["unique"], d["first"]
print(json.dumps({"queued": q, "delivered": n, "done": d["done"], "replay_s": r["seconds"],
                  "total_s": d["last"] - r["t0"], "rate": n / (d["last"] - r["t0"]),
                  "send_rate": n / (d["last"] - first), "requests": d["n"]}))' "$REPLAY" "$DONE")"
log "b: $(tail -n1 "$RESULTS" | cut -f2)"
wait_pending_zero "$HOOK_B" 30 || true
driver delete-webhook "$GW" "$KEY" "$HOOK_B"

# --- (c) BACKLOG pending deliveries, receiver down, then up ---
fill_to "$BACKLOG" fill-c
DOWN_PORT=$(free_port)
curl -s -o /dev/null "http://127.0.0.1:$DOWN_PORT/" && die "port $DOWN_PORT unexpectedly answers"
sleep 2
RSS_C0=$(rss_kib "$GW_PID")
# RSS samples, every 0.2 s, until the drain is over.
( while kill -0 "$GW_PID" 2>/dev/null; do
      printf '%s %s\n' "$(date +%s.%N)" "$(rss_kib "$GW_PID")"; sleep 0.2
  done ) >"$WORK/rss-c.txt" 2>/dev/null &
SAMPLER=$!
PIDS+=("$SAMPLER")
HOOK_C=$(driver webhook "$GW" "$KEY" "http://127.0.0.1:$DOWN_PORT/c") || die "cannot create a webhook"
log "c: replaying the whole log to a webhook whose receiver is down"
phase_start
REPLAY=$(driver replay "$GW" "$KEY" "$HOOK_C" 0)
QC=$(jget queued <<<"$REPLAY")
log "c: $QC deliveries queued in $(jget seconds <<<"$REPLAY") s; receiver down for $DOWN s"
sleep "$DOWN"
phase_end c-down
PENDING_DOWN=$(driver pending "$DB" "$HOOK_C")
ATTEMPTED_DOWN=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("SELECT count(*) FROM deliveries WHERE webhook_id = ? AND attempt > 0", (sys.argv[2],)).fetchone()[0])' "$DB" "$HOOK_C")
RSS_DOWN=$(rss_kib "$GW_PID")
log "c: after $DOWN s down: $PENDING_DOWN pending, $ATTEMPTED_DOWN attempted (failed) at least once, RSS $RSS_DOWN KiB"
phase_start
T_UP=$(date +%s.%N)
start_receiver "$DOWN_PORT" ok c >/dev/null
DONE=$(driver wait "127.0.0.1:$DOWN_PORT" "$QC" "$DRAIN_TIMEOUT")
phase_end c-drain
if [ "$(jget done <<<"$DONE")" = True ]; then
    wait_pending_zero "$HOOK_C" 30 || die "c: deliveries still pending after the drain"
else
    log "c: only $(jget unique <<<"$DONE") of $QC deliveries arrived within $DRAIN_TIMEOUT s"
fi
[ -n "$(jget first <<<"$DONE")" ] || die "c: no delivery arrived"
RSS_AFTER=$(rss_kib "$GW_PID")
kill "$SAMPLER" 2>/dev/null || true
RSS_PEAK_C=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { print m }' "$WORK/rss-c.txt")
record c "$(python3 -c '
import json, sys
q, down_pending, attempted, r0, rdown, rpeak, rafter, t_up = (float(x) for x in sys.argv[1:9])
d = json.loads(sys.argv[9])
print(json.dumps({"queued": int(q), "delivered": d["unique"], "done": d["done"],
                  "pending_down": int(down_pending), "attempted_down": int(attempted),
                  "rss0_mib": r0 / 1024, "rss_down_mib": rdown / 1024, "rss_peak_mib": rpeak / 1024,
                  "rss_after_mib": rafter / 1024, "growth_mib": (max(rpeak, rdown) - r0) / 1024,
                  "drain_s": d["last"] - t_up, "rate": d["unique"] / (d["last"] - t_up), "requests": d["n"]}))' \
    "$QC" "$PENDING_DOWN" "$ATTEMPTED_DOWN" "$RSS_C0" "$RSS_DOWN" "$RSS_PEAK_C" "$RSS_AFTER" "$T_UP" "$DONE")"
log "c: $(tail -n1 "$RESULTS" | cut -f2)"
driver delete-webhook "$GW" "$KEY" "$HOOK_C"

# --- (f) the writer's cost of fan-out ---
rows() { python3 -c 'import sqlite3, sys; print(sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("SELECT max(seq) FROM deliveries").fetchone()[0] or 0)' "$DB"; }
fanout() { # NAME: wrk for FANOUT_SECONDS; events and delivery rows made
    local e0 e1 r0 r1 t0 t1 w
    e0=$(driver count "$DB"); r0=$(rows)
    log "$1: wrk -t$CHURN_THREADS -c$CHURN_CONNECTIONS disconnect/connect for $FANOUT_SECONDS s"
    phase_start
    t0=$(date +%s.%N)
    churn_start "$FANOUT_SECONDS" "$WORK/churn-$1.out"
    wait "$CHURN_PID"
    t1=$(date +%s.%N)
    phase_end "$1"
    w=$(churn_check "$WORK/churn-$1.out" "$1")
    e1=$(driver count "$DB"); r1=$(rows)
    record "$1" "$(python3 -c '
import json, sys
e0, e1, r0, r1 = (int(x) for x in sys.argv[1:5]); t0, t1 = float(sys.argv[5]), float(sys.argv[6]); w = sys.argv[7].split()
print(json.dumps({"events": e1 - e0, "rate": (e1 - e0) / (t1 - t0), "rows": r1 - r0, "rows_rate": (r1 - r0) / (t1 - t0),
                  "calls_rate": int(w[0]) / float(w[1]), "call_p50_ms": float(w[2]) / 1000, "call_p99_ms": float(w[3]) / 1000,
                  "call_errors": int(w[4]) + int(w[5])}))' "$e0" "$e1" "$r0" "$r1" "$t0" "$t1" "$w")"
    log "$1: $(tail -n1 "$RESULTS" | cut -f2)"
}
fanout f0
driver hooks "$GW" "$KEY" "http://127.0.0.1:$HANG_PORT/fanout" "$MAX_PER_ORG" 0 >"$WORK/fanout.ids" \
    || die "f: cannot create $MAX_PER_ORG webhooks"
CAP_STATUS=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$GW/api/v1/webhooks" \
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "{\"url\":\"http://127.0.0.1:$HANG_PORT/fanout\",\"events\":[\"*\"]}")
fanout f25

# --- report ---
MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
echo
echo "wagate events benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $NCPU CPUs (${MODEL:-unknown}), $REV"
echo "release gateway, fake adapter, SQLite in a temporary folder, $SESSIONS linked sessions, retry schedule $RETRY_SCHEDULE"
echo "receiver: bench/events/receiver.py (asyncio), alone on one connection: $(awk '{printf "%s req/s, p50 %.2f ms, p99 %.2f ms", $1, $2 / 1000, $3 / 1000}' <<<"$RCV_CAP")"
echo "gateway RSS: $((RSS_START / 1024)) MiB at start, peak $(($(hwm_kib "$GW_PID") / 1024)) MiB over the whole run"
python3 - "$RESULTS" "$WORK/cpu.tsv" "$RATE" "$PACE_SECONDS" "$CHURN_THREADS" "$CHURN_CONNECTIONS" "$DOWN" "$HANG_PENDING" \
    "$ATTACK_ORGS" "$ATTACK_HOOKS" "$ATTACK_SENDS" "$ATTACK_PENDING" "$CAP_STATUS" "$MAX_PER_ORG" <<'EOF'
import json, sys

res = {}
for line in open(sys.argv[1]):
    name, payload = line.rstrip("\n").split("\t", 1)
    res[name] = json.loads(payload)
cpu = {}
for line in open(sys.argv[2]):
    name, gw, machine = line.rstrip("\n").split("\t")
    cpu[name] = f"gateway {gw}% CPU, machine {machine}% busy"
rate, secs, threads, conns, down, hang_pending = sys.argv[3:9]
attack_orgs, attack_hooks, attack_sends, attack_pending, cap_status, max_per_org = sys.argv[9:15]

failed = []
def check(ok, text):
    if not ok:
        failed.append(text)
    return "met" if ok else "MISSED"

a, d, e, b, bl, c = res["a"], res["d"], res["e"], res["b"], res["b-live"], res["c"]
f0, f25 = res["f0"], res["f25"]
rows = []
rows.append(("(a) committed → received p99, " + rate + " events/s", "≤ 50 ms",
             f"{a['p99']:.1f} ms (p50 {a['p50']:.1f}, p90 {a['p90']:.1f}, max {a['max']:.0f}; "
             f"{a['events']} events, {a['missing']} missing)",
             check(a["p99"] <= 50 and a["missing"] == 0, f"(a) p99 {a['p99']:.1f} ms (≤ 50 ms), {a['missing']} missing")))
ratio = d["p99"] / a["p99"] if a["p99"] else float("inf")
rows.append(("(d) healthy p99 beside a hanging receiver", "≤ 2× alone",
             f"{d['p99']:.1f} ms vs {a['p99']:.1f} ms alone = {ratio:.2f}× (p50 {d['p50']:.1f}, max {d['max']:.0f}; "
             f"{d['missing']} missing)",
             check(ratio <= 2 and d["missing"] == 0, f"(d) {ratio:.2f}× the p99 alone (≤ 2×), {d['missing']} missing")))
ratio_e = e["p99"] / a["p99"] if a["p99"] else float("inf")
rows.append((f"(e) p99 beside {int(attack_orgs) * int(attack_hooks)} hanging webhooks of {attack_orgs} other orgs", "≤ 2× alone",
             f"{e['p99']:.1f} ms vs {a['p99']:.1f} ms alone = {ratio_e:.2f}× (p50 {e['p50']:.1f}, max {e['max']:.0f}; "
             f"{e['missing']} missing)",
             check(ratio_e <= 2 and e["missing"] == 0, f"(e) {ratio_e:.2f}× the p99 alone (≤ 2×), {e['missing']} missing")))
rows.append(("(b) deliveries/s, one receiver (replayed backlog)", "≥ 2,000/s",
             f"{b['rate']:,.0f}/s ({b['delivered']:,}{'' if b['done'] else ' of ' + format(b['queued'], ',')} "
             f"in {b['total_s']:.1f} s from the replay request; {b['send_rate']:,.0f}/s from the first arrival)",
             check(b["rate"] >= 2000 and b["done"], f"(b) {b['rate']:,.0f} deliveries/s (≥ 2,000)"
                   + ("" if b["done"] else f"; only {b['delivered']:,} of {b['queued']:,} within the time limit"))))
rows.append(("    live: events made as fast as the API takes them", "",
             f"{bl['made_rate']:,.0f} events/s made, {bl['delivered_rate']:,.0f}/s delivered meanwhile, "
             f"rest delivered {bl['tail'] or 0:.1f} s after the load", ""))
rows.append(("(c) 100k pending, receiver down: RSS growth", "≤ 64 MiB",
             f"{c['growth_mib']:.1f} MiB ({c['rss0_mib']:.1f} → peak {c['rss_peak_mib']:.1f}; "
             f"{c['rss_after_mib']:.1f} after the drain)",
             check(c["growth_mib"] <= 64, f"(c) RSS growth {c['growth_mib']:.1f} MiB (≤ 64)")))
rows.append(("    drain once the receiver is up", "≥ 2,000/s",
             f"{c['rate']:,.0f}/s ({c['delivered']:,}{'' if c['done'] else ' of ' + format(c['queued'], ',')} "
             f"in {c['drain_s']:.1f} s)",
             check(c["rate"] >= 2000 and c["done"], f"(c) drain {c['rate']:,.0f}/s (≥ 2,000)"
                   + ("" if c["done"] else f"; only {c['delivered']:,} of {c['queued']:,} within the time limit"))))
print()
w = max(len(r[0]) for r in rows)
print(f"{'target':<{w}}  {'goal':<10} {'result':<6} measured")
for name, goal, measured, verdict in rows:
    print(f"{name:<{w}}  {goal:<10} {verdict:<6} {measured}")
print()
print(f"(a)/(d): {rate} status events/s for {secs} s, latency = receiver arrival - occurredAt (ms resolution);")
print(f"  late pacing ticks (a/d): {a['late']}/{d['late']}; {cpu.get('a', '')} (a), {cpu.get('d', '')} (d)")
fmt = lambda t: "/".join("-" if x is None else f"{x:.1f}" for x in t)
print(f"  p99 by third of the window, ms: (a) {fmt(a['p99_thirds'])}, (d) {fmt(d['p99_thirds'])}; "
      f"the hanging webhook had {int(hang_pending):,} deliveries pending at the end of (d)")
print(f"(e): {attack_sends} sends to the hanging receiver during (e) ({attack_orgs} × 8 slots hanging at a time, "
      f"each for webhooks.timeout); {int(attack_pending):,} attacker deliveries pending at its end; "
      f"late pacing ticks {e['late']}; p99 by third, ms: {fmt(e['p99_thirds'])}; {cpu.get('e', '')}")
print(f"(b): replay of the whole log to a new webhook, {cpu.get('b', '')}; live: wrk -t{threads} -c{conns} "
      f"disconnect/connect, {bl['calls_rate']:,.0f} calls/s (p50 {bl['call_p50_ms']:.1f} ms, p99 {bl['call_p99_ms']:.0f} ms, "
      f"{bl['call_errors']} errors), {cpu.get('b-live', '')}")
for k in ("fill-b", "fill-c"):
    if k in res:
        print(f"  events made with no webhook ({k}): {res[k]['events']:,} at {res[k]['rate']:,.0f}/s, {cpu.get(k, '')}")
print(f"(c): after {down} s down: {c['pending_down']:,} pending, {c['attempted_down']:,} attempted at least once; "
      f"down: {cpu.get('c-down', '')}; drain: {cpu.get('c-drain', '')}")
slow = f0["rate"] / f25["rate"] if f25["rate"] else float("inf")
extra_us = (1 / f25["rate"] - 1 / f0["rate"]) * 1e6 if f0["rate"] and f25["rate"] else float("nan")
print(f"(f) fan-out, wrk -t{threads} -c{conns} disconnect/connect: no webhook {f0['rate']:,.0f} events/s "
      f"(calls {f0['calls_rate']:,.0f}/s, p50 {f0['call_p50_ms']:.1f} ms, p99 {f0['call_p99_ms']:.0f} ms; {cpu.get('f0', '')}); "
      f"{max_per_org} \"*\" webhooks: {f25['rate']:,.0f} events/s with {f25['rows_rate']:,.0f} delivery rows/s "
      f"(calls {f25['calls_rate']:,.0f}/s, p50 {f25['call_p50_ms']:.1f} ms, p99 {f25['call_p99_ms']:.0f} ms; {cpu.get('f25', '')}): "
      f"{slow:.2f}× fewer events, ≈ {extra_us:.0f} µs more per event ({extra_us / int(max_per_org):.1f} µs per delivery row); "
      f"a {int(max_per_org) + 1}th webhook: HTTP {cap_status}")
if cap_status != "409":
    failed.append(f"(f) a {int(max_per_org) + 1}th webhook answered {cap_status}, not 409")
if failed:
    print("MISSED:")
    for f in failed:
        print("  - " + f)
else:
    print("all targets met")
EOF
