//! Route handlers, one module per area of the API.

pub(crate) mod api_keys;
pub(crate) mod contacts;
pub(crate) mod events;
pub(crate) mod messages;
pub(crate) mod ops;
pub(crate) mod sessions;
pub(crate) mod webhooks;
