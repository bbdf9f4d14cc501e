//! Keybindings as data: for each [`Mode`], which keys mean which [`Action`], with the words the
//! hint bar and the help screen show. Lookup, hints and help read the same table, so what the
//! screen promises is what the keys do.
//!
//! Owns only the meaning of keys. Must not change state or talk to the engine: `App` does that
//! with the `Action` found here. In text modes (a field has the keyboard), keys the table does
//! not bind are typed into the field; that fallback lives in `App`, not here.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Which table of bindings is live. Overlays (popups, the command line) take the keyboard from
/// the screen below until they close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Dashboard,
    /// Typing the dashboard's filter.
    Filter,
    /// Typing a `:` command.
    Command,
    Confirm,
    ErrorPopup,
    Help,
    /// A text field of the deploy wizard has the keyboard.
    WizardText,
    /// A choice of the deploy wizard (guest type, node) has the keyboard.
    WizardChoice,
    /// The framework list of the deploy wizard.
    WizardList,
    /// The environment variables page of the deploy wizard.
    WizardEnv,
    /// Editing one environment variable.
    WizardEnvEdit,
    WizardReview,
    Logs,
    /// Typing a search in the log.
    LogSearch,
    Details,
    Resources,
    Stats,
    /// A menu (the actions on a row, the sort) has the keyboard.
    Menu,
}

impl Mode {
    pub const ALL: [Mode; 18] = [
        Mode::Dashboard,
        Mode::Filter,
        Mode::Command,
        Mode::Confirm,
        Mode::ErrorPopup,
        Mode::Help,
        Mode::WizardText,
        Mode::WizardChoice,
        Mode::WizardList,
        Mode::WizardEnv,
        Mode::WizardEnvEdit,
        Mode::WizardReview,
        Mode::Logs,
        Mode::LogSearch,
        Mode::Details,
        Mode::Resources,
        Mode::Stats,
        Mode::Menu,
    ];

    /// Keys the table does not bind are typed into a text field.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            Mode::Filter | Mode::Command | Mode::WizardText | Mode::WizardEnvEdit | Mode::LogSearch
        )
    }

    /// The screen's name in the help title.
    pub fn title(self) -> &'static str {
        match self {
            Mode::Dashboard => "Dashboard",
            Mode::Filter => "Filter",
            Mode::Command => "Command line",
            Mode::Confirm => "Confirmation",
            Mode::ErrorPopup => "Error",
            Mode::Help => "Help",
            Mode::WizardText
            | Mode::WizardChoice
            | Mode::WizardList
            | Mode::WizardEnv
            | Mode::WizardEnvEdit
            | Mode::WizardReview => "Deploy wizard",
            Mode::Logs => "Log",
            Mode::LogSearch => "Log search",
            Mode::Details => "Details",
            Mode::Resources => "Proxmox resources",
            Mode::Stats => "Statistics",
            Mode::Menu => "Menu",
        }
    }
}

/// What a key means, independent of which key it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    /// Esc: close what is open, go back a screen or a page.
    Back,
    Help,
    OpenCommand,
    OpenFilter,
    Refresh,
    Suspend,
    Up,
    Down,
    Top,
    Bottom,
    PageUp,
    PageDown,
    Left,
    Right,
    /// Open the sort menu (a key per column).
    Sort,
    SortReverse,
    /// Open the menu of what may be done to the selected deployment.
    Menu,
    NewDeploy,
    Logs,
    Details,
    Shell,
    Redeploy,
    Rollback,
    Retry,
    Start,
    Stop,
    Restart,
    Destroy,
    Forget,
    /// Ask the selected deployment's queued or running job to stop.
    Cancel,
    Resources,
    Stats,
    Sync,
    /// Roll the guest back to the snapshot under the cursor (details).
    Restore,
    /// Turn auto-deploy on or off (details).
    AutoDeploy,
    /// Enter in a form or a text field.
    Submit,
    /// Tab: the next field (or the completion, on the command line).
    NextField,
    PrevField,
    Complete,
    Toggle,
    AddEnv,
    EditEnv,
    RemoveEnv,
    Follow,
    Search,
    /// Show only the lines that match the search (over the whole log), or every line again.
    FilterLines,
    /// Wrap long log lines, or clip them again.
    Wrap,
    NextMatch,
    PrevMatch,
    SwitchTab,
    Yes,
    No,
    DismissError,
}

/// One key with the modifiers that must be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

impl Key {
    pub const fn plain(code: KeyCode) -> Key {
        Key {
            code,
            modifiers: KeyModifiers::NONE,
        }
    }

    pub const fn char(c: char) -> Key {
        Key::plain(KeyCode::Char(c))
    }

    pub const fn ctrl(c: char) -> Key {
        Key {
            code: KeyCode::Char(c),
            modifiers: KeyModifiers::CONTROL,
        }
    }

    /// Only CONTROL and ALT are compared: for characters, SHIFT is already in the character
    /// (`G` arrives as `Char('G')`, with or without the SHIFT flag depending on the terminal).
    pub fn matches(&self, event: &KeyEvent) -> bool {
        let significant = KeyModifiers::CONTROL | KeyModifiers::ALT;
        self.code == event.code
            && event.modifiers.intersection(significant) == self.modifiers.intersection(significant)
    }
}

/// A row of the keymap: the keys, how hints name them, what they do.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub keys: &'static [Key],
    /// How the keys are written in hints, e.g. `j/↓`.
    pub label: &'static str,
    pub action: Action,
    /// A word or two, e.g. `down`.
    pub description: &'static str,
    /// Shown in the always-visible hint bar (everything shows in the help screen).
    pub hint: bool,
}

const fn b(
    keys: &'static [Key],
    label: &'static str,
    action: Action,
    description: &'static str,
    hint: bool,
) -> Binding {
    Binding {
        keys,
        label,
        action,
        description,
        hint,
    }
}

const ENTER: Key = Key::plain(KeyCode::Enter);
const ESC: Key = Key::plain(KeyCode::Esc);
const TAB: Key = Key::plain(KeyCode::Tab);
const BACKTAB: Key = Key {
    code: KeyCode::BackTab,
    modifiers: KeyModifiers::SHIFT,
};
const UP: Key = Key::plain(KeyCode::Up);
const DOWN: Key = Key::plain(KeyCode::Down);
const LEFT: Key = Key::plain(KeyCode::Left);
const RIGHT: Key = Key::plain(KeyCode::Right);
const HOME: Key = Key::plain(KeyCode::Home);
const END: Key = Key::plain(KeyCode::End);
const PGUP: Key = Key::plain(KeyCode::PageUp);
const PGDN: Key = Key::plain(KeyCode::PageDown);

/// Bindings every mode has, appended at the end of each table.
const QUIT_CTRL_C: Binding = b(&[Key::ctrl('c')], "ctrl-c", Action::Quit, "quit", false);
const SUSPEND: Binding = b(
    &[Key::ctrl('z')],
    "ctrl-z",
    Action::Suspend,
    "suspend",
    false,
);

const NAV: [Binding; 6] = [
    b(&[Key::char('j'), DOWN], "j/↓", Action::Down, "down", false),
    b(&[Key::char('k'), UP], "k/↑", Action::Up, "up", false),
    b(&[Key::char('g'), HOME], "g", Action::Top, "top", false),
    b(&[Key::char('G'), END], "G", Action::Bottom, "bottom", false),
    b(
        &[PGUP, Key::ctrl('b'), Key::ctrl('u')],
        "pgup",
        Action::PageUp,
        "page up",
        false,
    ),
    b(
        &[PGDN, Key::ctrl('f'), Key::ctrl('d')],
        "pgdn",
        Action::PageDown,
        "page down",
        false,
    ),
];

const DASHBOARD: &[Binding] = &[
    b(&[Key::char('n')], "n", Action::NewDeploy, "new", true),
    b(&[ENTER], "enter", Action::Details, "details", true),
    b(&[Key::char('a')], "a", Action::Menu, "actions", true),
    b(&[Key::char('l')], "l", Action::Logs, "logs", true),
    b(&[Key::char('/')], "/", Action::OpenFilter, "filter", true),
    b(&[Key::char('o')], "o", Action::Sort, "sort", true),
    b(&[Key::char('?')], "?", Action::Help, "help", true),
    b(&[Key::char('q')], "q", Action::Quit, "quit", true),
    b(&[Key::char(':')], ":", Action::OpenCommand, "cmd", true),
    b(&[Key::char('s')], "s", Action::Shell, "shell", false),
    b(&[Key::char('d')], "d", Action::Destroy, "destroy", false),
    b(&[Key::char('R')], "R", Action::Redeploy, "redeploy", false),
    b(&[Key::char('t')], "t", Action::Retry, "retry", false),
    b(&[Key::char('B')], "B", Action::Rollback, "roll back", false),
    b(&[Key::char('u')], "u", Action::Start, "start", false),
    b(&[Key::char('x')], "x", Action::Stop, "stop", false),
    b(&[Key::char('X')], "X", Action::Restart, "restart", false),
    b(&[Key::char('F')], "F", Action::Forget, "forget", false),
    b(&[Key::char('c')], "c", Action::Cancel, "cancel job", false),
    b(
        &[Key::char('p')],
        "p",
        Action::Resources,
        "resources",
        false,
    ),
    b(&[Key::char('S')], "S", Action::Stats, "statistics", false),
    b(
        &[Key::char('O')],
        "O",
        Action::SortReverse,
        "reverse",
        false,
    ),
    NAV[0],
    NAV[1],
    NAV[2],
    NAV[3],
    NAV[4],
    NAV[5],
    b(
        &[Key::char('r'), Key::ctrl('r')],
        "r",
        Action::Refresh,
        "refresh",
        false,
    ),
    b(&[ESC], "esc", Action::Back, "clear filter", false),
    QUIT_CTRL_C,
    SUSPEND,
];

const FILTER: &[Binding] = &[
    b(&[ENTER], "enter", Action::Submit, "keep filter", true),
    b(&[ESC], "esc", Action::Back, "clear", true),
    b(&[DOWN], "↓", Action::Down, "down", true),
    b(&[UP], "↑", Action::Up, "up", true),
    QUIT_CTRL_C,
    SUSPEND,
];

const COMMAND: &[Binding] = &[
    b(&[ENTER], "enter", Action::Submit, "run", true),
    b(&[TAB], "tab", Action::Complete, "complete", true),
    b(&[ESC], "esc", Action::Back, "cancel", true),
    QUIT_CTRL_C,
    SUSPEND,
];

const CONFIRM: &[Binding] = &[
    b(
        &[Key::char('y'), Key::char('Y')],
        "y",
        Action::Yes,
        "yes",
        true,
    ),
    b(
        &[Key::char('n'), Key::char('N'), ESC],
        "n/esc",
        Action::No,
        "no",
        true,
    ),
    QUIT_CTRL_C,
];

const ERROR_POPUP: &[Binding] = &[
    b(
        &[ENTER, ESC],
        "enter/esc",
        Action::DismissError,
        "dismiss",
        true,
    ),
    b(&[Key::char('q')], "q", Action::Quit, "quit", true),
    QUIT_CTRL_C,
    SUSPEND,
];

const HELP: &[Binding] = &[
    b(
        &[ESC, Key::char('?'), Key::char('q')],
        "esc/?",
        Action::Back,
        "close",
        true,
    ),
    NAV[0],
    NAV[1],
    NAV[4],
    NAV[5],
    QUIT_CTRL_C,
];

const WIZARD_TEXT: &[Binding] = &[
    b(&[ENTER], "enter", Action::Submit, "next page", true),
    b(&[TAB, DOWN], "tab/↓", Action::NextField, "next field", true),
    b(
        &[BACKTAB, UP],
        "S-tab/↑",
        Action::PrevField,
        "prev field",
        true,
    ),
    b(&[ESC], "esc", Action::Back, "back", true),
    QUIT_CTRL_C,
    SUSPEND,
];

const WIZARD_CHOICE: &[Binding] = &[
    b(
        &[LEFT, RIGHT, Key::char(' '), Key::char('h'), Key::char('l')],
        "←/→/space",
        Action::Toggle,
        "change",
        true,
    ),
    b(&[ENTER], "enter", Action::Submit, "next page", true),
    b(
        &[TAB, DOWN, Key::char('j')],
        "tab/↓",
        Action::NextField,
        "next field",
        true,
    ),
    b(
        &[BACKTAB, UP, Key::char('k')],
        "S-tab/↑",
        Action::PrevField,
        "prev field",
        true,
    ),
    b(&[ESC], "esc", Action::Back, "back", true),
    b(&[Key::char('?')], "?", Action::Help, "help", false),
    QUIT_CTRL_C,
    SUSPEND,
];

const WIZARD_LIST: &[Binding] = &[
    b(&[Key::char('j'), DOWN], "j/↓", Action::Down, "down", true),
    b(&[Key::char('k'), UP], "k/↑", Action::Up, "up", true),
    b(&[ENTER], "enter", Action::Submit, "choose", true),
    b(&[ESC], "esc", Action::Back, "back", true),
    b(&[Key::char('?')], "?", Action::Help, "help", true),
    NAV[2],
    NAV[3],
    QUIT_CTRL_C,
    SUSPEND,
];

const WIZARD_ENV: &[Binding] = &[
    b(&[Key::char('a')], "a", Action::AddEnv, "add", true),
    b(&[Key::char('e')], "e", Action::EditEnv, "edit", true),
    b(
        &[Key::char('x'), Key::char('d')],
        "x",
        Action::RemoveEnv,
        "remove",
        true,
    ),
    b(&[ENTER], "enter", Action::Submit, "review", true),
    b(&[ESC], "esc", Action::Back, "back", true),
    b(&[Key::char('?')], "?", Action::Help, "help", false),
    NAV[0],
    NAV[1],
    QUIT_CTRL_C,
    SUSPEND,
];

const WIZARD_ENV_EDIT: &[Binding] = &[
    b(&[ENTER], "enter", Action::Submit, "save", true),
    b(&[TAB, BACKTAB], "tab", Action::NextField, "key/value", true),
    b(&[ESC], "esc", Action::Back, "cancel", true),
    QUIT_CTRL_C,
    SUSPEND,
];

const WIZARD_REVIEW: &[Binding] = &[
    b(&[ENTER], "enter", Action::Submit, "deploy", true),
    b(&[ESC], "esc", Action::Back, "back", true),
    b(&[Key::char('?')], "?", Action::Help, "help", true),
    NAV[0],
    NAV[1],
    QUIT_CTRL_C,
    SUSPEND,
];

const LOGS: &[Binding] = &[
    b(&[Key::char('/')], "/", Action::Search, "search", true),
    b(&[Key::char('n')], "n", Action::NextMatch, "next", true),
    b(&[Key::char('&')], "&", Action::FilterLines, "filter", true),
    b(&[Key::char('f')], "f", Action::Follow, "follow", true),
    b(&[Key::char('w')], "w", Action::Wrap, "wrap", true),
    b(&[TAB], "tab", Action::SwitchTab, "app log", true),
    b(&[ESC, Key::char('q')], "esc", Action::Back, "back", true),
    b(&[Key::char('?')], "?", Action::Help, "help", true),
    b(
        &[Key::char('N')],
        "N",
        Action::PrevMatch,
        "prev match",
        false,
    ),
    NAV[0],
    NAV[1],
    NAV[2],
    NAV[3],
    NAV[4],
    NAV[5],
    b(
        &[LEFT, Key::char('h')],
        "←/h",
        Action::Left,
        "scroll left",
        false,
    ),
    b(
        &[RIGHT, Key::char('l')],
        "→/l",
        Action::Right,
        "scroll right",
        false,
    ),
    b(&[Key::char(':')], ":", Action::OpenCommand, "cmd", false),
    QUIT_CTRL_C,
    SUSPEND,
];

const LOG_SEARCH: &[Binding] = &[
    b(&[ENTER], "enter", Action::Submit, "search", true),
    b(&[ESC], "esc", Action::Back, "cancel", true),
    b(&[UP], "↑", Action::Up, "earlier term", true),
    b(&[DOWN], "↓", Action::Down, "later term", true),
    QUIT_CTRL_C,
    SUSPEND,
];

const DETAILS: &[Binding] = &[
    b(&[Key::char('a')], "a", Action::Menu, "actions", true),
    b(&[Key::char('l')], "l", Action::Logs, "logs", true),
    b(&[Key::char('s')], "s", Action::Shell, "shell", true),
    b(&[Key::char('R')], "R", Action::Redeploy, "redeploy", true),
    b(&[Key::char('t')], "t", Action::Retry, "retry", true),
    b(&[Key::char('d')], "d", Action::Destroy, "destroy", true),
    b(&[ESC, Key::char('q')], "esc", Action::Back, "back", true),
    b(&[Key::char('?')], "?", Action::Help, "help", true),
    b(&[Key::char('B')], "B", Action::Rollback, "roll back", false),
    b(&[Key::char('u')], "u", Action::Start, "start", false),
    b(&[Key::char('x')], "x", Action::Stop, "stop", false),
    b(&[Key::char('X')], "X", Action::Restart, "restart", false),
    b(&[Key::char('F')], "F", Action::Forget, "forget", false),
    b(&[Key::char('c')], "c", Action::Cancel, "cancel job", false),
    b(
        &[Key::char('A')],
        "A",
        Action::AutoDeploy,
        "auto-deploy on/off",
        false,
    ),
    b(
        &[Key::char('[')],
        "[",
        Action::Left,
        "previous snapshot",
        false,
    ),
    b(
        &[Key::char(']')],
        "]",
        Action::Right,
        "next snapshot",
        false,
    ),
    b(
        &[Key::char('V')],
        "V",
        Action::Restore,
        "restore snapshot",
        false,
    ),
    NAV[0],
    NAV[1],
    NAV[2],
    NAV[3],
    b(
        &[Key::char('r'), Key::ctrl('r')],
        "r",
        Action::Refresh,
        "refresh",
        false,
    ),
    b(&[Key::char(':')], ":", Action::OpenCommand, "cmd", false),
    QUIT_CTRL_C,
    SUSPEND,
];

const RESOURCES: &[Binding] = &[
    b(&[TAB], "tab", Action::SwitchTab, "nodes/guests", true),
    b(&[Key::char('i')], "i", Action::Sync, "import (sync)", true),
    b(&[Key::char('u')], "u", Action::Start, "start", true),
    b(&[Key::char('x')], "x", Action::Stop, "stop", true),
    b(&[ENTER], "enter", Action::Details, "details", true),
    b(&[ESC, Key::char('q')], "esc", Action::Back, "back", true),
    b(&[Key::char('?')], "?", Action::Help, "help", true),
    b(&[Key::char('F')], "F", Action::Forget, "forget", false),
    b(
        &[Key::char('d')],
        "d",
        Action::Destroy,
        "remove an orphan guest",
        false,
    ),
    NAV[0],
    NAV[1],
    NAV[2],
    NAV[3],
    NAV[4],
    NAV[5],
    b(
        &[Key::char('r'), Key::ctrl('r')],
        "r",
        Action::Refresh,
        "refresh",
        false,
    ),
    b(&[Key::char(':')], ":", Action::OpenCommand, "cmd", false),
    QUIT_CTRL_C,
    SUSPEND,
];

const STATS: &[Binding] = &[
    b(
        &[Key::char('r'), Key::ctrl('r')],
        "r",
        Action::Refresh,
        "refresh",
        true,
    ),
    b(&[ESC, Key::char('q')], "esc", Action::Back, "back", true),
    b(&[Key::char('?')], "?", Action::Help, "help", true),
    b(&[Key::char(':')], ":", Action::OpenCommand, "cmd", false),
    QUIT_CTRL_C,
    SUSPEND,
];

const MENU: &[Binding] = &[
    b(&[ENTER], "enter", Action::Submit, "run", true),
    b(&[ESC, Key::char('q')], "esc", Action::Back, "close", true),
    b(&[Key::char('j'), DOWN], "j/↓", Action::Down, "down", true),
    b(&[Key::char('k'), UP], "k/↑", Action::Up, "up", true),
    QUIT_CTRL_C,
    SUSPEND,
];

/// The whole table for one mode, in display order.
pub fn bindings(mode: Mode) -> &'static [Binding] {
    match mode {
        Mode::Dashboard => DASHBOARD,
        Mode::Filter => FILTER,
        Mode::Command => COMMAND,
        Mode::Confirm => CONFIRM,
        Mode::ErrorPopup => ERROR_POPUP,
        Mode::Help => HELP,
        Mode::WizardText => WIZARD_TEXT,
        Mode::WizardChoice => WIZARD_CHOICE,
        Mode::WizardList => WIZARD_LIST,
        Mode::WizardEnv => WIZARD_ENV,
        Mode::WizardEnvEdit => WIZARD_ENV_EDIT,
        Mode::WizardReview => WIZARD_REVIEW,
        Mode::Logs => LOGS,
        Mode::LogSearch => LOG_SEARCH,
        Mode::Details => DETAILS,
        Mode::Resources => RESOURCES,
        Mode::Stats => STATS,
        Mode::Menu => MENU,
    }
}

/// What `event` means in `mode`, if anything.
pub fn action_for(mode: Mode, event: &KeyEvent) -> Option<Action> {
    bindings(mode)
        .iter()
        .find(|b| b.keys.iter().any(|k| k.matches(event)))
        .map(|b| b.action)
}

/// `(label, description)` pairs for the hint bar, in table order.
pub fn hints(mode: Mode) -> impl Iterator<Item = (&'static str, &'static str)> {
    bindings(mode)
        .iter()
        .filter(|b| b.hint)
        .map(|b| (b.label, b.description))
}

/// Every key of a mode as `(keys, description)` rows for the help screen: all the keys of a
/// binding spelled out, not only its short label.
pub fn help_rows(mode: Mode) -> Vec<(String, &'static str)> {
    bindings(mode)
        .iter()
        .map(|b| {
            let keys: Vec<String> = b.keys.iter().map(key_name).collect();
            (keys.join(" "), b.description)
        })
        .collect()
}

/// How a key is written on screen: `j`, `ctrl-c`, `enter`, `↑`.
pub fn key_name(key: &Key) -> String {
    let base = match key.code {
        KeyCode::Char(' ') => "space".to_string(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Enter => "enter".into(),
        KeyCode::Esc => "esc".into(),
        KeyCode::Tab => "tab".into(),
        KeyCode::BackTab => "shift-tab".into(),
        KeyCode::Up => "↑".into(),
        KeyCode::Down => "↓".into(),
        KeyCode::Left => "←".into(),
        KeyCode::Right => "→".into(),
        KeyCode::Home => "home".into(),
        KeyCode::End => "end".into(),
        KeyCode::PageUp => "pgup".into(),
        KeyCode::PageDown => "pgdn".into(),
        other => format!("{other:?}").to_lowercase(),
    };
    let mut name = String::new();
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        name.push_str("ctrl-");
    }
    if key.modifiers.contains(KeyModifiers::ALT) {
        name.push_str("alt-");
    }
    name.push_str(&base);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    fn plain(c: char) -> KeyEvent {
        press(KeyCode::Char(c), KeyModifiers::NONE)
    }

    #[test]
    fn quit_keys_on_the_dashboard() {
        for ev in [plain('q'), press(KeyCode::Char('c'), KeyModifiers::CONTROL)] {
            assert_eq!(
                action_for(Mode::Dashboard, &ev),
                Some(Action::Quit),
                "{ev:?}"
            );
        }
        // A plain `c` is not Ctrl-C (it cancels a job), and Esc goes back rather than quitting.
        assert_eq!(
            action_for(Mode::Dashboard, &plain('c')),
            Some(Action::Cancel)
        );
        assert_eq!(
            action_for(Mode::Dashboard, &press(KeyCode::Esc, KeyModifiers::NONE)),
            Some(Action::Back)
        );
    }

    #[test]
    fn shifted_letters_match_with_or_without_the_shift_flag() {
        for mods in [KeyModifiers::NONE, KeyModifiers::SHIFT] {
            assert_eq!(
                action_for(Mode::Dashboard, &press(KeyCode::Char('G'), mods)),
                Some(Action::Bottom)
            );
        }
    }

    #[test]
    fn esc_dismisses_a_popup_instead_of_quitting() {
        let esc = press(KeyCode::Esc, KeyModifiers::NONE);
        assert_eq!(
            action_for(Mode::ErrorPopup, &esc),
            Some(Action::DismissError)
        );
        assert_eq!(action_for(Mode::ErrorPopup, &plain('j')), None);
    }

    #[test]
    fn text_modes_leave_letters_to_the_field() {
        for mode in Mode::ALL.into_iter().filter(|m| m.is_text()) {
            for c in ['q', 'j', 'n', '/', '?', ':', 'd', ' '] {
                assert_eq!(action_for(mode, &plain(c)), None, "{mode:?} binds {c:?}");
            }
            // ...but Ctrl-C still quits and Esc still gets out.
            let ctrl_c = press(KeyCode::Char('c'), KeyModifiers::CONTROL);
            assert_eq!(action_for(mode, &ctrl_c), Some(Action::Quit), "{mode:?}");
            let esc = press(KeyCode::Esc, KeyModifiers::NONE);
            assert_eq!(action_for(mode, &esc), Some(Action::Back), "{mode:?}");
        }
    }

    #[test]
    fn no_key_is_bound_twice_in_a_mode() {
        for mode in Mode::ALL {
            let keys: Vec<Key> = bindings(mode)
                .iter()
                .flat_map(|b| b.keys.iter().copied())
                .collect();
            for (i, a) in keys.iter().enumerate() {
                for b in &keys[i + 1..] {
                    assert_ne!(a, b, "{mode:?}");
                }
            }
        }
    }

    #[test]
    fn every_mode_can_quit_and_shows_hints() {
        for mode in Mode::ALL {
            assert!(
                bindings(mode).iter().any(|b| b.action == Action::Quit),
                "{mode:?}"
            );
            assert!(hints(mode).count() > 0, "{mode:?}");
        }
    }

    #[test]
    fn help_rows_spell_out_every_key() {
        let rows = help_rows(Mode::Dashboard);
        assert!(rows.contains(&("q".to_string(), "quit")));
        assert!(rows.contains(&("ctrl-c".to_string(), "quit")));
        assert!(rows.contains(&("j ↓".to_string(), "down")));
        assert!(rows.contains(&("pgup ctrl-b ctrl-u".to_string(), "page up")));
        assert_eq!(rows.len(), bindings(Mode::Dashboard).len());
    }
}
