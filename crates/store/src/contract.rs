//! The stores' contract: every test here runs on SQLite and on PostgreSQL
//! (a throwaway server, [`wagate_test_postgres`]; skipped with a message
//! when PostgreSQL is not installed), through the [`Store`] traits only.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use time::OffsetDateTime;
use wagate_domain::{
    ApiKey, ApiKeyId, ApiKeyName, ApiKeySecret, Capability, CapabilitySet, DeliveryState,
    EventCursor, EventData, EventFilter, EventPattern, EventType, IdempotencyKey, Jid, LastError,
    MediaInfo, Message, MessageId, MessageStatus, MessageType, NewApiKey, OrgId, PageRequest,
    SessionErrorCode, SessionId, SessionStatus, StatusTimes, Webhook, WebhookDescription,
    WebhookId, WebhookSecret, WebhookUrl,
};

use crate::rows::patterns;
use crate::test_support::session;
use crate::{
    Accepted, AttemptOutcome, FinishedAttempt, IdempotencyClaim, InboundBody, InboundRecord,
    MediaSource, ParticipantReceipt, SessionPatch, StatusChange, Store, StoreError, WebhookPatch,
};

/// Defines each test twice, `sqlite::name` and `postgres::name`, each on a
/// fresh database of its own.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = super::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(store) = super::postgres().await else {
                        return; // skipped: wagate_test_postgres said why
                    };
                    super::$name(store).await;
                }
            )*
        }
    };
}

on_both_stores!(
    sessions_are_scoped_by_org_and_paged_newest_first,
    patches_change_only_their_fields,
    api_keys_by_hash_list_revoke_touch,
    a_write_that_changes_nothing_keeps_updated_at_and_revision,
    a_patch_naming_an_old_revision_is_refused,
    a_status_change_and_its_event_are_one_write,
    pruned_cursors_are_gone,
    deliveries_are_queued_with_the_event_claimed_in_order_and_finished,
    first_attempts_are_claimed_in_cursor_order_whatever_the_writers_clocks,
    a_pruning_during_a_read_never_skips_events,
    concurrent_patches_and_a_410_lose_nothing,
    a_disabled_webhook_gets_nothing_pending,
    an_organization_has_at_most_its_cap_of_webhooks,
    inbound_messages_are_recorded_once_with_one_event_each,
    a_status_is_never_before_the_message,
    outgoing_statuses_only_move_forward_with_their_events,
    idempotency_keys_and_the_queue_bound,
    the_queue_leaves_out_the_chats_it_is_told_to,
    a_contact_reusing_an_id_does_not_take_the_message_s_place,
    edits_and_deletions_apply_once_with_one_event_each,
    poll_votes_replace_earlier_ones_once_with_one_event_each,
    ephemeral_events_are_logged_for_an_existing_session,
    many_sessions_are_marked_in_one_write_with_their_events,
);

#[path = "contract_groups.rs"]
mod groups;
#[path = "contract_receipts.rs"]
mod receipts;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/wagate.db", dir.path().display());
    (crate::open(&url).await.unwrap(), dir)
}

async fn postgres() -> Option<Arc<dyn Store>> {
    let server = wagate_test_postgres::shared()?;
    Some(crate::open(&server.fresh_database()).await.unwrap())
}

fn org(s: &str) -> OrgId {
    OrgId::parse(s).unwrap()
}

async fn sessions_are_scoped_by_org_and_paged_newest_first(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    for n in 1..=5 {
        store.insert(&session("acme", n, now)).await.unwrap();
    }
    store.insert(&session("other", 6, now)).await.unwrap();
    let s1 = session("acme", 1, now);
    assert_eq!(
        store.get(&org("acme"), &s1.id).await.unwrap(),
        Some(s1.clone())
    );
    assert_eq!(store.get(&org("other"), &s1.id).await.unwrap(), None);
    assert!(matches!(
        store.insert(&s1).await,
        Err(StoreError::Conflict(_))
    ));

    let p1 = store
        .list(&org("acme"), PageRequest::new(Some(2), None).unwrap())
        .await
        .unwrap();
    assert_eq!(
        p1.items
            .iter()
            .map(|s| s.id.to_string())
            .collect::<Vec<_>>(),
        vec![format!("sess_{:026}", 5), format!("sess_{:026}", 4)]
    );
    let p2 = store
        .list(
            &org("acme"),
            PageRequest::new(Some(2), p1.next_cursor).unwrap(),
        )
        .await
        .unwrap();
    let p3 = store
        .list(
            &org("acme"),
            PageRequest::new(Some(2), p2.next_cursor).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(p3.items.len(), 1);
    assert_eq!(p3.next_cursor, None);

    assert!(!store.delete(&org("other"), &s1.id).await.unwrap());
    assert!(store.delete(&org("acme"), &s1.id).await.unwrap());
    assert_eq!(store.get(&org("acme"), &s1.id).await.unwrap(), None);
}

async fn patches_change_only_their_fields(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    let later = now + time::Duration::seconds(5);
    let jid = Jid::parse("15550001111@s.whatsapp.net").unwrap();
    let patch = SessionPatch {
        status: Some(SessionStatus::Connected),
        status_if_unlinked: None,
        status_unless: Vec::new(),
        jid: Some(Some(jid.clone())),
        push_name: Some(Some("Acme".into())),
        keep_connected: Some(true),
        last_connected_at: Some(later),
        last_error: Some(Some(LastError {
            code: SessionErrorCode::Unreachable,
            message: "x".into(),
        })),
        ..SessionPatch::default()
    };
    assert!(
        store
            .update(&org("other"), &s.id, &patch, later)
            .await
            .unwrap()
            .is_none()
    );
    let updated = store
        .update(&org("acme"), &s.id, &patch, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.jid, Some(jid));
    assert_eq!(updated.updated_at, later);
    assert_eq!(
        updated.last_error.as_ref().unwrap().code,
        SessionErrorCode::Unreachable
    );
    assert_eq!(store.to_resume().await.unwrap().len(), 1);
    let cleared = store
        .record_observed(
            &s.id,
            &SessionPatch {
                jid: Some(None),
                last_error: Some(None),
                ..SessionPatch::status(SessionStatus::LoggedOut)
            },
            later,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            cleared.jid,
            cleared.last_error,
            cleared.push_name.as_deref()
        ),
        (None, None, Some("Acme"))
    );
    let counts = store.count_by_status().await.unwrap();
    assert_eq!(
        counts.iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>(),
        vec![&(SessionStatus::LoggedOut, 1)]
    );
}

async fn api_keys_by_hash_list_revoke_touch(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let secret = ApiKeySecret::from_random_bytes([7; 32]);
    let key = ApiKey {
        id: ApiKeyId::parse(&format!("key_{:026}", 1)).unwrap(),
        org: org("acme"),
        name: ApiKeyName::parse("ci").unwrap(),
        capabilities: CapabilitySet::of([Capability::Read, Capability::Send]),
        prefix: secret.display_prefix().to_owned(),
        created_at: now,
        expires_at: None,
        last_used_at: None,
    };
    let hash = [9u8; 32];
    store
        .insert_key(&NewApiKey {
            key: key.clone(),
            secret_hash: hash,
        })
        .await
        .unwrap();
    assert_eq!(store.find_by_hash(&hash).await.unwrap(), Some(key.clone()));
    assert_eq!(store.list_keys(&org("acme")).await.unwrap().len(), 1);
    assert!(store.list_keys(&org("other")).await.unwrap().is_empty());
    store.touch_key(&key.id, now).await.unwrap();
    assert_eq!(
        store
            .find_by_hash(&hash)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(now)
    );
    assert!(
        store
            .revoke_key(Some(&org("other")), &key.id, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .revoke_key(Some(&org("acme")), &key.id, now)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .revoke_key(None, &key.id, now)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.find_by_hash(&hash).await.unwrap(), None);
}

async fn a_write_that_changes_nothing_keeps_updated_at_and_revision(store: Arc<dyn Store>) {
    let t0 = OffsetDateTime::now_utc();
    let s = session("acme", 1, t0);
    store.insert(&s).await.unwrap();
    let later = t0 + time::Duration::minutes(5);
    let same = store
        .update(
            &org("acme"),
            &s.id,
            &SessionPatch::status(SessionStatus::New),
            later,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((same.updated_at, same.revision), (s.updated_at, 0));
    let moved = store
        .update(
            &org("acme"),
            &s.id,
            &SessionPatch::status(SessionStatus::Pairing),
            later,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((moved.updated_at, moved.revision), (later, 1));
}

async fn a_patch_naming_an_old_revision_is_refused(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    // An event lands after the caller read revision 0 …
    store
        .record_observed(&s.id, &SessionPatch::status(SessionStatus::Connected), now)
        .await
        .unwrap();
    // … so the caller's write decided on revision 0 must not apply.
    let stale = SessionPatch {
        expected_revision: Some(0),
        ..SessionPatch::status(SessionStatus::Disconnected)
    };
    assert!(matches!(
        store.update(&org("acme"), &s.id, &stale, now).await,
        Err(StoreError::Changed)
    ));
    let row = store.get(&org("acme"), &s.id).await.unwrap().unwrap();
    assert_eq!((row.status, row.revision), (SessionStatus::Connected, 1));
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

async fn a_status_change_and_its_event_are_one_write(store: Arc<dyn Store>) {
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

async fn many_sessions_are_marked_in_one_write_with_their_events(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let (a, b) = (session("acme", 1, now), session("acme", 2, now));
    let other = session("other", 3, now);
    for s in [&a, &b, &other] {
        store.insert(s).await.unwrap();
    }
    store
        .record_observed(&b.id, &SessionPatch::status(SessionStatus::Connecting), now)
        .await
        .unwrap();
    let gone = session("acme", 4, now).id;
    let connecting = SessionPatch::status(SessionStatus::Connecting);
    let marked = store
        .record_observed_all(
            &[
                (a.id, connecting.clone()),
                (gone, connecting.clone()),
                (b.id, connecting.clone()),
                (other.id, connecting.clone()),
            ],
            now,
        )
        .await
        .unwrap();
    let statuses: Vec<_> = marked
        .iter()
        .map(|m| m.as_ref().unwrap().as_ref().map(|s| (s.id, s.status)))
        .collect();
    assert_eq!(
        statuses,
        [
            Some((a.id, SessionStatus::Connecting)),
            None,
            Some((b.id, SessionStatus::Connecting)),
            Some((other.id, SessionStatus::Connecting)),
        ]
    );
    // b was connecting already: no change, no second event for it.
    let b_now = store.get(&acme(), &b.id).await.unwrap().unwrap();
    assert_eq!(
        marked[2].as_ref().unwrap().as_ref().unwrap().revision,
        b_now.revision
    );
    let all = EventFilter::default();
    let events = |org: OrgId| {
        let store = store.clone();
        let all = all.clone();
        async move {
            store
                .read_events(&org, EventCursor::START, &all, 10)
                .await
                .unwrap()
                .events
                .into_iter()
                .map(|e| (e.session, e.data))
                .collect::<Vec<_>>()
        }
    };
    let connecting_from = |previous| EventData::SessionStatus {
        status: SessionStatus::Connecting,
        previous,
        last_error: None,
    };
    assert_eq!(
        events(acme()).await,
        [
            (Some(b.id), connecting_from(SessionStatus::New)),
            (Some(a.id), connecting_from(SessionStatus::New)),
        ]
    );
    assert_eq!(
        events(OrgId::parse("other").unwrap()).await,
        [(Some(other.id), connecting_from(SessionStatus::New))]
    );
    let counts = store.count_by_status().await.unwrap();
    assert!(
        counts.contains(&(SessionStatus::Connecting, 3)),
        "{counts:?}"
    );
    assert!(
        store
            .record_observed_all(&[], now)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn pruned_cursors_are_gone(store: Arc<dyn Store>) {
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

async fn deliveries_are_queued_with_the_event_claimed_in_order_and_finished(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let hook = webhook(1, "session.status", now);
    let secret = WebhookSecret::from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    store.insert_webhook(&hook, &secret, 25).await.unwrap();
    store
        .insert_webhook(&webhook(2, "session.qr", now), &secret, 25)
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
    assert_eq!(
        store.webhooks_due(now).await.unwrap(),
        vec![crate::DueWebhook {
            id: hook.id,
            org: acme()
        }]
    );
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
    // (A first attempt is due from its commit.)
    assert!(store.next_due().await.unwrap().is_some_and(|at| at <= now));
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

fn secret() -> WebhookSecret {
    WebhookSecret::from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
}

/// Issue 18, finding 9: a writer reads its clock before it waits for
/// the write lock, so events can commit in another order than their
/// writers' times. First attempts still go in cursor order.
async fn first_attempts_are_claimed_in_cursor_order_whatever_the_writers_clocks(
    store: Arc<dyn Store>,
) {
    let now = OffsetDateTime::now_utc();
    let hook = webhook(1, "session.status", now);
    store.insert_webhook(&hook, &secret(), 25).await.unwrap();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    // Committed first, with the later clock.
    let later = now + time::Duration::milliseconds(300);
    store
        .record_observed(&s.id, &SessionPatch::status(SessionStatus::Pairing), later)
        .await
        .unwrap();
    store
        .record_observed(&s.id, &SessionPatch::status(SessionStatus::Connected), now)
        .await
        .unwrap();
    let due = store
        .claim_due(&hook.id, later, later + time::Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 2);
    assert!(
        due[0].body.contains("\"pairing\"") && due[1].body.contains("\"connected\""),
        "{:?}",
        due.iter().map(|d| &d.body).collect::<Vec<_>>()
    );
}

/// Issue 18, finding 9: a reader racing the pruner either gets the
/// events right after its cursor or `Gone`, never a page that skips
/// pruned events. (Many rounds: the race is between two statements.)
async fn a_pruning_during_a_read_never_skips_events(store: Arc<dyn Store>) {
    let t0 = OffsetDateTime::now_utc() - time::Duration::days(30);
    let s = session("acme", 1, t0);
    store.insert(&s).await.unwrap();
    const EVENTS: i64 = 600;
    for i in 0..EVENTS {
        let status = if i % 2 == 0 {
            SessionStatus::Pairing
        } else {
            SessionStatus::Connected
        };
        store
            .record_observed(
                &s.id,
                &SessionPatch::status(status),
                t0 + time::Duration::milliseconds(i),
            )
            .await
            .unwrap();
    }
    let pruner = {
        let store = store.clone();
        tokio::spawn(async move {
            for k in 1..=EVENTS {
                store
                    .prune_events(t0 + time::Duration::milliseconds(k))
                    .await
                    .unwrap();
            }
        })
    };
    let all = EventFilter::default();
    let (mut reads, mut skipped) = (0, Vec::new());
    while !pruner.is_finished() {
        let oldest = store.oldest_cursor(&acme()).await.unwrap();
        match store.read_events(&acme(), oldest, &all, 1).await {
            Ok(page) => {
                reads += 1;
                if let Some(e) = page.events.first()
                    && e.cursor.seq() != oldest.seq() + 1
                {
                    skipped.push((oldest.seq(), e.cursor.seq()));
                }
            }
            Err(StoreError::Gone) => {}
            Err(e) => panic!("{e}"),
        }
    }
    pruner.await.unwrap();
    assert!(reads > 0);
    assert!(
        skipped.is_empty(),
        "pages skipped pruned events: {skipped:?}"
    );
}

/// Issue 18, finding 9: a PATCH is read and written in one transaction:
/// concurrent PATCHes of different fields both stay, and a webhook
/// disabled by a 410 meanwhile stays disabled.
async fn concurrent_patches_and_a_410_lose_nothing(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let mut lost = Vec::new();
    for n in 0..60 {
        let hook = webhook(n, "*", now);
        store.insert_webhook(&hook, &secret(), 100).await.unwrap();
        let test = wagate_domain::Event {
            id: wagate_domain::EventId::from_ulid(ulid::Ulid::new()),
            cursor: EventCursor::START,
            org: acme(),
            session: None,
            occurred_at: now,
            data: EventData::WebhookTest {
                webhook_id: hook.id,
            },
        };
        assert!(store.queue_test(&acme(), &hook.id, &test).await.unwrap());
        let due = store
            .claim_due(&hook.id, now, now + time::Duration::seconds(30), 1)
            .await
            .unwrap();
        let patch = |p: WebhookPatch| {
            let store = store.clone();
            tokio::spawn(async move { store.update_webhook(&acme(), &hook.id, &p, now).await })
        };
        let described = patch(WebhookPatch {
            description: Some(WebhookDescription::parse("billing").unwrap()),
            ..WebhookPatch::default()
        });
        let gone = {
            let store = store.clone();
            let seq = due[0].seq;
            tokio::spawn(async move {
                store
                    .finish_attempts(
                        &[FinishedAttempt {
                            seq,
                            outcome: AttemptOutcome::Gone,
                            duration_ms: 1,
                        }],
                        now,
                        time::Duration::days(5),
                    )
                    .await
            })
        };
        let moved = patch(WebhookPatch {
            url: Some(WebhookUrl::parse("http://127.0.0.1:10/moved").unwrap()),
            ..WebhookPatch::default()
        });
        described.await.unwrap().unwrap();
        gone.await.unwrap().unwrap();
        moved.await.unwrap().unwrap();
        let w = store.get_webhook(&acme(), &hook.id).await.unwrap().unwrap();
        if w.enabled || w.description.as_str() != "billing" || !w.url.as_str().ends_with("/moved") {
            lost.push((n, w.enabled, w.description, w.url));
        }
    }
    assert!(lost.is_empty(), "{lost:?}");
}

/// Issue 18, finding 9: an attempt that ends after its webhook was
/// disabled does not make the delivery pending again (nothing would
/// ever send it); a test or replay of a disabled webhook is refused.
async fn a_disabled_webhook_gets_nothing_pending(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let hook = webhook(1, "session.status", now);
    store.insert_webhook(&hook, &secret(), 25).await.unwrap();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    for status in [SessionStatus::Pairing, SessionStatus::Connected] {
        store
            .record_observed(&s.id, &SessionPatch::status(status), now)
            .await
            .unwrap();
    }
    let due = store
        .claim_due(&hook.id, now, now + time::Duration::seconds(30), 10)
        .await
        .unwrap();
    assert!(store.still_current(&due[0]).await.unwrap());
    let off = WebhookPatch {
        enabled: Some(false),
        ..WebhookPatch::default()
    };
    store
        .update_webhook(&acme(), &hook.id, &off, now)
        .await
        .unwrap();
    assert!(!store.still_current(&due[0]).await.unwrap());
    store
        .finish_attempts(
            &[
                FinishedAttempt {
                    seq: due[0].seq,
                    outcome: AttemptOutcome::Retry {
                        status: Some(500),
                        error: "HTTP 500".into(),
                        next_at: now,
                    },
                    duration_ms: 3,
                },
                FinishedAttempt {
                    seq: due[1].seq,
                    outcome: AttemptOutcome::Released,
                    duration_ms: 0,
                },
            ],
            now,
            time::Duration::days(5),
        )
        .await
        .unwrap();
    let log = store.deliveries(&acme(), &hook.id, None, 10).await.unwrap();
    assert!(
        log.iter().all(|d| d.state == DeliveryState::Failed),
        "{log:?}"
    );
    assert_eq!(log[1].attempt, 1, "the attempt is recorded");
    let test = wagate_domain::Event {
        id: wagate_domain::EventId::from_ulid(ulid::Ulid::new()),
        cursor: EventCursor::START,
        org: acme(),
        session: None,
        occurred_at: now,
        data: EventData::WebhookTest {
            webhook_id: hook.id,
        },
    };
    assert!(matches!(
        store.queue_test(&acme(), &hook.id, &test).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .replay(&acme(), &hook.id, EventCursor::START, now)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .deliveries(&acme(), &hook.id, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn an_organization_has_at_most_its_cap_of_webhooks(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    for n in 0..2 {
        store
            .insert_webhook(&webhook(n, "*", now), &secret(), 2)
            .await
            .unwrap();
    }
    assert!(matches!(
        store
            .insert_webhook(&webhook(2, "*", now), &secret(), 2)
            .await,
        Err(StoreError::LimitReached { limit: 2 })
    ));
    // Disabled ones count; another organization has its own.
    store
        .update_webhook(
            &acme(),
            &webhook(0, "*", now).id,
            &WebhookPatch {
                enabled: Some(false),
                ..WebhookPatch::default()
            },
            now,
        )
        .await
        .unwrap();
    assert!(
        store
            .insert_webhook(&webhook(2, "*", now), &secret(), 2)
            .await
            .is_err()
    );
    let mut theirs = webhook(3, "*", now);
    theirs.org = OrgId::parse("other").unwrap();
    store.insert_webhook(&theirs, &secret(), 2).await.unwrap();
    assert_eq!(store.list_webhooks(&acme()).await.unwrap().len(), 2);
}

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

async fn types(store: &dyn Store, org: &OrgId) -> Vec<EventType> {
    store
        .read_events(org, EventCursor::START, &EventFilter::default(), 100)
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.data.event_type())
        .collect()
}

pub(crate) fn inbound(id: &str, body: InboundBody, from_me: bool) -> InboundRecord {
    let alice = jid("14155550123@s.whatsapp.net");
    InboundRecord {
        id: MessageId::parse(id).unwrap(),
        chat: alice.clone(),
        sender: if from_me {
            jid("15550001111@s.whatsapp.net")
        } else {
            alice.clone()
        },
        sender_pn: Some(alice),
        sender_lid: None,
        from_me,
        timestamp: OffsetDateTime::now_utc(),
        body,
        reply_to: None,
        mentions: Vec::new(),
    }
}

fn outgoing(s: &SessionId, id: &str, now: OffsetDateTime) -> Message {
    Message {
        id: MessageId::parse(id).unwrap(),
        session: *s,
        chat: jid("14155550123@s.whatsapp.net"),
        from_me: true,
        from: jid("15550001111@s.whatsapp.net"),
        from_pn: None,
        from_lid: None,
        to: jid("14155550123@s.whatsapp.net"),
        kind: MessageType::Image,
        text: None,
        caption: None,
        media: Some(MediaInfo {
            mimetype: "image/png".into(),
            filename: None,
            size: 3,
            sha256: "x".into(),
        }),
        rich: None,
        voice_note: false,
        reply_to: None,
        mentions: vec![
            jid("14155550199@s.whatsapp.net"),
            jid("123456789012345@lid"),
        ],
        status: MessageStatus::Pending,
        status_at: StatusTimes::default(),
        error: None,
        edited_at: None,
        timestamp: now,
        created_at: now,
    }
}

async fn inbound_messages_are_recorded_once_with_one_event_each(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    let batch = vec![
        inbound("IN1", InboundBody::Text("hi".into()), false),
        inbound("IN2", InboundBody::Text("from my phone".into()), true),
        inbound(
            "IN3",
            InboundBody::Reaction {
                target: MessageId::parse("IN2").unwrap(),
                emoji: "👍".into(),
            },
            false,
        ),
    ];
    assert_eq!(store.record_inbound(&s.id, &batch, now).await.unwrap(), 3);
    // Redelivered (a crash between commit and ack): nothing new.
    assert_eq!(store.record_inbound(&s.id, &batch, now).await.unwrap(), 0);
    assert_eq!(
        types(&*store, &s.org).await,
        vec![
            EventType::MessageReceived,
            EventType::MessageSent,
            EventType::MessageReaction
        ]
    );
    let page = store
        .list_messages(&s.org, &s.id, None, None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2, "reactions are not messages");
    assert_eq!(page.items[0].status, MessageStatus::Sent);
    assert_eq!(page.items[1].status, MessageStatus::Received);
    assert_eq!(
        page.items[1].to,
        jid("14155550123@s.whatsapp.net"),
        "no own JID yet: the chat"
    );
    // Another organization sees nothing.
    let other = OrgId::parse("other").unwrap();
    assert!(
        store
            .list_messages(&other, &s.id, None, None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // A deleted session records nothing and fails nothing.
    store.delete(&s.org, &s.id).await.unwrap();
    assert_eq!(store.record_inbound(&s.id, &batch, now).await.unwrap(), 0);
}

async fn a_status_is_never_before_the_message(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    let m = outgoing(&s.id, "OUT2", now);
    store
        .accept_outgoing(&s.org, &m, None, None, 10)
        .await
        .unwrap();
    // WhatsApp's ack names the whole second, before the accept's instant.
    let acked_at = now.replace_nanosecond(0).unwrap() - time::Duration::milliseconds(1);
    let sent = store
        .update_status(
            &s.id,
            std::slice::from_ref(&m.id),
            &StatusChange {
                status: MessageStatus::Sent,
                at: acked_at,
                error: None,
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(sent[0].status_at.sent, Some(sent[0].created_at));
    assert!(sent[0].status_at.sent >= Some(m.created_at.replace_nanosecond(0).unwrap()));
}

async fn outgoing_statuses_only_move_forward_with_their_events(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    let m = outgoing(&s.id, "OUT1", now);
    assert_eq!(
        store
            .accept_outgoing(&s.org, &m, Some(b"png"), None, 10)
            .await
            .unwrap(),
        Accepted::New(m.clone())
    );
    let pending = store.pending(&s.id, &[], 10).await.unwrap();
    assert_eq!(pending, vec![m.clone()], "metadata only");
    assert_eq!(
        store.pending_media(&s.id, &m.id).await.unwrap().as_deref(),
        Some(&b"png"[..])
    );
    assert!(
        types(&*store, &s.org).await.is_empty(),
        "accepting emits nothing"
    );
    let change = |status| StatusChange {
        status,
        at: now,
        error: None,
    };
    let ids = [m.id.clone()];
    let sent = store
        .update_status(&s.id, &ids, &change(MessageStatus::Sent), now)
        .await
        .unwrap();
    assert_eq!(sent[0].status_at.sent, Some(now));
    store
        .update_status(&s.id, &ids, &change(MessageStatus::Read), now)
        .await
        .unwrap();
    // Late or repeated receipts change nothing.
    for late in [
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Failed,
    ] {
        assert!(
            store
                .update_status(&s.id, &ids, &change(late), now)
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(
        types(&*store, &s.org).await,
        vec![
            EventType::MessageSent,
            EventType::MessageStatus,
            EventType::MessageStatus,
            EventType::MessageStatus
        ]
    );
    // The read receipt came before the delivery receipt: the log still says
    // delivered before read (a read message was delivered), once each.
    let statuses: Vec<_> = store
        .read_events(&s.org, EventCursor::START, &EventFilter::default(), 10)
        .await
        .unwrap()
        .events
        .into_iter()
        .filter_map(|e| match e.data {
            EventData::MessageStatus { status, .. } => Some(status),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [
            MessageStatus::Sent,
            MessageStatus::Delivered,
            MessageStatus::Read
        ]
    );
    let got = store
        .get_message(&s.org, &s.id, &m.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.status, got.status_at.delivered),
        (MessageStatus::Read, Some(now))
    );
    // Its bytes are gone once sent.
    let (_, source) = store.media(&s.org, &s.id, &m.id).await.unwrap().unwrap();
    assert_eq!(source, MediaSource::Gone);
    assert!(store.pending(&s.id, &[], 10).await.unwrap().is_empty());
    assert_eq!(store.pending_media(&s.id, &m.id).await.unwrap(), None);
}

async fn idempotency_keys_and_the_queue_bound(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    let claim = |hash: u8, not_before| IdempotencyClaim {
        key: IdempotencyKey::parse("k1").unwrap(),
        request_hash: [hash; 32],
        not_before,
    };
    let day_ago = now - time::Duration::hours(24);
    let first = outgoing(&s.id, "A1", now);
    assert!(matches!(
        store
            .accept_outgoing(&s.org, &first, None, Some(&claim(1, day_ago)), 2)
            .await
            .unwrap(),
        Accepted::New(_)
    ));
    let retry = outgoing(&s.id, "A2", now);
    // Looked up without writing: the same answers.
    assert_eq!(
        store
            .idempotent_answer(&s.org, &s.id, &claim(1, day_ago))
            .await
            .unwrap(),
        Some(Accepted::Replayed(first.clone()))
    );
    assert_eq!(
        store
            .idempotent_answer(&s.org, &s.id, &claim(2, day_ago))
            .await
            .unwrap(),
        Some(Accepted::KeyConflict)
    );
    let later = now + time::Duration::seconds(1);
    assert_eq!(
        store
            .idempotent_answer(&s.org, &s.id, &claim(1, later))
            .await
            .unwrap(),
        None,
        "past the window"
    );
    assert_eq!(
        store
            .idempotent_answer(&org("other"), &s.id, &claim(1, day_ago))
            .await
            .unwrap(),
        None,
        "keys are per organization"
    );
    assert_eq!(
        store
            .accept_outgoing(&s.org, &retry, None, Some(&claim(1, day_ago)), 2)
            .await
            .unwrap(),
        Accepted::Replayed(first.clone())
    );
    assert_eq!(
        store
            .accept_outgoing(&s.org, &retry, None, Some(&claim(2, day_ago)), 2)
            .await
            .unwrap(),
        Accepted::KeyConflict
    );
    // Past the window the key is free again.
    assert!(matches!(
        store
            .accept_outgoing(&s.org, &retry, None, Some(&claim(2, later)), 2)
            .await
            .unwrap(),
        Accepted::New(_)
    ));
    // Two pending now: the queue (of 2) is full.
    assert_eq!(
        store
            .accept_outgoing(&s.org, &outgoing(&s.id, "A3", now), None, None, 2)
            .await
            .unwrap(),
        Accepted::QueueFull
    );
    // Handed to WhatsApp: not due until requeued.
    store.mark_handed(&s.id, &first.id, now).await.unwrap();
    assert_eq!(store.pending(&s.id, &[], 10).await.unwrap().len(), 1);
    assert_eq!(store.sessions_with_pending().await.unwrap(), vec![s.id]);
    assert_eq!(store.requeue_handed(Some(&s.id)).await.unwrap(), 1);
    assert_eq!(store.pending(&s.id, &[], 10).await.unwrap().len(), 2);
    assert_eq!(
        store
            .prune_idempotency_keys(later + time::Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
}

async fn the_queue_leaves_out_the_chats_it_is_told_to(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    let to = |id: &str, chat: &str| Message {
        chat: jid(chat),
        to: jid(chat),
        ..outgoing(&s.id, id, now)
    };
    let stuck = "14155550100@s.whatsapp.net";
    let other = "14155550142@s.whatsapp.net";
    for m in [
        to("Q1", stuck),
        to("Q2", other),
        to("Q3", stuck),
        to("Q4", other),
    ] {
        store
            .accept_outgoing(&s.org, &m, Some(b"png"), None, 10)
            .await
            .unwrap();
    }
    let ids = |ms: Vec<Message>| ms.into_iter().map(|m| m.id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        ids(store.pending(&s.id, &[], 10).await.unwrap()),
        ["Q1", "Q2", "Q3", "Q4"]
    );
    assert_eq!(
        ids(store.pending(&s.id, &[jid(stuck)], 10).await.unwrap()),
        ["Q2", "Q4"]
    );
    assert!(
        store
            .pending(&s.id, &[jid(stuck), jid(other)], 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ids(store.pending(&s.id, &[], 1).await.unwrap()), ["Q1"]);
}

async fn a_contact_reusing_an_id_does_not_take_the_message_s_place(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    // Ours: a text to Alice.
    let ours = Message {
        kind: MessageType::Text,
        text: Some("hello".into()),
        media: None,
        ..outgoing(&s.id, "3EB0AAAAAAAAAAAAAAAAAA", now)
    };
    store
        .accept_outgoing(&s.org, &ours, None, None, 10)
        .await
        .unwrap();
    // Then another contact writes under the same id, with media.
    let mallory = jid("14155550199@s.whatsapp.net");
    let reused = InboundRecord {
        chat: mallory.clone(),
        sender: mallory.clone(),
        sender_pn: Some(mallory.clone()),
        ..inbound(
            "3EB0AAAAAAAAAAAAAAAAAA",
            InboundBody::Media {
                kind: MessageType::Image,
                info: MediaInfo {
                    mimetype: "image/png".into(),
                    filename: None,
                    size: 3,
                    sha256: "x".into(),
                },
                caption: None,
                voice_note: false,
                media_ref: vec![1, 2, 3],
            },
            false,
        )
    };
    assert_eq!(
        store
            .record_inbound(&s.id, std::slice::from_ref(&reused), now)
            .await
            .unwrap(),
        1
    );
    let got = store
        .get_message(&s.org, &s.id, &ours.id)
        .await
        .unwrap()
        .unwrap();
    assert!(got.from_me && got.chat == ours.chat, "{got:?}");
    assert_eq!(
        store.media(&s.org, &s.id, &ours.id).await.unwrap(),
        None,
        "our text has no media, whatever the contact's carries"
    );
    // Between two contacts, the first keeps the id.
    let id = "AAAA0000FIRST";
    let first = inbound(id, InboundBody::Text("first".into()), false);
    let later = InboundRecord {
        id: MessageId::parse(id).unwrap(),
        ..reused
    };
    store.record_inbound(&s.id, &[first], now).await.unwrap();
    store.record_inbound(&s.id, &[later], now).await.unwrap();
    let got = store
        .get_message(&s.org, &s.id, &MessageId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.chat, jid("14155550123@s.whatsapp.net"));
}

async fn edits_and_deletions_apply_once_with_one_event_each(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    let media = InboundBody::Media {
        kind: MessageType::Image,
        info: MediaInfo {
            mimetype: "image/png".into(),
            filename: None,
            size: 3,
            sha256: "x".into(),
        },
        caption: Some("before".into()),
        voice_note: false,
        media_ref: vec![1, 2, 3],
    };
    let place = wagate_domain::RichContent::Location(
        wagate_domain::Location::new(52.5, 13.4, Some("Office".into()), None).unwrap(),
    );
    let originals = vec![
        inbound("T1", InboundBody::Text("helo".into()), false),
        inbound("M1", media, false),
        inbound("L1", InboundBody::Rich(place.clone()), false),
    ];
    assert_eq!(
        store.record_inbound(&s.id, &originals, now).await.unwrap(),
        3
    );
    let later = now + time::Duration::seconds(5);
    let change = |id: &str, body: InboundBody| InboundRecord {
        timestamp: later,
        ..inbound(id, body, false)
    };
    let target = |id: &str| MessageId::parse(id).unwrap();
    let changes = vec![
        change(
            "E1",
            InboundBody::Edit {
                target: target("T1"),
                text: "hello".into(),
            },
        ),
        change(
            "E2",
            InboundBody::Edit {
                target: target("M1"),
                text: "after".into(),
            },
        ),
        change(
            "R1",
            InboundBody::Revoke {
                target: target("M1"),
            },
        ),
        // Names nothing stored: nothing changes, no event.
        change(
            "R2",
            InboundBody::Revoke {
                target: target("NOPE"),
            },
        ),
    ];
    assert_eq!(store.record_inbound(&s.id, &changes, now).await.unwrap(), 3);
    // Redelivered: nothing changes twice, no second event.
    assert_eq!(store.record_inbound(&s.id, &changes, now).await.unwrap(), 0);
    // A second deletion of a deleted message, under a new id: nothing.
    let again = change(
        "R3",
        InboundBody::Revoke {
            target: target("M1"),
        },
    );
    assert_eq!(store.record_inbound(&s.id, &[again], now).await.unwrap(), 0);
    let events = store
        .read_events(&s.org, EventCursor::START, &EventFilter::default(), 100)
        .await
        .unwrap()
        .events;
    let kinds: Vec<_> = events.iter().map(|e| e.data.event_type()).collect();
    assert_eq!(
        kinds[3..],
        [
            EventType::MessageEdited,
            EventType::MessageEdited,
            EventType::MessageRevoked
        ]
    );
    let EventData::MessageEdited {
        message,
        previous_text,
    } = &events[3].data
    else {
        panic!("not an edit")
    };
    assert_eq!(
        (message.text.as_deref(), previous_text.as_deref()),
        (Some("hello"), Some("helo"))
    );
    let get = |id: &'static str| {
        let store = store.clone();
        let org = s.org.clone();
        async move {
            store
                .get_message(&org, &s.id, &MessageId::parse(id).unwrap())
                .await
                .unwrap()
                .unwrap()
        }
    };
    let text = get("T1").await;
    assert_eq!(text.text.as_deref(), Some("hello"));
    assert!(
        text.edited_at
            .is_some_and(|at| (at - later).abs() < time::Duration::seconds(1))
    );
    let gone = get("M1").await;
    assert_eq!(
        (gone.kind, gone.caption.clone(), gone.media.clone()),
        (MessageType::Revoked, None, None)
    );
    // Its id, people, status and times stay.
    assert_eq!(
        (
            gone.id.as_str(),
            gone.status,
            gone.created_at,
            gone.edited_at.is_some()
        ),
        ("M1", MessageStatus::Received, text.created_at, true)
    );
    assert!(
        store
            .media(&s.org, &s.id, &MessageId::parse("M1").unwrap())
            .await
            .unwrap()
            .is_none(),
        "a revoked message's media handle is gone"
    );
    assert_eq!(get("L1").await.rich, Some(place));
}

async fn poll_votes_replace_earlier_ones_once_with_one_event_each(store: Arc<dyn Store>) {
    use sha2::{Digest, Sha256};
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    let poll = wagate_domain::Poll::new(
        "Lunch?".into(),
        vec!["Pizza".into(), "Sushi".into(), "Tacos".into()],
        2,
    )
    .unwrap();
    let rich = wagate_domain::RichContent::Poll(poll);
    let polls = [inbound("P1", InboundBody::Rich(rich.clone()), false)];
    assert_eq!(store.record_inbound(&s.id, &polls, now).await.unwrap(), 1);
    let hash = |o: &str| <[u8; 32]>::from(Sha256::digest(o.as_bytes()));
    let vote = |id: &str, secs: i64, options: &[&str], target: &str| InboundRecord {
        timestamp: now + time::Duration::seconds(secs),
        ..inbound(
            id,
            InboundBody::PollVote {
                target: MessageId::parse(target).unwrap(),
                selected: options.iter().map(|o| hash(o)).collect(),
            },
            false,
        )
    };
    let votes = vec![
        vote("V1", 5, &["Tacos", "Pizza", "Nope"], "P1"),
        vote("V2", 10, &["Sushi"], "P1"),
        // Older than the vote stored: it replaces nothing.
        vote("V0", 1, &["Pizza"], "P1"),
        // Names no poll.
        vote("V3", 11, &["Pizza"], "NOPE"),
    ];
    assert_eq!(store.record_inbound(&s.id, &votes, now).await.unwrap(), 2);
    // Redelivered: nothing changes twice, no second event.
    assert_eq!(store.record_inbound(&s.id, &votes, now).await.unwrap(), 0);
    let events = store
        .read_events(&s.org, EventCursor::START, &EventFilter::default(), 100)
        .await
        .unwrap()
        .events;
    let selections: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::MessagePollVote {
                message,
                voter,
                selected,
            } => Some((message.id.to_string(), voter.to_string(), selected.clone())),
            _ => None,
        })
        .collect();
    let alice = "14155550123@s.whatsapp.net".to_owned();
    assert_eq!(
        selections,
        [
            (
                "P1".into(),
                alice.clone(),
                vec!["Pizza".into(), "Tacos".into()]
            ),
            ("P1".into(), alice.clone(), vec!["Sushi".to_owned()]),
        ]
    );
    let (message, tally) = store
        .poll_votes(&s.org, &s.id, &MessageId::parse("P1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.rich, Some(rich));
    assert_eq!(tally.len(), 1);
    assert_eq!(
        (tally[0].voter.to_string(), tally[0].selected.clone()),
        (alice, vec!["Sushi".to_owned()])
    );
    // Taken back: an empty vote.
    let back = vote("V4", 20, &[], "P1");
    assert_eq!(store.record_inbound(&s.id, &[back], now).await.unwrap(), 1);
    let (_, tally) = store
        .poll_votes(&s.org, &s.id, &MessageId::parse("P1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(tally[0].selected.is_empty());
    assert!(
        store
            .poll_votes(&s.org, &s.id, &MessageId::parse("NOPE").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

async fn ephemeral_events_are_logged_for_an_existing_session(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    let typing = EventData::ChatState {
        chat: jid("14155550123@s.whatsapp.net"),
        jid: jid("14155550123@s.whatsapp.net"),
        state: wagate_domain::ChatState::Typing,
    };
    assert!(store.record_ephemeral(&s.id, &typing, now).await.unwrap());
    let events = store
        .read_events(&s.org, EventCursor::START, &EventFilter::default(), 10)
        .await
        .unwrap()
        .events;
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].session, &events[0].data), (Some(s.id), &typing));
    assert!(
        store
            .list_messages(&s.org, &s.id, None, None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    store.delete(&s.org, &s.id).await.unwrap();
    assert!(!store.record_ephemeral(&s.id, &typing, now).await.unwrap());
}
