// The dashboard's only way to the gateway: the public API, with the
// signed-in person's own bearer token (kept in sessionStorage, so it is
// forgotten when the tab closes).

const TOKEN_KEY = 'wagate.token';

/** The signed-in token, or null. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Remembers `value` as the signed-in token. */
export function remember(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

/** Forgets the token. */
export function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer of the API that is not 2xx: its error envelope. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

let unauthorized = () => {};

/** Called when a request of the signed-in token is answered 401. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/**
 * Calls `method path` under /api/v1. `body` is sent as JSON; `as` is
 * 'json' (default) or 'blob'; `with` overrides the token (sign-in tries one
 * before keeping it); `headers` adds headers.
 */
export async function call(method, path, { body, as = 'json', with: bearer, headers = {} } = {}) {
  const sent = { ...headers, Authorization: `Bearer ${bearer ?? token() ?? ''}` };
  let payload;
  if (body !== undefined) {
    sent['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/api/v1${path}`, { method, headers: sent, body: payload, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'network', `The gateway cannot be reached (${e.message}).`, {});
  }
  if (!res.ok) {
    const error = await envelope(res);
    if (res.status === 401 && bearer === undefined) unauthorized(error);
    throw error;
  }
  if (as === 'blob') return res.blob();
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

async function envelope(res) {
  try {
    const { error } = await res.json();
    if (error && typeof error.message === 'string') {
      return new ApiError(res.status, error.code, error.message, error.details);
    }
  } catch {
    // Not the envelope (a proxy's page): say what came.
  }
  return new ApiError(res.status, `http_${res.status}`, `HTTP ${res.status} ${res.statusText}`, {});
}

/**
 * Where the organization's event log ends now, and its last `keep` events:
 * the live stream starts there, so old events are not replayed as news.
 */
export async function head(keep = 100) {
  let after = null;
  let recent = [];
  // 50 pages of 1,000 at most: past that the stream delivers the rest.
  for (let page = 0; page < 50; page += 1) {
    const q = new URLSearchParams({ limit: '1000' });
    if (after) q.set('after', after);
    const { data, nextCursor } = await call('GET', `/events?${q}`);
    recent = recent.concat(data).slice(-keep);
    after = nextCursor ?? after;
    if (data.length < 1000) break;
  }
  return { after, recent };
}

/**
 * The cursor just before event `eventId` in the log (what a replay from
 * that event takes as `after`), or null when the event is not in the log
 * (a `webhook.test` event, or pruned).
 */
export async function cursorBefore(eventId) {
  let previous = '0';
  let after = null;
  for (let page = 0; page < 200; page += 1) {
    const q = new URLSearchParams({ limit: '1000' });
    if (after) q.set('after', after);
    const { data, nextCursor } = await call('GET', `/events?${q}`);
    for (const event of data) {
      if (event.id === eventId) return previous;
      previous = event.cursor;
    }
    if (data.length < 1000) return null;
    after = nextCursor;
  }
  return null;
}

/**
 * Follows `GET /api/v1/events/stream` after cursor `after`. EventSource
 * cannot send an Authorization header, so this reads the answer with
 * fetch() and parses server-sent events itself, reconnecting with
 * Last-Event-ID (no gap, no duplicate) after a drop, with backoff.
 */
export class EventStream {
  constructor(after, { onEvent, onState, onGone }) {
    this.last = after;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onGone = onGone;
    this.closed = false;
    this.abort = null;
    this.run();
  }

  close() {
    this.closed = true;
    if (this.abort) this.abort.abort();
  }

  async run() {
    let delay = 1000;
    while (!this.closed) {
      this.abort = new AbortController();
      const headers = { Authorization: `Bearer ${token() ?? ''}`, Accept: 'text/event-stream' };
      if (this.last) headers['Last-Event-ID'] = this.last;
      try {
        const res = await fetch('/api/v1/events/stream', {
          headers, signal: this.abort.signal, cache: 'no-store',
        });
        if (!res.ok) {
          const error = await envelope(res);
          if (res.status === 401) {
            this.closed = true;
            unauthorized(error);
            return;
          }
          if (res.status === 410) {
            // Our position was pruned: start again from the oldest kept.
            this.last = null;
            if (this.onGone) this.onGone(error);
          }
          this.onState('error', error.message);
        } else {
          this.onState('live');
          delay = 1000;
          await this.read(res.body);
        }
      } catch (e) {
        if (this.closed) return;
        this.onState('error', e.message);
      }
      if (this.closed) return;
      this.onState('reconnecting');
      await new Promise((resolve) => { setTimeout(resolve, delay); });
      delay = Math.min(delay * 2, 15000);
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    // wagate writes at least a keep-alive every 15 s: a stream silent for
    // much longer is dead (a proxy or a sleeping laptop); reconnect.
    let silence = null;
    const watch = () => {
      clearTimeout(silence);
      silence = setTimeout(() => this.abort.abort(), 45000);
    };
    this.buffer = '';
    this.data = [];
    this.id = null;
    try {
      watch();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        watch();
        this.parse(value);
      }
    } finally {
      clearTimeout(silence);
    }
  }

  /** Feeds a chunk of the answer; complete messages are handled. */
  parse(chunk) {
    this.buffer += chunk;
    let end = this.buffer.indexOf('\n');
    while (end >= 0) {
      const line = this.buffer.slice(0, end).replace(/\r$/, '');
      this.buffer = this.buffer.slice(end + 1);
      end = this.buffer.indexOf('\n');
      if (line === '') {
        // A blank line ends a message.
        if (this.data.length) {
          const text = this.data.join('\n');
          this.data = [];
          let event = null;
          try {
            event = JSON.parse(text);
          } catch {
            event = null;
          }
          if (this.id !== null) this.last = this.id;
          if (event) this.onEvent(event);
        }
      } else if (!line.startsWith(':')) { // `:` starts a comment (keep-alive)
        const colon = line.indexOf(':');
        const name = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (name === 'data') this.data.push(val);
        else if (name === 'id') this.id = val;
      }
    }
  }
}
