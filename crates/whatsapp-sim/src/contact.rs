//! World contacts as Signal users: each contact is a WhatsApp user with one
//! device (device 0) and its own Signal identity, registration id, signed
//! pre-key and a pool of one-time pre-keys, plus its sessions with the
//! accounts' companion devices.
//!
//! Keys are random (the OS generator via `rand`), made the first time the
//! contact is needed and kept in the state file (`--state`), so a restarted
//! simulator keeps its Signal sessions. Without a state file they live in
//! memory and a restart forgets them (as it forgets the accounts).
//!
//! Every store here is in memory, so the libsignal futures complete on
//! their first poll: they run synchronously, under the state lock, which
//! makes each encrypt or decrypt atomic with the session update.

use std::collections::BTreeMap;

use futures_util::FutureExt as _;
use serde::{Deserialize, Serialize};
use wacore::libsignal::protocol::{
    CiphertextMessage, DeviceId, Direction, GenericSignedPreKey as _, IdentityChange, IdentityKey,
    IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyBundle, PreKeyId, PreKeyRecord,
    PreKeySignalMessage, PreKeyStore, PrivateKey, ProtocolAddress, PublicKey, SessionRecord,
    SessionStore, SignalMessage, SignalProtocolError, SignedPreKeyId, SignedPreKeyRecord,
    SignedPreKeyStore, Timestamp, UsePQRatchet, message_decrypt, message_encrypt,
    process_prekey_bundle,
};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::persist::B64;

type SignalResult<T> = Result<T, SignalProtocolError>;

/// How many one-time pre-keys a contact keeps on offer.
const POOL: usize = 20;

/// A contact's signed pre-key (its private half, and the identity's
/// signature over the public half).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ContactSignedPreKey {
    id: u32,
    private: B64,
    signature: B64,
}

/// One world contact as a Signal user (device 0).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ContactUser {
    /// The identity private key.
    identity_key: B64,
    registration_id: u32,
    signed_pre_key: ContactSignedPreKey,
    /// One-time pre-keys on offer or handed out but not used yet (id →
    /// private key).
    #[serde(default)]
    pre_keys: BTreeMap<u32, B64>,
    /// Ids handed out by the pre-key fetch (still usable, not offered again).
    #[serde(default)]
    handed_out: Vec<u32>,
    next_pre_key: u32,
    /// Sessions with the accounts' devices (`"{phone}.{device}"` → the
    /// serialized `SessionRecord`).
    #[serde(default)]
    sessions: BTreeMap<String, B64>,
    /// Identity keys of those devices, as last seen.
    #[serde(default)]
    identities: BTreeMap<String, B64>,
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn private(bytes: &B64) -> anyhow::Result<PrivateKey> {
    PrivateKey::deserialize(&bytes.0).map_err(err)
}

fn public_of(bytes: &B64) -> anyhow::Result<PublicKey> {
    private(bytes)?.public_key().map_err(err)
}

fn u24(v: u32) -> Vec<u8> {
    v.to_be_bytes()[1..].to_vec()
}

/// Runs an in-memory libsignal future to completion: every store here
/// answers at once, so it never waits.
fn run<T>(fut: impl std::future::Future<Output = SignalResult<T>>) -> anyhow::Result<T> {
    match fut.now_or_never() {
        Some(r) => r.map_err(err),
        None => Err(anyhow::anyhow!("signal operation did not complete")),
    }
}

/// The peer key of an account's device in a contact's maps.
pub(crate) fn peer_key(phone: &str, device: u16) -> String {
    format!("{phone}.{device}")
}

/// A companion's published keys, to start a session with it.
#[derive(Debug, Clone)]
pub(crate) struct CompanionBundle {
    pub registration_id: u32,
    pub device: u16,
    pub identity: Vec<u8>,
    pub signed_pre_key: (u32, Vec<u8>, Vec<u8>),
    pub one_time: Option<(u32, Vec<u8>)>,
}

impl ContactUser {
    /// A new contact identity with a full pre-key pool.
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let mut rng = rand_010::rng();
        let identity = KeyPair::generate(&mut rng);
        let signed = KeyPair::generate(&mut rng);
        let signature = identity
            .private_key
            .calculate_signature(&signed.public_key.serialize(), &mut rng)
            .map_err(err)?;
        let mut user = Self {
            identity_key: B64(identity.private_key.serialize().to_vec()),
            registration_id: (rand_010::random::<u32>() % 16_380) + 1,
            signed_pre_key: ContactSignedPreKey {
                id: 1,
                private: B64(signed.private_key.serialize().to_vec()),
                signature: B64(signature.to_vec()),
            },
            pre_keys: BTreeMap::new(),
            handed_out: Vec::new(),
            next_pre_key: 1,
            sessions: BTreeMap::new(),
            identities: BTreeMap::new(),
        };
        user.refill();
        Ok(user)
    }

    /// Checks the keys of a restored contact.
    pub(crate) fn validate(&self) -> Result<(), String> {
        private(&self.identity_key).map_err(|e| format!("identityKey: {e}"))?;
        private(&self.signed_pre_key.private).map_err(|e| format!("signedPreKey: {e}"))?;
        for (id, k) in &self.pre_keys {
            private(k).map_err(|e| format!("preKey {id}: {e}"))?;
        }
        for (peer, s) in &self.sessions {
            SessionRecord::deserialize(&s.0).map_err(|e| format!("session {peer}: {e}"))?;
        }
        Ok(())
    }

    fn offered(&self) -> usize {
        self.pre_keys.len().saturating_sub(self.handed_out.len())
    }

    /// Tops the pool of one-time pre-keys up (the contact's phone uploads
    /// more when the server runs low).
    fn refill(&mut self) {
        let mut rng = rand_010::rng();
        while self.offered() < POOL {
            let id = self.next_pre_key;
            self.next_pre_key = (self.next_pre_key % 0x00ff_ffff) + 1;
            let key = KeyPair::generate(&mut rng);
            self.pre_keys
                .insert(id, B64(key.private_key.serialize().to_vec()));
        }
    }

    /// The contact's pre-key bundle as the `encrypt get key` IQ returns it
    /// for `jid`; hands out one one-time pre-key.
    pub(crate) fn bundle_node(&mut self, jid: &str) -> anyhow::Result<Node> {
        let identity = public_of(&self.identity_key)?;
        let signed = public_of(&self.signed_pre_key.private)?;
        let mut children = vec![
            NodeBuilder::new("registration")
                .bytes(self.registration_id.to_be_bytes().to_vec())
                .build(),
            NodeBuilder::new("type").bytes(vec![5]).build(),
            NodeBuilder::new("identity")
                .bytes(identity.public_key_bytes().to_vec())
                .build(),
            NodeBuilder::new("skey")
                .children([
                    NodeBuilder::new("id")
                        .bytes(u24(self.signed_pre_key.id))
                        .build(),
                    NodeBuilder::new("value")
                        .bytes(signed.public_key_bytes().to_vec())
                        .build(),
                    NodeBuilder::new("signature")
                        .bytes(self.signed_pre_key.signature.0.clone())
                        .build(),
                ])
                .build(),
        ];
        let next = self
            .pre_keys
            .keys()
            .copied()
            .find(|id| !self.handed_out.contains(id));
        if let Some(id) = next
            && let Some(k) = self.pre_keys.get(&id)
        {
            let public = public_of(k)?;
            children.push(
                NodeBuilder::new("key")
                    .children([
                        NodeBuilder::new("id").bytes(u24(id)).build(),
                        NodeBuilder::new("value")
                            .bytes(public.public_key_bytes().to_vec())
                            .build(),
                    ])
                    .build(),
            );
            self.handed_out.push(id);
        }
        self.refill();
        Ok(NodeBuilder::new("user")
            .attr("jid", jid.to_owned())
            .children(children)
            .build())
    }

    /// Whether the contact has a session with this account device.
    pub(crate) fn has_session(&self, peer: &str) -> bool {
        self.sessions.contains_key(peer)
    }

    fn identity_pair(&self) -> anyhow::Result<IdentityKeyPair> {
        let private = private(&self.identity_key)?;
        let public = private.public_key().map_err(err)?;
        Ok(IdentityKeyPair::new(IdentityKey::new(public), private))
    }

    fn signed_record(&self) -> anyhow::Result<SignedPreKeyRecord> {
        let private = private(&self.signed_pre_key.private)?;
        let pair = KeyPair::try_from(private).map_err(err)?;
        Ok(SignedPreKeyRecord::new(
            SignedPreKeyId::from(self.signed_pre_key.id),
            Timestamp::from_epoch_millis(0),
            &pair,
            &self.signed_pre_key.signature.0,
        ))
    }

    /// Decrypts what an account's device (`peer`, see [`peer_key`]) sent
    /// this contact: `kind` is the `<enc type>` (`pkmsg` or `msg`). Returns
    /// the padded plaintext; the session is updated.
    pub(crate) fn decrypt(
        &mut self,
        peer: &str,
        kind: &str,
        ciphertext: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        let message = match kind {
            "pkmsg" => CiphertextMessage::PreKeySignalMessage(
                PreKeySignalMessage::try_from(ciphertext).map_err(err)?,
            ),
            "msg" => {
                CiphertextMessage::SignalMessage(SignalMessage::try_from(ciphertext).map_err(err)?)
            }
            other => anyhow::bail!("unsupported <enc type=\"{other}\">"),
        };
        let address = address(peer)?;
        let signed = Signed(self.signed_record()?);
        let mut identities = Identities {
            pair: self.identity_pair()?,
            registration_id: self.registration_id,
            known: &mut self.identities,
        };
        let mut sessions = Sessions(&mut self.sessions);
        let mut pre_keys = PreKeys(&mut self.pre_keys);
        let mut rng = rand_010::rng();
        let result = run(message_decrypt(
            &message,
            &address,
            &mut sessions,
            &mut identities,
            &mut pre_keys,
            &signed,
            &mut rng,
            UsePQRatchet::No,
        ))?;
        if let Some(id) = result.consumed_prekey_id {
            let id = u32::from(id);
            self.pre_keys.remove(&id);
            self.handed_out.retain(|h| *h != id);
            self.refill();
        }
        Ok(result.plaintext)
    }

    /// Encrypts `plaintext` (padded) from this contact to an account's
    /// device, starting a session from `bundle` when there is none. Returns
    /// the `<enc type>` and the ciphertext.
    pub(crate) fn encrypt(
        &mut self,
        peer: &str,
        bundle: Option<CompanionBundle>,
        plaintext: &[u8],
    ) -> anyhow::Result<(&'static str, Vec<u8>)> {
        let address = address(peer)?;
        let mut identities = Identities {
            pair: self.identity_pair()?,
            registration_id: self.registration_id,
            known: &mut self.identities,
        };
        let mut sessions = Sessions(&mut self.sessions);
        if !sessions.0.contains_key(peer) {
            let Some(b) = bundle else {
                anyhow::bail!("no session with {peer} and no bundle to start one");
            };
            let pk = |bytes: &[u8]| PublicKey::from_djb_public_key_bytes(bytes).map_err(err);
            let one_time = match &b.one_time {
                Some((id, public)) => Some((PreKeyId::from(*id), pk(public)?)),
                None => None,
            };
            let bundle = PreKeyBundle::new(
                b.registration_id,
                DeviceId::from(u32::from(b.device)),
                one_time,
                SignedPreKeyId::from(b.signed_pre_key.0),
                pk(&b.signed_pre_key.1)?,
                b.signed_pre_key.2.clone(),
                IdentityKey::new(pk(&b.identity)?),
            )
            .map_err(err)?;
            let mut rng = rand_010::rng();
            run(process_prekey_bundle(
                &address,
                &mut sessions,
                &mut identities,
                &bundle,
                &mut rng,
                UsePQRatchet::No,
            ))?;
        }
        let message = run(message_encrypt(
            plaintext,
            &address,
            &mut sessions,
            &mut identities,
        ))?;
        let kind = match message {
            CiphertextMessage::PreKeySignalMessage(_) => "pkmsg",
            _ => "msg",
        };
        Ok((kind, message.serialize().to_vec()))
    }
}

fn address(peer: &str) -> anyhow::Result<ProtocolAddress> {
    let (name, device) = peer
        .rsplit_once('.')
        .ok_or_else(|| anyhow::anyhow!("bad peer key {peer}"))?;
    let device: u32 = device.parse().map_err(err)?;
    Ok(ProtocolAddress::new(name, DeviceId::from(device)))
}

fn key_of(address: &ProtocolAddress) -> String {
    format!("{}.{}", address.name(), u32::from(address.device_id()))
}

struct Identities<'a> {
    pair: IdentityKeyPair,
    registration_id: u32,
    known: &'a mut BTreeMap<String, B64>,
}

#[async_trait::async_trait]
impl IdentityKeyStore for Identities<'_> {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.pair.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let bytes = identity.serialize().to_vec();
        let old = self.known.insert(key_of(address), B64(bytes.clone()));
        Ok(match old {
            Some(o) if o.0 != bytes => IdentityChange::ReplacedExisting,
            _ => IdentityChange::NewOrUnchanged,
        })
    }

    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        // A simulated person trusts a companion's new identity (a re-link).
        Ok(true)
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        match self.known.get(&key_of(address)) {
            Some(b) => IdentityKey::decode(&b.0).map(Some),
            None => Ok(None),
        }
    }
}

struct Sessions<'a>(&'a mut BTreeMap<String, B64>);

#[async_trait::async_trait]
impl SessionStore for Sessions<'_> {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        match self.0.get(&key_of(address)) {
            Some(b) => {
                let mut record = SessionRecord::deserialize(&b.0)?;
                // Every record is saved (state lock, then the state file
                // before the ciphertext goes out) right after each use, so
                // counters never need leasing ahead.
                record.waive_counter_lease();
                Ok(Some(record))
            }
            None => Ok(None),
        }
    }

    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.0.contains_key(&key_of(address)))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SignalResult<()> {
        self.0.insert(key_of(address), B64(record.serialize()?));
        Ok(())
    }
}

struct PreKeys<'a>(&'a mut BTreeMap<u32, B64>);

#[async_trait::async_trait]
impl PreKeyStore for PreKeys<'_> {
    async fn get_pre_key(&self, prekey_id: PreKeyId) -> SignalResult<PreKeyRecord> {
        let id = u32::from(prekey_id);
        let bytes = self
            .0
            .get(&id)
            .ok_or(SignalProtocolError::InvalidPreKeyId)?;
        let private = PrivateKey::deserialize(&bytes.0)?;
        let pair = KeyPair::try_from(private)?;
        Ok(PreKeyRecord::new(prekey_id, &pair))
    }

    async fn save_pre_key(
        &mut self,
        prekey_id: PreKeyId,
        record: &PreKeyRecord,
    ) -> SignalResult<()> {
        let private = record.private_key()?;
        self.0
            .insert(u32::from(prekey_id), B64(private.serialize().to_vec()));
        Ok(())
    }

    async fn remove_pre_key(&mut self, prekey_id: PreKeyId) -> SignalResult<()> {
        self.0.remove(&u32::from(prekey_id));
        Ok(())
    }
}

struct Signed(SignedPreKeyRecord);

#[async_trait::async_trait]
impl SignedPreKeyStore for Signed {
    async fn get_signed_pre_key(
        &self,
        signed_prekey_id: SignedPreKeyId,
    ) -> SignalResult<SignedPreKeyRecord> {
        if self.0.id()? == signed_prekey_id {
            Ok(self.0.clone())
        } else {
            Err(SignalProtocolError::InvalidSignedPreKeyId)
        }
    }

    async fn save_signed_pre_key(
        &mut self,
        _signed_prekey_id: SignedPreKeyId,
        _record: &SignedPreKeyRecord,
    ) -> SignalResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Two contacts talk to each other through the same code paths an
    /// account device and a contact use: a pkmsg then msgs both ways.
    #[test]
    fn sessions_round_trip_and_survive_serialization() {
        let mut alice = ContactUser::generate().unwrap();
        let mut bob = ContactUser::generate().unwrap();
        let bob_public = |b: &ContactUser| CompanionBundle {
            registration_id: b.registration_id,
            device: 0,
            identity: public_of(&b.identity_key)
                .unwrap()
                .public_key_bytes()
                .to_vec(),
            signed_pre_key: (
                b.signed_pre_key.id,
                public_of(&b.signed_pre_key.private)
                    .unwrap()
                    .public_key_bytes()
                    .to_vec(),
                b.signed_pre_key.signature.0.clone(),
            ),
            one_time: b
                .pre_keys
                .iter()
                .next()
                .map(|(id, k)| (*id, public_of(k).unwrap().public_key_bytes().to_vec())),
        };
        let bundle = bob_public(&bob);
        let used = bundle.one_time.as_ref().map(|(id, _)| *id).unwrap();
        let (kind, ct) = alice.encrypt("bob.0", Some(bundle), b"hello").unwrap();
        assert_eq!(kind, "pkmsg");
        assert_eq!(bob.decrypt("alice.0", kind, &ct).unwrap(), b"hello");
        assert!(!bob.pre_keys.contains_key(&used), "one-time key used up");
        assert_eq!(bob.offered(), POOL, "pool refilled");
        // Through JSON, as the state file keeps them.
        let mut bob: ContactUser =
            serde_json::from_str(&serde_json::to_string(&bob).unwrap()).unwrap();
        bob.validate().unwrap();
        let (kind, ct) = bob.encrypt("alice.0", None, b"hi back").unwrap();
        assert_eq!(kind, "msg");
        assert_eq!(alice.decrypt("bob.0", kind, &ct).unwrap(), b"hi back");
        let (kind, ct) = alice.encrypt("bob.0", None, b"again").unwrap();
        assert_eq!(kind, "msg");
        assert_eq!(bob.decrypt("alice.0", kind, &ct).unwrap(), b"again");
        // A tampered message fails instead of panicking.
        let mut bad = ct.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert!(bob.decrypt("alice.0", "msg", &bad).is_err());
        assert!(bob.decrypt("alice.0", "skmsg", &ct).is_err());
        assert!(alice.encrypt("carol.0", None, b"x").is_err());
    }

    #[test]
    fn bundle_nodes_hand_out_each_one_time_key_once() {
        let mut c = ContactUser::generate().unwrap();
        let id_of = |n: &Node| {
            let key = n.get_optional_child("key").unwrap();
            match &key.get_optional_child("id").unwrap().content {
                Some(wacore_binary::NodeContent::Bytes(b)) => b.clone(),
                _ => panic!("id without bytes"),
            }
        };
        let a = c.bundle_node("1@s.whatsapp.net").unwrap();
        let b = c.bundle_node("1@s.whatsapp.net").unwrap();
        assert_ne!(id_of(&a), id_of(&b));
        assert_eq!(c.offered(), POOL);
    }
}
