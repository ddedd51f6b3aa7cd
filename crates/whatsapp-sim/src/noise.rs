//! The server side of WhatsApp's Noise handshake (XX, IK and XXfallback as
//! responder), built on wacore's `NoiseHandshake`.

use buffa::Message as _;
use wacore::libsignal::protocol::KeyPair;
use wacore::noise::{NoiseCipher, NoiseHandshake};
use wacore_binary::consts::{
    NOISE_PATTERN_IK, NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK, WA_CONN_HEADER,
};
use waproto::whatsapp as wa;

/// The server's long-lived Noise identity and its certificate chain.
pub(crate) struct ServerKeys {
    static_kp: KeyPair,
    static_pub: [u8; 32],
    cert_chain: Vec<u8>,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKeys").finish_non_exhaustive()
    }
}

fn pub32(kp: &KeyPair) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(kp.public_key.public_key_bytes());
    out
}

impl ServerKeys {
    /// A fresh static key and a chain root → intermediate → leaf signed by a
    /// simulator root (not WhatsApp's: clients need
    /// `danger-skip-cert-chain-verify`).
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let mut rng = rand_010::rng();
        let static_kp = KeyPair::generate(&mut rng);
        let root = KeyPair::generate(&mut rng);
        let intermediate = KeyPair::generate(&mut rng);
        let now = u64::try_from(wacore::time::now_secs()).unwrap_or(0);
        let not_before = now.saturating_sub(86_400);
        let not_after = now + 10 * 365 * 86_400;
        let static_pub = pub32(&static_kp);

        let inter_details = wa::cert_chain::noise_certificate::Details {
            serial: Some(1),
            issuer_serial: Some(0),
            key: Some(pub32(&intermediate).to_vec()),
            not_before: Some(not_before),
            not_after: Some(not_after),
        }
        .encode_to_vec();
        let leaf_details = wa::cert_chain::noise_certificate::Details {
            serial: Some(2),
            issuer_serial: Some(1),
            key: Some(static_pub.to_vec()),
            not_before: Some(not_before),
            not_after: Some(not_after),
        }
        .encode_to_vec();
        let inter_sig = root
            .private_key
            .calculate_signature(&inter_details, &mut rng)
            .map_err(|e| anyhow::anyhow!("sign intermediate: {e}"))?;
        let leaf_sig = intermediate
            .private_key
            .calculate_signature(&leaf_details, &mut rng)
            .map_err(|e| anyhow::anyhow!("sign leaf: {e}"))?;
        let cert_chain = wa::CertChain {
            leaf: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
                details: Some(leaf_details),
                signature: Some(leaf_sig.to_vec()),
            }),
            intermediate: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
                details: Some(inter_details),
                signature: Some(inter_sig.to_vec()),
            }),
        }
        .encode_to_vec();
        Ok(Self {
            static_kp,
            static_pub,
            cert_chain,
        })
    }
}

impl ServerKeys {
    /// The static private key and the certificate chain, as the state file
    /// keeps them.
    pub(crate) fn saved(&self) -> ([u8; 32], Vec<u8>) {
        (
            *self.static_kp.private_key.serialize(),
            self.cert_chain.clone(),
        )
    }

    /// The keys a state file kept: the chain must be one whose leaf
    /// certifies this static key.
    pub(crate) fn from_saved(static_private: &[u8], cert_chain: Vec<u8>) -> Result<Self, String> {
        let private = wacore::libsignal::protocol::PrivateKey::deserialize(static_private)
            .map_err(|e| format!("server noise key: {e}"))?;
        let static_kp = KeyPair::try_from(private).map_err(|e| format!("server noise key: {e}"))?;
        let static_pub = pub32(&static_kp);
        let chain = wa::CertChain::decode_from_slice(&cert_chain)
            .map_err(|e| format!("server certificate chain: {e}"))?;
        let leaf_key = chain
            .leaf
            .as_option()
            .and_then(|leaf| leaf.details.as_deref())
            .and_then(|d| wa::cert_chain::noise_certificate::Details::decode_from_slice(d).ok())
            .and_then(|d| d.key);
        if leaf_key.as_deref() != Some(static_pub.as_slice()) {
            return Err("server certificate chain does not certify the server noise key".into());
        }
        Ok(Self {
            static_kp,
            static_pub,
            cert_chain,
        })
    }
}

/// A completed handshake: the transport ciphers and who the client is.
pub(crate) struct Established {
    /// Decrypts frames from the client.
    pub read: NoiseCipher,
    /// Encrypts frames to the client.
    pub write: NoiseCipher,
    /// The client's Noise static public key.
    pub client_static: [u8; 32],
    /// The client's login or registration payload.
    pub payload: wa::ClientPayload,
}

/// An XX (or XXfallback) handshake waiting for the client's finish message.
pub(crate) struct XxResponder {
    noise: NoiseHandshake,
    server_eph: KeyPair,
}

/// What the server does after reading the client's hello.
pub(crate) enum HelloOutcome {
    /// IK accepted: send `reply`, the handshake is complete.
    Done(Vec<u8>, Box<Established>),
    /// XX or XXfallback: send `reply`, then read the client's finish.
    AwaitFinish(Vec<u8>, Box<XxResponder>),
}

fn to32(v: &[u8]) -> anyhow::Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| anyhow::anyhow!("expected 32 bytes, got {}", v.len()))
}

fn xx_server_hello(
    keys: &ServerKeys,
    pattern: &str,
    client_eph: &[u8; 32],
) -> anyhow::Result<(Vec<u8>, Box<XxResponder>)> {
    let mut noise = NoiseHandshake::new(pattern, &WA_CONN_HEADER)?;
    noise.authenticate(client_eph);
    let server_eph = KeyPair::generate(&mut rand_010::rng());
    let eph_pub = pub32(&server_eph);
    noise.authenticate(&eph_pub);
    noise.mix_shared_secret(server_eph.private_key.serialize(), client_eph)?;
    let enc_static = noise.encrypt(&keys.static_pub)?;
    noise.mix_shared_secret(keys.static_kp.private_key.serialize(), client_eph)?;
    let enc_cert = noise.encrypt(&keys.cert_chain)?;
    let hello = wa::HandshakeMessage {
        server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(eph_pub.to_vec()),
            r#static: Some(enc_static),
            payload: Some(enc_cert),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok((
        hello.encode_to_vec(),
        Box::new(XxResponder { noise, server_eph }),
    ))
}

fn decode_payload(bytes: &[u8]) -> anyhow::Result<wa::ClientPayload> {
    Ok(wa::ClientPayload::decode_from_slice(bytes)?)
}

/// Reads the client's first handshake message and answers it.
pub(crate) fn read_client_hello(keys: &ServerKeys, frame: &[u8]) -> anyhow::Result<HelloOutcome> {
    let msg = wa::HandshakeMessage::decode_from_slice(frame)?;
    let hello = msg
        .client_hello
        .into_option()
        .ok_or_else(|| anyhow::anyhow!("first message is not a ClientHello"))?;
    let client_eph = to32(hello.ephemeral.as_deref().unwrap_or_default())?;
    let (Some(enc_static), Some(enc_payload)) = (hello.r#static, hello.payload) else {
        let (reply, st) = xx_server_hello(keys, NOISE_PATTERN_XX, &client_eph)?;
        return Ok(HelloOutcome::AwaitFinish(reply, st));
    };
    // IK: the client already knows our static key. If it has an old one (the
    // simulator restarted), decryption fails and we fall back to XX.
    match ik_accept(keys, &client_eph, &enc_static, &enc_payload) {
        Ok(done) => Ok(done),
        Err(e) => {
            tracing::debug!("IK hello refused ({e}); answering with XXfallback");
            let (reply, st) = xx_server_hello(keys, NOISE_PATTERN_XXFALLBACK, &client_eph)?;
            Ok(HelloOutcome::AwaitFinish(reply, st))
        }
    }
}

fn ik_accept(
    keys: &ServerKeys,
    client_eph: &[u8; 32],
    enc_static: &[u8],
    enc_payload: &[u8],
) -> anyhow::Result<HelloOutcome> {
    let server_priv = keys.static_kp.private_key.serialize();
    let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
    noise.authenticate(&keys.static_pub);
    noise.authenticate(client_eph);
    noise.mix_shared_secret(server_priv, client_eph)?;
    let client_static = to32(&noise.decrypt(enc_static)?)?;
    noise.mix_shared_secret(server_priv, &client_static)?;
    let payload = decode_payload(&noise.decrypt(enc_payload)?)?;
    let server_eph = KeyPair::generate(&mut rand_010::rng());
    let eph_pub = pub32(&server_eph);
    noise.authenticate(&eph_pub);
    noise.mix_shared_secret(server_eph.private_key.serialize(), client_eph)?;
    noise.mix_shared_secret(server_eph.private_key.serialize(), &client_static)?;
    let enc_cert = noise.encrypt(&keys.cert_chain)?;
    let hello = wa::HandshakeMessage {
        server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(eph_pub.to_vec()),
            r#static: None,
            payload: Some(enc_cert),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (client_write, server_write) = noise.finish()?;
    Ok(HelloOutcome::Done(
        hello.encode_to_vec(),
        Box::new(Established {
            read: client_write,
            write: server_write,
            client_static,
            payload,
        }),
    ))
}

impl XxResponder {
    /// Reads the client's finish message and completes the handshake.
    pub(crate) fn read_client_finish(self, frame: &[u8]) -> anyhow::Result<Established> {
        let XxResponder {
            mut noise,
            server_eph,
        } = self;
        let msg = wa::HandshakeMessage::decode_from_slice(frame)?;
        let finish = msg
            .client_finish
            .into_option()
            .ok_or_else(|| anyhow::anyhow!("expected a ClientFinish"))?;
        let client_static = to32(&noise.decrypt(finish.r#static.as_deref().unwrap_or_default())?)?;
        noise.mix_shared_secret(server_eph.private_key.serialize(), &client_static)?;
        let payload =
            decode_payload(&noise.decrypt(finish.payload.as_deref().unwrap_or_default())?)?;
        let (client_write, server_write) = noise.finish()?;
        Ok(Established {
            read: client_write,
            write: server_write,
            client_static,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use wacore::noise::{
        IkHandshakeState, IkServerHelloOutcome, XxFallbackHandshakeState, XxHandshakeState,
    };

    fn payload() -> Vec<u8> {
        wa::ClientPayload {
            username: Some(15_550_001_111),
            device: Some(1),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// The two sides' ciphers talk to each other both ways.
    fn assert_paired(est: &Established, client_write: &NoiseCipher, client_read: &NoiseCipher) {
        let mut up = client_write.encrypt_with_counter(0, b"hello").unwrap();
        est.read.decrypt_in_place_with_counter(0, &mut up).unwrap();
        assert_eq!(up, b"hello");
        let mut down = est.write.encrypt_with_counter(0, b"world").unwrap();
        client_read
            .decrypt_in_place_with_counter(0, &mut down)
            .unwrap();
        assert_eq!(down, b"world");
        assert_eq!(est.payload.username, Some(15_550_001_111));
    }

    fn static_pub(keys: &ServerKeys) -> [u8; 32] {
        keys.static_pub
    }

    #[test]
    fn xx_handshake_with_a_stock_initiator() {
        let keys = ServerKeys::generate().unwrap();
        let client_static = KeyPair::generate(&mut rand_010::rng());
        let mut client = XxHandshakeState::new(client_static, payload(), &WA_CONN_HEADER).unwrap();
        let hello = client.build_client_hello().unwrap();
        let HelloOutcome::AwaitFinish(reply, server) = read_client_hello(&keys, &hello).unwrap()
        else {
            panic!("XX needs a finish message");
        };
        let finish = client
            .read_server_hello_and_build_client_finish(&reply)
            .unwrap();
        let est = server.read_client_finish(&finish).unwrap();
        let out = client.finish().unwrap();
        assert_eq!(out.server_cert_chain.leaf_key, static_pub(&keys));
        assert_paired(&est, &out.write_cipher, &out.read_cipher);
    }

    #[test]
    fn ik_handshake_and_xxfallback_for_a_stale_key() {
        let keys = ServerKeys::generate().unwrap();
        // IK with the right server key: one round trip.
        let mut client = IkHandshakeState::new(
            KeyPair::generate(&mut rand_010::rng()),
            static_pub(&keys),
            payload(),
            &WA_CONN_HEADER,
        )
        .unwrap();
        let hello = client.build_client_hello().unwrap();
        let HelloOutcome::Done(reply, est) = read_client_hello(&keys, &hello).unwrap() else {
            panic!("IK completes in one round trip");
        };
        let IkServerHelloOutcome::Continue(out) = client.read_server_hello(&reply).unwrap() else {
            panic!("the server accepts IK");
        };
        assert_paired(&est, &out.write_cipher, &out.read_cipher);

        // IK with a key the server no longer has: XXfallback.
        let stale = ServerKeys::generate().unwrap();
        let mut client = IkHandshakeState::new(
            KeyPair::generate(&mut rand_010::rng()),
            static_pub(&stale),
            payload(),
            &WA_CONN_HEADER,
        )
        .unwrap();
        let hello = client.build_client_hello().unwrap();
        let HelloOutcome::AwaitFinish(reply, server) = read_client_hello(&keys, &hello).unwrap()
        else {
            panic!("a stale IK key falls back to XX");
        };
        let IkServerHelloOutcome::Fallback(inputs) = client.read_server_hello(&reply).unwrap()
        else {
            panic!("the client sees the fallback");
        };
        let mut fb = XxFallbackHandshakeState::from_ik_failure(*inputs, &WA_CONN_HEADER).unwrap();
        let finish = fb.build_client_finish().unwrap();
        let est = server.read_client_finish(&finish).unwrap();
        let out = fb.finish().unwrap();
        assert_paired(&est, &out.write_cipher, &out.read_cipher);
    }
}
