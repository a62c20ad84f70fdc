//! The signer against a real database of either kind: real keys, real signatures, verified
//! with the published JWK by `jsonwebtoken`'s verifier (not ours).

use super::{Alg, KeyError, PublicKey, Signing, SigningError, SigningSettings};
use crate::store::testing::{on_both_backends, Backend, TestDb};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn claims() -> Value {
    let now = crate::model::now();
    json!({"iss": "https://issuer.test/r", "sub": "alice", "iat": now, "exp": now + 60})
}

fn settings(publish_delay_s: i64) -> SigningSettings {
    SigningSettings {
        publish_delay_s,
        ..SigningSettings::default()
    }
}

async fn signing(db: &TestDb, publish_delay_s: i64) -> Signing {
    Signing::new(db.open().await, settings(publish_delay_s))
}

/// Verifies `token` with the key of its `kid` in `jwks`, as any JOSE library would.
fn verify(token: &str, jwks: &Value) -> jsonwebtoken::TokenData<Value> {
    let header = jsonwebtoken::decode_header(token).expect("a JWS header");
    let kid = header.kid.clone().expect("a kid");
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .unwrap_or_else(|| panic!("{kid} is not published in {jwks}"));
    let jwk: Jwk = serde_json::from_value(jwk.clone()).expect("a JWK jsonwebtoken reads");
    let key = DecodingKey::from_jwk(&jwk).expect("a decoding key");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&["unused"]);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).expect("a valid signature")
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a header")
        .kid
        .expect("a kid")
}

/// Polls `check` until it holds or `within` has passed.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_first_signature_makes_an_rs256_2048_key_that_verifies(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let signing = signing(&db, 5).await;
    assert_eq!(signing.public_jwks().await.unwrap(), json!({"keys": []}));
    let token = signing.sign("at+jwt", &claims()).await.unwrap();
    let jwks = signing.public_jwks().await.unwrap();
    let data = verify(&token, &jwks);
    assert_eq!(data.header.alg, Algorithm::RS256);
    assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(data.claims["sub"], "alice");
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["alg"], "RS256");
    let modulus = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        jwk["n"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(modulus.len() * 8, 2048);
    // The second signature uses the same key: one key, not one per token.
    let again = signing.sign("at+jwt", &claims()).await.unwrap();
    assert_eq!(kid_of(&again), kid_of(&token));
    assert_eq!(signing.list().await.unwrap().len(), 1);
}

async fn every_algorithm_signs_what_its_published_jwk_verifies(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    for alg in Alg::ALL {
        // A store of its own per algorithm: each key is the first, so active at once.
        let db = TestDb::new(backend).await.expect("same backend");
        let signing = signing(&db, 5).await;
        let added = signing.add(alg).await.unwrap();
        assert_eq!(added.status, super::ring::Status::Active, "{alg}");
        let token = signing.sign("at+jwt", &claims()).await.unwrap();
        let data = verify(&token, &signing.public_jwks().await.unwrap());
        assert_eq!(format!("{:?}", data.header.alg), alg.as_str(), "{alg}");
        assert_eq!(data.header.kid.as_deref(), Some(added.kid.as_str()));
    }
    drop(db);
}

async fn no_answer_carries_a_private_key(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let signing = signing(&db, 5).await;
    signing.sign("at+jwt", &claims()).await.unwrap();
    signing.add(Alg::ES256).await.unwrap();
    signing.add(Alg::EdDSA).await.unwrap();
    let listed = serde_json::to_string(&signing.list().await.unwrap()).unwrap();
    let jwks = signing.public_jwks().await.unwrap().to_string();
    for text in [&listed, &jwks] {
        for private in ["PRIVATE", "\"d\"", "\"p\"", "\"q\"", "\"dp\""] {
            assert!(!text.contains(private), "{private} in {text}");
        }
    }
}

async fn a_declarative_dump_carries_no_signing_key(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.open().await;
    let signing = Signing::new(store.clone(), settings(5));
    let key = signing.add(Alg::EdDSA).await.unwrap();
    let dump = crate::declarative::dump::dump(&store)
        .await
        .unwrap()
        .to_string();
    assert!(!dump.contains("PRIVATE"), "{dump}");
    assert!(!dump.contains(&key.kid), "{dump}");
}

async fn claims_without_exp_are_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let signing = signing(&db, 5).await;
    let err = signing
        .sign("at+jwt", &json!({"sub": "alice"}))
        .await
        .unwrap_err();
    assert!(matches!(err, SigningError::MissingExp), "{err:?}");
}

fn status_of(keys: &[PublicKey], kid: &str) -> &'static str {
    keys.iter()
        .find(|k| k.kid == kid)
        .map_or("absent", |k| k.status.as_str())
}

async fn a_new_key_is_published_before_it_signs_then_replaces_the_active_one(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let signing = signing(&db, 2).await;
    let first = kid_of(&signing.sign("at+jwt", &claims()).await.unwrap());
    let next = signing.add(Alg::ES256).await.unwrap();
    assert_eq!(next.status.as_str(), "next");
    assert_eq!(next.activates_at, next.created_at + 2);
    // Published at once, not signing yet.
    let jwks = signing.public_jwks().await.unwrap().to_string();
    assert!(jwks.contains(&next.kid), "{jwks}");
    let listed = signing.list().await.unwrap();
    if status_of(&listed, &next.kid) == "next" {
        let token = signing.sign("at+jwt", &claims()).await.unwrap();
        // (Unless the delay passed meanwhile on a slow machine.)
        if status_of(&signing.list().await.unwrap(), &next.kid) == "next" {
            assert_eq!(kid_of(&token), first);
        }
    }
    eventually(Duration::from_secs(10), "the next key signs", || async {
        kid_of(&signing.sign("at+jwt", &claims()).await.unwrap()) == next.kid
    })
    .await;
    let listed = signing.list().await.unwrap();
    assert_eq!(status_of(&listed, &first), "retired");
    assert_eq!(status_of(&listed, &next.kid), "active");
    let retired = listed.iter().find(|k| k.kid == first).unwrap();
    // Still published: tokens it signed have not expired.
    assert!(retired.expires_at.unwrap() > crate::model::now() + 60);
    let jwks = signing.public_jwks().await.unwrap();
    assert!(jwks.to_string().contains(&first));
}

async fn the_only_active_key_cannot_be_retired_but_a_next_key_takes_over_at_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let signing = signing(&db, 3600).await;
    let first = kid_of(&signing.sign("at+jwt", &claims()).await.unwrap());
    let err = signing.retire(&first).await.unwrap_err();
    assert!(
        matches!(err, SigningError::OnlyActiveKey(ref k) if *k == first),
        "{err:?}"
    );
    let err = signing.retire("no-such-kid").await.unwrap_err();
    assert!(matches!(err, SigningError::UnknownKey(_)), "{err:?}");

    let next = signing.add(Alg::EdDSA).await.unwrap();
    assert_eq!(next.status.as_str(), "next");
    let retired = signing.retire(&first).await.unwrap();
    assert_eq!(retired.status.as_str(), "retired");
    let token = signing.sign("at+jwt", &claims()).await.unwrap();
    assert_eq!(kid_of(&token), next.kid, "the next key took over at once");
    // The retired key stays published while its tokens may be live.
    assert!(signing
        .public_jwks()
        .await
        .unwrap()
        .to_string()
        .contains(&first));
}

async fn a_next_key_retired_before_it_activates_leaves_the_active_key_signing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let signing = signing(&db, 3600).await;
    let first = kid_of(&signing.sign("at+jwt", &claims()).await.unwrap());
    let next = signing.add(Alg::ES256).await.unwrap();
    let gone = signing.retire(&next.kid).await.unwrap();
    assert_eq!(gone.status.as_str(), "retired");
    let listed = signing.list().await.unwrap();
    let active = listed.iter().find(|k| k.kid == first).unwrap();
    assert_eq!(active.status.as_str(), "active");
    assert_eq!(active.retired_at, None, "no retirement scheduled any more");
    // It never signed: unpublished at once, and the purge deletes it.
    assert!(!signing
        .public_jwks()
        .await
        .unwrap()
        .to_string()
        .contains(&next.kid));
    assert_eq!(signing.purge(crate::model::now()).await.unwrap(), 1);
    assert_eq!(signing.list().await.unwrap().len(), 1);
}

async fn a_retired_key_is_deleted_once_its_last_token_expired(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let signing = signing(&db, 3600).await;
    let now = crate::model::now();
    let long = json!({"sub": "a", "exp": now + 100_000});
    let first = kid_of(&signing.sign("at+jwt", &long).await.unwrap());
    signing.add(Alg::ES256).await.unwrap();
    signing.retire(&first).await.unwrap();
    let retired = signing.list().await.unwrap();
    let retired = retired.iter().find(|k| k.kid == first).unwrap();
    // Kong's default lifetime (no plugin), or later: the token signed for 100 000 s.
    let until = retired.expires_at.unwrap();
    assert!(until >= now + 100_000, "{until} < the token's exp");
    assert_eq!(signing.purge(until - 1).await.unwrap(), 0);
    assert_eq!(signing.purge(until).await.unwrap(), 1);
    assert!(!signing
        .public_jwks()
        .await
        .unwrap()
        .to_string()
        .contains(&first));
}

async fn replicas_starting_at_once_make_one_key(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // ES256: key generation takes microseconds, so the replicas' writes really race (RSA's
    // random generation time would spread them out).
    let quick = SigningSettings {
        default_alg: Alg::ES256,
        ..settings(5)
    };
    let replicas: Vec<Signing> = futures_util::future::join_all(
        (0..8).map(|_| async { Signing::new(db.open().await, quick) }),
    )
    .await;
    let tokens = futures_util::future::join_all(
        replicas
            .iter()
            .map(|replica| async move { replica.sign("at+jwt", &claims()).await.unwrap() }),
    )
    .await;
    let kids: std::collections::BTreeSet<String> = tokens.iter().map(|t| kid_of(t)).collect();
    assert_eq!(kids.len(), 1, "replicas signed with {kids:?}");
    assert_eq!(replicas[0].list().await.unwrap().len(), 1);
    let jwks = replicas[3].public_jwks().await.unwrap();
    for token in &tokens {
        verify(token, &jwks);
    }
}

async fn a_replica_publishes_and_uses_a_key_another_replica_added(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let one = signing(&db, 1).await;
    let two = signing(&db, 1).await;
    let first = kid_of(&two.sign("at+jwt", &claims()).await.unwrap());
    let added = one.add(Alg::EdDSA).await.unwrap();
    eventually(
        Duration::from_secs(5),
        "replica two publishes it",
        || async {
            two.public_jwks()
                .await
                .unwrap()
                .to_string()
                .contains(&added.kid)
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "replica two signs with it",
        || async {
            let token = two.sign("at+jwt", &claims()).await.unwrap();
            let kid = kid_of(&token);
            assert!(kid == first || kid == added.kid, "signed by {kid}");
            kid == added.kid
        },
    )
    .await;
}

/// A stored private key is read for the algorithm its row names and nothing else: another
/// type's key, a PKCS#1 PEM or no PEM at all is an error naming the key unreadable, never a
/// panic and never a signature with a guess.
#[test]
fn a_stored_key_that_is_not_its_algorithms_pkcs8_is_unreadable() {
    use super::keys::{self, SigningKey};
    let rsa = keys::generate(Alg::RS256).expect("an RSA key");
    let ed = keys::generate(Alg::EdDSA).expect("an Ed25519 key");
    let pkcs1 = {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        rsa::RsaPrivateKey::from_pkcs8_pem(&rsa.private_pkcs8_pem)
            .expect("PKCS#8")
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .expect("PKCS#1")
            .to_string()
    };
    for (alg, pem) in [
        (Alg::ES256, rsa.private_pkcs8_pem.as_str()),
        (Alg::EdDSA, rsa.private_pkcs8_pem.as_str()),
        (Alg::RS256, ed.private_pkcs8_pem.as_str()),
        (Alg::RS256, pkcs1.as_str()),
        (Alg::RS256, "not a PEM"),
        (Alg::EdDSA, ""),
    ] {
        assert!(
            matches!(
                SigningKey::from_pkcs8_pem(alg, pem),
                Err(KeyError::Unreadable(_))
            ),
            "{alg} from {:.30?}",
            pem
        );
    }
    for material in [&rsa, &ed] {
        let key = SigningKey::from_pkcs8_pem(material.alg, &material.private_pkcs8_pem);
        assert!(
            key.is_ok_and(|key| key.sign(b"input").is_ok()),
            "{}",
            material.alg
        );
    }
}

on_both_backends!(
    the_first_signature_makes_an_rs256_2048_key_that_verifies,
    every_algorithm_signs_what_its_published_jwk_verifies,
    no_answer_carries_a_private_key,
    a_declarative_dump_carries_no_signing_key,
    claims_without_exp_are_refused,
    a_new_key_is_published_before_it_signs_then_replaces_the_active_one,
    the_only_active_key_cannot_be_retired_but_a_next_key_takes_over_at_once,
    a_next_key_retired_before_it_activates_leaves_the_active_key_signing,
    a_retired_key_is_deleted_once_its_last_token_expired,
    replicas_starting_at_once_make_one_key,
    a_replica_publishes_and_uses_a_key_another_replica_added,
);
