// Small DOM helpers. Everything is built with createElement and text
// nodes, never innerHTML: names, messages and errors coming from the API
// or from WhatsApp can never become markup.

/** An element: `h('button', { type: 'button', onclick }, 'Save')`. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (['value', 'checked', 'disabled', 'hidden', 'required', 'multiple'].includes(key)) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Unique ids for label/field pairs. */
let next = 0;
export function uid(prefix) {
  next += 1;
  return `${prefix}-${next}`;
}

/** A labelled field: `<label>` + control, returned with the control. */
export function field(label, control, hint) {
  const id = control.id || uid('f');
  control.id = id;
  let hintEl = null;
  if (hint) {
    hintEl = h('span', { class: 'hint', id: `${id}-hint` }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

/** A checkbox with its label; `value` is what it stands for. */
export function checkbox(label, value, checked, hint) {
  const input = h('input', { type: 'checkbox', value, checked, id: uid('c') });
  let hintEl = null;
  if (hint) {
    hintEl = h('span', { class: 'hint', id: `${input.id}-hint` }, hint);
    input.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: 'check' }, input, h('label', { for: input.id }, label), hintEl);
}

/** A time for people, in their locale; `—` when absent. */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** `+15550001111` for a phone JID, the JID itself otherwise. */
export function phoneOf(jid) {
  if (!jid) return '—';
  const m = /^(\d+)(?::\d+)?@s\.whatsapp\.net$/.exec(jid);
  return m ? `+${m[1]}` : jid;
}

/** A JID from what a person typed: a phone number (any punctuation) or a JID. */
export function jidOf(input) {
  const text = input.trim();
  if (text.includes('@')) return text;
  const digits = text.replace(/[\s()+.-]/g, '');
  return /^\d+$/.test(digits) ? `${digits}@s.whatsapp.net` : text;
}

/** Base64 of a file's bytes (for a media upload). */
export function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ''));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/**
 * Asks a yes/no question in a modal dialog; resolves to true when the
 * person confirms with `confirmLabel`.
 */
export function confirmDialog(title, text, confirmLabel) {
  return new Promise((resolve) => {
    const headingId = uid('dlg');
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': headingId });
    const done = (yes) => {
      dialog.close();
      dialog.remove();
      resolve(yes);
    };
    dialog.append(
      h('h2', { id: headingId }, title),
      h('p', null, text),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => done(false) }, 'Cancel'),
        h('button', { type: 'button', class: 'danger', onclick: () => done(true) }, confirmLabel)),
    );
    dialog.addEventListener('cancel', (e) => {
      e.preventDefault();
      done(false);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Copies `text` to the clipboard; false when the browser refuses. */
export async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
