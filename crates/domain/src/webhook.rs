//! Webhooks: where an organization wants its events pushed.

use std::fmt;

use time::OffsetDateTime;

use crate::{
    DomainError, EventCursor, EventFilter, EventId, EventPattern, OrgId, SessionId, WebhookId,
};

/// A webhook's target: an absolute `http` or `https` URL with a host, at
/// most 2,048 characters. Whether its host may be a private address is
/// decided elsewhere (configuration, at creation and at delivery).
///
/// The host is what the HTTP client (WHATWG URL parsing) takes without
/// complaint: a name of ASCII letters, digits, `-` and `.` (an
/// internationalized name in punycode, `xn--…`), an IPv4 address in any
/// form WHATWG reads (`127.0.0.1`, `127.1`, `0x7f.1`, `2130706433`), or an
/// IPv6 literal in brackets; then an optional port up to 65535.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(Box<str>);

impl WebhookUrl {
    /// Parses a target URL.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `url` when it is not an absolute `http`
    /// or `https` URL with a host, has credentials in it, a fragment, or
    /// whitespace, names a host the HTTP client would refuse (characters
    /// other than ASCII letters, digits, `-` and `.`; a name ending in a
    /// number that is no IPv4 address; a malformed IPv6 literal), a port
    /// above 65535, or is longer than 2,048 characters.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let bad = |m: &str| DomainError::new("url", m.to_owned());
        if input.chars().count() > 2048 {
            return Err(bad("must be at most 2048 characters"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain whitespace"));
        }
        let rest = input
            .strip_prefix("https://")
            .or_else(|| input.strip_prefix("http://"))
            .ok_or_else(|| bad("must be an http or https URL"))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(bad("must name a host"));
        }
        if authority.contains('@') {
            return Err(bad("must not carry credentials"));
        }
        if input.contains('#') {
            return Err(bad("must not have a fragment"));
        }
        let (host, port) =
            match authority.strip_prefix('[') {
                Some(v6) => {
                    let (literal, after) = v6
                        .split_once(']')
                        .ok_or_else(|| bad("has an IPv6 address without its closing ']'"))?;
                    if literal.parse::<std::net::Ipv6Addr>().is_err() {
                        return Err(bad("has a malformed IPv6 address"));
                    }
                    match after {
                        "" => (literal, None),
                        _ => (
                            literal,
                            Some(after.strip_prefix(':').ok_or_else(|| {
                                bad("must have only a port after the IPv6 address")
                            })?),
                        ),
                    }
                }
                None => {
                    let (host, port) = match authority.split_once(':') {
                        Some((host, port)) => (host, Some(port)),
                        None => (authority, None),
                    };
                    check_host(host).map_err(|m| bad(&m))?;
                    (host, port)
                }
            };
        if host.is_empty() {
            return Err(bad("must name a host"));
        }
        if let Some(port) = port
            && !valid_port(port)
        {
            return Err(bad("must have a port from 0 to 65535"));
        }
        Ok(Self(input.into()))
    }

    /// The URL's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host as written (brackets removed from an IPv6 literal), and the
    /// port if one is given.
    pub fn host_port(&self) -> (&str, Option<u16>) {
        let rest = self
            .0
            .strip_prefix("https://")
            .or_else(|| self.0.strip_prefix("http://"))
            .unwrap_or(&self.0);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
            return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()),
            None => (authority, None),
        }
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `port` (the text after the host's `:`) is a port the URL
/// parser takes: digits (leading zeros too) up to 65535, or nothing.
fn valid_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit())
        && port
            .trim_start_matches('0')
            .parse::<u32>()
            .map_or(port.trim_start_matches('0').is_empty(), |p| p <= 65535)
}

/// Checks a host that is not an IPv6 literal as WHATWG URL parsing (the
/// HTTP client's) reads it: a name of ASCII letters, digits, `-` and `.`;
/// when its last label is a number, the whole host must be an IPv4
/// address (`a.1` and `1.2.3.256` are refused).
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("must name a host".into());
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "has {c:?} in its host: use ASCII letters, digits, '-' and '.' \
             (an internationalized name in punycode, xn--…), an IPv4 address \
             or an IPv6 address in brackets"
        ));
    }
    if ends_in_a_number(host) && !is_ipv4(host) {
        return Err("has a host ending in a number that is no IPv4 address".into());
    }
    Ok(())
}

/// The labels of a host, one trailing empty label (of a trailing `.`)
/// left out.
fn labels(host: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    parts
}

/// WHATWG's "ends in a number": the last label is digits, or `0x` and
/// hexadecimal digits.
fn ends_in_a_number(host: &str) -> bool {
    let last = labels(host).pop().unwrap_or_default();
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || ipv4_number(last).is_some()
}

/// One part of a WHATWG IPv4 address: decimal, octal (a leading `0`) or
/// hexadecimal (`0x`); `None` when it is none of these or above 2³².
fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Some(0);
    }
    // Anything longer is above 2³² in every radix.
    if significant.len() > 11 {
        return Some(u64::MAX);
    }
    u64::from_str_radix(significant, radix).ok()
}

/// Whether `host` is an IPv4 address as WHATWG reads it: 1 to 4 parts
/// (a trailing `.` allowed), each but the last at most 255, the last
/// filling the bytes left.
fn is_ipv4(host: &str) -> bool {
    let parts = labels(host);
    if parts.len() > 4 {
        return false;
    }
    let Some(numbers) = parts
        .iter()
        .map(|p| ipv4_number(p))
        .collect::<Option<Vec<u64>>>()
    else {
        return false;
    };
    let (last, init) = numbers.split_last().unwrap_or((&0, &[]));
    init.iter().all(|n| *n <= 255) && *last < 1u64 << (8 * (5 - numbers.len()))
}

/// A webhook's signing secret: `whsec_` + base64 of 32 random bytes
/// (Standard Webhooks). Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Box<str>);

impl WebhookSecret {
    /// Wraps the text of a secret this gateway made (or stored).
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `secret` when it does not start with
    /// `whsec_`.
    pub fn from_text(text: &str) -> Result<Self, DomainError> {
        if text.starts_with("whsec_") && text.len() > 6 {
            Ok(Self(text.into()))
        } else {
            Err(DomainError::new("secret", "must start with 'whsec_'"))
        }
    }

    /// The secret's text (shown once, to its creator; used to sign).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_…)")
    }
}

/// A description of a webhook: at most 500 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookDescription(Box<str>);

impl WebhookDescription {
    /// Parses a description (may be empty).
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `description` when longer than 500
    /// characters or holding control characters.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        if input.chars().count() > 500 {
            return Err(DomainError::new(
                "description",
                "must be at most 500 characters",
            ));
        }
        if input
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(DomainError::new(
                "description",
                "must not hold control characters",
            ));
        }
        Ok(Self(input.into()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A webhook of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its id.
    pub id: WebhookId,
    /// The organization; no other may see it.
    pub org: OrgId,
    /// Where events go.
    pub url: WebhookUrl,
    /// Which event types (at least one pattern).
    pub events: Vec<EventPattern>,
    /// Only these sessions' events; `None`: all.
    pub session_ids: Option<Vec<SessionId>>,
    /// For people.
    pub description: WebhookDescription,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why it was disabled by the gateway (the receiver answered 410, or
    /// every delivery failed for too long); `None` when enabled or disabled
    /// by its owner.
    pub disabled_reason: Option<String>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

impl Webhook {
    /// The events it wants.
    pub fn filter(&self) -> EventFilter {
        EventFilter {
            types: self.events.clone(),
            sessions: self.session_ids.clone(),
        }
    }
}

/// Where one delivery (one event to one webhook) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not delivered yet; attempts go on.
    Pending,
    /// The receiver answered 2xx.
    Succeeded,
    /// Given up (schedule exhausted, receiver gone, webhook disabled).
    Failed,
}

impl DeliveryState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Failed => "failed",
        }
    }

    /// The state named `input`.
    pub fn from_name(input: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == input)
    }
}

/// One event's delivery to one webhook, as the deliveries log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its place in the webhook's log (newest first).
    pub seq: u64,
    /// The event delivered.
    pub event_id: EventId,
    /// The event's cursor (`None` for a test event, which is not in the log).
    pub cursor: Option<EventCursor>,
    /// Attempts made so far.
    pub attempt: u32,
    /// Where it stands.
    pub state: DeliveryState,
    /// The last answer's status, if one came.
    pub response_status: Option<u16>,
    /// The last failure, for people (never a secret).
    pub error: Option<String>,
    /// When the last attempt was made (or the delivery created).
    pub at: OffsetDateTime,
    /// How long the last attempt took.
    pub duration_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = WebhookUrl::parse("https://example.com:8443/hook?x=1").unwrap();
        assert_eq!(u.host_port(), ("example.com", Some(8443)));
        assert!(u.is_https());
        assert_eq!(
            WebhookUrl::parse("http://[::1]:80/").unwrap().host_port(),
            ("::1", Some(80))
        );
        for bad in [
            "ftp://x",
            "https://",
            "https:///path",
            "https://u:p@host/",
            "https://host/#frag",
            "https://ho st/",
            "example.com",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
    }

    /// The hosts WHATWG URL parsing (the HTTP client's) takes, and only
    /// those: what is accepted here is delivered to, never refused later
    /// as "invalid international domain name" or "invalid IPv4 address".
    #[test]
    fn hosts_are_what_the_http_client_parses() {
        for ok in [
            "http://a/",
            "http://xn--bcher-kva.example/hook",
            "http://EXAMPLE.com",
            "http://-a-.b-/",
            "http://a..b/",
            "http://example.com./",
            // The last label is empty: a name, not an address.
            "http://1.2.3.4../1",
            "http://./",
            "http://1.a/",
            "http://0x1g/",
            "http://00x1/",
            "http://127.0.0.1/",
            "http://127.0.0.1./",
            "http://127.1/",
            "http://0x7f.1/",
            "http://0x7F.0X.0x.1/",
            "http://0177.0.0.01/",
            "http://2130706433/",
            "http://4294967295/",
            "http://1.16777215/",
            "http://1.2.65535/",
            "http://0/",
            "http://0x/",
            "http://[::1]/",
            "http://[2001:DB8::1]:8080/",
            "http://[::ffff:1.2.3.4]/",
            "http://host:/",
            "http://host:0/",
            "http://host:65535/",
            "http://host:0000080/",
            "http://[::1]:443/",
            "https://example.com?q=é",
            "https://example.com/päth",
        ] {
            assert!(WebhookUrl::parse(ok).is_ok(), "{ok}");
        }
        let longest = format!("https://x/{}", "é".repeat(2038));
        assert!(WebhookUrl::parse(&longest).is_ok());
        for bad in [
            // Not ASCII (an IDN goes in punycode), or not a name's character.
            "http://bücher.example/",
            "http://exa_mple.com/",
            "http://a%41.com/",
            "http://a\\b/",
            "http://a<b/",
            "http://[::1/",
            "http://[::1]x/",
            "http://[::g]/",
            "http://[1:2:3:4:5:6:7:8:9]/",
            "http://[::1%25eth0]/",
            "http://[::ffff:01.2.3.4]/",
            // Ends in a number but is no IPv4 address.
            "http://a.1/",
            "http://example.0x/",
            "http://1.2.3.4.5/",
            "http://1.2.3.256/",
            "http://256.1.1.1/",
            "http://1.2.65536/",
            "http://1.16777216/",
            "http://4294967296/",
            "http://99999999999999999999/",
            "http://08/",
            "http://0x1.09/",
            "http://1..2/",
            // Ports.
            "http://host:65536/",
            "http://host:8o/",
            "http://host:1:2/",
            "http://:80/",
            "http://[::1]:99999/",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
        let too_long = format!("https://x/{}", "é".repeat(2039));
        assert!(WebhookUrl::parse(&too_long).is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let s = WebhookSecret::from_text("whsec_c2VjcmV0").unwrap();
        assert!(!format!("{s:?}").contains("c2Vj"));
        assert!(WebhookSecret::from_text("secret").is_err());
    }
}
