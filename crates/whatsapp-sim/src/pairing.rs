//! Linking a companion: the phone scanning a QR code or entering a
//! pairing code, up to `pair-success`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, NodeRef};

use crate::admin::AdminError;
use crate::phone;
use crate::state::{Inner, LinkCodeRequest, LinkedDevice, Outbound, PendingLink, Sim};
use crate::world::phone_digits;

/// How long the phone waits for the companion to countersign.
const LINK_TIMEOUT: Duration = Duration::from_secs(30);

type Done = oneshot::Sender<Result<LinkedDevice, String>>;

/// Sends `pair-success` to connection `conn` for a new device of `phone`,
/// signed for `identity_pub` with `adv_secret`. `done` hears the outcome.
fn offer_link(
    g: &mut Inner,
    sim: &Sim,
    conn: u64,
    phone: &str,
    identity_pub: &[u8; 32],
    adv_secret: &[u8; 32],
    done: Done,
) -> Result<(), AdminError> {
    let reg = g
        .conns
        .get(&conn)
        .and_then(|c| c.registration.clone())
        .ok_or_else(|| AdminError::Conflict("the companion is no longer waiting".into()))?;
    if reg.identity_pub != *identity_pub {
        return Err(AdminError::BadRequest(
            "the code's identity key is not the waiting companion's".into(),
        ));
    }
    if g.conns.get(&conn).is_some_and(|c| c.pending_link.is_some()) {
        return Err(AdminError::Conflict(
            "this companion is already being linked".into(),
        ));
    }
    let account = g.account_mut(phone);
    let device = account.next_device;
    let key_index = account.next_key_index;
    let blob = phone::signed_device_identity(
        &account.identity,
        account.raw_id,
        key_index,
        identity_pub,
        adv_secret,
    )
    .map_err(|e| AdminError::Failed(e.to_string()))?;
    account.next_device = account.next_device.wrapping_add(1).max(1);
    account.next_key_index += 1;
    let lid = account.lid.clone();
    let push_name = account.push_name.clone();
    let iq_id = sim.next_stanza_id();
    let mut children = vec![
        NodeBuilder::new("device-identity").bytes(blob).build(),
        NodeBuilder::new("platform").attr("name", "smba").build(),
        NodeBuilder::new("device")
            .attr("jid", format!("{phone}:{device}@s.whatsapp.net"))
            .attr("lid", format!("{lid}:{device}@lid"))
            .build(),
    ];
    // The companion takes `biz name` as its push name. A real phone sends it
    // for business accounts only, and a companion with no push name runs the
    // initial app-state bootstrap (and its 10 s key wait) on every connect;
    // the simulator always sends one so later logins are fast.
    let name = push_name.unwrap_or_else(|| format!("+{phone}"));
    children.push(NodeBuilder::new("biz").attr("name", name).build());
    let node = NodeBuilder::new("iq")
        .attrs([
            ("from", "s.whatsapp.net".to_owned()),
            ("type", "set".to_owned()),
            ("id", iq_id.clone()),
            ("xmlns", "md".to_owned()),
        ])
        .children([NodeBuilder::new("pair-success").children(children).build()])
        .build();
    let c = g
        .conns
        .get_mut(&conn)
        .ok_or_else(|| AdminError::Conflict("the companion disconnected".into()))?;
    c.pending_link = Some(PendingLink {
        iq_id,
        phone: phone.to_owned(),
        device,
        key_index,
        reg,
        done: Some(done),
    });
    c.tx.send(Outbound::Node(node))
        .map_err(|_| AdminError::Conflict("the companion disconnected".into()))?;
    Ok(())
}

async fn await_link(
    rx: oneshot::Receiver<Result<LinkedDevice, String>>,
) -> Result<LinkedDevice, AdminError> {
    match tokio::time::timeout(LINK_TIMEOUT, rx).await {
        Ok(Ok(Ok(linked))) => Ok(linked),
        Ok(Ok(Err(e))) => Err(AdminError::Failed(e)),
        Ok(Err(_)) => Err(AdminError::Conflict(
            "the companion disconnected before linking".into(),
        )),
        Err(_) => Err(AdminError::Timeout),
    }
}

/// The phone `phone` scans `qr`.
pub(crate) async fn scan_qr(sim: &Sim, qr: &str, phone: &str) -> Result<LinkedDevice, AdminError> {
    let phone = phone_digits(phone)
        .ok_or_else(|| AdminError::BadRequest(format!("bad phone number '{phone}'")))?;
    let f = phone::parse_qr(qr.trim()).map_err(AdminError::BadRequest)?;
    let (tx, rx) = oneshot::channel();
    {
        let mut g = sim.lock();
        let conn = *g
            .refs
            .get(&f.pairing_ref)
            .ok_or_else(|| AdminError::NotFound("no companion shows this QR code".into()))?;
        let noise_ok = g
            .conns
            .get(&conn)
            .and_then(|c| c.registration.as_ref())
            .is_some_and(|r| r.noise_pub == f.noise_pub);
        if !noise_ok {
            return Err(AdminError::BadRequest(
                "the QR code's keys are not the companion's".into(),
            ));
        }
        offer_link(
            &mut g,
            sim,
            conn,
            &phone,
            &f.identity_pub,
            &f.adv_secret,
            tx,
        )?;
    }
    await_link(rx).await
}

/// The phone `phone` enters the pairing code a companion shows.
pub(crate) async fn enter_code(
    sim: &Arc<Sim>,
    phone: &str,
    code: &str,
) -> Result<LinkedDevice, AdminError> {
    let phone = phone_digits(phone)
        .ok_or_else(|| AdminError::BadRequest(format!("bad phone number '{phone}'")))?;
    let code: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if code.len() != 8 {
        return Err(AdminError::BadRequest(
            "a pairing code has 8 characters".into(),
        ));
    }
    let (conn, wrapped, pairing_ref) = {
        let g = sim.lock();
        let r = g.link_codes.get(&phone).ok_or_else(|| {
            AdminError::NotFound(format!("no companion asked for a code for {phone}"))
        })?;
        (
            r.conn,
            r.wrapped_companion_ephemeral.clone(),
            r.pairing_ref.clone(),
        )
    };
    // Two PBKDF2 runs: off the reactor.
    let c2 = code.clone();
    let (companion_eph, hello) = tokio::task::spawn_blocking(move || {
        let companion_eph = phone::unwrap_companion_ephemeral(&wrapped, &c2)?;
        Ok::<_, String>((companion_eph, phone::primary_hello(&c2)))
    })
    .await
    .map_err(|e| AdminError::Failed(e.to_string()))?
    .map_err(AdminError::BadRequest)?;
    let (tx, rx) = oneshot::channel();
    {
        let mut g = sim.lock();
        let identity_pub = g
            .account_mut(&phone)
            .identity
            .public_key
            .public_key_bytes()
            .to_vec();
        let r = g
            .link_codes
            .get_mut(&phone)
            .filter(|r| r.conn == conn)
            .ok_or_else(|| AdminError::Conflict("the companion went away".into()))?;
        r.primary = Some((hello.ephemeral, companion_eph));
        r.done = Some(tx);
        let node = NodeBuilder::new("notification")
            .attrs([
                ("from", "s.whatsapp.net".to_owned()),
                ("type", "link_code_companion_reg".to_owned()),
                ("id", sim.next_stanza_id()),
                ("t", wacore::time::now_secs().to_string()),
            ])
            .children([NodeBuilder::new("link_code_companion_reg")
                .attr("stage", "primary_hello")
                .children([
                    NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                        .bytes(hello.wrapped_ephemeral)
                        .build(),
                    NodeBuilder::new("primary_identity_pub")
                        .bytes(identity_pub)
                        .build(),
                    NodeBuilder::new("link_code_pairing_ref")
                        .bytes(pairing_ref.into_bytes())
                        .build(),
                ])
                .build()])
            .build();
        let sent = g
            .conns
            .get(&conn)
            .is_some_and(|c| c.tx.send(Outbound::Node(node)).is_ok());
        if !sent {
            return Err(AdminError::Conflict("the companion went away".into()));
        }
    }
    await_link(rx).await
}

fn child_bytes(node: &NodeRef<'_>, tag: &str) -> Option<Vec<u8>> {
    node.get_optional_child(tag)
        .and_then(|n| n.content_bytes())
        .map(<[u8]>::to_vec)
}

fn iq_result(id: &str, children: Vec<Node>) -> Node {
    let b =
        NodeBuilder::new("iq").attrs([("from", "s.whatsapp.net"), ("type", "result"), ("id", id)]);
    if children.is_empty() {
        b.build()
    } else {
        b.children(children).build()
    }
}

fn iq_error(id: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attrs([("from", "s.whatsapp.net"), ("type", "error"), ("id", id)])
        .children([NodeBuilder::new("error")
            .attrs([("code", code.to_string()), ("text", text.to_owned())])
            .build()])
        .build()
}

/// `<iq xmlns="md"><link_code_companion_reg stage=…>` from an unpaired
/// companion: `companion_hello` (asks for a code) and `companion_finish`
/// (sends its key bundle after our `primary_hello`).
pub(crate) fn link_code_iq(sim: &Sim, conn: u64, id: &str, reg: &NodeRef<'_>) -> Node {
    let stage = reg
        .get_attr("stage")
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default();
    let phone = reg
        .get_attr("jid")
        .map(|v| v.as_str().into_owned())
        .and_then(|j| j.split('@').next().and_then(phone_digits));
    let Some(phone) = phone else {
        return iq_error(id, 400, "bad-request");
    };
    match stage.as_str() {
        "companion_hello" => {
            let Some(wrapped) =
                child_bytes(reg, "link_code_pairing_wrapped_companion_ephemeral_pub")
            else {
                return iq_error(id, 400, "bad-request");
            };
            let pairing_ref = {
                use base64::Engine as _;
                let b: [u8; 12] = rand_010::random();
                base64::engine::general_purpose::STANDARD.encode(b)
            };
            let mut g = sim.lock();
            g.link_codes.insert(
                phone.clone(),
                LinkCodeRequest {
                    conn,
                    pairing_ref: pairing_ref.clone(),
                    wrapped_companion_ephemeral: wrapped,
                    primary: None,
                    done: None,
                },
            );
            tracing::info!(conn, phone, "companion asked for a pairing code");
            iq_result(
                id,
                vec![
                    NodeBuilder::new("link_code_companion_reg")
                        .children([NodeBuilder::new("link_code_pairing_ref")
                            .bytes(pairing_ref.into_bytes())
                            .build()])
                        .build(),
                ],
            )
        }
        "companion_finish" => {
            let Some(bundle) = child_bytes(reg, "link_code_pairing_wrapped_key_bundle") else {
                return iq_error(id, 400, "bad-request");
            };
            let mut g = sim.lock();
            let Some(mut req) = g.link_codes.remove(&phone).filter(|r| r.conn == conn) else {
                return iq_error(id, 404, "item-not-found");
            };
            let Some((primary_eph, companion_eph)) = req.primary.take() else {
                return iq_error(id, 400, "bad-request");
            };
            let done = req.done.take();
            let opened = {
                let account = g.account_mut(&phone);
                phone::open_key_bundle(&primary_eph, &account.identity, &companion_eph, &bundle)
            };
            let (identity, adv_secret) = match opened {
                Ok(v) => v,
                Err(e) => {
                    tracing::info!(conn, phone, "pairing code refused: {e}");
                    if let Some(done) = done {
                        let _ = done.send(Err(format!(
                            "the code does not match the companion's ({e})"
                        )));
                    }
                    // The user may try again with the right code; the
                    // companion hears nothing more, as with a real phone.
                    g.link_codes.insert(phone, req);
                    return iq_result(id, vec![]);
                }
            };
            let (tx, rx) = oneshot::channel();
            if let Err(e) = offer_link(&mut g, sim, conn, &phone, &identity, &adv_secret, tx) {
                if let Some(done) = done {
                    let _ = done.send(Err(e.to_string()));
                }
                return iq_result(id, vec![]);
            }
            // Relay the link's outcome to whoever entered the code.
            if let Some(done) = done {
                tokio::spawn(async move {
                    let outcome = match rx.await {
                        Ok(r) => r,
                        Err(_) => Err("the companion disconnected before linking".into()),
                    };
                    let _ = done.send(outcome);
                });
            }
            iq_result(id, vec![])
        }
        other => {
            tracing::warn!(conn, "unknown link_code_companion_reg stage {other:?}");
            iq_error(id, 400, "bad-request")
        }
    }
}
