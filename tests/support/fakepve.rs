//! fakepve (the Proxmox VE API fake from PyPI) over HTTPS with its own certificate, started
//! through `fakepve_launcher.py` with an API token registered (and root@pam's password for
//! ticket logins). Secrets reach the launcher through its environment or its stdin, never argv.
//! Dropping the guard closes the launcher's stdin and kills its process group.
//!
//! [`FakePve::ctl`] drives the fake's Python API through the launcher's control channel (one
//! JSON line per op on stdin, one `ctl {...}` answer line on stdout): faults (`fail`,
//! `slow_network`, `revoke_tickets`, `hold_config_lock`, `lock`, `set_node_offline`, ...), the
//! cluster's shape (`add_node`, `add_guest`, `add_guests`, `storage`, `add_token`, `grant`) and
//! what the fake saw (`requests`, `guest`). The ops are listed in `fakepve_launcher.py`.

use super::net::random_hex;
use super::parts::{support_dir, test_python};
use super::process::ChildGuard;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::Write;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

/// The node every fakepve has.
pub const NODE: &str = "pve1";
/// The token id the launcher registers.
pub const TOKEN_ID: &str = "root@pam!ci";
/// An OS template the launcher puts on the `local` storage (Debian 12).
pub const OS_TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";
/// The other one: Debian 13, proxdeck's default `guest.os_template`.
pub const OS_TEMPLATE_DEBIAN13: &str = "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst";
/// root@pam's password for ticket logins.
pub const PASSWORD: &str = "pd-test-password";
/// How long one control op may take.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// The control channel: the launcher's stdin and the lines of its stdout.
struct Control {
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

pub struct FakePve {
    // Field order matters for Drop: stdin closes first, then the guard kills the group.
    control: Mutex<Option<Control>>,
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
            .env("FAKEPVE_PASSWORD", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let log = dir.path().join("fakepve.log");
        let mut guard = ChildGuard::spawn("fakepve", &mut cmd, Some(&log))?;
        let stdin = guard.child_mut().stdin.take().context("fakepve stdin")?;
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
            control: Mutex::new(Some(Control { stdin, lines: rx })),
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

    /// Runs one control op (`{"op": op, ...args}`) in the launcher; its `result`, or an error
    /// with the launcher's message.
    pub fn ctl(&self, op: &str, args: Value) -> Result<Value> {
        let mut request = match args {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => bail!("ctl {op}: arguments must be an object, not {other}"),
        };
        request.insert("op".into(), Value::String(op.into()));
        let mut guard = self
            .control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let control = guard
            .as_mut()
            .context("fakepve's control channel is closed")?;
        writeln!(control.stdin, "{}", Value::Object(request))
            .and_then(|()| control.stdin.flush())
            .with_context(|| format!("ctl {op}: write to the launcher"))?;
        let deadline = std::time::Instant::now() + CTL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = control
                .lines
                .recv_timeout(left)
                .map_err(|_| anyhow::anyhow!("ctl {op}: no answer within {CTL_TIMEOUT:?}"))?;
            let Some(answer) = line.strip_prefix("ctl ") else {
                continue;
            };
            let answer: Value = serde_json::from_str(answer)
                .with_context(|| format!("ctl {op}: bad answer {answer:?}"))?;
            if answer["ok"] == Value::Bool(true) {
                return Ok(answer.get("result").cloned().unwrap_or(Value::Null));
            }
            bail!("ctl {op}: {}", answer["error"]);
        }
    }

    /// `pve.fail(method, suffix, status, message, times=times)`: the next `times` requests
    /// (every one with `None`) whose path ends with `suffix` get this error.
    pub fn fail(
        &self,
        method: &str,
        suffix: &str,
        status: u16,
        message: &str,
        times: Option<u32>,
    ) -> Result<()> {
        self.ctl(
            "fail",
            serde_json::json!({"method": method, "suffix": suffix, "status": status,
                               "message": message, "times": times}),
        )
        .map(|_| ())
    }

    /// How many requests the fake saw with this method (any with `None`) and path suffix.
    pub fn request_count(&self, method: Option<&str>, suffix: &str) -> Result<u64> {
        let r = self.ctl(
            "requests",
            serde_json::json!({"method": method, "suffix": suffix}),
        )?;
        r["count"].as_u64().context("requests: no count")
    }

    /// The fake's view of a guest: vmid, type, node, name, status, lock, config.
    pub fn guest(&self, vmid: u64) -> Result<Value> {
        self.ctl("guest", serde_json::json!({"vmid": vmid}))
    }

    /// The SHA-256 fingerprint of the fake's certificate (`AB:CD:...`), computed by Python.
    pub fn fingerprint(&self) -> Result<String> {
        let v = self.ctl("fingerprint", Value::Null)?;
        Ok(v.as_str().context("fingerprint: not a string")?.to_string())
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
        if let Ok(mut control) = self.control.lock() {
            control.take();
        }
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
