//! Applying intention and CA commands. Intentions are keyed by
//! (destination, source); each records its owner like every other object.

use mesh_types::{Intention, Outcome};

use crate::apply::{rejected, Applied};
use crate::catalog::{conflict, owner_of};
use crate::tables::CaRecord;
use crate::{State, Table};

fn validate(i: &Intention) -> Result<(), String> {
    if i.source.is_empty() || i.destination.is_empty() {
        return Err("intention SourceName and DestinationName are required".into());
    }
    match (i.action.is_some(), i.permissions.is_empty()) {
        (true, false) => Err(format!(
            "intention {} => {}: Action and Permissions are mutually exclusive",
            i.source, i.destination
        )),
        (false, true) => Err(format!(
            "intention {} => {}: Action (allow or deny) is required",
            i.source, i.destination
        )),
        _ => Ok(()),
    }
}

impl State {
    pub(crate) fn intention_set(
        &mut self,
        index: u64,
        mut intention: Intention,
        takeover: bool,
    ) -> Applied {
        if let Err(why) = validate(&intention) {
            return rejected(why);
        }
        intention.owner = owner_of(&intention.owner).to_string();
        let key = (intention.destination.clone(), intention.source.clone());
        if let Some(old) = self.intentions.get(&key) {
            if owner_of(&old.owner) != intention.owner && !takeover {
                return conflict(
                    format!("intention {} => {}", key.1, key.0),
                    owner_of(&old.owner),
                );
            }
            intention.id = old.id.clone();
            intention.create_index = old.create_index;
            intention.modify_index = old.modify_index;
            if *old == intention {
                return (Outcome::Done, Vec::new());
            }
        } else {
            intention.create_index = index;
        }
        intention.modify_index = index;
        self.intentions.insert(key, intention);
        self.indexes.config = index;
        (Outcome::Done, vec![Table::Config])
    }

    pub(crate) fn intention_delete(
        &mut self,
        index: u64,
        source: &str,
        destination: &str,
        owner: &str,
        takeover: bool,
    ) -> Applied {
        let key = (destination.to_string(), source.to_string());
        let Some(old) = self.intentions.get(&key) else {
            return (Outcome::Done, Vec::new());
        };
        if owner_of(&old.owner) != owner_of(owner) && !takeover {
            return conflict(
                format!("intention {source} => {destination}"),
                owner_of(&old.owner),
            );
        }
        self.intentions.remove(&key);
        self.indexes.config = index;
        (Outcome::Done, vec![Table::Config])
    }

    /// All or nothing: a conflict on any source leaves every intention as it was.
    pub(crate) fn intentions_replace(
        &mut self,
        index: u64,
        destination: &str,
        intentions: Vec<Intention>,
        owner: &str,
        takeover: bool,
    ) -> Applied {
        let owner = owner_of(owner);
        for i in &intentions {
            if i.destination != destination {
                return rejected(format!(
                    "intention {} => {} is not for destination {destination}",
                    i.source, i.destination
                ));
            }
            if let Err(why) = validate(i) {
                return rejected(why);
            }
        }
        let existing: Vec<(String, String)> = self
            .intentions
            .range((destination.to_string(), String::new())..)
            .take_while(|((d, _), _)| d == destination)
            .map(|(k, _)| k.clone())
            .collect();
        if !takeover {
            for key in &existing {
                let old = &self.intentions[key];
                if owner_of(&old.owner) != owner {
                    return conflict(
                        format!("intention {} => {}", key.1, key.0),
                        owner_of(&old.owner),
                    );
                }
            }
        }
        let before = self.indexes.config;
        for key in existing {
            if !intentions.iter().any(|i| i.source == key.1) {
                self.intentions.remove(&key);
                self.indexes.config = index;
            }
        }
        for mut i in intentions {
            i.owner = owner.to_string();
            // Ownership was checked above for the whole set.
            self.intention_set(index, i, true);
        }
        if self.indexes.config == before {
            return (Outcome::Done, Vec::new());
        }
        (Outcome::Done, vec![Table::Config])
    }

    pub(crate) fn ca_set(&mut self, index: u64, state_json: String, cas: Option<u64>) -> Applied {
        let current = self.ca.as_ref().map_or(0, |c| c.modify_index);
        if let Some(want) = cas {
            if want != current {
                return (Outcome::Bool(false), Vec::new());
            }
        }
        if self.ca.as_ref().is_some_and(|c| c.state_json == state_json) {
            return (Outcome::Bool(true), Vec::new());
        }
        self.ca = Some(CaRecord {
            state_json,
            modify_index: index,
        });
        self.indexes.ca = index;
        (Outcome::Bool(true), vec![Table::Ca])
    }
}
