//! Who is calling, and the scope values that every workspace-data access needs.
//!
//! Store methods over workspace data take a [`WorkspaceScope`], never a bare
//! [`WorkspaceId`]. A scope comes from exactly two places: the authorisation of a
//! request's principal ([`Principal::scope_for`]), or [`WorkspaceScope::for_system`]
//! for background work on records the system created itself (queue messages it
//! sent, integrations found by the scheduler). A handler holding a workspace id
//! from a URL therefore cannot reach another tenant's data without going through
//! the authorisation check.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::WorkspaceId;

/// The verified identity of an API caller (claims of its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub sub: String,
    #[serde(default)]
    pub workspaces: Vec<WorkspaceId>,
    #[serde(default)]
    pub platform_admin: bool,
    /// The user's email address, when the token carries a valid `email`
    /// claim: where previews of reports and alerts go.
    #[serde(default)]
    pub email: Option<String>,
    /// The identity provider vouches for `email` (`email_verified`): only
    /// then does listing it count as its owner's consent.
    #[serde(default)]
    pub email_verified: bool,
}

impl Principal {
    /// The scope for `workspace`, or not-found when the caller may not manage it:
    /// a workspace outside the token is indistinguishable from one that does not
    /// exist.
    pub fn scope_for(&self, workspace: &WorkspaceId) -> Result<WorkspaceScope, Error> {
        if self.workspaces.contains(workspace) {
            Ok(WorkspaceScope(workspace.clone()))
        } else {
            Err(Error::not_found("workspace not found"))
        }
    }

    /// Operator access across workspaces (admin API and dashboard).
    pub fn admin_scope(&self) -> Result<AdminScope, Error> {
        if self.platform_admin {
            Ok(AdminScope(()))
        } else {
            Err(Error::not_found("not found"))
        }
    }
}

/// Proof that the holder may act on one workspace's data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkspaceScope(WorkspaceId);

impl WorkspaceScope {
    /// For background work on a workspace named by a record the system wrote itself
    /// (a queue message, a due integration, a consumed OAuth state). `reason` is
    /// there so every such use reads as deliberate at its call site.
    pub fn for_system(workspace: WorkspaceId, reason: &'static str) -> Self {
        let _ = reason;
        Self(workspace)
    }

    pub fn workspace(&self) -> &WorkspaceId {
        &self.0
    }

    /// Not-found unless `other` is this scope's workspace; for records read by a
    /// key that does not itself contain the workspace.
    pub fn check(&self, other: &WorkspaceId) -> Result<(), Error> {
        if &self.0 == other {
            Ok(())
        } else {
            Err(Error::not_found("not found"))
        }
    }
}

/// Proof of platform-operator rights: cross-workspace reads of sync jobs and queues.
#[derive(Debug, Clone)]
pub struct AdminScope(());

impl AdminScope {
    /// For system processes acting as the platform (DLQ handler, scheduler).
    pub fn for_system(reason: &'static str) -> Self {
        let _ = reason;
        Self(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_only_for_workspaces_in_the_token() {
        let a = WorkspaceId::parse("a").unwrap();
        let b = WorkspaceId::parse("b").unwrap();
        let p = Principal {
            sub: "u1".into(),
            workspaces: vec![a.clone()],
            platform_admin: false,
            email: None,
            email_verified: false,
        };
        assert_eq!(p.scope_for(&a).unwrap().workspace(), &a);
        assert_eq!(p.scope_for(&b).unwrap_err().http_status(), 404);
        assert_eq!(p.admin_scope().unwrap_err().http_status(), 404);
        let scope = p.scope_for(&a).unwrap();
        assert!(scope.check(&b).is_err());
    }
}
