//! The stages of a deployment, from a validated request to a RUNNING app, and its destruction.
//!
//! deploy: validate → record PENDING → preflight (the repository and ref exist) → render the
//! Terraform workspace → `terraform init` + `apply` → the guest's address (static pool, else
//! terraform's output) → SSH (host key pinned) → provisioning script → HTTP health check →
//! RUNNING. Each stage is idempotent, so `retry` runs them again from the stored record.
//! A failure moves the deployment to FAILED with the stage, the cause and the next step.
//!
//! destroy: DESTROYING → `terraform destroy` (when there is state) → address and host key
//! released → DELETED. The record stays.

use super::Engine;
use super::process::{self, ProcessSpec};
use super::provision::{self, EnvVar, ScriptVars};
use super::report::{Redactor, Reporter};
use super::ssh::{self, HostKeyPolicy, PresentedKey, SshError, Target};
use super::terraform::{self, Terraform};
use super::workspace::{self, LxcVars};
use crate::config::ConfigError;
use crate::domain::spec::{DeployInput, SpecError, suggest_name};
use crate::domain::{Catalog, Deployment, DeploymentId, GuestType, Stage, Status};
use crate::protocol::{EngineEvent, LogStream};
use crate::store::{Db, Facts, HostKey, StoreError, now_ms};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Invalid(#[from] SpecError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{id}: stage {stage} failed: {cause}\nnext: {next}")]
    Stage {
        id: DeploymentId,
        stage: Stage,
        cause: String,
        next: String,
    },
    #[error("{0}")]
    Refused(String),
}

/// A stage's failure before it is recorded.
struct Failure {
    stage: Stage,
    cause: String,
}

type StageResult<T> = Result<T, Failure>;

fn fail(stage: Stage) -> impl Fn(&dyn std::fmt::Display) -> Failure {
    move |e| Failure {
        stage,
        cause: e.to_string(),
    }
}

/// What the user can do about a failure in `stage`.
pub fn next_step(stage: Stage, id: &DeploymentId) -> String {
    match stage {
        Stage::Validate | Stage::Preflight => format!(
            "check the repository URL and ref (git ls-remote URL REF works from here?), then `proxdeck retry {id}` or `proxdeck destroy {id}`"
        ),
        Stage::Render => format!(
            "check terraform.templates_dir and network.pool in the config, then `proxdeck retry {id}`"
        ),
        Stage::TerraformInit => format!(
            "terraform could not prepare the provider: check network access to the registry or configure a provider mirror, then `proxdeck retry {id}`"
        ),
        Stage::TerraformApply => format!(
            "read terraform's output (`proxdeck logs {id}`), fix the cause on Proxmox or in the config, then `proxdeck retry {id}` or `proxdeck destroy {id}`"
        ),
        Stage::Address => format!(
            "the guest has no address proxdeck can use: set network.pool for static addresses or check DHCP on the bridge, then `proxdeck retry {id}`"
        ),
        Stage::Ssh => format!(
            "check that the guest is up, reachable on its SSH port and authorizes proxdeck's key (`proxdeck ssh-key`), then `proxdeck retry {id}`"
        ),
        Stage::Provision => format!(
            "read the provisioning output (`proxdeck logs {id}`), fix the app or its commands, then `proxdeck retry {id}`"
        ),
        Stage::HealthCheck => format!(
            "the app did not answer: check that it listens on 0.0.0.0 and the deployment's port, then `proxdeck retry {id}`"
        ),
        Stage::Done => format!("`proxdeck show {id}`"),
        Stage::Destroy => format!(
            "read terraform's output (`proxdeck logs {id}`); if the guest is locked or busy, wait and run `proxdeck destroy {id}` again"
        ),
    }
}

/// A fresh short id: six characters from an alphabet without look-alikes.
pub fn new_id() -> DeploymentId {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 6];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No OS randomness: fall back to the clock, still unique enough for one user's list.
        let t = now_ms() as u64;
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (t >> (i * 7)) as u8;
        }
    }
    DeploymentId(
        bytes
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect(),
    )
}

/// Env values are secrets: kept in a 0600 file in the data dir, never in the database.
fn secrets_path(engine: &Engine, id: &DeploymentId) -> PathBuf {
    engine
        .paths
        .root
        .join("secrets")
        .join(format!("{}.json", id.0))
}

fn save_env(engine: &Engine, id: &DeploymentId, env: &[(String, String)]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = secrets_path(engine, id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(
        serde_json::to_string(env)
            .unwrap_or_else(|_| "[]".into())
            .as_bytes(),
    )
}

fn load_env(engine: &Engine, id: &DeploymentId) -> Vec<(String, String)> {
    std::fs::read_to_string(secrets_path(engine, id))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn redactor(engine: &Engine, env: &[(String, String)]) -> Redactor {
    let mut secrets: Vec<String> = env.iter().map(|(_, v)| v.clone()).collect();
    if let Ok(p) = engine.config.proxmox() {
        let token = p.api_token.expose().to_string();
        // The secret part alone may also show up (e.g. in a provider's error message).
        if let Some((_, secret)) = token.split_once('=') {
            secrets.push(secret.to_string());
        }
        secrets.push(token);
    }
    Redactor::new(secrets)
}

/// Validates, records and runs a new deployment to RUNNING.
pub async fn deploy(
    engine: &Engine,
    input: DeployInput,
    events: mpsc::UnboundedSender<EngineEvent>,
) -> Result<Deployment, DeployError> {
    let catalog = Catalog::builtin();
    let spec = input.validate(catalog)?;
    // Proxmox settings are checked after the request, so bad input is always reported first.
    engine.config.proxmox()?;
    if spec.guest_type == GuestType::Vm && engine.config.terraform.templates_dir.is_none() {
        workspace::load_template(GuestType::Vm, None)
            .map_err(|e| DeployError::Refused(e.to_string()))?;
    }

    let name = match &spec.name {
        Some(n) => n.clone(),
        None => {
            let base = suggest_name(&spec.repo);
            let candidates: Vec<String> = std::iter::once(base.clone())
                .chain(
                    (2..100).map(|i| format!("{}-{i}", base.chars().take(58).collect::<String>())),
                )
                .collect();
            engine
                .db
                .call(move |s| {
                    for c in candidates {
                        if !s.name_taken(&c)? {
                            return Ok(c);
                        }
                    }
                    Err(StoreError::NameTaken(base))
                })
                .await?
        }
    };
    let now = now_ms();
    let mut d = Deployment {
        id: new_id(),
        name,
        repo: spec.repo.clone(),
        git_ref: spec.git_ref.clone().unwrap_or_default(),
        framework: spec.framework.clone(),
        guest_type: spec.guest_type,
        cores: spec.cores,
        memory_mib: spec.memory_mib,
        disk_gib: spec.disk_gib,
        port: spec.port,
        env_names: spec.env.iter().map(|(k, _)| k.clone()).collect(),
        node: spec.node.clone(),
        vmid: None,
        ip: None,
        url: None,
        commit: None,
        status: Status::Pending,
        stage: Some(Stage::Validate),
        error: None,
        created_at: now,
        updated_at: now,
    };
    // An id collision is astronomically rare; try a few fresh ones rather than fail.
    for _ in 0..5 {
        let record = d.clone();
        match engine.db.call(move |s| s.insert_deployment(&record)).await {
            Ok(()) => break,
            Err(StoreError::Sql(_)) => d.id = new_id(),
            Err(e) => return Err(e.into()),
        }
    }
    save_env(engine, &d.id, &spec.env).map_err(|e| {
        DeployError::Refused(format!("cannot store the environment variables: {e}"))
    })?;
    engine.audit(
        "deploy",
        &d.id,
        serde_json::json!({"name": d.name, "repo": d.repo, "framework": d.framework, "type": d.guest_type}),
    );
    let reporter = Reporter::new(
        d.id.clone(),
        engine.db.clone(),
        events,
        redactor(engine, &spec.env),
    );
    reporter
        .info(format!(
            "deployment {} ({}) recorded as PENDING",
            d.name, d.id
        ))
        .await?;
    run(engine, &reporter, d, spec.env).await
}

/// Runs a FAILED deployment's stages again; each is idempotent.
pub async fn retry(
    engine: &Engine,
    id_or_name: &str,
    events: mpsc::UnboundedSender<EngineEvent>,
) -> Result<Deployment, DeployError> {
    engine.config.proxmox()?;
    let key = id_or_name.to_string();
    let d = engine.db.call(move |s| s.find(&key)).await?;
    if d.status != Status::Failed && d.status != Status::Pending {
        return Err(DeployError::Refused(format!(
            "{} is {}; only a FAILED or interrupted PENDING deployment can be retried",
            d.name, d.status
        )));
    }
    let env = load_env(engine, &d.id);
    engine.audit("retry", &d.id, serde_json::json!({"name": d.name}));
    let reporter = Reporter::new(
        d.id.clone(),
        engine.db.clone(),
        events,
        redactor(engine, &env),
    );
    reporter
        .info(format!("retrying {} ({})", d.name, d.id))
        .await?;
    run(engine, &reporter, d, env).await
}

async fn run(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    env: Vec<(String, String)>,
) -> Result<Deployment, DeployError> {
    match stages(engine, reporter, &d, env).await {
        Ok(d) => Ok(d),
        Err(Failure { stage, cause }) => {
            let cause = Redactor::clone(&redactor(engine, &[])).redact(&cause);
            let next = next_step(stage, &d.id);
            let message = format!("{stage}: {cause}");
            let _ = reporter
                .lines(
                    LogStream::Stderr,
                    vec![format!("FAILED at {message}"), format!("next: {next}")],
                )
                .await;
            reporter.transition(Status::Failed, Some(message)).await?;
            Err(DeployError::Stage {
                id: d.id.clone(),
                stage,
                cause,
                next,
            })
        }
    }
}

async fn stages(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    env: Vec<(String, String)>,
) -> StageResult<Deployment> {
    let config = engine.config.clone();
    let store_err = |stage: Stage| {
        move |e: StoreError| Failure {
            stage,
            cause: e.to_string(),
        }
    };
    let framework = Catalog::builtin()
        .get(&d.framework)
        .cloned()
        .ok_or_else(|| Failure {
            stage: Stage::Validate,
            cause: format!("framework {:?} is no longer in the catalog", d.framework),
        })?;
    let proxmox = config
        .proxmox()
        .map_err(|e| fail(Stage::Preflight)(&e))?
        .clone();
    let node = d.node.clone().unwrap_or_else(|| proxmox.node.clone());

    // Preflight.
    reporter
        .stage(Stage::Preflight)
        .await
        .map_err(store_err(Stage::Preflight))?;
    reporter
        .transition(Status::Provisioning, None)
        .await
        .map_err(store_err(Stage::Preflight))?;
    preflight_repo(reporter, d).await?;

    // Render the workspace.
    reporter
        .stage(Stage::Render)
        .await
        .map_err(store_err(Stage::Render))?;
    let static_ip = match config.network.pool {
        Some(pool) => {
            let id = d.id.clone();
            let ip = engine
                .db
                .call(move |s| s.allocate_ip(pool, &id))
                .await
                .map_err(store_err(Stage::Render))?;
            reporter
                .info(format!("static address {ip} from pool {pool}"))
                .await
                .map_err(store_err(Stage::Render))?;
            Some(ip)
        }
        None => None,
    };
    let keys_dir = engine.paths.keys();
    let keys = tokio::task::spawn_blocking(move || ssh::ensure_key(&keys_dir))
        .await
        .map_err(|e| fail(Stage::Render)(&e))?
        .map_err(|e| fail(Stage::Render)(&e))?;
    let public_key = keys.public_openssh().map_err(|e| fail(Stage::Render)(&e))?;
    let vars = LxcVars {
        node_name: node.clone(),
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
        ipv4_address: match static_ip {
            Some(ip) => format!("{ip}/{}", config.network.prefix),
            None => "dhcp".to_string(),
        },
        ipv4_gateway: static_ip.and(config.network.gateway.map(|g| g.to_string())),
        ssh_public_key: public_key,
    };
    let ws = engine.paths.workspace(&d.id);
    let template =
        workspace::load_template(d.guest_type, config.terraform.templates_dir.as_deref())
            .map_err(|e| fail(Stage::Render)(&e))?;
    let main_tf =
        workspace::render_main_tf(&template, &vars.flags()).map_err(|e| fail(Stage::Render)(&e))?;
    workspace::write_workspace(&ws, &main_tf, &vars).map_err(|e| fail(Stage::Render)(&e))?;
    reporter
        .info(format!("workspace {}", ws.display()))
        .await
        .map_err(store_err(Stage::Render))?;

    // Terraform.
    let tf = Terraform::new(&config, &proxmox, &ws, &engine.paths.plugin_cache())
        .map_err(|e| fail(Stage::Render)(&e))?;
    let (_cancel_tx, cancel) = watch::channel(false);
    reporter
        .stage(Stage::TerraformInit)
        .await
        .map_err(store_err(Stage::TerraformInit))?;
    let (tx, forward) = reporter.pipe();
    let result = tf.init(tx, cancel.clone()).await;
    finish_forward(forward, Stage::TerraformInit).await?;
    result.map_err(|e| fail(Stage::TerraformInit)(&e))?;

    reporter
        .stage(Stage::TerraformApply)
        .await
        .map_err(store_err(Stage::TerraformApply))?;
    let (tx, forward) = reporter.pipe();
    let result = tf.apply(tx, cancel.clone()).await;
    finish_forward(forward, Stage::TerraformApply).await?;
    result.map_err(|e| fail(Stage::TerraformApply)(&e))?;
    let outputs = tf
        .outputs()
        .await
        .map_err(|e| fail(Stage::TerraformApply)(&e))?;

    // The address.
    reporter
        .stage(Stage::Address)
        .await
        .map_err(store_err(Stage::Address))?;
    let ip = match (static_ip, &outputs.ipv4) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(ip)) => ip.clone(),
        (None, None) => {
            return Err(Failure {
                stage: Stage::Address,
                cause: "terraform reported no IPv4 address for the guest and no static pool is configured".into(),
            });
        }
    };
    let facts = Facts {
        node: Some(node.clone()),
        vmid: outputs.vmid,
        ip: Some(ip.clone()),
        ..Facts::default()
    };
    let id = d.id.clone();
    engine
        .db
        .call(move |s| s.record_facts(&id, &facts))
        .await
        .map_err(store_err(Stage::Address))?;
    reporter
        .info(format!(
            "guest {} on node {node} at {ip}",
            outputs
                .vmid
                .map(|v| format!("vmid {v}"))
                .unwrap_or_else(|| "(vmid unknown)".into())
        ))
        .await
        .map_err(store_err(Stage::Address))?;

    // SSH.
    reporter
        .stage(Stage::Ssh)
        .await
        .map_err(store_err(Stage::Ssh))?;
    reporter
        .transition(Status::Deploying, None)
        .await
        .map_err(store_err(Stage::Ssh))?;
    let target = Target {
        host: ip.clone(),
        port: config.guest.ssh_port,
        user: config.guest.ssh_user.clone(),
    };
    let session = {
        let target = target.clone();
        let keys = keys.clone();
        let db = engine.db.clone();
        let within = config.timeouts.ssh;
        let (tx, forward) = reporter.pipe();
        let result = tokio::task::spawn_blocking(move || {
            let mut policy = PinInStore {
                db,
                notes: tx.clone(),
            };
            let note = |text: &str| {
                let _ = tx.send(process::Output {
                    stream: LogStream::Info,
                    lines: vec![text.to_string()],
                });
            };
            ssh::connect(&target, &keys, &mut policy, within, note)
        })
        .await;
        finish_forward(forward, Stage::Ssh).await?;
        result
            .map_err(|e| fail(Stage::Ssh)(&e))?
            .map_err(|e| fail(Stage::Ssh)(&e))?
    };
    reporter
        .info(format!(
            "connected to {} as {}",
            target.label(),
            target.user
        ))
        .await
        .map_err(store_err(Stage::Ssh))?;

    // Provision.
    reporter
        .stage(Stage::Provision)
        .await
        .map_err(store_err(Stage::Provision))?;
    let script_vars = ScriptVars {
        name: d.name.clone(),
        framework_name: framework.name.clone(),
        app_dir: format!("{}/{}", config.guest.app_root, d.name),
        repo: d.repo.clone(),
        git_ref: d.git_ref.clone(),
        port: d.port,
        install: framework.install.clone(),
        build: framework.build.clone(),
        start: framework.start.clone(),
        env: env
            .iter()
            .map(|(name, value)| EnvVar {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    };
    let script = provision::render_script(&framework, &script_vars)
        .map_err(|e| fail(Stage::Provision)(&e))?;
    let commit = {
        let target = target.clone();
        let timeout = config.timeouts.provision;
        let remote = format!("/tmp/proxdeck-provision-{}.sh", d.id.0);
        let (tx, forward) = reporter.pipe();
        let result =
            tokio::task::spawn_blocking(move || -> Result<(i32, Option<String>), SshError> {
                let mut sink = |_: LogStream, _: Vec<String>| {};
                // Upload the script (it may hold secrets: owner-only, removed after the run).
                let upload = format!(
                    "umask 077 && cat > {}",
                    shlex::try_quote(&remote).unwrap_or_default()
                );
                let rc = ssh::exec(
                    &session,
                    &target,
                    &upload,
                    Some(script.as_bytes()),
                    Duration::from_secs(60),
                    &mut sink,
                )?;
                if rc != 0 {
                    return Ok((rc, None));
                }
                let quoted = shlex::try_quote(&remote).unwrap_or_default().to_string();
                let command = format!(
                    "bash -euo pipefail {quoted} </dev/null; rc=$?; rm -f {quoted}; exit $rc"
                );
                let mut commit = None;
                let mut out = |stream: LogStream, lines: Vec<String>| {
                    if stream == LogStream::Stdout
                        && let Some(c) = lines.iter().find_map(|l| provision::commit_from_line(l))
                    {
                        commit = Some(c);
                    }
                    let _ = tx.send(process::Output { stream, lines });
                };
                let rc = ssh::exec(&session, &target, &command, None, timeout, &mut out)?;
                Ok((rc, commit))
            })
            .await;
        finish_forward(forward, Stage::Provision).await?;
        let (rc, commit) = result
            .map_err(|e| fail(Stage::Provision)(&e))?
            .map_err(|e| fail(Stage::Provision)(&e))?;
        if rc != 0 {
            return Err(Failure {
                stage: Stage::Provision,
                cause: format!("the provisioning script exited with status {rc}"),
            });
        }
        commit
    };

    // Health check.
    reporter
        .stage(Stage::HealthCheck)
        .await
        .map_err(store_err(Stage::HealthCheck))?;
    let url = format!("http://{}/", host_port(&ip, d.port));
    let check_url = format!("http://{}{}", host_port(&ip, d.port), framework.health_path);
    let (tx, forward) = reporter.pipe();
    let healthy = super::health::wait_healthy(&check_url, config.timeouts.health, |note| {
        let _ = tx.send(process::Output {
            stream: LogStream::Info,
            lines: vec![note.to_string()],
        });
    })
    .await;
    drop(tx);
    finish_forward(forward, Stage::HealthCheck).await?;
    let healthy = healthy.map_err(|e| fail(Stage::HealthCheck)(&e))?;
    let facts = Facts {
        url: Some(url.clone()),
        commit: commit.clone(),
        ..Facts::default()
    };
    let id = d.id.clone();
    engine
        .db
        .call(move |s| s.record_facts(&id, &facts))
        .await
        .map_err(store_err(Stage::HealthCheck))?;
    reporter
        .info(format!(
            "{check_url} answered HTTP {} after {} attempt(s)",
            healthy.status, healthy.attempts
        ))
        .await
        .map_err(store_err(Stage::HealthCheck))?;

    reporter
        .stage(Stage::Done)
        .await
        .map_err(store_err(Stage::Done))?;
    let done = reporter
        .transition(Status::Running, None)
        .await
        .map_err(store_err(Stage::Done))?;
    reporter
        .info(format!("RUNNING at {url}"))
        .await
        .map_err(store_err(Stage::Done))?;
    Ok(done)
}

fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

async fn finish_forward(
    forward: tokio::task::JoinHandle<Result<(), StoreError>>,
    stage: Stage,
) -> StageResult<()> {
    match forward.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(fail(stage)(&e)),
        Err(e) => Err(fail(stage)(&e)),
    }
}

/// `git ls-remote`: the repository answers and the ref exists, before any guest is created.
async fn preflight_repo(reporter: &Reporter, d: &Deployment) -> StageResult<()> {
    let mut args = vec!["ls-remote", "--", d.repo.as_str()];
    if !d.git_ref.is_empty() {
        args.push(d.git_ref.as_str());
    }
    let mut spec = ProcessSpec::new("git", &args);
    spec.env = vec![
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        (
            "GIT_SSH_COMMAND".into(),
            "ssh -o BatchMode=yes -o ConnectTimeout=20".into(),
        ),
    ];
    spec.timeout = Duration::from_secs(90);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_c, cancel) = watch::channel(false);
    let status = process::run(&spec, tx, cancel)
        .await
        .map_err(|e| fail(Stage::Preflight)(&e))?;
    let mut refs = Vec::new();
    let mut errors = Vec::new();
    while let Ok(o) = rx.try_recv() {
        match o.stream {
            LogStream::Stdout => refs.extend(o.lines),
            _ => errors.extend(o.lines),
        }
    }
    if !status.success() {
        return Err(Failure {
            stage: Stage::Preflight,
            cause: format!(
                "the repository {} cannot be read: {}",
                d.repo,
                errors
                    .iter()
                    .filter(|l| !l.trim().is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        });
    }
    let is_commit = d.git_ref.len() >= 7 && d.git_ref.chars().all(|c| c.is_ascii_hexdigit());
    if !d.git_ref.is_empty() && refs.iter().all(|l| l.trim().is_empty()) && !is_commit {
        return Err(Failure {
            stage: Stage::Preflight,
            cause: format!(
                "the repository {} has no branch or tag {:?}",
                d.repo, d.git_ref
            ),
        });
    }
    reporter
        .info(format!(
            "repository {} answers{}",
            d.repo,
            if d.git_ref.is_empty() {
                " (default branch)".to_string()
            } else {
                format!("; ref {} found", d.git_ref)
            }
        ))
        .await
        .map_err(|e| fail(Stage::Preflight)(&e))?;
    Ok(())
}

/// Host keys pinned in the store: accepted and pinned on first contact, compared afterwards.
struct PinInStore {
    db: Db,
    notes: mpsc::UnboundedSender<process::Output>,
}

impl HostKeyPolicy for PinInStore {
    fn check(&mut self, target: &Target, key: &PresentedKey) -> Result<(), SshError> {
        let label = target.label();
        let perr = |e: StoreError| SshError::Protocol {
            target: label.clone(),
            message: format!("host key store: {e}"),
        };
        let pinned = self.db.blocking(|s| s.host_key(&label)).map_err(perr)?;
        match pinned {
            Some(p) if p.fingerprint == key.fingerprint => Ok(()),
            Some(p) => Err(SshError::HostKeyChanged {
                target: label.clone(),
                pinned: format!("{} {}", p.key_type, p.fingerprint),
                presented: format!("{} {}", key.key_type, key.fingerprint),
            }),
            None => {
                let host_key = HostKey {
                    host: label.clone(),
                    key_type: key.key_type.clone(),
                    fingerprint: key.fingerprint.clone(),
                };
                self.db
                    .blocking(|s| s.pin_host_key(&host_key))
                    .map_err(perr)?;
                let _ = self.notes.send(process::Output {
                    stream: LogStream::Info,
                    lines: vec![format!(
                        "pinned host key of {label}: {} {}",
                        key.key_type, key.fingerprint
                    )],
                });
                Ok(())
            }
        }
    }
}

/// Destroys a deployment's guest with `terraform destroy` and marks it DELETED.
pub async fn destroy(
    engine: &Engine,
    id_or_name: &str,
    events: mpsc::UnboundedSender<EngineEvent>,
) -> Result<Deployment, DeployError> {
    let key = id_or_name.to_string();
    let d = engine.db.call(move |s| s.find(&key)).await?;
    if d.status == Status::Deleted {
        return Err(DeployError::Refused(format!(
            "{} ({}) is already deleted",
            d.name, d.id
        )));
    }
    if !d.status.is_settled() {
        return Err(DeployError::Refused(format!(
            "{} ({}) is {}: work is in flight; wait for it to finish, then destroy",
            d.name, d.id, d.status
        )));
    }
    let env = load_env(engine, &d.id);
    let reporter = Reporter::new(
        d.id.clone(),
        engine.db.clone(),
        events,
        redactor(engine, &env),
    );
    engine.audit("destroy", &d.id, serde_json::json!({"name": d.name}));
    reporter.stage(Stage::Destroy).await?;
    reporter.transition(Status::Destroying, None).await?;

    let ws = engine.paths.workspace(&d.id);
    let result: Result<(), String> = async {
        if !terraform::has_state(&ws) {
            reporter
                .info("no terraform state with resources: nothing to destroy on Proxmox")
                .await
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        let proxmox = engine.config.proxmox().map_err(|e| e.to_string())?;
        let tf = Terraform::new(&engine.config, proxmox, &ws, &engine.paths.plugin_cache())
            .map_err(|e| e.to_string())?;
        let (_c, cancel) = watch::channel(false);
        let (tx, forward) = reporter.pipe();
        let r = tf.init(tx, cancel.clone()).await;
        let _ = forward.await;
        r.map_err(|e| e.to_string())?;
        let (tx, forward) = reporter.pipe();
        let r = tf.destroy(tx, cancel).await;
        let _ = forward.await;
        r.map_err(|e| e.to_string())
    }
    .await;

    if let Err(cause) = result {
        let next = next_step(Stage::Destroy, &d.id);
        let message = format!("destroy: {cause}");
        let _ = reporter
            .lines(
                LogStream::Stderr,
                vec![format!("FAILED at {message}"), format!("next: {next}")],
            )
            .await;
        reporter.transition(Status::Failed, Some(message)).await?;
        return Err(DeployError::Stage {
            id: d.id.clone(),
            stage: Stage::Destroy,
            cause,
            next,
        });
    }

    let id = d.id.clone();
    let host =
        d.ip.clone()
            .map(|ip| format!("{ip}:{}", engine.config.guest.ssh_port));
    engine
        .db
        .call(move |s| {
            s.release_ip(&id)?;
            if let Some(h) = host {
                s.forget_host_key(&h)?;
            }
            Ok(())
        })
        .await?;
    let _ = std::fs::remove_file(secrets_path(engine, &d.id));
    let done = reporter.transition(Status::Deleted, None).await?;
    reporter
        .info(format!("{} ({}) is DELETED", d.name, d.id))
        .await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_typeable() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id().0).collect();
        assert!(ids.len() > 990);
        for id in ids {
            assert_eq!(id.len(), 6);
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            );
            assert!(!id.contains(['l', 'o', '0', '1', 'i']));
        }
    }

    #[test]
    fn every_stage_has_a_next_step_naming_the_deployment() {
        let id = DeploymentId("abc123".into());
        for stage in Stage::ALL {
            assert!(next_step(stage, &id).contains("abc123"), "{stage}");
        }
    }
}
