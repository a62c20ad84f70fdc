//! `grant_type=client_credentials` (when `enable_client_credentials`): a token for the client
//! itself, without a refresh token.

use super::error::GrantFailure;
use super::error::{ErrorCode, OAuthError};
use super::issue::{mint, Grant};
use super::token::Outcome;
use super::{scope, Context, Request};
use crate::model::{ClientType, Credential};
use serde_json::Value;

pub async fn issue(
    ctx: &Context<'_>,
    req: &Request,
    client: Option<Credential>,
) -> Result<Outcome, GrantFailure> {
    let config = &ctx.plugin.config;
    let userid = req
        .params
        .get("authenticated_userid")
        .filter(|v| !v.is_null());
    if userid.is_some() && !super::provision_key_matches(config, req.text("provision_key")) {
        return Ok(Outcome::Error(OAuthError::invalid_provision_key()));
    }
    let Some(client) = client else {
        return Ok(Outcome::Error(OAuthError::invalid_client(false)));
    };
    if client.client_type == ClientType::Public {
        // RFC 6749 §4.4: a client that cannot keep a secret cannot authenticate as itself.
        return Ok(Outcome::Error(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "The client_credentials grant is only for confidential clients",
        )));
    }
    let scope = match scope::validate(config, req.params.get("scope")) {
        Ok(scope) => scope,
        Err(e) => return Ok(Outcome::Error(e)),
    };
    let grant = Grant {
        service_id: super::issue::service_binding(ctx),
        client: &client,
        authenticated_userid: userid.and_then(Value::as_str).map(str::to_owned),
        scope,
        with_refresh: false,
        family_id: crate::model::new_id(),
        keep_refresh: None,
    };
    let (new, minted) = mint(ctx, grant).await?;
    ctx.store.write(move |repo| repo.insert_token(&new)).await?;
    Ok(Outcome::Issued(minted.body()))
}
