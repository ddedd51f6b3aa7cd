//! Standard Webhooks signing (standardwebhooks.com, symmetric scheme `v1`).
//!
//! What is signed is `"{webhook-id}.{webhook-timestamp}.{body}"`, with
//! HMAC-SHA256 keyed by the secret's bytes: the base64 text after `whsec_`
//! decoded. The `webhook-signature` header is `v1,<base64 MAC>`; while a
//! rotated-out secret still signs, one signature per secret, separated by a
//! space, the current secret's first. A receiver accepts the delivery when
//! any of them verifies with the secret it knows.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2_011::Sha256;
use thiserror::Error;
use wagate_domain::WebhookSecret;

/// The header carrying the event id (the receiver's idempotency key).
pub const HEADER_ID: &str = "webhook-id";
/// The header carrying the attempt's Unix time, in seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying the signature(s).
pub const HEADER_SIGNATURE: &str = "webhook-signature";

const PREFIX: &str = "whsec_";

/// A secret that cannot sign: its text after `whsec_` is not base64, or is
/// empty. Never holds the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the webhook secret cannot sign: {0}")]
pub struct SigningError(String);

/// The key bytes of `secret`: the base64 after `whsec_`.
fn key(secret: &WebhookSecret) -> Result<Vec<u8>, SigningError> {
    let text = secret.expose();
    let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| SigningError("its text after 'whsec_' is not base64".into()))?;
    if key.is_empty() {
        return Err(SigningError("it is empty".into()));
    }
    Ok(key)
}

/// One `v1,<base64>` signature of `id.timestamp.body` with `secret`.
///
/// # Errors
///
/// [`SigningError`] when the secret is not `whsec_` + base64.
pub fn sign_one(
    secret: &WebhookSecret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SigningError> {
    let key = key(secret)?;
    // HMAC takes keys of any length; the error cannot happen.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
        .map_err(|_| SigningError("invalid key length".into()))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    ))
}

/// The `webhook-signature` value: one signature per secret, space-separated,
/// in the order given (the current secret first).
///
/// # Errors
///
/// [`SigningError`] when `secrets` is empty or one of them cannot sign.
pub fn signature(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SigningError> {
    if secrets.is_empty() {
        return Err(SigningError("no secret".into()));
    }
    let parts = secrets
        .iter()
        .map(|s| sign_one(s, id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join(" "))
}

/// The three Standard Webhooks headers of one attempt.
///
/// # Errors
///
/// As [`signature`].
pub fn signed_headers(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, SigningError> {
    Ok(vec![
        (HEADER_ID, id.to_owned()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_SIGNATURE, signature(secrets, id, timestamp, body)?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

    fn secret(text: &str) -> WebhookSecret {
        WebhookSecret::from_text(text).unwrap()
    }

    /// The known answer of the Standard Webhooks reference libraries' own
    /// signing test.
    #[test]
    fn the_standard_webhooks_known_vector() {
        let sig = sign_one(
            &secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        // The Rust reference crate's vector too.
        let sig = sign_one(
            &secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn now() -> i64 {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
    }

    /// A receiver using the reference `standardwebhooks` crate accepts what
    /// we sign, with either secret during a rotation, and rejects a
    /// changed body.
    #[test]
    fn the_reference_library_verifies_our_signatures_including_rotation() {
        let new = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let new = new.as_str();
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"id":"evt_01JD0000000000000000000000","type":"session.status"}"#;
        let id = "evt_01JD0000000000000000000000";
        let ts = now();
        let one = signed_headers(&[secret(new)], id, ts, body).unwrap();
        let two = signed_headers(&[secret(new), secret(old)], id, ts, body).unwrap();
        assert_eq!(two[2].1.split(' ').count(), 2);
        assert!(two[2].1.starts_with(&one[2].1));
        for (hs, secrets) in [(&one, vec![new]), (&two, vec![new, old])] {
            for s in secrets {
                let receiver = standardwebhooks::Webhook::new(s).unwrap();
                receiver.verify(body, &headers(hs)).unwrap();
                assert!(receiver.verify(b"{}", &headers(hs)).is_err());
            }
        }
        // The old secret alone does not verify a delivery signed only with the new one.
        let receiver = standardwebhooks::Webhook::new(old).unwrap();
        assert!(receiver.verify(body, &headers(&one)).is_err());
    }

    #[test]
    fn bad_secrets_do_not_sign_and_do_not_leak() {
        let e = sign_one(&secret("whsec_not base64!"), "x", 1, b"").unwrap_err();
        assert!(!e.to_string().contains("not base64!"));
        assert!(signature(&[], "x", 1, b"").is_err());
    }
}
