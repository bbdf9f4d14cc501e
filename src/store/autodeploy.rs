//! Auto-deploy in the store: for each deployment that has it, whether it is on, when the
//! worker looks at the repository's ref next, the commit it saw last, the redeploy job it
//! queued, and how the last attempts failed (count, message, time: what the dashboard shows
//! and what the back-off is computed from). The polling itself is `engine::autodeploy`.

use super::{Result, Store, now_ms};
use crate::domain::{DeploymentId, JobId};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

/// A deployment's auto-deploy state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AutoDeploy {
    pub deployment: DeploymentId,
    pub enabled: bool,
    /// When the worker looks at the ref next (ms since the epoch; 0: at once).
    pub next_check_at: i64,
    pub last_checked_at: Option<i64>,
    /// The commit the ref pointed at when the worker looked last.
    pub last_seen: Option<String>,
    /// Failed attempts in a row (listing the ref, or the redeploy); 0 after a success.
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// The redeploy job auto-deploy queued, until the worker has seen how it ended.
    pub job: Option<JobId>,
}

const COLUMNS: &str = "deployment_id, enabled, next_check_at, last_checked_at, last_seen, \
     failures, last_error, last_error_at, job_id";

fn from_row(r: &Row<'_>) -> rusqlite::Result<AutoDeploy> {
    Ok(AutoDeploy {
        deployment: DeploymentId(r.get(0)?),
        enabled: r.get::<_, i64>(1)? != 0,
        next_check_at: r.get(2)?,
        last_checked_at: r.get(3)?,
        last_seen: r.get(4)?,
        failures: r.get::<_, i64>(5)?.clamp(0, i64::from(u32::MAX)) as u32,
        last_error: r.get(6)?,
        last_error_at: r.get(7)?,
        job: r.get::<_, Option<i64>>(8)?.map(JobId),
    })
}

impl Store {
    /// Turns auto-deploy on or off for a deployment. Turning it on starts afresh: no
    /// failures, a look at the ref at once.
    pub fn set_auto_deploy(&mut self, id: &DeploymentId, enabled: bool) -> Result<AutoDeploy> {
        let now = now_ms();
        if enabled {
            self.conn.execute(
                "INSERT INTO auto_deploy (deployment_id, enabled, next_check_at, failures, updated_at) \
                 VALUES (?1, 1, 0, 0, ?2) ON CONFLICT(deployment_id) DO UPDATE SET \
                 enabled = 1, next_check_at = 0, failures = 0, last_error = NULL, \
                 last_error_at = NULL, updated_at = excluded.updated_at",
                params![id.0, now],
            )?;
        } else {
            self.conn.execute(
                "INSERT INTO auto_deploy (deployment_id, enabled, updated_at) VALUES (?1, 0, ?2) \
                 ON CONFLICT(deployment_id) DO UPDATE SET enabled = 0, updated_at = excluded.updated_at",
                params![id.0, now],
            )?;
        }
        Ok(self.auto_deploy(id)?.unwrap_or_default())
    }

    /// A deployment's auto-deploy state (`None`: never turned on).
    pub fn auto_deploy(&self, id: &DeploymentId) -> Result<Option<AutoDeploy>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM auto_deploy WHERE deployment_id = ?1"),
                params![id.0],
                from_row,
            )
            .optional()?)
    }

    /// Every deployment with auto-deploy on.
    pub fn auto_deploys(&self) -> Result<Vec<AutoDeploy>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM auto_deploy WHERE enabled = 1 ORDER BY deployment_id"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// True when any deployment has auto-deploy on (the worker then stays).
    pub fn any_auto_deploy(&self) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM auto_deploy WHERE enabled = 1)",
            [],
            |r| r.get::<_, i64>(0),
        )? != 0)
    }

    /// Writes what the worker learnt (all fields but `enabled`, which only the user changes).
    pub fn record_auto_deploy(&mut self, a: &AutoDeploy) -> Result<()> {
        self.conn.execute(
            "UPDATE auto_deploy SET next_check_at = ?2, last_checked_at = ?3, last_seen = ?4, \
             failures = ?5, last_error = ?6, last_error_at = ?7, job_id = ?8, updated_at = ?9 \
             WHERE deployment_id = ?1",
            params![
                a.deployment.0,
                a.next_check_at,
                a.last_checked_at,
                a.last_seen,
                i64::from(a.failures),
                a.last_error,
                a.last_error_at,
                a.job.map(|j| j.0),
                now_ms()
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_off_and_what_the_worker_records() {
        let mut s = Store::open_in_memory().unwrap();
        let id = DeploymentId("k3x9ta".into());
        assert!(!s.any_auto_deploy().unwrap());
        let mut a = s.set_auto_deploy(&id, true).unwrap();
        assert!(a.enabled && a.failures == 0 && a.next_check_at == 0);
        assert!(s.any_auto_deploy().unwrap());
        a.failures = 3;
        a.last_error = Some("build failed".into());
        a.next_check_at = 99;
        a.job = Some(JobId(7));
        s.record_auto_deploy(&a).unwrap();
        assert_eq!(s.auto_deploy(&id).unwrap().unwrap(), a);
        s.set_auto_deploy(&id, false).unwrap();
        assert!(!s.any_auto_deploy().unwrap());
        assert!(s.auto_deploys().unwrap().is_empty());
        // On again: a fresh start.
        let again = s.set_auto_deploy(&id, true).unwrap();
        assert_eq!(
            (again.failures, again.last_error, again.next_check_at),
            (0, None, 0)
        );
    }
}
