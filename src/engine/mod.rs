//! The engine: everything that does I/O (terraform, SSH, HTTP, the store) and the deployment
//! pipeline. It never imports ratatui. Clients (the CLI, the TUI through `serve`) have work
//! done through `ops` (operations become jobs in the store, run by the `worker` process) and
//! read through `reads`; the TUI talks to `serve` with `protocol`'s `Request`s and
//! `EngineEvent`s.

pub mod applogs;
pub mod autodeploy;
pub mod caddy;
pub mod detect;
pub mod gitauth;
pub mod guest;
pub mod guest_state;
pub mod health;
pub mod identity;
pub mod jobs;
pub mod logfile;
pub mod ops;
pub mod pipeline;
pub mod power;
pub mod process;
pub mod provision;
pub mod proxmox;
pub mod reads;
pub mod report;
pub mod serve;
pub mod shell;
pub mod snapshots;
pub mod ssh;
pub mod sync;
pub mod terraform;
pub mod worker;
pub mod workspace;

use crate::config::Config;
use crate::domain::DeploymentId;
use crate::store::{Db, Store, StoreError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The layout of the data dir.
#[derive(Debug, Clone)]
pub struct DataPaths {
    pub root: PathBuf,
}

impl DataPaths {
    pub fn new(root: impl Into<PathBuf>) -> DataPaths {
        DataPaths { root: root.into() }
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("proxdeck.db")
    }
    pub fn workspaces(&self) -> PathBuf {
        self.root.join("workspaces")
    }
    pub fn workspace(&self, id: &DeploymentId) -> PathBuf {
        self.workspaces().join(&id.0)
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn plugin_cache(&self) -> PathBuf {
        self.root.join("plugin-cache")
    }
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit.log")
    }
}

/// The engine's shared state: configuration, data dir and store.
#[derive(Clone)]
pub struct Engine {
    pub config: Arc<Config>,
    pub paths: DataPaths,
    pub db: Db,
    /// Deployments found interrupted (in flight, nobody working on them) when the data dir was
    /// opened; they are now FAILED. Clients tell the user.
    pub recovered: Vec<crate::domain::Deployment>,
    /// Jobs whose worker died while they ran, found when the data dir was opened; they are now
    /// failed as interrupted, and what they had started was stopped.
    pub interrupted: Vec<crate::domain::Job>,
    /// How `ops` starts the worker when it queues a job.
    pub launch: worker::Launch,
    /// The logs of deployments deleted longer ago than `[logs] keep_deleted_days`, removed
    /// when the data dir was opened.
    pub expired: crate::store::Pruned,
}

impl Engine {
    pub fn open(config: Config, data_dir: &Path) -> Result<Engine, StoreError> {
        let paths = DataPaths::new(data_dir);
        std::fs::create_dir_all(&paths.root).map_err(|source| StoreError::Dir {
            path: paths.root.display().to_string(),
            source,
        })?;
        restrict_dir(&paths.root);
        let mut store = Store::open(&paths.database())?;
        let interrupted = worker::recover(&paths, &mut store)?;
        let recovered = jobs::recover_interrupted(&paths, &mut store)?;
        // Retention runs at every start: one indexed query when there is nothing to remove.
        let expired = store
            .expire_deleted_logs(config.logs.keep_deleted)
            .unwrap_or_else(|e| {
                tracing::warn!("removing the logs of deleted deployments: {e}");
                crate::store::Pruned::default()
            });
        Ok(Engine {
            config: Arc::new(config),
            paths,
            db: Db::new(store),
            recovered,
            interrupted,
            launch: worker::Launch::InProcess,
            expired,
        })
    }

    /// The same engine, starting its worker as a detached `exe worker` process.
    pub fn with_worker_process(mut self, exe: PathBuf, config: Option<PathBuf>) -> Engine {
        self.launch = worker::Launch::Process { exe, config };
        self
    }

    /// Appends one line to the audit log (append-only JSON lines: who did what, when).
    pub fn audit(&self, action: &str, id: &DeploymentId, detail: serde_json::Value) {
        let entry = serde_json::json!({
            "at": chrono::Utc::now().to_rfc3339(),
            "user": std::env::var("USER").unwrap_or_default(),
            "action": action,
            "deployment": id.0,
            "detail": detail,
        });
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.paths.audit_log())
            .and_then(|mut f| writeln!(f, "{entry}"));
        if let Err(e) = written {
            tracing::warn!("cannot write the audit log: {e}");
        }
    }
}

/// The data dir holds keys and state: owner only.
fn restrict_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
}
