//! # wagate (the binary's library)
//!
//! Wiring only: [`Config`] is read once, [`Services::build`] turns it into
//! the ports and the [`Gateway`](wagate_app::Gateway) (dependency injection
//! through `Arc<dyn Port>`), and [`Application`] serves them over HTTP. The
//! `wagate` command line ([`cli`]) runs on the same pieces. There is no
//! business logic here.
//!
//! Tests start the real application on a free port:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut config = wagate::Config::default();
//! config.server.bind = "127.0.0.1:0".into();
//! let app = wagate::Application::build(config).await?;
//! let port = app.port();
//! tokio::spawn(app.run_until_stopped());
//! # Ok(()) }
//! ```

pub mod cli;
pub mod config;
mod services;
pub mod telemetry;

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;

pub use config::Config;
pub use services::{Background, KeyTools, Services, open_store};

/// Stops a running [`Application`].
#[derive(Clone)]
pub struct StopHandle(actix_web::dev::ServerHandle, wagate_http::Shutdown);

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopHandle")
    }
}

impl StopHandle {
    /// Stops the server; with `graceful`, requests in flight finish first.
    pub async fn stop(&self, graceful: bool) {
        // Event streams end first: graceful shutdown does not wait for them.
        self.1.close();
        self.0.stop(graceful).await;
    }
}

/// The gateway, bound to its port, ready to run.
pub struct Application {
    port: u16,
    services: Services,
    server: actix_web::dev::Server,
    /// Ends the event streams.
    streams: wagate_http::Shutdown,
    to_resume: Vec<wagate_domain::Session>,
    /// `whatsapp.live.resume_rate`.
    resume_rate: u32,
    /// This node, when several gateways share the (PostgreSQL) database.
    cluster: Option<wagate_app::ClusterMember>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Builds everything from `config` and binds the listener (port 0 picks
    /// a free one). Migrations run here.
    ///
    /// # Errors
    ///
    /// When the database cannot be opened or migrated, the address cannot be
    /// bound, a setting is invalid (such as `limits.burst = 0`), or the
    /// configuration asks for something this build lacks.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, None).await
    }

    /// As [`Application::build`], with `ownership` deciding where each
    /// session's live calls run instead of the database's own answer
    /// (tests place sessions on other nodes with it).
    ///
    /// # Errors
    ///
    /// As [`Application::build`].
    pub async fn build_with_ownership(
        config: Config,
        ownership: Arc<dyn wagate_store::SessionOwnership>,
    ) -> anyhow::Result<Self> {
        Self::build_with(config, Some(ownership)).await
    }

    async fn build_with(
        config: Config,
        ownership: Option<Arc<dyn wagate_store::SessionOwnership>>,
    ) -> anyhow::Result<Self> {
        // Checked before anything is opened.
        let request_limit = config.limits.request_limit()?;
        let event_stream = config.events.event_stream()?;
        raise_open_files_limit();
        let database = config.database()?;
        let mut services = Services::build(&config).await?;
        let listener = TcpListener::bind(&config.server.bind)
            .with_context(|| format!("cannot listen on {}", config.server.bind))?;
        let port = listener.local_addr()?.port();
        let resume_rate = config.whatsapp.live.resume_rate;
        let (to_resume, cluster) = match &database {
            // Several gateways may share the database: this one connects
            // only the sessions it claims (ClusterMember), never one
            // another live gateway owns.
            config::Database::Postgres(cluster) => {
                let advertise_url = cluster.advertise_url(listener.local_addr()?);
                let member = services
                    .join_cluster(cluster, advertise_url, resume_rate)
                    .await?;
                let mut claimed = Vec::new();
                if let Some(member) = &member {
                    claimed = member.claim_at_start().await?;
                }
                (claimed, member)
            }
            // Before serving: statuses from before a restart must not be shown.
            config::Database::Sqlite => (services.gateway.prepare_resume().await?, None),
        };
        if let Some(ownership) = ownership {
            services.ownership = ownership;
        }
        let state =
            wagate_http::AppState::new(services.gateway.clone(), services.authenticator.clone())?
                .with_request_limit(request_limit)
                .with_event_stream(event_stream)
                .with_cluster(services.ownership.clone(), services.link.clone());
        let streams = state.shutdown();
        let server = wagate_http::server(listener, state, config.server.workers)?;
        Ok(Self {
            port,
            services,
            server,
            streams,
            to_resume,
            resume_rate,
            cluster,
        })
    }

    /// The port the gateway listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server (as SIGTERM would).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.server.handle(), self.streams.clone())
    }

    /// The use cases (tests use it to create API keys without the CLI).
    pub fn gateway(&self) -> Arc<wagate_app::Gateway> {
        self.services.gateway.clone()
    }

    /// The fake WhatsApp adapter when `whatsapp.adapter = "fake"` (tests
    /// have its contacts write to a session).
    pub fn fake_whatsapp(&self) -> Option<Arc<wagate_whatsapp_port::FakeWhatsApp>> {
        self.services.fake.clone()
    }

    /// Serves until SIGTERM or Ctrl-C (or the server is stopped), then
    /// closes everything cleanly. Sessions that should be connected are
    /// resumed in the background as soon as serving starts, at most
    /// `whatsapp.live.resume_rate` a second; webhook deliveries and the
    /// event log's pruning run while serving
    /// ([`Services::start_background`]).
    ///
    /// # Errors
    ///
    /// When the server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let gateway = self.services.gateway.clone();
        let to_resume = self.to_resume;
        if !to_resume.is_empty() {
            let (count, rate) = (to_resume.len(), self.resume_rate);
            tracing::info!(sessions = count, per_second = rate, "resuming sessions");
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let n = gateway.resume_sessions_at(to_resume, rate).await;
                tracing::info!(
                    sessions = n,
                    seconds = started.elapsed().as_secs_f64(),
                    "resumed sessions"
                );
            });
        }
        if let Some(cluster) = &self.cluster {
            // Claims, heartbeats, balancing. A claimed session's pending
            // messages go out when it connects here.
            cluster.start();
        } else {
            // Accepted messages not sent before the restart go out again
            // (under their ids), each session at its pace.
            match self.services.gateway.resume_outbox().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "sending pending messages"),
                Err(e) => tracing::warn!(error = %e, "could not resume pending messages"),
            }
        }
        tracing::info!(port = self.port, "wagate is listening");
        // Serving: webhook deliveries and the event log's pruning run
        // until the server stops, and stop before the database closes.
        let background = self.services.start_background();
        let result = self.server.await;
        if let Some(cluster) = &self.cluster {
            // SIGTERM drains: every client stops cleanly and its session is
            // released at once for the other gateways to claim.
            cluster.drain().await;
        }
        background.stop().await;
        self.services.shutdown().await;
        tracing::info!("wagate stopped");
        result.context("HTTP server failed")
    }
}

/// Open file descriptors one live session holds: its WebSocket to
/// WhatsApp. Its device keys live in the process's one key store (a few
/// descriptors for all sessions); measured with `bench/sessions.sh`
/// (docs/PERFORMANCE.md).
const FDS_PER_LIVE_SESSION: u64 = 1;
/// Descriptors set aside for everything else: HTTP connections, the
/// databases, the key store, logs.
const FDS_RESERVED: u64 = 1024;

/// Raises the open-files soft limit (RLIMIT_NOFILE) to the hard limit, so
/// the number of sessions is bounded by what the system allows rather than
/// by the (often 1024) default, and logs how many live sessions that
/// leaves room for. A failure is logged, not fatal.
fn raise_open_files_limit() {
    let before = match rlimit::Resource::NOFILE.get() {
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit");
            return;
        }
    };
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => {
            let sessions = soft.saturating_sub(FDS_RESERVED) / FDS_PER_LIVE_SESSION;
            tracing::info!(
                limit = soft,
                raised_from = before,
                live_sessions = sessions,
                "open-files limit {soft}: room for about {sessions} live sessions \
                 ({FDS_PER_LIVE_SESSION} descriptor each, {FDS_RESERVED} kept for the rest)"
            );
        }
        Err(e) => tracing::warn!(
            error = %e,
            limit = before,
            "cannot raise the open-files limit; room for about {} live sessions",
            before.saturating_sub(FDS_RESERVED) / FDS_PER_LIVE_SESSION
        ),
    }
}

/// The README's example, compiled as a doc test so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
