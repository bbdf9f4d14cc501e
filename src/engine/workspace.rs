//! The per-deployment Terraform workspace: `main.tf` rendered from a Handlebars template
//! (built in, or the user's own from `terraform.templates_dir`), `terraform.tfvars.json` with
//! every value, and `backend.tf` when a remote state backend is configured.
//!
//! This module owns what goes into those files and nothing else: it builds the variables of a
//! guest ([`LxcVars`] or [`VmVars`], chosen by guest type) from the config and the deployment
//! record, and writes the files. It runs no terraform and talks to nobody.
//!
//! A deploy's guest carries its identity (`identity`): the deployment's and the
//! installation's ids as tags and description lines, values like any other.
//!
//! The template sees only structural choices ([`RenderFlags`]: `static_ip`, `vlan`, `vm_id`,
//! `full_clone`), never a user value: values travel as Terraform variables in JSON, so nothing
//! a user typed is ever spliced into HCL text. Credentials are in none of the files; they reach
//! terraform through its environment (see `terraform`).

use super::identity::Identity;
use crate::config::{BackendConfig, Config};
use crate::domain::{Deployment, GuestType};
use handlebars::Handlebars;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

const BUILTIN_LXC: &str = include_str!("../../terraform/lxc/main.tf.hbs");
const BUILTIN_VM: &str = include_str!("../../terraform/vm/main.tf.hbs");

/// The files of a workspace, by name.
pub const MAIN_TF: &str = "main.tf";
pub const TFVARS: &str = "terraform.tfvars.json";
pub const BACKEND_TF: &str = "backend.tf";
/// What the user chose for this deployment's guest beyond the record (e.g. its OS template).
pub const CHOICES: &str = "proxdeck-choices.json";

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("cannot read template {path}: {source}")]
    ReadTemplate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {name} does not render: {message}")]
    Render { name: String, message: String },
    #[error("cannot write the workspace {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// Structural choices a template may branch on. Values live in [`LxcVars`] / [`VmVars`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RenderFlags {
    /// A static address from the pool (else DHCP).
    pub static_ip: bool,
    /// The guest's NIC carries a VLAN tag.
    pub vlan: bool,
    /// proxdeck chose the vmid (else Proxmox picks the next free one).
    pub vm_id: bool,
    /// VMs: a full clone, which can land on another datastore than the template's (a linked
    /// clone cannot). Always false for containers.
    pub full_clone: bool,
}

/// Every value of an LXC deployment, written to `terraform.tfvars.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LxcVars {
    pub node_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<u32>,
    pub hostname: String,
    pub description: String,
    pub tags: Vec<String>,
    pub cores: u32,
    pub memory_mib: u32,
    pub swap_mib: u32,
    pub disk_gib: u32,
    pub datastore_id: String,
    pub os_template: String,
    pub os_type: String,
    pub bridge: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u32>,
    /// `dhcp` or an address in CIDR form (`10.0.0.20/24`).
    pub ipv4_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_gateway: Option<String>,
    pub ssh_public_key: String,
}

impl LxcVars {
    pub fn flags(&self) -> RenderFlags {
        RenderFlags {
            static_ip: self.ipv4_address != "dhcp",
            vlan: self.vlan_id.is_some(),
            vm_id: self.vm_id.is_some(),
            full_clone: false,
        }
    }
}

/// Every value of a VM deployment (a clone of a cloud-init template).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmVars {
    pub node_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<u32>,
    /// The VM's name, also its hostname through cloud-init.
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub template_vmid: u32,
    /// The template's node; the deployment's node unless configured (cross-node clone).
    pub template_node: String,
    pub full_clone: bool,
    pub cores: u32,
    pub cpu_type: String,
    pub memory_mib: u32,
    pub disk_gib: u32,
    pub disk_interface: String,
    pub datastore_id: String,
    pub cloudinit_datastore_id: String,
    pub bridge: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u32>,
    pub ipv4_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_gateway: Option<String>,
    /// The cloud-init user; proxdeck logs in as this user.
    pub ci_user: String,
    pub ssh_public_key: String,
    /// A Go duration (`300s`), as the provider's `agent.timeout` wants it.
    pub agent_timeout: String,
}

impl VmVars {
    pub fn flags(&self) -> RenderFlags {
        RenderFlags {
            static_ip: self.ipv4_address != "dhcp",
            vlan: self.vlan_id.is_some(),
            vm_id: self.vm_id.is_some(),
            full_clone: self.full_clone,
        }
    }
}

/// The variables of one guest, by type; serialises as the plain tfvars object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum GuestVars {
    Lxc(LxcVars),
    Vm(VmVars),
}

impl GuestVars {
    pub fn flags(&self) -> RenderFlags {
        match self {
            GuestVars::Lxc(v) => v.flags(),
            GuestVars::Vm(v) => v.flags(),
        }
    }

    pub fn guest_type(&self) -> GuestType {
        match self {
            GuestVars::Lxc(_) => GuestType::Lxc,
            GuestVars::Vm(_) => GuestType::Vm,
        }
    }
}

/// Per-deployment choices kept next to the workspace (not in the record): read again by
/// every render, so a retry builds the same guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Choices {
    /// The container's OS template (a volume id) instead of `guest.os_template`.
    pub os_template: Option<String>,
}

impl Choices {
    /// Reads `dir`'s choices; none when the file is missing.
    pub fn load(dir: &Path) -> Result<Choices, WorkspaceError> {
        let path = dir.join(CHOICES);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| WorkspaceError::Render {
                name: CHOICES.into(),
                message: format!("{}: {e}", path.display()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Choices::default()),
            Err(source) => Err(WorkspaceError::ReadTemplate { path, source }),
        }
    }

    /// Writes the choices into `dir` (created if needed); nothing to keep removes the file.
    pub fn save(&self, dir: &Path) -> Result<(), WorkspaceError> {
        let path = dir.join(CHOICES);
        if *self == Choices::default() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(WorkspaceError::Write { path, source: e })
                }
                _ => Ok(()),
            };
        }
        std::fs::create_dir_all(dir).map_err(|source| WorkspaceError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let json = serde_json::to_string_pretty(self).map_err(|e| WorkspaceError::Render {
            name: CHOICES.into(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, json + "\n").map_err(|source| WorkspaceError::Write { path, source })
    }
}

/// A container OS template as Proxmox names it: `STORAGE:vztmpl/FILE`.
pub fn validate_os_template(t: &str) -> Result<(), String> {
    let ok = t.split_once(':').is_some_and(|(storage, file)| {
        !storage.is_empty()
            && storage
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && file.len() > "vztmpl/".len()
            && file.starts_with("vztmpl/")
    }) && !t
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'\\$`".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{t:?} is not a container template volume id like local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst (`pveam list local` lists them)"
        ))
    }
}

/// What a guest's variables are built from, besides the config.
#[derive(Debug, Clone)]
pub struct GuestInput<'a> {
    pub deployment: &'a Deployment,
    /// The node the guest goes to (placement already done).
    pub node: &'a str,
    /// The static address from the pool, or DHCP.
    pub static_ip: Option<Ipv4Addr>,
    /// proxdeck's public key (OpenSSH format), authorized for the login user.
    pub public_key: &'a str,
    pub choices: &'a Choices,
    /// The marks the guest carries (its deployment's id and the installation's, as tags and
    /// description lines); `None` for a workspace handed to the user (`render --out`), whose
    /// guest proxdeck does not own.
    pub identity: Option<&'a Identity>,
}

/// The guest's variables: LXC or VM by the deployment's type, every value from the config,
/// the record and the choices. Fails naming the setting when one is missing or unusable.
pub fn guest_vars(config: &Config, input: &GuestInput<'_>) -> Result<GuestVars, WorkspaceError> {
    let d = input.deployment;
    let mut description = format!("proxdeck deployment {} of {}", d.name, d.repo);
    let mut tags = vec!["proxdeck".to_string()];
    if !d.framework.is_empty() {
        tags.push(d.framework.to_ascii_lowercase());
    }
    if let Some(identity) = input.identity {
        description.push('\n');
        description.push_str(&identity.description_lines());
        tags.extend(identity.tags());
    }
    let ipv4_address = match input.static_ip {
        Some(ip) => format!("{ip}/{}", config.network.prefix),
        None => "dhcp".to_string(),
    };
    let ipv4_gateway = input
        .static_ip
        .and(config.network.gateway.map(|g| g.to_string()));
    let public_key = input.public_key.trim().to_string();
    if public_key.is_empty() || public_key.contains('\n') {
        return Err(WorkspaceError::Invalid {
            field: "ssh key",
            message: "proxdeck's public key is empty or spans several lines".into(),
        });
    }
    let guest = &config.guest;
    match d.guest_type {
        GuestType::Lxc => {
            let os_template = match &input.choices.os_template {
                Some(t) => {
                    validate_os_template(t).map_err(|message| WorkspaceError::Invalid {
                        field: "os-template",
                        message,
                    })?;
                    t.clone()
                }
                None => guest.os_template.clone(),
            };
            Ok(GuestVars::Lxc(LxcVars {
                node_name: input.node.to_string(),
                vm_id: d.vmid,
                hostname: d.name.clone(),
                description,
                tags,
                cores: d.cores,
                memory_mib: d.memory_mib,
                swap_mib: guest.swap_mib,
                disk_gib: d.disk_gib,
                datastore_id: guest.datastore.clone(),
                os_template,
                os_type: guest.os_type.clone(),
                bridge: guest.bridge.clone(),
                vlan_id: guest.vlan,
                ipv4_address,
                ipv4_gateway,
                ssh_public_key: public_key,
            }))
        }
        GuestType::Vm => {
            let vm = &config.vm;
            let template_vmid = vm.template_vmid.ok_or(WorkspaceError::Invalid {
                field: "vm.template_vmid",
                message: "VM deployments clone a cloud-init template: set its vmid in [vm] of the config (a cloud image with qemu-guest-agent, converted with `qm template`)".into(),
            })?;
            if input.choices.os_template.is_some() {
                return Err(WorkspaceError::Invalid {
                    field: "os-template",
                    message: "is for containers; a VM is a clone of vm.template_vmid".into(),
                });
            }
            Ok(GuestVars::Vm(VmVars {
                node_name: input.node.to_string(),
                vm_id: d.vmid,
                name: d.name.clone(),
                description,
                tags,
                template_vmid,
                template_node: vm
                    .template_node
                    .clone()
                    .unwrap_or_else(|| input.node.to_string()),
                full_clone: vm.full_clone,
                cores: d.cores,
                cpu_type: vm.cpu_type.clone(),
                memory_mib: d.memory_mib,
                disk_gib: d.disk_gib,
                disk_interface: vm.disk_interface.clone(),
                datastore_id: guest.datastore.clone(),
                cloudinit_datastore_id: vm.cloudinit_datastore.clone(),
                bridge: guest.bridge.clone(),
                vlan_id: guest.vlan,
                ipv4_address,
                ipv4_gateway,
                ci_user: vm_login_user(config, d),
                ssh_public_key: public_key,
                agent_timeout: format!("{}s", vm.agent_timeout.as_secs()),
            }))
        }
    }
}

/// The user proxdeck logs into a VM as: the deployment's SSH user when one was given, else
/// `vm.user`. Cloud-init creates it with proxdeck's key.
pub fn vm_login_user(config: &Config, d: &Deployment) -> String {
    d.ssh_user.clone().unwrap_or_else(|| config.vm.user.clone())
}

/// The template for a guest type: the user's own from `templates_dir/<type>/main.tf.hbs` when
/// that folder is configured, else the built-in one.
pub fn load_template(
    kind: GuestType,
    templates_dir: Option<&Path>,
) -> Result<String, WorkspaceError> {
    if let Some(dir) = templates_dir {
        let path = dir.join(kind.as_str()).join("main.tf.hbs");
        return std::fs::read_to_string(&path)
            .map_err(|source| WorkspaceError::ReadTemplate { path, source });
    }
    Ok(match kind {
        GuestType::Lxc => BUILTIN_LXC,
        GuestType::Vm => BUILTIN_VM,
    }
    .to_string())
}

/// Renders `main.tf`. Strict mode: a template naming a flag that does not exist fails loudly.
pub fn render_main_tf<F: Serialize>(template: &str, flags: &F) -> Result<String, WorkspaceError> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    // HCL is not HTML: never escape.
    hb.register_escape_fn(handlebars::no_escape);
    hb.render_template(template, flags)
        .map_err(|e| WorkspaceError::Render {
            name: "main.tf.hbs".into(),
            message: e.to_string(),
        })
}

/// `backend.tf` for a remote state backend: an empty (partial) backend block; its settings
/// come at `terraform init` time. The type is one of [`crate::config::BACKENDS`].
pub fn backend_tf(backend: &BackendConfig) -> String {
    format!(
        "# Rendered by proxdeck: remote state ([terraform.backend] in proxdeck's config).\n\
         # Settings reach `terraform init` through its environment, never this file.\n\n\
         terraform {{\n  backend \"{}\" {{}}\n}}\n",
        backend.kind
    )
}

/// Writes `main.tf` and `terraform.tfvars.json` into `dir` (created if needed).
pub fn write_workspace<V: Serialize>(
    dir: &Path,
    main_tf: &str,
    vars: &V,
) -> Result<(), WorkspaceError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WorkspaceError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    let main = dir.join(MAIN_TF);
    write_atomically(&main, main_tf).map_err(werr(&main))?;
    let tfvars = dir.join(TFVARS);
    let json = serde_json::to_string_pretty(vars).map_err(|e| WorkspaceError::Render {
        name: TFVARS.into(),
        message: e.to_string(),
    })?;
    write_atomically(&tfvars, &(json + "\n")).map_err(werr(&tfvars))?;
    Ok(())
}

/// Writes `backend.tf` for `backend`, or removes a stale one when there is none.
pub fn write_backend(dir: &Path, backend: Option<&BackendConfig>) -> Result<(), WorkspaceError> {
    let path = dir.join(BACKEND_TF);
    let result = match backend {
        Some(b) => write_atomically(&path, &backend_tf(b)),
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    result.map_err(|source| WorkspaceError::Write { path, source })
}

/// Renders and writes the whole workspace of `vars` into `dir`: what a deploy runs terraform
/// on, and what `proxdeck render --out` hands to the user.
pub fn write_guest_workspace(
    config: &Config,
    dir: &Path,
    vars: &GuestVars,
) -> Result<(), WorkspaceError> {
    let template = load_template(vars.guest_type(), config.terraform.templates_dir.as_deref())?;
    let main_tf = render_main_tf(&template, &vars.flags())?;
    write_workspace(dir, &main_tf, vars)?;
    write_backend(dir, config.terraform.backend.as_ref())
}

/// Replaces a file through a temporary one, so a reader never sees half of it.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-proxdeck");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, &Default::default()).unwrap()
    }

    fn deployment(kind: GuestType) -> Deployment {
        Deployment {
            id: crate::domain::DeploymentId("abc234".into()),
            name: "shop".into(),
            repo: "https://git.example.com/shop.git".into(),
            framework: "Flask".into(),
            guest_type: kind,
            cores: 2,
            memory_mib: 2048,
            disk_gib: 12,
            vmid: Some(10042),
            ..Deployment::default()
        }
    }

    fn input<'a>(d: &'a Deployment, choices: &'a Choices) -> GuestInput<'a> {
        GuestInput {
            deployment: d,
            node: "pve1",
            static_ip: None,
            public_key: "ssh-ed25519 AAAA proxdeck\n",
            choices,
            identity: None,
        }
    }

    #[test]
    fn strict_mode_refuses_unknown_flags() {
        let err = render_main_tf("{{nope}}", &RenderFlags::default()).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn text_is_not_html_escaped() {
        let out = render_main_tf("a = \"<>&\" {{static_ip}}", &RenderFlags::default()).unwrap();
        assert_eq!(out, "a = \"<>&\" false");
    }

    #[test]
    fn user_templates_dir_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lxc")).unwrap();
        std::fs::write(dir.path().join("lxc/main.tf.hbs"), "# mine").unwrap();
        assert_eq!(
            load_template(GuestType::Lxc, Some(dir.path())).unwrap(),
            "# mine"
        );
        let err = load_template(GuestType::Vm, Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("vm/main.tf.hbs"), "{err}");
        assert!(
            load_template(GuestType::Vm, None)
                .unwrap()
                .contains("proxmox_virtual_environment_vm")
        );
    }

    #[test]
    fn vars_follow_the_guest_type() {
        let c = config(
            "[network]\npool = \"10.0.0.0/24\"\ngateway = \"10.0.0.1\"\n[guest]\nvlan = 7\n\
             [vm]\ntemplate_vmid = 9000\nuser = \"debian\"\nclone = \"linked\"",
        );
        let choices = Choices::default();
        let d = deployment(GuestType::Lxc);
        let mut i = input(&d, &choices);
        i.static_ip = Some("10.0.0.5".parse().unwrap());
        let GuestVars::Lxc(v) = guest_vars(&c, &i).unwrap() else {
            panic!("not lxc")
        };
        assert_eq!(v.vm_id, Some(10042));
        assert_eq!(v.ipv4_address, "10.0.0.5/24");
        assert_eq!(v.ipv4_gateway.as_deref(), Some("10.0.0.1"));
        assert_eq!(v.tags, ["proxdeck", "flask"]);
        // A deploy's guest carries its identity; a workspace for the user does not.
        let me = Identity {
            deployment: d.id.clone(),
            installation: "abcd2345".into(),
        };
        let mut marked = i.clone();
        marked.identity = Some(&me);
        let GuestVars::Lxc(m) = guest_vars(&c, &marked).unwrap() else {
            panic!("not lxc")
        };
        assert_eq!(
            m.tags,
            [
                "proxdeck",
                "flask",
                "proxdeck-id-abc234",
                "proxdeck-of-abcd2345"
            ]
        );
        assert!(
            m.description
                .ends_with("\nproxdeck-id: abc234\nproxdeck-installation: abcd2345"),
            "{}",
            m.description
        );
        assert_eq!(
            crate::engine::identity::read_mark(&m.tags, Some(&m.description))
                .map(|mark| mark.deployment),
            Some(d.id.clone())
        );
        assert_eq!(v.ssh_public_key, "ssh-ed25519 AAAA proxdeck");
        assert_eq!(
            v.flags(),
            RenderFlags {
                static_ip: true,
                vlan: true,
                vm_id: true,
                full_clone: false,
            }
        );

        let d = deployment(GuestType::Vm);
        let GuestVars::Vm(v) = guest_vars(&c, &input(&d, &choices)).unwrap() else {
            panic!("not vm")
        };
        assert_eq!(v.template_vmid, 9000);
        assert_eq!(v.template_node, "pve1");
        assert!(!v.full_clone);
        assert_eq!(v.ci_user, "debian");
        assert_eq!(v.ipv4_address, "dhcp");
        assert_eq!(v.ipv4_gateway, None);
        assert_eq!(v.agent_timeout, "300s");
        // A user given at deploy time is the cloud-init user too.
        let mut d2 = d.clone();
        d2.ssh_user = Some("ops".into());
        let GuestVars::Vm(v) = guest_vars(&c, &input(&d2, &choices)).unwrap() else {
            panic!("not vm")
        };
        assert_eq!(v.ci_user, "ops");
    }

    #[test]
    fn missing_or_wrong_choices_name_the_setting() {
        let c = config("");
        let choices = Choices::default();
        let d = deployment(GuestType::Vm);
        let err = guest_vars(&c, &input(&d, &choices)).unwrap_err();
        assert!(err.to_string().starts_with("vm.template_vmid:"), "{err}");

        let d = deployment(GuestType::Lxc);
        let bad = Choices {
            os_template: Some("local:iso/x.iso".into()),
        };
        let err = guest_vars(&c, &input(&d, &bad)).unwrap_err();
        assert!(err.to_string().starts_with("os-template:"), "{err}");
        let good = Choices {
            os_template: Some("nfs:vztmpl/alpine-3.20-default_20240908_amd64.tar.xz".into()),
        };
        let GuestVars::Lxc(v) = guest_vars(&c, &input(&d, &good)).unwrap() else {
            panic!("not lxc")
        };
        assert_eq!(
            v.os_template,
            "nfs:vztmpl/alpine-3.20-default_20240908_amd64.tar.xz"
        );
        for t in [
            "local:vztmpl/a b",
            "local:vztmpl/",
            ":vztmpl/x",
            "local:vztmpl/x\"y",
        ] {
            assert!(validate_os_template(t).is_err(), "{t}");
        }
    }

    #[test]
    fn choices_round_trip_and_vanish_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Choices::load(dir.path()).unwrap(), Choices::default());
        let c = Choices {
            os_template: Some("local:vztmpl/x.tar.zst".into()),
        };
        c.save(dir.path()).unwrap();
        assert_eq!(Choices::load(dir.path()).unwrap(), c);
        Choices::default().save(dir.path()).unwrap();
        assert!(!dir.path().join(CHOICES).exists());
    }

    #[test]
    fn the_backend_file_follows_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let backend = BackendConfig {
            kind: "pg".into(),
            config: [("schema_name".to_string(), "p_{id}".to_string())].into(),
            env: Default::default(),
        };
        write_backend(dir.path(), Some(&backend)).unwrap();
        let text = std::fs::read_to_string(dir.path().join(BACKEND_TF)).unwrap();
        assert!(text.contains("backend \"pg\" {}"), "{text}");
        // The settings are never written into the workspace.
        assert!(!text.contains("p_{id}"), "{text}");
        write_backend(dir.path(), None).unwrap();
        assert!(!dir.path().join(BACKEND_TF).exists());
        write_backend(dir.path(), None).unwrap();
    }
}
