//! Session lifecycle use cases.

use wagate_domain::{
    Capability, Page, PageRequest, PairingCode, PhoneNumber, Principal, QrCode, Session, SessionId,
    SessionName, SessionStatus,
};
use wagate_store::SessionPatch;

use crate::gateway::AdapterContext;
use crate::{AppError, Gateway};

fn lifecycle(status: SessionStatus) -> AdapterContext {
    AdapterContext {
        status,
        not_found: None,
    }
}

/// The status of a session that is not connected: `disconnected` when
/// linked, else `logged_out` if it ever was linked, else `new`.
fn offline_status(s: &Session) -> SessionStatus {
    if s.jid.is_some() {
        SessionStatus::Disconnected
    } else if s.last_connected_at.is_some() || s.status == SessionStatus::LoggedOut {
        SessionStatus::LoggedOut
    } else {
        SessionStatus::New
    }
}

impl Gateway {
    /// Creates a session (`new`, not linked) in the caller's organization.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `manage`; `Unavailable`/`Internal` from the store.
    pub async fn create_session(
        &self,
        p: &Principal,
        name: Option<SessionName>,
    ) -> Result<Session, AppError> {
        Self::require(p, Capability::Manage)?;
        let now = self.now();
        let session = Session {
            id: SessionId::from_ulid(self.new_ulid()),
            org: p.org.clone(),
            name,
            status: SessionStatus::New,
            jid: None,
            push_name: None,
            keep_connected: false,
            created_at: now,
            updated_at: now,
            last_connected_at: None,
            last_error: None,
        };
        self.deps.sessions.insert(&session).await?;
        tracing::info!(session = %session.id, org = %session.org, "session created");
        Ok(session)
    }

    /// One page of the caller's organization's sessions, newest first.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; store errors.
    pub async fn list_sessions(
        &self,
        p: &Principal,
        page: PageRequest,
    ) -> Result<Page<Session>, AppError> {
        Self::require(p, Capability::Read)?;
        Ok(self.deps.sessions.list(&p.org, page).await?)
    }

    /// One of the caller's sessions.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `NotFound` when it is not the caller's.
    pub async fn get_session(&self, p: &Principal, id: &SessionId) -> Result<Session, AppError> {
        Self::require(p, Capability::Read)?;
        self.owned_session(&p.org, id).await
    }

    /// Deletes a session: unlinks it from WhatsApp if linked, erases its
    /// device keys, then removes the record.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `manage`; `NotFound`; `Internal`/`Timeout` when
    /// the keys cannot be erased (the record is then kept, so nothing is
    /// orphaned).
    pub async fn delete_session(&self, p: &Principal, id: &SessionId) -> Result<(), AppError> {
        Self::require(p, Capability::Manage)?;
        let _guard = self.lock_session(id).await;
        let s = self.owned_session(&p.org, id).await?;
        self.lifecycle_call(lifecycle(s.status), {
            let id = *id;
            move |wa| async move { wa.remove(&id).await }
        })
        .await?;
        self.deps.sessions.delete(&p.org, id).await?;
        tracing::info!(session = %id, org = %p.org, "session deleted");
        Ok(())
    }

    /// Connects a session, and keeps it connected (across restarts) until
    /// disconnect or logout. Starts pairing when it is not linked.
    /// Idempotent.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `manage`; `NotFound`; `Internal`/`Timeout` when
    /// the adapter cannot set the connection up.
    pub async fn connect_session(
        &self,
        p: &Principal,
        id: &SessionId,
    ) -> Result<Session, AppError> {
        Self::require(p, Capability::Manage)?;
        let _guard = self.lock_session(id).await;
        // Ownership first (404 for another organization).
        self.owned_session(&p.org, id).await?;
        // `connecting`, unless an event made it pairing or connected since
        // we read it (decided on the row itself: events are not under our lock).
        let patch = SessionPatch {
            keep_connected: Some(true),
            status_unless: vec![SessionStatus::Connected, SessionStatus::Pairing],
            ..SessionPatch::status(SessionStatus::Connecting)
        };
        let s = self
            .deps
            .sessions
            .update(&p.org, id, &patch, self.now())
            .await?
            .ok_or_else(AppError::session_not_found)?;
        self.lifecycle_call(lifecycle(s.status), {
            let (id, jid) = (*id, s.jid.clone());
            move |wa| async move { wa.connect(&id, jid).await }
        })
        .await?;
        // The adapter has recorded what it observed (QR shown, connected…).
        self.owned_session(&p.org, id).await
    }

    /// Closes a session's connection and keeps its link.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `manage`; `NotFound`; adapter failures.
    pub async fn disconnect_session(
        &self,
        p: &Principal,
        id: &SessionId,
    ) -> Result<Session, AppError> {
        Self::require(p, Capability::Manage)?;
        let _guard = self.lock_session(id).await;
        let s = self.owned_session(&p.org, id).await?;
        self.lifecycle_call(lifecycle(s.status), {
            let id = *id;
            move |wa| async move { wa.disconnect(&id).await }
        })
        .await?;
        // Read again: a link made while we waited counts.
        let s = self.owned_session(&p.org, id).await?;
        let patch = SessionPatch {
            keep_connected: Some(false),
            ..SessionPatch::status(offline_status(&s))
        };
        self.deps
            .sessions
            .update(&p.org, id, &patch, self.now())
            .await?
            .ok_or_else(AppError::session_not_found)
    }

    /// Unlinks a session from WhatsApp and erases its device keys; connecting
    /// again re-pairs. A session never linked stays `new`.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `manage`; `NotFound`; `Internal`/`Timeout` when the
    /// keys cannot be erased.
    pub async fn logout_session(&self, p: &Principal, id: &SessionId) -> Result<Session, AppError> {
        Self::require(p, Capability::Manage)?;
        let _guard = self.lock_session(id).await;
        let s = self.owned_session(&p.org, id).await?;
        self.lifecycle_call(lifecycle(s.status), {
            let id = *id;
            move |wa| async move { wa.logout(&id).await }
        })
        .await?;
        let ever_linked = s.jid.is_some()
            || s.last_connected_at.is_some()
            || s.status == SessionStatus::LoggedOut;
        let patch = SessionPatch {
            jid: Some(None),
            push_name: Some(None),
            keep_connected: Some(false),
            last_error: Some(None),
            ..SessionPatch::status(if ever_linked {
                SessionStatus::LoggedOut
            } else {
                SessionStatus::New
            })
        };
        tracing::info!(session = %id, "session logged out");
        self.deps
            .sessions
            .update(&p.org, id, &patch, self.now())
            .await?
            .ok_or_else(AppError::session_not_found)
    }

    /// The QR code to link a pairing session.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `manage`; `NotFound`; `Conflict` when the session
    /// is not pairing.
    pub async fn session_qr(&self, p: &Principal, id: &SessionId) -> Result<QrCode, AppError> {
        Self::require(p, Capability::Manage)?;
        let _guard = self.lock_session(id).await;
        let s = self.pairing_session(p, id).await?;
        self.whatsapp(lifecycle(s.status), self.deps.whatsapp.qr(id))
            .await
    }

    /// A code that links a pairing session when typed on `phone`.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `manage`; `NotFound`; `Conflict` when the session
    /// is not pairing; `Timeout`/`Unavailable` from WhatsApp.
    pub async fn session_pairing_code(
        &self,
        p: &Principal,
        id: &SessionId,
        phone: &PhoneNumber,
    ) -> Result<PairingCode, AppError> {
        Self::require(p, Capability::Manage)?;
        let _guard = self.lock_session(id).await;
        let s = self.pairing_session(p, id).await?;
        self.lifecycle_call(lifecycle(s.status), {
            let (id, phone) = (*id, phone.clone());
            move |wa| async move { wa.pairing_code(&id, &phone).await }
        })
        .await
    }

    async fn pairing_session(&self, p: &Principal, id: &SessionId) -> Result<Session, AppError> {
        let s = self.owned_session(&p.org, id).await?;
        if s.status == SessionStatus::Pairing {
            Ok(s)
        } else {
            Err(AppError::Conflict {
                message: "session is not pairing",
                status: Some(s.status),
            })
        }
    }
}
