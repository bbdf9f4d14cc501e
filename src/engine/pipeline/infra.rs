//! Stages `terraform-init` and `terraform-apply`: create (or converge) the guest, then read
//! its outputs.

use super::{Ctx, StageResult, fail};
use crate::domain::Stage;
use crate::engine::terraform::Terraform;

pub(super) async fn run(cx: &mut Ctx<'_>) -> StageResult<()> {
    let ws = cx.engine.paths.workspace(&cx.d.id);
    let tf = Terraform::new(
        &cx.engine.config,
        &cx.proxmox,
        &ws,
        &cx.engine.paths.plugin_cache(),
    )
    .map_err(|e| fail(Stage::Render)(&e))?;

    cx.stage(Stage::TerraformInit).await?;
    let (tx, forward) = cx.reporter.pipe();
    let result = tf.init(tx, cx.cancel.clone()).await;
    cx.finish_forward(forward).await?;
    result.map_err(|e| fail(Stage::TerraformInit)(&e))?;

    cx.stage(Stage::TerraformApply).await?;
    let (tx, forward) = cx.reporter.pipe();
    let result = tf.apply(tx, cx.cancel.clone()).await;
    cx.finish_forward(forward).await?;
    result.map_err(|e| fail(Stage::TerraformApply)(&e))?;
    cx.outputs = tf
        .outputs()
        .await
        .map_err(|e| fail(Stage::TerraformApply)(&e))?;
    Ok(())
}
