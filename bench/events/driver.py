#!/usr/bin/env python3
"""The helper of bench/events.sh: Python 3 standard library only.

    driver.py link GW KEY N                  links N sessions on the fake adapter; prints their ids
    driver.py pace GW KEY RATE SECONDS IDS   status events at RATE a second (disconnect/connect cycles)
    driver.py webhook GW KEY URL             creates a webhook for session.*; prints its id
    driver.py delete-webhook GW KEY ID...
    driver.py hooks GW KEY URL N TESTS       N webhooks for "*" to URL, TESTS test events queued to each; prints their ids
    driver.py replay GW KEY ID AFTER         POST …/replay; prints {"queued": n, "seconds": s}
    driver.py count DB                       events in the log
    driver.py pending DB [WEBHOOK]           pending deliveries (of one webhook)
    driver.py wait RECEIVER N TIMEOUT        until the receiver has N distinct webhook-ids
    driver.py latency RECEIVER DB FROM TO    arrival - occurredAt of the events committed in [FROM, TO]
    driver.py rate RECEIVER FROM TO          deliveries a second received in [FROM, TO]

GW and RECEIVER are host:port; times are Unix seconds; DB is the gateway's
SQLite file, only ever opened read-only.
"""
import http.client
import json
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


class Http:
    """One keep-alive connection per thread."""

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
            c = conns[self.hostport] = http.client.HTTPConnection(host, int(port), timeout=60)
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
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                c.close()
                self._local.conns.pop(self.hostport, None)
                if attempt == 2:
                    raise
                time.sleep(0.1)


def expect(result, ok, what):
    status, payload = result
    if status not in ok:
        raise SystemExit(f"{what}: HTTP {status} {payload[:300]!r}")
    return json.loads(payload) if payload else None


def api(gw, key):
    return Http(gw, {"Authorization": "Bearer " + key})


def link(gw, key, n):
    """N sessions, each connected: create, connect (pairing), GET qr (the
    fake phone scans it), until `connected`."""
    a = api(gw, key)

    def one(i):
        sid = expect(a.call("POST", "/api/v1/sessions", {"name": f"events bench {i}"}), (201,), "create")["id"]
        expect(a.call("POST", f"/api/v1/sessions/{sid}/connect"), (200, 202), "connect")
        expect(a.call("GET", f"/api/v1/sessions/{sid}/qr"), (200,), "qr")
        deadline = time.monotonic() + 10
        while True:
            s = expect(a.call("GET", f"/api/v1/sessions/{sid}"), (200,), "get")
            if s["status"] == "connected":
                return sid
            if time.monotonic() > deadline:
                raise SystemExit(f"session {sid} is {s['status']}, not connected")
            time.sleep(0.02)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for sid in pool.map(one, range(int(n))):
            print(sid)


def pace(gw, key, rate, seconds, ids_file):
    """Status events at RATE a second for SECONDS: the sessions take turns,
    each alternating disconnect (connected → disconnected: one event) and
    connect (→ connecting → connected: two events). Open loop: each call is
    started at its time on a pool, so a slow answer does not slow the
    pace; the next call is due after (its events) / RATE seconds."""
    rate, seconds = float(rate), float(seconds)
    ids = [line.strip() for line in open(ids_file) if line.strip()]
    a = api(gw, key)
    locks = {sid: threading.Lock() for sid in ids}
    connected = {sid: True for sid in ids}
    results = {"calls": 0, "errors": 0, "late": 0}
    guard = threading.Lock()

    def act(sid, action):
        with locks[sid]:
            status, payload = a.call("POST", f"/api/v1/sessions/{sid}/{action}")
        with guard:
            results["calls"] += 1
            if status not in (200, 202):
                results["errors"] += 1
                sys.stderr.write(f"{action} {sid}: HTTP {status} {payload[:200]!r}\n")

    t0 = time.time()
    next_at = t0
    end = t0 + seconds
    i = 0
    with ThreadPoolExecutor(max_workers=16) as pool:
        while next_at < end:
            delay = next_at - time.time()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.05:
                results["late"] += 1
            sid = ids[i % len(ids)]
            i += 1
            action = "disconnect" if connected[sid] else "connect"
            connected[sid] = not connected[sid]
            pool.submit(act, sid, action)
            next_at += (1 if action == "disconnect" else 2) / rate
    t1 = time.time()
    results.update(t0=t0, t1=t1)
    print(json.dumps(results))


def webhook(gw, key, url):
    body = {"url": url, "events": ["session.*"], "description": "bench/events.sh"}
    print(expect(api(gw, key).call("POST", "/api/v1/webhooks", body), (201,), "create webhook")["id"])


def delete_webhook(gw, key, *wids):
    for wid in wids:
        expect(api(gw, key).call("DELETE", f"/api/v1/webhooks/{wid}"), (204,), "delete webhook")


def hooks(gw, key, url, n, tests):
    """N webhooks of the key's organization for every event, each with
    TESTS `webhook.test` deliveries queued (so a hanging receiver keeps
    them all busy without any event being made)."""
    a = api(gw, key)

    def one(_):
        body = {"url": url, "events": ["*"], "description": "bench/events.sh"}
        wid = expect(a.call("POST", "/api/v1/webhooks", body), (201,), "create webhook")["id"]
        for _ in range(int(tests)):
            expect(a.call("POST", f"/api/v1/webhooks/{wid}/test"), (202,), "test webhook")
        return wid

    with ThreadPoolExecutor(8) as pool:
        for wid in pool.map(one, range(int(n))):
            print(wid)


def replay(gw, key, wid, after):
    t0 = time.time()
    r = expect(api(gw, key).call("POST", f"/api/v1/webhooks/{wid}/replay", {"after": after}), (202,), "replay")
    print(json.dumps({"queued": r["queued"], "t0": t0, "seconds": time.time() - t0}))


def db(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def count(path):
    print(db(path).execute("SELECT count(*) FROM events").fetchone()[0])


def pending(path, wid=None):
    if wid:
        q = db(path).execute("SELECT count(*) FROM deliveries WHERE state = 'pending' AND webhook_id = ?", (wid,))
    else:
        q = db(path).execute("SELECT count(*) FROM deliveries WHERE state = 'pending'")
    print(q.fetchone()[0])


def stats(receiver):
    return expect(Http(receiver).call("GET", "/__stats"), (200,), "receiver stats")


def dump(receiver):
    """{webhook-id: (first arrival ms, occurredAt ms)} and the arrivals of every request."""
    status, payload = Http(receiver).call("GET", "/__dump")
    if status != 200:
        raise SystemExit(f"receiver dump: HTTP {status}")
    first, arrivals = {}, []
    for line in payload.decode().splitlines():
        arrival, occurred, eid = line.split(" ")
        arrival = float(arrival)
        arrivals.append(arrival)
        if eid not in first:
            first[eid] = (arrival, int(occurred))
    return first, arrivals


def wait(receiver, n, timeout):
    """Until the receiver has seen N distinct webhook-ids; prints its stats
    (first and last arrival: the receiver's clock, Unix seconds)."""
    n, deadline = int(n), time.time() + float(timeout)
    while True:
        s = stats(receiver)
        if s["unique"] >= n:
            print(json.dumps(dict(s, done=True)))
            return
        if time.time() > deadline:
            print(json.dumps(dict(s, done=False)))
            return
        time.sleep(0.05)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency(receiver, path, t_from, t_to):
    """Every event committed in [FROM, TO] (occurredAt, from the log) must
    have arrived: latency = first arrival - occurredAt, in ms."""
    lo, hi = int(float(t_from) * 1000), int(float(t_to) * 1000)
    want = db(path).execute("SELECT id, occurred_ms FROM events WHERE occurred_ms BETWEEN ? AND ?", (lo, hi)).fetchall()
    first, arrivals = dump(receiver)
    lat = [first[e][0] - first[e][1] for e, _ in want if e in first]
    missing = sum(1 for e, _ in want if e not in first)
    out = {"events": len(want), "missing": missing, "requests": len(arrivals), "distinct": len(first)}
    if lat:
        out.update(p50=pct(lat, 0.50), p90=pct(lat, 0.90), p99=pct(lat, 0.99), max=max(lat),
                   rate=len(want) / ((hi - lo) / 1000))
        # p99 of each third of the window: does it drift?
        thirds = [[], [], []]
        for e, occurred in want:
            if e in first:
                thirds[min(2, (occurred - lo) * 3 // max(1, hi - lo))].append(first[e][0] - first[e][1])
        out["p99_thirds"] = [pct(t, 0.99) if t else None for t in thirds]
    print(json.dumps(out))


def rate(receiver, t_from, t_to):
    lo, hi = float(t_from) * 1000, float(t_to) * 1000
    _, arrivals = dump(receiver)
    n = sum(1 for a in arrivals if lo <= a <= hi)
    print(json.dumps({"n": n, "rate": n / ((hi - lo) / 1000)}))


if __name__ == "__main__":
    commands = {
        "link": link, "pace": pace, "webhook": webhook, "delete-webhook": delete_webhook, "hooks": hooks,
        "replay": replay, "count": count, "pending": pending, "wait": wait,
        "latency": latency, "rate": rate,
    }
    commands[sys.argv[1]](*sys.argv[2:])
