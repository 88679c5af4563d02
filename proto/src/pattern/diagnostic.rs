//! What lint reports: a problem at a place in one of the pattern's files.
//!
//! Lines and columns are 1-based and count characters, the way editors and compilers print
//! them, so `file:line:column` can be clicked in a terminal.

use std::fmt;

/// A position in a file: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mark {
    /// The line, starting at 1.
    pub line: usize,
    /// The column, starting at 1, counted in characters.
    pub column: usize,
}

impl Mark {
    /// The start of a file.
    pub const START: Mark = Mark { line: 1, column: 1 };

    /// The mark `offset` characters to the right on the same line.
    pub(crate) fn right(self, offset: usize) -> Mark {
        Mark { line: self.line, column: self.column + offset }
    }

    /// The mark of the character at byte `offset` in `text`.
    pub(crate) fn of_byte_offset(text: &str, offset: usize) -> Mark {
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |idx| idx + 1);
        Mark { line, column: before[line_start..].chars().count() + 1 }
    }
}

/// The most characters of input a message quotes; longer text is cut with `…`.
pub(crate) const EXCERPT_CHARS: usize = 80;

/// Input text as a message quotes it: control characters escaped (`\n`, `\t`, `\u{7}`), so
/// a message stays on one line and cannot drive the terminal, and at most [`EXCERPT_CHARS`]
/// characters, so a huge value is not echoed in full. Every message that repeats input goes
/// through here.
pub(crate) fn excerpt(text: &str) -> String {
    let mut shown = String::new();
    for (idx, character) in text.chars().enumerate() {
        if idx == EXCERPT_CHARS {
            shown.push('…');
            break;
        }
        if character.is_control() {
            shown.extend(character.escape_debug());
        } else {
            shown.push(character);
        }
    }
    shown
}

/// A message as it is shown: control characters escaped wherever they are, and every quoted
/// (backticked) span cut to [`EXCERPT_CHARS`]. Every diagnostic and value problem goes through
/// here, so a message that forgot [`excerpt`] still cannot print a huge or raw input.
pub(crate) fn tidy(message: &str) -> String {
    let mut shown = String::with_capacity(message.len());
    for (idx, part) in message.split('`').enumerate() {
        if idx > 0 {
            shown.push('`');
        }
        // Odd parts are inside backticks.
        let quoted = idx % 2 == 1;
        let n_chars = part.chars().count();
        if quoted && n_chars > EXCERPT_CHARS + 1 {
            let cut: String = part.chars().take(EXCERPT_CHARS).collect();
            shown.push_str(&excerpt(&cut));
            shown.push('…');
        } else {
            shown.extend(part.chars().flat_map(|character| {
                let escaped: Vec<char> = if character.is_control() { character.escape_debug().collect() } else { vec![character] };
                escaped
            }));
        }
    }
    shown
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// One problem found in a pattern, displayed as `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    /// The file, relative to the pattern directory (for example `pattern.yaml`).
    pub file: String,
    /// The line, starting at 1.
    pub line: usize,
    /// The column, starting at 1, counted in characters.
    pub column: usize,
    /// What is wrong, as one sentence without a trailing period.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic in `file` at `mark`; control characters in the message are escaped and
    /// quoted spans bounded.
    pub fn new(file: impl Into<String>, mark: Mark, message: impl Into<String>) -> Self {
        Diagnostic { file: tidy(&file.into()), line: mark.line, column: mark.column, message: tidy(&message.into()) }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// Collects the diagnostics of one file.
#[derive(Debug)]
pub(crate) struct Report {
    file: String,
    diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub(crate) fn new(file: impl Into<String>) -> Self {
        Report { file: file.into(), diagnostics: Vec::new() }
    }

    pub(crate) fn error(&mut self, mark: Mark, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(self.file.clone(), mark, message));
    }

    /// Adds a diagnostic about another file (a template referenced from this one).
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// The diagnostics in file, line and column order, each reported once.
    pub(crate) fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort();
        self.diagnostics.dedup();
        self.diagnostics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_escaped_and_bounded() {
        let long = "x".repeat(200);
        let cut = format!("{}…", "x".repeat(EXCERPT_CHARS));
        let cases: [(&str, &str); 6] = [
            ("plain", "plain"),
            ("a\nb", "a\\nb"),
            ("tab\there", "tab\\there"),
            ("bell\u{7}", "bell\\u{7}"),
            ("é\u{1b}[31m", "é\\u{1b}[31m"),
            (&long, &cut),
        ];
        for (input, expected) in cases {
            assert_eq!(excerpt(input), expected, "{input:?}");
        }
    }

    #[test]
    fn messages_are_tidied() {
        let long = "y".repeat(300);
        let cases: [(String, String); 4] = [
            ("`a` is not `b`".to_owned(), "`a` is not `b`".to_owned()),
            (format!("`{long}` is not a hostname"), format!("`{}…` is not a hostname", "y".repeat(EXCERPT_CHARS))),
            ("raw \n and \u{1b}[2J in `x\ty`".to_owned(), "raw \\n and \\u{1b}[2J in `x\\ty`".to_owned()),
            (format!("`{}`", excerpt(&long)), format!("`{}…`", "y".repeat(EXCERPT_CHARS))),
        ];
        for (input, expected) in cases {
            assert_eq!(tidy(&input), expected, "{input:?}");
        }
    }
}
