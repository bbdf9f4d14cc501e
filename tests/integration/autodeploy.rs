//! Deploy on push without webhooks, through the built binary (issue 14): a deployment made
//! with `--auto-deploy` on the sshd test host (`--host`), its repository on a local git
//! daemon. The worker (started by the deploy, staying past `jobs.idle_exit_secs` because
//! auto-deploy is on) polls the ref with `git ls-remote`, picks up a pushed commit and
//! redeploys it; a commit whose build fails leaves the release that runs in place, is shown
//! as the deployment's last auto-deploy failure, and the next attempts wait longer and longer.

use crate::support::git::GitServer;
use crate::support::net::{free_port_any, loopback, random_hex, wait_http_ok};
use crate::support::parts::{Part, skip_without};
use crate::support::process::Finished;
use crate::support::proxdeck::{AppGuard, Proxdeck, write_private};
use crate::support::sshd::SshHost;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);
const QUICK: Duration = Duration::from_secs(60);
/// `auto_deploy.interval_secs` and `max_backoff_secs` of the test's config.
const INTERVAL_MS: i64 = 2_000;
const MAX_BACKOFF_MS: i64 = 16_000;

fn json_of(done: &Finished, what: &str) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}):\n{}", done.describe()))
}

fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// The pid the worker wrote in its lock file.
fn worker_pid(data_dir: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(data_dir.join("worker.lock"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The process runs (and is not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Polls `look` every half second until it returns `Some`, for at most `within`.
fn wait_for<T>(what: &str, within: Duration, mut look: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = look() {
            return v;
        }
        if start.elapsed() > within {
            panic!("{what}: not within {} s", within.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn auto_deploy_picks_up_a_push_and_backs_off_on_a_failing_build() {
    if skip_without(
        "auto_deploy_picks_up_a_push_and_backs_off_on_a_failing_build",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-auto-")
        .tempdir()
        .unwrap();
    let root = work.path();
    // The app's own user must reach its folder under it.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = root.join("data");
    let app_root = root.join("apps");
    let name = format!("auto-{}", random_hex(6));
    let app = AppGuard::new(app_root.join(&name).join("run/app.pid"));
    let ssh = SshHost::start(loopback(), &data_dir.join("keys/id_ed25519.pub")).expect("sshd");
    let git = GitServer::start(loopback()).expect("git daemon");
    let repo = "auto-sample";
    let sample = git.add_flask_app(repo).unwrap();
    let first = git.head(repo).unwrap();
    let port = free_port_any().unwrap();
    let config = root.join("config.toml");
    write_private(
        &config,
        &format!(
            "[guest]\nssh_user = \"root\"\napp_root = \"{}\"\n\n\
             [timeouts]\nssh_secs = 60\nhealth_secs = 180\nprovision_secs = 900\n\n\
             [jobs]\nidle_exit_secs = 1\n\n\
             [auto_deploy]\ninterval_secs = {}\njitter_secs = 1\nmax_backoff_secs = {}\n",
            app_root.display(),
            INTERVAL_MS / 1000,
            MAX_BACKOFF_MS / 1000
        ),
    )
    .unwrap();
    let proxdeck = Proxdeck::new(config, data_dir.clone(), root);
    let logs = || {
        proxdeck
            .run(&["logs", &name], QUICK)
            .map(|d| d.stdout)
            .unwrap_or_default()
    };
    let must = |args: &[&str], timeout: Duration| -> Finished {
        let done = proxdeck
            .run(args, timeout)
            .unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
        assert!(
            done.success(),
            "{args:?} failed: {}\n--- logs ---\n{}\n--- sshd ---\n{}",
            done.describe(),
            logs(),
            ssh.log_tail()
        );
        done
    };
    let show = || json_of(&must(&["show", &name, "--json"], QUICK), "show --json");
    let state = || {
        json_of(
            &must(&["auto-deploy", &name, "--json"], QUICK),
            "auto-deploy --json",
        )
    };

    let host = format!("{}:{}", ssh.addr(), ssh.port());
    let deployed = must(
        &[
            "deploy",
            "--repo",
            &sample.git_url,
            "--framework",
            "flask",
            "--host",
            &host,
            "--name",
            &name,
            "--port",
            &port.to_string(),
            "--auto-deploy",
            "--json",
        ],
        DEPLOY_TIMEOUT,
    );
    let dep = json_of(&deployed, "deploy --json");
    assert_eq!(text(&dep["commit"]), first, "{dep}");
    let url = text(&dep["url"]);
    assert_eq!(state()["enabled"], true);
    // The worker that ran the deploy stays past idle_exit_secs = 1 (no command runs meanwhile
    // that could start another one).
    let worker = worker_pid(&data_dir).expect("the worker's pid in worker.lock");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(worker_pid(&data_dir), Some(worker));
    assert!(
        alive(worker),
        "the worker {worker} exited although auto-deploy is on"
    );

    // A push: the worker (still there although idle_exit_secs = 1) redeploys it.
    let body = format!("second release {}", random_hex(8));
    let second = git
        .push_change(
            repo,
            &[(
                "app.py",
                format!(
                    "from flask import Flask\n\napp = Flask(__name__)\n\n\n\
                     @app.route(\"/\")\ndef index():\n    return \"{body}\"\n"
                ),
            )],
            "a new release",
        )
        .unwrap();
    wait_for(
        "the pushed commit deployed",
        Duration::from_secs(300),
        || {
            let d = show();
            (d["status"] == "RUNNING" && text(&d["commit"]) == second).then_some(())
        },
    );
    let answer = wait_http_ok(&url, Duration::from_secs(30)).expect("the app answers");
    assert!(answer.body.contains(&body), "{}", answer.body);
    let jobs = json_of(&must(&["jobs", "--json"], QUICK), "jobs --json");
    let by_auto: Vec<&Value> = jobs["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| text(&j["requested_by"]).starts_with("auto-deploy"))
        .collect();
    assert_eq!(by_auto.len(), 1, "{jobs}");
    assert_eq!(by_auto[0]["state"], "succeeded", "{jobs}");
    assert!(
        text(&by_auto[0]["requested_by"]).contains(&second[..12]),
        "{jobs}"
    );
    let s = state();
    assert_eq!(
        (s["failures"].as_u64(), text(&s["last_seen"])),
        (Some(0), second.clone())
    );

    // A push whose build fails (a requirement that does not exist): the release that runs
    // stays, the failure is recorded, and each next attempt waits twice as long.
    git.push_change(
        repo,
        &[(
            "requirements.txt",
            "flask\nproxdeck-no-such-package-f00d==0.0.0\n".to_string(),
        )],
        "a broken release",
    )
    .unwrap();
    let failing = wait_for("two failed auto-deploys", Duration::from_secs(400), || {
        let s = state();
        (s["failures"].as_u64().unwrap_or(0) >= 2 && s["job"].is_null()).then_some(s)
    });
    let failures = failing["failures"].as_u64().unwrap() as u32;
    let error = text(&failing["last_error"]);
    assert!(error.starts_with("redeploy job #"), "{failing}");
    assert!(error.contains("failed"), "{failing}");
    let wait =
        failing["next_check_at"].as_i64().unwrap() - failing["last_error_at"].as_i64().unwrap();
    let expected = (INTERVAL_MS << failures).min(MAX_BACKOFF_MS);
    assert!(
        wait >= expected,
        "after {failures} failures the next look is {wait} ms away, want at least {expected}: {failing}"
    );
    // The failed jobs: the second was queued no sooner than the back-off after the first.
    let jobs = json_of(&must(&["jobs", "--json", "-n", "50"], QUICK), "jobs --json");
    let mut failed: Vec<&Value> = jobs["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| text(&j["requested_by"]).starts_with("auto-deploy") && j["state"] == "failed")
        .collect();
    failed.sort_by_key(|j| j["id"].as_i64());
    assert!(failed.len() >= 2, "{jobs}");
    let gap =
        failed[1]["created_at"].as_i64().unwrap() - failed[0]["finished_at"].as_i64().unwrap();
    assert!(
        gap >= 2 * INTERVAL_MS,
        "the second attempt came {gap} ms after the first failed, before the back-off"
    );
    // The release that ran answers still, and the record keeps its commit.
    let answer = wait_http_ok(&url, Duration::from_secs(30)).expect("the app still answers");
    assert!(answer.body.contains(&body), "{}", answer.body);
    let shown = show();
    assert_eq!(text(&shown["commit"]), second);
    // `show` says it too.
    assert!(
        shown["auto_deploy"]["failures"].as_u64().unwrap_or(0) >= 2,
        "{shown}"
    );

    // Off: the state says so.
    let off = json_of(
        &must(&["auto-deploy", &name, "off", "--json"], QUICK),
        "auto-deploy off",
    );
    assert_eq!(off["enabled"], false);
    // Nothing left to poll: the worker exits when idle.
    wait_for("the worker exits", Duration::from_secs(60), || {
        (!alive(worker)).then_some(())
    });
    must(&["destroy", &name, "--yes"], DEPLOY_TIMEOUT);
    app.stop();
}
