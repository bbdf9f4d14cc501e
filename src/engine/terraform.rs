//! The terraform runner: typed commands (`init`, `plan`, `show`, `apply`, `output`, `destroy`,
//! `state list` / `state rm`) run in a deployment's workspace with `-input=false`, a CLI config
//! of our own per run (the shared plugin cache, an optional filesystem mirror), and
//! credentials only in the child's environment (`PROXMOX_VE_*`; a remote backend's settings in
//! `TF_CLI_ARGS_init`), never in argv or a file.
//!
//! `plan`, `apply` and `destroy` run with `-json`: each machine-readable message becomes its
//! human-readable log line (`@message`, diagnostics with their detail), while a [`Progress`]
//! counts resources ("2 of 3 resources") and the time each took. Error diagnostics become the
//! failure message (summary and detail). Lines that are not JSON (terraform's interrupt notice,
//! backend chatter) pass through unchanged, in order; none is dropped.
//!
//! Output is streamed through [`process`](super::process), which also owns timeouts and
//! cancellation (SIGINT to the process group, a grace period, then SIGKILL): terraform writes
//! its state and releases its lock on SIGINT, so a retry continues from where it stopped.
//! This module knows nothing about deployments or the store.

use super::process::{self, Output, ProcessError, ProcessSpec};
use crate::config::{BackendConfig, Config, ProxmoxConfig};
use crate::protocol::LogStream;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The saved plan inside a workspace: what `apply` carries out, exactly as summarised.
pub const PLAN_FILE: &str = "tfplan";
/// What proxdeck last saw in the state (`terraform state list`), for workspaces whose state
/// lives in a remote backend.
pub const STATE_MARKER: &str = ".proxdeck-state.json";
/// The per-run CLI config inside a workspace.
pub const CLI_CONFIG: &str = ".terraformrc.json";

/// The process groups of terraform runs in a workspace, while they run (see `process`).
pub const RUN_RECORD: &str = ".proxdeck-terraform.procs";
/// How long a run waits for a state lock another run holds (`-lock-timeout`).
const LOCK_WAIT: &str = "-lock-timeout=60s";

/// Commands that only read (`output`, `show`, `state`) get at most this long.
const QUICK_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, thiserror::Error)]
pub enum TerraformError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("terraform {command} failed (exit {code}){detail}")]
    Failed {
        command: &'static str,
        code: i32,
        /// Terraform's error diagnostics (summary and detail), with a leading ": ".
        detail: String,
    },
    #[error(
        "terraform {command} did not finish within {secs} s and was stopped; its state is saved, so a retry continues (raise timeouts.{key} if it needs longer)"
    )]
    TimedOut {
        command: &'static str,
        secs: u64,
        key: &'static str,
    },
    #[error(
        "terraform {command} was cancelled; it stopped cleanly (state saved, lock released), so a retry continues from there"
    )]
    Cancelled { command: &'static str },
    #[error(
        "the deployment's Terraform state is locked by {who} since {created} ({operation}, lock {id}): another terraform run holds it. Wait for it to end (`proxdeck jobs` lists proxdeck's own), then try again; if no run is left (its machine went away), release it with `terraform force-unlock {id}` in {workspace}"
    )]
    Locked {
        who: String,
        created: String,
        operation: String,
        id: String,
        workspace: String,
    },
    #[error("cannot prepare the terraform run: {0}")]
    Setup(String),
    #[error("terraform output is not what the template promised: {0}")]
    Outputs(String),
    #[error("cannot read terraform's plan: {0}")]
    Plan(String),
}

/// Terraform's "Error acquiring the state lock" (with its `Lock Info:` block), in proxdeck's
/// words: who holds it, since when, for what, and what to do.
pub fn lock_error(detail: &str, workspace: &std::path::Path) -> Option<TerraformError> {
    if !detail.contains("Error acquiring the state lock") {
        return None;
    }
    let field = |name: &str| {
        detail
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "unknown".to_string())
    };
    let operation = field("Operation");
    Some(TerraformError::Locked {
        who: field("Who"),
        created: field("Created"),
        operation: operation
            .strip_prefix("OperationType")
            .map(|o| format!("terraform {}", o.to_ascii_lowercase()))
            .unwrap_or(operation),
        id: field("ID"),
        workspace: workspace.display().to_string(),
    })
}

/// Per-command time limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub init: Duration,
    pub plan: Duration,
    pub apply: Duration,
    pub destroy: Duration,
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            init: config.timeouts.terraform_init,
            plan: config.timeouts.terraform_plan,
            apply: config.timeouts.terraform_apply,
            destroy: config.timeouts.terraform_destroy,
        }
    }
}

/// A terraform binary bound to one workspace.
pub struct Terraform {
    binary: PathBuf,
    workspace: PathBuf,
    cli_config: PathBuf,
    env: Vec<(String, String)>,
    limits: Limits,
}

/// What a template's outputs told us about the guest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestOutputs {
    pub vmid: Option<u32>,
    pub ipv4: Option<String>,
}

/// What one `plan`/`apply`/`destroy` run did, read from its `-json` messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Resources the run changes, in plan order, with how many completions finish each (a
    /// replacement is a delete and a create).
    planned: Vec<(String, u32)>,
    completed: HashMap<String, u32>,
    /// Each finished resource operation: address, action, seconds it took.
    pub finished: Vec<(String, String, u64)>,
    /// Resources whose operation failed.
    pub errored: Vec<String>,
    /// Terraform's own summary line ("Apply complete! Resources: 2 added, ...").
    pub summary: Option<String>,
    /// Error diagnostics: summary and detail.
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// One of terraform's diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub summary: String,
    pub detail: String,
    pub address: Option<String>,
}

impl Diagnostic {
    /// `summary: detail (address)` on one line, whitespace collapsed.
    pub fn one_line(&self) -> String {
        let detail = self.detail.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut s = self.summary.trim().to_string();
        if !detail.is_empty() {
            s.push_str(": ");
            s.push_str(&detail);
        }
        if let Some(a) = &self.address {
            s.push_str(&format!(" ({a})"));
        }
        s
    }
}

impl Progress {
    /// Resources this run changes.
    pub fn total(&self) -> usize {
        self.planned.len()
    }

    /// Resources whose every planned operation completed.
    pub fn done(&self) -> usize {
        self.planned
            .iter()
            .filter(|(a, n)| self.completed.get(a).copied().unwrap_or(0) >= *n)
            .count()
    }

    /// One line for the log: "3 of 3 resources done in 12 s (a 1 s, b 10 s, c 0 s)".
    pub fn describe(&self, command: &str, elapsed: Duration) -> String {
        let mut s = format!(
            "terraform {command}: {} of {} resources done in {} s",
            self.done(),
            self.total(),
            elapsed.as_secs()
        );
        if !self.finished.is_empty() {
            let parts: Vec<String> = self
                .finished
                .iter()
                .map(|(a, action, secs)| format!("{a} {action} {secs} s"))
                .collect();
            s.push_str(&format!(" ({})", parts.join(", ")));
        }
        if !self.errored.is_empty() {
            s.push_str(&format!("; failed: {}", self.errored.join(", ")));
        }
        s
    }

    /// The error diagnostics for a failure message: ": summary: detail; ...", or "".
    fn error_detail(&self) -> String {
        if self.errors.is_empty() {
            return String::new();
        }
        let mut text = self
            .errors
            .iter()
            .map(Diagnostic::one_line)
            .collect::<Vec<_>>()
            .join("; ");
        if text.chars().count() > 2000 {
            text = text.chars().take(2000).collect::<String>() + " ...";
        }
        format!(": {text}")
    }

    /// Turns one line of terraform's `-json` output into log lines (stream, text), updating
    /// the counts. A line that is not a JSON message is returned as it is.
    pub fn absorb(&mut self, stream: LogStream, line: &str) -> Vec<(LogStream, String)> {
        let msg: Value = match line.trim_start().starts_with('{') {
            true => match serde_json::from_str(line) {
                Ok(v @ Value::Object(_)) => v,
                _ => return vec![(stream, line.to_string())],
            },
            false => return vec![(stream, line.to_string())],
        };
        let text = msg
            .get("@message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let level = msg.get("@level").and_then(Value::as_str).unwrap_or("info");
        let out_stream = if level == "error" {
            LogStream::Stderr
        } else {
            LogStream::Stdout
        };
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or_default();
        let hook_addr = || {
            msg.pointer("/hook/resource/addr")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let lines = |t: &str, s: LogStream| -> Vec<(LogStream, String)> {
            t.lines().map(|l| (s, l.to_string())).collect()
        };
        match kind {
            "planned_change" => {
                let addr = msg
                    .pointer("/change/resource/addr")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let action = msg
                    .pointer("/change/action")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let completions = match action {
                    "create" | "update" | "delete" => 1,
                    "replace" => 2,
                    _ => 0,
                };
                if completions > 0 && !self.planned.iter().any(|(a, _)| a == addr) {
                    self.planned.push((addr.to_string(), completions));
                }
                lines(&text, out_stream)
            }
            "apply_complete" => {
                let addr = hook_addr().unwrap_or_default();
                let action = msg
                    .pointer("/hook/action")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let secs = msg
                    .pointer("/hook/elapsed_seconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                *self.completed.entry(addr.clone()).or_insert(0) += 1;
                self.finished.push((addr, action, secs));
                let suffix = if self.total() > 0 {
                    format!(" [{} of {} resources]", self.done(), self.total())
                } else {
                    String::new()
                };
                lines(&format!("{text}{suffix}"), out_stream)
            }
            "apply_errored" => {
                if let Some(a) = hook_addr() {
                    self.errored.push(a);
                }
                lines(&text, LogStream::Stderr)
            }
            "change_summary" => {
                let op = msg
                    .pointer("/changes/operation")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if op != "plan" {
                    self.summary = Some(text.clone());
                }
                lines(&text, out_stream)
            }
            "diagnostic" => {
                let d = msg.get("diagnostic").cloned().unwrap_or(Value::Null);
                let get = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default();
                let diag = Diagnostic {
                    summary: get("summary").to_string(),
                    detail: get("detail").to_string(),
                    address: d.get("address").and_then(Value::as_str).map(str::to_string),
                };
                let error = get("severity") == "error";
                let s = if error {
                    LogStream::Stderr
                } else {
                    LogStream::Stdout
                };
                let mut out = lines(&text, s);
                if let Some(a) = &diag.address {
                    out.push((s, format!("  with {a}")));
                }
                if let (Some(file), Some(line)) = (
                    d.pointer("/range/filename").and_then(Value::as_str),
                    d.pointer("/range/start/line").and_then(Value::as_u64),
                ) {
                    let code = d
                        .pointer("/snippet/code")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .trim();
                    out.push((s, format!("  on {file} line {line}: {code}")));
                }
                out.extend(diag.detail.lines().map(|l| (s, format!("  {l}"))));
                if error {
                    self.errors.push(diag);
                } else {
                    self.warnings.push(diag);
                }
                out
            }
            _ => lines(&text, out_stream),
        }
    }
}

/// Splits converted lines into batches of one stream each, in order.
fn batches(lines: Vec<(LogStream, String)>) -> Vec<Output> {
    let mut out: Vec<Output> = Vec::new();
    for (stream, text) in lines {
        match out.last_mut() {
            Some(b) if b.stream == stream => b.lines.push(text),
            _ => out.push(Output {
                stream,
                lines: vec![text],
            }),
        }
    }
    out
}

/// The providers a filesystem mirror holds (`HOSTNAME/NAMESPACE/TYPE` folders), as terraform
/// addresses them in `include` / `exclude`.
pub fn mirror_providers(mirror: &Path) -> Vec<String> {
    let dirs = |p: &Path| -> Vec<(String, PathBuf)> {
        let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| (e.file_name().to_string_lossy().to_string(), e.path()))
            .collect();
        v.sort();
        v
    };
    let mut out = Vec::new();
    for (host, hp) in dirs(mirror) {
        for (ns, np) in dirs(&hp) {
            for (ty, _) in dirs(&np) {
                out.push(format!("{host}/{ns}/{ty}"));
            }
        }
    }
    out
}

/// The CLI config for one run (JSON, so no path needs HCL quoting): the shared plugin cache,
/// no checkpoint calls, and with a mirror, providers it holds from there and others direct.
pub fn cli_config(plugin_cache: &Path, mirror: Option<&Path>) -> Value {
    let mut rc = serde_json::json!({
        "plugin_cache_dir": plugin_cache,
        // Lets a new workspace (no lock file yet) link providers from the cache instead of
        // downloading them again.
        "plugin_cache_may_break_dependency_lock_file": true,
        "disable_checkpoint": true,
    });
    if let Some(mirror) = mirror {
        let held = mirror_providers(mirror);
        let (fs, direct) = if held.is_empty() {
            (serde_json::json!({"path": mirror}), serde_json::json!({}))
        } else {
            (
                serde_json::json!({"path": mirror, "include": held}),
                serde_json::json!({"exclude": held}),
            )
        };
        rc["provider_installation"] =
            serde_json::json!([{"filesystem_mirror": [fs], "direct": [direct]}]);
    }
    rc
}

/// `TF_CLI_ARGS_init` for a backend: every setting as a quoted `-backend-config=KEY=VALUE`,
/// `{id}` replaced by the deployment's id, `env` settings read from `environment`. Terraform
/// reads this variable itself, so the values never appear in a process's argv.
pub fn backend_init_args(
    backend: &BackendConfig,
    id: &str,
    environment: &HashMap<String, String>,
) -> Result<String, TerraformError> {
    let mut args = Vec::new();
    let mut push = |k: &str, v: &str| -> Result<(), TerraformError> {
        let arg = format!("-backend-config={k}={v}");
        let quoted = shlex::try_quote(&arg).map_err(|_| {
            TerraformError::Setup(format!(
                "terraform.backend setting {k} holds a character that cannot be passed to terraform"
            ))
        })?;
        args.push(quoted.into_owned());
        Ok(())
    };
    for (k, v) in &backend.config {
        push(k, &v.replace("{id}", id))?;
    }
    for (k, var) in &backend.env {
        let v = environment
            .get(var)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                TerraformError::Setup(format!(
                    "terraform.backend.env.{k}: the environment variable {var} is not set; export it before running proxdeck"
                ))
            })?;
        push(k, v)?;
    }
    Ok(args.join(" "))
}

impl Terraform {
    /// Prepares runs in `workspace`: writes the CLI config (plugin cache, mirror) and collects
    /// the child environment. Credentials come from `proxmox`. Local state; see
    /// [`Terraform::with_backend`].
    pub fn new(
        config: &Config,
        proxmox: &ProxmoxConfig,
        workspace: &Path,
        plugin_cache: &Path,
    ) -> Result<Terraform, TerraformError> {
        std::fs::create_dir_all(plugin_cache).map_err(|e| {
            TerraformError::Setup(format!("plugin cache {}: {e}", plugin_cache.display()))
        })?;
        std::fs::create_dir_all(workspace).map_err(|e| {
            TerraformError::Setup(format!("workspace {}: {e}", workspace.display()))
        })?;
        let cli_config = workspace.join(CLI_CONFIG);
        let rc = self::cli_config(plugin_cache, config.terraform.mirror.as_deref());
        std::fs::write(&cli_config, rc.to_string())
            .map_err(|e| TerraformError::Setup(format!("{}: {e}", cli_config.display())))?;
        let mut env = vec![
            (
                "TF_CLI_CONFIG_FILE".to_string(),
                cli_config.display().to_string(),
            ),
            ("TF_IN_AUTOMATION".to_string(), "1".to_string()),
            ("TF_INPUT".to_string(), "0".to_string()),
            ("CHECKPOINT_DISABLE".to_string(), "1".to_string()),
            (
                "PROXMOX_VE_ENDPOINT".to_string(),
                proxmox.endpoint.to_string(),
            ),
            (
                "PROXMOX_VE_INSECURE".to_string(),
                proxmox.insecure.to_string(),
            ),
        ];
        env.extend(proxmox.provider_env());
        if let Some(ca) = &proxmox.ca_file {
            // The provider is written in Go, whose TLS stack trusts the CA bundle named here.
            env.push(("SSL_CERT_FILE".to_string(), ca.display().to_string()));
        }
        Ok(Terraform {
            binary: config.terraform.binary.clone(),
            workspace: workspace.to_path_buf(),
            cli_config,
            env,
            limits: Limits::from_config(config),
        })
    }

    /// Keeps the state in `backend` (settings for deployment `id`), given to `init` through
    /// `TF_CLI_ARGS_init`; `None` keeps local state.
    pub fn with_backend(
        mut self,
        backend: Option<&BackendConfig>,
        id: &str,
        environment: &HashMap<String, String>,
    ) -> Result<Terraform, TerraformError> {
        if let Some(b) = backend {
            let args = backend_init_args(b, id, environment)?;
            self.env.push(("TF_CLI_ARGS_init".to_string(), args));
        }
        Ok(self)
    }

    /// Replaces the per-command time limits.
    pub fn with_limits(mut self, limits: Limits) -> Terraform {
        self.limits = limits;
        self
    }

    pub fn cli_config(&self) -> &Path {
        &self.cli_config
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    fn spec(&self, args: &[&str], timeout: Duration) -> ProcessSpec {
        let mut spec = ProcessSpec::new(&self.binary, args);
        spec.cwd = Some(self.workspace.clone());
        spec.record = Some(self.workspace.join(RUN_RECORD));
        spec.env = self.env.clone();
        // Variables from the user's shell must not change what proxdeck deploys, nor mix
        // other credentials with the ones proxdeck passes.
        let ours: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        spec.env_remove = std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| {
                k.starts_with("TF_VAR_")
                    || k.starts_with("TF_CLI_ARGS")
                    || k.starts_with("TF_LOG")
                    || matches!(
                        k.as_str(),
                        "TF_WORKSPACE"
                            | "TF_DATA_DIR"
                            | "TF_PLUGIN_CACHE_DIR"
                            | "TF_REATTACH_PROVIDERS"
                            | "PROXMOX_VE_API_TOKEN"
                            | "PROXMOX_VE_USERNAME"
                            | "PROXMOX_VE_PASSWORD"
                            | "PROXMOX_VE_AUTH_TICKET"
                            | "PROXMOX_VE_CSRF_PREVENTION_TOKEN"
                            | "PROXMOX_VE_OTP"
                    )
            })
            .filter(|k| !ours.contains(&k.as_str()))
            .collect();
        spec.timeout = timeout;
        spec
    }

    fn stopped(command: &'static str, key: &'static str, e: ProcessError) -> TerraformError {
        match e {
            ProcessError::TimedOut { secs, .. } => TerraformError::TimedOut { command, secs, key },
            ProcessError::Cancelled { .. } => TerraformError::Cancelled { command },
            other => TerraformError::Process(other),
        }
    }

    /// Runs a command whose output is plain text (init), forwarding every line and keeping
    /// the error lines for the failure message.
    async fn run_text(
        &self,
        command: &'static str,
        key: &'static str,
        args: &[&str],
        timeout: Duration,
        out: mpsc::UnboundedSender<Output>,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), TerraformError> {
        self.stop_leftover(&out).await;
        let (tx, mut rx) = mpsc::unbounded_channel::<Output>();
        let forward = tokio::spawn(async move {
            let mut errors: Vec<String> = Vec::new();
            while let Some(o) = rx.recv().await {
                if o.stream == LogStream::Stderr {
                    errors.extend(o.lines.iter().filter(|l| !l.trim().is_empty()).cloned());
                    if errors.len() > 40 {
                        errors.drain(..errors.len() - 40);
                    }
                }
                let _ = out.send(o);
            }
            errors
        });
        let status = process::run(&self.spec(args, timeout), tx, cancel).await;
        let errors = forward.await.unwrap_or_default();
        let status = status.map_err(|e| Self::stopped(command, key, e))?;
        if status.success() {
            return Ok(());
        }
        Err(TerraformError::Failed {
            command,
            code: status.code().unwrap_or(-1),
            detail: summarize_errors(&errors),
        })
    }

    /// Runs a `-json` command: every message becomes its log line(s), in order, and the
    /// progress is summarised in the log at the end.
    async fn run_json(
        &self,
        command: &'static str,
        key: &'static str,
        args: &[&str],
        timeout: Duration,
        out: mpsc::UnboundedSender<Output>,
        cancel: watch::Receiver<bool>,
    ) -> Result<Progress, TerraformError> {
        self.stop_leftover(&out).await;
        let started = Instant::now();
        let (tx, mut rx) = mpsc::unbounded_channel::<Output>();
        let sink = out.clone();
        let forward = tokio::spawn(async move {
            let mut progress = Progress::default();
            while let Some(o) = rx.recv().await {
                let mut converted = Vec::with_capacity(o.lines.len());
                for line in &o.lines {
                    converted.extend(progress.absorb(o.stream, line));
                }
                for b in batches(converted) {
                    let _ = sink.send(b);
                }
            }
            progress
        });
        let status = process::run(&self.spec(args, timeout), tx, cancel).await;
        let progress = forward.await.unwrap_or_default();
        if command != "plan" && progress.total() > 0 {
            let _ = out.send(Output {
                stream: LogStream::Info,
                lines: vec![progress.describe(command, started.elapsed())],
            });
        }
        let status = status.map_err(|e| Self::stopped(command, key, e))?;
        if status.success() {
            return Ok(progress);
        }
        let detail = progress.error_detail();
        if let Some(locked) = lock_error(&detail, &self.workspace) {
            return Err(locked);
        }
        Err(TerraformError::Failed {
            command,
            code: status.code().unwrap_or(-1),
            detail,
        })
    }

    /// Stops a terraform run left in this workspace by a proxdeck that stopped (killed, its
    /// machine restarted): SIGINT, so it saves its state and releases its lock, a grace
    /// period, then SIGKILL. Says so in the log.
    async fn stop_leftover(&self, out: &mpsc::UnboundedSender<Output>) {
        let record = process::ProcessRecord {
            path: self.workspace.join(RUN_RECORD),
        };
        let live = record.live_groups();
        if live.is_empty() {
            return;
        }
        let _ = out.send(Output {
            stream: LogStream::Info,
            lines: vec![format!(
                "a terraform run left in this workspace still runs (process group {}): asking it to stop and save its state first",
                live.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(", ")
            )],
        });
        let _ = tokio::task::spawn_blocking(move || record.stop_leftovers(process::GRACE)).await;
    }

    /// Collects a read-only command's stdout (for JSON it prints on one line), failing with
    /// its stderr.
    async fn read(&self, command: &'static str, args: &[&str]) -> Result<String, TerraformError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Output>();
        let (_c, crx) = watch::channel(false);
        let timeout = self.limits.plan.min(QUICK_TIMEOUT);
        let status = process::run(&self.spec(args, timeout), tx, crx)
            .await
            .map_err(|e| Self::stopped(command, "terraform_plan_secs", e))?;
        let mut stdout = String::new();
        let mut stderr = Vec::new();
        while let Ok(o) = rx.try_recv() {
            match o.stream {
                LogStream::Stdout => {
                    for l in o.lines {
                        stdout.push_str(&l);
                        stdout.push('\n');
                    }
                }
                _ => stderr.extend(o.lines),
            }
        }
        if !status.success() {
            return Err(TerraformError::Failed {
                command,
                code: status.code().unwrap_or(-1),
                detail: summarize_errors(&stderr),
            });
        }
        Ok(stdout)
    }

    /// `terraform init`: backend and providers (plugin cache, mirror).
    pub async fn init(
        &self,
        out: mpsc::UnboundedSender<Output>,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), TerraformError> {
        self.run_text(
            "init",
            "terraform_init_secs",
            &["init", "-input=false", "-no-color"],
            self.limits.init,
            out,
            cancel,
        )
        .await
    }

    /// `terraform plan -out=tfplan`: what apply will do, saved for it.
    pub async fn plan(
        &self,
        out: mpsc::UnboundedSender<Output>,
        cancel: watch::Receiver<bool>,
    ) -> Result<Progress, TerraformError> {
        let out_arg = format!("-out={PLAN_FILE}");
        self.run_json(
            "plan",
            "terraform_plan_secs",
            &[
                "plan",
                "-input=false",
                "-no-color",
                "-json",
                LOCK_WAIT,
                &out_arg,
            ],
            self.limits.plan,
            out,
            cancel,
        )
        .await
    }

    /// `terraform show -json tfplan`, summarised.
    pub async fn show_plan(&self) -> Result<PlanSummary, TerraformError> {
        let text = self
            .read("show", &["show", "-json", "-no-color", PLAN_FILE])
            .await?;
        PlanSummary::parse(&text)
    }

    /// `terraform apply tfplan`: carries out the saved plan, then notes what the state holds.
    pub async fn apply(
        &self,
        out: mpsc::UnboundedSender<Output>,
        cancel: watch::Receiver<bool>,
    ) -> Result<Progress, TerraformError> {
        let result = self
            .run_json(
                "apply",
                "terraform_apply_secs",
                &[
                    "apply",
                    "-input=false",
                    "-no-color",
                    "-json",
                    LOCK_WAIT,
                    "-auto-approve",
                    PLAN_FILE,
                ],
                self.limits.apply,
                out,
                cancel,
            )
            .await;
        // A saved plan is spent once applied (or stale once it failed).
        let _ = std::fs::remove_file(self.workspace.join(PLAN_FILE));
        self.note_state().await;
        result
    }

    /// `terraform destroy`.
    pub async fn destroy(
        &self,
        out: mpsc::UnboundedSender<Output>,
        cancel: watch::Receiver<bool>,
    ) -> Result<Progress, TerraformError> {
        let result = self
            .run_json(
                "destroy",
                "terraform_destroy_secs",
                &[
                    "destroy",
                    "-input=false",
                    "-no-color",
                    "-json",
                    LOCK_WAIT,
                    "-auto-approve",
                ],
                self.limits.destroy,
                out,
                cancel,
            )
            .await;
        self.note_state().await;
        result
    }

    /// `terraform import ADDRESS ID`: puts an existing guest into the state (adoption of a
    /// guest a killed run created but never saved).
    pub async fn import(
        &self,
        address: &str,
        id: &str,
        out: mpsc::UnboundedSender<Output>,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), TerraformError> {
        let result = self
            .run_text(
                "import",
                "terraform_apply_secs",
                &["import", "-input=false", "-no-color", address, id],
                self.limits.apply,
                out,
                cancel,
            )
            .await;
        self.note_state().await;
        result
    }

    /// `terraform state list`: the resources the state holds (local or remote); none when
    /// there is no state yet.
    pub async fn state_list(&self) -> Result<Vec<String>, TerraformError> {
        let text = match self.read("state list", &["state", "list"]).await {
            Ok(text) => text,
            Err(TerraformError::Failed { detail, .. })
                if detail.contains("No state file was found") =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// `terraform state rm`: forgets resources whose objects are gone.
    pub async fn state_rm(&self, addresses: &[String]) -> Result<(), TerraformError> {
        if addresses.is_empty() {
            return Ok(());
        }
        let mut args = vec!["state", "rm"];
        args.extend(addresses.iter().map(String::as_str));
        self.read("state rm", &args).await?;
        self.note_state().await;
        Ok(())
    }

    /// Records what the state holds in [`STATE_MARKER`] (for [`has_state`] with a remote
    /// backend). Best effort: an unreadable state leaves the marker as it was.
    async fn note_state(&self) {
        if let Ok(resources) = self.state_list().await {
            let marker = serde_json::json!({ "resources": resources });
            let _ = std::fs::write(self.workspace.join(STATE_MARKER), marker.to_string());
        }
    }

    /// `terraform output -json`, parsed.
    pub async fn outputs(&self) -> Result<GuestOutputs, TerraformError> {
        let text = self
            .read("output", &["output", "-json", "-no-color"])
            .await?;
        parse_outputs(&text)
    }
}

/// Terraform's `Error: ...` lines and what follows them, shortened for a one-line message.
fn summarize_errors(lines: &[String]) -> String {
    let start = lines
        .iter()
        .position(|l| l.contains("Error:"))
        .unwrap_or(lines.len().saturating_sub(5));
    let text: Vec<&str> = lines[start..]
        .iter()
        .map(|l| l.trim_matches(|c: char| c == '│' || c == '╷' || c == '╵' || c.is_whitespace()))
        .filter(|l| !l.is_empty())
        .take(8)
        .collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", text.join(" "))
    }
}

/// Reads `vmid` and `ipv4` from `terraform output -json`; both may be absent or null.
pub fn parse_outputs(json: &str) -> Result<GuestOutputs, TerraformError> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| TerraformError::Outputs(format!("not JSON: {e}")))?;
    let value = |name: &str| {
        v.get(name)
            .and_then(|o| o.get("value"))
            .filter(|x| !x.is_null())
    };
    let vmid = match value("vmid") {
        None => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| TerraformError::Outputs(format!("vmid {n} is not a VM id")))?,
        ),
        Some(Value::String(s)) => Some(
            s.parse()
                .map_err(|_| TerraformError::Outputs(format!("vmid {s:?} is not a number")))?,
        ),
        Some(other) => return Err(TerraformError::Outputs(format!("vmid is {other}"))),
    };
    let ipv4 = match value("ipv4") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            let addr = s.split('/').next().unwrap_or(s);
            addr.parse::<std::net::Ipv4Addr>()
                .map_err(|_| TerraformError::Outputs(format!("ipv4 {s:?} is not an address")))?;
            Some(addr.to_string())
        }
        Some(other) => return Err(TerraformError::Outputs(format!("ipv4 is {other}"))),
    };
    Ok(GuestOutputs { vmid, ipv4 })
}

/// What a saved plan would do, for the user to review: the resources and the guest's shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanSummary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    /// Each resource the plan touches: address and action (`create`, `update`, `delete`,
    /// `replace`).
    pub resources: Vec<(String, String)>,
    /// The guest, from the plan's variables (the names proxdeck's templates use).
    pub guest: BTreeMap<String, Value>,
    /// The resource the `vmid` output reads (`proxmox_virtual_environment_container.app`,
    /// or a stand-in's `terraform_data.container`): the guest, for `terraform import`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_resource: Option<String>,
}

impl PlanSummary {
    /// Parses `terraform show -json PLAN`.
    pub fn parse(json: &str) -> Result<PlanSummary, TerraformError> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| TerraformError::Plan(format!("not JSON: {e}")))?;
        let mut s = PlanSummary::default();
        for rc in v
            .get("resource_changes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let address = rc
                .get("address")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let actions: Vec<&str> = rc
                .pointer("/change/actions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let action = match actions.as_slice() {
                ["create"] => {
                    s.add += 1;
                    "create"
                }
                ["update"] => {
                    s.change += 1;
                    "update"
                }
                ["delete"] => {
                    s.destroy += 1;
                    "delete"
                }
                ["delete", "create"] | ["create", "delete"] => {
                    s.add += 1;
                    s.destroy += 1;
                    "replace"
                }
                _ => continue,
            };
            s.resources.push((address, action.to_string()));
        }
        s.guest_resource = v
            .pointer("/configuration/root_module/outputs/vmid/expression/references")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|r| is_resource_address(r))
            .map(str::to_string);
        if let Some(vars) = v.get("variables").and_then(Value::as_object) {
            for (k, var) in vars {
                if GUEST_KEYS.contains(&k.as_str())
                    && let Some(value) = var.get("value").filter(|x| !x.is_null())
                {
                    s.guest.insert(k.clone(), value.clone());
                }
            }
        }
        Ok(s)
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The summary for the log and the terminal, one item per line.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "plan: {} to add, {} to change, {} to destroy",
            self.add, self.change, self.destroy
        )];
        for (address, action) in &self.resources {
            let mark = match action.as_str() {
                "create" => "+",
                "delete" => "-",
                "replace" => "-/+",
                _ => "~",
            };
            out.push(format!("  {mark} {address} ({action})"));
        }
        let g = |k: &str| -> Option<String> {
            self.guest.get(k).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let mut shape = Vec::new();
        if let Some(n) = g("node_name") {
            shape.push(format!("node {n}"));
        }
        if let Some(v) = g("vm_id") {
            shape.push(format!("vmid {v}"));
        }
        if let Some(c) = g("cores") {
            shape.push(format!("{c} cores"));
        }
        if let Some(m) = g("memory_mib") {
            shape.push(format!("{m} MiB memory"));
        }
        if let Some(d) = g("disk_gib") {
            let on = g("datastore_id")
                .map(|s| format!(" on {s}"))
                .unwrap_or_default();
            shape.push(format!("{d} GiB disk{on}"));
        }
        if let Some(b) = g("bridge") {
            let vlan = g("vlan_id")
                .map(|v| format!(" VLAN {v}"))
                .unwrap_or_default();
            shape.push(format!("bridge {b}{vlan}"));
        }
        if let Some(a) = g("ipv4_address") {
            shape.push(format!("address {a}"));
        }
        if let Some(t) = g("os_template") {
            shape.push(format!("template {t}"));
        }
        if let Some(t) = g("template_vmid") {
            let clone = match self.guest.get("full_clone") {
                Some(Value::Bool(false)) => "linked clone",
                _ => "full clone",
            };
            shape.push(format!("{clone} of {t}"));
        }
        if !shape.is_empty() {
            out.push(format!("guest: {}", shape.join(", ")));
        }
        out
    }
}

/// `TYPE.NAME` of a managed resource in the root module (not `var.`, `local.`, `data.`,
/// `module.`, nor an attribute path).
fn is_resource_address(r: &str) -> bool {
    let parts: Vec<&str> = r.split('.').collect();
    parts.len() == 2
        && !matches!(
            parts[0],
            "var" | "local" | "data" | "module" | "path" | "terraform" | "each" | "count" | "self"
        )
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// Plan variables shown in the summary.
const GUEST_KEYS: &[&str] = &[
    "node_name",
    "vm_id",
    "cores",
    "memory_mib",
    "disk_gib",
    "datastore_id",
    "bridge",
    "vlan_id",
    "ipv4_address",
    "os_template",
    "template_vmid",
    "full_clone",
];

/// True when the workspace's state holds at least one resource: the local
/// `terraform.tfstate`, else (remote state) what proxdeck last saw there.
pub fn has_state(workspace: &Path) -> bool {
    let resources = |file: &str| -> Option<bool> {
        let text = std::fs::read_to_string(workspace.join(file)).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        Some(
            v.get("resources")
                .and_then(Value::as_array)
                .is_some_and(|r| !r.is_empty()),
        )
    };
    resources("terraform.tfstate")
        .or_else(|| resources(STATE_MARKER))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_state_lock_is_told_in_proxdecks_words() {
        // terraform 1.11's diagnostic when another run holds the local state's lock.
        let detail = ": Error acquiring the state lock: Error message: resource temporarily unavailable\nLock Info:\n  ID:        f130a376-f7aa-f3e6-89c9-bd7e3a6b31a1\n  Path:      terraform.tfstate\n  Operation: OperationTypeApply\n  Who:       root@vm\n  Version:   1.11.4\n  Created:   2026-11-30 22:38:25.589482771 +0000 UTC\n  Info:      \n\n\nTerraform acquires a state lock to protect the state from being written\nby multiple users at the same time.";
        let e = lock_error(detail, std::path::Path::new("/data/workspaces/k3x9ta")).unwrap();
        let text = e.to_string();
        assert!(
            text.starts_with("the deployment's Terraform state is locked by root@vm since 2026-11-30 22:38:25.589482771 +0000 UTC (terraform apply, lock f130a376-f7aa-f3e6-89c9-bd7e3a6b31a1)"),
            "{text}"
        );
        assert!(text.contains("terraform force-unlock f130a376-f7aa-f3e6-89c9-bd7e3a6b31a1` in /data/workspaces/k3x9ta"), "{text}");
        assert!(!text.contains("Terraform acquires a state lock"), "{text}");
        assert!(lock_error(": Error: something else", std::path::Path::new("/w")).is_none());
    }

    #[test]
    fn outputs_are_parsed() {
        let o = parse_outputs(
            r#"{"vmid":{"sensitive":false,"type":"number","value":123},"ipv4":{"sensitive":false,"type":"string","value":"10.0.0.5"}}"#,
        )
        .unwrap();
        assert_eq!(
            o,
            GuestOutputs {
                vmid: Some(123),
                ipv4: Some("10.0.0.5".into())
            }
        );
        let o = parse_outputs(r#"{"ipv4":{"value":null},"vmid":{"value":"200"}}"#).unwrap();
        assert_eq!(
            o,
            GuestOutputs {
                vmid: Some(200),
                ipv4: None
            }
        );
        assert_eq!(parse_outputs("{}").unwrap(), GuestOutputs::default());
        assert!(parse_outputs(r#"{"ipv4":{"value":"not-an-ip"}}"#).is_err());
        assert!(parse_outputs(r#"{"vmid":{"value":-1}}"#).is_err());
        assert!(parse_outputs("garbage").is_err());
    }

    #[test]
    fn error_summary_keeps_the_diagnostic() {
        let lines: Vec<String> = [
            "",
            "╷",
            "│ Error: local-exec provisioner error",
            "│ ",
            "│   with terraform_data.ct,",
            "│ Error running command 'exit 1': exit status 1.",
            "╵",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = summarize_errors(&lines);
        assert!(
            s.starts_with(": Error: local-exec provisioner error"),
            "{s}"
        );
        assert!(s.contains("exit status 1"), "{s}");
        assert_eq!(summarize_errors(&[]), "");
    }

    fn feed(p: &mut Progress, lines: &[&str]) -> Vec<String> {
        lines
            .iter()
            .flat_map(|l| p.absorb(LogStream::Stdout, l))
            .map(|(_, t)| t)
            .collect()
    }

    // Messages as terraform 1.11 prints them (trimmed of fields proxdeck does not read).
    const PLANNED_A: &str = r#"{"@level":"info","@message":"terraform_data.a: Plan to create","change":{"resource":{"addr":"terraform_data.a"},"action":"create"},"type":"planned_change"}"#;
    const PLANNED_B: &str = r#"{"@level":"info","@message":"terraform_data.b: Plan to replace","change":{"resource":{"addr":"terraform_data.b"},"action":"replace"},"type":"planned_change"}"#;
    const DONE_A: &str = r#"{"@level":"info","@message":"terraform_data.a: Creation complete after 2s [id=x]","hook":{"resource":{"addr":"terraform_data.a"},"action":"create","elapsed_seconds":2},"type":"apply_complete"}"#;
    const GONE_B: &str = r#"{"@level":"info","@message":"terraform_data.b: Destruction complete after 0s","hook":{"resource":{"addr":"terraform_data.b"},"action":"delete","elapsed_seconds":0},"type":"apply_complete"}"#;
    const DONE_B: &str = r#"{"@level":"info","@message":"terraform_data.b: Creation complete after 5s [id=y]","hook":{"resource":{"addr":"terraform_data.b"},"action":"create","elapsed_seconds":5},"type":"apply_complete"}"#;

    #[test]
    fn progress_counts_resources_and_their_time() {
        let mut p = Progress::default();
        let out = feed(
            &mut p,
            &[
                PLANNED_A,
                PLANNED_B,
                "",
                "Interrupt received.",
                DONE_A,
                GONE_B,
                DONE_B,
            ],
        );
        assert_eq!(
            out,
            [
                "terraform_data.a: Plan to create",
                "terraform_data.b: Plan to replace",
                "",
                "Interrupt received.",
                "terraform_data.a: Creation complete after 2s [id=x] [1 of 2 resources]",
                "terraform_data.b: Destruction complete after 0s [1 of 2 resources]",
                "terraform_data.b: Creation complete after 5s [id=y] [2 of 2 resources]",
            ]
        );
        assert_eq!((p.done(), p.total()), (2, 2));
        let d = p.describe("apply", Duration::from_secs(7));
        assert!(
            d.starts_with("terraform apply: 2 of 2 resources done in 7 s"),
            "{d}"
        );
        assert!(d.contains("terraform_data.b create 5 s"), "{d}");
    }

    #[test]
    fn diagnostics_become_lines_and_the_failure_detail() {
        let mut p = Progress::default();
        let diag = r#"{"@level":"error","@message":"Error: local-exec provisioner error","diagnostic":{"severity":"error","summary":"local-exec provisioner error","detail":"Error running command 'exit 3': exit status 3. Output: hi\n","address":"terraform_data.b","range":{"filename":"main.tf","start":{"line":8}},"snippet":{"code":"  provisioner \"local-exec\" {"}},"type":"diagnostic"}"#;
        let out = p.absorb(LogStream::Stdout, diag);
        assert_eq!(
            out[0],
            (
                LogStream::Stderr,
                "Error: local-exec provisioner error".into()
            )
        );
        assert!(out.iter().any(|(_, t)| t == "  with terraform_data.b"));
        assert!(out.iter().any(|(_, t)| t.contains("main.tf line 8")));
        assert!(out.iter().any(|(_, t)| t.contains("exit status 3")));
        assert_eq!(
            p.error_detail(),
            ": local-exec provisioner error: Error running command 'exit 3': exit status 3. Output: hi (terraform_data.b)"
        );
        let warn = r#"{"@level":"warn","@message":"Warning: Deprecated","diagnostic":{"severity":"warning","summary":"Deprecated","detail":""},"type":"diagnostic"}"#;
        p.absorb(LogStream::Stdout, warn);
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(p.errors.len(), 1);
        // Not JSON, or JSON that is not a message: passed through as it came.
        assert_eq!(
            p.absorb(LogStream::Stderr, "{broken"),
            [(LogStream::Stderr, "{broken".to_string())]
        );
        assert_eq!(
            p.absorb(LogStream::Stdout, "[1]"),
            [(LogStream::Stdout, "[1]".to_string())]
        );
    }

    #[test]
    fn batches_keep_order_across_streams() {
        let b = batches(vec![
            (LogStream::Stdout, "a".into()),
            (LogStream::Stdout, "b".into()),
            (LogStream::Stderr, "c".into()),
            (LogStream::Stdout, "d".into()),
        ]);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].lines, ["a", "b"]);
        assert_eq!(b[1].stream, LogStream::Stderr);
        assert_eq!(b[2].lines, ["d"]);
    }

    #[test]
    fn plan_summary_shows_resources_and_the_guest() {
        let json = r#"{"format_version":"1.2","variables":{"node_name":{"value":"pve1"},"vm_id":{"value":10042},"cores":{"value":2},"memory_mib":{"value":2048},"disk_gib":{"value":12},"datastore_id":{"value":"local-lvm"},"bridge":{"value":"vmbr0"},"vlan_id":{"value":null},"ipv4_address":{"value":"dhcp"},"ssh_public_key":{"value":"ssh-ed25519 AAA"}},
          "resource_changes":[
            {"address":"proxmox_virtual_environment_container.app","change":{"actions":["create"]}},
            {"address":"terraform_data.x","change":{"actions":["no-op"]}},
            {"address":"terraform_data.y","change":{"actions":["delete","create"]}}]}"#;
        let s = PlanSummary::parse(json).unwrap();
        assert_eq!((s.add, s.change, s.destroy), (2, 0, 1));
        let lines = s.lines();
        assert_eq!(lines[0], "plan: 2 to add, 0 to change, 1 to destroy");
        assert_eq!(
            lines[1],
            "  + proxmox_virtual_environment_container.app (create)"
        );
        assert_eq!(lines[2], "  -/+ terraform_data.y (replace)");
        assert_eq!(
            lines[3],
            "guest: node pve1, vmid 10042, 2 cores, 2048 MiB memory, 12 GiB disk on local-lvm, bridge vmbr0, address dhcp"
        );
        // The key is not a guest property: never in the summary.
        assert!(!s.guest.contains_key("ssh_public_key"));
        assert!(PlanSummary::parse("nope").is_err());
        assert_eq!(s.guest_resource, None);
    }

    #[test]
    fn the_guest_resource_is_what_the_vmid_output_reads() {
        for (refs, want) in [
            (
                r#"["proxmox_virtual_environment_container.app.vm_id","proxmox_virtual_environment_container.app"]"#,
                Some("proxmox_virtual_environment_container.app"),
            ),
            (
                r#"["terraform_data.container.output.vmid","terraform_data.container.output","terraform_data.container"]"#,
                Some("terraform_data.container"),
            ),
            (r#"["var.vm_id"]"#, None),
            (r#"["local.vmid"]"#, None),
        ] {
            let json = format!(
                r#"{{"configuration":{{"root_module":{{"outputs":{{"vmid":{{"expression":{{"references":{refs}}}}}}}}}}}}}"#
            );
            let s = PlanSummary::parse(&json).unwrap();
            assert_eq!(s.guest_resource.as_deref(), want, "{refs}");
        }
    }

    #[test]
    fn cli_config_with_a_mirror_takes_its_providers_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path().join("mirror");
        std::fs::create_dir_all(mirror.join("registry.terraform.io/bpg/proxmox/0.111.1")).unwrap();
        let rc = cli_config(Path::new("/cache"), Some(&mirror));
        assert_eq!(rc["plugin_cache_dir"], "/cache");
        let pi = &rc["provider_installation"][0];
        assert_eq!(
            pi["filesystem_mirror"][0]["include"][0],
            "registry.terraform.io/bpg/proxmox"
        );
        assert_eq!(
            pi["direct"][0]["exclude"][0],
            "registry.terraform.io/bpg/proxmox"
        );
        let plain = cli_config(Path::new("/cache"), None);
        assert!(plain.get("provider_installation").is_none());
    }

    #[test]
    fn backend_settings_are_quoted_and_read_from_the_environment() {
        let b = BackendConfig {
            kind: "pg".into(),
            config: [("schema_name".to_string(), "pd {id}".to_string())].into(),
            env: [("conn_str".to_string(), "PD_PG".to_string())].into(),
        };
        let env: HashMap<String, String> =
            [("PD_PG".to_string(), "postgres://u:p'w@db/x".to_string())].into();
        let args = backend_init_args(&b, "abc234", &env).unwrap();
        let words = shlex::split(&args).unwrap();
        assert_eq!(
            words,
            [
                "-backend-config=schema_name=pd abc234",
                "-backend-config=conn_str=postgres://u:p'w@db/x"
            ]
        );
        let err = backend_init_args(&b, "abc234", &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("PD_PG is not set"), "{err}");
    }

    #[test]
    fn state_is_read_locally_or_from_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_state(dir.path()));
        std::fs::write(dir.path().join(STATE_MARKER), r#"{"resources":["a.b"]}"#).unwrap();
        assert!(has_state(dir.path()));
        std::fs::write(dir.path().join("terraform.tfstate"), r#"{"resources":[]}"#).unwrap();
        assert!(!has_state(dir.path()));
    }
}
