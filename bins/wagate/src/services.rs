//! Configuration → ports → use cases.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use wagate_app::{
    ApiKeyAdmin, ClusterMember, DeliverySettings, EventBus, Gateway, GatewayDeps, RetentionPruner,
    SessionEventRecorder, WebhookDispatcher,
};
use wagate_auth::{
    ApiKeyVerifier, Authenticator, AuthenticatorChain, JwtConfig, JwtVerifier, OsEntropy,
    RolePolicy,
};
use wagate_domain::{CapabilitySet, Clock, NodeId, SystemClock};
use wagate_http::NodeLink;
use wagate_store::{
    Fence, InvalidationListener, PgLeases, PgStore, SessionCache, SessionOwnership,
    SessionRegistry, SingleNode, Store,
};
use wagate_webhooks::{AddressPolicy, HttpMediaFetcher, HttpTransport, WebhookTransport};
use wagate_whatsapp_live::{LiveConfig, LiveWhatsApp, SKIPS_CERT_CHAIN_VERIFY, parse_version};
use wagate_whatsapp_port::{FakeWhatsApp, Fixtures, WhatsAppPort};

use crate::config::{AdapterKind, ClusterSettings, Config, Database, MIN_CLUSTER_SECRET};

/// Every long-lived piece of a running wagate, built once.
#[derive(Debug, Clone)]
pub struct Services {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The same database when it is PostgreSQL (several gateways may share
    /// it: this one joins their cluster, [`Services::join_cluster`]).
    pub postgres: Option<PgStore>,
    /// The use cases.
    pub gateway: Arc<Gateway>,
    /// This process's id, new at every start.
    pub node_id: NodeId,
    /// Which process serves a session's live calls: this one alone on
    /// SQLite ([`SingleNode`]); the leases on PostgreSQL
    /// ([`Services::join_cluster`]).
    pub ownership: Arc<dyn SessionOwnership>,
    /// How this process reaches the others, signing with `cluster.secret`
    /// (`None` without one: it neither forwards nor admits forwarded calls).
    pub link: Option<Arc<NodeLink>>,
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
        let (store, postgres) = open_database(config).await?;
        // Commits of events wake this process's streams and deliveries.
        let bus = Arc::new(EventBus::default());
        store.set_commit_listener(bus.clone());

        // Every request looks its session up: serve those reads from memory.
        let session_cache = Arc::new(SessionCache::new(store.clone()));
        let sessions: Arc<dyn SessionRegistry> = session_cache.clone();
        let messaging = config.messages.settings()?;
        let recorder = Arc::new(SessionEventRecorder::new(
            sessions.clone(),
            store.clone(),
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
                let options = config.whatsapp.live.options()?;
                let live =
                    LiveWhatsApp::start_with(settings, recorder.clone(), clock.clone(), options)
                        .await
                        .context("starting the live WhatsApp adapter")?;
                (live.clone(), Some(live), None)
            }
        };

        let api_keys = Arc::new(ApiKeyVerifier::new(store.clone(), clock.clone()));
        // Sessions and keys changed by any gateway sharing the database
        // leave this one's caches as soon as that is heard.
        let caches: Vec<Arc<dyn InvalidationListener>> = vec![session_cache, api_keys.clone()];
        store.set_invalidation_listener(Arc::new(caches));
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
                clock: clock.clone(),
                request_timeout: Duration::from_secs(config.whatsapp.request_timeout_secs.max(1)),
                whatsapp_pacing: config.limits.whatsapp_pacing()?,
                events: store.clone(),
                webhooks: store.clone(),
                webhook_targets: Arc::new(AddressPolicy::new(
                    config.webhooks.allow_private_targets,
                )),
                bus,
                messages: store.clone(),
                groups: store.clone(),
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
        // Connects read the account's groups into the store.
        recorder.set_group_refresh(gateway.group_refresh());
        // A write fenced off (another gateway owns the session) stops its client.
        recorder.set_gateway(&gateway);
        let webhook_transport = Arc::new(
            HttpTransport::new(
                AddressPolicy::new(config.webhooks.allow_private_targets),
                delivery.timeout,
            )
            .context("building the webhook HTTP client")?,
        );
        let node_id = NodeId::from_ulid(ulid::Ulid::new());
        let link = node_link(config, &node_id, clock)?;
        Ok(Self {
            store,
            postgres,
            gateway,
            node_id,
            ownership: Arc::new(SingleNode),
            link,
            authenticator,
            jwt,
            live,
            fake,
            webhook_transport,
            delivery,
            retention,
        })
    }

    /// Joins the cluster of gateways sharing the PostgreSQL database, as
    /// node `node_id` reachable at `advertise_url`: registers it (its first
    /// heartbeat), answers [`Services::ownership`] from the leases, and
    /// fences every write the WhatsApp side makes for a
    /// session by its claim. `None` on SQLite (one gateway, no leases).
    ///
    /// # Errors
    ///
    /// When the database does not answer.
    pub async fn join_cluster(
        &mut self,
        cluster: &ClusterSettings,
        advertise_url: String,
        resume_rate: u32,
    ) -> anyhow::Result<Option<ClusterMember>> {
        let Some(pg) = &self.postgres else {
            return Ok(None);
        };
        let node = self.node_id;
        let fence = Arc::new(Fence::new(node));
        let leases = Arc::new(PgLeases::new(
            pg.clone(),
            fence,
            advertise_url.clone(),
            cluster.lease,
        ));
        let member = ClusterMember::join(
            self.gateway.clone(),
            leases,
            wagate_app::ClusterSettings::new(cluster.heartbeat, cluster.self_fence, resume_rate),
        )
        .await
        .context("joining the cluster")?;
        tracing::info!(node = %node, advertise_url, "joined the cluster of gateways on this database");
        // Every device write of a client names this node's claim.
        if let Some(live) = &self.live {
            live.fence_writes(Arc::new(member.clone()));
        }
        // Live calls run where the leases say.
        self.ownership = Arc::new(member.clone());
        Ok(Some(member))
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
    config.database()?;
    Ok(wagate_store::open(config.database.url.expose()).await?)
}

/// [`open_store`], with the PostgreSQL store itself when it is one.
async fn open_database(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Option<PgStore>)> {
    if let Database::Postgres(_) = config.database()? {
        let pg = PgStore::connect(config.database.url.expose()).await?;
        pg.migrate().await?;
        return Ok((Arc::new(pg.clone()), Some(pg)));
    }
    Ok((open_store(config).await?, None))
}

/// Extra time a forwarding node waits for the owner's answer to start,
/// beyond the owner's own WhatsApp deadline (`whatsapp.request_timeout_secs`).
const FORWARD_SLACK: Duration = Duration::from_secs(5);

/// The inter-node link of node `node`, when `cluster.secret` is set
/// (required with PostgreSQL; optional, and checked the same way, with
/// SQLite).
fn node_link(
    config: &Config,
    node: &NodeId,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Option<Arc<NodeLink>>> {
    let secret = match config.database()? {
        Database::Postgres(cluster) => cluster.secret,
        Database::Sqlite => match &config.cluster.secret {
            None => return Ok(None),
            Some(s) if s.expose().chars().count() < MIN_CLUSTER_SECRET => {
                bail!("cluster.secret is too short: at least {MIN_CLUSTER_SECRET} characters")
            }
            Some(s) => s.clone(),
        },
    };
    let answer_timeout =
        Duration::from_secs(config.whatsapp.request_timeout_secs.max(1)) + FORWARD_SLACK;
    let link = NodeLink::new(*node, secret.expose(), clock, answer_timeout)
        .context("building the inter-node HTTP client")?;
    Ok(Some(Arc::new(link)))
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
