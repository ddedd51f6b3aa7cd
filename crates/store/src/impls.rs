//! The store traits, implemented once for both databases by
//! [`store_traits!`]: every method opens a connection or a transaction the
//! backend's way and runs the shared statements of [`conn`](crate::conn).
//!
//! A backend type provides, as inherent methods:
//! - `reader()`, `writer()`: a pooled connection to read with, to write one
//!   statement with; `begin()`: a write transaction;
//! - `commit_with_events(tx, org, session, events, now)`: appends the events
//!   (and their deliveries), commits and tells the commit listeners;
//!   `commit_queued(tx, org)`: commits deliveries queued without events;
//! - `fence_write(tx, session, observed)`: checks, before a session write,
//!   that this process still owns the session (a write the WhatsApp side
//!   makes, `observed`; PostgreSQL with leases only);
//! - `session_moved(from, to)`: a session's status changed (or it came or
//!   went), for stores that keep counts;
//! - `announce(what)`: a cached record changed (after the commit), for
//!   stores other processes share;
//! - what differs between the databases: `sessions_to_resume()`,
//!   `status_counts()`, `due_webhooks(now)`, `next_due_at()`.

/// The events one session's write appends: its organization, the session
/// (if any), the events (see `commit_with_events_of`).
pub(crate) type EventsOf<'a> = (
    &'a wagate_domain::OrgId,
    Option<&'a wagate_domain::SessionId>,
    &'a [wagate_domain::EventData],
);

/// Implements [`SessionRegistry`](crate::SessionRegistry),
/// [`ApiKeyStore`](crate::ApiKeyStore), [`EventLog`](crate::EventLog),
/// [`WebhookStore`](crate::WebhookStore),
/// [`MessageStore`](crate::MessageStore) and
/// [`GroupStore`](crate::GroupStore) for a backend type.
macro_rules! store_traits {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use time::OffsetDateTime;
            use wagate_domain::{
                ApiKey, ApiKeyId, Delivery, Event, EventCursor, EventData, EventFilter, Jid,
                MediaInfo, Message, MessageId, NewApiKey, OrgId, Page, PageRequest, PollVote,
                Recipient, Session, SessionId, SessionStatus, Webhook, WebhookId, WebhookSecret,
            };

            use $crate::conn;
            use $crate::messages::{
                Accepted, IdempotencyClaim, InboundRecord, MediaSource, MessagePage, MessageStore,
                ParticipantReceipt, ReceiptPage, StatusChange,
            };
            use $crate::rows::db_err;
            use $crate::{
                ApiKeyStore, DueDelivery, DueWebhook, EventLog, EventPage, FinishedAttempt,
                SessionPatch, SessionRegistry, StoreError, WebhookPatch, WebhookStore,
            };

            impl $store {
                /// Reads the session (locked), applies the patch
                /// ([`SessionPatch::apply`]), writes it and the events it
                /// causes with their deliveries, in one transaction.
                async fn patch(
                    &self,
                    org: Option<&OrgId>,
                    id: &SessionId,
                    patch: &SessionPatch,
                    now: OffsetDateTime,
                ) -> Result<Option<Session>, StoreError> {
                    let mut tx = self.begin().await?;
                    self.fence_write(&mut tx, id, org.is_none()).await?;
                    let Some((current, next, events)) =
                        conn::patch_session(&mut *tx, org, id, patch, now).await?
                    else {
                        return Ok(None);
                    };
                    if next.is_none() && events.is_empty() {
                        // What was read may be another writer's work not
                        // yet committed (SQLite's group commit): answer
                        // once it is.
                        tx.rollback().await.map_err(db_err)?;
                        return Ok(Some(current));
                    }
                    self.commit_with_events(tx, &current.org, Some(id), &events, now)
                        .await?;
                    if let Some(next) = &next {
                        self.session_moved(Some(current.status), Some(next.status));
                        self.announce($crate::Invalidation::Session(*id)).await;
                    }
                    Ok(Some(next.unwrap_or(current)))
                }
            }

            #[async_trait]
            impl SessionRegistry for $store {
                async fn insert(&self, s: &Session) -> Result<(), StoreError> {
                    conn::insert_session(&mut *self.writer().await?, s).await?;
                    self.session_moved(None, Some(s.status));
                    Ok(())
                }

                async fn get(
                    &self,
                    org: &OrgId,
                    id: &SessionId,
                ) -> Result<Option<Session>, StoreError> {
                    conn::fetch_session(&mut *self.reader().await?, Some(org), id, false).await
                }

                async fn list(
                    &self,
                    org: &OrgId,
                    page: PageRequest,
                ) -> Result<Page<Session>, StoreError> {
                    conn::list_sessions(&mut *self.reader().await?, org, page).await
                }

                async fn update(
                    &self,
                    org: &OrgId,
                    id: &SessionId,
                    patch: &SessionPatch,
                    now: OffsetDateTime,
                ) -> Result<Option<Session>, StoreError> {
                    self.patch(Some(org), id, patch, now).await
                }

                async fn record_observed(
                    &self,
                    id: &SessionId,
                    patch: &SessionPatch,
                    now: OffsetDateTime,
                ) -> Result<Option<Session>, StoreError> {
                    self.patch(None, id, patch, now).await
                }

                async fn record_observed_all(
                    &self,
                    patches: &[(SessionId, SessionPatch)],
                    now: OffsetDateTime,
                ) -> Result<Vec<Result<Option<Session>, StoreError>>, StoreError> {
                    let mut out = Vec::with_capacity(patches.len());
                    if patches.is_empty() {
                        return Ok(out);
                    }
                    let mut tx = self.begin().await?;
                    // (session, status before if the row changed, events).
                    let mut changed = Vec::new();
                    for (id, patch) in patches {
                        match self.fence_write(&mut tx, id, true).await {
                            Ok(()) => {}
                            Err(StoreError::Fenced) => {
                                out.push(Err(StoreError::Fenced));
                                continue;
                            }
                            Err(e) => return Err(e),
                        }
                        match conn::patch_session(&mut *tx, None, id, patch, now).await? {
                            None => out.push(Ok(None)),
                            Some((current, None, events)) if events.is_empty() => {
                                out.push(Ok(Some(current)));
                            }
                            Some((current, next, events)) => {
                                let from = next.is_some().then_some(current.status);
                                let s = next.unwrap_or(current);
                                changed.push((s.clone(), from, events));
                                out.push(Ok(Some(s)));
                            }
                        }
                    }
                    let all: Vec<$crate::impls::EventsOf<'_>> = changed
                        .iter()
                        .map(|(s, _, events)| (&s.org, Some(&s.id), events.as_slice()))
                        .collect();
                    self.commit_with_events_of(tx, &all, now).await?;
                    for (s, from, _) in &changed {
                        if let Some(from) = *from {
                            self.session_moved(Some(from), Some(s.status));
                            self.announce($crate::Invalidation::Session(s.id)).await;
                        }
                    }
                    Ok(out)
                }

                async fn delete(&self, org: &OrgId, id: &SessionId) -> Result<bool, StoreError> {
                    let mut tx = self.begin().await?;
                    let Some(status) = conn::delete_session(&mut *tx, org, id).await? else {
                        return Ok(false);
                    };
                    let now = OffsetDateTime::now_utc();
                    self.commit_with_events(tx, org, Some(id), &[EventData::SessionDeleted], now)
                        .await?;
                    self.session_moved(status, None);
                    self.announce($crate::Invalidation::Session(*id)).await;
                    Ok(true)
                }

                async fn to_resume(&self) -> Result<Vec<Session>, StoreError> {
                    self.sessions_to_resume().await
                }

                async fn count_by_status(&self) -> Result<Vec<(SessionStatus, u64)>, StoreError> {
                    self.status_counts().await
                }

                async fn ping(&self) -> Result<(), StoreError> {
                    conn::ping(&mut *self.reader().await?).await
                }
            }

            #[async_trait]
            impl ApiKeyStore for $store {
                async fn insert_key(&self, new: &NewApiKey) -> Result<(), StoreError> {
                    conn::insert_key(&mut *self.writer().await?, new).await
                }

                async fn find_by_hash(
                    &self,
                    hash: &[u8; 32],
                ) -> Result<Option<ApiKey>, StoreError> {
                    conn::find_key(&mut *self.reader().await?, hash).await
                }

                async fn list_keys(&self, org: &OrgId) -> Result<Vec<ApiKey>, StoreError> {
                    conn::list_keys(&mut *self.reader().await?, org).await
                }

                async fn revoke_key(
                    &self,
                    org: Option<&OrgId>,
                    id: &ApiKeyId,
                    now: OffsetDateTime,
                ) -> Result<Option<ApiKey>, StoreError> {
                    let revoked =
                        conn::revoke_key(&mut *self.writer().await?, org, id, now).await?;
                    if revoked.is_some() {
                        self.announce($crate::Invalidation::ApiKey(*id)).await;
                    }
                    Ok(revoked)
                }

                async fn touch_key(
                    &self,
                    id: &ApiKeyId,
                    at: OffsetDateTime,
                ) -> Result<(), StoreError> {
                    conn::touch_key(&mut *self.writer().await?, id, at).await
                }
            }

            #[async_trait]
            impl EventLog for $store {
                async fn read_events(
                    &self,
                    org: &OrgId,
                    after: EventCursor,
                    filter: &EventFilter,
                    limit: u32,
                ) -> Result<EventPage, StoreError> {
                    conn::read_events(&mut *self.reader().await?, org, after, filter, limit).await
                }

                async fn oldest_cursor(&self, org: &OrgId) -> Result<EventCursor, StoreError> {
                    let pruned = conn::pruned_through(&mut *self.reader().await?, org).await?;
                    Ok(EventCursor::from_seq(pruned))
                }

                async fn prune_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
                    let mut tx = self.begin().await?;
                    let gone = conn::prune_events(&mut *tx, before).await?;
                    tx.commit().await.map_err(db_err)?;
                    Ok(gone)
                }
            }

            #[async_trait]
            impl WebhookStore for $store {
                async fn insert_webhook(
                    &self,
                    w: &Webhook,
                    secret: &WebhookSecret,
                    max_per_org: u32,
                ) -> Result<(), StoreError> {
                    let mut tx = self.begin().await?;
                    conn::insert_webhook(&mut *tx, w, secret, max_per_org).await?;
                    tx.commit().await.map_err(db_err)?;
                    Ok(())
                }

                async fn get_webhook(
                    &self,
                    org: &OrgId,
                    id: &WebhookId,
                ) -> Result<Option<Webhook>, StoreError> {
                    conn::get_webhook(&mut *self.reader().await?, org, id, false).await
                }

                async fn list_webhooks(&self, org: &OrgId) -> Result<Vec<Webhook>, StoreError> {
                    conn::list_webhooks(&mut *self.reader().await?, org).await
                }

                async fn update_webhook(
                    &self,
                    org: &OrgId,
                    id: &WebhookId,
                    patch: &WebhookPatch,
                    now: OffsetDateTime,
                ) -> Result<Option<Webhook>, StoreError> {
                    let mut tx = self.begin().await?;
                    let updated = conn::update_webhook(&mut *tx, org, id, patch, now).await?;
                    tx.commit().await.map_err(db_err)?;
                    Ok(updated)
                }

                async fn delete_webhook(
                    &self,
                    org: &OrgId,
                    id: &WebhookId,
                ) -> Result<bool, StoreError> {
                    conn::delete_webhook(&mut *self.writer().await?, org, id).await
                }

                async fn rotate_secret(
                    &self,
                    org: &OrgId,
                    id: &WebhookId,
                    secret: &WebhookSecret,
                    old_until: OffsetDateTime,
                    now: OffsetDateTime,
                ) -> Result<bool, StoreError> {
                    let mut c = self.writer().await?;
                    conn::rotate_secret(&mut *c, org, id, secret, old_until, now).await
                }

                async fn queue_test(
                    &self,
                    org: &OrgId,
                    id: &WebhookId,
                    event: &Event,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.begin().await?;
                    if !conn::queue_test(&mut *tx, org, id, event).await? {
                        return Ok(false);
                    }
                    self.commit_queued(tx, org).await?;
                    Ok(true)
                }

                async fn replay(
                    &self,
                    org: &OrgId,
                    id: &WebhookId,
                    after: EventCursor,
                    now: OffsetDateTime,
                ) -> Result<Option<u64>, StoreError> {
                    let (mut cursor, mut n) = (after, 0);
                    // A page a transaction: no lock is held for the whole
                    // history. Each page reads the webhook again: deleted
                    // or disabled meanwhile, no more is queued.
                    loop {
                        let mut tx = self.begin().await?;
                        let Some((queued, next)) =
                            conn::replay_page(&mut *tx, org, id, cursor, now).await?
                        else {
                            return Ok(None);
                        };
                        if queued == 0 {
                            break;
                        }
                        self.commit_queued(tx, org).await?;
                        (cursor, n) = (next, n + queued);
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
                    conn::deliveries(&mut *self.reader().await?, org, id, before, limit).await
                }

                async fn webhooks_due(
                    &self,
                    now: OffsetDateTime,
                ) -> Result<Vec<DueWebhook>, StoreError> {
                    self.due_webhooks(now).await
                }

                async fn still_current(&self, d: &DueDelivery) -> Result<bool, StoreError> {
                    conn::still_current(&mut *self.reader().await?, d).await
                }

                async fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
                    self.next_due_at().await
                }

                async fn claim_due(
                    &self,
                    id: &WebhookId,
                    now: OffsetDateTime,
                    hold_until: OffsetDateTime,
                    limit: u32,
                ) -> Result<Vec<DueDelivery>, StoreError> {
                    let mut tx = self.begin().await?;
                    let due = conn::claim_due(&mut *tx, id, now, hold_until, limit).await?;
                    tx.commit().await.map_err(db_err)?;
                    Ok(due)
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
                    let mut tx = self.begin().await?;
                    conn::lock_webhooks_of(&mut *tx, attempts).await?;
                    for attempt in attempts {
                        conn::finish_one(&mut *tx, attempt, now, disable_after).await?;
                    }
                    tx.commit().await.map_err(db_err)?;
                    Ok(())
                }
            }

            #[async_trait]
            impl MessageStore for $store {
                async fn accept_outgoing(
                    &self,
                    org: &OrgId,
                    message: &Message,
                    media_data: Option<&[u8]>,
                    idempotency: Option<&IdempotencyClaim>,
                    max_queue: u32,
                ) -> Result<Accepted, StoreError> {
                    let mut tx = self.begin().await?;
                    let accepted = conn::accept_outgoing(
                        &mut *tx,
                        org,
                        message,
                        media_data,
                        idempotency,
                        max_queue,
                    )
                    .await?;
                    if matches!(accepted, Accepted::New(_)) {
                        tx.commit().await.map_err(db_err)?;
                    } else {
                        // A replay answers as the first time only once
                        // the first is committed.
                        tx.rollback().await.map_err(db_err)?;
                    }
                    Ok(accepted)
                }

                async fn idempotent_answer(
                    &self,
                    org: &OrgId,
                    session: &SessionId,
                    claim: &IdempotencyClaim,
                ) -> Result<Option<Accepted>, StoreError> {
                    let mut c = self.reader().await?;
                    conn::idempotent_answer(&mut *c, org, session, claim).await
                }

                async fn pending(
                    &self,
                    session: &SessionId,
                    skip: &[Jid],
                    limit: u32,
                ) -> Result<Vec<Message>, StoreError> {
                    conn::pending(&mut *self.reader().await?, session, skip, limit).await
                }

                async fn pending_media(
                    &self,
                    session: &SessionId,
                    id: &MessageId,
                ) -> Result<Option<Vec<u8>>, StoreError> {
                    conn::pending_media(&mut *self.reader().await?, session, id).await
                }

                async fn mark_handed(
                    &self,
                    session: &SessionId,
                    id: &MessageId,
                    at: OffsetDateTime,
                ) -> Result<(), StoreError> {
                    conn::mark_handed(&mut *self.writer().await?, session, id, at).await
                }

                async fn requeue_handed(
                    &self,
                    session: Option<&SessionId>,
                ) -> Result<u64, StoreError> {
                    conn::requeue_handed(&mut *self.writer().await?, session).await
                }

                async fn sessions_with_pending(&self) -> Result<Vec<SessionId>, StoreError> {
                    conn::sessions_with_pending(&mut *self.reader().await?).await
                }

                async fn record_inbound(
                    &self,
                    session: &SessionId,
                    messages: &[InboundRecord],
                    now: OffsetDateTime,
                ) -> Result<u32, StoreError> {
                    if messages.is_empty() {
                        return Ok(0);
                    }
                    let mut tx = self.begin().await?;
                    // Written for the WhatsApp side: only while this process holds the session.
                    self.fence_write(&mut tx, session, true).await?;
                    let Some((org, recorded, events)) =
                        conn::record_inbound(&mut *tx, session, messages, now).await?
                    else {
                        return Ok(0);
                    };
                    self.commit_with_events(tx, &org, Some(session), &events, now)
                        .await?;
                    Ok(recorded)
                }

                async fn record_ephemeral(
                    &self,
                    session: &SessionId,
                    data: &EventData,
                    now: OffsetDateTime,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.begin().await?;
                    // Written for the WhatsApp side: only while this process holds the session.
                    self.fence_write(&mut tx, session, true).await?;
                    let Some((org, _)) = conn::session_owner(&mut *tx, session, false).await?
                    else {
                        return Ok(false);
                    };
                    self.commit_with_events(
                        tx,
                        &org,
                        Some(session),
                        std::slice::from_ref(data),
                        now,
                    )
                    .await?;
                    Ok(true)
                }

                async fn update_status(
                    &self,
                    session: &SessionId,
                    ids: &[MessageId],
                    change: &StatusChange,
                    now: OffsetDateTime,
                ) -> Result<Vec<Message>, StoreError> {
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut tx = self.begin().await?;
                    // Written for the WhatsApp side: only while this process holds the session.
                    self.fence_write(&mut tx, session, true).await?;
                    let Some((org, changed, events)) =
                        conn::update_status(&mut *tx, session, ids, change).await?
                    else {
                        return Ok(Vec::new());
                    };
                    self.commit_with_events(tx, &org, Some(session), &events, now)
                        .await?;
                    Ok(changed)
                }

                async fn record_receipt(
                    &self,
                    session: &SessionId,
                    ids: &[MessageId],
                    participant: &Recipient,
                    change: &StatusChange,
                    now: OffsetDateTime,
                ) -> Result<Vec<Message>, StoreError> {
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut tx = self.begin().await?;
                    let Some((org, changed, events)) =
                        conn::record_receipt(&mut *tx, session, ids, participant, change).await?
                    else {
                        return Ok(Vec::new());
                    };
                    self.commit_with_events(tx, &org, Some(session), &events, now)
                        .await?;
                    Ok(changed)
                }

                async fn record_receipts(
                    &self,
                    session: &SessionId,
                    receipts: &[ParticipantReceipt],
                    now: OffsetDateTime,
                ) -> Result<Vec<Message>, StoreError> {
                    if receipts.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut tx = self.begin().await?;
                    let Some((org, changed, events)) =
                        conn::record_receipts(&mut *tx, session, receipts).await?
                    else {
                        return Ok(Vec::new());
                    };
                    self.commit_with_events(tx, &org, Some(session), &events, now)
                        .await?;
                    Ok(changed)
                }

                async fn receipts(
                    &self,
                    org: &OrgId,
                    session: &SessionId,
                    id: &MessageId,
                    after: Option<&Jid>,
                    limit: u32,
                ) -> Result<Option<ReceiptPage>, StoreError> {
                    let mut c = self.reader().await?;
                    conn::receipts(&mut *c, org, session, id, after, limit).await
                }

                async fn mark_received_read(
                    &self,
                    org: &OrgId,
                    session: &SessionId,
                    chat: &Jid,
                    ids: &[MessageId],
                    at: OffsetDateTime,
                ) -> Result<u64, StoreError> {
                    let mut c = self.writer().await?;
                    conn::mark_received_read(&mut *c, org, session, chat, ids, at).await
                }

                async fn get_message(
                    &self,
                    org: &OrgId,
                    session: &SessionId,
                    id: &MessageId,
                ) -> Result<Option<Message>, StoreError> {
                    conn::get_message(&mut *self.reader().await?, org, session, id).await
                }

                async fn list_messages(
                    &self,
                    org: &OrgId,
                    session: &SessionId,
                    chat: Option<&Jid>,
                    before: Option<u64>,
                    limit: u32,
                ) -> Result<MessagePage, StoreError> {
                    let mut c = self.reader().await?;
                    conn::list_messages(&mut *c, org, session, chat, before, limit).await
                }

                async fn media(
                    &self,
                    org: &OrgId,
                    session: &SessionId,
                    id: &MessageId,
                ) -> Result<Option<(MediaInfo, MediaSource)>, StoreError> {
                    conn::media(&mut *self.reader().await?, org, session, id).await
                }

                async fn poll_votes(
                    &self,
                    org: &OrgId,
                    session: &SessionId,
                    id: &MessageId,
                ) -> Result<Option<(Message, Vec<PollVote>)>, StoreError> {
                    crate::polls::poll_votes(&mut *self.reader().await?, org, session, id).await
                }

                async fn prune_idempotency_keys(
                    &self,
                    before: OffsetDateTime,
                ) -> Result<u64, StoreError> {
                    conn::prune_idempotency_keys(&mut *self.writer().await?, before).await
                }
            }

            #[async_trait]
            impl $crate::GroupStore for $store {
                async fn record_group_notice(
                    &self,
                    session: &SessionId,
                    notice: &wagate_domain::GroupNotice,
                    now: OffsetDateTime,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.begin().await?;
                    // Written for the WhatsApp side: only while this process holds the session.
                    self.fence_write(&mut tx, session, true).await?;
                    let Some(org) =
                        conn::apply_group_notice(&mut *tx, session, notice, now).await?
                    else {
                        return Ok(false);
                    };
                    let events = [EventData::Group(Box::new(notice.clone()))];
                    self.commit_with_events(tx, &org, Some(session), &events, now)
                        .await?;
                    Ok(true)
                }

                async fn replace_groups(
                    &self,
                    session: &SessionId,
                    groups: &[wagate_domain::Group],
                    now: OffsetDateTime,
                ) -> Result<(), StoreError> {
                    // Read first: a reconnect mostly finds what is stored,
                    // and then takes no write transaction.
                    if conn::same_groups(&mut *self.reader().await?, session, groups).await? {
                        return Ok(());
                    }
                    let mut tx = self.begin().await?;
                    // Written for the WhatsApp side: only while this process holds the session.
                    self.fence_write(&mut tx, session, true).await?;
                    if conn::replace_groups(&mut *tx, session, groups, now).await? {
                        tx.commit().await.map_err(db_err)?;
                    }
                    Ok(())
                }

                async fn put_group(
                    &self,
                    session: &SessionId,
                    group: &wagate_domain::Group,
                    now: OffsetDateTime,
                ) -> Result<(), StoreError> {
                    let mut tx = self.begin().await?;
                    // Written for the WhatsApp side: only while this process holds the session.
                    self.fence_write(&mut tx, session, true).await?;
                    if conn::session_owner(&mut *tx, session, true)
                        .await?
                        .is_some()
                    {
                        conn::put_group(&mut *tx, session, group, now).await?;
                        tx.commit().await.map_err(db_err)?;
                    }
                    Ok(())
                }

                async fn list_groups(
                    &self,
                    org: &OrgId,
                    session: &SessionId,
                    after: Option<&wagate_domain::GroupJid>,
                    limit: u32,
                ) -> Result<Option<$crate::GroupPage>, StoreError> {
                    let mut c = self.reader().await?;
                    conn::list_groups(&mut *c, org, session, after, limit).await
                }

                async fn get_group(
                    &self,
                    org: &OrgId,
                    session: &SessionId,
                    jid: &wagate_domain::GroupJid,
                ) -> Result<Option<wagate_domain::Group>, StoreError> {
                    conn::get_group(&mut *self.reader().await?, org, session, jid).await
                }
            }
        };
    };
}

pub(crate) use store_traits;
