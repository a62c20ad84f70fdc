//! The token endpoint: client authentication, then the grant named by `grant_type`.
//!
//! As in Kong, the shared checks run in order and a later failure replaces an earlier one;
//! the grant itself runs only when all of them passed.

use super::client_auth::{self, PresentedClient};
use super::error::GrantFailure;
use super::error::{ErrorCode, OAuthError};
use super::{
    authorization_code, client_credentials, password, redirect, refresh_token, require_https,
    Context, Request,
};
use crate::metrics::Grant;
use crate::model::Credential;
use serde_json::{Map, Value};

#[derive(Debug, PartialEq)]
pub enum Outcome {
    Issued(Map<String, Value>),
    Error(OAuthError),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    Password,
}

fn grant_type(ctx: &Context<'_>, req: &Request) -> Option<GrantType> {
    let config = &ctx.plugin.config;
    match req.text("grant_type")? {
        "authorization_code" => Some(GrantType::AuthorizationCode),
        "refresh_token" => Some(GrantType::RefreshToken),
        "client_credentials" if config.enable_client_credentials => {
            Some(GrantType::ClientCredentials)
        }
        "password" if config.enable_password_grant => Some(GrantType::Password),
        _ => None,
    }
}

pub async fn handle(ctx: &Context<'_>, req: &Request) -> Result<Outcome, GrantFailure> {
    if let Err(e) = require_https(ctx, req) {
        return Ok(Outcome::Error(e));
    }
    let mut error = None;
    let grant = grant_type(ctx, req);
    if grant.is_none() {
        error = Some(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "Invalid grant_type",
        ));
    }
    let presented = client_auth::presented(&req.params, req.auth_header.as_deref());
    let mut client = find_client(ctx, &presented).await?;
    if grant != Some(GrantType::ClientCredentials) {
        client = client.filter(|c| c.redirect_uris.as_ref().is_some_and(|u| !u.is_empty()));
        match &client {
            None => error = Some(OAuthError::invalid_client(presented.from_header)),
            Some(c) => {
                let registered = c.redirect_uris.as_deref().unwrap_or_default();
                if redirect::resolve(registered, req.params.get("redirect_uri")).is_err() {
                    error = Some(OAuthError::invalid_redirect_uri());
                }
            }
        }
    }
    if let Some(c) = &client {
        if let Err(e) = client_auth::authenticate(ctx.client_auth, c, &presented).await {
            error = Some(e);
        }
    }
    if let Some(e) = error {
        return Ok(Outcome::Error(e));
    }
    let outcome = match (grant, client) {
        (Some(GrantType::AuthorizationCode), Some(c)) => {
            authorization_code::exchange(ctx, req, c).await
        }
        (Some(GrantType::RefreshToken), Some(c)) => refresh_token::refresh(ctx, req, c).await,
        (Some(GrantType::Password), Some(c)) => password::issue(ctx, req, c).await,
        (Some(GrantType::ClientCredentials), c) => client_credentials::issue(ctx, req, c).await,
        _ => Ok(Outcome::Error(OAuthError::invalid_client(
            presented.from_header,
        ))),
    };
    if let (Ok(Outcome::Issued(_)), Some(grant)) = (&outcome, grant) {
        ctx.store.metrics().token_issued(grant.into());
    }
    outcome
}

impl From<GrantType> for Grant {
    fn from(grant: GrantType) -> Grant {
        match grant {
            GrantType::AuthorizationCode => Grant::AuthorizationCode,
            GrantType::RefreshToken => Grant::RefreshToken,
            GrantType::ClientCredentials => Grant::ClientCredentials,
            GrantType::Password => Grant::Password,
        }
    }
}

async fn find_client(
    ctx: &Context<'_>,
    presented: &PresentedClient,
) -> Result<Option<Credential>, GrantFailure> {
    let Some(id) = presented.client_id.clone().filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    Ok(ctx
        .store
        .credential_by_client_id(&id)
        .await?
        .map(|c| Credential::clone(&c)))
}
