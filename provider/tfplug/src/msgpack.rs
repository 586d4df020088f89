//! A small msgpack reader producing an untyped tree; `value.rs` types it.

use crate::Error;

/// An untyped msgpack (or JSON) value.
#[derive(Debug)]
pub(crate) enum Raw {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Array(Vec<Raw>),
    Map(Vec<(String, Raw)>),
    /// Any extension: Terraform's unknown value.
    Ext,
}

impl Raw {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Raw::Nil => "null",
            Raw::Bool(_) => "bool",
            Raw::Int(_) | Raw::Float(_) => "number",
            Raw::Str(_) => "string",
            Raw::Array(_) => "array",
            Raw::Map(_) => "map",
            Raw::Ext => "unknown",
        }
    }

    pub(crate) fn from_json(j: &serde_json::Value) -> Raw {
        use serde_json::Value as J;
        match j {
            J::Null => Raw::Nil,
            J::Bool(b) => Raw::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Raw::Int(i.into()),
                None => Raw::Float(n.as_f64().unwrap_or_default()),
            },
            J::String(s) => Raw::Str(s.clone()),
            J::Array(a) => Raw::Array(a.iter().map(Raw::from_json).collect()),
            J::Object(m) => Raw::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Raw::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// Reads msgpack from a byte slice.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn err(&self, reason: &str) -> Error {
        Error::Decode {
            path: String::new(),
            reason: format!("msgpack at byte {}: {reason}", self.pos),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() - self.pos < n {
            return Err(self.err("truncated"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, Error> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn str(&mut self, n: usize) -> Result<String, Error> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }

    fn array(&mut self, n: usize) -> Result<Raw, Error> {
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(self.read()?);
        }
        Ok(Raw::Array(v))
    }

    fn map(&mut self, n: usize) -> Result<Raw, Error> {
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let key = match self.read()? {
                Raw::Str(s) => s,
                Raw::Int(i) => i.to_string(),
                other => return Err(self.err(&format!("map key is {}", other.kind()))),
            };
            v.push((key, self.read()?));
        }
        Ok(Raw::Map(v))
    }

    fn ext(&mut self, len: usize) -> Result<Raw, Error> {
        self.take(1 + len)?; // type byte + payload
        Ok(Raw::Ext)
    }

    /// Reads one value.
    pub(crate) fn read(&mut self) -> Result<Raw, Error> {
        let m = self.take(1)?[0];
        Ok(match m {
            0x00..=0x7f => Raw::Int(m.into()),
            0x80..=0x8f => return self.map((m & 0x0f) as usize),
            0x90..=0x9f => return self.array((m & 0x0f) as usize),
            0xa0..=0xbf => Raw::Str(self.str((m & 0x1f) as usize)?),
            0xc0 => Raw::Nil,
            0xc2 => Raw::Bool(false),
            0xc3 => Raw::Bool(true),
            0xc4..=0xc6 => {
                let n = self.uint(1 << (m - 0xc4))? as usize;
                Raw::Str(self.str(n)?)
            }
            0xc7..=0xc9 => {
                let n = self.uint(1 << (m - 0xc7))? as usize;
                return self.ext(n);
            }
            0xca => Raw::Float(f32::from_bits(self.uint(4)? as u32).into()),
            0xcb => Raw::Float(f64::from_bits(self.uint(8)?)),
            0xcc..=0xcf => Raw::Int(self.uint(1 << (m - 0xcc))?.into()),
            0xd0 => Raw::Int((self.uint(1)? as u8 as i8).into()),
            0xd1 => Raw::Int((self.uint(2)? as u16 as i16).into()),
            0xd2 => Raw::Int((self.uint(4)? as u32 as i32).into()),
            0xd3 => Raw::Int((self.uint(8)? as i64).into()),
            0xd4..=0xd8 => return self.ext(1 << (m - 0xd4)),
            0xd9..=0xdb => {
                let n = self.uint(1 << (m - 0xd9))? as usize;
                Raw::Str(self.str(n)?)
            }
            0xdc | 0xdd => {
                let n = self.uint(if m == 0xdc { 2 } else { 4 })? as usize;
                return self.array(n);
            }
            0xde | 0xdf => {
                let n = self.uint(if m == 0xde { 2 } else { 4 })? as usize;
                return self.map(n);
            }
            0xe0..=0xff => Raw::Int((m as i8).into()),
            0xc1 => return Err(self.err("reserved marker 0xc1")),
        })
    }
}
