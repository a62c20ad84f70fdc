//! The token-service: stores consumers, OAuth 2.0 clients, codes and tokens in SQLite, serves
//! the OAuth endpoints and the filter's gateway API, and a Kong-shaped admin API.

pub mod admin;
pub mod app;
pub mod config;
pub mod declarative;
pub mod gateway;
pub mod grants;
pub mod jwt;
pub mod metrics;
pub mod model;
pub mod oauth;
pub mod params;
pub mod secrets;
pub mod store;
