use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::{ApiKeyId, CapabilitySet, DomainError, OrgId};

/// An API key's label: 1 to 100 characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyName(Box<str>);

impl ApiKeyName {
    /// Parses a key name.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `name` when it is empty, longer than 100
    /// characters, or holds control characters.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        crate::parse_label("name", input).map(Self)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The secret of an API key: `wgk_` and 64 lowercase hex digits (32 random
/// bytes). Shown to its creator once; stored only as a hash. `Debug` never
/// prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(Box<str>);

impl ApiKeySecret {
    /// What every key starts with.
    pub const PREFIX: &'static str = "wgk_";
    /// Length of the whole secret.
    pub const LEN: usize = 4 + 64;
    /// How many leading characters are kept (and shown) to recognise a key.
    pub const DISPLAY_PREFIX_LEN: usize = 12;

    /// Builds a secret from 32 random bytes (the caller brings the
    /// randomness, so tests can be deterministic).
    pub fn from_random_bytes(bytes: [u8; 32]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(Self::LEN);
        s.push_str(Self::PREFIX);
        for b in bytes {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        Self(s.into())
    }

    /// Recognises a bearer token as an API key.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `token` when it is not `wgk_` + 64
    /// lowercase hex digits. The message never repeats the token.
    pub fn parse(token: &str) -> Result<Self, DomainError> {
        let ok = token.len() == Self::LEN
            && token.starts_with(Self::PREFIX)
            && token[Self::PREFIX.len()..]
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Self(token.into()))
        } else {
            Err(DomainError::new(
                "token",
                "not a well-formed wagate API key",
            ))
        }
    }

    /// The whole secret. Handle with care: only for hashing and for showing
    /// it once to its creator.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first characters, safe to store and show (`wgk_1a2b3c4d`).
    pub fn display_prefix(&self) -> &str {
        &self.0[..Self::DISPLAY_PREFIX_LEN]
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…)", self.display_prefix())
    }
}

/// Parses an API key's expiry: an RFC 3339 timestamp, returned in UTC.
///
/// # Errors
///
/// A [`DomainError`] on field `expiresAt` when it is not RFC 3339 or is out
/// of range once in UTC.
pub fn parse_expiry(input: &str) -> Result<OffsetDateTime, DomainError> {
    let err = || {
        DomainError::new(
            "expiresAt",
            "must be an RFC 3339 timestamp, e.g. 2030-01-01T00:00:00Z",
        )
    };
    OffsetDateTime::parse(input, &Rfc3339)
        .ok()
        .and_then(|t| t.checked_to_offset(UtcOffset::UTC))
        .ok_or_else(err)
}

/// An API key as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id.
    pub id: ApiKeyId,
    /// The organization it acts in.
    pub org: OrgId,
    /// Its label.
    pub name: ApiKeyName,
    /// What it may do, fixed at creation.
    pub capabilities: CapabilitySet,
    /// The secret's first characters, to recognise it.
    pub prefix: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it stops working, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// When it was last used (written at most once a minute).
    pub last_used_at: Option<OffsetDateTime>,
}

impl ApiKey {
    /// Whether the key has expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// What the store needs to create a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// The key's record.
    pub key: ApiKey,
    /// SHA-256 of the secret: the only form in which it is kept.
    pub secret_hash: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_normalised_to_utc() {
        let t = parse_expiry("2030-01-01T02:00:00+02:00").unwrap();
        assert_eq!(t.offset(), UtcOffset::UTC);
        assert_eq!(t.hour(), 0);
        assert_eq!(parse_expiry("soon").unwrap_err().field, "expiresAt");
    }

    #[test]
    fn secret_format_and_redaction() {
        let s = ApiKeySecret::from_random_bytes([0xab; 32]);
        assert_eq!(s.expose().len(), ApiKeySecret::LEN);
        assert_eq!(ApiKeySecret::parse(s.expose()).unwrap(), s);
        assert_eq!(s.display_prefix(), "wgk_abababab");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains(&s.expose()[12..]));
        for bad in [
            "",
            "wgk_",
            "wgk_ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB",
            "Bearer x",
        ] {
            assert!(ApiKeySecret::parse(bad).is_err());
        }
    }
}
