use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

use crate::DomainError;

/// Defines a `prefix_` + ULID identifier type.
macro_rules! prefixed_ulid {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            /// The text every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Wraps a ULID (a new one comes from the caller's generator, so
            /// ids created in one millisecond still sort in creation order).
            pub fn from_ulid(ulid: Ulid) -> Self {
                Self(ulid)
            }

            /// The ULID inside.
            pub fn ulid(&self) -> Ulid {
                self.0
            }

            /// Parses the id's text form.
            ///
            /// # Errors
            ///
            #[doc = concat!("A [`DomainError`] on field `", $field, "` when the text is not `", $prefix, "` followed by a 26-character ULID.")]
            pub fn parse(input: &str) -> Result<Self, DomainError> {
                input
                    .strip_prefix($prefix)
                    .filter(|rest| rest.len() == 26)
                    .and_then(|rest| Ulid::from_string(rest).ok())
                    .map(Self)
                    .ok_or_else(|| {
                        DomainError::new(
                            $field,
                            concat!("must be '", $prefix, "' followed by a 26-character ULID"),
                        )
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_ulid!(
    /// A session's id: `sess_` followed by a ULID.
    SessionId,
    "sess_",
    "sessionId"
);

prefixed_ulid!(
    /// An API key's id (not its secret): `key_` followed by a ULID.
    ApiKeyId,
    "key_",
    "id"
);

prefixed_ulid!(
    /// An event's id: `evt_` followed by a ULID; the same in every delivery
    /// and replay, so receivers deduplicate on it.
    EventId,
    "evt_",
    "eventId"
);

prefixed_ulid!(
    /// A webhook's id: `wh_` followed by a ULID.
    WebhookId,
    "wh_",
    "webhookId"
);

prefixed_ulid!(
    /// A gateway process's id: `node_` followed by a ULID, new at every
    /// start (so a restarted process never inherits its former leases).
    NodeId,
    "node_",
    "nodeId"
);

/// An organization's id, as the frontend names it (a JWT claim or the
/// `--org` of the CLI): 1 to 128 characters of `A-Z a-z 0-9 _ - . :`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(Box<str>);

impl OrgId {
    /// Parses an organization id.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `org` when the text is empty, longer than
    /// 128 characters, or has a character outside the set above.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let ok = (1..=128).contains(&input.len())
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if ok {
            Ok(Self(input.into()))
        } else {
            Err(DomainError::new(
                "org",
                "must be 1 to 128 characters of letters, digits, '_', '-', '.' or ':'",
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for OrgId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrgId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_round_trips_and_refuses_other_shapes() {
        let id = SessionId::from_ulid(Ulid::new());
        assert_eq!(SessionId::parse(&id.to_string()).unwrap(), id);
        for bad in [
            "",
            "sess_",
            "sess_123",
            "key_01J0000000000000000000000",
            "sess_01J00000000000000000000000x",
            "SESS_01HZY0N4Q8ZK3J4M7ZC9W4X2QF",
        ] {
            assert_eq!(
                SessionId::parse(bad).unwrap_err().field,
                "sessionId",
                "{bad}"
            );
        }
        assert!(SessionId::parse("sess_01HZY0N4Q8ZK3J4M7ZC9W4X2QF").is_ok());
    }

    #[test]
    fn node_id_round_trips_and_refuses_other_shapes() {
        let id = NodeId::from_ulid(Ulid::new());
        assert!(id.to_string().starts_with("node_"));
        assert_eq!(NodeId::parse(&id.to_string()).unwrap(), id);
        assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        for bad in ["", "node_", "sess_01HZY0N4Q8ZK3J4M7ZC9W4X2QF", "node_xyz"] {
            assert_eq!(NodeId::parse(bad).unwrap_err().field, "nodeId", "{bad}");
        }
    }

    #[test]
    fn org_id_rules() {
        assert!(OrgId::parse("acme-corp_1").is_ok());
        assert!(OrgId::parse("").is_err());
        assert!(OrgId::parse("a b").is_err());
        assert!(OrgId::parse(&"a".repeat(129)).is_err());
    }
}
