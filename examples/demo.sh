#!/usr/bin/env bash
# One-command offline demo of the whole gateway: wa-sim plays WhatsApp and
# the phone, wagate runs its live adapter (whatsapp-rust) against it.
#
#   ./examples/demo.sh
#
# It builds both, starts them on 127.0.0.1:8090 (simulator) and :8080
# (gateway) with a throw-away database, creates an API key and a session,
# shows the session's QR code, has the simulator's phone scan it, calls the
# contact routes, then shows the session's events: a local webhook receiver
# on 127.0.0.1:8099 (python3 http.server) gets them as the session is
# disconnected and connected again, and the same events are pulled from
# /api/v1/events and followed on /api/v1/events/stream. Last, messaging: it
# sends a text to the world contact 14155550123, shows that the contact
# (wa-sim) decrypted it and that its status moved to delivered, then the
# contact replies and the receiver gets the message.received event; then
# the first message is edited and deleted for everyone, and a location is
# sent (the contact's log shows each). Then a poll: the contact votes
# (wa-sim: POST /admin/accounts/{phone}/messages with "type": "vote", its
# vote encrypted with the poll's secret as WhatsApp does), changes its
# vote, and the tally (GET …/messages/{id}/poll) follows. Then groups, in
# the fake world (the fake adapter, on a second gateway on 127.0.0.1:8081):
# the account's groups, a group created with each participant's outcome, a
# participant added, a message sent to the group and each member's receipt.
# Everything it started is stopped on exit. Needs curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

SIM=${SIM:-127.0.0.1:8090}
GW=${GW:-127.0.0.1:8080}
HOOK=${HOOK:-127.0.0.1:8099}
FAKE_GW=${FAKE_GW:-127.0.0.1:8081}
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
# The demo's webhook receiver is on loopback, which webhooks refuse by default (SSRF).
export WAGATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS=true

# A server left on one of the demo's ports (an earlier demo killed with -9,
# say) would answer in place of the one this run starts.
for addr in "$SIM" "$GW" "$HOOK" "$FAKE_GW"; do
  if curl -s -o /dev/null -m 1 "http://$addr/"; then
    echo "something already listens on $addr: stop it, or set SIM, GW, HOOK or FAKE_GW" >&2
    exit 1
  fi
done

step "Starting the simulator on $SIM and the gateway on $GW"
target/debug/wa-sim --listen "$SIM" --world examples/world.json >"$work/sim.log" 2>&1 &
pids+=($!)
target/debug/wagate >"$work/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://$GW/readyz" >/dev/null && curl -sf "http://$SIM/admin/health" >/dev/null && break; sleep 0.1; done

step "An API key for organization acme"
KEY=$(target/debug/wagate api-key create --org acme --name demo --capabilities read,send,manage,admin --json | json "['key']")
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

step "A webhook receiver on $HOOK (python3 http.server): prints each delivery"
cat >"$work/receiver.py" <<'EOF'
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        # A real receiver checks webhook-signature first: see docs/events.md.
        data = event["data"]
        if event["type"] == "message.received":
            detail = f"from={data['from']} text={data.get('text')!r}"
        else:
            detail = f"status={data.get('status', '-')}"
        print(f"  webhook-id {self.headers['webhook-id']}  {event['type']:<16} {detail}", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass

host, port = sys.argv[1].rsplit(":", 1)
HTTPServer((host, int(port)), Receiver).serve_forever()
EOF
python3 "$work/receiver.py" "$HOOK" >"$work/receiver.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do curl -s -o /dev/null "http://$HOOK/" && break; sleep 0.1; done
echo "listening on http://$HOOK/hooks/wagate"

step "A webhook for session.* pointing at it (its secret is shown only here)"
curl -sf -X POST "http://$GW/api/v1/webhooks" -H "$AUTH" -H 'Content-Type: application/json' \
  -d "{\"url\": \"http://$HOOK/hooks/wagate\", \"events\": [\"session.*\"], \"description\": \"demo\"}"; echo

step "Disconnect the session and connect it again: its status events go out"
echo "disconnect: $(curl -sf -X POST "http://$GW/api/v1/sessions/$SESSION/disconnect" -H "$AUTH" | json "['status']")"
echo "connect:    $(curl -sf -X POST "http://$GW/api/v1/sessions/$SESSION/connect" -H "$AUTH" | json "['status']")"
for _ in $(seq 1 100); do
  status=$(curl -sf "http://$GW/api/v1/sessions/$SESSION" -H "$AUTH" | json "['status']")
  [ "$status" = connected ] && [ "$(wc -l <"$work/receiver.log")" -ge 3 ] && break; sleep 0.1
done
echo "the receiver got:"
cat "$work/receiver.log"

step "The same events, pulled: GET /api/v1/events (the session's last 4)"
curl -sf "http://$GW/api/v1/events?types=session.*&sessionId=$SESSION&limit=1000" -H "$AUTH" >"$work/events.json"
python3 - "$work/events.json" <<'EOF'
import json, sys
page = json.load(open(sys.argv[1]))
for e in page["data"][-4:]:
    print("  cursor %3s  %-15s %s" % (e["cursor"], e["type"], json.dumps(e["data"])))
print("  nextCursor %s: pass it as ?after= to get only what comes next" % page["nextCursor"])
EOF
FROM=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["data"][-4]["cursor"])' "$work/events.json")

step "And followed: curl -N /api/v1/events/stream with Last-Event-ID: $FROM (1 s, then it stops)"
curl -s -N --max-time 1 "http://$GW/api/v1/events/stream?sessionId=$SESSION" -H "$AUTH" -H "Last-Event-ID: $FROM" \
  | awk '{ print (length($0) > 150 ? substr($0, 1, 150) "…" : $0) }' || true

CONTACT=14155550123
M="http://$GW/api/v1/sessions/$SESSION/messages"
step "Messaging: send a text to the world contact $CONTACT (202: stored \"pending\" before the answer)"
curl -sf -X POST "$M" -H "$AUTH" -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-hello-1' \
  -D "$work/send.headers" -o "$work/send.json" \
  -d "{\"to\": \"$CONTACT@s.whatsapp.net\", \"type\": \"text\", \"text\": \"Hello from wagate\"}"
grep -i '^location:' "$work/send.headers" | tr -d '\r'
cat "$work/send.json"; echo
MSG=$(json "['id']" <"$work/send.json")

step "The contact has it, decrypted (wa-sim: GET /admin/accounts/$PHONE/messages?peer=$CONTACT)"
got=""
for _ in $(seq 1 100); do
  got=$(curl -sf "http://$SIM/admin/accounts/$PHONE/messages?peer=$CONTACT" \
    | python3 -c 'import json, sys; print("".join(json.dumps(m) for m in json.load(sys.stdin)["data"] if m["id"] == sys.argv[1]))' "$MSG")
  [ -n "$got" ] && break; sleep 0.1
done
[ -n "$got" ] || { echo "the contact did not get message $MSG" >&2; exit 1; }
echo "$got"

step "Its status moves to delivered once the contact's receipt comes in (GET …/messages/$MSG)"
for _ in $(seq 1 100); do
  curl -sf "$M/$MSG" -H "$AUTH" >"$work/message.json"
  status=$(json "['status']" <"$work/message.json")
  case "$status" in delivered|read) break ;; esac; sleep 0.1
done
case "$status" in delivered|read) ;; *) echo "message $MSG is still $status" >&2; exit 1 ;; esac
python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); print("status:", m["status"], " statusAt:", json.dumps(m["statusAt"]))' "$work/message.json"

step "A webhook for message.received pointing at the same receiver"
curl -sf -X POST "http://$GW/api/v1/webhooks" -H "$AUTH" -H 'Content-Type: application/json' \
  -d "{\"url\": \"http://$HOOK/hooks/wagate\", \"events\": [\"message.received\"], \"description\": \"demo messages\"}" \
  | json "['id']"

step "The contact replies (wa-sim: POST /admin/accounts/$PHONE/messages): the receiver gets message.received"
curl -sf -X POST "http://$SIM/admin/accounts/$PHONE/messages" -H 'Content-Type: application/json' \
  -d "{\"from\": \"$CONTACT\", \"text\": \"Hi! Got your message.\"}"; echo
for _ in $(seq 1 100); do grep -q 'message.received' "$work/receiver.log" && break; sleep 0.1; done
grep -q 'message.received' "$work/receiver.log" || { echo "no message.received delivery arrived" >&2; exit 1; }
echo "the receiver got:"
grep 'message.received' "$work/receiver.log"
echo "the conversation (GET …/messages?chat=$CONTACT@s.whatsapp.net, newest first):"
curl -sf "$M?chat=$CONTACT@s.whatsapp.net" -H "$AUTH" \
  | python3 -c 'import json, sys; [print("  %-8s fromMe=%-5s %-9s %r" % (m["id"][:8] + "…", m["fromMe"], m["status"], m["text"])) for m in json.load(sys.stdin)["data"]]'

step "Edit it (PATCH …/messages/$MSG): the contact gets the edit, the message shows editedAt"
curl -sf -X PATCH "$M/$MSG" -H "$AUTH" -H 'Content-Type: application/json' -d '{"text": "Hello from wagate (edited)"}' \
  | python3 -c 'import json, sys; m = json.load(sys.stdin); print("text:", repr(m["text"]), " editedAt:", m["editedAt"])'

step "A location to the contact (type location)"
LOC=$(curl -sf -X POST "$M" -H "$AUTH" -H 'Content-Type: application/json' \
  -d "{\"to\": \"$CONTACT@s.whatsapp.net\", \"type\": \"location\", \"location\": {\"latitude\": 52.520008, \"longitude\": 13.404954, \"name\": \"Head office\", \"address\": \"Alexanderplatz 1, Berlin\"}}" \
  | json "['id']")
echo "$LOC"

step "Delete the first message for everyone (DELETE …/messages/$MSG): type revoked, content gone"
curl -sf -X DELETE "$M/$MSG" -H "$AUTH" \
  | python3 -c 'import json, sys; m = json.load(sys.stdin); print("type:", m["type"], " text:", m["text"], " timestamp kept:", m["timestamp"])'

step "What the contact got (wa-sim logs an edit or a deletion under the id of the message it changes)"
for _ in $(seq 1 100); do
  n=$(curl -sf "http://$SIM/admin/accounts/$PHONE/messages?peer=$CONTACT" \
    | python3 -c 'import json, sys; print(sum(m["type"] in ("edit", "revoke", "location") for m in json.load(sys.stdin)["data"]))')
  [ "$n" -ge 3 ] && break; sleep 0.1
done
curl -sf "http://$SIM/admin/accounts/$PHONE/messages?peer=$CONTACT" \
  | python3 -c 'import json, sys; [print("  %-8s %-9s %r" % (m["id"][:8] + "…", m["type"], m["text"])) for m in json.load(sys.stdin)["data"]]'

step "A poll to the contact (type poll: question, 2 to 12 options, selectableCount)"
POLL=$(curl -sf -X POST "$M" -H "$AUTH" -H 'Content-Type: application/json' \
  -d "{\"to\": \"$CONTACT@s.whatsapp.net\", \"type\": \"poll\", \"poll\": {\"question\": \"Which day suits you?\", \"options\": [\"Monday\", \"Tuesday\", \"Friday\"], \"selectableCount\": 2}}" \
  | json "['id']")
echo "$POLL"
for _ in $(seq 1 100); do
  curl -sf "http://$SIM/admin/accounts/$PHONE/messages?peer=$CONTACT" \
    | python3 -c 'import json, sys; sys.exit(0 if any(m["id"] == sys.argv[1] and m["type"] == "poll" for m in json.load(sys.stdin)["data"]) else 1)' "$POLL" && break
  sleep 0.1
done

tally() {
  curl -sf "$M/$POLL/poll" -H "$AUTH" | python3 -c '
import json, sys
t = json.load(sys.stdin)
print("  %s  (%d voter%s)" % (t["question"], t["voters"], "" if t["voters"] == 1 else "s"))
for o in t["options"]:
    print("    %-8s %d %s" % (o["name"], o["votes"], " ".join(o["voters"])))'
}
wait_votes() {
  for _ in $(seq 1 100); do
    [ "$(curl -sf "http://$GW/api/v1/events?types=message.poll_vote&sessionId=$SESSION" -H "$AUTH" | json "['data'].__len__()")" -ge "$1" ] && return; sleep 0.1
  done
  echo "no message.poll_vote event #$1" >&2; exit 1
}

step "The contact votes Monday and Friday (wa-sim: POST /admin/accounts/$PHONE/messages {\"type\": \"vote\"})"
curl -sf -X POST "http://$SIM/admin/accounts/$PHONE/messages" -H 'Content-Type: application/json' \
  -d "{\"from\": \"$CONTACT\", \"type\": \"vote\", \"target\": \"$POLL\", \"options\": [\"Monday\", \"Friday\"]}"; echo
wait_votes 1
tally

step "It changes its mind: Tuesday only (its later vote replaces the first)"
curl -sf -X POST "http://$SIM/admin/accounts/$PHONE/messages" -H 'Content-Type: application/json' \
  -d "{\"from\": \"$CONTACT\", \"type\": \"vote\", \"target\": \"$POLL\", \"options\": [\"Tuesday\"]}"; echo
wait_votes 2
tally
echo "the message.poll_vote events:"
curl -sf "http://$GW/api/v1/events?types=message.poll_vote&sessionId=$SESSION" -H "$AUTH" \
  | python3 -c 'import json, sys; [print("  %s voter=%s selected=%s" % (e["type"], e["data"]["voter"], e["data"]["selected"])) for e in json.load(sys.stdin)["data"]]'

step "Groups, in the fake world: a second gateway on $FAKE_GW with the fake adapter (its own database)"
# An array, not a function: `$!` of a function run in the background is a
# subshell's, and killing it on exit would leave the gateway running.
fake=(env WAGATE__SERVER__BIND="$FAKE_GW" WAGATE__DATABASE__URL="sqlite://$work/fake.db" WAGATE__WHATSAPP__ADAPTER=fake)
"${fake[@]}" target/debug/wagate >"$work/fake-gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://$FAKE_GW/readyz" >/dev/null && break; sleep 0.1; done
FKEY=$("${fake[@]}" target/debug/wagate api-key create --org acme --name groups --capabilities read,send,manage --json | json "['key']")
FAUTH="Authorization: Bearer $FKEY"
FSESSION=$(curl -sf -X POST "http://$FAKE_GW/api/v1/sessions" -H "$FAUTH" -H 'Content-Type: application/json' -d '{"name":"groups"}' | json "['id']")
curl -sf -o /dev/null -X POST "http://$FAKE_GW/api/v1/sessions/$FSESSION/connect" -H "$FAUTH"
curl -sf -o /dev/null "http://$FAKE_GW/api/v1/sessions/$FSESSION/qr" -H "$FAUTH"   # the fake phone scans it at once
G="http://$FAKE_GW/api/v1/sessions/$FSESSION/groups"
show_groups() {
  curl -sf "$G" -H "$FAUTH" | python3 -c '
import json, sys
for g in json.load(sys.stdin)["data"]:
    print("  %-26s %-14s %d members" % (g["jid"], g["subject"], g["size"]))'
}
for _ in $(seq 1 100); do
  [ "$(curl -sf "$G" -H "$FAUTH" | json "['data'].__len__()")" -ge 2 ] && break; sleep 0.1
done
echo "GET …/groups (from the gateway's store, read on connect):"
show_groups

step "Create a group with two people (POST …/groups): each one's outcome"
curl -sf -X POST "$G" -H "$FAUTH" -H 'Content-Type: application/json' \
  -d '{"subject": "Launch crew", "participants": ["14155550123@s.whatsapp.net", "14155550145@s.whatsapp.net"]}' \
  >"$work/group.json"
python3 -c '
import json, sys
g = json.load(open(sys.argv[1]))
print("jid:", g["jid"], " subject:", g["subject"])
for o in g["outcomes"]:
    print("  %-28s %s" % (o["jid"], o["status"]))' "$work/group.json"
GROUP=$(json "['jid']" <"$work/group.json")

step "Add a participant (POST …/groups/$GROUP/participants)"
curl -sf -X POST "$G/$GROUP/participants" -H "$FAUTH" -H 'Content-Type: application/json' \
  -d '{"action": "add", "participants": ["14155550142@s.whatsapp.net"]}'; echo

step "Send to the group (POST …/messages with to = the group): delivered once every member has it"
FM="http://$FAKE_GW/api/v1/sessions/$FSESSION/messages"
GMSG=$(curl -sf -X POST "$FM" -H "$FAUTH" -H 'Content-Type: application/json' \
  -d "{\"to\": \"$GROUP\", \"type\": \"text\", \"text\": \"Launch at 10, everyone\"}" | json "['id']")
for _ in $(seq 1 100); do
  status=$(curl -sf "$FM/$GMSG" -H "$FAUTH" | json "['status']")
  case "$status" in delivered|read) break ;; esac; sleep 0.1
done
echo "message $GMSG: $status"

step "Who has it (GET …/messages/$GMSG/receipts): one receipt per member; read by 14155550142 only"
curl -sf "$FM/$GMSG/receipts" -H "$FAUTH" | python3 -c '
import json, sys
for r in json.load(sys.stdin)["data"]:
    print("  %-28s %-10s at %s" % (r["pn"] or r["jid"], r["status"], r["at"]))'

step "The groups now (GET …/groups), and their events (GET /api/v1/events?types=group.*)"
show_groups
curl -sf "http://$FAKE_GW/api/v1/events?types=group.*" -H "$FAUTH" | python3 -c '
import json, sys
for e in json.load(sys.stdin)["data"]:
    d = e["data"]
    group = d["group"]["jid"] if isinstance(d["group"], dict) else d["group"]
    print("  %-18s %s %s" % (e["type"], group, d.get("action", "")))'

step "Done: the simulator, the gateways and the receiver stop now"
