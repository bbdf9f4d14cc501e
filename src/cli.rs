//! The command line: every subcommand a thin client of the engine. Operations (deploy, retry,
//! redeploy, rollback, destroy, start, stop, restart, forget, sync) are queued as jobs through
//! `engine::ops` and followed to their end (`jobs`); reads print from the store (`print`,
//! `logs`); `cluster` talks to Proxmox for `resources` and `doctor`. Progress goes to stdout
//! (to stderr with `--json`, where stdout holds only the JSON result). Exit codes: 0 done,
//! 1 an operation failed, 2 bad input or config.

use crate::config::Config;
use crate::domain::spec::{DeployInput, parse_env_file, parse_env_pair};
use crate::domain::{Catalog, Op};
use crate::engine::ops::OpRequest;
use crate::engine::pipeline::{self, DeployError};
use crate::engine::{Engine, ssh};
use std::path::PathBuf;

mod args;
mod autodeploy;
mod cluster;
mod jobs;
mod logs;
mod print;
mod snapshots;

pub use crate::engine::ops::format_line;
pub use args::*;

/// A failure of a command, with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: 2,
            message: message.into(),
        }
    }
    fn failed(message: impl Into<String>) -> CliError {
        CliError {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<DeployError> for CliError {
    fn from(e: DeployError) -> CliError {
        match e {
            DeployError::Invalid(_) | DeployError::Config(_) => CliError::usage(e.to_string()),
            other => CliError::failed(other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for CliError {
    fn from(e: crate::store::StoreError) -> CliError {
        match e {
            crate::store::StoreError::NotFound(_) | crate::store::StoreError::Ambiguous(_) => {
                CliError::usage(e.to_string())
            }
            other => CliError::failed(other.to_string()),
        }
    }
}

/// Default paths from the XDG directories.
pub fn default_paths() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "proxdeck")
}

pub fn config_path(cli: &Cli) -> PathBuf {
    cli.config.clone().unwrap_or_else(|| {
        default_paths()
            .map(|d| d.config_dir().join("config.toml"))
            .unwrap_or_else(|| PathBuf::from("proxdeck.toml"))
    })
}

pub fn data_dir(cli: &Cli) -> PathBuf {
    cli.data_dir.clone().unwrap_or_else(|| {
        default_paths()
            .map(|d| d.data_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from(".proxdeck"))
    })
}

pub fn load_config(cli: &Cli) -> Result<Config, CliError> {
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let config =
        Config::load(&config_path(cli), &env).map_err(|e| CliError::usage(e.to_string()))?;
    for w in &config.warnings {
        eprintln!("{w}");
    }
    Ok(config)
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::failed(e.to_string()))?;
    println!("{text}");
    Ok(())
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let Some(command) = &cli.command else {
        return Err(CliError::usage("no command"));
    };
    let follow = |id: &str, op: Op, detach: bool, json: bool| jobs::Follow {
        request: OpRequest::On {
            op: Box::new(op),
            target: id.to_string(),
        },
        detach,
        json,
    };
    match command {
        Command::Frameworks(a) => print::frameworks(a.json),
        Command::Config(c) => print::config_command(&cli, c),
        Command::Worker => worker(&cli).await,
        Command::Deploy(args) => {
            // Bad input is reported before the config is even read.
            let input = deploy_input(args)?;
            input
                .validate(Catalog::builtin())
                .map_err(|e| CliError::usage(e.to_string()))?;
            let engine = open_engine(&cli)?;
            let options = pipeline::DeployOptions {
                os_template: args.os_template.clone(),
                auto_deploy: args.auto_deploy,
            };
            if args.plan {
                return plan(&engine, input, options, args.json).await;
            }
            let run = jobs::Follow {
                request: OpRequest::Deploy {
                    input: Box::new(input),
                    options,
                },
                detach: args.detach,
                json: args.json,
            };
            jobs::run(&engine, run).await
        }
        Command::Render(args) => render(&cli, args).await,
        Command::Retry(a) => {
            let op = Op::Retry {
                changes: changes(&a.changes)?,
            };
            let engine = open_engine(&cli)?;
            jobs::run(&engine, follow(&a.op.id, op, a.op.detach, a.op.json)).await
        }
        Command::Destroy(a) => {
            let engine = open_engine(&cli)?;
            let key = a.id.clone();
            let d = engine.db.call(move |s| s.find(&key)).await?;
            // The rules first: nothing to confirm for what would be refused anyway.
            let op = Op::Destroy { force: a.force };
            crate::domain::policy::check_op(&op, &d).map_err(|r| CliError::failed(r.0))?;
            if !a.yes {
                print::confirm_destroy(&d)?;
            }
            jobs::run(&engine, follow(&d.id.0, op, a.detach, a.json)).await
        }
        Command::Redeploy(a) => {
            let engine = open_engine(&cli)?;
            let op = Op::Redeploy {
                git_ref: a.git_ref.clone(),
                changes: changes(&a.changes)?,
            };
            jobs::run(&engine, follow(&a.id, op, a.detach, a.json)).await
        }
        Command::Rollback(a) => {
            let engine = open_engine(&cli)?;
            let op = Op::Rollback { to: a.to.clone() };
            jobs::run(&engine, follow(&a.id, op, a.detach, a.json)).await
        }
        Command::Forget(a) => {
            let engine = open_engine(&cli)?;
            let op = Op::Forget { force: a.force };
            jobs::run(&engine, follow(&a.id, op, a.detach, a.json)).await
        }
        Command::RemoveOrphan(a) => cluster::remove_orphan(&cli, a.vmid, a.yes, a.json).await,
        Command::Start(a) | Command::Stop(a) | Command::Restart(a) => {
            let op = match command {
                Command::Start(_) => Op::Start,
                Command::Stop(_) => Op::Stop,
                _ => Op::Restart,
            };
            let engine = open_engine(&cli)?;
            jobs::run(&engine, follow(&a.id, op, a.detach, a.json)).await
        }
        Command::Sync(a) => {
            let engine = open_engine(&cli)?;
            let run = jobs::Follow {
                request: OpRequest::Sync,
                detach: a.detach,
                json: a.json,
            };
            jobs::run(&engine, run).await
        }
        Command::Jobs(a) => jobs::list(&open_engine(&cli)?, a).await,
        Command::Cancel(a) => jobs::cancel(&open_engine(&cli)?, a).await,
        Command::List(a) => {
            let engine = open_engine(&cli)?;
            let (list, active) = engine
                .db
                .call(|s| Ok((s.list()?, s.active_jobs()?)))
                .await?;
            if a.json {
                print_json(&list)
            } else {
                print::print_table(&list, &active);
                Ok(())
            }
        }
        Command::Show(a) => {
            let engine = open_engine(&cli)?;
            let key = a.id.clone();
            let (d, history, job, auto, releases) = engine
                .db
                .call(move |s| {
                    let d = s.find(&key)?;
                    let h = s.history(&d.id)?;
                    let j = s.active_job_for(&d.id)?;
                    let a = s.auto_deploy(&d.id)?.filter(|a| a.enabled);
                    let r = s.releases(&d.id)?;
                    Ok((d, h, j, a, r))
                })
                .await?;
            if a.json {
                let mut v =
                    serde_json::to_value(&d).map_err(|e| CliError::failed(e.to_string()))?;
                v["history"] = serde_json::to_value(&history).unwrap_or_default();
                v["job"] = serde_json::to_value(&job).unwrap_or_default();
                v["auto_deploy"] = serde_json::to_value(&auto).unwrap_or_default();
                v["releases"] = serde_json::to_value(&releases).unwrap_or_default();
                print_json(&v)
            } else {
                print::print_details(&d, &history, job.as_ref(), &engine.config.guest);
                print::print_releases(&releases);
                if let Some(a) = auto {
                    println!(
                        "auto-deploy: on{}",
                        a.last_error
                            .map(|e| format!(
                                " (last failure, {} in a row: {e}; `proxdeck auto-deploy {}` says more)",
                                a.failures, d.id
                            ))
                            .unwrap_or_default()
                    );
                }
                Ok(())
            }
        }
        Command::Logs(a) if a.prune => logs::prune(&open_engine(&cli)?, a.json).await,
        Command::Logs(a) => {
            let engine = open_engine(&cli)?;
            let id = a.id.clone().unwrap_or_default();
            if a.app {
                logs::app_logs(&engine, a, &id).await
            } else {
                logs::deployment_logs(&engine, a, &id).await
            }
        }
        Command::Resources(a) => cluster::resources(&cli, a.orphans, a.json).await,
        Command::Doctor(a) => cluster::doctor(&cli, a.json).await,
        Command::Stats(a) => print::stats_command(&cli, a.json).await,
        Command::Snapshots(a) => snapshots::list(&open_engine(&cli)?, a).await,
        Command::Snapshot(a) => {
            let engine = open_engine(&cli)?;
            let op = Op::Snapshot {
                name: a.name.clone(),
            };
            jobs::run(&engine, follow(&a.id, op, a.detach, a.json)).await
        }
        Command::Restore(a) => {
            let engine = open_engine(&cli)?;
            let d = snapshots::check_restore(&engine, a).await?;
            let op = Op::Restore {
                snapshot: a.snapshot.clone(),
            };
            jobs::run(&engine, follow(&d.id.0, op, a.detach, a.json)).await
        }
        Command::AutoDeploy(a) => autodeploy::command(&open_engine(&cli)?, a).await,
        Command::Domains(a) => {
            let engine = open_engine(&cli)?;
            match (&a.change, &a.name) {
                (Some(change), Some(name)) => {
                    let change = match change.as_str() {
                        "add" => crate::domain::DomainChange::Add,
                        _ => crate::domain::DomainChange::Remove,
                    };
                    let op = Op::Domains {
                        change,
                        name: name.clone(),
                    };
                    jobs::run(&engine, follow(&a.id, op, a.detach, a.json)).await
                }
                _ => print::domains(&engine, &a.id, a.json).await,
            }
        }
        Command::DeployKey(a) => {
            let engine = open_engine(&cli)?;
            let key = a.id.clone();
            let d = engine.db.call(move |s| s.find(&key)).await?;
            print::deploy_key(&engine, &d)
        }
        Command::SshKey => {
            let dir = data_dir(&cli).join("keys");
            let keys = ssh::ensure_key(&dir).map_err(|e| CliError::failed(e.to_string()))?;
            println!(
                "{}",
                keys.public_openssh()
                    .map_err(|e| CliError::failed(e.to_string()))?
            );
            Ok(())
        }
    }
}

/// `proxdeck worker`: runs queued jobs until idle (started by the other commands, detached).
async fn worker(cli: &Cli) -> Result<(), CliError> {
    // No terminal watches the worker: it logs to a file in the data dir.
    let data = data_dir(cli);
    crate::engine::logfile::init(&data.join("logs").join("worker.log"));
    // A hangup from whatever terminal started it must not end its jobs.
    // SAFETY: setting a signal's disposition to ignore has no preconditions.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGHUP,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    let engine = open_engine(cli)?;
    crate::engine::worker::run(engine, Some(config_path(cli)))
        .await
        .map_err(CliError::failed)
}

/// `deploy --plan`: a dry run in this process (nothing is created, nothing stays recorded).
async fn plan(
    engine: &Engine,
    input: DeployInput,
    options: pipeline::DeployOptions,
    json: bool,
) -> Result<(), CliError> {
    let (tx, printer) = jobs::spawn_printer(json);
    let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping the plan: terraform is asked to stop");
            cancel_tx.send_replace(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let result = pipeline::plan(engine, input, options, tx, cancel).await;
    ctrl_c.abort();
    let _ = printer.await;
    finish_plan(result, json)
}

async fn render(cli: &Cli, args: &RenderArgs) -> Result<(), CliError> {
    if args.deploy.plan {
        return Err(CliError::usage(
            "render writes the workspace; --plan belongs to deploy",
        ));
    }
    let input = deploy_input(&args.deploy)?;
    input
        .validate(Catalog::builtin())
        .map_err(|e| CliError::usage(e.to_string()))?;
    let engine = open_engine(cli)?;
    let options = pipeline::DeployOptions {
        os_template: args.deploy.os_template.clone(),
        auto_deploy: false,
    };
    let report = pipeline::render_workspace(&engine, input, options, &args.out).await?;
    if args.deploy.json {
        print_json(&report)
    } else {
        for f in &report.files {
            println!("{}", report.dir.join(f).display());
        }
        println!(
            "{} {} on node {}, vmid {} (a deploy reserves its own vmid when it runs); credentials are not in these files: terraform reads them from PROXMOX_VE_ENDPOINT and PROXMOX_VE_API_TOKEN",
            report.guest_type, report.name, report.node, report.vmid
        );
        if let Ok(proxmox) = engine.config.proxmox() {
            println!("{}", render_tls_note(proxmox));
        }
        Ok(())
    }
}

/// How terraform gets Proxmox's CA when these files are used: the same environment proxdeck
/// gives the terraform it runs (`engine::terraform`).
fn render_tls_note(proxmox: &crate::config::ProxmoxConfig) -> String {
    if proxmox.insecure {
        return "TLS: `insecure = true`: proxdeck runs terraform with PROXMOX_VE_INSECURE=true, so the provider does not check Proxmox's certificate; set the same variable to run terraform yourself".to_string();
    }
    match &proxmox.ca_file {
        Some(ca) => format!(
            "TLS: the provider trusts the CA of `ca_file` ({ca}): proxdeck runs terraform with SSL_CERT_FILE={ca} and PROXMOX_VE_INSECURE=false; to run terraform yourself here, export SSL_CERT_FILE={ca} too",
            ca = ca.display()
        ),
        None => "TLS: no `ca_file` in config.toml: the provider checks Proxmox's certificate against the system's CAs (a pinned `fingerprint` is proxdeck's own check, terraform does not use it); for a self-signed certificate set `ca_file`, which proxdeck passes to terraform as SSL_CERT_FILE".to_string(),
    }
}

/// Opens the data dir (recovering what a killed proxdeck left, and saying so) with an engine
/// that starts the worker as a detached `proxdeck worker` process.
pub fn open_engine(cli: &Cli) -> Result<Engine, CliError> {
    let config = load_config(cli)?;
    let mut engine =
        Engine::open(config, &data_dir(cli)).map_err(|e| CliError::failed(e.to_string()))?;
    for j in &engine.interrupted {
        eprintln!(
            "notice: job {} ({}{}) was interrupted: {}",
            j.id,
            j.kind(),
            j.deployment
                .as_ref()
                .map(|d| format!(" of {d}"))
                .unwrap_or_default(),
            j.outcome.as_ref().map(|o| o.message.as_str()).unwrap_or("")
        );
    }
    for d in &engine.recovered {
        eprintln!(
            "notice: {} ({}) was interrupted and is now FAILED: `proxdeck retry {}` resumes it, `proxdeck destroy {}` removes it",
            d.name, d.id, d.id, d.id
        );
    }
    if let Ok(exe) = std::env::current_exe() {
        engine = engine.with_worker_process(exe, Some(config_path(cli)));
    }
    // Deployments with auto-deploy on need the worker polling: any command brings it back
    // (after a reboot, say). The worker itself does not start another.
    if !matches!(cli.command, Some(Command::Worker))
        && let Err(e) = crate::engine::worker::ensure_for_auto_deploy(&engine)
    {
        eprintln!("notice: auto-deploy needs proxdeck's worker, which could not be started: {e}");
    }
    Ok(engine)
}

fn deploy_input(a: &DeployArgs) -> Result<DeployInput, CliError> {
    let mut env: Vec<(String, String)> = match &a.env_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::usage(format!("env-file: cannot read {}: {e}", path.display()))
            })?;
            parse_env_file(&text)
                .map_err(|m| CliError::usage(format!("env-file: {}: {m}", path.display())))?
        }
        None => Vec::new(),
    };
    for s in &a.env {
        let (k, v) = parse_env_pair(s).map_err(|m| CliError::usage(format!("env: {m}")))?;
        // --env wins over the file's value of the same name.
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    }
    // A relative key path is the user's, from where they run proxdeck.
    let ssh_key = match &a.ssh_key {
        Some(p) if p.is_relative() => Some(
            std::env::current_dir()
                .map_err(|e| CliError::usage(format!("ssh-key: {e}")))?
                .join(p),
        ),
        other => other.clone(),
    };
    Ok(DeployInput {
        repo: a.repo.clone(),
        git_ref: a.git_ref.clone(),
        framework: a.framework.clone().unwrap_or_default(),
        host: a.host.clone(),
        ssh_user: a.ssh_user.clone(),
        ssh_key: ssh_key.map(|p| p.display().to_string()),
        install: a.install.clone(),
        build: a.build.clone(),
        start: a.start.clone(),
        health_path: a.health_path.clone(),
        health_status: a.health_status,
        domains: a.domains.clone(),
        tls: a.tls.clone(),
        expose_port: a.expose_port,
        deploy_key: a.deploy_key,
        git_token_env: a.git_token_env.clone(),
        subdir: a.subdir.clone(),
        apt: a.apt.clone(),
        guest_type: a.guest_type.clone(),
        name: a.name.clone(),
        cores: a.cores,
        memory_mib: a.memory,
        disk_gib: a.disk,
        port: a.port,
        node: a.node.clone(),
        env,
    })
}

/// The changes a `retry` or `redeploy` brings, checked as `deploy` checks them.
fn changes(a: &args::ChangeArgs) -> Result<crate::domain::Overrides, CliError> {
    let subdir = match a.subdir.as_deref() {
        Some(s) => Some(
            crate::domain::spec::normalize_subdir(s)
                .map_err(|m| CliError::usage(format!("subdir: {m}")))?,
        ),
        None => None,
    };
    let changes = crate::domain::Overrides {
        install: a.install.clone(),
        build: a.build.clone(),
        start: a.start.clone(),
        health_path: a.health_path.as_deref().map(|p| p.trim().to_string()),
        health_status: a.health_status,
        ssh_key: None,
        subdir,
        apt: a.apt.iter().map(|p| p.trim().to_string()).collect(),
        git_auth: None,
        domains: Vec::new(),
        tls: None,
        expose_port: false,
    };
    crate::domain::spec::validate_overrides(&changes)
        .map_err(|e| CliError::usage(e.to_string()))?;
    Ok(changes)
}

/// `deploy --plan`: the plan's summary (already printed with the log), and what to do next.
fn finish_plan(
    result: Result<pipeline::PlanReport, DeployError>,
    json: bool,
) -> Result<(), CliError> {
    let report = result?;
    if json {
        return print_json(&report);
    }
    println!(
        "PLAN {} ({}): nothing was created and nothing recorded; run the same command without --plan to deploy",
        report.name, report.guest_type
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_says_how_terraform_gets_the_ca() {
        let base = "[proxmox]\nendpoint = \"https://pve.lan:8006/\"\napi_token = \"a@pam!t=s\"\n";
        let parse = |extra: &str| {
            crate::config::Config::parse(&format!("{base}{extra}"), &Default::default())
                .expect("config")
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = dir.path().join("pve-ca.pem");
        std::fs::write(&ca, "a CA").expect("the CA file");
        let with_ca = parse(&format!("ca_file = \"{}\"\n", ca.display()));
        let note = render_tls_note(with_ca.proxmox().expect("proxmox"));
        assert!(
            note.contains(&format!("SSL_CERT_FILE={}", ca.display())),
            "{note}"
        );
        let system = parse("");
        let note = render_tls_note(system.proxmox().expect("proxmox"));
        assert!(
            note.contains("system's CAs") && note.contains("ca_file"),
            "{note}"
        );
        let insecure = parse("insecure = true\n");
        let note = render_tls_note(insecure.proxmox().expect("proxmox"));
        assert!(note.contains("PROXMOX_VE_INSECURE=true"), "{note}");
    }
}
