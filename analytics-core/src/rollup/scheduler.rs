//! The rollup scheduler as a step function: each [`RollupScheduler::tick`] rolls up every
//! complete hour whose raw events changed (catching up after downtime and re-rolling late
//! data), cascades the change to its day and week, advances the hour/day/week watermarks,
//! and applies raw-event retention behind them. The background loop that calls `tick` every
//! minute lives with the wiring (the server), so tests drive it with a fake clock.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::ids::ProjectId;
use crate::page::PageRequest;
use crate::ports::{DirtyHour, EventFilter, Store};
use crate::project::{Project, ProjectSettings};
use crate::rollup::aggregate::{Aggregator, merge_rows};
use crate::rollup::spec::RollupSpecs;
use crate::rollup::{Dimensions, RollupQuery};
use crate::time::{Granularity, TimeRange};

/// Watermark: every hour before it is rolled up.
pub const HOUR_WATERMARK: &str = "rollup.hour";
/// Watermark: every day before it is complete (its hours rolled up and merged).
pub const DAY_WATERMARK: &str = "rollup.day";
/// Watermark: every week before it is complete.
pub const WEEK_WATERMARK: &str = "rollup.week";
/// Per-project watermark prefix: raw events before it may be deleted, so hours before it
/// are sealed and never recomputed.
pub const SEAL_WATERMARK_PREFIX: &str = "rollup.sealed.";
/// Watermark: the raw events of every project before it are deleted (the cutoff of the
/// last all-projects retention call, which lets a store drop whole days).
pub const RETENTION_WATERMARK: &str = "rollup.retention";
/// The singleton-lock name the scheduler's loop should hold while ticking.
pub const LOCK_NAME: &str = "rollup-scheduler";

/// Scheduler settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerOptions {
    /// Raw-event retention for projects that have no record yet (they are registered with
    /// it on first sight); registered projects use their own setting.
    pub default_retention_days: u32,
    /// How long after an hour ends before it is rolled up, for events still in flight.
    pub grace: Duration,
    /// Most dirty hours rolled in one tick (the rest wait for the next tick).
    pub max_hours_per_tick: usize,
    /// Page size when reading an hour's raw events.
    pub page_size: u32,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            default_retention_days: 7,
            grace: Duration::seconds(30),
            max_hours_per_tick: 2000,
            page_size: 1000,
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// Hours rolled up from raw events.
    pub hours_rolled: usize,
    /// Day rows re-merged (per project and day).
    pub days_merged: usize,
    /// Week rows re-merged (per project and week).
    pub weeks_merged: usize,
    /// Rollup rows written.
    pub rows_written: u64,
    /// Dirty hours dropped because they were sealed (late events past retention).
    pub sealed_skipped: usize,
    /// Raw events deleted by retention.
    pub events_deleted: u64,
    /// Whether dirty hours were left for the next tick (the per-tick limit was hit).
    pub backlog: bool,
    /// The hour watermark after the tick.
    pub hour_watermark: Option<DateTime<Utc>>,
}

/// Rolls up raw events on the PRD's schedule; see the module documentation.
#[derive(Debug, Clone)]
pub struct RollupScheduler {
    specs: RollupSpecs,
    options: SchedulerOptions,
}

impl RollupScheduler {
    /// A scheduler computing `specs`.
    pub fn new(specs: RollupSpecs, options: SchedulerOptions) -> Self {
        Self { specs, options }
    }

    /// The specs it computes.
    pub fn specs(&self) -> &RollupSpecs {
        &self.specs
    }

    /// One step at time `now`: idempotent, so a crashed or repeated tick is harmless.
    pub async fn tick(&self, store: &dyn Store, now: DateTime<Utc>) -> Result<TickReport> {
        let mut report = TickReport::default();
        // Hours starting before `closed` are complete.
        let closed = Granularity::Hour.bucket_start(now - self.options.grace);
        let mut projects: BTreeMap<ProjectId, (Project, Option<DateTime<Utc>>)> = BTreeMap::new();

        let mut drained = false;
        while report.hours_rolled + report.sealed_skipped < self.options.max_hours_per_tick {
            let room =
                self.options.max_hours_per_tick - report.hours_rolled - report.sealed_skipped;
            let dirty = store.dirty_hours(room.min(500)).await?;
            let eligible: Vec<DirtyHour> =
                dirty.iter().filter(|d| d.hour < closed).cloned().collect();
            if eligible.is_empty() {
                drained = true;
                break;
            }
            self.roll_batch(store, now, &eligible, &mut projects, &mut report)
                .await?;
            if eligible.len() < dirty.len() || dirty.len() < room.min(500) {
                drained = true;
                break;
            }
        }
        report.backlog = !drained;

        if drained {
            advance(store, HOUR_WATERMARK, closed).await?;
            advance(store, DAY_WATERMARK, Granularity::Day.bucket_start(closed)).await?;
            advance(
                store,
                WEEK_WATERMARK,
                Granularity::Week.bucket_start(closed),
            )
            .await?;
            report.events_deleted = self.apply_retention(store, now, closed).await?;
        }
        report.hour_watermark = store.watermark(HOUR_WATERMARK).await?;
        Ok(report)
    }

    async fn roll_batch(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
        hours: &[DirtyHour],
        projects: &mut BTreeMap<ProjectId, (Project, Option<DateTime<Utc>>)>,
        report: &mut TickReport,
    ) -> Result<()> {
        let mut days = BTreeSet::new();
        for d in hours {
            if !projects.contains_key(&d.project) {
                let project = self.ensure_project(store, &d.project, now).await?;
                let seal = store.watermark(&seal_key(&d.project)).await?;
                projects.insert(d.project.clone(), (project, seal));
            }
            let seal = projects.get(&d.project).and_then(|(_, s)| *s);
            if seal.is_some_and(|s| d.hour < s) {
                report.sealed_skipped += 1;
                continue;
            }
            let mut agg = Aggregator::new(&self.specs);
            scan_hour(store, &d.project, d.hour, self.options.page_size, |e| {
                agg.add(e);
            })
            .await?;
            let rows = agg.finish(&d.project, Granularity::Hour, d.hour, now);
            report.rows_written += store.upsert_rollups(&rows).await?;
            report.hours_rolled += 1;
            days.insert((d.project.clone(), Granularity::Day.bucket_start(d.hour)));
        }
        let mut weeks = BTreeSet::new();
        for (project, day) in days {
            report.rows_written += remerge(store, &project, Granularity::Day, day, now).await?;
            report.days_merged += 1;
            weeks.insert((project, Granularity::Week.bucket_start(day)));
        }
        for (project, week) in weeks {
            report.rows_written += remerge(store, &project, Granularity::Week, week, now).await?;
            report.weeks_merged += 1;
        }
        // Markers go last: a crash before this line redoes the (idempotent) work.
        store.clear_dirty_hours(hours).await?;
        Ok(())
    }

    async fn ensure_project(
        &self,
        store: &dyn Store,
        id: &ProjectId,
        now: DateTime<Utc>,
    ) -> Result<Project> {
        match store.get_project(id).await {
            Ok(p) => Ok(p),
            Err(Error::NotFound { .. }) => {
                let project = Project {
                    id: id.clone(),
                    name: id.to_string(),
                    settings: ProjectSettings {
                        retention_days: self.options.default_retention_days,
                        ..ProjectSettings::default()
                    },
                    created_at: now,
                };
                match store.create_project(&project).await {
                    Ok(()) => Ok(project),
                    // Registered concurrently: read the winner.
                    Err(Error::Conflict(_)) => store.get_project(id).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes raw events past each project's retention, never past the hour watermark, and
    /// seals the hours before the new cutoff first.
    ///
    /// The events of every project before the earliest cutoff (of all registered projects
    /// and of the default retention, which unregistered projects get) go in one
    /// all-projects call, where a store can drop whole days (PostgreSQL drops day
    /// partitions; per-project calls can only delete rows). Only projects with a later
    /// cutoff then need their own, row-wise, call.
    async fn apply_retention(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
        rolled_until: DateTime<Utc>,
    ) -> Result<u64> {
        let cutoff_for = |retention: Duration| {
            Granularity::Hour
                .bucket_start(now - retention)
                .min(rolled_until)
        };
        let default_retention = ProjectSettings {
            retention_days: self.options.default_retention_days,
            ..ProjectSettings::default()
        }
        .retention();
        let mut everyone = cutoff_for(default_retention);
        let mut due = Vec::new();
        for project in store.list_projects().await? {
            let cutoff = cutoff_for(project.settings.retention());
            everyone = everyone.min(cutoff);
            let key = seal_key(&project.id);
            let seal = store.watermark(&key).await?;
            if seal.is_none_or(|s| cutoff > s) {
                // Seal first: if the delete is interrupted, nothing recomputes a half-deleted
                // hour; the leftovers go with the next cutoff.
                store.set_watermark(&key, cutoff).await?;
                due.push((project.id, cutoff));
            }
        }
        let mut deleted = 0;
        // Every registered project is sealed at or after `everyone` by now.
        if store
            .watermark(RETENTION_WATERMARK)
            .await?
            .is_none_or(|w| everyone > w)
        {
            deleted += store.delete_events_before(None, everyone).await?;
            store.set_watermark(RETENTION_WATERMARK, everyone).await?;
        }
        for (project, cutoff) in due {
            if cutoff > everyone {
                deleted += store.delete_events_before(Some(&project), cutoff).await?;
            }
        }
        Ok(deleted)
    }
}

/// The job name of a project's seal watermark: hours before it are never recomputed.
pub fn seal_key(project: &ProjectId) -> String {
    format!("{SEAL_WATERMARK_PREFIX}{project}")
}

/// Moves a watermark forward (never back).
async fn advance(store: &dyn Store, job: &str, to: DateTime<Utc>) -> Result<()> {
    if store.watermark(job).await?.is_none_or(|w| w < to) {
        store.set_watermark(job, to).await?;
    }
    Ok(())
}

/// Feeds every raw event of `project` in the hour starting at `hour` to `f`, one page at a
/// time; returns how many there were.
pub async fn scan_hour(
    store: &dyn Store,
    project: &ProjectId,
    hour: DateTime<Utc>,
    page_size: u32,
    f: impl FnMut(&Event),
) -> Result<u64> {
    scan_range(
        store,
        project,
        Granularity::Hour.bucket(hour),
        Vec::new(),
        page_size,
        f,
    )
    .await
}

/// Feeds every raw event of `project` in `range` (of the given kinds; empty = all) to `f`,
/// one page at a time, so memory holds one page however many events the range has;
/// returns how many there were.
pub async fn scan_range(
    store: &dyn Store,
    project: &ProjectId,
    range: TimeRange,
    kinds: Vec<crate::event::EventKind>,
    page_size: u32,
    mut f: impl FnMut(&Event),
) -> Result<u64> {
    scan_pages(store, project, range, kinds, page_size, |page| {
        page.iter().for_each(&mut f)
    })
    .await
}

/// [`scan_range`] handing over each page's events (newest first within a page), for a
/// caller that keeps them.
pub async fn scan_pages(
    store: &dyn Store,
    project: &ProjectId,
    range: TimeRange,
    kinds: Vec<crate::event::EventKind>,
    page_size: u32,
    mut f: impl FnMut(Vec<Event>),
) -> Result<u64> {
    let filter = EventFilter {
        project: Some(project.clone()),
        kinds,
        range: Some(range),
        ..Default::default()
    };
    let mut seen = 0u64;
    let mut cursor = None;
    loop {
        let page = store
            .query_events(&filter, &PageRequest::new(page_size, cursor)?)
            .await?;
        seen += page.items.len() as u64;
        f(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(seen),
        }
    }
}

/// Rebuilds the `granularity` rows of one bucket from its children and upserts them.
async fn remerge(
    store: &dyn Store,
    project: &ProjectId,
    granularity: Granularity,
    bucket_start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<u64> {
    let Some(child) = granularity.child() else {
        return Ok(0);
    };
    let children = store
        .query_rollups(&RollupQuery {
            project: project.clone(),
            granularity: child,
            range: granularity.bucket(bucket_start),
            metrics: Vec::new(),
            dimensions: Dimensions::none(),
            dimension_names: None,
        })
        .await?;
    let rows = merge_rows(&children, project, granularity, bucket_start, now);
    store.upsert_rollups(&rows).await
}
