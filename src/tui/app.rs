//! `App`: the root state of the TUI and its reducer. Engine events go in through
//! [`App::apply`], keys through [`App::handle_key`] (key → `Action`, via the keymap) and
//! [`App::dispatch`] (`Action` → state change); `Request`s for the engine come out of an outbox
//! that the loop in `tui::run` drains. A `dirty` flag says whether the screen must be redrawn.
//!
//! Owns the deployments snapshot, the error queue, the current mode and the screens' state.
//! Must not touch the terminal, a channel, a thread or the clock: that keeps every behaviour
//! here testable by calling methods and drawing into a `TestBackend`.

use crate::domain::Deployment;
use crate::protocol::{EngineEvent, Request};
use crate::tui::UiEvent;
use crate::tui::keys::{self, Action, Mode};
use crate::tui::screens::DashboardScreen;
use crate::tui::screens::dashboard::DashboardView;
use crate::tui::theme::Theme;
use crate::tui::widgets::{ErrorPopup, HintBar};
use crossterm::event::{Event, KeyEvent, KeyEventKind};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use std::collections::VecDeque;

/// Errors beyond this many are dropped (oldest kept): a storm of failures should not bury the
/// user under popups to dismiss one by one.
const MAX_QUEUED_ERRORS: usize = 20;

pub struct App {
    deployments: Vec<Deployment>,
    /// False until the engine's first `Deployments` snapshot arrived.
    loaded: bool,
    dashboard: DashboardScreen,
    /// Shown one at a time, oldest first, each dismissed by the user.
    errors: VecDeque<String>,
    outbox: Vec<Request>,
    theme: Theme,
    should_quit: bool,
    dirty: bool,
}

impl App {
    pub fn new(theme: Theme) -> App {
        App {
            deployments: Vec::new(),
            loaded: false,
            dashboard: DashboardScreen::default(),
            errors: VecDeque::new(),
            outbox: Vec::new(),
            theme,
            should_quit: false,
            dirty: true,
        }
    }

    pub fn mode(&self) -> Mode {
        if self.errors.is_empty() {
            Mode::Dashboard
        } else {
            Mode::ErrorPopup
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

    pub fn should_quit(&self) -> bool {
        self.should_quit
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Requests produced since the last call, in order.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.outbox)
    }

    /// One event from the UI's inbox.
    pub fn on_ui_event(&mut self, event: UiEvent) {
        match event {
            UiEvent::Input(Event::Key(key)) => {
                if let Some(action) = self.handle_key(key) {
                    self.dispatch(action);
                }
            }
            UiEvent::Input(Event::Resize(..)) => self.dirty = true,
            UiEvent::Input(_) => {}
            UiEvent::Engine(event) => self.apply(&event),
            UiEvent::EngineClosed => self.show_error(
                "The engine stopped, so this screen no longer updates. Press q to quit; the \
                 reason is in proxdeck's log."
                    .to_string(),
            ),
            // Ages in the table move with the clock.
            UiEvent::Tick => self.dirty |= !self.deployments.is_empty(),
        }
    }

    /// Folds one engine event into the state.
    pub fn apply(&mut self, event: &EngineEvent) {
        match event {
            EngineEvent::Deployments(list) => {
                let previous = self.dashboard.selected_index(&self.deployments);
                self.deployments = list.clone();
                self.dashboard.sync(previous, &self.deployments);
                self.loaded = true;
                self.dirty = true;
            }
            // Shown at once; the full snapshot that follows (the store changed) confirms it.
            EngineEvent::StatusChanged { id, status, stage } => {
                if let Some(d) = self.deployments.iter_mut().find(|d| &d.id == id) {
                    d.status = *status;
                    d.stage = *stage;
                    self.dirty = true;
                }
            }
            EngineEvent::StageStarted { id, stage } => {
                if let Some(d) = self.deployments.iter_mut().find(|d| &d.id == id) {
                    d.stage = Some(*stage);
                    self.dirty = true;
                }
            }
            // No log pane yet.
            EngineEvent::Log { .. } => {}
            EngineEvent::Error(message) => self.show_error(message.clone()),
        }
    }

    /// What `key` means in the current mode. Releases (reported on Windows and by the kitty
    /// protocol) are ignored so one press is one action; repeats act, so holding `j` scrolls.
    pub fn handle_key(&self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        keys::action_for(self.mode(), &key)
    }

    pub fn dispatch(&mut self, action: Action) {
        match action {
            Action::Quit => {
                // `tui::run` sends `Request::Shutdown` on every way out, errors included.
                self.should_quit = true;
            }
            Action::Refresh => self.outbox.push(Request::RefreshDeployments),
            Action::DismissError => {
                self.errors.pop_front();
                self.dirty = true;
            }
            Action::SelectPrev | Action::SelectNext | Action::SelectFirst | Action::SelectLast => {
                if self.dashboard.handle_action(action, &self.deployments) {
                    self.dirty = true;
                }
            }
        }
    }

    fn show_error(&mut self, message: String) {
        if self.errors.len() < MAX_QUEUED_ERRORS {
            self.errors.push_back(message);
            self.dirty = true;
        }
    }

    /// Draws the whole screen. `now_ms` (Unix milliseconds) is the reference for ages.
    pub fn render(&mut self, frame: &mut Frame, now_ms: i64) {
        let [body, hints] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(frame.area());
        let view = DashboardView {
            deployments: &self.deployments,
            loaded: self.loaded,
            now_ms,
            theme: &self.theme,
        };
        self.dashboard.render(frame, body, &view);
        frame.render_widget(
            HintBar {
                mode: self.mode(),
                theme: &self.theme,
            },
            hints,
        );
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeploymentId, GuestType, Stage, Status};
    use crossterm::event::{KeyCode, KeyModifiers};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    /// 2026-01-15 12:00:00 UTC: a fixed "now" so ages in snapshots never change.
    const NOW: i64 = 1_768_478_400_000;
    const SEC: i64 = 1_000;
    const MIN: i64 = 60 * SEC;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;

    fn key(code: KeyCode) -> UiEvent {
        UiEvent::Input(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    fn ctrl(c: char) -> UiEvent {
        UiEvent::Input(Event::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::CONTROL,
        )))
    }

    fn deployment(id: &str, name: &str, status: Status) -> Deployment {
        Deployment {
            id: DeploymentId(id.to_string()),
            name: name.to_string(),
            repo: format!("https://git.example.com/team/{name}.git"),
            git_ref: "main".into(),
            framework: "flask".into(),
            guest_type: GuestType::Lxc,
            cores: 2,
            memory_mib: 1024,
            disk_gib: 8,
            port: 8000,
            env_names: vec![],
            node: Some("pve1".into()),
            vmid: None,
            ip: None,
            url: None,
            commit: None,
            status,
            stage: None,
            error: None,
            created_at: NOW - HOUR,
            updated_at: NOW - HOUR,
            ..Default::default()
        }
    }

    /// A running app, a failed one, one being provisioned, and a deleted one (newest first,
    /// like the engine sends them).
    fn typical() -> Vec<Deployment> {
        let mut provisioning = deployment("p7q2zd", "blog", Status::Provisioning);
        provisioning.framework = "nextjs".into();
        provisioning.vmid = Some(123);
        provisioning.stage = Some(Stage::TerraformApply);
        provisioning.created_at = NOW - 45 * SEC;
        provisioning.updated_at = NOW - 12 * SEC;

        let mut failed = deployment("k3x9ta", "shop", Status::Failed);
        failed.framework = "laravel".into();
        failed.guest_type = GuestType::Vm;
        failed.node = Some("pve2".into());
        failed.vmid = Some(122);
        failed.stage = Some(Stage::TerraformApply);
        failed.error = Some(
            "terraform apply failed: 403 Permission check failed (/vms/122, VM.Allocate). \
             Give the API token VM.Allocate on /vms, then retry."
                .into(),
        );
        failed.created_at = NOW - 2 * HOUR;
        failed.updated_at = NOW - 2 * HOUR + 3 * MIN;

        let mut running = deployment("a1b2c3", "api-prod", Status::Running);
        running.framework = "fastapi".into();
        running.vmid = Some(121);
        running.ip = Some("10.20.30.121".into());
        running.url = Some("http://10.20.30.121:8000".into());
        running.stage = Some(Stage::Done);
        running.created_at = NOW - 3 * DAY;
        running.updated_at = NOW - 5 * HOUR;

        let mut deleted = deployment("zz0old", "old-demo", Status::Deleted);
        deleted.vmid = Some(110);
        deleted.ip = Some("10.20.30.110".into());
        deleted.stage = Some(Stage::Destroy);
        deleted.created_at = NOW - 30 * DAY;
        deleted.updated_at = NOW - 9 * DAY;

        vec![provisioning, failed, running, deleted]
    }

    fn app_with(list: Vec<Deployment>) -> App {
        let mut app = App::new(Theme::colored());
        app.apply(&EngineEvent::Deployments(list));
        app
    }

    fn draw(app: &mut App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
        terminal.draw(|frame| app.render(frame, NOW)).expect("draw");
        format!("{}", terminal.backend())
    }

    fn ids(app: &App) -> Option<String> {
        app.selected().map(|d| d.id.0.clone())
    }

    #[test]
    fn q_quits_and_so_do_esc_and_ctrl_c() {
        for event in [key(KeyCode::Char('q')), key(KeyCode::Esc), ctrl('c')] {
            let mut app = app_with(typical());
            app.on_ui_event(event);
            assert!(app.should_quit());
        }
    }

    #[test]
    fn key_releases_are_ignored() {
        let mut app = app_with(typical());
        let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        app.on_ui_event(UiEvent::Input(Event::Key(release)));
        assert!(!app.should_quit());
    }

    #[test]
    fn selection_follows_the_deployment_when_the_list_changes() {
        let mut app = app_with(typical());
        assert_eq!(ids(&app).as_deref(), Some("p7q2zd"), "first row selected");
        app.on_ui_event(key(KeyCode::Char('j')));
        app.on_ui_event(key(KeyCode::Down));
        assert_eq!(ids(&app).as_deref(), Some("a1b2c3"));

        // A new deployment arrives on top and the old ones change: still on api-prod.
        let mut list = typical();
        list[2].status = Status::Stopped;
        list.insert(0, deployment("n3wone", "fresh", Status::Pending));
        app.apply(&EngineEvent::Deployments(list));
        assert_eq!(ids(&app).as_deref(), Some("a1b2c3"));
        assert_eq!(app.selected().map(|d| d.status), Some(Status::Stopped));

        // It disappears: the cursor stays on the same row instead of jumping to the top.
        let mut list = typical();
        list.insert(0, deployment("n3wone", "fresh", Status::Pending));
        list.retain(|d| d.id.0 != "a1b2c3");
        app.apply(&EngineEvent::Deployments(list));
        assert_eq!(ids(&app).as_deref(), Some("zz0old"));

        app.on_ui_event(key(KeyCode::Char('g')));
        assert_eq!(ids(&app).as_deref(), Some("n3wone"));
        app.on_ui_event(key(KeyCode::Char('G')));
        assert_eq!(ids(&app).as_deref(), Some("zz0old"));
        app.on_ui_event(key(KeyCode::Up));
        assert_eq!(ids(&app).as_deref(), Some("k3x9ta"));
        app.on_ui_event(key(KeyCode::Char('k')));
        assert_eq!(ids(&app).as_deref(), Some("p7q2zd"));
    }

    #[test]
    fn status_events_update_rows_before_the_next_snapshot() {
        let mut app = app_with(typical());
        let id = DeploymentId("p7q2zd".into());
        app.apply(&EngineEvent::StageStarted {
            id: id.clone(),
            stage: Stage::Address,
        });
        assert_eq!(app.deployments()[0].stage, Some(Stage::Address));
        app.apply(&EngineEvent::StatusChanged {
            id,
            status: Status::Deploying,
            stage: Some(Stage::Provision),
        });
        assert_eq!(app.deployments()[0].status, Status::Deploying);
        assert_eq!(app.deployments()[0].stage, Some(Stage::Provision));
    }

    #[test]
    fn errors_pop_up_and_are_dismissed_in_order() {
        let mut app = app_with(typical());
        app.apply(&EngineEvent::Error("first".into()));
        app.apply(&EngineEvent::Error("second".into()));
        assert_eq!(app.mode(), Mode::ErrorPopup);
        assert_eq!(app.current_error(), Some("first"));

        // Under a popup, navigation keys do nothing and Esc dismisses rather than quits.
        app.on_ui_event(key(KeyCode::Char('j')));
        assert_eq!(ids(&app).as_deref(), Some("p7q2zd"));
        app.on_ui_event(key(KeyCode::Esc));
        assert!(!app.should_quit());
        assert_eq!(app.current_error(), Some("second"));
        app.on_ui_event(key(KeyCode::Enter));
        assert_eq!(app.current_error(), None);
        assert_eq!(app.mode(), Mode::Dashboard);
    }

    #[test]
    fn refresh_asks_the_engine() {
        let mut app = app_with(typical());
        app.on_ui_event(key(KeyCode::Char('r')));
        assert_eq!(app.take_requests(), vec![Request::RefreshDeployments]);
        assert!(app.take_requests().is_empty());
    }

    #[test]
    fn redraws_only_when_something_changed() {
        let mut app = app_with(vec![]);
        assert!(app.is_dirty());
        draw(&mut app, 80, 24);
        assert!(!app.is_dirty());
        app.on_ui_event(UiEvent::Tick);
        assert!(!app.is_dirty(), "nothing ages in an empty list");
        app.on_ui_event(key(KeyCode::Char('j')));
        assert!(!app.is_dirty(), "nothing to move to");
        app.apply(&EngineEvent::Log {
            id: DeploymentId("x".into()),
            lines: vec![],
        });
        assert!(!app.is_dirty());
        app.apply(&EngineEvent::Deployments(typical()));
        assert!(app.is_dirty());
        draw(&mut app, 80, 24);
        app.on_ui_event(UiEvent::Tick);
        assert!(app.is_dirty(), "ages move");
    }

    #[test]
    fn engine_gone_is_shown() {
        let mut app = app_with(typical());
        app.on_ui_event(UiEvent::EngineClosed);
        assert!(app.current_error().is_some_and(|e| e.contains("engine")));
    }

    #[test]
    fn snapshot_loading() {
        let mut app = App::new(Theme::colored());
        insta::assert_snapshot!("loading_80x24", draw(&mut app, 80, 24));
    }

    #[test]
    fn snapshot_empty() {
        let mut app = app_with(vec![]);
        insta::assert_snapshot!("empty_80x24", draw(&mut app, 80, 24));
        insta::assert_snapshot!("empty_120x40", draw(&mut app, 120, 40));
    }

    #[test]
    fn snapshot_typical() {
        let mut app = app_with(typical());
        app.on_ui_event(key(KeyCode::Char('j')));
        insta::assert_snapshot!("typical_80x24", draw(&mut app, 80, 24));
        insta::assert_snapshot!("typical_120x40", draw(&mut app, 120, 40));
    }

    #[test]
    fn snapshot_error_popup() {
        let mut app = app_with(typical());
        app.apply(&EngineEvent::Error(
            "Proxmox did not answer at https://pve.lan:8006 (connection refused). Check \
             PROXMOX_VE_ENDPOINT in config.toml or the environment, then run `proxdeck doctor`."
                .into(),
        ));
        app.apply(&EngineEvent::Error("second error".into()));
        insta::assert_snapshot!("error_popup_80x24", draw(&mut app, 80, 24));
        insta::assert_snapshot!("error_popup_120x40", draw(&mut app, 120, 40));
    }

    /// End to end through the reducer: draw, a snapshot arrives, keys, draw again.
    #[test]
    fn snapshot_live_update_then_navigation() {
        let mut app = App::new(Theme::colored());
        draw(&mut app, 80, 24);
        app.on_ui_event(UiEvent::Engine(EngineEvent::Deployments(typical())));
        app.on_ui_event(key(KeyCode::Char('G')));
        app.on_ui_event(key(KeyCode::Char('k')));
        insta::assert_snapshot!("live_update_80x24", draw(&mut app, 80, 24));
    }
}
