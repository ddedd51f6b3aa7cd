//! Pure translations of the rest of a conversation as it arrives: a
//! contact's (or the account's other devices') locations, contact cards,
//! polls, edits and deletions for everyone as the port's
//! [`InboundContent`], and what a poll vote needs to be opened. Nothing
//! here does I/O: the vote's decryption (it needs the poll's secret from
//! the device store) is the inbound hook's.

use wagate_domain::{ContactCard, Location, MessageId, Poll, RichContent};
use wagate_whatsapp_port::InboundContent;
use whatsapp_rust::waproto::whatsapp as wa;

/// The content of a location, contact cards, a poll, an edit or a
/// deletion, with the message it answers; `None` for other kinds (and for
/// ones whose fields do not make a valid value).
pub(crate) fn content(m: &wa::Message) -> Option<(InboundContent, Option<MessageId>)> {
    if let Some(l) = m.location_message.as_option() {
        let place = Location::new(
            l.degrees_latitude?,
            l.degrees_longitude?,
            l.name.clone().filter(|n| !n.is_empty()),
            l.address.clone().filter(|a| !a.is_empty()),
        )
        .ok()?;
        return Some((
            InboundContent::Rich(RichContent::Location(place)),
            reply_of(&l.context_info),
        ));
    }
    let card = |c: &wa::message::ContactMessage| {
        ContactCard::new(c.display_name.clone()?, c.vcard.clone()?).ok()
    };
    if let Some(c) = m.contact_message.as_option() {
        return Some((
            InboundContent::Rich(RichContent::Contacts(vec![card(c)?])),
            reply_of(&c.context_info),
        ));
    }
    if let Some(c) = m.contacts_array_message.as_option() {
        let cards: Option<Vec<_>> = c.contacts.iter().map(card).collect();
        let cards =
            cards.filter(|c| !c.is_empty() && c.len() <= wagate_domain::MAX_CONTACT_CARDS)?;
        return Some((
            InboundContent::Rich(RichContent::Contacts(cards)),
            reply_of(&c.context_info),
        ));
    }
    let poll = [
        &m.poll_creation_message,
        &m.poll_creation_message_v2,
        &m.poll_creation_message_v3,
    ]
    .into_iter()
    .find_map(|p| p.as_option());
    if let Some(p) = poll {
        let options: Vec<String> = p
            .options
            .iter()
            .map(|o| o.option_name.clone())
            .collect::<Option<_>>()?;
        // 0 is WhatsApp's "as many as you like".
        let count = match p.selectable_options_count {
            Some(0) | None => u32::try_from(options.len()).ok()?,
            Some(n) => n,
        };
        let poll = Poll::new(p.name.clone()?, options, count).ok()?;
        return Some((
            InboundContent::Rich(RichContent::Poll(poll)),
            reply_of(&p.context_info),
        ));
    }
    if let Some(p) = m.protocol_message.as_option() {
        use wa::message::protocol_message::Type;
        let target = MessageId::parse(p.key.as_option()?.id.as_deref()?).ok()?;
        return match p.r#type? {
            Type::Revoke => Some((InboundContent::Revoke { target }, None)),
            Type::MessageEdit => {
                let e = p.edited_message.as_option()?;
                let text = e
                    .conversation
                    .clone()
                    .or_else(|| {
                        e.extended_text_message
                            .as_option()
                            .and_then(|x| x.text.clone())
                    })
                    .or_else(|| e.image_message.as_option().and_then(|x| x.caption.clone()))
                    .or_else(|| e.video_message.as_option().and_then(|x| x.caption.clone()))
                    .or_else(|| {
                        e.document_message
                            .as_option()
                            .and_then(|x| x.caption.clone())
                    })?;
                Some((InboundContent::Edit { target, text }, None))
            }
            _ => None,
        };
    }
    None
}

fn reply_of(context: &whatsapp_rust::buffa::MessageField<wa::ContextInfo>) -> Option<MessageId> {
    context
        .as_option()
        .and_then(|c| c.stanza_id.as_deref())
        .and_then(|id| MessageId::parse(id).ok())
}

/// What opening a poll vote takes, out of its message: the poll's id,
/// whether the account wrote the poll, and the encrypted vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SealedVote {
    /// The poll voted on.
    pub poll: MessageId,
    /// The poll is the account's own (its creator is the account).
    pub poll_from_me: bool,
    /// The poll's creator as the vote names it (groups), if it does.
    pub participant: Option<String>,
    /// AES-GCM ciphertext.
    pub payload: Vec<u8>,
    /// Its IV.
    pub iv: Vec<u8>,
}

/// The sealed vote a `pollUpdateMessage` carries; `None` for any other
/// message (or one without a vote).
pub(crate) fn sealed_vote(m: &wa::Message) -> Option<SealedVote> {
    let u = m.poll_update_message.as_option()?;
    let key = u.poll_creation_message_key.as_option()?;
    let vote = u.vote.as_option()?;
    Some(SealedVote {
        poll: MessageId::parse(key.id.as_deref()?).ok()?,
        poll_from_me: key.from_me.unwrap_or(false),
        participant: key.participant.clone(),
        payload: vote.enc_payload.clone()?,
        iv: vote.enc_iv.clone()?,
    })
}

/// The opened vote's option hashes as the port carries them (32 bytes
/// each; others are not option hashes and are left out).
pub(crate) fn vote_content(poll: MessageId, hashes: &[Vec<u8>]) -> InboundContent {
    InboundContent::PollVote {
        target: poll,
        selected: hashes
            .iter()
            .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use whatsapp_rust::buffa::MessageField;

    #[test]
    fn locations_cards_and_polls_map_to_rich_content() {
        let place = wa::Message {
            location_message: MessageField::some(wa::message::LocationMessage {
                degrees_latitude: Some(52.5),
                degrees_longitude: Some(13.4),
                name: Some("Office".into()),
                address: Some(String::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (c, _) = content(&place).unwrap();
        let InboundContent::Rich(RichContent::Location(l)) = c else {
            panic!("not a location")
        };
        assert_eq!(
            (l.latitude(), l.name(), l.address()),
            (52.5, Some("Office"), None)
        );
        let vcard = "BEGIN:VCARD\nFN:Ana\nEND:VCARD";
        let card = wa::Message {
            contact_message: MessageField::some(wa::message::ContactMessage {
                display_name: Some("Ana".into()),
                vcard: Some(vcard.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            content(&card),
            Some((InboundContent::Rich(RichContent::Contacts(c)), None)) if c.len() == 1
        ));
        let poll = crate::messages::poll_message(
            &Poll::new("Q?".into(), vec!["A".into(), "B".into()], 2).unwrap(),
            [7; 32],
            None,
        );
        let Some((InboundContent::Rich(RichContent::Poll(p)), _)) = content(&poll) else {
            panic!("not a poll")
        };
        assert_eq!(
            (p.question(), p.options().len(), p.selectable_count()),
            ("Q?", 2, 2)
        );
        // A poll of "any number" (0) allows every option.
        let mut any = poll.clone();
        if let Some(p) = any.poll_creation_message.as_option_mut() {
            p.selectable_options_count = Some(0);
        }
        let Some((InboundContent::Rich(RichContent::Poll(p)), _)) = content(&any) else {
            panic!("not a poll")
        };
        assert_eq!(p.selectable_count(), 2);
        // A location out of range is not recorded as one.
        let mut far = place;
        if let Some(l) = far.location_message.as_option_mut() {
            l.degrees_latitude = Some(91.0);
        }
        assert!(content(&far).is_none());
    }

    #[test]
    fn edits_and_revokes_name_their_target() {
        use wa::message::protocol_message::Type;
        let key = MessageField::some(wa::MessageKey {
            id: Some("3EB0AA".into()),
            ..Default::default()
        });
        let edit = wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage {
                key: key.clone(),
                r#type: Some(Type::MessageEdit),
                edited_message: MessageField::some(wa::Message {
                    conversation: Some("fixed".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            content(&edit).map(|c| c.0),
            Some(InboundContent::Edit {
                target: MessageId::parse("3EB0AA").unwrap(),
                text: "fixed".into()
            })
        );
        let revoke = wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage {
                key,
                r#type: Some(Type::Revoke),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            content(&revoke).map(|c| c.0),
            Some(InboundContent::Revoke {
                target: MessageId::parse("3EB0AA").unwrap()
            })
        );
    }

    #[test]
    fn votes_are_sealed_until_opened() {
        let vote = wa::Message {
            poll_update_message: MessageField::some(wa::message::PollUpdateMessage {
                poll_creation_message_key: MessageField::some(wa::MessageKey {
                    id: Some("3EB0PP".into()),
                    from_me: Some(true),
                    ..Default::default()
                }),
                vote: MessageField::some(wa::message::PollEncValue {
                    enc_payload: Some(vec![1, 2]),
                    enc_iv: Some(vec![3]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sealed = sealed_vote(&vote).unwrap();
        assert_eq!(
            (sealed.poll.as_str(), sealed.poll_from_me),
            ("3EB0PP", true)
        );
        assert!(content(&vote).is_none());
        assert_eq!(
            vote_content(sealed.poll, &[vec![9; 32], vec![1; 3]]),
            InboundContent::PollVote {
                target: MessageId::parse("3EB0PP").unwrap(),
                selected: vec![[9; 32]]
            }
        );
    }
}
