//! The real binary's dashboard under tmux: it starts, shows the deployments from the store,
//! follows a change another process commits, opens help and the command line, survives a
//! resize to 80×24, suspends on Ctrl-Z and comes back with `fg`, quits on `q`, and gives the
//! terminal back. The tmux helpers here are shared with `tui_deploy`.

use crate::support::parts::in_ci;
use proxdeck::domain::{Deployment, DeploymentId, GuestType, Stage, Status};
use proxdeck::store::Store;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux").args(args).output().expect("tmux runs")
}

pub(crate) fn capture(session: &str) -> String {
    String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", session]).stdout).to_string()
}

/// Polls the pane (bounded: at most `within`) until `pred` holds; returns the last screen.
pub(crate) fn wait_screen(
    session: &str,
    within: Duration,
    pred: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let start = Instant::now();
    let mut screen = String::new();
    while start.elapsed() < within {
        screen = capture(session);
        if pred(&screen) {
            return Ok(screen);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(screen)
}

fn deployment(id: &str, name: &str, status: Status) -> Deployment {
    let now = chrono::Utc::now().timestamp_millis();
    Deployment {
        id: DeploymentId(id.into()),
        name: name.into(),
        repo: "https://github.com/acme/shop.git".into(),
        git_ref: String::new(),
        framework: "flask".into(),
        guest_type: GuestType::Lxc,
        cores: 1,
        memory_mib: 1024,
        disk_gib: 8,
        port: 5000,
        env_names: vec![],
        node: Some("pve1".into()),
        vmid: Some(321),
        ip: Some("10.0.0.7".into()),
        url: None,
        commit: None,
        status,
        stage: Some(Stage::Validate),
        error: None,
        created_at: now,
        updated_at: now,
        ..Default::default()
    }
}

pub(crate) struct Session(pub String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

/// True when tmux runs here; under CI a missing tmux fails the test.
pub(crate) fn have_tmux(test: &str) -> bool {
    let has_tmux = Command::new("tmux").arg("-V").output().is_ok();
    if !has_tmux {
        assert!(
            !in_ci(),
            "{test}: tmux is missing under CI=true: apt-get install tmux"
        );
        eprintln!("SKIPPED {test}: tmux is not installed");
    }
    has_tmux
}

/// Sends keys to the session; `literal` text is typed as is (no key names).
pub(crate) fn keys(session: &str, keys: &[&str]) {
    let mut args = vec!["send-keys", "-t", session];
    args.extend_from_slice(keys);
    let out = tmux(&args);
    assert!(
        out.status.success(),
        "tmux send-keys {keys:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn type_text(session: &str, text: &str) {
    let out = tmux(&["send-keys", "-t", session, "-l", text]);
    assert!(
        out.status.success(),
        "tmux send-keys -l: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dashboard_shows_the_store_live_and_quits_cleanly() {
    if !have_tmux("dashboard_shows_the_store_live_and_quits_cleanly") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let mut store = Store::open(&data.join("proxdeck.db")).unwrap();
    store
        .insert_deployment(&deployment("aaa111", "first-shop", Status::Pending))
        .unwrap();

    let session = Session(format!("proxdeck-tui-{}", std::process::id()));
    let bin = env!("CARGO_BIN_EXE_proxdeck");
    let command = format!(
        "{} --config {} --data-dir {}; echo \"proxdeck exited $?\"; sleep 30",
        shlex::try_quote(bin).unwrap(),
        shlex::try_quote(&config.display().to_string()).unwrap(),
        shlex::try_quote(&data.display().to_string()).unwrap(),
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "100",
        "-y",
        "30",
        "bash",
        "-c",
        &command,
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let screen = wait_screen(&session.0, Duration::from_secs(20), |s| {
        s.contains("first-shop")
    })
    .unwrap_or_else(|s| panic!("the dashboard never showed the deployment:\n{s}"));
    assert!(screen.contains("PENDING"), "{screen}");

    // Another process (this test) changes the store: the dashboard follows by itself.
    store
        .insert_deployment(&deployment("bbb222", "second-shop", Status::Pending))
        .unwrap();
    store
        .transition(
            &DeploymentId("aaa111".into()),
            Status::Provisioning,
            Some(Stage::Render),
            None,
        )
        .unwrap();
    let screen = wait_screen(&session.0, Duration::from_secs(20), |s| {
        s.contains("second-shop") && s.contains("PROVISIONING")
    })
    .unwrap_or_else(|s| panic!("the dashboard did not update:\n{s}"));
    assert!(screen.contains("first-shop"), "{screen}");

    tmux(&["send-keys", "-t", &session.0, "q"]);
    let screen = wait_screen(&session.0, Duration::from_secs(20), |s| {
        s.contains("proxdeck exited")
    })
    .unwrap_or_else(|s| panic!("q did not quit:\n{s}"));
    assert!(screen.contains("proxdeck exited 0"), "{screen}");
    // The alternate screen is gone: the table is no longer on the terminal.
    assert!(
        !screen.contains("second-shop"),
        "terminal not restored:\n{screen}"
    );
    assert!(Path::new(&data).join("proxdeck.db").exists());
}

/// In an interactive shell, as a user runs it: help, the command line, a resize to 80×24,
/// Ctrl-Z (the shell gets the terminal back) and `fg` (the dashboard is drawn again), `q`.
#[test]
fn help_command_line_resize_and_ctrl_z_keep_the_terminal_sane() {
    if !have_tmux("help_command_line_resize_and_ctrl_z_keep_the_terminal_sane") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    crate::support::proxdeck::write_private(&config, "").unwrap();
    let mut store = Store::open(&data.join("proxdeck.db")).unwrap();
    let mut failed = deployment("ccc333", "third-shop", Status::Pending);
    failed.error = None;
    store.insert_deployment(&failed).unwrap();
    drop(store);

    let session = Session(format!("proxdeck-tui-keys-{}", std::process::id()));
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "120",
        "-y",
        "40",
        "env",
        "PS1=$ ",
        "bash",
        "--norc",
        "--noprofile",
        "-i",
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = env!("CARGO_BIN_EXE_proxdeck");
    // Alone on the line: a stopped job in a `a; b` list would let the shell run `b` at once.
    type_text(
        &session.0,
        &format!(
            "{} --config {} --data-dir {}",
            shlex::try_quote(bin).unwrap(),
            shlex::try_quote(&config.display().to_string()).unwrap(),
            shlex::try_quote(&data.display().to_string()).unwrap(),
        ),
    );
    keys(&session.0, &["Enter"]);
    let wait = |what: &str, pred: &dyn Fn(&str) -> bool| {
        wait_screen(&session.0, Duration::from_secs(20), pred)
            .unwrap_or_else(|s| panic!("{what}:\n{s}"))
    };
    wait("the dashboard", &|s| s.contains("third-shop"));

    keys(&session.0, &["?"]);
    // The popup may be caught half drawn: wait for its whole list of keys.
    wait("help, destroy and filter among its keys", &|s| {
        s.contains("Keys: Dashboard") && s.contains("destroy") && s.contains("filter")
    });
    keys(&session.0, &["Escape"]);
    wait("help closed", &|s| !s.contains("Keys: Dashboard"));

    keys(&session.0, &[":"]);
    type_text(&session.0, "sta");
    keys(&session.0, &["Tab", "Enter"]);
    let stats = wait("the statistics", &|s| s.contains("Success rate"));
    assert!(stats.contains("Deployments per day"), "{stats}");
    keys(&session.0, &["Escape"]);
    wait("back on the dashboard", &|s| s.contains("Deployments (1)"));

    let out = tmux(&["resize-window", "-t", &session.0, "-x", "80", "-y", "24"]);
    assert!(
        out.status.success(),
        "resize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let small = wait("the dashboard at 80×24", &|s| {
        s.lines().count() <= 24 && s.contains("third-shop") && s.contains("n new")
    });
    assert!(
        small.lines().all(|l| l.chars().count() <= 80),
        "wider than the terminal:\n{small}"
    );

    keys(&session.0, &["C-z"]);
    let stopped = wait("the shell after Ctrl-Z", &|s| s.contains("Stopped"));
    assert!(
        !stopped.contains("Deployments (1)"),
        "the screen was not restored:\n{stopped}"
    );
    type_text(&session.0, "fg");
    keys(&session.0, &["Enter"]);
    wait("the dashboard again after fg", &|s| {
        s.contains("Deployments (1)") && s.contains("third-shop")
    });
    keys(&session.0, &["j"]);

    keys(&session.0, &["q"]);
    wait("the prompt", &|s| !s.contains("Deployments (1)"));
    type_text(&session.0, "echo \"proxdeck exited $?\"");
    keys(&session.0, &["Enter"]);
    let end = wait("the exit status", &|s| s.contains("proxdeck exited "));
    assert!(end.contains("proxdeck exited 0"), "{end}");
    assert!(
        !end.contains("Deployments (1)"),
        "terminal not restored:\n{end}"
    );
}

/// The statistics screen's numbers, from the command line too: `proxdeck stats --json` counts
/// the deployments proxdeck made and leaves imported guests out.
#[test]
fn stats_count_deployments_but_not_imported_guests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    crate::support::proxdeck::write_private(&config, "").unwrap();
    let mut store = Store::open(&data.join("proxdeck.db")).unwrap();
    let id = DeploymentId("ok1111".into());
    store
        .insert_deployment(&deployment("ok1111", "made-here", Status::Pending))
        .unwrap();
    for to in [Status::Provisioning, Status::Deploying, Status::Running] {
        store.transition(&id, to, None, None).unwrap();
    }
    store
        .insert_deployment(&deployment("bad222", "broken", Status::Pending))
        .unwrap();
    store
        .transition(
            &DeploymentId("bad222".into()),
            Status::Failed,
            None,
            Some("preflight: no"),
        )
        .unwrap();
    let mut imported = deployment("imp333", "found-on-pve", Status::Running);
    imported.origin = proxdeck::domain::Origin::Imported;
    store.insert_deployment(&imported).unwrap();
    drop(store);

    let out = Command::new(env!("CARGO_BIN_EXE_proxdeck"))
        .args([
            "--config",
            &config.display().to_string(),
            "--data-dir",
            &data.display().to_string(),
            "stats",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["succeeded"], 1, "{v}");
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(v["success_rate"], 0.5, "{v}");
    assert_eq!(v["per_day"].as_array().map(Vec::len), Some(14), "{v}");
    assert_eq!(v["per_day"][13]["deployments"], 2, "today: {v}");
    assert_eq!(v["frameworks"][0]["framework"], "flask", "{v}");
    assert_eq!(v["frameworks"][0]["deployments"], 2, "{v}");

    let text = Command::new(env!("CARGO_BIN_EXE_proxdeck"))
        .args([
            "--config",
            &config.display().to_string(),
            "--data-dir",
            &data.display().to_string(),
            "stats",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("deployments 2") && text.contains("success rate 50%"),
        "{text}"
    );
}
