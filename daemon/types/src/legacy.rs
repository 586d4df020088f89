//! The previous version's encoding of commands and log entries, read so an
//! upgraded server replays the log it wrote and accepts proposals from
//! servers not yet upgraded. That encoding had `Batch` (variant 14) and
//! `AllOrNothing` (19) hold encoded commands, so it could nest; here each
//! is unpacked exactly one level and anything nested deeper is refused,
//! without recursion. Every other variant has the payload it has now, one
//! index further on past `Batch`.

use serde_bytes::ByteBuf;

use crate::command::decode_bare;
use crate::{Command, CommandError, GroupedCommand, LogEntry};

const BATCH: u8 = 14;
const ALL_OR_NOTHING: u8 = 19;
const LAST: u8 = 25;

fn refused(why: &str) -> CommandError {
    CommandError::Decode(format!("previous-version command: {why}"))
}

/// One previous-version command; `in_group`: it sits inside an
/// `AllOrNothing`, which may not hold another group.
pub(crate) fn command(bytes: &[u8], in_group: bool) -> Result<Command, CommandError> {
    let (&tag, rest) = bytes.split_first().ok_or_else(|| refused("empty"))?;
    match tag {
        0..BATCH => decode_bare(bytes),
        BATCH => Err(refused("a batch where a single command belongs")),
        ALL_OR_NOTHING if in_group => Err(refused("a group inside a group")),
        ALL_OR_NOTHING => {
            let inner: Vec<ByteBuf> = decode_bare(rest)?;
            let commands = inner
                .iter()
                .map(|b| {
                    GroupedCommand::try_from(command(b, true)?)
                        .map_err(|_| refused("a command that cannot be grouped"))
                })
                .collect::<Result<_, _>>()?;
            Ok(Command::AllOrNothing { commands })
        }
        // The same payloads, one variant index earlier than before.
        _ if tag <= LAST => {
            let mut shifted = bytes.to_vec();
            shifted[0] = tag - 1;
            decode_bare(&shifted)
        }
        _ => Err(refused("unknown variant")),
    }
}

/// One previous-version log entry: a command, or a group commit's batch of
/// encoded commands.
pub(crate) fn entry(bytes: &[u8]) -> Result<LogEntry, CommandError> {
    match bytes.split_first() {
        Some((&BATCH, rest)) => {
            let inner: Vec<ByteBuf> = decode_bare(rest)?;
            let commands = inner
                .iter()
                .map(|b| command(b, false))
                .collect::<Result<_, _>>()?;
            Ok(LogEntry::Batch(commands))
        }
        _ => command(bytes, false).map(|c| LogEntry::One(Box::new(c))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_entry;

    /// What the previous version wrote for a KvSet (variant 1).
    fn old_kv_set() -> Vec<u8> {
        // variant, key "k", value "v1" (a sequence of bytes), flags 7, cas None
        vec![1, 1, b'k', 2, b'v', b'1', 7, 0]
    }

    #[test]
    fn previous_version_entries_decode_to_what_they_meant() {
        assert_eq!(
            decode_entry(&old_kv_set()).unwrap(),
            LogEntry::One(Box::new(Command::KvSet {
                key: "k".into(),
                value: b"v1".to_vec(),
                flags: 7,
                cas: None,
            }))
        );
        // An old CaLeafIssued (20) is today's 19.
        let old = [20u8, 1, b'a', 1, b'r'];
        assert_eq!(
            decode_entry(&old).unwrap(),
            LogEntry::One(Box::new(Command::CaLeafIssued {
                key: "a".into(),
                root_id: "r".into(),
            }))
        );
        // An old group commit: a batch of two encoded commands.
        let mut batch = vec![BATCH, 2, old_kv_set().len() as u8];
        batch.extend(old_kv_set());
        batch.extend([1, 0]); // one byte: Noop
        let LogEntry::Batch(cmds) = decode_entry(&batch).unwrap() else {
            panic!("a batch");
        };
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[1], Command::Noop);
    }

    #[test]
    fn an_old_group_becomes_a_typed_group_and_cannot_nest() {
        let delete = |name: &str| {
            // Old ConfigDelete (12): kind, name, owner, takeover.
            let mut b = vec![12, 4];
            b.extend(b"mesh");
            b.push(name.len() as u8);
            b.extend(name.as_bytes());
            b.extend([3, b'a', b'p', b'i', 0]);
            b
        };
        let inner = delete("m");
        let mut group = vec![ALL_OR_NOTHING, 1, inner.len() as u8];
        group.extend(&inner);
        let cmd = command(&group, false).unwrap();
        assert!(matches!(
            cmd,
            Command::AllOrNothing { ref commands } if commands.len() == 1
        ));
        // A group inside a group, or a batch inside a batch: refused.
        let mut nested = vec![ALL_OR_NOTHING, 1, group.len() as u8];
        nested.extend(&group);
        assert!(command(&nested, false).is_err());
        let deep = [BATCH, 1, 3, BATCH, 1, 0];
        assert!(entry(&deep).is_err());
    }
}
