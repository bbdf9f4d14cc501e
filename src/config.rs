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
        "proxmox is not configured: set proxmox.endpoint and proxmox.api_token in {path} (or PROXMOX_VE_ENDPOINT and PROXMOX_VE_API_TOKEN); `proxdeck config init` writes a template"
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxmox {
    endpoint: Option<String>,
    api_token: Option<String>,
    ca_file: Option<PathBuf>,
    insecure: Option<bool>,
    node: Option<String>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    terraform_secs: Option<u64>,
    ssh_secs: Option<u64>,
    provision_secs: Option<u64>,
    health_secs: Option<u64>,
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
    pub api_token: Secret,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    pub node: String,
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub terraform: Duration,
    pub ssh: Duration,
    pub provision: Duration,
    pub health: Duration,
}

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
        let node = raw.proxmox.node.unwrap_or_else(|| "pve".to_string());
        crate::domain::spec::validate_node(&node).map_err(|m| invalid("proxmox.node", m))?;
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
                    "missing: set USER@REALM!TOKENID=SECRET (or PROXMOX_VE_API_TOKEN)",
                ));
            }
            (Some(endpoint), Some(token)) => {
                let endpoint = parse_endpoint(&endpoint)?;
                check_token(&token)?;
                if let Some(ca) = &raw.proxmox.ca_file
                    && !ca.is_file()
                {
                    return Err(invalid(
                        "proxmox.ca_file",
                        format!("{} is not a readable file", ca.display()),
                    ));
                }
                Some(ProxmoxConfig {
                    endpoint,
                    api_token: Secret::new(token),
                    ca_file: raw.proxmox.ca_file,
                    insecure,
                    node,
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
                let t = g.os_template.unwrap_or_else(|| {
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".to_string()
                });
                if !t.contains(':') || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(invalid(
                        "guest.os_template",
                        format!(
                            "{t:?} is not a volume id like local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
                        ),
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
                if !root.starts_with('/')
                    || root.len() < 2
                    || root.chars().any(|c| c.is_control())
                    || root.contains("..")
                {
                    return Err(invalid(
                        "guest.app_root",
                        format!("{root:?} must be an absolute path without '..'"),
                    ));
                }
                root.trim_end_matches('/').to_string()
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
        };
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
        let timeouts = Timeouts {
            terraform: secs("timeouts.terraform_secs", raw.timeouts.terraform_secs, 1800)?,
            ssh: secs("timeouts.ssh_secs", raw.timeouts.ssh_secs, 300)?,
            provision: secs("timeouts.provision_secs", raw.timeouts.provision_secs, 1800)?,
            health: secs("timeouts.health_secs", raw.timeouts.health_secs, 120)?,
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
            warnings: Vec::new(),
        })
    }
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
# A CA certificate that signed Proxmox's certificate (e.g. /etc/pve/pve-root-ca.pem copied here).
# ca_file = "/home/me/.config/proxdeck/pve-root-ca.pem"
# Skip TLS verification. Only for testing: anyone on the path can read your token.
insecure = false
# The node new guests go to.
node = "pve"

[guest]
# Storage for guest disks.
datastore = "local-lvm"
# Network bridge, and an optional VLAN tag.
bridge = "vmbr0"
# vlan = 20
# Container template (pveam list local).
os_template = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
os_type = "debian"
swap_mib = 512
# How proxdeck logs into guests, and where apps live there.
ssh_user = "root"
ssh_port = 22
app_root = "/opt/proxdeck"

[network]
# Static addresses for guests, handed out one per deployment. Leave out for DHCP.
# pool = "192.168.1.192/27"
prefix = 24
# gateway = "192.168.1.1"

[terraform]
binary = "terraform"
# A folder with your own lxc/main.tf.hbs and vm/main.tf.hbs, used instead of the built-in ones.
# templates_dir = "/home/me/.config/proxdeck/templates"

[timeouts]
terraform_secs = 1800
ssh_secs = 300
provision_secs = 1800
health_secs = 120
"#;

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
        assert_eq!(p.node, "pve");
        assert!(!p.insecure);
        assert_eq!(c.guest.ssh_user, "root");
        assert_eq!(c.timeouts.health, Duration::from_secs(120));
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
    fn a_missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&dir.path().join("none.toml"), &env(&[])).unwrap();
        assert!(c.proxmox().is_err());
    }
}
