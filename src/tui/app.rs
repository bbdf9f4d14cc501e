//! `App`: the root state of the TUI and its reducer. Engine events go in through
//! [`App::apply`], keys through [`App::on_ui_event`] (key → `Action` via the keymap, or typed
//! into the focused field in text modes) and [`App::dispatch`] (`Action` → state change);
//! `Request`s for the engine come out of an outbox, and terminal work the loop must do (run
//! an SSH session, suspend) out of an effects list. A `dirty` flag says whether the screen
//! must be redrawn.
//!
//! Owns the shared data (deployments, statistics, cluster, Proxmox state), the stack of
//! screens over the dashboard, the overlays (help, command line, confirmation), the error
//! queue, the operations this UI started, and what each deployment action is allowed to do
//! before it is asked (with a message naming why not). Must not touch the terminal, a channel,
//! a thread or the clock: every behaviour here is testable by calling methods and drawing into
//! a `TestBackend`.

use crate::domain::{
    Deployment, DeploymentId, Job, JobId, OpKind as Kind, Origin, Status, policy, present,
};
use crate::protocol::{
    ClusterSnapshot, EngineEvent, OpKind, Power, ProxmoxState, Request, Settings, ShellCommand,
    Statistics,
};
use crate::tui::UiEvent;
use crate::tui::keys::{self, Action, Mode};
use crate::tui::screens::dashboard::SortKey;
use crate::tui::screens::{
    Ctx, DashboardScreen, DetailsScreen, Intent, LogsScreen, ResourcesScreen, StatsScreen,
    WizardScreen, logs,
};
use crate::tui::theme::Theme;
use crate::tui::widgets::text::SPINNER;
use crate::tui::widgets::{ConfirmPopup, ErrorPopup, HelpPopup, HintBar, MenuPopup};
use crossterm::event::{Event, KeyEvent, KeyEventKind, MouseEventKind};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph};
use std::collections::VecDeque;
use tui_input::Input;
use tui_input::backend::crossterm::to_input_request;

/// Errors beyond this many are dropped (oldest kept): a storm of failures should not bury the
/// user under popups to dismiss one by one.
const MAX_QUEUED_ERRORS: usize = 20;
/// How long a flash message stays, in milliseconds.
const FLASH_MS: u32 = 4_000;
/// Screens kept over the dashboard at most (Enter and l can drill in forever).
const MAX_SCREENS: usize = 8;
/// What `:` knows, for completion and the help.
const COMMANDS: [&str; 9] = [
    "deploy",
    "logs",
    "details",
    "sync",
    "resources",
    "stats",
    "dashboard",
    "help",
    "quit",
];

/// A screen over the dashboard.
pub enum Screen {
    Wizard(Box<WizardScreen>),
    Logs(Box<LogsScreen>),
    Details(Box<DetailsScreen>),
    Resources(ResourcesScreen),
    Stats(StatsScreen),
}

/// What runs after `y` in a confirmation.
#[derive(Debug, Clone, PartialEq)]
enum Then {
    Op {
        op: OpKind,
        target: String,
        request: Request,
    },
    /// Ask the deployment's job to stop.
    Cancel(DeploymentId),
}

#[derive(Debug, Clone, PartialEq)]
struct Confirm {
    title: String,
    lines: Vec<String>,
    then: Then,
}

/// What a menu entry does: the same action its key does, or a sort.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MenuThen {
    Act(Action),
    SortBy(SortKey),
}

#[derive(Debug, Clone, PartialEq)]
struct MenuEntry {
    key: keys::Key,
    /// How the key is written, e.g. `R`.
    label: String,
    words: String,
    /// The current choice (the sort in use).
    marked: bool,
    then: MenuThen,
}

#[derive(Debug, Clone, PartialEq)]
struct Menu {
    title: String,
    entries: Vec<MenuEntry>,
    selected: usize,
    /// Why some actions are missing, when it helps.
    note: Option<String>,
    /// The deployment the actions are for.
    target: Option<DeploymentId>,
}

enum Overlay {
    Help { mode: Mode, scroll: usize },
    Command { input: Input },
    Confirm(Box<Confirm>),
    Menu(Box<Menu>),
}

/// Terminal work for the loop in `tui::run`.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Hand the terminal to this SSH session, then come back.
    Shell(ShellCommand),
    /// Ctrl-Z: give the terminal back to the shell until `fg`.
    Suspend,
}

#[derive(Debug, Clone, PartialEq)]
struct Flash {
    text: String,
    ok: bool,
    /// Milliseconds left.
    left: u32,
}

pub struct App {
    deployments: Vec<Deployment>,
    /// Entries imported by sync (guests proxdeck found), counted apart from deployments.
    imported: usize,
    /// Only the newest rows are held yet: how many there are in all (the full list follows).
    partial: Option<u64>,
    /// False until the engine's first `Deployments` snapshot arrived.
    loaded: bool,
    stats: Option<Statistics>,
    proxmox: ProxmoxState,
    settings: Option<Settings>,
    cluster: Option<Result<ClusterSnapshot, String>>,
    dashboard: DashboardScreen,
    screens: Vec<Screen>,
    /// A wizard closed with Esc: reopened as it was by the next `n`.
    draft: Option<Box<WizardScreen>>,
    overlay: Option<Overlay>,
    /// Shown one at a time, oldest first, each dismissed by the user.
    errors: VecDeque<String>,
    flash: Option<Flash>,
    /// Operations this UI started that have not finished: (kind, target, job once queued).
    pending: Vec<(OpKind, String, Option<JobId>)>,
    /// The queued and running jobs of the worker, whoever started them.
    jobs: Vec<Job>,
    /// Select the deployment with this name when it shows up (a deploy just started).
    select_on_arrival: Option<String>,
    outbox: Vec<Request>,
    effects: Vec<Effect>,
    theme: Theme,
    utc_offset: i32,
    spinner: usize,
    should_quit: bool,
    dirty: bool,
}

impl App {
    pub fn new(theme: Theme) -> App {
        App {
            deployments: Vec::new(),
            imported: 0,
            partial: None,
            loaded: false,
            stats: None,
            proxmox: ProxmoxState::Connecting,
            settings: None,
            cluster: None,
            dashboard: DashboardScreen::default(),
            screens: Vec::new(),
            draft: None,
            overlay: None,
            errors: VecDeque::new(),
            flash: None,
            pending: Vec::new(),
            jobs: Vec::new(),
            select_on_arrival: None,
            outbox: Vec::new(),
            effects: Vec::new(),
            theme,
            utc_offset: 0,
            spinner: 0,
            should_quit: false,
            dirty: true,
        }
    }

    /// Clock times are shown `offset_secs` east of UTC (the local time zone).
    pub fn with_utc_offset(mut self, offset_secs: i32) -> App {
        self.utc_offset = offset_secs;
        self
    }

    pub fn mode(&self) -> Mode {
        if !self.errors.is_empty() {
            return Mode::ErrorPopup;
        }
        match &self.overlay {
            Some(Overlay::Confirm(_)) => return Mode::Confirm,
            Some(Overlay::Menu(_)) => return Mode::Menu,
            Some(Overlay::Help { .. }) => return Mode::Help,
            Some(Overlay::Command { .. }) => return Mode::Command,
            None => {}
        }
        self.screen_mode()
    }

    /// The mode of the screen on top, ignoring overlays.
    fn screen_mode(&self) -> Mode {
        match self.screens.last() {
            None if self.dashboard.is_filtering() => Mode::Filter,
            None => Mode::Dashboard,
            Some(Screen::Wizard(w)) => w.mode(),
            Some(Screen::Logs(l)) => l.mode(),
            Some(Screen::Details(_)) => Mode::Details,
            Some(Screen::Resources(_)) => Mode::Resources,
            Some(Screen::Stats(_)) => Mode::Stats,
        }
    }

    pub fn deployments(&self) -> &[Deployment] {
        &self.deployments
    }

    pub fn selected(&self) -> Option<&Deployment> {
        self.dashboard
            .selected_index(&self.deployments)
            .map(|i| &self.deployments[i])
    }

    /// The error the popup shows, if any.
    pub fn current_error(&self) -> Option<&str> {
        self.errors.front().map(String::as_str)
    }

    /// The flash message of the status line, if any.
    pub fn flash(&self) -> Option<&str> {
        self.flash.as_ref().map(|f| f.text.as_str())
    }

    pub fn should_quit(&self) -> bool {
        self.should_quit
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Something moves on screen by itself (spinners): the loop ticks faster.
    pub fn animating(&self) -> bool {
        let screen_busy = self.screens.iter().any(|s| match s {
            Screen::Wizard(w) => w.busy(),
            Screen::Logs(l) => l.busy(),
            Screen::Details(d) => d.busy(),
            Screen::Resources(r) => r.busy(),
            Screen::Stats(_) => false,
        });
        screen_busy
            || !self.pending.is_empty()
            || self.deployments.iter().any(|d| d.status.is_in_flight())
    }

    /// Whether the log pane on top waits for the engine (its first page, a page, a search).
    pub fn logs_loading(&self) -> bool {
        match self.screens.last() {
            Some(Screen::Logs(l)) => l.busy(),
            _ => false,
        }
    }

    /// Requests produced since the last call, in order.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.outbox)
    }

    /// Terminal work produced since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// One event from the UI's inbox.
    pub fn on_ui_event(&mut self, event: UiEvent) {
        match event {
            UiEvent::Input(Event::Key(key)) => self.on_key(key),
            UiEvent::Input(Event::Mouse(mouse)) => {
                let action = match mouse.kind {
                    MouseEventKind::ScrollUp => Action::Up,
                    MouseEventKind::ScrollDown => Action::Down,
                    _ => return,
                };
                let times = if matches!(self.mode(), Mode::Logs) {
                    logs::WHEEL
                } else {
                    1
                };
                for _ in 0..times {
                    self.dispatch(action);
                }
            }
            UiEvent::Input(Event::Resize(..)) => self.dirty = true,
            UiEvent::Input(_) => {}
            // The snapshot is moved in, not copied: thousands of entries cost nothing extra.
            UiEvent::Engine(EngineEvent::Deployments(list)) => self.set_deployments(list),
            UiEvent::Engine(EngineEvent::DeploymentsHead { list, total }) => {
                self.set_head(list, total);
            }
            UiEvent::Engine(event) => self.apply(&event),
            UiEvent::EngineClosed => self.show_error(
                "The engine stopped, so this screen no longer updates. Press q to quit; the \
                 reason is in proxdeck's log."
                    .to_string(),
            ),
            UiEvent::Tick => self.tick(),
        }
    }

    fn tick(&mut self) {
        self.spinner = self.spinner.wrapping_add(1);
        // The loop ticks at the rate `tick_interval` gives for the same state.
        let elapsed = crate::tui::tick_interval(self.animating()).as_millis();
        if let Some(f) = &mut self.flash {
            f.left = f
                .left
                .saturating_sub(u32::try_from(elapsed).unwrap_or(u32::MAX));
            if f.left == 0 {
                self.flash = None;
                self.dirty = true;
            }
        }
        let mut intents = Vec::new();
        if let Some(Screen::Wizard(w)) = self.screens.last_mut() {
            w.tick(&mut intents);
        }
        self.run_intents(intents);
        // Ages in the table and spinners move with the clock.
        self.dirty |= !self.deployments.is_empty() || self.animating();
    }

    /// What a key means here: an action from the keymap, or text for the focused field.
    fn on_key(&mut self, key: KeyEvent) {
        // Releases (reported on Windows and by the kitty protocol) are ignored so one press is
        // one action; repeats act, so holding `j` scrolls.
        if key.kind == KeyEventKind::Release {
            return;
        }
        let mode = self.mode();
        match keys::action_for(mode, &key) {
            Some(action) => self.dispatch(action),
            None if mode.is_text() => self.type_key(mode, key),
            // In a menu, an entry's own key runs it.
            None if mode == Mode::Menu => {
                let found = match &self.overlay {
                    Some(Overlay::Menu(m)) => m.entries.iter().position(|e| e.key.matches(&key)),
                    _ => None,
                };
                if let Some(i) = found {
                    self.choose(i);
                }
            }
            None => {}
        }
    }

    fn type_key(&mut self, mode: Mode, key: KeyEvent) {
        let changed = match mode {
            Mode::Filter => {
                let changed = to_input_request(&Event::Key(key))
                    .and_then(|r| self.dashboard.filter_input().handle(r))
                    .is_some();
                if changed {
                    self.dashboard.rebuild(&self.deployments);
                }
                changed
            }
            Mode::Command => match &mut self.overlay {
                Some(Overlay::Command { input }) => to_input_request(&Event::Key(key))
                    .and_then(|r| input.handle(r))
                    .is_some(),
                _ => false,
            },
            Mode::WizardText | Mode::WizardEnvEdit => match self.screens.last_mut() {
                Some(Screen::Wizard(w)) => w.edit(key),
                _ => false,
            },
            Mode::LogSearch => match self.screens.last_mut() {
                Some(Screen::Logs(l)) => l.edit(key),
                _ => false,
            },
            _ => false,
        };
        self.dirty |= changed;
    }

    /// Acts on one action in the current mode.
    pub fn dispatch(&mut self, action: Action) {
        let mode = self.mode();
        match action {
            Action::Quit => return self.request_quit(),
            Action::Suspend => return self.effects.push(Effect::Suspend),
            _ => {}
        }
        self.dirty = true;
        match mode {
            Mode::ErrorPopup => {
                if action == Action::DismissError {
                    self.errors.pop_front();
                }
            }
            Mode::Confirm => self.on_confirm(action),
            Mode::Menu => self.on_menu(action),
            Mode::Help => {
                if let Some(Overlay::Help { scroll, .. }) = &mut self.overlay {
                    match action {
                        Action::Back => self.overlay = None,
                        Action::Up => *scroll = scroll.saturating_sub(1),
                        Action::Down => *scroll += 1,
                        Action::PageUp => *scroll = scroll.saturating_sub(10),
                        Action::PageDown => *scroll += 10,
                        _ => {}
                    }
                }
            }
            Mode::Command => self.on_command_line(action),
            _ if action == Action::Help => {
                self.overlay = Some(Overlay::Help {
                    mode: self.screen_mode(),
                    scroll: 0,
                });
            }
            _ if action == Action::OpenCommand => {
                self.overlay = Some(Overlay::Command {
                    input: Input::default(),
                });
            }
            Mode::Filter | Mode::Dashboard => self.on_dashboard(action),
            _ => self.on_screen(action),
        }
    }

    fn on_dashboard(&mut self, action: Action) {
        let list = &self.deployments;
        match action {
            Action::Submit => self.dashboard.keep_filter(),
            Action::Back => {
                self.dashboard.clear_filter(list);
            }
            Action::OpenFilter => self.dashboard.start_filter(),
            Action::Up
            | Action::Down
            | Action::Top
            | Action::Bottom
            | Action::PageUp
            | Action::PageDown
            | Action::SortReverse => {
                self.dirty = self.dashboard.handle_action(action, list);
            }
            Action::Sort => self.open_sort_menu(),
            Action::Refresh => self.outbox.push(Request::RefreshDeployments),
            Action::NewDeploy => self.open_wizard(),
            Action::Resources => self.open_resources(),
            Action::Stats => self.open_stats(),
            _ => match self.selected().cloned() {
                Some(d) => self.deployment_action(action, &d),
                None => {
                    if is_deployment_action(action) {
                        self.note("No deployment selected.", false);
                    }
                }
            },
        }
    }

    /// An action on the screen on top of the stack.
    fn on_screen(&mut self, action: Action) {
        let mut intents = Vec::new();
        let cluster = self.cluster.as_ref();
        let Some(top) = self.screens.last_mut() else {
            return;
        };
        // Deployment actions (logs, destroy, ...) of the details screen, and of the
        // resources screen for a guest proxdeck knows, are the same as on the dashboard.
        let target: Option<DeploymentId> = match top {
            Screen::Details(d) if is_deployment_action(action) => Some(d.id().clone()),
            Screen::Resources(r)
                if matches!(
                    action,
                    Action::Start | Action::Stop | Action::Details | Action::Forget
                ) =>
            {
                match r.selected_guest(cluster) {
                    Some(g) => match &g.entry {
                        Some(e) => Some(e.id.clone()),
                        None => {
                            let text = format!(
                                "vmid {} is not known to proxdeck: press i to import the cluster's guests (sync) first",
                                g.vmid
                            );
                            self.note(&text, false);
                            return;
                        }
                    },
                    None => return,
                }
            }
            _ => None,
        };
        // Snapshots and auto-deploy: the details screen knows which snapshot and the state.
        if let Screen::Details(ds) = top
            && matches!(action, Action::Restore | Action::AutoDeploy)
        {
            let (snapshot, auto) = (ds.selected_snapshot(), ds.auto_deploy());
            let id = ds.id().clone();
            match self.deployments.iter().find(|d| d.id == id).cloned() {
                Some(d) => self.snapshot_action(action, &d, snapshot, auto),
                None => self.note("That deployment is no longer in the list.", false),
            }
            return;
        }
        if let Some(id) = target {
            match self.deployments.iter().find(|d| d.id == id).cloned() {
                Some(d) => self.deployment_action(action, &d),
                None => self.note("That deployment is no longer in the list.", false),
            }
            return;
        }
        let changed = match top {
            Screen::Wizard(w) => w.handle(action, cluster, &mut intents),
            Screen::Logs(l) => l.handle(action, &mut intents),
            Screen::Details(d) => d.handle(action, &mut intents),
            Screen::Resources(r) => {
                if action == Action::Sync {
                    self.run_op(OpKind::Sync, String::new(), Request::Sync);
                    return;
                }
                r.handle(action, cluster, &mut intents)
            }
            Screen::Stats(s) => s.handle(action, &mut intents),
        };
        self.dirty = changed || !intents.is_empty();
        self.run_intents(intents);
    }

    fn run_intents(&mut self, intents: Vec<Intent>) {
        for intent in intents {
            self.dirty = true;
            match intent {
                Intent::Send(request) => self.outbox.push(request),
                Intent::Close => self.close_top(),
                Intent::Flash(text) => self.note(&text, false),
                Intent::Deploy(input) => {
                    let target = input.name.clone().unwrap_or_else(|| input.repo.clone());
                    self.select_on_arrival = input.name.clone();
                    self.run_op(OpKind::Deploy, target, Request::Deploy(input));
                    // The wizard is done: the next `n` starts a fresh one.
                    if let Some(Screen::Wizard(_)) = self.screens.last() {
                        self.screens.pop();
                    }
                    self.draft = None;
                }
            }
        }
    }

    fn close_top(&mut self) {
        match self.screens.pop() {
            Some(Screen::Logs(l)) => self.outbox.extend(l.close_requests()),
            Some(Screen::Wizard(w)) => self.draft = Some(w),
            _ => {}
        }
    }

    fn push_screen(&mut self, screen: Screen, intents: Vec<Intent>) {
        if self.screens.len() >= MAX_SCREENS {
            let old = self.screens.remove(0);
            if let Screen::Logs(l) = old {
                self.outbox.extend(l.close_requests());
            }
        }
        // One log pane at a time: the engine follows one log.
        if matches!(screen, Screen::Logs(_)) {
            let mut kept = Vec::new();
            for s in self.screens.drain(..) {
                match s {
                    Screen::Logs(_) => {}
                    other => kept.push(other),
                }
            }
            self.screens = kept;
        }
        self.screens.push(screen);
        self.run_intents(intents);
    }

    fn open_wizard(&mut self) {
        let wizard = self.draft.take().unwrap_or_default();
        if !matches!(self.cluster, Some(Ok(_))) {
            self.cluster = None;
            self.outbox.push(Request::LoadResources);
        }
        self.push_screen(Screen::Wizard(wizard), Vec::new());
    }

    fn open_logs(&mut self, d: &Deployment) {
        if let Some(Screen::Logs(l)) = self.screens.last()
            && l.id() == &d.id
        {
            return;
        }
        let (screen, intents) = LogsScreen::open(d);
        self.push_screen(Screen::Logs(Box::new(screen)), intents);
    }

    fn open_details(&mut self, d: &Deployment) {
        if let Some(Screen::Details(s)) = self.screens.last()
            && s.id() == &d.id
        {
            return;
        }
        let (screen, intents) = DetailsScreen::open(d);
        self.push_screen(Screen::Details(Box::new(screen)), intents);
    }

    fn open_resources(&mut self) {
        if let Some(Screen::Resources(_)) = self.screens.last() {
            return;
        }
        let (screen, intents) = ResourcesScreen::open();
        self.push_screen(Screen::Resources(screen), intents);
    }

    fn open_stats(&mut self) {
        if let Some(Screen::Stats(_)) = self.screens.last() {
            return;
        }
        let (screen, intents) = StatsScreen::open();
        self.push_screen(Screen::Stats(screen), intents);
    }

    fn note(&mut self, text: &str, ok: bool) {
        self.flash = Some(Flash {
            text: text.to_string(),
            ok,
            left: FLASH_MS,
        });
        self.dirty = true;
    }

    fn run_op(&mut self, op: OpKind, target: String, request: Request) {
        let name = self.name_of(&target);
        self.pending.push((op, target, None));
        self.outbox.push(request);
        let what = if op == OpKind::Sync {
            "sync started…".to_string()
        } else {
            format!("{} {name} started…", op.as_str())
        };
        self.note(&what, true);
    }

    /// A deployment's name for messages (targets are ids, or a name for deploys).
    fn name_of(&self, target: &str) -> String {
        self.deployments
            .iter()
            .find(|d| d.id.0 == target)
            .map_or_else(|| target.to_string(), |d| d.name.clone())
    }

    fn ask(&mut self, title: String, lines: Vec<String>, then: Then) {
        self.overlay = Some(Overlay::Confirm(Box::new(Confirm { title, lines, then })));
        self.dirty = true;
    }

    /// Quitting never stops work: jobs run in proxdeck's worker, not in this process. What goes
    /// on is said after the terminal is restored ([`App::farewell`]).
    fn request_quit(&mut self) {
        // `tui::run` sends `Request::Shutdown` on every way out, errors included.
        self.should_quit = true;
    }

    /// What to print when the dashboard has closed: the jobs that go on in the worker.
    pub fn farewell(&self) -> Option<String> {
        let named: Vec<(Job, String)> = self
            .jobs
            .iter()
            .map(|j| {
                let name = j
                    .deployment
                    .as_ref()
                    .map(|id| self.name_of(&id.0))
                    .unwrap_or_default();
                (j.clone(), name)
            })
            .collect();
        present::work_goes_on(&named)
    }

    /// The active job of a deployment, if any.
    fn job_of(&self, d: &Deployment) -> Option<&Job> {
        self.jobs
            .iter()
            .find(|j| j.deployment.as_ref() == Some(&d.id))
    }

    /// Runs `op` on `d` when the shared rules allow it, else says why in their words.
    fn allowed(&mut self, op: Kind, d: &Deployment) -> bool {
        if let Some(j) = self.job_of(d) {
            self.note(
                &format!(
                    "{} has work already: {} (c cancels it)",
                    present::who(d),
                    present::job_phrase(j)
                ),
                false,
            );
            return false;
        }
        match policy::check(op, d) {
            Ok(()) => true,
            Err(refusal) => {
                self.note(&refusal.0, false);
                false
            }
        }
    }

    /// The menu of what may be done to `d`: the rules of `domain::policy` (as the keys check
    /// them), each entry with the key of this screen that does the same.
    fn open_action_menu(&mut self, d: &Deployment) {
        let mode = self.screen_mode();
        let job = self.job_of(d).cloned();
        let mut actions = vec![Action::Details, Action::Logs];
        if d.ip.is_some() && d.status != Status::Deleted {
            actions.push(Action::Shell);
        }
        let mut note = None;
        match &job {
            Some(j) => {
                actions.push(Action::Cancel);
                note = Some(format!(
                    "{}: other actions wait for it to end.",
                    present::job_phrase(j)
                ));
            }
            None => {
                let allowed = policy::allowed(d);
                actions.extend(allowed.iter().filter_map(|op| action_of(*op)));
                if allowed.is_empty() {
                    note = Some(format!(
                        "Nothing else may be done to it while it is {}.",
                        d.status
                    ));
                }
            }
        }
        let entries: Vec<MenuEntry> = actions
            .into_iter()
            .filter_map(|action| {
                let binding = keys::bindings(mode).iter().find(|b| b.action == action)?;
                Some(MenuEntry {
                    key: *binding.keys.first()?,
                    label: binding.label.to_string(),
                    words: binding.description.to_string(),
                    marked: false,
                    then: MenuThen::Act(action),
                })
            })
            .collect();
        self.overlay = Some(Overlay::Menu(Box::new(Menu {
            title: format!("{} ({})", d.name, d.id),
            entries,
            selected: 0,
            note,
            target: Some(d.id.clone()),
        })));
    }

    /// The sort menu: a key per column; the column in use again reverses.
    fn open_sort_menu(&mut self) {
        let (current, reverse) = self.dashboard.sort();
        let entries = SortKey::ALL
            .into_iter()
            .map(|k| MenuEntry {
                key: keys::Key::char(k.key()),
                label: k.key().to_string(),
                words: if k == current {
                    format!(
                        "{} ({})",
                        k.label(),
                        if reverse {
                            "reversed"
                        } else {
                            "again: reverse"
                        }
                    )
                } else {
                    k.label().to_string()
                },
                marked: k == current,
                then: MenuThen::SortBy(k),
            })
            .collect();
        let selected = SortKey::ALL.iter().position(|k| *k == current).unwrap_or(0);
        self.overlay = Some(Overlay::Menu(Box::new(Menu {
            title: "Sort by".to_string(),
            entries,
            selected,
            note: None,
            target: None,
        })));
    }

    fn on_menu(&mut self, action: Action) {
        let Some(Overlay::Menu(menu)) = &mut self.overlay else {
            return;
        };
        let last = menu.entries.len().saturating_sub(1);
        match action {
            Action::Up => menu.selected = menu.selected.saturating_sub(1),
            Action::Down => menu.selected = (menu.selected + 1).min(last),
            Action::Submit => {
                let i = menu.selected;
                self.choose(i);
            }
            Action::Back => self.overlay = None,
            _ => {}
        }
    }

    /// Runs entry `i` of the open menu, as its key would.
    fn choose(&mut self, i: usize) {
        let Some(Overlay::Menu(menu)) = self.overlay.take() else {
            return;
        };
        self.dirty = true;
        let Some(entry) = menu.entries.get(i) else {
            return;
        };
        match entry.then {
            MenuThen::SortBy(key) => self.dashboard.sort_by(key, &self.deployments),
            MenuThen::Act(action) => {
                let found = menu
                    .target
                    .as_ref()
                    .and_then(|id| self.deployments.iter().find(|d| &d.id == id))
                    .cloned();
                match found {
                    Some(d) => self.deployment_action(action, &d),
                    None => self.note("That deployment is no longer in the list.", false),
                }
            }
        }
    }

    fn on_confirm(&mut self, action: Action) {
        let Some(Overlay::Confirm(confirm)) = self.overlay.take() else {
            return;
        };
        match action {
            Action::Yes => match confirm.then {
                Then::Cancel(id) => {
                    self.outbox.push(Request::Cancel(id));
                    self.note("asking the job to stop…", true);
                }
                Then::Op {
                    op,
                    target,
                    request,
                } => self.run_op(op, target, request),
            },
            Action::No => {}
            _ => self.overlay = Some(Overlay::Confirm(confirm)),
        }
    }

    /// Restore the snapshot under the cursor (asks first), or turn auto-deploy on or off.
    fn snapshot_action(
        &mut self,
        action: Action,
        d: &Deployment,
        snapshot: Option<String>,
        auto: Option<bool>,
    ) {
        let who = present::who(d);
        let id = d.id.clone();
        if action == Action::AutoDeploy {
            match auto {
                Some(on) => self.outbox.push(Request::AutoDeploy { id, on: !on }),
                None => self.note("auto-deploy: still loading", false),
            }
            return;
        }
        let Some(snapshot) = snapshot else {
            self.note(&format!("{who} has no snapshot to restore"), false);
            return;
        };
        if self.allowed(Kind::Restore, d) {
            self.ask(
                format!("Restore {}?", d.name),
                vec![
                    format!("{who}: the guest is shut down and rolled back to snapshot {snapshot}."),
                    "What changed on it since (files, databases) is lost; the app is started and checked.".into(),
                ],
                Then::Op {
                    op: OpKind::Restore,
                    target: id.0.clone(),
                    request: Request::Restore { id, snapshot },
                },
            );
        }
    }

    /// What a deployment action does to `d`, checked here first against the shared rules
    /// (`domain::policy`) so the user reads why not, in the CLI's words, without a round trip
    /// (the worker checks again).
    // Each arm checks its rule first and says why not: collapsing them into guards would hide
    // that the check has an effect (the note).
    #[allow(clippy::collapsible_match)]
    fn deployment_action(&mut self, action: Action, d: &Deployment) {
        let who = format!("{} ({})", d.name, d.id);
        let id = d.id.clone();
        let target = id.0.clone();
        match action {
            Action::Menu => self.open_action_menu(d),
            Action::Logs => self.open_logs(d),
            Action::Details => self.open_details(d),
            Action::Shell => {
                if d.status == Status::Deleted {
                    self.note(
                        &format!("{who} is deleted: there is no guest to open a shell on"),
                        false,
                    );
                } else if d.ip.is_none() {
                    self.note(&format!("{who} has no address yet"), false);
                } else {
                    self.outbox.push(Request::PrepareShell(id));
                    self.note(&format!("connecting to {} over SSH…", d.name), true);
                }
            }
            Action::Retry => {
                if self.allowed(Kind::Retry, d) {
                    self.run_op(OpKind::Retry, target, Request::Retry(id));
                }
            }
            Action::Redeploy => {
                if self.allowed(Kind::Redeploy, d) {
                    self.run_op(
                        OpKind::Redeploy,
                        target,
                        Request::Redeploy { id, git_ref: None },
                    );
                }
            }
            Action::Rollback => {
                if self.allowed(Kind::Rollback, d) {
                    let commit = d.previous_commit.clone().unwrap_or_default();
                    self.ask(
                        format!("Roll back {}?", d.name),
                        vec![
                            format!("{who} goes back to commit {commit}, rebuilt and restarted on the same guest."),
                            format!("The current commit {} stays as the one to return to.", d.commit.as_deref().unwrap_or("?")),
                        ],
                        Then::Op { op: OpKind::Rollback, target, request: Request::Rollback(id) },
                    );
                }
            }
            Action::Start | Action::Stop | Action::Restart => {
                let (power, op, kind) = match action {
                    Action::Start => (Power::Start, OpKind::Start, Kind::Start),
                    Action::Stop => (Power::Stop, OpKind::Stop, Kind::Stop),
                    _ => (Power::Restart, OpKind::Restart, Kind::Restart),
                };
                if !self.allowed(kind, d) {
                    return;
                }
                let request = Request::Power { id, action: power };
                if action == Action::Start {
                    self.run_op(op, target, request);
                } else {
                    let guest = guest_words(d);
                    let what = if action == Action::Stop {
                        "It shuts down cleanly and is forced off after 60 s; the app stops answering."
                    } else {
                        "It reboots; the app is briefly unavailable."
                    };
                    self.ask(
                        format!("{} {}?", op.as_str(), d.name),
                        vec![format!("{who}: {guest}."), what.to_string()],
                        Then::Op {
                            op,
                            target,
                            request,
                        },
                    );
                }
            }
            Action::Destroy => {
                if self.allowed(Kind::Destroy, d) {
                    let what = if d.origin == crate::domain::Origin::Host {
                        format!(
                            "The app and its service are removed from {}; the host stays.",
                            d.ip.as_deref().unwrap_or("the host")
                        )
                    } else {
                        format!("terraform destroy deletes its guest: {}.", guest_words(d))
                    };
                    self.ask(
                        format!("Destroy {}?", d.name),
                        vec![
                            format!("Destroy {who}?"),
                            what,
                            "The record stays, as DELETED, with its log.".into(),
                        ],
                        Then::Op {
                            op: OpKind::Destroy,
                            target,
                            request: Request::Destroy(id),
                        },
                    );
                }
            }
            Action::Forget => {
                if self.allowed(Kind::Forget, d) {
                    self.ask(
                        format!("Forget {}?", d.name),
                        vec![
                            format!("{who} and its history leave proxdeck."),
                            "Nothing on Proxmox is touched; a later sync imports the guest again."
                                .into(),
                        ],
                        Then::Op {
                            op: OpKind::Forget,
                            target,
                            request: Request::Forget(id),
                        },
                    );
                }
            }
            Action::Cancel => match self.job_of(d).cloned() {
                Some(j) => {
                    let what = if j.state == crate::domain::JobState::Queued {
                        "It has not started: it leaves the queue and nothing is done.".to_string()
                    } else {
                        "It stops gracefully: terraform saves its state, the provisioning run is stopped; `retry` continues from there.".to_string()
                    };
                    self.ask(
                        format!("Cancel {} of {}?", j.kind(), d.name),
                        vec![format!("{who}: {}.", present::job_phrase(&j)), what],
                        Then::Cancel(id),
                    );
                }
                None => self.note(&format!("{who} has no queued or running job"), false),
            },
            _ => {}
        }
    }

    fn on_command_line(&mut self, action: Action) {
        let Some(Overlay::Command { input }) = &self.overlay else {
            return;
        };
        let typed = input.value().to_string();
        match action {
            Action::Back => self.overlay = None,
            Action::Complete => {
                let candidates = self.completions(&typed);
                if let Some(Overlay::Command { input }) = &mut self.overlay
                    && let Some(first) = candidates.first()
                {
                    let common = common_prefix(&candidates);
                    let value = if candidates.len() == 1 {
                        format!("{first} ")
                    } else {
                        common
                    };
                    if value.len() >= input.value().len() {
                        *input = Input::new(value);
                    }
                }
            }
            Action::Submit => {
                self.overlay = None;
                self.run_command(typed.trim());
            }
            _ => {}
        }
    }

    /// Completions of what is typed on the command line: a command, or for `logs` and
    /// `details` a deployment's name.
    fn completions(&self, typed: &str) -> Vec<String> {
        let typed = typed.trim_start();
        match typed.split_once(' ') {
            None => COMMANDS
                .iter()
                .filter(|c| c.starts_with(typed))
                .map(|c| c.to_string())
                .collect(),
            Some((cmd, arg)) if matches!(cmd, "logs" | "details") => {
                let arg = arg.trim_start();
                let mut names: Vec<String> = self
                    .deployments
                    .iter()
                    .filter(|d| d.status != Status::Deleted && d.name.starts_with(arg))
                    .map(|d| format!("{cmd} {}", d.name))
                    .collect();
                names.sort();
                names.dedup();
                names
            }
            Some(_) => Vec::new(),
        }
    }

    fn find_deployment(&self, key: &str) -> Option<Deployment> {
        let live = |d: &&Deployment| d.status != Status::Deleted;
        self.deployments
            .iter()
            .find(|d| d.id.0 == key)
            .or_else(|| self.deployments.iter().filter(live).find(|d| d.name == key))
            .or_else(|| self.deployments.iter().find(|d| d.name == key))
            .cloned()
    }

    fn run_command(&mut self, line: &str) {
        let (cmd, arg) = match line.split_once(' ') {
            Some((c, a)) => (c, a.trim()),
            None => (line, ""),
        };
        let target = |app: &App| -> Option<Deployment> {
            if arg.is_empty() {
                app.selected().cloned()
            } else {
                app.find_deployment(arg)
            }
        };
        match cmd {
            "" => {}
            "q" | "quit" | "q!" => self.request_quit(),
            "deploy" | "new" => self.open_wizard(),
            "sync" => self.run_op(OpKind::Sync, String::new(), Request::Sync),
            "resources" | "res" | "pve" => self.open_resources(),
            "stats" | "statistics" => self.open_stats(),
            "dashboard" | "dash" | "deployments" | "home" => {
                while !self.screens.is_empty() {
                    self.close_top();
                }
            }
            "help" | "h" => {
                self.overlay = Some(Overlay::Help {
                    mode: self.screen_mode(),
                    scroll: 0,
                });
            }
            "logs" | "log" | "details" | "show" => match target(self) {
                Some(d) if cmd.starts_with("log") => self.open_logs(&d),
                Some(d) => self.open_details(&d),
                None if arg.is_empty() => self.note("no deployment selected: :logs NAME", false),
                None => self.note(&format!("no deployment named {arg:?}"), false),
            },
            other => self.note(
                &format!(
                    "unknown command :{other} (try :deploy, :logs NAME, :sync, :resources, :stats, :q)"
                ),
                false,
            ),
        }
        self.dirty = true;
    }

    /// The SSH session the loop ran has ended.
    pub fn shell_finished(&mut self, cmd: &ShellCommand, result: Result<i32, String>) {
        match result {
            Ok(code) => self.note(
                &format!("back from the shell on {} (exit status {code})", cmd.name),
                code == 0,
            ),
            Err(e) => self.show_error(format!("could not run ssh for {}: {e}", cmd.name)),
        }
        self.dirty = true;
    }

    /// The terminal was given back (after a shell or a suspend): draw everything again.
    pub fn redraw(&mut self) {
        self.dirty = true;
    }

    fn show_error(&mut self, message: String) {
        if self.errors.len() < MAX_QUEUED_ERRORS {
            self.errors.push_back(message);
            self.dirty = true;
        }
    }

    /// The wizard on the stack, or the draft.
    fn wizard_mut(&mut self) -> Option<&mut WizardScreen> {
        let on_stack = self.screens.iter_mut().rev().find_map(|s| match s {
            Screen::Wizard(w) => Some(w.as_mut()),
            _ => None,
        });
        match on_stack {
            Some(w) => Some(w),
            None => self.draft.as_deref_mut(),
        }
    }

    fn logs_mut(&mut self) -> Option<&mut LogsScreen> {
        self.screens.iter_mut().rev().find_map(|s| match s {
            Screen::Logs(l) => Some(l.as_mut()),
            _ => None,
        })
    }

    /// The newest rows of a long list, ahead of the list: drawn at once, unless the full list
    /// is already here.
    fn set_head(&mut self, list: Vec<Deployment>, total: u64) {
        if !self.loaded {
            self.set_deployments(list);
            self.partial = Some(total);
        }
    }

    /// A new snapshot of the deployments from the engine.
    fn set_deployments(&mut self, list: Vec<Deployment>) {
        self.deployments = list;
        self.partial = None;
        self.imported = self
            .deployments
            .iter()
            .filter(|d| d.origin == Origin::Imported && d.status != Status::Deleted)
            .count();
        self.dashboard.rebuild(&self.deployments);
        self.loaded = true;
        if let Some(name) = self.select_on_arrival.clone()
            && let Some(d) = self
                .deployments
                .iter()
                .find(|d| d.name == name && d.status != Status::Deleted)
        {
            let id = d.id.clone();
            self.dashboard.select(&id, &self.deployments);
            self.select_on_arrival = None;
        }
        let mut intents = Vec::new();
        for s in &mut self.screens {
            if let Screen::Details(d) = s {
                d.on_list(&self.deployments, &mut intents);
            }
        }
        self.run_intents(intents);
        self.dirty = true;
    }

    /// Folds one engine event into the state.
    pub fn apply(&mut self, event: &EngineEvent) {
        match event {
            EngineEvent::Deployments(list) => self.set_deployments(list.clone()),
            EngineEvent::DeploymentsHead { list, total } => self.set_head(list.clone(), *total),
            // Shown at once; the full snapshot that follows (the store changed) confirms it.
            EngineEvent::StatusChanged { id, status, stage } => {
                if let Some(d) = self.deployments.iter_mut().find(|d| &d.id == id) {
                    d.status = *status;
                    d.stage = *stage;
                    self.dashboard.rebuild(&self.deployments);
                    self.dirty = true;
                }
            }
            EngineEvent::StageStarted { id, stage } => {
                if let Some(d) = self.deployments.iter_mut().find(|d| &d.id == id) {
                    d.stage = Some(*stage);
                    self.dirty = true;
                }
            }
            // The log pane reads the log from the store, by sequence number (`LogPage`).
            EngineEvent::Log { .. } => {}
            EngineEvent::Error(message) => self.show_error(message.clone()),
            EngineEvent::Statistics(stats) => {
                self.stats = Some(stats.clone());
                self.dirty = true;
            }
            EngineEvent::Proxmox(state) => {
                self.dirty |= self.proxmox != *state;
                self.proxmox = state.clone();
            }
            EngineEvent::Settings(settings) => {
                self.settings = Some(settings.clone());
                self.dirty = true;
            }
            EngineEvent::RepoChecked {
                repo,
                git_ref,
                result,
            } => {
                if let Some(w) = self.wizard_mut() {
                    w.apply_repo_checked(repo, git_ref, result);
                    self.dirty = true;
                }
            }
            EngineEvent::Detected {
                repo,
                git_ref,
                result,
            } => {
                if let Some(w) = self.wizard_mut() {
                    w.apply_detected(repo, git_ref, result);
                    self.dirty = true;
                }
            }
            EngineEvent::Reviewed { input, result } => {
                if let Some(w) = self.wizard_mut() {
                    w.apply_reviewed(input, result);
                    self.dirty = true;
                }
            }
            EngineEvent::Cluster(result) => {
                self.cluster = Some(result.clone());
                for s in &mut self.screens {
                    if let Screen::Resources(r) = s {
                        r.loaded();
                    }
                }
                self.dirty = true;
            }
            EngineEvent::Details(snapshot) => {
                for s in &mut self.screens {
                    if let Screen::Details(d) = s {
                        self.dirty |= d.apply(snapshot);
                    }
                }
            }
            EngineEvent::Snapshots(view) => {
                for s in &mut self.screens {
                    if let Screen::Details(d) = s {
                        self.dirty |= d.apply_snapshots(view);
                    }
                }
            }
            EngineEvent::LogPage {
                id,
                kind,
                lines,
                at_start,
                at_end,
            } => {
                if let Some(l) = self.logs_mut() {
                    let changed = l.apply_page(id, *kind, lines, *at_start, *at_end);
                    self.dirty |= changed;
                }
            }
            EngineEvent::LogMatch { id, query, seq, .. } => {
                let mut intents = Vec::new();
                if let Some(l) = self.logs_mut() {
                    l.apply_match(id, query, *seq, &mut intents);
                    self.dirty = true;
                }
                self.run_intents(intents);
            }
            EngineEvent::LogFiltered {
                id,
                query,
                total,
                lines,
                through,
            } => {
                if let Some(l) = self.logs_mut() {
                    self.dirty |= l.apply_filtered(id, query, *total, lines, *through);
                }
            }
            EngineEvent::AppLog { id, stream, lines } => {
                if let Some(l) = self.logs_mut() {
                    let changed = l.apply_app_lines(id, *stream, lines);
                    self.dirty |= changed;
                }
            }
            EngineEvent::AppLogEnded { id, error } => {
                if let Some(l) = self.logs_mut() {
                    self.dirty |= l.apply_app_end(id, error.clone());
                }
            }
            EngineEvent::ShellReady(cmd) => self.effects.push(Effect::Shell(cmd.clone())),
            EngineEvent::OpQueued { op, target, job } => {
                if let Some(p) = self
                    .pending
                    .iter_mut()
                    .find(|(o, t, j)| o == op && t == target && j.is_none())
                {
                    p.2 = Some(job.id);
                }
                let name = self.name_of(target);
                self.note(&present::queued_note(*op, &name, job), true);
            }
            EngineEvent::Jobs(jobs) => {
                self.jobs = jobs.clone();
                self.dirty = true;
            }
            EngineEvent::Notice(text) => self.note(text, true),
            EngineEvent::OpFinished {
                op,
                target,
                job,
                result,
            } => {
                let mine = match job {
                    Some(id) => self.pending.iter().position(|(_, _, j)| *j == Some(*id)),
                    None => self
                        .pending
                        .iter()
                        .position(|(o, t, j)| o == op && t == target && j.is_none()),
                };
                if let Some(i) = mine {
                    self.pending.remove(i);
                }
                let name = self.name_of(target);
                match result {
                    Ok(text) => self.note(&format!("✓ {} done: {text}", op.as_str()), true),
                    Err(e) => {
                        let what = if *op == OpKind::Sync {
                            "sync failed".to_string()
                        } else {
                            format!("{} {name} failed", op.as_str())
                        };
                        self.show_error(format!("{what}: {e}"));
                    }
                }
                // What the cluster looks like changed.
                if matches!(
                    op,
                    OpKind::Sync
                        | OpKind::Start
                        | OpKind::Stop
                        | OpKind::Restart
                        | OpKind::Forget
                        | OpKind::Destroy
                ) && self
                    .screens
                    .iter()
                    .any(|s| matches!(s, Screen::Resources(_)))
                {
                    let mut intents = Vec::new();
                    for s in &mut self.screens {
                        if let Screen::Resources(r) = s {
                            r.refresh(&mut intents);
                        }
                    }
                    self.run_intents(intents);
                }
            }
        }
    }

    /// Draws the whole screen. `now_ms` (Unix milliseconds) is the reference for ages.
    pub fn render(&mut self, frame: &mut Frame, now_ms: i64) {
        let command = matches!(self.overlay, Some(Overlay::Command { .. }));
        let [header, body, flash, command_area, hints] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(u16::from(self.flash.is_some())),
            Constraint::Length(u16::from(command)),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        self.render_header(frame, header);
        let cx = Ctx {
            deployments: &self.deployments,
            jobs: &self.jobs,
            loaded: self.loaded,
            partial_total: self.partial,
            theme: &self.theme,
            now_ms,
            utc_offset: self.utc_offset,
            spinner: self.spinner,
        };
        match self.screens.last_mut() {
            None => self.dashboard.render(frame, body, &cx),
            Some(Screen::Wizard(w)) => {
                w.render(
                    frame,
                    body,
                    &cx,
                    self.cluster.as_ref(),
                    self.settings.as_ref(),
                );
            }
            Some(Screen::Logs(l)) => l.render(frame, body, &cx),
            Some(Screen::Details(d)) => d.render(frame, body, &cx),
            Some(Screen::Resources(r)) => r.render(frame, body, &cx, self.cluster.as_ref()),
            Some(Screen::Stats(s)) => s.render(frame, body, &cx, self.stats.as_ref()),
        }
        if let Some(f) = &self.flash {
            let style = if f.ok {
                self.theme.ok()
            } else {
                self.theme.warning()
            };
            frame.render_widget(
                Paragraph::new(Span::styled(format!(" {}", f.text), style)),
                flash,
            );
        }
        if let Some(Overlay::Command { input }) = &self.overlay {
            self.render_command(frame, command_area, input);
        }
        frame.render_widget(
            HintBar {
                mode: self.mode(),
                theme: &self.theme,
            },
            hints,
        );
        match &self.overlay {
            Some(Overlay::Help { mode, scroll }) => {
                let rows = keys::help_rows(*mode);
                frame.render_widget(
                    HelpPopup {
                        title: mode.title(),
                        rows: &rows,
                        scroll: *scroll,
                        theme: &self.theme,
                    },
                    body,
                );
            }
            Some(Overlay::Menu(m)) => {
                let items: Vec<(String, String, bool)> = m
                    .entries
                    .iter()
                    .map(|e| (e.label.clone(), e.words.clone(), e.marked))
                    .collect();
                frame.render_widget(
                    MenuPopup {
                        title: &m.title,
                        items: &items,
                        selected: m.selected,
                        note: m.note.as_deref(),
                        theme: &self.theme,
                    },
                    body,
                );
            }
            Some(Overlay::Confirm(c)) => frame.render_widget(
                ConfirmPopup {
                    title: &c.title,
                    lines: &c.lines,
                    theme: &self.theme,
                },
                body,
            ),
            _ => {}
        }
        if let Some(message) = self.errors.front() {
            frame.render_widget(
                ErrorPopup {
                    message,
                    more: self.errors.len() - 1,
                    theme: &self.theme,
                },
                body,
            );
        }
        self.dirty = false;
    }

    fn render_header(&self, frame: &mut Frame, area: Rect) {
        let theme = &self.theme;
        let mut spans = vec![Span::styled(" proxdeck ", theme.title())];
        let (mark, text, style) = match &self.proxmox {
            ProxmoxState::Unconfigured => ("○", "no Proxmox configured".to_string(), theme.muted()),
            ProxmoxState::Connecting => ("…", "Proxmox".to_string(), theme.muted()),
            ProxmoxState::Online {
                version,
                nodes_online,
                nodes,
                ..
            } => (
                "●",
                format!("PVE {version} {nodes_online}/{nodes} nodes"),
                theme.ok(),
            ),
            ProxmoxState::Offline { .. } => ("✗", "Proxmox unreachable".to_string(), theme.error()),
        };
        spans.push(Span::styled(format!(" {mark} {text} "), style));
        // Deployments (what proxdeck made) and imported guests (what sync found) are counted
        // apart, as the statistics do.
        let (total, active) = match &self.stats {
            Some(s) => (s.total, s.active),
            None => {
                let managed = self
                    .deployments
                    .iter()
                    .filter(|d| d.origin != Origin::Imported);
                let (mut total, mut active) = (0, 0);
                for d in managed {
                    total += 1;
                    active += u64::from(d.status.is_active());
                }
                (total, active)
            }
        };
        if let Some(all) = self.partial {
            spans.push(Span::styled(" │ ", theme.muted()));
            spans.push(Span::raw(format!("{all} entries, reading…")));
        } else if self.loaded {
            let plural = if total == 1 { "" } else { "s" };
            spans.push(Span::styled(" │ ", theme.muted()));
            let mut text = format!("{total} deployment{plural} · {active} active");
            if self.imported > 0 {
                text.push_str(&format!(" · {} imported", self.imported));
            }
            spans.push(Span::raw(text));
        }
        if !self.pending.is_empty() {
            spans.push(Span::styled(
                format!(
                    " · {} {} running",
                    SPINNER[self.spinner % SPINNER.len()],
                    self.pending.len()
                ),
                theme.spinner(),
            ));
        }
        let gauge_w = if area.width >= 100 { 30 } else { 15 };
        let [left, _, right] = Layout::horizontal([
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(gauge_w),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(Line::from(spans)), left);
        // The success rate of deployments (imported guests are not counted).
        let rate = self.stats.as_ref().and_then(|s| s.success_rate);
        let label = rate.map_or_else(
            || " –% ok".to_string(),
            |r| format!("{:>3.0}% ok", r * 100.0),
        );
        frame.render_widget(
            LineGauge::default()
                .ratio(rate.unwrap_or(0.0).clamp(0.0, 1.0))
                .label(label)
                .filled_style(theme.gauge())
                .unfilled_style(theme.muted()),
            right,
        );
    }

    fn render_command(&self, frame: &mut Frame, area: Rect, input: &Input) {
        let theme = &self.theme;
        let prefix = " :";
        let candidates = self.completions(input.value());
        let width = usize::from(area.width).saturating_sub(prefix.len() + 1);
        let scroll = input.visual_scroll(width);
        let value: String = input.value().chars().skip(scroll).take(width).collect();
        let mut spans = vec![Span::styled(prefix, theme.focused()), Span::raw(value)];
        if !input.value().is_empty() && !candidates.is_empty() {
            spans.push(Span::styled(
                format!(
                    "   {}",
                    candidates
                        .iter()
                        .take(6)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("  ")
                ),
                theme.muted(),
            ));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
        let x = area.x
            + u16::try_from(prefix.len() + input.visual_cursor().saturating_sub(scroll))
                .unwrap_or(0);
        frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
    }
}

fn is_deployment_action(action: Action) -> bool {
    matches!(
        action,
        Action::Menu
            | Action::Logs
            | Action::Details
            | Action::Shell
            | Action::Redeploy
            | Action::Rollback
            | Action::Retry
            | Action::Start
            | Action::Stop
            | Action::Restart
            | Action::Destroy
            | Action::Forget
            | Action::Cancel
    )
}

/// The key action that runs `op` on a deployment.
fn action_of(op: Kind) -> Option<Action> {
    Some(match op {
        Kind::Retry => Action::Retry,
        Kind::Redeploy => Action::Redeploy,
        Kind::Rollback => Action::Rollback,
        Kind::Destroy => Action::Destroy,
        Kind::Start => Action::Start,
        Kind::Stop => Action::Stop,
        Kind::Restart => Action::Restart,
        Kind::Forget => Action::Forget,
        // Snapshots and restores are chosen in the details screen's snapshot list; domains
        // change from the command line (`proxdeck domains`).
        Kind::Deploy | Kind::Sync | Kind::Snapshot | Kind::Restore | Kind::Domains => {
            return None;
        }
    })
}

/// `vmid 121 on node pve1` (or what is known of it).
fn guest_words(d: &Deployment) -> String {
    let kind = match d.guest_type {
        crate::domain::GuestType::Lxc => "container",
        crate::domain::GuestType::Vm => "VM",
    };
    match (d.vmid, d.node.as_deref()) {
        (Some(v), Some(n)) => format!("{kind} {v} on node {n}"),
        (Some(v), None) => format!("{kind} {v}"),
        _ => format!("its {kind} (no vmid recorded yet)"),
    }
}

fn common_prefix(items: &[String]) -> String {
    let Some(first) = items.first() else {
        return String::new();
    };
    let mut end = first.len();
    for s in &items[1..] {
        end = end.min(
            first
                .char_indices()
                .zip(s.chars())
                .take_while(|((_, a), b)| a == b)
                .last()
                .map_or(0, |((i, a), _)| i + a.len_utf8()),
        );
    }
    first[..end].to_string()
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
