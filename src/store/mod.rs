//! The SQLite store under the data dir: deployments, their status history (one timestamped row
//! per transition: statistics and stage timings come from it), log lines (`logs`: plain rows
//! folded into compressed batches, retention), pinned SSH host keys, the static-address pool
//! and vmid reservations, and sync's set-based apply (`sync`).
//!
//! Owns the schema and its migrations (by `PRAGMA user_version`), WAL mode, incremental
//! auto-vacuum (space freed by retention goes back to the file system) and the busy
//! timeout that lets two proxdeck processes share one data dir. Status changes are checked
//! against the transition graph inside an immediate transaction, so a refused or racing
//! transition never lands. [`Db`] is the async handle the engine uses: every call runs on a
//! blocking thread, never on the async workers.

pub mod autodeploy;
mod chunk;
mod jobs;
pub mod logs;
mod migrations;
pub mod releases;
pub mod search;
mod snapshots;
pub mod stats;
pub mod sync;

pub use logs::{LineRef, LogFrom, LogSpace, Pruned};
pub use sync::{GuestUpdate, Rejected, SyncChanges, SyncOutcome};

use crate::domain::{Deployment, DeploymentId, GuestType, IllegalTransition, Stage, Status};
use ipnet::Ipv4Net;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("no deployment {0:?}; `proxdeck list` shows them")]
    NotFound(String),
    #[error("{0:?} matches several deployments; use the id")]
    Ambiguous(String),
    #[error(transparent)]
    Transition(#[from] IllegalTransition),
    #[error("a deployment named {0:?} already exists; pick another name or destroy it first")]
    NameTaken(String),
    #[error(
        "the address pool {0} is used up; release addresses by destroying deployments, or widen network.pool"
    )]
    PoolExhausted(Ipv4Net),
    #[error("every vmid from {lo} to {hi} is taken; widen guest.vmid_range")]
    VmidsExhausted { lo: u32, hi: u32 },
    #[error(
        "the database was written by a newer proxdeck (schema {found}, this one knows {known}); upgrade proxdeck"
    )]
    TooNew { found: i64, known: i64 },
    /// A job is already queued or running for the deployment (or a sync for the cluster).
    #[error("{0}")]
    JobActive(String),
    /// The job asked for does not exist, or has already ended.
    #[error("{0}")]
    NoJob(String),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One row of a deployment's status history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatusChange {
    pub status: Status,
    pub stage: Option<Stage>,
    pub at: i64,
    pub message: Option<String>,
}

/// A pinned host key: what the guest at `host` presented the first time.
#[derive(Debug, Clone, PartialEq)]
pub struct HostKey {
    pub host: String,
    pub key_type: String,
    pub fingerprint: String,
}

/// Fields the pipeline fills in as it learns them; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub node: Option<String>,
    pub vmid: Option<u32>,
    pub ip: Option<String>,
    pub url: Option<String>,
    pub commit: Option<String>,
}

/// How often `Store::open` tries again when the file is busy (about 20 s in all).
const OPEN_BUSY_ATTEMPTS: u32 = 45;

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub struct Store {
    conn: Connection,
    /// Plain (not yet folded) lines per deployment this connection appended to, and their
    /// bytes: when a batch is full. A count, not a buffer: every line is in the database.
    plain: std::collections::HashMap<String, (usize, usize)>,
    /// Batches decoded lately.
    chunks: logs::ChunkCache,
}

const DEPLOYMENT_COLUMNS: &str = "id, name, repo, git_ref, framework, guest_type, cores, memory_mib, \
     disk_gib, port, env_names, node, vmid, ip, url, commit_sha, status, stage, error, created_at, updated_at, \
     origin, ssh_user, ssh_port, previous_commit, missing_since, overrides";

impl Store {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        // Opening can meet SQLITE_BUSY without SQLite's busy handler ever running: when another
        // process is closing the last connection (it checkpoints and removes the WAL under an
        // exclusive lock) or is running WAL recovery. Those moments are short; try again for a
        // bounded time rather than fail a command that merely started alongside another.
        let mut attempt = 0u32;
        loop {
            let result = Connection::open(path)
                .map_err(StoreError::from)
                .and_then(Store::init);
            match result {
                Err(StoreError::Sql(e)) if is_busy(&e) && attempt < OPEN_BUSY_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt.min(10))));
                }
                other => return other,
            }
        }
    }

    pub fn open_in_memory() -> Result<Store> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store> {
        // Writers wait for each other: several proxdeck processes may share one data dir.
        conn.busy_timeout(Duration::from_secs(30))?;
        // A new file frees pages incrementally (`Store::reclaim_space`); this can only be
        // chosen before the first table exists (older files are rebuilt by `logs --prune`).
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if pages == 0 {
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        }
        // Switching the journal mode needs an exclusive lock; a file already in WAL mode (every
        // one after its first open) is left as it is.
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Statement journals and sorts in memory, not in temporary files.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // A large sync touches many pages in one transaction: keep them in memory (up to
        // 16 MiB, taken only as used) rather than spilling them to the WAL mid-way.
        conn.pragma_update(None, "cache_size", -16384)?;
        // After a checkpoint the WAL file is cut back to this size (bytes).
        conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
        let mut store = Store {
            conn,
            plain: std::collections::HashMap::new(),
            chunks: logs::ChunkCache::default(),
        };
        migrations::migrate(&mut store.conn)?;
        Ok(store)
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Changes whenever another connection (another proxdeck process) commits: cheap to poll.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// Records a new deployment and the first row of its history.
    pub fn insert_deployment(&mut self, d: &Deployment) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM deployments WHERE name = ?1 AND status != 'DELETED')",
            [&d.name],
            |r| r.get(0),
        )?;
        if taken {
            return Err(StoreError::NameTaken(d.name.clone()));
        }
        insert_row(&tx, d)?;
        tx.execute(
            "INSERT INTO status_history (deployment_id, status, stage, at, message) VALUES (?1, ?2, ?3, ?4, NULL)",
            params![d.id.0, d.status.as_str(), d.stage.map(Stage::as_str), d.created_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// True when a live (not deleted) deployment has this name.
    pub fn name_taken(&self, name: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM deployments WHERE name = ?1 AND status != 'DELETED')",
            [name],
            |r| r.get(0),
        )?)
    }

    pub fn get(&self, id: &DeploymentId) -> Result<Deployment> {
        self.conn
            .query_row(
                &format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1"),
                [&id.0],
                row_to_deployment,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.0.clone()))?
    }

    /// Finds a deployment by id, or by name (a live one first, else the newest deleted one).
    pub fn find(&self, id_or_name: &str) -> Result<Deployment> {
        let by_id = self
            .conn
            .query_row(
                &format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1"),
                [id_or_name],
                row_to_deployment,
            )
            .optional()?;
        if let Some(d) = by_id {
            return d;
        }
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE name = ?1 \
             ORDER BY (status = 'DELETED'), created_at DESC"
        ))?;
        let rows: Vec<Deployment> = stmt
            .query_map([id_or_name], row_to_deployment)?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let live = rows.iter().filter(|d| d.status != Status::Deleted).count();
        if live > 1 {
            return Err(StoreError::Ambiguous(id_or_name.to_string()));
        }
        rows.into_iter()
            .next()
            .ok_or_else(|| StoreError::NotFound(id_or_name.to_string()))
    }

    /// Every deployment, newest first.
    pub fn list(&self) -> Result<Vec<Deployment>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments ORDER BY created_at DESC, id"
        ))?;
        let rows = stmt
            .query_map([], row_to_deployment)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().collect()
    }

    /// Moves a deployment to `to`, refusing transitions outside the graph. The check and the
    /// write happen in one immediate transaction, so two processes cannot both win.
    pub fn transition(
        &mut self,
        id: &DeploymentId,
        to: Status,
        stage: Option<Stage>,
        message: Option<&str>,
    ) -> Result<Deployment> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: String = tx
            .query_row(
                "SELECT status FROM deployments WHERE id = ?1",
                [&id.0],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.0.clone()))?;
        let from: Status = current.parse().map_err(StoreError::Corrupt)?;
        from.check_transition(to)?;
        let at = now_ms();
        // The error is kept on FAILED and cleared when work starts again.
        let error = if to == Status::Failed { message } else { None };
        tx.execute(
            "UPDATE deployments SET status = ?2, stage = COALESCE(?3, stage), error = ?4, updated_at = ?5 WHERE id = ?1",
            params![id.0, to.as_str(), stage.map(Stage::as_str), error, at],
        )?;
        tx.execute(
            "INSERT INTO status_history (deployment_id, status, stage, at, message) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id.0, to.as_str(), stage.map(Stage::as_str), at, message],
        )?;
        if !to.is_in_flight() {
            // Settled: the rest of its log goes into a batch.
            logs::fold(&tx, id, true)?;
        }
        tx.commit()?;
        self.plain.remove(&id.0);
        self.get(id)
    }

    /// Records the stage a deployment has reached (for the dashboard and stage timings).
    pub fn set_stage(&mut self, id: &DeploymentId, stage: Stage) -> Result<()> {
        let at = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE deployments SET stage = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.0, stage.as_str(), at],
        )?;
        tx.execute(
            "INSERT INTO stage_history (deployment_id, stage, at) VALUES (?1, ?2, ?3)",
            params![id.0, stage.as_str(), at],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn record_facts(&mut self, id: &DeploymentId, f: &Facts) -> Result<()> {
        self.conn.execute(
            "UPDATE deployments SET node = COALESCE(?2, node), vmid = COALESCE(?3, vmid), \
             ip = COALESCE(?4, ip), url = COALESCE(?5, url), commit_sha = COALESCE(?6, commit_sha), \
             updated_at = ?7 WHERE id = ?1",
            params![id.0, f.node, f.vmid, f.ip, f.url, f.commit, now_ms()],
        )?;
        Ok(())
    }

    pub fn history(&self, id: &DeploymentId) -> Result<Vec<StatusChange>> {
        let mut stmt = self.conn.prepare(
            "SELECT status, stage, at, message FROM status_history WHERE deployment_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt
            .query_map([&id.0], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(status, stage, at, message)| {
                Ok(StatusChange {
                    status: status.parse().map_err(StoreError::Corrupt)?,
                    stage: stage
                        .map(|s| s.parse())
                        .transpose()
                        .map_err(StoreError::Corrupt)?,
                    at,
                    message,
                })
            })
            .collect()
    }

    /// Stage starts in order, for stage timings: (stage, Unix ms).
    pub fn stage_history(&self, id: &DeploymentId) -> Result<Vec<(Stage, i64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT stage, at FROM stage_history WHERE deployment_id = ?1 ORDER BY seq")?;
        let rows = stmt
            .query_map([&id.0], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(s, at)| Ok((s.parse().map_err(StoreError::Corrupt)?, at)))
            .collect()
    }

    pub fn host_key(&self, host: &str) -> Result<Option<HostKey>> {
        Ok(self
            .conn
            .query_row(
                "SELECT host, key_type, fingerprint FROM host_keys WHERE host = ?1",
                [host],
                |r| {
                    Ok(HostKey {
                        host: r.get(0)?,
                        key_type: r.get(1)?,
                        fingerprint: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn pin_host_key(&mut self, key: &HostKey) -> Result<()> {
        self.conn.execute(
            "INSERT INTO host_keys (host, key_type, fingerprint, pinned_at) VALUES (?1, ?2, ?3, ?4)",
            params![key.host, key.key_type, key.fingerprint, now_ms()],
        )?;
        Ok(())
    }

    /// Forgets the pinned key of a host (a guest that was destroyed; its address may be reused).
    pub fn forget_host_key(&mut self, host: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM host_keys WHERE host = ?1", [host])?;
        Ok(())
    }

    /// Gives `id` an address from `pool` (the same one again if it already holds one). Network
    /// and broadcast addresses are skipped for pools wider than /31.
    pub fn allocate_ip(&mut self, pool: Ipv4Net, id: &DeploymentId) -> Result<Ipv4Addr> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: Option<String> = tx
            .query_row(
                "SELECT ip FROM ip_allocations WHERE deployment_id = ?1",
                [&id.0],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(ip) = held {
            return ip
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("allocated address {ip:?}")));
        }
        let taken: std::collections::HashSet<String> = {
            let mut stmt = tx.prepare("SELECT ip FROM ip_allocations")?;
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let usable = pool.hosts();
        let free = usable
            .into_iter()
            .find(|a| !taken.contains(&a.to_string()))
            .ok_or(StoreError::PoolExhausted(pool))?;
        tx.execute(
            "INSERT INTO ip_allocations (ip, deployment_id, allocated_at) VALUES (?1, ?2, ?3)",
            params![free.to_string(), id.0, now_ms()],
        )?;
        tx.commit()?;
        Ok(free)
    }

    pub fn release_ip(&mut self, id: &DeploymentId) -> Result<()> {
        self.conn.execute(
            "DELETE FROM ip_allocations WHERE deployment_id = ?1",
            [&id.0],
        )?;
        Ok(())
    }

    /// Reserves a vmid in `range` for `id` (the same one again if it already holds one),
    /// skipping vmids reserved by other deployments and those in `taken` (guests the cluster
    /// already has). The reservation is one immediate transaction, so parallel deployments,
    /// in this process or another, never get the same vmid.
    pub fn allocate_vmid(
        &mut self,
        range: std::ops::RangeInclusive<u32>,
        id: &DeploymentId,
        taken: &std::collections::HashSet<u32>,
    ) -> Result<u32> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: Option<u32> = tx
            .query_row(
                "SELECT vmid FROM vmid_allocations WHERE deployment_id = ?1",
                [&id.0],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(v) = held.filter(|v| !taken.contains(v)) {
            return Ok(v);
        }
        let reserved: std::collections::HashSet<u32> = {
            let mut stmt =
                tx.prepare("SELECT vmid FROM vmid_allocations WHERE deployment_id != ?1")?;
            stmt.query_map([&id.0], |r| r.get::<_, u32>(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let (lo, hi) = (*range.start(), *range.end());
        let free = range
            .into_iter()
            .find(|v| !reserved.contains(v) && !taken.contains(v))
            .ok_or(StoreError::VmidsExhausted { lo, hi })?;
        tx.execute(
            "DELETE FROM vmid_allocations WHERE deployment_id = ?1",
            [&id.0],
        )?;
        tx.execute(
            "INSERT INTO vmid_allocations (vmid, deployment_id, allocated_at) VALUES (?1, ?2, ?3)",
            params![free, id.0, now_ms()],
        )?;
        tx.commit()?;
        Ok(free)
    }

    pub fn release_vmid(&mut self, id: &DeploymentId) -> Result<()> {
        self.conn.execute(
            "DELETE FROM vmid_allocations WHERE deployment_id = ?1",
            [&id.0],
        )?;
        Ok(())
    }
}

impl Store {
    /// Deployments proxdeck made (every origin but `imported`), newest first: what statistics
    /// count. Imported entries are guests found by `sync`, not deployments.
    pub fn list_managed(&self) -> Result<Vec<Deployment>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE origin != 'imported' \
             ORDER BY created_at DESC, id"
        ))?;
        let rows = stmt
            .query_map([], row_to_deployment)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().collect()
    }

    /// Removes an entry and everything recorded about it (history, log, reservations). For
    /// entries proxdeck does not own a guest for: imported ones, or ones whose guest is gone.
    pub fn forget(&mut self, id: &DeploymentId) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for table in [
            "log_lines",
            "log_chunks",
            "stage_history",
            "status_history",
            "ip_allocations",
            "vmid_allocations",
            "releases",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE deployment_id = ?1"),
                [&id.0],
            )?;
        }
        let n = tx.execute("DELETE FROM deployments WHERE id = ?1", [&id.0])?;
        if n == 0 {
            return Err(StoreError::NotFound(id.0.clone()));
        }
        tx.commit()?;
        self.plain.remove(&id.0);
        self.chunks.clear();
        // The freed pages go back to the file system; the entry is gone either way.
        if let Err(e) = self.reclaim_space(false, false) {
            tracing::warn!("giving back the space of {id}: {e}");
        }
        Ok(())
    }
}

/// Host keys pinned by parallel deployments to one host.
impl Store {
    /// Pins `key` for its host unless a key is pinned already; returns the pinned key and
    /// whether it is the one just pinned. One statement, so two processes connecting to a new
    /// host at once agree on one key instead of failing on the second insert.
    pub fn pin_host_key_once(&mut self, key: &HostKey) -> Result<(HostKey, bool)> {
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO host_keys (host, key_type, fingerprint, pinned_at) VALUES (?1, ?2, ?3, ?4)",
            params![key.host, key.key_type, key.fingerprint, now_ms()],
        )?;
        let pinned = self
            .host_key(&key.host)?
            .ok_or_else(|| StoreError::Corrupt(format!("host key of {} vanished", key.host)))?;
        Ok((pinned, inserted == 1))
    }
}

/// Redeploy and rollback: the deployed commit and the one before it, and the ref.
impl Store {
    /// Records `commit` as deployed. The commit that ran before it (when different) becomes
    /// `previous_commit` (what `rollback` rebuilds for a deployment with no release recorded).
    pub fn record_commit(&mut self, id: &DeploymentId, commit: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE deployments SET \
             previous_commit = CASE WHEN commit_sha IS NOT NULL AND commit_sha != ?2 \
                               THEN commit_sha ELSE previous_commit END, \
             commit_sha = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.0, commit, now_ms()],
        )?;
        Ok(())
    }

    /// Replaces a deployment's overrides (`retry`/`redeploy` with new commands, health check,
    /// folder or packages; `proxdeck domains` with its domains), kept for every later run.
    pub fn set_overrides(
        &mut self,
        id: &DeploymentId,
        overrides: &crate::domain::Overrides,
    ) -> Result<()> {
        let text = serde_json::to_string(overrides)
            .map_err(|e| StoreError::Corrupt(format!("overrides of {id}: {e}")))?;
        let n = self.conn.execute(
            "UPDATE deployments SET overrides = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.0, text, now_ms()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id.0.clone()));
        }
        Ok(())
    }

    /// Changes the branch, tag or commit a deployment follows (`redeploy --ref`).
    pub fn set_git_ref(&mut self, id: &DeploymentId, git_ref: &str) -> Result<()> {
        let n = self.conn.execute(
            "UPDATE deployments SET git_ref = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.0, git_ref, now_ms()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id.0.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod commit_tests {
    use super::*;

    #[test]
    fn commits_roll_forward_and_back() {
        let mut s = Store::open_in_memory().unwrap();
        let d = Deployment {
            id: DeploymentId("cmt234".into()),
            name: "cmt".into(),
            repo: "file:///r.git".into(),
            framework: "flask".into(),
            ..Deployment::default()
        };
        s.insert_deployment(&d).unwrap();
        let state = |s: &Store| {
            let d = s.get(&d.id).unwrap();
            (d.commit, d.previous_commit)
        };
        s.record_commit(&d.id, "aaaaaaa").unwrap();
        assert_eq!(state(&s), (Some("aaaaaaa".into()), None));
        // The same commit again (a retry) keeps the previous one.
        s.record_commit(&d.id, "aaaaaaa").unwrap();
        assert_eq!(state(&s), (Some("aaaaaaa".into()), None));
        s.record_commit(&d.id, "bbbbbbb").unwrap();
        assert_eq!(state(&s), (Some("bbbbbbb".into()), Some("aaaaaaa".into())));
        // Rollback to the previous one, then again: back and forth.
        s.record_commit(&d.id, "aaaaaaa").unwrap();
        assert_eq!(state(&s), (Some("aaaaaaa".into()), Some("bbbbbbb".into())));
        let key = |fp: &str| HostKey {
            host: "10.0.0.9:22".into(),
            key_type: "ssh-ed25519".into(),
            fingerprint: fp.into(),
        };
        assert_eq!(
            s.pin_host_key_once(&key("SHA256:a")).unwrap(),
            (key("SHA256:a"), true)
        );
        assert_eq!(
            s.pin_host_key_once(&key("SHA256:b")).unwrap(),
            (key("SHA256:a"), false)
        );
        s.set_git_ref(&d.id, "v2").unwrap();
        assert_eq!(s.get(&d.id).unwrap().git_ref, "v2");
        assert!(s.set_git_ref(&DeploymentId("nope22".into()), "x").is_err());
    }
}

/// Inserts one `deployments` row (no history, no checks).
fn insert_row(conn: &Connection, d: &Deployment) -> rusqlite::Result<usize> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "INSERT INTO deployments ({DEPLOYMENT_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, \
              ?22, ?23, ?24, ?25, ?26, ?27)"
        )
    });
    conn.prepare_cached(&SQL)?.execute(params![
        d.id.0,
        d.name,
        d.repo,
        d.git_ref,
        d.framework,
        d.guest_type.as_str(),
        d.cores,
        d.memory_mib,
        d.disk_gib,
        d.port,
        serde_json::to_string(&d.env_names).unwrap_or_else(|_| "[]".into()),
        d.node,
        d.vmid,
        d.ip,
        d.url,
        d.commit,
        d.status.as_str(),
        d.stage.map(Stage::as_str),
        d.error,
        d.created_at,
        d.updated_at,
        d.origin.as_str(),
        d.ssh_user,
        d.ssh_port,
        d.previous_commit,
        d.missing_since,
        // The usual case (no overrides, every imported guest) as the empty object it reads as.
        if d.overrides.is_empty() {
            "{}".to_string()
        } else {
            serde_json::to_string(&d.overrides).unwrap_or_else(|_| "{}".into())
        },
    ])
}

fn row_to_deployment(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Deployment>> {
    let id: String = r.get(0)?;
    let guest_type: String = r.get(5)?;
    let env_names: String = r.get(10)?;
    let status: String = r.get(16)?;
    let stage: Option<String> = r.get(17)?;
    let origin: String = r.get(21)?;
    let overrides: String = r.get(26)?;
    let build = || -> Result<Deployment> {
        Ok(Deployment {
            id: DeploymentId(id.clone()),
            name: r.get(1)?,
            repo: r.get(2)?,
            git_ref: r.get(3)?,
            framework: r.get(4)?,
            guest_type: guest_type
                .parse::<GuestType>()
                .map_err(StoreError::Corrupt)?,
            cores: r.get(6)?,
            memory_mib: r.get(7)?,
            disk_gib: r.get(8)?,
            port: r.get(9)?,
            env_names: serde_json::from_str(&env_names)
                .map_err(|e| StoreError::Corrupt(format!("env names of {id}: {e}")))?,
            node: r.get(11)?,
            vmid: r.get(12)?,
            ip: r.get(13)?,
            url: r.get(14)?,
            commit: r.get(15)?,
            status: status.parse().map_err(StoreError::Corrupt)?,
            stage: stage
                .map(|s| s.parse())
                .transpose()
                .map_err(StoreError::Corrupt)?,
            error: r.get(18)?,
            created_at: r.get(19)?,
            updated_at: r.get(20)?,
            origin: origin.parse().map_err(StoreError::Corrupt)?,
            ssh_user: r.get(22)?,
            ssh_port: r.get(23)?,
            previous_commit: r.get(24)?,
            missing_since: r.get(25)?,
            overrides: serde_json::from_str(&overrides)
                .map_err(|e| StoreError::Corrupt(format!("overrides of {id}: {e}")))?,
        })
    };
    Ok(build())
}

/// The engine's handle on the store: cheap to clone, every call on a blocking thread.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Mutex<Store>>,
}

impl Db {
    pub fn new(store: Store) -> Db {
        Db {
            inner: Arc::new(Mutex::new(store)),
        }
    }

    /// Runs `f` with the store on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock poisons it; the store itself is still consistent
            // (every write is a transaction), so carry on with it.
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))?
    }

    /// Runs `f` on the calling thread (for synchronous callers such as the CLI's printing).
    pub fn blocking<T>(&self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(id: &str, name: &str) -> Deployment {
        Deployment {
            id: DeploymentId(id.into()),
            name: name.into(),
            repo: "https://github.com/acme/shop.git".into(),
            git_ref: "main".into(),
            framework: "flask".into(),
            guest_type: GuestType::Lxc,
            cores: 1,
            memory_mib: 512,
            disk_gib: 8,
            port: 5000,
            env_names: vec!["SECRET_KEY".into()],
            node: None,
            vmid: None,
            ip: None,
            url: None,
            commit: None,
            status: Status::Pending,
            stage: Some(Stage::Validate),
            error: None,
            created_at: 1_000,
            updated_at: 1_000,
            ..Default::default()
        }
    }

    #[test]
    fn migrations_run_on_an_empty_file_and_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/proxdeck.db");
        let s = Store::open(&path).unwrap();
        let v = s.schema_version().unwrap();
        assert_eq!(v, migrations::LATEST);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), v);
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxdeck.db");
        drop(Store::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
        drop(c);
        let err = Store::open(&path).err().unwrap();
        assert!(err.to_string().contains("newer proxdeck"), "{err}");
    }

    #[test]
    fn insert_get_find_list() {
        let mut s = Store::open_in_memory().unwrap();
        let d = sample("abc123", "shop");
        s.insert_deployment(&d).unwrap();
        assert_eq!(s.get(&d.id).unwrap(), d);
        assert_eq!(s.find("shop").unwrap().id, d.id);
        assert_eq!(s.find("abc123").unwrap().name, "shop");
        assert!(matches!(s.find("nope"), Err(StoreError::NotFound(_))));
        assert!(matches!(
            s.insert_deployment(&sample("zzz999", "shop")),
            Err(StoreError::NameTaken(_))
        ));
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn transitions_are_checked_and_recorded() {
        let mut s = Store::open_in_memory().unwrap();
        let d = sample("abc123", "shop");
        s.insert_deployment(&d).unwrap();
        let err = s
            .transition(&d.id, Status::Running, None, None)
            .unwrap_err();
        assert!(matches!(err, StoreError::Transition(_)));
        assert_eq!(s.get(&d.id).unwrap().status, Status::Pending);
        s.transition(&d.id, Status::Provisioning, Some(Stage::Render), None)
            .unwrap();
        let failed = s
            .transition(&d.id, Status::Failed, None, Some("terraform-apply: boom"))
            .unwrap();
        assert_eq!(failed.error.as_deref(), Some("terraform-apply: boom"));
        assert_eq!(failed.stage, Some(Stage::Render));
        let h = s.history(&d.id).unwrap();
        let statuses: Vec<_> = h.iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            [Status::Pending, Status::Provisioning, Status::Failed]
        );
        // Retrying clears the error.
        let again = s
            .transition(&d.id, Status::Provisioning, None, None)
            .unwrap();
        assert_eq!(again.error, None);
    }

    #[test]
    fn a_deleted_name_can_be_reused_and_find_prefers_the_live_one() {
        let mut s = Store::open_in_memory().unwrap();
        let d = sample("aaa111", "shop");
        s.insert_deployment(&d).unwrap();
        s.transition(&d.id, Status::Destroying, None, None).unwrap();
        s.transition(&d.id, Status::Deleted, None, None).unwrap();
        let mut d2 = sample("bbb222", "shop");
        d2.created_at = 2_000;
        s.insert_deployment(&d2).unwrap();
        assert_eq!(s.find("shop").unwrap().id, d2.id);
    }

    #[test]
    fn ip_pool_allocates_stably_and_releases() {
        let mut s = Store::open_in_memory().unwrap();
        let pool: Ipv4Net = "10.0.0.0/30".parse().unwrap();
        let a = DeploymentId("a".into());
        let b = DeploymentId("b".into());
        let c = DeploymentId("c".into());
        let ip_a = s.allocate_ip(pool, &a).unwrap();
        assert_eq!(ip_a.to_string(), "10.0.0.1");
        assert_eq!(s.allocate_ip(pool, &a).unwrap(), ip_a);
        assert_eq!(s.allocate_ip(pool, &b).unwrap().to_string(), "10.0.0.2");
        assert!(matches!(
            s.allocate_ip(pool, &c),
            Err(StoreError::PoolExhausted(_))
        ));
        s.release_ip(&a).unwrap();
        assert_eq!(s.allocate_ip(pool, &c).unwrap().to_string(), "10.0.0.1");
        let single: Ipv4Net = "127.0.0.9/32".parse().unwrap();
        assert_eq!(
            s.allocate_ip(single, &DeploymentId("d".into()))
                .unwrap()
                .to_string(),
            "127.0.0.9"
        );
    }

    #[test]
    fn vmids_are_reserved_once_and_skip_taken_ones() {
        let mut s = Store::open_in_memory().unwrap();
        let none = std::collections::HashSet::new();
        let a = DeploymentId("a".into());
        let b = DeploymentId("b".into());
        assert_eq!(s.allocate_vmid(100..=102, &a, &none).unwrap(), 100);
        assert_eq!(s.allocate_vmid(100..=102, &a, &none).unwrap(), 100);
        let taken: std::collections::HashSet<u32> = [101].into();
        assert_eq!(s.allocate_vmid(100..=102, &b, &taken).unwrap(), 102);
        let c = DeploymentId("c".into());
        assert!(matches!(
            s.allocate_vmid(100..=102, &c, &taken),
            Err(StoreError::VmidsExhausted { .. })
        ));
        // A held vmid that turned out to be taken on the cluster is replaced.
        s.release_vmid(&b).unwrap();
        let taken_a: std::collections::HashSet<u32> = [100].into();
        assert_eq!(s.allocate_vmid(100..=102, &a, &taken_a).unwrap(), 101);
    }

    #[test]
    fn new_columns_round_trip() {
        let mut s = Store::open_in_memory().unwrap();
        let mut d = sample("abc123", "shop");
        d.origin = crate::domain::Origin::Host;
        d.ssh_user = Some("deploy".into());
        d.ssh_port = Some(2222);
        d.previous_commit = Some("abc".into());
        d.missing_since = Some(5);
        d.overrides.start = Some("node server.js".into());
        s.insert_deployment(&d).unwrap();
        assert_eq!(s.get(&d.id).unwrap(), d);
    }

    #[test]
    fn host_keys_pin_and_forget() {
        let mut s = Store::open_in_memory().unwrap();
        assert_eq!(s.host_key("10.0.0.1:22").unwrap(), None);
        let k = HostKey {
            host: "10.0.0.1:22".into(),
            key_type: "ssh-ed25519".into(),
            fingerprint: "SHA256:abc".into(),
        };
        s.pin_host_key(&k).unwrap();
        assert_eq!(s.host_key("10.0.0.1:22").unwrap(), Some(k));
        s.forget_host_key("10.0.0.1:22").unwrap();
        assert_eq!(s.host_key("10.0.0.1:22").unwrap(), None);
    }

    #[test]
    fn sync_imports_once_updates_marks_missing_and_forgets() {
        let mut s = Store::open_in_memory().unwrap();
        let mut managed = sample("mng111", "web");
        managed.vmid = Some(100);
        s.insert_deployment(&managed).unwrap();
        s.transition(&managed.id, Status::Provisioning, None, None)
            .unwrap();
        s.transition(&managed.id, Status::Deploying, None, None)
            .unwrap();
        s.transition(&managed.id, Status::Running, None, None)
            .unwrap();
        let imported = |id: &str, name: &str, vmid: u32| Deployment {
            id: DeploymentId(id.into()),
            name: name.into(),
            origin: crate::domain::Origin::Imported,
            vmid: Some(vmid),
            status: Status::Running,
            stage: None,
            created_at: 2_000,
            updated_at: 2_000,
            ..Deployment::default()
        };
        let changes = SyncChanges {
            // "web" is taken: the import becomes web-101; vmid 100 is known: skipped.
            imports: vec![imported("imp222", "web", 101), imported("dup333", "x", 100)],
            updates: vec![GuestUpdate {
                id: managed.id.clone(),
                node: Some("pve2".into()),
                status: Some(Status::Stopped),
                resources: None,
            }],
            missing: vec![],
            returned: vec![],
            at: 3_000,
        };
        let done = s.apply_sync(&changes).unwrap().imported;
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].name, "web-101");
        let m = s.get(&managed.id).unwrap();
        assert_eq!(
            (m.status, m.node.as_deref()),
            (Status::Stopped, Some("pve2"))
        );
        assert_eq!(s.list().unwrap().len(), 2);
        assert_eq!(s.list_managed().unwrap().len(), 1);
        // A second identical sync imports nothing.
        assert_eq!(s.apply_sync(&changes).unwrap(), SyncOutcome::default());
        assert_eq!(s.list().unwrap().len(), 2);
        // An update outside the graph is refused, whole (its node change too), and reported;
        // the rest of that sync lands.
        let bad = SyncChanges {
            missing: vec![DeploymentId("imp222".into())],
            updates: vec![GuestUpdate {
                id: managed.id.clone(),
                node: Some("pve3".into()),
                status: Some(Status::Provisioning),
                ..GuestUpdate::default()
            }],
            at: 5_000,
            ..SyncChanges::default()
        };
        let outcome = s.apply_sync(&bad).unwrap();
        assert_eq!(outcome.rejected.len(), 1);
        assert_eq!(outcome.rejected[0].id, managed.id);
        assert!(
            outcome.rejected[0].reason.contains("PROVISIONING"),
            "{:?}",
            outcome.rejected
        );
        assert_eq!(s.get(&managed.id).unwrap().node.as_deref(), Some("pve2"));
        let missing = SyncChanges {
            missing: vec![DeploymentId("imp222".into())],
            at: 5_000,
            ..SyncChanges::default()
        };
        assert_eq!(
            s.get(&DeploymentId("imp222".into())).unwrap().missing_since,
            Some(5_000)
        );
        // Marking again keeps the first time it went missing.
        s.apply_sync(&SyncChanges {
            at: 6_000,
            ..missing.clone()
        })
        .unwrap();
        assert_eq!(
            s.get(&DeploymentId("imp222".into())).unwrap().missing_since,
            Some(5_000)
        );
        s.forget(&DeploymentId("imp222".into())).unwrap();
        assert!(matches!(s.find("imp222"), Err(StoreError::NotFound(_))));
        assert!(
            s.history(&DeploymentId("imp222".into()))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn two_connections_share_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxdeck.db");
        let mut a = Store::open(&path).unwrap();
        let b = Store::open(&path).unwrap();
        let v0 = b.data_version().unwrap();
        a.insert_deployment(&sample("abc123", "shop")).unwrap();
        assert_ne!(b.data_version().unwrap(), v0);
        assert_eq!(b.list().unwrap().len(), 1);
    }
}

/// What a watcher polls.
impl Store {
    /// Moves whenever a deployment is added, changed, forgotten or marked missing: a watcher
    /// compares it before reading the whole list again (log lines alone leave it as it is).
    pub fn deployments_marker(&self) -> Result<(i64, i64, i64)> {
        Ok(self.conn.query_row(
            "SELECT count(*), COALESCE(max(updated_at), 0), count(missing_since) FROM deployments",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    }
}
