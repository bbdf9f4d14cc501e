//! Which real parts this machine has, and the skip rule.
//!
//! A test may skip only when a part truly cannot exist here. Under CI (`CI=true`) a missing
//! part fails the test loudly, with what to install; elsewhere the test prints why it skips.
//! `scripts/test` installs every part.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A real part an integration test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A Python with fakepve and cryptography (the test venv that `scripts/test` makes).
    Fakepve,
    /// OpenSSH's sshd and ssh-keygen, and root (sshd test hosts log in as root).
    Sshd,
    /// The OpenSSH client (only the harness's own sshd test uses it).
    SshClient,
    /// `terraform` on PATH.
    Terraform,
    /// `git` with `git daemon`.
    Git,
    /// The guest's Python: /usr/bin/python3 with venv and ensurepip (the Flask recipe).
    GuestPython,
    /// Caddy (Debian's package) and curl, and root: this machine plays a guest whose Caddy
    /// binds ports 80 and 443.
    Caddy,
}

impl Part {
    fn check(self) -> Result<(), String> {
        match self {
            Part::Fakepve => test_python().map(|_| ()),
            Part::Sshd => {
                if !Path::new("/usr/sbin/sshd").exists() {
                    return Err("/usr/sbin/sshd is missing: apt-get install openssh-server".into());
                }
                if !on_path("ssh-keygen") {
                    return Err("ssh-keygen is missing: apt-get install openssh-client".into());
                }
                if !is_root() {
                    return Err(
                        "sshd test hosts need root (they bind a loopback address as \
                                sshd and log in as root)"
                            .into(),
                    );
                }
                Ok(())
            }
            Part::SshClient => {
                if on_path("ssh") {
                    Ok(())
                } else {
                    Err("ssh is missing: apt-get install openssh-client".into())
                }
            }
            Part::Terraform => {
                if on_path("terraform") {
                    Ok(())
                } else {
                    Err("terraform is missing from PATH: install Terraform >= 1.4".into())
                }
            }
            Part::Git => {
                let ok = Command::new("git")
                    .args(["daemon", "--help"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok();
                if ok {
                    Ok(())
                } else {
                    Err("git is missing: apt-get install git".into())
                }
            }
            Part::Caddy => {
                if !on_path("caddy") {
                    return Err("caddy is missing: apt-get install caddy".into());
                }
                if !on_path("curl") {
                    return Err("curl is missing: apt-get install curl".into());
                }
                if !is_root() {
                    return Err("Caddy on ports 80 and 443 needs root".into());
                }
                Ok(())
            }
            Part::GuestPython => {
                let ok = Command::new("/usr/bin/python3")
                    .args(["-c", "import venv, ensurepip"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok {
                    Ok(())
                } else {
                    Err(
                        "/usr/bin/python3 with venv is missing: apt-get install python3-venv"
                            .into(),
                    )
                }
            }
        }
    }
}

/// True when running under CI (`CI=true`), where a missing part is a failure, not a skip.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("true") | Ok("1")
    )
}

/// Checks the parts a test needs. Returns true when the test must return now (skipped);
/// panics under CI, naming what to install.
pub fn skip_without(test: &str, parts: &[Part]) -> bool {
    let missing: Vec<String> = parts.iter().filter_map(|p| p.check().err()).collect();
    if missing.is_empty() {
        return false;
    }
    let why = missing.join("; ");
    if in_ci() {
        panic!(
            "{test}: a real part is missing under CI=true: {why}. \
             Run scripts/test, which installs them."
        );
    }
    eprintln!("SKIPPED {test}: {why} (scripts/test installs what is missing)");
    true
}

/// Whether this process runs as root (the owner of /proc/self is its effective user).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/support` (absolute): the launcher and the stand-in's `pve_ct.py` live here.
pub fn support_dir() -> PathBuf {
    repo_root().join("tests").join("support")
}

/// `tests/fixtures/terraform`: the stand-in templates dir (`lxc/main.tf.hbs`).
pub fn templates_dir() -> PathBuf {
    repo_root().join("tests").join("fixtures").join("terraform")
}

/// Where `scripts/test` makes the test venv when `PROXDECK_TEST_PYTHON` is not set.
pub fn default_venv() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/proxdeck/test-venv"))
}

/// The test venv's python (with fakepve and cryptography): `PROXDECK_TEST_PYTHON`, else
/// `$HOME/.cache/proxdeck/test-venv/bin/python`.
pub fn test_python() -> Result<PathBuf, String> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let (python, from) = match std::env::var_os("PROXDECK_TEST_PYTHON") {
                Some(p) if !p.is_empty() => (PathBuf::from(p), "PROXDECK_TEST_PYTHON"),
                _ => match default_venv() {
                    Some(v) => (v.join("bin/python"), "the default test venv"),
                    None => return Err("HOME is not set and PROXDECK_TEST_PYTHON is empty".into()),
                },
            };
            let out = Command::new(&python)
                .args([
                    "-c",
                    "import fakepve.server, fakepve.certs, cryptography; print(fakepve.__version__)",
                ])
                .stdin(Stdio::null())
                .output();
            match out {
                Ok(o) if o.status.success() => Ok(python),
                Ok(o) => Err(format!(
                    "{} ({from}) cannot import fakepve: {}; install it: python3 -m venv VENV && \
                     VENV/bin/pip install 'fakepve[crypto]' flask gunicorn (scripts/test does)",
                    python.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => Err(format!(
                    "no test python at {} ({from}): {e}; scripts/test creates the venv with \
                     'fakepve[crypto]'",
                    python.display()
                )),
            }
        })
        .clone()
}
