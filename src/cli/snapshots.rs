//! `proxdeck snapshots ID` (the guest's snapshots, read from Proxmox) and the confirmation of
//! `proxdeck restore`. Taking and restoring run as jobs (`cli::jobs`); nothing here does.

use super::{CliError, IdArgs, RestoreArgs, print_json};
use crate::domain::{Deployment, OpKind, policy, present};
use crate::engine::Engine;
use crate::engine::snapshots::{self, SnapshotError};

impl From<SnapshotError> for CliError {
    fn from(e: SnapshotError) -> CliError {
        let code = match e {
            SnapshotError::Config(_) | SnapshotError::Invalid(_) => 2,
            _ => 1,
        };
        CliError {
            code,
            message: e.to_string(),
        }
    }
}

pub(super) async fn list(engine: &Engine, a: &IdArgs) -> Result<(), CliError> {
    let key = a.id.clone();
    let d = engine.db.call(move |s| s.find(&key)).await?;
    policy::check(OpKind::Snapshot, &d).map_err(|r| CliError::failed(r.0))?;
    let list = snapshots::list(engine, &d).await?;
    if a.json {
        return print_json(&list);
    }
    if let Some(why) = &list.unavailable {
        eprintln!("warning: {why}");
    }
    if list.snapshots.is_empty() {
        println!("{} has no snapshots", present::who(&d));
        return Ok(());
    }
    println!(
        "{:<40} {:<19} {:<12} DESCRIPTION",
        "NAME", "TAKEN", "COMMIT"
    );
    for s in &list.snapshots {
        let taken = chrono::DateTime::from_timestamp(s.snapshot.snaptime as i64, 0)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|| "-".into());
        let commit: String = s
            .commit
            .as_deref()
            .unwrap_or("-")
            .chars()
            .take(12)
            .collect();
        let state = s
            .snapshot
            .snapstate
            .as_deref()
            .map(|st| format!(" [{st}]"))
            .unwrap_or_default();
        println!(
            "{:<40} {:<19} {:<12} {}{state}",
            s.snapshot.name, taken, commit, s.snapshot.description
        );
    }
    Ok(())
}

/// The rules, then (unless `--yes`) the user types the deployment's name: a restore replaces
/// the guest's disks with the snapshot's.
pub(super) async fn check_restore(
    engine: &Engine,
    a: &RestoreArgs,
) -> Result<Deployment, CliError> {
    let key = a.id.clone();
    let d = engine.db.call(move |s| s.find(&key)).await?;
    policy::check(OpKind::Restore, &d).map_err(|r| CliError::failed(r.0))?;
    snapshots::validate_name(a.snapshot.trim()).map_err(CliError::usage)?;
    if a.yes {
        return Ok(d);
    }
    super::print::type_to_confirm(
        &format!("restoring {}", present::who(&d)),
        &format!(
            "Restore {} to snapshot {}? The guest is shut down and its disks replaced by the snapshot's: what changed since is lost. Type the name to confirm",
            present::who(&d),
            a.snapshot
        ),
        &d.name,
        "not confirmed; nothing was restored",
    )?;
    Ok(d)
}
