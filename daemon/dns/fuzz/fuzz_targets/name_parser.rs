//! The query-name grammar on arbitrary labels: never panics, and what it
//! returns is consistent with the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_dns::name::{parse, Lookup};

fuzz_target!(|data: &[u8]| {
    // Labels as on the wire: length-prefixed, at most 63 bytes each.
    let mut labels: Vec<&[u8]> = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len & 0x3f).min(tail.len());
        labels.push(&tail[..len]);
        rest = &tail[len..];
    }
    let domains = [
        vec![b"consul".to_vec()],
        vec![b"alt".to_vec(), b"consul".to_vec()],
    ];
    let all_labels = |s: &str| labels.iter().any(|l| l.eq_ignore_ascii_case(s.as_bytes()));
    match parse(&labels, &domains) {
        Lookup::Service { domain, name, tag, .. } => {
            assert!(domain < domains.len());
            assert!(!name.is_empty());
            assert!(all_labels(name) || all_labels(&format!("_{name}")));
            if let Some(tag) = tag {
                assert!(!tag.is_empty());
            }
        }
        Lookup::Node { name, .. }
        | Lookup::Connect { name, .. }
        | Lookup::Ingress { name, .. }
        | Lookup::Query { name, .. } => {
            assert!(all_labels(name));
        }
        Lookup::Apex { domain } => assert_eq!(labels.len(), domains[domain].len()),
        Lookup::Missing { domain } | Lookup::Nameserver { domain } | Lookup::Addr { domain, .. } => {
            assert!(domain < domains.len());
        }
        Lookup::Reverse(_) | Lookup::Foreign => {}
    }
});
