// The wagate dashboard: a single-page client of the public API.
// Screens are routed by the URL's hash (#/sessions, #/sessions/{id},
// #/webhooks, #/api-keys, #/events); the organization's event stream keeps
// them up to date without reloading or polling.

import * as api from './api.js';
import {
  h, uid, field, checkbox, when, phoneOf, jidOf, base64Of, confirmDialog, copy,
} from './dom.js';

const EVENT_TYPES = [
  'session.status', 'session.qr', 'session.deleted',
  'message.received', 'message.sent', 'message.status', 'message.reaction',
];
const CAPABILITIES = [
  ['read', 'look things up, events included'],
  ['send', 'act on WhatsApp: messages, block, unblock'],
  ['manage', 'session lifecycle: connect, pair, log out, delete'],
  ['admin', 'API keys and webhooks'],
];
const KEEP_EVENTS = 500;

const app = document.getElementById('app');

/** What the screens share while signed in. */
const state = {
  stream: null,
  streamState: 'off',
  events: [], // newest last, at most KEEP_EVENTS
  sessions: new Map(),
  leave: [], // cleanups of the current screen
  bus: new EventTarget(),
};

// ---------------------------------------------------------------- outcomes

let noticeOk;
let noticeError;

/** Shows an action's outcome: a success, or the API's error message. */
function say(message) {
  if (!noticeOk) return;
  noticeError.replaceChildren();
  noticeError.hidden = true;
  noticeOk.replaceChildren(message);
  noticeOk.hidden = false;
}

function fail(error) {
  if (!noticeError) return;
  noticeOk.replaceChildren();
  noticeOk.hidden = true;
  const text = error instanceof api.ApiError || error instanceof Error ? error.message : String(error);
  noticeError.replaceChildren(text);
  noticeError.hidden = false;
}

function clearNotices() {
  if (!noticeOk) return;
  noticeOk.replaceChildren();
  noticeOk.hidden = true;
  noticeError.replaceChildren();
  noticeError.hidden = true;
}

/** Runs an action from `button`, disabling it meanwhile; errors are shown. */
async function act(button, action) {
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (e) {
    fail(e);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

function on(type, handler) {
  state.bus.addEventListener(type, handler);
  state.leave.push(() => state.bus.removeEventListener(type, handler));
}

function emit(type, detail) {
  state.bus.dispatchEvent(new CustomEvent(type, { detail }));
}

// ----------------------------------------------------------------- sign-in

function signInScreen(message) {
  stopStream();
  noticeOk = null;
  noticeError = null;
  const input = h('input', {
    type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true,
  });
  const error = h('p', { class: 'error', role: 'alert', hidden: !message });
  if (message) error.append(message);
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'card signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title', tabindex: '-1' }, h('img', { src: '/ui/icon.svg', alt: '', class: 'logo' }), 'wagate'),
    h('p', null, 'Sign in with an API key of your organization (wgk_…) or a login token.'),
    field('API key', input, 'Create one with: wagate api-key create --org ORG --name NAME --capabilities read,send,manage,admin'),
    error,
    button);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const candidate = input.value.trim();
    error.hidden = true;
    button.disabled = true;
    try {
      // Any /api/v1 route authenticates first: 401 is a wrong token, 403
      // only a missing capability (the token is good).
      await api.call('GET', '/sessions?limit=1', { with: candidate });
    } catch (err) {
      if (!(err instanceof api.ApiError && err.status === 403)) {
        error.replaceChildren(err.message);
        error.hidden = false;
        button.disabled = false;
        input.focus();
        return;
      }
    }
    api.remember(candidate);
    if (!location.hash || location.hash === '#/') location.hash = '#/sessions';
    start();
  });
  app.replaceChildren(h('main', { class: 'signin-page' }, form));
  input.focus();
  firstScreen();
}

function signOut(message) {
  api.forget();
  state.sessions.clear();
  state.events = [];
  for (const f of state.leave.splice(0)) f();
  signInScreen(message);
}

// ------------------------------------------------------------------ layout

let main;
let streamBadge;

function layout() {
  const nav = h('nav', { 'aria-label': 'Main' },
    ...[['#/sessions', 'Sessions'], ['#/webhooks', 'Webhooks'], ['#/api-keys', 'API keys'], ['#/events', 'Events']]
      .map(([href, label]) => h('a', { href }, label)));
  streamBadge = h('span', { class: 'stream', role: 'status' });
  const signOutButton = h('button', { type: 'button', class: 'secondary', onclick: () => signOut('Signed out.') }, 'Sign out');
  noticeOk = h('p', { class: 'notice ok', role: 'status', hidden: true });
  noticeError = h('p', { class: 'notice error', role: 'alert', hidden: true });
  main = h('main', { id: 'main', tabindex: '-1' });
  app.replaceChildren(
    h('a', { class: 'skip', href: '#main', onclick: (e) => { e.preventDefault(); main.focus(); } }, 'Skip to content'),
    h('header', { class: 'top' },
      h('a', { class: 'brand', href: '#/sessions' }, h('img', { src: '/ui/icon.svg', alt: '' }), 'wagate'),
      nav, streamBadge, signOutButton),
    h('div', { class: 'notices' }, noticeOk, noticeError),
    main);
  showStreamState();
}

function showStreamState() {
  if (!streamBadge) return;
  const text = {
    live: 'Live', reconnecting: 'Reconnecting…', error: 'Events unavailable', off: 'Connecting…',
  }[state.streamState] ?? state.streamState;
  streamBadge.className = `stream ${state.streamState}`;
  streamBadge.replaceChildren(text);
  if (state.streamError) streamBadge.title = state.streamError;
}

// ------------------------------------------------------------------ events

function stopStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
  state.streamState = 'off';
}

async function startStream() {
  stopStream();
  let after = null;
  try {
    const found = await api.head();
    after = found.after;
    state.events = found.recent;
  } catch (e) {
    state.streamState = 'error';
    state.streamError = e.message;
    showStreamState();
    emit('events', null);
    return;
  }
  emit('events', null);
  state.stream = new api.EventStream(after, {
    onEvent: received,
    onState: (s, why) => {
      state.streamState = s;
      state.streamError = why;
      showStreamState();
    },
    onGone: () => {},
  });
}

function received(event) {
  state.events.push(event);
  if (state.events.length > KEEP_EVENTS) state.events.splice(0, state.events.length - KEEP_EVENTS);
  if (event.type === 'session.deleted') {
    state.sessions.delete(event.sessionId);
    emit('sessions', null);
  } else if (event.type.startsWith('session.') && event.sessionId) {
    refreshSession(event.sessionId);
  }
  emit('event', event);
}

const refreshing = new Map();

/** Reads a session again (events say what changed, the session says all). */
function refreshSession(id) {
  if (refreshing.has(id)) return refreshing.get(id);
  const p = api.call('GET', `/sessions/${id}`).then((s) => {
    state.sessions.set(s.id, s);
    emit('session', s);
    emit('sessions', null);
    return s;
  }).catch((e) => {
    if (e instanceof api.ApiError && e.status === 404) {
      state.sessions.delete(id);
      emit('sessions', null);
    }
  }).finally(() => refreshing.delete(id));
  refreshing.set(id, p);
  return p;
}

// ----------------------------------------------------------------- routing

const routes = [
  [/^#\/sessions\/(sess_[0-9A-Za-z]+)$/, sessionScreen],
  [/^#\/sessions$/, sessionsScreen],
  [/^#\/webhooks$/, webhooksScreen],
  [/^#\/api-keys$/, apiKeysScreen],
  [/^#\/events$/, eventsScreen],
];

function route() {
  if (!api.token()) return;
  for (const f of state.leave.splice(0)) f();
  clearNotices();
  const hash = location.hash || '#/sessions';
  for (const [pattern, screen] of routes) {
    const m = pattern.exec(hash);
    if (m) {
      for (const a of document.querySelectorAll('nav a')) {
        if (hash.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page');
        else a.removeAttribute('aria-current');
      }
      main.replaceChildren();
      screen(main, ...m.slice(1));
      return;
    }
  }
  location.hash = '#/sessions';
}

/** The screen's heading, focused so screen readers announce the change. */
function title(text, ...actions) {
  const heading = h('h1', { tabindex: '-1' }, text);
  queueMicrotask(() => heading.focus({ preventScroll: true }));
  document.title = `${text} · wagate`;
  return h('div', { class: 'titlebar' }, heading, ...actions);
}

function statusBadge(status) {
  return h('span', { class: `badge status-${status}` }, status);
}

/** A button that shows and hides `panel`. */
function disclosure(label, panel) {
  const button = h('button', { type: 'button', 'aria-expanded': 'false' }, label);
  panel.hidden = true;
  button.addEventListener('click', () => {
    const open = panel.hidden;
    panel.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    if (open) {
      const first = panel.querySelector('input, textarea, select');
      if (first) first.focus();
    }
  });
  return button;
}

function close(button, panel) {
  panel.hidden = true;
  button.setAttribute('aria-expanded', 'false');
}

/** A secret shown once, with a button to copy it. */
function secretOnce(label, secret, note) {
  const box = h('div', { class: 'secret card', role: 'region', 'aria-label': label },
    h('h2', null, label),
    h('p', null, note),
    h('code', { class: 'secret-value' }, secret),
    h('div', { class: 'actions' },
      h('button', {
        type: 'button',
        onclick: async () => say(await copy(secret) ? 'Copied to the clipboard.' : 'Copy it by hand: the browser refused the clipboard.'),
      }, 'Copy'),
      h('button', { type: 'button', class: 'secondary', onclick: () => box.remove() }, 'Done')));
  return box;
}

// ---------------------------------------------------------------- sessions

function sessionsScreen(root) {
  const name = h('input', { maxlength: '100', autocomplete: 'off' });
  const form = h('form', { class: 'card inline-form', 'aria-label': 'New session' },
    field('Name', name, 'For people: "support line", a customer\'s name…'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create')));
  const toggle = disclosure('New session', form);
  const table = h('div', { class: 'table-wrap' });
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Load more');
  let cursor = null;
  root.append(title('Sessions', toggle), form, table, more);

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const button = form.querySelector('button[type=submit]');
    act(button, async () => {
      const body = name.value.trim() ? { name: name.value.trim() } : {};
      const s = await api.call('POST', '/sessions', { body });
      state.sessions.set(s.id, s);
      name.value = '';
      close(toggle, form);
      render();
      say(`Session "${s.name ?? s.id}" created.`);
      toggle.focus();
    });
  });

  function render() {
    const sessions = [...state.sessions.values()]
      .sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
    if (!sessions.length) {
      table.replaceChildren(h('p', { class: 'empty' }, 'No sessions yet. Create one, then connect it and scan its QR code with WhatsApp.'));
      return;
    }
    table.replaceChildren(h('table', { class: 'stack' },
      h('caption', { class: 'visually-hidden' }, 'Sessions of your organization'),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Status'),
        h('th', { scope: 'col' }, 'Phone'), h('th', { scope: 'col' }, 'Last error'), h('th', { scope: 'col' }, 'Updated'))),
      h('tbody', null, sessions.map((s) => h('tr', { 'data-session': s.id },
        h('td', { 'data-label': 'Name' }, h('a', { href: `#/sessions/${s.id}` }, s.name || s.id)),
        h('td', { 'data-label': 'Status' }, statusBadge(s.status)),
        h('td', { 'data-label': 'Phone' }, phoneOf(s.jid)),
        h('td', { 'data-label': 'Last error' }, s.lastError ? s.lastError.message : '—'),
        h('td', { 'data-label': 'Updated' }, when(s.updatedAt)))))));
  }

  async function load(after) {
    const q = new URLSearchParams({ limit: '100' });
    if (after) q.set('cursor', after);
    const page = await api.call('GET', `/sessions?${q}`);
    if (!after) state.sessions.clear();
    for (const s of page.data) state.sessions.set(s.id, s);
    cursor = page.nextCursor;
    more.hidden = !cursor;
    render();
  }
  more.addEventListener('click', () => act(more, () => load(cursor)));
  on('sessions', render);
  table.replaceChildren(h('p', { class: 'empty' }, 'Loading sessions…'));
  load(null).then(firstScreen, (e) => {
    table.replaceChildren();
    fail(e);
    firstScreen();
  });
}

// ------------------------------------------------------- a session's page

function sessionScreen(root, id) {
  let session = state.sessions.get(id) || null;
  const heading = h('div');
  const details = h('dl', { class: 'details' });
  const controls = h('div', { class: 'actions' });
  const pairing = h('section', { class: 'card pairing', 'aria-labelledby': 'pairing-title', hidden: true });
  const chats = h('section', { class: 'chats', 'aria-labelledby': 'chats-title' });
  root.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/sessions' }, '← Sessions')),
    heading,
    h('section', { class: 'card', 'aria-label': 'Session' }, details, controls),
    pairing,
    chats);

  // -- status, phone, last error; the lifecycle buttons
  const lifecycle = [
    ['Connect', 'connect', 'Connecting…'],
    ['Disconnect', 'disconnect', 'Disconnected (the link is kept).'],
    ['Log out', 'logout', 'Logged out: the phone is unlinked.'],
  ].map(([label, verb, done]) => h('button', {
    type: 'button',
    onclick: (e) => act(e.currentTarget, async () => {
      if (verb === 'logout' && !await confirmDialog('Log this session out?',
        'The phone is unlinked and the device keys are erased; connecting again needs a new QR scan.',
        'Log out session')) return;
      const s = await api.call('POST', `/sessions/${id}/${verb}`);
      show(s);
      say(done);
    }),
  }, label));
  const remove = h('button', {
    type: 'button',
    class: 'danger',
    onclick: (e) => act(e.currentTarget, async () => {
      const yes = await confirmDialog('Delete this session?',
        `"${session?.name || id}" is unlinked from WhatsApp and its messages and keys are erased. This cannot be undone.`,
        'Delete session');
      if (!yes) return;
      await api.call('DELETE', `/sessions/${id}`);
      state.sessions.delete(id);
      location.hash = '#/sessions';
      say('Session deleted.');
    }),
  }, 'Delete');
  controls.append(...lifecycle, remove);

  function show(s) {
    session = s;
    state.sessions.set(s.id, s);
    heading.replaceChildren(title(s.name || s.id));
    document.title = `${s.name || s.id} · wagate`;
    const row = (term, value) => [h('dt', null, term), h('dd', null, value)];
    details.replaceChildren(
      ...row('Status', statusBadge(s.status)),
      ...row('Phone', phoneOf(s.jid)),
      ...row('Name on WhatsApp', s.pushName || '—'),
      ...row('Last error', s.lastError ? `${s.lastError.message} (${s.lastError.code})` : '—'),
      ...row('Last connected', when(s.lastConnectedAt)),
      ...row('Created', when(s.createdAt)),
      ...row('Id', h('code', null, s.id)));
    const [connect, disconnect, logout] = lifecycle;
    connect.hidden = s.status === 'connected';
    disconnect.hidden = !['connected', 'connecting', 'pairing'].includes(s.status);
    logout.hidden = ['new', 'logged_out'].includes(s.status);
    if (s.status === 'pairing') {
      if (pairing.hidden) {
        pairing.hidden = false;
        loadQr();
      }
    } else if (!pairing.hidden) {
      pairing.hidden = true;
      dropQr();
    }
  }

  // -- pairing: the QR code (fetched with the token, shown from a blob: URL)
  const qr = h('img', { alt: 'QR code', class: 'qr', width: '264', height: '264', hidden: true });
  const qrNote = h('p', { class: 'hint' }, 'Loading the QR code…');
  const phone = h('input', { type: 'tel', autocomplete: 'off', inputmode: 'tel' });
  const codeOut = h('p', { class: 'pairing-code', role: 'status' });
  const codeForm = h('form', { class: 'pairing-form', 'aria-labelledby': 'pairing-code-title' },
    h('h3', { id: 'pairing-code-title' }, 'Pairing code'),
    h('p', { class: 'hint' }, 'No camera? Get a code and type it on the phone: WhatsApp → Linked devices → Link with phone number.'),
    field('Phone number', phone, 'The phone\'s number with its country code, e.g. +1 415 555 0123'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Get code')),
    codeOut);
  pairing.append(
    h('h2', { id: 'pairing-title' }, 'Link a phone'),
    h('div', { class: 'pairing-grid' },
      h('figure', null, qr, h('figcaption', null, qrNote)),
      codeForm));
  codeForm.addEventListener('submit', (e) => {
    e.preventDefault();
    act(codeForm.querySelector('button'), async () => {
      const { code } = await api.call('POST', `/sessions/${id}/pairing-code`, { body: { phoneNumber: phone.value } });
      codeOut.replaceChildren('Type this code on the phone: ', h('strong', null, code));
      say(`Pairing code ${code}: type it on the phone.`);
    });
  });

  let qrUrl = null;
  let qrLoads = 0;
  function dropQr() {
    if (qrUrl) URL.revokeObjectURL(qrUrl);
    qrUrl = null;
    qr.hidden = true;
    qr.removeAttribute('src');
  }
  async function loadQr() {
    qrLoads += 1;
    const mine = qrLoads;
    try {
      const blob = await api.call('GET', `/sessions/${id}/qr?format=svg`, { as: 'blob' });
      if (mine !== qrLoads || pairing.hidden) return;
      dropQr();
      qrUrl = URL.createObjectURL(blob);
      qr.src = qrUrl;
      qr.hidden = false;
      qrNote.replaceChildren('Scan it with WhatsApp on the phone: Settings → Linked devices → Link a device. A new code appears here when WhatsApp rotates it.');
    } catch (e) {
      if (mine !== qrLoads) return;
      // 409: not pairing (any more); the status shows why.
      if (e instanceof api.ApiError && e.status === 409) qrNote.replaceChildren('Waiting for WhatsApp to show a QR code…');
      else qrNote.replaceChildren(`The QR code cannot be shown: ${e.message}`);
    }
  }
  state.leave.push(dropQr);

  // -- chats
  const conversations = h('ul', { class: 'conversations', 'aria-label': 'Conversations' });
  const chatTitle = h('h3', { id: uid('chat') }, 'New conversation');
  const messages = h('ol', { class: 'messages', 'aria-labelledby': chatTitle.id, 'aria-live': 'polite' });
  const to = h('input', { autocomplete: 'off', inputmode: 'tel', required: true });
  const text = h('textarea', { rows: '2' });
  const image = h('input', { type: 'file', accept: 'image/*' });
  const sendForm = h('form', { class: 'send', 'aria-label': 'Send a message' },
    field('To', to, 'A phone number with its country code, or a JID'),
    field('Message', text),
    field('Image', image, 'Optional: sent as an image with the message as its caption'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Send')));
  chats.append(
    h('h2', { id: 'chats-title' }, 'Chats'),
    h('div', { class: 'chat-grid' },
      h('div', { class: 'card' }, h('h3', null, 'Conversations'), conversations),
      h('div', { class: 'card conversation' }, chatTitle, messages, sendForm)));

  const lastByChat = new Map(); // chat → its newest message
  let openChat = null;
  let shown = []; // the open chat's messages, oldest first
  // A message's media, fetched once with the token: its object URL, or
  // null when it is not available (a sent message's media is kept only
  // until it is sent).
  const media = new Map();
  state.leave.push(() => media.forEach((u) => { if (u) URL.revokeObjectURL(u); }));
  // Statuses only move forward; an event may arrive before the message it
  // is about (the send's answer and the stream race), so keep the latest.
  const RANK = { received: 0, pending: 0, sent: 1, delivered: 2, read: 3, played: 4, failed: 5 };
  const latest = new Map(); // id → { status, error }

  function renderConversations() {
    const list = [...lastByChat.values()].sort((a, b) => (a.timestamp < b.timestamp ? 1 : -1));
    if (!list.length) {
      conversations.replaceChildren(h('li', { class: 'empty' }, 'No messages yet.'));
      return;
    }
    conversations.replaceChildren(...list.map((m) => h('li', null,
      h('button', {
        type: 'button',
        class: `conversation-item${m.chat === openChat ? ' open' : ''}`,
        'aria-current': m.chat === openChat ? 'true' : null,
        onclick: () => openConversation(m.chat),
      },
      h('span', { class: 'who' }, phoneOf(m.chat)),
      h('span', { class: 'last' }, `${m.fromMe ? 'You: ' : ''}${summary(m)}`),
      h('span', { class: 'time' }, when(m.timestamp))))));
  }

  function summary(m) {
    if (m.type === 'text') return m.text ?? '';
    return `[${m.type}] ${m.caption ?? ''}`.trim();
  }

  function messageItem(m) {
    const status = m.fromMe
      ? h('span', { class: `badge status-${m.status}` }, m.status)
      : null;
    let shownMedia = null;
    if (m.type === 'image' && m.media) {
      const img = h('img', { class: 'media', alt: m.caption ? `Image: ${m.caption}` : 'Image', hidden: true });
      const gone = () => img.replaceWith(h('span', { class: 'hint' }, '(image no longer available)'));
      const show = (url) => {
        img.src = url;
        img.hidden = false;
      };
      shownMedia = img;
      if (media.has(m.id)) {
        const url = media.get(m.id);
        if (url) show(url);
        else queueMicrotask(gone);
      } else {
        media.set(m.id, null);
        api.call('GET', `/sessions/${id}/messages/${encodeURIComponent(m.id)}/media`, { as: 'blob' })
          .then((blob) => {
            const url = URL.createObjectURL(blob);
            media.set(m.id, url);
            show(url);
          }, gone);
      }
    } else if (m.media) {
      shownMedia = h('span', { class: 'hint' }, `(${m.type}: ${m.media.mimetype})`);
    }
    return h('li', { class: `message ${m.fromMe ? 'out' : 'in'}`, 'data-id': m.id },
      shownMedia,
      m.type === 'text' ? h('p', null, m.text) : (m.caption ? h('p', null, m.caption) : null),
      h('p', { class: 'meta' }, h('time', { datetime: m.timestamp }, when(m.timestamp)), ' ', status,
        m.error ? h('span', { class: 'error' }, ` ${m.error.message}`) : null));
  }

  function renderMessages() {
    if (!openChat) {
      messages.replaceChildren(h('li', { class: 'empty' }, 'Pick a conversation, or write to a number below.'));
      return;
    }
    messages.replaceChildren(...(shown.length ? shown.map(messageItem) : [h('li', { class: 'empty' }, 'No messages in this chat yet.')]));
    messages.scrollTop = messages.scrollHeight;
  }

  async function openConversation(chat) {
    if (openChat !== chat) shown = [];
    openChat = chat;
    chatTitle.replaceChildren(`Chat with ${phoneOf(chat)}`);
    to.value = phoneOf(chat);
    renderConversations();
    try {
      const page = await api.call('GET', `/sessions/${id}/messages?chat=${encodeURIComponent(chat)}&limit=50`);
      if (openChat !== chat) return;
      // Messages that came live while the page was read stay.
      const live = shown;
      shown = [];
      for (const m of [...page.data.slice().reverse(), ...live]) place(m);
      renderMessages();
    } catch (e) {
      fail(e);
    }
  }

  /** `m` with the most advanced status known for it. */
  function newest(given) {
    let m = given;
    for (const other of [shown.find((x) => x.id === m.id), latest.get(m.id)]) {
      if (other && (RANK[other.status] ?? 0) > (RANK[m.status] ?? 0)) {
        m = { ...m, status: other.status, error: other.error ?? m.error };
      }
    }
    return m;
  }

  /** Puts `m` in the open chat's messages (in time order). */
  function place(given) {
    const m = newest(given);
    const i = shown.findIndex((x) => x.id === m.id);
    if (i >= 0) shown[i] = m;
    else shown.push(m);
    shown.sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
  }

  function upsert(given) {
    const m = newest(given);
    const last = lastByChat.get(m.chat);
    if (!last || last.timestamp <= m.timestamp || last.id === m.id) lastByChat.set(m.chat, m);
    renderConversations();
    if (m.chat !== openChat) return;
    place(m);
    renderMessages();
  }

  sendForm.addEventListener('submit', (e) => {
    e.preventDefault();
    act(sendForm.querySelector('button[type=submit]'), async () => {
      const body = { to: jidOf(to.value) };
      const file = image.files[0];
      if (file) {
        body.type = 'image';
        body.media = { data: await base64Of(file), mimetype: file.type || 'image/jpeg' };
        if (text.value) body.caption = text.value;
      } else {
        body.type = 'text';
        body.text = text.value;
      }
      // One key per submission: a retried request never sends twice.
      const m = await api.call('POST', `/sessions/${id}/messages`, {
        body, headers: { 'Idempotency-Key': crypto.randomUUID() },
      });
      text.value = '';
      image.value = '';
      if (openChat !== m.chat) await openConversation(m.chat);
      upsert(m);
      say(`Message accepted (${m.status}).`);
    });
  });

  async function loadChats() {
    try {
      const page = await api.call('GET', `/sessions/${id}/messages?limit=100`);
      for (const m of page.data) if (!lastByChat.has(m.chat)) lastByChat.set(m.chat, m);
      renderConversations();
      renderMessages();
    } catch (e) {
      conversations.replaceChildren(h('li', { class: 'empty' }, `Messages cannot be listed: ${e.message}`));
    }
  }

  // -- live updates
  on('event', ({ detail: event }) => {
    if (event.sessionId !== id) return;
    if (event.type === 'session.qr' && !pairing.hidden) loadQr();
    else if (event.type === 'session.deleted') {
      location.hash = '#/sessions';
      say('This session was deleted.');
    } else if (event.type === 'message.received' || event.type === 'message.sent') upsert(event.data);
    else if (event.type === 'message.status') {
      const { id: mid, status, error } = event.data;
      latest.set(mid, { status, error });
      const m = shown.find((x) => x.id === mid) || [...lastByChat.values()].find((x) => x.id === mid);
      if (m) upsert({ ...m, status, error: error ?? m.error });
    }
  });
  on('session', ({ detail: s }) => { if (s.id === id) show(s); });

  if (session) show(session);
  api.call('GET', `/sessions/${id}`).then(show, (e) => {
    heading.replaceChildren(title('Session'));
    fail(e);
  });
  renderMessages();
  loadChats();
}

// ---------------------------------------------------------------- webhooks

function webhooksScreen(root) {
  const url = h('input', { type: 'url', autocomplete: 'off', required: true, placeholder: 'https://example.com/wagate' });
  const description = h('input', { maxlength: '500', autocomplete: 'off' });
  const choices = [
    checkbox('All events (*)', '*', true),
    checkbox('Every session event (session.*)', 'session.*', false),
    checkbox('Every message event (message.*)', 'message.*', false),
    ...EVENT_TYPES.map((t) => checkbox(t, t, false)),
  ];
  const form = h('form', { class: 'card inline-form', 'aria-label': 'New webhook' },
    field('URL', url, 'Where wagate POSTs each event, signed per Standard Webhooks'),
    h('fieldset', null, h('legend', null, 'Events'), h('div', { class: 'checks' }, choices)),
    field('Description', description),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create')));
  const toggle = disclosure('New webhook', form);
  const secretSlot = h('div');
  const list = h('div', { class: 'webhooks' });
  root.append(title('Webhooks', toggle), form, secretSlot, list);

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(form.querySelector('button[type=submit]'), async () => {
      const events = choices.map((c) => c.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      const w = await api.call('POST', '/webhooks', {
        body: { url: url.value.trim(), events, description: description.value },
      });
      url.value = '';
      description.value = '';
      close(toggle, form);
      secretSlot.replaceChildren(secretOnce('Signing secret', w.secret,
        'Verify every delivery with it. It is shown only now: store it before you leave this page.'));
      say('Webhook created.');
      await load();
    });
  });

  const open = new Set(); // webhooks whose deliveries are shown
  // Test events are not in the log (nor the stream): remember their ids.
  const tests = new Set();
  const refreshers = new Map();

  function card(w) {
    const deliveries = h('div', { class: 'deliveries' });
    const toggleDeliveries = h('button', { type: 'button', 'aria-expanded': String(open.has(w.id)) }, 'Deliveries');
    deliveries.hidden = !open.has(w.id);
    const refresh = () => loadDeliveries(w, deliveries);
    refreshers.set(w.id, refresh);
    toggleDeliveries.addEventListener('click', () => {
      if (open.has(w.id)) open.delete(w.id);
      else open.add(w.id);
      deliveries.hidden = !open.has(w.id);
      toggleDeliveries.setAttribute('aria-expanded', String(open.has(w.id)));
      if (open.has(w.id)) refresh();
    });
    if (open.has(w.id)) refresh();
    const patch = (body, done) => (e) => act(e.currentTarget, async () => {
      await api.call('PATCH', `/webhooks/${w.id}`, { body });
      say(done);
      await load();
    });
    return h('article', { class: 'card webhook', 'aria-label': w.url, 'data-webhook': w.id },
      h('h2', { class: 'url' }, w.url),
      h('p', null,
        h('span', { class: `badge ${w.enabled ? 'status-connected' : 'status-logged_out'}` }, w.enabled ? 'enabled' : 'disabled'),
        w.disabledReason ? h('span', { class: 'hint' }, ` ${w.disabledReason}`) : null),
      h('dl', { class: 'details' },
        h('dt', null, 'Events'), h('dd', null, w.events.join(', ')),
        h('dt', null, 'Sessions'), h('dd', null, w.sessionIds ? w.sessionIds.join(', ') : 'all'),
        w.description ? [h('dt', null, 'Description'), h('dd', null, w.description)] : null,
        h('dt', null, 'Created'), h('dd', null, when(w.createdAt)),
        h('dt', null, 'Id'), h('dd', null, h('code', null, w.id))),
      h('div', { class: 'actions' },
        w.enabled
          ? h('button', { type: 'button', onclick: patch({ enabled: false }, 'Webhook disabled: nothing is sent to it.') }, 'Disable')
          : h('button', { type: 'button', onclick: patch({ enabled: true }, 'Webhook enabled.') }, 'Enable'),
        h('button', {
          type: 'button',
          onclick: (e) => act(e.currentTarget, async () => {
            const { eventId } = await api.call('POST', `/webhooks/${w.id}/test`);
            tests.add(eventId);
            say(`Test event ${eventId} queued.`);
            open.add(w.id);
            deliveries.hidden = false;
            toggleDeliveries.setAttribute('aria-expanded', 'true');
            settle(refresh);
          }),
        }, 'Send test'),
        h('button', {
          type: 'button',
          onclick: (e) => act(e.currentTarget, async () => {
            const { secret } = await api.call('POST', `/webhooks/${w.id}/rotate-secret`);
            secretSlot.replaceChildren(secretOnce('New signing secret', secret,
              'The old secret keeps signing beside it for 24 hours. It is shown only now.'));
            say('Secret rotated.');
          }),
        }, 'Rotate secret'),
        toggleDeliveries,
        h('button', {
          type: 'button',
          class: 'danger',
          onclick: (e) => act(e.currentTarget, async () => {
            if (!await confirmDialog('Delete this webhook?', `Nothing more is sent to ${w.url}.`, 'Delete webhook')) return;
            await api.call('DELETE', `/webhooks/${w.id}`);
            open.delete(w.id);
            say('Webhook deleted.');
            await load();
          }),
        }, 'Delete')),
      deliveries);
  }

  async function loadDeliveries(w, box) {
    try {
      const { data } = await api.call('GET', `/webhooks/${w.id}/deliveries?limit=50`);
      const typeOf = new Map(state.events.map((e) => [e.id, e.type]));
      for (const t of tests) typeOf.set(t, 'webhook.test');
      if (!data.length) {
        box.replaceChildren(deliveriesHead(w, box), h('p', { class: 'empty' }, 'Nothing delivered yet.'));
        return;
      }
      box.replaceChildren(deliveriesHead(w, box), h('div', { class: 'table-wrap' }, h('table', { class: 'stack' },
        h('thead', null, h('tr', null, ...['Event', 'Attempt', 'Status', 'Response', 'Time', 'Actions']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, data.map((d) => h('tr', { 'data-event': d.eventId },
          h('td', { 'data-label': 'Event' }, typeOf.has(d.eventId) ? [typeOf.get(d.eventId), ' '] : null, h('code', null, d.eventId)),
          h('td', { 'data-label': 'Attempt' }, String(d.attempt)),
          h('td', { 'data-label': 'Status' }, h('span', { class: `badge delivery-${d.state}` }, d.state)),
          h('td', { 'data-label': 'Response' }, d.error ?? (d.responseStatus ? `HTTP ${d.responseStatus}` : '—'),
            d.durationMs != null ? h('span', { class: 'hint' }, ` (${d.durationMs} ms)`) : null),
          h('td', { 'data-label': 'Time' }, when(d.at)),
          h('td', { 'data-label': 'Actions' }, tests.has(d.eventId) ? '—' : h('button', {
            type: 'button',
            title: 'Send this event, and every later one the webhook wants, again (same ids)',
            onclick: (e) => act(e.currentTarget, () => replay(w, d.eventId, box)),
          }, 'Replay'))))))));
    } catch (e) {
      box.replaceChildren(h('p', { class: 'error' }, `Deliveries cannot be listed: ${e.message}`));
    }
  }

  function deliveriesHead(w, box) {
    return h('div', { class: 'titlebar' }, h('h3', null, 'Deliveries'),
      h('button', { type: 'button', class: 'secondary', onclick: (e) => act(e.currentTarget, () => loadDeliveries(w, box)) }, 'Refresh'));
  }

  async function replay(w, eventId, box) {
    const after = await api.cursorBefore(eventId);
    if (after === null) {
      fail('This event is not in the log (a test event, or older than the retention), so it cannot be replayed.');
      return;
    }
    const { queued } = await api.call('POST', `/webhooks/${w.id}/replay`, { body: { after } });
    say(`Replay queued ${queued} event${queued === 1 ? '' : 's'} again (from ${eventId}).`);
    settle(() => loadDeliveries(w, box));
  }

  /** Reads deliveries again as an action's attempts land. */
  function settle(refresh) {
    for (const ms of [300, 1000, 3000, 10000]) {
      const t = setTimeout(refresh, ms);
      state.leave.push(() => clearTimeout(t));
    }
  }

  async function load() {
    try {
      const { data } = await api.call('GET', '/webhooks');
      list.replaceChildren(...(data.length ? data.map(card) : [h('p', { class: 'empty' }, 'No webhooks yet.')]));
    } catch (e) {
      fail(e);
    }
  }

  // New events make new deliveries: read the open ones again, in a while.
  let pending = null;
  on('event', () => {
    if (pending || !open.size) return;
    pending = setTimeout(() => {
      pending = null;
      for (const w of open) refreshers.get(w)?.();
    }, 500);
  });
  state.leave.push(() => clearTimeout(pending));
  load().then(firstScreen);
}

// ---------------------------------------------------------------- API keys

function apiKeysScreen(root) {
  const name = h('input', { maxlength: '100', autocomplete: 'off', required: true });
  const caps = CAPABILITIES.map(([c, what]) => checkbox(c, c, c === 'read', what));
  const expires = h('input', { type: 'datetime-local' });
  const form = h('form', { class: 'card inline-form', 'aria-label': 'New API key' },
    field('Name', name, 'Who or what uses it'),
    h('fieldset', null, h('legend', null, 'Capabilities'), h('div', { class: 'checks' }, caps)),
    field('Expires', expires, 'Optional'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create')));
  const toggle = disclosure('New API key', form);
  const secretSlot = h('div');
  const table = h('div', { class: 'table-wrap' });
  root.append(title('API keys', toggle), form, secretSlot, table);

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(form.querySelector('button[type=submit]'), async () => {
      const capabilities = caps.map((c) => c.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      const body = {
        name: name.value.trim(),
        capabilities,
        expiresAt: expires.value ? new Date(expires.value).toISOString() : null,
      };
      const k = await api.call('POST', '/api-keys', { body });
      name.value = '';
      expires.value = '';
      close(toggle, form);
      secretSlot.replaceChildren(secretOnce('New API key', k.key,
        'Give it to the script or service that needs it. It is shown only now: wagate keeps only its hash.'));
      say(`API key "${k.name}" created.`);
      await load();
    });
  });

  async function load() {
    try {
      const { data } = await api.call('GET', '/api-keys');
      if (!data.length) {
        table.replaceChildren(h('p', { class: 'empty' }, 'No API keys.'));
        return;
      }
      const mine = api.token() || '';
      table.replaceChildren(h('table', { class: 'stack' },
        h('caption', { class: 'visually-hidden' }, 'API keys of your organization'),
        h('thead', null, h('tr', null, ...['Name', 'Key', 'Capabilities', 'Created', 'Last used', 'Expires', 'Actions']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, data.map((k) => h('tr', { 'data-key': k.id },
          h('td', { 'data-label': 'Name' }, k.name, k.prefix && mine.startsWith(k.prefix) ? h('span', { class: 'hint' }, ' (you are signed in with it)') : null),
          h('td', { 'data-label': 'Key' }, h('code', null, `${k.prefix}…`)),
          h('td', { 'data-label': 'Capabilities' }, k.capabilities.join(', ')),
          h('td', { 'data-label': 'Created' }, when(k.createdAt)),
          h('td', { 'data-label': 'Last used' }, when(k.lastUsedAt)),
          h('td', { 'data-label': 'Expires' }, k.expiresAt ? when(k.expiresAt) : 'never'),
          h('td', { 'data-label': 'Actions' }, h('button', {
            type: 'button',
            class: 'danger',
            onclick: (e) => act(e.currentTarget, async () => {
              if (!await confirmDialog('Revoke this API key?', `"${k.name}" stops working at once.`, 'Revoke key')) return;
              await api.call('DELETE', `/api-keys/${k.id}`);
              say(`API key "${k.name}" revoked.`);
              await load();
            }),
          }, 'Revoke')))))));
    } catch (e) {
      fail(e);
    }
  }
  load().then(firstScreen);
}

// ------------------------------------------------------------------ events

function eventsScreen(root) {
  const filter = h('select', null,
    h('option', { value: '' }, 'All types'),
    h('option', { value: 'session.*' }, 'session.*'),
    h('option', { value: 'message.*' }, 'message.*'),
    ...EVENT_TYPES.map((t) => h('option', { value: t }, t)));
  const list = h('ol', { class: 'events', 'aria-label': 'Events, newest first' });
  const count = h('p', { class: 'hint', 'aria-live': 'polite' });
  root.append(
    title('Events'),
    h('div', { class: 'card filters' }, field('Type', filter, 'Show only events of this type'), count),
    list);

  const matches = (e) => {
    const f = filter.value;
    if (!f) return true;
    return f.endsWith('.*') ? e.type.startsWith(f.slice(0, -1)) : e.type === f;
  };

  function item(e) {
    return h('li', { class: 'event', 'data-type': e.type },
      h('div', { class: 'event-head' },
        h('span', { class: 'badge' }, e.type),
        e.sessionId ? h('a', { href: `#/sessions/${e.sessionId}` }, e.sessionId) : null,
        h('time', { datetime: e.occurredAt }, when(e.occurredAt))),
      h('details', null, h('summary', null, describe(e)), h('pre', null, JSON.stringify(e, null, 2))));
  }

  function describe(e) {
    const d = e.data || {};
    switch (e.type) {
      case 'session.status': return `${d.previous} → ${d.status}${d.lastError ? `: ${d.lastError.message}` : ''}`;
      case 'session.qr': return `new QR code, valid until ${when(d.expiresAt)}`;
      case 'message.received': return `from ${phoneOf(d.from)}: ${d.text ?? d.caption ?? `[${d.type}]`}`;
      case 'message.sent': return `to ${phoneOf(d.to)}: ${d.text ?? d.caption ?? `[${d.type}]`}`;
      case 'message.status': return `${d.id} is ${d.status}`;
      case 'message.reaction': return `${phoneOf(d.from)} reacted ${d.emoji || '(removed)'}`;
      default: return e.id;
    }
  }

  function render() {
    const shownEvents = state.events.filter(matches).slice(-200).reverse();
    list.replaceChildren(...(shownEvents.length
      ? shownEvents.map(item)
      : [h('li', { class: 'empty' }, 'No events yet: they appear here as they happen.')]));
    count.replaceChildren(`${shownEvents.length} shown of the last ${state.events.length} events.`);
  }
  filter.addEventListener('change', render);
  on('event', ({ detail: e }) => {
    if (!matches(e)) return;
    list.querySelector('.empty')?.remove();
    list.prepend(item(e));
    while (list.children.length > 200) list.lastElementChild.remove();
    count.replaceChildren(`${list.children.length} shown of the last ${state.events.length} events.`);
  });
  on('events', render);
  render();
  firstScreen();
}

// ------------------------------------------------------------------- start

let rendered = false;

/** Marks the first screen drawn, for the performance measurement. */
function firstScreen() {
  if (rendered) return;
  rendered = true;
  performance.mark('wagate:first-screen');
}

function start() {
  layout();
  route();
  startStream();
}

api.onUnauthorized((error) => {
  if (api.token()) signOut(`Signed out: ${error.message}`);
});
window.addEventListener('hashchange', route);

if (api.token()) start();
else signInScreen();
