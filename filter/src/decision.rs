//! What to do with a protected request, given the settings and the token's verdict: forward
//! with identity headers, or answer (RFC 6750 challenges, anonymous fallback, outages).

use crate::headers::is_safe_value;
use crate::state::{ConsumerInfo, Identity, Settings, Verdict};

pub const X_CONSUMER_ID: &str = "x-consumer-id";
pub const X_CONSUMER_CUSTOM_ID: &str = "x-consumer-custom-id";
pub const X_CONSUMER_USERNAME: &str = "x-consumer-username";
pub const X_CREDENTIAL_IDENTIFIER: &str = "x-credential-identifier";
pub const X_AUTHENTICATED_USERID: &str = "x-authenticated-userid";
pub const X_AUTHENTICATED_SCOPE: &str = "x-authenticated-scope";
pub const X_ANONYMOUS_CONSUMER: &str = "x-anonymous-consumer";

const MISSING: &str = "The access token is missing";
const INVALID: &str = "The access token is invalid or has expired";
const GLOBAL: &str =
    "The access token is global, but the current plugin is configured without 'global_credentials'";

/// Every identity header, in the order of a [`HeaderPlan`].
pub const IDENTITY_HEADERS: [&str; 7] = [
    X_CONSUMER_ID,
    X_CONSUMER_CUSTOM_ID,
    X_CONSUMER_USERNAME,
    X_CREDENTIAL_IDENTIFIER,
    X_AUTHENTICATED_USERID,
    X_AUTHENTICATED_SCOPE,
    X_ANONYMOUS_CONSUMER,
];

/// The identity headers to write upstream: every one of them, `None` meaning "remove", so a
/// client can never smuggle its own copies through. The values are borrowed from the verdict
/// or the settings: a cached request allocates nothing to plan its headers.
pub type HeaderPlan<'a> = [(&'static str, Option<&'a str>); 7];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

// Made once per request and consumed at once: boxing the plan would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    Forward(HeaderPlan<'a>),
    Reply(Reply),
}

/// Why authentication did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Missing,
    Invalid,
    GlobalToken,
}

pub fn authenticated(identity: &Identity) -> HeaderPlan<'_> {
    [
        (X_CONSUMER_ID, safe(identity.consumer_id.as_deref())),
        (
            X_CONSUMER_CUSTOM_ID,
            safe(identity.consumer_custom_id.as_deref()),
        ),
        (
            X_CONSUMER_USERNAME,
            safe(identity.consumer_username.as_deref()),
        ),
        (
            X_CREDENTIAL_IDENTIFIER,
            safe(identity.credential_identifier.as_deref()),
        ),
        (
            X_AUTHENTICATED_USERID,
            safe(identity.authenticated_userid.as_deref()),
        ),
        (
            X_AUTHENTICATED_SCOPE,
            safe(identity.authenticated_scope.as_deref()),
        ),
        (X_ANONYMOUS_CONSUMER, None),
    ]
}

fn anonymous(consumer: &ConsumerInfo) -> HeaderPlan<'_> {
    [
        (X_CONSUMER_ID, safe(Some(&consumer.id))),
        (X_CONSUMER_CUSTOM_ID, safe(consumer.custom_id.as_deref())),
        (X_CONSUMER_USERNAME, safe(consumer.username.as_deref())),
        (X_CREDENTIAL_IDENTIFIER, None),
        (X_AUTHENTICATED_USERID, None),
        (X_AUTHENTICATED_SCOPE, None),
        (X_ANONYMOUS_CONSUMER, Some("true")),
    ]
}

/// An identity value that could not travel in a header (control characters) is not sent: the
/// header is removed instead, never written half or split into two.
fn safe(value: Option<&str>) -> Option<&str> {
    value.filter(|v| is_safe_value(v))
}

pub fn decide<'a>(settings: &'a Settings, verdict: Result<&'a Verdict, Failure>) -> Decision<'a> {
    match decide_headers(settings, verdict) {
        // `identity_headers: false`: every identity header is removed (client copies too).
        Decision::Forward(plan) if !settings.identity_headers => {
            Decision::Forward(plan.map(|(name, _)| (name, None)))
        }
        decision => decision,
    }
}

fn decide_headers<'a>(
    settings: &'a Settings,
    verdict: Result<&'a Verdict, Failure>,
) -> Decision<'a> {
    let failure = match verdict {
        Ok(Verdict::Active(identity)) => return Decision::Forward(authenticated(identity)),
        Ok(Verdict::Invalid) => Failure::Invalid,
        Ok(Verdict::GlobalToken) => Failure::GlobalToken,
        Err(failure) => failure,
    };
    // Kong answers a global token on a non-global plugin before any anonymous fallback.
    if failure != Failure::GlobalToken {
        if let Some(message) = &settings.anonymous_error {
            return Decision::Reply(json_reply(
                500,
                vec![],
                &serde_json::json!({ "message": message }),
            ));
        }
        if let Some(consumer) = &settings.anonymous {
            return Decision::Forward(anonymous(consumer));
        }
    }
    Decision::Reply(unauthorized(settings.realm.as_deref(), failure))
}

pub fn unauthorized(realm: Option<&str>, failure: Failure) -> Reply {
    let (error, body_description, header_description) = match failure {
        Failure::Missing => ("invalid_request", MISSING, None),
        Failure::Invalid => ("invalid_token", INVALID, Some(INVALID)),
        Failure::GlobalToken => ("invalid_token", GLOBAL, Some(INVALID)),
    };
    let challenge = bearer_challenge(realm, header_description.map(|d| (error, d)));
    json_reply(
        401,
        vec![("www-authenticate".to_string(), challenge)],
        &serde_json::json!({"error": error, "error_description": body_description}),
    )
}

/// `Bearer realm="r", error="e", error_description="d"` (RFC 6750 §3, realm first).
pub fn bearer_challenge(realm: Option<&str>, error: Option<(&str, &str)>) -> String {
    let mut params = Vec::new();
    if let Some(realm) = realm.filter(|r| !r.is_empty()) {
        params.push(format!("realm=\"{}\"", quoted_string_content(realm)));
    }
    if let Some((code, description)) = error {
        params.push(format!("error=\"{code}\""));
        params.push(format!("error_description=\"{description}\""));
    }
    if params.is_empty() {
        "Bearer".to_string()
    } else {
        format!("Bearer {}", params.join(", "))
    }
}

/// A value made safe inside an HTTP quoted-string (RFC 9110 §5.6.4): `"` and `\` escaped,
/// control characters dropped. The token-service refuses such realms already; this holds
/// even for a realm that reached the filter some other way (never a header injection).
fn quoted_string_content(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Fail closed: an outage of the authorization service is never a pass, nor a 401.
pub fn unavailable(description: &str) -> Reply {
    json_reply(
        503,
        vec![("retry-after".to_string(), "1".to_string())],
        &serde_json::json!({"error": "temporarily_unavailable", "error_description": description}),
    )
}

pub fn too_large() -> Reply {
    json_reply(
        413,
        vec![],
        &serde_json::json!({"error": "invalid_request", "error_description": "The request body is too large"}),
    )
}

pub fn json_reply(
    status: u32,
    mut headers: Vec<(String, String)>,
    body: &serde_json::Value,
) -> Reply {
    headers.push((
        "content-type".to_string(),
        "application/json; charset=utf-8".to_string(),
    ));
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            id: "p".into(),
            updated_at: 0,
            auth_header_name: "authorization".into(),
            hide_credentials: false,
            realm: Some("service".into()),
            global_credentials: false,
            anonymous: None,
            anonymous_error: None,
            access_token_format: Default::default(),
            identity_jwt_header: None,
            identity_headers: true,
        }
    }

    fn identity() -> Identity {
        Identity {
            consumer_id: Some("c1".into()),
            consumer_custom_id: None,
            consumer_username: Some("bob".into()),
            credential_identifier: Some("app".into()),
            authenticated_userid: Some("clark".into()),
            authenticated_scope: None,
            expires_at: None,
            identity_jwt: None,
        }
    }

    fn header(reply: &Reply, name: &str) -> Option<String> {
        reply
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn missing_token_challenge_has_only_the_realm() {
        let Decision::Reply(r) = decide(&settings(), Err(Failure::Missing)) else {
            unreachable!()
        };
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate").as_deref(),
            Some("Bearer realm=\"service\"")
        );
        assert_eq!(
            r.body,
            r#"{"error":"invalid_request","error_description":"The access token is missing"}"#
        );
    }

    #[test]
    fn invalid_token_challenge_names_the_error() {
        let Decision::Reply(r) = decide(&settings(), Ok(&Verdict::Invalid)) else {
            unreachable!()
        };
        assert_eq!(
            header(&r, "www-authenticate").as_deref(),
            Some("Bearer realm=\"service\", error=\"invalid_token\", error_description=\"The access token is invalid or has expired\"")
        );
    }

    #[test]
    fn global_token_body_differs_from_header_and_skips_anonymous() {
        let mut s = settings();
        s.anonymous = Some(ConsumerInfo {
            id: "anon".into(),
            username: None,
            custom_id: None,
        });
        let Decision::Reply(r) = decide(&s, Ok(&Verdict::GlobalToken)) else {
            unreachable!()
        };
        assert!(r.body.contains("configured without 'global_credentials'"));
        assert!(
            header(&r, "www-authenticate").is_some_and(|h| h.contains("invalid or has expired"))
        );
    }

    #[test]
    fn success_sets_every_header_and_clears_the_rest() {
        let (settings, verdict) = (settings(), Verdict::Active(identity().into()));
        let Decision::Forward(plan) = decide(&settings, Ok(&verdict)) else {
            unreachable!()
        };
        assert!(plan.contains(&(X_CONSUMER_ID, Some("c1"))));
        assert!(plan.contains(&(X_AUTHENTICATED_SCOPE, None)));
        assert!(plan.contains(&(X_ANONYMOUS_CONSUMER, None)));
    }

    #[test]
    fn anonymous_fallback_and_its_misconfiguration() {
        let mut s = settings();
        s.anonymous = Some(ConsumerInfo {
            id: "anon".into(),
            username: Some("no-body".into()),
            custom_id: None,
        });
        let Decision::Forward(plan) = decide(&s, Err(Failure::Missing)) else {
            unreachable!()
        };
        assert!(plan.contains(&(X_ANONYMOUS_CONSUMER, Some("true"))));
        assert!(plan.contains(&(X_CREDENTIAL_IDENTIFIER, None)));
        s.anonymous_error = Some("anonymous consumer x is configured but doesn't exist".into());
        let Decision::Reply(r) = decide(&s, Ok(&Verdict::Invalid)) else {
            unreachable!()
        };
        assert_eq!(r.status, 500);
        assert_eq!(
            r.body,
            r#"{"message":"anonymous consumer x is configured but doesn't exist"}"#
        );
    }

    #[test]
    fn plans_follow_the_identity_header_order() {
        let (active, verdict) = (settings(), Verdict::Active(identity().into()));
        let Decision::Forward(plan) = decide(&active, Ok(&verdict)) else {
            unreachable!()
        };
        assert_eq!(plan.map(|(name, _)| name), IDENTITY_HEADERS);
        let mut s = settings();
        s.anonymous = Some(ConsumerInfo {
            id: "a".into(),
            username: None,
            custom_id: None,
        });
        let Decision::Forward(plan) = decide(&s, Err(Failure::Missing)) else {
            unreachable!()
        };
        assert_eq!(plan.map(|(name, _)| name), IDENTITY_HEADERS);
    }

    #[test]
    fn a_realm_cannot_inject_a_header_or_break_the_quoting() {
        let challenge = bearer_challenge(Some("svc\r\nSet-Cookie: pwn=1\", x=\"\\"), None);
        assert_eq!(
            challenge,
            r#"Bearer realm="svcSet-Cookie: pwn=1\", x=\"\\""#
        );
        assert!(!challenge.contains('\r') && !challenge.contains('\n'));
    }

    #[test]
    fn outages_are_503() {
        assert_eq!(unavailable("down").status, 503);
    }

    #[test]
    fn identity_values_with_control_characters_are_not_forwarded() {
        let mut forged = identity();
        forged.consumer_username = Some("bob\r\nx-consumer-id: admin".into());
        let (settings, verdict) = (settings(), Verdict::Active(forged.into()));
        let Decision::Forward(plan) = decide(&settings, Ok(&verdict)) else {
            panic!("an active token is forwarded");
        };
        assert_eq!(plan[2], (X_CONSUMER_USERNAME, None), "removed, not split");
        assert_eq!(plan[0], (X_CONSUMER_ID, Some("c1")));
    }
}
