//! How soon a line the worker writes is seen by the front ends that follow the job: the CLI
//! (`engine::ops::follow`, as `proxdeck deploy` and `logs -f` use it) and the TUI (the engine's
//! `serve`, which sends the open log's new lines as `LogPage` events). Run with
//! `cargo bench --bench follow`; the figures go to BENCHMARKS.md.
//!
//! Three separate connections to one database file, as three processes have: the "worker"
//! appends lines through a `Reporter` at irregular intervals and notes when each commit
//! returned; the CLI follower and the TUI's serve each note when they first hold the line.
//! The latency of a line is the difference. Reported: median, 90th percentile and maximum,
//! against the 100 ms target.

use proxdeck::config::Config;
use proxdeck::domain::{Deployment, DeploymentId, Op};
use proxdeck::engine::Engine;
use proxdeck::engine::ops;
use proxdeck::engine::report::{Redactor, Reporter};
use proxdeck::protocol::{EngineEvent, LogPageKind, LogStream, Request};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Lines written under `cargo bench`; `cargo test --all-targets` runs this binary without
/// `--bench`, as a quick smoke run of a tenth of them that still checks every line is seen.
const LINES: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let median = percentile(&samples, 0.5);
    println!(
        "{name:<44} lines {:>4}  median {:>6.1} ms  p90 {:>6.1} ms  max {:>6.1} ms",
        samples.len(),
        median.as_secs_f64() * 1e3,
        percentile(&samples, 0.9).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
    median
}

fn main() {
    let lines = if std::env::args().any(|a| a == "--bench") {
        LINES
    } else {
        LINES / 10
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(lines));
}

async fn run(lines: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::parse("", &Default::default()).expect("config");
    let open = || Engine::open(config.clone(), dir.path()).expect("engine");
    let (worker, cli, tui) = (open(), open(), open());
    let id = DeploymentId("bench1".into());
    let d = Deployment {
        id: id.clone(),
        name: "bench".into(),
        ..Deployment::default()
    };
    let job = worker
        .db
        .call(move |s| {
            s.insert_deployment(&d)?;
            let j = s.enqueue(
                &Op::Retry {
                    changes: Default::default(),
                },
                Some(&d.id),
                "bench",
            )?;
            s.claim_next(1)?;
            Ok(j)
        })
        .await
        .expect("a running job");

    // When each line (by its text) was committed, and when each front end first had it.
    let written: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen_cli: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen_tui: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();

    // The CLI's follower.
    let follower = {
        let seen = seen_cli.clone();
        let cli = cli.clone();
        tokio::spawn(async move {
            let (_keep, mut stop) = watch::channel(false);
            ops::follow(
                &cli,
                job.id,
                job.log_from,
                |page| {
                    let now = Instant::now();
                    let mut seen = seen.lock().unwrap();
                    for (_, l) in page {
                        seen.entry(l.text.clone()).or_insert(now);
                    }
                    true
                },
                &mut stop,
            )
            .await
            .expect("follow")
        })
    };

    // The TUI's engine side, with the log open.
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = std::sync::mpsc::channel::<EngineEvent>();
    let serving = {
        let tui = tui.clone();
        tokio::spawn(async move { tui.serve(req_rx, ev_tx).await })
    };
    req_tx
        .send(Request::OpenLog(id.clone()))
        .expect("serve runs");
    let tui_reader = {
        let seen = seen_tui.clone();
        std::thread::spawn(move || {
            while let Ok(ev) = ev_rx.recv() {
                if let EngineEvent::LogPage {
                    kind: LogPageKind::Append,
                    lines,
                    ..
                } = ev
                {
                    let now = Instant::now();
                    let mut seen = seen.lock().unwrap();
                    for l in lines {
                        seen.entry(l.line.text).or_insert(now);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The worker's side: one line at a time, at irregular intervals (7 to 97 ms).
    let (events, _nobody) = mpsc::unbounded_channel();
    let reporter = Reporter::new(id.clone(), worker.db.clone(), events, Redactor::default());
    for i in 0..lines {
        let text = format!("line {i}");
        reporter
            .lines(LogStream::Stdout, vec![text.clone()])
            .await
            .expect("stored");
        written.lock().unwrap().insert(text, Instant::now());
        tokio::time::sleep(Duration::from_millis(7 + (i as u64 * 37) % 91)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker
        .db
        .call(move |s| {
            s.finish_job(
                job.id,
                proxdeck::domain::JobState::Succeeded,
                &Default::default(),
            )
        })
        .await
        .expect("job ends");
    follower.await.expect("follower ends");
    req_tx.send(Request::Shutdown).expect("serve runs");
    let _ = serving.await;
    let _ = tui_reader.join();

    let latencies = |seen: &Arc<Mutex<HashMap<String, Instant>>>| -> Vec<Duration> {
        let written = written.lock().unwrap();
        let seen = seen.lock().unwrap();
        written
            .iter()
            .map(|(text, at)| {
                seen.get(text)
                    .map(|s| s.saturating_duration_since(*at))
                    .unwrap_or_else(|| panic!("{text} was never seen"))
            })
            .collect()
    };
    println!("== a line written by the worker, seen by a follower ({lines} lines)");
    let cli_median = summary("CLI (ops::follow, deploy / logs -f)", latencies(&seen_cli));
    let tui_median = summary("TUI (serve, the open log pane)", latencies(&seen_tui));
    for (who, median) in [("CLI", cli_median), ("TUI", tui_median)] {
        println!(
            "{who}: median {:.1} ms is {:.2} of the 100 ms target",
            median.as_secs_f64() * 1e3,
            median.as_secs_f64() / 0.1
        );
    }
}
