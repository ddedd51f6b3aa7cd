//! Webhooks: where an organization wants its events pushed.

use std::fmt;

use time::OffsetDateTime;

use crate::{
    DomainError, EventCursor, EventFilter, EventId, EventPattern, OrgId, SessionId, WebhookId,
};

/// A webhook's target: an absolute `http` or `https` URL with a host, at
/// most 2,048 characters. Whether its host may be a private address is
/// decided elsewhere (configuration, at creation and at delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(Box<str>);

impl WebhookUrl {
    /// Parses a target URL.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `url` when it is not an absolute `http`
    /// or `https` URL with a host, has credentials in it, a fragment, or
    /// whitespace, or is longer than 2,048 characters.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let bad = |m: &str| DomainError::new("url", m.to_owned());
        if input.len() > 2048 {
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

    #[test]
    fn secrets_are_redacted() {
        let s = WebhookSecret::from_text("whsec_c2VjcmV0").unwrap();
        assert!(!format!("{s:?}").contains("c2Vj"));
        assert!(WebhookSecret::from_text("secret").is_err());
    }
}
