//! JWT access tokens (RFC 9068) verified by the filter itself, with the keys the token-service
//! publishes in its state answers: docs/jwt-access-tokens.md §5, every rule in its order.
//!
//! Parsing is ours (it has to be: a token is a JWT only if its header says `typ: at+jwt`, and
//! the header must be read whole to refuse `jwk`, `jku`, `x5u`, `x5c` and `crit`); the
//! signatures are RustCrypto's (`rsa`, `p256`, `ed25519-dalek`; RS256 on crypto-bigint's
//! Montgomery arithmetic in the wasm build, [`rs256`]; `ring` in the native build), verification
//! only, so no randomness and no `getrandom` reach the wasm module. Every input is bounded: the token
//! (8 192 bytes), the header segment, the number of published keys and their sizes.

use crate::state::{ConsumerInfo, Identity, IdentityJwt};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

#[cfg(not(feature = "ring"))]
mod rs256;

/// The longest JWT the filter reads (contract §5.1); opaque tokens keep their 512.
pub const MAX_JWT_BYTES: usize = 8192;
/// How far `exp`, `iat` and `nbf` may be off the gateway's clock.
pub const CLOCK_SKEW_S: u64 = 30;
/// A header longer than this is none of ours (ours are about 60 bytes).
const MAX_HEADER_SEGMENT: usize = 1024;
/// Published keys a service's state may carry; more is a misconfiguration, refused whole.
pub const MAX_KEYS: usize = 64;
/// RSA moduli accepted (bits): below 2048 is too weak; above 4096 `rsa` refuses anyway, and a
/// larger key would make every verify slower.
const RSA_MIN_BITS: usize = 2048;

/// The algorithms the filter verifies (contract §5.2): no `none`, no HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }
}

/// Why a JWT was refused. Every refusal is a 401 `invalid_token` except [`Refusal::GlobalToken`]
/// (Kong's global-token answer); [`Refusal::UnknownKid`] first triggers one bounded refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooLong,
    /// A segment is not base64url, or not a JSON object, or a claim has the wrong type.
    Malformed(&'static str),
    /// The header names a key or a URL (`jwk`, `jku`, `x5u`, `x5c`) or has `crit`.
    ForbiddenHeader(&'static str),
    /// `alg` is not RS256, ES256 or EdDSA, or differs from the key's.
    Algorithm,
    /// No published key has this `kid` (or there is no `kid`).
    UnknownKid,
    Signature,
    Issuer,
    Audience,
    Expired,
    NotYetValid,
    /// Bound to another service.
    OtherService,
    /// Issued under `global_credentials`, presented to a plugin without it.
    GlobalToken,
}

/// Present when the member is there at all, whatever its value (even `null`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Presence(bool);

impl<'de> Deserialize<'de> for Presence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Presence(true))
    }
}

/// The JOSE header. A duplicated member makes the header unreadable (serde refuses it), so
/// there is no "which `alg` counts" ambiguity.
#[derive(Deserialize)]
struct Header {
    typ: Option<String>,
    alg: Option<String>,
    kid: Option<String>,
    #[serde(default)]
    jwk: Presence,
    #[serde(default)]
    jku: Presence,
    #[serde(default)]
    x5u: Presence,
    #[serde(default)]
    x5c: Presence,
    #[serde(default)]
    crit: Presence,
}

/// A token whose header says it is a JWT access token: it goes down this module's path, never
/// the opaque one (not even when refused).
pub struct Candidate<'a> {
    token: &'a str,
    header: Header,
}

/// A JWT access token, told by its shape (contract §5): three dot-separated parts whose first
/// decodes to a JSON object with `typ` `at+jwt` or `application/at+jwt` (any case). `None`:
/// an opaque token (an identity JWT, `typ: identity+jwt`, is one of those, and fails there).
pub fn recognise(token: &str) -> Option<Candidate<'_>> {
    let mut parts = token.split('.');
    let (header, _, _, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next());
    if rest.is_some() || header.len() > MAX_HEADER_SEGMENT {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let header: Header = serde_json::from_slice(&bytes).ok()?;
    let typ = header.typ.as_deref()?;
    let is_access_token =
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt");
    is_access_token.then_some(Candidate { token, header })
}

impl Candidate<'_> {
    /// The key id the header names (for the unknown-kid refresh).
    pub fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }
}

/// One published key as the state answer carries it (contract §4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PublishedKey {
    pub kid: String,
    pub alg: String,
    pub jwk: serde_json::Value,
}

/// A published key, read and validated with RustCrypto, and the fast verifier made from the
/// same validated bytes: `ring`'s in the native build (feature `ring`); elsewhere RS256's own
/// path where it applies (e = 65537), RustCrypto's verify for the rest.
#[derive(Debug, Clone)]
struct Verifier {
    key: ValidatedKey,
    #[cfg(feature = "ring")]
    fast: fast::Key,
    #[cfg(not(feature = "ring"))]
    rs256: Option<rs256::PublicKey>,
}

#[derive(Debug, Clone)]
enum ValidatedKey {
    Rs256(Box<rsa::pkcs1v15::VerifyingKey<sha2::Sha256>>),
    Es256(p256::ecdsa::VerifyingKey),
    EdDsa(ed25519_dalek::VerifyingKey),
}

/// An RSA key's modulus and exponent, big-endian: what the fast verifiers are made from.
struct RsaComponents {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaComponents {
    fn of(key: &rsa::pkcs1v15::VerifyingKey<sha2::Sha256>) -> RsaComponents {
        use rsa::traits::PublicKeyParts;
        let public: &rsa::RsaPublicKey = key.as_ref();
        RsaComponents {
            n: public.n().to_bytes_be(),
            e: public.e().to_bytes_be(),
        }
    }
}

impl Verifier {
    fn new(key: ValidatedKey) -> Verifier {
        Verifier {
            #[cfg(feature = "ring")]
            fast: fast::Key::of(&key),
            #[cfg(not(feature = "ring"))]
            rs256: match &key {
                ValidatedKey::Rs256(key) => {
                    let RsaComponents { n, e } = RsaComponents::of(key);
                    rs256::PublicKey::new(&n, &e)
                }
                _ => None,
            },
            key,
        }
    }

    fn alg(&self) -> Alg {
        match self.key {
            ValidatedKey::Rs256(_) => Alg::Rs256,
            ValidatedKey::Es256(_) => Alg::Es256,
            ValidatedKey::EdDsa(_) => Alg::EdDsa,
        }
    }

    #[cfg(feature = "ring")]
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.fast.verifies(message, signature)
    }

    #[cfg(not(feature = "ring"))]
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use rsa::signature::Verifier as _;
        match (&self.key, &self.rs256) {
            (ValidatedKey::Rs256(_), Some(fast)) => fast.verifies(message, signature),
            (ValidatedKey::Rs256(key), None) => rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|s| key.verify(message, &s).is_ok()),
            // JWS carries ECDSA signatures as r || s (RFC 7518 §3.4), not DER.
            (ValidatedKey::Es256(key), _) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify(message, &s).is_ok()),
            // Strict: refuses non-canonical signatures and small-order keys.
            (ValidatedKey::EdDsa(key), _) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify_strict(message, &s).is_ok()),
        }
    }
}

/// The native build's verifier: ring, over the bytes of a key RustCrypto validated.
#[cfg(feature = "ring")]
mod fast {
    use super::{RsaComponents, ValidatedKey};
    use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

    #[derive(Debug, Clone)]
    pub enum Key {
        Rs256(RsaPublicKeyComponents<Vec<u8>>),
        Es256(UnparsedPublicKey<Vec<u8>>),
        EdDsa(UnparsedPublicKey<Vec<u8>>),
    }

    impl Key {
        pub fn of(key: &ValidatedKey) -> Key {
            match key {
                ValidatedKey::Rs256(key) => {
                    let RsaComponents { n, e } = RsaComponents::of(key);
                    Key::Rs256(RsaPublicKeyComponents { n, e })
                }
                ValidatedKey::Es256(key) => Key::Es256(UnparsedPublicKey::new(
                    &signature::ECDSA_P256_SHA256_FIXED,
                    key.to_encoded_point(false).as_bytes().to_vec(),
                )),
                ValidatedKey::EdDsa(key) => Key::EdDsa(UnparsedPublicKey::new(
                    &signature::ED25519,
                    key.as_bytes().to_vec(),
                )),
            }
        }

        pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
            match self {
                Key::Rs256(key) => key
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                    .is_ok(),
                Key::Es256(key) | Key::EdDsa(key) => key.verify(message, sig).is_ok(),
            }
        }
    }
}

/// The verifying keys of a state answer, by `kid`: parsed once when the published keys change,
/// never per request.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: BTreeMap<String, Verifier>,
}

impl KeySet {
    /// Every usable key of `published`; a key that cannot be read (unknown `alg`, a JWK of
    /// another type, a weak RSA modulus) is left out and named in the second value, so the
    /// tokens it signed are refused (never verified with a guess).
    pub fn from_published(published: &[PublishedKey]) -> (KeySet, Vec<String>) {
        let mut keys = BTreeMap::new();
        let mut unusable = Vec::new();
        for key in published.iter().take(MAX_KEYS) {
            match verifier(key) {
                Some(v) => {
                    keys.insert(key.kid.clone(), v);
                }
                None => unusable.push(key.kid.clone()),
            }
        }
        (KeySet { keys }, unusable)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn b64(value: Option<&serde_json::Value>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(value?.as_str()?).ok()
}

fn verifier(key: &PublishedKey) -> Option<Verifier> {
    let jwk = &key.jwk;
    let member = |name: &str| jwk.get(name).and_then(|v| v.as_str());
    // The JWK's own `alg`, when it has one, must agree with the entry's.
    if member("alg").is_some_and(|a| a != key.alg) {
        return None;
    }
    match (Alg::parse(&key.alg)?, member("kty")?) {
        (Alg::Rs256, "RSA") => {
            let n = rsa::BigUint::from_bytes_be(&b64(jwk.get("n"))?);
            let e = rsa::BigUint::from_bytes_be(&b64(jwk.get("e"))?);
            if n.bits() < RSA_MIN_BITS {
                return None;
            }
            let public = rsa::RsaPublicKey::new(n, e).ok()?;
            let key = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public);
            Some(Verifier::new(ValidatedKey::Rs256(Box::new(key))))
        }
        (Alg::Es256, "EC") if member("crv") == Some("P-256") => {
            let (x, y) = (b64(jwk.get("x"))?, b64(jwk.get("y"))?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let point = p256::EncodedPoint::from_affine_coordinates(
                p256::FieldBytes::from_slice(&x),
                p256::FieldBytes::from_slice(&y),
                false,
            );
            p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                .ok()
                .map(|key| Verifier::new(ValidatedKey::Es256(key)))
        }
        (Alg::EdDsa, "OKP") if member("crv") == Some("Ed25519") => {
            let x: [u8; 32] = b64(jwk.get("x"))?.try_into().ok()?;
            ed25519_dalek::VerifyingKey::from_bytes(&x)
                .ok()
                // Small-order keys (which verify_strict refuses) are no keys of ours.
                .filter(|key| !key.is_weak())
                .map(|key| Verifier::new(ValidatedKey::EdDsa(key)))
        }
        _ => None,
    }
}

/// `aud`: one string or an array of them (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(list) => list.iter().any(|a| a == wanted),
        }
    }
}

/// The claims the filter reads (contract §2); others are ignored. Times are whole Unix
/// seconds, as the token-service writes them (a fractional `exp` is malformed here).
#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<u64>,
    iat: Option<u64>,
    nbf: Option<u64>,
    client_id: Option<String>,
    scope: Option<String>,
    consumer: Option<ConsumerInfo>,
    authenticated_userid: Option<String>,
    service_id: Option<String>,
}

/// What a JWT is verified against: the state of the service the request is for.
pub struct Context<'a> {
    pub keys: &'a KeySet,
    /// The token-service's `--issuer` (state `issuer`).
    pub issuer: &'a str,
    /// The id of the service the route is protected by (state `service.id`).
    pub service_id: &'a str,
    pub global_credentials: bool,
    /// Unix seconds.
    pub now: u64,
}

/// Contract §5, steps 1 to 6 in order (step 7, distrust, is the flow's): the identity the
/// claims state, or why the token is refused.
pub fn verify(candidate: &Candidate, ctx: &Context) -> Result<Identity, Refusal> {
    let token = candidate.token;
    if token.len() > MAX_JWT_BYTES {
        return Err(Refusal::TooLong);
    }
    let header = &candidate.header;
    refuse_key_material(header)?;
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Refusal::Malformed("token"))?;
    let (_, claims_segment) = signing_input
        .split_once('.')
        .ok_or(Refusal::Malformed("token"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Refusal::Malformed("signature"))?;
    let claims_bytes = URL_SAFE_NO_PAD
        .decode(claims_segment)
        .map_err(|_| Refusal::Malformed("claims"))?;
    // Step 2: the algorithm is ours, and the key's.
    let alg = header
        .alg
        .as_deref()
        .and_then(Alg::parse)
        .ok_or(Refusal::Algorithm)?;
    // No `kid` at all is no key to look for (no refresh).
    let kid = header.kid.as_deref().ok_or(Refusal::Malformed("kid"))?;
    let key = ctx.keys.keys.get(kid).ok_or(Refusal::UnknownKid)?;
    if key.alg() != alg {
        return Err(Refusal::Algorithm);
    }
    // Step 3.
    if !key.verifies(signing_input.as_bytes(), &signature) {
        return Err(Refusal::Signature);
    }
    // Only a signed payload is parsed as claims.
    let claims: Claims =
        serde_json::from_slice(&claims_bytes).map_err(|_| Refusal::Malformed("claims"))?;
    check_issuer_and_audience(&claims, ctx.issuer)?;
    check_times(&claims, ctx.now)?;
    check_binding(&claims, ctx)?;
    identity(claims)
}

fn refuse_key_material(header: &Header) -> Result<(), Refusal> {
    let forbidden = [
        (header.jwk, "jwk"),
        (header.jku, "jku"),
        (header.x5u, "x5u"),
        (header.x5c, "x5c"),
        (header.crit, "crit"),
    ];
    match forbidden.iter().find(|(present, _)| present.0) {
        Some((_, name)) => Err(Refusal::ForbiddenHeader(name)),
        None => Ok(()),
    }
}

/// Step 4: `iss` is the issuer or one of its routes (`issuer/<path>`); `aud` names `iss`.
fn check_issuer_and_audience(claims: &Claims, issuer: &str) -> Result<(), Refusal> {
    let iss = claims.iss.as_deref().ok_or(Refusal::Issuer)?;
    let ours = !issuer.is_empty()
        && iss
            .strip_prefix(issuer)
            .is_some_and(|route| route.is_empty() || route.starts_with('/'));
    if !ours {
        return Err(Refusal::Issuer);
    }
    match &claims.aud {
        Some(aud) if aud.contains(iss) => Ok(()),
        _ => Err(Refusal::Audience),
    }
}

/// Step 5: `exp` required and not past; `iat` required and `nbf` (when present) not in the
/// future; each with [`CLOCK_SKEW_S`].
fn check_times(claims: &Claims, now: u64) -> Result<(), Refusal> {
    let exp = claims.exp.ok_or(Refusal::Expired)?;
    if now >= exp.saturating_add(CLOCK_SKEW_S) {
        return Err(Refusal::Expired);
    }
    let latest_start = now.saturating_add(CLOCK_SKEW_S);
    let iat = claims.iat.ok_or(Refusal::Malformed("iat"))?;
    if iat > latest_start || claims.nbf.is_some_and(|nbf| nbf > latest_start) {
        return Err(Refusal::NotYetValid);
    }
    Ok(())
}

/// Step 6, as the token-service's `grants::validity`.
fn check_binding(claims: &Claims, ctx: &Context) -> Result<(), Refusal> {
    match claims.service_id.as_deref() {
        None if ctx.global_credentials => Ok(()),
        None => Err(Refusal::GlobalToken),
        Some(bound) if bound == ctx.service_id => Ok(()),
        Some(_) => Err(Refusal::OtherService),
    }
}

/// The identity headers an opaque token's check answer would give (state.rs `Verdict::parse`).
fn identity(claims: Claims) -> Result<Identity, Refusal> {
    let consumer = claims.consumer.ok_or(Refusal::Malformed("consumer"))?;
    Ok(Identity {
        consumer_id: Some(consumer.id),
        consumer_custom_id: consumer.custom_id,
        consumer_username: consumer.username,
        credential_identifier: claims.client_id,
        authenticated_userid: claims.authenticated_userid,
        authenticated_scope: claims.scope,
        expires_at: claims.exp,
        identity_jwt: Some(IdentityJwt::AccessToken),
    })
}
