//! `grant_type=password` (when `enable_password_grant`). As in Kong, the user's password is
//! checked by the application's own login, which then calls us with the `provision_key` and
//! the `authenticated_userid` it vouches for.

use super::error::GrantFailure;
use super::error::OAuthError;
use super::issue::{mint, Grant};
use super::token::Outcome;
use super::{scope, Context, Request};
use crate::model::Credential;

pub async fn issue(
    ctx: &Context<'_>,
    req: &Request,
    client: Credential,
) -> Result<Outcome, GrantFailure> {
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
    let scope = match scope::validate(config, req.params.get("scope")) {
        Ok(scope) => scope,
        Err(e) => return Ok(Outcome::Error(e)),
    };
    let grant = Grant {
        service_id: super::issue::service_binding(ctx),
        client: &client,
        authenticated_userid: Some(userid.to_string()),
        scope,
        with_refresh: true,
        family_id: crate::model::new_id(),
        keep_refresh: None,
    };
    let (new, minted) = mint(ctx, grant).await?;
    ctx.store.write(move |repo| repo.insert_token(&new)).await?;
    Ok(Outcome::Issued(minted.body()))
}
