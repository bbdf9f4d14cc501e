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
    tokio::task::spawn_blocking(move || connect_blocking(&db, &guest, within, &notes))
        .await
        .map_err(|e| SshError::Protocol {
            target: String::new(),
            message: e.to_string(),
        })?
}

/// [`connect`] on a blocking thread: also how a run being followed reconnects after its
/// connection dropped (the host key checked again). Blocks.
pub fn connect_blocking(
    db: &Db,
    guest: &Guest,
    within: Duration,
    notes: &mpsc::UnboundedSender<Output>,
) -> Result<ssh2::Session, SshError> {
    let mut policy = PinInStore {
        db: db.clone(),
        notes: notes.clone(),
    };
    let note = |text: &str| {
        let _ = notes.send(Output {
            stream: LogStream::Info,
            lines: vec![text.to_string()],
        });
    };
    ssh::connect(&guest.target, &guest.keys, &mut policy, within, note)
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

/// How many times following a detached run reconnects after its connection dropped.
const RECONNECTS: u32 = 5;

/// The runner's follower says something at least every 10 s (`R alive`); this long without a
/// word, the connection is taken for dead (a network that drops packets sends no reset).
const FOLLOW_SILENCE: Duration = Duration::from_secs(45);

/// The runner's own commands (start, stop) end within this (a stop waits up to 10 s for the
/// run to go, then up to 20 s after killing it).
const RUNNER_STEP: Duration = Duration::from_secs(90);

/// A new run's id: its start time (seconds and microseconds): sortable, and unique enough
/// for one app's runs (a second start stops the first).
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("run-{}-{:06}", now.as_secs(), now.subsec_micros())
}

/// The shell command that runs the provisioning runner (`provision::RUNNER`, passed as the
/// text of `bash -c`) with `args`, as root.
fn runner_command(target: &Target, args: &[&str]) -> Result<String, SshError> {
    let quote = |s: &str| {
        shlex::try_quote(s)
            .map(|q| q.into_owned())
            .map_err(|e| SshError::Protocol {
                target: target.label(),
                message: format!("cannot quote a runner argument: {e}"),
            })
    };
    let mut words = Vec::new();
    if needs_sudo(target) {
        words.push("sudo -n".to_string());
    }
    words.push("bash -c".to_string());
    words.push(quote(provision::RUNNER)?);
    words.push("proxdeck-runner".to_string());
    for arg in args {
        words.push(quote(arg)?);
    }
    Ok(words.join(" "))
}

/// Reads the runner's output: the run's log lines (tagged `O `/`E ` by the runner) back on
/// their streams, the runner's own notes as info, and what the run reported (commit, reason,
/// its end).
#[derive(Default)]
struct RunnerOutput {
    /// Log lines of the run received so far (where to resume after a reconnect).
    seen: u64,
    commit: Option<String>,
    reason: Option<String>,
    sudo_refused: Option<String>,
    /// `R end STATUS LINES`: the run's exit status (or `lost`) and its log's line count.
    end: Option<(String, u64)>,
}

impl RunnerOutput {
    fn take(
        &mut self,
        stream: LogStream,
        lines: Vec<String>,
        out: &mut dyn FnMut(LogStream, Vec<String>),
    ) {
        let mut batch: Vec<(LogStream, String)> = Vec::with_capacity(lines.len());
        for line in lines {
            let (to, text) = if stream != LogStream::Stdout {
                (stream, line)
            } else if let Some(text) = line.strip_prefix("O ") {
                self.seen += 1;
                (LogStream::Stdout, text.to_string())
            } else if let Some(text) = line.strip_prefix("E ") {
                self.seen += 1;
                (LogStream::Stderr, text.to_string())
            } else if let Some(note) = line.strip_prefix("R note ") {
                (LogStream::Info, note.to_string())
            } else if let Some(started) = line.strip_prefix("R started ") {
                let mut words = started.split_whitespace();
                let run = words.next().unwrap_or("?");
                let group = words.next().unwrap_or("?");
                (
                    LogStream::Info,
                    format!("provisioning run {run} started on the guest (process group {group})"),
                )
            } else if line == "R alive" {
                continue;
            } else if let Some(end) = line.strip_prefix("R end ") {
                let mut words = end.split_whitespace();
                let status = words.next().unwrap_or("lost").to_string();
                let count = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                self.end = Some((status, count));
                continue;
            } else {
                (LogStream::Info, line)
            };
            if to == LogStream::Stdout && self.commit.is_none() {
                self.commit = provision::commit_from_line(&text);
            }
            if to == LogStream::Stderr {
                if let Some(r) = provision::reason_from_line(&text) {
                    self.reason = Some(r);
                }
                if self.sudo_refused.is_none()
                    && text.starts_with("sudo: ")
                    && text.contains("password")
                {
                    self.sudo_refused = Some(text.clone());
                }
            }
            batch.push((to, text));
        }
        // Consecutive lines of one stream go out together.
        let mut pending: Option<(LogStream, Vec<String>)> = None;
        for (to, text) in batch {
            match &mut pending {
                Some((s, lines)) if *s == to => lines.push(text),
                _ => {
                    if let Some((s, lines)) = pending.take() {
                        out(s, lines);
                    }
                    pending = Some((to, vec![text]));
                }
            }
        }
        if let Some((s, lines)) = pending {
            out(s, lines);
        }
    }
}

/// Runs the provisioning `script` detached on the guest through the runner: one run per app
/// (the runner's lock in `state`, an earlier run still going stopped first), in a session of
/// its own with its pid file, log and exit status in `state`, so that a dropped connection or
/// a killed proxdeck does not stop it. Follows its log until it ends, reconnecting with
/// `reconnect` (at most [`RECONNECTS`] times) when the connection drops; `stop()` turning true
/// (the job was cancelled) or the run outliving `timeout` stops the run on the guest too.
/// Returns what the run reported and the session in use at the end. Blocks.
#[allow(clippy::too_many_arguments)]
pub fn run_detached(
    session: ssh2::Session,
    target: &Target,
    reconnect: &mut dyn FnMut() -> Result<ssh2::Session, SshError>,
    state: &str,
    script: &str,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
    out: &mut dyn FnMut(LogStream, Vec<String>),
) -> (Result<ScriptRun, SshError>, ssh2::Session) {
    let mut session = session;
    let result = follow_detached(
        &mut session,
        target,
        reconnect,
        state,
        script,
        timeout,
        stop,
        out,
    );
    (result, session)
}

#[allow(clippy::too_many_arguments)]
fn follow_detached(
    session: &mut ssh2::Session,
    target: &Target,
    reconnect: &mut dyn FnMut() -> Result<ssh2::Session, SshError>,
    state: &str,
    script: &str,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
    out: &mut dyn FnMut(LogStream, Vec<String>),
) -> Result<ScriptRun, SshError> {
    let run = new_run_id();
    let started = std::time::Instant::now();
    let mut seen = RunnerOutput::default();
    let start = runner_command(target, &["start", state, &run])?;
    let rc = ssh::exec(
        session,
        target,
        &start,
        Some(script.as_bytes()),
        RUNNER_STEP,
        &mut |stream, lines| seen.take(stream, lines, out),
    )?;
    if rc != 0 {
        if let Some(why) = seen.sudo_refused.take() {
            return Err(SshError::Protocol {
                target: target.label(),
                message: format!(
                    "{} cannot run commands as root without a password ({why}); allow it passwordless sudo, or deploy as root (--ssh-user root)",
                    target.user
                ),
            });
        }
        return Err(SshError::Protocol {
            target: target.label(),
            message: format!(
                "the provisioning run did not start on the guest (status {rc}): {}",
                seen.reason
                    .clone()
                    .unwrap_or_else(|| "the runner gave no reason".into())
            ),
        });
    }
    let mut reconnects = 0;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        let follow = runner_command(target, &["follow", state, &run, &seen.seen.to_string()])?;
        let before = seen.seen;
        let heard = std::cell::Cell::new(std::time::Instant::now());
        let silent = || heard.get().elapsed() > FOLLOW_SILENCE;
        let stop_or_silent = || stop() || silent();
        let result = ssh::exec_until(
            session,
            target,
            &follow,
            None,
            left,
            &stop_or_silent,
            &mut |s, l| {
                heard.set(std::time::Instant::now());
                seen.take(s, l, out)
            },
        );
        let why = match result {
            Ok(ssh::STOPPED) if !stop() && silent() => {
                format!("no word from the guest for {} s", FOLLOW_SILENCE.as_secs())
            }
            Ok(ssh::STOPPED) if stop() => {
                stop_or_say(session, target, state, "the job was cancelled", out);
                return Ok(ScriptRun {
                    status: ssh::STOPPED,
                    commit: seen.commit,
                    reason: Some(
                        "provisioning was cancelled; the run on the guest was stopped".into(),
                    ),
                });
            }
            Err(SshError::TimedOut { .. }) => {
                let why = format!("it ran longer than {} s", timeout.as_secs());
                stop_or_say(session, target, state, &why, out);
                return Err(SshError::TimedOut {
                    target: target.label(),
                    secs: timeout.as_secs(),
                });
            }
            Ok(rc) => match seen.end.take() {
                Some((status, _lines)) => {
                    let status = match status.parse::<i32>() {
                        Ok(status) => status,
                        Err(_) => {
                            return Err(SshError::Protocol {
                                target: target.label(),
                                message: format!(
                                    "the provisioning run {run} ended on the guest without an exit status (the guest restarted, or something killed it); see {state}/{run}.log there"
                                ),
                            });
                        }
                    };
                    return Ok(ScriptRun {
                        status,
                        commit: seen.commit,
                        reason: seen.reason,
                    });
                }
                None if rc == 0 || rc == ssh::STOPPED => {
                    format!("following the run ended early (status {rc})")
                }
                None => {
                    return Err(SshError::Protocol {
                        target: target.label(),
                        message: format!(
                            "cannot follow the provisioning run {run} (status {rc}): {}",
                            seen.reason
                                .clone()
                                .unwrap_or_else(|| "the runner gave no reason".into())
                        ),
                    });
                }
            },
            Err(e) => e.to_string(),
        };
        // The connection dropped (or the follower ended early): the run goes on on the
        // guest; pick it up again over a fresh session.
        if seen.seen > before {
            reconnects = 0;
        }
        reconnects += 1;
        if reconnects > RECONNECTS || started.elapsed() >= timeout {
            return Err(SshError::Protocol {
                target: target.label(),
                message: format!(
                    "lost the provisioning run {run} ({why}) and could not follow it again after {RECONNECTS} attempts; it may still be running on the guest (its log: {state}/{run}.log); a retry stops it before it starts another"
                ),
            });
        }
        out(
            LogStream::Info,
            vec![format!(
                "lost the connection while following provisioning run {run} ({why}); it goes on on the guest; reconnecting (attempt {reconnects} of {RECONNECTS})"
            )],
        );
        std::thread::sleep(Duration::from_secs(1));
        match reconnect() {
            Ok(fresh) => *session = fresh,
            Err(e) => {
                out(LogStream::Info, vec![format!("reconnecting failed: {e}")]);
            }
        }
    }
}

/// Stops the app's provisioning run on the guest if one is going (the runner's `stop`: TERM
/// to its process group, up to 10 s, then KILL); `why` goes into the run's log. The runner's
/// notes go to `out`. Errs (in words) when the run could not be stopped. Blocks.
pub fn stop_detached(
    session: &ssh2::Session,
    target: &Target,
    state: &str,
    why: &str,
    out: &mut dyn FnMut(LogStream, Vec<String>),
) -> Result<(), String> {
    let mut seen = RunnerOutput::default();
    let rc = runner_command(target, &["stop", state, why])
        .and_then(|command| {
            ssh::exec(session, target, &command, None, RUNNER_STEP, &mut |s, l| {
                seen.take(s, l, out)
            })
        })
        .map_err(|e| format!("could not stop the provisioning run on the guest: {e}"))?;
    if rc != 0 {
        return Err(format!(
            "could not stop the provisioning run on the guest (status {rc}): {}",
            seen.reason.unwrap_or_else(|| "no reason given".into())
        ));
    }
    Ok(())
}

/// [`stop_detached`] where the stop is a last step: a failure is reported on `out`.
fn stop_or_say(
    session: &ssh2::Session,
    target: &Target,
    state: &str,
    why: &str,
    out: &mut dyn FnMut(LogStream, Vec<String>),
) {
    if let Err(e) = stop_detached(session, target, state, why, out) {
        out(LogStream::Stderr, vec![e]);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_output_puts_lines_back_on_their_streams_and_reads_the_end() {
        let mut seen = RunnerOutput::default();
        let mut got: Vec<(LogStream, Vec<String>)> = Vec::new();
        let mut out = |s: LogStream, l: Vec<String>| got.push((s, l));
        seen.take(
            LogStream::Stdout,
            vec![
                "R note an earlier provisioning run (run-1-2, process group 77) is still going on the guest: stopping it (a newer run (run-3-4) starts)".into(),
                "R started run-3-4 991".into(),
                "R alive".into(),
                "O ==> source: x".into(),
                "O proxdeck-commit: 0123456789abcdef".into(),
                "E warning: y".into(),
                "E proxdeck: first reason".into(),
                "E proxdeck: the last reason".into(),
                "O ==> done".into(),
            ],
            &mut out,
        );
        seen.take(
            LogStream::Stderr,
            vec!["sudo: a password is required".into()],
            &mut out,
        );
        seen.take(LogStream::Stdout, vec!["R end 1 6".into()], &mut out);
        assert_eq!(seen.seen, 6, "log lines counted, the runner's own not");
        assert_eq!(seen.commit.as_deref(), Some("0123456789abcdef"));
        assert_eq!(seen.reason.as_deref(), Some("the last reason"));
        assert_eq!(seen.end, Some(("1".to_string(), 6)));
        assert!(seen.sudo_refused.is_some());
        let streams: Vec<LogStream> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            streams,
            [
                LogStream::Info,
                LogStream::Stdout,
                LogStream::Stderr,
                LogStream::Stdout,
                LogStream::Stderr,
            ]
        );
        assert!(
            got[0].1[1]
                .contains("provisioning run run-3-4 started on the guest (process group 991)")
        );
        assert_eq!(
            got[1].1,
            ["==> source: x", "proxdeck-commit: 0123456789abcdef"]
        );
        assert_eq!(
            got[2].1,
            [
                "warning: y",
                "proxdeck: first reason",
                "proxdeck: the last reason"
            ]
        );
    }

    #[test]
    fn runner_commands_quote_every_word_and_use_sudo_for_other_users() {
        let root = Target {
            host: "10.0.0.5".into(),
            port: 22,
            user: "root".into(),
        };
        let command =
            runner_command(&root, &["stop", "/opt/a b/run/provision", "it's cancelled"]).unwrap();
        assert!(command.starts_with("bash -c '"), "{command}");
        assert!(
            command.ends_with(" proxdeck-runner stop '/opt/a b/run/provision' \"it's cancelled\""),
            "{command}"
        );
        let words = shlex::split(&command).unwrap();
        assert_eq!(words[2], provision::RUNNER);
        let user = Target {
            user: "deploy".into(),
            ..root
        };
        assert!(
            runner_command(&user, &["stop", "/x/y/run/provision", "z"])
                .unwrap()
                .starts_with("sudo -n bash -c ")
        );
        let id = new_run_id();
        assert!(
            id.starts_with("run-") && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{id}"
        );
    }
}
