//! How Step On's and Shoe Fly Shoe's servers talk to the gateway (the OAuth endpoints and the
//! API through Envoy, over HTTPS) and to the token-service's admin API (the provision key and
//! the registered applications, which `make run` only learns after tutorial steps 3 and 4,
//! so they are looked up when needed rather than passed at start-up).

use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use url::Url;

#[derive(clap::Args, Clone)]
pub struct Config {
    /// The protected route as servers reach it through Envoy, over HTTPS (the OAuth endpoints
    /// refuse plain HTTP): `<gateway-url>/oauth2/authorize`, `/oauth2/token`, `/stepcounts`.
    #[arg(
        long,
        env = "DEMO_GATEWAY_URL",
        default_value = "https://localhost:8443/stepon"
    )]
    pub gateway_url: Url,
    /// The gateway's HTTPS certificate (PEM), pinned: `make run`'s self-signed one. Without
    /// it the gateway needs a certificate from a public CA.
    #[arg(long, env = "DEMO_GATEWAY_CA")]
    pub gateway_ca: Option<std::path::PathBuf>,
    /// The token-service's admin API: the plugin's provision key and the applications' names
    /// and redirect URIs are read there.
    #[arg(long, env = "DEMO_ADMIN_URL", default_value = "http://127.0.0.1:8001")]
    pub admin_url: Url,
    /// The admin API's key (the token-service's `--admin-key`), sent as `x-admin-key`.
    #[arg(long, env = "DEMO_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// The service whose oauth2 plugin holds the provision key.
    #[arg(long, env = "DEMO_SERVICE", default_value = "step-on")]
    pub service: String,
    /// The provision key itself, instead of reading it from the admin API.
    #[arg(long, env = "DEMO_PROVISION_KEY", hide_env_values = true)]
    pub provision_key: Option<String>,
}

/// What went wrong talking to the gateway or the admin API, in words for the page.
#[derive(Debug)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `what: error: its cause: ...`, since reqwest's own message hides the cause (TLS, refused).
fn failure(what: &str, e: &dyn std::error::Error) -> Failure {
    let mut text = format!("{what}: {e}");
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    Failure(text)
}

/// A registered OAuth application, as its authorization page needs it.
pub struct Application {
    pub name: String,
    pub redirect_uris: Vec<String>,
}

/// An HTTP answer: status and JSON body (`Null` when the body is not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
}

#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
    config: Config,
}

impl Gateway {
    pub fn new(config: Config) -> Result<Gateway, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            // The gateway and the admin API are this deployment's own: never via a proxy.
            .no_proxy()
            // Answers are read, never followed: a redirect is the browser's to follow.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &config.gateway_ca {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --gateway-ca {}: {e}", path.display()))?;
            let tls = crate::tls::pinned(&pem)
                .map_err(|e| format!("--gateway-ca {}: {e}", path.display()))?;
            builder = builder.use_preconfigured_tls(tls);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(Gateway { http, config })
    }

    /// `<gateway-url>/<path>`, e.g. `oauth2/token`.
    fn gateway(&self, path: &str) -> String {
        format!(
            "{}/{path}",
            self.config.gateway_url.as_str().trim_end_matches('/')
        )
    }

    /// The admin API URL of `segments`, each percent-encoded as one path segment.
    fn admin(&self, segments: &[&str]) -> Result<Url, Failure> {
        let mut url = self.config.admin_url.clone();
        url.path_segments_mut()
            .map_err(|()| Failure("--admin-url cannot be a base URL".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn admin_get(&self, segments: &[&str]) -> Result<Option<Value>, Failure> {
        let url = self.admin(segments)?;
        let mut request = self.http.get(url);
        if let Some(key) = &self.config.admin_key {
            request = request.header("x-admin-key", key);
        }
        let answer = read(request.send().await, "the admin API").await?;
        match answer.status {
            // 400: an identifier the admin API refuses to look up (too long) names nothing.
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => Ok(None),
            s if s.is_success() => Ok(Some(answer.json)),
            s => Err(Failure(format!("the admin API answered {s}"))),
        }
    }

    /// The provision key of the service's oauth2 plugin (tutorial step 3 made it).
    pub async fn provision_key(&self) -> Result<String, Failure> {
        if let Some(key) = &self.config.provision_key {
            return Ok(key.clone());
        }
        let plugins = self
            .admin_get(&["services", &self.config.service, "plugins"])
            .await?
            .unwrap_or(Value::Null);
        plugins["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "oauth2" && p["enabled"] != false)
            .and_then(|p| p["config"]["provision_key"].as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Failure(format!(
                    "the service '{}' has no oauth2 plugin yet (tutorial step 3)",
                    self.config.service
                ))
            })
    }

    /// The application registered with `client_id`, or `None` when there is none.
    pub async fn application(&self, client_id: &str) -> Result<Option<Application>, Failure> {
        let Some(credential) = self.admin_get(&["oauth2", client_id]).await? else {
            return Ok(None);
        };
        // The admin API finds a credential by its id too: only a client_id match counts.
        if credential["client_id"] != client_id {
            return Ok(None);
        }
        let redirect_uris = credential["redirect_uris"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let name = credential["name"].as_str().unwrap_or(client_id).to_string();
        Ok(Some(Application {
            name,
            redirect_uris,
        }))
    }

    /// The first OAuth application of `consumer`: `(client_id, client_secret)`.
    pub async fn credential_of(&self, consumer: &str) -> Result<Option<(String, String)>, Failure> {
        let list = self
            .admin_get(&["consumers", consumer, "oauth2"])
            .await?
            .unwrap_or(Value::Null);
        let first = &list["data"][0];
        Ok(first["client_id"]
            .as_str()
            .zip(first["client_secret"].as_str())
            .map(|(id, secret)| (id.to_string(), secret.to_string())))
    }

    /// `POST <gateway-url>/oauth2/<endpoint>` with a form body.
    pub async fn oauth(&self, endpoint: &str, form: &[(&str, &str)]) -> Result<Answer, Failure> {
        let url = self.gateway(&format!("oauth2/{endpoint}"));
        read(self.http.post(url).form(form).send().await, "the gateway").await
    }

    /// `GET <gateway-url>/stepcounts` with the access token.
    pub async fn step_counts(&self, access_token: &str) -> Result<Answer, Failure> {
        let request = self.http.get(self.gateway("stepcounts"));
        let sent = request.bearer_auth(access_token).send().await;
        read(sent, "the gateway").await
    }
}

async fn read(
    sent: Result<reqwest::Response, reqwest::Error>,
    what: &str,
) -> Result<Answer, Failure> {
    let response = sent.map_err(|e| failure(&format!("cannot reach {what}"), &e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| failure(&format!("reading the answer of {what}"), &e))?;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Answer { status, json })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::Router;

    /// An admin API that, like the token-service's with `--admin-key k`, answers only with it.
    async fn keyed_admin() -> Url {
        let admin = Router::new().route(
            "/services/step-on/plugins",
            get(|headers: HeaderMap| async move {
                if headers.get("x-admin-key").and_then(|v| v.to_str().ok()) != Some("k") {
                    return (StatusCode::UNAUTHORIZED, "{}").into_response();
                }
                axum::Json(serde_json::json!({"data": [
                    {"name": "oauth2", "enabled": true, "config": {"provision_key": "pk"}}
                ]}))
                .into_response()
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, admin).await });
        format!("http://{addr}").parse().unwrap()
    }

    fn gateway(admin_url: Url, admin_key: Option<&str>) -> Gateway {
        Gateway::new(Config {
            gateway_url: "https://127.0.0.1:9/stepon".parse().unwrap(),
            gateway_ca: None,
            admin_url,
            admin_key: admin_key.map(str::to_string),
            service: "step-on".into(),
            provision_key: None,
        })
        .unwrap()
    }

    /// Issue 18: an admin API behind a key (docker compose sets one) still serves the demo.
    #[tokio::test]
    async fn the_admin_key_is_sent_when_configured() {
        let admin = keyed_admin().await;
        let key = gateway(admin.clone(), Some("k")).provision_key().await;
        assert_eq!(key.map_err(|f| f.0), Ok("pk".to_string()));
        let refused = gateway(admin, None).provision_key().await;
        assert!(refused.is_err());
    }
}
