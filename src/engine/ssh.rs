//! SSH to guests with ssh2 (libssh2), on blocking threads: proxdeck's own ed25519 key pair
//! (generated on first use, private half 0600), connect with retries until sshd answers or a
//! deadline passes, host keys pinned on first contact (a changed key stops everything, naming
//! both fingerprints), and commands run with stdout and stderr streamed apart, line by line.
//!
//! Every function here blocks; the pipeline calls them through `spawn_blocking`. Which guest,
//! user and key a deployment uses, and where host keys are pinned, is `engine::guest`'s.

use crate::engine::process::split_complete_lines;
use crate::protocol::LogStream;
use ssh2::Session;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error("cannot create the SSH key {path}: {message}")]
    Key { path: String, message: String },
    #[error(
        "{target}: no SSH answer within {secs} s (last error: {last}); is the guest up and sshd running?"
    )]
    Unreachable {
        target: String,
        secs: u64,
        last: String,
    },
    #[error(
        "{target}: the host key changed! pinned {pinned}, now {presented}. If the guest was rebuilt on purpose, forget the old key; otherwise someone may be intercepting the connection"
    )]
    HostKeyChanged {
        target: String,
        pinned: String,
        presented: String,
    },
    #[error(
        "{target}: authentication as {user} failed with key {key}: {message}. Authorize the public key (`proxdeck ssh-key`) on the guest"
    )]
    Auth {
        target: String,
        user: String,
        key: String,
        message: String,
    },
    #[error("{target}: {message}")]
    Protocol { target: String, message: String },
    #[error("{target}: the command ran longer than {secs} s")]
    TimedOut { target: String, secs: u64 },
}

/// proxdeck's key pair in the data dir.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: PathBuf,
    pub public: PathBuf,
}

impl KeyPair {
    pub fn public_openssh(&self) -> Result<String, SshError> {
        std::fs::read_to_string(&self.public)
            .map(|s| s.trim().to_string())
            .map_err(|e| SshError::Key {
                path: self.public.display().to_string(),
                message: e.to_string(),
            })
    }
}

/// Returns the key pair under `dir`, generating an ed25519 pair on first use.
pub fn ensure_key(dir: &Path) -> Result<KeyPair, SshError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let private = dir.join("id_ed25519");
    let public = dir.join("id_ed25519.pub");
    let kerr = |p: &Path, e: &dyn std::fmt::Display| SshError::Key {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    if private.exists() && public.exists() {
        return Ok(KeyPair { private, public });
    }
    std::fs::create_dir_all(dir).map_err(|e| kerr(dir, &e))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    // Two proxdeck processes deploying at once must not make two different pairs: the first
    // generates under an exclusive lock, the second finds its pair.
    let lock_path = dir.join(".keygen.lock");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| kerr(&lock_path, &e))?;
    lock.lock().map_err(|e| kerr(&lock_path, &e))?;
    if private.exists() && public.exists() {
        return Ok(KeyPair { private, public });
    }
    let key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .map_err(|e| kerr(&private, &e))?;
    let pem = key
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(|e| kerr(&private, &e))?;
    let mut pubkey = key.public_key().clone();
    pubkey.set_comment("proxdeck");
    let pub_line = pubkey.to_openssh().map_err(|e| kerr(&public, &e))?;
    // Write to temporary names and rename, so a crash never leaves half a key; the private
    // half last, since both existing is what says the pair is complete.
    let tmp_private = dir.join("id_ed25519.tmp");
    let tmp_public = dir.join("id_ed25519.pub.tmp");
    let _ = std::fs::remove_file(&tmp_private);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_private)
        .map_err(|e| kerr(&tmp_private, &e))?;
    f.write_all(pem.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| kerr(&tmp_private, &e))?;
    std::fs::write(&tmp_public, format!("{pub_line}\n")).map_err(|e| kerr(&public, &e))?;
    std::fs::rename(&tmp_public, &public).map_err(|e| kerr(&public, &e))?;
    std::fs::rename(&tmp_private, &private).map_err(|e| kerr(&private, &e))?;
    Ok(KeyPair { private, public })
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl Target {
    /// The key under which the host key is pinned.
    pub fn label(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The host key a server presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub key_type: String,
    pub fingerprint: String,
}

/// Decides whether a presented host key is acceptable (pinning lives with the caller's store).
pub trait HostKeyPolicy {
    fn check(&mut self, target: &Target, key: &PresentedKey) -> Result<(), SshError>;
}

/// Connects and authenticates, retrying connection failures until `deadline` (a guest that is
/// still booting refuses or times out for a while). Host key and auth failures are final.
pub fn connect(
    target: &Target,
    keys: &KeyPair,
    policy: &mut dyn HostKeyPolicy,
    within: Duration,
    mut on_retry: impl FnMut(&str),
) -> Result<Session, SshError> {
    let start = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let left = within
            .saturating_sub(start.elapsed())
            .max(Duration::from_secs(1));
        match try_connect(target, left) {
            Ok(sess) => {
                let presented = presented_key(&sess, target)?;
                policy.check(target, &presented)?;
                // Without the .pub file next to a user's own key, libssh2 derives it.
                let public = keys.public.exists().then_some(keys.public.as_path());
                sess.userauth_pubkey_file(&target.user, public, &keys.private, None)
                    .map_err(|e| SshError::Auth {
                        target: target.label(),
                        user: target.user.clone(),
                        key: keys.public.display().to_string(),
                        message: e.message().to_string(),
                    })?;
                if !sess.authenticated() {
                    return Err(SshError::Auth {
                        target: target.label(),
                        user: target.user.clone(),
                        key: keys.public.display().to_string(),
                        message: "the server did not accept the key".into(),
                    });
                }
                return Ok(sess);
            }
            Err(last) => {
                if start.elapsed() >= within {
                    return Err(SshError::Unreachable {
                        target: target.label(),
                        secs: within.as_secs(),
                        last,
                    });
                }
                on_retry(&format!(
                    "ssh {} not ready (attempt {attempt}): {last}",
                    target.label()
                ));
                // Back off gently: 0.5 s, 1 s, 2 s, then every 3 s.
                let wait = Duration::from_millis(500 * 2u64.pow(attempt.min(3) - 1))
                    .min(Duration::from_secs(3));
                std::thread::sleep(wait.min(within.saturating_sub(start.elapsed())));
            }
        }
    }
}

/// One attempt; waits at most `left` (capped at 30 s) for each step.
fn try_connect(target: &Target, left: Duration) -> Result<Session, String> {
    let step = left.min(Duration::from_secs(30));
    let addr: SocketAddr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", target.host))?;
    let tcp = TcpStream::connect_timeout(&addr, step.min(Duration::from_secs(10)))
        .map_err(|e| connect_error(&e, target.port))?;
    tcp.set_read_timeout(Some(step))
        .map_err(|e| e.to_string())?;
    let mut sess = Session::new().map_err(|e| e.to_string())?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout(step.as_millis().min(u128::from(u32::MAX)) as u32);
    sess.handshake().map_err(|e| {
        if e.code() == ssh2::ErrorCode::Session(-9) {
            "timed out waiting for the SSH greeting (something listens there, but not sshd?)"
                .to_string()
        } else {
            format!("SSH handshake failed: {e}")
        }
    })?;
    sess.set_keepalive(true, 15);
    Ok(sess)
}

/// The socket error in words a user can act on.
fn connect_error(e: &std::io::Error, port: u16) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => format!(
            "connection refused: nothing listens on port {port} (sshd not running yet?) or a firewall rejects it"
        ),
        TimedOut | WouldBlock => {
            "connection timed out: no answer (wrong address, guest down, or a firewall drops the packets)"
                .to_string()
        }
        HostUnreachable | NetworkUnreachable => format!("no route to the host: {e}"),
        _ => e.to_string(),
    }
}

fn presented_key(sess: &Session, target: &Target) -> Result<PresentedKey, SshError> {
    let (bytes, _) = sess.host_key().ok_or_else(|| SshError::Protocol {
        target: target.label(),
        message: "the server sent no host key".into(),
    })?;
    let key = ssh_key::PublicKey::from_bytes(bytes).map_err(|e| SshError::Protocol {
        target: target.label(),
        message: format!("unreadable host key: {e}"),
    })?;
    Ok(PresentedKey {
        key_type: key.algorithm().as_str().to_string(),
        fingerprint: key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
    })
}

/// The exit status [`exec_until`] returns when `stop` asked it to end (like a shell's Ctrl-C).
pub const STOPPED: i32 = 130;

/// Runs `command` on the guest; stdout and stderr batches go to `out` as they arrive. Returns
/// the exit status. `stdin` (if any) is written first and closed.
pub fn exec(
    sess: &Session,
    target: &Target,
    command: &str,
    stdin: Option<&[u8]>,
    timeout: Duration,
    out: &mut dyn FnMut(LogStream, Vec<String>),
) -> Result<i32, SshError> {
    exec_until(sess, target, command, stdin, timeout, &|| false, out)
}

/// [`exec`], ending early (the channel closed, [`STOPPED`] returned) once `stop()` is true:
/// for commands that run until the user stops them (`tail -F`).
pub fn exec_until(
    sess: &Session,
    target: &Target,
    command: &str,
    stdin: Option<&[u8]>,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
    out: &mut dyn FnMut(LogStream, Vec<String>),
) -> Result<i32, SshError> {
    let perr = |e: &dyn std::fmt::Display| SshError::Protocol {
        target: target.label(),
        message: e.to_string(),
    };
    sess.set_blocking(true);
    let mut ch = sess.channel_session().map_err(|e| perr(&e))?;
    ch.exec(command).map_err(|e| perr(&e))?;
    if let Some(data) = stdin {
        ch.write_all(data).map_err(|e| perr(&e))?;
    }
    ch.send_eof().map_err(|e| perr(&e))?;

    // Read both streams without blocking on either, so neither can fill up and stall the other.
    sess.set_blocking(false);
    let start = Instant::now();
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending_out = Vec::new();
    let mut pending_err = Vec::new();
    let result = 'read: loop {
        let mut progressed = false;
        for (stream, pending) in [
            (LogStream::Stdout, &mut pending_out),
            (LogStream::Stderr, &mut pending_err),
        ] {
            let read = match stream {
                LogStream::Stderr => ch.stderr().read(&mut buf),
                _ => ch.read(&mut buf),
            };
            match read {
                Ok(0) => {}
                Ok(n) => {
                    progressed = true;
                    pending.extend_from_slice(&buf[..n]);
                    let lines = split_complete_lines(pending);
                    if !lines.is_empty() {
                        out(stream, lines);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => break 'read Err(perr(&e)),
            }
        }
        if !progressed {
            if ch.eof() {
                break Ok(());
            }
            if stop() {
                sess.set_blocking(true);
                let _ = ch.close();
                return Ok(STOPPED);
            }
            if start.elapsed() > timeout {
                break Err(SshError::TimedOut {
                    target: target.label(),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(15));
        }
    };
    sess.set_blocking(true);
    result?;
    for (stream, pending) in [
        (LogStream::Stdout, pending_out),
        (LogStream::Stderr, pending_err),
    ] {
        if !pending.is_empty() {
            out(stream, vec![String::from_utf8_lossy(&pending).to_string()]);
        }
    }
    ch.wait_close().map_err(|e| perr(&e))?;
    ch.exit_status().map_err(|e| perr(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parallel_first_uses_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let publics: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| ensure_key(&keys).unwrap().public_openssh().unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(publics.windows(2).all(|w| w[0] == w[1]), "{publics:?}");
    }

    #[test]
    fn refused_and_silent_servers_are_named() {
        let keys = ensure_key(&tempfile::tempdir().unwrap().path().join("k")).unwrap();
        struct Any;
        impl HostKeyPolicy for Any {
            fn check(&mut self, _: &Target, _: &PresentedKey) -> Result<(), SshError> {
                Ok(())
            }
        }
        // Nothing listens: refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = |port| Target {
            host: "127.0.0.1".into(),
            port,
            user: "root".into(),
        };
        let mut retries = 0;
        let Err(err) = connect(
            &target(port),
            &keys,
            &mut Any,
            Duration::from_secs(1),
            |_| retries += 1,
        ) else {
            panic!("connected to a closed port")
        };
        let text = err.to_string();
        assert!(text.contains("connection refused"), "{text}");
        assert!(text.contains("no SSH answer within 1 s"), "{text}");
        assert!(retries >= 1);
        // Something listens but never speaks SSH: timed out waiting for the greeting.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let Err(err) = connect(
            &target(port),
            &keys,
            &mut Any,
            Duration::from_secs(2),
            |_| {},
        ) else {
            panic!("an SSH session with a silent server")
        };
        let text = err.to_string();
        assert!(
            text.contains("timed out waiting for the SSH greeting"),
            "{text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        drop(silent);
    }

    #[test]
    fn key_is_generated_once_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ensure_key(&dir.path().join("keys")).unwrap();
        let mode = std::fs::metadata(&keys.private)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let public = keys.public_openssh().unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        assert!(public.ends_with(" proxdeck"));
        let private = std::fs::read_to_string(&keys.private).unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        // A second call keeps the same pair.
        let again = ensure_key(&dir.path().join("keys")).unwrap();
        assert_eq!(again.public_openssh().unwrap(), public);
    }
}
