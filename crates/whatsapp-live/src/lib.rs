//! # wagate-whatsapp-live
//!
//! wagate's live WhatsApp adapter: [`LiveWhatsApp`] implements
//! [`wagate_whatsapp_port::WhatsAppPort`] on the `whatsapp-rust` crate. It is
//! the only crate of the workspace that knows whatsapp-rust; every library
//! error becomes a [`wagate_whatsapp_port::WhatsAppError`] and no library
//! type appears in its public API.
//!
//! ## How it works
//!
//! - **One client per session.** `connect` builds a whatsapp-rust client
//!   (`Bot`) on the session's device and starts a *runner* task that owns it.
//!   The client's events are registered through a raw `EventHandler` (run
//!   inline, in order) that only queues them; the runner maps each into a
//!   [`wagate_whatsapp_port::SessionEvent`] and awaits the publish, so events
//!   of one session are recorded in the order they happened. Sessions never
//!   wait on each other: lifecycle calls of one session are serialized by a
//!   per-session lock, contact calls take no lock at all, and no lock shared
//!   by sessions is held across an await.
//! - **Pairing.** Every QR code the client emits is kept with its expiry
//!   (60 s for the first, 20 s for the next, as whatsapp-rust reports) and
//!   published as `Pairing`; `qr` returns the current one. `pairing_code`
//!   uses whatsapp-rust's phone-number pairing (reusing a still-valid code
//!   for the same number). `PairSuccess` → `Connecting`; `Connected` →
//!   `Connected { jid, push_name }` with the account's own bare JID.
//! - **Reconnecting.** whatsapp-rust's own reconnect loop is switched off:
//!   each run of the client is one connect attempt, and the runner decides
//!   what follows — at once after pairing (WhatsApp closes the stream with
//!   515 and expects a login), otherwise after an exponential backoff with
//!   jitter ([`ReconnectPolicy`], [`Jitter`]; injectable through
//!   [`LiveOptions`]). A lost connection is published as `Disconnected`
//!   with `unreachable`; so is a server that cannot be reached at all (which
//!   the library would retry silently; the transport is watched to say
//!   why), once per outage. Events that end an attempt for good stop the
//!   runner: `LoggedOut` (keys erased, `LoggedOut { logged_out_by_phone }`),
//!   `TemporaryBan`, `ClientOutdated`, `StreamReplaced` and a final
//!   `ConnectFailure` (`Disconnected` with their codes; the link is kept),
//!   `PairError`, `PairingQrCodesExhausted` and `QrScannedWithoutMultidevice`
//!   (`LoggedOut { pairing_failed }`: the device was never linked).
//! - **Logins take turns.** A pass that logs in (the device has keys) first
//!   takes one of [`LiveOptions::logins_at_once`] places, shared by every
//!   session, and gives it back once connected or when the pass ends; the
//!   others wait as `connecting`, in order. Thousands of logins at once (a
//!   restart, a failover) would otherwise queue every task of the process,
//!   API calls included, behind them. A pairing takes no place.
//! - **Keys.** One store ([`LiveConfig::store`]) holds every device,
//!   opened once per process: a SQLite file created by whatsapp-rust's
//!   `SqliteStore` and then used through connections of our own (one
//!   writer, two WAL readers and one for API calls, shared by all sessions,
//!   each statement run on the task that asks), or a PostgreSQL database (whatsapp-rust's tables in
//!   its `whatsapp` schema, one pool), so that a session's keys are usable
//!   from whichever process connects it next. Each client gets a thin
//!   handle, the store plus its device id, that implements whatsapp-rust's
//!   storage traits for that device with SQL written once for both
//!   databases, in whatsapp-rust's own encodings (a test runs one script
//!   against whatsapp-rust's `SqliteStore` and the handle on each database
//!   and holds them to the same answers and rows); where a trait's default
//!   would read, modify and write, one conditional statement does it
//!   atomically. No connection, pool or migration check per session. The
//!   session → device mapping is our own table (`wagate_live_sessions`) in
//!   the same store rather than a function of the
//!   session id: device ids are small integers, a ULID does not fit and a
//!   hash could collide. A session gets the next free id on its first
//!   connect and keeps it until `remove`. Erasing keys deletes the device's
//!   rows from every table with a `device_id` column, in one transaction.
//!   `connect` trusts the key store over the caller's `linked_as`: stored
//!   keys log in; no keys and no `linked_as` pair; `linked_as` with no keys
//!   publishes `LoggedOut { internal }` (the link cannot be used).
//! - **Version.** A pinned [`LiveConfig::version`] is given to every client.
//!   Otherwise one process-wide fetch of WhatsApp Web's current version
//!   (cached a day, failures held 30 s, the last good version kept when a
//!   refetch fails) is written into each device as freshly fetched before
//!   every connect attempt, so no client fetches on its own.
//! - **Contacts.** Profile pictures run `ProfilePictureSpec` through
//!   `Client::execute`, so 404 becomes `NotFound(not_set)` and 401
//!   `NotFound(hidden)`. The trusted-contact token step of
//!   `get_profile_picture` is kept (a stored, unexpired token for the
//!   contact's LID is attached) with two differences: whatsapp-rust gates it
//!   on a server A/B flag it does not expose (we attach whenever we hold a
//!   token), and token expiry uses the default windows rather than
//!   server-tuned ones. About is a usync status query (its LID answer is
//!   remembered). Block and unblock learn a phone number's LID (or a LID's
//!   phone number) with a usync query first when the client does not know
//!   it. The blocklist gives each entry's phone-number JID when known.
//! - **Messaging.** `send_message` builds the protobuf message (text as
//!   `conversation`, or `extendedTextMessage` with a context naming the
//!   quoted id for a reply; media encrypted and uploaded with the client's
//!   `upload`, then an image, video, audio — `ptt` for a voice note — or
//!   document message) and sends it with `SendOptions::with_message_id`, so
//!   a retry reuses the id. A phone number the client knows no LID for is
//!   checked once with a usync existence query (`NotOnWhatsApp`).
//!   Reactions go through `Client::send_reaction` (in a group the key
//!   names the target's author as `participant`), read receipts through
//!   `mark_as_read` (in a group naming the member who wrote them), downloads through `download_from_params` on the
//!   decoded [`wagate_whatsapp_port::MediaRef`] (version 1: `[1, kind,
//!   file length u64 LE]` then direct path, media key, file enc SHA-256,
//!   file SHA-256, each `u16` LE length-prefixed; a 404/410/401/403 from the
//!   media server is `NotFound`). Inbound: each client has an
//!   `InboundDurabilityHook` that converts the batch (text, the four media
//!   kinds, reactions; `from_me` for the account's own sends from its
//!   phone; groups, broadcasts, status and protocol messages skipped) and
//!   awaits `record_messages`; an error withholds the acks, so WhatsApp
//!   delivers the batch again on the next connect. Server acks of
//!   `message` stanzas become `MessageStatus` `Sent` (or `Failed` with the
//!   nack code), contacts' delivery/read/played receipts `Delivered`/
//!   `Read`/`Played` (chats by phone number when the client knows it).
//!   A contact's presence and chat state (whatsapp-rust's `Presence` and
//!   `ChatPresence` events: typing, recording as `composing` with
//!   `media="audio"`, paused) become `Presence` and `ChatState`, people
//!   again by phone number when known.
//!   All sessions share one HTTP client (one connection pool); against a
//!   custom server reached over `ws://` (or any custom server with the
//!   `simulator` feature) media requests go to that server instead of
//!   WhatsApp's CDN hosts.
//!
//! ## Features
//!
//! `simulator` enables whatsapp-rust's `danger-skip-cert-chain-verify`, so
//! the client accepts a server certificate chain not signed by WhatsApp (a
//! local simulator). Never on by default; [`SKIPS_CERT_CHAIN_VERIFY`] tells
//! whether this build has it.

mod config;
mod conversation;
mod devices;
mod groups;
mod inbound;
mod live;
mod mapping;
mod media;
mod messages;
mod presence;
mod runner;
mod sql;
mod store;
mod transport;
mod version;
mod votes;
mod wire;

pub use config::{
    DEFAULT_LOGINS_AT_ONCE, InvalidVersion, Jitter, KeyStoreLocation, LiveConfig, LiveOptions,
    ReconnectPolicy, SystemJitter, parse_version,
};
pub use live::LiveWhatsApp;

/// The PostgreSQL schema of the device tables (whatsapp-rust's tables, as
/// its SQLite store has them, and the session → device table).
pub const DEVICE_SCHEMA: &str = sql::PG_SCHEMA;

/// Creates the device tables in the PostgreSQL database at `url` when
/// missing (what starting the adapter on it does), for a copy into it.
///
/// # Errors
///
/// [`wagate_whatsapp_port::WhatsAppError::Internal`] when the database
/// cannot be reached or refuses the tables (the message names no password).
pub async fn prepare_postgres_device_store(
    url: &str,
) -> Result<(), wagate_whatsapp_port::WhatsAppError> {
    let at = KeyStoreLocation::Postgres {
        url: url.to_owned(),
        connections: 1,
    };
    match sql::Db::open_postgres(url, 1).await {
        Ok(sql::Db::Postgres(pool)) => {
            pool.close().await;
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(wagate_whatsapp_port::WhatsAppError::Internal(format!(
            "cannot prepare the device tables in {at}: {e}"
        ))),
    }
}

/// Whether this build accepts server certificate chains not signed by
/// WhatsApp (the `simulator` feature). The binary can refuse a foreign
/// `whatsapp.live.url` when it is false.
pub const SKIPS_CERT_CHAIN_VERIFY: bool = cfg!(feature = "simulator");

/// The README's example, compiled as a doc test so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
