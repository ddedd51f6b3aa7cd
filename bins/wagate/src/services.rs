//! Configuration → ports → use cases.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use wagate_app::{Gateway, GatewayDeps, SessionEventRecorder};
use wagate_auth::{ApiKeyVerifier, Authenticator, AuthenticatorChain, OsEntropy};
use wagate_domain::{Clock, SystemClock};
use wagate_store::SqliteStore;
use wagate_whatsapp_port::{FakeWhatsApp, Fixtures, WhatsAppPort};

use crate::config::{AdapterKind, Config};

/// Every long-lived piece of a running wagate, built once.
#[derive(Debug, Clone)]
pub struct Services {
    /// The database.
    pub store: Arc<SqliteStore>,
    /// The use cases.
    pub gateway: Arc<Gateway>,
    /// The bearer-token chain.
    pub authenticator: Arc<dyn Authenticator>,
}

impl Services {
    /// Opens and migrates the database and builds the ports and use cases.
    ///
    /// # Errors
    ///
    /// When the database cannot be opened or migrated, the fixtures file is
    /// invalid, or the configuration names something this build lacks.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = Arc::new(SqliteStore::connect(config.database.url.expose()).await?);
        store.migrate().await?;

        let recorder = Arc::new(SessionEventRecorder::new(store.clone(), clock.clone()));
        let whatsapp: Arc<dyn WhatsAppPort> = match config.whatsapp.adapter {
            AdapterKind::Fake => {
                let world = match &config.whatsapp.fake.fixtures {
                    Some(path) => Fixtures::from_file(path).context("whatsapp.fake.fixtures")?,
                    None => Fixtures::builtin(),
                };
                Arc::new(FakeWhatsApp::new(world, recorder, clock.clone()))
            }
            AdapterKind::Live => bail!(
                "whatsapp.adapter = \"live\": the live WhatsApp adapter is not part of this build yet; use \"fake\""
            ),
        };

        let api_keys = Arc::new(ApiKeyVerifier::new(store.clone(), clock.clone()));
        let verifiers: Vec<Arc<dyn Authenticator>> = vec![api_keys.clone()];
        let authenticator: Arc<dyn Authenticator> = Arc::new(AuthenticatorChain::new(verifiers));

        let gateway = Arc::new(Gateway::new(GatewayDeps {
            sessions: store.clone(),
            api_keys: store.clone(),
            whatsapp,
            api_key_cache: api_keys,
            entropy: Arc::new(OsEntropy),
            clock,
            request_timeout: Duration::from_secs(config.whatsapp.request_timeout_secs.max(1)),
        }));
        Ok(Self {
            store,
            gateway,
            authenticator,
        })
    }

    /// Closes what holds resources (database connections).
    pub async fn shutdown(&self) {
        self.store.close().await;
    }
}
