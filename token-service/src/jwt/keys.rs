//! Signing keys: generation (RS256 2048-bit, ES256 on P-256, EdDSA on Ed25519), their public
//! JWK (RFC 7517) and the `kid` (the RFC 7638 thumbprint of that JWK, so a key's name is a
//! function of the key and two replicas can never give one name to two keys).
//!
//! A private key is kept as PKCS#8 PEM (the one format all three key types share); it leaves
//! this module only towards the database.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand_core::OsRng;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// RSA keys are this long (RFC 7518 §3.3 asks for at least 2048 bits).
const RSA_BITS: usize = 2048;

/// The algorithms a key may be made for: what every JOSE library and the filter verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Alg {
    RS256,
    ES256,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Alg {
    type Err = KeyError;

    /// Exactly as JOSE spells them (`alg` values are case-sensitive, RFC 7515 §4.1.1).
    fn from_str(text: &str) -> Result<Self, KeyError> {
        Alg::ALL
            .into_iter()
            .find(|alg| alg.as_str() == text)
            .ok_or_else(|| KeyError::UnknownAlg(text.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unknown algorithm {0:?} (expected RS256, ES256 or EdDSA)")]
    UnknownAlg(String),
    #[error("key generation failed: {0}")]
    Generation(String),
    #[error("stored private key is unreadable: {0}")]
    Unreadable(String),
    #[error("signing failed")]
    Signing,
}

/// A key as generated or as read back from the database: the private half as PKCS#8 PEM, the
/// public half as a JWK carrying `kid`, `alg` and `use`.
#[derive(Clone)]
pub struct KeyMaterial {
    pub kid: String,
    pub alg: Alg,
    pub private_pkcs8_pem: String,
    pub public_jwk: Value,
}

impl std::fmt::Debug for KeyMaterial {
    /// Never prints the private key (logs, panics, test failures).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A new key. RSA generation takes tens to hundreds of milliseconds: call it off the async
/// runtime's worker threads (`spawn_blocking`).
pub fn generate(alg: Alg) -> Result<KeyMaterial, KeyError> {
    let (pem, bare_jwk) = match alg {
        Alg::RS256 => generate_rsa()?,
        Alg::ES256 => generate_p256()?,
        Alg::EdDSA => generate_ed25519()?,
    };
    let kid = thumbprint(&bare_jwk);
    Ok(KeyMaterial {
        public_jwk: published_jwk(bare_jwk, &kid, alg),
        kid,
        alg,
        private_pkcs8_pem: pem,
    })
}

fn generate_rsa() -> Result<(String, Value), KeyError> {
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS)
        .map_err(|e| KeyError::Generation(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| KeyError::Generation(e.to_string()))?;
    let jwk = json!({
        "kty": "RSA",
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    });
    Ok((pem.to_string(), jwk))
}

fn generate_p256() -> Result<(String, Value), KeyError> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::EncodePrivateKey;
    let key = p256::SecretKey::random(&mut OsRng);
    let pem = key
        .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .map_err(|e| KeyError::Generation(e.to_string()))?;
    let point = key.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(KeyError::Generation(
            "P-256 point without coordinates".into(),
        ));
    };
    let jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(x),
        "y": URL_SAFE_NO_PAD.encode(y),
    });
    Ok((pem.to_string(), jwk))
}

fn generate_ed25519() -> Result<(String, Value), KeyError> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| KeyError::Generation(e.to_string()))?;
    let jwk = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
    });
    Ok((pem.to_string(), jwk))
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace
/// (`serde_json` keeps object keys sorted, and the members are plain base64url strings).
fn thumbprint(bare_jwk: &Value) -> String {
    let canonical = bare_jwk.to_string();
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn published_jwk(mut jwk: Value, kid: &str, alg: Alg) -> Value {
    if let Some(members) = jwk.as_object_mut() {
        members.insert("kid".into(), json!(kid));
        members.insert("alg".into(), json!(alg.as_str()));
        members.insert("use".into(), json!("sig"));
    }
    jwk
}

/// A private key ready to sign, made once per key from the stored PKCS#8 PEM: `ring`, whose
/// assembly makes an RS256 signature in about 0.2 ms where the `rsa` crate's portable
/// arithmetic took 3 ms (on this project's machine), so issuing JWT access tokens is not
/// bound by signing.
pub enum SigningKey {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl SigningKey {
    pub fn from_pkcs8_pem(alg: Alg, private_pkcs8_pem: &str) -> Result<SigningKey, KeyError> {
        use rsa::pkcs8::der::SecretDocument;
        let (label, der) = SecretDocument::from_pem(private_pkcs8_pem)
            .map_err(|e| KeyError::Unreadable(e.to_string()))?;
        if label != "PRIVATE KEY" {
            return Err(KeyError::Unreadable(format!("a {label:?} PEM, not PKCS#8")));
        }
        let rejected = |e: ring::error::KeyRejected| KeyError::Unreadable(e.to_string());
        let der = der.as_bytes();
        Ok(match alg {
            Alg::RS256 => SigningKey::Rs256(RsaKeyPair::from_pkcs8(der).map_err(rejected)?),
            Alg::ES256 => SigningKey::Es256(
                EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &ring::rand::SystemRandom::new(),
                )
                .map_err(rejected)?,
            ),
            // PKCS#8 v1 (no public key inside) is what ed25519-dalek writes.
            Alg::EdDSA => SigningKey::EdDsa(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?,
            ),
        })
    }

    /// The JWS signature of `signing_input` (RFC 7518 §3.3 PKCS#1 v1.5, §3.4 ECDSA as r || s,
    /// RFC 8037 Ed25519).
    pub fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        match self {
            SigningKey::Rs256(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    signing_input,
                    &mut signature,
                )
                .map_err(|_| KeyError::Signing)?;
                Ok(signature)
            }
            SigningKey::Es256(key) => key
                .sign(&rng, signing_input)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| KeyError::Signing),
            SigningKey::EdDsa(key) => Ok(key.sign(signing_input).as_ref().to_vec()),
        }
    }
}
