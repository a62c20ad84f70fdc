//! Syncs against a real store, on SQLite and PostgreSQL: idempotence, ids kept, deletions
//! revoking tokens, select_tags, bad files changing nothing, and `POST /config`.

use super::document::{parse, Desired, Format};
use super::{diff, dump, sync, Action, DeclarativeError};
use crate::model::now;
use crate::secrets::token_digest;
use crate::store::testing::{on_both_backends, Backend, TestDb};
use crate::store::{NewToken, Store};

const EXAMPLE: &str = include_str!("../../../examples/step-on.kong.yml");

/// The environment the example's vault references read.
fn env(name: &str) -> Option<String> {
    match name {
        "STEP_ON_PROVISION_KEY" => Some("provision-key-from-env".into()),
        "SHOE_FLY_SHOE_SECRET" => Some("secret-from-env".into()),
        _ => None,
    }
}

fn desired(yaml: &str) -> Desired {
    parse(yaml.as_bytes(), Format::Yaml, &env).unwrap_or_else(|e| panic!("{e}"))
}

async fn store(backend: Backend) -> Option<(TestDb, Store)> {
    let db = TestDb::new(backend).await?;
    let store = db.open().await;
    Some((db, store))
}

/// A token issued to the credential `client_id`; answers its access token's digest.
async fn issue_token(store: &Store, client_id: &str) -> String {
    let client_id = client_id.to_string();
    let digest = token_digest(&format!("token-of-{client_id}"));
    let stored = digest.clone();
    store
        .write(move |repo| {
            let credential = repo.credential(&client_id)?.expect("the credential exists");
            repo.insert_token(&NewToken {
                id: crate::model::new_id(),
                jwt_exp: None,
                credential_id: credential.id,
                service_id: None,
                access_token_hash: stored,
                refresh_token_hash: None,
                authenticated_userid: Some("clark".into()),
                scope: None,
                expires_in: 3600,
                ttl_at: None,
                family_id: crate::model::new_id(),
                created_at: now(),
            })
        })
        .await
        .expect("insert a token");
    digest
}

async fn token_valid(store: &Store, digest: &str) -> bool {
    store
        .checked_token(digest)
        .await
        .expect("check the token")
        .is_some()
}

async fn ids(store: &Store) -> Vec<String> {
    let current = store.read(super::sync::current).await.expect("read");
    let mut ids: Vec<String> = current.services.iter().map(|s| s.id.clone()).collect();
    ids.extend(current.plugins.iter().map(|p| p.id.clone()));
    ids.extend(current.consumers.iter().map(|c| c.id.clone()));
    ids.extend(current.credentials.iter().map(|c| c.id.clone()));
    ids.sort();
    ids
}

async fn applying_a_file_twice_changes_nothing_the_second_time(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    let first = sync(&store, desired(EXAMPLE)).await.expect("sync");
    assert_eq!(first.count(Action::Create), 4, "{:?}", first.lines());
    let before = ids(&store).await;
    let second = sync(&store, desired(EXAMPLE)).await.expect("sync again");
    assert!(second.is_empty(), "{:?}", second.lines());
    assert_eq!(ids(&store).await, before);
    // The secrets came from the environment.
    let credential = store
        .read(|repo| repo.credential("shoe-fly-shoe"))
        .await
        .expect("read")
        .expect("created");
    assert_eq!(credential.client_secret, "secret-from-env");
}

async fn a_change_updates_in_place_and_tokens_stay_valid(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    sync(&store, desired(EXAMPLE)).await.expect("sync");
    let token = issue_token(&store, "shoe-fly-shoe").await;
    let before = ids(&store).await;
    let changed = EXAMPLE.replace("5000/callback", "5000/cb");
    let diff = sync(&store, desired(&changed))
        .await
        .expect("sync the change");
    assert_eq!(diff.changes.len(), 1, "{:?}", diff.lines());
    assert_eq!(diff.changes[0].action, Action::Update);
    assert_eq!(diff.changes[0].fields, vec!["redirect_uris".to_string()]);
    assert_eq!(ids(&store).await, before, "ids are kept");
    assert!(
        token_valid(&store, &token).await,
        "the token survives an update"
    );
}

async fn dump_then_sync_then_diff_is_empty(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    sync(&store, desired(EXAMPLE)).await.expect("sync");
    let before = ids(&store).await;
    let dumped = dump(&store).await.expect("dump");
    let yaml = serde_saphyr::to_string(&dumped).expect("as YAML");
    assert!(
        !yaml.contains("secret-from-env"),
        "secrets are redacted: {yaml}"
    );
    assert!(!yaml.contains("provision-key-from-env"), "{yaml}");
    let synced = sync(&store, desired(&yaml)).await.expect("sync the dump");
    assert!(synced.is_empty(), "{:?}", synced.lines());
    assert!(diff(&store, desired(&yaml)).await.expect("diff").is_empty());
    assert_eq!(ids(&store).await, before);
    // The redacted secrets were kept, not emptied or regenerated.
    let credential = store
        .read(|repo| repo.credential("shoe-fly-shoe"))
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(credential.client_secret, "secret-from-env");
}

async fn a_sync_without_a_consumer_revokes_its_tokens(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    sync(&store, desired(EXAMPLE)).await.expect("sync");
    let token = issue_token(&store, "shoe-fly-shoe").await;
    assert!(token_valid(&store, &token).await);
    let without = EXAMPLE
        .split("consumers:")
        .next()
        .expect("the services part")
        .to_string();
    let diff = sync(&store, desired(&without)).await.expect("sync");
    let deleted: Vec<&str> = diff
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.entity_type)
        .collect();
    assert_eq!(
        deleted,
        ["oauth2_credential", "consumer"],
        "{:?}",
        diff.lines()
    );
    assert!(!token_valid(&store, &token).await, "the token is revoked");
}

async fn select_tags_leave_untagged_entities_alone(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    let mine = desired(
        "_format_version: '3.0'\nservices: [{name: hand-made}]\nconsumers: [{username: walk-in, oauth2_credentials: [{name: w, client_id: walk-in}]}]\n",
    );
    sync(&store, mine).await.expect("untagged entities");
    sync(&store, desired(EXAMPLE))
        .await
        .expect("the tagged file");
    // Without the consumer the tagged one goes; the untagged ones stay.
    let without = EXAMPLE
        .split("consumers:")
        .next()
        .expect("services")
        .to_string();
    let diff = sync(&store, desired(&without)).await.expect("sync");
    assert_eq!(diff.count(Action::Delete), 2, "{:?}", diff.lines());
    let left = store.read(super::sync::current).await.expect("read");
    let names: Vec<_> = left.consumers.iter().map(|c| c.username.clone()).collect();
    assert_eq!(names, [Some("walk-in".to_string())]);
    assert_eq!(left.credentials.len(), 1);
    assert_eq!(left.services.len(), 2);
    // A file naming an untagged entity does not take it over.
    let grab = EXAMPLE.replace("username: shoe-fly-shoe", "username: walk-in");
    match sync(&store, desired(&grab)).await {
        Err(DeclarativeError::Invalid(problems)) => {
            assert_eq!(problems[0].path(), "consumers[0].username", "{problems:?}")
        }
        other => panic!("taken over: {other:?}"),
    }
}

async fn a_file_failing_at_apply_changes_nothing(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    // An untagged consumer holds the custom_id the file's (new) consumer wants.
    let theirs =
        desired("_format_version: '3.0'\nconsumers: [{username: other, custom_id: c-1}]\n");
    sync(&store, theirs).await.expect("setup");
    let before = ids(&store).await;
    let clash = EXAMPLE.replace(
        "  - username: shoe-fly-shoe\n",
        "  - username: shoe-fly-shoe\n    custom_id: c-1\n",
    );
    match sync(&store, desired(&clash)).await {
        Err(DeclarativeError::Invalid(problems)) => {
            assert_eq!(problems[0].path(), "consumers[0].custom_id", "{problems:?}")
        }
        other => panic!("applied: {other:?}"),
    }
    assert_eq!(
        ids(&store).await,
        before,
        "the services and plugin were rolled back"
    );
}

async fn hashed_secrets_are_compared_not_rehashed(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    let hashed = EXAMPLE.replace(
        "        client_secret:",
        "        hash_secret: true\n        client_secret:",
    );
    sync(&store, desired(&hashed)).await.expect("sync");
    let stored = |store: Store| async move {
        store
            .read(|repo| repo.credential("shoe-fly-shoe"))
            .await
            .expect("read")
            .expect("exists")
            .client_secret
    };
    let first = stored(store.clone()).await;
    assert!(first.starts_with("$pbkdf2-sha512$"), "{first}");
    assert!(sync(&store, desired(&hashed))
        .await
        .expect("again")
        .is_empty());
    assert_eq!(stored(store.clone()).await, first, "not re-hashed");
    let other_env = |name: &str| {
        (name != "SHOE_FLY_SHOE_SECRET")
            .then(|| "x".to_string())
            .or(Some("new".into()))
    };
    let changed = parse(hashed.as_bytes(), Format::Yaml, &other_env).expect("parse");
    let diff = sync(&store, changed).await.expect("a new secret");
    let fields: Vec<String> = diff.changes.iter().flat_map(|c| c.fields.clone()).collect();
    assert!(fields.contains(&"client_secret".to_string()), "{fields:?}");
    assert!(crate::secrets::verify_client_secret(
        "new",
        &stored(store.clone()).await,
        true
    ));
}

async fn concurrent_admin_writes_are_neither_lost_nor_half_applied(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    let mut writers = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let consumer = crate::model::Consumer {
                id: crate::model::new_id(),
                created_at: now(),
                username: Some(format!("concurrent-{i}")),
                custom_id: None,
                tags: None,
            };
            store
                .write(move |repo| repo.insert_consumer(&consumer))
                .await
        }));
    }
    let syncs: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { sync(&store, desired(EXAMPLE)).await })
        })
        .collect();
    for w in writers {
        w.await.expect("join").expect("the admin write landed");
    }
    let mut created = 0;
    for s in syncs {
        created += s.await.expect("join").expect("sync").count(Action::Create);
    }
    assert_eq!(
        created, 4,
        "one sync created the file's entities, the others nothing"
    );
    let current = store.read(super::sync::current).await.expect("read");
    assert_eq!(current.consumers.len(), 21, "every admin write is there");
    assert_eq!(current.credentials.len(), 1);
    assert_eq!(current.plugins.len(), 1);
}

async fn a_username_that_is_another_consumers_id_is_refused(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    sync(&store, desired(EXAMPLE)).await.expect("sync");
    let id = store
        .read(|repo| repo.consumer("shoe-fly-shoe"))
        .await
        .expect("read")
        .expect("exists")
        .id;
    let before = ids(&store).await;
    let ambiguous = EXAMPLE.replace("consumers:\n", &format!("consumers:\n  - username: {id}\n"));
    match sync(&store, desired(&ambiguous)).await {
        Err(DeclarativeError::Invalid(problems)) => {
            assert_eq!(problems[0].path(), "consumers[0].username", "{problems:?}")
        }
        other => panic!("accepted: {other:?}"),
    }
    assert_eq!(ids(&store).await, before);
}

/// Replicas started at once with the same `--declarative-config` (the compose cluster, `make
/// test`'s PostgreSQL pass): each sync plans against what the other committed, so both
/// succeed and the entities exist once. On PostgreSQL the second replica's sync failed with
/// "another service has this name already".
async fn replicas_syncing_one_file_at_once_both_succeed(backend: Backend) {
    let Some((db, first)) = store(backend).await else {
        return;
    };
    let second = db.open().await;
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            sync(&first, desired(EXAMPLE)),
            sync(&second, desired(EXAMPLE))
        );
        assert!(a.is_ok() && b.is_ok(), "{:?} {:?}", a.err(), b.err());
    }
    let current = first.read(super::sync::current).await.expect("read");
    assert_eq!(current.services.len(), 1);
    assert_eq!(current.consumers.len(), 1);
    assert_eq!(current.credentials.len(), 1);
}

on_both_backends!(
    replicas_syncing_one_file_at_once_both_succeed,
    a_username_that_is_another_consumers_id_is_refused,
    applying_a_file_twice_changes_nothing_the_second_time,
    a_change_updates_in_place_and_tokens_stay_valid,
    dump_then_sync_then_diff_is_empty,
    a_sync_without_a_consumer_revokes_its_tokens,
    select_tags_leave_untagged_entities_alone,
    a_file_failing_at_apply_changes_nothing,
    hashed_secrets_are_compared_not_rehashed,
    concurrent_admin_writes_are_neither_lost_nor_half_applied,
);

/// Problems of a file, by path.
fn problems(yaml: &str) -> Vec<(String, String)> {
    match parse(yaml.as_bytes(), Format::Yaml, &env) {
        Ok(_) => Vec::new(),
        Err(DeclarativeError::Invalid(problems)) => problems
            .iter()
            .map(|p| (p.path(), p.message.clone()))
            .collect(),
        Err(other) => panic!("{other}"),
    }
}

fn paths(yaml: &str) -> Vec<String> {
    problems(yaml).into_iter().map(|(p, _)| p).collect()
}

#[test]
fn bad_files_name_the_entity_and_the_field() {
    assert_eq!(paths("services: []"), ["_format_version"]);
    assert_eq!(paths("_format_version: '3.0'\nroutes: []"), ["routes"]);
    let unknown = "_format_version: '3.0'\nconsumers: [{username: a, oauth2_credentials: [{name: n, client_id: c, colour: red}]}]";
    assert_eq!(
        paths(unknown),
        ["consumers[0].oauth2_credentials[0].colour"]
    );
    let twice = "_format_version: '3.0'\nconsumers:\n- {username: a, oauth2_credentials: [{name: n, client_id: c}]}\n- {username: b, oauth2_credentials: [{name: n, client_id: c}]}";
    let found = problems(twice);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "consumers[1].oauth2_credentials[0].client_id");
    assert!(
        found[0].1.contains("consumers[0].oauth2_credentials[0]"),
        "{found:?}"
    );
    let orphan = "_format_version: '3.0'\nplugins: [{name: oauth2, service: nowhere, config: {enable_client_credentials: true}}]";
    assert_eq!(paths(orphan), ["plugins[0].service"]);
    let no_grant = "_format_version: '3.0'\nservices: [{name: s, plugins: [{name: oauth2, config: {scopes: [a]}}]}]";
    assert_eq!(paths(no_grant), ["services[0].plugins[0].config"]);
    let bad_type = "_format_version: '3.0'\nservices: [{name: s, plugins: [{name: oauth2, config: {enable_client_credentials: true, token_expiration: soon}}]}]";
    assert_eq!(
        paths(bad_type),
        ["services[0].plugins[0].config.token_expiration"]
    );
    let no_client_id =
        "_format_version: '3.0'\nconsumers: [{username: a, oauth2_credentials: [{name: n}]}]";
    assert_eq!(
        paths(no_client_id),
        ["consumers[0].oauth2_credentials[0].client_id"]
    );
    let bad_uri = "_format_version: '3.0'\nconsumers: [{username: a, oauth2_credentials: [{name: n, client_id: c, redirect_uris: [ok, 'https://x/#f']}]}]";
    assert_eq!(
        paths(bad_uri),
        [
            "consumers[0].oauth2_credentials[0].redirect_uris[0]",
            "consumers[0].oauth2_credentials[0].redirect_uris[1]"
        ]
    );
    assert_eq!(
        paths("_format_version: '3.0'\nconsumers: [{tags: [x]}]"),
        ["consumers[0]"]
    );
    assert_eq!(paths(": : not yaml ["), [""]);
}

#[test]
fn vault_references_need_their_variable() {
    let missing = EXAMPLE.replace("shoe-fly-shoe-secret", "nobody-set-this");
    let found = problems(&missing);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].0,
        "consumers[0].oauth2_credentials[0].client_secret"
    );
    assert!(
        found[0].1.contains("NOBODY_SET_THIS is not set"),
        "{found:?}"
    );
    let empty = |_: &str| Some(String::new());
    match parse(EXAMPLE.as_bytes(), Format::Yaml, &empty) {
        Err(DeclarativeError::Invalid(p)) => assert_eq!(p.len(), 2, "{p:?}"),
        other => panic!("an empty secret was accepted: {other:?}"),
    }
    let other_vault = EXAMPLE.replace("vault://env/shoe", "vault://aws/shoe");
    assert!(problems(&other_vault)[0].1.contains("only the env vault"));
}

#[test]
fn yaml_1_1_booleans_stay_text() {
    let norway = "_format_version: '3.0'\nconsumers: [{username: no, oauth2_credentials: [{name: n, client_id: off}]}]";
    let desired = parse(norway.as_bytes(), Format::Yaml, &env).expect("strings");
    assert_eq!(
        desired.consumers[0].consumer.username.as_deref(),
        Some("no")
    );
    assert_eq!(desired.credentials[0].credential.client_id, "off");
}

#[test]
fn json_files_are_read_too() {
    let json = r#"{"_format_version": "3.0", "consumers": [{"username": "a", "tags": ["t"]}]}"#;
    let desired = parse(json.as_bytes(), Format::Json, &env).expect("JSON");
    assert_eq!(desired.consumers.len(), 1);
    // The YAML reader reads JSON as well (a multipart field may carry either).
    assert!(parse(json.as_bytes(), Format::Yaml, &env).is_ok());
}

#[test]
fn jwt_settings_are_read_and_bad_ones_refused_by_field() {
    let file = |config: &str| {
        format!("_format_version: '3.0'\nservices: [{{name: s, plugins: [{{name: oauth2, config: {{enable_password_grant: true, {config}}}}}]}}]")
    };
    let good =
        file("access_token_format: jwt, identity_jwt_header: X-Identity, identity_headers: false");
    let config = &desired(&good).plugins[0].config;
    assert_eq!(
        config.access_token_format,
        crate::model::AccessTokenFormat::Jwt
    );
    assert_eq!(config.identity_jwt_header.as_deref(), Some("x-identity"));
    assert!(!config.identity_headers);
    for (config, field) in [
        ("access_token_format: paseto", "access_token_format"),
        (
            "access_token_format: jwt, token_expiration: 0",
            "access_token_format",
        ),
        ("identity_headers: false", "identity_headers"),
        ("identity_jwt_header: 'x y'", "identity_jwt_header"),
    ] {
        assert_eq!(
            paths(&file(config)),
            [format!("services[0].plugins[0].config.{field}")],
            "{config}"
        );
    }
}
