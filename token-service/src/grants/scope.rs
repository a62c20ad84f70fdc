//! Scope rules shared by every grant (Kong's `retrieve_scope`).

use super::error::{ErrorCode, OAuthError};
use crate::model::OAuth2Config;
use serde_json::Value;

/// The validated, single-space-joined scope, or `None` when the plugin defines no scopes,
/// the client asked for none, or asked for the empty string (which Kong lets through even
/// with `mandatory_scope`).
pub fn validate(
    config: &OAuth2Config,
    requested: Option<&Value>,
) -> Result<Option<String>, OAuthError> {
    let Some(allowed) = &config.scopes else {
        return Ok(None);
    };
    match requested {
        None | Some(Value::Null) if config.mandatory_scope => Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "You must specify a scope",
        )),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let mut granted = Vec::new();
            for scope in text.split_whitespace() {
                if !allowed.iter().any(|a| a == scope) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("\"{scope}\" is an invalid scope"),
                    ));
                }
                granted.push(scope);
            }
            Ok((!granted.is_empty()).then(|| granted.join(" ")))
        }
        Some(_) => Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope must be a string",
        )),
    }
}

/// On refresh, the token's scopes must all still be offered by the current plugin.
pub fn still_offered(config: &OAuth2Config, token_scope: Option<&str>) -> bool {
    let Some(scope) = token_scope.filter(|s| !s.is_empty()) else {
        return true;
    };
    let Some(allowed) = &config.scopes else {
        return false;
    };
    scope
        .split_whitespace()
        .all(|s| allowed.iter().any(|a| a == s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(scopes: &[&str], mandatory: bool) -> OAuth2Config {
        OAuth2Config {
            scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
            mandatory_scope: mandatory,
            ..OAuth2Config::default()
        }
    }

    fn description(r: Result<Option<String>, OAuthError>) -> String {
        r.err().map(|e| e.description).unwrap_or_default()
    }

    #[test]
    fn mandatory_scope_requires_a_scope() {
        assert_eq!(
            description(validate(&config(&["email"], true), None)),
            "You must specify a scope"
        );
    }

    #[test]
    fn unknown_scopes_are_named() {
        let r = validate(&config(&["email"], true), Some(&json!("email wot")));
        assert_eq!(description(r), "\"wot\" is an invalid scope");
    }

    #[test]
    fn scopes_are_joined_with_single_spaces() {
        let r = validate(
            &config(&["email", "profile"], false),
            Some(&json!("email   profile")),
        );
        assert_eq!(r, Ok(Some("email profile".into())));
    }

    #[test]
    fn empty_scope_passes_even_when_mandatory() {
        assert_eq!(
            validate(&config(&["email"], true), Some(&json!(""))),
            Ok(None)
        );
    }

    #[test]
    fn non_string_scopes_are_refused() {
        for v in [json!(["email"]), json!(123), json!(false), json!(true)] {
            assert_eq!(
                description(validate(&config(&["email"], false), Some(&v))),
                "scope must be a string"
            );
        }
    }

    #[test]
    fn without_configured_scopes_the_parameter_is_ignored() {
        assert_eq!(
            validate(&OAuth2Config::default(), Some(&json!("anything"))),
            Ok(None)
        );
    }

    #[test]
    fn refresh_needs_every_scope_still_offered() {
        assert!(still_offered(
            &config(&["scope20", "scope21"], false),
            Some("scope20")
        ));
        assert!(!still_offered(
            &config(&["scope19", "profile"], false),
            Some("scope18")
        ));
        assert!(!still_offered(&OAuth2Config::default(), Some("email")));
        assert!(still_offered(&OAuth2Config::default(), None));
    }
}
