//! Hostile log entries: whatever bytes reach `apply` (a peer's proposal, a
//! corrupted log), the answer is a refusal or an outcome, never a panic or
//! unbounded recursion, and replicas agree on it.

use mesh_types::{
    encode_entry, Command, ConfigEntry, GroupedCommand, Intention, LogEntry, Node, Outcome, TxnOp,
};
use proptest::prelude::*;

use crate::StateStore;

fn text() -> impl Strategy<Value = String> {
    "[a-z/]{0,12}"
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Noop),
        (
            text(),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<u64>(),
            any::<Option<u64>>()
        )
            .prop_map(|(key, value, flags, cas)| Command::KvSet {
                key,
                value,
                flags,
                cas
            }),
        (text(), any::<bool>()).prop_map(|(key, recurse)| Command::KvDelete {
            key,
            recurse,
            cas: None
        }),
        proptest::collection::vec(text(), 0..6).prop_map(|keys| Command::Txn {
            ops: keys.into_iter().map(|key| TxnOp::Get { key }).collect()
        }),
        text().prop_map(|name| Command::NodeRegister {
            node: Node {
                name,
                ..Default::default()
            }
        }),
        (text(), text()).prop_map(|(kind, name)| Command::AllOrNothing {
            commands: vec![
                GroupedCommand::ConfigSet {
                    entry: ConfigEntry {
                        kind,
                        name,
                        body_json: "{\"A\":[[[[1]]]]}".into(),
                        ..Default::default()
                    },
                    cas: None,
                    takeover: false,
                },
                GroupedCommand::IntentionSet {
                    intention: Intention::default(),
                    takeover: false,
                },
            ]
        }),
        proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|snapshot| Command::Restore { snapshot }),
    ]
}

fn entry() -> impl Strategy<Value = LogEntry> {
    prop_oneof![
        command().prop_map(|c| LogEntry::One(Box::new(c))),
        proptest::collection::vec(command(), 0..8).prop_map(LogEntry::Batch),
    ]
}

/// One change to an encoding: flip, insert or remove a byte, or cut it short.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip(i, b) if !bytes.is_empty() => bytes[i % len] ^= b | 1,
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Mutation::Remove(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
            _ => {}
        }
    }
    bytes
}

/// Two replicas fed the same bytes must end in the same state.
fn apply_on_two(bytes: &[u8]) -> Outcome {
    let (a, b) = (StateStore::new(), StateStore::new());
    let (oa, ob) = (a.apply(1, bytes), b.apply(1, bytes));
    assert_eq!(oa, ob);
    assert_eq!(a.snapshot(), b.snapshot());
    oa
}

proptest! {
    #[test]
    fn random_bytes_are_refused_or_applied_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        apply_on_two(&bytes);
    }

    #[test]
    fn mutated_entries_are_refused_or_applied_never_a_panic(
        entry in entry(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let bytes = mutate(encode_entry(&entry).unwrap(), &mutations);
        apply_on_two(&bytes);
        let _ = mesh_types::decode_command(&bytes);
    }

    #[test]
    fn valid_entries_decode_to_what_was_encoded(entry in entry()) {
        let bytes = encode_entry(&entry).unwrap();
        prop_assert_eq!(mesh_types::decode_entry(&bytes).unwrap(), entry);
    }
}

/// The shape that used to be a poison pill: a batch inside a batch inside a
/// batch, tens of thousands deep, in a few hundred KB. Every level is a
/// variant tag and a length; nothing in the types can hold it now.
#[test]
fn a_deeply_nested_old_style_batch_is_refused_without_recursion() {
    let mut bytes = vec![0u8]; // Noop at the bottom
    for _ in 0..50_000 {
        let mut outer = vec![14u8, 1];
        let mut len = bytes.len();
        while len >= 0x80 {
            outer.push((len as u8) | 0x80);
            len >>= 7;
        }
        outer.push(len as u8);
        outer.extend_from_slice(&bytes);
        bytes = outer;
        if bytes.len() > 400_000 {
            break;
        }
    }
    assert!(matches!(apply_on_two(&bytes), Outcome::Rejected(_)));
    // A huge claimed length allocates nothing before it fails.
    let claim = [1u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert!(matches!(apply_on_two(&claim), Outcome::Rejected(_)));
}
