//! The command line's words: clap definitions of every subcommand and flag. What each one
//! does lives in the other `cli` modules; nothing here runs anything.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    /// Run a failed deployment's stages again (each stage is idempotent); flags such as
    /// --health-path change the deployment from now on.
    Retry(RetryArgs),
    /// List deployments.
    List(JsonArgs),
    /// Show one deployment: fields, status history.
    Show(IdArgs),
    /// Print a deployment's log (`--app`: the app's own log, read over SSH).
    Logs(LogsArgs),
    /// Destroy a deployment's guest (terraform destroy, then confirmed with Proxmox); the
    /// record stays as DELETED.
    Destroy(DestroyArgs),
    /// List the framework catalog.
    Frameworks(JsonArgs),
    /// Print proxdeck's SSH public key (generated on first use), to authorize it on hosts.
    SshKey,
    /// Print a deployment's deploy key (`deploy --deploy-key`) and where to add it, read-only,
    /// on its Git host; with the pinned fingerprints of the Git host's SSH key.
    DeployKey(IdArgs),
    /// Fetch, rebuild and restart a deployment on the same guest (the commit before is kept).
    Redeploy(RedeployArgs),
    /// Switch a deployment back to its previous good release (kept on the guest: no build).
    Rollback(RollbackArgs),
    /// Configuration: write a commented template, show the path, check it.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Start a deployment's guest through the Proxmox API (waits for the task); for a
    /// deployment on an existing host (--host), the app's service over SSH.
    Start(OpArgs),
    /// Shut a deployment's guest down cleanly (forced off after 60 s); for --host, stop the
    /// app's service only.
    Stop(OpArgs),
    /// Reboot a deployment's guest (starts it when it is stopped); for --host, restart the
    /// app's service.
    Restart(OpArgs),
    /// Every VM and container of the cluster: node, status, CPU, memory, disk, uptime, and
    /// whether proxdeck manages it (orphans: guests carrying the id of no live deployment).
    Resources(ResourcesArgs),
    /// Import the cluster's guests proxdeck does not know, update known ones, mark gone ones.
    Sync(SyncArgs),
    /// Remove an imported entry (or one whose guest is gone) from proxdeck; the guest stays
    /// (`--force`: also a deployment whose guest or host cannot be reached).
    Forget(ForgetArgs),
    /// Delete an orphan guest (one carrying the id of no live deployment of this proxdeck)
    /// through the Proxmox API; `resources --orphans` lists them.
    RemoveOrphan(RemoveOrphanArgs),
    /// Running, queued and recent jobs (every operation is a job run by proxdeck's worker).
    Jobs(JobsArgs),
    /// Ask a deployment's queued or running job (or job #N) to stop: terraform saves its
    /// state, the provisioning run is stopped; `retry` continues from there.
    Cancel(CancelArgs),
    /// Run queued jobs (started on demand by the other commands, detached from the terminal).
    #[command(hide = true)]
    Worker,
    /// Check the config, Proxmox (TLS, credentials, privileges, node, storage, bridge,
    /// template), terraform, git and the data dir.
    Doctor(JsonArgs),
    /// Statistics: totals, success rate, deployments per day, time per stage, per framework
    /// (guests imported by sync are not deployments and are not counted).
    Stats(JsonArgs),
    /// List the snapshots of a deployment's guest (Proxmox), with the commit each holds.
    Snapshots(IdArgs),
    /// Take a snapshot of a deployment's whole guest through the Proxmox API (default name:
    /// from the deployed commit and the time).
    Snapshot(SnapshotArgs),
    /// Roll a deployment's guest back to a snapshot: the guest is shut down, rolled back and
    /// started, the app health-checked, and the record's commit set to the snapshot's.
    Restore(RestoreArgs),
    /// A deployment's domains (Caddy on the guest, HTTPS): without a change, list them;
    /// `add NAME` or `remove NAME` rewrites Caddy's config on the guest and reloads it.
    Domains(DomainsArgs),
    /// Turn deploy-on-push on or off: the worker polls the repository's ref (`git ls-remote`,
    /// no webhook) and redeploys when its commit changes. Without on/off: show the state.
    AutoDeploy(AutoDeployArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Deployment id or name.
    pub id: String,
    /// The snapshot's name (letters, digits, - and _, starting with a letter; at most 40).
    pub name: Option<String>,
    /// Queue the job and return.
    #[arg(long)]
    pub detach: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Deployment id or name.
    pub id: String,
    /// The snapshot to return to (`proxdeck snapshots ID` lists them).
    pub snapshot: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Queue the job and return.
    #[arg(long)]
    pub detach: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DomainsArgs {
    /// Deployment id or name.
    pub id: String,
    /// add or remove (without it: list the domains).
    #[arg(value_parser = ["add", "remove"], requires = "name")]
    pub change: Option<String>,
    /// The domain to add or remove (a DNS name such as app.example.com).
    pub name: Option<String>,
    /// Queue the job and return.
    #[arg(long)]
    pub detach: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AutoDeployArgs {
    /// Deployment id or name.
    pub id: String,
    /// on or off.
    #[arg(value_parser = ["on", "off"])]
    pub state: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
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

/// An operation on one deployment: queued as a job, followed to its end unless `--detach`.
#[derive(Debug, Args)]
pub struct OpArgs {
    /// Deployment id or name.
    pub id: String,
    /// Queue the job, print its number and return (the worker goes on; `proxdeck logs -f ID`
    /// follows it).
    #[arg(long)]
    pub detach: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Deployment id or name.
    pub id: String,
    /// Also drop a deployment proxdeck made whose guest or host cannot be reached; names what
    /// may be left behind.
    #[arg(long)]
    pub force: bool,
    /// Queue the job and return.
    #[arg(long)]
    pub detach: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResourcesArgs {
    /// Only the orphans: guests carrying the id of no live deployment of this proxdeck.
    #[arg(long)]
    pub orphans: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RemoveOrphanArgs {
    /// The orphan guest's vmid.
    pub vmid: u32,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Queue the sync and return.
    #[arg(long)]
    pub detach: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// How many recent jobs to list besides the running and queued ones.
    #[arg(long, short = 'n', default_value_t = 20, value_name = "N")]
    pub recent: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Deployment id or name (its active job), or a job number (#12).
    pub target: String,
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
    /// Keep printing new lines: the deployment log until its job has ended (Ctrl-C stops
    /// following; the job goes on); with --app until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print only the last N lines (default: the whole log; with --app: 200).
    #[arg(long, short = 'n', value_name = "N")]
    pub lines: Option<u32>,
    /// Only lines written since WHEN: a duration back from now (90s, 10m, 2h, 3d, 1w) or a
    /// time (2026-11-30T14:00:00Z, 2026-11-30 14:00, 2026-11-30; local time unless it says).
    #[arg(long, value_name = "WHEN", value_parser = super::logs::parse_since, conflicts_with = "app")]
    pub since: Option<i64>,
    /// Remove the logs of deployments deleted more than `[logs] keep_deleted_days` ago, fold
    /// the rest into compact batches, and give the freed space back to the file system.
    #[arg(long, conflicts_with_all = ["id", "app", "follow", "lines", "since"])]
    pub prune: bool,
    /// Print JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// `retry`: an operation, and changes to the deployment's commands and health check.
#[derive(Debug, Args)]
pub struct RetryArgs {
    #[command(flatten)]
    pub op: OpArgs,
    #[command(flatten)]
    pub changes: ChangeArgs,
}

/// What `retry` and `redeploy` may change, as `deploy` takes it; kept for later runs.
#[derive(Debug, Args, Default)]
pub struct ChangeArgs {
    /// Replace the install command from now on.
    #[arg(long, value_name = "CMD")]
    pub install: Option<String>,
    /// Replace the build command from now on ("" skips the build).
    #[arg(long, value_name = "CMD")]
    pub build: Option<String>,
    /// Replace the start command from now on.
    #[arg(long, value_name = "CMD")]
    pub start: Option<String>,
    /// The health check's HTTP path from now on.
    #[arg(long = "health-path", value_name = "PATH")]
    pub health_path: Option<String>,
    /// The HTTP status the health check expects from now on.
    #[arg(long = "health-status", value_name = "CODE")]
    pub health_status: Option<u16>,
    /// The app's folder in the repository from now on ("." for the root).
    #[arg(long, value_name = "PATH")]
    pub subdir: Option<String>,
    /// Debian packages the app needs (repeatable; replaces the list given before).
    #[arg(long = "apt", value_name = "PKG")]
    pub apt: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RedeployArgs {
    /// Deployment id or name.
    pub id: String,
    /// Deploy this branch, tag or commit from now on (default: the deployment's ref).
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    #[command(flatten)]
    pub changes: ChangeArgs,
    /// Queue the job and return.
    #[arg(long)]
    pub detach: bool,
    /// Print the resulting deployment as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Deployment id or name.
    pub id: String,
    /// Switch to the kept release of this commit (short or full id) instead of the previous
    /// good one (`proxdeck show ID` lists the releases).
    #[arg(long = "to", value_name = "COMMIT")]
    pub to: Option<String>,
    /// Queue the job and return.
    #[arg(long)]
    pub detach: bool,
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
    /// For a guest or host that cannot be reached any more: record DELETED even when the
    /// removal cannot be done or confirmed, naming what may be left behind.
    #[arg(long)]
    pub force: bool,
    /// Queue the job and return.
    #[arg(long)]
    pub detach: bool,
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
    /// Private repository over SSH: proxdeck makes a key pair for this deployment, prints its
    /// public half and where to add it as a read-only deploy key (GitHub, GitLab, Gitea), and
    /// pins the Git host's key. The first run stops there; run the same command again after.
    #[arg(long = "deploy-key", conflicts_with = "git_token_env")]
    pub deploy_key: bool,
    /// Private repository over HTTPS: the NAME of an environment variable holding a read-only
    /// token (e.g. GITHUB_TOKEN). Its value is kept 0600 in the data dir, handed to git through
    /// GIT_ASKPASS, masked in logs; a later retry/redeploy from a shell where it is set
    /// renews it.
    #[arg(long = "git-token-env", value_name = "VAR")]
    pub git_token_env: Option<String>,
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
    /// The app's folder in the repository (a monorepo), relative to its root: detection,
    /// install, build, start and a static site's output happen there.
    #[arg(long, value_name = "PATH")]
    pub subdir: Option<String>,
    /// A Debian package the app needs on the guest (repeatable), e.g. --apt
    /// default-libmysqlclient-dev --apt pkg-config --apt build-essential for mysqlclient.
    #[arg(long = "apt", value_name = "PKG")]
    pub apt: Vec<String>,
    /// Serve the app under this domain through Caddy on the guest, with HTTPS (repeatable).
    #[arg(long = "domain", value_name = "NAME")]
    pub domains: Vec<String>,
    /// Certificates for the domains: acme (automatic, from Let's Encrypt; the default),
    /// internal (Caddy's local CA, for internal networks) or off (plain HTTP).
    #[arg(long, value_name = "MODE", value_parser = ["acme", "internal", "off"])]
    pub tls: Option<String>,
    /// With --domain: keep the app's own port reachable from beyond the guest too (by
    /// default only Caddy, on the guest itself, reaches it).
    #[arg(long = "expose-port")]
    pub expose_port: bool,
    /// The container's OS template (a volume id, e.g. local:vztmpl/debian-12-...tar.zst)
    /// instead of guest.os_template.
    #[arg(long = "os-template", value_name = "VOLID")]
    pub os_template: Option<String>,
    /// Show what would be created (Terraform's plan: resources, CPU, memory, disk, node,
    /// bridge) and stop: nothing is created, and no deployment is recorded.
    #[arg(long)]
    pub plan: bool,
    /// Queue the deploy, print its id and job number and return; the worker goes on without
    /// this terminal (`proxdeck logs -f ID` follows it).
    #[arg(long)]
    pub detach: bool,
    /// Redeploy on push: the worker polls the ref (`git ls-remote`, every
    /// auto_deploy.interval_secs) and redeploys when its commit changes. No webhook needed.
    #[arg(long = "auto-deploy")]
    pub auto_deploy: bool,
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
