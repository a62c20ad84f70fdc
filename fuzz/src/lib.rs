//! Fuzz targets: every function that parses untrusted bytes, called with arbitrary input.
//! A target passes when it returns (any result) without panicking.
//!
//! The driver (`src/bin/fuzz.rs`) feeds them random and mutated inputs on stable Rust; the same
//! targets fit `cargo fuzz` (libFuzzer) where a nightly toolchain is available.

use oauth2_filter::{cache, config, headers, request, routes, state, token};
use token_service::grants::{client_auth, pkce, redirect, scope};
use token_service::model::OAuth2Config;
use token_service::params::{self, Nesting};

pub type Target = fn(&[u8]);

pub const TARGETS: &[(&str, Target)] = &[
    ("filter_token_sources", filter_token_sources),
    ("filter_cache_entry", filter_cache_entry),
    ("filter_state_and_check", filter_state_and_check),
    ("filter_config", filter_config),
    ("filter_routes", filter_routes),
    ("filter_header_map", filter_header_map),
    ("service_form_params", service_form_params),
    ("service_json_params", service_json_params),
    ("service_multipart_params", service_multipart_params),
    ("service_grant_rules", service_grant_rules),
];

/// Seeds that reach deep into each parser; the driver mutates them.
pub const SEEDS: &[&[u8]] = &[
    b"Bearer abcdefghijklmnopqrstuvwxyz012345",
    b"/stepon/stepcounts?a=1&access_token=tok%2B1&b=2",
    b"access_token=x&foo=bar&access_token=",
    b"{\"seq\":3,\"reset\":false,\"revoked\":[\"00\"],\"service\":{\"id\":\"s\",\"name\":\"n\"},\"plugin\":{\"id\":\"p\",\"auth_header_name\":\"authorization\",\"hide_credentials\":true,\"realm\":\"service\",\"global_credentials\":false,\"anonymous\":null,\"anonymous_error\":null}}",
    b"{\"active\":true,\"consumer\":{\"id\":\"c\",\"username\":\"bob\",\"custom_id\":null},\"credential\":{\"id\":\"k\",\"client_id\":\"app\"},\"authenticated_userid\":\"u\",\"scope\":\"email\",\"exp\":1}",
    b"{\"service\":\"step-on\",\"token_service\":{\"cluster\":\"ts\",\"timeout_ms\":10},\"cache\":{\"slots\":3}}",
    b"/prefix/oauth2/token/?grant_type=password",
    b"grant_type=authorization_code&code=abc&client_id=x&client_secret=y&redirect_uri=http%3A%2F%2Fa.test%2F&scope=email+profile",
    b"{\"grant_type\":\"refresh_token\",\"scope\":[\"a\"],\"code_verifier\":12,\"redirect_uri\":null}",
    b"--XX\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\ntok\r\n--XX--\r\n",
    b"\x02\x00\x00\x00\x05\x00\x00\x00\x02\x00\x00\x00\x0d\x00\x00\x00\x08\x00\x00\x00:path\x00/a\x00authorization\x00Bearer \xff\x00",
    b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x64\x01\x00\x02c1\xff\xff\x00\x03bob",
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

pub fn filter_token_sources(data: &[u8]) {
    let s = text(data);
    if let Some(found) = token::from_header(&s) {
        let _ = token::plausible(&found.token);
    }
    let _ = token::from_query(&s);
    let _ = token::from_form_body(data);
    let stripped = token::without_access_token(data);
    assert!(stripped.len() <= data.len(), "stripping never grows a body");
    let path = token::path_without_access_token(&s);
    assert!(
        token::from_query(&path).is_none(),
        "a stripped path carries no token: {path:?}"
    );
}

pub fn filter_cache_entry(data: &[u8]) {
    if let Some(entry) = cache::Entry::decode(data) {
        let again = cache::Entry::decode(&entry.encode());
        assert_eq!(again.as_ref(), Some(&entry), "entries round-trip");
    }
    let _ = cache::digest_from_hex(&text(data));
    let _ = cache::slot_key(&cache::digest(&text(data)), (data.len() as u32) % 7);
}

pub fn filter_state_and_check(data: &[u8]) {
    if let Some(poll) = state::StatePoll::parse(data) {
        let _ = poll.protection();
    }
    if let Some(verdict) = state::Verdict::parse(data) {
        let _ = cache::expiry_for(&verdict, u64::MAX - 1, u64::MAX, u64::MAX);
        if let state::Verdict::Active(identity) = &verdict {
            let _ = oauth2_filter::decision::authenticated(identity);
        }
    }
}

pub fn filter_config(data: &[u8]) {
    let _ = config::FilterConfig::parse(data);
}

/// Header maps straight from the host (any client bytes in them), then everything the
/// filter derives from a request's headers.
pub fn filter_header_map(data: &[u8]) {
    let pairs = headers::decode_pairs(data);
    let view = request::RequestView::from_headers(pairs, "authorization");
    let _ = view.is_form_post();
    let _ = view.relayed_headers("x-token");
    if let Some(auth) = &view.auth {
        let _ = token::from_header(auth);
    }
    let _ = headers::is_safe_value(&text(data));
}

pub fn filter_routes(data: &[u8]) {
    let _ = routes::endpoint(&text(data));
}

pub fn service_form_params(data: &[u8]) {
    let flat = params::parse_form(data, Nesting::Flat);
    let dotted = params::parse_form(data, Nesting::Dotted);
    let _ = params::merge(flat, dotted);
}

pub fn service_json_params(data: &[u8]) {
    let _ = params::parse_json(data);
}

pub fn service_multipart_params(data: &[u8]) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let body = data.to_vec();
    let _ = runtime.block_on(params::parse_body(
        Some("multipart/form-data; boundary=XX"),
        body.into(),
        Nesting::Flat,
    ));
}

pub fn service_grant_rules(data: &[u8]) {
    let mut map = params::parse_form(data, Nesting::Flat);
    if let Ok(json) = params::parse_json(data) {
        map.extend(json);
    }
    let config = OAuth2Config {
        scopes: Some(vec!["email".into(), "profile".into()]),
        mandatory_scope: data.first().is_some_and(|b| b % 2 == 0),
        ..OAuth2Config::default()
    };
    let _ = scope::validate(&config, map.get("scope"));
    let _ = scope::still_offered(&config, map.get("scope").and_then(|v| v.as_str()));
    let _ = pkce::challenge_from(&map);
    let _ = pkce::verify(
        map.get("code_verifier"),
        map.get("code_challenge").and_then(|v| v.as_str()),
    );
    let _ = client_auth::presented(&map, Some(&text(data)));
    let registered = vec!["http://a.test/cb?x=1".to_string(), text(data)];
    let _ = redirect::resolve(&registered, map.get("redirect_uri"));
    let pairs: Vec<(String, serde_json::Value)> = map.into_iter().collect();
    let _ = redirect::build(&text(data), &pairs, redirect::Placement::Query);
    let _ = redirect::build(&text(data), &pairs, redirect::Placement::Fragment);
    let _ = redirect::registration_error(&text(data));
}
