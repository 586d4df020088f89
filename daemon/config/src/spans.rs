//! Positions of keys and values in a config file, looked up by key path.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::error::Pos;

/// Where a key and its value start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeySpan {
    pub key: Pos,
    pub value: Pos,
}

/// Key path (`ports.http`, `retry_join[1]`) → position, for one file.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    text: String,
    map: BTreeMap<String, KeySpan>,
}

impl Spans {
    /// An empty index for `text`.
    pub fn new(text: &str) -> Spans {
        Spans {
            text: text.to_string(),
            map: BTreeMap::new(),
        }
    }

    /// Records byte ranges of a key and its value.
    pub fn insert(&mut self, path: &str, key: Option<Range<usize>>, value: Option<Range<usize>>) {
        let key = self.pos(key.map_or(0, |r| r.start));
        let value = self.pos(value.map_or(0, |r| r.start));
        self.map.insert(path.to_string(), KeySpan { key, value });
    }

    /// Records byte offsets of a key and its value.
    pub fn insert_offsets(&mut self, path: &str, key: usize, value: usize) {
        self.insert(path, Some(key..key), Some(value..value));
    }

    /// The position of exactly this path.
    pub fn get(&self, path: &str) -> Option<&KeySpan> {
        self.map.get(path)
    }

    /// The position of this path or of its nearest recorded parent.
    pub fn nearest(&self, path: &str) -> Option<&KeySpan> {
        let mut path = path;
        loop {
            if let Some(span) = self.map.get(path) {
                return Some(span);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }

    /// Every recorded path with its position.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &KeySpan)> {
        self.map.iter()
    }

    /// Line and column of a byte offset in this file.
    pub fn pos(&self, offset: usize) -> Pos {
        Pos::of_offset(&self.text, offset)
    }
}
