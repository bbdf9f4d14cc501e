//! Stages `terraform-init` and `terraform-apply`: reserve the guest's vmid (before preflight,
//! so preflight can check it on the cluster), `init`, `plan` (its summary logged before
//! anything changes), then the guests that carry this deployment's mark but that no state
//! holds (a killed run's) adopted (`terraform import`) or removed, `apply` of exactly the plan,
//! then the outputs. Also the plan-only run behind `deploy --plan`, which changes nothing.
//!
//! Owns how the pipeline drives the terraform runner; it must not build the workspace
//! (`render`). Its only Proxmox calls look for this deployment's own guests.

use super::{Ctx, StageResult, fail};
use crate::config::ProxmoxConfig;
use crate::domain::{DeploymentId, Stage};
use crate::engine::Engine;
use crate::engine::identity;
use crate::engine::proxmox::Client;
use crate::engine::proxmox::api::Resource;
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
    let mut summary = plan(cx, &tf).await?;
    if adopt_or_remove(cx, &tf, &summary).await? {
        summary = plan(cx, &tf).await?;
    }
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

/// Before anything is created: the guests on the cluster that carry this deployment's mark
/// but that the terraform state does not hold (a killed `terraform apply` creates the guest,
/// then dies before saving it). The one at the reserved vmid on this node is adopted with
/// `terraform import` of the resource the plan would create; any other is removed through the
/// Proxmox API. Never a second guest. Returns true when the state changed (plan again).
async fn adopt_or_remove(
    cx: &mut Ctx<'_>,
    tf: &Terraform,
    summary: &PlanSummary,
) -> StageResult<bool> {
    let stage = Stage::TerraformApply;
    let client = match &cx.pve {
        Some(c) => c.clone(),
        None => Client::new(&cx.proxmox).map_err(|e| fail(stage)(&e))?,
    };
    let installation = identity::installation(&cx.engine.paths)
        .map_err(|e| fail(stage)(&format!("the installation id: {e}")))?;
    let guests = client.guests().await.map_err(|e| {
        fail(stage)(&format!(
            "cannot list the cluster's guests to look for this deployment's own before creating one: {e}"
        ))
    })?;
    let own: Vec<Resource> = identity::guests_of(&guests, &cx.d.id, &installation)
        .into_iter()
        .cloned()
        .collect();
    if own.is_empty() {
        return Ok(false);
    }
    // The vmid the state holds: its output, else (the state holds resources) the reserved one.
    let in_state = tf.state_list().await.map_err(|e| fail(stage)(&e))?;
    let held = match tf.outputs().await.ok().and_then(|o| o.vmid) {
        Some(v) => Some(v),
        None if !in_state.is_empty() => cx.d.vmid,
        None => None,
    };
    let creates = summary.guest_resource.clone().filter(|address| {
        !in_state.contains(address)
            && summary
                .resources
                .iter()
                .any(|(a, action)| a == address && action == "create")
    });
    let mut imported = false;
    for g in own {
        let (Some(vmid), Some(kind)) = (g.vmid, g.guest_kind()) else {
            continue;
        };
        let node = g.node.clone().unwrap_or_default();
        let label = format!("{} {vmid}", kind.label());
        if Some(vmid) == held {
            continue;
        }
        if let Some(address) = creates.as_deref()
            && !imported
            && held.is_none()
            && Some(vmid) == cx.d.vmid
            && node == cx.node
        {
            let import_id = identity::terraform_import_id(&node, vmid);
            cx.info(format!(
                "{label} on {node} carries this deployment's id, but no terraform state holds it (a run was interrupted after creating it): adopting it with `terraform import {address} {import_id}`"
            ))
            .await?;
            let (tx, forward) = cx.reporter.pipe();
            let result = tf.import(address, &import_id, tx, cx.cancel.clone()).await;
            cx.finish_forward(forward).await?;
            match result {
                Ok(()) => {
                    imported = true;
                    continue;
                }
                // Cancelled, out of time, or the state is locked: stop here; the next run
                // tries again.
                Err(e @ (TerraformError::Cancelled { .. } | TerraformError::TimedOut { .. })) => {
                    return Err(fail(stage)(&e));
                }
                Err(e) if e.to_string().contains("state lock") => return Err(fail(stage)(&e)),
                // The template's resource cannot take it in: a fresh guest replaces it.
                Err(e) => {
                    cx.info(format!(
                        "the import failed ({e}): removing {label} instead; terraform creates the guest again"
                    ))
                    .await?;
                }
            }
        } else {
            cx.info(format!(
                "{label} on {node} carries this deployment's id, but it is not the guest this run keeps (the state holds {}, the reserved vmid is {}): removing it, so the deployment never has two guests",
                held.map(|v| v.to_string()).unwrap_or_else(|| "none".into()),
                cx.d.vmid.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
            ))
            .await?;
        }
        let mut lines = Vec::new();
        let removed =
            identity::remove_guest(&client, &node, kind, vmid, &mut |l| lines.push(l)).await;
        for l in lines {
            cx.info(l).await?;
        }
        removed.map_err(|e| fail(stage)(&format!("cannot remove {label}: {e}")))?;
    }
    Ok(imported)
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
