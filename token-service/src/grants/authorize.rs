//! The authorization endpoint (`response_type=code` and, for the implicit grant, `token`).
//!
//! Kong's order matters and is kept: HTTPS, `provision_key` and `authenticated_userid` stop at
//! once; the remaining checks all run and the last failing one is reported, inside the redirect
//! URI once the client and its redirect URI are known.

use super::error::GrantFailure;
use super::error::{ErrorCode, OAuthError};
use super::issue::{mint, Grant};
use super::redirect::{self, Placement};
use super::{pkce, require_https, scope, Context, Request, CODE_TTL_S};
use crate::model::{now, Credential};
use crate::secrets::{random_string, token_digest};
use crate::store::NewCode;
use serde_json::{json, Value};

#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// `{"redirect_uri": uri}` with 200 (success) or 400 (`error`, carried in the URI).
    Redirect {
        error: Option<ErrorCode>,
        uri: String,
    },
    /// A plain JSON error: no trustworthy redirect target is known.
    Error(OAuthError),
}

#[derive(Clone, Copy, PartialEq)]
enum ResponseType {
    Code,
    Token,
}

pub async fn handle(ctx: &Context<'_>, req: &Request) -> Result<Outcome, GrantFailure> {
    if let Err(e) = require_https(ctx, req) {
        return Ok(Outcome::Error(e));
    }
    let config = &ctx.plugin.config;
    if !super::provision_key_matches(config, req.text("provision_key")) {
        return Ok(Outcome::Error(OAuthError::invalid_provision_key()));
    }
    let Some(userid) = req
        .text("authenticated_userid")
        .filter(|u| !u.trim().is_empty())
    else {
        return Ok(Outcome::Error(OAuthError::missing_authenticated_userid()));
    };

    let mut error = None;
    let response_type = match req.text("response_type") {
        Some("code") if config.enable_authorization_code => Some(ResponseType::Code),
        Some("token") if config.enable_implicit_grant => Some(ResponseType::Token),
        _ => {
            error = Some(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "Invalid response_type",
            ));
            None
        }
    };
    let scope = scope::validate(config, req.params.get("scope")).unwrap_or_else(|e| {
        error = Some(e);
        None
    });
    let client = client_with_redirect_uris(ctx, req).await?;
    let mut target = None;
    match &client {
        None => error = Some(OAuthError::invalid_client(false)),
        Some(c) => match redirect::resolve(
            c.redirect_uris.as_deref().unwrap_or_default(),
            req.params.get("redirect_uri"),
        ) {
            Ok(uri) => target = Some(uri.to_string()),
            Err(first) => {
                error = Some(OAuthError::invalid_redirect_uri());
                target = Some(first.to_string());
            }
        },
    }
    let challenge = match pkce::challenge_from(&req.params) {
        Ok(None) => {
            if let Some(c) = client
                .as_ref()
                .filter(|c| pkce::required(c.client_type, config.pkce))
            {
                error = Some(OAuthError::invalid_request(format!(
                    "code_challenge is required for {} clients",
                    c.client_type.as_str()
                )));
            }
            None
        }
        Ok(challenge) => challenge,
        Err(e) => {
            error = Some(e);
            None
        }
    };

    let state = req.state();
    let (Some(target), Some(client)) = (target, client) else {
        return Ok(Outcome::Error(
            error.unwrap_or_else(|| OAuthError::invalid_client(false)),
        ));
    };
    if let Some(e) = error {
        let mut params = e.to_params();
        params.extend(state.map(|s| ("state".to_string(), s)));
        return Ok(Outcome::Redirect {
            error: Some(e.code),
            uri: redirect::build(&target, &params, Placement::Query),
        });
    }

    let (mut params, placement) = match response_type {
        Some(ResponseType::Token) => {
            let token = issue_implicit_token(ctx, &client, userid, scope).await?;
            ctx.store
                .metrics()
                .token_issued(crate::metrics::Grant::Implicit);
            (token, Placement::Fragment)
        }
        _ => (
            issue_code(ctx, &client, userid, scope, challenge).await?,
            Placement::Query,
        ),
    };
    params.extend(state.map(|s| ("state".to_string(), s)));
    Ok(Outcome::Redirect {
        error: None,
        uri: redirect::build(&target, &params, placement),
    })
}

/// Kong treats a client without redirect URIs as unknown at this endpoint.
async fn client_with_redirect_uris(
    ctx: &Context<'_>,
    req: &Request,
) -> Result<Option<Credential>, GrantFailure> {
    let Some(client_id) = req
        .text("client_id")
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    let client = ctx
        .store
        .credential_by_client_id(&client_id)
        .await?
        .map(|c| Credential::clone(&c));
    Ok(client.filter(|c| {
        c.redirect_uris
            .as_ref()
            .is_some_and(|uris| !uris.is_empty())
    }))
}

async fn issue_code(
    ctx: &Context<'_>,
    client: &Credential,
    userid: &str,
    scope: Option<String>,
    challenge: Option<pkce::Challenge>,
) -> Result<Vec<(String, Value)>, GrantFailure> {
    let code = random_string();
    let created_at = now();
    let new = NewCode {
        code_hash: token_digest(&code),
        credential_id: client.id.clone(),
        service_id: super::issue::service_binding(ctx),
        plugin_id: Some(ctx.plugin.id.clone()),
        authenticated_userid: Some(userid.to_string()),
        scope,
        challenge_method: challenge.as_ref().map(|c| c.method.to_string()),
        challenge: challenge.map(|c| c.challenge),
        created_at,
        expires_at: created_at + CODE_TTL_S,
    };
    ctx.store.write(move |repo| repo.insert_code(&new)).await?;
    Ok(vec![("code".to_string(), json!(code))])
}

async fn issue_implicit_token(
    ctx: &Context<'_>,
    client: &Credential,
    userid: &str,
    scope: Option<String>,
) -> Result<Vec<(String, Value)>, GrantFailure> {
    let grant = Grant {
        service_id: super::issue::service_binding(ctx),
        client,
        authenticated_userid: Some(userid.to_string()),
        scope,
        with_refresh: false,
        family_id: crate::model::new_id(),
        keep_refresh: None,
    };
    let (new, minted) = mint(ctx, grant).await?;
    ctx.store.write(move |repo| repo.insert_token(&new)).await?;
    Ok(minted.body().into_iter().collect())
}
