//! Request bodies larger than the common 64 KiB (a message send carrying
//! media, up to `messages.max_media_bytes` base64-encoded): how many are
//! read at once. Such a body is held in memory while it is parsed and
//! stored, so their number bounds that memory: together at most about
//! [`BUDGET`] bytes of them, and one organization at most a quarter of
//! them, so one tenant's uploads never take every place. One over either
//! cap is refused at once (429, `Retry-After`), before its body is read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::web;
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wagate_domain::OrgId;

use crate::{ApiError, MAX_BODY};

/// Bytes of large bodies read at once, all organizations together (at
/// least two bodies, whatever their limit).
pub(crate) const BUDGET: usize = 256 * 1024 * 1024;

/// The places for large bodies.
#[derive(Debug)]
pub(crate) struct LargeBodies {
    all: Arc<Semaphore>,
    per_org: usize,
    orgs: Mutex<HashMap<OrgId, Arc<Semaphore>>>,
}

/// One large body being read and handled; its place is given back when
/// dropped.
#[derive(Debug)]
pub(crate) struct Place {
    _all: OwnedSemaphorePermit,
    _org: OwnedSemaphorePermit,
}

/// Which cap refused a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// The organization has its share in flight.
    Org,
    /// Every place is taken.
    All,
}

impl LargeBodies {
    /// Places for bodies of up to `limit` bytes each.
    pub(crate) fn new(limit: usize) -> Self {
        let all = (BUDGET / limit.max(1)).max(2);
        Self {
            all: Arc::new(Semaphore::new(all)),
            per_org: (all / 4).max(1),
            orgs: Mutex::default(),
        }
    }

    /// Places free in all, and per organization.
    #[cfg(test)]
    fn caps(&self) -> (usize, usize) {
        (self.all.available_permits(), self.per_org)
    }

    /// A place for one more large body of `org`, if there is one now.
    pub(crate) fn take(&self, org: &OrgId) -> Result<Place, Full> {
        let org_places = {
            let mut orgs = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
            // Only organizations with a body in flight are kept (a held
            // place holds its semaphore too).
            orgs.retain(|_, s| Arc::strong_count(s) > 1);
            orgs.entry(org.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_org)))
                .clone()
        };
        let org_place = org_places.try_acquire_owned().map_err(|_| Full::Org)?;
        let place = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full::All)?;
        Ok(Place {
            _all: place,
            _org: org_place,
        })
    }
}

/// Whether a body of `content_length` (unknown: chunked) needs a place.
pub(crate) fn is_large(content_length: Option<usize>) -> bool {
    content_length.is_none_or(|n| n > MAX_BODY)
}

/// The request's `Content-Length`, if it has a usable one.
pub(crate) fn content_length(req: &actix_web::HttpRequest) -> Option<usize> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads the whole body, refusing it (`too_large`) as soon as it would pass
/// `limit` bytes; sized once from `expected` (the `Content-Length`).
pub(crate) async fn read(
    mut payload: impl futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>
    + Unpin,
    limit: usize,
    expected: Option<usize>,
    too_large: impl Fn() -> ApiError,
) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::with_capacity(expected.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::for_status(actix_web::ResponseError::status_code(&e)))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_in_all_and_per_organization() {
        // Bodies of a quarter of the budget: 4 places, 1 per organization.
        let bodies = LargeBodies::new(BUDGET / 4);
        assert_eq!(bodies.caps(), (4, 1));
        let org = |s: &str| OrgId::parse(s).unwrap();
        let a = bodies.take(&org("a")).unwrap();
        assert_eq!(bodies.take(&org("a")).unwrap_err(), Full::Org);
        let held: Vec<_> = ["b", "c", "d"]
            .iter()
            .map(|o| bodies.take(&org(o)).unwrap())
            .collect();
        assert_eq!(bodies.take(&org("e")).unwrap_err(), Full::All);
        drop(a);
        let a = bodies.take(&org("a")).unwrap();
        drop((a, held));
        // Nothing in flight: nothing kept per organization.
        let _f = bodies.take(&org("f")).unwrap();
        assert_eq!(bodies.orgs.lock().unwrap().len(), 1);
        // However large the limit, two bodies at least.
        assert_eq!(LargeBodies::new(usize::MAX).caps(), (2, 1));
        assert!(is_large(None) && is_large(Some(MAX_BODY + 1)) && !is_large(Some(MAX_BODY)));
    }
}
