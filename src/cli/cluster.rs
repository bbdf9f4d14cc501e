//! The commands that talk to the cluster outside the job queue: `resources` (with
//! `--orphans`), `remove-orphan` (one API call, confirmed) and `doctor`, and how a sync's
//! report is printed (`sync` itself is a job: `cli::jobs`). Thin clients of `engine::sync`,
//! `engine::identity` and `engine::proxmox`; this module only prints (tables, or `--json`).

use super::{CliError, open_engine, print_json};
use crate::config::AUTO_NODE;
use crate::engine::Engine;
use crate::engine::identity::{self, IdentityError};
use crate::engine::proxmox::api::GuestKind;
use crate::engine::proxmox::{Client, TlsMode, checks};
use crate::engine::sync::{self, SyncError, SyncReport};
use serde::Serialize;
use std::time::Duration;

impl From<IdentityError> for CliError {
    fn from(e: IdentityError) -> CliError {
        match e {
            IdentityError::Config(_) | IdentityError::Refused(_) => CliError::usage(e.to_string()),
            IdentityError::Store(s) => s.into(),
            other => CliError::failed(other.to_string()),
        }
    }
}

impl From<SyncError> for CliError {
    fn from(e: SyncError) -> CliError {
        match e {
            SyncError::Config(_) => CliError::usage(e.to_string()),
            other => CliError::failed(other.to_string()),
        }
    }
}

pub(super) async fn remove_orphan(
    cli: &super::Cli,
    vmid: u32,
    yes: bool,
    json: bool,
) -> Result<(), CliError> {
    let engine = open_engine(cli)?;
    let orphans = identity::find_orphans(&engine).await?;
    let Some(orphan) = orphans.iter().find(|o| o.vmid == vmid) else {
        return Err(CliError::usage(
            identity::not_an_orphan(&engine, vmid).await?,
        ));
    };
    if !yes {
        super::print::type_to_confirm(
            &format!("removing {} {vmid}", orphan.kind.label()),
            &format!(
                "Delete {} {vmid} ({}) on {}? It is an orphan: {}. Type the vmid to confirm",
                orphan.kind.label(),
                orphan.name,
                orphan.node,
                orphan.why
            ),
            &vmid.to_string(),
            "not confirmed; nothing was removed",
        )?;
    }
    let mut say = |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let removed = identity::remove_orphan(&engine, vmid, &mut say).await?;
    if json {
        print_json(&removed)
    } else {
        println!(
            "removed the orphan {} {vmid} ({}) of deployment {}",
            removed.kind.label(),
            removed.name,
            removed.deployment
        );
        Ok(())
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

fn uptime(secs: u64) -> String {
    match secs {
        0 => "-".into(),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

pub(super) async fn resources(cli: &super::Cli, orphans: bool, json: bool) -> Result<(), CliError> {
    let engine = open_engine(cli)?;
    if orphans {
        let found = identity::find_orphans(&engine).await?;
        if json {
            return print_json(&found);
        }
        print_orphans(&found);
        println!(
            "{} orphan{}",
            found.len(),
            if found.len() == 1 { "" } else { "s" }
        );
        return Ok(());
    }
    let view = sync::resources(&engine).await?;
    if json {
        return print_json(&view);
    }
    println!(
        "{:<12} {:<8} {:>5} {:>6} {:>13} {:>13} {:>9}",
        "NODE", "STATUS", "CPUS", "CPU%", "MEM GiB", "DISK GiB", "UPTIME"
    );
    for n in &view.nodes {
        println!(
            "{:<12} {:<8} {:>5} {:>5.0}% {:>13} {:>13} {:>9}",
            n.node,
            n.status,
            n.maxcpu,
            n.cpu * 100.0,
            format!("{}/{}", gib(n.mem), gib(n.maxmem)),
            format!("{}/{}", gib(n.disk), gib(n.maxdisk)),
            uptime(n.uptime)
        );
    }
    println!();
    println!(
        "{:>6} {:<4} {:<12} {:<24} {:<8} {:>5} {:>5} {:>11} {:>11} {:>9}  PROXDECK",
        "VMID", "TYPE", "NODE", "NAME", "STATUS", "CPUS", "CPU%", "MEM GiB", "DISK GiB", "UPTIME"
    );
    for g in &view.guests {
        let tracked = match (&g.deployment, &g.orphan) {
            (Some(t), _) if g.managed => format!("managed: {} ({})", t.name, t.id),
            (Some(t), _) => format!("imported: {} ({})", t.name, t.id),
            (None, Some(o)) => format!(
                "ORPHAN of {}: `proxdeck remove-orphan {}` removes it",
                o.deployment, g.vmid
            ),
            (None, None) if g.template => "template".to_string(),
            (None, None) => "-".to_string(),
        };
        println!(
            "{:>6} {:<4} {:<12} {:<24} {:<8} {:>5} {:>4.0}% {:>11} {:>11} {:>9}  {tracked}{}",
            g.vmid,
            match g.kind {
                GuestKind::Lxc => "lxc",
                GuestKind::Qemu => "vm",
            },
            g.node,
            g.name,
            g.status,
            g.maxcpu,
            g.cpu * 100.0,
            format!("{}/{}", gib(g.mem), gib(g.maxmem)),
            format!("{}/{}", gib(g.disk), gib(g.maxdisk)),
            uptime(g.uptime),
            g.lock
                .as_deref()
                .map(|l| format!(" [locked: {l}]"))
                .unwrap_or_default()
        );
    }
    let managed = view.guests.iter().filter(|g| g.managed).count();
    let imported = view
        .guests
        .iter()
        .filter(|g| !g.managed && g.deployment.is_some())
        .count();
    let orphans = view
        .guests
        .iter()
        .filter(|g| g.deployment.is_none() && g.orphan.is_some())
        .count();
    println!(
        "\n{} guests on {} nodes: {managed} managed by proxdeck, {imported} imported, {orphans} orphaned (`proxdeck resources --orphans`), {} unknown to proxdeck (`proxdeck sync` imports them)",
        view.guests.len(),
        view.nodes.len(),
        view.guests.len() - managed - imported - orphans
    );
    Ok(())
}

fn print_orphans(found: &[identity::Orphan]) {
    for o in found {
        println!(
            "orphan    {:<6} {:<4} {:<12} {:<24} {:<8} deployment {}: {}; `proxdeck remove-orphan {}` removes it",
            o.vmid,
            match o.kind {
                GuestKind::Lxc => "lxc",
                GuestKind::Qemu => "vm",
            },
            o.node,
            o.name,
            o.status,
            o.deployment,
            o.why,
            o.vmid
        );
    }
}

pub(super) fn print_sync(r: &SyncReport) {
    use std::io::Write;
    // One write per line would be a system call each: tens of thousands on a first sync.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (label, list) in [
        ("imported", &r.imported),
        ("updated", &r.updated),
        ("missing", &r.missing),
        ("back", &r.returned),
        ("rejected", &r.rejected),
    ] {
        for e in list {
            let _ = writeln!(
                out,
                "{label:<9} {:<24} {:<7} vmid {:<6} {:<10} {}",
                e.name,
                e.id.0,
                e.vmid.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                e.node.as_deref().unwrap_or("-"),
                e.changes.join(", ")
            );
        }
    }
    let _ = out.flush();
    print_orphans(&r.orphans);
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    let rejected = if r.rejected.is_empty() {
        String::new()
    } else {
        format!(", {} rejected", r.rejected.len())
    };
    let _ = writeln!(
        out,
        "{} guests: {} imported, {} updated, {} marked missing, {} back, {} unchanged, {} templates skipped, {} orphans (not imported){rejected}",
        r.guests,
        r.imported.len(),
        r.updated.len(),
        r.missing.len(),
        r.returned.len(),
        r.unchanged,
        r.templates_skipped,
        r.orphans.len()
    );
    let _ = out.flush();
}

/// One line of `doctor`.
#[derive(Debug, Clone, Serialize)]
struct Check {
    check: String,
    /// ok, warn or fail.
    status: &'static str,
    detail: String,
}

struct Doctor {
    checks: Vec<Check>,
}

impl Doctor {
    fn add(&mut self, check: &str, status: &'static str, detail: impl Into<String>) {
        self.checks.push(Check {
            check: check.to_string(),
            status,
            detail: detail.into(),
        });
    }
}

/// `proxdeck doctor`: the config, Proxmox (TLS mode, credentials, privileges, node, storage,
/// bridge, template), the tools proxdeck runs, and the data dir. Exit 1 when a check fails.
pub(super) async fn doctor(cli: &super::Cli, json: bool) -> Result<(), CliError> {
    let mut doc = Doctor { checks: Vec::new() };
    let path = super::config_path(cli);
    let engine = match open_engine(cli) {
        Ok(e) => e,
        Err(e) => {
            doc.add("config", "fail", e.message);
            return finish_doctor(doc, json);
        }
    };
    let config = engine.config.clone();
    doc.add("config", "ok", path.display().to_string());
    for w in &config.warnings {
        doc.add("config", "warn", w.clone());
    }
    match config.proxmox() {
        Err(e) => doc.add("proxmox", "fail", e.to_string()),
        Ok(p) => doctor_proxmox(&mut doc, &engine, p).await,
    }
    doctor_tools(&mut doc, &engine).await;
    finish_doctor(doc, json)
}

async fn doctor_proxmox(doc: &mut Doctor, engine: &Engine, p: &crate::config::ProxmoxConfig) {
    let client = match Client::new(p) {
        Ok(c) => c,
        Err(e) => {
            doc.add("proxmox", "fail", e.to_string());
            return;
        }
    };
    match client.tls_mode() {
        TlsMode::Insecure => doc.add(
            "tls",
            "warn",
            "NOT VERIFIED: proxmox.insecure is set, so anyone on the path can read the credentials; set proxmox.fingerprint or proxmox.ca_file instead",
        ),
        mode => doc.add("tls", "ok", mode.to_string()),
    }
    let version = match client.version().await {
        Ok(v) => v,
        Err(e) => {
            doc.add("proxmox", "fail", e.to_string());
            return;
        }
    };
    doc.add(
        "proxmox",
        "ok",
        format!(
            "Proxmox VE {} at {} as {}",
            version.version,
            client.endpoint(),
            client.identity()
        ),
    );
    match client.permissions().await {
        Err(e) => doc.add("privileges", "fail", e.to_string()),
        Ok(perms) if perms.is_empty() => doc.add(
            "privileges",
            "fail",
            format!(
                "{} holds no privileges: a privilege-separated API token sees empty lists, not errors; grant it a role (e.g. PVEVMAdmin on /)",
                client.identity()
            ),
        ),
        Ok(perms) => {
            let guest = &engine.config.guest;
            let missing: Vec<String> = crate::engine::proxmox::api::needed_privileges(
                GuestKind::Lxc,
                None,
                &guest.datastore,
                checks::template_storage(GuestKind::Lxc, guest).as_deref(),
                &guest.bridge,
            )
            .into_iter()
            .filter(|n| !perms.holds(&n.path, n.privilege))
            .map(|n| format!("{} on {}", n.privilege, n.path))
            .collect();
            if missing.is_empty() {
                doc.add("privileges", "ok", "everything a container deployment needs");
            } else {
                doc.add(
                    "privileges",
                    "warn",
                    format!("missing for container deployments: {}", missing.join(", ")),
                );
            }
        }
    }
    let nodes = match client.nodes().await {
        Ok(n) => n,
        Err(e) => {
            doc.add("nodes", "fail", e.to_string());
            return;
        }
    };
    let online: Vec<&str> = nodes
        .iter()
        .filter(|n| n.online())
        .map(|n| n.node.as_str())
        .collect();
    if online.is_empty() {
        doc.add(
            "nodes",
            "fail",
            format!(
                "no node online (the cluster has {})",
                checks::names(nodes.iter().map(|n| n.node.as_str()))
            ),
        );
        return;
    }
    doc.add("nodes", "ok", format!("online: {}", online.join(", ")));
    let targets: Vec<&crate::engine::proxmox::api::Node> = if p.node == AUTO_NODE {
        nodes.iter().filter(|n| n.online()).collect()
    } else {
        match nodes.iter().find(|n| n.node == p.node) {
            None => {
                doc.add(
                    "node",
                    "fail",
                    format!(
                        "proxmox.node {} does not exist; the cluster has {}",
                        p.node,
                        checks::names(nodes.iter().map(|n| n.node.as_str()))
                    ),
                );
                return;
            }
            Some(n) if !n.online() => {
                doc.add("node", "fail", format!("node {} is {}", n.node, n.status));
                return;
            }
            Some(n) => vec![n],
        }
    };
    for node in targets {
        let problems =
            checks::node_problems(&client, node, &engine.config.guest, GuestKind::Lxc, None).await;
        if problems.is_empty() {
            doc.add(
                "node",
                "ok",
                format!(
                    "{}: storage {}, bridge {}, template {} ready",
                    node.node,
                    engine.config.guest.datastore,
                    engine.config.guest.bridge,
                    engine.config.guest.os_template
                ),
            );
        }
        for problem in problems {
            doc.add("node", "fail", problem);
        }
    }
}

async fn doctor_tools(doc: &mut Doctor, engine: &Engine) {
    let terraform = engine.config.terraform.binary.clone();
    let tf = tool_version(&terraform.display().to_string(), &["version"]).await;
    match tf {
        Ok(v) => doc.add("terraform", "ok", v),
        Err(e) => doc.add(
            "terraform",
            "fail",
            format!(
                "{}: {e} (terraform.binary in the config)",
                terraform.display()
            ),
        ),
    }
    match tool_version("git", &["--version"]).await {
        Ok(v) => doc.add("git", "ok", v),
        Err(e) => doc.add("git", "fail", format!("git: {e}")),
    }
    let db = engine.db.call(|s| s.schema_version()).await;
    match db {
        Ok(v) => doc.add(
            "data",
            "ok",
            format!("{} (schema {v})", engine.paths.root.display()),
        ),
        Err(e) => doc.add("data", "fail", e.to_string()),
    }
    let key = engine.paths.keys().join("id_ed25519.pub");
    if key.is_file() {
        doc.add("ssh-key", "ok", key.display().to_string());
    } else {
        doc.add(
            "ssh-key",
            "warn",
            "not generated yet: the first deploy (or `proxdeck ssh-key`) makes it",
        );
    }
}

/// The first line a tool prints for its version, within 20 seconds.
async fn tool_version(program: &str, args: &[&str]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .map_err(|_| "did not answer within 20 s".to_string())?
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("exited with {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}

fn finish_doctor(doc: Doctor, json: bool) -> Result<(), CliError> {
    let failed = doc.checks.iter().filter(|c| c.status == "fail").count();
    if json {
        print_json(&doc.checks)?;
    } else {
        for c in &doc.checks {
            let mark = match c.status {
                "ok" => "ok  ",
                "warn" => "WARN",
                _ => "FAIL",
            };
            println!("{mark} {:<11} {}", c.check, c.detail);
        }
    }
    if failed > 0 {
        return Err(CliError::failed(format!(
            "doctor: {failed} check{} failed",
            if failed == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}
