//! The age limits of ingest (core's [`AgeLimit`]: an event may not be older than its
//! project's raw retention nor fall into its sealed hours) and the project settings ingest
//! applies (sampling, rate limits, session timeout, allowed origins), read from the store
//! per project and cached briefly so that ingest does not ask the store on every request.
//! A change through the admin routes takes effect at once on the replica that made it and
//! within the TTL on the others.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use analytics_core::project::ProjectSettings;

use analytics_core::ports::Store;
use analytics_core::rollup::scheduler::seal_key;
use analytics_core::{AgeLimit, AgeLimits, Error, ProjectId};

use crate::api::EventEntry;

/// How long a project's age limit is trusted without asking the store again (a raised
/// retention takes effect for ingest within this time).
pub const DEFAULT_AGE_LIMIT_TTL: Duration = Duration::from_secs(30);

/// Recently read age limits per project (moka, at most 10,000 projects); no cache with a
/// zero TTL.
#[derive(Clone)]
pub struct AgeLimitCache(Option<moka::future::Cache<ProjectId, ProjectLimits>>);

/// What ingest reads of a project.
#[derive(Debug, Clone)]
pub struct ProjectLimits {
    /// How old its events may be.
    pub age: AgeLimit,
    /// Its settings (the defaults when it has no record).
    pub settings: Arc<ProjectSettings>,
}

impl AgeLimitCache {
    /// Entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self(crate::state::ttl_cache(ttl))
    }

    /// The limits for a request that writes to `default_project` and, unless the project is
    /// fixed (API keys), to the projects its events name.
    pub(crate) async fn for_request(
        &self,
        store: &dyn Store,
        default_project: &ProjectId,
        fixed_project: bool,
        entries: &[EventEntry],
    ) -> Result<AgeLimits, Error> {
        let mut limits = AgeLimits::default();
        let named = entries
            .iter()
            .filter(|_| !fixed_project)
            .filter_map(|e| match e {
                EventEntry::Object(input) => match &input.project {
                    Some(serde_json::Value::String(s)) => ProjectId::parse(s.as_str()).ok(),
                    _ => None,
                },
                EventEntry::NotObject => None,
            });
        for project in std::iter::once(default_project.clone()).chain(named) {
            if let std::collections::hash_map::Entry::Vacant(slot) = limits.projects.entry(project)
            {
                let limit = self.limits(store, slot.key()).await?;
                slot.insert(limit.age);
            }
        }
        Ok(limits)
    }

    /// One project's limits: its settings (the defaults when it has no record yet) and its
    /// seal watermark.
    pub async fn limits(
        &self,
        store: &dyn Store,
        project: &ProjectId,
    ) -> Result<ProjectLimits, Error> {
        if let Some(cache) = &self.0
            && let Some(limit) = cache.get(project).await
        {
            return Ok(limit);
        }
        let settings = match store.get_project(project).await {
            Ok(p) => p.settings,
            Err(Error::NotFound { .. }) => Default::default(),
            Err(e) => return Err(e),
        };
        let limit = ProjectLimits {
            age: AgeLimit::new(&settings, store.watermark(&seal_key(project)).await?),
            settings: Arc::new(settings),
        };
        if let Some(cache) = &self.0 {
            cache.insert(project.clone(), limit.clone()).await;
        }
        Ok(limit)
    }

    /// Forgets a project's cached limits (after its settings changed here).
    pub async fn forget(&self, project: &ProjectId) {
        if let Some(cache) = &self.0 {
            cache.invalidate(project).await;
        }
    }
}

impl fmt::Debug for AgeLimitCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(c) => write!(f, "AgeLimitCache({} projects)", c.entry_count()),
            None => f.write_str("AgeLimitCache(off)"),
        }
    }
}
