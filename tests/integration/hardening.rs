//! The smaller defects of issue 10 and the destroy of `--host` deployments, through the built
//! binary with real parts: an HTML page from a proxy in front of Proxmox (fakepve answering
//! with one) is summarised; bad input (`--env PATH=...`, `--name ""`, an env file setting
//! `LD_PRELOAD`, an `app_root` the scripts would refuse) is refused naming the field; an app
//! that exits at once fails the health check right away with its last log lines (an sshd
//! test host plays the guest, with proxdeck's plain supervisor); a `--host` destroy is
//! DELETED only once the host is checked clean over SSH, and a host that cannot be reached
//! (its key changed) is handled by `destroy --force` and `forget --force`, which name what
//! may be left there.

use crate::support::fakepve::{FakePve, NODE};
use crate::support::git::GitServer;
use crate::support::net::{free_port_any, loopback, random_hex};
use crate::support::parts::{Part, skip_without};
use crate::support::process::Finished;
use crate::support::proxdeck::{AppGuard, Proxdeck, write_private};
use crate::support::sshd::SshHost;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEPLOY: Duration = Duration::from_secs(600);
const QUICK: Duration = Duration::from_secs(120);
/// A small app: no dependencies to install, Python's own HTTP server as the app.
const START: &str = "python3 -m http.server \"$PORT\" --bind 0.0.0.0";

fn json_of(done: &Finished, what: &str) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e})\n{}", done.describe()))
}

#[test]
fn an_html_page_from_a_proxy_is_summarised() {
    if skip_without("an_html_page_from_a_proxy_is_summarised", &[Part::Fakepve]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let pve = FakePve::start(loopback()).expect("start fakepve");
    let config = root.join("config.toml");
    write_private(
        &config,
        &format!(
            "[proxmox]\nendpoint = \"{}\"\napi_token = \"{}\"\nca_file = \"{}\"\nnode = \"{NODE}\"\nretries = 0\n",
            pve.url(),
            pve.token(),
            pve.ca_file().display()
        ),
    )
    .unwrap();
    let proxdeck = Proxdeck::new(config, root.join("data"), root);
    const PAGE: &str = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title>\
        <style>body { font-family: Tahoma, Verdana; }</style></head><body>\
        <h1>502 Bad Gateway</h1><hr><center>nginx/1.22.1</center></body></html>";
    pve.ctl(
        "fail",
        json!({"method": "GET", "suffix": "/cluster/resources", "status": 502, "message": PAGE, "html": true}),
    )
    .unwrap();
    let done = proxdeck.run(&["resources"], QUICK).unwrap();
    assert!(!done.success(), "{}", done.describe());
    assert!(
        done.stderr
            .contains("HTTP 502: an HTML page \"502 Bad Gateway\"")
            && done
                .stderr
                .contains("a proxy or web server in front of Proxmox"),
        "{}",
        done.describe()
    );
    for raw in ["<html", "font-family", "nginx/1.22.1"] {
        assert!(!done.stderr.contains(raw), "{raw}: {}", done.describe());
    }
    // A login page answered with 200 (a proxy asking for its own login) is named too.
    pve.ctl("clear_failures", Value::Null).unwrap();
    pve.ctl(
        "fail",
        json!({"method": "GET", "suffix": "/cluster/resources", "status": 200,
               "message": "<html><head><title>Sign in - Corp SSO</title></head><body>...</body></html>", "html": true}),
    )
    .unwrap();
    let done = proxdeck.run(&["resources"], QUICK).unwrap();
    assert!(!done.success(), "{}", done.describe());
    assert!(
        done.stderr
            .contains("an HTML page \"Sign in - Corp SSO\" came back instead of Proxmox's JSON")
            && done.stderr.contains("proxmox.endpoint"),
        "{}",
        done.describe()
    );
}

#[test]
fn bad_input_is_refused_naming_the_field() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let config = root.join("config.toml");
    write_private(&config, "").unwrap();
    let proxdeck = Proxdeck::new(config.clone(), root.join("data"), root);
    let env_file = root.join("app.env");
    std::fs::write(
        &env_file,
        "# settings\nDEBUG=0 # off\nLD_PRELOAD=/tmp/evil.so\n",
    )
    .unwrap();
    let env_file = env_file.display().to_string();
    let base = [
        "deploy",
        "--repo",
        "https://github.com/acme/shop.git",
        "--framework",
        "flask",
    ];
    for (extra, want) in [
        (
            vec!["--env", "PATH=/opt/bin"],
            "env: PATH cannot be set for the app: proxdeck sets it",
        ),
        (
            vec!["--env", "HOME=/root"],
            "env: HOME cannot be set for the app",
        ),
        (
            vec!["--env", "LD_PRELOAD=/tmp/x.so"],
            "env: LD_PRELOAD cannot be set for the app",
        ),
        (
            vec!["--env-file", env_file.as_str()],
            "line 3: LD_PRELOAD cannot be set",
        ),
        (vec!["--name", ""], "name: is empty"),
    ] {
        let mut args = base.to_vec();
        args.extend(extra.iter().copied());
        let done = proxdeck.run(&args, QUICK).unwrap();
        assert_eq!(
            done.status.code(),
            Some(2),
            "{extra:?}: {}",
            done.describe()
        );
        assert!(done.stderr.contains(want), "{extra:?}: {}", done.describe());
        // Refused before anything is recorded: the data dir is not even made.
        assert!(!root.join("data").exists(), "{extra:?}");
    }
    // An app folder the provisioning scripts would refuse is refused by `config check`.
    write_private(&config, "[guest]\napp_root = \"/opt/my apps\"\n").unwrap();
    let done = proxdeck.run(&["config", "check"], QUICK).unwrap();
    assert_eq!(done.status.code(), Some(2), "{}", done.describe());
    assert!(
        done.stderr
            .contains("guest.app_root: \"/opt/my apps\" holds ' '"),
        "{}",
        done.describe()
    );
    write_private(&config, "[guest]\napp_root = \"/srv/apps\"\n").unwrap();
    let done = proxdeck.run(&["config", "check"], QUICK).unwrap();
    assert!(done.success(), "{}", done.describe());
}

/// An sshd test host (this machine), a git daemon with a Flask sample, one data dir.
struct HostBench {
    _work: tempfile::TempDir,
    app_root: PathBuf,
    ssh: SshHost,
    git: GitServer,
    proxdeck: Proxdeck,
    sample_url: String,
}

impl HostBench {
    fn new(prefix: &str) -> HostBench {
        let work = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let root = work.path().to_path_buf();
        // The apps' own users must reach their folders under it.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let data_dir = root.join("data");
        let app_root = root.join("apps");
        let ssh =
            SshHost::start(loopback(), &data_dir.join("keys/id_ed25519.pub")).expect("start sshd");
        let git = GitServer::start(loopback()).expect("start git daemon");
        let sample_url = git.add_flask_app("host-sample").unwrap().git_url;
        let config = root.join("config.toml");
        write_private(
            &config,
            &format!(
                "[guest]\nssh_user = \"root\"\napp_root = \"{}\"\n\n\
                 [timeouts]\nssh_secs = 10\nhealth_secs = 300\nprovision_secs = 600\n",
                app_root.display()
            ),
        )
        .unwrap();
        let proxdeck = Proxdeck::new(config, data_dir, &root);
        HostBench {
            _work: work,
            app_root,
            ssh,
            git,
            proxdeck,
            sample_url,
        }
    }

    fn host(&self) -> String {
        format!("{}:{}", self.ssh.addr(), self.ssh.port())
    }

    fn run(&self, args: &[&str], timeout: Duration) -> Finished {
        self.proxdeck
            .run(args, timeout)
            .unwrap_or_else(|e| panic!("proxdeck {args:?}: {e:#}"))
    }

    /// `deploy --host` of the sample as `name` with `start` as its start command.
    fn deploy(&self, name: &str, start: &str) -> (Finished, AppGuard) {
        let guard = AppGuard::new(self.app_root.join(name).join("run/app.pid"));
        let port = free_port_any().unwrap().to_string();
        let host = self.host();
        let done = self.run(
            &[
                "deploy",
                "--repo",
                &self.sample_url,
                "--host",
                &host,
                "--framework",
                "flask",
                "--name",
                name,
                "--port",
                &port,
                "--install",
                "true",
                "--start",
                start,
                "--json",
            ],
            DEPLOY,
        );
        (done, guard)
    }

    fn context(&self, name: &str, what: &str) -> String {
        let logs = self
            .proxdeck
            .run(&["logs", name], QUICK)
            .map(|l| l.stdout)
            .unwrap_or_default();
        format!(
            "{what}\n--- proxdeck logs ---\n{logs}\n--- sshd ---\n{}\n--- git ---\n{}",
            self.ssh.log_tail(),
            self.git.log_tail()
        )
    }

    fn deployed(&self, name: &str) -> AppGuard {
        let (done, guard) = self.deploy(name, START);
        if !done.success() {
            panic!(
                "{}",
                self.context(name, &format!("deploy: {}", done.describe()))
            );
        }
        assert_eq!(json_of(&done, "deploy")["status"], "RUNNING");
        guard
    }
}

fn user_exists(user: &str) -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .arg(user)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn an_app_that_exits_at_once_fails_the_health_check_with_its_last_lines() {
    if skip_without(
        "an_app_that_exits_at_once_fails_the_health_check_with_its_last_lines",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let b = HostBench::new("proxdeck-crash-");
    let name = format!("crash-{}", random_hex(6));
    let (done, _guard) = b.deploy(
        &name,
        "python3 -c 'import sys; print(\"boom: SECRET_KEY is not set\", flush=True); sys.exit(3)'",
    );
    assert!(!done.success(), "{}", done.describe());
    // Stopped by the service watch, not by the 300 s health timeout.
    assert!(
        done.stderr.contains("stage health-check failed")
            && done
                .stderr
                .contains("the app keeps exiting right after it starts")
            && done.stderr.contains("| boom: SECRET_KEY is not set"),
        "{}",
        b.context(&name, &done.describe())
    );
    assert!(
        !done
            .stderr
            .contains("did not answer with a success (2xx or 3xx) within"),
        "{}",
        done.describe()
    );
    let shown = json_of(&b.run(&["show", &name, "--json"], QUICK), "show");
    assert_eq!(shown["status"], "FAILED", "{shown}");
    assert!(
        shown["error"]
            .as_str()
            .unwrap()
            .starts_with("health-check: the app keeps exiting"),
        "{shown}"
    );
    // The failed app is removed again, and the host checked clean.
    let done = b.run(&["destroy", &name, "--yes", "--json"], QUICK);
    assert!(done.success(), "{}", b.context(&name, &done.describe()));
    assert_eq!(json_of(&done, "destroy")["status"], "DELETED");
}

/// An OpenRC service file for the app, which the removal script cannot remove on a machine
/// without OpenRC; removed when the test ends.
struct InitScript(PathBuf);

impl Drop for InitScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn host_destroy_is_confirmed_and_an_unreachable_host_can_be_forced() {
    if skip_without(
        "host_destroy_is_confirmed_and_an_unreachable_host_can_be_forced",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let mut b = HostBench::new("proxdeck-hostdestroy-");
    let tag = random_hex(6);
    let (first, second, third) = (
        format!("hd1-{tag}"),
        format!("hd2-{tag}"),
        format!("hd3-{tag}"),
    );
    let folder = |name: &str| b.app_root.join(name);

    // 1. A removal that leaves something behind is not DELETED: here an OpenRC service file
    // the script skips (no rc-service on this machine), found by the check that follows.
    let _one = b.deployed(&first);
    assert!(
        !Path::new("/sbin/rc-service").exists() && !Path::new("/usr/sbin/rc-service").exists(),
        "this test needs a machine without OpenRC"
    );
    let init = InitScript(PathBuf::from(format!("/etc/init.d/proxdeck-{first}")));
    std::fs::create_dir_all("/etc/init.d").unwrap();
    std::fs::write(&init.0, "#!/sbin/openrc-run\n").unwrap();
    let done = b.run(&["destroy", &first, "--yes"], QUICK);
    assert!(!done.success(), "{}", done.describe());
    assert!(
        done.stderr.contains(&format!(
            "the host still has the OpenRC service proxdeck-{first}"
        )),
        "{}",
        b.context(&first, &done.describe())
    );
    let shown = json_of(&b.run(&["show", &first, "--json"], QUICK), "show");
    assert_eq!(shown["status"], "FAILED", "{shown}");
    drop(init);
    let done = b.run(&["destroy", &first, "--yes", "--json"], QUICK);
    assert!(done.success(), "{}", b.context(&first, &done.describe()));
    assert_eq!(json_of(&done, "destroy")["status"], "DELETED");
    assert!(
        done.stderr.contains(&format!(
            "the service proxdeck-{first}, the system user pd-{first} and the folder {} are gone",
            folder(&first).display()
        )),
        "{}",
        done.describe()
    );
    assert!(!folder(&first).exists() && !user_exists(&format!("pd-{first}")));

    // 2. The host's key changed: destroy fails and points at --force; forget refuses and
    // points at --force; both with --force drop the deployment and name what may be left.
    let _two = b.deployed(&second);
    let _three = b.deployed(&third);
    b.ssh.restart_with_new_host_key().expect("new host key");
    let done = b.run(&["destroy", &second, "--yes"], QUICK);
    assert!(!done.success(), "{}", done.describe());
    let id_of = |name: &str| -> String {
        json_of(&b.run(&["show", name, "--json"], QUICK), "show")["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let second_id = id_of(&second);
    assert!(
        done.stderr.contains("host key")
            && done
                .stderr
                .contains(&format!("`proxdeck destroy {second_id} --force`")),
        "{}",
        done.describe()
    );
    let done = b.run(&["forget", &third], QUICK);
    assert_eq!(done.status.code(), Some(1), "{}", done.describe());
    assert!(done.stderr.contains("--force"), "{}", done.describe());

    let done = b.run(&["destroy", &second, "--yes", "--force", "--json"], QUICK);
    assert!(done.success(), "{}", done.describe());
    assert_eq!(json_of(&done, "destroy --force")["status"], "DELETED");
    assert!(
        done.stderr.contains(&format!(
            "may be left behind on {}: the service proxdeck-{second}, the system user pd-{second} and the folder {}",
            b.ssh.addr(),
            folder(&second).display()
        )),
        "{}",
        done.describe()
    );
    let done = b.run(&["forget", &third, "--force", "--json"], QUICK);
    assert!(done.success(), "{}", done.describe());
    let forgotten = json_of(&done, "forget --force");
    let left = forgotten["left_behind"].to_string();
    assert!(
        left.contains(&format!("the service proxdeck-{third}"))
            && left.contains(&format!("{}", folder(&third).display())),
        "{forgotten}"
    );
    let list = json_of(&b.run(&["list", "--json"], QUICK), "list");
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&third.as_str()), "{list}");
}
