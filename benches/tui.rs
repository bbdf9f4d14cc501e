//! The TUI at scale: how long the first frame and a key take with 10,000 entries against the
//! same with 20, and how much memory the dashboard holds with 10,000 entries and a 1,000,000-line
//! log open. Run with `cargo bench --bench tui`; the figures go to BENCHMARKS.md.
//!
//! Two parts, each side by side with its baseline from the same run:
//! - the `App` alone (in this process): the engine's `Deployments` snapshot applied and the
//!   first frame drawn on a 120×40 `TestBackend`; then one key (`j`) and the frame after it;
//! - end to end, in a fresh child process per case (so its peak RSS is its own): the engine's
//!   `serve` over a real data dir (SQLite file), from the start of `serve` to the first frame
//!   showing the table; then the log pane opened on a 1,000,000-line log, paged up, filtered
//!   over the whole log; the process's peak resident memory (`VmHWM`) at the end.

use proxdeck::config::Config;
use proxdeck::domain::{Deployment, DeploymentId, GuestType, Origin, Status};
use proxdeck::engine::Engine;
use proxdeck::protocol::{EngineEvent, LogLine, LogStream, Request};
use proxdeck::tui::keys::Action;
use proxdeck::tui::theme::Theme;
use proxdeck::tui::{App, UiEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The child process's case: `<entries> <log lines> <data dir>`.
const CHILD: &str = "PROXDECK_BENCH_TUI_CHILD";
const NOW: i64 = 1_768_478_400_000;

fn deployments(n: usize) -> Vec<Deployment> {
    (0..n)
        .map(|i| {
            let imported = i % 2 == 1;
            Deployment {
                id: DeploymentId(format!("d{i:05}")),
                name: format!("app-{i:05}"),
                repo: format!("https://git.example.com/team/app-{i}.git"),
                git_ref: "main".into(),
                framework: ["flask", "django", "nextjs", "laravel"][i % 4].into(),
                guest_type: if i % 3 == 0 {
                    GuestType::Vm
                } else {
                    GuestType::Lxc
                },
                cores: 1,
                memory_mib: 512,
                disk_gib: 4,
                port: 8000,
                node: Some(format!("pve{}", i % 4 + 1)),
                vmid: Some(1000 + i as u32),
                ip: Some(format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)),
                status: if i % 7 == 0 {
                    Status::Stopped
                } else {
                    Status::Running
                },
                origin: if imported {
                    Origin::Imported
                } else {
                    Origin::Terraform
                },
                // Newest first, as the engine sends them.
                created_at: NOW - i as i64 * 60_000,
                updated_at: NOW - i as i64 * 60_000,
                ..Default::default()
            }
        })
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn key(c: char) -> UiEvent {
    UiEvent::Input(crossterm::event::Event::Key(
        crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Char(c),
            crossterm::event::KeyModifiers::NONE,
        ),
    ))
}

/// First frame (snapshot applied, drawn) and one key, medians over `runs`.
fn app_alone(n: usize, runs: usize) -> (Duration, Duration) {
    let list = deployments(n);
    let mut first = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..runs {
        let mut terminal = Terminal::new(TestBackend::new(120, 40)).expect("test terminal");
        let mut app = App::new(Theme::colored());
        let event = EngineEvent::Deployments(list.clone());
        let start = Instant::now();
        app.on_ui_event(UiEvent::Engine(event));
        terminal
            .draw(|f| app.render(f, NOW))
            .expect("the first frame");
        first.push(start.elapsed());
        let start = Instant::now();
        app.on_ui_event(key('j'));
        terminal.draw(|f| app.render(f, NOW)).expect("a frame");
        keys.push(start.elapsed());
    }
    (median(first), median(keys))
}

fn main() {
    if let Ok(case) = std::env::var(CHILD) {
        child(&case);
        return;
    }
    // `cargo test --all-targets` runs this binary without `--bench`: a quick smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let (runs, big, log_lines) = if full {
        (15, 10_000, 1_000_000)
    } else {
        (2, 1_000, 20_000)
    };

    println!("App alone, 120×40 TestBackend, median of {runs} runs:");
    let (base_first, base_key) = app_alone(20, runs);
    let (first, key) = app_alone(big, runs);
    println!(
        "  {:>6} entries: first frame {:>7.2} ms   key j + frame {:>6.2} ms   (baseline)",
        20,
        ms(base_first),
        ms(base_key)
    );
    println!(
        "  {big:>6} entries: first frame {:>7.2} ms   key j + frame {:>6.2} ms   ratio {:.2} / {:.2}",
        ms(first),
        ms(key),
        first.as_secs_f64() / base_first.as_secs_f64(),
        key.as_secs_f64() / base_key.as_secs_f64()
    );

    let small_dir = tempfile::tempdir().expect("temp dir");
    let big_dir = tempfile::tempdir().expect("temp dir");
    seed(small_dir.path(), 20, 2_000);
    seed(big_dir.path(), big, log_lines);
    println!("End to end (engine serve + App, a child process each):");
    let base = run_child(20, 2_000, small_dir.path());
    let scaled = run_child(big, log_lines, big_dir.path());
    println!(
        "  {:>6} entries, {:>7}-line log: {base}   (baseline)",
        20, 2_000
    );
    println!("  {big:>6} entries, {log_lines:>7}-line log: {scaled}");
}

/// A data dir with `n` deployments; the newest has a log of `lines` lines.
fn seed(dir: &Path, n: usize, lines: usize) {
    let engine =
        Engine::open(Config::parse("", &Default::default()).expect("config"), dir).expect("engine");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(engine.db.call(move |s| {
        for d in deployments(n) {
            s.insert_deployment(&d)?;
        }
        let id = DeploymentId("d00000".into());
        let mut batch = Vec::with_capacity(10_000);
        for i in 0..lines {
            batch.push(LogLine {
                at: NOW,
                stream: LogStream::Stdout,
                stage: None,
                text: if i % 10 == 0 {
                    format!("step {i}: warning: something to look at")
                } else {
                    format!("step {i}: compiling module number {i} of the application")
                },
            });
            if batch.len() == 10_000 {
                s.append_logs(&id, &batch)?;
                batch.clear();
            }
        }
        s.append_logs(&id, &batch)
    }))
    .expect("seeded");
}

fn run_child(n: usize, lines: usize, dir: &Path) -> String {
    let exe = std::env::current_exe().expect("this bench's path");
    let out = Command::new(exe)
        .env(CHILD, format!("{n} {lines} {}", dir.display()))
        .output()
        .expect("the child bench");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Peak resident memory of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn child(case: &str) {
    let mut parts = case.splitn(3, ' ');
    let n: usize = parts.next().and_then(|p| p.parse().ok()).expect("entries");
    let _lines: usize = parts.next().and_then(|p| p.parse().ok()).expect("lines");
    let dir = parts.next().expect("data dir").to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let start = Instant::now();
    let engine = Engine::open(
        Config::parse("", &Default::default()).expect("config"),
        Path::new(&dir),
    )
    .expect("engine");
    let opened = start.elapsed();
    let (req_tx, req_rx) = tokio::sync::mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = std::sync::mpsc::channel();
    let serving = engine.clone();
    rt.spawn(async move { serving.serve(req_rx, ev_tx).await });
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).expect("test terminal");
    let mut app = App::new(Theme::colored());
    let next = |app: &mut App| {
        let event = ev_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("an engine event");
        app.on_ui_event(UiEvent::Engine(event));
        for r in app.take_requests() {
            req_tx.send(r).expect("the engine listens");
        }
    };
    // The first frame that shows the table (from the newest rows, for a long list), then the
    // frame with every row.
    while app.deployments().is_empty() {
        next(&mut app);
    }
    terminal.draw(|f| app.render(f, NOW)).expect("a frame");
    let first = start.elapsed();
    while app.deployments().len() < n {
        next(&mut app);
    }
    terminal.draw(|f| app.render(f, NOW)).expect("a frame");
    let full = start.elapsed();

    // The log pane on the newest deployment (the long log), paged up, then filtered.
    let start = Instant::now();
    app.dispatch(Action::Logs);
    for r in app.take_requests() {
        req_tx.send(r).expect("the engine listens");
    }
    while !matches!(app.mode(), proxdeck::tui::keys::Mode::Logs) || app.logs_loading() {
        next(&mut app);
    }
    terminal.draw(|f| app.render(f, NOW)).expect("a frame");
    let log_open = start.elapsed();
    for _ in 0..30 {
        app.dispatch(Action::PageUp);
        for r in app.take_requests() {
            req_tx.send(r).expect("the engine listens");
        }
        while app.logs_loading() {
            next(&mut app);
        }
        terminal.draw(|f| app.render(f, NOW)).expect("a frame");
    }
    // `/warning` then `&`: only the matching lines, counted over the whole log.
    let start = Instant::now();
    app.on_ui_event(key('/'));
    for c in "warning".chars() {
        app.on_ui_event(key(c));
    }
    app.on_ui_event(UiEvent::Input(crossterm::event::Event::Key(
        crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Enter,
            crossterm::event::KeyModifiers::NONE,
        ),
    )));
    app.on_ui_event(key('&'));
    for r in app.take_requests() {
        req_tx.send(r).expect("the engine listens");
    }
    while app.logs_loading() {
        next(&mut app);
    }
    terminal.draw(|f| app.render(f, NOW)).expect("a frame");
    let filtered = start.elapsed();
    let _ = req_tx.send(Request::Shutdown);
    println!(
        "open {:>5.1} ms · first frame {:>6.1} ms · every row {:>6.1} ms · log pane {:>5.1} ms · filter {:>7.1} ms · peak RSS {:>5.1} MiB",
        ms(opened),
        ms(first),
        ms(full),
        ms(log_open),
        ms(filtered),
        peak_rss_mib()
    );
}
