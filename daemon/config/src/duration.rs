//! Go-style durations as Consul writes them: `"30s"`, `"1h30m"`, `"500ms"`, `"1.5s"`.

use std::time::Duration;

/// Parses a Go duration string (no sign; units ns, us, µs, ms, s, m, h).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    mesh_types::parse_go_duration(text).map_err(|_| {
        format!("invalid duration {text:?}: write a number and a unit, like \"30s\", \"500ms\" or \"1h30m\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in ["", "30", "s", "-1s", "1d", "1.2.3s", "ms5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }
}
