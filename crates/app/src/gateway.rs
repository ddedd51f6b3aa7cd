use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use wagate_store::{ApiKeyCache, Entropy};
use wagate_domain::{Capability, Clock, OrgId, Principal, Session, SessionId, SessionStatus};
use wagate_store::{ApiKeyStore, SessionRegistry};
use wagate_whatsapp_port::WhatsAppPort;

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
    /// Deadline of a live WhatsApp call (`whatsapp.request_timeout_secs`).
    pub request_timeout: Duration,
}

/// All of wagate's use cases. Cheap to share (`Arc<Gateway>`); every
/// method is safe to call concurrently.
pub struct Gateway {
    pub(crate) deps: GatewayDeps,
    /// Monotonic, so ids made in the same millisecond still sort in order.
    ids: Mutex<ulid::Generator>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("deps", &self.deps)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway over `deps`.
    pub fn new(deps: GatewayDeps) -> Self {
        Self {
            deps,
            ids: Mutex::new(ulid::Generator::new()),
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

    /// Connects again every session that should be connected (after a
    /// restart); returns how many were asked to connect. Failures are logged
    /// and recorded per session, never fatal.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the sessions cannot be listed.
    pub async fn resume_sessions(&self) -> Result<usize, AppError> {
        let sessions = self.deps.sessions.to_keep_connected().await?;
        let n = sessions.len();
        for s in sessions {
            if let Err(e) = self.deps.whatsapp.connect(&s.id, s.jid.clone()).await {
                tracing::warn!(session = %s.id, error = %e, "could not resume session");
            }
        }
        Ok(n)
    }
}
