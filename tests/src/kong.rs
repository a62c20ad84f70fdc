//! Fixtures modelled on Kong's own oauth2 test suite: consumer `bob` with its applications,
//! and services whose plugin settings start from Kong's test defaults.

use crate::http::Answer;
use crate::stack::{wait_until, Gateway, GatewayOptions, Stack};
use crate::Text;
use serde_json::{json, Value};
use std::time::Duration;

pub const PROVISION_KEY: &str = "provision123";
pub const REDIRECT: &str = "http://google.test/kong";

/// Kong's test defaults (`spec/fixtures/blueprints.lua`), over which each test puts its own.
pub fn kong_test_config(overrides: Value) -> Value {
    let mut config = json!({
        "scopes": ["email", "profile", "user.email"],
        "enable_authorization_code": true,
        "mandatory_scope": true,
        "provision_key": PROVISION_KEY,
        "token_expiration": 5,
        "enable_implicit_grant": true,
    });
    if let (Some(base), Some(extra)) = (config.as_object_mut(), overrides.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    config
}

/// A client application of consumer `bob`.
#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    pub client_secret: String,
    pub id: String,
}

pub struct Kong {
    pub stack: Stack,
    pub bob_id: String,
}

impl Kong {
    /// A token-service and upstream, consumer `bob` and Kong's credential table.
    pub fn start() -> Kong {
        Kong::on(Stack::start_services())
    }

    /// Consumer `bob` and Kong's credential table on `stack` (services and gateways none yet).
    pub fn on(stack: Stack) -> Kong {
        let bob = stack
            .client
            .post_json(&stack.admin("/consumers"), &json!({"username": "bob"}));
        assert_eq!(bob.status, 201, "{}", bob.text);
        let kong = Kong {
            bob_id: bob.json().text("id"),
            stack,
        };
        for (id, secret, hash, uris, client_type) in [
            (
                "clientid123",
                "secret123",
                true,
                json!([REDIRECT]),
                "confidential",
            ),
            (
                "clientid789",
                "secret789",
                false,
                json!(["http://google.test/kong?foo=bar&code=123"]),
                "confidential",
            ),
            (
                "clientid333",
                "secret333",
                true,
                json!([REDIRECT]),
                "confidential",
            ),
            (
                "clientid456",
                "secret456",
                false,
                json!(["http://one.test/one/", "http://two.test/two"]),
                "confidential",
            ),
            (
                "clientid10112",
                "secret10112",
                false,
                Value::Null,
                "confidential",
            ),
            (
                "clientid11211",
                "secret11211",
                false,
                json!([REDIRECT]),
                "public",
            ),
        ] {
            let body = json!({
                "name": id, "client_id": id, "client_secret": secret, "hash_secret": hash,
                "redirect_uris": uris, "client_type": client_type,
            });
            let answer = kong
                .stack
                .client
                .post_json(&kong.stack.admin("/consumers/bob/oauth2"), &body);
            assert_eq!(answer.status, 201, "{}", answer.text);
        }
        kong
    }

    /// A service with an oauth2 plugin (Kong's defaults + `overrides`) behind its own Envoy.
    pub fn protect(&mut self, service: &str, overrides: Value) -> usize {
        self.configure(service, overrides);
        self.stack.add_gateway(service, &format!("/{service}"));
        self.stack.gateways.len() - 1
    }

    /// [`Kong::protect`] behind an Envoy that differs from the template's defaults.
    pub fn protect_with(
        &mut self,
        service: &str,
        overrides: Value,
        options: GatewayOptions,
    ) -> usize {
        self.configure(service, overrides);
        self.stack
            .add_gateway_with(service, &format!("/{service}"), options);
        self.stack.gateways.len() - 1
    }

    /// Two services, each with its own plugin (Kong's defaults + overrides), behind one Envoy
    /// listener: `first` under `/<first>`, `second` under `/<second>` (the template's second
    /// route, which names its service in its metadata).
    pub fn protect_two(
        &mut self,
        (first, first_overrides): (&str, Value),
        (second, second_overrides): (&str, Value),
    ) -> usize {
        self.configure(first, first_overrides);
        self.configure(second, second_overrides);
        let options = GatewayOptions {
            second_route: Some((second.to_string(), format!("/{second}"))),
            ..GatewayOptions::default()
        };
        self.stack
            .add_gateway_with(first, &format!("/{first}"), options);
        self.stack.gateways.len() - 1
    }

    /// [`Kong::protect`] behind an Envoy that can be hot restarted.
    pub fn protect_hot_restartable(&mut self, service: &str, overrides: Value) -> usize {
        self.configure(service, overrides);
        self.stack
            .add_hot_restartable_gateway(service, &format!("/{service}"));
        self.stack.gateways.len() - 1
    }

    /// Creates `service` with an oauth2 plugin (Kong's defaults + `overrides`), no Envoy yet.
    pub fn configure(&mut self, service: &str, overrides: Value) {
        self.stack.create_service(service);
        let url = self.stack.admin(&format!("/services/{service}/plugins"));
        let plugin = self.stack.client.post_json(
            &url,
            &json!({"name": "oauth2", "config": kong_test_config(overrides)}),
        );
        assert_eq!(plugin.status, 201, "{}", plugin.text);
    }

    pub fn gw(&self, index: usize) -> &Gateway {
        &self.stack.gateways[index]
    }

    pub fn post(&self, url: &str, body: Value) -> Answer {
        self.stack.client.post_json(url, &body)
    }

    pub fn credential_id(&self, client_id: &str) -> String {
        self.stack
            .admin_get(&format!("/oauth2/{client_id}"))
            .json()
            .text("id")
    }

    /// Authorizes `clientid123` for `userid123` with scope `email` and returns the code.
    pub fn provision_code(&self, gw: usize, client_id: &str, extra: Value) -> String {
        let mut body = json!({
            "provision_key": PROVISION_KEY, "client_id": client_id, "scope": "email",
            "response_type": "code", "state": "hello", "authenticated_userid": "userid123",
        });
        merge(&mut body, extra);
        let answer = self.post(&self.gw(gw).https("/oauth2/authorize"), body);
        assert_eq!(answer.status, 200, "{}", answer.text);
        let uri = answer.json().text("redirect_uri");
        crate::oauth::query_param(&uri, "code").unwrap_or_else(|| panic!("no code in {uri}"))
    }

    /// Code flow for `clientid123`; returns the token answer.
    pub fn provision_token(&self, gw: usize) -> Value {
        let code = self.provision_code(gw, "clientid123", json!({}));
        let answer = self.post(
            &self.gw(gw).https("/oauth2/token"),
            json!({"code": code, "client_id": "clientid123", "client_secret": "secret123", "grant_type": "authorization_code"}),
        );
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.json()
    }

    /// Waits until the filter of gateway `gw` accepts `token` (or gives up after 3 s).
    pub fn get_with_token(&self, gw: usize, path: &str, token: &str) -> Answer {
        let url = self.gw(gw).http(path);
        self.stack
            .client
            .get_with(&url, &[("authorization", &format!("bearer {token}"))])
    }
}

pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        for (k, v) in extra {
            base.insert(k, v);
        }
    }
}

/// `{"error": e, "error_description": d}`.
pub fn oauth_error(error: &str, description: &str) -> Value {
    json!({"error": error, "error_description": description})
}

pub fn assert_no_store(answer: &Answer) {
    assert_eq!(
        answer.header("cache-control").as_deref(),
        Some("no-store"),
        "{:?}",
        answer.headers
    );
    assert_eq!(answer.header("pragma").as_deref(), Some("no-cache"));
}

/// Waits for a condition that depends on propagation to the filter (≤ ~1 s in tests).
pub fn eventually(condition: impl FnMut() -> bool) -> bool {
    wait_until(Duration::from_secs(3), condition)
}

/// Like [`eventually`], but the condition must hold for several requests in a row: each Envoy
/// worker polls on its own, so one answer speaks for one worker only.
pub fn eventually_everywhere(mut condition: impl FnMut() -> bool) -> bool {
    let mut streak = 0;
    wait_until(Duration::from_secs(4), || {
        streak = if condition() { streak + 1 } else { 0 };
        streak >= 8
    })
}
