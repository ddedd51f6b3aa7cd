//! The one typed configuration of wagate, read in one place: defaults, then
//! an optional TOML file, then `WAGATE__SECTION__KEY` environment variables.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// `events.*`
    pub events: EventsConfig,
    /// `webhooks.*`
    pub webhooks: WebhooksConfig,
    /// `messages.*`
    pub messages: MessagesConfig,
    /// `cluster.*`
    pub cluster: ClusterConfig,
}

/// `messages.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagesConfig {
    /// An accepted message not sent within this (the session stayed
    /// offline) fails with `error.code = "expired"`.
    pub max_pending_age: ConfigDuration,
    /// Largest media a message may carry, in bytes (base64-decoded, or
    /// downloaded from `media.url`); more is `413`.
    pub max_media_bytes: u64,
    /// Messages one session sends per minute at most (each pause gets a
    /// random extra of up to half of itself); `0` turns the pacing off.
    pub send_rate: u32,
    /// Pending messages one session may have; more is `429`.
    pub max_queue: u32,
    /// Longest download of a `media.url`.
    pub media_fetch_timeout: ConfigDuration,
    /// Let a `media.url` point at loopback, private, link-local and other
    /// non-public addresses (tests, single-host installs). Off: refused.
    /// Independent of `webhooks.allow_private_targets`.
    pub allow_private_media_urls: bool,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        let d = wagate_app::MessagingSettings::default();
        Self {
            max_pending_age: ConfigDuration(d.max_pending_age),
            max_media_bytes: d.max_media_bytes,
            send_rate: d.send_rate,
            max_queue: d.max_queue,
            media_fetch_timeout: ConfigDuration(Duration::from_secs(30)),
            allow_private_media_urls: false,
        }
    }
}

impl MessagesConfig {
    /// The outbox's settings, checked.
    ///
    /// # Errors
    ///
    /// When `max_pending_age` is 0, `max_media_bytes` is 0 or over 100 MiB
    /// (WhatsApp's own limit), `max_queue` is 0, or `media_fetch_timeout`
    /// is 0.
    pub fn settings(&self) -> anyhow::Result<wagate_app::MessagingSettings> {
        if self.max_pending_age.0.is_zero() {
            anyhow::bail!("messages.max_pending_age must be more than 0");
        }
        if self.max_media_bytes == 0 || self.max_media_bytes > 100 * 1024 * 1024 {
            anyhow::bail!(
                "messages.max_media_bytes = {}: must be 1 to 104857600 (100 MiB)",
                self.max_media_bytes
            );
        }
        if self.max_queue == 0 {
            anyhow::bail!("messages.max_queue must be at least 1");
        }
        if self.media_fetch_timeout.0.is_zero() {
            anyhow::bail!("messages.media_fetch_timeout must be more than 0");
        }
        Ok(wagate_app::MessagingSettings {
            max_pending_age: self.max_pending_age.0,
            max_media_bytes: self.max_media_bytes,
            send_rate: self.send_rate,
            max_queue: self.max_queue,
            ..wagate_app::MessagingSettings::default()
        })
    }
}

/// `events.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// How long events are kept, in days (fractions allowed); a background
    /// task prunes older ones, and a cursor before them is `410 gone`.
    pub retention_days: f64,
    /// Seconds between the `: keep-alive` comments of an event stream
    /// (`GET /api/v1/events/stream`); more than 0, at most 15 (fractions
    /// allowed).
    pub stream_keep_alive_secs: f64,
    /// Event streams one organization may have open at once (per
    /// gateway process); one more is `429`.
    pub max_streams_per_org: usize,
    /// Event streams one credential (an API key; a person's login) may
    /// have open at once (per gateway process); one more is `429`.
    pub max_streams_per_credential: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let d = wagate_http::EventStreamConfig::default();
        Self {
            retention_days: 7.0,
            stream_keep_alive_secs: 15.0,
            max_streams_per_org: d.max_per_org,
            max_streams_per_credential: d.max_per_credential,
        }
    }
}

impl EventsConfig {
    /// The keep-alive interval of event streams.
    ///
    /// # Errors
    ///
    /// When `stream_keep_alive_secs` is not more than 0 and at most 15.
    pub fn stream_keep_alive(&self) -> anyhow::Result<std::time::Duration> {
        let secs = self.stream_keep_alive_secs;
        if !(secs > 0.0 && secs <= 15.0) {
            anyhow::bail!(
                "events.stream_keep_alive_secs = {secs}: must be more than 0 and at most 15 \
                 (streams send a keep-alive comment at least every 15 s)"
            );
        }
        Ok(std::time::Duration::from_secs_f64(secs))
    }

    /// How event streams behave: keep-alive and the caps on open streams.
    ///
    /// # Errors
    ///
    /// As [`EventsConfig::stream_keep_alive`]; when a cap is 0.
    pub fn event_stream(&self) -> anyhow::Result<wagate_http::EventStreamConfig> {
        let keep_alive = self.stream_keep_alive()?;
        if self.max_streams_per_org == 0 || self.max_streams_per_credential == 0 {
            anyhow::bail!(
                "events.max_streams_per_org and events.max_streams_per_credential must be at least 1"
            );
        }
        Ok(wagate_http::EventStreamConfig {
            keep_alive,
            max_per_org: self.max_streams_per_org,
            max_per_credential: self.max_streams_per_credential,
            ..wagate_http::EventStreamConfig::default()
        })
    }
}

impl EventsConfig {
    /// `retention_days` as a duration (for the pruning task).
    ///
    /// # Errors
    ///
    /// When it is not a positive number of days (at most 100 years).
    pub fn retention(&self) -> anyhow::Result<time::Duration> {
        let days = self.retention_days;
        if !(days > 0.0 && days <= 36_500.0) {
            anyhow::bail!("events.retention_days = {days}: must be a positive number of days");
        }
        Ok(time::Duration::seconds_f64(days * 86_400.0))
    }
}

/// `webhooks.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Let webhooks target loopback, private, link-local and other
    /// non-public addresses (tests, single-host installs). Off: such URLs
    /// are refused at creation and at delivery.
    pub allow_private_targets: bool,
    /// Longest wait for a receiver's answer (`"10s"`; a bare number is
    /// seconds).
    pub timeout: ConfigDuration,
    /// Delay before each attempt: the first is the first attempt's and
    /// must be 0 (it is made at once), each next one the wait after a
    /// failed attempt; when used up, the delivery fails. A list, or one
    /// comma-separated string.
    pub retry_schedule: DurationList,
    /// A webhook whose deliveries have all failed for this long is
    /// disabled.
    pub disable_after: ConfigDuration,
    /// Most deliveries being sent at once, all webhooks together (one
    /// organization's at most an eighth of it).
    pub max_in_flight: usize,
    /// Most webhooks one organization may have; creating one more answers
    /// `409 limit_reached`.
    pub max_per_org: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        let d = wagate_app::DeliverySettings::default();
        Self {
            allow_private_targets: false,
            timeout: ConfigDuration(d.timeout),
            retry_schedule: DurationList(
                d.retry_schedule.into_iter().map(ConfigDuration).collect(),
            ),
            disable_after: ConfigDuration(d.disable_after),
            max_in_flight: d.max_in_flight,
            max_per_org: wagate_app::DEFAULT_MAX_WEBHOOKS_PER_ORG,
        }
    }
}

impl WebhooksConfig {
    /// The dispatcher's settings, checked.
    ///
    /// # Errors
    ///
    /// When `timeout` is 0 or over an hour, `retry_schedule` is empty, does
    /// not start with 0 or holds a delay over 30 days, `disable_after` is
    /// 0, or `max_in_flight` or `max_per_org` is 0.
    pub fn delivery_settings(&self) -> anyhow::Result<wagate_app::DeliverySettings> {
        const HOUR: Duration = Duration::from_secs(3600);
        const MONTH: Duration = Duration::from_secs(30 * 86_400);
        let timeout = self.timeout.0;
        if timeout.is_zero() || timeout > HOUR {
            anyhow::bail!(
                "webhooks.timeout = {}: must be more than 0 and at most 1h",
                self.timeout
            );
        }
        match self.retry_schedule.0.first() {
            None => anyhow::bail!(
                "webhooks.retry_schedule is empty: give at least \"0s\" (one attempt)"
            ),
            Some(first) if !first.0.is_zero() => anyhow::bail!(
                "webhooks.retry_schedule must start with 0 (the first attempt is made at \
                 once), not {first}"
            ),
            _ => {}
        }
        if let Some(long) = self.retry_schedule.0.iter().find(|d| d.0 > MONTH) {
            anyhow::bail!("webhooks.retry_schedule: {long} is over 30 days");
        }
        if self.disable_after.0.is_zero() {
            anyhow::bail!("webhooks.disable_after must be more than 0");
        }
        if self.max_in_flight == 0 {
            anyhow::bail!("webhooks.max_in_flight must be at least 1");
        }
        if self.max_per_org == 0 {
            anyhow::bail!("webhooks.max_per_org must be at least 1");
        }
        Ok(wagate_app::DeliverySettings {
            timeout,
            retry_schedule: self.retry_schedule.0.iter().map(|d| d.0).collect(),
            disable_after: self.disable_after.0,
            max_in_flight: self.max_in_flight,
            ..wagate_app::DeliverySettings::default()
        })
    }
}

/// A duration setting: a number with a unit — `ms`, `s`, `m`, `h` or `d`
/// (`"250ms"`, `"10s"`, `"5m"`, `"2h"`, `"5d"`; fractions allowed:
/// `"1.5h"`) — or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses `"10s"`, `"5m"`, `"250ms"`, `"12"` (seconds), ….
    ///
    /// # Errors
    ///
    /// When it is not a non-negative number with one of the units.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit_secs = match unit.trim() {
            "" | "s" => 1.0,
            "ms" => 0.001,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            other => {
                return Err(format!(
                    "unknown unit '{other}' in '{text}' (ms, s, m, h or d)"
                ));
            }
        };
        let n: f64 = number
            .parse()
            .map_err(|_| format!("'{text}' is not a duration such as \"10s\" or \"5m\""))?;
        Duration::try_from_secs_f64(n * unit_secs)
            .map(Self)
            .map_err(|_| format!("'{text}' is out of range"))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_millis() {
            0 => f.write_str("0s"),
            ms if ms % 86_400_000 == 0 => write!(f, "{}d", ms / 86_400_000),
            ms if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000),
            ms if ms % 1000 == 0 => write!(f, "{}s", ms / 1000),
            ms => write!(f, "{ms}ms"),
        }
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Seconds(f64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Seconds(s) => Duration::try_from_secs_f64(s)
                .map(ConfigDuration)
                .map_err(|_| serde::de::Error::custom(format!("{s} seconds is out of range"))),
            Either::Text(t) => ConfigDuration::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A list of [`ConfigDuration`]s, given as a list or as one
/// comma-separated string (`"0s, 5s, 5m"`, handy in the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationList(pub Vec<ConfigDuration>);

impl<'de> Deserialize<'de> for DurationList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            List(Vec<ConfigDuration>),
            One(String),
        }
        Ok(DurationList(match Either::deserialize(d)? {
            Either::List(v) => v,
            Either::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(ConfigDuration::parse)
                .collect::<Result<_, _>>()
                .map_err(serde::de::Error::custom)?,
        }))
    }
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

/// `cluster.*`: several gateways on one PostgreSQL database (see
/// docs/configuration.md for what is in use yet).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The secret nodes authenticate each other with; required with
    /// PostgreSQL, at least 32 characters.
    pub secret: Option<Secret<String>>,
    /// How other nodes reach this one (`http://10.0.0.5:8080`); default
    /// `http://` + `server.bind`, unless that listens on every address.
    pub advertise_url: Option<String>,
    /// Seconds between a node's heartbeats.
    pub heartbeat_secs: u64,
    /// Seconds a node's lease lasts without a heartbeat.
    pub lease_secs: u64,
    /// Seconds without a renewed lease after which a node stops every
    /// client it holds.
    pub self_fence_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            secret: None,
            advertise_url: None,
            heartbeat_secs: 2,
            lease_secs: 10,
            self_fence_secs: 6,
        }
    }
}

/// The shortest `cluster.secret`.
pub const MIN_CLUSTER_SECRET: usize = 32;

/// The database `database.url` names, with what it needs, checked.
#[derive(Debug, Clone)]
pub enum Database {
    /// One SQLite file (or memory): one gateway.
    Sqlite,
    /// PostgreSQL, with the cluster settings.
    Postgres(ClusterSettings),
}

/// `cluster.*`, checked (with PostgreSQL).
#[derive(Clone)]
pub struct ClusterSettings {
    /// The inter-node secret.
    pub secret: Secret<String>,
    /// `cluster.advertise_url`; `None`: `http://` + the address bound.
    pub advertise_url: Option<String>,
    /// Between heartbeats.
    pub heartbeat: Duration,
    /// A lease without a heartbeat lasts this long.
    pub lease: Duration,
    /// A node that could not renew its lease this long stops its clients.
    pub self_fence: Duration,
}

impl fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("secret", &self.secret)
            .field("advertise_url", &self.advertise_url)
            .field("heartbeat", &self.heartbeat)
            .field("lease", &self.lease)
            .field("self_fence", &self.self_fence)
            .finish()
    }
}

impl ClusterSettings {
    /// The URL other nodes reach this one at, once it listens on `bound`.
    pub fn advertise_url(&self, bound: std::net::SocketAddr) -> String {
        self.advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }
}

impl ClusterConfig {
    /// The settings, checked, for a gateway listening on `bind`.
    ///
    /// # Errors
    ///
    /// Without a `secret` of at least 32 characters; with an
    /// `advertise_url` that is not an `http://` or `https://` URL, or none
    /// while `bind` listens on every address; unless `0 < heartbeat_secs <
    /// self_fence_secs < lease_secs` (a node must stop its clients before
    /// its lease runs out and another may claim them).
    pub fn settings(&self, bind: &str) -> anyhow::Result<ClusterSettings> {
        let secret = match &self.secret {
            None => anyhow::bail!(
                "cluster.secret is required with a PostgreSQL database.url (at least \
                 {MIN_CLUSTER_SECRET} characters, the same on every gateway sharing the database)"
            ),
            Some(s) if s.expose().chars().count() < MIN_CLUSTER_SECRET => anyhow::bail!(
                "cluster.secret is too short: at least {MIN_CLUSTER_SECRET} characters"
            ),
            Some(s) => s.clone(),
        };
        let advertise_url = match &self.advertise_url {
            Some(url) => {
                check_advertise_url(url)?;
                Some(url.trim_end_matches('/').to_owned())
            }
            None if listens_everywhere(bind) => anyhow::bail!(
                "cluster.advertise_url is required: server.bind = {bind} listens on every \
                 address, so other gateways cannot be told how to reach this one \
                 (for example cluster.advertise_url = \"http://10.0.0.5:8080\")"
            ),
            None => None,
        };
        let (heartbeat, fence, lease) =
            (self.heartbeat_secs, self.self_fence_secs, self.lease_secs);
        if heartbeat == 0 || heartbeat >= fence || fence >= lease {
            anyhow::bail!(
                "cluster timings: heartbeat_secs ({heartbeat}) < self_fence_secs ({fence}) < \
                 lease_secs ({lease}) must hold, heartbeat_secs at least 1: a node stops its \
                 clients before its lease runs out and another gateway may take them"
            );
        }
        Ok(ClusterSettings {
            secret,
            advertise_url,
            heartbeat: Duration::from_secs(heartbeat),
            lease: Duration::from_secs(lease),
            self_fence: Duration::from_secs(fence),
        })
    }
}

/// Whether `bind` (`host:port`) listens on every address (`0.0.0.0`, `::`).
fn listens_everywhere(bind: &str) -> bool {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_unspecified(),
        // `host:port` with a name: a name is one host.
        Err(_) => bind
            .rsplit_once(':')
            .is_none_or(|(host, _)| host.is_empty()),
    }
}

fn check_advertise_url(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let host = rest.map(|r| r.split('/').next().unwrap_or_default());
    match host {
        Some(h)
            if !h.is_empty() && !h.contains(char::is_whitespace) && !listens_everywhere_host(h) =>
        {
            Ok(())
        }
        _ => anyhow::bail!(
            "cluster.advertise_url = {url:?}: must be an http:// or https:// URL naming this \
             node's address, such as http://10.0.0.5:8080"
        ),
    }
}

/// Whether an advertised `host[:port]` names every address (no node is there).
fn listens_everywhere_host(host_port: &str) -> bool {
    let host = match host_port.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
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
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveSettings {
    /// Another server URL (a simulator's).
    pub url: Option<String>,
    /// Pinned WhatsApp Web version, e.g. `2.3000.1042742319`.
    pub version: Option<String>,
    /// SQLite file of the devices' keys (default: `devices.db` beside the
    /// database).
    pub store: Option<PathBuf>,
    /// Sessions connected again per second after a restart (default 20;
    /// `0`: as fast as the gateway can). See
    /// [`Gateway::resume_sessions_at`](wagate_app::Gateway::resume_sessions_at).
    pub resume_rate: u32,
    /// Logins under way at once (default 96, at least 1); the other
    /// sessions wait their turn as `connecting`. See
    /// [`LiveOptions::logins_at_once`](wagate_whatsapp_live::LiveOptions::logins_at_once).
    pub logins_at_once: usize,
}

impl LiveSettings {
    /// The adapter's options these settings give, checked.
    ///
    /// # Errors
    ///
    /// When `logins_at_once` is 0.
    pub fn options(&self) -> anyhow::Result<wagate_whatsapp_live::LiveOptions> {
        if self.logins_at_once == 0 {
            anyhow::bail!("whatsapp.live.logins_at_once must be at least 1");
        }
        Ok(wagate_whatsapp_live::LiveOptions {
            logins_at_once: self.logins_at_once,
            ..wagate_whatsapp_live::LiveOptions::default()
        })
    }
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            url: None,
            version: None,
            store: None,
            resume_rate: wagate_app::DEFAULT_RESUME_RATE,
            logins_at_once: wagate_whatsapp_live::DEFAULT_LOGINS_AT_ONCE,
        }
    }
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
    pub fn request_limit(&self) -> anyhow::Result<Option<wagate_domain::RateLimit>> {
        if self.requests_per_second == 0.0 {
            return Ok(None);
        }
        wagate_domain::RateLimit::new(self.requests_per_second, self.burst)
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

/// The SQLite file of the device keys beside the SQLite database at `url`
/// (`whatsapp.live.store`'s default): `devices.db` in the same folder.
///
/// # Errors
///
/// When `url` is not a SQLite file (in memory, or another database).
pub fn devices_beside(url: &str) -> anyhow::Result<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| anyhow::anyhow!("not a SQLite database"))?;
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") {
        anyhow::bail!("the SQLite database is not a file");
    }
    let dir = Path::new(path).parent().unwrap_or(Path::new(""));
    Ok(dir.join("devices.db"))
}

impl Config {
    /// Where the live adapter keeps device keys: with a PostgreSQL
    /// `database.url`, that database (its `whatsapp` schema); otherwise the
    /// SQLite file `whatsapp.live.store`, or `devices.db` in the folder of
    /// the gateway's SQLite database.
    ///
    /// # Errors
    ///
    /// With PostgreSQL, when `whatsapp.live.store` is set too (device state
    /// then lives in PostgreSQL, so every node reads the same keys); with
    /// SQLite, when it is unset and the database is not a file (in memory).
    pub fn device_store(&self) -> anyhow::Result<wagate_whatsapp_live::KeyStoreLocation> {
        use wagate_whatsapp_live::KeyStoreLocation;
        let url = self.database.url.expose();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if let Some(path) = &self.whatsapp.live.store {
                anyhow::bail!(
                    "whatsapp.live.store ({}) cannot be used with a PostgreSQL database.url: \
                     device keys are kept in PostgreSQL then, so that any gateway node can \
                     connect any session; remove whatsapp.live.store (move existing keys with \
                     `wagate db copy`)",
                    path.display()
                );
            }
            return Ok(KeyStoreLocation::Postgres {
                url: url.to_owned(),
                connections: KeyStoreLocation::DEFAULT_POSTGRES_CONNECTIONS,
            });
        }
        if let Some(path) = &self.whatsapp.live.store {
            return Ok(KeyStoreLocation::Sqlite(path.clone()));
        }
        devices_beside(url)
            .map(KeyStoreLocation::Sqlite)
            .map_err(|_| {
                anyhow::anyhow!("whatsapp.live.store must be set when the database is not a file")
            })
    }

    /// The database `database.url` names, checked with what it needs: with
    /// PostgreSQL, the `cluster.*` settings, and no `whatsapp.live.store`
    /// (the devices' keys go to PostgreSQL too).
    ///
    /// # Errors
    ///
    /// For a URL that is neither `sqlite:…` nor `postgres://…`, and as
    /// [`ClusterConfig::settings`].
    pub fn database(&self) -> anyhow::Result<Database> {
        match wagate_store::Backend::of(self.database.url.expose()) {
            Some(wagate_store::Backend::Sqlite) => Ok(Database::Sqlite),
            Some(wagate_store::Backend::Postgres) => {
                // Refuses `whatsapp.live.store`, whichever the adapter.
                self.device_store()?;
                Ok(Database::Postgres(
                    self.cluster.settings(&self.server.bind)?,
                ))
            }
            None => anyhow::bail!(
                "database.url must be sqlite://… (a file) or postgres://… (a PostgreSQL database)"
            ),
        }
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
    fn resume_rate_defaults_to_a_safe_pace() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.whatsapp.live.resume_rate, 20);
        let c = Config::load_from(None, env(&[("WAGATE__WHATSAPP__LIVE__RESUME_RATE", "500")]))
            .unwrap();
        assert_eq!(c.whatsapp.live.resume_rate, 500);
        assert!(
            Config::load_from(None, env(&[("WAGATE__WHATSAPP__LIVE__RESUME_RATE", "-1")])).is_err()
        );
    }

    #[test]
    fn logins_at_once_is_at_least_one() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(
            c.whatsapp.live.options().unwrap().logins_at_once,
            wagate_whatsapp_live::DEFAULT_LOGINS_AT_ONCE
        );
        let c = Config::load_from(
            None,
            env(&[("WAGATE__WHATSAPP__LIVE__LOGINS_AT_ONCE", "4")]),
        )
        .unwrap();
        assert_eq!(c.whatsapp.live.options().unwrap().logins_at_once, 4);
        let c = Config::load_from(
            None,
            env(&[("WAGATE__WHATSAPP__LIVE__LOGINS_AT_ONCE", "0")]),
        )
        .unwrap();
        let err = c.whatsapp.live.options().unwrap_err().to_string();
        assert!(err.contains("whatsapp.live.logins_at_once"), "{err}");
    }

    #[test]
    fn device_store_defaults_beside_the_database() {
        use wagate_whatsapp_live::KeyStoreLocation;
        let sqlite = |p: &str| KeyStoreLocation::Sqlite(PathBuf::from(p));
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.whatsapp.adapter, AdapterKind::Live);
        assert_eq!(c.device_store().unwrap(), sqlite("data/devices.db"));
        let c = Config::load_from(
            None,
            env(&[("WAGATE__DATABASE__URL", "sqlite:///var/lib/w/g.db?mode=rwc")]),
        )
        .unwrap();
        assert_eq!(c.device_store().unwrap(), sqlite("/var/lib/w/devices.db"));
        let c =
            Config::load_from(None, env(&[("WAGATE__DATABASE__URL", "sqlite::memory:")])).unwrap();
        assert!(c.device_store().is_err());
        let c = Config::load_from(
            None,
            env(&[
                ("WAGATE__DATABASE__URL", "sqlite::memory:"),
                ("WAGATE__WHATSAPP__LIVE__STORE", "/tmp/d.db"),
            ]),
        )
        .unwrap();
        assert_eq!(c.device_store().unwrap(), sqlite("/tmp/d.db"));
    }

    #[test]
    fn device_state_follows_a_postgres_database() {
        use wagate_whatsapp_live::KeyStoreLocation;
        let url = "postgres://u:hunter2@db/w";
        let c = Config::load_from(None, env(&[("WAGATE__DATABASE__URL", url)])).unwrap();
        assert_eq!(
            c.device_store().unwrap(),
            KeyStoreLocation::Postgres {
                url: url.into(),
                connections: KeyStoreLocation::DEFAULT_POSTGRES_CONNECTIONS,
            }
        );
        let c = Config::load_from(
            None,
            env(&[
                ("WAGATE__DATABASE__URL", url),
                ("WAGATE__WHATSAPP__LIVE__STORE", "/tmp/d.db"),
            ]),
        )
        .unwrap();
        let refused = c.device_store().unwrap_err().to_string();
        assert!(refused.contains("whatsapp.live.store"), "{refused}");
        assert!(refused.contains("PostgreSQL"), "{refused}");
        assert!(!refused.contains("hunter2"), "{refused}");
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
    fn stream_caps_and_media_url_rule_default_safe_and_are_read() {
        let c = Config::load_from(None, env(&[])).unwrap();
        let s = c.events.event_stream().unwrap();
        assert_eq!((s.max_per_org, s.max_per_credential), (20, 5));
        // Allowing private webhook receivers does not open media URLs.
        let c = Config::load_from(
            None,
            env(&[("WAGATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")]),
        )
        .unwrap();
        assert!(!c.messages.allow_private_media_urls);
        let c = Config::load_from(
            None,
            env(&[
                ("WAGATE__EVENTS__MAX_STREAMS_PER_ORG", "50"),
                ("WAGATE__EVENTS__MAX_STREAMS_PER_CREDENTIAL", "2"),
                ("WAGATE__MESSAGES__ALLOW_PRIVATE_MEDIA_URLS", "true"),
            ]),
        )
        .unwrap();
        let s = c.events.event_stream().unwrap();
        assert_eq!((s.max_per_org, s.max_per_credential), (50, 2));
        assert!(c.messages.allow_private_media_urls);
        let c =
            Config::load_from(None, env(&[("WAGATE__EVENTS__MAX_STREAMS_PER_ORG", "0")])).unwrap();
        assert!(c.events.event_stream().is_err());
    }

    #[test]
    fn webhook_settings_default_to_the_contract_and_read_durations() {
        let c = Config::load_from(None, env(&[])).unwrap();
        let d = c.webhooks.delivery_settings().unwrap();
        assert_eq!(d, wagate_app::DeliverySettings::default());
        assert_eq!(d.timeout, Duration::from_secs(10));
        assert_eq!(
            d.retry_schedule,
            [0, 5, 300, 1800, 7200, 18_000, 36_000, 36_000].map(Duration::from_secs)
        );
        assert_eq!(d.disable_after, Duration::from_secs(5 * 86_400));
        assert_eq!(d.max_in_flight, 64);
        assert_eq!(c.webhooks.max_per_org, 25);
        assert!(!c.webhooks.allow_private_targets);
        assert_eq!(c.events.retention().unwrap(), time::Duration::days(7));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.toml");
        std::fs::write(
            &file,
            "[webhooks]\ntimeout = \"1.5s\"\nretry_schedule = [\"0s\", \"250ms\", 2, \"1m\"]\n\
             disable_after = \"2d\"\nmax_in_flight = 8\nallow_private_targets = true\nmax_per_org = 3\n\
             [events]\nretention_days = 0.5\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&file), env(&[])).unwrap();
        let d = c.webhooks.delivery_settings().unwrap();
        assert_eq!(d.timeout, Duration::from_millis(1500));
        assert_eq!(
            d.retry_schedule,
            vec![
                Duration::ZERO,
                Duration::from_millis(250),
                Duration::from_secs(2),
                Duration::from_secs(60)
            ]
        );
        assert_eq!(d.disable_after, Duration::from_secs(2 * 86_400));
        assert_eq!(d.max_in_flight, 8);
        assert_eq!(c.webhooks.max_per_org, 3);
        assert!(c.webhooks.allow_private_targets);
        assert_eq!(c.events.retention().unwrap(), time::Duration::hours(12));

        let c = Config::load_from(
            None,
            env(&[
                ("WAGATE__WEBHOOKS__TIMEOUT", "3"),
                ("WAGATE__WEBHOOKS__RETRY_SCHEDULE", "0s, 1s, 5m"),
                ("WAGATE__WEBHOOKS__DISABLE_AFTER", "12h"),
            ]),
        )
        .unwrap();
        let d = c.webhooks.delivery_settings().unwrap();
        assert_eq!(d.timeout, Duration::from_secs(3));
        assert_eq!(d.retry_schedule.len(), 3);
        assert_eq!(d.disable_after, Duration::from_secs(12 * 3600));
    }

    #[test]
    fn bad_webhook_settings_name_their_key() {
        for (key, value) in [
            ("WAGATE__WEBHOOKS__TIMEOUT", "0s"),
            ("WAGATE__WEBHOOKS__TIMEOUT", "2h"),
            ("WAGATE__WEBHOOKS__RETRY_SCHEDULE", "5s, 1m"),
            ("WAGATE__WEBHOOKS__RETRY_SCHEDULE", "0s, 90d"),
            ("WAGATE__WEBHOOKS__DISABLE_AFTER", "0"),
            ("WAGATE__WEBHOOKS__MAX_IN_FLIGHT", "0"),
            ("WAGATE__WEBHOOKS__MAX_PER_ORG", "0"),
        ] {
            let c = Config::load_from(None, env(&[(key, value)])).unwrap();
            let err = c.webhooks.delivery_settings().unwrap_err().to_string();
            assert!(err.contains("webhooks."), "{key}={value}: {err}");
        }
        for (key, value) in [
            ("WAGATE__WEBHOOKS__TIMEOUT", "10 parsecs"),
            ("WAGATE__WEBHOOKS__TIMEOUT", "-1s"),
            ("WAGATE__WEBHOOKS__RETRY_SCHEDULE", "0s, soon"),
            ("WAGATE__WEBHOOKS__TIMEOUTT", "1s"),
        ] {
            assert!(
                Config::load_from(None, env(&[(key, value)])).is_err(),
                "{key}={value}"
            );
        }
        for days in ["0", "-1"] {
            let c =
                Config::load_from(None, env(&[("WAGATE__EVENTS__RETENTION_DAYS", days)])).unwrap();
            assert!(c.events.retention().is_err(), "{days}");
        }
    }

    #[test]
    fn durations_print_as_they_are_written() {
        for text in ["0s", "250ms", "10s", "5m", "2h", "5d", "90m"] {
            assert_eq!(ConfigDuration::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            ConfigDuration::parse("1.5h").unwrap().0,
            Duration::from_secs(5400)
        );
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

    const PG: &str = "postgres://wagate:hunter2@db.internal/wagate";
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn pg(pairs: &[(&str, &str)]) -> anyhow::Result<Database> {
        let mut all = vec![("WAGATE__DATABASE__URL", PG)];
        all.extend_from_slice(pairs);
        Config::load_from(None, env(&all)).unwrap().database()
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        format!("{:#}", pg(pairs).unwrap_err())
    }

    #[test]
    fn sqlite_needs_no_cluster_settings() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert!(matches!(c.database().unwrap(), Database::Sqlite));
        let c = Config::load_from(None, env(&[("WAGATE__DATABASE__URL", "mysql://x/y")])).unwrap();
        assert!(format!("{:#}", c.database().unwrap_err()).contains("postgres://"));
    }

    #[test]
    fn postgres_takes_the_cluster_settings_with_their_defaults() {
        let Database::Postgres(cluster) = pg(&[("WAGATE__CLUSTER__SECRET", SECRET)]).unwrap()
        else {
            panic!("not PostgreSQL");
        };
        assert_eq!(
            (cluster.heartbeat, cluster.self_fence, cluster.lease),
            (
                Duration::from_secs(2),
                Duration::from_secs(6),
                Duration::from_secs(10)
            )
        );
        // Default: http:// + the address bound (127.0.0.1:8080 by default).
        let bound = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(cluster.advertise_url(bound), "http://127.0.0.1:8080");
        // Neither the secret nor the database password is ever printed.
        let c = Config::load_from(
            None,
            env(&[
                ("WAGATE__DATABASE__URL", PG),
                ("WAGATE__CLUSTER__SECRET", SECRET),
            ]),
        )
        .unwrap();
        let shown = format!("{c:?} {cluster:?}");
        assert!(
            !shown.contains(SECRET) && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn postgres_refuses_a_missing_or_short_secret() {
        assert!(refusal(&[]).contains("cluster.secret is required"));
        assert!(refusal(&[("WAGATE__CLUSTER__SECRET", "short")]).contains("at least 32"));
    }

    #[test]
    fn a_wildcard_bind_needs_an_advertised_url() {
        let wild = [
            ("WAGATE__CLUSTER__SECRET", SECRET),
            ("WAGATE__SERVER__BIND", "0.0.0.0:8080"),
        ];
        assert!(refusal(&wild).contains("cluster.advertise_url is required"));
        let v6 = [
            ("WAGATE__CLUSTER__SECRET", SECRET),
            ("WAGATE__SERVER__BIND", "[::]:8080"),
        ];
        assert!(refusal(&v6).contains("cluster.advertise_url is required"));
        let mut given = wild.to_vec();
        given.push(("WAGATE__CLUSTER__ADVERTISE_URL", "http://10.0.0.5:8080/"));
        let Database::Postgres(cluster) = pg(&given).unwrap() else {
            panic!("not PostgreSQL");
        };
        assert_eq!(
            cluster.advertise_url("0.0.0.0:8080".parse().unwrap()),
            "http://10.0.0.5:8080"
        );
        for bad in [
            "10.0.0.5:8080",
            "ftp://10.0.0.5",
            "http://",
            "http://0.0.0.0:8080",
        ] {
            let mut with = wild.to_vec();
            with.push(("WAGATE__CLUSTER__ADVERTISE_URL", bad));
            assert!(refusal(&with).contains("must be an http://"), "{bad}");
        }
    }

    #[test]
    fn timings_must_fence_before_the_lease_ends() {
        for (hb, fence, lease) in [
            ("0", "6", "10"),
            ("2", "10", "10"),
            ("6", "6", "10"),
            ("2", "12", "10"),
        ] {
            let r = refusal(&[
                ("WAGATE__CLUSTER__SECRET", SECRET),
                ("WAGATE__CLUSTER__HEARTBEAT_SECS", hb),
                ("WAGATE__CLUSTER__SELF_FENCE_SECS", fence),
                ("WAGATE__CLUSTER__LEASE_SECS", lease),
            ]);
            assert!(r.contains("heartbeat_secs"), "{hb} {fence} {lease}: {r}");
        }
    }

    #[test]
    fn postgres_refuses_a_device_store_file() {
        let r = refusal(&[
            ("WAGATE__CLUSTER__SECRET", SECRET),
            (
                "WAGATE__WHATSAPP__LIVE__STORE",
                "/var/lib/wagate/devices.db",
            ),
        ]);
        assert!(
            r.contains("cannot be used with a PostgreSQL database.url"),
            "{r}"
        );
    }
}
