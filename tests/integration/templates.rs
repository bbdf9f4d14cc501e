//! The built-in Terraform templates, rendered for every variant a deploy can produce (LXC and
//! VM × static address or DHCP × VLAN or not × vmid given or not, with the optional values set
//! or left out) through the engine's own builder (`workspace::guest_vars`), and checked with
//! the real `terraform fmt -check`, against the bpg/proxmox schema fixture
//! (`tests/support/schema.rs`) and against their `terraform.tfvars.json`. Two typical variants
//! are compared with golden files (`tests/fixtures/golden/terraform/`; regenerate with
//! `PROXDECK_UPDATE_GOLDEN=1`).

use crate::support::parts::{Part, skip_without};
use crate::support::schema::{Checker, Config};
use proxdeck::config::Config as ProxdeckConfig;
use proxdeck::domain::{Deployment, DeploymentId, GuestType};
use proxdeck::engine::identity::{Identity, read_mark};
use proxdeck::engine::workspace::{
    self, Choices, GuestInput, GuestVars, RenderFlags, load_template, render_main_tf,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const CONTAINER: &str = "proxmox_virtual_environment_container";
const VM: &str = "proxmox_virtual_environment_vm";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB9pQ0pd5n3Yk0ZqW8wq7m3K0z9x1v2ZkP4l8m7Yc1dE proxdeck@test\n";

/// One rendered variant.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Variant {
    kind: GuestType,
    static_ip: bool,
    vlan: bool,
    vm_id: bool,
    /// VMs only: a full clone (else linked).
    full_clone: bool,
}

impl Variant {
    fn all() -> Vec<Variant> {
        let mut out = Vec::new();
        for kind in [GuestType::Lxc, GuestType::Vm] {
            let combinations = if kind == GuestType::Vm { 16 } else { 8 };
            for bits in 0..combinations {
                out.push(Variant {
                    kind,
                    static_ip: bits & 1 != 0,
                    vlan: bits & 2 != 0,
                    vm_id: bits & 4 != 0,
                    full_clone: bits & 8 != 0,
                });
            }
        }
        out
    }

    fn flags(&self) -> RenderFlags {
        RenderFlags {
            static_ip: self.static_ip,
            vlan: self.vlan,
            vm_id: self.vm_id,
            full_clone: self.full_clone,
        }
    }

    /// The config a user of this variant would have: distinctive values everywhere, so a
    /// value that leaked into HCL text would be found.
    fn config(&self) -> ProxdeckConfig {
        let mut text = String::from(
            "[guest]\ndatastore = \"tank-ssd7\"\nbridge = \"vmbr42\"\nswap_mib = 768\n\
             os_template = \"nas9:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\"\n\
             os_type = \"devuan\"\n\
             [vm]\ntemplate_vmid = 9123\ntemplate_node = \"pve-tpl3\"\n\
             disk_interface = \"sata3\"\nuser = \"deployer7\"\ncpu_type = \"Skylake-Server-v4\"\n\
             cloudinit_datastore = \"ci-store5\"\nagent_timeout_secs = 240\n",
        );
        if self.vlan {
            text = text.replace("swap_mib = 768\n", "swap_mib = 768\nvlan = 3017\n");
        }
        if !self.full_clone {
            text = text.replace("[vm]\n", "[vm]\nclone = \"linked\"\n");
        }
        if self.static_ip {
            text.push_str(
                "[network]\npool = \"10.77.30.0/24\"\nprefix = 24\ngateway = \"10.77.30.254\"\n",
            );
        }
        ProxdeckConfig::parse(&text, &Default::default()).expect("test config parses")
    }

    fn deployment(&self) -> Deployment {
        Deployment {
            id: DeploymentId("k3x9ta".into()),
            name: "shop-api-7f3".into(),
            repo: "https://git.example.com/acme/shop.git".into(),
            framework: "flask".into(),
            guest_type: self.kind,
            cores: 3,
            memory_mib: 1536,
            disk_gib: 14,
            vmid: self.vm_id.then_some(10042),
            ..Deployment::default()
        }
    }

    /// The variables as the engine builds them for this variant.
    fn vars(&self) -> GuestVars {
        let config = self.config();
        let d = self.deployment();
        let choices = Choices::default();
        let identity = Identity {
            deployment: d.id.clone(),
            installation: "inst7q2w".into(),
        };
        let vars = workspace::guest_vars(
            &config,
            &GuestInput {
                deployment: &d,
                node: "pve-node9",
                static_ip: self.static_ip.then(|| "10.77.30.21".parse().unwrap()),
                public_key: KEY,
                choices: &choices,
                identity: Some(&identity),
            },
        )
        .unwrap_or_else(|e| panic!("{self:?}: {e}"));
        assert_eq!(vars.flags(), self.flags(), "{self:?}");
        vars
    }

    fn render(&self) -> String {
        let template = load_template(self.kind, None).expect("built-in template");
        render_main_tf(&template, &self.flags()).unwrap_or_else(|e| panic!("{self:?}: {e}"))
    }
}

/// A terraform command with its own empty CLI config (no warnings about a missing one).
fn terraform_cmd(dir: &Path) -> Command {
    let rc = dir.join("cli.tfrc");
    std::fs::write(&rc, "").unwrap();
    let mut cmd = Command::new("terraform");
    cmd.current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", &rc)
        .env("TF_IN_AUTOMATION", "1")
        .env_remove("TF_LOG");
    cmd
}

fn fmt_check(dir: &Path, file: &str, what: &str) {
    let out = terraform_cmd(dir)
        .args(["fmt", "-check", "-diff", file])
        .output()
        .expect("run terraform fmt");
    assert!(
        out.status.success(),
        "terraform fmt -check failed for {what}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "terraform fmt warned for {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The schema checker, with terraform's function signatures when terraform is here.
fn checker(with_terraform: bool) -> Checker {
    let checker = Checker::bpg();
    if !with_terraform {
        return checker;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = terraform_cmd(dir.path())
        .args(["metadata", "functions", "-json"])
        .output()
        .expect("run terraform metadata functions");
    assert!(
        out.status.success(),
        "terraform metadata functions -json failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    checker
        .with_functions(&String::from_utf8_lossy(&out.stdout))
        .expect("terraform's function metadata")
}

#[test]
fn every_variant_renders_cleanly_without_user_values() {
    for v in Variant::all() {
        let text = v.render();
        assert!(!text.contains("{{"), "{v:?}: Handlebars left over:\n{text}");
        assert!(
            !text.contains("\n\n\n"),
            "{v:?}: double blank line:\n{text}"
        );
        assert!(text.ends_with("}\n"), "{v:?}: ends oddly:\n{text}");
        // Credentials never belong in the file.
        for secret in ["api_token", "password", "PVEAPIToken", "endpoint ="] {
            assert!(!text.contains(secret), "{v:?}: mentions {secret}:\n{text}");
        }
        // No value the user (or the config) chose is spliced into HCL: each one lives in the
        // tfvars only.
        let tfvars = serde_json::to_value(v.vars()).unwrap();
        for (name, value) in tfvars.as_object().unwrap() {
            let strings: Vec<String> = match value {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                Value::Number(n) => vec![n.to_string()],
                _ => vec![],
            };
            for s in strings {
                // Short numbers ("3"), the tag "proxdeck" and the keyword "dhcp" occur in
                // comments and descriptions.
                if s.len() < 4 || s == "proxdeck" || s == "dhcp" {
                    continue;
                }
                assert!(
                    !text.contains(&s),
                    "{v:?}: the value of `{name}` ({s:?}) is written into main.tf:\n{text}"
                );
            }
        }
    }
}

/// Every guest a deploy creates carries its deployment's identity, as tags and description
/// lines, through `terraform.tfvars.json` into attributes the bpg schema has; and the id
/// adoption imports with is the schema's import id.
#[test]
fn every_variant_marks_its_guest_with_its_deployment() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bpg-proxmox-schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for v in Variant::all() {
        let kind = match v.kind {
            GuestType::Lxc => CONTAINER,
            GuestType::Vm => VM,
        };
        let tfvars = serde_json::to_value(v.vars()).unwrap();
        let tags: Vec<String> = tfvars["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        assert!(
            tags.contains(&"proxdeck-id-k3x9ta".to_string())
                && tags.contains(&"proxdeck-of-inst7q2w".to_string()),
            "{v:?}: {tags:?}"
        );
        // Proxmox lowercases tags; these are lowercase already, so nothing drifts.
        assert!(tags.iter().all(|t| *t == t.to_lowercase()), "{tags:?}");
        let description = tfvars["description"].as_str().unwrap();
        let mark = read_mark(&[], Some(description)).expect("a mark in the description");
        assert_eq!(mark.deployment.0, "k3x9ta");
        assert_eq!(mark.installation.as_deref(), Some("inst7q2w"));
        // The values reach the guest resource.
        let text = v.render();
        assert!(
            text.contains("tags            = [for tag in var.tags : lower(tag)]")
                || text.contains("tags          = [for tag in var.tags : lower(tag)]"),
            "{v:?}:\n{text}"
        );
        assert!(text.contains("= var.description"), "{v:?}:\n{text}");
        let resource = &schema["resources"][kind];
        for attribute in ["tags", "description"] {
            assert!(
                resource["attributes"][attribute].is_object(),
                "{kind} has no {attribute} in the schema"
            );
        }
        let import_id = resource["import_id"].as_str().unwrap();
        assert_eq!(
            import_id
                .replace("<node_name>", "pve-node9")
                .replace("<vm_id>", "10042"),
            proxdeck::engine::identity::terraform_import_id("pve-node9", 10042),
            "{kind}"
        );
    }
}

#[test]
fn every_variant_passes_terraform_fmt() {
    if skip_without("every_variant_passes_terraform_fmt", &[Part::Terraform]) {
        return;
    }
    for v in Variant::all() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf"), v.render()).unwrap();
        fmt_check(dir.path(), "main.tf", &format!("{v:?}"));
    }
}

#[test]
fn every_variant_matches_the_bpg_schema_and_its_tfvars() {
    let with_terraform = !skip_without(
        "every_variant_matches_the_bpg_schema_and_its_tfvars (function signatures)",
        &[Part::Terraform],
    );
    let checker = checker(with_terraform);
    for v in Variant::all() {
        let text = v.render();
        let config = checker
            .check(&text)
            .unwrap_or_else(|p| panic!("{v:?}: {p}\n{text}"));
        match v.kind {
            GuestType::Lxc => check_lxc_structure(&v, &config, &text),
            GuestType::Vm => check_vm_structure(&v, &config, &text),
        }
        // Every key of the tfvars is declared, with the declared type; every variable without
        // a default is set.
        let tfvars = serde_json::to_value(v.vars()).unwrap();
        config
            .check_tfvars(&tfvars)
            .unwrap_or_else(|p| panic!("{v:?}: {p}\n{tfvars:#}\n{text}"));
    }
    // The checks can fail: a misspelt attribute, a missing variable and a tfvars value of the
    // wrong type are each reported.
    let vm = Variant::all()[8];
    let text = vm.render();
    let broken = text.replace("stop_on_destroy = true", "stop_on_destroy_ = true");
    assert!(
        checker
            .check(&broken)
            .unwrap_err()
            .mentions("stop_on_destroy_")
    );
    let config = checker.check(&text).unwrap();
    let mut tfvars = serde_json::to_value(vm.vars()).unwrap();
    tfvars["cores"] = Value::String("three".into());
    tfvars.as_object_mut().unwrap().remove("ci_user");
    let problems = config.check_tfvars(&tfvars).unwrap_err();
    assert!(
        problems.mentions("cores") && problems.mentions("ci_user"),
        "{problems}"
    );
}

fn blocks_and_attributes<'a>(
    config: &'a Config,
    kind: &str,
    v: &Variant,
    text: &str,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let r = config
        .resource(kind, "app")
        .unwrap_or_else(|| panic!("{v:?}: no {kind}.app:\n{text}"));
    let top = r.body.attributes().map(|a| a.key.as_str()).collect();
    let blocks = r.body.blocks().map(|b| b.identifier.as_str()).collect();
    (top, blocks)
}

/// What the schema cannot say: the blocks the docs require, the flags really switch what
/// they should, the outputs proxdeck reads exist.
fn check_lxc_structure(v: &Variant, config: &Config, text: &str) {
    let (top, blocks) = blocks_and_attributes(config, CONTAINER, v, text);
    for b in [
        "features",
        "cpu",
        "memory",
        "disk",
        "network_interface",
        "operating_system", // the docs require it without `clone`; the schema does not
        "initialization",
        "wait_for_ip",
    ] {
        assert!(blocks.contains(&b), "{v:?}: no `{b}` block:\n{text}");
    }
    for a in [
        "node_name",
        "unprivileged",
        "started",
        "start_on_boot",
        "tags",
        "description",
    ] {
        assert!(top.contains(&a), "{v:?}: no `{a}`:\n{text}");
    }
    check_common(v, &top, config, text);
    assert!(
        text.contains("datastore_id = var.datastore_id"),
        "{v:?}:\n{text}"
    );
    assert!(text.contains("nesting = true"), "{v:?}:\n{text}");
}

fn check_vm_structure(v: &Variant, config: &Config, text: &str) {
    let (top, blocks) = blocks_and_attributes(config, VM, v, text);
    for b in [
        "clone",
        "agent",
        "cpu",
        "memory",
        "disk",
        "network_device",
        "initialization",
    ] {
        assert!(blocks.contains(&b), "{v:?}: no `{b}` block:\n{text}");
    }
    for a in [
        "node_name",
        "name",
        "started",
        "on_boot",
        "stop_on_destroy",
        "tags",
        "description",
    ] {
        assert!(top.contains(&a), "{v:?}: no `{a}`:\n{text}");
    }
    check_common(v, &top, config, text);
    // Compared with spaces collapsed: `terraform fmt` aligns the `=` of a block.
    let flat = text
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let has = |needle: &str| flat.contains(needle);
    // The pitfalls: explicit datastores (disk and cloud-init), the template's own disk slot,
    // the template's node for cross-node clones, the agent with wait_for_ip and a timeout.
    for needle in [
        "datastore_id = var.datastore_id",
        "datastore_id = var.cloudinit_datastore_id",
        "interface = var.disk_interface",
        "node_name = var.template_node",
        "full = var.full_clone",
        "enabled = true",
        "timeout = var.agent_timeout",
        "wait_for_ip {",
        "username = var.ci_user",
        "stop_on_destroy = true",
    ] {
        assert!(has(needle), "{v:?}: no `{needle}`:\n{text}");
    }
    // A full clone lands on the deployment's datastore (a linked one cannot move).
    let clone = &flat[flat.find("clone {").unwrap()..];
    let clone = &clone[..clone.find('}').unwrap()];
    assert_eq!(
        clone.contains("datastore_id = var.datastore_id"),
        v.full_clone,
        "{v:?}: clone block: {clone}"
    );
    assert!(
        config.outputs.contains("ipv4_addresses"),
        "{v:?}: no ipv4_addresses output"
    );
    assert!(
        has("!startswith(ip, \"127.\")") && has("!startswith(ip, \"169.254.\")"),
        "{v:?}: loopback and link-local are not filtered:\n{text}"
    );
}

fn check_common(v: &Variant, top: &[&str], config: &Config, text: &str) {
    assert_eq!(top.contains(&"vm_id"), v.vm_id, "{v:?}: vm_id:\n{text}");
    let has = |needle: &str| text.contains(needle);
    assert_eq!(has("= var.vlan_id"), v.vlan, "{v:?}: vlan_id:\n{text}");
    assert_eq!(
        has("= var.ipv4_gateway"),
        v.static_ip,
        "{v:?}: gateway:\n{text}"
    );
    for out in ["vmid", "ipv4"] {
        assert!(config.outputs.contains(out), "{v:?}: no output {out}");
    }
}

/// The workspace as the engine writes it is what terraform reads, for both guest types:
/// `write_guest_workspace` output parses, its tfvars fit, and a configured backend lands in
/// `backend.tf` (formatted, settings not in it).
#[test]
fn workspace_files_fit_together_and_carry_the_backend() {
    for v in [
        Variant {
            kind: GuestType::Lxc,
            static_ip: true,
            vlan: false,
            vm_id: true,
            full_clone: false,
        },
        Variant {
            kind: GuestType::Vm,
            static_ip: false,
            vlan: true,
            vm_id: true,
            full_clone: true,
        },
    ] {
        let mut config = v.config();
        config.terraform.backend = Some(proxdeck::config::BackendConfig {
            kind: "pg".into(),
            config: [("schema_name".to_string(), "pd_{id}_secret".to_string())].into(),
            env: Default::default(),
        });
        let dir = tempfile::tempdir().unwrap();
        workspace::write_guest_workspace(&config, dir.path(), &v.vars()).unwrap();
        let main = std::fs::read_to_string(dir.path().join("main.tf")).unwrap();
        let tfvars: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("terraform.tfvars.json")).unwrap(),
        )
        .unwrap();
        Checker::bpg()
            .assert_valid(&main)
            .check_tfvars(&tfvars)
            .unwrap_or_else(|p| panic!("{v:?}: {p}"));
        let backend = std::fs::read_to_string(dir.path().join("backend.tf")).unwrap();
        assert!(backend.contains("backend \"pg\" {}"), "{backend}");
        assert!(!backend.contains("secret"), "{backend}");
        if !skip_without("backend.tf fmt", &[Part::Terraform]) {
            fmt_check(dir.path(), "backend.tf", "backend.tf");
        }
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/terraform")
}

/// Compares `actual` with the golden file, or rewrites it with `PROXDECK_UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("PROXDECK_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with PROXDECK_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from what is rendered now (PROXDECK_UPDATE_GOLDEN=1 rewrites it after review):\n--- rendered ---\n{actual}",
        path.display()
    );
}

/// Two typical deployments: a container with a static address on a VLAN, and a VM on DHCP.
#[test]
fn typical_variants_match_their_golden_files() {
    for (v, name) in [
        (
            Variant {
                kind: GuestType::Lxc,
                static_ip: true,
                vlan: true,
                vm_id: true,
                full_clone: false,
            },
            "lxc-static-vlan",
        ),
        (
            Variant {
                kind: GuestType::Vm,
                static_ip: false,
                vlan: false,
                vm_id: true,
                full_clone: true,
            },
            "vm-dhcp",
        ),
    ] {
        golden(&format!("{name}.main.tf"), &v.render());
        let tfvars = serde_json::to_string_pretty(&v.vars()).unwrap() + "\n";
        golden(&format!("{name}.tfvars.json"), &tfvars);
    }
}
