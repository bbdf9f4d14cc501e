//! Whole-guest snapshots through the built binary against fakepve's snapshot endpoints (issue
//! 14): a snapshot on request, the one taken before a redeploy and a rollback (named after the
//! commit, the commit in its description, only the last `snapshots.keep` kept), the list, a
//! restore (shutdown, rollback, start, health check, the record's commit back to the
//! snapshot's), and a guest on storage that cannot snapshot (said once, the change goes on).
//!
//! The guest is fakepve's container plus the sshd test host on a loopback address (the
//! stand-in templates, as in `e2e.rs`): the fake rolls back the container's config, not the
//! files on the test host, so the restored app is the one that ran; what is checked is what
//! proxdeck asks Proxmox and records.

use crate::support::fakepve::{FakePve, NODE, OS_TEMPLATE};
use crate::support::git::GitServer;
use crate::support::net::{free_port_any, loopback, random_hex, wait_http_ok};
use crate::support::parts::{Part, skip_without, templates_dir};
use crate::support::process::Finished;
use crate::support::proxdeck::{AppGuard, Proxdeck, write_private};
use crate::support::sshd::SshHost;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);
const QUICK: Duration = Duration::from_secs(60);

fn config_text(
    pve: &FakePve,
    ssh_port: u16,
    app_root: &Path,
    guest: std::net::Ipv4Addr,
    datastore: &str,
) -> String {
    format!(
        "[proxmox]\n\
         endpoint = \"{url}\"\n\
         api_token = \"{token}\"\n\
         ca_file = \"{ca}\"\n\
         node = \"{NODE}\"\n\n\
         [guest]\n\
         ssh_port = {ssh_port}\n\
         ssh_user = \"root\"\n\
         app_root = \"{app_root}\"\n\
         os_template = \"{OS_TEMPLATE}\"\n\
         datastore = \"{datastore}\"\n\
         bridge = \"vmbr0\"\n\n\
         [network]\n\
         pool = \"{guest}/32\"\n\
         prefix = 8\n\
         gateway = \"127.0.0.1\"\n\n\
         [terraform]\n\
         templates_dir = \"{templates}\"\n\n\
         [timeouts]\n\
         ssh_secs = 60\n\
         health_secs = 90\n\n\
         [snapshots]\n\
         before = [\"redeploy\", \"rollback\", \"destroy\"]\n\
         keep = 1\n",
        url = pve.url(),
        token = pve.token(),
        ca = pve.ca_file().display(),
        app_root = app_root.display(),
        templates = templates_dir().display(),
    )
}

fn json_of(done: &Finished, what: &str) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}):\n{}", done.describe()))
}

fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// The snapshots `proxdeck snapshots ID --json` lists: (name, commit, before_change).
fn listed(proxdeck: &Proxdeck, id: &str) -> Vec<(String, Option<String>, bool)> {
    let done = proxdeck.run(&["snapshots", id, "--json"], QUICK).unwrap();
    assert!(done.success(), "snapshots: {}", done.describe());
    let v = json_of(&done, "snapshots --json");
    v["snapshots"]
        .as_array()
        .unwrap_or_else(|| panic!("no snapshots array: {v}"))
        .iter()
        .map(|s| {
            (
                text(&s["name"]),
                s["commit"].as_str().map(str::to_string),
                s["before_change"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn snapshots_before_changes_list_and_restore_against_the_fake_proxmox() {
    if skip_without(
        "snapshots_before_changes_list_and_restore_against_the_fake_proxmox",
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
        .prefix("proxdeck-snap-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let data_dir = root.join("data");
    let app_root = root.join("apps");
    let name = format!("snap-{}", random_hex(6));
    let app = AppGuard::new(app_root.join(&name).join("run/app.pid"));

    let pve = FakePve::start(loopback()).expect("start fakepve");
    let guest = loopback();
    let ssh = SshHost::start(guest, &data_dir.join("keys/id_ed25519.pub")).expect("start sshd");
    let git = GitServer::start(loopback()).expect("start git daemon");
    let repo = "snap-sample";
    let sample = git.add_flask_app(repo).unwrap();
    let first = git.head(repo).unwrap();
    let port = free_port_any().unwrap().to_string();
    let config = root.join("config.toml");
    write_private(
        &config,
        &config_text(&pve, ssh.port(), &app_root, guest, "local-lvm"),
    )
    .unwrap();
    let proxdeck = Proxdeck::new(config, data_dir.clone(), root);
    let logs = || {
        proxdeck
            .run(&["logs", &name], QUICK)
            .map(|d| d.stdout)
            .unwrap_or_default()
    };
    let context = |what: &str| {
        format!(
            "{what}\n--- proxdeck logs ---\n{}\n--- fakepve ---\n{}\n--- sshd ---\n{}",
            logs(),
            pve.log_tail(),
            ssh.log_tail()
        )
    };
    let must = |args: &[&str], timeout: Duration| -> Finished {
        let done = proxdeck
            .run(args, timeout)
            .unwrap_or_else(|e| panic!("{}", context(&format!("{args:?}: {e:#}"))));
        if !done.success() {
            panic!(
                "{}",
                context(&format!("{args:?} failed: {}", done.describe()))
            );
        }
        done
    };

    let deployed = must(
        &[
            "deploy",
            "--repo",
            &sample.git_url,
            "--framework",
            "flask",
            "--type",
            "lxc",
            "--name",
            &name,
            "--port",
            &port,
            "--json",
        ],
        DEPLOY_TIMEOUT,
    );
    let dep = json_of(&deployed, "deploy --json");
    let id = text(&dep["id"]);
    let vmid = dep["vmid"].as_u64().expect("vmid");
    assert_eq!(text(&dep["commit"]), first, "{dep}");
    assert!(
        !deployed.stderr.contains("cannot snapshot"),
        "local-lvm snapshots, yet preflight warned:\n{}",
        deployed.stderr
    );

    // A snapshot on request, by name: it holds the deployed commit.
    let taken = must(&["snapshot", &id, "by-hand", "--json"], QUICK);
    assert_eq!(json_of(&taken, "snapshot --json")["snapshot"], "by-hand");
    assert_eq!(
        listed(&proxdeck, &id),
        vec![("by-hand".to_string(), Some(first.clone()), false)]
    );

    // A new commit and a redeploy: the snapshot before it holds the first commit.
    let second = git
        .push_change(repo, &[("VERSION", "2\n".to_string())], "a second commit")
        .unwrap();
    let redeployed = must(&["redeploy", &id, "--json"], DEPLOY_TIMEOUT);
    assert_eq!(text(&json_of(&redeployed, "redeploy")["commit"]), second);
    let snaps = listed(&proxdeck, &id);
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let (before, commit, ours) = snaps[1].clone();
    assert!(
        before.starts_with(&format!("pd-redeploy-{}-", &first[..7])),
        "{before}"
    );
    assert_eq!((commit, ours), (Some(first.clone()), true));
    assert!(
        logs().contains(&format!("taking snapshot {before} of CT {vmid}")),
        "{}",
        logs()
    );

    // Restore without --yes and without a terminal is refused, and changes nothing.
    let refused = proxdeck.run(&["restore", &id, &before], QUICK).unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", refused.describe());
    assert!(refused.stderr.contains("--yes"), "{}", refused.describe());
    // A snapshot that does not exist: named, with the ones there are.
    let missing = proxdeck
        .run(&["restore", &id, "nope", "--yes"], QUICK)
        .unwrap();
    assert!(!missing.success());
    assert!(
        missing.stderr.contains("no snapshot \"nope\"") && missing.stderr.contains("by-hand"),
        "{}",
        missing.describe()
    );

    // Restore: the guest shut down, rolled back, started; the record back at the first commit.
    let restored = must(
        &["restore", &id, &before, "--yes", "--json"],
        DEPLOY_TIMEOUT,
    );
    let r = json_of(&restored, "restore --json");
    assert_eq!(r["status"], "RUNNING", "{r}");
    assert_eq!(text(&r["commit"]), first, "{r}");
    assert_eq!(text(&r["previous_commit"]), second, "{r}");
    let ct = pve.container(NODE, vmid).unwrap().expect("the container");
    assert_eq!(ct["status"], "running", "{ct}");
    let config = pve
        .get(&format!("/nodes/{NODE}/lxc/{vmid}/config"))
        .unwrap();
    assert_eq!(text(&config["parent"]), before, "rolled back to: {config}");
    let log = logs();
    for step in [
        format!("shutdown of CT {vmid}: task OK"),
        format!("rollback of CT {vmid} to {before}: task OK"),
        format!("start of CT {vmid}: task OK"),
        "answered HTTP 200".to_string(),
    ] {
        assert!(log.contains(&step), "no {step:?} in the log:\n{log}");
    }
    let url = text(&r["url"]);
    wait_http_ok(&url, Duration::from_secs(30)).expect("the app answers after the restore");

    // A rollback takes its own snapshot; keep = 1 deletes the one before the redeploy, and
    // never the one taken by hand.
    must(&["rollback", &id, "--json"], DEPLOY_TIMEOUT);
    let snaps = listed(&proxdeck, &id);
    let names: Vec<&str> = snaps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names.len(), 2, "{snaps:?}");
    assert_eq!(names[0], "by-hand", "{snaps:?}");
    assert!(
        names[1].starts_with(&format!("pd-rollback-{}-", &first[..7])),
        "{snaps:?}"
    );
    assert!(logs().contains(&format!("deleted snapshot {before} (snapshots.keep = 1)")));

    // The guest's disk moves to storage that cannot snapshot (a dir storage, raw volume): the
    // next redeploy says so once and goes on; the one after skips it quietly; a snapshot on
    // request is refused with the reason.
    pve.ctl(
        "storage",
        json!({"name": "plain", "attrs": {"type": "dir"}}),
    )
    .unwrap();
    pve.ctl(
        "set_guest",
        json!({"vmid": vmid, "config": {"rootfs": format!("plain:{vmid}/vm-{vmid}-disk-0.raw,size=8G")}}),
    )
    .unwrap();
    let before_lines = logs().lines().count();
    must(&["redeploy", &id, "--json"], DEPLOY_TIMEOUT);
    must(&["redeploy", &id, "--json"], DEPLOY_TIMEOUT);
    let log = logs();
    let new: Vec<&str> = log.lines().skip(before_lines).collect();
    let warned = new
        .iter()
        .filter(|l| l.contains("warning:") && l.contains("cannot be snapshotted"))
        .count();
    assert_eq!(warned, 1, "the warning once:\n{}", new.join("\n"));
    assert!(
        new.iter()
            .any(|l| l.contains("no snapshot before redeploy: plain:")),
        "{}",
        new.join("\n")
    );
    let refused = proxdeck.run(&["snapshot", &id], QUICK).unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", refused.describe());
    assert!(
        refused
            .stderr
            .contains("storage plain (dir) cannot be snapshotted"),
        "{}",
        refused.describe()
    );
    assert_eq!(listed(&proxdeck, &id).len(), 2, "no new snapshot");

    must(&["destroy", &id, "--yes"], DEPLOY_TIMEOUT);
    app.stop();
}

#[test]
fn a_datastore_that_cannot_snapshot_is_said_once_at_preflight_and_changes_go_on() {
    if skip_without(
        "a_datastore_that_cannot_snapshot_is_said_once_at_preflight_and_changes_go_on",
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
        .prefix("proxdeck-snapdir-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let data_dir = root.join("data");
    let app_root = root.join("apps");
    let name = format!("snapdir-{}", random_hex(6));
    let app = AppGuard::new(app_root.join(&name).join("run/app.pid"));
    let pve = FakePve::start(loopback()).expect("start fakepve");
    // A directory storage for containers: Proxmox cannot snapshot a container there.
    pve.ctl(
        "storage",
        json!({"name": "plain", "attrs": {"type": "dir", "content": "images,rootdir"}}),
    )
    .unwrap();
    let guest = loopback();
    let ssh = SshHost::start(guest, &data_dir.join("keys/id_ed25519.pub")).expect("start sshd");
    let git = GitServer::start(loopback()).expect("start git daemon");
    let sample = git.add_flask_app("snapdir-sample").unwrap();
    let port = free_port_any().unwrap().to_string();
    let config = root.join("config.toml");
    write_private(
        &config,
        &config_text(&pve, ssh.port(), &app_root, guest, "plain"),
    )
    .unwrap();
    let proxdeck = Proxdeck::new(config, data_dir.clone(), root);
    let logs = || {
        proxdeck
            .run(&["logs", &name], QUICK)
            .map(|d| d.stdout)
            .unwrap_or_default()
    };
    let must = |args: &[&str]| -> Finished {
        let done = proxdeck.run(args, DEPLOY_TIMEOUT).unwrap();
        assert!(
            done.success(),
            "{args:?}: {}\n--- logs ---\n{}\n--- fakepve ---\n{}",
            done.describe(),
            logs(),
            pve.log_tail()
        );
        done
    };
    let deployed = must(&[
        "deploy",
        "--repo",
        &sample.git_url,
        "--framework",
        "flask",
        "--type",
        "lxc",
        "--name",
        &name,
        "--port",
        &port,
        "--json",
    ]);
    let id = text(&json_of(&deployed, "deploy --json")["id"]);
    let warning = "warning: storage plain (dir) cannot snapshot a CT";
    assert!(
        deployed.stderr.contains(warning),
        "no preflight warning:\n{}",
        deployed.stderr
    );
    // A redeploy goes on without a snapshot, and says so quietly, not as a second warning.
    must(&["redeploy", &id]);
    let log = logs();
    assert_eq!(log.matches(warning).count(), 1, "{log}");
    assert!(
        log.contains("no snapshot before redeploy: storage plain (dir)"),
        "{log}"
    );
    let listed = proxdeck.run(&["snapshots", &id, "--json"], QUICK).unwrap();
    let v = json_of(&listed, "snapshots --json");
    assert_eq!(v["snapshots"].as_array().map(Vec::len), Some(0), "{v}");
    assert!(text(&v["unavailable"]).contains("plain (dir)"), "{v}");
    must(&["destroy", &id, "--yes"]);
    app.stop();
}
