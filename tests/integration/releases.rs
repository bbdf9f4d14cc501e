//! Releases on a real host (issue 12): `deploy --host` onto an sshd test host on a loopback
//! address (this machine plays the host; proxdeck's own supervisor runs the app), a tiny app
//! served by Python's own HTTP server from the release's checkout, so its answer says which
//! release serves. What is shown:
//!
//! - a redeploy whose build fails leaves the running release serving, and still serving after
//!   its process is killed (the supervisor restarts it from the same, untouched release);
//! - a release that fails its health check after the switch is switched away from: the one
//!   before serves again, the deployment is FAILED saying so, the release is marked failed;
//! - `rollback` switches without building (the build counts its runs in the app's HOME);
//!   `rollback --to COMMIT` picks a kept release, and names the kept ones when it cannot;
//!   `[releases] keep` prunes old releases but never the current one;
//! - a second deployment on the port of a running one is refused, naming the first; the first
//!   keeps serving;
//! - what a killed run leaves (a release folder marked building, a venv without pip, a
//!   half-written node_modules) is removed, and the next deploy builds afresh.

use crate::support::git::GitServer;
use crate::support::net::{free_port_any, http_get, loopback, random_hex};
use crate::support::parts::{Part, skip_without};
use crate::support::process::Finished;
use crate::support::proxdeck::{AppGuard, Proxdeck, write_private};
use crate::support::sshd::SshHost;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(600);
const QUICK: Duration = Duration::from_secs(60);

/// The app's start command: Python's HTTP server on the release's checkout, unless the
/// checkout holds a non-empty file CRASH (then it exits at once, saying so on stderr).
const START: &str = "if [ -s CRASH ]; then echo \"crash-marker: this release exits\" >&2; exit 3; fi; exec python3 -m http.server --bind 0.0.0.0 $PORT";
/// The build: fails when the checkout holds a non-empty BROKEN; counts its runs in the app's HOME.
const BUILD: &str = "echo build >> \"$HOME/builds\"; if [ -s BROKEN ]; then echo 'build error: BROKEN' >&2; exit 2; fi";

struct Rig {
    _work: tempfile::TempDir,
    app_root: PathBuf,
    ssh: SshHost,
    git: GitServer,
    proxdeck: Proxdeck,
    names: Vec<String>,
}

impl Rig {
    fn new(prefix: &str, keep: u32) -> Rig {
        let work = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let root = work.path().to_path_buf();
        // The apps' own users must reach their folders under it.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let data_dir = root.join("data");
        let app_root = root.join("apps");
        let ssh =
            SshHost::start(loopback(), &data_dir.join("keys/id_ed25519.pub")).expect("start sshd");
        let git = GitServer::start(loopback()).expect("start git daemon");
        let config = root.join("config.toml");
        write_private(
            &config,
            &format!(
                "[guest]\nssh_user = \"root\"\napp_root = \"{}\"\n\n\
                 [timeouts]\nssh_secs = 30\nhealth_secs = 60\nprovision_secs = 300\n\n\
                 [releases]\nkeep = {keep}\n",
                app_root.display()
            ),
        )
        .unwrap();
        let proxdeck = Proxdeck::new(config, data_dir, &root);
        Rig {
            _work: work,
            app_root,
            ssh,
            git,
            proxdeck,
            names: Vec::new(),
        }
    }

    fn run(&self, args: &[&str]) -> Finished {
        self.proxdeck
            .run(args, LIMIT)
            .unwrap_or_else(|e| panic!("proxdeck {args:?}: {e:#}"))
    }

    fn must(&self, args: &[&str]) -> Finished {
        let done = self.run(args);
        if !done.success() {
            let logs = self
                .proxdeck
                .run(&["logs", args.get(1).copied().unwrap_or("")], QUICK)
                .map(|l| l.stdout)
                .unwrap_or_default();
            panic!(
                "proxdeck {args:?} failed: {}\n--- logs ---\n{logs}\n--- sshd ---\n{}",
                done.describe(),
                self.ssh.log_tail()
            );
        }
        done
    }

    /// A repo whose index.html says `body`.
    fn repo(&self, name: &str, body: &str) -> String {
        self.git
            .add_repo(name, &[("index.html", body.to_string())])
            .unwrap();
        self.git.git_url(name)
    }

    /// A new commit of `repo` with index.html saying `body`, plus `extra` files.
    fn change(&self, repo: &str, body: &str, extra: &[(&str, &str)]) -> String {
        let mut files = vec![("index.html", body.to_string())];
        files.extend(extra.iter().map(|(p, t)| (*p, t.to_string())));
        self.git.push_change(repo, &files, body).unwrap()
    }

    fn deploy(&mut self, repo_url: &str, name: &str, port: u16) -> Finished {
        self.names.push(name.to_string());
        let host = format!("{}:{}", self.ssh.addr(), self.ssh.port());
        let port = port.to_string();
        self.run(&[
            "deploy",
            "--repo",
            repo_url,
            "--framework",
            "flask",
            "--host",
            &host,
            "--name",
            name,
            "--port",
            &port,
            "--install",
            "true",
            "--build",
            BUILD,
            "--start",
            START,
            "--json",
        ])
    }

    fn show(&self, name: &str) -> Value {
        json_of(&self.must(&["show", name, "--json"]))
    }

    fn app_dir(&self, name: &str) -> PathBuf {
        self.app_root.join(name)
    }

    /// The release folder `current` points at.
    fn current(&self, name: &str) -> String {
        let link = std::fs::read_link(self.app_dir(name).join("current")).unwrap();
        link.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// How many times the build ran for `name`.
    fn builds(&self, name: &str) -> usize {
        std::fs::read_to_string(self.app_dir(name).join("home/builds"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    fn folders(&self, name: &str) -> Vec<String> {
        let mut all: Vec<String> = std::fs::read_dir(self.app_dir(name).join("releases"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        all.sort();
        all
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for name in &self.names {
            AppGuard::new(self.app_root.join(name).join("run/app.pid")).stop();
            let user = format!("pd-{name}");
            let _ = Command::new("pkill")
                .args(["-KILL", "--ns", &std::process::id().to_string()])
                .args(["--nslist", "pid", "-u", &user])
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("userdel")
                .arg(&user)
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn json_of(done: &Finished) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", done.describe()))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Waits until `url` answers with a body containing `want`.
fn wait_body(url: &str, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match http_get(url, Duration::from_secs(5)) {
            Ok(r) if r.body.contains(want) => return,
            Ok(r) => last = format!("HTTP {}: {:?}", r.status, r.body),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{url} did not answer with {want:?} within {within:?}; last: {last}");
}

/// The releases `show --json` lists, as (commit prefix, state).
fn release_states(shown: &Value) -> Vec<(String, String)> {
    shown["releases"]
        .as_array()
        .unwrap_or_else(|| panic!("no releases in {shown}"))
        .iter()
        .map(|r| {
            (
                text(&r["commit"]).chars().take(12).collect(),
                text(&r["state"]),
            )
        })
        .collect()
}

fn state_of(shown: &Value, commit: &str) -> String {
    release_states(shown)
        .into_iter()
        .find(|(c, _)| commit.starts_with(c.as_str()))
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no release of {commit} in {shown}"))
}

#[test]
fn a_failed_build_or_health_check_leaves_the_running_release_serving() {
    if skip_without(
        "a_failed_build_or_health_check_leaves_the_running_release_serving",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let mut rig = Rig::new("proxdeck-rel-fail-", 5);
    let name = format!("rf-{}", random_hex(5));
    let port = free_port_any().unwrap();
    let url = format!("http://{}:{port}/", rig.ssh.addr());
    let repo = rig.repo(&name, "release one");
    let first = rig.git.head(&name).unwrap();
    let done = rig.deploy(&repo, &name, port);
    assert!(done.success(), "deploy: {}", done.describe());
    wait_body(&url, "release one", QUICK);
    let serving = rig.current(&name);

    // A commit whose build fails: the redeploy fails, the running release never stopped.
    let broken = rig.change(&name, "release two", &[("BROKEN", "yes")]);
    let done = rig.run(&["redeploy", &name]);
    assert!(
        !done.success(),
        "a failed build was accepted: {}",
        done.describe()
    );
    let said = format!("{}{}", done.stdout, done.stderr);
    assert!(said.contains("build"), "{said}");
    wait_body(&url, "release one", QUICK);
    assert_eq!(
        rig.current(&name),
        serving,
        "the failed build was switched to"
    );
    let shown = rig.show(&name);
    assert_eq!(shown["status"], "FAILED", "{shown}");
    assert_eq!(state_of(&shown, &broken), "failed", "{shown}");
    assert_eq!(state_of(&shown, &first), "current", "{shown}");

    // The app's process killed (a crash, an OOM kill): its supervisor restarts it from the
    // same release, untouched by the failed build.
    let user = format!("pd-{name}");
    let killed = Command::new("pkill")
        .args(["-KILL", "--ns", &std::process::id().to_string()])
        .args(["--nslist", "pid", "-u", &user, "-f", "http.server"])
        .status()
        .unwrap();
    assert!(killed.success(), "no app process to kill");
    // Down (the supervisor waits 2 s before it restarts a crashed app), then up again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(&url, Duration::from_secs(1)).is_ok() {
        assert!(Instant::now() < deadline, "the killed app kept answering");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_body(&url, "release one", QUICK);
    assert!(
        rig.app_dir(&name)
            .join("releases")
            .join(&serving)
            .join("src/index.html")
            .is_file()
    );

    // A commit that builds but exits at once: the switch happens, the health check fails
    // fast with the app's own log, and the release before serves again.
    let crashing = rig.change(&name, "release three", &[("CRASH", "yes"), ("BROKEN", "")]);
    let done = rig.run(&["redeploy", &name]);
    assert!(
        !done.success(),
        "a crashing release was accepted: {}",
        done.describe()
    );
    let said = format!("{}{}", done.stdout, done.stderr);
    assert!(
        said.contains("crash-marker"),
        "no log tail of the app: {said}"
    );
    assert!(said.contains("switched back to release"), "{said}");
    wait_body(&url, "release one", QUICK);
    assert_eq!(rig.current(&name), serving);
    let shown = rig.show(&name);
    assert_eq!(shown["status"], "FAILED", "{shown}");
    assert_eq!(state_of(&shown, &crashing), "failed", "{shown}");
    assert_eq!(state_of(&shown, &first), "current", "{shown}");
    let failed_folder = rig
        .folders(&name)
        .into_iter()
        .find(|f| crashing.starts_with(f.split_once('-').unwrap().1))
        .expect("the failed release stays on the guest");
    let state = std::fs::read_to_string(
        rig.app_dir(&name)
            .join("releases")
            .join(&failed_folder)
            .join("state"),
    )
    .unwrap();
    assert_eq!(state.trim(), "failed");
}

#[test]
fn rollback_switches_without_building_and_keeps_n_releases() {
    if skip_without(
        "rollback_switches_without_building_and_keeps_n_releases",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let mut rig = Rig::new("proxdeck-rel-rb-", 3);
    let name = format!("rb-{}", random_hex(5));
    let port = free_port_any().unwrap();
    let url = format!("http://{}:{port}/", rig.ssh.addr());
    let repo = rig.repo(&name, "version 1");
    let c1 = rig.git.head(&name).unwrap();
    let done = rig.deploy(&repo, &name, port);
    assert!(done.success(), "deploy: {}", done.describe());
    let c2 = rig.change(&name, "version 2", &[]);
    rig.must(&["redeploy", &name]);
    let c3 = rig.change(&name, "version 3", &[]);
    rig.must(&["redeploy", &name]);
    wait_body(&url, "version 3", QUICK);
    assert_eq!(rig.builds(&name), 3);

    // rollback: the previous good release (version 2), without a build.
    let done = rig.must(&["rollback", &name, "--json"]);
    let d = json_of(&done);
    assert_eq!(text(&d["commit"]), c2, "{d}");
    wait_body(&url, "version 2", QUICK);
    assert_eq!(rig.builds(&name), 3, "rollback ran the build");
    let logs = rig.must(&["logs", &name]).stdout;
    let rollback_part = &logs[logs.rfind("rolling back").expect("no rollback line")..];
    assert!(
        !rollback_part.contains("==> build") && !rollback_part.contains("==> source"),
        "rollback fetched or built:\n{rollback_part}"
    );

    // A second rollback returns to where the first started.
    rig.must(&["rollback", &name]);
    wait_body(&url, "version 3", QUICK);

    // --to a kept commit, by its short id.
    rig.must(&["rollback", &name, "--to", &c1[..8]]);
    wait_body(&url, "version 1", QUICK);
    assert_eq!(rig.builds(&name), 3, "rollback --to ran the build");
    let shown = rig.show(&name);
    assert_eq!(state_of(&shown, &c1), "current", "{shown}");
    assert_eq!(state_of(&shown, &c3), "good", "{shown}");

    // --to a commit no release holds: refused, naming the kept ones and the way out.
    let done = rig.run(&["rollback", &name, "--to", "deadbeef"]);
    assert!(!done.success(), "{}", done.describe());
    let said = format!("{}{}", done.stdout, done.stderr);
    assert!(said.contains("not among the kept releases"), "{said}");
    assert!(
        said.contains(&c2[..12]) && said.contains("redeploy"),
        "{said}"
    );
    wait_body(&url, "version 1", QUICK);

    // keep = 3: a fourth build prunes the oldest release that is neither current nor previous.
    let c4 = rig.change(&name, "version 4", &[]);
    rig.must(&["redeploy", &name]);
    wait_body(&url, "version 4", QUICK);
    let folders = rig.folders(&name);
    assert_eq!(folders.len(), 3, "{folders:?}");
    assert!(
        folders
            .iter()
            .any(|f| c4.starts_with(f.split_once('-').unwrap().1))
    );
    // The previous release (version 1, current before) is kept.
    assert!(
        folders
            .iter()
            .any(|f| c1.starts_with(f.split_once('-').unwrap().1)),
        "{folders:?}"
    );
    let shown = rig.show(&name);
    let removed = release_states(&shown)
        .into_iter()
        .filter(|(_, s)| s == "removed")
        .count();
    assert_eq!(removed, 1, "{shown}");
}

#[test]
fn a_port_held_by_another_deployment_is_refused_by_name() {
    if skip_without(
        "a_port_held_by_another_deployment_is_refused_by_name",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let mut rig = Rig::new("proxdeck-rel-port-", 5);
    let first = format!("pa-{}", random_hex(5));
    let second = format!("pb-{}", random_hex(5));
    let port = free_port_any().unwrap();
    let url = format!("http://{}:{port}/", rig.ssh.addr());
    let repo_a = rig.repo(&first, "app A");
    let repo_b = rig.repo(&second, "app B");
    let done = rig.deploy(&repo_a, &first, port);
    assert!(done.success(), "deploy A: {}", done.describe());
    wait_body(&url, "app A", QUICK);

    let done = rig.deploy(&repo_b, &second, port);
    assert!(
        !done.success(),
        "B on A's port was accepted: {}",
        done.describe()
    );
    let said = format!("{}{}", done.stdout, done.stderr);
    assert!(said.contains(&format!("port {port} is in use")), "{said}");
    assert!(
        said.contains(&format!("pd-{first}")),
        "no process named: {said}"
    );
    assert!(
        said.contains(&format!("deployment {first}")),
        "the other deployment is not named: {said}"
    );
    assert_eq!(rig.show(&second)["status"], "FAILED");
    assert_eq!(rig.show(&first)["status"], "RUNNING");
    wait_body(&url, "app A", QUICK);
}

#[test]
fn what_a_killed_run_left_is_removed_and_built_afresh() {
    if skip_without(
        "what_a_killed_run_left_is_removed_and_built_afresh",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let mut rig = Rig::new("proxdeck-rel-idem-", 5);
    let name = format!("id-{}", random_hex(5));
    let port = free_port_any().unwrap();
    let url = format!("http://{}:{port}/", rig.ssh.addr());
    let repo = rig.repo(&name, "first");
    let done = rig.deploy(&repo, &name, port);
    assert!(done.success(), "deploy: {}", done.describe());
    wait_body(&url, "first", QUICK);

    // What a run killed half-way leaves: a release folder still "building", with a venv made
    // without pip, a half-written node_modules and a half-built dist/.
    let leftover = rig.app_dir(&name).join("releases/7-0123456789ab");
    std::fs::create_dir_all(leftover.join("src/node_modules/left-pad")).unwrap();
    std::fs::write(
        leftover.join("src/node_modules/left-pad/package.json"),
        "{\"na",
    )
    .unwrap();
    std::fs::create_dir_all(leftover.join("src/dist")).unwrap();
    std::fs::write(leftover.join("state"), "building\n").unwrap();
    let venv = Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(leftover.join("venv"))
        .status()
        .unwrap();
    assert!(venv.success());

    let next = rig.change(&name, "second", &[]);
    let done = rig.must(&["redeploy", &name, "--json"]);
    assert_eq!(text(&json_of(&done)["commit"]), next);
    wait_body(&url, "second", QUICK);
    assert!(!leftover.exists(), "the unfinished release was left");
    // The new release is a folder of its own (the leftover is gone, not reused), and its venv
    // works.
    let current = rig.current(&name);
    assert!(current.starts_with("2-"), "{current}");
    let pip = Command::new(
        rig.app_dir(&name)
            .join("releases")
            .join(&current)
            .join("venv/bin/python"),
    )
    .args(["-m", "pip", "--version"])
    .output()
    .unwrap();
    assert!(pip.status.success(), "the release's venv has no pip");
    let logs = rig.must(&["logs", &name]).stdout;
    assert!(
        logs.contains("removing the unfinished release 7-0123456789ab"),
        "{logs}"
    );
}
