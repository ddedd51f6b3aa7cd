# Shared setup of the bench scripts that run the gateway against wa-sim
# (bench/messages.sh). Source it after `set -euo pipefail`:
#
#   BENCH=messages            # names the work folder and the error messages
#   . "$(dirname "$0")/lib.sh"
#
# It defines:
#
#   ROOT                      the workspace (the caller's working directory becomes it)
#   log MSG / die MSG         progress on stderr / a setup failure (exit 1)
#   need_tools TOOL…          die unless each is on PATH
#   build_sim_gateway         cargo build --release -p wa-sim -p wagate --features
#                             wagate/simulator, unless SKIP_BUILD=1
#   bench_work                a fresh work folder WORK; every pid appended to PIDS is
#                             stopped on exit (SIGTERM, then waited for), and WORK is
#                             removed unless KEEP=1
#   copy_binaries             private copies SIM_BIN, GW_BIN of target/release's wa-sim
#                             and wagate (a rebuild during the run changes nothing)
#   free_port                 a free TCP port on 127.0.0.1
#   wait_http URL NAME        until URL answers 2xx (at most 20 s), or die
#   jget KEY                  a top-level field of the JSON on stdin
#   start_sim ADDR LOG [WORLD]  wa-sim on ADDR with WORLD (default
#                             examples/world.json); sets SIM_PID
#   live_gateway_env GW SIM DB  exports the gateway's settings: bind GW, SQLite DB,
#                             live adapter against wa-sim at SIM, log level warn,
#                             per-credential and WhatsApp-call limits off
#   mint_key ORG NAME CAPS    prints a new API key (wagate api-key create)
#   start_gateway LOG         `wagate serve` with the exported settings; sets GW_PID,
#                             waits for /readyz
#   link_sessions GW SIM KEY N PARALLEL TIMEOUT OUT
#                             links N sessions through the API and wa-sim's phone
#                             (create → connect → `pairing` → GET qr → POST
#                             /admin/scan-qr with phone 1555000xxxx of its own →
#                             `connected`), PARALLEL at a time; writes "session-id
#                             phone" lines to OUT (in order) and prints
#                             {"wall", "p50", "p99", "max"} (seconds)
#   connected_gauge GW        wagate_sessions{status="connected"} of /metrics
#
# Needs: cargo, python3 (standard library only), curl.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH=${BENCH:-bench}
WA_VERSION=2.3000.1042742319

log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'bench/%s.sh: %s\n' "$BENCH" "$*" >&2; exit 1; }

need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is required"
    done
}

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
build_sim_gateway() {
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        log "building release binaries (wa-sim, wagate with the simulator feature)"
        cargo build --release -p wa-sim -p wagate --features wagate/simulator >&2 \
            || die "the release build failed"
    fi
}

PIDS=()
_bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "${WORK:-}" ]; then
        if [ "${KEEP:-0}" = 1 ]; then log "work folder kept: $WORK"; else rm -rf "$WORK"; fi
    fi
}
bench_work() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/wagate-$BENCH.XXXXXX")
    trap _bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

copy_binaries() {
    local bin
    for bin in wa-sim wagate; do
        [ -x "$TARGET_DIR/release/$bin" ] || die "$TARGET_DIR/release/$bin missing (build without SKIP_BUILD=1)"
        cp "$TARGET_DIR/release/$bin" "$WORK/$bin"
    done
    SIM_BIN=$WORK/wa-sim
    GW_BIN=$WORK/wagate
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # URL NAME
    local i
    for i in $(seq 1 400); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    die "$2 did not answer at $1 (KEEP=1 keeps the logs in the work folder)"
}

jget() { python3 -c 'import json, sys; v = json.load(sys.stdin)[sys.argv[1]]; print("" if v is None else v)' "$1"; }

start_sim() { # ADDR LOG [WORLD]
    "$SIM_BIN" --listen "$1" --world "${3:-$ROOT/examples/world.json}" >"$2" 2>&1 &
    SIM_PID=$!
    PIDS+=("$SIM_PID")
    wait_http "http://$1/admin/health" "wa-sim"
}

live_gateway_env() { # GW SIM DB
    export WAGATE__SERVER__BIND=$1
    export WAGATE__DATABASE__URL=sqlite://$3
    export WAGATE__WHATSAPP__ADAPTER=live
    export WAGATE__WHATSAPP__LIVE__URL=ws://$2/ws/chat
    export WAGATE__WHATSAPP__LIVE__VERSION=$WA_VERSION
    export WAGATE__LOG__LEVEL=${WAGATE__LOG__LEVEL:-warn}
    # One API key drives everything: no per-credential or WhatsApp-call pacing.
    export WAGATE__LIMITS__REQUESTS_PER_SECOND=0
    export WAGATE__LIMITS__WHATSAPP_CALLS_PER_MINUTE=0
    unset RUST_LOG
}

mint_key() { # ORG NAME CAPS
    local key
    key=$("$GW_BIN" api-key create --org "$1" --name "$2" --capabilities "$3" --json | jget key) \
        || die "cannot create an API key"
    [ -n "$key" ] || die "cannot create an API key"
    echo "$key"
}

start_gateway() { # LOG
    "$GW_BIN" serve >"$1" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_http "http://$WAGATE__SERVER__BIND/readyz" "gateway"
}

link_sessions() { # GW SIM KEY N PARALLEL TIMEOUT OUT
    python3 - "$@" <<'EOF'
import http.client, json, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

gw, sim, key, n, parallel, timeout, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
local = threading.local()

def call(hostport, method, path, body=None, auth=True):
    conns = getattr(local, "conns", None)
    if conns is None:
        conns = local.conns = {}
    headers = {"Authorization": "Bearer " + key} if auth else {}
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    for attempt in range(3):
        c = conns.get(hostport)
        if c is None:
            host, port = hostport.rsplit(":", 1)
            c = conns[hostport] = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            return r.status, r.read()
        except (http.client.HTTPException, OSError):
            c.close()
            conns.pop(hostport, None)
            if attempt == 2:
                raise
            time.sleep(0.1)

def expect(result, ok, what):
    status, payload = result
    if status not in ok:
        raise RuntimeError(f"{what}: HTTP {status} {payload[:200]!r}")
    return json.loads(payload) if payload else None

def wait_status(sid, wanted, deadline):
    while True:
        s = expect(call(gw, "GET", f"/api/v1/sessions/{sid}"), (200,), "get session")
        if s["status"] == wanted:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"session {sid} is {s['status']}, not {wanted}, after {timeout}s")
        time.sleep(0.05)

def one(i):
    t0 = time.monotonic()
    deadline = t0 + timeout
    phone = f"1555{i:07d}"
    sid = expect(call(gw, "POST", "/api/v1/sessions", {"name": f"bench {i}"}), (201,), "create")["id"]
    expect(call(gw, "POST", f"/api/v1/sessions/{sid}/connect"), (200, 202), "connect")
    wait_status(sid, "pairing", deadline)
    while True:
        status, payload = call(gw, "GET", f"/api/v1/sessions/{sid}/qr")
        if status == 200:
            code = json.loads(payload)["code"]
            break
        if status != 409 or time.monotonic() > deadline:
            raise RuntimeError(f"qr of {sid}: HTTP {status} {payload[:200]!r}")
        time.sleep(0.05)
    expect(call(sim, "POST", "/admin/scan-qr", {"qr": code, "phone": phone}, auth=False), (200,), f"scan-qr {phone}")
    wait_status(sid, "connected", deadline)
    return sid, phone, time.monotonic() - t0

t0 = time.monotonic()
try:
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        linked = list(pool.map(one, range(n)))
except Exception as e:
    sys.exit(f"linking: {e}")
wall = time.monotonic() - t0
with open(out, "w") as f:
    for sid, phone, _ in linked:
        f.write(f"{sid} {phone}\n")
lat = sorted(x[2] for x in linked)
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(json.dumps({"wall": wall, "p50": pct(0.50), "p99": pct(0.99), "max": lat[-1]}))
EOF
}

connected_gauge() { # GW
    { curl -fsS "http://$1/metrics" 2>/dev/null || true; } \
        | awk '/^wagate_sessions\{status="connected"\}/ { printf "%d\n", $2; found = 1 } END { if (!found) print 0 }'
}
