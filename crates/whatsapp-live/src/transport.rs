//! The WebSocket transport, watched: whatsapp-rust reports no event when a
//! connect attempt fails, so the factory remembers what happened to the
//! socket for the runner to explain an unreachable server.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use whatsapp_rust::transport::{
    TokioWebSocketTransportFactory, Transport, TransportEvent, TransportFactory,
};

/// What happened to the last socket the factory tried to open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Probe {
    /// A socket was asked for.
    pub attempted: bool,
    /// It opened.
    pub opened: bool,
    /// Why it did not, when it failed (not when the attempt was cut short).
    pub error: Option<String>,
}

/// Shared between the factory (inside the client) and the runner.
#[derive(Debug, Default)]
pub(crate) struct TransportProbe(Mutex<Probe>);

impl TransportProbe {
    fn update(&self, f: impl FnOnce(&mut Probe)) {
        let mut p = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut p);
    }

    /// Forgets the previous attempt (at the start of a pass).
    pub(crate) fn reset(&self) {
        self.update(|p| *p = Probe::default());
    }

    /// What happened since the last reset.
    pub(crate) fn get(&self) -> Probe {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// whatsapp-rust's tokio WebSocket factory, reporting to a [`TransportProbe`].
pub(crate) struct WatchedTransport {
    inner: TokioWebSocketTransportFactory,
    probe: Arc<TransportProbe>,
}

impl WatchedTransport {
    pub(crate) fn new(url: Option<&str>, probe: Arc<TransportProbe>) -> Self {
        let inner = match url {
            Some(url) => TokioWebSocketTransportFactory::new().with_url(url),
            None => TokioWebSocketTransportFactory::new(),
        };
        Self { inner, probe }
    }
}

#[async_trait]
impl TransportFactory for WatchedTransport {
    async fn create_transport(
        &self,
    ) -> Result<
        (
            Arc<dyn Transport>,
            whatsapp_rust::async_channel::Receiver<TransportEvent>,
        ),
        whatsapp_rust::anyhow::Error,
    > {
        self.probe.update(|p| {
            *p = Probe {
                attempted: true,
                ..Probe::default()
            }
        });
        let result = self.inner.create_transport().await;
        match &result {
            Ok(_) => self.probe.update(|p| p.opened = true),
            Err(e) => {
                let message = format!("{e:#}");
                self.probe.update(|p| p.error = Some(message));
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_remembered() {
        // A port nobody listens on: bind, learn it, close.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let probe = Arc::new(TransportProbe::default());
        let t = WatchedTransport::new(
            Some(&format!("ws://127.0.0.1:{port}/ws/chat")),
            probe.clone(),
        );
        assert!(t.create_transport().await.is_err());
        let p = probe.get();
        assert!(p.attempted && !p.opened);
        assert!(p.error.is_some_and(|e| !e.is_empty()));
        probe.reset();
        assert_eq!(probe.get(), Probe::default());
    }
}
