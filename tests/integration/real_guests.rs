//! Real guests (issue 11): each framework deployed through the whole pipeline (preflight,
//! render, terraform, address, ssh, provision, health check) onto a fresh Debian booted with
//! systemd as PID 1, the way Proxmox gives a container made from `debian-13-standard` (the
//! default template) or `debian-12-standard`: nothing installed but sshd and apt. The stand-in
//! templates create the guest on fakepve and the rig (`tests/support/guests.rs`) boots it at
//! the deployment's address; destroy powers it off and removes it.
//!
//! For every framework that can run here: it answers with its own content; its systemd unit is
//! active and enabled; `logs --app` reads the unit's journal; the guest is powered off and
//! booted again and the app answers again without proxdeck; a redeploy serves a new commit;
//! destroy removes the guest. What cannot run here fails well: React on Debian 12 (Node 18)
//! stops before installing anything, Laravel at `composer install` (Packagist is out of
//! reach), MERN and MEAN on MongoDB's repository (out of reach), naming `MONGODB_URI`, with
//! nothing left behind. A VM guest is a Debian 13 cloud image whose cloud-init reads a NoCloud
//! seed with what Proxmox writes on its cloud-init drive (user, key): proxdeck logs in as that
//! user and provisions through sudo.
//!
//! Deployments of one test run in parallel threads; at most `DEPLOY_SLOTS` first deploys run
//! at once in the whole process (the machine has two cores).

use crate::support::cluster::Cluster;
use crate::support::fakepve::{NODE, OS_TEMPLATE};
use crate::support::guests::{Release, rootfs, skip_without_rig};
use crate::support::net::{free_port_any, http_get, wait_http_ok};
use crate::support::parts::{Part, skip_without};
use crate::support::process::Finished;
use crate::support::samples::{self, Sample, Tool, skip_without_tools};
use serde_json::Value;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

const DEPLOY: Duration = Duration::from_secs(1800);
const QUICK: Duration = Duration::from_secs(120);
/// How many deploys may provision at once in this test process.
const DEPLOY_SLOTS: u32 = 4;

static SLOTS: Mutex<u32> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// Holds one of the process's deploy slots while it lives.
struct Slot;

impl Slot {
    fn take() -> Slot {
        let mut used = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        while *used >= DEPLOY_SLOTS {
            used = FREED.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        *used -= 1;
        FREED.notify_one();
    }
}

/// The parts every real-guest test needs; the releases' root filesystems are built (once,
/// cached) before any deploy, so that no guest boot waits for debootstrap.
fn skip(test: &str, releases: &[(Release, bool)], tools: &[Tool]) -> bool {
    if skip_without(
        test,
        &[Part::Fakepve, Part::Terraform, Part::Git, Part::Sshd],
    ) || skip_without_rig(test)
        || skip_without_tools(test, tools)
    {
        return true;
    }
    for (release, cloud) in releases {
        rootfs(*release, *cloud).unwrap_or_else(|e| panic!("{test}: root filesystem: {e:#}"));
    }
    false
}

fn json_of(done: &Finished) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e})\n{}", done.describe()))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One app on its own guest.
struct App<'a> {
    c: &'a Cluster,
    sample: Sample,
    name: String,
    port: u16,
    vmid: u64,
    url: String,
}

/// `deploy` of `sample` onto a fresh guest; must end RUNNING.
fn deploy<'a>(
    c: &'a Cluster,
    sample: Sample,
    name: &str,
    framework: &'static str,
    extra: &[&str],
) -> App<'a> {
    let port = free_port_any().unwrap();
    let port_s = port.to_string();
    let mut args = vec![
        "deploy",
        "--repo",
        &sample.git_url,
        "--framework",
        framework,
        "--name",
        name,
        "--port",
        &port_s,
        "--json",
    ];
    args.extend_from_slice(extra);
    let done = {
        let _slot = Slot::take();
        c.run(&args, DEPLOY)
    };
    assert!(done.success(), "deploy {name}: {}", c.explain(name, &done));
    let d = json_of(&done);
    assert_eq!(d["status"], "RUNNING", "{d}");
    assert_eq!(d["framework"], framework, "{d}");
    let vmid = d["vmid"].as_u64().unwrap_or_else(|| panic!("no vmid: {d}"));
    let ip: std::net::Ipv4Addr = text(&d["ip"]).parse().expect("an IPv4 address");
    let (net, len) = c.pool;
    let mask = u32::MAX << (32 - u32::from(len));
    assert_eq!(
        u32::from(ip) & mask,
        u32::from(net),
        "{ip} is not from the pool: {d}"
    );
    assert!(c.rig.has(vmid), "no real guest was booted for vmid {vmid}");
    let url = format!("http://{ip}:{port}/");
    assert!(text(&d["url"]).starts_with(&url), "{d}");
    App {
        c,
        sample,
        name: name.to_string(),
        port,
        vmid,
        url,
    }
}

impl App<'_> {
    /// GET / until it answers 200 with `want` in the body.
    fn expect_body(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let answer = wait_http_ok(&self.url, Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("{}: GET {}: {e:#}", self.name, self.url));
            if answer.body.contains(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: GET {} answered {:?}, expected it to contain {want:?}",
                self.name,
                self.url,
                answer.body
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn guest(&self, script: &str) -> String {
        self.c
            .rig
            .with_guest(self.vmid, |g| g.exec_ok(script))
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name))
    }

    fn unit_is_active_and_enabled(&self) {
        let unit = format!("proxdeck-{}", self.name);
        let out = self.guest(&format!(
            "systemctl is-active {unit}; systemctl is-enabled {unit}; systemctl is-system-running || true"
        ));
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(&words[..2], ["active", "enabled"], "{}: {out}", self.name);
    }

    /// Everything a user relies on after the first deploy: own content, the unit, its journal,
    /// a power cycle, a redeploy, and at last the destroy.
    fn lifecycle(&self, app_log_line: &str) {
        self.expect_body(&self.sample.body);
        self.unit_is_active_and_enabled();

        // The app's log comes from the unit's journal: systemd's own line about the unit and
        // one the app printed.
        let logs = self
            .c
            .run(&["logs", &self.name, "--app", "-n", "500"], QUICK);
        assert!(logs.success(), "{}: {}", self.name, logs.describe());
        assert!(
            logs.stdout.contains(&format!("proxdeck app {}", self.name)),
            "{}: no journal line of the unit in\n{}",
            self.name,
            logs.stdout
        );
        assert!(
            logs.stdout.contains(app_log_line),
            "{}: the app's own line {app_log_line:?} is not in\n{}",
            self.name,
            logs.stdout
        );

        // Powered off and booted again: the app answers again, without proxdeck.
        self.c
            .rig
            .with_guest(self.vmid, |g| {
                g.poweroff()?;
                assert!(!g.running(), "{}: still running after poweroff", self.name);
                assert!(
                    http_get(&self.url, Duration::from_secs(2)).is_err(),
                    "{}: something answers while the guest is off",
                    self.name
                );
                g.boot()
            })
            .unwrap_or_else(|e| panic!("{}: power cycle: {e:#}", self.name));
        self.expect_body(&self.sample.body);
        self.unit_is_active_and_enabled();

        // A new commit, redeployed on the same guest.
        let (body2, commit2) = self.sample.change(&self.c.git).unwrap();
        let done = {
            let _slot = Slot::take();
            self.c.run(&["redeploy", &self.name, "--json"], DEPLOY)
        };
        assert!(
            done.success(),
            "redeploy: {}",
            self.c.explain(&self.name, &done)
        );
        let d = json_of(&done);
        assert_eq!(text(&d["commit"]), commit2, "{d}");
        assert_eq!(text(&d["previous_commit"]), self.sample.commit, "{d}");
        self.expect_body(&body2);
        self.destroy();
    }

    /// Destroy: DELETED, the guest powered off and removed, the container gone from the fake.
    fn destroy(&self) {
        let machine_dirs: Vec<_> = self
            .c
            .rig
            .with_guest(self.vmid, |g| Ok(g.dir().to_path_buf()))
            .into_iter()
            .collect();
        let done = self
            .c
            .run(&["destroy", &self.name, "--yes", "--json"], DEPLOY);
        assert!(
            done.success(),
            "destroy: {}",
            self.c.explain(&self.name, &done)
        );
        assert_eq!(json_of(&done)["status"], "DELETED");
        assert!(
            !self.c.rig.has(self.vmid),
            "{}: the guest is still there",
            self.name
        );
        for dir in machine_dirs {
            assert!(
                !dir.exists(),
                "{}: {} is still there",
                self.name,
                dir.display()
            );
        }
        let gone = self.c.pve.guest(self.vmid);
        assert!(
            gone.is_err() || gone.as_ref().is_ok_and(Value::is_null),
            "{}: guest {} is still in the fake: {gone:?}",
            self.name,
            self.vmid
        );
        assert!(
            http_get(&self.url, Duration::from_secs(2)).is_err(),
            "{}: something still answers on port {}",
            self.name,
            self.port
        );
    }
}

/// Runs each closure in its own thread; a panic in any is raised once all have ended.
fn in_parallel(jobs: Vec<Box<dyn FnOnce() + Send + '_>>) {
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs.into_iter().map(|job| scope.spawn(job)).collect();
        let mut first = None;
        for h in handles {
            if let Err(panic) = h.join() {
                first.get_or_insert(panic);
            }
        }
        if let Some(panic) = first {
            std::panic::resume_unwind(panic);
        }
    });
}

#[test]
fn python_frameworks_on_fresh_debian_13_guests() {
    let test = "python_frameworks_on_fresh_debian_13_guests";
    if skip(test, &[(Release::Debian13, false)], &[Tool::Django]) {
        return;
    }
    let c = Cluster::start("proxdeck-py13-", 8, false).expect("start the cluster");
    let dir = c.root.join("samples");
    let flask = samples::flask(&c.git, "flask13", &dir).unwrap();
    let django = samples::django(&c.git, "django13", &dir).unwrap();
    let fastapi = samples::fastapi(&c.git, "fastapi13", &dir).unwrap();
    let c = &c;
    in_parallel(vec![
        Box::new(move || {
            // No os_template in the config: the default, Debian 13.
            // --apt: a system package the app asks for is installed with the runtime.
            let app = deploy(
                c,
                flask,
                "fl13",
                "flask",
                &["--env", "SECRET_TOKEN=tok-13", "--apt", "jq"],
            );
            let release = app.guest(". /etc/os-release; echo $VERSION_CODENAME");
            assert_eq!(release.trim(), "trixie");
            let jq = app.guest("echo '{\"a\": 42}' | jq .a");
            assert_eq!(jq.trim(), "42", "jq from --apt");
            let logs = c.run(&["logs", "fl13"], QUICK).stdout;
            assert!(logs.contains("booted guest"), "{logs}");
            app.lifecycle("starting; token is ***");
        }),
        Box::new(move || deploy(c, django, "dj13", "django", &[]).lifecycle("Booting worker")),
        Box::new(move || deploy(c, fastapi, "fa13", "fastapi", &[]).lifecycle("Uvicorn running")),
    ]);
}

#[test]
fn node_frameworks_on_fresh_debian_13_guests() {
    let test = "node_frameworks_on_fresh_debian_13_guests";
    if skip(test, &[(Release::Debian13, false)], &[Tool::Node]) {
        return;
    }
    let c = Cluster::start("proxdeck-node13-", 8, false).expect("start the cluster");
    let dir = c.root.join("samples");
    std::fs::create_dir_all(&dir).unwrap();
    let express = samples::express(&c.git, "express13", &dir).unwrap();
    let react = samples::vite(&c.git, "react13", "react", &dir).unwrap();
    let vue = samples::vite(&c.git, "vue13", "vue", &dir).unwrap();
    let next = samples::nextjs(&c.git, "next13", &dir).unwrap();
    let c = &c;
    in_parallel(vec![
        Box::new(move || {
            let app = deploy(c, express, "ex13", "express", &[]);
            let logs = c.run(&["logs", "ex13"], QUICK).stdout;
            assert!(
                logs.contains("node: the app needs Node.js 18.0.0 or newer")
                    && logs.contains("Node.js: the nodejs package of Debian GNU/Linux 13"),
                "no Node check in\n{logs}"
            );
            app.lifecycle("listening on")
        }),
        // nginx's access log reaches the unit's journal: the health check's and the test's
        // requests are in `logs --app`.
        Box::new(move || deploy(c, react, "re13", "react", &[]).lifecycle("\"GET / HTTP/1.")),
        Box::new(move || deploy(c, vue, "vu13", "vue", &[]).lifecycle("proxdeck app vu13")),
        Box::new(move || deploy(c, next, "nx13", "nextjs", &[]).lifecycle("Ready in")),
    ]);
}

#[test]
fn lamp_runs_and_what_cannot_run_here_fails_well_on_debian_13() {
    let test = "lamp_runs_and_what_cannot_run_here_fails_well_on_debian_13";
    if skip(test, &[(Release::Debian13, false)], &[]) {
        return;
    }
    let c = Cluster::start("proxdeck-php13-", 8, false).expect("start the cluster");
    let dir = c.root.join("samples");
    std::fs::create_dir_all(&dir).unwrap();
    let php = samples::php(&c.git, "lamp13", &dir).unwrap();
    let laravel = samples::laravel(&c.git, "laravel13", &dir).unwrap();
    let mern = samples::mern(&c.git, "mern13", &dir).unwrap();
    let mean = samples::mean(&c.git, "mean13", &dir).unwrap();
    let c = &c;
    in_parallel(vec![
        Box::new(move || {
            let app = deploy(c, php, "lamp13", "lamp", &[]);
            app.expect_body("database lamp13 says 42");
            // Apache's own instance logs each request to the unit's journal.
            app.lifecycle("\"GET / HTTP/1.0\" 200");
        }),
        Box::new(move || laravel_stops_at_composer(c, &laravel)),
        Box::new(move || mongodb_is_named_and_nothing_is_left(c, &mern, "mern")),
        Box::new(move || mongodb_is_named_and_nothing_is_left(c, &mean, "mean")),
    ]);
}

/// A deploy that must fail at provisioning; the deployment's vmid and what the CLI said.
fn deploy_fails(c: &Cluster, sample: &Sample, name: &str, extra: &[&str]) -> (u64, String) {
    let port = free_port_any().unwrap().to_string();
    let mut args = vec![
        "deploy",
        "--repo",
        &sample.git_url,
        "--name",
        name,
        "--port",
        &port,
    ];
    args.extend_from_slice(extra);
    let done = {
        let _slot = Slot::take();
        c.run(&args, DEPLOY)
    };
    assert!(!done.success(), "{name} was deployed: {}", done.describe());
    assert!(
        done.stderr.contains("stage provision failed"),
        "{name}: {}",
        c.explain(name, &done)
    );
    let shown = json_of(&c.run(&["show", name, "--json"], QUICK));
    assert_eq!(shown["status"], "FAILED", "{shown}");
    let vmid = shown["vmid"].as_u64().expect("a vmid");
    assert!(c.rig.has(vmid), "{name}: no guest");
    eprintln!("{name}: {}", cause(&done.stderr));
    (vmid, done.stderr)
}

/// The one message a failed deploy printed: its `stage provision failed: ...` line.
fn cause(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains("stage provision failed"))
        .unwrap_or_default()
        .to_string()
}

fn in_guest(c: &Cluster, vmid: u64, script: &str) -> String {
    c.rig
        .with_guest(vmid, |g| g.exec_ok(script))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// What a failed first deploy left under the app root beyond the runner's record of the run
/// (`APP_DIR/run/provision`: its private log, which `destroy` removes with the folder).
fn left_in_app_folder(c: &Cluster, vmid: u64, name: &str) -> Vec<String> {
    let app_dir = format!("/opt/proxdeck/{name}");
    let files = in_guest(c, vmid, "find /opt/proxdeck -mindepth 1 2>/dev/null; true");
    files
        .lines()
        .map(str::trim)
        .filter(|l| {
            !(l.is_empty()
                || *l == app_dir
                || *l == format!("{app_dir}/run")
                || l.starts_with(&format!("{app_dir}/run/provision")))
        })
        .map(str::to_string)
        .collect()
}

fn destroy_failed(c: &Cluster, name: &str, vmid: u64) {
    let done = c.run(&["destroy", name, "--yes"], DEPLOY);
    assert!(done.success(), "destroy {name}: {}", done.describe());
    assert!(!c.rig.has(vmid), "{name}: the guest is still there");
}

/// Laravel (detected): everything up to `composer install` happens (php-fpm, nginx, composer
/// installed; the checkout; the env file; php-fpm's config), then one message names Packagist.
fn laravel_stops_at_composer(c: &Cluster, sample: &Sample) {
    let (vmid, stderr) = deploy_fails(c, sample, "lv13", &[]);
    let message = cause(&stderr);
    assert!(
        message.contains("composer install failed")
            && message.contains("repo.packagist.org")
            && message.contains("--install"),
        "{stderr}"
    );
    let logs = c.run(&["logs", "lv13"], QUICK).stdout;
    assert!(
        logs.contains("framework laravel detected: artisan exists"),
        "{logs}"
    );
    let have = in_guest(
        c,
        vmid,
        "for p in php-fpm nginx composer git; do command -v $p >/dev/null || ls /usr/sbin/$p* >/dev/null 2>&1 && echo have-$p; done; \
         ls /opt/proxdeck/lv13/releases/*/src/artisan >/dev/null 2>&1 && echo checkout; \
         stat -c %a /opt/proxdeck/lv13/app.env; test -f /opt/proxdeck/lv13/run/php-fpm.conf && echo fpm-conf",
    );
    for want in [
        "have-php-fpm",
        "have-nginx",
        "have-composer",
        "have-git",
        "checkout",
        "600",
        "fpm-conf",
    ] {
        assert!(have.contains(want), "laravel guest lacks {want}: {have}");
    }
    destroy_failed(c, "lv13", vmid);
}

/// MERN or MEAN: one message naming MONGODB_URI, and the guest as it was: no MongoDB key or
/// list, no package installed.
fn mongodb_is_named_and_nothing_is_left(c: &Cluster, sample: &Sample, framework: &str) {
    let name = format!("{framework}13");
    let (vmid, stderr) = deploy_fails(c, sample, &name, &[]);
    let message = cause(&stderr);
    assert!(
        message.contains("MONGODB_URI") && message.contains("nothing was installed"),
        "{stderr}"
    );
    let left = in_guest(
        c,
        vmid,
        "ls /usr/share/keyrings/ /etc/apt/sources.list.d/ /var/lib/apt/lists/ 2>/dev/null | grep -i mongo; \
         for p in nodejs npm git curl gnupg; do dpkg-query -W -f='${Status}\\n' $p 2>/dev/null | grep -q 'install ok' && echo installed-$p; done; true",
    );
    assert!(
        left.trim().is_empty(),
        "{framework}: left behind on the guest: {left}"
    );
    let unexpected = left_in_app_folder(c, vmid, &name);
    assert!(
        unexpected.is_empty(),
        "{framework}: left in the app's folder: {unexpected:?}"
    );
    destroy_failed(c, &name, vmid);
}

#[test]
fn debian_12_guests_run_flask_and_express_and_refuse_vite_on_node_18() {
    let test = "debian_12_guests_run_flask_and_express_and_refuse_vite_on_node_18";
    if skip(test, &[(Release::Debian12, false)], &[Tool::Node]) {
        return;
    }
    let c = Cluster::start("proxdeck-deb12-", 8, false).expect("start the cluster");
    let dir = c.root.join("samples");
    std::fs::create_dir_all(&dir).unwrap();
    let flask = samples::flask(&c.git, "flask12", &dir).unwrap();
    let express = samples::express(&c.git, "express12", &dir).unwrap();
    let react = samples::vite(&c.git, "react12", "react", &dir).unwrap();
    let deb12 = ["--os-template", OS_TEMPLATE];
    let c = &c;
    in_parallel(vec![
        Box::new(move || {
            let app = deploy(c, flask, "fl12", "flask", &deb12);
            let release = app.guest(". /etc/os-release; echo $VERSION_CODENAME");
            assert_eq!(release.trim(), "bookworm");
            app.lifecycle("starting; token is -")
        }),
        Box::new(move || {
            let app = deploy(c, express, "ex12", "express", &deb12);
            assert!(app.guest("node --version").starts_with("v18."));
            app.lifecycle("listening on")
        }),
        Box::new(move || {
            let mut args = vec!["--framework", "react"];
            args.extend_from_slice(&deb12);
            let (vmid, stderr) = deploy_fails(c, &react, "re12", &args);
            let message = cause(&stderr);
            for part in [
                "needs Node.js 20.19.0 or newer",
                "Vite",
                "is 18.",
                "nothing was installed",
                "Debian 13",
                "engines.node",
            ] {
                assert!(message.contains(part), "{part:?} not in: {message}");
            }
            let left = in_guest(
                c,
                vmid,
                "for p in nodejs npm nginx git; do dpkg-query -W -f='${Status}\\n' $p 2>/dev/null | grep -q 'install ok' && echo installed-$p; done; true",
            );
            assert!(left.trim().is_empty(), "re12: installed anyway: {left}");
            let unexpected = left_in_app_folder(c, vmid, "re12");
            assert!(
                unexpected.is_empty(),
                "re12: left in the app's folder: {unexpected:?}"
            );
            destroy_failed(c, "re12", vmid);
        }),
    ]);
}

#[test]
fn a_vm_guest_from_a_cloud_image_is_provisioned_through_sudo() {
    let test = "a_vm_guest_from_a_cloud_image_is_provisioned_through_sudo";
    if skip(test, &[(Release::Debian13, true)], &[]) {
        return;
    }
    let c = Cluster::start("proxdeck-vm13-", 4, true).expect("start the cluster");
    let dir = c.root.join("samples");
    let flask = samples::flask(&c.git, "flaskvm", &dir).unwrap();
    let app = deploy(&c, flask, "flvm", "flask", &["--type", "vm"]);
    let shown = json_of(&c.run(&["show", "flvm", "--json"], QUICK));
    assert_eq!(shown["guest_type"], "vm", "{shown}");
    // proxdeck logged in as the cloud-init user (vm.user), which cloud-init made from the
    // seed, and became root through sudo.
    assert_eq!(shown["ssh_user"], "proxdeck", "{shown}");
    let logs = c.run(&["logs", "flvm"], QUICK).stdout;
    assert!(
        logs.contains("as proxdeck (commands as root through sudo)"),
        "{logs}"
    );
    assert!(logs.contains("booted guest"), "{logs}");
    let seen = app.guest("id -nG proxdeck; cloud-init status || true");
    assert!(
        seen.contains("sudo") && seen.contains("status: done"),
        "{seen}"
    );
    let vm = c.pve.guest(app.vmid).unwrap();
    assert_eq!(vm["type"], "qemu", "{vm}");
    assert_eq!(vm["node"], NODE, "{vm}");
    app.expect_body(&app.sample.body);
    app.unit_is_active_and_enabled();
    app.destroy();
}
