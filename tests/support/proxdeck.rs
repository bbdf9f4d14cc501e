//! Driving the built `proxdeck` binary from tests, and the checks around it: the app's
//! cleanup guard, the secret scans of files and of every process's argv.

use super::parts::{support_dir, test_python};
use super::process::{Finished, run_with_timeout};
use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The proxdeck binary with one config file and one data dir, in a clean environment: no
/// `PROXMOX_VE_*` or `PROXDECK_*` from the caller, XDG dirs inside the test's folder,
/// `PROXDECK_TEST_SUPPORT` and `PROXDECK_TEST_PYTHON` for the stand-in template, and
/// `PROXDECK_TEST_GUESTS` (the real-guest rig's socket) when the test uses real guests.
pub struct Proxdeck {
    pub config: PathBuf,
    pub data_dir: PathBuf,
    xdg: PathBuf,
    guests: Option<PathBuf>,
}

impl Proxdeck {
    /// `root` is the test's folder: the XDG dirs go under `root/xdg`.
    pub fn new(config: PathBuf, data_dir: PathBuf, root: &Path) -> Self {
        Self {
            config,
            data_dir,
            xdg: root.join("xdg"),
            guests: None,
        }
    }

    /// The stand-in templates boot real guests through the rig listening on `socket`.
    pub fn with_guests(mut self, socket: PathBuf) -> Self {
        self.guests = Some(socket);
        self
    }

    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_proxdeck"));
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("PROXMOX_VE_") || k.starts_with("PROXDECK_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("XDG_CONFIG_HOME", self.xdg.join("config"))
            .env("XDG_DATA_HOME", self.xdg.join("data"))
            .env("XDG_CACHE_HOME", self.xdg.join("cache"))
            .env("XDG_STATE_HOME", self.xdg.join("state"))
            .env("PROXDECK_TEST_SUPPORT", support_dir())
            .env("NO_COLOR", "1");
        if let Ok(python) = test_python() {
            cmd.env("PROXDECK_TEST_PYTHON", python);
        }
        if let Some(socket) = &self.guests {
            cmd.env("PROXDECK_TEST_GUESTS", socket);
        }
        cmd
    }

    /// Runs `proxdeck --config C --data-dir D ARGS...` with stdin closed, bounded by `timeout`.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Result<Finished> {
        run_with_timeout(&mut self.command(args), timeout)
    }
}

/// Writes a file readable by its owner only (0600), as a config holding a token must be.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    Ok(())
}

/// Kills the app a deployment started on the SSH test host (which is this machine) when the
/// test ends, pass or fail: the process group of the pid in `pid_file`.
pub struct AppGuard {
    pub pid_file: PathBuf,
}

impl AppGuard {
    pub fn new(pid_file: PathBuf) -> Self {
        Self { pid_file }
    }

    /// Stops the app now; true when there was one to stop.
    pub fn stop(&self) -> bool {
        let Ok(text) = std::fs::read_to_string(&self.pid_file) else {
            return false;
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            return false;
        };
        if pid <= 1 {
            return false;
        }
        let pid = Pid::from_raw(pid);
        let ours = getpgid(None).ok();
        let group = getpgid(Some(pid))
            .ok()
            .filter(|g| Some(*g) != ours && g.as_raw() > 1);
        let signal = |sig| match group {
            Some(g) => killpg(g, sig),
            None => kill(pid, sig),
        };
        if signal(Signal::SIGTERM).is_err() {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && kill(pid, None).is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = signal(Signal::SIGKILL);
        true
    }
}

impl AppGuard {
    /// Removes the system user the recipe made for the app (`pd-<name>`, the app folder's
    /// name), which the guest keeps after a Terraform destroy: here the guest is this machine.
    fn remove_app_user(&self) {
        let Some(name) = self
            .pid_file
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
        else {
            return;
        };
        let user = proxdeck::engine::provision::app_user(name);
        let _ = std::process::Command::new("userdel")
            .arg(&user)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for AppGuard {
    fn drop(&mut self) {
        self.stop();
        self.remove_app_user();
    }
}

/// Files under `dir` (recursively, symlinks not followed) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let needle = needle.as_bytes();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && std::fs::read(&path)
                    .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                    .unwrap_or(false)
            {
                hits.push(path);
            }
        }
    }
    hits
}

/// Every file under `dir`, for failure messages.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Samples every process's argv (`/proc/*/cmdline`) while it runs, looking for a secret. A
/// sample can miss a very short-lived process; it catches a `curl -H` or a terraform `-var`.
pub struct ArgvWatch {
    stop: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl ArgvWatch {
    pub fn start(secret: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (s, h, secret) = (stop.clone(), hits.clone(), secret.to_string());
        let needle = secret.as_bytes().to_vec();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(procs) = std::fs::read_dir("/proc") {
                    for p in procs.flatten() {
                        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
                            continue;
                        };
                        if cmdline
                            .windows(needle.len())
                            .any(|w| w == needle.as_slice())
                        {
                            let shown = String::from_utf8_lossy(&cmdline)
                                .replace('\0', " ")
                                .replace(&secret, "<SECRET>");
                            let mut hits = h.lock().unwrap();
                            if hits.len() < 20 {
                                hits.push(format!("pid {:?}: {shown}", p.file_name()));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            hits,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the argv lines that held the secret.
    pub fn finish(mut self) -> Vec<String> {
        self.halt();
        self.hits.lock().unwrap().clone()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ArgvWatch {
    fn drop(&mut self) {
        self.halt();
    }
}
