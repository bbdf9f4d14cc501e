//! The real binary's dashboard under tmux: it starts, shows the deployments from the store,
//! follows a change another process commits, quits on `q`, and gives the terminal back.

use crate::support::parts::in_ci;
use proxdeck::domain::{Deployment, DeploymentId, GuestType, Stage, Status};
use proxdeck::store::Store;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux").args(args).output().expect("tmux runs")
}

fn capture(session: &str) -> String {
    String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", session]).stdout).to_string()
}

/// Polls the pane (bounded: at most `within`) until `pred` holds; returns the last screen.
fn wait_screen(
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

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn dashboard_shows_the_store_live_and_quits_cleanly() {
    let has_tmux = Command::new("tmux").arg("-V").output().is_ok();
    if !has_tmux {
        assert!(
            !in_ci(),
            "tmux is missing under CI=true: apt-get install tmux"
        );
        eprintln!("skipping: tmux is not installed");
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
