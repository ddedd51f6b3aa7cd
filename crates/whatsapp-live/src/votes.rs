//! Poll votes as they arrive: WhatsApp encrypts each vote with its poll's
//! message secret, which whatsapp-rust keeps in the device store for every
//! poll the account sends or receives (`msg_secrets`). A vote is opened
//! here, in the inbound hook, before it is handed to the port like any
//! message; one whose secret the device never saw is left out.

use std::sync::Arc;
use std::time::Duration;

use wagate_whatsapp_port::{InboundContent, InboundMessage};
use whatsapp_rust::types::events::InboundMessage as WaInbound;
use whatsapp_rust::wacore::proto_helpers::MessageExt as _;
use whatsapp_rust::{Client, Jid, PollVoteCiphertext};

use crate::conversation::{self, SealedVote};
use crate::messages::{self, Alternates, Own, Skipped};

/// How often a vote's secret is looked for before the vote is given up:
/// whatsapp-rust writes secrets behind (a vote right after its poll may
/// find the store a moment behind).
const SECRET_TRIES: u32 = 5;

/// A received message as the port's, a poll vote opened first.
pub(crate) async fn inbound(
    client: &Arc<Client>,
    item: &WaInbound,
    own: &Own,
    alternates: &Alternates,
) -> Result<InboundMessage, Skipped> {
    let Some(sealed) = conversation::sealed_vote(item.message.get_base_message()) else {
        return messages::inbound_message(&item.message, &item.info, own, alternates);
    };
    let opened = open(client, &sealed, item, own, alternates).await;
    messages::inbound_with(
        opened.map(|c| (c, None)),
        &item.message,
        &item.info,
        own,
        alternates,
    )
}

/// Who created the poll a vote names, from the vote's own point of view:
/// its key says whether the voter wrote the poll.
fn creator(sealed: &SealedVote, chat: &Jid, voter: &Jid, from_me: bool, own: &Own) -> Option<Jid> {
    if sealed.poll_from_me {
        Some(voter.clone())
    } else if from_me {
        Some(chat.clone())
    } else {
        own.pn.clone().or_else(|| own.lid.clone())
    }
}

async fn open(
    client: &Arc<Client>,
    sealed: &SealedVote,
    item: &WaInbound,
    own: &Own,
    alternates: &Alternates,
) -> Option<InboundContent> {
    let source = &item.info.source;
    let chat = source.chat.to_non_ad();
    let voter = if source.is_from_me {
        own.pn.clone().or_else(|| own.lid.clone())?
    } else {
        source.sender.to_non_ad()
    };
    let creator = creator(sealed, &chat, &voter, source.is_from_me, own)?;
    let other = |j: &Jid| alternates.get(&j.to_string()).cloned();
    let mut chats = vec![chat.clone()];
    chats.extend(other(&chat));
    let mut creators = vec![creator.clone()];
    creators.extend(other(&creator));
    if own.pn.as_ref() == Some(&creator) {
        creators.extend(own.lid.clone());
    }
    let backend = client.persistence_manager().backend();
    let mut secret = None;
    for attempt in 0..SECRET_TRIES {
        'find: for c in &chats {
            for s in &creators {
                if let Ok(Some(found)) = backend
                    .get_msg_secret(&c.to_string(), &s.to_string(), sealed.poll.as_str())
                    .await
                {
                    secret = Some(found);
                    break 'find;
                }
            }
        }
        if secret.is_some() || attempt + 1 == SECRET_TRIES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    let Some(secret) = secret else {
        tracing::debug!(poll = %sealed.poll, "a vote on a poll whose secret the device never saw: not recorded");
        return None;
    };
    let opened = client
        .polls()
        .decrypt_vote(
            PollVoteCiphertext {
                enc_payload: &sealed.payload,
                enc_iv: &sealed.iv,
            },
            &secret,
            sealed.poll.as_str(),
            &creator,
            &voter,
        )
        .await;
    match opened {
        Ok(hashes) => Some(conversation::vote_content(sealed.poll.clone(), &hashes)),
        Err(e) => {
            tracing::debug!(poll = %sealed.poll, error = %e, "a vote could not be opened: not recorded");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use wagate_domain::MessageId;

    #[test]
    fn a_vote_names_its_poll_s_creator_from_the_voter_s_side() {
        let me: Jid = "15550001111@s.whatsapp.net".parse().unwrap();
        let ana: Jid = "14155550123@s.whatsapp.net".parse().unwrap();
        let own = Own {
            pn: Some(me.clone()),
            lid: None,
        };
        let sealed = |poll_from_me| SealedVote {
            poll: MessageId::parse("3EB0P").unwrap(),
            poll_from_me,
            participant: None,
            payload: Vec::new(),
            iv: Vec::new(),
        };
        // Ana votes on the account's poll, then on her own.
        assert_eq!(
            creator(&sealed(false), &ana, &ana, false, &own),
            Some(me.clone())
        );
        assert_eq!(
            creator(&sealed(true), &ana, &ana, false, &own),
            Some(ana.clone())
        );
        // The account (another device) votes on Ana's poll, then on its own.
        assert_eq!(
            creator(&sealed(false), &ana, &me, true, &own),
            Some(ana.clone())
        );
        assert_eq!(creator(&sealed(true), &ana, &me, true, &own), Some(me));
    }
}
