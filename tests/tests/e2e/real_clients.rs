//! Client libraries nobody here wrote check our JWT access tokens and discovery documents
//! (issue 21): Node.js runs `tests/clients/check.mjs` against a running stack, with the npm
//! packages `tests/clients/package-lock.json` pins — `jose` (`jwtVerify` against our JWKS via
//! `createRemoteJWKSet`), `oauth4webapi` (`validateJwtAccessToken`: RFC 9068's resource-server
//! rules) and `openid-client` (`discovery` in `oauth2` mode, RFC 8414 §3.1's location, and in
//! `oidc` mode; then a client_credentials grant, introspection and revocation of a JWT).
//! `make test-e2e` installs the packages (`npm ci`) when they are missing. HTTPS is checked:
//! node trusts the stack's self-signed certificate through `NODE_EXTRA_CA_CERTS`.

use e2e::oauth::{bearer, create_app, App};
use e2e::stack::{wait_until, Gateway};
use e2e::{free_port, GatewayOptions, Stack, Text};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every check check.mjs makes; each must be reported `ok`.
const CHECKS: &[&str] = &[
    "openid-client discovery, algorithm oauth2 (RFC 8414 §3.1 location)",
    "openid-client discovery, algorithm oidc (openid-configuration)",
    "oauth4webapi discovery, algorithm oauth2",
    "openid-client clientCredentialsGrant (discovered token endpoint)",
    "jose jwtVerify, the test's token",
    "oauth4webapi validateJwtAccessToken (RFC 9068), the test's token",
    "jose jwtVerify, openid-client's token",
    "oauth4webapi validateJwtAccessToken (RFC 9068), openid-client's token",
    "jose jwtVerify refuses a changed signature",
    "oauth4webapi validateJwtAccessToken refuses a changed signature",
    "jose jwtVerify refuses changed claims",
    "oauth4webapi validateJwtAccessToken refuses changed claims",
    "jose jwtVerify refuses alg none",
    "oauth4webapi validateJwtAccessToken refuses alg none",
    "jose jwtVerify refuses another audience",
    "oauth4webapi validateJwtAccessToken refuses another audience",
    "openid-client fetchProtectedResource through the filter",
    "openid-client tokenIntrospection of a JWT (RFC 7662)",
    "openid-client tokenRevocation of a JWT (RFC 7009), then inactive and refused",
];

/// The versions package-lock.json pins (the report names what ran).
const VERSIONS: &[(&str, &str)] = &[
    ("jose", "6.2.18"),
    ("oauth4webapi", "3.8.8"),
    ("openid-client", "6.9.0"),
];

const SCOPE: &str = "steps";
/// How long check.mjs may take in all (discovery, grants, JWKS fetches, the revocation wait).
const NODE_DEADLINE: Duration = Duration::from_secs(90);

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// `node` (or `NODE_BIN`), with the packages installed: a clear failure otherwise, never a skip.
fn node() -> PathBuf {
    let modules = clients_dir().join("node_modules");
    assert!(
        VERSIONS
            .iter()
            .all(|(name, _)| modules.join(name).join("package.json").exists()),
        "the real-client test's npm packages are not installed in {}: run `make test-e2e` \
         (or `npm ci` in tests/clients)",
        modules.display()
    );
    PathBuf::from(std::env::var_os("NODE_BIN").unwrap_or_else(|| "node".into()))
}

/// A stack whose issuer is its own Envoy's HTTPS listener (discovery compares the `issuer` of
/// the document with the URL it asked), with one service whose plugin issues JWTs.
fn jwt_stack() -> (Stack, String) {
    let https_port = free_port();
    let issuer = format!("https://127.0.0.1:{https_port}");
    let mut stack = Stack::start_services_with(&["--issuer", &issuer]);
    stack.create_service("step-on");
    let plugin = stack.client.post_json(
        &stack.admin("/services/step-on/plugins"),
        &json!({"name": "oauth2", "config": {
            "enable_client_credentials": true,
            "scopes": [SCOPE],
            "token_expiration": 3600,
            "access_token_format": "jwt",
        }}),
    );
    assert_eq!(plugin.status, 201, "plugin: {}", plugin.text);
    publish_a_signing_key(&stack);
    let options = GatewayOptions {
        https_port: Some(https_port),
        ..GatewayOptions::default()
    };
    stack.add_gateway_with("step-on", "/stepon", options);
    (stack, format!("{issuer}/stepon"))
}

/// The signing key made beforehand through the admin API, and published by every replica before
/// any token is issued: this test is about what clients make of our tokens. (The first key made
/// by the first signature signs at once, before the other replicas publish it: a JWT issued in
/// that window is refused by a filter or client that asked another replica, and the key's
/// generation inside a token request can outlast the filter's relay timeout. Both are the
/// signing keys' own matter, for their own tests.)
fn publish_a_signing_key(stack: &Stack) {
    let added = stack
        .client
        .post_json(&stack.admin("/signing-keys"), &json!({"alg": "RS256"}));
    assert_eq!(added.status, 201, "signing key: {}", added.text);
    let kid = added.json().text("kid");
    for replica in 0..stack.replica_count() {
        let jwks = stack.replica_gateway(replica, "/.well-known/jwks.json");
        let published = wait_until(Duration::from_secs(10), || {
            let answer = stack.client.get(&jwks);
            answer.status == 200
                && answer.json()["keys"]
                    .as_array()
                    .is_some_and(|keys| keys.iter().any(|key| key["kid"] == kid.as_str()))
        });
        assert!(published, "replica {replica} does not publish key {kid}");
    }
}

fn client_credentials(stack: &Stack, gw: &Gateway, app: &App) -> String {
    let answer = stack.client.post_form(
        &gw.https("/oauth2/token"),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &app.client_id),
            ("client_secret", &app.client_secret),
            ("scope", SCOPE),
        ],
    );
    assert_eq!(answer.status, 200, "token: {}", answer.text);
    answer.json().text("access_token")
}

/// Runs check.mjs with a deadline; returns (exit code, everything it printed).
fn run_checks(stack: &Stack, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out_path = stack.dir.path().join("node-clients.out");
    let out = std::fs::File::create(&out_path).expect("node output file");
    let err = out.try_clone().expect("node output file");
    let mut child = Command::new(node())
        .arg(clients_dir().join("check.mjs"))
        .current_dir(clients_dir())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting node (NODE_BIN, or `node` on PATH): {e}"));
    let mut status = None;
    let finished = wait_until(NODE_DEADLINE, || {
        status = child.try_wait().expect("waiting for node");
        status.is_some()
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
    }
    let printed = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        finished,
        "check.mjs did not finish within {NODE_DEADLINE:?}:\n{printed}"
    );
    (status.and_then(|s| s.code()), printed)
}

#[test]
fn real_clients_verify_our_jwts_and_discover_the_issuer() {
    let (stack, issuer) = jwt_stack();
    let gw = stack.gateway();
    let app = create_app(&stack, "node-client", "https://client.test/cb");
    let token = client_credentials(&stack, gw, &app);
    assert_eq!(token.split('.').count(), 3, "not a JWS: {token}");
    // The filter takes it too, before any client library looks at it.
    let resource = gw.https("/ping");
    let answer = stack
        .client
        .get_with(&resource, &[("authorization", &bearer(&token))]);
    assert_eq!(
        answer.status, 200,
        "the filter refused our JWT: {}",
        answer.text
    );

    // Node asks for the issuer's own address (the certificate names 127.0.0.1 and localhost).
    let resource_for_node = format!("{issuer}/ping");
    let ca = gw.cert_dir.join("cert.pem");
    let (code, printed) = run_checks(
        &stack,
        &[
            ("ISSUER", &issuer),
            ("CLIENT_ID", &app.client_id),
            ("CLIENT_SECRET", &app.client_secret),
            ("SCOPE", SCOPE),
            ("ACCESS_TOKEN", &token),
            ("RESOURCE_URL", &resource_for_node),
            ("REVOKE_DEADLINE_MS", "5000"),
            ("NODE_EXTRA_CA_CERTS", &ca.display().to_string()),
        ],
    );
    let summary: Value = printed
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("check.mjs printed no summary:\n{printed}"));
    for check in CHECKS {
        assert_eq!(
            summary["results"][check]["ok"],
            json!(true),
            "{check}: {}\n{printed}",
            summary["results"][check]
        );
    }
    assert_eq!(
        summary["results"].as_object().map(|r| r.len()),
        Some(CHECKS.len()),
        "check.mjs made other checks than this test knows:\n{printed}"
    );
    for (name, version) in VERSIONS {
        assert_eq!(summary["versions"][name], json!(version), "{printed}");
    }
    assert_eq!(code, Some(0), "check.mjs failed:\n{printed}");
    eprintln!("{printed}");
}
