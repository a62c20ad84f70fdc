//! What the filter needs from its host (Envoy), and nothing more. The proxy-wasm adapter
//! implements it over the ABI; [`super::mock::MockHost`] implements it in memory for tests.
//! Every method is infallible from the flow's point of view: a host call that fails is
//! reported the way that fails closed (no data, no dispatch, no write).

use crate::request::RequestHeaders;
use std::time::Duration;

/// What a callback tells the host to do with the request. `Continue` is only ever returned by
/// [`super::Flow::action`], and only once the request has been allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// An HTTP call to a cluster (the token-service, or an introspection server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// The answer to a dispatched call, read whole. Envoy answers a call that failed (connect
/// error, timeout, reset) itself, with a 5xx and a plain-text body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallAnswer {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CallAnswer {
    pub fn status(&self) -> Option<&str> {
        self.header(":status")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Envoy, seen from one request (the request methods) or from the worker (the rest).
pub trait Host {
    /// Every request header, decoded without trusting its bytes.
    fn request_headers(&self) -> RequestHeaders;
    /// Replaces (or with `None` removes) every value of a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    fn add_request_header(&self, name: &str, value: &str);
    /// The request body buffered so far (`size` bytes from the start).
    fn request_body(&self, size: usize) -> Vec<u8>;
    fn replace_request_body(&self, size: usize, body: &[u8]);
    /// Whether the client reached Envoy over TLS (Envoy's view, not a header).
    fn downstream_tls(&self) -> bool;
    /// The service the matched route names in its metadata (`oauth2.service`), if it names one.
    fn route_service(&self) -> Option<String>;
    /// The path prefix the matched route declares in its metadata (`oauth2.prefix`), if any:
    /// the OAuth endpoints are then served under exactly that prefix. Read only for requests
    /// whose path ends like an endpoint.
    fn route_prefix(&self) -> Option<String>;
    /// A local reply; the request never reaches the upstream.
    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// Lets a paused request continue (only after an allow decision).
    fn resume_request(&self);

    /// Shared data of the VM (all workers): the value and its CAS version.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes shared data; `false` when the CAS version no longer matches (or the write failed).
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
    /// Unix seconds.
    fn now(&self) -> u64;
    /// Dispatches a call; its answer comes back through the context that dispatched it, under
    /// the returned id. `None` when the host refused the call (unknown cluster...).
    fn dispatch(&self, call: &Call) -> Option<u32>;
    fn log(&self, level: Level, message: &str);
}
