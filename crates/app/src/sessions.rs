//! Session lifecycle use cases.

use wagate_domain::{
    Capability, OrgId, Page, PageRequest, PairingCode, PhoneNumber, Principal, QrCode, Session,
    SessionId, SessionName, SessionStatus,
};

use crate::lifecycle::Lifecycle;
use crate::{AppError, Gateway};

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
            pending: None,
            revision: 0,
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

    /// Whether `id` names a session of `org`. The HTTP layer asks before it
    /// looks up which gateway serves a session's live calls, so another
    /// organization's sessions are never located (nor claimed) for a caller.
    ///
    /// # Errors
    ///
    /// `Unavailable`/`Internal` when the store fails.
    pub async fn has_session(&self, org: &OrgId, id: &SessionId) -> Result<bool, AppError> {
        Ok(self.deps.sessions.get(org, id).await?.is_some())
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
        let (org, id) = (p.org.clone(), *id);
        self.lifecycle
            .run(
                &p.org,
                id,
                move |l| async move { l.delete(&org, &id).await },
            )
            .await
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
        // With several gateways, the client runs where the session is held.
        self.owned_session(&p.org, id).await?;
        self.hold_here(id).await?;
        let (org, id) = (p.org.clone(), *id);
        self.lifecycle
            .run(
                &p.org,
                id,
                move |l| async move { l.connect(&org, &id).await },
            )
            .await
    }

    /// Closes a session's connection and keeps its link. Idempotent.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `manage`; `NotFound`; adapter failures;
    /// `Timeout` when it takes longer than the request deadline (it still
    /// finishes, and the session's status then says so).
    pub async fn disconnect_session(
        &self,
        p: &Principal,
        id: &SessionId,
    ) -> Result<Session, AppError> {
        Self::require(p, Capability::Manage)?;
        let (org, id) = (p.org.clone(), *id);
        self.lifecycle
            .run(
                &p.org,
                id,
                move |l| async move { l.disconnect(&org, &id).await },
            )
            .await
    }

    /// Unlinks a session from WhatsApp and erases its device keys; connecting
    /// again re-pairs. A session never linked stays `new`.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `manage`; `NotFound`; `Internal`/`Timeout` when the
    /// keys cannot be erased in time (a logout once accepted is finished,
    /// after a restart if need be).
    pub async fn logout_session(&self, p: &Principal, id: &SessionId) -> Result<Session, AppError> {
        Self::require(p, Capability::Manage)?;
        let (org, id) = (p.org.clone(), *id);
        self.lifecycle
            .run(
                &p.org,
                id,
                move |l| async move { l.logout(&org, &id).await },
            )
            .await
    }

    /// The QR code to link a pairing session.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `manage`; `NotFound`; `Conflict` when the session
    /// is not pairing.
    pub async fn session_qr(&self, p: &Principal, id: &SessionId) -> Result<QrCode, AppError> {
        Self::require(p, Capability::Manage)?;
        let (org, id) = (p.org.clone(), *id);
        self.lifecycle
            .run(&p.org, id, move |l| async move {
                let s = pairing_session(&l, &org, &id).await?;
                l.adapter(s.status, l.whatsapp.qr(&id)).await
            })
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
        let (org, id, phone) = (p.org.clone(), *id, phone.clone());
        self.lifecycle
            .run(&p.org, id, move |l| async move {
                let s = pairing_session(&l, &org, &id).await?;
                l.adapter(s.status, l.whatsapp.pairing_code(&id, &phone))
                    .await
            })
            .await
    }
}

/// The session, if it is the caller's and pairing.
async fn pairing_session(l: &Lifecycle, org: &OrgId, id: &SessionId) -> Result<Session, AppError> {
    {
        let s = l
            .sessions
            .get(org, id)
            .await?
            .ok_or_else(AppError::session_not_found)?;
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
