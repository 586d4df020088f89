//! The agent's `watches`: each entry's type and parameters (checked by
//! `mesh_types::watch`, as `mesh watch` checks its flags) and its handler.

use crate::error::ValidationError;
use crate::validate::Check;

impl Check<'_> {
    /// `watches`: each type with the parameters it takes, and one handler.
    pub(crate) fn watches(&self) -> Result<Vec<crate::runtime::WatchConfig>, ValidationError> {
        use crate::runtime::{WatchConfig, WatchHandler};
        let mut out = Vec::new();
        for (i, w) in self.raw.watches.iter().flatten().enumerate() {
            let key = format!("watches[{i}]");
            let mut params = std::collections::BTreeMap::new();
            let mut put = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    params.insert(k.to_string(), vec![v]);
                }
            };
            put("key", w.key.clone());
            put("prefix", w.prefix.clone());
            put("service", w.service.clone());
            put("passingonly", w.passingonly.map(|b| b.to_string()));
            put("state", w.state.clone());
            put("name", w.name.clone());
            if let Some(tags) = &w.tag {
                params.insert("tag".into(), tags.clone());
            }
            let kind =
                mesh_types::watch::WatchKind::parse(w.kind.as_deref().unwrap_or_default(), &params)
                    .map_err(|e| self.fail(&key, e.0))?;
            match w.handler_type.as_deref() {
                None | Some("script") => {}
                Some(other) => {
                    return Err(self.fail(
                        &format!("{key}.handler_type"),
                        format!("handler_type {other:?} is not supported; mesh runs \"script\" handlers (args or handler)"),
                    ))
                }
            }
            let handler = match (&w.args, &w.handler) {
                (Some(args), None) if !args.is_empty() => WatchHandler::Args(args.clone()),
                (None, Some(line)) if !line.trim().is_empty() => WatchHandler::Shell(line.clone()),
                (Some(_), Some(_)) => {
                    return Err(self.fail(&key, "a watch takes args or handler, not both"))
                }
                _ => {
                    return Err(self.fail(
                        &key,
                        "a watch needs a handler: args = [\"program\", …] or handler = \"command line\"",
                    ))
                }
            };
            out.push(WatchConfig {
                kind,
                handler,
                token: w.token.clone().filter(|t| !t.is_empty()),
            });
        }
        Ok(out)
    }
}
