//! JSON text → JSON value, remembering where every key is.
//!
//! serde_json's `Value` forgets positions, so after it has checked the syntax a
//! small scanner walks the same text once more and records each key's offset.

use serde_json::Value;

use crate::error::Pos;
use crate::raw::join;
use crate::spans::Spans;

/// Parses JSON text into a value and the position of each key path.
pub(crate) fn parse(text: &str) -> Result<(Value, Spans), (Pos, String)> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let pos = Pos {
            line: e.line().max(1),
            col: e.column().max(1),
        };
        (
            pos,
            format!("syntax error: {}", strip_position(&e.to_string())),
        )
    })?;
    let mut spans = Spans::new(text);
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        text,
        i: 0,
        spans: &mut spans,
    };
    scanner.ws();
    scanner.value("");
    Ok((value, spans))
}

/// serde_json appends " at line L column C"; we print the position up front instead.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    text: &'a str,
    i: usize,
    spans: &'a mut Spans,
}

impl Scanner<'_> {
    fn peek(&self) -> u8 {
        self.bytes.get(self.i).copied().unwrap_or(0)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self, path: &str) {
        match self.peek() {
            b'{' => {
                self.i += 1;
                loop {
                    self.ws();
                    if self.peek() != b'"' {
                        self.i += 1; // `}` of an empty object (or the end)
                        return;
                    }
                    let key_start = self.i;
                    let key = self.string();
                    self.ws();
                    self.i += 1; // `:`
                    self.ws();
                    let child = join(path, &key);
                    self.spans.insert_offsets(&child, key_start, self.i);
                    self.value(&child);
                    self.ws();
                    let sep = self.peek();
                    self.i += 1;
                    if sep != b',' {
                        return;
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut index = 0;
                loop {
                    self.ws();
                    if matches!(self.peek(), b']' | 0) {
                        self.i += 1;
                        return;
                    }
                    let child = format!("{path}[{index}]");
                    self.spans.insert_offsets(&child, self.i, self.i);
                    self.value(&child);
                    self.ws();
                    let sep = self.peek();
                    self.i += 1;
                    if sep != b',' {
                        return;
                    }
                    index += 1;
                }
            }
            b'"' => {
                self.string();
            }
            _ => {
                while !matches!(
                    self.peek(),
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | 0
                ) {
                    self.i += 1;
                }
            }
        }
    }

    /// Reads a string literal starting at its opening quote and returns it unescaped.
    fn string(&mut self) -> String {
        let start = self.i;
        self.i += 1;
        while !matches!(self.peek(), b'"' | 0) {
            self.i += if self.peek() == b'\\' { 2 } else { 1 };
        }
        self.i += 1;
        let end = self.i.min(self.text.len());
        serde_json::from_str(&self.text[start..end]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_nested_keys_and_list_items() {
        let text = "{\n  \"ports\": {\"http\": 1},\n  \"retry_join\": [\"a\", \"b\"],\n  \"e\\\"x\": {}\n}";
        let (_, spans) = parse(text).unwrap();
        let http = spans.get("ports.http").unwrap();
        assert_eq!((http.key.line, http.key.col), (2, 13));
        assert_eq!((http.value.line, http.value.col), (2, 21));
        let b = spans.get("retry_join[1]").unwrap();
        assert_eq!((b.value.line, b.value.col), (3, 23));
        assert!(spans.get("e\"x").is_some());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (pos, message) = parse("{\n  \"a\": 1,\n}").unwrap_err();
        assert_eq!(pos.line, 3);
        assert!(
            message.starts_with("syntax error: trailing comma"),
            "{message}"
        );
    }
}
