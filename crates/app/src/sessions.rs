//! Session lifecycle use cases.

use wagate_domain::{
    Capability, Page, PageRequest, PairingCode, PhoneNumber, Principal, QrCode, Session, SessionId,
    SessionName, SessionStatus,
};
use wagate_store::SessionPatch;
use wagate_whatsapp_port::WhatsAppError;

use crate::{AppError, Gateway};

fn not_pairing(status: SessionStatus) -> AppError {
    AppError::Conflict {
        message: "session is not pairing",
        status: Some(status),
    }
}

/// Maps an adapter error of a lifecycle call (not a contact call).
fn lifecycle_error(e: WhatsAppError, status: SessionStatus) -> AppError {
    match e {
        WhatsAppError::NotPairing => not_pairing(status),
        WhatsAppError::NotConnected => AppError::NotConnected { status },
        WhatsAppError::Timeout => AppError::Timeout,
        WhatsAppError::Unavailable(m) => AppError::Unavailable(m),
        WhatsAppError::InvalidTarget(m) | WhatsAppError::Internal(m) => AppError::Internal(m),
        WhatsAppError::NotFound(_) => AppError::Internal("adapter answered not found".into()),
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
    /// `Forbidden` without `manage`; `NotFound`; `Internal` when the keys
    /// cannot be erased (the record is then kept, so nothing is orphaned).
    pub async fn delete_session(&self, p: &Principal, id: &SessionId) -> Result<(), AppError> {
        Self::require(p, Capability::Manage)?;
        let s = self.owned_session(&p.org, id).await?;
        self.deps
            .whatsapp
            .remove(id)
            .await
            .map_err(|e| lifecycle_error(e, s.status))?;
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
    /// `Forbidden` without `manage`; `NotFound`; `Internal` when the adapter
    /// cannot set the connection up.
    pub async fn connect_session(
        &self,
        p: &Principal,
        id: &SessionId,
    ) -> Result<Session, AppError> {
        Self::require(p, Capability::Manage)?;
        let s = self.owned_session(&p.org, id).await?;
        let mut patch = SessionPatch {
            keep_connected: Some(true),
            ..SessionPatch::default()
        };
        // Already online or showing a QR: only make sure the adapter agrees.
        if !matches!(s.status, SessionStatus::Connected | SessionStatus::Pairing) {
            patch.status = Some(SessionStatus::Connecting);
        }
        self.deps
            .sessions
            .update(&p.org, id, &patch, self.now())
            .await?;
        self.deps
            .whatsapp
            .connect(id, s.jid.clone())
            .await
            .map_err(|e| lifecycle_error(e, s.status))?;
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
        let s = self.owned_session(&p.org, id).await?;
        self.deps
            .whatsapp
            .disconnect(id)
            .await
            .map_err(|e| lifecycle_error(e, s.status))?;
        let status = match (&s.jid, s.status) {
            (Some(_), _) => SessionStatus::Disconnected,
            (None, SessionStatus::LoggedOut) => SessionStatus::LoggedOut,
            (None, _) => SessionStatus::New,
        };
        let patch = SessionPatch {
            keep_connected: Some(false),
            ..SessionPatch::status(status)
        };
        self.deps
            .sessions
            .update(&p.org, id, &patch, self.now())
            .await?
            .ok_or_else(AppError::session_not_found)
    }

    /// Unlinks a session from WhatsApp and erases its device keys; it stays,
    /// `logged_out`, and connecting again re-pairs.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `manage`; `NotFound`; `Internal` when the keys
    /// cannot be erased.
    pub async fn logout_session(&self, p: &Principal, id: &SessionId) -> Result<Session, AppError> {
        Self::require(p, Capability::Manage)?;
        let s = self.owned_session(&p.org, id).await?;
        self.deps
            .whatsapp
            .logout(id)
            .await
            .map_err(|e| lifecycle_error(e, s.status))?;
        let patch = SessionPatch {
            jid: Some(None),
            push_name: Some(None),
            keep_connected: Some(false),
            last_error: Some(None),
            ..SessionPatch::status(SessionStatus::LoggedOut)
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
        let s = self.owned_session(&p.org, id).await?;
        if s.status != SessionStatus::Pairing {
            return Err(not_pairing(s.status));
        }
        self.deps
            .whatsapp
            .qr(id)
            .await
            .map_err(|e| lifecycle_error(e, s.status))
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
        let s = self.owned_session(&p.org, id).await?;
        if s.status != SessionStatus::Pairing {
            return Err(not_pairing(s.status));
        }
        let call = self.deps.whatsapp.pairing_code(id, phone);
        match tokio::time::timeout(self.deps.request_timeout, call).await {
            Ok(result) => result.map_err(|e| lifecycle_error(e, s.status)),
            Err(_) => Err(AppError::Timeout),
        }
    }
}
