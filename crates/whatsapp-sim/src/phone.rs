//! What the simulator does as the account's phone: signing a new companion's
//! ADV device identity, and the phone side of the link-code exchange.

use buffa::Message as _;
use wacore::libsignal::crypto::{aes_256_gcm_decrypt, hmac_sha256};
use wacore::libsignal::protocol::{KeyPair, PublicKey};
use wacore::pair_code::PairCodeUtils;
use waproto::whatsapp as wa;

/// `ADV_PREFIX_ACCOUNT_SIGNATURE` of the protocol.
const ADV_PREFIX_ACCOUNT_SIGNATURE: &[u8] = &[6, 0];
/// `ADV_PREFIX_DEVICE_SIGNATURE_GENERATE` of the protocol.
const ADV_PREFIX_DEVICE_SIGNATURE: &[u8] = &[6, 1];
/// The prefix of the account signature over an `ADVKeyIndexList`.
const ADV_PREFIX_KEY_INDEX_LIST: &[u8] = &[6, 2];

/// The companion's fields of a QR code: `ref,noise,identity,adv[,type]`.
#[derive(Debug, Clone)]
pub(crate) struct QrFields {
    pub pairing_ref: String,
    pub noise_pub: [u8; 32],
    pub identity_pub: [u8; 32],
    pub adv_secret: [u8; 32],
}

/// Parses a QR string as a phone's camera would.
pub(crate) fn parse_qr(qr: &str) -> Result<QrFields, String> {
    use base64::Engine as _;
    let (pairing_ref, noise_pub, identity_pub) =
        wacore::pair::PairUtils::parse_qr_code(qr).map_err(|e| e.to_string())?;
    let body = qr
        .strip_prefix(wacore::companion_reg::NATIVE_CAMERA_DEEP_LINK_PREFIX)
        .unwrap_or(qr);
    let adv_b64 = body
        .split(',')
        .nth(3)
        .ok_or_else(|| "QR code has no ADV secret".to_owned())?;
    let adv = base64::engine::general_purpose::STANDARD
        .decode(adv_b64)
        .map_err(|e| format!("QR ADV secret: {e}"))?;
    let adv_secret: [u8; 32] = adv
        .try_into()
        .map_err(|_| "QR ADV secret is not 32 bytes".to_owned())?;
    Ok(QrFields {
        pairing_ref,
        noise_pub,
        identity_pub,
        adv_secret,
    })
}

/// Builds the `<device-identity>` content of `pair-success`: the
/// `ADVSignedDeviceIdentityHMAC` a phone sends for a new companion, with the
/// account signature over the device's identity key.
pub(crate) fn signed_device_identity(
    account_identity: &KeyPair,
    raw_id: u32,
    key_index: u32,
    device_identity_pub: &[u8; 32],
    adv_secret: &[u8; 32],
) -> anyhow::Result<Vec<u8>> {
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(raw_id),
        timestamp: Some(u64::try_from(wacore::time::now_secs()).unwrap_or(0)),
        key_index: Some(key_index),
        account_type: Some(wa::ADVEncryptionType::E2EE),
        device_type: Some(wa::ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    let mut msg = Vec::with_capacity(2 + details.len() + 32);
    msg.extend_from_slice(ADV_PREFIX_ACCOUNT_SIGNATURE);
    msg.extend_from_slice(&details);
    msg.extend_from_slice(device_identity_pub);
    let account_signature = account_identity
        .private_key
        .calculate_signature(&msg, &mut rand_010::rng())
        .map_err(|e| anyhow::anyhow!("account signature: {e}"))?;
    let signed = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account_identity.public_key.public_key_bytes().to_vec()),
        account_signature: Some(account_signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let hmac = hmac_sha256(adv_secret, &signed);
    Ok(wa::ADVSignedDeviceIdentityHMAC {
        details: Some(signed),
        hmac: Some(hmac.to_vec()),
        account_type: Some(wa::ADVEncryptionType::E2EE),
    }
    .encode_to_vec())
}

/// The account's signed list of valid companion key indexes (usync
/// `<key-index-list>`), signed with the phone's identity key.
pub(crate) fn signed_key_index_list(
    account_identity: &KeyPair,
    raw_id: u32,
    timestamp: u64,
    valid_indexes: Vec<u32>,
) -> Vec<u8> {
    let current_index = valid_indexes.iter().copied().max().unwrap_or(0);
    let details = wa::ADVKeyIndexList {
        raw_id: Some(raw_id),
        timestamp: Some(timestamp),
        current_index: Some(current_index),
        valid_indexes,
        account_type: Some(wa::ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    let mut msg = Vec::with_capacity(2 + details.len());
    msg.extend_from_slice(ADV_PREFIX_KEY_INDEX_LIST);
    msg.extend_from_slice(&details);
    let signature = account_identity
        .private_key
        .calculate_signature(&msg, &mut rand_010::rng())
        .map(|s| s.to_vec())
        .ok();
    wa::ADVSignedKeyIndexList {
        details: Some(details),
        account_signature: signature,
        account_signature_key: Some(account_identity.public_key.public_key_bytes().to_vec()),
    }
    .encode_to_vec()
}

/// Checks the companion's `pair-device-sign` answer: its device signature
/// over our details with its identity key, as the server does.
pub(crate) fn verify_device_signature(
    signed_identity: &[u8],
    device_identity_pub: &[u8; 32],
) -> Result<(), String> {
    let signed = wa::ADVSignedDeviceIdentity::decode_from_slice(signed_identity)
        .map_err(|e| format!("device-identity: {e}"))?;
    let details = signed.details.as_deref().unwrap_or_default();
    let account_key = signed.account_signature_key.as_deref().unwrap_or_default();
    let sig = signed
        .device_signature
        .as_deref()
        .ok_or_else(|| "device-identity has no device signature".to_owned())?;
    let mut msg = Vec::with_capacity(2 + details.len() + 64);
    msg.extend_from_slice(ADV_PREFIX_DEVICE_SIGNATURE);
    msg.extend_from_slice(details);
    msg.extend_from_slice(device_identity_pub);
    msg.extend_from_slice(account_key);
    let key = PublicKey::from_djb_public_key_bytes(device_identity_pub)
        .map_err(|e| format!("device identity key: {e}"))?;
    if key.verify_signature(&msg, sig) {
        Ok(())
    } else {
        Err("device signature does not verify".to_owned())
    }
}

/// The phone's half of a link-code exchange, after the user typed the code.
pub(crate) struct PrimaryHello {
    /// Our ephemeral key pair (kept to open the companion's key bundle).
    pub ephemeral: KeyPair,
    /// `link_code_pairing_wrapped_primary_ephemeral_pub`.
    pub wrapped_ephemeral: Vec<u8>,
}

/// Checks `code` against the companion's wrapped ephemeral key and wraps
/// ours with it. Slow on purpose (PBKDF2, 2¹⁷ rounds): run it off the
/// reactor.
pub(crate) fn primary_hello(code: &str) -> PrimaryHello {
    let ephemeral = KeyPair::generate(&mut rand_010::rng());
    let mut eph_pub = [0u8; 32];
    eph_pub.copy_from_slice(ephemeral.public_key.public_key_bytes());
    let wrapped = PairCodeUtils::encrypt_ephemeral_pub(&eph_pub, code);
    PrimaryHello {
        ephemeral,
        wrapped_ephemeral: wrapped.to_vec(),
    }
}

/// Unwraps the companion's ephemeral key with the code (AES-CTR is its own
/// inverse, so the companion's wrapping opens the same way as ours).
pub(crate) fn unwrap_companion_ephemeral(wrapped: &[u8], code: &str) -> Result<[u8; 32], String> {
    PairCodeUtils::decrypt_primary_ephemeral_pub(wrapped, code).map_err(|e| e.to_string())
}

/// Opens the companion's `companion_finish` key bundle and derives the ADV
/// secret both sides now share. Returns (companion identity, ADV secret).
pub(crate) fn open_key_bundle(
    primary_ephemeral: &KeyPair,
    primary_identity: &KeyPair,
    companion_ephemeral_pub: &[u8; 32],
    wrapped_bundle: &[u8],
) -> Result<([u8; 32], [u8; 32]), String> {
    if wrapped_bundle.len() < 32 + 12 + 16 {
        return Err("key bundle too short".into());
    }
    let companion_eph =
        PublicKey::from_djb_public_key_bytes(companion_ephemeral_pub).map_err(|e| e.to_string())?;
    let ephemeral_shared = primary_ephemeral
        .private_key
        .calculate_agreement(&companion_eph)
        .map_err(|e| e.to_string())?;
    let (salt, rest) = wrapped_bundle.split_at(32);
    let (iv, ciphertext) = rest.split_at(12);
    let mut enc_key = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(
        &ephemeral_shared,
        Some(salt),
        b"link_code_pairing_key_bundle_encryption_key",
        &mut enc_key,
    )
    .map_err(|e| e.to_string())?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(iv);
    let mut bundle = Vec::with_capacity(96);
    aes_256_gcm_decrypt(&enc_key, &nonce, b"", ciphertext, &mut bundle)
        .map_err(|e| format!("key bundle does not open: {e}"))?;
    if bundle.len() != 96 {
        return Err(format!("key bundle is {} bytes, expected 96", bundle.len()));
    }
    let mut companion_identity = [0u8; 32];
    companion_identity.copy_from_slice(&bundle[..32]);
    if bundle[32..64] != *primary_identity.public_key.public_key_bytes() {
        return Err("key bundle names another primary identity".into());
    }
    let random = &bundle[64..96];
    let companion_id_key =
        PublicKey::from_djb_public_key_bytes(&companion_identity).map_err(|e| e.to_string())?;
    let identity_shared = primary_identity
        .private_key
        .calculate_agreement(&companion_id_key)
        .map_err(|e| e.to_string())?;
    let mut combined = Vec::with_capacity(96);
    combined.extend_from_slice(&ephemeral_shared);
    combined.extend_from_slice(&identity_shared);
    combined.extend_from_slice(random);
    let mut adv_secret = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&combined, None, b"adv_secret", &mut adv_secret)
        .map_err(|e| e.to_string())?;
    Ok((companion_identity, adv_secret))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wacore::pair::{DeviceState, PairUtils};

    fn companion() -> DeviceState {
        let mut rng = rand_010::rng();
        DeviceState {
            identity_key: KeyPair::generate(&mut rng),
            noise_key: KeyPair::generate(&mut rng),
            adv_secret_key: [7u8; 32],
        }
    }

    #[test]
    fn the_companion_accepts_our_device_identity() {
        let dev = companion();
        let qr = PairUtils::make_qr_data(
            &dev,
            "ref-1",
            wacore::companion_reg::CompanionWebClientType::Chrome,
        );
        let f = parse_qr(&qr).unwrap();
        assert_eq!(f.adv_secret, [7u8; 32]);
        let account = KeyPair::generate(&mut rand_010::rng());
        let blob = signed_device_identity(&account, 1, 3, &f.identity_pub, &f.adv_secret).unwrap();
        let (self_signed, key_index) = PairUtils::do_pair_crypto(&dev, &blob).unwrap();
        assert_eq!(key_index, 3);
        verify_device_signature(&self_signed, &f.identity_pub).unwrap();
    }

    #[test]
    fn link_code_bundle_round_trip() {
        let code = "ABCD1234";
        let mut rng = rand_010::rng();
        let companion_eph = KeyPair::generate(&mut rng);
        let companion_id = KeyPair::generate(&mut rng);
        let mut ce = [0u8; 32];
        ce.copy_from_slice(companion_eph.public_key.public_key_bytes());
        let wrapped = PairCodeUtils::encrypt_ephemeral_pub(&ce, code);
        assert_eq!(unwrap_companion_ephemeral(&wrapped, code).unwrap(), ce);
        let hello = primary_hello(code);
        let primary_id = KeyPair::generate(&mut rng);
        let pe =
            PairCodeUtils::decrypt_primary_ephemeral_pub(&hello.wrapped_ephemeral, code).unwrap();
        let mut pi = [0u8; 32];
        pi.copy_from_slice(primary_id.public_key.public_key_bytes());
        let (bundle, adv) =
            PairCodeUtils::prepare_key_bundle(&companion_eph, &pe, &pi, &companion_id).unwrap();
        let (cid, adv2) = open_key_bundle(&hello.ephemeral, &primary_id, &ce, &bundle).unwrap();
        assert_eq!(cid, *companion_id.public_key.public_key_bytes());
        assert_eq!(adv, adv2);
    }
}
