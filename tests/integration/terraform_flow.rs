//! Terraform through the built binary, with fakepve playing Proxmox and a git daemon serving
//! the app: `render --out` writes the workspace a deploy would use (and no credentials);
//! `deploy --plan` shows the plan's summary and leaves nothing behind; a deploy whose
//! template's provisioner fails is FAILED at terraform-apply with terraform's diagnostic (the
//! plan's summary logged before anything was applied); `destroy` after that partial apply
//! removes what was made and releases the vmid, waits out a locked guest (retries with
//! backoff), and copes with a guest already deleted behind proxdeck's back.
//!
//! The template (a test templates dir) declares the built-in LXC template's variables and
//! stands in for the guest with `terraform_data`: a `guest` resource that creates the
//! container in fakepve (`pve_ct.py`, deleted again at destroy), then a `boot` resource whose
//! provisioner fails.

use crate::support::fakepve::{FakePve, NODE, OS_TEMPLATE};
use crate::support::git::GitServer;
use crate::support::net::{loopback, random_hex};
use crate::support::parts::{Part, skip_without};
use crate::support::process::Finished;
use crate::support::proxdeck::{Proxdeck, files_containing, write_private};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);

/// The built-in LXC template's variables, a guest stand-in, and a failing boot step.
const FAILING_TEMPLATE: &str = r#"
variable "node_name" {
  type = string
}

variable "vm_id" {
  type    = number
  default = null
}

variable "hostname" {
  type = string
}

variable "description" {
  type = string
}

variable "tags" {
  type = list(string)
}

variable "cores" {
  type = number
}

variable "memory_mib" {
  type = number
}

variable "swap_mib" {
  type = number
}

variable "disk_gib" {
  type = number
}

variable "datastore_id" {
  type = string
}

variable "os_template" {
  type = string
}

variable "os_type" {
  type = string
}

variable "bridge" {
  type = string
}

variable "vlan_id" {
  type    = number
  default = null
}

variable "ipv4_address" {
  type = string
}

variable "ipv4_gateway" {
  type    = string
  default = null
}

variable "ssh_public_key" {
  type = string
}

resource "terraform_data" "guest" {
  # Destroy-time provisioners may only read self: keep what delete needs in input/output.
  input = {
    node = var.node_name
    vmid = var.vm_id
    gone = "${path.module}/../gone-${var.vm_id}"
  }

  provisioner "local-exec" {
    command = "\"$${PROXDECK_TEST_PYTHON:-python3}\" \"$PROXDECK_TEST_SUPPORT/pve_ct.py\" create"
    environment = {
      PVE_CT_NODE         = var.node_name
      PVE_CT_VMID         = tostring(var.vm_id)
      PVE_CT_HOSTNAME     = var.hostname
      PVE_CT_CORES        = tostring(var.cores)
      PVE_CT_MEMORY_MIB   = tostring(var.memory_mib)
      PVE_CT_DISK_GIB     = tostring(var.disk_gib)
      PVE_CT_DATASTORE    = var.datastore_id
      PVE_CT_OS_TEMPLATE  = var.os_template
      PVE_CT_BRIDGE       = var.bridge
      PVE_CT_IPV4_ADDRESS = var.ipv4_address
    }
  }

  # Like a provider that does not notice a guest deleted behind its back: with the `gone`
  # marker, fail the way Proxmox words it.
  provisioner "local-exec" {
    when    = destroy
    command = "if [ -e \"$GONE\" ]; then echo \"$GONE_MESSAGE\" >&2; exit 2; fi; \"$${PROXDECK_TEST_PYTHON:-python3}\" \"$PROXDECK_TEST_SUPPORT/pve_ct.py\" delete"
    environment = {
      PVE_CT_NODE  = self.output.node
      PVE_CT_VMID  = tostring(self.output.vmid)
      GONE         = self.output.gone
      GONE_MESSAGE = "Configuration file 'nodes/${self.output.node}/lxc/${self.output.vmid}.conf' does not exist"
    }
  }
}

resource "terraform_data" "boot" {
  depends_on = [terraform_data.guest]

  provisioner "local-exec" {
    command = "echo 'the boot disk is on fire' >&2; exit 7"
  }
}

output "vmid" {
  value = terraform_data.guest.output.vmid
}

output "ipv4" {
  value = null
}
"#;

fn json_of(done: &Finished, what: &str) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e})\n{}", done.describe()))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn render_plan_failed_apply_and_destroy_through_the_binary() {
    if skip_without(
        "render_plan_failed_apply_and_destroy_through_the_binary",
        &[Part::Fakepve, Part::Terraform, Part::Git],
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-tfflow-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let templates = root.join("templates");
    std::fs::create_dir_all(templates.join("lxc")).unwrap();
    std::fs::write(templates.join("lxc/main.tf.hbs"), FAILING_TEMPLATE).unwrap();

    let pve = FakePve::start(loopback()).expect("start fakepve");
    let git = GitServer::start(loopback()).expect("start git daemon");
    let sample = git.add_flask_app("tf-flow").unwrap();
    let config = root.join("config.toml");
    write_private(
        &config,
        &format!(
            "[proxmox]\nendpoint = \"{url}\"\napi_token = \"{token}\"\nca_file = \"{ca}\"\n\
             node = \"{NODE}\"\n\n\
             [guest]\nos_template = \"{OS_TEMPLATE}\"\ndatastore = \"local-lvm\"\n\
             bridge = \"vmbr0\"\nvmid_range = \"4200-4299\"\n\n\
             [network]\npool = \"10.99.0.8/29\"\nprefix = 24\ngateway = \"10.99.0.1\"\n\n\
             [terraform]\ntemplates_dir = \"{templates}\"\n",
            url = pve.url(),
            token = pve.token(),
            ca = pve.ca_file().display(),
            templates = templates.display(),
        ),
    )
    .unwrap();
    let data_dir = root.join("data");
    let proxdeck = Proxdeck::new(config, data_dir.clone(), root);
    let name = format!("tf-flow-{}", random_hex(4));
    let request = [
        "--repo",
        sample.git_url.as_str(),
        "--framework",
        "flask",
        "--name",
        name.as_str(),
        "--cores",
        "2",
        "--memory",
        "768",
    ];
    let with = |first: &[&str], last: &[&str]| -> Vec<String> {
        first
            .iter()
            .chain(request.iter())
            .chain(last.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: Vec<String>| -> Finished {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        proxdeck.run(&args, LIMIT).unwrap()
    };

    // render --out: the workspace, without credentials.
    let out = root.join("rendered");
    let rendered = run(with(
        &["render"],
        &["--out", &out.display().to_string(), "--json"],
    ));
    assert!(rendered.success(), "render: {}", rendered.describe());
    let report = json_of(&rendered, "render --json");
    assert_eq!(report["vmid"], 4200, "{report}");
    assert_eq!(report["node"], NODE, "{report}");
    let tfvars: Value = serde_json::from_str(&read(&out.join("terraform.tfvars.json"))).unwrap();
    assert_eq!(tfvars["vm_id"], 4200, "{tfvars}");
    assert_eq!(tfvars["cores"], 2, "{tfvars}");
    assert_eq!(tfvars["memory_mib"], 768, "{tfvars}");
    assert_eq!(tfvars["ipv4_address"], "10.99.0.9/24", "{tfvars}");
    assert_eq!(tfvars["hostname"], name.as_str(), "{tfvars}");
    assert!(tfvars.get("api_token").is_none());
    assert!(files_containing(&out, pve.secret()).is_empty());
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    assert_eq!(files, ["main.tf", "terraform.tfvars.json"]);

    // deploy --plan: the summary, then nothing left: no record, no workspace, no reservation.
    let planned = run(with(&["deploy"], &["--plan", "--json"]));
    assert!(planned.success(), "deploy --plan: {}", planned.describe());
    let plan = json_of(&planned, "deploy --plan --json");
    assert_eq!(plan["plan"]["add"], 2, "{plan}");
    assert_eq!(plan["vmid"], 4200, "{plan}");
    assert_eq!(plan["plan"]["guest"]["node_name"], NODE, "{plan}");
    assert_eq!(plan["plan"]["guest"]["cores"], 2, "{plan}");
    assert!(
        planned
            .stderr
            .contains("plan: 2 to add, 0 to change, 0 to destroy")
            && planned
                .stderr
                .contains("guest: node pve1, vmid 4200, 2 cores, 768 MiB memory"),
        "{}",
        planned.describe()
    );
    assert!(!planned.stderr.contains("the boot disk is on fire"));
    let listed = run(vec!["list".into(), "--json".into()]);
    assert_eq!(json_of(&listed, "list --json"), Value::Array(vec![]));
    let leftovers: Vec<_> = std::fs::read_dir(data_dir.join("workspaces"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(pve.container(NODE, 4200).unwrap().is_none());

    // deploy: FAILED at terraform-apply, with terraform's diagnostic as the cause.
    let deployed = run(with(&["deploy"], &["--json"]));
    assert_eq!(deployed.status.code(), Some(1), "{}", deployed.describe());
    let shown = run(vec!["show".into(), name.clone(), "--json".into()]);
    let shown = json_of(&shown, "show --json");
    assert_eq!(shown["status"], "FAILED", "{shown}");
    let error = shown["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(
            "terraform-apply: terraform apply failed (exit 1): local-exec provisioner error"
        ),
        "{error}"
    );
    assert!(error.contains("exit status 7"), "{error}");
    assert!(error.contains("the boot disk is on fire"), "{error}");
    assert_eq!(shown["vmid"], 4200, "{shown}");
    let id = shown["id"].as_str().unwrap().to_string();
    // The guest was made before the failure.
    assert!(
        pve.container(NODE, 4200).unwrap().is_some(),
        "{}",
        deployed.describe()
    );
    // The workspace is the one render wrote, except that the deploy's guest carries its
    // deployment's identity (tags, description) and the user's own workspace does not.
    let ws = data_dir.join("workspaces").join(&id);
    assert_eq!(read(&ws.join("main.tf")), read(&out.join("main.tf")));
    let mut deployed_vars: Value =
        serde_json::from_str(&read(&ws.join("terraform.tfvars.json"))).unwrap();
    let mut rendered_vars: Value =
        serde_json::from_str(&read(&out.join("terraform.tfvars.json"))).unwrap();
    let id_tag = format!("proxdeck-id-{id}");
    assert!(
        deployed_vars["tags"]
            .as_array()
            .unwrap()
            .contains(&Value::String(id_tag.clone())),
        "{deployed_vars}"
    );
    assert!(
        deployed_vars["description"]
            .as_str()
            .unwrap()
            .contains(&format!("proxdeck-id: {id}")),
        "{deployed_vars}"
    );
    assert!(
        !rendered_vars.to_string().contains("proxdeck-id"),
        "{rendered_vars}"
    );
    for key in ["tags", "description"] {
        deployed_vars.as_object_mut().unwrap().remove(key);
        rendered_vars.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(deployed_vars, rendered_vars);
    // The plan's summary is in the log before anything was applied.
    let logs = run(vec!["logs".into(), id.clone()]);
    let text = logs.stdout;
    let summary = text
        .find("plan: 2 to add")
        .expect("plan summary in the log");
    let creating = text
        .find("terraform_data.guest: Creating...")
        .expect("apply lines in the log");
    assert!(summary < creating, "{text}");
    assert!(text.contains("[1 of 2 resources]"), "{text}");
    assert!(files_containing(&data_dir, pve.secret()).is_empty());

    // destroy after the partial apply, while the guest is locked (a backup, say) for a few
    // seconds: retried with backoff, then DELETED, the guest gone, the vmid free again.
    pve.ctl("lock", json!({"vmid": 4200, "lock": "backup"}))
        .unwrap();
    pve.ctl(
        "later",
        json!({"vmid": 4200, "delay": 2, "attrs": {"lock": null}, "config": {"lock": null}}),
    )
    .unwrap();
    let destroyed = run(vec!["destroy".into(), id.clone(), "--yes".into()]);
    assert!(destroyed.success(), "destroy: {}", destroyed.describe());
    let shown = run(vec!["show".into(), id.clone(), "--json".into()]);
    assert_eq!(json_of(&shown, "show --json")["status"], "DELETED");
    assert!(pve.container(NODE, 4200).unwrap().is_none());
    assert!(
        destroyed
            .stdout
            .contains("the guest is busy or locked (attempt 1); trying again in 5 s"),
        "{}",
        destroyed.describe()
    );
    assert!(
        destroyed.stdout.contains("Destroy complete!"),
        "{}",
        destroyed.describe()
    );
    let again = run(vec![
        "render".into(),
        "--repo".into(),
        sample.git_url.clone(),
        "--framework".into(),
        "flask".into(),
        "--name".into(),
        format!("{name}-2"),
        "--out".into(),
        root.join("again").display().to_string(),
        "--json".into(),
    ]);
    assert!(again.success(), "render: {}", again.describe());
    assert_eq!(json_of(&again, "render --json")["vmid"], 4200);

    // A guest deleted behind proxdeck's back, and a provider that fails on it: Proxmox is
    // asked, the guest is confirmed gone, the state is dropped, and the deployment is DELETED.
    let gone_name = format!("{name}-g");
    let mut gone_args = with(&["deploy"], &["--json"]);
    let at = gone_args.iter().position(|a| *a == name).unwrap();
    gone_args[at] = gone_name.clone();
    let deployed = run(gone_args);
    assert_eq!(deployed.status.code(), Some(1), "{}", deployed.describe());
    assert!(pve.container(NODE, 4200).unwrap().is_some());
    pve.ctl("remove_guest", json!({"vmid": 4200})).unwrap();
    std::fs::write(data_dir.join("workspaces/gone-4200"), "").unwrap();
    let destroyed = run(vec!["destroy".into(), gone_name.clone(), "--yes".into()]);
    assert!(destroyed.success(), "destroy: {}", destroyed.describe());
    assert!(
        destroyed
            .stdout
            .contains("guest 4200 is already gone from the cluster: dropping terraform_data"),
        "{}",
        destroyed.describe()
    );
    let shown = run(vec!["show".into(), gone_name, "--json".into()]);
    assert_eq!(json_of(&shown, "show --json")["status"], "DELETED");
}

/// The built-in LXC template's variables again, and one slow step (slow only the first time).
pub(crate) fn slow_template() -> String {
    let vars_end = FAILING_TEMPLATE
        .find("resource \"terraform_data\" \"guest\"")
        .unwrap();
    format!(
        "{}{}",
        &FAILING_TEMPLATE[..vars_end],
        r#"resource "terraform_data" "first" {
  provisioner "local-exec" {
    command = "echo first-done"
  }
}

resource "terraform_data" "slow" {
  depends_on = [terraform_data.first]

  provisioner "local-exec" {
    command = "if [ -e ../slow.once ]; then echo slow-fast; else touch ../slow.once ../slow.started; sleep 120; fi"
  }
}

output "vmid" {
  value = var.vm_id
}

output "ipv4" {
  value = null
}
"#
    )
}

/// Ctrl-C (SIGINT to proxdeck) during apply: terraform is stopped gracefully, the deployment
/// is FAILED saying so, the workspace is consistent (state saved, lock released), and
/// `retry` continues from the state: terraform converges and the run goes on to the next
/// stages (here it then stops at ssh: there is no guest to log into).
#[test]
fn ctrl_c_during_apply_stops_terraform_cleanly_and_retry_continues() {
    use crate::support::process::ChildGuard;
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::time::Instant;
    if skip_without(
        "ctrl_c_during_apply_stops_terraform_cleanly_and_retry_continues",
        &[Part::Fakepve, Part::Terraform, Part::Git],
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-ctrlc-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let templates = root.join("templates");
    std::fs::create_dir_all(templates.join("lxc")).unwrap();
    std::fs::write(templates.join("lxc/main.tf.hbs"), slow_template()).unwrap();
    let pve = FakePve::start(loopback()).expect("start fakepve");
    let git = GitServer::start(loopback()).expect("start git daemon");
    let sample = git.add_flask_app("ctrl-c").unwrap();
    // Nothing listens on the guest's SSH port: the retry stops at ssh, quickly.
    let closed_port = crate::support::net::free_port_any().unwrap();
    let config = root.join("config.toml");
    write_private(
        &config,
        &format!(
            "[proxmox]\nendpoint = \"{url}\"\napi_token = \"{token}\"\nca_file = \"{ca}\"\n\
             node = \"{NODE}\"\n\n\
             [guest]\nos_template = \"{OS_TEMPLATE}\"\nvmid_range = \"4300-4399\"\n\
             ssh_port = {closed_port}\n\n\
             [network]\npool = \"127.0.0.1/32\"\nprefix = 8\ngateway = \"127.0.0.1\"\n\n\
             [terraform]\ntemplates_dir = \"{templates}\"\n\n\
             [timeouts]\nssh_secs = 2\n",
            url = pve.url(),
            token = pve.token(),
            ca = pve.ca_file().display(),
            templates = templates.display(),
        ),
    )
    .unwrap();
    let data_dir = root.join("data");
    let proxdeck = Proxdeck::new(config, data_dir.clone(), root);
    let name = format!("ctrl-c-{}", random_hex(4));
    let out_log = root.join("deploy.out");
    let mut cmd = proxdeck.command([
        "deploy",
        "--repo",
        sample.git_url.as_str(),
        "--framework",
        "flask",
        "--name",
        name.as_str(),
    ]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_log).unwrap());
    let mut deploy = ChildGuard::spawn("proxdeck deploy", &mut cmd, Some(&root.join("deploy.err")))
        .expect("start proxdeck deploy");
    let started = data_dir.join("workspaces/slow.started");
    let deadline = Instant::now() + LIMIT;
    while !started.exists() {
        if let Ok(Some(status)) = deploy.child_mut().try_wait() {
            panic!(
                "deploy ended ({status}) before the slow step: {}\n{}",
                read(&out_log),
                deploy.log_tail()
            );
        }
        assert!(Instant::now() < deadline, "the slow step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(Pid::from_raw(deploy.id() as i32), Signal::SIGINT).unwrap();
    let interrupted = Instant::now();
    let status = loop {
        if let Some(status) = deploy.child_mut().try_wait().unwrap() {
            break status;
        }
        assert!(
            interrupted.elapsed() < Duration::from_secs(30),
            "proxdeck did not stop after Ctrl-C: {}",
            read(&out_log)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = read(&out_log);
    assert_eq!(status.code(), Some(1), "{printed}\n{}", deploy.log_tail());
    assert!(
        deploy
            .log_tail()
            .contains("terraform is asked to stop and save its state"),
        "{}",
        deploy.log_tail()
    );
    assert!(printed.contains("Interrupt received."), "{printed}");
    let shown = proxdeck
        .run(&["show", name.as_str(), "--json"], LIMIT)
        .unwrap();
    let shown = json_of(&shown, "show --json");
    assert_eq!(shown["status"], "FAILED", "{shown}");
    let error = shown["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("terraform-apply: terraform apply was cancelled"),
        "{error}"
    );
    let id = shown["id"].as_str().unwrap().to_string();
    let ws = data_dir.join("workspaces").join(&id);
    assert!(!ws.join(".terraform.tfstate.lock.info").exists());
    let state = read(&ws.join("terraform.tfstate"));
    assert!(state.contains("\"first\""), "{state}");

    // retry: terraform converges (first kept, slow made again), then the run goes on.
    let retried = proxdeck.run(&["retry", id.as_str()], LIMIT).unwrap();
    assert_eq!(retried.status.code(), Some(1), "{}", retried.describe());
    assert!(
        retried.stdout.contains("(local-exec): slow-fast"),
        "{}",
        retried.describe()
    );
    assert!(
        !retried.stdout.contains("terraform_data.first: Creating"),
        "{}",
        retried.describe()
    );
    let shown = proxdeck
        .run(&["show", id.as_str(), "--json"], LIMIT)
        .unwrap();
    let shown = json_of(&shown, "show --json");
    assert_eq!(shown["status"], "FAILED", "{shown}");
    assert!(
        shown["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("ssh:"),
        "{shown}"
    );
}
