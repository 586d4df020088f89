//! Errors a user sees when loading or validating agent configuration.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem at a place in a config file: syntax, type, unknown key or bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{col}: {message}", file.display())]
pub struct ConfigError {
    /// The file the error is in.
    pub file: PathBuf,
    /// One-based line.
    pub line: usize,
    /// One-based column (in characters).
    pub col: usize,
    /// What is wrong and, where we can tell, what to write instead.
    pub message: String,
}

impl ConfigError {
    /// An error at `pos` in `file`.
    pub fn at(file: &Path, pos: Pos, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        }
    }
}

/// A one-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// One-based line.
    pub line: usize,
    /// One-based column, counted in characters.
    pub col: usize,
}

impl Pos {
    /// The line and column of byte `offset` in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Pos {
        let before = &text[..text.floor_char_boundary(offset)];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Pos {
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
        }
    }
}

/// Where a configuration value came from, so a validation error can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A key in a config file.
    File {
        /// The file.
        file: PathBuf,
        /// Where the key is.
        pos: Pos,
    },
    /// A command-line flag, named as the user typed it (`-bind`).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { file, pos } => write!(f, "{}:{}:{}", file.display(), pos.line, pos.col),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A value that parsed but is not acceptable (bad IP, datacenter name, conflicting keys, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The config key at fault, as written in files (`ports.http`).
    pub key: String,
    /// Where the value was set; `None` when it is a default or missing.
    pub origin: Option<Origin>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) => write!(f, "{origin}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Anything that stops an agent configuration from loading.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A config file has a syntax, type or unknown-key error.
    #[error(transparent)]
    Parse(#[from] ConfigError),
    /// The merged configuration is not valid.
    #[error(transparent)]
    Validation(#[from] ValidationError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_line_and_column() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(Pos::of_offset(text, 0), Pos { line: 1, col: 1 });
        assert_eq!(Pos::of_offset(text, 6), Pos { line: 2, col: 1 });
        // "é" is two bytes but one column.
        assert_eq!(Pos::of_offset(text, 9), Pos { line: 2, col: 3 });
    }

    #[test]
    fn display_names_the_place() {
        let err = ConfigError::at(Path::new("a.hcl"), Pos { line: 3, col: 7 }, "bad");
        assert_eq!(err.to_string(), "a.hcl:3:7: bad");
        let err = ValidationError {
            key: "bind_addr".into(),
            origin: Some(Origin::Flag("-bind".into())),
            message: "not an IP".into(),
        };
        assert_eq!(err.to_string(), "flag -bind: bind_addr: not an IP");
    }
}
