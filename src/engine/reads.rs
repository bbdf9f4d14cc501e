//! The reads both front ends need, in one place: a deployment's details (with its job and the
//! next step after a failure), a window of its log by sequence number, a free name for a new
//! deployment, and the review of what a deploy would create. The CLI and the TUI's `serve`
//! call these; neither reads the store its own way for the same thing.

use super::{Engine, pipeline};
use crate::domain::spec::{DeployInput, suggest_name};
use crate::domain::{Catalog, DeploymentId, GuestType, Status};
use crate::protocol::{DetailsSnapshot, HistoryEntry, LogLine, LogWindow};
use crate::store::{Db, StoreError};
use tokio::sync::mpsc;

/// Lines of a log window (`LogWindow`), at most.
pub const LOG_PAGE: usize = 1_000;

/// Everything the details screen (and `show`) shows about one deployment.
pub async fn details(db: &Db, id: DeploymentId) -> Result<DetailsSnapshot, StoreError> {
    let (d, history, stages, job) = db
        .call(move |s| {
            let d = s.get(&id)?;
            let history = s.history(&id)?;
            let stages = s.stage_history(&id)?;
            let job = s.active_job_for(&id)?;
            Ok((d, history, stages, job))
        })
        .await?;
    let next_step = (d.status == Status::Failed)
        .then(|| d.stage.map(|stage| pipeline::next_step(stage, &d.id)))
        .flatten();
    Ok(DetailsSnapshot {
        deployment: d,
        history: history
            .into_iter()
            .map(|h| HistoryEntry {
                status: h.status,
                stage: h.stage,
                at: h.at,
                message: h.message,
            })
            .collect(),
        stages,
        next_step,
        job,
    })
}

/// A part of a log, and whether nothing comes before / after it.
pub struct Window {
    pub lines: Vec<(i64, LogLine)>,
    pub at_start: bool,
    pub at_end: bool,
}

/// The lines of a log around a sequence number, as the log pane scrolls.
pub async fn log_window(
    db: &Db,
    id: DeploymentId,
    window: LogWindow,
) -> Result<Window, StoreError> {
    let half = LOG_PAGE / 2;
    db.call(move |s| {
        Ok(match window {
            LogWindow::Before(seq) => {
                let lines = s.logs_before(&id, seq, LOG_PAGE)?;
                let at_start = lines.len() < LOG_PAGE;
                Window {
                    lines,
                    at_start,
                    at_end: false,
                }
            }
            LogWindow::After(seq) => {
                let lines = s.logs(&id, seq, LOG_PAGE)?;
                let at_end = lines.len() < LOG_PAGE;
                Window {
                    lines,
                    at_start: false,
                    at_end,
                }
            }
            LogWindow::Around(seq) => {
                let mut lines = s.logs_before(&id, seq, half)?;
                let at_start = lines.len() < half;
                let after = s.logs(&id, seq - 1, half)?;
                let at_end = after.len() < half;
                lines.extend(after);
                Window {
                    lines,
                    at_start,
                    at_end,
                }
            }
        })
    })
    .await
}

/// The first free name from `base`: `base`, then `base-2` ... `base-99`.
pub async fn free_name(db: &Db, base: &str) -> Result<String, StoreError> {
    let base = base.to_string();
    db.call(move |s| {
        for i in 1..100 {
            let c = if i == 1 {
                base.clone()
            } else {
                format!("{}-{i}", base.chars().take(58).collect::<String>())
            };
            if !s.name_taken(&c)? {
                return Ok(c);
            }
        }
        Err(StoreError::NameTaken(base))
    })
    .await
}

/// What a deploy of `input` would create, as (label, value) rows: the request validated,
/// the name resolved as the pipeline would, and for a new guest the plan's summary
/// (`pipeline::plan`: preflight, render, `terraform plan`; nothing stays recorded). A
/// failure is the reason the deploy would fail.
pub async fn review(engine: &Engine, input: &DeployInput) -> Result<Vec<(String, String)>, String> {
    let catalog = Catalog::builtin();
    let spec = input.validate(catalog).map_err(|e| e.to_string())?;
    if spec.host.is_none() {
        engine.config.proxmox().map_err(|e| e.to_string())?;
    }
    let name = match &spec.name {
        Some(n) => {
            let key = n.clone();
            let taken = engine
                .db
                .call(move |s| s.name_taken(&key))
                .await
                .map_err(|e| e.to_string())?;
            if taken {
                return Err(format!(
                    "name: a deployment named {n:?} already exists; pick another name"
                ));
            }
            n.clone()
        }
        None => free_name(&engine.db, &suggest_name(&spec.repo))
            .await
            .map_err(|e| e.to_string())?,
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |label: &str, value: String| rows.push((label.to_string(), value));
    row("name", name.clone());
    row(
        "repository",
        format!(
            "{} @ {}",
            spec.repo,
            spec.git_ref.as_deref().unwrap_or("the default branch")
        ),
    );
    let fw = spec.framework.as_deref().and_then(|f| catalog.get(f));
    row(
        "framework",
        match fw {
            Some(f) => format!("{} ({}, {})", f.name, f.language, f.runtime),
            None => "detected from the repository's files when the deploy starts".into(),
        },
    );
    let port = spec.port.or(fw.map(|f| f.default_port));
    row(
        "app",
        format!(
            "port {}, health check GET {}",
            port.map_or_else(|| "(the framework's)".to_string(), |p| p.to_string()),
            spec.overrides
                .health_path
                .clone()
                .or(fw.map(|f| f.health_path.clone()))
                .unwrap_or_else(|| "/".into())
        ),
    );
    let guest = &engine.config.guest;
    match &spec.host {
        Some(h) => row(
            "host",
            format!(
                "existing host {}:{} (no Terraform, no Proxmox)",
                h.host,
                h.ssh_port.unwrap_or(guest.ssh_port)
            ),
        ),
        None => {
            row(
                "guest",
                match spec.guest_type {
                    GuestType::Lxc => "LXC container".to_string(),
                    GuestType::Vm => "VM cloned from the cloud-init template".to_string(),
                },
            );
            let vlan = guest
                .vlan
                .map(|v| format!(", VLAN {v}"))
                .unwrap_or_default();
            row(
                "network",
                match (&engine.config.network.pool, &engine.config.network.gateway) {
                    (Some(pool), gw) => format!(
                        "{}{vlan}: a static address from {pool}{}",
                        guest.bridge,
                        gw.map(|g| format!(", gateway {g}")).unwrap_or_default()
                    ),
                    (None, _) => format!("{}{vlan}: DHCP", guest.bridge),
                },
            );
        }
    }
    row(
        "ssh",
        format!(
            "as {}, port {}, {}",
            spec.ssh_user
                .clone()
                .unwrap_or_else(|| guest.ssh_user.clone()),
            spec.host
                .as_ref()
                .and_then(|h| h.ssh_port)
                .unwrap_or(guest.ssh_port),
            spec.ssh_key
                .as_deref()
                .map_or_else(|| "proxdeck's key".to_string(), |k| format!("key {k}"))
        ),
    );
    row(
        "env",
        if spec.env.is_empty() {
            "none".to_string()
        } else {
            let names: Vec<&str> = spec.env.iter().map(|(k, _)| k.as_str()).collect();
            format!("{} (values kept secret)", names.join(", "))
        },
    );
    if spec.host.is_none() {
        let mut planned = input.clone();
        planned.name = Some(name);
        // The plan's own log lines are not the review's: they go nowhere.
        let (sink, _dropped) = mpsc::unbounded_channel();
        // A review is never cut short (it would leave its temporary record behind).
        let (_keep, never) = tokio::sync::watch::channel(false);
        let report = pipeline::plan(
            engine,
            planned,
            pipeline::DeployOptions::default(),
            sink,
            never,
        )
        .await
        .map_err(|e| e.to_string())?;
        rows.push((
            "node".into(),
            format!(
                "{}{}",
                report.node.as_deref().unwrap_or("-"),
                report
                    .vmid
                    .map(|v| format!(", vmid {v}"))
                    .unwrap_or_default()
            ),
        ));
        for (i, line) in report.plan.lines().into_iter().enumerate() {
            let label = if i == 0 { "terraform" } else { "" };
            rows.push((label.to_string(), line.trim().to_string()));
        }
    }
    Ok(rows)
}
