//! API key use cases.

use std::sync::Arc;

use time::OffsetDateTime;
use wagate_domain::{
    ApiKey, ApiKeyId, ApiKeyName, ApiKeySecret, Capability, CapabilitySet, Clock, DomainError,
    NewApiKey, OrgId, Principal,
};
use wagate_store::{ApiKeyCache, ApiKeyStore, Entropy, mint_api_key};

use crate::gateway::UlidSource;
use crate::{AppError, Gateway};

/// What a caller asks for when creating a key.
#[derive(Debug, Clone)]
pub struct NewApiKeyRequest {
    /// Its label.
    pub name: ApiKeyName,
    /// What it may do; must not be empty.
    pub capabilities: CapabilitySet,
    /// When it stops working, if ever; must be in the future.
    pub expires_at: Option<OffsetDateTime>,
}

/// A key just created: its record and its secret, shown this once.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The stored record.
    pub key: ApiKey,
    /// The secret (`Debug` does not print it).
    pub secret: ApiKeySecret,
}

impl Gateway {
    /// Creates a key in the caller's organization. A key cannot get a
    /// capability its creator lacks.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `admin`, or naming (in `required`) the first
    /// requested capability the caller lacks; `InvalidArgument` for no
    /// capabilities or a past expiry.
    pub async fn create_api_key(
        &self,
        p: &Principal,
        req: NewApiKeyRequest,
    ) -> Result<CreatedApiKey, AppError> {
        Self::require(p, Capability::Admin)?;
        if let Some(required) = p.capabilities.missing_from(req.capabilities).iter().next() {
            return Err(AppError::Forbidden { required });
        }
        // A key made by an expiring key must not outlive it.
        if let Some(limit) = p.credential_expires_at
            && req.expires_at.is_none_or(|t| t > limit)
        {
            return Err(DomainError::new(
                "expiresAt",
                "must be set, and no later than the expiry of the key making this request",
            )
            .into());
        }
        self.issue_api_key(&p.org, req).await
    }

    /// Creates a key in `org` with no caller to check (the operator's CLI).
    ///
    /// # Errors
    ///
    /// As [`ApiKeyAdmin::issue`].
    pub async fn issue_api_key(
        &self,
        org: &OrgId,
        req: NewApiKeyRequest,
    ) -> Result<CreatedApiKey, AppError> {
        self.keys.issue(org, req).await
    }

    /// The caller's organization's keys (never their secrets).
    ///
    /// # Errors
    ///
    /// `Forbidden` without `admin`; store errors.
    pub async fn list_api_keys(&self, p: &Principal) -> Result<Vec<ApiKey>, AppError> {
        Self::require(p, Capability::Admin)?;
        self.api_keys_of(&p.org).await
    }

    /// `org`'s keys, with no caller to check (the operator's CLI).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn api_keys_of(&self, org: &OrgId) -> Result<Vec<ApiKey>, AppError> {
        self.keys.keys_of(org).await
    }

    /// Revokes one of the caller's organization's keys; it stops working on
    /// this node at once.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `admin`; `NotFound` when the organization has no
    /// such live key.
    pub async fn revoke_api_key(&self, p: &Principal, id: &ApiKeyId) -> Result<(), AppError> {
        Self::require(p, Capability::Admin)?;
        self.keys.revoke(Some(&p.org), id).await
    }

    /// Revokes key `id` of any organization (the operator's CLI).
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no such live key.
    pub async fn revoke_any_api_key(&self, id: &ApiKeyId) -> Result<(), AppError> {
        self.keys.revoke(None, id).await
    }
}

/// API keys administered by the operator: creating, listing and revoking
/// keys with no caller to check. It needs only the key store, so the
/// `wagate api-key` commands run it without the rest of the gateway (no
/// WhatsApp adapter is started for them); the [`Gateway`] runs its key use
/// cases through one too.
#[derive(Debug)]
pub struct ApiKeyAdmin {
    store: Arc<dyn ApiKeyStore>,
    cache: Arc<dyn ApiKeyCache>,
    entropy: Arc<dyn Entropy>,
    clock: Arc<dyn Clock>,
    ids: UlidSource,
}

impl ApiKeyAdmin {
    /// Administration of the keys in `store`; `cache` is told of revoked
    /// keys.
    pub fn new(
        store: Arc<dyn ApiKeyStore>,
        cache: Arc<dyn ApiKeyCache>,
        entropy: Arc<dyn Entropy>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            cache,
            entropy,
            clock,
            ids: UlidSource::default(),
        }
    }

    /// Creates a key in `org`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for no capabilities or a past expiry; store errors.
    pub async fn issue(
        &self,
        org: &OrgId,
        req: NewApiKeyRequest,
    ) -> Result<CreatedApiKey, AppError> {
        if req.capabilities.is_empty() {
            return Err(DomainError::new(
                "capabilities",
                "must name at least one of read, send, manage, admin",
            )
            .into());
        }
        let now = self.clock.now();
        if req.expires_at.is_some_and(|t| t <= now) {
            return Err(DomainError::new("expiresAt", "must be in the future").into());
        }
        let expires_at = req
            .expires_at
            .map(|t| {
                t.checked_to_offset(time::UtcOffset::UTC)
                    .ok_or_else(|| DomainError::new("expiresAt", "out of range"))
            })
            .transpose()?;
        let (secret, secret_hash) = mint_api_key(self.entropy.as_ref());
        let key = ApiKey {
            id: ApiKeyId::from_ulid(self.ids.next(now)),
            org: org.clone(),
            name: req.name,
            capabilities: req.capabilities,
            prefix: secret.display_prefix().to_owned(),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        self.store
            .insert_key(&NewApiKey {
                key: key.clone(),
                secret_hash,
            })
            .await?;
        tracing::info!(key = %key.id, org = %org, capabilities = %key.capabilities, "API key created");
        Ok(CreatedApiKey { key, secret })
    }

    /// `org`'s live keys (never their secrets).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn keys_of(&self, org: &OrgId) -> Result<Vec<ApiKey>, AppError> {
        Ok(self.store.list_keys(org).await?)
    }

    /// Revokes key `id` (of `org`, when given).
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no such live key; store errors.
    pub async fn revoke(&self, org: Option<&OrgId>, id: &ApiKeyId) -> Result<(), AppError> {
        let revoked = self.store.revoke_key(org, id, self.clock.now()).await?;
        self.cache.invalidate(id);
        match revoked {
            Some(key) => {
                tracing::info!(key = %id, org = %key.org, "API key revoked");
                Ok(())
            }
            None => Err(AppError::NotFound {
                what: "API key not found",
                reason: None,
            }),
        }
    }
}
