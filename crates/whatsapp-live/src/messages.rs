//! Pure translations for messaging: the protobuf messages the adapter sends,
//! what arrives (whatsapp-rust's decrypted messages, receipts and server
//! acks) as the port's values, the [`MediaRef`] encoding, and send and media
//! errors as [`WhatsAppError`]. Nothing here does I/O; what needs the client
//! (a LID ↔ phone-number lookup) is done by the caller and handed in.

use std::collections::HashMap;

use time::OffsetDateTime;
use wagate_domain::{
    ContactCard, Jid, JidKind, MediaInfo, MessageId, MessageStatus, MessageType, Recipient,
    RichContent,
};
use wagate_whatsapp_port::{
    InboundContent, InboundMessage, MediaRef, OutgoingMedia, Refusal, StatusUpdate, WhatsAppError,
};
use whatsapp_rust::buffa::MessageField;
use whatsapp_rust::download::{DownloadParams, MediaType};
use whatsapp_rust::types::events::{Receipt, ServerAck};
use whatsapp_rust::types::message::MessageInfo;
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::upload::UploadResponse;
use whatsapp_rust::wacore::proto_helpers::MessageExt as _;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{ClientError, ErrorChainExt as _, SendError, Server};

use crate::mapping::{from_wa_jid, iq_error};

// ---------------------------------------------------------------- outgoing

/// The reply context of an outgoing message: the quoted message's id (the
/// port knows no more of it, so no quoted copy nor author is attached).
fn reply_context(reply_to: Option<&MessageId>) -> MessageField<wa::ContextInfo> {
    match reply_to {
        Some(id) => MessageField::some(wa::ContextInfo {
            stanza_id: Some(id.as_str().to_owned()),
            ..Default::default()
        }),
        None => MessageField::none(),
    }
}

/// A text message: a plain `conversation`, or an `extendedTextMessage` when
/// it answers another message (only that one carries a context).
pub(crate) fn text_message(text: &str, reply_to: Option<&MessageId>) -> wa::Message {
    match reply_to {
        None => wa::Message {
            conversation: Some(text.to_owned()),
            ..Default::default()
        },
        Some(_) => wa::Message {
            extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                text: Some(text.to_owned()),
                context_info: reply_context(reply_to),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// `message` (text or media) @mentioning `mentions`: their JIDs in its
/// context (a plain `conversation` becomes an `extendedTextMessage`, the
/// kind that carries one).
pub(crate) fn with_mentions(mut message: wa::Message, mentions: &[Jid]) -> wa::Message {
    if mentions.is_empty() {
        return message;
    }
    let jids: Vec<String> = mentions
        .iter()
        .map(|j| crate::mapping::to_wa_jid(j).to_string())
        .collect();
    if let Some(text) = message.conversation.take() {
        message.extended_text_message = MessageField::some(wa::message::ExtendedTextMessage {
            text: Some(text),
            ..Default::default()
        });
    }
    let contexts = [
        message
            .extended_text_message
            .as_option_mut()
            .map(|m| &mut m.context_info),
        message
            .image_message
            .as_option_mut()
            .map(|m| &mut m.context_info),
        message
            .video_message
            .as_option_mut()
            .map(|m| &mut m.context_info),
        message
            .document_message
            .as_option_mut()
            .map(|m| &mut m.context_info),
    ];
    for context in contexts.into_iter().flatten() {
        context.get_or_insert_default().mentioned_jid = jids.clone();
    }
    message
}

/// The people a received message @mentions (its context's
/// `mentionedJid`), as JIDs; ones that do not parse are left out.
fn mentions_of(message: &wa::Message) -> Vec<Jid> {
    let m = message.get_base_message();
    let context = m
        .extended_text_message
        .as_option()
        .and_then(|x| x.context_info.as_option())
        .or_else(|| {
            m.image_message
                .as_option()
                .and_then(|x| x.context_info.as_option())
        })
        .or_else(|| {
            m.video_message
                .as_option()
                .and_then(|x| x.context_info.as_option())
        })
        .or_else(|| {
            m.document_message
                .as_option()
                .and_then(|x| x.context_info.as_option())
        });
    context
        .map(|c| {
            c.mentioned_jid
                .iter()
                .filter_map(|j| Jid::parse(j).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A location, contact cards or a poll as WhatsApp's message (one card: a
/// `contactMessage`; more: a `contactsArrayMessage`; a poll: see
/// [`poll_message`]).
pub(crate) fn rich_message(rich: &RichContent, reply_to: Option<&MessageId>) -> wa::Message {
    match rich {
        RichContent::Poll(poll) => {
            let mut secret = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
            poll_message(poll, secret, reply_to)
        }
        RichContent::Location(l) => wa::Message {
            location_message: MessageField::some(wa::message::LocationMessage {
                degrees_latitude: Some(l.latitude()),
                degrees_longitude: Some(l.longitude()),
                name: l.name().map(str::to_owned),
                address: l.address().map(str::to_owned),
                context_info: reply_context(reply_to),
                ..Default::default()
            }),
            ..Default::default()
        },
        RichContent::Contacts(cards) => {
            let card = |c: &ContactCard| wa::message::ContactMessage {
                display_name: Some(c.display_name().to_owned()),
                vcard: Some(c.vcard().to_owned()),
                ..Default::default()
            };
            match cards.as_slice() {
                [one] => wa::Message {
                    contact_message: MessageField::some(wa::message::ContactMessage {
                        context_info: reply_context(reply_to),
                        ..card(one)
                    }),
                    ..Default::default()
                },
                many => wa::Message {
                    contacts_array_message: MessageField::some(wa::message::ContactsArrayMessage {
                        display_name: Some(format!("{} contacts", many.len())),
                        contacts: many.iter().map(card).collect(),
                        context_info: reply_context(reply_to),
                    }),
                    ..Default::default()
                },
            }
        }
    }
}

/// A poll as WhatsApp Web makes one (whatsapp-rust's `features/polls.rs`):
/// `pollCreationMessageV3` for a single choice, `pollCreationMessage` for
/// several, the options by name, and `secret` in the message's context.
/// whatsapp-rust keeps a sent message's secret in the device store
/// (`msg_secrets`), where a vote's decryption finds it.
pub(crate) fn poll_message(
    poll: &wagate_domain::Poll,
    secret: [u8; 32],
    reply_to: Option<&MessageId>,
) -> wa::Message {
    let creation = wa::message::PollCreationMessage {
        name: Some(poll.question().to_owned()),
        options: poll
            .options()
            .iter()
            .map(|o| wa::message::poll_creation_message::Option {
                option_name: Some(o.clone()),
                option_hash: None,
            })
            .collect(),
        selectable_options_count: Some(u32::from(poll.selectable_count())),
        context_info: reply_context(reply_to),
        poll_content_type: Some(wa::message::PollContentType::TEXT),
        ..Default::default()
    };
    let single = poll.selectable_count() == 1;
    wa::Message {
        poll_creation_message_v3: if single {
            MessageField::some(creation.clone())
        } else {
            MessageField::none()
        },
        poll_creation_message: if single {
            MessageField::none()
        } else {
            MessageField::some(creation)
        },
        message_context_info: MessageField::some(wa::MessageContextInfo {
            message_secret: Some(secret.to_vec()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The media type an outgoing kind is encrypted and uploaded as.
///
/// # Errors
///
/// [`WhatsAppError::Internal`] for text (not media).
pub(crate) fn media_type(kind: MessageType) -> Result<MediaType, WhatsAppError> {
    match kind {
        MessageType::Image => Ok(MediaType::Image),
        MessageType::Video => Ok(MediaType::Video),
        MessageType::Audio => Ok(MediaType::Audio),
        MessageType::Document => Ok(MediaType::Document),
        MessageType::Text
        | MessageType::Location
        | MessageType::Contacts
        | MessageType::Poll
        | MessageType::Revoked => Err(WhatsAppError::Internal(format!(
            "{kind} is not media; nothing to upload"
        ))),
    }
}

/// The message that carries uploaded media.
///
/// # Errors
///
/// [`WhatsAppError::Internal`] for text (not media).
pub(crate) fn media_message(
    media: &OutgoingMedia,
    upload: UploadResponse,
    reply_to: Option<&MessageId>,
) -> Result<wa::Message, WhatsAppError> {
    let context_info = reply_context(reply_to);
    let mimetype = Some(media.mimetype.clone());
    let caption = media.caption.clone();
    let message = match media.kind {
        MessageType::Image => wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                url: Some(upload.url),
                direct_path: Some(upload.direct_path),
                media_key: Some(upload.media_key.to_vec()),
                file_sha256: Some(upload.file_sha256.to_vec()),
                file_enc_sha256: Some(upload.file_enc_sha256.to_vec()),
                file_length: Some(upload.file_length),
                media_key_timestamp: Some(upload.media_key_timestamp),
                mimetype,
                caption,
                context_info,
                ..Default::default()
            }),
            ..Default::default()
        },
        MessageType::Video => wa::Message {
            video_message: MessageField::some(wa::message::VideoMessage {
                url: Some(upload.url),
                direct_path: Some(upload.direct_path),
                media_key: Some(upload.media_key.to_vec()),
                file_sha256: Some(upload.file_sha256.to_vec()),
                file_enc_sha256: Some(upload.file_enc_sha256.to_vec()),
                file_length: Some(upload.file_length),
                media_key_timestamp: Some(upload.media_key_timestamp),
                streaming_sidecar: upload.streaming_sidecar,
                mimetype,
                caption,
                context_info,
                ..Default::default()
            }),
            ..Default::default()
        },
        MessageType::Audio => wa::Message {
            audio_message: MessageField::some(wa::message::AudioMessage {
                url: Some(upload.url),
                direct_path: Some(upload.direct_path),
                media_key: Some(upload.media_key.to_vec()),
                file_sha256: Some(upload.file_sha256.to_vec()),
                file_enc_sha256: Some(upload.file_enc_sha256.to_vec()),
                file_length: Some(upload.file_length),
                media_key_timestamp: Some(upload.media_key_timestamp),
                streaming_sidecar: upload.streaming_sidecar,
                mimetype,
                ptt: Some(media.voice_note),
                context_info,
                ..Default::default()
            }),
            ..Default::default()
        },
        MessageType::Document => wa::Message {
            document_message: MessageField::some(wa::message::DocumentMessage {
                url: Some(upload.url),
                direct_path: Some(upload.direct_path),
                media_key: Some(upload.media_key.to_vec()),
                file_sha256: Some(upload.file_sha256.to_vec()),
                file_enc_sha256: Some(upload.file_enc_sha256.to_vec()),
                file_length: Some(upload.file_length),
                media_key_timestamp: Some(upload.media_key_timestamp),
                mimetype,
                title: media.filename.clone(),
                file_name: media.filename.clone(),
                caption,
                context_info,
                ..Default::default()
            }),
            ..Default::default()
        },
        kind @ (MessageType::Text
        | MessageType::Location
        | MessageType::Contacts
        | MessageType::Poll
        | MessageType::Revoked) => {
            return Err(WhatsAppError::Internal(format!(
                "{kind} is not media; nothing to send as media"
            )));
        }
    };
    Ok(message)
}

/// The key of a message reacted to: `author` wrote it (`None`: the
/// account); in a group the key names that participant.
pub(crate) fn reaction_key(chat: &Jid, target: &MessageId, author: Option<&Jid>) -> wa::MessageKey {
    let participant = author
        .filter(|_| chat.kind() == JidKind::Group)
        .map(|a| crate::mapping::to_wa_jid(a).to_string());
    wa::MessageKey {
        remote_jid: Some(chat.to_string()),
        from_me: Some(author.is_none()),
        id: Some(target.as_str().to_owned()),
        participant,
    }
}

/// A failed send as the port's error.
pub(crate) fn send_error(e: &SendError) -> WhatsAppError {
    match e {
        SendError::NotLoggedIn => WhatsAppError::NotConnected,
        SendError::Client(c) => client_error(c),
        SendError::Iq(iq) => iq_error(iq),
        SendError::InvalidRequest(m) => WhatsAppError::InvalidTarget(m.clone()),
        SendError::Internal(inner) => anyhow_error("sending failed", inner),
        other => WhatsAppError::Internal(format!("sending failed: {other}")),
    }
}

fn client_error(e: &ClientError) -> WhatsAppError {
    match e {
        ClientError::NotConnected | ClientError::NotLoggedIn => WhatsAppError::NotConnected,
        ClientError::Iq(iq) => iq_error(iq),
        ClientError::Socket(_) | ClientError::EncryptSend(_) => {
            WhatsAppError::Unavailable(format!("the connection failed: {e}"))
        }
        ClientError::Internal(inner) => anyhow_error("sending failed", inner),
        other => WhatsAppError::Internal(format!("sending failed: {other}")),
    }
}

/// An `anyhow` error from the library: a client or IQ error inside it keeps
/// its meaning, anything else is internal.
fn anyhow_error(what: &str, e: &whatsapp_rust::anyhow::Error) -> WhatsAppError {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return client_error(c);
        }
        if let Some(iq) = cause.downcast_ref::<whatsapp_rust::IqError>() {
            return iq_error(iq);
        }
    }
    WhatsAppError::Internal(format!("{what}: {e:#}"))
}

/// A read receipt that could not be sent (the library keeps only the text
/// of why): the connection failed.
pub(crate) fn receipt_error(e: &whatsapp_rust::anyhow::Error) -> WhatsAppError {
    match anyhow_error("sending read receipts failed", e) {
        WhatsAppError::Internal(m) if m.to_ascii_lowercase().contains("not connected") => {
            WhatsAppError::NotConnected
        }
        WhatsAppError::Internal(m) => WhatsAppError::Unavailable(m),
        other => other,
    }
}

/// A failed media upload or download. `download`: a 404/410 from the media
/// server means the media is gone ([`WhatsAppError::NotFound`]).
pub(crate) fn media_error(download: bool, e: &whatsapp_rust::anyhow::Error) -> WhatsAppError {
    let what = if download {
        "media download failed"
    } else {
        "media upload failed"
    };
    match e.http_status() {
        Some(404 | 410) if download => WhatsAppError::NotFound(None),
        Some(401 | 403) if download => WhatsAppError::NotFound(None),
        Some(408 | 504) => WhatsAppError::Timeout,
        Some(status @ (429 | 500..=599)) => {
            WhatsAppError::Unavailable(format!("{what}: the media server answered {status}"))
        }
        // The media server will not take these bytes (bad, too large, a
        // type it refuses): for good. An expired media token (401/403) or
        // a moved host (404) may pass on a later try.
        Some(status @ (400 | 406 | 413 | 415 | 422)) if !download => {
            WhatsAppError::Refused(Refusal::Media(status))
        }
        Some(status) => {
            WhatsAppError::Internal(format!("{what}: the media server answered {status}"))
        }
        None => match anyhow_error(what, e) {
            // No HTTP answer at all (a refused connection, a reset): transient.
            WhatsAppError::Internal(m) if is_transport(e) => WhatsAppError::Unavailable(m),
            other => other,
        },
    }
}

fn is_transport(e: &whatsapp_rust::anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some())
        || {
            let text = format!("{e:#}").to_ascii_lowercase();
            [
                "connect",
                "timed out",
                "timeout",
                "reset",
                "refused",
                "dns",
                "io error",
            ]
            .iter()
            .any(|w| text.contains(w))
        }
}

// ---------------------------------------------------------------- MediaRef

/// The first byte of every [`MediaRef`] this adapter writes.
const MEDIA_REF_V1: u8 = 1;

/// What the adapter needs to download a message's media again: the
/// decrypted [`MediaRef`]. Holds the media key: never printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct MediaHandle {
    pub kind: MessageType,
    pub direct_path: String,
    pub media_key: Vec<u8>,
    pub file_enc_sha256: Vec<u8>,
    pub file_sha256: Vec<u8>,
    pub file_length: u64,
}

impl std::fmt::Debug for MediaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaHandle")
            .field("kind", &self.kind)
            .field("file_length", &self.file_length)
            .finish_non_exhaustive()
    }
}

fn kind_code(kind: MessageType) -> u8 {
    match kind {
        // Never media: no handle names them.
        MessageType::Text
        | MessageType::Location
        | MessageType::Contacts
        | MessageType::Poll
        | MessageType::Revoked => 0,
        MessageType::Image => 1,
        MessageType::Video => 2,
        MessageType::Audio => 3,
        MessageType::Document => 4,
    }
}

impl MediaHandle {
    /// Version 1: `[1, kind, file_length: u64 LE]`, then direct path, media
    /// key, file enc SHA-256 and file SHA-256, each as a `u16` LE length and
    /// its bytes. Kinds: 1 image, 2 video, 3 audio, 4 document.
    pub(crate) fn encode(&self) -> MediaRef {
        let fields: [&[u8]; 4] = [
            self.direct_path.as_bytes(),
            &self.media_key,
            &self.file_enc_sha256,
            &self.file_sha256,
        ];
        let mut out = Vec::with_capacity(10 + fields.iter().map(|f| 2 + f.len()).sum::<usize>());
        out.push(MEDIA_REF_V1);
        out.push(kind_code(self.kind));
        out.extend_from_slice(&self.file_length.to_le_bytes());
        for field in fields {
            // Every field is far below 64 KiB (a path, keys, hashes); a longer
            // one is cut, which makes the reference fail to download, never
            // to decode wrongly.
            let len = u16::try_from(field.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&field[..usize::from(len)]);
        }
        MediaRef(out)
    }

    /// Reads a [`MediaRef`] written by [`MediaHandle::encode`]; `None` when
    /// it is not one (another version, another adapter's, truncated).
    pub(crate) fn decode(media: &MediaRef) -> Option<Self> {
        let bytes = media.0.as_slice();
        let (&version, rest) = bytes.split_first()?;
        if version != MEDIA_REF_V1 {
            return None;
        }
        let (&kind, rest) = rest.split_first()?;
        let kind = match kind {
            1 => MessageType::Image,
            2 => MessageType::Video,
            3 => MessageType::Audio,
            4 => MessageType::Document,
            _ => return None,
        };
        let (length, mut rest) = rest.split_at_checked(8)?;
        let file_length = u64::from_le_bytes(length.try_into().ok()?);
        let mut next = || -> Option<Vec<u8>> {
            let (len, tail) = rest.split_at_checked(2)?;
            let len = usize::from(u16::from_le_bytes(len.try_into().ok()?));
            let (field, tail) = tail.split_at_checked(len)?;
            rest = tail;
            Some(field.to_vec())
        };
        let direct_path = String::from_utf8(next()?).ok()?;
        let media_key = next()?;
        let file_enc_sha256 = next()?;
        let file_sha256 = next()?;
        if !rest.is_empty() {
            return None;
        }
        Some(Self {
            kind,
            direct_path,
            media_key,
            file_enc_sha256,
            file_sha256,
            file_length,
        })
    }

    /// The download parameters, or `None` when the message did not carry
    /// enough to fetch it (then WhatsApp cannot give it to us either).
    pub(crate) fn download_params(&self) -> Option<DownloadParams> {
        if !is_direct_path(&self.direct_path)
            || self.media_key.len() != 32
            || self.file_enc_sha256.len() != 32
            || self.file_sha256.len() != 32
        {
            return None;
        }
        Some(DownloadParams::encrypted(
            self.direct_path.clone(),
            &self.media_key,
            &self.file_sha256,
            &self.file_enc_sha256,
            self.file_length,
            media_type(self.kind).ok()?,
        ))
    }
}

/// Whether `path` is a path on WhatsApp's media host, as the download URL
/// `https://{host}{path}?auth=…` needs: it comes from the contact's
/// message, so anything that could change the host (a leading `.`, `:` or
/// `@`, a `\\`, a `//`), leave the path or smuggle a fragment is refused —
/// the account's media token would go with it.
pub(crate) fn is_direct_path(path: &str) -> bool {
    path.len() <= 2048
        && path.starts_with('/')
        && !path.starts_with("//")
        && !path.split(['/', '?']).any(|segment| segment == "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/?=&%+,;:!*'()$".contains(&b))
}

// ---------------------------------------------------------------- incoming

/// The account's own identity, to tell its messages and receipts apart.
#[derive(Debug, Clone, Default)]
pub(crate) struct Own {
    /// Its phone-number JID (bare), when known.
    pub pn: Option<whatsapp_rust::Jid>,
    /// Its LID (bare), when known.
    pub lid: Option<whatsapp_rust::Jid>,
}

impl Own {
    /// Whether `jid` (bare) is the account.
    pub(crate) fn is_me(&self, jid: &whatsapp_rust::Jid) -> bool {
        [&self.pn, &self.lid]
            .into_iter()
            .flatten()
            .any(|me| me.user == jid.user && me.server == jid.server)
    }
}

/// What the client knows of LID ↔ phone-number pairs, looked up by the
/// caller for the JIDs a conversion asks about ([`identities_to_learn`]):
/// bare JID text → its other form.
pub(crate) type Alternates = HashMap<String, whatsapp_rust::Jid>;

fn is_person(jid: &whatsapp_rust::Jid) -> bool {
    matches!(jid.server, Server::Pn | Server::Lid)
}

/// The bare JIDs of people in `info` whose other form the message itself
/// does not give (look them up before [`inbound_message`]).
pub(crate) fn identities_to_learn(info: &MessageInfo) -> Vec<whatsapp_rust::Jid> {
    let source = &info.source;
    let mut out = Vec::new();
    if source.is_from_me {
        let chat = source.chat.to_non_ad();
        if chat.server == Server::Lid && info.peer_recipient_pn.is_none() {
            out.push(chat);
        }
    } else if source.sender_alt.is_none() {
        let sender = source.sender.to_non_ad();
        if is_person(&sender) {
            out.push(sender);
        }
    }
    out
}

/// The pair (phone number, LID) of a person, from one JID and maybe its
/// other form.
fn pn_and_lid(
    jid: &whatsapp_rust::Jid,
    alt: Option<&whatsapp_rust::Jid>,
) -> (Option<Jid>, Option<Jid>) {
    let forms = [Some(jid), alt];
    let find = |server: Server| {
        forms
            .iter()
            .flatten()
            .find(|j| j.server == server)
            .and_then(|j| from_wa_jid(&j.to_non_ad()))
    };
    (find(Server::Pn), find(Server::Lid))
}

fn timestamp(t: whatsapp_rust::chrono::DateTime<whatsapp_rust::chrono::Utc>) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

fn reply_of(context: &MessageField<wa::ContextInfo>) -> Option<MessageId> {
    context
        .as_option()
        .and_then(|c| c.stanza_id.as_deref())
        .and_then(|id| MessageId::parse(id).ok())
}

/// The media fields every media message has, read through one shape.
struct MediaFields<'a> {
    kind: MessageType,
    mimetype: Option<&'a str>,
    filename: Option<&'a str>,
    caption: Option<&'a str>,
    voice_note: bool,
    direct_path: Option<&'a str>,
    media_key: Option<&'a [u8]>,
    file_enc_sha256: Option<&'a [u8]>,
    file_sha256: Option<&'a [u8]>,
    file_length: Option<u64>,
    context: &'a MessageField<wa::ContextInfo>,
}

fn media_content(m: MediaFields<'_>) -> (InboundContent, Option<MessageId>) {
    let default_mime = match m.kind {
        MessageType::Image => "image/jpeg",
        MessageType::Video => "video/mp4",
        MessageType::Audio => "audio/ogg",
        _ => "application/octet-stream",
    };
    let file_sha256 = m.file_sha256.unwrap_or_default();
    let handle = MediaHandle {
        kind: m.kind,
        // Kept only when it is a path on the media host: anything else
        // would never be downloaded anyway.
        direct_path: m
            .direct_path
            .filter(|p| is_direct_path(p))
            .unwrap_or_default()
            .to_owned(),
        media_key: m.media_key.unwrap_or_default().to_vec(),
        file_enc_sha256: m.file_enc_sha256.unwrap_or_default().to_vec(),
        file_sha256: file_sha256.to_vec(),
        file_length: m.file_length.unwrap_or(0),
    };
    let content = InboundContent::Media {
        kind: m.kind,
        info: MediaInfo {
            mimetype: m
                .mimetype
                .filter(|s| !s.is_empty())
                .unwrap_or(default_mime)
                .to_owned(),
            filename: m.filename.filter(|s| !s.is_empty()).map(str::to_owned),
            size: m.file_length.unwrap_or(0),
            sha256: hex(file_sha256),
        },
        caption: m.caption.filter(|s| !s.is_empty()).map(str::to_owned),
        voice_note: m.voice_note,
        media: handle.encode(),
    };
    (content, reply_of(m.context))
}

/// What a message carries, when it is of a kind wagate records: text, the
/// four media kinds, reactions. `None` for the rest (protocol messages,
/// stickers, polls, edits, …).
fn content(message: &wa::Message) -> Option<(InboundContent, Option<MessageId>)> {
    let m = message.get_base_message();
    if let Some(text) = m.conversation.as_deref() {
        return Some((InboundContent::Text(text.to_owned()), None));
    }
    if let Some(ext) = m.extended_text_message.as_option()
        && let Some(text) = ext.text.as_deref()
    {
        return Some((
            InboundContent::Text(text.to_owned()),
            reply_of(&ext.context_info),
        ));
    }
    if let Some(i) = m.image_message.as_option() {
        return Some(media_content(MediaFields {
            kind: MessageType::Image,
            mimetype: i.mimetype.as_deref(),
            filename: None,
            caption: i.caption.as_deref(),
            voice_note: false,
            direct_path: i.direct_path.as_deref(),
            media_key: i.media_key.as_deref(),
            file_enc_sha256: i.file_enc_sha256.as_deref(),
            file_sha256: i.file_sha256.as_deref(),
            file_length: i.file_length,
            context: &i.context_info,
        }));
    }
    if let Some(v) = m.video_message.as_option() {
        return Some(media_content(MediaFields {
            kind: MessageType::Video,
            mimetype: v.mimetype.as_deref(),
            filename: None,
            caption: v.caption.as_deref(),
            voice_note: false,
            direct_path: v.direct_path.as_deref(),
            media_key: v.media_key.as_deref(),
            file_enc_sha256: v.file_enc_sha256.as_deref(),
            file_sha256: v.file_sha256.as_deref(),
            file_length: v.file_length,
            context: &v.context_info,
        }));
    }
    if let Some(a) = m.audio_message.as_option() {
        return Some(media_content(MediaFields {
            kind: MessageType::Audio,
            mimetype: a.mimetype.as_deref(),
            filename: None,
            caption: None,
            voice_note: a.ptt.unwrap_or(false),
            direct_path: a.direct_path.as_deref(),
            media_key: a.media_key.as_deref(),
            file_enc_sha256: a.file_enc_sha256.as_deref(),
            file_sha256: a.file_sha256.as_deref(),
            file_length: a.file_length,
            context: &a.context_info,
        }));
    }
    if let Some(d) = m.document_message.as_option() {
        return Some(media_content(MediaFields {
            kind: MessageType::Document,
            mimetype: d.mimetype.as_deref(),
            filename: d.file_name.as_deref().or(d.title.as_deref()),
            caption: d.caption.as_deref(),
            voice_note: false,
            direct_path: d.direct_path.as_deref(),
            media_key: d.media_key.as_deref(),
            file_enc_sha256: d.file_enc_sha256.as_deref(),
            file_sha256: d.file_sha256.as_deref(),
            file_length: d.file_length,
            context: &d.context_info,
        }));
    }
    if let Some(r) = m.reaction_message.as_option() {
        let target = r
            .key
            .as_option()
            .and_then(|k| k.id.as_deref())
            .and_then(|id| MessageId::parse(id).ok())?;
        let emoji = r.text.clone().unwrap_or_default();
        return Some((InboundContent::Reaction { target, emoji }, None));
    }
    crate::conversation::content(m)
}

/// Why an arrived message is not recorded (for a debug log line; never
/// its content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skipped {
    /// A broadcast list, status or channel message.
    NotOneToOne,
    /// Of a kind wagate does not record (protocol message, sticker, …).
    Unsupported,
    /// Its id or JIDs are not of a form wagate accepts.
    Malformed,
}

/// A decrypted message as the port's, or why it is skipped. `alternates`
/// holds what the caller looked up for [`identities_to_learn`].
pub(crate) fn inbound_message(
    message: &wa::Message,
    info: &MessageInfo,
    own: &Own,
    alternates: &Alternates,
) -> Result<InboundMessage, Skipped> {
    inbound_with(content(message), message, info, own, alternates)
}

/// As [`inbound_message`], with the content (and the message it answers)
/// already read, e.g. a poll vote opened with its poll's secret.
pub(crate) fn inbound_with(
    read: Option<(InboundContent, Option<MessageId>)>,
    message: &wa::Message,
    info: &MessageInfo,
    own: &Own,
    alternates: &Alternates,
) -> Result<InboundMessage, Skipped> {
    let source = &info.source;
    let chat = source.chat.to_non_ad();
    let group = if source.is_group && chat.server == Server::Group {
        let group = from_wa_jid(&chat).ok_or(Skipped::Malformed)?;
        if group.kind() != JidKind::Group {
            return Err(Skipped::NotOneToOne);
        }
        Some(group)
    } else if source.is_group || !is_person(&chat) {
        return Err(Skipped::NotOneToOne);
    } else {
        None
    };
    let (content, reply_to) = read.ok_or(Skipped::Unsupported)?;
    let id = MessageId::parse(&info.id).map_err(|_| Skipped::Malformed)?;
    let (chat, author) = match group {
        Some(group) => (group, group_author(info, own, alternates)?),
        None => one_to_one_chat(info, &chat, own, alternates)?,
    };
    Ok(InboundMessage {
        id,
        chat,
        sender: author.jid,
        sender_pn: author.pn,
        sender_lid: author.lid,
        from_me: source.is_from_me,
        timestamp: timestamp(info.timestamp),
        content,
        reply_to,
        mentions: mentions_of(message),
    })
}

/// Who wrote a message: as WhatsApp names them, with their phone number
/// and LID when known.
struct Author {
    jid: Jid,
    pn: Option<Jid>,
    lid: Option<Jid>,
}

/// The account wrote it (its phone or another device): named by its
/// number when known, else its LID, else as the message names it.
fn own_author(own: &Own, named: &whatsapp_rust::Jid) -> Result<Author, Skipped> {
    let pn = own.pn.as_ref().and_then(from_wa_jid);
    let lid = own.lid.as_ref().and_then(from_wa_jid);
    let jid = pn
        .clone()
        .or_else(|| lid.clone())
        .or_else(|| from_wa_jid(named))
        .ok_or(Skipped::Malformed)?;
    Ok(Author { jid, pn, lid })
}

/// A contact wrote it: named as the message names them, with the other
/// form when the message or the client's mappings know it.
fn contact_author(
    info: &MessageInfo,
    from: &whatsapp_rust::Jid,
    alternates: &Alternates,
) -> Result<Author, Skipped> {
    let alt = info
        .source
        .sender_alt
        .as_ref()
        .map(|j| j.to_non_ad())
        .filter(is_person)
        .or_else(|| alternates.get(&from.to_string()).cloned());
    let (pn, lid) = pn_and_lid(from, alt.as_ref());
    let jid = from_wa_jid(from).ok_or(Skipped::Malformed)?;
    Ok(Author { jid, pn, lid })
}

/// A one-to-one message's chat (the person, by phone number when known)
/// and author.
fn one_to_one_chat(
    info: &MessageInfo,
    chat: &whatsapp_rust::Jid,
    own: &Own,
    alternates: &Alternates,
) -> Result<(Jid, Author), Skipped> {
    let source = &info.source;
    let (chat, author) = if source.is_from_me {
        // Written by the account: the chat is the person it went to.
        let chat_pn = match chat.server {
            Server::Pn => Some(chat.clone()),
            _ => info
                .peer_recipient_pn
                .as_ref()
                .map(|j| j.to_non_ad())
                .or_else(|| alternates.get(&chat.to_string()).cloned()),
        };
        let chat = from_wa_jid(chat_pn.as_ref().unwrap_or(chat)).ok_or(Skipped::Malformed)?;
        (chat, own_author(own, &source.sender.to_non_ad())?)
    } else {
        let from = source.sender.to_non_ad();
        if !is_person(&from) {
            return Err(Skipped::NotOneToOne);
        }
        let author = contact_author(info, &from, alternates)?;
        (
            author.pn.clone().unwrap_or_else(|| author.jid.clone()),
            author,
        )
    };
    if !matches!(chat.kind(), JidKind::User | JidKind::Lid) {
        return Err(Skipped::NotOneToOne);
    }
    Ok((chat, author))
}

/// A group message's author: the member who wrote it (as WhatsApp names
/// them, LID or number), or the account.
fn group_author(info: &MessageInfo, own: &Own, alternates: &Alternates) -> Result<Author, Skipped> {
    let from = info.source.sender.to_non_ad();
    if info.source.is_from_me || own.is_me(&from) {
        own_author(own, &from)
    } else if is_person(&from) {
        contact_author(info, &from, alternates)
    } else {
        Err(Skipped::Malformed)
    }
}

// ---------------------------------------------------------------- statuses

/// The JID a receipt names its chat (or, in a group, its participant) by,
/// when it needs looking up (a LID whose phone number the event does not
/// carry).
pub(crate) fn receipt_chat_to_learn(receipt: &Receipt) -> Option<whatsapp_rust::Jid> {
    let chat = receipt.source.chat.to_non_ad();
    if chat.server == Server::Group {
        let participant = receipt.source.sender.to_non_ad();
        return (participant.server == Server::Lid && receipt.source.sender_alt.is_none())
            .then_some(participant);
    }
    (chat.server == Server::Lid).then_some(chat)
}

/// A contact's receipt as a status change of the messages it names:
/// delivered, read or played; in a group, the receipt of the participant
/// its `participant` attribute names (the gateway makes the message's
/// status of its participants' receipts). `None` for receipts of other
/// kinds (retries, our own devices' read-self, …), or from the account
/// itself (those are about messages it received, not sent).
pub(crate) fn receipt_status(
    receipt: &Receipt,
    own: &Own,
    alternates: &Alternates,
) -> Option<StatusUpdate> {
    let status = match receipt.r#type {
        ReceiptType::Delivered => MessageStatus::Delivered,
        ReceiptType::Read => MessageStatus::Read,
        ReceiptType::Played => MessageStatus::Played,
        _ => return None,
    };
    let chat = receipt.source.chat.to_non_ad();
    let sender = receipt.source.sender.to_non_ad();
    if own.is_me(&sender) {
        return None;
    }
    let alt = receipt.source.sender_alt.as_ref();
    let (chat, participant) = if chat.server == Server::Group {
        // Without a participant the receipt names nobody to count.
        if !is_person(&sender) {
            return None;
        }
        let alt = alt
            .map(|j| j.to_non_ad())
            .or_else(|| alternates.get(&sender.to_string()).cloned());
        let (pn, lid) = pn_and_lid(&sender, alt.as_ref());
        let participant = Recipient {
            jid: from_wa_jid(&sender)?,
            pn,
            lid,
        };
        (from_wa_jid(&chat)?, Some(participant))
    } else {
        if !is_person(&chat) || own.is_me(&chat) {
            return None;
        }
        (person_by_phone(&chat, alt, alternates)?, None)
    };
    let ids: Vec<MessageId> = receipt
        .message_ids
        .iter()
        .filter_map(|id| MessageId::parse(id).ok())
        .collect();
    if ids.is_empty() {
        return None;
    }
    Some(StatusUpdate {
        ids,
        chat,
        participant,
        status,
        at: timestamp(receipt.timestamp),
        error_code: None,
    })
}

/// A person by phone number when known, else as named.
pub(crate) fn person_by_phone(
    jid: &whatsapp_rust::Jid,
    alt: Option<&whatsapp_rust::Jid>,
    alternates: &Alternates,
) -> Option<Jid> {
    let alt = alt
        .map(|j| j.to_non_ad())
        .filter(|j| j.server == Server::Pn)
        .or_else(|| alternates.get(&jid.to_string()).cloned());
    let (pn, _) = pn_and_lid(jid, alt.as_ref());
    pn.or_else(|| from_wa_jid(jid))
}

/// The server's ack of a message this account sent (to a person or a
/// group): `Sent`, or `Failed` with the nack code. `None` for acks of
/// other stanzas (receipts, notifications, …), of own-device traffic, or
/// without a chat.
pub(crate) fn ack_status(
    ack: &ServerAck,
    own: &Own,
    alternates: &Alternates,
    now: OffsetDateTime,
) -> Option<StatusUpdate> {
    if ack.class.as_deref() != Some("message") {
        return None;
    }
    let chat = ack.from.as_ref()?.to_non_ad();
    let chat = if chat.server == Server::Group {
        from_wa_jid(&chat)?
    } else {
        if !is_person(&chat) || own.is_me(&chat) {
            return None;
        }
        person_by_phone(&chat, None, alternates)?
    };
    let id = MessageId::parse(&ack.id).ok()?;
    let (status, error_code) = match ack.error.as_deref() {
        None => (MessageStatus::Sent, None),
        Some(code) => (
            MessageStatus::Failed,
            Some(code.trim().parse().unwrap_or(0)),
        ),
    };
    Some(StatusUpdate {
        ids: vec![id],
        chat,
        participant: None,
        status,
        at: ack.timestamp.map(timestamp).unwrap_or(now),
        error_code,
    })
}

/// The chat of an ack, when it needs looking up.
pub(crate) fn ack_chat_to_learn(ack: &ServerAck) -> Option<whatsapp_rust::Jid> {
    let chat = ack.from.as_ref()?.to_non_ad();
    (chat.server == Server::Lid).then_some(chat)
}

#[cfg(test)]
mod tests {
    use whatsapp_rust::types::message::MessageSource;

    use super::*;

    fn wa_jid(s: &str) -> whatsapp_rust::Jid {
        s.parse().unwrap()
    }

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn own() -> Own {
        Own {
            pn: Some(wa_jid("15550001111@s.whatsapp.net")),
            lid: Some(wa_jid("100000000000001@lid")),
        }
    }

    fn info(source: MessageSource) -> MessageInfo {
        MessageInfo {
            id: "3EB0AAAA".into(),
            source,
            timestamp: whatsapp_rust::chrono::DateTime::from_timestamp(1_704_067_200, 0).unwrap(),
            ..Default::default()
        }
    }

    fn from_contact() -> MessageSource {
        MessageSource {
            chat: wa_jid("123456789012345@lid"),
            sender: wa_jid("123456789012345:0@lid"),
            sender_alt: Some(wa_jid("14155550123@s.whatsapp.net")),
            addressing_mode: None,
            ..Default::default()
        }
    }

    fn text(s: &str) -> wa::Message {
        wa::Message {
            conversation: Some(s.into()),
            ..Default::default()
        }
    }

    #[test]
    fn mentions_ride_in_the_context_both_ways() {
        let alice = Jid::parse("14155550123@s.whatsapp.net").unwrap();
        let lid = Jid::parse("123456789012345@lid").unwrap();
        let plain = text_message("hi @14155550123", None);
        assert_eq!(with_mentions(plain.clone(), &[]), plain);
        let m = with_mentions(plain, &[alice.clone(), lid.clone()]);
        assert!(m.conversation.is_none());
        let ext = m.extended_text_message.as_option().unwrap();
        assert_eq!(ext.text.as_deref(), Some("hi @14155550123"));
        assert_eq!(mentions_of(&m), vec![alice.clone(), lid]);
        // A reply keeps its quote and gains the mentions.
        let id = MessageId::parse("3EB0AA").unwrap();
        let reply = with_mentions(text_message("x", Some(&id)), std::slice::from_ref(&alice));
        let context = reply
            .extended_text_message
            .as_option()
            .and_then(|e| e.context_info.as_option())
            .unwrap();
        assert_eq!(context.stanza_id.as_deref(), Some("3EB0AA"));
        assert_eq!(mentions_of(&reply), vec![alice]);
    }

    #[test]
    fn text_from_a_contact_known_by_both_forms() {
        let m = inbound_message(
            &text("hi"),
            &info(from_contact()),
            &own(),
            &Alternates::new(),
        )
        .unwrap();
        assert_eq!(m.id.as_str(), "3EB0AAAA");
        assert_eq!(m.chat, jid("14155550123@s.whatsapp.net"), "by phone number");
        assert_eq!(m.sender, jid("123456789012345@lid"), "as addressed");
        assert_eq!(m.sender_pn, Some(jid("14155550123@s.whatsapp.net")));
        assert_eq!(m.sender_lid, Some(jid("123456789012345@lid")));
        assert!(!m.from_me);
        assert_eq!(m.timestamp.unix_timestamp(), 1_704_067_200);
        assert_eq!(m.content, InboundContent::Text("hi".into()));
        assert_eq!(m.reply_to, None);
        assert!(!format!("{m:?}").contains("hi\""), "no text in Debug");
    }

    #[test]
    fn the_lid_is_looked_up_when_the_stanza_has_none() {
        let source = MessageSource {
            chat: wa_jid("14155550123@s.whatsapp.net"),
            sender: wa_jid("14155550123:3@s.whatsapp.net"),
            ..Default::default()
        };
        let info = info(source);
        let wanted = identities_to_learn(&info);
        assert_eq!(wanted, vec![wa_jid("14155550123@s.whatsapp.net")]);
        let none = inbound_message(&text("x"), &info, &own(), &Alternates::new()).unwrap();
        assert_eq!(none.sender_lid, None);
        assert_eq!(none.chat, jid("14155550123@s.whatsapp.net"));
        let known = Alternates::from([(
            "14155550123@s.whatsapp.net".to_owned(),
            wa_jid("123456789012345@lid"),
        )]);
        let m = inbound_message(&text("x"), &info, &own(), &known).unwrap();
        assert_eq!(m.sender, jid("14155550123@s.whatsapp.net"));
        assert_eq!(m.sender_lid, Some(jid("123456789012345@lid")));
    }

    #[test]
    fn own_messages_from_the_phone_go_to_the_recipients_chat() {
        let source = MessageSource {
            chat: wa_jid("123456789012345@lid"),
            sender: wa_jid("100000000000001:0@lid"),
            is_from_me: true,
            recipient: Some(wa_jid("123456789012345@lid")),
            ..Default::default()
        };
        let mut info = info(source);
        assert_eq!(
            identities_to_learn(&info),
            vec![wa_jid("123456789012345@lid")]
        );
        info.peer_recipient_pn = Some(wa_jid("14155550123@s.whatsapp.net"));
        assert!(identities_to_learn(&info).is_empty());
        let m = inbound_message(&text("from my phone"), &info, &own(), &Alternates::new()).unwrap();
        assert!(m.from_me);
        assert_eq!(m.chat, jid("14155550123@s.whatsapp.net"));
        assert_eq!(m.sender, jid("15550001111@s.whatsapp.net"));
        assert_eq!(m.sender_pn, Some(jid("15550001111@s.whatsapp.net")));
        assert_eq!(m.sender_lid, Some(jid("100000000000001@lid")));
    }

    #[test]
    fn group_messages_name_the_group_and_the_member() {
        // A member known by LID, its number beside it.
        let group = MessageSource {
            chat: wa_jid("120363025246125486@g.us"),
            sender: wa_jid("123456789012345@lid"),
            sender_alt: Some(wa_jid("14155550123@s.whatsapp.net")),
            is_group: true,
            ..Default::default()
        };
        let m = inbound_message(&text("x"), &info(group), &own(), &Alternates::new()).unwrap();
        assert_eq!(m.chat.to_string(), "120363025246125486@g.us");
        assert_eq!(m.sender.to_string(), "123456789012345@lid");
        assert_eq!(
            m.sender_pn.map(|j| j.to_string()).as_deref(),
            Some("14155550123@s.whatsapp.net")
        );
        assert_eq!(
            m.sender_lid.map(|j| j.to_string()).as_deref(),
            Some("123456789012345@lid")
        );
        // Known by LID alone: no number, unless the client learned it.
        let lid_only = MessageSource {
            chat: wa_jid("120363025246125486@g.us"),
            sender: wa_jid("111222333444555@lid"),
            is_group: true,
            ..Default::default()
        };
        let m = inbound_message(
            &text("x"),
            &info(lid_only.clone()),
            &own(),
            &Alternates::new(),
        )
        .unwrap();
        assert_eq!(m.sender_pn, None);
        let mut learned = Alternates::new();
        learned.insert(
            "111222333444555@lid".into(),
            wa_jid("14155550777@s.whatsapp.net"),
        );
        let m = inbound_message(&text("x"), &info(lid_only), &own(), &learned).unwrap();
        assert_eq!(
            m.sender_pn.map(|j| j.to_string()).as_deref(),
            Some("14155550777@s.whatsapp.net")
        );
    }

    #[test]
    fn broadcasts_and_protocol_messages_are_skipped() {
        let status = MessageSource {
            chat: wa_jid("status@broadcast"),
            sender: wa_jid("14155550123@s.whatsapp.net"),
            ..Default::default()
        };
        assert_eq!(
            inbound_message(&text("x"), &info(status), &own(), &Alternates::new()),
            Err(Skipped::NotOneToOne)
        );
        let protocol = wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage::default()),
            ..Default::default()
        };
        assert_eq!(
            inbound_message(&protocol, &info(from_contact()), &own(), &Alternates::new()),
            Err(Skipped::Unsupported)
        );
        let mut bad_id = info(from_contact());
        bad_id.id = "not an id".into();
        assert_eq!(
            inbound_message(&text("x"), &bad_id, &own(), &Alternates::new()),
            Err(Skipped::Malformed)
        );
    }

    #[test]
    fn replies_reactions_and_wrappers() {
        let reply = wa::Message {
            ephemeral_message: MessageField::some(wa::message::FutureProofMessage {
                message: MessageField::some(text_message(
                    "yes",
                    Some(&MessageId::parse("3EB0QQ").unwrap()),
                )),
            }),
            ..Default::default()
        };
        let m = inbound_message(&reply, &info(from_contact()), &own(), &Alternates::new()).unwrap();
        assert_eq!(m.content, InboundContent::Text("yes".into()));
        assert_eq!(m.reply_to.map(|r| r.to_string()).as_deref(), Some("3EB0QQ"));

        let reaction = wa::Message {
            reaction_message: MessageField::some(wa::message::ReactionMessage {
                key: MessageField::some(reaction_key(
                    &jid("14155550123@s.whatsapp.net"),
                    &MessageId::parse("3EB0MINE").unwrap(),
                    None,
                )),
                text: Some("👍".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m =
            inbound_message(&reaction, &info(from_contact()), &own(), &Alternates::new()).unwrap();
        assert_eq!(
            m.content,
            InboundContent::Reaction {
                target: MessageId::parse("3EB0MINE").unwrap(),
                emoji: "👍".into()
            }
        );
    }

    #[test]
    fn a_group_reaction_names_the_author_of_a_member_s_message() {
        let group = jid("120363000000000001@g.us");
        let target = MessageId::parse("3EB0THEIRS").unwrap();
        let ann = jid("100000000000123@lid");
        let theirs = reaction_key(&group, &target, Some(&ann));
        assert_eq!(
            (theirs.from_me, theirs.participant.as_deref()),
            (Some(false), Some("100000000000123@lid"))
        );
        assert_eq!(
            theirs.remote_jid.as_deref(),
            Some("120363000000000001@g.us")
        );
        let mine = reaction_key(&group, &target, None);
        assert_eq!((mine.from_me, mine.participant), (Some(true), None));
        // One to one: the chat is the author, no participant.
        let chat = jid("14155550123@s.whatsapp.net");
        let one = reaction_key(&chat, &target, Some(&chat));
        assert_eq!((one.from_me, one.participant), (Some(false), None));
    }

    #[test]
    fn outgoing_text_and_replies() {
        let plain = text_message("hello", None);
        assert_eq!(plain.conversation.as_deref(), Some("hello"));
        assert!(plain.extended_text_message.is_unset());
        let id = MessageId::parse("3EB0QUOTED").unwrap();
        let reply = text_message("hello", Some(&id));
        let ext = reply.extended_text_message.as_option().unwrap();
        assert_eq!(ext.text.as_deref(), Some("hello"));
        assert_eq!(
            ext.context_info.as_option().unwrap().stanza_id.as_deref(),
            Some("3EB0QUOTED")
        );
    }

    #[test]
    fn outgoing_media_and_incoming_media_round_trip() {
        let media = OutgoingMedia {
            kind: MessageType::Audio,
            mimetype: "audio/ogg; codecs=opus".into(),
            filename: None,
            caption: None,
            voice_note: true,
            data: b"opus".to_vec(),
        };
        let handle = MediaHandle {
            kind: MessageType::Audio,
            direct_path: "/v/t62.7117-24/abc.enc?ccb=11".into(),
            media_key: vec![7; 32],
            file_enc_sha256: vec![8; 32],
            file_sha256: vec![9; 32],
            file_length: 4,
        };
        let wire = wa::Message {
            audio_message: MessageField::some(wa::message::AudioMessage {
                direct_path: Some(handle.direct_path.clone()),
                media_key: Some(handle.media_key.clone()),
                file_enc_sha256: Some(handle.file_enc_sha256.clone()),
                file_sha256: Some(handle.file_sha256.clone()),
                file_length: Some(4),
                mimetype: Some(media.mimetype.clone()),
                ptt: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = inbound_message(&wire, &info(from_contact()), &own(), &Alternates::new()).unwrap();
        let InboundContent::Media {
            kind,
            info,
            caption,
            voice_note,
            media: media_ref,
        } = m.content
        else {
            panic!("media");
        };
        assert_eq!(kind, MessageType::Audio);
        assert!(voice_note);
        assert_eq!(caption, None);
        assert_eq!(info.size, 4);
        assert_eq!(info.sha256, "09".repeat(32));
        assert_eq!(info.mimetype, "audio/ogg; codecs=opus");
        assert_eq!(MediaHandle::decode(&media_ref), Some(handle.clone()));
        assert!(handle.download_params().is_some());
        assert_eq!(
            format!("{media_ref:?}"),
            format!("MediaRef({} bytes)", media_ref.0.len())
        );
        assert!(!format!("{handle:?}").contains("7, 7"), "no key in Debug");
    }

    #[test]
    fn media_refs_refuse_what_they_did_not_write() {
        let handle = MediaHandle {
            kind: MessageType::Document,
            direct_path: "/v/x".into(),
            media_key: vec![1; 32],
            file_enc_sha256: vec![2; 32],
            file_sha256: vec![3; 32],
            file_length: 10,
        };
        let good = handle.encode();
        assert_eq!(good.0[0], 1, "versioned");
        assert_eq!(MediaHandle::decode(&good), Some(handle.clone()));
        for bad in [
            vec![],
            vec![2],
            vec![1, 9],
            good.0[..good.0.len() - 1].to_vec(),
            [good.0.clone(), vec![0]].concat(),
        ] {
            assert_eq!(MediaHandle::decode(&MediaRef(bad.clone())), None, "{bad:?}");
        }
        let incomplete = MediaHandle {
            media_key: vec![],
            ..handle
        };
        assert!(incomplete.download_params().is_none());
    }

    #[test]
    fn a_direct_path_that_could_leave_the_media_host_is_never_downloaded() {
        let handle = |path: &str| MediaHandle {
            kind: MessageType::Image,
            direct_path: path.into(),
            media_key: vec![1; 32],
            file_enc_sha256: vec![2; 32],
            file_sha256: vec![3; 32],
            file_length: 10,
        };
        for good in [
            "/v/t62.7118-24/11734917_2025_n.enc?ccb=11-4&oh=01_Q5Aa&oe=68A1B2C3&_nc_sid=5e03e0",
            "/mms/image/AbC-_=",
        ] {
            assert!(handle(good).download_params().is_some(), "{good}");
        }
        for bad in [
            ".evil.example/x",
            "@evil.example/x",
            ":8443/x",
            "evil.example/x",
            "//evil.example/x",
            "/\\evil.example/x",
            "/x#frag",
            "/x y",
            "/v/../../admin",
            "/v/x\r\nHost: evil",
            "",
        ] {
            assert!(!is_direct_path(bad), "{bad:?}");
            assert!(handle(bad).download_params().is_none(), "{bad:?}");
        }
        // Not even stored from an incoming message.
        let wire = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                direct_path: Some(".evil.example/x".into()),
                media_key: Some(vec![7; 32]),
                file_enc_sha256: Some(vec![8; 32]),
                file_sha256: Some(vec![9; 32]),
                file_length: Some(4),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = inbound_message(&wire, &info(from_contact()), &own(), &Alternates::new()).unwrap();
        let InboundContent::Media { media, .. } = m.content else {
            panic!("media");
        };
        let stored = MediaHandle::decode(&media).unwrap();
        assert_eq!(stored.direct_path, "");
        assert!(stored.download_params().is_none());
    }

    fn receipt(kind: ReceiptType, chat: &str, sender: &str) -> Receipt {
        Receipt::builder()
            .source(MessageSource {
                chat: wa_jid(chat),
                sender: wa_jid(sender),
                ..Default::default()
            })
            .message_ids(vec!["3EB0A".into(), "3EB0B".into()])
            .timestamp(whatsapp_rust::chrono::DateTime::from_timestamp(1_704_067_300, 0).unwrap())
            .r#type(kind)
            .offline(false)
            .build()
    }

    #[test]
    fn receipts_become_statuses_of_sent_messages() {
        let r = receipt(
            ReceiptType::Delivered,
            "14155550123@s.whatsapp.net",
            "14155550123@s.whatsapp.net",
        );
        let s = receipt_status(&r, &own(), &Alternates::new()).unwrap();
        assert_eq!(s.status, MessageStatus::Delivered);
        assert_eq!(s.chat, jid("14155550123@s.whatsapp.net"));
        assert_eq!(s.ids.len(), 2);
        assert_eq!(s.at.unix_timestamp(), 1_704_067_300);
        for (kind, status) in [
            (ReceiptType::Read, MessageStatus::Read),
            (ReceiptType::Played, MessageStatus::Played),
        ] {
            let r = receipt(
                kind,
                "14155550123@s.whatsapp.net",
                "14155550123@s.whatsapp.net",
            );
            assert_eq!(
                receipt_status(&r, &own(), &Alternates::new())
                    .unwrap()
                    .status,
                status
            );
        }
        // A LID chat is named by its phone number when known.
        let r = receipt(
            ReceiptType::Read,
            "123456789012345:2@lid",
            "123456789012345:2@lid",
        );
        assert_eq!(
            receipt_chat_to_learn(&r),
            Some(wa_jid("123456789012345@lid"))
        );
        let known = Alternates::from([(
            "123456789012345@lid".to_owned(),
            wa_jid("14155550123@s.whatsapp.net"),
        )]);
        assert_eq!(
            receipt_status(&r, &own(), &known).unwrap().chat,
            jid("14155550123@s.whatsapp.net")
        );
        assert_eq!(
            receipt_status(&r, &own(), &Alternates::new()).unwrap().chat,
            jid("123456789012345@lid")
        );
        // Not about messages we sent, or not a status.
        for r in [
            receipt(
                ReceiptType::ReadSelf,
                "14155550123@s.whatsapp.net",
                "15550001111:2@s.whatsapp.net",
            ),
            receipt(
                ReceiptType::Delivered,
                "15550001111@s.whatsapp.net",
                "15550001111:0@s.whatsapp.net",
            ),
            receipt(
                ReceiptType::Retry,
                "14155550123@s.whatsapp.net",
                "14155550123@s.whatsapp.net",
            ),
            // A group's receipt naming no participant, or the account's
            // own device.
            receipt(
                ReceiptType::Delivered,
                "120363025246125486@g.us",
                "120363025246125486@g.us",
            ),
            receipt(
                ReceiptType::Read,
                "120363025246125486@g.us",
                "100000000000001:3@lid",
            ),
        ] {
            assert_eq!(
                receipt_status(&r, &own(), &Alternates::new()),
                None,
                "{:?}",
                r.r#type
            );
        }
    }

    #[test]
    fn a_group_receipt_is_its_participant_s() {
        // By number: the participant attribute, device dropped.
        let r = receipt(
            ReceiptType::Read,
            "120363025246125486@g.us",
            "14155550123:4@s.whatsapp.net",
        );
        assert_eq!(receipt_chat_to_learn(&r), None);
        let s = receipt_status(&r, &own(), &Alternates::new()).unwrap();
        assert_eq!(s.chat, jid("120363025246125486@g.us"));
        assert_eq!(s.status, MessageStatus::Read);
        assert_eq!(s.ids.len(), 2);
        let p = s.participant.unwrap();
        assert_eq!(p.jid, jid("14155550123@s.whatsapp.net"));
        assert_eq!(p.pn, Some(jid("14155550123@s.whatsapp.net")));
        assert_eq!(p.lid, None);

        // By LID, with its number in `participant_pn`.
        let mut r = receipt(
            ReceiptType::Delivered,
            "120363025246125486@g.us",
            "123456789012345:1@lid",
        );
        r.source.sender_alt = Some(wa_jid("14155550123@s.whatsapp.net"));
        assert_eq!(receipt_chat_to_learn(&r), None);
        let p = receipt_status(&r, &own(), &Alternates::new())
            .unwrap()
            .participant
            .unwrap();
        assert_eq!(
            (p.jid, p.pn, p.lid),
            (
                jid("123456789012345@lid"),
                Some(jid("14155550123@s.whatsapp.net")),
                Some(jid("123456789012345@lid"))
            )
        );

        // By LID alone: looked up, or kept as its LID.
        r.source.sender_alt = None;
        assert_eq!(
            receipt_chat_to_learn(&r),
            Some(wa_jid("123456789012345@lid"))
        );
        let known = Alternates::from([(
            "123456789012345@lid".to_owned(),
            wa_jid("14155550123@s.whatsapp.net"),
        )]);
        let p = receipt_status(&r, &own(), &known)
            .unwrap()
            .participant
            .unwrap();
        assert_eq!(p.pn, Some(jid("14155550123@s.whatsapp.net")));
        let p = receipt_status(&r, &own(), &Alternates::new())
            .unwrap()
            .participant
            .unwrap();
        assert_eq!((p.pn, p.lid), (None, Some(jid("123456789012345@lid"))));

        // A one-to-one receipt names no participant.
        let r = receipt(
            ReceiptType::Read,
            "14155550123@s.whatsapp.net",
            "14155550123@s.whatsapp.net",
        );
        assert_eq!(
            receipt_status(&r, &own(), &Alternates::new())
                .unwrap()
                .participant,
            None
        );
    }

    fn ack(class: Option<&str>, from: Option<&str>, error: Option<&str>) -> ServerAck {
        ServerAck::builder()
            .id("3EB0ACK".into())
            .maybe_class(class.map(str::to_owned))
            .maybe_from(from.map(wa_jid))
            .maybe_timestamp(whatsapp_rust::chrono::DateTime::from_timestamp(
                1_704_067_400,
                0,
            ))
            .maybe_error(error.map(str::to_owned))
            .build()
    }

    #[test]
    fn server_acks_are_sent_or_failed() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let sent = ack_status(
            &ack(Some("message"), Some("14155550123@s.whatsapp.net"), None),
            &own(),
            &Alternates::new(),
            now,
        )
        .unwrap();
        assert_eq!(sent.status, MessageStatus::Sent);
        assert_eq!(sent.ids, vec![MessageId::parse("3EB0ACK").unwrap()]);
        assert_eq!(sent.at.unix_timestamp(), 1_704_067_400);
        assert_eq!(sent.error_code, None);
        let failed = ack_status(
            &ack(
                Some("message"),
                Some("14155550123@s.whatsapp.net"),
                Some("479"),
            ),
            &own(),
            &Alternates::new(),
            now,
        )
        .unwrap();
        assert_eq!(failed.status, MessageStatus::Failed);
        assert_eq!(failed.error_code, Some(479));
        // A group message's ack: the group is the chat.
        let group = ack_status(
            &ack(Some("message"), Some("120363025246125486@g.us"), None),
            &own(),
            &Alternates::new(),
            now,
        )
        .unwrap();
        assert_eq!(
            (group.status, group.chat, group.participant),
            (MessageStatus::Sent, jid("120363025246125486@g.us"), None)
        );
        for a in [
            ack(Some("receipt"), Some("14155550123@s.whatsapp.net"), None),
            ack(None, Some("14155550123@s.whatsapp.net"), None),
            ack(Some("message"), None, None),
            ack(Some("message"), Some("15550001111@s.whatsapp.net"), None),
        ] {
            assert_eq!(
                ack_status(&a, &own(), &Alternates::new(), now),
                None,
                "{a:?}"
            );
        }
    }

    #[test]
    fn send_errors_never_leak_the_library() {
        assert_eq!(
            send_error(&SendError::NotLoggedIn),
            WhatsAppError::NotConnected
        );
        assert_eq!(
            send_error(&SendError::Client(ClientError::NotConnected)),
            WhatsAppError::NotConnected
        );
        assert_eq!(
            send_error(&SendError::Iq(whatsapp_rust::IqError::Timeout)),
            WhatsAppError::Timeout
        );
        assert!(matches!(
            send_error(&SendError::InvalidRequest("bad".into())),
            WhatsAppError::InvalidTarget(_)
        ));
        let wrapped = whatsapp_rust::anyhow::Error::new(ClientError::NotLoggedIn).context("x");
        assert_eq!(
            send_error(&SendError::Internal(wrapped)),
            WhatsAppError::NotConnected
        );
        assert!(matches!(
            send_error(&SendError::Internal(whatsapp_rust::anyhow::anyhow!(
                "encrypt"
            ))),
            WhatsAppError::Internal(_)
        ));
    }

    #[test]
    fn media_errors() {
        let status = |s: u16| {
            whatsapp_rust::anyhow::Error::new(whatsapp_rust::http::HttpStatusError { status: s })
                .context("download")
        };
        assert_eq!(
            media_error(true, &status(404)),
            WhatsAppError::NotFound(None)
        );
        assert_eq!(
            media_error(true, &status(410)),
            WhatsAppError::NotFound(None)
        );
        assert!(matches!(
            media_error(false, &status(404)),
            WhatsAppError::Internal(_)
        ));
        for refused in [400, 413, 415] {
            assert_eq!(
                media_error(false, &status(refused)),
                WhatsAppError::Refused(Refusal::Media(refused))
            );
        }
        assert!(matches!(
            media_error(true, &status(503)),
            WhatsAppError::Unavailable(_)
        ));
        assert!(matches!(
            media_error(true, &whatsapp_rust::anyhow::anyhow!("Connection refused")),
            WhatsAppError::Unavailable(_)
        ));
        assert!(matches!(
            media_error(true, &whatsapp_rust::anyhow::anyhow!("bad mac")),
            WhatsAppError::Internal(_)
        ));
    }
}
