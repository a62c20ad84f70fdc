use clap::Parser;
use std::sync::Arc;
use std::time::Duration;
use token_service::admin::{AllowedHosts, AllowedOrigins};
use token_service::app::{admin_router, gateway_router, AppState, OAuthSettings};
use token_service::config::{Command, Config};
use token_service::declarative::cli;
use token_service::jwt::{Signing, SigningSettings};
use token_service::model::now;
use token_service::store::{Store, StoreOptions};
use tracing_subscriber::EnvFilter;

/// Feed entries older than this are pruned; a filter further behind resets its cache.
const FEED_RETENTION_S: i64 = 3600;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let logs = tracing_subscriber::fmt().with_env_filter(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    );
    if let Some(Command::Config(command)) = &config.command {
        // What a command shows goes to stdout (a dump is a file), its logs to stderr.
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init();
        let mut out = std::io::stdout().lock();
        return match cli::run(command, &config.database, &mut out).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let options = StoreOptions {
        index_entries: config.index_entries,
        feed_poll: Duration::from_millis(config.feed_poll_ms),
        max_token_digests: config.index_token_digests,
    };
    let store = Store::connect(&config.database, options)
        .await
        .map_err(|e| format!("cannot open database {}: {e}", config.database))?;
    tracing::info!(database = %config.database, "database ready");
    if let Some(file) = &config.declarative_config {
        let diff = cli::sync_file(&store, file).await?;
        tracing::info!(file = %file.display(), "declarative configuration synced");
        for line in diff.lines() {
            tracing::info!("{line}");
        }
    }
    let state = AppState::new(store.clone(), config.admin_key.clone())
        .with_oauth(OAuthSettings {
            issuer: config.issuer.clone(),
            replay_grace_s: config.replay_grace_s,
        })
        .with_admin_origins(AllowedOrigins::new(
            config.admin_allowed_origins.clone(),
            Some(config.admin_listen),
        ))
        .with_admin_hosts(AllowedHosts::new(config.admin_allowed_hosts.clone()))
        .with_signing(SigningSettings {
            publish_delay_s: config.signing_key_publish_delay_s,
            ..SigningSettings::default()
        });
    tracing::info!(issuer = config.issuer.as_str(), "OAuth issuer");

    let gateway = tokio::net::TcpListener::bind(config.gateway_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.gateway_listen))?;
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.admin_listen))?;
    tracing::info!(
        "gateway API (for Envoy) listening on http://{}",
        config.gateway_listen
    );
    tracing::info!("admin API listening on http://{}", config.admin_listen);
    if config.admin_key.is_none() && !config.admin_listen.ip().is_loopback() {
        tracing::warn!("the admin API listens beyond loopback without --admin-key");
    }

    let signing = state.signing.clone();
    tokio::spawn(async move {
        if let Err(e) = signing.prepare().await {
            tracing::warn!(error = %e, "no signing key yet; the first JWT will make one");
        }
    });
    tokio::spawn(purge_periodically(
        store,
        state.signing.clone(),
        Duration::from_secs(config.purge_interval_s.max(1)),
    ));
    let gateway_server =
        axum::serve(gateway, gateway_router(state.clone())).with_graceful_shutdown(shutdown());
    let admin_server = axum::serve(admin, admin_router(state)).with_graceful_shutdown(shutdown());
    let (g, a) = tokio::join!(gateway_server, admin_server);
    g.and(a).map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Expired codes and tokens, and retired signing keys whose tokens have all expired, are
/// deleted in the background so the tables (and the JWKS) stay bounded.
async fn purge_periodically(store: Store, signing: Arc<Signing>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        match store.purge_expired(now(), FEED_RETENTION_S).await {
            Ok(purged) if purged.codes_and_tokens() == 0 => {}
            Ok(purged) => tracing::info!(
                rows = purged.codes_and_tokens(),
                "purged expired codes and tokens"
            ),
            Err(e) => tracing::warn!(error = %e, "purge failed"),
        }
        match signing.purge(now()).await {
            Ok(0) => {}
            Ok(keys) => tracing::info!(keys, "deleted retired signing keys no longer published"),
            Err(e) => tracing::warn!(error = %e, "signing key purge failed"),
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
