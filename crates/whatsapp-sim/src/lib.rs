//! A WhatsApp Web multi-device protocol simulator.
//!
//! It speaks enough of the protocol that an unmodified `whatsapp-rust` 0.7
//! client (built with its `danger-skip-cert-chain-verify` feature, since the
//! simulator's Noise certificate is not WhatsApp's) can pair by QR code or
//! pairing code, log in, stay connected, and look up and block contacts of
//! a [`World`]. An [`Admin`] API plays the phones: scanning codes, unlinking
//! companions, cutting connections. See `docs/simulator.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use wagate_whatsapp_sim::{Simulator, World};
//! let sim = Simulator::start(World::empty()).await?;
//! println!("point the client at {}", sim.url());
//! // … the client shows a QR code `qr` …
//! # let qr = String::new();
//! sim.admin().scan_qr(&qr, "15550001111").await?;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
mod conn;
mod iq;
mod noise;
mod pairing;
mod phone;
mod signal;
mod state;
pub mod world;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use admin::{AccountInfo, Admin, AdminError, DeviceInfo, Health};
pub use state::{BlockedContact, LinkedDevice};
pub use world::{World, WorldError};

use state::{Outbound, Sim};

/// Why the simulator could not start.
#[derive(Debug, Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Key generation or another start-up step failed.
    #[error("simulator start-up failed: {0}")]
    Init(String),
}

/// Starts simulators.
#[derive(Debug, Clone, Copy)]
pub struct Simulator;

impl Simulator {
    /// Starts a simulator of `world` on a free port of 127.0.0.1.
    ///
    /// # Errors
    ///
    /// [`SimError`] when it cannot bind or start.
    pub async fn start(world: World) -> Result<SimulatorHandle, SimError> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), world).await
    }

    /// Starts a simulator of `world` listening on `addr` (port 0 picks one).
    ///
    /// # Errors
    ///
    /// [`SimError`] when it cannot bind or start.
    pub async fn bind(addr: SocketAddr, world: World) -> Result<SimulatorHandle, SimError> {
        let sim = Arc::new(Sim::new(world).map_err(|e| SimError::Init(e.to_string()))?);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let app = admin::router(sim.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!("simulator server failed: {e}");
            }
        });
        tracing::info!("WhatsApp simulator listening on ws://{local}/ws/chat");
        Ok(SimulatorHandle {
            addr: local,
            admin: Admin::new(sim.clone()),
            sim,
            stop: Some(stop_tx),
            task,
        })
    }
}

/// A running simulator. Dropping it leaves the server running until the
/// runtime ends; call [`SimulatorHandle::shutdown`] to stop it.
#[derive(Debug)]
pub struct SimulatorHandle {
    addr: SocketAddr,
    admin: Admin,
    sim: Arc<Sim>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SimulatorHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL for clients: `ws://HOST:PORT/ws/chat`.
    pub fn url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    /// The base URL of the HTTP admin API: `http://HOST:PORT/admin`.
    pub fn admin_url(&self) -> String {
        format!("http://{}/admin", self.addr)
    }

    /// The in-process admin API (the same actions as the HTTP one).
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// Runs until the server stops (for the `wa-sim` binary).
    pub async fn wait(mut self) {
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }

    /// Stops listening and closes every client connection abruptly.
    pub async fn shutdown(mut self) {
        {
            let g = self.sim.lock();
            for c in g.conns.values() {
                let _ = c.tx.send(Outbound::Drop);
            }
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            tracing::warn!("simulator did not stop within 5 s");
        }
    }
}
