#!/usr/bin/env bash
# Memory per live session and reconnect time after a restart: the gateway on
# its live adapter (whatsapp-rust) against wa-sim, N sessions linked through
# the HTTP API and the simulator's phone. See docs/PERFORMANCE.md.
#
#   bench/sessions.sh                  # N = 100, 500 and 1000, one fresh run each
#   bench/sessions.sh 1000 5000 10000  # the issue's sizes (10,000 takes ~10 min)
#   PARALLEL=32 bench/sessions.sh 200
#
# For each N: starts wa-sim and the gateway (fresh database and device store
# in a temporary folder), reads the gateway's RSS (VmRSS), links N sessions
# (create → connect → wait `pairing` → GET qr → POST /admin/scan-qr with a
# phone number of its own, 1555000xxxx → wait `connected`; PARALLEL at a
# time), reads the RSS again once the gateway is idle and SETTLE more seconds
# have passed, then stops the gateway with SIGTERM, starts it again on the
# same database and device store and times how long until the
# `wagate_sessions{status="connected"}` gauge of /metrics reads N, while
# looking up a contact's picture through the first linked session
# (PROBE_RATE requests a second, from the moment that session is connected
# again until all are) to time the API during the reconnect. Prints a
# table; checks the targets (N >= 1000: <= 0.5 MiB per connected session,
# all reconnected within 30 s, picture p99 < 10 ms during the reconnect,
# <= 3 ms of gateway CPU per resumed session: its CPU from its start until
# all are connected, divided by N).
#
# Settings (environment): PARALLEL (linking pool, default 16); SETTLE
# (seconds to wait, once the gateway is idle, before an RSS reading, default
# 5); IDLE_WAIT (at most this many seconds for the gateway to go idle,
# default 120); LINK_TIMEOUT (seconds for one session to link, default 60);
# RECONNECT_TIMEOUT (seconds for all to reconnect after the restart, default
# 300); WRK_WAIT (seconds to wait for someone else's benchmark, i.e. wrk,
# the baseline server or cargo bench, to end before measuring anyway,
# default 1800); RESUME_RATE (whatsapp.live.resume_rate of the restarted
# gateway, sessions per second, default 500: 10,000 in 30 s needs at least
# 334/s; the gateway's own pacing then holds the logins back while the
# runtime lags behind live traffic; WhatsApp's default is 20); PROBE_RATE (picture lookups a second
# during the reconnect, default 100); SKIP_BUILD=1 (use the binaries in
# target/release, which must have been built with --features
# wagate/simulator); KEEP=1 (keep the work folder: logs, databases);
# PERF=1 (record the restarted gateway and wa-sim with `perf record -g`
# from the restart until all are connected: perf-gateway.data and
# perf-sim.data in the work folder, which is then kept).
# WAGATE__SERVER__WORKERS passes through. The gateway's per-credential rate
# limits are off (WAGATE__LIMITS__*=0): the benchmark is one API key.
#
# Each session is a connection on both sides: the script raises its soft
# open-files limit to the hard one (wa-sim inherits it; the gateway raises
# its own at start).
#
# Shared setup (work folder, cleanup, free ports, waiting for HTTP): bench/lib.sh.
#
# Needs: cargo, python3 (standard library only), curl.
set -euo pipefail

BENCH=sessions
. "$(dirname "$0")/lib.sh"

PARALLEL=${PARALLEL:-16}
SETTLE=${SETTLE:-5}
LINK_TIMEOUT=${LINK_TIMEOUT:-60}
RECONNECT_TIMEOUT=${RECONNECT_TIMEOUT:-300}
WRK_WAIT=${WRK_WAIT:-1800}
IDLE_WAIT=${IDLE_WAIT:-120}
RESUME_RATE=${RESUME_RATE:-500}
PROBE_RATE=${PROBE_RATE:-100}
PROBE_JID=14155550123@s.whatsapp.net
if [ "${PERF:-0}" = 1 ]; then
    need_tools perf
    KEEP=1 # the profiles stay in the work folder
fi
ORG=bench
if [ $# -gt 0 ]; then SIZES=("$@"); else SIZES=(100 500 1000); fi

need_tools cargo python3 curl
for n in "${SIZES[@]}"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 100000 ] || die "N must be 1..100000 (got '$n')"
done
ulimit -n "$(ulimit -Hn)"

build_sim_gateway
bench_work
# Private copies: a rebuild of target/release (say, without the simulator
# feature) during the run must not change the binary restarted below.
copy_binaries

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Waits until PID uses under 5% of one CPU over one second, twice in a row
# (at most IDLE_WAIT s); prints the seconds waited. whatsapp-rust finishes
# some work after a session reports `connected` (pre-key upload, signed
# pre-key rotation, device state flush), so memory is read, and the gateway
# restarted, only once that is done.
wait_idle() { # PID
    local pid=$1 start=$SECONDS quiet=0 a b
    while [ $((SECONDS - start)) -lt "$IDLE_WAIT" ]; do
        a=$(cpu_ticks "$pid"); sleep 1; b=$(cpu_ticks "$pid")
        if [ $(((b - a) * 100)) -lt $((TICKS * 5)) ]; then
            quiet=$((quiet + 1))
            [ "$quiet" -ge 2 ] && break
        else
            quiet=0
        fi
    done
    echo $((SECONDS - start))
}
machine_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8; exit}' /proc/stat; }
machine_total() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8; exit}' /proc/stat; }
TICKS=$(getconf CLK_TCK)
NCPU=$(nproc)

# Someone else's benchmark (bench/http.sh: wrk against the gateway and its
# bare actix-web baseline; or `cargo bench`) would share the CPUs with ours:
# wait for it to end (up to WRK_WAIT s), and say so if it was still running.
INTERFERENCE=""
http_bench_running() { pgrep -x wrk >/dev/null || pgrep -f 'bench/http\.sh|baseline|cargo bench| --bench' >/dev/null; }
wait_no_wrk() { # PHASE
    local deadline=$((SECONDS + WRK_WAIT)) said=0
    while http_bench_running; do
        if [ "$said" = 0 ]; then log "another benchmark (wrk, baseline server, cargo bench) is running; waiting for it to end before $1"; said=1; fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "still running after ${WRK_WAIT}s; measuring $1 anyway"
            INTERFERENCE="$INTERFERENCE $1"
            return 0
        fi
        sleep 2
    done
}
note_wrk() { # PHASE: an HTTP benchmark seen at the end of a phase
    if http_bench_running; then INTERFERENCE="$INTERFERENCE $1"; fi
}

# The python helper: links sessions with a bounded pool, or waits for the
# connected gauge. Standard library only; one keep-alive connection per
# worker thread.
cat >"$WORK/driver.py" <<'EOF'
import http.client, json, os, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

class Http:
    _local = threading.local()

    def __init__(self, hostport, headers=None):
        self.hostport, self.headers = hostport, headers or {}

    def _conn(self):
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        c = conns.get(self.hostport)
        if c is None:
            host, port = self.hostport.rsplit(":", 1)
            c = conns[self.hostport] = http.client.HTTPConnection(host, int(port), timeout=30)
        return c

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(3):
            c = self._conn()
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                payload = r.read()
                return r.status, payload
            except (http.client.HTTPException, OSError):
                c.close()
                self._local.conns.pop(self.hostport, None)
                if attempt == 2:
                    raise
                time.sleep(0.1)

def link(args):
    gw, sim, key, n, parallel, timeout = args[0], args[1], args[2], int(args[3]), int(args[4]), float(args[5])
    api = Http(gw, {"Authorization": "Bearer " + key})
    admin = Http(sim)

    def expect(status, payload, ok, what):
        if status not in ok:
            raise RuntimeError(f"{what}: HTTP {status} {payload[:200]!r}")
        return json.loads(payload) if payload else None

    def wait_status(sid, wanted, deadline):
        while True:
            s = expect(*api.call("GET", f"/api/v1/sessions/{sid}"), (200,), "get session")
            if s["status"] == wanted:
                return s
            if time.monotonic() > deadline:
                raise RuntimeError(f"session {sid} is {s['status']}, not {wanted}, after {timeout}s")
            time.sleep(0.05)

    probe = []

    def one(i):
        t0 = time.monotonic()
        deadline = t0 + timeout
        phone = f"1555{i:07d}"
        sid = expect(*api.call("POST", "/api/v1/sessions", {"name": f"bench {i}"}), (201,), "create")["id"]
        expect(*api.call("POST", f"/api/v1/sessions/{sid}/connect"), (200, 202), "connect")
        wait_status(sid, "pairing", deadline)
        while True:
            status, payload = api.call("GET", f"/api/v1/sessions/{sid}/qr")
            if status == 200:
                code = json.loads(payload)["code"]
                break
            if status != 409 or time.monotonic() > deadline:
                raise RuntimeError(f"qr of {sid}: HTTP {status} {payload[:200]!r}")
            time.sleep(0.05)
        expect(*admin.call("POST", "/admin/scan-qr", {"qr": code, "phone": phone}), (200,), f"scan-qr {phone}")
        wait_status(sid, "connected", deadline)
        if i == 0:
            probe.append(sid)
        return time.monotonic() - t0

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        latencies = sorted(pool.map(one, range(n)))
    wall = time.monotonic() - t0
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    cpu = os.times()
    print(json.dumps({"wall": wall, "p50": pct(0.50), "p99": pct(0.99), "max": latencies[-1],
                      "driver_cpu": cpu.user + cpu.system, "probe": probe[0]}))

def connected(gw):
    status, payload = Http(gw).call("GET", "/metrics")
    if status != 200:
        return -1
    for line in payload.decode().splitlines():
        if line.startswith('wagate_sessions{status="connected"}'):
            return int(float(line.split()[-1]))
    return 0

class Probe(threading.Thread):
    """GET a contact's picture through session SID, RATE times a second, from
    its first 200 on (until then the session is not connected yet: 501, or
    the gateway is not up) until stopped; records each answer's latency."""

    def __init__(self, gw, key, sid, jid, rate):
        super().__init__(daemon=True)
        self.api = Http(gw, {"Authorization": "Bearer " + key})
        self.path = f"/api/v1/sessions/{sid}/contacts/{jid}/picture"
        self.period = 1.0 / rate
        self.stop = threading.Event()
        self.latencies, self.errors, self.first = [], 0, None

    def run(self):
        next_at = time.monotonic()
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                status, _ = self.api.call("GET", self.path)
            except (OSError, http.client.HTTPException):
                status = None
            took = time.monotonic() - t0
            if self.first is None and status == 200:
                self.first = time.time()
            if self.first is not None:
                if status == 200:
                    self.latencies.append(took)
                else:
                    self.errors += 1
            next_at = max(next_at + self.period, time.monotonic())
            time.sleep(max(0.0, next_at - time.monotonic()))

    def summary(self):
        lat = sorted(self.latencies)
        if not lat:
            return {"n": 0, "errors": self.errors, "first": self.first}
        pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
        return {"n": len(lat), "p50": pct(0.50), "p99": pct(0.99), "max": lat[-1] * 1000,
                "errors": self.errors, "first": self.first}

def probe(args):
    # The picture route of a connected session for SECONDS, at RATE a second.
    gw, key, sid, jid, rate, seconds = args[0], args[1], args[2], args[3], float(args[4]), float(args[5])
    p = Probe(gw, key, sid, jid, rate)
    p.start()
    time.sleep(seconds)
    p.stop.set()
    p.join()
    print(json.dumps(p.summary()))

def wait_connected(args):
    # Polls the gauge every 100 ms from the moment the gateway answers;
    # prints the seconds since START (a time.time() stamp) when it reads N.
    # Meanwhile a Probe times the picture route of session PROBE_SID.
    gw, n, start, timeout = args[0], int(args[1]), float(args[2]), float(args[3])
    key, sid, jid, rate = args[4], args[5], args[6], float(args[7])
    p = Probe(gw, key, sid, jid, rate)
    p.start()
    first_ready = None
    last = -1
    result = None
    while result is None:
        try:
            c = connected(gw)
            if first_ready is None:
                first_ready = time.time() - start
            last = c
            if c >= n:
                result = {"ready": first_ready, "all": time.time() - start}
        except (OSError, http.client.HTTPException):
            pass
        if result is None and time.time() - start > timeout:
            result = {"ready": first_ready, "all": None, "connected": last}
        if result is None:
            time.sleep(0.1)
    p.stop.set()
    p.join()
    result["probe"] = p.summary()
    if result["probe"]["first"] is not None:
        result["probe"]["from"] = result["probe"]["first"] - start
    print(json.dumps(result))

if __name__ == "__main__":
    {"link": link, "connected": lambda a: print(connected(a[0])), "wait-connected": wait_connected,
     "probe": probe}[sys.argv[1]](sys.argv[2:])
EOF
driver() { python3 "$WORK/driver.py" "$@"; }
# jget2 KEY SUB: a number from a nested object, "-" when absent.
jget2() { python3 -c 'import json, sys; v = json.load(sys.stdin).get(sys.argv[1]) or {}; v = v.get(sys.argv[2]); print("-" if v is None else (round(v, 3) if isinstance(v, float) else v))' "$1" "$2"; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

RESULTS=$WORK/results.tsv
: >"$RESULTS"

run_size() { # N
    local n=$1 dir="$WORK/n$1" sim_port gw_port sim gw key gw_pid sim_pid
    mkdir -p "$dir"
    sim_port=$(free_port)
    gw_port=$(free_port)
    sim=127.0.0.1:$sim_port
    gw=127.0.0.1:$gw_port

    export WAGATE__SERVER__BIND=$gw
    export WAGATE__DATABASE__URL=sqlite://$dir/wagate.db
    export WAGATE__WHATSAPP__ADAPTER=live
    export WAGATE__WHATSAPP__LIVE__URL=ws://$sim/ws/chat
    export WAGATE__WHATSAPP__LIVE__VERSION=$WA_VERSION
    export WAGATE__LOG__LEVEL=warn
    export WAGATE__LIMITS__REQUESTS_PER_SECOND=0
    export WAGATE__LIMITS__WHATSAPP_CALLS_PER_MINUTE=0
    export WAGATE__WHATSAPP__LIVE__RESUME_RATE=$RESUME_RATE
    unset RUST_LOG

    log "N=$n: starting wa-sim on $sim and the gateway on $gw (work folder $dir)"
    "$SIM_BIN" --listen "$sim" --world examples/world.json >"$dir/sim.log" 2>&1 &
    sim_pid=$!
    PIDS+=("$sim_pid")
    wait_http "http://$sim/admin/health" "wa-sim"

    key=$("$GW_BIN" api-key create --org "$ORG" --name sessions-bench \
        --capabilities read,send,manage --json | jget key)
    "$GW_BIN" serve >"$dir/gateway-1.log" 2>&1 &
    gw_pid=$!
    PIDS+=("$gw_pid")
    wait_http "http://$gw/readyz" "gateway"
    sleep "$SETTLE"
    local rss0 sim_rss0 thr0 fd0
    rss0=$(rss_kib "$gw_pid"); thr0=$(threads "$gw_pid"); sim_rss0=$(rss_kib "$sim_pid"); fd0=$(fds "$gw_pid")

    # --- linking ---
    wait_no_wrk "linking (N=$n)"
    log "N=$n: linking $n sessions, $PARALLEL at a time"
    local b0 t0 g0 s0 b1 t1 g1 s1 out
    b0=$(machine_busy); t0=$(machine_total); g0=$(cpu_ticks "$gw_pid"); s0=$(cpu_ticks "$sim_pid")
    out=$(driver link "$gw" "$sim" "$key" "$n" "$PARALLEL" "$LINK_TIMEOUT") \
        || die "linking failed at N=$n (logs in $dir; KEEP=1 keeps them)"
    local settled
    settled=$(wait_idle "$gw_pid")
    b1=$(machine_busy); t1=$(machine_total); g1=$(cpu_ticks "$gw_pid"); s1=$(cpu_ticks "$sim_pid")
    note_wrk "linking (N=$n)"
    local link_wall link_p50 link_p99 driver_cpu gw_cpu_link sim_cpu_link other_link probe_sid
    link_wall=$(jget wall <<<"$out"); link_p50=$(jget p50 <<<"$out"); link_p99=$(jget p99 <<<"$out")
    probe_sid=$(jget probe <<<"$out")
    driver_cpu=$(jget driver_cpu <<<"$out")
    gw_cpu_link=$(awk -v d=$((g1 - g0)) -v hz="$TICKS" 'BEGIN { printf "%.1f", d / hz }')
    sim_cpu_link=$(awk -v d=$((s1 - s0)) -v hz="$TICKS" 'BEGIN { printf "%.1f", d / hz }')
    # Share of the machine's CPU time used by anything but the gateway, the
    # simulator and the driver during the phase (linking, then until idle).
    other_link=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v g=$((g1 - g0 + s1 - s0)) -v d="$driver_cpu" -v hz="$TICKS" \
        'BEGIN { o = (b - g - d * hz) / t * 100; if (o < 0) o = 0; printf "%.0f", o }')

    local c
    c=$(driver connected "$gw")
    [ "$c" = "$n" ] || die "after linking, the gauge reads $c connected, not $n"
    sleep "$SETTLE"
    c=$(driver connected "$gw")
    [ "$c" = "$n" ] || die "$SETTLE s after linking, the gauge reads $c connected, not $n"
    local rss1 hwm1 thr1 sim_rss1 fd1
    rss1=$(rss_kib "$gw_pid"); hwm1=$(hwm_kib "$gw_pid"); thr1=$(threads "$gw_pid"); sim_rss1=$(rss_kib "$sim_pid")
    fd1=$(fds "$gw_pid")
    cp "/proc/$gw_pid/smaps_rollup" "$dir/smaps_rollup-linked" 2>/dev/null || true
    log "N=$n: linked in ${link_wall}s, gateway idle ${settled}s later; gateway RSS $((rss0 / 1024)) → $((rss1 / 1024)) MiB, simulator $((sim_rss1 / 1024)) MiB"

    # The picture route with every session connected and the gateway idle,
    # for comparison with the reconnect below.
    local idle_probe
    idle_probe=$(driver probe "$gw" "$key" "$probe_sid" "$PROBE_JID" "$PROBE_RATE" 5)
    log "N=$n: picture lookups, idle: $idle_probe"

    # --- restart ---
    wait_no_wrk "restart (N=$n)"
    local stop0 stop_s start
    stop0=$(date +%s.%N)
    kill -TERM "$gw_pid"
    wait "$gw_pid" 2>/dev/null || true
    stop_s=$(awk -v a="$stop0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    log "N=$n: gateway stopped in ${stop_s}s; starting it again on the same database and device store"
    b0=$(machine_busy); t0=$(machine_total); s0=$(cpu_ticks "$sim_pid")
    start=$(python3 -c 'import time; print(time.time())')
    "$GW_BIN" serve >"$dir/gateway-2.log" 2>&1 &
    gw_pid=$!
    PIDS+=("$gw_pid")
    local perf_pids=()
    if [ "${PERF:-0}" = 1 ]; then
        perf record -q -F 499 -g -p "$gw_pid" -o "$dir/perf-gateway.data" >/dev/null 2>&1 &
        perf_pids+=($!)
        perf record -q -F 499 -g -p "$sim_pid" -o "$dir/perf-sim.data" >/dev/null 2>&1 &
        perf_pids+=($!)
    fi
    out=$(driver wait-connected "$gw" "$n" "$start" "$RECONNECT_TIMEOUT" "$key" "$probe_sid" "$PROBE_JID" "$PROBE_RATE")
    g1=$(cpu_ticks "$gw_pid"); b1=$(machine_busy); t1=$(machine_total); s1=$(cpu_ticks "$sim_pid")
    if [ "${#perf_pids[@]}" -gt 0 ]; then
        kill -INT "${perf_pids[@]}" 2>/dev/null || true
        wait "${perf_pids[@]}" 2>/dev/null || true
        log "N=$n: profiles in $dir/perf-gateway.data and $dir/perf-sim.data (perf report -i …)"
    fi
    note_wrk "restart (N=$n)"
    local ready_s all_s gw_cpu_re sim_cpu_re other_re
    ready_s=$(jget ready <<<"$out"); all_s=$(jget all <<<"$out")
    log "N=$n: picture lookups during the reconnect: $(jget probe <<<"$out")"
    local ip50 ip99 rp_n rp_from rp50 rp99 rpmax rp_err
    ip50=$(jget2 x p50 <<<"{\"x\": $idle_probe}"); ip99=$(jget2 x p99 <<<"{\"x\": $idle_probe}")
    rp_n=$(jget2 probe n <<<"$out"); rp_from=$(jget2 probe from <<<"$out")
    rp50=$(jget2 probe p50 <<<"$out"); rp99=$(jget2 probe p99 <<<"$out")
    rpmax=$(jget2 probe max <<<"$out"); rp_err=$(jget2 probe errors <<<"$out")
    [ -n "$all_s" ] || die "after the restart, only $(jget connected <<<"$out") of $n sessions connected within ${RECONNECT_TIMEOUT}s (logs in $dir)"
    gw_cpu_re=$(awk -v d="$g1" -v hz="$TICKS" 'BEGIN { printf "%.1f", d / hz }')
    sim_cpu_re=$(awk -v d=$((s1 - s0)) -v hz="$TICKS" 'BEGIN { printf "%.1f", d / hz }')
    other_re=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v g=$((g1 + s1 - s0)) \
        'BEGIN { o = (b - g) / t * 100; if (o < 0) o = 0; printf "%.0f", o }')
    local settled2
    settled2=$(wait_idle "$gw_pid")
    sleep "$SETTLE"
    local rss2
    rss2=$(rss_kib "$gw_pid")
    log "N=$n: all $n connected ${all_s}s after the restart (serving after ${ready_s}s); RSS $((rss2 / 1024)) MiB"

    # The gateway's warnings and errors (both runs), most frequent first.
    sed 's/\x1b\[[0-9;]*m//g' "$dir"/gateway-*.log | grep -E '^[^ ]+ +(WARN|ERROR) ' \
        | sed -E 's/^[^ ]+ +//; s/[0-9a-f]{8,}|[0-9]+/#/g' | cut -c1-110 | sort | uniq -c | sort -rn \
        >"$dir/warnings.txt" || true
    local warnings
    warnings=$(awk '{ n += $1 } END { print n + 0 }' "$dir/warnings.txt")
    awk -v n="$n" 'NR <= 3 { c = $1; $1 = ""; printf "N=%s: %s x%s\n", n, substr($0, 2), c }' "$dir/warnings.txt" >>"$WORK/warnings.txt"

    kill -TERM "$gw_pid" "$sim_pid" 2>/dev/null || true
    wait "$gw_pid" "$sim_pid" 2>/dev/null || true

    # n rss0 rss1 hwm1 rss2 thr0 thr1 sim_rss0 sim_rss1 link_wall p50 p99 gw_cpu_link sim_cpu_link
    # other_link stop ready all gw_cpu_re sim_cpu_re other_re warnings settled settled2
    # fd0 fd1 ip50 ip99 rp_n rp_from rp50 rp99 rpmax rp_err
    printf '%s\n' "$n $rss0 $rss1 $hwm1 $rss2 $thr0 $thr1 $sim_rss0 $sim_rss1 $link_wall $link_p50 $link_p99 $gw_cpu_link $sim_cpu_link $other_link $stop_s $ready_s $all_s $gw_cpu_re $sim_cpu_re $other_re $warnings $settled $settled2 $fd0 $fd1 $ip50 $ip99 $rp_n $rp_from $rp50 $rp99 $rpmax $rp_err" >>"$RESULTS"
}

for n in "${SIZES[@]}"; do
    run_size "$n"
done

# --- report ---
MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
REV=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then REV="$REV + uncommitted changes"; fi
touch "$WORK/warnings.txt"
echo
echo "wagate sessions benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $NCPU CPUs (${MODEL:-unknown}), $REV"
echo "live adapter (whatsapp-rust 0.7) against wa-sim on 127.0.0.1; linking $PARALLEL at a time; RSS read once"
echo "the gateway is idle (< 5% of a CPU for 2 s), plus ${SETTLE} s; resume_rate $RESUME_RATE/s after the restart;"
echo "picture lookups at $PROBE_RATE/s through the first session (idle: 5 s after linking; reconnect: from its"
echo "first 200 after the restart until all N are connected)"
python3 - "$RESULTS" "${INTERFERENCE# }" "$WORK/warnings.txt" <<'EOF'
import sys

MIB = 1024.0
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
interference = sys.argv[2]
print()
print(f"{'':14} {' linked ':-^70} {' restarted ':-^36}")
print(f"{'N':>5} {'RSS idle':>8} {'RSS':>8} {'per sess.':>9} {'peak':>8} {'sim RSS':>7} "
      f"{'link all':>8} {'p50/p99':>11} {'idle':>5} {'serving':>7} {'all conn.':>9} {'RSS':>8} {'per sess.':>9} "
      f"{'threads':>7}")
failed = []
notes = []
probes = []
for r in rows:
    (n, rss0, rss1, hwm1, rss2, thr0, thr1, srss0, srss1, wall, p50, p99, gcpu, scpu, other,
     stop, ready, allc, gcpu2, scpu2, other2, warnings, settled, settled2,
     fd0, fd1, ip50, ip99, rp_n, rp_from, rp50, rp99, rpmax, rp_err) = r
    n = int(n)
    per = (int(rss1) - int(rss0)) / n / MIB
    per2 = (int(rss2) - int(rss0)) / n / MIB
    print(f"{n:>5} {int(rss0) / MIB:>4.1f} MiB {int(rss1) / MIB:>4.0f} MiB {per:>5.2f} MiB {int(hwm1) / MIB:>4.0f} MiB "
          f"{int(srss1) / MIB:>3.0f} MiB {float(wall):>7.1f}s {float(p50):>5.2f}/{float(p99):<5.2f} {settled:>4}s "
          f"{float(ready):>6.2f}s {float(allc):>8.1f}s {int(rss2) / MIB:>4.0f} MiB {per2:>5.2f} MiB "
          f"{thr0:>3}→{thr1:<3}")
    fdper = (int(fd1) - int(fd0)) / n
    probes.append(f"{n:>5} {int(fd0):>5}→{int(fd1):<6} {fdper:>5.2f} {ip50:>7}/{ip99:<7} |            {rp_n:>6} {rp_from:>7} "
                  f"{rp50:>7}/{rp99:<7} {rpmax:>8} {rp_err:>6}")
    per_resume = float(gcpu2) * 1000 / n
    notes.append(f"N={n}: CPU linking (until idle): gateway {gcpu} s, simulator {scpu} s, others {other}% of the "
                 f"machine; restart: gateway {gcpu2} s ({per_resume:.2f} ms per resumed session), simulator "
                 f"{scpu2} s ({float(scpu2) * 1000 / n:.2f} ms), others {other2}%, idle {settled2} s "
                 f"after all connected; SIGTERM to exit {stop} s; gateway warnings/errors: {warnings}")
    if n >= 1000 and per > 0.5:
        failed.append(f"N={n}: {per:.2f} MiB per connected session (target <= 0.5 MiB)")
    if n >= 1000 and float(allc) > 30:
        failed.append(f"N={n}: {float(allc):.1f} s to reconnect all after a restart (target <= 30 s)")
    if n >= 1000 and per_resume > 3:
        failed.append(f"N={n}: {per_resume:.2f} ms of gateway CPU per resumed session (target <= 3 ms)")
    if n >= 1000 and (rp99 == "-" or float(rp99) >= 10):
        failed.append(f"N={n}: picture p99 {rp99} ms during the reconnect (target < 10 ms)")
print()
print("RSS idle: the gateway before linking (VmRSS); linked: all N linked and connected; per sess.: (RSS - RSS")
print("idle) / N; peak: VmHWM; sim RSS: the simulator; link all: wall time to link all N (create → connected);")
print("p50/p99: seconds for one session; idle: seconds until the gateway went idle after the last one connected;")
print("restarted: after SIGTERM and a new start on the same database and device store; serving: start → first")
print("/metrics answer; all conn.: start → wagate_sessions{status=\"connected\"} reads N; threads: OS threads of")
print("the gateway, idle → linked.")
print()
print(f"{'N':>5} {'gateway fds':>12} {'/sess':>5} {'idle p50/p99':>15} | reconnect: {'n':>6} {'from':>7} "
      f"{'p50/p99':>15} {'max':>8} {'errors':>6}")
for line in probes:
    print(line)
print("gateway fds: open descriptors before → after linking; /sess: their growth per session; picture lookups:")
print("p50/p99/max in ms, n answers; from: seconds after the restart of the first 200; errors: non-200 answers")
print("after the first 200.")
for line in notes:
    print(line)
for line in open(sys.argv[3]):
    print("  warning " + line.rstrip())
print("targets (N >= 1000): <= 0.5 MiB per connected session (linked); all reconnected within 30 s of a restart;")
print("picture p99 < 10 ms during the reconnect; <= 3 ms of gateway CPU per resumed session (start to all connected).")
if interference:
    print(f"WARNING: another benchmark (wrk, baseline server, cargo bench) was running during: {interference}; "
          "times are noisy.")
if not any(int(r[0]) >= 1000 for r in rows):
    print("(no run at N >= 1000: targets not checked)")
elif failed:
    print("MISSED:")
    for f in failed:
        print("  - " + f)
else:
    print("all targets met")
EOF
