//! The admin API: what the test (or a person) does as the phones, in
//! process ([`Admin`]) and over HTTP under `/admin`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State, WebSocketUpgrade};
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
    /// Known accounts.
    pub accounts: usize,
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
        crate::pairing::scan_qr(&self.sim, qr, phone).await
    }

    /// The phone `phone` enters the 8-character pairing code a companion
    /// shows after asking to link by phone number.
    ///
    /// # Errors
    ///
    /// As [`Admin::scan_qr`]; [`AdminError::Failed`] when the code is not the
    /// companion's.
    pub async fn pair_code(&self, phone: &str, code: &str) -> Result<LinkedDevice, AdminError> {
        crate::pairing::enter_code(&self.sim, phone, code).await
    }

    /// The account of `phone`: its linked devices and blocklist.
    pub fn account(&self, phone: &str) -> Option<AccountInfo> {
        let phone = phone_digits(phone)?;
        let g = self.sim.lock();
        let a = g.accounts.get(&phone)?;
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
        let a = g
            .accounts
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

    /// Connection and account counts.
    pub fn health(&self) -> Health {
        let g = self.sim.lock();
        Health {
            status: "ok",
            connections: g.conns.len(),
            logged_in: g.conns.values().filter(|c| c.login.is_some()).count(),
            accounts: g.accounts.len(),
        }
    }
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
                    a.logout(&phone)
                        .map(|n| Json(serde_json::json!({ "unlinked": n })))
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
        .with_state(admin)
}
