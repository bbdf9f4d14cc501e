//! Configuration: `config.toml` (XDG config dir, or `--config` / `PROXDECK_CONFIG`), overridden
//! by the environment with the bpg provider's own names (`PROXMOX_VE_ENDPOINT`,
//! `PROXMOX_VE_API_TOKEN`, `PROXMOX_VE_INSECURE`), validated into a typed [`Config`].
//!
//! This module owns reading and checking settings and the commented template that
//! `proxdeck config init` writes. It does no network I/O. Invalid settings are reported with
//! the key and the problem (`proxmox.endpoint: ...`).

use ipnet::Ipv4Net;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error(
        "proxmox is not configured: set proxmox.endpoint and proxmox.api_token (or proxmox.username and a password) in {path} (or PROXMOX_VE_ENDPOINT and PROXMOX_VE_API_TOKEN); `proxdeck config init` writes a template"
    )]
    NoProxmox { path: PathBuf },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

// ---- the file as written by users -------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    proxmox: RawProxmox,
    #[serde(default)]
    guest: RawGuest,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    terraform: RawTerraform,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    vm: RawVm,
    #[serde(default)]
    logs: RawLogs,
    #[serde(default)]
    jobs: RawJobs,
    #[serde(default)]
    snapshots: RawSnapshots,
    #[serde(default)]
    auto_deploy: RawAutoDeploy,
    #[serde(default)]
    releases: RawReleases,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReleases {
    keep: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshots {
    before: Option<Vec<String>>,
    keep: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutoDeploy {
    interval_secs: Option<u64>,
    jitter_secs: Option<u64>,
    max_backoff_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    max_parallel: Option<u32>,
    idle_exit_secs: Option<u64>,
}

/// `[logs]`: how long the logs of deleted deployments are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    keep_deleted_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxmox {
    endpoint: Option<String>,
    api_token: Option<String>,
    ca_file: Option<PathBuf>,
    insecure: Option<bool>,
    node: Option<String>,
    fingerprint: Option<String>,
    username: Option<String>,
    password: Option<String>,
    timeout_secs: Option<u64>,
    retries: Option<u32>,
    task_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuest {
    datastore: Option<String>,
    bridge: Option<String>,
    vlan: Option<u32>,
    os_template: Option<String>,
    os_type: Option<String>,
    swap_mib: Option<u32>,
    ssh_user: Option<String>,
    ssh_port: Option<u16>,
    app_root: Option<String>,
    vmid_range: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    pool: Option<String>,
    prefix: Option<u8>,
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerraform {
    binary: Option<PathBuf>,
    templates_dir: Option<PathBuf>,
    mirror: Option<PathBuf>,
    backend: Option<RawBackend>,
}

/// `[terraform.backend]`: a remote state backend for every deployment's workspace.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    config: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
}

/// `[vm]`: how VM deployments clone their cloud-init template.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    template_vmid: Option<u32>,
    template_node: Option<String>,
    clone: Option<String>,
    disk_interface: Option<String>,
    user: Option<String>,
    cpu_type: Option<String>,
    cloudinit_datastore: Option<String>,
    agent_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    terraform_secs: Option<u64>,
    ssh_secs: Option<u64>,
    provision_secs: Option<u64>,
    health_secs: Option<u64>,
    address_secs: Option<u64>,
    terraform_init_secs: Option<u64>,
    terraform_plan_secs: Option<u64>,
    terraform_apply_secs: Option<u64>,
    terraform_destroy_secs: Option<u64>,
}

// ---- the typed, checked configuration ---------------------------------------------------

/// The API token, kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxmoxConfig {
    pub endpoint: url::Url,
    /// Empty when the user logs in with `username` and `password` instead (see
    /// [`ProxmoxConfig::has_token`]); a token wins when both are set, as with the bpg provider.
    pub api_token: Secret,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    /// A node name, or [`AUTO_NODE`]: each guest goes to the online node with the most free
    /// memory that fits it.
    pub node: String,
    /// SHA-256 of the certificate Proxmox serves, pinned (`proxmox.fingerprint`): verified
    /// instead of a CA chain, the usual case with Proxmox's self-signed certificate.
    pub fingerprint: Option<[u8; 32]>,
    /// `USER@REALM` for ticket logins (`proxmox.username` or `PROXMOX_VE_USERNAME`).
    pub username: Option<String>,
    /// The password for ticket logins (`PROXMOX_VE_PASSWORD` or `proxmox.password`).
    pub password: Option<Secret>,
    /// Every API call's timeout (`proxmox.timeout_secs`, default 30).
    pub timeout: Duration,
    /// Retries of a call that is safe to repeat after a connection error or a 5xx (default 3).
    pub retries: u32,
    /// How long proxdeck waits for a Proxmox task (start, stop, ...) to end (default 600 s).
    pub task_timeout: Duration,
}

/// `proxmox.node` / `deploy --node` value that asks proxdeck to place the guest itself.
pub const AUTO_NODE: &str = "auto";

impl ProxmoxConfig {
    /// True when an API token is configured (else the username and password are).
    pub fn has_token(&self) -> bool {
        !self.api_token.expose().is_empty()
    }

    /// The credentials as the bpg provider reads them from its environment: the token, or
    /// the username and password. For child processes only; never for argv or files.
    pub fn provider_env(&self) -> Vec<(String, String)> {
        if self.has_token() {
            return vec![(
                "PROXMOX_VE_API_TOKEN".to_string(),
                self.api_token.expose().to_string(),
            )];
        }
        let mut env = Vec::new();
        if let Some(u) = &self.username {
            env.push(("PROXMOX_VE_USERNAME".to_string(), u.clone()));
        }
        if let Some(p) = &self.password {
            env.push(("PROXMOX_VE_PASSWORD".to_string(), p.expose().to_string()));
        }
        env
    }

    /// The secrets to mask in logs: the token, its secret part, and the password.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.has_token() {
            let token = self.api_token.expose().to_string();
            if let Some((_, secret)) = token.split_once('=') {
                out.push(secret.to_string());
            }
            out.push(token);
        }
        if let Some(p) = &self.password {
            out.push(p.expose().to_string());
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GuestConfig {
    pub datastore: String,
    pub bridge: String,
    pub vlan: Option<u32>,
    pub os_template: String,
    pub os_type: String,
    pub swap_mib: u32,
    pub ssh_user: String,
    pub ssh_port: u16,
    /// Folder on the guest under which each app gets its own folder.
    pub app_root: String,
    /// Where proxdeck picks vmids for new guests (`guest.vmid_range`, `"LO-HI"`); each is
    /// reserved in the store before preflight, so parallel deployments never share one.
    pub vmid_range: std::ops::RangeInclusive<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// Addresses handed out as static guest IPs; `None`: DHCP.
    pub pool: Option<Ipv4Net>,
    /// Prefix length of the guests' subnet (the netmask written into the guest).
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TerraformConfig {
    pub binary: PathBuf,
    pub templates_dir: Option<PathBuf>,
    /// A provider mirror folder (`terraform providers mirror` layout) for clusters without
    /// internet access: providers found there are installed from it, others from their registry.
    pub mirror: Option<PathBuf>,
    /// A remote state backend; `None`: local state in each deployment's workspace.
    pub backend: Option<BackendConfig>,
}

/// Terraform backends proxdeck accepts in `terraform.backend.type`.
pub const BACKENDS: &[&str] = &[
    "azurerm",
    "consul",
    "cos",
    "gcs",
    "http",
    "kubernetes",
    "local",
    "oss",
    "pg",
    "s3",
];

/// A remote state backend (`[terraform.backend]`). The workspace gets `backend "TYPE" {}`;
/// the settings reach `terraform init` as `-backend-config` through its environment
/// (`TF_CLI_ARGS_init`), never through argv or a file.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub kind: String,
    /// Plain settings; `{id}` in a value becomes the deployment's id (one state per deployment).
    pub config: std::collections::BTreeMap<String, String>,
    /// Settings read from proxdeck's environment at run time: setting -> variable name (secrets
    /// such as a connection string or a password).
    pub env: std::collections::BTreeMap<String, String>,
}

/// How VM deployments are made: a clone of a cloud-init template (`[vm]`).
#[derive(Debug, Clone, PartialEq)]
pub struct VmConfig {
    /// The template's vmid; VM deployments need it.
    pub template_vmid: Option<u32>,
    /// The node that holds the template, when it is not the deployment's node (cross-node clone).
    pub template_node: Option<String>,
    /// A full clone (default), or a linked clone (copy-on-write storage only).
    pub full_clone: bool,
    /// The template's boot-disk slot (`scsi0`, `virtio0`, ...); the clone's disk reuses it.
    pub disk_interface: String,
    /// The cloud-init user, created with proxdeck's SSH key; proxdeck logs in as this user.
    pub user: String,
    pub cpu_type: String,
    /// Storage for the cloud-init drive (default: `guest.datastore`).
    pub cloudinit_datastore: String,
    /// How long the provider waits for the QEMU guest agent.
    pub agent_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub terraform: Duration,
    pub ssh: Duration,
    pub provision: Duration,
    pub health: Duration,
    /// How long the address stage polls Proxmox for the guest's IP (`timeouts.address_secs`).
    pub address: Duration,
    /// Per terraform command (`timeouts.terraform_init_secs`, ...); default `terraform_secs`.
    pub terraform_init: Duration,
    pub terraform_plan: Duration,
    pub terraform_apply: Duration,
    pub terraform_destroy: Duration,
}

/// How proxdeck's worker runs jobs (`[jobs]`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobsConfig {
    /// Jobs running at once; more wait in the queue (`jobs.max_parallel`, default 4).
    pub max_parallel: usize,
    /// How long the worker stays without work before it exits (`jobs.idle_exit_secs`).
    pub idle_exit: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            max_parallel: 4,
            idle_exit: Duration::from_secs(10),
        }
    }
}

/// Snapshots of a deployment's whole guest before a change (`[snapshots]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotsConfig {
    /// The operations a snapshot is taken before: `redeploy`, `rollback`, `destroy`
    /// (default: all three; `[]` takes none).
    pub before: Vec<String>,
    /// How many of the snapshots proxdeck took before a change it keeps per guest (older
    /// ones are deleted; snapshots taken by name or by hand are never deleted).
    pub keep: u32,
}

impl SnapshotsConfig {
    pub const OPS: [&'static str; 3] = ["redeploy", "rollback", "destroy"];

    pub fn before(&self, op: &str) -> bool {
        self.before.iter().any(|o| o == op)
    }
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig {
            before: SnapshotsConfig::OPS.iter().map(|s| s.to_string()).collect(),
            keep: 5,
        }
    }
}

/// Release folders on a guest (`[releases]`): each deploy builds a new one beside the running
/// one; `rollback` switches back to a kept one without building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasesConfig {
    /// How many releases are kept per app on its guest (the current one and the previous
    /// good one are never deleted, even beyond this).
    pub keep: u32,
}

impl Default for ReleasesConfig {
    fn default() -> Self {
        ReleasesConfig { keep: 5 }
    }
}

/// How the worker polls the repositories of deployments with auto-deploy on
/// (`[auto_deploy]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoDeployConfig {
    /// Time between two looks at a deployment's ref (`git ls-remote`).
    pub interval: Duration,
    /// Up to this much is added at random to each wait, so many deployments do not poll the
    /// same Git host at the same moment.
    pub jitter: Duration,
    /// The longest wait after failures in a row (the wait doubles with each failure).
    pub max_backoff: Duration,
}

impl Default for AutoDeployConfig {
    fn default() -> Self {
        AutoDeployConfig {
            interval: Duration::from_secs(60),
            jitter: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
        }
    }
}

/// `[logs]`: retention of deployment logs.
#[derive(Debug, Clone, PartialEq)]
pub struct LogsConfig {
    /// How long the log of a deleted (destroyed) deployment is kept (`logs.keep_deleted_days`,
    /// default 30; 0 removes it at the next start of proxdeck or `proxdeck logs --prune`).
    pub keep_deleted: Duration,
}

/// Days a deleted deployment's log is kept unless `logs.keep_deleted_days` says otherwise.
pub const DEFAULT_KEEP_DELETED_DAYS: u32 = 30;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the settings came from (shown by `doctor` and in errors).
    pub path: PathBuf,
    /// `None` when neither the file nor the environment configure Proxmox; commands that need
    /// it say so with [`Config::proxmox`].
    proxmox: Option<ProxmoxConfig>,
    pub guest: GuestConfig,
    pub network: NetworkConfig,
    pub terraform: TerraformConfig,
    pub timeouts: Timeouts,
    pub vm: VmConfig,
    pub logs: LogsConfig,
    pub jobs: JobsConfig,
    pub snapshots: SnapshotsConfig,
    pub auto_deploy: AutoDeployConfig,
    pub releases: ReleasesConfig,
    /// Warnings for the user (e.g. a config file readable by others).
    pub warnings: Vec<String>,
}

impl Config {
    /// Loads the file at `path` (a missing file means all defaults) and applies `env`.
    pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let raw = match std::fs::read_to_string(path) {
            Ok(text) => {
                if let Some(w) = permission_warning(path) {
                    warnings.push(w);
                }
                toml::from_str::<RawConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string().trim_end().to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RawConfig::default(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let mut config = Config::from_raw(raw, env)?;
        config.path = path.to_path_buf();
        config.warnings = warnings;
        Ok(config)
    }

    /// Parses TOML text (for tests and `config check`), with `env` applied.
    pub fn parse(text: &str, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("config.toml"),
            message: e.to_string().trim_end().to_string(),
        })?;
        Config::from_raw(raw, env)
    }

    /// The Proxmox settings, or an error saying how to configure them.
    pub fn proxmox(&self) -> Result<&ProxmoxConfig, ConfigError> {
        self.proxmox.as_ref().ok_or_else(|| ConfigError::NoProxmox {
            path: self.path.clone(),
        })
    }

    fn from_raw(raw: RawConfig, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let env_get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();

        // Proxmox: environment first (the bpg provider's names), then the file.
        let endpoint = env_get("PROXMOX_VE_ENDPOINT").or(raw.proxmox.endpoint);
        let token = env_get("PROXMOX_VE_API_TOKEN").or(raw.proxmox.api_token);
        let insecure = match env_get("PROXMOX_VE_INSECURE") {
            Some(v) => parse_bool(&v).ok_or_else(|| {
                invalid("PROXMOX_VE_INSECURE", format!("{v:?} is not true or false"))
            })?,
            None => raw.proxmox.insecure.unwrap_or(false),
        };
        let node = raw.proxmox.node.unwrap_or_else(|| AUTO_NODE.to_string());
        crate::domain::spec::validate_node(&node).map_err(|m| invalid("proxmox.node", m))?;
        let username = env_get("PROXMOX_VE_USERNAME").or(raw.proxmox.username);
        let password = env_get("PROXMOX_VE_PASSWORD").or(raw.proxmox.password);
        let login = match (username, password) {
            (None, None) => None,
            (Some(u), Some(p)) => {
                check_username(&u)?;
                Some((u, p))
            }
            (Some(_), None) => {
                return Err(invalid(
                    "proxmox.password",
                    "missing: proxmox.username is set; set PROXMOX_VE_PASSWORD (or proxmox.password in this 0600 file)",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "proxmox.username",
                    "missing: a password is set; set proxmox.username (USER@REALM, e.g. root@pam)",
                ));
            }
        };
        let fingerprint = match &raw.proxmox.fingerprint {
            Some(f) => Some(parse_fingerprint(f)?),
            None => None,
        };
        if fingerprint.is_some() && raw.proxmox.ca_file.is_some() {
            return Err(invalid(
                "proxmox.fingerprint",
                "set either proxmox.fingerprint (pin the certificate) or proxmox.ca_file (trust a CA), not both",
            ));
        }
        let api_secs = |key: &str, v: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
            match v {
                Some(0) => Err(invalid(key, "0 seconds leaves no time; use at least 1")),
                Some(s) => Ok(Duration::from_secs(s)),
                None => Ok(Duration::from_secs(default)),
            }
        };
        let api_timeout = api_secs("proxmox.timeout_secs", raw.proxmox.timeout_secs, 30)?;
        let task_timeout = api_secs(
            "proxmox.task_timeout_secs",
            raw.proxmox.task_timeout_secs,
            600,
        )?;
        let retries = match raw.proxmox.retries {
            Some(r) if r > 10 => {
                return Err(invalid(
                    "proxmox.retries",
                    format!("{r} is too many; use 0-10"),
                ));
            }
            r => r.unwrap_or(3),
        };
        // A token wins over a login, as with the bpg provider.
        let token = match (token, &login) {
            (None, Some(_)) => Some(String::new()),
            (t, _) => t,
        };
        let proxmox = match (endpoint, token) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(invalid(
                    "proxmox.endpoint",
                    "missing: the API token is set but not the URL (https://HOST:8006/)",
                ));
            }
            (Some(_), None) => {
                return Err(invalid(
                    "proxmox.api_token",
                    "missing: set USER@REALM!TOKENID=SECRET (or PROXMOX_VE_API_TOKEN), or proxmox.username and a password",
                ));
            }
            (Some(endpoint), Some(token)) => {
                let endpoint = parse_endpoint(&endpoint)?;
                if !token.is_empty() {
                    check_token(&token)?;
                }
                if let Some(ca) = &raw.proxmox.ca_file
                    && !ca.is_file()
                {
                    return Err(invalid(
                        "proxmox.ca_file",
                        format!("{} is not a readable file", ca.display()),
                    ));
                }
                let (username, password) = match login {
                    Some((u, p)) => (Some(u), Some(Secret::new(p))),
                    None => (None, None),
                };
                Some(ProxmoxConfig {
                    endpoint,
                    api_token: Secret::new(token),
                    ca_file: raw.proxmox.ca_file,
                    insecure,
                    node,
                    fingerprint,
                    username,
                    password,
                    timeout: api_timeout,
                    retries,
                    task_timeout,
                })
            }
        };

        let g = raw.guest;
        let guest = GuestConfig {
            datastore: checked_word("guest.datastore", g.datastore, "local-lvm")?,
            bridge: checked_word("guest.bridge", g.bridge, "vmbr0")?,
            vlan: match g.vlan {
                Some(v) if !(1..=4094).contains(&v) => {
                    return Err(invalid(
                        "guest.vlan",
                        format!("{v} is not a VLAN id (1-4094)"),
                    ));
                }
                v => v,
            },
            os_template: {
                let t = g
                    .os_template
                    .unwrap_or_else(|| DEFAULT_OS_TEMPLATE.to_string());
                if !t.contains(':') || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(invalid(
                        "guest.os_template",
                        format!("{t:?} is not a volume id like {DEFAULT_OS_TEMPLATE}"),
                    ));
                }
                t
            },
            os_type: checked_word("guest.os_type", g.os_type, "debian")?,
            swap_mib: g.swap_mib.unwrap_or(512),
            ssh_user: {
                let u = g.ssh_user.unwrap_or_else(|| "root".to_string());
                if u.is_empty()
                    || !u
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                    || u.starts_with('-')
                {
                    return Err(invalid(
                        "guest.ssh_user",
                        format!("{u:?} is not a user name"),
                    ));
                }
                u
            },
            ssh_port: match g.ssh_port {
                Some(0) => return Err(invalid("guest.ssh_port", "0 is not a port")),
                p => p.unwrap_or(22),
            },
            app_root: {
                let root = g.app_root.unwrap_or_else(|| "/opt/proxdeck".to_string());
                validate_app_root(&root).map_err(|m| invalid("guest.app_root", m))?
            },
            vmid_range: match g.vmid_range {
                Some(r) => parse_vmid_range(&r)?,
                None => DEFAULT_VMID_RANGE,
            },
        };

        let n = raw.network;
        let pool = match n.pool {
            Some(p) => Some(parse_pool(&p)?),
            None => None,
        };
        let prefix = n.prefix.unwrap_or(24);
        if !(1..=32).contains(&prefix) {
            return Err(invalid("network.prefix", format!("{prefix} is not 1-32")));
        }
        let gateway = match n.gateway {
            Some(gw) => Some(gw.parse::<Ipv4Addr>().map_err(|_| {
                invalid("network.gateway", format!("{gw:?} is not an IPv4 address"))
            })?),
            None => None,
        };
        if pool.is_some() && gateway.is_none() {
            return Err(invalid(
                "network.gateway",
                "required with network.pool: guests with a static address need a gateway",
            ));
        }

        let t = raw.terraform;
        let terraform = TerraformConfig {
            binary: t.binary.unwrap_or_else(|| PathBuf::from("terraform")),
            templates_dir: t.templates_dir,
            mirror: t.mirror,
            backend: match t.backend {
                Some(b) => Some(parse_backend(b)?),
                None => None,
            },
        };
        if let Some(dir) = &terraform.mirror
            && !dir.is_dir()
        {
            return Err(invalid(
                "terraform.mirror",
                format!(
                    "{} is not a folder (make one with `terraform providers mirror DIR`)",
                    dir.display()
                ),
            ));
        }
        if let Some(dir) = &terraform.templates_dir
            && !dir.is_dir()
        {
            return Err(invalid(
                "terraform.templates_dir",
                format!("{} is not a folder", dir.display()),
            ));
        }

        let secs = |key: &str, v: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
            match v {
                Some(0) => Err(invalid(key, "0 seconds leaves no time; use at least 1")),
                Some(s) => Ok(Duration::from_secs(s)),
                None => Ok(Duration::from_secs(default)),
            }
        };
        let terraform_secs = secs("timeouts.terraform_secs", raw.timeouts.terraform_secs, 1800)?;
        // Each terraform command has its own limit; unset, it follows `terraform_secs` (init
        // and plan capped, as they are quick unless something hangs).
        let tf = terraform_secs.as_secs();
        let timeouts = Timeouts {
            terraform: terraform_secs,
            ssh: secs("timeouts.ssh_secs", raw.timeouts.ssh_secs, 300)?,
            provision: secs("timeouts.provision_secs", raw.timeouts.provision_secs, 1800)?,
            health: secs("timeouts.health_secs", raw.timeouts.health_secs, 120)?,
            address: secs("timeouts.address_secs", raw.timeouts.address_secs, 300)?,
            terraform_init: secs(
                "timeouts.terraform_init_secs",
                raw.timeouts.terraform_init_secs,
                tf.min(600),
            )?,
            terraform_plan: secs(
                "timeouts.terraform_plan_secs",
                raw.timeouts.terraform_plan_secs,
                tf.min(900),
            )?,
            terraform_apply: secs(
                "timeouts.terraform_apply_secs",
                raw.timeouts.terraform_apply_secs,
                tf,
            )?,
            terraform_destroy: secs(
                "timeouts.terraform_destroy_secs",
                raw.timeouts.terraform_destroy_secs,
                tf,
            )?,
        };
        let vm = parse_vm(raw.vm, &guest)?;
        let jobs = JobsConfig {
            max_parallel: match raw.jobs.max_parallel {
                Some(0) => {
                    return Err(invalid(
                        "jobs.max_parallel",
                        "0 would never run a job; use at least 1",
                    ));
                }
                Some(n) if n > 64 => {
                    return Err(invalid(
                        "jobs.max_parallel",
                        format!("{n} is more than proxdeck runs at once (64 at most)"),
                    ));
                }
                Some(n) => n as usize,
                None => JobsConfig::default().max_parallel,
            },
            idle_exit: secs(
                "jobs.idle_exit_secs",
                raw.jobs.idle_exit_secs,
                JobsConfig::default().idle_exit.as_secs(),
            )?,
        };
        let snapshots = parse_snapshots(raw.snapshots)?;
        let auto_deploy = parse_auto_deploy(raw.auto_deploy)?;
        let releases = match raw.releases.keep {
            Some(n) if !(2..=50).contains(&n) => {
                return Err(invalid(
                    "releases.keep",
                    format!(
                        "{n}: keep between 2 (the running release and the one before, what `rollback` needs) and 50 releases"
                    ),
                ));
            }
            Some(keep) => ReleasesConfig { keep },
            None => ReleasesConfig::default(),
        };
        let keep_days = match raw.logs.keep_deleted_days {
            Some(d) if d > 36_500 => {
                return Err(invalid(
                    "logs.keep_deleted_days",
                    format!("{d} days is over a hundred years; use 0-36500"),
                ));
            }
            d => d.unwrap_or(DEFAULT_KEEP_DELETED_DAYS),
        };
        let logs = LogsConfig {
            keep_deleted: Duration::from_secs(u64::from(keep_days) * 86_400),
        };

        Ok(Config {
            path: PathBuf::new(),
            proxmox,
            guest,
            network: NetworkConfig {
                pool,
                prefix,
                gateway,
            },
            terraform,
            timeouts,
            vm,
            logs,
            jobs,
            snapshots,
            auto_deploy,
            releases,
            warnings: Vec::new(),
        })
    }
}

fn parse_snapshots(raw: RawSnapshots) -> Result<SnapshotsConfig, ConfigError> {
    let mut out = SnapshotsConfig::default();
    if let Some(before) = raw.before {
        for op in &before {
            if !SnapshotsConfig::OPS.contains(&op.as_str()) {
                return Err(invalid(
                    "snapshots.before",
                    format!(
                        "{op:?} is not an operation a snapshot can precede; use some of {:?} (or [] for none)",
                        SnapshotsConfig::OPS
                    ),
                ));
            }
        }
        out.before = before;
    }
    match raw.keep {
        Some(0) => {
            return Err(invalid(
                "snapshots.keep",
                "0 would delete every snapshot right after taking it; use at least 1 (or snapshots.before = [] to take none)",
            ));
        }
        Some(n) if n > 100 => {
            return Err(invalid(
                "snapshots.keep",
                format!("{n} is more than proxdeck keeps per guest (100 at most)"),
            ));
        }
        Some(n) => out.keep = n,
        None => {}
    }
    Ok(out)
}

fn parse_auto_deploy(raw: RawAutoDeploy) -> Result<AutoDeployConfig, ConfigError> {
    let d = AutoDeployConfig::default();
    let interval = match raw.interval_secs {
        Some(0) => {
            return Err(invalid(
                "auto_deploy.interval_secs",
                "0 would poll without pause; use at least 1",
            ));
        }
        Some(s) if s > 86_400 => {
            return Err(invalid(
                "auto_deploy.interval_secs",
                format!("{s} is more than a day; use at most 86400"),
            ));
        }
        Some(s) => Duration::from_secs(s),
        None => d.interval,
    };
    let jitter = match raw.jitter_secs {
        Some(s) if Duration::from_secs(s) > interval => {
            return Err(invalid(
                "auto_deploy.jitter_secs",
                format!(
                    "{s} is more than the interval ({} s); use at most that",
                    interval.as_secs()
                ),
            ));
        }
        Some(s) => Duration::from_secs(s),
        None => d.jitter.min(interval / 2),
    };
    let max_backoff = match raw.max_backoff_secs {
        Some(s) if Duration::from_secs(s) < interval => {
            return Err(invalid(
                "auto_deploy.max_backoff_secs",
                format!(
                    "{s} is less than the interval ({} s); use at least that",
                    interval.as_secs()
                ),
            ));
        }
        Some(s) if s > 7 * 86_400 => {
            return Err(invalid(
                "auto_deploy.max_backoff_secs",
                format!("{s} is more than a week; use at most 604800"),
            ));
        }
        Some(s) => Duration::from_secs(s),
        None => d.max_backoff.max(interval),
    };
    Ok(AutoDeployConfig {
        interval,
        jitter,
        max_backoff,
    })
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_endpoint(s: &str) -> Result<url::Url, ConfigError> {
    let key = "proxmox.endpoint";
    let url = url::Url::parse(s).map_err(|e| {
        invalid(
            key,
            format!("{s:?} is not a URL ({e}); e.g. https://pve.lan:8006/"),
        )
    })?;
    if url.scheme() != "https" {
        return Err(invalid(key, format!("{s:?} must use https")));
    }
    if url.host_str().is_none() {
        return Err(invalid(key, format!("{s:?} has no host")));
    }
    Ok(url)
}

/// `USER@REALM!TOKENID=SECRET`, as Proxmox prints it and the bpg provider expects it.
fn check_token(t: &str) -> Result<(), ConfigError> {
    let ok = t
        .split_once('=')
        .and_then(|(id, secret)| {
            let (user, tokenid) = id.split_once('!')?;
            Some(user.contains('@') && !tokenid.is_empty() && !secret.is_empty())
        })
        .unwrap_or(false);
    if !ok || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        // Never echo the value: it is a secret.
        return Err(invalid(
            "proxmox.api_token",
            "not of the form USER@REALM!TOKENID=SECRET",
        ));
    }
    Ok(())
}

/// `USER@REALM` for ticket logins.
fn check_username(u: &str) -> Result<(), ConfigError> {
    let ok = u
        .split_once('@')
        .is_some_and(|(user, realm)| !user.is_empty() && !realm.is_empty())
        && !u.contains('!')
        && !u.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "proxmox.username",
            format!("{u:?} is not USER@REALM (e.g. root@pam or deploy@pve)"),
        ))
    }
}

/// A SHA-256 certificate fingerprint as Proxmox shows it (`AB:CD:...`, 32 bytes), with or
/// without colons, any case.
/// The folder apps live in on their guests (`guest.app_root`), checked the way the
/// provisioning and removal scripts check each app's folder (`APP_ROOT/NAME`): an absolute
/// path of letters, digits, '_', '-', '.' and '/', without '..', below `/` (so the app's
/// folder is at least two levels down). Shared by the config and the script renderers, so a
/// root the config accepts is never refused on the guest (where a refusal would also make
/// the deployment impossible to destroy). Returns it without trailing slashes.
pub fn validate_app_root(root: &str) -> Result<String, String> {
    let trimmed = root.trim_end_matches('/');
    if !root.starts_with('/') {
        return Err(format!(
            "{root:?} must be an absolute path, e.g. /opt/proxdeck"
        ));
    }
    if trimmed.is_empty() {
        return Err(format!(
            "{root:?} is the root folder; apps need a folder of their own, e.g. /opt/proxdeck"
        ));
    }
    if let Some(c) = trimmed
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_./-".contains(*c)))
    {
        return Err(format!(
            "{root:?} holds {c:?}; use letters, digits, '_', '-', '.' and '/' (the provisioning scripts refuse anything else)"
        ));
    }
    if trimmed.contains("..") || trimmed.contains("//") {
        return Err(format!("{root:?} must not contain '..' or '//'"));
    }
    Ok(trimmed.to_string())
}

pub fn parse_fingerprint(f: &str) -> Result<[u8; 32], ConfigError> {
    let hex: String = f
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let bad = || {
        invalid(
            "proxmox.fingerprint",
            format!(
                "{f:?} is not a SHA-256 fingerprint (64 hex digits, e.g. AB:CD:...; the node's Summary > Certificates shows it)"
            ),
        )
    };
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn checked_word(key: &str, v: Option<String>, default: &str) -> Result<String, ConfigError> {
    let v = v.unwrap_or_else(|| default.to_string());
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            key,
            format!("{v:?} may hold only letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(v)
}

/// Proxmox's own range of guest ids; the default `guest.vmid_range`.
pub const DEFAULT_VMID_RANGE: std::ops::RangeInclusive<u32> = 100..=999_999_999;

/// `guest.vmid_range`: `"LO-HI"` inside Proxmox's range of guest ids.
fn parse_vmid_range(r: &str) -> Result<std::ops::RangeInclusive<u32>, ConfigError> {
    let key = "guest.vmid_range";
    let bad = || {
        invalid(
            key,
            format!("{r:?} is not a range of vmids like \"10000-19999\""),
        )
    };
    let (lo, hi) = r.trim().split_once('-').ok_or_else(bad)?;
    let lo: u32 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u32 = hi.trim().parse().map_err(|_| bad())?;
    if lo > hi {
        return Err(invalid(key, format!("{r:?} starts after it ends")));
    }
    if !DEFAULT_VMID_RANGE.contains(&lo) || !DEFAULT_VMID_RANGE.contains(&hi) {
        return Err(invalid(
            key,
            format!("{r:?} leaves Proxmox's range of guest ids (100-999999999)"),
        ));
    }
    Ok(lo..=hi)
}

/// `[terraform.backend]`: a known backend type, setting names terraform accepts, values
/// without control characters, environment variable names, and `{id}` somewhere so that
/// deployments never share a state.
fn parse_backend(b: RawBackend) -> Result<BackendConfig, ConfigError> {
    let kind = b.kind.ok_or_else(|| {
        invalid(
            "terraform.backend.type",
            format!("missing: one of {}", BACKENDS.join(", ")),
        )
    })?;
    if !BACKENDS.contains(&kind.as_str()) {
        return Err(invalid(
            "terraform.backend.type",
            format!(
                "{kind:?} is not a backend proxdeck knows: one of {}",
                BACKENDS.join(", ")
            ),
        ));
    }
    let setting_name = |s: &str| {
        !s.is_empty()
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    for (k, v) in &b.config {
        if !setting_name(k) {
            return Err(invalid(
                &format!("terraform.backend.config.{k}"),
                "not a backend setting name (lowercase letters, digits, '_')",
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(invalid(
                &format!("terraform.backend.config.{k}"),
                "holds a control character",
            ));
        }
    }
    for (k, var) in &b.env {
        if !setting_name(k) {
            return Err(invalid(
                &format!("terraform.backend.env.{k}"),
                "not a backend setting name (lowercase letters, digits, '_')",
            ));
        }
        let ok = !var.is_empty()
            && !var.starts_with(|c: char| c.is_ascii_digit())
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(invalid(
                &format!("terraform.backend.env.{k}"),
                format!("{var:?} is not an environment variable name"),
            ));
        }
        if b.config.contains_key(k) {
            return Err(invalid(
                &format!("terraform.backend.env.{k}"),
                "also set in terraform.backend.config; keep one",
            ));
        }
    }
    if !b.config.values().any(|v| v.contains("{id}")) {
        return Err(invalid(
            "terraform.backend.config",
            "no value holds {id}: every deployment needs its own state (e.g. key = \"proxdeck/{id}.tfstate\" for s3, schema_name = \"proxdeck_{id}\" for pg, path = \".../{id}.tfstate\" for local)",
        ));
    }
    Ok(BackendConfig {
        kind,
        config: b.config,
        env: b.env,
    })
}

/// A disk slot as Proxmox names them: `scsi0`-`scsi30`, `virtio0`-`virtio15`, `sata0`-`sata5`,
/// `ide0`-`ide3`.
pub fn valid_disk_interface(s: &str) -> bool {
    let digits = s.trim_start_matches(|c: char| c.is_ascii_lowercase());
    let bus = &s[..s.len() - digits.len()];
    let max = match bus {
        "scsi" => 30,
        "virtio" => 15,
        "sata" => 5,
        "ide" => 3,
        _ => return false,
    };
    !digits.is_empty()
        && digits.len() <= 2
        && digits.parse::<u32>().is_ok_and(|n| n <= max)
        && !(digits.len() == 2 && digits.starts_with('0'))
}

/// `[vm]`: the template to clone and how.
fn parse_vm(v: RawVm, guest: &GuestConfig) -> Result<VmConfig, ConfigError> {
    if let Some(id) = v.template_vmid
        && !DEFAULT_VMID_RANGE.contains(&id)
    {
        return Err(invalid(
            "vm.template_vmid",
            format!("{id} is not a Proxmox vmid (100-999999999)"),
        ));
    }
    if let Some(n) = &v.template_node {
        crate::domain::spec::validate_node(n).map_err(|m| invalid("vm.template_node", m))?;
    }
    let full_clone = match v.clone.as_deref() {
        None | Some("full") => true,
        Some("linked") => false,
        Some(other) => {
            return Err(invalid(
                "vm.clone",
                format!("{other:?} is not \"full\" or \"linked\""),
            ));
        }
    };
    let disk_interface = v.disk_interface.unwrap_or_else(|| "scsi0".to_string());
    if !valid_disk_interface(&disk_interface) {
        return Err(invalid(
            "vm.disk_interface",
            format!(
                "{disk_interface:?} is not a disk slot: use the template's boot disk (scsi0, virtio0, sata0 or ide0, ...; `qm config VMID` shows it)"
            ),
        ));
    }
    let user = v.user.unwrap_or_else(|| "proxdeck".to_string());
    if user.is_empty()
        || user.len() > 32
        || !user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
        || !user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
    {
        return Err(invalid(
            "vm.user",
            format!("{user:?} is not a Linux user name (lowercase letters, digits, '_', '-')"),
        ));
    }
    let agent_timeout = match v.agent_timeout_secs {
        Some(0) => {
            return Err(invalid(
                "vm.agent_timeout_secs",
                "0 seconds leaves no time; use at least 1",
            ));
        }
        s => Duration::from_secs(s.unwrap_or(300)),
    };
    Ok(VmConfig {
        template_vmid: v.template_vmid,
        template_node: v.template_node,
        full_clone,
        disk_interface,
        user,
        cpu_type: checked_word("vm.cpu_type", v.cpu_type, "x86-64-v2-AES")?,
        cloudinit_datastore: checked_word(
            "vm.cloudinit_datastore",
            v.cloudinit_datastore,
            &guest.datastore,
        )?,
        agent_timeout,
    })
}

fn parse_pool(p: &str) -> Result<Ipv4Net, ConfigError> {
    let key = "network.pool";
    let bad = || invalid(key, format!("{p:?} is not an IPv4 address or CIDR range"));
    let net = if p.contains('/') {
        p.parse::<Ipv4Net>().map_err(|_| bad())?
    } else {
        Ipv4Net::from(p.parse::<Ipv4Addr>().map_err(|_| bad())?)
    };
    if net.addr() != net.network() {
        return Err(invalid(
            key,
            format!("{p:?} has host bits set; did you mean {}?", net.trunc()),
        ));
    }
    Ok(net)
}

/// A warning when the config file (which may hold the API token) is readable by others.
fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    if mode & 0o077 != 0 {
        Some(format!(
            "warning: {} is readable by other users (mode {:o}) and may hold your API token; run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        ))
    } else {
        None
    }
}

/// The container template of new guests unless `guest.os_template` names another: Debian 13,
/// what Proxmox VE 9 offers (its Node.js is 20.19; Debian 12's is 18).
pub const DEFAULT_OS_TEMPLATE: &str = "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst";

/// The commented template `proxdeck config init` writes.
pub const TEMPLATE: &str = r#"# proxdeck configuration.
# Environment variables with the Terraform provider's names override this file:
# PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN, PROXMOX_VE_INSECURE.
# Keep this file private (chmod 600): it holds your API token.

[proxmox]
# The Proxmox VE API, as you open it in a browser.
endpoint = "https://pve.example.lan:8006/"
# An API token: USER@REALM!TOKENID=SECRET (Datacenter > Permissions > API Tokens).
api_token = "root@pam!proxdeck=00000000-0000-0000-0000-000000000000"
# Or log in with a user and password (a ticket, renewed as needed) instead of a token:
# username = "root@pam"   # or PROXMOX_VE_USERNAME; the password from PROXMOX_VE_PASSWORD
# password = "..."        # (or here, in this 0600 file)
# A CA certificate that signed Proxmox's certificate (e.g. /etc/pve/pve-root-ca.pem copied here).
# ca_file = "/home/me/.config/proxdeck/pve-root-ca.pem"
# Or pin the certificate itself: its SHA-256 fingerprint (node > System > Certificates).
# fingerprint = "AB:CD:...:EF"
# Skip TLS verification. Only for testing: anyone on the path can read your token.
insecure = false
# The node new guests go to (e.g. "pve"); "auto" (or leaving it out) places each guest on the
# online node with the most free memory that fits it.
node = "auto"
# Each API call's timeout, retries of calls safe to repeat, and how long to wait for a task.
# timeout_secs = 30
# retries = 3
# task_timeout_secs = 600

[guest]
# Storage for guest disks.
datastore = "local-lvm"
# Network bridge, and an optional VLAN tag.
bridge = "vmbr0"
# vlan = 20
# Container template (pveam list local; `pveam available --section system` lists what to
# download). Debian 13 offers Node.js 20.19, which current Vite and Next.js need; Debian 12's
# is 18.
os_template = "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst"
os_type = "debian"
swap_mib = 512
# How proxdeck logs into guests, and where apps live there.
ssh_user = "root"
ssh_port = 22
app_root = "/opt/proxdeck"
# Where proxdeck picks vmids for new guests; each is reserved before anything is created.
# vmid_range = "10000-19999"

[vm]
# VM deployments (--type vm) clone a cloud-init template (a cloud image with the QEMU guest
# agent, converted with `qm template`).
# template_vmid = 9000
# The template's node, when it is not the deployment's node (cross-node clone).
# template_node = "pve"
# "full" (default) or "linked" (copy-on-write storage only).
# clone = "full"
# The template's boot-disk slot (`qm config 9000`): the clone's disk must reuse it.
# disk_interface = "scsi0"
# The cloud-init user that gets proxdeck's SSH key; proxdeck logs in as this user (sudo).
# user = "proxdeck"
# cpu_type = "x86-64-v2-AES"
# cloudinit_datastore = "local-lvm"   # default: guest.datastore
# agent_timeout_secs = 300

[network]
# Static addresses for guests, handed out one per deployment. Leave out for DHCP.
# pool = "192.168.1.192/27"
prefix = 24
# gateway = "192.168.1.1"

[terraform]
binary = "terraform"
# A folder with your own lxc/main.tf.hbs and vm/main.tf.hbs, used instead of the built-in ones.
# templates_dir = "/home/me/.config/proxdeck/templates"
# Air-gapped: providers from a local mirror (`terraform providers mirror DIR`), others direct.
# mirror = "/srv/terraform-mirror"

# Remote state instead of a local terraform.tfstate per deployment. Settings go to
# `terraform init` as -backend-config through its environment; {id} is the deployment's id.
# [terraform.backend]
# type = "pg"
# config = { schema_name = "proxdeck_{id}" }
# env = { conn_str = "PROXDECK_PG_CONN_STR" }   # setting = environment variable holding it

[timeouts]
terraform_secs = 1800
ssh_secs = 300
provision_secs = 1800
health_secs = 120
# How long to ask Proxmox for a guest's address (DHCP) before giving up.
address_secs = 300
# Per terraform command (default: terraform_secs; init 600 and plan 900 at most).
# terraform_init_secs = 600
# terraform_plan_secs = 900
# terraform_apply_secs = 1800
# terraform_destroy_secs = 1800

[logs]
# How long the log of a destroyed deployment is kept (0: removed at the next start of
# proxdeck, or by `proxdeck logs --prune`, which also gives the space back).
keep_deleted_days = 30

[jobs]
# Every operation (deploy, redeploy, destroy, ...) is a job run by proxdeck's worker, a
# background process detached from the terminal: closing the dashboard or losing the SSH
# session does not stop it. How many jobs run at once; the others wait as QUEUED.
max_parallel = 4
# The worker exits after this long without work (a command or the dashboard starts it again).
# It stays while any deployment has auto-deploy on.
idle_exit_secs = 10

[snapshots]
# A snapshot of the whole guest (through the Proxmox API) before each of these operations,
# named after the deployed commit, with the commit in its description (`proxdeck restore`).
# Needs storage that snapshots: lvmthin, zfspool, rbd, btrfs; a `dir`/NFS storage only for
# qcow2 VM disks. Proxmox deletes a guest's snapshots with the guest, so the one before
# `destroy` protects a destroy that stops halfway.
before = ["redeploy", "rollback", "destroy"]
# How many of those snapshots are kept per guest (ones you name are never deleted).
keep = 5

[releases]
# Each deploy, redeploy and retry builds the app in a new release folder on its guest while
# the running release keeps serving; the service switches only once the build succeeded.
# `proxdeck rollback` switches back to a kept release without building. How many releases
# are kept per app (the current one and the previous good one are never deleted).
keep = 5

[auto_deploy]
# `deploy --auto-deploy` / `proxdeck auto-deploy ID on`: the worker looks at the ref with
# `git ls-remote` every interval (plus up to jitter_secs at random) and queues a redeploy
# when its commit changed. No webhook: works behind NAT. Failures in a row double the wait,
# up to max_backoff_secs.
interval_secs = 60
jitter_secs = 10
max_backoff_secs = 3600
"#;

/// Values of the template that mean "not edited yet": (key, value as written there).
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("proxmox.endpoint", "https://pve.example.lan:8006/"),
    (
        "proxmox.api_token",
        "root@pam!proxdeck=00000000-0000-0000-0000-000000000000",
    ),
];

impl Config {
    /// Settings still at the template's example values, each with what to do: a config that
    /// `config init` wrote and nobody edited. Checks the values in force (the environment
    /// may have replaced them).
    pub fn placeholders(&self) -> Vec<String> {
        let Some(p) = &self.proxmox else {
            return Vec::new();
        };
        let mut found = Vec::new();
        let endpoint_host = url::Url::parse(PLACEHOLDERS[0].1)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string));
        if p.endpoint.host_str().map(str::to_string) == endpoint_host {
            found.push(format!(
                "{}: still the example {} from the template; set your Proxmox's address (https://HOST:8006/) or PROXMOX_VE_ENDPOINT",
                PLACEHOLDERS[0].0, PLACEHOLDERS[0].1
            ));
        }
        // The example's secret part, whatever token id was put in front of it.
        let example_secret = PLACEHOLDERS[1].1.split_once('=').map(|(_, s)| s);
        if p.has_token() && p.api_token.expose().split_once('=').map(|(_, s)| s) == example_secret {
            found.push(format!(
                "{}: still the template's example token; create one in Datacenter > Permissions > API Tokens and set USER@REALM!TOKENID=SECRET (or PROXMOX_VE_API_TOKEN)",
                PLACEHOLDERS[1].0
            ));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_template_parses_and_needs_no_edits_to_be_valid() {
        let c = Config::parse(TEMPLATE, &env(&[])).unwrap();
        let p = c.proxmox().unwrap();
        assert_eq!(p.endpoint.as_str(), "https://pve.example.lan:8006/");
        // The README's default.
        assert_eq!(p.node, AUTO_NODE);
        assert_eq!(
            c.logs.keep_deleted,
            Duration::from_secs(u64::from(DEFAULT_KEEP_DELETED_DAYS) * 86_400)
        );
        // Untouched, it is flagged: both example values.
        let flagged = c.placeholders();
        assert_eq!(flagged.len(), 2, "{flagged:?}");
        assert!(flagged[0].starts_with("proxmox.endpoint:"));
        assert!(flagged[1].starts_with("proxmox.api_token:"));
        // Edited (or overridden by the environment), it is not.
        let edited = Config::parse(
            TEMPLATE,
            &env(&[
                ("PROXMOX_VE_ENDPOINT", "https://10.0.0.2:8006/"),
                (
                    "PROXMOX_VE_API_TOKEN",
                    "root@pam!pd=0b5c1a4e-1111-2222-3333-444455556666",
                ),
            ]),
        )
        .unwrap();
        assert!(edited.placeholders().is_empty());
        assert!(!p.insecure);
        assert_eq!(c.guest.ssh_user, "root");
        assert_eq!(c.timeouts.health, Duration::from_secs(120));
        // Debian 13 by default, in the template and without one.
        assert_eq!(c.guest.os_template, DEFAULT_OS_TEMPLATE);
        assert!(DEFAULT_OS_TEMPLATE.contains("/debian-13-standard_"));
        assert_eq!(
            Config::parse("", &env(&[])).unwrap().guest.os_template,
            DEFAULT_OS_TEMPLATE
        );
    }

    #[test]
    fn empty_config_has_defaults_and_no_proxmox() {
        let c = Config::parse("", &env(&[])).unwrap();
        let err = c.proxmox().unwrap_err().to_string();
        assert!(err.contains("proxmox.endpoint"), "{err}");
        assert_eq!(c.guest.datastore, "local-lvm");
        assert_eq!(c.network.pool, None);
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = Config::parse(
            TEMPLATE,
            &env(&[
                ("PROXMOX_VE_ENDPOINT", "https://10.1.1.1:8006"),
                ("PROXMOX_VE_API_TOKEN", "ci@pve!t=abc"),
                ("PROXMOX_VE_INSECURE", "true"),
            ]),
        )
        .unwrap();
        let p = c.proxmox().unwrap();
        assert_eq!(p.endpoint.host_str(), Some("10.1.1.1"));
        assert_eq!(p.api_token.expose(), "ci@pve!t=abc");
        assert!(p.insecure);
        // The token never shows in Debug output.
        assert!(!format!("{c:?}").contains("abc"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "[proxmox]\nendpoint = \"http://x\"\napi_token = \"a@b!c=d\"",
                "proxmox.endpoint",
            ),
            (
                "[proxmox]\nendpoint = \"https://x\"\napi_token = \"nobang\"",
                "proxmox.api_token",
            ),
            ("[proxmox]\napi_token = \"a@b!c=d\"", "proxmox.endpoint"),
            ("[guest]\ndatastore = \"a b\"", "guest.datastore"),
            ("[guest]\napp_root = \"relative\"", "guest.app_root"),
            ("[guest]\napp_root = \"/opt/my apps\"", "guest.app_root"),
            ("[guest]\napp_root = \"/\"", "guest.app_root"),
            ("[guest]\napp_root = \"/srv/$HOME\"", "guest.app_root"),
            ("[guest]\nvlan = 5000", "guest.vlan"),
            (
                "[network]\npool = \"10.0.0.0/33\"\ngateway = \"10.0.0.1\"",
                "network.pool",
            ),
            (
                "[network]\npool = \"10.0.0.5/24\"\ngateway = \"10.0.0.1\"",
                "network.pool",
            ),
            ("[network]\npool = \"10.0.0.0/28\"", "network.gateway"),
            ("[network]\nprefix = 40", "network.prefix"),
            ("[timeouts]\nssh_secs = 0", "timeouts.ssh_secs"),
            ("[jobs]\nmax_parallel = 0", "jobs.max_parallel"),
            ("[jobs]\nmax_parallel = 500", "jobs.max_parallel"),
            ("[jobs]\nidle_exit_secs = 0", "jobs.idle_exit_secs"),
            ("[snapshots]\nbefore = [\"deploy\"]", "snapshots.before"),
            ("[snapshots]\nkeep = 0", "snapshots.keep"),
            ("[releases]\nkeep = 1", "releases.keep"),
            (
                "[auto_deploy]\ninterval_secs = 0",
                "auto_deploy.interval_secs",
            ),
            (
                "[auto_deploy]\ninterval_secs = 5\njitter_secs = 9",
                "auto_deploy.jitter_secs",
            ),
            (
                "[auto_deploy]\ninterval_secs = 50\nmax_backoff_secs = 10",
                "auto_deploy.max_backoff_secs",
            ),
            (
                "[terraform]\ntemplates_dir = \"/does/not/exist\"",
                "terraform.templates_dir",
            ),
        ];
        for (text, key) in cases {
            let err = Config::parse(text, &env(&[])).unwrap_err().to_string();
            assert!(err.starts_with(key), "{text:?} gave {err:?}, want {key}");
        }
    }

    #[test]
    fn the_secret_is_never_echoed_in_errors() {
        let err = Config::parse(
            "[proxmox]\nendpoint = \"https://x\"\napi_token = \"topsecretvalue\"",
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("topsecretvalue"));
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors_naming_them() {
        let err = Config::parse("[proxmox]\nendpont = \"https://x\"", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("endpont"), "{err}");
        let err = Config::parse("[guest]\nssh_port = \"x\"", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ssh_port"), "{err}");
    }

    #[test]
    fn pool_accepts_single_addresses_and_ranges() {
        let c = Config::parse(
            "[network]\npool = \"127.0.0.9\"\nprefix = 8\ngateway = \"127.0.0.1\"",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.network.pool.unwrap().to_string(), "127.0.0.9/32");
    }

    #[test]
    fn a_file_readable_by_others_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::load(&path, &env(&[])).unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Config::load(&path, &env(&[])).unwrap().warnings.is_empty());
    }

    #[test]
    fn ticket_logins_fingerprints_and_api_timeouts() {
        let c = Config::parse(
            "[proxmox]\nendpoint = \"https://x:8006\"\nusername = \"deploy@pve\"\n\
             fingerprint = \"ab:CD:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89\"\n\
             timeout_secs = 5\nretries = 0",
            &env(&[("PROXMOX_VE_PASSWORD", "pw-secret")]),
        )
        .unwrap();
        let p = c.proxmox().unwrap();
        assert!(!p.has_token());
        assert_eq!(p.username.as_deref(), Some("deploy@pve"));
        assert_eq!(p.password.as_ref().map(Secret::expose), Some("pw-secret"));
        assert_eq!(p.fingerprint.unwrap()[0], 0xab);
        assert_eq!(p.timeout, Duration::from_secs(5));
        assert_eq!(p.retries, 0);
        assert_eq!(p.node, AUTO_NODE);
        assert_eq!(p.secrets(), vec!["pw-secret".to_string()]);
        let env_names: Vec<String> = p.provider_env().into_iter().map(|(k, _)| k).collect();
        assert_eq!(env_names, ["PROXMOX_VE_USERNAME", "PROXMOX_VE_PASSWORD"]);
        assert!(!format!("{c:?}").contains("pw-secret"));

        for (text, key) in [
            (
                "[proxmox]\nendpoint = \"https://x\"\nusername = \"root@pam\"",
                "proxmox.password",
            ),
            (
                "[proxmox]\nendpoint = \"https://x\"\nusername = \"root\"\npassword = \"p\"",
                "proxmox.username",
            ),
            (
                "[proxmox]\nendpoint = \"https://x\"\napi_token = \"a@b!c=d\"\nfingerprint = \"AB:CD\"",
                "proxmox.fingerprint",
            ),
            (
                "[proxmox]\nendpoint = \"https://x\"\napi_token = \"a@b!c=d\"\nretries = 99",
                "proxmox.retries",
            ),
            (
                "[proxmox]\nendpoint = \"https://x\"\napi_token = \"a@b!c=d\"\ntimeout_secs = 0",
                "proxmox.timeout_secs",
            ),
        ] {
            let err = Config::parse(text, &env(&[])).unwrap_err().to_string();
            assert!(err.starts_with(key), "{text:?} gave {err:?}, want {key}");
        }
    }

    #[test]
    fn a_missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&dir.path().join("none.toml"), &env(&[])).unwrap();
        assert!(c.proxmox().is_err());
    }

    #[test]
    fn terraform_vm_and_vmid_settings_have_defaults() {
        let c = Config::parse("", &env(&[])).unwrap();
        assert_eq!(c.guest.vmid_range, 100..=999_999_999);
        assert_eq!(c.vm.template_vmid, None);
        assert!(c.vm.full_clone);
        assert_eq!(c.vm.disk_interface, "scsi0");
        assert_eq!(c.vm.user, "proxdeck");
        assert_eq!(c.vm.cloudinit_datastore, "local-lvm");
        assert_eq!(c.terraform.mirror, None);
        assert_eq!(c.terraform.backend, None);
        assert_eq!(c.timeouts.terraform_init, Duration::from_secs(600));
        assert_eq!(c.timeouts.terraform_apply, Duration::from_secs(1800));

        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[guest]\ndatastore = \"zfs\"\nvmid_range = \"10000-10099\"\n\
             [vm]\ntemplate_vmid = 9000\ntemplate_node = \"pve2\"\nclone = \"linked\"\n\
             disk_interface = \"virtio0\"\nuser = \"debian\"\n\
             [terraform]\nmirror = \"{}\"\n\
             [terraform.backend]\ntype = \"pg\"\nconfig = {{ schema_name = \"pd_{{id}}\" }}\n\
             env = {{ conn_str = \"PD_PG\" }}\n\
             [timeouts]\nterraform_secs = 100\nterraform_destroy_secs = 50\n",
            dir.path().display()
        );
        let c = Config::parse(&text, &env(&[])).unwrap();
        assert_eq!(c.guest.vmid_range, 10000..=10099);
        assert_eq!(c.vm.template_vmid, Some(9000));
        assert_eq!(c.vm.template_node.as_deref(), Some("pve2"));
        assert!(!c.vm.full_clone);
        assert_eq!(c.vm.disk_interface, "virtio0");
        assert_eq!(c.vm.cloudinit_datastore, "zfs");
        let b = c.terraform.backend.unwrap();
        assert_eq!(b.kind, "pg");
        assert_eq!(b.config["schema_name"], "pd_{id}");
        assert_eq!(b.env["conn_str"], "PD_PG");
        assert_eq!(c.timeouts.terraform_init, Duration::from_secs(100));
        assert_eq!(c.timeouts.terraform_plan, Duration::from_secs(100));
        assert_eq!(c.timeouts.terraform_destroy, Duration::from_secs(50));
    }

    #[test]
    fn terraform_vm_and_vmid_errors_name_the_key() {
        let cases = [
            ("[guest]\nvmid_range = \"5-10\"", "guest.vmid_range"),
            ("[guest]\nvmid_range = \"300-200\"", "guest.vmid_range"),
            ("[guest]\nvmid_range = \"abc\"", "guest.vmid_range"),
            ("[vm]\ntemplate_vmid = 5", "vm.template_vmid"),
            ("[vm]\ntemplate_node = \"a b\"", "vm.template_node"),
            ("[vm]\nclone = \"thin\"", "vm.clone"),
            ("[vm]\ndisk_interface = \"scsi31\"", "vm.disk_interface"),
            ("[vm]\ndisk_interface = \"nvme0\"", "vm.disk_interface"),
            ("[vm]\nuser = \"Root User\"", "vm.user"),
            ("[vm]\ncpu_type = \"a;b\"", "vm.cpu_type"),
            ("[vm]\nagent_timeout_secs = 0", "vm.agent_timeout_secs"),
            (
                "[logs]\nkeep_deleted_days = 99999",
                "logs.keep_deleted_days",
            ),
            (
                "[terraform]\nmirror = \"/does/not/exist\"",
                "terraform.mirror",
            ),
            (
                "[terraform.backend]\nconfig = { key = \"{id}\" }",
                "terraform.backend.type",
            ),
            (
                "[terraform.backend]\ntype = \"ftp\"\nconfig = { key = \"{id}\" }",
                "terraform.backend.type",
            ),
            (
                "[terraform.backend]\ntype = \"s3\"\nconfig = { key = \"shared\" }",
                "terraform.backend.config",
            ),
            (
                "[terraform.backend]\ntype = \"s3\"\nconfig = { Key = \"{id}\" }",
                "terraform.backend.config.Key",
            ),
            (
                "[terraform.backend]\ntype = \"pg\"\nconfig = { schema_name = \"{id}\" }\nenv = { conn_str = \"not a var\" }",
                "terraform.backend.env.conn_str",
            ),
            (
                "[timeouts]\nterraform_plan_secs = 0",
                "timeouts.terraform_plan_secs",
            ),
        ];
        for (text, key) in cases {
            let err = Config::parse(text, &env(&[])).unwrap_err().to_string();
            assert!(err.starts_with(key), "{text:?} gave {err:?}, want {key}");
        }
        for ok in ["scsi0", "scsi30", "virtio15", "sata5", "ide3"] {
            assert!(valid_disk_interface(ok), "{ok}");
        }
        for bad in ["scsi", "scsi01", "virtio16", "ide4", "0", "", "usb0"] {
            assert!(!valid_disk_interface(bad), "{bad}");
        }
    }
}
