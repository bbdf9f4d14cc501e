//! Jobs: every operation a user asks for (deploy, retry, redeploy, rollback, destroy, start,
//! stop, restart, forget, sync, snapshot, restore, domains) is a `Job` row in the store, run by proxdeck's worker process.
//! Owns the operation's kind and arguments ([`Op`]), the job's states and their meaning, and
//! the typed outcome a finished job leaves. Pure data: the store persists it, the engine runs
//! it, the front ends show it.

use super::{DeploymentId, Overrides};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A job's number in the store (increasing: queue order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What kind of operation a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Deploy,
    Retry,
    Redeploy,
    Rollback,
    Destroy,
    Start,
    Stop,
    Restart,
    Forget,
    Sync,
    Snapshot,
    Restore,
    Domains,
}

impl OpKind {
    pub const ALL: [OpKind; 13] = [
        OpKind::Deploy,
        OpKind::Retry,
        OpKind::Redeploy,
        OpKind::Rollback,
        OpKind::Destroy,
        OpKind::Start,
        OpKind::Stop,
        OpKind::Restart,
        OpKind::Forget,
        OpKind::Sync,
        OpKind::Snapshot,
        OpKind::Restore,
        OpKind::Domains,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Deploy => "deploy",
            OpKind::Retry => "retry",
            OpKind::Redeploy => "redeploy",
            OpKind::Rollback => "rollback",
            OpKind::Destroy => "destroy",
            OpKind::Start => "start",
            OpKind::Stop => "stop",
            OpKind::Restart => "restart",
            OpKind::Forget => "forget",
            OpKind::Sync => "sync",
            OpKind::Snapshot => "snapshot",
            OpKind::Restore => "restore",
            OpKind::Domains => "domains",
        }
    }

    pub fn parse(s: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Operations about one deployment (all but sync).
    pub fn has_target(self) -> bool {
        self != OpKind::Sync
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation with its arguments, as a job stores it. No secrets: env values stay in the
/// deployment's secrets file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// Run a deployment recorded as PENDING (the front end validated and recorded it).
    Deploy,
    /// Run a FAILED (or interrupted PENDING) deployment's stages again; `changes` (new
    /// commands, health check, folder, packages) become the deployment's first.
    Retry {
        #[serde(default, skip_serializing_if = "Overrides::is_empty")]
        changes: Overrides,
    },
    /// Fetch the ref (or this new one, which becomes the deployment's), rebuild, restart;
    /// with `changes` applied first, as `Retry`.
    Redeploy {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        git_ref: Option<String>,
        #[serde(default, skip_serializing_if = "Overrides::is_empty")]
        changes: Overrides,
    },
    /// Back to the previous good release (or the kept release of commit `to`), without
    /// building.
    Rollback {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// Remove the guest (or the app from an existing host); the record stays as DELETED.
    /// `force`: record DELETED even when the guest or host cannot be reached, naming what
    /// may be left behind.
    Destroy {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    Start,
    Stop,
    Restart,
    /// Drop an entry proxdeck owns no guest for (`force`: also one whose guest or host cannot
    /// be reached, naming what may be left behind).
    Forget {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    /// Import the cluster's guests, update known ones.
    Sync,
    /// Take a snapshot of the deployment's whole guest through the Proxmox API (this name,
    /// or one made from the deployed commit).
    Snapshot {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Roll the guest back to one of its snapshots: stop, roll back, start, health check.
    Restore {
        snapshot: String,
    },
    /// Add a domain to the deployment or remove one: Caddy's config on the guest is written
    /// again and reloaded, then the app is checked through its first domain.
    Domains {
        change: super::DomainChange,
        name: String,
    },
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Deploy => OpKind::Deploy,
            Op::Retry { .. } => OpKind::Retry,
            Op::Redeploy { .. } => OpKind::Redeploy,
            Op::Rollback { .. } => OpKind::Rollback,
            Op::Destroy { .. } => OpKind::Destroy,
            Op::Start => OpKind::Start,
            Op::Stop => OpKind::Stop,
            Op::Restart => OpKind::Restart,
            Op::Forget { .. } => OpKind::Forget,
            Op::Sync => OpKind::Sync,
            Op::Snapshot { .. } => OpKind::Snapshot,
            Op::Restore { .. } => OpKind::Restore,
            Op::Domains { .. } => OpKind::Domains,
        }
    }
}

/// Where a job is in its life. `Queued → Running → Succeeded | Failed | Cancelled`; a queued
/// job can also be cancelled before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Queued or running: the job still has work to do.
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a finished job ended, in words a user can act on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// One line: what happened (`shop (k3x9ta) is RUNNING at http://...`), or why it failed.
    pub message: String,
    /// What the user can do next, after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The exit code a CLI following the job ends with: 0 done, 1 failed, 2 refused input.
    pub code: i32,
    /// What the operation reports beyond the message, for `--json` (sync: its report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl Outcome {
    /// A job that did what it was asked: `message` says what it left behind.
    pub fn done(message: impl Into<String>) -> Outcome {
        Outcome {
            message: message.into(),
            next: None,
            code: 0,
            detail: None,
        }
    }

    /// A job that failed (`code` 1) or was refused its input (`code` 2), with the next step
    /// when there is one.
    pub fn failed(message: impl Into<String>, next: Option<String>, code: i32) -> Outcome {
        Outcome {
            message: message.into(),
            next,
            code,
            detail: None,
        }
    }

    /// The same outcome, with what the operation reports beyond its message (`--json`).
    pub fn with_detail(mut self, detail: Option<serde_json::Value>) -> Outcome {
        self.detail = detail;
        self
    }
}

/// One job, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub op: Op,
    /// The deployment it is about (none for sync).
    pub deployment: Option<DeploymentId>,
    pub state: JobState,
    /// Who asked: `user@host via cli|tui`.
    pub requested_by: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Somebody asked the job to stop.
    pub cancel_requested: bool,
    /// The deployment's last log sequence number when the job was queued: its own lines
    /// come after it.
    pub log_from: i64,
    pub outcome: Option<Outcome>,
    /// For a queued job: its place in the queue (1 = next to start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
}

impl Job {
    pub fn kind(&self) -> OpKind {
        self.op.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_through_json_without_extra_fields() {
        for op in [
            Op::Deploy,
            Op::Redeploy {
                git_ref: None,
                changes: Overrides::default(),
            },
            Op::Redeploy {
                git_ref: Some("v2".into()),
                changes: Overrides::default(),
            },
            Op::Retry {
                changes: Overrides {
                    health_path: Some("/healthz".into()),
                    apt: vec!["libpq-dev".into()],
                    ..Overrides::default()
                },
            },
            Op::Sync,
            Op::Snapshot { name: None },
            Op::Restore {
                snapshot: "pd-abc1234".into(),
            },
            Op::Domains {
                change: super::super::DomainChange::Add,
                name: "shop.example.com".into(),
            },
        ] {
            let text = serde_json::to_string(&op).unwrap();
            assert_eq!(serde_json::from_str::<Op>(&text).unwrap(), op, "{text}");
        }
        let plain = Op::Redeploy {
            git_ref: None,
            changes: Overrides::default(),
        };
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"op":"redeploy"}"#
        );
        // Jobs queued before retry took changes read as they were written.
        let old: Op = serde_json::from_str(r#"{"op":"retry"}"#).unwrap();
        assert_eq!(
            old,
            Op::Retry {
                changes: Overrides::default()
            }
        );
        for k in OpKind::ALL {
            assert_eq!(OpKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn only_queued_and_running_are_active() {
        assert!(JobState::Queued.is_active() && JobState::Running.is_active());
        for s in [JobState::Succeeded, JobState::Failed, JobState::Cancelled] {
            assert!(!s.is_active());
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
    }
}
