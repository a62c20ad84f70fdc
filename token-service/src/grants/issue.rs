//! Minting access (and refresh) tokens under a plugin's lifetimes.

use super::Context;
use crate::model::{now, Token};
use crate::secrets::{random_string, token_digest};
use crate::store::NewToken;
use serde_json::{json, Map, Value};

/// The plaintext tokens, handed to the client once and never stored.
pub struct Minted {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: i64,
}

impl Minted {
    pub fn body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("access_token".into(), json!(self.access_token));
        body.insert("token_type".into(), json!("bearer"));
        if self.expires_in > 0 {
            body.insert("expires_in".into(), json!(self.expires_in));
        }
        if let Some(refresh) = &self.refresh_token {
            body.insert("refresh_token".into(), json!(refresh));
        }
        body
    }
}

pub struct Grant {
    pub credential_id: String,
    /// The service the tokens are good for (`None`: every `global_credentials` plugin).
    /// New grants take [`service_binding`]; a refresh keeps the binding of the token it
    /// replaces, whatever the plugin it is refreshed at.
    pub service_id: Option<String>,
    pub authenticated_userid: Option<String>,
    pub scope: Option<String>,
    pub with_refresh: bool,
    pub family_id: String,
}

/// A new token row and its plaintexts, bound as the grant says; the whole row lives
/// `refresh_token_ttl`.
pub fn mint(ctx: &Context<'_>, grant: Grant) -> (NewToken, Minted) {
    let config = &ctx.plugin.config;
    let created_at = now();
    let access_token = random_string();
    let refresh_token = (grant.with_refresh && config.token_expiration > 0).then(random_string);
    let new = NewToken {
        credential_id: grant.credential_id,
        service_id: grant.service_id,
        access_token_hash: token_digest(&access_token),
        refresh_token_hash: refresh_token.as_deref().map(token_digest),
        authenticated_userid: grant.authenticated_userid,
        scope: grant.scope,
        expires_in: config.token_expiration,
        ttl_at: row_ttl(ctx, created_at),
        family_id: grant.family_id,
        created_at,
    };
    (
        new,
        Minted {
            access_token,
            refresh_token,
            expires_in: config.token_expiration,
        },
    )
}

/// Tokens and codes of a new grant are bound to the service unless the plugin shares them
/// (`global_credentials`).
pub fn service_binding(ctx: &Context<'_>) -> Option<String> {
    (!ctx.plugin.config.global_credentials).then(|| ctx.service.id.clone())
}

pub fn row_ttl(ctx: &Context<'_>, from: i64) -> Option<i64> {
    let config = &ctx.plugin.config;
    (config.token_expiration > 0 && config.refresh_token_ttl > 0)
        .then(|| crate::model::later(from, config.refresh_token_ttl))
}

/// `reuse_refresh_token`: the same row gets a new access token and a fresh lifetime.
pub fn renew_in_place(ctx: &Context<'_>, token: &Token, refresh_token: String) -> (Token, Minted) {
    let config = &ctx.plugin.config;
    let created_at = now();
    let access_token = random_string();
    let renewed = Token {
        created_at,
        expires_in: config.token_expiration,
        access_token_hash: token_digest(&access_token),
        ttl_at: row_ttl(ctx, created_at),
        ..token.clone()
    };
    (
        renewed,
        Minted {
            access_token,
            refresh_token: Some(refresh_token),
            expires_in: config.token_expiration,
        },
    )
}
