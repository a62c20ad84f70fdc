//! Command line and environment.

use clap::Parser;
use std::net::SocketAddr;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "token-service",
    version,
    about = "OAuth 2.0 token service and admin API for the Envoy oauth2 filter"
)]
pub struct Config {
    /// Where the data lives: a SQLite file (created with its directory when missing; one
    /// token-service process), or a PostgreSQL URL `postgres://user[:password]@host[:port]/db`
    /// that several replicas share.
    #[arg(
        long,
        env = "TOKEN_SERVICE_DATABASE",
        default_value = "./data/token-service.db",
        hide_env_values = true,
        global = true
    )]
    pub database: crate::store::Database,
    /// A declarative file (Kong's format, YAML or JSON) synced into the database at start-up,
    /// before the service answers: what it manages is created, updated or deleted to match.
    /// A file that does not apply stops the start.
    #[arg(long, env = "TOKEN_SERVICE_DECLARATIVE_CONFIG")]
    pub declarative_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// PostgreSQL: milliseconds between two reads of the changes other replicas committed
    /// (revocations, admin changes), which this replica's in-memory index then forgets.
    #[arg(long, env = "TOKEN_SERVICE_FEED_POLL_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub feed_poll_ms: u64,
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
    /// Origins (`scheme://host[:port]`, comma-separated) whose web pages may call the admin
    /// API; browser requests from any other origin are refused (403). Requests without an
    /// `Origin` header (curl, scripts) are unaffected; the admin listener's own origin is allowed.
    #[arg(
        long,
        env = "TOKEN_SERVICE_ADMIN_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub admin_allowed_origins: Vec<crate::admin::Origin>,
    /// Host names (`name` or `name:port`, comma-separated) under which the admin API may be
    /// reached, besides IP addresses and `localhost`: a request whose `Host` names any other
    /// is refused (421), which stops DNS-rebinding pages. Set it when callers use a DNS name
    /// (`docker compose` service names, an internal admin host name).
    #[arg(long, env = "TOKEN_SERVICE_ADMIN_ALLOWED_HOSTS", value_delimiter = ',')]
    pub admin_allowed_hosts: Vec<crate::admin::AllowedHost>,
    /// Tokens the in-memory check index holds at most (each a few hundred bytes); checks of
    /// tokens beyond it read the database.
    #[arg(long, env = "TOKEN_SERVICE_INDEX_ENTRIES", default_value_t = crate::store::DEFAULT_INDEX_ENTRIES)]
    pub index_entries: usize,
    /// Live tokens whose digests (about 90 bytes each) the index holds at most: with every
    /// live token's digest in memory, a check of an unknown token is refused without reading
    /// the database. With more live tokens than this, such checks read it.
    #[arg(long, env = "TOKEN_SERVICE_INDEX_TOKEN_DIGESTS", default_value_t = crate::store::DEFAULT_MAX_DIGESTS)]
    pub index_token_digests: usize,
    /// Seconds between purges of expired codes and tokens.
    #[arg(long, env = "TOKEN_SERVICE_PURGE_INTERVAL", default_value_t = 60)]
    pub purge_interval_s: u64,
    /// The public HTTPS address of the Envoy listener (absolute `https://` URL): the RFC 8414
    /// issuer, to which each route's prefix is appended. Never taken from a request's `Host`.
    #[arg(long, env = "TOKEN_SERVICE_ISSUER", default_value = DEFAULT_ISSUER)]
    pub issuer: Issuer,
    /// Seconds after a code or refresh token was redeemed during which presenting it again is
    /// refused without revoking what it produced (a client racing itself); later, it revokes
    /// the whole grant as a theft. 0 makes every later presentation a theft.
    #[arg(long, env = "TOKEN_SERVICE_REPLAY_GRACE_S", default_value_t = crate::grants::replay::DEFAULT_GRACE_S,
          value_parser = clap::value_parser!(i64).range(0..=300))]
    pub replay_grace_s: i64,
    /// Seconds a signing key added through the admin API is published (JWKS, state poll)
    /// before it signs; the active key retires at that moment. At least two of the filters'
    /// state-poll intervals, so every Envoy knows the key before it sees a token it signed.
    #[arg(long, env = "TOKEN_SERVICE_SIGNING_KEY_PUBLISH_DELAY_S",
          default_value_t = crate::jwt::DEFAULT_PUBLISH_DELAY_S,
          value_parser = clap::value_parser!(i64).range(0..=86_400))]
    pub signing_key_publish_delay_s: i64,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Declarative configuration: check a file, show or apply its diff, or dump the
    /// database's configuration (on the database `--database` names).
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConfigCommand {
    /// Checks a file (syntax, fields, constraints, `{vault://env/NAME}` references) without
    /// touching the database.
    Validate { file: std::path::PathBuf },
    /// Shows what a sync of the file would create, update and delete; changes nothing.
    Diff { file: std::path::PathBuf },
    /// Applies the file in one transaction, and shows what changed.
    Sync { file: std::path::PathBuf },
    /// Writes the database's configuration as a declarative file (YAML; secrets left out).
    Dump {
        /// `yaml` or `json`.
        #[arg(long, default_value = "yaml", value_parser = ["yaml", "json"])]
        format: String,
    },
}

/// The HTTPS listener `make run` and `docker compose` start.
pub const DEFAULT_ISSUER: &str = "https://localhost:8443";

/// An absolute `https` URL without query, fragment or user info, kept without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer(String);

impl Issuer {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Issuer {
    fn default() -> Self {
        Issuer(DEFAULT_ISSUER.to_string())
    }
}

impl std::str::FromStr for Issuer {
    type Err = String;

    /// RFC 8414 §2: an `https` URL with no query or fragment.
    fn from_str(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| format!("not an absolute URL: {e}"))?;
        if url.scheme() != "https" {
            return Err("the issuer must be an https URL".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the issuer must name a host".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("the issuer must have no query or fragment".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the issuer must have no user info".into());
        }
        Ok(Issuer(url.as_str().trim_end_matches('/').to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_absolute_https_urls() {
        let ok = |s: &str| s.parse::<Issuer>().map(|i| i.as_str().to_string());
        assert_eq!(
            ok("https://auth.example.com/"),
            Ok("https://auth.example.com".into())
        );
        assert_eq!(ok("https://h:9443/base"), Ok("https://h:9443/base".into()));
        assert_eq!(ok(DEFAULT_ISSUER), Ok(DEFAULT_ISSUER.into()));
        for bad in [
            "http://auth.example.com",
            "auth.example.com",
            "/relative",
            "https://h/?q=1",
            "https://h/#f",
            "https://u:p@h",
        ] {
            assert!(bad.parse::<Issuer>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_takes_the_issuer_and_the_grace() {
        let c = Config::try_parse_from([
            "token-service",
            "--issuer",
            "https://gw.example.com",
            "--replay-grace-s",
            "2",
        ]);
        let c = c.map(|c| (c.issuer.as_str().to_string(), c.replay_grace_s));
        assert_eq!(c.ok(), Some(("https://gw.example.com".to_string(), 2)));
        assert!(Config::try_parse_from(["token-service", "--issuer", "http://x"]).is_err());
        assert!(Config::try_parse_from(["token-service", "--replay-grace-s", "-1"]).is_err());
    }

    #[test]
    fn admin_allowed_hosts_are_a_comma_separated_list() {
        let hosts = |args: &[&str]| {
            let mut all = vec!["token-service"];
            all.extend_from_slice(args);
            Config::try_parse_from(all).map(|c| c.admin_allowed_hosts.len())
        };
        assert_eq!(hosts(&[]).ok(), Some(0));
        assert_eq!(
            hosts(&["--admin-allowed-hosts", "token-service,admin.test:8001"]).ok(),
            Some(2)
        );
        assert!(hosts(&["--admin-allowed-hosts", "http://admin.test"]).is_err());
    }

    #[test]
    fn the_database_is_a_file_or_a_postgres_url() {
        use crate::store::Database;
        let database = |args: &[&str]| {
            let mut all = vec!["token-service"];
            all.extend_from_slice(args);
            Config::try_parse_from(all).map(|c| c.database)
        };
        assert_eq!(
            database(&["--database", "/var/lib/ts.db"]).ok(),
            Some(Database::Sqlite("/var/lib/ts.db".into()))
        );
        let url = "postgres://oauth2:secret@db:5432/oauth2";
        assert_eq!(
            database(&["--database", url]).ok(),
            Some(Database::Postgres(url.into()))
        );
        assert!(database(&["--database", "postgres://h:notaport/x"]).is_err());
        let shown = Database::Postgres(url.into()).to_string();
        assert!(!shown.contains("secret"), "{shown}");
    }
}
