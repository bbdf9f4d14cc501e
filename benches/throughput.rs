//! Throughput benchmarks for the paths every deployment's log goes through: the child-process
//! runner (terraform, git) and the store's log writer. Run with `cargo bench --bench throughput`;
//! figures and the command that gave them are kept in BENCHMARKS.md.
//!
//! A plain harness (no extra crate): each case runs a few times and reports the best and the
//! median, in lines per second, and as a ratio against a baseline measured in the same run
//! (`cat` of the same lines for the runner; one transaction per line for the store), because
//! these machines are noisy and ratios travel better than absolute numbers.

use proxdeck::domain::{Deployment, DeploymentId};
use proxdeck::engine::process::{self, ProcessSpec};
use proxdeck::protocol::{LogLine, LogStream};
use proxdeck::store::Store;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

const RUNS: usize = 5;

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

fn report(name: &str, lines: usize, samples: Vec<Duration>) -> f64 {
    let (best, median) = stats(samples);
    let rate = lines as f64 / median.as_secs_f64();
    println!(
        "{name:<48} best {:>8.1} ms  median {:>8.1} ms  {:>12.0} lines/s",
        best.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        rate
    );
    rate
}

async fn run_process(lines: usize) -> usize {
    let script = format!("seq 1 {lines} | sed 's/^/terraform_data.container: Still creating... /'");
    let spec = ProcessSpec::new("bash", &["-c", &script]);
    let (tx, mut rx) = mpsc::unbounded_channel::<process::Output>();
    let (_c, cancel) = watch::channel(false);
    let counter = tokio::spawn(async move {
        let mut n = 0;
        while let Some(o) = rx.recv().await {
            n += o.lines.len();
        }
        n
    });
    let status = process::run(&spec, tx, cancel).await.expect("bash runs");
    assert!(status.success());
    counter.await.expect("counter")
}

fn bench_process(rt: &tokio::runtime::Runtime, scale: usize) {
    let n = 200_000 / scale;
    println!("== process runner: {n} lines from a child process");
    let mut baseline = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = std::process::Command::new("bash")
            .args([
                "-c",
                &format!("seq 1 {n} | sed 's/^/terraform_data.container: Still creating... /'"),
            ])
            .output()
            .expect("bash runs");
        assert!(out.status.success());
        baseline.push(start.elapsed());
    }
    let base = report("baseline: std::process output() (one buffer)", n, baseline);
    let mut ours = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let arrived = rt.block_on(run_process(n));
        assert_eq!(arrived, n, "every line arrives");
        ours.push(start.elapsed());
    }
    let rate = report("process::run, batched lines over a channel", n, ours);
    println!("ratio process::run / baseline: {:.2}", rate / base);
}

fn sample_lines(count: usize) -> Vec<LogLine> {
    (0..count)
        .map(|i| LogLine {
            at: i as i64,
            stream: LogStream::Stdout,
            stage: None,
            text: format!(
                "terraform_data.container (local-exec): line {i} of the provisioning output"
            ),
        })
        .collect()
}

fn bench_store(scale: usize) {
    let n: usize = 20_000 / scale;
    println!("== store: appending {n} log lines to a SQLite file (WAL)");
    let lines = sample_lines(n);
    let mut one_by_one = Vec::new();
    let mut batched = Vec::new();
    for run in 0..RUNS {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("proxdeck.db")).expect("store");
        let d = Deployment {
            id: DeploymentId(format!("bench{run}")),
            name: format!("bench-{run}"),
            ..Deployment::default()
        };
        store.insert_deployment(&d).expect("insert");
        let start = Instant::now();
        for l in &lines {
            store
                .append_logs(&d.id, std::slice::from_ref(l))
                .expect("append");
        }
        one_by_one.push(start.elapsed());
        let start = Instant::now();
        for chunk in lines.chunks(512) {
            store.append_logs(&d.id, chunk).expect("append");
        }
        batched.push(start.elapsed());
    }
    let base = report("baseline: one transaction per line", n, one_by_one);
    let rate = report("append_logs, batches of 512 (one read chunk)", n, batched);
    println!("ratio batched / per-line: {:.1}", rate / base);
}

fn main() {
    // `cargo bench` passes --bench. `cargo test --all-targets` runs this binary without it:
    // then it is a quick smoke run (a hundredth of the sizes) that still checks every line
    // arrives.
    let scale = if std::env::args().any(|a| a == "--bench") {
        1
    } else {
        100
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench_process(&rt, scale);
    bench_store(scale);
}
