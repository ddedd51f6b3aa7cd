//! The `wagate` command line.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use time::format_description::well_known::Rfc3339;
use wagate_app::{ApiKeyAdmin, NewApiKeyRequest};
use wagate_domain::{ApiKeyId, ApiKeyName, CapabilitySet, OrgId, parse_expiry};

use crate::{Application, Config, KeyTools, open_store, telemetry};

/// wagate: a multi-tenant WhatsApp gateway.
#[derive(Debug, Parser)]
#[command(name = "wagate", version, about)]
pub struct Cli {
    /// TOML configuration file (default: ./wagate.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Manage API keys.
    #[command(name = "api-key", subcommand)]
    ApiKey(ApiKeyCommand),
    /// Apply database migrations (serve also does).
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Database operations.
    #[command(subcommand)]
    Db(DbCommand),
    /// The gateways sharing a PostgreSQL database.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// `wagate cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The live gateway nodes (lease not run out): id, advertised URL,
    /// start, last heartbeat, draining, sessions owned. Needs a
    /// `postgres://` database.url (on SQLite there is one gateway and no
    /// cluster: an error says so).
    Status {
        /// Print `{"nodes": [...]}` and nothing else.
        #[arg(long)]
        json: bool,
    },
}

/// `wagate db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy a stopped SQLite deployment (sessions, keys, events, webhooks,
    /// messages and every device's WhatsApp keys) into an empty PostgreSQL
    /// database, so its linked sessions connect from there without a new QR
    /// code. Refuses a target that has rows.
    Copy {
        /// The stopped deployment's database (`sqlite://…`).
        #[arg(long, value_name = "URL")]
        from: String,
        /// The empty PostgreSQL database (`postgres://…`).
        #[arg(long, value_name = "URL")]
        to: String,
        /// The deployment's device-key file, when `whatsapp.live.store` set
        /// one (default: `devices.db` beside the database).
        #[arg(long, value_name = "FILE")]
        devices: Option<PathBuf>,
    },
}

/// `wagate api-key …`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// Organization the key acts in.
        #[arg(long)]
        org: String,
        /// Label.
        #[arg(long)]
        name: String,
        /// Comma-separated: read,send,manage,admin.
        #[arg(long, value_name = "LIST")]
        capabilities: String,
        /// RFC 3339 expiry (default: never).
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
        /// Print one JSON object and nothing else.
        #[arg(long)]
        json: bool,
    },
    /// List an organization's keys (never their secrets).
    List {
        /// Organization.
        #[arg(long)]
        org: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key.
    Revoke {
        /// `key_…`
        key_id: String,
    },
}

/// Runs the parsed command line.
///
/// # Errors
///
/// Whatever the command fails with, for `main` to print.
///
/// Only `serve` starts a WhatsApp adapter; the other commands open what
/// they need (the database, or nothing), print their output alone on
/// standard output, and log to standard error.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        println!("{}", wagate_http::openapi::json());
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    telemetry::init(&config.log);
    match command {
        Command::Serve => Application::build(config).await?.run_until_stopped().await,
        Command::Migrate => {
            let store = open_store(&config).await?;
            store.close().await;
            tracing::info!("database is up to date");
            Ok(())
        }
        Command::Openapi => Ok(()),
        Command::Db(DbCommand::Copy { from, to, devices }) => {
            db_copy(&from, &to, devices, &mut std::io::stdout().lock()).await
        }
        Command::Cluster(ClusterCommand::Status { json }) => {
            let store = open_store(&config).await?;
            let nodes = store.cluster_nodes().await;
            store.close().await;
            let Some(nodes) = nodes? else {
                anyhow::bail!(
                    "this database is SQLite: one gateway, no cluster (cluster status needs a \
                     postgres:// database.url shared by the gateways)"
                );
            };
            cluster_status(&nodes, json, &mut std::io::stdout().lock())
        }
        Command::ApiKey(cmd) => {
            let tools = KeyTools::open(&config).await?;
            let result = api_key(&tools.keys, cmd, &mut std::io::stdout().lock()).await;
            tools.close().await;
            result
        }
    }
}

/// `wagate db copy`: the SQLite database at `from` and its device-key file
/// (`devices`, or `devices.db` beside it) into the empty PostgreSQL
/// database at `to`, in one transaction; prints rows per table to `out`.
///
/// # Errors
///
/// On URLs of the wrong kinds, a missing source, a target that cannot be
/// prepared or has rows, or a row that does not fit.
pub async fn db_copy(
    from: &str,
    to: &str,
    devices: Option<PathBuf>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    use wagate_store::{Backend, CopySource};
    if Backend::of(from) != Some(Backend::Sqlite) {
        anyhow::bail!("--from must be the stopped deployment's sqlite:// database URL");
    }
    if Backend::of(to) != Some(Backend::Postgres) {
        anyhow::bail!("--to must be a postgres:// database URL");
    }
    let devices = match devices {
        Some(path) => path,
        None => crate::config::devices_beside(from)?,
    };
    let from_path = from
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let from_path = from_path.split('?').next().unwrap_or(from_path);
    anyhow::ensure!(
        std::path::Path::new(from_path).is_file(),
        "{from_path}: no such database (--from)"
    );
    anyhow::ensure!(
        devices.is_file(),
        "{}: no device-key file (give --devices when whatsapp.live.store named another)",
        devices.display()
    );
    // The target's tables, as a gateway on it creates them.
    let store = wagate_store::open(to)
        .await
        .context("cannot prepare the target database")?;
    store.close().await;
    wagate_whatsapp_live::prepare_postgres_device_store(to).await?;
    let devices_url = format!("sqlite://{}", devices.display());
    let report = wagate_store::copy_sqlite_to_postgres(
        &[
            CopySource {
                sqlite_url: from,
                schema: "public",
            },
            CopySource {
                sqlite_url: &devices_url,
                schema: wagate_whatsapp_live::DEVICE_SCHEMA,
            },
        ],
        to,
    )
    .await?;
    for (table, rows) in &report.rows {
        writeln!(out, "{table}\t{rows}")?;
    }
    writeln!(out, "copied {} rows", report.total())?;
    Ok(())
}

/// Prints `wagate cluster status`: `{"nodes": [...]}` with `json`, else a
/// table.
///
/// # Errors
///
/// When `out` cannot be written.
pub fn cluster_status(
    nodes: &[wagate_store::NodeStatus],
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let time = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    if json {
        let nodes: Vec<_> = nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "id": n.id.to_string(), "advertiseUrl": n.advertise_url,
                    "startedAt": time(n.started_at), "heartbeatAt": time(n.heartbeat_at),
                    "draining": n.draining, "sessions": n.sessions,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::json!({ "nodes": nodes }))?;
        return Ok(());
    }
    if nodes.is_empty() {
        writeln!(out, "No live gateway nodes.")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<32} {:<28} {:<9} {:<9} {:<30} HEARTBEAT",
        "NODE", "ADVERTISE URL", "SESSIONS", "DRAINING", "STARTED"
    )?;
    for n in nodes {
        writeln!(
            out,
            "{:<32} {:<28} {:<9} {:<9} {:<30} {}",
            n.id.to_string(),
            n.advertise_url,
            n.sessions,
            if n.draining { "yes" } else { "no" },
            time(n.started_at),
            time(n.heartbeat_at)
        )?;
    }
    Ok(())
}

/// Runs an `api-key` command, printing to `out`.
///
/// # Errors
///
/// On invalid arguments or a store failure.
pub async fn api_key(
    keys: &ApiKeyAdmin,
    cmd: ApiKeyCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::Create {
            org,
            name,
            capabilities,
            expires_at,
            json,
        } => {
            let org = OrgId::parse(&org).context("--org")?;
            let request = NewApiKeyRequest {
                name: ApiKeyName::parse(&name).context("--name")?,
                capabilities: CapabilitySet::parse_list(&capabilities).context("--capabilities")?,
                expires_at: expires_at
                    .as_deref()
                    .map(parse_expiry)
                    .transpose()
                    .context("--expires-at")?,
            };
            let created = keys.issue(&org, request).await?;
            if json {
                let body = serde_json::json!({
                    "id": created.key.id.to_string(),
                    "key": created.secret.expose(),
                    "org": org.as_str(),
                    "capabilities": created.key.capabilities,
                });
                writeln!(out, "{body}")?;
            } else {
                writeln!(
                    out,
                    "Created API key {} for organization {} ({}).",
                    created.key.id, org, created.key.capabilities
                )?;
                writeln!(
                    out,
                    "Secret (shown only now, store it safely):\n{}",
                    created.secret.expose()
                )?;
            }
        }
        ApiKeyCommand::List { org, json } => {
            let org = OrgId::parse(&org).context("--org")?;
            let listed = keys.keys_of(&org).await?;
            if json {
                let rows: Vec<_> = listed
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "id": k.id.to_string(), "name": k.name.as_str(), "capabilities": k.capabilities,
                            "prefix": k.prefix, "createdAt": k.created_at.format(&Rfc3339).ok(),
                            "expiresAt": k.expires_at.and_then(|t| t.format(&Rfc3339).ok()),
                            "lastUsedAt": k.last_used_at.and_then(|t| t.format(&Rfc3339).ok()),
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::Value::Array(rows))?;
            } else if listed.is_empty() {
                writeln!(out, "No API keys for organization {org}.")?;
            } else {
                writeln!(
                    out,
                    "{:<30} {:<14} {:<24} NAME",
                    "ID", "PREFIX", "CAPABILITIES"
                )?;
                for k in listed {
                    writeln!(
                        out,
                        "{:<30} {:<14} {:<24} {}",
                        k.id,
                        k.prefix,
                        k.capabilities.to_string(),
                        k.name.as_str()
                    )?;
                }
            }
        }
        ApiKeyCommand::Revoke { key_id } => {
            let id = ApiKeyId::parse(&key_id).context("KEY_ID")?;
            keys.revoke(None, &id)
                .await
                .with_context(|| format!("revoking {id}"))?;
            writeln!(out, "Revoked {id}.")?;
        }
    }
    Ok(())
}
