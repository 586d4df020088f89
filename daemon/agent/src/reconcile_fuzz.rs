//! Mutation fuzzing of the mesh.d path without extra tooling: the example
//! files, corrupted thousands of ways (bytes flipped, cut, duplicated,
//! spliced), go through the parser and the declaration checks. A bad input
//! must be an error with a position, never a panic.

use std::path::Path;

use mesh_config::{parse_resources, Format};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "=",
    "\"",
    "\n",
    "#",
    "intention",
    "service",
    "config_entry",
    "ca",
    "\"*\"",
    "action = \"deny\"",
    "permissions = [{}]",
    "${x}",
    "0x",
    "-1",
    "1e999",
    "null",
    "kind = \"service-intentions\"",
    "sources = [{ name = \"a\" }]",
    "\u{0}",
    "é",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(at),
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
            3 if at < bytes.len() => {
                let end = (at + rng.below(64)).min(bytes.len());
                let piece: Vec<u8> = bytes[at..end].to_vec();
                let to = rng.below(bytes.len() + 1);
                bytes.splice(to..to, piece);
            }
            _ if at < bytes.len() => {
                let end = (at + rng.below(32)).min(bytes.len());
                bytes.drain(at..end);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn corrupted_mesh_d_files_are_errors_not_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh.d");
    let mut seeds: Vec<(String, Format)> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if let Some(format) = Format::from_path(&path) {
            seeds.push((std::fs::read_to_string(&path).unwrap(), format));
        }
    }
    assert!(!seeds.is_empty());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut refused) = (0, 0);
    for round in 0..3000 {
        let (seed, format) = &seeds[round % seeds.len()];
        let text = mutate(&mut rng, seed);
        match parse_resources(&text, *format, Path::new("/etc/mesh.d/fuzz.hcl")) {
            Ok(decls) => {
                ok += 1;
                // Every error from the checks names the file.
                if let Err(errors) = crate::reconcile::check_declarations(&decls) {
                    for e in errors {
                        assert!(e.contains("/etc/mesh.d/fuzz.hcl:"), "{e}");
                    }
                }
            }
            Err(e) => {
                refused += 1;
                assert!(e.line >= 1 && e.col >= 1, "{e}");
            }
        }
    }
    // The mutations must exercise both paths to mean anything.
    assert!(ok > 100 && refused > 100, "ok {ok}, refused {refused}");
}
