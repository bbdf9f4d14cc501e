//! Stage `render`: the guest's static address (from the pool), proxdeck's SSH key, and the
//! Terraform workspace (`main.tf` + `terraform.tfvars.json`).

use super::{Ctx, StageResult, fail};
use crate::domain::Stage;
use crate::engine::ssh;
use crate::engine::workspace::{self, LxcVars};

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

    let d = &cx.d;
    let vars = LxcVars {
        node_name: cx.node.clone(),
        vm_id: d.vmid,
        hostname: d.name.clone(),
        description: format!("proxdeck deployment {} ({}) of {}", d.name, d.id, d.repo),
        tags: vec!["proxdeck".to_string(), d.framework.clone()],
        cores: d.cores,
        memory_mib: d.memory_mib,
        swap_mib: config.guest.swap_mib,
        disk_gib: d.disk_gib,
        datastore_id: config.guest.datastore.clone(),
        os_template: config.guest.os_template.clone(),
        os_type: config.guest.os_type.clone(),
        bridge: config.guest.bridge.clone(),
        vlan_id: config.guest.vlan,
        ipv4_address: match cx.static_ip {
            Some(ip) => format!("{ip}/{}", config.network.prefix),
            None => "dhcp".to_string(),
        },
        ipv4_gateway: cx
            .static_ip
            .and(config.network.gateway.map(|g| g.to_string())),
        ssh_public_key: public_key,
    };
    let ws = cx.engine.paths.workspace(&d.id);
    let template =
        workspace::load_template(d.guest_type, config.terraform.templates_dir.as_deref())
            .map_err(|e| fail(Stage::Render)(&e))?;
    let main_tf =
        workspace::render_main_tf(&template, &vars.flags()).map_err(|e| fail(Stage::Render)(&e))?;
    workspace::write_workspace(&ws, &main_tf, &vars).map_err(|e| fail(Stage::Render)(&e))?;
    cx.info(format!("workspace {}", ws.display())).await
}
