//! The kill -9 suite (issue 10): SIGKILL of proxdeck (the command and its detached worker)
//! at every stage point of a deploy (preflight, terraform init, plan, apply, waiting for SSH,
//! provisioning, health check) and during a destroy's terraform destroy, several times each,
//! through the built binary against fakepve, the stand-in LXC template (a little slower around
//! creating and deleting the container, so kills land inside those windows), an sshd test host
//! as the guest and a git daemon serving a tiny Python app.
//!
//! After each kill the first `retry` (or `destroy`) must succeed, with: no orphan guest on the
//! fake (every container carries the id of the one live deployment; none after a destroy), no
//! two provisioning runs overlapping on the guest (proved twice: the app's install command
//! records its runs and whether an earlier one is still alive when it starts, and the runner's
//! own history of starts and ends), and no raw terraform lock text in any output. Half the
//! kills also kill terraform's process group (a crash of everything), half leave terraform
//! running (it outlives the worker, as it does on a real crash). The trial and success counts
//! are printed; at least 95% must succeed.
//!
//! Also the detached run's other promises: a dropped SSH connection during provisioning, or
//! one that hangs silently, is followed again over a fresh session (one run, every line once); a cancel stops the run on
//! the guest; the removal of a `--host` app stops a run left by a killed proxdeck first.

use crate::identity::{children, marked};
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

const DEPLOY: Duration = Duration::from_secs(300);
const QUICK: Duration = Duration::from_secs(120);
/// Kills per stage point.
const TRIALS: u32 = 3;
/// terraform's own words when another process holds the state lock.
const RAW_LOCK: &str = "Error acquiring the state lock";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Point {
    Preflight,
    TerraformInit,
    TerraformPlan,
    TerraformApply,
    Ssh,
    Provision,
    Health,
    Destroy,
}

impl Point {
    /// The output line after which the kill comes, and how long after it (by trial).
    fn marker(self) -> &'static str {
        match self {
            Point::Preflight => "--- stage preflight ---",
            Point::TerraformInit => "--- stage terraform-init ---",
            Point::TerraformPlan => "--- stage terraform-apply ---",
            Point::TerraformApply => "terraform_data.container: Creating...",
            Point::Ssh => "--- stage ssh ---",
            Point::Provision => "==> dependencies",
            Point::Health => "--- stage health-check ---",
            Point::Destroy => "terraform_data.container: Destroying...",
        }
    }

    fn delay(self, trial: u32) -> Duration {
        let ms = match self {
            // The container is created 0.5 s in, saved 1 s later: before, between, after.
            Point::TerraformApply => [200, 900, 1800][trial as usize % 3],
            // Deleted about 0.8 s in, the destroy done 1 s later.
            Point::Destroy => [200, 800, 1300][trial as usize % 3],
            Point::Ssh | Point::Provision | Point::Health => 300 + 400 * u64::from(trial % 3),
            _ => 0,
        };
        Duration::from_millis(ms)
    }
}

/// The stand-in LXC template, 0.5 s before and 1 s after creating and deleting the container.
fn slow_template(root: &Path) -> PathBuf {
    let original =
        std::fs::read_to_string(templates_dir().join("lxc/main.tf.hbs")).expect("stand-in");
    let changed = original
        .replace(
            "command = \"\\\"$${PROXDECK_TEST_PYTHON:-python3}\\\" \\\"$PROXDECK_TEST_SUPPORT/pve_ct.py\\\" create\"",
            "command = \"sleep 0.5 && \\\"$${PROXDECK_TEST_PYTHON:-python3}\\\" \\\"$PROXDECK_TEST_SUPPORT/pve_ct.py\\\" create && sleep 1\"",
        )
        .replace(
            "command = \"\\\"$${PROXDECK_TEST_PYTHON:-python3}\\\" \\\"$PROXDECK_TEST_SUPPORT/pve_ct.py\\\" delete\"",
            "command = \"sleep 0.5 && \\\"$${PROXDECK_TEST_PYTHON:-python3}\\\" \\\"$PROXDECK_TEST_SUPPORT/pve_ct.py\\\" delete && sleep 1\"",
        );
    assert_eq!(
        changed.matches("&& sleep 1").count(),
        2,
        "the stand-in template's provisioners changed; update the crash suite"
    );
    let dir = root.join("templates");
    std::fs::create_dir_all(dir.join("lxc")).unwrap();
    std::fs::write(dir.join("lxc/main.tf.hbs"), changed).unwrap();
    dir
}

struct Rig {
    _work: tempfile::TempDir,
    root: PathBuf,
    data_dir: PathBuf,
    app_root: PathBuf,
    pve: FakePve,
    ssh: SshHost,
    _git: GitServer,
    repo: String,
    proxdeck: Proxdeck,
}

/// What one trial saw, for the failure message.
struct Trial {
    name: String,
    outputs: Vec<(String, String)>,
}

impl Rig {
    fn new(prefix: &str) -> Rig {
        let work = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let root = work.path().to_path_buf();
        // The app's user reads the delay files the test writes here.
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let data_dir = root.join("data");
        let app_root = root.join("apps");
        let templates = slow_template(&root);
        let pve = FakePve::start(loopback()).expect("start fakepve");
        let guest = loopback();
        let ssh = SshHost::start(guest, &data_dir.join("keys/id_ed25519.pub")).expect("start sshd");
        let git = GitServer::start(loopback()).expect("start git daemon");
        let repo = git.add_flask_app("crash-sample").unwrap().git_url;
        let config_path = root.join("config.toml");
        write_private(
            &config_path,
            &format!(
                "[proxmox]\nendpoint = \"{url}\"\napi_token = \"{token}\"\nca_file = \"{ca}\"\n\
                 node = \"{NODE}\"\n\n\
                 [guest]\nssh_port = {ssh_port}\nssh_user = \"root\"\napp_root = \"{app_root}\"\n\
                 os_template = \"{OS_TEMPLATE}\"\ndatastore = \"local-lvm\"\nbridge = \"vmbr0\"\n\
                 vmid_range = \"20000-20099\"\n\n\
                 [network]\npool = \"{guest}/32\"\nprefix = 8\ngateway = \"127.0.0.1\"\n\n\
                 [terraform]\ntemplates_dir = \"{templates}\"\n\n\
                 [timeouts]\nssh_secs = 30\nhealth_secs = 60\n",
                url = pve.url(),
                token = pve.token(),
                ca = pve.ca_file().display(),
                ssh_port = ssh.port(),
                app_root = app_root.display(),
                templates = templates.display(),
            ),
        )
        .unwrap();
        let proxdeck = Proxdeck::new(config_path, data_dir.clone(), &root);
        Rig {
            _work: work,
            root,
            data_dir,
            app_root,
            pve,
            ssh,
            _git: git,
            repo,
            proxdeck,
        }
    }

    /// How long the app's install command and its start wait (0: not at all).
    fn set_delays(&self, install_secs: u32, start_secs: u32) {
        std::fs::write(self.root.join("install-delay"), format!("{install_secs}\n")).unwrap();
        std::fs::write(self.root.join("start-delay"), format!("{start_secs}\n")).unwrap();
    }

    fn deploy_args(&self, name: &str) -> Vec<String> {
        let root = self.root.display();
        // Records each run of the install step, and whether an earlier one is still alive
        // when it starts (two provisioning runs at once).
        let install = format!(
            "p=\"$HOME/probe\"; if [ -s \"$p.pid\" ] && kill -0 \"$(cat \"$p.pid\")\" 2>/dev/null; then echo \"overlap $(cat \"$p.pid\") $$\" >>\"$p.log\"; fi; \
             echo $$ >\"$p.pid\"; echo \"begin $$\" >>\"$p.log\"; sleep \"$(cat {root}/install-delay)\"; echo \"end $$\" >>\"$p.log\""
        );
        let start = format!(
            "sleep \"$(cat {root}/start-delay)\"; exec python3 -m http.server \"$PORT\" --bind 0.0.0.0"
        );
        let port = free_port_any().unwrap().to_string();
        [
            "deploy",
            "--repo",
            &self.repo,
            "--framework",
            "flask",
            "--name",
            name,
            "--port",
            &port,
            "--install",
            &install,
            "--start",
            &start,
            "--env",
            "CRASH_SECRET=hunter2-crash-value",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn run(&self, args: &[&str], within: Duration) -> Finished {
        self.proxdeck
            .run(args, within)
            .unwrap_or_else(|e| panic!("proxdeck {args:?}: {e:#}"))
    }

    /// Starts `args`, waits for `marker` in its output, waits `delay`, then SIGKILLs the
    /// command and the worker (and terraform's process groups with `everything`). Returns the
    /// output up to the kill, or why the point was never reached.
    fn kill_at(
        &self,
        args: &[String],
        marker: &str,
        delay: Duration,
        everything: bool,
        out_path: &Path,
    ) -> Result<String, String> {
        let out = std::fs::File::create(out_path).unwrap();
        let mut child = self
            .proxdeck
            .command(args)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start proxdeck");
        let deadline = Instant::now() + DEPLOY;
        loop {
            let text = std::fs::read_to_string(out_path).unwrap_or_default();
            if text.contains(marker) {
                break;
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                self.kill(&mut child, everything);
                return Err(format!(
                    "never reached {marker:?}:\n{}",
                    std::fs::read_to_string(out_path).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(delay);
        let ended = child.try_wait().unwrap();
        self.kill(&mut child, everything);
        let text = std::fs::read_to_string(out_path).unwrap_or_default();
        match ended {
            Some(status) => Err(format!(
                "the command ended ({status}) before the kill {} ms after {marker:?}:\n{text}",
                delay.as_millis()
            )),
            None => Ok(text),
        }
    }

    /// SIGKILL to the command and the worker (its pid in `worker.lock`); with `everything`,
    /// also to every process group they started (terraform).
    fn kill(&self, child: &mut std::process::Child, everything: bool) {
        let mut pids = vec![child.id()];
        if let Some(worker) = std::fs::read_to_string(self.data_dir.join("worker.lock"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            pids.push(worker);
        }
        for pid in &pids {
            let kids = children(*pid);
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            if everything {
                for kid in kids {
                    let _ = killpg(Pid::from_raw(kid as i32), Signal::SIGKILL);
                    let _ = kill(Pid::from_raw(kid as i32), Signal::SIGKILL);
                }
            }
        }
        let _ = child.wait();
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

    /// The one deployment of this name, from `list --json`.
    fn deployment(&self, name: &str) -> Option<Value> {
        let listed = self.run(&["list", "--json"], QUICK);
        let list: Value = serde_json::from_str(listed.stdout.trim()).ok()?;
        list.as_array()?.iter().find(|d| d["name"] == name).cloned()
    }

    /// Every container on the fake carries `id` (and there is exactly one), and proxdeck
    /// sees no orphan.
    fn one_guest_of(&self, id: &str) -> Result<(), String> {
        let all: Vec<u64> = self
            .pve
            .containers(NODE)
            .unwrap()
            .iter()
            .filter_map(|c| c["vmid"].as_u64())
            .collect();
        let ours = marked(&self.pve, id);
        if all.len() != 1 || ours != all {
            return Err(format!(
                "containers on the fake: {all:?}, carrying {id}: {ours:?}"
            ));
        }
        let orphans = self.run(&["resources", "--orphans", "--json"], QUICK);
        let orphans: Value = serde_json::from_str(orphans.stdout.trim())
            .map_err(|e| format!("resources --orphans: {e}: {}", orphans.describe()))?;
        if orphans != json!([]) {
            return Err(format!("orphans: {orphans}"));
        }
        Ok(())
    }

    /// No two provisioning runs of `name` overlapped: the install probe never found an
    /// earlier run alive, and the runner's history alternates start and end.
    fn no_overlap(&self, name: &str) -> Result<(), String> {
        let app = self.app_root.join(name);
        let probe = std::fs::read_to_string(app.join("home/probe.log")).unwrap_or_default();
        if probe.contains("overlap") {
            return Err(format!("two install steps at once:\n{probe}"));
        }
        let history =
            std::fs::read_to_string(app.join("run/provision/history")).unwrap_or_default();
        let mut open: Option<&str> = None;
        let mut runs = 0;
        for line in history.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["start", run, ..] => {
                    if let Some(other) = open {
                        return Err(format!(
                            "run {run} started while {other} had not ended:\n{history}"
                        ));
                    }
                    open = Some(run);
                    runs += 1;
                }
                ["end", run, ..] => {
                    if open != Some(*run) {
                        return Err(format!("run {run} ended but was not going:\n{history}"));
                    }
                    open = None;
                }
                _ => return Err(format!("unreadable history line {line:?}")),
            }
        }
        if open.is_some() {
            return Err(format!("a run is still going after the retry:\n{history}"));
        }
        // The guest-side log is private and holds no env value.
        let dir = app.join("run/provision");
        if runs > 0 {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            if mode != 0o700 {
                return Err(format!("{} has mode {mode:o}", dir.display()));
            }
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                if text.contains("hunter2-crash-value") {
                    return Err(format!("{} holds an env value", entry.path().display()));
                }
            }
        }
        Ok(())
    }

    /// One kill at `point` (trial number `trial`), then the first `retry` or `destroy`, then
    /// the checks; cleans up after itself (the deployment destroyed, the app stopped).
    fn trial(&self, point: Point, trial: u32) -> Result<(), String> {
        let name = format!("crash-{}-{trial}-{}", point_slug(point), random_hex(3));
        let app = AppGuard::new(self.app_root.join(&name).join("run/app.pid"));
        let mut t = Trial {
            name: name.clone(),
            outputs: Vec::new(),
        };
        let result = self.trial_steps(point, trial, &mut t);
        // Leave nothing for the next trial: the deployment destroyed, the app stopped.
        let mut cleanup = Ok(());
        if let Some(d) = self.deployment(&name)
            && d["status"] != "DELETED"
        {
            let done = self.run(&["destroy", &name, "--yes"], DEPLOY);
            if !done.success() {
                cleanup = Err(format!("cleanup destroy: {}", done.describe()));
            }
        }
        app.stop();
        result.and(cleanup).map_err(|e| {
            let logs = self.run(&["logs", &t.name], QUICK).stdout;
            let outputs: String = t
                .outputs
                .iter()
                .map(|(what, text)| format!("--- {what} ---\n{text}\n"))
                .collect();
            format!("{point:?} trial {trial}: {e}\n{outputs}--- proxdeck logs ---\n{logs}")
        })
    }

    fn trial_steps(&self, point: Point, trial: u32, t: &mut Trial) -> Result<(), String> {
        let everything = trial % 2 == 1;
        let args = self.deploy_args(&t.name);
        let out_path = self.root.join(format!("{}.out", t.name));
        if point == Point::Destroy {
            self.set_delays(0, 0);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let deployed = self.run(&args, DEPLOY);
            t.outputs.push(("deploy".into(), deployed.describe()));
            if !deployed.success() {
                return Err("the deploy before the destroy failed".into());
            }
            let destroy = ["destroy", &t.name, "--yes"].map(String::from);
            let killed = self.kill_at(
                &destroy,
                point.marker(),
                point.delay(trial),
                everything,
                &out_path,
            );
            t.outputs.push(("killed destroy".into(), killed.clone()?));
            let done = self.run(&["destroy", &t.name, "--yes", "--json"], DEPLOY);
            t.outputs.push(("destroy".into(), done.describe()));
            no_raw_lock(t)?;
            if !done.success() {
                return Err("the first destroy after the kill failed".into());
            }
            let status: Value = serde_json::from_str(done.stdout.trim())
                .map_err(|e| format!("destroy --json: {e}"))?;
            if status["status"] != "DELETED" {
                return Err(format!("destroy ended {}", status["status"]));
            }
            let left = self.pve.containers(NODE).unwrap();
            if !left.is_empty() {
                return Err(format!("containers left after destroy: {left:?}"));
            }
            return Ok(());
        }
        // Slow steps where the kill must land inside them; none for the retry.
        match point {
            Point::Provision => self.set_delays(20, 0),
            Point::Health => self.set_delays(0, 5),
            _ => self.set_delays(0, 0),
        }
        let ssh_pid = self.ssh.pid().map(|p| Pid::from_raw(p as i32));
        if point == Point::Ssh {
            // A guest whose sshd does not answer yet.
            kill(ssh_pid.expect("sshd runs"), Signal::SIGSTOP).unwrap();
        }
        let killed = self.kill_at(
            &args,
            point.marker(),
            point.delay(trial),
            everything,
            &out_path,
        );
        if point == Point::Ssh {
            kill(ssh_pid.expect("sshd runs"), Signal::SIGCONT).unwrap();
        }
        let killed = killed?;
        let reached = killed
            .lines()
            .rev()
            .find_map(|l| l.split("--- stage ").nth(1))
            .unwrap_or("?")
            .trim_end_matches(" ---")
            .to_string();
        println!("{point:?} trial {trial}: killed in stage {reached}");
        t.outputs
            .push((format!("killed deploy (in stage {reached})"), killed));
        self.set_delays(0, 0);
        let Some(d) = self.deployment(&t.name) else {
            return Err("the killed deploy left no deployment".into());
        };
        let id = d["id"].as_str().unwrap_or_default().to_string();
        let retried = self.run(&["retry", &t.name, "--json"], DEPLOY);
        t.outputs.push(("retry".into(), retried.describe()));
        no_raw_lock(t)?;
        if !retried.success() {
            return Err("the first retry after the kill failed".into());
        }
        let status: Value = serde_json::from_str(retried.stdout.trim())
            .map_err(|e| format!("retry --json: {e}"))?;
        if status["status"] != "RUNNING" {
            return Err(format!("retry ended {}", status["status"]));
        }
        if point == Point::Provision
            && !retried
                .stderr
                .contains("is still going on the guest: stopping it")
        {
            return Err("the retry did not stop the killed deploy's provisioning run".into());
        }
        self.one_guest_of(&id)?;
        self.no_overlap(&t.name)?;
        Ok(())
    }
}

fn point_slug(point: Point) -> &'static str {
    match point {
        Point::Preflight => "pre",
        Point::TerraformInit => "init",
        Point::TerraformPlan => "plan",
        Point::TerraformApply => "apply",
        Point::Ssh => "ssh",
        Point::Provision => "prov",
        Point::Health => "health",
        Point::Destroy => "destroy",
    }
}

fn no_raw_lock(t: &Trial) -> Result<(), String> {
    match t.outputs.iter().find(|(_, text)| text.contains(RAW_LOCK)) {
        Some((what, _)) => Err(format!("raw terraform lock text in the output of {what}")),
        None => Ok(()),
    }
}

/// Runs `TRIALS` kills at each of `points` on one rig; prints and checks the counts.
fn suite(test: &str, points: &[Point]) {
    if skip_without(
        test,
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
    let rig = Rig::new("proxdeck-crash-");
    let started = Instant::now();
    let mut trials = 0u32;
    let mut failures = Vec::new();
    for point in points {
        for trial in 0..TRIALS {
            trials += 1;
            if let Err(e) = rig.trial(*point, trial) {
                failures.push(e);
            }
        }
    }
    let successes = trials - failures.len() as u32;
    println!(
        "{test}: {successes} of {trials} kills recovered by the first retry/destroy ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    for f in &failures {
        println!("{f}");
    }
    assert!(
        successes * 100 >= trials * 95,
        "{successes} of {trials} trials succeeded; failures:\n{}",
        failures.join("\n\n")
    );
}

#[test]
fn crash_before_the_guest_exists_preflight_init_plan() {
    suite(
        "crash_before_the_guest_exists_preflight_init_plan",
        &[Point::Preflight, Point::TerraformInit, Point::TerraformPlan],
    );
}

#[test]
fn crash_while_terraform_creates_or_destroys_the_guest() {
    suite(
        "crash_while_terraform_creates_or_destroys_the_guest",
        &[Point::TerraformApply, Point::Destroy],
    );
}

#[test]
fn crash_on_the_guest_ssh_provision_health() {
    suite(
        "crash_on_the_guest_ssh_provision_health",
        &[Point::Ssh, Point::Provision, Point::Health],
    );
}

/// Starts `args` in the background with its output in `out_path` and waits for `marker`.
fn start_until(rig: &Rig, args: &[String], marker: &str, out_path: &Path) -> std::process::Child {
    let out = std::fs::File::create(out_path).unwrap();
    let mut child = rig
        .proxdeck
        .command(args)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start proxdeck");
    let deadline = Instant::now() + DEPLOY;
    while !std::fs::read_to_string(out_path)
        .unwrap_or_default()
        .contains(marker)
    {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "never reached {marker:?}:\n{}",
                std::fs::read_to_string(out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Waits for `child` to end (within `DEPLOY`); its status.
fn wait_end(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + DEPLOY;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the command did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The runner's history lines of the app `name` (`start RUN TIME`, `end RUN TIME STATUS`).
fn history(rig: &Rig, name: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(rig.app_root.join(name).join("run/provision/history"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

#[test]
fn a_dropped_connection_during_provisioning_is_followed_again_and_a_cancel_stops_the_run() {
    if skip_without(
        "a_dropped_connection_during_provisioning_is_followed_again_and_a_cancel_stops_the_run",
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
    let rig = Rig::new("proxdeck-drop-");

    // The SSH connection drops while the install step runs: proxdeck reconnects and follows
    // the same run to its end; there is one run, and the deploy succeeds.
    let name = format!("drop-{}", random_hex(4));
    let app = AppGuard::new(rig.app_root.join(&name).join("run/app.pid"));
    rig.set_delays(4, 0);
    let out_path = rig.root.join("drop.out");
    let mut deploy = start_until(&rig, &rig.deploy_args(&name), "==> dependencies", &out_path);
    let sshd = rig.ssh.pid().expect("sshd runs");
    let sessions = children(sshd);
    assert!(!sessions.is_empty(), "the provisioning's SSH session");
    for pid in sessions {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let status = wait_end(&mut deploy);
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("lost the connection while following provisioning run")
            && text.contains("reconnecting (attempt 1 of 5)"),
        "{text}"
    );
    // Every line of the run came through once, the last ones after the reconnect.
    assert_eq!(text.matches("==> dependencies").count(), 1, "{text}");
    assert!(text.contains("==> started proxdeck-"), "{text}");
    let runs = history(&rig, &name);
    assert_eq!(runs.len(), 2, "one run, started and ended: {runs:?}");
    assert_eq!(runs[1][0], "end");
    assert_eq!(runs[1][3], "0", "{runs:?}");
    let probe = std::fs::read_to_string(rig.app_root.join(&name).join("home/probe.log")).unwrap();
    assert_eq!(probe.matches("begin").count(), 1, "{probe}");
    assert_eq!(probe.matches("end").count(), 1, "{probe}");
    let done = rig.run(&["destroy", &name, "--yes"], DEPLOY);
    assert!(done.success(), "{}", done.describe());
    app.stop();

    // The connection hangs (its sshd frozen: no reset, no data, as when a network drops
    // packets): after 45 s of silence proxdeck takes it for dead, reconnects and follows the
    // same run to its end.
    let name = format!("hang-{}", random_hex(4));
    let app = AppGuard::new(rig.app_root.join(&name).join("run/app.pid"));
    rig.set_delays(3, 0);
    let out_path = rig.root.join("hang.out");
    let mut deploy = start_until(&rig, &rig.deploy_args(&name), "==> dependencies", &out_path);
    let frozen = children(sshd);
    assert!(!frozen.is_empty(), "the provisioning's SSH session");
    for pid in &frozen {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGSTOP);
    }
    let status = wait_end(&mut deploy);
    for pid in &frozen {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("(no word from the guest for 45 s); it goes on on the guest; reconnecting"),
        "{text}"
    );
    assert_eq!(text.matches("==> dependencies").count(), 1, "{text}");
    assert_eq!(history(&rig, &name).len(), 2, "one run");
    let done = rig.run(&["destroy", &name, "--yes"], DEPLOY);
    assert!(done.success(), "{}", done.describe());
    app.stop();

    // A cancel during provisioning stops the run on the guest too: its process group is
    // gone, its status is 143, and the log there says why.
    let name = format!("cancel-{}", random_hex(4));
    let app = AppGuard::new(rig.app_root.join(&name).join("run/app.pid"));
    rig.set_delays(60, 0);
    let out_path = rig.root.join("cancel.out");
    let mut deploy = start_until(&rig, &rig.deploy_args(&name), "==> dependencies", &out_path);
    let cancelled = rig.run(&["cancel", &name], QUICK);
    assert!(cancelled.success(), "{}", cancelled.describe());
    let status = wait_end(&mut deploy);
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(!status.success(), "{text}");
    let state = rig.app_root.join(&name).join("run/provision");
    let run = std::fs::read_to_string(state.join("current")).unwrap();
    let run = run.trim();
    let group: i32 = std::fs::read_to_string(state.join(format!("{run}.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        killpg(Pid::from_raw(group), None).is_err(),
        "the run's process group {group} still runs after the cancel"
    );
    assert_eq!(
        std::fs::read_to_string(state.join(format!("{run}.status")))
            .unwrap()
            .trim(),
        "143"
    );
    let log = std::fs::read_to_string(state.join(format!("{run}.log"))).unwrap();
    assert!(
        log.contains("E proxdeck: this provisioning run was stopped: the job was cancelled"),
        "{log}"
    );
    let probe = std::fs::read_to_string(rig.app_root.join(&name).join("home/probe.log")).unwrap();
    assert!(
        !probe.contains("end"),
        "the install step ran to its end: {probe}"
    );
    let shown: Value =
        serde_json::from_str(rig.run(&["show", &name, "--json"], QUICK).stdout.trim()).unwrap();
    assert_eq!(shown["status"], "FAILED", "{shown}");
    let done = rig.run(&["destroy", &name, "--yes"], DEPLOY);
    assert!(done.success(), "{}", done.describe());
    app.stop();
}

/// The destroy of a `--host` deployment whose provisioning run outlived a killed proxdeck:
/// the removal stops that run first (its process group gone), then removes the app.
#[test]
fn a_host_removal_stops_a_provisioning_run_left_by_a_killed_proxdeck() {
    if skip_without(
        "a_host_removal_stops_a_provisioning_run_left_by_a_killed_proxdeck",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-hostrun-")
        .tempdir()
        .unwrap();
    let root = work.path().to_path_buf();
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let data_dir = root.join("data");
    let app_root = root.join("apps");
    let ssh = SshHost::start(loopback(), &data_dir.join("keys/id_ed25519.pub")).expect("sshd");
    let git = GitServer::start(loopback()).expect("start git daemon");
    let repo = git.add_flask_app("hostrun-sample").unwrap().git_url;
    let config = root.join("config.toml");
    write_private(
        &config,
        &format!(
            "[guest]\nssh_user = \"root\"\napp_root = \"{}\"\n",
            app_root.display()
        ),
    )
    .unwrap();
    let proxdeck = Proxdeck::new(config, data_dir.clone(), &root);
    let name = format!("hostrun-{}", random_hex(4));
    let _app = AppGuard::new(app_root.join(&name).join("run/app.pid"));
    let port = free_port_any().unwrap().to_string();
    let host = format!("{}:{}", ssh.addr(), ssh.port());
    let out_path = root.join("deploy.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut deploy = proxdeck
        .command([
            "deploy",
            "--repo",
            &repo,
            "--host",
            &host,
            "--framework",
            "flask",
            "--name",
            &name,
            "--port",
            &port,
            "--install",
            "sleep 120",
            "--start",
            "exec python3 -m http.server \"$PORT\" --bind 0.0.0.0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEPLOY;
    while !std::fs::read_to_string(&out_path)
        .unwrap_or_default()
        .contains("==> dependencies")
    {
        assert!(
            Instant::now() < deadline && deploy.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(&out_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // proxdeck and its worker die; the run goes on on the host.
    let worker: i32 = std::fs::read_to_string(data_dir.join("worker.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = kill(Pid::from_raw(worker), Signal::SIGKILL);
    let _ = deploy.kill();
    let _ = deploy.wait();
    let state = app_root.join(&name).join("run/provision");
    let run = std::fs::read_to_string(state.join("current")).unwrap();
    let group: i32 = std::fs::read_to_string(state.join(format!("{}.pid", run.trim())))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        killpg(Pid::from_raw(group), None).is_ok(),
        "the run should outlive proxdeck"
    );
    let done = proxdeck
        .run(&["destroy", &name, "--yes", "--json"], DEPLOY)
        .unwrap();
    assert!(done.success(), "{}", done.describe());
    let status: Value = serde_json::from_str(done.stdout.trim()).unwrap();
    assert_eq!(status["status"], "DELETED");
    assert!(
        done.stderr
            .contains("is still going on the guest: stopping it (the app is being removed)"),
        "{}",
        done.describe()
    );
    assert!(
        killpg(Pid::from_raw(group), None).is_err(),
        "the provisioning run (group {group}) still runs after the removal"
    );
    assert!(!app_root.join(&name).exists());
}
