//! The real binary's TUI under tmux against the end-to-end rig (fakepve over HTTPS, the
//! stand-in templates, an sshd test host, a git daemon serving a real Flask app): the deploy
//! wizard driven by keystrokes (the repository checked and the framework detected in the
//! background, the review with terraform's plan), the row reaching RUNNING with the app
//! answering, the log opened and searched, a shell opened on the guest and left, the deployment
//! destroyed after a confirmation that names it, and quitting. Every step asserts on the captured screen, with bounded waits.

use crate::support::fakepve::{FakePve, NODE, OS_TEMPLATE};
use crate::support::git::GitServer;
use crate::support::net::{free_port_any, loopback, random_hex, wait_http_ok};
use crate::support::parts::{Part, skip_without, templates_dir};
use crate::support::proxdeck::{AppGuard, Proxdeck, write_private};
use crate::support::sshd::SshHost;
use crate::tui::{Session, capture, have_tmux, keys, tmux, type_text, wait_screen};
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_secs(30);
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);

/// The e2e rig's config (see `e2e.rs`): the fake Proxmox, the stand-in templates, the sshd
/// host as the guest's address from a one-address pool.
fn config_text(
    pve: &FakePve,
    ssh_port: u16,
    app_root: &std::path::Path,
    guest: std::net::Ipv4Addr,
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
        url = pve.url(),
        token = pve.token(),
        ca = pve.ca_file().display(),
        app_root = app_root.display(),
        templates = templates_dir().display(),
    )
}

/// The command line tmux runs: the binary with the harness's environment (the same as
/// `Proxdeck::run` gives it), then a marker with its exit status.
pub(crate) fn shell_line(proxdeck: &Proxdeck) -> String {
    let cmd = proxdeck.command(Vec::<String>::new());
    let mut words = vec!["env".to_string()];
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("PROXMOX_VE_") || k.starts_with("PROXDECK_") {
            words.push("-u".into());
            words.push(k.to_string());
        }
    }
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            words.push(format!("{}={}", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    words.push(cmd.get_program().to_string_lossy().to_string());
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().to_string()));
    let quoted: Vec<String> = words
        .iter()
        .map(|w| {
            shlex::try_quote(w)
                .expect("no NUL in the command")
                .to_string()
        })
        .collect();
    format!(
        "{}; echo \"proxdeck exited $?\"; sleep 120",
        quoted.join(" ")
    )
}

#[test]
fn tui_deploys_the_flask_sample_by_keystrokes() {
    const TEST: &str = "tui_deploys_the_flask_sample_by_keystrokes";
    if skip_without(
        TEST,
        &[
            Part::Fakepve,
            Part::Sshd,
            Part::Terraform,
            Part::Git,
            Part::GuestPython,
        ],
    ) || !have_tmux(TEST)
    {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-tui-e2e-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let data_dir = root.join("data");
    let app_root = root.join("apps");
    let name = format!("tui-flask-{}", random_hex(4));
    let app = AppGuard::new(app_root.join(&name).join("run/app.pid"));

    let pve = FakePve::start(loopback()).expect("start fakepve");
    let guest = loopback();
    let ssh = SshHost::start(guest, &data_dir.join("keys/id_ed25519.pub")).expect("start sshd");
    let git = GitServer::start(loopback()).expect("start git daemon");
    let sample = git.add_flask_app("flask-sample").unwrap();
    let app_port = free_port_any().unwrap();
    let config = root.join("config.toml");
    write_private(&config, &config_text(&pve, ssh.port(), &app_root, guest)).unwrap();
    let proxdeck = Proxdeck::new(config, data_dir.clone(), root);

    let session = Session(format!("proxdeck-tui-e2e-{}", std::process::id()));
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "120",
        "-y",
        "40",
        "bash",
        "-c",
        &shell_line(&proxdeck),
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let context = |what: &str, screen: &str| {
        format!(
            "{what}\n--- screen ---\n{screen}\n--- fakepve ---\n{}\n--- sshd ---\n{}\n--- git ---\n{}",
            pve.log_tail(),
            ssh.log_tail(),
            git.log_tail()
        )
    };
    // `PROXDECK_TEST_VERBOSE=1` (with `--nocapture`) prints each screen the test waited for.
    let verbose =
        std::env::var_os("PROXDECK_TEST_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0");
    let wait = |what: &str, within: Duration, pred: &dyn Fn(&str) -> bool| -> String {
        let screen = wait_screen(&session.0, within, pred)
            .unwrap_or_else(|s| panic!("{}", context(what, &s)));
        if verbose {
            eprintln!("--- {what} ---\n{screen}");
        }
        screen
    };

    let screen = wait("the empty dashboard", STEP, &|s| {
        s.contains("No deployments yet")
    });
    let connected = wait("Proxmox connected in the header", STEP, &|s| {
        s.contains("PVE ")
    });
    assert!(
        connected.contains("1/1 nodes") || connected.contains("nodes"),
        "{connected}"
    );
    assert!(screen.contains("n new"), "{screen}");

    // The wizard: the repository, checked in the background, the framework detected.
    keys(&session.0, &["n"]);
    wait("the wizard", STEP, &|s| s.contains("1/6 Repository"));
    type_text(&session.0, &sample.git_url);
    let checked = wait("the repository check", STEP, &|s| {
        s.contains("✓ repository") && s.contains("framework: flask")
    });
    assert!(checked.contains("requirements.txt has flask"), "{checked}");
    // The page is complete: enter goes to the next one.
    keys(&session.0, &["Enter"]);
    let fw = wait("the framework page", STEP, &|s| s.contains("2/6 Framework"));
    assert!(fw.contains("› auto: Flask"), "{fw}");
    keys(&session.0, &["Enter"]);
    wait("the guest page", STEP, &|s| s.contains("3/6 Guest"));
    type_text(&session.0, &name);
    keys(&session.0, &["Enter"]);
    wait("the resources page", STEP, &|s| s.contains("4/6 Resources"));
    keys(&session.0, &["Tab", "Tab", "Tab"]);
    type_text(&session.0, &app_port.to_string());
    let port_line = format!("App port    {app_port}");
    wait("the port typed", STEP, &|s| s.contains(&port_line));
    keys(&session.0, &["Enter"]);
    wait("the environment page", STEP, &|s| {
        s.contains("5/6 Environment")
    });
    keys(&session.0, &["a"]);
    type_text(&session.0, "GREETING");
    keys(&session.0, &["Tab"]);
    type_text(&session.0, "s3cr3t-v4lue");
    keys(&session.0, &["Enter"]);
    let env = wait("the variable in the list", STEP, &|s| {
        s.contains("GREETING = ")
    });
    assert!(!env.contains("s3cr3t-v4lue"), "the value is shown:\n{env}");

    // The review: preflight and terraform plan, then deploy.
    keys(&session.0, &["Enter"]);
    let review = wait("the review with the plan", Duration::from_secs(180), &|s| {
        s.contains("enter deploys it now") || s.contains("cannot be deployed")
    });
    assert!(
        review.contains("enter deploys it now"),
        "{}",
        context("review refused", &review)
    );
    assert!(
        review.contains(&name) && review.contains("to add"),
        "{review}"
    );
    keys(&session.0, &["Enter"]);

    // The row: in flight with a spinner and a stage, then RUNNING.
    let row_of = |s: &str| -> Option<String> {
        s.lines()
            .find(|l| l.starts_with('│') && l.contains(&name))
            .map(str::to_string)
    };
    // Quitting the dashboard while the deploy runs does not stop it: the worker has it, and
    // proxdeck says so once the terminal is back. A dashboard opened again shows it live.
    let in_flight = wait("the deploy in flight", STEP, &|s| {
        row_of(s).is_some_and(|r| {
            ["QUEUED", "PENDING", "PROVISIONING", "DEPLOYING"]
                .iter()
                .any(|st| r.contains(st))
        }) && s.lines().nth(1).is_some_and(|l| l.contains(&name))
    });
    keys(&session.0, &["q"]);
    let farewell = wait("the dashboard closed, the work going on", STEP, &|s| {
        s.contains("proxdeck exited 0")
    });
    assert!(
        farewell.contains("1 job goes on in proxdeck's worker: deploy"),
        "{}",
        context("no word of the work going on", &farewell)
    );
    let again = tmux(&[
        "respawn-pane",
        "-k",
        "-t",
        &session.0,
        "bash",
        "-c",
        &shell_line(&proxdeck),
    ]);
    assert!(again.status.success(), "{again:?}");
    let start = Instant::now();
    let mut seen_in_flight = !in_flight.is_empty();
    let running = loop {
        let screen = capture(&session.0);
        if let Some(row) = row_of(&screen) {
            if row.contains("RUNNING") {
                break screen;
            }
            assert!(
                !row.contains("FAILED"),
                "{}",
                context("the deployment failed", &screen)
            );
            seen_in_flight |= ["PENDING", "PROVISIONING", "DEPLOYING"]
                .iter()
                .any(|s| row.contains(s))
                && screen.lines().nth(1).is_some_and(|l| l.contains(&name));
        }
        assert!(
            start.elapsed() < DEPLOY_TIMEOUT,
            "{}",
            context("never RUNNING", &screen)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        seen_in_flight,
        "the in-flight strip never showed the deployment"
    );
    if verbose {
        eprintln!("--- RUNNING ---\n{running}");
    }
    assert!(
        running.contains(&format!("http://{guest}:{app_port}")),
        "{running}"
    );
    let answer =
        wait_http_ok(&format!("http://{guest}:{app_port}/"), STEP).expect("the app answers");
    assert!(answer.body.contains(&sample.body), "{}", answer.body);

    // The log: stage markers, then a search with its matches counted.
    keys(&session.0, &["l"]);
    let log = wait("the log", STEP, &|s| {
        s.contains("Deployment log") && s.contains("── stage")
    });
    assert!(log.contains("FOLLOWING"), "{log}");
    keys(&session.0, &["/"]);
    type_text(&session.0, "gunicorn");
    keys(&session.0, &["Enter"]);
    let found = wait("the search", STEP, &|s| s.contains("/gunicorn:"));
    let count: usize = found
        .lines()
        .find_map(|l| l.split("/gunicorn: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(count > 0, "no matching line:\n{found}");
    assert!(
        !found.contains("s3cr3t-v4lue"),
        "the env value is in the log:\n{found}"
    );
    keys(&session.0, &["n"]);
    keys(&session.0, &["Escape"]);
    wait("the dashboard", STEP, &|s| s.contains("Deployments (1)"));

    // A shell on the guest: ssh with proxdeck's key, trusting only the pinned host key; the
    // dashboard comes back intact when it ends.
    keys(&session.0, &["s"]);
    wait("the shell's prompt", STEP, &|s| {
        s.contains("exit the shell to return") && s.contains('#')
    });
    type_text(&session.0, "echo proxdeck-shell-$((6*7))");
    keys(&session.0, &["Enter"]);
    wait("a command in the shell", STEP, &|s| {
        s.contains("proxdeck-shell-42")
    });
    type_text(&session.0, "exit");
    keys(&session.0, &["Enter"]);
    let back = wait("the dashboard after the shell", STEP, &|s| {
        s.contains("back from the shell") && s.contains("Deployments (1)")
    });
    assert!(back.contains("exit status 0"), "{back}");
    let known = data_dir.join("known_hosts");
    let pinned = std::fs::read_dir(&known).map(|d| d.count()).unwrap_or(0);
    assert_eq!(pinned, 1, "one known_hosts file in {}", known.display());

    // Destroy, after a confirmation naming it.
    keys(&session.0, &["d"]);
    let confirm = wait("the confirmation", STEP, &|s| {
        s.contains(&format!("Destroy {name}"))
    });
    assert!(confirm.contains("y yes"), "{confirm}");
    keys(&session.0, &["y"]);
    wait("DELETED", DEPLOY_TIMEOUT, &|s| {
        row_of(s).is_some_and(|r| r.contains("DELETED"))
    });
    app.stop();
    assert!(
        pve.containers(NODE).unwrap().is_empty(),
        "a container is still in the fake after destroy"
    );

    keys(&session.0, &["q"]);
    let end = wait("the exit", STEP, &|s| s.contains("proxdeck exited"));
    assert!(end.contains("proxdeck exited 0"), "{end}");
}
