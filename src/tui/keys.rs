//! Keybindings as data: for each [`Mode`], which keys mean which [`Action`], with the words the
//! hint bar shows (and, later, the help screen). Lookup and hints read the same table, so what
//! the bar promises is what the keys do.
//!
//! Owns only the meaning of keys. Must not change state or talk to the engine: `App::dispatch`
//! does that with the `Action` found here.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Which table of bindings is live. A popup takes the keyboard until it is dismissed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Dashboard,
    ErrorPopup,
}

/// What a key means, independent of which key it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    SelectPrev,
    SelectNext,
    SelectFirst,
    SelectLast,
    Refresh,
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

/// A row of the keymap: the keys, how the hint bar names them, what they do.
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

const DASHBOARD: &[Binding] = &[
    Binding {
        keys: &[Key::char('q'), Key::plain(KeyCode::Esc), Key::ctrl('c')],
        label: "q",
        action: Action::Quit,
        description: "quit",
        hint: true,
    },
    Binding {
        keys: &[Key::char('j'), Key::plain(KeyCode::Down)],
        label: "j/↓",
        action: Action::SelectNext,
        description: "down",
        hint: true,
    },
    Binding {
        keys: &[Key::char('k'), Key::plain(KeyCode::Up)],
        label: "k/↑",
        action: Action::SelectPrev,
        description: "up",
        hint: true,
    },
    Binding {
        keys: &[Key::char('g'), Key::plain(KeyCode::Home)],
        label: "g",
        action: Action::SelectFirst,
        description: "top",
        hint: true,
    },
    Binding {
        keys: &[Key::char('G'), Key::plain(KeyCode::End)],
        label: "G",
        action: Action::SelectLast,
        description: "bottom",
        hint: true,
    },
    Binding {
        keys: &[Key::char('r'), Key::ctrl('r')],
        label: "r",
        action: Action::Refresh,
        description: "refresh",
        hint: true,
    },
];

const ERROR_POPUP: &[Binding] = &[
    Binding {
        keys: &[Key::plain(KeyCode::Enter), Key::plain(KeyCode::Esc)],
        label: "Enter/Esc",
        action: Action::DismissError,
        description: "dismiss",
        hint: true,
    },
    Binding {
        keys: &[Key::char('q'), Key::ctrl('c')],
        label: "q",
        action: Action::Quit,
        description: "quit",
        hint: true,
    },
];

/// The whole table for one mode, in display order.
pub fn bindings(mode: Mode) -> &'static [Binding] {
    match mode {
        Mode::Dashboard => DASHBOARD,
        Mode::ErrorPopup => ERROR_POPUP,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn quit_keys_on_the_dashboard() {
        for ev in [
            press(KeyCode::Char('q'), KeyModifiers::NONE),
            press(KeyCode::Esc, KeyModifiers::NONE),
            press(KeyCode::Char('c'), KeyModifiers::CONTROL),
        ] {
            assert_eq!(
                action_for(Mode::Dashboard, &ev),
                Some(Action::Quit),
                "{ev:?}"
            );
        }
        // A plain `c` is not Ctrl-C.
        assert_eq!(
            action_for(
                Mode::Dashboard,
                &press(KeyCode::Char('c'), KeyModifiers::NONE)
            ),
            None
        );
    }

    #[test]
    fn shifted_letters_match_with_or_without_the_shift_flag() {
        for mods in [KeyModifiers::NONE, KeyModifiers::SHIFT] {
            assert_eq!(
                action_for(Mode::Dashboard, &press(KeyCode::Char('G'), mods)),
                Some(Action::SelectLast)
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
        // Navigation keys are not live under a popup.
        let j = press(KeyCode::Char('j'), KeyModifiers::NONE);
        assert_eq!(action_for(Mode::ErrorPopup, &j), None);
    }

    #[test]
    fn no_key_is_bound_twice_in_a_mode() {
        for mode in [Mode::Dashboard, Mode::ErrorPopup] {
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
        for mode in [Mode::Dashboard, Mode::ErrorPopup] {
            assert!(bindings(mode).iter().any(|b| b.action == Action::Quit));
            assert!(hints(mode).count() > 0);
        }
    }
}
