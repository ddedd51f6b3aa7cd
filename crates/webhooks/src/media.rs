//! Downloading media a message is to carry from a URL the caller gave, under
//! the same SSRF rule as webhook deliveries.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use wagate_domain::WebhookUrl;

use crate::http::{PolicyResolver, refusal};
use crate::targets::{Host, client_host};
use crate::{AddressPolicy, TargetRefused};

/// Why media could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FetchError {
    /// The address is not allowed (the SSRF rule).
    #[error("refused: {0}")]
    Refused(TargetRefused),
    /// The body is larger than the limit.
    #[error("the media is larger than {0} bytes")]
    TooLarge(u64),
    /// No complete answer within the time limit.
    #[error("the download timed out")]
    Timeout,
    /// Anything else: connection failed, a non-2xx answer, ….
    #[error("the download failed: {0}")]
    Failed(String),
}

/// Downloads media from a URL.
#[async_trait]
pub trait MediaFetcher: Send + Sync + std::fmt::Debug {
    /// The body of a `GET url` (2xx only; redirects are not followed), at
    /// most `max_bytes` long, and its `Content-Type` when it sent one.
    ///
    /// # Errors
    ///
    /// [`FetchError`] saying why; its text is safe to show the caller.
    async fn fetch(
        &self,
        url: &WebhookUrl,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, Option<String>), FetchError>;
}

/// [`MediaFetcher`] on reqwest: the SSRF rule checked against the address
/// connected to (as [`crate::HttpTransport`]), no proxy, no redirects, one
/// time limit for the whole download, the body read up to the size limit.
#[derive(Debug, Clone)]
pub struct HttpMediaFetcher {
    client: reqwest::Client,
    policy: AddressPolicy,
}

impl HttpMediaFetcher {
    /// A fetcher under `policy`, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`FetchError::Failed`] when the HTTP client cannot be built.
    pub fn new(policy: AddressPolicy, timeout: Duration) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .dns_resolver(Arc::new(PolicyResolver::new(policy)))
            .user_agent(concat!("wagate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Failed(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { client, policy })
    }
}

fn fetch_error(e: &reqwest::Error) -> FetchError {
    if let Some(r) = refusal(e) {
        FetchError::Refused(r)
    } else if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Failed("could not connect".into())
    }
}

#[async_trait]
impl MediaFetcher for HttpMediaFetcher {
    async fn fetch(
        &self,
        url: &WebhookUrl,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, Option<String>), FetchError> {
        if let (Host::Ip(ip), _) = client_host(url).map_err(FetchError::Refused)? {
            self.policy.check_ip(ip).map_err(FetchError::Refused)?;
        }
        let mut response = self
            .client
            .get(url.as_str())
            .send()
            .await
            .map_err(|e| fetch_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Failed(format!(
                "the server answered {}",
                status.as_u16()
            )));
        }
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(FetchError::TooLarge(max_bytes));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fetch_error(&e))? {
            if (body.len() + chunk.len()) as u64 > max_bytes {
                return Err(FetchError::TooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, content_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback server answering every request with `answer`.
    async fn server(answer: Vec<u8>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket.write_all(&answer).await;
                });
            }
        });
        addr
    }

    fn ok(body: &[u8]) -> Vec<u8> {
        let mut a = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        a.extend_from_slice(body);
        a
    }

    #[tokio::test]
    async fn downloads_within_the_limit_and_under_the_ssrf_rule() {
        let addr = server(ok(b"pngbytes")).await;
        let url = WebhookUrl::parse(&format!("http://{addr}/a.png")).unwrap();
        let open = HttpMediaFetcher::new(AddressPolicy::new(true), Duration::from_secs(5)).unwrap();
        assert_eq!(
            open.fetch(&url, 100).await.unwrap(),
            (b"pngbytes".to_vec(), Some("image/png".into()))
        );
        assert_eq!(open.fetch(&url, 3).await, Err(FetchError::TooLarge(3)));
        let strict =
            HttpMediaFetcher::new(AddressPolicy::new(false), Duration::from_secs(5)).unwrap();
        assert!(matches!(
            strict.fetch(&url, 100).await,
            Err(FetchError::Refused(_))
        ));
        let named = WebhookUrl::parse(&format!("http://localhost:{}/a.png", addr.port())).unwrap();
        assert!(matches!(
            strict.fetch(&named, 100).await,
            Err(FetchError::Refused(_))
        ));
    }

    #[tokio::test]
    async fn non_2xx_and_redirects_fail() {
        let addr = server(
            b"HTTP/1.1 302 Found\r\nlocation: http://example.com/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_vec(),
        )
        .await;
        let url = WebhookUrl::parse(&format!("http://{addr}/a.png")).unwrap();
        let open = HttpMediaFetcher::new(AddressPolicy::new(true), Duration::from_secs(5)).unwrap();
        assert!(matches!(
            open.fetch(&url, 100).await,
            Err(FetchError::Failed(_))
        ));
    }
}
