//! Scale benchmarks, each figure beside its baseline from the same run (these machines are
//! noisy; ratios travel better than absolute numbers). Run with `cargo bench --bench scale`;
//! BENCHMARKS.md keeps the figures and this command.
//!
//! - `sync` of 10,000 and 50,000 guests from fakepve (over HTTPS), the built binary in a fresh
//!   data dir, against `sync_baseline.py`: the same guest list fetched and inserted into SQLite
//!   in one transaction by a Python script. In-process, `Store::apply_sync` of the same number
//!   of imports against a plain INSERT of as many rows in one transaction.
//! - Logs of 1,000,000 lines: the database's size against the raw text (one line per line,
//!   with its newline) and against the former layout (a row per line); `proxdeck logs ID`
//!   against `sqlite3` reading the same rows from the former layout; `logs ID -n 20`; the space
//!   `logs --prune` gives back once the deployment is deleted.
//!
//! `cargo test --all-targets` runs this binary without `--bench`: a quick smoke run (a
//! hundredth of the sizes) that still checks every result.

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use proxdeck::domain::{Deployment, DeploymentId, Origin, Stage, Status};
use proxdeck::protocol::{LogLine, LogStream};
use proxdeck::store::{Store, SyncChanges};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::fakepve::FakePve;
use support::parts::{Part, in_ci, skip_without, test_python};
use support::proxdeck::{Proxdeck, write_private};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn row(name: &str, samples: &[Duration]) {
    let m = median(samples.to_vec());
    let best = samples.iter().min().copied().unwrap_or_default();
    println!(
        "  {name:<64} median {:>9.1} ms  best {:>9.1} ms",
        ms(m),
        ms(best)
    );
}

/// The median of the runs' ratios `ours[i] / base[i]`: each pair ran back to back, so a burst
/// of load from elsewhere weighs on both sides of one ratio.
fn ratio(ours: &[Duration], base: &[Duration]) -> f64 {
    let mut r: Vec<f64> = ours
        .iter()
        .zip(base)
        .map(|(o, b)| o.as_secs_f64() / b.as_secs_f64())
        .collect();
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
}

/// Runs `cmd` with its output thrown away; how long it took.
fn timed(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("start a benchmarked command");
    let took = start.elapsed();
    assert!(
        status.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    took
}

fn size_on_disk(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|ext| {
            let mut p = db.as_os_str().to_owned();
            p.push(ext);
            std::fs::metadata(PathBuf::from(p))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------- sync

fn bench_sync(guests: usize, runs: usize) {
    println!("== sync: {guests} guests from fakepve, first sync into an empty data dir");
    let pve = FakePve::start(support::net::loopback()).expect("start fakepve");
    pve.ctl(
        "add_guests",
        json!({"count": guests, "start": 100_000, "nodes": ["pve1", "pve2", "pve3"]}),
    )
    .expect("add guests");
    let work = tempfile::tempdir().expect("tempdir");
    let config = work.path().join("config.toml");
    write_private(
        &config,
        &format!(
            "[proxmox]\nendpoint = \"{}\"\napi_token = \"{}\"\nca_file = \"{}\"\n",
            pve.url(),
            pve.token(),
            pve.ca_file().display()
        ),
    )
    .expect("config");
    let python = test_python().expect("the test python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/sync_baseline.py");
    let (mut base, mut first, mut second) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let db = work.path().join(format!("baseline-{run}.db"));
        base.push(timed(
            Command::new(&python)
                .arg(&script)
                .arg(pve.url())
                .arg(pve.ca_file())
                .arg(&db)
                .env("PVE_TOKEN", pve.token()),
        ));
        let data = work.path().join(format!("data-{run}"));
        let proxdeck = Proxdeck::new(config.clone(), data.clone(), work.path());
        first.push(timed(&mut proxdeck.command(["sync", "--json"])));
        second.push(timed(&mut proxdeck.command(["sync", "--json"])));
        let imported = Store::open(&data.join("proxdeck.db"))
            .expect("store")
            .list()
            .expect("list")
            .len();
        assert_eq!(imported, guests, "every guest imported once");
    }
    row("baseline: Python fetch + INSERT in one transaction", &base);
    row("proxdeck sync (first: every guest imported)", &first);
    row("proxdeck sync (second: nothing changes)", &second);
    println!(
        "  ratio first sync / baseline: {:.2}   second sync / baseline: {:.2}",
        ratio(&first, &base),
        ratio(&second, &base)
    );
}

fn bench_apply(guests: usize, runs: usize) {
    println!("== store: {guests} imports in one transaction (in-process, a file in WAL mode)");
    let imports: Vec<Deployment> = (0..guests)
        .map(|i| Deployment {
            id: DeploymentId::random(),
            name: format!("guest-{i}"),
            vmid: Some(100_000 + i as u32),
            node: Some("pve1".into()),
            origin: Origin::Imported,
            status: Status::Running,
            stage: None,
            cores: 2,
            memory_mib: 1024,
            disk_gib: 8,
            ..Deployment::default()
        })
        .collect();
    let (mut base, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = rusqlite::Connection::open(dir.path().join("plain.db")).expect("db");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
             CREATE TABLE guests (id TEXT PRIMARY KEY, name TEXT, vmid INTEGER, node TEXT, \
             status TEXT, cores INTEGER, memory_mib INTEGER, disk_gib INTEGER)",
        )
        .expect("schema");
        let start = Instant::now();
        conn.execute_batch("BEGIN").expect("begin");
        {
            let mut stmt = conn
                .prepare("INSERT INTO guests VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .expect("prepare");
            for d in &imports {
                stmt.execute(rusqlite::params![
                    d.id.0,
                    d.name,
                    d.vmid,
                    d.node,
                    d.status.as_str(),
                    d.cores,
                    d.memory_mib,
                    d.disk_gib
                ])
                .expect("insert");
            }
        }
        conn.execute_batch("COMMIT").expect("commit");
        base.push(start.elapsed());

        let mut store = Store::open(&dir.path().join("proxdeck.db")).expect("store");
        let changes = SyncChanges {
            imports: imports.clone(),
            ..SyncChanges::default()
        };
        let start = Instant::now();
        let out = store.apply_sync(&changes).expect("apply");
        ours.push(start.elapsed());
        assert_eq!(out.imported.len(), guests);
    }
    row("baseline: INSERT of the rows, one transaction", &base);
    row("Store::apply_sync (entries + history, checks)", &ours);
    println!("  ratio: {:.2}", ratio(&ours, &base));
}

// ---------------------------------------------------------------------------------- logs

/// `seq 1 N`: the log the issue measured (short lines: the per-line cost shows).
fn seq_line(i: usize) -> String {
    (i + 1).to_string()
}

/// Lines like a build's: pip, npm and terraform output with numbers that change.
fn build_line(i: usize) -> String {
    match i % 4 {
        0 => format!(
            "Collecting package-{} (from -r requirements.txt (line {}))",
            i % 977,
            i % 61
        ),
        1 => format!(
            "  Downloading package_{}-{}.{}.{}-py3-none-any.whl ({} kB)",
            i % 977,
            i % 7,
            i % 13,
            i % 5,
            (i * 37) % 900 + 10
        ),
        2 => format!(
            "proxmox_virtual_environment_container.guest: Still creating... [{}m{}s elapsed]",
            i / 60 % 60,
            i % 60
        ),
        _ => format!(
            "npm WARN deprecated dep-{}@{}.{}.0: use another",
            i % 311,
            i % 9,
            i % 4
        ),
    }
}

struct LogFixture {
    data: PathBuf,
    config: PathBuf,
    /// The same rows in the former layout (one row per line), for sqlite3.
    plain_db: PathBuf,
    raw_bytes: u64,
}

/// A data dir whose deployment `build` has `lines` lines appended as the pipeline appends
/// them (batches of 512), then settled; and the same rows in a database of the former layout.
fn log_fixture(dir: &Path, name: &str, lines: usize, text: fn(usize) -> String) -> LogFixture {
    let data = dir.join(format!("data-{name}"));
    let mut store = Store::open(&data.join("proxdeck.db")).expect("store");
    let id = DeploymentId("build1".into());
    store
        .insert_deployment(&Deployment {
            id: id.clone(),
            name: "build".into(),
            ..Deployment::default()
        })
        .expect("insert");
    store
        .transition(&id, Status::Provisioning, Some(Stage::Provision), None)
        .expect("provisioning");
    let plain_db = dir.join(format!("former-{name}.db"));
    let plain = rusqlite::Connection::open(&plain_db).expect("former db");
    plain
        .execute_batch(
            "PRAGMA journal_mode=WAL; \
             CREATE TABLE log_lines (seq INTEGER PRIMARY KEY AUTOINCREMENT, deployment_id TEXT NOT NULL, \
             at INTEGER NOT NULL, stream TEXT NOT NULL, stage TEXT, line TEXT NOT NULL); \
             CREATE INDEX log_lines_deployment ON log_lines(deployment_id, seq); BEGIN",
        )
        .expect("former schema");
    let start_at = proxdeck::store::now_ms();
    let mut raw_bytes = 0u64;
    let mut batch = Vec::with_capacity(512);
    {
        let mut insert = plain
            .prepare("INSERT INTO log_lines (deployment_id, at, stream, stage, line) VALUES ('build1', ?1, ?2, ?3, ?4)")
            .expect("prepare");
        for i in 0..lines {
            let l = LogLine {
                at: start_at + (i / 1000) as i64,
                stream: LogStream::Stdout,
                stage: Some(Stage::Provision),
                text: text(i),
            };
            raw_bytes += l.text.len() as u64 + 1;
            insert
                .execute(rusqlite::params![
                    l.at,
                    l.stream.as_str(),
                    "provision",
                    l.text
                ])
                .expect("insert");
            batch.push(l);
            if batch.len() == 512 || i + 1 == lines {
                store.append_logs(&id, &batch).expect("append");
                batch.clear();
            }
        }
    }
    plain
        .execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("commit");
    store
        .transition(&id, Status::Failed, None, Some("done"))
        .expect("settle");
    store.reclaim_space(false, true).expect("checkpoint");
    let config = dir.join(format!("config-{name}.toml"));
    write_private(&config, "[logs]\nkeep_deleted_days = 0\n").expect("config");
    LogFixture {
        data,
        config,
        plain_db,
        raw_bytes,
    }
}

fn bench_log_size(dir: &Path, lines: usize) {
    println!("== logs: size of a {lines}-line log in the database");
    for (name, text) in [
        ("seq", seq_line as fn(usize) -> String),
        ("build", build_line),
    ] {
        let f = log_fixture(dir, name, lines, text);
        let ours = size_on_disk(&f.data.join("proxdeck.db"));
        let former = size_on_disk(&f.plain_db);
        println!(
            "  {name:<6} raw {:>7.2} MiB  former layout {:>7.2} MiB ({:.2}x raw)  compact {:>7.2} MiB ({:.2}x raw)",
            mib(f.raw_bytes),
            mib(former),
            former as f64 / f.raw_bytes as f64,
            mib(ours),
            ours as f64 / f.raw_bytes as f64
        );
        assert!(
            ours as f64 <= 2.5 * f.raw_bytes as f64 || lines < 100_000,
            "{name}: {ours} bytes for {} raw",
            f.raw_bytes
        );
    }
}

fn bench_log_reads(dir: &Path, lines: usize, runs: usize) {
    println!("== logs: reading a {lines}-line log (`seq`), output thrown away");
    let f = log_fixture(dir, "read", lines, seq_line);
    let proxdeck = Proxdeck::new(f.config.clone(), f.data.clone(), dir);
    let sqlite = |sql: &str| {
        let mut cmd = Command::new("sqlite3");
        cmd.arg(&f.plain_db).arg(sql);
        cmd
    };
    // The reads print the same lines.
    let ours_out = proxdeck
        .command(["logs", "build"])
        .output()
        .expect("proxdeck logs");
    assert_eq!(
        ours_out.stdout.iter().filter(|b| **b == b'\n').count(),
        lines
    );
    let (mut base_all, mut ours_all, mut base_tail, mut ours_tail) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        base_all.push(timed(&mut sqlite(
            "SELECT at, stream, stage, line FROM log_lines WHERE deployment_id = 'build1' ORDER BY seq",
        )));
        ours_all.push(timed(&mut proxdeck.command(["logs", "build"])));
        base_tail.push(timed(&mut sqlite(
            "SELECT at, stream, stage, line FROM log_lines WHERE deployment_id = 'build1' ORDER BY seq DESC LIMIT 20",
        )));
        ours_tail.push(timed(&mut proxdeck.command(["logs", "build", "-n", "20"])));
    }
    row(
        "baseline: sqlite3, every row of the former layout",
        &base_all,
    );
    row("proxdeck logs ID", &ours_all);
    println!("  ratio: {:.2}", ratio(&ours_all, &base_all));
    row(
        "baseline: sqlite3, the last 20 rows of the former layout",
        &base_tail,
    );
    row("proxdeck logs ID -n 20", &ours_tail);
    println!("  ratio: {:.2}", ratio(&ours_tail, &base_tail));
    let tail = proxdeck
        .command(["logs", "build", "-n", "20"])
        .output()
        .expect("tail");
    let expected: Vec<String> = (lines - 20..lines).map(seq_line).collect();
    let got: Vec<String> = String::from_utf8_lossy(&tail.stdout)
        .lines()
        .map(|l| l.get(27..).unwrap_or(l).to_string())
        .collect();
    assert_eq!(got, expected);

    println!("== logs: the deployment deleted, `logs --prune` (keep_deleted_days = 0)");
    let db = f.data.join("proxdeck.db");
    {
        let mut store = Store::open(&db).expect("store");
        let id = DeploymentId("build1".into());
        store
            .transition(&id, Status::Destroying, None, None)
            .expect("destroying");
        store
            .transition(&id, Status::Deleted, None, None)
            .expect("deleted");
    }
    let before = size_on_disk(&db);
    // Opening the data dir already expires it: prune reports and gives the space back.
    let took = timed(&mut proxdeck.command(["logs", "--prune"]));
    let after = size_on_disk(&db);
    println!(
        "  files before {:.2} MiB, after {:.2} MiB ({:.1} ms)",
        mib(before),
        mib(after),
        ms(took)
    );
    assert!(after < before, "{after} of {before} bytes left");
}

fn main() {
    // `cargo bench` passes --bench. `cargo test --all-targets` runs this binary without it:
    // then it is a quick smoke run that still checks every result. Other words select cases
    // by name (`cargo bench --bench scale -- sync`): sync, apply, log-size, log-reads.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let wanted =
        |case: &str| filters.is_empty() || filters.iter().any(|f| case.contains(f.as_str()));
    let scale = if full { 1 } else { 100 };
    if wanted("sync") && !skip_without("benches/scale.rs", &[Part::Fakepve]) {
        bench_sync(10_000 / scale, if full { 9 } else { 1 });
        bench_sync(50_000 / scale, if full { 5 } else { 1 });
    }
    if wanted("apply") {
        bench_apply(10_000 / scale, if full { 5 } else { 1 });
        bench_apply(50_000 / scale, if full { 3 } else { 1 });
    }
    let dir = tempfile::tempdir().expect("tempdir");
    if wanted("log-size") {
        bench_log_size(dir.path(), 1_000_000 / scale);
    }
    if !wanted("log-reads") {
        return;
    }
    let sqlite3 = Command::new("sqlite3")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if sqlite3 {
        bench_log_reads(dir.path(), 1_000_000 / scale, if full { 7 } else { 1 });
    } else if in_ci() {
        panic!("benches/scale.rs: sqlite3 is missing under CI=true: scripts/test installs it");
    } else {
        eprintln!("SKIPPED the log reads: sqlite3 is missing (apt-get install sqlite3)");
    }
}
