//! The pure part of JWT checking: recognising the compact form, reading the
//! header and the claims, and validating the time and audience claims. No
//! keys and no I/O here, so every rule is unit-testable.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// Why a token was refused: a short, fixed text for the debug log. Fixed
/// texts cannot leak the token or key material, and cost no formatting.
pub(crate) type Rejection = &'static str;

/// The three parts of a compact JWS, still base64url-encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'a str,
}

/// Splits `token` when it looks like a JWT: exactly three dot-separated
/// parts made only of base64url characters. Anything else is some other
/// kind of token (`None`), left to the next verifier.
pub(crate) fn split(token: &str) -> Option<Parts<'_>> {
    let url_safe = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !url_safe {
        return None;
    }
    let first = token.find('.')?;
    let last = token.rfind('.')?;
    let (signing_input, signature) = (&token[..last], &token[last + 1..]);
    let (header, payload) = (&token[..first], signing_input.get(first + 1..)?);
    if payload.contains('.') {
        return None; // more than three parts (or first == last: only two)
    }
    Some(Parts {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// Decodes one base64url part (no padding, as JWS requires).
pub(crate) fn decode_part(part: &str) -> Result<Vec<u8>, Rejection> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "malformed base64url")
}

/// The header members we act on.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    /// One of the three accepted algorithms.
    pub alg: Algorithm,
    pub kid: Cow<'a, str>,
    /// `typ`, as found (checked by [`check_typ`] only when a type is
    /// required; a `null` reads as absent).
    pub typ: Option<Value>,
}

/// `true` when the member is present at all, whatever its value (even
/// `null`): a header that names a key source is refused, not interpreted.
#[derive(Debug, Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    typ: Option<Value>,
    #[serde(default)]
    jku: Present,
    #[serde(default)]
    x5u: Present,
    #[serde(default)]
    jwk: Present,
    #[serde(default)]
    x5c: Present,
    #[serde(default)]
    crit: Present,
}

/// Reads a decoded header and applies every rule that needs no key: the
/// algorithm allow-list, the refused members, a `kid` to select the key.
pub(crate) fn parse_header(json: &[u8]) -> Result<Header<'_>, Rejection> {
    let raw: RawHeader<'_> = serde_json::from_slice(json).map_err(|_| "malformed header")?;
    let alg = match raw.alg.as_deref() {
        None => return Err("header has no alg"),
        Some("RS256") => Algorithm::RS256,
        Some("ES256") => Algorithm::ES256,
        Some("EdDSA") => Algorithm::EdDSA,
        Some(a) if a.eq_ignore_ascii_case("none") => return Err("alg none is not accepted"),
        Some(a) if a.starts_with("HS") => return Err("HMAC algorithms are not accepted"),
        Some(_) => return Err("unsupported alg (only RS256, ES256, EdDSA)"),
    };
    // A key named by the token itself would let its author pick the key
    // that checks it: such tokens are attacks, whatever else they carry.
    if raw.jku.0 || raw.x5u.0 || raw.jwk.0 || raw.x5c.0 {
        return Err("header names its own key (jku/x5u/jwk/x5c)");
    }
    // We implement no JWS extension, so any critical one must fail (RFC 7515 §4.1.11).
    if raw.crit.0 {
        return Err("crit header: extensions not understood");
    }
    let kid = raw.kid.ok_or("header has no kid")?;
    Ok(Header {
        alg,
        kid,
        typ: raw.typ,
    })
}

/// The short form of a media type as `typ` carries it: RFC 7515 §4.1.9 has
/// a recipient read a value without `/` as `application/` + value (and
/// producers omit that prefix), so `application/at+jwt` and `at+jwt` are
/// one type. The comparison is ASCII case-insensitive, as media type names
/// are (RFC 6838 §4.2). Parameters (`;…`) are not interpreted.
fn short_media_type(typ: &str) -> &str {
    const APPLICATION: &str = "application/";
    match typ.get(..APPLICATION.len()) {
        Some(prefix)
            if prefix.eq_ignore_ascii_case(APPLICATION)
                && !typ[APPLICATION.len()..].contains('/') =>
        {
            &typ[APPLICATION.len()..]
        }
        _ => typ,
    }
}

/// Whether two `typ` values name the same media type (see
/// [`short_media_type`]): `at+jwt`, `AT+JWT` and `application/at+jwt` match.
pub(crate) fn same_typ(a: &str, b: &str) -> bool {
    short_media_type(a).eq_ignore_ascii_case(short_media_type(b))
}

/// The explicit-typing check of RFC 8725 §3.11: the header's `typ` must be
/// a string naming the `required` media type.
pub(crate) fn check_typ(typ: Option<&Value>, required: &str) -> Result<(), Rejection> {
    match typ {
        None => Err("header has no typ"),
        Some(Value::String(typ)) if same_typ(typ, required) => Ok(()),
        Some(Value::String(_)) => Err("wrong typ"),
        Some(_) => Err("typ is not a string"),
    }
}

/// Names of the configurable claims.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimNames<'a> {
    pub org: &'a str,
    pub role: &'a str,
}

/// The claims we read, as found (type checks happen in [`Claims::validate`]
/// and the principal's construction, so a wrong type is a clear rejection).
#[derive(Debug, Default)]
pub(crate) struct Claims {
    pub exp: Option<Value>,
    pub nbf: Option<Value>,
    pub iss: Option<Value>,
    pub aud: Option<Value>,
    pub sub: Option<Value>,
    pub org: Option<Value>,
    pub role: Option<Value>,
}

const EXP: u8 = 1;
const NBF: u8 = 1 << 1;
const ISS: u8 = 1 << 2;
const AUD: u8 = 1 << 3;
const SUB: u8 = 1 << 4;
const ORG: u8 = 1 << 5;
const ROLE: u8 = 1 << 6;

/// What the claim checks compare against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect<'a> {
    /// Unix seconds.
    pub now: i64,
    pub leeway_secs: u64,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
}

impl Claims {
    /// Reads the decoded payload, keeping only the claims we use: other
    /// members are skipped without being built, so a large payload costs
    /// little. A claim given twice is refused (which one would count?).
    pub(crate) fn parse(json: &[u8], names: ClaimNames<'_>) -> Result<Self, Rejection> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let claims = ClaimsSeed(names)
            .deserialize(&mut de)
            .map_err(|_| "malformed claims")?;
        de.end().map_err(|_| "malformed claims")?;
        Ok(claims)
    }

    /// `exp` (required), `nbf`, and `iss`/`aud` when configured, with leeway.
    pub(crate) fn validate(&self, expect: Expect<'_>) -> Result<(), Rejection> {
        // f64 holds every realistic Unix time exactly and also takes the
        // fractional NumericDate RFC 7519 allows.
        let now = expect.now as f64;
        let leeway = expect.leeway_secs as f64;
        let exp = self.exp.as_ref().ok_or("exp claim missing")?;
        let exp = exp.as_f64().ok_or("exp claim is not a number")?;
        if now >= exp + leeway {
            return Err("token expired");
        }
        if let Some(nbf) = &self.nbf {
            let nbf = nbf.as_f64().ok_or("nbf claim is not a number")?;
            if nbf > now + leeway {
                return Err("token not yet valid (nbf)");
            }
        }
        if let Some(issuer) = expect.issuer
            && self.iss.as_ref().and_then(Value::as_str) != Some(issuer)
        {
            return Err("wrong or missing issuer");
        }
        if let Some(audience) = expect.audience {
            let ok = match &self.aud {
                Some(Value::String(a)) => a == audience,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !ok {
                return Err("wrong or missing audience");
            }
        }
        Ok(())
    }
}

struct ClaimsSeed<'n>(ClaimNames<'n>);

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Claims, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        let mut claims = Claims::default();
        while let Some(slots) = map.next_key_seed(KeySeed(self.0))? {
            if slots == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value: Value = map.next_value()?;
            // A configured name may equal a registered one (e.g. org = "sub"): fill each slot.
            for (bit, slot) in [
                (EXP, &mut claims.exp),
                (NBF, &mut claims.nbf),
                (ISS, &mut claims.iss),
                (AUD, &mut claims.aud),
                (SUB, &mut claims.sub),
                (ORG, &mut claims.org),
                (ROLE, &mut claims.role),
            ] {
                if slots & bit != 0 {
                    if slot.is_some() {
                        return Err(de::Error::custom("duplicate claim"));
                    }
                    *slot = Some(value.clone());
                }
            }
        }
        Ok(claims)
    }
}

/// Maps a member name to the claim slots it fills, without allocating.
struct KeySeed<'n>(ClaimNames<'n>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = u8;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<u8, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = u8;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a claim name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<u8, E> {
        let mut slots = match key {
            "exp" => EXP,
            "nbf" => NBF,
            "iss" => ISS,
            "aud" => AUD,
            "sub" => SUB,
            _ => 0,
        };
        if key == self.0.org {
            slots |= ORG;
        }
        if key == self.0.role {
            slots |= ROLE;
        }
        Ok(slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: ClaimNames<'static> = ClaimNames {
        org: "org_id",
        role: "role",
    };

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn expect(now: i64) -> Expect<'static> {
        Expect {
            now,
            leeway_secs: 60,
            issuer: None,
            audience: None,
        }
    }

    #[test]
    fn split_recognises_only_three_base64url_parts() {
        let p = split("aGVh.cGF5.c2ln").unwrap();
        assert_eq!(
            (p.header, p.payload, p.signature, p.signing_input),
            ("aGVh", "cGF5", "c2ln", "aGVh.cGF5")
        );
        let p = split("aGVh.cGF5.").unwrap();
        assert_eq!(
            p.signature, "",
            "an unsigned token is still a JWT (and refused later)"
        );
        for other in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "a.b.c.d.e",
            "a b.c.d",
            "a.b.c=",
            "a+b.c.d",
            "a/b.c.d",
            "é.b.c",
        ] {
            assert!(split(other).is_none(), "{other}");
        }
    }

    #[test]
    fn header_rules() {
        let ok = parse_header(br#"{"alg":"RS256","kid":"k1","typ":"JWT","cty":"x"}"#).unwrap();
        assert_eq!((ok.alg, ok.kid.as_ref()), (Algorithm::RS256, "k1"));
        assert_eq!(
            parse_header(br#"{"alg":"ES256","kid":"k"}"#).unwrap().alg,
            Algorithm::ES256
        );
        assert_eq!(
            parse_header(br#"{"alg":"EdDSA","kid":"k"}"#).unwrap().alg,
            Algorithm::EdDSA
        );
        let cases: &[(&[u8], &str)] = &[
            (br#"{"alg":"none","kid":"k"}"#, "none"),
            (br#"{"alg":"NONE","kid":"k"}"#, "none"),
            (br#"{"alg":"HS256","kid":"k"}"#, "HMAC"),
            (br#"{"alg":"HS512","kid":"k"}"#, "HMAC"),
            (br#"{"alg":"RS512","kid":"k"}"#, "unsupported"),
            (br#"{"alg":"PS256","kid":"k"}"#, "unsupported"),
            (br#"{"alg":"ES384","kid":"k"}"#, "unsupported"),
            (br#"{"kid":"k"}"#, "no alg"),
            (br#"{"alg":"RS256"}"#, "no kid"),
            (br#"{"alg":"RS256","kid":7}"#, "malformed"),
            (br#"{"alg":"RS256","alg":"none","kid":"k"}"#, "malformed"),
            (
                br#"{"alg":"RS256","kid":"k","jku":"https://evil/jwks"}"#,
                "own key",
            ),
            (
                br#"{"alg":"RS256","kid":"k","x5u":"https://evil/cert"}"#,
                "own key",
            ),
            (
                br#"{"alg":"RS256","kid":"k","jwk":{"kty":"RSA"}}"#,
                "own key",
            ),
            (br#"{"alg":"RS256","kid":"k","jwk":null}"#, "own key"),
            (br#"{"alg":"RS256","kid":"k","x5c":["MII"]}"#, "own key"),
            (br#"{"alg":"RS256","kid":"k","crit":["exp"]}"#, "crit"),
            (br#"{"alg":"RS256","kid":"k","crit":[]}"#, "crit"),
            (b"[1]", "malformed"),
            (b"not json", "malformed"),
        ];
        for (json, why) in cases {
            let err = parse_header(json).unwrap_err();
            assert!(
                err.contains(why),
                "{}: {err}",
                String::from_utf8_lossy(json)
            );
        }
    }

    #[test]
    fn typ_is_a_media_type_compared_case_insensitively() {
        let typ = |json: &[u8]| parse_header(json).unwrap().typ;
        assert_eq!(
            typ(br#"{"alg":"RS256","kid":"k","typ":"JWT"}"#),
            Some(Value::from("JWT"))
        );
        assert_eq!(typ(br#"{"alg":"RS256","kid":"k","typ":null}"#), None);
        assert_eq!(typ(br#"{"alg":"RS256","kid":"k"}"#), None);
        assert_eq!(
            typ(br#"{"alg":"RS256","kid":"k","typ":7}"#),
            Some(Value::from(7)),
            "only a required typ is looked at"
        );
        for (a, b) in [
            ("at+jwt", "at+jwt"),
            ("at+jwt", "AT+JWT"),
            ("at+jwt", "application/at+jwt"),
            ("Application/AT+JWT", "at+jwt"),
            ("JWT", "application/jwt"),
            ("text/plain", "TEXT/PLAIN"),
        ] {
            assert!(same_typ(a, b), "{a} = {b}");
            assert!(same_typ(b, a), "{b} = {a}");
        }
        for (a, b) in [
            ("at+jwt", "jwt"),
            ("at+jwt", "application/jwt"),
            ("at+jwt", "text/at+jwt"),
            ("at+jwt", "application/application/at+jwt"),
            ("at+jwt", "at+jwt; charset=utf-8"),
            ("at+jwt", " at+jwt"),
            ("at+jwt", ""),
            ("at+jwt", "application/"),
        ] {
            assert!(!same_typ(a, b), "{a} != {b}");
            assert!(!same_typ(b, a), "{b} != {a}");
        }
        let at = Value::from("application/at+jwt");
        assert_eq!(check_typ(Some(&at), "at+jwt"), Ok(()));
        assert_eq!(
            check_typ(Some(&Value::from("JWT")), "at+jwt"),
            Err("wrong typ")
        );
        assert_eq!(check_typ(None, "at+jwt"), Err("header has no typ"));
        assert_eq!(
            check_typ(Some(&Value::from(1)), "at+jwt"),
            Err("typ is not a string")
        );
    }

    #[test]
    fn claims_are_read_by_configured_names() {
        let json = br#"{"sub":"u1","tenant":"acme","grp":"admin","org_id":"other","extra":{"deep":[1,2,{"x":null}]},"exp":10}"#;
        let c = Claims::parse(
            json,
            ClaimNames {
                org: "tenant",
                role: "grp",
            },
        )
        .unwrap();
        assert_eq!(c.org, Some(Value::from("acme")));
        assert_eq!(c.role, Some(Value::from("admin")));
        assert_eq!(c.sub, Some(Value::from("u1")));
        let c = Claims::parse(
            json,
            ClaimNames {
                org: "sub",
                role: "role",
            },
        )
        .unwrap();
        assert_eq!(
            (c.org, c.sub),
            (Some(Value::from("u1")), Some(Value::from("u1")))
        );
        assert!(Claims::parse(br#"{"exp":1,"exp":2}"#, NAMES).is_err());
        assert!(Claims::parse(br#"{"org_id":"a","org_id":"b"}"#, NAMES).is_err());
        assert!(Claims::parse(b"[]", NAMES).is_err());
        assert!(Claims::parse(br#"{"exp":1} trailing"#, NAMES).is_err());
    }

    #[test]
    fn time_claims_with_leeway() {
        let now = 1_000_000;
        let claims = |json: &str| Claims::parse(json.as_bytes(), NAMES).unwrap();
        assert_eq!(claims("{}").validate(expect(now)), Err("exp claim missing"));
        assert_eq!(
            claims(r#"{"exp":"soon"}"#).validate(expect(now)),
            Err("exp claim is not a number")
        );
        assert!(claims(r#"{"exp":1000100}"#).validate(expect(now)).is_ok());
        assert!(
            claims(r#"{"exp":999950}"#).validate(expect(now)).is_ok(),
            "inside the leeway"
        );
        assert!(
            claims(r#"{"exp":999950.5}"#).validate(expect(now)).is_ok(),
            "fractional NumericDate"
        );
        assert_eq!(
            claims(r#"{"exp":999940}"#).validate(expect(now)),
            Err("token expired")
        );
        assert!(
            claims(r#"{"exp":1000100,"nbf":1000050}"#)
                .validate(expect(now))
                .is_ok(),
            "inside the leeway"
        );
        assert_eq!(
            claims(r#"{"exp":1000500,"nbf":1000061}"#).validate(expect(now)),
            Err("token not yet valid (nbf)")
        );
        assert_eq!(
            claims(r#"{"exp":1000500,"nbf":"x"}"#).validate(expect(now)),
            Err("nbf claim is not a number")
        );
        let strict = Expect {
            leeway_secs: 0,
            ..expect(now)
        };
        assert_eq!(
            claims(r#"{"exp":1000000}"#).validate(strict),
            Err("token expired")
        );
    }

    #[test]
    fn issuer_and_audience_only_when_configured() {
        let now = 1_000_000;
        let claims = |json: &str| Claims::parse(json.as_bytes(), NAMES).unwrap();
        let c = claims(r#"{"exp":1000100,"iss":"https://idp","aud":["x","api"]}"#);
        assert!(c.validate(expect(now)).is_ok());
        let want = Expect {
            issuer: Some("https://idp"),
            audience: Some("api"),
            ..expect(now)
        };
        assert!(c.validate(want).is_ok());
        assert_eq!(
            c.validate(Expect {
                issuer: Some("https://other"),
                ..want
            }),
            Err("wrong or missing issuer")
        );
        assert_eq!(
            c.validate(Expect {
                audience: Some("web"),
                ..want
            }),
            Err("wrong or missing audience")
        );
        assert!(
            claims(r#"{"exp":1000100,"iss":"https://idp","aud":"api"}"#)
                .validate(want)
                .is_ok()
        );
        assert!(
            claims(r#"{"exp":1000100,"aud":"api"}"#)
                .validate(want)
                .is_err(),
            "issuer missing"
        );
        assert!(
            claims(r#"{"exp":1000100,"iss":"https://idp"}"#)
                .validate(want)
                .is_err(),
            "audience missing"
        );
        assert!(
            claims(r#"{"exp":1000100,"iss":"https://idp","aud":7}"#)
                .validate(want)
                .is_err()
        );
    }

    #[test]
    fn decode_part_is_strict_base64url() {
        assert_eq!(decode_part(&b64("{}")).unwrap(), b"{}");
        assert!(
            decode_part("e30=").is_err(),
            "padding is not base64url as JWS uses it"
        );
        assert!(decode_part("e").is_err());
    }
}
