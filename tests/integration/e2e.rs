//! End to end through the built binary (issue 2): fakepve plays Proxmox (HTTPS, own CA, API
//! token), the stand-in templates dir (`tests/fixtures/terraform`) creates and deletes the
//! container through the fake's API, an sshd on a loopback address plays the guest, and a git
//! daemon serves a real Flask app made by the test.
//!
//! proxdeck runs with `PROXDECK_TEST_SUPPORT` (tests/support) and `PROXDECK_TEST_PYTHON` (the
//! test venv's python) in its environment: the stand-in template's provisioners use them.

use crate::support::fakepve::{FakePve, NODE, OS_TEMPLATE};
use crate::support::git::GitServer;
use crate::support::net::{free_port_any, loopback, random_hex, wait_http_ok};
use crate::support::parts::{Part, skip_without, templates_dir};
use crate::support::process::Finished;
use crate::support::proxdeck::{
    AppGuard, ArgvWatch, Proxdeck, files_containing, list_files, write_private,
};
use crate::support::sshd::SshHost;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);
const QUICK: Duration = Duration::from_secs(60);

/// The config file the tests write: `[proxmox]` only when a fake is given.
fn config_text(pve: Option<&FakePve>, ssh_port: u16, app_root: &Path, guest: Ipv4Addr) -> String {
    let mut text = String::new();
    if let Some(pve) = pve {
        text.push_str(&format!(
            "[proxmox]\n\
             endpoint = \"{url}\"\n\
             api_token = \"{token}\"\n\
             ca_file = \"{ca}\"\n\
             node = \"{NODE}\"\n\n",
            url = pve.url(),
            token = pve.token(),
            ca = pve.ca_file().display(),
        ));
    }
    text.push_str(&format!(
        "[guest]\n\
         ssh_port = {ssh_port}\n\
         ssh_user = \"root\"\n\
         app_root = \"{app_root}\"\n\
         os_template = \"{OS_TEMPLATE}\"\n\
         datastore = \"local-lvm\"\n\
         bridge = \"vmbr0\"\n\n\
         [network]\n\
         pool = \"{guest}/32\"\n\
         prefix = 8\n\
         gateway = \"127.0.0.1\"\n\n\
         [terraform]\n\
         templates_dir = \"{templates}\"\n\n\
         [timeouts]\n\
         ssh_secs = 60\n\
         health_secs = 90\n",
        app_root = app_root.display(),
        templates = templates_dir().display(),
    ));
    text
}

fn json_of(done: &Finished, what: &str) -> Value {
    serde_json::from_str(done.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON value ({e})\n{}",
            done.describe()
        )
    })
}

/// `PROXDECK_TEST_VERBOSE=1`: print proxdeck's output (with `--nocapture`).
fn verbose() -> bool {
    std::env::var_os("PROXDECK_TEST_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0")
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[test]
fn flask_deploy_end_to_end() {
    if skip_without(
        "flask_deploy_end_to_end",
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
        .prefix("proxdeck-e2e-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let data_dir = root.join("data");
    let app_root = root.join("apps");
    let name = format!("e2e-flask-{}", random_hex(6));
    // Kills the app on this machine (the "guest") however the test ends.
    let app = AppGuard::new(app_root.join(&name).join("run/app.pid"));

    let pve = FakePve::start(loopback()).expect("start fakepve");
    let guest = loopback();
    let ssh = SshHost::start(guest, &data_dir.join("keys/id_ed25519.pub")).expect("start sshd");
    let git = GitServer::start(loopback()).expect("start git daemon");
    let sample = git.add_flask_app("flask-sample").unwrap();
    let app_port = free_port_any().unwrap();

    let config = root.join("config.toml");
    write_private(
        &config,
        &config_text(Some(&pve), ssh.port(), &app_root, guest),
    )
    .unwrap();
    let proxdeck = Proxdeck::new(config, data_dir.clone(), root);
    let secret = pve.secret().to_string();
    let watch = ArgvWatch::start(&secret);
    let context = |what: &str| {
        format!(
            "{what}\n--- fakepve ---\n{}\n--- sshd ---\n{}\n--- git daemon ---\n{}",
            pve.log_tail(),
            ssh.log_tail(),
            git.log_tail()
        )
    };

    // Deploy: RUNNING, with one JSON object on stdout.
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
                "lxc",
                "--name",
                &name,
                "--port",
                &port,
                "--json",
            ],
            DEPLOY_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{}", context(&format!("deploy: {e:#}"))));
    if !deployed.success() {
        let logs = proxdeck.run(&["logs", &name], QUICK).map(|d| d.describe());
        panic!(
            "{}",
            context(&format!(
                "deploy failed: {}\n--- proxdeck logs ---\n{}",
                deployed.describe(),
                logs.unwrap_or_else(|e| e.to_string())
            ))
        );
    }
    if verbose() {
        eprintln!("--- deploy ---\n{}", deployed.describe());
    }
    let dep = json_of(&deployed, "deploy --json");
    assert_eq!(dep["status"], "RUNNING", "{dep}");
    assert_eq!(dep["name"], name.as_str(), "{dep}");
    assert_eq!(text_of(&dep["framework"]).to_lowercase(), "flask", "{dep}");
    assert_eq!(text_of(&dep["ip"]), guest.to_string(), "{dep}");
    let id = text_of(&dep["id"]);
    assert!(!id.is_empty(), "no id: {dep}");
    let url = text_of(&dep["url"]);
    assert!(
        url.starts_with(&format!("http://{guest}:{app_port}")),
        "url {url:?}: {dep}"
    );
    let vmid = dep["vmid"]
        .as_u64()
        .or_else(|| text_of(&dep["vmid"]).parse().ok())
        .unwrap_or_else(|| panic!("no vmid: {dep}"));

    // The app answers with the sample's own body.
    let answer = wait_http_ok(&url, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{}", context(&format!("GET {url}: {e:#}"))));
    assert_eq!(answer.status, 200);
    assert!(
        answer.body.contains(&sample.body),
        "GET {url} answered {:?}, expected {:?}",
        answer.body,
        sample.body
    );
    assert!(
        app.pid_file.is_file(),
        "no pid file at {} (the contract: app_root/<name>/run/app.pid)",
        app.pid_file.display()
    );

    // The container exists in the fake.
    let ct = pve
        .container(NODE, vmid)
        .unwrap()
        .unwrap_or_else(|| panic!("{}", context(&format!("CT {vmid} is not in the fake"))));
    assert_eq!(ct["status"], "running", "{ct}");

    // show and list, by name and by id.
    for key in [name.as_str(), id.as_str()] {
        let shown = proxdeck.run(&["show", key, "--json"], QUICK).unwrap();
        assert!(shown.success(), "show {key}: {}", shown.describe());
        let shown = json_of(&shown, "show --json");
        assert_eq!(shown["status"], "RUNNING", "{shown}");
        assert_eq!(text_of(&shown["id"]), id, "{shown}");
    }
    let listed = proxdeck.run(&["list", "--json"], QUICK).unwrap();
    assert!(listed.success(), "list: {}", listed.describe());
    let listed = json_of(&listed, "list --json");
    let all = listed.as_array().expect("list --json is an array");
    assert!(all.iter().any(|d| d["name"] == name.as_str()), "{listed}");

    // The log holds terraform's lines and the provisioning's.
    let logs = proxdeck.run(&["logs", &name], QUICK).unwrap();
    assert!(logs.success(), "logs: {}", logs.describe());
    if verbose() {
        eprintln!("--- logs ---\n{}", logs.describe());
    }
    assert!(
        logs.stdout.contains("pve_ct: created CT"),
        "no terraform provisioner line in the log:\n{}",
        logs.stdout
    );
    assert!(
        logs.stdout.to_lowercase().contains("gunicorn"),
        "no provisioning line (pip/gunicorn) in the log:\n{}",
        logs.stdout
    );

    // Destroy: DELETED, and the container is gone from the fake.
    let destroyed = proxdeck
        .run(&["destroy", &name, "--yes"], DEPLOY_TIMEOUT)
        .unwrap();
    assert!(
        destroyed.success(),
        "{}",
        context(&format!("destroy: {}", destroyed.describe()))
    );
    let shown = proxdeck.run(&["show", &id, "--json"], QUICK).unwrap();
    assert!(shown.success(), "show after destroy: {}", shown.describe());
    assert_eq!(json_of(&shown, "show --json")["status"], "DELETED");
    assert!(
        pve.container(NODE, vmid).unwrap().is_none(),
        "CT {vmid} is still in the fake after destroy"
    );
    app.stop();

    // The token's secret is nowhere: no file under the data dir, no log line, no output,
    // no process's argv.
    let leaks = files_containing(&data_dir, &secret);
    assert!(
        leaks.is_empty(),
        "the API token secret is in {leaks:?} (files: {:?})",
        list_files(&data_dir)
    );
    let logs = proxdeck.run(&["logs", &name], QUICK).unwrap();
    assert!(logs.success(), "logs: {}", logs.describe());
    for (what, text) in [
        ("`proxdeck logs`", &logs.stdout),
        ("deploy's stdout", &deployed.stdout),
        ("deploy's stderr", &deployed.stderr),
        ("destroy's output", &destroyed.stdout),
        ("destroy's stderr", &destroyed.stderr),
    ] {
        assert!(!text.contains(&secret), "the API token secret is in {what}");
    }
    let argv = watch.finish();
    assert!(
        argv.is_empty(),
        "the secret was in a process's argv: {argv:?}"
    );
}

#[test]
fn bad_input_is_refused_before_anything_is_created() {
    if skip_without(
        "bad_input_is_refused_before_anything_is_created",
        &[Part::Fakepve],
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-bad-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let pve = FakePve::start(loopback()).expect("start fakepve");
    let guest = loopback();
    let app_root = root.join("apps");
    let pwned = root.join("pwned");
    let good_repo = "git://127.0.0.1:9/app.git".to_string();
    let bad_repo = format!("git://127.0.0.1:9/app.git;touch {}", pwned.display());
    let port = free_port_any().unwrap().to_string();

    let with_fake = root.join("config.toml");
    write_private(&with_fake, &config_text(Some(&pve), 22, &app_root, guest)).unwrap();
    let without_proxmox = root.join("no-proxmox.toml");
    write_private(&without_proxmox, &config_text(None, 22, &app_root, guest)).unwrap();

    let args = |repo: &str, name: &str, framework: &str, cores: &str| -> Vec<String> {
        [
            "deploy",
            "--repo",
            repo,
            "--framework",
            framework,
            "--type",
            "lxc",
            "--name",
            name,
            "--port",
            &port,
            "--cores",
            cores,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let cases = [
        ("repo", &with_fake, args(&bad_repo, "okname", "flask", "1")),
        ("name", &with_fake, args(&good_repo, "my app", "flask", "1")),
        (
            "cores",
            &with_fake,
            args(&good_repo, "okname", "flask", "0"),
        ),
        (
            "framework",
            &with_fake,
            args(&good_repo, "okname", "cobol", "1"),
        ),
        // Validation comes first, even where Proxmox is not configured at all.
        (
            "cores",
            &without_proxmox,
            args(&good_repo, "okname", "flask", "0"),
        ),
    ];
    for (i, (field, config, args)) in cases.iter().enumerate() {
        let data_dir = root.join(format!("data-{i}"));
        let proxdeck = Proxdeck::new(config.to_path_buf(), data_dir.clone(), root);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let done = proxdeck.run(&argv, QUICK).unwrap();
        assert!(
            !done.success(),
            "bad {field} was accepted ({}): {}",
            config.display(),
            done.describe()
        );
        assert!(
            done.stderr.contains(&format!("{field}:"))
                || done.stderr.contains(&format!("--{field}")),
            "stderr does not name the field {field:?}: {}",
            done.describe()
        );
        let workspaces: Vec<_> = std::fs::read_dir(data_dir.join("workspaces"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            workspaces.is_empty(),
            "bad {field}: workspaces were created: {workspaces:?}"
        );
        assert!(!pwned.exists(), "the repo URL reached a shell");
    }
    assert!(
        pve.containers(NODE).unwrap().is_empty(),
        "a container was created for bad input"
    );
}
