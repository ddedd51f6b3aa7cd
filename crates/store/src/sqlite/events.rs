//! The event log, webhooks and their deliveries on SQLite.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use time::OffsetDateTime;
use wagate_domain::{
    Delivery, DeliveryState, Event, EventCursor, EventData, EventFilter, EventId, EventPattern,
    EventType, OrgId, SessionId, Webhook, WebhookDescription, WebhookId, WebhookSecret, WebhookUrl,
};

use super::{SqliteStore, corrupt, db_err, parse_ts, ts};
use crate::{
    AttemptOutcome, DueDelivery, EventLog, EventPage, FinishedAttempt, StoreError, WebhookPatch,
    WebhookStore,
};

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn seq_u64(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

fn event_id(now: OffsetDateTime) -> EventId {
    let at = std::time::SystemTime::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(ms(now)).unwrap_or(0));
    EventId::from_ulid(ulid::Ulid::from_datetime(at))
}

/// Appends `events` to `org`'s log in the caller's transaction, and queues
/// a delivery of each to every enabled webhook of `org` that wants it.
/// Whether deliveries were queued.
pub(super) async fn append(
    tx: &mut SqliteConnection,
    org: &OrgId,
    session: Option<&SessionId>,
    events: &[EventData],
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    if events.is_empty() {
        return Ok(false);
    }
    let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
    // The organization's counter: taken (and held, by the transaction) here.
    let last: i64 = sqlx::query_scalar(
        "INSERT INTO event_logs (org_id, last_seq) VALUES (?, ?) \
         ON CONFLICT (org_id) DO UPDATE SET last_seq = last_seq + excluded.last_seq \
         RETURNING last_seq",
    )
    .bind(org.as_str())
    .bind(n)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    let hooks = enabled_webhooks(tx, org).await?;
    let mut queued = false;
    for (i, data) in events.iter().enumerate() {
        let seq = last - n + 1 + i64::try_from(i).unwrap_or(0);
        let event = Event {
            id: event_id(now),
            cursor: EventCursor::from_seq(seq_u64(seq)),
            org: org.clone(),
            session: session.copied(),
            occurred_at: now,
            data: data.clone(),
        };
        sqlx::query(
            "INSERT INTO events (org_id, seq, id, type, session_id, occurred_at, occurred_ms, data) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(org.as_str())
        .bind(seq)
        .bind(event.id.to_string())
        .bind(data.event_type().as_str())
        .bind(session.map(ToString::to_string))
        .bind(ts(now))
        .bind(ms(now))
        .bind(data.to_json().to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let body = event.to_json().to_string();
        for (hook, filter) in &hooks {
            if filter.matches(data.event_type(), session) {
                queue(tx, hook, org, &event, &body, now).await?;
                queued = true;
            }
        }
    }
    Ok(queued)
}

/// Queues (or queues again) `event` for webhook `hook`.
async fn queue(
    tx: &mut SqliteConnection,
    hook: &WebhookId,
    org: &OrgId,
    event: &Event,
    body: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let in_log = event.data.event_type() != EventType::WebhookTest;
    sqlx::query(
        "INSERT INTO deliveries (webhook_id, org_id, event_id, event_seq, body, state, attempt, next_ms, at) \
         VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?) \
         ON CONFLICT (webhook_id, event_id) DO UPDATE SET state = 'pending', attempt = 0, \
         next_ms = excluded.next_ms, claimed_until = NULL, response_status = NULL, error = NULL, \
         at = excluded.at, duration_ms = NULL",
    )
    .bind(hook.to_string())
    .bind(org.as_str())
    .bind(event.id.to_string())
    .bind(in_log.then(|| seq_i64(event.cursor.seq())))
    .bind(body)
    .bind(ms(now))
    .bind(ts(now))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn enabled_webhooks(
    conn: &mut SqliteConnection,
    org: &OrgId,
) -> Result<Vec<(WebhookId, EventFilter)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, events, session_ids FROM webhooks WHERE org_id = ? AND enabled = 1",
    )
    .bind(org.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let id = WebhookId::parse(&r.try_get::<String, _>("id").map_err(corrupt("id"))?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let filter = EventFilter {
                types: patterns(
                    &r.try_get::<String, _>("events")
                        .map_err(corrupt("events"))?,
                )?,
                sessions: sessions(r.try_get("session_ids").map_err(corrupt("session_ids"))?)?,
            };
            Ok((id, filter))
        })
        .collect()
}

fn patterns(text: &str) -> Result<Vec<EventPattern>, StoreError> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| EventPattern::parse(p, "events").map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect()
}

fn sessions(text: Option<String>) -> Result<Option<Vec<SessionId>>, StoreError> {
    text.map(|t| {
        t.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| SessionId::parse(s).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    })
    .transpose()
}

fn join_patterns(p: &[EventPattern]) -> String {
    p.iter()
        .map(EventPattern::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn join_sessions(s: Option<&Vec<SessionId>>) -> Option<String> {
    s.map(|ids| {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn event_from_row(org: &OrgId, r: &SqliteRow) -> Result<Event, StoreError> {
    let domain = |e: wagate_domain::DomainError| StoreError::Corrupt(e.to_string());
    let t: String = r.try_get("type").map_err(corrupt("type"))?;
    let t =
        EventType::from_name(&t).ok_or_else(|| StoreError::Corrupt(format!("event type {t}")))?;
    let data: String = r.try_get("data").map_err(corrupt("data"))?;
    let data: serde_json::Value =
        serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?;
    Ok(Event {
        id: EventId::parse(&r.try_get::<String, _>("id").map_err(corrupt("id"))?)
            .map_err(domain)?,
        cursor: EventCursor::from_seq(seq_u64(r.try_get("seq").map_err(corrupt("seq"))?)),
        org: org.clone(),
        session: r
            .try_get::<Option<String>, _>("session_id")
            .map_err(corrupt("session_id"))?
            .map(|s| SessionId::parse(&s))
            .transpose()
            .map_err(domain)?,
        occurred_at: parse_ts(
            "occurred_at",
            &r.try_get::<String, _>("occurred_at")
                .map_err(corrupt("occurred_at"))?,
        )?,
        data: EventData::from_json(t, &data).map_err(domain)?,
    })
}

const WEBHOOK_COLUMNS: &str = "id, org_id, url, events, session_ids, description, enabled, disabled_reason, created_at, updated_at";

fn webhook_from_row(r: &SqliteRow) -> Result<Webhook, StoreError> {
    let domain = |e: wagate_domain::DomainError| StoreError::Corrupt(e.to_string());
    let text = |c: &'static str| r.try_get::<String, _>(c).map_err(corrupt(c));
    Ok(Webhook {
        id: WebhookId::parse(&text("id")?).map_err(domain)?,
        org: OrgId::parse(&text("org_id")?).map_err(domain)?,
        url: WebhookUrl::parse(&text("url")?).map_err(domain)?,
        events: patterns(&text("events")?)?,
        session_ids: sessions(r.try_get("session_ids").map_err(corrupt("session_ids"))?)?,
        description: WebhookDescription::parse(&text("description")?).map_err(domain)?,
        enabled: r.try_get::<i64, _>("enabled").map_err(corrupt("enabled"))? != 0,
        disabled_reason: r
            .try_get("disabled_reason")
            .map_err(corrupt("disabled_reason"))?,
        created_at: parse_ts("created_at", &text("created_at")?)?,
        updated_at: parse_ts("updated_at", &text("updated_at")?)?,
    })
}

impl SqliteStore {
    async fn pruned_through(&self, org: &OrgId) -> Result<u64, StoreError> {
        let p: Option<i64> =
            sqlx::query_scalar("SELECT pruned_through FROM event_logs WHERE org_id = ?")
                .bind(org.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(seq_u64(p.unwrap_or(0)))
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn read_events(
        &self,
        org: &OrgId,
        after: EventCursor,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        if after.seq() < self.pruned_through(org).await? {
            return Err(StoreError::Gone);
        }
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT seq, id, type, session_id, occurred_at, data FROM events WHERE org_id = ",
        );
        q.push_bind(org.as_str())
            .push(" AND seq > ")
            .push_bind(seq_i64(after.seq()));
        if !filter.types.is_empty() {
            let types: Vec<&str> = EventType::ALL
                .into_iter()
                .filter(|t| filter.types.iter().any(|p| p.matches(*t)))
                .map(EventType::as_str)
                .collect();
            q.push(" AND type IN (");
            let mut list = q.separated(", ");
            for t in types {
                list.push_bind(t);
            }
            list.push_unseparated(")");
        }
        if let Some(ids) = &filter.sessions {
            q.push(" AND session_id IN (");
            let mut list = q.separated(", ");
            list.push_bind("");
            for id in ids {
                list.push_bind(id.to_string());
            }
            list.push_unseparated(")");
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
        let events = rows
            .iter()
            .map(|r| event_from_row(org, r))
            .collect::<Result<Vec<_>, _>>()?;
        let next = events.last().map_or(after, |e| e.cursor);
        Ok(EventPage { events, next })
    }

    async fn oldest_cursor(&self, org: &OrgId) -> Result<EventCursor, StoreError> {
        Ok(EventCursor::from_seq(self.pruned_through(org).await?))
    }

    async fn prune_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        sqlx::query(
            "UPDATE event_logs SET pruned_through = MAX(pruned_through, \
               COALESCE((SELECT MAX(seq) FROM events e WHERE e.org_id = event_logs.org_id AND e.occurred_ms < ?), 0))",
        )
        .bind(ms(before))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let gone = sqlx::query("DELETE FROM events WHERE occurred_ms < ?")
            .bind(ms(before))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // Finished deliveries go with their events; pending ones carry
        // their body and are kept until they finish.
        sqlx::query(
            "DELETE FROM deliveries WHERE state != 'pending' AND (event_seq IS NULL OR event_seq <= \
               (SELECT pruned_through FROM event_logs l WHERE l.org_id = deliveries.org_id))",
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(gone.rows_affected())
    }
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn insert_webhook(&self, w: &Webhook, secret: &WebhookSecret) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhooks (id, org_id, url, events, session_ids, description, enabled, \
             disabled_reason, secret, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(w.id.to_string())
        .bind(w.org.as_str())
        .bind(w.url.as_str())
        .bind(join_patterns(&w.events))
        .bind(join_sessions(w.session_ids.as_ref()))
        .bind(w.description.as_str())
        .bind(i64::from(w.enabled))
        .bind(w.disabled_reason.clone())
        .bind(secret.expose())
        .bind(ts(w.created_at))
        .bind(ts(w.updated_at))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_webhook(
        &self,
        org: &OrgId,
        id: &WebhookId,
    ) -> Result<Option<Webhook>, StoreError> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ? AND org_id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(org.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    async fn list_webhooks(&self, org: &OrgId) -> Result<Vec<Webhook>, StoreError> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE org_id = ? ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(webhook_from_row).collect()
    }

    async fn update_webhook(
        &self,
        org: &OrgId,
        id: &WebhookId,
        patch: &WebhookPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Webhook>, StoreError> {
        let Some(mut w) = self.get_webhook(org, id).await? else {
            return Ok(None);
        };
        if let Some(url) = &patch.url {
            w.url = url.clone();
        }
        if let Some(events) = &patch.events {
            w.events.clone_from(events);
        }
        if let Some(ids) = &patch.session_ids {
            w.session_ids.clone_from(ids);
        }
        if let Some(d) = &patch.description {
            w.description = d.clone();
        }
        if let Some(enabled) = patch.enabled {
            if enabled {
                w.disabled_reason = None;
            }
            w.enabled = enabled;
        }
        w.updated_at = now;
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        sqlx::query(
            "UPDATE webhooks SET url = ?, events = ?, session_ids = ?, description = ?, enabled = ?, \
             disabled_reason = ?, updated_at = ?, failing_since = CASE WHEN ? THEN NULL ELSE failing_since END \
             WHERE id = ? AND org_id = ?",
        )
        .bind(w.url.as_str())
        .bind(join_patterns(&w.events))
        .bind(join_sessions(w.session_ids.as_ref()))
        .bind(w.description.as_str())
        .bind(i64::from(w.enabled))
        .bind(w.disabled_reason.clone())
        .bind(ts(now))
        .bind(patch.enabled == Some(true))
        .bind(id.to_string())
        .bind(org.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if !w.enabled {
            // A disabled webhook is sent nothing more.
            sqlx::query(
                "UPDATE deliveries SET state = 'failed', error = 'the webhook was disabled', next_ms = NULL \
                 WHERE webhook_id = ? AND state = 'pending'",
            )
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Some(w))
    }

    async fn delete_webhook(&self, org: &OrgId, id: &WebhookId) -> Result<bool, StoreError> {
        // Deliveries go with it (ON DELETE CASCADE).
        let done = sqlx::query("DELETE FROM webhooks WHERE id = ? AND org_id = ?")
            .bind(id.to_string())
            .bind(org.as_str())
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn rotate_secret(
        &self,
        org: &OrgId,
        id: &WebhookId,
        secret: &WebhookSecret,
        old_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhooks SET previous_secret = secret, previous_secret_until = ?, secret = ?, \
             updated_at = ? WHERE id = ? AND org_id = ?",
        )
        .bind(ms(old_until))
        .bind(secret.expose())
        .bind(ts(now))
        .bind(id.to_string())
        .bind(org.as_str())
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn queue_test(
        &self,
        org: &OrgId,
        id: &WebhookId,
        event: &Event,
    ) -> Result<bool, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM webhooks WHERE id = ? AND org_id = ?")
                .bind(id.to_string())
                .bind(org.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        if exists.is_none() {
            return Ok(false);
        }
        queue(
            &mut tx,
            id,
            org,
            event,
            &event.to_json().to_string(),
            event.occurred_at,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.notify(org, true, true);
        Ok(true)
    }

    async fn replay(
        &self,
        org: &OrgId,
        id: &WebhookId,
        after: EventCursor,
        now: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        let Some(w) = self.get_webhook(org, id).await? else {
            return Ok(None);
        };
        let filter = w.filter();
        let mut cursor = after;
        let mut n = 0;
        loop {
            let page = self.read_events(org, cursor, &filter, 500).await?;
            if page.events.is_empty() {
                break;
            }
            let mut tx = self
                .writer
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(db_err)?;
            for e in &page.events {
                queue(&mut tx, id, org, e, &e.to_json().to_string(), now).await?;
                n += 1;
            }
            tx.commit().await.map_err(db_err)?;
            cursor = page.next;
        }
        if n > 0 {
            self.notify(org, true, true);
        }
        Ok(Some(n))
    }

    async fn deliveries(
        &self,
        org: &OrgId,
        id: &WebhookId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, event_seq, attempt, state, response_status, error, at, duration_ms \
             FROM deliveries WHERE webhook_id = ? AND org_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(id.to_string())
        .bind(org.as_str())
        .bind(before.map_or(i64::MAX, seq_i64))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state").map_err(corrupt("state"))?;
                Ok(Delivery {
                    seq: seq_u64(r.try_get("seq").map_err(corrupt("seq"))?),
                    event_id: EventId::parse(
                        &r.try_get::<String, _>("event_id")
                            .map_err(corrupt("event_id"))?,
                    )
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    cursor: r
                        .try_get::<Option<i64>, _>("event_seq")
                        .map_err(corrupt("event_seq"))?
                        .map(|s| EventCursor::from_seq(seq_u64(s))),
                    attempt: u32::try_from(
                        r.try_get::<i64, _>("attempt").map_err(corrupt("attempt"))?,
                    )
                    .unwrap_or(u32::MAX),
                    state: DeliveryState::from_name(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("delivery state {state}")))?,
                    response_status: r
                        .try_get::<Option<i64>, _>("response_status")
                        .map_err(corrupt("response_status"))?
                        .and_then(|s| u16::try_from(s).ok()),
                    error: r.try_get("error").map_err(corrupt("error"))?,
                    at: parse_ts("at", &r.try_get::<String, _>("at").map_err(corrupt("at"))?)?,
                    duration_ms: r
                        .try_get::<Option<i64>, _>("duration_ms")
                        .map_err(corrupt("duration_ms"))?
                        .and_then(|d| u64::try_from(d).ok()),
                })
            })
            .collect()
    }

    async fn webhooks_due(&self, now: OffsetDateTime) -> Result<Vec<WebhookId>, StoreError> {
        // Per enabled webhook, a seek into its due range of `deliveries_due`
        // (stepping over the few rows a worker holds): the cost grows with
        // the number of webhooks, not with how many deliveries are pending.
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT w.id FROM webhooks w WHERE w.enabled = 1 AND EXISTS (SELECT 1 FROM deliveries d \
             INDEXED BY deliveries_due WHERE d.webhook_id = w.id AND d.state = 'pending' \
             AND d.next_ms <= ?1 AND (d.claimed_until IS NULL OR d.claimed_until <= ?1))",
        )
        .bind(ms(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|id| WebhookId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    async fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
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
        Ok(next.and_then(|ms| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        }))
    }

    async fn claim_due(
        &self,
        id: &WebhookId,
        now: OffsetDateTime,
        hold_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let hook = sqlx::query(
            "SELECT org_id, url, secret, previous_secret, previous_secret_until, enabled FROM webhooks WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(hook) = hook else {
            return Ok(Vec::new());
        };
        if hook
            .try_get::<i64, _>("enabled")
            .map_err(corrupt("enabled"))?
            == 0
        {
            return Ok(Vec::new());
        }
        let domain = |e: wagate_domain::DomainError| StoreError::Corrupt(e.to_string());
        let org = OrgId::parse(
            &hook
                .try_get::<String, _>("org_id")
                .map_err(corrupt("org_id"))?,
        )
        .map_err(domain)?;
        let url = WebhookUrl::parse(&hook.try_get::<String, _>("url").map_err(corrupt("url"))?)
            .map_err(domain)?;
        let mut secrets = vec![
            WebhookSecret::from_text(
                &hook
                    .try_get::<String, _>("secret")
                    .map_err(corrupt("secret"))?,
            )
            .map_err(domain)?,
        ];
        let previous: Option<String> = hook
            .try_get("previous_secret")
            .map_err(corrupt("previous_secret"))?;
        let until: Option<i64> = hook
            .try_get("previous_secret_until")
            .map_err(corrupt("previous_secret_until"))?;
        if let (Some(previous), Some(until)) = (previous, until)
            && until > ms(now)
        {
            secrets.push(WebhookSecret::from_text(&previous).map_err(domain)?);
        }
        let rows = sqlx::query(
            "UPDATE deliveries SET claimed_until = ? WHERE seq IN (SELECT seq FROM deliveries \
             WHERE webhook_id = ? AND state = 'pending' AND next_ms <= ? \
             AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY next_ms, seq LIMIT ?) \
             AND NOT EXISTS (SELECT 1 FROM deliveries h WHERE h.webhook_id = ? \
               AND h.state = 'pending' AND h.claimed_until > ?) \
             RETURNING seq, next_ms, event_id, body, attempt",
        )
        .bind(ms(hold_until))
        .bind(id.to_string())
        .bind(ms(now))
        .bind(ms(now))
        .bind(i64::from(limit))
        .bind(id.to_string())
        .bind(ms(now))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let mut due = rows
            .iter()
            .map(|r| {
                let next: i64 = r.try_get("next_ms").map_err(corrupt("next_ms"))?;
                Ok((
                    next,
                    DueDelivery {
                        seq: seq_u64(r.try_get("seq").map_err(corrupt("seq"))?),
                        webhook: *id,
                        org: org.clone(),
                        url: url.clone(),
                        secrets: secrets.clone(),
                        body: r.try_get("body").map_err(corrupt("body"))?,
                        event_id: EventId::parse(
                            &r.try_get::<String, _>("event_id")
                                .map_err(corrupt("event_id"))?,
                        )
                        .map_err(domain)?,
                        attempt: u32::try_from(
                            r.try_get::<i64, _>("attempt").map_err(corrupt("attempt"))?,
                        )
                        .unwrap_or(u32::MAX),
                    },
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        due.sort_by_key(|(next, d)| (*next, d.seq));
        Ok(due.into_iter().map(|(_, d)| d).collect())
    }

    async fn finish_attempts(
        &self,
        attempts: &[FinishedAttempt],
        now: OffsetDateTime,
        disable_after: time::Duration,
    ) -> Result<(), StoreError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        for attempt in attempts {
            finish_one(&mut tx, attempt, now, disable_after).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }
}

/// Records one attempt inside the caller's transaction.
async fn finish_one(
    tx: &mut SqliteConnection,
    attempt: &FinishedAttempt,
    now: OffsetDateTime,
    disable_after: time::Duration,
) -> Result<(), StoreError> {
    let (state, status, error, next) = match &attempt.outcome {
        AttemptOutcome::Delivered { status } => ("succeeded", Some(*status), None, None),
        AttemptOutcome::Retry {
            status,
            error,
            next_at,
        } => ("pending", *status, Some(error.clone()), Some(ms(*next_at))),
        AttemptOutcome::Failed { status, error } => ("failed", *status, Some(error.clone()), None),
        AttemptOutcome::Gone => (
            "failed",
            Some(410),
            Some("the receiver answered 410 Gone: webhook disabled".to_owned()),
            None,
        ),
    };
    let hook: Option<String> = sqlx::query_scalar(
        "UPDATE deliveries SET state = ?, attempt = attempt + 1, response_status = ?, error = ?, \
         at = ?, duration_ms = ?, next_ms = ?, claimed_until = NULL WHERE seq = ? RETURNING webhook_id",
    )
    .bind(state)
    .bind(status.map(i64::from))
    .bind(error)
    .bind(ts(now))
    .bind(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX))
    .bind(next)
    .bind(seq_i64(attempt.seq))
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some(hook) = hook else {
        return Ok(()); // the webhook was deleted meanwhile
    };
    let disable = match &attempt.outcome {
        AttemptOutcome::Delivered { .. } => {
            sqlx::query(
                "UPDATE webhooks SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL",
            )
            .bind(&hook)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            None
        }
        AttemptOutcome::Gone => Some("the receiver answered 410 Gone".to_owned()),
        AttemptOutcome::Retry { .. } | AttemptOutcome::Failed { .. } => {
            let since: i64 = sqlx::query_scalar(
                "UPDATE webhooks SET failing_since = COALESCE(failing_since, ?) WHERE id = ? RETURNING failing_since",
            )
            .bind(ms(now))
            .bind(&hook)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            let limit = i64::try_from(disable_after.whole_milliseconds()).unwrap_or(i64::MAX);
            (ms(now).saturating_sub(since) >= limit).then(|| {
                format!(
                    "every delivery failed for {} hours",
                    disable_after.whole_hours()
                )
            })
        }
    };
    if let Some(reason) = disable {
        sqlx::query(
            "UPDATE webhooks SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&reason)
        .bind(ts(now))
        .bind(&hook)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "UPDATE deliveries SET state = 'failed', error = ?, next_ms = NULL, claimed_until = NULL \
             WHERE webhook_id = ? AND state = 'pending'",
        )
        .bind(format!("not sent: {reason}"))
        .bind(&hook)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::session;
    use crate::{SessionPatch, SessionRegistry};
    use wagate_domain::SessionStatus;

    async fn store() -> SqliteStore {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    fn acme() -> OrgId {
        OrgId::parse("acme").unwrap()
    }

    fn webhook(n: u32, events: &str, now: OffsetDateTime) -> Webhook {
        Webhook {
            id: WebhookId::parse(&format!("wh_{n:026}")).unwrap(),
            org: acme(),
            url: WebhookUrl::parse("http://127.0.0.1:9/hook").unwrap(),
            events: patterns(events).unwrap(),
            session_ids: None,
            description: WebhookDescription::default(),
            enabled: true,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn a_status_change_and_its_event_are_one_write() {
        let store = store().await;
        let now = OffsetDateTime::now_utc();
        let s = session("acme", 1, now);
        store.insert(&s).await.unwrap();
        let all = EventFilter::default();
        assert!(
            store
                .read_events(&acme(), EventCursor::START, &all, 10)
                .await
                .unwrap()
                .events
                .is_empty()
        );
        store
            .record_observed(&s.id, &SessionPatch::status(SessionStatus::Pairing), now)
            .await
            .unwrap();
        // No change, no event.
        store
            .record_observed(&s.id, &SessionPatch::status(SessionStatus::Pairing), now)
            .await
            .unwrap();
        store.delete(&acme(), &s.id).await.unwrap();
        let page = store
            .read_events(&acme(), EventCursor::START, &all, 10)
            .await
            .unwrap();
        let kinds: Vec<_> = page.events.iter().map(|e| e.data.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                EventData::SessionStatus {
                    status: SessionStatus::Pairing,
                    previous: SessionStatus::New,
                    last_error: None
                },
                EventData::SessionDeleted
            ]
        );
        assert_eq!(page.next, page.events[1].cursor);
        assert!(page.events[0].cursor < page.events[1].cursor);
        // Another organization sees nothing; a filter narrows.
        let other = OrgId::parse("other").unwrap();
        assert!(
            store
                .read_events(&other, EventCursor::START, &all, 10)
                .await
                .unwrap()
                .events
                .is_empty()
        );
        let deleted = EventFilter {
            types: vec![EventPattern::parse("session.deleted", "types").unwrap()],
            sessions: None,
        };
        let page = store
            .read_events(&acme(), EventCursor::START, &deleted, 10)
            .await
            .unwrap();
        assert_eq!(page.events.len(), 1);
    }

    #[tokio::test]
    async fn pruned_cursors_are_gone() {
        let store = store().await;
        let then = OffsetDateTime::now_utc() - time::Duration::days(8);
        let s = session("acme", 1, then);
        store.insert(&s).await.unwrap();
        store
            .record_observed(&s.id, &SessionPatch::status(SessionStatus::Pairing), then)
            .await
            .unwrap();
        let now = OffsetDateTime::now_utc();
        store
            .record_observed(&s.id, &SessionPatch::status(SessionStatus::Connected), now)
            .await
            .unwrap();
        assert_eq!(
            store
                .prune_events(now - time::Duration::days(7))
                .await
                .unwrap(),
            1
        );
        let all = EventFilter::default();
        assert!(matches!(
            store
                .read_events(&acme(), EventCursor::START, &all, 10)
                .await,
            Err(StoreError::Gone)
        ));
        let oldest = store.oldest_cursor(&acme()).await.unwrap();
        let page = store.read_events(&acme(), oldest, &all, 10).await.unwrap();
        assert_eq!(page.events.len(), 1);
    }

    #[tokio::test]
    async fn deliveries_are_queued_with_the_event_claimed_in_order_and_finished() {
        let store = store().await;
        let now = OffsetDateTime::now_utc();
        let hook = webhook(1, "session.status", now);
        let secret = WebhookSecret::from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        store.insert_webhook(&hook, &secret).await.unwrap();
        store
            .insert_webhook(&webhook(2, "session.qr", now), &secret)
            .await
            .unwrap();
        let s = session("acme", 1, now);
        store.insert(&s).await.unwrap();
        for status in [SessionStatus::Pairing, SessionStatus::Connected] {
            store
                .record_observed(&s.id, &SessionPatch::status(status), now)
                .await
                .unwrap();
        }
        assert_eq!(store.webhooks_due(now).await.unwrap(), vec![hook.id]);
        let due = store
            .claim_due(&hook.id, now, now + time::Duration::seconds(30), 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 2);
        assert!(due[0].body.contains("\"pairing\"") && due[1].body.contains("\"connected\""));
        // Claimed: nobody else takes them, nor anything after them of this
        // webhook (first attempts stay in cursor order even when the holder
        // died: the next holder waits for its claim to lapse).
        store
            .record_observed(
                &s.id,
                &SessionPatch::status(SessionStatus::Disconnected),
                now,
            )
            .await
            .unwrap();
        assert!(
            store
                .claim_due(&hook.id, now, now, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let later = now + time::Duration::seconds(5);
        // Both attempts of the batch in one write.
        store
            .finish_attempts(
                &[
                    FinishedAttempt {
                        seq: due[0].seq,
                        outcome: AttemptOutcome::Delivered { status: 200 },
                        duration_ms: 3,
                    },
                    FinishedAttempt {
                        seq: due[1].seq,
                        outcome: AttemptOutcome::Retry {
                            status: Some(500),
                            error: "HTTP 500".into(),
                            next_at: later,
                        },
                        duration_ms: 3,
                    },
                ],
                now,
                time::Duration::days(5),
            )
            .await
            .unwrap();
        let log = store.deliveries(&acme(), &hook.id, None, 10).await.unwrap();
        assert_eq!(
            log.iter().map(|d| (d.state, d.attempt)).collect::<Vec<_>>(),
            vec![
                (DeliveryState::Pending, 0),
                (DeliveryState::Pending, 1),
                (DeliveryState::Succeeded, 1)
            ]
        );
        // The disconnect's delivery is due now; the retry at `later`.
        assert_eq!(store.next_due().await.unwrap().map(ms), Some(ms(now)));
        // 410 disables the webhook and fails what is pending.
        let again = store.claim_due(&hook.id, later, later, 10).await.unwrap();
        store
            .finish_attempts(
                &[FinishedAttempt {
                    seq: again[0].seq,
                    outcome: AttemptOutcome::Gone,
                    duration_ms: 1,
                }],
                later,
                time::Duration::days(5),
            )
            .await
            .unwrap();
        let w = store.get_webhook(&acme(), &hook.id).await.unwrap().unwrap();
        assert!(!w.enabled && w.disabled_reason.is_some());
        // Replay queues the retained events again, same ids.
        store
            .update_webhook(
                &acme(),
                &hook.id,
                &WebhookPatch {
                    enabled: Some(true),
                    ..WebhookPatch::default()
                },
                later,
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .replay(&acme(), &hook.id, EventCursor::START, later)
                .await
                .unwrap(),
            Some(3)
        );
        let redo = store.claim_due(&hook.id, later, later, 10).await.unwrap();
        assert_eq!(
            redo.iter().take(2).map(|d| d.event_id).collect::<Vec<_>>(),
            due.iter().map(|d| d.event_id).collect::<Vec<_>>()
        );
        // Another organization cannot see or touch it.
        let other = OrgId::parse("other").unwrap();
        assert!(store.get_webhook(&other, &hook.id).await.unwrap().is_none());
        assert_eq!(
            store
                .replay(&other, &hook.id, EventCursor::START, later)
                .await
                .unwrap(),
            None
        );
        assert!(store.delete_webhook(&acme(), &hook.id).await.unwrap());
        assert!(
            store
                .webhooks_due(later + time::Duration::hours(1))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
