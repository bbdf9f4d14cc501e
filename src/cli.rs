//! The command line: clap definitions and one function per subcommand, each a thin client of
//! the engine. Progress goes to stdout (to stderr with `--json`, where stdout holds only the
//! JSON result). Exit codes: 0 done, 1 an operation failed, 2 bad input or config.

use crate::config::{self, Config};
use crate::domain::spec::{DeployInput, parse_env_pair};
use crate::domain::{Catalog, Deployment};
use crate::engine::pipeline::{self, DeployError};
use crate::engine::{Engine, ssh};
use crate::protocol::{EngineEvent, LogLine, LogStream};
use clap::{Args, Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use tokio::sync::mpsc;

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
    /// Deploy a Git repository onto a new guest.
    Deploy(DeployArgs),
    /// Run a failed deployment's stages again (each stage is idempotent).
    Retry(IdArgs),
    /// List deployments.
    List(JsonArgs),
    /// Show one deployment: fields, status history.
    Show(IdArgs),
    /// Print a deployment's log.
    Logs(IdArgs),
    /// Destroy a deployment's guest (terraform destroy); the record stays as DELETED.
    Destroy(DestroyArgs),
    /// List the framework catalog.
    Frameworks(JsonArgs),
    /// Print proxdeck's SSH public key (generated on first use), to authorize it on hosts.
    SshKey,
    /// Configuration: write a commented template, show the path, check it.
    #[command(subcommand)]
    Config(ConfigCommand),
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
    /// Framework id (`proxdeck frameworks` lists them).
    #[arg(long)]
    pub framework: String,
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
    /// Print the resulting deployment as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
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
            let (tx, printer) = spawn_printer(args.json);
            let result = pipeline::deploy(&engine, input, tx).await;
            let _ = printer.await;
            finish(result, args.json)
        }
        Command::Retry(a) => {
            let engine = open_engine(&cli)?;
            let (tx, printer) = spawn_printer(a.json);
            let result = pipeline::retry(&engine, &a.id, tx).await;
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
            let result = pipeline::destroy(&engine, &d.id.0, tx).await;
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
        Command::Logs(a) => {
            let engine = open_engine(&cli)?;
            let key = a.id.clone();
            let d = engine.db.call(move |s| s.find(&key)).await?;
            let mut after = 0;
            let mut out = std::io::stdout().lock();
            loop {
                let id = d.id.clone();
                let page = engine.db.call(move |s| s.logs(&id, after, 5000)).await?;
                let Some((last, _)) = page.last() else { break };
                after = *last;
                for (_, l) in &page {
                    let line = if a.json {
                        serde_json::json!({"at": l.at, "stream": l.stream.as_str(), "stage": l.stage, "line": l.text}).to_string()
                    } else {
                        format_line(l)
                    };
                    if writeln!(out, "{line}").is_err() {
                        return Ok(()); // the reader went away (e.g. `| head`)
                    }
                }
            }
            Ok(())
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
    let env = a
        .env
        .iter()
        .map(|s| parse_env_pair(s).map_err(|m| CliError::usage(format!("env: {m}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DeployInput {
        repo: a.repo.clone(),
        git_ref: a.git_ref.clone(),
        framework: a.framework.clone(),
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
            match config.proxmox() {
                Ok(p) => println!(
                    "{}: ok (proxmox {} node {}{})",
                    path.display(),
                    p.endpoint,
                    p.node,
                    if p.insecure {
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
