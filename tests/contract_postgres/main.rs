//! The contract tests of every suite that keeps rows (sessions, API keys,
//! events, webhooks and deliveries, messages, and the routes around them),
//! on PostgreSQL: the same test bodies as `contract` (the files are
//! shared), each app on a database of its own on one throwaway PostgreSQL
//! server per run (wagate-test-postgres), on the fake WhatsApp adapter.
//! Without PostgreSQL installed they are skipped, saying so; with
//! `WAGATE_REQUIRE_POSTGRES=1` (CI) that is a failure.

// Test helpers: a panic is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

// Shared with `contract`; some helpers serve suites not run here.
#[allow(dead_code)]
#[macro_use]
#[path = "../contract/support.rs"]
mod support;

/// The apps of these tests keep their rows in PostgreSQL.
const BACKEND: support::Backend = support::Backend::Postgres;

/// As in `contract`, on the fake adapter only: the live adapter's half
/// runs in `contract`, and its devices' keys on PostgreSQL have tests of
/// their own (crates/whatsapp-live).
macro_rules! on_both_adapters {
    ($($tests:tt)*) => {
        adapter_tests!(fake, spawn_tuned, $($tests)*);
    };
}

#[path = "../contract/api_keys.rs"]
mod api_keys;
#[path = "../contract/auth.rs"]
mod auth;
#[path = "../contract/cluster_caches.rs"]
mod cluster_caches;
#[path = "../contract/contacts.rs"]
mod contacts;
#[path = "../contract/deliveries.rs"]
mod deliveries;
#[path = "../contract/envelope.rs"]
mod envelope;
#[path = "../contract/events.rs"]
mod events;
#[path = "../contract/forwarding.rs"]
mod forwarding;
#[path = "../contract/groups.rs"]
mod groups;
#[path = "../contract/limits.rs"]
mod limits;
#[path = "../contract/messages.rs"]
mod messages;
#[path = "../contract/operations.rs"]
mod operations;
#[path = "../contract/receiver.rs"]
mod receiver;
#[path = "../contract/sessions.rs"]
mod sessions;
#[path = "../contract/webhooks.rs"]
mod webhooks;
