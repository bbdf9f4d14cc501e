//! Stage `address`: the guest's IPv4 address: the static one from the pool, else terraform's
//! output, else the Proxmox API (LXC `/interfaces`, the QEMU guest agent) polled with backoff
//! until `timeouts.address_secs` (see `proxmox::ip` for which addresses count). Recorded with
//! the node and vmid.

use super::{Ctx, StageResult, fail};
use crate::domain::Stage;
use crate::engine::proxmox::Client;
use crate::engine::proxmox::api::GuestKind;
use crate::engine::proxmox::ip::{discover_ipv4, unusable};
use crate::protocol::LogStream;
use crate::store::Facts;
use std::net::Ipv4Addr;

pub(super) async fn run(cx: &mut Ctx<'_>) -> StageResult<()> {
    let vmid = cx.outputs.vmid.or(cx.d.vmid);
    // Terraform's address counts unless it is one nobody can reach (loopback, link-local).
    let from_terraform = cx.outputs.ipv4.as_ref().filter(|ip| {
        ip.parse::<Ipv4Addr>()
            .map(|a| unusable("eth0", a).is_none())
            .unwrap_or(true)
    });
    let ip = match (cx.static_ip, from_terraform) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(ip)) => ip.clone(),
        (None, None) => discover(cx, vmid).await?.to_string(),
    };
    let facts = Facts {
        node: Some(cx.node.clone()),
        vmid,
        ip: Some(ip.clone()),
        ..Facts::default()
    };
    let id = cx.d.id.clone();
    cx.engine
        .db
        .call(move |s| s.record_facts(&id, &facts))
        .await
        .map_err(|e| fail(Stage::Address)(&e))?;
    let vmid = vmid
        .map(|v| format!("vmid {v}"))
        .unwrap_or_else(|| "(vmid unknown)".into());
    cx.info(format!("guest {vmid} on node {} at {ip}", cx.node))
        .await?;
    cx.ip = Some(ip);
    Ok(())
}

/// Asks Proxmox for the guest's address until the deadline, logging each wait.
async fn discover(cx: &mut Ctx<'_>, vmid: Option<u32>) -> StageResult<Ipv4Addr> {
    let Some(vmid) = vmid else {
        return Err(fail(Stage::Address)(
            &"terraform reported neither an IPv4 address nor the vmid, and no static pool is configured",
        ));
    };
    let client = match &cx.pve {
        Some(c) => c.clone(),
        None => Client::new(&cx.proxmox).map_err(|e| fail(Stage::Address)(&e))?,
    };
    let kind = GuestKind::from(cx.d.guest_type);
    let deadline = cx.engine.config.timeouts.address;
    let source = match kind {
        GuestKind::Lxc => "the container's interfaces",
        GuestKind::Qemu => "the QEMU guest agent",
    };
    cx.info(format!(
        "no address from the pool or terraform: asking Proxmox ({source}) for up to {} s",
        deadline.as_secs()
    ))
    .await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let node = cx.node.clone();
    let search = discover_ipv4(
        &client,
        &node,
        kind,
        vmid,
        deadline,
        move |attempt, note| {
            let _ = tx.send(format!("address: try {attempt}: {note}"));
        },
    );
    tokio::pin!(search);
    // Log the waits as they happen; the search ends by itself at the deadline.
    let found = loop {
        tokio::select! {
            result = &mut search => break result,
            Some(line) = rx.recv() => {
                let _ = cx.reporter.lines(LogStream::Info, vec![line]).await;
            }
        }
    };
    while let Ok(line) = rx.try_recv() {
        let _ = cx.reporter.lines(LogStream::Info, vec![line]).await;
    }
    let ip = found.map_err(|e| fail(Stage::Address)(&e))?;
    cx.info(format!("Proxmox reports {ip} for {} {vmid}", kind.label()))
        .await?;
    Ok(ip)
}
