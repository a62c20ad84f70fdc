//! The seed tutorial's Step On API, as the demo upstream behind Envoy, and the two web apps of
//! the tutorial's browser path.
//!
//! - The API (`--listen`, :3000): `GET /stepcounts` answers the step counts of the user named
//!   by `X-Authenticated-Userid` (set by the gateway), or by `mock-logged-in-as` when no plugin
//!   protects the route (no `X-Consumer-ID`: behind the plugin it is ignored); 401 when neither
//!   is present. Every answer carries the request headers
//!   it received (lower-case), so users and tests see exactly what the gateway forwarded. Any
//!   other path echoes the request.
//! - The partners' upstream (`--partners-listen`, :3001 in `make run`): the target of the
//!   second route (`/stepon-partners`, a service with no plugin), an echo of every request and
//!   nothing else. Its own listener, so no path on that route reaches the step counts.
//! - Step On's authorization page (same port, `/authorize`): Clark logs in and consents; Step
//!   On's server then calls the gateway's `/oauth2/authorize` with the provision key, as Kong's
//!   hello-world app does. See `step_on.rs`.
//! - Shoe Fly Shoe (`--client-listen`, :5000 in `make run`): the client app that sends Clark
//!   there and, at its `/callback`, exchanges the code and shows his step counts. See
//!   `shoe_fly.rs`.

mod api;
mod gateway;
mod html;
mod random;
mod sessions;
mod shoe_fly;
mod step_on;
mod tls;

use clap::Parser;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(
    name = "demo-upstream",
    about = "The Step On demo API (step counts, an echo of every request), Step On's authorization page and the Shoe Fly Shoe client app"
)]
struct Args {
    /// The Step On API and its authorization page.
    #[arg(long, env = "DEMO_UPSTREAM_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Also run the partners' upstream here: an echo of every request, with no user data.
    #[arg(long, env = "DEMO_PARTNERS_LISTEN")]
    partners_listen: Option<SocketAddr>,
    /// Also run the Shoe Fly Shoe client app here (its redirect URI is `<client-url>/callback`).
    #[arg(long, env = "DEMO_CLIENT_LISTEN")]
    client_listen: Option<SocketAddr>,
    #[command(flatten)]
    gateway: gateway::Config,
    #[command(flatten)]
    shoe_fly: shoe_fly::Config,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-upstream: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let gateway = gateway::Gateway::new(args.gateway)?;
    let api = api::router().merge(step_on::router(gateway.clone()));
    let api_listener = bind(args.listen).await?;
    println!(
        "demo-upstream (Step On API, authorization page at /authorize) listening on http://{}",
        args.listen
    );
    let mut servers = vec![tokio::spawn(serve(api_listener, api))];
    if let Some(addr) = args.partners_listen {
        let listener = bind(addr).await?;
        println!("demo-upstream (partners' echo, no user data) listening on http://{addr}");
        servers.push(tokio::spawn(serve(listener, api::partners_router())));
    }
    if let Some(addr) = args.client_listen {
        let listener = bind(addr).await?;
        println!("Shoe Fly Shoe (demo OAuth client) listening on http://{addr}");
        let app = shoe_fly::router(gateway, args.shoe_fly);
        servers.push(tokio::spawn(serve(listener, app)));
    }
    for server in servers {
        server.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

async fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> Result<(), String> {
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // Step On's pages bound sessions per client address.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string())
}
