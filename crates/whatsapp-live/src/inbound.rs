//! The inbound durability hook: whatsapp-rust hands it each batch of
//! decrypted messages before acknowledging them; it records them through
//! the sink and lets the acks go only once they are committed.

use std::sync::Arc;

use wagate_domain::SessionId;
use wagate_whatsapp_port::SessionEventSink;
use whatsapp_rust::types::events::InboundMessage as WaInbound;
use whatsapp_rust::{Client, InboundDurabilityHook};

use crate::media;
use crate::messages::{self, Skipped};

/// One per client: the session it records for and the sink (shared).
pub(crate) struct RecordingHook {
    pub session: SessionId,
    pub sink: Arc<dyn SessionEventSink>,
}

#[whatsapp_rust::async_trait]
impl InboundDurabilityHook for RecordingHook {
    async fn on_messages(
        &self,
        client: Arc<Client>,
        batch: &[WaInbound],
    ) -> whatsapp_rust::anyhow::Result<()> {
        let own = media::own(&client);
        let mut wanted = Vec::new();
        for item in batch {
            wanted.extend(messages::identities_to_learn(&item.info));
        }
        let alternates = media::alternates(&client, wanted).await;
        let mut recorded = Vec::with_capacity(batch.len());
        for item in batch {
            match crate::votes::inbound(&client, item, &own, &alternates).await {
                Ok(m) => recorded.push(m),
                Err(why) => {
                    // The id only: never the content.
                    if why != Skipped::Unsupported {
                        tracing::debug!(session = %self.session, id = %item.info.id, ?why, "received message not recorded");
                    }
                }
            }
        }
        if recorded.is_empty() {
            return Ok(());
        }
        match self.sink.record_messages(&self.session, &recorded).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(session = %self.session, count = recorded.len(), error = %e, "received messages not recorded; WhatsApp will deliver them again");
                Err(whatsapp_rust::anyhow::anyhow!("not recorded: {e}"))
            }
        }
    }
}
