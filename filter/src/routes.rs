//! Which requests are the OAuth endpoints the filter serves on every protected route.

/// `<prefix>/oauth2/{authorize,token,introspect,revoke}[/]`,
/// `<prefix>/.well-known/{oauth-authorization-server,openid-configuration,jwks.json}`, or RFC
/// 8414 §3.1's `/.well-known/oauth-authorization-server<prefix>`, with the query string ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointCall {
    pub prefix: String,
    /// The token-service path below `/gateway/v1/services/{service}`.
    pub target: &'static str,
    pub query: Option<String>,
}

const METADATA: &str = "/.well-known/oauth-authorization-server";

const ENDPOINTS: [(&str, &str); 7] = [
    ("/oauth2/authorize", "/oauth2/authorize"),
    ("/oauth2/token", "/oauth2/token"),
    ("/oauth2/introspect", "/oauth2/introspect"),
    ("/oauth2/revoke", "/oauth2/revoke"),
    (METADATA, METADATA),
    (
        "/.well-known/openid-configuration",
        "/.well-known/openid-configuration",
    ),
    ("/.well-known/jwks.json", "/.well-known/jwks.json"),
];

pub fn endpoint(path: &str) -> Option<EndpointCall> {
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (path, None),
    };
    let trimmed = path_only.strip_suffix('/').unwrap_or(path_only);
    let below_prefix = ENDPOINTS
        .iter()
        .find_map(|(suffix, target)| trimmed.strip_suffix(suffix).map(|prefix| (prefix, *target)));
    // RFC 8414 §3.1: the metadata of issuer `https://host/stepon` is at
    // `https://host/.well-known/oauth-authorization-server/stepon`.
    let (prefix, target) = below_prefix.or_else(|| {
        trimmed
            .strip_prefix(METADATA)
            .filter(|prefix| prefix.starts_with('/'))
            .map(|prefix| (prefix, METADATA))
    })?;
    Some(EndpointCall {
        prefix: prefix.to_string(),
        target,
        query,
    })
}

/// Whether an endpoint call is on its route: under exactly the prefix the route declares
/// (`oauth2.prefix` in its metadata), so `/stepon/anything/oauth2/token` is no endpoint of the
/// route `/stepon`. A route that declares none serves them under any prefix, as Kong does.
pub fn on_route(call: &EndpointCall, declared_prefix: Option<&str>) -> bool {
    declared_prefix.is_none_or(|prefix| call.prefix == prefix.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_on_any_prefix_with_optional_trailing_slash() {
        let e = endpoint("/stepon/oauth2/token");
        assert_eq!(
            e.map(|e| (e.prefix, e.target)),
            Some(("/stepon".to_string(), "/oauth2/token"))
        );
        let e = endpoint("/oauth2/authorize/?a=1");
        assert_eq!(
            e.map(|e| (e.prefix, e.target, e.query)),
            Some((String::new(), "/oauth2/authorize", Some("a=1".into())))
        );
        assert!(endpoint("/stepon/.well-known/oauth-authorization-server").is_some());
    }

    #[test]
    fn a_declared_prefix_is_the_only_one() {
        let on = |path: &str, prefix: Option<&str>| {
            endpoint(path).is_some_and(|call| on_route(&call, prefix))
        };
        assert!(on("/stepon/oauth2/token", Some("/stepon")));
        assert!(on("/stepon/oauth2/token", Some("/stepon/")));
        assert!(on("/oauth2/token", Some("")));
        assert!(!on("/stepon/x/oauth2/token", Some("/stepon")));
        assert!(!on(
            "/stepon/x/.well-known/oauth-authorization-server",
            Some("/stepon")
        ));
        assert!(!on("/steponx/oauth2/token", Some("/stepon")));
        // Undeclared: any prefix, as Kong.
        assert!(on("/stepon/x/oauth2/token", None));
    }

    #[test]
    fn the_rfc8414_section_3_1_location_names_the_prefix_after_the_well_known_part() {
        let on = |path: &str, prefix: Option<&str>| {
            endpoint(path).is_some_and(|call| on_route(&call, prefix))
        };
        let e = endpoint("/.well-known/oauth-authorization-server/stepon?x=1");
        assert_eq!(
            e.map(|e| (e.prefix, e.target, e.query)),
            Some((
                "/stepon".to_string(),
                "/.well-known/oauth-authorization-server",
                Some("x=1".into())
            ))
        );
        assert!(on(
            "/.well-known/oauth-authorization-server/stepon",
            Some("/stepon")
        ));
        assert!(on(
            "/.well-known/oauth-authorization-server/stepon/",
            Some("/stepon")
        ));
        assert!(on(
            "/.well-known/oauth-authorization-server/a/b",
            Some("/a/b")
        ));
        assert!(on("/.well-known/oauth-authorization-server", Some("")));
        assert!(!on(
            "/.well-known/oauth-authorization-server/other",
            Some("/stepon")
        ));
        assert!(!on(
            "/.well-known/oauth-authorization-server/stepon/x",
            Some("/stepon")
        ));
        assert_eq!(
            endpoint("/.well-known/oauth-authorization-serverX/stepon"),
            None
        );
    }

    #[test]
    fn the_jwks_and_openid_configuration_are_under_the_prefix() {
        let e = endpoint("/stepon/.well-known/jwks.json");
        assert_eq!(
            e.map(|e| (e.prefix, e.target)),
            Some(("/stepon".to_string(), "/.well-known/jwks.json"))
        );
        let e = endpoint("/stepon/.well-known/openid-configuration");
        assert_eq!(
            e.map(|e| (e.prefix, e.target)),
            Some(("/stepon".to_string(), "/.well-known/openid-configuration"))
        );
        // OpenID Connect puts it under the issuer's path only: no §3.1-style location.
        assert_eq!(endpoint("/.well-known/openid-configuration/stepon"), None);
    }

    #[test]
    fn other_paths_are_resources() {
        for p in [
            "/stepon/stepcounts",
            "/oauth2/tokens",
            "/x?next=/oauth2/token",
            "/oauth2/token2",
        ] {
            assert_eq!(endpoint(p), None, "{p}");
        }
    }
}
