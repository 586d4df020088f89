//! Consul's ACL keys from before 1.4, still in many configs: each is
//! read into its `acl { }` place (unless that is set too) with a
//! deprecation note the agent logs at start and `mesh validate` prints.

use crate::raw::{RawAcl, RawAclTokens, RawConfig};

/// Moves the legacy keys of `raw` to their current places; the notes say
/// what to write instead.
pub(crate) fn apply(raw: &mut RawConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let mut acl = raw.acl.take().unwrap_or_default();
    let mut tokens = acl.tokens.take().unwrap_or_default();
    if let Some(dc) = raw.acl_datacenter.take() {
        // Before 1.4, naming the ACL datacenter is what turned ACLs on.
        acl.enabled.get_or_insert(true);
        if raw.primary_datacenter.is_none() {
            raw.primary_datacenter = Some(dc);
            move_origin(raw, "acl_datacenter", "primary_datacenter");
        }
        notes.push(note(
            "acl_datacenter",
            "primary_datacenter (and acl { enabled = true })",
        ));
    }
    let moves = [
        (
            raw.acl_default_policy.take(),
            &mut acl.default_policy,
            "acl_default_policy",
            "acl.default_policy",
        ),
        (
            raw.acl_master_token.take(),
            &mut tokens.initial_management,
            "acl_master_token",
            "acl.tokens.initial_management",
        ),
        (
            raw.acl_token.take(),
            &mut tokens.default,
            "acl_token",
            "acl.tokens.default",
        ),
        (
            raw.acl_agent_token.take(),
            &mut tokens.agent,
            "acl_agent_token",
            "acl.tokens.agent",
        ),
    ];
    for (value, slot, old, new) in moves {
        if let Some(value) = value {
            if slot.is_none() {
                *slot = Some(value);
                move_origin(raw, old, new);
            }
            notes.push(note(old, new));
        }
    }
    // Consul 1.4–1.10 named the management token `master`.
    if let Some(master) = tokens.master.take() {
        if tokens.initial_management.is_none() {
            tokens.initial_management = Some(master);
            move_origin(raw, "acl.tokens.master", "acl.tokens.initial_management");
        }
        notes.push(note("acl.tokens.master", "acl.tokens.initial_management"));
    }
    if tokens != RawAclTokens::default() {
        acl.tokens = Some(tokens);
    }
    if acl != RawAcl::default() {
        raw.acl = Some(acl);
    }
    notes
}

fn note(old: &str, new: &str) -> String {
    format!("config key {old} is deprecated: use {new}")
}

/// Errors about the new key point at the file and line of the old one.
fn move_origin(raw: &mut RawConfig, old: &str, new: &str) {
    if let Some(origin) = raw.origins.get(old).cloned() {
        raw.origins.insert(new.to_string(), origin);
    }
}

/// Consul keys mesh reads but does not act on: one note each, naming the
/// key and what mesh does instead.
pub(crate) fn accepted_only(raw: &RawConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let mut say = |key: &str, why: &str| {
        notes.push(format!(
            "config key {key} is accepted but has no effect: {why}"
        ))
    };
    if let Some(t) = &raw.telemetry {
        let push = "mesh does not push metrics; scrape /v1/agent/metrics?format=prometheus";
        let sinks = [
            ("telemetry.statsd_address", t.statsd_address.is_some()),
            ("telemetry.statsite_address", t.statsite_address.is_some()),
            ("telemetry.dogstatsd_addr", t.dogstatsd_addr.is_some()),
            (
                "telemetry.circonus_api_token",
                t.circonus_api_token.is_some(),
            ),
        ];
        for (key, set) in sinks {
            if set {
                say(key, push);
            }
        }
        if t.prefix_filter.is_some() || t.filter_default.is_some() {
            say("telemetry.prefix_filter", "every metric is served");
        }
    }
    if raw.enable_syslog == Some(true) {
        say("enable_syslog", "mesh logs to stderr and log_file");
    }
    if let Some(ui) = &raw.ui_config {
        if ui.metrics_provider.is_some() || ui.metrics_proxy.is_some() {
            say(
                "ui_config.metrics_provider",
                "the UI reads metrics from the agent itself",
            );
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_keys_move_and_new_keys_win() {
        let token = "b1e7a0c3-2f5d-4c8e-9a61-3d2f1e0b9c77".to_string();
        let mut raw = RawConfig {
            acl_datacenter: Some("dc1".into()),
            acl_default_policy: Some("deny".into()),
            acl_master_token: Some(token.clone()),
            acl_agent_token: Some("c2f8b1d4-3a6e-4d9f-8b72-4e3a2f1c0d88".into()),
            acl: Some(RawAcl {
                tokens: Some(RawAclTokens {
                    agent: Some(token.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let notes = apply(&mut raw);
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(notes[0].contains("acl_datacenter") && notes[0].contains("primary_datacenter"));
        let acl = raw.acl.unwrap();
        assert_eq!(acl.enabled, Some(true));
        assert_eq!(acl.default_policy.as_deref(), Some("deny"));
        let tokens = acl.tokens.unwrap();
        assert_eq!(tokens.initial_management.as_deref(), Some(token.as_str()));
        // acl.tokens.agent was set: it wins over acl_agent_token.
        assert_eq!(tokens.agent.as_deref(), Some(token.as_str()));
        assert_eq!(raw.primary_datacenter.as_deref(), Some("dc1"));
        assert!(raw.acl_datacenter.is_none() && raw.acl_agent_token.is_none());
    }

    #[test]
    fn a_config_without_legacy_keys_is_untouched() {
        let mut raw = RawConfig::default();
        assert!(apply(&mut raw).is_empty());
        assert_eq!(raw, RawConfig::default());
    }
}
