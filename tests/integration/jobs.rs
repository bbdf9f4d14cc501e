//! Work that outlives the terminal, on real parts: operations are jobs run by proxdeck's
//! detached worker. A deploy started inside tmux survives `tmux kill-session`; `deploy
//! --detach` then `logs -f` from another process sees every line in order; with
//! `max_parallel = 2` five deploys run two at a time and the rest wait as QUEUED; the rules
//! refuse destroying an imported entry; cancel (CLI and TUI) during terraform-apply stops
//! terraform cleanly and `retry` continues; kill -9 of the worker mid-job leaves no terraform
//! behind and the next command reports the job interrupted.
//!
//! Host deployments (`--host` onto an sshd test host, the Flask sample with a quick start
//! command) make the queue tests fast; the terraform ones use the stand-in template with a
//! slow step (`terraform_flow::slow_template`) against fakepve.

use crate::support::fakepve::{FakePve, NODE, OS_TEMPLATE};
use crate::support::git::GitServer;
use crate::support::net::{free_port, free_port_any, loopback, random_hex};
use crate::support::parts::{Part, skip_without};
use crate::support::process::Finished;
use crate::support::proxdeck::{Proxdeck, write_private};
use crate::support::sshd::SshHost;
use crate::terraform_flow::slow_template;
use crate::tui::{Session, capture, have_tmux, keys, tmux, wait_screen};
use crate::tui_deploy::shell_line;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(300);
const QUICK: Duration = Duration::from_secs(60);

fn json_of(done: &Finished, what: &str) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", done.describe()))
}

/// Waits until `pred` holds, polling every 100 ms, or panics naming `what`.
fn wait_until(what: &str, within: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !pred() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An sshd test host, a git daemon with the Flask sample, and a proxdeck data dir.
struct HostRig {
    _work: tempfile::TempDir,
    root: PathBuf,
    app_root: PathBuf,
    ssh: SshHost,
    _git: GitServer,
    repo: String,
    proxdeck: Proxdeck,
}

impl HostRig {
    fn new(prefix: &str, jobs: &str) -> HostRig {
        let work = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let root = work.path().to_path_buf();
        // The apps' own users must reach their folders under it.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let data_dir = root.join("data");
        let app_root = root.join("apps");
        let keys = data_dir.join("keys/id_ed25519.pub");
        let ssh = SshHost::start(loopback(), &keys).expect("start sshd");
        let git = GitServer::start(loopback()).expect("start git daemon");
        let repo = git.add_flask_app("jobs-sample").unwrap().git_url;
        let config = root.join("config.toml");
        write_private(
            &config,
            &format!(
                "[guest]\nssh_user = \"root\"\napp_root = \"{}\"\n\n\
                 [timeouts]\nssh_secs = 30\nhealth_secs = 60\nprovision_secs = 300\n\n\
                 [jobs]\n{jobs}\n",
                app_root.display()
            ),
        )
        .unwrap();
        let proxdeck = Proxdeck::new(config, data_dir, &root);
        HostRig {
            _work: work,
            root,
            app_root,
            ssh,
            _git: git,
            repo,
            proxdeck,
        }
    }

    fn run(&self, args: &[&str]) -> Finished {
        self.proxdeck
            .run(args, LIMIT)
            .unwrap_or_else(|e| panic!("proxdeck {args:?}: {e:#}"))
    }

    /// The arguments of a quick host deploy of the sample: no dependency install, a build
    /// that takes `build_secs`, Python's own HTTP server as the app.
    fn deploy_args(&self, name: &str, port: u16, build_secs: u32) -> Vec<String> {
        [
            "deploy",
            "--repo",
            &self.repo,
            "--framework",
            "flask",
            "--host",
            &format!("{}:{}", self.ssh.addr(), self.ssh.port()),
            "--name",
            name,
            "--port",
            &port.to_string(),
            "--install",
            "true",
            "--build",
            &format!("sleep {build_secs}"),
            "--start",
            "exec python3 -m http.server --bind 0.0.0.0 $PORT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn show(&self, name: &str) -> Value {
        json_of(&self.run(&["show", name, "--json"]), "show --json")
    }

    fn destroy(&self, name: &str) {
        let done = self.run(&["destroy", name, "--yes"]);
        assert!(done.success(), "destroy {name}: {}", done.describe());
    }
}

impl Drop for HostRig {
    fn drop(&mut self) {
        // What a failing test may have left: the apps' processes and users.
        if let Ok(entries) = std::fs::read_dir(&self.app_root) {
            for e in entries.flatten() {
                let user = format!("pd-{}", e.file_name().to_string_lossy());
                let _ = Command::new("pkill")
                    .args(["-KILL", "-u", &user])
                    .stderr(Stdio::null())
                    .status();
                let _ = Command::new("userdel")
                    .arg(&user)
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = &self.root;
    }
}

#[test]
fn a_deploy_started_in_tmux_survives_kill_session_and_reaches_running() {
    if skip_without(
        "a_deploy_started_in_tmux_survives_kill_session_and_reaches_running",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) || !have_tmux("a_deploy_started_in_tmux_survives_kill_session")
    {
        return;
    }
    let rig = HostRig::new("pd-jobs-tmux-", "max_parallel = 2\nidle_exit_secs = 3");
    let name = format!("survivor-{}", random_hex(4));
    let port = free_port(rig.ssh.addr()).unwrap();
    // The command a user types in a terminal: the binary with the harness's environment.
    let base = shell_line(&rig.proxdeck);
    let args: Vec<String> = rig
        .deploy_args(&name, port, 8)
        .iter()
        .map(|a| shlex::try_quote(a).unwrap().to_string())
        .collect();
    let line = base.replacen(
        "; echo \"proxdeck exited $?\"",
        &format!(" {}; echo \"proxdeck exited $?\"", args.join(" ")),
        1,
    );
    let session = Session(format!("pd-jobs-{}", random_hex(6)));
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "160",
        "-y",
        "40",
        &line,
    ]);
    assert!(started.status.success(), "{started:?}");
    // The build is running when the terminal goes away, as an SSH session drops.
    wait_screen(&session.0, LIMIT, |s| s.contains("stage provision"))
        .unwrap_or_else(|s| panic!("the deploy did not reach provisioning in tmux:\n{s}"));
    let killed = tmux(&["kill-session", "-t", &session.0]);
    assert!(killed.status.success(), "{killed:?}");
    let d = {
        let mut last = Value::Null;
        wait_until("RUNNING after the terminal was gone", LIMIT, || {
            last = rig.show(&name);
            last["status"] == "RUNNING" || last["status"] == "FAILED"
        });
        last
    };
    assert_eq!(d["status"], "RUNNING", "{d}");
    let logs = rig.run(&["logs", &name]);
    assert!(logs.stdout.contains("RUNNING at"), "{}", logs.stdout);
    let url = format!("http://{}:{port}/", rig.ssh.addr());
    crate::support::net::wait_http_ok(&url, QUICK).expect("the app answers");
    rig.destroy(&name);
}

#[test]
fn a_detached_deploy_is_followed_from_another_process_line_by_line() {
    if skip_without(
        "a_detached_deploy_is_followed_from_another_process_line_by_line",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let rig = HostRig::new("pd-jobs-follow-", "idle_exit_secs = 3");
    let name = format!("followed-{}", random_hex(4));
    let port = free_port(rig.ssh.addr()).unwrap();
    let mut args = rig.deploy_args(&name, port, 3);
    args.push("--detach".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let queued = rig.run(&args);
    assert!(queued.success(), "{}", queued.describe());
    assert!(
        queued.stdout.contains("started as job #1") && queued.stdout.contains("logs -f"),
        "{}",
        queued.stdout
    );
    let id = queued.stdout.split_whitespace().next().unwrap().to_string();
    // Another process follows the job to its end.
    let followed = rig.run(&["logs", "-f", &id]);
    assert!(followed.success(), "{}", followed.describe());
    let all = rig.run(&["logs", &id]);
    assert_eq!(
        followed.stdout, all.stdout,
        "logs -f saw every line, in order, and nothing else"
    );
    assert!(
        followed.stdout.contains("RUNNING at"),
        "{}",
        followed.stdout
    );
    let jobs = json_of(&rig.run(&["jobs", "--json"]), "jobs --json");
    assert_eq!(jobs["active"].as_array().unwrap().len(), 0, "{jobs}");
    assert_eq!(jobs["recent"][0]["state"], "succeeded", "{jobs}");
    rig.destroy(&name);
}

#[test]
fn two_run_at_once_and_the_others_wait_as_queued() {
    if skip_without(
        "two_run_at_once_and_the_others_wait_as_queued",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let rig = HostRig::new("pd-jobs-queue-", "max_parallel = 2\nidle_exit_secs = 3");
    let names: Vec<String> = (0..5).map(|i| format!("q{i}-{}", random_hex(3))).collect();
    for name in &names {
        let port = free_port(rig.ssh.addr()).unwrap();
        let mut args = rig.deploy_args(name, port, 6);
        args.push("--detach".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let queued = rig.run(&args);
        assert!(queued.success(), "{}", queued.describe());
    }
    // Two run, three wait: seen in `jobs` and in `list`.
    let mut seen_two_and_three = false;
    let mut most_running = 0;
    let deadline = Instant::now() + LIMIT;
    loop {
        let jobs = json_of(&rig.run(&["jobs", "--json"]), "jobs --json");
        let active = jobs["active"].as_array().unwrap();
        let running = active.iter().filter(|j| j["state"] == "running").count();
        let queued = active.iter().filter(|j| j["state"] == "queued").count();
        most_running = most_running.max(running);
        if running == 2 && queued == 3 {
            // `list` a moment later shows the same, unless a job ended in between.
            let list = rig.run(&["list"]);
            if list.stdout.matches("QUEUED").count() == 3 {
                assert!(list.stdout.contains("(3rd in line)"), "{}", list.stdout);
                seen_two_and_three = true;
            }
        }
        if active.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "jobs still active: {jobs}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(seen_two_and_three, "never saw 2 running and 3 queued");
    assert_eq!(most_running, 2, "never more than max_parallel at once");
    for name in &names {
        assert_eq!(rig.show(name)["status"], "RUNNING", "{name}");
    }
    for name in &names {
        rig.destroy(name);
    }
}

#[test]
fn destroying_an_imported_entry_is_refused_in_the_rules_words() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let data = root.join("data");
    let config = root.join("config.toml");
    write_private(&config, "").unwrap();
    let proxdeck = Proxdeck::new(config, data.clone(), root);
    // An entry sync imported: written straight into the store, as sync does.
    let d = proxdeck::domain::Deployment {
        id: proxdeck::domain::DeploymentId("imp123".into()),
        name: "legacy-db".into(),
        origin: proxdeck::domain::Origin::Imported,
        status: proxdeck::domain::Status::Running,
        vmid: Some(140),
        node: Some("pve".into()),
        ..Default::default()
    };
    {
        let mut store = proxdeck::store::Store::open(&data.join("proxdeck.db")).unwrap();
        store.insert_deployment(&d).unwrap();
    }
    let words = proxdeck::domain::policy::check(proxdeck::domain::OpKind::Destroy, &d).unwrap_err();
    let done = proxdeck
        .run(&["destroy", "legacy-db", "--yes"], QUICK)
        .unwrap();
    assert_eq!(done.status.code(), Some(1), "{}", done.describe());
    assert_eq!(done.stderr.trim(), format!("error: {words}"));
    // No job was queued and the entry is untouched.
    let jobs = proxdeck.run(&["jobs", "--json"], QUICK).unwrap();
    let jobs: Value = serde_json::from_str(&jobs.stdout).unwrap();
    assert_eq!(jobs["recent"].as_array().unwrap().len(), 0, "{jobs}");
    let shown = proxdeck.run(&["show", "imp123", "--json"], QUICK).unwrap();
    assert_eq!(json_of(&shown, "show")["status"], "RUNNING");
}

/// The terraform rig: fakepve, the stand-in template with one slow step, nothing listening
/// on the guest's SSH port (a run that gets past terraform stops at ssh, quickly).
struct TfRig {
    _work: tempfile::TempDir,
    _pve: FakePve,
    _git: GitServer,
    repo: String,
    data_dir: PathBuf,
    proxdeck: Proxdeck,
}

impl TfRig {
    fn new(prefix: &str) -> TfRig {
        let work = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let root = work.path().to_path_buf();
        let templates = root.join("templates");
        std::fs::create_dir_all(templates.join("lxc")).unwrap();
        std::fs::write(templates.join("lxc/main.tf.hbs"), slow_template()).unwrap();
        let pve = FakePve::start(loopback()).expect("start fakepve");
        let git = GitServer::start(loopback()).expect("start git daemon");
        let repo = git.add_flask_app("jobs-tf").unwrap().git_url;
        let closed_port = free_port_any().unwrap();
        let config = root.join("config.toml");
        write_private(
            &config,
            &format!(
                "[proxmox]\nendpoint = \"{url}\"\napi_token = \"{token}\"\nca_file = \"{ca}\"\n\
                 node = \"{NODE}\"\n\n\
                 [guest]\nos_template = \"{OS_TEMPLATE}\"\nvmid_range = \"4500-4599\"\n\
                 ssh_port = {closed_port}\n\n\
                 [network]\npool = \"127.0.0.1/32\"\nprefix = 8\ngateway = \"127.0.0.1\"\n\n\
                 [terraform]\ntemplates_dir = \"{templates}\"\n\n\
                 [timeouts]\nssh_secs = 2\n\n[jobs]\nidle_exit_secs = 3\n",
                url = pve.url(),
                token = pve.token(),
                ca = pve.ca_file().display(),
                templates = templates.display(),
            ),
        )
        .unwrap();
        let data_dir = root.join("data");
        let proxdeck = Proxdeck::new(config, data_dir.clone(), &root);
        TfRig {
            _work: work,
            _pve: pve,
            _git: git,
            repo,
            data_dir,
            proxdeck,
        }
    }

    fn run(&self, args: &[&str]) -> Finished {
        self.proxdeck
            .run(args, LIMIT)
            .unwrap_or_else(|e| panic!("proxdeck {args:?}: {e:#}"))
    }

    /// `deploy --detach` of the sample; returns the deployment's id once the slow step runs.
    fn deploy_until_slow(&self, name: &str) -> String {
        let queued = self.run(&[
            "deploy",
            "--repo",
            &self.repo,
            "--framework",
            "flask",
            "--name",
            name,
            "--detach",
        ]);
        assert!(queued.success(), "{}", queued.describe());
        let started = self.data_dir.join("workspaces/slow.started");
        wait_until("the slow terraform step", LIMIT, || started.exists());
        queued.stdout.split_whitespace().next().unwrap().to_string()
    }

    fn show(&self, id: &str) -> Value {
        json_of(&self.run(&["show", id, "--json"]), "show --json")
    }

    /// A retry after the cancel gets past terraform (its state was saved) and stops at ssh.
    fn retry_continues(&self, id: &str) {
        let retried = self.run(&["retry", id]);
        assert!(!retried.success());
        assert!(
            retried.stdout.contains("slow-fast") || retried.stdout.contains("No changes"),
            "terraform converged from the saved state: {}",
            retried.stdout
        );
        assert!(
            retried.stderr.contains("stage ssh failed"),
            "{}",
            retried.describe()
        );
        assert!(
            !retried.stderr.contains("state lock")
                && !retried.stdout.contains("Error acquiring the state lock")
        );
    }
}

fn terraform_groups(record: &Path) -> Vec<i32> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn cancel_from_another_process_during_apply_stops_terraform_cleanly() {
    if skip_without(
        "cancel_from_another_process_during_apply_stops_terraform_cleanly",
        &[Part::Fakepve, Part::Terraform, Part::Git],
    ) {
        return;
    }
    let rig = TfRig::new("pd-jobs-cancel-");
    let name = format!("cancelled-{}", random_hex(4));
    let id = rig.deploy_until_slow(&name);
    let asked = rig.run(&["cancel", &id]);
    assert!(asked.success(), "{}", asked.describe());
    assert!(
        asked.stdout.contains("is asked to stop"),
        "{}",
        asked.stdout
    );
    let mut shown = Value::Null;
    wait_until("the job cancelled", LIMIT, || {
        shown = rig.show(&id);
        shown["job"].is_null()
    });
    assert_eq!(shown["status"], "FAILED", "{shown}");
    let error = shown["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("terraform-apply: terraform apply was cancelled"),
        "{error}"
    );
    let jobs = json_of(&rig.run(&["jobs", "--json"]), "jobs");
    assert_eq!(jobs["recent"][0]["state"], "cancelled", "{jobs}");
    assert!(
        jobs["recent"][0]["outcome"]["message"]
            .as_str()
            .unwrap()
            .starts_with("cancelled by the user"),
        "{jobs}"
    );
    let logs = rig.run(&["logs", &id]);
    assert!(
        logs.stdout.contains("Interrupt received."),
        "{}",
        logs.stdout
    );
    rig.retry_continues(&id);
}

#[test]
fn cancel_from_the_dashboard_during_apply_and_the_dashboard_shows_work_started_elsewhere() {
    if skip_without(
        "cancel_from_the_dashboard_during_apply",
        &[Part::Fakepve, Part::Terraform, Part::Git],
    ) || !have_tmux("cancel_from_the_dashboard_during_apply")
    {
        return;
    }
    let rig = TfRig::new("pd-jobs-tui-");
    let name = format!("tui-cancel-{}", random_hex(4));
    let id = rig.deploy_until_slow(&name);
    let session = Session(format!("pd-jobs-tui-{}", random_hex(6)));
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "140",
        "-y",
        "35",
        &shell_line(&rig.proxdeck),
    ]);
    assert!(started.status.success(), "{started:?}");
    // A dashboard opened now shows the deploy another process started, live.
    wait_screen(&session.0, QUICK, |s| {
        s.contains(&name) && s.contains("PROVISIONING")
    })
    .unwrap_or_else(|s| panic!("the running deploy is not shown:\n{s}"));
    keys(&session.0, &["c"]);
    wait_screen(&session.0, QUICK, |s| s.contains("Cancel deploy of"))
        .unwrap_or_else(|s| panic!("no confirmation:\n{s}"));
    keys(&session.0, &["y"]);
    wait_screen(&session.0, LIMIT, |s| s.contains("FAILED"))
        .unwrap_or_else(|s| panic!("the cancel did not show:\n{s}"));
    keys(&session.0, &["q"]);
    wait_screen(&session.0, QUICK, |s| s.contains("proxdeck exited 0"))
        .unwrap_or_else(|s| panic!("the dashboard did not quit:\n{s}"));
    drop(capture(&session.0));
    let shown = rig.show(&id);
    assert_eq!(shown["status"], "FAILED", "{shown}");
    let jobs = json_of(&rig.run(&["jobs", "--json"]), "jobs");
    assert_eq!(jobs["recent"][0]["state"], "cancelled", "{jobs}");
    assert!(
        jobs["recent"][0]["requested_by"]
            .as_str()
            .unwrap()
            .ends_with("via cli"),
        "the deploy was asked by the CLI: {jobs}"
    );
    rig.retry_continues(&id);
}

#[test]
fn kill_9_of_the_worker_leaves_no_terraform_and_the_next_command_says_so() {
    if skip_without(
        "kill_9_of_the_worker_leaves_no_terraform",
        &[Part::Fakepve, Part::Terraform, Part::Git],
    ) {
        return;
    }
    let rig = TfRig::new("pd-jobs-kill-");
    let name = format!("killed-{}", random_hex(4));
    let id = rig.deploy_until_slow(&name);
    let worker: i32 = std::fs::read_to_string(rig.data_dir.join("worker.lock"))
        .unwrap()
        .trim()
        .parse()
        .expect("the worker's pid in its lock file");
    let record = rig.data_dir.join("jobs/1.procs");
    let groups = terraform_groups(&record);
    assert!(!groups.is_empty(), "terraform's process group is recorded");
    kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    wait_until("the worker gone", QUICK, || {
        kill(Pid::from_raw(worker), None).is_err()
            || std::fs::read_to_string(format!("/proc/{worker}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    // terraform, in its own process group, outlived the worker...
    assert!(
        groups
            .iter()
            .any(|g| killpg(Pid::from_raw(*g), None).is_ok()),
        "terraform should still run right after the kill"
    );
    // ...until the next proxdeck command finds the job interrupted and stops it.
    let listed = rig.run(&["list"]);
    assert!(listed.success(), "{}", listed.describe());
    assert!(
        listed.stderr.contains("job #1 (deploy of") && listed.stderr.contains("was interrupted"),
        "{}",
        listed.stderr
    );
    for g in &groups {
        assert!(
            killpg(Pid::from_raw(*g), None).is_err(),
            "process group {g} still runs"
        );
    }
    let shown = rig.show(&id);
    assert_eq!(shown["status"], "FAILED", "{shown}");
    assert!(
        shown["error"].as_str().unwrap().contains("interrupted"),
        "{shown}"
    );
    let jobs = json_of(&rig.run(&["jobs", "--json"]), "jobs");
    assert_eq!(jobs["recent"][0]["state"], "failed", "{jobs}");
    // The leftover terraform was stopped with SIGINT first: the state lock is free again.
    rig.retry_continues(&id);
}
