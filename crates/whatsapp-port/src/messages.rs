//! The messages that cross the port: what the gateway sends, what arrives.

use std::fmt;

use time::OffsetDateTime;
use wagate_domain::{
    Jid, MediaInfo, MessageId, MessageStatus, MessageType, Recipient, RichContent,
};

use crate::WhatsAppError;

/// A message to send to one person.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The id it is sent under, chosen (and stored) before the first try:
    /// sending again under the same id never makes a second message.
    pub id: MessageId,
    /// The person (phone number or LID JID).
    pub to: Jid,
    /// What it says or carries.
    pub content: OutgoingContent,
    /// The message it answers (quotes), if any.
    pub reply_to: Option<MessageId>,
    /// The people its text or caption @mentions.
    pub mentions: Vec<Jid>,
}

/// What an [`OutgoingMessage`] carries.
#[derive(Clone, PartialEq, Eq)]
pub enum OutgoingContent {
    /// Text.
    Text(String),
    /// A picture, video, audio or document, its bytes in hand.
    Media(OutgoingMedia),
    /// A location or contact cards.
    Rich(RichContent),
}

/// Media to upload and send.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMedia {
    /// Image, video, audio or document (never text).
    pub kind: MessageType,
    /// Its MIME type.
    pub mimetype: String,
    /// The file name (documents).
    pub filename: Option<String>,
    /// The caption (images, videos, documents).
    pub caption: Option<String>,
    /// Audio sent as a voice note (push-to-talk).
    pub voice_note: bool,
    /// The plain bytes; the adapter encrypts and uploads them.
    pub data: Vec<u8>,
}

// Message text and media are customers' conversations: never in a log line.
impl fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.content {
            OutgoingContent::Text(_) => MessageType::Text,
            OutgoingContent::Media(m) => m.kind,
            OutgoingContent::Rich(r) => r.kind(),
        };
        f.debug_struct("OutgoingMessage")
            .field("id", &self.id)
            .field("to", &self.to)
            .field("type", &kind)
            .field("reply_to", &self.reply_to)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for OutgoingContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutgoingContent::Text(_) => f.write_str("Text(..)"),
            OutgoingContent::Media(m) => m.fmt(f),
            OutgoingContent::Rich(r) => r.fmt(f),
        }
    }
}

impl fmt::Debug for OutgoingMedia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMedia")
            .field("kind", &self.kind)
            .field("mimetype", &self.mimetype)
            .field("bytes", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// A message that arrived for the account: from a contact, or sent by the
/// account itself from its phone or another device (`from_me`).
#[derive(Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// WhatsApp's id for it; with `chat` and `sender` it names the message.
    pub id: MessageId,
    /// The conversation: the other person, by phone number when known.
    pub chat: Jid,
    /// Who wrote it (the account's own JID when `from_me`).
    pub sender: Jid,
    /// The sender's phone-number JID, when known.
    pub sender_pn: Option<Jid>,
    /// The sender's LID, when known.
    pub sender_lid: Option<Jid>,
    /// Written by the account itself (its phone or another device).
    pub from_me: bool,
    /// When the sender sent it.
    pub timestamp: OffsetDateTime,
    /// What it carries.
    pub content: InboundContent,
    /// The message it answers, if any.
    pub reply_to: Option<MessageId>,
    /// The people it @mentions.
    pub mentions: Vec<Jid>,
}

/// How a poll vote names an option: SHA-256 of the option's text (what
/// WhatsApp encrypts into a vote).
pub fn option_hash(option: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(option.as_bytes()).into()
}

impl InboundMessage {
    /// The same message carrying `content` instead.
    #[must_use]
    pub fn with_content(mut self, content: InboundContent) -> Self {
        self.content = content;
        self
    }
}

/// What an [`InboundMessage`] carries.
#[derive(Clone, PartialEq, Eq)]
pub enum InboundContent {
    /// Text.
    Text(String),
    /// Media, not downloaded: `media` is what the adapter needs to fetch it
    /// later ([`crate::WhatsAppPort::download_media`]).
    Media {
        /// Image, video, audio or document.
        kind: MessageType,
        /// What is known of it.
        info: MediaInfo,
        /// The caption, if any.
        caption: Option<String>,
        /// A voice note.
        voice_note: bool,
        /// The adapter's handle to download it.
        media: MediaRef,
    },
    /// A reaction to an earlier message (`emoji` empty: removed).
    Reaction {
        /// The message reacted to.
        target: MessageId,
        /// The emoji, or empty when the reaction was taken back.
        emoji: String,
    },
    /// A location or contact cards.
    Rich(RichContent),
    /// The writer edited an earlier message of theirs: its new text (the
    /// caption, for media).
    Edit {
        /// The message edited (same chat and writer).
        target: MessageId,
        /// Its new text.
        text: String,
    },
    /// The writer deleted an earlier message of theirs for everyone.
    Revoke {
        /// The message deleted (same chat and writer).
        target: MessageId,
    },
    /// The writer voted on the poll `target` (of this chat, anyone's):
    /// their vote as it now stands, replacing any earlier one.
    PollVote {
        /// The poll message.
        target: MessageId,
        /// SHA-256 of each picked option's text, as WhatsApp carries a
        /// vote (opened with the poll's secret); empty: taken back.
        selected: Vec<[u8; 32]>,
    },
}

impl fmt::Debug for InboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.content {
            InboundContent::Text(_) => "text",
            InboundContent::Media { kind, .. } => kind.as_str(),
            InboundContent::Reaction { .. } => "reaction",
            InboundContent::Rich(r) => r.kind().as_str(),
            InboundContent::Edit { .. } => "edit",
            InboundContent::Revoke { .. } => "revoke",
            InboundContent::PollVote { .. } => "poll_vote",
        };
        f.debug_struct("InboundMessage")
            .field("id", &self.id)
            .field("chat", &self.chat)
            .field("sender", &self.sender)
            .field("from_me", &self.from_me)
            .field("type", &kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for InboundContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InboundContent::Text(_) => f.write_str("Text(..)"),
            InboundContent::Media { kind, info, .. } => f
                .debug_struct("Media")
                .field("kind", kind)
                .field("mimetype", &info.mimetype)
                .field("size", &info.size)
                .finish_non_exhaustive(),
            InboundContent::Reaction { target, .. } => f
                .debug_struct("Reaction")
                .field("target", target)
                .finish_non_exhaustive(),
            InboundContent::Rich(r) => r.fmt(f),
            InboundContent::Edit { target, .. } => f
                .debug_struct("Edit")
                .field("target", target)
                .finish_non_exhaustive(),
            InboundContent::Revoke { target } => {
                f.debug_struct("Revoke").field("target", target).finish()
            }
            InboundContent::PollVote { target, .. } => f
                .debug_struct("PollVote")
                .field("target", target)
                .finish_non_exhaustive(),
        }
    }
}

/// An adapter's opaque handle to download a message's media later (for the
/// live adapter: the direct path, media key and hashes, serialized). The
/// gateway stores it with the message and hands it back unchanged. It holds
/// the key that decrypts the media, so it never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaRef(pub Vec<u8>);

impl fmt::Debug for MediaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaRef({} bytes)", self.0.len())
    }
}

/// An outgoing message's status changed on WhatsApp's side: the server's
/// ack (`Sent`), or a receipt from the contact (`Delivered`, `Read`,
/// `Played`), or the server refused it (`Failed`, with its code).
///
/// In a group a receipt is one participant's (`participant`): the
/// gateway keeps each participant's receipts and moves the message itself
/// only once every participant it went to got that far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The messages it is about (a receipt may name several).
    pub ids: Vec<MessageId>,
    /// Their chat.
    pub chat: Jid,
    /// The group participant whose receipt this is; `None` for the
    /// server's ack and nack, and for a one-to-one chat's receipts.
    pub participant: Option<Recipient>,
    /// The new status.
    pub status: MessageStatus,
    /// When WhatsApp says it happened.
    pub at: OffsetDateTime,
    /// WhatsApp's error code when `status` is `Failed` (a nack).
    pub error_code: Option<u32>,
}

/// A [`crate::SessionEventSink`] could not record received messages; the
/// adapter must not acknowledge them, so WhatsApp delivers them again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("received messages were not recorded: {0}")]
pub struct NotRecorded(pub String);

/// One piece of a [`MediaDownload`], as its producer sends it.
#[derive(Debug)]
enum Piece {
    Bytes(Vec<u8>),
    End,
    Failed(WhatsAppError),
}

/// A received message's media as it downloads: its decrypted bytes in
/// chunks, in order ([`MediaDownload::next`]). Memory is bounded (a few
/// chunks in flight), and dropping it stops the download: a client that
/// goes away costs nothing more.
pub struct MediaDownload {
    rx: tokio::sync::mpsc::Receiver<Piece>,
    /// A piece already taken off the channel (to see that the download
    /// started), given out first.
    first: Option<Piece>,
    done: bool,
}

/// The producer's side of a [`MediaDownload`]. A download ends only by
/// [`MediaSender::finish`]: one whose every sender is dropped without it
/// reads as failed, never as complete.
#[derive(Debug, Clone)]
pub struct MediaSender {
    tx: tokio::sync::mpsc::Sender<Piece>,
}

/// Chunks a [`MediaDownload`] holds in flight, at most.
const MEDIA_CHUNKS_IN_FLIGHT: usize = 4;

impl fmt::Debug for MediaDownload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaDownload")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl MediaDownload {
    /// A download fed by the returned sender.
    pub fn channel() -> (MediaSender, MediaDownload) {
        let (tx, rx) = tokio::sync::mpsc::channel(MEDIA_CHUNKS_IN_FLIGHT);
        (
            MediaSender { tx },
            MediaDownload {
                rx,
                first: None,
                done: false,
            },
        )
    }

    /// Media already in hand, as one chunk.
    pub fn complete(bytes: Vec<u8>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        // Room for both: this cannot fail.
        let _ = tx.try_send(Piece::Bytes(bytes));
        let _ = tx.try_send(Piece::End);
        MediaDownload {
            rx,
            first: None,
            done: false,
        }
    }

    /// Waits until the download has produced something: `Ok` once it
    /// started (its first bytes, or its end), its error when it failed
    /// before any byte.
    ///
    /// # Errors
    ///
    /// The download's error.
    pub async fn started(mut self) -> Result<Self, WhatsAppError> {
        match self.rx.recv().await {
            Some(Piece::Failed(e)) => Err(e),
            None => Err(cut_short()),
            Some(piece) => {
                self.first = Some(piece);
                Ok(self)
            }
        }
    }

    /// The next chunk; `None` once the media is complete.
    ///
    /// # Errors
    ///
    /// Why the download failed (then nothing more comes).
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, WhatsAppError>> {
        if self.done {
            return None;
        }
        let piece = match self.first.take() {
            Some(piece) => Some(piece),
            None => self.rx.recv().await,
        };
        match piece {
            Some(Piece::Bytes(b)) => Some(Ok(b)),
            Some(Piece::End) => {
                self.done = true;
                None
            }
            Some(Piece::Failed(e)) => {
                self.done = true;
                Some(Err(e))
            }
            None => {
                self.done = true;
                Some(Err(cut_short()))
            }
        }
    }

    /// All of it (for callers that need the bytes in hand; tests).
    ///
    /// # Errors
    ///
    /// Why the download failed.
    pub async fn collect(mut self) -> Result<Vec<u8>, WhatsAppError> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all)
    }
}

fn cut_short() -> WhatsAppError {
    WhatsAppError::Internal("the media download stopped before its end".into())
}

impl MediaSender {
    /// Hands the next chunk over, waiting for room; `false` when the
    /// reader is gone (stop downloading).
    pub async fn send(&self, chunk: Vec<u8>) -> bool {
        self.tx.send(Piece::Bytes(chunk)).await.is_ok()
    }

    /// [`MediaSender::send`] from a thread outside the runtime (a
    /// blocking download), waiting at most `patience` for room: `false`
    /// when the reader is gone or took nothing for that long.
    pub fn send_blocking(
        &self,
        runtime: &tokio::runtime::Handle,
        chunk: Vec<u8>,
        patience: std::time::Duration,
    ) -> bool {
        runtime
            .block_on(tokio::time::timeout(
                patience,
                self.tx.send(Piece::Bytes(chunk)),
            ))
            .is_ok_and(|sent| sent.is_ok())
    }

    /// The media is complete.
    pub async fn finish(self) {
        let _ = self.tx.send(Piece::End).await;
    }

    /// The download failed.
    pub async fn fail(self, error: WhatsAppError) {
        let _ = self.tx.send(Piece::Failed(error)).await;
    }

    /// Whether the reader is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod download_tests {
    use super::*;

    #[tokio::test]
    async fn a_download_is_complete_only_when_finished() {
        let (tx, rx) = MediaDownload::channel();
        let producer = tokio::spawn(async move {
            assert!(tx.send(vec![1, 2]).await);
            assert!(tx.send(vec![3]).await);
            tx.finish().await;
        });
        assert_eq!(
            rx.started().await.unwrap().collect().await.unwrap(),
            vec![1, 2, 3]
        );
        producer.await.unwrap();

        // Dropped half-way: a failure, not a short file.
        let (tx, rx) = MediaDownload::channel();
        assert!(tx.send(vec![1]).await);
        drop(tx);
        assert!(rx.collect().await.is_err());

        // Failed before any byte: `started` says why.
        let (tx, rx) = MediaDownload::channel();
        tx.fail(WhatsAppError::NotFound(None)).await;
        assert_eq!(
            rx.started().await.unwrap_err(),
            WhatsAppError::NotFound(None)
        );

        // The reader gone: the producer is told to stop.
        let (tx, rx) = MediaDownload::channel();
        drop(rx);
        assert!(tx.is_closed() && !tx.send(vec![1]).await);

        assert_eq!(
            MediaDownload::complete(vec![7]).collect().await.unwrap(),
            vec![7]
        );
    }
}
