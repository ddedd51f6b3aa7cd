//! What the process-level tests (`tests/faults`, `tests/delivery_faults`,
//! `tests/hardening_process`) share: running `wagate serve` as the child
//! process, free ports, and API keys made on the gateway's database before
//! it runs.

#![allow(dead_code)] // each harness uses what it needs

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    api_keys(config, &[("acme", name, caps)]).await.remove(0)
}

/// API keys (`(organization, name, capabilities)` each), made through the
/// gateway's own services on the database of `config`, in that order.
pub async fn api_keys(config: &Path, wanted: &[(&str, &str, &str)]) -> Vec<String> {
    let config = wagate::config::Config::load(Some(config)).unwrap();
    let services = wagate::Services::build(&config).await.unwrap();
    let mut keys = Vec::new();
    for (org, name, caps) in wanted {
        let created = services
            .gateway
            .issue_api_key(
                &wagate_domain::OrgId::parse(org).unwrap(),
                wagate_app::NewApiKeyRequest {
                    name: wagate_domain::ApiKeyName::parse(name).unwrap(),
                    capabilities: wagate_domain::CapabilitySet::parse_list(caps).unwrap(),
                    expires_at: None,
                },
            )
            .await
            .unwrap();
        keys.push(created.secret.expose().to_owned());
    }
    services.shutdown().await;
    keys
}

/// A child process of a process test: this test executable run again with
/// `role_var=role` (its `main` then plays that role: [`run_gateway`], or a
/// simulator), its output lines (the log) arriving on a channel. Killed
/// (SIGKILL) when dropped, also when a test fails.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    name: String,
}

impl Proc {
    /// Starts it with `envs` set.
    pub fn spawn(role_var: &str, role: &str, envs: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(role_var, role)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            lines,
            name: role.to_owned(),
        }
    }

    /// Waits (blocking) for an output line holding every one of `parts`.
    pub fn wait_line(&self, parts: &[&str], patience: Duration) -> String {
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if parts.iter().all(|p| line.contains(p)) => return line,
                Ok(_) => {}
                Err(e) => panic!("{}: no line with {parts:?}: {e}", self.name),
            }
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill_nine(self) {
        drop(self);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
