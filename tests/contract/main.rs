//! Contract tests of the HTTP API (../shared/spec/api.md) on the real
//! application: with the fake WhatsApp adapter, and (the cases marked so)
//! also with the live adapter against the wa-sim simulator.

// Test helpers: a panic is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

mod api_keys;
mod auth;
mod contacts;
mod envelope;
mod jwt;
mod live;
mod operations;
mod sessions;
