//! OAuth 2.0 bearer-token authorization for Envoy (proxy-wasm), with Kong `oauth2` parity.
//!
//! The logic is plain Rust over plain data ([`token`], [`cache`], [`decision`], [`state`],
//! [`routes`], [`config`]), unit-tested natively and as wasm; the proxy-wasm adapter on top
//! only moves bytes between Envoy and those functions.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod cache;
pub mod config;
pub mod decision;
pub mod request;
pub mod routes;
pub mod state;
pub mod token;

#[cfg(all(target_arch = "wasm32", not(test)))]
mod adapter;
