use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::DomainError;

/// Longest input [`Jid::parse`] looks at; anything longer is refused before
/// any work is done on it.
const MAX_INPUT_LEN: usize = 128;

/// What a [`Jid`] addresses, which decides the server part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JidKind {
    /// A person addressed by phone number: `14155550123@s.whatsapp.net`.
    User,
    /// A person addressed by their LID (WhatsApp's privacy id): `…@lid`.
    Lid,
    /// A group: `120363025246125486@g.us`.
    Group,
    /// A channel (newsletter): `120363144038483540@newsletter`.
    Channel,
}

impl JidKind {
    /// The server part this kind is written with.
    pub fn server(self) -> &'static str {
        match self {
            JidKind::User => "s.whatsapp.net",
            JidKind::Lid => "lid",
            JidKind::Group => "g.us",
            JidKind::Channel => "newsletter",
        }
    }

    /// True for the two kinds that address a person (phone number or LID).
    pub fn is_person(self) -> bool {
        matches!(self, JidKind::User | JidKind::Lid)
    }
}

/// A WhatsApp address, always in its bare canonical form.
///
/// Built only by [`Jid::parse`] (or [`Jid::user`]), so holding one means:
/// the server is one of the four kinds, the user part is well formed, and any
/// device (`:12`) or agent (`.0`) part of a person's JID has been dropped.
/// `Display` prints the canonical form, and parsing that again gives the same
/// value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jid {
    user: Box<str>,
    kind: JidKind,
}

impl Jid {
    /// Parses a JID as it arrives from a caller: `@` raw or percent-encoded
    /// (`%40`), a person's device and agent parts dropped, `c.us` read as
    /// `s.whatsapp.net`.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `jid` naming what is wrong: empty or too
    /// long input, no `@`, an unknown server, or a user part that is not the
    /// digits that kind of JID is made of.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        if input.is_empty() {
            return Err(err("must not be empty"));
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(err(format!("must be at most {MAX_INPUT_LEN} characters")));
        }
        let decoded;
        let input = if input.contains('%') {
            decoded = percent_decode_separators(input)?;
            decoded.as_str()
        } else {
            input
        };
        let Some((user, server)) = input.split_once('@') else {
            return Err(err(
                "must look like 14155550123@s.whatsapp.net (no '@' found)",
            ));
        };
        let kind = match server {
            "s.whatsapp.net" | "c.us" => JidKind::User,
            "lid" => JidKind::Lid,
            "g.us" => JidKind::Group,
            "newsletter" => JidKind::Channel,
            _ => {
                return Err(err(
                    "server must be s.whatsapp.net, lid, g.us or newsletter",
                ));
            }
        };
        let user = match kind {
            JidKind::User | JidKind::Lid => {
                // `user.agent:device` → `user`
                let bare = user.split_once(':').map_or(user, |(u, _)| u);
                let bare = bare.split_once('.').map_or(bare, |(u, _)| u);
                check_digits(
                    bare,
                    5,
                    20,
                    "a person's JID must be 5 to 20 digits before the '@'",
                )?;
                bare
            }
            JidKind::Group => {
                // Current groups are one number; old ones are `creator-timestamp`.
                let ok = match user.split_once('-') {
                    Some((a, b)) => is_digits(a, 5, 20) && is_digits(b, 1, 20),
                    None => is_digits(user, 5, 30),
                };
                if !ok {
                    return Err(err(
                        "a group JID must be digits (or creator-timestamp) before '@g.us'",
                    ));
                }
                user
            }
            JidKind::Channel => {
                check_digits(
                    user,
                    5,
                    30,
                    "a channel JID must be digits before '@newsletter'",
                )?;
                user
            }
        };
        Ok(Self {
            user: user.into(),
            kind,
        })
    }

    /// The phone-number JID of a person, from the digits of their number.
    ///
    /// # Errors
    ///
    /// As [`Jid::parse`] when `digits` is not 5 to 20 digits.
    pub fn user(digits: &str) -> Result<Self, DomainError> {
        check_digits(
            digits,
            5,
            20,
            "a person's JID must be 5 to 20 digits before the '@'",
        )?;
        Ok(Self {
            user: digits.into(),
            kind: JidKind::User,
        })
    }

    /// The part before the `@`.
    pub fn user_part(&self) -> &str {
        &self.user
    }

    /// What this JID addresses.
    pub fn kind(&self) -> JidKind {
        self.kind
    }
}

fn err(message: impl Into<String>) -> DomainError {
    DomainError::new("jid", message)
}

fn is_digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn check_digits(s: &str, min: usize, max: usize, message: &str) -> Result<(), DomainError> {
    if is_digits(s, min, max) {
        Ok(())
    } else {
        Err(err(message))
    }
}

/// Decodes `%40` (`@`) and `%3A` (`:`), the only escapes a JID can need;
/// any other escape is an error rather than something silently kept.
fn percent_decode_separators(input: &str) -> Result<String, DomainError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3).unwrap_or("");
        if code.eq_ignore_ascii_case("40") {
            out.push('@');
        } else if code.eq_ignore_ascii_case("3a") {
            out.push(':');
        } else {
            return Err(err(
                "only '%40' ('@') and '%3A' (':') may be percent-encoded",
            ));
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.kind.server())
    }
}

impl FromStr for Jid {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Jid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Jid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Jid::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_kind() {
        assert_eq!(
            Jid::parse("14155550123@s.whatsapp.net").unwrap().kind(),
            JidKind::User
        );
        assert_eq!(
            Jid::parse("123456789012345@lid").unwrap().kind(),
            JidKind::Lid
        );
        assert_eq!(
            Jid::parse("120363025246125486@g.us").unwrap().kind(),
            JidKind::Group
        );
        assert_eq!(
            Jid::parse("15551234567-1612345678@g.us").unwrap().kind(),
            JidKind::Group
        );
        assert_eq!(
            Jid::parse("120363144038483540@newsletter").unwrap().kind(),
            JidKind::Channel
        );
    }

    #[test]
    fn drops_device_and_agent_and_decodes_at() {
        for input in [
            "14155550123:12@s.whatsapp.net",
            "14155550123.0:3@s.whatsapp.net",
            "14155550123%40s.whatsapp.net",
            "14155550123%3a7%40s.whatsapp.net",
            "14155550123@c.us",
        ] {
            assert_eq!(
                Jid::parse(input).unwrap().to_string(),
                "14155550123@s.whatsapp.net",
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_malformed_input_with_field_jid() {
        for input in [
            "",
            "14155550123",
            "abc@s.whatsapp.net",
            "14155550123@example.com",
            "123@s.whatsapp.net",
            "14155550123@@s.whatsapp.net",
            "1234567:1@g.us",
            "14155550123%41s.whatsapp.net",
            "14155550123%4",
            "%",
            &"1".repeat(200),
        ] {
            let e = Jid::parse(input).unwrap_err();
            assert_eq!(e.field, "jid", "{input}");
        }
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let jid = Jid::parse("123456789012345@lid").unwrap();
        let json = serde_json::to_string(&jid).unwrap();
        assert_eq!(json, "\"123456789012345@lid\"");
        assert_eq!(serde_json::from_str::<Jid>(&json).unwrap(), jid);
        assert!(serde_json::from_str::<Jid>("\"nope\"").is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips(user in "[1-9][0-9]{4,19}", kind in 0usize..4) {
            let server = ["s.whatsapp.net", "lid", "g.us", "newsletter"][kind];
            let jid = Jid::parse(&format!("{user}@{server}")).unwrap();
            prop_assert_eq!(Jid::parse(&jid.to_string()).unwrap(), jid.clone());
            prop_assert_eq!(jid.to_string(), format!("{user}@{server}"));
        }

        #[test]
        fn device_part_never_changes_the_bare_user(user in "[1-9][0-9]{4,14}", device in 0u16..100) {
            let bare = Jid::parse(&format!("{user}@s.whatsapp.net")).unwrap();
            let with_device = Jid::parse(&format!("{user}:{device}@s.whatsapp.net")).unwrap();
            prop_assert_eq!(bare, with_device);
        }

        #[test]
        fn never_panics(input in "\\PC{0,200}") {
            let _ = Jid::parse(&input);
        }
    }
}
