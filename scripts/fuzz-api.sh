#!/usr/bin/env bash
# Fuzzes every operation of the gateway's own OpenAPI document
# (/openapi.json) with schemathesis, a property-based API fuzzer: the real
# gateway on the fake WhatsApp adapter, a temporary database, a real API
# key with every capability, and real sessions to aim at. It fails (exit
# status 1) on any 5xx, or any status, content type, header or body the
# document does not describe, or a request the document calls valid that is
# refused (or one it calls invalid that is accepted).
#
#   scripts/fuzz-api.sh                   # up to 100 examples per operation and phase
#   MAX_EXAMPLES=200 scripts/fuzz-api.sh  # more
#   SEED=123 scripts/fuzz-api.sh          # replay a run (the seed is printed at the end)
#   scripts/fuzz-api.sh --include-path-regex contacts   # extra arguments go to `schemathesis run`
#
# Settings (environment): MAX_EXAMPLES (default 100), SEED, WORKERS
# (schemathesis workers, default 1: with more, its threads can trip
# CPython 3.11's "AST constructor recursion depth mismatch" and the run
# ends in an error), SKIP_BUILD=1 (use target/debug/wagate as it is),
# SCHEMATHESIS (a schemathesis executable to use instead of the venv
# below), KEEP=1 (keep the temporary folder: database, gateway log; kept
# anyway when the run fails).
#
# Needs cargo, curl and python3 (3.11+). schemathesis is installed from
# PyPI into a virtualenv under target/ (target/fuzz-venv) the first time.
# Its configuration is scripts/fuzz-api.toml. CI does not run this script.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${MAX_EXAMPLES:-100}
WORKERS=${WORKERS:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$TARGET_DIR/fuzz-venv
GATEWAY=$TARGET_DIR/debug/wagate

log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'scripts/fuzz-api.sh: %s\n' "$*" >&2; exit 2; }

for tool in cargo curl python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

# --- schemathesis ----------------------------------------------------------
if [ -n "${SCHEMATHESIS:-}" ]; then
    ST=$SCHEMATHESIS
else
    ST=$VENV/bin/schemathesis
    if ! "$ST" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
        log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            "schemathesis==$SCHEMATHESIS_VERSION" >&2
    fi
fi
"$ST" --version >&2

# --- the gateway -------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building the gateway"
    cargo build -p wagate >&2
fi
[ -x "$GATEWAY" ] || die "$GATEWAY missing (build without SKIP_BUILD=1)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wagate-fuzz.XXXXXX")
GATEWAY_PID=
cleanup() {
    local status=$?
    if [ -n "$GATEWAY_PID" ] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
        kill -TERM "$GATEWAY_PID" 2>/dev/null || true
        wait "$GATEWAY_PID" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT

export WAGATE__WHATSAPP__ADAPTER=fake
export WAGATE__DATABASE__URL=sqlite://$TMP/wagate.db
export WAGATE__SERVER__BIND=127.0.0.1:$PORT
# The fuzzer sends thousands of requests a minute through one key and a
# few sessions: no request limit, no WhatsApp pacing (429 is still
# documented on every /api/v1 route, and checked by the contract tests).
export WAGATE__LIMITS__REQUESTS_PER_SECOND=0
export WAGATE__LIMITS__WHATSAPP_CALLS_PER_MINUTE=0
# Webhook targets are not looked up (an offline machine resolves nothing);
# scripts/fuzz-api.toml points every valid one at a closed local port.
export WAGATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS=true
export WAGATE__LOG__FORMAT=json
export RUST_LOG=${RUST_LOG:-info}

log "starting the gateway on $BASE (fake adapter, database in $TMP)"
"$GATEWAY" >"$TMP/gateway.log" 2>&1 &
GATEWAY_PID=$!
for _ in $(seq 1 100); do
    curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
    kill -0 "$GATEWAY_PID" 2>/dev/null || { cat "$TMP/gateway.log" >&2; die "the gateway exited"; }
    sleep 0.1
done
curl -fsS "$BASE/readyz" >/dev/null || { cat "$TMP/gateway.log" >&2; die "the gateway is not ready"; }

json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

new_key() {
    "$GATEWAY" api-key create --org acme --name "$1" --capabilities "$2" --json 2>>"$TMP/cli.log"
}
KEY_JSON=$(new_key fuzz read,send,manage,admin)
WAGATE_FUZZ_KEY=$(json_field key <<<"$KEY_JSON")
WAGATE_FUZZ_SPARE_KEY_ID=$(new_key spare read | json_field id)

api() { # METHOD PATH [curl args…]: the body of a 2xx answer
    local method=$1 path=$2
    shift 2
    curl -fsS -X "$method" "$BASE$path" -H "Authorization: Bearer $WAGATE_FUZZ_KEY" "$@"
}
new_session() {
    api POST /api/v1/sessions -H 'Content-Type: application/json' -d "{\"name\":\"$1\"}" | json_field id
}
WAGATE_FUZZ_SESSION=$(new_session fuzz)
WAGATE_FUZZ_SCRATCH_SESSION=$(new_session scratch)
WAGATE_FUZZ_DOOMED_SESSION=$(new_session doomed)
# Connect, then show the QR code: the fake's phone scans it at once.
api POST "/api/v1/sessions/$WAGATE_FUZZ_SESSION/connect" >/dev/null
api GET "/api/v1/sessions/$WAGATE_FUZZ_SESSION/qr" >/dev/null
status=$(api GET "/api/v1/sessions/$WAGATE_FUZZ_SESSION" | json_field status)
[ "$status" = connected ] || die "session $WAGATE_FUZZ_SESSION is $status, not connected"
# The lifecycle routes' session starts pairing, so the QR code and the
# pairing code have something to show before the fuzzer moves it on.
api POST "/api/v1/sessions/$WAGATE_FUZZ_SCRATCH_SESSION/connect" >/dev/null
log "session $WAGATE_FUZZ_SESSION connected; scratch $WAGATE_FUZZ_SCRATCH_SESSION pairing, doomed $WAGATE_FUZZ_DOOMED_SESSION"
export WAGATE_FUZZ_KEY WAGATE_FUZZ_SPARE_KEY_ID WAGATE_FUZZ_SESSION \
    WAGATE_FUZZ_SCRATCH_SESSION WAGATE_FUZZ_DOOMED_SESSION
# The configuration with these values filled in (schemathesis does not
# expand variables in dictionaries).
python3 - "$ROOT/scripts/fuzz-api.toml" "$TMP/schemathesis.toml" <<'PY'
import os, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
text = re.sub(r"\$\{(WAGATE_FUZZ_[A-Z_]+)\}", lambda m: os.environ[m.group(1)], text)
open(sys.argv[2], "w", encoding="utf-8").write(text)
PY

# --- the run -----------------------------------------------------------------
# Every check but "deleted resource still available" (ST301):
# `DELETE …/messages/{messageId}` deletes a message for everyone, and the
# message stays, as `revoked` (docs/api.md), so reading it afterwards
# answers 200 by design. The 404 after deleting a session or a webhook is
# contract-tested (tests/contract/sessions.rs, webhooks.rs).
args=(
    --checks all
    --exclude-checks use_after_free
    --max-examples "$MAX_EXAMPLES"
    --workers "$WORKERS"
    --no-color
)
[ -n "${SEED:-}" ] && args+=(--seed "$SEED")

log "schemathesis run $BASE/openapi.json ${args[*]} $*"
set +e
# From the temporary folder: schemathesis keeps its state in the working
# directory.
(cd "$TMP" && "$ST" --config-file "$TMP/schemathesis.toml" run "$BASE/openapi.json" "${args[@]}" "$@")
result=$?
set -e

# --- afterwards --------------------------------------------------------------
# The gateway must have survived everything, without a panic, and the
# fuzzer must have worked with what it was given (not a revoked key).
if ! curl -fsS "$BASE/healthz" >/dev/null; then
    log "FAIL: the gateway no longer answers"
    result=1
fi
if grep -q 'panicked' "$TMP/gateway.log"; then
    log "FAIL: the gateway panicked:"
    grep 'panicked' "$TMP/gateway.log" | head -n 5 >&2
    result=1
fi
status=$(api GET "/api/v1/sessions/$WAGATE_FUZZ_SESSION" | json_field status) || status=unknown
if [ "$status" != connected ]; then
    log "FAIL: session $WAGATE_FUZZ_SESSION ended $status: the contact routes were not fuzzed on a connected session"
    result=1
fi
if [ "$result" = 0 ]; then
    log "fuzzing passed"
else
    KEEP=1
    log "fuzzing FAILED (exit status $result); the gateway's log is $TMP/gateway.log"
fi
exit "$result"
