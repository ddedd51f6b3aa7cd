//! `wa-sim`: the WhatsApp protocol simulator as a process.
//!
//! ```text
//! wa-sim --listen 127.0.0.1:8090 [--world examples/world.json]
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
#[command(name = "wa-sim", version, about = "A WhatsApp Web protocol simulator")]
struct Args {
    /// Address to listen on (WebSocket and admin API).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// World file (the fake adapter's fixtures format).
    #[arg(long)]
    world: Option<PathBuf>,
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
    let sim = Simulator::bind(args.listen, world).await?;
    tracing::info!(
        "wa-sim ready: clients → {}, admin → {}",
        sim.url(),
        sim.admin_url()
    );
    tokio::select! {
        () = async { let _ = tokio::signal::ctrl_c().await; } => {
            tracing::info!("stopping");
            sim.shutdown().await;
        }
    }
    Ok(())
}
