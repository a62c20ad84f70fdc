//! A recording upstream: an HTTP server (HTTP/1.1 and h2c) that answers 200 to everything and
//! keeps every request it receives — method, path with query, all headers, the whole body and
//! any trailers — so a test can assert on exactly what the gateway let through.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as on the request line.
    pub target: String,
    /// Every header, in order, names lower-case, values as bytes (they need not be UTF-8).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, Vec<u8>)>,
    /// The body could not be read to its end (the gateway reset the stream midway).
    pub body_error: Option<String>,
}

impl Recorded {
    /// Every value of `name` (lower-case), as text.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

type Log = Arc<Mutex<Vec<Recorded>>>;

/// Serves on a loopback port until dropped.
pub struct Recorder {
    pub port: u16,
    log: Log,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the recording upstream");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
            .expect("bind the recording upstream");
        let port = listener.local_addr().expect("local address").port();
        let log = Log::default();
        let app = Router::new().fallback(record).with_state(log.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Recorder {
            port,
            log,
            runtime: Some(runtime),
        }
    }

    /// Every request received so far.
    pub fn all(&self) -> Vec<Recorded> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The requests whose path is `path` (query ignored).
    pub fn at(&self, path: &str) -> Vec<Recorded> {
        self.all()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }
}

async fn record(State(log): State<Log>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (body, trailers, body_error) = read_body(body).await;
    let entry = Recorded {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        headers: pairs(&parts.headers),
        body,
        trailers: trailers.as_ref().map(pairs).unwrap_or_default(),
        body_error,
    };
    let size = entry.body.len();
    if let Ok(mut log) = log.lock() {
        log.push(entry);
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        format!("{{\"recorded\":true,\"body_bytes\":{size}}}"),
    )
        .into_response()
}

async fn read_body(body: Body) -> (Vec<u8>, Option<HeaderMap>, Option<String>) {
    let mut bytes = Vec::new();
    let mut trailers = None;
    let mut body = body;
    loop {
        match body.frame().await {
            None => return (bytes, trailers, None),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => bytes.extend_from_slice(&data),
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            },
            Some(Err(e)) => return (bytes, trailers, Some(e.to_string())),
        }
    }
}

fn pairs(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}
