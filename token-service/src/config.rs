//! Command line and environment.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "token-service",
    version,
    about = "OAuth 2.0 token service and admin API for the Envoy oauth2 filter"
)]
pub struct Config {
    /// SQLite database file (created with its directory when missing).
    #[arg(
        long,
        env = "TOKEN_SERVICE_DATABASE",
        default_value = "./data/token-service.db"
    )]
    pub database: PathBuf,
    /// Address of the listener Envoy's filter calls (state poll, token checks, OAuth endpoints).
    #[arg(
        long,
        env = "TOKEN_SERVICE_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub gateway_listen: SocketAddr,
    /// Address of the admin API. Keep it on loopback or a private network.
    #[arg(
        long,
        env = "TOKEN_SERVICE_ADMIN_LISTEN",
        default_value = "127.0.0.1:8001"
    )]
    pub admin_listen: SocketAddr,
    /// When set, admin requests must carry this value in the `x-admin-key` header.
    #[arg(long, env = "TOKEN_SERVICE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Tokens the in-memory check index holds at most (each a few hundred bytes); checks of
    /// tokens beyond it read the database.
    #[arg(long, env = "TOKEN_SERVICE_INDEX_ENTRIES", default_value_t = crate::store::DEFAULT_INDEX_ENTRIES)]
    pub index_entries: usize,
    /// Seconds between purges of expired codes and tokens.
    #[arg(long, env = "TOKEN_SERVICE_PURGE_INTERVAL", default_value_t = 60)]
    pub purge_interval_s: u64,
}
