//! Polls (`type: "poll"`): the question and options a poll message
//! carries, the votes people cast on it and their tally.

use std::fmt;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::message::rfc3339;
use crate::{DomainError, Jid, MessageId};

/// Fewest options a poll has.
pub const MIN_POLL_OPTIONS: usize = 2;

/// Most options a poll has (WhatsApp's limit).
pub const MAX_POLL_OPTIONS: usize = 12;

/// Longest question accepted (WhatsApp's apps stop at 255 characters).
pub const MAX_POLL_QUESTION_CHARS: usize = 255;

/// Longest option accepted (WhatsApp's apps stop at 100 characters).
pub const MAX_POLL_OPTION_CHARS: usize = 100;

/// A poll: its question, 2 to 12 distinct options, and how many of them
/// one voter may pick (`selectableCount`, 1 to the number of options).
///
/// The message secret WhatsApp needs to open the votes is not part of it:
/// the live adapter's device store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct Poll {
    question: String,
    options: Vec<String>,
    selectable_count: u8,
}

impl Poll {
    /// A poll.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `poll.question` (empty, over 255 characters,
    /// control characters), `poll.options` (fewer than 2 or more than 12,
    /// one empty, over 100 characters, with control characters, or two the
    /// same) or `poll.selectableCount` (0 or more than the options).
    pub fn new(
        question: String,
        options: Vec<String>,
        selectable_count: u32,
    ) -> Result<Self, DomainError> {
        if question.trim().is_empty()
            || question.chars().count() > MAX_POLL_QUESTION_CHARS
            || question.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(DomainError::new(
                "poll.question",
                format!("must be 1 to {MAX_POLL_QUESTION_CHARS} characters, no control characters"),
            ));
        }
        if !(MIN_POLL_OPTIONS..=MAX_POLL_OPTIONS).contains(&options.len()) {
            return Err(DomainError::new(
                "poll.options",
                format!("must hold {MIN_POLL_OPTIONS} to {MAX_POLL_OPTIONS} options"),
            ));
        }
        for (i, o) in options.iter().enumerate() {
            if o.trim().is_empty()
                || o.chars().count() > MAX_POLL_OPTION_CHARS
                || o.chars().any(char::is_control)
            {
                return Err(DomainError::new(
                    "poll.options",
                    format!(
                        "each option must be 1 to {MAX_POLL_OPTION_CHARS} characters, no control characters"
                    ),
                ));
            }
            // A vote names options by a hash of their text: two the same
            // could not be told apart.
            if options[..i].contains(o) {
                return Err(DomainError::new(
                    "poll.options",
                    "must be different from each other",
                ));
            }
        }
        let selectable_count = u8::try_from(selectable_count)
            .ok()
            .filter(|n| *n >= 1 && usize::from(*n) <= options.len())
            .ok_or_else(|| {
                DomainError::new(
                    "poll.selectableCount",
                    "must be from 1 to the number of options",
                )
            })?;
        Ok(Self {
            question,
            options,
            selectable_count,
        })
    }

    /// The question.
    pub fn question(&self) -> &str {
        &self.question
    }

    /// The options, in order.
    pub fn options(&self) -> &[String] {
        &self.options
    }

    /// How many options one voter may pick.
    pub fn selectable_count(&self) -> u8 {
        self.selectable_count
    }

    /// `{ "question", "options", "selectableCount" }`.
    pub fn to_json(&self) -> Value {
        json!({
            "question": self.question,
            "options": self.options,
            "selectableCount": self.selectable_count,
        })
    }

    /// Reads what [`Poll::to_json`] wrote.
    ///
    /// # Errors
    ///
    /// As [`Poll::new`]; `poll` when `v` is not such an object.
    pub fn from_json(v: &Value) -> Result<Self, DomainError> {
        let bad = || DomainError::new("poll", "must be {question, options, selectableCount}");
        let question = v.get("question").and_then(Value::as_str).ok_or_else(bad)?;
        let options = v
            .get("options")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(|o| o.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()?;
        let count = v
            .get("selectableCount")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(bad)?;
        Self::new(question.to_owned(), options, count)
    }

    /// The options a vote picked, in the poll's order, out of the hashes
    /// WhatsApp carries (`hash` of each option's text; unknown ones are
    /// left out, as WhatsApp's apps do).
    pub fn picked<H: PartialEq>(&self, chosen: &[H], hash: impl Fn(&str) -> H) -> Vec<String> {
        self.options
            .iter()
            .filter(|o| chosen.contains(&hash(o)))
            .cloned()
            .collect()
    }
}

// A poll's question can be as private as a message's text.
impl fmt::Debug for Poll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poll")
            .field("options", &self.options.len())
            .field("selectable_count", &self.selectable_count)
            .finish_non_exhaustive()
    }
}

/// A poll and every voter's current vote: what `GET …/messages/{id}/poll`
/// shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollTally {
    /// The poll message.
    pub message: MessageId,
    /// The poll.
    pub poll: Poll,
    /// Each voter's latest vote (an empty selection: taken back).
    pub votes: Vec<PollVote>,
}

impl PollTally {
    /// `{ "message", "question", "selectableCount", "options": [{ "name",
    /// "votes", "voters" }], "voters", "updatedAt" }`: `voters` counts the
    /// people whose vote picks something now.
    pub fn to_json(&self) -> Value {
        let options: Vec<Value> = self
            .poll
            .options
            .iter()
            .map(|name| {
                let voters: Vec<String> = self
                    .votes
                    .iter()
                    .filter(|v| v.selected.contains(name))
                    .map(|v| v.voter.to_string())
                    .collect();
                json!({ "name": name, "votes": voters.len(), "voters": voters })
            })
            .collect();
        json!({
            "message": self.message.as_str(),
            "question": self.poll.question,
            "selectableCount": self.poll.selectable_count,
            "options": options,
            "voters": self.votes.iter().filter(|v| !v.selected.is_empty()).count(),
            "updatedAt": self.votes.iter().map(|v| v.at).max().map(rfc3339),
        })
    }
}

/// One person's current vote on a poll.
#[derive(Clone, PartialEq, Eq)]
pub struct PollVote {
    /// Who voted.
    pub voter: Jid,
    /// The options they picked, in the poll's order (empty: they took
    /// their vote back).
    pub selected: Vec<String>,
    /// When they voted (their clock).
    pub at: OffsetDateTime,
}

impl fmt::Debug for PollVote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollVote")
            .field("voter", &self.voter)
            .field("selected", &self.selected.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn polls_are_checked_and_round_trip() {
        let p = Poll::new("Lunch?".into(), opts(&["Pizza", "Sushi"]), 1).unwrap();
        assert_eq!(Poll::from_json(&p.to_json()).unwrap(), p);
        assert_eq!(p.to_json()["selectableCount"], 1);
        for (q, o, n, field) in [
            ("", opts(&["a", "b"]), 1, "poll.question"),
            ("q", opts(&["a"]), 1, "poll.options"),
            ("q", opts(&["a"; 13]), 1, "poll.options"),
            ("q", opts(&["a", "a"]), 1, "poll.options"),
            ("q", opts(&["a", " "]), 1, "poll.options"),
            ("q", opts(&["a", "b"]), 0, "poll.selectableCount"),
            ("q", opts(&["a", "b"]), 3, "poll.selectableCount"),
            ("q", opts(&["a", "b"]), 300, "poll.selectableCount"),
        ] {
            assert_eq!(Poll::new(q.into(), o, n).unwrap_err().field, field);
        }
        assert!(
            Poll::new(
                "q".into(),
                opts(&["x"; 12])
                    .iter()
                    .enumerate()
                    .map(|(i, _)| i.to_string())
                    .collect(),
                12
            )
            .is_ok()
        );
        assert!(!format!("{p:?}").contains("Lunch"));
    }

    #[test]
    fn votes_pick_by_hash_and_tally_by_option() {
        let p = Poll::new("Lunch?".into(), opts(&["Pie", "Sushi", "Ramen!"]), 2).unwrap();
        // In the poll's order, unknown hashes left out.
        assert_eq!(p.picked(&[6, 3, 99], str::len), opts(&["Pie", "Ramen!"]));
        let at = time::macros::datetime!(2026-12-05 03:00 UTC);
        let ana = Jid::parse("14155550123@s.whatsapp.net").unwrap();
        let bo = Jid::parse("14155550124@s.whatsapp.net").unwrap();
        let votes = [
            PollVote {
                voter: ana.clone(),
                selected: opts(&["Pie", "Sushi"]),
                at,
            },
            PollVote {
                voter: bo,
                selected: Vec::new(),
                at,
            },
        ];
        let id = MessageId::parse("3EB0P").unwrap();
        let tally = |votes: Vec<PollVote>| {
            PollTally {
                message: id.clone(),
                poll: p.clone(),
                votes,
            }
            .to_json()
        };
        let t = tally(votes.to_vec());
        assert_eq!(t["options"][0]["votes"], 1);
        assert_eq!(t["options"][0]["voters"][0], ana.to_string());
        assert_eq!(t["options"][2]["votes"], 0);
        assert_eq!(t["voters"], 1);
        assert_eq!(t["updatedAt"], "2026-12-05T03:00:00.000Z");
        assert_eq!(tally(Vec::new())["updatedAt"], Value::Null);
    }
}
