//! An in-memory [`Host`]: a request's headers and body, shared data, a clock, and a record of
//! everything the flow asked of the host (replies, resumes, dispatched calls, header writes).
//! Unit tests, the property test and the fuzz target drive the flow with it.

use super::host::{Call, Host, Level};
use crate::request::RequestHeaders;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct MockHost {
    pub headers: RefCell<Vec<(String, String)>>,
    /// The body the client has sent so far (what Envoy has buffered).
    pub body: RefCell<Vec<u8>>,
    pub tls: Cell<bool>,
    /// The matched route's `oauth2.service` metadata.
    pub route_service: RefCell<Option<String>>,
    pub route_prefix: RefCell<Option<String>>,
    pub replies: RefCell<Vec<RecordedReply>>,
    pub resumes: Cell<u32>,
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    pub clock: Cell<u64>,
    pub calls: RefCell<Vec<(u32, Call)>>,
    /// When set, every dispatch is refused (an unknown cluster, say).
    pub refuse_dispatch: Cell<bool>,
    next_call: Cell<u32>,
    pub logs: RefCell<Vec<(Level, String)>>,
}

impl MockHost {
    pub fn new(headers: &[(&str, &str)]) -> MockHost {
        let host = MockHost::default();
        host.clock.set(1_700_000_000);
        *host.headers.borrow_mut() = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        host
    }

    /// Every value of a request header as the upstream would see it now.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .borrow()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.header_values(name).into_iter().next()
    }

    pub fn last_call(&self) -> Option<(u32, Call)> {
        self.calls.borrow().last().cloned()
    }

    pub fn last_reply(&self) -> Option<RecordedReply> {
        self.replies.borrow().last().cloned()
    }
}

impl Host for MockHost {
    fn request_headers(&self) -> RequestHeaders {
        self.headers
            .borrow()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(n, _)| n != name);
        if let Some(value) = value {
            headers.push((name.to_string(), value.to_string()));
        }
    }

    fn add_request_header(&self, name: &str, value: &str) {
        self.headers
            .borrow_mut()
            .push((name.to_string(), value.to_string()));
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        let body = self.body.borrow();
        body.get(..size.min(body.len()))
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    fn replace_request_body(&self, size: usize, body: &[u8]) {
        let mut current = self.body.borrow_mut();
        let size = size.min(current.len());
        current.splice(..size, body.iter().copied());
    }

    fn downstream_tls(&self) -> bool {
        self.tls.get()
    }

    fn route_service(&self) -> Option<String> {
        self.route_service.borrow().clone()
    }

    fn route_prefix(&self) -> Option<String> {
        self.route_prefix.borrow().clone()
    }

    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        self.replies.borrow_mut().push(RecordedReply {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
    }

    fn resume_request(&self) {
        self.resumes.set(self.resumes.get() + 1);
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return false;
        }
        let next = current.unwrap_or(0).wrapping_add(1).max(1);
        shared.insert(key.to_string(), (value.to_vec(), next));
        true
    }

    fn now(&self) -> u64 {
        self.clock.get()
    }

    fn dispatch(&self, call: &Call) -> Option<u32> {
        if self.refuse_dispatch.get() {
            return None;
        }
        let id = self.next_call.get() + 1;
        self.next_call.set(id);
        self.calls.borrow_mut().push((id, call.clone()));
        Some(id)
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}
