//! The reducer through its front door: keys and engine events in, requests, effects and drawn
//! screens out. Every screen is drawn through the real `App` at 80×24 and 120×40 into a
//! `TestBackend` (insta snapshots), fed with engine events: empty, typical, failing, long logs.

use super::*;
use crate::domain::Origin;
use crate::domain::{DeploymentId, GuestType, Stage, Status};
use crate::protocol::{
    DayCount, DetailsSnapshot, Detected, FrameworkStats, GuestEntry, GuestInfo, HistoryEntry,
    LogLine, LogPageKind, LogStream, LogWindow, NodeInfo, SeqLine, StageTime,
};
use crossterm::event::{KeyCode, KeyModifiers, MouseEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// 2026-01-15 12:00:00 UTC: a fixed "now" so ages in snapshots never change.
const NOW: i64 = 1_768_478_400_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const GIB: u64 = 1024 * 1024 * 1024;

fn key(code: KeyCode) -> UiEvent {
    UiEvent::Input(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn ch(c: char) -> UiEvent {
    key(KeyCode::Char(c))
}

fn ctrl(c: char) -> UiEvent {
    UiEvent::Input(Event::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::CONTROL,
    )))
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.on_ui_event(ch(c));
    }
}

fn deployment(id: &str, name: &str, status: Status) -> Deployment {
    Deployment {
        id: DeploymentId(id.to_string()),
        name: name.to_string(),
        repo: format!("https://git.example.com/team/{name}.git"),
        git_ref: "main".into(),
        framework: "flask".into(),
        guest_type: GuestType::Lxc,
        cores: 2,
        memory_mib: 1024,
        disk_gib: 8,
        port: 8000,
        node: Some("pve1".into()),
        status,
        created_at: NOW - HOUR,
        updated_at: NOW - HOUR,
        ..Default::default()
    }
}

/// One being provisioned, a failed one, a running one, and a deleted one (newest first, like
/// the engine sends them).
fn typical() -> Vec<Deployment> {
    let mut provisioning = deployment("p7q2zd", "blog", Status::Provisioning);
    provisioning.framework = "nextjs".into();
    provisioning.vmid = Some(123);
    provisioning.stage = Some(Stage::TerraformApply);
    provisioning.created_at = NOW - 45 * SEC;
    provisioning.updated_at = NOW - 12 * SEC;

    let mut failed = deployment("k3x9ta", "shop", Status::Failed);
    failed.framework = "laravel".into();
    failed.guest_type = GuestType::Vm;
    failed.node = Some("pve2".into());
    failed.vmid = Some(122);
    failed.stage = Some(Stage::TerraformApply);
    failed.error = Some(
        "terraform-apply: 403 Permission check failed (/vms/122, VM.Allocate). Give the API \
         token VM.Allocate on /vms, then retry."
            .into(),
    );
    failed.created_at = NOW - 2 * HOUR;
    failed.updated_at = NOW - 2 * HOUR + 3 * MIN;

    let mut running = deployment("a1b2c3", "api-prod", Status::Running);
    running.framework = "fastapi".into();
    running.vmid = Some(121);
    running.ip = Some("10.20.30.121".into());
    running.url = Some("http://10.20.30.121:8000".into());
    running.stage = Some(Stage::Done);
    running.commit = Some("9f3c2a1".into());
    running.previous_commit = Some("77d01be".into());
    running.created_at = NOW - 3 * DAY;
    running.updated_at = NOW - 5 * HOUR;

    let mut deleted = deployment("zz0old", "old-demo", Status::Deleted);
    deleted.vmid = Some(110);
    deleted.ip = Some("10.20.30.110".into());
    deleted.stage = Some(Stage::Destroy);
    deleted.created_at = NOW - 30 * DAY;
    deleted.updated_at = NOW - 9 * DAY;

    vec![provisioning, failed, running, deleted]
}

fn statistics() -> Statistics {
    let per_day = (0..30)
        .map(|i| {
            let n = [0, 1, 3, 0, 2, 5, 1][i % 7];
            DayCount {
                day: format!("2025-12-{:02}", (i % 28) + 1),
                deployments: n,
                failed: u64::from(i % 5 == 0 && n > 0),
            }
        })
        .collect();
    Statistics {
        total: 42,
        active: 7,
        in_flight: 1,
        succeeded: 34,
        failed: 6,
        success_rate: Some(34.0 / 40.0),
        per_day,
        stages: vec![
            StageTime {
                stage: Stage::Preflight,
                runs: 44,
                mean_ms: 2_400,
                median_ms: 2_100,
                max_ms: 9_000,
            },
            StageTime {
                stage: Stage::TerraformInit,
                runs: 44,
                mean_ms: 6_200,
                median_ms: 5_000,
                max_ms: 30_000,
            },
            StageTime {
                stage: Stage::TerraformApply,
                runs: 43,
                mean_ms: 48_000,
                median_ms: 41_000,
                max_ms: 180_000,
            },
            StageTime {
                stage: Stage::Address,
                runs: 40,
                mean_ms: 4_100,
                median_ms: 3_000,
                max_ms: 60_000,
            },
            StageTime {
                stage: Stage::Provision,
                runs: 38,
                mean_ms: 95_000,
                median_ms: 80_000,
                max_ms: 400_000,
            },
            StageTime {
                stage: Stage::HealthCheck,
                runs: 35,
                mean_ms: 3_300,
                median_ms: 2_000,
                max_ms: 30_000,
            },
        ],
        frameworks: vec![
            FrameworkStats {
                framework: "flask".into(),
                deployments: 20,
                active: 4,
                succeeded: 18,
                failed: 2,
                mean_deploy_ms: Some(150_000),
            },
            FrameworkStats {
                framework: "nextjs".into(),
                deployments: 12,
                active: 2,
                succeeded: 9,
                failed: 3,
                mean_deploy_ms: Some(240_000),
            },
            FrameworkStats {
                framework: "laravel".into(),
                deployments: 10,
                active: 1,
                succeeded: 7,
                failed: 1,
                mean_deploy_ms: None,
            },
        ],
    }
}

fn cluster() -> ClusterSnapshot {
    let node = |name: &str, online: bool, mem: u64| NodeInfo {
        name: name.into(),
        online,
        status: if online { "online" } else { "offline" }.into(),
        cpu: 0.23,
        maxcpu: 16,
        mem: mem * GIB,
        maxmem: 64 * GIB,
        disk: 120 * GIB,
        maxdisk: 500 * GIB,
        uptime: if online { 9 * 86_400 + 3 * 3_600 } else { 0 },
    };
    let guest =
        |vmid: u32, name: &str, status: &str, entry: Option<(&str, &str, Origin)>| GuestInfo {
            vmid,
            kind: if vmid == 122 {
                GuestType::Vm
            } else {
                GuestType::Lxc
            },
            node: "pve1".into(),
            name: name.into(),
            status: status.into(),
            cpu: 0.05,
            maxcpu: 2,
            mem: GIB / 2,
            maxmem: 2 * GIB,
            disk: 2 * GIB,
            maxdisk: 8 * GIB,
            uptime: if status == "running" { 5 * 3_600 } else { 0 },
            template: vmid == 9000,
            managed: entry.is_some_and(|(_, _, o)| o != Origin::Imported),
            orphan_of: None,
            entry: entry.map(|(id, name, origin)| GuestEntry {
                id: DeploymentId(id.into()),
                name: name.into(),
                origin,
                status: if status == "running" {
                    Status::Running
                } else {
                    Status::Stopped
                },
            }),
        };
    ClusterSnapshot {
        nodes: vec![
            node("pve1", true, 20),
            node("pve2", true, 50),
            node("pve3", false, 0),
        ],
        guests: vec![
            guest(105, "legacy-db", "running", None),
            guest(
                121,
                "api-prod",
                "running",
                Some(("a1b2c3", "api-prod", Origin::Terraform)),
            ),
            guest(
                122,
                "shop",
                "stopped",
                Some(("k3x9ta", "shop", Origin::Terraform)),
            ),
            guest(
                130,
                "wiki",
                "running",
                Some(("w1k1aa", "wiki", Origin::Imported)),
            ),
            guest(9000, "debian-12-tpl", "stopped", None),
        ],
    }
}

fn app_with(list: Vec<Deployment>) -> App {
    let mut app = App::new(Theme::colored());
    app.apply(&EngineEvent::Deployments(list));
    app
}

/// A fully fed app: deployments, statistics, a connected Proxmox, the settings.
fn fed() -> App {
    let mut app = app_with(typical());
    app.apply(&EngineEvent::Statistics(statistics()));
    app.apply(&EngineEvent::Proxmox(ProxmoxState::Online {
        endpoint: "https://pve.lan:8006/".into(),
        version: "8.3.2".into(),
        nodes_online: 2,
        nodes: 3,
    }));
    app.apply(&EngineEvent::Settings(Settings {
        default_node: Some("pve1".into()),
        network: "DHCP on vmbr0".into(),
    }));
    app
}

fn draw(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    terminal.draw(|frame| app.render(frame, NOW)).expect("draw");
    format!("{}", terminal.backend())
}

fn both(app: &mut App, name: &str) {
    insta::assert_snapshot!(format!("{name}_80x24"), draw(app, 80, 24));
    insta::assert_snapshot!(format!("{name}_120x40"), draw(app, 120, 40));
}

fn ids(app: &App) -> Option<String> {
    app.selected().map(|d| d.id.0.clone())
}

fn select(app: &mut App, id: &str) {
    app.on_ui_event(ch('g'));
    for _ in 0..10 {
        if ids(app).as_deref() == Some(id) {
            return;
        }
        app.on_ui_event(ch('j'));
    }
    panic!("{id} is not in the list");
}

fn seq_line(seq: i64, stream: LogStream, stage: Option<Stage>, text: &str) -> SeqLine {
    SeqLine {
        seq,
        line: LogLine {
            at: NOW - 60 * SEC + seq * 100,
            stream,
            stage,
            text: text.to_string(),
        },
    }
}

/// What a deployment's log looks like: stage markers, terraform's output, stderr, a failure.
fn typical_log() -> Vec<SeqLine> {
    use LogStream::*;
    let mut seq = 0;
    let mut out = Vec::new();
    let mut push = |stream, stage, text: &str| {
        seq += 1;
        out.push(seq_line(seq, stream, stage, text));
    };
    let apply = Some(Stage::TerraformApply);
    push(
        Info,
        Some(Stage::Validate),
        "deployment shop (k3x9ta) recorded as PENDING",
    );
    push(Info, Some(Stage::Preflight), "--- stage preflight ---");
    push(
        Info,
        Some(Stage::Preflight),
        "repository https://git.example.com/team/shop.git answers; ref main found",
    );
    push(
        Info,
        Some(Stage::TerraformInit),
        "--- stage terraform-init ---",
    );
    push(
        Stdout,
        Some(Stage::TerraformInit),
        "Initializing provider plugins...",
    );
    push(
        Stdout,
        Some(Stage::TerraformInit),
        "- Using bpg/proxmox v0.111.1 from the shared cache directory",
    );
    push(Info, apply, "--- stage terraform-apply ---");
    push(
        Stdout,
        apply,
        "proxmox_virtual_environment_vm.guest: Creating...",
    );
    push(
        Stderr,
        apply,
        "Error: error creating VM: received an HTTP 403 response - Reason: Permission check failed (/vms/122, VM.Allocate)",
    );
    push(
        Stderr,
        apply,
        "  with proxmox_virtual_environment_vm.guest, on main.tf line 40",
    );
    push(
        Stderr,
        apply,
        "FAILED at terraform-apply: 403 Permission check failed (/vms/122, VM.Allocate)",
    );
    push(
        Stderr,
        apply,
        "next: read terraform's output (`proxdeck logs k3x9ta`), fix the cause, then `proxdeck retry k3x9ta`",
    );
    out
}

fn open_logs_of(app: &mut App, id: &str, lines: Vec<SeqLine>, at_start: bool) {
    select(app, id);
    app.on_ui_event(ch('l'));
    assert_eq!(
        app.take_requests(),
        vec![Request::OpenLog(DeploymentId(id.into()))]
    );
    app.apply(&EngineEvent::LogPage {
        id: DeploymentId(id.into()),
        kind: LogPageKind::Tail,
        lines,
        at_start,
        at_end: true,
    });
}

#[test]
fn q_and_ctrl_c_quit_but_esc_does_not() {
    for event in [ch('q'), ctrl('c')] {
        let mut app = app_with(typical());
        app.on_ui_event(event);
        assert!(app.should_quit());
    }
    let mut app = app_with(typical());
    app.on_ui_event(key(KeyCode::Esc));
    assert!(!app.should_quit());
}

#[test]
fn key_releases_are_ignored() {
    let mut app = app_with(typical());
    let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    app.on_ui_event(UiEvent::Input(Event::Key(release)));
    assert!(!app.should_quit());
}

#[test]
fn selection_follows_the_deployment_when_the_list_changes() {
    let mut app = app_with(typical());
    assert_eq!(ids(&app).as_deref(), Some("p7q2zd"), "first row selected");
    app.on_ui_event(ch('j'));
    app.on_ui_event(key(KeyCode::Down));
    assert_eq!(ids(&app).as_deref(), Some("a1b2c3"));

    // A new deployment arrives on top and the old ones change: still on api-prod.
    let mut list = typical();
    list[2].status = Status::Stopped;
    list.insert(0, deployment("n3wone", "fresh", Status::Pending));
    app.apply(&EngineEvent::Deployments(list));
    assert_eq!(ids(&app).as_deref(), Some("a1b2c3"));
    assert_eq!(app.selected().map(|d| d.status), Some(Status::Stopped));

    // It disappears: the cursor stays on the same row instead of jumping to the top.
    let mut list = typical();
    list.insert(0, deployment("n3wone", "fresh", Status::Pending));
    list.retain(|d| d.id.0 != "a1b2c3");
    app.apply(&EngineEvent::Deployments(list));
    assert_eq!(ids(&app).as_deref(), Some("zz0old"));

    app.on_ui_event(ch('g'));
    assert_eq!(ids(&app).as_deref(), Some("n3wone"));
    app.on_ui_event(ch('G'));
    assert_eq!(ids(&app).as_deref(), Some("zz0old"));
    app.on_ui_event(key(KeyCode::Up));
    assert_eq!(ids(&app).as_deref(), Some("k3x9ta"));
    app.on_ui_event(ch('k'));
    assert_eq!(ids(&app).as_deref(), Some("p7q2zd"));
}

#[test]
fn status_events_update_rows_before_the_next_snapshot() {
    let mut app = app_with(typical());
    let id = DeploymentId("p7q2zd".into());
    app.apply(&EngineEvent::StageStarted {
        id: id.clone(),
        stage: Stage::Address,
    });
    assert_eq!(app.deployments()[0].stage, Some(Stage::Address));
    app.apply(&EngineEvent::StatusChanged {
        id,
        status: Status::Deploying,
        stage: Some(Stage::Provision),
    });
    assert_eq!(app.deployments()[0].status, Status::Deploying);
    assert_eq!(app.deployments()[0].stage, Some(Stage::Provision));
}

#[test]
fn errors_pop_up_and_are_dismissed_in_order() {
    let mut app = app_with(typical());
    app.apply(&EngineEvent::Error("first".into()));
    app.apply(&EngineEvent::Error("second".into()));
    assert_eq!(app.mode(), Mode::ErrorPopup);
    assert_eq!(app.current_error(), Some("first"));

    // Under a popup, navigation keys do nothing and Esc dismisses.
    app.on_ui_event(ch('j'));
    assert_eq!(ids(&app).as_deref(), Some("p7q2zd"));
    app.on_ui_event(key(KeyCode::Esc));
    assert!(!app.should_quit());
    assert_eq!(app.current_error(), Some("second"));
    app.on_ui_event(key(KeyCode::Enter));
    assert_eq!(app.current_error(), None);
    assert_eq!(app.mode(), Mode::Dashboard);
}

#[test]
fn refresh_asks_the_engine() {
    let mut app = app_with(typical());
    app.on_ui_event(ch('r'));
    assert_eq!(app.take_requests(), vec![Request::RefreshDeployments]);
    assert!(app.take_requests().is_empty());
}

#[test]
fn redraws_only_when_something_changed() {
    let mut app = app_with(vec![]);
    assert!(app.is_dirty());
    draw(&mut app, 80, 24);
    assert!(!app.is_dirty());
    app.on_ui_event(UiEvent::Tick);
    assert!(!app.is_dirty(), "nothing ages in an empty list");
    app.apply(&EngineEvent::Log {
        id: DeploymentId("x".into()),
        lines: vec![],
    });
    assert!(!app.is_dirty());
    app.apply(&EngineEvent::Proxmox(ProxmoxState::Connecting));
    assert!(!app.is_dirty(), "the same state again");
    app.apply(&EngineEvent::Deployments(typical()));
    assert!(app.is_dirty());
    draw(&mut app, 80, 24);
    app.on_ui_event(UiEvent::Tick);
    assert!(app.is_dirty(), "ages move");
    assert!(app.animating(), "blog is in flight: spinners turn");
}

#[test]
fn engine_gone_is_shown() {
    let mut app = app_with(typical());
    app.on_ui_event(UiEvent::EngineClosed);
    assert!(app.current_error().is_some_and(|e| e.contains("engine")));
}

#[test]
fn filter_narrows_the_table_and_esc_clears_it() {
    let mut app = app_with(typical());
    app.on_ui_event(ch('/'));
    assert_eq!(app.mode(), Mode::Filter);
    typed(&mut app, "shop");
    assert_eq!(ids(&app).as_deref(), Some("k3x9ta"));
    assert!(!app.should_quit(), "q is text while filtering");
    app.on_ui_event(key(KeyCode::Enter));
    assert_eq!(app.mode(), Mode::Dashboard);
    let screen = draw(&mut app, 80, 24);
    assert!(
        screen.contains("/ shop") && !screen.contains("api-prod"),
        "{screen}"
    );
    app.on_ui_event(key(KeyCode::Esc));
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("api-prod"), "{screen}");
}

#[test]
fn sort_menu_has_a_key_per_column() {
    let mut app = app_with(typical());
    app.on_ui_event(ch('o'));
    assert_eq!(app.mode(), Mode::Menu);
    insta::assert_snapshot!("sort_menu_80x24", draw(&mut app, 80, 24));
    app.on_ui_event(ch('n'));
    assert_eq!(app.mode(), Mode::Dashboard);
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("by name"), "{screen}");
    // Table rows start at the border, with or without the selection mark.
    let row = |n: &str| {
        [format!("│› {n} "), format!("│  {n} ")]
            .iter()
            .filter_map(|p| screen.find(p.as_str()))
            .min()
            .unwrap_or(usize::MAX)
    };
    let order: Vec<usize> = ["api-prod", "blog", "old-demo", "shop"]
        .iter()
        .map(|n| row(n))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{screen}");
}

#[test]
fn destroy_asks_naming_the_deployment_then_runs_and_tracks_it() {
    let mut app = fed();
    select(&mut app, "a1b2c3");
    app.on_ui_event(ch('d'));
    assert_eq!(app.mode(), Mode::Confirm);
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("Destroy api-prod (a1b2c3)?"), "{screen}");
    assert!(screen.contains("container 121 on node pve1"), "{screen}");
    insta::assert_snapshot!("confirm_destroy_80x24", screen);
    app.on_ui_event(ch('n'));
    assert!(app.take_requests().is_empty(), "n cancels");

    app.on_ui_event(ch('d'));
    app.on_ui_event(ch('y'));
    assert_eq!(
        app.take_requests(),
        vec![Request::Destroy(DeploymentId("a1b2c3".into()))]
    );
    // The worker queues it; the UI says so, and shows the job on the deployment.
    let job = crate::domain::Job {
        id: crate::domain::JobId(12),
        op: crate::domain::Op::Destroy { force: false },
        deployment: Some(DeploymentId("a1b2c3".into())),
        state: crate::domain::JobState::Running,
        requested_by: "me via tui".into(),
        created_at: 0,
        started_at: Some(0),
        finished_at: None,
        cancel_requested: false,
        log_from: 0,
        outcome: None,
        position: None,
    };
    app.apply(&EngineEvent::OpQueued {
        op: OpKind::Destroy,
        target: "a1b2c3".into(),
        job: Box::new(job.clone()),
    });
    assert!(
        app.flash().unwrap().contains("started as job #12"),
        "{:?}",
        app.flash()
    );
    app.apply(&EngineEvent::Jobs(vec![job]));
    // Another action on it is refused while the job runs; `c` asks to cancel it.
    app.on_ui_event(ch('t'));
    assert!(
        app.flash().unwrap().contains("destroy running"),
        "{:?}",
        app.flash()
    );
    assert!(app.take_requests().is_empty());
    app.on_ui_event(ch('c'));
    assert_eq!(app.mode(), Mode::Confirm);
    app.on_ui_event(ch('y'));
    assert_eq!(
        app.take_requests(),
        vec![Request::Cancel(DeploymentId("a1b2c3".into()))]
    );
    // Quitting never stops work: it quits at once and says what goes on.
    assert_eq!(
        app.farewell().unwrap(),
        "1 job goes on in proxdeck's worker: destroy api-prod (running). `proxdeck jobs` lists them; `proxdeck logs -f ID` follows one."
    );
    app.apply(&EngineEvent::OpFinished {
        job: Some(crate::domain::JobId(12)),
        op: OpKind::Destroy,
        target: "a1b2c3".into(),
        result: Ok("api-prod (a1b2c3) is DELETED".into()),
    });
    assert!(app.flash().unwrap().contains("DELETED"));
    app.apply(&EngineEvent::Jobs(Vec::new()));
    assert_eq!(app.farewell(), None);
    app.on_ui_event(ch('q'));
    assert!(app.should_quit());
}

#[test]
fn actions_that_do_not_apply_say_why_without_asking_the_engine() {
    let mut app = fed();
    select(&mut app, "p7q2zd");
    app.on_ui_event(ch('d'));
    assert!(
        app.flash().unwrap().contains("PROVISIONING"),
        "{:?}",
        app.flash()
    );
    select(&mut app, "a1b2c3");
    app.on_ui_event(ch('t'));
    assert!(app.flash().unwrap().contains("retry is for FAILED"));
    app.on_ui_event(ch('c'));
    assert!(app.flash().unwrap().contains("no queued or running job"));
    select(&mut app, "zz0old");
    app.on_ui_event(ch('s'));
    assert!(app.flash().unwrap().contains("deleted"));
    assert!(app.take_requests().is_empty());
    assert_eq!(app.mode(), Mode::Dashboard);

    // Retry on a failed one goes straight to the engine; a failure comes back as a popup.
    select(&mut app, "k3x9ta");
    app.on_ui_event(ch('t'));
    assert_eq!(
        app.take_requests(),
        vec![Request::Retry(DeploymentId("k3x9ta".into()))]
    );
    app.apply(&EngineEvent::OpFinished {
        job: None,
        op: OpKind::Retry,
        target: "k3x9ta".into(),
        result: Err("k3x9ta: stage terraform-apply failed: 403\nnext: fix it".into()),
    });
    assert!(
        app.current_error()
            .unwrap()
            .starts_with("retry shop failed")
    );
}

#[test]
fn stop_and_rollback_are_confirmed() {
    let mut app = fed();
    select(&mut app, "a1b2c3");
    app.on_ui_event(ch('x'));
    assert_eq!(app.mode(), Mode::Confirm);
    app.on_ui_event(ch('y'));
    assert_eq!(
        app.take_requests(),
        vec![Request::Power {
            id: DeploymentId("a1b2c3".into()),
            action: Power::Stop
        }]
    );
    app.on_ui_event(ch('B'));
    let screen = draw(&mut app, 100, 30);
    assert!(screen.contains("77d01be"), "{screen}");
    app.on_ui_event(ch('y'));
    assert_eq!(
        app.take_requests(),
        vec![Request::Rollback(DeploymentId("a1b2c3".into()))]
    );
}

#[test]
fn enter_opens_details_and_esc_comes_back() {
    let mut app = fed();
    select(&mut app, "k3x9ta");
    app.on_ui_event(key(KeyCode::Enter));
    assert_eq!(app.mode(), Mode::Details);
    assert_eq!(
        app.take_requests(),
        vec![
            Request::LoadDetails(DeploymentId("k3x9ta".into())),
            Request::LoadSnapshots(DeploymentId("k3x9ta".into()))
        ]
    );
    // A newer copy of the deployment in the list: asked again.
    let mut list = typical();
    list[1].updated_at += 1;
    app.apply(&EngineEvent::Deployments(list));
    assert_eq!(
        app.take_requests(),
        vec![
            Request::LoadDetails(DeploymentId("k3x9ta".into())),
            Request::LoadSnapshots(DeploymentId("k3x9ta".into()))
        ]
    );
    app.on_ui_event(key(KeyCode::Esc));
    assert_eq!(app.mode(), Mode::Dashboard);
}

#[test]
fn logs_open_follow_and_close() {
    let mut app = fed();
    open_logs_of(&mut app, "k3x9ta", typical_log(), true);
    assert_eq!(app.mode(), Mode::Logs);
    // The wheel scrolls (and pauses following).
    app.on_ui_event(UiEvent::Input(Event::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollUp,
        column: 0,
        row: 0,
        modifiers: KeyModifiers::NONE,
    })));
    let screen = draw(&mut app, 80, 24);
    assert!(
        screen.contains("PAUSED") || screen.contains("FOLLOWING"),
        "{screen}"
    );
    app.on_ui_event(key(KeyCode::Esc));
    assert_eq!(app.take_requests(), vec![Request::CloseLog]);
    assert_eq!(app.mode(), Mode::Dashboard);
}

#[test]
fn command_line_completes_and_runs() {
    let mut app = fed();
    app.on_ui_event(ch(':'));
    assert_eq!(app.mode(), Mode::Command);
    typed(&mut app, "lo");
    app.on_ui_event(key(KeyCode::Tab));
    typed(&mut app, "sh");
    app.on_ui_event(key(KeyCode::Tab));
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains(":logs shop"), "{screen}");
    insta::assert_snapshot!("command_line_80x24", screen);
    app.on_ui_event(key(KeyCode::Enter));
    assert_eq!(
        app.take_requests(),
        vec![Request::OpenLog(DeploymentId("k3x9ta".into()))]
    );
    assert_eq!(app.mode(), Mode::Logs);

    for (line, want) in [
        ("stats", Mode::Stats),
        ("resources", Mode::Resources),
        ("dashboard", Mode::Dashboard),
        ("deploy", Mode::WizardText),
    ] {
        app.on_ui_event(key(KeyCode::Esc));
        app.on_ui_event(ch(':'));
        typed(&mut app, line);
        app.on_ui_event(key(KeyCode::Enter));
        assert_eq!(app.mode(), want, ":{line}");
    }
    app.on_ui_event(key(KeyCode::Esc));
    app.on_ui_event(ch(':'));
    typed(&mut app, "frobnicate");
    app.on_ui_event(key(KeyCode::Enter));
    assert!(app.flash().unwrap().contains("unknown command"));
    app.on_ui_event(ch(':'));
    typed(&mut app, "sync");
    app.take_requests();
    app.on_ui_event(key(KeyCode::Enter));
    assert_eq!(app.take_requests(), vec![Request::Sync]);
    app.on_ui_event(ch(':'));
    typed(&mut app, "q");
    app.on_ui_event(key(KeyCode::Enter));
    assert!(
        app.should_quit(),
        "quitting never waits for work: the worker has it"
    );
}

#[test]
fn help_lists_every_key_of_the_screen_from_the_keymap() {
    let mut app = fed();
    app.on_ui_event(ch('?'));
    assert_eq!(app.mode(), Mode::Help);
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("Keys: Dashboard"), "{screen}");
    for b in keys::bindings(Mode::Dashboard) {
        assert!(
            screen.contains(b.description),
            "{} missing:\n{screen}",
            b.description
        );
    }
    insta::assert_snapshot!("help_80x24", draw(&mut app, 80, 24));
    app.on_ui_event(key(KeyCode::Esc));
    assert_eq!(app.mode(), Mode::Dashboard);
    // On the log screen, the log's keys.
    open_logs_of(&mut app, "a1b2c3", vec![], true);
    app.on_ui_event(ch('?'));
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains("Keys: Log") && screen.contains("app log"),
        "{screen}"
    );
}

#[test]
fn shell_and_suspend_hand_the_terminal_to_the_loop() {
    let mut app = fed();
    select(&mut app, "a1b2c3");
    app.on_ui_event(ch('s'));
    assert_eq!(
        app.take_requests(),
        vec![Request::PrepareShell(DeploymentId("a1b2c3".into()))]
    );
    let cmd = ShellCommand {
        id: DeploymentId("a1b2c3".into()),
        name: "api-prod".into(),
        target: "root@10.20.30.121:22".into(),
        program: "ssh".into(),
        args: vec!["--".into(), "10.20.30.121".into()],
    };
    app.apply(&EngineEvent::ShellReady(cmd.clone()));
    assert_eq!(app.take_effects(), vec![Effect::Shell(cmd.clone())]);
    app.shell_finished(&cmd, Ok(0));
    assert!(
        app.flash()
            .unwrap()
            .contains("back from the shell on api-prod")
    );
    app.on_ui_event(ctrl('z'));
    assert_eq!(app.take_effects(), vec![Effect::Suspend]);
}

#[test]
fn resources_import_and_power_known_guests_only() {
    let mut app = fed();
    app.on_ui_event(ch('p'));
    assert_eq!(app.take_requests(), vec![Request::LoadResources]);
    app.apply(&EngineEvent::Cluster(Ok(cluster())));
    assert_eq!(app.mode(), Mode::Resources);
    // The first guest (105) is unknown to proxdeck.
    app.on_ui_event(ch('u'));
    assert!(app.flash().unwrap().contains("not known to proxdeck"));
    app.on_ui_event(ch('i'));
    assert_eq!(app.take_requests(), vec![Request::Sync]);
    app.apply(&EngineEvent::OpFinished {
        job: None,
        op: OpKind::Sync,
        target: String::new(),
        result: Ok("5 guests: 1 imported".into()),
    });
    assert_eq!(
        app.take_requests(),
        vec![Request::LoadResources],
        "refreshed after sync"
    );
    app.apply(&EngineEvent::Cluster(Ok(cluster())));
    // 122 (shop) is FAILED in the list: power actions say why not.
    app.on_ui_event(ch('j'));
    app.on_ui_event(ch('j'));
    app.on_ui_event(ch('u'));
    assert!(app.flash().unwrap().contains("FAILED"), "{:?}", app.flash());
    app.on_ui_event(key(KeyCode::Enter));
    assert_eq!(app.mode(), Mode::Details);
}

/// The wizard through the App: keys in, a checked repository, a review, a deploy request,
/// and the new row selected when it shows up.
#[test]
fn wizard_deploys_by_keystrokes() {
    let mut app = fed();
    app.on_ui_event(ch('n'));
    assert_eq!(app.mode(), Mode::WizardText);
    assert_eq!(app.take_requests(), vec![Request::LoadResources]);
    typed(&mut app, "git://127.0.0.1:9418/flask-sample.git");
    assert!(!app.should_quit());
    app.on_ui_event(UiEvent::Tick);
    app.on_ui_event(UiEvent::Tick);
    let check = Request::CheckRepo {
        repo: "git://127.0.0.1:9418/flask-sample.git".into(),
        git_ref: String::new(),
    };
    assert_eq!(app.take_requests(), vec![check]);
    app.apply(&EngineEvent::RepoChecked {
        repo: "git://127.0.0.1:9418/flask-sample.git".into(),
        git_ref: String::new(),
        result: Ok("repository answers (default branch)".into()),
    });
    app.apply(&EngineEvent::Detected {
        repo: "git://127.0.0.1:9418/flask-sample.git".into(),
        git_ref: String::new(),
        result: Ok(Detected {
            framework: "flask".into(),
            reason: "requirements.txt has flask".into(),
        }),
    });
    // Esc closes, n reopens with what was typed.
    app.on_ui_event(key(KeyCode::Esc));
    assert_eq!(app.mode(), Mode::Dashboard);
    app.on_ui_event(ch('n'));
    let screen = draw(&mut app, 80, 24);
    assert!(
        screen.contains("flask-sample.git") && screen.contains("requirements.txt has flask"),
        "{screen}"
    );
    app.on_ui_event(key(KeyCode::Enter)); // the page is complete: the framework page
    assert_eq!(app.mode(), Mode::WizardList);
    app.on_ui_event(key(KeyCode::Enter)); // auto (flask)
    assert_eq!(app.mode(), Mode::WizardText, "the name field");
    typed(&mut app, "tui-flask");
    app.on_ui_event(key(KeyCode::Enter)); // the resources page
    typed(&mut app, "2");
    app.on_ui_event(key(KeyCode::Enter)); // the environment page
    assert_eq!(app.mode(), Mode::WizardEnv);
    app.on_ui_event(ch('a'));
    typed(&mut app, "SECRET_KEY");
    app.on_ui_event(key(KeyCode::Tab));
    typed(&mut app, "hunter22");
    app.on_ui_event(key(KeyCode::Enter));
    let screen = draw(&mut app, 80, 24);
    assert!(
        screen.contains("SECRET_KEY = ••••••••") && !screen.contains("hunter22"),
        "{screen}"
    );
    app.take_requests();
    app.on_ui_event(key(KeyCode::Enter)); // review
    let requests = app.take_requests();
    let [Request::Review(input)] = requests.as_slice() else {
        panic!("{requests:?}")
    };
    assert_eq!(input.name.as_deref(), Some("tui-flask"));
    assert_eq!(input.cores, Some(2));
    assert_eq!(input.framework, "flask");
    assert_eq!(
        input.env,
        [("SECRET_KEY".to_string(), "hunter22".to_string())]
    );
    app.apply(&EngineEvent::Reviewed {
        input: input.clone(),
        result: Ok(vec![("name".into(), "tui-flask".into())]),
    });
    app.on_ui_event(key(KeyCode::Enter));
    let requests = app.take_requests();
    assert!(
        matches!(requests.as_slice(), [Request::Deploy(d)] if d.name.as_deref() == Some("tui-flask")),
        "{requests:?}"
    );
    assert_eq!(app.mode(), Mode::Dashboard);
    let mut list = typical();
    list.insert(0, deployment("n3wd3p", "tui-flask", Status::Pending));
    list.swap(0, 2);
    app.apply(&EngineEvent::Deployments(list));
    assert_eq!(
        ids(&app).as_deref(),
        Some("n3wd3p"),
        "the new one is selected"
    );
    // A fresh wizard next time.
    app.on_ui_event(ch('n'));
    let screen = draw(&mut app, 80, 24);
    assert!(!screen.contains("flask-sample"), "{screen}");
}

#[test]
fn snapshot_loading() {
    let mut app = App::new(Theme::colored());
    insta::assert_snapshot!("loading_80x24", draw(&mut app, 80, 24));
}

#[test]
fn snapshot_empty() {
    let mut app = app_with(vec![]);
    app.apply(&EngineEvent::Proxmox(ProxmoxState::Unconfigured));
    both(&mut app, "empty");
}

#[test]
fn snapshot_typical() {
    let mut app = fed();
    app.on_ui_event(ch('j'));
    both(&mut app, "typical");
}

#[test]
fn snapshot_error_popup() {
    let mut app = fed();
    app.apply(&EngineEvent::Proxmox(ProxmoxState::Offline {
        endpoint: "https://pve.lan:8006/".into(),
        error: "connection refused".into(),
    }));
    app.apply(&EngineEvent::Error(
        "Proxmox did not answer at https://pve.lan:8006 (connection refused). Check \
         PROXMOX_VE_ENDPOINT in config.toml or the environment, then run `proxdeck doctor`."
            .into(),
    ));
    app.apply(&EngineEvent::Error("second error".into()));
    both(&mut app, "error_popup");
}

/// End to end through the reducer: draw, a snapshot arrives, keys, draw again.
#[test]
fn snapshot_live_update_then_navigation() {
    let mut app = App::new(Theme::colored());
    draw(&mut app, 80, 24);
    app.on_ui_event(UiEvent::Engine(EngineEvent::Deployments(typical())));
    app.on_ui_event(ch('G'));
    app.on_ui_event(ch('k'));
    insta::assert_snapshot!("live_update_80x24", draw(&mut app, 80, 24));
}

#[test]
fn snapshot_many_deployments_in_flight() {
    let mut list: Vec<Deployment> = (0..2_000)
        .map(|i| {
            let status = match i % 5 {
                0 => Status::Provisioning,
                1 => Status::Running,
                2 => Status::Failed,
                3 => Status::Deploying,
                _ => Status::Stopped,
            };
            let mut d = deployment(&format!("d{i:05}"), &format!("app-{i:04}"), status);
            d.stage = Some(Stage::Provision);
            d.created_at = NOW - i64::from(i) * MIN;
            d.updated_at = NOW - 30 * SEC;
            d
        })
        .collect();
    list[0].name = "a-very-long-deployment-name-that-does-not-fit".into();
    let mut app = app_with(list);
    app.on_ui_event(key(KeyCode::PageDown));
    both(&mut app, "many");
}

#[test]
fn snapshot_wizard_pages() {
    let mut app = fed();
    app.apply(&EngineEvent::Cluster(Ok(cluster())));
    app.on_ui_event(ch('n'));
    typed(&mut app, "https://git.example.com/team/shop;x");
    both(&mut app, "wizard_repo_invalid");
    for _ in 0..2 {
        app.on_ui_event(key(KeyCode::Backspace));
    }
    typed(&mut app, ".git");
    app.on_ui_event(UiEvent::Tick);
    app.on_ui_event(UiEvent::Tick);
    let repo = "https://git.example.com/team/shop.git".to_string();
    app.apply(&EngineEvent::RepoChecked {
        repo: repo.clone(),
        git_ref: String::new(),
        result: Ok(format!("repository {repo} answers (default branch)")),
    });
    app.apply(&EngineEvent::Detected {
        repo,
        git_ref: String::new(),
        result: Ok(Detected {
            framework: "laravel".into(),
            reason: "artisan exists and composer.json has laravel/framework".into(),
        }),
    });
    both(&mut app, "wizard_repo_checked");
    // The page is complete: enter goes to the next one.
    app.on_ui_event(key(KeyCode::Enter));
    both(&mut app, "wizard_framework");
    app.on_ui_event(key(KeyCode::Enter));
    for _ in 0..3 {
        app.on_ui_event(key(KeyCode::Tab)); // name → onto → type → node
    }
    app.on_ui_event(key(KeyCode::Right));
    app.on_ui_event(key(KeyCode::Right));
    both(&mut app, "wizard_guest");
    app.on_ui_event(key(KeyCode::Enter));
    typed(&mut app, "4x");
    both(&mut app, "wizard_resources");
    // Not complete: enter stays on the page, on the field to fix.
    app.on_ui_event(key(KeyCode::Enter));
    assert_eq!(app.mode(), Mode::WizardText);
    assert!(draw(&mut app, 80, 24).contains("Fix this first: cores"));
    app.on_ui_event(key(KeyCode::Backspace));
    app.on_ui_event(key(KeyCode::Enter));
    assert_eq!(app.mode(), Mode::WizardEnv);
    app.on_ui_event(ch('a'));
    typed(&mut app, "APP_KEY");
    app.on_ui_event(key(KeyCode::Tab));
    typed(&mut app, "base64:abc");
    both(&mut app, "wizard_env_edit");
    app.on_ui_event(key(KeyCode::Enter));
    app.take_requests();
    app.on_ui_event(key(KeyCode::Enter));
    let requests = app.take_requests();
    let [Request::Review(input)] = requests.as_slice() else {
        panic!("{requests:?}")
    };
    app.apply(&EngineEvent::Reviewed {
        input: input.clone(),
        result: Ok(vec![
            ("name".into(), "shop-2".into()),
            ("repository".into(), "https://git.example.com/team/shop.git @ the default branch".into()),
            ("framework".into(), "Laravel (php, php-fpm nginx)".into()),
            ("app".into(), "port 8000, health check GET /".into()),
            ("guest".into(), "LXC container from local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into()),
            ("resources".into(), "4 cores, 1024 MiB memory, 8 GiB disk on local-lvm".into()),
            ("node".into(), "auto → pve2 (45056 MiB free memory, the most where it fits)".into()),
            ("network".into(), "vmbr0: DHCP".into()),
            ("terraform".into(), "creates one proxmox_virtual_environment_container with the bpg/proxmox provider, in its own workspace".into()),
            ("ssh".into(), "root@ the guest, port 22, proxdeck's key".into()),
            ("env".into(), "APP_KEY (values kept secret)".into()),
        ]),
    });
    both(&mut app, "wizard_review");
    app.apply(&EngineEvent::Reviewed {
        input: input.clone(),
        result: Err("node: no node can take the guest (4 cores, 1024 MiB, 8 GiB on local-lvm): pve3 is offline; free resources on a node, ask for less, or name a node with --node".into()),
    });
    insta::assert_snapshot!("wizard_review_refused_80x24", draw(&mut app, 80, 24));
}

#[test]
fn snapshot_logs() {
    let mut app = fed();
    open_logs_of(&mut app, "k3x9ta", typical_log(), true);
    both(&mut app, "logs_typical");
    app.on_ui_event(ch('/'));
    typed(&mut app, "403");
    app.on_ui_event(key(KeyCode::Enter));
    both(&mut app, "logs_search");
    app.on_ui_event(key(KeyCode::Tab));
    assert_eq!(
        app.take_requests(),
        vec![Request::StartAppLog {
            id: DeploymentId("k3x9ta".into()),
            lines: 200
        }]
    );
    app.apply(&EngineEvent::AppLog {
        id: DeploymentId("k3x9ta".into()),
        stream: LogStream::Stdout,
        lines: vec![
            "[2026-01-15 11:59:01] production.INFO: GET / 200".into(),
            "[2026-01-15 11:59:03] production.INFO: GET /cart 200".into(),
        ],
    });
    app.apply(&EngineEvent::AppLog {
        id: DeploymentId("k3x9ta".into()),
        stream: LogStream::Stderr,
        lines: vec![
            "[2026-01-15 11:59:04] production.ERROR: SQLSTATE[HY000] [2002] Connection refused"
                .into(),
        ],
    });
    insta::assert_snapshot!("logs_app_80x24", draw(&mut app, 80, 24));
}

/// A log of a million lines: the pane holds a window, the status line says more is above.
#[test]
fn snapshot_long_log() {
    let mut app = fed();
    let tail: Vec<SeqLine> = (999_001..=1_000_000)
        .map(|i| seq_line(i, if i % 7 == 0 { LogStream::Stderr } else { LogStream::Stdout }, Some(Stage::Provision), &format!("pip: line {i} of the install, with a long tail of text that runs past the right edge of an 80 column terminal")))
        .collect();
    open_logs_of(&mut app, "p7q2zd", tail, false);
    both(&mut app, "logs_long");
    // Paging up to the top of the window asks for the lines before it.
    for _ in 0..60 {
        app.on_ui_event(key(KeyCode::PageUp));
    }
    let requests = app.take_requests();
    assert_eq!(
        requests,
        vec![Request::LoadLog {
            id: DeploymentId("p7q2zd".into()),
            window: LogWindow::Before(999_001)
        }]
    );
}

#[test]
fn snapshot_details() {
    let mut app = fed();
    select(&mut app, "k3x9ta");
    app.on_ui_event(key(KeyCode::Enter));
    let d = typical()[1].clone();
    let t0 = d.created_at;
    app.apply(&EngineEvent::Details(Box::new(DetailsSnapshot {
        deployment: d.clone(),
        history: vec![
            HistoryEntry { status: Status::Pending, stage: Some(Stage::Validate), at: t0, message: None },
            HistoryEntry { status: Status::Provisioning, stage: Some(Stage::Preflight), at: t0 + 2 * SEC, message: None },
            HistoryEntry { status: Status::Failed, stage: Some(Stage::TerraformApply), at: t0 + 3 * MIN, message: d.error.clone() },
        ],
        stages: vec![
            (Stage::Preflight, t0 + 2 * SEC),
            (Stage::Render, t0 + 5 * SEC),
            (Stage::TerraformInit, t0 + 6 * SEC),
            (Stage::TerraformApply, t0 + 20 * SEC),
        ],
        next_step: Some("read terraform's output (`proxdeck logs k3x9ta`), fix the cause on Proxmox or in the config, then `proxdeck retry k3x9ta` or `proxdeck destroy k3x9ta`".into()),
        job: None,
    })));
    both(&mut app, "details_failed");
}

#[test]
fn details_of_a_host_deployment_show_the_host_not_a_guest() {
    let mut list = typical();
    let d = &mut list[1];
    d.origin = crate::domain::Origin::Host;
    d.vmid = None;
    d.node = None;
    d.ip = Some("192.0.2.7".into());
    d.ssh_user = Some("deploy".into());
    let d = d.clone();
    let name = d.name.clone();
    let mut app = app_with(list);
    select(&mut app, "k3x9ta");
    app.on_ui_event(key(KeyCode::Enter));
    app.apply(&EngineEvent::Details(Box::new(DetailsSnapshot {
        deployment: d,
        history: vec![],
        stages: vec![],
        next_step: None,
        job: None,
    })));
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("192.0.2.7, SSH user deploy"), "{screen}");
    assert!(
        screen.contains(&format!("service proxdeck-{name}")),
        "{screen}"
    );
    assert!(
        !screen.contains("vmid") && !screen.contains("cores"),
        "{screen}"
    );
}

#[test]
fn details_name_the_domains_and_their_tls() {
    let mut list = typical();
    let d = &mut list[1];
    d.overrides.domains = vec!["shop.example.com".into(), "www.shop.example.com".into()];
    d.overrides.tls = Some(crate::domain::TlsMode::Internal);
    d.url = Some("https://shop.example.com/".into());
    let d = d.clone();
    let mut app = app_with(list);
    select(&mut app, "k3x9ta");
    app.on_ui_event(key(KeyCode::Enter));
    app.apply(&EngineEvent::Details(Box::new(DetailsSnapshot {
        deployment: d,
        history: vec![],
        stages: vec![],
        next_step: None,
        job: None,
    })));
    let screen = draw(&mut app, 160, 40);
    assert!(screen.contains("https://shop.example.com/"), "{screen}");
    assert!(
        screen.contains("shop.example.com, www.shop.example.com (TLS internal, through Caddy"),
        "{screen}"
    );
}

#[test]
fn snapshot_resources() {
    let mut app = fed();
    app.on_ui_event(ch('p'));
    insta::assert_snapshot!("resources_loading_80x24", draw(&mut app, 80, 24));
    app.apply(&EngineEvent::Cluster(Ok(cluster())));
    app.on_ui_event(ch('j'));
    both(&mut app, "resources");
    app.apply(&EngineEvent::Cluster(Err(
        "Proxmox refused the credentials (401 authentication failure); check proxmox.api_token"
            .into(),
    )));
    insta::assert_snapshot!("resources_error_80x24", draw(&mut app, 80, 24));
}

#[test]
fn snapshot_stats() {
    let mut app = fed();
    app.on_ui_event(ch('S'));
    assert_eq!(app.take_requests(), vec![Request::LoadStats]);
    both(&mut app, "stats");
    app.apply(&EngineEvent::Statistics(Statistics {
        per_day: (1..=30)
            .map(|d| DayCount {
                day: format!("2026-01-{d:02}"),
                deployments: 0,
                failed: 0,
            })
            .collect(),
        ..Statistics::default()
    }));
    insta::assert_snapshot!("stats_empty_80x24", draw(&mut app, 80, 24));
}

#[test]
fn no_color_keeps_the_screen_readable() {
    let mut app = App::new(Theme::plain());
    app.apply(&EngineEvent::Deployments(typical()));
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test backend");
    terminal.draw(|frame| app.render(frame, NOW)).expect("draw");
    let buffer = terminal.backend().buffer();
    for cell in buffer.content() {
        assert_eq!(cell.fg, ratatui::style::Color::Reset, "{cell:?}");
        assert_eq!(cell.bg, ratatui::style::Color::Reset, "{cell:?}");
    }
    let text = format!("{}", terminal.backend());
    assert!(
        text.contains("FAILED") && text.contains("RUNNING"),
        "{text}"
    );
}

/// Every screen survives any terminal size, down to a single cell (a resize never panics).
#[test]
fn every_screen_draws_at_any_size() {
    let sizes = [
        (1, 1),
        (10, 3),
        (20, 5),
        (33, 9),
        (40, 10),
        (80, 24),
        (200, 60),
    ];
    let mut app = fed();
    app.apply(&EngineEvent::Cluster(Ok(cluster())));
    let check = |app: &mut App, what: &str| {
        for (w, h) in sizes {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| draw(app, w, h)));
            assert!(result.is_ok(), "{what} at {w}x{h} panicked");
        }
    };
    check(&mut app, "dashboard");
    app.on_ui_event(ch('/'));
    check(&mut app, "filter");
    app.on_ui_event(key(KeyCode::Esc));
    select(&mut app, "a1b2c3");
    app.on_ui_event(ch('d'));
    check(&mut app, "confirm");
    app.on_ui_event(ch('n'));
    app.on_ui_event(ch('?'));
    check(&mut app, "help");
    app.on_ui_event(key(KeyCode::Esc));
    app.on_ui_event(ch(':'));
    check(&mut app, "command line");
    app.on_ui_event(key(KeyCode::Esc));
    app.apply(&EngineEvent::Error("boom ".repeat(50)));
    check(&mut app, "error");
    app.on_ui_event(key(KeyCode::Esc));
    app.on_ui_event(ch('n'));
    typed(&mut app, "acme/shop");
    for page in 0..6 {
        check(&mut app, &format!("wizard page {page}"));
        if page == 1 {
            app.on_ui_event(ch('j'));
        }
        for _ in 0..4 {
            app.on_ui_event(key(KeyCode::Enter));
        }
    }
    app.on_ui_event(key(KeyCode::Esc));
    while app.mode() != Mode::Dashboard {
        app.on_ui_event(key(KeyCode::Esc));
    }
    app.take_requests();
    open_logs_of(&mut app, "k3x9ta", typical_log(), true);
    check(&mut app, "logs");
    app.on_ui_event(key(KeyCode::Tab));
    check(&mut app, "app log");
    app.on_ui_event(key(KeyCode::Esc));
    app.on_ui_event(key(KeyCode::Enter));
    check(&mut app, "details loading");
    app.on_ui_event(key(KeyCode::Esc));
    app.on_ui_event(ch('p'));
    check(&mut app, "resources");
    app.on_ui_event(key(KeyCode::Esc));
    app.on_ui_event(ch('S'));
    check(
        &mut app,
        "stats (no statistics yet are impossible here: fed)",
    );
}

#[test]
fn the_header_counts_deployments_and_imported_guests_apart() {
    let mut list = vec![deployment("a1b2c3", "api", Status::Running)];
    for (i, id) in ["imp001", "imp002"].iter().enumerate() {
        let mut d = deployment(id, &format!("guest-{i}"), Status::Running);
        d.origin = Origin::Imported;
        list.push(d);
    }
    let mut app = app_with(list);
    let screen = draw(&mut app, 120, 40);
    let header = screen.lines().next().expect("a header");
    assert!(
        header.contains("1 deployment · 1 active · 2 imported"),
        "{header}"
    );
    assert!(screen.contains("Deployments (3)"), "the table lists all");
    // Once the statistics come (imported entries left out), the header keeps both counts.
    let mut stats = statistics();
    stats.total = 1;
    stats.active = 1;
    app.apply(&EngineEvent::Statistics(stats));
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("1 deployment · 1 active · 2 imported"));
}

#[test]
fn the_empty_dashboard_offers_the_cluster_and_sync() {
    let mut app = app_with(Vec::new());
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("p see the Proxmox cluster"), "{screen}");
    assert!(
        screen.contains(":sync import its existing guests"),
        "{screen}"
    );
    // And both do what they say.
    app.on_ui_event(ch('p'));
    assert_eq!(app.mode(), Mode::Resources);
    app.on_ui_event(key(KeyCode::Esc));
    app.on_ui_event(ch(':'));
    typed(&mut app, "sync");
    app.on_ui_event(key(KeyCode::Enter));
    assert!(app.take_requests().contains(&Request::Sync));
}

#[test]
fn snapshot_log_filter_and_wrap() {
    let mut app = fed();
    open_logs_of(&mut app, "k3x9ta", typical_log(), false);
    app.on_ui_event(ch('/'));
    typed(&mut app, "403");
    app.on_ui_event(key(KeyCode::Enter));
    app.take_requests();
    app.on_ui_event(ch('&'));
    let id = DeploymentId("k3x9ta".into());
    assert_eq!(
        app.take_requests(),
        vec![Request::FilterLog {
            id: id.clone(),
            query: "403".into()
        }]
    );
    let matching: Vec<SeqLine> = typical_log()
        .into_iter()
        .filter(|l| l.line.text.contains("403"))
        .collect();
    app.apply(&EngineEvent::LogFiltered {
        id,
        query: "403".into(),
        total: 7_204,
        lines: matching,
        through: 12,
    });
    both(&mut app, "logs_filter");
    app.on_ui_event(ch('w'));
    insta::assert_snapshot!("logs_filter_wrap_80x24", draw(&mut app, 80, 24));
    // The search line starts empty; ↑ brings the last term back.
    app.on_ui_event(ch('/'));
    app.on_ui_event(key(KeyCode::Up));
    assert!(draw(&mut app, 80, 24).contains(" / 403"));
}

#[test]
fn sort_menu_enter_and_the_same_column_again_reverse() {
    let mut app = app_with(typical());
    // ↓ to "name", enter.
    app.on_ui_event(ch('o'));
    app.on_ui_event(key(KeyCode::Down));
    app.on_ui_event(key(KeyCode::Enter));
    assert!(draw(&mut app, 120, 40).contains("by name "));
    app.on_ui_event(ch('o'));
    app.on_ui_event(ch('n'));
    assert!(draw(&mut app, 120, 40).contains("by name ↑"));
    // Esc closes without a change.
    app.on_ui_event(ch('o'));
    app.on_ui_event(key(KeyCode::Esc));
    assert_eq!(app.mode(), Mode::Dashboard);
    assert!(draw(&mut app, 120, 40).contains("by name ↑"));
}

/// The words of the open menu's entries.
fn menu_words(app: &App) -> Vec<String> {
    match &app.overlay {
        Some(Overlay::Menu(m)) => m.entries.iter().map(|e| e.words.clone()).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_action_menu_lists_what_the_rules_allow_and_runs_it_as_the_key_does() {
    let mut app = fed();
    select(&mut app, "k3x9ta");
    app.on_ui_event(ch('a'));
    assert_eq!(app.mode(), Mode::Menu);
    assert_eq!(
        menu_words(&app),
        ["details", "logs", "retry", "destroy"],
        "a FAILED deployment without an address: no shell, no redeploy, no power"
    );
    insta::assert_snapshot!("action_menu_80x24", draw(&mut app, 80, 24));
    // Its key runs it, as on the dashboard.
    app.on_ui_event(ch('t'));
    assert_eq!(
        app.take_requests(),
        vec![Request::Retry(DeploymentId("k3x9ta".into()))]
    );
    assert_eq!(app.mode(), Mode::Dashboard);

    // Enter on an entry: destroy asks first, as `d` does.
    select(&mut app, "a1b2c3");
    app.on_ui_event(ch('a'));
    let words = menu_words(&app);
    assert_eq!(
        words,
        [
            "details",
            "logs",
            "shell",
            "redeploy",
            "roll back",
            "destroy",
            "start",
            "stop",
            "restart"
        ]
    );
    let destroy = words.iter().position(|w| w == "destroy").expect("destroy");
    for _ in 0..destroy {
        app.on_ui_event(key(KeyCode::Down));
    }
    app.on_ui_event(key(KeyCode::Enter));
    assert_eq!(app.mode(), Mode::Confirm);
    app.on_ui_event(ch('n'));

    // An imported guest: forget and power, never destroy.
    let mut imported = deployment("imp001", "guest", Status::Running);
    imported.origin = Origin::Imported;
    imported.vmid = Some(200);
    let mut list = typical();
    list.push(imported);
    app.apply(&EngineEvent::Deployments(list));
    select(&mut app, "imp001");
    app.on_ui_event(ch('a'));
    assert_eq!(
        menu_words(&app),
        ["details", "logs", "start", "stop", "restart", "forget"]
    );
    app.on_ui_event(key(KeyCode::Esc));

    // In flight: only cancel, with the reason.
    select(&mut app, "p7q2zd");
    app.on_ui_event(ch('a'));
    assert_eq!(menu_words(&app), ["details", "logs"]);
    assert!(draw(&mut app, 80, 24).contains("Nothing else may be done"));
    app.on_ui_event(key(KeyCode::Esc));

    // From the details screen too, with that screen's keys.
    select(&mut app, "k3x9ta");
    app.on_ui_event(key(KeyCode::Enter));
    app.take_requests();
    app.on_ui_event(ch('a'));
    assert_eq!(menu_words(&app), ["logs", "retry", "destroy"]);
    app.on_ui_event(ch('l'));
    assert_eq!(app.mode(), Mode::Logs);
}

#[test]
fn snapshot_wizard_onto_an_existing_host() {
    let mut app = fed();
    app.on_ui_event(ch('n'));
    typed(&mut app, "https://git.example.com/team/shop.git");
    app.on_ui_event(key(KeyCode::Enter));
    app.apply(&EngineEvent::RepoChecked {
        repo: "https://git.example.com/team/shop.git".into(),
        git_ref: String::new(),
        result: Ok("answers".into()),
    });
    app.apply(&EngineEvent::Detected {
        repo: "https://git.example.com/team/shop.git".into(),
        git_ref: String::new(),
        result: Ok(Detected {
            framework: "flask".into(),
            reason: "requirements.txt has flask".into(),
        }),
    });
    app.on_ui_event(key(KeyCode::Enter));
    app.on_ui_event(key(KeyCode::Tab));
    app.on_ui_event(key(KeyCode::Right));
    app.on_ui_event(key(KeyCode::Tab));
    typed(&mut app, "10.20.30.40");
    insta::assert_snapshot!("wizard_host_80x24", draw(&mut app, 80, 24));
    assert!(draw(&mut app, 80, 24).contains("enter next page"));
}

#[test]
fn details_list_snapshots_restore_the_selected_one_and_toggle_auto_deploy() {
    use crate::protocol::{SnapshotItem, SnapshotsView};
    let mut app = fed();
    select(&mut app, "k3x9ta");
    app.on_ui_event(key(KeyCode::Enter));
    app.take_requests();
    let id = DeploymentId("k3x9ta".into());
    let item = |name: &str, taken: i64| SnapshotItem {
        name: name.into(),
        taken,
        commit: Some("9f3c2a1".into()),
    };
    app.apply(&EngineEvent::Snapshots(Box::new(SnapshotsView {
        id: id.clone(),
        snapshots: Some(Ok(vec![
            item("by-hand", (NOW - DAY) / 1000),
            item("pd-redeploy-9f3c2a1-20261130221500", (NOW - HOUR) / 1000),
        ])),
        auto_deploy_error: Some(("redeploy job #7 failed: build".into(), NOW - MIN)),
        auto_deploy_failures: 2,
        ..SnapshotsView::default()
    })));
    app.apply(&EngineEvent::Details(Box::new(DetailsSnapshot {
        deployment: typical()[1].clone(),
        history: Vec::new(),
        stages: Vec::new(),
        next_step: None,
        job: None,
    })));
    // Drawn under the fields: auto-deploy with its last failure, the snapshots with the cursor.
    let screen = draw(&mut app, 120, 60);
    for text in [
        "auto-deploy",
        "off (a turns it on)",
        "(2 in a row, the old release still runs): redeploy job #7 failed: build",
        "Snapshots",
        "  by-hand",
        "› pd-redeploy-9f3c2a1-20261130221500",
    ] {
        assert!(screen.contains(text), "no {text:?} in:\n{screen}");
    }
    // The newest is under the cursor; V asks, y restores it.
    app.on_ui_event(ch('V'));
    assert_eq!(app.mode(), Mode::Confirm);
    app.on_ui_event(ch('y'));
    assert_eq!(
        app.take_requests(),
        vec![Request::Restore {
            id: id.clone(),
            snapshot: "pd-redeploy-9f3c2a1-20261130221500".into()
        }]
    );
    // [ moves to the older one.
    app.on_ui_event(ch('['));
    app.on_ui_event(ch('V'));
    app.on_ui_event(ch('y'));
    assert_eq!(
        app.take_requests(),
        vec![Request::Restore {
            id: id.clone(),
            snapshot: "by-hand".into()
        }]
    );
    // A turns auto-deploy on (it is off).
    app.on_ui_event(ch('A'));
    assert_eq!(
        app.take_requests(),
        vec![Request::AutoDeploy { id, on: true }]
    );
}

#[test]
fn a_long_list_is_drawn_from_its_newest_rows_first() {
    let mut app = App::new(Theme::colored());
    let head = typical()[..2].to_vec();
    app.on_ui_event(UiEvent::Engine(EngineEvent::DeploymentsHead {
        list: head,
        total: 10_000,
    }));
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains("Deployments (2 of 10000, reading the rest…)"),
        "{screen}"
    );
    assert!(screen.contains("10000 entries, reading…"), "{screen}");
    assert!(screen.contains("blog") && screen.contains("shop"));
    // The full list replaces it; a late head changes nothing.
    app.on_ui_event(UiEvent::Engine(EngineEvent::Deployments(typical())));
    app.on_ui_event(UiEvent::Engine(EngineEvent::DeploymentsHead {
        list: Vec::new(),
        total: 10_000,
    }));
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("Deployments (4)"), "{screen}");
    assert!(screen.contains("4 deployments · 2 active"), "{screen}");
}
