//! Route handlers, one module per area of the API.

pub(crate) mod api_keys;
pub(crate) mod contacts;
pub(crate) mod conversation;
pub(crate) mod events;
pub(crate) mod groups;
pub(crate) mod messages;
pub(crate) mod ops;
pub(crate) mod polls;
pub(crate) mod presence;
pub(crate) mod receipts;
pub(crate) mod sessions;
pub(crate) mod webhooks;
