//! Messaging use cases: send, list, get, media, reaction, read receipts.

use std::fmt;

use sha2::{Digest, Sha256};
use wagate_domain::{
    Capability, DomainError, IdempotencyKey, Jid, JidKind, MAX_CAPTION_CHARS, MAX_MENTIONS,
    MAX_TEXT_CHARS, MediaInfo, Message, MessageId, MessageStatus, MessageType, PendingLifecycle,
    Principal, RichContent, Session, SessionId, SessionStatus, StatusTimes, WebhookUrl,
};
use wagate_store::{Accepted, IdempotencyClaim, MediaSource, MessagePage};
use wagate_webhooks::FetchError;
use wagate_whatsapp_port::MediaDownload;

use crate::gateway::AdapterContext;
use crate::{AppError, Gateway};

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW: time::Duration = time::Duration::hours(24);

/// Most message ids one read-receipt call takes.
pub const MAX_READ_IDS: usize = 100;

/// Longest reaction accepted (an emoji with modifiers is a few characters).
const MAX_EMOJI_CHARS: usize = 16;

/// Where a media message's bytes come from.
#[derive(Clone, PartialEq, Eq)]
pub enum MediaInput {
    /// The bytes (decoded from the request's base64).
    Data(Vec<u8>),
    /// A URL the gateway downloads (under the webhooks' SSRF rule).
    Url(WebhookUrl),
}

impl fmt::Debug for MediaInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaInput::Data(d) => write!(f, "Data({} bytes)", d.len()),
            MediaInput::Url(_) => f.write_str("Url(..)"),
        }
    }
}

/// What a message to send carries.
#[derive(Clone, PartialEq, Eq)]
pub enum SendContent {
    /// Text.
    Text(String),
    /// Image, video, audio or document.
    Media {
        /// Which (never `text`).
        kind: MessageType,
        /// The MIME type (for a URL, `None` takes the server's
        /// `Content-Type`).
        mimetype: Option<String>,
        /// The file name (documents).
        filename: Option<String>,
        /// The caption.
        caption: Option<String>,
        /// Audio as a voice note.
        voice_note: bool,
        /// The bytes or where to get them.
        source: MediaInput,
    },
    /// A location or contact cards (checked when built).
    Rich(RichContent),
}

impl fmt::Debug for SendContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendContent::Text(_) => f.write_str("Text(..)"),
            SendContent::Rich(r) => r.fmt(f),
            SendContent::Media { kind, source, .. } => f
                .debug_struct("Media")
                .field("kind", kind)
                .field("source", source)
                .finish_non_exhaustive(),
        }
    }
}

/// A request to send a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// The person (phone-number or LID JID).
    pub to: Jid,
    /// What it carries.
    pub content: SendContent,
    /// The message it answers.
    pub reply_to: Option<MessageId>,
    /// The people its text or caption @mentions (persons, at most 50).
    pub mentions: Vec<Jid>,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<IdempotencyKey>,
}

impl SendRequest {
    /// SHA-256 of what makes two requests "the same" (every field; media
    /// by the hash of its bytes, or its URL).
    fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut part = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        part(self.to.to_string().as_bytes());
        part(
            self.reply_to
                .as_ref()
                .map_or("", MessageId::as_str)
                .as_bytes(),
        );
        for m in &self.mentions {
            part(m.to_string().as_bytes());
        }
        match &self.content {
            SendContent::Text(t) => {
                part(b"text");
                part(t.as_bytes());
            }
            SendContent::Rich(r) => {
                part(r.kind().as_str().as_bytes());
                part(r.to_json().to_string().as_bytes());
            }
            SendContent::Media {
                kind,
                mimetype,
                filename,
                caption,
                voice_note,
                source,
            } => {
                part(kind.as_str().as_bytes());
                part(mimetype.as_deref().unwrap_or("\u{0}").as_bytes());
                part(filename.as_deref().unwrap_or("\u{0}").as_bytes());
                part(caption.as_deref().unwrap_or("\u{0}").as_bytes());
                part(&[u8::from(*voice_note)]);
                match source {
                    MediaInput::Data(d) => {
                        part(b"data");
                        part(&Sha256::digest(d));
                    }
                    MediaInput::Url(u) => {
                        part(b"url");
                        part(u.as_str().as_bytes());
                    }
                }
            }
        }
        h.finalize().into()
    }
}

/// What [`Gateway::send_message`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    /// The message (`pending` when new).
    pub message: Message,
    /// The `Idempotency-Key` was used before: this is the first answer's
    /// message and nothing new was sent.
    pub replayed: bool,
}

/// A message's media.
#[derive(Debug)]
pub struct MediaContent {
    /// What is known of it (its MIME type for `Content-Type`).
    pub info: MediaInfo,
    /// The decrypted bytes, as they come (a received message's media is
    /// streamed from WhatsApp, never held whole).
    pub bytes: MediaDownload,
}

fn check_chars(field: &'static str, text: &str, max: usize) -> Result<(), AppError> {
    if text.chars().count() > max {
        return Err(DomainError::new(field, format!("must be at most {max} characters")).into());
    }
    Ok(())
}

fn check_mimetype(m: &str) -> Result<(), AppError> {
    let ok = m.len() <= 255
        && m.split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        && m.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if ok {
        Ok(())
    } else {
        Err(DomainError::new("media.mimetype", "must be a MIME type such as image/jpeg").into())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Gateway {
    /// The caller's session, connected (for calls that need WhatsApp now).
    pub(crate) async fn connected_session(
        &self,
        p: &Principal,
        id: &SessionId,
    ) -> Result<Session, AppError> {
        let s = self.owned_session(&p.org, id).await?;
        Self::connected(s)
    }

    /// `s`, when it is connected and no logout or delete of it is under way
    /// (the adapter may have unlinked it already while its status still
    /// reads `connected`).
    fn connected(s: Session) -> Result<Session, AppError> {
        if s.status != SessionStatus::Connected {
            return Err(AppError::NotConnected { status: s.status });
        }
        if let Some(pending) = s.pending {
            return Err(AppError::Conflict {
                message: match pending {
                    PendingLifecycle::Logout => "a logout of this session is being finished",
                    PendingLifecycle::Delete => "this session is being deleted",
                },
                status: Some(s.status),
            });
        }
        Ok(s)
    }

    /// Whether the caller may send on `session` at all (capability, and
    /// the session is its organization's): checked before a send's body is
    /// read, so a stranger's large upload costs nothing.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `send`; `NotFound` for a session not the
    /// caller's; `Unavailable`.
    pub async fn check_sender(&self, p: &Principal, session: &SessionId) -> Result<(), AppError> {
        Self::require(p, Capability::Send)?;
        self.owned_session(&p.org, session).await.map(|_| ())
    }

    /// Accepts a message to send: stored `pending` before this returns,
    /// sent by the session's outbox at its pace (see [`crate::Outbox`]).
    /// With an `Idempotency-Key` used within 24 h for the same request, the
    /// first answer's message, and nothing new is sent: looked up before
    /// the session's connection or a media URL is, so a retry answers as
    /// the first time whatever changed since.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `send`; `InvalidArgument` on field `to` for a
    /// group or channel, on `text`, `caption`, `media.*` for bad content;
    /// `PayloadTooLarge` over `messages.max_media_bytes`; `NotFound` for a
    /// session not the caller's; `NotConnected`; `Conflict` when the key was
    /// used for another request, or a logout or delete of the session is
    /// being finished; `RateLimited` when the session's queue is full
    /// (`messages.max_queue`); `Unavailable`.
    pub async fn send_message(
        &self,
        p: &Principal,
        session: &SessionId,
        request: SendRequest,
    ) -> Result<SendOutcome, AppError> {
        Self::require(p, Capability::Send)?;
        if request.to.kind() == JidKind::Channel {
            return Err(DomainError::new(
                "to",
                "must be a user JID (phone number or LID) or a group JID; channels are not supported",
            )
            .into());
        }
        if request.mentions.len() > MAX_MENTIONS {
            return Err(
                DomainError::new("mentions", format!("at most {MAX_MENTIONS} people")).into(),
            );
        }
        if request.mentions.iter().any(|j| !j.kind().is_person()) {
            return Err(
                DomainError::new("mentions", "must be user JIDs (phone number or LID)").into(),
            );
        }
        if !request.mentions.is_empty() && matches!(request.content, SendContent::Rich(_)) {
            return Err(
                DomainError::new("mentions", "only a text or a caption mentions people").into(),
            );
        }
        let settings = self.outbox.settings().clone();
        let max = settings.max_media_bytes;
        // Checks that need no lookup come first.
        match &request.content {
            SendContent::Text(text) => {
                if text.is_empty() {
                    return Err(DomainError::new("text", "must not be empty").into());
                }
                check_chars("text", text, MAX_TEXT_CHARS)?;
            }
            SendContent::Rich(_) => {}
            SendContent::Media {
                kind,
                mimetype,
                filename,
                caption,
                voice_note,
                source,
            } => {
                if !kind.has_media() {
                    return Err(DomainError::new("type", "text messages carry no media").into());
                }
                if *voice_note && *kind != MessageType::Audio {
                    return Err(
                        DomainError::new("voiceNote", "only audio can be a voice note").into(),
                    );
                }
                if let Some(c) = caption {
                    check_chars("caption", c, MAX_CAPTION_CHARS)?;
                }
                if let Some(f) = filename {
                    if f.is_empty() || f.chars().any(char::is_control) {
                        return Err(
                            DomainError::new("media.filename", "must be a file name").into()
                        );
                    }
                    check_chars("media.filename", f, 255)?;
                }
                if let Some(m) = mimetype {
                    check_mimetype(m)?;
                }
                if let MediaInput::Data(d) = source {
                    if d.len() as u64 > max {
                        return Err(AppError::PayloadTooLarge { limit: max });
                    }
                    if d.is_empty() {
                        return Err(DomainError::new("media.data", "must not be empty").into());
                    }
                    if mimetype.is_none() {
                        return Err(DomainError::new(
                            "media.mimetype",
                            "is required with media.data",
                        )
                        .into());
                    }
                }
            }
        }
        let s = self.owned_session(&p.org, session).await?;
        let fingerprint = request.fingerprint();
        let now = self.now();
        let claim = request.idempotency_key.clone().map(|key| IdempotencyClaim {
            key,
            request_hash: fingerprint,
            not_before: now - IDEMPOTENCY_WINDOW,
        });
        // A retry of an accepted request answers as the first time, before
        // anything that may have changed since (the session's connection, a
        // media URL's content) is looked at.
        if let Some(claim) = &claim
            && let Some(answer) = self
                .deps
                .messages
                .idempotent_answer(&p.org, session, claim)
                .await?
        {
            return Self::outcome(answer, &settings);
        }
        let s = Self::connected(s)?;
        let own = s
            .jid
            .clone()
            .ok_or_else(|| AppError::Internal("a connected session without a JID".into()))?;
        let mut rich = None;
        let (kind, text, caption, media, voice_note, bytes) = match request.content {
            SendContent::Text(text) => (MessageType::Text, Some(text), None, None, false, None),
            SendContent::Rich(content) => {
                let kind = content.kind();
                rich = Some(content);
                (kind, None, None, None, false, None)
            }
            SendContent::Media {
                kind,
                mimetype,
                filename,
                caption,
                voice_note,
                source,
            } => {
                let (bytes, mimetype) = match source {
                    MediaInput::Data(d) => (d, mimetype),
                    MediaInput::Url(url) => {
                        let (bytes, served) = self.fetch_media(&url, max).await?;
                        let mimetype = mimetype.or(served.filter(|m| check_mimetype(m).is_ok()));
                        (bytes, mimetype)
                    }
                };
                let mimetype = mimetype.ok_or_else(|| {
                    DomainError::new("media.mimetype", "is required (the server sent none)")
                })?;
                let info = MediaInfo {
                    mimetype,
                    filename,
                    size: bytes.len() as u64,
                    sha256: hex(&Sha256::digest(&bytes)),
                };
                (kind, None, caption, Some(info), voice_note, Some(bytes))
            }
        };
        let mut random = [0u8; 9];
        self.deps.entropy.fill(&mut random);
        let message = Message {
            id: MessageId::from_random(random),
            session: *session,
            chat: request.to.clone(),
            from_me: true,
            from: own.clone(),
            from_pn: (own.kind() == JidKind::User).then(|| own.clone()),
            from_lid: (own.kind() == JidKind::Lid).then(|| own.clone()),
            to: request.to,
            kind,
            text,
            caption,
            media,
            rich,
            voice_note,
            reply_to: request.reply_to,
            mentions: request.mentions,
            status: MessageStatus::Pending,
            status_at: StatusTimes::default(),
            error: None,
            edited_at: None,
            timestamp: now,
            created_at: now,
        };
        let accepted = self
            .deps
            .messages
            .accept_outgoing(
                &p.org,
                &message,
                bytes.as_deref(),
                claim.as_ref(),
                settings.max_queue,
            )
            .await?;
        if matches!(accepted, Accepted::New(_)) {
            self.outbox.wake(session);
        }
        Self::outcome(accepted, &settings)
    }

    /// The answer to a send the store accepted (or answered from an
    /// `Idempotency-Key`).
    fn outcome(
        accepted: Accepted,
        settings: &crate::MessagingSettings,
    ) -> Result<SendOutcome, AppError> {
        match accepted {
            Accepted::New(message) => Ok(SendOutcome {
                message,
                replayed: false,
            }),
            Accepted::Replayed(message) => Ok(SendOutcome {
                message,
                replayed: true,
            }),
            Accepted::KeyConflict => Err(AppError::Conflict {
                message: "the Idempotency-Key was used for a different request",
                status: None,
            }),
            Accepted::QueueFull => Err(AppError::RateLimited {
                retry_after: settings
                    .send_interval()
                    .max(std::time::Duration::from_secs(1)),
            }),
        }
    }

    async fn fetch_media(
        &self,
        url: &WebhookUrl,
        max: u64,
    ) -> Result<(Vec<u8>, Option<String>), AppError> {
        match self.deps.media_fetcher.fetch(url, max).await {
            Ok((bytes, _)) if bytes.is_empty() => {
                Err(DomainError::new("media.url", "the download is empty").into())
            }
            Ok(got) => Ok(got),
            Err(FetchError::TooLarge(limit)) => Err(AppError::PayloadTooLarge { limit }),
            Err(FetchError::Refused(r)) => Err(DomainError::new("media.url", r.0).into()),
            Err(FetchError::Timeout) => {
                Err(DomainError::new("media.url", "the download timed out").into())
            }
            Err(FetchError::Failed(m)) => Err(DomainError::new("media.url", m).into()),
        }
    }

    /// One page of the session's messages (of `chat`, when given), newest
    /// first; `limit` 1 to 100.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `InvalidArgument` on `limit`; `NotFound`;
    /// `Unavailable`.
    pub async fn list_messages(
        &self,
        p: &Principal,
        session: &SessionId,
        chat: Option<&Jid>,
        limit: u32,
        before: Option<u64>,
    ) -> Result<MessagePage, AppError> {
        Self::require(p, Capability::Read)?;
        if !(1..=100).contains(&limit) {
            return Err(DomainError::new("limit", "must be 1 to 100").into());
        }
        self.owned_session(&p.org, session).await?;
        Ok(self
            .deps
            .messages
            .list_messages(&p.org, session, chat, before, limit)
            .await?)
    }

    /// One message of the session.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `NotFound` (session or message);
    /// `Unavailable`.
    pub async fn get_message(
        &self,
        p: &Principal,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Message, AppError> {
        Self::require(p, Capability::Read)?;
        self.owned_session(&p.org, session).await?;
        self.deps
            .messages
            .get_message(&p.org, session, id)
            .await?
            .ok_or(AppError::NotFound {
                what: "message not found",
                reason: None,
            })
    }

    /// A message's media, decrypted: the bytes of an outgoing one not sent
    /// yet, or downloaded through WhatsApp for a received one (which needs
    /// the session connected).
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `NotFound` when there is no such
    /// message, it has no media, or WhatsApp (or the gateway, for a sent
    /// one) no longer has it; `NotConnected`; `Timeout`; `Unavailable`.
    pub async fn message_media(
        &self,
        p: &Principal,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<MediaContent, AppError> {
        Self::require(p, Capability::Read)?;
        let s = self.owned_session(&p.org, session).await?;
        let (info, source) =
            self.deps
                .messages
                .media(&p.org, session, id)
                .await?
                .ok_or(AppError::NotFound {
                    what: "message has no media",
                    reason: None,
                })?;
        let bytes = match source {
            MediaSource::Bytes(bytes) => MediaDownload::complete(bytes),
            MediaSource::Gone => {
                return Err(AppError::NotFound {
                    what: "media no longer available",
                    reason: None,
                });
            }
            MediaSource::Remote(handle) => {
                if s.status != SessionStatus::Connected {
                    return Err(AppError::NotConnected { status: s.status });
                }
                // What the sender declared: refused before anything is
                // fetched. The adapter holds the download to the same
                // limit whatever was declared.
                let max = self.outbox.settings().max_media_bytes;
                if info.size > max {
                    return Err(AppError::PayloadTooLarge { limit: max });
                }
                let handle = wagate_whatsapp_port::MediaRef(handle);
                let ctx = AdapterContext {
                    status: SessionStatus::Disconnected,
                    not_found: Some("media no longer available"),
                };
                // The request deadline bounds the wait for its first
                // bytes; the rest streams to the client.
                self.whatsapp(
                    ctx,
                    self.deps.whatsapp.download_media(session, &handle, max),
                )
                .await?
            }
        };
        Ok(MediaContent { info, bytes })
    }

    /// Reacts to a message of the session (`emoji` empty: takes the
    /// reaction back).
    ///
    /// # Errors
    ///
    /// `Forbidden` without `send`; `InvalidArgument` on `emoji`; `NotFound`
    /// (session or message); `NotConnected`; `RateLimited`; `Timeout`;
    /// `Unavailable`.
    pub async fn react(
        &self,
        p: &Principal,
        session: &SessionId,
        id: &MessageId,
        emoji: &str,
    ) -> Result<(), AppError> {
        Self::require(p, Capability::Send)?;
        if emoji.chars().count() > MAX_EMOJI_CHARS
            || emoji.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(DomainError::new("emoji", "must be one emoji, or empty to remove").into());
        }
        self.connected_session(p, session).await?;
        let message = self.get_message(p, session, id).await?;
        self.pace(session)?;
        let ctx = AdapterContext {
            status: SessionStatus::Disconnected,
            not_found: Some("message not found"),
        };
        let author = (!message.from_me).then(|| message.from_lid.unwrap_or(message.from));
        self.whatsapp(
            ctx,
            self.deps
                .whatsapp
                .send_reaction(session, &message.chat, &message.id, author, emoji),
        )
        .await
    }

    /// Sends read receipts for messages of `chat` (in a group, one per
    /// member who wrote them) and marks the received ones `read`.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `send`; `InvalidArgument` on `jid` (not a
    /// person) or `messageIds` (empty, over 100); `NotFound`;
    /// `NotConnected`; `RateLimited`; `Timeout`; `Unavailable`.
    pub async fn mark_read(
        &self,
        p: &Principal,
        session: &SessionId,
        chat: &Jid,
        ids: &[MessageId],
    ) -> Result<(), AppError> {
        Self::require(p, Capability::Send)?;
        if chat.kind() == JidKind::Channel {
            return Err(DomainError::new(
                "jid",
                "must be a user JID (phone number or LID) or a group JID, not a channel",
            )
            .into());
        }
        if ids.is_empty() || ids.len() > MAX_READ_IDS {
            return Err(DomainError::new(
                "messageIds",
                format!("must hold 1 to {MAX_READ_IDS} message ids"),
            )
            .into());
        }
        self.connected_session(p, session).await?;
        self.pace(session)?;
        let ctx = AdapterContext {
            status: SessionStatus::Disconnected,
            not_found: Some("message not found"),
        };
        if chat.kind() == JidKind::Group {
            // A group's receipt names the member who wrote the messages:
            // one per writer (by LID when known, as the group names them);
            // ids not received in this group are left out.
            let mut by_writer: Vec<(Jid, Vec<MessageId>)> = Vec::new();
            for id in ids {
                let Some(m) = self.deps.messages.get_message(&p.org, session, id).await? else {
                    continue;
                };
                if m.from_me || m.chat != *chat {
                    continue;
                }
                let writer = m.from_lid.unwrap_or(m.from);
                match by_writer.iter_mut().find(|(w, _)| *w == writer) {
                    Some((_, mine)) => mine.push(m.id),
                    None => by_writer.push((writer, vec![m.id])),
                }
            }
            for (writer, mine) in &by_writer {
                self.whatsapp(
                    ctx,
                    self.deps.whatsapp.mark_read(session, chat, writer, mine),
                )
                .await?;
            }
        } else {
            // One-to-one: the writer of the chat's messages is the chat.
            self.whatsapp(ctx, self.deps.whatsapp.mark_read(session, chat, chat, ids))
                .await?;
        }
        self.deps
            .messages
            .mark_received_read(&p.org, session, chat, ids, self.now())
            .await?;
        Ok(())
    }
}
