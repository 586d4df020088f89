//! Reading agent config files (HCL or JSON) into `RawConfig`, with positions on every error.

use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_path_to_error::Segment;

use crate::error::{ConfigError, Error, Origin, Pos};
use crate::raw::RawConfig;
use crate::spans::Spans;
use crate::{hcl_value, json_value};

/// The syntax of a config file, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.hcl`
    Hcl,
    /// `.json`
    Json,
}

impl Format {
    /// `.hcl` → HCL, `.json` → JSON, anything else → `None`.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "hcl" => Some(Format::Hcl),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// A place to read config from, in the order given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `-config-file`: one file.
    File(PathBuf),
    /// `-config-dir`: every `*.hcl` and `*.json` in it, in lexical order.
    Dir(PathBuf),
}

/// Parses config text; `file` is only used to name the place in errors and origins.
pub fn parse_str(text: &str, format: Format, file: &Path) -> Result<RawConfig, ConfigError> {
    let (value, spans) = parse_value(text, format, file)?;
    raw_from_value(value, &spans, file)
}

/// The file's text as a JSON value with the position of every key.
pub(crate) fn parse_value(
    text: &str,
    format: Format,
    file: &Path,
) -> Result<(Value, Spans), ConfigError> {
    match format {
        Format::Hcl => hcl_value::parse(text)
            .map_err(|e| ConfigError::at(file, Pos::of_offset(text, e.offset), e.message)),
        Format::Json => {
            json_value::parse(text).map_err(|(pos, message)| ConfigError::at(file, pos, message))
        }
    }
}

/// The agent settings in an already parsed file.
pub(crate) fn raw_from_value(
    value: Value,
    spans: &Spans,
    file: &Path,
) -> Result<RawConfig, ConfigError> {
    let mut value = value;
    let ignored = crate::consul_only::strip(&mut value, spans, file);
    let mut raw: RawConfig = deserialize(value, spans, file, crate::consul_only::CONSUL_ONLY_KEYS)?;
    raw.ignored = ignored;
    for (path, span) in spans.iter() {
        let origin = Origin::File {
            file: file.to_path_buf(),
            pos: span.key,
        };
        raw.origins.insert(path.clone(), origin);
    }
    raw.config_files = vec![file.to_path_buf()];
    Ok(raw)
}

/// A parsed config file of any shape (the agent's, `mesh sync`'s): it keeps
/// where each key was, so checks made after decoding can still name
/// file:line:col.
#[derive(Debug)]
pub struct Document {
    file: PathBuf,
    spans: Spans,
}

impl Document {
    /// The file this document was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// An error at the key `path` (`task[1].condition.services.names`), or at
    /// its nearest parent that was written in the file.
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let pos = self
            .spans
            .nearest(path)
            .map_or(Pos { line: 1, col: 1 }, |s| s.key);
        ConfigError::at(&self.file, pos, message)
    }
}

/// Parses HCL or JSON text into `T`; every syntax, type or unknown-key error
/// names file:line:col, and the returned [`Document`] places later checks.
pub fn parse_document<T: serde::de::DeserializeOwned>(
    text: &str,
    format: Format,
    file: &Path,
) -> Result<(T, Document), ConfigError> {
    let (value, spans) = parse_value(text, format, file)?;
    let typed = deserialize(value, &spans, file, &[])?;
    Ok((
        typed,
        Document {
            file: file.to_path_buf(),
            spans,
        },
    ))
}

/// Reads and parses one file; its extension must be `.hcl` or `.json`.
pub fn load_file(path: &Path) -> Result<RawConfig, Error> {
    let Some(format) = Format::from_path(path) else {
        return Err(ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: "config files must end in .hcl or .json".into(),
        }
        .into());
    };
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_str(&text, format, path)?)
}

/// The `*.hcl` and `*.json` files directly in `dir`, in lexical order.
pub fn dir_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && Format::from_path(&path).is_some() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The files `sources` name, directories expanded, in merge order.
pub fn expand(sources: &[Source]) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for source in sources {
        match source {
            Source::File(path) => files.push(path.clone()),
            Source::Dir(dir) => files.extend(dir_files(dir)?),
        }
    }
    Ok(files)
}

/// Reads every source and merges them, later files winning.
pub fn load(sources: &[Source]) -> Result<RawConfig, Error> {
    let mut merged = RawConfig::default();
    for file in expand(sources)? {
        merged = merged.merge(load_file(&file)?);
    }
    Ok(merged)
}

// === serde errors → positions ===

/// `also_known`: dotted key paths accepted besides `T`'s own (so a typo of
/// one gets a did-you-mean too).
fn deserialize<T: serde::de::DeserializeOwned>(
    value: Value,
    spans: &Spans,
    file: &Path,
    also_known: &[&str],
) -> Result<T, ConfigError> {
    let err = match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(raw) => return Ok(raw),
        Err(err) => err,
    };
    let mut parts: Vec<String> = Vec::new();
    for segment in err.path().iter() {
        match segment {
            Segment::Seq { index } => match parts.last_mut() {
                Some(last) => last.push_str(&format!("[{index}]")),
                None => parts.push(format!("[{index}]")),
            },
            Segment::Map { key } => parts.push(key.clone()),
            Segment::Enum { variant } => parts.push(variant.clone()),
            Segment::Unknown => {}
        }
    }
    let path = parts.join(".");
    let parent = parts[..parts.len().saturating_sub(1)].join(".");
    let inner = err.into_inner().to_string();
    let start = Pos { line: 1, col: 1 };
    if let Some((key, expected)) = parse_unknown_field(&inner) {
        let mut near = expected.clone();
        near.extend(also_known.iter().filter_map(|known| {
            let (known_parent, name) = known.rsplit_once('.').unwrap_or(("", known));
            (known_parent == parent).then(|| name.to_string())
        }));
        let pos = spans.nearest(&path).map_or(start, |s| s.key);
        return Err(ConfigError::at(
            file,
            pos,
            unknown_key_message(&key, &parent, &expected, &near),
        ));
    }
    let pos = spans.nearest(&path).map_or(start, |s| s.value);
    Err(ConfigError::at(
        file,
        pos,
        format!("`{path}`: {}", tidy(&inner)),
    ))
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into `x` and `[a, b]`.
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((key.to_string(), expected))
}

/// `near`: what a typo may be close to (`expected` and keys read but ignored).
fn unknown_key_message(key: &str, parent: &str, expected: &[String], near: &[String]) -> String {
    let place = if parent.is_empty() {
        String::new()
    } else {
        format!(" in `{parent}`")
    };
    match closest(key, near) {
        Some(best) => format!("unknown key `{key}`{place}, did you mean `{best}`?"),
        None => format!(
            "unknown key `{key}`{place}; known keys: {}",
            expected.join(", ")
        ),
    }
}

/// The candidate nearest to `key` by edit distance, if it is near enough to be a typo.
pub(crate) fn closest<'a>(key: &str, candidates: &'a [String]) -> Option<&'a str> {
    let key = key.to_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&key, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (diag + usize::from(ca != *cb)).min(up + 1).min(row[j] + 1);
            diag = up;
        }
    }
    row[b.len()]
}

/// Rewrites serde's "invalid type: string \"x\", expected u32" in words a user knows.
fn tidy(message: &str) -> String {
    let words = |expected: &str| -> String {
        match expected {
            "u16" | "u32" | "u64" => "a non-negative integer".into(),
            "i64" | "i32" => "an integer".into(),
            "a sequence" => "a list".into(),
            e if e.starts_with("struct ") => "a block".into(),
            e if e.starts_with("a map") => "a block or object".into(),
            e => e.into(),
        }
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.rsplit_once(", expected ") {
                return format!("expected {}, found {found}", words(expected));
            }
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hcl_err(text: &str) -> ConfigError {
        parse_str(text, Format::Hcl, Path::new("a.hcl")).unwrap_err()
    }

    fn json_err(text: &str) -> ConfigError {
        parse_str(text, Format::Json, Path::new("a.json")).unwrap_err()
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        let e = hcl_err("server = true\ndatacentre = \"dc1\"\n");
        assert_eq!(
            e.to_string(),
            "a.hcl:2:1: unknown key `datacentre`, did you mean `datacenter`?"
        );
        let e = hcl_err("ports {\n  htpp = 1\n}\n");
        assert_eq!(
            e.to_string(),
            "a.hcl:2:3: unknown key `htpp` in `ports`, did you mean `http`?"
        );
        let e = json_err("{\n  \"node_nme\": \"a\"\n}");
        assert_eq!(
            e.to_string(),
            "a.json:2:3: unknown key `node_nme`, did you mean `node_name`?"
        );
    }

    #[test]
    fn unknown_key_without_a_near_match_lists_keys() {
        let e = hcl_err("acl {\n  zzzzzzzz = 1\n}\n");
        assert_eq!(e.line, 2);
        assert!(
            e.message
                .ends_with("known keys: enabled, default_policy, tokens"),
            "{}",
            e.message
        );
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let e = hcl_err("ports {\n  http = \"eighty\"\n}\n");
        assert_eq!(
            e.to_string(),
            "a.hcl:2:10: `ports.http`: expected an integer, found string \"eighty\""
        );
        let e = json_err("{\"retry_join\": [\"a\", 7]}");
        assert_eq!((e.line, e.col), (1, 22));
        assert!(
            e.message.starts_with("`retry_join[1]`: expected a string"),
            "{}",
            e.message
        );
        let e = hcl_err("bootstrap_expect = -1\n");
        assert_eq!((e.line, e.col), (1, 20));
        assert!(e.message.contains("non-negative integer"), "{}", e.message);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = hcl_err("datacenter = \"dc1\"\nports {\n  http = \n}\n");
        assert_eq!(e.file, Path::new("a.hcl"));
        assert_eq!((e.line, e.col), (3, 10), "{e}");
        assert!(e.message.starts_with("syntax error"), "{e}");
        let e = json_err("{\"a\": tru}");
        assert_eq!((e.line, e.col), (1, 10), "{e}");
    }

    #[test]
    fn origins_name_the_key_position() {
        let raw = parse_str("\n  datacenter = \"x\"\n", Format::Hcl, Path::new("o.hcl")).unwrap();
        assert_eq!(
            raw.origin("datacenter"),
            Some(&Origin::File {
                file: "o.hcl".into(),
                pos: Pos { line: 2, col: 3 }
            })
        );
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
