//! JWTs signed by the token-service (issue 21, docs/jwt-access-tokens.md): the signing keys it
//! manages ([`keys`], what their times mean in [`ring`]) and [`Signing`], what the grants sign
//! with and what the JWKS publishes.

pub mod keys;
pub mod ring;
mod signer;

pub use keys::{Alg, KeyError};
pub use signer::{PublicKey, Signing, SigningError, SigningSettings, DEFAULT_PUBLISH_DELAY_S};

#[cfg(test)]
mod tests;
