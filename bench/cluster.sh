#!/usr/bin/env bash
# Several gateways on one PostgreSQL (issue 19, ../shared/spec/cluster.md):
# a throwaway PostgreSQL server, one wa-sim, three gateways (release build,
# live adapter, default cluster timings) and N linked sessions, through
# every scenario of cluster.md's table, each figure printed against its
# bound. See docs/PERFORMANCE.md.
#
#   bench/cluster.sh              # N = 300
#   bench/cluster.sh 100          # fewer sessions
#   SKIP_BUILD=1 KEEP=1 bench/cluster.sh
#
# Scenarios, in order (each figure from wa-sim's GET /admin/logins: a
# duplicate connection is a login of a device opened while another login
# of that device was open; a device's downtime is the gap between one
# login's close and its next login):
#
#   1. kill -9 of the node owning most: every session connected again
#      <= 20 s after the kill; 0 duplicate connections.
#   2. the node comes back (a new node joins): sessions rebalance to it;
#      0 duplicate connections.
#   3. kill -STOP of the node owning most for 15 s, then -CONT: at most one
#      replaced connection per moved session, none after SIGCONT; the paused
#      node is fenced: its refused writes (wagate_fenced_writes_total; a
#      contact writes to every account while it is paused) and its
#      self-fences (wagate_self_fences_total) are counted.
#   4. one node cut from PostgreSQL: it reaches the database through a TCP
#      proxy this script runs (python3) and cuts; it self-fences by ~6 s
#      (the time of its "self-fenced" log line), the others claim its
#      sessions; 0 duplicate connections. Then the proxy lets it through
#      again and it rejoins.
#   5. SIGTERM of the node owning most (drain): no session down > 5 s;
#      0 duplicate connections.
#   6. API on PostgreSQL: GET picture with an API key (the fake adapter,
#      wrk as bench/http.sh runs it) on a gateway on PostgreSQL and on one
#      on SQLite, alternating: PostgreSQL >= 90 % of SQLite's req/s.
#
# Settings (environment): PARALLEL (linking pool, default 16); LINK_TIMEOUT
# (s per session, default 120); SETTLE_TIMEOUT (s for a scenario to settle,
# default 300); DURATION (wrk -d, default 10s), CONNECTIONS (default 64),
# ROUNDS (API rounds, default 3); SKIP_BUILD=1; KEEP=1 (keep the work
# folder: logs, the database). The gateways' per-credential limits are off
# (one API key drives everything).
#
# Needs: cargo, python3 (standard library only), curl, wrk, PostgreSQL's
# server binaries (initdb, postgres: /usr/lib/postgresql/*/bin or PATH;
# run as the `postgres` user when started as root).
set -euo pipefail

BENCH=cluster
. "$(dirname "$0")/lib.sh"

N=${1:-300}
PARALLEL=${PARALLEL:-16}
LINK_TIMEOUT=${LINK_TIMEOUT:-120}
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-300}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
SECRET=bench-cluster-secret-0123456789abcdef
CONTACT=14155550123
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number (got '$N')"

need_tools cargo python3 curl wrk
ulimit -n "$(ulimit -Hn)"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$PGBIN/initdb" ] || PGBIN=$(dirname "$(command -v initdb || echo /nonexistent/initdb)")
[ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/postgres" ] || die "PostgreSQL's server binaries (initdb, postgres) are required"

build_sim_gateway
bench_work
copy_binaries
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- a throwaway PostgreSQL (the postgres user when root) ---
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK" "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U wagate --auth=trust --no-sync -E UTF8 \
    --locale=C --no-instructions >"$WORK/initdb.log" 2>&1 || die "initdb failed: $(cat "$WORK/initdb.log")"
PG_PORT=$(free_port)
as_pg "$PGBIN/postgres" -D "$WORK/pg/data" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$WORK/pg" -c max_connections=500 -c shared_buffers=128MB \
    >"$WORK/postgres.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.1
done
# The server itself (runuser's child) is stopped on exit too.
PIDS+=("$(head -n1 "$WORK/pg/data/postmaster.pid")")
"$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U wagate bench || die "createdb failed"
"$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U wagate api || die "createdb failed"
PG_URL=postgres://wagate@127.0.0.1:$PG_PORT/bench

# --- the TCP proxy node C reaches PostgreSQL through: SIGUSR1 cuts it
# (every connection closed, new ones refused), SIGUSR2 lets it through ---
cat >"$WORK/proxy.py" <<'EOF'
import asyncio, signal, sys
listen, target = int(sys.argv[1]), int(sys.argv[2])
cut = False
open_conns = set()

async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        w.close()

async def serve(cr, cw):
    if cut:
        cw.close()
        return
    try:
        sr, sw = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        cw.close()
        return
    pair = (cw, sw)
    open_conns.add(pair)
    await asyncio.gather(pipe(cr, sw), pipe(sr, cw))
    open_conns.discard(pair)

def set_cut(value):
    global cut
    cut = value
    if value:
        for cw, sw in list(open_conns):
            for w in (cw, sw):
                w.transport.abort()

async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, set_cut, True)
    loop.add_signal_handler(signal.SIGUSR2, set_cut, False)
    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()

asyncio.run(main())
EOF
PROXY_PORT=$(free_port)
python3 "$WORK/proxy.py" "$PROXY_PORT" "$PG_PORT" &
PROXY_PID=$!
PIDS+=("$PROXY_PID")

# --- wa-sim and three gateways ---
SIM=127.0.0.1:$(free_port)
start_sim "$SIM" "$WORK/sim.log"
live_gateway_env 127.0.0.1:0 "$SIM" "$WORK/unused.db"
export WAGATE__DATABASE__URL=$PG_URL
export WAGATE__CLUSTER__SECRET=$SECRET
KEY=$(mint_key bench bench read,send,manage,admin)
NAMES=(a b c)
declare -A PORT PID_OF
for name in "${NAMES[@]}"; do PORT[$name]=$(free_port); done
start_node() { # NAME
    local name=$1 url=$PG_URL
    # Node c reaches the database through the proxy.
    [ "$name" = c ] && url=postgres://wagate@127.0.0.1:$PROXY_PORT/bench
    WAGATE__SERVER__BIND=127.0.0.1:${PORT[$name]} \
        WAGATE__CLUSTER__ADVERTISE_URL=http://127.0.0.1:${PORT[$name]} \
        WAGATE__DATABASE__URL=$url WAGATE__LOG__FORMAT=json \
        "$GW_BIN" serve >>"$WORK/node-$name.log" 2>&1 &
    PID_OF[$name]=$!
    PIDS+=("${PID_OF[$name]}")
    wait_http "http://127.0.0.1:${PORT[$name]}/readyz" "node $name"
}
for name in "${NAMES[@]}"; do start_node "$name"; done
log "PostgreSQL on $PG_PORT (node c through the proxy on $PROXY_PORT), wa-sim on $SIM, nodes a b c on ${PORT[a]} ${PORT[b]} ${PORT[c]}"

metric() { # NAME METRIC
    { curl -fsS --max-time 5 "http://127.0.0.1:${PORT[$1]}/metrics" 2>/dev/null || true; } \
        | awk -v m="$2" '$1 == m { printf "%d\n", $2; found = 1 } END { if (!found) print 0 }'
}
now_ms() { python3 -c 'import time; print(int(time.time() * 1000))'; }

# The cluster's state, from the database and wa-sim: the sessions each node
# owns (by name), and the devices wa-sim has logged in.
cat >"$WORK/state.py" <<'EOF'
import json, subprocess, sys, urllib.request
sim, gw_bin = sys.argv[1], sys.argv[2]
ports = dict(a.split("=") for a in sys.argv[3:])
out = subprocess.run([gw_bin, "cluster", "status", "--json"], capture_output=True, text=True, check=True).stdout
owned = {}
for node in json.loads(out)["nodes"]:
    if node["draining"]:
        continue
    port = node["advertiseUrl"].rsplit(":", 1)[1]
    name = next((n for n, p in ports.items() if p == port), "?")
    owned[name] = node["sessions"]
health = json.load(urllib.request.urlopen(f"http://{sim}/admin/health", timeout=10))
print(json.dumps({"owned": owned, "loggedIn": health["loggedIn"]}))
EOF
state() { python3 "$WORK/state.py" "$SIM" "$GW_BIN" "a=${PORT[a]}" "b=${PORT[b]}" "c=${PORT[c]}"; }
busiest() { # among live nodes
    state | python3 -c 'import json,sys; o=json.load(sys.stdin)["owned"]; print(max(o, key=o.get))'
}
owned_by() { state | python3 -c 'import json,sys; print(json.load(sys.stdin)["owned"].get(sys.argv[1], 0))' "$1"; }

# Until every session is owned by a live node, wa-sim has N devices logged
# in and the owners' counts have not moved for 3 s (rebalancing done);
# prints the seconds it took.
settle() { # WHAT
    local start=$SECONDS last="" same=0 s
    while :; do
        s=$(state)
        if python3 -c 'import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if sum(s["owned"].values()) == int(sys.argv[2]) and s["loggedIn"] == int(sys.argv[2]) else 1)' "$s" "$N"; then
            if [ "$s" = "$last" ]; then same=$((same + 1)); else same=0; fi
            [ "$same" -ge 3 ] && break
        fi
        last=$s
        [ $((SECONDS - start)) -lt "$SETTLE_TIMEOUT" ] || die "$1: not settled after ${SETTLE_TIMEOUT}s: $s"
        sleep 1
    done
    echo $((SECONDS - start - 3))
}

# What wa-sim's logins say since SINCE (Unix ms): duplicate connections,
# replaced ones, the longest downtime of a device whose login closed since,
# and when the last of those devices was logged in again (s after SINCE).
seen() { # SINCE_MS
    curl -fsS "http://$SIM/admin/logins" | python3 -c '
import json, sys
since = int(sys.argv[1])
dup = rep = 0
down = back = 0
for d in json.load(sys.stdin)["devices"]:
    logins = sorted(d["logins"], key=lambda l: l["openedAtMs"])
    for i, l in enumerate(logins):
        if l["openedAtMs"] >= since and any(e["closedAtMs"] is None or e["closedAtMs"] > l["openedAtMs"] for e in logins[:i]):
            dup += 1
        if l["cause"] == "replaced" and (l["closedAtMs"] or 0) >= since:
            rep += 1
        if l["closedAtMs"] is not None and l["closedAtMs"] >= since and i + 1 < len(logins):
            nxt = logins[i + 1]["openedAtMs"]
            down = max(down, nxt - l["closedAtMs"])
            back = max(back, nxt - since)
print(json.dumps({"duplicates": dup, "replaced": rep, "longest_down_s": down / 1000, "all_back_s": back / 1000}))
' "$1"
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

RESULTS=$WORK/results.txt
: >"$RESULTS"
result() { # SCENARIO FIGURE BOUND OK
    printf '%-34s %-44s %-22s %s\n' "$1" "$2" "$3" "$4" | tee -a "$RESULTS" >&2
}
check() { python3 -c "import sys; print('met' if ($1) else 'MISSED')"; }

# --- N linked sessions, through node a; they spread by hashing ---
log "linking $N sessions through node a ($PARALLEL at a time)"
LINKED=$(link_sessions "127.0.0.1:${PORT[a]}" "$SIM" "$KEY" "$N" "$PARALLEL" "$LINK_TIMEOUT" "$WORK/sessions.txt") \
    || die "linking failed"
log "linked: $LINKED"
T=$(now_ms)
took=$(settle "balancing")
s=$(seen "$T")
log "balanced over 3 nodes ${took}s after linking: $(state)"
result "link + balance over 3 nodes" "duplicates $(field "$s" duplicates)" "0" "$(check "$(field "$s" duplicates) == 0")"

# --- 1. kill -9 ---
victim=$(busiest)
owned=$(owned_by "$victim")
T=$(now_ms)
kill -KILL "${PID_OF[$victim]}"
took=$(settle "kill -9")
s=$(seen "$T")
back=$(field "$s" all_back_s)
result "kill -9 (node owning $owned)" "all connected again ${back} s after" "<= 20 s" "$(check "$back <= 20")"
result "" "duplicates $(field "$s" duplicates)" "0" "$(check "$(field "$s" duplicates) == 0")"

# --- 2. the node comes back: a join ---
T=$(now_ms)
start_node "$victim"
took=$(settle "join")
s=$(seen "$T")
result "a node joins" "rebalanced in ${took} s; longest down $(field "$s" longest_down_s) s" "-" "-"
result "" "duplicates $(field "$s" duplicates)" "0" "$(check "$(field "$s" duplicates) == 0")"

# --- 3. SIGSTOP 15 s, then SIGCONT ---
paused=$(busiest)
moved=$(owned_by "$paused")
T=$(now_ms)
kill -STOP "${PID_OF[$paused]}"
STOPPED=$SECONDS
# A contact writes to every account: the paused node's connections hold
# messages its clients will try to record when they wake.
cut -d' ' -f2 "$WORK/sessions.txt" | xargs -P 8 -I{} curl -fsS -o /dev/null -X POST \
    "http://$SIM/admin/accounts/{}/messages" -H 'Content-Type: application/json' \
    -d "{\"from\": \"$CONTACT\", \"text\": \"while a gateway is paused\"}" || true
sleep $((15 - (SECONDS - STOPPED) > 0 ? 15 - (SECONDS - STOPPED) : 0))
s=$(seen "$T")
TC=$(now_ms)
kill -CONT "${PID_OF[$paused]}"
took=$(settle "SIGCONT")
sleep 2
after=$(seen "$TC")
fenced=$(metric "$paused" wagate_fenced_writes_total)
self=$(metric "$paused" wagate_self_fences_total)
result "SIGSTOP 15 s (node owning $moved)" "replaced $(field "$s" replaced) while stopped" "<= $moved" "$(check "$(field "$s" replaced) <= $moved")"
result "" "after SIGCONT: replaced $(field "$after" replaced), duplicates $(field "$after" duplicates)" "0" "$(check "$(field "$after" replaced) + $(field "$after" duplicates) == 0")"
# Fenced either way: a write its clients tried after waking was refused
# (the epoch moved on), or it fenced itself first (its renewal came too
# late) and stopped every client before they wrote.
result "" "fenced: $fenced writes refused, $self self-fence(s)" "> 0" "$(check "$fenced + $self > 0")"

# --- 4. one node cut from PostgreSQL (node c, through the proxy) ---
owned=$(owned_by c)
before=$(grep -c 'self-fenced' "$WORK/node-c.log" || true)
T=$(now_ms)
CUT=$(date +%s.%N)
kill -USR1 "$PROXY_PID"
fenced_after=""
while [ -z "$fenced_after" ]; do
    if [ "$(grep -c 'self-fenced' "$WORK/node-c.log" || true)" -gt "$before" ]; then
        fenced_after=$(python3 -c "import time; print(round(time.time() - $CUT, 1))")
    fi
    python3 -c "import time,sys; sys.exit(0 if time.time() - $CUT < 60 else 1)" || die "node c never self-fenced"
    sleep 0.1
done
# Everything back on a and b (c cannot reach the database: it claims nothing).
deadline=$((SECONDS + SETTLE_TIMEOUT))
gone=$((SECONDS + 15))
while [ "$(curl -fsS "http://$SIM/admin/health" | jget loggedIn)" = "$N" ] && [ "$SECONDS" -lt "$gone" ]; do
    sleep 0.2
done
until [ "$(curl -fsS "http://$SIM/admin/health" | jget loggedIn)" = "$N" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "cut: sessions not back"
    sleep 0.5
done
s=$(seen "$T")
result "node c cut from PostgreSQL ($owned)" "self-fenced ${fenced_after} s after the cut" "~6 s" "$(check "$fenced_after <= 7")"
result "" "all connected again $(field "$s" all_back_s) s after" "-" "-"
result "" "duplicates $(field "$s" duplicates)" "0" "$(check "$(field "$s" duplicates) == 0")"
kill -USR2 "$PROXY_PID"
took=$(settle "reconnecting node c")
s=$(seen "$T")
log "node c back: rebalanced ${took}s later; duplicates since the cut $(field "$s" duplicates)"

# --- 5. SIGTERM drains ---
drained=$(busiest)
owned=$(owned_by "$drained")
T=$(now_ms)
kill -TERM "${PID_OF[$drained]}"
wait "${PID_OF[$drained]}" || die "the drained node exited with an error"
took=$(settle "drain")
s=$(seen "$T")
down=$(field "$s" longest_down_s)
result "SIGTERM (node owning $owned)" "longest a session was down ${down} s" "<= 5 s" "$(check "$down <= 5")"
result "" "duplicates $(field "$s" duplicates)" "0" "$(check "$(field "$s" duplicates) == 0")"

# --- 6. API: picture with an API key, PostgreSQL vs SQLite ---
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.1f %.0f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(99), summary.errors.status))
end
EOF
api_gateway() { # NAME DB_URL: a one-node gateway on the fake adapter; prints "PORT KEY SESSION"
    local port key sid
    port=$(free_port)
    key=$(env WAGATE__DATABASE__URL="$2" WAGATE__WHATSAPP__ADAPTER=fake \
        "$GW_BIN" api-key create --org bench --name "$1" --capabilities read,send,manage,admin --json | jget key)
    env WAGATE__DATABASE__URL="$2" WAGATE__WHATSAPP__ADAPTER=fake WAGATE__SERVER__BIND=127.0.0.1:$port \
        WAGATE__CLUSTER__ADVERTISE_URL=http://127.0.0.1:$port "$GW_BIN" serve >"$WORK/api-$1.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$port/readyz" "API gateway $1"
    sid=$(curl -fsS -X POST "http://127.0.0.1:$port/api/v1/sessions" -H "Authorization: Bearer $key" \
        -H 'Content-Type: application/json' -d '{"name":"api"}' | jget id)
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$port/api/v1/sessions/$sid/connect" -H "Authorization: Bearer $key"
    curl -fsS -o /dev/null "http://127.0.0.1:$port/api/v1/sessions/$sid/qr" -H "Authorization: Bearer $key"
    echo "$port $key $sid"
}
# The cluster is stopped first: the API figures are the two gateways alone.
for name in "${NAMES[@]}"; do kill -TERM "${PID_OF[$name]}" 2>/dev/null || true; done
for name in "${NAMES[@]}"; do wait "${PID_OF[$name]}" 2>/dev/null || true; done
# (Not in a subshell: their pids must reach PIDS.)
api_gateway postgres "postgres://wagate@127.0.0.1:$PG_PORT/api" >"$WORK/api-postgres.txt"
api_gateway sqlite "sqlite://$WORK/api.db" >"$WORK/api-sqlite.txt"
read -r PG_API_PORT PG_API_KEY PG_API_SID <"$WORK/api-postgres.txt"
read -r SQ_API_PORT SQ_API_KEY SQ_API_SID <"$WORK/api-sqlite.txt"
api_run() { # PORT KEY SESSION
    local url="http://127.0.0.1:$1/api/v1/sessions/$3/contacts/$CONTACT@s.whatsapp.net/picture"
    wrk -t2 -c "$CONNECTIONS" -d 2s -H "Authorization: Bearer $2" "$url" >/dev/null
    wrk -t2 -c "$CONNECTIONS" -d "$DURATION" -s "$WORK/report.lua" -H "Authorization: Bearer $2" "$url" \
        | awk '/^RESULT/ {print $2, $3, $4}'
}
: >"$WORK/api.txt"
for round in $(seq 1 "$ROUNDS"); do
    sq=$(api_run "$SQ_API_PORT" "$SQ_API_KEY" "$SQ_API_SID")
    pg=$(api_run "$PG_API_PORT" "$PG_API_KEY" "$PG_API_SID")
    echo "$round sqlite $sq" >>"$WORK/api.txt"
    echo "$round postgres $pg" >>"$WORK/api.txt"
    log "round $round: SQLite $sq, PostgreSQL $pg (req/s p99_us non2xx)"
done
read -r SQ_RPS PG_RPS < <(python3 -c '
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = lambda db: statistics.median(float(r[2]) for r in rows if r[1] == db)
print(med("sqlite"), med("postgres"))' "$WORK/api.txt")
ratio=$(python3 -c "print(round($PG_RPS / $SQ_RPS * 100))")
result "API: picture + API key" "PostgreSQL $PG_RPS req/s = ${ratio} % of SQLite $SQ_RPS" ">= 90 %" "$(check "$ratio >= 90")"

echo
echo "bench/cluster.sh: N = $N linked sessions, 3 gateways (release, live adapter, heartbeat 2 s, self-fence 6 s, lease 10 s), one wa-sim, PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}')"
echo "commit $(git rev-parse --short HEAD)$([ -n "$(git status --porcelain --untracked-files=no)" ] && echo +changes); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; linking: $LINKED"
printf '%-34s %-44s %-22s %s\n' scenario figure bound verdict
cat "$RESULTS"
