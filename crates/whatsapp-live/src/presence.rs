//! A contact's presence and chat state as whatsapp-rust reports them
//! (`Event::Presence`, `Event::ChatPresence`), as the port's ephemeral
//! events. People are named by their phone number when the client knows
//! it (WhatsApp may name them by LID), like the message paths do. Pure:
//! the caller looks the LIDs up ([`to_learn`]).
//!
//! whatsapp-rust reports every `<presence>` the server sends, subscribed
//! or not: the server tells subscribers only, so no filter is needed here.

use time::OffsetDateTime;
use wagate_domain::{ChatState, JidKind};
use wagate_whatsapp_port::SessionEventKind;
use whatsapp_rust::Server;
use whatsapp_rust::types::events::{ChatPresenceUpdate, PresenceUpdate};
use whatsapp_rust::types::presence::{ChatPresence, ChatPresenceMedia};

use crate::mapping::from_wa_jid;
use crate::messages::{Alternates, Own, person_by_phone};

fn is_person(jid: &whatsapp_rust::Jid) -> bool {
    matches!(jid.server, Server::Pn | Server::Lid)
}

/// The JIDs whose phone number a presence or chat state needs looked up:
/// its person when named by LID.
pub(crate) fn to_learn(jid: &whatsapp_rust::Jid) -> Option<whatsapp_rust::Jid> {
    let jid = jid.to_non_ad();
    (jid.server == Server::Lid).then_some(jid)
}

/// A contact came online or went offline: `Presence`; `None` for the
/// account itself or anything but a person.
pub(crate) fn presence(
    update: &PresenceUpdate,
    own: &Own,
    alternates: &Alternates,
) -> Option<SessionEventKind> {
    let from = update.from.to_non_ad();
    if !is_person(&from) || own.is_me(&from) {
        return None;
    }
    Some(SessionEventKind::Presence {
        jid: person_by_phone(&from, None, alternates)?,
        available: !update.unavailable,
        last_seen: update
            .last_seen
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()),
    })
}

/// Someone types, records or stopped in a chat with the account (one to
/// one, or a group): `ChatState`; `None` for the account's own, or for a
/// chat or sender of another kind.
pub(crate) fn chat_state(
    update: &ChatPresenceUpdate,
    own: &Own,
    alternates: &Alternates,
) -> Option<SessionEventKind> {
    let source = &update.source;
    let sender = source.sender.to_non_ad();
    if source.is_from_me || !is_person(&sender) || own.is_me(&sender) {
        return None;
    }
    let jid = person_by_phone(&sender, source.sender_alt.as_ref(), alternates)?;
    let chat = if source.is_group {
        let group = from_wa_jid(&source.chat.to_non_ad())?;
        if group.kind() != JidKind::Group {
            return None;
        }
        group
    } else {
        // One to one: the chat is the person.
        jid.clone()
    };
    let state = match (update.state, update.media) {
        (ChatPresence::Composing, ChatPresenceMedia::Audio) => ChatState::Recording,
        (ChatPresence::Composing, ChatPresenceMedia::Text) => ChatState::Typing,
        (ChatPresence::Paused, _) => ChatState::Paused,
    };
    Some(SessionEventKind::ChatState { chat, jid, state })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use wagate_domain::Jid;
    use whatsapp_rust::types::message::MessageSource;

    fn wa(s: &str) -> whatsapp_rust::Jid {
        s.parse().unwrap()
    }

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn own() -> Own {
        Own {
            pn: Some(wa("15550001111@s.whatsapp.net")),
            lid: Some(wa("99887766554433@lid")),
        }
    }

    const ALICE: &str = "14155550123@s.whatsapp.net";
    const ALICE_LID: &str = "123456789012345@lid";

    fn known() -> Alternates {
        Alternates::from([(ALICE_LID.to_owned(), wa(ALICE))])
    }

    fn typing(
        chat: &str,
        sender: &str,
        state: ChatPresence,
        media: ChatPresenceMedia,
    ) -> ChatPresenceUpdate {
        ChatPresenceUpdate::builder()
            .source(MessageSource {
                chat: wa(chat),
                sender: wa(sender),
                is_from_me: false,
                is_group: chat.ends_with("@g.us"),
                ..Default::default()
            })
            .state(state)
            .media(media)
            .build()
    }

    #[test]
    fn presence_names_the_contact_by_phone_number_when_known() {
        let seen = whatsapp_rust::chrono::DateTime::from_timestamp(1_733_440_000, 0).unwrap();
        let away = PresenceUpdate::builder()
            .from(wa("123456789012345:3@lid"))
            .unavailable(true)
            .last_seen(seen)
            .build();
        assert_eq!(to_learn(&away.from), Some(wa(ALICE_LID)));
        assert_eq!(
            presence(&away, &own(), &known()),
            Some(SessionEventKind::Presence {
                jid: jid(ALICE),
                available: false,
                last_seen: Some(OffsetDateTime::from_unix_timestamp(1_733_440_000).unwrap()),
            })
        );
        // Unknown: the LID as WhatsApp gave it.
        assert_eq!(
            presence(&away, &own(), &Alternates::new()),
            Some(SessionEventKind::Presence {
                jid: jid(ALICE_LID),
                available: false,
                last_seen: Some(OffsetDateTime::from_unix_timestamp(1_733_440_000).unwrap()),
            })
        );
        let here = PresenceUpdate::builder()
            .from(wa(ALICE))
            .unavailable(false)
            .build();
        assert_eq!(to_learn(&here.from), None);
        assert_eq!(
            presence(&here, &own(), &Alternates::new()),
            Some(SessionEventKind::Presence {
                jid: jid(ALICE),
                available: true,
                last_seen: None,
            })
        );
        // The account's own presence and a group's are not a contact's.
        for from in ["15550001111:2@s.whatsapp.net", "120363025246125486@g.us"] {
            let p = PresenceUpdate::builder()
                .from(wa(from))
                .unavailable(false)
                .build();
            assert_eq!(presence(&p, &own(), &Alternates::new()), None, "{from}");
        }
    }

    #[test]
    fn chat_states_map_typing_recording_and_paused() {
        use ChatPresence::{Composing, Paused};
        use ChatPresenceMedia::{Audio, Text};
        for (state, media, want) in [
            (Composing, Text, ChatState::Typing),
            (Composing, Audio, ChatState::Recording),
            (Paused, Text, ChatState::Paused),
        ] {
            let u = typing(ALICE_LID, ALICE_LID, state, media);
            assert_eq!(to_learn(&u.source.sender), Some(wa(ALICE_LID)));
            assert_eq!(
                chat_state(&u, &own(), &known()),
                Some(SessionEventKind::ChatState {
                    chat: jid(ALICE),
                    jid: jid(ALICE),
                    state: want,
                })
            );
        }
        // In a group: the group is the chat, the member who types is named.
        let g = typing("120363025246125486@g.us", ALICE_LID, Composing, Text);
        assert_eq!(
            chat_state(&g, &own(), &known()),
            Some(SessionEventKind::ChatState {
                chat: jid("120363025246125486@g.us"),
                jid: jid(ALICE),
                state: ChatState::Typing,
            })
        );
        // The LID as given when its number is not known.
        let u = typing(ALICE_LID, ALICE_LID, Composing, Text);
        assert!(matches!(
            chat_state(&u, &own(), &Alternates::new()),
            Some(SessionEventKind::ChatState { jid: j, .. }) if j == jid(ALICE_LID)
        ));
        // The account's own (another device's) typing is not reported.
        let mine = typing(ALICE, "99887766554433:4@lid", Composing, Text);
        assert_eq!(chat_state(&mine, &own(), &known()), None);
    }
}
