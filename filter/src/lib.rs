//! OAuth 2.0 bearer-token authorization for Envoy (proxy-wasm), with Kong `oauth2` parity.
//!
//! The logic is plain Rust over plain data ([`token`], [`cache`], [`decision`], [`state`],
//! [`routes`], [`config`]), driven per request by [`flow`], a state machine that talks to Envoy
//! only through its [`flow::Host`] trait. All of it is unit-tested natively and as wasm (with
//! an in-memory host); the proxy-wasm adapter on top only implements `Host` over the ABI and
//! forwards callbacks.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod body;
pub mod cache;
pub mod config;
pub mod decision;
pub mod distrust;
pub mod flow;
pub mod headers;
pub mod jwt;
pub mod metrics;
pub mod poll_retry;
pub mod request;
pub mod routes;
pub mod state;
pub mod token;

#[cfg(all(target_arch = "wasm32", not(test)))]
mod adapter;

/// The proxy-wasm callbacks this filter does not implement. Envoy skips a callback the module
/// does not export, and the SDK exports them all, so each would cost a call into the VM on
/// every request for nothing (together ~13 µs of Envoy CPU per request in `make bench`).
/// `make build` removes these exports with `tools/wasm-trim`; a callback the filter starts to
/// implement must come off this list.
pub const UNUSED_CALLBACKS: [&str; 5] = [
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_log",
    "proxy_on_done",
];
