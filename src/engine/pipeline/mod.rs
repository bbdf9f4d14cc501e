//! The stages of a deployment, from a validated request to a RUNNING app, and its destruction.
//!
//! deploy: validate → record PENDING → preflight (the repository and ref exist, read with the
//! deployment's credentials: `engine::gitauth`) → render the Terraform workspace → `terraform
//! init` + `apply` → the guest's address (static pool, else terraform's output) → SSH (host
//! key pinned; the guest reads the repository) → provisioning script → HTTP health check →
//! RUNNING. Each stage is idempotent, so `retry` runs them again from the stored record.
//! A failure moves the deployment to FAILED with the stage, the cause and the next step.
//!
//! destroy: DESTROYING → `terraform destroy` (when there is state) → address and host key
//! released → DELETED. The record stays.
//!
//! A deployment on an existing host (`deploy --host`, `Origin::Host`) skips render, terraform
//! and address, and its destroy removes the app over SSH (`app`). `redeploy` and `rollback`
//! (`redeploy`) rebuild the app on the same guest. Without `--framework`, `deploy` detects it
//! (`engine::detect`) before anything is recorded.

mod address;
mod app;
mod check;
mod destroy;
mod infra;
mod plan;
mod preflight;
mod redeploy;
mod release;
mod render;

pub(crate) use check::unhealthy;
pub use destroy::{DestroyOptions, run_destroy};
pub use plan::{PlanReport, RenderReport, plan, render_workspace};
pub use redeploy::{run_redeploy, run_rollback};

use super::Engine;
use super::report::{Redactor, Reporter};
use super::ssh::{KeyPair, Target};
use super::terraform::GuestOutputs;
use super::workspace;
use crate::config::{ConfigError, ProxmoxConfig};
use crate::domain::spec::{DeployInput, SpecError, suggest_name};
use crate::domain::{
    Catalog, Deployment, DeploymentId, Framework, GuestType, Origin, Stage, Status,
};
use crate::protocol::LogStream;
use crate::store::{StoreError, now_ms};
use std::net::Ipv4Addr;
use std::path::PathBuf;
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
    #[error(transparent)]
    Busy(#[from] super::jobs::JobError),
    #[error(transparent)]
    Detect(#[from] super::detect::DetectError),
}

/// A stage's failure before it is recorded.
pub(super) struct Failure {
    stage: Stage,
    cause: String,
}

pub(super) type StageResult<T> = Result<T, Failure>;

pub(super) fn fail(stage: Stage) -> impl Fn(&dyn std::fmt::Display) -> Failure {
    move |e| Failure {
        stage,
        cause: e.to_string(),
    }
}

/// What the user can do about a failure in `stage`.
pub fn next_step(stage: Stage, id: &DeploymentId) -> String {
    match stage {
        Stage::Validate | Stage::Preflight => format!(
            "fix what preflight names (the repository URL and ref: does git ls-remote URL REF work from here?; on Proxmox: node, storage, template, bridge, room, privileges), then `proxdeck retry {id}` or `proxdeck destroy {id}`"
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
            "the app did not answer as expected or kept exiting: read its own log (`proxdeck logs --app {id}`), fix the app, then `proxdeck retry {id}` (with `--health-path PATH` when the app answers at another path)"
        ),
        Stage::Done => format!("`proxdeck show {id}`"),
        Stage::Destroy => format!(
            "read terraform's output (`proxdeck logs {id}`); if the guest is locked or busy, wait and run `proxdeck destroy {id}` again; if Proxmox or the guest cannot be reached any more, `proxdeck destroy {id} --force` records it DELETED and names what may be left behind"
        ),
    }
}

/// A fresh short id ([`DeploymentId::random`]); `Store::insert_deployment` refuses one that
/// is taken, and the callers draw again.
pub fn new_id() -> DeploymentId {
    DeploymentId::random()
}

/// Env values are secrets: kept in a 0600 file in the data dir, never in the database.
pub(super) fn secrets_path(engine: &Engine, id: &DeploymentId) -> PathBuf {
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

pub(super) fn load_env(engine: &Engine, id: &DeploymentId) -> Vec<(String, String)> {
    std::fs::read_to_string(secrets_path(engine, id))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub(super) fn redactor(engine: &Engine, env: &[(String, String)]) -> Redactor {
    redactor_with(engine, env, Vec::new())
}

/// [`redactor`] that also masks the deployment's Git token, when it has one.
pub(super) fn redactor_of(
    engine: &Engine,
    id: &DeploymentId,
    env: &[(String, String)],
) -> Redactor {
    let token = std::fs::read_to_string(super::gitauth::token_path(&engine.paths, id))
        .map(|t| vec![t.trim().to_string()])
        .unwrap_or_default();
    redactor_with(engine, env, token)
}

/// [`redactor`] masking `extra` secrets too.
pub(super) fn redactor_with(
    engine: &Engine,
    env: &[(String, String)],
    extra: Vec<String>,
) -> Redactor {
    let mut secrets: Vec<String> = env.iter().map(|(_, v)| v.clone()).collect();
    secrets.extend(extra);
    if let Ok(p) = engine.config.proxmox() {
        // The token, its secret part alone (e.g. in a provider's error message), the password.
        secrets.extend(p.secrets());
    }
    Redactor::new(secrets)
}

/// Choices of a deployment beyond the request, kept with its workspace (`deploy
/// --os-template`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployOptions {
    /// The container's OS template (a volume id) instead of `guest.os_template`.
    pub os_template: Option<String>,
    /// Turn auto-deploy on for the new deployment (`deploy --auto-deploy`).
    pub auto_deploy: bool,
}

/// Validates a request, records it as PENDING with its environment (in the secrets file) and
/// choices, and writes the first lines of its log. The front end does this before it queues
/// the deploy job, so bad input is refused at once and nothing runs yet.
pub async fn record_new(
    engine: &Engine,
    input: DeployInput,
    options: DeployOptions,
) -> Result<Deployment, DeployError> {
    let (spec, mut d, detected, access) = prepare(engine, input, &options).await?;
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
    super::gitauth::adopt(&engine.paths, &d.repo, &d.id, &access).map_err(DeployError::Refused)?;
    let choices = workspace::Choices {
        os_template: options.os_template.clone(),
    };
    choices
        .save(&engine.paths.workspace(&d.id))
        .map_err(|e| DeployError::Refused(format!("cannot store the deployment's choices: {e}")))?;
    let (events, _nobody) = mpsc::unbounded_channel();
    let reporter = Reporter::new(
        d.id.clone(),
        engine.db.clone(),
        events,
        redactor_with(engine, &spec.env, access.secrets()),
    );
    reporter
        .info(format!(
            "deployment {} ({}) recorded as PENDING",
            d.name, d.id
        ))
        .await?;
    for note in &access.notes {
        reporter.info(note.clone()).await?;
    }
    if let Some(auth) = &d.overrides.git_auth {
        reporter
            .info(format!(
                "the repository is read with {} (on this machine and on the guest)",
                auth.describe()
            ))
            .await?;
    }
    if let Some(found) = &detected {
        reporter
            .info(format!(
                "framework {} detected: {}",
                d.framework, found.reason
            ))
            .await?;
    }
    if d.origin == Origin::Host {
        reporter
            .info(format!(
                "deploying onto the existing host {}: no Terraform, no Proxmox",
                d.ip.as_deref().unwrap_or("?")
            ))
            .await?;
    }
    Ok(d)
}

/// Runs a recorded PENDING deployment's stages to RUNNING (the deploy job).
pub async fn run_deploy(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    cancel: watch::Receiver<bool>,
) -> Result<Deployment, DeployError> {
    let env = load_env(engine, &d.id);
    run(engine, reporter, d, env, cancel).await
}

/// Validates a request and builds its deployment, not yet recorded: Proxmox settings, the
/// framework (detected when not given), the port, a free name. Shared by deploy, `--plan` and
/// `render`.
pub(super) async fn prepare(
    engine: &Engine,
    input: DeployInput,
    options: &DeployOptions,
) -> Result<
    (
        crate::domain::spec::DeploySpec,
        Deployment,
        Option<super::detect::Detection>,
        super::gitauth::Access,
    ),
    DeployError,
> {
    let catalog = Catalog::builtin();
    let mut spec = input.validate(catalog)?;
    // Proxmox settings are checked after the request, so bad input is always reported first.
    // A deployment on an existing host needs none.
    if spec.host.is_none() {
        engine.config.proxmox()?;
        if spec.guest_type == GuestType::Vm && engine.config.vm.template_vmid.is_none() {
            return Err(DeployError::Refused(
                "vm.template_vmid: VM deployments clone a cloud-init template; set its vmid in [vm] of the config (a cloud image with qemu-guest-agent, converted with `qm template`)".into(),
            ));
        }
    }
    if let Some(t) = &options.os_template {
        if spec.host.is_some() || spec.guest_type != GuestType::Lxc {
            return Err(DeployError::Refused(
                "os-template: only containers (--type lxc) are made from an OS template".into(),
            ));
        }
        workspace::validate_os_template(t)
            .map_err(|m| DeployError::Refused(format!("os-template: {m}")))?;
    }
    if let Some(key) = &spec.ssh_key {
        std::fs::File::open(key)
            .map_err(|e| DeployError::Refused(format!("ssh-key: cannot read {key}: {e}")))?;
    }
    // A private repository: its credentials, checked before anything is recorded (a new
    // deploy key is shown with where to add it, and the same command run again after).
    let access = repository_access(engine, &spec).await?;
    let scratch = engine.paths.root.join("tmp");
    // A short commit id is recorded as the full one.
    if let Some(r) = &spec.git_ref {
        let full = super::detect::full_ref(
            &spec.repo,
            r,
            &scratch,
            std::time::Duration::from_secs(180),
            &access,
        )
        .await
        .map_err(|e| DeployError::Refused(format!("ref: {e}")))?;
        spec.git_ref = Some(full);
    }
    // No framework given: detected from the repository's files (in --subdir) before
    // anything is recorded. A framework given with --subdir: the folder is still checked.
    let subdir = spec.overrides.subdir.clone().unwrap_or_default();
    let detected = if spec.framework.is_none() || !subdir.is_empty() {
        let found = super::detect::detect_repo(
            catalog,
            &spec.repo,
            spec.git_ref.as_deref(),
            &subdir,
            &scratch,
            std::time::Duration::from_secs(180),
            &access,
        )
        .await;
        match (&spec.framework, found) {
            (None, found) => {
                let found = found?;
                spec.framework = Some(found.framework.clone());
                Some(found)
            }
            // Only a missing folder (or an unreadable repository) matters here.
            (Some(_), Err(e @ super::detect::DetectError::Fetch { .. })) => return Err(e.into()),
            (Some(_), _) => None,
        }
    } else {
        None
    };
    let framework = spec.framework.clone().unwrap_or_default();
    let port = match spec.port {
        Some(p) => p,
        None => catalog
            .get(&framework)
            .map(|f| f.default_port)
            .ok_or_else(|| DeployError::Refused(format!("unknown framework {framework:?}")))?,
    };

    let name = match &spec.name {
        Some(n) => n.clone(),
        None => super::reads::free_name(&engine.db, &suggest_name(&spec.repo)).await?,
    };
    let now = now_ms();
    let mut d = Deployment {
        id: new_id(),
        name,
        repo: spec.repo.clone(),
        git_ref: spec.git_ref.clone().unwrap_or_default(),
        framework,
        guest_type: spec.guest_type,
        cores: spec.cores,
        memory_mib: spec.memory_mib,
        disk_gib: spec.disk_gib,
        port,
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
        origin: if spec.host.is_some() {
            Origin::Host
        } else {
            Origin::Terraform
        },
        ssh_user: spec.ssh_user.clone(),
        ssh_port: spec.host.as_ref().and_then(|h| h.ssh_port),
        overrides: spec.overrides.clone(),
        ..Deployment::default()
    };
    if let Some(h) = &spec.host {
        d.ip = Some(h.host.clone());
    }
    // A VM's login user is its cloud-init user (`vm.user` unless --ssh-user names another).
    if d.origin == Origin::Terraform && d.guest_type == GuestType::Vm && d.ssh_user.is_none() {
        d.ssh_user = Some(engine.config.vm.user.clone());
    }
    Ok((spec, d, detected, access))
}

/// The credentials of a new deployment's private repository (none for a public one), and
/// proof that they read it: for a deploy key that cannot read it yet, the refusal carries
/// the public key and where to add it.
async fn repository_access(
    engine: &Engine,
    spec: &crate::domain::spec::DeploySpec,
) -> Result<super::gitauth::Access, DeployError> {
    use super::gitauth;
    let Some(auth) = &spec.overrides.git_auth else {
        return Ok(gitauth::Access::none());
    };
    let (mut access, notes) = gitauth::access_for_new(&engine.paths, &spec.repo, Some(auth))
        .await
        .map_err(DeployError::Refused)?;
    access.notes = notes;
    let checked = super::detect::check_ref(
        &spec.repo,
        spec.git_ref.as_deref().unwrap_or(""),
        std::time::Duration::from_secs(90),
        &access,
    )
    .await;
    match (checked, &access.key) {
        (Ok(_), _) => Ok(access),
        (Err(e), Some(key)) => {
            let public = key
                .public_openssh()
                .map_err(|e| DeployError::Refused(e.to_string()))?;
            let pinned: String = access.notes.iter().map(|n| format!("{n}\n")).collect();
            Err(DeployError::Refused(format!(
                "{e} (with the new deploy key).\n{pinned}{}\nthen run the same deploy command again: the key is kept for it in {}",
                gitauth::add_key_words(&public, &spec.repo),
                key.private
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )))
        }
        (Err(e), None) => {
            let secrets = access.secrets();
            let e = super::report::Redactor::new(secrets).redact(&e);
            Err(DeployError::Refused(format!(
                "{e} (with {}): check that the token may read the repository (GitHub: Contents read; GitLab: read_repository; Gitea: repository read) and has not expired",
                access.describe()
            )))
        }
    }
}

/// Runs a FAILED (or never-run PENDING) deployment's stages again; each is idempotent.
pub async fn run_retry(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    cancel: watch::Receiver<bool>,
) -> Result<Deployment, DeployError> {
    // A deployment on an existing host needs no Proxmox settings.
    if d.origin != Origin::Host {
        engine.config.proxmox()?;
    }
    let env = load_env(engine, &d.id);
    reporter
        .info(format!("retrying {} ({})", d.name, d.id))
        .await?;
    run(engine, reporter, d, env, cancel).await
}

async fn run(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    env: Vec<(String, String)>,
    cancel: watch::Receiver<bool>,
) -> Result<Deployment, DeployError> {
    match stages(engine, reporter, &d, env, cancel).await {
        Ok(d) => Ok(d),
        Err(failure) => Err(record_failure(engine, reporter, &d.id, failure).await),
    }
}

/// Records a stage's failure: the cause and the next step in the log, FAILED with the cause.
pub(super) async fn record_failure(
    engine: &Engine,
    reporter: &Reporter,
    id: &DeploymentId,
    failure: Failure,
) -> DeployError {
    let next = next_step(failure.stage, id);
    record_failure_next(engine, reporter, id, failure, next).await
}

/// [`record_failure`] with a next step of the caller's (e.g. a destroy on an existing host).
pub(super) async fn record_failure_next(
    engine: &Engine,
    reporter: &Reporter,
    id: &DeploymentId,
    Failure { stage, cause }: Failure,
    next: String,
) -> DeployError {
    // The cause is also printed by the client: mask the secrets there too.
    let cause = redactor_of(engine, id, &load_env(engine, id)).redact(&cause);
    let message = format!("{stage}: {cause}");
    let _ = reporter
        .lines(
            LogStream::Stderr,
            vec![format!("FAILED at {message}"), format!("next: {next}")],
        )
        .await;
    if let Err(e) = reporter.transition(Status::Failed, Some(message)).await {
        return e.into();
    }
    DeployError::Stage {
        id: id.clone(),
        stage,
        cause,
        next,
    }
}

/// The Proxmox settings for work that never talks to Proxmox (a deployment on an existing
/// host, a redeploy over SSH): the config's when it has them, else an unusable placeholder.
pub(super) fn proxmox_or_placeholder(engine: &Engine) -> Result<ProxmoxConfig, ConfigError> {
    if let Ok(p) = engine.config.proxmox() {
        return Ok(p.clone());
    }
    // Parsed rather than built, so it follows the config's own rules and fields.
    const PLACEHOLDER: &str = "[proxmox]\nendpoint = \"https://proxmox.invalid:8006/\"\n\
        api_token = \"none@pve!unconfigured=none\"\nnode = \"unconfigured\"\n";
    let config = crate::config::Config::parse(PLACEHOLDER, &Default::default())?;
    Ok(config.proxmox()?.clone())
}

/// What one run of the stages carries from stage to stage.
pub(super) struct Ctx<'a> {
    pub engine: &'a Engine,
    pub reporter: &'a Reporter,
    pub d: Deployment,
    pub framework: Framework,
    pub proxmox: ProxmoxConfig,
    pub env: Vec<(String, String)>,
    /// `true` asks running processes to stop gracefully.
    pub cancel: watch::Receiver<bool>,
    pub node: String,
    pub static_ip: Option<Ipv4Addr>,
    pub keys: Option<KeyPair>,
    pub outputs: GuestOutputs,
    pub ip: Option<String>,
    pub session: Option<(ssh2::Session, Target)>,
    pub commit: Option<String>,
    pub url: Option<String>,
    /// The stage in progress, named in a failure that has no better stage.
    pub current: Stage,
    /// What `provision` checks out instead of the deployment's ref (rollback: a commit).
    pub checkout: Option<String>,
    /// The Proxmox API client, once preflight has checked that it works.
    pub pve: Option<super::proxmox::Client>,
    /// The release folder this run built (or, for a rollback, switches to) on the guest.
    pub release: Option<String>,
    /// The release that was current before this run: what a failed health check switches
    /// back to.
    pub replaced: Option<crate::store::releases::Release>,
    /// The script switched the service to `release` (so a failure must switch back).
    pub switched: bool,
    /// The releases on the guest, as the last script listed them.
    pub kept: Vec<super::provision::KeptRelease>,
    /// How git reads the repository (`gitauth`), once loaded for this run.
    pub access: Option<super::gitauth::Access>,
    /// Where the repository's credentials are staged on the guest (in memory) for this run.
    pub git_stage: Option<String>,
}

impl<'a> Ctx<'a> {
    /// A fresh run's context: nothing learnt yet; `cancel` turning true asks its processes to
    /// stop gracefully (the job was cancelled).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        engine: &'a Engine,
        reporter: &'a Reporter,
        d: Deployment,
        framework: Framework,
        proxmox: ProxmoxConfig,
        env: Vec<(String, String)>,
        node: String,
        cancel: watch::Receiver<bool>,
    ) -> Ctx<'a> {
        Ctx {
            engine,
            reporter,
            d,
            framework,
            proxmox,
            env,
            cancel,
            node,
            static_ip: None,
            keys: None,
            outputs: GuestOutputs::default(),
            ip: None,
            session: None,
            commit: None,
            url: None,
            current: Stage::Preflight,
            pve: None,
            checkout: None,
            release: None,
            replaced: None,
            switched: false,
            kept: Vec::new(),
            access: None,
            git_stage: None,
        }
    }

    /// The context of a run on a deployment's existing guest: its recorded node and address.
    pub(super) fn on_guest(
        engine: &'a Engine,
        reporter: &'a Reporter,
        d: &Deployment,
        framework: Framework,
        proxmox: ProxmoxConfig,
        env: Vec<(String, String)>,
        cancel: watch::Receiver<bool>,
    ) -> Ctx<'a> {
        let node = d.node.clone().unwrap_or_default();
        let mut cx = Ctx::new(
            engine,
            reporter,
            d.clone(),
            framework,
            proxmox,
            env,
            node,
            cancel,
        );
        cx.ip = d.ip.clone();
        cx
    }
}

impl Ctx<'_> {
    /// Marks the start of a stage (store, log, clients).
    pub async fn stage(&mut self, stage: Stage) -> StageResult<()> {
        self.current = stage;
        self.reporter
            .stage(stage)
            .await
            .map_err(|e| fail(stage)(&e))
    }

    pub async fn info(&self, text: impl Into<String>) -> StageResult<()> {
        self.reporter
            .info(text)
            .await
            .map_err(|e| fail(self.current)(&e))
    }

    pub async fn transition(&self, to: Status) -> StageResult<Deployment> {
        self.reporter
            .transition(to, None)
            .await
            .map_err(|e| fail(self.current)(&e))
    }

    /// Waits until a `Reporter::pipe` has stored every line it was given.
    pub async fn finish_forward(
        &self,
        forward: tokio::task::JoinHandle<Result<(), StoreError>>,
    ) -> StageResult<()> {
        match forward.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(fail(self.current)(&e)),
            Err(e) => Err(fail(self.current)(&e)),
        }
    }
}

async fn stages(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    env: Vec<(String, String)>,
    cancel: watch::Receiver<bool>,
) -> StageResult<Deployment> {
    let framework = catalog_framework(d)?;
    let proxmox = if d.origin == Origin::Host {
        proxmox_or_placeholder(engine)
    } else {
        engine.config.proxmox().cloned()
    }
    .map_err(|e| fail(Stage::Preflight)(&e))?;
    let node = d.node.clone().unwrap_or_else(|| proxmox.node.clone());
    let mut cx = Ctx::new(
        engine,
        reporter,
        d.clone(),
        framework,
        proxmox,
        env,
        node,
        cancel,
    );

    cx.stage(Stage::Preflight).await?;
    cx.transition(Status::Provisioning).await?;
    if cx.d.origin == Origin::Host {
        // An existing host (`deploy --host`): no Terraform, no Proxmox; straight to SSH.
        app::preflight_host(&mut cx).await?;
    } else {
        // Reserved before preflight, which checks that the cluster does not use it.
        infra::reserve_vmid(&mut cx).await?;
        preflight::run(&mut cx).await?;

        cx.stage(Stage::Render).await?;
        render::run(&mut cx).await?;

        // terraform-init and terraform-apply
        infra::run(&mut cx).await?;

        cx.stage(Stage::Address).await?;
        address::run(&mut cx).await?;
        // Preflight's DNS look at the domains, now that the guest's address is known.
        if let Some(ip) = cx.ip.clone() {
            super::caddy::warn_dns(cx.reporter, &cx.d, &ip)
                .await
                .map_err(|e| fail(Stage::Address)(&e))?;
        }
    }

    cx.stage(Stage::Ssh).await?;
    cx.transition(Status::Deploying).await?;
    on_guest(&mut cx).await
}

/// The framework a stored deployment names, from the built-in catalog.
pub(super) fn catalog_framework(d: &Deployment) -> StageResult<Framework> {
    Catalog::builtin()
        .get(&d.framework)
        .cloned()
        .ok_or_else(|| {
            fail(Stage::Validate)(&format!(
                "framework {:?} is no longer in the catalog",
                d.framework
            ))
        })
}

/// The stages on the guest, shared by deploy, retry and redeploy: connect (the `ssh` stage
/// has begun and the deployment is DEPLOYING), provision (a new release built beside the
/// running one, then switched to), health check, RUNNING. A release that fails after the
/// switch is switched away from: the one that ran before serves again (`release`).
pub(super) async fn on_guest(cx: &mut Ctx<'_>) -> StageResult<Deployment> {
    app::connect(cx).await?;
    release::remember_current(cx).await?;
    app::guest_reads_repo(cx).await?;

    cx.stage(Stage::Provision).await?;
    if let Err(failure) = app::provision(cx).await {
        return Err(release::switch_back(cx, failure).await);
    }

    cx.stage(Stage::HealthCheck).await?;
    if let Err(failure) = check::run(cx).await {
        return Err(release::switch_back(cx, failure).await);
    }
    release::healthy(cx).await?;
    finish(cx).await
}

/// Stage `done`: RUNNING, with the URL and commit in the log.
pub(super) async fn finish(cx: &mut Ctx<'_>) -> StageResult<Deployment> {
    cx.stage(Stage::Done).await?;
    let done = cx.transition(Status::Running).await?;
    cx.info(format!(
        "RUNNING at {} (commit {})",
        cx.url.as_deref().unwrap_or("(no URL)"),
        done.commit.as_deref().unwrap_or("?")
    ))
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
