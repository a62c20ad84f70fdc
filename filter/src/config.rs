//! The filter's JSON configuration in Envoy (`configuration` of the wasm plugin).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The service this filter protects, by name (or id) in the token-service.
    pub service: String,
    pub token_service: TokenService,
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    #[serde(default)]
    pub cache: CacheConfig,
    /// Largest request body buffered (OAuth endpoints, `access_token` form fields).
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenService {
    /// The Envoy cluster of the token-service's gateway listener.
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
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            slots: 16_384,
            max_ttl_s: 60,
            negative_ttl_s: 5,
        }
    }
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

impl FilterConfig {
    pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
        let config: FilterConfig = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError(format!("invalid filter configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let problem = if self.service.is_empty() {
            Some("`service` must not be empty")
        } else if !self
            .service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            Some("`service` may only hold letters, digits, '-', '.', '_' and '~'")
        } else if self.token_service.cluster.is_empty() {
            Some("`token_service.cluster` must not be empty")
        } else if self.token_service.timeout_ms == 0 {
            Some("`token_service.timeout_ms` must be positive")
        } else if self.poll_interval_ms < 50 {
            Some("`poll_interval_ms` must be at least 50")
        } else if self.cache.slots == 0 {
            Some("`cache.slots` must be positive")
        } else {
            None
        };
        match problem {
            Some(p) => Err(ConfigError(format!("invalid filter configuration: {p}"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = FilterConfig::parse(br#"{"service":"step-on","token_service":{"cluster":"ts"}}"#);
        let c = c.ok();
        assert_eq!(c.as_ref().map(|c| c.poll_interval_ms), Some(1000));
        assert_eq!(
            c.as_ref().map(|c| c.cache.clone()),
            Some(CacheConfig::default())
        );
        assert_eq!(c.as_ref().map(|c| c.token_service.timeout_ms), Some(1000));
        assert_eq!(c.map(|c| c.max_body_bytes), Some(65_536));
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        for bad in [
            &br#"{}"#[..],
            br#"{"service":"","token_service":{"cluster":"ts"}}"#,
            br#"{"service":"a b","token_service":{"cluster":"ts"}}"#,
            br#"{"service":"s","token_service":{"cluster":"ts"},"cache":{"slots":0}}"#,
            br#"{"service":"s","token_service":{"cluster":"ts"},"typo":1}"#,
            b"not json",
        ] {
            assert!(FilterConfig::parse(bad).is_err());
        }
    }
}
