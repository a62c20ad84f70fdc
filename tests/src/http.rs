//! A small blocking HTTP client for tests: any certificate, no redirects, bodies as JSON.

use serde_json::Value;
use std::time::Duration;

pub struct Client {
    inner: reqwest::blocking::Client,
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Client {
        let inner = reqwest::blocking::Client::builder()
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        Client { inner }
    }

    pub fn send(&self, request: reqwest::blocking::RequestBuilder) -> Answer {
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("request failed: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap_or_default();
        Answer {
            status,
            headers,
            text,
        }
    }

    pub fn get(&self, url: &str) -> Answer {
        self.send(self.inner.get(url))
    }

    pub fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.inner.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request)
    }

    pub fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Answer {
        self.send(self.inner.post(url).form(form))
    }

    pub fn post_json(&self, url: &str, body: &Value) -> Answer {
        self.send(self.inner.post(url).json(body))
    }

    pub fn put_json(&self, url: &str, body: &Value) -> Answer {
        self.send(self.inner.put(url).json(body))
    }

    pub fn patch_json(&self, url: &str, body: &Value) -> Answer {
        self.send(self.inner.patch(url).json(body))
    }

    pub fn delete(&self, url: &str) -> Answer {
        self.send(self.inner.delete(url))
    }

    pub fn raw(&self) -> &reqwest::blocking::Client {
        &self.inner
    }
}

/// A string field of a JSON answer, `""` when it is missing or not a string (the assertion
/// that follows says what was expected).
pub trait Text {
    fn text(&self, field: &str) -> String;
}

impl Text for Value {
    fn text(&self, field: &str) -> String {
        self[field].as_str().unwrap_or_default().to_string()
    }
}
