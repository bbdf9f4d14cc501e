//! The key-hint bar at the bottom of the screen, generated from the keymap of the current mode
//! (`keys::hints`), never written by hand. Render-only.

use crate::tui::keys::{self, Mode};
use crate::tui::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

const SEPARATOR: &str = "  ";

pub struct HintBar<'a> {
    pub mode: Mode,
    pub theme: &'a Theme,
}

impl Widget for HintBar<'_> {
    /// Shows as many whole hints as fit; a hint is never cut in the middle.
    fn render(self, area: Rect, buf: &mut Buffer) {
        let mut spans: Vec<Span> = vec![Span::raw(" ")];
        let mut width = 1usize;
        for (label, description) in keys::hints(self.mode) {
            let sep = if spans.len() > 1 { SEPARATOR } else { "" };
            let item = sep.len() + Span::raw(label).width() + 1 + Span::raw(description).width();
            if width + item > usize::from(area.width) {
                break;
            }
            width += item;
            if !sep.is_empty() {
                spans.push(Span::raw(sep));
            }
            spans.push(Span::styled(label, self.theme.hint_key()));
            spans.push(Span::styled(
                format!(" {description}"),
                self.theme.hint_text(),
            ));
        }
        Line::from(spans).render(area, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(width: u16) -> String {
        let area = Rect::new(0, 0, width, 1);
        let mut buf = Buffer::empty(area);
        HintBar {
            mode: Mode::Dashboard,
            theme: &Theme::plain(),
        }
        .render(area, &mut buf);
        (0..width)
            .map(|x| buf[(x, 0)].symbol().to_string())
            .collect::<String>()
            .trim_end()
            .to_string()
    }

    #[test]
    fn hints_come_from_the_keymap() {
        let text = rendered(100);
        assert!(
            text.starts_with(" n new  enter details  a actions"),
            "{text}"
        );
        assert!(text.ends_with("? help  q quit  : cmd"), "{text}");
    }

    #[test]
    fn narrow_bars_drop_whole_hints() {
        let text = rendered(24);
        assert_eq!(text, " n new  enter details");
        assert_eq!(rendered(20), " n new");
    }
}
