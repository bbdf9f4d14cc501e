//! Typed terraform commands (`init`, `apply`, `output`, `destroy`) run in a deployment's
//! workspace with `-input=false`, a CLI config of our own per run (shared plugin cache), and
//! credentials only in the child's environment (`PROXMOX_VE_*`, never argv or files).
//!
//! Output is streamed through [`process`](super::process); this module builds the commands and
//! parses what terraform prints (`output -json`).

use super::process::{self, Output, ProcessError, ProcessSpec};
use crate::config::{Config, ProxmoxConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

#[derive(Debug, Clone, thiserror::Error)]
pub enum TerraformError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("terraform {command} failed (exit {code}){detail}")]
    Failed {
        command: &'static str,
        code: i32,
        /// The error lines terraform printed, joined (its diagnostics), with a leading ": ".
        detail: String,
    },
    #[error("cannot prepare the terraform run: {0}")]
    Setup(String),
    #[error("terraform output is not what the template promised: {0}")]
    Outputs(String),
}

/// A terraform binary bound to one workspace.
pub struct Terraform {
    binary: PathBuf,
    workspace: PathBuf,
    cli_config: PathBuf,
    env: Vec<(String, String)>,
    timeout: Duration,
}

/// What a template's outputs told us about the guest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestOutputs {
    pub vmid: Option<u32>,
    pub ipv4: Option<String>,
}

impl Terraform {
    /// Prepares a run in `workspace`: writes the CLI config (plugin cache under `data_dir`) and
    /// collects the child environment. Credentials come from `proxmox`.
    pub fn new(
        config: &Config,
        proxmox: &ProxmoxConfig,
        workspace: &Path,
        plugin_cache: &Path,
    ) -> Result<Terraform, TerraformError> {
        std::fs::create_dir_all(plugin_cache).map_err(|e| {
            TerraformError::Setup(format!("plugin cache {}: {e}", plugin_cache.display()))
        })?;
        let cli_config = workspace.join(".terraformrc.json");
        // JSON so that no path needs HCL quoting rules.
        let rc = serde_json::json!({
            "plugin_cache_dir": plugin_cache,
            "plugin_cache_may_break_dependency_lock_file": true,
            "disable_checkpoint": true,
        });
        std::fs::write(&cli_config, rc.to_string())
            .map_err(|e| TerraformError::Setup(format!("{}: {e}", cli_config.display())))?;
        let mut env = vec![
            (
                "TF_CLI_CONFIG_FILE".to_string(),
                cli_config.display().to_string(),
            ),
            ("TF_IN_AUTOMATION".to_string(), "1".to_string()),
            ("CHECKPOINT_DISABLE".to_string(), "1".to_string()),
            (
                "PROXMOX_VE_ENDPOINT".to_string(),
                proxmox.endpoint.to_string(),
            ),
            (
                "PROXMOX_VE_API_TOKEN".to_string(),
                proxmox.api_token.expose().to_string(),
            ),
            (
                "PROXMOX_VE_INSECURE".to_string(),
                proxmox.insecure.to_string(),
            ),
        ];
        if let Some(ca) = &proxmox.ca_file {
            // The provider is written in Go, whose TLS stack trusts the CA bundle named here.
            env.push(("SSL_CERT_FILE".to_string(), ca.display().to_string()));
        }
        Ok(Terraform {
            binary: config.terraform.binary.clone(),
            workspace: workspace.to_path_buf(),
            cli_config,
            env,
            timeout: config.timeouts.terraform,
        })
    }

    pub fn cli_config(&self) -> &Path {
        &self.cli_config
    }

    fn spec(&self, args: &[&str]) -> ProcessSpec {
        let mut spec = ProcessSpec::new(&self.binary, args);
        spec.cwd = Some(self.workspace.clone());
        spec.env = self.env.clone();
        // Variables from the user's shell must not change what proxdeck deploys.
        spec.env_remove = std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("TF_VAR_") || k == "TF_WORKSPACE" || k == "TF_DATA_DIR")
            .collect();
        spec.timeout = self.timeout;
        spec
    }

    async fn run(
        &self,
        command: &'static str,
        args: &[&str],
        out: mpsc::UnboundedSender<Output>,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), TerraformError> {
        // Keep terraform's error lines to name the cause in the failure message.
        let (tx, mut rx) = mpsc::unbounded_channel::<Output>();
        let forward = tokio::spawn(async move {
            let mut errors: Vec<String> = Vec::new();
            while let Some(o) = rx.recv().await {
                if o.stream == crate::protocol::LogStream::Stderr {
                    errors.extend(o.lines.iter().filter(|l| !l.trim().is_empty()).cloned());
                    if errors.len() > 40 {
                        errors.drain(..errors.len() - 40);
                    }
                }
                let _ = out.send(o);
            }
            errors
        });
        let status = process::run(&self.spec(args), tx, cancel).await;
        let errors = forward.await.unwrap_or_default();
        let status = status?;
        if status.success() {
            return Ok(());
        }
        Err(TerraformError::Failed {
            command,
            code: status.code().unwrap_or(-1),
            detail: summarize_errors(&errors),
        })
    }

    pub async fn init(
        &self,
        out: mpsc::UnboundedSender<Output>,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), TerraformError> {
        self.run("init", &["init", "-input=false", "-no-color"], out, cancel)
            .await
    }

    pub async fn apply(
        &self,
        out: mpsc::UnboundedSender<Output>,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), TerraformError> {
        self.run(
            "apply",
            &["apply", "-input=false", "-no-color", "-auto-approve"],
            out,
            cancel,
        )
        .await
    }

    pub async fn destroy(
        &self,
        out: mpsc::UnboundedSender<Output>,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), TerraformError> {
        self.run(
            "destroy",
            &["destroy", "-input=false", "-no-color", "-auto-approve"],
            out,
            cancel,
        )
        .await
    }

    /// `terraform output -json`, parsed.
    pub async fn outputs(&self) -> Result<GuestOutputs, TerraformError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Output>();
        let (_c, crx) = watch::channel(false);
        let status = process::run(&self.spec(&["output", "-json", "-no-color"]), tx, crx).await?;
        let mut stdout = String::new();
        let mut stderr = Vec::new();
        while let Ok(o) = rx.try_recv() {
            match o.stream {
                crate::protocol::LogStream::Stdout => {
                    for l in o.lines {
                        stdout.push_str(&l);
                        stdout.push('\n');
                    }
                }
                _ => stderr.extend(o.lines),
            }
        }
        if !status.success() {
            return Err(TerraformError::Failed {
                command: "output",
                code: status.code().unwrap_or(-1),
                detail: summarize_errors(&stderr),
            });
        }
        parse_outputs(&stdout)
    }
}

/// Terraform's `Error: ...` lines and what follows them, shortened for a one-line message.
fn summarize_errors(lines: &[String]) -> String {
    let start = lines
        .iter()
        .position(|l| l.contains("Error:"))
        .unwrap_or(lines.len().saturating_sub(5));
    let text: Vec<&str> = lines[start..]
        .iter()
        .map(|l| l.trim_matches(|c: char| c == '│' || c == '╷' || c == '╵' || c.is_whitespace()))
        .filter(|l| !l.is_empty())
        .take(8)
        .collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", text.join(" "))
    }
}

/// Reads `vmid` and `ipv4` from `terraform output -json`; both may be absent or null.
pub fn parse_outputs(json: &str) -> Result<GuestOutputs, TerraformError> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| TerraformError::Outputs(format!("not JSON: {e}")))?;
    let value = |name: &str| {
        v.get(name)
            .and_then(|o| o.get("value"))
            .filter(|x| !x.is_null())
    };
    let vmid = match value("vmid") {
        None => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| TerraformError::Outputs(format!("vmid {n} is not a VM id")))?,
        ),
        Some(Value::String(s)) => Some(
            s.parse()
                .map_err(|_| TerraformError::Outputs(format!("vmid {s:?} is not a number")))?,
        ),
        Some(other) => return Err(TerraformError::Outputs(format!("vmid is {other}"))),
    };
    let ipv4 = match value("ipv4") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            let addr = s.split('/').next().unwrap_or(s);
            addr.parse::<std::net::Ipv4Addr>()
                .map_err(|_| TerraformError::Outputs(format!("ipv4 {s:?} is not an address")))?;
            Some(addr.to_string())
        }
        Some(other) => return Err(TerraformError::Outputs(format!("ipv4 is {other}"))),
    };
    Ok(GuestOutputs { vmid, ipv4 })
}

/// True when terraform has state in this workspace with at least one resource.
pub fn has_state(workspace: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(workspace.join("terraform.tfstate")) else {
        return false;
    };
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("resources")
                .and_then(Value::as_array)
                .map(|r| !r.is_empty())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_parsed() {
        let o = parse_outputs(
            r#"{"vmid":{"sensitive":false,"type":"number","value":123},"ipv4":{"sensitive":false,"type":"string","value":"10.0.0.5"}}"#,
        )
        .unwrap();
        assert_eq!(
            o,
            GuestOutputs {
                vmid: Some(123),
                ipv4: Some("10.0.0.5".into())
            }
        );
        let o = parse_outputs(r#"{"ipv4":{"value":null},"vmid":{"value":"200"}}"#).unwrap();
        assert_eq!(
            o,
            GuestOutputs {
                vmid: Some(200),
                ipv4: None
            }
        );
        assert_eq!(parse_outputs("{}").unwrap(), GuestOutputs::default());
        assert!(parse_outputs(r#"{"ipv4":{"value":"not-an-ip"}}"#).is_err());
        assert!(parse_outputs(r#"{"vmid":{"value":-1}}"#).is_err());
        assert!(parse_outputs("garbage").is_err());
    }

    #[test]
    fn error_summary_keeps_the_diagnostic() {
        let lines: Vec<String> = [
            "",
            "╷",
            "│ Error: local-exec provisioner error",
            "│ ",
            "│   with terraform_data.ct,",
            "│ Error running command 'exit 1': exit status 1.",
            "╵",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = summarize_errors(&lines);
        assert!(
            s.starts_with(": Error: local-exec provisioner error"),
            "{s}"
        );
        assert!(s.contains("exit status 1"), "{s}");
        assert_eq!(summarize_errors(&[]), "");
    }
}
