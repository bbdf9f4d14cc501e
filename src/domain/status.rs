//! The deployment lifecycle: `Status`, `Stage`, and the transition graph.
//!
//! The graph is the product's: `PENDING → PROVISIONING → DEPLOYING → RUNNING`, `FAILED` from
//! the working states, `RUNNING ⇄ STOPPED`, and any settled state `→ DESTROYING → DELETED`.
//! Every status change in proxdeck goes through [`Status::check_transition`], so a transition
//! outside the graph is refused by code, not by convention.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    #[default]
    Pending,
    Provisioning,
    Deploying,
    Running,
    Stopped,
    Failed,
    Destroying,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a deployment cannot go from {from} to {to}")]
pub struct IllegalTransition {
    pub from: Status,
    pub to: Status,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Pending,
        Status::Provisioning,
        Status::Deploying,
        Status::Running,
        Status::Stopped,
        Status::Failed,
        Status::Destroying,
        Status::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Provisioning => "PROVISIONING",
            Status::Deploying => "DEPLOYING",
            Status::Running => "RUNNING",
            Status::Stopped => "STOPPED",
            Status::Failed => "FAILED",
            Status::Destroying => "DESTROYING",
            Status::Deleted => "DELETED",
        }
    }

    /// A settled deployment has no work in flight; only settled ones may be destroyed.
    /// PENDING counts: a deployment interrupted before provisioning must stay removable.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Status::Pending | Status::Running | Status::Stopped | Status::Failed
        )
    }

    /// Work is in flight (a process may be acting on the guest right now).
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            Status::Provisioning | Status::Deploying | Status::Destroying
        )
    }

    /// Counts as "active" in the statistics: a guest exists and proxdeck keeps it.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Status::Provisioning | Status::Deploying | Status::Running | Status::Stopped
        )
    }

    pub fn can_transition_to(self, to: Status) -> bool {
        use Status::*;
        match (self, to) {
            (Pending, Provisioning) => true,
            (Provisioning, Deploying) => true,
            (Deploying, Running) => true,
            // A failure while work is in flight, or a pending deployment whose preflight failed.
            (Pending | Provisioning | Deploying, Failed) => true,
            // A destroy that could not finish: the guest may still exist, the user can retry.
            (Destroying, Failed) => true,
            // Retry resumes at the stage that failed; redeploy builds again on the same guest.
            (Failed, Provisioning) => true,
            (Failed | Running | Stopped, Deploying) => true,
            (Running, Stopped) | (Stopped, Running) => true,
            (from, Destroying) if from.is_settled() => true,
            (Destroying, Deleted) => true,
            _ => false,
        }
    }

    pub fn check_transition(self, to: Status) -> Result<(), IllegalTransition> {
        if self.can_transition_to(to) {
            Ok(())
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// The stages of one deployment, in the order the pipeline runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Validate,
    Preflight,
    Render,
    TerraformInit,
    TerraformApply,
    Address,
    Ssh,
    Provision,
    HealthCheck,
    Done,
    Destroy,
}

impl Stage {
    pub const ALL: [Stage; 11] = [
        Stage::Validate,
        Stage::Preflight,
        Stage::Render,
        Stage::TerraformInit,
        Stage::TerraformApply,
        Stage::Address,
        Stage::Ssh,
        Stage::Provision,
        Stage::HealthCheck,
        Stage::Done,
        Stage::Destroy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Validate => "validate",
            Stage::Preflight => "preflight",
            Stage::Render => "render",
            Stage::TerraformInit => "terraform-init",
            Stage::TerraformApply => "terraform-apply",
            Stage::Address => "address",
            Stage::Ssh => "ssh",
            Stage::Provision => "provision",
            Stage::HealthCheck => "health-check",
            Stage::Done => "done",
            Stage::Destroy => "destroy",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown stage {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn happy_path_is_allowed() {
        for (a, b) in [
            (Pending, Provisioning),
            (Provisioning, Deploying),
            (Deploying, Running),
            (Running, Stopped),
            (Stopped, Running),
            (Running, Destroying),
            (Destroying, Deleted),
        ] {
            assert!(a.check_transition(b).is_ok(), "{a} -> {b}");
        }
    }

    #[test]
    fn failures_come_only_from_work_in_flight() {
        assert!(Provisioning.can_transition_to(Failed));
        assert!(Deploying.can_transition_to(Failed));
        assert!(!Running.can_transition_to(Failed));
        assert!(!Stopped.can_transition_to(Failed));
        assert!(!Deleted.can_transition_to(Failed));
    }

    #[test]
    fn illegal_transitions_are_refused_with_both_ends_named() {
        let err = Pending.check_transition(Running).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a deployment cannot go from PENDING to RUNNING"
        );
        assert!(Deleted.check_transition(Running).is_err());
        assert!(Deleted.check_transition(Destroying).is_err());
        assert!(Provisioning.check_transition(Destroying).is_err());
        assert!(Running.check_transition(Provisioning).is_err());
        assert!(Stopped.check_transition(Deleted).is_err());
    }

    #[test]
    fn only_settled_states_may_be_destroyed() {
        for s in Status::ALL {
            assert_eq!(s.can_transition_to(Destroying), s.is_settled(), "{s}");
        }
    }

    #[test]
    fn deleted_is_terminal() {
        for s in Status::ALL {
            assert!(!Deleted.can_transition_to(s), "DELETED -> {s}");
        }
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>().unwrap(), s);
        }
        assert!("BOGUS".parse::<Status>().is_err());
    }
}
