//! Plain-text helpers for widgets: wrapping, durations, sizes, clipping, search highlights.
//! No drawing; the span helpers only attach styles a caller chose.

use ratatui::style::Style;
use ratatui::text::Span;

/// Greedy word wrap on character counts; words longer than `width` are split.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        let mut len = 0usize;
        for word in paragraph.split_whitespace() {
            let mut word: Vec<char> = word.chars().collect();
            while !word.is_empty() {
                let sep = usize::from(len > 0);
                if len + sep + word.len() <= width {
                    if sep == 1 {
                        line.push(' ');
                    }
                    line.extend(word.iter());
                    len += sep + word.len();
                    word.clear();
                } else if len > 0 {
                    out.push(std::mem::take(&mut line));
                    len = 0;
                } else {
                    let rest = word.split_off(width);
                    out.push(word.iter().collect());
                    word = rest;
                }
            }
        }
        out.push(line);
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// `850ms`, `12.3s`, `4m05s`, `2h07m`: short, and precise where it matters.
pub fn format_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    if s < 3_600 {
        return format!("{}m{:02}s", s / 60, s % 60);
    }
    format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60)
}

/// `0:07`, `12:34`, `1:02:03`: a running clock.
pub fn format_clock(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 3_600 {
        format!("{}:{:02}", s / 60, s % 60)
    } else {
        format!("{}:{:02}:{:02}", s / 3_600, (s % 3_600) / 60, s % 60)
    }
}

/// Bytes in binary units with one decimal: `512.0 MiB`, `31.4 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `HH:MM:SS` (or `YYYY-MM-DD HH:MM:SS` with `date`) of Unix milliseconds, `offset_secs` east
/// of UTC.
pub fn format_time(ms: i64, offset_secs: i32, date: bool) -> String {
    use chrono::Offset;
    // An offset out of range (more than a day) falls back to UTC.
    let offset = chrono::FixedOffset::east_opt(offset_secs).unwrap_or_else(|| chrono::Utc.fix());
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            let t = t.with_timezone(&offset);
            if date {
                t.format("%Y-%m-%d %H:%M:%S").to_string()
            } else {
                t.format("%H:%M:%S").to_string()
            }
        })
        .unwrap_or_else(|| "--:--:--".into())
}

/// The characters of `text` from `skip` on (horizontal scrolling), at most `width` of them.
pub fn clip(text: &str, skip: usize, width: usize) -> String {
    text.chars().skip(skip).take(width).collect()
}

/// Byte ranges of every case-insensitive occurrence of `query` in `text` (not overlapping).
/// Only ASCII letters fold, so ranges always fall on character boundaries.
pub fn find_all(text: &str, query: &str) -> Vec<(usize, usize)> {
    if query.is_empty() || query.len() > text.len() {
        return Vec::new();
    }
    let hay = text.as_bytes();
    let needle = query.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if hay[i..i + needle.len()].eq_ignore_ascii_case(needle) && text.is_char_boundary(i) {
            out.push((i, i + needle.len()));
            i += needle.len();
        } else {
            i += 1;
        }
    }
    out
}

/// `text` as spans, every match of `query` styled `mark` and the rest `base`.
pub fn highlighted<'a>(text: &str, query: &str, base: Style, mark: Style) -> Vec<Span<'a>> {
    let mut spans = Vec::new();
    let mut at = 0;
    for (start, end) in find_all(text, query) {
        if start > at {
            spans.push(Span::styled(text[at..start].to_string(), base));
        }
        spans.push(Span::styled(text[start..end].to_string(), mark));
        at = end;
    }
    if at < text.len() || spans.is_empty() {
        spans.push(Span::styled(text[at..].to_string(), base));
    }
    spans
}

/// Frames of the spinner: plain ASCII, so every terminal and font draws it.
pub const SPINNER: [&str; 4] = ["-", "\\", "|", "/"];

/// A bar of `width` cells, `fraction` of them filled: `████░░░░`.
pub fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_on_words_and_splits_long_ones() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("one\n\ntwo", 10), ["one", "", "two"]);
        assert_eq!(wrap("", 10), [""]);
    }

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(format_duration(850), "850ms");
        assert_eq!(format_duration(12_345), "12.3s");
        assert_eq!(format_duration(245_000), "4m05s");
        assert_eq!(format_duration(7_620_000), "2h07m");
        assert_eq!(format_duration(-5), "0ms");
        assert_eq!(format_clock(7_000), "0:07");
        assert_eq!(format_clock(3_723_000), "1:02:03");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
        assert_eq!(format_time(1_768_478_400_000, 0, false), "12:00:00");
        assert_eq!(
            format_time(1_768_478_400_000, 3600, true),
            "2026-01-15 13:00:00"
        );
        assert_eq!(bar(0.5, 8), "████░░░░");
        assert_eq!(bar(2.0, 3), "███");
    }

    #[test]
    fn matches_fold_ascii_case_and_keep_boundaries() {
        assert_eq!(
            find_all("Error: error ERROR", "error"),
            [(0, 5), (7, 12), (13, 18)]
        );
        assert_eq!(find_all("aaaa", "aa"), [(0, 2), (2, 4)]);
        assert_eq!(find_all("héllo", "llo"), [(3, 6)]);
        assert!(find_all("abc", "").is_empty());
        let spans = highlighted("say hi, HI", "hi", Style::new(), Style::new().bold());
        let texts: Vec<&str> = spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(texts, ["say ", "hi", ", ", "HI"]);
        assert_eq!(clip("abcdef", 2, 3), "cde");
    }
}
