//! A guest belongs to exactly one deployment, found by the id it carries (issue 10), through
//! the built binary against fakepve, with the stand-in templates (`tests/fixtures/terraform`,
//! changed per test where a test needs a template to misbehave), an sshd test host as the
//! guest and a git daemon serving the app:
//!
//! - a `deploy` killed (SIGKILL, proxdeck and terraform's process group) after the guest was
//!   created but before terraform saved it: `retry` adopts that guest (`terraform import`)
//!   instead of reserving another vmid and making a second one; `destroy` removes it and
//!   Proxmox confirms it gone;
//! - orphans (guests carrying the id of no live deployment of this data dir) are shown by
//!   `resources` and `sync` (not imported), removed by `remove-orphan` on request, while
//!   guests of another installation, imported guests and unmarked guests are refused;
//! - `destroy` is DELETED only once Proxmox confirms it: a template whose destroy leaves the
//!   guest is caught (the guest is removed through the API, or the destroy FAILS while it is
//!   locked), and `destroy --force` records a deployment whose Proxmox cannot be reached,
//!   naming what may be left behind.

use crate::support::fakepve::{FakePve, NODE, OS_TEMPLATE};
use crate::support::git::GitServer;
use crate::support::net::{free_port_any, loopback, random_hex};
use crate::support::parts::{Part, skip_without, templates_dir};
use crate::support::process::Finished;
use crate::support::proxdeck::{AppGuard, Proxdeck, write_private};
use crate::support::sshd::SshHost;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEPLOY: Duration = Duration::from_secs(600);
const QUICK: Duration = Duration::from_secs(120);
/// A small app: no dependencies to install, Python's own HTTP server as the app.
const START: &str = "python3 -m http.server \"$PORT\" --bind 0.0.0.0";

/// The stand-in LXC template with `edit` applied, in a templates dir of its own.
fn template_dir(root: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let original =
        std::fs::read_to_string(templates_dir().join("lxc/main.tf.hbs")).expect("stand-in");
    let changed = edit(original.clone());
    assert_ne!(changed, original, "the template edit changed nothing");
    let dir = root.join("templates");
    std::fs::create_dir_all(dir.join("lxc")).unwrap();
    std::fs::write(dir.join("lxc/main.tf.hbs"), changed).unwrap();
    dir
}

const CREATE: &str = "pve_ct.py\\\" create\"";
const DELETE: &str =
    "\"\\\"$${PROXDECK_TEST_PYTHON:-python3}\\\" \\\"$PROXDECK_TEST_SUPPORT/pve_ct.py\\\" delete\"";

fn config(
    pve: &FakePve,
    ca: &Path,
    templates: &Path,
    guest: std::net::Ipv4Addr,
    ssh_port: u16,
    app_root: &Path,
    ssh_secs: u32,
) -> String {
    format!(
        "[proxmox]\nendpoint = \"{url}\"\napi_token = \"{token}\"\nca_file = \"{ca}\"\n\
         node = \"{NODE}\"\n\n\
         [guest]\nssh_port = {ssh_port}\nssh_user = \"root\"\napp_root = \"{app_root}\"\n\
         os_template = \"{OS_TEMPLATE}\"\ndatastore = \"local-lvm\"\nbridge = \"vmbr0\"\n\
         vmid_range = \"20000-20099\"\n\n\
         [network]\npool = \"{guest}/32\"\nprefix = 8\ngateway = \"127.0.0.1\"\n\n\
         [terraform]\ntemplates_dir = \"{templates}\"\n\n\
         [timeouts]\nssh_secs = {ssh_secs}\nhealth_secs = 120\n",
        url = pve.url(),
        token = pve.token(),
        ca = ca.display(),
        app_root = app_root.display(),
        templates = templates.display(),
    )
}

fn json_of(done: &Finished, what: &str) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e})\n{}", done.describe()))
}

/// The containers on the fake that carry `id` as their deployment id.
pub(crate) fn marked(pve: &FakePve, id: &str) -> Vec<u64> {
    let tag = format!("proxdeck-id-{id}");
    let mut out: Vec<u64> = pve
        .containers(NODE)
        .unwrap()
        .iter()
        .filter_map(|ct| ct["vmid"].as_u64())
        .filter(|vmid| {
            pve.guest(*vmid).unwrap()["config"]["tags"]
                .as_str()
                .unwrap_or("")
                .split(';')
                .any(|t| t == tag)
        })
        .collect();
    out.sort();
    out
}

/// The direct children of `pid` (from /proc).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// SIGKILL to proxdeck and to the process group of every child it started (terraform runs
/// in a group of its own, with its provisioners): a crash of everything at once.
/// SIGKILL to the command, to proxdeck's worker (whose pid is in `worker.lock`) and to every
/// child group of both (terraform): what a crash of the machine's proxdeck does.
fn kill_everything(proxdeck: &mut std::process::Child, data_dir: &std::path::Path) {
    let mut pids = vec![proxdeck.id()];
    if let Some(worker) = std::fs::read_to_string(data_dir.join("worker.lock"))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    {
        pids.push(worker);
    }
    for pid in &pids {
        let kids = children(*pid);
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        for child in kids {
            let _ = killpg(Pid::from_raw(child as i32), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(child as i32), Signal::SIGKILL);
        }
    }
    let _ = proxdeck.wait();
    // Dead, not dying: the worker's lock is released only once it is gone (or a zombie).
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && pids.iter().any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                !s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A deploy killed (SIGKILL, proxdeck and terraform's group) right after terraform created
/// the container and before it saved it: the deployment is FAILED (interrupted), the guest
/// exists with its mark, no state holds it.
struct Killed {
    _work: tempfile::TempDir,
    root: PathBuf,
    data_dir: PathBuf,
    pve: FakePve,
    ssh: SshHost,
    _git: GitServer,
    _app: AppGuard,
    proxdeck: Proxdeck,
    name: String,
    id: String,
}

impl Killed {
    fn new(prefix: &str) -> Killed {
        let work = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let root = work.path().to_path_buf();
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let data_dir = root.join("data");
        let app_root = root.join("apps");
        let name = format!("adopt-{}", random_hex(6));
        let app = AppGuard::new(app_root.join(&name).join("run/app.pid"));
        // The container is created, then the provisioner lingers: terraform has not saved
        // it yet.
        let templates = template_dir(&root, |t| {
            t.replace(CREATE, "pve_ct.py\\\" create && sleep 300\"")
        });
        let pve = FakePve::start(loopback()).expect("start fakepve");
        let guest = loopback();
        let ssh = SshHost::start(guest, &data_dir.join("keys/id_ed25519.pub")).expect("start sshd");
        let git = GitServer::start(loopback()).expect("start git daemon");
        let sample = git.add_flask_app("adopt-sample").unwrap();
        let port = free_port_any().unwrap().to_string();
        let config_path = root.join("config.toml");
        write_private(
            &config_path,
            &config(
                &pve,
                &pve.ca_file(),
                &templates,
                guest,
                ssh.port(),
                &app_root,
                60,
            ),
        )
        .unwrap();
        let proxdeck = Proxdeck::new(config_path, data_dir.clone(), &root);
        let out = std::fs::File::create(root.join("deploy.out")).unwrap();
        let mut deploy = proxdeck
            .command([
                "deploy",
                "--repo",
                &sample.git_url,
                "--framework",
                "flask",
                "--name",
                &name,
                "--port",
                &port,
                "--install",
                "true",
                "--start",
                START,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start proxdeck deploy");
        let deadline = Instant::now() + Duration::from_secs(180);
        while pve.container(NODE, 20000).unwrap().is_none() {
            if Instant::now() > deadline || deploy.try_wait().unwrap().is_some() {
                kill_everything(&mut deploy, &data_dir);
                panic!(
                    "the container never appeared:\n{}\n--- fakepve ---\n{}",
                    std::fs::read_to_string(root.join("deploy.out")).unwrap_or_default(),
                    pve.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        kill_everything(&mut deploy, &data_dir);

        // The next proxdeck finds the deployment interrupted; the guest exists, no state
        // holds it.
        let listed = proxdeck.run(&["list", "--json"], QUICK).unwrap();
        assert!(
            listed.stderr.contains("was interrupted"),
            "{}",
            listed.describe()
        );
        let list = json_of(&listed, "list");
        let d = &list.as_array().unwrap()[0];
        assert_eq!(d["status"], "FAILED", "{d}");
        let id = d["id"].as_str().unwrap().to_string();
        assert_eq!(marked(&pve, &id), [20000]);
        let killed = Killed {
            _work: work,
            root,
            data_dir,
            pve,
            ssh,
            _git: git,
            _app: app,
            proxdeck,
            name,
            id,
        };
        assert!(
            !killed.state().contains("terraform_data"),
            "the killed run saved its guest after all: {}",
            killed.state()
        );
        killed
    }

    fn state(&self) -> String {
        std::fs::read_to_string(
            self.data_dir
                .join("workspaces")
                .join(&self.id)
                .join("terraform.tfstate"),
        )
        .unwrap_or_default()
    }

    fn context(&self, what: &str) -> String {
        let logs = self
            .proxdeck
            .run(&["logs", &self.name], QUICK)
            .map(|d| d.stdout)
            .unwrap_or_default();
        format!(
            "{what}\n--- proxdeck logs ---\n{logs}\n--- fakepve ---\n{}\n--- sshd ---\n{}",
            self.pve.log_tail(),
            self.ssh.log_tail()
        )
    }

    /// `retry`, which must end RUNNING on vmid 20000 with one guest.
    fn retry(&self) -> Finished {
        let retried = self
            .proxdeck
            .run(&["retry", &self.name, "--json"], DEPLOY)
            .unwrap();
        if !retried.success() {
            panic!(
                "{}",
                self.context(&format!("retry: {}", retried.describe()))
            );
        }
        let r = json_of(&retried, "retry");
        assert_eq!(r["status"], "RUNNING", "{r}");
        assert_eq!(r["vmid"], 20000, "{r}");
        assert!(
            retried
                .stderr
                .contains("which carries this deployment's id"),
            "{}",
            retried.describe()
        );
        assert!(
            !retried.stderr.contains("reserved vmid 20001"),
            "{}",
            retried.describe()
        );
        assert_eq!(
            marked(&self.pve, &self.id),
            [20000],
            "a second guest was made"
        );
        assert_eq!(self.pve.containers(NODE).unwrap().len(), 1);
        assert!(self.state().contains("terraform_data"), "{}", self.state());
        let orphans = json_of(
            &self
                .proxdeck
                .run(&["resources", "--orphans", "--json"], QUICK)
                .unwrap(),
            "orphans",
        );
        assert_eq!(orphans, json!([]));
        retried
    }

    /// `destroy`: DELETED once Proxmox confirms the guest gone.
    fn destroy(&self) {
        let destroyed = self
            .proxdeck
            .run(&["destroy", &self.name, "--yes", "--json"], QUICK)
            .unwrap();
        if !destroyed.success() {
            panic!(
                "{}",
                self.context(&format!("destroy: {}", destroyed.describe()))
            );
        }
        assert_eq!(json_of(&destroyed, "destroy")["status"], "DELETED");
        assert!(
            destroyed
                .stderr
                .contains("Proxmox confirms: vmid 20000 is gone"),
            "{}",
            destroyed.describe()
        );
        assert!(self.pve.containers(NODE).unwrap().is_empty());
    }
}

#[test]
fn a_guest_left_by_a_killed_apply_is_adopted_not_duplicated_and_destroy_confirms_it_gone() {
    if skip_without(
        "a_guest_left_by_a_killed_apply_is_adopted_not_duplicated_and_destroy_confirms_it_gone",
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
    let k = Killed::new("proxdeck-adopt-");
    let retried = k.retry();
    assert!(
        retried
            .stderr
            .contains("adopting it with `terraform import terraform_data.container pve1/20000`")
            && !retried.stderr.contains("import failed"),
        "{}",
        retried.describe()
    );
    // Adopted, not made again: the container was not created a second time.
    assert_eq!(
        k.pve
            .request_count(Some("POST"), "/nodes/pve1/lxc")
            .unwrap(),
        1
    );
    k.destroy();
}

#[test]
fn a_guest_whose_template_cannot_import_it_is_replaced_not_duplicated() {
    if skip_without(
        "a_guest_whose_template_cannot_import_it_is_replaced_not_duplicated",
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
    let k = Killed::new("proxdeck-replace-");
    // Now the template's vmid output cannot be read right after an import (no try()), and
    // the create does not linger any more.
    template_dir(&k.root, |t| {
        t.replace(
            "try(terraform_data.container.output.vmid, null)",
            "terraform_data.container.output.vmid",
        )
        .replace(" && sleep 300", "")
    });
    let retried = k.retry();
    assert!(
        retried.stderr.contains("the import failed")
            && retried.stderr.contains("removing CT 20000 instead")
            && retried.stderr.contains("deleting CT 20000"),
        "{}",
        retried.describe()
    );
    // Removed, then made once more: still one guest.
    assert_eq!(
        k.pve
            .request_count(Some("POST"), "/nodes/pve1/lxc")
            .unwrap(),
        2
    );
    k.destroy();
}

#[test]
fn orphans_are_shown_not_imported_and_removed_on_request() {
    if skip_without(
        "orphans_are_shown_not_imported_and_removed_on_request",
        &[Part::Fakepve],
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-orphans-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let data_dir = root.join("data");
    let pve = FakePve::start(loopback()).expect("start fakepve");
    let config_path = root.join("config.toml");
    write_private(
        &config_path,
        &format!(
            "[proxmox]\nendpoint = \"{}\"\napi_token = \"{}\"\nca_file = \"{}\"\nnode = \"{NODE}\"\n",
            pve.url(),
            pve.token(),
            pve.ca_file().display()
        ),
    )
    .unwrap();
    let proxdeck = Proxdeck::new(config_path, data_dir.clone(), root);
    let run = |args: &[&str]| {
        let done = proxdeck.run(args, QUICK).unwrap();
        assert!(done.success(), "{args:?}: {}", done.describe());
        done
    };
    // The first command makes the data dir's installation id.
    run(&["resources"]);
    let me = std::fs::read_to_string(data_dir.join("installation"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(me.len(), 8, "{me:?}");

    // A deployment this proxdeck destroyed, on record as DELETED.
    {
        use proxdeck::domain::{Deployment, DeploymentId, Status};
        let mut store =
            proxdeck::store::Store::open(&proxdeck::engine::DataPaths::new(&data_dir).database())
                .unwrap();
        let d = Deployment {
            id: DeploymentId("dele23".into()),
            name: "was-here".into(),
            vmid: Some(700),
            ..Deployment::default()
        };
        store.insert_deployment(&d).unwrap();
        store
            .transition(&d.id, Status::Destroying, None, None)
            .unwrap();
        store
            .transition(&d.id, Status::Deleted, None, None)
            .unwrap();
    }
    let add = |vmid: u32, name: &str, tags: &str| {
        pve.ctl(
            "add_guest",
            json!({"vmid": vmid, "name": name, "config": {"tags": tags}}),
        )
        .unwrap();
    };
    // 700: the DELETED deployment's guest, left behind. 701: a forgotten deployment's.
    add(
        700,
        "was-here",
        &format!("proxdeck;proxdeck-id-dele23;proxdeck-of-{me}"),
    );
    add(
        701,
        "forgotten",
        &format!("proxdeck;proxdeck-id-forg23;proxdeck-of-{me}"),
    );
    // 702: another installation's deployment. 703: no mark at all.
    add(
        702,
        "colleague",
        "proxdeck;proxdeck-id-coll23;proxdeck-of-other234",
    );
    add(703, "plain", "web");

    let view = json_of(&run(&["resources", "--json"]), "resources");
    let orphan_of = |vmid: u64| -> Value {
        view["guests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["vmid"] == vmid)
            .unwrap()["orphan"]
            .clone()
    };
    assert_eq!(orphan_of(700)["deployment"], "dele23");
    assert!(
        orphan_of(700)["why"]
            .as_str()
            .unwrap()
            .contains("was-here (dele23) is DELETED")
    );
    assert_eq!(orphan_of(701)["deployment"], "forg23");
    assert!(orphan_of(702).is_null() && orphan_of(703).is_null());
    let table = run(&["resources"]);
    assert!(
        table
            .stdout
            .contains("ORPHAN of dele23: `proxdeck remove-orphan 700` removes it")
            && table.stdout.contains("2 orphaned"),
        "{}",
        table.stdout
    );
    let orphans = json_of(&run(&["resources", "--orphans", "--json"]), "orphans");
    let vmids: Vec<u64> = orphans
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["vmid"].as_u64().unwrap())
        .collect();
    assert_eq!(vmids, [700, 701]);

    // sync imports the colleague's and the plain guest, never the orphans.
    let synced = json_of(&run(&["sync", "--json"]), "sync");
    let imported: Vec<u64> = synced["imported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["vmid"].as_u64().unwrap())
        .collect();
    assert_eq!(imported.len(), 2, "{synced}");
    assert!(
        imported.contains(&702) && imported.contains(&703),
        "{synced}"
    );
    assert_eq!(synced["orphans"].as_array().unwrap().len(), 2, "{synced}");
    assert_eq!(synced["guests"], 4, "{synced}");

    // remove-orphan refuses what is not one, and asks before it removes.
    for (vmid, why) in [
        ("702", "imported entry"),
        ("703", "imported entry"),
        ("799", "no guest with vmid 799"),
    ] {
        let done = proxdeck
            .run(&["remove-orphan", vmid, "--yes"], QUICK)
            .unwrap();
        assert_eq!(done.status.code(), Some(2), "{}", done.describe());
        assert!(done.stderr.contains(why), "{vmid}: {}", done.describe());
    }
    let done = proxdeck.run(&["remove-orphan", "700"], QUICK).unwrap();
    assert_eq!(done.status.code(), Some(2), "{}", done.describe());
    assert!(
        done.stderr.contains("needs confirmation"),
        "{}",
        done.describe()
    );
    assert!(pve.guest(700).is_ok());
    let removed = json_of(
        &run(&["remove-orphan", "700", "--yes", "--json"]),
        "remove-orphan",
    );
    assert_eq!(removed["vmid"], 700);
    assert_eq!(removed["deployment"], "dele23");
    assert!(pve.guest(700).is_err(), "700 is still on the fake");
    assert!(pve.guest(701).is_ok() && pve.guest(702).is_ok() && pve.guest(703).is_ok());
    let orphans = json_of(&run(&["resources", "--orphans", "--json"]), "orphans");
    assert_eq!(orphans.as_array().unwrap().len(), 1, "{orphans}");
    let audit = std::fs::read_to_string(data_dir.join("audit.log")).unwrap();
    assert!(
        audit.contains("\"remove-orphan\"") && audit.contains("\"vmid\":700"),
        "{audit}"
    );
}

#[test]
fn destroy_is_deleted_only_once_proxmox_confirms_and_force_names_what_is_left() {
    if skip_without(
        "destroy_is_deleted_only_once_proxmox_confirms_and_force_names_what_is_left",
        &[Part::Fakepve, Part::Terraform, Part::Git],
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-confirm-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let data_dir = root.join("data");
    // A template whose destroy says it is done and leaves the container on Proxmox.
    let templates = template_dir(root, |t| {
        t.replace(DELETE, "\"echo 'this template does not delete anything'\"")
    });
    let mut pve = Some(FakePve::start(loopback()).expect("start fakepve"));
    let fake = || pve.as_ref().unwrap();
    let git = GitServer::start(loopback()).expect("start git daemon");
    let sample = git.add_flask_app("confirm-sample").unwrap();
    // Nothing listens for SSH on the guest's address: deployments stop FAILED at ssh, with
    // their guest made.
    let nobody = loopback();
    // The CA file outlives the fake (which is stopped at the end).
    let ca = root.join("fakepve.crt");
    std::fs::copy(fake().ca_file(), &ca).unwrap();
    let config_path = root.join("config.toml");
    write_private(
        &config_path,
        &config(fake(), &ca, &templates, nobody, 22, &root.join("apps"), 2),
    )
    .unwrap();
    let proxdeck = Proxdeck::new(config_path, data_dir.clone(), root);
    let deploy = |name: &str| -> String {
        let done = proxdeck
            .run(
                &[
                    "deploy",
                    "--repo",
                    &sample.git_url,
                    "--framework",
                    "flask",
                    "--name",
                    name,
                ],
                DEPLOY,
            )
            .unwrap();
        assert!(!done.success(), "{}", done.describe());
        let shown = json_of(
            &proxdeck.run(&["show", name, "--json"], QUICK).unwrap(),
            "show",
        );
        assert_eq!(shown["status"], "FAILED", "{shown}");
        assert!(
            shown["error"].as_str().unwrap().starts_with("ssh:"),
            "{shown}"
        );
        shown["id"].as_str().unwrap().to_string()
    };

    let first = deploy("confirm-one");
    assert_eq!(marked(fake(), &first), [20000]);
    // Locked (a backup, say): terraform "destroys" nothing, the container carries the mark,
    // its removal through the API is refused, so the destroy FAILS instead of DELETED.
    fake()
        .ctl("lock", json!({"vmid": 20000, "lock": "backup"}))
        .unwrap();
    let done = proxdeck
        .run(&["destroy", "confirm-one", "--yes"], QUICK)
        .unwrap();
    assert!(!done.success(), "{}", done.describe());
    assert!(
        done.stdout.contains("still carries this deployment's id")
            && done.stderr.contains("cannot remove CT 20000")
            && done.stderr.contains("locked"),
        "{}",
        done.describe()
    );
    let shown = json_of(
        &proxdeck
            .run(&["show", "confirm-one", "--json"], QUICK)
            .unwrap(),
        "show",
    );
    assert_eq!(shown["status"], "FAILED", "{shown}");
    assert_eq!(marked(fake(), &first), [20000]);
    // Unlocked: the container is removed through the API and Proxmox confirms it.
    fake().ctl("unlock", json!({"vmid": 20000})).unwrap();
    let done = proxdeck
        .run(&["destroy", "confirm-one", "--yes", "--json"], QUICK)
        .unwrap();
    assert!(done.success(), "{}", done.describe());
    assert_eq!(json_of(&done, "destroy")["status"], "DELETED");
    assert!(
        done.stderr.contains("deleting CT 20000") && done.stderr.contains("Proxmox confirms"),
        "{}",
        done.describe()
    );
    assert!(fake().containers(NODE).unwrap().is_empty());

    // Proxmox gone for good: destroy FAILS (nothing confirmed) and says --force; --force
    // records DELETED and names the guest that may be left.
    let second = deploy("confirm-two");
    let vmid = marked(fake(), &second)[0];
    pve.take();
    let done = proxdeck
        .run(&["destroy", "confirm-two", "--yes"], QUICK)
        .unwrap();
    assert!(!done.success(), "{}", done.describe());
    assert!(
        done.stderr
            .contains("cannot confirm with Proxmox that the guest is gone")
            && done
                .stderr
                .contains(&format!("proxdeck destroy {second} --force")),
        "{}",
        done.describe()
    );
    let done = proxdeck
        .run(
            &["destroy", "confirm-two", "--yes", "--force", "--json"],
            QUICK,
        )
        .unwrap();
    assert!(done.success(), "{}", done.describe());
    assert_eq!(json_of(&done, "destroy --force")["status"], "DELETED");
    assert!(
        done.stderr.contains(&format!(
            "may be left behind: the guest CT {vmid} on node {NODE}"
        )) && done.stderr.contains("remove-orphan"),
        "{}",
        done.describe()
    );
}
