//! Presence and chat states between the accounts and the world's contacts,
//! relayed as WhatsApp's server does. Ephemeral like WhatsApp's: held in
//! memory only, never in the state file.
//!
//! - **Account → contact.** A device's `<presence type="available|
//!   unavailable" name=…/>` is the account's presence;
//!   `<presence type="subscribe" to=contact/>` subscribes that connection
//!   to the contact's presence until it closes (or sends `unsubscribe`);
//!   `<chatstate to=contact><composing/></chatstate>` (`media="audio"`:
//!   recording) or `<paused/>` is shown to the contact. Each is logged for
//!   `GET /admin/accounts/{phone}/presence?peer=…`.
//! - **Contact → account.** `POST /admin/accounts/{phone}/presence`: the
//!   contact comes online or goes offline, told to the account's
//!   connections subscribed to it (WhatsApp tells subscribers only; one
//!   that subscribes later gets the contact's last presence at once).
//!   `POST /admin/accounts/{phone}/chatstate`: the contact types, records
//!   or stops, told to every logged-in connection of the account.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, NodeRef};

use crate::admin::AdminError;
use crate::messaging::{contact_of, now_rfc3339};
use crate::state::{Outbound, Sim};
use crate::world::{Contact, phone_digits};

/// A contact's presence as the admin API last set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContactPresence {
    available: bool,
    /// Unix seconds.
    last_seen: Option<i64>,
}

/// A chat state an account's device showed a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct LoggedState {
    /// `composing`, `recording` or `paused`.
    state: &'static str,
    at: String,
}

/// A presence subscription an account's device sent for a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct LoggedSubscription {
    /// The contact as the device named it (phone number or LID JID).
    jid: String,
    at: String,
}

/// What an account showed one contact.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Shown {
    chat_states: Vec<LoggedState>,
    subscriptions: Vec<LoggedSubscription>,
}

/// The most entries kept per log (the oldest are dropped first): a chatty
/// client cannot grow the simulator's memory without bound.
const KEPT: usize = 1_000;

fn push_bounded<T>(log: &mut Vec<T>, entry: T) {
    if log.len() >= KEPT {
        log.remove(0);
    }
    log.push(entry);
}

/// The presence part of the simulator's state (in memory only).
#[derive(Debug, Default)]
pub(crate) struct Presences {
    /// Contact phone → its presence, once set.
    contacts: HashMap<String, ContactPresence>,
    /// `"{account}/{contact}"` → what the account showed the contact.
    shown: HashMap<String, Shown>,
    /// Account phone → whether its devices last said available.
    accounts: HashMap<String, bool>,
}

/// How a contact is named on the stanzas it sends: by phone number or by
/// LID (as WhatsApp does for chats that moved to LID addressing).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Addressing {
    #[default]
    Pn,
    Lid,
}

impl Addressing {
    fn jid(self, contact: &Contact) -> String {
        match (self, &contact.lid) {
            (Addressing::Lid, Some(lid)) => format!("{lid}@lid"),
            _ => format!("{}@s.whatsapp.net", contact.user),
        }
    }
}

/// `POST /admin/accounts/{phone}/presence`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PresenceBody {
    from: String,
    available: bool,
    /// Unix seconds.
    #[serde(default)]
    last_seen: Option<i64>,
    #[serde(default)]
    addressing: Addressing,
}

/// `POST /admin/accounts/{phone}/chatstate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatStateBody {
    from: String,
    state: String,
    #[serde(default)]
    addressing: Addressing,
}

/// The world contact (a person) `from` names (digits, `+digits` or its
/// JID), for the account `account`, which must exist.
fn sender(sim: &Sim, account: &str, from: &str) -> Result<Contact, AdminError> {
    let user = phone_digits(from.split('@').next().unwrap_or_default()).ok_or_else(|| {
        AdminError::BadRequest(format!("\"from\" '{from}' is not a phone number"))
    })?;
    let contact = sim
        .world
        .contact(&user)
        .filter(|c| !c.is_group)
        .cloned()
        .ok_or_else(|| AdminError::NotFound(format!("{user} is not a contact of the world")))?;
    if !sim.lock().accounts().contains_key(account) {
        return Err(AdminError::NotFound(format!("no account {account}")));
    }
    Ok(contact)
}

/// The stanza telling a contact's presence, from `from`.
fn presence_node(from: &str, p: ContactPresence) -> Node {
    let mut b = NodeBuilder::new("presence").attr("from", from.to_owned());
    if !p.available {
        b = b.attr("type", "unavailable");
    }
    if let Some(t) = p.last_seen {
        b = b.attr("last", t.to_string());
    }
    b.build()
}

/// The stanza telling a contact's chat state, from `from`: `state` is
/// `composing`, `recording` or `paused` (`None` for anything else).
fn chatstate_node(from: &str, state: &str) -> Option<Node> {
    let child = match state {
        "composing" => NodeBuilder::new("composing").build(),
        "recording" => NodeBuilder::new("composing").attr("media", "audio").build(),
        "paused" => NodeBuilder::new("paused").build(),
        _ => return None,
    };
    Some(
        NodeBuilder::new("chatstate")
            .attr("from", from.to_owned())
            .children([child])
            .build(),
    )
}

/// The contact `body.from` comes online or goes offline: kept as its
/// presence, and told to each connection of `account` subscribed to it.
/// Returns to how many connections it went.
pub(crate) fn contact_presence(sim: &Sim, account: &str, body: &[u8]) -> Result<usize, AdminError> {
    let body: PresenceBody = serde_json::from_slice(body).map_err(|e| {
        AdminError::BadRequest(format!(
            "the body must be {{\"from\", \"available\", \"lastSeen\"?, \"addressing\"?}}: {e}"
        ))
    })?;
    if body.last_seen.is_some_and(|t| t < 0) {
        return Err(AdminError::BadRequest(
            "\"lastSeen\" is Unix seconds, not negative".into(),
        ));
    }
    let contact = sender(sim, account, &body.from)?;
    let presence = ContactPresence {
        available: body.available,
        last_seen: body.last_seen,
    };
    let node = presence_node(&body.addressing.jid(&contact), presence);
    let mut g = sim.lock();
    g.presence.contacts.insert(contact.user.clone(), presence);
    let mut n = 0;
    for c in g.conns.values() {
        let mine = c.login.as_ref().is_some_and(|(p, _)| p == account);
        if mine
            && c.subscriptions.contains_key(&contact.user)
            && c.tx.send(Outbound::Node(node.clone())).is_ok()
        {
            n += 1;
        }
    }
    tracing::debug!(
        account,
        contact = contact.user,
        available = body.available,
        told = n,
        "contact presence"
    );
    Ok(n)
}

/// The contact `body.from` types, records or stops in its chat with
/// `account`: told to every logged-in connection of the account. Returns
/// to how many.
pub(crate) fn contact_chat_state(
    sim: &Sim,
    account: &str,
    body: &[u8],
) -> Result<usize, AdminError> {
    let body: ChatStateBody = serde_json::from_slice(body).map_err(|e| {
        AdminError::BadRequest(format!(
            "the body must be {{\"from\", \"state\", \"addressing\"?}}: {e}"
        ))
    })?;
    let contact = sender(sim, account, &body.from)?;
    let node = chatstate_node(&body.addressing.jid(&contact), &body.state).ok_or_else(|| {
        AdminError::BadRequest(format!(
            "\"state\" '{}' is none of composing, recording, paused",
            body.state
        ))
    })?;
    let n = crate::iq::broadcast(sim, account, || Outbound::Node(node.clone()));
    tracing::debug!(
        account,
        contact = contact.user,
        state = body.state,
        told = n,
        "contact chat state"
    );
    Ok(n)
}

/// `GET /admin/accounts/{phone}/presence?peer=…`: what `account` showed
/// the contact `peer`.
pub(crate) fn shown_json(
    sim: &Sim,
    account: &str,
    peer: Option<&str>,
) -> Result<serde_json::Value, AdminError> {
    let peer =
        peer.ok_or_else(|| AdminError::BadRequest("the query needs ?peer=<phone>".into()))?;
    let phone = phone_digits(peer.split('@').next().unwrap_or_default())
        .ok_or_else(|| AdminError::BadRequest(format!("peer '{peer}' is not a phone number")))?;
    let g = sim.lock();
    if !g.accounts().contains_key(account) {
        return Err(AdminError::NotFound(format!("no account {account}")));
    }
    let subscribed = g.conns.values().any(|c| {
        c.login.as_ref().is_some_and(|(p, _)| p == account) && c.subscriptions.contains_key(&phone)
    });
    let shown = g
        .presence
        .shown
        .get(&format!("{account}/{phone}"))
        .cloned()
        .unwrap_or_default();
    Ok(serde_json::json!({
        "available": g.presence.accounts.get(account),
        "subscribed": subscribed,
        "subscriptions": shown.subscriptions,
        "chatStates": shown.chat_states,
    }))
}

fn attr(node: &NodeRef<'_>, key: &str) -> Option<String> {
    node.get_attr(key).map(|v| v.as_str().into_owned())
}

/// A logged-in device's `<presence>`: the account's own presence, or a
/// (un)subscription to a contact's. Returns what to send that connection
/// back (the contact's last presence, for a new subscription).
pub(crate) fn client_presence(
    sim: &Sim,
    me: (&str, u16),
    conn: u64,
    node: &NodeRef<'_>,
) -> Vec<Node> {
    let (account, device) = me;
    let ty = attr(node, "type").unwrap_or_default();
    let to = attr(node, "to");
    let mut g = sim.lock();
    match (ty.as_str(), to) {
        ("available" | "unavailable", None) => {
            g.presence
                .accounts
                .insert(account.to_owned(), ty == "available");
            Vec::new()
        }
        ("subscribe", Some(to)) => {
            let Some(contact) = contact_of(&sim.world, &to) else {
                tracing::debug!(
                    account,
                    device,
                    "presence subscription to {to}: not a contact"
                );
                return Vec::new();
            };
            let user = contact.user.clone();
            if let Some(c) = g.conns.get_mut(&conn) {
                c.subscriptions.insert(user.clone(), to.clone());
            }
            let shown = g
                .presence
                .shown
                .entry(format!("{account}/{user}"))
                .or_default();
            push_bounded(
                &mut shown.subscriptions,
                LoggedSubscription {
                    jid: to.clone(),
                    at: now_rfc3339(),
                },
            );
            // The server answers a subscription with what it knows now.
            g.presence
                .contacts
                .get(&user)
                .map(|p| vec![presence_node(&to, *p)])
                .unwrap_or_default()
        }
        ("unsubscribe", Some(to)) => {
            if let Some(contact) = contact_of(&sim.world, &to) {
                let user = contact.user.clone();
                if let Some(c) = g.conns.get_mut(&conn) {
                    c.subscriptions.remove(&user);
                }
            }
            Vec::new()
        }
        (other, to) => {
            tracing::debug!(account, device, ?to, "ignoring presence of type '{other}'");
            Vec::new()
        }
    }
}

/// A logged-in device's `<chatstate to=contact>`: logged as shown to the
/// contact.
pub(crate) fn client_chatstate(sim: &Sim, me: (&str, u16), node: &NodeRef<'_>) {
    let (account, _) = me;
    let Some(to) = attr(node, "to") else {
        return;
    };
    let Some(contact) = contact_of(&sim.world, &to) else {
        return;
    };
    let child = node.children().and_then(|c| c.first());
    let state = match child.map(|c| c.tag.as_ref().to_owned()).as_deref() {
        Some("composing") if child.and_then(|c| attr(c, "media")).as_deref() == Some("audio") => {
            "recording"
        }
        Some("composing") => "composing",
        Some("paused") => "paused",
        _ => return,
    };
    let user = contact.user.clone();
    let mut g = sim.lock();
    let shown = g
        .presence
        .shown
        .entry(format!("{account}/{user}"))
        .or_default();
    push_bounded(
        &mut shown.chat_states,
        LoggedState {
            state,
            at: now_rfc3339(),
        },
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn show(node: &Node) -> String {
        crate::iq::show(&node.as_node_ref())
    }

    #[test]
    fn stanzas_have_the_shape_whatsapp_rust_parses() {
        let offline = ContactPresence {
            available: false,
            last_seen: Some(1_733_440_000),
        };
        assert_eq!(
            show(&presence_node("14155550123@s.whatsapp.net", offline)),
            r#"<presence from="14155550123@s.whatsapp.net" type="unavailable" last="1733440000"/>"#
        );
        let online = ContactPresence {
            available: true,
            last_seen: None,
        };
        assert_eq!(
            show(&presence_node("1@lid", online)),
            r#"<presence from="1@lid"/>"#
        );
        assert_eq!(
            show(&chatstate_node("1@lid", "recording").unwrap()),
            r#"<chatstate from="1@lid"><composing media="audio"/></chatstate>"#
        );
        assert_eq!(
            show(&chatstate_node("1@lid", "composing").unwrap()),
            r#"<chatstate from="1@lid"><composing/></chatstate>"#
        );
        assert_eq!(
            show(&chatstate_node("1@lid", "paused").unwrap()),
            r#"<chatstate from="1@lid"><paused/></chatstate>"#
        );
        assert!(chatstate_node("1@lid", "typing").is_none());
        // As whatsapp-rust's own parser reads them.
        use wacore::iq::chatstate::{ChatstateSource, ChatstateStanza, ReceivedChatState};
        for (state, want) in [
            ("composing", ReceivedChatState::Typing),
            ("recording", ReceivedChatState::RecordingAudio),
            ("paused", ReceivedChatState::Idle),
        ] {
            let node = chatstate_node("123456789012345@lid", state).unwrap();
            let parsed = ChatstateStanza::parse(&node.as_node_ref()).unwrap();
            assert_eq!(parsed.state, want);
            let ChatstateSource::User { from } = parsed.source else {
                panic!("not from a user")
            };
            assert_eq!(from.to_string(), "123456789012345@lid");
        }
    }

    #[test]
    fn logs_are_bounded() {
        let mut log = Vec::new();
        for i in 0..KEPT + 5 {
            push_bounded(&mut log, i);
        }
        assert_eq!((log.len(), log[0]), (KEPT, 5));
    }
}
