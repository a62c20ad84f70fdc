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
