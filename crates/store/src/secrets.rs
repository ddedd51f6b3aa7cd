//! API-key secrets: minted from random bytes, kept only as their SHA-256.

use sha2::{Digest, Sha256};
use wagate_domain::{ApiKeyId, ApiKeySecret};

/// A source of secure random bytes (the OS in production).
pub trait Entropy: Send + Sync + std::fmt::Debug {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's CSPRNG (through `rand`'s thread-local generator,
/// seeded from the OS).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut rand::rng(), buf);
    }
}

/// SHA-256 of an API key's secret: the only form in which it is stored.
pub fn hash_secret(secret: &ApiKeySecret) -> [u8; 32] {
    Sha256::digest(secret.expose().as_bytes()).into()
}

/// A new API key secret from 32 random bytes, with its hash.
pub fn mint_api_key(entropy: &dyn Entropy) -> (ApiKeySecret, [u8; 32]) {
    let mut bytes = [0u8; 32];
    entropy.fill(&mut bytes);
    let secret = ApiKeySecret::from_random_bytes(bytes);
    let hash = hash_secret(&secret);
    (secret, hash)
}

/// Forgets cached keys; the API-key use cases call it on revocation so a
/// revoked key stops working on this node at once.
pub trait ApiKeyCache: Send + Sync + std::fmt::Debug {
    /// Drops key `id` from the cache.
    fn invalidate(&self, id: &ApiKeyId);
}
