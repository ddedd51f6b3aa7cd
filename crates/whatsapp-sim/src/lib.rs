//! A WhatsApp Web multi-device protocol simulator.
//!
//! It speaks enough of the protocol that an unmodified `whatsapp-rust` 0.7
//! client (built with its `danger-skip-cert-chain-verify` feature, since the
//! simulator's Noise certificate is not WhatsApp's) can pair by QR code or
//! pairing code, log in, stay connected, and look up and block contacts of
//! a [`World`]. An [`Admin`] API plays the phones: scanning codes, unlinking
//! companions, cutting connections, simulating outages, and the world's
//! contacts, each a Signal user with one device, who receive, decrypt and
//! receipt the client's messages and send it their own (text or image,
//! served by the simulator's media host). With a state file
//! ([`SimulatorBuilder::state_file`]) accounts, linked devices, blocklists,
//! contacts' Signal sessions and messages survive a restart. See `docs/simulator.md`.
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
mod contact;
mod groups;
mod iq;
mod messaging;
mod noise;
mod pairing;
mod persist;
mod phone;
mod presence;
mod signal;
mod state;
pub mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use admin::{AccountInfo, Admin, AdminError, DeviceInfo, Health};
pub use persist::{STATE_VERSION, StateError};
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
    /// The state file cannot be read, is corrupt, or cannot be written.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Starts simulators.
#[derive(Debug, Clone, Copy)]
pub struct Simulator;

impl Simulator {
    /// Starts a simulator of `world` on a free port of 127.0.0.1, state in
    /// memory only.
    ///
    /// # Errors
    ///
    /// [`SimError`] when it cannot bind or start.
    pub async fn start(world: World) -> Result<SimulatorHandle, SimError> {
        Self::builder(world).start().await
    }

    /// Starts a simulator of `world` listening on `addr` (port 0 picks one),
    /// state in memory only.
    ///
    /// # Errors
    ///
    /// [`SimError`] when it cannot bind or start.
    pub async fn bind(addr: SocketAddr, world: World) -> Result<SimulatorHandle, SimError> {
        Self::builder(world).listen(addr).start().await
    }

    /// A simulator of `world` to configure: by default on a free port of
    /// 127.0.0.1, without a state file.
    pub fn builder(world: World) -> SimulatorBuilder {
        SimulatorBuilder {
            world,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            state: None,
            login_phase: state::DEFAULT_LOGIN_PHASE,
        }
    }
}

/// How to start a simulator: [`Simulator::builder`], then
/// [`SimulatorBuilder::start`].
#[derive(Debug, Clone)]
pub struct SimulatorBuilder {
    world: World,
    addr: SocketAddr,
    state: Option<PathBuf>,
    login_phase: Duration,
}

impl SimulatorBuilder {
    /// Listens on `addr` (port 0 picks a free one).
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Keeps the world's mutable state (accounts, linked devices and their
    /// keys, blocklists, the server's Noise identity) in the JSON file
    /// `path`: loaded at start if it exists, written at start and after
    /// every change (atomically: temporary file, fsync, rename). A restarted
    /// simulator on the same file lets devices linked before log in again.
    /// One simulator per file.
    #[must_use]
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state = Some(path.into());
        self
    }

    /// Serves a connection on the login threads (see `GET /admin/health`
    /// `loggingIn`) until its key digest query is answered or for at most
    /// `bound` (default 10 s: a companion showing QR codes, a client that
    /// never asks for its digest).
    #[must_use]
    pub fn login_phase(mut self, bound: Duration) -> Self {
        self.login_phase = bound;
        self
    }

    /// Starts the simulator.
    ///
    /// # Errors
    ///
    /// [`SimError::State`] when the state file cannot be read, is corrupt or
    /// cannot be written; [`SimError::Bind`] when the address cannot be
    /// bound; [`SimError::Init`] when key generation fails.
    pub async fn start(self) -> Result<SimulatorHandle, SimError> {
        let SimulatorBuilder {
            world,
            addr,
            state,
            login_phase,
        } = self;
        let mut sim = Sim::new(world, state)?;
        sim.login_threads.bound = login_phase;
        let sim = Arc::new(sim);
        // Written once at start: an unwritable path fails now, not at the
        // first pairing.
        sim.persist().await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        sim.set_addr(local);
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
        let writer = sim.has_store().then(|| {
            let (stop, mut stopped) = oneshot::channel::<()>();
            let sim = sim.clone();
            let task = tokio::spawn(async move {
                // Changes not already saved by the code that made them (an
                // in-process admin call, say) are saved here, soon after.
                loop {
                    tokio::select! {
                        () = sim.changed.notified() => {
                            let _ = sim.persist().await;
                        }
                        _ = &mut stopped => return,
                    }
                }
            });
            (stop, task)
        });
        tracing::info!("WhatsApp simulator listening on ws://{local}/ws/chat");
        Ok(SimulatorHandle {
            addr: local,
            admin: Admin::new(sim.clone()),
            sim,
            stop: Some(stop_tx),
            task,
            writer,
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
    /// The state-file writer and its stop signal, with a state file.
    writer: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
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

    /// Stops listening and closes every client connection abruptly; with a
    /// state file, returns once it holds the final state.
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
        if let Some((stop, writer)) = self.writer.take() {
            let _ = stop.send(());
            let _ = writer.await;
        }
        // Errors are logged by `persist`.
        let _ = self.sim.persist().await;
    }
}
