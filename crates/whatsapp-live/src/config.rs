//! What the binary hands the adapter: plain data, no library types.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How the live adapter reaches WhatsApp and where it keeps device keys.
///
/// Built by the binary from `whatsapp.live.*`:
///
/// | key | field |
/// |---|---|
/// | `whatsapp.live.url` | [`LiveConfig::url`] |
/// | `whatsapp.live.version` | [`LiveConfig::version`] (parse it with [`parse_version`]) |
/// | `whatsapp.live.store`, `database.url` | [`LiveConfig::store`] |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConfig {
    /// The WebSocket URL of the server; `None` is WhatsApp's own
    /// (`wss://web.whatsapp.com/ws/chat`). Another server (a simulator)
    /// also needs the crate's `simulator` feature, or the Noise handshake
    /// refuses its certificate chain.
    pub url: Option<String>,
    /// The WhatsApp Web version to announce. `None`: learned once per
    /// process from WhatsApp Web (one shared fetch, cached for a day) and
    /// handed to every client. Pin it when offline or against a simulator.
    pub version: Option<(u32, u32, u32)>,
    /// Where every session's device keys live.
    pub store: KeyStoreLocation,
}

/// Where the live adapter keeps whatsapp-rust's device state: one store per
/// process, whichever it is.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyStoreLocation {
    /// One SQLite file (created with its folder if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database: the device tables live in its `whatsapp`
    /// schema (created if missing), reached through one pool.
    Postgres {
        /// `postgres://…` (it may carry a password: never printed).
        url: String,
        /// The pool's most connections.
        connections: u32,
    },
}

impl KeyStoreLocation {
    /// The pool size [`KeyStoreLocation::Postgres`] is given by default.
    pub const DEFAULT_POSTGRES_CONNECTIONS: u32 = 16;
}

/// Where it is, without a password.
impl fmt::Display for KeyStoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres { url, .. } => {
                // scheme://[user[:password]@]host…: keep the host and on.
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                write!(f, "{scheme}://{host}")
            }
        }
    }
}

impl fmt::Debug for KeyStoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyStoreLocation({self})")
    }
}

/// Fine-tuning the binary normally leaves at [`LiveOptions::default`]; tests
/// use it to make reconnection fast and deterministic.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// When to try again after a connection is lost or cannot be made.
    pub reconnect: ReconnectPolicy,
    /// Where the reconnect jitter comes from.
    pub jitter: std::sync::Arc<dyn Jitter>,
    /// How long `disconnect`, `logout` and `shutdown` wait for a client to
    /// close cleanly before aborting it.
    pub stop_timeout: Duration,
    /// Logins (sessions with stored keys connecting) under way at once, all
    /// sessions together; the others wait their turn, in order, as
    /// `connecting`. Thousands of logins started together (a restart, a
    /// failover) each hold the CPU for a few milliseconds in turn, and
    /// every task of the process, an API call's included, waits behind all
    /// of them; a login mostly waits for the server's answers, so about a
    /// hundred keep two CPUs busy. At least 1.
    pub logins_at_once: usize,
}

/// The default of [`LiveOptions::logins_at_once`].
pub const DEFAULT_LOGINS_AT_ONCE: usize = 96;

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            reconnect: ReconnectPolicy::default(),
            jitter: std::sync::Arc::new(SystemJitter::default()),
            stop_timeout: Duration::from_secs(15),
            logins_at_once: DEFAULT_LOGINS_AT_ONCE,
        }
    }
}

/// Exponential backoff with jitter: attempt `n` (0-based) waits
/// `min(max, initial × 2ⁿ)`, spread by ± `jitter` (a fraction) and never
/// more than `max`. See [`ReconnectPolicy::delay`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectPolicy {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Spread of each wait, as a fraction of it (0.0 to 1.0).
    pub jitter: f64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

impl ReconnectPolicy {
    /// The wait before reconnect attempt `attempt` (0 is the first retry),
    /// given a random `unit` in `[0, 1)`: `unit = 0.5` is the exact
    /// exponential value, 0 and 1 its lower and upper jitter bounds.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let factor = 2f64.powi(attempt.min(30) as i32);
        let max = self.max.as_secs_f64();
        let base = (self.initial.as_secs_f64() * factor).min(max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let spread = base * jitter * (2.0 * unit - 1.0);
        Duration::from_secs_f64((base + spread).clamp(0.0, max))
    }
}

/// A source of random numbers in `[0, 1)` for reconnect jitter.
pub trait Jitter: Send + Sync + fmt::Debug {
    /// The next sample, in `[0, 1)`.
    fn sample(&self) -> f64;
}

/// [`Jitter`] from a small process-local generator seeded by the clock:
/// good enough to keep many sessions from reconnecting in lockstep.
#[derive(Debug)]
pub struct SystemJitter {
    state: std::sync::atomic::AtomicU64,
}

impl Default for SystemJitter {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Self {
            state: std::sync::atomic::AtomicU64::new(seed),
        }
    }
}

impl Jitter for SystemJitter {
    fn sample(&self) -> f64 {
        // splitmix64
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A WhatsApp Web version that is not three dot-separated numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WhatsApp Web version '{0}': expected three numbers like 2.3000.1042742319")]
pub struct InvalidVersion(pub String);

/// Parses a WhatsApp Web version as configured (`2.3000.1042742319`).
///
/// # Errors
///
/// [`InvalidVersion`] unless the text is exactly three dot-separated
/// unsigned 32-bit numbers (surrounding whitespace allowed).
pub fn parse_version(text: &str) -> Result<(u32, u32, u32), InvalidVersion> {
    let err = || InvalidVersion(text.to_owned());
    let mut parts = text.trim().split('.');
    let mut next = || -> Result<u32, InvalidVersion> {
        let part = parts.next().ok_or_else(err)?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        part.parse().map_err(|_| err())
    };
    let version = (next()?, next()?, next()?);
    if parts.next().is_some() {
        return Err(err());
    }
    Ok(version)
}

/// Prints a version the way WhatsApp writes it.
pub(crate) fn version_text((p, s, t): (u32, u32, u32)) -> String {
    format!("{p}.{s}.{t}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_location_never_shows_its_password() {
        let at = KeyStoreLocation::Postgres {
            url: "postgres://wagate:hunter2@db.internal:5432/wagate".into(),
            connections: 4,
        };
        assert_eq!(at.to_string(), "postgres://db.internal:5432/wagate");
        assert!(!format!("{at:?}").contains("hunter2"));
        let sqlite = KeyStoreLocation::Sqlite(PathBuf::from("/var/lib/w/devices.db"));
        assert_eq!(sqlite.to_string(), "/var/lib/w/devices.db");
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("2.3000.1042742319"),
            Ok((2, 3000, 1042742319))
        );
        assert_eq!(parse_version(" 2.3000.1 "), Ok((2, 3000, 1)));
        for bad in [
            "",
            "2",
            "2.3000",
            "2.3000.1.4",
            "2..1",
            "a.b.c",
            "+2.3000.1",
            "2.3000.99999999999",
            "2.-1.3",
        ] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
        assert_eq!(version_text((2, 3000, 1042742319)), "2.3000.1042742319");
    }

    #[test]
    fn backoff_grows_exponentially_and_caps() {
        let p = ReconnectPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter: 0.2,
        };
        let mid: Vec<u64> = (0..8).map(|n| p.delay(n, 0.5).as_secs()).collect();
        assert_eq!(mid, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(p.delay(u32::MAX, 0.5), Duration::from_secs(60));
    }

    #[test]
    fn backoff_jitter_stays_in_bounds() {
        let p = ReconnectPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(100),
            jitter: 0.2,
        };
        assert_eq!(p.delay(0, 0.0), Duration::from_secs(8));
        assert_eq!(p.delay(0, 1.0), Duration::from_secs(12));
        // Never above the cap, even with upward jitter.
        assert_eq!(p.delay(10, 1.0), Duration::from_secs(100));
        assert_eq!(p.delay(10, 0.0), Duration::from_secs(80));
        // Nonsense input falls back to the exact value.
        assert_eq!(p.delay(0, f64::NAN), Duration::from_secs(10));
    }

    #[test]
    fn system_jitter_is_in_unit_interval() {
        let j = SystemJitter::default();
        for _ in 0..1000 {
            let x = j.sample();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }
}
