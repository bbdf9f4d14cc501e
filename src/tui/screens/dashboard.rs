//! The dashboard: the deployments in flight (spinner, stage, elapsed time), the deployments
//! table (filter with `/`, sort with `o`/`O`), and a line about the selected deployment (its
//! URL, or why it failed).
//!
//! Owns the selection (kept by `DeploymentId`, so a live update that reorders or inserts rows
//! does not move it to another deployment), the filter, the sort and the table's scroll. The
//! list itself belongs to `App` and is lent for each call; the filtered, sorted view is an
//! index list rebuilt only when the list, the filter or the sort changes, and only the visible
//! rows are built per frame, so thousands of deployments stay cheap. Must not send requests or
//! read the clock: `now` is passed in, so the same state always draws the same screen.

use super::Ctx;
use crate::domain::{Deployment, DeploymentId, Status, present};
use crate::tui::keys::Action;
use crate::tui::widgets::text::{SPINNER, format_clock, wrap};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Paragraph, Row, Table, TableState};
use tui_input::Input;

const HIGHLIGHT_SYMBOL: &str = "› ";
const COLUMN_SPACING: u16 = 1;
/// In-flight deployments listed above the table at most; the rest are counted.
const MAX_IN_FLIGHT_LINES: usize = 3;

/// What the table is sorted by (`o` opens a menu with a key per column, `O` reverses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Newest first: the engine's order.
    #[default]
    Created,
    Name,
    Status,
    Framework,
    Node,
    Updated,
}

impl SortKey {
    pub const ALL: [SortKey; 6] = [
        SortKey::Created,
        SortKey::Name,
        SortKey::Status,
        SortKey::Framework,
        SortKey::Node,
        SortKey::Updated,
    ];

    /// Its key in the sort menu.
    pub fn key(self) -> char {
        match self {
            SortKey::Created => 'c',
            SortKey::Name => 'n',
            SortKey::Status => 's',
            SortKey::Framework => 'f',
            SortKey::Node => 'o',
            SortKey::Updated => 'u',
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Created => "created",
            SortKey::Name => "name",
            SortKey::Status => "status",
            SortKey::Framework => "framework",
            SortKey::Node => "node",
            SortKey::Updated => "updated",
        }
    }

    fn compare(self, a: &Deployment, b: &Deployment) -> std::cmp::Ordering {
        let status_rank = |s: Status| Status::ALL.iter().position(|x| *x == s).unwrap_or(0);
        match self {
            SortKey::Created => b.created_at.cmp(&a.created_at),
            SortKey::Name => a.name.cmp(&b.name),
            SortKey::Status => status_rank(a.status).cmp(&status_rank(b.status)),
            SortKey::Framework => a.framework.cmp(&b.framework),
            SortKey::Node => a.node.cmp(&b.node),
            SortKey::Updated => b.updated_at.cmp(&a.updated_at),
        }
        .then_with(|| b.created_at.cmp(&a.created_at))
        .then_with(|| a.id.cmp(&b.id))
    }
}

#[derive(Debug, Default)]
pub struct DashboardScreen {
    selected: Option<DeploymentId>,
    offset: usize,
    filter: Input,
    /// The filter line has the keyboard.
    filtering: bool,
    sort: SortKey,
    reverse: bool,
    /// Indices into the list: filtered and sorted.
    view: Vec<usize>,
    /// Rows the table showed at the last draw (for paging).
    page: usize,
    /// The selection's position in the view, for when the selected deployment vanishes.
    last_pos: usize,
}

impl DashboardScreen {
    pub fn selected_id(&self) -> Option<&DeploymentId> {
        self.selected.as_ref()
    }

    /// The selected deployment's index in the list.
    pub fn selected_index(&self, list: &[Deployment]) -> Option<usize> {
        let id = self.selected.as_ref()?;
        self.view
            .iter()
            .copied()
            .find(|&i| list.get(i).is_some_and(|d| &d.id == id))
    }

    fn selected_pos(&self, list: &[Deployment]) -> Option<usize> {
        let id = self.selected.as_ref()?;
        self.view
            .iter()
            .position(|&i| list.get(i).is_some_and(|d| &d.id == id))
    }

    pub fn is_filtering(&self) -> bool {
        self.filtering
    }

    pub fn filter_text(&self) -> &str {
        self.filter.value()
    }

    pub fn filter_input(&mut self) -> &mut Input {
        &mut self.filter
    }

    pub fn sort(&self) -> (SortKey, bool) {
        (self.sort, self.reverse)
    }

    /// How many rows pass the filter.
    pub fn shown(&self) -> usize {
        self.view.len()
    }

    /// Selects a deployment by id (when it is in the view).
    pub fn select(&mut self, id: &DeploymentId, list: &[Deployment]) -> bool {
        let found = self
            .view
            .iter()
            .any(|&i| list.get(i).is_some_and(|d| &d.id == id));
        if found {
            self.selected = Some(id.clone());
        }
        found
    }

    /// Rebuilds the view after the list, the filter or the sort changed. The selection stays on
    /// the same deployment while it is shown; if it vanished, the cursor stays at the row it
    /// was on (clamped), not at the top.
    pub fn rebuild(&mut self, list: &[Deployment]) {
        let previous = self.selected_pos(list).or_else(|| {
            // The selected one may be gone from the list: its old position is unknown, keep
            // the cursor where the view was.
            self.selected.as_ref().map(|_| self.last_pos)
        });
        let needle = self.filter.value().trim().to_lowercase();
        let mut view: Vec<usize> = (0..list.len())
            .filter(|&i| needle.is_empty() || matches_filter(&list[i], &needle))
            .collect();
        if self.sort != SortKey::Created || self.reverse {
            let sort = self.sort;
            view.sort_by(|&a, &b| sort.compare(&list[a], &list[b]));
            if self.reverse {
                view.reverse();
            }
        }
        self.view = view;
        if self.view.is_empty() {
            self.selected = None;
            return;
        }
        if let Some(id) = &self.selected
            && self
                .view
                .iter()
                .any(|&i| list.get(i).is_some_and(|d| &d.id == id))
        {
            self.last_pos = self.selected_pos(list).unwrap_or(0);
            return;
        }
        let pos = previous.unwrap_or(0).min(self.view.len() - 1);
        self.selected = Some(list[self.view[pos]].id.clone());
        self.last_pos = pos;
    }

    /// Sorts by `key`; the key it is sorted by already reverses the order.
    pub fn sort_by(&mut self, key: SortKey, list: &[Deployment]) {
        if self.sort == key {
            self.reverse = !self.reverse;
        } else {
            self.sort = key;
            self.reverse = false;
        }
        self.rebuild(list);
    }

    /// Applies a navigation or reverse action; returns whether anything changed.
    pub fn handle_action(&mut self, action: Action, list: &[Deployment]) -> bool {
        if action == Action::SortReverse {
            self.reverse = !self.reverse;
            self.rebuild(list);
            return true;
        }
        let Some(last) = self.view.len().checked_sub(1) else {
            return false;
        };
        let current = self.selected_pos(list);
        let page = self.page.max(1);
        let target = match action {
            Action::Down => current.map_or(0, |i| (i + 1).min(last)),
            Action::Up => current.map_or(0, |i| i.saturating_sub(1)),
            Action::Top => 0,
            Action::Bottom => last,
            Action::PageDown => current.map_or(0, |i| (i + page).min(last)),
            Action::PageUp => current.map_or(0, |i| i.saturating_sub(page)),
            _ => return false,
        };
        if current == Some(target) {
            return false;
        }
        self.selected = Some(list[self.view[target]].id.clone());
        self.last_pos = target;
        true
    }

    pub fn start_filter(&mut self) {
        self.filtering = true;
    }

    /// Enter: keep the filter, give the keyboard back to the table.
    pub fn keep_filter(&mut self) {
        self.filtering = false;
    }

    /// Esc: drop the filter. Returns whether there was one.
    pub fn clear_filter(&mut self, list: &[Deployment]) -> bool {
        let had = self.filtering || !self.filter.value().is_empty();
        self.filtering = false;
        if !self.filter.value().is_empty() {
            self.filter.reset();
            self.rebuild(list);
        }
        had
    }

    pub fn render(&mut self, frame: &mut Frame, area: Rect, cx: &Ctx) {
        let list = cx.deployments;
        let selected = self.selected_index(list).map(|i| &list[i]);
        let detail = selected.map_or_else(Vec::new, |d| detail_lines(d, cx, area.width));
        let detail_height = u16::try_from(detail.len()).unwrap_or(1).max(1);
        let in_flight: Vec<&Deployment> = list.iter().filter(|d| d.status.is_in_flight()).collect();
        let flight_lines = in_flight_lines(&in_flight, cx);
        // At 24 rows the table keeps at least a few rows: the strip shrinks first.
        let room = area.height.saturating_sub(detail_height + 6);
        let flight_height = u16::try_from(flight_lines.len()).unwrap_or(0).min(room);
        let filter_height = u16::from(self.filtering || !self.filter.value().is_empty());
        let [flight, filter, table, detail_area] = Layout::vertical([
            Constraint::Length(flight_height),
            Constraint::Length(filter_height),
            Constraint::Fill(1),
            Constraint::Length(detail_height),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(flight_lines), flight);
        if filter_height > 0 {
            self.render_filter(frame, filter, cx);
        }
        self.render_table(frame, table, cx);
        frame.render_widget(Paragraph::new(detail), detail_area);
    }

    fn render_filter(&self, frame: &mut Frame, area: Rect, cx: &Ctx) {
        let theme = cx.theme;
        let prefix = " / ";
        let width = usize::from(area.width).saturating_sub(prefix.len() + 16);
        let scroll = self.filter.visual_scroll(width);
        let text: String = self
            .filter
            .value()
            .chars()
            .skip(scroll)
            .take(width)
            .collect();
        let count = format!("  {} of {}", self.view.len(), cx.deployments.len());
        let style = if self.filtering {
            theme.focused()
        } else {
            theme.hint_key()
        };
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(prefix, style),
                Span::raw(text),
                Span::styled(count, theme.muted()),
            ])),
            area,
        );
        if self.filtering {
            let x = area.x
                + u16::try_from(prefix.len() + self.filter.visual_cursor().saturating_sub(scroll))
                    .unwrap_or(0);
            frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
        }
    }

    fn render_table(&mut self, frame: &mut Frame, area: Rect, cx: &Ctx) {
        let theme = cx.theme;
        let list = cx.deployments;
        let sort = if self.sort == SortKey::Created && !self.reverse {
            String::new()
        } else {
            format!(
                "· by {}{} ",
                self.sort.label(),
                if self.reverse { " ↑" } else { "" }
            )
        };
        let block = Block::bordered()
            .border_style(theme.border())
            .title(Span::styled(
                match cx.partial_total {
                    Some(all) => format!(
                        " Deployments ({} of {all}, reading the rest…) ",
                        self.view.len()
                    ),
                    None => format!(" Deployments ({}) ", self.view.len()),
                },
                theme.title(),
            ))
            .title(Span::styled(sort, theme.muted()));

        if self.view.is_empty() {
            let muted = |text: String| Line::from(Span::styled(text, theme.muted()));
            let key = |k: &'static str| Span::styled(k, theme.hint_key());
            let message: Vec<Line> = if !cx.loaded {
                vec![muted("Loading deployments…".to_string())]
            } else if !self.filter.value().is_empty() {
                vec![muted(format!(
                    "Nothing matches /{} (esc clears the filter)",
                    self.filter.value()
                ))]
            } else {
                // A newcomer's two ways in: deploy something, or look at the cluster they have.
                vec![
                    muted("No deployments yet.".to_string()),
                    Line::default(),
                    Line::from(vec![
                        key("n"),
                        Span::raw(" deploy a repository onto a new guest or an existing host"),
                    ]),
                    Line::from(vec![
                        key("p"),
                        Span::raw(" see the Proxmox cluster · "),
                        key(":sync"),
                        Span::raw(" import its existing guests"),
                    ]),
                ]
            };
            let inner = block.inner(area);
            frame.render_widget(block, area);
            let rows = u16::try_from(message.len()).unwrap_or(1);
            let [_, middle, _] = Layout::vertical([
                Constraint::Fill(1),
                Constraint::Length(rows),
                Constraint::Fill(1),
            ])
            .areas(inner);
            frame.render_widget(Paragraph::new(message).centered(), middle);
            return;
        }

        let symbol_width = u16::try_from(HIGHLIGHT_SYMBOL.chars().count()).unwrap_or(2);
        let columns = fit_columns(area.width.saturating_sub(2 + symbol_width));
        // Only the visible rows are built: borders (2) and the header row (1) are not rows.
        let visible = usize::from(area.height.saturating_sub(3)).max(1);
        self.page = visible;
        let pos = self.selected_pos(list).unwrap_or(0);
        if pos < self.offset {
            self.offset = pos;
        } else if pos >= self.offset + visible {
            self.offset = pos + 1 - visible;
        }
        self.offset = self.offset.min(self.view.len().saturating_sub(visible));
        let end = (self.offset + visible).min(self.view.len());
        let header =
            Row::new(columns.iter().map(|c| Cell::from(c.title()))).style(theme.table_header());
        let rows = self.view[self.offset..end].iter().map(|&i| {
            let d = &list[i];
            let row = Row::new(columns.iter().map(|c| c.cell(d, cx)));
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
        let mut state = TableState::new().with_selected(Some(pos - self.offset));
        frame.render_stateful_widget(table, area, &mut state);
    }
}

/// Case-insensitive substring match on what the table shows (and the id).
fn matches_filter(d: &Deployment, needle: &str) -> bool {
    let fields = [
        d.name.as_str(),
        d.id.0.as_str(),
        d.framework.as_str(),
        d.status.as_str(),
        d.guest_type.as_str(),
        d.node.as_deref().unwrap_or(""),
        d.ip.as_deref().unwrap_or(""),
        d.stage.map(|s| s.as_str()).unwrap_or(""),
    ];
    fields.iter().any(|f| f.to_lowercase().contains(needle))
        || d.vmid.is_some_and(|v| v.to_string().contains(needle))
}

/// One line per deployment in flight: spinner, name, status, stage and how long it has been
/// in it, total time.
fn in_flight_lines<'a>(list: &[&Deployment], cx: &Ctx) -> Vec<Line<'a>> {
    let theme = cx.theme;
    let spinner = SPINNER[cx.spinner % SPINNER.len()];
    let mut lines: Vec<Line> = list
        .iter()
        .take(MAX_IN_FLIGHT_LINES)
        .map(|d| {
            let stage = d.stage.map(|s| s.as_str()).unwrap_or("-");
            Line::from(vec![
                Span::styled(format!(" {spinner} "), theme.spinner()),
                Span::styled(
                    format!("{:<16} ", truncate(&d.name, 16)),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::styled(
                    format!("{:<12} ", d.status.as_str()),
                    theme.status(d.status),
                ),
                Span::raw(format!("{stage:<15} ")),
                Span::raw(format_clock(cx.now_ms - d.updated_at)),
                Span::styled(
                    format!("  total {}", format_clock(cx.now_ms - d.created_at)),
                    theme.muted(),
                ),
            ])
        })
        .collect();
    if list.len() > MAX_IN_FLIGHT_LINES {
        lines.push(Line::from(Span::styled(
            format!(
                "   … and {} more in flight",
                list.len() - MAX_IN_FLIGHT_LINES
            ),
            theme.muted(),
        )));
    }
    lines
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A failure's message gets this many lines under the table at most; the rest is in details.
const MAX_ERROR_LINES: usize = 3;

/// About the selected deployment: one line saying where it answers or what it is doing, and
/// for a failure, the error (cause and next step), wrapped.
fn detail_lines<'a>(d: &'a Deployment, cx: &Ctx, width: u16) -> Vec<Line<'a>> {
    let theme = cx.theme;
    let mut first = vec![
        Span::raw(" "),
        Span::styled(d.name.as_str(), Style::new().add_modifier(Modifier::BOLD)),
        Span::styled(format!(" ({})", d.id), theme.muted()),
        Span::styled(
            format!(" · updated {} ago · ", format_age(cx.now_ms - d.updated_at)),
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
    if d.origin == crate::domain::Origin::Imported {
        first.push(Span::styled(" · imported by sync", theme.muted()));
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

    fn cell<'a>(self, d: &'a Deployment, cx: &Ctx) -> Cell<'a> {
        let dash = || Cell::from("-");
        match self {
            Column::Name => Cell::from(d.name.as_str()),
            Column::Framework => Cell::from(d.framework.as_str()),
            Column::Type => Cell::from(d.guest_type.as_str()),
            Column::Node => d.node.as_deref().map_or_else(dash, Cell::from),
            Column::Vmid => d.vmid.map_or_else(dash, |v| Cell::from(v.to_string())),
            Column::Ip => d.ip.as_deref().map_or_else(dash, Cell::from),
            Column::Status => {
                let job = cx
                    .jobs
                    .iter()
                    .find(|j| j.deployment.as_ref() == Some(&d.id));
                let text = match job {
                    Some(j) if j.state == crate::domain::JobState::Queued => {
                        match (present::status_text(d, Some(j)).as_str(), j.position) {
                            ("QUEUED", Some(p)) => format!("QUEUED #{p}"),
                            (s, _) => format!("{s} ⋯"),
                        }
                    }
                    _ => d.status.as_str().to_string(),
                };
                Cell::from(Span::styled(text, cx.theme.status(d.status)))
            }
            Column::Age => Cell::from(format_age(cx.now_ms - d.created_at)),
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
            status: Status::Running,
            ..Default::default()
        }
    }

    fn screen_over(list: &[Deployment]) -> DashboardScreen {
        let mut screen = DashboardScreen::default();
        screen.rebuild(list);
        screen
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
        let mut screen = screen_over(&list);
        assert_eq!(screen.selected_index(&list), Some(0));
        assert!(!screen.handle_action(Action::Up, &list));
        assert!(screen.handle_action(Action::Bottom, &list));
        assert_eq!(screen.selected_index(&list), Some(2));
        assert!(!screen.handle_action(Action::Down, &list));
        assert!(screen.handle_action(Action::Top, &list));
        assert_eq!(screen.selected_index(&list), Some(0));
        assert!(screen.handle_action(Action::PageDown, &list));
        assert_eq!(
            screen.selected_index(&list),
            Some(1),
            "a page is one row before a draw"
        );
        let empty = screen_over(&[]);
        assert_eq!(empty.selected_id(), None);
    }

    #[test]
    fn a_vanished_selection_stays_at_its_row() {
        let list = vec![dep("a"), dep("b"), dep("c")];
        let mut screen = screen_over(&list);
        screen.handle_action(Action::Bottom, &list);
        let shorter = vec![dep("a"), dep("b")];
        screen.rebuild(&shorter);
        assert_eq!(screen.selected_id(), Some(&DeploymentId("b".into())));
        screen.rebuild(&[]);
        assert_eq!(screen.selected_id(), None);
    }

    #[test]
    fn filter_matches_any_shown_field_and_keeps_the_selection() {
        let mut list = vec![dep("a"), dep("b"), dep("c")];
        list[1].framework = "django".into();
        list[2].status = Status::Failed;
        list[2].node = Some("pve2".into());
        let mut screen = screen_over(&list);
        screen.handle_action(Action::Bottom, &list);
        for (text, want) in [
            ("DJANGO", 1),
            ("failed", 1),
            ("pve2", 1),
            ("app-", 3),
            ("zzz", 0),
        ] {
            screen
                .filter_input()
                .handle(tui_input::InputRequest::DeleteLine);
            for c in text.chars() {
                screen
                    .filter_input()
                    .handle(tui_input::InputRequest::InsertChar(c));
            }
            screen.rebuild(&list);
            assert_eq!(screen.shown(), want, "{text}");
        }
        screen.clear_filter(&list);
        assert_eq!(screen.shown(), 3);
        assert!(screen.select(&DeploymentId("c".into()), &list));
        for c in "pve2".chars() {
            screen
                .filter_input()
                .handle(tui_input::InputRequest::InsertChar(c));
        }
        screen.rebuild(&list);
        assert_eq!(screen.selected_id(), Some(&DeploymentId("c".into())));
    }

    #[test]
    fn sorting_by_a_column_and_again_reverses_keeping_the_selection() {
        let mut list = vec![dep("a"), dep("b"), dep("c")];
        list[0].name = "zeta".into();
        list[1].name = "alpha".into();
        list[2].name = "mid".into();
        let mut screen = screen_over(&list);
        screen.sort_by(SortKey::Name, &list);
        assert_eq!(screen.sort(), (SortKey::Name, false));
        let names = |s: &DashboardScreen| -> Vec<String> {
            s.view.iter().map(|&i| list[i].name.clone()).collect()
        };
        assert_eq!(names(&screen), ["alpha", "mid", "zeta"]);
        assert_eq!(
            screen.selected_id(),
            Some(&DeploymentId("a".into())),
            "still zeta"
        );
        screen.handle_action(Action::SortReverse, &list);
        assert_eq!(names(&screen), ["zeta", "mid", "alpha"]);
        screen.sort_by(SortKey::Name, &list);
        assert_eq!(
            names(&screen),
            ["alpha", "mid", "zeta"],
            "name again: reversed back"
        );
        screen.sort_by(SortKey::Status, &list);
        assert_eq!(screen.sort(), (SortKey::Status, false));
    }
}
