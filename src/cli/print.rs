//! What the command line prints that is not a job's log: tables and details of deployments
//! (with their jobs), the framework catalog, statistics, the config commands and the destroy
//! confirmation. Wording shared with the TUI comes from `domain::present`.

use super::{Cli, CliError, ConfigCommand, config_path, load_config, open_engine, print_json};
use crate::config;
use crate::domain::{Catalog, Deployment, Job, Origin, present};
use std::io::{IsTerminal, Write};

/// Asks on the terminal before something destructive: `what` (e.g. "destroying shop
/// (k3x9ta)") needs the user to type `expected`; `question` is the prompt, `refused` what is
/// said when the answer differs. Without a terminal it refuses and names `--yes`.
pub(super) fn type_to_confirm(
    what: &str,
    question: &str,
    expected: &str,
    refused: &str,
) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "{what} needs confirmation: run it on a terminal, or pass --yes"
        )));
    }
    eprint!("{question}: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliError::failed(e.to_string()))?;
    if answer.trim() == expected {
        Ok(())
    } else {
        Err(CliError::failed(refused.to_string()))
    }
}

pub(super) fn confirm_destroy(d: &Deployment) -> Result<(), CliError> {
    type_to_confirm(
        &format!("destroying {}", present::who(d)),
        &format!(
            "Destroy {}{}? This deletes the guest. Type the name to confirm",
            present::who(d),
            d.vmid.map(|v| format!(", vmid {v}")).unwrap_or_default()
        ),
        &d.name,
        "not confirmed; nothing was destroyed",
    )
}

pub(super) fn frameworks(json: bool) -> Result<(), CliError> {
    let catalog = Catalog::builtin();
    if json {
        return print_json(&catalog.frameworks);
    }
    // The name column as wide as the longest name ("MEAN (MongoDB, Express, Angular, Node)").
    let width = catalog
        .frameworks
        .iter()
        .map(|f| f.name.chars().count())
        .max()
        .unwrap_or(4);
    println!(
        "{:<10} {:<width$} {:<9} {:>5}  START",
        "ID", "NAME", "LANGUAGE", "PORT"
    );
    for f in &catalog.frameworks {
        println!(
            "{:<10} {:<width$} {:<9} {:>5}  {}",
            f.id, f.name, f.language, f.default_port, f.start
        );
    }
    Ok(())
}

/// The `list` table; a deployment's active job shows in the STATUS (QUEUED) and JOB columns.
pub(super) fn print_table(list: &[Deployment], jobs: &[Job]) {
    println!(
        "{:<7} {:<20} {:<9} {:<4} {:<8} {:<6} {:<15} {:<13} {:<15} JOB",
        "ID", "NAME", "FRAMEWORK", "TYPE", "NODE", "VMID", "IP", "STATUS", "STAGE"
    );
    for d in list {
        let job = jobs.iter().find(|j| j.deployment.as_ref() == Some(&d.id));
        let host = d.origin == Origin::Host;
        println!(
            "{:<7} {:<20} {:<9} {:<4} {:<8} {:<6} {:<15} {:<13} {:<15} {}",
            d.id.0,
            d.name,
            d.framework,
            if host { "host" } else { d.guest_type.as_str() },
            if host {
                "-"
            } else {
                d.node.as_deref().unwrap_or("-")
            },
            d.vmid.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            d.ip.as_deref().unwrap_or("-"),
            present::status_text(d, job),
            d.stage.map(|s| s.as_str()).unwrap_or("-"),
            job.map(present::job_phrase).unwrap_or_else(|| "-".into()),
        );
    }
}

/// Where a deployment runs, as `show` prints it: for an app on an existing host (`--host`),
/// the host, the SSH login, the app's folder and service (it has no guest of its own: no
/// vmid, node, cores, memory or disk); else the guest's type, node, vmid, address and size.
pub(super) fn placement_lines(d: &Deployment, guest: &crate::config::GuestConfig) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    if d.origin == Origin::Host {
        return vec![
            format!(
                "host       {} (an existing host: destroy removes the app, not the host)",
                opt(&d.ip)
            ),
            format!(
                "ssh        user {}, port {}, key {}",
                d.ssh_user.as_deref().unwrap_or(&guest.ssh_user),
                d.ssh_port.unwrap_or(guest.ssh_port),
                d.overrides.ssh_key.as_deref().unwrap_or("proxdeck's")
            ),
            format!(
                "app        {} (service {}, user {})",
                crate::engine::provision::app_dir(&guest.app_root, &d.name),
                crate::engine::provision::service_name(&d.name),
                crate::engine::provision::app_user(&d.name)
            ),
            format!("port       {}", d.port),
        ];
    }
    let mut lines = Vec::new();
    if d.ssh_user.is_some() || d.ssh_port.is_some() || d.overrides.ssh_key.is_some() {
        lines.push(format!(
            "ssh        user {}, port {}, key {}",
            d.ssh_user.as_deref().unwrap_or("(config)"),
            d.ssh_port
                .map(|p| p.to_string())
                .unwrap_or_else(|| "(config)".into()),
            d.overrides.ssh_key.as_deref().unwrap_or("proxdeck's")
        ));
    }
    lines.extend([
        format!("type       {}", d.guest_type),
        format!("node       {}", opt(&d.node)),
        format!(
            "vmid       {}",
            d.vmid.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
        ),
        format!("ip         {}", opt(&d.ip)),
        format!(
            "resources  {} cores, {} MiB, {} GiB, port {}",
            d.cores, d.memory_mib, d.disk_gib, d.port
        ),
    ]);
    lines
}

pub(super) fn print_details(
    d: &Deployment,
    history: &[crate::store::StatusChange],
    job: Option<&Job>,
    guest: &crate::config::GuestConfig,
) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("id         {}", d.id);
    println!("name       {}", d.name);
    println!("status     {}", present::status_text(d, job));
    if let Some(j) = job {
        println!(
            "job        {} {} (asked by {}; `proxdeck cancel {}` stops it)",
            j.id,
            present::job_phrase(j),
            j.requested_by,
            d.id
        );
    }
    println!("stage      {}", d.stage.map(|s| s.as_str()).unwrap_or("-"));
    println!("url        {}", opt(&d.url));
    if !d.overrides.domains.is_empty() {
        println!(
            "domains    {} (TLS {}, through Caddy; port {} {})",
            d.overrides.domains.join(", "),
            d.overrides.tls_mode(),
            d.port,
            if d.overrides.port_guarded() {
                "for the guest itself only"
            } else {
                "exposed too"
            }
        );
    }
    println!("repo       {}", d.repo);
    println!(
        "ref        {}",
        if d.git_ref.is_empty() {
            "(default branch)"
        } else {
            &d.git_ref
        }
    );
    println!("commit     {}", opt(&d.commit));
    if let Some(p) = &d.previous_commit {
        println!("previous   {p} (the commit that ran before)");
    }
    match &d.overrides.git_auth {
        Some(crate::domain::GitAuth::DeployKey) => println!(
            "git access its deploy key (`proxdeck deploy-key {}` prints it and where it goes)",
            d.id
        ),
        Some(auth) => println!("git access {}", auth.describe()),
        None => {}
    }
    for (what, value) in [
        ("install", &d.overrides.install),
        ("build", &d.overrides.build),
        ("start", &d.overrides.start),
        ("health", &d.overrides.health_path),
        ("subdir", &d.overrides.subdir),
    ] {
        if let Some(v) = value {
            println!("{what:<10} {v}");
        }
    }
    if let Some(s) = d.overrides.health_status {
        println!("expects    HTTP {s}");
    }
    if !d.overrides.apt.is_empty() {
        println!("apt        {}", d.overrides.apt.join(" "));
    }
    println!("framework  {}", d.framework);
    for line in placement_lines(d, guest) {
        println!("{line}");
    }
    if !d.env_names.is_empty() {
        println!("env        {}", d.env_names.join(", "));
    }
    if let Some(e) = &d.error {
        println!("error      {e}");
    }
    println!("history");
    for h in history {
        let t = chrono::DateTime::from_timestamp_millis(h.at)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        println!(
            "  {t}  {:<12} {}{}",
            h.status,
            h.stage.map(|s| s.as_str()).unwrap_or(""),
            h.message
                .as_deref()
                .map(|m| format!("  {m}"))
                .unwrap_or_default()
        );
    }
}

pub(super) fn config_command(cli: &Cli, c: &ConfigCommand) -> Result<(), CliError> {
    let path = config_path(cli);
    match c {
        ConfigCommand::Path => {
            println!("{}", path.display());
            Ok(())
        }
        ConfigCommand::Check => {
            let config = load_config(cli)?;
            let placeholders = config.placeholders();
            if !placeholders.is_empty() {
                for p in &placeholders {
                    eprintln!("{p}");
                }
                return Err(CliError::usage(format!(
                    "{}: not ready: {} setting(s) above still hold the template's examples; edit them, then run `proxdeck config check` again",
                    path.display(),
                    placeholders.len()
                )));
            }
            match config.proxmox() {
                Ok(p) => println!(
                    "{}: ok (proxmox {} node {}{})",
                    path.display(),
                    p.endpoint,
                    p.node,
                    if p.fingerprint.is_some() {
                        ", TLS pinned by fingerprint"
                    } else if p.insecure {
                        ", TLS NOT VERIFIED (insecure)"
                    } else {
                        ""
                    }
                ),
                Err(e) => println!("{}: ok, but {e}", path.display()),
            }
            Ok(())
        }
        ConfigCommand::Init { force } => {
            use std::os::unix::fs::OpenOptionsExt;
            if path.exists() && !force {
                return Err(CliError::usage(format!(
                    "{} exists; pass --force to overwrite it",
                    path.display()
                )));
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| CliError::failed(format!("{}: {e}", dir.display())))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
            f.write_all(config::TEMPLATE.as_bytes())
                .map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
            // An overwritten file keeps its old mode: make it private in any case.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
            println!(
                "wrote {}; edit [proxmox] before the first deploy",
                path.display()
            );
            Ok(())
        }
    }
}

/// `proxdeck stats [--json]`: the same numbers as the TUI's statistics screen.
pub(super) async fn stats_command(cli: &Cli, json: bool) -> Result<(), CliError> {
    const DAYS: u32 = 14;
    let engine = open_engine(cli)?;
    let offset = chrono::Local::now().offset().local_minus_utc();
    let stats = engine
        .db
        .call(move |s| s.statistics(crate::store::now_ms(), DAYS, offset))
        .await?;
    if json {
        return print_json(&stats);
    }
    let rate = stats
        .success_rate
        .map_or_else(|| "-".to_string(), |r| format!("{:.0}%", r * 100.0));
    println!(
        "deployments {}  active {}  in flight {}  succeeded {}  failed {}  success rate {rate}",
        stats.total, stats.active, stats.in_flight, stats.succeeded, stats.failed
    );
    println!("\nper day (last {DAYS})");
    let most = stats
        .per_day
        .iter()
        .map(|d| d.deployments)
        .max()
        .unwrap_or(0)
        .max(1);
    for d in &stats.per_day {
        let bar = "#".repeat(((d.deployments * 40) / most) as usize);
        let failed = if d.failed > 0 {
            format!(" ({} failed)", d.failed)
        } else {
            String::new()
        };
        println!("  {}  {:>4} {bar}{failed}", d.day, d.deployments);
    }
    if !stats.stages.is_empty() {
        println!("\ntime per stage         runs      mean    median       max");
        for t in &stats.stages {
            println!(
                "  {:<18} {:>6} {:>9} {:>9} {:>9}",
                t.stage.as_str(),
                t.runs,
                seconds(t.mean_ms),
                seconds(t.median_ms),
                seconds(t.max_ms)
            );
        }
    }
    if !stats.frameworks.is_empty() {
        println!("\nframework     deployments  active  succeeded  failed  mean time to RUNNING");
        for f in &stats.frameworks {
            println!(
                "  {:<12} {:>11} {:>7} {:>10} {:>7}  {}",
                f.framework,
                f.deployments,
                f.active,
                f.succeeded,
                f.failed,
                f.mean_deploy_ms.map_or_else(|| "-".to_string(), seconds)
            );
        }
    }
    Ok(())
}

fn seconds(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// `show`: the deployment's releases on its guest, newest first (removed ones left out).
pub fn print_releases(releases: &[crate::store::releases::Release]) {
    use crate::store::releases::ReleaseState;
    let shown: Vec<_> = releases
        .iter()
        .filter(|r| r.state != ReleaseState::Removed)
        .collect();
    if shown.is_empty() {
        return;
    }
    let when = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|| "-".into())
    };
    println!("releases   (`proxdeck rollback ID --to COMMIT` switches to a kept one)");
    for r in shown {
        println!(
            "  {:<8} {:<12} built {}{}  {}",
            r.state.as_str(),
            r.commit.get(..12).unwrap_or(&r.commit),
            when(r.created_at),
            r.activated_at
                .map(|a| format!(", activated {}", when(a)))
                .unwrap_or_default(),
            r.folder
        );
    }
}

/// `proxdeck domains ID`: the deployment's domains, their TLS mode and URL.
pub(super) async fn domains(
    engine: &crate::engine::Engine,
    target: &str,
    json: bool,
) -> Result<(), CliError> {
    let key = target.to_string();
    let d = engine.db.call(move |s| s.find(&key)).await?;
    let o = &d.overrides;
    if json {
        return print_json(&serde_json::json!({
            "id": d.id,
            "name": d.name,
            "domains": o.domains,
            "tls": o.tls_mode(),
            "expose_port": o.expose_port,
            "url": d.url,
        }));
    }
    if o.domains.is_empty() {
        println!(
            "{} has no domain: it answers at {} (`proxdeck domains {} add NAME` puts Caddy in front, with HTTPS)",
            present::who(&d),
            d.url.as_deref().unwrap_or("its guest's address and port"),
            d.id
        );
        return Ok(());
    }
    println!(
        "{}: TLS {}, through Caddy to port {} ({})",
        present::who(&d),
        o.tls_mode(),
        d.port,
        if o.port_guarded() {
            "which answers the guest itself only"
        } else {
            "which is exposed too"
        }
    );
    for name in &o.domains {
        println!("  {}://{name}/", o.tls_mode().scheme());
    }
    Ok(())
}

/// `proxdeck deploy-key ID`: the deployment's deploy key, where to add it, and the Git host
/// keys pinned for it.
pub fn deploy_key(engine: &crate::engine::Engine, d: &Deployment) -> Result<(), CliError> {
    use crate::engine::gitauth;
    if d.overrides.git_auth != Some(crate::domain::GitAuth::DeployKey) {
        return Err(CliError::failed(format!(
            "{} ({}) has no deploy key: it reads its repository with {}; a deploy key is made by `proxdeck deploy --deploy-key`",
            d.name,
            d.id,
            d.overrides
                .git_auth
                .as_ref()
                .map(|a| a.describe())
                .unwrap_or_else(|| "no credentials of its own".into())
        )));
    }
    let dir = gitauth::deploy_key_dir(&engine.paths, &d.id);
    let public = std::fs::read_to_string(dir.join("id_ed25519.pub")).map_err(|e| {
        CliError::failed(format!(
            "the deploy key of {} is missing from {}: {e}",
            d.id,
            dir.display()
        ))
    })?;
    print!("{}", gitauth::add_key_words(public.trim(), &d.repo));
    if let Ok(pinned) = gitauth::pinned_words(&dir.join("known_hosts")) {
        println!("  Git host key pinned: {pinned}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeploymentId;

    fn guest() -> crate::config::GuestConfig {
        crate::config::GuestConfig {
            datastore: "local-lvm".into(),
            bridge: "vmbr0".into(),
            vlan: None,
            os_template: "local:vztmpl/debian-12.tar.zst".into(),
            os_type: "debian".into(),
            swap_mib: 512,
            ssh_user: "root".into(),
            ssh_port: 22,
            app_root: "/opt/proxdeck".into(),
            vmid_range: 100..=999,
        }
    }

    #[test]
    fn a_host_deployment_shows_host_fields_not_container_fields() {
        let d = Deployment {
            id: DeploymentId("k3x9ta".into()),
            name: "shop".into(),
            origin: Origin::Host,
            ip: Some("192.0.2.7".into()),
            ssh_user: Some("deploy".into()),
            ssh_port: Some(2222),
            port: 8000,
            ..Deployment::default()
        };
        let text = placement_lines(&d, &guest()).join("\n");
        for want in [
            "host       192.0.2.7",
            "ssh        user deploy, port 2222",
            "app        /opt/proxdeck/shop (service proxdeck-shop, user pd-shop)",
            "port       8000",
        ] {
            assert!(text.contains(want), "{want}:\n{text}");
        }
        for gone in ["vmid", "cores", "MiB", "GiB", "node", "type"] {
            assert!(!text.contains(gone), "{gone}:\n{text}");
        }
        // A guest proxdeck created keeps its container fields.
        let guest_d = Deployment {
            vmid: Some(120),
            node: Some("pve1".into()),
            ..Deployment::default()
        };
        let text = placement_lines(&guest_d, &guest()).join("\n");
        assert!(
            text.contains("vmid       120") && text.contains("cores"),
            "{text}"
        );
    }
}
