use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ApiKeyId, DomainError, OrgId};

/// One thing a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Look things up (sessions, pictures, about, blocklist).
    Read,
    /// Act on WhatsApp: block, unblock (and later messages).
    Send,
    /// Drive the session lifecycle: create, connect, disconnect, log out, delete.
    Manage,
    /// Manage the organization's API keys.
    Admin,
}

impl Capability {
    /// Every capability, in the order the API lists them.
    pub const ALL: [Capability; 4] = [
        Capability::Read,
        Capability::Send,
        Capability::Manage,
        Capability::Admin,
    ];

    /// The capability's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Read => "read",
            Capability::Send => "send",
            Capability::Manage => "manage",
            Capability::Admin => "admin",
        }
    }

    /// Parses a capability's API name.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `capabilities` for any other text.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == input)
            .ok_or_else(|| {
                DomainError::new(
                    "capabilities",
                    format!(
                        "unknown capability '{}': use read, send, manage or admin",
                        truncate(input)
                    ),
                )
            })
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Capability::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A set of [`Capability`]s; copying it is free.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapabilitySet(u8);

impl CapabilitySet {
    /// No capabilities.
    pub const EMPTY: CapabilitySet = CapabilitySet(0);
    /// All four capabilities.
    pub const ALL: CapabilitySet = CapabilitySet(0b1111);

    /// The set of the given capabilities.
    pub fn of(caps: impl IntoIterator<Item = Capability>) -> Self {
        caps.into_iter().fold(Self::EMPTY, |set, c| set.with(c))
    }

    /// Parses a comma-separated list such as `read,send` (spaces allowed).
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `capabilities` naming the first unknown entry.
    pub fn parse_list(input: &str) -> Result<Self, DomainError> {
        input
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Capability::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::of)
    }

    /// This set plus `cap`.
    #[must_use]
    pub fn with(self, cap: Capability) -> Self {
        Self(self.0 | cap.bit())
    }

    /// Whether `cap` is in the set.
    pub fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// Whether every capability of `other` is in this set.
    pub fn contains_all(self, other: CapabilitySet) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in API order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }

    /// The capabilities of `other` missing from this set.
    pub fn missing_from(self, other: CapabilitySet) -> CapabilitySet {
        CapabilitySet(other.0 & !self.0)
    }
}

impl fmt::Debug for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for c in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(c.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for CapabilitySet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for CapabilitySet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Capability>::deserialize(d).map(CapabilitySet::of)
    }
}

/// A person's role in their organization, as the login JWT states it.
/// Which capabilities a role has is configuration (`auth.roles.*`), not code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Role(Box<str>);

impl Role {
    /// A role by name (any text; unknown roles simply map to no capabilities).
    pub fn new(name: &str) -> Self {
        Self(name.into())
    }

    /// The role's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who is calling, as far as the rest of wagate needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A person signed in on the frontend (login JWT); `subject` is the
    /// token's `sub`, if it had one.
    User {
        /// The token's `sub` claim.
        subject: Option<String>,
        /// The role the token named.
        role: Role,
    },
    /// A script or service holding an API key.
    ApiKey(ApiKeyId),
}

/// An authenticated caller: an organization and what they may do in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The organization every action of this caller is confined to.
    pub org: OrgId,
    /// What the caller may do.
    pub capabilities: CapabilitySet,
    /// How the caller authenticated.
    pub kind: PrincipalKind,
    /// When the caller's credential itself expires (an API key with an
    /// expiry); keys this caller creates may not outlive it. `None` for
    /// people and for keys that never expire.
    pub credential_expires_at: Option<time::OffsetDateTime>,
}

impl Principal {
    /// Whether the caller holds `cap`.
    pub fn can(&self, cap: Capability) -> bool {
        self.capabilities.contains(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let set = CapabilitySet::parse_list("read, send").unwrap();
        assert!(set.contains(Capability::Read) && set.contains(Capability::Send));
        assert!(!set.contains(Capability::Admin));
        assert_eq!(set.to_string(), "read,send");
        assert!(CapabilitySet::ALL.contains_all(set));
        assert!(!set.contains_all(CapabilitySet::ALL));
        assert_eq!(
            set.missing_from(CapabilitySet::ALL),
            CapabilitySet::of([Capability::Manage, Capability::Admin])
        );
        assert_eq!(
            CapabilitySet::parse_list("read,root").unwrap_err().field,
            "capabilities"
        );
    }

    #[test]
    fn serde_is_a_list_of_names() {
        let set = CapabilitySet::of([Capability::Admin, Capability::Read]);
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["read","admin"]"#);
        assert_eq!(
            serde_json::from_str::<CapabilitySet>(r#"["admin","read"]"#).unwrap(),
            set
        );
        assert!(serde_json::from_str::<CapabilitySet>(r#"["sudo"]"#).is_err());
    }
}
