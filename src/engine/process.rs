//! Child processes (terraform, git): spawn in their own process group, stream stdout and stderr
//! line by line in batches (one batch per read), keep reading after exit until both pipes
//! close so the last lines are never lost, enforce a timeout, and stop gracefully: SIGINT to
//! the whole group, a grace period, then SIGKILL.
//!
//! This module knows nothing about deployments or logs; callers receive [`Output`] batches on
//! a channel and decide what to do with them. A job that wants to know every process group it
//! started (so that a later proxdeck can stop what a killed worker left running) runs inside
//! [`PROCESS_RECORD`] with a [`ProcessRecord`]: each group is written to it when it starts and
//! struck out when it has ended.

use crate::protocol::LogStream;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

/// Where a job writes the process groups it starts: a file of `PGID START_TIME` lines (the
/// start time, from `/proc`, tells a live group from a later one that reuses the number).
#[derive(Debug, Clone)]
pub struct ProcessRecord {
    pub path: PathBuf,
}

tokio::task_local! {
    /// The record of the job running in this task, if any (set by the worker per job).
    pub static PROCESS_RECORD: ProcessRecord;
}

impl ProcessRecord {
    fn started(&self, pgid: i32) {
        use std::io::Write;
        let line = format!("{pgid} {}\n", start_time(pgid).unwrap_or(0));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(
                "cannot record process group {pgid} in {}: {e}",
                self.path.display()
            );
        }
    }

    fn ended(&self, pgid: i32) {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return;
        };
        let kept: String = text
            .lines()
            .filter(|l| l.split_whitespace().next() != Some(&pgid.to_string()))
            .map(|l| format!("{l}\n"))
            .collect();
        let _ = std::fs::write(&self.path, kept);
    }

    /// The recorded groups that still run (same number and same start time).
    pub fn live_groups(&self) -> Vec<i32> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let pgid: i32 = parts.next()?.parse().ok()?;
                let started: u64 = parts.next()?.parse().ok()?;
                (pgid > 1 && start_time(pgid) == Some(started)).then_some(pgid)
            })
            .collect()
    }

    /// Stops every recorded group that still runs, as a cancelled job would (SIGINT, up to
    /// `grace`, then SIGKILL), and removes the record. Returns how many groups were stopped.
    pub fn stop_leftovers(&self, grace: Duration) -> usize {
        let groups = self.live_groups();
        for g in &groups {
            let _ = killpg(Pid::from_raw(*g), Signal::SIGINT);
        }
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline
            && groups
                .iter()
                .any(|g| killpg(Pid::from_raw(*g), None).is_ok())
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        for g in &groups {
            let _ = killpg(Pid::from_raw(*g), Signal::SIGKILL);
        }
        let _ = std::fs::remove_file(&self.path);
        groups.len()
    }
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`, field 22).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// How long a process gets between SIGINT and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(20);

/// How long the pipes may stay open after the process exited (held by its children).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Added to (or replacing) the inherited environment.
    pub env: Vec<(String, String)>,
    /// Removed from the inherited environment.
    pub env_remove: Vec<String>,
    pub timeout: Duration,
    /// A record of its own the process group is also written to while it runs (terraform:
    /// one per workspace, so a later run finds a leftover one).
    pub record: Option<PathBuf>,
}

impl ProcessSpec {
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> ProcessSpec {
        ProcessSpec {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            timeout: Duration::from_secs(3600),
            record: None,
        }
    }

    /// The command as a user would type it (for messages; holds no secrets: they go in env).
    pub fn display(&self) -> String {
        let mut parts = vec![self.program.display().to_string()];
        parts.extend(self.args.iter().cloned());
        parts.join(" ")
    }
}

/// A batch of complete lines from one stream, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub stream: LogStream,
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {message}")]
    Spawn { program: String, message: String },
    #[error("{program} did not finish within {secs} s and was stopped")]
    TimedOut { program: String, secs: u64 },
    #[error("{program} was cancelled")]
    Cancelled { program: String },
    #[error("{program}: {message}")]
    Io { program: String, message: String },
}

/// Runs the process to its end. Output batches go to `out`; a `true` on `cancel` stops the
/// process gracefully. Returns the exit status once the process has exited AND both pipes are
/// drained.
pub async fn run(
    spec: &ProcessSpec,
    out: mpsc::UnboundedSender<Output>,
    mut cancel: watch::Receiver<bool>,
) -> Result<ExitStatus, ProcessError> {
    let program = spec.program.display().to_string();
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    for k in &spec.env_remove {
        cmd.env_remove(k);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| ProcessError::Spawn {
        program: program.clone(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            "not found on PATH; install it or set its path in the config".into()
        } else {
            e.to_string()
        },
    })?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let record = PROCESS_RECORD.try_with(|r| r.clone()).ok();
    let own = spec.record.clone().map(|path| ProcessRecord { path });
    for r in record.iter().chain(own.iter()) {
        if let Some(g) = pgid {
            r.started(g.as_raw());
        }
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut out_task = tokio::spawn(pump(stdout, LogStream::Stdout, out.clone()));
    let mut err_task = tokio::spawn(pump(stderr, LogStream::Stderr, out));

    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut stopped: Option<ProcessError> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = &mut deadline, if stopped.is_none() => {
                stopped = Some(ProcessError::TimedOut { program: program.clone(), secs: spec.timeout.as_secs() });
                stop_group(pgid, &mut child).await;
            }
            changed = cancel.changed(), if stopped.is_none() => {
                if changed.is_err() {
                    // The controller went away without cancelling: keep running to the end.
                    cancel = watch::channel(false).1;
                    continue;
                }
                if *cancel.borrow() {
                    stopped = Some(ProcessError::Cancelled { program: program.clone() });
                    stop_group(pgid, &mut child).await;
                }
            }
        }
    };
    if stopped.is_some() {
        // What is left of a stopped group (children that ignored SIGINT) goes now.
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
    // Drain to EOF: grandchildren may hold the pipes a little longer, and the last lines
    // matter. A daemon that keeps them open forever is stopped after DRAIN_LIMIT.
    let drained = async {
        let _ = (&mut out_task).await;
        let _ = (&mut err_task).await;
    };
    if tokio::time::timeout(DRAIN_LIMIT, drained).await.is_err() {
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = (&mut out_task).await;
            let _ = (&mut err_task).await;
        })
        .await;
        out_task.abort();
        err_task.abort();
    }
    for r in record.iter().chain(own.iter()) {
        if let Some(g) = pgid {
            r.ended(g.as_raw());
        }
    }
    let status = status.map_err(|e| ProcessError::Io {
        program: program.clone(),
        message: e.to_string(),
    })?;
    match stopped {
        Some(err) => Err(err),
        None => Ok(status),
    }
}

/// SIGINT to the group, wait up to [`GRACE`], then SIGKILL to the group.
async fn stop_group(pgid: Option<Pid>, child: &mut tokio::process::Child) {
    let Some(pgid) = pgid else { return };
    let _ = killpg(pgid, Signal::SIGINT);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}

/// Reads a pipe in chunks, sends the complete lines of each chunk as one batch, and the
/// unterminated remainder at EOF.
async fn pump<R: tokio::io::AsyncRead + Unpin>(
    pipe: Option<R>,
    stream: LogStream,
    out: mpsc::UnboundedSender<Output>,
) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let lines = split_complete_lines(&mut pending);
        if !lines.is_empty() {
            let _ = out.send(Output { stream, lines });
        }
    }
    if !pending.is_empty() {
        let last = String::from_utf8_lossy(&pending)
            .trim_end_matches('\r')
            .to_string();
        let _ = out.send(Output {
            stream,
            lines: vec![last],
        });
    }
}

/// Removes the complete lines from `pending` and returns them (without `\n` / `\r\n`).
pub fn split_complete_lines(pending: &mut Vec<u8>) -> Vec<String> {
    let Some(last_nl) = pending.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    let rest = pending.split_off(last_nl + 1);
    let complete = std::mem::replace(pending, rest);
    complete[..complete.len() - 1]
        .split(|&b| b == b'\n')
        .map(|l| {
            String::from_utf8_lossy(l)
                .trim_end_matches('\r')
                .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_lines_are_split_and_the_rest_kept() {
        let mut p = b"a\r\nb\nc".to_vec();
        assert_eq!(split_complete_lines(&mut p), ["a", "b"]);
        assert_eq!(p, b"c");
        p.extend_from_slice(b"d\n\n");
        assert_eq!(split_complete_lines(&mut p), ["cd", ""]);
        assert!(p.is_empty());
        assert!(split_complete_lines(&mut p).is_empty());
    }

    async fn collect(spec: ProcessSpec) -> (Result<ExitStatus, ProcessError>, Vec<Output>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_c, crx) = watch::channel(false);
        let r = run(&spec, tx, crx).await;
        let mut all = Vec::new();
        while let Ok(o) = rx.try_recv() {
            all.push(o);
        }
        (r, all)
    }

    fn lines_of(all: &[Output], s: LogStream) -> Vec<String> {
        all.iter()
            .filter(|o| o.stream == s)
            .flat_map(|o| o.lines.clone())
            .collect()
    }

    #[tokio::test]
    async fn every_line_arrives_in_order_including_the_last_unterminated_one() {
        let spec = ProcessSpec::new(
            "bash",
            &[
                "-c",
                "for i in $(seq 1 20000); do echo line$i; done; echo err >&2; printf tail",
            ],
        );
        let (r, all) = collect(spec).await;
        assert!(r.unwrap().success());
        let out = lines_of(&all, LogStream::Stdout);
        assert_eq!(out.len(), 20001);
        assert_eq!(out[0], "line1");
        assert_eq!(out[19999], "line20000");
        assert_eq!(out[20000], "tail");
        assert_eq!(lines_of(&all, LogStream::Stderr), ["err"]);
    }

    #[tokio::test]
    async fn output_from_a_grandchild_after_exit_is_kept() {
        let spec = ProcessSpec::new("bash", &["-c", "(sleep 0.3; echo late) & echo early"]);
        let (r, all) = collect(spec).await;
        assert!(r.unwrap().success());
        assert_eq!(lines_of(&all, LogStream::Stdout), ["early", "late"]);
    }

    #[tokio::test]
    async fn exit_codes_and_missing_programs() {
        let (r, _) = collect(ProcessSpec::new("bash", &["-c", "exit 3"])).await;
        assert_eq!(r.unwrap().code(), Some(3));
        let (r, _) = collect(ProcessSpec::new("/nonexistent/tool", &[])).await;
        assert!(r.unwrap_err().to_string().contains("not found"));
    }

    #[tokio::test]
    async fn a_timeout_stops_the_whole_group() {
        let mut spec = ProcessSpec::new(
            "bash",
            &["-c", "trap 'echo got-int; exit 130' INT; sleep 30 & wait"],
        );
        spec.timeout = Duration::from_millis(300);
        let (r, all) = collect(spec).await;
        assert!(matches!(r, Err(ProcessError::TimedOut { .. })), "{r:?}");
        assert_eq!(lines_of(&all, LogStream::Stdout), ["got-int"]);
    }

    #[tokio::test]
    async fn cancellation_interrupts() {
        let spec = ProcessSpec::new("bash", &["-c", "echo started; sleep 30"]);
        let (tx, _rx) = mpsc::unbounded_channel();
        let (ctx, crx) = watch::channel(false);
        let handle = tokio::spawn(async move { run(&spec, tx, crx).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        ctx.send(true).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("stops well within the grace period")
            .unwrap();
        assert!(matches!(r, Err(ProcessError::Cancelled { .. })), "{r:?}");
    }
}
