//! Importing alert configurations: what a set of submitted configurations does to the stored
//! ones (pure; the store applies the plan in one transaction with `import_configs`).
//!
//! Matching: an item with an `id` of a stored configuration is that configuration; otherwise
//! the stored configuration of the same project and name is. A matched item whose spec equals
//! the stored one is `Unchanged` (so exporting and importing again writes nothing); one that
//! differs is a conflict, settled by the [`ConflictPolicy`]. Everything else is created, with
//! the item's `id` when it has one.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::{AlertConfig, AlertConfigSpec};
use crate::ids::ProjectId;

/// What to do with an item that matches a stored configuration but differs from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// Refuse the whole import (nothing is written).
    #[default]
    Fail,
    /// Keep the stored configuration.
    Skip,
    /// Replace the stored configuration (its version + 1).
    Replace,
}

/// One submitted configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportItem {
    /// The id it should have (an exported configuration's), if any.
    pub id: Option<Uuid>,
    /// The configuration.
    pub spec: AlertConfigSpec,
}

/// What happens to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportAction {
    /// A new configuration with this id.
    Create {
        /// Its id.
        id: Uuid,
    },
    /// The stored configuration `id` at `version` is replaced.
    Replace {
        /// Its id.
        id: Uuid,
        /// The version replaced (the write fails if it moved meanwhile).
        version: u64,
    },
    /// The stored configuration already says exactly this.
    Unchanged {
        /// Its id.
        id: Uuid,
    },
    /// It differs from the stored configuration, which is kept (`ConflictPolicy::Skip`).
    Skip {
        /// Its id.
        id: Uuid,
    },
    /// It differs from the stored configuration (`ConflictPolicy::Fail`: nothing is written).
    Conflict {
        /// Its id.
        id: Uuid,
    },
}

impl ImportAction {
    /// The configuration's id.
    pub fn id(self) -> Uuid {
        match self {
            Self::Create { id }
            | Self::Replace { id, .. }
            | Self::Unchanged { id }
            | Self::Skip { id }
            | Self::Conflict { id } => id,
        }
    }

    /// The wire name (`created`, `replaced`, `unchanged`, `skipped`, `conflict`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create { .. } => "created",
            Self::Replace { .. } => "replaced",
            Self::Unchanged { .. } => "unchanged",
            Self::Skip { .. } => "skipped",
            Self::Conflict { .. } => "conflict",
        }
    }
}

/// Why items cannot be imported together; `index` is the item's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    /// Two items have the same id.
    DuplicateId {
        /// The later item.
        index: usize,
    },
    /// Two items have the same project and name.
    DuplicateName {
        /// The later item.
        index: usize,
    },
    /// The item matches one stored configuration by id, but its name belongs to another.
    NameTaken {
        /// The item.
        index: usize,
    },
}

/// One write of an applied import plan.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigImport {
    /// The configuration's id.
    pub id: Uuid,
    /// What it becomes.
    pub spec: AlertConfigSpec,
    /// `None`: create it; `Some(v)`: replace it, expected at version `v`.
    pub replaces: Option<u64>,
}

/// Decides each item's action against the stored configurations. `new_id` supplies ids for
/// items without one.
pub fn plan(
    stored: &[AlertConfig],
    items: &[ImportItem],
    policy: ConflictPolicy,
    mut new_id: impl FnMut() -> Uuid,
) -> Result<Vec<ImportAction>, ImportError> {
    let by_id: HashMap<Uuid, &AlertConfig> = stored.iter().map(|c| (c.id, c)).collect();
    let by_name: HashMap<(&ProjectId, &str), &AlertConfig> = stored
        .iter()
        .map(|c| ((&c.spec.project, c.spec.name.as_str()), c))
        .collect();
    let mut ids = HashSet::new();
    let mut names = HashSet::new();
    let mut actions = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        if !names.insert((&item.spec.project, item.spec.name.as_str())) {
            return Err(ImportError::DuplicateName { index });
        }
        if let Some(id) = item.id
            && !ids.insert(id)
        {
            return Err(ImportError::DuplicateId { index });
        }
        let named = by_name
            .get(&(&item.spec.project, item.spec.name.as_str()))
            .copied();
        let matched = match item.id.and_then(|id| by_id.get(&id).copied()) {
            Some(c) => {
                if named.is_some_and(|n| n.id != c.id) {
                    return Err(ImportError::NameTaken { index });
                }
                Some(c)
            }
            None => named,
        };
        let action = match matched {
            Some(c) if c.spec == item.spec => ImportAction::Unchanged { id: c.id },
            Some(c) => match policy {
                ConflictPolicy::Fail => ImportAction::Conflict { id: c.id },
                ConflictPolicy::Skip => ImportAction::Skip { id: c.id },
                ConflictPolicy::Replace => ImportAction::Replace {
                    id: c.id,
                    version: c.version,
                },
            },
            None => {
                // An id taken by a stored configuration was matched above; an unused one is
                // kept so that an export restores with its ids.
                let id = item.id.unwrap_or_else(&mut new_id);
                ids.insert(id);
                ImportAction::Create { id }
            }
        };
        actions.push(action);
    }
    Ok(actions)
}

/// The writes a plan makes (nothing when any item is a conflict).
pub fn writes(items: &[ImportItem], actions: &[ImportAction]) -> Vec<ConfigImport> {
    if actions
        .iter()
        .any(|a| matches!(a, ImportAction::Conflict { .. }))
    {
        return Vec::new();
    }
    items
        .iter()
        .zip(actions)
        .filter_map(|(item, action)| match *action {
            ImportAction::Create { id } => Some(ConfigImport {
                id,
                spec: item.spec.clone(),
                replaces: None,
            }),
            ImportAction::Replace { id, version } => Some(ConfigImport {
                id,
                spec: item.spec.clone(),
                replaces: Some(version),
            }),
            ImportAction::Unchanged { .. }
            | ImportAction::Skip { .. }
            | ImportAction::Conflict { .. } => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::alert::{Condition, NoDataPolicy, Severity, Stat};
    use crate::ids::{MetricName, Threshold};
    use crate::rollup::Dimensions;

    fn spec(name: &str) -> AlertConfigSpec {
        AlertConfigSpec {
            project: ProjectId::default_project(),
            name: name.to_owned(),
            metric: MetricName::parse("api.latency_ms").unwrap(),
            stat: Stat::P95,
            dimensions: Dimensions::default(),
            condition: Condition::ThresholdAbove,
            threshold: Threshold::new(500.0).unwrap(),
            window_secs: 300,
            severity: Severity::Warning,
            cooldown_secs: 600,
            channels: vec![],
            recipients: vec![],
            enabled: true,
            for_secs: 0,
            recovery_threshold: None,
            auto_resolve: true,
            no_data: NoDataPolicy::Keep,
        }
    }

    fn stored(name: &str) -> AlertConfig {
        AlertConfig::created(
            Uuid::new_v4(),
            &spec(name),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        )
    }

    fn item(id: Option<Uuid>, spec: AlertConfigSpec) -> ImportItem {
        ImportItem { id, spec }
    }

    #[test]
    fn items_match_by_id_then_by_project_and_name() {
        let a = stored("a");
        let b = stored("b");
        let mut changed = spec("b");
        changed.severity = Severity::Critical;
        let fresh = Uuid::new_v4();
        let items = [
            item(Some(a.id), spec("a")),
            item(None, changed.clone()),
            item(Some(fresh), spec("c")),
            item(None, spec("d")),
        ];
        let minted = Uuid::new_v4();
        let actions = plan(
            &[a.clone(), b.clone()],
            &items,
            ConflictPolicy::Replace,
            || minted,
        )
        .unwrap();
        assert_eq!(
            actions,
            [
                ImportAction::Unchanged { id: a.id },
                ImportAction::Replace {
                    id: b.id,
                    version: 1
                },
                ImportAction::Create { id: fresh },
                ImportAction::Create { id: minted },
            ]
        );
        let w = writes(&items, &actions);
        assert_eq!(
            w.iter().map(|w| (w.id, w.replaces)).collect::<Vec<_>>(),
            [(b.id, Some(1)), (fresh, None), (minted, None)]
        );
        assert_eq!(w[0].spec, changed);
    }

    #[test]
    fn conflicts_follow_the_policy() {
        let b = stored("b");
        let mut changed = spec("b");
        changed.enabled = !changed.enabled;
        let items = [item(None, changed)];
        let run = |p| plan(std::slice::from_ref(&b), &items, p, Uuid::new_v4).unwrap();
        assert_eq!(
            run(ConflictPolicy::Fail),
            [ImportAction::Conflict { id: b.id }]
        );
        assert!(writes(&items, &run(ConflictPolicy::Fail)).is_empty());
        assert_eq!(run(ConflictPolicy::Skip), [ImportAction::Skip { id: b.id }]);
        assert!(writes(&items, &run(ConflictPolicy::Skip)).is_empty());
    }

    #[test]
    fn duplicates_and_stolen_names_are_refused() {
        let a = stored("a");
        let b = stored("b");
        let dup_name = [item(None, spec("x")), item(None, spec("x"))];
        assert_eq!(
            plan(&[], &dup_name, ConflictPolicy::Fail, Uuid::new_v4),
            Err(ImportError::DuplicateName { index: 1 })
        );
        let id = Uuid::new_v4();
        let dup_id = [item(Some(id), spec("x")), item(Some(id), spec("y"))];
        assert_eq!(
            plan(&[], &dup_id, ConflictPolicy::Fail, Uuid::new_v4),
            Err(ImportError::DuplicateId { index: 1 })
        );
        // `a`'s id with `b`'s name: renaming onto another configuration.
        let stolen = [item(Some(a.id), spec("b"))];
        assert_eq!(
            plan(&[a, b], &stolen, ConflictPolicy::Replace, Uuid::new_v4),
            Err(ImportError::NameTaken { index: 0 })
        );
    }
}
