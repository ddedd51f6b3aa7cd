//! The fake adapter: a deterministic in-memory WhatsApp.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::{Duration, OffsetDateTime};
use wagate_domain::{
    About, Absence, BlocklistEntry, Clock, Jid, JidKind, PairingCode, PhoneNumber, PictureType,
    ProfilePicture, QrCode, SessionId,
};

use crate::{SessionEvent, SessionEventKind, SessionEventSink, WhatsAppError, WhatsAppPort};

/// How long a fake QR code is valid (WhatsApp's first code lives 60 s).
const QR_TTL: Duration = Duration::seconds(60);
/// WhatsApp's pairing-code alphabet: no 0, O, I or U.
const PAIRING_ALPHABET: &[u8; 32] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";

/// The built-in world used when no fixtures file is configured (the same as
/// `examples/world.json`, which the simulator serves for the offline demo).
pub const BUILTIN_WORLD: &str = r#"{
  "phone": "15550001111",
  "pushName": "Wagate Demo",
  "contacts": {
    "14155550123@s.whatsapp.net": {
      "picture": { "id": "1712345678", "url": "https://pps.whatsapp.net/v/t61/abc.jpg",
                   "directPath": "/v/t61/abc.jpg", "hash": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=" },
      "about": { "text": "Hey there!", "setAt": "2024-01-01T00:00:00Z" },
      "lid": "123456789012345@lid"
    },
    "14155550199@s.whatsapp.net": {},
    "14155550155@s.whatsapp.net": {
      "picture": { "id": "1700000000", "url": "https://pps.whatsapp.net/v/t61/hidden.jpg" },
      "about": { "text": "private", "setAt": null },
      "hidden": ["picture", "about"]
    },
    "14155550100@s.whatsapp.net": { "fail": "timeout" },
    "14155550101@s.whatsapp.net": { "fail": "unavailable" },
    "120363025246125486@g.us": {
      "picture": { "id": "1699999999", "url": "https://pps.whatsapp.net/v/t61/group.jpg" }
    }
  }
}"#;

/// Why a fixtures file was refused.
#[derive(Debug, Error)]
pub enum FixturesError {
    /// The file could not be read.
    #[error("cannot read fixtures file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON does not describe a world (wrong shape, bad JID, bad phone).
    #[error("invalid fixtures: {0}")]
    Invalid(String),
}

/// What a live action on a contact does instead of succeeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Fail with [`WhatsAppError::Timeout`].
    Timeout,
    /// Fail with [`WhatsAppError::Unavailable`].
    Unavailable,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PictureFixture {
    id: String,
    url: String,
    #[serde(default)]
    direct_path: Option<String>,
    #[serde(default)]
    hash: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AboutFixture {
    text: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    set_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Hideable {
    Picture,
    About,
}

/// One contact of the fake world.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactFixture {
    #[serde(default)]
    picture: Option<PictureFixture>,
    #[serde(default)]
    about: Option<AboutFixture>,
    #[serde(default)]
    lid: Option<Jid>,
    #[serde(default)]
    fail: Option<FailMode>,
    /// What the contact's privacy settings hide from us (an extension of the
    /// documented format: `["picture", "about"]`).
    #[serde(default)]
    hidden: Vec<Hideable>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FixturesFile {
    phone: String,
    #[serde(default)]
    push_name: Option<String>,
    #[serde(default)]
    contacts: BTreeMap<String, ContactFixture>,
}

/// The fake world: the phone that links every session, and its contacts.
#[derive(Debug, Clone)]
pub struct Fixtures {
    phone: PhoneNumber,
    push_name: Option<String>,
    contacts: HashMap<Jid, ContactFixture>,
    /// LID → phone-number JID, from the contacts' `lid`.
    lids: HashMap<Jid, Jid>,
}

impl Fixtures {
    /// The built-in world (see docs/configuration.md).
    pub fn builtin() -> Self {
        // The built-in JSON is a constant covered by a unit test.
        Self::from_json(BUILTIN_WORLD).unwrap_or_else(|e| unreachable!("built-in fixtures: {e}"))
    }

    /// Reads a world from a JSON file in the documented format.
    ///
    /// # Errors
    ///
    /// [`FixturesError`] when the file cannot be read or is not a valid world.
    pub fn from_file(path: &Path) -> Result<Self, FixturesError> {
        let text = std::fs::read_to_string(path).map_err(|source| FixturesError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Reads a world from JSON text.
    ///
    /// # Errors
    ///
    /// [`FixturesError::Invalid`] naming the first problem.
    pub fn from_json(text: &str) -> Result<Self, FixturesError> {
        let file: FixturesFile =
            serde_json::from_str(text).map_err(|e| FixturesError::Invalid(e.to_string()))?;
        let phone = PhoneNumber::parse(&file.phone)
            .map_err(|e| FixturesError::Invalid(format!("phone: {}", e.message)))?;
        let mut contacts = HashMap::new();
        let mut lids = HashMap::new();
        for (key, contact) in file.contacts {
            let jid = Jid::parse(&key)
                .map_err(|e| FixturesError::Invalid(format!("contact '{key}': {}", e.message)))?;
            if let Some(lid) = &contact.lid {
                if lid.kind() != JidKind::Lid || jid.kind() != JidKind::User {
                    return Err(FixturesError::Invalid(format!(
                        "contact '{key}': lid must be a …@lid JID of a phone-number contact"
                    )));
                }
                lids.insert(lid.clone(), jid.clone());
            }
            contacts.insert(jid, contact);
        }
        Ok(Self {
            phone,
            push_name: file.push_name,
            contacts,
            lids,
        })
    }

    /// The contact a JID names, by phone-number JID or by LID.
    fn contact(&self, jid: &Jid) -> Option<&ContactFixture> {
        self.contacts
            .get(jid)
            .or_else(|| self.lids.get(jid).and_then(|p| self.contacts.get(p)))
    }

    /// The (LID, phone) pair a person is known by; either may be unknown.
    fn identities(&self, jid: &Jid) -> (Option<Jid>, Option<Jid>) {
        match jid.kind() {
            JidKind::Lid => (Some(jid.clone()), self.lids.get(jid).cloned()),
            _ => (
                self.contacts.get(jid).and_then(|c| c.lid.clone()),
                Some(jid.clone()),
            ),
        }
    }
}

#[derive(Debug, Default)]
struct FakeSession {
    linked_as: Option<Jid>,
    connected: bool,
    qr: Option<QrCode>,
    qr_count: u32,
    /// Keyed by the JID WhatsApp would list: the LID when known.
    blocked: BTreeMap<String, BlocklistEntry>,
}

/// A deterministic in-memory WhatsApp implementing [`WhatsAppPort`].
///
/// `connect` on an unlinked session shows one QR code (a `Pairing` event);
/// the fake phone scans it as soon as it is read through
/// [`WhatsAppPort::qr`] (or links by a pairing code as soon as one is
/// asked for), and the session is `Connected` as the fixtures' phone. A
/// session connected with `linked_as` is online at once. Block state is kept
/// per session. Every event is published before the call that caused it
/// returns, so tests never wait.
#[derive(Debug)]
pub struct FakeWhatsApp {
    world: Fixtures,
    sessions: Mutex<HashMap<SessionId, FakeSession>>,
    events: Arc<dyn SessionEventSink>,
    clock: Arc<dyn Clock>,
}

impl FakeWhatsApp {
    /// A fake over `world`, reporting to `events`, telling time by `clock`.
    pub fn new(world: Fixtures, events: Arc<dyn SessionEventSink>, clock: Arc<dyn Clock>) -> Self {
        Self {
            world,
            sessions: Mutex::new(HashMap::new()),
            events,
            clock,
        }
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<SessionId, FakeSession>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every update is a single insert or field write), so keep going.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn publish(&self, session: &SessionId, kind: SessionEventKind) {
        self.events
            .publish(SessionEvent {
                session: *session,
                kind,
            })
            .await;
    }

    /// Links `session` as `jid` and reports it connected.
    async fn link(&self, session: &SessionId, jid: Jid) {
        {
            let mut sessions = self.sessions();
            let s = sessions.entry(*session).or_default();
            s.linked_as = Some(jid.clone());
            s.connected = true;
            s.qr = None;
        }
        let push_name = self.world.push_name.clone();
        self.publish(session, SessionEventKind::Connected { jid, push_name })
            .await;
    }

    /// Checks the session is online and the contact does not fail on purpose.
    fn live(&self, session: &SessionId, jid: Option<&Jid>) -> Result<(), WhatsAppError> {
        if !self.sessions().get(session).is_some_and(|s| s.connected) {
            return Err(WhatsAppError::NotConnected);
        }
        match jid.and_then(|j| self.world.contact(j)).and_then(|c| c.fail) {
            Some(FailMode::Timeout) => Err(WhatsAppError::Timeout),
            Some(FailMode::Unavailable) => Err(WhatsAppError::Unavailable(
                "the fake contact is set to fail".into(),
            )),
            None => Ok(()),
        }
    }

    fn person(jid: &Jid) -> Result<(), WhatsAppError> {
        if jid.kind().is_person() {
            Ok(())
        } else {
            Err(WhatsAppError::InvalidTarget(
                "must be a user (phone number or LID) JID".into(),
            ))
        }
    }
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl WhatsAppPort for FakeWhatsApp {
    async fn connect(
        &self,
        session: &SessionId,
        linked_as: Option<Jid>,
    ) -> Result<(), WhatsAppError> {
        let now = self.clock.now();
        let mut shown = None;
        let event = {
            let mut sessions = self.sessions();
            let s = sessions.entry(*session).or_default();
            if let (true, Some(jid)) = (s.connected, &s.linked_as) {
                // Already online: tell the state again (the gateway may have
                // missed the event, e.g. its write failed).
                SessionEventKind::Connected {
                    jid: jid.clone(),
                    push_name: self.world.push_name.clone(),
                }
            } else if s.qr.is_some() {
                SessionEventKind::Pairing
            } else {
                match linked_as.or_else(|| s.linked_as.clone()) {
                    Some(jid) => {
                        s.linked_as = Some(jid.clone());
                        s.connected = true;
                        SessionEventKind::Connected {
                            jid,
                            push_name: self.world.push_name.clone(),
                        }
                    }
                    None => {
                        s.qr_count += 1;
                        let id = session.to_string();
                        let seed = digest(&[id.as_bytes(), &s.qr_count.to_be_bytes()]);
                        let qr = QrCode {
                            code: format!(
                                "2@{},{},wagate-fake",
                                hex(&seed[..16]),
                                hex(&seed[16..])
                            ),
                            expires_at: now + QR_TTL,
                        };
                        s.qr = Some(qr.clone());
                        shown = Some(qr);
                        SessionEventKind::Pairing
                    }
                }
            }
        };
        self.publish(session, event).await;
        if let Some(qr) = shown {
            self.publish(session, SessionEventKind::QrShown(qr)).await;
        }
        Ok(())
    }

    async fn disconnect(&self, session: &SessionId) -> Result<(), WhatsAppError> {
        if let Some(s) = self.sessions().get_mut(session) {
            s.connected = false;
            s.qr = None;
        }
        Ok(())
    }

    async fn logout(&self, session: &SessionId) -> Result<(), WhatsAppError> {
        if let Some(s) = self.sessions().get_mut(session) {
            s.connected = false;
            s.qr = None;
            s.linked_as = None;
        }
        Ok(())
    }

    async fn remove(&self, session: &SessionId) -> Result<(), WhatsAppError> {
        self.sessions().remove(session);
        Ok(())
    }

    async fn qr(&self, session: &SessionId) -> Result<QrCode, WhatsAppError> {
        let qr = self.sessions().get(session).and_then(|s| s.qr.clone());
        let qr = qr.ok_or(WhatsAppError::NotPairing)?;
        // The fake phone scans the code the moment it is shown.
        self.link(session, self.world.phone.jid()).await;
        Ok(qr)
    }

    async fn pairing_code(
        &self,
        session: &SessionId,
        phone: &PhoneNumber,
    ) -> Result<PairingCode, WhatsAppError> {
        if self.sessions().get(session).is_none_or(|s| s.qr.is_none()) {
            return Err(WhatsAppError::NotPairing);
        }
        let id = session.to_string();
        let seed = digest(&[id.as_bytes(), phone.digits().as_bytes()]);
        let mut code = String::with_capacity(9);
        for (i, b) in seed.iter().take(8).enumerate() {
            if i == 4 {
                code.push('-');
            }
            code.push(char::from(PAIRING_ALPHABET[usize::from(b & 31)]));
        }
        // The fake phone types the code at once and links as that number.
        self.link(session, phone.jid()).await;
        Ok(PairingCode::new(code))
    }

    async fn profile_picture(
        &self,
        session: &SessionId,
        jid: &Jid,
        kind: PictureType,
    ) -> Result<ProfilePicture, WhatsAppError> {
        self.live(session, Some(jid))?;
        let contact = self
            .world
            .contact(jid)
            .ok_or(WhatsAppError::NotFound(Some(Absence::NotSet)))?;
        if contact.hidden.contains(&Hideable::Picture) {
            return Err(WhatsAppError::NotFound(Some(Absence::Hidden)));
        }
        let p = contact
            .picture
            .as_ref()
            .ok_or(WhatsAppError::NotFound(Some(Absence::NotSet)))?;
        let url = match kind {
            PictureType::Image => p.url.clone(),
            PictureType::Preview => format!("{}?type=preview", p.url),
        };
        Ok(ProfilePicture {
            id: p.id.clone(),
            url,
            kind,
            direct_path: p.direct_path.clone(),
            hash: p.hash.clone(),
        })
    }

    async fn about(&self, session: &SessionId, jid: &Jid) -> Result<About, WhatsAppError> {
        Self::person(jid)?;
        self.live(session, Some(jid))?;
        let contact = self
            .world
            .contact(jid)
            .ok_or(WhatsAppError::NotFound(Some(Absence::NotSet)))?;
        if contact.hidden.contains(&Hideable::About) {
            return Err(WhatsAppError::NotFound(Some(Absence::Hidden)));
        }
        let a = contact
            .about
            .as_ref()
            .ok_or(WhatsAppError::NotFound(Some(Absence::NotSet)))?;
        Ok(About {
            text: a.text.clone(),
            set_at: a.set_at,
        })
    }

    async fn block(&self, session: &SessionId, jid: &Jid) -> Result<(), WhatsAppError> {
        Self::person(jid)?;
        self.live(session, Some(jid))?;
        let (lid, phone) = self.world.identities(jid);
        let listed = lid
            .clone()
            .or_else(|| phone.clone())
            .unwrap_or_else(|| jid.clone());
        let mut sessions = self.sessions();
        let s = sessions.entry(*session).or_default();
        s.blocked
            .entry(listed.to_string())
            .or_insert(BlocklistEntry {
                jid: listed,
                phone_jid: phone,
            });
        Ok(())
    }

    async fn unblock(&self, session: &SessionId, jid: &Jid) -> Result<(), WhatsAppError> {
        Self::person(jid)?;
        self.live(session, Some(jid))?;
        let (lid, phone) = self.world.identities(jid);
        let listed = lid.or(phone).unwrap_or_else(|| jid.clone());
        if let Some(s) = self.sessions().get_mut(session) {
            s.blocked.remove(&listed.to_string());
        }
        Ok(())
    }

    async fn blocklist(&self, session: &SessionId) -> Result<Vec<BlocklistEntry>, WhatsAppError> {
        self.live(session, None)?;
        Ok(self
            .sessions()
            .get(session)
            .map(|s| s.blocked.values().cloned().collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordingSink;
    use wagate_domain::SystemClock;

    fn sid(n: u32) -> SessionId {
        SessionId::parse(&format!("sess_{n:026}")).unwrap()
    }

    fn fake() -> (FakeWhatsApp, Arc<RecordingSink>) {
        let sink = Arc::new(RecordingSink::default());
        (
            FakeWhatsApp::new(Fixtures::builtin(), sink.clone(), Arc::new(SystemClock)),
            sink,
        )
    }

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[tokio::test]
    async fn pairing_by_qr_links_as_the_fixture_phone() {
        let (fake, sink) = fake();
        let s = sid(1);
        assert_eq!(fake.qr(&s).await, Err(WhatsAppError::NotPairing));
        fake.connect(&s, None).await.unwrap();
        assert_eq!(sink.events()[0].kind, SessionEventKind::Pairing);
        let qr = fake.qr(&s).await.unwrap();
        assert!(qr.code.starts_with("2@"));
        // The code shown is the one the event carried (for `session.qr`).
        assert_eq!(sink.events()[1].kind, SessionEventKind::QrShown(qr.clone()));
        assert_eq!(
            sink.events()[2].kind,
            SessionEventKind::Connected {
                jid: jid("15550001111@s.whatsapp.net"),
                push_name: Some("Wagate Demo".into())
            }
        );
        // Linked now: the QR is gone and a disconnect/connect needs none.
        assert_eq!(fake.qr(&s).await, Err(WhatsAppError::NotPairing));
        fake.disconnect(&s).await.unwrap();
        fake.connect(&s, None).await.unwrap();
        assert!(matches!(
            sink.events()[3].kind,
            SessionEventKind::Connected { .. }
        ));
    }

    #[tokio::test]
    async fn pairing_code_links_as_the_given_phone() {
        let (fake, sink) = fake();
        let s = sid(2);
        let phone = PhoneNumber::parse("+44 20 7946 0958").unwrap();
        assert_eq!(
            fake.pairing_code(&s, &phone).await,
            Err(WhatsAppError::NotPairing)
        );
        fake.connect(&s, None).await.unwrap();
        let code = fake.pairing_code(&s, &phone).await.unwrap();
        assert_eq!(code.as_str().len(), 9);
        assert_eq!(&code.as_str()[4..5], "-");
        assert!(
            matches!(&sink.events()[2].kind, SessionEventKind::Connected { jid, .. } if jid.user_part() == "442079460958")
        );
    }

    #[tokio::test]
    async fn contact_calls_follow_the_world() {
        let (fake, _) = fake();
        let s = sid(3);
        let alice = jid("14155550123@s.whatsapp.net");
        assert_eq!(
            fake.about(&s, &alice).await,
            Err(WhatsAppError::NotConnected)
        );
        fake.connect(&s, Some(jid("15550001111@s.whatsapp.net")))
            .await
            .unwrap();

        let p = fake
            .profile_picture(&s, &alice, PictureType::Image)
            .await
            .unwrap();
        assert_eq!(p.id, "1712345678");
        let by_lid = fake
            .profile_picture(&s, &jid("123456789012345@lid"), PictureType::Preview)
            .await
            .unwrap();
        assert!(by_lid.url.ends_with("?type=preview"));
        assert_eq!(fake.about(&s, &alice).await.unwrap().text, "Hey there!");

        let nobody = jid("14155550199@s.whatsapp.net");
        assert_eq!(
            fake.profile_picture(&s, &nobody, PictureType::Image).await,
            Err(WhatsAppError::NotFound(Some(Absence::NotSet)))
        );
        let hidden = jid("14155550155@s.whatsapp.net");
        assert_eq!(
            fake.profile_picture(&s, &hidden, PictureType::Image).await,
            Err(WhatsAppError::NotFound(Some(Absence::Hidden)))
        );
        assert_eq!(
            fake.about(&s, &hidden).await,
            Err(WhatsAppError::NotFound(Some(Absence::Hidden)))
        );
        assert_eq!(
            fake.about(&s, &jid("14155550100@s.whatsapp.net")).await,
            Err(WhatsAppError::Timeout)
        );
        assert!(matches!(
            fake.block(&s, &jid("14155550101@s.whatsapp.net")).await,
            Err(WhatsAppError::Unavailable(_))
        ));
        let group = jid("120363025246125486@g.us");
        assert!(
            fake.profile_picture(&s, &group, PictureType::Image)
                .await
                .is_ok()
        );
        assert!(matches!(
            fake.block(&s, &group).await,
            Err(WhatsAppError::InvalidTarget(_))
        ));
    }

    #[tokio::test]
    async fn block_is_idempotent_and_lists_lid_with_phone() {
        let (fake, _) = fake();
        let s = sid(4);
        fake.connect(&s, Some(jid("15550001111@s.whatsapp.net")))
            .await
            .unwrap();
        let alice = jid("14155550123@s.whatsapp.net");
        fake.block(&s, &alice).await.unwrap();
        fake.block(&s, &jid("123456789012345@lid")).await.unwrap();
        let list = fake.blocklist(&s).await.unwrap();
        assert_eq!(
            list,
            vec![BlocklistEntry {
                jid: jid("123456789012345@lid"),
                phone_jid: Some(alice.clone())
            }]
        );
        fake.unblock(&s, &alice).await.unwrap();
        fake.unblock(&s, &alice).await.unwrap();
        assert!(fake.blocklist(&s).await.unwrap().is_empty());
        // Another session has its own blocklist.
        let other = sid(5);
        fake.connect(&other, Some(jid("15550001111@s.whatsapp.net")))
            .await
            .unwrap();
        fake.block(&s, &alice).await.unwrap();
        assert!(fake.blocklist(&other).await.unwrap().is_empty());
    }

    #[test]
    fn fixtures_are_checked() {
        assert!(Fixtures::from_json(r#"{"phone":"15550001111"}"#).is_ok());
        for bad in [
            "{}",
            r#"{"phone":"abc"}"#,
            r#"{"phone":"15550001111","contacts":{"nope":{}}}"#,
            r#"{"phone":"15550001111","contacts":{"14155550123@s.whatsapp.net":{"fail":"explode"}}}"#,
            r#"{"phone":"15550001111","contacts":{"14155550123@s.whatsapp.net":{"lid":"14155550123@s.whatsapp.net"}}}"#,
            r#"{"phone":"15550001111","extra":1}"#,
        ] {
            assert!(
                matches!(Fixtures::from_json(bad), Err(FixturesError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
