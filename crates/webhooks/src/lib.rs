//! # wagate-webhooks
//!
//! How wagate's events reach a customer's URL. Two ports —
//! [`WebhookTargets`] (may this URL receive deliveries?) and
//! [`WebhookTransport`] (send one signed delivery) — and their
//! implementations: [`AddressPolicy`] (the SSRF rule), [`HttpTransport`]
//! (reqwest, no redirects, the SSRF rule again against the address it
//! connects to), and Standard Webhooks signing ([`signed_headers`]).

use async_trait::async_trait;
use thiserror::Error;
use wagate_domain::WebhookUrl;

mod http;
mod media;
mod signing;
mod targets;

pub use http::{HttpTransport, MAX_ANSWER_BODY};
pub use media::{FetchError, HttpMediaFetcher, MediaFetcher};
pub use signing::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SigningError, sign_one, signature,
    signed_headers,
};
pub use targets::{AddressPolicy, is_public};

/// Why a target URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct TargetRefused(pub String);

/// Decides whether a URL may receive deliveries (the SSRF rule).
#[async_trait]
pub trait WebhookTargets: Send + Sync + std::fmt::Debug {
    /// `Ok` when `url`'s host may receive deliveries.
    ///
    /// # Errors
    ///
    /// [`TargetRefused`] saying why (a private address, a name that does not
    /// resolve, …); the message is safe to show the caller.
    async fn check(&self, url: &WebhookUrl) -> Result<(), TargetRefused>;
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The start of the body: at most [`MAX_ANSWER_BODY`] bytes (the rest
    /// is not read).
    pub body_prefix: Vec<u8>,
}

/// Why a delivery got no answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// The target's address is not allowed (the SSRF rule, checked against
    /// the address about to be connected to).
    #[error("target refused: {0}")]
    Refused(TargetRefused),
    /// No answer within the timeout (`webhooks.timeout`).
    #[error("timed out")]
    Timeout,
    /// The connection could not be made or broke (DNS, refused, reset, TLS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// Anything else (a URL the HTTP client cannot use, …).
    #[error("{0}")]
    Other(String),
}

/// Sends one delivery: a POST of `body` (JSON) with `headers` to `url`.
/// Any status is an [`Answer`]; deciding what it means is the caller's.
#[async_trait]
pub trait WebhookTransport: Send + Sync + std::fmt::Debug {
    /// POSTs `body` to `url` with `headers` (name, value) and
    /// `Content-Type: application/json`; redirects are not followed.
    ///
    /// # Errors
    ///
    /// [`SendError`] when no answer came.
    async fn send(
        &self,
        url: &WebhookUrl,
        headers: &[(&'static str, String)],
        body: &str,
    ) -> Result<Answer, SendError>;
}

/// README examples, compiled.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
