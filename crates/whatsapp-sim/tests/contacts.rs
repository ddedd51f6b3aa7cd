//! Contact operations of a stock whatsapp-rust client against the
//! simulator's world: pictures, about texts, LID lookup, blocking.

// Integration tests: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{PHONE, WORLD, admin_get, init_logs, paired_bot};
use wagate_whatsapp_sim::{Simulator, World};
use whatsapp_rust::wacore::iq::contacts::ProfilePictureSpec;
use whatsapp_rust::{IqError, Jid};

fn server_error_code(r: Result<impl std::fmt::Debug, IqError>) -> u16 {
    match r {
        Err(IqError::ServerError { code, .. }) => code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictures_about_and_blocking() {
    init_logs();
    let sim = Simulator::start(World::from_json(WORLD).unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bot = paired_bot(&sim, &dir.path().join("wa.db"), PHONE).await;
    let client = bot.client.clone();

    let visible: Jid = "14155550123@s.whatsapp.net".parse().unwrap();
    let hidden: Jid = "14155550155@s.whatsapp.net".parse().unwrap();
    let none: Jid = "14155550199@s.whatsapp.net".parse().unwrap();

    // Pictures: full image and preview of a visible one.
    let pic = client
        .contacts()
        .get_profile_picture(&visible, false)
        .await
        .unwrap()
        .expect("a picture");
    assert_eq!(pic.id, "1712345678");
    assert_eq!(pic.url, "https://pps.whatsapp.net/v/t61/abc.jpg");
    assert_eq!(pic.direct_path.as_deref(), Some("/v/t61/abc.jpg"));
    let preview = client
        .contacts()
        .get_profile_picture(&visible, true)
        .await
        .unwrap();
    assert!(preview.is_some());
    // Hidden and missing ones: none for the high-level call, and distinct
    // server errors on the IQ itself.
    assert!(
        client
            .contacts()
            .get_profile_picture(&hidden, false)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        server_error_code(client.execute(ProfilePictureSpec::full(&hidden)).await),
        401
    );
    assert_eq!(
        server_error_code(client.execute(ProfilePictureSpec::full(&none)).await),
        404
    );

    // Contacts set to fail: 503, or no answer at all.
    let unavailable: Jid = "14155550101@s.whatsapp.net".parse().unwrap();
    let slow: Jid = "14155550100@s.whatsapp.net".parse().unwrap();
    assert_eq!(
        server_error_code(client.execute(ProfilePictureSpec::full(&unavailable)).await),
        503
    );
    let r = client
        .execute(ProfilePictureSpec::full(&slow).with_timeout(Duration::from_millis(500)))
        .await;
    assert!(matches!(r, Err(IqError::Timeout)), "{r:?}");

    // About (and the LID) through usync.
    let infos = client
        .contacts()
        .get_user_info(&[visible.clone(), hidden.clone()])
        .await
        .unwrap();
    let info = infos.get(&visible).expect("info of the visible contact");
    assert_eq!(info.status.as_deref(), Some("Hey there!"));
    assert_eq!(
        info.lid.as_ref().map(ToString::to_string).as_deref(),
        Some("123456789012345@lid")
    );
    let info = infos.get(&hidden).expect("info of the hidden contact");
    assert_eq!(info.status, None);
    assert_eq!(info.status_error.as_ref().and_then(|e| e.code), Some(401));

    // Registration and LID lookup by phone number.
    let stranger: Jid = "19998887777@s.whatsapp.net".parse().unwrap();
    let found = client
        .contacts()
        .is_on_whatsapp(&[visible.clone(), stranger.clone()])
        .await
        .unwrap();
    let on = |j: &Jid| found.iter().find(|r| r.jid.user == j.user);
    assert!(on(&visible).is_some_and(|r| r.is_registered));
    assert_eq!(
        on(&visible)
            .and_then(|r| r.lid.as_ref())
            .map(ToString::to_string)
            .as_deref(),
        Some("123456789012345@lid")
    );
    assert!(!on(&stranger).is_some_and(|r| r.is_registered));

    // Block twice, unblock twice: idempotent, the phone sees one entry.
    client.blocking().block(&visible).await.unwrap();
    client.blocking().block(&visible).await.unwrap();
    let (status, account) = admin_get(&sim.admin_url(), &format!("/accounts/{PHONE}")).await;
    assert_eq!(status, 200);
    let list = account["blocklist"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{account}");
    assert_eq!(list[0]["jid"], "123456789012345@lid");
    assert_eq!(list[0]["pnJid"], "14155550123@s.whatsapp.net");
    let entries = client.blocking().get_blocklist().await.unwrap();
    assert_eq!(entries.len(), 1);
    assert!(client.blocking().is_blocked(&visible).await.unwrap());

    client.blocking().unblock(&visible).await.unwrap();
    client.blocking().unblock(&visible).await.unwrap();
    let (_, account) = admin_get(&sim.admin_url(), &format!("/accounts/{PHONE}")).await;
    assert_eq!(
        account["blocklist"].as_array().unwrap().len(),
        0,
        "{account}"
    );
    assert!(!client.blocking().is_blocked(&visible).await.unwrap());

    bot.stop().await;
    sim.shutdown().await;
}
