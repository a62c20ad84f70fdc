//! Whether a token is good for a request to a service (Kong's resource rules, §6.3).

use crate::model::Lifetime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Active,
    /// Unknown, expired, or bound to another service.
    Invalid,
    /// Issued under `global_credentials`, presented to a plugin without it.
    GlobalToken,
}

/// A token with `lifetime`, issued for the service `bound_to` (`None`: under
/// `global_credentials`), presented to the service `service_id`.
pub fn check(
    lifetime: Lifetime,
    bound_to: Option<&str>,
    service_id: &str,
    plugin_is_global: bool,
    now: i64,
) -> Validity {
    if lifetime.access_expired(now) || lifetime.row_expired(now) {
        return Validity::Invalid;
    }
    match bound_to {
        None if plugin_is_global => Validity::Active,
        None => Validity::GlobalToken,
        Some(bound) if bound == service_id => Validity::Active,
        Some(_) => Validity::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_SECONDS: Lifetime = Lifetime {
        created_at: 100,
        expires_in: 10,
        ttl_at: None,
    };

    fn check_at(bound_to: Option<&str>, service: &str, global: bool, now: i64) -> Validity {
        check(TEN_SECONDS, bound_to, service, global, now)
    }

    #[test]
    fn service_and_global_rules() {
        assert_eq!(check_at(Some("a"), "a", false, 105), Validity::Active);
        assert_eq!(check_at(Some("a"), "b", false, 105), Validity::Invalid);
        assert_eq!(check_at(Some("a"), "b", true, 105), Validity::Invalid);
        assert_eq!(check_at(None, "b", true, 105), Validity::Active);
        assert_eq!(check_at(None, "b", false, 105), Validity::GlobalToken);
    }

    #[test]
    fn expired_tokens_are_invalid_everywhere() {
        assert_eq!(check_at(Some("a"), "a", false, 111), Validity::Invalid);
        assert_eq!(check_at(None, "a", false, 111), Validity::Invalid);
    }
}
