//! The proxy-wasm shim: implements [`Host`] over the ABI and forwards each callback to the
//! native flow ([`crate::flow`]). No decision is made here.
//!
//! A root context per worker polls the token-service for settings and revocations; an HTTP
//! context per request owns one [`Flow`].

use crate::config::FilterConfig;
use crate::flow::{Action, Call, CallAnswer, Flow, Host, Level, Worker};
use crate::headers;
use crate::metrics::{self, Metric};
use crate::poll_retry::PollRetries;
use crate::request::RequestHeaders;
use crate::state::StatePoll;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

const FIRST_POLL_DELAY: Duration = Duration::from_millis(20);

proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("oauth2 filter panicked: {info}"));
    }));
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Envoy through the proxy-wasm ABI, for whichever context is active.
struct Envoy;

impl Host for Envoy {
    fn request_headers(&self) -> RequestHeaders {
        headers::decode_request_headers(&header_map_bytes(MapType::HttpRequestHeaders))
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn add_request_header(&self, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn replace_request_body(&self, size: usize, body: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, body);
    }

    fn downstream_tls(&self) -> bool {
        hostcalls::get_property(vec!["connection", "tls_version"])
            .ok()
            .flatten()
            .is_some_and(|v| !v.is_empty())
    }

    fn route_service(&self) -> Option<String> {
        let value = hostcalls::get_property(vec![
            "xds",
            "route_metadata",
            "filter_metadata",
            "oauth2",
            "service",
        ]);
        value
            .ok()
            .flatten()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    fn route_prefix(&self) -> Option<String> {
        let value = hostcalls::get_property(vec![
            "xds",
            "route_metadata",
            "filter_metadata",
            "oauth2",
            "prefix",
        ]);
        value
            .ok()
            .flatten()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(status, headers.to_vec(), Some(body));
    }

    fn resume_request(&self) {
        let _ = hostcalls::resume_http_request();
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }

    fn now(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    }

    fn dispatch(&self, call: &Call) -> Option<u32> {
        let headers: Vec<(&str, &str)> = call
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        hostcalls::dispatch_http_call(
            &call.cluster,
            headers,
            call.body.as_deref(),
            vec![],
            call.timeout,
        )
        .ok()
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let _ = hostcalls::log(level, message);
    }
}

#[derive(Default)]
struct Root {
    worker: Option<Rc<RefCell<Worker>>>,
    /// The state polls in flight: call id → service.
    polls_in_flight: HashMap<u32, String>,
    /// Failed polls asked again at once, within a budget per round.
    retries: PollRetries,
    polled_once: bool,
    /// Envoy's id of each counter (`metrics::ALL` order), defined at configuration.
    metric_ids: Vec<Option<u32>>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, id: u32, _headers: usize, body_size: usize, _: usize) {
        let Some(service) = self.polls_in_flight.remove(&id) else {
            return;
        };
        let Some(worker) = &self.worker else {
            return;
        };
        let answer = call_answer(body_size);
        let poll = (answer.status() == Some("200"))
            .then(|| StatePoll::parse(&answer.body))
            .flatten();
        match poll {
            Some(poll) => {
                self.retries.succeeded(&service);
                worker.borrow_mut().apply_poll(&Envoy, &service, poll);
            }
            None => {
                worker.borrow_mut().count(Metric::StatePollFailed);
                Envoy.log(
                    Level::Warn,
                    &format!("state poll for service '{service}' failed; keeping the last known settings"),
                );
                if self.retries.retry_after_failure(&service) {
                    let worker = worker.clone();
                    let since = worker.borrow().seq(&service);
                    self.dispatch_poll(&worker, service, since);
                }
            }
        }
    }
}

impl Root {
    /// Polls every service this worker has met that has no poll in flight (a new round).
    fn poll(&mut self, worker: &Rc<RefCell<Worker>>) {
        let due = worker.borrow().polls_due();
        for (service, since) in due {
            if self.polls_in_flight.values().any(|s| *s == service) {
                continue;
            }
            self.retries.new_round(&service);
            self.dispatch_poll(worker, service, since);
        }
    }

    /// Asks for `service`'s state and the changes after feed position `since`.
    fn dispatch_poll(&mut self, worker: &Rc<RefCell<Worker>>, service: String, since: i64) {
        let call = worker.borrow().state_call(&service, since);
        worker.borrow_mut().count(Metric::StatePolls);
        match call.and_then(|call| Envoy.dispatch(&call)) {
            Some(id) => {
                self.polls_in_flight.insert(id, service);
            }
            None => {
                worker.borrow_mut().count(Metric::StatePollFailed);
                Envoy.log(Level::Warn, "cannot reach the token-service cluster");
            }
        }
    }

    /// Adds what this worker counted since the last tick to Envoy's stats.
    fn flush_metrics(&self, worker: &Rc<RefCell<Worker>>) {
        let counts = worker.borrow_mut().counters.take();
        for (metric, count) in counts {
            let id = self.metric_ids.get(metric as usize).copied().flatten();
            if let (Some(id), Ok(count)) = (id, i64::try_from(count)) {
                let _ = hostcalls::increment_metric(id, count);
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
        else {
            Envoy.log(
                Level::Error,
                "the oauth2 filter needs a configuration (see docs/configuration.md)",
            );
            return false;
        };
        match FilterConfig::parse(&bytes) {
            Ok(config) => {
                let worker = Worker::new(config);
                self.metric_ids = metrics::ALL
                    .iter()
                    .map(|m| hostcalls::define_metric(MetricType::Counter, m.name()).ok())
                    .collect();
                // Counters are flushed on the tick, so every configuration ticks.
                let _ = hostcalls::set_tick_period(FIRST_POLL_DELAY);
                self.worker = Some(Rc::new(RefCell::new(worker)));
                true
            }
            Err(e) => {
                Envoy.log(Level::Error, &e.0);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        if !self.polled_once {
            self.polled_once = true;
            let _ = hostcalls::set_tick_period(worker.borrow().poll_interval());
        }
        self.poll(&worker);
        self.flush_metrics(&worker);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(Request {
            flow: Flow::new(worker),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    flow: Flow,
}

impl Context for Request {
    fn on_http_call_response(&mut self, id: u32, _headers: usize, body_size: usize, _: usize) {
        self.flow
            .on_call_answer(&Envoy, id, &call_answer(body_size));
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(
        &mut self,
        _headers: usize,
        end_of_stream: bool,
    ) -> proxy_wasm::types::Action {
        to_wasm(self.flow.on_request_headers(&Envoy, end_of_stream))
    }

    fn on_http_request_body(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
    ) -> proxy_wasm::types::Action {
        to_wasm(self.flow.on_request_body(&Envoy, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> proxy_wasm::types::Action {
        to_wasm(self.flow.on_request_trailers(&Envoy))
    }
}

fn to_wasm(action: Action) -> proxy_wasm::types::Action {
    match action {
        Action::Continue => proxy_wasm::types::Action::Continue,
        Action::Pause => proxy_wasm::types::Action::Pause,
    }
}

fn call_answer(body_size: usize) -> CallAnswer {
    CallAnswer {
        headers: header_map(MapType::HttpCallResponseHeaders),
        body: hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default(),
    }
}

/// The host's header map `map`, decoded without trusting its bytes: the SDK's readers panic
/// on a value that is not UTF-8, which any client can send (see `headers`).
fn header_map(map: MapType) -> Vec<(String, String)> {
    headers::decode_pairs(&header_map_bytes(map))
}

/// The host's serialization of header map `map` (empty when it has none).
fn header_map_bytes(map: MapType) -> Vec<u8> {
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> Status;
    }
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the ABI call only writes the two out-pointers, which point at live locals.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    if status != Status::Ok || data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host allocated this buffer through the SDK's `proxy_on_memory_allocate`
    // (a boxed slice of exactly `size` bytes) and gave up ownership of it; the SDK's own
    // readers take it back the same way.
    unsafe { Vec::from_raw_parts(data, size, size) }
}
