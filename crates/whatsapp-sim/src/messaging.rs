//! One-to-one messages between the accounts' devices and the world's
//! contacts (each a Signal user with one device, see `contact.rs`).
//!
//! - **Client → contact.** A `<message to=contact>` is decrypted with the
//!   contact's session, logged per (account, contact), answered with the
//!   server `<ack class="message">`, then after `receiptDelayMs` the
//!   contact's delivery `<receipt>`, and `readsAfterMs` later its read
//!   receipt when the world says so.
//! - **Contact → account** (`POST /admin/accounts/{phone}/messages`). The
//!   contact encrypts the message to every companion of the account; each
//!   copy waits in that device's queue until the device acknowledges it (a
//!   `<receipt>` or an `<ack class="message">` for its id), and is sent
//!   again on each new login until then.
//! - Receipts the account's devices send for those messages are logged.
//!
//! Everything here but the media blobs is saved in the state file.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use buffa::Message as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, NodeRef};
use waproto::whatsapp as wa;

use crate::admin::AdminError;
use crate::contact::{CompanionBundle, ContactUser, peer_key};
use crate::persist::B64;
use crate::state::{Inner, Outbound, Sim};
use crate::world::{Contact, World, phone_digits};

/// The most bytes an admin-posted image may have.
const MAX_MEDIA_BYTES: usize = 16 << 20;

/// A message an account's device sent a contact, decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LoggedMessage {
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) text: Option<String>,
    pub(crate) caption: Option<String>,
    media: Option<MediaInfo>,
    /// The people a text or caption @mentions (its context's
    /// `mentionedJid`); left out when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) mentions: Vec<String>,
    pub(crate) at: String,
}

/// The media of a logged message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MediaInfo {
    mimetype: Option<String>,
    size: u64,
    /// SHA-256 of the decrypted bytes, lower-case hex.
    sha256: String,
}

/// A receipt an account's device sent a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LoggedReceipt {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    at: String,
}

/// What one account and one contact exchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Chat {
    #[serde(default)]
    data: Vec<LoggedMessage>,
    #[serde(default)]
    receipts: Vec<LoggedReceipt>,
}

/// A contact's message waiting for one device's acknowledgement.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Pending {
    id: String,
    /// The contact's phone-number JID.
    from: String,
    sender_lid: Option<String>,
    notify: Option<String>,
    t: i64,
    /// `text` or `media`.
    kind: String,
    /// `pkmsg` or `msg`.
    enc_type: String,
    mediatype: Option<String>,
    /// The pairwise copy (empty in a group message whose sender key the
    /// device already has).
    ciphertext: B64,
    /// In a group message (`from` is then the group): the member who wrote
    /// it, by LID, its number when disclosed, and the sender-key copy.
    #[serde(default)]
    pub(crate) participant: Option<String>,
    #[serde(default)]
    pub(crate) participant_pn: Option<String>,
    #[serde(default)]
    pub(crate) skmsg: Option<B64>,
    /// The connection it was last sent on (not saved: a restart resends).
    #[serde(skip)]
    sent_on: Option<u64>,
}

impl Pending {
    /// A member's group message for one account device: `sender` is its
    /// (LID, number when disclosed), `pairwise` the sender-key
    /// distribution for a device that lacks it (empty otherwise).
    pub(crate) fn group(
        id: &str,
        group: &str,
        t: i64,
        notify: Option<String>,
        sender: (String, Option<String>),
        pairwise: (String, Vec<u8>),
        skmsg: Vec<u8>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            from: group.to_owned(),
            sender_lid: None,
            notify,
            t,
            kind: "text".to_owned(),
            enc_type: pairwise.0,
            mediatype: None,
            ciphertext: B64(pairwise.1),
            participant: Some(sender.0),
            participant_pn: sender.1,
            skmsg: Some(B64(skmsg)),
            sent_on: None,
        }
    }

    fn node(&self) -> Node {
        let mut b = NodeBuilder::new("message")
            .attr("from", self.from.clone())
            .attr("id", self.id.clone())
            .attr("type", self.kind.clone())
            .attr("t", self.t.to_string());
        if let Some(n) = &self.notify {
            b = b.attr("notify", n.clone());
        }
        if let Some(l) = &self.sender_lid {
            b = b.attr("sender_lid", l.clone());
        }
        if let Some(p) = &self.participant {
            b = b
                .attr("participant", p.clone())
                .attr("addressing_mode", "lid");
        }
        if let Some(p) = &self.participant_pn {
            b = b.attr("participant_pn", p.clone());
        }
        let enc = |kind: String, bytes: Vec<u8>| {
            let mut enc = NodeBuilder::new("enc").attr("v", "2").attr("type", kind);
            if let Some(m) = &self.mediatype {
                enc = enc.attr("mediatype", m.clone());
            }
            enc.bytes(bytes).build()
        };
        let mut children = Vec::new();
        if !self.ciphertext.0.is_empty() {
            children.push(enc(self.enc_type.clone(), self.ciphertext.0.clone()));
        }
        if let Some(sk) = &self.skmsg {
            children.push(enc("skmsg".to_owned(), sk.0.clone()));
        }
        b.children(children).build()
    }
}

/// The messaging part of the simulator's persistent state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Messaging {
    /// Contact phone → its Signal user.
    #[serde(default)]
    contacts: BTreeMap<String, ContactUser>,
    /// `"{account}/{contact}"` → what they exchanged.
    #[serde(default)]
    chats: BTreeMap<String, Chat>,
    /// `"{account}.{device}"` → messages that device has not acknowledged.
    #[serde(default)]
    pending: BTreeMap<String, Vec<Pending>>,
    /// Group id (the user part of its JID) → the group.
    #[serde(default)]
    pub(crate) groups: BTreeMap<String, crate::groups::Group>,
    /// `"{account}/{contact}/{poll id}"` → the message secret of a poll one
    /// of them wrote: what a vote on it is encrypted with.
    #[serde(default)]
    poll_secrets: BTreeMap<String, B64>,
}

impl Messaging {
    /// Checks a restored state.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (phone, c) in &self.contacts {
            c.validate().map_err(|e| format!("contact {phone}: {e}"))?;
        }
        Ok(())
    }

    /// The Signal user of contact `phone`, made on first use.
    pub(crate) fn contact(&mut self, phone: &str) -> anyhow::Result<&mut ContactUser> {
        contact_user(&mut self.contacts, phone)
    }

    /// The contacts' Signal users and the groups, to change together.
    pub(crate) fn contacts_and_groups(
        &mut self,
    ) -> (
        &mut BTreeMap<String, ContactUser>,
        &mut BTreeMap<String, crate::groups::Group>,
    ) {
        (&mut self.contacts, &mut self.groups)
    }

    /// Queues `message` for the account device `peer` (see [`peer_key`]).
    pub(crate) fn queue(&mut self, peer: String, message: Pending) {
        self.pending.entry(peer).or_default().push(message);
    }

    fn chat(&mut self, account: &str, contact: &str) -> &mut Chat {
        self.chats
            .entry(format!("{account}/{contact}"))
            .or_default()
    }
}

/// The Signal user of contact `phone` in `contacts`, made on first use.
pub(crate) fn contact_user<'a>(
    contacts: &'a mut BTreeMap<String, ContactUser>,
    phone: &str,
) -> anyhow::Result<&'a mut ContactUser> {
    if !contacts.contains_key(phone) {
        contacts.insert(phone.to_owned(), ContactUser::generate()?);
    }
    contacts
        .get_mut(phone)
        .ok_or_else(|| anyhow::anyhow!("contact {phone} vanished"))
}

/// A companion's published keys, to start a contact's session with it
/// (one one-time pre-key used up).
pub(crate) fn companion_bundle(device: &mut crate::state::Device) -> CompanionBundle {
    CompanionBundle {
        registration_id: device.reg.registration_id,
        device: device.id,
        identity: device.reg.identity_pub.to_vec(),
        signed_pre_key: (
            device.reg.signed_pre_key.id,
            device.reg.signed_pre_key.public.clone(),
            device.reg.signed_pre_key.signature.clone(),
        ),
        one_time: device.pre_keys.pop_first(),
    }
}

/// Encrypted media the simulator's media host serves, by path (in memory
/// only).
#[derive(Debug, Default)]
pub(crate) struct MediaStore {
    blobs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl MediaStore {
    pub(crate) fn put(&self, path: String, data: Vec<u8>) {
        self.blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(path, Arc::new(data));
    }

    pub(crate) fn get(&self, path: &str) -> Option<Arc<Vec<u8>>> {
        self.blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(path)
            .cloned()
    }
}

/// Now as RFC 3339 (UTC, milliseconds).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh message id in WhatsApp's style.
pub(crate) fn new_message_id() -> String {
    let bytes: [u8; 9] = rand_010::random();
    format!("3EB0{}", hex(&bytes).to_uppercase())
}

/// `user@server` split, device and agent dropped.
pub(crate) fn split_jid(jid: &str) -> Option<(&str, &str, u16)> {
    let (user, server) = jid.split_once('@')?;
    let (user, device) = match user.split_once(':') {
        Some((u, d)) => (u, d.parse().ok()?),
        None => (user, 0),
    };
    let user = user.split('_').next().unwrap_or(user);
    Some((user, server, device))
}

/// The world contact (a person) a JID names, by phone number or LID.
pub(crate) fn contact_of<'w>(world: &'w World, jid: &str) -> Option<&'w Contact> {
    let (user, server, _) = split_jid(jid)?;
    let c = match server {
        "lid" => world.contact_by_lid(user),
        "s.whatsapp.net" | "c.us" => world.contact(&phone_digits(user)?),
        _ => None,
    }?;
    (!c.is_group).then_some(c)
}

/// The `encrypt get key` answer for a contact's device 0, if `jid` names
/// one: its bundle, one one-time pre-key handed out.
pub(crate) fn contact_bundle(g: &mut Inner, world: &World, jid: &str) -> Option<Node> {
    let (_, _, device) = split_jid(jid)?;
    let contact = contact_of(world, jid)?;
    if device != 0 {
        return None;
    }
    let bundle = g
        .messaging_mut()
        .contact(&contact.user)
        .and_then(|c| c.bundle_node(jid));
    match bundle {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!("no bundle for {jid}: {e:#}");
            None
        }
    }
}

/// The id of the message `m` quotes (answers), if it is a reply.
pub(crate) fn quoted_id(m: &wa::Message) -> Option<String> {
    let contexts = [
        m.extended_text_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.image_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.video_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.audio_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.document_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
    ];
    contexts
        .into_iter()
        .flatten()
        .find_map(|c| c.stanza_id.clone())
}

/// What a decrypted message is, for the log.
pub(crate) fn summarize(id: &str, m: &wa::Message) -> Option<LoggedMessage> {
    let media = |mimetype: &Option<String>, len: Option<u64>, sha: &Option<Vec<u8>>| {
        Some(MediaInfo {
            mimetype: mimetype.clone(),
            size: len.unwrap_or(0),
            sha256: sha.as_deref().map(hex).unwrap_or_default(),
        })
    };
    let context = [
        m.extended_text_message.as_option().map(|x| &x.context_info),
        m.image_message.as_option().map(|x| &x.context_info),
        m.video_message.as_option().map(|x| &x.context_info),
        m.document_message.as_option().map(|x| &x.context_info),
    ]
    .into_iter()
    .flatten()
    .find_map(|c| c.as_option());
    let mentions = context.map(|c| c.mentioned_jid.clone()).unwrap_or_default();
    let entry = |kind: &str, text: Option<String>, caption: Option<String>, media| LoggedMessage {
        id: id.to_owned(),
        kind: kind.to_owned(),
        text,
        caption,
        media,
        mentions: mentions.clone(),
        at: now_rfc3339(),
    };
    if let Some(t) = &m.conversation {
        return Some(entry("text", Some(t.clone()), None, None));
    }
    if let Some(x) = m.extended_text_message.as_option() {
        return Some(entry("text", x.text.clone(), None, None));
    }
    if let Some(x) = m.image_message.as_option() {
        let info = media(&x.mimetype, x.file_length, &x.file_sha256);
        return Some(entry("image", None, x.caption.clone(), info));
    }
    if let Some(x) = m.video_message.as_option() {
        let info = media(&x.mimetype, x.file_length, &x.file_sha256);
        return Some(entry("video", None, x.caption.clone(), info));
    }
    if let Some(x) = m.audio_message.as_option() {
        let info = media(&x.mimetype, x.file_length, &x.file_sha256);
        return Some(entry("audio", None, None, info));
    }
    if let Some(x) = m.document_message.as_option() {
        let info = media(&x.mimetype, x.file_length, &x.file_sha256);
        return Some(entry("document", None, x.caption.clone(), info));
    }
    if let Some(x) = m.sticker_message.as_option() {
        let info = media(&x.mimetype, x.file_length, &x.file_sha256);
        return Some(entry("sticker", None, None, info));
    }
    if let Some(x) = m.reaction_message.as_option() {
        return Some(entry("reaction", x.text.clone(), None, None));
    }
    if let Some(x) = m.location_message.as_option() {
        return Some(entry("location", x.name.clone(), x.address.clone(), None));
    }
    if let Some(x) = m.contact_message.as_option() {
        return Some(entry("contacts", x.display_name.clone(), None, None));
    }
    if let Some(x) = m.contacts_array_message.as_option() {
        return Some(entry("contacts", x.display_name.clone(), None, None));
    }
    if let Some(x) = poll_of(m) {
        return Some(entry("poll", x.name.clone(), None, None));
    }
    if let Some(p) = m.protocol_message.as_option() {
        use wa::message::protocol_message::Type;
        // An edit or a deletion for everyone: logged under the id of the
        // message it changes (an edit with its new text).
        let target = p.key.as_option().and_then(|k| k.id.clone());
        let kind = match p.r#type {
            Some(Type::MessageEdit) => "edit",
            Some(Type::Revoke) => "revoke",
            _ => return None,
        };
        let text = p.edited_message.as_option().and_then(|e| {
            e.conversation.clone().or_else(|| {
                e.extended_text_message
                    .as_option()
                    .and_then(|x| x.text.clone())
            })
        });
        return target.map(|target| LoggedMessage {
            id: target,
            ..entry(kind, text, None, None)
        });
    }
    if m.sender_key_distribution_message.is_set() {
        return None; // plumbing, not a message
    }
    Some(entry("unknown", None, None, None))
}

/// The `<enc>` meant for the contact's device 0 in a client's message:
/// inside `<participants><to jid>` (per device) or directly under it.
fn enc_for_contact<'a, 'b>(message: &'b NodeRef<'a>, contact: &Contact) -> Option<&'b NodeRef<'a>> {
    if let Some(parts) = message.get_optional_child("participants") {
        for to in parts.get_children_by_tag("to") {
            let jid = to
                .get_attr("jid")
                .map(|v| v.as_str().into_owned())
                .unwrap_or_default();
            let Some((user, server, device)) = split_jid(&jid) else {
                continue;
            };
            let matches = match server {
                "lid" => contact.lid.as_deref() == Some(user),
                _ => user == contact.user,
            };
            if matches && device == 0 {
                return to.get_optional_child("enc");
            }
        }
        return None;
    }
    message.get_optional_child("enc")
}

/// A client's `<message>`: when it is to a world contact, decrypts the
/// contact's copy, logs it, schedules the contact's receipts and returns
/// the server ack. `None` when it is not to a contact (the caller acks it
/// as before).
pub(crate) fn client_message(sim: &Arc<Sim>, me: (&str, u16), node: &NodeRef<'_>) -> Option<Node> {
    let to = node.get_attr("to")?.as_str().into_owned();
    let id = node.get_attr("id")?.as_str().into_owned();
    let contact = contact_of(&sim.world, &to)?.clone();
    let (account, device) = me;
    let ack = NodeBuilder::new("ack")
        .attr("class", "message")
        .attr("id", id.clone())
        .attr("from", to.clone())
        .attr("t", wacore::time::now_secs().to_string())
        .build();
    let Some(enc) = enc_for_contact(node, &contact) else {
        tracing::warn!(
            account,
            device,
            id,
            "message to {to} without a copy for its device 0"
        );
        return Some(ack);
    };
    let kind = enc
        .get_attr("type")
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default();
    let version: u8 = enc
        .get_attr("v")
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(2);
    let ciphertext = enc.content_bytes().unwrap_or_default();
    let logged = {
        let mut g = sim.lock();
        let decrypted = g
            .messaging_mut()
            .contact(&contact.user)
            .and_then(|c| c.decrypt(&peer_key(account, device), &kind, ciphertext))
            .and_then(|padded| wacore::messages::decode_plaintext(&padded, version));
        match decrypted {
            Ok(message) => {
                let entry = summarize(&id, &message);
                if let Some(entry) = &entry {
                    let chat = g.messaging_mut().chat(account, &contact.user);
                    // A redelivery logs nothing twice; an edit or a
                    // deletion shares the id of the message it changes.
                    let seen = chat
                        .data
                        .iter()
                        .any(|m| m.id == entry.id && m.kind == entry.kind && m.text == entry.text);
                    if !seen {
                        chat.data.push(entry.clone());
                    }
                }
                // A poll's secret: the contact's votes are encrypted with it.
                if poll_of(&message).is_some()
                    && let Some(secret) = message
                        .message_context_info
                        .as_option()
                        .and_then(|c| c.message_secret.clone())
                {
                    g.messaging_mut()
                        .poll_secrets
                        .insert(poll_key(account, &contact.user, &id), B64(secret));
                }
                entry
            }
            Err(e) => {
                tracing::warn!(account, device, id, "cannot decrypt message to {to}: {e:#}");
                None
            }
        }
    };
    if logged.is_some() {
        tracing::debug!(account, device, id, "message to {to} decrypted");
        let reads_after = contact.reads_after_ms.map(Duration::from_millis);
        schedule_receipts(
            sim.clone(),
            account.to_owned(),
            to,
            id,
            sim.world.receipt_delay(),
            reads_after,
        );
    }
    Some(ack)
}

/// The contact's delivery receipt after `delay`, and its read receipt
/// `reads_after` later, to every logged-in device of the account.
fn schedule_receipts(
    sim: Arc<Sim>,
    account: String,
    from: String,
    id: String,
    delay: Duration,
    reads_after: Option<Duration>,
) {
    tokio::spawn(async move {
        let receipt = |kind: Option<&str>| {
            let mut b = NodeBuilder::new("receipt")
                .attr("from", from.clone())
                .attr("id", id.clone())
                .attr("t", wacore::time::now_secs().to_string());
            if let Some(k) = kind {
                b = b.attr("type", k);
            }
            b.build()
        };
        tokio::time::sleep(delay).await;
        let node = receipt(None);
        crate::iq::broadcast(&sim, &account, || Outbound::Node(node.clone()));
        if let Some(after) = reads_after {
            tokio::time::sleep(after).await;
            let node = receipt(Some("read"));
            crate::iq::broadcast(&sim, &account, || Outbound::Node(node.clone()));
        }
    });
}

/// A client's `<receipt>`: when it is to a contact, the messages it names
/// are acknowledged by this device and the receipt is logged.
pub(crate) fn client_receipt(sim: &Sim, me: (&str, u16), node: &NodeRef<'_>) {
    let Some(to) = node.get_attr("to").map(|v| v.as_str().into_owned()) else {
        return;
    };
    let Some(contact) = contact_of(&sim.world, &to) else {
        if to.ends_with("@g.us") {
            crate::groups::client_receipt(sim, me, node);
        }
        return;
    };
    let mut ids: Vec<String> = node
        .get_attr("id")
        .map(|v| vec![v.as_str().into_owned()])
        .unwrap_or_default();
    if let Some(list) = node.get_optional_child("list") {
        ids.extend(
            list.get_children_by_tag("item")
                .filter_map(|i| i.get_attr("id").map(|v| v.as_str().into_owned())),
        );
    }
    let ty = node.get_attr("type").map(|v| v.as_str().into_owned());
    let logged = match ty.as_deref() {
        None | Some("inactive" | "delivery") => Some("delivered"),
        Some("read" | "read-self" | "played") => Some("read"),
        _ => None,
    };
    let (account, device) = me;
    let mut g = sim.lock();
    let messaging = g.messaging_mut();
    if ty.as_deref() != Some("retry") {
        acknowledge(messaging, account, device, &ids);
    } else {
        tracing::warn!(
            account,
            device,
            ?ids,
            "the client could not decrypt a message (retry receipt)"
        );
    }
    if let Some(kind) = logged {
        let chat = messaging.chat(account, &contact.user);
        for id in ids {
            if !chat.receipts.iter().any(|r| r.id == id && r.kind == kind) {
                chat.receipts.push(LoggedReceipt {
                    id,
                    kind: kind.to_owned(),
                    at: now_rfc3339(),
                });
            }
        }
    }
}

/// A client's `<ack class="message">`: the message is acknowledged.
pub(crate) fn client_ack(sim: &Sim, me: (&str, u16), node: &NodeRef<'_>) {
    let class = node.get_attr("class").map(|v| v.as_str().into_owned());
    if class.as_deref() != Some("message") {
        return;
    }
    let Some(id) = node.get_attr("id").map(|v| v.as_str().into_owned()) else {
        return;
    };
    let (account, device) = me;
    let mut g = sim.lock();
    let key = peer_key(account, device);
    if g.messaging()
        .pending
        .get(&key)
        .is_some_and(|p| p.iter().any(|m| m.id == id))
    {
        acknowledge(g.messaging_mut(), account, device, &[id]);
    }
}

pub(crate) fn acknowledge(messaging: &mut Messaging, account: &str, device: u16, ids: &[String]) {
    let key = peer_key(account, device);
    if let Some(queue) = messaging.pending.get_mut(&key) {
        queue.retain(|m| !ids.contains(&m.id));
        if queue.is_empty() {
            messaging.pending.remove(&key);
        }
    }
}

/// The connection `conn` of `account`'s `device` is ready (`<active/>`):
/// the messages waiting for that device, to send it now.
pub(crate) fn ready(sim: &Sim, conn: u64, account: &str, device: u16) -> Vec<Node> {
    let mut g = sim.lock();
    if let Some(c) = g.conns.get_mut(&conn) {
        c.ready = true;
    }
    let key = peer_key(account, device);
    if !g.messaging().pending.contains_key(&key) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(queue) = g.messaging_mut().pending.get_mut(&key) {
        for m in queue.iter_mut().filter(|m| m.sent_on != Some(conn)) {
            m.sent_on = Some(conn);
            out.push(m.node());
        }
    }
    if !out.is_empty() {
        tracing::debug!(account, device, n = out.len(), "delivering queued messages");
    }
    out
}

/// `POST /admin/accounts/{phone}/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    from: String,
    /// `text` or `image` (the default: whichever is given), `location`,
    /// `contacts`, `poll`, `edit`, `revoke`, `vote`.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image: Option<ImageBody>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    location: Option<LocationBody>,
    #[serde(default)]
    contacts: Option<Vec<CardBody>>,
    #[serde(default)]
    poll: Option<PollBody>,
    /// The message an edit, a deletion or a vote is about.
    #[serde(default)]
    target: Option<String>,
    /// The options a vote picks (none: the vote taken back).
    #[serde(default)]
    options: Option<Vec<String>>,
    /// The people a text or an image's caption @mentions (digits,
    /// `+digits`, or a phone-number or LID JID).
    #[serde(default)]
    mentions: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationBody {
    latitude: f64,
    longitude: f64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CardBody {
    display_name: String,
    vcard: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PollBody {
    question: String,
    options: Vec<String>,
    #[serde(default)]
    selectable_count: Option<u32>,
}

/// A poll creation message, whichever version carries it.
fn poll_of(m: &wa::Message) -> Option<&wa::message::PollCreationMessage> {
    [
        &m.poll_creation_message,
        &m.poll_creation_message_v2,
        &m.poll_creation_message_v3,
    ]
    .into_iter()
    .find_map(|p| p.as_option())
}

fn poll_key(account: &str, contact: &str, id: &str) -> String {
    format!("{account}/{contact}/{id}")
}

/// What the contact `from` sends `account`, by the body's `type`: the
/// message, and the secret to keep for a poll it creates.
fn conversation_message(
    sim: &Sim,
    account: &str,
    from: &str,
    kind: &str,
    body: PostBody,
) -> Result<(wa::Message, Option<Vec<u8>>), AdminError> {
    let bad = |m: &str| Err(AdminError::BadRequest(m.to_owned()));
    let target = |t: Option<String>| {
        t.filter(|t| !t.is_empty()).ok_or_else(|| {
            AdminError::BadRequest(format!("a {kind} needs \"target\": the message id"))
        })
    };
    // From the contact's side the chat is the account, and its own
    // messages are `fromMe`.
    let key = |target: String, from_me: bool| wa::MessageKey {
        remote_jid: Some(format!("{account}@s.whatsapp.net")),
        from_me: Some(from_me),
        id: Some(target),
        participant: None,
    };
    let message = match kind {
        "location" => {
            let Some(l) = body.location else {
                return bad(
                    "a location needs \"location\": {latitude, longitude, name?, address?}",
                );
            };
            wa::Message {
                location_message: buffa::MessageField::some(wa::message::LocationMessage {
                    degrees_latitude: Some(l.latitude),
                    degrees_longitude: Some(l.longitude),
                    name: l.name,
                    address: l.address,
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        "contacts" => {
            let cards: Vec<_> = body
                .contacts
                .unwrap_or_default()
                .into_iter()
                .map(|c| wa::message::ContactMessage {
                    display_name: Some(c.display_name),
                    vcard: Some(c.vcard),
                    ..Default::default()
                })
                .collect();
            match cards.len() {
                0 => return bad("contacts needs \"contacts\": [{displayName, vcard}…]"),
                1 => wa::Message {
                    contact_message: buffa::MessageField::some(
                        cards.into_iter().next().unwrap_or_default(),
                    ),
                    ..Default::default()
                },
                n => wa::Message {
                    contacts_array_message: buffa::MessageField::some(
                        wa::message::ContactsArrayMessage {
                            display_name: Some(format!("{n} contacts")),
                            contacts: cards,
                            ..Default::default()
                        },
                    ),
                    ..Default::default()
                },
            }
        }
        "poll" => {
            let Some(p) = body.poll else {
                return bad("a poll needs \"poll\": {question, options, selectableCount?}");
            };
            if p.options.len() < 2 || p.options.len() > 12 {
                return bad("a poll has 2 to 12 options");
            }
            let secret: [u8; 32] = rand_010::random();
            let creation = wa::message::PollCreationMessage {
                name: Some(p.question),
                options: p
                    .options
                    .into_iter()
                    .map(|o| wa::message::poll_creation_message::Option {
                        option_name: Some(o),
                        option_hash: None,
                    })
                    .collect(),
                selectable_options_count: Some(p.selectable_count.unwrap_or(1)),
                ..Default::default()
            };
            let message = wa::Message {
                poll_creation_message_v3: buffa::MessageField::some(creation),
                message_context_info: buffa::MessageField::some(wa::MessageContextInfo {
                    message_secret: Some(secret.to_vec()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            return Ok((message, Some(secret.to_vec())));
        }
        "edit" => {
            let Some(text) = body.text.filter(|t| !t.is_empty()) else {
                return bad("an edit needs \"text\"");
            };
            wa::Message {
                protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
                    key: buffa::MessageField::some(key(target(body.target)?, true)),
                    r#type: Some(wa::message::protocol_message::Type::MessageEdit),
                    edited_message: buffa::MessageField::some(wa::Message {
                        conversation: Some(text),
                        ..Default::default()
                    }),
                    timestamp_ms: Some(wacore::time::now_millis()),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        "revoke" => wa::Message {
            protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
                key: buffa::MessageField::some(key(target(body.target)?, true)),
                r#type: Some(wa::message::protocol_message::Type::Revoke),
                ..Default::default()
            }),
            ..Default::default()
        },
        "vote" => {
            let poll = target(body.target)?;
            // The account's poll, or one the contact created itself.
            let g = sim.lock();
            let secrets = &g.messaging().poll_secrets;
            let (secret, creator, from_me) = match (
                secrets.get(&poll_key(account, from, &poll)),
                secrets.get(&poll_key(from, account, &poll)),
            ) {
                (Some(s), _) => (s.0.clone(), account, false),
                (None, Some(s)) => (s.0.clone(), from, true),
                (None, None) => {
                    return Err(AdminError::NotFound(format!(
                        "no poll {poll} between {account} and {from}"
                    )));
                }
            };
            drop(g);
            let hashes: Vec<Vec<u8>> = body
                .options
                .unwrap_or_default()
                .iter()
                .map(|o| wacore::poll::compute_option_hash(o).to_vec())
                .collect();
            let (payload, iv) = wacore::poll::encrypt_poll_vote_with_secret(
                &hashes,
                &secret,
                &poll,
                &format!("{creator}@s.whatsapp.net"),
                &format!("{from}@s.whatsapp.net"),
            )
            .map_err(|e| AdminError::Failed(format!("vote encryption: {e}")))?;
            wa::Message {
                poll_update_message: buffa::MessageField::some(wa::message::PollUpdateMessage {
                    poll_creation_message_key: buffa::MessageField::some(key(poll, from_me)),
                    vote: buffa::MessageField::some(wa::message::PollEncValue {
                        enc_payload: Some(payload),
                        enc_iv: Some(iv.to_vec()),
                    }),
                    sender_timestamp_ms: Some(wacore::time::now_millis()),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        other => {
            return Err(AdminError::BadRequest(format!(
                "\"type\" '{other}' is none of text, image, location, contacts, poll, edit, revoke, vote"
            )));
        }
    };
    Ok((message, None))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageBody {
    data: String,
    mimetype: String,
}

/// The JIDs `mentions` name: digits (or `+digits`) become phone-number
/// JIDs, phone-number and LID JIDs stay as given.
fn mention_jids(mentions: &[String]) -> Result<Vec<String>, AdminError> {
    mentions
        .iter()
        .map(|m| {
            let jid = match m.split_once('@') {
                Some((user, "s.whatsapp.net" | "lid"))
                    if !user.is_empty() && user.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Some(m.clone())
                }
                Some(_) => None,
                None => phone_digits(m).map(|d| format!("{d}@s.whatsapp.net")),
            };
            jid.ok_or_else(|| {
                AdminError::BadRequest(format!(
                    "mention '{m}' is not a phone number or a person's JID"
                ))
            })
        })
        .collect()
}

/// `message` (a text or an image) @mentioning `jids` in its context, as
/// WhatsApp's clients write it: a text becomes an `extendedTextMessage`.
fn with_mentions(mut message: wa::Message, jids: Vec<String>) -> wa::Message {
    if jids.is_empty() {
        return message;
    }
    let context = wa::ContextInfo {
        mentioned_jid: jids,
        ..Default::default()
    };
    if let Some(text) = message.conversation.take() {
        message.extended_text_message =
            buffa::MessageField::some(wa::message::ExtendedTextMessage {
                text: Some(text),
                context_info: buffa::MessageField::some(context),
                ..Default::default()
            });
    } else if let Some(image) = message.image_message.as_option_mut() {
        image.context_info = buffa::MessageField::some(context);
    }
    message
}

/// The message a contact sends, before encryption.
fn build_message(sim: &Sim, body: PostBody) -> Result<(wa::Message, &'static str), AdminError> {
    let mentions = mention_jids(body.mentions.as_deref().unwrap_or_default())?;
    let (message, kind) = plain_message(sim, body)?;
    Ok((with_mentions(message, mentions), kind))
}

/// A text or an image.
fn plain_message(sim: &Sim, body: PostBody) -> Result<(wa::Message, &'static str), AdminError> {
    match (body.text, body.image) {
        (Some(text), None) => {
            if body.caption.is_some() {
                return Err(AdminError::BadRequest(
                    "\"caption\" goes with \"image\", not \"text\"".into(),
                ));
            }
            if text.is_empty() {
                return Err(AdminError::BadRequest("\"text\" is empty".into()));
            }
            Ok((
                wa::Message {
                    conversation: Some(text),
                    ..Default::default()
                },
                "text",
            ))
        }
        (None, Some(image)) => {
            let data = base64::engine::general_purpose::STANDARD
                .decode(image.data.as_bytes())
                .map_err(|e| AdminError::BadRequest(format!("image.data is not base64: {e}")))?;
            if data.is_empty() || data.len() > MAX_MEDIA_BYTES {
                return Err(AdminError::BadRequest(format!(
                    "image.data must be 1 to {MAX_MEDIA_BYTES} bytes"
                )));
            }
            if !image.mimetype.contains('/') {
                return Err(AdminError::BadRequest(
                    "image.mimetype must be a MIME type such as image/jpeg".into(),
                ));
            }
            let image = upload_image(sim, &data, image.mimetype, body.caption)?;
            Ok((
                wa::Message {
                    image_message: buffa::MessageField::some(image),
                    ..Default::default()
                },
                "media",
            ))
        }
        _ => Err(AdminError::BadRequest(
            "give exactly one of \"text\" and \"image\"".into(),
        )),
    }
}

/// Encrypts `data` as WhatsApp image media (media key, HKDF, AES-CBC and
/// HMAC), puts it on the simulator's media host and returns the message.
fn upload_image(
    sim: &Sim,
    data: &[u8],
    mimetype: String,
    caption: Option<String>,
) -> Result<wa::message::ImageMessage, AdminError> {
    let enc = wacore::upload::encrypt_media(data, wacore::download::MediaType::Image)
        .map_err(|e| AdminError::Failed(format!("media encryption: {e}")))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(enc.file_enc_sha256);
    let direct_path = format!("/v/t62.7118-24/sim/{}.enc", hex(&enc.file_enc_sha256));
    sim.media.put(direct_path.clone(), enc.data_to_upload);
    Ok(wa::message::ImageMessage {
        url: Some(format!(
            "https://{}{direct_path}?token={token}",
            sim.media_host()
        )),
        mimetype: Some(mimetype),
        caption,
        file_sha256: Some(enc.file_sha256.to_vec()),
        file_length: Some(data.len() as u64),
        media_key: Some(enc.media_key.to_vec()),
        file_enc_sha256: Some(enc.file_enc_sha256.to_vec()),
        direct_path: Some(direct_path),
        media_key_timestamp: Some(wacore::time::now_secs()),
        ..Default::default()
    })
}

/// The contact `from` sends `account` a message: encrypted to each of its
/// companions, queued per device, sent to those connected. Returns the id.
pub(crate) async fn post(sim: &Arc<Sim>, account: &str, body: &[u8]) -> Result<String, AdminError> {
    let body: PostBody = serde_json::from_slice(body).map_err(|e| {
        AdminError::BadRequest(format!(
            "the body must be {{\"from\", \"text\"}}, {{\"from\", \"image\": {{\"data\", \"mimetype\"}}, \"caption\"}} or {{\"from\", \"type\", …}} (see docs/simulator.md): {e}"
        ))
    })?;
    let from = phone_digits(body.from.split('@').next().unwrap_or_default()).ok_or_else(|| {
        AdminError::BadRequest(format!("\"from\" '{}' is not a phone number", body.from))
    })?;
    let contact = sim
        .world
        .contact(&from)
        .filter(|c| !c.is_group)
        .cloned()
        .ok_or_else(|| AdminError::NotFound(format!("{from} is not a contact of the world")))?;
    if !sim.lock().accounts().contains_key(account) {
        return Err(AdminError::NotFound(format!("no account {account}")));
    }
    let (message, kind, secret) = match body.kind.clone().as_deref() {
        None | Some("text" | "image") => {
            let (message, kind) = build_message(sim, body)?;
            (message, kind, None)
        }
        Some(other) => {
            if body.mentions.is_some() {
                return Err(AdminError::BadRequest(
                    "\"mentions\" go with a text or an image's caption".into(),
                ));
            }
            let (message, secret) = conversation_message(sim, account, &from, other, body)?;
            (message, "text", secret)
        }
    };
    let mediatype = (kind == "media").then(|| "image".to_owned());
    let plaintext = wacore::messages::MessageUtils::pad_message_v2(message.encode_to_vec());
    let id = new_message_id();
    let t = wacore::time::now_secs();
    let sends;
    {
        let mut g = sim.lock();
        let (accounts, messaging) = g.accounts_and_messaging_mut();
        let Some(acc) = accounts.get_mut(account) else {
            return Err(AdminError::NotFound(format!("no account {account}")));
        };
        let user = messaging
            .contact(&from)
            .map_err(|e| AdminError::Failed(e.to_string()))?;
        let mut queued = Vec::new();
        for (dev_id, dev) in acc.devices.iter_mut() {
            let peer = peer_key(account, *dev_id);
            let bundle = (!user.has_session(&peer)).then(|| companion_bundle(dev));
            match user.encrypt(&peer, bundle, &plaintext) {
                Ok((enc_type, ciphertext)) => queued.push((
                    peer,
                    Pending {
                        id: id.clone(),
                        from: format!("{from}@s.whatsapp.net"),
                        sender_lid: contact.lid.as_ref().map(|l| format!("{l}@lid")),
                        notify: contact.push_name.clone(),
                        t,
                        kind: kind.to_owned(),
                        enc_type: enc_type.to_owned(),
                        mediatype: mediatype.clone(),
                        ciphertext: B64(ciphertext),
                        participant: None,
                        participant_pn: None,
                        skmsg: None,
                        sent_on: None,
                    },
                )),
                Err(e) => {
                    tracing::warn!(account, device = dev_id, "cannot encrypt to it: {e:#}");
                }
            }
        }
        for (peer, p) in queued {
            messaging.pending.entry(peer).or_default().push(p);
        }
        if let Some(secret) = secret {
            messaging
                .poll_secrets
                .insert(poll_key(&from, account, &id), B64(secret));
        }
        sends = to_ready_devices(&mut g, account, &id);
    }
    // On disk before it is on the wire (a counter is never reused).
    let _ = sim.persist().await;
    for (tx, node) in sends {
        let _ = tx.send(Outbound::Node(node));
    }
    tracing::debug!(account, from, id, "contact sent a message");
    Ok(id)
}

/// The queued message `id` of `account`, for each of its devices connected
/// and ready now (marked as sent on that connection): what to send where.
pub(crate) fn to_ready_devices(
    g: &mut Inner,
    account: &str,
    id: &str,
) -> Vec<(tokio::sync::mpsc::UnboundedSender<Outbound>, Node)> {
    let targets: Vec<(u64, u16, _)> = g
        .conns
        .iter()
        .filter(|(_, c)| c.ready)
        .filter_map(|(conn, c)| match &c.login {
            Some((p, d)) if p == account => Some((*conn, *d, c.tx.clone())),
            _ => None,
        })
        .collect();
    let mut sends = Vec::new();
    for (conn, dev, tx) in targets {
        let key = peer_key(account, dev);
        if let Some(m) = g
            .messaging_mut()
            .pending
            .get_mut(&key)
            .and_then(|q| q.iter_mut().find(|m| m.id == id))
        {
            m.sent_on = Some(conn);
            sends.push((tx, m.node()));
        }
    }
    sends
}

/// `GET /admin/accounts/{phone}/messages?peer=…`.
pub(crate) fn chat_json(
    sim: &Sim,
    account: &str,
    peer: Option<&str>,
) -> Result<serde_json::Value, AdminError> {
    let peer =
        peer.ok_or_else(|| AdminError::BadRequest("the query needs ?peer=<phone>".into()))?;
    let user = peer.split('@').next().unwrap_or_default();
    let phone = phone_digits(user)
        .ok_or_else(|| AdminError::BadRequest(format!("peer '{peer}' is not a phone number")))?;
    let g = sim.lock();
    if !g.accounts().contains_key(account) {
        return Err(AdminError::NotFound(format!("no account {account}")));
    }
    let chat = g
        .messaging()
        .chats
        .get(&format!("{account}/{phone}"))
        .cloned()
        .unwrap_or_default();
    Ok(serde_json::json!({ "data": chat.data, "receipts": chat.receipts }))
}

/// `POST /mms/{kind}/{token}`: a client uploads encrypted media; it is
/// kept (in memory) and served at the direct path returned.
pub(crate) fn media_upload(
    sim: &Sim,
    kind: &str,
    token: &str,
    data: Vec<u8>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let ok_kind = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok_kind || data.is_empty() {
        return AdminError::BadRequest("an upload is POST /mms/{type}/{token} with a body".into())
            .into_response();
    }
    let digest = sha2::Sha256::digest(&data);
    let direct_path = format!("/v/t62.7118-24/sim/{kind}/{}.enc", hex(&digest));
    tracing::debug!(kind, token, len = data.len(), direct_path, "media uploaded");
    sim.media.put(direct_path.clone(), data);
    let url = format!("https://{}{direct_path}", sim.media_host());
    axum::Json(serde_json::json!({ "url": url, "direct_path": direct_path })).into_response()
}

/// `GET /v/…`: media a client or the simulator uploaded.
pub(crate) fn media_download(sim: &Sim, path: &str) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match sim.media.get(&format!("/v/{path}")) {
        Some(data) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            data.as_ref().clone(),
        )
            .into_response(),
        None => AdminError::NotFound(format!("no media at /v/{path}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn edits_and_deletions_are_logged_under_the_message_they_change() {
        use wa::message::protocol_message::Type;
        let change = |kind: Type, edited: Option<&str>| wa::Message {
            protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
                key: buffa::MessageField::some(wa::MessageKey {
                    id: Some("3EB0ORIGINAL".into()),
                    ..Default::default()
                }),
                r#type: Some(kind),
                edited_message: match edited {
                    Some(t) => buffa::MessageField::some(wa::Message {
                        conversation: Some(t.into()),
                        ..Default::default()
                    }),
                    None => buffa::MessageField::none(),
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let edit = summarize("3EB0EDIT", &change(Type::MessageEdit, Some("new"))).unwrap();
        assert_eq!(
            (edit.id.as_str(), edit.kind.as_str(), edit.text.as_deref()),
            ("3EB0ORIGINAL", "edit", Some("new"))
        );
        let revoke = summarize("3EB0REVOKE", &change(Type::Revoke, None)).unwrap();
        assert_eq!(
            (revoke.id.as_str(), revoke.kind.as_str()),
            ("3EB0ORIGINAL", "revoke")
        );
        assert!(summarize("3EB0X", &change(Type::EphemeralSetting, None)).is_none());
    }

    #[test]
    fn summaries_name_the_kind() {
        let text = wa::Message {
            conversation: Some("hi".into()),
            ..Default::default()
        };
        let s = summarize("1", &text).unwrap();
        assert_eq!((s.kind.as_str(), s.text.as_deref()), ("text", Some("hi")));
        let image = wa::Message {
            image_message: buffa::MessageField::some(wa::message::ImageMessage {
                mimetype: Some("image/png".into()),
                caption: Some("c".into()),
                file_length: Some(3),
                file_sha256: Some(vec![0xab, 0x01]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = summarize("2", &image).unwrap();
        assert_eq!(s.kind, "image");
        assert_eq!(s.caption.as_deref(), Some("c"));
        let m = s.media.unwrap();
        assert_eq!((m.size, m.sha256.as_str()), (3, "ab01"));
        assert!(s.at.ends_with('Z'), "{}", s.at);
    }

    #[test]
    fn mentions_ride_in_the_context_and_are_logged() {
        let jids = mention_jids(&[
            "+14155550123".into(),
            "123456789012345@lid".into(),
            "14155550199@s.whatsapp.net".into(),
        ])
        .unwrap();
        assert_eq!(
            jids,
            [
                "14155550123@s.whatsapp.net",
                "123456789012345@lid",
                "14155550199@s.whatsapp.net"
            ]
        );
        for bad in ["120363025246125486@g.us", "x@lid", "nope", "@lid"] {
            assert!(mention_jids(&[bad.into()]).is_err(), "{bad}");
        }
        let text = wa::Message {
            conversation: Some("ask @14155550123".into()),
            ..Default::default()
        };
        let m = with_mentions(text.clone(), jids[..1].to_vec());
        assert!(m.conversation.is_none());
        let x = m.extended_text_message.as_option().unwrap();
        assert_eq!(x.text.as_deref(), Some("ask @14155550123"));
        let logged = summarize("1", &m).unwrap();
        assert_eq!(
            (logged.kind.as_str(), logged.mentions.as_slice()),
            ("text", &jids[..1])
        );
        // None: the message stays a plain conversation, logged without.
        assert_eq!(with_mentions(text.clone(), Vec::new()), text);
        let plain = serde_json::to_value(summarize("2", &text).unwrap()).unwrap();
        assert!(plain.get("mentions").is_none(), "{plain}");
        let image = wa::Message {
            image_message: buffa::MessageField::some(wa::message::ImageMessage {
                caption: Some("@x".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = with_mentions(image, jids[1..2].to_vec());
        assert_eq!(summarize("3", &m).unwrap().mentions, &jids[1..2]);
    }

    #[test]
    fn jids_split() {
        assert_eq!(split_jid("1:2@lid"), Some(("1", "lid", 2)));
        assert_eq!(
            split_jid("1@s.whatsapp.net"),
            Some(("1", "s.whatsapp.net", 0))
        );
        assert_eq!(split_jid("1:x@lid"), None);
        assert_eq!(split_jid("nothing"), None);
        assert!(new_message_id().starts_with("3EB0"));
    }
}
