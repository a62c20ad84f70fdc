//! The state poll's distrust list (docs/jwt-access-tokens.md §4) on both store backends: a JWT
//! whose record is revoked, deleted, refreshed away or whose identity changed is listed (with
//! its `exp`) since the filter's position, and completely on a reset, until it expires.

use crate::app::{gateway_router, AppState};
use crate::model::{
    new_id, now, ClientType, Consumer, Credential, OAuth2Config, Plugin, Service, Token,
};
use crate::secrets::token_digest;
use crate::store::testing::{on_both_backends, Backend, TestDb};
use crate::store::{NewToken, Store};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tower::ServiceExt;

struct Fixture {
    _db: TestDb,
    store: Store,
    router: axum::Router,
    consumer: Consumer,
    credential: Credential,
    service_id: String,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let db = TestDb::new(backend).await?;
    let store = db.open().await;
    let consumer = Consumer {
        id: new_id(),
        created_at: 0,
        username: Some("bob".into()),
        custom_id: None,
        tags: None,
    };
    let credential = Credential {
        id: new_id(),
        created_at: 0,
        consumer_id: consumer.id.clone(),
        name: "app".into(),
        client_id: "app".into(),
        client_secret: "secret".into(),
        hash_secret: false,
        redirect_uris: Some(vec!["https://client.test/cb".into()]),
        client_type: ClientType::Confidential,
        tags: None,
    };
    let (c, k) = (consumer.clone(), credential.clone());
    let service_id = new_id();
    let s_id = service_id.clone();
    store
        .write(move |repo| {
            repo.insert_consumer(&c)?;
            repo.insert_credential(&k)?;
            let service = Service {
                id: s_id,
                created_at: 0,
                updated_at: 0,
                name: Some("a".into()),
                url: None,
                tags: None,
            };
            repo.insert_service(&service)?;
            repo.insert_plugin(&Plugin {
                id: new_id(),
                created_at: 0,
                updated_at: 0,
                name: "oauth2".into(),
                service_id: Some(service.id),
                enabled: true,
                config: OAuth2Config {
                    enable_password_grant: true,
                    provision_key: "pk".into(),
                    ..OAuth2Config::default()
                },
            })
        })
        .await
        .expect("fixture");
    let router = gateway_router(AppState::new(store.clone(), None));
    Some(Fixture {
        _db: db,
        store,
        router,
        consumer,
        credential,
        service_id,
    })
}

impl Fixture {
    /// A token row for `text`: a JWT expiring at `jwt_exp`, or opaque.
    async fn token(&self, text: &str, jwt_exp: Option<i64>) -> Token {
        let new = NewToken {
            id: new_id(),
            credential_id: self.credential.id.clone(),
            service_id: Some(self.service_id.clone()),
            access_token_hash: token_digest(text),
            refresh_token_hash: None,
            authenticated_userid: Some("clark".into()),
            scope: None,
            expires_in: 300,
            ttl_at: None,
            family_id: new_id(),
            created_at: now(),
            jwt_exp,
        };
        self.store
            .write(move |repo| repo.insert_token(&new))
            .await
            .expect("insert a token")
    }

    async fn state(&self, since: Option<i64>) -> Value {
        let query = since.map_or_else(String::new, |s| format!("?since={s}"));
        let request = Request::get(format!("/gateway/v1/services/a/state{query}"))
            .body(Body::empty())
            .expect("request");
        let response = self.router.clone().oneshot(request).await.expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("JSON")
    }

    async fn position(&self) -> i64 {
        self.state(None).await["seq"].as_i64().expect("seq")
    }

    /// The first answer since `since` that `ready` accepts, polling as a filter does: on
    /// PostgreSQL a change enters the feed once every transaction begun before it ended
    /// (other tests' too), so it may take a few polls.
    async fn state_until(&self, since: i64, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let answer = self.state(Some(since)).await;
            if ready(&answer) {
                return answer;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no such answer within 10 s; the last: {answer}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// `distrusted` as digest → exp.
fn distrusted(answer: &Value) -> BTreeMap<String, i64> {
    answer["distrusted"]
        .as_array()
        .unwrap_or_else(|| panic!("no distrusted list: {answer}"))
        .iter()
        .map(|e| {
            let digest = e["digest"].as_str().expect("digest").to_string();
            (digest, e["exp"].as_i64().expect("exp"))
        })
        .collect()
}

fn revoked(answer: &Value) -> Vec<String> {
    answer["revoked"]
        .as_array()
        .expect("revoked")
        .iter()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect()
}

async fn a_deleted_or_changed_jwt_is_distrusted_opaque_tokens_are_not(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let exp = now() + 300;
    let deleted = f.token("jwt-deleted", Some(exp)).await;
    let patched = f.token("jwt-patched", Some(exp + 1)).await;
    let opaque = f.token("opaque", None).await;
    let untouched = f.token("jwt-untouched", Some(exp)).await;
    let start = f.position().await;
    let first = f.state(Some(start)).await;
    assert_eq!(distrusted(&first), BTreeMap::new(), "{first}");
    assert_eq!(first["distrust_all"], json!(false));
    // The plugin's JWT settings reach the filter with the rest of its settings.
    for (setting, default) in [
        ("access_token_format", json!("opaque")),
        ("identity_jwt_header", Value::Null),
        ("identity_headers", json!(true)),
    ] {
        assert_eq!(
            first["plugin"].get(setting),
            Some(&default),
            "{setting}: {first}"
        );
    }

    let (d, mut p, mut o) = (deleted.id.clone(), patched.clone(), opaque.clone());
    p.scope = Some("other".into());
    o.scope = Some("other".into());
    f.store
        .write(move |repo| {
            repo.delete_token(&d)?;
            repo.update_token(&p)?;
            repo.update_token(&o)
        })
        .await
        .expect("changes");
    let answer = f
        .state_until(start, |a| revoked(a).contains(&opaque.access_token_hash))
        .await;
    assert_eq!(answer["reset"], json!(false), "{answer}");
    let expected = BTreeMap::from([
        (deleted.access_token_hash.clone(), exp),
        (patched.access_token_hash.clone(), exp + 1),
    ]);
    assert_eq!(distrusted(&answer), expected, "{answer}");
    let revoked = revoked(&answer);
    assert!(revoked.contains(&opaque.access_token_hash), "still revoked");
    assert!(revoked.contains(&deleted.access_token_hash));
    assert!(!revoked.contains(&untouched.access_token_hash));

    // A filter that starts over gets the complete list; one up to date gets nothing new.
    let reset = f.state(None).await;
    assert_eq!(reset["reset"], json!(true));
    assert_eq!(distrusted(&reset), expected, "{reset}");
    let seq = answer["seq"].as_i64().expect("seq");
    assert_eq!(distrusted(&f.state(Some(seq)).await), BTreeMap::new());
}

async fn a_credential_or_consumer_change_distrusts_its_jwts(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let exp = now() + 300;
    let jwt = f.token("jwt", Some(exp)).await;
    let start = f.position().await;
    let mut consumer = f.consumer.clone();
    consumer.username = Some("robert".into());
    f.store
        .write(move |repo| repo.update_consumer(&consumer))
        .await
        .expect("rename the consumer");
    let answer = f.state_until(start, |a| !revoked(a).is_empty()).await;
    assert_eq!(
        distrusted(&answer),
        BTreeMap::from([(jwt.access_token_hash.clone(), exp)]),
        "{answer}"
    );

    let jwt2 = f.token("jwt2", Some(exp + 5)).await;
    let start = f.position().await;
    let mut credential = f.credential.clone();
    credential.name = "renamed".into();
    f.store
        .write(move |repo| repo.update_credential(&credential))
        .await
        .expect("rename the credential");
    let answer = f.state_until(start, |a| !revoked(a).is_empty()).await;
    assert_eq!(
        distrusted(&answer).get(&jwt2.access_token_hash),
        Some(&(exp + 5)),
        "{answer}"
    );

    // Deleting the credential deletes its tokens (a cascade): distrusted as well.
    let jwt3 = f.token("jwt3", Some(exp + 9)).await;
    let start = f.position().await;
    let id = f.credential.id.clone();
    f.store
        .write(move |repo| repo.delete_credential(&id))
        .await
        .expect("delete the credential");
    let answer = f.state_until(start, |a| !revoked(a).is_empty()).await;
    assert_eq!(
        distrusted(&answer).get(&jwt3.access_token_hash),
        Some(&(exp + 9)),
        "{answer}"
    );
}

async fn expired_jwts_are_neither_distrusted_nor_kept(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let long_gone = f.token("long-gone", Some(now() - 3600)).await;
    let just_expired = f.token("just-expired", Some(now() - 10)).await;
    let (a, b) = (long_gone.id.clone(), just_expired.id.clone());
    f.store
        .write(move |repo| {
            repo.delete_token(&a)?;
            repo.delete_token(&b)
        })
        .await
        .expect("delete");
    // Within the clock margin, a JWT just past its exp is still listed (a filter's clock may
    // lag); one long expired is not.
    let listed = distrusted(&f.state(None).await);
    assert_eq!(
        listed,
        BTreeMap::from([(
            just_expired.access_token_hash.clone(),
            now_exp(&just_expired)
        )])
    );
    f.store
        .write(|repo| repo.distrust_jwt("old-entry", now() - 3600))
        .await
        .expect("an old entry");
    let purged = f
        .store
        .write(|repo| repo.purge_expired_batch(now(), 3600, 1000))
        .await
        .expect("purge");
    assert_eq!(purged.distrusted_jwts, 1, "{purged:?}");
    assert_eq!(distrusted(&f.state(None).await).len(), 1);
}

fn now_exp(t: &Token) -> i64 {
    t.jwt_exp.expect("a JWT row")
}

async fn more_distrusted_jwts_than_an_answer_carries_distrust_all(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let exp = now() + 300;
    let start = f.position().await;
    f.store
        .write(move |repo| {
            for i in 0..10_000 {
                repo.distrust_jwt(&format!("d{i}"), exp)?;
            }
            Ok(())
        })
        .await
        .expect("fill");
    let full = f.state(None).await;
    assert_eq!(full["distrust_all"], json!(false));
    assert_eq!(distrusted(&full).len(), 10_000);
    f.store
        .write(move |repo| repo.distrust_jwt("one-more", exp))
        .await
        .expect("one more");
    let reset = f.state(None).await;
    assert_eq!(reset["distrust_all"], json!(true), "a reset answer");
    assert_eq!(
        distrusted(&reset).len(),
        0,
        "the filter asks about every JWT"
    );
    let incremental = f.state(Some(start)).await;
    assert_eq!(incremental["reset"], json!(false));
    assert_eq!(
        incremental["distrust_all"],
        json!(true),
        "every answer says so"
    );
}

impl Fixture {
    /// A request's answer status and JSON body.
    async fn send(&self, router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
        let response = router.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn check(&self, token: &str) -> Value {
        let request = Request::get("/gateway/v1/services/a/token")
            .header("x-access-token", token)
            .body(Body::empty())
            .expect("request");
        self.send(&self.router, request).await.1
    }

    /// Introspection or revocation by the fixture's confidential client, on the gateway
    /// listener directly (as a resource server calls it).
    async fn oauth(&self, endpoint: &str, token: &str) -> (StatusCode, Value) {
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("token", token),
                ("client_id", "app"),
                ("client_secret", "secret"),
            ])
            .finish();
        let request = Request::post(format!("/gateway/v1/services/a/oauth2/{endpoint}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .expect("request");
        self.send(&self.router, request).await
    }

    async fn exists(&self, id: &str) -> bool {
        let id = id.to_string();
        self.store
            .read(move |repo| repo.token(&id, ""))
            .await
            .expect("read")
            .is_some()
    }
}

/// A JWT is about 1 KB, twice the longest opaque token: every place a client presents a
/// token takes up to 8 192 bytes, and looks up nothing longer.
async fn tokens_up_to_8192_bytes_are_looked_up_longer_ones_are_not(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let jwt_sized = format!("eyJ{}", "a".repeat(1200));
    let longest = "c".repeat(8192);
    let too_long = "b".repeat(8193);
    let jwt_row = f.token(&jwt_sized, Some(now() + 300)).await;
    f.token(&longest, None).await;
    let too_long_row = f.token(&too_long, None).await;

    assert_eq!(f.check(&jwt_sized).await["active"], json!(true));
    assert_eq!(f.check(&longest).await["active"], json!(true));
    let answer = f.check(&too_long).await;
    assert_eq!(answer, json!({"active": false, "reason": "invalid"}));

    let (status, body) = f.oauth("introspect", &jwt_sized).await;
    assert_eq!(
        (status, &body["active"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let (status, body) = f.oauth("introspect", &too_long).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"active": false})));

    let admin = crate::app::admin_router(AppState::new(f.store.clone(), None));
    let by_text = |token: &str| {
        Request::get(format!("/oauth2_tokens/{token}"))
            .body(Body::empty())
            .expect("request")
    };
    let (status, body) = f.send(&admin, by_text(&jwt_sized)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], json!(jwt_row.id));
    let (status, _) = f.send(&admin, by_text(&too_long)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = f.oauth("revoke", &too_long).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        f.exists(&too_long_row.id).await,
        "nothing looked up, nothing revoked"
    );
    let (status, _) = f.oauth("revoke", &jwt_sized).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!f.exists(&jwt_row.id).await, "revoked by the JWT's text");
    assert_eq!(f.check(&jwt_sized).await["active"], json!(false));
}

on_both_backends!(
    a_deleted_or_changed_jwt_is_distrusted_opaque_tokens_are_not,
    a_credential_or_consumer_change_distrusts_its_jwts,
    expired_jwts_are_neither_distrusted_nor_kept,
    more_distrusted_jwts_than_an_answer_carries_distrust_all,
    tokens_up_to_8192_bytes_are_looked_up_longer_ones_are_not,
);
