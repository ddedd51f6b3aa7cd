//! Contract tests of the HTTP API (../shared/spec/api.md) on the real
//! application: with the fake WhatsApp adapter, and (the cases marked so)
//! also with the live adapter against the wa-sim simulator.

// Test helpers: a panic is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

/// Defines each test twice: `fake::name` on the fake adapter and
/// `live::name` on the live adapter against wa-sim, so the contract is
/// checked the same way on both.
macro_rules! on_both_adapters {
    ($( async fn $name:ident($app:ident) $body:block )*) => {
        mod fake {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let $app = crate::support::TestApp::spawn().await;
                    $body
                }
            )*
        }
        mod live {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let $app = crate::support::TestApp::spawn_live().await;
                    $body
                }
            )*
        }
    };
}

mod api_keys;
mod auth;
mod contacts;
mod deliveries;
mod envelope;
mod events;
mod jwt;
mod limits;
mod live;
mod operations;
mod receiver;
mod sessions;
mod webhooks;
