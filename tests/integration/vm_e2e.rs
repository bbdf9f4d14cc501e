//! `deploy --type vm` end to end through the built binary: the VM variables (`VmVars`) reach
//! the stand-in VM template (`tests/fixtures/terraform/vm`), which clones a cloud-init
//! template in fakepve through its API the way the built-in template asks the bpg provider
//! to (clone, cores, memory, cloud-init user and key, the disk grown on its own slot, agent), an
//! sshd on a loopback address plays the VM and is reached as the cloud-init user (`vm.user`),
//! a real Flask app is provisioned and answers; destroy deletes the VM.

use crate::support::fakepve::{FakePve, NODE};
use crate::support::git::GitServer;
use crate::support::net::{free_port_any, loopback, random_hex, wait_http_ok};
use crate::support::parts::{Part, skip_without, templates_dir};
use crate::support::process::Finished;
use crate::support::proxdeck::{AppGuard, Proxdeck, files_containing, write_private};
use crate::support::sshd::SshHost;
use serde_json::{Value, json};
use std::time::Duration;

const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);
const QUICK: Duration = Duration::from_secs(60);
const TEMPLATE_VMID: u64 = 9000;

fn json_of(done: &Finished, what: &str) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e})\n{}", done.describe()))
}

#[test]
fn vm_deploy_end_to_end() {
    if skip_without(
        "vm_deploy_end_to_end",
        &[
            Part::Fakepve,
            Part::Sshd,
            Part::Terraform,
            Part::Git,
            Part::GuestPython,
        ],
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-vm-e2e-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let data_dir = root.join("data");
    let app_root = root.join("apps");
    let name = format!("e2e-vm-{}", random_hex(6));
    let app = AppGuard::new(app_root.join(&name).join("run/app.pid"));

    let pve = FakePve::start(loopback()).expect("start fakepve");
    // The cloud-init template to clone: a small boot disk on scsi0, stopped, a template.
    pve.ctl(
        "add_guest",
        json!({
            "type": "qemu",
            "vmid": TEMPLATE_VMID,
            "node": NODE,
            "name": "debian-12-cloud",
            "status": "stopped",
            "template": true,
            "config": {"scsi0": format!("local-lvm:base-{TEMPLATE_VMID}-disk-0,size=2G")},
        }),
    )
    .expect("add the VM template");
    let guest = loopback();
    let ssh = SshHost::start(guest, &data_dir.join("keys/id_ed25519.pub")).expect("start sshd");
    let git = GitServer::start(loopback()).expect("start git daemon");
    let sample = git.add_flask_app("vm-sample").unwrap();
    let app_port = free_port_any().unwrap();

    let config = root.join("config.toml");
    write_private(
        &config,
        &format!(
            "[proxmox]\nendpoint = \"{url}\"\napi_token = \"{token}\"\nca_file = \"{ca}\"\n\
             node = \"{NODE}\"\n\n\
             [guest]\nssh_port = {ssh_port}\napp_root = \"{app_root}\"\n\
             datastore = \"local-lvm\"\nbridge = \"vmbr0\"\nvmid_range = \"7100-7199\"\n\n\
             [vm]\ntemplate_vmid = {TEMPLATE_VMID}\nuser = \"root\"\ndisk_interface = \"scsi0\"\n\n\
             [network]\npool = \"{guest}/32\"\nprefix = 8\ngateway = \"127.0.0.1\"\n\n\
             [terraform]\ntemplates_dir = \"{templates}\"\n\n\
             [timeouts]\nssh_secs = 60\nhealth_secs = 90\n",
            url = pve.url(),
            token = pve.token(),
            ca = pve.ca_file().display(),
            ssh_port = ssh.port(),
            app_root = app_root.display(),
            templates = templates_dir().display(),
        ),
    )
    .unwrap();
    let proxdeck = Proxdeck::new(config, data_dir.clone(), root);
    let context = |what: &str| {
        format!(
            "{what}\n--- fakepve ---\n{}\n--- sshd ---\n{}",
            pve.log_tail(),
            ssh.log_tail()
        )
    };

    let port = app_port.to_string();
    let deployed = proxdeck
        .run(
            &[
                "deploy",
                "--repo",
                &sample.git_url,
                "--framework",
                "flask",
                "--type",
                "vm",
                "--name",
                &name,
                "--port",
                &port,
                "--cores",
                "2",
                "--memory",
                "2048",
                "--disk",
                "12",
                "--json",
            ],
            DEPLOY_TIMEOUT,
        )
        .unwrap();
    if !deployed.success() {
        let logs = proxdeck.run(&["logs", &name], QUICK).map(|d| d.describe());
        panic!(
            "{}",
            context(&format!(
                "deploy --type vm failed: {}\n--- proxdeck logs ---\n{}",
                deployed.describe(),
                logs.unwrap_or_else(|e| e.to_string())
            ))
        );
    }
    let dep = json_of(&deployed, "deploy --json");
    assert_eq!(dep["status"], "RUNNING", "{dep}");
    assert_eq!(dep["guest_type"], "vm", "{dep}");
    assert_eq!(dep["vmid"], 7100, "{dep}");
    // The login user is the cloud-init user.
    assert_eq!(dep["ssh_user"], "root", "{dep}");
    let url = dep["url"].as_str().unwrap_or_default().to_string();
    let answer = wait_http_ok(&url, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{}", context(&format!("GET {url}: {e:#}"))));
    assert!(answer.body.contains(&sample.body), "{}", answer.body);

    // The VM in the fake is a clone with what the deployment asked for.
    let vm = pve.guest(7100).expect("VM 7100 in the fake");
    assert_eq!(vm["type"], "qemu", "{vm}");
    assert_eq!(vm["status"], "running", "{vm}");
    let cfg = &vm["config"];
    let text = |k: &str| match &cfg[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    assert_eq!(text("cores"), "2", "{vm}");
    assert_eq!(text("memory"), "2048", "{vm}");
    assert_eq!(text("ciuser"), "root", "{vm}");
    assert!(text("ipconfig0").contains(&format!("ip={guest}/8")), "{vm}");
    assert!(text("sshkeys").contains("ssh-ed25519"), "{vm}");
    assert!(text("agent").contains('1'), "{vm}");
    // The fake does not model QEMU disk resizes: the request is what can be checked.
    assert_eq!(
        pve.request_count(Some("PUT"), "/qemu/7100/resize").unwrap(),
        1,
        "the boot disk was not grown"
    );
    assert!(text("tags").contains("proxdeck"), "{vm}");

    // The log shows the plan (a VM clone) before apply.
    let logs = proxdeck.run(&["logs", &name], QUICK).unwrap();
    assert!(
        logs.stdout.contains("VM, full clone of template 9000"),
        "{}",
        logs.stdout
    );
    assert!(logs.stdout.contains("plan: 1 to add"), "{}", logs.stdout);
    assert!(
        logs.stdout.contains("pve_vm: created VM 7100"),
        "{}",
        logs.stdout
    );

    let destroyed = proxdeck
        .run(&["destroy", &name, "--yes"], DEPLOY_TIMEOUT)
        .unwrap();
    assert!(
        destroyed.success(),
        "{}",
        context(&format!("destroy: {}", destroyed.describe()))
    );
    let gone = pve.guest(7100);
    assert!(
        gone.is_err() || gone.as_ref().is_ok_and(Value::is_null),
        "VM 7100 is still in the fake: {gone:?}"
    );
    app.stop();
    assert!(files_containing(&data_dir, pve.secret()).is_empty());
}
