use std::collections::HashMap;

use wagate_domain::{Capability, CapabilitySet, Role};

/// Which capabilities each role has. Roles not in the map have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePolicy {
    roles: HashMap<String, CapabilitySet>,
}

impl Default for RolePolicy {
    /// The table of the API contract: `owner` and `admin` have every
    /// capability, `member` read and send, `viewer` read.
    fn default() -> Self {
        let all = CapabilitySet::ALL;
        let member = CapabilitySet::of([Capability::Read, Capability::Send]);
        let viewer = CapabilitySet::of([Capability::Read]);
        Self::new([
            ("owner", all),
            ("admin", all),
            ("member", member),
            ("viewer", viewer),
        ])
    }
}

impl RolePolicy {
    /// A policy of exactly these roles.
    pub fn new<'a>(roles: impl IntoIterator<Item = (&'a str, CapabilitySet)>) -> Self {
        Self {
            roles: roles.into_iter().map(|(r, c)| (r.to_owned(), c)).collect(),
        }
    }

    /// The default table with `overrides` replacing or adding roles.
    pub fn with_overrides<'a>(
        overrides: impl IntoIterator<Item = (&'a str, CapabilitySet)>,
    ) -> Self {
        let mut policy = Self::default();
        for (role, caps) in overrides {
            policy.roles.insert(role.to_owned(), caps);
        }
        policy
    }

    /// The capabilities of `role` (none for an unknown role).
    pub fn capabilities(&self, role: &Role) -> CapabilitySet {
        self.roles
            .get(role.as_str())
            .copied()
            .unwrap_or(CapabilitySet::EMPTY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_and_overrides() {
        let p = RolePolicy::default();
        assert_eq!(p.capabilities(&Role::new("owner")), CapabilitySet::ALL);
        assert_eq!(
            p.capabilities(&Role::new("member")).to_string(),
            "read,send"
        );
        assert_eq!(p.capabilities(&Role::new("viewer")).to_string(), "read");
        assert!(p.capabilities(&Role::new("guest")).is_empty());
        let p = RolePolicy::with_overrides([("guest", CapabilitySet::of([Capability::Read]))]);
        assert_eq!(p.capabilities(&Role::new("guest")).to_string(), "read");
        assert_eq!(p.capabilities(&Role::new("admin")), CapabilitySet::ALL);
    }
}
