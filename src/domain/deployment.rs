//! `Deployment`: one app on one guest, as the store keeps it and every interface shows it.

use super::status::{Stage, Status};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Short, typeable id of a deployment (six lowercase letters and digits, e.g. `k3x9ta`).
///
/// Six characters from a 31-letter alphabet give about 887 million ids: random ids collide
/// now and then in a list of thousands, so a new id is always checked against the store in
/// the transaction that records it (`Store::insert_deployment` refuses a taken id and the
/// deploy path draws again; `Store::apply_sync` draws again for every taken one). The id a
/// user sees is the whole id: there is no longer form to resolve.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeploymentId(pub String);

impl DeploymentId {
    /// The letters ids are made of: lowercase letters and digits without the look-alikes
    /// (`l`, `o`, `0`, `1`, `i`).
    pub const ALPHABET: &'static [u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    pub const LEN: usize = 6;

    /// A fresh random id (not yet checked against the store: see the type's docs).
    pub fn random() -> DeploymentId {
        let alphabet = Self::ALPHABET;
        // The largest multiple of the alphabet's size below 256: bytes at or above it are
        // drawn again, so every letter is equally likely.
        let limit = (256 / alphabet.len() * alphabet.len()) as u8;
        let mut id = String::with_capacity(Self::LEN);
        let mut pool = [0u8; 16];
        while id.len() < Self::LEN {
            fill_random(&mut pool);
            for b in pool {
                if b < limit && id.len() < Self::LEN {
                    id.push(alphabet[b as usize % alphabet.len()] as char);
                }
            }
        }
        DeploymentId(id)
    }
}

/// Fills `buf` from the OS's random source; without one (never seen on Linux), from a hash
/// of the time, the process id and a counter, which still differs on every call.
fn fill_random(buf: &mut [u8]) {
    if getrandom::getrandom(buf).is_ok() {
        return;
    }
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut hash = Sha256::new();
    hash.update(nanos.to_le_bytes());
    hash.update(std::process::id().to_le_bytes());
    hash.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let digest = hash.finalize();
    for (b, d) in buf.iter_mut().zip(digest.iter().cycle()) {
        *b = *d;
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    #[default]
    Lxc,
    Vm,
}

impl GuestType {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestType::Lxc => "lxc",
            GuestType::Vm => "vm",
        }
    }
}

impl fmt::Display for GuestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for GuestType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "lxc" | "ct" | "container" => Ok(GuestType::Lxc),
            "vm" | "qemu" => Ok(GuestType::Vm),
            _ => Err(format!("{s:?} is not a guest type: use lxc or vm")),
        }
    }
}

/// How proxdeck came to know a guest, which decides what it may do to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Created by proxdeck with Terraform; destroy runs `terraform destroy`.
    #[default]
    Terraform,
    /// Found on the cluster by `sync`; never destroyed by Terraform (start, stop, forget).
    Imported,
    /// An app deployed onto a host that already existed (`deploy --host`); destroy removes
    /// the app and its service and leaves the host alone.
    Host,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Terraform => "terraform",
            Origin::Imported => "imported",
            Origin::Host => "host",
        }
    }
}

impl std::str::FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "terraform" => Ok(Origin::Terraform),
            "imported" => Ok(Origin::Imported),
            "host" => Ok(Origin::Host),
            _ => Err(format!("unknown origin {s:?}")),
        }
    }
}

/// Per-deployment replacements for the framework's commands and health check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Overrides {
    pub install: Option<String>,
    pub build: Option<String>,
    pub start: Option<String>,
    pub health_path: Option<String>,
    /// The HTTP status the health check expects (default: any 2xx or 3xx).
    pub health_status: Option<u16>,
    /// The user's own SSH private key (absolute path) instead of proxdeck's.
    pub ssh_key: Option<String>,
    /// The app's folder in the repository (a monorepo), relative to its root: detection,
    /// install, build, start and a static site's output all happen there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdir: Option<String>,
    /// Debian packages the app needs besides its framework's (`--apt`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub apt: Vec<String>,
    /// How a private repository is read (none: the repository is public).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_auth: Option<GitAuth>,
    /// The names Caddy serves the app under on its guest (`--domain`, `proxdeck domains`),
    /// normalized; empty: no Caddy, the app answers on its own port.
    pub domains: Vec<String>,
    /// Where the domains' certificates come from (`--tls`; `None`: acme).
    pub tls: Option<super::TlsMode>,
    /// Keep the app's own port reachable from beyond the guest although Caddy fronts it.
    pub expose_port: bool,
}

/// How proxdeck and the guest read a private repository. The credentials themselves live in
/// the data dir (`engine::gitauth`), never in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GitAuth {
    /// A per-deployment SSH key pair proxdeck generated (`deploy --deploy-key`), added to the
    /// repository as a read-only deploy key; the Git host's key pinned on first use.
    DeployKey,
    /// An HTTPS token read from this environment variable when the deployment is recorded
    /// (`deploy --git-token-env VAR`), and again whenever a later command finds it set.
    TokenEnv(String),
}

impl GitAuth {
    /// In words, for logs and messages.
    pub fn describe(&self) -> String {
        match self {
            GitAuth::DeployKey => "the deployment's deploy key".to_string(),
            GitAuth::TokenEnv(var) => format!("the HTTPS token from ${var}"),
        }
    }
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }

    /// Takes what `changes` sets (a `retry` or `redeploy` with new flags): each given field
    /// replaces this one's, a non-empty `apt` list replaces the list; the rest stays.
    pub fn apply(&mut self, changes: &Overrides) {
        let Overrides {
            install,
            build,
            start,
            health_path,
            health_status,
            ssh_key,
            subdir,
            apt,
            git_auth,
            // Domains change through `proxdeck domains`, not retry or redeploy.
            domains: _,
            tls: _,
            expose_port: _,
        } = changes;
        let take = |mine: &mut Option<String>, theirs: &Option<String>| {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        };
        take(&mut self.install, install);
        take(&mut self.build, build);
        take(&mut self.start, start);
        take(&mut self.health_path, health_path);
        take(&mut self.ssh_key, ssh_key);
        take(&mut self.subdir, subdir);
        if health_status.is_some() {
            self.health_status = *health_status;
        }
        if !apt.is_empty() {
            self.apt.clone_from(apt);
        }
        if git_auth.is_some() {
            self.git_auth.clone_from(git_auth);
        }
    }

    /// The TLS mode of the domains (acme unless the deployment chose another).
    pub fn tls_mode(&self) -> super::TlsMode {
        self.tls.unwrap_or_default()
    }

    /// The app's own port is closed to everything but the guest itself: Caddy fronts it and
    /// `--expose-port` was not asked for.
    pub fn port_guarded(&self) -> bool {
        !self.domains.is_empty() && !self.expose_port
    }
}

/// A deployment as recorded in the store. Timestamps are Unix milliseconds (UTC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub name: String,
    pub repo: String,
    pub git_ref: String,
    pub framework: String,
    pub guest_type: GuestType,
    pub cores: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
    pub port: u16,
    /// Names of the environment variables given to the app; their values are secrets and are
    /// kept outside the database.
    pub env_names: Vec<String>,
    pub node: Option<String>,
    pub vmid: Option<u32>,
    pub ip: Option<String>,
    pub url: Option<String>,
    pub commit: Option<String>,
    pub status: Status,
    pub stage: Option<Stage>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub origin: Origin,
    /// SSH user and port for this guest when they differ from the config's defaults.
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    /// The commit deployed before the current one (what `rollback` returns to).
    pub previous_commit: Option<String>,
    /// Set by `sync` when the guest is no longer on the cluster (Unix ms).
    pub missing_since: Option<i64>,
    pub overrides: Overrides,
}
