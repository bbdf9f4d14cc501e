//! `deploy --plan` (what would be created, then stop) and `render --out` (the workspace a
//! deploy with the same flags would use, written where the user wants it).
//!
//! `--plan` is a dry run and leaves no deployment behind: a user who plans `--name shop`
//! expects `deploy --name shop` to work next, and a list free of half-made entries. So the
//! record exists only while the plan runs (preflight, vmid and address reservations and the
//! log need it) and is removed with everything recorded about it when the plan is done, failed
//! or not; the log is what was printed. (If the process is killed mid-plan, the record stays
//! PENDING; `proxdeck destroy` removes it like any other.)
//!
//! Owns these two entry points; the stages themselves live in their own modules.

use super::{
    Ctx, DeployError, DeployOptions, Failure, infra, preflight, prepare, redactor, render,
};
use crate::config::AUTO_NODE;
use crate::domain::spec::DeployInput;
use crate::domain::{Catalog, Deployment, GuestType, Origin, Stage};
use crate::engine::Engine;
use crate::engine::proxmox::{Client, placement};
use crate::engine::report::Reporter;
use crate::engine::ssh;
use crate::engine::terraform::PlanSummary;
use crate::engine::workspace::{self, Choices, GuestInput};
use crate::protocol::EngineEvent;
use crate::store::StoreError;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, watch};

/// What `deploy --plan` found.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub name: String,
    pub guest_type: GuestType,
    pub node: Option<String>,
    pub vmid: Option<u32>,
    pub plan: PlanSummary,
}

/// What `render --out` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct RenderReport {
    pub dir: PathBuf,
    pub files: Vec<String>,
    pub name: String,
    pub guest_type: GuestType,
    pub node: String,
    pub vmid: u32,
}

/// Runs validation, preflight, render, `terraform init` and `plan` for a deployment that is
/// not created; returns the plan's summary. Nothing stays recorded.
pub async fn plan(
    engine: &Engine,
    input: DeployInput,
    options: DeployOptions,
    events: mpsc::UnboundedSender<EngineEvent>,
    cancel: watch::Receiver<bool>,
) -> Result<PlanReport, DeployError> {
    let (spec, mut d, detected, access) = prepare(engine, input, &options).await?;
    if d.origin == Origin::Host {
        return Err(DeployError::Refused(
            "--plan shows what Terraform would create; a deployment onto an existing host (--host) creates nothing".into(),
        ));
    }
    for _ in 0..5 {
        let record = d.clone();
        match engine.db.call(move |s| s.insert_deployment(&record)).await {
            Ok(()) => break,
            Err(StoreError::Sql(_)) => d.id = super::new_id(),
            Err(e) => return Err(e.into()),
        }
    }
    let ws = engine.paths.workspace(&d.id);
    let result = async {
        let _job = crate::engine::jobs::JobLock::acquire(&engine.paths, &d.id)?;
        Choices {
            os_template: options.os_template.clone(),
        }
        .save(&ws)
        .map_err(|e| DeployError::Refused(format!("cannot store the deployment's choices: {e}")))?;
        let reporter = Reporter::new(
            d.id.clone(),
            engine.db.clone(),
            events,
            redactor(engine, &spec.env),
        );
        reporter
            .info(format!(
                "plan for {} ({}): nothing will be created, and this record is removed afterwards",
                d.name, d.guest_type
            ))
            .await?;
        if let Some(found) = &detected {
            reporter
                .info(format!(
                    "framework {} detected: {}",
                    d.framework, found.reason
                ))
                .await?;
        }
        let mut cx = context(engine, &reporter, &d, cancel).map_err(|f| stage_error(&d, f))?;
        // The credentials prepare checked (a new deploy key waits under the repository).
        cx.access = Some(access);
        let summary = plan_stages(&mut cx).await.map_err(|f| stage_error(&d, f))?;
        Ok(PlanReport {
            name: d.name.clone(),
            guest_type: d.guest_type,
            node: Some(cx.node.clone()),
            vmid: cx.d.vmid,
            plan: summary,
        })
    }
    .await;
    // Whatever happened: the dry run leaves neither a record nor reservations nor files.
    let id = d.id.clone();
    let forgotten = engine.db.call(move |s| s.forget(&id)).await;
    let _ = std::fs::remove_dir_all(&ws);
    match (result, forgotten) {
        (Ok(report), Ok(())) => Ok(report),
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), _) => Err(e),
    }
}

fn context<'a>(
    engine: &'a Engine,
    reporter: &'a Reporter,
    d: &Deployment,
    cancel: watch::Receiver<bool>,
) -> Result<Ctx<'a>, Failure> {
    let framework = Catalog::builtin()
        .get(&d.framework)
        .cloned()
        .ok_or_else(|| Failure {
            stage: Stage::Validate,
            cause: format!("framework {:?} is not in the catalog", d.framework),
        })?;
    let proxmox = engine.config.proxmox().cloned().map_err(|e| Failure {
        stage: Stage::Preflight,
        cause: e.to_string(),
    })?;
    let node = d.node.clone().unwrap_or_else(|| proxmox.node.clone());
    Ok(Ctx::new(
        engine,
        reporter,
        d.clone(),
        framework,
        proxmox,
        Vec::new(),
        node,
        cancel,
    ))
}

async fn plan_stages(cx: &mut Ctx<'_>) -> Result<PlanSummary, Failure> {
    cx.stage(Stage::Preflight).await?;
    infra::reserve_vmid(cx).await?;
    preflight::run(cx).await?;
    cx.stage(Stage::Render).await?;
    render::run(cx).await?;
    infra::plan_only(cx).await
}

fn stage_error(d: &Deployment, Failure { stage, cause }: Failure) -> DeployError {
    DeployError::Stage {
        id: d.id.clone(),
        stage,
        cause,
        next: "fix the cause named above, then run the same `proxdeck deploy --plan` again".into(),
    }
}

/// Writes `main.tf` and `terraform.tfvars.json` (and `backend.tf` with a remote backend) into
/// `out`: the workspace a deploy with the same request would run terraform on, minus
/// credentials (they are only ever in terraform's environment). Nothing is recorded; the vmid
/// and static address are the ones a deploy would get now.
pub async fn render_workspace(
    engine: &Engine,
    input: DeployInput,
    options: DeployOptions,
    out: &Path,
) -> Result<RenderReport, DeployError> {
    let (_spec, mut d, _detected, _access) = prepare(engine, input, &options).await?;
    if d.origin == Origin::Host {
        return Err(DeployError::Refused(
            "a deployment onto an existing host (--host) has no Terraform workspace".into(),
        ));
    }
    let config = engine.config.clone();
    let proxmox = config.proxmox()?.clone();
    let mut node = d.node.clone().unwrap_or_else(|| proxmox.node.clone());
    if node == AUTO_NODE {
        // The node a deploy would be placed on now.
        let client = Client::new(&proxmox).map_err(|e| DeployError::Refused(e.to_string()))?;
        let need = placement::Need {
            cores: d.cores,
            memory_mib: d.memory_mib,
            disk_gib: d.disk_gib,
            datastore: config.guest.datastore.clone(),
        };
        node = placement::place(&client, &need)
            .await
            .map_err(|e| DeployError::Refused(format!("node auto: {e}; or name one with --node")))?
            .node;
    }
    // What a deploy would reserve now, without keeping it.
    let id = d.id.clone();
    let range = config.guest.vmid_range.clone();
    let pool = config.network.pool;
    let (vmid, static_ip) = engine
        .db
        .call(move |s| {
            let vmid = s.allocate_vmid(range, &id, &Default::default());
            let ip = pool.map(|p| s.allocate_ip(p, &id)).transpose();
            s.release_vmid(&id)?;
            s.release_ip(&id)?;
            Ok((vmid?, ip?))
        })
        .await?;
    d.vmid = Some(vmid);
    let keys_dir = engine.paths.keys();
    let keys = tokio::task::spawn_blocking(move || ssh::ensure_key(&keys_dir))
        .await
        .map_err(|e| DeployError::Refused(e.to_string()))?
        .map_err(|e| DeployError::Refused(e.to_string()))?;
    let public_key = keys
        .public_openssh()
        .map_err(|e| DeployError::Refused(e.to_string()))?;
    let choices = Choices {
        os_template: options.os_template.clone(),
    };
    let vars = workspace::guest_vars(
        &config,
        &GuestInput {
            deployment: &d,
            node: &node,
            static_ip,
            public_key: &public_key,
            choices: &choices,
            // The user's own workspace: its guest is not proxdeck's to find and adopt.
            identity: None,
        },
    )
    .map_err(|e| DeployError::Refused(e.to_string()))?;
    workspace::write_guest_workspace(&config, out, &vars)
        .map_err(|e| DeployError::Refused(e.to_string()))?;
    let mut files = vec![
        workspace::MAIN_TF.to_string(),
        workspace::TFVARS.to_string(),
    ];
    if config.terraform.backend.is_some() {
        files.push(workspace::BACKEND_TF.to_string());
    }
    Ok(RenderReport {
        dir: out.to_path_buf(),
        files,
        name: d.name,
        guest_type: d.guest_type,
        node,
        vmid,
    })
}
