//! `wa-sim`: the WhatsApp protocol simulator as a process.
//!
//! ```text
//! wa-sim --listen 127.0.0.1:8090 [--world examples/world.json] [--state wa-sim-state.json]
//! ```
//!
//! Clients connect to `ws://HOST:PORT/ws/chat`; the admin API is under
//! `http://HOST:PORT/admin` (see docs/simulator.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use wagate_whatsapp_sim::{Simulator, World};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "wa-sim",
    version,
    about = "A WhatsApp Web protocol simulator",
    after_help = "Clients connect to ws://LISTEN/ws/chat; the admin API is under \
                  http://LISTEN/admin (health, scan-qr, pair-code, accounts/{phone}, \
                  accounts/{phone}/logout, accounts/{phone}/drop, outage). \
                  See docs/simulator.md."
)]
struct Args {
    /// Address to listen on (WebSocket and admin API).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// World file (the fake adapter's fixtures format).
    #[arg(long)]
    world: Option<PathBuf>,
    /// State file (JSON): accounts, linked devices and their keys,
    /// blocklists and the server's identity are loaded from it at start if
    /// it exists, and saved to it atomically after every change, so devices
    /// linked before a restart log in again. Without it, state lives in
    /// memory only. One wa-sim per file; a corrupt file stops the start.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let world = match &args.world {
        Some(path) => {
            World::from_file(path).with_context(|| format!("world {}", path.display()))?
        }
        None => World::empty(),
    };
    let mut builder = Simulator::builder(world).listen(args.listen);
    if let Some(state) = &args.state {
        builder = builder.state_file(state);
    }
    let sim = builder.start().await?;
    tracing::info!(
        "wa-sim ready: clients → {}, admin → {}{}",
        sim.url(),
        sim.admin_url(),
        args.state
            .as_ref()
            .map(|p| format!(", state → {}", p.display()))
            .unwrap_or_default()
    );
    stop_signal().await;
    tracing::info!("stopping");
    sim.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (a container stop).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => tracing::warn!("cannot listen for SIGTERM: {e}"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn state_is_optional() {
        let args = Args::try_parse_from(["wa-sim"]).unwrap();
        assert_eq!(args.state, None);
        let args = Args::try_parse_from(["wa-sim", "--state", "/tmp/s.json"]).unwrap();
        assert_eq!(args.state, Some(PathBuf::from("/tmp/s.json")));
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("--state <FILE>"), "{help}");
        assert!(help.contains("outage"), "{help}");
    }
}
