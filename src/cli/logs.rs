//! `proxdeck logs` for a deployment's own log (what the store holds): all of it, the last N
//! lines (`-n`), the lines since a time (`--since`), following its queued or running jobs to
//! their end (`-f`, whichever process started them), and `--prune` (retention and compaction,
//! with the space given back); with `--app`, the app's own log read over SSH. A thin client of
//! the store's log API and `engine::ops::follow`; this module only reads, prints (text or JSON
//! lines) and parses `--since`.

use super::{CliError, LogsArgs, print_json};
use crate::domain::Stage;
use crate::engine::Engine;
use crate::engine::ops;
use crate::protocol::LogStream;
use crate::store::{LineRef, LogFrom, Pruned, now_ms};
use chrono::TimeZone;
use std::io::Write;
use std::ops::ControlFlow;
use tokio::sync::{mpsc, watch};

/// Lines read per page while following.
const PAGE: usize = 5000;

/// `logs ID [-n N] [--since WHEN] [-f]`.
pub(super) async fn deployment_logs(
    engine: &Engine,
    a: &LogsArgs,
    id_or_name: &str,
) -> Result<(), CliError> {
    let key = id_or_name.to_string();
    let d = engine.db.call(move |s| s.find(&key)).await?;
    let (json, since, lines) = (a.json, a.since, a.lines);
    let id = d.id.clone();
    // Printed on the store's thread, straight from the decoded batches: one pass, no copy
    // of the log in memory. The last sequence number printed (0: none), or `None` when the
    // reader went away (e.g. `| head`).
    let last: Option<i64> = engine
        .db
        .call(move |s| {
            let mut p = Printer::new(json);
            let mut last = 0;
            let mut gone = false;
            let mut print = |l: LineRef<'_>| {
                if p.line(&l).is_err() {
                    gone = true;
                    return ControlFlow::Break(());
                }
                last = l.seq;
                ControlFlow::Continue(())
            };
            match lines {
                Some(n) => {
                    for (seq, l) in s.logs_tail_since(&id, since, n as usize)? {
                        let line = LineRef {
                            seq,
                            at: l.at,
                            stream: l.stream,
                            stage: l.stage,
                            text: &l.text,
                        };
                        if print(line).is_break() {
                            break;
                        }
                    }
                }
                None => s.visit_logs(&id, LogFrom::After(0), since, &mut print)?,
            }
            gone |= p.finish().is_err();
            Ok((!gone).then_some(last))
        })
        .await?;
    let Some(last) = last else {
        return Ok(());
    };
    if a.follow {
        follow(engine, &d.id, last, since, json).await?;
    }
    Ok(())
}

/// Prints new lines as they are committed, following every job of the deployment that is
/// queued or running (whichever front end started it), until none is left and its last lines
/// are out. Ctrl-C stops following; the jobs go on in the worker.
async fn follow(
    engine: &Engine,
    id: &crate::domain::DeploymentId,
    mut after: i64,
    since: Option<i64>,
    json: bool,
) -> Result<(), CliError> {
    let (stop_tx, mut stop) = watch::channel(false);
    let stop_on_ctrl_c = tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(true);
    });
    loop {
        let key = id.clone();
        let Some(job) = engine.db.call(move |s| s.active_job_for(&key)).await? else {
            break;
        };
        let mut printed = after;
        let mut gone = false;
        ops::follow(
            engine,
            job.id,
            after,
            |page| {
                if let Some((seq, _)) = page.last() {
                    printed = *seq;
                }
                gone = !print_page(json, page);
                !gone
            },
            &mut stop,
        )
        .await?;
        after = printed;
        if gone || *stop.borrow() {
            stop_on_ctrl_c.abort();
            return Ok(());
        }
    }
    stop_on_ctrl_c.abort();
    // Lines stored after the last job ended (none, normally): print them too.
    let key = id.clone();
    let rest = engine
        .db
        .call(move |s| s.logs_since(&key, since, after, PAGE))
        .await?;
    print_page(json, &rest);
    Ok(())
}

/// Prints lines read from the store; false when the reader went away (e.g. `| head`).
fn print_page(json: bool, page: &[(i64, crate::protocol::LogLine)]) -> bool {
    let mut p = Printer::new(json);
    for (seq, l) in page {
        let line = LineRef {
            seq: *seq,
            at: l.at,
            stream: l.stream,
            stage: l.stage,
            text: &l.text,
        };
        if p.line(&line).is_err() {
            return false;
        }
    }
    p.finish().is_ok()
}

/// `logs --prune`: the logs of deployments deleted longer ago than `[logs]
/// keep_deleted_days` removed, the rest folded into batches, the space given back (an older
/// database file is rebuilt once for that).
pub(super) async fn prune(engine: &Engine, json: bool) -> Result<(), CliError> {
    let keep = engine.config.logs.keep_deleted;
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms().saturating_sub(keep_ms);
    let mut p = engine.db.call(move |s| s.prune_logs(cutoff, true)).await?;
    // Opening the data dir already removed what had expired: count it in.
    p.deployments += engine.expired.deployments;
    p.lines += engine.expired.lines;
    if json {
        return print_json(&p);
    }
    println!("{}", describe(&p, keep.as_secs() / 86_400));
    Ok(())
}

fn describe(p: &Pruned, days: u64) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "removed the logs of {} deployments deleted more than {days} days ago ({} lines); \
         folded {} lines into compact batches; the database went from {:.1} MiB to {:.1} MiB",
        p.deployments,
        p.lines,
        p.folded,
        mib(p.bytes_before),
        mib(p.bytes_after)
    )
}

/// Formats lines as `HH:MM:SS stage mark text` (the same as the rest of the CLI) or as JSON
/// lines, into a buffered stdout.
struct Printer {
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    json: bool,
    /// The second `time` shows (local time), formatted once per second of log.
    second: i64,
    time: String,
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    at: i64,
    line: &'a str,
    stage: Option<Stage>,
    stream: &'static str,
}

impl Printer {
    fn new(json: bool) -> Printer {
        Printer {
            out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock()),
            json,
            second: i64::MIN,
            time: String::new(),
        }
    }

    fn line(&mut self, l: &LineRef<'_>) -> std::io::Result<()> {
        if self.json {
            let j = JsonLine {
                at: l.at,
                line: l.text,
                stage: l.stage,
                stream: l.stream.as_str(),
            };
            serde_json::to_writer(&mut self.out, &j)?;
            return self.out.write_all(b"\n");
        }
        write_text(&mut self.out, l, &mut self.second, &mut self.time)
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// One line as text; `second` and `time` cache the formatted local time.
fn write_text(
    out: &mut impl Write,
    l: &LineRef<'_>,
    second: &mut i64,
    time: &mut String,
) -> std::io::Result<()> {
    let s = l.at.div_euclid(1000);
    if s != *second {
        *second = s;
        *time = chrono::Local
            .timestamp_millis_opt(l.at)
            .single()
            .map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_default();
    }
    let stage = l.stage.map(|s| s.as_str()).unwrap_or("-");
    let mark = match l.stream {
        crate::protocol::LogStream::Stdout => " ",
        crate::protocol::LogStream::Stderr => "!",
        crate::protocol::LogStream::Info => "*",
    };
    writeln!(out, "{time} {stage:<15} {mark} {}", l.text)
}

/// `--since`: a duration back from now (`90s`, `10m`, `2h`, `3d`, `1w`) or a time
/// (`2026-11-30T14:00:00Z`, `2026-11-30 14:00[:SS]` or `2026-11-30` in local time); Unix ms.
pub fn parse_since(s: &str) -> Result<i64, String> {
    parse_since_at(s, chrono::Local::now())
}

fn parse_since_at(s: &str, now: chrono::DateTime<chrono::Local>) -> Result<i64, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "{s:?} is not a duration back from now (90s, 10m, 2h, 3d, 1w) or a time (2026-11-30T14:00:00Z, 2026-11-30 14:00, 2026-11-30)"
        )
    };
    if let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic())
        && let Ok(n) = t[..t.len() - 1].parse::<i64>()
    {
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        return n
            .checked_mul(secs * 1000)
            .filter(|ms| *ms >= 0)
            .map(|ms| now.timestamp_millis().saturating_sub(ms))
            .ok_or_else(bad);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(t.timestamp_millis());
    }
    let local = |n: chrono::NaiveDateTime| {
        chrono::Local
            .from_local_datetime(&n)
            .earliest()
            .map(|t| t.timestamp_millis())
    };
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(t, format) {
            return local(n).ok_or_else(bad);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).and_then(local).ok_or_else(bad);
    }
    Err(bad())
}

/// `logs ID --app [-f]`: the app's own log over SSH; with -f until Ctrl-C.
pub(super) async fn app_logs(engine: &Engine, a: &LogsArgs, id: &str) -> Result<(), CliError> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    let signals = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.store(true, Ordering::Relaxed);
        }
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<crate::engine::process::Output>();
    let json = a.json;
    let printer = tokio::spawn(async move {
        while let Some(o) = rx.recv().await {
            let mut text = String::new();
            for l in &o.lines {
                if json {
                    text.push_str(
                        &serde_json::json!({"stream": o.stream.as_str(), "line": l}).to_string(),
                    );
                } else {
                    text.push_str(l);
                }
                text.push('\n');
            }
            let written = if o.stream == LogStream::Stderr && !json {
                std::io::stderr().write_all(text.as_bytes())
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|_| out.flush())
            };
            if written.is_err() {
                break; // the reader went away (e.g. `| head`)
            }
        }
    });
    let result =
        crate::engine::applogs::app_logs(engine, id, a.lines.unwrap_or(200), a.follow, stop, tx)
            .await;
    let _ = printer.await;
    signals.abort();
    result.map_err(|e| match e {
        crate::engine::applogs::AppLogsError::Store(s) => s.into(),
        other => CliError::failed(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LogLine, LogStream};

    #[test]
    fn since_takes_durations_and_times() {
        let now = chrono::Local
            .with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
            .single()
            .unwrap();
        let ms = now.timestamp_millis();
        assert_eq!(parse_since_at("90s", now), Ok(ms - 90_000));
        assert_eq!(parse_since_at("10m", now), Ok(ms - 600_000));
        assert_eq!(parse_since_at("2h", now), Ok(ms - 7_200_000));
        assert_eq!(parse_since_at("1d", now), Ok(ms - 86_400_000));
        assert_eq!(parse_since_at("1w", now), Ok(ms - 7 * 86_400_000));
        assert_eq!(
            parse_since_at("2026-11-30T10:00:00Z", now),
            Ok(chrono::Utc
                .with_ymd_and_hms(2026, 11, 30, 10, 0, 0)
                .unwrap()
                .timestamp_millis())
        );
        assert_eq!(parse_since_at("2026-11-30 11:00", now), Ok(ms - 3_600_000));
        assert_eq!(
            parse_since_at("2026-11-30 11:30:00", now),
            Ok(ms - 1_800_000)
        );
        assert_eq!(parse_since_at("2026-11-30", now), Ok(ms - 12 * 3_600_000));
        for bad in ["", "10", "10x", "-5m", "yesterday", "2026-13-01"] {
            let e = parse_since_at(bad, now).unwrap_err();
            assert!(e.contains("not a duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn text_lines_look_like_the_rest_of_the_cli() {
        let lines = [
            LogLine {
                at: 1_700_000_000_123,
                stream: LogStream::Stderr,
                stage: Some(Stage::TerraformApply),
                text: "boom".into(),
            },
            LogLine {
                at: 1_700_000_000_999,
                stream: LogStream::Info,
                stage: None,
                text: "--- next ---".into(),
            },
            LogLine {
                at: 1_700_000_001_000,
                stream: LogStream::Stdout,
                stage: Some(Stage::Provision),
                text: "ok".into(),
            },
        ];
        let (mut second, mut time) = (i64::MIN, String::new());
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let r = LineRef {
                seq: i as i64,
                at: l.at,
                stream: l.stream,
                stage: l.stage,
                text: &l.text,
            };
            write_text(&mut out, &r, &mut second, &mut time).unwrap();
        }
        let expected: String = lines
            .iter()
            .map(|l| format!("{}\n", super::super::format_line(l)))
            .collect();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn the_prune_summary_names_what_happened() {
        let p = Pruned {
            deployments: 2,
            lines: 1500,
            folded: 10,
            bytes_before: 64 * 1024 * 1024,
            bytes_after: 3 * 1024 * 1024,
        };
        let text = describe(&p, 30);
        assert!(text.contains("2 deployments deleted more than 30 days ago (1500 lines)"));
        assert!(text.contains("from 64.0 MiB to 3.0 MiB"));
    }
}
