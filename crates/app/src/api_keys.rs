//! API key use cases.

use time::OffsetDateTime;
use wagate_domain::{
    ApiKey, ApiKeyId, ApiKeyName, ApiKeySecret, Capability, CapabilitySet, DomainError, NewApiKey,
    OrgId, Principal,
};
use wagate_store::mint_api_key;

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
    /// `InvalidArgument` for no capabilities or a past expiry; store errors.
    pub async fn issue_api_key(
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
        let now = self.now();
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
        let (secret, secret_hash) = mint_api_key(self.deps.entropy.as_ref());
        let key = ApiKey {
            id: ApiKeyId::from_ulid(self.new_ulid()),
            org: org.clone(),
            name: req.name,
            capabilities: req.capabilities,
            prefix: secret.display_prefix().to_owned(),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        self.deps
            .api_keys
            .insert_key(&NewApiKey {
                key: key.clone(),
                secret_hash,
            })
            .await?;
        tracing::info!(key = %key.id, org = %org, capabilities = %key.capabilities, "API key created");
        Ok(CreatedApiKey { key, secret })
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
        Ok(self.deps.api_keys.list_keys(org).await?)
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
        self.revoke(Some(&p.org), id).await
    }

    /// Revokes key `id` of any organization (the operator's CLI).
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no such live key.
    pub async fn revoke_any_api_key(&self, id: &ApiKeyId) -> Result<(), AppError> {
        self.revoke(None, id).await
    }

    async fn revoke(&self, org: Option<&OrgId>, id: &ApiKeyId) -> Result<(), AppError> {
        let revoked = self.deps.api_keys.revoke_key(org, id, self.now()).await?;
        self.deps.api_key_cache.invalidate(id);
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
