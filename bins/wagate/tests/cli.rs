//! The `wagate` command line, run as a process, as an operator would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::process::{Command, Output};

use serde_json::Value;

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `wagate ARGS` on a SQLite file in the folder (more `env` wins).
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wagate"));
        c.args(args)
            .current_dir(self.dir.path())
            .env(
                "WAGATE__DATABASE__URL",
                format!("sqlite://{}/db/wagate.db", self.dir.path().display()),
            )
            .env("WAGATE__LOG__LEVEL", "warn")
            .env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn api_key_create_list_revoke() {
    let cli = Cli::new();
    let stdout = cli.ok(&[
        "api-key",
        "create",
        "--org",
        "acme",
        "--name",
        "ci",
        "--capabilities",
        "read,send",
        "--json",
    ]);
    assert_eq!(
        stdout.lines().count(),
        1,
        "exactly one JSON object on stdout: {stdout}"
    );
    let created: Value = serde_json::from_str(&stdout).unwrap();
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(key.starts_with("wgk_") && id.starts_with("key_"));
    assert_eq!(created["org"], "acme");
    assert_eq!(created["capabilities"], serde_json::json!(["read", "send"]));
    assert_eq!(created.as_object().unwrap().len(), 4);

    let list = cli.ok(&["api-key", "list", "--org", "acme", "--json"]);
    let rows: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["prefix"], &key[..12]);
    assert!(!list.contains(&key[12..]), "the secret is never listed");
    assert!(
        cli.ok(&["api-key", "list", "--org", "other"])
            .contains("No API keys")
    );

    let table = cli.ok(&["api-key", "list", "--org", "acme"]);
    assert!(table.contains(id) && table.contains("read,send"));

    assert!(cli.ok(&["api-key", "revoke", id]).contains("Revoked"));
    assert_eq!(
        cli.ok(&["api-key", "list", "--org", "acme", "--json"])
            .trim(),
        "[]"
    );
    let again = cli.run(&["api-key", "revoke", id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("API key not found"));
}

#[test]
fn plain_create_prints_the_secret_on_the_last_line() {
    let cli = Cli::new();
    let out = cli.ok(&[
        "api-key",
        "create",
        "--org",
        "acme",
        "--name",
        "demo",
        "--capabilities",
        "read",
    ]);
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("wgk_") && last.len() == 68, "{out}");
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let cli = Cli::new();
    for (args, needle) in [
        (
            &[
                "api-key",
                "create",
                "--org",
                "acme",
                "--name",
                "x",
                "--capabilities",
                "root",
            ][..],
            "unknown capability 'root'",
        ),
        (
            &[
                "api-key",
                "create",
                "--org",
                "a b",
                "--name",
                "x",
                "--capabilities",
                "read",
            ][..],
            "--org",
        ),
        (
            &[
                "api-key",
                "create",
                "--org",
                "acme",
                "--name",
                "x",
                "--capabilities",
                "read",
                "--expires-at",
                "soon",
            ][..],
            "--expires-at",
        ),
        (&["api-key", "revoke", "nope"][..], "KEY_ID"),
    ] {
        let out = cli.run(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn configuration_errors_stop_the_start() {
    let cli = Cli::new();
    let out = Command::new(env!("CARGO_BIN_EXE_wagate"))
        .args(["migrate"])
        .current_dir(cli.dir.path())
        .env("WAGATE__SERVER__BINDD", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("configuration"));
    let out = cli.run(&["--config", "missing.toml", "migrate"]);
    assert!(!out.status.success());
}

#[test]
fn migrate_creates_the_database_and_openapi_prints_the_document() {
    let cli = Cli::new();
    cli.ok(&["migrate"]);
    assert!(cli.dir.path().join("db/wagate.db").exists());
    let doc: Value = serde_json::from_str(&cli.ok(&["openapi"])).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[test]
fn commands_that_do_not_talk_to_whatsapp_start_no_adapter_and_print_only_their_output() {
    let cli = Cli::new();
    let live = |args: &[&str]| {
        cli.command(args)
            // The live adapter, which opens its devices' key store beside
            // the database as it starts, and logs as it does.
            .env("WAGATE__WHATSAPP__ADAPTER", "live")
            .env("WAGATE__LOG__LEVEL", "debug")
            .output()
            .unwrap()
    };
    let created = live(&[
        "api-key",
        "create",
        "--org",
        "acme",
        "--name",
        "ci",
        "--capabilities",
        "read",
        "--json",
    ]);
    assert!(created.status.success());
    let stdout = String::from_utf8(created.stdout).unwrap();
    // Only the object on stdout (logs, debug ones included, go to stderr).
    let object: Value = serde_json::from_str(&stdout).unwrap();
    assert!(object["key"].as_str().unwrap().starts_with("wgk_"));
    assert!(!String::from_utf8_lossy(&created.stderr).is_empty());
    for args in [&["migrate"][..], &["api-key", "list", "--org", "acme"][..]] {
        let out = live(args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("INFO"),
            "{args:?}"
        );
    }
    assert!(
        !cli.dir.path().join("db/devices.db").exists(),
        "no WhatsApp adapter was started"
    );
}

#[test]
fn api_keys_are_kept_in_postgres_when_the_url_says_so() {
    let Some(pg) = wagate_test_postgres::shared() else {
        return;
    };
    let cli = Cli::new();
    let url = pg.fresh_database();
    let run = |args: &[&str]| {
        let out = cli
            .command(args)
            .env("WAGATE__DATABASE__URL", &url)
            .env(
                "WAGATE__CLUSTER__SECRET",
                "an-inter-node-secret-of-32-characters",
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["migrate"]);
    let created: Value = serde_json::from_str(&run(&[
        "api-key",
        "create",
        "--org",
        "acme",
        "--name",
        "ci",
        "--capabilities",
        "read",
        "--json",
    ]))
    .unwrap();
    let listed: Value =
        serde_json::from_str(&run(&["api-key", "list", "--org", "acme", "--json"])).unwrap();
    assert_eq!(listed[0]["id"], created["id"]);
    // Without the cluster secret, a PostgreSQL URL is refused, saying why.
    let out = cli
        .command(&["migrate"])
        .env("WAGATE__DATABASE__URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.secret is required"));
}

#[test]
fn commands_on_postgres_start_no_adapter_and_print_only_their_output() {
    let Some(pg) = wagate_test_postgres::shared() else {
        return;
    };
    let cli = Cli::new();
    let url = pg.fresh_database();
    let run = |args: &[&str]| {
        let out = cli
            .command(args)
            .env("WAGATE__DATABASE__URL", &url)
            .env(
                "WAGATE__CLUSTER__SECRET",
                "an-inter-node-secret-of-32-characters",
            )
            // The live adapter, whose device store on PostgreSQL is the
            // `whatsapp` schema it creates as it starts; logging as it does.
            .env("WAGATE__WHATSAPP__ADAPTER", "live")
            .env("WAGATE__LOG__LEVEL", "debug")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        for level in ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"] {
            assert!(
                !stdout.contains(level),
                "{args:?} logged on stdout: {stdout}"
            );
        }
        stdout
    };
    run(&["migrate"]);
    let created: Value = serde_json::from_str(&run(&[
        "api-key",
        "create",
        "--org",
        "acme",
        "--name",
        "ci",
        "--capabilities",
        "read",
        "--json",
    ]))
    .unwrap();
    let listed: Value =
        serde_json::from_str(&run(&["api-key", "list", "--org", "acme", "--json"])).unwrap();
    assert_eq!(listed[0]["id"], created["id"]);
    let status: Value = serde_json::from_str(&run(&["cluster", "status", "--json"])).unwrap();
    assert_eq!(status["nodes"], serde_json::json!([]), "{status}");
    let document: Value = serde_json::from_str(&run(&["openapi"])).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let database = url.rsplit('/').next().unwrap();
    assert_eq!(
        pg.query(
            database,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'whatsapp'"
        ),
        "0",
        "no WhatsApp adapter was started"
    );
}

#[test]
fn cluster_status_on_sqlite_says_there_is_no_cluster() {
    let cli = Cli::new();
    let out = cli.run(&["cluster", "status", "--json"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster"));
}

#[test]
fn cluster_status_shows_a_serving_node_until_sigterm_drains_it() {
    let Some(pg) = wagate_test_postgres::shared() else {
        return;
    };
    let cli = Cli::new();
    let url = pg.fresh_database();
    let with_pg = |args: &[&str]| {
        let mut c = cli.command(args);
        c.env("WAGATE__DATABASE__URL", &url)
            .env(
                "WAGATE__CLUSTER__SECRET",
                "an-inter-node-secret-of-32-characters",
            )
            .env("WAGATE__SERVER__BIND", "127.0.0.1:0")
            .env("WAGATE__CLUSTER__HEARTBEAT_SECS", "1")
            .env("WAGATE__CLUSTER__SELF_FENCE_SECS", "2")
            .env("WAGATE__CLUSTER__LEASE_SECS", "3");
        c
    };
    let status = || -> Value {
        let out = with_pg(&["cluster", "status", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let mut serve = with_pg(&["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let nodes = loop {
        let nodes = status()["nodes"].as_array().unwrap().clone();
        if !nodes.is_empty() || std::time::Instant::now() > deadline {
            break nodes;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let node = &nodes[0];
    assert!(node["id"].as_str().unwrap().starts_with("node_"));
    assert!(
        node["advertiseUrl"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(
        (node["draining"].clone(), node["sessions"].clone()),
        (Value::Bool(false), 0.into())
    );
    for field in ["startedAt", "heartbeatAt"] {
        assert!(
            node[field].as_str().unwrap().ends_with('Z'),
            "{field}: {node}"
        );
    }
    let table = with_pg(&["cluster", "status"]).output().unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.starts_with("NODE") && table.contains(node["id"].as_str().unwrap()),
        "{table}"
    );
    // SIGTERM: the node drains and leaves at once (not when its lease runs out).
    let term = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(serve.wait().unwrap().success());
    assert_eq!(status()["nodes"], Value::Array(Vec::new()));
}
