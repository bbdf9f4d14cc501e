//! Git repositories made by the test, served by `git daemon` on a loopback address.
//!
//! `GitServer::start` makes a base folder and serves every bare repo under it
//! (`--export-all`); `add_flask_app` commits a small Flask app with a unique body into a new
//! bare repo (`git init --bare -b main`, so HEAD names an existing branch).

use super::net::{free_port, random_hex, wait_for_port};
use super::process::{ChildGuard, run_ok};
use anyhow::{Context, Result};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct GitServer {
    guard: ChildGuard,
    dir: tempfile::TempDir,
    addr: Ipv4Addr,
    port: u16,
}

/// A sample app in a bare repo.
#[derive(Debug, Clone)]
pub struct SampleApp {
    /// `git://ADDR:PORT/NAME.git`
    pub git_url: String,
    /// `file:///.../NAME.git`
    pub file_url: String,
    /// The bare repo on disk.
    pub bare: PathBuf,
    /// What `GET /` answers: unique to this app.
    pub body: String,
}

impl GitServer {
    /// Starts `git daemon` on `addr` and a free port, serving a fresh base folder.
    pub fn start(addr: Ipv4Addr) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("git-").tempdir()?;
        let base = dir.path().join("repos");
        std::fs::create_dir_all(&base)?;
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port(addr)?;
            let log = dir.path().join("git-daemon.log");
            let mut cmd = Command::new("git");
            cmd.arg("daemon")
                .arg(format!("--listen={addr}"))
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .args(["--export-all", "--reuseaddr", "--informative-errors"])
                .arg(&base)
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let mut guard = ChildGuard::spawn("git daemon", &mut cmd, Some(&log))?;
            let sock = SocketAddr::from((addr, port));
            match wait_for_port(sock, Duration::from_secs(15), || guard.check_alive()) {
                Ok(()) => {
                    return Ok(Self {
                        guard,
                        dir,
                        addr,
                        port,
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap()).context("git daemon did not start")
    }

    /// The folder the daemon serves.
    pub fn base(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn git_url(&self, name: &str) -> String {
        format!("git://{}:{}/{name}.git", self.addr, self.port)
    }

    pub fn file_url(&self, name: &str) -> String {
        format!("file://{}/{name}.git", self.base().display())
    }

    pub fn log_tail(&self) -> String {
        self.guard.log_tail()
    }

    /// A new bare repo `NAME.git` holding a Flask app whose `/` answers a unique text.
    pub fn add_flask_app(&self, name: &str) -> Result<SampleApp> {
        let body = format!("hello from proxdeck flask sample {}", random_hex(12));
        let files = [
            (
                "app.py",
                format!(
                    "from flask import Flask\n\napp = Flask(__name__)\n\n\n\
                     @app.route(\"/\")\ndef index():\n    return \"{body}\"\n"
                ),
            ),
            ("requirements.txt", "flask\n".to_string()),
            (
                "README.md",
                "A Flask sample made by proxdeck's tests.\n".to_string(),
            ),
        ];
        let bare = self.add_repo(name, &files)?;
        Ok(SampleApp {
            git_url: self.git_url(name),
            file_url: self.file_url(name),
            bare,
            body,
        })
    }

    /// A new bare repo `NAME.git` with one commit on `main` holding everything under `src`
    /// (a sample app made by its framework's own tooling; its `.gitignore` applies).
    pub fn add_repo_from(&self, name: &str, src: &Path) -> Result<PathBuf> {
        let bare = self.base().join(format!("{name}.git"));
        run_ok(
            git()
                .args(["init", "-q", "--bare", "-b", "main"])
                .arg(&bare),
        )?;
        let work = self.dir.path().join(format!("work-{name}"));
        run_ok(git().args(["init", "-q", "-b", "main"]).arg(&work))?;
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", src.display()))
                .arg(&work),
        )?;
        run_ok(git().current_dir(&work).args(["add", "-A"]))?;
        run_ok(
            git()
                .current_dir(&work)
                .args(["commit", "-q", "-m", "sample app"]),
        )?;
        run_ok(
            git()
                .current_dir(&work)
                .arg("push")
                .arg("-q")
                .arg(path_arg(&bare))
                .arg("main:main"),
        )?;
        Ok(bare)
    }

    /// A new commit on `main` of repo `NAME` (made by `add_repo` or `add_repo_from`) that
    /// writes `files`; returns its id.
    pub fn push_change(
        &self,
        name: &str,
        files: &[(&str, String)],
        message: &str,
    ) -> Result<String> {
        let work = self.dir.path().join(format!("work-{name}"));
        for (path, text) in files {
            let path = work.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
        run_ok(git().current_dir(&work).args(["add", "-A"]))?;
        run_ok(
            git()
                .current_dir(&work)
                .args(["commit", "-q", "-m", message]),
        )?;
        let bare = self.base().join(format!("{name}.git"));
        run_ok(
            git()
                .current_dir(&work)
                .arg("push")
                .arg("-q")
                .arg(path_arg(&bare))
                .arg("main:main"),
        )?;
        self.head(name)
    }

    /// The commit `main` of repo `NAME` points at.
    pub fn head(&self, name: &str) -> Result<String> {
        let bare = self.base().join(format!("{name}.git"));
        let done = run_ok(git().arg("-C").arg(&bare).args(["rev-parse", "main"]))?;
        Ok(done.stdout.trim().to_string())
    }

    /// A new bare repo `NAME.git` with one commit on `main` holding `files`.
    pub fn add_repo(&self, name: &str, files: &[(&str, String)]) -> Result<PathBuf> {
        let bare = self.base().join(format!("{name}.git"));
        run_ok(
            git()
                .args(["init", "-q", "--bare", "-b", "main"])
                .arg(&bare),
        )?;
        let work = self.dir.path().join(format!("work-{name}"));
        run_ok(git().args(["init", "-q", "-b", "main"]).arg(&work))?;
        for (path, text) in files {
            let path = work.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
        run_ok(git().current_dir(&work).args(["add", "-A"]))?;
        run_ok(
            git()
                .current_dir(&work)
                .args(["commit", "-q", "-m", "sample app"]),
        )?;
        run_ok(
            git()
                .current_dir(&work)
                .arg("push")
                .arg("-q")
                .arg(path_arg(&bare))
                .arg("main:main"),
        )?;
        Ok(bare)
    }
}

/// `git` with a fixed identity and no signing, independent of the user's config.
fn git() -> Command {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "user.name=proxdeck tests"])
        .args(["-c", "user.email=tests@proxdeck.invalid"])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .env("GIT_TERMINAL_PROMPT", "0");
    cmd
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}
