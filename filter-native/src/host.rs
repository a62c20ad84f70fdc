//! [`Host`] over Envoy's dynamic-module callbacks, for one request on its worker thread.
//! Every callback that fails is reported the way that fails closed (no data, no dispatch, no
//! write), as the trait requires.

use crate::abi::{self, EnvoyBuffer, FilterEnvoyPtr, HttpHeader, ModuleBuffer};
use crate::{shared_data, Config, ThreadState};
use oauth2_filter::config::is_service_name;
use oauth2_filter::flow::{Call, Host, Level};
use oauth2_filter::request::RequestHeaders;
use std::time::{SystemTime, UNIX_EPOCH};

/// Envoy, seen from one request's hook.
pub struct Envoy<'a> {
    pub filter: FilterEnvoyPtr,
    pub config: &'a Config,
    pub thread: &'a ThreadState,
    /// Inside `on_request_body`: the chunk just received is not in the buffered body yet.
    pub in_body_hook: bool,
}

impl Envoy<'_> {
    /// The request body chunks: what Envoy buffered so far, then (in a body hook) the chunk
    /// just received. When the received chunk *is* the buffered body (an earlier filter
    /// buffered it), only that.
    fn body_parts(&self) -> Vec<u32> {
        // SAFETY: `filter` is the live filter of the hook we are in.
        let received_is_buffered = unsafe {
            abi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.filter)
        };
        match (self.in_body_hook, received_is_buffered) {
            (true, true) => vec![abi::BODY_RECEIVED_REQUEST],
            (true, false) => vec![abi::BODY_BUFFERED_REQUEST, abi::BODY_RECEIVED_REQUEST],
            (false, _) => vec![abi::BODY_BUFFERED_REQUEST],
        }
    }

    /// Bytes of request body so far (buffered and just received).
    pub fn body_size(&self) -> usize {
        self.body_parts()
            .into_iter()
            // SAFETY: `filter` is the live filter of the hook we are in.
            .map(|part| unsafe {
                abi::envoy_dynamic_module_callback_http_get_body_size(self.filter, part)
            })
            .fold(0usize, usize::saturating_add)
    }

    fn log_at(level: u32, message: &str) {
        // SAFETY: Envoy copies the message during the call; it may be called from any thread.
        unsafe {
            abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes()))
        }
    }
}

/// Logs without a request (main thread, panics).
pub fn log(level: Level, message: &str) {
    Envoy::log_at(log_level(level), message);
}

pub fn log_critical(message: &str) {
    Envoy::log_at(abi::LOG_CRITICAL, message);
}

fn log_level(level: Level) -> u32 {
    match level {
        Level::Info => abi::LOG_INFO,
        Level::Warn => abi::LOG_WARN,
        Level::Error => abi::LOG_ERROR,
    }
}

/// The call's headers as Envoy reads them (borrowing `call`).
pub fn call_headers(call: &Call) -> Vec<HttpHeader> {
    call.headers
        .iter()
        .map(|(n, v)| HttpHeader::of(n, v))
        .collect()
}

pub fn timeout_ms(call: &Call) -> u64 {
    u64::try_from(call.timeout.as_millis()).unwrap_or(u64::MAX)
}

impl Host for Envoy<'_> {
    fn request_headers(&self) -> RequestHeaders {
        // Most requests carry a few headers: their (pointer, length) pairs fit on the stack.
        let mut on_stack = [HttpHeader::null(); 32];
        let mut on_heap: Vec<HttpHeader>;
        // SAFETY: `filter` is live; the array has room for the count Envoy just gave, and
        // Envoy fills at most that many entries, whose bytes stay valid during this hook (they
        // are copied into the returned buffer before it ends).
        unsafe {
            let count = abi::envoy_dynamic_module_callback_http_get_headers_size(
                self.filter,
                abi::HEADER_REQUEST,
            );
            let raw = match on_stack.get_mut(..count) {
                Some(raw) => raw,
                None => {
                    on_heap = vec![HttpHeader::null(); count];
                    on_heap.as_mut_slice()
                }
            };
            if count == 0
                || !abi::envoy_dynamic_module_callback_http_get_headers(
                    self.filter,
                    abi::HEADER_REQUEST,
                    raw.as_mut_ptr(),
                )
            {
                return RequestHeaders::default();
            }
            let bytes = raw
                .iter()
                .map(|h| h.key_length.saturating_add(h.value_length))
                .fold(0usize, usize::saturating_add);
            let mut headers = RequestHeaders::with_capacity(bytes);
            for header in raw.iter() {
                let (name, value) = header.bytes();
                headers.push_bytes(name, value);
            }
            headers
        }
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let value = value.map_or(ModuleBuffer::null(), |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: `filter` is live; Envoy copies both buffers during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.filter,
                abi::HEADER_REQUEST,
                ModuleBuffer::of(name.as_bytes()),
                value,
            );
        }
    }

    fn add_request_header(&self, name: &str, value: &str) {
        // SAFETY: as `set_request_header`.
        unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                self.filter,
                abi::HEADER_REQUEST,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            );
        }
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity(size);
        for part in self.body_parts() {
            // SAFETY: `filter` is live; the array has room for the count Envoy just gave; the
            // chunks stay valid until the end of this hook, and are copied before it ends.
            unsafe {
                let count =
                    abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.filter, part);
                if count == 0 {
                    continue;
                }
                let mut chunks = vec![EnvoyBuffer::null(); count];
                if !abi::envoy_dynamic_module_callback_http_get_body_chunks(
                    self.filter,
                    part,
                    chunks.as_mut_ptr(),
                ) {
                    continue;
                }
                for chunk in &chunks {
                    body.extend_from_slice(chunk.bytes());
                }
            }
        }
        body.truncate(size);
        body
    }

    fn replace_request_body(&self, _size: usize, body: &[u8]) {
        // The whole body so far goes, and the new one takes its place: in the chunk being
        // received (Envoy buffers or forwards it after this hook), else in the buffered body.
        let parts = self.body_parts();
        for part in &parts {
            // SAFETY: `filter` is live; draining more than the body holds drains it all.
            unsafe {
                abi::envoy_dynamic_module_callback_http_drain_body(self.filter, *part, usize::MAX);
            }
        }
        let target = parts.last().copied().unwrap_or(abi::BODY_BUFFERED_REQUEST);
        // SAFETY: `filter` is live; Envoy copies the bytes during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_append_body(
                self.filter,
                target,
                ModuleBuffer::of(body),
            );
        }
    }

    fn downstream_tls(&self) -> bool {
        let mut version = EnvoyBuffer::null();
        // SAFETY: `filter` is live; `version` is a valid out-pointer.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.filter,
                abi::ATTRIBUTE_CONNECTION_TLS_VERSION,
                &mut version,
            )
        };
        found && version.length > 0
    }

    fn route_service(&self) -> Option<String> {
        let mut value = EnvoyBuffer::null();
        // SAFETY: `filter` is live; `value` is a valid out-pointer, read within this hook.
        let service = unsafe {
            let found = abi::envoy_dynamic_module_callback_http_get_metadata_string(
                self.filter,
                abi::METADATA_ROUTE,
                ModuleBuffer::of(b"oauth2"),
                ModuleBuffer::of(b"service"),
                &mut value,
            );
            found.then(|| String::from_utf8_lossy(value.bytes()).into_owned())
        }?;
        // The main thread polls every service a route names, from its first request on (a
        // name that is not a service's fails closed in the flow and is never polled).
        if is_service_name(&service) && self.thread.first_meeting(&service) {
            self.config.feed.register(&service);
        }
        Some(service)
    }

    fn route_prefix(&self) -> Option<String> {
        let mut value = EnvoyBuffer::null();
        // SAFETY: `filter` is live; `value` is a valid out-pointer, read within this hook.
        unsafe {
            let found = abi::envoy_dynamic_module_callback_http_get_metadata_string(
                self.filter,
                abi::METADATA_ROUTE,
                ModuleBuffer::of(b"oauth2"),
                ModuleBuffer::of(b"prefix"),
                &mut value,
            );
            found.then(|| String::from_utf8_lossy(value.bytes()).into_owned())
        }
    }

    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let mut headers: Vec<HttpHeader> =
            headers.iter().map(|(n, v)| HttpHeader::of(n, v)).collect();
        // SAFETY: `filter` is live; Envoy copies headers and body during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.filter,
                status,
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(b"oauth2_filter"),
            );
        }
    }

    fn resume_request(&self) {
        // SAFETY: `filter` is live.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.filter) }
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        shared_data().get(key)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        shared_data().set(key, value, cas)
    }

    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn dispatch(&self, call: &Call) -> Option<u32> {
        let mut headers = call_headers(call);
        let body = call.body.as_deref().unwrap_or_default();
        let mut id: u64 = 0;
        // SAFETY: `filter` is live; Envoy copies every buffer during the call.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_http_callout(
                self.filter,
                &mut id,
                ModuleBuffer::of(call.cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::of(body),
                timeout_ms(call),
            )
        };
        if result != abi::CALLOUT_INIT_SUCCESS {
            return None;
        }
        u32::try_from(id).ok()
    }

    fn log(&self, level: Level, message: &str) {
        log(level, message);
    }
}
