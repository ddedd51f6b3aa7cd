#![allow(clippy::unwrap_used)]
use std::sync::Arc;
use std::time::Instant;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, jwk::Jwk};
use serde_json::json;
use wagate_auth::{Authenticator, JwtConfig, JwtVerifier};
use wagate_domain::SystemClock;

fn file(n: &str) -> Vec<u8> { std::fs::read(format!("{}/tests/keys/{n}", env!("CARGO_MANIFEST_DIR"))).unwrap() }

#[tokio::test]
async fn perf() {
    let v = JwtVerifier::new(JwtConfig::new("http://127.0.0.1:9/x"), Arc::new(SystemClock));
    let set = format!(r#"{{"keys":[{},{},{}]}}"#, String::from_utf8(file("rsa-1.jwk.json")).unwrap(), String::from_utf8(file("ec-1.jwk.json")).unwrap(), String::from_utf8(file("ed-1.jwk.json")).unwrap());
    v.cache().install_json(set.as_bytes()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (kid, alg, enc) in [("rsa-1", Algorithm::RS256, EncodingKey::from_rsa_pem(&file("rsa-1.key.pem")).unwrap()), ("ec-1", Algorithm::ES256, EncodingKey::from_ec_pem(&file("ec-1.key.pem")).unwrap()), ("ed-1", Algorithm::EdDSA, EncodingKey::from_ed_pem(&file("ed-1.key.pem")).unwrap())] {
        let h = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string());
        let p = URL_SAFE_NO_PAD.encode(json!({"sub":"user-1","org_id":"acme","role":"member","iat":now,"exp":now+600,"iss":"https://app.example.com","aud":"wagate","email":"someone@example.com","name":"Some One"}).to_string());
        let input = format!("{h}.{p}");
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &enc, alg).unwrap();
        let token = format!("{input}.{sig}");
        let jwk: Jwk = serde_json::from_slice(&file(&format!("{kid}.jwk.json"))).unwrap();
        let dk = DecodingKey::from_jwk(&jwk).unwrap();
        let n = 2000;
        for _ in 0..50 { v.authenticate(&token).await.unwrap().unwrap(); }
        let t = Instant::now();
        for _ in 0..n { assert!(jsonwebtoken::crypto::verify(&sig, input.as_bytes(), &dk, alg).unwrap()); }
        let raw = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n { v.authenticate(&token).await.unwrap().unwrap(); }
        let full = t.elapsed() / n;
        println!("{kid}: raw {raw:?} full {full:?} ratio {:.3}", full.as_secs_f64() / raw.as_secs_f64());
    }
}
