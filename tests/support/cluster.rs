//! A stand-in cluster for deployments onto real guests: fakepve plays Proxmox, the stand-in
//! templates create guests on it and the real-guest rig boots a fresh Debian at each guest's
//! address, a git daemon serves the sample apps, and one proxdeck data dir deploys them with
//! a config whose address pool, SSH port and templates fit the rig. Used by the real-guest
//! tests and by the first-deploy benchmark (`benches/first_deploy.rs`).
//!
//! Also [`Timing`]: where a deployment's time went, read from its log (`logs --json`): the
//! stages, and inside provisioning the recipe's steps (apt, dependencies, build).

use super::fakepve::{FakePve, NODE};
use super::git::GitServer;
use super::guests::Rig;
use super::net::{loopback, loopback_pool};
use super::parts::templates_dir;
use super::process::Finished;
use super::proxdeck::{Proxdeck, write_private};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

/// The cloud-init template VMs clone (added to the fake by [`Cluster::add_vm_template`]).
pub const VM_TEMPLATE_VMID: u64 = 9000;

pub struct Cluster {
    // Field order matters for Drop: proxdeck's files, then the rig's guests, then the fake.
    pub proxdeck: Proxdeck,
    pub rig: Rig,
    pub git: GitServer,
    pub pve: FakePve,
    pub root: PathBuf,
    pub data_dir: PathBuf,
    pub pool: (Ipv4Addr, u8),
    _work: tempfile::TempDir,
}

impl Cluster {
    /// Starts the parts; `pool_size` addresses for guests (a power of two); `vm` adds the
    /// VM template and the `[vm]` settings.
    pub fn start(prefix: &str, pool_size: u32, vm: bool) -> Result<Cluster> {
        let work = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let root = work.path().to_path_buf();
        let data_dir = root.join("data");
        let pve = FakePve::start(loopback()).context("start fakepve")?;
        let rig = Rig::start().context("start the real-guest rig")?;
        let git = GitServer::start(loopback()).context("start git daemon")?;
        let pool = loopback_pool(pool_size);
        let mut config = format!(
            "[proxmox]\nendpoint = \"{url}\"\napi_token = \"{token}\"\nca_file = \"{ca}\"\n\
             node = \"{NODE}\"\n\n\
             [guest]\nssh_port = {ssh_port}\ndatastore = \"local-lvm\"\nbridge = \"vmbr0\"\n\n\
             [network]\npool = \"{net}/{len}\"\nprefix = 8\ngateway = \"127.0.0.1\"\n\n\
             [terraform]\ntemplates_dir = \"{templates}\"\n\n\
             [timeouts]\nssh_secs = 120\nhealth_secs = 180\nprovision_secs = 1800\n",
            url = pve.url(),
            token = pve.token(),
            ca = pve.ca_file().display(),
            ssh_port = rig.ssh_port(),
            net = pool.0,
            len = pool.1,
            templates = templates_dir().display(),
        );
        if vm {
            config.push_str(&format!(
                "\n[vm]\ntemplate_vmid = {VM_TEMPLATE_VMID}\ndisk_interface = \"scsi0\"\n"
            ));
            pve.ctl(
                "add_guest",
                json!({
                    "type": "qemu",
                    "vmid": VM_TEMPLATE_VMID,
                    "node": NODE,
                    "name": "debian-13-genericcloud",
                    "status": "stopped",
                    "template": true,
                    "config": {"scsi0": format!("local-lvm:base-{VM_TEMPLATE_VMID}-disk-0,size=3G")},
                }),
            )
            .context("add the VM template")?;
        }
        let config_path = root.join("config.toml");
        write_private(&config_path, &config)?;
        let proxdeck =
            Proxdeck::new(config_path, data_dir.clone(), &root).with_guests(rig.socket());
        Ok(Cluster {
            proxdeck,
            rig,
            git,
            pve,
            root,
            data_dir,
            pool,
            _work: work,
        })
    }

    /// Runs proxdeck; panics only when it cannot be started at all.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Finished {
        self.proxdeck
            .run(args, timeout)
            .unwrap_or_else(|e| panic!("proxdeck {args:?}: {e:#}"))
    }

    /// The deployment's log as JSON lines (`at`, `stream`, `stage`, `line`).
    pub fn log_lines(&self, name: &str) -> Vec<Value> {
        let done = self.run(&["logs", name, "--json"], Duration::from_secs(120));
        done.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Everything that helps when a deployment failed: proxdeck's output and log, the
    /// fake's log, the console of the guests the rig booted.
    pub fn explain(&self, name: &str, done: &Finished) -> String {
        let logs = self
            .proxdeck
            .run(&["logs", name], Duration::from_secs(120))
            .map(|l| l.stdout)
            .unwrap_or_default();
        format!(
            "{}\n--- proxdeck logs {name} ---\n{logs}\n--- fakepve ---\n{}\n--- git ---\n{}",
            done.describe(),
            self.pve.log_tail(),
            self.git.log_tail()
        )
    }
}

/// Where a deployment's time went.
#[derive(Debug, Clone, Default)]
pub struct Timing {
    pub total: Duration,
    /// Preflight, render and terraform (which boots the guest), and a VM's first boot
    /// (cloud-init) the recipe waits for.
    pub guest: Duration,
    /// SSH until the recipe's first step.
    pub ssh: Duration,
    /// Package installs (`==> installing ... (apt)`) and apt's lists (fetched before the
    /// Node check, or before the installs).
    pub apt: Duration,
    /// The app's dependencies (`==> dependencies`, and a Python app's virtualenv).
    pub dependencies: Duration,
    /// The app's build (`==> build`).
    pub build: Duration,
    /// The rest of provisioning: fetch, env, service.
    pub other: Duration,
    /// The health check until RUNNING.
    pub health: Duration,
}

impl Timing {
    /// From `logs --json` lines: each line's time is charged to the phase it starts.
    pub fn from_log(lines: &[Value]) -> Timing {
        let mut t = Timing::default();
        let at = |v: &Value| v["at"].as_i64().unwrap_or(0);
        let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
            return t;
        };
        t.total = Duration::from_millis((at(last) - at(first)).max(0) as u64);
        let mut phase = Phase::Guest;
        let mut since = at(first);
        for line in lines {
            let stage = line["stage"].as_str().unwrap_or_default();
            let text = line["line"].as_str().unwrap_or_default();
            let next = match stage {
                "ssh" => Some(Phase::Ssh),
                "health-check" | "done" => Some(Phase::Health),
                "provision" => text.strip_prefix("==> ").map(|step| {
                    if step.starts_with("waiting for cloud-init") {
                        Phase::Guest
                    } else if step.starts_with("installing ")
                        || step.starts_with("runtime:")
                        || step.starts_with("node:")
                    {
                        Phase::Apt
                    } else if step.starts_with("dependencies") || step.starts_with("virtualenv") {
                        Phase::Deps
                    } else if step.starts_with("build") {
                        Phase::Build
                    } else {
                        Phase::Other
                    }
                }),
                _ => None,
            };
            if let Some(next) = next
                && next != phase
            {
                let spent = Duration::from_millis((at(line) - since).max(0) as u64);
                *t.slot(phase) += spent;
                phase = next;
                since = at(line);
            }
        }
        let spent = Duration::from_millis((at(last) - since).max(0) as u64);
        *t.slot(phase) += spent;
        t
    }

    fn slot(&mut self, p: Phase) -> &mut Duration {
        match p {
            Phase::Guest => &mut self.guest,
            Phase::Ssh => &mut self.ssh,
            Phase::Apt => &mut self.apt,
            Phase::Deps => &mut self.dependencies,
            Phase::Build => &mut self.build,
            Phase::Other => &mut self.other,
            Phase::Health => &mut self.health,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Guest,
    Ssh,
    Apt,
    Deps,
    Build,
    Other,
    Health,
}
