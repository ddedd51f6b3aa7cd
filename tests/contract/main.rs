//! Contract tests of the HTTP API (../shared/spec/api.md) on the real
//! application: with the fake WhatsApp adapter, and (the cases marked so)
//! also with the live adapter against the wa-sim simulator.

// Test helpers: a panic is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

/// Defines each test twice: `fake::name` on the fake adapter and
/// `live::name` on the live adapter against wa-sim, so the contract is
/// checked the same way on both. `async fn name(app, tune)` applies `tune`
/// (a `fn(&mut wagate::Config)`) to the config of both.
macro_rules! on_both_adapters {
    ($( async fn $name:ident($app:ident $(, $tune:expr)?) $body:block )*) => {
        mod fake {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let $app = crate::support::TestApp::spawn_tuned(|_config| {
                        $( let tune: fn(&mut wagate::Config) = $tune; tune(_config); )?
                    })
                    .await;
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
                    let $app = crate::support::TestApp::spawn_live_tuned(|_config| {
                        $( let tune: fn(&mut wagate::Config) = $tune; tune(_config); )?
                    })
                    .await;
                    $body
                }
            )*
        }
    };
}

mod api_keys;
mod auth;
mod contacts;
mod db_copy;
mod deliveries;
mod envelope;
mod events;
mod hardening;
mod jwt;
mod limits;
mod live;
mod messages;
mod operations;
mod receiver;
mod sessions;
mod webhooks;
