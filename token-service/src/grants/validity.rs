//! Whether a token is good for a request to a service (Kong's resource rules, §6.3).

use crate::model::Token;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Active,
    /// Unknown, expired, or bound to another service.
    Invalid,
    /// Issued under `global_credentials`, presented to a plugin without it.
    GlobalToken,
}

pub fn check(token: &Token, service_id: &str, plugin_is_global: bool, now: i64) -> Validity {
    if token.access_expired(now) || token.row_expired(now) {
        return Validity::Invalid;
    }
    match token.service_id.as_deref() {
        None if plugin_is_global => Validity::Active,
        None => Validity::GlobalToken,
        Some(bound) if bound == service_id => Validity::Active,
        Some(_) => Validity::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(service: Option<&str>) -> Token {
        Token {
            id: "t".into(),
            created_at: 100,
            credential_id: "c".into(),
            service_id: service.map(str::to_owned),
            token_type: "bearer".into(),
            expires_in: 10,
            access_token_hash: String::new(),
            refresh_token_hash: None,
            authenticated_userid: None,
            scope: None,
            ttl_at: None,
            family_id: "f".into(),
        }
    }

    #[test]
    fn service_and_global_rules() {
        assert_eq!(check(&token(Some("a")), "a", false, 105), Validity::Active);
        assert_eq!(check(&token(Some("a")), "b", false, 105), Validity::Invalid);
        assert_eq!(check(&token(Some("a")), "b", true, 105), Validity::Invalid);
        assert_eq!(check(&token(None), "b", true, 105), Validity::Active);
        assert_eq!(check(&token(None), "b", false, 105), Validity::GlobalToken);
    }

    #[test]
    fn expired_tokens_are_invalid_everywhere() {
        assert_eq!(check(&token(Some("a")), "a", false, 111), Validity::Invalid);
        assert_eq!(check(&token(None), "a", false, 111), Validity::Invalid);
    }
}
