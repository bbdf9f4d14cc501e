//! Applying what `sync` found ([`SyncChanges`]) in one immediate transaction, set-based: the
//! live vmids, the live names and every id are read once, each import is checked against them
//! in memory and written with prepared statements, so a sync costs the same per guest at
//! 100 or 100,000 guests. A new entry's id is drawn again while it is taken. One bad row (one
//! the database refuses, a status change outside the graph, an unreadable entry) is skipped
//! and reported as [`Rejected`]; the rest is applied. Also what sync reads: [`Store::sync_view`].
//!
//! Must not decide what to import or change (that is `engine::sync`), and must not abort a
//! whole sync for one row (only for what breaks the transaction itself: I/O, a busy file).

use super::{DEPLOYMENT_COLUMNS, Result, Store, StoreError, insert_row, row_to_deployment};
use crate::domain::{Deployment, DeploymentId, IllegalTransition, Status};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashSet;

/// What `proxdeck sync` changes, applied by [`Store::apply_sync`] in one transaction.
///
/// Imported entries (`Origin::Imported`) are guests proxdeck found, not deployments it made:
/// statistics must leave them out (`origin != 'imported'`, see [`Store::list_managed`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncChanges {
    /// Guests to record as imported entries. A name already in use gets `-VMID` appended; a
    /// vmid that meanwhile has a live entry is skipped.
    pub imports: Vec<Deployment>,
    pub updates: Vec<GuestUpdate>,
    /// Entries whose guest is gone: `missing_since` is set (when not set already).
    pub missing: Vec<DeploymentId>,
    /// Entries whose guest is back: `missing_since` is cleared.
    pub returned: Vec<DeploymentId>,
    /// When the changes were seen (Unix ms).
    pub at: i64,
}

/// What sync learned about a known guest; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestUpdate {
    pub id: DeploymentId,
    pub node: Option<String>,
    /// RUNNING or STOPPED, checked against the transition graph.
    pub status: Option<Status>,
    /// Cores, memory (MiB), disk (GiB): kept in step for imported entries.
    pub resources: Option<(u32, u32, u32)>,
}

/// A row sync could not apply (or read), and why. The rest of the sync was applied.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rejected {
    /// The entry's id; for an import, the id the plan gave it.
    pub id: DeploymentId,
    pub vmid: Option<u32>,
    pub reason: String,
}

/// What [`Store::apply_sync`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncOutcome {
    /// The imported entries as recorded (final names and ids).
    pub imported: Vec<Deployment>,
    pub rejected: Vec<Rejected>,
}

/// The store as sync sees it: every readable entry, and those it cannot read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncView {
    pub entries: Vec<Deployment>,
    /// Unreadable rows (a damaged value): sync leaves their guests alone and reports them.
    pub unreadable: Vec<Rejected>,
}

impl Store {
    /// Every entry, for sync's matching; an unreadable row is listed apart instead of failing
    /// the whole read.
    pub fn sync_view(&self) -> Result<SyncView> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments"))?;
        let mut rows = stmt.query([])?;
        let mut view = SyncView::default();
        while let Some(r) = rows.next()? {
            let read = row_to_deployment(r)
                .map_err(StoreError::from)
                .and_then(|d| d);
            match read {
                Ok(d) => view.entries.push(d),
                Err(e) => view.unreadable.push(Rejected {
                    id: DeploymentId(
                        r.get_ref(0)?
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_default(),
                    ),
                    vmid: r.get::<_, Option<u32>>(12).ok().flatten(),
                    reason: format!("the stored entry is unreadable: {e}"),
                }),
            }
        }
        Ok(view)
    }

    /// Applies a sync in one immediate transaction: two syncs at once never import a guest
    /// twice, and an interrupted sync leaves nothing half done. An import whose vmid meanwhile
    /// has a live entry is skipped; a taken name gets `-VMID` (then `-VMID-2`, ...); a taken
    /// id is drawn again. Rows the database or the transition graph refuse are reported.
    pub fn apply_sync(&mut self, changes: &SyncChanges) -> Result<SyncOutcome> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = SyncOutcome::default();
        let mut live_vmids: HashSet<u32> = {
            let mut stmt = tx.prepare(
                "SELECT vmid FROM deployments WHERE vmid IS NOT NULL AND status != 'DELETED'",
            )?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut live_names: HashSet<String> = {
            let mut stmt = tx.prepare("SELECT name FROM deployments WHERE status != 'DELETED'")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut ids: HashSet<String> = {
            let mut stmt = tx.prepare("SELECT id FROM deployments")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for planned in &changes.imports {
            if planned.vmid.is_some_and(|v| live_vmids.contains(&v)) {
                continue;
            }
            let mut d = planned.clone();
            d.name = free_name(&d, &live_names);
            while ids.contains(&d.id.0) {
                d.id = DeploymentId::random();
            }
            match import_one(&tx, &d) {
                Ok(()) => {
                    if let Some(v) = d.vmid {
                        live_vmids.insert(v);
                    }
                    live_names.insert(d.name.clone());
                    ids.insert(d.id.0.clone());
                    out.imported.push(d);
                }
                Err(e) => out.rejected.push(Rejected {
                    id: planned.id.clone(),
                    vmid: planned.vmid,
                    reason: row_error(&tx, e)?,
                }),
            }
        }
        for u in &changes.updates {
            if let Err(reason) = update_one(&tx, u, changes.at)? {
                out.rejected.push(Rejected {
                    id: u.id.clone(),
                    vmid: None,
                    reason,
                });
            }
        }
        let marks = changes
            .missing
            .iter()
            .map(|id| (id, true))
            .chain(changes.returned.iter().map(|id| (id, false)));
        for (id, missing) in marks {
            let sql = if missing {
                "UPDATE deployments SET missing_since = ?2 WHERE id = ?1 AND missing_since IS NULL"
            } else {
                "UPDATE deployments SET missing_since = NULL WHERE id = ?1 AND ?2 IS NOT NULL"
            };
            let done = tx
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(params![id.0, changes.at]));
            if let Err(e) = done {
                out.rejected.push(Rejected {
                    id: id.clone(),
                    vmid: None,
                    reason: row_error(&tx, e)?,
                });
            }
        }
        tx.commit()?;
        Ok(out)
    }
}

/// The name an import gets: its own, or with `-VMID` (then `-VMID-2`, ...) when a live entry
/// has it.
fn free_name(d: &Deployment, live_names: &HashSet<String>) -> String {
    if !live_names.contains(&d.name) {
        return d.name.clone();
    }
    let suffix = d
        .vmid
        .map(|v| v.to_string())
        .unwrap_or_else(|| d.id.0.clone());
    let mut name = format!("{}-{suffix}", d.name);
    let mut n = 2;
    while live_names.contains(&name) {
        name = format!("{}-{suffix}-{n}", d.name);
        n += 1;
    }
    name
}

/// Records one imported entry and the first row of its history; nothing of it when either
/// write is refused.
fn import_one(conn: &Connection, d: &Deployment) -> rusqlite::Result<()> {
    insert_row(conn, d)?;
    let history = conn
        .prepare_cached(
            "INSERT INTO status_history (deployment_id, status, stage, at, message)              VALUES (?1, ?2, NULL, ?3, 'imported by sync')",
        )
        .and_then(|mut s| s.execute(params![d.id.0, d.status.as_str(), d.created_at]));
    if let Err(e) = history {
        conn.prepare_cached("DELETE FROM deployments WHERE id = ?1")?
            .execute([&d.id.0])?;
        return Err(e);
    }
    Ok(())
}

/// Applies one known guest's update: `Ok(Err(reason))` when this row is refused (nothing of
/// it written), `Err` when the transaction itself broke.
fn update_one(
    conn: &Connection,
    u: &GuestUpdate,
    at: i64,
) -> Result<std::result::Result<(), String>> {
    let current: Option<String> = conn
        .prepare_cached("SELECT status FROM deployments WHERE id = ?1")?
        .query_row([&u.id.0], |r| r.get(0))
        .optional()?;
    // Forgotten meanwhile: nothing to update.
    let Some(current) = current else {
        return Ok(Ok(()));
    };
    let from: Status = match current.parse() {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("the stored status is unreadable: {e}"))),
    };
    let to = u.status.filter(|to| *to != from);
    if let Some(to) = to {
        // Sync only ever reports what runs and what does not.
        let allowed = if matches!(to, Status::Running | Status::Stopped) {
            from.check_transition(to)
        } else {
            Err(IllegalTransition { from, to })
        };
        if let Err(e) = allowed {
            return Ok(Err(e.to_string()));
        }
    }
    let (cores, memory, disk) = match u.resources {
        Some((c, m, d)) => (Some(c), Some(m), Some(d)),
        None => (None, None, None),
    };
    conn.execute_batch("SAVEPOINT sync_update")?;
    let written = conn
        .prepare_cached(
            "UPDATE deployments SET node = COALESCE(?2, node), cores = COALESCE(?3, cores), \
             memory_mib = COALESCE(?4, memory_mib), disk_gib = COALESCE(?5, disk_gib), \
             status = COALESCE(?6, status), error = CASE WHEN ?6 IS NULL THEN error END, \
             updated_at = ?7 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                u.id.0,
                u.node,
                cores,
                memory,
                disk,
                to.map(Status::as_str),
                at
            ])
        })
        .and_then(|_| match to {
            Some(to) => conn
                .prepare_cached(
                    "INSERT INTO status_history (deployment_id, status, stage, at, message) \
                     VALUES (?1, ?2, NULL, ?3, 'sync: as found on Proxmox')",
                )
                .and_then(|mut s| s.execute(params![u.id.0, to.as_str(), at]))
                .map(|_| ()),
            None => Ok(()),
        });
    match written {
        Ok(()) => {
            conn.execute_batch("RELEASE sync_update")?;
            Ok(Ok(()))
        }
        Err(e) => {
            let reason = row_error(conn, e)?;
            conn.execute_batch("ROLLBACK TO sync_update; RELEASE sync_update")?;
            Ok(Err(reason))
        }
    }
}

/// The reason for a refused row, or the error itself when it broke the whole transaction
/// (I/O, a full disk, a busy file: SQLite has then rolled it back).
fn row_error(conn: &Connection, e: rusqlite::Error) -> Result<String> {
    use rusqlite::ErrorCode::{ConstraintViolation, TooBig, TypeMismatch};
    let per_row = matches!(
        e.sqlite_error_code(),
        Some(ConstraintViolation | TooBig | TypeMismatch)
    );
    if per_row && !conn.is_autocommit() {
        Ok(format!("the database refused it: {e}"))
    } else {
        Err(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Origin;

    fn import(id: &str, name: &str, vmid: u32) -> Deployment {
        Deployment {
            id: DeploymentId(id.into()),
            name: name.into(),
            origin: Origin::Imported,
            vmid: Some(vmid),
            status: Status::Running,
            stage: None,
            created_at: 2_000,
            updated_at: 2_000,
            ..Deployment::default()
        }
    }

    #[test]
    fn taken_ids_are_drawn_again() {
        let mut s = Store::open_in_memory().unwrap();
        s.insert_deployment(&import("abc234", "first", 100))
            .unwrap();
        // The plan drew an id the store holds, and the same one twice.
        let changes = SyncChanges {
            imports: vec![
                import("abc234", "second", 101),
                import("abc234", "third", 102),
            ],
            ..SyncChanges::default()
        };
        let out = s.apply_sync(&changes).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        let ids: HashSet<String> = out.imported.iter().map(|d| d.id.0.clone()).collect();
        assert_eq!(ids.len(), 2);
        assert!(!ids.contains("abc234"));
        assert_eq!(s.list().unwrap().len(), 3);
        for d in &out.imported {
            assert_eq!(s.get(&d.id).unwrap().name, d.name);
        }
    }

    #[test]
    fn a_refused_row_is_reported_and_the_rest_imported() {
        let mut s = Store::open_in_memory().unwrap();
        // The database refuses one row, as it would a broken constraint.
        s.conn
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON deployments WHEN NEW.vmid = 102 \
                 BEGIN SELECT RAISE(ABORT, 'vmid 102 refused'); END;",
            )
            .unwrap();
        let changes = SyncChanges {
            imports: (100..105)
                .map(|v| import(&format!("imp{v}"), &format!("g{v}"), v))
                .collect(),
            at: 3_000,
            ..SyncChanges::default()
        };
        let out = s.apply_sync(&changes).unwrap();
        assert_eq!(out.imported.len(), 4);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].vmid, Some(102));
        assert!(out.rejected[0].reason.contains("vmid 102 refused"));
        assert_eq!(s.list().unwrap().len(), 4);
        // Nothing of the refused row is left behind (no history without its entry).
        let orphans: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM status_history WHERE deployment_id NOT IN (SELECT id FROM deployments)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0);
    }

    #[test]
    fn an_unreadable_entry_is_listed_apart() {
        let mut s = Store::open_in_memory().unwrap();
        s.insert_deployment(&import("good22", "good", 100)).unwrap();
        s.insert_deployment(&import("bad333", "bad", 101)).unwrap();
        s.conn
            .execute(
                "UPDATE deployments SET status = 'MELTED' WHERE id = 'bad333'",
                [],
            )
            .unwrap();
        let view = s.sync_view().unwrap();
        assert_eq!(view.entries.len(), 1);
        assert_eq!(view.unreadable.len(), 1);
        assert_eq!(view.unreadable[0].id.0, "bad333");
        assert_eq!(view.unreadable[0].vmid, Some(101));
        // An update of it is refused alone.
        let out = s
            .apply_sync(&SyncChanges {
                updates: vec![GuestUpdate {
                    id: DeploymentId("bad333".into()),
                    status: Some(Status::Stopped),
                    ..GuestUpdate::default()
                }],
                missing: vec![DeploymentId("good22".into())],
                at: 9,
                ..SyncChanges::default()
            })
            .unwrap();
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(
            s.get(&DeploymentId("good22".into())).unwrap().missing_since,
            Some(9)
        );
    }
}
