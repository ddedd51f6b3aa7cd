//! What the WhatsApp adapter observes, written to the session registry.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wagate_domain::{Clock, EventData, SessionStatus};
use wagate_store::{SessionPatch, SessionRegistry};
use wagate_whatsapp_port::{SessionEvent, SessionEventKind, SessionEventSink};

/// The [`SessionEventSink`] the adapter is built with: each event becomes
/// one atomic patch of the session's record.
#[derive(Debug)]
pub struct SessionEventRecorder {
    sessions: Arc<dyn SessionRegistry>,
    clock: Arc<dyn Clock>,
    attempts: u32,
    first_retry: Duration,
}

impl SessionEventRecorder {
    /// A recorder writing to `sessions`.
    pub fn new(sessions: Arc<dyn SessionRegistry>, clock: Arc<dyn Clock>) -> Self {
        Self {
            sessions,
            clock,
            attempts: WRITE_ATTEMPTS,
            first_retry: FIRST_RETRY,
        }
    }

    /// Tries a failed write up to `attempts` times in all, pausing
    /// `first_retry` after the first failure and twice as long after each
    /// next one (at most 2 s). The default is 10 attempts from 50 ms.
    #[must_use]
    pub fn with_retries(mut self, attempts: u32, first_retry: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_retry = first_retry;
        self
    }

    /// The change an event makes to the session's record.
    pub fn patch_for(kind: &SessionEventKind, now: time::OffsetDateTime) -> SessionPatch {
        match kind {
            SessionEventKind::Pairing => SessionPatch::status(SessionStatus::Pairing),
            SessionEventKind::QrShown(qr) => SessionPatch {
                event: Some(EventData::SessionQr {
                    code: qr.code.clone(),
                    expires_at: qr.expires_at,
                }),
                ..SessionPatch::status(SessionStatus::Pairing)
            },
            SessionEventKind::Connecting => SessionPatch::status(SessionStatus::Connecting),
            SessionEventKind::Connected { jid, push_name } => SessionPatch {
                jid: Some(Some(jid.clone())),
                push_name: Some(push_name.clone()),
                last_connected_at: Some(now),
                last_error: Some(None),
                ..SessionPatch::status(SessionStatus::Connected)
            },
            // `disconnected` means linked and offline; a session lost while
            // still pairing is still trying: `connecting`, with the error.
            SessionEventKind::Disconnected { error } => SessionPatch {
                last_error: error.clone().map(Some),
                status_if_unlinked: Some(SessionStatus::Connecting),
                ..SessionPatch::status(SessionStatus::Disconnected)
            },
            SessionEventKind::LoggedOut { error } => SessionPatch {
                jid: Some(None),
                push_name: Some(None),
                keep_connected: Some(false),
                last_error: error.clone().map(Some),
                ..SessionPatch::status(SessionStatus::LoggedOut)
            },
        }
    }
}

/// How often a failed event write is tried again, and the first pause (it
/// doubles each time, capped at [`RETRY_CAP`]): about 10 s of database
/// trouble is ridden out before the event is given up.
const WRITE_ATTEMPTS: u32 = 10;
const FIRST_RETRY: Duration = Duration::from_millis(50);
const RETRY_CAP: Duration = Duration::from_secs(2);

#[async_trait]
impl SessionEventSink for SessionEventRecorder {
    /// Writes the event; a failed write is retried with backoff (bounded),
    /// because a lost `Connected` would leave the session `connecting` with
    /// its client online. The adapter awaits this, so what it does next
    /// waits for the write.
    async fn publish(&self, event: SessionEvent) {
        let mut pause = self.first_retry;
        for attempt in 1..=self.attempts {
            let now = self.clock.now();
            let patch = Self::patch_for(&event.kind, now);
            match self
                .sessions
                .record_observed(&event.session, &patch, now)
                .await
            {
                Ok(Some(s)) => {
                    tracing::info!(session = %s.id, status = %s.status, "session status changed");
                    return;
                }
                // Deleted meanwhile: nothing to record.
                Ok(None) => {
                    tracing::debug!(session = %event.session, "event for a session that no longer exists");
                    return;
                }
                Err(e) if attempt < self.attempts => {
                    tracing::warn!(session = %event.session, error = %e, attempt, "could not record session event; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_CAP);
                }
                Err(e) => {
                    tracing::error!(session = %event.session, error = %e, "could not record session event; giving it up (connect again to republish the session's state)");
                }
            }
        }
    }
}
