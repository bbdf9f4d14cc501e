//! Reaching a deployment's guest over SSH: which address, port, user and key (the deployment's
//! own, else the config's; proxdeck's key pair unless the user gave `--ssh-key`), host keys
//! pinned in the store on first contact and compared afterwards, and scripts uploaded to a
//! private temporary file and run as root (`sudo -n` for a user other than root).
//!
//! Used by the pipeline's `ssh`/`provision` stages, redeploy, rollback, the destroy of a
//! deployment on an existing host, and app logs. It must not decide what runs: callers bring
//! the script (rendered by `provision`).

use super::Engine;
use super::process::Output;
use super::provision;
use super::ssh::{self, HostKeyPolicy, KeyPair, PresentedKey, SshError, Target};
use crate::domain::Deployment;
use crate::protocol::LogStream;
use crate::store::{Db, HostKey, StoreError};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// How proxdeck reaches one guest.
#[derive(Debug, Clone)]
pub struct Guest {
    pub target: Target,
    pub keys: KeyPair,
}

/// Scripts run as root: directly for root, through `sudo -n` for anyone else (a VM's
/// cloud-init user, a host's deploy user).
pub fn needs_sudo(target: &Target) -> bool {
    target.user != "root"
}

/// The guest of `d` at `address`: the deployment's SSH user and port, else the config's.
pub async fn resolve(engine: &Engine, d: &Deployment, address: &str) -> Result<Guest, SshError> {
    let keys = match &d.overrides.ssh_key {
        Some(path) => {
            let private = PathBuf::from(path);
            if let Err(e) = std::fs::metadata(&private) {
                return Err(SshError::Key {
                    path: path.clone(),
                    message: format!("cannot read the deployment's SSH key: {e}"),
                });
            }
            let mut public = private.clone().into_os_string();
            public.push(".pub");
            KeyPair {
                private,
                public: PathBuf::from(public),
            }
        }
        None => {
            let dir = engine.paths.keys();
            tokio::task::spawn_blocking(move || ssh::ensure_key(&dir))
                .await
                .map_err(|e| SshError::Key {
                    path: engine.paths.keys().display().to_string(),
                    message: e.to_string(),
                })??
        }
    };
    Ok(Guest {
        target: Target {
            host: address.to_string(),
            port: d.ssh_port.unwrap_or(engine.config.guest.ssh_port),
            user: d
                .ssh_user
                .clone()
                .unwrap_or_else(|| engine.config.guest.ssh_user.clone()),
        },
        keys,
    })
}

/// Connects (retrying until the config's SSH timeout) and checks the host key against the one
/// pinned for this address, pinning it on first contact. Notes go to `notes`.
pub async fn connect(
    engine: &Engine,
    guest: &Guest,
    notes: mpsc::UnboundedSender<Output>,
) -> Result<ssh2::Session, SshError> {
    let db = engine.db.clone();
    let within = engine.config.timeouts.ssh;
    let guest = guest.clone();
    tokio::task::spawn_blocking(move || {
        let mut policy = PinInStore {
            db,
            notes: notes.clone(),
        };
        let note = |text: &str| {
            let _ = notes.send(Output {
                stream: LogStream::Info,
                lines: vec![text.to_string()],
            });
        };
        ssh::connect(&guest.target, &guest.keys, &mut policy, within, note)
    })
    .await
    .map_err(|e| SshError::Protocol {
        target: String::new(),
        message: e.to_string(),
    })?
}

/// What a script run reported.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptRun {
    pub status: i32,
    /// The first `proxdeck-commit:` line of its output.
    pub commit: Option<String>,
    /// The script's own reason for stopping: its last `proxdeck: ` line on stderr.
    pub reason: Option<String>,
}

/// Uploads `script` to a private temporary file on the guest (it may hold secrets: mode
/// 0600, a name from `mktemp`), runs it with `bash -euo pipefail` as root, and removes it.
/// Output batches go to `out` until the script ends or `stop()` is true. Blocks.
pub fn run_script(
    session: &ssh2::Session,
    target: &Target,
    script: &str,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
    out: &mut dyn FnMut(LogStream, Vec<String>),
) -> Result<ScriptRun, SshError> {
    let mut path = String::new();
    let mut upload_err = Vec::new();
    let mut capture = |stream: LogStream, lines: Vec<String>| match stream {
        LogStream::Stdout => path.push_str(lines.concat().trim()),
        _ => upload_err.extend(lines),
    };
    let upload = "umask 077 && f=$(mktemp \"${TMPDIR:-/tmp}/proxdeck-XXXXXXXXXX\") && cat >\"$f\" && printf '%s\\n' \"$f\"";
    let rc = ssh::exec(
        session,
        target,
        upload,
        Some(script.as_bytes()),
        Duration::from_secs(60),
        &mut capture,
    )?;
    if rc != 0 || !path.starts_with('/') {
        return Err(SshError::Protocol {
            target: target.label(),
            message: format!(
                "cannot upload the script to a temporary file (status {rc}): {}",
                upload_err.join(" ")
            ),
        });
    }
    let quoted = shlex::try_quote(&path)
        .map_err(|e| SshError::Protocol {
            target: target.label(),
            message: e.to_string(),
        })?
        .to_string();
    let runner = if needs_sudo(target) {
        "sudo -n bash -euo pipefail"
    } else {
        "bash -euo pipefail"
    };
    let command = format!("{runner} {quoted} </dev/null; rc=$?; rm -f {quoted}; exit $rc");
    let mut commit = None;
    let mut reason = None;
    let mut sudo_refused = None;
    let mut forward = |stream: LogStream, lines: Vec<String>| {
        if stream == LogStream::Stdout && commit.is_none() {
            commit = lines.iter().find_map(|l| provision::commit_from_line(l));
        }
        if stream == LogStream::Stderr
            && let Some(r) = lines
                .iter()
                .rev()
                .find_map(|l| provision::reason_from_line(l))
        {
            reason = Some(r);
        }
        if stream == LogStream::Stderr && sudo_refused.is_none() {
            sudo_refused = lines
                .iter()
                .find(|l| l.starts_with("sudo: ") && l.contains("password"))
                .cloned();
        }
        out(stream, lines);
    };
    let status = ssh::exec_until(session, target, &command, None, timeout, stop, &mut forward)?;
    if let Some(why) = sudo_refused.filter(|_| status != 0) {
        return Err(SshError::Protocol {
            target: target.label(),
            message: format!(
                "{} cannot run commands as root without a password ({why}); allow it passwordless sudo, or deploy as root (--ssh-user root)",
                target.user
            ),
        });
    }
    Ok(ScriptRun {
        status,
        commit,
        reason,
    })
}

/// Host keys pinned in the store: accepted and pinned on first contact, compared afterwards.
struct PinInStore {
    db: Db,
    notes: mpsc::UnboundedSender<Output>,
}

impl HostKeyPolicy for PinInStore {
    fn check(&mut self, target: &Target, key: &PresentedKey) -> Result<(), SshError> {
        let label = target.label();
        let perr = |e: StoreError| SshError::Protocol {
            target: label.clone(),
            message: format!("host key store: {e}"),
        };
        let presented = HostKey {
            host: label.clone(),
            key_type: key.key_type.clone(),
            fingerprint: key.fingerprint.clone(),
        };
        let (pinned, new) = self
            .db
            .blocking(|s| s.pin_host_key_once(&presented))
            .map_err(perr)?;
        if pinned.fingerprint != key.fingerprint {
            return Err(SshError::HostKeyChanged {
                target: label.clone(),
                pinned: format!("{} {}", pinned.key_type, pinned.fingerprint),
                presented: format!("{} {}", key.key_type, key.fingerprint),
            });
        }
        if new {
            let _ = self.notes.send(Output {
                stream: LogStream::Info,
                lines: vec![format!(
                    "pinned host key of {label}: {} {}",
                    key.key_type, key.fingerprint
                )],
            });
        }
        Ok(())
    }
}
