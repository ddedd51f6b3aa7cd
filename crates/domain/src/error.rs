use thiserror::Error;

/// Why a value could not be parsed into a domain type.
///
/// `field` names the input (as the API calls it, e.g. `jid`, `name`) so the
/// HTTP layer can say which part of a request was wrong; `message` is meant
/// for a person and never contains secrets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct DomainError {
    /// The input the error is about, in the API's own spelling.
    pub field: &'static str,
    /// What was wrong and what would be accepted.
    pub message: String,
}

impl DomainError {
    /// An error about `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
