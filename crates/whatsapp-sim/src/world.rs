//! The simulated world: accounts and the contacts they can look up.
//!
//! It is read from the same JSON shape as the fake adapter's fixtures
//! (`phone`, `pushName`, `contacts` with `picture`, `about`, `lid`, `fail`,
//! `hidden`), plus simulator extensions: `accounts`, a list of extra
//! accounts (`{"phone", "lid", "pushName"}`) that exist before anyone pairs;
//! `receiptDelayMs` (top level, default 20), the delay of contacts'
//! delivery receipts; and per contact `readsAfterMs` (read receipts that
//! long after delivery), `pushName` (`notify` on its messages),
//! `lidOnly` (in groups, known by its LID alone) and `manualGroupReceipts`
//! (no receipts of its own for group messages: the admin API sends them).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

/// Why a world file was refused.
#[derive(Debug, Error)]
pub enum WorldError {
    /// The file could not be read.
    #[error("cannot read world file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON does not describe a world.
    #[error("invalid world: {0}")]
    Invalid(String),
}

/// What a contact action does instead of succeeding (the fixtures' `fail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// The server never answers the IQ, so the client times out.
    Timeout,
    /// The server answers `503 service-unavailable`.
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Hideable {
    Picture,
    About,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PictureFile {
    id: String,
    url: String,
    #[serde(default)]
    direct_path: Option<String>,
    #[serde(default)]
    hash: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AboutFile {
    text: String,
    #[serde(default)]
    set_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ContactFile {
    #[serde(default)]
    picture: Option<PictureFile>,
    #[serde(default)]
    about: Option<AboutFile>,
    #[serde(default)]
    lid: Option<String>,
    #[serde(default)]
    fail: Option<FailMode>,
    #[serde(default)]
    hidden: Vec<Hideable>,
    /// Simulator only: read receipts this long after delivery.
    #[serde(default)]
    reads_after_ms: Option<u64>,
    /// Simulator only: the contact's push name (`notify` on its messages).
    #[serde(default)]
    push_name: Option<String>,
    /// Simulator only: in groups it is known by its LID alone (its number
    /// is never disclosed beside it).
    #[serde(default)]
    lid_only: bool,
    /// Simulator only: sends no receipts of its own for the account's
    /// group messages (the admin API sends them).
    #[serde(default)]
    manual_group_receipts: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccountFile {
    phone: String,
    #[serde(default)]
    lid: Option<String>,
    #[serde(default)]
    push_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WorldFile {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    push_name: Option<String>,
    #[serde(default)]
    contacts: BTreeMap<String, ContactFile>,
    #[serde(default)]
    accounts: Vec<AccountFile>,
    /// Simulator only: delay of contacts' delivery receipts.
    #[serde(default)]
    receipt_delay_ms: Option<u64>,
}

/// A profile picture of a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// The picture id (a timestamp-like string).
    pub id: String,
    /// The CDN URL.
    pub url: String,
    /// The CDN direct path, when known.
    pub direct_path: Option<String>,
    /// The picture hash, when known.
    pub hash: Option<String>,
}

/// An about ("status") text of a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    /// The text.
    pub text: String,
    /// When it was set, in Unix seconds.
    pub set_at: Option<i64>,
}

/// A contact of the world, known by its phone number and its LID.
#[derive(Debug, Clone)]
pub struct Contact {
    /// The phone number (digits only), or the group id for a group.
    pub user: String,
    /// `true` for a group (`…@g.us`): only its picture is served.
    pub is_group: bool,
    /// The contact's LID user part (digits), for a person.
    pub lid: Option<String>,
    /// The profile picture.
    pub picture: Option<Picture>,
    /// The about text.
    pub about: Option<About>,
    /// Whether privacy settings hide the picture from everyone.
    pub picture_hidden: bool,
    /// Whether privacy settings hide the about text from everyone.
    pub about_hidden: bool,
    /// Whether actions on this contact fail on purpose.
    pub fail: Option<FailMode>,
    /// When set, the contact reads what it receives: a read receipt this
    /// many milliseconds after the delivery receipt.
    pub reads_after_ms: Option<u64>,
    /// The contact's push name, sent as `notify` on its messages.
    pub push_name: Option<String>,
    /// In groups it is known by its LID alone (`lidOnly`): its number is
    /// never disclosed beside it.
    pub lid_only: bool,
    /// For the account's group messages it sends no receipts of its own
    /// (`manualGroupReceipts`): `POST /admin/groups/{jid}/receipts` sends
    /// them.
    pub manual_group_receipts: bool,
}

/// An account that exists before anyone pairs.
#[derive(Debug, Clone)]
pub struct AccountSeed {
    /// Its phone number (digits).
    pub phone: String,
    /// Its LID user part, generated when not given.
    pub lid: Option<String>,
    /// Its push name.
    pub push_name: Option<String>,
}

/// The world the simulator serves.
#[derive(Debug, Clone, Default)]
pub struct World {
    accounts: Vec<AccountSeed>,
    /// Delay of contacts' delivery receipts (ms); `None` is the default.
    receipt_delay_ms: Option<u64>,
    /// Keyed by phone number (persons) or group id (groups).
    contacts: HashMap<String, Contact>,
    /// LID user → phone number.
    lids: HashMap<String, String>,
}

/// The default `receiptDelayMs`.
pub const DEFAULT_RECEIPT_DELAY_MS: u64 = 20;

/// The phone number digits of `s` (a leading `+` is allowed), if it is one.
pub(crate) fn phone_digits(s: &str) -> Option<String> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Some(digits.to_owned())
    } else {
        None
    }
}

/// A deterministic 15-digit LID user for a phone number that has none.
pub(crate) fn derived_lid(phone: &str) -> String {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in phone.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}", 100_000_000_000_000 + h % 900_000_000_000_000)
}

fn unix_seconds(rfc3339: &str) -> Result<i64, String> {
    // Only the shape the fixtures use: YYYY-MM-DDTHH:MM:SS(.fff)?(Z|±HH:MM).
    let b = rfc3339.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        rfc3339
            .get(r)
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| format!("bad timestamp '{rfc3339}'"))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return Err(format!("bad timestamp '{rfc3339}'"));
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &rfc3339[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        rest = &frac[end..];
    }
    let offset = if rest == "Z" {
        0
    } else if rest.len() == 6 {
        let sign = if rest.starts_with('-') { -1 } else { 1 };
        let oh = rest[1..3].parse::<i64>().map_err(|e| e.to_string())?;
        let om = rest[4..6].parse::<i64>().map_err(|e| e.to_string())?;
        sign * (oh * 3600 + om * 60)
    } else {
        return Err(format!("bad timestamp '{rfc3339}'"));
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

impl World {
    /// An empty world: no contacts, no accounts until someone pairs.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Reads a world from a JSON file.
    ///
    /// # Errors
    ///
    /// [`WorldError`] when the file cannot be read or is not a world.
    pub fn from_file(path: &Path) -> Result<Self, WorldError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorldError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Reads a world from JSON text.
    ///
    /// # Errors
    ///
    /// [`WorldError::Invalid`] naming the first problem.
    pub fn from_json(text: &str) -> Result<Self, WorldError> {
        let file: WorldFile =
            serde_json::from_str(text).map_err(|e| WorldError::Invalid(e.to_string()))?;
        let mut world = World {
            receipt_delay_ms: file.receipt_delay_ms,
            ..World::default()
        };
        let mut seeds = Vec::new();
        if let Some(phone) = &file.phone {
            seeds.push(AccountFile {
                phone: phone.clone(),
                lid: None,
                push_name: file.push_name.clone(),
            });
        }
        seeds.extend(file.accounts);
        for seed in seeds {
            let phone = phone_digits(&seed.phone)
                .ok_or_else(|| WorldError::Invalid(format!("bad phone '{}'", seed.phone)))?;
            let lid = match seed.lid {
                Some(l) => Some(lid_user(&l).ok_or_else(|| {
                    WorldError::Invalid(format!("account {phone}: bad lid '{l}'"))
                })?),
                None => None,
            };
            world.accounts.push(AccountSeed {
                phone,
                lid,
                push_name: seed.push_name,
            });
        }
        for (key, c) in file.contacts {
            let (user, server) = key
                .split_once('@')
                .ok_or_else(|| WorldError::Invalid(format!("contact '{key}': not a JID")))?;
            let is_group = match server {
                "s.whatsapp.net" | "c.us" => false,
                "g.us" => true,
                _ => {
                    return Err(WorldError::Invalid(format!(
                        "contact '{key}': only …@s.whatsapp.net and …@g.us contacts are supported"
                    )));
                }
            };
            let user = if is_group {
                user.to_owned()
            } else {
                phone_digits(user)
                    .ok_or_else(|| WorldError::Invalid(format!("contact '{key}': bad phone")))?
            };
            let lid = if is_group {
                None
            } else {
                Some(match &c.lid {
                    Some(l) => lid_user(l).ok_or_else(|| {
                        WorldError::Invalid(format!("contact '{key}': lid must be a …@lid JID"))
                    })?,
                    None => derived_lid(&user),
                })
            };
            let about = match c.about {
                Some(a) => Some(About {
                    text: a.text,
                    set_at: match a.set_at {
                        Some(t) => Some(unix_seconds(&t).map_err(|e| {
                            WorldError::Invalid(format!("contact '{key}': about.setAt: {e}"))
                        })?),
                        None => None,
                    },
                }),
                None => None,
            };
            let contact = Contact {
                user: user.clone(),
                is_group,
                lid: lid.clone(),
                picture: c.picture.map(|p| Picture {
                    id: p.id,
                    url: p.url,
                    direct_path: p.direct_path,
                    hash: p.hash,
                }),
                about,
                picture_hidden: c.hidden.contains(&Hideable::Picture),
                about_hidden: c.hidden.contains(&Hideable::About),
                fail: c.fail,
                reads_after_ms: c.reads_after_ms,
                push_name: c.push_name,
                lid_only: c.lid_only,
                manual_group_receipts: c.manual_group_receipts,
            };
            if let Some(lid) = lid {
                world.lids.insert(lid, user.clone());
            }
            world.contacts.insert(user, contact);
        }
        Ok(world)
    }

    /// How long after a message a contact's delivery receipt comes
    /// (`receiptDelayMs`, default 20 ms).
    pub fn receipt_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.receipt_delay_ms.unwrap_or(DEFAULT_RECEIPT_DELAY_MS))
    }

    /// The accounts that exist from the start.
    pub fn accounts(&self) -> &[AccountSeed] {
        &self.accounts
    }

    /// The contact with this phone number (or group id).
    pub fn contact(&self, user: &str) -> Option<&Contact> {
        self.contacts.get(user)
    }

    /// The contact with this LID user part.
    pub fn contact_by_lid(&self, lid: &str) -> Option<&Contact> {
        self.lids.get(lid).and_then(|p| self.contacts.get(p))
    }

    /// Every contact.
    pub fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.contacts.values()
    }
}

/// The user part of a `…@lid` JID (device suffix dropped).
fn lid_user(jid: &str) -> Option<String> {
    let user = jid.strip_suffix("@lid")?;
    let user = user.split(':').next().unwrap_or(user);
    (!user.is_empty() && user.bytes().all(|b| b.is_ascii_digit())).then(|| user.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_fake_adapter_shape() {
        let w = World::from_json(
            r#"{"phone":"15550001111","pushName":"Demo","contacts":{
              "14155550123@s.whatsapp.net":{"picture":{"id":"1","url":"https://x/y.jpg"},
                 "about":{"text":"Hey","setAt":"2024-01-01T00:00:00Z"},"lid":"123456789012345@lid"},
              "14155550155@s.whatsapp.net":{"hidden":["picture"]},
              "14155550100@s.whatsapp.net":{"fail":"timeout"},
              "120363025246125486@g.us":{"picture":{"id":"2","url":"https://x/g.jpg"}}}}"#,
        )
        .unwrap();
        assert_eq!(w.accounts()[0].phone, "15550001111");
        let c = w.contact("14155550123").unwrap();
        assert_eq!(c.about.as_ref().unwrap().set_at, Some(1_704_067_200));
        assert_eq!(
            w.contact_by_lid("123456789012345").unwrap().user,
            "14155550123"
        );
        assert!(w.contact("14155550155").unwrap().picture_hidden);
        assert_eq!(
            w.contact("14155550100").unwrap().fail,
            Some(FailMode::Timeout)
        );
        assert!(w.contact("120363025246125486").unwrap().is_group);
        // A contact without a LID gets a stable one.
        let l = w.contact("14155550155").unwrap().lid.clone().unwrap();
        assert_eq!(l.len(), 15);
        assert_eq!(l, derived_lid("14155550155"));
    }

    #[test]
    fn the_example_world_is_also_a_fake_adapter_fixture() {
        let text = include_str!("../../../examples/world.json");
        let w = World::from_json(text).unwrap();
        assert_eq!(w.accounts().len(), 1);
        assert!(w.contact("14155550123").is_some());
        wagate_whatsapp_port::Fixtures::from_json(text).unwrap();
    }

    #[test]
    fn reads_the_simulator_messaging_fields() {
        let w = World::from_json(
            r#"{"receiptDelayMs": 5, "contacts": {
              "14155550123@s.whatsapp.net": {"readsAfterMs": 200, "pushName": "Ann"},
              "14155550199@s.whatsapp.net": {}}}"#,
        )
        .unwrap();
        assert_eq!(w.receipt_delay(), std::time::Duration::from_millis(5));
        let c = w.contact("14155550123").unwrap();
        assert_eq!(
            (c.reads_after_ms, c.push_name.as_deref()),
            (Some(200), Some("Ann"))
        );
        assert_eq!(w.contact("14155550199").unwrap().reads_after_ms, None);
        assert_eq!(
            World::empty().receipt_delay(),
            std::time::Duration::from_millis(DEFAULT_RECEIPT_DELAY_MS)
        );
        assert!(World::from_json(r#"{"receiptDelayMs": -1}"#).is_err());
    }

    #[test]
    fn refuses_bad_input() {
        assert!(World::from_json("{").is_err());
        assert!(World::from_json(r#"{"phone":"abc"}"#).is_err());
        assert!(World::from_json(r#"{"contacts":{"x@lid":{}}}"#).is_err());
    }
}
