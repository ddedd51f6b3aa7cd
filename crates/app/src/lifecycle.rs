//! What the WhatsApp adapter observes, written to the session registry.

use std::sync::Arc;

use async_trait::async_trait;
use wagate_domain::{Clock, SessionStatus};
use wagate_store::{SessionPatch, SessionRegistry};
use wagate_whatsapp_port::{SessionEvent, SessionEventKind, SessionEventSink};

/// The [`SessionEventSink`] the adapter is built with: each event becomes
/// one atomic patch of the session's record.
#[derive(Debug)]
pub struct SessionEventRecorder {
    sessions: Arc<dyn SessionRegistry>,
    clock: Arc<dyn Clock>,
}

impl SessionEventRecorder {
    /// A recorder writing to `sessions`.
    pub fn new(sessions: Arc<dyn SessionRegistry>, clock: Arc<dyn Clock>) -> Self {
        Self { sessions, clock }
    }

    /// The change an event makes to the session's record.
    pub fn patch_for(kind: &SessionEventKind, now: time::OffsetDateTime) -> SessionPatch {
        match kind {
            SessionEventKind::Pairing => SessionPatch::status(SessionStatus::Pairing),
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

#[async_trait]
impl SessionEventSink for SessionEventRecorder {
    async fn publish(&self, event: SessionEvent) {
        let now = self.clock.now();
        let patch = Self::patch_for(&event.kind, now);
        match self
            .sessions
            .record_observed(&event.session, &patch, now)
            .await
        {
            Ok(Some(s)) => {
                tracing::info!(session = %s.id, status = %s.status, "session status changed")
            }
            // Deleted meanwhile: nothing to record.
            Ok(None) => {
                tracing::debug!(session = %event.session, "event for a session that no longer exists")
            }
            Err(e) => {
                tracing::error!(session = %event.session, error = %e, "could not record session event")
            }
        }
    }
}
