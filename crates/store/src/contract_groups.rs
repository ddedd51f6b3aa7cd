//! The group store's contract, on both databases (see `contract.rs`).

use std::sync::Arc;

use time::OffsetDateTime;
use wagate_domain::{
    EventType, Group, GroupJid, GroupNotice, GroupParticipant, GroupRole, GroupSettings, Jid,
    ParticipantAction,
};

// The parent's helpers (`sqlite`, `postgres`, `org`, `types`, `session`).
use super::*;

on_both_stores!(
    group_notices_keep_the_stored_groups_current_with_one_event_each,
    groups_are_replaced_on_connect_and_paged_by_jid_per_organization,
);

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

fn gjid(n: u32) -> GroupJid {
    GroupJid::parse(&format!("1203630000000{n:05}@g.us"), "jid").unwrap()
}

fn member(phone: &str, role: GroupRole) -> GroupParticipant {
    let j = jid(&format!("{phone}@s.whatsapp.net"));
    GroupParticipant {
        jid: j.clone(),
        pn: Some(j),
        lid: None,
        role,
    }
}

fn group(n: u32, members: Vec<GroupParticipant>) -> Group {
    Group {
        jid: gjid(n),
        subject: format!("Group {n}"),
        description: None,
        owner: Some(jid("14155550123@s.whatsapp.net")),
        created_at: Some(time::macros::datetime!(2026-01-01 00:00:00 UTC)),
        participants: members,
        settings: GroupSettings::default(),
    }
}

async fn group_notices_keep_the_stored_groups_current_with_one_event_each(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    let acme = org("acme");
    let g = group(1, vec![member("14155550123", GroupRole::Superadmin)]);
    let notice = |n: GroupNotice| n;
    assert!(
        store
            .record_group_notice(
                &s.id,
                &notice(GroupNotice::Joined {
                    group: Box::new(g.clone()),
                    by: None
                }),
                now
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_group(&acme, &s.id, &g.jid).await.unwrap(),
        Some(g.clone())
    );

    let bob = member("14155550199", GroupRole::Member);
    for (action, who) in [
        (ParticipantAction::Add, bob.clone()),
        (ParticipantAction::Promote, bob.clone()),
    ] {
        store
            .record_group_notice(
                &s.id,
                &GroupNotice::Participants {
                    group: g.jid.clone(),
                    action,
                    participants: vec![who],
                    by: None,
                },
                now,
            )
            .await
            .unwrap();
    }
    let stored = store
        .get_group(&acme, &s.id, &g.jid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.participants.len(), 2);
    assert_eq!(stored.participant(&bob.jid).unwrap().role, GroupRole::Admin);

    store
        .record_group_notice(
            &s.id,
            &GroupNotice::Updated {
                group: g.jid.clone(),
                subject: Some("Renamed".into()),
                description: Some(Some("About us".into())),
                settings: Some(GroupSettings {
                    announce: true,
                    locked: true,
                    approval: false,
                }),
                by: Some(bob.jid.clone()),
            },
            now,
        )
        .await
        .unwrap();
    store
        .record_group_notice(
            &s.id,
            &GroupNotice::Participants {
                group: g.jid.clone(),
                action: ParticipantAction::Leave,
                participants: vec![bob.clone()],
                by: None,
            },
            now,
        )
        .await
        .unwrap();
    let stored = store
        .get_group(&acme, &s.id, &g.jid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.subject.as_str(), stored.description.as_deref()),
        ("Renamed", Some("About us"))
    );
    assert!(stored.settings.announce && stored.settings.locked);
    assert_eq!(stored.participants.len(), 1);
    // Another organization sees nothing.
    assert_eq!(
        store.get_group(&org("other"), &s.id, &g.jid).await.unwrap(),
        None
    );

    store
        .record_group_notice(
            &s.id,
            &GroupNotice::Left {
                group: g.jid.clone(),
                by: None,
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(store.get_group(&acme, &s.id, &g.jid).await.unwrap(), None);
    assert_eq!(
        types(&*store, &acme).await,
        [
            EventType::GroupJoined,
            EventType::GroupParticipants,
            EventType::GroupParticipants,
            EventType::GroupUpdated,
            EventType::GroupParticipants,
            EventType::GroupLeft,
        ]
    );
    // A notice of a deleted session writes nothing.
    let ghost = session("acme", 9, now);
    assert!(
        !store
            .record_group_notice(
                &ghost.id,
                &GroupNotice::Left {
                    group: g.jid.clone(),
                    by: None
                },
                now
            )
            .await
            .unwrap()
    );
    assert_eq!(types(&*store, &acme).await.len(), 6);
}

async fn groups_are_replaced_on_connect_and_paged_by_jid_per_organization(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let s = session("acme", 1, now);
    store.insert(&s).await.unwrap();
    let acme = org("acme");
    let many: Vec<Group> = (1..=5)
        .rev()
        .map(|n| group(n, vec![member("14155550123", GroupRole::Admin)]))
        .collect();
    store.replace_groups(&s.id, &many, now).await.unwrap();
    let first = store
        .list_groups(&acme, &s.id, None, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first
            .items
            .iter()
            .map(|g| g.jid.clone())
            .collect::<Vec<_>>(),
        [gjid(1), gjid(2)]
    );
    let second = store
        .list_groups(&acme, &s.id, first.next.as_ref(), 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.items[0].jid, gjid(3));
    let last = store
        .list_groups(&acme, &s.id, second.next.as_ref(), 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((last.items.len(), last.next), (1, None));
    assert_eq!(last.items[0].participants.len(), 1);

    // A refresh drops what WhatsApp no longer lists and writes no event.
    let mut kept = group(2, Vec::new());
    kept.subject = "Changed".into();
    store
        .replace_groups(&s.id, std::slice::from_ref(&kept), now)
        .await
        .unwrap();
    let all = store
        .list_groups(&acme, &s.id, None, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.items, vec![kept.clone()]);
    assert!(types(&*store, &acme).await.is_empty());
    store
        .put_group(&s.id, &group(7, Vec::new()), now)
        .await
        .unwrap();
    assert_eq!(
        store
            .list_groups(&acme, &s.id, None, 100)
            .await
            .unwrap()
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(
        store
            .list_groups(&org("other"), &s.id, None, 100)
            .await
            .unwrap(),
        None
    );
    // Deleting the session deletes its groups.
    assert!(store.delete(&acme, &s.id).await.unwrap());
    store.insert(&s).await.unwrap();
    assert!(
        store
            .list_groups(&acme, &s.id, None, 100)
            .await
            .unwrap()
            .unwrap()
            .items
            .is_empty()
    );
}
