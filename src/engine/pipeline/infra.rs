//! Stages `terraform-init` and `terraform-apply`: reserve the guest's vmid (before preflight,
//! so preflight can check it on the cluster), `init`, `plan` (its summary logged before
//! anything changes), `apply` of exactly that plan, then the outputs. Also the plan-only run
//! behind `deploy --plan`.
//!
//! Owns how the pipeline drives the terraform runner; it must not build the workspace
//! (`render`) nor talk to Proxmox.

use super::{Ctx, StageResult, fail};
use crate::config::ProxmoxConfig;
use crate::domain::{DeploymentId, Stage};
use crate::engine::Engine;
use crate::engine::terraform::{self, PlanSummary, Terraform, TerraformError};
use crate::store::{Facts, StoreError};
use std::collections::HashSet;

/// The runner for a deployment's workspace: credentials, plugin cache, mirror, limits, and
/// the remote backend's settings for this deployment.
pub(super) fn terraform_for(
    engine: &Engine,
    proxmox: &ProxmoxConfig,
    id: &DeploymentId,
) -> Result<Terraform, TerraformError> {
    let ws = engine.paths.workspace(id);
    let environment: std::collections::HashMap<String, String> = std::env::vars().collect();
    Terraform::new(&engine.config, proxmox, &ws, &engine.paths.plugin_cache())?.with_backend(
        engine.config.terraform.backend.as_ref(),
        &id.0,
        &environment,
    )
}

/// Reserves the deployment's vmid in the store (one immediate transaction, so parallel
/// deployments never share one) and records it. A retry keeps the vmid it already has.
pub(super) async fn reserve_vmid(cx: &mut Ctx<'_>) -> StageResult<()> {
    let range = cx.engine.config.guest.vmid_range.clone();
    let id = cx.d.id.clone();
    let current = cx.d.vmid;
    let guest_exists = terraform::has_state(&cx.engine.paths.workspace(&id));
    let vmid = cx
        .engine
        .db
        .call(move |s| {
            let none = HashSet::new();
            let v = match current {
                Some(v) => match s.allocate_vmid(v..=v, &id, &none) {
                    Ok(v) => v,
                    // Held by another deployment: move on, unless this guest already exists.
                    Err(StoreError::VmidsExhausted { .. }) if !guest_exists => {
                        s.allocate_vmid(range, &id, &none)?
                    }
                    Err(StoreError::VmidsExhausted { .. }) => {
                        return Err(StoreError::Corrupt(format!(
                            "vmid {v} of this deployment's guest is reserved by another deployment; check `proxdeck list`"
                        )));
                    }
                    Err(e) => return Err(e),
                },
                None => s.allocate_vmid(range, &id, &none)?,
            };
            s.record_facts(
                &id,
                &Facts {
                    vmid: Some(v),
                    ..Facts::default()
                },
            )?;
            Ok(v)
        })
        .await
        .map_err(|e| fail(Stage::Preflight)(&e))?;
    if current != Some(vmid) {
        cx.info(format!("vmid {vmid} reserved for this deployment"))
            .await?;
    }
    cx.d.vmid = Some(vmid);
    Ok(())
}

/// `terraform init`, in its own stage.
async fn init(cx: &mut Ctx<'_>, tf: &Terraform) -> StageResult<()> {
    cx.stage(Stage::TerraformInit).await?;
    let (tx, forward) = cx.reporter.pipe();
    let result = tf.init(tx, cx.cancel.clone()).await;
    cx.finish_forward(forward).await?;
    result.map_err(|e| fail(Stage::TerraformInit)(&e))
}

/// `terraform plan`, then its summary in the log.
async fn plan(cx: &mut Ctx<'_>, tf: &Terraform) -> StageResult<PlanSummary> {
    let (tx, forward) = cx.reporter.pipe();
    let result = tf.plan(tx, cx.cancel.clone()).await;
    cx.finish_forward(forward).await?;
    result.map_err(|e| fail(cx.current)(&e))?;
    let summary = tf.show_plan().await.map_err(|e| fail(cx.current)(&e))?;
    cx.reporter
        .lines(crate::protocol::LogStream::Info, summary.lines())
        .await
        .map_err(|e| fail(cx.current)(&e))?;
    Ok(summary)
}

pub(super) async fn run(cx: &mut Ctx<'_>) -> StageResult<()> {
    let tf = terraform_for(cx.engine, &cx.proxmox, &cx.d.id)
        .map_err(|e| fail(Stage::TerraformInit)(&e))?;
    init(cx, &tf).await?;

    cx.stage(Stage::TerraformApply).await?;
    let summary = plan(cx, &tf).await?;
    if summary.is_empty() {
        let _ = std::fs::remove_file(tf.workspace().join(terraform::PLAN_FILE));
        cx.info("nothing to change: the guest is as planned")
            .await?;
    } else {
        let (tx, forward) = cx.reporter.pipe();
        let result = tf.apply(tx, cx.cancel.clone()).await;
        cx.finish_forward(forward).await?;
        result.map_err(|e| fail(Stage::TerraformApply)(&e))?;
    }
    cx.outputs = tf
        .outputs()
        .await
        .map_err(|e| fail(Stage::TerraformApply)(&e))?;
    Ok(())
}

/// `deploy --plan`: init and plan only; the summary is returned and nothing is applied.
pub(super) async fn plan_only(cx: &mut Ctx<'_>) -> StageResult<PlanSummary> {
    let tf = terraform_for(cx.engine, &cx.proxmox, &cx.d.id)
        .map_err(|e| fail(Stage::TerraformInit)(&e))?;
    init(cx, &tf).await?;
    cx.stage(Stage::TerraformApply).await?;
    let summary = plan(cx, &tf).await?;
    let _ = std::fs::remove_file(tf.workspace().join(terraform::PLAN_FILE));
    Ok(summary)
}
