//! Bounding check output, as Consul does (`check_output_max_size`, 4 KiB).

/// The most output, in bytes, a check keeps (Consul's default).
pub const MAX_OUTPUT_BYTES: usize = 4096;

/// The first `max` bytes of `bytes` as text, cut on a character boundary.
pub(crate) fn head(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if bytes.len() <= max {
        return text;
    }
    // A multi-byte character cut in half shows up as a trailing U+FFFD.
    text.trim_end_matches('\u{FFFD}').to_string()
}

/// Keeps the last `max` bytes written to it, counting everything.
///
/// Script output is capped this way (like Consul's ring buffer) because the
/// end of a failing script's output is usually what explains the failure.
#[derive(Debug)]
pub(crate) struct Tail {
    buf: Vec<u8>,
    max: usize,
    total: usize,
}

impl Tail {
    pub(crate) fn new(max: usize) -> Tail {
        Tail {
            buf: Vec::with_capacity(max.min(1024)),
            max,
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.total += data.len();
        if data.len() >= self.max {
            self.buf.clear();
            self.buf.extend_from_slice(&data[data.len() - self.max..]);
            return;
        }
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.max);
        self.buf.drain(..overflow);
        self.buf.extend_from_slice(data);
    }

    /// The kept bytes as text, saying how much was dropped when something was.
    pub(crate) fn render(&self) -> String {
        let kept = String::from_utf8_lossy(&self.buf);
        if self.total <= self.max {
            return kept.into_owned();
        }
        let kept = kept.trim_start_matches('\u{FFFD}');
        format!(
            "Captured {} of {} bytes\n...\n{}",
            self.buf.len(),
            self.total,
            kept
        )
    }
}
