//! The admin API's OpenAPI 3.1 description, generated with `utoipa` from the declarations
//! below and the body shapes in `schema.rs`. Served at `GET /openapi.json` and checked in as
//! `docs/openapi.json` (a test fails when the two differ; `UPDATE_OPENAPI=1` rewrites it).
//!
//! The operations are declared here rather than on the handlers because most handlers are
//! generic over the entity (`named.rs`). A test drives the router with every method on every
//! declared path: a declared operation the router lacks, or a method it serves there without
//! a declaration, fails it.

use super::input::{Kind, Shape};
use super::schema::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use utoipa::openapi::link::{Link, LinkBuilder};
use utoipa::openapi::path::{Operation, Paths};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AdditionalProperties, AllOfBuilder, AnyOfBuilder, Array, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Type};
use utoipa::{Modify, OpenApi};

/// Path parameters, with what they may name.
const CONSUMER: &str = "The consumer's id or username";
const CREDENTIAL: &str = "The credential's id or client_id";
const SERVICE: &str = "The service's id or name";
const TOKEN: &str = "The token's id or the access token itself";

/// The CRUD operations an entity has: list and create on the collection; show, update (PATCH),
/// create-or-replace (PUT) and delete on one entity. `$owner` are the collection path's
/// parameters, `$key` the entity's own; `$delete_404` is the DELETE's 404 where it has one
/// (consumers, services and tokens are deleted idempotently: 204 either way, as in Kong).
macro_rules! crud {
    (
        mod $module:ident { tag: $tag:tt, name: $name:tt,
        collection: $collection:tt, item: $item:tt,
        owner: [$($owner:tt),*], key: $key:tt,
        entity: $entity:ty, page: $page:ty, input: $input:ty,
        delete_404: [$($delete_404:tt)*] }
    ) => {
        // Declarations only: the functions exist to carry the attributes.
        #[allow(dead_code)]
        mod $module {
            use super::*;

            #[utoipa::path(get, path = $collection, tag = $tag,
                operation_id = concat!("list_", $name),
                summary = concat!("One page of ", $name, "s"),
                params($($owner,)* ListParams),
                responses(
                    (status = 200, description = "One page", body = $page),
                    (status = 400, description = "Invalid size or offset", body = Error),
                    (status = 404, description = "Not found", body = Error),
                ))]
            pub fn list() {}

            #[utoipa::path(post, path = $collection, tag = $tag,
                operation_id = concat!("create_", $name),
                summary = concat!("Create a ", $name),
                params($($owner),*),
                request_body = $input,
                responses(
                    (status = 201, description = "Created", body = $entity),
                    (status = 400, description = "Invalid body", body = Error),
                    (status = 404, description = "Not found", body = Error),
                    (status = 409, description = "Unique constraint violation", body = Error),
                ))]
            pub fn create() {}

            #[utoipa::path(get, path = $item, tag = $tag,
                operation_id = concat!("get_", $name),
                summary = concat!("One ", $name),
                params($($owner,)* $key),
                responses(
                    (status = 200, description = "Found", body = $entity),
                    (status = 404, description = "Not found", body = Error),
                ))]
            pub fn show() {}

            #[utoipa::path(patch, path = $item, tag = $tag,
                operation_id = concat!("update_", $name),
                summary = concat!("Change fields of a ", $name),
                params($($owner,)* $key),
                request_body = $input,
                responses(
                    (status = 200, description = "Updated", body = $entity),
                    (status = 400, description = "Invalid body", body = Error),
                    (status = 404, description = "Not found", body = Error),
                    (status = 409, description = "Unique constraint violation", body = Error),
                ))]
            pub fn update() {}

            #[utoipa::path(put, path = $item, tag = $tag,
                operation_id = concat!("upsert_", $name),
                summary = concat!("Create or replace a ", $name),
                description = "A key that names no entity creates one: a UUID becomes its id, \
                    anything else its natural key.",
                params($($owner,)* $key),
                request_body = $input,
                responses(
                    (status = 200, description = "Created or replaced", body = $entity),
                    (status = 400, description = "Invalid body", body = Error),
                    (status = 404, description = "Not found", body = Error),
                    (status = 409, description = "Unique constraint violation", body = Error),
                ))]
            pub fn upsert() {}

            #[utoipa::path(delete, path = $item, tag = $tag,
                operation_id = concat!("delete_", $name),
                summary = concat!("Delete a ", $name),
                params($($owner,)* $key),
                responses(
                    (status = 204, description = "Deleted"),
                    $($delete_404)*
                ))]
            pub fn delete() {}
        }
    };
}

crud! { mod consumers {
tag: "consumers", name: "consumer",
collection: "/consumers", item: "/consumers/{consumer}",
owner: [], key: ("consumer" = String, Path, description = CONSUMER),
entity: Consumer, page: ConsumerPage, input: ConsumerInput,
delete_404: [] } }

crud! { mod consumer_credentials {
tag: "oauth2 credentials", name: "consumer_credential",
collection: "/consumers/{consumer}/oauth2", item: "/consumers/{consumer}/oauth2/{credential}",
owner: [("consumer" = String, Path, description = CONSUMER)],
key: ("credential" = String, Path, description = CREDENTIAL),
entity: Credential, page: CredentialPage, input: CredentialInput,
delete_404: [(status = 404, description = "Not found", body = Error)] } }

crud! { mod credentials {
tag: "oauth2 credentials", name: "credential",
collection: "/oauth2", item: "/oauth2/{credential}",
owner: [], key: ("credential" = String, Path, description = CREDENTIAL),
entity: Credential, page: CredentialPage, input: OAuth2CredentialInput,
delete_404: [(status = 404, description = "Not found", body = Error)] } }

crud! { mod tokens {
tag: "oauth2 tokens", name: "token",
collection: "/oauth2_tokens", item: "/oauth2_tokens/{token}",
owner: [], key: ("token" = String, Path, description = TOKEN),
entity: Token, page: TokenPage, input: TokenInput,
delete_404: [] } }

crud! { mod services {
tag: "services", name: "service",
collection: "/services", item: "/services/{service}",
owner: [], key: ("service" = String, Path, description = SERVICE),
entity: Service, page: ServicePage, input: ServiceInput,
delete_404: [] } }

/// Plugins: created under a service, listed there or globally, changed by id.
#[allow(dead_code)]
mod plugins {
    use super::*;

    #[utoipa::path(get, path = "/services/{service}/plugins", tag = "plugins",
        operation_id = "list_service_plugins", summary = "One page of a service's plugins",
        params(("service" = String, Path, description = SERVICE), ListParams),
        responses(
            (status = 200, description = "One page", body = PluginPage),
            (status = 400, description = "Invalid size or offset", body = Error),
            (status = 404, description = "Not found", body = Error),
        ))]
    pub fn list_for_service() {}

    #[utoipa::path(post, path = "/services/{service}/plugins", tag = "plugins",
        operation_id = "create_service_plugin", summary = "Enable the oauth2 plugin on a service",
        params(("service" = String, Path, description = SERVICE)),
        request_body = PluginInput,
        responses(
            (status = 201, description = "Created", body = Plugin),
            (status = 400, description = "Invalid body", body = Error),
            (status = 404, description = "Not found", body = Error),
            (status = 409, description = "Unique constraint violation", body = Error),
        ))]
    pub fn create_for_service() {}

    #[utoipa::path(get, path = "/apis/{api}/plugins", tag = "plugins",
        operation_id = "list_api_plugins",
        summary = "The seed tutorial's spelling of /services/{service}/plugins",
        params(("api" = String, Path, description = SERVICE), ListParams),
        responses(
            (status = 200, description = "One page", body = PluginPage),
            (status = 400, description = "Invalid size or offset", body = Error),
            (status = 404, description = "Not found", body = Error),
        ))]
    pub fn list_for_api() {}

    #[utoipa::path(post, path = "/apis/{api}/plugins", tag = "plugins",
        operation_id = "create_api_plugin",
        summary = "The seed tutorial's spelling of /services/{service}/plugins",
        description = "`value.x` is accepted for `config.x`, and the authorization code grant \
            is on unless the body sets an `enable_*` field.",
        params(("api" = String, Path, description = SERVICE)),
        request_body = PluginInput,
        responses(
            (status = 201, description = "Created", body = Plugin),
            (status = 400, description = "Invalid body", body = Error),
            (status = 404, description = "Not found", body = Error),
            (status = 409, description = "Unique constraint violation", body = Error),
        ))]
    pub fn create_for_api() {}

    #[utoipa::path(get, path = "/plugins", tag = "plugins",
        operation_id = "list_plugins", summary = "One page of all plugins",
        params(ListParams),
        responses(
            (status = 200, description = "One page", body = PluginPage),
            (status = 400, description = "Invalid size or offset", body = Error),
        ))]
    pub fn list() {}

    #[utoipa::path(get, path = "/plugins/{id}", tag = "plugins",
        operation_id = "get_plugin", summary = "One plugin",
        params(("id" = String, Path, description = "The plugin's id")),
        responses(
            (status = 200, description = "Found", body = Plugin),
            (status = 404, description = "Not found", body = Error),
        ))]
    pub fn show() {}

    #[utoipa::path(patch, path = "/plugins/{id}", tag = "plugins",
        operation_id = "update_plugin", summary = "Change a plugin's configuration",
        params(("id" = String, Path, description = "The plugin's id")),
        request_body = PluginUpdate,
        responses(
            (status = 200, description = "Updated", body = Plugin),
            (status = 400, description = "Invalid body", body = Error),
            (status = 404, description = "Not found", body = Error),
            (status = 409, description = "Unique constraint violation", body = Error),
        ))]
    pub fn update() {}

    #[utoipa::path(delete, path = "/plugins/{id}", tag = "plugins",
        operation_id = "delete_plugin", summary = "Delete a plugin",
        params(("id" = String, Path, description = "The plugin's id")),
        responses((status = 204, description = "Deleted (also when it did not exist)")))]
    pub fn delete() {}
}

/// The keys JWTs are signed with (docs/jwt-access-tokens.md §3).
#[allow(dead_code)]
mod signing_keys {
    use super::*;

    const KID: &str = "The key's kid";

    #[utoipa::path(get, path = "/signing-keys", tag = "signing keys",
        operation_id = "list_signing_key",
        summary = "The signing keys (public halves only)",
        responses((status = 200, description = "Every key, in one page", body = SigningKeyPage)))]
    pub fn list() {}

    #[utoipa::path(post, path = "/signing-keys", tag = "signing keys",
        operation_id = "create_signing_key",
        summary = "Add a signing key",
        description = "The new key is published at once and signs \
            `--signing-key-publish-delay-s` later (default 5 s), when the active key retires; \
            it signs at once when no key is active. Keys are generated here, never uploaded.",
        request_body = SigningKeyInput,
        responses(
            (status = 201, description = "Added", body = SigningKey),
            (status = 400, description = "Invalid body (`alg` not RS256, ES256 or EdDSA)", body = Error),
        ))]
    pub fn create() {}

    #[utoipa::path(get, path = "/signing-keys/{kid}", tag = "signing keys",
        operation_id = "get_signing_key",
        summary = "One signing key",
        params(("kid" = String, Path, description = KID)),
        responses(
            (status = 200, description = "Found", body = SigningKey),
            (status = 404, description = "Not found", body = Error),
        ))]
    pub fn show() {}

    #[utoipa::path(post, path = "/signing-keys/{kid}/retire", tag = "signing keys",
        operation_id = "retire_signing_key",
        summary = "Stop a key signing now",
        description = "The key stays published until the last token it signed has expired, \
            then is deleted. The active key can be retired only while another key is `next`, \
            which then signs at once. Retiring a retired key changes nothing.",
        params(("kid" = String, Path, description = KID)),
        responses(
            (status = 200, description = "Retired", body = SigningKey),
            (status = 404, description = "Not found", body = Error),
            (status = 409, description = "The only active key, and no key is next", body = Error),
        ))]
    pub fn retire() {}
}

/// Declarative configuration.
#[allow(dead_code)]
mod config {
    use super::*;

    #[utoipa::path(post, path = "/config", tag = "config", operation_id = "sync_config",
        summary = "Sync a declarative file (Kong's format), as decK does",
        description = "Creates, updates and deletes the managed entities (all, or with \
            `_info.select_tags` those carrying the tags) so that they match the file, in one \
            transaction. Matched entities keep their ids (and tokens); a second sync of the \
            same file changes nothing.",
        params(ConfigParams),
        request_body(content(
            (DeclarativeFile = "application/json"),
            (String = "application/yaml"),
            (DeclarativeUpload = "multipart/form-data"),
        )),
        responses(
            (status = 200, description = "What the sync changed (or, dry, would change)", body = ConfigDiff),
            (status = 400, description = "The file is invalid (code 14: each problem by its path in \
                the file; nothing applied), or a parameter is", body = Error),
            (status = 413, description = "The file is larger than 8 MiB", body = Error),
            (status = 415, description = "The body is not JSON, YAML or a form with `config`", body = Error),
        ))]
    pub fn sync() {}
}

/// The node itself.
#[allow(dead_code)]
mod node {
    use super::*;

    #[utoipa::path(get, path = "/", tag = "node", operation_id = "root",
        summary = "What this is and its version",
        responses((status = 200, description = "The service", body = Root)))]
    pub fn root() {}

    #[utoipa::path(get, path = "/status", tag = "node", operation_id = "status",
        summary = "Whether the database answers",
        responses((status = 200, description = "Reachable", body = Status)))]
    pub fn status() {}

    #[utoipa::path(get, path = "/metrics", tag = "node", operation_id = "metrics",
        summary = "Prometheus metrics of the token-service",
        responses((status = 200, description = "The Prometheus text format", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8")))]
    pub fn metrics() {}

    #[utoipa::path(get, path = "/openapi.json", tag = "node", operation_id = "openapi",
        summary = "This description (needs no admin key)", security(()),
        responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
    pub fn openapi() {}
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "token-service admin API",
        description = "The Kong-shaped admin API of the OAuth 2.0 token service for Envoy: \
            consumers, their `oauth2` credentials, tokens, services and their `oauth2` plugin.\n\n\
            Bodies may be JSON, `application/x-www-form-urlencoded` or `multipart/form-data` \
            (form fields nest by dotted names: `config.scopes=a,b`). A field a body's schema \
            does not describe, or a value not of its type, is a 400 `schema violation` naming \
            each such field; JSON values must have their type, form and multipart text is \
            read as the field's type (`true`, `60`). Entities carry `id` (UUID) \
            and `created_at` (Unix seconds). Errors are JSON: `{\"message\", \"fields\"?}`. \
            A method a path does not serve answers 405, an unknown path 404. One trailing \
            slash is accepted on every path.",
        license(name = "Apache-2.0"),
    ),
    paths(
        node::root, node::status, node::metrics, node::openapi,
        consumers::list, consumers::create, consumers::show, consumers::update,
        consumers::upsert, consumers::delete,
        consumer_credentials::list, consumer_credentials::create, consumer_credentials::show,
        consumer_credentials::update, consumer_credentials::upsert, consumer_credentials::delete,
        credentials::list, credentials::create, credentials::show, credentials::update,
        credentials::upsert, credentials::delete,
        tokens::list, tokens::create, tokens::show, tokens::update, tokens::upsert,
        tokens::delete,
        services::list, services::create, services::show, services::update, services::upsert,
        services::delete,
        plugins::list_for_service, plugins::create_for_service, plugins::list_for_api,
        plugins::create_for_api, plugins::list, plugins::show, plugins::update, plugins::delete,
        config::sync,
        signing_keys::list, signing_keys::create, signing_keys::show, signing_keys::retire,
    ),
    components(schemas(Error)),
    modifiers(&AdminCommon),
    // The admin key is optional: needed only when the service runs with --admin-key.
    security((), ("admin_key" = [])),
)]
pub struct AdminApi;

/// What every admin operation shares, added here rather than to each declaration: the
/// optional admin key (401), the cross-site refusal (403), the other body encodings, the
/// body size bound (413), and PATCH bodies in which every field is optional.
struct AdminCommon;

type Schemas = BTreeMap<String, RefOr<Schema>>;

impl Modify for AdminCommon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-admin-key",
                "Required when the token-service runs with --admin-key",
            ))),
        );
        require_username_or_custom_id(&mut components.schemas);
        add_links(&mut openapi.paths);
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path == "/openapi.json" {
                continue;
            }
            let operations = [
                (false, &mut item.get),
                (false, &mut item.post),
                (false, &mut item.put),
                (true, &mut item.patch),
                (false, &mut item.delete),
            ];
            for (is_patch, operation) in operations {
                if let Some(operation) = operation {
                    add_common(operation, is_patch, &mut components.schemas);
                }
            }
        }
    }
}

/// Where a created entity leads: its `id` names it in the operations on it, and feeds the
/// entities that refer to it. Readers see how operations chain; schemathesis's stateful phase
/// follows these links.
fn add_links(paths: &mut Paths) {
    const ID: &str = "$response.body#/id";
    let mut links: Vec<(String, String, Link)> = Vec::new();
    let mut link = |from: &str, to: &str, parameters: &[(&str, &str)], body: Option<Value>| {
        let built = parameters
            .iter()
            .fold(LinkBuilder::new().operation_id(to), |l, (name, value)| {
                l.parameter(*name, *value)
            })
            .request_body(body)
            .build();
        links.push((from.to_string(), to.to_string(), built));
    };
    // (entity, its key parameter, the parameter naming its owner)
    let entities = [
        ("consumer", "consumer", None),
        ("consumer_credential", "credential", Some("consumer")),
        ("credential", "credential", None),
        ("token", "token", None),
        ("service", "service", None),
    ];
    for to in ["get_signing_key", "retire_signing_key"] {
        link(
            "create_signing_key",
            to,
            &[("kid", "$response.body#/kid")],
            None,
        );
    }
    for (entity, key, owner) in entities {
        for verb in ["get", "update", "upsert", "delete"] {
            let owner_param = owner.map(|o| (o, format!("$request.path.{o}")));
            let mut parameters = vec![(key, ID)];
            if let Some((name, value)) = &owner_param {
                parameters.push((name, value.as_str()));
            }
            link(
                &format!("create_{entity}"),
                &format!("{verb}_{entity}"),
                &parameters,
                None,
            );
        }
    }
    for from in ["create_service_plugin", "create_api_plugin"] {
        for to in ["get_plugin", "update_plugin", "delete_plugin"] {
            link(from, to, &[("id", ID)], None);
        }
    }
    link(
        "create_consumer",
        "create_consumer_credential",
        &[("consumer", ID)],
        None,
    );
    link(
        "create_service",
        "create_service_plugin",
        &[("service", ID)],
        None,
    );
    for from in ["create_credential", "create_consumer_credential"] {
        let token = json!({"credential": {"id": ID}, "expires_in": 3600});
        link(from, "create_token", &[], Some(token));
    }
    for item in paths.paths.values_mut() {
        let operations = [&mut item.post, &mut item.put];
        for operation in operations.into_iter().flatten() {
            let Some(id) = operation.operation_id.clone() else {
                continue;
            };
            let created = operation.responses.responses.get_mut("201");
            let Some(RefOr::T(created)) = created else {
                continue;
            };
            for (_, to, l) in links.iter().filter(|(from, _, _)| *from == id) {
                created.links.insert(to.clone(), RefOr::T(l.clone()));
            }
        }
    }
}

fn add_common(operation: &mut Operation, is_patch: bool, schemas: &mut Schemas) {
    let responses = &mut operation.responses.responses;
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Error")))
                        .build(),
                )
                .build(),
        )
    };
    responses.insert(
        "401".into(),
        error("The admin key is missing or wrong (only with --admin-key)"),
    );
    responses.insert(
        "403".into(),
        error("A cross-site request from a browser page of an origin not allowed"),
    );
    if let Some(RefOr::T(body)) = operation.request_body.as_mut() {
        if is_patch {
            // A PATCH changes the fields it names; none is required.
            body.required = None;
            if let Some(name) = json_body_schema(body) {
                let partial = partial_schema(schemas, &name);
                set_json_body_schema(body, &partial);
            }
        }
        let value_alias = operation.operation_id.as_deref() == Some("create_api_plugin");
        add_form_encodings(body, schemas, value_alias);
        // (Unless the operation has a bound of its own: `/config`.)
        responses
            .entry("413".into())
            .or_insert_with(|| error("The body is larger than 64 KiB"));
    }
}

/// The component a request body's JSON content refers to.
fn json_body_schema(body: &RequestBody) -> Option<String> {
    match body.content.get("application/json")? {
        RefOr::T(content) => match content.schema.as_ref()? {
            RefOr::Ref(r) => r.ref_location.rsplit('/').next().map(str::to_owned),
            RefOr::T(_) => None,
        },
        RefOr::Ref(_) => None,
    }
}

fn set_json_body_schema(body: &mut RequestBody, name: &str) {
    body.content.insert(
        "application/json".into(),
        RefOr::T(
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(name)))
                .build(),
        ),
    );
}

/// `{name}Patch`: the component with no required field (the component itself when it has
/// none).
fn partial_schema(schemas: &mut Schemas, name: &str) -> String {
    let Some(RefOr::T(Schema::Object(object))) = schemas.get(name) else {
        return name.to_string();
    };
    if object.required.is_empty() {
        return name.to_string();
    }
    let mut partial = object.clone();
    partial.required.clear();
    let partial_name = format!("{name}Patch");
    schemas.insert(partial_name.clone(), RefOr::T(Schema::Object(partial)));
    partial_name
}

/// The fields a component requires, through `allOf` and references.
fn required_fields(schemas: &Schemas, schema: &RefOr<Schema>, depth: usize) -> Vec<String> {
    let resolved = match schema {
        RefOr::Ref(r) if depth < 4 => r
            .ref_location
            .rsplit('/')
            .next()
            .and_then(|name| schemas.get(name)),
        RefOr::Ref(_) => None,
        RefOr::T(_) => Some(schema),
    };
    match resolved {
        Some(RefOr::T(Schema::Object(object))) => object.required.clone(),
        Some(RefOr::T(Schema::AllOf(all))) => all
            .items
            .iter()
            .flat_map(|item| required_fields(schemas, item, depth + 1))
            .collect(),
        Some(other @ RefOr::Ref(_)) => required_fields(schemas, other, depth + 1),
        _ => Vec::new(),
    }
}

/// Form and multipart bodies carry the JSON body's fields as text (`{name}Form`; on the
/// seed's `/apis/{api}/plugins`, with `value.x` for `config.x`).
fn add_form_encodings(body: &mut RequestBody, schemas: &mut Schemas, value_alias: bool) {
    let Some(name) = json_body_schema(body) else {
        return;
    };
    let Some(shape) = input_shape(&name) else {
        return;
    };
    let form = if value_alias {
        format!("Api{name}Form")
    } else {
        format!("{name}Form")
    };
    let required = required_fields(schemas, &Ref::from_schema_name(&name).into(), 0);
    schemas.insert(
        form.clone(),
        form_schema(&name, required, shape, value_alias),
    );
    for content_type in ["application/x-www-form-urlencoded", "multipart/form-data"] {
        body.content.insert(
            content_type.into(),
            RefOr::T(
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(&form)))
                    .build(),
            ),
        );
    }
}

/// The fields a request body's component may carry (its PATCH variant's too): the shapes the
/// handlers check bodies against.
fn input_shape(json_name: &str) -> Option<Shape> {
    match json_name.trim_end_matches("Patch") {
        "ConsumerInput" => Some(super::consumers::SHAPE),
        "CredentialInput" | "OAuth2CredentialInput" => Some(super::credentials::SHAPE),
        "ServiceInput" => Some(super::services::SHAPE),
        "PluginInput" | "PluginUpdate" => Some(super::plugins::SHAPE),
        "TokenInput" => Some(super::tokens::SHAPE),
        "SigningKeyInput" => Some(super::signing_keys::SHAPE),
        _ => None,
    }
}

fn form_schema(
    json_name: &str,
    required: Vec<String>,
    shape: Shape,
    value_alias: bool,
) -> RefOr<Schema> {
    let mut fields = Vec::new();
    form_fields("", shape, &mut fields);
    if value_alias {
        form_fields("value", super::plugins::CONFIG_SHAPE, &mut fields);
    }
    let mut form = ObjectBuilder::new()
        .description(Some(format!(
            "{json_name} as a form or multipart body: its fields as text (booleans `true` or \
             `false`, integers in digits), nested ones by dotted names (`config.scopes=a,b`), \
             lists repeated (or comma-separated: `scopes`, `tags`). Other fields are refused."
        )))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, schema) in fields {
        form = form.property(name, schema);
    }
    for field in required {
        form = form.required(field);
    }
    RefOr::T(form.build().into())
}

/// The form fields of `shape`, as text: nested records by dotted names.
fn form_fields(prefix: &str, shape: Shape, out: &mut Vec<(String, Schema)>) {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    for (name, kind) in shape {
        let name = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        let schema: Schema = match kind {
            Kind::String => text().into(),
            Kind::Boolean => text().enum_values(Some(["true", "false"])).into(),
            Kind::Integer => text().pattern(Some("^-?[0-9]{1,18}$")).into(),
            Kind::Array | Kind::Set | Kind::StringOrArray => Array::new(text()).into(),
            Kind::Reference => {
                out.push((
                    format!("{name}.id"),
                    text().format(Some(uuid_format())).into(),
                ));
                continue;
            }
            Kind::Record(fields) => {
                form_fields(&name, fields, out);
                continue;
            }
        };
        out.push((name, schema));
    }
}

fn uuid_format() -> utoipa::openapi::SchemaFormat {
    utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid)
}

/// Kong's rule for consumers, which the derived schema cannot say: a non-empty `username`
/// or `custom_id`.
fn require_username_or_custom_id(schemas: &mut Schemas) {
    let Some(base) = schemas.remove("ConsumerInput") else {
        return;
    };
    let one_of_them = ["username", "custom_id"].map(|field| {
        ObjectBuilder::new()
            .required(field)
            .property(
                field,
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            )
            .build()
    });
    let either = AnyOfBuilder::new()
        .item(one_of_them[0].clone())
        .item(one_of_them[1].clone());
    let schema = AllOfBuilder::new().item(base).item(either).build();
    schemas.insert("ConsumerInput".into(), RefOr::T(schema.into()));
}

/// The description as pretty JSON, as served and checked in.
pub fn json() -> String {
    AdminApi::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the description: {e}\"}}"))
}

/// `GET /openapi.json`.
pub async fn serve() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{admin_router, AppState};
    use crate::store::Store;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde::de::DeserializeOwned;
    use serde_json::{json, Map, Value};
    use tower::ServiceExt;

    const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test -p token-service openapi";

    fn checked_in_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
    }

    #[test]
    fn the_checked_in_description_is_the_generated_one() {
        let generated = format!("{}\n", json());
        let path = checked_in_path();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json differs from what the code generates; regenerate it: {REGENERATE}"
        );
    }

    /// A component, with `$ref`s followed.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(location) => {
                let name = location.rsplit('/').next().unwrap_or_default();
                resolve(doc, &doc["components"]["schemas"][name])
            }
            None => schema,
        }
    }

    /// An object schema's properties (through `allOf`), and whether it refuses others.
    fn properties<'a>(doc: &'a Value, schema: &'a Value) -> (Map<String, Value>, bool) {
        let schema = resolve(doc, schema);
        let mut found: Map<String, Value> = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut closed = schema["additionalProperties"] == json!(false);
        for part in schema["allOf"].as_array().into_iter().flatten() {
            let (more, part_closed) = properties(doc, part);
            found.extend(more);
            closed |= part_closed;
        }
        (found, closed)
    }

    /// What kind of value a property's schema describes, in the terms of `input::Kind`.
    fn described_kind(doc: &Value, schema: &Value) -> String {
        let schema = resolve(doc, schema);
        if let Some(alternatives) = schema["oneOf"].as_array() {
            let kinds: Vec<String> = alternatives
                .iter()
                .filter(|a| a["type"] != "null")
                .map(|a| described_kind(doc, a))
                .collect();
            return kinds.join("|");
        }
        let kind = match &schema["type"] {
            Value::Array(types) => types.iter().find(|t| *t != "null").cloned(),
            other => Some(other.clone()),
        };
        match kind.as_ref().and_then(Value::as_str) {
            Some("object") if properties(doc, schema).0.keys().eq(["id"]) => "reference".into(),
            Some("object") => "record".into(),
            Some(other) => other.to_string(),
            None => format!("no type in {schema}"),
        }
    }

    fn kind_name(kind: Kind) -> &'static str {
        match kind {
            Kind::String => "string",
            Kind::Boolean => "boolean",
            Kind::Integer => "integer",
            Kind::Array | Kind::Set => "array",
            Kind::StringOrArray => "string|array",
            Kind::Reference => "reference",
            Kind::Record(_) => "record",
        }
    }

    /// The description and the handlers' checks agree: each body's component has exactly the
    /// fields the handler accepts, of the same types, and refuses others.
    fn assert_describes(doc: &Value, schema: &Value, shape: Shape, what: &str) {
        let (described, closed) = properties(doc, schema);
        assert!(
            closed,
            "{what}: other fields are refused, so additionalProperties: false"
        );
        let names: Vec<&str> = shape.iter().map(|(name, _)| *name).collect();
        let mut described_names: Vec<&str> = described.keys().map(String::as_str).collect();
        described_names.sort_unstable();
        let mut accepted = names.clone();
        accepted.sort_unstable();
        assert_eq!(
            described_names, accepted,
            "{what}: described vs accepted fields"
        );
        for (name, kind) in shape {
            let property = &described[*name];
            assert_eq!(
                described_kind(doc, property),
                kind_name(*kind),
                "{what}.{name}: {property}"
            );
            if let Kind::Record(fields) = kind {
                let inner = property["oneOf"]
                    .as_array()
                    .and_then(|a| a.iter().find(|s| s["type"] != "null"))
                    .unwrap_or(property);
                assert_describes(doc, inner, fields, &format!("{what}.{name}"));
            }
        }
    }

    #[test]
    fn request_bodies_describe_exactly_the_fields_the_handlers_accept() {
        let doc: Value = serde_json::from_str(&json()).expect("JSON");
        let mut bodies = 0;
        for (path, method, operation) in operations(&doc) {
            let content = &operation["requestBody"]["content"];
            let Some(json_schema) = content["application/json"]["schema"].as_object() else {
                continue;
            };
            let what = format!("{method} {path}");
            let name = json_schema["$ref"].as_str().unwrap_or_default();
            let name = name.rsplit('/').next().unwrap_or_default();
            if name == "DeclarativeFile" {
                // A file, not an entity: its top level is what the reader takes.
                let (fields, closed) = properties(&doc, &content["application/json"]["schema"]);
                let mut described: Vec<&str> = fields.keys().map(String::as_str).collect();
                let mut read = crate::declarative::document::TOP_LEVEL_FIELDS.to_vec();
                described.sort_unstable();
                read.sort_unstable();
                assert!(
                    closed && described == read,
                    "{what}: {described:?} vs {read:?}"
                );
                continue;
            }
            let shape = input_shape(name).unwrap_or_else(|| panic!("{what}: no shape for {name}"));
            assert_describes(&doc, &content["application/json"]["schema"], shape, &what);
            for encoding in ["application/x-www-form-urlencoded", "multipart/form-data"] {
                let (form, closed) = properties(&doc, &content[encoding]["schema"]);
                assert!(closed, "{what} {encoding}: other fields are refused");
                let mut expected = Vec::new();
                form_fields("", shape, &mut expected);
                for (field, _) in expected {
                    assert!(form.contains_key(&field), "{what} {encoding}: {field}");
                }
            }
            bodies += 1;
        }
        assert!(bodies >= 16, "{bodies} request bodies");
    }

    #[test]
    fn the_description_is_openapi_3_1_with_unique_operation_ids() {
        let doc: Value = serde_json::from_str(&json()).expect("JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = std::collections::BTreeSet::new();
        for (_, method, operation) in operations(&doc) {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_string()), "{method} {id} twice");
        }
        assert!(ids.len() >= 40, "{ids:?}");
        // Every link leads to a declared operation.
        let mut links = 0;
        for (path, method, operation) in operations(&doc) {
            for response in operation["responses"].as_object().into_iter().flatten() {
                for (name, link) in response.1["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"].as_str().unwrap_or_default();
                    assert!(ids.contains(target), "{method} {path}: link {name}");
                    links += 1;
                }
            }
        }
        assert!(links >= 25, "{links} links");
    }

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    fn operations(doc: &Value) -> Vec<(String, &'static str, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    out.push((path.clone(), method, operation));
                }
            }
        }
        out
    }

    fn admin() -> (tempfile::TempDir, axum::Router) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("admin.db")).expect("store");
        (dir, admin_router(AppState::new(store, None)))
    }

    async fn send(
        router: &axum::Router,
        method: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method.to_ascii_uppercase().as_str())
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Every declared operation is routed, and every other method of a declared path is
    /// Kong's 405: the description and the router agree.
    #[tokio::test]
    async fn the_router_serves_exactly_the_declared_operations() {
        let (_dir, router) = admin();
        let doc: Value = serde_json::from_str(&json()).expect("JSON");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            // Any key: unknown ones answer 404 (or, for PUT, create), never 405.
            let concrete = path
                .split('/')
                .map(|s| if s.starts_with('{') { "some-key" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            for method in METHODS {
                let (status, _) = send(&router, method, &concrete, json!({})).await;
                if item.get(method).is_some() {
                    assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                    assert!(!status.is_server_error(), "{method} {path}: {status}");
                } else {
                    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                }
            }
        }
    }

    fn read<T: DeserializeOwned>(what: &str, (status, body): (StatusCode, Value)) -> T {
        serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("{what} ({status}) does not match its schema: {e}: {body}"))
    }

    /// Real answers read back into the described shapes (unknown fields refused), so the
    /// schema types cannot drift from what the handlers build.
    #[tokio::test]
    async fn answers_have_the_described_shapes() {
        let (_dir, r) = admin();
        let _: Root = read("root", send(&r, "get", "/", Value::Null).await);
        let _: Status = read("status", send(&r, "get", "/status", Value::Null).await);
        let consumer: Consumer = read(
            "consumer",
            send(
                &r,
                "post",
                "/consumers",
                json!({"username": "clark", "tags": ["a"]}),
            )
            .await,
        );
        let _: ConsumerPage = read(
            "consumers",
            send(&r, "get", "/consumers?size=1", Value::Null).await,
        );
        let service: Service = read(
            "service",
            send(&r, "post", "/services", json!({"name": "step-on"})).await,
        );
        let _: ServicePage = read("services", send(&r, "get", "/services", Value::Null).await);
        let plugin: Plugin = read(
            "plugin",
            send(
                &r,
                "post",
                "/services/step-on/plugins",
                json!({"name": "oauth2", "config": {"enable_password_grant": true, "scopes": ["x"]}}),
            )
            .await,
        );
        assert_eq!(plugin.service.map(|s| s.id), Some(service.id.clone()));
        let _: PluginPage = read("plugins", send(&r, "get", "/plugins", Value::Null).await);
        let _: PluginPage = read(
            "service plugins",
            send(&r, "get", "/apis/step-on/plugins", Value::Null).await,
        );
        let credential: Credential = read(
            "credential",
            send(
                &r,
                "post",
                "/consumers/clark/oauth2",
                json!({"name": "app", "redirect_uris": ["https://app.test/cb"]}),
            )
            .await,
        );
        assert_eq!(credential.consumer.id, consumer.id);
        let _: CredentialPage = read("credentials", send(&r, "get", "/oauth2", Value::Null).await);
        let token: Token = read(
            "token",
            send(
                &r,
                "post",
                "/oauth2_tokens",
                json!({"credential": {"id": credential.id}, "service": {"id": service.id},
                       "expires_in": 60, "refresh_token": "r1"}),
            )
            .await,
        );
        assert!(token.access_token.is_some());
        let _: TokenPage = read(
            "tokens",
            send(&r, "get", "/oauth2_tokens", Value::Null).await,
        );
        let _: Token = read(
            "token by id",
            send(
                &r,
                "get",
                &format!("/oauth2_tokens/{}", token.id),
                Value::Null,
            )
            .await,
        );
        let _: Error = read(
            "404",
            send(&r, "get", "/consumers/nobody", Value::Null).await,
        );
        let _: Error = read("400", send(&r, "post", "/consumers", json!({})).await);
        let _: Error = read(
            "409",
            send(&r, "post", "/consumers", json!({"username": "clark"})).await,
        );
        let file = json!({"_format_version": "3.0", "_info": {"select_tags": ["t"]},
                          "consumers": [{"username": "declared"}]});
        let dry: ConfigDiff = read(
            "config diff",
            send(&r, "post", "/config?dry_run=true", file.clone()).await,
        );
        assert_eq!(dry.created.len(), 1);
        let synced: ConfigDiff = read("config sync", send(&r, "post", "/config", file).await);
        assert_eq!(synced.summary.create, 1);
        let key: SigningKey = read(
            "signing key",
            send(&r, "post", "/signing-keys", json!({"alg": "EdDSA"})).await,
        );
        let _: SigningKeyPage = read(
            "signing keys",
            send(&r, "get", "/signing-keys", Value::Null).await,
        );
        let _: SigningKey = read(
            "signing key by kid",
            send(
                &r,
                "get",
                &format!("/signing-keys/{}", key.kid),
                Value::Null,
            )
            .await,
        );
        let _: Error = read(
            "409 retire",
            send(
                &r,
                "post",
                &format!("/signing-keys/{}/retire", key.kid),
                Value::Null,
            )
            .await,
        );
        let _: SigningKey = read(
            "next signing key",
            send(&r, "post", "/signing-keys", json!({"alg": "ES256"})).await,
        );
        let _: SigningKey = read(
            "retired signing key",
            send(
                &r,
                "post",
                &format!("/signing-keys/{}/retire", key.kid),
                Value::Null,
            )
            .await,
        );
        let bad = json!({"_format_version": "3.0", "consumers": [{"username": 1}]});
        let error: Error = read("invalid config", send(&r, "post", "/config", bad).await);
        assert_eq!(error.code, Some(14));
    }

    #[test]
    fn metrics_are_described_with_their_content_type() {
        let doc: Value = serde_json::from_str(&json()).expect("JSON");
        let content = &doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
        assert!(
            content.get(crate::metrics::CONTENT_TYPE).is_some(),
            "{content}"
        );
    }

    #[tokio::test]
    async fn the_description_is_served_without_the_admin_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("admin.db")).expect("store");
        let router = admin_router(AppState::new(store, Some("sesame".into())));
        let (status, body) = send(&router, "get", "/openapi.json", Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["info"]["title"], "token-service admin API");
        let (status, _) = send(&router, "get", "/consumers", Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = send(&router, "get", "/openapi.json/", Value::Null).await;
        assert_eq!(status, StatusCode::OK);
    }
}
