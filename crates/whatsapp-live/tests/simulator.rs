//! The live adapter against the protocol simulator (`wagate-whatsapp-sim`):
//! a real whatsapp-rust client, a real socket, no WhatsApp.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::{WaitingSink, is_unreachable, session, start};
use wagate_domain::{Absence, Jid, PhoneNumber, PictureType, SessionErrorCode};
use wagate_whatsapp_port::{SessionEventKind, WhatsAppError, WhatsAppPort};
use wagate_whatsapp_sim::{Simulator, World};

const PHONE: &str = "15550001111";

fn world() -> World {
    World::from_json(
        r#"{
          "phone": "15550001111",
          "pushName": "Wagate Sim",
          "contacts": {
            "14155550123@s.whatsapp.net": {
              "picture": { "id": "1712345678", "url": "https://pps.whatsapp.net/v/t61/abc.jpg",
                           "directPath": "/v/t61/abc.jpg", "hash": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=" },
              "about": { "text": "Hey there!", "setAt": "2024-01-01T00:00:00Z" },
              "lid": "123456789012345@lid"
            },
            "14155550199@s.whatsapp.net": {},
            "14155550155@s.whatsapp.net": {
              "picture": { "id": "1700000000", "url": "https://pps.whatsapp.net/v/t61/hidden.jpg" },
              "about": { "text": "private" },
              "hidden": ["picture", "about"]
            }
          }
        }"#,
    )
    .unwrap()
}

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

fn connected_as(kind: &SessionEventKind) -> Option<Jid> {
    match kind {
        SessionEventKind::Connected { jid, .. } => Some(jid.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_look_up_block_restart_unlink_and_recover() {
    let sim = Simulator::start(world()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.db");
    let sink = Arc::new(WaitingSink::default());
    let live = start(sim.url(), &store, sink.clone()).await;
    let s = session(1);
    let me = jid("15550001111@s.whatsapp.net");

    // Pairing: a QR code, scanned by the simulated phone.
    live.connect(&s, None).await.unwrap();
    let (at, _) = sink
        .wait_after(0, &s, "Pairing", |k| *k == SessionEventKind::Pairing)
        .await;
    let qr = live.qr(&s).await.unwrap();
    assert!(qr.code.starts_with("2@"), "a WhatsApp QR payload");
    sim.admin().scan_qr(&qr.code, PHONE).await.unwrap();
    let (at, _) = sink
        .wait_after(at, &s, "Connecting", |k| *k == SessionEventKind::Connecting)
        .await;
    let (_, kind) = sink
        .wait_after(at, &s, "Connected", |k| connected_as(k).is_some())
        .await;
    assert_eq!(
        kind,
        SessionEventKind::Connected {
            jid: me.clone(),
            push_name: Some("Wagate Sim".into())
        }
    );
    assert_eq!(live.qr(&s).await.unwrap_err(), WhatsAppError::NotPairing);

    // Contacts.
    let friend = jid("14155550123@s.whatsapp.net");
    let pic = live
        .profile_picture(&s, &friend, PictureType::Image)
        .await
        .unwrap();
    assert_eq!(pic.id, "1712345678");
    assert_eq!(pic.url, "https://pps.whatsapp.net/v/t61/abc.jpg");
    assert_eq!(pic.kind, PictureType::Image);
    let preview = live
        .profile_picture(&s, &friend, PictureType::Preview)
        .await
        .unwrap();
    assert_eq!(preview.kind, PictureType::Preview);
    assert_eq!(
        live.profile_picture(&s, &jid("14155550155@s.whatsapp.net"), PictureType::Image)
            .await
            .unwrap_err(),
        WhatsAppError::NotFound(Some(Absence::Hidden))
    );
    assert_eq!(
        live.profile_picture(&s, &jid("14155550199@s.whatsapp.net"), PictureType::Image)
            .await
            .unwrap_err(),
        WhatsAppError::NotFound(Some(Absence::NotSet))
    );
    let about = live.about(&s, &friend).await.unwrap();
    assert_eq!(about.text, "Hey there!");
    assert_eq!(
        about.set_at.map(|t| t.unix_timestamp()),
        Some(1_704_067_200)
    );
    assert_eq!(
        live.about(&s, &jid("14155550155@s.whatsapp.net"))
            .await
            .unwrap_err(),
        WhatsAppError::NotFound(Some(Absence::Hidden))
    );
    assert!(matches!(
        live.about(&s, &jid("14155550199@s.whatsapp.net"))
            .await
            .unwrap_err(),
        WhatsAppError::NotFound(_)
    ));

    // Block twice (the first learns the LID by usync), unblock twice.
    live.block(&s, &friend).await.unwrap();
    live.block(&s, &friend).await.unwrap();
    let list = live.blocklist(&s).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].jid, jid("123456789012345@lid"));
    assert_eq!(list[0].phone_jid, Some(friend.clone()));
    live.unblock(&s, &friend).await.unwrap();
    live.unblock(&s, &friend).await.unwrap();
    assert!(live.blocklist(&s).await.unwrap().is_empty());

    // A new adapter on the same key store logs in without a QR code.
    live.shutdown().await;
    drop(live);
    let live = start(sim.url(), &store, sink.clone()).await;
    let mark = sink.mark();
    live.connect(&s, Some(me.clone())).await.unwrap();
    let (at, kind) = sink
        .wait_after(mark, &s, "Connected after restart", |k| {
            connected_as(k).is_some()
        })
        .await;
    assert_eq!(connected_as(&kind), Some(me.clone()));
    assert!(
        !sink.events()[mark..at]
            .iter()
            .any(|e| e.kind == SessionEventKind::Pairing),
        "no QR code after a restart"
    );

    // The phone unlinks us: LoggedOut, keys erased, no reconnect.
    sim.admin().logout(PHONE).unwrap();
    let (at, kind) = sink
        .wait_after(at, &s, "LoggedOut", |k| {
            matches!(k, SessionEventKind::LoggedOut { .. })
        })
        .await;
    let SessionEventKind::LoggedOut { error: Some(e) } = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(e.code, SessionErrorCode::LoggedOutByPhone);
    assert_eq!(
        live.blocklist(&s).await.unwrap_err(),
        WhatsAppError::NotConnected
    );

    // Link again, this time by phone-number code.
    live.connect(&s, None).await.unwrap();
    let (at, _) = sink
        .wait_after(at, &s, "Pairing again", |k| *k == SessionEventKind::Pairing)
        .await;
    let code = live
        .pairing_code(&s, &PhoneNumber::parse(PHONE).unwrap())
        .await
        .unwrap();
    assert_eq!(code.as_str().len(), 9, "ABCD-EFGH");
    let same = live
        .pairing_code(&s, &PhoneNumber::parse(PHONE).unwrap())
        .await
        .unwrap();
    assert_eq!(same, code, "a valid code is reused");
    sim.admin()
        .pair_code(PHONE, &code.as_str().replace('-', ""))
        .await
        .unwrap();
    let (at, _) = sink
        .wait_after(at, &s, "Connected by code", |k| connected_as(k).is_some())
        .await;

    // The network drops the connection: Disconnected, then back by itself.
    assert_eq!(sim.admin().drop_connections(PHONE), 1);
    let (at, _) = sink
        .wait_after(at, &s, "Disconnected", is_unreachable)
        .await;
    let (at, _) = sink
        .wait_after(at, &s, "Connected again", |k| connected_as(k).is_some())
        .await;
    live.blocklist(&s).await.unwrap();

    // The server goes away: Disconnected with `unreachable` (the connection
    // lost, then the server not reachable at all), no crash, no hang.
    sim.shutdown().await;
    let (at, _) = sink.wait_after(at, &s, "unreachable", is_unreachable).await;
    let (_, kind) = sink
        .wait_after(at + 1, &s, "could not reach", |k| {
            matches!(k, SessionEventKind::Disconnected { error: Some(e) }
                if e.code == SessionErrorCode::Unreachable && e.message.contains("could not reach"))
        })
        .await;
    assert!(is_unreachable(&kind));
    assert_eq!(
        live.about(&s, &friend).await.unwrap_err(),
        WhatsAppError::NotConnected
    );
    live.shutdown().await;
}

/// After a restart, logins take their turn: with one place
/// (`logins_at_once = 1`), a session's login reaches WhatsApp only once
/// the one before it is connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_wait_their_turn() {
    let sim = Simulator::start(world()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.db");
    let sink = Arc::new(WaitingSink::default());
    let live = start(sim.url(), &store, sink.clone()).await;
    let phones = ["15550002001", "15550002002", "15550002003"];
    let mut linked = Vec::new();
    for (n, phone) in (1..).zip(phones) {
        let s = session(n);
        link(&live, &sim, &sink, &s, phone).await;
        linked.push((s, jid(&format!("{phone}@s.whatsapp.net"))));
    }
    live.shutdown().await;

    let restarted_at = common::unix_ms();
    let sink = Arc::new(WaitingSink::default());
    let config = wagate_whatsapp_live::LiveConfig {
        url: Some(sim.url()),
        version: Some(common::VERSION),
        store: wagate_whatsapp_live::KeyStoreLocation::Sqlite(store.clone()),
    };
    let options = wagate_whatsapp_live::LiveOptions {
        logins_at_once: 1,
        ..common::fast_options()
    };
    let live = wagate_whatsapp_live::LiveWhatsApp::start_with(
        config,
        sink.clone(),
        Arc::new(wagate_domain::SystemClock),
        options,
    )
    .await
    .unwrap();
    for (s, me) in &linked {
        live.connect(s, Some(me.clone())).await.unwrap();
    }
    for (s, _) in &linked {
        sink.wait_after(0, s, "Connected", |k| connected_as(k).is_some())
            .await;
    }
    let connected = sink.connected_ms();
    let mut opened: Vec<u64> = sim
        .admin()
        .logins()
        .devices
        .iter()
        .flat_map(|d| d.logins.iter().map(|l| l.opened_at_ms))
        .filter(|at| *at >= restarted_at)
        .collect();
    opened.sort_unstable();
    assert_eq!(
        (opened.len(), connected.len()),
        (3, 3),
        "{opened:?} {connected:?}"
    );
    for k in 1..3 {
        assert!(
            opened[k] >= connected[k - 1],
            "login {k} opened at {} before login {} was connected at {}",
            opened[k],
            k - 1,
            connected[k - 1]
        );
    }
    live.shutdown().await;
}

/// Links `s` to `phone` by QR code and waits until it is connected.
async fn link(
    live: &wagate_whatsapp_live::LiveWhatsApp,
    sim: &wagate_whatsapp_sim::SimulatorHandle,
    sink: &WaitingSink,
    s: &wagate_domain::SessionId,
    phone: &str,
) {
    let from = sink.mark();
    live.connect(s, None).await.unwrap();
    sink.wait_after(from, s, "Pairing", |k| *k == SessionEventKind::Pairing)
        .await;
    let qr = live.qr(s).await.unwrap();
    sim.admin().scan_qr(&qr.code, phone).await.unwrap();
    sink.wait_after(from, s, "Connected", |k| connected_as(k).is_some())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_call_delays_nobody() {
    let world = World::from_json(
        r#"{
          "phone": "15550001111",
          "accounts": [ { "phone": "15550002222" } ],
          "contacts": {
            "14155550123@s.whatsapp.net": {
              "picture": { "id": "1712345678", "url": "https://pps.whatsapp.net/v/t61/abc.jpg" },
              "lid": "123456789012345@lid"
            },
            "14155550100@s.whatsapp.net": { "fail": "timeout" },
            "14155550101@s.whatsapp.net": { "fail": "unavailable" }
          }
        }"#,
    )
    .unwrap();
    let sim = Simulator::start(world).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(WaitingSink::default());
    let live = start(sim.url(), &dir.path().join("keys.db"), sink.clone()).await;
    let (a, b) = (session(1), session(2));
    link(&live, &sim, &sink, &a, PHONE).await;
    link(&live, &sim, &sink, &b, "15550002222").await;

    // A call WhatsApp never answers…
    let stuck = {
        let live = live.clone();
        tokio::spawn(async move {
            live.profile_picture(&a, &jid("14155550100@s.whatsapp.net"), PictureType::Image)
                .await
        })
    };
    // …delays neither the other session nor other calls of the same one.
    let friend = jid("14155550123@s.whatsapp.net");
    for s in [&b, &a] {
        let pic = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            live.profile_picture(s, &friend, PictureType::Image),
        )
        .await
        .expect("not delayed by the stuck call")
        .unwrap();
        assert_eq!(pic.id, "1712345678");
    }
    assert!(matches!(
        live.profile_picture(&b, &jid("14155550101@s.whatsapp.net"), PictureType::Image)
            .await
            .unwrap_err(),
        WhatsAppError::Unavailable(_)
    ));
    assert!(!stuck.is_finished());

    // Disconnecting the session with the stuck call is prompt; the call
    // then fails instead of hanging.
    tokio::time::timeout(std::time::Duration::from_secs(20), live.disconnect(&a))
        .await
        .expect("disconnect is not held up by a stuck call")
        .unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(20), stuck)
        .await
        .expect("the stuck call ends with its connection")
        .unwrap();
    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        live.blocklist(&a).await.unwrap_err(),
        WhatsAppError::NotConnected
    );
    live.blocklist(&b).await.unwrap();
    live.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_while_disconnected_still_unlinks_the_device() {
    let sim = Simulator::start(world()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(WaitingSink::default());
    let live = start(sim.url(), &dir.path().join("keys.db"), sink.clone()).await;
    let s = session(1);
    link(&live, &sim, &sink, &s, PHONE).await;
    assert_eq!(sim.admin().account(PHONE).unwrap().devices.len(), 1);

    live.disconnect(&s).await.unwrap();
    let mark = sink.mark();
    live.logout(&s).await.unwrap();
    assert_eq!(sink.mark(), mark, "no event for a logout we asked for");
    assert!(
        sim.admin().account(PHONE).unwrap().devices.is_empty(),
        "the phone no longer lists the device"
    );
    // The keys are gone: connecting again pairs anew.
    link(&live, &sim, &sink, &s, PHONE).await;
    assert_eq!(sim.admin().account(PHONE).unwrap().devices.len(), 1);

    // Logging out while connected tells WhatsApp through the live client.
    let mark = sink.mark();
    live.logout(&s).await.unwrap();
    assert_eq!(sink.mark(), mark, "no event for a logout we asked for");
    assert!(sim.admin().account(PHONE).unwrap().devices.is_empty());
    assert_eq!(
        live.blocklist(&s).await.unwrap_err(),
        WhatsAppError::NotConnected
    );
    live.remove(&s).await.unwrap();
    live.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_the_server_gone_still_erases_the_keys() {
    let sim = Simulator::start(world()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(WaitingSink::default());
    let live = start(sim.url(), &dir.path().join("keys.db"), sink.clone()).await;
    let s = session(1);
    link(&live, &sim, &sink, &s, PHONE).await;
    live.disconnect(&s).await.unwrap();
    sim.shutdown().await;

    tokio::time::timeout(std::time::Duration::from_secs(20), live.logout(&s))
        .await
        .expect("logout does not hang on an unreachable server")
        .unwrap();
    // The keys are gone: the recorded link cannot be used any more.
    let mark = sink.mark();
    live.connect(&s, Some(jid("15550001111@s.whatsapp.net")))
        .await
        .unwrap();
    let events = sink.events();
    assert!(
        matches!(&events[mark..], [e] if matches!(&e.kind,
            SessionEventKind::LoggedOut { error: Some(err) } if err.code == SessionErrorCode::Internal)),
        "{events:#?}"
    );
    live.shutdown().await;
}
