//! How a session's lifecycle calls run: one at a time per session, each as
//! one task that owns its lock, its WhatsApp call and its status write.
//!
//! A request waits for the answer at most `request_timeout` (504 after
//! that), but the task goes on to the end: the status a later read shows is
//! always what the call did, never what it was doing when the caller gave
//! up. What the user asked for (keep connected or not, a logout or delete to
//! finish) is written *before* WhatsApp is asked, so a gateway killed in the
//! middle finishes the request on its next start (see
//! [`Gateway::resume_sessions`](crate::Gateway::resume_sessions)).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use wagate_domain::{
    Clock, LastError, OrgId, PendingLifecycle, Session, SessionErrorCode, SessionId, SessionStatus,
};
use wagate_store::{SessionPatch, SessionRegistry, StoreError};
use wagate_whatsapp_port::WhatsAppPort;

use crate::AppError;
use crate::gateway::{AdapterContext, adapter_error};

/// How many times a write decided on a read is decided again after an
/// adapter event changed the session in between.
const DECIDE_ATTEMPTS: usize = 8;

/// The first pause before writing again a status the adapter already made
/// true (doubling, up to 5 s, within the task's adapter deadline).
const WRITE_RETRY_FIRST: Duration = Duration::from_millis(50);

type LockMap = Mutex<HashMap<SessionId, Weak<tokio::sync::Mutex<()>>>>;

/// The lifecycle side of the gateway. Cheap to clone (a task owns a clone).
#[derive(Clone)]
pub(crate) struct Lifecycle {
    pub(crate) sessions: Arc<dyn SessionRegistry>,
    pub(crate) whatsapp: Arc<dyn WhatsAppPort>,
    clock: Arc<dyn Clock>,
    /// One lock per session with a lifecycle call in flight.
    locks: Arc<LockMap>,
    /// The runtime the gateway was built on (the process's). Lifecycle
    /// tasks run there, not on an HTTP worker's: an adapter spawns a
    /// session's long-lived client from `connect`, and a worker's runtime is
    /// torn down at shutdown before the adapter can close its clients.
    runtime: Option<tokio::runtime::Handle>,
    /// How long a caller waits for a lifecycle call's answer.
    answer_within: Duration,
    /// How long a task lets one WhatsApp lifecycle call run before it gives
    /// up on it (longer than `answer_within`: closing a client cleanly may
    /// take the adapter's stop timeout, and the task is not hurried by a
    /// caller who stopped waiting).
    adapter_deadline: Duration,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("answer_within", &self.answer_within)
            .field("adapter_deadline", &self.adapter_deadline)
            .finish_non_exhaustive()
    }
}

fn ctx(status: SessionStatus) -> AdapterContext {
    AdapterContext {
        status,
        not_found: None,
    }
}

/// The status of a session that is not connected: `disconnected` when
/// linked, else `logged_out` if it ever was linked, else `new`.
pub(crate) fn offline_status(s: &Session) -> SessionStatus {
    if s.jid.is_some() {
        SessionStatus::Disconnected
    } else if s.last_connected_at.is_some() || s.status == SessionStatus::LoggedOut {
        SessionStatus::LoggedOut
    } else {
        SessionStatus::New
    }
}

impl Lifecycle {
    pub(crate) fn new(
        sessions: Arc<dyn SessionRegistry>,
        whatsapp: Arc<dyn WhatsAppPort>,
        clock: Arc<dyn Clock>,
        answer_within: Duration,
    ) -> Self {
        Self {
            sessions,
            whatsapp,
            clock,
            locks: Arc::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            answer_within,
            adapter_deadline: (answer_within * 4).max(Duration::from_secs(60)),
        }
    }

    /// The lifecycle lock of session `id`.
    async fn lock(&self, id: &SessionId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            locks.retain(|_, weak| weak.strong_count() > 0);
            match locks.get(id).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(*id, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }

    /// Runs `op` on session `id` of `org` under its lock, as one task on
    /// the gateway's runtime. The caller gets its result, or `Timeout`
    /// after `answer_within` while the task goes on to the end.
    ///
    /// The session must be `org`'s before the lock is even asked for:
    /// another organization's call is `NotFound` at once, never queued
    /// behind (nor able to delay) the owner's calls.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        org: &OrgId,
        id: SessionId,
        op: F,
    ) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(Lifecycle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, AppError>> + Send + 'static,
    {
        self.get(org, &id).await?;
        self.spawn(id, Some(self.answer_within), op).await
    }

    /// [`Lifecycle::run`], waiting for the task however long it takes.
    pub(crate) async fn run_to_end<T, F, Fut>(&self, id: SessionId, op: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(Lifecycle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, AppError>> + Send + 'static,
    {
        self.spawn(id, None, op).await
    }

    async fn spawn<T, F, Fut>(
        &self,
        id: SessionId,
        wait: Option<Duration>,
        op: F,
    ) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(Lifecycle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, AppError>> + Send + 'static,
    {
        let this = self.clone();
        let task = async move {
            let _guard = this.lock(&id).await;
            op(this).await
        };
        let runtime = self
            .runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        let Some(runtime) = runtime else {
            // Not on a tokio runtime: nothing can outlive the caller.
            return task.await;
        };
        let handle = runtime.spawn(task);
        let joined = match wait {
            Some(wait) => match tokio::time::timeout(wait, handle).await {
                Ok(joined) => joined,
                Err(_) => {
                    tracing::warn!(session = %id, "lifecycle call still running after the request deadline; it finishes in the background");
                    return Err(AppError::Timeout);
                }
            },
            None => handle.await,
        };
        joined.unwrap_or_else(|e| Err(AppError::Internal(format!("lifecycle task failed: {e}"))))
    }

    /// A WhatsApp lifecycle call within the task's deadline.
    pub(crate) async fn adapter<T>(
        &self,
        status: SessionStatus,
        call: impl Future<Output = Result<T, wagate_whatsapp_port::WhatsAppError>>,
    ) -> Result<T, AppError> {
        match tokio::time::timeout(self.adapter_deadline, call).await {
            Ok(result) => result.map_err(|e| adapter_error(e, ctx(status))),
            Err(_) => Err(AppError::Timeout),
        }
    }

    async fn get(&self, org: &OrgId, id: &SessionId) -> Result<Session, AppError> {
        self.sessions
            .get(org, id)
            .await?
            .ok_or_else(AppError::session_not_found)
    }

    async fn update(
        &self,
        org: &OrgId,
        id: &SessionId,
        patch: &SessionPatch,
    ) -> Result<Session, AppError> {
        self.sessions
            .update(org, id, patch, self.clock.now())
            .await?
            .ok_or_else(AppError::session_not_found)
    }

    /// Writes what `decide` makes of the session as it is *now*: read,
    /// decide, write only if nobody (an adapter event) wrote in between,
    /// else decide again. `decide` returning `None` writes nothing.
    pub(crate) async fn decide(
        &self,
        org: &OrgId,
        id: &SessionId,
        decide: impl Fn(&Session) -> Option<SessionPatch>,
    ) -> Result<Session, AppError> {
        for _ in 0..DECIDE_ATTEMPTS {
            let current = self.get(org, id).await?;
            let Some(patch) = decide(&current) else {
                return Ok(current);
            };
            let patch = SessionPatch {
                expected_revision: Some(current.revision),
                ..patch
            };
            match self
                .sessions
                .update(org, id, &patch, self.clock.now())
                .await
            {
                Ok(Some(s)) => return Ok(s),
                Ok(None) => return Err(AppError::session_not_found()),
                Err(StoreError::Changed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(format!(
            "session {id} kept changing while its status was being written"
        )))
    }

    /// Connect (see [`crate::Gateway::connect_session`]); the caller holds
    /// the lock.
    pub(crate) async fn connect(&self, org: &OrgId, id: &SessionId) -> Result<Session, AppError> {
        tracing::info!(session = %id, op = "connect", "lifecycle call started");
        let s = self.get(org, id).await?;
        if let Some(pending) = s.pending {
            // Only a gateway stopped half-way leaves one; its next start
            // finishes it.
            return Err(AppError::Conflict {
                message: match pending {
                    PendingLifecycle::Logout => "a logout of this session is still being finished",
                    PendingLifecycle::Delete => "this session is being deleted",
                },
                status: Some(s.status),
            });
        }
        // `connecting`, unless an event made it pairing or connected since
        // we read it (decided on the row itself: events are not under our lock).
        let patch = SessionPatch {
            keep_connected: Some(true),
            status_unless: vec![SessionStatus::Connected, SessionStatus::Pairing],
            ..SessionPatch::status(SessionStatus::Connecting)
        };
        let s = self.update(org, id, &patch).await?;
        tracing::info!(session = %id, op = "connect", "lifecycle request recorded");
        let started = self
            .adapter(s.status, self.whatsapp.connect(id, s.jid.clone()))
            .await;
        if let Err(e) = started {
            tracing::error!(session = %id, error = %e, "could not start connecting the session");
            // Nothing is trying to connect it: say so, and why, instead of
            // leaving it `connecting` forever.
            let error = LastError {
                code: SessionErrorCode::ConnectFailure,
                message: "the gateway could not start connecting this session; try again".into(),
            };
            self.decide(org, id, |now| {
                (now.status == SessionStatus::Connecting).then(|| SessionPatch {
                    keep_connected: Some(false),
                    last_error: Some(Some(error.clone())),
                    ..SessionPatch::status(offline_status(now))
                })
            })
            .await?;
            return Err(e);
        }
        // The adapter has recorded what it observed (QR shown, connected…).
        self.get(org, id).await
    }

    /// Disconnect; the caller holds the lock.
    pub(crate) async fn disconnect(
        &self,
        org: &OrgId,
        id: &SessionId,
    ) -> Result<Session, AppError> {
        tracing::info!(session = %id, op = "disconnect", "lifecycle call started");
        let s = self.get(org, id).await?;
        // The user's wish first: a gateway killed from here on does not
        // reconnect it on its next start.
        let patch = SessionPatch {
            keep_connected: Some(false),
            ..SessionPatch::default()
        };
        self.update(org, id, &patch).await?;
        tracing::info!(session = %id, op = "disconnect", "lifecycle request recorded");
        self.adapter(s.status, self.whatsapp.disconnect(id)).await?;
        // Decided on the row as it is now: a link made while we waited counts.
        self.decide(org, id, |now| {
            Some(SessionPatch::status(offline_status(now)))
        })
        .await
    }

    /// Logout; the caller holds the lock.
    pub(crate) async fn logout(&self, org: &OrgId, id: &SessionId) -> Result<Session, AppError> {
        tracing::info!(session = %id, op = "logout", "lifecycle call started");
        let s = self.get(org, id).await?;
        let patch = SessionPatch {
            keep_connected: Some(false),
            pending: Some(Some(PendingLifecycle::Logout)),
            ..SessionPatch::default()
        };
        self.update(org, id, &patch).await?;
        tracing::info!(session = %id, op = "logout", "lifecycle request recorded");
        self.finish_logout(&s).await
    }

    /// The part of a logout after the request is recorded (also run by a
    /// restart that finds it pending).
    async fn finish_logout(&self, s: &Session) -> Result<Session, AppError> {
        self.adapter(s.status, self.whatsapp.logout(&s.id)).await?;
        // The link is gone now: the row must say so. A database that fails
        // this write is tried again (the task is not hurried by the caller,
        // who gets 504 meanwhile); until it succeeds, `pending` keeps sends
        // refused and the next start finishes the logout.
        let ever_linked = s.jid.is_some()
            || s.last_connected_at.is_some()
            || s.status == SessionStatus::LoggedOut;
        let patch = SessionPatch {
            jid: Some(None),
            push_name: Some(None),
            keep_connected: Some(false),
            last_error: Some(None),
            pending: Some(None),
            ..SessionPatch::status(if ever_linked {
                SessionStatus::LoggedOut
            } else {
                SessionStatus::New
            })
        };
        tracing::info!(session = %s.id, "session logged out");
        let mut pause = WRITE_RETRY_FIRST;
        let give_up = tokio::time::Instant::now() + self.adapter_deadline;
        loop {
            match self.update(&s.org, &s.id, &patch).await {
                Err(AppError::Unavailable(e)) if tokio::time::Instant::now() + pause < give_up => {
                    tracing::warn!(session = %s.id, error = %e, ?pause, "could not record a logout WhatsApp already made; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                done => return done,
            }
        }
    }

    /// Delete; the caller holds the lock.
    pub(crate) async fn delete(&self, org: &OrgId, id: &SessionId) -> Result<(), AppError> {
        tracing::info!(session = %id, op = "delete", "lifecycle call started");
        let s = self.get(org, id).await?;
        let patch = SessionPatch {
            keep_connected: Some(false),
            pending: Some(Some(PendingLifecycle::Delete)),
            ..SessionPatch::default()
        };
        self.update(org, id, &patch).await?;
        tracing::info!(session = %id, op = "delete", "lifecycle request recorded");
        self.finish_delete(&s).await
    }

    async fn finish_delete(&self, s: &Session) -> Result<(), AppError> {
        self.adapter(s.status, self.whatsapp.remove(&s.id)).await?;
        self.sessions.delete(&s.org, &s.id).await?;
        tracing::info!(session = %s.id, org = %s.org, "session deleted");
        Ok(())
    }

    /// What a starting gateway does with one session `to_resume` returned,
    /// decided on the row as it is now (under the lock, so a request made
    /// since the start is never undone): finish a pending logout or delete,
    /// connect one to keep connected, leave the rest. Whether it connected.
    pub(crate) async fn resume(&self, org: &OrgId, id: &SessionId) -> Result<bool, AppError> {
        let s = match self.sessions.get(org, id).await? {
            Some(s) => s,
            None => return Ok(false), // deleted since
        };
        match s.pending {
            Some(PendingLifecycle::Delete) => {
                self.finish_delete(&s).await?;
                return Ok(false);
            }
            Some(PendingLifecycle::Logout) => {
                self.finish_logout(&s).await?;
                return Ok(false);
            }
            None => {}
        }
        if !s.keep_connected {
            return Ok(false); // disconnected or logged out since
        }
        let started = self
            .adapter(s.status, self.whatsapp.connect(id, s.jid.clone()))
            .await;
        if let Err(e) = started {
            tracing::warn!(session = %id, error = %e, "could not resume session");
            let error = LastError {
                code: SessionErrorCode::Internal,
                message: "could not reconnect after a restart".into(),
            };
            self.decide(org, id, |now| {
                (now.status == SessionStatus::Connecting).then(|| SessionPatch {
                    last_error: Some(Some(error.clone())),
                    ..SessionPatch::status(offline_status(now))
                })
            })
            .await?;
            return Ok(false);
        }
        Ok(true)
    }
}
