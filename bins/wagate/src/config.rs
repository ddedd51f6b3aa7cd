//! The one typed configuration of wagate, read in one place: defaults, then
//! an optional TOML file, then `WAGATE__SECTION__KEY` environment variables.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Deserializer};

/// A value that must never be printed (passwords in URLs, …).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value; only where it is used, never for printing.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}

/// All of wagate's settings (see docs/configuration.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `server.*`
    pub server: ServerConfig,
    /// `database.*`
    pub database: DatabaseConfig,
    /// `auth.*`
    pub auth: AuthConfig,
    /// `whatsapp.*`
    pub whatsapp: WhatsAppConfig,
    /// `log.*`
    pub log: LogConfig,
    /// `limits.*`
    pub limits: LimitsConfig,
}

/// `server.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address (`127.0.0.1:8080`; port 0 picks a free port).
    pub bind: String,
    /// HTTP worker threads (default: one per CPU core).
    pub workers: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: None,
        }
    }
}

/// `database.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://data/wagate.db`; file and folder are created if missing.
    pub url: Secret<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite://data/wagate.db".into()),
        }
    }
}

/// `auth.*`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `auth.jwt.*`
    pub jwt: JwtSettings,
    /// `auth.roles.<role>`: capabilities of a role, replacing or adding to
    /// the default table (a list, or a comma-separated string in the
    /// environment).
    pub roles: BTreeMap<String, StringList>,
}

/// `auth.jwt.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    /// The frontend's JWKS URL; unset disables login JWTs.
    pub jwks_url: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set. With `jwks_url` set, it must be set unless
    /// `allow_any_audience` is true (see [`JwtSettings::validate`]).
    pub audience: Option<String>,
    /// Accept tokens whatever their `aud`: the explicit opt-out of the
    /// audience check, refused together with `audience`.
    pub allow_any_audience: bool,
    /// Required header `typ` (a media type such as `at+jwt`; compared
    /// case-insensitively, `application/` optional), when set.
    pub required_typ: Option<String>,
    /// Claim holding the organization id.
    pub org_claim: String,
    /// Claim holding the role.
    pub role_claim: String,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    pub leeway_secs: u64,
    /// How often the JWKS is refetched, seconds.
    pub refresh_secs: u64,
    /// HTTP timeout of one JWKS fetch, seconds.
    pub fetch_timeout_secs: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            jwks_url: None,
            issuer: None,
            audience: None,
            allow_any_audience: false,
            required_typ: None,
            org_claim: "org_id".into(),
            role_claim: "role".into(),
            leeway_secs: 60,
            refresh_secs: 300,
            fetch_timeout_secs: 5,
        }
    }
}

impl JwtSettings {
    /// Checks what the types cannot, so the gateway never starts with a
    /// login-JWT check weaker than it looks. Nothing is checked while
    /// `jwks_url` is unset (login JWTs are off).
    ///
    /// # Errors
    ///
    /// When `jwks_url` is set and `audience` is not, unless
    /// `allow_any_audience` is true (a token the identity provider minted
    /// for another of its services would be accepted); when both
    /// `audience` and `allow_any_audience = true` are set; when
    /// `jwks_url`, `issuer` or `audience` is empty; when `required_typ` is
    /// empty or holds white space.
    pub fn validate(&self) -> anyhow::Result<()> {
        let Some(url) = &self.jwks_url else {
            return Ok(());
        };
        if url.trim().is_empty() {
            anyhow::bail!("auth.jwt.jwks_url is empty: unset it to turn login JWTs off");
        }
        for (key, value) in [
            ("auth.jwt.issuer", &self.issuer),
            ("auth.jwt.audience", &self.audience),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                anyhow::bail!("{key} is empty: unset it or give the value tokens must carry");
            }
        }
        match (&self.audience, self.allow_any_audience) {
            (None, false) => anyhow::bail!(
                "auth.jwt.jwks_url is set but auth.jwt.audience is not: set auth.jwt.audience \
                 to the `aud` the frontend puts in tokens for this gateway, or set \
                 auth.jwt.allow_any_audience = true to accept tokens of any audience"
            ),
            (Some(_), true) => anyhow::bail!(
                "auth.jwt.audience and auth.jwt.allow_any_audience = true contradict each \
                 other: keep one"
            ),
            _ => {}
        }
        if let Some(typ) = &self.required_typ
            && (typ.is_empty() || typ.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            anyhow::bail!(
                "auth.jwt.required_typ must be a media type such as \"at+jwt\" (no spaces)"
            );
        }
        Ok(())
    }
}

/// A list given either as a list or as one comma-separated string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            List(Vec<String>),
            One(String),
        }
        Ok(StringList(match Either::deserialize(d)? {
            Either::List(v) => v,
            Either::One(s) => s
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        }))
    }
}

/// Which WhatsApp adapter serves the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// WhatsApp itself (or a simulator), through whatsapp-rust.
    #[default]
    Live,
    /// The deterministic in-memory fake.
    Fake,
}

/// `whatsapp.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// `live` or `fake`.
    pub adapter: AdapterKind,
    /// Deadline of a live action, seconds.
    pub request_timeout_secs: u64,
    /// `whatsapp.fake.*`
    pub fake: FakeSettings,
    /// `whatsapp.live.*`
    pub live: LiveSettings,
}

impl Default for WhatsAppConfig {
    fn default() -> Self {
        Self {
            adapter: AdapterKind::default(),
            request_timeout_secs: 15,
            fake: FakeSettings::default(),
            live: LiveSettings::default(),
        }
    }
}

/// `whatsapp.fake.*`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FakeSettings {
    /// JSON file describing the fake world; unset uses the built-in one.
    pub fixtures: Option<PathBuf>,
}

/// `whatsapp.live.*` (read by the live adapter).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveSettings {
    /// Another server URL (a simulator's).
    pub url: Option<String>,
    /// Pinned WhatsApp Web version, e.g. `2.3000.1042742319`.
    pub version: Option<String>,
    /// SQLite file of the devices' keys (default: `devices.db` beside the
    /// database).
    pub store: Option<PathBuf>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    #[default]
    Pretty,
    /// One JSON object per line, for production.
    Json,
}

/// `log.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// A level (`info`) or a filter (`wagate=debug,info`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// `limits.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests per second each credential (an API key; a person: org and
    /// login-JWT subject) may make on `/api/v1`, on average; fractions
    /// allowed; `0` turns the limit off.
    pub requests_per_second: f64,
    /// How many requests a credential may make at once, above the average.
    pub burst: u32,
    /// Live WhatsApp calls one session may make per minute (bursts of as
    /// many); `0` turns the pacing off.
    pub whatsapp_calls_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 50.0,
            burst: 100,
            whatsapp_calls_per_minute: 60,
        }
    }
}

impl LimitsConfig {
    /// The per-credential request limit, `None` when turned off
    /// (`requests_per_second = 0`).
    ///
    /// # Errors
    ///
    /// When `requests_per_second` is negative or not a number, or `burst`
    /// is 0 while the limit is on.
    pub fn request_limit(&self) -> anyhow::Result<Option<wagate_http::RequestLimit>> {
        if self.requests_per_second == 0.0 {
            return Ok(None);
        }
        wagate_http::RequestLimit::new(self.requests_per_second, self.burst)
            .map(Some)
            .map_err(|e| {
                anyhow::anyhow!(
                    "limits.requests_per_second = {}, limits.burst = {}: {e} \
                     (requests_per_second = 0 turns the limit off)",
                    self.requests_per_second,
                    self.burst
                )
            })
    }

    /// The pace of one session's live WhatsApp calls, `None` when turned
    /// off (`whatsapp_calls_per_minute = 0`).
    ///
    /// # Errors
    ///
    /// None in practice (every positive number is a pace); kept so a bad
    /// value can never be silently ignored.
    pub fn whatsapp_pacing(&self) -> anyhow::Result<Option<wagate_domain::RateLimit>> {
        match self.whatsapp_calls_per_minute {
            0 => Ok(None),
            n => wagate_domain::RateLimit::per_minute(n)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("limits.whatsapp_calls_per_minute = {n}: {e}")),
        }
    }
}

impl Config {
    /// The SQLite file of the live adapter's device keys: `whatsapp.live.store`,
    /// or `devices.db` in the folder of the gateway's SQLite database.
    ///
    /// # Errors
    ///
    /// When it is unset and the database is not a SQLite file (in memory).
    pub fn device_store_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.whatsapp.live.store {
            return Ok(path.clone());
        }
        let url = self.database.url.expose();
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path.contains(":memory:") {
            anyhow::bail!("whatsapp.live.store must be set when the database is not a file");
        }
        let dir = Path::new(path).parent().unwrap_or(Path::new(""));
        Ok(dir.join("devices.db"))
    }

    /// Loads the configuration: defaults, then `file` (or `wagate.toml` in
    /// the working directory, if present), then the environment.
    ///
    /// # Errors
    ///
    /// When the named file is missing or invalid, or a value has the wrong
    /// type or an unknown key.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, std::env::vars())
    }

    /// As [`Config::load`], with the environment given (for tests).
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut builder = config::Config::builder();
        match file {
            Some(path) => {
                builder = builder.add_source(
                    config::File::from(path)
                        .format(config::FileFormat::Toml)
                        .required(true),
                )
            }
            None => {
                builder = builder.add_source(
                    config::File::new("wagate.toml", config::FileFormat::Toml).required(false),
                )
            }
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("WAGATE__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("WAGATE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let cfg = builder.build().context("reading configuration")?;
        cfg.try_deserialize().context("invalid configuration")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.toml");
        std::fs::write(&file, "[server]\nbind = \"0.0.0.0:9000\"\n[whatsapp]\nrequest_timeout_secs = 3\n[auth.roles]\nguest = [\"read\"]\n").unwrap();
        let c = Config::load_from(
            Some(&file),
            env(&[
                ("WAGATE__WHATSAPP__REQUEST_TIMEOUT_SECS", "7"),
                ("WAGATE__AUTH__JWT__JWKS_URL", "http://idp/jwks"),
                ("WAGATE__AUTH__ROLES__AUDITOR", "read, send"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.bind, "0.0.0.0:9000");
        assert_eq!(c.whatsapp.request_timeout_secs, 7);
        assert_eq!(c.auth.jwt.jwks_url.as_deref(), Some("http://idp/jwks"));
        assert_eq!(c.auth.jwt.org_claim, "org_id");
        assert_eq!(c.auth.roles["guest"].0, vec!["read"]);
        assert_eq!(c.auth.roles["auditor"].0, vec!["read", "send"]);
        assert_eq!(c.database.url.expose(), "sqlite://data/wagate.db");
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        assert!(Config::load_from(None, env(&[("WAGATE__SERVER__BIN", "x")])).is_err());
        assert!(
            Config::load_from(
                None,
                env(&[("WAGATE__WHATSAPP__ADAPTER", "carrier-pigeon")])
            )
            .is_err()
        );
        assert!(Config::load_from(Some(Path::new("/nonexistent/wagate.toml")), env(&[])).is_err());
    }

    #[test]
    fn device_store_defaults_beside_the_database() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.whatsapp.adapter, AdapterKind::Live);
        assert_eq!(
            c.device_store_path().unwrap(),
            PathBuf::from("data/devices.db")
        );
        let c = Config::load_from(
            None,
            env(&[("WAGATE__DATABASE__URL", "sqlite:///var/lib/w/g.db?mode=rwc")]),
        )
        .unwrap();
        assert_eq!(
            c.device_store_path().unwrap(),
            PathBuf::from("/var/lib/w/devices.db")
        );
        let c =
            Config::load_from(None, env(&[("WAGATE__DATABASE__URL", "sqlite::memory:")])).unwrap();
        assert!(c.device_store_path().is_err());
        let c = Config::load_from(
            None,
            env(&[
                ("WAGATE__DATABASE__URL", "sqlite::memory:"),
                ("WAGATE__WHATSAPP__LIVE__STORE", "/tmp/d.db"),
            ]),
        )
        .unwrap();
        assert_eq!(c.device_store_path().unwrap(), PathBuf::from("/tmp/d.db"));
    }

    #[test]
    fn login_jwts_need_an_audience_or_the_explicit_opt_out() {
        let jwt = |pairs: &[(&str, &str)]| {
            let mut all = vec![("WAGATE__AUTH__JWT__JWKS_URL", "http://idp/jwks")];
            all.extend_from_slice(pairs);
            Config::load_from(None, env(&all)).unwrap().auth.jwt
        };
        let err = jwt(&[]).validate().unwrap_err().to_string();
        assert!(
            err.contains("auth.jwt.audience") && err.contains("auth.jwt.allow_any_audience"),
            "{err}"
        );
        jwt(&[("WAGATE__AUTH__JWT__AUDIENCE", "wagate")])
            .validate()
            .unwrap();
        let any = jwt(&[("WAGATE__AUTH__JWT__ALLOW_ANY_AUDIENCE", "true")]);
        assert!(any.allow_any_audience);
        any.validate().unwrap();
        let both = jwt(&[
            ("WAGATE__AUTH__JWT__AUDIENCE", "wagate"),
            ("WAGATE__AUTH__JWT__ALLOW_ANY_AUDIENCE", "true"),
        ]);
        let err = both.validate().unwrap_err().to_string();
        assert!(err.contains("contradict"), "{err}");
        let empty = jwt(&[("WAGATE__AUTH__JWT__AUDIENCE", "")]);
        assert!(empty.validate().unwrap_err().to_string().contains("empty"));
        // Login JWTs off: nothing to check.
        Config::load_from(None, env(&[]))
            .unwrap()
            .auth
            .jwt
            .validate()
            .unwrap();
    }

    #[test]
    fn required_typ_is_read_and_checked() {
        let jwt = |typ: &str| {
            Config::load_from(
                None,
                env(&[
                    ("WAGATE__AUTH__JWT__JWKS_URL", "http://idp/jwks"),
                    ("WAGATE__AUTH__JWT__AUDIENCE", "wagate"),
                    ("WAGATE__AUTH__JWT__REQUIRED_TYP", typ),
                ]),
            )
            .unwrap()
            .auth
            .jwt
        };
        let ok = jwt("at+jwt");
        assert_eq!(ok.required_typ.as_deref(), Some("at+jwt"));
        ok.validate().unwrap();
        jwt("application/at+jwt").validate().unwrap();
        for bad in ["", "at+jwt; charset=utf-8"] {
            let err = jwt(bad).validate().unwrap_err().to_string();
            assert!(err.contains("auth.jwt.required_typ"), "{bad}: {err}");
        }
        assert_eq!(Config::default().auth.jwt.required_typ, None);
    }

    #[test]
    fn limits_have_generous_defaults_and_can_be_turned_off() {
        let c = Config::load_from(None, env(&[])).unwrap();
        let limit = c.limits.request_limit().unwrap().unwrap();
        assert_eq!((limit.requests_per_second(), limit.burst()), (50.0, 100));
        assert_eq!(c.limits.whatsapp_calls_per_minute, 60);
        assert!(c.limits.whatsapp_pacing().unwrap().is_some());
        let c = Config::load_from(
            None,
            env(&[
                ("WAGATE__LIMITS__REQUESTS_PER_SECOND", "2"),
                ("WAGATE__LIMITS__BURST", "5"),
                ("WAGATE__LIMITS__WHATSAPP_CALLS_PER_MINUTE", "30"),
            ]),
        )
        .unwrap();
        let limit = c.limits.request_limit().unwrap().unwrap();
        assert_eq!((limit.requests_per_second(), limit.burst()), (2.0, 5));
        assert_eq!(c.limits.whatsapp_calls_per_minute, 30);
        let c = Config::load_from(None, env(&[("WAGATE__LIMITS__REQUESTS_PER_SECOND", "0.5")]))
            .unwrap();
        assert_eq!(
            c.limits
                .request_limit()
                .unwrap()
                .unwrap()
                .requests_per_second(),
            0.5
        );
        let c =
            Config::load_from(None, env(&[("WAGATE__LIMITS__REQUESTS_PER_SECOND", "0")])).unwrap();
        assert!(c.limits.request_limit().unwrap().is_none());
        let c = Config::load_from(
            None,
            env(&[("WAGATE__LIMITS__WHATSAPP_CALLS_PER_MINUTE", "0")]),
        )
        .unwrap();
        assert!(c.limits.whatsapp_pacing().unwrap().is_none());
        for bad in [
            ("WAGATE__LIMITS__REQUESTS_PER_SECOND", "-1"),
            ("WAGATE__LIMITS__BURST", "0"),
        ] {
            let c = Config::load_from(None, env(&[bad])).unwrap();
            let err = c.limits.request_limit().unwrap_err().to_string();
            assert!(err.contains("limits."), "{err}");
        }
        assert!(Config::load_from(None, env(&[("WAGATE__LIMITS__BURTS", "5")])).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config::load_from(
            None,
            env(&[("WAGATE__DATABASE__URL", "postgres://u:hunter2@db/w")]),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
