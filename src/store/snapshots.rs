//! What the store keeps about snapshots: only why a deployment's guest cannot snapshot (its
//! storage), noted the first time proxdeck finds out so the warning is said once. The
//! snapshots themselves live on Proxmox (listed through its API), never here.

use super::{Result, Store, now_ms};
use crate::domain::DeploymentId;
use rusqlite::{OptionalExtension, params};

impl Store {
    /// Why the deployment's guest cannot snapshot, if proxdeck found out before.
    pub fn snapshot_note(&self, id: &DeploymentId) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT unavailable FROM snapshot_notes WHERE deployment_id = ?1",
                params![id.0],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Notes why the guest cannot snapshot (`None`: it can, forget the note). Returns true
    /// when the note is new (the caller says it, once).
    pub fn set_snapshot_note(&mut self, id: &DeploymentId, why: Option<&str>) -> Result<bool> {
        match why {
            None => {
                self.conn.execute(
                    "DELETE FROM snapshot_notes WHERE deployment_id = ?1",
                    params![id.0],
                )?;
                Ok(false)
            }
            Some(why) => {
                let before = self.snapshot_note(id)?;
                self.conn.execute(
                    "INSERT INTO snapshot_notes (deployment_id, unavailable, noted_at) \
                     VALUES (?1, ?2, ?3) ON CONFLICT(deployment_id) DO UPDATE SET \
                     unavailable = excluded.unavailable, noted_at = excluded.noted_at",
                    params![id.0, why, now_ms()],
                )?;
                Ok(before.as_deref() != Some(why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_new_once_and_can_be_dropped() {
        let mut s = Store::open_in_memory().unwrap();
        let id = DeploymentId("k3x9ta".into());
        assert_eq!(s.snapshot_note(&id).unwrap(), None);
        assert!(s.set_snapshot_note(&id, Some("dir storage")).unwrap());
        assert!(!s.set_snapshot_note(&id, Some("dir storage")).unwrap());
        assert_eq!(
            s.snapshot_note(&id).unwrap().as_deref(),
            Some("dir storage")
        );
        s.set_snapshot_note(&id, None).unwrap();
        assert_eq!(s.snapshot_note(&id).unwrap(), None);
    }
}
