//! fakepve (the Proxmox VE API fake from PyPI) over HTTPS with its own certificate, started
//! through `fakepve_launcher.py` with an API token registered. The token reaches the launcher
//! through its environment, never argv. Dropping the guard closes the launcher's stdin and
//! kills its process group.

use super::net::random_hex;
use super::parts::{support_dir, test_python};
use super::process::ChildGuard;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The node every fakepve has.
pub const NODE: &str = "pve1";
/// The token id the launcher registers.
pub const TOKEN_ID: &str = "root@pam!ci";
/// The OS template the launcher puts on the `local` storage.
pub const OS_TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";

pub struct FakePve {
    // Field order matters for Drop: stdin closes first, then the guard kills the group.
    stdin: Option<ChildStdin>,
    guard: ChildGuard,
    dir: tempfile::TempDir,
    host: Ipv4Addr,
    url: String,
    secret: String,
}

impl FakePve {
    /// Starts a fake on `host` (a port the system picks), with a fresh token secret.
    pub fn start(host: Ipv4Addr) -> Result<Self> {
        let python = test_python().map_err(anyhow::Error::msg)?;
        let dir = tempfile::Builder::new().prefix("fakepve-").tempdir()?;
        // Distinctive, so a leak is easy to find by searching bytes.
        let secret = format!("pdtestsecret-{}", random_hex(24));
        let mut cmd = Command::new(&python);
        cmd.arg(support_dir().join("fakepve_launcher.py"))
            .arg("--host")
            .arg(host.to_string())
            .arg("--dir")
            .arg(dir.path())
            .env("FAKEPVE_TOKEN", format!("{TOKEN_ID}={secret}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let log = dir.path().join("fakepve.log");
        let mut guard = ChildGuard::spawn("fakepve", &mut cmd, Some(&log))?;
        let stdin = guard.child_mut().stdin.take();
        let stdout = guard.child_mut().stdout.take().context("fakepve stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let url = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("fakepve listening on ") {
                        break url.trim().to_string();
                    }
                }
                Err(_) => {
                    guard.check_alive()?;
                    bail!(
                        "fakepve did not say it listens within 30 s: {}",
                        guard.log_tail()
                    );
                }
            }
        };
        let fake = Self {
            stdin,
            guard,
            dir,
            host,
            url,
            secret,
        };
        if !fake.ca_file().is_file() {
            bail!(
                "fakepve wrote no certificate at {}",
                fake.ca_file().display()
            );
        }
        Ok(fake)
    }

    /// `https://HOST:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn host(&self) -> Ipv4Addr {
        self.host
    }

    /// The certificate the fake serves; use it as the CA file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("fakepve.crt")
    }

    /// The full token, `root@pam!ci=SECRET`.
    pub fn token(&self) -> String {
        format!("{TOKEN_ID}={}", self.secret)
    }

    /// Only the secret part of the token (what must never leak).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The fake's own stderr (aiohttp's log), for failure messages.
    pub fn log_tail(&self) -> String {
        self.guard.log_tail()
    }

    /// Fails if the fake has died.
    pub fn check_alive(&mut self) -> Result<()> {
        self.guard.check_alive()
    }

    /// GET `/api2/json{path}` with the token over verified TLS; returns the status and the
    /// parsed body.
    pub fn get_raw(&self, path: &str) -> Result<(u16, Value)> {
        api_get(
            &format!("{}/api2/json{path}", self.url),
            &self.ca_file(),
            &self.token(),
        )
    }

    /// GET `/api2/json{path}`; the `data` member of a 200 answer.
    pub fn get(&self, path: &str) -> Result<Value> {
        let (status, body) = self.get_raw(path)?;
        if status != 200 {
            bail!("GET {path}: HTTP {status}: {body}");
        }
        Ok(body.get("data").cloned().unwrap_or(Value::Null))
    }

    /// The containers on `node` (`GET /nodes/{node}/lxc`).
    pub fn containers(&self, node: &str) -> Result<Vec<Value>> {
        let data = self.get(&format!("/nodes/{node}/lxc"))?;
        Ok(data.as_array().cloned().unwrap_or_default())
    }

    /// The container `vmid` on `node`, if it exists.
    pub fn container(&self, node: &str, vmid: u64) -> Result<Option<Value>> {
        Ok(self
            .containers(node)?
            .into_iter()
            .find(|ct| ct.get("vmid").and_then(Value::as_u64) == Some(vmid)))
    }
}

impl Drop for FakePve {
    fn drop(&mut self) {
        // EOF on stdin makes the launcher stop by itself; the guard then kills what is left.
        self.stdin.take();
    }
}

/// One GET with `Authorization: PVEAPIToken=...`, verifying TLS against `ca_file` only.
pub fn api_get(url: &str, ca_file: &Path, token: &str) -> Result<(u16, Value)> {
    let pem = std::fs::read(ca_file).with_context(|| format!("read {}", ca_file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(15))
            .build()?;
        let response = client
            .get(url)
            .header("Authorization", format!("PVEAPIToken={token}"))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    })
}
