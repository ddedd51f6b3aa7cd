//! The rest of a conversation: locations and contact cards a message can
//! carry instead of text or media, and how long WhatsApp lets its writer
//! edit or take a message back.

use std::fmt;

use serde_json::{Value, json};
use time::Duration;

use crate::DomainError;

/// How long after sending WhatsApp lets its writer edit a message (its
/// apps offer 15 minutes).
pub const EDIT_WINDOW: Duration = Duration::minutes(15);

/// How long after sending WhatsApp lets its writer delete a message for
/// everyone (its apps offer about two and a half days).
pub const REVOKE_WINDOW: Duration = Duration::hours(60);

/// Longest location name or address accepted.
pub const MAX_PLACE_CHARS: usize = 1_024;

/// Most contact cards one message carries.
pub const MAX_CONTACT_CARDS: usize = 20;

/// Longest vCard accepted (bytes).
pub const MAX_VCARD_BYTES: usize = 16_384;

/// A place on the map (`type: "location"`).
///
/// Latitude and longitude are finite degrees in range, so equality is
/// total (`Eq`) and the value always renders as JSON numbers.
#[derive(Clone, PartialEq)]
pub struct Location {
    latitude: f64,
    longitude: f64,
    name: Option<String>,
    address: Option<String>,
}

// Finite by construction: no NaN, so `==` is an equivalence.
impl Eq for Location {}

impl Location {
    /// A location.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `location.latitude` (not within −90…90),
    /// `location.longitude` (not within −180…180), `location.name` or
    /// `location.address` (empty, control characters, over 1,024
    /// characters).
    pub fn new(
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    ) -> Result<Self, DomainError> {
        if !latitude.is_finite() || !(-90.0..=90.0).contains(&latitude) {
            return Err(DomainError::new(
                "location.latitude",
                "must be a number from -90 to 90",
            ));
        }
        if !longitude.is_finite() || !(-180.0..=180.0).contains(&longitude) {
            return Err(DomainError::new(
                "location.longitude",
                "must be a number from -180 to 180",
            ));
        }
        let name = place_text("location.name", name)?;
        let address = place_text("location.address", address)?;
        Ok(Self {
            latitude,
            longitude,
            name,
            address,
        })
    }

    /// Degrees north.
    pub fn latitude(&self) -> f64 {
        self.latitude
    }

    /// Degrees east.
    pub fn longitude(&self) -> f64 {
        self.longitude
    }

    /// The place's name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Its address.
    pub fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }

    /// `{ "latitude", "longitude", "name", "address" }`.
    pub fn to_json(&self) -> Value {
        json!({
            "latitude": self.latitude,
            "longitude": self.longitude,
            "name": self.name,
            "address": self.address,
        })
    }

    /// Reads what [`Location::to_json`] wrote (or a request's `location`).
    ///
    /// # Errors
    ///
    /// As [`Location::new`]; `location` when `v` is not an object with
    /// numeric `latitude` and `longitude`.
    pub fn from_json(v: &Value) -> Result<Self, DomainError> {
        let number = |k: &str, field: &'static str| {
            v.get(k)
                .and_then(Value::as_f64)
                .ok_or_else(|| DomainError::new(field, "is required (a number)"))
        };
        let text = |k: &str, field: &'static str| match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(DomainError::new(field, "must be a string")),
        };
        if !v.is_object() {
            return Err(DomainError::new("location", "must be an object"));
        }
        Self::new(
            number("latitude", "location.latitude")?,
            number("longitude", "location.longitude")?,
            text("name", "location.name")?,
            text("address", "location.address")?,
        )
    }
}

// Where someone is, and what they share, stays out of logs.
impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Location(..)")
    }
}

fn place_text(field: &'static str, text: Option<String>) -> Result<Option<String>, DomainError> {
    let Some(text) = text else {
        return Ok(None);
    };
    if text.is_empty()
        || text.chars().count() > MAX_PLACE_CHARS
        || text.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(DomainError::new(
            field,
            format!("must be 1 to {MAX_PLACE_CHARS} characters, no control characters"),
        ));
    }
    Ok(Some(text))
}

/// One contact card (`type: "contacts"`): the name shown and the vCard.
#[derive(Clone, PartialEq, Eq)]
pub struct ContactCard {
    display_name: String,
    vcard: String,
}

impl ContactCard {
    /// A card.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `contacts.displayName` (empty, over 255
    /// characters, control characters) or `contacts.vcard` (not
    /// `BEGIN:VCARD … END:VCARD`, over 16 KiB).
    pub fn new(display_name: String, vcard: String) -> Result<Self, DomainError> {
        if display_name.trim().is_empty()
            || display_name.chars().count() > 255
            || display_name.chars().any(char::is_control)
        {
            return Err(DomainError::new(
                "contacts.displayName",
                "must be 1 to 255 characters, no control characters",
            ));
        }
        let trimmed = vcard.trim();
        let framed = trimmed
            .get(..11)
            .is_some_and(|b| b.eq_ignore_ascii_case("BEGIN:VCARD"))
            && trimmed.len() >= 9
            && trimmed
                .get(trimmed.len() - 9..)
                .is_some_and(|e| e.eq_ignore_ascii_case("END:VCARD"));
        if !framed || vcard.len() > MAX_VCARD_BYTES {
            return Err(DomainError::new(
                "contacts.vcard",
                format!(
                    "must be a vCard (BEGIN:VCARD … END:VCARD) of at most {MAX_VCARD_BYTES} bytes"
                ),
            ));
        }
        Ok(Self {
            display_name,
            vcard,
        })
    }

    /// The name shown for the card.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// The vCard text.
    pub fn vcard(&self) -> &str {
        &self.vcard
    }

    /// `{ "displayName", "vcard" }`.
    pub fn to_json(&self) -> Value {
        json!({ "displayName": self.display_name, "vcard": self.vcard })
    }

    /// 1 to 20 cards from a JSON array of [`ContactCard::to_json`] objects.
    ///
    /// # Errors
    ///
    /// As [`ContactCard::new`]; `contacts` when `v` is not an array of 1
    /// to 20 such objects.
    pub fn list_from_json(v: &Value) -> Result<Vec<Self>, DomainError> {
        let items = v
            .as_array()
            .filter(|a| !a.is_empty() && a.len() <= MAX_CONTACT_CARDS)
            .ok_or_else(|| {
                DomainError::new(
                    "contacts",
                    format!("must be 1 to {MAX_CONTACT_CARDS} contact cards"),
                )
            })?;
        items
            .iter()
            .map(|c| {
                let text = |k: &str, field: &'static str| {
                    c.get(k)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| DomainError::new(field, "is required (a string)"))
                };
                Self::new(
                    text("displayName", "contacts.displayName")?,
                    text("vcard", "contacts.vcard")?,
                )
            })
            .collect()
    }
}

// People's phone numbers and addresses stay out of logs.
impl fmt::Debug for ContactCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContactCard(..)")
    }
}

/// What a message carries besides text and media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RichContent {
    /// A place (`type: "location"`).
    Location(Location),
    /// One or more contact cards (`type: "contacts"`).
    Contacts(Vec<ContactCard>),
    /// A poll (`type: "poll"`).
    Poll(crate::Poll),
}

impl RichContent {
    /// The message type it makes.
    pub fn kind(&self) -> crate::MessageType {
        match self {
            RichContent::Location(_) => crate::MessageType::Location,
            RichContent::Contacts(_) => crate::MessageType::Contacts,
            RichContent::Poll(_) => crate::MessageType::Poll,
        }
    }

    /// How the store keeps it: `{"location": …}`, `{"contacts": […]}` or
    /// `{"poll": …}`.
    pub fn to_json(&self) -> Value {
        match self {
            RichContent::Location(l) => json!({ "location": l.to_json() }),
            RichContent::Contacts(c) => {
                json!({ "contacts": c.iter().map(ContactCard::to_json).collect::<Vec<_>>() })
            }
            RichContent::Poll(p) => json!({ "poll": p.to_json() }),
        }
    }

    /// Reads back what [`RichContent::to_json`] wrote.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] when `v` is neither.
    pub fn from_json(v: &Value) -> Result<Self, DomainError> {
        if let Some(l) = v.get("location") {
            return Location::from_json(l).map(RichContent::Location);
        }
        if let Some(c) = v.get("contacts") {
            return ContactCard::list_from_json(c).map(RichContent::Contacts);
        }
        if let Some(p) = v.get("poll") {
            return crate::Poll::from_json(p).map(RichContent::Poll);
        }
        Err(DomainError::new(
            "data",
            "not a location, contact cards or a poll",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_in_range_and_round_trip() {
        let l = Location::new(52.52, 13.405, Some("Office".into()), None).unwrap();
        assert_eq!(Location::from_json(&l.to_json()).unwrap(), l);
        assert_eq!(l.to_json()["address"], Value::Null);
        for (lat, lon, field) in [
            (91.0, 0.0, "location.latitude"),
            (f64::NAN, 0.0, "location.latitude"),
            (0.0, -180.5, "location.longitude"),
            (0.0, f64::INFINITY, "location.longitude"),
        ] {
            assert_eq!(
                Location::new(lat, lon, None, None).unwrap_err().field,
                field
            );
        }
        assert_eq!(
            Location::new(0.0, 0.0, Some(String::new()), None)
                .unwrap_err()
                .field,
            "location.name"
        );
        assert_eq!(
            Location::from_json(&json!({"latitude": "1", "longitude": 2}))
                .unwrap_err()
                .field,
            "location.latitude"
        );
        assert!(!format!("{l:?}").contains("Office"));
    }

    #[test]
    fn contact_cards_are_vcards() {
        let vcard = "BEGIN:VCARD\nVERSION:3.0\nFN:Ana\nTEL:+14155550123\nEND:VCARD";
        let c = ContactCard::new("Ana".into(), vcard.into()).unwrap();
        let rich = RichContent::Contacts(vec![c.clone()]);
        assert_eq!(RichContent::from_json(&rich.to_json()).unwrap(), rich);
        assert_eq!(
            ContactCard::new("Ana".into(), "FN:Ana".into())
                .unwrap_err()
                .field,
            "contacts.vcard"
        );
        assert_eq!(
            ContactCard::new(" ".into(), vcard.into())
                .unwrap_err()
                .field,
            "contacts.displayName"
        );
        assert_eq!(
            ContactCard::list_from_json(&json!([])).unwrap_err().field,
            "contacts"
        );
        assert!(!format!("{c:?}").contains("4155550123"));
        let place = RichContent::Location(Location::new(1.0, 2.0, None, None).unwrap());
        assert_eq!(RichContent::from_json(&place.to_json()).unwrap(), place);
        assert!(RichContent::from_json(&json!({})).is_err());
    }
}
