//! Configuration → ports → use cases.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use wagate_app::{
    ApiKeyAdmin, DeliverySettings, EventBus, Gateway, GatewayDeps, RetentionPruner,
    SessionEventRecorder, WebhookDispatcher,
};
use wagate_auth::{
    ApiKeyVerifier, Authenticator, AuthenticatorChain, JwtConfig, JwtVerifier, OsEntropy,
    RolePolicy,
};
use wagate_domain::{CapabilitySet, Clock, SystemClock};
use wagate_store::{SessionCache, SessionRegistry, Store};
use wagate_webhooks::{AddressPolicy, HttpMediaFetcher, HttpTransport, WebhookTransport};
use wagate_whatsapp_live::{LiveConfig, LiveWhatsApp, SKIPS_CERT_CHAIN_VERIFY, parse_version};
use wagate_whatsapp_port::{FakeWhatsApp, Fixtures, WhatsAppPort};

use crate::config::{AdapterKind, Config, Database};

/// Every long-lived piece of a running wagate, built once.
#[derive(Debug, Clone)]
pub struct Services {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The use cases.
    pub gateway: Arc<Gateway>,
    /// The bearer-token chain.
    pub authenticator: Arc<dyn Authenticator>,
    /// The login-JWT verifier, when `auth.jwt.jwks_url` is set.
    pub jwt: Option<Arc<JwtVerifier>>,
    /// The live WhatsApp adapter, when it is the one in use (to close its
    /// clients on shutdown).
    pub live: Option<Arc<LiveWhatsApp>>,
    /// The fake WhatsApp adapter, when it is the one in use (tests have
    /// its contacts write to a session).
    pub fake: Option<Arc<FakeWhatsApp>>,
    /// Sends webhook deliveries (`webhooks.timeout`, the SSRF rule of
    /// `webhooks.allow_private_targets` at delivery time).
    pub webhook_transport: Arc<dyn WebhookTransport>,
    /// How deliveries are made (`webhooks.*`).
    pub delivery: DeliverySettings,
    /// How long events are kept (`events.retention_days`).
    pub retention: time::Duration,
}

/// How often the event log is pruned to its retention.
const PRUNE_EVERY: Duration = Duration::from_secs(5 * 60);

/// What runs in the background while the gateway serves: webhook
/// deliveries and the event log's pruning.
#[derive(Debug)]
pub struct Background {
    dispatcher: WebhookDispatcher,
    pruner: RetentionPruner,
}

impl Background {
    /// Stops both; sends under way get a short grace, the rest is
    /// attempted again after a restart.
    pub async fn stop(self) {
        tokio::join!(self.dispatcher.stop(), self.pruner.stop());
    }
}

impl Services {
    /// Opens and migrates the database and builds the ports and use cases.
    ///
    /// # Errors
    ///
    /// When the database cannot be opened or migrated, the fixtures file is
    /// invalid, the `auth.*` settings are inconsistent (checked first, see
    /// [`JwtSettings::validate`](crate::config::JwtSettings::validate)), or
    /// the configuration names something this build lacks.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        // Before anything is opened: a bad auth setting stops the start here.
        let jwt_config = jwt_config(config)?;
        let live_settings = match config.whatsapp.adapter {
            AdapterKind::Live => Some(live_config(config)?),
            AdapterKind::Fake => None,
        };
        let delivery = config.webhooks.delivery_settings()?;
        let retention = config.events.retention()?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = open_store(config).await?;
        // Commits of events wake this process's streams and deliveries.
        let bus = Arc::new(EventBus::default());
        store.set_commit_listener(bus.clone());

        // Every request looks its session up: serve those reads from memory.
        let sessions: Arc<dyn SessionRegistry> = Arc::new(SessionCache::new(store.clone()));
        let messaging = config.messages.settings()?;
        let recorder = Arc::new(SessionEventRecorder::new(
            sessions.clone(),
            store.clone(),
            clock.clone(),
        ));
        let (whatsapp, live, fake): (Arc<dyn WhatsAppPort>, _, _) = match config.whatsapp.adapter {
            AdapterKind::Fake => {
                let world = match &config.whatsapp.fake.fixtures {
                    Some(path) => Fixtures::from_file(path).context("whatsapp.fake.fixtures")?,
                    None => Fixtures::builtin(),
                };
                let fake = Arc::new(FakeWhatsApp::new(world, recorder.clone(), clock.clone()));
                (fake.clone(), None, Some(fake))
            }
            AdapterKind::Live => {
                let settings = live_settings.context("live adapter settings")?;
                let live = LiveWhatsApp::start(settings, recorder.clone(), clock.clone())
                    .await
                    .context("starting the live WhatsApp adapter")?;
                (live.clone(), Some(live), None)
            }
        };

        let api_keys = Arc::new(ApiKeyVerifier::new(store.clone(), clock.clone()));
        let jwt = jwt_config.map(|jwt_config| {
            tracing::info!(jwks_url = %jwt_config.jwks_url, "login JWTs enabled");
            // Its key set starts loading in the background; `/readyz` waits for it.
            JwtVerifier::start_with_clock(jwt_config, clock.clone())
        });
        // JWTs first, then API keys (api.md); each declines the other's tokens.
        let mut verifiers: Vec<Arc<dyn Authenticator>> = Vec::new();
        if let Some(jwt) = &jwt {
            verifiers.push(jwt.clone());
        }
        verifiers.push(api_keys.clone());
        let authenticator: Arc<dyn Authenticator> = Arc::new(AuthenticatorChain::new(verifiers));

        let gateway = Arc::new(
            Gateway::new(GatewayDeps {
                sessions,
                // Through the verifier: a key created here clears its hash from
                // the verifier's cache of unknown keys.
                api_keys: api_keys.clone(),
                whatsapp,
                api_key_cache: api_keys,
                entropy: Arc::new(OsEntropy),
                clock,
                request_timeout: Duration::from_secs(config.whatsapp.request_timeout_secs.max(1)),
                whatsapp_pacing: config.limits.whatsapp_pacing()?,
                events: store.clone(),
                webhooks: store.clone(),
                webhook_targets: Arc::new(AddressPolicy::new(
                    config.webhooks.allow_private_targets,
                )),
                bus,
                messages: store.clone(),
                // Media URLs are held to the same SSRF rule as webhooks, under
                // a switch of their own: allowing private webhook receivers
                // must not let any sender make the gateway fetch from the
                // private network.
                media_fetcher: Arc::new(
                    HttpMediaFetcher::new(
                        AddressPolicy::for_setting(
                            config.messages.allow_private_media_urls,
                            "messages.allow_private_media_urls",
                        ),
                        config.messages.media_fetch_timeout.0,
                    )
                    .context("building the media download client")?,
                ),
                messaging,
            })
            .with_max_webhooks_per_org(config.webhooks.max_per_org),
        );
        // Reconnects resume the session's sending.
        recorder.set_outbox(gateway.outbox());
        let webhook_transport = Arc::new(
            HttpTransport::new(
                AddressPolicy::new(config.webhooks.allow_private_targets),
                delivery.timeout,
            )
            .context("building the webhook HTTP client")?,
        );
        Ok(Self {
            store,
            gateway,
            authenticator,
            jwt,
            live,
            fake,
            webhook_transport,
            delivery,
            retention,
        })
    }

    /// Starts the background work of a serving gateway: the webhook
    /// dispatcher and the event log's retention pruner.
    pub fn start_background(&self) -> Background {
        Background {
            dispatcher: self
                .gateway
                .start_webhook_dispatcher(self.webhook_transport.clone(), self.delivery.clone()),
            pruner: RetentionPruner::start(self.gateway.clone(), self.retention, PRUNE_EVERY),
        }
    }

    /// Stops background work and closes what holds resources: every
    /// WhatsApp client, the JWKS refresh, the database.
    pub async fn shutdown(&self) {
        if let Some(live) = &self.live {
            live.shutdown().await;
        }
        if let Some(jwt) = &self.jwt {
            jwt.shutdown();
        }
        self.store.close().await;
    }
}

/// Checks the database settings, opens the database and applies its
/// migrations: all the `wagate` commands that do not talk to WhatsApp need.
///
/// # Errors
///
/// As [`Config::database`], or when the database cannot be opened or
/// migrated.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let database = config.database()?;
    let store = wagate_store::open(config.database.url.expose()).await?;
    if let Database::Postgres(_) = database {
        tracing::warn!(
            "database on PostgreSQL: run one gateway per database for now; several gateways \
             sharing one need session leases, which this version does not have yet"
        );
    }
    Ok(store)
}

/// What the `wagate api-key` commands need: the database and the API-key
/// use cases, and no WhatsApp adapter.
#[derive(Debug)]
pub struct KeyTools {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Creates, lists and revokes keys.
    pub keys: ApiKeyAdmin,
}

impl KeyTools {
    /// Opens (and migrates) the database of `config`.
    ///
    /// # Errors
    ///
    /// As [`open_store`].
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let store = open_store(config).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        // This process serves nothing: the verifier only takes revocations.
        let cache = Arc::new(ApiKeyVerifier::new(store.clone(), clock.clone()));
        let keys = ApiKeyAdmin::new(store.clone(), cache, Arc::new(OsEntropy), clock);
        Ok(Self { store, keys })
    }

    /// Closes the database.
    pub async fn close(&self) {
        self.store.close().await;
    }
}

/// The live adapter's settings from `whatsapp.live.*`.
fn live_config(config: &Config) -> anyhow::Result<LiveConfig> {
    let live = &config.whatsapp.live;
    if live.url.is_some() && !SKIPS_CERT_CHAIN_VERIFY {
        bail!(
            "whatsapp.live.url points at a server other than WhatsApp; only a build with the \
             `simulator` feature (cargo run -p wagate --features simulator) accepts its certificate"
        );
    }
    let version = live
        .version
        .as_deref()
        .map(parse_version)
        .transpose()
        .map_err(|e| anyhow::anyhow!("whatsapp.live.version: {e}"))?;
    Ok(LiveConfig {
        url: live.url.clone(),
        version,
        store: config.device_store()?,
    })
}

/// The login-JWT verifier's settings `auth.jwt.*` and `auth.roles.*`
/// describe, checked (none without a JWKS URL).
fn jwt_config(config: &Config) -> anyhow::Result<Option<JwtConfig>> {
    let jwt = &config.auth.jwt;
    jwt.validate()?;
    let Some(url) = &jwt.jwks_url else {
        return Ok(None);
    };
    let mut roles = Vec::with_capacity(config.auth.roles.len());
    for (role, caps) in &config.auth.roles {
        let caps = CapabilitySet::parse_list(&caps.0.join(","))
            .with_context(|| format!("auth.roles.{role}"))?;
        roles.push((role.as_str(), caps));
    }
    let jwt_config = JwtConfig {
        jwks_url: url.clone(),
        issuer: jwt.issuer.clone(),
        audience: jwt.audience.clone(),
        required_typ: jwt.required_typ.clone(),
        org_claim: jwt.org_claim.clone(),
        role_claim: jwt.role_claim.clone(),
        leeway_secs: jwt.leeway_secs,
        refresh_interval: Duration::from_secs(jwt.refresh_secs.max(1)),
        fetch_timeout: Duration::from_secs(jwt.fetch_timeout_secs.max(1)),
        policy: RolePolicy::with_overrides(roles),
    };
    Ok(Some(jwt_config))
}
