//! Random credentials and the one-way forms we keep of them.
//!
//! Access tokens, refresh tokens and authorization codes are stored only as SHA-256 digests:
//! they are 190-bit random strings, so a fast digest is as strong as a slow KDF and keeps token
//! issuance and checks cheap. Client secrets a user chose may be guessable, so `hash_secret`
//! stores those with Kong's PBKDF2 format; secrets we generated get the fast digest.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256, Sha512};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use subtle::ConstantTimeEq;

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const PBKDF2_PREFIX: &str = "$pbkdf2-sha512$i=10000,l=32$";
const PBKDF2_ROUNDS: u32 = 10_000;
const SHA256_PREFIX: &str = "$sha256$";

/// A 32-character `[A-Za-z0-9]` string (Kong's token, code, client id and secret format).
pub fn random_string() -> String {
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut bytes = [0u8; 64];
        fill_random(&mut bytes);
        // Rejection sampling keeps every character equally likely (62 does not divide 256).
        for b in bytes {
            if b < 248 && out.len() < 32 {
                out.push(ALPHANUMERIC[(b % 62) as usize] as char);
            }
        }
    }
    out
}

pub fn fill_random(buf: &mut [u8]) {
    // The OS RNG failing means the machine cannot produce secrets at all; there is no safe
    // fallback, so this is the one place we stop the process.
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

/// Lower-case hex SHA-256 of a token, code or refresh token: the only form the store keeps.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The stored form of a client secret when `hash_secret` is on.
pub fn hash_client_secret(secret: &str, generated: bool) -> String {
    if generated {
        format!("{SHA256_PREFIX}{}", token_digest(secret))
    } else {
        let mut salt = [0u8; 16];
        fill_random(&mut salt);
        pbkdf2_phc(secret, &salt)
    }
}

/// Kong's PHC string: `$pbkdf2-sha512$i=10000,l=32$<salt>$<hash>` (base64, no padding).
pub fn pbkdf2_phc(secret: &str, salt: &[u8]) -> String {
    let hash = pbkdf2_sha512(secret, salt);
    format!(
        "{PBKDF2_PREFIX}{}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(hash)
    )
}

fn pbkdf2_sha512(secret: &str, salt: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha512>(secret.as_bytes(), salt, PBKDF2_ROUNDS, &mut out);
    out
}

/// Checks a presented client secret against its stored form, in constant time. May run
/// PBKDF2 (~10 ms of CPU): async callers go through [`verify_client_secret_quickly`] and run
/// this off the async workers only when that cannot answer (see `grants::throttle`).
pub fn verify_client_secret(presented: &str, stored: &str, hashed: bool) -> bool {
    verify_client_secret_quickly(presented, stored, hashed)
        .unwrap_or_else(|| verify_pbkdf2_remembering(presented, stored))
}

/// [`verify_client_secret`] when it needs no key derivation (plain, SHA-256 and remembered
/// PBKDF2 secrets: microseconds); `None` when only PBKDF2 can tell.
pub fn verify_client_secret_quickly(presented: &str, stored: &str, hashed: bool) -> Option<bool> {
    if !hashed {
        return Some(constant_time_eq(presented.as_bytes(), stored.as_bytes()));
    }
    if let Some(digest) = stored.strip_prefix(SHA256_PREFIX) {
        return Some(constant_time_eq(
            token_digest(presented).as_bytes(),
            digest.as_bytes(),
        ));
    }
    if stored.starts_with(PBKDF2_PREFIX) {
        return remembered_pbkdf2(presented, stored);
    }
    // A row written before hashing was switched on still holds the plaintext.
    Some(constant_time_eq(presented.as_bytes(), stored.as_bytes()))
}

// PBKDF2 costs ~10 ms of CPU by design; a client authenticating on every token request
// would pay it each time. A secret that verified once is remembered as its SHA-256 (keyed by
// the stored hash, so a changed secret is never matched), and later checks compare digests in
// constant time. A wrong secret never gets in faster: it fails the same digest comparison.
/// Hashes remembered at most (the map is emptied when full).
const REMEMBERED_MAX: usize = 10_000;

fn remembered() -> &'static Mutex<HashMap<String, [u8; 32]>> {
    static REMEMBERED: OnceLock<Mutex<HashMap<String, [u8; 32]>>> = OnceLock::new();
    REMEMBERED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The answer for a stored PBKDF2 hash whose secret verified before; `None` when none did.
/// A remembered hash answers every presented secret, right or wrong, without PBKDF2.
fn remembered_pbkdf2(presented: &str, stored: &str) -> Option<bool> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let known = remembered().lock().ok()?.get(stored).copied()?;
    Some(constant_time_eq(&known, &digest))
}

fn verify_pbkdf2_remembering(presented: &str, stored: &str) -> bool {
    let Some((salt, hash)) = stored
        .strip_prefix(PBKDF2_PREFIX)
        .and_then(|rest| rest.split_once('$'))
    else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD_NO_PAD.decode(salt), STANDARD_NO_PAD.decode(hash)) else {
        return false;
    };
    let ok = constant_time_eq(&pbkdf2_sha512(presented, &salt), &hash);
    if ok {
        if let Ok(mut m) = remembered().lock() {
            if m.len() >= REMEMBERED_MAX {
                m.clear();
            }
            let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            m.insert(stored.to_string(), digest);
        }
    }
    ok
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_strings_are_32_alphanumerics_and_differ() {
        let a = random_string();
        let b = random_string();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn pbkdf2_matches_kongs_test_vector() {
        assert_eq!(
            pbkdf2_phc("tofu", b"a litte bit, just a little bit"),
            "$pbkdf2-sha512$i=10000,l=32$YSBsaXR0ZSBiaXQsIGp1c3QgYSBsaXR0bGUgYml0$z6ysNworexAhDELywIDi0ba0B0T7F/MBZ6Ige9lWRYI"
        );
    }

    #[test]
    fn hashed_secrets_verify_only_the_right_secret() {
        for generated in [true, false] {
            let stored = hash_client_secret("test", generated);
            assert!(verify_client_secret("test", &stored, true));
            assert!(!verify_client_secret("invalid", &stored, true));
        }
        let vector = "$pbkdf2-sha512$i=10000,l=32$YSBsaXR0ZSBiaXQsIGp1c3QgYSBsaXR0bGUgYml0$z6ysNworexAhDELywIDi0ba0B0T7F/MBZ6Ige9lWRYI";
        assert!(verify_client_secret("tofu", vector, true));
        assert!(!verify_client_secret("tofu!", vector, true));
    }

    #[test]
    fn remembered_verifications_still_refuse_wrong_secrets() {
        let stored = hash_client_secret("right", false);
        assert!(verify_client_secret("right", &stored, true));
        assert!(verify_client_secret("right", &stored, true));
        assert!(!verify_client_secret("wrong", &stored, true));
        let other = hash_client_secret("other", false);
        assert!(!verify_client_secret("right", &other, true));
    }

    #[test]
    fn salts_are_random() {
        assert_ne!(
            hash_client_secret("x", false),
            hash_client_secret("x", false)
        );
    }

    #[test]
    fn plain_secrets_compare_exactly() {
        assert!(verify_client_secret("secret", "secret", false));
        assert!(!verify_client_secret("secre", "secret", false));
    }
}
