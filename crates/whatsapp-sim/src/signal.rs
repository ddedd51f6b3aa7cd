//! The phone's one Signal message to a new companion: the app-state sync key
//! share a real phone sends right after linking. With the key in hand the
//! companion does not wait (10 s) for it before its first app-state sync.

use std::collections::HashMap;

use buffa::Message as _;
use wacore::libsignal::protocol::{
    CiphertextMessage, DeviceId, Direction, IdentityChange, IdentityKey, IdentityKeyPair,
    IdentityKeyStore, KeyPair, PreKeyBundle, PrivateKey, ProtocolAddress, PublicKey, SessionRecord,
    SessionStore, SignalProtocolError, UsePQRatchet, message_encrypt, process_prekey_bundle,
};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::whatsapp as wa;

use crate::state::Device;

type SignalResult<T> = Result<T, SignalProtocolError>;

/// A throw-away Signal store for one outgoing message of the phone.
struct PhoneStore {
    identity: IdentityKeyPair,
    registration_id: u32,
    sessions: HashMap<String, SessionRecord>,
    identities: HashMap<String, IdentityKey>,
}

fn key(address: &ProtocolAddress) -> String {
    format!("{}.{}", address.name(), u32::from(address.device_id()))
}

#[async_trait::async_trait]
impl IdentityKeyStore for PhoneStore {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.identity.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let changed = self
            .identities
            .insert(key(address), *identity)
            .is_some_and(|old| old != *identity);
        Ok(if changed {
            IdentityChange::ReplacedExisting
        } else {
            IdentityChange::NewOrUnchanged
        })
    }

    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(true)
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.identities.get(&key(address)).copied())
    }
}

#[async_trait::async_trait]
impl SessionStore for PhoneStore {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.sessions.get(&key(address)).cloned())
    }

    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.sessions.contains_key(&key(address)))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SignalResult<()> {
        self.sessions.insert(key(address), record);
        Ok(())
    }
}

/// The app-state sync key the phone shares with its companions.
#[derive(Debug, Clone)]
pub(crate) struct AppStateKey {
    pub id: Vec<u8>,
    pub data: [u8; 32],
    pub raw_id: u32,
    pub timestamp_ms: i64,
}

fn pubkey(bytes: &[u8]) -> anyhow::Result<PublicKey> {
    PublicKey::from_djb_public_key_bytes(bytes).map_err(|e| anyhow::anyhow!("public key: {e}"))
}

/// Everything the phone needs to send one key share.
pub(crate) struct KeyShareJob {
    /// The account's phone number (the sender, device 0).
    pub phone: String,
    /// The phone's identity key.
    pub identity: KeyPair,
    /// The phone's Signal registration id.
    pub registration_id: u32,
    /// The companion and its published keys.
    pub device: Device,
    /// One of its one-time pre-keys, if any is left.
    pub one_time: Option<(u32, Vec<u8>)>,
    /// The key to share.
    pub app_key: AppStateKey,
    /// The key indexes of the account's companions.
    pub key_indexes: Vec<u32>,
    /// The `<message>` id.
    pub stanza_id: String,
}

/// Encrypts the key share from the phone (device 0) to the companion, using
/// one of its uploaded pre-keys, and wraps it in the `<message>` stanza the
/// server delivers.
pub(crate) async fn key_share_message(job: KeyShareJob) -> anyhow::Result<Node> {
    let KeyShareJob {
        phone,
        identity: account_identity,
        registration_id: phone_registration_id,
        device,
        one_time,
        app_key,
        key_indexes,
        stanza_id,
    } = job;
    let (phone, account_identity, device, app_key) = (&phone, &account_identity, &device, &app_key);
    let identity = IdentityKeyPair::new(
        IdentityKey::new(account_identity.public_key),
        PrivateKey::deserialize(account_identity.private_key.serialize())
            .map_err(|e| anyhow::anyhow!("identity key: {e}"))?,
    );
    let mut store = PhoneStore {
        identity,
        registration_id: phone_registration_id,
        sessions: HashMap::new(),
        identities: HashMap::new(),
    };
    let pre_key = match one_time {
        Some((id, public)) => Some((id.into(), pubkey(&public)?)),
        None => None,
    };
    let bundle = PreKeyBundle::new(
        device.reg.registration_id,
        DeviceId::from(u32::from(device.id)),
        pre_key,
        device.reg.signed_pre_key.id.into(),
        pubkey(&device.reg.signed_pre_key.public)?,
        device.reg.signed_pre_key.signature.clone(),
        IdentityKey::new(pubkey(&device.reg.identity_pub)?),
    )?;
    let address = ProtocolAddress::new(phone, DeviceId::from(u32::from(device.id)));
    let mut sessions = PhoneStore {
        identity: store.identity.clone(),
        registration_id: store.registration_id,
        sessions: HashMap::new(),
        identities: HashMap::new(),
    };
    process_prekey_bundle(
        &address,
        &mut sessions,
        &mut store,
        &bundle,
        &mut rand_010::make_rng::<rand_010::rngs::StdRng>(),
        UsePQRatchet::No,
    )
    .await?;

    let share = wa::Message {
        protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
            r#type: Some(wa::message::protocol_message::Type::APP_STATE_SYNC_KEY_SHARE),
            app_state_sync_key_share: buffa::MessageField::some(
                wa::message::AppStateSyncKeyShare {
                    keys: vec![wa::message::AppStateSyncKey {
                        key_id: buffa::MessageField::some(wa::message::AppStateSyncKeyId {
                            key_id: Some(app_key.id.clone()),
                        }),
                        key_data: buffa::MessageField::some(wa::message::AppStateSyncKeyData {
                            key_data: Some(app_key.data.to_vec()),
                            fingerprint: buffa::MessageField::some(
                                wa::message::AppStateSyncKeyFingerprint {
                                    raw_id: Some(app_key.raw_id),
                                    current_index: key_indexes.iter().copied().max(),
                                    device_indexes: key_indexes,
                                },
                            ),
                            timestamp: Some(app_key.timestamp_ms),
                        }),
                    }],
                },
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let plaintext = wacore::messages::MessageUtils::pad_message_v2(share.encode_to_vec());
    let ciphertext = message_encrypt(&plaintext, &address, &mut sessions, &mut store).await?;
    let kind = match ciphertext {
        CiphertextMessage::PreKeySignalMessage(_) => "pkmsg",
        _ => "msg",
    };
    Ok(NodeBuilder::new("message")
        .attrs([
            ("from", format!("{phone}@s.whatsapp.net")),
            ("id", stanza_id),
            ("type", "text".to_owned()),
            ("t", wacore::time::now_secs().to_string()),
        ])
        .children([NodeBuilder::new("enc")
            .attrs([("v", "2"), ("type", kind)])
            .bytes(ciphertext.serialize().to_vec())
            .build()])
        .build())
}
