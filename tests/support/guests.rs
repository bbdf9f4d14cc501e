//! Real guests: fresh Debian machines booted with systemd as PID 1, as Proxmox gives them (a
//! container made from `debian-13-standard` or `debian-12-standard`; a VM cloned from a cloud
//! image whose cloud-init reads the drive Proxmox writes).
//!
//! - [`rootfs`]: one root filesystem per release and flavour, made once with debootstrap from
//!   this machine's own Debian mirror and cached under `$HOME/.cache/proxdeck/rootfs/` (a lock
//!   file makes parallel tests and test processes wait for a single build). Every guest reads
//!   it through an overlay and never changes it.
//! - [`Guest`]: an overlay over that root filesystem (its own upper dir under
//!   `$HOME/.cache/proxdeck/guests/`), booted with `systemd-nspawn --boot --register=no
//!   --keep-unit`. Guests share this machine's network namespace, so each one's sshd listens
//!   on the guest's own loopback address (127.x.y.z) and the rig's SSH port; its apps must use
//!   ports of their own. Fresh host keys and machine id per guest, as `pct create` makes.
//!   Unlike Proxmox's unprivileged containers, the guests' uids are this machine's (a user
//!   namespace needs a delegated cgroup hierarchy, which a cgroup v1 machine without systemd
//!   does not give): what acts on a uid here (`pkill -u`) must keep to its own PID namespace.
//!   Powering off (a clean shutdown) and booting again keeps what was installed.
//! - [`Rig`]: boots and removes guests when the stand-in templates ask for them
//!   (`pve_ct.py`, `pve_vm.py`, after they created or before they delete the guest on
//!   fakepve), over a unix socket whose path reaches them as `PROXDECK_TEST_GUESTS`. The test
//!   owns every guest: dropping the rig powers them all off and removes them.
//!
//! Test-rig concerns, never in the recipes: the package registries are reached here through a
//! TLS proxy, so this machine's CA bundle is copied into each guest (and pip's and npm's CA
//! settings point at it); a VM guest's cloud-init is told not to configure the network, which
//! is this machine's own.

use super::net::{free_port_any, random_hex};
use super::parts::in_ci;
use super::process::{Finished, run_with_timeout};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bumped whenever what goes into a cached root filesystem changes: older caches are rebuilt.
const ROOTFS_VERSION: &str = "proxdeck-rootfs 1";
/// What a Proxmox `*-standard` container template has beyond `minbase`: systemd as init,
/// sshd, and the few tools of a standard Debian the recipes may meet (ps, ip).
const BASE_PACKAGES: &str =
    "systemd,systemd-sysv,openssh-server,dbus,ca-certificates,iproute2,procps";
/// A cloud image adds cloud-init (which reads the drive Proxmox writes) and sudo
/// (python3-cffi-backend: debootstrap does not resolve the virtual package cloud-init needs).
const CLOUD_PACKAGES: &str = "cloud-init,sudo,python3-cffi-backend";
/// How long a booted guest may take until its sshd answers.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a clean shutdown may take before the guest is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// A Debian release the rig can boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Release {
    /// Debian 12 bookworm (`debian-12-standard`).
    Debian12,
    /// Debian 13 trixie (`debian-13-standard`, what Proxmox VE 9 offers).
    Debian13,
}

impl Release {
    pub fn codename(self) -> &'static str {
        match self {
            Release::Debian12 => "bookworm",
            Release::Debian13 => "trixie",
        }
    }

    /// The release a Proxmox OS template volume id names (`local:vztmpl/debian-13-standard_...`).
    pub fn from_os_template(template: &str) -> Option<Release> {
        let file = template.rsplit('/').next().unwrap_or(template);
        if file.starts_with("debian-13-") {
            Some(Release::Debian13)
        } else if file.starts_with("debian-12-") {
            Some(Release::Debian12)
        } else {
            None
        }
    }
}

/// What kind of Proxmox guest a rig guest plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    /// An LXC container from a `*-standard` template: root's `authorized_keys` holds the key.
    Container,
    /// A VM from a cloud image: cloud-init makes `user` (sudo without a password) with the key
    /// from a NoCloud seed written the way Proxmox writes its cloud-init drive.
    CloudVm { user: String },
}

impl Flavor {
    fn is_cloud(&self) -> bool {
        matches!(self, Flavor::CloudVm { .. })
    }
}

/// `$HOME/.cache/proxdeck`.
pub fn cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/proxdeck"))
}

/// Whether the rig can run here: root, debootstrap, systemd-nspawn, overlayfs, nsenter.
pub fn check_rig() -> Result<(), String> {
    if !super::parts::is_root() {
        return Err("real guests need root (debootstrap, mounts, systemd-nspawn)".into());
    }
    for (tool, package) in [
        ("/usr/sbin/debootstrap", "debootstrap"),
        ("/usr/bin/systemd-nspawn", "systemd-container"),
        ("/usr/bin/nsenter", "util-linux"),
    ] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} is missing: apt-get install {package}"));
        }
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        return Err("the kernel has no overlay filesystem (modprobe overlay)".into());
    }
    Ok(())
}

/// This machine's Debian mirror (from its apt sources), for debootstrap and the guests.
fn debian_mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for word in text.split_whitespace() {
            let word = word.trim_end_matches('/');
            if (word.starts_with("http://") || word.starts_with("https://"))
                && word.ends_with("/debian")
            {
                return word.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// The cached root filesystem of `release` (with cloud-init for `cloud`), built when missing.
pub fn rootfs(release: Release, cloud: bool) -> Result<PathBuf> {
    let base = cache_dir()?.join("rootfs");
    std::fs::create_dir_all(&base)?;
    let name = format!(
        "{}{}",
        release.codename(),
        if cloud { "-cloud" } else { "" }
    );
    let path = base.join(&name);
    let packages = if cloud {
        format!("{BASE_PACKAGES},{CLOUD_PACKAGES}")
    } else {
        BASE_PACKAGES.to_string()
    };
    let stamp_text = format!("{ROOTFS_VERSION}\n{packages}\n");
    let stamp = |p: &Path| p.join(".proxdeck-rootfs");
    let fresh = |p: &Path| std::fs::read_to_string(stamp(p)).is_ok_and(|s| s == stamp_text);
    if fresh(&path) {
        return Ok(path);
    }
    // One build at a time, across threads and test processes; the others wait, then find it.
    let lock = std::fs::File::create(base.join(format!("{name}.lock")))?;
    lock.lock().context("lock the root filesystem cache")?;
    if fresh(&path) {
        return Ok(path);
    }
    // A build that was killed half way left its folder: only the lock holder builds.
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}.building-"))
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let mirror = debian_mirror();
    let building = base.join(format!("{name}.building-{}", std::process::id()));
    eprintln!(
        "real guests: building the {name} root filesystem with debootstrap from {mirror} \
         (once; cached at {})",
        path.display()
    );
    let done = run_with_timeout(
        Command::new("debootstrap")
            .args(["--variant=minbase", &format!("--include={packages}")])
            .arg(release.codename())
            .arg(&building)
            .arg(&mirror),
        Duration::from_secs(1200),
    )?;
    if !done.success() {
        let _ = std::fs::remove_dir_all(&building);
        bail!("debootstrap {name} failed:\n{}", done.describe());
    }
    finish_rootfs(&building, release, &mirror, cloud)?;
    std::fs::write(stamp(&building), &stamp_text)?;
    if path.exists() {
        std::fs::remove_dir_all(&path).with_context(|| format!("remove {}", path.display()))?;
    }
    std::fs::rename(&building, &path)?;
    Ok(path)
}

/// What a Proxmox template looks like that debootstrap does not do: apt sources with updates
/// and security, no package lists, no host keys or machine id (each guest gets its own).
fn finish_rootfs(root: &Path, release: Release, mirror: &str, cloud: bool) -> Result<()> {
    let code = release.codename();
    // ".../debian" -> ".../debian-security", as Debian's mirrors lay it out.
    let security = format!("{mirror}-security");
    std::fs::write(
        root.join("etc/apt/sources.list"),
        format!(
            "deb {mirror} {code} main\ndeb {mirror} {code}-updates main\n\
             deb {security} {code}-security main\n"
        ),
    )?;
    for dir in ["var/lib/apt/lists", "var/cache/apt"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(root.join("etc/ssh")) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    std::fs::write(root.join("etc/machine-id"), "")?;
    if cloud {
        // The rig's guests share this machine's network: cloud-init must not configure it.
        std::fs::write(
            root.join("etc/cloud/cloud.cfg.d/99_proxdeck_test_rig.cfg"),
            "# proxdeck's test rig: the guest shares the test machine's network.\n\
             datasource_list: [ NoCloud, None ]\nnetwork:\n  config: disabled\n",
        )?;
    }
    Ok(())
}

/// What a new guest is.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    pub release: Release,
    pub flavor: Flavor,
    pub hostname: String,
    pub addr: Ipv4Addr,
    pub ssh_port: u16,
    /// The public key the guest authorizes (proxdeck's).
    pub authorized_key: String,
}

/// One booted (or powered off) guest; dropping it powers it off and removes it.
pub struct Guest {
    spec: GuestSpec,
    machine: String,
    dir: PathBuf,
    nspawn: Option<Child>,
    leader: Option<u32>,
    mounted: bool,
}

impl Guest {
    /// Makes a fresh guest from the cached root filesystem and boots it (until sshd answers).
    pub fn create(spec: GuestSpec) -> Result<Guest> {
        let lower = rootfs(spec.release, spec.flavor.is_cloud())?;
        let machine = format!("pdg-{}", random_hex(10));
        let dir = cache_dir()?.join("guests").join(&machine);
        for sub in ["upper", "work", "root"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::write(dir.join("owner"), std::process::id().to_string())?;
        let mut guest = Guest {
            spec,
            machine,
            dir,
            nspawn: None,
            leader: None,
            mounted: false,
        };
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            guest.dir.join("upper").display(),
            guest.dir.join("work").display()
        );
        let done = run_with_timeout(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &options])
                .arg(guest.root()),
            Duration::from_secs(30),
        )?;
        if !done.success() {
            bail!("mount the guest's overlay: {}", done.describe());
        }
        guest.mounted = true;
        guest.prepare()?;
        guest.boot()?;
        Ok(guest)
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    pub fn spec(&self) -> &GuestSpec {
        &self.spec
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.spec.addr
    }

    /// The machine name (`pdg-...`): also the folder under the cache's `guests/`.
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// Where its files live on this machine (`root/` is the guest's `/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What Proxmox (and the template) would have put there before the first boot.
    fn prepare(&self) -> Result<()> {
        let root = self.root();
        let write = |rel: &str, text: &str| -> Result<()> {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
        };
        let s = &self.spec;
        write("etc/hostname", &format!("{}\n", s.hostname))?;
        write(
            "etc/hosts",
            &format!(
                "127.0.0.1\tlocalhost\n127.0.1.1\t{h}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                h = s.hostname
            ),
        )?;
        write("etc/machine-id", &format!("{}\n", random_hex(32)))?;
        let keygen = run_with_timeout(
            Command::new("ssh-keygen").arg("-A").arg("-f").arg(&root),
            Duration::from_secs(60),
        )?;
        if !keygen.success() {
            bail!("ssh-keygen -A for the guest: {}", keygen.describe());
        }
        // The guest shares this machine's network: its sshd listens on its own address only.
        write(
            "etc/ssh/sshd_config.d/00-proxdeck-test-rig.conf",
            &format!(
                "# proxdeck's test rig: the guest's own loopback address.\n\
                 ListenAddress {}\nPort {}\n",
                s.addr, s.ssh_port
            ),
        )?;
        // This machine's CA trust (the registries are reached through a TLS proxy here).
        let bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt")
            .context("read this machine's CA bundle")?;
        for rel in [
            "usr/local/share/ca-certificates/proxdeck-test-rig.crt",
            "etc/ssl/certs/ca-certificates.crt",
        ] {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap_or(&root))?;
            std::fs::write(&path, &bundle)?;
        }
        write(
            "etc/pip.conf",
            "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n",
        )?;
        write("etc/npmrc", "cafile=/etc/ssl/certs/ca-certificates.crt\n")?;
        match &s.flavor {
            Flavor::Container => {
                write(
                    "root/.ssh/authorized_keys",
                    &format!("{}\n", s.authorized_key),
                )?;
                set_mode(&root.join("root/.ssh"), 0o700)?;
                set_mode(&root.join("root/.ssh/authorized_keys"), 0o600)?;
            }
            Flavor::CloudVm { user } => {
                // A NoCloud seed with what Proxmox writes on its cloud-init drive.
                write(
                    "var/lib/cloud/seed/nocloud/meta-data",
                    &format!(
                        "instance-id: {}\nlocal-hostname: {}\n",
                        random_hex(40),
                        s.hostname
                    ),
                )?;
                write(
                    "var/lib/cloud/seed/nocloud/user-data",
                    &format!(
                        "#cloud-config\nhostname: {h}\nmanage_etc_hosts: true\nfqdn: {h}\n\
                         user: {user}\nssh_authorized_keys:\n  - {key}\nchpasswd:\n  expire: False\n\
                         users:\n  - default\npackage_upgrade: true\n",
                        h = s.hostname,
                        key = s.authorized_key.trim()
                    ),
                )?;
            }
        }
        Ok(())
    }

    /// Boots the guest and waits until its sshd accepts connections.
    pub fn boot(&mut self) -> Result<()> {
        if self.running() {
            return Ok(());
        }
        let console = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("console.log"))?;
        let mut cmd = Command::new("systemd-nspawn");
        cmd.arg("--directory")
            .arg(self.root())
            .args(["--boot", "--register=no", "--keep-unit"])
            .arg(format!("--machine={}", self.machine))
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .process_group(0);
        let child = cmd.spawn().context("start systemd-nspawn")?;
        self.nspawn = Some(child);
        let sock = SocketAddr::from((self.spec.addr, self.spec.ssh_port));
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(child) = &mut self.nspawn
                && let Some(status) = child.try_wait()?
            {
                self.nspawn = None;
                bail!(
                    "the guest {} stopped while booting ({status}):\n{}",
                    self.machine,
                    self.console_tail()
                );
            }
            if TcpStream::connect_timeout(&sock, Duration::from_millis(300)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "the guest {}'s sshd did not answer on {sock} within {BOOT_TIMEOUT:?}:\n{}",
                    self.machine,
                    self.console_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.leader = self.nspawn.as_ref().and_then(|c| leader_of(c.id()));
        if let Some(leader) = self.leader {
            std::fs::write(self.dir.join("leader"), leader.to_string())?;
        }
        Ok(())
    }

    /// True while the guest's systemd-nspawn runs.
    pub fn running(&mut self) -> bool {
        match &mut self.nspawn {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A clean shutdown (what `systemctl poweroff` inside does; SIGTERM to systemd-nspawn),
    /// the guest killed if it takes longer than a minute. Its files stay.
    pub fn poweroff(&mut self) -> Result<()> {
        let Some(mut child) = self.nspawn.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                self.leader = None;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Killing the container's PID 1 ends its whole PID namespace; nspawn follows.
        if let Some(leader) = self.leader.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(leader as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "the guest {} did not shut down within {SHUTDOWN_TIMEOUT:?} and was killed:\n{}",
            self.machine,
            self.console_tail()
        )
    }

    /// Runs `script` with `sh -c` as root inside the running guest (entering its namespaces),
    /// bounded by `timeout`.
    pub fn exec(&self, script: &str, timeout: Duration) -> Result<Finished> {
        let leader = self
            .leader
            .with_context(|| format!("the guest {} is not running", self.machine))?;
        run_with_timeout(
            Command::new("nsenter")
                .arg(format!("--target={leader}"))
                .args([
                    "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd",
                ])
                .args([
                    "/usr/bin/env",
                    "-i",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "LANG=C.UTF-8",
                    "/bin/sh",
                    "-c",
                    script,
                ]),
            timeout,
        )
    }

    /// [`Guest::exec`] that must succeed; its stdout.
    pub fn exec_ok(&self, script: &str) -> Result<String> {
        let done = self.exec(script, Duration::from_secs(120))?;
        if !done.success() {
            bail!(
                "in the guest {}: {script}\n{}",
                self.machine,
                done.describe()
            );
        }
        Ok(done.stdout)
    }

    /// The last lines the guest's console printed.
    pub fn console_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Powers off and removes everything of the guest (its overlay and folder).
    fn remove(&mut self) {
        if let Err(e) = self.poweroff() {
            eprintln!("real guests: {e:#}");
        }
        if self.mounted {
            unmount(&self.root());
            self.mounted = false;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.remove();
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// The container's PID 1: the child of the systemd-nspawn process.
fn leader_of(nspawn: u32) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).ok()?;
        if let Some(pid) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return Some(pid);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unmount(path: &Path) {
    for _ in 0..20 {
        let ok = Command::new("umount")
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok || !is_mounted(path) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = Command::new("umount").arg("--lazy").arg(path).status();
}

fn is_mounted(path: &Path) -> bool {
    let want = path.display().to_string();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
}

/// Removes guests left behind by test processes that died (killed before their drop ran):
/// their container killed, their overlay unmounted, their folder removed.
fn sweep_stale_guests() {
    let Ok(base) = cache_dir().map(|c| c.join("guests")) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&base) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner: Option<i32> = std::fs::read_to_string(dir.join("owner"))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let alive = owner.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        });
        if alive {
            continue;
        }
        let root = dir.join("root");
        if let Some(leader) = std::fs::read_to_string(dir.join("leader"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            // Only if that process still is this guest's init (pids are reused).
            let its_root = std::fs::read_link(format!("/proc/{leader}/root")).ok();
            if its_root.as_deref() == Some(root.as_path()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(leader),
                    nix::sys::signal::Signal::SIGKILL,
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        if is_mounted(&root) {
            unmount(&root);
        }
        if !is_mounted(&root) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// The rig's guests by vmid; each behind its own lock, so that a slow power cycle of one does
/// not hold up the others.
type Guests = Mutex<HashMap<u64, Arc<Mutex<Guest>>>>;

/// Boots and removes real guests for the stand-in templates, on request over a unix socket.
///
/// Requests (one JSON line, answered by one JSON line `{"ok": true, ...}` or
/// `{"ok": false, "error": "..."}`):
/// - `{"op": "boot", "vmid": N, "kind": "lxc"|"vm", "os_template": "...", "address":
///   "127.x.y.z/8", "hostname": "...", "ssh_public_key": "...", "user": "..." (vm)}`: a fresh
///   guest at that address (a VM is a Debian 13 cloud image); a guest the vmid had is removed
///   first.
/// - `{"op": "delete", "vmid": N}`: powers the guest off and removes it.
pub struct Rig {
    dir: tempfile::TempDir,
    ssh_port: u16,
    guests: Arc<Guests>,
    booted: Arc<Mutex<Vec<(u64, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Rig {
    /// Starts the rig's socket; every guest it boots listens for SSH on one port (free on
    /// every address, so no sshd of this machine is in the way).
    pub fn start() -> Result<Rig> {
        check_rig().map_err(anyhow::Error::msg)?;
        sweep_stale_guests();
        let dir = tempfile::Builder::new().prefix("proxdeck-rig-").tempdir()?;
        let socket = dir.path().join("guests.sock");
        let listener = UnixListener::bind(&socket)?;
        listener.set_nonblocking(true)?;
        let ssh_port = free_port_any()?;
        let guests: Arc<Guests> = Arc::new(Mutex::new(HashMap::new()));
        let booted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, b, s) = (guests.clone(), booted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (g, b) = (g.clone(), b.clone());
                        std::thread::spawn(move || serve(stream, &g, &b, ssh_port));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        Ok(Rig {
            dir,
            ssh_port,
            guests,
            booted,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket the stand-in templates reach the rig on (`PROXDECK_TEST_GUESTS`).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("guests.sock")
    }

    /// The SSH port of every guest (the config's `guest.ssh_port`).
    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    /// The vmids and machine names of every guest booted so far, in order.
    pub fn booted(&self) -> Vec<(u64, String)> {
        self.booted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the guest of `vmid` exists (booted, not deleted).
    pub fn has(&self, vmid: u64) -> bool {
        self.lock().contains_key(&vmid)
    }

    /// Runs `f` on the guest of `vmid`.
    pub fn with_guest<T>(&self, vmid: u64, f: impl FnOnce(&mut Guest) -> Result<T>) -> Result<T> {
        let guest = self
            .lock()
            .get(&vmid)
            .cloned()
            .with_context(|| format!("the rig has no guest for vmid {vmid}"))?;
        let mut guest = guest.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guest)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Mutex<Guest>>>> {
        self.guests.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Each guest powers off and is removed as it drops; in parallel, as they are many.
        let guests: Vec<Arc<Mutex<Guest>>> = self.lock().drain().map(|(_, g)| g).collect();
        std::thread::scope(|scope| {
            for g in guests {
                scope.spawn(move || drop(g));
            }
        });
    }
}

/// One connection: one request, one answer.
fn serve(stream: UnixStream, guests: &Guests, booted: &Mutex<Vec<(u64, String)>>, ssh_port: u16) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut line = String::new();
    let mut reader = BufReader::new(&stream);
    let answer = match reader.read_line(&mut line) {
        Ok(_) => match serde_json::from_str::<Value>(&line) {
            Ok(request) => match handle(&request, guests, booted, ssh_port) {
                Ok(v) => v,
                Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
            },
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        },
        Err(e) => json!({"ok": false, "error": format!("read: {e}")}),
    };
    let mut w = &stream;
    let _ = writeln!(w, "{answer}");
}

fn handle(
    request: &Value,
    guests: &Guests,
    booted: &Mutex<Vec<(u64, String)>>,
    ssh_port: u16,
) -> Result<Value> {
    let text = |k: &str| request[k].as_str().unwrap_or_default().to_string();
    let vmid = request["vmid"].as_u64().context("vmid")?;
    let lock = || guests.lock().unwrap_or_else(|p| p.into_inner());
    match text("op").as_str() {
        "boot" => {
            let address = text("address");
            let ip = address.split('/').next().unwrap_or_default();
            let addr: Ipv4Addr = ip.parse().with_context(|| {
                format!("the real-guest rig needs a static address (network.pool), not {address:?}")
            })?;
            if !addr.is_loopback() {
                bail!("the real-guest rig's guests live on loopback addresses, not {addr}");
            }
            let (release, flavor) = if text("kind") == "vm" {
                let user = text("user");
                if user.is_empty() {
                    bail!("a VM guest needs its cloud-init user");
                }
                (Release::Debian13, Flavor::CloudVm { user })
            } else {
                let template = text("os_template");
                let release = Release::from_os_template(&template).with_context(|| {
                    format!("the real-guest rig boots Debian 12 and 13 only, not {template:?}")
                })?;
                (release, Flavor::Container)
            };
            // A guest this vmid had (a retried create) goes first.
            let old = lock().remove(&vmid);
            drop(old);
            let guest = Guest::create(GuestSpec {
                release,
                flavor,
                hostname: text("hostname"),
                addr,
                ssh_port,
                authorized_key: text("ssh_public_key"),
            })?;
            let machine = guest.machine().to_string();
            booted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((vmid, machine.clone()));
            lock().insert(vmid, Arc::new(Mutex::new(guest)));
            Ok(json!({"ok": true, "machine": machine, "release": release.codename()}))
        }
        "delete" => {
            let old = lock().remove(&vmid);
            let found = old.is_some();
            drop(old);
            Ok(json!({"ok": true, "found": found}))
        }
        other => bail!("unknown op {other:?}"),
    }
}

/// The skip rule of `parts::skip_without`, for the rig.
pub fn skip_without_rig(test: &str) -> bool {
    let Err(why) = check_rig() else {
        return false;
    };
    if in_ci() {
        panic!("{test}: a real part is missing under CI=true: {why}. Run scripts/test.");
    }
    eprintln!("SKIPPED {test}: {why} (scripts/test installs what is missing)");
    true
}
