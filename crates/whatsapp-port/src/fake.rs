//! The fake adapter: a deterministic in-memory WhatsApp.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::{Duration, OffsetDateTime};
use wagate_domain::{
    About, Absence, BlocklistEntry, ChatState, Clock, Group, GroupJid, GroupSubject, InviteCode,
    Jid, JidKind, MediaInfo, MembershipRequest, MessageId, MessageStatus, PairingCode,
    ParticipantAction, ParticipantOutcome, PhoneNumber, PictureType, ProfilePicture, QrCode,
    RequestAction, RichContent, SessionId,
};

mod groups;

pub use groups::BUILTIN_FAKE_GROUPS;

use crate::{
    GroupChange, InboundContent, InboundMessage, MediaDownload, MediaRef, OutgoingContent,
    OutgoingMessage, Refusal, SessionEvent, SessionEventKind, SessionEventSink, StatusUpdate,
    WhatsAppError, WhatsAppPort, option_hash,
};

/// How long a fake QR code is valid (WhatsApp's first code lives 60 s).
const QR_TTL: Duration = Duration::seconds(60);
/// WhatsApp's pairing-code alphabet: no 0, O, I or U.
const PAIRING_ALPHABET: &[u8; 32] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";

/// The built-in world used when no fixtures file is configured (the same as
/// `examples/world.json`, which the simulator serves for the offline demo).
pub const BUILTIN_WORLD: &str = r#"{
  "phone": "15550001111",
  "pushName": "Wagate Demo",
  "contacts": {
    "14155550123@s.whatsapp.net": {
      "picture": { "id": "1712345678", "url": "https://pps.whatsapp.net/v/t61/abc.jpg",
                   "directPath": "/v/t61/abc.jpg", "hash": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=" },
      "about": { "text": "Hey there!", "setAt": "2024-01-01T00:00:00Z" },
      "lid": "123456789012345@lid"
    },
    "14155550199@s.whatsapp.net": {},
    "14155550155@s.whatsapp.net": {
      "picture": { "id": "1700000000", "url": "https://pps.whatsapp.net/v/t61/hidden.jpg" },
      "about": { "text": "private", "setAt": null },
      "hidden": ["picture", "about"]
    },
    "14155550100@s.whatsapp.net": { "fail": "timeout" },
    "14155550101@s.whatsapp.net": { "fail": "unavailable" },
    "120363025246125486@g.us": {
      "picture": { "id": "1699999999", "url": "https://pps.whatsapp.net/v/t61/group.jpg" }
    }
  }
}"#;

/// Contacts only the fake adapter knows, added to [`BUILTIN_WORLD`] by
/// [`Fixtures::builtin`] (the simulator serves [`BUILTIN_WORLD`] alone):
/// `14155550142` answers every message it is sent (`replies`) and reads
/// it (`readsAfterMs`), so the demo and the contract tests can receive
/// messages over HTTP alone; `14155550143` refuses every call for good
/// (`fail: refused`) and `14155550144` every media message
/// (`fail: media_refused`), so a permanent refusal can be seen too;
/// `14155550145` can only be invited to groups, not added
/// (`inviteOnly`).
pub const BUILTIN_FAKE_CONTACTS: &str = r#"{
  "14155550142@s.whatsapp.net": {
    "about": { "text": "I answer everything", "setAt": null },
    "readsAfterMs": 0,
    "replies": true
  },
  "14155550143@s.whatsapp.net": { "fail": "refused" },
  "14155550144@s.whatsapp.net": { "fail": "media_refused" },
  "14155550145@s.whatsapp.net": { "inviteOnly": true }
}"#;

/// Why a fixtures file was refused.
#[derive(Debug, Error)]
pub enum FixturesError {
    /// The file could not be read.
    #[error("cannot read fixtures file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON does not describe a world (wrong shape, bad JID, bad phone).
    #[error("invalid fixtures: {0}")]
    Invalid(String),
}

/// What a live action on a contact does instead of succeeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Fail with [`WhatsAppError::Timeout`].
    Timeout,
    /// Fail with [`WhatsAppError::Unavailable`].
    Unavailable,
    /// Fail for good: [`WhatsAppError::Refused`] with WhatsApp's 403.
    Refused,
    /// Media messages to the contact fail for good (the media server
    /// refuses the upload: [`Refusal::Media`] 415); everything else works.
    MediaRefused,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PictureFixture {
    id: String,
    url: String,
    #[serde(default)]
    direct_path: Option<String>,
    #[serde(default)]
    hash: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AboutFixture {
    text: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    set_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Hideable {
    Picture,
    About,
}

/// One contact of the fake world.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactFixture {
    #[serde(default)]
    picture: Option<PictureFixture>,
    #[serde(default)]
    about: Option<AboutFixture>,
    #[serde(default)]
    lid: Option<Jid>,
    #[serde(default)]
    fail: Option<FailMode>,
    /// What the contact's privacy settings hide from us (an extension of the
    /// documented format: `["picture", "about"]`).
    #[serde(default)]
    hidden: Vec<Hideable>,
    /// The contact reads what it is sent (the simulator waits this long;
    /// the fake reads at once).
    #[serde(default)]
    reads_after_ms: Option<u64>,
    /// The contact answers every message it is sent (fake only): a text
    /// with `You said: <text>`, a media message with the same media.
    #[serde(default)]
    replies: bool,
    /// The contact's privacy settings let nobody add them to a group: an
    /// admin must send an invite (fake only).
    #[serde(default)]
    invite_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FixturesFile {
    phone: String,
    #[serde(default)]
    push_name: Option<String>,
    #[serde(default)]
    contacts: BTreeMap<String, ContactFixture>,
    /// Groups (fake only; see [`BUILTIN_FAKE_GROUPS`] for the format).
    #[serde(default)]
    groups: BTreeMap<String, groups::GroupFixture>,
}

/// The fake world: the phone that links every session, and its contacts.
#[derive(Debug, Clone)]
pub struct Fixtures {
    phone: PhoneNumber,
    push_name: Option<String>,
    contacts: HashMap<Jid, ContactFixture>,
    /// LID → phone-number JID, from the contacts' `lid`.
    lids: HashMap<Jid, Jid>,
    /// The world's groups.
    groups: Vec<groups::WorldGroup>,
}

impl Fixtures {
    /// The built-in world (see docs/configuration.md).
    pub fn builtin() -> Self {
        // The built-in JSON is a constant covered by a unit test.
        let mut world = Self::from_json(BUILTIN_WORLD)
            .unwrap_or_else(|e| unreachable!("built-in fixtures: {e}"));
        let extra: BTreeMap<String, ContactFixture> = serde_json::from_str(BUILTIN_FAKE_CONTACTS)
            .unwrap_or_else(|e| unreachable!("built-in fake contacts: {e}"));
        for (key, contact) in extra {
            if let Ok(jid) = Jid::parse(&key) {
                world.contacts.insert(jid, contact);
            }
        }
        let fixtures: BTreeMap<String, groups::GroupFixture> =
            serde_json::from_str(BUILTIN_FAKE_GROUPS)
                .unwrap_or_else(|e| unreachable!("built-in fake groups: {e}"));
        world.groups = groups::parse_groups(fixtures, &world)
            .unwrap_or_else(|e| unreachable!("built-in fake groups: {e}"));
        world
    }

    /// Reads a world from a JSON file in the documented format.
    ///
    /// # Errors
    ///
    /// [`FixturesError`] when the file cannot be read or is not a valid world.
    pub fn from_file(path: &Path) -> Result<Self, FixturesError> {
        let text = std::fs::read_to_string(path).map_err(|source| FixturesError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Reads a world from JSON text.
    ///
    /// # Errors
    ///
    /// [`FixturesError::Invalid`] naming the first problem.
    pub fn from_json(text: &str) -> Result<Self, FixturesError> {
        let file: FixturesFile =
            serde_json::from_str(text).map_err(|e| FixturesError::Invalid(e.to_string()))?;
        let phone = PhoneNumber::parse(&file.phone)
            .map_err(|e| FixturesError::Invalid(format!("phone: {}", e.message)))?;
        let mut contacts = HashMap::new();
        let mut lids = HashMap::new();
        for (key, contact) in file.contacts {
            let jid = Jid::parse(&key)
                .map_err(|e| FixturesError::Invalid(format!("contact '{key}': {}", e.message)))?;
            if let Some(lid) = &contact.lid {
                if lid.kind() != JidKind::Lid || jid.kind() != JidKind::User {
                    return Err(FixturesError::Invalid(format!(
                        "contact '{key}': lid must be a …@lid JID of a phone-number contact"
                    )));
                }
                lids.insert(lid.clone(), jid.clone());
            }
            contacts.insert(jid, contact);
        }
        let mut world = Self {
            phone,
            push_name: file.push_name,
            contacts,
            lids,
            groups: Vec::new(),
        };
        world.groups = groups::parse_groups(file.groups, &world)?;
        Ok(world)
    }

    /// The contact a JID names, by phone-number JID or by LID.
    fn contact(&self, jid: &Jid) -> Option<&ContactFixture> {
        self.contacts
            .get(jid)
            .or_else(|| self.lids.get(jid).and_then(|p| self.contacts.get(p)))
    }

    /// The (LID, phone) pair a person is known by; either may be unknown.
    fn identities(&self, jid: &Jid) -> (Option<Jid>, Option<Jid>) {
        match jid.kind() {
            JidKind::Lid => (Some(jid.clone()), self.lids.get(jid).cloned()),
            _ => (
                self.contacts.get(jid).and_then(|c| c.lid.clone()),
                Some(jid.clone()),
            ),
        }
    }
}

#[derive(Debug, Default)]
struct FakeSession {
    linked_as: Option<Jid>,
    connected: bool,
    qr: Option<QrCode>,
    qr_count: u32,
    /// Keyed by the JID WhatsApp would list: the LID when known.
    blocked: BTreeMap<String, BlocklistEntry>,
    /// Ids of the messages sent (a second send of one id sends nothing).
    sent: HashSet<MessageId>,
    /// Messages for the account the gateway has not recorded yet: kept
    /// and delivered again on the next connect (at least once).
    undelivered: Vec<InboundMessage>,
    /// Whose presence the session asked for since it connected.
    subscribed: HashSet<Jid>,
    /// The session's copy of the world's groups (by JID), made the first
    /// time it is online.
    groups: Option<BTreeMap<String, groups::FakeGroup>>,
}

/// What the fake did on WhatsApp for a session, for tests to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeAction {
    /// A message went out (its id and recipient).
    Sent {
        /// The message id.
        id: MessageId,
        /// The recipient.
        to: Jid,
    },
    /// A reaction went out.
    Reacted {
        /// The chat.
        chat: Jid,
        /// The message reacted to.
        target: MessageId,
        /// The emoji (empty: removed).
        emoji: String,
    },
    /// An edit of a message went out.
    Edited {
        /// The chat.
        chat: Jid,
        /// The message edited.
        target: MessageId,
        /// Its new text.
        text: String,
    },
    /// A deletion for everyone went out.
    Revoked {
        /// The chat.
        chat: Jid,
        /// The message deleted.
        target: MessageId,
    },
    /// A chat state (typing…) went out.
    ChatStateSent {
        /// The chat.
        chat: Jid,
        /// The state.
        state: ChatState,
    },
    /// The account's presence was set.
    PresenceSet {
        /// Online.
        available: bool,
    },
    /// Read receipts went out.
    MarkedRead {
        /// The chat.
        chat: Jid,
        /// The messages.
        ids: Vec<MessageId>,
    },
}

/// A deterministic in-memory WhatsApp implementing [`WhatsAppPort`].
///
/// `connect` on an unlinked session shows one QR code (a `Pairing` event);
/// the fake phone scans it as soon as it is read through
/// [`WhatsAppPort::qr`] (or links by a pairing code as soon as one is
/// asked for), and the session is `Connected` as the fixtures' phone. A
/// session connected with `linked_as` is online at once. Block state is kept
/// per session. Every event is published before the call that caused it
/// returns, so tests never wait.
#[derive(Debug)]
pub struct FakeWhatsApp {
    world: Fixtures,
    sessions: Mutex<HashMap<SessionId, FakeSession>>,
    events: Arc<dyn SessionEventSink>,
    clock: Arc<dyn Clock>,
    /// Media by the SHA-256 of its bytes (the `MediaRef` the fake hands out).
    media: Mutex<HashMap<Vec<u8>, Arc<Vec<u8>>>>,
    /// Everything done on WhatsApp, per session, oldest first.
    actions: Mutex<HashMap<SessionId, Vec<FakeAction>>>,
    /// How many messages [`FakeWhatsApp::deliver_from`] made (their ids).
    written: Mutex<u64>,
    /// The phone scans a QR code only when told ([`FakeWhatsApp::scan_qr`]).
    scans_held: AtomicBool,
    /// Group members send receipts only when told
    /// ([`FakeWhatsApp::member_receipt`]).
    receipts_held: AtomicBool,
}

impl FakeWhatsApp {
    /// A fake over `world`, reporting to `events`, telling time by `clock`.
    pub fn new(world: Fixtures, events: Arc<dyn SessionEventSink>, clock: Arc<dyn Clock>) -> Self {
        Self {
            world,
            sessions: Mutex::new(HashMap::new()),
            events,
            clock,
            media: Mutex::new(HashMap::new()),
            actions: Mutex::new(HashMap::new()),
            written: Mutex::new(0),
            scans_held: AtomicBool::new(false),
            receipts_held: AtomicBool::new(false),
        }
    }

    /// With `held`, the fake phone no longer scans a QR code the moment it
    /// is shown: the code stays on screen (as with a real phone) until
    /// [`FakeWhatsApp::scan_qr`] scans it. For tests of what a person sees
    /// while pairing (the dashboard's QR code).
    pub fn hold_scans(&self, held: bool) {
        self.scans_held.store(held, Ordering::SeqCst);
    }

    /// The phone scans `session`'s QR code and links as the fixtures'
    /// phone; `false` when the session shows no code.
    pub async fn scan_qr(&self, session: &SessionId) -> bool {
        if self.sessions().get(session).is_none_or(|s| s.qr.is_none()) {
            return false;
        }
        self.link(session, self.world.phone.jid()).await;
        true
    }

    /// WhatsApp rotates `session`'s QR code: a new code replaces the shown
    /// one (a `QrShown` event); `false` when the session shows no code.
    pub async fn rotate_qr(&self, session: &SessionId) -> bool {
        let qr = {
            let mut sessions = self.sessions();
            let Some(s) = sessions.get_mut(session).filter(|s| s.qr.is_some()) else {
                return false;
            };
            let qr = Self::new_qr(session, s, self.clock.now());
            s.qr = Some(qr.clone());
            qr
        };
        self.publish(session, SessionEventKind::QrShown(qr)).await;
        true
    }

    /// The next QR code of `s` (each one differs, deterministically).
    fn new_qr(session: &SessionId, s: &mut FakeSession, now: OffsetDateTime) -> QrCode {
        s.qr_count += 1;
        let id = session.to_string();
        let seed = digest(&[id.as_bytes(), &s.qr_count.to_be_bytes()]);
        QrCode {
            code: format!("2@{},{},wagate-fake", hex(&seed[..16]), hex(&seed[16..])),
            expires_at: now + QR_TTL,
        }
    }

    /// What the fake sent on WhatsApp for `session` (messages, reactions,
    /// read receipts), oldest first.
    pub fn actions(&self, session: &SessionId) -> Vec<FakeAction> {
        lock(&self.actions)
            .get(session)
            .cloned()
            .unwrap_or_default()
    }

    fn act(&self, session: &SessionId, action: FakeAction) {
        lock(&self.actions)
            .entry(*session)
            .or_default()
            .push(action);
    }

    /// Hands `messages` to the gateway; what it could not record is kept
    /// for the next connect.
    async fn deliver(&self, session: &SessionId, messages: Vec<InboundMessage>) {
        if messages.is_empty() {
            return;
        }
        // Not recorded: not acknowledged, so WhatsApp keeps it (the gateway
        // logs why).
        if self
            .events
            .record_messages(session, &messages)
            .await
            .is_err()
            && let Some(s) = self.sessions().get_mut(session)
        {
            s.undelivered.extend(messages);
        }
    }

    /// Delivers again what the gateway could not record before.
    async fn redeliver(&self, session: &SessionId) {
        let pending = self
            .sessions()
            .get_mut(session)
            .map(|s| std::mem::take(&mut s.undelivered))
            .unwrap_or_default();
        self.deliver(session, pending).await;
    }

    /// The contact's answer to `message`, if it answers.
    fn reply_to(&self, message: &OutgoingMessage) -> Option<InboundMessage> {
        let contact = self.world.contact(&message.to)?;
        if !contact.replies {
            return None;
        }
        let seed = digest(&[b"reply", message.id.as_str().as_bytes()]);
        let content = match &message.content {
            OutgoingContent::Text(text) => OutgoingContent::Text(format!("You said: {text}")),
            // It votes for the first option of a poll.
            OutgoingContent::Rich(RichContent::Poll(poll)) => {
                let reply = self.written_by(
                    &message.to,
                    seed,
                    OutgoingContent::Text(String::new()),
                    None,
                );
                return Some(
                    reply.with_content(InboundContent::PollVote {
                        target: message.id.clone(),
                        selected: poll
                            .options()
                            .iter()
                            .take(1)
                            .map(|o| option_hash(o))
                            .collect(),
                    }),
                );
            }
            other @ (OutgoingContent::Media(_) | OutgoingContent::Rich(_)) => other.clone(),
        };
        let mut reply = self.written_by(&message.to, seed, content, Some(message.id.clone()));
        // It mentions whom it was told about.
        reply.mentions = message.mentions.clone();
        Some(reply)
    }

    /// A message the contact `from` writes to the account: its id drawn
    /// from `seed`, its media (if any) kept for download.
    fn written_by(
        &self,
        from: &Jid,
        seed: [u8; 32],
        content: OutgoingContent,
        reply_to: Option<MessageId>,
    ) -> InboundMessage {
        let (lid, phone) = self.world.identities(from);
        let mut random = [0u8; 9];
        random.copy_from_slice(&seed[..9]);
        let content = match content {
            OutgoingContent::Text(text) => InboundContent::Text(text),
            OutgoingContent::Rich(r) => InboundContent::Rich(r),
            OutgoingContent::Media(m) => {
                let sha = Sha256::digest(&m.data).to_vec();
                let size = m.data.len() as u64;
                lock(&self.media).insert(sha.clone(), Arc::new(m.data));
                InboundContent::Media {
                    kind: m.kind,
                    info: MediaInfo {
                        mimetype: m.mimetype,
                        filename: m.filename,
                        size,
                        sha256: hex(&sha),
                    },
                    caption: m.caption,
                    voice_note: m.voice_note,
                    media: MediaRef(sha),
                }
            }
        };
        let chat = phone.clone().unwrap_or_else(|| from.clone());
        InboundMessage {
            id: MessageId::from_random(random),
            sender: chat.clone(),
            chat,
            sender_pn: phone,
            sender_lid: lid,
            from_me: false,
            timestamp: self.clock.now(),
            content,
            reply_to,
            mentions: Vec::new(),
        }
    }

    /// The world contact `from` writes `content` to the account linked as
    /// `session`, as the simulator's `POST /admin/accounts/{phone}/messages`
    /// does: handed to the gateway like the echo contact's answers (kept
    /// for the next connect while the session is offline or the gateway
    /// cannot record it). Returns the message id (deterministic: the n-th
    /// message of a fake).
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::InvalidTarget`] when `from` is not a person,
    /// [`WhatsAppError::NotFound`] when the world has no such contact,
    /// [`WhatsAppError::NotConnected`] when `session` was never linked.
    pub async fn deliver_from(
        &self,
        session: &SessionId,
        from: &Jid,
        content: OutgoingContent,
    ) -> Result<MessageId, WhatsAppError> {
        self.contact_writes(session, from, |seed| {
            self.written_by(from, seed, content, None)
        })
        .await
    }

    /// The world contact `from` edits its message `target` to the account
    /// linked as `session`: its new text (the caption, for media), as
    /// WhatsApp delivers an edit (a message of its own, handed over like
    /// [`FakeWhatsApp::deliver_from`]'s). Returns the edit's id.
    ///
    /// # Errors
    ///
    /// As [`FakeWhatsApp::deliver_from`].
    pub async fn edit_from(
        &self,
        session: &SessionId,
        from: &Jid,
        target: &MessageId,
        text: &str,
    ) -> Result<MessageId, WhatsAppError> {
        let content = InboundContent::Edit {
            target: target.clone(),
            text: text.to_owned(),
        };
        self.contact_writes(session, from, |seed| {
            self.written_by(from, seed, OutgoingContent::Text(String::new()), None)
                .with_content(content)
        })
        .await
    }

    /// The world contact `from` deletes its message `target` for everyone
    /// (as [`FakeWhatsApp::edit_from`]). Returns the deletion's id.
    ///
    /// # Errors
    ///
    /// As [`FakeWhatsApp::deliver_from`].
    pub async fn revoke_from(
        &self,
        session: &SessionId,
        from: &Jid,
        target: &MessageId,
    ) -> Result<MessageId, WhatsAppError> {
        let content = InboundContent::Revoke {
            target: target.clone(),
        };
        self.contact_writes(session, from, |seed| {
            self.written_by(from, seed, OutgoingContent::Text(String::new()), None)
                .with_content(content)
        })
        .await
    }

    /// The world contact `from` votes on the poll `target` (the account's,
    /// or one `from` sent): `options` picked by their text (none: the vote
    /// taken back), as WhatsApp delivers a vote (a message of its own,
    /// handed over like [`FakeWhatsApp::deliver_from`]'s). Returns the
    /// vote's id.
    ///
    /// # Errors
    ///
    /// As [`FakeWhatsApp::deliver_from`].
    pub async fn vote_from(
        &self,
        session: &SessionId,
        from: &Jid,
        target: &MessageId,
        options: &[&str],
    ) -> Result<MessageId, WhatsAppError> {
        let content = InboundContent::PollVote {
            target: target.clone(),
            selected: options.iter().map(|o| option_hash(o)).collect(),
        };
        self.contact_writes(session, from, |seed| {
            self.written_by(from, seed, OutgoingContent::Text(String::new()), None)
                .with_content(content)
        })
        .await
    }

    /// The world contact `jid` comes online (`available`) or goes
    /// offline: a `Presence` event, if `session` is connected and
    /// subscribed to `jid` (as WhatsApp tells only subscribers). Ephemeral:
    /// nothing is kept for a later connect. Whether it was published.
    pub async fn presence_of(
        &self,
        session: &SessionId,
        jid: &Jid,
        available: bool,
        last_seen: Option<OffsetDateTime>,
    ) -> bool {
        let wanted = self
            .sessions()
            .get(session)
            .is_some_and(|s| s.connected && s.subscribed.contains(jid));
        if wanted {
            let kind = SessionEventKind::Presence {
                jid: jid.clone(),
                available,
                last_seen,
            };
            self.publish(session, kind).await;
        }
        wanted
    }

    /// The world contact `from` types, records or stops in its chat with
    /// the account: a `ChatState` event if `session` is connected
    /// (ephemeral, as [`FakeWhatsApp::presence_of`]). Whether it was
    /// published.
    pub async fn chat_state_from(&self, session: &SessionId, from: &Jid, state: ChatState) -> bool {
        let online = self.sessions().get(session).is_some_and(|s| s.connected);
        if online {
            let kind = SessionEventKind::ChatState {
                chat: from.clone(),
                jid: from.clone(),
                state,
            };
            self.publish(session, kind).await;
        }
        online
    }

    /// Hands the message `write` makes (from a fresh seed) to the gateway
    /// as the contact `from`'s, or keeps it for the next connect.
    async fn contact_writes(
        &self,
        session: &SessionId,
        from: &Jid,
        write: impl FnOnce([u8; 32]) -> InboundMessage,
    ) -> Result<MessageId, WhatsAppError> {
        Self::person(from)?;
        if self.world.contact(from).is_none() {
            return Err(WhatsAppError::NotFound(None));
        }
        let message = write(self.next_seed(session, b"written"));
        let message_id = message.id.clone();
        let online = {
            let mut sessions = self.sessions();
            let s = sessions
                .get_mut(session)
                .filter(|s| s.linked_as.is_some())
                .ok_or(WhatsAppError::NotConnected)?;
            if !s.connected {
                s.undelivered.push(message.clone());
            }
            s.connected
        };
        if online {
            self.deliver(session, vec![message]).await;
        }
        Ok(message_id)
    }

    /// A seed no other message of the fake has: the n-th of this fake.
    fn next_seed(&self, session: &SessionId, what: &[u8]) -> [u8; 32] {
        let count = {
            let mut n = lock(&self.written);
            *n += 1;
            *n
        };
        let id = session.to_string();
        digest(&[what, id.as_bytes(), &count.to_be_bytes()])
    }

    /// An edit or deletion of the account's own `target` goes out;
    /// `NotFound` when the fake never sent `target`.
    fn own_change(
        &self,
        session: &SessionId,
        chat: &Jid,
        target: &MessageId,
        action: FakeAction,
    ) -> Result<(), WhatsAppError> {
        Self::person(chat)?;
        self.live(session, Some(chat))?;
        if !self
            .sessions()
            .get(session)
            .is_some_and(|s| s.sent.contains(target))
        {
            return Err(WhatsAppError::NotFound(None));
        }
        self.act(session, action);
        Ok(())
    }

    async fn status(&self, session: &SessionId, chat: &Jid, id: &MessageId, status: MessageStatus) {
        self.publish(
            session,
            SessionEventKind::MessageStatus(StatusUpdate {
                ids: vec![id.clone()],
                chat: chat.clone(),
                participant: None,
                status,
                at: self.clock.now(),
                error_code: None,
            }),
        )
        .await;
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<SessionId, FakeSession>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every update is a single insert or field write), so keep going.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn publish(&self, session: &SessionId, kind: SessionEventKind) {
        self.events
            .publish(SessionEvent {
                session: *session,
                kind,
            })
            .await;
    }

    /// Links `session` as `jid` and reports it connected.
    async fn link(&self, session: &SessionId, jid: Jid) {
        {
            let mut sessions = self.sessions();
            let s = sessions.entry(*session).or_default();
            s.linked_as = Some(jid.clone());
            s.connected = true;
            s.qr = None;
            groups::seed(&self.world, session, s, &jid);
        }
        let push_name = self.world.push_name.clone();
        self.publish(session, SessionEventKind::Connected { jid, push_name })
            .await;
    }

    /// Checks the session is online and the contact does not fail on purpose.
    fn live(&self, session: &SessionId, jid: Option<&Jid>) -> Result<(), WhatsAppError> {
        if !self.sessions().get(session).is_some_and(|s| s.connected) {
            return Err(WhatsAppError::NotConnected);
        }
        match jid.and_then(|j| self.world.contact(j)).and_then(|c| c.fail) {
            Some(FailMode::Timeout) => Err(WhatsAppError::Timeout),
            Some(FailMode::Unavailable) => Err(WhatsAppError::Unavailable(
                "the fake contact is set to fail".into(),
            )),
            Some(FailMode::Refused) => Err(WhatsAppError::Refused(Refusal::Server(403))),
            Some(FailMode::MediaRefused) | None => Ok(()),
        }
    }

    fn person_or_group(jid: &Jid) -> Result<(), WhatsAppError> {
        if jid.kind() == JidKind::Group {
            Ok(())
        } else {
            Self::person(jid)
        }
    }

    fn person(jid: &Jid) -> Result<(), WhatsAppError> {
        if jid.kind().is_person() {
            Ok(())
        } else {
            Err(WhatsAppError::InvalidTarget(
                "must be a user (phone number or LID) JID".into(),
            ))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single insert or push.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl WhatsAppPort for FakeWhatsApp {
    async fn connect(
        &self,
        session: &SessionId,
        linked_as: Option<Jid>,
    ) -> Result<(), WhatsAppError> {
        let now = self.clock.now();
        let mut shown = None;
        let event = {
            let mut sessions = self.sessions();
            let s = sessions.entry(*session).or_default();
            if let (true, Some(jid)) = (s.connected, &s.linked_as) {
                // Already online: tell the state again (the gateway may have
                // missed the event, e.g. its write failed).
                SessionEventKind::Connected {
                    jid: jid.clone(),
                    push_name: self.world.push_name.clone(),
                }
            } else if s.qr.is_some() {
                SessionEventKind::Pairing
            } else {
                match linked_as.or_else(|| s.linked_as.clone()) {
                    Some(jid) => {
                        s.linked_as = Some(jid.clone());
                        s.connected = true;
                        groups::seed(&self.world, session, s, &jid);
                        SessionEventKind::Connected {
                            jid,
                            push_name: self.world.push_name.clone(),
                        }
                    }
                    None => {
                        let qr = Self::new_qr(session, s, now);
                        s.qr = Some(qr.clone());
                        shown = Some(qr);
                        SessionEventKind::Pairing
                    }
                }
            }
        };
        let online = matches!(event, SessionEventKind::Connected { .. });
        self.publish(session, event).await;
        if let Some(qr) = shown {
            self.publish(session, SessionEventKind::QrShown(qr)).await;
        }
        if online {
            self.redeliver(session).await;
        }
        Ok(())
    }

    async fn send_message(
        &self,
        session: &SessionId,
        message: &OutgoingMessage,
    ) -> Result<(), WhatsAppError> {
        if message.to.kind() == JidKind::Group {
            return self.send_to_group(session, message).await;
        }
        Self::person(&message.to)?;
        self.live(session, Some(&message.to))?;
        let contact = self
            .world
            .contact(&message.to)
            .ok_or(WhatsAppError::NotOnWhatsApp)?;
        if contact.fail == Some(FailMode::MediaRefused)
            && matches!(message.content, OutgoingContent::Media(_))
        {
            return Err(WhatsAppError::Refused(Refusal::Media(415)));
        }
        let reads = contact.reads_after_ms.is_some();
        let first = self
            .sessions()
            .get_mut(session)
            .is_some_and(|s| s.sent.insert(message.id.clone()));
        if first {
            self.act(
                session,
                FakeAction::Sent {
                    id: message.id.clone(),
                    to: message.to.clone(),
                },
            );
        }
        // The server ack and the contact's receipts (again for a repeated
        // send: the gateway may have missed them; statuses only move forward).
        let chat = &message.to;
        self.status(session, chat, &message.id, MessageStatus::Sent)
            .await;
        self.status(session, chat, &message.id, MessageStatus::Delivered)
            .await;
        if reads {
            self.status(session, chat, &message.id, MessageStatus::Read)
                .await;
        }
        if first && let Some(reply) = self.reply_to(message) {
            self.deliver(session, vec![reply]).await;
        }
        Ok(())
    }

    async fn send_reaction(
        &self,
        session: &SessionId,
        chat: &Jid,
        target: &MessageId,
        _target_author: Option<Jid>,
        emoji: &str,
    ) -> Result<(), WhatsAppError> {
        Self::person_or_group(chat)?;
        self.live(session, Some(chat))?;
        if chat.kind() != JidKind::Group && self.world.contact(chat).is_none() {
            return Err(WhatsAppError::NotOnWhatsApp);
        }
        self.act(
            session,
            FakeAction::Reacted {
                chat: chat.clone(),
                target: target.clone(),
                emoji: emoji.to_owned(),
            },
        );
        Ok(())
    }

    async fn edit_message(
        &self,
        session: &SessionId,
        chat: &Jid,
        target: &MessageId,
        text: &str,
    ) -> Result<(), WhatsAppError> {
        let action = FakeAction::Edited {
            chat: chat.clone(),
            target: target.clone(),
            text: text.to_owned(),
        };
        self.own_change(session, chat, target, action)
    }

    async fn revoke_message(
        &self,
        session: &SessionId,
        chat: &Jid,
        target: &MessageId,
    ) -> Result<(), WhatsAppError> {
        let action = FakeAction::Revoked {
            chat: chat.clone(),
            target: target.clone(),
        };
        self.own_change(session, chat, target, action)
    }

    async fn send_chat_state(
        &self,
        session: &SessionId,
        chat: &Jid,
        state: ChatState,
    ) -> Result<(), WhatsAppError> {
        Self::person(chat)?;
        self.live(session, Some(chat))?;
        let action = FakeAction::ChatStateSent {
            chat: chat.clone(),
            state,
        };
        self.act(session, action);
        Ok(())
    }

    async fn set_presence(
        &self,
        session: &SessionId,
        available: bool,
    ) -> Result<(), WhatsAppError> {
        self.live(session, None)?;
        self.act(session, FakeAction::PresenceSet { available });
        Ok(())
    }

    async fn subscribe_presence(
        &self,
        session: &SessionId,
        jid: &Jid,
    ) -> Result<(), WhatsAppError> {
        Self::person(jid)?;
        self.live(session, Some(jid))?;
        if let Some(s) = self.sessions().get_mut(session) {
            s.subscribed.insert(jid.clone());
        }
        Ok(())
    }

    async fn mark_read(
        &self,
        session: &SessionId,
        chat: &Jid,
        _sender: &Jid,
        ids: &[MessageId],
    ) -> Result<(), WhatsAppError> {
        Self::person_or_group(chat)?;
        self.live(session, Some(chat))?;
        self.act(
            session,
            FakeAction::MarkedRead {
                chat: chat.clone(),
                ids: ids.to_vec(),
            },
        );
        Ok(())
    }

    async fn download_media(
        &self,
        session: &SessionId,
        media: &MediaRef,
        max_bytes: u64,
    ) -> Result<MediaDownload, WhatsAppError> {
        self.live(session, None)?;
        let bytes = lock(&self.media)
            .get(&media.0)
            .map(|bytes| bytes.as_ref().clone())
            .ok_or(WhatsAppError::NotFound(None))?;
        if bytes.len() as u64 > max_bytes {
            return Err(WhatsAppError::Internal(format!(
                "the media is larger than {max_bytes} bytes"
            )));
        }
        Ok(MediaDownload::complete(bytes))
    }

    async fn disconnect(&self, session: &SessionId) -> Result<(), WhatsAppError> {
        if let Some(s) = self.sessions().get_mut(session) {
            s.connected = false;
            s.qr = None;
            // WhatsApp forgets presence subscriptions with the connection.
            s.subscribed.clear();
        }
        Ok(())
    }

    async fn logout(&self, session: &SessionId) -> Result<(), WhatsAppError> {
        if let Some(s) = self.sessions().get_mut(session) {
            s.connected = false;
            s.qr = None;
            s.linked_as = None;
        }
        Ok(())
    }

    async fn remove(&self, session: &SessionId) -> Result<(), WhatsAppError> {
        self.sessions().remove(session);
        Ok(())
    }

    async fn qr(&self, session: &SessionId) -> Result<QrCode, WhatsAppError> {
        let qr = self.sessions().get(session).and_then(|s| s.qr.clone());
        let qr = qr.ok_or(WhatsAppError::NotPairing)?;
        // The fake phone scans the code the moment it is shown (unless held).
        if !self.scans_held.load(Ordering::SeqCst) {
            self.link(session, self.world.phone.jid()).await;
        }
        Ok(qr)
    }

    async fn pairing_code(
        &self,
        session: &SessionId,
        phone: &PhoneNumber,
    ) -> Result<PairingCode, WhatsAppError> {
        if self.sessions().get(session).is_none_or(|s| s.qr.is_none()) {
            return Err(WhatsAppError::NotPairing);
        }
        let id = session.to_string();
        let seed = digest(&[id.as_bytes(), phone.digits().as_bytes()]);
        let mut code = String::with_capacity(9);
        for (i, b) in seed.iter().take(8).enumerate() {
            if i == 4 {
                code.push('-');
            }
            code.push(char::from(PAIRING_ALPHABET[usize::from(b & 31)]));
        }
        // The fake phone types the code at once and links as that number.
        self.link(session, phone.jid()).await;
        Ok(PairingCode::new(code))
    }

    async fn profile_picture(
        &self,
        session: &SessionId,
        jid: &Jid,
        kind: PictureType,
    ) -> Result<ProfilePicture, WhatsAppError> {
        self.live(session, Some(jid))?;
        let contact = self
            .world
            .contact(jid)
            .ok_or(WhatsAppError::NotFound(Some(Absence::NotSet)))?;
        if contact.hidden.contains(&Hideable::Picture) {
            return Err(WhatsAppError::NotFound(Some(Absence::Hidden)));
        }
        let p = contact
            .picture
            .as_ref()
            .ok_or(WhatsAppError::NotFound(Some(Absence::NotSet)))?;
        let url = match kind {
            PictureType::Image => p.url.clone(),
            PictureType::Preview => format!("{}?type=preview", p.url),
        };
        Ok(ProfilePicture {
            id: p.id.clone(),
            url,
            kind,
            direct_path: p.direct_path.clone(),
            hash: p.hash.clone(),
        })
    }

    async fn about(&self, session: &SessionId, jid: &Jid) -> Result<About, WhatsAppError> {
        Self::person(jid)?;
        self.live(session, Some(jid))?;
        let contact = self
            .world
            .contact(jid)
            .ok_or(WhatsAppError::NotFound(Some(Absence::NotSet)))?;
        if contact.hidden.contains(&Hideable::About) {
            return Err(WhatsAppError::NotFound(Some(Absence::Hidden)));
        }
        let a = contact
            .about
            .as_ref()
            .ok_or(WhatsAppError::NotFound(Some(Absence::NotSet)))?;
        Ok(About {
            text: a.text.clone(),
            set_at: a.set_at,
        })
    }

    async fn block(&self, session: &SessionId, jid: &Jid) -> Result<(), WhatsAppError> {
        Self::person(jid)?;
        self.live(session, Some(jid))?;
        let (lid, phone) = self.world.identities(jid);
        let listed = lid
            .clone()
            .or_else(|| phone.clone())
            .unwrap_or_else(|| jid.clone());
        let mut sessions = self.sessions();
        let s = sessions.entry(*session).or_default();
        s.blocked
            .entry(listed.to_string())
            .or_insert(BlocklistEntry {
                jid: listed,
                phone_jid: phone,
            });
        Ok(())
    }

    async fn unblock(&self, session: &SessionId, jid: &Jid) -> Result<(), WhatsAppError> {
        Self::person(jid)?;
        self.live(session, Some(jid))?;
        let (lid, phone) = self.world.identities(jid);
        let listed = lid.or(phone).unwrap_or_else(|| jid.clone());
        if let Some(s) = self.sessions().get_mut(session) {
            s.blocked.remove(&listed.to_string());
        }
        Ok(())
    }

    async fn groups(&self, session: &SessionId) -> Result<Vec<Group>, WhatsAppError> {
        self.member_groups(session)
    }

    async fn group(&self, session: &SessionId, group: &GroupJid) -> Result<Group, WhatsAppError> {
        self.group_now(session, group).await
    }

    async fn create_group(
        &self,
        session: &SessionId,
        subject: &GroupSubject,
        participants: &[Jid],
    ) -> Result<(Group, Vec<ParticipantOutcome>), WhatsAppError> {
        self.create(session, subject, participants, None).await
    }

    async fn update_group(
        &self,
        session: &SessionId,
        group: &GroupJid,
        change: &GroupChange,
    ) -> Result<(), WhatsAppError> {
        self.update(session, group, change).await
    }

    async fn change_participants(
        &self,
        session: &SessionId,
        group: &GroupJid,
        action: ParticipantAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantOutcome>, WhatsAppError> {
        self.participants(session, group, action, participants)
            .await
    }

    async fn invite_code(
        &self,
        session: &SessionId,
        group: &GroupJid,
        revoke: bool,
    ) -> Result<InviteCode, WhatsAppError> {
        self.invite(session, group, revoke).await
    }

    async fn join_group(
        &self,
        session: &SessionId,
        code: &InviteCode,
    ) -> Result<GroupJid, WhatsAppError> {
        self.join(session, code).await
    }

    async fn leave_group(
        &self,
        session: &SessionId,
        group: &GroupJid,
    ) -> Result<(), WhatsAppError> {
        self.leave(session, group).await
    }

    async fn membership_requests(
        &self,
        session: &SessionId,
        group: &GroupJid,
    ) -> Result<Vec<MembershipRequest>, WhatsAppError> {
        self.requests(session, group).await
    }

    async fn answer_requests(
        &self,
        session: &SessionId,
        group: &GroupJid,
        action: RequestAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantOutcome>, WhatsAppError> {
        self.answer(session, group, action, participants).await
    }

    async fn blocklist(&self, session: &SessionId) -> Result<Vec<BlocklistEntry>, WhatsAppError> {
        self.live(session, None)?;
        Ok(self
            .sessions()
            .get(session)
            .map(|s| s.blocked.values().cloned().collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordingSink;
    use wagate_domain::SystemClock;

    fn sid(n: u32) -> SessionId {
        SessionId::parse(&format!("sess_{n:026}")).unwrap()
    }

    fn fake() -> (FakeWhatsApp, Arc<RecordingSink>) {
        let sink = Arc::new(RecordingSink::default());
        (
            FakeWhatsApp::new(Fixtures::builtin(), sink.clone(), Arc::new(SystemClock)),
            sink,
        )
    }

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[tokio::test]
    async fn pairing_by_qr_links_as_the_fixture_phone() {
        let (fake, sink) = fake();
        let s = sid(1);
        assert_eq!(fake.qr(&s).await, Err(WhatsAppError::NotPairing));
        fake.connect(&s, None).await.unwrap();
        assert_eq!(sink.events()[0].kind, SessionEventKind::Pairing);
        let qr = fake.qr(&s).await.unwrap();
        assert!(qr.code.starts_with("2@"));
        // The code shown is the one the event carried (for `session.qr`).
        assert_eq!(sink.events()[1].kind, SessionEventKind::QrShown(qr.clone()));
        assert_eq!(
            sink.events()[2].kind,
            SessionEventKind::Connected {
                jid: jid("15550001111@s.whatsapp.net"),
                push_name: Some("Wagate Demo".into())
            }
        );
        // Linked now: the QR is gone and a disconnect/connect needs none.
        assert_eq!(fake.qr(&s).await, Err(WhatsAppError::NotPairing));
        fake.disconnect(&s).await.unwrap();
        fake.connect(&s, None).await.unwrap();
        assert!(matches!(
            sink.events()[3].kind,
            SessionEventKind::Connected { .. }
        ));
    }

    #[tokio::test]
    async fn a_held_phone_scans_only_when_told_and_codes_rotate() {
        let (fake, sink) = fake();
        let s = sid(7);
        fake.hold_scans(true);
        assert!(!fake.scan_qr(&s).await, "nothing to scan before connect");
        fake.connect(&s, None).await.unwrap();
        let first = fake.qr(&s).await.unwrap();
        // Shown, not scanned: the code stays.
        assert_eq!(fake.qr(&s).await.unwrap(), first);
        assert!(fake.rotate_qr(&s).await);
        let second = fake.qr(&s).await.unwrap();
        assert_ne!(second.code, first.code);
        assert_eq!(
            sink.events().last().unwrap().kind,
            SessionEventKind::QrShown(second)
        );
        assert!(fake.scan_qr(&s).await);
        assert!(matches!(
            sink.events().last().unwrap().kind,
            SessionEventKind::Connected { .. }
        ));
        assert_eq!(fake.qr(&s).await, Err(WhatsAppError::NotPairing));
        assert!(!fake.rotate_qr(&s).await);
    }

    #[tokio::test]
    async fn pairing_code_links_as_the_given_phone() {
        let (fake, sink) = fake();
        let s = sid(2);
        let phone = PhoneNumber::parse("+44 20 7946 0958").unwrap();
        assert_eq!(
            fake.pairing_code(&s, &phone).await,
            Err(WhatsAppError::NotPairing)
        );
        fake.connect(&s, None).await.unwrap();
        let code = fake.pairing_code(&s, &phone).await.unwrap();
        assert_eq!(code.as_str().len(), 9);
        assert_eq!(&code.as_str()[4..5], "-");
        assert!(
            matches!(&sink.events()[2].kind, SessionEventKind::Connected { jid, .. } if jid.user_part() == "442079460958")
        );
    }

    #[tokio::test]
    async fn contact_calls_follow_the_world() {
        let (fake, _) = fake();
        let s = sid(3);
        let alice = jid("14155550123@s.whatsapp.net");
        assert_eq!(
            fake.about(&s, &alice).await,
            Err(WhatsAppError::NotConnected)
        );
        fake.connect(&s, Some(jid("15550001111@s.whatsapp.net")))
            .await
            .unwrap();

        let p = fake
            .profile_picture(&s, &alice, PictureType::Image)
            .await
            .unwrap();
        assert_eq!(p.id, "1712345678");
        let by_lid = fake
            .profile_picture(&s, &jid("123456789012345@lid"), PictureType::Preview)
            .await
            .unwrap();
        assert!(by_lid.url.ends_with("?type=preview"));
        assert_eq!(fake.about(&s, &alice).await.unwrap().text, "Hey there!");

        let nobody = jid("14155550199@s.whatsapp.net");
        assert_eq!(
            fake.profile_picture(&s, &nobody, PictureType::Image).await,
            Err(WhatsAppError::NotFound(Some(Absence::NotSet)))
        );
        let hidden = jid("14155550155@s.whatsapp.net");
        assert_eq!(
            fake.profile_picture(&s, &hidden, PictureType::Image).await,
            Err(WhatsAppError::NotFound(Some(Absence::Hidden)))
        );
        assert_eq!(
            fake.about(&s, &hidden).await,
            Err(WhatsAppError::NotFound(Some(Absence::Hidden)))
        );
        assert_eq!(
            fake.about(&s, &jid("14155550100@s.whatsapp.net")).await,
            Err(WhatsAppError::Timeout)
        );
        assert!(matches!(
            fake.block(&s, &jid("14155550101@s.whatsapp.net")).await,
            Err(WhatsAppError::Unavailable(_))
        ));
        let group = jid("120363025246125486@g.us");
        assert!(
            fake.profile_picture(&s, &group, PictureType::Image)
                .await
                .is_ok()
        );
        assert!(matches!(
            fake.block(&s, &group).await,
            Err(WhatsAppError::InvalidTarget(_))
        ));
    }

    #[tokio::test]
    async fn block_is_idempotent_and_lists_lid_with_phone() {
        let (fake, _) = fake();
        let s = sid(4);
        fake.connect(&s, Some(jid("15550001111@s.whatsapp.net")))
            .await
            .unwrap();
        let alice = jid("14155550123@s.whatsapp.net");
        fake.block(&s, &alice).await.unwrap();
        fake.block(&s, &jid("123456789012345@lid")).await.unwrap();
        let list = fake.blocklist(&s).await.unwrap();
        assert_eq!(
            list,
            vec![BlocklistEntry {
                jid: jid("123456789012345@lid"),
                phone_jid: Some(alice.clone())
            }]
        );
        fake.unblock(&s, &alice).await.unwrap();
        fake.unblock(&s, &alice).await.unwrap();
        assert!(fake.blocklist(&s).await.unwrap().is_empty());
        // Another session has its own blocklist.
        let other = sid(5);
        fake.connect(&other, Some(jid("15550001111@s.whatsapp.net")))
            .await
            .unwrap();
        fake.block(&s, &alice).await.unwrap();
        assert!(fake.blocklist(&other).await.unwrap().is_empty());
    }

    /// A sink whose `record_messages` fails while `failing` is set.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: RecordingSink,
        failing: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl SessionEventSink for Flaky {
        async fn publish(&self, event: SessionEvent) {
            self.inner.publish(event).await;
        }
        async fn record_messages(
            &self,
            session: &SessionId,
            messages: &[InboundMessage],
        ) -> Result<(), crate::NotRecorded> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(crate::NotRecorded("down".into()));
            }
            self.inner.record_messages(session, messages).await
        }
    }

    fn text_to(to: &str, id: u8) -> OutgoingMessage {
        OutgoingMessage {
            id: MessageId::from_random([id; 9]),
            to: jid(to),
            content: OutgoingContent::Text("hi".into()),
            reply_to: None,
            mentions: Vec::new(),
        }
    }

    #[tokio::test]
    async fn sends_publish_statuses_and_the_echo_contact_answers_at_least_once() {
        let sink = Arc::new(Flaky::default());
        let fake = FakeWhatsApp::new(Fixtures::builtin(), sink.clone(), Arc::new(SystemClock));
        let s = sid(6);
        let m = text_to("14155550142@s.whatsapp.net", 1);
        assert_eq!(
            fake.send_message(&s, &m).await,
            Err(WhatsAppError::NotConnected)
        );
        fake.connect(&s, Some(jid("15550001111@s.whatsapp.net")))
            .await
            .unwrap();
        assert_eq!(
            fake.send_message(&s, &text_to("14155550177@s.whatsapp.net", 2))
                .await,
            Err(WhatsAppError::NotOnWhatsApp)
        );
        assert!(matches!(
            fake.send_message(&s, &text_to("120363144038483540@newsletter", 3))
                .await,
            Err(WhatsAppError::InvalidTarget(_))
        ));
        // The gateway cannot record the answer: it is kept …
        sink.failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        fake.send_message(&s, &m).await.unwrap();
        let statuses: Vec<_> = sink
            .inner
            .events()
            .into_iter()
            .filter_map(|e| match e.kind {
                SessionEventKind::MessageStatus(u) => Some(u.status),
                _ => None,
            })
            .collect();
        assert_eq!(
            statuses,
            [
                MessageStatus::Sent,
                MessageStatus::Delivered,
                MessageStatus::Read
            ]
        );
        assert!(sink.inner.messages().is_empty());
        // … and delivered again on the next connect; a repeated send of the
        // same id makes no second message and no second answer.
        sink.failing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        fake.send_message(&s, &m).await.unwrap();
        fake.disconnect(&s).await.unwrap();
        fake.connect(&s, None).await.unwrap();
        let got = sink.inner.messages();
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0].1.content, InboundContent::Text(t) if t == "You said: hi"));
        assert_eq!(got[0].1.reply_to, Some(m.id.clone()));
        assert_eq!(
            fake.actions(&s),
            vec![FakeAction::Sent {
                id: m.id.clone(),
                to: m.to.clone()
            }]
        );
        assert_eq!(
            fake.download_media(&s, &MediaRef(vec![1, 2]), 100)
                .await
                .unwrap_err(),
            WhatsAppError::NotFound(None)
        );
    }

    #[tokio::test]
    async fn contacts_set_to_refuse_fail_for_good() {
        let (fake, _) = fake();
        let s = sid(8);
        fake.connect(&s, Some(jid("15550001111@s.whatsapp.net")))
            .await
            .unwrap();
        // The contacts that refuse for good: every call, or media only.
        assert_eq!(
            fake.send_message(&s, &text_to("14155550143@s.whatsapp.net", 4))
                .await,
            Err(WhatsAppError::Refused(Refusal::Server(403)))
        );
        let image = |id: u8| OutgoingMessage {
            content: OutgoingContent::Media(crate::OutgoingMedia {
                kind: wagate_domain::MessageType::Image,
                mimetype: "image/png".into(),
                filename: None,
                caption: None,
                voice_note: false,
                data: vec![1, 2, 3],
            }),
            ..text_to("14155550144@s.whatsapp.net", id)
        };
        assert_eq!(
            fake.send_message(&s, &image(5)).await,
            Err(WhatsAppError::Refused(Refusal::Media(415)))
        );
        let text = text_to("14155550144@s.whatsapp.net", 6);
        fake.send_message(&s, &text).await.unwrap();
        assert_eq!(
            fake.actions(&s),
            vec![FakeAction::Sent {
                id: text.id.clone(),
                to: text.to.clone()
            }]
        );
        assert_eq!(
            fake.about(&s, &jid("14155550143@s.whatsapp.net")).await,
            Err(WhatsAppError::Refused(Refusal::Server(403)))
        );
    }

    #[tokio::test]
    async fn a_contact_writes_through_the_same_path_as_the_echo_contact() {
        let sink = Arc::new(Flaky::default());
        let fake = FakeWhatsApp::new(Fixtures::builtin(), sink.clone(), Arc::new(SystemClock));
        let s = sid(7);
        let alice = jid("14155550123@s.whatsapp.net");
        let text = |t: &str| OutgoingContent::Text(t.into());
        assert_eq!(
            fake.deliver_from(&s, &alice, text("hi")).await,
            Err(WhatsAppError::NotConnected)
        );
        fake.connect(&s, Some(jid("15550001111@s.whatsapp.net")))
            .await
            .unwrap();
        assert_eq!(
            fake.deliver_from(&s, &jid("14155550177@s.whatsapp.net"), text("hi"))
                .await,
            Err(WhatsAppError::NotFound(None))
        );
        assert!(matches!(
            fake.deliver_from(&s, &jid("120363025246125486@g.us"), text("hi"))
                .await,
            Err(WhatsAppError::InvalidTarget(_))
        ));
        let first = fake.deliver_from(&s, &alice, text("hi")).await.unwrap();
        let got = sink.inner.messages();
        assert_eq!(got.len(), 1);
        let m = &got[0].1;
        assert_eq!(m.id, first);
        assert_eq!((m.chat.clone(), m.from_me), (alice.clone(), false));
        assert_eq!(m.sender_lid, Some(jid("123456789012345@lid")));
        assert!(matches!(&m.content, InboundContent::Text(t) if t == "hi"));
        // Offline: kept, and delivered (under a new id) on the next connect.
        fake.disconnect(&s).await.unwrap();
        let image = OutgoingContent::Media(crate::OutgoingMedia {
            kind: wagate_domain::MessageType::Image,
            mimetype: "image/png".into(),
            filename: None,
            caption: Some("look".into()),
            voice_note: false,
            data: vec![1, 2, 3],
        });
        let second = fake.deliver_from(&s, &alice, image).await.unwrap();
        assert_ne!(second, first);
        assert_eq!(sink.inner.messages().len(), 1);
        fake.connect(&s, None).await.unwrap();
        let got = sink.inner.messages();
        assert_eq!(got.len(), 2);
        let InboundContent::Media { media, info, .. } = &got[1].1.content else {
            panic!("not media");
        };
        assert_eq!(info.size, 3);
        let download = fake.download_media(&s, media, 3).await.unwrap();
        assert_eq!(download.collect().await.unwrap(), vec![1, 2, 3]);
        assert!(fake.download_media(&s, media, 2).await.is_err());
    }

    #[test]
    fn fixtures_are_checked() {
        assert!(Fixtures::from_json(r#"{"phone":"15550001111"}"#).is_ok());
        for bad in [
            "{}",
            r#"{"phone":"abc"}"#,
            r#"{"phone":"15550001111","contacts":{"nope":{}}}"#,
            r#"{"phone":"15550001111","contacts":{"14155550123@s.whatsapp.net":{"fail":"explode"}}}"#,
            r#"{"phone":"15550001111","contacts":{"14155550123@s.whatsapp.net":{"lid":"14155550123@s.whatsapp.net"}}}"#,
            r#"{"phone":"15550001111","extra":1}"#,
        ] {
            assert!(
                matches!(Fixtures::from_json(bad), Err(FixturesError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
