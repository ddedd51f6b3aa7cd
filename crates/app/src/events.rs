//! The event log and webhooks, as use cases: reading events (pull and
//! stream), and managing the organization's webhooks.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;
use wagate_domain::{
    Capability, Delivery, Event, EventCursor, EventData, EventFilter, EventId, EventPattern, OrgId,
    Principal, SessionId, Webhook, WebhookDescription, WebhookId, WebhookSecret, WebhookUrl,
};
use wagate_store::{CommitListener, EventPage, StoreError, WebhookPatch};

use crate::{AppError, Gateway};

/// How long a rotated-out secret keeps signing beside the new one.
pub const SECRET_OVERLAP: time::Duration = time::Duration::hours(24);

/// Webhooks one organization may have unless configured
/// (`webhooks.max_per_org`).
pub const DEFAULT_MAX_WEBHOOKS_PER_ORG: u32 = 25;

/// Wakes whoever waits for new events of this process's writes: the event
/// streams (each only for its organization's commits, so a busy
/// organization costs the others' streams nothing) and the webhook
/// dispatcher. Implements the store's [`CommitListener`].
#[derive(Debug)]
pub struct EventBus {
    /// One channel per organization with a stream open; an entry goes
    /// when its last receiver does.
    events: Mutex<HashMap<OrgId, watch::Sender<u64>>>,
    deliveries: watch::Sender<u64>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            events: Mutex::default(),
            deliveries: watch::channel(0).0,
        }
    }
}

impl EventBus {
    /// A receiver that changes whenever events of `org` commit.
    pub fn events(&self, org: &OrgId) -> watch::Receiver<u64> {
        let mut channels = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        // Subscribing is rare (a stream opens): sweep the channels nobody
        // listens to any more here, so memory follows open streams.
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels
            .entry(org.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// A receiver that changes whenever deliveries are queued.
    pub fn deliveries(&self) -> watch::Receiver<u64> {
        self.deliveries.subscribe()
    }
}

impl CommitListener for EventBus {
    fn committed(&self, org: &OrgId, deliveries: bool) {
        {
            let channels = self.events.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(tx) = channels.get(org) {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        if deliveries {
            self.deliveries.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// What a client asks of the log.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Events after this cursor; `None`: from the oldest kept.
    pub after: Option<EventCursor>,
    /// Which events.
    pub filter: EventFilter,
    /// At most this many (1–1000).
    pub limit: u32,
}

/// A new webhook, as asked for.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Target.
    pub url: WebhookUrl,
    /// Event patterns (at least one).
    pub events: Vec<EventPattern>,
    /// Only these sessions (`None`: all).
    pub session_ids: Option<Vec<SessionId>>,
    /// For people.
    pub description: WebhookDescription,
}

/// A webhook just created, with its secret (shown only now).
#[derive(Debug, Clone)]
pub struct CreatedWebhook {
    /// The webhook.
    pub webhook: Webhook,
    /// Its signing secret.
    pub secret: WebhookSecret,
}

fn gone(e: StoreError) -> AppError {
    match e {
        StoreError::Gone => AppError::Gone,
        other => other.into(),
    }
}

/// A test or replay asked of a disabled webhook: nothing would send it.
fn disabled(e: StoreError) -> AppError {
    match e {
        StoreError::Conflict(_) => AppError::Conflict {
            message: "the webhook is disabled: enable it first (PATCH with \"enabled\": true)",
            status: None,
        },
        other => gone(other),
    }
}

fn webhook_not_found() -> AppError {
    AppError::NotFound {
        what: "webhook not found",
        reason: None,
    }
}

impl Gateway {
    /// A new signing secret: `whsec_` + base64 of 32 random bytes.
    fn new_webhook_secret(&self) -> Result<WebhookSecret, AppError> {
        use base64::Engine as _;
        let mut bytes = [0u8; 32];
        self.deps.entropy.fill(&mut bytes);
        let text = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        WebhookSecret::from_text(&text).map_err(|e| AppError::Internal(e.to_string()))
    }

    /// One page of the caller's organization's events, in cursor order.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `Gone` when `after` is older than what
    /// is kept; store errors.
    pub async fn read_events(&self, p: &Principal, q: &EventQuery) -> Result<EventPage, AppError> {
        Self::require(p, Capability::Read)?;
        let after = match q.after {
            Some(after) => after,
            None => self.deps.events.oldest_cursor(&p.org).await?,
        };
        self.deps
            .events
            .read_events(&p.org, after, &q.filter, q.limit)
            .await
            .map_err(gone)
    }

    /// Wakes up whenever events of the caller's organization are
    /// committed by this process (for streams).
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`.
    pub fn watch_events(&self, p: &Principal) -> Result<watch::Receiver<u64>, AppError> {
        Self::require(p, Capability::Read)?;
        Ok(self.deps.bus.events(&p.org))
    }

    /// Creates a webhook of the caller's organization.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `admin`; `InvalidArgument` (field `url`) when
    /// the target is refused (private address, does not resolve);
    /// `LimitReached` when the organization has `webhooks.max_per_org`
    /// webhooks already; store errors.
    pub async fn create_webhook(
        &self,
        p: &Principal,
        new: NewWebhook,
    ) -> Result<CreatedWebhook, AppError> {
        Self::require(p, Capability::Admin)?;
        self.check_target(&new.url).await?;
        let now = self.now();
        let webhook = Webhook {
            id: WebhookId::from_ulid(self.new_ulid()),
            org: p.org.clone(),
            url: new.url,
            events: new.events,
            session_ids: new.session_ids,
            description: new.description,
            enabled: true,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        let secret = self.new_webhook_secret()?;
        self.deps
            .webhooks
            .insert_webhook(&webhook, &secret, self.max_webhooks_per_org)
            .await
            .map_err(|e| match e {
                StoreError::LimitReached { limit } => AppError::LimitReached {
                    message: "the organization has as many webhooks as it may (webhooks.max_per_org): delete one first",
                    limit,
                },
                other => other.into(),
            })?;
        tracing::info!(webhook = %webhook.id, org = %p.org, "webhook created");
        Ok(CreatedWebhook { webhook, secret })
    }

    async fn check_target(&self, url: &WebhookUrl) -> Result<(), AppError> {
        self.deps
            .webhook_targets
            .check(url)
            .await
            .map_err(|e| wagate_domain::DomainError::new("url", e.0).into())
    }

    /// The caller's organization's webhooks.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `admin`; store errors.
    pub async fn list_webhooks(&self, p: &Principal) -> Result<Vec<Webhook>, AppError> {
        Self::require(p, Capability::Admin)?;
        Ok(self.deps.webhooks.list_webhooks(&p.org).await?)
    }

    /// One of the caller's webhooks.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `admin`; `NotFound`.
    pub async fn get_webhook(&self, p: &Principal, id: &WebhookId) -> Result<Webhook, AppError> {
        Self::require(p, Capability::Admin)?;
        self.deps
            .webhooks
            .get_webhook(&p.org, id)
            .await?
            .ok_or_else(webhook_not_found)
    }

    /// Changes one of the caller's webhooks.
    ///
    /// # Errors
    ///
    /// As [`Gateway::get_webhook`]; `InvalidArgument` for a refused URL.
    pub async fn update_webhook(
        &self,
        p: &Principal,
        id: &WebhookId,
        patch: WebhookPatch,
    ) -> Result<Webhook, AppError> {
        Self::require(p, Capability::Admin)?;
        if let Some(url) = &patch.url {
            self.check_target(url).await?;
        }
        self.deps
            .webhooks
            .update_webhook(&p.org, id, &patch, self.now())
            .await?
            .ok_or_else(webhook_not_found)
    }

    /// Deletes one of the caller's webhooks; nothing more is sent to it.
    ///
    /// # Errors
    ///
    /// As [`Gateway::get_webhook`].
    pub async fn delete_webhook(&self, p: &Principal, id: &WebhookId) -> Result<(), AppError> {
        Self::require(p, Capability::Admin)?;
        if self.deps.webhooks.delete_webhook(&p.org, id).await? {
            Ok(())
        } else {
            Err(webhook_not_found())
        }
    }

    /// A new signing secret; the old one keeps signing beside it for 24 h.
    ///
    /// # Errors
    ///
    /// As [`Gateway::get_webhook`].
    pub async fn rotate_webhook_secret(
        &self,
        p: &Principal,
        id: &WebhookId,
    ) -> Result<WebhookSecret, AppError> {
        Self::require(p, Capability::Admin)?;
        let secret = self.new_webhook_secret()?;
        let now = self.now();
        if self
            .deps
            .webhooks
            .rotate_secret(&p.org, id, &secret, now + SECRET_OVERLAP, now)
            .await?
        {
            Ok(secret)
        } else {
            Err(webhook_not_found())
        }
    }

    /// Sends a `webhook.test` event to this webhook alone (not logged).
    ///
    /// # Errors
    ///
    /// As [`Gateway::get_webhook`]; `Conflict` when it is disabled.
    pub async fn test_webhook(&self, p: &Principal, id: &WebhookId) -> Result<Event, AppError> {
        Self::require(p, Capability::Admin)?;
        let event = Event {
            id: EventId::from_ulid(self.new_ulid()),
            cursor: EventCursor::START,
            org: p.org.clone(),
            session: None,
            occurred_at: self.now(),
            data: EventData::WebhookTest { webhook_id: *id },
        };
        if self
            .deps
            .webhooks
            .queue_test(&p.org, id, &event)
            .await
            .map_err(disabled)?
        {
            Ok(event)
        } else {
            Err(webhook_not_found())
        }
    }

    /// The webhook's deliveries, newest first (`before`: a page cursor).
    ///
    /// # Errors
    ///
    /// As [`Gateway::get_webhook`].
    pub async fn webhook_deliveries(
        &self,
        p: &Principal,
        id: &WebhookId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Delivery>, AppError> {
        // Existence first: an unknown webhook is 404, not an empty page.
        self.get_webhook(p, id).await?;
        Ok(self
            .deps
            .webhooks
            .deliveries(&p.org, id, before, limit)
            .await?)
    }

    /// Delivers again every retained event after `after` that the webhook
    /// wants; how many were queued.
    ///
    /// # Errors
    ///
    /// As [`Gateway::get_webhook`]; `Gone` when `after` is older than what
    /// is kept; `Conflict` when the webhook is disabled.
    pub async fn replay_webhook(
        &self,
        p: &Principal,
        id: &WebhookId,
        after: EventCursor,
    ) -> Result<u64, AppError> {
        Self::require(p, Capability::Admin)?;
        self.deps
            .webhooks
            .replay(&p.org, id, after, self.now())
            .await
            .map_err(disabled)?
            .ok_or_else(webhook_not_found)
    }

    /// Removes events older than `retention` and idempotency keys past
    /// their 24 hours (for the pruning task).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn prune_events(&self, retention: time::Duration) -> Result<u64, AppError> {
        let now = self.now();
        // Idempotency keys are answered for 24 h; older rows are dead weight.
        self.deps
            .messages
            .prune_idempotency_keys(now - crate::IDEMPOTENCY_WINDOW)
            .await?;
        Ok(self.deps.events.prune_events(now - retention).await?)
    }
}

#[cfg(test)]
mod bus_tests {
    use super::*;

    #[test]
    fn a_commit_wakes_only_its_organizations_streams() {
        let bus = EventBus::default();
        let (acme, umbrella) = (
            OrgId::parse("acme").unwrap(),
            OrgId::parse("umbrella").unwrap(),
        );
        let mut a = bus.events(&acme);
        let u = bus.events(&umbrella);
        bus.committed(&acme, false);
        assert!(a.has_changed().unwrap());
        assert!(
            !u.has_changed().unwrap(),
            "another organization's commit woke it"
        );
        a.mark_unchanged();
        bus.committed(&umbrella, false);
        assert!(u.has_changed().unwrap());
        assert!(!a.has_changed().unwrap());
        // Channels nobody listens to are not kept.
        drop((a, u));
        let _other = bus.events(&OrgId::parse("other").unwrap());
        assert_eq!(bus.events.lock().unwrap().len(), 1);
    }
}
