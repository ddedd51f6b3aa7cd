//! Contract tests of the HTTP API (../shared/spec/api.md) on the real
//! application with the fake WhatsApp adapter.

mod api_keys;
mod auth;
mod contacts;
mod envelope;
mod jwt;
mod operations;
mod sessions;
