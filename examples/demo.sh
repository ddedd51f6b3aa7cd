#!/usr/bin/env bash
# One-command offline demo of the whole gateway: wa-sim plays WhatsApp and
# the phone, wagate runs its live adapter (whatsapp-rust) against it.
#
#   ./examples/demo.sh
#
# It builds both, starts them on 127.0.0.1:8090 (simulator) and :8080
# (gateway) with a throw-away database, creates an API key and a session,
# shows the session's QR code, has the simulator's phone scan it, calls the
# contact routes, and stops both on exit. Needs curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

SIM=${SIM:-127.0.0.1:8090}
GW=${GW:-127.0.0.1:8080}
PHONE=15550001111
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

step "Building wa-sim and wagate (with the simulator feature)"
cargo build -q -p wa-sim -p wagate --features wagate/simulator

export WAGATE__SERVER__BIND=$GW
export WAGATE__DATABASE__URL="sqlite://$work/wagate.db"
export WAGATE__WHATSAPP__ADAPTER=live
export WAGATE__WHATSAPP__LIVE__URL="ws://$SIM/ws/chat"
export WAGATE__WHATSAPP__LIVE__VERSION=2.3000.1042742319
export WAGATE__LOG__LEVEL=warn

step "Starting the simulator on $SIM and the gateway on $GW"
target/debug/wa-sim --listen "$SIM" --world examples/world.json >"$work/sim.log" 2>&1 &
pids+=($!)
target/debug/wagate >"$work/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://$GW/readyz" >/dev/null && curl -sf "http://$SIM/admin/health" >/dev/null && break; sleep 0.1; done

step "An API key for organization acme"
KEY=$(target/debug/wagate api-key create --org acme --name demo --capabilities read,send,manage --json | json "['key']")
AUTH="Authorization: Bearer $KEY"
echo "${KEY:0:12}…"

step "A session, connected: it starts pairing"
SESSION=$(curl -sf -X POST "http://$GW/api/v1/sessions" -H "$AUTH" -H 'Content-Type: application/json' -d '{"name":"demo"}' | json "['id']")
curl -sf -X POST "http://$GW/api/v1/sessions/$SESSION/connect" -H "$AUTH"; echo
for _ in $(seq 1 100); do
  status=$(curl -sf "http://$GW/api/v1/sessions/$SESSION" -H "$AUTH" | json "['status']")
  [ "$status" = pairing ] && break; sleep 0.1
done

step "Its QR code (also as ?format=png or ?format=svg)"
QR=$(curl -sf "http://$GW/api/v1/sessions/$SESSION/qr" -H "$AUTH")
echo "$QR"
CODE=$(echo "$QR" | json "['code']")

step "The simulator's phone ($PHONE) scans it"
curl -sf -X POST "http://$SIM/admin/scan-qr" -H 'Content-Type: application/json' \
  -d "{\"qr\": \"$CODE\", \"phone\": \"$PHONE\"}"; echo
for _ in $(seq 1 100); do
  status=$(curl -sf "http://$GW/api/v1/sessions/$SESSION" -H "$AUTH" | json "['status']")
  [ "$status" = connected ] && break; sleep 0.1
done
curl -sf "http://$GW/api/v1/sessions/$SESSION" -H "$AUTH"; echo

C="http://$GW/api/v1/sessions/$SESSION/contacts"
step "Contact routes"
echo "picture:  $(curl -s "$C/14155550123@s.whatsapp.net/picture" -H "$AUTH")"
echo "hidden:   $(curl -s "$C/14155550155@s.whatsapp.net/picture" -H "$AUTH")"
echo "about:    $(curl -s "$C/14155550123@s.whatsapp.net/about" -H "$AUTH")"
echo "block:    HTTP $(curl -s -o /dev/null -w '%{http_code}' -X POST "$C/14155550123@s.whatsapp.net/block" -H "$AUTH")"
echo "blocklist: $(curl -s "http://$GW/api/v1/sessions/$SESSION/blocklist" -H "$AUTH")"
echo "phone's side: $(curl -s "http://$SIM/admin/accounts/$PHONE")"
echo "unblock:  HTTP $(curl -s -o /dev/null -w '%{http_code}' -X POST "$C/14155550123@s.whatsapp.net/unblock" -H "$AUTH")"

step "Done: both processes stop now"
