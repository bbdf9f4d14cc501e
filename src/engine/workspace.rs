//! The per-deployment Terraform workspace: `main.tf` rendered from a Handlebars template
//! (built in, or the user's own from `terraform.templates_dir`) and `terraform.tfvars.json`
//! with every value.
//!
//! The template sees only structural choices (`static_ip`, `vlan`, `vm_id`, ...), never a user
//! value: values travel as Terraform variables in JSON, so nothing a user typed is ever spliced
//! into HCL text. Credentials are in neither file; they reach terraform through its environment.

use crate::domain::GuestType;
use handlebars::Handlebars;
use serde::Serialize;
use std::path::{Path, PathBuf};

const BUILTIN_LXC: &str = include_str!("../../terraform/lxc/main.tf.hbs");

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(
        "no built-in Terraform template for {0} guests yet; set terraform.templates_dir to a folder with {0}/main.tf.hbs"
    )]
    NoBuiltin(GuestType),
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
}

/// Structural choices a template may branch on. Values live in [`LxcVars`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RenderFlags {
    /// A static address from the pool (else DHCP).
    pub static_ip: bool,
    /// The guest's NIC carries a VLAN tag.
    pub vlan: bool,
    /// proxdeck chose the vmid (else Proxmox picks the next free one).
    pub vm_id: bool,
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
        }
    }
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
    match kind {
        GuestType::Lxc => Ok(BUILTIN_LXC.to_string()),
        GuestType::Vm => Err(WorkspaceError::NoBuiltin(kind)),
    }
}

/// Renders `main.tf`. Strict mode: a template naming a flag that does not exist fails loudly.
pub fn render_main_tf(template: &str, flags: &RenderFlags) -> Result<String, WorkspaceError> {
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
    let main = dir.join("main.tf");
    std::fs::write(&main, main_tf).map_err(werr(&main))?;
    let tfvars = dir.join("terraform.tfvars.json");
    let json = serde_json::to_string_pretty(vars).map_err(|e| WorkspaceError::Render {
        name: "terraform.tfvars.json".into(),
        message: e.to_string(),
    })?;
    std::fs::write(&tfvars, json + "\n").map_err(werr(&tfvars))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
