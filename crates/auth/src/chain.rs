use std::sync::Arc;

use async_trait::async_trait;
use wagate_domain::Principal;

use crate::{AuthError, Authenticator, MAX_TOKEN_LEN};

/// Tries each verifier in order; the first that recognises the token decides.
#[derive(Debug, Clone)]
pub struct AuthenticatorChain {
    verifiers: Vec<Arc<dyn Authenticator>>,
}

impl AuthenticatorChain {
    /// A chain of `verifiers`, asked in this order.
    pub fn new(verifiers: Vec<Arc<dyn Authenticator>>) -> Self {
        Self { verifiers }
    }

    /// Authenticates `token`, rejecting it when no verifier recognises it.
    ///
    /// # Errors
    ///
    /// [`AuthError::Rejected`] for an empty, oversized or unrecognised token
    /// or one its verifier refuses; [`AuthError::Unavailable`] as the
    /// verifier says.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Rejected("empty token".into()));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Rejected(format!(
                "token longer than {MAX_TOKEN_LEN} bytes"
            )));
        }
        for verifier in &self.verifiers {
            if let Some(principal) = verifier.authenticate(token).await? {
                return Ok(principal);
            }
        }
        Err(AuthError::Rejected(
            "no verifier recognises this kind of token".into(),
        ))
    }
}

#[async_trait]
impl Authenticator for AuthenticatorChain {
    async fn authenticate(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        AuthenticatorChain::authenticate(self, token)
            .await
            .map(Some)
    }

    fn is_ready(&self) -> bool {
        self.verifiers.iter().all(|v| v.is_ready())
    }
}
