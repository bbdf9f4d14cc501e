//! An SSH test host: OpenSSH's sshd in the foreground on its own loopback address and a free
//! port, with a generated host key and `AuthorizedKeysFile` pointing at a path the test gives
//! (sshd reads it at login time, so the file may appear after sshd starts: proxdeck writes its
//! key at `<data_dir>/keys/id_ed25519.pub` on first use). Commands run on this machine.

use super::net::{free_port, wait_for_port};
use super::process::{ChildGuard, run_ok};
use anyhow::{Context, Result, bail};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct SshHost {
    /// `None` only for a moment while sshd restarts.
    guard: Option<ChildGuard>,
    dir: tempfile::TempDir,
    addr: Ipv4Addr,
    port: u16,
    host_public_key: String,
    host_key: PathBuf,
    authorized_keys: PathBuf,
    /// More sshd_config lines (e.g. `SetEnv`).
    extra: String,
}

impl SshHost {
    /// Starts sshd on `addr` with `authorized_keys` as its only key file.
    pub fn start(addr: Ipv4Addr, authorized_keys: &Path) -> Result<Self> {
        Self::start_with(addr, authorized_keys, "")
    }

    /// [`SshHost::start`] with more sshd_config lines (e.g. `SetEnv NAME=VALUE` for the
    /// sessions).
    pub fn start_with(addr: Ipv4Addr, authorized_keys: &Path, extra: &str) -> Result<Self> {
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::Builder::new().prefix("sshd-").tempdir()?;
        let host_key = dir.path().join("ssh_host_ed25519_key");
        run_ok(
            Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "proxdeck-test-host",
                    "-f",
                ])
                .arg(&host_key),
        )?;
        let host_public_key = std::fs::read_to_string(host_key.with_extension("pub"))?
            .trim()
            .to_string();
        if !authorized_keys.is_absolute() {
            bail!(
                "AuthorizedKeysFile must be absolute: {}",
                authorized_keys.display()
            );
        }
        // A port taken between probing and binding makes sshd exit: try a few.
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port(addr)?;
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                sshd_config(addr, port, &host_key, authorized_keys, dir.path()) + extra,
            )?;
            let log = dir.path().join("sshd.log");
            let mut cmd = Command::new("/usr/sbin/sshd");
            cmd.arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let mut guard = ChildGuard::spawn("sshd", &mut cmd, Some(&log))?;
            let sock = SocketAddr::from((addr, port));
            match wait_for_port(sock, Duration::from_secs(15), || guard.check_alive()) {
                Ok(()) => {
                    return Ok(Self {
                        guard: Some(guard),
                        dir,
                        addr,
                        port,
                        host_public_key,
                        host_key,
                        authorized_keys: authorized_keys.to_path_buf(),
                        extra: extra.to_string(),
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap()).context("sshd test host did not start")
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The login user: sshd test hosts run as root and let root in with a key.
    pub fn user(&self) -> &'static str {
        "root"
    }

    /// `ssh-ed25519 AAAA... proxdeck-test-host`.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// The folder holding the host's config, key and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// sshd's own log (`-e`), for failure messages.
    pub fn log_tail(&self) -> String {
        self.guard
            .as_ref()
            .map(|g| g.log_tail())
            .unwrap_or_default()
    }

    pub fn check_alive(&mut self) -> Result<()> {
        match &mut self.guard {
            Some(g) => g.check_alive(),
            None => bail!("sshd is not running"),
        }
    }

    /// Restarts sshd on the same address and port with a freshly generated host key (a guest
    /// rebuilt, or a machine in the middle); returns the new public key.
    pub fn restart_with_new_host_key(&mut self) -> Result<String> {
        let key = self.dir.path().join(format!(
            "ssh_host_ed25519_key_{}",
            super::net::random_hex(6)
        ));
        run_ok(
            Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "proxdeck-test-host-2",
                    "-f",
                ])
                .arg(&key),
        )?;
        self.restart_with_host_key(&key)
    }

    /// Restarts sshd with its original host key.
    pub fn restart_with_original_host_key(&mut self) -> Result<String> {
        let key = self.host_key.clone();
        self.restart_with_host_key(&key)
    }

    fn restart_with_host_key(&mut self, key: &Path) -> Result<String> {
        let public = std::fs::read_to_string(key.with_extension("pub"))
            .or_else(|_| std::fs::read_to_string(format!("{}.pub", key.display())))?
            .trim()
            .to_string();
        // Stops the running sshd (its whole process group) before the port is bound again.
        self.guard = None;
        let config = self.dir.path().join("sshd_config");
        std::fs::write(
            &config,
            sshd_config(
                self.addr,
                self.port,
                key,
                &self.authorized_keys,
                self.dir.path(),
            ) + &self.extra,
        )?;
        let log = self
            .dir
            .path()
            .join(format!("sshd-{}.log", super::net::random_hex(4)));
        let sock = SocketAddr::from((self.addr, self.port));
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut cmd = Command::new("/usr/sbin/sshd");
            cmd.arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let mut guard = ChildGuard::spawn("sshd", &mut cmd, Some(&log))?;
            match wait_for_port(sock, Duration::from_secs(5), || guard.check_alive()) {
                Ok(()) => {
                    self.guard = Some(guard);
                    self.host_public_key = public.clone();
                    return Ok(public);
                }
                // The old listener may still hold the port for a moment.
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(e).context("sshd did not restart");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// An `ssh` client command that logs in with `identity`, pinning this host's key.
    pub fn ssh_command(&self, identity: &Path) -> Result<Command> {
        let known_hosts = self.dir.path().join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[{}]:{} {}\n", self.addr, self.port, self.host_public_key),
        )?;
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg("/dev/null")
            .arg("-i")
            .arg(identity)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg(format!("{}@{}", self.user(), self.addr));
        Ok(cmd)
    }
}

fn sshd_config(
    addr: Ipv4Addr,
    port: u16,
    host_key: &Path,
    authorized_keys: &Path,
    dir: &Path,
) -> String {
    let pid: PathBuf = dir.join("sshd.pid");
    format!(
        "ListenAddress {addr}\n\
         Port {port}\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {authorized_keys}\n\
         AuthenticationMethods publickey\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UsePAM no\n\
         StrictModes no\n\
         PrintMotd no\n\
         X11Forwarding no\n\
         MaxStartups 50\n\
         LogLevel INFO\n\
         Subsystem sftp internal-sftp\n",
        host_key = host_key.display(),
        pid = pid.display(),
        authorized_keys = authorized_keys.display(),
    )
}
