//! What SQLite does its own way in the deliveries: the due-delivery scans,
//! which name SQLite's indexes. The rest is the shared statements of
//! [`conn`](crate::conn).

use time::OffsetDateTime;
use wagate_domain::{OrgId, WebhookId};

use super::SqliteStore;
use crate::rows::{db_err, from_ms, ms};
use crate::{DueWebhook, StoreError};

impl SqliteStore {
    pub(super) async fn due_webhooks(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<DueWebhook>, StoreError> {
        // Per enabled webhook, a seek into its due range of `deliveries_due`
        // (stepping over the few rows a worker holds): the cost grows with
        // the number of webhooks, not with how many deliveries are pending.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT w.id, w.org_id FROM webhooks w WHERE w.enabled = 1 AND EXISTS (SELECT 1 FROM deliveries d \
             INDEXED BY deliveries_due WHERE d.webhook_id = w.id AND d.state = 'pending' \
             AND d.next_ms <= ?1 AND (d.claimed_until IS NULL OR d.claimed_until <= ?1))",
        )
        .bind(ms(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let corrupt = |e: wagate_domain::DomainError| StoreError::Corrupt(e.to_string());
        rows.iter()
            .map(|(id, org)| {
                Ok(DueWebhook {
                    id: WebhookId::parse(id).map_err(corrupt)?,
                    org: OrgId::parse(org).map_err(corrupt)?,
                })
            })
            .collect()
    }

    pub(super) async fn next_due_at(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        // The earliest of, per enabled webhook: its first unclaimed pending
        // delivery (a seek into `deliveries_due`, stepping over held rows)
        // and its earliest claim to lapse (a seek into `deliveries_held`).
        // A disabled webhook has nothing pending (disabling fails it all).
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(t) FROM (\
               SELECT (SELECT d.next_ms FROM deliveries d INDEXED BY deliveries_due \
                       WHERE d.webhook_id = w.id AND d.state = 'pending' AND d.claimed_until IS NULL \
                       ORDER BY d.next_ms LIMIT 1) AS t FROM webhooks w WHERE w.enabled = 1 \
               UNION ALL \
               SELECT (SELECT MAX(d.claimed_until, d.next_ms) FROM deliveries d INDEXED BY deliveries_held \
                       WHERE d.webhook_id = w.id AND d.state = 'pending' AND d.claimed_until IS NOT NULL \
                       ORDER BY d.claimed_until LIMIT 1) FROM webhooks w WHERE w.enabled = 1)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(next.and_then(from_ms))
    }
}
