//! End-to-end tests of the dashboard (`/ui`) in headless Chromium, driven
//! through chromedriver (W3C WebDriver), against the real application on
//! the fake WhatsApp adapter. Controls are found by role and accessible
//! name, as a screen reader finds them. Screenshots of every screen at
//! desktop and phone widths land in `target/ui-screenshots/`, with the
//! first-screen timings and transfer sizes (`performance.json`).
//!
//! Without chromium and chromedriver the tests skip with a message, unless
//! `WAGATE_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that a failure.

// Test helpers: a panic is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../contract/receiver.rs"]
mod receiver;
#[allow(dead_code, unused_macros)]
#[path = "../contract/support.rs"]
mod support;

/// The app of the browser test keeps its rows in SQLite.
const BACKEND: support::Backend = support::Backend::Sqlite;
mod webdriver;

use serde_json::{Value, json};
use wagate_domain::SessionId;

use support::{FAKE_PHONE, TestApp, json};
use webdriver::{Browser, Element};

/// The fake's contact that answers every message with `You said: …`.
const ECHO: &str = "14155550142";

/// A 1×1 PNG, base64.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// Reads the current page's first-screen time and what it loaded.
async fn measure(browser: &Browser) -> anyhow::Result<Value> {
    browser
        .until("the first screen's mark", || async {
            let v = browser
                .script(
                    "const mark = performance.getEntriesByName('wagate:first-screen')[0];
                     if (!mark) return null;
                     const nav = performance.getEntriesByType('navigation')[0];
                     const res = performance.getEntriesByType('resource')
                        .filter((r) => r.name.includes('/ui/'));
                     return {
                       firstScreenMs: mark.startTime,
                       domContentLoadedMs: nav.domContentLoadedEventEnd,
                       transferredBytes: nav.transferSize + res.reduce((n, r) => n + r.transferSize, 0),
                       decodedBytes: nav.decodedBodySize + res.reduce((n, r) => n + r.decodedBodySize, 0),
                       files: res.map((r) => ({ name: r.name, transferred: r.transferSize, decoded: r.decodedBodySize })),
                     };",
                    vec![],
                )
                .await?;
            Ok((!v.is_null()).then_some(v))
        })
        .await
}

/// The element's `naturalWidth` (0 until an image has loaded).
async fn natural_width(browser: &Browser, img: &Element) -> anyhow::Result<u64> {
    Ok(browser
        .property(img, "naturalWidth")
        .await?
        .as_u64()
        .unwrap_or(0))
}

/// The status a session's page shows.
async fn status_shown(browser: &Browser) -> anyhow::Result<String> {
    Ok(browser
        .script(
            "const b = document.querySelector('.details .badge'); return b ? b.textContent : '';",
            vec![],
        )
        .await?
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// The shown `article` (a webhook's card) named `name`.
async fn card(browser: &Browser, name: &str) -> anyhow::Result<Element> {
    browser.find(None, "article", name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_end_to_end() -> anyhow::Result<()> {
    let Some(browser) = Browser::launch().await? else {
        return Ok(());
    };
    let app = TestApp::spawn().await;
    let fake = app.fake.clone().expect("the fake adapter");
    // The phone scans only when the test says so: the QR code stays on
    // screen long enough to be seen (and photographed).
    fake.hold_scans(true);
    let token = app.key("acme", "read,send,manage,admin").await;
    let mut receiver = receiver::Receiver::start().await;
    let mut perf = serde_json::Map::new();

    // `/` leads to the dashboard, whose first screen is the sign-in.
    browser.goto(&format!("{}/", app.address)).await?;
    assert!(browser.url().await?.ends_with("/ui"), "redirected to /ui");
    perf.insert("signIn".into(), measure(&browser).await?);
    browser.find(None, "textbox", "API key").await?;
    browser.screenshots("sign-in", None).await?;

    // A wrong token shows the API's own error message.
    let wrong = app.get("/api/v1/sessions", "wgk_not_a_key").await;
    let message = json(wrong).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.fill("API key", "wgk_not_a_key").await?;
    browser.click("button", "Sign in").await?;
    browser.see(&message).await?;
    browser.screenshots("sign-in-error", None).await?;

    browser.fill("API key", &token).await?;
    browser.click("button", "Sign in").await?;
    browser.find(None, "heading", "Sessions").await?;
    browser.see("Live").await?;
    // Marks the page: a reload would lose it.
    browser
        .script("window.wagateNoReload = true;", vec![])
        .await?;

    // --- Webhooks: create one; its secret is shown once.
    browser.click("link", "Webhooks").await?;
    browser.find(None, "heading", "Webhooks").await?;
    browser.click("button", "New webhook").await?;
    let hook = receiver.url("/hook");
    browser.fill("URL", &hook).await?;
    browser.click("button", "Create").await?;
    let secret_box = browser.find(None, "region", "Signing secret").await?;
    let secret = browser.text(&secret_box).await?;
    let secret = secret
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .expect("the secret is shown")
        .to_owned();
    card(&browser, &hook).await?;
    browser.screenshots("webhooks-secret", None).await?;
    // Once: not in the list, not after coming back.
    let listed = json(app.get("/api/v1/webhooks", &token).await).await;
    assert!(!listed.to_string().contains("whsec_"));
    browser.click("link", "Sessions").await?;
    browser.find(None, "heading", "Sessions").await?;
    browser.click("link", "Webhooks").await?;
    card(&browser, &hook).await?;
    assert!(!browser.page_text().await?.contains("whsec_"));

    // --- API keys: create one (shown once), then revoke it.
    browser.click("link", "API keys").await?;
    browser.find(None, "heading", "API keys").await?;
    browser.click("button", "New API key").await?;
    browser.fill("Name", "deploy script").await?;
    let send = browser.find(None, "checkbox", "send").await?;
    browser.click_on(&send).await?;
    browser.click("button", "Create").await?;
    let key_box = browser.find(None, "region", "New API key").await?;
    let key = browser.text(&key_box).await?;
    let key = key
        .split_whitespace()
        .find(|w| w.starts_with("wgk_"))
        .expect("the key is shown")
        .to_owned();
    assert_eq!(app.get("/api/v1/sessions", &key).await.status(), 200);
    browser.see("deploy script").await?;
    browser.screenshots("api-keys", None).await?;
    let row = browser
        .until("the new key's row", || async {
            for row in browser.all(None, "tr[data-key]").await? {
                if browser.text(&row).await?.contains("deploy script") {
                    return Ok(Some(row));
                }
            }
            Ok(None)
        })
        .await?;
    browser.click_in(Some(&row), "button", "Revoke").await?;
    browser.click("button", "Revoke key").await?;
    browser.see("revoked").await?;
    assert_eq!(app.get("/api/v1/sessions", &key).await.status(), 401);

    // --- Sessions: create, connect, see the QR code, then connected.
    browser.click("link", "Sessions").await?;
    browser.click("button", "New session").await?;
    browser.fill("Name", "support line").await?;
    browser.click("button", "Create").await?;
    browser.click("link", "support line").await?;
    browser.find(None, "heading", "support line").await?;
    let id = browser.url().await?;
    let id = id.rsplit('/').next().unwrap().to_owned();
    let session = SessionId::parse(&id).expect("a session id in the URL");
    assert_eq!(status_shown(&browser).await?, "new");
    browser.click("button", "Connect").await?;
    let qr = browser.find(None, "img", "QR code").await?;
    browser
        .until("the QR code to load", || async {
            Ok((natural_width(&browser, &qr).await? > 0).then_some(()))
        })
        .await?;
    let first_src = browser.property(&qr, "src").await?;
    assert!(first_src.as_str().unwrap().starts_with("blob:"));
    assert_eq!(status_shown(&browser).await?, "pairing");
    browser
        .screenshots(
            "session-pairing",
            Some(&browser.find(None, "heading", "Link a phone").await?),
        )
        .await?;
    // WhatsApp rotates the code: the image follows.
    assert!(fake.rotate_qr(&session).await);
    browser
        .until("a new QR code", || async {
            let src = browser.property(&qr, "src").await?;
            Ok((src != first_src && natural_width(&browser, &qr).await? > 0).then_some(()))
        })
        .await?;
    // The phone scans it: connected, without a reload.
    assert!(fake.scan_qr(&session).await);
    browser
        .until("the status connected", || async {
            Ok((status_shown(&browser).await? == "connected").then_some(()))
        })
        .await?;
    browser.see(&format!("+{FAKE_PHONE}")).await?;
    assert!(!browser.displayed(&qr).await.unwrap_or(false), "QR gone");

    // --- Chats: write to the echo contact, see the reply arrive.
    browser.fill("To", "+1 415 555 0142").await?;
    browser.fill("Message", "Hello from the dashboard").await?;
    browser.click("button", "Send").await?;
    browser.see("You said: Hello from the dashboard").await?;
    browser.see(&format!("+{ECHO}")).await?;
    // An image, with a caption: the contact sends it back, and the
    // received copy is downloaded (with the token) and shown.
    let picture = tempfile::tempdir()?;
    let png = picture.path().join("dot.png");
    std::fs::write(
        &png,
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, PNG)?,
    )?;
    browser.fill("Message", "a picture").await?;
    browser.attach("Image", &png).await?;
    browser.click("button", "Send").await?;
    browser
        .until("the image sent back", || async {
            for img in browser.all(None, "li.message.in img.media").await? {
                if browser.name(&img).await? == "Image: a picture"
                    && natural_width(&browser, &img).await? > 0
                {
                    return Ok(Some(()));
                }
            }
            Ok(None)
        })
        .await?;
    // Nothing that came live was lost on the way.
    browser.see("You said: Hello from the dashboard").await?;
    // Every message shows its latest status (the stream and the send's
    // answer may arrive in either order).
    browser
        .until("both sent messages read", || async {
            let mut read = 0;
            for out in browser.all(None, "li.message.out").await? {
                if browser.text(&out).await?.contains("read") {
                    read += 1;
                }
            }
            Ok((read == 2).then_some(()))
        })
        .await?;
    browser
        .screenshots(
            "session-chat",
            Some(&browser.find(None, "heading", "Chats").await?),
        )
        .await?;

    // --- Sessions list, live: a change made elsewhere shows up.
    browser.click("link", "Sessions").await?;
    browser.find(None, "link", "support line").await?;
    let res = app
        .post(&format!("/api/v1/sessions/{id}/disconnect"), &token, None)
        .await;
    assert_eq!(res.status(), 202);
    browser
        .until("the list to show it disconnected", || async {
            for row in browser.all(None, "tr[data-session]").await? {
                if browser.text(&row).await?.contains("disconnected") {
                    return Ok(Some(()));
                }
            }
            Ok(None)
        })
        .await?;
    browser.screenshots("sessions", None).await?;

    // --- Webhook deliveries: they arrived; replay one.
    let first = receiver
        .next_where("/hook", |e| e["type"] == "session.status")
        .await;
    assert!(first.verifies_with(&secret), "signed with the shown secret");
    browser.click("link", "Webhooks").await?;
    let hook_card = card(&browser, &hook).await?;
    browser
        .click_in(Some(&hook_card), "button", "Deliveries")
        .await?;
    // Replay a delivered event (the table may re-render as events come).
    let replayed_id = browser
        .until("a delivered event to replay", || async {
            for row in browser.all(Some(&hook_card), "tr[data-event]").await? {
                if !browser.text(&row).await?.contains("succeeded") {
                    continue;
                }
                let id = browser
                    .script(
                        "return arguments[0].dataset.event;",
                        vec![Browser::arg(&row)],
                    )
                    .await?;
                if let Some(replay) = browser.find_now(Some(&row), "button", "Replay").await? {
                    browser.click_on(&replay).await?;
                    return Ok(id.as_str().map(str::to_owned));
                }
            }
            Ok(None)
        })
        .await?;
    browser.see("Replay queued").await?;
    // Delivered twice: once at first, once replayed (same id).
    let mut seen = usize::from(first.id() == replayed_id);
    while seen < 2 {
        let hit = receiver
            .next_where("/hook", |e| e["id"] == replayed_id.as_str())
            .await;
        assert!(hit.verifies_with(&secret));
        seen += 1;
    }
    // Send test: its delivery shows.
    browser
        .click_in(Some(&hook_card), "button", "Send test")
        .await?;
    browser.see("Test event").await?;
    let tested = receiver
        .next_where("/hook", |e| e["type"] == "webhook.test")
        .await;
    let tested_id = tested.id().to_owned();
    browser.see(&tested_id).await?;
    browser.screenshots("webhooks", Some(&hook_card)).await?;
    // Rotate the secret (the new one shown once), disable, enable.
    browser
        .click_in(Some(&hook_card), "button", "Rotate secret")
        .await?;
    let rotated = browser.find(None, "region", "New signing secret").await?;
    assert!(browser.text(&rotated).await?.contains("whsec_"));
    browser
        .click_in(Some(&hook_card), "button", "Disable")
        .await?;
    browser.see("Webhook disabled").await?;
    let listed = json(app.get("/api/v1/webhooks", &token).await).await;
    assert_eq!(listed["data"][0]["enabled"], false);
    let hook_card = card(&browser, &hook).await?;
    browser
        .click_in(Some(&hook_card), "button", "Enable")
        .await?;
    browser.see("Webhook enabled").await?;
    let listed = json(app.get("/api/v1/webhooks", &token).await).await;
    assert_eq!(listed["data"][0]["enabled"], true);

    // --- Events, live and filtered.
    browser.click("link", "Events").await?;
    browser.find(None, "heading", "Events").await?;
    browser.see("message.received").await?;
    let before = browser.all(None, "li.event").await?.len();
    let res = app
        .post(&format!("/api/v1/sessions/{id}/connect"), &token, None)
        .await;
    assert_eq!(res.status(), 202);
    browser
        .until("the new events", || async {
            let items = browser.all(None, "li.event").await?;
            if items.len() <= before {
                return Ok(None);
            }
            let newest = browser.text(&items[0]).await?;
            Ok(newest.contains("→ connected").then_some(()))
        })
        .await?;
    let filter = browser.find(None, "combobox", "Type").await?;
    browser
        .script(
            "arguments[0].value = 'message.*'; arguments[0].dispatchEvent(new Event('change'));",
            vec![Browser::arg(&filter)],
        )
        .await?;
    browser
        .until("only message events", || async {
            let mut types = Vec::new();
            for item in browser.all(None, "li.event").await? {
                types.push(
                    browser
                        .script(
                            "return arguments[0].dataset.type;",
                            vec![Browser::arg(&item)],
                        )
                        .await?,
                );
            }
            Ok((!types.is_empty()
                && types
                    .iter()
                    .all(|t| t.as_str().is_some_and(|t| t.starts_with("message."))))
            .then_some(()))
        })
        .await?;
    browser.screenshots("events", None).await?;
    // Everything above happened without reloading the page.
    assert_eq!(
        browser
            .script("return window.wagateNoReload === true;", vec![])
            .await?,
        true
    );

    // The signed-in first screen, from a fresh load.
    // `/ui/` (not `/ui`): a new document, not a hash change.
    browser
        .goto(&format!("{}/ui/#/sessions", app.address))
        .await?;
    browser.find(None, "link", "support line").await?;
    perf.insert("sessions".into(), measure(&browser).await?);

    // --- Sign out: the token is forgotten.
    browser.click("button", "Sign out").await?;
    browser.find(None, "textbox", "API key").await?;
    assert_eq!(
        browser
            .script("return sessionStorage.length;", vec![])
            .await?,
        0
    );
    browser.goto(&format!("{}/ui", app.address)).await?;
    browser.find(None, "button", "Sign in").await?;

    // The budget: what the dashboard makes the browser load.
    for (screen, m) in &perf {
        let bytes = m["transferredBytes"].as_u64().unwrap_or(u64::MAX);
        assert!(bytes <= 300 * 1024, "{screen}: {bytes} bytes loaded");
    }
    let report = json!({ "screens": perf });
    eprintln!("dashboard performance: {report}");
    std::fs::write(
        webdriver::screenshot_dir().join("performance.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organization_sees_none_of_it() -> anyhow::Result<()> {
    let Some(browser) = Browser::launch().await? else {
        return Ok(());
    };
    let app = TestApp::spawn().await;
    let acme = app.key("acme", "read,send,manage,admin").await;
    let globex = app.key("globex", "read,send,manage,admin").await;
    let receiver = receiver::Receiver::start().await;

    // acme has a connected session with a message, a webhook and a key.
    let id = app.connected_session(&acme).await;
    // From here on the phone scans only when told: globex pairs by code.
    app.fake
        .as_ref()
        .expect("the fake adapter")
        .hold_scans(true);
    let res = app
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            &acme,
            Some(json!({ "to": format!("{ECHO}@s.whatsapp.net"), "type": "text", "text": "acme private" })),
        )
        .await;
    assert_eq!(res.status(), 202);
    let hook = receiver.url("/acme-hook");
    let res = app
        .post(
            "/api/v1/webhooks",
            &acme,
            Some(json!({ "url": hook, "events": ["*"] })),
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = app
        .post(
            "/api/v1/api-keys",
            &acme,
            Some(json!({ "name": "acme robot", "capabilities": ["read"] })),
        )
        .await;
    assert_eq!(res.status(), 201);

    browser.goto(&format!("{}/ui", app.address)).await?;
    // The dashboard's own SSE reader, fed in small pieces: comments
    // skipped, CRLF lines, multi-line data, the last id kept for resuming.
    let parsed = browser
        .script_async(
            r#"const done = arguments[0];
            import('/ui/api.js').then(({ EventStream }) => {
              const s = Object.create(EventStream.prototype);
              const got = [];
              Object.assign(s, { onEvent: (e) => got.push(e.id), buffer: '', data: [], id: null, last: null });
              const text = ': keep-alive\n\nid: 7\nevent: session.status\ndata: {"id":"evt_1"}\n\n'
                + 'id: 8\r\nevent: x\r\ndata: {"id":\r\ndata: "evt_2"}\r\n\r\nid: 9\ndata: {"id":"evt_3"';
              for (let i = 0; i < text.length; i += 5) s.parse(text.slice(i, i + 5));
              done({ got, last: s.last });
            }, (e) => done({ error: String(e) }));"#,
        )
        .await?;
    assert_eq!(parsed, json!({ "got": ["evt_1", "evt_2"], "last": "8" }));
    // By keyboard: the field has the focus on arrival; Enter signs in.
    let field = browser.find(None, "textbox", "API key").await?;
    assert!(
        browser.focused(&field).await?,
        "the key field has the focus"
    );
    let field = browser.fill("API key", &globex).await?;
    browser.press_enter(&field).await?;
    browser.find(None, "heading", "Sessions").await?;
    browser.see("No sessions yet").await?;
    browser.see("Live").await?;
    browser.screenshots("sessions-empty", None).await?;

    let secrets = [id.as_str(), "acme", &hook];
    let shows_none = |text: String| {
        for s in secrets {
            assert!(!text.contains(s), "globex sees {s:?}:\n{text}");
        }
    };
    shows_none(browser.page_text().await?);
    browser.click("link", "Webhooks").await?;
    browser.see("No webhooks yet").await?;
    shows_none(browser.page_text().await?);
    browser.click("link", "API keys").await?;
    browser.find(None, "heading", "API keys").await?;
    // Only globex's own key (the one signed in with).
    browser.see("you are signed in with it").await?;
    assert_eq!(browser.all(None, "tr[data-key]").await?.len(), 1);
    shows_none(browser.page_text().await?);
    browser.click("link", "Events").await?;
    browser.see("No events yet").await?;
    // acme keeps acting: nothing reaches globex's live view.
    let res = app
        .post(&format!("/api/v1/sessions/{id}/disconnect"), &acme, None)
        .await;
    assert_eq!(res.status(), 202);
    app.wait_for_status(&id, &acme, "disconnected").await;
    // The events globex follows are its own: a change of its own arrives,
    // and acme's (committed before it) never did.
    let own = app.create_session(&globex).await;
    let res = app
        .post(&format!("/api/v1/sessions/{own}/connect"), &globex, None)
        .await;
    assert_eq!(res.status(), 202);
    browser.see(&own).await?;
    assert!(!browser.page_text().await?.contains(&id));
    // acme's session's page, addressed directly: the API's 404.
    browser
        .goto(&format!("{}/ui#/sessions/{id}", app.address))
        .await?;
    browser.see("session not found").await?;
    let text = browser.page_text().await?;
    assert!(!text.contains("acme private") && !text.contains("+15550001111"));

    // globex's own session: paired by a code, disconnected, deleted.
    browser
        .goto(&format!("{}/ui/#/sessions/{own}", app.address))
        .await?;
    browser.find(None, "heading", "Pairing code").await?;
    browser.fill("Phone number", "+1 415 555 0123").await?;
    browser.click("button", "Get code").await?;
    browser.see(": type it on the phone").await?;
    browser
        .until("the status connected", || async {
            Ok((status_shown(&browser).await? == "connected").then_some(()))
        })
        .await?;
    browser.see("+14155550123").await?;
    browser.click("button", "Disconnect").await?;
    browser
        .until("the status disconnected", || async {
            Ok((status_shown(&browser).await? == "disconnected").then_some(()))
        })
        .await?;
    // Delete asks first; Cancel keeps it.
    browser.click("button", "Delete").await?;
    browser.click("button", "Cancel").await?;
    assert_eq!(
        app.get(&format!("/api/v1/sessions/{own}"), &globex)
            .await
            .status(),
        200
    );
    browser.click("button", "Delete").await?;
    browser.click("button", "Delete session").await?;
    browser.find(None, "heading", "Sessions").await?;
    browser.see("No sessions yet").await?;
    assert_eq!(
        app.get(&format!("/api/v1/sessions/{own}"), &globex)
            .await
            .status(),
        404
    );
    Ok(())
}
