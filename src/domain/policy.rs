//! What may be done to a deployment, once, for every front end: the CLI refuses with these
//! words, the TUI greys out keys and says the same, and the worker checks again before a job
//! runs (the deployment may have changed while the job waited in the queue).
//!
//! Pure rules over a `Deployment` record; whether another job is queued or running for it is
//! the store's concern (`Store::enqueue` refuses a second active job with its own words).

use super::job::{Op, OpKind};
use super::{Deployment, Origin, Status};

/// Why an operation is refused, as one sentence naming the deployment and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

fn who(d: &Deployment) -> String {
    format!("{} ({})", d.name, d.id)
}

/// Checks whether `op` may run on `d` now.
pub fn check(op: OpKind, d: &Deployment) -> Result<(), Refusal> {
    let who = who(d);
    let refuse = |text: String| Err(Refusal(text));
    let imported = d.origin == Origin::Imported;
    match op {
        OpKind::Sync => Ok(()),
        OpKind::Deploy => match d.status {
            Status::Pending => Ok(()),
            s => refuse(format!(
                "{who} is {s}: a deploy runs once, on a new deployment; `proxdeck retry {}` or `proxdeck redeploy {}` work on an existing one",
                d.id, d.id
            )),
        },
        OpKind::Retry => {
            if imported {
                refuse(format!(
                    "{who} was imported by sync: proxdeck did not deploy it, so there is nothing to retry"
                ))
            } else if matches!(d.status, Status::Failed | Status::Pending) {
                Ok(())
            } else {
                refuse(format!(
                    "{who} is {}: retry is for FAILED deployments (and PENDING ones that never ran)",
                    d.status
                ))
            }
        }
        OpKind::Redeploy | OpKind::Rollback => {
            let verb = if op == OpKind::Redeploy {
                "redeploy"
            } else {
                "roll back"
            };
            if imported {
                return refuse(format!(
                    "{who} was imported by sync: proxdeck did not deploy an app there to {verb}"
                ));
            }
            if !matches!(d.status, Status::Running | Status::Stopped | Status::Failed) {
                return refuse(format!(
                    "{who} is {}: only a RUNNING, STOPPED or FAILED deployment can {verb}",
                    d.status
                ));
            }
            if d.ip.is_none() {
                return refuse(format!(
                    "{who} has no guest address yet: `proxdeck retry {}` creates the guest first",
                    d.id
                ));
            }
            if op == OpKind::Rollback && d.previous_commit.is_none() {
                return refuse(format!(
                    "{who} has no previous commit to roll back to (it was deployed once)"
                ));
            }
            Ok(())
        }
        OpKind::Destroy => {
            if imported {
                refuse(format!(
                    "{who} was imported by sync: proxdeck did not create its guest and does not destroy it; `proxdeck forget {}` drops the entry and leaves the guest",
                    d.id
                ))
            } else if d.status == Status::Deleted {
                refuse(format!("{who} is already DELETED"))
            } else if !d.status.is_settled() {
                refuse(format!(
                    "{who} is {}: work is in flight; wait for it to finish (or cancel it), then destroy",
                    d.status
                ))
            } else {
                Ok(())
            }
        }
        OpKind::Start | OpKind::Stop | OpKind::Restart => {
            // On a host proxdeck did not create, the action is on the app's service only.
            if !matches!(d.status, Status::Running | Status::Stopped) {
                refuse(format!(
                    "{who} is {}: start, stop and restart work on RUNNING or STOPPED deployments{}",
                    d.status,
                    if d.status == Status::Failed {
                        format!(" (`proxdeck retry {}` resumes it)", d.id)
                    } else {
                        String::new()
                    }
                ))
            } else if d.origin == Origin::Host {
                if d.ip.is_none() {
                    refuse(format!("{who} has no host address recorded"))
                } else {
                    Ok(())
                }
            } else if d.vmid.is_none() || d.node.is_none() {
                refuse(format!(
                    "{who} has no guest on Proxmox (no vmid or node recorded)"
                ))
            } else {
                Ok(())
            }
        }
        OpKind::Snapshot | OpKind::Restore => {
            let verb = if op == OpKind::Snapshot {
                "take a snapshot of"
            } else {
                "restore"
            };
            if d.origin == Origin::Host {
                refuse(format!(
                    "{who} runs on a host proxdeck did not create: snapshots are of Proxmox guests; snapshot that host where it is managed"
                ))
            } else if imported && op == OpKind::Restore {
                refuse(format!(
                    "{who} was imported by sync: proxdeck did not deploy an app there to restore and check; roll it back in Proxmox"
                ))
            } else if d.vmid.is_none() || d.node.is_none() {
                refuse(format!(
                    "{who} has no guest on Proxmox yet (no vmid or node recorded): nothing to {verb}"
                ))
            } else if !matches!(d.status, Status::Running | Status::Stopped | Status::Failed) {
                refuse(format!(
                    "{who} is {}: only a RUNNING, STOPPED or FAILED deployment's guest can {verb}; wait for its work to finish",
                    d.status
                ))
            } else {
                Ok(())
            }
        }
        OpKind::Domains => {
            if imported {
                refuse(format!(
                    "{who} was imported by sync: proxdeck did not deploy an app there to put Caddy in front of"
                ))
            } else if !matches!(d.status, Status::Running | Status::Stopped | Status::Failed) {
                refuse(format!(
                    "{who} is {}: domains change on a RUNNING, STOPPED or FAILED deployment; wait for its work to finish",
                    d.status
                ))
            } else if d.ip.is_none() {
                refuse(format!(
                    "{who} has no guest address yet: `proxdeck retry {}` creates the guest first",
                    d.id
                ))
            } else {
                Ok(())
            }
        }
        OpKind::Forget => {
            let gone = d.status == Status::Deleted || d.missing_since.is_some();
            if !imported && !gone {
                refuse(format!(
                    "{who} is a deployment proxdeck made and its guest exists: `proxdeck destroy {}` removes it; forget is for imported entries and guests that are gone (if its guest or host cannot be reached any more, `proxdeck forget {} --force` drops the entry and names what may be left behind)",
                    d.id, d.id
                ))
            } else if d.status.is_in_flight() {
                refuse(format!("{who} is {}: wait for it to finish", d.status))
            } else {
                Ok(())
            }
        }
    }
}

/// Checks an operation with its arguments: `forget --force` may also drop a deployment
/// proxdeck made whose guest or host cannot be reached (never one with work in flight).
pub fn check_op(op: &Op, d: &Deployment) -> Result<(), Refusal> {
    match op {
        Op::Forget { force: true } if d.status.is_in_flight() => Err(Refusal(format!(
            "{} is {}: wait for it to finish",
            who(d),
            d.status
        ))),
        Op::Forget { force: true } => Ok(()),
        other => check(other.kind(), d),
    }
}

/// The operations `check` allows on `d`, in menu order (sync is not about one deployment;
/// snapshots have their own list in the details screen, where a restore names its snapshot).
pub fn allowed(d: &Deployment) -> Vec<OpKind> {
    OpKind::ALL
        .into_iter()
        .filter(|op| {
            !matches!(
                op,
                OpKind::Sync
                    | OpKind::Deploy
                    | OpKind::Snapshot
                    | OpKind::Restore
                    | OpKind::Domains
            ) && check(*op, d).is_ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeploymentId;

    fn dep(status: Status, origin: Origin) -> Deployment {
        Deployment {
            id: DeploymentId("k3x9ta".into()),
            name: "shop".into(),
            status,
            origin,
            ip: Some("10.0.0.5".into()),
            vmid: Some(120),
            node: Some("pve".into()),
            ..Deployment::default()
        }
    }

    #[test]
    fn an_imported_entry_is_never_destroyed_and_the_words_name_forget() {
        let d = dep(Status::Running, Origin::Imported);
        let e = check(OpKind::Destroy, &d).unwrap_err();
        assert!(e.0.contains("imported by sync"), "{e}");
        assert!(e.0.contains("proxdeck forget k3x9ta"), "{e}");
        assert!(check(OpKind::Forget, &d).is_ok());
        assert!(check(OpKind::Start, &d).is_ok());
        assert!(check(OpKind::Retry, &d).is_err());
        assert!(check(OpKind::Redeploy, &d).is_err());
    }

    #[test]
    fn the_lifecycle_decides_what_runs() {
        let failed = dep(Status::Failed, Origin::Terraform);
        assert_eq!(
            allowed(&failed),
            vec![OpKind::Retry, OpKind::Redeploy, OpKind::Destroy]
        );
        let mut running = dep(Status::Running, Origin::Terraform);
        assert_eq!(
            allowed(&running),
            vec![
                OpKind::Redeploy,
                OpKind::Destroy,
                OpKind::Start,
                OpKind::Stop,
                OpKind::Restart
            ]
        );
        running.previous_commit = Some("abc".into());
        assert!(allowed(&running).contains(&OpKind::Rollback));
        let busy = dep(Status::Provisioning, Origin::Terraform);
        assert!(allowed(&busy).is_empty());
        assert!(
            check(OpKind::Destroy, &busy)
                .unwrap_err()
                .0
                .contains("in flight")
        );
        let deleted = dep(Status::Deleted, Origin::Terraform);
        assert_eq!(allowed(&deleted), vec![OpKind::Forget]);
        // A --host deployment's start, stop and restart act on the app's service.
        let mut host = dep(Status::Running, Origin::Host);
        host.vmid = None;
        host.node = None;
        host.ip = Some("192.0.2.7".into());
        for op in [OpKind::Start, OpKind::Stop, OpKind::Restart] {
            assert!(check(op, &host).is_ok(), "{op}");
        }
        let mut failed_host = host.clone();
        failed_host.status = Status::Failed;
        assert!(
            check(OpKind::Start, &failed_host)
                .unwrap_err()
                .0
                .contains("retry")
        );
        host.ip = None;
        assert!(
            check(OpKind::Stop, &host)
                .unwrap_err()
                .0
                .contains("no host address")
        );
        assert!(check_op(&Op::Forget { force: true }, &running).is_ok());
        assert!(check_op(&Op::Forget { force: false }, &running).is_err());
        assert!(check_op(&Op::Forget { force: true }, &busy).is_err());
        let pending = dep(Status::Pending, Origin::Terraform);
        assert!(check(OpKind::Deploy, &pending).is_ok());
        assert!(check(OpKind::Deploy, &failed).is_err());
    }

    #[test]
    fn domains_change_on_settled_deployments_proxdeck_made() {
        assert!(check(OpKind::Domains, &dep(Status::Running, Origin::Host)).is_ok());
        assert!(check(OpKind::Domains, &dep(Status::Failed, Origin::Terraform)).is_ok());
        let e = check(OpKind::Domains, &dep(Status::Running, Origin::Imported)).unwrap_err();
        assert!(e.0.contains("imported"), "{e}");
        let e = check(OpKind::Domains, &dep(Status::Deploying, Origin::Host)).unwrap_err();
        assert!(e.0.contains("DEPLOYING"), "{e}");
        let mut no_ip = dep(Status::Failed, Origin::Terraform);
        no_ip.ip = None;
        assert!(
            check(OpKind::Domains, &no_ip)
                .unwrap_err()
                .0
                .contains("retry")
        );
    }

    #[test]
    fn snapshots_are_of_proxmox_guests_and_restore_needs_an_app_proxdeck_deployed() {
        let running = dep(Status::Running, Origin::Terraform);
        assert!(check(OpKind::Snapshot, &running).is_ok());
        assert!(check(OpKind::Restore, &running).is_ok());
        let host = dep(Status::Running, Origin::Host);
        let e = check(OpKind::Snapshot, &host).unwrap_err();
        assert!(e.0.contains("host proxdeck did not create"), "{e}");
        let imported = dep(Status::Running, Origin::Imported);
        assert!(check(OpKind::Snapshot, &imported).is_ok());
        assert!(
            check(OpKind::Restore, &imported)
                .unwrap_err()
                .0
                .contains("imported")
        );
        let busy = dep(Status::Deploying, Origin::Terraform);
        assert!(
            check(OpKind::Restore, &busy)
                .unwrap_err()
                .0
                .contains("DEPLOYING")
        );
        let mut no_guest = dep(Status::Failed, Origin::Terraform);
        no_guest.vmid = None;
        assert!(
            check(OpKind::Snapshot, &no_guest)
                .unwrap_err()
                .0
                .contains("no guest")
        );
    }
}
