//! Consul-style single-dash long flags (`-dev`, `-http-addr=x`) turned into clap's `--` form.

use std::ffi::OsString;

/// Rewrites `-name` and `-name=value` (name of two or more letters) as `--name...`.
///
/// Single letters (`-h`), negative numbers (`-1`), a lone `-` (stdin) and
/// everything after `--` are left alone.
pub fn normalise(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut verbatim = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || verbatim {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            verbatim = true;
            out.push(arg);
            continue;
        }
        match arg.to_str() {
            Some(text) if is_single_dash_long(text) => out.push(format!("-{text}").into()),
            _ => out.push(arg),
        }
    }
    out
}

fn is_single_dash_long(arg: &str) -> bool {
    let Some(rest) = arg.strip_prefix('-') else {
        return false;
    };
    let name = rest.split_once('=').map_or(rest, |(name, _)| name);
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalise(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_get_two_dashes() {
        assert_eq!(
            norm(&[
                "mesh",
                "agent",
                "-dev",
                "-bootstrap-expect=3",
                "-http-addr",
                "x:1"
            ]),
            [
                "mesh",
                "agent",
                "--dev",
                "--bootstrap-expect=3",
                "--http-addr",
                "x:1"
            ]
        );
    }

    #[test]
    fn leaves_other_arguments_alone() {
        assert_eq!(
            norm(&[
                "mesh",
                "kv",
                "put",
                "--flags=2",
                "-h",
                "k",
                "-",
                "-1",
                "-v e",
                "--",
                "-dev"
            ]),
            [
                "mesh",
                "kv",
                "put",
                "--flags=2",
                "-h",
                "k",
                "-",
                "-1",
                "-v e",
                "--",
                "-dev"
            ]
        );
    }

    #[test]
    fn the_program_name_is_untouched() {
        assert_eq!(
            norm(&["-weird-name", "-ui=false"]),
            ["-weird-name", "--ui=false"]
        );
    }
}
