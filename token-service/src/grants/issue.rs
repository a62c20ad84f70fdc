//! Minting access (and refresh) tokens under a plugin's lifetimes: opaque random strings, or
//! RFC 9068 JWTs (`access_token_format: jwt`, docs/jwt-access-tokens.md §2) whose record is
//! stored under the digest of the whole JWT, like an opaque token's.

use super::claims::{self, Issue, Subject};
use super::error::GrantFailure;
use super::Context;
use crate::model::{
    later, new_id, now, AccessTokenFormat, Consumer, Credential, Lifetime, Token, MAX_LIFETIME_S,
};
use crate::secrets::{random_string, token_digest};
use crate::store::{NewToken, StoreError};
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

pub struct Grant<'c> {
    /// The client the tokens are issued to.
    pub client: &'c Credential,
    /// The service the tokens are good for (`None`: every `global_credentials` plugin).
    /// New grants take [`service_binding`]; a refresh keeps the binding of the token it
    /// replaces, whatever the plugin it is refreshed at.
    pub service_id: Option<String>,
    pub authenticated_userid: Option<String>,
    pub scope: Option<String>,
    pub with_refresh: bool,
    pub family_id: String,
    /// A `reuse_refresh_token` renewal keeps the presented refresh token instead.
    pub keep_refresh: Option<String>,
}

/// A new token row and its plaintexts, bound as the grant says; the whole row lives
/// `refresh_token_ttl`. With `access_token_format: jwt` the access token is a signed JWT
/// whose `jti` is the row's id.
pub async fn mint(ctx: &Context<'_>, grant: Grant<'_>) -> Result<(NewToken, Minted), GrantFailure> {
    let config = &ctx.plugin.config;
    let created_at = now();
    let id = new_id();
    let refresh_token = match grant.keep_refresh.clone() {
        Some(kept) => Some(kept),
        None => (grant.with_refresh && config.token_expiration > 0).then(random_string),
    };
    let lifetime = Lifetime {
        created_at,
        expires_in: config.token_expiration,
        ttl_at: row_ttl(ctx, created_at),
    };
    let (access_token, jwt_exp) = match config.access_token_format {
        AccessTokenFormat::Opaque => (random_string(), None),
        AccessTokenFormat::Jwt => {
            // The admin API refuses `jwt` with tokens that never expire; were one stored
            // anyway, its JWTs still expire (RFC 9068), at the longest lifetime there is.
            let exp = lifetime
                .access_expires_at()
                .unwrap_or_else(|| later(created_at, MAX_LIFETIME_S));
            let jwt = sign_access_token(ctx, &grant, &id, created_at, exp).await?;
            (jwt, Some(exp))
        }
    };
    let new = NewToken {
        id,
        credential_id: grant.client.id.clone(),
        service_id: grant.service_id,
        access_token_hash: token_digest(&access_token),
        refresh_token_hash: refresh_token.as_deref().map(token_digest),
        authenticated_userid: grant.authenticated_userid,
        scope: grant.scope,
        expires_in: config.token_expiration,
        ttl_at: lifetime.ttl_at,
        family_id: grant.family_id,
        created_at,
        jwt_exp,
    };
    let minted = Minted {
        access_token,
        refresh_token,
        expires_in: config.token_expiration,
    };
    Ok((new, minted))
}

/// The contract's access token for this grant, signed by the active key.
async fn sign_access_token(
    ctx: &Context<'_>,
    grant: &Grant<'_>,
    jti: &str,
    iat: i64,
    exp: i64,
) -> Result<String, GrantFailure> {
    let consumer = consumer_of(ctx, grant.client).await?;
    let subject = Subject {
        client_id: &grant.client.client_id,
        credential_id: &grant.client.id,
        consumer_id: &consumer.id,
        consumer_username: consumer.username.as_deref(),
        consumer_custom_id: consumer.custom_id.as_deref(),
        authenticated_userid: grant.authenticated_userid.as_deref(),
        scope: grant.scope.as_deref(),
    };
    let issue = Issue {
        issuer: ctx.issuer,
        jti,
        iat,
        exp,
    };
    let claims = claims::access_token(issue, subject, grant.service_id.as_deref());
    Ok(ctx.signing.sign(claims::ACCESS_TOKEN_TYP, &claims).await?)
}

/// The client's consumer, whose identity the JWT carries. Gone meanwhile: the token's
/// insert would fail on it too.
async fn consumer_of(ctx: &Context<'_>, client: &Credential) -> Result<Consumer, GrantFailure> {
    let id = client.consumer_id.clone();
    ctx.store
        .read(move |repo| repo.consumer(&id))
        .await?
        .ok_or(GrantFailure::Store(StoreError::MissingReference))
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

/// `reuse_refresh_token` with opaque tokens (Kong's): the same row gets a new access token and
/// a fresh lifetime. (JWTs get a new row instead, so each JWT's `jti` names one token.)
pub fn renew_in_place(ctx: &Context<'_>, token: &Token, refresh_token: String) -> (Token, Minted) {
    let config = &ctx.plugin.config;
    let created_at = now();
    let access_token = random_string();
    let renewed = Token {
        created_at,
        expires_in: config.token_expiration,
        access_token_hash: token_digest(&access_token),
        ttl_at: row_ttl(ctx, created_at),
        jwt_exp: None,
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
