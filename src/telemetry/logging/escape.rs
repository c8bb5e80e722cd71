//! Escaping adapters that sit between a formatter and the output, so values (including `Debug`
//! output) are escaped while they are written instead of being collected into a `String` first.

use std::fmt::{self, Write};

/// Escapes everything written through it as the inside of a JSON string (RFC 8259).
pub(crate) struct JsonEscape<'a, W: Write + ?Sized>(pub(crate) &'a mut W);

impl<W: Write + ?Sized> Write for JsonEscape<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escaped = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escaped)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// Escapes everything written through it as the inside of a double-quoted logfmt value, the way
/// logrus' text formatter quotes (Go `%q`: backslash escapes, `\xNN` for other control bytes).
pub(crate) struct QuoteEscape<'a, W: Write + ?Sized>(pub(crate) &'a mut W);

impl<W: Write + ?Sized> Write for QuoteEscape<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escaped = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x00..=0x1f | 0x7f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\x{b:02x}")?;
            } else {
                self.0.write_str(escaped)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// Writes `s` as a complete JSON string, quotes included.
pub(crate) fn write_json_str(w: &mut (impl Write + ?Sized), s: &str) -> fmt::Result {
    w.write_char('"')?;
    JsonEscape(w).write_str(s)?;
    w.write_char('"')
}

/// Writes a logfmt value: bare when logrus would leave it bare, quoted otherwise.
pub(crate) fn write_text_value(w: &mut (impl Write + ?Sized), s: &str) -> fmt::Result {
    if needs_quoting(s) {
        w.write_char('"')?;
        QuoteEscape(w).write_str(s)?;
        w.write_char('"')
    } else {
        w.write_str(s)
    }
}

/// logrus' `TextFormatter.needsQuoting`: anything beyond `[A-Za-z0-9-._/@^+]` gets quoted.
fn needs_quoting(s: &str) -> bool {
    !s.bytes().all(is_bare_byte)
}

/// A byte logrus leaves unquoted in a text value.
pub(crate) fn is_bare_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/' | b'@' | b'^' | b'+')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_quotes_backslashes_and_controls() {
        let mut out = String::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é").unwrap();
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn text_quotes_only_when_logrus_would() {
        let mut out = String::new();
        write_text_value(&mut out, "dapr.runtime").unwrap();
        out.push(' ');
        write_text_value(&mut out, "two words \"q\"").unwrap();
        out.push(' ');
        write_text_value(&mut out, "").unwrap();
        assert_eq!(out, r#"dapr.runtime "two words \"q\"" "#);
    }
}
