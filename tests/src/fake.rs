//! A misbehaving stand-in for the token-service's gateway listener (fault tests): a real HTTP
//! server (HTTP/1.1 and h2c, like the token-service) whose every answer is wrong on purpose,
//! except its health check (`GET /status`, 200): Envoy only sends calls to token-service
//! replicas that pass it, and a replica that passes it and then misbehaves is the fault here.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy)]
pub enum Misbehaviour {
    /// Accepts, reads, and answers nothing for this long.
    Slow(Duration),
    /// Answers 200 with a body that is not the protocol's JSON.
    Garbage,
    /// Answers 500.
    Failing,
    /// Answers 503, as a replica that lost its database does (until Envoy's health checks,
    /// a second apart, take it out of rotation).
    Unavailable,
    /// A well-behaved RFC 7662 server that knows no token: 200 `{"active": false}`.
    KnowsNoToken,
}

/// Serves until dropped; dropping it closes every connection it holds, so Envoy's pooled
/// connections cannot reach it any more once the real token-service is back.
pub struct FakeTokenService {
    runtime: Option<tokio::runtime::Runtime>,
    health_checks: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl FakeTokenService {
    pub fn start(port: u16, behaviour: Misbehaviour) -> FakeTokenService {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake token-service");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .expect("bind the fake token-service");
        let health_checks = Arc::new(AtomicUsize::new(0));
        let counted = health_checks.clone();
        let calls = Arc::new(AtomicUsize::new(0));
        let called = calls.clone();
        let app = Router::new()
            .route(
                "/status",
                get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    healthy()
                }),
            )
            .fallback(move || {
                called.fetch_add(1, Ordering::SeqCst);
                misbehave(behaviour)
            });
        runtime.spawn(async move { axum::serve(listener, app).await });
        FakeTokenService {
            runtime: Some(runtime),
            health_checks,
            calls,
        }
    }

    /// How many health checks (`GET /status`) it has answered.
    pub fn health_checks(&self) -> usize {
        self.health_checks.load(Ordering::SeqCst)
    }

    /// How many other requests (the filter's calls) it has received.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn healthy() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"database":{"reachable":true}}"#,
    )
        .into_response()
}

async fn misbehave(behaviour: Misbehaviour) -> Response {
    match behaviour {
        Misbehaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Misbehaviour::Garbage => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "<html>oops</p>",
        )
            .into_response(),
        Misbehaviour::Failing => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Misbehaviour::Unavailable => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Misbehaviour::KnowsNoToken => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"active":false}"#,
        )
            .into_response(),
    }
}

impl Drop for FakeTokenService {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}
