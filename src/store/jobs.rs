//! The job queue in the store: every operation is a row (`jobs`), queued by a front end,
//! claimed and finished by the worker. Owns the queue's rules, each applied inside one
//! immediate transaction so two processes never disagree: at most one active job per
//! deployment (and one sync at a time), at most `max_parallel` running, the oldest queued job
//! first, a cancel that ends a queued job at once and flags a running one.

use super::{Result, Store, StoreError, now_ms};
use crate::domain::{DeploymentId, Job, JobId, JobState, Op, OpKind, Outcome};
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

const JOB_COLUMNS: &str = "id, op, deployment_id, state, requested_by, created_at, started_at, \
     finished_at, cancel_requested, log_from, outcome";

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let op: String = r.get(1)?;
    let state: String = r.get(3)?;
    let outcome: Option<String> = r.get(10)?;
    let bad = |what: &str, text: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("job {what} {text:?}").into(),
        )
    };
    Ok(Job {
        id: JobId(r.get(0)?),
        op: serde_json::from_str(&op).map_err(|_| bad("op", &op))?,
        deployment: r.get::<_, Option<String>>(2)?.map(DeploymentId),
        state: JobState::parse(&state).ok_or_else(|| bad("state", &state))?,
        requested_by: r.get(4)?,
        created_at: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        cancel_requested: r.get::<_, i64>(8)? != 0,
        log_from: r.get(9)?,
        outcome: outcome.and_then(|o| serde_json::from_str::<Outcome>(&o).ok()),
        position: None,
    })
}

/// One job row as it is stored (no queue position).
fn read_job(conn: &rusqlite::Connection, id: JobId) -> Result<Job> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
        [id.0],
        job_from_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NoJob(format!("no job {id}; `proxdeck jobs` lists them")))
}

fn describe_active(j: &Job) -> String {
    let what = match j.state {
        JobState::Queued => "queued",
        _ => "running",
    };
    format!("{} job {} is {what}", j.kind(), j.id)
}

impl Store {
    /// Queues `op` (about `deployment`, none for sync). Refused while another job for the same
    /// deployment (or another sync) is queued or running. The job's own log lines are those
    /// after the deployment's last line now.
    pub fn enqueue(
        &mut self,
        op: &Op,
        deployment: Option<&DeploymentId>,
        requested_by: &str,
    ) -> Result<Job> {
        let log_from = match deployment {
            Some(id) => self.logs_tail(id, 1)?.last().map_or(0, |(seq, _)| *seq),
            None => 0,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let active: Option<Job> = match deployment {
            Some(id) => tx
                .query_row(
                    &format!(
                        "SELECT {JOB_COLUMNS} FROM jobs WHERE deployment_id = ?1 \
                         AND state IN ('queued', 'running') ORDER BY id LIMIT 1"
                    ),
                    [&id.0],
                    job_from_row,
                )
                .optional()?,
            None => tx
                .query_row(
                    &format!(
                        "SELECT {JOB_COLUMNS} FROM jobs WHERE kind = ?1 \
                         AND state IN ('queued', 'running') ORDER BY id LIMIT 1"
                    ),
                    [op.kind().as_str()],
                    job_from_row,
                )
                .optional()?,
        };
        if let Some(j) = active {
            let whose = match deployment {
                Some(id) => format!("{id} already has work: "),
                None => String::new(),
            };
            return Err(StoreError::JobActive(format!(
                "{whose}{}; wait for it, or cancel it (`proxdeck cancel {}`)",
                describe_active(&j),
                deployment.map_or_else(|| j.id.0.to_string(), |d| d.0.clone())
            )));
        }
        let op_json = serde_json::to_string(op)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode the job: {e}")))?;
        tx.execute(
            "INSERT INTO jobs (kind, op, deployment_id, state, requested_by, created_at, log_from) \
             VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6)",
            params![
                op.kind().as_str(),
                op_json,
                deployment.map(|d| d.0.clone()),
                requested_by,
                now_ms(),
                log_from
            ],
        )?;
        let id = JobId(tx.last_insert_rowid());
        tx.commit()?;
        self.job(id)
    }

    /// One job, with its place in the queue when it waits.
    pub fn job(&self, id: JobId) -> Result<Job> {
        let mut j = read_job(&self.conn, id)?;
        if j.state == JobState::Queued {
            let ahead: i64 = self.conn.query_row(
                "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND id < ?1",
                [id.0],
                |r| r.get(0),
            )?;
            j.position = Some(ahead as u32 + 1);
        }
        Ok(j)
    }

    /// Queued and running jobs, oldest first; queued ones carry their place in the queue.
    pub fn active_jobs(&self) -> Result<Vec<Job>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
        ))?;
        let mut jobs = stmt
            .query_map([], job_from_row)?
            .collect::<rusqlite::Result<Vec<Job>>>()?;
        let mut place = 0;
        for j in &mut jobs {
            if j.state == JobState::Queued {
                place += 1;
                j.position = Some(place);
            }
        }
        Ok(jobs)
    }

    /// The newest `limit` jobs, active or ended, newest first.
    pub fn recent_jobs(&self, limit: usize) -> Result<Vec<Job>> {
        let active = self.active_jobs()?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?1"
        ))?;
        let jobs = stmt
            .query_map([limit as i64], job_from_row)?
            .collect::<rusqlite::Result<Vec<Job>>>()?;
        Ok(jobs
            .into_iter()
            .map(|j| active.iter().find(|a| a.id == j.id).cloned().unwrap_or(j))
            .collect())
    }

    /// The queued or running job of a deployment, if any.
    pub fn active_job_for(&self, id: &DeploymentId) -> Result<Option<Job>> {
        Ok(self
            .active_jobs()?
            .into_iter()
            .find(|j| j.deployment.as_ref() == Some(id)))
    }

    /// The newest job of a deployment, active or ended.
    pub fn last_job_for(&self, id: &DeploymentId) -> Result<Option<Job>> {
        let found: Option<JobId> = self
            .conn
            .query_row(
                "SELECT id FROM jobs WHERE deployment_id = ?1 ORDER BY id DESC LIMIT 1",
                [&id.0],
                |r| Ok(JobId(r.get(0)?)),
            )
            .optional()?;
        found.map(|j| self.job(j)).transpose()
    }

    /// Starts the oldest queued job that may run now: fewer than `max_parallel` running, no
    /// other job of its deployment running (and no other sync). `None` when nothing may start.
    pub fn claim_next(&mut self, max_parallel: usize) -> Result<Option<Job>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let running: i64 = tx.query_row(
            "SELECT COUNT(*) FROM jobs WHERE state = 'running'",
            [],
            |r| r.get(0),
        )?;
        if running as usize >= max_parallel {
            return Ok(None);
        }
        let next: Option<i64> = tx
            .query_row(
                "SELECT q.id FROM jobs q WHERE q.state = 'queued' AND NOT EXISTS ( \
                     SELECT 1 FROM jobs r WHERE r.state = 'running' AND ( \
                         (q.deployment_id IS NOT NULL AND r.deployment_id = q.deployment_id) \
                         OR (q.deployment_id IS NULL AND r.kind = q.kind))) \
                 ORDER BY q.id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = next else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE jobs SET state = 'running', started_at = ?2 WHERE id = ?1",
            params![id, now_ms()],
        )?;
        tx.commit()?;
        self.job(JobId(id)).map(Some)
    }

    /// Ends a job with its outcome (`Succeeded`, `Failed` or `Cancelled`).
    pub fn finish_job(&mut self, id: JobId, state: JobState, outcome: &Outcome) -> Result<Job> {
        let text = serde_json::to_string(outcome)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode the outcome: {e}")))?;
        self.conn.execute(
            "UPDATE jobs SET state = ?2, finished_at = ?3, outcome = ?4 WHERE id = ?1",
            params![id.0, state.as_str(), now_ms(), text],
        )?;
        self.job(id)
    }

    /// Asks a job to stop: a queued one is cancelled at once; a running one is flagged and its
    /// worker stops it gracefully. Refused for a job that has already ended.
    pub fn request_cancel(&mut self, id: JobId, by: &str) -> Result<Job> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let j = read_job(&tx, id)?;
        match j.state {
            JobState::Queued => {
                let outcome = Outcome::failed(
                    format!("cancelled by {by} before it started; nothing was done"),
                    None,
                    1,
                );
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ?2, \
                     outcome = ?3 WHERE id = ?1",
                    params![
                        id.0,
                        now_ms(),
                        serde_json::to_string(&outcome).unwrap_or_default()
                    ],
                )?;
            }
            JobState::Running => {
                tx.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1", [id.0])?;
            }
            ended => {
                return Err(StoreError::NoJob(format!(
                    "{} job {id} has already ended ({ended})",
                    j.kind()
                )));
            }
        }
        tx.commit()?;
        self.job(id)
    }

    /// Running jobs somebody asked to stop.
    pub fn cancel_requested_jobs(&self) -> Result<Vec<JobId>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM jobs WHERE state = 'running' AND cancel_requested = 1",
        )?;
        let ids = stmt
            .query_map([], |r| Ok(JobId(r.get(0)?)))?
            .collect::<rusqlite::Result<Vec<JobId>>>()?;
        Ok(ids)
    }

    /// Marks every running job FAILED as interrupted (its worker is gone) and returns them.
    pub fn interrupt_running_jobs(&mut self, why: &str) -> Result<Vec<Job>> {
        let running: Vec<Job> = self
            .active_jobs()?
            .into_iter()
            .filter(|j| j.state == JobState::Running)
            .collect();
        let mut out = Vec::new();
        for j in running {
            let next = j.deployment.as_ref().map(|id| match j.kind() {
                OpKind::Destroy => format!("`proxdeck destroy {id}` tries again"),
                OpKind::Sync | OpKind::Forget => format!("run {} again", j.kind()),
                _ => {
                    format!("`proxdeck retry {id}` resumes it, `proxdeck destroy {id}` removes it")
                }
            });
            let outcome = Outcome::failed(format!("interrupted: {why}"), next, 1);
            out.push(self.finish_job(j.id, JobState::Failed, &outcome)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Deployment;

    fn store_with(ids: &[&str]) -> Store {
        let mut s = Store::open_in_memory().unwrap();
        for id in ids {
            s.insert_deployment(&Deployment {
                id: DeploymentId((*id).into()),
                name: format!("app-{id}"),
                ..Deployment::default()
            })
            .unwrap();
        }
        s
    }

    fn dep(id: &str) -> DeploymentId {
        DeploymentId(id.into())
    }

    #[test]
    fn one_active_job_per_deployment_and_one_sync() {
        let mut s = store_with(&["aaa111"]);
        let j = s.enqueue(&Op::Deploy, Some(&dep("aaa111")), "me").unwrap();
        assert_eq!(j.state, JobState::Queued);
        assert_eq!(j.position, Some(1));
        let e = s
            .enqueue(&Op::Destroy { force: false }, Some(&dep("aaa111")), "me")
            .unwrap_err();
        assert!(
            e.to_string().contains("deploy job #1 is queued")
                && e.to_string().contains("proxdeck cancel aaa111"),
            "{e}"
        );
        s.enqueue(&Op::Sync, None, "me").unwrap();
        assert!(s.enqueue(&Op::Sync, None, "me").is_err());
    }

    #[test]
    fn the_queue_runs_oldest_first_within_the_limit_and_one_per_deployment() {
        let mut s = store_with(&["aaa111", "bbb222", "ccc333"]);
        let a = s.enqueue(&Op::Deploy, Some(&dep("aaa111")), "me").unwrap();
        let b = s.enqueue(&Op::Deploy, Some(&dep("bbb222")), "me").unwrap();
        let c = s.enqueue(&Op::Deploy, Some(&dep("ccc333")), "me").unwrap();
        assert_eq!(s.job(c.id).unwrap().position, Some(3));
        assert_eq!(s.claim_next(2).unwrap().unwrap().id, a.id);
        assert_eq!(s.claim_next(2).unwrap().unwrap().id, b.id);
        assert!(s.claim_next(2).unwrap().is_none(), "two run at most");
        assert_eq!(s.job(c.id).unwrap().position, Some(1));
        s.finish_job(a.id, JobState::Succeeded, &Outcome::default())
            .unwrap();
        // The finished deployment can queue again, but the older job goes first.
        let a2 = s
            .enqueue(&Op::Destroy { force: false }, Some(&dep("aaa111")), "me")
            .unwrap();
        assert_eq!(s.claim_next(2).unwrap().unwrap().id, c.id);
        s.finish_job(b.id, JobState::Failed, &Outcome::default())
            .unwrap();
        assert_eq!(s.claim_next(2).unwrap().unwrap().id, a2.id);
        let recent = s.recent_jobs(10).unwrap();
        assert_eq!(recent.first().unwrap().id, a2.id);
        assert_eq!(recent.len(), 4);
    }

    #[test]
    fn cancel_ends_a_queued_job_and_flags_a_running_one() {
        let mut s = store_with(&["aaa111", "bbb222"]);
        let a = s.enqueue(&Op::Deploy, Some(&dep("aaa111")), "me").unwrap();
        let b = s.enqueue(&Op::Deploy, Some(&dep("bbb222")), "me").unwrap();
        s.claim_next(1).unwrap().unwrap();
        let queued = s.request_cancel(b.id, "me via cli").unwrap();
        assert_eq!(queued.state, JobState::Cancelled);
        assert!(
            queued
                .outcome
                .unwrap()
                .message
                .contains("before it started")
        );
        let running = s.request_cancel(a.id, "me via tui").unwrap();
        assert_eq!(running.state, JobState::Running);
        assert!(running.cancel_requested);
        assert_eq!(s.cancel_requested_jobs().unwrap(), vec![a.id]);
        let interrupted = s.interrupt_running_jobs("the worker stopped").unwrap();
        assert_eq!(interrupted.len(), 1);
        assert_eq!(interrupted[0].state, JobState::Failed);
        let outcome = interrupted[0].outcome.clone().unwrap();
        assert!(outcome.next.unwrap().contains("proxdeck retry aaa111"));
        assert!(s.request_cancel(a.id, "me").is_err(), "already ended");
        assert!(s.active_jobs().unwrap().is_empty());
    }

    #[test]
    fn a_job_starts_after_the_log_lines_already_there() {
        let mut s = store_with(&["aaa111"]);
        let line = crate::protocol::LogLine {
            at: 1,
            stream: crate::protocol::LogStream::Info,
            stage: None,
            text: "earlier".into(),
        };
        s.append_logs(&dep("aaa111"), &[line.clone(), line])
            .unwrap();
        let j = s
            .enqueue(
                &Op::Retry {
                    changes: Default::default(),
                },
                Some(&dep("aaa111")),
                "me",
            )
            .unwrap();
        let tail = s.logs_tail(&dep("aaa111"), 1).unwrap();
        assert_eq!(j.log_from, tail[0].0);
        assert!(s.logs(&dep("aaa111"), j.log_from, 10).unwrap().is_empty());
    }
}
