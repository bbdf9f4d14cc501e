//! The built-in Terraform templates, rendered for every flag combination and checked with real
//! `terraform fmt` and against the bpg/proxmox schema fixture (see `tests/support/schema.rs`).

use crate::support::schema::{Checker, Config};
use proxdeck::domain::GuestType;
use proxdeck::engine::workspace::{LxcVars, RenderFlags, load_template, render_main_tf};
use std::path::{Path, PathBuf};
use std::process::Command;

const CONTAINER: &str = "proxmox_virtual_environment_container";

/// All 2^3 combinations of the structural flags.
fn all_flags() -> Vec<RenderFlags> {
    (0..8u8)
        .map(|bits| RenderFlags {
            static_ip: bits & 1 != 0,
            vlan: bits & 2 != 0,
            vm_id: bits & 4 != 0,
        })
        .collect()
}

fn render_lxc(flags: &RenderFlags) -> String {
    let template = load_template(GuestType::Lxc, None).expect("built-in LXC template");
    render_main_tf(&template, flags).unwrap_or_else(|e| panic!("{flags:?}: {e}"))
}

/// A typical LXC deployment, static or DHCP, with or without VLAN and vmid.
fn lxc_vars(static_ip: bool, vlan: bool, vm_id: bool) -> LxcVars {
    LxcVars {
        node_name: "pve".into(),
        vm_id: vm_id.then_some(4242),
        hostname: "shop-api".into(),
        description: "proxdeck: shop-api (flask) from https://git.example.com/shop.git".into(),
        tags: vec!["proxdeck".into(), "flask".into()],
        cores: 2,
        memory_mib: 1024,
        swap_mib: 512,
        disk_gib: 8,
        datastore_id: "local-lvm".into(),
        os_template: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
        os_type: "debian".into(),
        bridge: "vmbr0".into(),
        vlan_id: vlan.then_some(30),
        ipv4_address: if static_ip {
            "10.0.30.20/24".into()
        } else {
            "dhcp".into()
        },
        ipv4_gateway: static_ip.then(|| "10.0.30.1".into()),
        ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB9pQ0pd5n3Yk0ZqW8wq7m3K0z9x1v2ZkP4l8m7Yc1dE proxdeck\n".into(),
    }
}

/// `terraform` on PATH, or None (skip) outside CI. In CI a missing terraform is a failure.
fn terraform() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("terraform"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("terraform is not on PATH, and CI=true: install terraform >= 1.5 on the runner");
        }
        eprintln!("SKIP: terraform is not on PATH (set CI=true to make this a failure)");
    }
    found
}

/// A terraform command with its own empty CLI config (no warnings about a missing one).
fn terraform_cmd(bin: &Path, dir: &Path) -> Command {
    let rc = dir.join("cli.tfrc");
    std::fs::write(&rc, "").unwrap();
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", &rc)
        .env("TF_IN_AUTOMATION", "1")
        .env_remove("TF_LOG");
    cmd
}

/// The schema checker, with terraform's function signatures when terraform is here.
fn checker(terraform: Option<&Path>) -> Checker {
    let checker = Checker::bpg();
    let Some(bin) = terraform else {
        return checker;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = terraform_cmd(bin, dir.path())
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
fn lxc_templates_render_without_leftovers() {
    for flags in all_flags() {
        let text = render_lxc(&flags);
        assert!(
            !text.contains("{{"),
            "{flags:?}: Handlebars left over:\n{text}"
        );
        assert!(
            !text.contains("\n\n\n"),
            "{flags:?}: double blank line:\n{text}"
        );
        assert!(text.ends_with("}\n"), "{flags:?}: ends oddly:\n{text}");
        // Credentials never belong in the file.
        for secret in ["api_token", "password", "PVEAPIToken", "endpoint ="] {
            assert!(
                !text.contains(secret),
                "{flags:?}: mentions {secret}:\n{text}"
            );
        }
    }
}

#[test]
fn lxc_templates_pass_terraform_fmt() {
    let Some(bin) = terraform() else { return };
    for flags in all_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf"), render_lxc(&flags)).unwrap();
        let out = terraform_cmd(&bin, dir.path())
            .args(["fmt", "-check", "-diff", "main.tf"])
            .output()
            .expect("run terraform fmt");
        assert!(
            out.status.success(),
            "terraform fmt -check failed for {flags:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "terraform fmt warned for {flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn lxc_templates_match_the_bpg_schema() {
    let checker = checker(terraform().as_deref());
    for flags in all_flags() {
        let text = render_lxc(&flags);
        let config = checker
            .check(&text)
            .unwrap_or_else(|p| panic!("{flags:?}: {p}\n{text}"));
        check_lxc_structure(&flags, &config, &text);
    }
}

/// What the schema cannot say: the blocks the docs require, the flags really switch what
/// they should, the outputs proxdeck reads exist.
fn check_lxc_structure(flags: &RenderFlags, config: &Config, text: &str) {
    let ct = config
        .resource(CONTAINER, "app")
        .unwrap_or_else(|| panic!("{flags:?}: no {CONTAINER}.app:\n{text}"));
    let top: Vec<&str> = ct.body.attributes().map(|a| a.key.as_str()).collect();
    let blocks: Vec<&str> = ct.body.blocks().map(|b| b.identifier.as_str()).collect();
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
        assert!(blocks.contains(&b), "{flags:?}: no `{b}` block:\n{text}");
    }
    for a in [
        "node_name",
        "unprivileged",
        "started",
        "start_on_boot",
        "tags",
    ] {
        assert!(top.contains(&a), "{flags:?}: no `{a}`:\n{text}");
    }
    assert_eq!(
        top.contains(&"vm_id"),
        flags.vm_id,
        "{flags:?}: vm_id:\n{text}"
    );
    let has = |needle: &str| text.contains(needle);
    assert_eq!(
        has("= var.vlan_id"),
        flags.vlan,
        "{flags:?}: vlan_id:\n{text}"
    );
    assert_eq!(
        has("= var.ipv4_gateway"),
        flags.static_ip,
        "{flags:?}: gateway:\n{text}"
    );
    for out in ["vmid", "ipv4"] {
        assert!(config.outputs.contains(out), "{flags:?}: no output {out}");
    }
}

#[test]
fn lxc_tfvars_match_the_declared_variables() {
    let checker = Checker::bpg();
    for static_ip in [false, true] {
        for vlan in [false, true] {
            for vm_id in [false, true] {
                let vars = lxc_vars(static_ip, vlan, vm_id);
                let flags = vars.flags();
                assert_eq!(
                    flags,
                    RenderFlags {
                        static_ip,
                        vlan,
                        vm_id
                    }
                );
                let text = render_lxc(&flags);
                let config = checker.assert_valid(&text);
                let json = serde_json::to_value(&vars).unwrap();
                config
                    .check_tfvars(&json)
                    .unwrap_or_else(|p| panic!("{flags:?}: {p}\n{json:#}\n{text}"));
            }
        }
    }
}

/// The workspace as the engine writes it is what terraform reads: `write_workspace` output
/// parses, and its tfvars fit.
#[test]
fn lxc_workspace_files_fit_together() {
    let vars = lxc_vars(true, false, true);
    let text = render_lxc(&vars.flags());
    let dir = tempfile::tempdir().unwrap();
    proxdeck::engine::workspace::write_workspace(dir.path(), &text, &vars).unwrap();
    let main = std::fs::read_to_string(dir.path().join("main.tf")).unwrap();
    let tfvars: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("terraform.tfvars.json")).unwrap(),
    )
    .unwrap();
    Checker::bpg()
        .assert_valid(&main)
        .check_tfvars(&tfvars)
        .unwrap_or_else(|p| panic!("{p}"));
}
