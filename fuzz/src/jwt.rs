//! The filter's JWT access-token path (oauth2_filter::jwt, distrust): recognising, verifying
//! with the published keys, reading published keys, applying distrust lists. Whatever the
//! bytes: no panic, the size bound holds, and no identity value that reaches a header carries
//! a control character. The seeds are validly signed tokens (`corpus/filter_jwt/`), so the
//! fuzzer starts past the signature and mutates from there.

use oauth2_filter::distrust::Distrust;
use oauth2_filter::jwt::{self, Context, KeySet, PublishedKey, Refusal};
use oauth2_filter::{cache, decision, headers, state};

/// The public halves of the filter's test keys (filter/src/flow/jwt_tests.rs), which signed
/// the seeds.
const TEST_KEYS: &str = r#"[{"alg": "RS256", "jwk": {"alg": "RS256", "e": "AQAB", "kid": "rsa-1", "kty": "RSA", "n": "13lK1GNL5g5PhS-EPczDzwv0_6tUyqr6se4WW_3w4Vz71qz35D2LGvWOBC-pk2EDVeWVIOFUcwt971S9kIWtZ0bRgfAU8-Ej0z85ZJ6fWyGhbgtgB8NDmhcP05yMz3hpsfi3ZjLnfvFpei6iCZQhmGUpvM73iDFEHWKI8iCEtTcv4Bv_4fWSOFF4EkYeKK2RzubssRsmAcKlh0dI7GpgCwDfFB_LF3DE4ktroaBiCZJpZ4ZPFtBMMIgUbBrL4biV0cflb63xarGBXIwHp73MRgZjA1Ue269WJ1v9v_cQLWeHrzMZZivLyRgr4QL6Ni4k9yXQJmTIs6n4SZn2HmpE0Q", "use": "sig"}, "kid": "rsa-1"}, {"alg": "ES256", "jwk": {"crv": "P-256", "kid": "ec-1", "kty": "EC", "use": "sig", "x": "5xz1_BnBfsEx0RMthzhGaxEnksw52ePu06y6KpZG9XM", "y": "0kfXu5l60161GZIQJ4x-layHBZ_Wir1CjKWdI0o_2_A"}, "kid": "ec-1"}, {"alg": "EdDSA", "jwk": {"crv": "Ed25519", "kid": "ed-1", "kty": "OKP", "use": "sig", "x": "uF5IvYspRoMJVXymRh5VQ6qrfcB5u4VkN_MEYMUM8vY"}, "kid": "ed-1"}]"#;

/// The seeds' clock (`NOW` of the filter's JWT tests).
const NOW: u64 = 1_700_000_000;

pub fn filter_jwt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // A keys list, or a state answer: the JWK reader and the distrust set.
    if let Ok(published) = serde_json::from_slice::<Vec<PublishedKey>>(data) {
        let (keys, _) = KeySet::from_published(&published);
        assert!(keys.len() <= jwt::MAX_KEYS);
    }
    if let Some(poll) = state::StatePoll::parse(data) {
        let mut distrust = Distrust::default();
        let _ = distrust.apply(&poll, NOW);
        let _ = distrust.asks(&cache::digest(&text), NOW);
    }
    let Ok(published) = serde_json::from_str::<Vec<PublishedKey>>(TEST_KEYS) else {
        return;
    };
    let (keys, _) = KeySet::from_published(&published);
    let Some(candidate) = jwt::recognise(&text) else {
        return;
    };
    let _ = candidate.kid();
    for (global_credentials, now) in [(false, NOW), (true, NOW), (false, u64::MAX)] {
        let ctx = Context {
            keys: &keys,
            issuer: "https://gw.example",
            service_id: "svc-id",
            global_credentials,
            now,
        };
        match jwt::verify(&candidate, &ctx) {
            Ok(identity) => {
                assert!(
                    text.len() <= jwt::MAX_JWT_BYTES,
                    "verified past the size bound"
                );
                for (name, value) in decision::authenticated(&identity) {
                    if let Some(value) = value {
                        assert!(headers::is_safe_value(value), "{name}: {value:?}");
                    }
                }
            }
            Err(Refusal::TooLong) => assert!(text.len() > jwt::MAX_JWT_BYTES),
            Err(_) => {}
        }
    }
}
