#!/usr/bin/env python3
"""A webhook receiver for bench/events.sh: Python 3 standard library only.

    receiver.py PORT [ok|hang]

Listens on 127.0.0.1:PORT (HTTP/1.1, keep-alive, asyncio). In mode `ok` it
answers every delivery `204 No Content` at once and records, per request,
the arrival time (time.time(), read as soon as the request is complete) and
the body; in mode `hang` it records them the same way and never answers
(the connection stays open until the client gives up).

Control requests (any mode, answered at once), on the same port:

    GET /__stats   {"n": requests, "unique": distinct webhook-ids, "first"/"last": arrivals (Unix s)}
    GET /__dump    one line per delivery: "<arrival ms> <occurredAt ms> <webhook-id>"
    GET /__reset   forget everything recorded

Parsing (occurredAt) is left to /__dump, so answering costs as little as
possible.
"""
import asyncio
import calendar
import re
import sys
import time

PORT = int(sys.argv[1])
MODE = sys.argv[2] if len(sys.argv) > 2 else "ok"

records = []  # (arrival, webhook-id bytes, body bytes)
ids = set()
OCCURRED = re.compile(rb'"occurredAt":"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z"')
NO_CONTENT = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


def occurred_ms(body):
    m = OCCURRED.search(body)
    if m is None:
        return -1
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac = (m.group(7) or b"0")[:3].ljust(3, b"0")
    return calendar.timegm((y, mo, d, h, mi, s)) * 1000 + int(frac)


def control(path):
    if path.startswith(b"/__stats"):
        first, last = (records[0][0], records[-1][0]) if records else (None, None)
        body = ('{"n":%d,"unique":%d,"first":%s,"last":%s}' % (
            len(records), len(ids), "null" if first is None else repr(first),
            "null" if last is None else repr(last))).encode()
        return b"200 OK", b"application/json", body
    if path.startswith(b"/__dump"):
        lines = ["%.3f %d %s" % (t * 1000, occurred_ms(b), i.decode()) for t, i, b in records]
        return b"200 OK", b"text/plain", ("\n".join(lines) + "\n").encode() if lines else b""
    if path.startswith(b"/__reset"):
        records.clear()
        ids.clear()
        return b"200 OK", b"text/plain", b"reset\n"
    return b"404 Not Found", b"text/plain", b""


class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            hook_id = b""
            lines = head.split(b"\r\n")
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"webhook-id":
                    hook_id = value.strip()
            if len(self.buf) < end + 4 + length:
                return
            now = time.time()
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            path = lines[0].split(b" ")[1] if b" " in lines[0] else b"/"
            if path.startswith(b"/__"):
                status, ctype, payload = control(path)
                self.t.write(b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                             % (status, ctype, len(payload), payload))
                continue
            records.append((now, hook_id, body))
            ids.add(hook_id)
            if MODE == "hang":
                continue
            self.t.write(NO_CONTENT)


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", PORT, backlog=1024, reuse_address=True)
    print(f"receiver on 127.0.0.1:{PORT} ({MODE})", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
