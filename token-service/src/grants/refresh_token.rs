//! `grant_type=refresh_token`: rotation by default (the old pair dies in the same commit and a
//! replay of the old refresh token, past the race window, revokes the family), or in-place
//! renewal with `reuse_refresh_token`. Either way the new tokens keep the service binding of
//! the token they replace.

use super::error::GrantFailure;
use super::error::{ErrorCode, OAuthError};
use super::issue::{mint, renew_in_place, Grant, Minted};
use super::replay::{self, Replay};
use super::token::Outcome;
use super::{scope, Context, Request};
use crate::model::{now, AccessTokenFormat, Credential, Token};
use crate::secrets::token_digest;
use crate::store::{Repo, StoreError};

fn invalid_refresh_token() -> OAuthError {
    OAuthError::invalid_request("Invalid refresh_token")
}

pub async fn refresh(
    ctx: &Context<'_>,
    req: &Request,
    client: Credential,
) -> Result<Outcome, GrantFailure> {
    let Some(presented) = req.text("refresh_token").map(str::to_owned) else {
        return Ok(Outcome::Error(invalid_refresh_token()));
    };
    let hash = token_digest(&presented);
    let lookup_hash = hash.clone();
    let found = ctx
        .store
        .read(move |repo| repo.token_by_refresh_hash(&lookup_hash))
        .await?;
    let Some(token) = found else {
        let grace_s = ctx.replay_grace_s;
        ctx.store
            .write(move |repo| revoke_if_stolen(repo, &hash, grace_s))
            .await?;
        return Ok(Outcome::Error(invalid_refresh_token()));
    };
    if let Err(e) = check_token(ctx, &token, &client) {
        return Ok(Outcome::Error(e));
    }
    let jwt = ctx.plugin.config.access_token_format == AccessTokenFormat::Jwt;
    // The grant a new row is minted from: the presented token's owner, scope and family.
    let successor = |keep_refresh| Grant {
        service_id: token.service_id.clone(),
        client: &client,
        authenticated_userid: token.authenticated_userid.clone(),
        scope: token.scope.clone(),
        with_refresh: true,
        family_id: token.family_id.clone(),
        keep_refresh,
    };
    let minted = if ctx.plugin.config.reuse_refresh_token && jwt {
        // A new row (a new jti) that keeps the refresh token; the old JWT goes with its row.
        let (new, minted) = mint(ctx, successor(Some(presented))).await?;
        let renewed = ctx
            .store
            .write(move |repo| {
                replace_if_current(repo, &token, |r| r.renew_token(&token, &new).map(drop))
            })
            .await?;
        renewed.then_some(minted)
    } else if ctx.plugin.config.reuse_refresh_token {
        let (renewed, minted) = renew_in_place(ctx, &token, presented);
        let updated = ctx
            .store
            .write(move |repo| replace_if_current(repo, &token, |r| r.update_token(&renewed)))
            .await?;
        updated.then_some(minted)
    } else {
        let (new, minted) = mint(ctx, successor(None)).await?;
        let rotated = ctx
            .store
            .write(move |repo| {
                replace_if_current(repo, &token, |r| r.rotate_token(&token, &new).map(drop))
            })
            .await?;
        rotated.then_some(minted)
    };
    Ok(match minted {
        Some(minted) => Outcome::Issued(Minted::body(&minted)),
        // A concurrent refresh won the race: this one must not mint a second pair.
        None => Outcome::Error(invalid_refresh_token()),
    })
}

/// A refresh token that matches no live row: if it was rotated away, a replay after the race
/// window means it was copied, and the whole grant is revoked (see `replay`).
fn revoke_if_stolen(repo: &Repo<'_>, hash: &str, grace_s: i64) -> Result<(), StoreError> {
    let Some(retired) = repo.retired_refresh(hash)? else {
        return Ok(());
    };
    if replay::classify(retired.retired_at, now(), grace_s) == Replay::Theft {
        repo.revoke_family(&retired.family_id)?;
    }
    Ok(())
}

/// Runs `change` only if the row is still exactly as read (no concurrent refresh, on this
/// replica or another: the row stays locked until the write commits).
fn replace_if_current(
    repo: &Repo<'_>,
    token: &Token,
    change: impl FnOnce(&Repo<'_>) -> Result<(), StoreError>,
) -> Result<bool, StoreError> {
    let current = repo.token_for_update(&token.id)?;
    if current.as_ref() != Some(token) {
        return Ok(false);
    }
    match change(repo) {
        Ok(()) => Ok(true),
        // Gone meanwhile: another writer's rotation won.
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

fn check_token(ctx: &Context<'_>, token: &Token, client: &Credential) -> Result<(), OAuthError> {
    let config = &ctx.plugin.config;
    if token.row_expired(now()) {
        return Err(invalid_refresh_token());
    }
    if !config.global_credentials && token.service_id.as_deref() != Some(ctx.service.id.as_str()) {
        return Err(invalid_refresh_token());
    }
    if token.credential_id != client.id {
        return Err(OAuthError::invalid_client(false));
    }
    if !scope::still_offered(config, token.scope.as_deref()) {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "Scope mismatch"));
    }
    Ok(())
}
