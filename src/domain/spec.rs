//! What a user asks for (`DeployInput`, raw) and what proxdeck accepts (`DeploySpec`, valid).
//!
//! Validation happens first, before anything is recorded or created, and reports every bad
//! field at once, one message per field naming it. The rules are strict on purpose: values
//! that pass here still never reach HCL or a shell unquoted, but refusing shell
//! metacharacters in a repository URL or whitespace in a name catches mistakes early.

use super::deployment::{GitAuth, GuestType, Overrides};
use super::framework::Catalog;
use serde::{Deserialize, Serialize};
use std::fmt;

pub const DEFAULT_CORES: u32 = 1;
pub const DEFAULT_MEMORY_MIB: u32 = 1024;
pub const DEFAULT_DISK_GIB: u32 = 8;

/// A deployment request as typed by a user; nothing is trusted yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployInput {
    pub repo: String,
    pub git_ref: Option<String>,
    /// Empty: detected from the repository's files.
    pub framework: String,
    pub guest_type: String,
    pub name: Option<String>,
    pub cores: Option<u32>,
    pub memory_mib: Option<u32>,
    pub disk_gib: Option<u32>,
    pub port: Option<u32>,
    pub node: Option<String>,
    /// `KEY=VALUE` pairs, in the order given.
    pub env: Vec<(String, String)>,
    /// Deploy onto a host that already exists (`ADDRESS[:PORT]`, the port being SSH's),
    /// skipping Terraform.
    #[serde(default)]
    pub host: Option<String>,
    /// The SSH user (default: the config's `guest.ssh_user`).
    #[serde(default)]
    pub ssh_user: Option<String>,
    /// The user's own private key (an absolute path) instead of proxdeck's.
    #[serde(default)]
    pub ssh_key: Option<String>,
    /// Replacements for the framework's install, build and start commands.
    #[serde(default)]
    pub install: Option<String>,
    /// `Some("")` skips the build.
    #[serde(default)]
    pub build: Option<String>,
    #[serde(default)]
    pub start: Option<String>,
    /// The health check's path (default: the framework's).
    #[serde(default)]
    pub health_path: Option<String>,
    /// The HTTP status the health check expects (default: any 2xx or 3xx).
    #[serde(default)]
    pub health_status: Option<u32>,
    /// Read the repository with a deploy key proxdeck generates for this deployment.
    #[serde(default)]
    pub deploy_key: bool,
    /// Read the repository over HTTPS with the token in this environment variable.
    #[serde(default)]
    pub git_token_env: Option<String>,
    /// The app's folder in the repository (a monorepo), relative to its root.
    #[serde(default)]
    pub subdir: Option<String>,
    /// Debian packages the app needs besides the framework's (`--apt`, repeatable).
    #[serde(default)]
    pub apt: Vec<String>,
    /// Names Caddy serves the app under on the guest (`--domain`, repeatable).
    #[serde(default)]
    pub domains: Vec<String>,
    /// `acme`, `internal` or `off` (`--tls`; default acme); only with domains.
    #[serde(default)]
    pub tls: Option<String>,
    /// Keep the app's own port reachable from beyond the guest (`--expose-port`).
    #[serde(default)]
    pub expose_port: bool,
}

/// An existing host to deploy onto: an IPv4 or IPv6 address or a DNS name, and the SSH port
/// when it is not the config's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAddress {
    pub host: String,
    pub ssh_port: Option<u16>,
}

/// A validated deployment request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploySpec {
    /// The URL git is given (the GitHub shorthand already expanded).
    pub repo: String,
    /// Branch, tag or commit; `None` means the repository's default branch.
    pub git_ref: Option<String>,
    /// `None`: detect it from the repository's files before recording the deployment.
    pub framework: Option<String>,
    pub guest_type: GuestType,
    /// `None`: proxdeck picks one from the repository name.
    pub name: Option<String>,
    pub cores: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
    /// The app's port: the one given, else the framework's default; `None` only while the
    /// framework is still to be detected.
    pub port: Option<u16>,
    pub node: Option<String>,
    pub env: Vec<(String, String)>,
    /// `Some`: deploy onto this existing host (no Terraform).
    pub host: Option<HostAddress>,
    pub ssh_user: Option<String>,
    pub ssh_key: Option<String>,
    /// Command and health-check replacements (`ssh_key` included, so later operations find it).
    pub overrides: Overrides,
}

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// Every field that failed, in the order of the form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        f.write_str(&lines.join("\n"))
    }
}

impl SpecError {
    pub fn field(&self, name: &str) -> Option<&FieldError> {
        self.errors.iter().find(|e| e.field == name)
    }
}

impl DeployInput {
    pub fn validate(&self, catalog: &Catalog) -> Result<DeploySpec, SpecError> {
        let mut errors = Vec::new();
        let mut check = |field: &'static str, result: Result<(), String>| {
            if let Err(message) = result {
                errors.push(FieldError { field, message });
            }
        };

        let repo = normalize_repo(&self.repo);
        check("repo", repo.as_ref().map(|_| ()).map_err(Clone::clone));

        let git_ref = self
            .git_ref
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if let Some(r) = git_ref {
            check("ref", validate_ref(r));
        }

        // An empty framework is detected later from the repository's files.
        let framework = self.framework.trim().to_ascii_lowercase();
        let fw = catalog.get(&framework);
        if fw.is_none() && !framework.is_empty() {
            check(
                "framework",
                Err(format!(
                    "unknown framework {:?}; one of: {} (or leave it out to detect it)",
                    self.framework,
                    catalog.ids().join(", ")
                )),
            );
        }

        let guest_type = if self.guest_type.trim().is_empty() {
            Ok(GuestType::Lxc)
        } else {
            self.guest_type.trim().parse::<GuestType>()
        };
        check(
            "type",
            guest_type.as_ref().map(|_| ()).map_err(Clone::clone),
        );

        // Left out, a name is suggested from the repository; given empty, it is a mistake
        // (an unset shell variable, a script's bug), not a request for the default.
        let name = self.name.as_deref().map(str::trim);
        match name {
            Some("") => check(
                "name",
                Err("is empty; give a name, or leave --name out to have one made from the repository".into()),
            ),
            Some(n) => check("name", validate_name(n)),
            None => {}
        }
        let name = name.filter(|n| !n.is_empty());

        let cores = self.cores.unwrap_or(DEFAULT_CORES);
        check("cores", in_range(cores, 1, 128, "cores"));
        let memory_mib = self.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB);
        check("memory", in_range(memory_mib, 128, 4 * 1024 * 1024, "MiB"));
        let disk_gib = self.disk_gib.unwrap_or(DEFAULT_DISK_GIB);
        check("disk", in_range(disk_gib, 1, 64 * 1024, "GiB"));

        let port = self.port.or(fw.map(|f| u32::from(f.default_port)));
        if let Some(p) = port {
            check("port", validate_port(p));
        }

        let node = self
            .node
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        if let Some(n) = node {
            check("node", validate_node(n));
        }

        check("env", validate_env(&self.env));

        let host = self
            .host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(parse_host_address);
        if let Some(Err(e)) = &host {
            check("host", Err(e.clone()));
        }
        let ssh_user = opt_trimmed(&self.ssh_user);
        if let Some(u) = ssh_user {
            check("ssh-user", validate_user(u));
        }
        let ssh_key = opt_trimmed(&self.ssh_key);
        if let Some(k) = ssh_key {
            check("ssh-key", validate_key_path(k));
        }
        for (field, cmd, may_be_empty) in [
            ("install", &self.install, false),
            ("build", &self.build, true),
            ("start", &self.start, false),
        ] {
            if let Some(c) = cmd {
                check(field, validate_command(c, may_be_empty));
            }
        }
        let health_path = opt_trimmed(&self.health_path);
        if let Some(p) = health_path {
            check("health-path", validate_health_path(p));
        }
        if let Some(s) = self.health_status {
            check("health-status", in_range(s, 100, 599, "(an HTTP status)"));
        }
        let git_token_env = opt_trimmed(&self.git_token_env);
        let git_auth = match (self.deploy_key, git_token_env) {
            (true, Some(_)) => {
                check(
                    "deploy-key",
                    Err("--deploy-key and --git-token-env are two ways to read the repository: pick one".into()),
                );
                None
            }
            (true, None) => {
                if let Ok(r) = &repo {
                    check("deploy-key", deploy_key_url(r));
                }
                Some(GitAuth::DeployKey)
            }
            (false, Some(var)) => {
                check("git-token-env", validate_token_var(var));
                if let Ok(r) = &repo {
                    check("git-token-env", token_url(r));
                }
                Some(GitAuth::TokenEnv(var.to_string()))
            }
            (false, None) => None,
        };
        let subdir = opt_trimmed(&self.subdir).map(normalize_subdir);
        if let Some(Err(e)) = &subdir {
            check("subdir", Err(e.clone()));
        }
        let subdir = subdir.and_then(Result::ok).filter(|s| !s.is_empty());
        check("apt", validate_apt_packages(&self.apt));
        let domains = super::domains::normalize_domains(&self.domains);
        check("domain", domains.as_ref().map(|_| ()).map_err(Clone::clone));
        let has_domains = domains.as_ref().is_ok_and(|d| !d.is_empty());
        let tls = opt_trimmed(&self.tls).map(str::parse::<super::TlsMode>);
        match &tls {
            Some(Err(e)) => check("tls", Err(e.clone())),
            Some(Ok(_)) if !has_domains => check(
                "tls",
                Err(
                    "applies to the deployment's domains; add --domain NAME, or leave --tls out"
                        .into(),
                ),
            ),
            _ => {}
        }
        if self.expose_port && !has_domains {
            check(
                "expose-port",
                Err("without --domain the app's port is the way in and is reachable already; leave --expose-port out".into()),
            );
        }

        if !errors.is_empty() {
            return Err(SpecError { errors });
        }
        Ok(DeploySpec {
            repo: repo.unwrap_or_default(),
            git_ref: git_ref.map(str::to_string),
            framework: (!framework.is_empty()).then_some(framework),
            guest_type: guest_type.unwrap_or(GuestType::Lxc),
            name: name.map(str::to_string),
            cores,
            memory_mib,
            disk_gib,
            port: port.map(|p| p as u16),
            node: node.map(str::to_string),
            env: self.env.clone(),
            host: host.and_then(Result::ok),
            ssh_user: ssh_user.map(str::to_string),
            ssh_key: ssh_key.map(str::to_string),
            overrides: Overrides {
                install: self.install.clone(),
                build: self.build.clone(),
                start: self.start.clone(),
                health_path: health_path.map(str::to_string),
                health_status: self.health_status.map(|s| s as u16),
                ssh_key: ssh_key.map(str::to_string),
                git_auth,
                subdir,
                apt: self.apt.iter().map(|p| p.trim().to_string()).collect(),
                domains: domains.unwrap_or_default(),
                tls: tls.and_then(Result::ok),
                expose_port: self.expose_port,
            },
        })
    }
}

fn in_range(v: u32, min: u32, max: u32, unit: &str) -> Result<(), String> {
    if v < min || v > max {
        Err(format!("{v} is out of range: {min} to {max} {unit}"))
    } else {
        Ok(())
    }
}

fn validate_port(port: u32) -> Result<(), String> {
    if port == 0 || port > 65535 {
        return Err(format!("{port} is not a TCP port (1 to 65535)"));
    }
    if port == 22 {
        return Err("22 is the guest's SSH port; pick another for the app".into());
    }
    Ok(())
}

/// Characters never accepted in a repository URL: whitespace, control characters and those
/// a shell gives meaning to.
fn bad_url_char(c: char) -> bool {
    c.is_whitespace() || c.is_control() || "`$;|&<>()'\"\\{}*!".contains(c)
}

/// Accepts https, ssh, git and file URLs, scp-style `user@host:path`, and GitHub's
/// `owner/repo` shorthand (expanded to an https URL).
pub fn normalize_repo(raw: &str) -> Result<String, String> {
    let repo = raw.trim();
    if repo.is_empty() {
        return Err("required: a Git URL (https, ssh, git, file) or owner/repo".into());
    }
    if let Some(c) = repo.chars().find(|&c| bad_url_char(c)) {
        return Err(format!("{c:?} is not allowed in a repository URL"));
    }
    if repo.starts_with('-') {
        return Err("must not start with '-'".into());
    }
    if is_github_shorthand(repo) {
        return Ok(format!("https://github.com/{repo}.git"));
    }
    if let Some((scheme, _)) = repo.split_once("://") {
        let url = url::Url::parse(repo).map_err(|e| format!("not a valid URL: {e}"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "https" | "ssh" | "git" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err("the URL has no host".into());
                }
                if url.path().trim_matches('/').is_empty() {
                    return Err("the URL names no repository path".into());
                }
                if url.password().is_some() {
                    return Err("credentials in the URL would be stored and logged; give the URL without them and the token in an environment variable (--git-token-env VAR), or use a deploy key (--deploy-key with the SSH URL)".into());
                }
            }
            "file" => {
                if url.path().trim_matches('/').is_empty() {
                    return Err("a file URL needs an absolute path".into());
                }
            }
            "http" => {
                return Err("plain http is not accepted; use https, ssh, git or file".into());
            }
            other => {
                return Err(format!(
                    "scheme {other:?} is not supported; use https, ssh, git or file"
                ));
            }
        }
        return Ok(repo.to_string());
    }
    // scp-like syntax: user@host:path
    if let Some((userhost, path)) = repo.split_once(':')
        && let Some((user, host)) = userhost.split_once('@')
    {
        let ok_user = !user.is_empty()
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        let ok_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c));
        if ok_user && ok_host && !path.is_empty() && !path.starts_with('-') {
            return Ok(repo.to_string());
        }
    }
    Err(
        "not a repository URL: use https://, ssh://, git://, file://, user@host:path or owner/repo"
            .into(),
    )
}

fn is_github_shorthand(s: &str) -> bool {
    let Some((owner, repo)) = s.split_once('/') else {
        return false;
    };
    let owner_ok = !owner.is_empty()
        && owner.len() <= 39
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !owner.starts_with('-');
    let repo_ok = !repo.is_empty()
        && repo.len() <= 100
        && repo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && repo != "."
        && repo != "..";
    owner_ok && repo_ok
}

/// Git's rules for ref names (`git check-ref-format`), which also cover commit ids.
pub fn validate_ref(r: &str) -> Result<(), String> {
    if r.len() > 200 {
        return Err("longer than 200 characters".into());
    }
    if let Some(c) = r
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || "~^:?*[\\`$;|&<>()'\"".contains(c))
    {
        return Err(format!("{c:?} is not allowed in a Git ref"));
    }
    if r.starts_with('-') || r.starts_with('/') || r.ends_with('/') || r.ends_with('.') {
        return Err("must not start with '-' or '/', nor end with '/' or '.'".into());
    }
    if r.contains("..") || r.contains("//") || r.contains("@{") || r == "@" {
        return Err("must not contain '..', '//' or '@{'".into());
    }
    if r.ends_with(".lock") || r.split('/').any(|part| part.starts_with('.')) {
        return Err("no path component may start with '.' or end with '.lock'".into());
    }
    Ok(())
}

/// An environment variable's name (`--git-token-env`): letters, digits and `_`, not
/// starting with a digit.
fn validate_token_var(name: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an environment variable's name (letters, digits and '_'; e.g. GITHUB_TOKEN): give the variable's name, not its value"
        ))
    }
}

/// Whether `repo` (normalized) is reached over SSH: `ssh://` or `user@host:path`.
pub fn is_ssh_url(repo: &str) -> bool {
    match repo.split_once("://") {
        Some((scheme, _)) => scheme.eq_ignore_ascii_case("ssh"),
        None => repo.contains('@') && repo.contains(':'),
    }
}

/// A deploy key is an SSH key: the repository must be an SSH URL. An https URL of a known
/// host form gets the SSH URL to use instead.
fn deploy_key_url(repo: &str) -> Result<(), String> {
    if is_ssh_url(repo) {
        return Ok(());
    }
    let hint = url::Url::parse(repo)
        .ok()
        .filter(|u| u.scheme() == "https")
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            let path = u.path().trim_matches('/').to_string();
            let path = if path.ends_with(".git") {
                path
            } else {
                format!("{path}.git")
            };
            Some(format!(" (here: git@{host}:{path})"))
        })
        .unwrap_or_default();
    Err(format!(
        "a deploy key is an SSH key: give the repository's SSH URL, git@HOST:OWNER/REPO.git or ssh://git@HOST/OWNER/REPO.git{hint}"
    ))
}

/// A token is sent over HTTPS only.
fn token_url(repo: &str) -> Result<(), String> {
    if repo.to_ascii_lowercase().starts_with("https://") {
        Ok(())
    } else {
        Err("a token is sent over HTTPS only: give the repository's https:// URL (for an SSH URL, use --deploy-key)".into())
    }
}

/// A DNS label: it becomes the guest's hostname.
pub fn validate_name(n: &str) -> Result<(), String> {
    if n.len() > 63 {
        return Err(format!("{n:?} is longer than 63 characters"));
    }
    if !n
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "{n:?} is not a DNS label: use lowercase letters, digits and '-'"
        ));
    }
    if n.starts_with('-') || n.ends_with('-') {
        return Err(format!("{n:?} must not start or end with '-'"));
    }
    if n.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{n:?} is all digits, which reads as an id; add a letter"
        ));
    }
    Ok(())
}

/// A Proxmox node name.
pub fn validate_node(n: &str) -> Result<(), String> {
    let ok = n.len() <= 63
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !n.starts_with('-')
        && !n.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n:?} is not a node name: letters, digits and '-', up to 63"
        ))
    }
}

/// Why an app may not set this variable itself: proxdeck sets it on the guest (the
/// provisioning scripts' env file, `run/with-env`, the service), or it changes how every
/// program there runs (the dynamic loader, the shell). `None`: the name is the app's to use.
pub fn reserved_env_name(k: &str) -> Option<&'static str> {
    Some(match k {
        "PORT" => "proxdeck sets it from the deployment's port (--port)",
        "PATH" => {
            "proxdeck sets it on the guest (the app's own bin folders first); a different PATH breaks the install, build and start commands"
        }
        "HOME" | "USER" | "LOGNAME" | "APP_DIR" | "PWD" | "OLDPWD" => {
            "proxdeck sets it on the guest for the app's own user and folder"
        }
        "SHELL" | "IFS" | "CDPATH" | "ENV" | "GLOBIGNORE" | "SHELLOPTS" | "BASHOPTS" | "PS4" => {
            "it changes how the shell runs proxdeck's scripts and the app's commands"
        }
        "UID" | "EUID" | "PPID" | "GROUPS" => "the shell keeps it read-only",
        _ if k.starts_with("LD_") => {
            "it changes how every program on the guest is loaded (the dynamic loader)"
        }
        _ if k.starts_with("BASH_") => "it changes how bash runs proxdeck's scripts",
        _ if k.starts_with("PROXDECK_") => "the PROXDECK_ prefix is proxdeck's own",
        _ => return None,
    })
}

pub fn validate_env_name(k: &str) -> Result<(), String> {
    let mut chars = k.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || k.len() > 128 {
        return Err(format!(
            "{k:?} is not a variable name: letters, digits and '_', not starting with a digit"
        ));
    }
    if let Some(why) = reserved_env_name(k) {
        return Err(format!("{k} cannot be set for the app: {why}"));
    }
    Ok(())
}

fn validate_env(env: &[(String, String)]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (k, v) in env {
        validate_env_name(k)?;
        if !seen.insert(k.as_str()) {
            return Err(format!("{k} is given twice"));
        }
        if v.contains('\0') || v.contains('\n') || v.contains('\r') {
            return Err(format!(
                "the value of {k} contains a line break or NUL, which an env file cannot hold"
            ));
        }
    }
    Ok(())
}

fn opt_trimmed(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `ADDRESS[:PORT]`: an IPv4 address, a DNS name, or an IPv6 address (bare, or in brackets
/// when a port follows: `[fd00::5]:2222`). The port is SSH's.
pub fn parse_host_address(raw: &str) -> Result<HostAddress, String> {
    let raw = raw.trim();
    if let Some(c) = raw
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || "`$;|&<>()'\"\\{}*!/@".contains(c))
    {
        return Err(format!("{c:?} is not allowed in a host address"));
    }
    let port_of = |p: &str| -> Result<Option<u16>, String> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{p:?} is not an SSH port (1 to 65535)")),
            Ok(n) => Ok(Some(n)),
        }
    };
    let (host, ssh_port) = if let Some(rest) = raw.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an opening '[' needs a closing ']'")?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{v6:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => port_of(
                p.strip_prefix(':')
                    .ok_or("after ']' comes ':PORT' or nothing")?,
            )?,
        };
        (v6.to_string(), port)
    } else if raw.matches(':').count() > 1 {
        raw.parse::<std::net::Ipv6Addr>().map_err(|_| {
            format!("{raw:?} is not an IPv6 address (with a port, write [ADDRESS]:PORT)")
        })?;
        (raw.to_string(), None)
    } else if let Some((h, p)) = raw.split_once(':') {
        (h.to_string(), port_of(p)?)
    } else {
        (raw.to_string(), None)
    };
    if host.parse::<std::net::IpAddr>().is_err() {
        validate_dns_name(&host)?;
    }
    Ok(HostAddress { host, ssh_port })
}

fn validate_dns_name(h: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h.is_empty() || h.len() > 253 || !h.trim_end_matches('.').split('.').all(label_ok) {
        return Err(format!(
            "{h:?} is neither an IP address nor a host name (letters, digits, '-' and '.')"
        ));
    }
    if h.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{h:?} is not a valid IPv4 address"));
    }
    Ok(())
}

/// A Unix login name, as `guest.ssh_user` accepts it.
pub fn validate_user(u: &str) -> Result<(), String> {
    let ok = u.len() <= 32
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && !u.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{u:?} is not a user name: letters, digits, '_', '-' and '.', up to 32"
        ))
    }
}

fn validate_key_path(k: &str) -> Result<(), String> {
    if !k.starts_with('/') {
        return Err(format!("{k:?} must be an absolute path to a private key"));
    }
    if k.len() > 4096 || k.chars().any(char::is_control) {
        return Err("the path contains control characters or is too long".into());
    }
    Ok(())
}

/// A command override: shell text for the guest (passed to it as data, never spliced).
fn validate_command(c: &str, may_be_empty: bool) -> Result<(), String> {
    if c.trim().is_empty() && !may_be_empty {
        return Err("must not be empty".into());
    }
    if c.len() > 4096 {
        return Err("longer than 4096 characters".into());
    }
    if c.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    Ok(())
}

/// `--subdir`: a folder of the repository, relative to its root, without `..` or anything a
/// shell or a path could read twice. Returns it without `./` and slashes at the ends (empty:
/// the root itself).
pub fn normalize_subdir(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    if s.starts_with('/') {
        return Err(format!(
            "{s:?} is absolute; give the folder relative to the repository's root (e.g. apps/web)"
        ));
    }
    if s.len() > 255 {
        return Err("longer than 255 characters".into());
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "._-/".contains(c)))
    {
        return Err(format!(
            "{c:?} is not allowed in the app's folder: use letters, digits, '.', '_', '-' and '/'"
        ));
    }
    let parts: Vec<&str> = s
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.iter().any(|p| *p == ".." || p.starts_with('-')) {
        return Err(format!(
            "{s:?} leaves the repository or starts a part with '-'; '..' is not allowed"
        ));
    }
    Ok(parts.join("/"))
}

/// A Debian package name (Debian policy 5.6.1): lowercase letters, digits, `+`, `-` and `.`,
/// at least two characters, starting with a letter or digit.
pub fn validate_apt_package(p: &str) -> Result<(), String> {
    let ok = p.len() >= 2
        && p.len() <= 100
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} is not a Debian package name: lowercase letters, digits, '+', '-' and '.', starting with a letter or digit"
        ))
    }
}

fn validate_apt_packages(list: &[String]) -> Result<(), String> {
    if list.len() > 64 {
        return Err("more than 64 packages".into());
    }
    list.iter().try_for_each(|p| validate_apt_package(p.trim()))
}

/// Checks the command and health-check replacements a `retry` or `redeploy` brings (the same
/// rules as `deploy`'s), every bad field at once.
pub fn validate_overrides(o: &Overrides) -> Result<(), SpecError> {
    let mut errors = Vec::new();
    let mut check = |field: &'static str, result: Result<(), String>| {
        if let Err(message) = result {
            errors.push(FieldError { field, message });
        }
    };
    for (field, cmd, may_be_empty) in [
        ("install", &o.install, false),
        ("build", &o.build, true),
        ("start", &o.start, false),
    ] {
        if let Some(c) = cmd {
            check(field, validate_command(c, may_be_empty));
        }
    }
    if let Some(p) = &o.health_path {
        check("health-path", validate_health_path(p));
    }
    if let Some(s) = o.health_status {
        check(
            "health-status",
            in_range(u32::from(s), 100, 599, "(an HTTP status)"),
        );
    }
    if let Some(d) = &o.subdir {
        check("subdir", normalize_subdir(d).map(|_| ()));
    }
    check("apt", validate_apt_packages(&o.apt));
    check(
        "ssh-key",
        o.ssh_key.as_deref().map_or(Ok(()), validate_key_path),
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SpecError { errors })
    }
}

fn validate_health_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with '/'"));
    }
    if p.len() > 1024 {
        return Err("longer than 1024 characters".into());
    }
    if let Some(c) = p
        .chars()
        .find(|&c| !c.is_ascii_graphic() || "\"<>\\^`{|}".contains(c))
    {
        return Err(format!("{c:?} is not allowed in a URL path"));
    }
    Ok(())
}

/// Parses an env file: `KEY=VALUE` per line, optionally after `export `; blank lines and
/// lines starting with `#` are skipped. A value in single quotes is taken literally; in
/// double quotes, `\"` and `\\` are unescaped; after the closing quote only blanks and a
/// `# comment` may follow. Unquoted, it runs to the end of the line or to a ` #` comment
/// (blanks around it dropped). Errors name the line.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {n}: not KEY=VALUE"))?;
        let k = k.trim_end();
        validate_env_name(k).map_err(|e| format!("line {n}: {e}"))?;
        let v = v.trim();
        let value = if let Some(rest) = v.strip_prefix('\'') {
            let end = closing_quote(rest, '\'', false)
                .ok_or_else(|| format!("line {n}: the single quote is not closed"))?;
            rest[..end].to_string()
        } else if let Some(rest) = v.strip_prefix('"') {
            let end = closing_quote(rest, '"', true)
                .ok_or_else(|| format!("line {n}: the double quote is not closed"))?;
            unescape_double(&rest[..end])
        } else {
            strip_comment(v).to_string()
        };
        out.push((k.to_string(), value));
    }
    Ok(out)
}

/// Where the value's closing quote is in `rest` (the text after the opening quote): the last
/// quote (unescaped, with `escapes`) after which only blanks or a `# comment` follow.
fn closing_quote(rest: &str, quote: char, escapes: bool) -> Option<usize> {
    let mut candidates = Vec::new();
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        if escapes && escaped {
            escaped = false;
            continue;
        }
        if escapes && c == '\\' {
            escaped = true;
        } else if c == quote {
            candidates.push(i);
        }
    }
    candidates.into_iter().rev().find(|&i| {
        let after = rest[i + quote.len_utf8()..].trim_start();
        after.is_empty() || after.starts_with('#')
    })
}

fn unescape_double(inner: &str) -> String {
    let mut value = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('"' | '\\')) => value.push(e),
                Some(other) => {
                    value.push('\\');
                    value.push(other);
                }
                None => value.push('\\'),
            }
        } else {
            value.push(c);
        }
    }
    value
}

/// An unquoted value without its ` # comment` (a `#` right after text is part of the value).
fn strip_comment(v: &str) -> &str {
    let mut prev_blank = false;
    for (i, c) in v.char_indices() {
        if c == '#' && prev_blank {
            return v[..i].trim_end();
        }
        prev_blank = c.is_whitespace();
    }
    v
}

/// Parses `KEY=VALUE` (the value may be empty and may contain '=').
pub fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    validate_env_name(k)?;
    Ok((k.to_string(), v.to_string()))
}

/// A name suggested from the repository URL: its last path component as a DNS label.
pub fn suggest_name(repo: &str) -> String {
    let last = repo
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("")
        .trim_end_matches(".git");
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    let name = name.trim_matches('-');
    let mut name: String = name.chars().take(50).collect();
    name = name.trim_end_matches('-').to_string();
    if name.is_empty() || name.chars().all(|c| c.is_ascii_digit()) {
        name = format!("app-{name}").trim_end_matches('-').to_string();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::parse(
            r#"
            [[framework]]
            id = "flask"
            name = "Flask"
            language = "python"
            runtime = "python3"
            default_port = 5000
            install = "pip install -r requirements.txt"
            start = "gunicorn app:app"
            "#,
        )
        .unwrap()
    }

    fn input() -> DeployInput {
        DeployInput {
            repo: "https://github.com/acme/shop.git".into(),
            framework: "flask".into(),
            guest_type: "lxc".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_minimal_input_gets_defaults() {
        let spec = input().validate(&catalog()).unwrap();
        assert_eq!(spec.port, Some(5000));
        assert_eq!(spec.framework.as_deref(), Some("flask"));
        assert_eq!(spec.host, None);
        assert!(spec.overrides.is_empty());
        assert_eq!(spec.cores, DEFAULT_CORES);
        assert_eq!(spec.memory_mib, DEFAULT_MEMORY_MIB);
        assert_eq!(spec.disk_gib, DEFAULT_DISK_GIB);
        assert_eq!(spec.guest_type, GuestType::Lxc);
        assert_eq!(spec.git_ref, None);
    }

    #[test]
    fn private_repository_access_is_checked_against_the_url() {
        let with = |repo: &str, key: bool, var: Option<&str>| DeployInput {
            repo: repo.into(),
            deploy_key: key,
            git_token_env: var.map(str::to_string),
            ..input()
        };
        let spec = with("git@github.com:acme/shop.git", true, None)
            .validate(&catalog())
            .unwrap();
        assert_eq!(spec.overrides.git_auth, Some(GitAuth::DeployKey));
        let spec = with(
            "https://github.com/acme/shop.git",
            false,
            Some("GITHUB_TOKEN"),
        )
        .validate(&catalog())
        .unwrap();
        assert_eq!(
            spec.overrides.git_auth,
            Some(GitAuth::TokenEnv("GITHUB_TOKEN".into()))
        );
        // A deploy key needs the SSH URL, and the message gives it.
        let err = with("https://github.com/acme/shop", true, None)
            .validate(&catalog())
            .unwrap_err();
        let m = &err.field("deploy-key").unwrap().message;
        assert!(m.contains("git@github.com:acme/shop.git"), "{m}");
        // A token goes over HTTPS only; a value instead of a name is refused; not both.
        let err = with("git@github.com:acme/shop.git", false, Some("TOKEN"))
            .validate(&catalog())
            .unwrap_err();
        assert!(
            err.field("git-token-env")
                .unwrap()
                .message
                .contains("HTTPS")
        );
        let err = with(
            "https://github.com/acme/shop.git",
            false,
            Some("ghp_abc-123"),
        )
        .validate(&catalog())
        .unwrap_err();
        assert!(
            err.field("git-token-env")
                .unwrap()
                .message
                .contains("not its value")
        );
        let err = with("git@github.com:acme/shop.git", true, Some("TOKEN"))
            .validate(&catalog())
            .unwrap_err();
        assert!(
            err.field("deploy-key")
                .unwrap()
                .message
                .contains("pick one")
        );
        // Credentials in the URL point to the flags that replace them.
        let err = with("https://me:secret@github.com/acme/shop.git", false, None)
            .validate(&catalog())
            .unwrap_err();
        assert!(
            err.field("repo")
                .unwrap()
                .message
                .contains("--git-token-env")
        );
    }

    #[test]
    fn good_repo_urls() {
        for (raw, want) in [
            ("acme/shop", "https://github.com/acme/shop.git"),
            (
                "https://github.com/acme/shop.git",
                "https://github.com/acme/shop.git",
            ),
            (
                "ssh://git@git.example.com:2222/acme/shop.git",
                "ssh://git@git.example.com:2222/acme/shop.git",
            ),
            (
                "git://127.0.0.1:9418/shop.git",
                "git://127.0.0.1:9418/shop.git",
            ),
            ("file:///srv/git/shop.git", "file:///srv/git/shop.git"),
            (
                "git@github.com:acme/shop.git",
                "git@github.com:acme/shop.git",
            ),
        ] {
            assert_eq!(normalize_repo(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn bad_repo_urls() {
        for raw in [
            "",
            "https://github.com/acme/shop;rm -rf /",
            "https://x.com/$(id)",
            "https://x.com/`id`",
            "http://github.com/acme/shop",
            "ftp://x.com/repo",
            "https:///nohost",
            "https://github.com/",
            "https://user:pass@github.com/acme/shop",
            "-uhttps://x",
            "just-a-word",
            "file://",
        ] {
            assert!(normalize_repo(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn refs() {
        for good in [
            "main",
            "v1.2.3",
            "feature/login",
            "3f2a9c1",
            "release-2024.10",
        ] {
            assert!(validate_ref(good).is_ok(), "{good}");
        }
        for bad in [
            "-x", "a..b", "a b", "a;b", "$(id)", "a~1", "a^", "a:b", "x.lock", "/a", "a/",
            ".hidden", "a@{1}", "a\nb",
        ] {
            assert!(validate_ref(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        for good in ["shop", "my-app-2", "a"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "my app",
            "MyApp",
            "-a",
            "a-",
            "a_b",
            "123",
            &"x".repeat(64),
            "é",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_out_of_range_are_named() {
        let mut i = input();
        i.cores = Some(0);
        i.memory_mib = Some(64);
        i.disk_gib = Some(0);
        i.port = Some(70000);
        let err = i.validate(&catalog()).unwrap_err();
        assert!(err.field("cores").unwrap().message.contains("out of range"));
        assert!(err.field("memory").is_some());
        assert!(err.field("disk").is_some());
        assert!(err.field("port").is_some());
        assert_eq!(err.errors.len(), 4);
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let i = DeployInput {
            repo: "https://x.com/a;b".into(),
            git_ref: Some("a..b".into()),
            framework: "rails".into(),
            guest_type: "docker".into(),
            name: Some("my app".into()),
            cores: Some(0),
            memory_mib: Some(1),
            disk_gib: Some(0),
            port: Some(0),
            node: Some("bad node".into()),
            env: vec![("1BAD".into(), "x".into())],
            ..Default::default()
        };
        let err = i.validate(&catalog()).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "repo",
                "ref",
                "framework",
                "type",
                "name",
                "cores",
                "memory",
                "disk",
                "port",
                "node",
                "env"
            ]
        );
        let text = err.to_string();
        assert!(
            text.contains("framework: unknown framework \"rails\"; one of: flask"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 11);
    }

    #[test]
    fn env_rules() {
        let mut i = input();
        i.env = vec![("A".into(), "1".into()), ("A".into(), "2".into())];
        assert!(
            i.validate(&catalog())
                .unwrap_err()
                .field("env")
                .unwrap()
                .message
                .contains("twice")
        );
        i.env = vec![("SECRET".into(), "line\nbreak".into())];
        assert!(i.validate(&catalog()).is_err());
        i.env = vec![("PORT".into(), "1".into())];
        assert!(i.validate(&catalog()).is_err());
        i.env = vec![("DATABASE_URL".into(), "postgres://u:p@h/db?x=$(id)".into())];
        assert!(i.validate(&catalog()).is_ok());
        assert_eq!(
            parse_env_pair("A=b=c").unwrap(),
            ("A".to_string(), "b=c".to_string())
        );
        assert!(parse_env_pair("novalue").is_err());
    }

    #[test]
    fn a_missing_framework_is_left_to_detection() {
        let mut i = input();
        i.framework = " ".into();
        let spec = i.validate(&catalog()).unwrap();
        assert_eq!(spec.framework, None);
        assert_eq!(spec.port, None);
        i.port = Some(8080);
        assert_eq!(i.validate(&catalog()).unwrap().port, Some(8080));
    }

    #[test]
    fn host_addresses() {
        let ok = |raw: &str, host: &str, port: Option<u16>| {
            assert_eq!(
                parse_host_address(raw),
                Ok(HostAddress {
                    host: host.into(),
                    ssh_port: port
                }),
                "{raw}"
            );
        };
        ok("10.0.0.5", "10.0.0.5", None);
        ok("10.0.0.5:2222", "10.0.0.5", Some(2222));
        ok("app.example.com", "app.example.com", None);
        ok("web-1:22", "web-1", Some(22));
        ok("fd00::5", "fd00::5", None);
        ok("[fd00::5]:2200", "fd00::5", Some(2200));
        for bad in [
            "",
            "10.0.0.5:0",
            "10.0.0.5:70000",
            "10.0.0.5:x",
            "host;rm -rf /",
            "$(id)",
            "a b",
            "-oProxyCommand=x",
            "root@host",
            "[fd00::5",
            "[nope]:22",
            "300.1.2.3",
            "host..name",
            "fd00::zz",
        ] {
            assert!(
                parse_host_address(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn host_deploy_fields() {
        let mut i = input();
        i.host = Some("192.0.2.7:2222".into());
        i.ssh_user = Some("deploy".into());
        i.ssh_key = Some("/home/me/.ssh/id_ed25519".into());
        i.install = Some("pip install -r requirements.txt".into());
        i.build = Some(String::new());
        i.start = Some("python app.py --port \"$PORT\"".into());
        i.health_path = Some("/healthz?full=1".into());
        i.health_status = Some(204);
        let spec = i.validate(&catalog()).unwrap();
        assert_eq!(
            spec.host,
            Some(HostAddress {
                host: "192.0.2.7".into(),
                ssh_port: Some(2222)
            })
        );
        assert_eq!(spec.ssh_user.as_deref(), Some("deploy"));
        assert_eq!(spec.overrides.build.as_deref(), Some(""));
        assert_eq!(spec.overrides.health_status, Some(204));
        assert_eq!(
            spec.overrides.ssh_key.as_deref(),
            Some("/home/me/.ssh/id_ed25519")
        );

        let bad = DeployInput {
            host: Some("x;y".into()),
            ssh_user: Some("-root".into()),
            ssh_key: Some("relative/key".into()),
            install: Some("  ".into()),
            start: Some("a\0b".into()),
            health_path: Some("health check".into()),
            health_status: Some(42),
            ..input()
        };
        let err = bad.validate(&catalog()).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "host",
                "ssh-user",
                "ssh-key",
                "install",
                "start",
                "health-path",
                "health-status"
            ]
        );
    }

    #[test]
    fn env_files() {
        let text = "# comment\n\nA=1\nexport B = two words  \nC='it''s'\nD='$(id) `x`'\n\
                    E=\"say \\\"hi\\\" \\\\o/\"\nF=\nG=a=b\n";
        let got = parse_env_file(text).unwrap();
        let want: Vec<(String, String)> = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "it''s"),
            ("D", "$(id) `x`"),
            ("E", "say \"hi\" \\o/"),
            ("F", ""),
            ("G", "a=b"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        assert!(
            parse_env_file("A=1\nnot a pair\n")
                .unwrap_err()
                .starts_with("line 2:")
        );
        assert!(parse_env_file("1A=x").unwrap_err().starts_with("line 1:"));
        assert!(parse_env_file("A='open").is_err());
        assert!(parse_env_file("A=\"open").is_err());
        assert!(parse_env_file("A=\"open\\\"").is_err());
    }

    #[test]
    fn env_file_comments_after_values() {
        let text = "A=\"x\" # the x\nB='y'   #y\nC=plain # note\nD=a#b\nE=\"has # inside\"\n\
                    F='q' # it's quoted\nG=\"say \\\"hi\\\"\" # greeting\n";
        let got = parse_env_file(text).unwrap();
        let want: Vec<(String, String)> = [
            ("A", "x"),
            ("B", "y"),
            ("C", "plain"),
            ("D", "a#b"),
            ("E", "has # inside"),
            ("F", "q"),
            ("G", "say \"hi\""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        // Text after the closing quote that is not a comment is still an error.
        let err = parse_env_file("A=\"x\" y\n").unwrap_err();
        assert!(err.starts_with("line 1: the double quote"), "{err}");
    }

    #[test]
    fn names_the_runtime_or_proxdeck_needs_are_refused() {
        for k in [
            "PATH",
            "HOME",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "PORT",
            "USER",
            "APP_DIR",
            "IFS",
            "BASH_ENV",
            "BASH_FUNC_x%%",
            "PROXDECK_STATIC_ROOT",
            "UID",
        ] {
            let err = parse_env_pair(&format!("{k}=x")).unwrap_err();
            assert!(
                err.contains("cannot be set") || err.contains("not a variable name"),
                "{k}: {err}"
            );
        }
        let err = parse_env_pair("PATH=/usr/bin").unwrap_err();
        assert!(
            err.starts_with("PATH cannot be set for the app: proxdeck sets it"),
            "{err}"
        );
        let err = parse_env_file("# x\nLD_PRELOAD=/tmp/x.so\n").unwrap_err();
        assert!(err.starts_with("line 2: LD_PRELOAD cannot be set"), "{err}");
        let mut i = input();
        i.env = vec![("HOME".into(), "/root".into())];
        let err = i.validate(&catalog()).unwrap_err();
        assert!(err.field("env").unwrap().message.contains("HOME"), "{err}");
        for k in [
            "DATABASE_URL",
            "NODE_ENV",
            "LANG",
            "PYTHONPATH",
            "DJANGO_SETTINGS_MODULE",
            "HOSTNAME_X",
        ] {
            assert!(parse_env_pair(&format!("{k}=x")).is_ok(), "{k}");
        }
    }

    #[test]
    fn an_empty_name_is_refused_not_defaulted() {
        for empty in ["", "   "] {
            let mut i = input();
            i.name = Some(empty.into());
            let err = i.validate(&catalog()).unwrap_err();
            assert!(
                err.field("name").unwrap().message.contains("is empty"),
                "{err}"
            );
        }
        let mut i = input();
        i.name = None;
        assert_eq!(i.validate(&catalog()).unwrap().name, None);
        i.name = Some(" shop ".into());
        assert_eq!(
            i.validate(&catalog()).unwrap().name.as_deref(),
            Some("shop")
        );
    }

    #[test]
    fn domains_tls_and_expose_port() {
        let mut i = input();
        i.domains = vec!["Shop.Example.com".into(), "www.shop.example.com".into()];
        i.tls = Some("internal".into());
        i.expose_port = true;
        let spec = i.validate(&catalog()).unwrap();
        assert_eq!(
            spec.overrides.domains,
            ["shop.example.com", "www.shop.example.com"]
        );
        assert_eq!(spec.overrides.tls, Some(crate::domain::TlsMode::Internal));
        assert!(spec.overrides.expose_port && !spec.overrides.port_guarded());
        i.expose_port = false;
        i.tls = None;
        let spec = i.validate(&catalog()).unwrap();
        assert_eq!(spec.overrides.tls_mode(), crate::domain::TlsMode::Acme);
        assert!(spec.overrides.port_guarded());

        let bad = DeployInput {
            domains: vec!["https://shop.example.com".into()],
            tls: Some("letsencrypt".into()),
            ..input()
        };
        let err = bad.validate(&catalog()).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["domain", "tls"]);
        let alone = DeployInput {
            tls: Some("off".into()),
            expose_port: true,
            ..input()
        };
        let err = alone.validate(&catalog()).unwrap_err();
        assert!(
            err.field("tls").unwrap().message.contains("--domain"),
            "{err}"
        );
        assert!(err.field("expose-port").is_some(), "{err}");
    }

    #[test]
    fn ssh_port_is_refused() {
        let mut i = input();
        i.port = Some(22);
        assert!(i.validate(&catalog()).unwrap_err().field("port").is_some());
    }

    #[test]
    fn name_suggestions_are_dns_labels() {
        for (repo, want) in [
            ("https://github.com/acme/My_Shop.git", "my-shop"),
            ("git@github.com:acme/shop.git", "shop"),
            ("file:///tmp/x/flask-sample/", "flask-sample"),
            ("https://h/a/123.git", "app-123"),
        ] {
            let got = suggest_name(repo);
            assert_eq!(got, want);
            assert!(validate_name(&got).is_ok());
        }
    }

    #[test]
    fn subdirs_are_relative_folders_of_the_repository() {
        assert_eq!(normalize_subdir("apps/web/").unwrap(), "apps/web");
        assert_eq!(normalize_subdir("./api").unwrap(), "api");
        assert_eq!(normalize_subdir(".").unwrap(), "");
        for bad in [
            "/srv/app",
            "../up",
            "a/../../b",
            "a b",
            "x;rm",
            "-x",
            "$HOME",
        ] {
            assert!(normalize_subdir(bad).is_err(), "{bad}");
        }
        let spec = DeployInput {
            subdir: Some("services/api/".into()),
            apt: vec!["default-libmysqlclient-dev".into(), "pkg-config".into()],
            ..input()
        }
        .validate(&catalog())
        .unwrap();
        assert_eq!(spec.overrides.subdir.as_deref(), Some("services/api"));
        assert_eq!(
            spec.overrides.apt,
            ["default-libmysqlclient-dev", "pkg-config"]
        );
        let err = DeployInput {
            subdir: Some("../x".into()),
            apt: vec!["libfoo; rm -rf /".into()],
            ..input()
        }
        .validate(&catalog())
        .unwrap_err();
        assert!(err.field("subdir").is_some(), "{err}");
        assert!(
            err.field("apt")
                .unwrap()
                .message
                .contains("Debian package name"),
            "{err}"
        );
    }

    #[test]
    fn apt_package_names_follow_debian_policy() {
        for good in [
            "build-essential",
            "libpq-dev",
            "g++",
            "python3.11-venv",
            "0ad",
        ] {
            assert!(validate_apt_package(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "Libfoo",
            "-x",
            "foo bar",
            "foo=1.0",
            "foo:amd64",
            "$(id)",
        ] {
            assert!(validate_apt_package(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn override_changes_are_checked_and_applied_field_by_field() {
        let bad = Overrides {
            health_path: Some("docs".into()),
            health_status: Some(42),
            start: Some(" ".into()),
            ..Overrides::default()
        };
        let err = validate_overrides(&bad).unwrap_err();
        for field in ["health-path", "health-status", "start"] {
            assert!(err.field(field).is_some(), "{field}: {err}");
        }
        let mut mine = Overrides {
            install: Some("pip install .".into()),
            health_path: Some("/docs".into()),
            apt: vec!["libpq-dev".into()],
            ..Overrides::default()
        };
        let changes = Overrides {
            health_path: Some("/healthz".into()),
            health_status: Some(204),
            ..Overrides::default()
        };
        assert!(validate_overrides(&changes).is_ok());
        mine.apply(&changes);
        assert_eq!(mine.health_path.as_deref(), Some("/healthz"));
        assert_eq!(mine.health_status, Some(204));
        assert_eq!(mine.install.as_deref(), Some("pip install ."));
        assert_eq!(mine.apt, ["libpq-dev"]);
    }
}
