//! The claims of the JWTs the token-service signs (docs/jwt-access-tokens.md §2 and §6): RFC
//! 9068 access tokens, and the short-lived identity JWT forwarded to upstreams. Pure: the
//! caller signs them.

use serde_json::{json, Map, Value};

/// The `typ` of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The `typ` of an identity JWT: never accepted as an access token.
pub const IDENTITY_TYP: &str = "identity+jwt";
/// An identity JWT lives at most this long (and never past its access token).
pub const IDENTITY_TTL_S: i64 = 300;

/// Who a token speaks for, as the filter's identity headers say it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub client_id: &'a str,
    pub credential_id: &'a str,
    pub consumer_id: &'a str,
    pub consumer_username: Option<&'a str>,
    pub consumer_custom_id: Option<&'a str>,
    pub authenticated_userid: Option<&'a str>,
    pub scope: Option<&'a str>,
}

/// When and by whom: `iss` (and `aud`, the same route), `jti`, `iat`, `exp`.
#[derive(Debug, Clone, Copy)]
pub struct Issue<'a> {
    pub issuer: &'a str,
    pub jti: &'a str,
    pub iat: i64,
    pub exp: i64,
}

/// An access token's claims; `service_id` is `None` for a `global_credentials` token.
pub fn access_token(issue: Issue<'_>, subject: Subject<'_>, service_id: Option<&str>) -> Value {
    let mut claims = common(issue, subject);
    if let Some(service_id) = service_id {
        claims.insert("service_id".into(), json!(service_id));
    }
    Value::Object(claims)
}

/// An identity JWT's claims, for a token expiring at `token_exp` (`None`: never): it expires
/// [`IDENTITY_TTL_S`] after `now` at the latest.
pub fn identity(
    issuer: &str,
    jti: &str,
    now: i64,
    token_exp: Option<i64>,
    subject: Subject<'_>,
) -> Value {
    let exp = token_exp.map_or(now + IDENTITY_TTL_S, |exp| exp.min(now + IDENTITY_TTL_S));
    let issue = Issue {
        issuer,
        jti,
        iat: now,
        exp,
    };
    Value::Object(common(issue, subject))
}

fn common(issue: Issue<'_>, subject: Subject<'_>) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(issue.issuer));
    claims.insert("aud".into(), json!(issue.issuer));
    // RFC 9068 §2.2: the resource owner, or the client itself when it acts for itself.
    let sub = subject.authenticated_userid.unwrap_or(subject.client_id);
    claims.insert("sub".into(), json!(sub));
    claims.insert("client_id".into(), json!(subject.client_id));
    if let Some(scope) = subject.scope.filter(|s| !s.is_empty()) {
        claims.insert("scope".into(), json!(scope));
    }
    claims.insert("jti".into(), json!(issue.jti));
    claims.insert("iat".into(), json!(issue.iat));
    claims.insert("exp".into(), json!(issue.exp));
    claims.insert(
        "consumer".into(),
        json!({
            "id": subject.consumer_id,
            "username": subject.consumer_username,
            "custom_id": subject.consumer_custom_id,
        }),
    );
    claims.insert("credential_id".into(), json!(subject.credential_id));
    if let Some(user) = subject.authenticated_userid {
        claims.insert("authenticated_userid".into(), json!(user));
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(user: Option<&'a str>, scope: Option<&'a str>) -> Subject<'a> {
        Subject {
            client_id: "app",
            credential_id: "cred-1",
            consumer_id: "cons-1",
            consumer_username: Some("bob"),
            consumer_custom_id: None,
            authenticated_userid: user,
            scope,
        }
    }

    fn issue() -> Issue<'static> {
        Issue {
            issuer: "https://gw.example/stepon",
            jti: "id-1",
            iat: 100,
            exp: 7300,
        }
    }

    #[test]
    fn access_token_claims_are_exactly_the_contracts() {
        let claims = access_token(
            issue(),
            subject(Some("clark"), Some("read write")),
            Some("svc"),
        );
        assert_eq!(
            claims,
            json!({
                "iss": "https://gw.example/stepon", "aud": "https://gw.example/stepon",
                "sub": "clark", "client_id": "app", "scope": "read write", "jti": "id-1",
                "iat": 100, "exp": 7300,
                "consumer": {"id": "cons-1", "username": "bob", "custom_id": null},
                "credential_id": "cred-1", "authenticated_userid": "clark", "service_id": "svc",
            })
        );
    }

    #[test]
    fn a_client_acting_for_itself_is_the_subject_and_absent_claims_are_omitted() {
        let claims = access_token(issue(), subject(None, None), None);
        assert_eq!(claims["sub"], "app");
        for absent in ["scope", "authenticated_userid", "service_id", "nbf"] {
            assert!(claims.get(absent).is_none(), "{absent}: {claims}");
        }
        let claims = access_token(issue(), subject(None, Some("")), None);
        assert!(claims.get("scope").is_none(), "an empty scope is no scope");
    }

    #[test]
    fn identity_jwts_live_five_minutes_at_most_and_never_past_the_token() {
        let s = subject(Some("clark"), None);
        assert_eq!(identity("i", "j", 1000, Some(5000), s)["exp"], 1300);
        assert_eq!(identity("i", "j", 1000, Some(1100), s)["exp"], 1100);
        assert_eq!(identity("i", "j", 1000, None, s)["exp"], 1300);
        let claims = identity("i", "j", 1000, None, s);
        assert_eq!(
            (claims["iat"].clone(), claims["aud"].clone()),
            (json!(1000), json!("i"))
        );
        assert!(claims.get("service_id").is_none());
    }
}
