//! Typing and presence: what a chat shows while someone writes, and whether
//! someone is online. Ephemeral: never stored as messages.

use std::fmt;

use crate::DomainError;

/// What a person is doing in a chat (WhatsApp's "typing…").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatState {
    /// Writing a message.
    Typing,
    /// Recording a voice note.
    Recording,
    /// Stopped (the indicator goes away).
    Paused,
}

impl ChatState {
    /// Every state.
    pub const ALL: [ChatState; 3] = [ChatState::Typing, ChatState::Recording, ChatState::Paused];

    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatState::Typing => "typing",
            ChatState::Recording => "recording",
            ChatState::Paused => "paused",
        }
    }

    /// Parses the API's name.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `state`.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == input)
            .ok_or_else(|| DomainError::new("state", "must be one of typing, recording, paused"))
    }
}

impl fmt::Display for ChatState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_states_round_trip() {
        for s in ChatState::ALL {
            assert_eq!(ChatState::parse(s.as_str()), Ok(s));
        }
        assert_eq!(ChatState::parse("composing").unwrap_err().field, "state");
    }
}
