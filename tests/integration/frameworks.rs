//! Deployments onto an existing host over real SSH (issue 5): `proxdeck deploy --host` onto an
//! sshd test host on a loopback address (this machine plays the host: no Terraform, no
//! systemd, so the app runs under proxdeck's own supervisor), with a Flask sample served by a
//! git daemon. What only this path shows: env vars (an env file and `--env`) that arrive byte
//! for byte, hostile ones included, and are masked in every log line and never on a command
//! line; redeploy of a new commit and rollback; a changed host key that stops a redeploy; the
//! app's own log (`logs --app [-f]`) from the supervisor's log file; the destroy that removes
//! the app and leaves the host; SSH failures named clearly; hostile input refused before
//! anything runs; a user's own key and command overrides.
//!
//! Every framework on a fresh Debian guest with systemd is proven in `real_guests.rs`.

use crate::support::git::GitServer;
use crate::support::net::{free_port_any, http_get, loopback, random_hex, wait_http_ok};
use crate::support::parts::{Part, skip_without};
use crate::support::process::{Finished, run_ok};
use crate::support::proxdeck::{AppGuard, ArgvWatch, Proxdeck, files_containing, write_private};
use crate::support::samples::{self, Sample};
use crate::support::sshd::SshHost;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const DEPLOY: Duration = Duration::from_secs(900);
pub(crate) const QUICK: Duration = Duration::from_secs(120);

/// One sshd test host, one git daemon and one proxdeck data dir, in a folder of their own.
pub(crate) struct Bench {
    _work: tempfile::TempDir,
    pub(crate) root: PathBuf,
    data_dir: PathBuf,
    pub(crate) app_root: PathBuf,
    /// The host's address and SSH port, which a restart of sshd keeps.
    pub(crate) addr: std::net::Ipv4Addr,
    ssh_port: u16,
    ssh: std::sync::Mutex<SshHost>,
    pub(crate) git: GitServer,
    pub(crate) proxdeck: Proxdeck,
}

impl Bench {
    /// `authorized`: the key sshd lets in (default: proxdeck's own, made on first use).
    pub(crate) fn new(prefix: &str, authorized: Option<&Path>, ssh_secs: u32) -> Bench {
        let work = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let root = work.path().to_path_buf();
        // The apps' own users must reach their folders under it.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let data_dir = root.join("data");
        let app_root = root.join("apps");
        let keys = data_dir.join("keys/id_ed25519.pub");
        let ssh = SshHost::start(loopback(), authorized.unwrap_or(&keys)).expect("start sshd");
        let git = GitServer::start(loopback()).expect("start git daemon");
        let config = root.join("config.toml");
        write_private(
            &config,
            &format!(
                "[guest]\nssh_user = \"root\"\napp_root = \"{}\"\n\n\
                 [timeouts]\nssh_secs = {ssh_secs}\nhealth_secs = 180\nprovision_secs = 900\n",
                app_root.display()
            ),
        )
        .unwrap();
        let proxdeck = Proxdeck::new(config, data_dir.clone(), &root);
        Bench {
            _work: work,
            root,
            data_dir,
            app_root,
            addr: ssh.addr(),
            ssh_port: ssh.port(),
            ssh: std::sync::Mutex::new(ssh),
            git,
            proxdeck,
        }
    }

    pub(crate) fn host(&self) -> String {
        format!("{}:{}", self.addr, self.ssh_port)
    }

    pub(crate) fn url(&self, port: u16) -> String {
        format!("http://{}:{port}/", self.addr)
    }

    pub(crate) fn sshd(&self) -> std::sync::MutexGuard<'_, SshHost> {
        self.ssh.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn run(&self, args: &[&str], timeout: Duration) -> Finished {
        self.proxdeck
            .run(args, timeout)
            .unwrap_or_else(|e| panic!("proxdeck {args:?}: {e:#}"))
    }

    /// `deploy --host` of `sample` as `name` on `port`, plus `extra` arguments; must succeed.
    pub(crate) fn deploy(&self, sample: &Sample, name: &str, port: u16, extra: &[&str]) -> Value {
        let port = port.to_string();
        let host = self.host();
        let mut args = vec![
            "deploy",
            "--repo",
            &sample.git_url,
            "--host",
            &host,
            "--name",
            name,
            "--port",
            &port,
            "--json",
        ];
        args.extend_from_slice(extra);
        let done = self.run(&args, DEPLOY);
        self.expect_ok(&done, name, "deploy");
        let d = json_of(&done);
        assert_eq!(d["status"], "RUNNING", "{d}");
        assert_eq!(d["origin"], "host", "{d}");
        d
    }

    /// Fails with everything that helps: the command's output, the deployment's log, sshd's.
    pub(crate) fn expect_ok(&self, done: &Finished, name: &str, what: &str) {
        if done.success() {
            return;
        }
        let logs = self
            .proxdeck
            .run(&["logs", name], QUICK)
            .map(|l| l.stdout)
            .unwrap_or_default();
        panic!(
            "{what} {name} failed: {}\n--- proxdeck logs ---\n{logs}\n--- sshd ---\n{}\n--- git ---\n{}",
            done.describe(),
            self.sshd().log_tail(),
            self.git.log_tail()
        );
    }

    pub(crate) fn installed(&self, name: &str) -> Installed {
        Installed {
            app: AppGuard::new(self.app_root.join(name).join("run/app.pid")),
            user: format!("pd-{name}"),
        }
    }
}

/// The app a test deployed on this machine: its process group stopped and its system user
/// removed however the test ends (a passing test has destroyed both already).
pub(crate) struct Installed {
    app: AppGuard,
    user: String,
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.app.stop();
        // This machine's processes only: the real guests' users may have the same uid.
        let _ = Command::new("pkill")
            .args(["-KILL", "--ns", &std::process::id().to_string()])
            .args(["--nslist", "pid", "-u", &self.user])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("userdel")
            .arg(&self.user)
            .stderr(Stdio::null())
            .status();
    }
}

pub(crate) fn json_of(done: &Finished) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e})\n{}", done.describe()))
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_default()
}

/// GET `url` until it answers 200 with `want` in the body.
pub(crate) fn expect_body(url: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = wait_http_ok(url, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
        if answer.body.contains(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "GET {url} answered {:?}, expected it to contain {want:?}",
            answer.body
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn user_exists(user: &str) -> bool {
    Command::new("id")
        .arg("-u")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Destroys a deployment on the host and checks that the app, its folder and its user are
/// gone while the host (sshd) lives on.
pub(crate) fn destroy_and_check(b: &Bench, name: &str, port: u16) {
    let done = b.run(&["destroy", name, "--yes", "--json"], QUICK);
    b.expect_ok(&done, name, "destroy");
    assert_eq!(json_of(&done)["status"], "DELETED");
    assert!(
        !b.app_root.join(name).exists(),
        "{name}: the app's folder is still there"
    );
    assert!(
        !user_exists(&format!("pd-{name}")),
        "{name}: its system user is still there"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(&b.url(port), Duration::from_secs(2)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{name}: something still answers on port {port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    b.sshd()
        .check_alive()
        .expect("the host itself (sshd) must live on");
}

/// `ssh-keygen -lf`: the SHA256 fingerprint of a public key line.
fn fingerprint(public_key: &str, dir: &Path) -> String {
    let path = dir.join(format!("key-{}.pub", random_hex(6)));
    std::fs::write(&path, format!("{public_key}\n")).unwrap();
    let out = run_ok(Command::new("ssh-keygen").arg("-lf").arg(&path)).unwrap();
    out.stdout
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string()
}

/// Flask through everything: secrets, redeploy, rollback, a changed host key, app logs and
/// destroy.
#[test]
fn a_flask_app_deploys_redeploys_rolls_back_and_goes() {
    if skip_without(
        "a_flask_app_deploys_redeploys_rolls_back_and_goes",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let b = Bench::new("proxdeck-py-", None, 60);
    let samples_dir = b.root.join("samples");
    let flask = samples::flask(&b.git, "flask-sample", &samples_dir).unwrap();
    let flask_name = format!("fl-{}", random_hex(5));
    let _cleanup = b.installed(&flask_name);
    let ports = [free_port_any().unwrap()];

    // Secrets: one from an env file (never on any command line), one hostile from --env.
    let secret = format!("s3cr3t-{}", random_hex(16));
    let pwned = b.root.join("pwned");
    let hostile = format!(
        "it's \"$(touch {p})\" `touch {p}`; a&b | c > {p} ünïcødé  two  spaces \\ $HOME",
        p = pwned.display()
    );
    let env_file = b.root.join("app.env");
    std::fs::write(
        &env_file,
        format!("# the app's settings\nSECRET_TOKEN={secret}\nexport FROM_FILE='x y'\n"),
    )
    .unwrap();
    let watch = ArgvWatch::start(&secret);
    let hostile_arg = format!("HOSTILE={hostile}");

    {
        // Flask, named explicitly, with a build that prints the secret (it must be masked).
        let d = b.deploy(
            &flask,
            &flask_name,
            ports[0],
            &[
                "--framework",
                "flask",
                "--env-file",
                env_file.to_str().unwrap(),
                "--env",
                &hostile_arg,
                "--build",
                "echo \"build sees token $SECRET_TOKEN\"",
                "--health-path",
                "/env/FROM_FILE",
                "--health-status",
                "200",
            ],
        );
        let url = b.url(ports[0]);
        assert!(text(&d["url"]).starts_with(&url), "{d}");
        assert_eq!(text(&d["commit"]), flask.commit, "{d}");
        expect_body(&url, &flask.body);
        // The values arrive as they were typed; nothing in them ran.
        let got = http_get(&format!("{url}env/HOSTILE"), Duration::from_secs(10)).unwrap();
        assert_eq!(got.body, hostile, "the hostile value changed on its way");
        let got = http_get(&format!("{url}env/FROM_FILE"), Duration::from_secs(10)).unwrap();
        assert_eq!(got.body, "x y");
        let got = http_get(&format!("{url}env/SECRET_TOKEN"), Duration::from_secs(10)).unwrap();
        assert_eq!(got.body, secret);
        assert!(!pwned.exists(), "a value reached a shell");
        let pid_file = b.app_root.join(&flask_name).join("run/app.pid");
        assert!(pid_file.is_file(), "no pid file at {}", pid_file.display());
        let env_path = b.app_root.join(&flask_name).join("app.env");
        let mode = std::fs::metadata(&env_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the guest's env file must be 0600");

        // The deployment log: the build's line with the secret masked.
        let logs = b.run(&["logs", &flask_name], QUICK);
        assert!(
            logs.stdout.contains("build sees token ***"),
            "the build's line is missing or unmasked:\n{}",
            logs.stdout
        );
        assert!(
            logs.stdout.contains("pinned host key of"),
            "{}",
            logs.stdout
        );
        // The app's own log over SSH, masked too.
        let app_logs = b.run(&["logs", &flask_name, "--app", "-n", "500"], QUICK);
        b.expect_ok(&app_logs, &flask_name, "logs --app");
        assert!(
            app_logs.stdout.contains("starting; token is ***"),
            "{}",
            app_logs.describe()
        );
        assert!(
            app_logs.stdout.contains("a line on stderr"),
            "{}",
            app_logs.describe()
        );

        // Redeploy a new commit: the new content; the old commit kept.
        let (body2, commit2) = flask.change(&b.git).unwrap();
        let done = b.run(&["redeploy", &flask_name, "--json"], DEPLOY);
        b.expect_ok(&done, &flask_name, "redeploy");
        let d = json_of(&done);
        assert_eq!(
            (text(&d["commit"]), text(&d["previous_commit"])),
            (commit2.clone(), flask.commit.clone()),
            "{d}"
        );
        expect_body(&url, &body2);

        // Rollback: the old content again, and the commit it left kept in turn.
        let done = b.run(&["rollback", &flask_name, "--json"], DEPLOY);
        b.expect_ok(&done, &flask_name, "rollback");
        let d = json_of(&done);
        assert_eq!(
            (text(&d["commit"]), text(&d["previous_commit"])),
            (flask.commit.clone(), commit2.clone()),
            "{d}"
        );
        assert_eq!(d["status"], "RUNNING");
        expect_body(&url, &flask.body);

        // A changed host key stops the redeploy, naming both fingerprints; the app stays.
        let old_key = b.sshd().host_public_key().to_string();
        let new_key = b.sshd().restart_with_new_host_key().unwrap();
        let done = b.run(&["redeploy", &flask_name], DEPLOY);
        assert!(
            !done.success(),
            "a changed host key was accepted: {}",
            done.describe()
        );
        let said = format!("{}{}", done.stdout, done.stderr);
        assert!(said.contains("host key changed"), "{said}");
        for key in [&old_key, &new_key] {
            let fp = fingerprint(key, &b.root);
            assert!(
                said.contains(&fp),
                "the message does not name {fp}:\n{said}"
            );
        }
        let shown = json_of(&b.run(&["show", &flask_name, "--json"], QUICK));
        assert_eq!(shown["status"], "FAILED", "{shown}");
        expect_body(&url, &flask.body);
        // The real host back: a redeploy from FAILED works again (main's newest commit).
        b.sshd().restart_with_original_host_key().unwrap();
        let done = b.run(&["redeploy", &flask_name, "--json"], DEPLOY);
        b.expect_ok(&done, &flask_name, "redeploy after the key came back");
        expect_body(&url, &body2);

        // logs --app -f follows until Ctrl-C; the deployment's log with -f ends by itself once
        // the deployment has settled.
        follow_until_interrupted(&b, &flask_name, "starting; token is ***");
        let done = b.run(&["logs", &flask_name, "-f"], QUICK);
        assert!(
            done.success() && done.stdout.contains("RUNNING at"),
            "{}",
            done.describe()
        );
    }

    destroy_and_check(&b, &flask_name, ports[0]);

    // The secret is in no file of the data dir (its 0600 secrets file went with the destroy),
    // in no log line, and was on no process's command line.
    let leaks = files_containing(&b.data_dir, &secret);
    assert!(leaks.is_empty(), "the secret is in {leaks:?}");
    let all_logs = b.run(&["logs", &flask_name], QUICK).stdout;
    assert!(
        !all_logs.contains(&secret),
        "the secret is in the deployment log"
    );
    let argv = watch.finish();
    assert!(
        argv.is_empty(),
        "the secret was on a command line: {argv:?}"
    );
}

/// `proxdeck logs NAME --app -f`: prints lines until `want` shows, then a SIGINT ends it.
fn follow_until_interrupted(b: &Bench, name: &str, want: &str) {
    let mut cmd = b.proxdeck.command(["logs", name, "--app", "-f"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) if line.contains(want) => break,
            Ok(line) => seen.push(line),
            Err(_) => {}
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("logs --app -f never printed {want:?}; it printed {seen:?}");
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("logs --app -f did not stop on Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "logs --app -f ended with {status}");
}

/// SSH failures are named so a user can act (refused, authentication); `--ssh-key` uses the
/// user's own key; command overrides replace the catalog's; hostile input never runs.
#[test]
fn ssh_failures_are_named_and_a_users_own_key_works() {
    if skip_without(
        "ssh_failures_are_named_and_a_users_own_key_works",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let own_key = keys.path().join("id_mine");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "mine", "-f"])
            .arg(&own_key),
    )
    .unwrap();
    // sshd lets in the user's own key only, not proxdeck's.
    let b = Bench::new("proxdeck-sshfail-", Some(&own_key.with_extension("pub")), 4);
    let dir = b.root.join("samples");
    let sample = samples::flask(&b.git, "plain-sample", &dir).unwrap();
    let port = free_port_any().unwrap();
    let port_s = port.to_string();

    // Nothing listens: refused, said so.
    let closed = format!("{}:{}", loopback(), free_port_any().unwrap());
    let done = b.run(
        &[
            "deploy",
            "--repo",
            &sample.git_url,
            "--framework",
            "flask",
            "--host",
            &closed,
            "--name",
            "refused",
            "--port",
            &port_s,
        ],
        QUICK,
    );
    assert!(!done.success());
    assert!(
        done.stderr.contains("connection refused"),
        "{}",
        done.describe()
    );
    assert!(
        done.stderr.contains("stage ssh failed"),
        "{}",
        done.describe()
    );
    // Retrying it needs no Proxmox settings either: it fails the same way, at ssh.
    let done = b.run(&["retry", "refused"], QUICK);
    assert!(
        !done.success() && done.stderr.contains("connection refused"),
        "{}",
        done.describe()
    );

    // proxdeck's own key is not authorized there: an authentication failure, said so.
    let host = b.host();
    let done = b.run(
        &[
            "deploy",
            "--repo",
            &sample.git_url,
            "--framework",
            "flask",
            "--host",
            &host,
            "--name",
            "denied",
            "--port",
            &port_s,
        ],
        QUICK,
    );
    assert!(!done.success());
    assert!(
        done.stderr.contains("authentication as root failed"),
        "{}",
        done.describe()
    );

    // Hostile input is refused before anything is recorded or run.
    let pwned = b.root.join("pwned");
    let bad_repo = format!("{};touch {}", sample.git_url, pwned.display());
    let bad_ref = format!("$(touch {})", pwned.display());
    let bad_host = format!("{host};touch {}", pwned.display());
    for (field, args) in [
        (
            "repo",
            vec!["--repo", bad_repo.as_str(), "--host", host.as_str()],
        ),
        (
            "ref",
            vec![
                "--repo",
                sample.git_url.as_str(),
                "--ref",
                bad_ref.as_str(),
                "--host",
                host.as_str(),
            ],
        ),
        (
            "host",
            vec![
                "--repo",
                sample.git_url.as_str(),
                "--host",
                bad_host.as_str(),
            ],
        ),
        (
            "env",
            vec![
                "--repo",
                sample.git_url.as_str(),
                "--host",
                host.as_str(),
                "--env",
                "BAD-NAME=x",
            ],
        ),
        (
            "env",
            vec![
                "--repo",
                sample.git_url.as_str(),
                "--host",
                host.as_str(),
                "--env",
                "SPLIT=one\ntouch /tmp/never",
            ],
        ),
    ] {
        let mut argv = vec!["deploy", "--framework", "flask", "--name", "hostile"];
        argv.extend(args);
        let done = b.run(&argv, QUICK);
        assert_eq!(done.status.code(), Some(2), "{field}: {}", done.describe());
        assert!(
            done.stderr.contains(&format!("{field}:")),
            "{field}: {}",
            done.describe()
        );
    }
    assert!(!pwned.exists(), "hostile input reached a shell");

    // The user's own key, and the catalog's commands replaced: a plain Python HTTP server.
    let name = format!("own-{}", random_hex(5));
    let _cleanup = b.installed(&name);
    let d = b.deploy(
        &sample,
        &name,
        port,
        &[
            "--framework",
            "flask",
            "--ssh-key",
            own_key.to_str().unwrap(),
            "--install",
            "true",
            "--start",
            "exec python3 -m http.server \"$PORT\" --bind 0.0.0.0",
        ],
    );
    assert_eq!(
        d["overrides"]["start"],
        "exec python3 -m http.server \"$PORT\" --bind 0.0.0.0"
    );
    // http.server lists the checkout: app.py is there.
    expect_body(&b.url(port), "app.py");
    // A hostile --ref for redeploy is refused too.
    let done = b.run(&["redeploy", &name, "--ref", &bad_ref], QUICK);
    assert!(
        !done.success() && done.stderr.contains("ref:"),
        "{}",
        done.describe()
    );
    assert!(!pwned.exists(), "hostile input reached a shell");
    destroy_and_check(&b, &name, port);
}
