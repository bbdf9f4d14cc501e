//! Schema migrations, applied in order by `PRAGMA user_version`. Append new steps; never edit
//! a step that has shipped.

use super::{Result, StoreError};
use rusqlite::Connection;

const STEPS: &[&str] = &[
    // 1: the walking skeleton's schema.
    r#"
    CREATE TABLE deployments (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        repo        TEXT NOT NULL,
        git_ref     TEXT NOT NULL,
        framework   TEXT NOT NULL,
        guest_type  TEXT NOT NULL,
        cores       INTEGER NOT NULL,
        memory_mib  INTEGER NOT NULL,
        disk_gib    INTEGER NOT NULL,
        port        INTEGER NOT NULL,
        env_names   TEXT NOT NULL DEFAULT '[]',
        node        TEXT,
        vmid        INTEGER,
        ip          TEXT,
        url         TEXT,
        commit_sha  TEXT,
        status      TEXT NOT NULL,
        stage       TEXT,
        error       TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX deployments_name ON deployments(name);
    CREATE TABLE status_history (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment_id TEXT NOT NULL REFERENCES deployments(id),
        status        TEXT NOT NULL,
        stage         TEXT,
        at            INTEGER NOT NULL,
        message       TEXT
    );
    CREATE INDEX status_history_deployment ON status_history(deployment_id, seq);
    CREATE TABLE stage_history (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment_id TEXT NOT NULL REFERENCES deployments(id),
        stage         TEXT NOT NULL,
        at            INTEGER NOT NULL
    );
    CREATE INDEX stage_history_deployment ON stage_history(deployment_id, seq);
    CREATE TABLE log_lines (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment_id TEXT NOT NULL REFERENCES deployments(id),
        at            INTEGER NOT NULL,
        stream        TEXT NOT NULL,
        stage         TEXT,
        line          TEXT NOT NULL
    );
    CREATE INDEX log_lines_deployment ON log_lines(deployment_id, seq);
    CREATE TABLE host_keys (
        host        TEXT PRIMARY KEY,
        key_type    TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        pinned_at   INTEGER NOT NULL
    );
    CREATE TABLE ip_allocations (
        ip            TEXT PRIMARY KEY,
        deployment_id TEXT NOT NULL UNIQUE,
        allocated_at  INTEGER NOT NULL
    );
    "#,
    // 2: origins (imported guests, existing hosts), per-deployment SSH and command overrides,
    // rollback, sync's missing marker, and vmids reserved per deployment.
    r#"
    ALTER TABLE deployments ADD COLUMN origin TEXT NOT NULL DEFAULT 'terraform';
    ALTER TABLE deployments ADD COLUMN ssh_user TEXT;
    ALTER TABLE deployments ADD COLUMN ssh_port INTEGER;
    ALTER TABLE deployments ADD COLUMN previous_commit TEXT;
    ALTER TABLE deployments ADD COLUMN missing_since INTEGER;
    ALTER TABLE deployments ADD COLUMN overrides TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE vmid_allocations (
        vmid          INTEGER PRIMARY KEY,
        deployment_id TEXT NOT NULL UNIQUE,
        allocated_at  INTEGER NOT NULL
    );
    "#,
    // 3: jobs: every operation a user asks for, run by proxdeck's worker process.
    r#"
    CREATE TABLE jobs (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        kind             TEXT NOT NULL,
        op               TEXT NOT NULL,
        deployment_id    TEXT,
        state            TEXT NOT NULL,
        requested_by     TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        started_at       INTEGER,
        finished_at      INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        log_from         INTEGER NOT NULL DEFAULT 0,
        outcome          TEXT
    );
    CREATE INDEX jobs_state ON jobs(state, id);
    CREATE INDEX jobs_deployment ON jobs(deployment_id, id);
    "#,
    // 4: compact logs and lookups that stay fast with many entries. Lines are appended to
    // log_lines as before and folded into compressed batches (log_chunks) when a batch is full
    // or the deployment settles; a batch keeps every line's sequence number. An index for the
    // retention of deleted deployments' logs. (Sync reads the vmids it matches in one pass, so
    // no index on vmid: it would only cost every insert.)
    r#"
    CREATE TABLE log_chunks (
        id            INTEGER PRIMARY KEY,
        deployment_id TEXT NOT NULL REFERENCES deployments(id),
        first_seq     INTEGER NOT NULL,
        last_seq      INTEGER NOT NULL,
        lines         INTEGER NOT NULL,
        min_at        INTEGER NOT NULL,
        max_at        INTEGER NOT NULL,
        raw_bytes     INTEGER NOT NULL,
        data          BLOB NOT NULL
    );
    CREATE INDEX log_chunks_first ON log_chunks(deployment_id, first_seq);
    CREATE INDEX log_chunks_last ON log_chunks(deployment_id, last_seq);
    CREATE INDEX deployments_deleted ON deployments(updated_at) WHERE status = 'DELETED';
    "#,
    // 5: snapshots (why a guest's storage cannot snapshot, said once) and auto-deploy (the
    // worker polls a deployment's ref and queues a redeploy when its commit changes).
    r#"
    CREATE TABLE snapshot_notes (
        deployment_id TEXT PRIMARY KEY,
        unavailable   TEXT NOT NULL,
        noted_at      INTEGER NOT NULL
    );
    CREATE TABLE auto_deploy (
        deployment_id   TEXT PRIMARY KEY,
        enabled         INTEGER NOT NULL,
        next_check_at   INTEGER NOT NULL DEFAULT 0,
        last_checked_at INTEGER,
        last_seen       TEXT,
        failures        INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        last_error_at   INTEGER,
        job_id          INTEGER,
        updated_at      INTEGER NOT NULL
    );
    "#,
    // 6: releases: every release folder a deploy built on the app's guest (its commit, its
    // sequence number in the folder's name), its state (building, current, good, failed,
    // built: on the guest but never health-checked, removed: gone from the guest), when it
    // was made and when it last became current.
    r#"
    CREATE TABLE releases (
        deployment_id TEXT NOT NULL REFERENCES deployments(id),
        seq           INTEGER NOT NULL,
        commit_sha    TEXT NOT NULL,
        folder        TEXT NOT NULL,
        state         TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        activated_at  INTEGER,
        PRIMARY KEY (deployment_id, folder)
    );
    CREATE INDEX releases_deployment ON releases(deployment_id, seq);
    "#,
];

pub const LATEST: i64 = STEPS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::TooNew {
            found: current,
            known: LATEST,
        });
    }
    for (i, step) in STEPS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}
