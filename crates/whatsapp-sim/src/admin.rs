//! The admin API: what the test (or a person) does as the phones, in
//! process ([`Admin`]) and over HTTP under `/admin`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use wacore_binary::builder::NodeBuilder;

use crate::state::{BlockedContact, LinkedDevice, Outbound, Sim};
use crate::world::phone_digits;

/// Why an admin action failed.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The request is malformed (bad QR string, phone number or code).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Nothing matches (unknown QR ref, account, pending code request).
    #[error("not found: {0}")]
    NotFound(String),
    /// The companion is not in a state to do this.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The companion did not answer in time.
    #[error("the companion did not answer in time")]
    Timeout,
    /// The exchange failed (e.g. the companion refused the identity).
    #[error("failed: {0}")]
    Failed(String),
}

impl AdminError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Failed(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

/// A linked device as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    /// The device number (1…).
    pub device: u16,
    /// `phone:device@s.whatsapp.net`.
    pub jid: String,
    /// `lid:device@lid`.
    pub lid: String,
    /// The companion's OS as it registered.
    pub platform: String,
    /// The ADV key index the phone gave it.
    pub key_index: u32,
    /// When it was linked (Unix seconds).
    pub linked_at: i64,
    /// Whether it is connected and logged in now.
    pub connected: bool,
}

/// An account as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    /// The phone number (digits).
    pub phone: String,
    /// The account's LID JID (`…@lid`).
    pub lid: String,
    /// The push name, if any.
    pub push_name: Option<String>,
    /// Its linked companion devices.
    pub devices: Vec<DeviceInfo>,
    /// Its blocklist, oldest first.
    pub blocklist: Vec<BlockedContact>,
}

/// `GET /admin/health`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Always `"ok"`.
    pub status: &'static str,
    /// Open client connections (any state).
    pub connections: usize,
    /// Connections logged in as a linked device.
    pub logged_in: usize,
    /// Connections served on the simulator's login threads now: from the
    /// Noise handshake until the client's key digest query is answered
    /// (the last costly request of a login), or for at most 10 s (a
    /// companion showing QR codes). After that a connection is served with
    /// the established ones, which a burst of logins does not hold up.
    pub logging_in: usize,
    /// Known accounts.
    pub accounts: usize,
    /// Whether an outage refuses client connections now.
    pub outage: bool,
    /// Client connections refused during outages since start.
    pub refused: u64,
    /// Logins of a device (account phone + device number) while another
    /// connection of the same device was still logged in, since start:
    /// simultaneous connections of one device. Counted when the second
    /// login happens, before the older connection is replaced (closed with
    /// `<conflict type="replaced"/>`); a reconnect after the old connection
    /// closed is not one. 0 in a healthy run.
    pub overlaps: u64,
    /// The most connections one device ever had logged in at once since
    /// start (a replaced connection counts until it is closed): 1 in a
    /// healthy run, 0 if no device ever logged in.
    pub max_per_device: usize,
    /// Connections closed since start because the same device logged in
    /// again on another one: closed, as WhatsApp does, with
    /// `<stream:error><conflict type="replaced"/></stream:error>`.
    pub replaced: u64,
    /// Whether a state file keeps the state across restarts.
    pub persistent: bool,
    /// Why the state file could not be written last time, until a write
    /// succeeds.
    pub state_error: Option<String>,
}

/// `GET /admin/logins`: every login of every device since start (the
/// ended ones, up to the last 100,000), from which duplicate connections
/// (overlapping logins of one device) and per-device downtime follow.
#[derive(Debug, Clone, Serialize)]
pub struct Logins {
    /// One entry per device (account phone + device number), in order.
    pub devices: Vec<DeviceLogins>,
}

/// The logins of one device.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceLogins {
    /// The account's phone number (digits).
    pub phone: String,
    /// The device number.
    pub device: u16,
    /// Its logins, oldest first.
    pub logins: Vec<LoginRecord>,
}

/// One connection logged in as a device.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginRecord {
    /// The connection's number (unique since start).
    pub conn: u64,
    /// When it logged in (Unix milliseconds).
    pub opened_at_ms: u64,
    /// When it closed (Unix milliseconds); `null` while open.
    pub closed_at_ms: Option<u64>,
    /// Why it closed; `null` while open: `replaced` (the device logged in
    /// on another connection), `device_removed` (the phone unlinked it),
    /// `dropped` (the simulator dropped it: `/drop`, an outage, shutdown),
    /// `server` (another close by the simulator), `relogin` (the same
    /// connection logged in again), `closed` (the client closed it, or it
    /// broke).
    pub cause: Option<&'static str>,
}

/// The in-process admin API: what a phone (or an operator) does to the
/// simulated world. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admin {
    sim: Arc<Sim>,
}

impl Admin {
    pub(crate) fn new(sim: Arc<Sim>) -> Self {
        Self { sim }
    }

    /// The phone `phone` scans the QR code `qr` a companion shows: the
    /// account is created if missing, the companion is sent `pair-success`,
    /// and this returns once it countersigned (it then reconnects and logs
    /// in on its own).
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`] when no connected companion shows this code,
    /// [`AdminError::BadRequest`] for a malformed code or phone number,
    /// [`AdminError::Timeout`] / [`AdminError::Failed`] when the companion
    /// does not complete the link.
    pub async fn scan_qr(&self, qr: &str, phone: &str) -> Result<LinkedDevice, AdminError> {
        let linked = crate::pairing::scan_qr(&self.sim, qr, phone).await?;
        let _ = self.sim.persist().await;
        Ok(linked)
    }

    /// The phone `phone` enters the 8-character pairing code a companion
    /// shows after asking to link by phone number.
    ///
    /// # Errors
    ///
    /// As [`Admin::scan_qr`]; [`AdminError::Failed`] when the code is not the
    /// companion's.
    pub async fn pair_code(&self, phone: &str, code: &str) -> Result<LinkedDevice, AdminError> {
        let linked = crate::pairing::enter_code(&self.sim, phone, code).await?;
        let _ = self.sim.persist().await;
        Ok(linked)
    }

    /// The account of `phone`: its linked devices and blocklist.
    pub fn account(&self, phone: &str) -> Option<AccountInfo> {
        let phone = phone_digits(phone)?;
        let g = self.sim.lock();
        let a = g.accounts().get(&phone)?;
        let online: Vec<u16> = g
            .conns
            .values()
            .filter_map(|c| c.login.as_ref())
            .filter(|(p, _)| *p == phone)
            .map(|(_, d)| *d)
            .collect();
        let mut blocklist: Vec<BlockedContact> = a.blocklist.values().cloned().collect();
        blocklist.sort_by_key(|b| b.t);
        Some(AccountInfo {
            phone: a.phone.clone(),
            lid: format!("{}@lid", a.lid),
            push_name: a.push_name.clone(),
            devices: a
                .devices
                .values()
                .map(|d| DeviceInfo {
                    device: d.id,
                    jid: format!("{}:{}@s.whatsapp.net", a.phone, d.id),
                    lid: format!("{}:{}@lid", a.lid, d.id),
                    platform: d.reg.platform.clone(),
                    key_index: d.key_index,
                    linked_at: d.linked_at,
                    connected: online.contains(&d.id),
                })
                .collect(),
            blocklist,
        })
    }

    /// The phone unlinks every companion of `phone`: their devices are
    /// forgotten and connected ones receive the logout stream error
    /// (`LoggedOut` on the client). Returns how many devices were unlinked.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`] for an unknown account.
    pub fn logout(&self, phone: &str) -> Result<usize, AdminError> {
        let phone = phone_digits(phone)
            .ok_or_else(|| AdminError::BadRequest(format!("bad phone number '{phone}'")))?;
        let mut g = self.sim.lock();
        if !g.accounts().contains_key(&phone) {
            return Err(AdminError::NotFound(format!("no account {phone}")));
        }
        let a = g
            .accounts_mut()
            .get_mut(&phone)
            .ok_or_else(|| AdminError::NotFound(format!("no account {phone}")))?;
        let n = a.devices.len();
        a.devices.clear();
        for c in g.conns.values_mut() {
            if c.login.as_ref().is_some_and(|(p, _)| *p == phone) {
                c.login = None;
                let node = NodeBuilder::new("stream:error")
                    .attr("code", "401")
                    .children([NodeBuilder::new("conflict")
                        .attr("type", "device_removed")
                        .build()])
                    .build();
                let _ = c.tx.send(Outbound::Close(Some(node)));
            }
        }
        tracing::info!(phone, devices = n, "phone unlinked every companion");
        Ok(n)
    }

    /// Closes every connection of `phone`'s devices abruptly (no goodbye),
    /// as a network failure would. Returns how many were closed.
    pub fn drop_connections(&self, phone: &str) -> usize {
        let Some(phone) = phone_digits(phone) else {
            return 0;
        };
        crate::iq::broadcast(&self.sim, &phone, || Outbound::Drop)
    }

    /// An outage of WhatsApp's servers: every client connection is dropped
    /// at once (no goodbye, as a network failure) and new client connections
    /// are refused (HTTP 503 instead of the WebSocket) for `duration`, then
    /// accepted again. A new outage replaces the current one; a zero
    /// `duration` ends it (and still drops the connections). The admin API
    /// keeps answering. Returns how many connections were dropped.
    pub fn outage(&self, duration: Duration) -> usize {
        self.sim.outage(duration)
    }

    /// Waits until the state file holds every change made so far (a no-op
    /// without one). Changes are saved on their own soon after they happen;
    /// this is for a test that changed state in process (e.g.
    /// [`Admin::logout`]) and wants it on disk now.
    ///
    /// # Errors
    ///
    /// [`crate::StateError::Write`] when the file cannot be written.
    pub async fn flush_state(&self) -> Result<(), crate::StateError> {
        self.sim.persist().await
    }

    /// The world contact `body.from` sends the account `phone` a message
    /// (`{"from", "text"}` or `{"from", "image": {"data", "mimetype"},
    /// "caption"}`, as `POST /admin/accounts/{phone}/messages`): encrypted
    /// to each of the account's companions, delivered to those connected
    /// and queued for the others until they acknowledge it. Returns the
    /// message id once the queues are saved.
    ///
    /// # Errors
    ///
    /// [`AdminError::BadRequest`] for a malformed body,
    /// [`AdminError::NotFound`] for an unknown account or contact.
    pub async fn send_message(
        &self,
        phone: &str,
        body: &serde_json::Value,
    ) -> Result<String, AdminError> {
        let bytes = serde_json::to_vec(body).map_err(|e| AdminError::BadRequest(e.to_string()))?;
        crate::messaging::post(&self.sim, phone, &bytes).await
    }

    /// What the account `phone`'s devices sent the contact `peer` (oldest
    /// first) and the receipts they sent it, as `GET
    /// /admin/accounts/{phone}/messages?peer=…`: `{"data": […],
    /// "receipts": […]}`.
    ///
    /// # Errors
    ///
    /// [`AdminError::BadRequest`] for a malformed peer,
    /// [`AdminError::NotFound`] for an unknown account.
    pub fn messages(&self, phone: &str, peer: &str) -> Result<serde_json::Value, AdminError> {
        crate::messaging::chat_json(&self.sim, phone, Some(peer))
    }

    /// The world contact `body.from` comes online or goes offline for the
    /// account `phone` (`{"from", "available", "lastSeen"?, "addressing"?}`,
    /// as `POST /admin/accounts/{phone}/presence`): told to the account's
    /// connections subscribed to the contact, and kept for those that
    /// subscribe later. Returns to how many connections it went.
    ///
    /// # Errors
    ///
    /// [`AdminError::BadRequest`] for a malformed body,
    /// [`AdminError::NotFound`] for an unknown account or contact.
    pub fn contact_presence(
        &self,
        phone: &str,
        body: &serde_json::Value,
    ) -> Result<usize, AdminError> {
        let bytes = serde_json::to_vec(body).map_err(|e| AdminError::BadRequest(e.to_string()))?;
        crate::presence::contact_presence(&self.sim, phone, &bytes)
    }

    /// The world contact `body.from` types, records or stops in its chat
    /// with the account `phone` (`{"from", "state", "addressing"?}`, as
    /// `POST /admin/accounts/{phone}/chatstate`): told to every logged-in
    /// connection of the account. Returns to how many.
    ///
    /// # Errors
    ///
    /// As [`Admin::contact_presence`].
    pub fn contact_chat_state(
        &self,
        phone: &str,
        body: &serde_json::Value,
    ) -> Result<usize, AdminError> {
        let bytes = serde_json::to_vec(body).map_err(|e| AdminError::BadRequest(e.to_string()))?;
        crate::presence::contact_chat_state(&self.sim, phone, &bytes)
    }

    /// What the account `phone` showed the contact `peer`, as `GET
    /// /admin/accounts/{phone}/presence?peer=…`: `{"available",
    /// "subscribed", "subscriptions": […], "chatStates": […]}`.
    ///
    /// # Errors
    ///
    /// [`AdminError::BadRequest`] for a malformed peer,
    /// [`AdminError::NotFound`] for an unknown account.
    pub fn shown_presence(&self, phone: &str, peer: &str) -> Result<serde_json::Value, AdminError> {
        crate::presence::shown_json(&self.sim, phone, Some(peer))
    }

    /// Every device's logins since start: when each connection logged in,
    /// when it closed and why.
    pub fn logins(&self) -> Logins {
        let mut devices: std::collections::BTreeMap<(String, u16), Vec<LoginRecord>> =
            std::collections::BTreeMap::new();
        {
            let g = self.sim.lock();
            let open = g.conns.values().filter_map(|c| c.login_record.as_ref());
            for login in g.logins.iter().chain(open) {
                devices
                    .entry(login.device.clone())
                    .or_default()
                    .push(LoginRecord {
                        conn: login.conn,
                        opened_at_ms: login.opened_ms,
                        closed_at_ms: login.closed_ms,
                        cause: login.cause,
                    });
            }
        }
        Logins {
            devices: devices
                .into_iter()
                .map(|((phone, device), mut logins)| {
                    logins.sort_by_key(|l| (l.opened_at_ms, l.conn));
                    DeviceLogins {
                        phone,
                        device,
                        logins,
                    }
                })
                .collect(),
        }
    }

    /// Connection and account counts, outage and state-file status, and
    /// the per-device login counts (`overlaps`, `max_per_device`).
    pub fn health(&self) -> Health {
        let (
            (connections, logged_in, accounts, outage, refused),
            (overlaps, max_per_device, replaced),
        ) = {
            let g = self.sim.lock();
            (
                (
                    g.conns.len(),
                    g.conns.values().filter(|c| c.login.is_some()).count(),
                    g.accounts().len(),
                    g.in_outage(),
                    g.refused,
                ),
                (g.overlaps, g.max_per_device, g.replaced),
            )
        };
        Health {
            status: "ok",
            connections,
            logged_in,
            logging_in: self.sim.login_threads.serving(),
            accounts,
            outage,
            refused,
            overlaps,
            max_per_device,
            replaced,
            persistent: self.sim.has_store(),
            state_error: self.sim.state_error(),
        }
    }
}

/// The longest outage `POST /admin/outage` accepts, in seconds (a day).
const MAX_OUTAGE_SECS: f64 = 86_400.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutageBody {
    seconds: f64,
}

/// Reads `{"seconds": N}` (0 ≤ N ≤ a day, fractions allowed).
fn outage_duration(body: &[u8]) -> Result<Duration, AdminError> {
    let usage = "the body must be {\"seconds\": N} with 0 <= N <= 86400";
    let parsed: OutageBody = serde_json::from_slice(body)
        .map_err(|e| AdminError::BadRequest(format!("{usage}: {e}")))?;
    if !(0.0..=MAX_OUTAGE_SECS).contains(&parsed.seconds) {
        return Err(AdminError::BadRequest(format!(
            "{usage}; got {}",
            parsed.seconds
        )));
    }
    Ok(Duration::from_secs_f64(parsed.seconds))
}

#[derive(Debug, Deserialize)]
struct ScanQr {
    qr: String,
    phone: String,
}

#[derive(Debug, Deserialize)]
struct PairCode {
    phone: String,
    code: String,
}

/// The HTTP surface: the WebSocket at `/ws/chat` and the admin API.
pub(crate) fn router(sim: Arc<Sim>) -> axum::Router {
    let admin = Admin::new(sim.clone());
    axum::Router::new()
        .route(
            "/ws/chat",
            get(move |ws: WebSocketUpgrade| {
                let sim = sim.clone();
                async move {
                    if sim.refuse_during_outage() {
                        let body = serde_json::json!({ "error": "outage: connections refused" });
                        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
                    }
                    ws.max_message_size(16 << 20)
                        .on_upgrade(move |socket| crate::conn::serve(socket, sim))
                }
            }),
        )
        .route(
            "/admin/health",
            get(|State(a): State<Admin>| async move { Json(a.health()) }),
        )
        .route(
            "/admin/logins",
            get(|State(a): State<Admin>| async move { Json(a.logins()) }),
        )
        .route(
            "/admin/scan-qr",
            post(|State(a): State<Admin>, Json(b): Json<ScanQr>| async move {
                a.scan_qr(&b.qr, &b.phone).await.map(Json)
            }),
        )
        .route(
            "/admin/pair-code",
            post(
                |State(a): State<Admin>, Json(b): Json<PairCode>| async move {
                    a.pair_code(&b.phone, &b.code).await.map(Json)
                },
            ),
        )
        .route(
            "/admin/accounts/{phone}",
            get(
                |State(a): State<Admin>, Path(phone): Path<String>| async move {
                    a.account(&phone)
                        .map(Json)
                        .ok_or_else(|| AdminError::NotFound(format!("no account {phone}")))
                },
            ),
        )
        .route(
            "/admin/accounts/{phone}/logout",
            post(
                |State(a): State<Admin>, Path(phone): Path<String>| async move {
                    let n = a.logout(&phone)?;
                    // Answer once the unlinking is on disk (errors are logged
                    // and shown by the health route).
                    let _ = a.flush_state().await;
                    Ok::<_, AdminError>(Json(serde_json::json!({ "unlinked": n })))
                },
            ),
        )
        .route(
            "/admin/accounts/{phone}/drop",
            post(
                |State(a): State<Admin>, Path(phone): Path<String>| async move {
                    Json(serde_json::json!({ "dropped": a.drop_connections(&phone) }))
                },
            ),
        )
        .route(
            "/admin/accounts/{phone}/messages",
            post(
                |State(a): State<Admin>, Path(phone): Path<String>, body: axum::body::Bytes| async move {
                    let id = crate::messaging::post(&a.sim, &phone, &body).await?;
                    Ok::<_, AdminError>(Json(serde_json::json!({ "id": id })))
                },
            )
            .get(
                |State(a): State<Admin>,
                 Path(phone): Path<String>,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    crate::messaging::chat_json(&a.sim, &phone, q.get("peer").map(String::as_str))
                        .map(Json)
                },
            ),
        )
        .route(
            "/admin/accounts/{phone}/presence",
            post(
                |State(a): State<Admin>, Path(phone): Path<String>, body: axum::body::Bytes| async move {
                    let n = crate::presence::contact_presence(&a.sim, &phone, &body)?;
                    Ok::<_, AdminError>(Json(serde_json::json!({ "delivered": n })))
                },
            )
            .get(
                |State(a): State<Admin>,
                 Path(phone): Path<String>,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    crate::presence::shown_json(&a.sim, &phone, q.get("peer").map(String::as_str))
                        .map(Json)
                },
            ),
        )
        .route(
            "/admin/accounts/{phone}/chatstate",
            post(
                |State(a): State<Admin>, Path(phone): Path<String>, body: axum::body::Bytes| async move {
                    let n = crate::presence::contact_chat_state(&a.sim, &phone, &body)?;
                    Ok::<_, AdminError>(Json(serde_json::json!({ "delivered": n })))
                },
            ),
        )
        .route(
            "/admin/groups",
            post(
                |State(a): State<Admin>, body: axum::body::Bytes| async move {
                    crate::groups::create(&a.sim, &body).await.map(Json)
                },
            ),
        )
        .route(
            "/admin/groups/{jid}",
            get(
                |State(a): State<Admin>, Path(jid): Path<String>| async move {
                    crate::groups::get(&a.sim, &jid).map(Json)
                },
            )
            .patch(
                |State(a): State<Admin>, Path(jid): Path<String>, body: axum::body::Bytes| async move {
                    crate::groups::update(&a.sim, &jid, &body).await.map(Json)
                },
            ),
        )
        .route(
            "/admin/groups/{jid}/messages",
            post(
                |State(a): State<Admin>, Path(jid): Path<String>, body: axum::body::Bytes| async move {
                    let id = crate::groups::post(&a.sim, &jid, &body).await?;
                    Ok::<_, AdminError>(Json(serde_json::json!({ "id": id })))
                },
            )
            .get(
                |State(a): State<Admin>,
                 Path(jid): Path<String>,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    crate::groups::received(&a.sim, &jid, q.get("member").map(String::as_str))
                        .map(Json)
                },
            ),
        )
        .route(
            "/admin/groups/{jid}/receipts",
            post(
                |State(a): State<Admin>, Path(jid): Path<String>, body: axum::body::Bytes| async move {
                    crate::groups::receipts(&a.sim, &jid, &body).map(Json)
                },
            ),
        )
        .route(
            "/admin/groups/{jid}/participants",
            post(
                |State(a): State<Admin>, Path(jid): Path<String>, body: axum::body::Bytes| async move {
                    crate::groups::participants(&a.sim, &jid, &body).await.map(Json)
                },
            ),
        )
        .route(
            "/admin/groups/{jid}/requests",
            post(
                |State(a): State<Admin>, Path(jid): Path<String>, body: axum::body::Bytes| async move {
                    crate::groups::request(&a.sim, &jid, &body).await.map(Json)
                },
            ),
        )
        .route(
            "/mms/{kind}/{token}",
            post(
                |State(a): State<Admin>,
                 Path((kind, token)): Path<(String, String)>,
                 body: axum::body::Bytes| async move {
                    crate::messaging::media_upload(&a.sim, &kind, &token, body.to_vec())
                },
            ),
        )
        .route(
            "/v/{*path}",
            get(
                |State(a): State<Admin>, Path(path): Path<String>| async move {
                    crate::messaging::media_download(&a.sim, &path)
                },
            ),
        )
        .route(
            "/admin/outage",
            post(
                |State(a): State<Admin>, body: axum::body::Bytes| async move {
                    let duration = outage_duration(&body)?;
                    let dropped = a.outage(duration);
                    Ok::<_, AdminError>(Json(serde_json::json!({
                        "dropped": dropped,
                        "seconds": duration.as_secs_f64(),
                    })))
                },
            ),
        )
        .with_state(admin)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The largest request body (a media upload, an admin-posted image).
const MAX_BODY_BYTES: usize = 64 << 20;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn outage_body_is_checked() {
        assert_eq!(
            outage_duration(br#"{"seconds": 2}"#).unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(
            outage_duration(br#"{"seconds": 0.5}"#).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            outage_duration(br#"{"seconds": 0}"#).unwrap(),
            Duration::ZERO
        );
        for bad in [
            &b""[..],
            b"not json",
            b"{}",
            br#"{"seconds": "2"}"#,
            br#"{"seconds": -1}"#,
            br#"{"seconds": 86401}"#,
            br#"{"seconds": 2, "extra": 1}"#,
        ] {
            let err = outage_duration(bad).unwrap_err();
            assert!(matches!(err, AdminError::BadRequest(_)), "{err:?}");
            assert!(err.to_string().contains("{\"seconds\": N}"), "{err}");
        }
    }
}
