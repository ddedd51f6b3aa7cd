//! Prints a login JWT for bench/http.sh, signed with a PEM private key.
//!
//! ```text
//! wagate-bench-mint-jwt --key FILE.key.pem --kid KID [--alg RS256|ES256|EdDSA]
//!     --org ORG [--role ROLE] [--iss ISSUER] [--aud AUDIENCE] [--ttl SECONDS]
//! ```

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wagate-bench-mint-jwt: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<String, String> {
    let mut opts = std::collections::HashMap::new();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag}"))?
            .to_owned();
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        opts.insert(name, value);
    }
    let get = |name: &str| opts.get(name).map(String::as_str);
    let need = |name: &str| get(name).ok_or_else(|| format!("--{name} is required"));

    let alg = match get("alg").unwrap_or("RS256") {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other => return Err(format!("unsupported --alg {other}")),
    };
    let pem = std::fs::read(need("key")?).map_err(|e| format!("--key: {e}"))?;
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .map_err(|e| format!("--key: {e}"))?;
    let ttl: u64 = get("ttl")
        .unwrap_or("86400")
        .parse()
        .map_err(|e| format!("--ttl: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();

    let mut claims = Map::new();
    claims.insert("sub".into(), json!("bench-user"));
    claims.insert("org_id".into(), json!(need("org")?));
    claims.insert("role".into(), json!(get("role").unwrap_or("owner")));
    if let Some(iss) = get("iss") {
        claims.insert("iss".into(), json!(iss));
    }
    if let Some(aud) = get("aud") {
        claims.insert("aud".into(), json!(aud));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl));

    let header = json!({"alg": alg, "kid": need("kid")?, "typ": "JWT"});
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", b64(&header), b64(&Value::Object(claims)));
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).map_err(|e| e.to_string())?;
    Ok(format!("{input}.{signature}"))
}
