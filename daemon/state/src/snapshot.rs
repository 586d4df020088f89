use crate::State;

/// A snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot of this format version.
    #[error("snapshot is corrupt or from an unsupported version: {0}")]
    Decode(String),
}

/// Bumped when the snapshot layout changes incompatibly.
const FORMAT_VERSION: u8 = 2;

impl State {
    pub(crate) fn to_snapshot(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        // Encoding plain maps and strings cannot fail.
        out.extend(postcard::to_stdvec(self).expect("state encodes"));
        out
    }

    pub(crate) fn from_snapshot(bytes: &[u8]) -> Result<State, SnapshotError> {
        match bytes.split_first() {
            Some((&FORMAT_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|e| SnapshotError::Decode(e.to_string()))
            }
            Some((v, _)) => Err(SnapshotError::Decode(format!("format version {v}"))),
            None => Err(SnapshotError::Decode("empty".into())),
        }
    }
}
