//! What the port is asked to change in a group.

use wagate_domain::{GroupDescription, GroupSettingsPatch, GroupSubject};

/// A change of a group's subject, description and settings; `None` fields
/// stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupChange {
    /// A new subject.
    pub subject: Option<GroupSubject>,
    /// A new description (empty: removed).
    pub description: Option<GroupDescription>,
    /// New settings.
    pub settings: GroupSettingsPatch,
}

impl GroupChange {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.subject.is_none() && self.description.is_none() && self.settings.is_empty()
    }
}
