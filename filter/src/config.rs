//! The filter's JSON configuration in Envoy (`configuration` of the wasm plugin).
//!
//! Two modes. With `token_service`, the filter protects a `service` of our token-service and
//! learns Kong's plugin settings from it by polling. With `introspection`, it protects the
//! route with any RFC 7662 authorization server (Keycloak, Hydra, ...), and the few settings
//! a protected request needs (`auth_header_name`, `hide_credentials`, `realm`) come from here.

use crate::cache;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    pub mode: Mode,
    pub poll_interval_ms: u64,
    pub cache: CacheConfig,
    /// Largest request body buffered (OAuth endpoints, `access_token` form fields).
    pub max_body_bytes: usize,
    /// The shared-data namespace of this configuration's cache and epoch (see
    /// [`cache_namespace`]).
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// `service`: what routes without an `oauth2.service` in their metadata are protected by
    /// (none: such routes pass untouched).
    TokenService {
        service: Option<String>,
        endpoint: Endpoint,
        /// Whether routes name their service in their metadata. `false`: every route the
        /// filter runs on is protected by `service`, and no request pays for the metadata
        /// lookup (in the wasm build a property read through Envoy's attribute machinery,
        /// 1.2–1.9 µs of Envoy's CPU per request in `make bench`).
        route_metadata: bool,
    },
    Introspection(IntrospectionMode),
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntrospectionMode {
    pub endpoint: Endpoint,
    pub path: String,
    /// `Basic <base64(client_id:client_secret)>`, computed once.
    pub authorization: String,
    pub auth_header_name: String,
    pub hide_credentials: bool,
    pub realm: Option<String>,
}

/// An Envoy cluster the filter calls.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub cluster: String,
    #[serde(default = "defaults::authority")]
    pub authority: String,
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Fixed number of shared-data slots: the cache's memory bound.
    pub slots: u32,
    /// Longest time a valid token is trusted without asking again.
    pub max_ttl_s: u64,
    /// How long an invalid token is remembered (shields the token-service from floods).
    pub negative_ttl_s: u64,
    /// Largest entry cached, in bytes (an identity with longer names is checked every time), so
    /// the cache's memory is bounded in bytes too: at most `slots` × `max_entry_bytes`.
    pub max_entry_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            slots: 16_384,
            max_ttl_s: 60,
            negative_ttl_s: 5,
            max_entry_bytes: 2048,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    service: Option<String>,
    token_service: Option<Endpoint>,
    introspection: Option<RawIntrospection>,
    #[serde(default = "defaults::poll_interval_ms")]
    poll_interval_ms: u64,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default = "defaults::max_body_bytes")]
    max_body_bytes: usize,
    auth_header_name: Option<String>,
    hide_credentials: Option<bool>,
    realm: Option<String>,
    route_metadata: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntrospection {
    cluster: String,
    #[serde(default = "defaults::authority")]
    authority: String,
    #[serde(default = "defaults::timeout_ms")]
    timeout_ms: u64,
    path: String,
    client_id: String,
    client_secret: String,
}

mod defaults {
    pub fn poll_interval_ms() -> u64 {
        1000
    }
    pub fn max_body_bytes() -> usize {
        65_536
    }
    pub fn authority() -> String {
        "token-service".to_string()
    }
    pub fn timeout_ms() -> u64 {
        1000
    }
}

#[derive(Debug, PartialEq)]
pub struct ConfigError(pub String);

fn error(problem: &str) -> ConfigError {
    ConfigError(format!("invalid filter configuration: {problem}"))
}

impl FilterConfig {
    pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| error(&e.to_string()))?;
        if raw.poll_interval_ms < 50 {
            return Err(error("`poll_interval_ms` must be at least 50"));
        }
        if raw.cache.slots == 0 {
            return Err(error("`cache.slots` must be positive"));
        }
        if raw.cache.max_entry_bytes < cache::MIN_ENTRY_BYTES {
            return Err(error(&format!(
                "`cache.max_entry_bytes` must be at least {} (an entry without identity)",
                cache::MIN_ENTRY_BYTES
            )));
        }
        let mode = match (raw.service, raw.token_service, raw.introspection) {
            (service, Some(endpoint), None) => {
                if raw.auth_header_name.is_some() || raw.hide_credentials.is_some() || raw.realm.is_some() {
                    return Err(error(
                        "`auth_header_name`, `hide_credentials` and `realm` are set in the token-service's plugin, not here",
                    ));
                }
                if service.as_deref().is_some_and(|s| !is_service_name(s)) {
                    return Err(error(SERVICE_RULE));
                }
                check_endpoint(&endpoint)?;
                let route_metadata = raw.route_metadata.unwrap_or(true);
                if !route_metadata && service.is_none() {
                    return Err(error(
                        "`route_metadata: false` protects every route with `service`: give it",
                    ));
                }
                Mode::TokenService { service, endpoint, route_metadata }
            }
            (None, None, Some(_)) if raw.route_metadata.is_some() => {
                return Err(error(
                    "`route_metadata` is for the token-service mode (introspection protects every route alike)",
                ))
            }
            (None, None, Some(i)) => {
                let endpoint = Endpoint { cluster: i.cluster, authority: i.authority, timeout_ms: i.timeout_ms };
                check_endpoint(&endpoint)?;
                if !i.path.starts_with('/') {
                    return Err(error("`introspection.path` must start with '/'"));
                }
                let auth_header_name = raw.auth_header_name.unwrap_or_else(|| "authorization".into()).to_ascii_lowercase();
                if auth_header_name.is_empty() {
                    return Err(error("`auth_header_name` must not be empty"));
                }
                let credentials = STANDARD.encode(format!("{}:{}", i.client_id, i.client_secret));
                Mode::Introspection(IntrospectionMode {
                    endpoint,
                    path: i.path,
                    authorization: format!("Basic {credentials}"),
                    auth_header_name,
                    hide_credentials: raw.hide_credentials.unwrap_or(false),
                    realm: Some(raw.realm.unwrap_or_else(|| "service".into())).filter(|r| !r.is_empty()),
                })
            }
            _ => {
                return Err(error(
                    "give either `token_service` (with the default `service`), or `introspection` (an RFC 7662 server)",
                ))
            }
        };
        let namespace = cache_namespace(&mode, &raw.cache);
        Ok(FilterConfig {
            mode,
            poll_interval_ms: raw.poll_interval_ms,
            cache: raw.cache,
            max_body_bytes: raw.max_body_bytes,
            namespace,
        })
    }

    /// The token-service mode's service name, for messages and paths.
    pub fn service(&self) -> Option<&str> {
        match &self.mode {
            Mode::TokenService { service, .. } => service.as_deref(),
            Mode::Introspection(_) => None,
        }
    }
}

/// Where this configuration keeps its cache in shared data, which every filter configuration
/// of a process (native build) or of a `vm_id` (wasm build) shares: derived from everything
/// that decides a cached verdict, so two configurations share entries (and an epoch) only when
/// either would have cached the same verdict for as long. Who answers (the mode, the cluster,
/// its authority, the introspection path and credentials) and how long an answer is trusted
/// (`max_ttl_s`, `negative_ttl_s`); the service is in each entry's key already. Hashed, so
/// no credential appears in a shared-data key. 16 hex digits.
pub fn cache_namespace(mode: &Mode, cache: &CacheConfig) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    match mode {
        Mode::TokenService { endpoint, .. } => {
            field(b"token_service");
            field(endpoint.cluster.as_bytes());
            field(endpoint.authority.as_bytes());
        }
        Mode::Introspection(i) => {
            field(b"introspection");
            field(i.endpoint.cluster.as_bytes());
            field(i.endpoint.authority.as_bytes());
            field(i.path.as_bytes());
            field(i.authorization.as_bytes());
        }
    }
    field(&cache.max_ttl_s.to_be_bytes());
    field(&cache.negative_ttl_s.to_be_bytes());
    let digest = hasher.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

const SERVICE_RULE: &str =
    "`service` must be a non-empty name of at most 128 letters, digits, '-', '.', '_' and '~'";

/// A service name that can travel in a path segment as it is (the filter's default, or a
/// route's `oauth2.service` metadata).
pub fn is_service_name(service: &str) -> bool {
    !service.is_empty()
        && service.len() <= 128
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn check_endpoint(endpoint: &Endpoint) -> Result<(), ConfigError> {
    if endpoint.cluster.is_empty() {
        return Err(error("a `cluster` must not be empty"));
    }
    if endpoint.timeout_ms == 0 {
        return Err(error("`timeout_ms` must be positive"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = FilterConfig::parse(br#"{"service":"step-on","token_service":{"cluster":"ts"}}"#);
        let Ok(c) = c else { unreachable!("valid") };
        assert_eq!(c.poll_interval_ms, 1000);
        assert_eq!(c.cache, CacheConfig::default());
        assert_eq!(c.max_body_bytes, 65_536);
        let Mode::TokenService {
            service,
            endpoint,
            route_metadata,
        } = c.mode
        else {
            unreachable!("token-service mode")
        };
        assert_eq!(
            (
                service.as_deref().unwrap_or_default(),
                endpoint.timeout_ms,
                endpoint.authority.as_str(),
                route_metadata
            ),
            ("step-on", 1000, "token-service", true)
        );
    }

    #[test]
    fn routes_may_be_left_to_the_default_service() {
        let c = FilterConfig::parse(
            br#"{"service":"step-on","token_service":{"cluster":"ts"},"route_metadata":false}"#,
        );
        assert!(c.is_ok_and(|c| matches!(
            c.mode,
            Mode::TokenService {
                route_metadata: false,
                ..
            }
        )));
    }

    #[test]
    fn the_default_service_is_optional_when_routes_name_theirs() {
        let c = FilterConfig::parse(br#"{"token_service":{"cluster":"ts"}}"#);
        assert!(c.is_ok_and(|c| c.service().is_none()));
    }

    #[test]
    fn introspection_mode_precomputes_basic_credentials() {
        let c = FilterConfig::parse(
            br#"{"introspection":{"cluster":"idp","path":"/introspect","client_id":"rs","client_secret":"pw"},"hide_credentials":true}"#,
        );
        let Ok(FilterConfig {
            mode: Mode::Introspection(i),
            ..
        }) = c
        else {
            unreachable!("introspection mode")
        };
        assert_eq!(i.authorization, "Basic cnM6cHc=");
        assert!(i.hide_credentials);
        assert_eq!(
            (i.auth_header_name.as_str(), i.realm.as_deref()),
            ("authorization", Some("service"))
        );
    }

    fn namespace(json: &str) -> String {
        match FilterConfig::parse(json.as_bytes()) {
            Ok(c) => c.namespace,
            Err(e) => unreachable!("{json}: {e:?}"),
        }
    }

    #[test]
    fn configurations_that_could_disagree_on_a_verdict_never_share_a_cache_namespace() {
        let ts = |cluster: &str, authority: &str, service: &str, ttl: u64| {
            namespace(&format!(
                r#"{{"service":"{service}","token_service":{{"cluster":"{cluster}","authority":"{authority}"}},"cache":{{"max_ttl_s":{ttl}}}}}"#
            ))
        };
        let idp = |cluster: &str, path: &str, id: &str, secret: &str| {
            namespace(&format!(
                r#"{{"introspection":{{"cluster":"{cluster}","path":"{path}","client_id":"{id}","client_secret":"{secret}"}}}}"#
            ))
        };
        let base = ts("staging", "ts", "s", 60);
        assert_eq!(base.len(), 16);
        // The same token-service (the service is in each entry's key): one namespace.
        assert_eq!(base, ts("staging", "ts", "other", 60));
        for other in [
            ts("production", "ts", "s", 60),
            ts("staging", "ts2", "s", 60),
            ts("staging", "ts", "s", 3600),
            idp("staging", "/introspect", "a", "b"),
        ] {
            assert_ne!(base, other);
        }
        let idp_base = idp("idp", "/introspect", "a", "b");
        for other in [
            idp("idp2", "/introspect", "a", "b"),
            idp("idp", "/other", "a", "b"),
            idp("idp", "/introspect", "c", "b"),
            idp("idp", "/introspect", "a", "d"),
        ] {
            assert_ne!(idp_base, other);
        }
        assert_eq!(idp_base, idp("idp", "/introspect", "a", "b"));
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        for bad in [
            &br#"{}"#[..],
            br#"{"service":"","token_service":{"cluster":"ts"}}"#,
            br#"{"service":"a/b","token_service":{"cluster":"ts"}}"#,
            br#"{"service":"a b","token_service":{"cluster":"ts"}}"#,
            br#"{"service":"s","token_service":{"cluster":"ts"},"cache":{"slots":0}}"#,
            br#"{"service":"s","token_service":{"cluster":"ts"},"cache":{"max_entry_bytes":45}}"#,
            br#"{"service":"s","token_service":{"cluster":"ts"},"typo":1}"#,
            br#"{"service":"s","token_service":{"cluster":"ts"},"hide_credentials":true}"#,
            br#"{"service":"s","token_service":{"cluster":"ts"},"introspection":{"cluster":"i","path":"/x","client_id":"a","client_secret":"b"}}"#,
            br#"{"introspection":{"cluster":"i","path":"x","client_id":"a","client_secret":"b"}}"#,
            // Without metadata and without a default, no route would name a service.
            br#"{"token_service":{"cluster":"ts"},"route_metadata":false}"#,
            br#"{"introspection":{"cluster":"i","path":"/x","client_id":"a","client_secret":"b"},"route_metadata":false}"#,
            br#"{"service":"s","token_service":{"cluster":"ts"},"route_metadata":"no"}"#,
            b"not json",
        ] {
            assert!(FilterConfig::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
