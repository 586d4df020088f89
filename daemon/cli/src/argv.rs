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

/// Rewrites clap's `--name` as `-name` in help and usage text, so what
/// users read is what Consul's habits make them type. A lone `--` (the
/// end of flags) stays.
pub fn single_dash_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let preceded_by_word = out
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
        let names_a_flag = after[2..].starts_with(|c: char| c.is_ascii_alphabetic());
        if names_a_flag && !preceded_by_word {
            out.push('-');
        } else {
            out.push_str("--");
        }
        rest = &after[2..];
    }
    out.push_str(rest);
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
    fn help_text_shows_single_dash_flags() {
        assert_eq!(
            single_dash_help(
                "Usage: mesh kv get [--recurse] [KEY]\n      --http-addr <ADDR>\n  -h, --help\n"
            ),
            "Usage: mesh kv get [-recurse] [KEY]\n      -http-addr <ADDR>\n  -h, -help\n"
        );
        // The end-of-flags marker, dashes inside words and "---" stay.
        assert_eq!(
            single_dash_help("mesh connect envoy -- <ARGS>... a--b ---x 'try --help'"),
            "mesh connect envoy -- <ARGS>... a--b ---x 'try -help'"
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
