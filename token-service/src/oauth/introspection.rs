//! RFC 7662 introspection and RFC 7009 revocation, for authenticated confidential clients of
//! the service.
//!
//! Both endpoints reveal or destroy other people's tokens, so (RFC 7662 §2.1, RFC 7009 §2.1)
//! the caller must be a confidential client proving its secret, in the body or by HTTP Basic;
//! a public client has nothing to prove and is refused like a wrong secret. Every client
//! failure answers 401 with a Basic challenge (RFC 7662 §2.3, RFC 6749 §5.2). A request the
//! filter relayed must have come over HTTPS, by the token endpoint's own rule.

use super::response::{json_response, oauth_error};
use crate::grants::client_auth;
use crate::grants::error::OAuthError;
use crate::grants::validity::{self, Validity};
use crate::grants::{require_https, Context, Request};
use crate::model::presented_token_digest;
use crate::model::{now, ClientType, Credential};
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

/// The calling client, once the transport and its credentials passed; else the error to send.
async fn authenticated_client(
    ctx: &Context<'_>,
    req: &Request,
) -> Result<Result<Credential, OAuthError>, StoreError> {
    if req.relayed {
        if let Err(e) = require_https(ctx, req) {
            return Ok(Err(e));
        }
    }
    let presented = client_auth::presented(&req.params, req.auth_header.as_deref());
    let Some(id) = presented.client_id.clone().filter(|id| !id.is_empty()) else {
        return Ok(Err(unauthenticated()));
    };
    let client = ctx
        .store
        .credential_by_client_id(&id)
        .await?
        .map(|c| Credential::clone(&c))
        .filter(|c| c.client_type == ClientType::Confidential);
    let Some(client) = client else {
        return Ok(Err(unauthenticated()));
    };
    Ok(
        match client_auth::authenticate(ctx.client_auth, &client, &presented).await {
            Ok(()) => Ok(client),
            // Refused for now (too many failures, a busy server): that answer, not a 401.
            Err(e) if e.retry_after_s.is_some() => Err(e),
            Err(_) => Err(unauthenticated()),
        },
    )
}

/// `invalid_client` with 401 and a Basic challenge, whichever way the client authenticated.
fn unauthenticated() -> OAuthError {
    OAuthError::invalid_client(true)
}

pub async fn introspect(ctx: &Context<'_>, req: &Request) -> Result<Response, StoreError> {
    if let Err(e) = authenticated_client(ctx, req).await? {
        return Ok(oauth_error(e, None));
    }
    let Some(token) = req.text("token") else {
        return Ok(oauth_error(
            OAuthError::invalid_request("The token parameter is missing"),
            None,
        ));
    };
    let found = match presented_token_digest(token) {
        Some(digest) => ctx.store.checked_token(&digest).await?,
        None => None,
    };
    let global = ctx.plugin.config.global_credentials;
    let active = found.filter(|t| {
        validity::check(
            t.lifetime,
            t.service_id.as_deref(),
            &ctx.service.id,
            global,
            now(),
        ) == Validity::Active
    });
    let Some(token) = active else {
        return Ok(json_response(StatusCode::OK, json!({"active": false})));
    };
    Ok(json_response(
        StatusCode::OK,
        json!({
            "active": true,
            "scope": token.scope,
            "client_id": token.client_id,
            "username": token.consumer_username,
            "token_type": "bearer",
            "exp": token.lifetime.access_expires_at(),
            "iat": token.lifetime.created_at,
            "sub": token.authenticated_userid,
        }),
    ))
}

/// Revokes the access or refresh token if it belongs to the calling client. Unknown tokens
/// answer 200 too (RFC 7009 §2.2), so the endpoint reveals nothing.
pub async fn revoke(ctx: &Context<'_>, req: &Request) -> Result<Response, StoreError> {
    let client = match authenticated_client(ctx, req).await? {
        Ok(client) => client,
        Err(e) => return Ok(oauth_error(e, None)),
    };
    let Some(token) = req.text("token") else {
        return Ok(oauth_error(
            OAuthError::invalid_request("The token parameter is missing"),
            None,
        ));
    };
    // Longer than any token: nothing to revoke (RFC 7009 §2.2 answers 200 all the same).
    let Some(digest) = presented_token_digest(token) else {
        return Ok(json_response(StatusCode::OK, json!({})));
    };
    ctx.store
        .write(move |repo| {
            let token = match repo.token("", &digest)? {
                Some(token) => Some(token),
                None => repo.token_by_refresh_hash(&digest)?,
            };
            if let Some(token) = token.filter(|t| t.credential_id == client.id) {
                repo.revoke_family(&token.family_id)?;
            }
            Ok(())
        })
        .await?;
    Ok(json_response(StatusCode::OK, json!({})))
}
