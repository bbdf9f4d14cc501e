//! Colours and text styles of the TUI, in one place, so screens ask for a meaning ("the style of
//! a FAILED status", "a key in the hint bar") rather than a colour.
//!
//! Honours `NO_COLOR` (<https://no-color.org>): when set and not empty, every style keeps its
//! modifiers (bold, reversed, dim) and drops its colours. Must not draw anything itself.

use crate::domain::Status;
use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    colors: bool,
}

impl Theme {
    /// Colours unless the `NO_COLOR` environment variable is set to a non-empty value.
    pub fn from_env() -> Theme {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme { colors: !no_color }
    }

    pub const fn colored() -> Theme {
        Theme { colors: true }
    }

    pub const fn plain() -> Theme {
        Theme { colors: false }
    }

    pub fn has_colors(&self) -> bool {
        self.colors
    }

    fn fg(&self, color: Color) -> Style {
        if self.colors {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    pub fn status(&self, status: Status) -> Style {
        match status {
            Status::Running => self.fg(Color::Green),
            Status::Pending => self.fg(Color::Blue),
            Status::Provisioning | Status::Deploying => self.fg(Color::Yellow),
            Status::Stopped => self.fg(Color::Gray),
            Status::Failed => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Status::Destroying => self.fg(Color::Magenta),
            Status::Deleted => self.fg(Color::DarkGray).add_modifier(Modifier::DIM),
        }
    }

    pub fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn table_header(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// The selected row: reversed works on every terminal, with or without colours.
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn border(&self) -> Style {
        self.fg(Color::DarkGray)
    }

    pub fn muted(&self) -> Style {
        self.fg(Color::DarkGray)
    }

    pub fn hint_key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn hint_text(&self) -> Style {
        self.fg(Color::Gray)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red)
    }

    pub fn error_border(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn link(&self) -> Style {
        self.fg(Color::Blue).add_modifier(Modifier::UNDERLINED)
    }

    pub fn ok(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warning(&self) -> Style {
        self.fg(Color::Yellow)
    }

    /// A process's standard error in a log: set apart from its output (the gutter mark `!`
    /// tells them apart without colours).
    pub fn stderr(&self) -> Style {
        self.fg(Color::LightRed)
    }

    /// proxdeck's own narration in a log.
    pub fn info(&self) -> Style {
        self.fg(Color::Cyan)
    }

    /// The `── stage X ──` separators in a log.
    pub fn stage_marker(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// A search match; reversed without colours.
    pub fn highlight(&self) -> Style {
        if self.colors {
            Style::new().fg(Color::Black).bg(Color::Yellow)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    /// The match `n`/`N` moved to.
    pub fn current_match(&self) -> Style {
        if self.colors {
            Style::new()
                .fg(Color::Black)
                .bg(Color::LightMagenta)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD | Modifier::UNDERLINED)
        }
    }

    pub fn gauge(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn spinner(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// The border of the field that has the keyboard.
    pub fn focused(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Greyed-out suggestions in empty fields.
    pub fn placeholder(&self) -> Style {
        self.fg(Color::DarkGray).add_modifier(Modifier::ITALIC)
    }

    pub fn bar(&self) -> Style {
        self.fg(Color::Cyan)
    }

    pub fn bar_failed(&self) -> Style {
        self.fg(Color::Red)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_theme_has_no_colors_but_keeps_modifiers() {
        let plain = Theme::plain();
        for status in Status::ALL {
            let style = plain.status(status);
            assert_eq!(style.fg, None, "{status}");
            assert_eq!(style.bg, None, "{status}");
        }
        assert!(
            plain
                .status(Status::Failed)
                .add_modifier
                .contains(Modifier::BOLD)
        );
        assert_eq!(plain.error().fg, None);
        for style in [
            plain.stderr(),
            plain.highlight(),
            plain.current_match(),
            plain.focused(),
        ] {
            assert_eq!((style.fg, style.bg), (None, None));
        }
        // Matches stay visible without colours.
        assert!(plain.highlight().add_modifier.contains(Modifier::REVERSED));
        assert_ne!(plain.highlight(), plain.current_match());
    }

    #[test]
    fn colored_theme_tells_failure_from_success() {
        let theme = Theme::colored();
        assert_eq!(theme.status(Status::Running).fg, Some(Color::Green));
        assert_eq!(theme.status(Status::Failed).fg, Some(Color::Red));
    }
}
