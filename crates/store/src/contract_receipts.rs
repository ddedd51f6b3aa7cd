//! Receipts of outgoing group messages, on both databases (see
//! `contract.rs`).

use std::sync::Arc;

use time::OffsetDateTime;
use wagate_domain::{
    EventType, Group, GroupJid, GroupNotice, GroupParticipant, GroupRole, GroupSettings,
    MessageStatus, Recipient,
};

// The parent's helpers (`sqlite`, `postgres`, `org`, `types`, `outgoing`,
// `session`).
use super::*;

on_both_stores!(
    a_group_message_moves_once_every_expected_member_got_there,
    a_burst_of_receipts_is_recorded_together_as_one_by_one,
    receipts_are_listed_by_recipient_per_organization,
    without_known_members_every_receipt_counts,
);

const ME: &str = "15550001111@s.whatsapp.net";
const ALICE: &str = "14155550123@s.whatsapp.net";
const ALICE_LID: &str = "123456789012345@lid";
const BOB: &str = "14155550142@s.whatsapp.net";
const CAROL: &str = "14155550199@s.whatsapp.net";
const DAVE: &str = "14155550177@s.whatsapp.net";

fn team() -> GroupJid {
    GroupJid::parse("120363025246125486@g.us", "jid").unwrap()
}

fn by_number(j: &str, role: GroupRole) -> GroupParticipant {
    GroupParticipant {
        jid: jid(j),
        pn: Some(jid(j)),
        lid: None,
        role,
    }
}

/// The team group as the store has it: Alice by LID (her number known),
/// Bob, Carol and the account.
fn team_group() -> Group {
    Group {
        jid: team(),
        subject: "Team".into(),
        description: None,
        owner: Some(jid(ALICE)),
        created_at: None,
        participants: vec![
            GroupParticipant {
                jid: jid(ALICE_LID),
                pn: Some(jid(ALICE)),
                lid: Some(jid(ALICE_LID)),
                role: GroupRole::Superadmin,
            },
            by_number(BOB, GroupRole::Member),
            by_number(CAROL, GroupRole::Member),
            by_number(ME, GroupRole::Admin),
        ],
        settings: GroupSettings::default(),
    }
}

/// A connected session of `org` (number `n`) in the team group, and an
/// outgoing text `id` to the group, accepted.
async fn sent_to_team(
    store: &dyn Store,
    org: &str,
    n: u32,
    id: &str,
    group_known: bool,
) -> (SessionId, Message) {
    let now = OffsetDateTime::now_utc();
    let mut s = session(org, n, now);
    s.jid = Some(jid(ME));
    store.insert(&s).await.unwrap();
    if group_known {
        store
            .record_group_notice(
                &s.id,
                &GroupNotice::Joined {
                    group: Box::new(team_group()),
                    by: None,
                },
                now,
            )
            .await
            .unwrap();
    }
    let mut m = outgoing(&s.id, id, now);
    m.chat = team().as_jid().clone();
    m.to = m.chat.clone();
    m.from = jid(ME);
    assert_eq!(
        store
            .accept_outgoing(&s.org, &m, None, None, 10)
            .await
            .unwrap(),
        Accepted::New(m.clone())
    );
    (s.id, m)
}

fn change(status: MessageStatus) -> StatusChange {
    StatusChange {
        status,
        at: OffsetDateTime::now_utc(),
        error: None,
    }
}

/// Who, with what status, in the order listed.
/// WhatsApp acknowledged the messages `ids`: they are `sent`.
async fn mark_sent(store: &dyn Store, s: &SessionId, ids: &[MessageId]) {
    store
        .update_status(
            s,
            ids,
            &change(MessageStatus::Sent),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
}

async fn listed(store: &dyn Store, s: &SessionId, m: &Message) -> Vec<(String, MessageStatus)> {
    store
        .receipts(&org("acme"), s, &m.id, None, 100)
        .await
        .unwrap()
        .unwrap()
        .items
        .iter()
        .map(|r| (r.recipient.key().to_string(), r.status))
        .collect()
}

async fn a_group_message_moves_once_every_expected_member_got_there(store: Arc<dyn Store>) {
    let (s, m) = sent_to_team(&*store, "acme", 1, "GRP1", true).await;
    let ids = [m.id.clone()];
    let receipt = |who: &str, status| {
        let store = store.clone();
        let who = Recipient::of(&jid(who));
        let ids = ids.clone();
        async move {
            store
                .record_receipt(&s, &ids, &who, &change(status), OffsetDateTime::now_utc())
                .await
                .unwrap()
                .iter()
                .map(|m| m.status)
                .collect::<Vec<_>>()
        }
    };
    // Every member but the account is expected, none has it yet.
    use MessageStatus::{Delivered, Pending, Read};
    assert_eq!(
        listed(&*store, &s, &m).await,
        vec![
            (ALICE.into(), Pending),
            (BOB.into(), Pending),
            (CAROL.into(), Pending)
        ]
    );
    mark_sent(&*store, &s, &ids).await;

    // Alice's receipt names her by LID; twice is once.
    assert_eq!(receipt(ALICE_LID, Delivered).await, vec![]);
    assert_eq!(receipt(ALICE_LID, Delivered).await, vec![]);
    assert_eq!(receipt(BOB, Delivered).await, vec![]);
    // Carol reads before her delivery receipt: she has it too, and with
    // her the last member has it.
    assert_eq!(receipt(CAROL, Read).await, vec![Delivered]);
    assert_eq!(receipt(CAROL, Read).await, vec![]);
    assert_eq!(receipt(CAROL, Delivered).await, vec![]);
    assert_eq!(receipt(ALICE, Read).await, vec![]);
    // Someone who joined after it was sent reads it: listed, not counted.
    assert_eq!(receipt(DAVE, Read).await, vec![]);
    assert_eq!(receipt(BOB, Read).await, vec![Read]);
    assert_eq!(
        listed(&*store, &s, &m).await,
        vec![
            (ALICE.into(), Read),
            (BOB.into(), Read),
            (DAVE.into(), Read),
            (CAROL.into(), Read)
        ]
    );
    let got = store
        .get_message(&org("acme"), &s, &m.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, Read);
    assert!(got.status_at.delivered <= got.status_at.read);
    // One event per status the message passed, however many receipts.
    assert_eq!(
        types(&*store, &org("acme")).await,
        vec![
            EventType::GroupJoined,
            EventType::MessageSent,
            EventType::MessageStatus,
            EventType::MessageStatus,
            EventType::MessageStatus
        ]
    );
    let carol = store
        .receipts(&org("acme"), &s, &m.id, Some(&jid(BOB)), 100)
        .await
        .unwrap()
        .unwrap()
        .items;
    let carol = carol
        .iter()
        .find(|r| r.recipient.key() == &jid(CAROL))
        .unwrap();
    assert_eq!(carol.status_at.delivered, carol.status_at.read);

    // A receipt of a one-to-one message moves it directly.
    let one = outgoing(&s, "ONE1", OffsetDateTime::now_utc());
    store
        .accept_outgoing(&org("acme"), &one, None, None, 10)
        .await
        .unwrap();
    let moved = store
        .record_receipt(
            &s,
            std::slice::from_ref(&one.id),
            &Recipient::of(&one.to),
            &change(Delivered),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert_eq!(moved[0].status, Delivered);
}

async fn a_burst_of_receipts_is_recorded_together_as_one_by_one(store: Arc<dyn Store>) {
    use MessageStatus::{Delivered, Read};
    let (s, m) = sent_to_team(&*store, "acme", 1, "GRP4", true).await;
    let ids = vec![m.id.clone()];
    mark_sent(&*store, &s, &ids).await;
    let receipt = |who: &str, status| ParticipantReceipt {
        ids: ids.clone(),
        participant: Recipient::of(&jid(who)),
        change: change(status),
    };
    // In one write: every member has it (Alice by LID, once twice), then
    // all but Bob read it; the message passes delivered on the way.
    let burst = [
        receipt(ALICE_LID, Delivered),
        receipt(ALICE_LID, Delivered),
        receipt(BOB, Delivered),
        receipt(CAROL, Read),
        receipt(ALICE, Read),
    ];
    let moved = store
        .record_receipts(&s, &burst, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        moved.iter().map(|m| m.status).collect::<Vec<_>>(),
        vec![Delivered]
    );
    assert_eq!(
        listed(&*store, &s, &m).await,
        vec![
            (ALICE.into(), Read),
            (BOB.into(), Delivered),
            (CAROL.into(), Read)
        ]
    );
    // The last reader in a second burst; a redelivered one changes nothing.
    let moved = store
        .record_receipts(
            &s,
            &[receipt(CAROL, Read), receipt(BOB, Read)],
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert_eq!(
        moved.iter().map(|m| m.status).collect::<Vec<_>>(),
        vec![Read]
    );
    assert_eq!(
        store
            .record_receipts(&s, &[], OffsetDateTime::now_utc())
            .await
            .unwrap(),
        vec![]
    );
    // sent, delivered, read: one event each, however many receipts.
    assert_eq!(
        types(&*store, &org("acme")).await,
        vec![
            EventType::GroupJoined,
            EventType::MessageSent,
            EventType::MessageStatus,
            EventType::MessageStatus,
            EventType::MessageStatus
        ]
    );
}

async fn receipts_are_listed_by_recipient_per_organization(store: Arc<dyn Store>) {
    let (s, m) = sent_to_team(&*store, "acme", 1, "GRP2", true).await;
    let first = store
        .receipts(&org("acme"), &s, &m.id, None, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.next, Some(jid(BOB)));
    let rest = store
        .receipts(&org("acme"), &s, &m.id, first.next.as_ref(), 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].recipient.key(), &jid(CAROL));
    assert_eq!(rest.next, None);
    // Alice is listed with both her names.
    assert_eq!(first.items[0].recipient.lid, Some(jid(ALICE_LID)));
    // Another organization's message, or none: nothing.
    assert_eq!(
        store
            .receipts(&org("globex"), &s, &m.id, None, 10)
            .await
            .unwrap(),
        None
    );
    let ghost = wagate_domain::MessageId::parse("GHOST").unwrap();
    assert_eq!(
        store
            .receipts(&org("acme"), &s, &ghost, None, 10)
            .await
            .unwrap(),
        None
    );
    // A deleted session takes its receipts along.
    store.delete(&org("acme"), &s).await.unwrap();
    assert_eq!(
        store
            .receipts(&org("acme"), &s, &m.id, None, 10)
            .await
            .unwrap(),
        None
    );
}

async fn without_known_members_every_receipt_counts(store: Arc<dyn Store>) {
    let (s, m) = sent_to_team(&*store, "acme", 1, "GRP3", false).await;
    assert!(listed(&*store, &s, &m).await.is_empty());
    let moved = store
        .record_receipt(
            &s,
            std::slice::from_ref(&m.id),
            &Recipient::of(&jid(BOB)),
            &change(MessageStatus::Delivered),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert_eq!(moved[0].status, MessageStatus::Delivered);
    assert_eq!(
        listed(&*store, &s, &m).await,
        vec![(BOB.into(), MessageStatus::Delivered)]
    );
}
