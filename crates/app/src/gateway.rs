use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use wagate_domain::{
    Capability, Clock, DomainError, OrgId, Principal, RateLimit, Session, SessionId, SessionStatus,
    TokenBucket,
};
use wagate_store::{ApiKeyCache, ApiKeyStore, Entropy, SessionPatch, SessionRegistry};
use wagate_whatsapp_port::{WhatsAppError, WhatsAppPort};

use crate::AppError;
use crate::lifecycle::{Lifecycle, offline_status};

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
    /// Pace of live WhatsApp calls per session
    /// (`limits.whatsapp_calls_per_minute`); `None`: unpaced.
    pub whatsapp_pacing: Option<RateLimit>,
}

/// All of wagate's use cases. Cheap to share (`Arc<Gateway>`); every
/// method is safe to call concurrently.
pub struct Gateway {
    pub(crate) deps: GatewayDeps,
    /// Monotonic, so ids made in the same millisecond still sort in order.
    ids: Mutex<ulid::Generator>,
    /// Lifecycle calls: one at a time per session, each a task that
    /// finishes even when its caller stopped waiting.
    pub(crate) lifecycle: Lifecycle,
    /// One bucket per session that made live WhatsApp calls lately, under
    /// `deps.whatsapp_pacing` (full buckets are forgotten).
    pacing: Mutex<HashMap<SessionId, TokenBucket>>,
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
        let lifecycle = Lifecycle::new(
            deps.sessions.clone(),
            deps.whatsapp.clone(),
            deps.clock.clone(),
            deps.request_timeout,
        );
        Self {
            deps,
            ids: Mutex::new(ulid::Generator::new()),
            lifecycle,
            pacing: Mutex::new(HashMap::new()),
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

    /// Takes one of session `id`'s live-call tokens.
    ///
    /// # Errors
    ///
    /// `RateLimited` when the session has used up its pace.
    pub(crate) fn pace(&self, id: &SessionId) -> Result<(), AppError> {
        let Some(limit) = &self.deps.whatsapp_pacing else {
            return Ok(());
        };
        let now = self.now();
        let mut buckets = self.pacing.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= PACING_SWEEP_AT {
            buckets.retain(|_, b| !b.is_full(limit, now));
        }
        buckets
            .entry(*id)
            .or_insert_with(|| TokenBucket::full(limit, now))
            .take(limit, now)
            .map_err(|wait| AppError::RateLimited { retry_after: wait })
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

    /// First half of resuming after a restart, to run before serving: the
    /// statuses from before the restart are stale (no client runs now), so
    /// every session to keep connected is marked `connecting`, and every
    /// other one that claimed a running client gets its offline status.
    /// Returns what [`Gateway::resume_sessions`] must act on.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn prepare_resume(&self) -> Result<Vec<Session>, AppError> {
        let sessions = self.deps.sessions.to_resume().await?;
        for s in &sessions {
            let status = if s.keep_connected && s.pending.is_none() {
                SessionStatus::Connecting
            } else {
                offline_status(s)
            };
            self.deps
                .sessions
                .record_observed(&s.id, &SessionPatch::status(status), self.now())
                .await?;
        }
        Ok(sessions)
    }

    /// Second half: for each of `sessions`, under its lifecycle lock and
    /// decided on its row as it is *now* (requests are served meanwhile, and
    /// a disconnect, logout or delete made since the start is never undone):
    /// finishes a logout or delete the last run left pending, and connects
    /// again, with its stored JID (no new QR), one still to keep connected.
    /// One that cannot even start is recorded offline with a `lastError`.
    /// Returns how many started connecting.
    pub async fn resume_sessions(&self, sessions: Vec<Session>) -> usize {
        let mut started = 0;
        for s in sessions {
            let (org, id) = (s.org.clone(), s.id);
            let done = self
                .lifecycle
                .run_to_end(id, move |l| async move { l.resume(&org, &id).await })
                .await;
            match done {
                Ok(true) => started += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(session = %s.id, error = %e, "could not resume session"),
            }
        }
        started
    }
}

/// Pacing buckets kept before full ones are swept out.
const PACING_SWEEP_AT: usize = 1024;

/// The one mapping of adapter errors to use-case errors.
pub(crate) fn adapter_error(e: WhatsAppError, ctx: AdapterContext) -> AppError {
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
