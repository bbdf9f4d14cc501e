//! Stage `address`: the guest's IPv4 address: the static one from the pool, else terraform's
//! output. Recorded with the node and vmid.

use super::{Ctx, StageResult, fail};
use crate::domain::Stage;
use crate::store::Facts;

pub(super) async fn run(cx: &mut Ctx<'_>) -> StageResult<()> {
    let ip = match (cx.static_ip, &cx.outputs.ipv4) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(ip)) => ip.clone(),
        (None, None) => {
            return Err(fail(Stage::Address)(
                &"terraform reported no IPv4 address for the guest and no static pool is configured",
            ));
        }
    };
    let facts = Facts {
        node: Some(cx.node.clone()),
        vmid: cx.outputs.vmid,
        ip: Some(ip.clone()),
        ..Facts::default()
    };
    let id = cx.d.id.clone();
    cx.engine
        .db
        .call(move |s| s.record_facts(&id, &facts))
        .await
        .map_err(|e| fail(Stage::Address)(&e))?;
    let vmid = cx
        .outputs
        .vmid
        .map(|v| format!("vmid {v}"))
        .unwrap_or_else(|| "(vmid unknown)".into());
    cx.info(format!("guest {vmid} on node {} at {ip}", cx.node))
        .await?;
    cx.ip = Some(ip);
    Ok(())
}
