//! Reading private repositories. Owns:
//! - the per-deployment deploy key: an ed25519 pair made by `ssh::ensure_key` (the `ssh-key`
//!   crate) in `deploy-keys/<id>/` (0700 folder, private half 0600); before the deployment is
//!   recorded it waits in `deploy-keys/pending-<hash of the repository URL>/`, so running the
//!   same `deploy` again after adding the key finds the same pair;
//! - the Git host's SSH key, pinned on first use (`ssh-keyscan` from this machine, a
//!   `known_hosts` file beside the deploy key) and compared on every later run: a changed key
//!   is an error naming both fingerprints, and git's ssh itself runs with
//!   `StrictHostKeyChecking=yes` against that file, on this machine and on the guest;
//! - the HTTPS token read from an environment variable, kept in `secrets/<id>.git-token`
//!   (0600) for the worker, handed to git with the user's credential helpers switched off, so
//!   git never stores it: here through `GIT_ASKPASS` (an answer script in the data dir that
//!   holds no secret; the token is in git's environment), on the guest through a credential
//!   helper given in git's environment that reads it from a file in memory (a shell function:
//!   nothing to execute from `/dev/shm`, which hardened hosts mount `noexec`);
//! - where a deploy key is added on GitHub, GitLab and Gitea/Forgejo, in words and URL.
//!
//! It must not put a credential in argv, the database or a log line (every token is given to
//! the caller's redactor through [`Access::secrets`]), and it runs no SSH session:
//! `pipeline::app` stages the credentials on the guest with the files named here.

use super::DataPaths;
use super::process::{self, ProcessSpec};
use super::ssh::{self, KeyPair};
use crate::domain::{DeploymentId, GitAuth};
use crate::protocol::LogStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How git reads one repository: what to add to git's environment, and the files and secret
/// the guest needs for the same.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub auth: Option<GitAuth>,
    /// Added to git's environment on this machine.
    pub env: Vec<(String, String)>,
    /// The deploy key's private half and the pinned Git host keys (deploy key only).
    pub key: Option<KeyPair>,
    pub known_hosts: Option<PathBuf>,
    /// The token (token only): masked in every log line.
    pub token: Option<String>,
    /// The user name git sends with the token.
    pub username: Option<String>,
    /// Lines for the user from getting this access (a Git host key pinned now).
    pub notes: Vec<String>,
}

impl Access {
    /// A public repository: git as it is.
    pub fn none() -> Access {
        Access::default()
    }

    /// What a redactor must mask.
    pub fn secrets(&self) -> Vec<String> {
        self.token.iter().cloned().collect()
    }

    /// In words, for messages: "the deployment's deploy key", "no credentials".
    pub fn describe(&self) -> String {
        match &self.auth {
            Some(a) => a.describe(),
            None => "no credentials of its own".to_string(),
        }
    }
}

/// The folder of a recorded deployment's deploy key and pinned Git host keys.
pub fn deploy_key_dir(paths: &DataPaths, id: &DeploymentId) -> PathBuf {
    paths.root.join("deploy-keys").join(&id.0)
}

/// The folder a deploy key waits in before its deployment is recorded.
fn pending_dir(paths: &DataPaths, repo: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(repo.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    paths
        .root
        .join("deploy-keys")
        .join(format!("pending-{hex}"))
}

/// Where a deployment's HTTPS token is kept (0600).
pub fn token_path(paths: &DataPaths, id: &DeploymentId) -> PathBuf {
    paths
        .root
        .join("secrets")
        .join(format!("{}.git-token", id.0))
}

/// Removes what a deployment kept to read its repository (on destroy).
pub fn forget(paths: &DataPaths, id: &DeploymentId) {
    let _ = std::fs::remove_dir_all(deploy_key_dir(paths, id));
    let _ = std::fs::remove_file(token_path(paths, id));
}

/// The token in `var` of this process's environment, or what to do.
pub fn token_from_env(var: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        Ok(_) => Err(format!(
            "git-token-env: ${var} is empty; export the token in it (`export {var}=...`) and run the command again"
        )),
        Err(_) => Err(format!(
            "git-token-env: ${var} is not set in proxdeck's environment; export the token in it (`export {var}=...`, a read-only token of the repository) and run the command again"
        )),
    }
}

/// Keeps a deployment's token for the worker (0600, replaced atomically).
pub fn save_token(paths: &DataPaths, id: &DeploymentId, token: &str) -> std::io::Result<()> {
    write_private(&token_path(paths, id), token.as_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The user name sent with a token: GitLab wants `oauth2` for OAuth tokens and takes any
/// name with a personal one; GitHub and Gitea take any name.
fn token_username(repo: &str) -> String {
    match repo_place(repo) {
        Some(p) if p.host.contains("gitlab") => "oauth2".into(),
        _ => "x-access-token".into(),
    }
}

/// The answer script git runs as `GIT_ASKPASS` on this machine. It holds no secret: the
/// token comes from git's environment (`PROXDECK_GIT_TOKEN`).
pub const ASKPASS: &str = "#!/bin/sh\n\
# proxdeck's GIT_ASKPASS: answers git's prompts; holds no secret itself.\n\
case \"$1\" in\n\
  Username*) printf '%s\\n' \"${PROXDECK_GIT_USERNAME:-x-access-token}\" ;;\n\
  *) printf '%s\\n' \"$PROXDECK_GIT_TOKEN\" ;;\n\
esac\n";

fn ensure_askpass(paths: &DataPaths) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = paths.root.join("git-askpass.sh");
    let current = std::fs::read_to_string(&path).ok();
    if current.as_deref() != Some(ASKPASS) {
        write_private(&path, ASKPASS.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// `GIT_SSH_COMMAND` for a deploy key: only that key, the pinned host keys only.
pub fn ssh_command(key: &Path, known_hosts: &Path) -> String {
    let q = |p: &Path| {
        let s = p.display().to_string();
        shlex::try_quote(&s).map(|c| c.into_owned()).unwrap_or(s)
    };
    format!(
        "ssh -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=20",
        q(key),
        q(known_hosts)
    )
}

/// Switches git's credential helpers off, so a token is never stored.
fn no_credential_helpers() -> Vec<(String, String)> {
    vec![
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        ("GIT_CONFIG_KEY_0".into(), "credential.helper".into()),
        ("GIT_CONFIG_VALUE_0".into(), String::new()),
    ]
}

/// Access for a deployment about to be recorded: the pending deploy key (made now if
/// needed) with the Git host's key pinned, or the token read from this process's
/// environment. The second value holds lines for the user (a key pinned now).
pub async fn access_for_new(
    paths: &DataPaths,
    repo: &str,
    auth: Option<&GitAuth>,
) -> Result<(Access, Vec<String>), String> {
    match auth {
        None => Ok((Access::none(), Vec::new())),
        Some(GitAuth::DeployKey) => deploy_key_access(pending_dir(paths, repo), repo).await,
        Some(GitAuth::TokenEnv(var)) => {
            let token = token_from_env(var)?;
            Ok((token_access(paths, repo, var, token)?, Vec::new()))
        }
    }
}

/// Keeps a new deployment's credentials under its id: the pending deploy key moved to
/// `deploy-keys/<id>/`, the token written to its secrets file.
pub fn adopt(
    paths: &DataPaths,
    repo: &str,
    id: &DeploymentId,
    access: &Access,
) -> Result<(), String> {
    match &access.auth {
        None => Ok(()),
        Some(GitAuth::DeployKey) => {
            let from = pending_dir(paths, repo);
            let to = deploy_key_dir(paths, id);
            let _ = std::fs::remove_dir_all(&to);
            std::fs::rename(&from, &to)
                .map_err(|e| format!("cannot keep the deploy key in {}: {e}", to.display()))
        }
        Some(GitAuth::TokenEnv(_)) => {
            let token = access.token.as_deref().unwrap_or_default();
            save_token(paths, id, token).map_err(|e| format!("cannot keep the token: {e}"))
        }
    }
}

/// Access for a recorded deployment (the worker's runs): its deploy key with the Git host's
/// key checked against the pinned one, or its stored token.
pub async fn access_for(
    paths: &DataPaths,
    id: &DeploymentId,
    repo: &str,
    auth: Option<&GitAuth>,
) -> Result<(Access, Vec<String>), String> {
    match auth {
        None => Ok((Access::none(), Vec::new())),
        Some(GitAuth::DeployKey) => {
            let dir = deploy_key_dir(paths, id);
            if !dir.join("id_ed25519").exists() {
                return Err(format!(
                    "the deployment's deploy key is missing from {}: deploy again with --deploy-key (a new key, to be added to the repository)",
                    dir.display()
                ));
            }
            deploy_key_access(dir, repo).await
        }
        Some(GitAuth::TokenEnv(var)) => {
            let path = token_path(paths, id);
            let token = std::fs::read_to_string(&path)
                .map(|t| t.trim().to_string())
                .ok()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    format!(
                        "no token is kept for this deployment ({} cannot be read): export {var} and run the command again from that shell",
                        path.display()
                    )
                })?;
            Ok((token_access(paths, repo, var, token)?, Vec::new()))
        }
    }
}

/// The token of a recorded deployment from this process's environment, kept for the worker
/// when the variable is set (a refreshed token reaches the next run); nothing when unset.
pub fn refresh_token(paths: &DataPaths, id: &DeploymentId, auth: Option<&GitAuth>) {
    if let Some(GitAuth::TokenEnv(var)) = auth
        && let Ok(token) = token_from_env(var)
    {
        let _ = save_token(paths, id, &token);
    }
}

fn token_access(paths: &DataPaths, repo: &str, var: &str, token: String) -> Result<Access, String> {
    let askpass = ensure_askpass(paths)?;
    let username = token_username(repo);
    let mut env = vec![
        ("GIT_ASKPASS".to_string(), askpass.display().to_string()),
        ("PROXDECK_GIT_USERNAME".to_string(), username.clone()),
        ("PROXDECK_GIT_TOKEN".to_string(), token.clone()),
    ];
    env.extend(no_credential_helpers());
    Ok(Access {
        auth: Some(GitAuth::TokenEnv(var.to_string())),
        env,
        key: None,
        known_hosts: None,
        token: Some(token),
        username: Some(username),
        notes: Vec::new(),
    })
}

async fn deploy_key_access(dir: PathBuf, repo: &str) -> Result<(Access, Vec<String>), String> {
    let key_dir = dir.clone();
    let key = tokio::task::spawn_blocking(move || ssh::ensure_key(&key_dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let known_hosts = dir.join("known_hosts");
    let notes = pin_git_host(&known_hosts, repo).await?;
    let env = vec![(
        "GIT_SSH_COMMAND".to_string(),
        ssh_command(&key.private, &known_hosts),
    )];
    Ok((
        Access {
            auth: Some(GitAuth::DeployKey),
            env,
            key: Some(key),
            known_hosts: Some(known_hosts),
            token: None,
            username: None,
            notes: Vec::new(),
        },
        notes,
    ))
}

/// Where a repository lives: host, SSH port and `OWNER/REPO` (without `.git`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPlace {
    pub host: String,
    pub port: Option<u16>,
    pub path: String,
}

/// The host, port and path of an SSH (`ssh://`, `user@host:path`) or https URL.
pub fn repo_place(repo: &str) -> Option<RepoPlace> {
    let trim = |p: &str| {
        let p = p.trim_matches('/');
        p.strip_suffix(".git").unwrap_or(p).to_string()
    };
    if repo.contains("://") {
        let url = url::Url::parse(repo).ok()?;
        return Some(RepoPlace {
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port(),
            path: trim(url.path()),
        });
    }
    let (userhost, path) = repo.split_once(':')?;
    let host = userhost.rsplit_once('@').map_or(userhost, |(_, h)| h);
    Some(RepoPlace {
        host: host.to_ascii_lowercase(),
        port: None,
        path: trim(path),
    })
}

/// Where to add a deploy key for `repo`, in words with the page's URL.
pub fn where_to_add(repo: &str) -> String {
    let Some(p) = repo_place(repo) else {
        return "the repository's deploy keys (read access only)".to_string();
    };
    let (host, path) = (&p.host, &p.path);
    if host == "github.com" || host.ends_with(".github.com") {
        return format!(
            "GitHub: the repository's Settings → Deploy keys → Add deploy key, at https://{host}/{path}/settings/keys (leave \"Allow write access\" off)"
        );
    }
    let gitlab = format!(
        "GitLab: the project's Settings → Repository → Deploy keys, at https://{host}/{path}/-/settings/repository (no write access)"
    );
    let gitea = format!(
        "Gitea/Forgejo: the repository's Settings → Deploy Keys, at https://{host}/{path}/settings/keys (read-only)"
    );
    if host.contains("gitlab") {
        gitlab
    } else if host.contains("gitea") || host.contains("forgejo") || host == "codeberg.org" {
        gitea
    } else {
        format!("{gitea}; or {gitlab}; or, on a plain Git server, the git user's authorized_keys")
    }
}

/// The words shown with a deploy key: the key and where to add it.
pub fn add_key_words(public_key: &str, repo: &str) -> String {
    format!(
        "add this public key as a READ-ONLY deploy key of {repo}:\n\n  {public_key}\n\n  where: {}\n",
        where_to_add(repo)
    )
}

/// A host key as `ssh-keyscan` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostKeyLine {
    key_type: String,
    base64: String,
}

impl HostKeyLine {
    fn fingerprint(&self) -> String {
        ssh_key::PublicKey::from_openssh(&format!("{} {}", self.key_type, self.base64))
            .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
            .unwrap_or_else(|_| "(unreadable key)".into())
    }
    fn words(&self) -> String {
        format!("{} {}", self.key_type, self.fingerprint())
    }
}

/// Host keys in `known_hosts` or `ssh-keyscan` lines (`PATTERN TYPE BASE64`).
fn parse_host_keys(text: &str) -> Vec<HostKeyLine> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let _pattern = parts.next()?;
            let key_type = parts.next()?.to_string();
            let base64 = parts.next()?.to_string();
            Some(HostKeyLine { key_type, base64 })
        })
        .collect()
}

/// Compares what the Git host presents now with what was pinned: every pinned type it
/// presents again must be the same key, and at least one pinned type must be presented.
fn compare_host_keys(
    label: &str,
    pinned: &[HostKeyLine],
    presented: &[HostKeyLine],
    file: &Path,
) -> Result<(), String> {
    let mut same = 0;
    for p in pinned {
        if let Some(now) = presented.iter().find(|k| k.key_type == p.key_type) {
            if now.base64 != p.base64 {
                return Err(changed(label, &p.words(), &now.words(), file));
            }
            same += 1;
        }
    }
    if same == 0 {
        let was: Vec<String> = pinned.iter().map(HostKeyLine::words).collect();
        let now: Vec<String> = presented.iter().map(HostKeyLine::words).collect();
        return Err(changed(label, &was.join(", "), &now.join(", "), file));
    }
    Ok(())
}

fn changed(label: &str, was: &str, now: &str, file: &Path) -> String {
    format!(
        "the SSH host key of the Git server {label} changed! pinned {was}, now {now}. If the Git server's key was replaced on purpose, remove {} and run the command again to pin the new one; otherwise someone may be intercepting the connection",
        file.display()
    )
}

/// The host keys pinned in `known_hosts`, as `TYPE SHA256:...` words.
pub fn pinned_words(known_hosts: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(known_hosts)?;
    let words: Vec<String> = parse_host_keys(&text)
        .iter()
        .map(HostKeyLine::words)
        .collect();
    Ok(words.join(", "))
}

/// Pins the Git host's SSH keys in `known_hosts` on first use (said in the returned lines,
/// with the fingerprints), and compares them on every later use. Not for https URLs.
pub async fn pin_git_host(known_hosts: &Path, repo: &str) -> Result<Vec<String>, String> {
    let Some(place) = repo_place(repo) else {
        return Err(format!("cannot tell the Git host of {repo}"));
    };
    let port = place.port.unwrap_or(22);
    let label = if port == 22 {
        place.host.clone()
    } else {
        format!("{}:{port}", place.host)
    };
    let scanned = keyscan(&place.host, port).await?;
    let presented = parse_host_keys(&scanned);
    if presented.is_empty() {
        return Err(format!(
            "the Git server {label} presented no SSH host key (ssh-keyscan found none): check the repository URL and that {label} answers SSH"
        ));
    }
    match std::fs::read_to_string(known_hosts) {
        Ok(text) => {
            let pinned = parse_host_keys(&text);
            compare_host_keys(&label, &pinned, &presented, known_hosts)?;
            Ok(Vec::new())
        }
        Err(_) => {
            let pattern = if port == 22 {
                place.host.clone()
            } else {
                format!("[{}]:{port}", place.host)
            };
            let lines: String = presented
                .iter()
                .map(|k| format!("{pattern} {} {}\n", k.key_type, k.base64))
                .collect();
            write_private(known_hosts, lines.as_bytes())
                .map_err(|e| format!("{}: {e}", known_hosts.display()))?;
            let prints: Vec<String> = presented.iter().map(HostKeyLine::words).collect();
            Ok(vec![format!(
                "pinned the SSH host key of the Git server {label}: {} (compare with what the Git host publishes; a later change stops every fetch)",
                prints.join(", ")
            )])
        }
    }
}

async fn keyscan(host: &str, port: u16) -> Result<String, String> {
    let port_s = port.to_string();
    let mut spec = ProcessSpec::new("ssh-keyscan", &["-T", "15", "-p", &port_s, "--", host]);
    spec.timeout = Duration::from_secs(30);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_c, cancel) = watch::channel(false);
    let status = process::run(&spec, tx, cancel)
        .await
        .map_err(|e| format!("cannot run ssh-keyscan (OpenSSH's client tools): {e}"))?;
    let mut out = Vec::new();
    let mut err = Vec::new();
    while let Ok(o) = rx.try_recv() {
        match o.stream {
            LogStream::Stdout => out.extend(o.lines),
            _ => err.extend(o.lines.into_iter().filter(|l| !l.starts_with('#'))),
        }
    }
    if out.is_empty() {
        return Err(format!(
            "cannot read the SSH host key of the Git server {host}:{port} (ssh-keyscan {status}{}): check the repository URL and that this machine reaches it",
            if err.is_empty() {
                String::new()
            } else {
                format!(": {}", err.join(" "))
            }
        ));
    }
    Ok(out.join("\n"))
}

/// A file staged on the guest: its name in the staging folder, its bytes, its mode.
pub type StagedFile = (&'static str, Vec<u8>, u32);

/// The guest's side: the files to stage in memory on the guest for `access`.
pub fn guest_files(access: &Access) -> Result<Vec<StagedFile>, String> {
    let mut files = Vec::new();
    if let (Some(key), Some(kh)) = (&access.key, &access.known_hosts) {
        let private =
            std::fs::read(&key.private).map_err(|e| format!("{}: {e}", key.private.display()))?;
        let hosts = std::fs::read(kh).map_err(|e| format!("{}: {e}", kh.display()))?;
        files.push(("key", private, 0o600));
        files.push(("known_hosts", hosts, 0o600));
    }
    if let Some(token) = &access.token {
        files.push(("token", token.clone().into_bytes(), 0o600));
    }
    Ok(files)
}

/// git's environment on the guest with the staged files in `dir` (`KEY=VALUE` entries; no
/// secret among them).
pub fn guest_env(access: &Access, dir: &str) -> Vec<String> {
    let mut env = vec!["GIT_TERMINAL_PROMPT=0".to_string()];
    let d = Path::new(dir);
    match &access.auth {
        Some(GitAuth::DeployKey) => env.push(format!(
            "GIT_SSH_COMMAND={}",
            ssh_command(&d.join("key"), &d.join("known_hosts"))
        )),
        Some(GitAuth::TokenEnv(_)) => {
            // The user's helpers off, then one that answers `get` from the token file (and
            // ignores `store` and `erase`): run by git through the shell, nothing executed
            // from the staging folder.
            let file = d.join("token").display().to_string();
            let file = shlex::try_quote(&file)
                .map(|q| q.into_owned())
                .unwrap_or(file);
            env.push(format!(
                "PROXDECK_GIT_USERNAME={}",
                access.username.as_deref().unwrap_or("x-access-token")
            ));
            env.push("GIT_CONFIG_COUNT=2".into());
            env.push("GIT_CONFIG_KEY_0=credential.helper".into());
            env.push("GIT_CONFIG_VALUE_0=".into());
            env.push("GIT_CONFIG_KEY_1=credential.helper".into());
            env.push(format!(
                "GIT_CONFIG_VALUE_1=!f() {{ test \"$1\" = get || exit 0; printf 'username=%s\\npassword=%s\\n' \"$PROXDECK_GIT_USERNAME\" \"$(cat {file})\"; }}; f"
            ));
        }
        None => {}
    }
    env
}

/// What to do when the guest (or this machine) cannot read the repository with `access`.
pub fn unreadable_hint(access: &Access, repo: &str, id: &DeploymentId) -> String {
    match &access.auth {
        Some(GitAuth::DeployKey) => format!(
            "check that the deploy key (`proxdeck deploy-key {id}` prints it) is added where {}; then `proxdeck retry {id}`",
            where_to_add(repo)
        ),
        Some(GitAuth::TokenEnv(var)) => format!(
            "check that it reaches the Git host and trusts its certificate, and that the token in ${var} may read the repository (GitHub: Contents read; GitLab: read_repository; Gitea: repository read) and has not expired; export it again and `proxdeck retry {id}` from that shell (the new value is kept)"
        ),
        None => format!(
            "your machine may read it with your own SSH key or credentials, which the guest does not have: for a private repository deploy again with --deploy-key (an SSH URL; proxdeck makes a read-only key to add to the repository) or --git-token-env VAR (an https URL); else check that the guest reaches the Git host, then `proxdeck retry {id}`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_come_from_ssh_and_https_urls() {
        assert_eq!(
            repo_place("git@github.com:acme/shop.git"),
            Some(RepoPlace {
                host: "github.com".into(),
                port: None,
                path: "acme/shop".into()
            })
        );
        assert_eq!(
            repo_place("ssh://git@gitlab.example.com:2222/group/sub/app.git"),
            Some(RepoPlace {
                host: "gitlab.example.com".into(),
                port: Some(2222),
                path: "group/sub/app".into()
            })
        );
        assert_eq!(
            repo_place("https://codeberg.org/me/site").unwrap().path,
            "me/site"
        );
    }

    #[test]
    fn the_place_to_add_a_key_names_the_settings_page() {
        let gh = where_to_add("git@github.com:acme/shop.git");
        assert!(
            gh.contains("https://github.com/acme/shop/settings/keys"),
            "{gh}"
        );
        assert!(
            gh.contains("Deploy keys") && gh.contains("write access"),
            "{gh}"
        );
        let gl = where_to_add("git@gitlab.com:acme/shop.git");
        assert!(
            gl.contains("https://gitlab.com/acme/shop/-/settings/repository")
                && gl.contains("Settings → Repository → Deploy keys"),
            "{gl}"
        );
        let gt = where_to_add("ssh://git@codeberg.org/me/site.git");
        assert!(
            gt.contains("https://codeberg.org/me/site/settings/keys"),
            "{gt}"
        );
        let other = where_to_add("git@git.internal:team/app.git");
        assert!(
            other.contains("Gitea/Forgejo") && other.contains("GitLab"),
            "{other}"
        );
    }

    fn key_line(seed: u8) -> HostKeyLine {
        let key = ssh_key::PrivateKey::new(
            ssh_key::private::KeypairData::Ed25519(ssh_key::private::Ed25519Keypair::from_seed(
                &[seed; 32],
            )),
            "",
        )
        .unwrap();
        let text = key.public_key().to_openssh().unwrap();
        parse_host_keys(&format!("host {text}")).remove(0)
    }

    #[test]
    fn a_changed_host_key_names_both_fingerprints() {
        let (a, b) = (key_line(1), key_line(2));
        let file = Path::new("/data/deploy-keys/x/known_hosts");
        let (one_a, one_b) = (std::slice::from_ref(&a), std::slice::from_ref(&b));
        compare_host_keys("git.example", one_a, one_a, file).unwrap();
        let err = compare_host_keys("git.example", one_a, one_b, file).unwrap_err();
        assert!(
            err.contains(&a.fingerprint()) && err.contains(&b.fingerprint()),
            "{err}"
        );
        assert!(
            err.contains("changed") && err.contains("known_hosts"),
            "{err}"
        );
        assert!(a.fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn guest_env_holds_paths_not_secrets() {
        let access = Access {
            auth: Some(GitAuth::TokenEnv("TOK".into())),
            token: Some("s3cret-token".into()),
            username: Some("x-access-token".into()),
            ..Access::default()
        };
        let env = guest_env(&access, "/dev/shm/proxdeck-git-abc");
        assert!(env.iter().all(|e| !e.contains("s3cret-token")), "{env:?}");
        assert!(env.contains(&"GIT_CONFIG_KEY_0=credential.helper".to_string()));
        assert!(env.contains(&"GIT_CONFIG_VALUE_0=".to_string()), "{env:?}");
        let helper = env
            .iter()
            .find(|e| e.starts_with("GIT_CONFIG_VALUE_1="))
            .unwrap();
        assert!(
            helper.contains("cat /dev/shm/proxdeck-git-abc/token"),
            "{helper}"
        );
        assert_eq!(access.secrets(), vec!["s3cret-token".to_string()]);
        let key = Access {
            auth: Some(GitAuth::DeployKey),
            ..Access::default()
        };
        let env = guest_env(&key, "/dev/shm/d");
        let ssh = env
            .iter()
            .find(|e| e.starts_with("GIT_SSH_COMMAND="))
            .unwrap();
        assert!(
            ssh.contains("StrictHostKeyChecking=yes") && ssh.contains("/dev/shm/d/known_hosts")
        );
    }
}
