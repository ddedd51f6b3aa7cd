use std::fmt;

use time::OffsetDateTime;

use crate::{DomainError, Jid};

/// Which size of profile picture to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PictureType {
    /// The full-size picture.
    #[default]
    Image,
    /// The small thumbnail.
    Preview,
}

impl PictureType {
    /// The type's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PictureType::Image => "image",
            PictureType::Preview => "preview",
        }
    }

    /// Parses `image` or `preview`.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `type` for anything else.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        match input {
            "image" => Ok(PictureType::Image),
            "preview" => Ok(PictureType::Preview),
            _ => Err(DomainError::new("type", "must be 'image' or 'preview'")),
        }
    }
}

/// A contact's current profile picture, as WhatsApp describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePicture {
    /// WhatsApp's id of this picture version.
    pub id: String,
    /// Time-limited CDN URL.
    pub url: String,
    /// Which size this is.
    pub kind: PictureType,
    /// Path on WhatsApp's media servers, when given.
    pub direct_path: Option<String>,
    /// Hash of the file, when given.
    pub hash: Option<String>,
}

/// Why WhatsApp has nothing to show for a contact (picture or about).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Absence {
    /// The contact has set none.
    NotSet,
    /// The contact's privacy settings hide it from us.
    Hidden,
}

impl Absence {
    /// The reason's name in the API (`details.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Absence::NotSet => "not_set",
            Absence::Hidden => "hidden",
        }
    }
}

/// A contact's about text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    /// The text.
    pub text: String,
    /// When it was set, when WhatsApp says.
    pub set_at: Option<OffsetDateTime>,
}

/// One blocked contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlocklistEntry {
    /// The JID WhatsApp lists (often a LID).
    pub jid: Jid,
    /// The phone-number JID, when known.
    pub phone_jid: Option<Jid>,
}

/// A QR code to link a device, with the instant it stops being valid.
#[derive(Clone, PartialEq, Eq)]
pub struct QrCode {
    /// The text the QR encodes (`2@…`).
    pub code: String,
    /// After this instant the code is useless.
    pub expires_at: OffsetDateTime,
}

// The code is a short-lived credential: keep it out of Debug output (logs).
impl fmt::Debug for QrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QrCode")
            .field("code", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An 8-character code the user types on their phone (`ABCD-EFGH`).
#[derive(Clone, PartialEq, Eq)]
pub struct PairingCode(String);

impl PairingCode {
    /// Wraps the code as WhatsApp gave it.
    pub fn new(code: String) -> Self {
        Self(code)
    }

    /// The code's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingCode(<redacted>)")
    }
}

/// A phone number in international form, digits only (`14155550123`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(Box<str>);

impl PhoneNumber {
    /// Parses a phone number as people write it: `+1 415 555 0123`,
    /// `(415)`, dots and dashes allowed; 7 to 15 digits, no leading zero.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `phoneNumber` otherwise.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let rest = input.trim();
        let rest = rest.strip_prefix('+').unwrap_or(rest);
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(phone_err()),
            }
        }
        if !(7..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(phone_err());
        }
        Ok(Self(digits.into()))
    }

    /// The digits.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The phone-number JID of this number.
    pub fn jid(&self) -> Jid {
        // 7..=15 digits always make a valid user JID.
        Jid::user(&self.0).unwrap_or_else(|_| unreachable!("checked in parse"))
    }
}

fn phone_err() -> DomainError {
    DomainError::new(
        "phoneNumber",
        "must be an international number with country code, e.g. +1 415 555 0123",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers() {
        assert_eq!(
            PhoneNumber::parse("+1 415 555 0123").unwrap().digits(),
            "14155550123"
        );
        assert_eq!(
            PhoneNumber::parse("+1 (415) 555-0123")
                .unwrap()
                .jid()
                .to_string(),
            "14155550123@s.whatsapp.net"
        );
        for bad in [
            "",
            "+",
            "123",
            "0044 20 7946 0958",
            "+1 415 555 0123 ext 4",
            "1".repeat(16).as_str(),
        ] {
            assert_eq!(
                PhoneNumber::parse(bad).unwrap_err().field,
                "phoneNumber",
                "{bad}"
            );
        }
    }

    #[test]
    fn picture_type() {
        assert_eq!(PictureType::parse("preview").unwrap(), PictureType::Preview);
        assert!(PictureType::parse("thumb").is_err());
    }

    #[test]
    fn codes_are_redacted_in_debug() {
        let qr = QrCode {
            code: "2@secret".into(),
            expires_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(!format!("{qr:?}").contains("secret"));
        assert!(!format!("{:?}", PairingCode::new("ABCD-EFGH".into())).contains("ABCD"));
    }
}
