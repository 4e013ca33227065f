//! Reading rollups: any range and dimension filter is answered by merging digests of the
//! coarsest complete buckets that tile it (weeks, days, hours), plus raw events for what no
//! rollup covers yet (the open hour, unaligned edges). Never by averaging percentiles.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::alert::Stat;
use crate::error::{Error, Result};
use crate::event::{Event, EventKind};
use crate::ids::{MetricName, ProjectId};
use crate::ports::{MetricQuery, MetricsSource, Store};
use crate::rollup::aggregate::{Aggregator, merge_stats};
use crate::rollup::raw_hours::{HourKey, RawHours, between};
use crate::rollup::scheduler::{HOUR_WATERMARK, SEAL_WATERMARK_PREFIX, scan_pages, scan_range};
use crate::rollup::spec::{RollupSpecs, stored_dimension_name};
use crate::rollup::{Dimensions, Rollup, RollupQuery, RollupStats};
use crate::time::{Granularity, TimeRange};

/// One part of a range and where it is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Piece {
    /// Rollup rows of this granularity whose buckets tile the range.
    Rollups(Granularity, TimeRange),
    /// Raw events.
    Raw(TimeRange),
}

/// How many dirty-hour markers a read looks at to find late changes behind the watermark.
pub const DIRTY_SCAN_LIMIT: usize = 1000;

/// Raw reads spanning more hours than this read the store directly instead of whole hours
/// through the reader's [`RawHours`] (a long raw stretch would only push out the hours that
/// are read again and again: the edges and the open hour).
pub const MAX_CACHED_RAW_HOURS: usize = 4;

/// Tiles `range` with the coarsest complete buckets (complete = ending at or before
/// `rolled_until`, the hour watermark) and raw pieces for the rest. Adjacent pieces of the
/// same source are joined.
///
/// Raw events before `sealed_until` may have been deleted by retention, so an unaligned
/// start before it reads its whole first hour from the hourly rollup instead (the range
/// grows by less than an hour rather than losing that part).
pub fn plan(
    range: TimeRange,
    rolled_until: Option<DateTime<Utc>>,
    sealed_until: Option<DateTime<Utc>>,
) -> Vec<Piece> {
    plan_around(range, rolled_until, sealed_until, &[])
}

/// [`plan`], reading the hours in `dirty` from raw events even behind the watermark: they
/// received events after they were rolled up (late events), and their rollup rows are stale
/// until the next tick.
pub fn plan_around(
    range: TimeRange,
    rolled_until: Option<DateTime<Utc>>,
    sealed_until: Option<DateTime<Utc>>,
    dirty: &[DateTime<Utc>],
) -> Vec<Piece> {
    let clean =
        |from: DateTime<Utc>, to: DateTime<Utc>| !dirty.iter().any(|h| from <= *h && *h < to);
    let wm = rolled_until.unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut pieces: Vec<Piece> = Vec::new();
    let mut cursor = range.start();
    let end = range.end();
    let head = Granularity::Hour.bucket_start(cursor);
    let head_end = Granularity::Hour.bucket_end(head);
    if head < cursor
        && sealed_until.is_some_and(|s| cursor < s)
        && head_end <= wm
        && let Ok(r) = TimeRange::new(head, head_end)
    {
        pieces.push(Piece::Rollups(Granularity::Hour, r));
        cursor = head_end;
    }
    while cursor < end {
        let limit = end.min(wm);
        let bucket = [Granularity::Week, Granularity::Day, Granularity::Hour]
            .into_iter()
            .find(|g| {
                g.is_aligned(cursor)
                    && g.bucket_end(cursor) <= limit
                    && clean(cursor, g.bucket_end(cursor))
            });
        let piece_end = match bucket {
            Some(g) => g.bucket_end(cursor),
            None if cursor >= wm => end,
            None => end.min(Granularity::Hour.bucket_end(Granularity::Hour.bucket_start(cursor))),
        };
        let Ok(r) = TimeRange::new(cursor, piece_end) else {
            break;
        };
        let piece = match bucket {
            Some(g) => Piece::Rollups(g, r),
            None => Piece::Raw(r),
        };
        match (pieces.last_mut(), piece) {
            (Some(Piece::Rollups(g0, r0)), Piece::Rollups(g1, r1)) if *g0 == g1 => {
                *r0 = TimeRange::new(r0.start(), r1.end()).unwrap_or(*r0);
            }
            (Some(Piece::Raw(r0)), Piece::Raw(r1)) => {
                *r0 = TimeRange::new(r0.start(), r1.end()).unwrap_or(*r0);
            }
            _ => pieces.push(piece),
        }
        cursor = piece_end;
    }
    pieces
}

/// One series: a metric of a project grouped by exactly the dimension names of `dimensions`
/// with those values (empty = the overall series).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    /// The project.
    pub project: ProjectId,
    /// The metric.
    pub metric: MetricName,
    /// The series' dimension values.
    pub dimensions: Dimensions,
}

/// Reads rollup statistics for any range.
///
/// Raw pieces are read a whole hour at a time through a [`RawHours`] cache shared by the
/// reader's clones, checked against the store's hour versions on every read, so answers
/// stay exact while repeated reads of the same edges and open hour skip the store.
#[derive(Debug, Clone)]
pub struct RollupReader {
    store: Arc<dyn Store>,
    specs: Arc<RollupSpecs>,
    page_size: u32,
    raw: Arc<RawHours>,
    // Set by `snapshot`.
    snap: Option<Arc<Snapshot>>,
}

/// What a snapshot reader reads once: per project the plan inputs, and per piece the rows
/// of one grouping of a metric (every value; reads select theirs in memory).
#[derive(Debug, Default)]
struct Snapshot {
    plans: Mutex<HashMap<ProjectId, PlanInputs>>,
    rows: Mutex<HashMap<RowsKey, Arc<Vec<Rollup>>>>,
}

/// One grouping (sorted dimension names) of a metric over one piece.
type RowsKey = (ProjectId, MetricName, Vec<String>, Piece);

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a range of a project is planned from (see [`plan_around`]).
#[derive(Debug, Clone)]
struct PlanInputs {
    rolled_until: Option<DateTime<Utc>>,
    sealed_until: Option<DateTime<Utc>>,
    dirty: Vec<DateTime<Utc>>,
}

impl PlanInputs {
    fn plan(&self, range: TimeRange) -> Vec<Piece> {
        plan_around(range, self.rolled_until, self.sealed_until, &self.dirty)
    }
}

impl RollupReader {
    /// A reader over `store` for metrics defined by `specs`.
    pub fn new(store: Arc<dyn Store>, specs: Arc<RollupSpecs>) -> Self {
        Self::with_raw_hours(store, specs, Arc::new(RawHours::default()))
    }

    /// [`RollupReader::new`] with the given raw-hour cache (capacity 0: none).
    pub fn with_raw_hours(
        store: Arc<dyn Store>,
        specs: Arc<RollupSpecs>,
        raw: Arc<RawHours>,
    ) -> Self {
        Self {
            store,
            specs,
            page_size: 1000,
            raw,
            snap: None,
        }
    }

    /// A reader for one answer made of many reads (a request): it reads the watermarks and
    /// late hours of a project once, on its first read, and plans every later read from
    /// them, so the reads agree on what is rolled up; and it reads the rows of a metric's
    /// grouping over a piece once (all values), answering every later read of that grouping
    /// over that piece (another value, another statistic) from memory. Not for long-lived
    /// readers (they would never see the rollup move on).
    pub fn snapshot(&self) -> Self {
        Self {
            snap: Some(Arc::default()),
            ..self.clone()
        }
    }

    async fn plan_inputs(&self, project: &ProjectId) -> Result<PlanInputs> {
        if let Some(p) = self
            .snap
            .as_ref()
            .and_then(|s| locked(&s.plans).get(project).cloned())
        {
            return Ok(p);
        }
        let rolled_until = self.store.watermark(HOUR_WATERMARK).await?;
        let sealed_until = self
            .store
            .watermark(&format!("{SEAL_WATERMARK_PREFIX}{project}"))
            .await?;
        let dirty = self.late_hours(project, rolled_until, sealed_until).await?;
        let inputs = PlanInputs {
            rolled_until,
            sealed_until,
            dirty,
        };
        if let Some(snap) = &self.snap {
            locked(&snap.plans).insert(project.clone(), inputs.clone());
        }
        Ok(inputs)
    }

    /// The raw-hour cache of this reader and its clones.
    pub fn raw_hours(&self) -> &Arc<RawHours> {
        &self.raw
    }

    /// Calls `f` on every event of `kinds` in `range` of `project` (in no particular
    /// order). Each hour the store knows a version of is read whole, once per version,
    /// through the raw-hour cache; the version is read before the events, so an insert
    /// racing with the read can only make the kept hour newer than its version says, and
    /// the next read (seeing the new version) reads it again.
    async fn scan_raw(
        &self,
        project: &ProjectId,
        range: TimeRange,
        kinds: Vec<EventKind>,
        mut f: impl FnMut(&Event),
    ) -> Result<()> {
        let hours: Vec<DateTime<Utc>> = range.buckets(Granularity::Hour).collect();
        if hours.len() > MAX_CACHED_RAW_HOURS {
            scan_range(
                self.store.as_ref(),
                project,
                range,
                kinds,
                self.page_size,
                f,
            )
            .await?;
            return Ok(());
        }
        let versions: BTreeMap<DateTime<Utc>, u64> = self
            .store
            .hour_versions(project, &hours)
            .await?
            .into_iter()
            .collect();
        let mut kinds = kinds;
        kinds.sort();
        kinds.dedup();
        for hour in hours {
            let hour_end = Granularity::Hour.bucket_end(hour);
            let part = TimeRange::new(hour.max(range.start()), hour_end.min(range.end()))?;
            let Some(&version) = versions.get(&hour) else {
                scan_range(
                    self.store.as_ref(),
                    project,
                    part,
                    kinds.clone(),
                    self.page_size,
                    &mut f,
                )
                .await?;
                continue;
            };
            let key = HourKey {
                project: project.clone(),
                hour,
                kinds: kinds.clone(),
            };
            let events = match self.raw.get(&key, version) {
                Some(events) => events,
                None => {
                    let whole = TimeRange::new(hour, hour_end)?;
                    let events = Arc::new(self.read_hour(project, whole, &kinds).await?);
                    self.raw.put(key, version, events.clone());
                    events
                }
            };
            between(&events, part.start(), part.end())
                .iter()
                .for_each(&mut f);
        }
        Ok(())
    }

    /// Every event of `kinds` in `range`, sorted by time.
    async fn read_hour(
        &self,
        project: &ProjectId,
        range: TimeRange,
        kinds: &[EventKind],
    ) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        scan_pages(
            self.store.as_ref(),
            project,
            range,
            kinds.to_vec(),
            self.page_size,
            |page| out.extend(page),
        )
        .await?;
        out.sort_by_key(|e| e.occurred_at);
        Ok(out)
    }

    fn check(&self, q: &SeriesQuery) -> Result<()> {
        self.check_names(&q.metric, q.dimensions.names().collect())
    }

    fn check_names(&self, metric: &MetricName, mut wanted: Vec<&str>) -> Result<()> {
        wanted.sort_unstable();
        let spec = self
            .specs
            .get(metric)
            .ok_or_else(|| Error::invalid("metric", format!("unknown metric {metric}")))?;
        let grouped = spec.groupings.iter().any(|g| {
            let mut names: Vec<String> = g.iter().map(|d| stored_dimension_name(d)).collect();
            names.sort();
            names.iter().map(String::as_str).eq(wanted.iter().copied())
        });
        if grouped {
            Ok(())
        } else {
            Err(Error::invalid(
                "dimensions",
                format!("metric {metric} is not grouped by {wanted:?}"),
            ))
        }
    }

    /// The statistics of the series over `range`; `None` when there is no data.
    pub async fn stats(&self, q: &SeriesQuery, range: TimeRange) -> Result<Option<RollupStats>> {
        self.check(q)?;
        let rows = self.rows_for(&Selector::series(q), range).await?;
        let (merged, bad) = merge_stats(rows.iter());
        if bad > 0 {
            return Err(Error::Internal(format!(
                "{bad} rollup rows have corrupt digests"
            )));
        }
        Ok(merged.map(|(_, stats)| stats))
    }

    /// The statistics of every series of `metric` grouped by exactly the dimension names
    /// `names` over `range` (one entry per distinct combination of values seen), in no
    /// particular order. `names` must be one of the metric's groupings.
    pub async fn breakdown(
        &self,
        project: &ProjectId,
        metric: &MetricName,
        names: &[&str],
        range: TimeRange,
    ) -> Result<Vec<(Dimensions, RollupStats)>> {
        let rows = self
            .rows_in_order(project, metric, names, &Dimensions::none(), range)
            .await?;
        let mut groups: BTreeMap<&Dimensions, Vec<&Rollup>> = BTreeMap::new();
        for r in &rows {
            groups.entry(&r.key.dimensions).or_default().push(r);
        }
        let mut out = Vec::with_capacity(groups.len());
        for (dims, rows) in groups {
            let (merged, bad) = merge_stats(rows);
            if bad > 0 {
                return Err(Error::Internal(format!(
                    "{bad} rollup rows have corrupt digests"
                )));
            }
            if let Some((_, stats)) = merged {
                out.push((dims.clone(), stats));
            }
        }
        Ok(out)
    }

    /// Every row of `metric` grouped by exactly `names` (and having every pair of `filter`)
    /// covering `range`, in time order: rollup rows of complete buckets (by bucket start)
    /// and rows computed from raw events for the rest (one per raw piece). For state that
    /// composes in time order, like the session funnel.
    pub async fn rows_in_order(
        &self,
        project: &ProjectId,
        metric: &MetricName,
        names: &[&str],
        filter: &Dimensions,
        range: TimeRange,
    ) -> Result<Vec<Rollup>> {
        self.check_names(metric, names.to_vec())?;
        let selector = Selector {
            project,
            metric,
            filter,
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            filtered_rollups: !filter.is_empty(),
        };
        self.rows_for(&selector, range).await
    }

    /// Where an answer over `range` comes from: [`Source::Rollups`] when rollup rows cover
    /// part of it (raw events then fill only the unaligned edges and the open hour),
    /// [`Source::Raw`] when it is read from raw events alone.
    pub async fn source(&self, project: &ProjectId, range: TimeRange) -> Result<Source> {
        let rolled = self
            .plan_inputs(project)
            .await?
            .plan(range)
            .iter()
            .any(|p| matches!(p, Piece::Rollups(..)));
        Ok(if rolled { Source::Rollups } else { Source::Raw })
    }

    /// One point per bucket of `granularity` overlapping `range` (partial buckets at the
    /// edges cover only their part of the range); buckets without data are left out.
    /// Minute buckets (not rolled up) are computed from raw events in one scan, so they
    /// are empty where retention has deleted the raw events.
    pub async fn timeseries(
        &self,
        q: &SeriesQuery,
        range: TimeRange,
        granularity: Granularity,
    ) -> Result<Vec<(DateTime<Utc>, RollupStats)>> {
        self.check(q)?;
        if !granularity.is_rolled() {
            return self.raw_timeseries(q, range, granularity).await;
        }
        let PlanInputs {
            rolled_until: wm,
            dirty,
            ..
        } = self.plan_inputs(&q.project).await?;
        let complete = |b: DateTime<Utc>| {
            let b_end = granularity.bucket_end(b);
            !dirty.iter().any(|h| b <= *h && *h < b_end)
                && range.start() <= b
                && granularity.bucket_end(b) <= range.end()
                && wm.is_some_and(|w| granularity.bucket_end(b) <= w)
        };
        // Complete buckets in one query; the rest bucket by bucket.
        let bulk: Vec<Rollup> =
            match TimeRange::new(granularity.bucket_start(range.start()), range.end()) {
                Ok(r) => {
                    self.piece_rows(&Selector::series(q), Piece::Rollups(granularity, r))
                        .await?
                }
                Err(_) => Vec::new(),
            };
        let mut points = Vec::new();
        for b in range.buckets(granularity) {
            let stats = if complete(b) {
                bulk.iter()
                    .find(|r| r.key.bucket_start == b)
                    .map(|r| r.stats.clone())
            } else {
                let part = TimeRange::new(
                    b.max(range.start()),
                    granularity.bucket_end(b).min(range.end()),
                )?;
                let rows = self.rows_for(&Selector::series(q), part).await?;
                merge_stats(rows.iter()).0.map(|(_, s)| s)
            };
            if let Some(s) = stats {
                points.push((b, s));
            }
        }
        Ok(points)
    }

    /// The project's hours behind the watermark (and not sealed) that changed since they
    /// were rolled: their rollup rows are stale until the next tick, so they are read raw.
    /// Looks at the oldest [`DIRTY_SCAN_LIMIT`] markers (a scheduler backlog beyond that
    /// can hide newer late hours until it catches up).
    async fn late_hours(
        &self,
        project: &ProjectId,
        wm: Option<DateTime<Utc>>,
        sealed: Option<DateTime<Utc>>,
    ) -> Result<Vec<DateTime<Utc>>> {
        let Some(wm) = wm else {
            return Ok(Vec::new());
        };
        Ok(self
            .store
            .dirty_hours(DIRTY_SCAN_LIMIT)
            .await?
            .into_iter()
            .filter(|d| &d.project == project && d.hour < wm && sealed.is_none_or(|s| d.hour >= s))
            .map(|d| d.hour)
            .collect())
    }

    async fn raw_timeseries(
        &self,
        q: &SeriesQuery,
        range: TimeRange,
        granularity: Granularity,
    ) -> Result<Vec<(DateTime<Utc>, RollupStats)>> {
        let Some(spec) = self.specs.get(&q.metric) else {
            return Ok(Vec::new());
        };
        let only = RollupSpecs(vec![spec.clone()]);
        let mut buckets: BTreeMap<DateTime<Utc>, Aggregator<'_>> = BTreeMap::new();
        self.scan_raw(&q.project, range, spec.kinds(), |e| {
            buckets
                .entry(granularity.bucket_start(e.occurred_at))
                .or_insert_with(|| Aggregator::new(&only))
                .add(e);
        })
        .await?;
        Ok(buckets
            .into_iter()
            .filter_map(|(b, agg)| {
                agg.finish(&q.project, granularity, b, b)
                    .into_iter()
                    .find(|r| r.key.dimensions == q.dimensions)
                    .map(|r| (b, r.stats))
            })
            .collect())
    }

    async fn query(
        &self,
        sel: &Selector<'_>,
        g: Granularity,
        range: TimeRange,
    ) -> Result<Vec<Rollup>> {
        self.store
            .query_rollups(&RollupQuery {
                project: sel.project.clone(),
                granularity: g,
                range,
                metrics: vec![sel.metric.clone()],
                dimensions: sel.filter.clone(),
                dimension_names: Some(sel.names.clone()),
            })
            .await
    }

    /// How `range` of `project` is read: rollup pieces behind the hour watermark (minus late
    /// hours), raw pieces for the rest.
    async fn pieces(&self, project: &ProjectId, range: TimeRange) -> Result<Vec<Piece>> {
        Ok(self.plan_inputs(project).await?.plan(range))
    }

    /// The rows (rolled up, or computed from raw events) covering `range`.
    async fn rows_for(&self, sel: &Selector<'_>, range: TimeRange) -> Result<Vec<Rollup>> {
        let mut rows = Vec::new();
        for piece in self.pieces(sel.project, range).await? {
            rows.extend(self.piece_rows(sel, piece).await?);
        }
        Ok(rows)
    }

    /// The rows of one piece: rollup rows of its granularity, or rows computed from its raw
    /// events. A snapshot reader reads a grouping's rows once per piece and selects from
    /// them; reads selecting fewer values than their grouping has names, and the rollup
    /// pieces of a filtered [`RollupReader::rows_in_order`] (the funnel's packed rows of
    /// one collection value), are filtered by the store instead.
    async fn piece_rows(&self, sel: &Selector<'_>, piece: Piece) -> Result<Vec<Rollup>> {
        let by_filter = sel.filtered_rollups && matches!(piece, Piece::Rollups(..));
        let Some(snap) = self
            .snap
            .as_ref()
            .filter(|_| sel.whole_grouping() && !by_filter)
        else {
            return match piece {
                Piece::Rollups(g, r) => self.query(sel, g, r).await,
                Piece::Raw(r) => self.raw_rows(sel, r).await,
            };
        };
        let mut names = sel.names.clone();
        names.sort();
        let key: RowsKey = (sel.project.clone(), sel.metric.clone(), names, piece);
        let kept = locked(&snap.rows).get(&key).cloned();
        let all = match kept {
            Some(all) => all,
            None => {
                let every = Selector {
                    project: sel.project,
                    metric: sel.metric,
                    filter: &Dimensions::none(),
                    names: key.2.clone(),
                    filtered_rollups: false,
                };
                let all = Arc::new(match piece {
                    Piece::Rollups(g, r) => self.query(&every, g, r).await?,
                    Piece::Raw(r) => self.raw_rows(&every, r).await?,
                });
                locked(&snap.rows).insert(key, all.clone());
                all
            }
        };
        Ok(all
            .iter()
            .filter(|r| sel.selects(&r.key.dimensions))
            .cloned()
            .collect())
    }

    /// Every row of the given series shapes (a metric and the dimension names of one of its
    /// groupings, in any order) covering `range`, rolled up or computed from raw events in
    /// one scan per piece: one read answers any number of series of these shapes over this
    /// range with [`series_stats`]. The alert engine reads each distinct window once this
    /// way, however many configurations watch it. Unknown metrics and groupings a metric
    /// does not have are left out.
    pub async fn window_rows(
        &self,
        project: &ProjectId,
        shapes: &[(MetricName, Vec<String>)],
        range: TimeRange,
    ) -> Result<Vec<Rollup>> {
        let sorted = |names: &mut Vec<String>| {
            names.sort();
            names.dedup();
        };
        let mut wanted: BTreeMap<&MetricName, Vec<Vec<String>>> = BTreeMap::new();
        for (metric, names) in shapes {
            let mut names = names.clone();
            sorted(&mut names);
            wanted.entry(metric).or_default().push(names);
        }
        let specs = RollupSpecs(
            wanted
                .iter()
                .filter_map(|(m, shapes)| {
                    let mut spec = self.specs.get(m)?.clone();
                    spec.groupings.retain(|g| {
                        let mut names: Vec<String> =
                            g.iter().map(|d| stored_dimension_name(d)).collect();
                        sorted(&mut names);
                        shapes.contains(&names)
                    });
                    (!spec.groupings.is_empty()).then_some(spec)
                })
                .collect(),
        );
        if specs.0.is_empty() {
            return Ok(Vec::new());
        }
        let read_shape = |r: &Rollup| {
            wanted
                .get(&r.key.metric)
                .is_some_and(|shapes| shapes.iter().any(|n| r.key.dimensions.names().eq(n)))
        };
        let mut kinds: Vec<_> = specs.0.iter().map(|s| s.kind.clone()).collect();
        kinds.sort();
        kinds.dedup();
        let mut rows = Vec::new();
        for piece in self.pieces(project, range).await? {
            match piece {
                Piece::Rollups(g, r) => rows.extend(
                    self.store
                        .query_rollups(&RollupQuery {
                            project: project.clone(),
                            granularity: g,
                            range: r,
                            metrics: specs.0.iter().map(|s| s.metric.clone()).collect(),
                            dimensions: Dimensions::none(),
                            dimension_names: None,
                        })
                        .await?
                        .into_iter()
                        .filter(read_shape),
                ),
                Piece::Raw(r) => {
                    let mut agg = Aggregator::new(&specs);
                    self.scan_raw(project, r, kinds.clone(), |e| agg.add(e))
                        .await?;
                    rows.extend(agg.finish(project, Granularity::Hour, r.start(), r.start()));
                }
            }
        }
        Ok(rows)
    }

    async fn raw_rows(&self, sel: &Selector<'_>, range: TimeRange) -> Result<Vec<Rollup>> {
        let Some(spec) = self.specs.get(sel.metric) else {
            return Ok(Vec::new());
        };
        let only = RollupSpecs(vec![spec.clone()]);
        let mut agg = Aggregator::new(&only);
        self.scan_raw(sel.project, range, spec.kinds(), |e| agg.add(e))
            .await?;
        let rows = agg.finish(sel.project, Granularity::Hour, range.start(), range.start());
        Ok(rows
            .into_iter()
            .filter(|r| sel.selects(&r.key.dimensions))
            .collect())
    }
}

/// Which series of a metric to read: rows whose dimensions have exactly `names` and include
/// every pair of `filter`.
struct Selector<'a> {
    project: &'a ProjectId,
    metric: &'a MetricName,
    filter: &'a Dimensions,
    names: Vec<String>,
    /// Rollup rows are read by the filter even by a snapshot reader (large rows, like the
    /// packed funnel's, of which a read wants one or two values of the grouping).
    filtered_rollups: bool,
}

impl<'a> Selector<'a> {
    fn series(q: &'a SeriesQuery) -> Self {
        Self {
            project: &q.project,
            metric: &q.metric,
            filter: &q.dimensions,
            names: q.dimensions.names().map(str::to_owned).collect(),
            filtered_rollups: false,
        }
    }

    /// Whether the read selects by every name of its grouping or by none (a series or a
    /// breakdown), not by some of them.
    fn whole_grouping(&self) -> bool {
        self.filter.is_empty() || self.filter.names().count() == self.names.len()
    }

    fn selects(&self, d: &Dimensions) -> bool {
        let mut names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        names.sort_unstable();
        d.matches(self.filter) && d.names().eq(names)
    }
}

/// The statistics of one series out of rows read with [`RollupReader::window_rows`] (the
/// series' metric, exactly its dimension names, its values); `None` when no row has data.
pub fn series_stats(rows: &[Rollup], q: &SeriesQuery) -> Result<Option<RollupStats>> {
    let sel = Selector::series(q);
    let (merged, bad) = merge_stats(
        rows.iter()
            .filter(|r| r.key.metric == q.metric && sel.selects(&r.key.dimensions)),
    );
    if bad > 0 {
        return Err(Error::Internal(format!(
            "{bad} rollup rows have corrupt digests"
        )));
    }
    Ok(merged.map(|(_, stats)| stats))
}

/// The value of `stat` of a series from its statistics over `window`, as
/// [`MetricsSource::metric_value`] answers it: no events is a count, sum or rate of zero,
/// and missing data for the other statistics.
pub fn observed_value(stats: Option<&RollupStats>, stat: Stat, window: TimeRange) -> Option<f64> {
    match (stats, stat) {
        (None, Stat::Count | Stat::Sum | Stat::Rate) => Some(0.0),
        (None, _) => None,
        (Some(s), stat) => stat_value(s, stat, window),
    }
}

/// Where an answer was read from (API.md, FR-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Rollup rows, with raw events only for the unaligned edges and the open hour.
    Rollups,
    /// Raw events only.
    Raw,
}

impl Source {
    /// The wire form (`rollups`, `raw`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rollups => "rollups",
            Self::Raw => "raw",
        }
    }
}

/// Picks one statistic out of rollup statistics (`rate` is per second over `window`).
pub fn stat_value(stats: &RollupStats, stat: Stat, window: TimeRange) -> Option<f64> {
    match stat {
        Stat::Count => Some(stats.count),
        Stat::Sum => Some(stats.sum),
        Stat::Avg => stats.avg,
        Stat::Min => stats.min,
        Stat::Max => stats.max,
        Stat::P50 => stats.p50,
        Stat::P95 => stats.p95,
        Stat::P99 => stats.p99,
        Stat::Rate => {
            let secs = window.duration().num_milliseconds() as f64 / 1000.0;
            (secs > 0.0).then(|| stats.count / secs)
        }
    }
}

#[async_trait]
impl MetricsSource for RollupReader {
    async fn metric_value(&self, query: &MetricQuery) -> Result<Option<f64>> {
        let q = SeriesQuery {
            project: query.project.clone(),
            metric: query.metric.clone(),
            dimensions: query.dimensions.clone(),
        };
        let stats = self.stats(&q, query.window).await?;
        Ok(observed_value(stats.as_ref(), query.stat, query.window))
    }
}
