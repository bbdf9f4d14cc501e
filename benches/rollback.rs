//! Rollback against rebuild: a Next.js app deployed with `--host` onto an sshd test host on a
//! loopback address (this machine plays the host; proxdeck's own supervisor runs the app).
//! Run with `cargo bench --bench rollback` (as root, with what `scripts/test` installs); it
//! prints the table BENCHMARKS.md keeps.
//!
//! The app is deployed, then a new commit is redeployed (fetch, a new release folder, `npm
//! ci`, `next build`, the switch, the health check) and rolled back (the activate script:
//! the switch and the health check, nothing built), alternately, `ROUNDS` times each. The
//! figures are the commands' wall-clock times, the rollback as a ratio of the redeploy, and
//! the restart gap: the longest time the app's port refused connections during a switch
//! (probed every 5 ms from a thread while the rollback runs).
//!
//! `cargo test --all-targets` runs this binary without `--bench`: it then deploys nothing
//! (the integration tests in `tests/integration/releases.rs` prove the behaviour) and says so.

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::git::GitServer;
use support::net::{free_port_any, loopback, wait_http_ok};
use support::proxdeck::{AppGuard, Proxdeck, write_private};
use support::sshd::SshHost;

const ROUNDS: usize = 3;
const LIMIT: Duration = Duration::from_secs(1800);

/// Probes `addr` until `stop`; returns the longest run of refused connections.
fn watch_gap(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let mut down_since: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let up = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
            match (up, down_since) {
                (false, None) => down_since = Some(Instant::now()),
                (true, Some(since)) => {
                    longest = longest.max(since.elapsed());
                    down_since = None;
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(since) = down_since {
            longest = longest.max(since.elapsed());
        }
        longest
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "rollback: deploys only under `cargo bench --bench rollback` (a Next.js app, \
             redeployed and rolled back {ROUNDS} times); nothing to do in a test run"
        );
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-bench-rollback-")
        .tempdir()
        .expect("a work folder");
    let root = work.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data_dir = root.join("data");
    let app_root = root.join("apps");
    let ssh = SshHost::start(loopback(), &data_dir.join("keys/id_ed25519.pub")).expect("sshd");
    let git = GitServer::start(loopback()).expect("git daemon");
    let samples_dir = root.join("samples");
    std::fs::create_dir_all(&samples_dir).expect("samples folder");
    let sample = support::samples::nextjs(&git, "next-bench", &samples_dir).expect("Next.js app");
    let config = root.join("config.toml");
    write_private(
        &config,
        &format!(
            "[guest]\nssh_user = \"root\"\napp_root = \"{}\"\n\n\
             [timeouts]\nssh_secs = 30\nhealth_secs = 300\nprovision_secs = 1500\n",
            app_root.display()
        ),
    )
    .expect("config");
    let proxdeck = Proxdeck::new(config, data_dir, root);
    let name = "nx-bench";
    let _guard = Cleanup {
        app: AppGuard::new(app_root.join(name).join("run/app.pid")),
        user: format!("pd-{name}"),
    };
    let port = free_port_any().expect("a port");
    let url = format!("http://{}:{port}/", ssh.addr());
    let run = |args: &[&str]| {
        let started = Instant::now();
        let done = proxdeck.run(args, LIMIT).expect("proxdeck runs");
        if !done.success() {
            let logs = proxdeck
                .run(&["logs", name], Duration::from_secs(60))
                .map(|l| l.stdout)
                .unwrap_or_default();
            panic!(
                "proxdeck {args:?} failed: {}\n--- logs ---\n{logs}",
                done.describe()
            );
        }
        started.elapsed().as_secs_f64()
    };
    let host = format!("{}:{}", ssh.addr(), ssh.port());
    let port_arg = port.to_string();
    let first = run(&[
        "deploy",
        "--repo",
        &sample.git_url,
        "--framework",
        "nextjs",
        "--host",
        &host,
        "--name",
        name,
        "--port",
        &port_arg,
    ]);
    wait_http_ok(&url, Duration::from_secs(60)).expect("the app answers");
    let addr: SocketAddr = format!("{}:{port}", ssh.addr()).parse().expect("addr");
    let (mut redeploys, mut rollbacks, mut gaps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        sample.change(&git).expect("a new commit");
        redeploys.push(run(&["redeploy", name]));
        let stop = Arc::new(AtomicBool::new(false));
        let gap = watch_gap(addr, stop.clone());
        rollbacks.push(run(&["rollback", name]));
        stop.store(true, Ordering::Relaxed);
        gaps.push(gap.join().expect("the gap probe").as_secs_f64() * 1000.0);
    }
    let (redeploy, rollback) = (median(redeploys.clone()), median(rollbacks.clone()));
    println!("Next.js app on a --host (this machine, proxdeck's supervisor), {ROUNDS} rounds:");
    println!("| operation | median s | runs (s) |");
    println!("|---|---|---|");
    println!("| first deploy | {first:.1} | {first:.1} |");
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| redeploy (new release: npm ci, next build) | {redeploy:.1} | {} |",
        list(&redeploys)
    );
    println!(
        "| rollback (switch to the kept release) | {rollback:.1} | {} |",
        list(&rollbacks)
    );
    println!(
        "rollback / redeploy = {:.3}; restart gap during a rollback (port refusing connections): median {:.0} ms, runs {} ms",
        rollback / redeploy,
        median(gaps.clone()),
        gaps.iter()
            .map(|g| format!("{g:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = proxdeck.run(&["destroy", name, "--yes"], LIMIT);
}

/// The app's processes and user, removed however the bench ends.
struct Cleanup {
    app: AppGuard,
    user: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.app.stop();
        let _ = Command::new("pkill")
            .args(["-KILL", "--ns", &std::process::id().to_string()])
            .args(["--nslist", "pid", "-u", &self.user])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("userdel")
            .arg(&self.user)
            .stderr(Stdio::null())
            .status();
    }
}
