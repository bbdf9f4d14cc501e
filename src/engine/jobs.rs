//! Who is working on which deployment, across processes: an exclusive advisory lock on
//! `locks/<id>.lock` in the data dir, held for as long as a process runs a deployment's stages
//! (deploy, retry, redeploy, destroy). The OS releases it when the process dies, however it dies.
//!
//! That gives two guarantees the product promises: two proxdeck processes on one data dir never
//! run the same deployment at once, and a deployment left in flight by a process that was
//! killed is recognised (in flight, but nobody holds its lock) and marked FAILED as interrupted,
//! so the user can retry or destroy it.

use super::DataPaths;
use crate::domain::{Deployment, DeploymentId, Status};
use crate::store::StoreError;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0} is being worked on by another proxdeck process right now; wait for it to finish")]
    Busy(DeploymentId),
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held while this process works on a deployment; dropping it releases the lock.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

fn lock_path(paths: &DataPaths, id: &DeploymentId) -> PathBuf {
    paths.root.join("locks").join(format!("{}.lock", id.0))
}

impl JobLock {
    /// Takes the deployment's lock, or fails at once with `Busy` when another process has it.
    pub fn acquire(paths: &DataPaths, id: &DeploymentId) -> Result<JobLock, JobError> {
        let path = lock_path(paths, id);
        let io = |source| JobError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(JobLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(JobError::Busy(id.clone())),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// True when some process holds the deployment's lock.
    pub fn is_held(paths: &DataPaths, id: &DeploymentId) -> Result<bool, JobError> {
        match JobLock::acquire(paths, id) {
            Ok(_probe) => Ok(false),
            Err(JobError::Busy(_)) => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// Marks every in-flight deployment that no process is working on as FAILED (interrupted),
/// and returns them. Runs when proxdeck opens its data dir, before any command or the TUI.
pub fn recover_interrupted(
    paths: &DataPaths,
    store: &mut crate::store::Store,
) -> Result<Vec<Deployment>, StoreError> {
    let mut recovered = Vec::new();
    for d in store.in_flight()? {
        if let Some(d) = recover_if_interrupted(paths, store, &d.id)? {
            recovered.push(d);
        }
    }
    Ok(recovered)
}

/// Marks `id` FAILED if it is in flight and no process holds its lock. The record is read
/// again under the lock: the process that held it may have finished it meanwhile.
fn recover_if_interrupted(
    paths: &DataPaths,
    store: &mut crate::store::Store,
    id: &crate::domain::DeploymentId,
) -> Result<Option<Deployment>, StoreError> {
    // Hold the lock while changing the record, so a process starting on it now waits for
    // a consistent state.
    let Ok(_lock) = JobLock::acquire(paths, id) else {
        return Ok(None);
    };
    let d = store.get(id)?;
    if !d.status.is_in_flight() {
        return Ok(None);
    }
    let stage = d.stage.map(|s| s.as_str()).unwrap_or("unknown");
    let message = format!(
        "interrupted: proxdeck stopped during stage {stage} ({}); retry or destroy it",
        d.status
    );
    store
        .transition(id, Status::Failed, None, Some(&message))
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        let id = DeploymentId("abc123".into());
        assert!(!JobLock::is_held(&paths, &id).unwrap());
        let lock = JobLock::acquire(&paths, &id).unwrap();
        assert!(matches!(
            JobLock::acquire(&paths, &id),
            Err(JobError::Busy(_))
        ));
        assert!(JobLock::is_held(&paths, &id).unwrap());
        drop(lock);
        assert!(!JobLock::is_held(&paths, &id).unwrap());
        let other = DeploymentId("zzz999".into());
        drop(JobLock::acquire(&paths, &other).unwrap());
        let _a = JobLock::acquire(&paths, &id).unwrap();
        let _b = JobLock::acquire(&paths, &other).unwrap();
    }
}

#[cfg(test)]
mod recovery_tests {
    use super::*;
    use crate::domain::Stage;
    use crate::store::Store;

    #[test]
    fn in_flight_without_a_holder_becomes_failed_but_a_held_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        let mut store = Store::open(&paths.database()).unwrap();
        for (id, name) in [("aaa111", "orphan"), ("bbb222", "busy"), ("ccc333", "idle")] {
            let d = Deployment {
                id: DeploymentId(id.into()),
                name: name.into(),
                ..Deployment::default()
            };
            store.insert_deployment(&d).unwrap();
        }
        for id in ["aaa111", "bbb222"] {
            store
                .transition(
                    &DeploymentId(id.into()),
                    Status::Provisioning,
                    Some(Stage::TerraformApply),
                    None,
                )
                .unwrap();
        }
        let _busy = JobLock::acquire(&paths, &DeploymentId("bbb222".into())).unwrap();
        let recovered = recover_interrupted(&paths, &mut store).unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].name, "orphan");
        assert_eq!(recovered[0].status, Status::Failed);
        let err = recovered[0].error.clone().unwrap();
        assert!(
            err.contains("interrupted") && err.contains("terraform-apply"),
            "{err}"
        );
        assert_eq!(store.find("busy").unwrap().status, Status::Provisioning);
        assert_eq!(store.find("idle").unwrap().status, Status::Pending);
    }

    #[test]
    fn a_deployment_finished_since_the_list_was_read_is_left_alone() {
        // Another process held the lock while the list was read, then finished (RUNNING) and
        // let go: the record read under the lock wins over the stale list.
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        let mut store = Store::open(&paths.database()).unwrap();
        let id = DeploymentId("ddd444".into());
        store
            .insert_deployment(&Deployment {
                id: id.clone(),
                name: "done".into(),
                ..Deployment::default()
            })
            .unwrap();
        for (status, stage) in [
            (Status::Provisioning, Some(Stage::Provision)),
            (Status::Deploying, Some(Stage::HealthCheck)),
            (Status::Running, None),
        ] {
            store.transition(&id, status, stage, None).unwrap();
        }
        assert_eq!(
            recover_if_interrupted(&paths, &mut store, &id).unwrap(),
            None
        );
        assert_eq!(store.get(&id).unwrap().status, Status::Running);
    }
}
