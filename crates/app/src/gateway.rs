use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use time::OffsetDateTime;
use wagate_domain::{
    Capability, Clock, DomainError, LastError, OrgId, Principal, Session, SessionErrorCode,
    SessionId, SessionStatus,
};
use wagate_store::{ApiKeyCache, ApiKeyStore, Entropy, SessionPatch, SessionRegistry};
use wagate_whatsapp_port::{WhatsAppError, WhatsAppPort};

use crate::AppError;

/// What a [`Gateway`] is built from: the ports, and the few settings the use
/// cases need.
#[derive(Debug, Clone)]
pub struct GatewayDeps {
    /// Sessions.
    pub sessions: Arc<dyn SessionRegistry>,
    /// API keys.
    pub api_keys: Arc<dyn ApiKeyStore>,
    /// WhatsApp.
    pub whatsapp: Arc<dyn WhatsAppPort>,
    /// Told when a key is revoked, so it stops working at once.
    pub api_key_cache: Arc<dyn ApiKeyCache>,
    /// Randomness for new API keys.
    pub entropy: Arc<dyn Entropy>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Deadline of a WhatsApp call (`whatsapp.request_timeout_secs`).
    pub request_timeout: Duration,
}

/// All of wagate's use cases. Cheap to share (`Arc<Gateway>`); every
/// method is safe to call concurrently.
pub struct Gateway {
    pub(crate) deps: GatewayDeps,
    /// Monotonic, so ids made in the same millisecond still sort in order.
    ids: Mutex<ulid::Generator>,
    /// One lock per session with a lifecycle call in flight: connect,
    /// disconnect, logout, delete and pairing of one session run one at a
    /// time (their status decisions read then write), while other sessions
    /// never wait.
    lifecycle: Mutex<HashMap<SessionId, Weak<tokio::sync::Mutex<()>>>>,
    /// The runtime the gateway was built on (the process's). Lifecycle calls
    /// run there, not on the caller's: an adapter spawns a session's
    /// long-lived client from `connect`, and an HTTP worker's runtime is
    /// torn down at shutdown before the adapter can close its clients.
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("deps", &self.deps)
            .finish_non_exhaustive()
    }
}

/// Which answer a "not found" from WhatsApp becomes, per use case.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdapterContext {
    /// The session's status, for `NotConnected` and `Conflict` details.
    pub status: SessionStatus,
    /// The message of a 404 (`None`: WhatsApp has no business saying so).
    pub not_found: Option<&'static str>,
}

impl Gateway {
    /// A gateway over `deps`.
    pub fn new(deps: GatewayDeps) -> Self {
        Self {
            deps,
            ids: Mutex::new(ulid::Generator::new()),
            lifecycle: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.deps.clock.now()
    }

    pub(crate) fn new_ulid(&self) -> ulid::Ulid {
        let now = std::time::SystemTime::UNIX_EPOCH
            + Duration::from_millis(
                u64::try_from(self.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
            );
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Overflow needs 2^80 ids in one millisecond; fall back to a plain one.
        ids.generate_from_datetime(now)
            .unwrap_or_else(|_| ulid::Ulid::from_datetime(now))
    }

    /// Fails with `Forbidden` unless the caller holds `cap`. Always the first
    /// step of a use case.
    pub(crate) fn require(principal: &Principal, cap: Capability) -> Result<(), AppError> {
        if principal.can(cap) {
            Ok(())
        } else {
            Err(AppError::Forbidden { required: cap })
        }
    }

    /// The caller's session `id`, or "not found".
    pub(crate) async fn owned_session(
        &self,
        org: &OrgId,
        id: &SessionId,
    ) -> Result<Session, AppError> {
        self.deps
            .sessions
            .get(org, id)
            .await?
            .ok_or_else(AppError::session_not_found)
    }

    /// The lifecycle lock of session `id` (see [`Gateway::lifecycle`]).
    pub(crate) async fn lock_session(&self, id: &SessionId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .lifecycle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    /// Runs a lifecycle call of the WhatsApp port on the gateway's own
    /// runtime (see [`Gateway::runtime`]), within the request deadline.
    pub(crate) async fn lifecycle_call<T, F, Fut>(
        &self,
        ctx: AdapterContext,
        call: F,
    ) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn WhatsAppPort>) -> Fut,
        Fut: Future<Output = Result<T, WhatsAppError>> + Send + 'static,
    {
        let fut = call(self.deps.whatsapp.clone());
        match &self.runtime {
            Some(rt) => {
                let task = rt.spawn(fut);
                self.whatsapp(ctx, async move {
                    task.await.map_err(|e| {
                        WhatsAppError::Internal(format!("lifecycle task failed: {e}"))
                    })?
                })
                .await
            }
            None => self.whatsapp(ctx, fut).await,
        }
    }

    /// Runs a WhatsApp call within the request deadline, mapping its error.
    pub(crate) async fn whatsapp<T>(
        &self,
        ctx: AdapterContext,
        call: impl Future<Output = Result<T, WhatsAppError>>,
    ) -> Result<T, AppError> {
        match tokio::time::timeout(self.deps.request_timeout, call).await {
            Ok(result) => result.map_err(|e| adapter_error(e, ctx)),
            Err(_) => Err(AppError::Timeout),
        }
    }

    /// Whether the database answers.
    pub async fn is_ready(&self) -> bool {
        self.deps.sessions.ping().await.is_ok()
    }

    /// How many sessions are in each status, every status listed (for
    /// metrics).
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn sessions_by_status(&self) -> Result<Vec<(SessionStatus, u64)>, AppError> {
        let counts = self.deps.sessions.count_by_status().await?;
        Ok(SessionStatus::ALL
            .into_iter()
            .map(|s| {
                (
                    s,
                    counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n),
                )
            })
            .collect())
    }

    /// First half of resuming after a restart, to run before serving:
    /// every session that should be connected is marked `connecting` (its
    /// status from before the restart is stale) and returned for
    /// [`Gateway::resume_sessions`].
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn prepare_resume(&self) -> Result<Vec<Session>, AppError> {
        let sessions = self.deps.sessions.to_keep_connected().await?;
        let starting = SessionPatch::status(SessionStatus::Connecting);
        for s in &sessions {
            self.deps
                .sessions
                .record_observed(&s.id, &starting, self.now())
                .await?;
        }
        Ok(sessions)
    }

    /// Second half: asks the adapter to connect each of `sessions` again,
    /// with its stored JID (so no new QR is needed). One that cannot even
    /// start is recorded `disconnected` with a `lastError`; returns how many
    /// started.
    pub async fn resume_sessions(&self, sessions: Vec<Session>) -> usize {
        let mut started = 0;
        for s in sessions {
            let _guard = self.lock_session(&s.id).await;
            let ctx = AdapterContext {
                status: SessionStatus::Connecting,
                not_found: None,
            };
            match self
                .lifecycle_call(ctx, {
                    let (id, jid) = (s.id, s.jid.clone());
                    move |wa| async move { wa.connect(&id, jid).await }
                })
                .await
            {
                Ok(()) => started += 1,
                Err(e) => {
                    tracing::warn!(session = %s.id, error = %e, "could not resume session");
                    let failed = SessionPatch {
                        last_error: Some(Some(LastError {
                            code: SessionErrorCode::Internal,
                            message: "could not reconnect after a restart".into(),
                        })),
                        ..SessionPatch::status(if s.jid.is_some() {
                            SessionStatus::Disconnected
                        } else {
                            SessionStatus::New
                        })
                    };
                    if let Err(e) = self
                        .deps
                        .sessions
                        .record_observed(&s.id, &failed, self.now())
                        .await
                    {
                        tracing::error!(session = %s.id, error = %e, "could not record the failure");
                    }
                }
            }
        }
        started
    }
}

/// The one mapping of adapter errors to use-case errors.
fn adapter_error(e: WhatsAppError, ctx: AdapterContext) -> AppError {
    match e {
        WhatsAppError::NotConnected => AppError::NotConnected { status: ctx.status },
        WhatsAppError::NotPairing => AppError::Conflict {
            message: "session is not pairing",
            status: Some(ctx.status),
        },
        WhatsAppError::NotFound(reason) => match ctx.not_found {
            Some(what) => AppError::NotFound { what, reason },
            None => AppError::Internal(
                "the WhatsApp adapter answered 'not found' to a lifecycle call".into(),
            ),
        },
        WhatsAppError::InvalidTarget(m) => AppError::InvalidArgument(DomainError::new("jid", m)),
        WhatsAppError::Timeout => AppError::Timeout,
        WhatsAppError::Unavailable(m) => AppError::Unavailable(m),
        WhatsAppError::Internal(m) => AppError::Internal(m),
    }
}
