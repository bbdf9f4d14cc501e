//! The log pane: a deployment's log live (follow, scroll, page, top and bottom), stage
//! markers, stderr set apart, search with `/` (an empty line each time, earlier terms with
//! ↑/↓) and highlighted matches, `n`/`N`; `&` shows only the lines that match, over the whole
//! log, with their count; `w` wraps long lines; and on a second tab the app's own log, read
//! over SSH.
//!
//! Memory stays bounded however long the log: the pane keeps a window of at most
//! [`WINDOW`] lines and asks the engine for the lines before or after it (by sequence number,
//! from the store) when the user scrolls near an edge; a search that runs off the window asks
//! the engine to search the whole log. The filter holds the engine's count over the whole log
//! and at most [`LOG_FILTER_KEEP`] of the matching lines (the newest), and adds the matching
//! lines that arrive. The app log keeps its last [`APP_WINDOW`] lines. Owns the windows, the
//! scroll, the search and its history, the filter; must not do I/O: it returns `Intent`s.

use super::{Ctx, Intent};
use crate::domain::{Deployment, DeploymentId};
use crate::protocol::{LOG_FILTER_KEEP, LogPageKind, LogStream, LogWindow, Request, SeqLine};
use crate::tui::keys::{Action, Mode};
use crate::tui::widgets::text::{SPINNER, clip, find_all, format_time, highlighted};
use crossterm::event::{Event, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs, Wrap};
use std::collections::VecDeque;
use tui_input::Input;
use tui_input::backend::crossterm::to_input_request;

/// Deployment-log lines kept in memory at most.
pub const WINDOW: usize = 5_000;
/// App-log lines kept in memory at most.
pub const APP_WINDOW: usize = 5_000;
/// Lines the app log starts with.
const APP_TAIL: u32 = 200;
/// How close to an edge of the window scrolling asks for the next page.
const PREFETCH: usize = 200;
/// Lines the mouse wheel moves.
pub const WHEEL: usize = 3;
/// Search terms remembered (↑/↓ on the search line).
const HISTORY: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Deployment,
    App,
}

#[derive(Debug, Default)]
struct DeploymentLog {
    lines: VecDeque<SeqLine>,
    at_start: bool,
    /// The window reaches the end of the log: new lines are appended as they come.
    at_end: bool,
    loaded: bool,
    top: usize,
    follow: bool,
    /// A page was asked for and has not come.
    pending: bool,
    /// After the next window arrives, show this line.
    jump: Option<i64>,
}

impl DeploymentLog {
    fn index_of(&self, seq: i64) -> Option<usize> {
        self.lines.binary_search_by_key(&seq, |l| l.seq).ok()
    }

    fn first_seq(&self) -> Option<i64> {
        self.lines.front().map(|l| l.seq)
    }

    fn last_seq(&self) -> Option<i64> {
        self.lines.back().map(|l| l.seq)
    }

    fn replace(&mut self, lines: Vec<SeqLine>, at_start: bool, at_end: bool) {
        self.lines = lines.into();
        self.at_start = at_start;
        self.at_end = at_end;
        self.top = 0;
    }

    /// Drops lines from the front beyond the window; keeps the view on the same lines.
    fn trim_front(&mut self) {
        let excess = self.lines.len().saturating_sub(WINDOW);
        if excess > 0 {
            self.lines.drain(..excess);
            self.top = self.top.saturating_sub(excess);
            self.at_start = false;
        }
    }

    fn trim_back(&mut self) {
        let excess = self.lines.len().saturating_sub(WINDOW);
        if excess > 0 {
            let keep = self.lines.len() - excess;
            self.lines.truncate(keep);
            self.at_end = false;
            self.follow = false;
        }
    }
}

#[derive(Debug, Default)]
struct AppLog {
    lines: VecDeque<(LogStream, String)>,
    /// Lines dropped from the front, so positions stay absolute.
    dropped: usize,
    started: bool,
    /// `Some`: the stream stopped (with the reason when it failed).
    ended: Option<Option<String>>,
    top: usize,
    follow: bool,
}

/// Only the lines that match the search, over the whole deployment log (`&`).
#[derive(Debug)]
struct Filtered {
    query: String,
    /// The newest matching lines, at most [`LOG_FILTER_KEEP`].
    lines: VecDeque<SeqLine>,
    /// Matching lines in the whole log (not only those held).
    total: u64,
    /// The last line counted: appended lines after it are new.
    through: i64,
    /// The engine has answered.
    loaded: bool,
    top: usize,
    follow: bool,
}

/// Where the current search match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// A deployment-log line, by sequence number.
    Seq(i64),
    /// An app-log line, by absolute position.
    App(usize),
}

#[derive(Debug)]
pub struct LogsScreen {
    id: DeploymentId,
    name: String,
    tab: Tab,
    dep: DeploymentLog,
    app: AppLog,
    search: Option<String>,
    search_input: Option<Input>,
    /// Earlier search terms, oldest first; `history_pos` is the one on the search line.
    history: Vec<String>,
    history_pos: Option<usize>,
    filter: Option<Filtered>,
    /// Long lines wrap instead of being clipped (and scrolled sideways).
    wrap: bool,
    current: Option<Match>,
    /// Waiting for the engine to search beyond the window.
    finding: bool,
    hscroll: usize,
    /// Rows of log shown at the last draw (paging, and where `follow` puts the view).
    height: usize,
}

impl LogsScreen {
    /// Opens the log of `d`; the intents ask the engine for its tail and to follow it.
    pub fn open(d: &Deployment) -> (LogsScreen, Vec<Intent>) {
        let screen = LogsScreen {
            id: d.id.clone(),
            name: d.name.clone(),
            tab: Tab::Deployment,
            dep: DeploymentLog {
                follow: true,
                ..DeploymentLog::default()
            },
            app: AppLog {
                follow: true,
                ..AppLog::default()
            },
            search: None,
            search_input: None,
            history: Vec::new(),
            history_pos: None,
            filter: None,
            wrap: false,
            current: None,
            finding: false,
            hscroll: 0,
            height: 20,
        };
        (screen, vec![Intent::Send(Request::OpenLog(d.id.clone()))])
    }

    pub fn id(&self) -> &DeploymentId {
        &self.id
    }

    pub fn tab(&self) -> Tab {
        self.tab
    }

    /// What the engine must stop when the pane closes.
    pub fn close_requests(&self) -> Vec<Request> {
        let mut out = vec![Request::CloseLog];
        if self.app.started && self.app.ended.is_none() {
            out.push(Request::StopAppLog);
        }
        out
    }

    pub fn mode(&self) -> Mode {
        if self.search_input.is_some() {
            Mode::LogSearch
        } else {
            Mode::Logs
        }
    }

    /// Lines in memory (both tabs): what "bounded" is measured by.
    pub fn lines_in_memory(&self) -> usize {
        self.dep.lines.len() + self.app.lines.len()
    }

    /// Whether something is loading (spinners animate).
    pub fn busy(&self) -> bool {
        !self.dep.loaded
            || self.dep.pending
            || self.finding
            || self.filter.as_ref().is_some_and(|f| !f.loaded)
            || (self.app.started && self.app.ended.is_none() && self.app.lines.is_empty())
    }

    /// A page of the deployment log arrived.
    pub fn apply_page(
        &mut self,
        id: &DeploymentId,
        kind: LogPageKind,
        lines: &[SeqLine],
        at_start: bool,
        at_end: bool,
    ) -> bool {
        if *id != self.id {
            return false;
        }
        let dep = &mut self.dep;
        match kind {
            LogPageKind::Tail => {
                dep.replace(lines.to_vec(), at_start, true);
                dep.loaded = true;
                dep.pending = false;
                dep.follow = true;
            }
            LogPageKind::Append => {
                let mut counted = false;
                if let Some(f) = &mut self.filter {
                    let through = f.through;
                    for l in lines.iter().filter(|l| l.seq > through) {
                        f.through = l.seq;
                        // Before the engine's count comes, matches are held and counted
                        // when it comes (those after the line it scanned up to).
                        if !find_all(&l.line.text, &f.query).is_empty() {
                            f.total += u64::from(f.loaded);
                            f.lines.push_back(l.clone());
                            counted = true;
                        }
                    }
                    let excess = f.lines.len().saturating_sub(LOG_FILTER_KEEP);
                    f.lines.drain(..excess);
                    f.top = f.top.saturating_sub(excess);
                }
                if !dep.at_end {
                    self.settle();
                    return counted;
                }
                let last = dep.last_seq().unwrap_or(i64::MIN);
                let fresh: Vec<&SeqLine> = lines.iter().filter(|l| l.seq > last).collect();
                if fresh.is_empty() {
                    return false;
                }
                dep.lines.extend(fresh.into_iter().cloned());
                dep.trim_front();
            }
            LogPageKind::Window(window) => {
                dep.pending = false;
                dep.loaded = true;
                match window {
                    LogWindow::Before(seq) if dep.first_seq() == Some(seq) => {
                        for l in lines.iter().rev() {
                            dep.lines.push_front(l.clone());
                        }
                        dep.top += lines.len();
                        dep.at_start = at_start;
                        dep.trim_back();
                    }
                    LogWindow::After(seq) if dep.last_seq() == Some(seq) => {
                        let fresh = lines.iter().filter(|l| l.seq > seq).cloned();
                        dep.lines.extend(fresh);
                        dep.at_end = at_end;
                        dep.trim_front();
                    }
                    LogWindow::After(0) => {
                        dep.replace(lines.to_vec(), true, at_end);
                        dep.follow = false;
                    }
                    _ => {
                        dep.replace(lines.to_vec(), at_start, at_end);
                        dep.follow = false;
                    }
                }
                if let Some(seq) = dep.jump.take() {
                    self.show_seq(seq);
                }
            }
        }
        self.settle();
        true
    }

    /// The engine's answer to `&`: the matching lines of the whole log.
    pub fn apply_filtered(
        &mut self,
        id: &DeploymentId,
        query: &str,
        total: u64,
        lines: &[SeqLine],
        through: i64,
    ) -> bool {
        let Some(f) = &mut self.filter else {
            return false;
        };
        if *id != self.id || f.query != query || f.loaded {
            return false;
        }
        // Lines that arrived while the engine scanned, and that it counted too, stay once.
        let newer: Vec<SeqLine> = f.lines.drain(..).filter(|l| l.seq > through).collect();
        f.total = total + newer.len() as u64;
        f.lines = lines.iter().cloned().chain(newer).collect();
        f.through = f.through.max(through);
        f.loaded = true;
        self.settle();
        true
    }

    /// Whether `&` shows only the matching lines.
    pub fn filtering(&self) -> bool {
        self.filter.is_some()
    }

    /// The engine's answer to a search beyond the window.
    pub fn apply_match(
        &mut self,
        id: &DeploymentId,
        query: &str,
        seq: Option<i64>,
        out: &mut Vec<Intent>,
    ) -> bool {
        if *id != self.id || self.search.as_deref() != Some(query) {
            return false;
        }
        self.finding = false;
        match seq {
            Some(seq) if self.dep.index_of(seq).is_some() => self.show_seq(seq),
            Some(seq) => {
                self.dep.jump = Some(seq);
                self.dep.pending = true;
                self.current = Some(Match::Seq(seq));
                out.push(Intent::Send(Request::LoadLog {
                    id: self.id.clone(),
                    window: LogWindow::Around(seq),
                }));
            }
            None => out.push(Intent::Flash(format!("no more matches for {query:?}"))),
        }
        true
    }

    pub fn apply_app_lines(
        &mut self,
        id: &DeploymentId,
        stream: LogStream,
        lines: &[String],
    ) -> bool {
        if *id != self.id {
            return false;
        }
        let app = &mut self.app;
        app.lines.extend(lines.iter().map(|l| (stream, l.clone())));
        let excess = app.lines.len().saturating_sub(APP_WINDOW);
        if excess > 0 {
            app.lines.drain(..excess);
            app.dropped += excess;
            app.top = app.top.saturating_sub(excess);
        }
        self.settle();
        self.tab == Tab::App
    }

    pub fn apply_app_end(&mut self, id: &DeploymentId, error: Option<String>) -> bool {
        if *id != self.id {
            return false;
        }
        self.app.ended = Some(error);
        true
    }

    /// A key the keymap does not bind, typed into the search line.
    pub fn edit(&mut self, key: KeyEvent) -> bool {
        let (Some(input), Some(request)) =
            (&mut self.search_input, to_input_request(&Event::Key(key)))
        else {
            return false;
        };
        input.handle(request).is_some()
    }

    fn len(&self) -> usize {
        match (self.tab, &self.filter) {
            (Tab::Deployment, Some(f)) => f.lines.len(),
            (Tab::Deployment, None) => self.dep.lines.len(),
            (Tab::App, _) => self.app.lines.len(),
        }
    }

    fn max_top(&self) -> usize {
        self.len().saturating_sub(self.height.max(1))
    }

    fn top_mut(&mut self) -> &mut usize {
        match (self.tab, &mut self.filter) {
            (Tab::Deployment, Some(f)) => &mut f.top,
            (Tab::Deployment, None) => &mut self.dep.top,
            (Tab::App, _) => &mut self.app.top,
        }
    }

    fn follow_mut(&mut self) -> &mut bool {
        match (self.tab, &mut self.filter) {
            (Tab::Deployment, Some(f)) => &mut f.follow,
            (Tab::Deployment, None) => &mut self.dep.follow,
            (Tab::App, _) => &mut self.app.follow,
        }
    }

    fn following(&self) -> bool {
        match (self.tab, &self.filter) {
            (Tab::Deployment, Some(f)) => f.follow,
            (Tab::Deployment, None) => self.dep.follow,
            (Tab::App, _) => self.app.follow,
        }
    }

    /// Keeps `top` in range; following keeps the view at the bottom.
    fn settle(&mut self) {
        let max = self.max_top();
        for tab in [Tab::Deployment, Tab::App] {
            let (len, top, follow) = match tab {
                Tab::Deployment => (self.dep.lines.len(), &mut self.dep.top, self.dep.follow),
                Tab::App => (self.app.lines.len(), &mut self.app.top, self.app.follow),
            };
            let max = if tab == self.tab {
                max
            } else {
                len.saturating_sub(self.height.max(1))
            };
            if follow {
                *top = max;
            } else {
                *top = (*top).min(max);
            }
        }
        if let Some(f) = &mut self.filter {
            let max = f.lines.len().saturating_sub(self.height.max(1));
            f.top = if f.follow { max } else { f.top.min(max) };
        }
    }

    /// Scrolls to the deployment-log line `seq` (a third from the top) and marks it current.
    fn show_seq(&mut self, seq: i64) {
        if let Some(i) = self.dep.index_of(seq) {
            self.dep.follow = false;
            self.dep.top = i.saturating_sub(self.height / 3);
            self.current = Some(Match::Seq(seq));
            self.settle();
        }
    }

    fn scroll(&mut self, delta: isize, out: &mut Vec<Intent>) {
        let max = self.max_top();
        let top = *self.top_mut();
        let new = top.saturating_add_signed(delta).min(max);
        *self.top_mut() = new;
        // Scrolled to the bottom of a window that reaches the end: follow again.
        let at_end = match self.tab {
            Tab::Deployment => self.dep.at_end || self.filter.is_some(),
            Tab::App => true,
        };
        *self.follow_mut() = new == max && at_end && delta > 0;
        if delta < 0 {
            *self.follow_mut() = false;
        }
        self.prefetch(out);
    }

    /// Near an edge of the window with more beyond it: ask for the next page.
    fn prefetch(&mut self, out: &mut Vec<Intent>) {
        if self.tab != Tab::Deployment
            || self.dep.pending
            || !self.dep.loaded
            || self.filter.is_some()
        {
            return;
        }
        let dep = &self.dep;
        let window = if dep.top < PREFETCH && !dep.at_start {
            dep.first_seq().map(LogWindow::Before)
        } else if dep.top + self.height + PREFETCH > dep.lines.len() && !dep.at_end {
            dep.last_seq().map(LogWindow::After)
        } else {
            None
        };
        if let Some(window) = window {
            self.dep.pending = true;
            out.push(Intent::Send(Request::LoadLog {
                id: self.id.clone(),
                window,
            }));
        }
    }

    fn go_bottom(&mut self, out: &mut Vec<Intent>) {
        match self.tab {
            Tab::Deployment if !self.dep.at_end && self.filter.is_none() => {
                self.dep.pending = true;
                self.dep.follow = true;
                out.push(Intent::Send(Request::OpenLog(self.id.clone())));
            }
            _ => {
                *self.follow_mut() = true;
                self.settle();
            }
        }
    }

    fn go_top(&mut self, out: &mut Vec<Intent>) {
        *self.follow_mut() = false;
        match self.tab {
            Tab::Deployment if !self.dep.at_start && self.filter.is_none() => {
                self.dep.pending = true;
                out.push(Intent::Send(Request::LoadLog {
                    id: self.id.clone(),
                    window: LogWindow::After(0),
                }));
            }
            _ => *self.top_mut() = 0,
        }
    }

    /// Looks for the next match in the direction given: in the window first, then (for the
    /// deployment log) beyond it through the engine.
    fn find(&mut self, forward: bool, out: &mut Vec<Intent>) {
        let Some(query) = self.search.clone() else {
            out.push(Intent::Flash("press / to search first".into()));
            return;
        };
        let height = self.height;
        if let (Tab::Deployment, Some(f)) = (self.tab, &mut self.filter) {
            // Every line shown matches: n and N step through them.
            let at = match self.current {
                Some(Match::Seq(s)) => f.lines.iter().position(|l| l.seq == s),
                _ => None,
            };
            let next = match (at, forward) {
                (Some(i), true) => (i + 1 < f.lines.len()).then_some(i + 1),
                (Some(i), false) => i.checked_sub(1),
                (None, true) => (f.top < f.lines.len()).then_some(f.top),
                (None, false) => (f.top + height).min(f.lines.len()).checked_sub(1),
            };
            match next {
                Some(i) => {
                    self.current = Some(Match::Seq(f.lines[i].seq));
                    f.follow = false;
                    if i < f.top || i >= f.top + height {
                        f.top = i.saturating_sub(height / 3);
                    }
                    self.settle();
                }
                None => out.push(Intent::Flash(format!("no more matches for {query:?}"))),
            }
            return;
        }
        match self.tab {
            Tab::Deployment => {
                let lines = &self.dep.lines;
                let start = match self.current {
                    Some(Match::Seq(s)) => self.dep.index_of(s),
                    _ => None,
                };
                let found = if forward {
                    let from = start.map_or(self.dep.top, |i| i + 1);
                    (from..lines.len()).find(|&i| !find_all(&lines[i].line.text, &query).is_empty())
                } else {
                    let to = start.unwrap_or((self.dep.top + height).min(lines.len()));
                    (0..to)
                        .rev()
                        .find(|&i| !find_all(&lines[i].line.text, &query).is_empty())
                };
                if let Some(i) = found {
                    let seq = lines[i].seq;
                    self.show_seq(seq);
                    return;
                }
                let beyond = if forward {
                    (!self.dep.at_end).then(|| self.dep.last_seq()).flatten()
                } else {
                    (!self.dep.at_start).then(|| self.dep.first_seq()).flatten()
                };
                match beyond {
                    Some(from) => {
                        self.finding = true;
                        out.push(Intent::Send(Request::FindInLog {
                            id: self.id.clone(),
                            query,
                            from,
                            forward,
                        }));
                    }
                    None => out.push(Intent::Flash(format!("no more matches for {query:?}"))),
                }
            }
            Tab::App => {
                let app = &self.app;
                let start = match self.current {
                    Some(Match::App(abs)) if abs >= app.dropped => Some(abs - app.dropped),
                    _ => None,
                };
                let matches = |i: usize| !find_all(&app.lines[i].1, &query).is_empty();
                let found = if forward {
                    let from = start.map_or(app.top, |i| i + 1);
                    (from..app.lines.len()).find(|&i| matches(i))
                } else {
                    let to = start.unwrap_or((app.top + height).min(app.lines.len()));
                    (0..to).rev().find(|&i| matches(i))
                };
                match found {
                    Some(i) => {
                        self.current = Some(Match::App(app.dropped + i));
                        self.app.follow = false;
                        self.app.top = i.saturating_sub(height / 3);
                        self.settle();
                    }
                    None => out.push(Intent::Flash(format!("no more matches for {query:?}"))),
                }
            }
        }
    }

    pub fn handle(&mut self, action: Action, out: &mut Vec<Intent>) -> bool {
        if let Some(input) = &self.search_input {
            match action {
                Action::Submit => {
                    let query = input.value().to_string();
                    self.search_input = None;
                    self.history_pos = None;
                    self.current = None;
                    if query.is_empty() {
                        self.search = None;
                        self.filter = None;
                    } else {
                        self.history.retain(|h| *h != query);
                        self.history.push(query.clone());
                        let excess = self.history.len().saturating_sub(HISTORY);
                        self.history.drain(..excess);
                        self.search = Some(query);
                        if self.filter.is_some() {
                            self.start_filter(out);
                        } else {
                            self.find(true, out);
                        }
                    }
                }
                Action::Back => {
                    self.search_input = None;
                    self.history_pos = None;
                }
                Action::Up | Action::Down => self.browse_history(action == Action::Up),
                _ => return false,
            }
            return true;
        }
        let page = self.height.max(2) as isize - 1;
        match action {
            Action::Back => out.push(Intent::Close),
            Action::Up => self.scroll(-1, out),
            Action::Down => self.scroll(1, out),
            Action::PageUp => self.scroll(-page, out),
            Action::PageDown => self.scroll(page, out),
            Action::Top => self.go_top(out),
            Action::Bottom => self.go_bottom(out),
            Action::Left => self.hscroll = self.hscroll.saturating_sub(8),
            Action::Right => self.hscroll += 8,
            Action::Follow => {
                if self.following() {
                    *self.follow_mut() = false;
                } else {
                    self.go_bottom(out);
                }
            }
            // A fresh line each time: earlier terms are one ↑ away.
            Action::Search => {
                self.search_input = Some(Input::default());
                self.history_pos = None;
            }
            Action::FilterLines => match (self.tab, &self.filter, &self.search) {
                (Tab::App, _, _) => out.push(Intent::Flash(
                    "& filters the deployment log; in the app log, / and n find the lines".into(),
                )),
                (_, Some(_), _) => {
                    self.filter = None;
                    self.current = None;
                    self.settle();
                }
                (_, None, None) => out.push(Intent::Flash(
                    "press / to search first: & then shows only the matching lines".into(),
                )),
                (_, None, Some(_)) => self.start_filter(out),
            },
            Action::Wrap => self.wrap = !self.wrap,
            Action::NextMatch => self.find(true, out),
            Action::PrevMatch => self.find(false, out),
            Action::SwitchTab => {
                self.tab = match self.tab {
                    Tab::Deployment => Tab::App,
                    Tab::App => Tab::Deployment,
                };
                self.current = None;
                if self.tab == Tab::App && (!self.app.started || self.app.ended.is_some()) {
                    self.app = AppLog {
                        started: true,
                        follow: true,
                        ..AppLog::default()
                    };
                    out.push(Intent::Send(Request::StartAppLog {
                        id: self.id.clone(),
                        lines: APP_TAIL,
                    }));
                }
                self.settle();
            }
            _ => return false,
        }
        true
    }

    /// Shows only the lines matching the search, asking the engine for the whole log's.
    fn start_filter(&mut self, out: &mut Vec<Intent>) {
        let Some(query) = self.search.clone() else {
            return;
        };
        self.current = None;
        self.filter = Some(Filtered {
            query: query.clone(),
            lines: VecDeque::new(),
            total: 0,
            through: 0,
            loaded: false,
            top: 0,
            follow: true,
        });
        out.push(Intent::Send(Request::FilterLog {
            id: self.id.clone(),
            query,
        }));
    }

    /// ↑ (older) or ↓ (newer) through earlier search terms on the search line.
    fn browse_history(&mut self, older: bool) {
        let Some(input) = &mut self.search_input else {
            return;
        };
        let last = self.history.len().checked_sub(1);
        self.history_pos = match (self.history_pos, older, last) {
            (_, _, None) => None,
            (None, true, Some(last)) => Some(last),
            (None, false, _) => None,
            (Some(i), true, _) => Some(i.saturating_sub(1)),
            (Some(i), false, Some(last)) => (i < last).then_some(i + 1),
        };
        *input = match self.history_pos {
            Some(i) => Input::new(self.history[i].clone()),
            None => Input::default(),
        };
    }

    pub fn render(&mut self, frame: &mut Frame, area: Rect, cx: &Ctx) {
        let theme = cx.theme;
        let search_rows = u16::from(self.search_input.is_some());
        let [tabs_area, body, status, search_area] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(search_rows),
        ])
        .areas(area);
        self.height = usize::from(body.height).max(1);
        self.settle();

        let selected = match self.tab {
            Tab::Deployment => 0,
            Tab::App => 1,
        };
        let tabs = Tabs::new(vec!["Deployment log", "App log"])
            .select(selected)
            .style(theme.muted())
            .highlight_style(theme.focused())
            .divider("│");
        let [tabs_left, tabs_right] =
            Layout::horizontal([Constraint::Length(30), Constraint::Fill(1)]).areas(tabs_area);
        frame.render_widget(tabs, tabs_left);
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(self.name.clone(), theme.title()),
                Span::styled(format!(" ({}) ", self.id), theme.muted()),
            ]))
            .right_aligned(),
            tabs_right,
        );

        let width = usize::from(body.width);
        let mut lines: Vec<Line> = Vec::with_capacity(self.height);
        let query = self.search.as_deref().unwrap_or("");
        let wrap = self.wrap;
        let hscroll = if wrap { 0 } else { self.hscroll };
        match self.tab {
            Tab::Deployment => {
                let (source, top, follow) = match &self.filter {
                    Some(f) => (&f.lines, f.top, f.follow),
                    None => (&self.dep.lines, self.dep.top, self.dep.follow),
                };
                // Wrapped and following: start where the last lines fill the pane.
                let top = if wrap && follow {
                    wrapped_start(source, self.height, width)
                } else {
                    top
                };
                let end = (top + self.height).min(source.len());
                for l in source.range(top..end) {
                    let current = self.current == Some(Match::Seq(l.seq));
                    lines.push(log_line(
                        &l.line.text,
                        l.line.stream,
                        Some(format_time(l.line.at, cx.utc_offset, false)),
                        query,
                        current,
                        hscroll,
                        width,
                        wrap,
                        cx,
                    ));
                }
                if let Some(f) = &self.filter {
                    if !f.loaded {
                        lines.push(Line::from(Span::styled(
                            format!(
                                "{} finding /{} in the whole log…",
                                SPINNER[cx.spinner % SPINNER.len()],
                                f.query
                            ),
                            theme.muted(),
                        )));
                    } else if f.lines.is_empty() {
                        lines.push(Line::from(Span::styled(
                            format!(
                                "No line of the log contains {:?} (& shows every line)",
                                f.query
                            ),
                            theme.muted(),
                        )));
                    }
                } else if !self.dep.loaded {
                    lines.push(Line::from(Span::styled(
                        format!("{} loading the log…", SPINNER[cx.spinner % SPINNER.len()]),
                        theme.muted(),
                    )));
                } else if self.dep.lines.is_empty() {
                    lines.push(Line::from(Span::styled("(no lines yet)", theme.muted())));
                }
            }
            Tab::App => {
                let end = (self.app.top + self.height).min(self.app.lines.len());
                for (i, (stream, text)) in self.app.lines.range(self.app.top..end).enumerate() {
                    let abs = self.app.dropped + self.app.top + i;
                    let current = self.current == Some(Match::App(abs));
                    lines.push(log_line(
                        text, *stream, None, query, current, hscroll, width, wrap, cx,
                    ));
                }
                if self.app.lines.is_empty() {
                    let text = match &self.app.ended {
                        Some(Some(e)) => format!("The app's log is unavailable: {e}"),
                        Some(None) => "The app's log ended.".to_string(),
                        None => format!(
                            "{} reading the app's log over SSH…",
                            SPINNER[cx.spinner % SPINNER.len()]
                        ),
                    };
                    lines.push(Line::from(Span::styled(text, theme.muted())));
                }
            }
        }
        let text = if wrap {
            Paragraph::new(lines).wrap(Wrap { trim: false })
        } else {
            Paragraph::new(lines)
        };
        frame.render_widget(text, body);
        frame.render_widget(Paragraph::new(self.status_line(cx)), status);

        if let Some(input) = &self.search_input {
            let prefix = " / ";
            let w = usize::from(search_area.width).saturating_sub(prefix.len() + 1);
            let scroll = input.visual_scroll(w);
            let text: String = input.value().chars().skip(scroll).take(w).collect();
            frame.render_widget(
                Paragraph::new(Line::from(vec![
                    Span::styled(prefix, theme.focused()),
                    Span::raw(text),
                ])),
                search_area,
            );
            let x = search_area.x
                + u16::try_from(prefix.len() + input.visual_cursor().saturating_sub(scroll))
                    .unwrap_or(0);
            frame.set_cursor_position(Position::new(
                x.min(search_area.right().saturating_sub(1)),
                search_area.y,
            ));
        }
    }

    fn status_line(&self, cx: &Ctx) -> Line<'static> {
        let theme = cx.theme;
        let mut spans: Vec<Span> = Vec::new();
        let (len, top, follow) = match (self.tab, &self.filter) {
            (Tab::Deployment, Some(f)) => (f.lines.len(), f.top, f.follow),
            (Tab::Deployment, None) => (self.dep.lines.len(), self.dep.top, self.dep.follow),
            (Tab::App, _) => (self.app.lines.len(), self.app.top, self.app.follow),
        };
        let end = (top + self.height).min(len);
        spans.push(Span::styled(
            if follow { " FOLLOWING " } else { " PAUSED " },
            if follow { theme.ok() } else { theme.warning() }
                .add_modifier(ratatui::style::Modifier::REVERSED),
        ));
        if self.wrap {
            spans.push(Span::styled(
                " WRAP ",
                theme
                    .hint_key()
                    .add_modifier(ratatui::style::Modifier::REVERSED),
            ));
        }
        if let (Tab::Deployment, Some(f)) = (self.tab, &self.filter) {
            spans.push(Span::styled(
                " FILTER ",
                theme
                    .focused()
                    .add_modifier(ratatui::style::Modifier::REVERSED),
            ));
            let text = if !f.loaded {
                format!(" /{}: counting in the whole log…", f.query)
            } else if f.total > f.lines.len() as u64 {
                format!(
                    " /{}: {} matching lines in the whole log, the last {} shown",
                    f.query,
                    f.total,
                    f.lines.len()
                )
            } else {
                let plural = if f.total == 1 { "" } else { "s" };
                format!(
                    " /{}: {} matching line{plural} in the whole log",
                    f.query, f.total
                )
            };
            spans.push(Span::styled(text, theme.hint_key()));
            if len > 0 {
                spans.push(Span::styled(
                    format!(" · {}–{}", top + 1, end),
                    theme.muted(),
                ));
            }
            return Line::from(spans);
        }
        let position = if len == 0 {
            " no lines".to_string()
        } else {
            format!(" lines {}–{} of {len} kept", top + 1, end)
        };
        spans.push(Span::styled(position, theme.muted()));
        if self.tab == Tab::Deployment {
            if !self.dep.at_start {
                spans.push(Span::styled(" · more above", theme.muted()));
            }
            if !self.dep.at_end {
                spans.push(Span::styled(" · more below", theme.muted()));
            }
            if self.dep.pending {
                spans.push(Span::styled(" · loading", theme.spinner()));
            }
        } else if let Some(Some(e)) = &self.app.ended {
            spans.push(Span::styled(format!(" · ended: {e}"), theme.error()));
        }
        if let Some(q) = &self.search {
            let shown = match self.tab {
                Tab::Deployment => self
                    .dep
                    .lines
                    .iter()
                    .filter(|l| !find_all(&l.line.text, q).is_empty())
                    .count(),
                Tab::App => self
                    .app
                    .lines
                    .iter()
                    .filter(|(_, t)| !find_all(t, q).is_empty())
                    .count(),
            };
            let whole = if self.tab == Tab::Deployment {
                " (& for the whole log)"
            } else {
                ""
            };
            spans.push(Span::styled(
                format!(" · /{q}: {shown} of the {len} lines kept{whole}"),
                theme.hint_key(),
            ));
            if self.finding {
                spans.push(Span::styled(" · searching the whole log", theme.spinner()));
            }
        }
        if self.hscroll > 0 && !self.wrap {
            spans.push(Span::styled(
                format!(" · col {}", self.hscroll + 1),
                theme.muted(),
            ));
        }
        Line::from(spans)
    }
}

/// Where to start so that the last lines of `lines`, wrapped at `width`, fill `height` rows.
fn wrapped_start(lines: &VecDeque<SeqLine>, height: usize, width: usize) -> usize {
    // The time (8 + 1) and the gutter mark (2) come before the text.
    let rows = |l: &SeqLine| {
        (11 + l.line.text.chars().count())
            .div_ceil(width.max(1))
            .max(1)
    };
    let mut used = 0;
    let mut start = lines.len();
    while start > 0 {
        let h = rows(&lines[start - 1]);
        if used + h > height {
            break;
        }
        used += h;
        start -= 1;
    }
    start.min(lines.len().saturating_sub(1))
}

/// One log line: time, a gutter mark (`!` stderr, `*` proxdeck), the text (clipped for
/// horizontal scrolling, matches highlighted); `--- stage X ---` lines become separators.
#[allow(clippy::too_many_arguments)]
fn log_line(
    text: &str,
    stream: LogStream,
    time: Option<String>,
    query: &str,
    current: bool,
    hscroll: usize,
    width: usize,
    wrap: bool,
    cx: &Ctx,
) -> Line<'static> {
    let theme = cx.theme;
    let mut spans: Vec<Span> = Vec::new();
    let mut used = 0;
    if let Some(t) = time {
        used += t.chars().count() + 1;
        spans.push(Span::styled(format!("{t} "), theme.muted()));
    }
    if stream == LogStream::Info
        && let Some(stage) = text
            .strip_prefix("--- stage ")
            .and_then(|s| s.strip_suffix(" ---"))
    {
        let head = format!("── stage {stage} ");
        let fill = width.saturating_sub(used + head.chars().count());
        spans.push(Span::styled(
            format!("{head}{}", "─".repeat(fill)),
            theme.stage_marker(),
        ));
        return Line::from(spans);
    }
    let (mark, style) = match stream {
        LogStream::Stdout => (" ", Style::new()),
        LogStream::Stderr => ("!", theme.stderr()),
        LogStream::Info => ("*", theme.info()),
    };
    spans.push(Span::styled(format!("{mark} "), style));
    used += 2;
    // Wrapped, the whole text goes out (the paragraph breaks it); else what fits is clipped.
    let room = if wrap {
        usize::MAX
    } else {
        width.saturating_sub(used)
    };
    let shown = clip(text, hscroll, room);
    let mark_style = if current {
        theme.current_match()
    } else {
        theme.highlight()
    };
    spans.extend(highlighted(&shown, query, style, mark_style));
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LogLine;

    fn line(seq: i64, text: &str) -> SeqLine {
        SeqLine {
            seq,
            line: LogLine {
                at: 0,
                stream: LogStream::Stdout,
                stage: None,
                text: text.to_string(),
            },
        }
    }

    fn lines(from: i64, n: usize) -> Vec<SeqLine> {
        (0..n as i64)
            .map(|i| line(from + i, &format!("line {}", from + i)))
            .collect()
    }

    fn opened() -> LogsScreen {
        let d = Deployment {
            id: DeploymentId("abc123".into()),
            name: "shop".into(),
            ..Deployment::default()
        };
        let (screen, intents) = LogsScreen::open(&d);
        assert_eq!(intents, [Intent::Send(Request::OpenLog(d.id.clone()))]);
        screen
    }

    fn id() -> DeploymentId {
        DeploymentId("abc123".into())
    }

    fn requests(out: &[Intent]) -> Vec<Request> {
        out.iter()
            .filter_map(|i| match i {
                Intent::Send(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn follows_new_lines_and_stays_bounded() {
        let mut s = opened();
        s.height = 10;
        s.apply_page(&id(), LogPageKind::Tail, &lines(1, 100), true, true);
        assert_eq!(s.dep.top, 90, "following shows the bottom");
        // A million lines arrive in batches: memory stays at the window.
        let mut seq = 101;
        for _ in 0..200 {
            s.apply_page(&id(), LogPageKind::Append, &lines(seq, 5_000), false, true);
            seq += 5_000;
        }
        assert_eq!(s.lines_in_memory(), WINDOW);
        assert_eq!(s.dep.last_seq(), Some(seq - 1));
        assert_eq!(s.dep.top, WINDOW - 10);
        assert!(!s.dep.at_start);
        // Lines already held are not appended twice.
        assert!(!s.apply_page(&id(), LogPageKind::Append, &lines(seq - 5, 5), false, true));
        // Another deployment's page is ignored.
        assert!(!s.apply_page(
            &DeploymentId("zzz999".into()),
            LogPageKind::Append,
            &lines(seq, 5),
            false,
            true
        ));
    }

    #[test]
    fn scrolling_up_pauses_and_loads_earlier_pages() {
        let mut s = opened();
        s.height = 10;
        s.apply_page(&id(), LogPageKind::Tail, &lines(5_001, 1_000), false, true);
        let mut out = Vec::new();
        s.handle(Action::PageUp, &mut out);
        assert!(!s.dep.follow);
        assert!(out.is_empty(), "far from the top edge");
        s.handle(Action::Top, &mut out);
        assert_eq!(
            requests(&out),
            [Request::LoadLog {
                id: id(),
                window: LogWindow::After(0)
            }]
        );
        out.clear();
        // Back to where we were, then up to near the top of the window.
        s.dep.pending = false;
        s.dep.top = 150;
        s.scroll(-1, &mut out);
        assert_eq!(
            requests(&out),
            [Request::LoadLog {
                id: id(),
                window: LogWindow::Before(5_001)
            }]
        );
        s.apply_page(
            &id(),
            LogPageKind::Window(LogWindow::Before(5_001)),
            &lines(4_001, 1_000),
            false,
            false,
        );
        assert_eq!(s.dep.first_seq(), Some(4_001));
        assert_eq!(s.dep.top, 1_149, "the view stays on the same lines");
        // New lines still arrive while paused; the view does not move.
        s.apply_page(&id(), LogPageKind::Append, &lines(6_001, 3), false, true);
        assert_eq!(s.dep.top, 1_149);
        assert_eq!(s.dep.last_seq(), Some(6_003));
        // G goes back to the bottom and follows.
        out.clear();
        s.handle(Action::Bottom, &mut out);
        assert!(s.dep.follow);
        assert_eq!(s.dep.top, s.dep.lines.len() - 10);
    }

    #[test]
    fn a_window_away_from_the_end_ignores_appends_until_it_reaches_it() {
        let mut s = opened();
        s.height = 10;
        s.apply_page(
            &id(),
            LogPageKind::Window(LogWindow::After(0)),
            &lines(1, 1_000),
            false,
            false,
        );
        assert!(s.dep.at_start && !s.dep.at_end);
        assert!(!s.apply_page(&id(), LogPageKind::Append, &lines(90_000, 5), false, true));
        let mut out = Vec::new();
        s.dep.top = 850;
        s.scroll(1, &mut out);
        assert_eq!(
            requests(&out),
            [Request::LoadLog {
                id: id(),
                window: LogWindow::After(1_000)
            }]
        );
        s.apply_page(
            &id(),
            LogPageKind::Window(LogWindow::After(1_000)),
            &lines(1_001, 10),
            false,
            true,
        );
        assert!(s.dep.at_end);
        assert_eq!(s.dep.last_seq(), Some(1_010));
    }

    #[test]
    fn search_highlights_moves_and_asks_beyond_the_window() {
        let mut s = opened();
        s.height = 5;
        let mut page = lines(101, 50);
        page[10].line.text = "ERROR: boom".into();
        page[30].line.text = "another error".into();
        s.apply_page(&id(), LogPageKind::Tail, &page, false, true);
        let mut out = Vec::new();
        s.handle(Action::Search, &mut out);
        assert_eq!(s.mode(), Mode::LogSearch);
        for c in "error".chars() {
            s.edit(KeyEvent::new(
                crossterm::event::KeyCode::Char(c),
                crossterm::event::KeyModifiers::NONE,
            ));
        }
        // The search starts from the top of the view (the bottom, following): backwards finds.
        s.dep.top = 0;
        s.dep.follow = false;
        s.handle(Action::Submit, &mut out);
        assert_eq!(s.current, Some(Match::Seq(111)));
        s.handle(Action::NextMatch, &mut out);
        assert_eq!(s.current, Some(Match::Seq(131)));
        s.handle(Action::PrevMatch, &mut out);
        assert_eq!(s.current, Some(Match::Seq(111)));
        // Before it, the window does not reach the start: the engine searches the rest.
        out.clear();
        s.handle(Action::PrevMatch, &mut out);
        assert_eq!(
            requests(&out),
            [Request::FindInLog {
                id: id(),
                query: "error".into(),
                from: 101,
                forward: false
            }]
        );
        out.clear();
        s.apply_match(&id(), "error", Some(7), &mut out);
        assert_eq!(
            requests(&out),
            [Request::LoadLog {
                id: id(),
                window: LogWindow::Around(7)
            }]
        );
        let mut around = lines(2, 10);
        around[5].line.text = "old error".into();
        s.apply_page(
            &id(),
            LogPageKind::Window(LogWindow::Around(7)),
            &around,
            true,
            false,
        );
        assert_eq!(s.current, Some(Match::Seq(7)));
        assert!(s.dep.index_of(7).unwrap() >= s.dep.top);
        out.clear();
        s.apply_match(&id(), "error", None, &mut out);
        assert!(matches!(out.as_slice(), [Intent::Flash(m)] if m.contains("no more matches")));
    }

    #[test]
    fn the_app_tab_starts_the_stream_once_and_closing_stops_it() {
        let mut s = opened();
        let mut out = Vec::new();
        s.handle(Action::SwitchTab, &mut out);
        assert_eq!(
            requests(&out),
            [Request::StartAppLog {
                id: id(),
                lines: APP_TAIL
            }]
        );
        s.apply_app_lines(&id(), LogStream::Stdout, &["GET / 200".to_string()]);
        out.clear();
        s.handle(Action::SwitchTab, &mut out);
        s.handle(Action::SwitchTab, &mut out);
        assert!(out.is_empty(), "already streaming");
        assert_eq!(s.close_requests(), [Request::CloseLog, Request::StopAppLog]);
        for i in 0..(APP_WINDOW + 10) {
            s.apply_app_lines(&id(), LogStream::Stderr, &[format!("{i}")]);
        }
        assert_eq!(s.app.lines.len(), APP_WINDOW);
        s.apply_app_end(&id(), Some("ssh failed".into()));
        assert_eq!(s.close_requests(), [Request::CloseLog]);
    }

    fn type_in(s: &mut LogsScreen, text: &str) {
        for c in text.chars() {
            s.edit(KeyEvent::new(
                crossterm::event::KeyCode::Char(c),
                crossterm::event::KeyModifiers::NONE,
            ));
        }
    }

    fn search_for(s: &mut LogsScreen, text: &str, out: &mut Vec<Intent>) {
        s.handle(Action::Search, out);
        type_in(s, text);
        s.handle(Action::Submit, out);
    }

    fn on_line(s: &LogsScreen) -> String {
        s.search_input
            .as_ref()
            .map(|i| i.value().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn search_starts_empty_and_earlier_terms_are_up_and_down() {
        let mut s = opened();
        s.apply_page(&id(), LogPageKind::Tail, &lines(1, 50), true, true);
        let mut out = Vec::new();
        search_for(&mut s, "line 1", &mut out);
        search_for(&mut s, "line 2", &mut out);
        search_for(&mut s, "line 1", &mut out);
        s.handle(Action::Search, &mut out);
        assert_eq!(
            on_line(&s),
            "",
            "a new term is not appended to the last one"
        );
        s.handle(Action::Up, &mut out);
        assert_eq!(on_line(&s), "line 1", "the latest first, each term once");
        s.handle(Action::Up, &mut out);
        assert_eq!(on_line(&s), "line 2");
        s.handle(Action::Up, &mut out);
        assert_eq!(on_line(&s), "line 2", "the oldest stays");
        s.handle(Action::Down, &mut out);
        assert_eq!(on_line(&s), "line 1");
        s.handle(Action::Down, &mut out);
        assert_eq!(on_line(&s), "", "past the latest: an empty line again");
        type_in(&mut s, "line 3");
        s.handle(Action::Submit, &mut out);
        assert_eq!(s.search.as_deref(), Some("line 3"));
        assert_eq!(s.history.last().map(String::as_str), Some("line 3"));
    }

    #[test]
    fn the_filter_counts_the_whole_log_and_adds_new_matches() {
        let mut s = opened();
        s.height = 5;
        s.apply_page(&id(), LogPageKind::Tail, &lines(901, 100), false, true);
        let mut out = Vec::new();
        s.handle(Action::FilterLines, &mut out);
        assert!(
            matches!(out.as_slice(), [Intent::Flash(m)] if m.contains("press / to search first"))
        );
        out.clear();
        search_for(&mut s, "line 99", &mut out);
        out.clear();
        s.handle(Action::FilterLines, &mut out);
        assert!(s.filtering() && s.busy());
        assert_eq!(
            requests(&out),
            [Request::FilterLog {
                id: id(),
                query: "line 99".into()
            }]
        );
        // A matching line arrives while the engine scans: held, counted once.
        s.apply_page(
            &id(),
            LogPageKind::Append,
            &[line(1_001, "line 99x")],
            false,
            true,
        );
        // The engine's answer: 111 matches in the whole log (line 99, 990-999, 9900-...), the
        // last 3 of them sent, scanned through line 1000.
        let found = [
            line(997, "line 997"),
            line(998, "line 998"),
            line(999, "line 999"),
        ];
        assert!(s.apply_filtered(&id(), "line 99", 111, &found, 1_000));
        assert!(!s.busy());
        let f = s.filter.as_ref().expect("filtering");
        assert_eq!(f.total, 112);
        assert_eq!(
            f.lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
            [997, 998, 999, 1_001]
        );
        // Following: new matches are added and counted; others are not shown.
        s.apply_page(
            &id(),
            LogPageKind::Append,
            &[line(1_002, "nothing"), line(1_003, "LINE 99 again")],
            false,
            true,
        );
        let f = s.filter.as_ref().expect("filtering");
        assert_eq!((f.total, f.lines.len()), (113, 5));
        assert_eq!(f.top, 0, "5 lines fit");
        // n/N step through the matching lines.
        out.clear();
        s.handle(Action::PrevMatch, &mut out);
        assert_eq!(s.current, Some(Match::Seq(1_003)));
        s.handle(Action::PrevMatch, &mut out);
        assert_eq!(s.current, Some(Match::Seq(1_001)));
        // A stale answer (another term) changes nothing; & again shows every line.
        assert!(!s.apply_filtered(&id(), "other", 1, &found, 1_000));
        s.handle(Action::FilterLines, &mut out);
        assert!(!s.filtering());
        assert_eq!(s.dep.lines.len(), 103);
        // A new term while filtering filters again.
        s.handle(Action::FilterLines, &mut out);
        out.clear();
        search_for(&mut s, "error", &mut out);
        assert_eq!(
            requests(&out),
            [Request::FilterLog {
                id: id(),
                query: "error".into()
            }]
        );
    }

    #[test]
    fn wrap_keeps_the_last_lines_in_view_when_following() {
        let mut long = lines(1, 10);
        long[9].line.text = "x".repeat(300);
        // 11 columns of time and mark, then the text: 311 cells, 4 rows at 80 columns.
        let start = wrapped_start(&long.clone().into(), 6, 80);
        assert_eq!(start, 7, "the long last line (4 rows) and two more");
        let start = wrapped_start(&long.into(), 2, 80);
        assert_eq!(start, 9, "a line taller than the pane still shows");
        let mut s = opened();
        let mut out = Vec::new();
        s.handle(Action::Wrap, &mut out);
        assert!(s.wrap);
        s.handle(Action::Wrap, &mut out);
        assert!(!s.wrap);
    }
}
