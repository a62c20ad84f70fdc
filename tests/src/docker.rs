//! The compose stack (`docker-compose.yml`) as its user reaches it: through the ports it
//! publishes on this machine. `make test-docker` builds the images, runs `docker compose up`
//! and then the tests of `tests/tests/docker/` against it (they are `#[ignore]`d otherwise, as
//! they need that stack). Where the stack listens: `OAUTH2_DOCKER_HOST` (default `localhost`)
//! and the compose file's port variables (`OAUTH2_HTTP_PORT`...), with the same defaults; the
//! admin API's key: `OAUTH2_ADMIN_KEY` (the compose file's default otherwise).

use crate::http::{Answer, Client};
use std::time::{Duration, Instant};

/// The compose file's admin key when `OAUTH2_ADMIN_KEY` is not set.
pub const DEFAULT_ADMIN_KEY: &str = "oauth2-demo-admin-key";

/// The published ports of the default topology (and of the `cluster` profile: replica 1's
/// admin API is on the same port).
pub struct ComposeStack {
    pub client: Client,
    host: String,
    admin_key: String,
    ports: Ports,
}

/// The host ports docker-compose.yml publishes, from the same variables with the same defaults.
struct Ports {
    http: u16,
    https: u16,
    admin: u16,
    step_on: u16,
    shoe_fly: u16,
}

/// The port in variable `name`, `default` when it is unset; panics on a value that is no port.
fn port(name: &str, default: u16) -> u16 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a port")),
        Err(_) => default,
    }
}

impl ComposeStack {
    pub fn from_env() -> ComposeStack {
        ComposeStack {
            client: Client::new(),
            host: std::env::var("OAUTH2_DOCKER_HOST").unwrap_or_else(|_| "localhost".into()),
            admin_key: std::env::var("OAUTH2_ADMIN_KEY")
                .unwrap_or_else(|_| DEFAULT_ADMIN_KEY.into()),
            ports: Ports {
                http: port("OAUTH2_HTTP_PORT", 8000),
                https: port("OAUTH2_HTTPS_PORT", 8443),
                admin: port("OAUTH2_ADMIN_PORT", 8001),
                step_on: port("OAUTH2_STEP_ON_PORT", 3000),
                shoe_fly: port("OAUTH2_SHOE_FLY_PORT", 5000),
            },
        }
    }

    /// `http://HOST:8000/stepon<path>` (the port: OAUTH2_HTTP_PORT): Envoy's plain listener, the tutorial's route.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}:{}/stepon{path}", self.host, self.ports.http)
    }

    /// `https://HOST:8443/stepon<path>`: Envoy's TLS listener (self-signed; the client accepts
    /// any certificate, as the tutorial's `curl -k`).
    pub fn https(&self, path: &str) -> String {
        format!("https://{}:{}/stepon{path}", self.host, self.ports.https)
    }

    /// The admin API (published on 127.0.0.1:8001).
    pub fn admin(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.ports.admin)
    }

    /// Step On's authorization page and API (the demo upstream, :3000).
    pub fn step_on(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.ports.step_on)
    }

    /// Shoe Fly Shoe, the tutorial's client app (:5000).
    pub fn shoe_fly(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.ports.shoe_fly)
    }

    pub fn admin_post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let request = self.client.raw().post(self.admin(path)).form(form);
        self.client
            .send(request.header("x-admin-key", &self.admin_key))
    }

    pub fn admin_get(&self, path: &str) -> Answer {
        let request = self.client.raw().get(self.admin(path));
        self.client
            .send(request.header("x-admin-key", &self.admin_key))
    }

    /// GET `url` with `headers`; `None` while nothing answers (a container still starting).
    pub fn try_get(&self, url: &str, headers: &[(&str, &str)]) -> Option<Answer> {
        let mut request = self.client.raw().get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().ok()?;
        Some(Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().unwrap_or_default(),
        })
    }

    /// Waits, at most `limit`, until the stack is as `docker compose up` leaves it for the
    /// tutorial: the tutorial's service registered (the `step-on-service` job) and Envoy
    /// routing `/stepon` to Step On's API. Panics with what was last seen otherwise.
    pub fn wait_ready(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let why = match self.ready() {
                Ok(()) => return,
                Err(why) => why,
            };
            assert!(
                start.elapsed() < limit,
                "the compose stack was not ready within {limit:?}: {why}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn ready(&self) -> Result<(), String> {
        let service = self
            .try_get(
                &self.admin("/services/step-on"),
                &[("x-admin-key", &self.admin_key)],
            )
            .ok_or("the admin API does not answer")?;
        if service.status != 200 {
            return Err(format!("GET /services/step-on: {}", service.status));
        }
        let open = self
            .try_get(&self.http("/stepcounts"), &[("mock-logged-in-as", "clark")])
            .ok_or("Envoy does not answer")?;
        if open.status != 200 {
            return Err(format!(
                "GET /stepon/stepcounts: {} {}",
                open.status, open.text
            ));
        }
        Ok(())
    }
}
