//! PKCE (RFC 7636), `S256` only: `plain` gives no protection against a leaked request
//! (RFC 9700 §2.1.1), so it is refused like any unknown method.

use super::error::OAuthError;
use crate::model::{ClientType, PkceMode};
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub challenge: String,
    pub method: &'static str,
}

/// Whether a client must use PKCE under the plugin's mode.
pub fn required(client_type: ClientType, mode: PkceMode) -> bool {
    match client_type {
        ClientType::Public => mode != PkceMode::None,
        ClientType::Confidential => mode == PkceMode::Strict,
    }
}

/// Reads `code_challenge` / `code_challenge_method` from an authorization request.
pub fn challenge_from(
    params: &serde_json::Map<String, Value>,
) -> Result<Option<Challenge>, OAuthError> {
    let challenge = params.get("code_challenge").and_then(value_text);
    let method = params.get("code_challenge_method");
    let Some(challenge) = challenge.filter(|c| !c.is_empty()) else {
        return match method {
            Some(m) if !m.is_null() => Err(OAuthError::invalid_request(
                "code_challenge is required when code_method is present",
            )),
            _ => Ok(None),
        };
    };
    match method.map(value_text) {
        None | Some(None) => {}
        Some(Some(m)) if m.eq_ignore_ascii_case("S256") => {}
        Some(Some(_)) => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method is not supported, must be S256",
            ))
        }
    }
    Ok(Some(Challenge {
        challenge: normalise(&challenge),
        method: "S256",
    }))
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Accepts the padded and standard-alphabet spellings of a challenge as the same value.
fn normalise(challenge: &str) -> String {
    let decoded = URL_SAFE_NO_PAD
        .decode(challenge)
        .or_else(|_| URL_SAFE.decode(challenge))
        .or_else(|_| STANDARD.decode(challenge));
    match decoded {
        Ok(bytes) => URL_SAFE_NO_PAD.encode(bytes),
        Err(_) => challenge.to_string(),
    }
}

/// The PKCE rule of a code exchange. A code issued with a challenge (or to a client that must
/// use PKCE) needs the matching verifier; a verifier sent for a code issued *without* a
/// challenge is refused too (RFC 9700 §2.1.1: otherwise an attacker who injects a stolen
/// code obtained without PKCE downgrades the exchange, and the client's verifier proves
/// nothing).
pub fn check_exchange(
    required: bool,
    verifier: Option<&Value>,
    stored_challenge: Option<&str>,
) -> Result<(), OAuthError> {
    let sent_verifier = verifier.is_some_and(|v| !v.is_null());
    match stored_challenge {
        None if sent_verifier => Err(OAuthError::new(
            super::error::ErrorCode::InvalidGrant,
            "Invalid code",
        )),
        None if !required => Ok(()),
        _ => verify(verifier, stored_challenge),
    }
}

/// Verifies the token request's `code_verifier` against the stored challenge.
pub fn verify(verifier: Option<&Value>, stored_challenge: Option<&str>) -> Result<(), OAuthError> {
    let verifier = match verifier {
        None | Some(Value::Null) => {
            return Err(OAuthError::invalid_request(
                "code_verifier is required for PKCE authorization requests",
            ))
        }
        Some(Value::String(v)) => v,
        Some(_) => return Err(OAuthError::invalid_request("code_verifier is not a string")),
    };
    if !(43..=128).contains(&verifier.len()) {
        return Err(OAuthError::invalid_request(
            "code_verifier must be between 43 and 128 characters",
        ));
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    match stored_challenge {
        Some(stored)
            if crate::secrets::constant_time_eq(computed.as_bytes(), stored.as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(OAuthError::new(
            super::error::ErrorCode::InvalidGrant,
            "Invalid code",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn padded_and_standard_alphabet_challenges_verify() {
        let c = challenge_from(&params(
            json!({"code_challenge": "2aC4cMSkAsMRtZbhHhiZkDW3sddRf_iTRGil1r9gi8w="}),
        ));
        let c = c.ok().flatten().map(|c| c.challenge);
        assert_eq!(
            verify(
                Some(&json!("abcdelfhigklmnopqrstuvwxyz0123456789abcdefg")),
                c.as_deref()
            ),
            Ok(())
        );

        let c = challenge_from(&params(
            json!({"code_challenge": "0LoS6Gtrw16r07+ZXsCf8MeAi21QHmKc3LJdUCA5w/o="}),
        ));
        let c = c.ok().flatten().map(|c| c.challenge);
        let v = json!("abcdelfhigklmnopqrstuvwxyz0123456789abcdefghijklmnop9");
        assert_eq!(verify(Some(&v), c.as_deref()), Ok(()));
    }

    #[test]
    fn plain_and_unknown_methods_are_refused() {
        for m in ["plain", "foo"] {
            let r = challenge_from(&params(
                json!({"code_challenge": "1234", "code_challenge_method": m}),
            ));
            assert_eq!(
                r.err().map(|e| e.description),
                Some("code_challenge_method is not supported, must be S256".into())
            );
        }
    }

    #[test]
    fn a_method_needs_a_challenge() {
        let r = challenge_from(&params(json!({"code_challenge_method": "H256"})));
        assert_eq!(
            r.err().map(|e| e.description),
            Some("code_challenge is required when code_method is present".into())
        );
    }

    #[test]
    fn undecodable_challenges_are_kept_verbatim_with_s256() {
        let r = challenge_from(&params(json!({"code_challenge": "1234"})));
        assert_eq!(
            r,
            Ok(Some(Challenge {
                challenge: "1234".into(),
                method: "S256"
            }))
        );
    }

    #[test]
    fn verifier_rules_in_kongs_order() {
        let d = |v: Option<Value>| {
            verify(v.as_ref(), Some("x"))
                .err()
                .map(|e| (e.code, e.description))
        };
        assert_eq!(
            d(None).map(|x| x.1),
            Some("code_verifier is required for PKCE authorization requests".into())
        );
        assert_eq!(
            d(Some(json!(12))).map(|x| x.1),
            Some("code_verifier is not a string".into())
        );
        assert_eq!(
            d(Some(json!(""))).map(|x| x.1),
            Some("code_verifier must be between 43 and 128 characters".into())
        );
        assert_eq!(
            d(Some(json!("abc123".repeat(30)))).map(|x| x.1),
            Some("code_verifier must be between 43 and 128 characters".into())
        );
        assert_eq!(
            d(Some(json!("abcdelfhigklmnopqrstuvwxyz0123456789abcdefg"))),
            Some((
                super::super::error::ErrorCode::InvalidGrant,
                "Invalid code".into()
            ))
        );
    }

    #[test]
    fn a_verifier_for_a_code_without_challenge_is_a_downgrade() {
        let verifier = json!("abcdelfhigklmnopqrstuvwxyz0123456789abcdefg");
        for required in [false, true] {
            assert_eq!(
                check_exchange(required, Some(&verifier), None).map_err(|e| e.code),
                Err(super::super::error::ErrorCode::InvalidGrant)
            );
        }
        // Without a verifier and without a challenge, PKCE plays no part (unless required).
        assert_eq!(check_exchange(false, None, None), Ok(()));
        assert_eq!(check_exchange(false, Some(&Value::Null), None), Ok(()));
        assert!(check_exchange(true, None, None).is_err());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(
            b"abcdelfhigklmnopqrstuvwxyz0123456789abcdefg",
        ));
        assert_eq!(
            check_exchange(false, Some(&verifier), Some(&challenge)),
            Ok(())
        );
        assert!(check_exchange(false, None, Some(&challenge)).is_err());
    }

    #[test]
    fn who_needs_pkce() {
        assert!(required(ClientType::Public, PkceMode::Lax));
        assert!(!required(ClientType::Public, PkceMode::None));
        assert!(!required(ClientType::Confidential, PkceMode::Lax));
        assert!(required(ClientType::Confidential, PkceMode::Strict));
    }
}
