#!/usr/bin/env bash
# Messaging latency and durability: the gateway on its live adapter
# (whatsapp-rust) against wa-sim, whose world contacts are WhatsApp users
# with Signal identities of their own. See docs/PERFORMANCE.md ("Messaging")
# and the messaging spec ("Performance").
#
#   bench/messages.sh                                     # the spec's sizes
#   SESSIONS=10 RATE=20 DURATION=10 KILL_MESSAGES=100 bench/messages.sh   # a quick check
#   SKIP_BUILD=1 KEEP=1 bench/messages.sh
#
# Setup: starts wa-sim (examples/world.json) and the gateway (fresh SQLite
# database and device store in a work folder), links SESSIONS (100)
# sessions through the API and wa-sim's phone, each to a phone number of its
# own (1555000xxxx), starts a webhook receiver (bench/events/receiver.py)
# and a webhook for message.received pointing at it. All messages go to or
# come from the world contact PEER (14155550123), open-loop: message i is
# due at t0 + i/RATE, whatever happened to the ones before, on session
# i mod SESSIONS.
#
#   (a) send → contact has it: RATE (100) messages a second for WARMUP (2)
#       + DURATION (30) s through POST /api/v1/sessions/{id}/messages; the
#       latency of one message is wa-sim's `at` for it (when the contact
#       decrypted it; GET /admin/accounts/{phone}/messages?peer=, RFC 3339
#       with milliseconds) minus when the driver sent the POST. Messages
#       due in the warm-up are sent but not counted. Target: p99 <= 50 ms.
#   (b) contact sends → committed, → webhook: the contact sends RATE
#       messages a second (wa-sim's POST /admin/accounts/{phone}/messages)
#       for WARMUP + DURATION s; latency = the message.received event's
#       occurredAt (GET /api/v1/events, milliseconds) minus when the driver
#       sent the admin POST, and the receiver's arrival time minus the
#       same. Targets: p99 <= 50 ms and <= 100 ms.
#   (c) kill -9: KILL_MESSAGES (1,000) messages each way (one sent through
#       the API and one from the contact per tick, KILL_RATE, 100, ticks a
#       second); once tick KILL_MESSAGES/2 is due the gateway gets SIGKILL
#       and is started again at once on the same database and device store.
#       API calls that fail meanwhile (connection refused or reset, 501
#       while the session reconnects) are retried with the same
#       Idempotency-Key. Then, once every accepted message is accounted for
#       (or RECOVER_TIMEOUT, 60 s, has passed) and SETTLE (5) s more: lost
#       = accepted and never decrypted by the contact / posted by the
#       contact and with no message.received event; duplicated = decrypted
#       under two WhatsApp ids / two events for one id. Target: none either
#       way. (A copy the contact decrypted again under the same id is
#       counted apart, as "resent": WhatsApp drops it.)
#   (d) queued media and memory: MEDIA_COUNT (40) images of MEDIA_MIB (4)
#       MiB each, posted one after the other to the first session for the
#       world contact that never answers (MEDIA_TO, 14155550100: its chat
#       keeps failing and retrying, so they stay queued), then MEDIA_SETTLE
#       (15) s of the queue working on them. Measured: the gateway's RSS
#       (VmRSS, sampled every 0.1 s) at its highest minus before the first
#       POST. Target: < 64 MiB (queued media stays in the database; a
#       session holds only the media of its sends under way). MEDIA_ONLY=1
#       runs (d) alone (after linking), e.g.
#       MEDIA_ONLY=1 SESSIONS=1 bench/messages.sh
#
# Pacing: messages.send_rate (per session, per minute) is SEND_RATE, by
# default 0 (off). The gateway's default, 30 a minute plus up to 50 %
# random extra, is an anti-ban measure: at RATE/SESSIONS = 1 message a
# second per session its queue would only grow and the figures would
# measure the pacing, not the gateway. The restarted gateway resumes
# sessions at RESUME_RATE (500) a second (wa-sim takes them that fast;
# WhatsApp's default is 20). Per-credential and WhatsApp-call rate limits
# are off (one API key drives everything).
#
# Settings (environment): SESSIONS, RATE, DURATION, WARMUP, KILL_MESSAGES,
# KILL_RATE, SEND_RATE, RESUME_RATE, PEER, MEDIA_* (above), PARALLEL (linking pool, 16),
# LINK_TIMEOUT (60 s), COLLECT_TIMEOUT (s to wait for (a)/(b) to be
# accounted for, 60), RECOVER_TIMEOUT, SETTLE, SKIP_BUILD=1 (use the
# binaries in target/release, built with --features wagate/simulator),
# KEEP=1 (keep the work folder: logs, databases, the driver's records).
#
# Prints a table checked against the targets; exits non-zero only when the
# setup fails (a target missed is reported, not an error).
#
# Needs: cargo, python3 (standard library only), curl.
set -euo pipefail

BENCH=messages
. "$(dirname "$0")/lib.sh"

SESSIONS=${SESSIONS:-100}
RATE=${RATE:-100}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-2}
KILL_MESSAGES=${KILL_MESSAGES:-1000}
KILL_RATE=${KILL_RATE:-100}
SEND_RATE=${SEND_RATE:-0}
RESUME_RATE=${RESUME_RATE:-500}
PEER=${PEER:-14155550123}
PARALLEL=${PARALLEL:-16}
LINK_TIMEOUT=${LINK_TIMEOUT:-60}
COLLECT_TIMEOUT=${COLLECT_TIMEOUT:-60}
RECOVER_TIMEOUT=${RECOVER_TIMEOUT:-60}
SETTLE=${SETTLE:-5}
MEDIA_COUNT=${MEDIA_COUNT:-40}
MEDIA_MIB=${MEDIA_MIB:-4}
MEDIA_TO=${MEDIA_TO:-14155550100@s.whatsapp.net}
MEDIA_SETTLE=${MEDIA_SETTLE:-15}
MEDIA_ONLY=${MEDIA_ONLY:-0}
ORG=bench

need_tools cargo python3 curl
for v in SESSIONS RATE DURATION KILL_MESSAGES KILL_RATE; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be an integer (got '$WARMUP')"
[ "$KILL_MESSAGES" -ge 2 ] || die "KILL_MESSAGES must be at least 2"
ulimit -n "$(ulimit -Hn)"

build_sim_gateway
bench_work
copy_binaries
DRIVER=$ROOT/bench/messages/driver.py
RECEIVER=$ROOT/bench/events/receiver.py
driver() { python3 "$DRIVER" "$@"; }
REV=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then REV="$REV + uncommitted changes"; fi
# The machine's load when the run starts (others' builds share the CPUs).
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
load_line() { echo "load average (1/5/15 min): $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
machine_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8; exit}' /proc/stat; }
machine_total() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8; exit}' /proc/stat; }
NCPU=$(nproc)
# Per phase: the gateway's and the simulator's CPU (100 % = one core) and
# the whole machine's busy share.
phase_start() { P_G0=$(cpu_ticks "$GW_PID"); P_S0=$(cpu_ticks "$SIM_PID"); P_B0=$(machine_busy); P_T0=$(machine_total); }
phase_end() { # NAME
    local g1 s1 b1 t1
    g1=$(cpu_ticks "$GW_PID"); s1=$(cpu_ticks "$SIM_PID"); b1=$(machine_busy); t1=$(machine_total)
    awk -v name="$1" -v g=$((g1 - P_G0)) -v s=$((s1 - P_S0)) -v b=$((b1 - P_B0)) -v t=$((t1 - P_T0)) -v n="$NCPU" \
        'BEGIN { if (t == 0) t = 1; printf "%s\tgateway %.0f%% CPU, wa-sim %.0f%%, machine %.0f%% busy\n", name, g / t * n * 100, s / t * n * 100, b / t * 100 }' \
        >>"$WORK/cpu.tsv"
}
: >"$WORK/cpu.tsv"
RESULTS=$WORK/results.tsv
: >"$RESULTS"
record() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }

SIM=127.0.0.1:$(free_port)
GW=127.0.0.1:$(free_port)
RCV_PORT=$(free_port)
RCV=127.0.0.1:$RCV_PORT
DB=$WORK/wagate.db

log "starting wa-sim on $SIM, the gateway on $GW, the webhook receiver on $RCV (work folder $WORK)"
start_sim "$SIM" "$WORK/sim.log"
live_gateway_env "$GW" "$SIM" "$DB"
export WAGATE__MESSAGES__SEND_RATE=$SEND_RATE
export WAGATE__WHATSAPP__LIVE__RESUME_RATE=$RESUME_RATE
export WAGATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS=true
KEY=$(mint_key "$ORG" messages-bench read,send,manage,admin)
start_gateway "$WORK/gateway-1.log"
python3 "$RECEIVER" "$RCV_PORT" ok >"$WORK/receiver.log" 2>&1 &
PIDS+=($!)
wait_http "http://$RCV/__stats" "webhook receiver"

log "linking $SESSIONS sessions, $PARALLEL at a time"
LINK=$(link_sessions "$GW" "$SIM" "$KEY" "$SESSIONS" "$PARALLEL" "$LINK_TIMEOUT" "$WORK/sessions") \
    || die "linking failed (KEEP=1 keeps the logs)"
log "linked: $LINK"
[ "$(connected_gauge "$GW")" = "$SESSIONS" ] || die "after linking, $(connected_gauge "$GW") sessions are connected, not $SESSIONS"

HOOK=$(curl -fsS -X POST "http://$GW/api/v1/webhooks" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "{\"url\": \"http://$RCV/hook\", \"events\": [\"message.received\"], \"description\": \"messages bench\"}" | jget id) \
    || die "cannot create the webhook"
[ -n "$HOOK" ] || die "cannot create the webhook"

COUNT=$((RATE * (WARMUP + DURATION)))

# --- (d) queued media and memory (after (c), or alone with MEDIA_ONLY=1) ---
media_phase() {
    local first
    first=$(head -n1 "$WORK/sessions" | cut -d' ' -f1)
    log "(d) queueing $MEDIA_COUNT images of $MEDIA_MIB MiB on $first for $MEDIA_TO (never answers), then $MEDIA_SETTLE s"
    RES_D=$(driver media-rss "$GW" "$KEY" "$first" "$GW_PID" "$MEDIA_TO" "$MEDIA_COUNT" "$MEDIA_MIB" "$MEDIA_SETTLE") \
        || die "(d): the driver failed"
    log "(d) $RES_D"
    record d "$RES_D"
}
media_line() {
    python3 - "$RES_D" "$MEDIA_COUNT" "$MEDIA_MIB" "$MEDIA_SETTLE" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
ok = d["growth_mib"] < 64 and d["accepted"] == int(sys.argv[2])
print(f"(d) {sys.argv[2]} x {sys.argv[3]} MiB images queued on one session (its chat never answers): RSS growth"
      f" < 64 MiB {'met' if ok else 'MISSED'}: +{d['growth_mib']} MiB (before {d['before_mib']}, highest {d['max_mib']},"
      f" {sys.argv[4]} s later {d['end_mib']} MiB); {d['accepted']} accepted, {d['refused']} refused, {d['pending']} still pending")
EOF
}
if [ "$MEDIA_ONLY" = 1 ]; then
    media_phase
    echo
    echo "wagate messaging benchmark (d) only — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $REV"
    echo "release gateway, live adapter against wa-sim, SQLite in a temporary folder; $SESSIONS sessions linked"
    load_line
    media_line
    exit 0
fi

# --- (a) send API → the contact decrypted it ---
log "(a) sending $RATE messages/s for $WARMUP + $DURATION s over $SESSIONS sessions (send_rate $SEND_RATE)"
phase_start
OUT_A=$(driver pace out "$GW" "$KEY" "$SIM" "$WORK/sessions" "$PEER" "$RATE" "$COUNT" a "$WORK/a.jsonl") \
    || die "(a): the driver failed"
log "(a) sent: $OUT_A"
FROM_A=$(python3 -c "import json, sys; print(json.loads(sys.argv[1])['t0'] + $WARMUP)" "$OUT_A")
RES_A=$(driver collect-out "$SIM" "$PEER" "$WORK/a.jsonl" "$FROM_A" "$COLLECT_TIMEOUT" 0) || die "(a): collecting failed"
phase_end a
log "(a) $RES_A"
record a "$(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r["pace"] = json.loads(sys.argv[2]); print(json.dumps(r))' "$RES_A" "$OUT_A")"

# --- (b) the contact sends → committed, → webhook ---
log "(b) the contact sends $RATE messages/s for $WARMUP + $DURATION s to $SESSIONS accounts"
curl -fsS -o /dev/null "http://$RCV/__reset"
phase_start
OUT_B=$(driver pace in "$GW" "$KEY" "$SIM" "$WORK/sessions" "$PEER" "$RATE" "$COUNT" b "$WORK/b.jsonl") \
    || die "(b): the driver failed"
log "(b) sent: $OUT_B"
FROM_B=$(python3 -c "import json, sys; print(json.loads(sys.argv[1])['t0'] + $WARMUP)" "$OUT_B")
RES_B=$(driver collect-in "$GW" "$KEY" "$WORK/b.jsonl" "$FROM_B" "$COLLECT_TIMEOUT" 0 "$RCV") || die "(b): collecting failed"
phase_end b
log "(b) $RES_B"
record b "$(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r["pace"] = json.loads(sys.argv[2]); print(json.dumps(r))' "$RES_B" "$OUT_B")"

# --- (c) kill -9 in the middle of a run, both ways ---
HALF=$((KILL_MESSAGES / 2))
log "(c) $KILL_MESSAGES messages each way at $KILL_RATE/s; kill -9 of the gateway at message $HALF"
rm -f "$WORK/half"
driver pace both "$GW" "$KEY" "$SIM" "$WORK/sessions" "$PEER" "$KILL_RATE" "$KILL_MESSAGES" c "$WORK/c.jsonl" \
    "$HALF" "$WORK/half" >"$WORK/c-pace.json" &
DRIVER_PID=$!
PIDS+=("$DRIVER_PID")
deadline=$((SECONDS + 60 + KILL_MESSAGES / KILL_RATE))
until [ -e "$WORK/half" ]; do
    kill -0 "$DRIVER_PID" 2>/dev/null || die "(c): the driver ended before message $HALF"
    [ "$SECONDS" -lt "$deadline" ] || die "(c): message $HALF was never due"
    sleep 0.01
done
KILLED_AT=$(date +%s.%N)
kill -KILL "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
log "(c) gateway killed; starting it again on the same database and device store"
start_gateway "$WORK/gateway-2.log"
SERVING_AT=$(date +%s.%N)
wait "$DRIVER_PID" || die "(c): the driver failed: $(cat "$WORK/c-pace.json")"
OUT_C=$(cat "$WORK/c-pace.json")
log "(c) sent: $OUT_C"
deadline=$((SECONDS + RECOVER_TIMEOUT))
until [ "$(connected_gauge "$GW")" = "$SESSIONS" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { log "(c) only $(connected_gauge "$GW") of $SESSIONS sessions reconnected"; break; }
    sleep 0.1
done
RECONNECTED_AT=$(date +%s.%N)
RES_C_OUT=$(driver collect-out "$SIM" "$PEER" "$WORK/c.jsonl" 0 "$RECOVER_TIMEOUT" "$SETTLE") || die "(c): collecting (out) failed"
log "(c) outgoing: $RES_C_OUT"
RES_C_IN=$(driver collect-in "$GW" "$KEY" "$WORK/c.jsonl" 0 "$RECOVER_TIMEOUT" "$SETTLE" -) || die "(c): collecting (in) failed"
log "(c) incoming: $RES_C_IN"
record c "$(python3 -c '
import json, sys
o, i, p = (json.loads(x) for x in sys.argv[1:4])
k, s, r = (float(x) for x in sys.argv[4:7])
print(json.dumps({"out": o, "in": i, "pace": p, "serving_s": s - k, "reconnected_s": r - k}))' \
    "$RES_C_OUT" "$RES_C_IN" "$OUT_C" "$KILLED_AT" "$SERVING_AT" "$RECONNECTED_AT")"

media_phase

# The gateway's warnings and errors (both runs), most frequent first.
sed 's/\x1b\[[0-9;]*m//g' "$WORK"/gateway-*.log | grep -E '^[^ ]+ +(WARN|ERROR) ' \
    | sed -E 's/^[^ ]+ +//; s/[0-9a-f]{8,}|[0-9]+/#/g' | cut -c1-120 | sort | uniq -c | sort -rn \
    >"$WORK/warnings.txt" || true

# --- report ---
MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
echo
echo "wagate messaging benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $NCPU CPUs (${MODEL:-unknown}), $REV"
echo "release gateway, live adapter (whatsapp-rust) against wa-sim on 127.0.0.1, SQLite in a temporary folder;"
echo "$SESSIONS sessions linked ($(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print("in %.1f s, p99 %.2f s per session" % (r["wall"], r["p99"]))' "$LINK"));"
load_line
if [ "$SEND_RATE" = 0 ]; then
    echo "messages.send_rate = 0 (per-session pacing off: the default 30/min + jitter would queue $RATE/$SESSIONS msgs/s per"
    echo "session and measure the pacing, not the gateway); resume_rate $RESUME_RATE/s; rate limits off; contact $PEER"
else
    echo "messages.send_rate = $SEND_RATE/min per session (set by SEND_RATE); resume_rate $RESUME_RATE/s; rate limits off; contact $PEER"
fi
python3 - "$RESULTS" "$WORK/cpu.tsv" "$WORK/warnings.txt" "$RATE" "$DURATION" "$WARMUP" "$KILL_MESSAGES" "$KILL_RATE" "$SESSIONS" <<'EOF'
import json, sys

res = {}
for line in open(sys.argv[1]):
    name, payload = line.rstrip("\n").split("\t", 1)
    res[name] = json.loads(payload)
cpu = {}
for line in open(sys.argv[2]):
    name, text = line.rstrip("\n").split("\t", 1)
    cpu[name] = text
rate, secs, warmup, kill_n, kill_rate, sessions = sys.argv[4:10]

failed = []
def check(ok, text):
    if not ok:
        failed.append(text)
    return "met" if ok else "MISSED"

def lat(s):
    if not s.get("n"):
        return "no sample"
    return f"{s['p99']:.1f} ms (p50 {s['p50']:.1f}, p90 {s['p90']:.1f}, max {s['max']:.0f}; n {s['n']})"

a, b, c = res["a"], res["b"], res["c"]
rows = []
a_ok = a.get("n", 0) > 0 and a["p99"] <= 50 and a["lost"] == 0 and a["refused"] == 0
rows.append((f"(a) send API → contact decrypted, p99 at {rate} msgs/s / {sessions} sessions", "≤ 50 ms",
             lat(a) + f"; {a['lost']} lost, {a['refused']} refused",
             check(a_ok, f"(a) p99 {a.get('p99', float('nan')):.1f} ms (≤ 50), {a['lost']} lost, {a['refused']} refused")))
bc, bw = b["committed"], b["webhook"]
b_ok = bc.get("n", 0) > 0 and bc["p99"] <= 50 and b["lost"] == 0 and b["refused"] == 0
rows.append((f"(b) contact sends → message.received committed, p99 at {rate} msgs/s", "≤ 50 ms",
             lat(bc) + f"; {b['lost']} lost, {b['dup']} duplicated",
             check(b_ok, f"(b) committed p99 {bc.get('p99', float('nan')):.1f} ms (≤ 50), {b['lost']} lost")))
w_ok = bw.get("n", 0) > 0 and bw["p99"] <= 100 and b["webhook_missing"] == 0
rows.append(("    contact sends → webhook received, p99", "≤ 100 ms",
             lat(bw) + f"; {b['webhook_missing']} not delivered",
             check(w_ok, f"(b) webhook p99 {bw.get('p99', float('nan')):.1f} ms (≤ 100), {b['webhook_missing']} not delivered")))
co, ci = c["out"], c["in"]
rows.append((f"(c) kill -9 mid-run, {kill_n} sent through the API", "0 lost/dup",
             f"{co['lost']} lost, {co['dup']} duplicated ({co['accepted']} accepted, {co['refused']} refused, "
             f"{co['resent']} resent under the same id, {co['id_mismatch']} with another id than the API's)",
             check(co["lost"] == 0 and co["dup"] == 0 and co["refused"] == 0,
                   f"(c) outgoing: {co['lost']} lost, {co['dup']} duplicated, {co['refused']} refused")))
rows.append((f"    kill -9 mid-run, {kill_n} sent by the contact", "0 lost/dup",
             f"{ci['lost']} lost, {ci['dup']} duplicated ({ci['posted']} posted)",
             check(ci["lost"] == 0 and ci["dup"] == 0 and ci["refused"] == 0,
                   f"(c) incoming: {ci['lost']} lost, {ci['dup']} duplicated")))
print()
w = max(len(r[0]) for r in rows)
print(f"{'target':<{w}}  {'goal':<10} {'result':<6} measured")
for name, goal, measured, verdict in rows:
    print(f"{name:<{w}}  {goal:<10} {verdict:<6} {measured}")
print()
def pace_line(p):
    call = p["call"]
    calls = f"call p50 {call['p50']:.1f} ms, p99 {call['p99']:.1f} ms" if call.get("n") else "no call answered"
    return (f"{p['ok']}/{p['n']} answered 2xx, {p['retried']} retried, {p['late']} ticks late > 5 ms "
            f"(start lag p99 {p['start_lag_p99_ms'] or 0:.1f} ms); {calls}")
print(f"(a): {int(rate) * (int(warmup) + int(secs))} messages, the first {warmup} s not counted; latency = wa-sim's `at`")
print(f"  (ms) - the driver's POST; POST → 202: {pace_line(a['pace'])}; {cpu.get('a', '')}")
print(f"(b): the same count from the contact; latency = occurredAt (ms) / receiver arrival - the admin POST;")
print(f"  admin POST: {pace_line(b['pace'])}; {cpu.get('b', '')}")
print(f"(c): {kill_n} ticks at {kill_rate}/s, one message each way per tick; gateway serving {c['serving_s']:.2f} s and all")
print(f"  {sessions} sessions connected {c['reconnected_s']:.2f} s after the kill; API calls: {pace_line(c['pace'])}")
for name, part in (("outgoing", co), ("incoming", ci)):
    if part["lost_examples"]:
        print(f"  lost {name} (account, text, WhatsApp id): " + "; ".join(part["lost_examples"]))
warnings = [line.rstrip() for line in open(sys.argv[3]) if line.strip()]
print(f"gateway warnings/errors (both runs): {sum(int(x.split()[0]) for x in warnings)}")
for line in warnings[:5]:
    print("  " + line)
if failed:
    print("MISSED:")
    for f in failed:
        print("  - " + f)
else:
    print("all targets met")
EOF
media_line
