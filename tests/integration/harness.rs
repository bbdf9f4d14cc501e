//! Each harness piece on its own: fakepve over verified TLS with the token, an sshd test host
//! that lets a key in, a git daemon that serves a clone, and the stand-in LXC template applied
//! and destroyed against the fake by the real terraform, credentials only in its environment.

use crate::support::fakepve::{FakePve, NODE, OS_TEMPLATE, api_get};
use crate::support::git::GitServer;
use crate::support::net::{loopback, random_hex};
use crate::support::parts::{Part, skip_without, support_dir, templates_dir, test_python};
use crate::support::process::{run_ok, run_with_timeout};
use crate::support::proxdeck::files_containing;
use crate::support::sshd::SshHost;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn fakepve_answers_version_over_verified_tls_with_the_token() {
    if skip_without(
        "fakepve_answers_version_over_verified_tls_with_the_token",
        &[Part::Fakepve],
    ) {
        return;
    }
    let pve = FakePve::start(loopback()).expect("start fakepve");
    assert!(pve.url().starts_with(&format!("https://{}:", pve.host())));
    let version = pve.get("/version").expect("GET /version");
    assert!(version.get("version").is_some(), "{version}");
    assert!(pve.token().starts_with("root@pam!ci="));

    // A wrong secret is refused.
    let url = format!("{}/api2/json/version", pve.url());
    let (status, _) = api_get(&url, &pve.ca_file(), "root@pam!ci=wrong").unwrap();
    assert_eq!(status, 401);

    // TLS is verified for real: another fake's certificate is not this one's CA.
    let other = FakePve::start(loopback()).expect("start a second fakepve");
    let err = api_get(&url, &other.ca_file(), &pve.token()).unwrap_err();
    assert!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "{err:#}"
    );

    // The OS template the tests' config names exists, and the node starts empty.
    let content = pve
        .get(&format!("/nodes/{NODE}/storage/local/content"))
        .unwrap();
    assert!(content.to_string().contains(OS_TEMPLATE), "{content}");
    assert!(pve.containers(NODE).unwrap().is_empty());
}

#[test]
fn sshd_test_host_lets_a_key_in() {
    if skip_without(
        "sshd_test_host_lets_a_key_in",
        &[Part::Sshd, Part::SshClient],
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // As with proxdeck: the key file appears only after sshd has started.
    let keys = work.path().join("data/keys");
    let host = SshHost::start(loopback(), &keys.join("id_ed25519.pub")).expect("start sshd");
    std::fs::create_dir_all(&keys).unwrap();
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(keys.join("id_ed25519")),
    )
    .unwrap();
    let marker = random_hex(16);
    let mut ssh = host.ssh_command(&keys.join("id_ed25519")).unwrap();
    ssh.arg(format!("echo ok-{marker}; id -un"));
    let done = run_with_timeout(&mut ssh, Duration::from_secs(30)).unwrap();
    assert!(
        done.success(),
        "ssh failed: {}\nsshd log:\n{}",
        done.describe(),
        host.log_tail()
    );
    assert!(
        done.stdout.contains(&format!("ok-{marker}")),
        "{}",
        done.describe()
    );
    assert!(done.stdout.contains("root"), "{}", done.describe());

    // Another key is refused.
    let other = work.path().join("other");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other),
    )
    .unwrap();
    let mut ssh = host.ssh_command(&other).unwrap();
    ssh.arg("true");
    let done = run_with_timeout(&mut ssh, Duration::from_secs(30)).unwrap();
    assert!(!done.success(), "a key not in AuthorizedKeysFile got in");
}

#[test]
fn git_daemon_serves_a_clone_of_the_flask_sample() {
    if skip_without(
        "git_daemon_serves_a_clone_of_the_flask_sample",
        &[Part::Git],
    ) {
        return;
    }
    let git = GitServer::start(loopback()).expect("start git daemon");
    let app = git.add_flask_app("flask-sample").unwrap();
    assert_eq!(
        app.git_url,
        format!("git://{}:{}/flask-sample.git", git.addr(), git.port())
    );
    let work = tempfile::tempdir().unwrap();
    for (url, dir) in [(&app.git_url, "via-git"), (&app.file_url, "via-file")] {
        let dest = work.path().join(dir);
        let done = run_with_timeout(
            Command::new("git")
                .args(["clone", "-q", "--branch", "main"])
                .arg(url)
                .arg(&dest)
                .env("GIT_TERMINAL_PROMPT", "0"),
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(
            done.success(),
            "clone {url}: {}\ndaemon: {}",
            done.describe(),
            git.log_tail()
        );
        let code = std::fs::read_to_string(dest.join("app.py")).unwrap();
        assert!(code.contains("app = Flask(__name__)"), "{code}");
        assert!(code.contains(&app.body), "{code}");
        let reqs = std::fs::read_to_string(dest.join("requirements.txt")).unwrap();
        assert!(reqs.contains("flask"));
    }
    let refs = run_ok(Command::new("git").arg("ls-remote").arg(&app.git_url)).unwrap();
    assert!(refs.stdout.contains("refs/heads/main"), "{}", refs.stdout);
    assert!(refs.stdout.contains("HEAD"), "{}", refs.stdout);
}

/// Renders the stand-in template as proxdeck does: Handlebars, strict, no escaping.
fn render(flags: &Value) -> String {
    let template = std::fs::read_to_string(templates_dir().join("lxc/main.tf.hbs")).unwrap();
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.render_template(&template, flags)
        .expect("render main.tf.hbs")
}

fn terraform(dir: &Path, pve: &FakePve, args: &[&str]) -> Command {
    let mut cmd = Command::new("terraform");
    cmd.current_dir(dir)
        .args(args)
        .env("TF_CLI_CONFIG_FILE", dir.join("cli.tfrc"))
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("NO_COLOR", "1")
        .env("PROXMOX_VE_ENDPOINT", pve.url())
        .env("PROXMOX_VE_API_TOKEN", pve.token())
        .env("PROXMOX_VE_INSECURE", "false")
        .env("SSL_CERT_FILE", pve.ca_file())
        .env("PROXDECK_TEST_SUPPORT", support_dir())
        .env("PROXDECK_TEST_PYTHON", test_python().unwrap());
    cmd
}

fn tf_ok(dir: &Path, pve: &FakePve, args: &[&str]) -> String {
    let done = run_with_timeout(&mut terraform(dir, pve, args), Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("terraform {args:?}: {e:#}"));
    assert!(
        done.success(),
        "terraform {args:?}: {}\nfakepve log:\n{}",
        done.describe(),
        pve.log_tail()
    );
    done.stdout
}

/// One apply + destroy of the stand-in with these flags and variables; returns the outputs.
fn apply_and_destroy(pve: &FakePve, flags: Value, vars: Value) -> Value {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let main_tf = render(&flags);
    assert!(!main_tf.contains("{{"), "unrendered handlebars:\n{main_tf}");
    std::fs::write(dir.join("main.tf"), &main_tf).unwrap();
    std::fs::write(
        dir.join("terraform.tfvars.json"),
        serde_json::to_string_pretty(&vars).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("cli.tfrc"), "").unwrap();
    tf_ok(dir, pve, &["fmt", "-check", "-diff", "main.tf"]);
    tf_ok(dir, pve, &["init", "-input=false", "-no-color"]);
    tf_ok(dir, pve, &["validate", "-no-color"]);
    let applied = tf_ok(
        dir,
        pve,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    assert!(applied.contains("pve_ct: created CT"), "{applied}");
    let outputs: Value =
        serde_json::from_str(&tf_ok(dir, pve, &["output", "-json", "-no-color"])).unwrap();
    let vmid = outputs["vmid"]["value"].as_u64().expect("vmid output");
    let ct = pve
        .container(NODE, vmid)
        .unwrap()
        .unwrap_or_else(|| panic!("CT {vmid} not in the fake after apply"));
    assert_eq!(ct["status"], "running", "{ct}");
    assert_eq!(ct["name"], vars["hostname"], "{ct}");
    let config = pve
        .get(&format!("/nodes/{NODE}/lxc/{vmid}/config"))
        .unwrap();
    let net0 = config["net0"].as_str().unwrap_or_default().to_string();
    assert!(
        net0.contains(&format!("ip={}", vars["ipv4_address"].as_str().unwrap())),
        "{config}"
    );
    assert_eq!(config["cores"], vars["cores"], "{config}");
    // Credentials went through the environment only: no file of the workspace holds them.
    let leaks = files_containing(dir, pve.secret());
    assert!(leaks.is_empty(), "the token secret is in {leaks:?}");

    let destroyed = tf_ok(
        dir,
        pve,
        &["destroy", "-auto-approve", "-input=false", "-no-color"],
    );
    assert!(destroyed.contains("pve_ct: deleted CT"), "{destroyed}");
    assert!(
        pve.container(NODE, vmid).unwrap().is_none(),
        "CT {vmid} still in the fake after destroy"
    );
    outputs
}

fn vars(hostname: &str, ipv4: &str) -> Value {
    json!({
        "node_name": NODE,
        "hostname": hostname,
        "description": "made by proxdeck's harness test",
        "tags": ["proxdeck", "test"],
        "cores": 2,
        "memory_mib": 512,
        "swap_mib": 256,
        "disk_gib": 4,
        "datastore_id": "local-lvm",
        "os_template": OS_TEMPLATE,
        "os_type": "debian",
        "bridge": "vmbr0",
        "ipv4_address": ipv4,
        "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBJ2w0Xh0S4gNn7y0u2dH7cVw0Zs2mG4v3dYqkH8y6hS test"
    })
}

#[test]
fn stand_in_template_applies_and_destroys_against_the_fake() {
    if skip_without(
        "stand_in_template_applies_and_destroys_against_the_fake",
        &[Part::Fakepve, Part::Terraform],
    ) {
        return;
    }
    let pve = FakePve::start(loopback()).expect("start fakepve");

    // A static address from the pool, vmid derived from the hostname.
    let guest = loopback();
    let mut static_vars = vars("harness-static", &format!("{guest}/8"));
    static_vars["ipv4_gateway"] = json!("127.0.0.1");
    let out = apply_and_destroy(
        &pve,
        json!({"static_ip": true, "vlan": false, "vm_id": false}),
        static_vars,
    );
    assert_eq!(out["ipv4"]["value"], json!(guest.to_string()), "{out}");
    let vmid = out["vmid"]["value"].as_u64().unwrap();
    assert!((200..900).contains(&vmid), "{out}");

    // DHCP, proxdeck's own vmid and a VLAN tag: no address in the outputs.
    let mut dhcp_vars = vars("harness-dhcp", "dhcp");
    dhcp_vars["vm_id"] = json!(4242);
    dhcp_vars["vlan_id"] = json!(30);
    let out = apply_and_destroy(
        &pve,
        json!({"static_ip": false, "vlan": true, "vm_id": true}),
        dhcp_vars,
    );
    assert_eq!(out["vmid"]["value"], json!(4242), "{out}");
    assert_eq!(out["ipv4"]["value"], Value::Null, "{out}");
}
