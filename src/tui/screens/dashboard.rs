//! The dashboard: a header with totals, the deployments table, and one line about the selected
//! deployment (its URL, or why it failed).
//!
//! Owns the selection (kept by `DeploymentId`, so a live update that reorders or inserts rows
//! does not move it to another deployment) and the table's scroll offset. The list itself
//! belongs to `App` and is lent for each call. Must not send requests or read the clock: `now`
//! is passed in, so the same state always draws the same screen.

use crate::domain::{Deployment, DeploymentId, Status};
use crate::tui::keys::Action;
use crate::tui::theme::Theme;
use crate::tui::widgets::text::wrap;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Paragraph, Row, Table, TableState};

const HIGHLIGHT_SYMBOL: &str = "› ";
const COLUMN_SPACING: u16 = 1;

#[derive(Debug, Default)]
pub struct DashboardScreen {
    selected: Option<DeploymentId>,
    offset: usize,
}

/// What the dashboard draws from, lent by `App` for one frame.
pub struct DashboardView<'a> {
    pub deployments: &'a [Deployment],
    /// False until the engine's first snapshot arrived ("loading" rather than "empty").
    pub loaded: bool,
    /// Unix milliseconds, the reference for ages.
    pub now_ms: i64,
    pub theme: &'a Theme,
}

impl DashboardScreen {
    pub fn selected_id(&self) -> Option<&DeploymentId> {
        self.selected.as_ref()
    }

    pub fn selected_index(&self, list: &[Deployment]) -> Option<usize> {
        let id = self.selected.as_ref()?;
        list.iter().position(|d| &d.id == id)
    }

    /// Called after the list was replaced. The selection stays on the same deployment while it
    /// exists; if it vanished, the cursor stays at the row it was on (clamped), not at the top.
    pub fn sync(&mut self, previous_index: Option<usize>, list: &[Deployment]) {
        if list.is_empty() {
            self.selected = None;
            return;
        }
        if let Some(id) = &self.selected
            && list.iter().any(|d| &d.id == id)
        {
            return;
        }
        let index = previous_index.unwrap_or(0).min(list.len() - 1);
        self.selected = Some(list[index].id.clone());
    }

    /// Applies a navigation action; returns whether anything changed.
    pub fn handle_action(&mut self, action: Action, list: &[Deployment]) -> bool {
        let Some(last) = list.len().checked_sub(1) else {
            return false;
        };
        let current = self.selected_index(list);
        let target = match action {
            Action::SelectNext => current.map_or(0, |i| (i + 1).min(last)),
            Action::SelectPrev => current.map_or(0, |i| i.saturating_sub(1)),
            Action::SelectFirst => 0,
            Action::SelectLast => last,
            _ => return false,
        };
        if current == Some(target) {
            return false;
        }
        self.selected = Some(list[target].id.clone());
        true
    }

    pub fn render(&mut self, frame: &mut Frame, area: Rect, view: &DashboardView) {
        let selected = self
            .selected_index(view.deployments)
            .map(|i| &view.deployments[i]);
        let detail = selected.map_or_else(Vec::new, |d| detail_lines(d, view, area.width));
        let detail_height = u16::try_from(detail.len()).unwrap_or(1).max(1);
        let [header, table, detail_area] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(detail_height),
        ])
        .areas(area);
        frame.render_widget(header_line(view), header);
        self.render_table(frame, table, view);
        frame.render_widget(Paragraph::new(detail), detail_area);
    }

    fn render_table(&mut self, frame: &mut Frame, area: Rect, view: &DashboardView) {
        let theme = view.theme;
        let block = Block::bordered()
            .border_style(theme.border())
            .title(Span::styled(" Deployments ", theme.title()));

        if view.deployments.is_empty() {
            let message = if view.loaded {
                "No deployments yet. Run `proxdeck deploy <repo>` to create one."
            } else {
                "Loading deployments…"
            };
            let inner = block.inner(area);
            frame.render_widget(block, area);
            let [_, middle, _] = Layout::vertical([
                Constraint::Fill(1),
                Constraint::Length(1),
                Constraint::Fill(1),
            ])
            .areas(inner);
            frame.render_widget(
                Paragraph::new(Span::styled(message, theme.muted())).centered(),
                middle,
            );
            return;
        }

        let symbol_width = u16::try_from(HIGHLIGHT_SYMBOL.chars().count()).unwrap_or(2);
        let columns = fit_columns(area.width.saturating_sub(2 + symbol_width));
        let header =
            Row::new(columns.iter().map(|c| Cell::from(c.title()))).style(theme.table_header());
        let rows = view.deployments.iter().map(|d| {
            let row = Row::new(columns.iter().map(|c| c.cell(d, view)));
            if d.status == Status::Deleted {
                row.style(theme.muted())
            } else {
                row
            }
        });
        let widths = columns.iter().map(|c| c.constraint());
        let table = Table::new(rows, widths)
            .header(header)
            .block(block)
            .column_spacing(COLUMN_SPACING)
            .row_highlight_style(theme.selected())
            .highlight_symbol(HIGHLIGHT_SYMBOL)
            .highlight_spacing(HighlightSpacing::Always);
        let mut state = TableState::new()
            .with_offset(self.offset)
            .with_selected(self.selected_index(view.deployments));
        frame.render_stateful_widget(table, area, &mut state);
        self.offset = state.offset();
    }
}

/// Totals for the header. "Success" counts deployments that reached RUNNING (or were stopped
/// after it) against those that FAILED; in-flight, pending and deleted ones have no verdict here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub total: usize,
    pub active: usize,
    pub succeeded: usize,
    pub failed: usize,
}

impl Stats {
    pub fn of(list: &[Deployment]) -> Stats {
        let count = |f: fn(Status) -> bool| list.iter().filter(|d| f(d.status)).count();
        Stats {
            total: list.len(),
            active: count(Status::is_active),
            succeeded: count(|s| matches!(s, Status::Running | Status::Stopped)),
            failed: count(|s| s == Status::Failed),
        }
    }

    /// Whole percent, or `None` when nothing has finished yet.
    pub fn success_percent(&self) -> Option<usize> {
        let decided = self.succeeded + self.failed;
        (decided > 0).then(|| (self.succeeded * 100 + decided / 2) / decided)
    }
}

fn header_line<'a>(view: &DashboardView) -> Line<'a> {
    let theme = view.theme;
    let mut spans = vec![Span::styled(" proxdeck", theme.title()), Span::raw("  ")];
    if view.loaded {
        let stats = Stats::of(view.deployments);
        let rate = stats
            .success_percent()
            .map_or_else(|| "–".to_string(), |p| format!("{p}%"));
        let plural = if stats.total == 1 { "" } else { "s" };
        spans.push(Span::raw(format!("{} deployment{plural}", stats.total)));
        spans.push(Span::styled(" · ", theme.muted()));
        spans.push(Span::raw(format!("{} active", stats.active)));
        spans.push(Span::styled(" · ", theme.muted()));
        spans.push(Span::raw(format!("success {rate}")));
    } else {
        spans.push(Span::styled("connecting…", theme.muted()));
    }
    Line::from(spans)
}

/// A failure's message gets this many lines under the table at most; the rest is in the log.
const MAX_ERROR_LINES: usize = 3;

/// About the selected deployment: one line saying where it answers or what it is doing, and
/// for a failure, the error (cause and next step), wrapped.
fn detail_lines<'a>(d: &'a Deployment, view: &DashboardView, width: u16) -> Vec<Line<'a>> {
    let theme = view.theme;
    let mut first = vec![
        Span::raw(" "),
        Span::styled(d.name.as_str(), Style::new().add_modifier(Modifier::BOLD)),
        Span::styled(format!(" ({})", d.id), theme.muted()),
        Span::styled(
            format!(
                " · updated {} ago · ",
                format_age(view.now_ms - d.updated_at)
            ),
            theme.muted(),
        ),
    ];
    let what = match (d.status, d.stage) {
        (Status::Running, _) if d.url.is_some() => None,
        (Status::Failed, Some(stage)) => Some(format!("FAILED at {stage}")),
        (status, Some(stage)) if status.is_in_flight() => Some(format!("{status}: {stage}")),
        (status, _) => Some(status.to_string()),
    };
    match (what, d.url.as_deref()) {
        (Some(what), _) => first.push(Span::styled(what, theme.status(d.status))),
        (None, Some(url)) => first.push(Span::styled(url, theme.link())),
        (None, None) => {}
    }
    let mut lines = vec![Line::from(first)];

    if let Some(error) = d.error.as_deref().filter(|_| d.status == Status::Failed) {
        const INDENT: &str = "   ";
        let text_width = usize::from(width).saturating_sub(INDENT.len() + 1);
        let mut wrapped = wrap(error, text_width);
        if wrapped.len() > MAX_ERROR_LINES {
            wrapped.truncate(MAX_ERROR_LINES);
            if let Some(last) = wrapped.last_mut() {
                last.push('…');
            }
        }
        for (i, text) in wrapped.into_iter().enumerate() {
            let lead = if i == 0 { " ✗ " } else { INDENT };
            lines.push(Line::from(vec![
                Span::styled(lead, theme.error()),
                Span::styled(text, theme.error()),
            ]));
        }
    }
    lines
}

/// `42s`, `5m`, `3h`, `12d`: the coarsest unit that is at least one. Negative spans (a clock
/// that moved back) read as `0s`.
pub fn format_age(millis: i64) -> String {
    let s = millis.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Name,
    Framework,
    Type,
    Node,
    Vmid,
    Ip,
    Status,
    Age,
    Stage,
}

impl Column {
    /// Display order.
    const ALL: [Column; 9] = [
        Column::Name,
        Column::Framework,
        Column::Type,
        Column::Node,
        Column::Vmid,
        Column::Ip,
        Column::Status,
        Column::Age,
        Column::Stage,
    ];

    /// When the terminal is too narrow, columns go in this order. Name and status always stay.
    const DROP_ORDER: [Column; 7] = [
        Column::Type,
        Column::Node,
        Column::Vmid,
        Column::Framework,
        Column::Age,
        Column::Stage,
        Column::Ip,
    ];

    fn title(self) -> &'static str {
        match self {
            Column::Name => "NAME",
            Column::Framework => "FRAMEWORK",
            Column::Type => "TYPE",
            Column::Node => "NODE",
            Column::Vmid => "VMID",
            Column::Ip => "IP",
            Column::Status => "STATUS",
            Column::Age => "AGE",
            Column::Stage => "STAGE",
        }
    }

    /// Minimum width: the longest usual value (an IPv4 address, `PROVISIONING`,
    /// `terraform-apply` plus a cell of air before the border). The name column takes whatever
    /// is left over.
    fn min_width(self) -> u16 {
        match self {
            Column::Name => 12,
            Column::Framework => 9,
            Column::Type => 4,
            Column::Node => 8,
            Column::Vmid => 5,
            Column::Ip => 15,
            Column::Status => 12,
            Column::Age => 4,
            Column::Stage => 16,
        }
    }

    fn constraint(self) -> Constraint {
        match self {
            Column::Name => Constraint::Min(self.min_width()),
            _ => Constraint::Length(self.min_width()),
        }
    }

    fn cell<'a>(self, d: &'a Deployment, view: &DashboardView) -> Cell<'a> {
        let dash = || Cell::from("-");
        match self {
            Column::Name => Cell::from(d.name.as_str()),
            Column::Framework => Cell::from(d.framework.as_str()),
            Column::Type => Cell::from(d.guest_type.as_str()),
            Column::Node => d.node.as_deref().map_or_else(dash, Cell::from),
            Column::Vmid => d.vmid.map_or_else(dash, |v| Cell::from(v.to_string())),
            Column::Ip => d.ip.as_deref().map_or_else(dash, Cell::from),
            Column::Status => {
                Cell::from(Span::styled(d.status.as_str(), view.theme.status(d.status)))
            }
            Column::Age => Cell::from(format_age(view.now_ms - d.created_at)),
            Column::Stage => d.stage.map_or_else(dash, |s| Cell::from(s.as_str())),
        }
    }
}

/// The columns that fit in `width` cells, in display order.
fn fit_columns(width: u16) -> Vec<Column> {
    let needed = |cols: &[Column]| -> u16 {
        let gaps = u16::try_from(cols.len().saturating_sub(1)).unwrap_or(0) * COLUMN_SPACING;
        cols.iter().map(|c| c.min_width()).sum::<u16>() + gaps
    };
    let mut columns = Column::ALL.to_vec();
    for drop in Column::DROP_ORDER {
        if needed(&columns) <= width {
            break;
        }
        columns.retain(|c| *c != drop);
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::GuestType;

    fn dep(id: &str) -> Deployment {
        Deployment {
            id: DeploymentId(id.to_string()),
            name: format!("app-{id}"),
            repo: "https://example.com/a.git".into(),
            git_ref: "main".into(),
            framework: "flask".into(),
            guest_type: GuestType::Lxc,
            cores: 1,
            memory_mib: 512,
            disk_gib: 4,
            port: 5000,
            env_names: vec![],
            node: None,
            vmid: None,
            ip: None,
            url: None,
            commit: None,
            status: Status::Running,
            stage: None,
            error: None,
            created_at: 0,
            updated_at: 0,
            ..Default::default()
        }
    }

    #[test]
    fn ages_use_the_coarsest_unit() {
        assert_eq!(format_age(-5_000), "0s");
        assert_eq!(format_age(59_999), "59s");
        assert_eq!(format_age(60_000), "1m");
        assert_eq!(format_age(3_600_000), "1h");
        assert_eq!(format_age(86_400_000 * 3 + 1), "3d");
    }

    #[test]
    fn narrow_terminals_drop_columns_but_keep_name_and_status() {
        assert_eq!(fit_columns(200), Column::ALL.to_vec());
        let at_80 = fit_columns(76);
        assert!(!at_80.contains(&Column::Type));
        assert!(at_80.contains(&Column::Ip));
        let tiny = fit_columns(10);
        assert_eq!(tiny, vec![Column::Name, Column::Status]);
    }

    #[test]
    fn navigation_clamps_at_both_ends() {
        let list = vec![dep("a"), dep("b"), dep("c")];
        let mut screen = DashboardScreen::default();
        screen.sync(None, &list);
        assert_eq!(screen.selected_index(&list), Some(0));
        assert!(!screen.handle_action(Action::SelectPrev, &list));
        assert!(screen.handle_action(Action::SelectLast, &list));
        assert_eq!(screen.selected_index(&list), Some(2));
        assert!(!screen.handle_action(Action::SelectNext, &list));
        assert!(screen.handle_action(Action::SelectFirst, &list));
        assert_eq!(screen.selected_index(&list), Some(0));
        assert!(!screen.handle_action(Action::SelectNext, &[]));
    }

    #[test]
    fn a_vanished_selection_stays_at_its_row() {
        let list = vec![dep("a"), dep("b"), dep("c")];
        let mut screen = DashboardScreen::default();
        screen.sync(None, &list);
        screen.handle_action(Action::SelectLast, &list);
        let before = screen.selected_index(&list);
        let shorter = vec![dep("a"), dep("b")];
        screen.sync(before, &shorter);
        assert_eq!(screen.selected_id(), Some(&DeploymentId("b".into())));
        screen.sync(Some(1), &[]);
        assert_eq!(screen.selected_id(), None);
    }

    #[test]
    fn success_rate_counts_only_finished_deployments() {
        let mut list = vec![dep("a"), dep("b"), dep("c"), dep("d")];
        list[1].status = Status::Failed;
        list[2].status = Status::Provisioning;
        list[3].status = Status::Deleted;
        let stats = Stats::of(&list);
        assert_eq!(stats.total, 4);
        assert_eq!(stats.active, 2);
        assert_eq!(stats.success_percent(), Some(50));
        assert_eq!(Stats::of(&[]).success_percent(), None);
    }
}
