//! Which requests are the OAuth endpoints the filter serves on every protected route.

/// `<prefix>/oauth2/{authorize,token,introspect,revoke}[/]` or
/// `<prefix>/.well-known/oauth-authorization-server`, with the query string ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointCall {
    pub prefix: String,
    /// The token-service path below `/gateway/v1/services/{service}`.
    pub target: &'static str,
    pub query: Option<String>,
}

const ENDPOINTS: [(&str, &str); 5] = [
    ("/oauth2/authorize", "/oauth2/authorize"),
    ("/oauth2/token", "/oauth2/token"),
    ("/oauth2/introspect", "/oauth2/introspect"),
    ("/oauth2/revoke", "/oauth2/revoke"),
    (
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server",
    ),
];

pub fn endpoint(path: &str) -> Option<EndpointCall> {
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (path, None),
    };
    let trimmed = path_only.strip_suffix('/').unwrap_or(path_only);
    ENDPOINTS.iter().find_map(|(suffix, target)| {
        trimmed.strip_suffix(suffix).map(|prefix| EndpointCall {
            prefix: prefix.to_string(),
            target,
            query: query.clone(),
        })
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
