//! End-to-end tests through a real Envoy. One test binary (each file under `tests/` would be
//! a separate link); each module is one area of the product.

mod admin_api;
mod admin_hardening;
mod authorize;
mod beyond_kong;
mod browser;
mod cluster;
mod configurations;
mod declarative;
mod discovery;
mod faults;
mod hostile_input;
mod jwt;
mod jwt_tokens;
mod many_services;
mod oauth_hardening;
mod real_clients;
mod request_shapes;
mod resource;
mod security;
mod service_metrics;
mod token;
mod tutorial;
