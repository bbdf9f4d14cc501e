//! The command line: clap definitions and one function per subcommand, each a thin client of
//! the engine. Progress goes to stdout (to stderr with `--json`, where stdout holds only the
//! JSON result). Exit codes: 0 done, 1 an operation failed, 2 bad input or config.

use crate::config::{self, Config};
use crate::domain::spec::{DeployInput, parse_env_file, parse_env_pair};
use crate::domain::{Catalog, Deployment};
use crate::engine::pipeline::{self, DeployError};
use crate::engine::{Engine, ssh};
use crate::protocol::{EngineEvent, LogLine, LogStream};
use clap::{Args, Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use tokio::sync::mpsc;

mod cluster;
mod logs;

#[derive(Debug, Parser)]
#[command(
    name = "proxdeck",
    version,
    about = "A private Platform-as-a-Service for Proxmox VE, in the terminal.",
    long_about = "A private Platform-as-a-Service for Proxmox VE, in the terminal.\n\n\
        Without a command, proxdeck opens the dashboard (TUI)."
)]
pub struct Cli {
    /// Config file (default: config.toml in the XDG config dir).
    #[arg(long, global = true, env = "PROXDECK_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Data dir: database, Terraform workspaces, keys, audit log (default: the XDG data dir).
    #[arg(long, global = true, env = "PROXDECK_DATA_DIR", value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy a Git repository onto a new guest (`--plan`: show what would be created, stop).
    Deploy(DeployArgs),
    /// Write the Terraform workspace a deploy with the same flags would use (main.tf,
    /// terraform.tfvars.json; no credentials) into a folder, to read, keep or run by hand.
    Render(RenderArgs),
    /// Run a failed deployment's stages again (each stage is idempotent).
    Retry(IdArgs),
    /// List deployments.
    List(JsonArgs),
    /// Show one deployment: fields, status history.
    Show(IdArgs),
    /// Print a deployment's log (`--app`: the app's own log, read over SSH).
    Logs(LogsArgs),
    /// Destroy a deployment's guest (terraform destroy); the record stays as DELETED.
    Destroy(DestroyArgs),
    /// List the framework catalog.
    Frameworks(JsonArgs),
    /// Print proxdeck's SSH public key (generated on first use), to authorize it on hosts.
    SshKey,
    /// Fetch, rebuild and restart a deployment on the same guest (the commit before is kept).
    Redeploy(RedeployArgs),
    /// Return a deployment to the commit deployed before the current one.
    Rollback(IdArgs),
    /// Configuration: write a commented template, show the path, check it.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Start a deployment's guest through the Proxmox API (waits for the task).
    Start(IdArgs),
    /// Shut a deployment's guest down cleanly (forced off after 60 s).
    Stop(IdArgs),
    /// Reboot a deployment's guest (starts it when it is stopped).
    Restart(IdArgs),
    /// Every VM and container of the cluster: node, status, CPU, memory, disk, uptime, and
    /// whether proxdeck manages it.
    Resources(JsonArgs),
    /// Import the cluster's guests proxdeck does not know, update known ones, mark gone ones.
    Sync(JsonArgs),
    /// Remove an imported entry (or one whose guest is gone) from proxdeck; the guest stays.
    Forget(IdArgs),
    /// Check the config, Proxmox (TLS, credentials, privileges, node, storage, bridge,
    /// template), terraform, git and the data dir.
    Doctor(JsonArgs),
    /// Statistics: totals, success rate, deployments per day, time per stage, per framework
    /// (guests imported by sync are not deployments and are not counted).
    Stats(JsonArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write a commented config template (mode 0600).
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the config file's path.
    Path,
    /// Load and check the configuration.
    Check,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// Deployment id or name.
    pub id: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Deployment id or name.
    #[arg(required_unless_present = "prune")]
    pub id: Option<String>,
    /// The app's own log (its service's journal, or the supervisor's log file), over SSH.
    #[arg(long)]
    pub app: bool,
    /// Keep printing new lines until Ctrl-C (the deployment log: until it settles).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print only the last N lines (default: the whole log; with --app: 200).
    #[arg(long, short = 'n', value_name = "N")]
    pub lines: Option<u32>,
    /// Only lines written since WHEN: a duration back from now (90s, 10m, 2h, 3d, 1w) or a
    /// time (2026-11-30T14:00:00Z, 2026-11-30 14:00, 2026-11-30; local time unless it says).
    #[arg(long, value_name = "WHEN", value_parser = logs::parse_since, conflicts_with = "app")]
    pub since: Option<i64>,
    /// Remove the logs of deployments deleted more than `[logs] keep_deleted_days` ago, fold
    /// the rest into compact batches, and give the freed space back to the file system.
    #[arg(long, conflicts_with_all = ["id", "app", "follow", "lines", "since"])]
    pub prune: bool,
    /// Print JSON lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RedeployArgs {
    /// Deployment id or name.
    pub id: String,
    /// Deploy this branch, tag or commit from now on (default: the deployment's ref).
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Print the resulting deployment as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Deployment id or name.
    pub id: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Git repository: https://, ssh://, git://, file:// URL, user@host:path, or owner/repo (GitHub).
    #[arg(long)]
    pub repo: String,
    /// Branch, tag or commit (default: the repository's default branch).
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Framework id (`proxdeck frameworks` lists them); default: detected from the
    /// repository's files.
    #[arg(long)]
    pub framework: Option<String>,
    /// Guest type: lxc or vm.
    #[arg(long = "type", default_value = "lxc", value_name = "TYPE")]
    pub guest_type: String,
    /// Name (a DNS label; default: from the repository name).
    #[arg(long)]
    pub name: Option<String>,
    /// CPU cores.
    #[arg(long)]
    pub cores: Option<u32>,
    /// Memory in MiB.
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u32>,
    /// Disk in GiB.
    #[arg(long, value_name = "GIB")]
    pub disk: Option<u32>,
    /// The app's port (default: the framework's).
    #[arg(long)]
    pub port: Option<u32>,
    /// Proxmox node (default: proxmox.node from the config).
    #[arg(long)]
    pub node: Option<String>,
    /// Environment variable for the app, KEY=VALUE (repeatable). Values are secrets: never
    /// stored in the database, masked in logs.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// A file of KEY=VALUE lines (`export`, quotes and # comments allowed); --env wins over it.
    #[arg(long = "env-file", value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// Deploy onto an existing host or guest (ADDRESS[:SSH_PORT]) instead of creating one:
    /// no Terraform; destroy removes the app and leaves the host.
    #[arg(long, value_name = "ADDRESS[:PORT]")]
    pub host: Option<String>,
    /// SSH user (default: guest.ssh_user); a user other than root needs passwordless sudo.
    #[arg(long = "ssh-user", value_name = "USER")]
    pub ssh_user: Option<String>,
    /// Your own SSH private key instead of proxdeck's (`proxdeck ssh-key`).
    #[arg(long = "ssh-key", value_name = "PATH")]
    pub ssh_key: Option<PathBuf>,
    /// Replace the framework's install command.
    #[arg(long, value_name = "CMD")]
    pub install: Option<String>,
    /// Replace the framework's build command ("" skips the build).
    #[arg(long, value_name = "CMD")]
    pub build: Option<String>,
    /// Replace the framework's start command (runs in the foreground; $PORT is the port).
    #[arg(long, value_name = "CMD")]
    pub start: Option<String>,
    /// The health check's HTTP path (default: the framework's).
    #[arg(long = "health-path", value_name = "PATH")]
    pub health_path: Option<String>,
    /// The HTTP status the health check expects (default: any 2xx or 3xx).
    #[arg(long = "health-status", value_name = "CODE")]
    pub health_status: Option<u32>,
    /// The container's OS template (a volume id, e.g. local:vztmpl/debian-12-...tar.zst)
    /// instead of guest.os_template.
    #[arg(long = "os-template", value_name = "VOLID")]
    pub os_template: Option<String>,
    /// Show what would be created (Terraform's plan: resources, CPU, memory, disk, node,
    /// bridge) and stop: nothing is created, and no deployment is recorded.
    #[arg(long)]
    pub plan: bool,
    /// Print the resulting deployment as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub deploy: DeployArgs,
    /// The folder to write main.tf and terraform.tfvars.json into (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

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

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::failed(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Prints engine events as they come: log lines (stderr lines marked), nothing else.
fn spawn_printer(
    to_stderr: bool,
) -> (
    mpsc::UnboundedSender<EngineEvent>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<EngineEvent>();
    let handle = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let EngineEvent::Log { lines, .. } = ev {
                let mut text = String::new();
                for l in &lines {
                    text.push_str(&format_line(l));
                    text.push('\n');
                }
                if to_stderr {
                    let _ = std::io::stderr().write_all(text.as_bytes());
                } else {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                }
            }
        }
    });
    (tx, handle)
}

pub fn format_line(l: &LogLine) -> String {
    let time = chrono::DateTime::from_timestamp_millis(l.at)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    let stage = l.stage.map(|s| s.as_str()).unwrap_or("-");
    let mark = match l.stream {
        LogStream::Stdout => " ",
        LogStream::Stderr => "!",
        LogStream::Info => "*",
    };
    format!("{time} {stage:<15} {mark} {}", l.text)
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let Some(command) = &cli.command else {
        return Err(CliError::usage("no command"));
    };
    match command {
        Command::Frameworks(a) => frameworks(a.json),
        Command::Config(c) => config_command(&cli, c),
        Command::Deploy(args) => {
            // Bad input is reported before the config is even read.
            let input = deploy_input(args)?;
            input
                .validate(Catalog::builtin())
                .map_err(|e| CliError::usage(e.to_string()))?;
            let engine = open_engine(&cli)?;
            let options = pipeline::DeployOptions {
                os_template: args.os_template.clone(),
            };
            let (tx, printer) = spawn_printer(args.json);
            let cancel = cancel_on_ctrl_c();
            if args.plan {
                let result = pipeline::plan(&engine, input, options, tx).await;
                cancel.abort();
                let _ = printer.await;
                return finish_plan(result, args.json);
            }
            let result = pipeline::deploy_with(&engine, input, options, tx).await;
            cancel.abort();
            let _ = printer.await;
            finish(result, args.json)
        }
        Command::Render(args) => {
            if args.deploy.plan {
                return Err(CliError::usage(
                    "render writes the workspace; --plan belongs to deploy",
                ));
            }
            let input = deploy_input(&args.deploy)?;
            input
                .validate(Catalog::builtin())
                .map_err(|e| CliError::usage(e.to_string()))?;
            let engine = open_engine(&cli)?;
            let options = pipeline::DeployOptions {
                os_template: args.deploy.os_template.clone(),
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
                Ok(())
            }
        }
        Command::Retry(a) => {
            let engine = open_engine(&cli)?;
            let (tx, printer) = spawn_printer(a.json);
            let cancel = cancel_on_ctrl_c();
            let result = pipeline::retry(&engine, &a.id, tx).await;
            cancel.abort();
            let _ = printer.await;
            finish(result, a.json)
        }
        Command::Destroy(a) => {
            let engine = open_engine(&cli)?;
            let key = a.id.clone();
            let d = engine.db.call(move |s| s.find(&key)).await?;
            if !a.yes {
                confirm_destroy(&d)?;
            }
            let (tx, printer) = spawn_printer(a.json);
            let cancel = cancel_on_ctrl_c();
            let result = pipeline::destroy(&engine, &d.id.0, tx).await;
            cancel.abort();
            let _ = printer.await;
            finish(result, a.json)
        }
        Command::List(a) => {
            let engine = open_engine(&cli)?;
            let list = engine.db.call(|s| s.list()).await?;
            if a.json {
                print_json(&list)
            } else {
                print_table(&list);
                Ok(())
            }
        }
        Command::Show(a) => {
            let engine = open_engine(&cli)?;
            let key = a.id.clone();
            let (d, history) = engine
                .db
                .call(move |s| {
                    let d = s.find(&key)?;
                    let h = s.history(&d.id)?;
                    Ok((d, h))
                })
                .await?;
            if a.json {
                let mut v =
                    serde_json::to_value(&d).map_err(|e| CliError::failed(e.to_string()))?;
                v["history"] = serde_json::to_value(&history).unwrap_or_default();
                print_json(&v)
            } else {
                print_details(&d, &history);
                Ok(())
            }
        }
        Command::Logs(a) if a.prune => {
            let engine = open_engine(&cli)?;
            logs::prune(&engine, a.json).await
        }
        Command::Logs(a) => {
            let engine = open_engine(&cli)?;
            let id = a.id.clone().unwrap_or_default();
            if a.app {
                app_logs(&engine, a, &id).await
            } else {
                logs::deployment_logs(&engine, a, &id).await
            }
        }
        Command::Redeploy(a) => {
            let engine = open_engine(&cli)?;
            let (tx, printer) = spawn_printer(a.json);
            let result = pipeline::redeploy(&engine, &a.id, a.git_ref.clone(), tx).await;
            let _ = printer.await;
            finish(result, a.json)
        }
        Command::Rollback(a) => {
            let engine = open_engine(&cli)?;
            let (tx, printer) = spawn_printer(a.json);
            let result = pipeline::rollback(&engine, &a.id, tx).await;
            let _ = printer.await;
            finish(result, a.json)
        }
        Command::Start(a) => {
            cluster::power_command(&cli, &a.id, crate::engine::power::PowerOp::Start, a.json).await
        }
        Command::Stop(a) => {
            cluster::power_command(&cli, &a.id, crate::engine::power::PowerOp::Stop, a.json).await
        }
        Command::Restart(a) => {
            cluster::power_command(&cli, &a.id, crate::engine::power::PowerOp::Restart, a.json)
                .await
        }
        Command::Resources(a) => cluster::resources(&cli, a.json).await,
        Command::Sync(a) => cluster::sync_command(&cli, a.json).await,
        Command::Forget(a) => cluster::forget(&cli, &a.id, a.json).await,
        Command::Doctor(a) => cluster::doctor(&cli, a.json).await,
        Command::Stats(a) => stats_command(&cli, a.json).await,
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

/// `logs ID --app [-f]`: the app's own log over SSH; with -f until Ctrl-C.
async fn app_logs(engine: &Engine, a: &LogsArgs, id: &str) -> Result<(), CliError> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    let signals = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.store(true, Ordering::Relaxed);
        }
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<crate::engine::process::Output>();
    let json = a.json;
    let printer = tokio::spawn(async move {
        while let Some(o) = rx.recv().await {
            let mut text = String::new();
            for l in &o.lines {
                if json {
                    text.push_str(
                        &serde_json::json!({"stream": o.stream.as_str(), "line": l}).to_string(),
                    );
                } else {
                    text.push_str(l);
                }
                text.push('\n');
            }
            let written = if o.stream == LogStream::Stderr && !json {
                std::io::stderr().write_all(text.as_bytes())
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|_| out.flush())
            };
            if written.is_err() {
                break; // the reader went away (e.g. `| head`)
            }
        }
    });
    let result =
        crate::engine::applogs::app_logs(engine, id, a.lines.unwrap_or(200), a.follow, stop, tx)
            .await;
    let _ = printer.await;
    signals.abort();
    result.map_err(|e| match e {
        crate::engine::applogs::AppLogsError::Store(s) => s.into(),
        other => CliError::failed(other.to_string()),
    })
}

fn open_engine(cli: &Cli) -> Result<Engine, CliError> {
    let config = load_config(cli)?;
    let engine =
        Engine::open(config, &data_dir(cli)).map_err(|e| CliError::failed(e.to_string()))?;
    for d in &engine.recovered {
        eprintln!(
            "notice: {} ({}) was interrupted and is now FAILED: `proxdeck retry {}` resumes it, `proxdeck destroy {}` removes it",
            d.name, d.id, d.id, d.id
        );
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

/// Ctrl-C while a deployment runs: the first asks the stages to stop gracefully (terraform
/// gets SIGINT, writes its state and releases its lock, so `proxdeck retry` continues); a
/// second one quits at once.
fn cancel_on_ctrl_c() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!(
            "cancelling: terraform is asked to stop and save its state; Ctrl-C again quits at once"
        );
        pipeline::request_cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    })
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

fn finish(result: Result<Deployment, DeployError>, json: bool) -> Result<(), CliError> {
    match result {
        Ok(d) => {
            if json {
                print_json(&d)
            } else {
                println!(
                    "{} {} ({}){}",
                    d.status,
                    d.name,
                    d.id,
                    d.url
                        .as_deref()
                        .map(|u| format!(" {u}"))
                        .unwrap_or_default()
                );
                Ok(())
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn confirm_destroy(d: &Deployment) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "destroying {} ({}) needs confirmation: run it on a terminal, or pass --yes",
            d.name, d.id
        )));
    }
    eprint!(
        "Destroy {} ({}){}? This deletes the guest. Type the name to confirm: ",
        d.name,
        d.id,
        d.vmid.map(|v| format!(", vmid {v}")).unwrap_or_default()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliError::failed(e.to_string()))?;
    if answer.trim() == d.name {
        Ok(())
    } else {
        Err(CliError::failed("not confirmed; nothing was destroyed"))
    }
}

fn frameworks(json: bool) -> Result<(), CliError> {
    let catalog = Catalog::builtin();
    if json {
        return print_json(&catalog.frameworks);
    }
    println!(
        "{:<10} {:<10} {:<9} {:>5}  START",
        "ID", "NAME", "LANGUAGE", "PORT"
    );
    for f in &catalog.frameworks {
        println!(
            "{:<10} {:<10} {:<9} {:>5}  {}",
            f.id, f.name, f.language, f.default_port, f.start
        );
    }
    Ok(())
}

fn print_table(list: &[Deployment]) {
    println!(
        "{:<7} {:<20} {:<9} {:<4} {:<8} {:<6} {:<15} {:<13} STAGE",
        "ID", "NAME", "FRAMEWORK", "TYPE", "NODE", "VMID", "IP", "STATUS"
    );
    for d in list {
        println!(
            "{:<7} {:<20} {:<9} {:<4} {:<8} {:<6} {:<15} {:<13} {}",
            d.id.0,
            d.name,
            d.framework,
            d.guest_type,
            d.node.as_deref().unwrap_or("-"),
            d.vmid.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            d.ip.as_deref().unwrap_or("-"),
            d.status,
            d.stage.map(|s| s.as_str()).unwrap_or("-"),
        );
    }
}

fn print_details(d: &Deployment, history: &[crate::store::StatusChange]) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("id         {}", d.id);
    println!("name       {}", d.name);
    println!("status     {}", d.status);
    println!("stage      {}", d.stage.map(|s| s.as_str()).unwrap_or("-"));
    println!("url        {}", opt(&d.url));
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
        println!("previous   {p} (`proxdeck rollback` returns to it)");
    }
    if d.origin == crate::domain::Origin::Host {
        println!(
            "host       {} (an existing host: destroy removes the app, not the host)",
            opt(&d.ip)
        );
    }
    if d.ssh_user.is_some() || d.ssh_port.is_some() || d.overrides.ssh_key.is_some() {
        println!(
            "ssh        user {}, port {}, key {}",
            d.ssh_user.as_deref().unwrap_or("(config)"),
            d.ssh_port
                .map(|p| p.to_string())
                .unwrap_or_else(|| "(config)".into()),
            d.overrides.ssh_key.as_deref().unwrap_or("proxdeck's")
        );
    }
    for (what, value) in [
        ("install", &d.overrides.install),
        ("build", &d.overrides.build),
        ("start", &d.overrides.start),
        ("health", &d.overrides.health_path),
    ] {
        if let Some(v) = value {
            println!("{what:<10} {v}");
        }
    }
    if let Some(s) = d.overrides.health_status {
        println!("expects    HTTP {s}");
    }
    println!("framework  {}", d.framework);
    println!("type       {}", d.guest_type);
    println!("node       {}", opt(&d.node));
    println!(
        "vmid       {}",
        d.vmid.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
    );
    println!("ip         {}", opt(&d.ip));
    println!(
        "resources  {} cores, {} MiB, {} GiB, port {}",
        d.cores, d.memory_mib, d.disk_gib, d.port
    );
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

fn config_command(cli: &Cli, c: &ConfigCommand) -> Result<(), CliError> {
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
async fn stats_command(cli: &Cli, json: bool) -> Result<(), CliError> {
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
