//! Scale and retention through the built binary: `sync` of 100,000 guests from fakepve (each
//! imported once, with its own id; a second sync changes nothing), a sync where the database
//! refuses one row (reported, the rest imported), `logs -n`/`--since` on a deployment log
//! that spans compressed batches and plain rows, and the retention of deleted deployments'
//! logs (automatic, and `logs --prune` giving the space back).

use crate::support::fakepve::FakePve;
use crate::support::net::loopback;
use crate::support::parts::{Part, skip_without};
use crate::support::process::Finished;
use crate::support::proxdeck::{Proxdeck, write_private};
use proxdeck::domain::{Deployment, DeploymentId, Stage, Status};
use proxdeck::protocol::{LogLine, LogStream};
use proxdeck::store::Store;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

const QUICK: Duration = Duration::from_secs(120);
/// A sync of 100,000 guests in a debug build, fakepve answering in Python.
const LONG: Duration = Duration::from_secs(600);

fn json_of(done: &Finished, what: &str) -> Value {
    assert!(done.success(), "{what}: {}", done.describe());
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e})\n{}", done.describe()))
}

fn pve_config(pve: &FakePve) -> String {
    format!(
        "[proxmox]\nendpoint = \"{}\"\napi_token = \"{}\"\nca_file = \"{}\"\n",
        pve.url(),
        pve.token(),
        pve.ca_file().display()
    )
}

fn entries(data: &Path) -> Vec<Deployment> {
    Store::open(&data.join("proxdeck.db"))
        .unwrap()
        .list()
        .unwrap()
}

#[test]
fn sync_imports_a_hundred_thousand_guests_each_once_with_its_own_id() {
    if skip_without(
        "sync_imports_a_hundred_thousand_guests_each_once_with_its_own_id",
        &[Part::Fakepve],
    ) {
        return;
    }
    const GUESTS: usize = 100_000;
    let work = tempfile::Builder::new()
        .prefix("proxdeck-scale-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let pve = FakePve::start(loopback()).expect("start fakepve");
    pve.ctl(
        "add_guests",
        json!({"count": GUESTS, "start": 100_000, "nodes": ["pve1", "pve2", "pve3"]}),
    )
    .unwrap();
    let config = root.join("config.toml");
    write_private(&config, &pve_config(&pve)).unwrap();
    let proxdeck = Proxdeck::new(config, root.join("data"), root);

    let first = json_of(&proxdeck.run(&["sync", "--json"], LONG).unwrap(), "sync");
    assert_eq!(first["guests"], GUESTS);
    assert_eq!(first["imported"].as_array().unwrap().len(), GUESTS);
    assert!(
        first["rejected"].as_array().unwrap().is_empty(),
        "{}",
        first["rejected"]
    );

    let list = entries(&root.join("data"));
    assert_eq!(list.len(), GUESTS);
    let ids: HashSet<&str> = list.iter().map(|d| d.id.0.as_str()).collect();
    assert_eq!(ids.len(), GUESTS, "every entry has its own id");
    let vmids: HashSet<u32> = list.iter().filter_map(|d| d.vmid).collect();
    assert_eq!(vmids.len(), GUESTS, "every guest is imported once");
    for d in &list {
        assert_eq!(d.id.0.len(), DeploymentId::LEN, "{}", d.id);
        assert!(
            d.id.0.bytes().all(|b| DeploymentId::ALPHABET.contains(&b)),
            "{}",
            d.id
        );
    }
    // Every id finds its entry, as the commands resolve them.
    let store = Store::open(&root.join("data/proxdeck.db")).unwrap();
    for d in list.iter().step_by(997) {
        assert_eq!(store.find(&d.id.0).unwrap().vmid, d.vmid);
    }
    drop(store);

    let second = json_of(
        &proxdeck.run(&["sync", "--json"], LONG).unwrap(),
        "second sync",
    );
    assert!(second["imported"].as_array().unwrap().is_empty());
    assert!(second["updated"].as_array().unwrap().is_empty());
    assert_eq!(second["unchanged"], GUESTS);
}

#[test]
fn one_refused_row_does_not_stop_a_sync() {
    if skip_without("one_refused_row_does_not_stop_a_sync", &[Part::Fakepve]) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-badrow-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let pve = FakePve::start(loopback()).expect("start fakepve");
    pve.ctl("add_guests", json!({"count": 300, "start": 2000}))
        .unwrap();
    let config = root.join("config.toml");
    write_private(&config, &pve_config(&pve)).unwrap();
    let proxdeck = Proxdeck::new(config, root.join("data"), root);
    // The database exists after any command; then it refuses one guest's row, as it would a
    // broken constraint.
    assert!(proxdeck.run(&["list"], QUICK).unwrap().success());
    let db = rusqlite::Connection::open(root.join("data/proxdeck.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON deployments WHEN NEW.vmid = 2150 \
         BEGIN SELECT RAISE(ABORT, 'vmid 2150 refused by the test'); END;",
    )
    .unwrap();

    let done = proxdeck.run(&["sync", "--json"], QUICK).unwrap();
    let report = json_of(&done, "sync");
    assert_eq!(
        report["imported"].as_array().unwrap().len(),
        299,
        "{report}"
    );
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{report}");
    assert_eq!(rejected[0]["vmid"], 2150);
    assert_eq!(rejected[0]["name"], "guest-2150");
    assert!(
        rejected[0]["changes"][0]
            .as_str()
            .unwrap()
            .contains("vmid 2150 refused by the test"),
        "{rejected:?}"
    );
    assert!(
        report["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("1 rows could not be read or recorded")),
        "{report}"
    );
    assert_eq!(entries(&root.join("data")).len(), 299);

    // The table view says so too; once the row is accepted, the next sync imports it.
    db.execute_batch("DROP TRIGGER refuse").unwrap();
    let again = proxdeck.run(&["sync"], QUICK).unwrap();
    assert!(again.success(), "{}", again.describe());
    assert!(again.stdout.contains("1 imported"), "{}", again.stdout);
    assert_eq!(entries(&root.join("data")).len(), 300);
}

/// A data dir with one deployment whose log has `old` lines two hours ago and `recent` lines
/// now, written through the store as the pipeline writes them (in batches).
fn deployment_with_log(data: &Path, name: &str, old: usize, recent: usize) -> Vec<LogLine> {
    let mut store = Store::open(&data.join("proxdeck.db")).unwrap();
    let d = Deployment {
        id: DeploymentId(name.chars().take(6).collect()),
        name: name.into(),
        repo: "https://example.invalid/app.git".into(),
        framework: "flask".into(),
        ..Deployment::default()
    };
    store.insert_deployment(&d).unwrap();
    let now = proxdeck::store::now_ms();
    let lines: Vec<LogLine> = (0..old + recent)
        .map(|i| LogLine {
            at: if i < old { now - 2 * 3_600_000 } else { now } + i as i64,
            stream: if i % 5 == 0 {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            },
            stage: Some(Stage::Provision),
            text: format!("{name} line {i}"),
        })
        .collect();
    for batch in lines.chunks(512) {
        store.append_logs(&d.id, batch).unwrap();
    }
    lines
}

/// The texts of `HH:MM:SS stage(15) mark text` lines.
fn text_lines(out: &str) -> Vec<&str> {
    out.lines().map(|l| l.get(27..).unwrap_or(l)).collect()
}

#[test]
fn logs_n_and_since_read_the_end_and_the_recent_part() {
    let work = tempfile::Builder::new()
        .prefix("proxdeck-logs-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let data = root.join("data");
    // Over two full batches and a plain rest.
    let lines = deployment_with_log(&data, "buildlog", 6000, 3000);
    let config = root.join("config.toml");
    write_private(&config, "").unwrap();
    let proxdeck = Proxdeck::new(config, data, root);
    let run = |args: &[&str]| {
        let done = proxdeck.run(args, QUICK).unwrap();
        assert!(done.success(), "{args:?}: {}", done.describe());
        done.stdout
    };
    let texts = |range: std::ops::Range<usize>| -> Vec<String> {
        lines[range].iter().map(|l| l.text.clone()).collect()
    };

    let all = run(&["logs", "buildlog"]);
    assert_eq!(text_lines(&all), texts(0..9000));
    // The marks and the stage, as the rest of the CLI prints them.
    assert!(
        all.lines()
            .next()
            .unwrap()
            .contains("provision       ! buildlog line 0")
    );

    let last = run(&["logs", "buildlog", "-n", "20"]);
    assert_eq!(text_lines(&last), texts(8980..9000));
    let whole = run(&["logs", "buildlog", "-n", "100000"]);
    assert_eq!(text_lines(&whole).len(), 9000);

    let recent = run(&["logs", "buildlog", "--since", "30m"]);
    assert_eq!(text_lines(&recent), texts(6000..9000));
    let recent_end = run(&["logs", "buildlog", "--since", "30m", "-n", "5"]);
    assert_eq!(text_lines(&recent_end), texts(8995..9000));
    let everything = run(&["logs", "buildlog", "--since", "1d"]);
    assert_eq!(text_lines(&everything).len(), 9000);
    let future = chrono::Local::now() + chrono::Duration::hours(1);
    let none = run(&[
        "logs",
        "buildlog",
        "--since",
        &future.format("%Y-%m-%d %H:%M").to_string(),
    ]);
    assert_eq!(none, "");

    let json = run(&["logs", "buildlog", "-n", "3", "--json"]);
    let parsed: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed.len(), 3);
    assert_eq!(parsed[2]["line"], "buildlog line 8999");
    assert_eq!(parsed[2]["stage"], "provision");
    assert_eq!(parsed[0]["stream"], "out", "{json}");

    // Bad input names the flag and the forms it takes.
    let bad = proxdeck
        .run(&["logs", "buildlog", "--since", "yesterday"], QUICK)
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", bad.describe());
    assert!(
        bad.stderr.contains("--since") && bad.stderr.contains("90s"),
        "{}",
        bad.stderr
    );
    let no_id = proxdeck.run(&["logs"], QUICK).unwrap();
    assert_eq!(no_id.status.code(), Some(2), "{}", no_id.describe());
}

#[test]
fn deleted_deployments_logs_expire_and_prune_gives_the_space_back() {
    let work = tempfile::Builder::new()
        .prefix("proxdeck-retention-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let data = root.join("data");
    let db = data.join("proxdeck.db");
    let _ = deployment_with_log(&data, "oldgone", 0, 60_000);
    let _ = deployment_with_log(&data, "newgone", 0, 60_000);
    let _ = deployment_with_log(&data, "running", 0, 2_000);
    {
        let mut store = Store::open(&db).unwrap();
        for id in ["oldgon", "newgon"] {
            let id = DeploymentId(id.into());
            store
                .transition(&id, Status::Destroying, None, None)
                .unwrap();
            store.transition(&id, Status::Deleted, None, None).unwrap();
        }
        // Destroyed three days ago.
        let three_days_ago = proxdeck::store::now_ms() - 3 * 86_400_000;
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(
                "UPDATE deployments SET updated_at = ?1 WHERE id = 'oldgon'",
                [three_days_ago],
            )
            .unwrap();
    }
    let config = root.join("config.toml");
    write_private(&config, "[logs]\nkeep_deleted_days = 2\n").unwrap();
    let proxdeck = Proxdeck::new(config.clone(), data.clone(), root);
    let run = |args: &[&str]| {
        let done = proxdeck.run(args, QUICK).unwrap();
        assert!(done.success(), "{args:?}: {}", done.describe());
        done.stdout
    };

    // Any command opening the data dir applies the retention: three days > two.
    run(&["list"]);
    assert_eq!(run(&["logs", "oldgone"]), "", "expired");
    assert_eq!(
        run(&["logs", "newgone", "-n", "1"]).lines().count(),
        1,
        "kept"
    );
    assert_eq!(run(&["logs", "running"]).lines().count(), 2_000);
    // The record and its history stay.
    assert!(run(&["show", "oldgone"]).contains("DELETED"));

    // With no days to keep, `--prune` removes the other one and gives the space back.
    write_private(&config, "[logs]\nkeep_deleted_days = 0\n").unwrap();
    let size = |p: &Path| {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(p.with_extension("db-wal"))
                .map(|m| m.len())
                .unwrap_or(0)
    };
    let before = size(&db);
    let pruned: Value = serde_json::from_str(&run(&["logs", "--prune", "--json"])).unwrap();
    assert_eq!(pruned["deployments"], 1, "{pruned}");
    assert_eq!(pruned["lines"], 60_000, "{pruned}");
    assert!(
        pruned["bytes_after"].as_u64().unwrap() < pruned["bytes_before"].as_u64().unwrap(),
        "{pruned}"
    );
    let after = size(&db);
    assert!(after < before, "the files took {before} bytes, now {after}");
    assert_eq!(run(&["logs", "newgone"]), "");
    assert_eq!(run(&["logs", "running"]).lines().count(), 2_000);
    let text = run(&["logs", "--prune"]);
    assert!(
        text.contains("removed the logs of 0 deployments deleted more than 0 days ago"),
        "{text}"
    );
}
