//! Stage `render`: the guest's static address (from the pool), proxdeck's SSH key, and the
//! Terraform workspace (`main.tf` + `terraform.tfvars.json`, `backend.tf` with a remote
//! backend), LXC or VM by the deployment's type; the guest carries the deployment's identity
//! (tags and description, see `identity`).
//!
//! Owns turning the record into the workspace; it must not run terraform (see `infra`).

use super::{Ctx, StageResult, fail};
use crate::domain::Stage;
use crate::engine::identity;
use crate::engine::ssh;
use crate::engine::workspace::{self, Choices, GuestInput, GuestVars};

pub(super) async fn run(cx: &mut Ctx<'_>) -> StageResult<()> {
    let config = cx.engine.config.clone();
    if let Some(pool) = config.network.pool {
        let id = cx.d.id.clone();
        let ip = cx
            .engine
            .db
            .call(move |s| s.allocate_ip(pool, &id))
            .await
            .map_err(|e| fail(Stage::Render)(&e))?;
        cx.info(format!("static address {ip} from pool {pool}"))
            .await?;
        cx.static_ip = Some(ip);
    }
    let keys_dir = cx.engine.paths.keys();
    let keys = tokio::task::spawn_blocking(move || ssh::ensure_key(&keys_dir))
        .await
        .map_err(|e| fail(Stage::Render)(&e))?
        .map_err(|e| fail(Stage::Render)(&e))?;
    let public_key = keys.public_openssh().map_err(|e| fail(Stage::Render)(&e))?;
    cx.keys = Some(keys);

    let ws = cx.engine.paths.workspace(&cx.d.id);
    let choices = Choices::load(&ws).map_err(|e| fail(Stage::Render)(&e))?;
    let identity = identity::identity_for(&cx.engine.paths, &cx.d.id)
        .map_err(|e| fail(Stage::Render)(&format!("the installation id: {e}")))?;
    let vars = workspace::guest_vars(
        &config,
        &GuestInput {
            deployment: &cx.d,
            node: &cx.node,
            static_ip: cx.static_ip,
            public_key: &public_key,
            choices: &choices,
            identity: Some(&identity),
        },
    )
    .map_err(|e| fail(Stage::Render)(&e))?;
    workspace::write_guest_workspace(&config, &ws, &vars).map_err(|e| fail(Stage::Render)(&e))?;
    let what = match &vars {
        GuestVars::Lxc(v) => format!("container from {}", v.os_template),
        GuestVars::Vm(v) => format!(
            "VM, {} clone of template {} on {}, cloud-init user {}",
            if v.full_clone { "full" } else { "linked" },
            v.template_vmid,
            v.template_node,
            v.ci_user
        ),
    };
    let state = match &config.terraform.backend {
        Some(b) => format!("; state in the {} backend", b.kind),
        None => String::new(),
    };
    cx.info(format!("workspace {} ({what}{state})", ws.display()))
        .await
}
