//! What the store keeps about a deployment's releases: one row per release folder a deploy
//! built on its guest (`releases/<seq>-<commit>`), with its commit and state. The guest's
//! folders are the truth for what can be switched to: [`Store::reconcile_releases`] brings the
//! rows in line with what a script listed there. This module records; it never talks to a
//! guest.

use super::{Result, Store, now_ms};
use crate::domain::DeploymentId;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// Where a release is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseState {
    /// Made by a deploy that has not finished (checkout, install, build, health check).
    Building,
    /// What the app's service runs, and it passed its health check.
    Current,
    /// Ran and passed its health check before; `rollback` can switch back to it.
    Good,
    /// Its build or its health check failed; never switched to by `rollback`.
    Failed,
    /// On the guest and built, but proxdeck never saw it pass a health check (found there,
    /// e.g. after a snapshot was restored).
    Built,
    /// Gone from the guest (pruned beyond `[releases] keep`, or an unfinished one removed).
    Removed,
}

impl ReleaseState {
    pub const ALL: [ReleaseState; 6] = [
        ReleaseState::Building,
        ReleaseState::Current,
        ReleaseState::Good,
        ReleaseState::Failed,
        ReleaseState::Built,
        ReleaseState::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Building => "building",
            ReleaseState::Current => "current",
            ReleaseState::Good => "good",
            ReleaseState::Failed => "failed",
            ReleaseState::Built => "built",
            ReleaseState::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<ReleaseState> {
        ReleaseState::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// On the guest and built: `rollback --to` may switch to it.
    pub fn activatable(self) -> bool {
        matches!(
            self,
            ReleaseState::Current | ReleaseState::Good | ReleaseState::Built
        )
    }
}

impl std::fmt::Display for ReleaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One release of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    pub seq: i64,
    pub commit: String,
    /// The folder's name under the app's `releases/` on the guest.
    pub folder: String,
    pub state: ReleaseState,
    pub created_at: i64,
    /// When it last became the current release.
    pub activated_at: Option<i64>,
}

/// One release as the guest lists it (folder, the guest's state, whether `current` points at
/// it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRelease {
    pub folder: String,
    /// The guest's `state` file: `built`, `failed` or `building`.
    pub state: String,
    pub current: bool,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Release> {
    let state: String = r.get(4)?;
    Ok(Release {
        seq: r.get(0)?,
        commit: r.get(1)?,
        folder: r.get(2)?,
        state: ReleaseState::parse(&state).unwrap_or(ReleaseState::Built),
        created_at: r.get(5)?,
        activated_at: r.get(6)?,
    })
}

const COLUMNS: &str = "seq, commit_sha, folder, deployment_id, state, created_at, activated_at";

impl Store {
    /// The deployment's releases, newest first (removed ones included).
    pub fn releases(&self, id: &DeploymentId) -> Result<Vec<Release>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM releases WHERE deployment_id = ?1 ORDER BY seq DESC, created_at DESC"
        ))?;
        let rows = stmt
            .query_map(params![id.0], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// One release by its folder.
    pub fn release(&self, id: &DeploymentId, folder: &str) -> Result<Option<Release>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM releases WHERE deployment_id = ?1 AND folder = ?2"),
                params![id.0, folder],
                row,
            )
            .optional()?)
    }

    /// Records a release folder a deploy made (state `building`).
    pub fn record_release(
        &mut self,
        id: &DeploymentId,
        seq: i64,
        commit: &str,
        folder: &str,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO releases (deployment_id, seq, commit_sha, folder, state, created_at) \
             VALUES (?1, ?2, ?3, ?4, 'building', ?5) ON CONFLICT(deployment_id, folder) DO UPDATE SET \
             commit_sha = excluded.commit_sha, state = 'building'",
            params![id.0, seq, commit, folder, now_ms()],
        )?;
        Ok(())
    }

    /// Sets a release's state (not `current`: [`Store::activate_release`] does that).
    pub fn set_release_state(
        &mut self,
        id: &DeploymentId,
        folder: &str,
        state: ReleaseState,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE releases SET state = ?3 WHERE deployment_id = ?1 AND folder = ?2",
            params![id.0, folder, state.as_str()],
        )?;
        Ok(())
    }

    /// The release in `folder` passed its health check and is what the service runs: it
    /// becomes `current`, the one current before becomes `good`.
    pub fn activate_release(&mut self, id: &DeploymentId, folder: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE releases SET state = 'good' WHERE deployment_id = ?1 AND state = 'current' AND folder != ?2",
            params![id.0, folder],
        )?;
        tx.execute(
            "UPDATE releases SET state = 'current', activated_at = ?3 WHERE deployment_id = ?1 AND folder = ?2",
            params![id.0, folder, now_ms()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The release `rollback` returns to: the good one that was current most recently.
    pub fn previous_good_release(&self, id: &DeploymentId) -> Result<Option<Release>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM releases WHERE deployment_id = ?1 AND state = 'good' \
                     ORDER BY activated_at IS NULL, activated_at DESC, seq DESC LIMIT 1"
                ),
                params![id.0],
                row,
            )
            .optional()?)
    }

    /// The release recorded as current.
    pub fn current_release(&self, id: &DeploymentId) -> Result<Option<Release>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM releases WHERE deployment_id = ?1 AND state = 'current' LIMIT 1"
                ),
                params![id.0],
                row,
            )
            .optional()?)
    }

    /// Brings the rows in line with the guest's folders: a folder the store does not know is
    /// added (`built`, or `failed`/`building` as the guest says); a row whose folder is gone
    /// becomes `removed`; a folder the guest marked failed is failed. With `adopt_current`,
    /// the guest's `current` is the current release (e.g. after a snapshot was restored).
    pub fn reconcile_releases(
        &mut self,
        id: &DeploymentId,
        guest: &[GuestRelease],
        adopt_current: bool,
    ) -> Result<()> {
        let known = self.releases(id)?;
        let now = now_ms();
        let tx = self.conn.transaction()?;
        for r in &known {
            if r.state != ReleaseState::Removed && !guest.iter().any(|g| g.folder == r.folder) {
                tx.execute(
                    "UPDATE releases SET state = 'removed' WHERE deployment_id = ?1 AND folder = ?2",
                    params![id.0, r.folder],
                )?;
            }
        }
        for g in guest {
            let guest_state = match g.state.as_str() {
                "failed" => ReleaseState::Failed,
                "built" => ReleaseState::Built,
                _ => ReleaseState::Building,
            };
            match known.iter().find(|r| r.folder == g.folder) {
                None => {
                    let seq = crate::engine::provision::folder_seq(&g.folder).unwrap_or(0);
                    let commit = crate::engine::provision::folder_commit(&g.folder).unwrap_or("");
                    tx.execute(
                        "INSERT INTO releases (deployment_id, seq, commit_sha, folder, state, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![id.0, seq, commit, g.folder, guest_state.as_str(), now],
                    )?;
                }
                Some(r) => {
                    let fix = match (r.state, guest_state) {
                        (_, ReleaseState::Failed) if r.state != ReleaseState::Failed => {
                            Some(ReleaseState::Failed)
                        }
                        // Back on the guest (e.g. a restored snapshot) after it was gone.
                        (ReleaseState::Removed, s) => Some(s),
                        _ => None,
                    };
                    if let Some(s) = fix {
                        tx.execute(
                            "UPDATE releases SET state = ?3 WHERE deployment_id = ?1 AND folder = ?2",
                            params![id.0, g.folder, s.as_str()],
                        )?;
                    }
                }
            }
        }
        if adopt_current && let Some(cur) = guest.iter().find(|g| g.current) {
            tx.execute(
                "UPDATE releases SET state = 'good' WHERE deployment_id = ?1 AND state = 'current' AND folder != ?2",
                params![id.0, cur.folder],
            )?;
            tx.execute(
                "UPDATE releases SET state = 'current', activated_at = COALESCE(activated_at, ?3) \
                 WHERE deployment_id = ?1 AND folder = ?2 AND state != 'failed'",
                params![id.0, cur.folder, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (Store, DeploymentId) {
        let mut s = Store::open_in_memory().unwrap();
        let d = crate::domain::Deployment {
            id: DeploymentId("k3x9ta".into()),
            name: "shop".into(),
            ..Default::default()
        };
        s.insert_deployment(&d).unwrap();
        (s, d.id)
    }

    fn g(folder: &str, state: &str, current: bool) -> GuestRelease {
        GuestRelease {
            folder: folder.into(),
            state: state.into(),
            current,
        }
    }

    #[test]
    fn releases_move_from_building_to_current_to_good() {
        let (mut s, id) = store();
        s.record_release(&id, 1, "aaaaaaaaaaaa", "1-aaaaaaaaaaaa")
            .unwrap();
        s.activate_release(&id, "1-aaaaaaaaaaaa").unwrap();
        s.record_release(&id, 2, "bbbbbbbbbbbb", "2-bbbbbbbbbbbb")
            .unwrap();
        s.activate_release(&id, "2-bbbbbbbbbbbb").unwrap();
        s.record_release(&id, 3, "cccccccccccc", "3-cccccccccccc")
            .unwrap();
        s.set_release_state(&id, "3-cccccccccccc", ReleaseState::Failed)
            .unwrap();
        let all = s.releases(&id).unwrap();
        let states: Vec<_> = all.iter().map(|r| (r.seq, r.state)).collect();
        assert_eq!(
            states,
            [
                (3, ReleaseState::Failed),
                (2, ReleaseState::Current),
                (1, ReleaseState::Good)
            ]
        );
        assert_eq!(
            s.previous_good_release(&id).unwrap().unwrap().folder,
            "1-aaaaaaaaaaaa"
        );
        // Rolling back to 1 makes 2 the previous good one: back and forth, never further.
        s.activate_release(&id, "1-aaaaaaaaaaaa").unwrap();
        assert_eq!(
            s.previous_good_release(&id).unwrap().unwrap().folder,
            "2-bbbbbbbbbbbb"
        );
        assert_eq!(
            s.current_release(&id).unwrap().unwrap().folder,
            "1-aaaaaaaaaaaa"
        );
    }

    #[test]
    fn the_guests_folders_are_the_truth() {
        let (mut s, id) = store();
        s.record_release(&id, 1, "aaaaaaaaaaaa", "1-aaaaaaaaaaaa")
            .unwrap();
        s.activate_release(&id, "1-aaaaaaaaaaaa").unwrap();
        s.record_release(&id, 2, "bbbbbbbbbbbb", "2-bbbbbbbbbbbb")
            .unwrap();
        s.activate_release(&id, "2-bbbbbbbbbbbb").unwrap();
        // The guest was restored to a snapshot: release 1 current, 2 gone, 0-legacy there.
        s.reconcile_releases(
            &id,
            &[
                g("0-legacy", "built", false),
                g("1-aaaaaaaaaaaa", "built", true),
            ],
            true,
        )
        .unwrap();
        let by = |s: &Store, f: &str| s.release(&id, f).unwrap().unwrap().state;
        assert_eq!(by(&s, "2-bbbbbbbbbbbb"), ReleaseState::Removed);
        assert_eq!(by(&s, "1-aaaaaaaaaaaa"), ReleaseState::Current);
        assert_eq!(by(&s, "0-legacy"), ReleaseState::Built);
        assert!(ReleaseState::Built.activatable() && !ReleaseState::Failed.activatable());
        // Without adopting, the guest's current does not move the store's.
        s.reconcile_releases(&id, &[g("1-aaaaaaaaaaaa", "failed", true)], false)
            .unwrap();
        assert_eq!(by(&s, "1-aaaaaaaaaaaa"), ReleaseState::Failed);
        assert_eq!(by(&s, "0-legacy"), ReleaseState::Removed);
        // Forgetting the entry drops its releases with it.
        s.forget(&id).unwrap();
        assert!(s.releases(&id).unwrap().is_empty());
    }
}
