//! Details of one deployment: every field, the URL, the commit, auto-deploy (on/off, its last
//! failure), the guest's snapshots (a cursor moved with `[`/`]`, `V` restores the one under
//! it), the stage timeline with durations, the last error with its next step, and the status
//! history.
//!
//! Owns the scroll and the last snapshot the engine sent (`DetailsSnapshot`); asks for a new
//! one when the deployment changes in the list. Durations are computed here from the stage and
//! status history (pure); it must not do I/O.

use super::{Ctx, Intent};
use crate::domain::{Deployment, DeploymentId, Origin, Stage, Status};
use crate::protocol::{DetailsSnapshot, Request, SnapshotsView};
use crate::tui::keys::Action;
use crate::tui::widgets::text::{SPINNER, bar, format_duration, format_time, wrap};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Padding, Paragraph};

#[derive(Debug)]
pub struct DetailsScreen {
    id: DeploymentId,
    snapshot: Option<DetailsSnapshot>,
    /// `updated_at` of the deployment the snapshot was asked for.
    asked_at: i64,
    scroll: usize,
    height: usize,
    /// The guest's snapshots and the auto-deploy state (`LoadSnapshots`).
    snaps: Option<SnapshotsView>,
    /// The snapshot under the cursor.
    cursor: usize,
}

/// One stage run: when it started, how long it took (`None`: still running).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRun {
    pub stage: Stage,
    pub started: i64,
    pub took: Option<i64>,
    /// It ended with the deployment FAILED.
    pub failed: bool,
}

/// The stage runs of a deployment, from its stage starts and status history: a stage ends when
/// the next one starts or a status ends the run (RUNNING, FAILED, STOPPED, DELETED).
pub fn stage_runs(snapshot: &DetailsSnapshot) -> Vec<StageRun> {
    let ends: Vec<(i64, Status)> = snapshot
        .history
        .iter()
        .filter(|h| {
            matches!(
                h.status,
                Status::Running | Status::Failed | Status::Stopped | Status::Deleted
            )
        })
        .map(|h| (h.at, h.status))
        .collect();
    let mut runs = Vec::new();
    for (i, (stage, at)) in snapshot.stages.iter().enumerate() {
        if *stage == Stage::Done {
            continue;
        }
        let next = snapshot.stages.get(i + 1).map(|(_, t)| *t);
        let end = ends.iter().find(|(t, _)| t >= at).copied();
        let (took, failed) = match (next, end) {
            (Some(n), Some((e, s))) if e <= n => (Some(e - at), s == Status::Failed),
            (Some(n), _) => (Some(n - at), false),
            (None, Some((e, s))) => (Some(e - at), s == Status::Failed),
            (None, None) => (None, false),
        };
        runs.push(StageRun {
            stage: *stage,
            started: *at,
            took,
            failed,
        });
    }
    runs
}

impl DetailsScreen {
    pub fn open(d: &Deployment) -> (DetailsScreen, Vec<Intent>) {
        (
            DetailsScreen {
                id: d.id.clone(),
                snapshot: None,
                asked_at: d.updated_at,
                scroll: 0,
                height: 10,
                snaps: None,
                cursor: 0,
            },
            vec![
                Intent::Send(Request::LoadDetails(d.id.clone())),
                Intent::Send(Request::LoadSnapshots(d.id.clone())),
            ],
        )
    }

    pub fn id(&self) -> &DeploymentId {
        &self.id
    }

    pub fn busy(&self) -> bool {
        self.snapshot.is_none()
    }

    pub fn apply(&mut self, snapshot: &DetailsSnapshot) -> bool {
        if snapshot.deployment.id != self.id {
            return false;
        }
        self.snapshot = Some(snapshot.clone());
        true
    }

    /// The snapshots and auto-deploy state arrived (for this deployment, or not: false).
    pub fn apply_snapshots(&mut self, view: &SnapshotsView) -> bool {
        if view.id != self.id {
            return false;
        }
        let n = match &view.snapshots {
            Some(Ok(list)) => list.len(),
            _ => 0,
        };
        // A new snapshot lands at the end: keep the cursor on the newest when it was there.
        self.cursor = if n == 0 { 0 } else { self.cursor.min(n - 1) };
        if self.snaps.is_none() && n > 0 {
            self.cursor = n - 1;
        }
        self.snaps = Some(view.clone());
        true
    }

    /// The snapshot under the cursor, if the guest has any.
    pub fn selected_snapshot(&self) -> Option<String> {
        match self.snaps.as_ref()?.snapshots.as_ref()? {
            Ok(list) => list.get(self.cursor).map(|s| s.name.clone()),
            Err(_) => None,
        }
    }

    /// Whether auto-deploy is on, once known.
    pub fn auto_deploy(&self) -> Option<bool> {
        self.snaps.as_ref().map(|v| v.auto_deploy)
    }

    /// The list changed: ask again when this deployment did.
    pub fn on_list(&mut self, list: &[Deployment], out: &mut Vec<Intent>) {
        if let Some(d) = list.iter().find(|d| d.id == self.id)
            && d.updated_at != self.asked_at
        {
            self.asked_at = d.updated_at;
            out.push(Intent::Send(Request::LoadDetails(self.id.clone())));
            out.push(Intent::Send(Request::LoadSnapshots(self.id.clone())));
        }
    }

    pub fn handle(&mut self, action: Action, out: &mut Vec<Intent>) -> bool {
        match action {
            Action::Back => out.push(Intent::Close),
            Action::Up => self.scroll = self.scroll.saturating_sub(1),
            Action::Down => self.scroll += 1,
            Action::Top => self.scroll = 0,
            Action::Bottom => self.scroll = usize::MAX / 2,
            Action::PageUp => self.scroll = self.scroll.saturating_sub(self.height),
            Action::PageDown => self.scroll += self.height,
            Action::Refresh => {
                out.push(Intent::Send(Request::LoadDetails(self.id.clone())));
                out.push(Intent::Send(Request::LoadSnapshots(self.id.clone())));
            }
            Action::Left => self.cursor = self.cursor.saturating_sub(1),
            Action::Right => {
                if let Some(SnapshotsView {
                    snapshots: Some(Ok(list)),
                    ..
                }) = &self.snaps
                {
                    self.cursor = (self.cursor + 1).min(list.len().saturating_sub(1));
                }
            }
            _ => return false,
        }
        true
    }

    pub fn render(&mut self, frame: &mut Frame, area: Rect, cx: &Ctx) {
        let theme = cx.theme;
        // The list's copy is newer than the snapshot between two answers.
        let live = cx.deployments.iter().find(|d| d.id == self.id);
        let title = live.map_or_else(|| self.id.0.clone(), |d| format!("{} ({})", d.name, d.id));
        let block = Block::bordered()
            .border_style(theme.border())
            .title(Span::styled(format!(" Details: {title} "), theme.title()))
            .padding(Padding::horizontal(1));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        self.height = usize::from(inner.height).max(1);
        let width = usize::from(inner.width);
        let lines = match (&self.snapshot, live) {
            (Some(s), _) => {
                let mut s = s.clone();
                if let Some(d) = live {
                    s.deployment = d.clone();
                }
                let extra = snapshot_lines(self.snaps.as_ref(), self.cursor, cx, width);
                detail_lines(&s, cx, width, extra)
            }
            (None, _) => vec![Line::from(Span::styled(
                format!("{} loading…", SPINNER[cx.spinner % SPINNER.len()]),
                theme.muted(),
            ))],
        };
        let max = lines.len().saturating_sub(self.height);
        self.scroll = self.scroll.min(max);
        frame.render_widget(
            Paragraph::new(lines).scroll((u16::try_from(self.scroll).unwrap_or(u16::MAX), 0)),
            inner,
        );
    }
}

/// Auto-deploy and the snapshots, under the fields.
fn snapshot_lines(
    view: Option<&SnapshotsView>,
    cursor: usize,
    cx: &Ctx,
    width: usize,
) -> Vec<Line<'static>> {
    let theme = cx.theme;
    let Some(v) = view else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    let auto = if v.auto_deploy {
        "on: the worker polls the ref and redeploys new commits (a toggles)"
    } else {
        "off (a turns it on)"
    };
    lines.push(Line::from(vec![
        Span::styled(format!("{:<11} ", "auto-deploy"), theme.table_header()),
        Span::raw(auto),
    ]));
    if let Some((error, at)) = &v.auto_deploy_error {
        let text = format!(
            "last failure {} ({} in a row, the old release still runs): {error}",
            format_time(*at, cx.utc_offset, true),
            v.auto_deploy_failures
        );
        for l in wrap(&text, width.saturating_sub(12).max(8)) {
            lines.push(Line::from(vec![
                Span::raw(format!("{:<11} ", "")),
                Span::styled(l, theme.error()),
            ]));
        }
    }
    let Some(snaps) = &v.snapshots else {
        return lines;
    };
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled("Snapshots", theme.title()),
        Span::styled("  ([ ] select, V restores)", theme.muted()),
    ]));
    if let Some(why) = &v.unavailable {
        for l in wrap(why, width) {
            lines.push(Line::from(Span::styled(l, theme.warning())));
        }
    }
    match snaps {
        Err(e) => {
            for l in wrap(&format!("cannot list them: {e}"), width) {
                lines.push(Line::from(Span::styled(l, theme.error())));
            }
        }
        Ok(list) if list.is_empty() => {
            lines.push(Line::from(Span::styled("none yet", theme.muted())));
        }
        Ok(list) => {
            for (i, s) in list.iter().enumerate() {
                let mark = if i == cursor { "› " } else { "  " };
                let commit: String = s
                    .commit
                    .as_deref()
                    .unwrap_or("-")
                    .chars()
                    .take(10)
                    .collect();
                let text = format!(
                    "{mark}{:<40} {} {commit}",
                    s.name,
                    format_time(s.taken * 1000, cx.utc_offset, true)
                );
                let style = if i == cursor {
                    Style::new().add_modifier(Modifier::REVERSED)
                } else {
                    Style::new()
                };
                lines.push(Line::from(Span::styled(text, style)));
            }
        }
    }
    lines
}

fn detail_lines(
    s: &DetailsSnapshot,
    cx: &Ctx,
    width: usize,
    extra: Vec<Line<'static>>,
) -> Vec<Line<'static>> {
    let theme = cx.theme;
    let d = &s.deployment;
    let label_w = 11;
    let mut lines: Vec<Line> = Vec::new();
    let mut field = |label: &str, value: String, style: Style| {
        let value_w = width.saturating_sub(label_w + 1).max(8);
        for (i, part) in wrap(&value, value_w).into_iter().enumerate() {
            let head = if i == 0 { label } else { "" };
            lines.push(Line::from(vec![
                Span::styled(format!("{head:<label_w$} "), theme.table_header()),
                Span::styled(part, style),
            ]));
        }
    };
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let time = |ms: i64| format_time(ms, cx.utc_offset, true);
    field(
        "status",
        crate::domain::present::status_text(d, s.job.as_ref()),
        theme.status(d.status),
    );
    if let Some(j) = &s.job {
        field(
            "job",
            format!(
                "{} {} (asked by {}; c cancels it)",
                j.id,
                crate::domain::present::job_phrase(j),
                j.requested_by
            ),
            Style::new(),
        );
    }
    field(
        "stage",
        d.stage.map_or("-".into(), |s| s.to_string()),
        Style::new(),
    );
    field("url", dash(&d.url), theme.link());
    if !d.overrides.domains.is_empty() {
        field(
            "domains",
            format!(
                "{} (TLS {}, through Caddy; `proxdeck domains {}` changes them)",
                d.overrides.domains.join(", "),
                d.overrides.tls_mode(),
                d.id
            ),
            Style::new(),
        );
    }
    field("repository", d.repo.clone(), Style::new());
    field(
        "ref",
        if d.git_ref.is_empty() {
            "(the default branch)".into()
        } else {
            d.git_ref.clone()
        },
        Style::new(),
    );
    field("commit", dash(&d.commit), Style::new());
    if let Some(prev) = &d.previous_commit {
        field(
            "previous",
            format!("{prev} (B rolls back to it)"),
            theme.muted(),
        );
    }
    field("framework", d.framework.clone(), Style::new());
    if d.origin == Origin::Host {
        // An app on a host proxdeck did not create: no vmid, node, cores or disk of its own.
        field(
            "host",
            format!(
                "{}, SSH user {}, port {}",
                d.ip.as_deref().unwrap_or("-"),
                d.ssh_user.as_deref().unwrap_or("(config)"),
                d.ssh_port.map_or("(config)".into(), |p| p.to_string())
            ),
            Style::new(),
        );
        field(
            "app",
            format!(
                "service {}, port {}",
                crate::engine::provision::service_name(&d.name),
                d.port
            ),
            Style::new(),
        );
    } else {
        field(
            "guest",
            format!(
                "{} on {}, vmid {}",
                match d.guest_type {
                    crate::domain::GuestType::Lxc => "LXC container",
                    crate::domain::GuestType::Vm => "VM",
                },
                d.node.as_deref().unwrap_or("-"),
                d.vmid.map_or("-".into(), |v| v.to_string())
            ),
            Style::new(),
        );
        field("address", dash(&d.ip), Style::new());
        field(
            "resources",
            format!(
                "{} cores, {} MiB memory, {} GiB disk; app port {}",
                d.cores, d.memory_mib, d.disk_gib, d.port
            ),
            Style::new(),
        );
    }
    field(
        "env",
        if d.env_names.is_empty() {
            "none".into()
        } else {
            format!("{} (values kept secret)", d.env_names.join(", "))
        },
        Style::new(),
    );
    field(
        "origin",
        match d.origin {
            Origin::Terraform => "created by proxdeck with Terraform".into(),
            Origin::Imported => "imported by sync (not a deployment; F forgets it)".into(),
            Origin::Host => "deployed onto an existing host".into(),
        },
        Style::new(),
    );
    if d.ssh_user.is_some() || d.ssh_port.is_some() {
        field(
            "ssh",
            format!(
                "user {}, port {}",
                d.ssh_user.as_deref().unwrap_or("(config)"),
                d.ssh_port.map_or("(config)".into(), |p| p.to_string())
            ),
            Style::new(),
        );
    }
    field("created", time(d.created_at), Style::new());
    field("updated", time(d.updated_at), Style::new());
    if let Some(m) = d.missing_since {
        field(
            "missing",
            format!("since {} (not on the cluster)", time(m)),
            theme.warning(),
        );
    }

    lines.extend(extra);

    if let Some(error) = &d.error
        && d.status == Status::Failed
    {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            "Last error",
            theme.error().add_modifier(Modifier::BOLD),
        )));
        for l in wrap(error, width) {
            lines.push(Line::from(Span::styled(l, theme.error())));
        }
        if let Some(next) = &s.next_step {
            lines.push(Line::from(Span::styled("Next step", theme.table_header())));
            for l in wrap(next, width) {
                lines.push(Line::from(l));
            }
        }
    }

    let runs = stage_runs(s);
    if !runs.is_empty() {
        lines.push(Line::from(""));
        let total: i64 = runs.iter().filter_map(|r| r.took).sum();
        lines.push(Line::from(vec![
            Span::styled("Stage timeline", theme.title()),
            Span::styled(
                format!("  (total {})", format_duration(total)),
                theme.muted(),
            ),
        ]));
        let longest = runs.iter().filter_map(|r| r.took).max().unwrap_or(1).max(1);
        let bar_w = width.saturating_sub(16 + 9 + 10 + 3).min(30);
        for r in &runs {
            let (took, style) = match r.took {
                Some(t) if r.failed => (format!("{} ✗", format_duration(t)), theme.error()),
                Some(t) => (format_duration(t), Style::new()),
                None => (
                    format!("{} running", SPINNER[cx.spinner % SPINNER.len()]),
                    theme.spinner(),
                ),
            };
            let fraction = r.took.map_or(0.0, |t| t as f64 / longest as f64);
            lines.push(Line::from(vec![
                Span::raw(format!("{:<16}", r.stage.as_str())),
                Span::styled(
                    format!("{} ", format_time(r.started, cx.utc_offset, false)),
                    theme.muted(),
                ),
                Span::styled(format!("{took:<10} "), style),
                Span::styled(
                    bar(fraction, bar_w),
                    if r.failed {
                        theme.bar_failed()
                    } else {
                        theme.bar()
                    },
                ),
            ]));
        }
    }

    if !s.history.is_empty() {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled("Status history", theme.title())));
        for h in &s.history {
            let mut spans = vec![
                Span::styled(format!("{} ", time(h.at)), theme.muted()),
                Span::styled(
                    format!("{:<12} ", h.status.as_str()),
                    theme.status(h.status),
                ),
                Span::raw(h.stage.map_or(String::new(), |s| s.to_string())),
            ];
            if let Some(m) = &h.message {
                spans.push(Span::styled(format!("  {m}"), theme.muted()));
            }
            lines.push(Line::from(spans));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::HistoryEntry;

    fn entry(status: Status, at: i64) -> HistoryEntry {
        HistoryEntry {
            status,
            stage: None,
            at,
            message: None,
        }
    }

    #[test]
    fn stage_runs_end_at_the_next_stage_or_the_status_that_ended_them() {
        let s = DetailsSnapshot {
            deployment: Deployment::default(),
            history: vec![
                entry(Status::Pending, 0),
                entry(Status::Provisioning, 10),
                entry(Status::Failed, 400),
                entry(Status::Provisioning, 1_000),
            ],
            stages: vec![
                (Stage::Preflight, 10),
                (Stage::TerraformApply, 100),
                // The retry: preflight again, still running.
                (Stage::Preflight, 1_000),
            ],
            next_step: None,
            job: None,
        };
        let runs = stage_runs(&s);
        assert_eq!(
            runs,
            [
                StageRun {
                    stage: Stage::Preflight,
                    started: 10,
                    took: Some(90),
                    failed: false
                },
                StageRun {
                    stage: Stage::TerraformApply,
                    started: 100,
                    took: Some(300),
                    failed: true
                },
                StageRun {
                    stage: Stage::Preflight,
                    started: 1_000,
                    took: None,
                    failed: false
                },
            ]
        );
    }

    #[test]
    fn a_changed_deployment_is_asked_for_again() {
        let d = Deployment {
            id: DeploymentId("abc123".into()),
            updated_at: 5,
            ..Deployment::default()
        };
        let (mut screen, intents) = DetailsScreen::open(&d);
        assert_eq!(
            intents,
            [
                Intent::Send(Request::LoadDetails(d.id.clone())),
                Intent::Send(Request::LoadSnapshots(d.id.clone()))
            ]
        );
        let mut out = Vec::new();
        screen.on_list(std::slice::from_ref(&d), &mut out);
        assert!(out.is_empty());
        let newer = Deployment {
            updated_at: 6,
            ..d.clone()
        };
        screen.on_list(&[newer], &mut out);
        assert_eq!(
            out,
            [
                Intent::Send(Request::LoadDetails(d.id.clone())),
                Intent::Send(Request::LoadSnapshots(d.id))
            ]
        );
    }
}
