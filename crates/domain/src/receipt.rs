//! Receipts of outgoing messages: who of a message's recipients has it on
//! a device, has read it, has played it; and how a group message's status
//! follows from its participants' receipts.

use serde_json::{Value, json};

use crate::message::rfc3339;
use crate::{GroupParticipant, Jid, JidKind, MessageStatus, StatusTimes};

/// One recipient of an outgoing message: a participant of the group it
/// went to, or the one person a chat message went to. Named by the JID
/// WhatsApp used (a LID in LID-addressed groups), with the phone number
/// and LID when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// How WhatsApp named them.
    pub jid: Jid,
    /// Their phone-number JID, when known.
    pub pn: Option<Jid>,
    /// Their LID, when known.
    pub lid: Option<Jid>,
}

impl Recipient {
    /// A recipient known by one JID: its number or its LID, by its kind.
    pub fn of(jid: &Jid) -> Self {
        let lid = jid.kind() == JidKind::Lid;
        Self {
            jid: jid.clone(),
            pn: (!lid).then(|| jid.clone()),
            lid: lid.then(|| jid.clone()),
        }
    }

    /// A group participant as a recipient.
    pub fn from_participant(p: &GroupParticipant) -> Self {
        let mut r = Self::of(&p.jid);
        r.pn = p.pn.clone().or(r.pn);
        r.lid = p.lid.clone().or(r.lid);
        r
    }

    /// The JID a recipient is kept under: its number when known (it does
    /// not change when a group moves to LIDs), else how it was named.
    pub fn key(&self) -> &Jid {
        self.pn.as_ref().unwrap_or(&self.jid)
    }

    /// Every JID it is known by (named, number, LID), each once.
    pub fn names(&self) -> Vec<&Jid> {
        let mut all = vec![&self.jid];
        for j in [self.pn.as_ref(), self.lid.as_ref()].into_iter().flatten() {
            if !all.contains(&j) {
                all.push(j);
            }
        }
        all
    }

    /// Whether `other` is the same person (a JID in common).
    pub fn is(&self, other: &Recipient) -> bool {
        let theirs = other.names();
        self.names().iter().any(|j| theirs.contains(j))
    }
}

/// One recipient's receipts of an outgoing message: `pending` while none
/// came yet, then `delivered`, `read`, `played` (only forward).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Whose.
    pub recipient: Recipient,
    /// The furthest status their receipts reached.
    pub status: MessageStatus,
    /// When each was reached (a read implies delivered, at the same time
    /// when no delivery receipt came first).
    pub status_at: StatusTimes,
}

impl Receipt {
    /// When `status` was reached (`None` while `pending`).
    pub fn at(&self) -> Option<time::OffsetDateTime> {
        match self.status {
            MessageStatus::Delivered => self.status_at.delivered,
            MessageStatus::Read => self.status_at.read,
            MessageStatus::Played => self.status_at.played,
            _ => None,
        }
    }

    /// The receipt object of the API (`GET …/messages/{id}/receipts`).
    pub fn to_json(&self) -> Value {
        let t = |t: Option<time::OffsetDateTime>| t.map(rfc3339);
        json!({
            "jid": self.recipient.jid.to_string(),
            "pn": self.recipient.pn.as_ref().map(ToString::to_string),
            "lid": self.recipient.lid.as_ref().map(ToString::to_string),
            "status": self.status.as_str(),
            "at": t(self.at()),
            "statusAt": {
                "delivered": t(self.status_at.delivered),
                "read": t(self.status_at.read),
                "played": t(self.status_at.played),
            },
        })
    }
}

/// The status of a group message its counted recipients' receipts make:
/// the furthest status every one of them reached — `delivered` once each
/// has it on a device, `read` once each read it, `played` once each
/// played it. `None` while one has no receipt yet (`pending`), or there is
/// nobody to count: the message keeps the status the server's ack gave it.
pub fn aggregate_status(
    statuses: impl IntoIterator<Item = MessageStatus>,
) -> Option<MessageStatus> {
    let order = [
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Played,
    ];
    let mut lowest: Option<usize> = None;
    for s in statuses {
        let rank = order.iter().position(|o| *o == s)?;
        lowest = Some(lowest.map_or(rank, |l| l.min(rank)));
    }
    lowest.map(|i| order[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GroupRole;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn a_recipient_is_known_by_any_of_its_jids() {
        let by_lid = Recipient::of(&jid("123456789012345@lid"));
        assert_eq!(by_lid.lid, Some(jid("123456789012345@lid")));
        assert_eq!(by_lid.pn, None);
        let member = Recipient::from_participant(&GroupParticipant {
            jid: jid("123456789012345@lid"),
            pn: Some(jid("14155550123@s.whatsapp.net")),
            lid: Some(jid("123456789012345@lid")),
            role: GroupRole::Member,
        });
        assert_eq!(member.key(), &jid("14155550123@s.whatsapp.net"));
        assert_eq!(member.names().len(), 2);
        assert!(member.is(&by_lid) && by_lid.is(&member));
        assert!(member.is(&Recipient::of(&jid("14155550123@s.whatsapp.net"))));
        assert!(!member.is(&Recipient::of(&jid("14155550142@s.whatsapp.net"))));
    }

    #[test]
    fn a_group_message_has_what_every_recipient_has() {
        use MessageStatus::{Delivered, Pending, Played, Read};
        assert_eq!(aggregate_status([]), None);
        assert_eq!(aggregate_status([Delivered, Pending]), None);
        assert_eq!(aggregate_status([Delivered, Read]), Some(Delivered));
        assert_eq!(aggregate_status([Read, Played, Read]), Some(Read));
        assert_eq!(aggregate_status([Played, Played]), Some(Played));
    }

    #[test]
    fn the_receipt_object_says_when_its_status_was_reached() {
        let at = time::macros::datetime!(2026-01-02 03:04:05 UTC);
        let mut status_at = StatusTimes::default();
        status_at.reach(MessageStatus::Read, at);
        let r = Receipt {
            recipient: Recipient::of(&jid("14155550123@s.whatsapp.net")),
            status: MessageStatus::Read,
            status_at,
        };
        let v = r.to_json();
        assert_eq!(v["status"], "read");
        assert_eq!(v["at"], "2026-01-02T03:04:05.000Z");
        assert_eq!(v["statusAt"]["delivered"], "2026-01-02T03:04:05.000Z");
        assert_eq!(v["lid"], Value::Null);
        let waiting = Receipt {
            status: MessageStatus::Pending,
            status_at: StatusTimes::default(),
            ..r
        };
        assert_eq!(waiting.to_json()["at"], Value::Null);
    }
}
