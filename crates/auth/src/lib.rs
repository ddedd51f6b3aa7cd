//! # wagate-auth
//!
//! Turns a bearer token into a [`Principal`] — an organization and what the
//! caller may do in it — or a rejection. Each kind of token has a verifier
//! implementing [`Authenticator`]: [`ApiKeyVerifier`] for `wgk_…` API keys
//! and [`JwtVerifier`] for login JWTs signed by the frontend (checked against
//! its JWKS). [`AuthenticatorChain`] tries them in turn: the first verifier
//! that recognises the token decides. [`RolePolicy`] maps a JWT's role to
//! capabilities.
//!
//! ```no_run
//! use std::sync::Arc;
//! use wagate_auth::{ApiKeyVerifier, Authenticator, AuthenticatorChain};
//! use wagate_domain::SystemClock;
//! use wagate_store::SqliteStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(SqliteStore::connect("sqlite://data/wagate.db").await?);
//! let keys = Arc::new(ApiKeyVerifier::new(store, Arc::new(SystemClock)));
//! let chain = AuthenticatorChain::new(vec![keys]);
//! let principal = chain.authenticate("wgk_…").await; // Err(AuthError::Rejected(_)): malformed
//! # Ok(()) }
//! ```

mod api_key;
mod chain;
mod jwt;
mod policy;

use async_trait::async_trait;
use thiserror::Error;
use wagate_domain::Principal;

pub use api_key::ApiKeyVerifier;
// Key minting lives with the store (the app mints without knowing auth);
// re-exported for embedders who build keys and verifiers together.
pub use chain::AuthenticatorChain;
pub use jwt::{JwksCache, JwksError, JwtConfig, JwtVerifier, KeySet};
pub use policy::RolePolicy;
pub use wagate_store::{ApiKeyCache, Entropy, OsEntropy, hash_secret, mint_api_key};

/// Longest bearer token looked at; longer ones are rejected unparsed.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a token was not accepted.
///
/// The text is for the debug log only: the HTTP answer to every rejection
/// is the same plain 401, so nothing here reaches the caller.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The token is not valid (malformed, unknown, revoked, expired, bad
    /// signature, wrong issuer, …).
    #[error("token rejected: {0}")]
    Rejected(String),
    /// The token could not be checked now (the key store is down).
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

/// A verifier of one kind of bearer token.
#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Checks `token` (the text after `Bearer `).
    ///
    /// Returns `Ok(Some(principal))` when the token is of this verifier's
    /// kind and valid, `Ok(None)` when it is not of this kind (the chain then
    /// asks the next verifier).
    ///
    /// # Errors
    ///
    /// [`AuthError::Rejected`] when the token is of this kind but invalid;
    /// [`AuthError::Unavailable`] when it cannot be checked now.
    async fn authenticate(&self, token: &str) -> Result<Option<Principal>, AuthError>;

    /// Whether the verifier can do its work now (a JWT verifier is not ready
    /// until its key set has loaded once). Readiness probes ask this.
    fn is_ready(&self) -> bool {
        true
    }
}

/// The README's example, compiled (and run) as a doc test so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
