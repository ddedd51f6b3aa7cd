//! Contract tests of the HTTP API (../shared/spec/api.md) on the real
//! application: with the fake WhatsApp adapter, and (the cases marked so)
//! also with the live adapter against the wa-sim simulator.

// Test helpers: a panic is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[macro_use]
mod support;

/// The apps of these tests keep their rows in SQLite (`contract_postgres`
/// runs the store-backed suites again on PostgreSQL).
const BACKEND: support::Backend = support::Backend::Sqlite;

/// Defines each test twice: `fake::name` on the fake adapter and
/// `live::name` on the live adapter against wa-sim, so the contract is
/// checked the same way on both. `async fn name(app, tune)` applies `tune`
/// (a `fn(&mut wagate::Config)`) to the config of both.
macro_rules! on_both_adapters {
    ($($tests:tt)*) => {
        adapter_tests!(fake, spawn_tuned, $($tests)*);
        adapter_tests!(live, spawn_live_tuned, $($tests)*);
    };
}

mod api_keys;
mod auth;
mod contacts;
mod conversation;
mod db_copy;
mod deliveries;
mod envelope;
mod events;
mod forwarding;
mod groups;
mod hardening;
mod jwt;
mod limits;
mod live;
mod live_groups;
mod messages;
mod operations;
mod polls;
mod postgres_live;
mod presence;
mod raw_http;
mod receiver;
mod sessions;
mod webhooks;
