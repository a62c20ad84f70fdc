//! End-to-end harness: real token-service, demo upstream and Envoy processes on free loopback
//! ports, with typed helpers for the admin API and the OAuth flows through Envoy.
//!
//! Binaries come from `make build` (release token-service and demo-upstream, the wasm filter)
//! and Envoy from the project's virtualenv (`.venv/bin/envoy`, or `ENVOY_BIN`).

pub mod docker;
pub mod fake;
pub mod http;
pub mod kong;
pub mod oauth;
mod paths;
pub mod postgres;
mod process;
pub mod recorder;
pub mod stack;
pub mod wire;

pub use http::{Answer, Client, Text};
pub use process::free_port;
pub use stack::{Database, Gateway, GatewayOptions, Stack, StackOptions};
