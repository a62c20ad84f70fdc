//! Signing keys: generation (RS256 2048-bit, ES256 on P-256, EdDSA on Ed25519), their public
//! JWK (RFC 7517) and the `kid` (the RFC 7638 thumbprint of that JWK, so a key's name is a
//! function of the key and two replicas can never give one name to two keys).
//!
//! A private key is kept as PKCS#8 PEM (the one format all three key types share); it leaves
//! this module only towards the database.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use rand_core::OsRng;
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

    fn jsonwebtoken(self) -> Algorithm {
        match self {
            Alg::RS256 => Algorithm::RS256,
            Alg::ES256 => Algorithm::ES256,
            Alg::EdDSA => Algorithm::EdDSA,
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

/// What `jsonwebtoken` signs with, from the stored PKCS#8 PEM. (Its RSA signer wants PKCS#1
/// DER; the EC and Ed signers PKCS#8 DER.)
pub fn encoding_key(alg: Alg, private_pkcs8_pem: &str) -> Result<EncodingKey, KeyError> {
    let unreadable = |e: &dyn std::fmt::Display| KeyError::Unreadable(e.to_string());
    match alg {
        Alg::RS256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::pkcs8::DecodePrivateKey;
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_pkcs8_pem)
                .map_err(|e| unreadable(&e))?;
            let der = key.to_pkcs1_der().map_err(|e| unreadable(&e))?;
            Ok(EncodingKey::from_rsa_der(der.as_bytes()))
        }
        Alg::ES256 => {
            use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
            let key =
                p256::SecretKey::from_pkcs8_pem(private_pkcs8_pem).map_err(|e| unreadable(&e))?;
            let der = key.to_pkcs8_der().map_err(|e| unreadable(&e))?;
            Ok(EncodingKey::from_ec_der(der.as_bytes()))
        }
        Alg::EdDSA => {
            use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
            let key = ed25519_dalek::SigningKey::from_pkcs8_pem(private_pkcs8_pem)
                .map_err(|e| unreadable(&e))?;
            let der = key.to_pkcs8_der().map_err(|e| unreadable(&e))?;
            Ok(EncodingKey::from_ed_der(der.as_bytes()))
        }
    }
}

/// The `jsonwebtoken` algorithm of a key (for the header).
pub fn header_alg(alg: Alg) -> Algorithm {
    alg.jsonwebtoken()
}
