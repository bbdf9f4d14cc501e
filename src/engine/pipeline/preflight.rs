//! Stage `preflight`: fail fast, before any guest exists. The repository answers and the ref
//! exists (`git ls-remote`, run on this machine).

use super::{Ctx, StageResult, fail};
use crate::domain::Stage;
use crate::engine::process::{self, ProcessSpec};
use crate::protocol::LogStream;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub(super) async fn run(cx: &mut Ctx<'_>) -> StageResult<()> {
    check_repo(cx).await
}

/// `git ls-remote`: the repository answers and the ref exists.
async fn check_repo(cx: &mut Ctx<'_>) -> StageResult<()> {
    let d = &cx.d;
    let mut args = vec!["ls-remote", "--", d.repo.as_str()];
    if !d.git_ref.is_empty() {
        args.push(d.git_ref.as_str());
    }
    let mut spec = ProcessSpec::new("git", &args);
    spec.env = vec![
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        (
            "GIT_SSH_COMMAND".into(),
            "ssh -o BatchMode=yes -o ConnectTimeout=20".into(),
        ),
    ];
    spec.timeout = Duration::from_secs(90);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_c, cancel) = watch::channel(false);
    let status = process::run(&spec, tx, cancel)
        .await
        .map_err(|e| fail(Stage::Preflight)(&e))?;
    let mut refs = Vec::new();
    let mut errors = Vec::new();
    while let Ok(o) = rx.try_recv() {
        match o.stream {
            LogStream::Stdout => refs.extend(o.lines),
            _ => errors.extend(o.lines),
        }
    }
    if !status.success() {
        let why: Vec<String> = errors
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect();
        return Err(fail(Stage::Preflight)(&format!(
            "the repository {} cannot be read: {}",
            d.repo,
            why.join(" ")
        )));
    }
    let is_commit = d.git_ref.len() >= 7 && d.git_ref.chars().all(|c| c.is_ascii_hexdigit());
    if !d.git_ref.is_empty() && refs.iter().all(|l| l.trim().is_empty()) && !is_commit {
        return Err(fail(Stage::Preflight)(&format!(
            "the repository {} has no branch or tag {:?}",
            d.repo, d.git_ref
        )));
    }
    let what = if d.git_ref.is_empty() {
        " (default branch)".to_string()
    } else {
        format!("; ref {} found", d.git_ref)
    };
    cx.info(format!("repository {} answers{what}", d.repo))
        .await
}
