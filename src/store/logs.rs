//! Deployment logs in the store: appending lines, reading them by sequence number (from a
//! point on, before a point, the tail, since a time), searching them, folding them into
//! compressed batches, and retention (the logs of deleted deployments) with the space given
//! back to the file system.
//!
//! Two tables hold a log. `log_lines` gets every line as it is appended, one row each, in the
//! appending transaction: a line is readable by every connection (another process following
//! the log) as soon as that transaction commits; nothing is held back in memory. Full batches
//! of [`CHUNK_LINES`] lines (or [`CHUNK_BYTES`] of text) are folded into one `log_chunks` row
//! ([`super::chunk`]) in the same transaction as the append that filled them, and what is left
//! is folded when the deployment settles. Folding moves the oldest plain lines of a deployment,
//! and sequence numbers only grow (`AUTOINCREMENT`), so every batched line of a deployment is
//! older than every plain one: readers go through batches, then plain rows (backwards: the
//! other way round), and see each line once, in order, with the sequence number it was given.
//!
//! This module must not hold lines back from the database, nor change a line's sequence
//! number.

use super::chunk::{self, Decoded, RawLine};
use super::{Result, Store, StoreError, now_ms};
use crate::domain::{DeploymentId, Stage};
use crate::protocol::{LogLine, LogStream};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::cell::RefCell;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Lines per batch.
pub const CHUNK_LINES: usize = 4096;
/// Text per batch: a batch of long lines is closed earlier, so reading one stays cheap.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// Decoded batches kept per connection: paging back and forth, and a window around a line
/// that straddles two batches, decode nothing twice.
const CACHED_CHUNKS: usize = 4;

/// One line as a read visits it, borrowed from the decoded batch or the row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineRef<'a> {
    pub seq: i64,
    pub at: i64,
    pub stream: LogStream,
    pub stage: Option<Stage>,
    pub text: &'a str,
}

impl LineRef<'_> {
    pub fn to_line(&self) -> LogLine {
        LogLine {
            at: self.at,
            stream: self.stream,
            stage: self.stage,
            text: self.text.to_string(),
        }
    }
}

/// Where a read starts and which way it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFrom {
    /// Lines with a sequence number above this, oldest first.
    After(i64),
    /// Lines with a sequence number below this, newest first.
    Before(i64),
}

/// What `proxdeck logs --prune` (and the automatic retention) did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Pruned {
    /// Deleted deployments whose logs were removed.
    pub deployments: usize,
    pub lines: u64,
    /// Plain lines of settled deployments folded into batches.
    pub folded: u64,
    /// The database's size before and after (bytes; the WAL file not counted).
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// How much room logs take.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LogSpace {
    pub lines: u64,
    /// Bytes of text the lines hold (what a user would read).
    pub text_bytes: u64,
    /// Lines still in plain rows (not yet folded).
    pub plain_lines: u64,
    /// The database file's size (bytes), free pages included.
    pub file_bytes: u64,
    pub free_bytes: u64,
}

/// Decoded batches, newest use last; keyed by deployment and sequence range, which are never
/// reused, so an entry can never describe another batch.
#[derive(Default)]
pub(super) struct ChunkCache {
    entries: RefCell<Vec<(ChunkKey, Arc<Decoded>)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ChunkKey {
    deployment: String,
    first_seq: i64,
    last_seq: i64,
}

impl ChunkCache {
    fn get(&self, key: &ChunkKey) -> Option<Arc<Decoded>> {
        let mut entries = self.entries.borrow_mut();
        let i = entries.iter().position(|(k, _)| k == key)?;
        let entry = entries.remove(i);
        let decoded = entry.1.clone();
        entries.push(entry);
        Some(decoded)
    }

    fn put(&self, key: ChunkKey, decoded: Arc<Decoded>) {
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= CACHED_CHUNKS {
            entries.remove(0);
        }
        entries.push((key, decoded));
    }

    pub(super) fn clear(&self) {
        self.entries.borrow_mut().clear();
    }
}

/// A `log_chunks` row without its data.
struct ChunkRow {
    id: i64,
    first_seq: i64,
    last_seq: i64,
    max_at: i64,
}

fn chunk_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChunkRow> {
    Ok(ChunkRow {
        id: r.get(0)?,
        first_seq: r.get(1)?,
        last_seq: r.get(2)?,
        max_at: r.get(3)?,
    })
}

/// Appending and folding.
impl Store {
    /// Appends lines to a deployment's log in one transaction; full batches are folded in the
    /// same transaction.
    pub fn append_logs(&mut self, id: &DeploymentId, lines: &[LogLine]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO log_lines (deployment_id, at, stream, stage, line) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for l in lines {
                stmt.execute(params![
                    id.0,
                    l.at,
                    l.stream.as_str(),
                    l.stage.map(Stage::as_str),
                    l.text
                ])?;
            }
        }
        let added: usize = lines.iter().map(|l| l.text.len()).sum();
        let pending = self.plain.entry(id.0.clone()).or_insert((0, 0));
        if pending.0 == 0 {
            // The first append this connection makes to this log: count what is there.
            *pending = plain_size(&tx, id)?;
        } else {
            pending.0 += lines.len();
            pending.1 += added;
        }
        if pending.0 >= CHUNK_LINES || pending.1 >= CHUNK_BYTES {
            let left = fold(&tx, id, false)?;
            self.plain.insert(id.0.clone(), left);
        }
        tx.commit()?;
        Ok(())
    }

    /// Folds the plain lines of every settled deployment into batches (the logs of a
    /// proxdeck that kept lines only in plain rows, or lines appended after a deployment
    /// settled). Returns how many lines moved.
    pub fn compact_logs(&mut self) -> Result<u64> {
        let ids: Vec<String> = {
            let mut stmt = self.conn.prepare(
                "SELECT DISTINCT l.deployment_id FROM log_lines l \
                 JOIN deployments d ON d.id = l.deployment_id \
                 WHERE d.status NOT IN ('PROVISIONING', 'DEPLOYING', 'DESTROYING')",
            )?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut moved = 0u64;
        for id in ids {
            let id = DeploymentId(id);
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let before = plain_size(&tx, &id)?.0;
            fold(&tx, &id, true)?;
            tx.commit()?;
            self.plain.remove(&id.0);
            moved += before as u64;
        }
        Ok(moved)
    }
}

/// Plain lines of a deployment: how many, and their text's bytes.
fn plain_size(conn: &Connection, id: &DeploymentId) -> Result<(usize, usize)> {
    let (n, bytes): (i64, i64) = conn.query_row(
        "SELECT count(*), COALESCE(sum(length(CAST(line AS BLOB))), 0) FROM log_lines WHERE deployment_id = ?1",
        [&id.0],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((n.max(0) as usize, bytes.max(0) as usize))
}

/// Moves a deployment's plain lines into batches, oldest first: only full batches, or with
/// `all` the rest too. Runs inside the caller's transaction; returns the plain lines (and
/// their bytes) left.
pub(super) fn fold(conn: &Connection, id: &DeploymentId, all: bool) -> Result<(usize, usize)> {
    let rows: Vec<RawLine> = {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, at, stream, stage, line FROM log_lines WHERE deployment_id = ?1 ORDER BY seq",
        )?;
        stmt.query_map([&id.0], |r| {
            Ok(RawLine {
                seq: r.get(0)?,
                at: r.get(1)?,
                stream: r.get(2)?,
                stage: r.get(3)?,
                text: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    let mut start = 0;
    let mut folded_to = None;
    while start < rows.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < rows.len() && end - start < CHUNK_LINES && bytes < CHUNK_BYTES {
            bytes += rows[end].text.len();
            end += 1;
        }
        let full = end - start == CHUNK_LINES || bytes >= CHUNK_BYTES;
        if !full && !all {
            break;
        }
        let e = chunk::encode(&rows[start..end]).map_err(StoreError::Corrupt)?;
        conn.prepare_cached(
            "INSERT INTO log_chunks (deployment_id, first_seq, last_seq, lines, min_at, max_at, raw_bytes, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            id.0,
            e.first_seq,
            e.last_seq,
            e.lines as i64,
            e.min_at,
            e.max_at,
            e.raw_bytes as i64,
            e.data
        ])?;
        folded_to = Some(e.last_seq);
        start = end;
    }
    if let Some(last) = folded_to {
        conn.prepare_cached("DELETE FROM log_lines WHERE deployment_id = ?1 AND seq <= ?2")?
            .execute(params![id.0, last])?;
    }
    let left = &rows[start..];
    Ok((left.len(), left.iter().map(|l| l.text.len()).sum()))
}

/// Reading.
impl Store {
    /// Visits a deployment's lines from `from` on, in its direction, those at or after
    /// `since` (Unix ms) only when given, until `visit` breaks.
    pub fn visit_logs(
        &self,
        id: &DeploymentId,
        from: LogFrom,
        since: Option<i64>,
        visit: &mut dyn FnMut(LineRef<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        // Batched lines are older than plain ones (see the module docs). Whether the visitor
        // stopped early is its own business.
        let _stopped_or_done = match from {
            LogFrom::After(_) => match self.visit_chunks(id, from, since, visit)? {
                ControlFlow::Continue(()) => self.visit_plain(id, from, since, visit)?,
                done => done,
            },
            LogFrom::Before(_) => match self.visit_plain(id, from, since, visit)? {
                ControlFlow::Continue(()) => self.visit_chunks(id, from, since, visit)?,
                done => done,
            },
        };
        Ok(())
    }

    fn visit_plain(
        &self,
        id: &DeploymentId,
        from: LogFrom,
        since: Option<i64>,
        visit: &mut dyn FnMut(LineRef<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>> {
        let (sql, point) = match from {
            LogFrom::After(after) => (
                "SELECT seq, at, stream, stage, line FROM log_lines \
                 WHERE deployment_id = ?1 AND seq > ?2 AND at >= ?3 ORDER BY seq",
                after,
            ),
            LogFrom::Before(before) => (
                "SELECT seq, at, stream, stage, line FROM log_lines \
                 WHERE deployment_id = ?1 AND seq < ?2 AND at >= ?3 ORDER BY seq DESC",
                before,
            ),
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![id.0, point, since.unwrap_or(i64::MIN)])?;
        while let Some(r) = rows.next()? {
            let stream = r.get_ref(2)?.as_str().unwrap_or("");
            let stage = r.get_ref(3)?.as_str_or_null().ok().flatten();
            let line = LineRef {
                seq: r.get(0)?,
                at: r.get(1)?,
                stream: LogStream::parse(stream),
                stage: stage.and_then(|s| s.parse().ok()),
                text: r.get_ref(4)?.as_str().unwrap_or(""),
            };
            if visit(line).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn visit_chunks(
        &self,
        id: &DeploymentId,
        from: LogFrom,
        since: Option<i64>,
        visit: &mut dyn FnMut(LineRef<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>> {
        let (sql, point) = match from {
            LogFrom::After(after) => (
                "SELECT id, first_seq, last_seq, max_at FROM log_chunks \
                 WHERE deployment_id = ?1 AND last_seq > ?2 ORDER BY last_seq",
                after,
            ),
            LogFrom::Before(before) => (
                "SELECT id, first_seq, last_seq, max_at FROM log_chunks \
                 WHERE deployment_id = ?1 AND first_seq < ?2 ORDER BY first_seq DESC",
                before,
            ),
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![id.0, point])?;
        let since_at = since.unwrap_or(i64::MIN);
        while let Some(r) = rows.next()? {
            let c = chunk_row(r)?;
            if c.max_at < since_at {
                continue;
            }
            let d = self.decoded(id, &c)?;
            let line = |i: usize| LineRef {
                seq: d.seqs[i],
                at: d.ats[i],
                stream: d.stream(i),
                stage: d.stage(i),
                text: d.text(i),
            };
            match from {
                LogFrom::After(after) => {
                    for i in d.first_after(after)..d.len() {
                        if d.ats[i] >= since_at && visit(line(i)).is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                }
                LogFrom::Before(before) => {
                    for i in (0..d.count_before(before)).rev() {
                        if d.ats[i] >= since_at && visit(line(i)).is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// A batch, decoded (from the cache when it was read lately).
    fn decoded(&self, id: &DeploymentId, c: &ChunkRow) -> Result<Arc<Decoded>> {
        let key = ChunkKey {
            deployment: id.0.clone(),
            first_seq: c.first_seq,
            last_seq: c.last_seq,
        };
        if let Some(d) = self.chunks.get(&key) {
            return Ok(d);
        }
        let data: Vec<u8> = self
            .conn
            .prepare_cached("SELECT data FROM log_chunks WHERE id = ?1")?
            .query_row([c.id], |r| r.get(0))?;
        let d = Arc::new(chunk::decode(&data).map_err(|e| {
            StoreError::Corrupt(format!(
                "the log of {} (lines {}-{}): {e}",
                id, c.first_seq, c.last_seq
            ))
        })?);
        self.chunks.put(key, d.clone());
        Ok(d)
    }

    /// Log lines after sequence number `after` (0 for the start), at most `limit`, with their
    /// sequence numbers so a follower can continue where it stopped.
    pub fn logs(&self, id: &DeploymentId, after: i64, limit: usize) -> Result<Vec<(i64, LogLine)>> {
        self.logs_since(id, None, after, limit)
    }

    /// Like [`Store::logs`], only lines at or after `since` (Unix ms) when given.
    pub fn logs_since(
        &self,
        id: &DeploymentId,
        since: Option<i64>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, LogLine)>> {
        self.collect_lines(id, LogFrom::After(after), since, limit)
    }

    /// The last `limit` lines of a deployment's log.
    pub fn logs_tail(&self, id: &DeploymentId, limit: usize) -> Result<Vec<(i64, LogLine)>> {
        self.logs_before(id, i64::MAX, limit)
    }

    /// The last `limit` lines at or after `since` (Unix ms) when given, oldest first.
    pub fn logs_tail_since(
        &self,
        id: &DeploymentId,
        since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, LogLine)>> {
        self.before_since(id, i64::MAX, since, limit)
    }

    /// Up to `limit` lines just before sequence number `before`, oldest first.
    pub fn logs_before(
        &self,
        id: &DeploymentId,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(i64, LogLine)>> {
        self.before_since(id, before, None, limit)
    }

    fn before_since(
        &self,
        id: &DeploymentId,
        before: i64,
        since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, LogLine)>> {
        let mut out = self.collect_lines(id, LogFrom::Before(before), since, limit)?;
        out.reverse();
        Ok(out)
    }

    /// Up to `limit` lines visited from `from` (in visiting order), as owned lines.
    fn collect_lines(
        &self,
        id: &DeploymentId,
        from: LogFrom,
        since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, LogLine)>> {
        let mut out = Vec::with_capacity(limit.min(8192));
        if limit == 0 {
            return Ok(out);
        }
        self.visit_logs(id, from, since, &mut |l| {
            out.push((l.seq, l.to_line()));
            if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(out)
    }

    /// The sequence number of the first line after `from` (`forward`), or the last one before
    /// it, whose text contains `query` (ASCII case-insensitively).
    pub fn find_log(
        &self,
        id: &DeploymentId,
        query: &str,
        from: i64,
        forward: bool,
    ) -> Result<Option<i64>> {
        let needle = query.to_ascii_lowercase();
        let in_plain = |after: i64, before: i64| -> Result<Option<i64>> {
            let sql = if forward {
                "SELECT seq FROM log_lines WHERE deployment_id = ?1 AND seq > ?2 AND seq < ?3 \
                 AND instr(lower(line), ?4) > 0 ORDER BY seq LIMIT 1"
            } else {
                "SELECT seq FROM log_lines WHERE deployment_id = ?1 AND seq > ?2 AND seq < ?3 \
                 AND instr(lower(line), ?4) > 0 ORDER BY seq DESC LIMIT 1"
            };
            Ok(self
                .conn
                .prepare_cached(sql)?
                .query_row(params![id.0, after, before, needle], |r| r.get(0))
                .optional()?)
        };
        let in_chunks = || -> Result<Option<i64>> {
            let (sql, point) = if forward {
                (
                    "SELECT id, first_seq, last_seq, max_at FROM log_chunks \
                     WHERE deployment_id = ?1 AND last_seq > ?2 ORDER BY last_seq",
                    from,
                )
            } else {
                (
                    "SELECT id, first_seq, last_seq, max_at FROM log_chunks \
                     WHERE deployment_id = ?1 AND first_seq < ?2 ORDER BY first_seq DESC",
                    from,
                )
            };
            let mut stmt = self.conn.prepare_cached(sql)?;
            let chunks: Vec<ChunkRow> = stmt
                .query_map(params![id.0, point], chunk_row)?
                .collect::<rusqlite::Result<_>>()?;
            for c in chunks {
                let d = self.decoded(id, &c)?;
                let lowered = d.lowered_text();
                let hit = if forward {
                    (d.first_after(from)..d.len()).find(|&i| d.slice(&lowered, i).contains(&needle))
                } else {
                    (0..d.count_before(from))
                        .rev()
                        .find(|&i| d.slice(&lowered, i).contains(&needle))
                };
                if let Some(i) = hit {
                    return Ok(Some(d.seqs[i]));
                }
            }
            Ok(None)
        };
        if forward {
            match in_chunks()? {
                Some(seq) => Ok(Some(seq)),
                None => in_plain(from, i64::MAX),
            }
        } else {
            match in_plain(i64::MIN, from)? {
                Some(seq) => Ok(Some(seq)),
                None => in_chunks(),
            }
        }
    }
}

/// Retention and space.
impl Store {
    /// Removes the logs of deployments deleted (destroyed) before `deleted_before` (Unix ms).
    /// The records and their history stay.
    pub fn prune_deleted_logs(&mut self, deleted_before: i64) -> Result<Pruned> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT id FROM deployments d WHERE status = 'DELETED' AND updated_at < ?1 \
                 AND (EXISTS (SELECT 1 FROM log_lines l WHERE l.deployment_id = d.id) \
                      OR EXISTS (SELECT 1 FROM log_chunks c WHERE c.deployment_id = d.id))",
            )?;
            stmt.query_map([deleted_before], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut lines = 0u64;
        for id in &ids {
            let in_chunks: i64 = tx.query_row(
                "SELECT COALESCE(sum(lines), 0) FROM log_chunks WHERE deployment_id = ?1",
                [id],
                |r| r.get(0),
            )?;
            let plain = tx.execute("DELETE FROM log_lines WHERE deployment_id = ?1", [id])?;
            tx.execute("DELETE FROM log_chunks WHERE deployment_id = ?1", [id])?;
            lines += in_chunks.max(0) as u64 + plain as u64;
        }
        tx.commit()?;
        for id in &ids {
            self.plain.remove(id);
        }
        self.chunks.clear();
        Ok(Pruned {
            deployments: ids.len(),
            lines,
            ..Pruned::default()
        })
    }

    /// The database file's size and its free part (bytes).
    pub fn file_space(&self) -> Result<(u64, u64)> {
        let page: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        Ok(((page * pages).max(0) as u64, (page * free).max(0) as u64))
    }

    /// How many lines the store holds, their text, and the file's size.
    pub fn log_space(&self) -> Result<LogSpace> {
        let (chunk_lines, chunk_bytes): (i64, i64) = self.conn.query_row(
            "SELECT COALESCE(sum(lines), 0), COALESCE(sum(raw_bytes), 0) FROM log_chunks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (plain_lines, plain_bytes): (i64, i64) = self.conn.query_row(
            "SELECT count(*), COALESCE(sum(length(CAST(line AS BLOB))), 0) FROM log_lines",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (file_bytes, free_bytes) = self.file_space()?;
        Ok(LogSpace {
            lines: (chunk_lines + plain_lines).max(0) as u64,
            text_bytes: (chunk_bytes + plain_bytes).max(0) as u64,
            plain_lines: plain_lines.max(0) as u64,
            file_bytes,
            free_bytes,
        })
    }

    /// Gives free pages back to the file system. A database made by this proxdeck does it
    /// incrementally; an older file is rebuilt once (`VACUUM`) when `rebuild` is set, which
    /// makes it incremental from then on. Then the WAL is checkpointed: `wait` waits for
    /// readers so the WAL file shrinks too (for `logs --prune`), otherwise it takes what it
    /// can without waiting.
    pub fn reclaim_space(&mut self, rebuild: bool, wait: bool) -> Result<()> {
        let mode: i64 = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        if mode == 2 {
            // Each step of the pragma frees pages: step it to its end.
            let mut stmt = self.conn.prepare("PRAGMA incremental_vacuum")?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
        } else if rebuild {
            self.conn
                .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")?;
        }
        let checkpoint = if wait {
            "PRAGMA wal_checkpoint(TRUNCATE)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        // In-memory databases have no WAL; the pragma answers with a row either way.
        let _: Option<i64> = self
            .conn
            .query_row(checkpoint, [], |r| r.get(0))
            .optional()?;
        Ok(())
    }

    /// Retention and compaction in one: the logs of deployments deleted before
    /// `deleted_before` removed, plain lines of settled deployments folded, and the space
    /// given back (see [`Store::reclaim_space`]).
    pub fn prune_logs(&mut self, deleted_before: i64, rebuild: bool) -> Result<Pruned> {
        let (bytes_before, _) = self.file_space()?;
        let mut pruned = self.prune_deleted_logs(deleted_before)?;
        pruned.folded = self.compact_logs()?;
        self.reclaim_space(rebuild, rebuild)?;
        pruned.bytes_before = bytes_before;
        pruned.bytes_after = self.file_space()?.0;
        Ok(pruned)
    }

    /// The automatic part of retention, run when the data dir is opened: the logs of
    /// deployments deleted more than `keep` ago removed, their space given back without
    /// waiting for anyone.
    pub fn expire_deleted_logs(&mut self, keep: std::time::Duration) -> Result<Pruned> {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let pruned = self.prune_deleted_logs(now_ms().saturating_sub(keep_ms))?;
        if pruned.deployments > 0 {
            self.reclaim_space(false, false)?;
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod log_window_tests {
    use super::*;
    use crate::domain::Deployment;

    #[test]
    fn logs_keep_order_and_page() {
        let mut s = Store::open_in_memory().unwrap();
        let d = Deployment {
            id: DeploymentId("abc123".into()),
            name: "shop".into(),
            ..Deployment::default()
        };
        s.insert_deployment(&d).unwrap();
        let lines: Vec<LogLine> = (0..250)
            .map(|i| LogLine {
                at: i,
                stream: if i % 2 == 0 {
                    LogStream::Stdout
                } else {
                    LogStream::Stderr
                },
                stage: Some(Stage::TerraformApply),
                text: format!("line {i}"),
            })
            .collect();
        s.append_logs(&d.id, &lines).unwrap();
        let first = s.logs(&d.id, 0, 100).unwrap();
        assert_eq!(first.len(), 100);
        let rest = s.logs(&d.id, first.last().unwrap().0, 1000).unwrap();
        assert_eq!(rest.len(), 150);
        let texts: Vec<_> = first
            .iter()
            .chain(&rest)
            .map(|(_, l)| l.text.clone())
            .collect();
        assert_eq!(
            texts,
            lines.iter().map(|l| l.text.clone()).collect::<Vec<_>>()
        );
        assert_eq!(first[1].1.stream, LogStream::Stderr);
    }

    #[test]
    fn tail_before_and_find() {
        let mut s = Store::open_in_memory().unwrap();
        for id in ["aaa111", "bbb222"] {
            s.insert_deployment(&Deployment {
                id: DeploymentId(id.into()),
                name: id.into(),
                ..Deployment::default()
            })
            .unwrap();
        }
        let (a, b) = (DeploymentId("aaa111".into()), DeploymentId("bbb222".into()));
        let line = |i: usize| LogLine {
            at: i as i64,
            stream: LogStream::Stdout,
            stage: Some(Stage::Provision),
            text: format!(
                "line {i} {}",
                if i.is_multiple_of(10) {
                    "Needle"
                } else {
                    "hay"
                }
            ),
        };
        for i in 0..50 {
            // Interleaved with another deployment's lines: sequence numbers have gaps.
            s.append_logs(&a, &[line(i)]).unwrap();
            s.append_logs(&b, &[line(1000 + i)]).unwrap();
        }
        let tail = s.logs_tail(&a, 5).unwrap();
        let texts: Vec<&str> = tail.iter().map(|(_, l)| l.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "line 45 hay",
                "line 46 hay",
                "line 47 hay",
                "line 48 hay",
                "line 49 hay"
            ]
        );
        let before = s.logs_before(&a, tail[0].0, 3).unwrap();
        assert_eq!(before.len(), 3);
        assert_eq!(before[2].1.text, "line 44 hay");
        assert!(before.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(
            s.logs_tail(&DeploymentId("none".into()), 5).unwrap(),
            vec![]
        );

        let first = s.find_log(&a, "needle", 0, true).unwrap().unwrap();
        let all = s.logs(&a, 0, 100).unwrap();
        let text_of = |seq: i64| all.iter().find(|(q, _)| *q == seq).unwrap().1.text.clone();
        assert_eq!(text_of(first), "line 0 Needle");
        let next = s.find_log(&a, "NEEDLE", first, true).unwrap().unwrap();
        assert_eq!(text_of(next), "line 10 Needle");
        let back = s.find_log(&a, "needle", tail[4].0, false).unwrap().unwrap();
        assert_eq!(text_of(back), "line 40 Needle");
        assert_eq!(s.find_log(&a, "needle", back, true).unwrap(), None);
        assert_eq!(s.find_log(&a, "absent", 0, true).unwrap(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Deployment, Status};

    fn deployment(s: &mut Store, id: &str) -> DeploymentId {
        s.insert_deployment(&Deployment {
            id: DeploymentId(id.into()),
            name: id.into(),
            ..Deployment::default()
        })
        .unwrap();
        DeploymentId(id.into())
    }

    fn line(i: usize) -> LogLine {
        LogLine {
            at: 1_000_000 + i as i64,
            stream: if i.is_multiple_of(7) {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            },
            stage: Some(if i.is_multiple_of(2) {
                Stage::Provision
            } else {
                Stage::TerraformApply
            }),
            text: format!(
                "line {i} {}",
                if i.is_multiple_of(1000) {
                    "Needle"
                } else {
                    "hay"
                }
            ),
        }
    }

    fn chunk_count(s: &Store, id: &DeploymentId) -> i64 {
        s.conn
            .query_row(
                "SELECT count(*) FROM log_chunks WHERE deployment_id = ?1",
                [&id.0],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// Every line of a log through `logs` pages of `page`.
    fn read_all(s: &Store, id: &DeploymentId, page: usize) -> Vec<(i64, LogLine)> {
        let mut out: Vec<(i64, LogLine)> = Vec::new();
        loop {
            let after = out.last().map_or(0, |(seq, _)| *seq);
            let next = s.logs(id, after, page).unwrap();
            if next.is_empty() {
                return out;
            }
            out.extend(next);
        }
    }

    #[test]
    fn full_batches_fold_as_lines_arrive_and_reads_see_one_log() {
        let mut s = Store::open_in_memory().unwrap();
        let (a, b) = (deployment(&mut s, "aaa111"), deployment(&mut s, "bbb222"));
        let lines: Vec<LogLine> = (0..10_000).map(line).collect();
        // Interleaved with another log: sequence numbers have gaps.
        for batch in lines.chunks(512) {
            s.append_logs(&a, batch).unwrap();
            s.append_logs(&b, &batch[..3]).unwrap();
        }
        assert_eq!(chunk_count(&s, &a), 2, "two full batches of {CHUNK_LINES}");
        let all = read_all(&s, &a, 777);
        assert_eq!(all.len(), 10_000);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(
            all.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
            lines
        );
        // Tail, before, around a batch's edge, and a search, over batches and plain rows.
        let tail = s.logs_tail(&a, 3).unwrap();
        assert_eq!(tail, all[9_997..].to_vec());
        let edge = all[CHUNK_LINES].0;
        assert_eq!(
            s.logs_before(&a, edge, 10).unwrap(),
            all[CHUNK_LINES - 10..CHUNK_LINES].to_vec()
        );
        assert_eq!(
            s.logs(&a, edge - 1, 10).unwrap(),
            all[CHUNK_LINES..CHUNK_LINES + 10].to_vec()
        );
        let seq_of = |i: usize| all[i].0;
        assert_eq!(s.find_log(&a, "needle", 0, true).unwrap(), Some(seq_of(0)));
        assert_eq!(
            s.find_log(&a, "NEEDLE", seq_of(0), true).unwrap(),
            Some(seq_of(1000))
        );
        assert_eq!(
            s.find_log(&a, "needle", seq_of(9_999), false).unwrap(),
            Some(seq_of(9_000))
        );
        assert_eq!(s.find_log(&a, "needle", seq_of(9_000), true).unwrap(), None);
        // A plain line found backwards from past the end, a batched one forwards.
        assert_eq!(
            s.find_log(&a, "line 9999 ", i64::MAX, false).unwrap(),
            Some(seq_of(9_999))
        );
        assert_eq!(
            s.find_log(&a, "line 5 hay", 0, true).unwrap(),
            Some(seq_of(5))
        );
        // Settling folds the rest; every read answers the same.
        s.transition(&a, Status::Provisioning, None, None).unwrap();
        s.transition(&a, Status::Failed, None, Some("boom"))
            .unwrap();
        let plain: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM log_lines WHERE deployment_id = 'aaa111'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(plain, 0);
        assert_eq!(chunk_count(&s, &a), 3);
        assert_eq!(read_all(&s, &a, 5000), all);
        assert_eq!(s.logs_tail(&a, 3).unwrap(), tail);
        // The other log is untouched.
        assert_eq!(read_all(&s, &b, 100).len(), 20 * 3);
    }

    #[test]
    fn another_connection_sees_each_line_when_it_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxdeck.db");
        let mut writer = Store::open(&path).unwrap();
        let reader = Store::open(&path).unwrap();
        let id = deployment(&mut writer, "fol123");
        let mut seen: Vec<(i64, LogLine)> = Vec::new();
        for i in 0..(CHUNK_LINES + 10) {
            writer.append_logs(&id, &[line(i)]).unwrap();
            // Like the TUI's follower: everything after the last line it has.
            let after = seen.last().map_or(0, |(seq, _)| *seq);
            let new = reader.logs(&id, after, 100).unwrap();
            assert_eq!(new.len(), 1, "line {i} right after its commit");
            seen.extend(new);
        }
        assert_eq!(chunk_count(&reader, &id), 1, "a batch was folded meanwhile");
        assert_eq!(read_all(&reader, &id, 1000), seen);
    }

    #[test]
    fn since_keeps_the_lines_at_or_after_a_time() {
        let mut s = Store::open_in_memory().unwrap();
        let id = deployment(&mut s, "snc123");
        let lines: Vec<LogLine> = (0..6000).map(line).collect();
        s.append_logs(&id, &lines).unwrap();
        let since = 1_000_000 + 5_990;
        let recent = s.logs_since(&id, Some(since), 0, 100).unwrap();
        assert_eq!(recent.len(), 10);
        assert_eq!(recent[0].1.text, "line 5990 hay");
        // Inside the batch too.
        let from_batch = s.logs_since(&id, Some(1_000_000 + 4000), 0, 100).unwrap();
        assert_eq!(from_batch[0].1.text, "line 4000 Needle");
        let tail = s.logs_tail_since(&id, Some(since), 3).unwrap();
        assert_eq!(
            tail.iter()
                .map(|(_, l)| l.text.as_str())
                .collect::<Vec<_>>(),
            ["line 5997 hay", "line 5998 hay", "line 5999 hay"]
        );
        assert_eq!(s.logs_tail_since(&id, Some(since), 100).unwrap().len(), 10);
        assert!(s.logs_since(&id, Some(i64::MAX), 0, 10).unwrap().is_empty());
        assert_eq!(s.logs_tail_since(&id, None, 6000).unwrap().len(), 6000);
    }

    #[test]
    fn deleted_logs_expire_and_give_their_space_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxdeck.db");
        let mut s = Store::open(&path).unwrap();
        let auto_vacuum: i64 = s
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto_vacuum, 2, "a new file frees pages incrementally");
        let (old, recent, live) = (
            deployment(&mut s, "old111"),
            deployment(&mut s, "new222"),
            deployment(&mut s, "liv333"),
        );
        // Text that does not compress, so the log takes room.
        let noisy = |i: usize| LogLine {
            text: format!("{:x}", sha2::Sha256::digest(i.to_le_bytes())),
            ..line(i)
        };
        use sha2::Digest;
        let lines: Vec<LogLine> = (0..40_000).map(noisy).collect();
        for id in [&old, &recent, &live] {
            for batch in lines.chunks(1000) {
                s.append_logs(id, batch).unwrap();
            }
        }
        for id in [&old, &recent] {
            s.transition(id, Status::Destroying, None, None).unwrap();
            s.transition(id, Status::Deleted, None, None).unwrap();
        }
        s.conn
            .execute(
                "UPDATE deployments SET updated_at = 1000 WHERE id = 'old111'",
                [],
            )
            .unwrap();
        let (full, _) = s.file_space().unwrap();
        let pruned = s.prune_logs(5_000, true).unwrap();
        assert_eq!((pruned.deployments, pruned.lines), (1, 40_000));
        assert!(s.logs(&old, 0, 10).unwrap().is_empty());
        assert_eq!(read_all(&s, &recent, 5000).len(), 40_000);
        assert_eq!(read_all(&s, &live, 5000).len(), 40_000);
        assert!(
            pruned.bytes_after < full * 3 / 4,
            "{} of {full} bytes left",
            pruned.bytes_after
        );
        let on_disk = std::fs::metadata(&path).unwrap().len();
        assert!(on_disk < full * 3 / 4, "file {on_disk} of {full} bytes");
        // The record and its history stay.
        assert_eq!(s.get(&old).unwrap().status, Status::Deleted);
        // The automatic retention removes what is older than it keeps.
        let none = s
            .expire_deleted_logs(std::time::Duration::from_secs(3600))
            .unwrap();
        assert_eq!(none.deployments, 0);
        let all = s.expire_deleted_logs(std::time::Duration::ZERO).unwrap();
        assert_eq!((all.deployments, all.lines), (1, 40_000));
        assert_eq!(read_all(&s, &live, 5000).len(), 40_000);
    }

    #[test]
    fn an_older_file_is_rebuilt_once_and_its_plain_lines_folded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxdeck.db");
        // A file made before incremental vacuum: a table exists before proxdeck opens it.
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); DROP TABLE t;")
            .unwrap();
        let mut s = Store::open(&path).unwrap();
        let mode = |s: &Store| -> i64 {
            s.conn
                .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(mode(&s), 0);
        let id = deployment(&mut s, "cmp123");
        let lines: Vec<LogLine> = (0..100).map(line).collect();
        s.append_logs(&id, &lines).unwrap();
        let pruned = s.prune_logs(0, true).unwrap();
        assert_eq!(pruned.folded, 100);
        assert_eq!(mode(&s), 2);
        assert_eq!(s.log_space().unwrap().plain_lines, 0);
        assert_eq!(
            read_all(&s, &id, 30)
                .into_iter()
                .map(|(_, l)| l)
                .collect::<Vec<_>>(),
            lines
        );
    }

    #[test]
    fn forget_removes_batches_too() {
        let mut s = Store::open_in_memory().unwrap();
        let id = deployment(&mut s, "fgt123");
        let lines: Vec<LogLine> = (0..(CHUNK_LINES + 5)).map(line).collect();
        s.append_logs(&id, &lines).unwrap();
        assert_eq!(chunk_count(&s, &id), 1);
        s.forget(&id).unwrap();
        assert_eq!(chunk_count(&s, &id), 0);
        assert_eq!(s.log_space().unwrap().lines, 0);
    }
}
