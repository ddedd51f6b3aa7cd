//! What the process-level fault tests (`tests/faults`, `tests/delivery_faults`)
//! share: running `wagate serve` as the child process, free ports, and an
//! API key made on the gateway's database before it runs.

#![allow(dead_code)] // each harness uses what it needs

use std::net::TcpListener;
use std::path::Path;

/// `wagate --config <$var> serve`, exactly as the binary's `main` runs it;
/// exits the process on failure.
pub fn run_gateway(config_var: &str) {
    let config = std::env::var(config_var).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cli =
        <wagate::cli::Cli as clap::Parser>::parse_from(["wagate", "--config", &config, "serve"]);
    if let Err(e) = runtime.block_on(wagate::cli::run(cli)) {
        eprintln!("gateway failed: {e:#}");
        std::process::exit(1);
    }
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An API key of organization `acme` named `name` with `caps`, made through
/// the gateway's own services on the database of `config`.
pub async fn api_key(config: &Path, name: &str, caps: &str) -> String {
    let config = wagate::config::Config::load(Some(config)).unwrap();
    let services = wagate::Services::build(&config).await.unwrap();
    let created = services
        .gateway
        .issue_api_key(
            &wagate_domain::OrgId::parse("acme").unwrap(),
            wagate_app::NewApiKeyRequest {
                name: wagate_domain::ApiKeyName::parse(name).unwrap(),
                capabilities: wagate_domain::CapabilitySet::parse_list(caps).unwrap(),
                expires_at: None,
            },
        )
        .await
        .unwrap();
    services.shutdown().await;
    created.secret.expose().to_owned()
}
