//! `grant_type=authorization_code`: a code is spent once, by the client it was issued to, on
//! the service (or, with `global_credentials`, the plugin) that issued it.

use super::error::GrantFailure;
use super::error::OAuthError;
use super::issue::{mint, Grant};
use super::replay::{self, Replay};
use super::token::Outcome;
use super::{pkce, Context, Request};
use crate::model::{now, AuthorizationCode, Credential};
use crate::secrets::token_digest;

pub async fn exchange(
    ctx: &Context<'_>,
    req: &Request,
    client: Credential,
) -> Result<Outcome, GrantFailure> {
    let Some(code) = req.text("code") else {
        return Ok(Outcome::Error(OAuthError::invalid_code()));
    };
    let code_hash = token_digest(code);
    let verifier = req.params.get("code_verifier").cloned();
    let global = ctx.plugin.config.global_credentials;
    let service_id = ctx.service.id.clone();
    let plugin_id = ctx.plugin.id.clone();
    let pkce_required = pkce::required(client.client_type, ctx.plugin.config.pkce);
    let found = ctx
        .store
        .read(move |repo| repo.code_by_hash(&code_hash))
        .await?;
    let Some(code) = found else {
        return Ok(Outcome::Error(OAuthError::invalid_code()));
    };
    if code.used_at.is_some() {
        // Spent already: a lost race, or a leaked code whose first use must be revoked.
        if replay::classify(code.used_at, now(), ctx.replay_grace_s) == Replay::Theft {
            let family = code.id.clone();
            ctx.store
                .write(move |repo| repo.revoke_family(&family))
                .await?;
        }
        return Ok(Outcome::Error(OAuthError::invalid_code()));
    }
    if let Err(e) = check_code(&code, &client, global, &service_id, &plugin_id, now()) {
        return Ok(Outcome::Error(e));
    }
    if let Err(e) =
        pkce::check_exchange(pkce_required, verifier.as_ref(), code.challenge.as_deref())
    {
        return Ok(Outcome::Error(e));
    }
    let grant = Grant {
        service_id: super::issue::service_binding(ctx),
        client: &client,
        authenticated_userid: code.authenticated_userid.clone(),
        scope: code.scope.clone(),
        with_refresh: true,
        family_id: code.id.clone(),
        keep_refresh: None,
    };
    let (new, minted) = mint(ctx, grant).await?;
    let spent = ctx
        .store
        .write(move |repo| {
            if !repo.spend_code(&code.id, new.created_at)? {
                return Ok(false);
            }
            repo.insert_token(&new)?;
            Ok(true)
        })
        .await?;
    if !spent {
        // A concurrent exchange spent it between our read and our write: a lost race.
        return Ok(Outcome::Error(OAuthError::invalid_code()));
    }
    Ok(Outcome::Issued(minted.body()))
}

fn check_code(
    code: &AuthorizationCode,
    client: &Credential,
    global: bool,
    service_id: &str,
    plugin_id: &str,
    now: i64,
) -> Result<(), OAuthError> {
    let expired = code.expires_at < now;
    let wrong_service = !global && code.service_id.as_deref() != Some(service_id);
    let wrong_client = code.credential_id != client.id;
    // Codes from before plugin binding existed carry no plugin id and stay valid.
    let wrong_plugin = global && code.plugin_id.as_deref().is_some_and(|p| p != plugin_id);
    if expired || wrong_service || wrong_client || wrong_plugin {
        return Err(OAuthError::invalid_code());
    }
    Ok(())
}
