//! JWT access tokens through the flow (docs/jwt-access-tokens.md §4–6): every refusal of §5,
//! acceptance with each algorithm, caching, distrust, the unknown-`kid` refresh and the
//! phantom-token header. The tests sign their own JWTs with fixed test keys (never used
//! anywhere else).

use super::mock::MockHost;
use super::*;
use crate::config::FilterConfig;
use crate::jwt::MAX_JWT_BYTES;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_700_000_000;
const ISSUER: &str = "https://gw.example";
const ROUTE_ISSUER: &str = "https://gw.example/r";
const SERVICE_ID: &str = "svc-id";
const RSA_PEM: &str = include_str!("testdata/rsa-test-key.pem");
const EC_SCALAR: [u8; 32] =
    hex32("fcae3b67394fee8f9db5a34f8ed3d4d75a8295566c01fab51b9f2127ea970864");
const ED_SEED: [u8; 32] = hex32("4d554b8140e874bd622189e28d7794a7538b02c455963923e147756313d7c791");

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'a' + 10,
        }
    }
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Key {
    Rsa,
    Ec,
    Ed,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_key() -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PEM).expect("the test key")
}

fn sign_with(key: Key, message: &[u8]) -> Vec<u8> {
    use rsa::signature::{SignatureEncoding, Signer};
    match key {
        Key::Rsa => rsa::pkcs1v15::SigningKey::<Sha256>::new(rsa_key())
            .sign(message)
            .to_vec(),
        Key::Ec => {
            let k = p256::ecdsa::SigningKey::from_bytes(&EC_SCALAR.into()).expect("scalar");
            let s: p256::ecdsa::Signature = k.sign(message);
            s.to_bytes().to_vec()
        }
        Key::Ed => ed25519_dalek::SigningKey::from_bytes(&ED_SEED)
            .sign(message)
            .to_bytes()
            .to_vec(),
    }
}

/// The published JWK of a test key (as the token-service's state carries it).
fn published(key: Key) -> Value {
    match key {
        Key::Rsa => {
            use rsa::traits::PublicKeyParts;
            let k = rsa_key();
            json!({"kid": "rsa-1", "alg": "RS256", "jwk": {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig",
                "n": b64(&k.n().to_bytes_be()), "e": b64(&k.e().to_bytes_be())}})
        }
        Key::Ec => {
            let k = p256::ecdsa::SigningKey::from_bytes(&EC_SCALAR.into()).expect("scalar");
            let point = k.verifying_key().to_encoded_point(false);
            json!({"kid": "ec-1", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
                "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y"))}})
        }
        Key::Ed => {
            let k = ed25519_dalek::SigningKey::from_bytes(&ED_SEED);
            json!({"kid": "ed-1", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "use": "sig",
                "x": b64(k.verifying_key().as_bytes())}})
        }
    }
}

fn header_for(key: Key) -> Value {
    match key {
        Key::Rsa => json!({"typ": "at+jwt", "alg": "RS256", "kid": "rsa-1"}),
        Key::Ec => json!({"typ": "at+jwt", "alg": "ES256", "kid": "ec-1"}),
        Key::Ed => json!({"typ": "at+jwt", "alg": "EdDSA", "kid": "ed-1"}),
    }
}

/// What the token-service puts in an access token (contract §2), for the identity of the
/// opaque path's `active()` answer.
fn claims() -> Value {
    json!({
        "iss": ROUTE_ISSUER, "aud": ROUTE_ISSUER, "sub": "clark", "client_id": "app",
        "scope": "email", "jti": "0b6d6e4c-1", "iat": NOW - 10, "exp": NOW + 600,
        "consumer": {"id": "c-real", "username": "bob", "custom_id": null},
        "credential_id": "k", "authenticated_userid": "clark", "service_id": SERVICE_ID,
    })
}

/// A compact JWS of these exact segments, signed with `key`.
fn sign_segments(header: &str, claims: &str, key: Key) -> String {
    let input = format!("{header}.{claims}");
    let signature = sign_with(key, input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

fn jwt(header: &Value, claims: &Value, key: Key) -> String {
    sign_segments(
        &b64(header.to_string().as_bytes()),
        &b64(claims.to_string().as_bytes()),
        key,
    )
}

fn good(key: Key) -> String {
    jwt(&header_for(key), &claims(), key)
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut c = claims();
    c[name] = value;
    c
}

fn without_claim(name: &str) -> Value {
    let mut c = claims();
    c.as_object_mut().expect("object").remove(name);
    c
}

fn with_header(name: &str, value: Value) -> Value {
    let mut h = header_for(Key::Rsa);
    h[name] = value;
    h
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn settings_json(extra: Value) -> Value {
    let mut s = json!({
        "id": "plugin", "updated_at": 1, "auth_header_name": "authorization",
        "hide_credentials": false, "realm": "service", "global_credentials": false,
        "anonymous": null, "anonymous_error": null, "access_token_format": "jwt",
    });
    for (k, v) in extra.as_object().expect("object") {
        s[k] = v.clone();
    }
    s
}

fn state(settings: Value, keys: &[Key], extra: Value) -> StatePoll {
    let mut poll = json!({
        "seq": 1, "reset": true, "revoked": [],
        "service": {"id": SERVICE_ID, "name": "s"},
        "plugin": settings, "issuer": ISSUER,
        "keys": keys.iter().map(|k| published(*k)).collect::<Vec<_>>(),
        "distrusted": [], "distrust_all": false,
    });
    for (k, v) in extra.as_object().expect("object") {
        poll[k] = v.clone();
    }
    StatePoll::parse(poll.to_string().as_bytes()).expect("a valid state")
}

const ALL_KEYS: [Key; 3] = [Key::Rsa, Key::Ec, Key::Ed];

fn worker_for(poll: StatePoll, shared: &MockHost) -> Rc<RefCell<Worker>> {
    let config = FilterConfig::parse(br#"{"service":"s","token_service":{"cluster":"ts"}}"#)
        .expect("config");
    let worker = Rc::new(RefCell::new(Worker::new(config)));
    worker.borrow_mut().apply_poll(shared, "s", poll);
    worker
}

fn jwt_worker(shared: &MockHost) -> Rc<RefCell<Worker>> {
    worker_for(
        state(settings_json(json!({})), &ALL_KEYS, json!({})),
        shared,
    )
}

const FORGED: [(&str, &str); 3] = [
    ("x-consumer-id", "forged"),
    ("x-authenticated-userid", "admin"),
    ("x-anonymous-consumer", "true"),
];

fn request_with(token: &str) -> MockHost {
    let auth = format!("Bearer {token}");
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", "GET"),
        (":path", "/r/echo"),
        (":authority", "api"),
    ];
    headers.extend_from_slice(&FORGED);
    headers.push(("authorization", &auth));
    let host = MockHost::new(&headers);
    host.clock.set(NOW);
    host
}

/// One request with `token` through a worker, sharing `shared`'s shared data.
fn run(worker: &Rc<RefCell<Worker>>, shared: &MockHost, token: &str) -> (MockHost, Flow) {
    let host = request_with(token);
    *host.shared.borrow_mut() = shared.shared.borrow().clone();
    let mut flow = Flow::new(worker.clone());
    flow.on_request_headers(&host, true);
    *shared.shared.borrow_mut() = host.shared.borrow().clone();
    (host, flow)
}

fn status(host: &MockHost) -> Option<u32> {
    host.last_reply().map(|r| r.status)
}

fn identity_headers(host: &MockHost) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = host
        .headers
        .borrow()
        .iter()
        .filter(|(n, _)| n.starts_with("x-"))
        .cloned()
        .collect();
    found.sort();
    found
}

fn json_answer(body: &str) -> CallAnswer {
    CallAnswer {
        headers: vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

fn active_answer(extra: &str) -> CallAnswer {
    json_answer(&format!(
        r#"{{"active":true,"consumer":{{"id":"c-real","username":"bob","custom_id":null}},
            "credential":{{"id":"k","client_id":"app"}},"authenticated_userid":"clark","scope":"email","exp":{}{extra}}}"#,
        NOW + 600
    ))
}

fn answer_last(host: &MockHost, flow: &mut Flow, answer: &CallAnswer) {
    let (id, _) = host.last_call().expect("a call was dispatched");
    flow.on_call_answer(host, id, answer);
}

fn last_call_header(host: &MockHost, name: &str) -> Option<String> {
    let (_, call) = host.last_call()?;
    call.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn counter(worker: &Rc<RefCell<Worker>>, metric: Metric) -> u64 {
    worker.borrow().counters.get(metric)
}

// ---- Acceptance ----

#[test]
fn a_jwt_of_each_algorithm_is_verified_locally_without_a_call() {
    for key in ALL_KEYS {
        let shared = MockHost::new(&[]);
        let worker = jwt_worker(&shared);
        let (host, flow) = run(&worker, &shared, &good(key));
        assert!(flow.is_allowed(), "{key:?}: {:?}", host.last_reply());
        assert!(host.calls.borrow().is_empty(), "{key:?}: no call");
        assert_eq!(
            host.header_values("x-consumer-id"),
            vec!["c-real"],
            "{key:?}"
        );
        assert_eq!(counter(&worker, Metric::JwtVerifiedLocally), 1, "{key:?}");
        assert_eq!(counter(&worker, Metric::ChecksSent), 0);
    }
}

/// Every RS256 key shape the token-service or an operator may publish: 2048, 3072 and 4096-bit
/// moduli with e = 65537 (the wasm build's own RS256 path, `ring` in the native build) and
/// e = 3 (RustCrypto's verify in the wasm build). Each verifies its own tokens and refuses a
/// tampered signature and another key's signature under its `kid`.
#[test]
fn rs256_keys_of_every_size_and_exponent_verify_and_refuse_forgeries() {
    use crate::jwt::{Context, KeySet, PublishedKey, Refusal};
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::traits::PublicKeyParts;
    let pems = [
        ("rsa-2048", RSA_PEM),
        ("rsa-3072", include_str!("testdata/rsa-3072-test-key.pem")),
        ("rsa-4096", include_str!("testdata/rsa-4096-test-key.pem")),
        ("rsa-e3", include_str!("testdata/rsa-e3-test-key.pem")),
    ];
    let keys: Vec<(&str, rsa::RsaPrivateKey)> = pems
        .iter()
        .map(|(kid, pem)| {
            (
                *kid,
                rsa::RsaPrivateKey::from_pkcs8_pem(pem).expect("a test key"),
            )
        })
        .collect();
    let published: Vec<PublishedKey> = keys
        .iter()
        .map(|(kid, k)| {
            serde_json::from_value(json!({"kid": kid, "alg": "RS256", "jwk": {"kty": "RSA",
                "n": b64(&k.n().to_bytes_be()), "e": b64(&k.e().to_bytes_be())}}))
            .expect("a key")
        })
        .collect();
    let (set, unusable) = KeySet::from_published(&published);
    assert!(unusable.is_empty(), "{unusable:?}");
    let ctx = Context {
        keys: &set,
        issuer: ISSUER,
        service_id: SERVICE_ID,
        global_credentials: false,
        now: NOW,
    };
    let signed = |kid: &str, signer: &rsa::RsaPrivateKey, tamper: bool| {
        let header = json!({"typ": "at+jwt", "alg": "RS256", "kid": kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        let mut signature = rsa::pkcs1v15::SigningKey::<Sha256>::new(signer.clone())
            .sign(input.as_bytes())
            .to_vec();
        if tamper {
            let last = signature.len() - 1;
            signature[last] ^= 0x01;
        }
        format!("{input}.{}", b64(&signature))
    };
    let verdict = |token: &str| {
        let candidate = crate::jwt::recognise(token).expect("a JWT");
        crate::jwt::verify(&candidate, &ctx).map(|identity| identity.consumer_id)
    };
    for (i, (kid, key)) in keys.iter().enumerate() {
        assert_eq!(
            verdict(&signed(kid, key, false)),
            Ok(Some("c-real".to_string())),
            "{kid}"
        );
        assert_eq!(
            verdict(&signed(kid, key, true)),
            Err(Refusal::Signature),
            "{kid} tampered"
        );
        let (other_kid, other) = &keys[(i + 1) % keys.len()];
        assert_eq!(
            verdict(&signed(kid, other, false)),
            Err(Refusal::Signature),
            "{other_kid}'s signature under {kid}"
        );
    }
}

#[test]
fn a_verified_jwt_is_cached_under_its_digest_and_evicted_by_the_feed() {
    let shared = MockHost::new(&[]);
    let worker = jwt_worker(&shared);
    let token = good(Key::Rsa);
    run(&worker, &shared, &token);
    let (host, flow) = run(&worker, &shared, &token);
    assert!(flow.is_allowed() && host.calls.borrow().is_empty());
    assert_eq!(
        counter(&worker, Metric::JwtVerifiedLocally),
        1,
        "verified once"
    );
    assert_eq!(counter(&worker, Metric::CacheHitWorker), 1);
    // The cache key is the one a revocation (the raw digest) reaches.
    let raw = cache::digest(&token);
    let key = worker.borrow().cache_key("s", &raw);
    assert!(worker
        .borrow()
        .local
        .get(&key, worker.borrow().epoch, NOW)
        .is_some());
}

/// The cache is consulted before a token is parsed: with a valid JWT's verdict cached, every
/// altered copy of it (a claim, the header, the signature, one byte more or less) is a miss
/// that goes through the whole verification and is refused, without a call.
#[test]
fn altered_copies_of_a_cached_jwt_are_verified_and_refused() {
    let shared = MockHost::new(&[]);
    let worker = jwt_worker(&shared);
    let token = good(Key::Rsa);
    let (host, flow) = run(&worker, &shared, &token);
    assert!(flow.is_allowed(), "{:?}", host.last_reply());
    let (header, rest) = token.split_once('.').expect("a JWS");
    let (claims_segment, signature) = rest.split_once('.').expect("a JWS");
    let forged_claims = b64(with_claim("sub", json!("admin")).to_string().as_bytes());
    let other_header = b64(
        json!({"typ": "at+jwt", "alg": "RS256", "kid": "rsa-1", "x": 1})
            .to_string()
            .as_bytes(),
    );
    let flipped = |segment: &str| {
        let mut bytes = segment.as_bytes().to_vec();
        bytes[4] = if bytes[4] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).expect("ASCII")
    };
    let altered = [
        format!("{header}.{forged_claims}.{signature}"),
        format!("{other_header}.{claims_segment}.{signature}"),
        format!("{header}.{claims_segment}.{}", flipped(signature)),
        format!("{header}.{}.{signature}", flipped(claims_segment)),
        format!("{token}A"),
        token[..token.len() - 1].to_string(),
    ];
    for forged in &altered {
        let (host, flow) = run(&worker, &shared, forged);
        assert_eq!(status(&host), Some(401), "{forged}");
        assert!(!flow.is_allowed());
        assert!(host.calls.borrow().is_empty(), "no call for {forged}");
    }
    assert_eq!(counter(&worker, Metric::CacheHitWorker), 0);
    let (_, flow) = run(&worker, &shared, &token);
    assert!(
        flow.is_allowed(),
        "the genuine token still answers from the cache"
    );
    assert_eq!(counter(&worker, Metric::CacheHitWorker), 1);
}

#[test]
fn identity_headers_are_exactly_the_opaque_paths() {
    let shared = MockHost::new(&[]);
    let worker = jwt_worker(&shared);
    let (jwt_host, _) = run(&worker, &shared, &good(Key::Ed));
    let (opaque_host, mut flow) = run(&worker, &shared, "opaque-token-0123456789");
    answer_last(&opaque_host, &mut flow, &active_answer(""));
    assert!(flow.is_allowed());
    assert_eq!(identity_headers(&jwt_host), identity_headers(&opaque_host));
    assert!(!identity_headers(&jwt_host).is_empty());
}

#[test]
fn a_global_credentials_plugin_takes_a_token_bound_to_no_service() {
    let shared = MockHost::new(&[]);
    let settings = settings_json(json!({"global_credentials": true}));
    let worker = worker_for(state(settings, &ALL_KEYS, json!({})), &shared);
    let token = jwt(
        &header_for(Key::Rsa),
        &without_claim("service_id"),
        Key::Rsa,
    );
    let (host, flow) = run(&worker, &shared, &token);
    assert!(flow.is_allowed(), "{:?}", host.last_reply());
}

#[test]
fn times_within_the_clock_skew_are_accepted() {
    let shared = MockHost::new(&[]);
    let worker = jwt_worker(&shared);
    let mut c = claims();
    c["exp"] = json!(NOW - 29);
    c["iat"] = json!(NOW + 30);
    c["nbf"] = json!(NOW + 30);
    let (host, flow) = run(&worker, &shared, &jwt(&header_for(Key::Rsa), &c, Key::Rsa));
    assert!(flow.is_allowed(), "{:?}", host.last_reply());
}

#[test]
fn an_audience_array_naming_the_issuer_and_the_bare_issuer_are_accepted() {
    let shared = MockHost::new(&[]);
    let worker = jwt_worker(&shared);
    let array = with_claim("aud", json!(["other", ROUTE_ISSUER]));
    let mut bare = claims();
    bare["iss"] = json!(ISSUER);
    bare["aud"] = json!(ISSUER);
    for c in [array, bare] {
        let (host, flow) = run(&worker, &shared, &jwt(&header_for(Key::Ec), &c, Key::Ec));
        assert!(flow.is_allowed(), "{c}: {:?}", host.last_reply());
    }
}

// ---- Refusals (contract §5): each a 401 with Kong's body and no call ----

fn refusals() -> Vec<(&'static str, String)> {
    let rsa = Key::Rsa;
    let h = |v: &Value| b64(v.to_string().as_bytes());
    let c = |v: &Value| b64(v.to_string().as_bytes());
    let good = good(rsa);
    let (head, rest) = good.split_once('.').expect("dots");
    let (claims_part, signature) = rest.split_once('.').expect("dots");
    let public_jwk = published(rsa)["jwk"].to_string();
    let hs256 = {
        let header = h(&json!({"typ": "at+jwt", "alg": "HS256", "kid": "rsa-1"}));
        let input = format!("{header}.{claims_part}");
        format!(
            "{input}.{}",
            b64(&hmac_sha256(public_jwk.as_bytes(), input.as_bytes()))
        )
    };
    let tampered_claims = {
        let mut forged = claims();
        forged["consumer"]["id"] = json!("admin");
        format!("{head}.{}.{signature}", c(&forged))
    };
    let tampered_signature = {
        let mut sig = URL_SAFE_NO_PAD.decode(signature).expect("b64");
        sig[10] ^= 1;
        format!("{head}.{claims_part}.{}", b64(&sig))
    };
    let mut cases = vec![
        (
            "alg none",
            format!("{}.{claims_part}.", h(&with_header("alg", json!("none")))),
        ),
        ("HS256 keyed with the public key", hs256),
        (
            "RS256 under the ES256 key's kid",
            jwt(&with_header("kid", json!("ec-1")), &claims(), rsa),
        ),
        (
            "ES256 header over an RSA key",
            jwt(&with_header("alg", json!("ES256")), &claims(), rsa),
        ),
        ("no kid", {
            let mut hd = header_for(rsa);
            hd.as_object_mut().expect("object").remove("kid");
            jwt(&hd, &claims(), rsa)
        }),
        (
            "jwk in the header",
            jwt(
                &with_header("jwk", published(rsa)["jwk"].clone()),
                &claims(),
                rsa,
            ),
        ),
        (
            "jku in the header",
            jwt(
                &with_header("jku", json!("https://evil/jwks")),
                &claims(),
                rsa,
            ),
        ),
        (
            "x5u in the header",
            jwt(
                &with_header("x5u", json!("https://evil/cert")),
                &claims(),
                rsa,
            ),
        ),
        (
            "x5c in the header",
            jwt(&with_header("x5c", json!(["MIIB"])), &claims(), rsa),
        ),
        (
            "crit in the header",
            jwt(&with_header("crit", json!(["exp"])), &claims(), rsa),
        ),
        (
            "crit null in the header",
            jwt(&with_header("crit", Value::Null), &claims(), rsa),
        ),
        ("typ missing", {
            let mut hd = header_for(rsa);
            hd.as_object_mut().expect("object").remove("typ");
            jwt(&hd, &claims(), rsa)
        }),
        (
            "typ JWT",
            jwt(&with_header("typ", json!("JWT")), &claims(), rsa),
        ),
        (
            "an identity JWT as access token",
            jwt(&with_header("typ", json!("identity+jwt")), &claims(), rsa),
        ),
        (
            "iss of another issuer",
            jwt(
                &header_for(rsa),
                &with_claim("iss", json!("https://evil.example/r")),
                rsa,
            ),
        ),
        ("iss extending the issuer's host", {
            let mut cl = claims();
            cl["iss"] = json!("https://gw.example.evil");
            cl["aud"] = json!("https://gw.example.evil");
            jwt(&header_for(rsa), &cl, rsa)
        }),
        (
            "iss missing",
            jwt(&header_for(rsa), &without_claim("iss"), rsa),
        ),
        (
            "aud missing",
            jwt(&header_for(rsa), &without_claim("aud"), rsa),
        ),
        (
            "aud another resource",
            jwt(&header_for(rsa), &with_claim("aud", json!(["other"])), rsa),
        ),
        (
            "exp past beyond the skew",
            jwt(&header_for(rsa), &with_claim("exp", json!(NOW - 30)), rsa),
        ),
        (
            "exp missing",
            jwt(&header_for(rsa), &without_claim("exp"), rsa),
        ),
        (
            "exp fractional",
            jwt(
                &header_for(rsa),
                &with_claim("exp", json!((NOW + 600) as f64 + 0.5)),
                rsa,
            ),
        ),
        (
            "iat future beyond the skew",
            jwt(&header_for(rsa), &with_claim("iat", json!(NOW + 31)), rsa),
        ),
        (
            "iat missing",
            jwt(&header_for(rsa), &without_claim("iat"), rsa),
        ),
        (
            "nbf future beyond the skew",
            jwt(&header_for(rsa), &with_claim("nbf", json!(NOW + 31)), rsa),
        ),
        (
            "another service's id",
            jwt(
                &header_for(rsa),
                &with_claim("service_id", json!("other-svc")),
                rsa,
            ),
        ),
        (
            "no consumer",
            jwt(&header_for(rsa), &without_claim("consumer"), rsa),
        ),
        ("tampered claims", tampered_claims),
        ("tampered signature", tampered_signature),
        ("truncated signature", good[..good.len() - 4].to_string()),
        ("signature removed", format!("{head}.{claims_part}.")),
        ("two segments", format!("{head}.{claims_part}")),
        ("four segments", format!("{good}.{signature}")),
        (
            "claims with padding",
            format!("{head}.{claims_part}=.{signature}"),
        ),
        (
            "claims in standard base64",
            sign_segments(head, &standard_base64_claims(), rsa),
        ),
        (
            "header with padding",
            format!("{head}=.{claims_part}.{signature}"),
        ),
        (
            "claims a JSON array",
            sign_segments(head, &b64(b"[1,2]"), rsa),
        ),
        (
            "claims not JSON",
            sign_segments(head, &b64(b"{\"iss\":"), rsa),
        ),
        (
            "header a JSON array",
            sign_segments(&b64(b"[\"at+jwt\"]"), claims_part, rsa),
        ),
        (
            "duplicate alg",
            sign_segments(
                &b64(br#"{"typ":"at+jwt","alg":"RS256","alg":"none","kid":"rsa-1"}"#),
                claims_part,
                rsa,
            ),
        ),
    ];
    cases.push(("over 8192 bytes", oversized(MAX_JWT_BYTES + 1)));
    cases
}

/// The claims encoded with `+` or `/` (standard base64, not base64url).
fn standard_base64_claims() -> String {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    (1..64)
        .map(|n| STANDARD_NO_PAD.encode(with_claim("note", json!("~?".repeat(n))).to_string()))
        .find(|e| e.contains('+') || e.contains('/'))
        .expect("some length encodes a + or /")
}

/// Validly signed EdDSA JWTs growing a byte or so at a time (a `pad` claim fills them): the
/// first of at least `len` bytes, and the one before it.
fn around(len: usize) -> (String, String) {
    let padded = |pad: usize| {
        jwt(
            &header_for(Key::Ed),
            &with_claim("pad", json!("x".repeat(pad))),
            Key::Ed,
        )
    };
    let mut pad = (len * 3 / 4).saturating_sub(1000);
    let mut previous = padded(pad);
    loop {
        pad += 1;
        let token = padded(pad);
        if token.len() >= len {
            return (previous, token);
        }
        previous = token;
    }
}

fn oversized(len: usize) -> String {
    around(len).1
}

#[test]
fn every_refusal_is_a_401_without_a_call() {
    for (case, token) in refusals() {
        let shared = MockHost::new(&[]);
        let worker = jwt_worker(&shared);
        let (host, mut flow) = run(&worker, &shared, &token);
        // A token that is no JWT access token goes the opaque way: up to 512 characters it is
        // asked about (the token-service knows no such token), longer it is refused at once.
        let opaque = crate::jwt::recognise(&token).is_none();
        if opaque && token.len() <= 512 {
            assert_eq!(
                last_call_header(&host, "x-access-token").as_deref(),
                Some(token.as_str()),
                "{case}"
            );
            answer_last(
                &host,
                &mut flow,
                &json_answer(r#"{"active":false,"reason":"invalid"}"#),
            );
            host.calls.borrow_mut().clear();
        }
        let reply = host.last_reply();
        assert!(
            flow.is_replied(),
            "{case}: refused, not {:?}",
            host.calls.borrow()
        );
        assert_eq!(status(&host), Some(401), "{case}: {reply:?}");
        let body = String::from_utf8_lossy(&reply.as_ref().expect("reply").body).to_string();
        assert!(body.contains("invalid_token"), "{case}: {body}");
        assert!(host.calls.borrow().is_empty(), "{case}: no call");
        assert_eq!(counter(&worker, Metric::JwtVerifiedLocally), 0, "{case}");
        assert_eq!(host.resumes.get(), 0, "{case}");
    }
}

#[test]
fn a_jwt_up_to_8192_bytes_is_read_and_one_byte_more_is_not() {
    let shared = MockHost::new(&[]);
    let worker = jwt_worker(&shared);
    let (fits, over) = around(MAX_JWT_BYTES + 1);
    // base64url cannot end everywhere: the longest token not over the limit, and the next.
    assert!(
        fits.len() <= MAX_JWT_BYTES && fits.len() >= MAX_JWT_BYTES - 2,
        "{}",
        fits.len()
    );
    let (host, flow) = run(&worker, &shared, &fits);
    assert!(
        flow.is_allowed(),
        "{} bytes: {:?}",
        fits.len(),
        host.last_reply()
    );
    let (host, _) = run(&worker, &shared, &over);
    assert_eq!(status(&host), Some(401), "{} bytes", over.len());
}

#[test]
fn a_global_token_under_a_non_global_plugin_gets_kongs_answer() {
    let shared = MockHost::new(&[]);
    let worker = jwt_worker(&shared);
    let token = jwt(
        &header_for(Key::Rsa),
        &without_claim("service_id"),
        Key::Rsa,
    );
    let (host, _) = run(&worker, &shared, &token);
    let reply = host.last_reply().expect("a reply");
    assert_eq!(reply.status, 401);
    assert!(String::from_utf8_lossy(&reply.body).contains("global_credentials"));
    assert_eq!(counter(&worker, Metric::DeniedGlobalToken), 1);
}

// ---- Distrust (contract §4, §5.7) ----

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn distrusting(token: &str) -> StatePoll {
    let digest = hex(&cache::digest(token));
    state(
        settings_json(json!({})),
        &ALL_KEYS,
        json!({"seq": 2, "reset": false, "revoked": [digest], "distrusted": [{"digest": digest, "exp": NOW + 600}]}),
    )
}

#[test]
fn a_distrusted_jwt_is_asked_about_with_the_jwt_itself() {
    let shared = MockHost::new(&[]);
    let worker = jwt_worker(&shared);
    let token = good(Key::Rsa);
    let (_, first) = run(&worker, &shared, &token);
    assert!(first.is_allowed(), "cached before the revocation");
    worker
        .borrow_mut()
        .apply_poll(&shared, "s", distrusting(&token));
    let (host, mut flow) = run(&worker, &shared, &token);
    let (_, call) = host.last_call().expect("the token-service is asked");
    let sent = call.headers.iter().find(|(n, _)| n == "x-access-token");
    assert_eq!(sent.map(|(_, v)| v.as_str()), Some(token.as_str()));
    assert_eq!(counter(&worker, Metric::JwtCheckedRemotely), 1);
    answer_last(
        &host,
        &mut flow,
        &json_answer(r#"{"active":false,"reason":"invalid"}"#),
    );
    assert_eq!(status(&host), Some(401));
    // Another JWT is still verified locally.
    let (other, flow) = run(&worker, &shared, &good(Key::Ec));
    assert!(flow.is_allowed() && other.calls.borrow().is_empty());
}

#[test]
fn distrust_all_asks_about_every_jwt_until_cleared() {
    let shared = MockHost::new(&[]);
    let worker = jwt_worker(&shared);
    let all = state(
        settings_json(json!({})),
        &ALL_KEYS,
        json!({"seq": 2, "reset": false, "distrust_all": true}),
    );
    worker.borrow_mut().apply_poll(&shared, "s", all);
    let (host, _) = run(&worker, &shared, &good(Key::Ed));
    assert_eq!(host.calls.borrow().len(), 1, "asked");
    let cleared = state(
        settings_json(json!({})),
        &ALL_KEYS,
        json!({"seq": 3, "reset": false}),
    );
    worker.borrow_mut().apply_poll(&shared, "s", cleared);
    // The entries from before `distrust_all` were never sent: an incremental `false` keeps
    // asking, and the next poll asks for a reset answer (the complete list).
    let (host, _) = run(&worker, &shared, &good(Key::Ec));
    assert_eq!(host.calls.borrow().len(), 1, "still asked");
    assert_eq!(worker.borrow().polls_due(), vec![("s".to_string(), -1)]);
    let complete = state(
        settings_json(json!({})),
        &ALL_KEYS,
        json!({"seq": 4, "reset": true, "distrusted": []}),
    );
    worker.borrow_mut().apply_poll(&shared, "s", complete);
    let (host, flow) = run(&worker, &shared, &good(Key::Ec));
    assert!(flow.is_allowed() && host.calls.borrow().is_empty());
    assert_eq!(worker.borrow().polls_due(), vec![("s".to_string(), 4)]);
}

#[test]
fn a_distrusted_jwt_whose_identity_changed_gets_the_answers_identity() {
    let shared = MockHost::new(&[]);
    let worker = jwt_worker(&shared);
    let token = good(Key::Ec);
    worker
        .borrow_mut()
        .apply_poll(&shared, "s", distrusting(&token));
    let (host, mut flow) = run(&worker, &shared, &token);
    answer_last(
        &host,
        &mut flow,
        &json_answer(&format!(
            r#"{{"active":true,"consumer":{{"id":"c-real","username":"renamed","custom_id":null}},
            "credential":{{"id":"k","client_id":"app"}},"authenticated_userid":"clark","scope":null,"exp":{}}}"#,
            NOW + 600
        )),
    );
    assert!(flow.is_allowed());
    assert_eq!(host.header_values("x-consumer-username"), vec!["renamed"]);
}

// ---- Unknown kid: one bounded refresh ----

#[test]
fn an_unknown_kid_refreshes_the_keys_once_then_verifies() {
    let shared = MockHost::new(&[]);
    // The worker knows only the RSA key; the token is signed by the EC key published since.
    let worker = worker_for(
        state(settings_json(json!({})), &[Key::Rsa], json!({})),
        &shared,
    );
    let (host, mut flow) = run(&worker, &shared, &good(Key::Ec));
    let (_, call) = host.last_call().expect("a state poll");
    let path = call
        .headers
        .iter()
        .find(|(n, _)| n == ":path")
        .map(|(_, v)| v.clone());
    assert_eq!(
        path.as_deref(),
        Some("/gateway/v1/services/s/state?since=1"),
        "from the worker's position: no reset"
    );
    let newer = state(
        settings_json(json!({})),
        &[Key::Rsa, Key::Ec],
        json!({"seq": 1, "reset": false}),
    );
    let body = serde_json::to_string(&json!({
        "seq": newer.seq, "reset": false, "revoked": [], "service": {"id": SERVICE_ID, "name": "s"},
        "plugin": settings_json(json!({})), "issuer": ISSUER,
        "keys": [published(Key::Rsa), published(Key::Ec)], "distrusted": [], "distrust_all": false,
    }))
    .expect("json");
    answer_last(&host, &mut flow, &json_answer(&body));
    assert!(flow.is_allowed(), "{:?}", host.last_reply());
    assert_eq!(host.resumes.get(), 1);
    assert_eq!(counter(&worker, Metric::JwtVerifiedLocally), 1);
}

#[test]
fn an_unknown_kid_is_refused_after_the_refresh_and_refreshes_at_most_once_a_second() {
    let shared = MockHost::new(&[]);
    let worker = worker_for(
        state(settings_json(json!({})), &[Key::Rsa], json!({})),
        &shared,
    );
    let (host, mut flow) = run(&worker, &shared, &good(Key::Ed));
    assert_eq!(host.calls.borrow().len(), 1, "one refresh");
    let same_keys = state(
        settings_json(json!({})),
        &[Key::Rsa],
        json!({"reset": false}),
    );
    let _ = same_keys;
    let body = json!({
        "seq": 1, "reset": false, "revoked": [], "service": {"id": SERVICE_ID, "name": "s"},
        "plugin": settings_json(json!({})), "issuer": ISSUER, "keys": [published(Key::Rsa)],
    });
    answer_last(&host, &mut flow, &json_answer(&body.to_string()));
    assert_eq!(status(&host), Some(401), "still unknown");
    assert_eq!(host.calls.borrow().len(), 1, "the request refreshed once");
    // Within the same second, another unknown kid is refused without a poll.
    let (again, _) = run(&worker, &shared, &good(Key::Ec));
    assert_eq!(status(&again), Some(401));
    assert!(again.calls.borrow().is_empty());
    // A second later it may refresh again.
    let later = request_with(&good(Key::Ec));
    later.clock.set(NOW + 1);
    let mut flow = Flow::new(worker.clone());
    flow.on_request_headers(&later, true);
    assert_eq!(later.calls.borrow().len(), 1);
}

// ---- Identity JWT for the upstream (contract §6) and identity_headers ----

#[test]
fn a_locally_verified_jwt_is_itself_the_forwarded_identity_jwt() {
    for (header, expected_prefix) in [("x-identity-jwt", ""), ("authorization", "Bearer ")] {
        let shared = MockHost::new(&[]);
        let settings = settings_json(json!({"identity_jwt_header": header}));
        let worker = worker_for(state(settings, &ALL_KEYS, json!({})), &shared);
        let token = good(Key::Rsa);
        let (host, flow) = run(&worker, &shared, &token);
        assert!(flow.is_allowed());
        assert_eq!(
            host.header_values(header),
            vec![format!("{expected_prefix}{token}")]
        );
        // From the cache too.
        let (host, _) = run(&worker, &shared, &token);
        assert_eq!(
            host.header_values(header),
            vec![format!("{expected_prefix}{token}")]
        );
    }
}

fn identity_jwt(exp: u64) -> String {
    jwt(
        &json!({"typ": "identity+jwt", "alg": "RS256", "kid": "rsa-1"}),
        &json!({"iss": ROUTE_ISSUER, "sub": "clark", "exp": exp}),
        Key::Rsa,
    )
}

#[test]
fn a_check_answers_identity_jwt_is_forwarded_and_bounds_the_cache() {
    let shared = MockHost::new(&[]);
    let settings = settings_json(json!({"identity_jwt_header": "x-identity-jwt"}));
    let worker = worker_for(state(settings, &ALL_KEYS, json!({})), &shared);
    let phantom = identity_jwt(NOW + 100);
    let (host, mut flow) = run(&worker, &shared, "opaque-token-0123456789");
    answer_last(
        &host,
        &mut flow,
        &active_answer(&format!(r#","identity_jwt":"{phantom}""#)),
    );
    assert!(flow.is_allowed());
    assert_eq!(host.header_values("x-identity-jwt"), vec![phantom.clone()]);
    // Cached until its exp minus the skew, not the token's exp.
    let later = request_with("opaque-token-0123456789");
    *later.shared.borrow_mut() = shared.shared.borrow().clone();
    later.clock.set(NOW + 71);
    let mut flow = Flow::new(worker.clone());
    flow.on_request_headers(&later, true);
    assert_eq!(
        later.calls.borrow().len(),
        1,
        "asked again: the identity JWT would be stale"
    );
}

#[test]
fn a_client_cannot_send_its_own_identity_jwt() {
    let shared = MockHost::new(&[]);
    let mut settings = settings_json(json!({"identity_jwt_header": "x-identity-jwt"}));
    settings["anonymous"] = json!({"id": "anon", "username": null, "custom_id": null});
    let worker = worker_for(state(settings, &ALL_KEYS, json!({})), &shared);
    let host = MockHost::new(&[
        (":method", "GET"),
        (":path", "/r"),
        (":authority", "api"),
        ("x-identity-jwt", "forged"),
    ]);
    host.clock.set(NOW);
    let mut flow = Flow::new(worker);
    flow.on_request_headers(&host, true);
    assert!(flow.is_allowed(), "anonymous");
    assert!(host.header_values("x-identity-jwt").is_empty());
}

#[test]
fn identity_headers_false_sets_none_and_still_strips_client_copies() {
    let shared = MockHost::new(&[]);
    let settings =
        settings_json(json!({"identity_jwt_header": "x-identity-jwt", "identity_headers": false}));
    let worker = worker_for(state(settings, &ALL_KEYS, json!({})), &shared);
    let token = good(Key::Ed);
    let (host, flow) = run(&worker, &shared, &token);
    assert!(flow.is_allowed());
    assert_eq!(
        identity_headers(&host),
        vec![("x-identity-jwt".to_string(), token)]
    );
}

#[test]
fn settings_the_filter_cannot_enforce_are_no_state() {
    let bad = |extra: Value| {
        let poll = json!({"seq": 1, "reset": true, "revoked": [], "service": {"id": "x", "name": "s"},
            "plugin": settings_json(extra)});
        StatePoll::parse(poll.to_string().as_bytes())
    };
    assert!(bad(json!({"identity_jwt_header": "X-Upper"})).is_none());
    assert!(bad(json!({"identity_jwt_header": "a b"})).is_none());
    assert!(bad(json!({"identity_jwt_header": ""})).is_none());
    assert!(
        bad(json!({"identity_headers": false})).is_none(),
        "nowhere for the identity"
    );
    assert!(bad(json!({"access_token_format": "paseto"})).is_none());
    assert!(bad(json!({"identity_jwt_header": "x-id", "identity_headers": false})).is_some());
    assert!(bad(json!({})).is_some());
}

// ---- Never a JWT of a third-party server ----

#[test]
fn introspection_mode_never_verifies_jwts_itself() {
    let config = FilterConfig::parse(
        br#"{"introspection":{"cluster":"idp","path":"/introspect","client_id":"a","client_secret":"b"}}"#,
    )
    .expect("config");
    let worker = Rc::new(RefCell::new(Worker::new(config)));
    // A short at+jwt of a third-party server: introspected like any of its tokens.
    let token = jwt(
        &header_for(Key::Ed),
        &json!({"iss": "https://idp", "exp": NOW + 60}),
        Key::Ed,
    );
    assert!(token.len() <= 512);
    let shared = MockHost::new(&[]);
    let (host, _) = run(&worker, &shared, &token);
    let (_, call) = host.last_call().expect("introspected");
    assert_eq!(call.cluster, "idp");
    assert_eq!(counter(&worker, Metric::JwtVerifiedLocally), 0);
}

// ---- Cost ----

/// Not a check: what one JWT costs to recognise and verify, per algorithm. Run it optimised:
/// `cargo test --release -p oauth2-filter --lib verify_cost -- --ignored --nocapture` (and
/// with `--target wasm32-wasip1` under wasmtime for the wasm figure).
#[test]
#[ignore]
fn verify_cost() {
    use crate::jwt::{Context, KeySet, PublishedKey};
    let published: Vec<PublishedKey> = ALL_KEYS
        .iter()
        .map(|k| serde_json::from_value(published(*k)).expect("a key"))
        .collect();
    let (keys, _) = KeySet::from_published(&published);
    for key in ALL_KEYS {
        let token = good(key);
        let ctx = Context {
            keys: &keys,
            issuer: ISSUER,
            service_id: SERVICE_ID,
            global_credentials: false,
            now: NOW,
        };
        let rounds = 2000;
        let (start, cpu_start) = (std::time::Instant::now(), thread_cpu_ns());
        for _ in 0..rounds {
            let candidate = crate::jwt::recognise(&token).expect("a JWT");
            assert!(crate::jwt::verify(&candidate, &ctx).is_ok());
        }
        let per = |total: f64| total / f64::from(rounds);
        let wall = per(start.elapsed().as_secs_f64() * 1e6);
        let cpu = match (cpu_start, thread_cpu_ns()) {
            (Some(a), Some(b)) => format!("{:.1} µs CPU", per((b - a) as f64 / 1e3)),
            _ => "CPU time not readable here".to_string(),
        };
        println!(
            "{key:?}: {wall:.1} µs wall, {cpu} per recognise + verify ({} bytes)",
            token.len()
        );
    }
}

/// This thread's CPU time (Linux `schedstat`, nanoseconds): a loaded machine inflates the
/// wall clock, not this.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

#[test]
fn an_unknown_kid_whose_refresh_fails_is_an_outage_not_a_401() {
    let shared = MockHost::new(&[]);
    let worker = worker_for(
        state(settings_json(json!({})), &[Key::Rsa], json!({})),
        &shared,
    );
    let (host, mut flow) = run(&worker, &shared, &good(Key::Ec));
    let timeout = CallAnswer {
        headers: vec![(":status".into(), "504".into())],
        body: b"upstream request timeout".to_vec(),
    };
    answer_last(&host, &mut flow, &timeout);
    assert_eq!(
        status(&host),
        Some(503),
        "the key may exist: unknown, not invalid"
    );
    assert_eq!(counter(&worker, Metric::StatePollFailed), 1);
    assert_eq!(host.resumes.get(), 0);
}
