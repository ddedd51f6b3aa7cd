#!/usr/bin/env python3
"""The helper of bench/messages.sh: Python 3 standard library only.

    driver.py pace MODE GW KEY SIM SESSIONS PEER RATE COUNT TAG OUT [MARK_AT MARK_FILE]
        Open-loop: tick i at t0 + i/RATE, for COUNT ticks, on session i mod N
        (SESSIONS: "session-id phone" lines). MODE `out`: POST
        /api/v1/sessions/{id}/messages {"to": PEER, "type": "text", "text":
        "TAG i"} with Idempotency-Key "TAG-i"; `in`: the contact PEER sends
        the session's phone "TAG i" (wa-sim's POST
        /admin/accounts/{phone}/messages); `both`: each tick does one of
        each. A call that fails (connection refused or reset, 5xx, 501 while
        the session is not connected, 429) is retried, with the same
        Idempotency-Key, every 0.1 s for up to 120 s. Writes one JSON line
        per message to OUT ({dir, i, sid, phone, text, sched, t, took, id,
        status, tries}; t = when the first attempt was sent, Unix s) and
        prints a summary. With MARK_AT, creates MARK_FILE once tick MARK_AT
        has been dispatched (bench/messages.sh kills the gateway then).
    driver.py collect-out SIM PEER OUT FROM TIMEOUT SETTLE
        Polls wa-sim's GET /admin/accounts/{phone}/messages?peer=PEER of every
        phone in OUT until every accepted outgoing message of OUT is logged
        (decrypted by the contact) or TIMEOUT s pass, then SETTLE s more
        (late duplicates). Latency = the log's `at` (ms) - t, over messages
        with t >= FROM. Lost: accepted, never logged; duplicated: logged
        under two or more WhatsApp ids; resent: logged twice under one id
        (WhatsApp would drop the copy).
    driver.py collect-in GW KEY OUT FROM TIMEOUT SETTLE RECEIVER|-
        Polls GET /api/v1/events?types=message.received&sessionId= of every
        session in OUT until each incoming message of OUT (by WhatsApp id)
        has its event or TIMEOUT s pass, then SETTLE s more. Committed
        latency = occurredAt (ms) - t; webhook latency = arrival at
        RECEIVER (bench/events/receiver.py; webhook-id = the event id) - t.
        Lost: no event; duplicated: two or more events for one id.
    driver.py media-rss GW KEY SESSION PID TO COUNT MIB SETTLE
        Queued media and memory: POSTs COUNT images of MIB MiB (random bytes,
        base64) one after the other to SESSION for TO, then waits SETTLE s
        while the session's queue works on them. Samples the RSS of the
        gateway process PID (/proc/PID/status VmRSS) every 0.1 s from
        before the first POST to the end; prints {"accepted", "refused",
        "before_mib", "max_mib", "end_mib", "growth_mib", "pending"}
        (growth = max - before; pending = how many of them are still
        pending at the end).

GW, SIM and RECEIVER are host:port; times are Unix seconds.
"""
import base64
import calendar
import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor


class Http:
    """One keep-alive connection per thread and host."""

    _local = threading.local()

    def __init__(self, hostport, headers=None, timeout=30):
        self.hostport, self.headers, self.timeout = hostport, headers or {}, timeout

    def _conn(self):
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        c = conns.get(self.hostport)
        if c is None:
            host, port = self.hostport.rsplit(":", 1)
            c = conns[self.hostport] = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        return c

    def once(self, method, path, body=None, headers=None):
        """One attempt; (None, error) when the connection failed."""
        data = None if body is None else json.dumps(body).encode()
        h = dict(self.headers)
        h.update(headers or {})
        if data is not None:
            h["Content-Type"] = "application/json"
        c = self._conn()
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return r.status, r.read()
        except (http.client.HTTPException, OSError) as e:
            c.close()
            self._local.conns.pop(self.hostport, None)
            return None, str(e).encode()

    def call(self, method, path, body=None):
        for attempt in range(3):
            status, payload = self.once(method, path, body)
            if status is not None:
                return status, payload
            time.sleep(0.1)
        raise OSError(f"{method} {path}: {payload.decode(errors='replace')}")


def get_json(http, path, what):
    status, payload = http.call("GET", path)
    if status != 200:
        raise SystemExit(f"{what}: HTTP {status} {payload[:300]!r}")
    return json.loads(payload)


TS = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def unix(ts):
    """RFC 3339 → Unix seconds (float)."""
    m = TS.match(ts)
    if m is None:
        raise ValueError(f"not RFC 3339: {ts!r}")
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac = float("0." + m.group(7)) if m.group(7) else 0.0
    off = 0
    if m.group(8) != "Z":
        sign = 1 if m.group(8)[0] == "+" else -1
        off = sign * (int(m.group(8)[1:3]) * 3600 + int(m.group(8)[4:6]) * 60)
    return calendar.timegm((y, mo, d, h, mi, s)) + frac - off


def stats(lat_s):
    lat = sorted(x * 1000 for x in lat_s)
    if not lat:
        return {"n": 0}
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    return {"n": len(lat), "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": lat[-1]}


def read_sessions(path):
    out = []
    for line in open(path):
        if line.strip():
            sid, phone = line.split()
            out.append((sid, phone))
    if not out:
        raise SystemExit(f"no sessions in {path}")
    return out


RETRY_FOR = 120.0
RETRYABLE = {429, 500, 501, 502, 503, 504}


def pace(args):
    mode, gw, key, sim, sessions_file, peer, rate, count, tag, out = args[:10]
    rate, count = float(rate), int(count)
    mark_at, mark_file = (int(args[10]), args[11]) if len(args) > 11 else (None, None)
    sessions = read_sessions(sessions_file)
    api = Http(gw, {"Authorization": "Bearer " + key})
    admin = Http(sim)
    to = peer + "@s.whatsapp.net"
    lock = threading.Lock()
    records = []

    def attempt_loop(fn):
        t = time.time()
        tries = 0
        deadline = time.monotonic() + RETRY_FOR
        while True:
            tries += 1
            status, payload = fn()
            if status is not None and status not in RETRYABLE:
                return t, status, payload, tries
            if time.monotonic() > deadline:
                return t, status, payload, tries
            time.sleep(0.1)

    def send_out(i, sid, phone, sched):
        text = f"{tag} {i}"
        body = {"to": to, "type": "text", "text": text}
        headers = {"Idempotency-Key": f"{tag}-{i}"}
        t, status, payload, tries = attempt_loop(
            lambda: api.once("POST", f"/api/v1/sessions/{sid}/messages", body, headers))
        took = time.time() - t
        mid = json.loads(payload).get("id") if status == 202 else None
        return {"dir": "out", "i": i, "sid": sid, "phone": phone, "text": text, "sched": sched, "t": t,
                "took": took, "id": mid, "status": status, "tries": tries,
                "error": None if status == 202 else payload[:200].decode(errors="replace")}

    def send_in(i, sid, phone, sched):
        text = f"{tag} {i}"
        t, status, payload, tries = attempt_loop(
            lambda: admin.once("POST", f"/admin/accounts/{phone}/messages", {"from": peer, "text": text}))
        took = time.time() - t
        mid = json.loads(payload).get("id") if status == 200 else None
        return {"dir": "in", "i": i, "sid": sid, "phone": phone, "text": text, "sched": sched, "t": t,
                "took": took, "id": mid, "status": status, "tries": tries,
                "error": None if status == 200 else payload[:200].decode(errors="replace")}

    def job(fn, i, sched):
        sid, phone = sessions[i % len(sessions)]
        try:
            r = fn(i, sid, phone, sched)
        except Exception as e:  # noqa: BLE001 - recorded, reported
            r = {"dir": "?", "i": i, "sid": sid, "phone": phone, "sched": sched, "t": time.time(),
                 "status": None, "error": repr(e)}
        with lock:
            records.append(r)

    fns = {"out": [send_out], "in": [send_in], "both": [send_out, send_in]}[mode]
    pool = ThreadPoolExecutor(max_workers=int(os.environ.get("DRIVER_WORKERS", "128")))
    t0 = time.time() + 0.2
    late = 0
    for i in range(count):
        sched = t0 + i / rate
        delay = sched - time.time()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.005:
            late += 1
        for fn in fns:
            pool.submit(job, fn, i, sched)
        if mark_at is not None and i == mark_at:
            open(mark_file, "w").close()
    t1 = time.time()
    pool.shutdown(wait=True)
    records.sort(key=lambda r: (r["i"], r["dir"]))
    with open(out, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    ok = [r for r in records if r["status"] in (200, 202)]
    errors = [r for r in records if r["status"] not in (200, 202)]
    start_lag = [r["t"] - r["sched"] for r in records if "t" in r]
    print(json.dumps({
        "n": len(records), "ok": len(ok), "errors": len(errors),
        "first_error": errors[0].get("error") if errors else None,
        "retried": sum(1 for r in records if r.get("tries", 1) > 1),
        "late": late, "start_lag_p99_ms": stats(start_lag).get("p99"),
        "call": stats([r["took"] for r in ok]), "t0": t0, "t1": t1}))


def load(out, direction):
    recs = [json.loads(line) for line in open(out) if line.strip()]
    return [r for r in recs if r["dir"] == direction]


def collect_out(args):
    sim, peer, out, since, timeout, settle = args[0], args[1], args[2], float(args[3]), float(args[4]), float(args[5])
    sent = load(out, "out")
    accepted = {r["text"]: r for r in sent if r["status"] == 202}
    phones = sorted({r["phone"] for r in accepted.values()})
    admin = Http(sim)
    q = urllib.parse.quote(peer)

    def read_logs():
        logged = {}
        for phone in phones:
            page = get_json(admin, f"/admin/accounts/{phone}/messages?peer={q}", f"messages of {phone}")
            for m in page["data"]:
                if m.get("text") in accepted:
                    logged.setdefault(m["text"], []).append(m)
        return logged

    deadline = time.monotonic() + timeout
    while True:
        logged = read_logs()
        if len(logged) == len(accepted) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    if settle > 0:
        time.sleep(settle)
        logged = read_logs()
    lat, lost, dup, resent, mismatch, examples = [], 0, 0, 0, 0, []
    for text, r in accepted.items():
        entries = logged.get(text)
        if not entries:
            lost += 1
            examples.append(f"{r['phone']} {text!r} {r['id']}")
            continue
        ids = {m["id"] for m in entries}
        if len(ids) > 1:
            dup += 1
        if len(entries) > len(ids):
            resent += 1
        if r["id"] not in ids:
            mismatch += 1
        if r["t"] >= since:
            lat.append(unix(entries[0]["at"]) - r["t"])
    res = stats(lat)
    res.update({"sent": len(sent), "accepted": len(accepted), "refused": len(sent) - len(accepted),
                "lost": lost, "dup": dup, "resent": resent, "id_mismatch": mismatch, "lost_examples": examples[:5]})
    print(json.dumps(res))


def collect_in(args):
    gw, key, out, since, timeout, settle, receiver = (args[0], args[1], args[2], float(args[3]),
                                                      float(args[4]), float(args[5]), args[6])
    posted = {r["id"]: r for r in load(out, "in") if r["status"] == 200}
    by_session = {}
    for r in posted.values():
        by_session.setdefault(r["sid"], set()).add(r["id"])
    api = Http(gw, {"Authorization": "Bearer " + key})
    cursors = {}
    events = {}  # message id -> [event]

    def poll():
        for sid in by_session:
            while True:
                after = cursors.get(sid)
                path = f"/api/v1/events?types=message.received&sessionId={sid}&limit=1000"
                if after is not None:
                    path += "&after=" + urllib.parse.quote(after)
                page = get_json(api, path, f"events of {sid}")
                for e in page["data"]:
                    mid = e["data"].get("id")
                    if mid in posted:
                        events.setdefault(mid, []).append(e)
                cursors[sid] = page.get("nextCursor") or after
                if not page["data"]:
                    break

    deadline = time.monotonic() + timeout
    while True:
        poll()
        if len(events) == len(posted) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    if settle > 0:
        time.sleep(settle)
        poll()

    arrivals = {}
    if receiver != "-":
        rcv = Http(receiver)
        wanted = {es[0]["id"] for es in events.values()}
        while True:
            status, payload = rcv.call("GET", "/__dump")
            arrivals = {}
            for line in payload.decode().splitlines():
                arrival_ms, _, hook_id = line.split()
                if hook_id in wanted and hook_id not in arrivals:
                    arrivals[hook_id] = float(arrival_ms) / 1000
            if len(arrivals) >= len(wanted) or time.monotonic() > deadline:
                break
            time.sleep(0.25)

    committed, hooked, lost, dup, examples = [], [], 0, 0, []
    for mid, r in posted.items():
        es = events.get(mid)
        if not es:
            lost += 1
            examples.append(f"{r['phone']} {r['text']!r} {mid}")
            continue
        if len(es) > 1:
            dup += 1
        if r["t"] >= since:
            committed.append(unix(es[0]["occurredAt"]) - r["t"])
            if es[0]["id"] in arrivals:
                hooked.append(arrivals[es[0]["id"]] - r["t"])
    res = {"posted": len(posted), "refused": len(load(out, "in")) - len(posted), "lost": lost, "dup": dup,
           "committed": stats(committed), "webhook": stats(hooked),
           "webhook_missing": (len(committed) - len(hooked)) if receiver != "-" else None,
           "lost_examples": examples[:5]}
    print(json.dumps(res))


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for process {pid}")


def media_rss(args):
    gw, key, session, pid, to, count, mib, settle = args
    count, size, settle = int(count), int(float(mib) * 1024 * 1024), float(settle)
    api = Http(gw, {"Authorization": f"Bearer {key}"}, timeout=120)
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(rss_mib(pid))
            time.sleep(0.1)

    before = rss_mib(pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    accepted, refused, ids = 0, 0, []
    for i in range(count):
        data = base64.b64encode(os.urandom(size)).decode()
        body = {"to": to, "type": "image", "caption": f"rss {i}", "media": {"data": data, "mimetype": "image/jpeg"}}
        status, payload = api.call("POST", f"/api/v1/sessions/{session}/messages", body)
        if status == 202:
            accepted += 1
            ids.append(json.loads(payload)["id"])
        else:
            refused += 1
            print(f"media-rss: POST {i}: HTTP {status} {payload[:200]!r}", file=sys.stderr)
        del data, body
    time.sleep(settle)
    done.set()
    sampler.join()
    pending = 0
    for mid in ids:
        m = get_json(api, f"/api/v1/sessions/{session}/messages/{mid}", "message")
        pending += m["status"] == "pending"
    top = max(samples + [before])
    print(json.dumps({"accepted": accepted, "refused": refused, "before_mib": round(before, 1),
                      "max_mib": round(top, 1), "end_mib": round(rss_mib(pid), 1),
                      "growth_mib": round(top - before, 1), "pending": pending}))


if __name__ == "__main__":
    cmds = {"pace": pace, "collect-out": collect_out, "collect-in": collect_in, "media-rss": media_rss}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        raise SystemExit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])
