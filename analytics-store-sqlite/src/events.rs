//! `EventSink` and `EventStore` on SQLite: batched idempotent inserts with dirty-hour
//! markers, filtered keyset-paginated reads, and retention in small transactions.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use analytics_core::event::StoredEvent;
use analytics_core::ports::event_store::event_cursor;
use analytics_core::ports::{
    DirtyHour, EventFilter, EventSink, EventStore, WriteOutcome, WriteReport,
};
use analytics_core::{
    Cursor, Error, Event, EventId, EventKind, FieldError, Granularity, Page, PageRequest, Payload,
    ProjectId, Result,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use crate::codec::{
    MAX_BIND_PARAMS, chunk_sizes, from_micros, get, get_time, get_u64, micros, value_rows,
};
use crate::error::{DbResultExt, corrupt};
use crate::sql::{Arg, Where, query_with};
use crate::store::SqliteStore;

/// Columns bound per event by the insert.
pub(crate) const EVENT_COLUMNS: usize = 16;

/// The columns `write_batch` binds per event, in [`Row16::bind`]'s order.
pub(crate) const INSERT_COLUMNS: &str = "project, id, kind, occurred_at, received_at, \
     correlation_id, user_id, session_id, source, sample_rate, provider, route, collection, \
     status, payload, properties";

/// One retention batch: the oldest rows of one project and kind, up to a limit.
pub(crate) const RETENTION_SQL: &str = "DELETE FROM analytics_events WHERE seq IN (SELECT seq \
     FROM analytics_events INDEXED BY ix_events_project_kind_time \
     WHERE project = ? AND kind = ? AND occurred_at < ? LIMIT ?)";

const SELECT_EVENT: &str = "SELECT id, project, kind, occurred_at, received_at, correlation_id, \
     user_id, session_id, source, sample_rate, payload, properties FROM analytics_events";

/// What makes a row unreadable later, checked before anything is written. Everything else
/// about an `Event` was established by `Event::parse`.
fn check_event(e: &Event) -> Result<(), FieldError> {
    if !(e.sample_rate.is_finite() && e.sample_rate > 0.0 && e.sample_rate <= 1.0) {
        return Err(FieldError::new(
            "sample_rate",
            "must be a number greater than 0 and at most 1",
        ));
    }
    let kind_matches = match (&e.kind, &e.payload) {
        (EventKind::ApiRequest, Payload::ApiRequest(_))
        | (EventKind::MlJob, Payload::MlJob(_))
        | (EventKind::Order, Payload::Order(_))
        | (EventKind::Error, Payload::Error(_))
        | (EventKind::Alert, Payload::Alert(_))
        | (EventKind::Inventory, Payload::Inventory(_))
        | (EventKind::Custom(_), Payload::Custom(_)) => true,
        (kind, Payload::Funnel(_)) => kind.is_funnel(),
        _ => false,
    };
    if !kind_matches {
        return Err(FieldError::new(
            "payload",
            format!("does not match the kind {}", e.kind),
        ));
    }
    // serde_json writes a non-finite float as `null`, which would not read back.
    let finite = |field: &str, v: f64| {
        if v.is_finite() {
            Ok(())
        } else {
            Err(FieldError::new(
                format!("payload.{field}"),
                "must be a finite number",
            ))
        }
    };
    match &e.payload {
        Payload::ApiRequest(r) => finite("latency_ms", r.latency_ms)?,
        Payload::MlJob(j) => {
            finite("duration_ms", j.duration_ms)?;
            if let Some(c) = j.cost_usd {
                finite("cost_usd", c)?;
            }
        }
        Payload::Order(o) => {
            finite("amount", o.amount)?;
            for (i, item) in o.items.iter().enumerate() {
                finite(&format!("items[{i}].unit_price"), item.unit_price)?;
            }
        }
        Payload::Alert(a) => {
            if let Some(v) = a.value {
                finite("value", v)?;
            }
        }
        Payload::Funnel(f) => {
            if let Some(v) = f.value {
                finite("value", v)?;
            }
        }
        Payload::Error(_) | Payload::Custom(_) | Payload::Inventory(_) => {}
    }
    Ok(())
}

/// An event ready to bind: the JSON encoded once, repeated strings shared.
pub(crate) struct Row16<'a> {
    event: &'a Event,
    project: Arc<str>,
    kind: Arc<str>,
    status: Option<String>,
    payload: String,
    properties: String,
}

/// Interns the few distinct strings a batch repeats (projects, kinds), so binding them does
/// not copy them once per row.
#[derive(Default)]
pub(crate) struct Interner<'a>(HashMap<&'a str, Arc<str>>);

impl<'a> Interner<'a> {
    pub(crate) fn get(&mut self, s: &'a str) -> Arc<str> {
        Arc::clone(self.0.entry(s).or_insert_with(|| Arc::from(s)))
    }
}

impl<'a> Row16<'a> {
    /// Binds the row's [`EVENT_COLUMNS`] values, in the order of [`INSERT_COLUMNS`].
    pub(crate) fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>
    where
        'a: 'q,
    {
        let e = self.event;
        q.bind(self.project)
            .bind(e.id.0)
            .bind(self.kind)
            .bind(micros(e.occurred_at))
            .bind(micros(e.received_at))
            .bind(e.correlation_id.as_str())
            .bind(e.user_id.as_deref())
            .bind(e.session_id.as_deref())
            .bind(e.source.as_deref())
            .bind(e.sample_rate)
            .bind(e.provider())
            .bind(e.route())
            .bind(e.collection())
            .bind(self.status)
            .bind(self.payload)
            .bind(self.properties)
    }
}

pub(crate) fn encode<'a>(e: &'a Event, interner: &mut Interner<'a>) -> Result<Row16<'a>> {
    let json = |what: &str, r: serde_json::Result<String>| {
        r.map_err(|err| Error::Internal(format!("cannot encode event {what}: {err}")))
    };
    Ok(Row16 {
        event: e,
        project: interner.get(e.project.as_str()),
        kind: interner.get(e.kind.as_str()),
        status: e.status(),
        payload: json("payload", serde_json::to_string(&e.payload))?,
        properties: json("properties", serde_json::to_string(&e.properties))?,
    })
}

/// `OR IGNORE`, not `ON CONFLICT (project, id) DO NOTHING`: with the latter a `NOT NULL`
/// violation would abort the statement after some of its rows, so SQLite would keep a
/// statement journal for every multi-row insert, a copy of each page the statement changes
/// (4-9% of the writer's time; migration 0012 removed the other cause). No row can violate
/// those constraints ([`check_event`] refused it already), and [`insert_rows`] checks that
/// every row it did not insert is stored, so nothing is skipped silently.
fn insert_sql(rows: usize) -> String {
    format!(
        "INSERT OR IGNORE INTO analytics_events ({INSERT_COLUMNS}) VALUES {}",
        value_rows(rows, EVENT_COLUMNS)
    )
}

/// Inserts `rows` in as few statements as the bind limit allows and returns, for each input
/// row, whether it was inserted (absent rows were already stored).
///
/// New rows take `seq` = max + 1 in turn (the single writer holds the write lock for the
/// whole transaction), so a statement that inserted fewer rows than it bound learns which
/// ones from the rows above the `seq` it started at; a statement without duplicates (the
/// usual case) reads nothing back.
async fn insert_rows(
    tx: &mut Transaction<'static, Sqlite>,
    rows: Vec<Row16<'_>>,
    chunk_rows: usize,
) -> Result<Vec<bool>> {
    let mut inserted = vec![false; rows.len()];
    let mut rows = rows.into_iter().enumerate();
    let max = chunk_rows.clamp(1, MAX_BIND_PARAMS / EVENT_COLUMNS);
    let mut last_seq: i64 =
        sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM analytics_events")
            .fetch_one(&mut **tx)
            .await
            .db("write batch")?;
    let mut start = 0;
    for size in chunk_sizes(inserted.len(), max) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_sql(size)));
        // (project, id) -> position in the batch, for matching inserted rows read back.
        let mut index: HashMap<(&str, Uuid), usize> = HashMap::new();
        for _ in 0..size {
            let Some((i, r)) = rows.next() else { break };
            index.insert((r.event.project.as_str(), r.event.id.0), i);
            q = r.bind(q);
        }
        let added = q
            .execute(&mut **tx)
            .await
            .db("write batch")?
            .rows_affected();
        if usize::try_from(added).is_ok_and(|n| n == size) {
            inserted[start..start + size].fill(true);
        } else {
            let back = sqlx::query("SELECT project, id FROM analytics_events WHERE seq > ?")
                .bind(last_seq)
                .fetch_all(&mut **tx)
                .await
                .db("write batch")?;
            for row in &back {
                let project: &str = get(row, "event", "project")?;
                let id: Uuid = get(row, "event", "id")?;
                match index.get(&(project, id)) {
                    Some(&i) => inserted[i] = true,
                    None => {
                        return Err(Error::Internal(format!(
                            "sqlite stored an event that was not in the batch: {project}/{id}"
                        )));
                    }
                }
            }
            // `OR IGNORE` skips a row for any constraint: each one skipped must be a
            // duplicate of a stored event, or the batch fails (and rolls back).
            for (&(project, id), &i) in &index {
                if inserted[i] {
                    continue;
                }
                let stored: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM analytics_events WHERE project = ? AND id = ?)",
                )
                .bind(project)
                .bind(id)
                .fetch_one(&mut **tx)
                .await
                .db("write batch")?;
                if !stored {
                    return Err(Error::Internal(format!(
                        "sqlite refused event {project}/{id} without storing a copy of it"
                    )));
                }
            }
        }
        last_seq += i64::try_from(added).unwrap_or(i64::MAX);
        start += size;
    }
    Ok(inserted)
}

/// Marks the hours of the inserted events dirty with a fresh version.
async fn mark_dirty(
    tx: &mut Transaction<'static, Sqlite>,
    hours: &BTreeSet<(i64, &str)>,
) -> Result<()> {
    if hours.is_empty() {
        return Ok(());
    }
    let version: i64 = sqlx::query_scalar(
        "UPDATE store_counters SET value = value + 1 WHERE name = 'dirty_version' RETURNING value",
    )
    .fetch_one(&mut **tx)
    .await
    .db("bump dirty version")?;
    let hours: Vec<_> = hours.iter().collect();
    for chunk in hours.chunks(1000) {
        let sql = format!(
            "INSERT INTO rollup_dirty_hours (hour, project, version) VALUES {} \
             ON CONFLICT (hour, project) DO UPDATE SET version = excluded.version",
            value_rows(chunk.len(), 3)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (hour, project) in chunk {
            q = q.bind(*hour).bind(*project).bind(version);
        }
        q.execute(&mut **tx).await.db("mark dirty hours")?;
    }
    Ok(())
}

#[async_trait]
impl EventSink for SqliteStore {
    async fn write_batch(&self, events: &[Event]) -> Result<WriteReport> {
        if events.is_empty() {
            return Ok(WriteReport::default());
        }
        // Check and encode everything before touching the database: a bad event fails the
        // whole batch, named, and nothing is written.
        let mut outcomes = vec![WriteOutcome::Duplicate; events.len()];
        let mut first_seen: HashSet<(&str, EventId)> = HashSet::with_capacity(events.len());
        let mut positions = Vec::with_capacity(events.len());
        let mut rows = Vec::with_capacity(events.len());
        let mut interner = Interner::default();
        for (i, e) in events.iter().enumerate() {
            check_event(e)
                .map_err(|f| Error::invalid(format!("events[{i}].{}", f.field), f.message))?;
            // A repeat within the batch is a duplicate of its first occurrence.
            if first_seen.insert((e.project.as_str(), e.id)) {
                positions.push(i);
                rows.push(encode(e, &mut interner)?);
            }
        }

        let mut tx = self.begin_write("write batch").await?;
        let inserted = insert_rows(&mut tx, rows, self.inner.options.insert_chunk_rows).await?;
        let mut hours = BTreeSet::new();
        for (&i, &ins) in positions.iter().zip(&inserted) {
            if ins {
                outcomes[i] = WriteOutcome::Inserted;
                let e = &events[i];
                let hour = Granularity::Hour.bucket_start(e.occurred_at);
                hours.insert((micros(hour), e.project.as_str()));
            }
        }
        mark_dirty(&mut tx, &hours).await?;
        self.commit(tx, "commit write batch").await?;
        Ok(WriteReport { outcomes })
    }
}

fn decode_event(row: &SqliteRow) -> Result<Event> {
    const W: &str = "event";
    let payload: String = get(row, W, "payload")?;
    let properties: String = get(row, W, "properties")?;
    let stored = StoredEvent {
        id: get(row, W, "id")?,
        project: get(row, W, "project")?,
        kind: get(row, W, "kind")?,
        occurred_at: get_time(row, W, "occurred_at")?,
        received_at: get_time(row, W, "received_at")?,
        correlation_id: get(row, W, "correlation_id")?,
        user_id: get(row, W, "user_id")?,
        session_id: get(row, W, "session_id")?,
        source: get(row, W, "source")?,
        sample_rate: get(row, W, "sample_rate")?,
        payload: serde_json::from_str(&payload).map_err(|e| corrupt(W, e))?,
        properties: serde_json::from_str(&properties).map_err(|e| corrupt(W, e))?,
    };
    Event::from_stored(stored).map_err(|e| corrupt(W, e))
}

/// The `WHERE` clause of an event filter (without the cursor).
pub(crate) fn event_where(filter: &EventFilter) -> Where {
    let mut w = Where::default();
    if let Some(p) = &filter.project {
        w.and("project = ?", [Arg::Text(p.as_str().to_owned())]);
    }
    w.any_of(
        "kind",
        filter
            .kinds
            .iter()
            .map(|k| Arg::Text(k.as_str().to_owned())),
    );
    if let Some(r) = &filter.range {
        w.and(
            "occurred_at >= ? AND occurred_at < ?",
            [Arg::Int(micros(r.start())), Arg::Int(micros(r.end()))],
        );
    }
    let text_filters = [
        ("provider", &filter.provider),
        ("route", &filter.route),
        ("collection", &filter.collection),
        ("status", &filter.status),
        ("correlation_id", &filter.correlation_id),
        ("user_id", &filter.user_id),
        ("session_id", &filter.session_id),
    ];
    for (column, value) in text_filters {
        if let Some(v) = value {
            w.and(format!("{column} = ?"), [Arg::Text(v.clone())]);
        }
    }
    w
}

/// The index one query of a listing with `filter` reads, when one query can list it.
///
/// Every `(project, <column>, occurred_at, id)` index returns rows in the listing's order, and
/// one with more equality columns visits a subset of the rows another would visit, in the
/// same order, so it is never worse; naming the index keeps the plan stable whatever the
/// planner's statistics say. A correlation id selects a handful of rows, which are sorted.
///
/// `None`: no index lists it in order by itself, because there is no index on time alone
/// or on `(project, time)` (each one would cost every insert). [`merged_page`] lists those:
/// one scan of `ix_events_project_kind_time` per project and kind, merged.
pub(crate) fn listing_index(filter: &EventFilter) -> Option<&'static str> {
    if filter.correlation_id.is_some() {
        return Some("ix_events_correlation");
    }
    filter.project.as_ref()?;
    if filter.provider.is_some() {
        Some("ix_events_provider")
    } else if filter.collection.is_some() {
        Some("ix_events_collection")
    } else if filter.route.is_some() {
        Some("ix_events_route")
    } else if filter.kinds.len() == 1 {
        Some("ix_events_project_kind_time")
    } else {
        None
    }
}

/// The projects that have events, in order: a skip scan of `ix_events_project_kind_time`
/// that seeks once per project (a recursive CTE) instead of reading every row.
pub(crate) const PROJECTS_SQL: &str = "WITH RECURSIVE p(project) AS ( \
     SELECT (SELECT min(project) FROM analytics_events INDEXED BY ix_events_project_kind_time) \
     UNION ALL \
     SELECT (SELECT min(project) FROM analytics_events INDEXED BY ix_events_project_kind_time \
             WHERE project > p.project) FROM p WHERE p.project IS NOT NULL) \
     SELECT project FROM p WHERE project IS NOT NULL";

/// The kinds a project has events of, in order: the same skip scan, one seek per kind.
pub(crate) const KINDS_SQL: &str = "WITH RECURSIVE k(kind) AS ( \
     SELECT (SELECT min(kind) FROM analytics_events INDEXED BY ix_events_project_kind_time \
             WHERE project = ?1) \
     UNION ALL \
     SELECT (SELECT min(kind) FROM analytics_events INDEXED BY ix_events_project_kind_time \
             WHERE project = ?1 AND kind > k.kind) FROM k WHERE k.kind IS NOT NULL) \
     SELECT kind FROM k WHERE kind IS NOT NULL";

/// The projects that have events.
async fn projects_with_events<'c, E>(conn: E) -> Result<Vec<String>>
where
    E: sqlx::Executor<'c, Database = Sqlite>,
{
    sqlx::query_scalar(PROJECTS_SQL)
        .fetch_all(conn)
        .await
        .db("list projects with events")
}

/// The kinds `project` has events of.
async fn kinds_of<'c, E>(conn: E, project: &str) -> Result<Vec<String>>
where
    E: sqlx::Executor<'c, Database = Sqlite>,
{
    sqlx::query_scalar(KINDS_SQL)
        .bind(project)
        .fetch_all(conn)
        .await
        .db("list kinds of a project")
}

/// Kinds whose events carry a `status` (`Event::status`): a status filter matches no other.
const KINDS_WITH_STATUS: [&str; 3] = ["api_request", "error", "ml_job"];

/// The SQL and arguments of one page of `query_events` that one index lists in order
/// ([`listing_index`] is `Some`).
pub(crate) fn page_query(
    filter: &EventFilter,
    page: &PageRequest,
) -> Result<(String, sqlx::sqlite::SqliteArguments)> {
    listing_query(SELECT_EVENT, filter, page, None)
}

/// The keys (`seq, occurred_at, id`) of one scan of a merged listing, at or after `floor`
/// when given. Without row filters it reads the index alone (a covering scan).
pub(crate) fn keys_query(
    filter: &EventFilter,
    page: &PageRequest,
    floor: Option<Cursor>,
) -> Result<(String, sqlx::sqlite::SqliteArguments)> {
    listing_query(
        "SELECT seq, occurred_at, id FROM analytics_events",
        filter,
        page,
        floor,
    )
}

fn listing_query(
    select: &str,
    filter: &EventFilter,
    page: &PageRequest,
    floor: Option<Cursor>,
) -> Result<(String, sqlx::sqlite::SqliteArguments)> {
    let (sql, args) = listing_parts(select, filter, page, floor);
    Ok((sql, Where::default().arguments(args)?))
}

/// The SQL of one listing scan and its arguments, the `LIMIT` (`limit + 1`) last.
fn listing_parts(
    select: &str,
    filter: &EventFilter,
    page: &PageRequest,
    floor: Option<Cursor>,
) -> (String, Vec<Arg>) {
    // The time bounds as two plain comparisons on `occurred_at` that take the range, the
    // cursor and the floor together: SQLite bounds an index scan by one lower and one upper
    // constraint and applies the others row by row, so with the range's bounds and a cursor
    // it would start every page at the range's end, and with a floor it would read on to
    // the range's start. The row values then only settle ties at the cursor and the floor.
    let mut w = event_where(&EventFilter {
        range: None,
        ..filter.clone()
    });
    let mut lo = filter.range.map(|r| micros(r.start()));
    let mut hi = filter.range.map(|r| micros(r.end()).saturating_sub(1));
    if let Some(c) = page.cursor {
        hi = Some(hi.map_or(micros(c.at), |h| h.min(micros(c.at))));
    }
    if let Some(f) = floor {
        lo = Some(lo.map_or(micros(f.at), |l| l.max(micros(f.at))));
    }
    if let Some(lo) = lo {
        w.and("occurred_at >= ?", [Arg::Int(lo)]);
    }
    if let Some(hi) = hi {
        w.and("occurred_at <= ?", [Arg::Int(hi)]);
    }
    w.before("occurred_at", page.cursor);
    if let Some(f) = floor {
        w.and(
            "(occurred_at, id) >= (?, ?)",
            [Arg::Int(micros(f.at)), Arg::Id(f.id)],
        );
    }
    let sql = format!(
        "{select}{}{} ORDER BY occurred_at DESC, id DESC LIMIT ?",
        listing_index(filter)
            .map(|ix| format!(" INDEXED BY {ix}"))
            .unwrap_or_default(),
        w.sql()
    );
    let mut args = w.into_args();
    args.push(Arg::Int(i64::from(page.limit()) + 1));
    (sql, args)
}

/// The scans a merged listing reads: for each project (the filter's, or every project with
/// events), the filter narrowed to that project and, unless one index already lists it
/// (a provider, route or collection), to each kind in turn (the filter's kinds, or every
/// kind the project has).
pub(crate) async fn merged_scans(
    conn: &mut sqlx::SqliteConnection,
    filter: &EventFilter,
) -> Result<Vec<EventFilter>> {
    let projects = match &filter.project {
        Some(p) => vec![p.clone()],
        None => projects_with_events(&mut *conn)
            .await?
            .iter()
            .map(|p| ProjectId::parse(p).map_err(|e| corrupt("event", e)))
            .collect::<Result<_>>()?,
    };
    let mut scans = Vec::new();
    for project in projects {
        let one = EventFilter {
            project: Some(project),
            ..filter.clone()
        };
        if listing_index(&one).is_some() {
            scans.push(one);
            continue;
        }
        let kinds = if one.kinds.is_empty() {
            let stored = kinds_of(
                &mut *conn,
                one.project.as_ref().map_or("", ProjectId::as_str),
            )
            .await?;
            stored
                .iter()
                .map(|k| k.parse::<EventKind>().map_err(|e| corrupt("event", e)))
                .collect::<Result<Vec<_>>>()?
        } else {
            one.kinds.clone()
        };
        for kind in kinds {
            if one.status.is_some() && !KINDS_WITH_STATUS.contains(&kind.as_str()) {
                continue;
            }
            scans.push(EventFilter {
                kinds: vec![kind],
                ..one.clone()
            });
        }
    }
    Ok(scans)
}

/// Whether a scan of a merged listing has only conditions its index holds, so it reads the
/// index alone and stops after `limit + 1` keys.
fn index_only(scan: &EventFilter) -> bool {
    scan.user_id.is_none()
        && scan.session_id.is_none()
        && scan.status.is_none()
        && (scan.kinds.is_empty() || listing_index(scan) == Some("ix_events_project_kind_time"))
}

/// Most scans merged in one statement (SQLite allows 500 terms in a compound `SELECT`).
const MAX_SCANS_PER_STATEMENT: usize = 200;

/// One page of a listing no single index lists in order ([`listing_index`] is `None`), over
/// [`merged_scans`], newest first.
///
/// When every scan reads its index alone (no row filters), one statement does it all:
/// each scan's keys (at most `limit + 1`, a covering index range), `UNION ALL`, the newest
/// `limit + 1` of them, and those rows by `seq`; only the page's rows leave SQLite.
///
/// With row filters (user, session, status) a scan may read far to find `limit + 1`
/// matches, so the scans run one after another in one read transaction (one snapshot):
/// once `limit + 1` keys are in hand, the oldest of them bounds the scans that follow (rows
/// older than the page are not read again per kind), then the page's rows are read by `seq`.
async fn merged_page(
    store: &SqliteStore,
    filter: &EventFilter,
    page: &PageRequest,
) -> Result<Vec<Event>> {
    let want = page.limit_usize() + 1;
    let mut tx = store.reader().begin().await.db("query events")?;
    let scans = merged_scans(&mut tx, filter).await?;
    let mut events = if scans.iter().all(index_only) && scans.len() <= MAX_SCANS_PER_STATEMENT {
        merged_in_one_statement(&mut tx, &scans, page).await?
    } else {
        merged_scan_by_scan(&mut tx, &scans, page).await?
    };
    tx.commit().await.db("query events")?;
    events.sort_unstable_by_key(|e| std::cmp::Reverse((e.occurred_at, e.id.0)));
    events.truncate(want);
    Ok(events)
}

/// The one statement of a merged page whose scans read their index alone.
pub(crate) fn merged_query(
    scans: &[EventFilter],
    page: &PageRequest,
) -> Result<(String, sqlx::sqlite::SqliteArguments)> {
    let mut args = Vec::new();
    let mut keys = Vec::with_capacity(scans.len());
    for scan in scans {
        let (sql, a) = listing_parts(
            "SELECT seq, occurred_at, id FROM analytics_events",
            scan,
            page,
            None,
        );
        keys.push(format!("SELECT * FROM ({sql})"));
        args.extend(a);
    }
    args.push(Arg::Int(i64::from(page.limit()) + 1));
    let sql = format!(
        "{SELECT_EVENT} WHERE seq IN (SELECT seq FROM ({}) \
         ORDER BY occurred_at DESC, id DESC LIMIT ?)",
        keys.join(" UNION ALL ")
    );
    Ok((sql, Where::default().arguments(args)?))
}

async fn merged_in_one_statement(
    conn: &mut sqlx::SqliteConnection,
    scans: &[EventFilter],
    page: &PageRequest,
) -> Result<Vec<Event>> {
    if scans.is_empty() {
        return Ok(Vec::new());
    }
    let (sql, args) = merged_query(scans, page)?;
    let rows = query_with(sql, args)
        .fetch_all(&mut *conn)
        .await
        .db("query events")?;
    rows.iter().map(decode_event).collect()
}

async fn merged_scan_by_scan(
    conn: &mut sqlx::SqliteConnection,
    scans: &[EventFilter],
    page: &PageRequest,
) -> Result<Vec<Event>> {
    let want = page.limit_usize() + 1;
    // (occurred_at, id, seq), newest first.
    let mut keys: Vec<(i64, Uuid, i64)> = Vec::new();
    for scan in scans {
        let floor = match keys.get(want - 1) {
            Some(&(at, id, _)) => Some(Cursor {
                at: from_micros("event", at)?,
                id,
            }),
            None => None,
        };
        let (sql, args) = keys_query(scan, page, floor)?;
        let rows = query_with(sql, args)
            .fetch_all(&mut *conn)
            .await
            .db("query events")?;
        for row in &rows {
            keys.push((
                get(row, "event", "occurred_at")?,
                get(row, "event", "id")?,
                get(row, "event", "seq")?,
            ));
        }
        keys.sort_unstable_by_key(|k| std::cmp::Reverse((k.0, k.1)));
        keys.truncate(want);
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{SELECT_EVENT} WHERE seq IN ({})",
        crate::codec::placeholders(keys.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for k in &keys {
        q = q.bind(k.2);
    }
    let rows = q.fetch_all(&mut *conn).await.db("query events")?;
    if rows.len() != keys.len() {
        return Err(Error::Internal(
            "a listed event vanished in its snapshot".into(),
        ));
    }
    rows.iter().map(decode_event).collect()
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn query_events(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<Event>> {
        if listing_index(filter).is_none() {
            let events = merged_page(self, filter, page).await?;
            return Ok(Page::from_overfetch(events, page, event_cursor));
        }
        let (sql, args) = page_query(filter, page)?;
        let rows = query_with(sql, args)
            .fetch_all(self.reader())
            .await
            .db("query events")?;
        let events = rows.iter().map(decode_event).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(events, page, event_cursor))
    }

    async fn get_event(&self, project: &ProjectId, id: EventId) -> Result<Option<Event>> {
        let sql = format!("{SELECT_EVENT} WHERE project = ? AND id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(project.as_str())
            .bind(id.0)
            .fetch_optional(self.reader())
            .await
            .db("get event")?;
        row.as_ref().map(decode_event).transpose()
    }

    async fn delete_events_before(
        &self,
        project: Option<&ProjectId>,
        before: DateTime<Utc>,
    ) -> Result<u64> {
        let max_batch = i64::from(self.inner.options.retention_batch_rows.max(1));
        let target = self.inner.options.retention_batch_time;
        let mut batch = max_batch.min(1000);
        // Project by project and kind by kind through `ix_events_project_kind_time` (there
        // is no index on time alone or on (project, time)).
        let projects = match project {
            Some(p) => vec![p.as_str().to_owned()],
            None => projects_with_events(self.reader()).await?,
        };
        let mut total = 0u64;
        for p in &projects {
            for kind in kinds_of(self.reader(), p).await? {
                loop {
                    // Each batch is its own short transaction, so ingest waits at most one
                    // batch.
                    let started = Instant::now();
                    let mut tx = self.begin_write("retention").await?;
                    let deleted = sqlx::query(RETENTION_SQL)
                        .bind(p.as_str())
                        .bind(kind.as_str())
                        .bind(micros(before))
                        .bind(batch)
                        .execute(&mut *tx)
                        .await
                        .db("retention")?
                        .rows_affected();
                    self.commit(tx, "commit retention").await?;
                    total += deleted;
                    if deleted < u64::try_from(batch).unwrap_or(0) {
                        break;
                    }
                    // Keep each transaction near the target duration, whatever the machine.
                    let took = started.elapsed();
                    if took > target {
                        batch = (batch / 2).max(100.min(max_batch));
                    } else if took < target / 4 {
                        batch = (batch * 2).min(max_batch);
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
        if total > 0 {
            // Retention runs on a schedule and turns the data over: a good moment to refresh
            // the planner's statistics (cheap: bounded by `analysis_limit`).
            sqlx::query("PRAGMA optimize")
                .execute(&self.inner.writer)
                .await
                .db("optimize")?;
        }
        Ok(total)
    }

    async fn dirty_hours(&self, limit: usize) -> Result<Vec<DirtyHour>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT hour, project, version FROM rollup_dirty_hours ORDER BY hour, project LIMIT ?",
        )
        .bind(limit)
        .fetch_all(self.reader())
        .await
        .db("read dirty hours")?;
        rows.iter()
            .map(|row| {
                const W: &str = "dirty hour";
                Ok(DirtyHour {
                    project: ProjectId::parse(get::<String>(row, W, "project")?)
                        .map_err(|e| corrupt(W, e))?,
                    hour: from_micros(W, get(row, W, "hour")?)?,
                    version: get_u64(row, W, "version")?,
                })
            })
            .collect()
    }

    async fn clear_dirty_hours(&self, hours: &[DirtyHour]) -> Result<u64> {
        if hours.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write("clear dirty hours").await?;
        let mut cleared = 0;
        for h in hours {
            let Ok(version) = i64::try_from(h.version) else {
                continue; // never stored, so never current
            };
            let gone = sqlx::query(
                "DELETE FROM rollup_dirty_hours WHERE hour = ? AND project = ? AND version = ?",
            )
            .bind(micros(h.hour))
            .bind(h.project.as_str())
            .bind(version)
            .execute(&mut *tx)
            .await
            .db("clear dirty hours")?
            .rows_affected();
            if gone > 0 {
                // The hour keeps the cleared version (see `hour_versions`).
                sqlx::query(
                    "INSERT INTO rollup_hour_versions (project, hour, version) VALUES (?, ?, ?) \
                     ON CONFLICT (project, hour) DO UPDATE \
                     SET version = max(version, excluded.version)",
                )
                .bind(h.project.as_str())
                .bind(micros(h.hour))
                .bind(version)
                .execute(&mut *tx)
                .await
                .db("keep hour version")?;
            }
            cleared += gone;
        }
        self.commit(tx, "commit clear dirty hours").await?;
        Ok(cleared)
    }

    async fn hour_versions(
        &self,
        project: &ProjectId,
        hours: &[DateTime<Utc>],
    ) -> Result<Vec<(DateTime<Utc>, u64)>> {
        let mut out = Vec::with_capacity(hours.len());
        for h in hours {
            let version: Option<i64> = sqlx::query_scalar(
                "SELECT coalesce( \
                     (SELECT version FROM rollup_dirty_hours WHERE hour = ?1 AND project = ?2), \
                     (SELECT version FROM rollup_hour_versions WHERE project = ?2 AND hour = ?1))",
            )
            .bind(micros(*h))
            .bind(project.as_str())
            .fetch_one(self.reader())
            .await
            .db("read hour versions")?;
            if let Some(v) = version.and_then(|v| u64::try_from(v).ok()) {
                out.push((*h, v));
            }
        }
        Ok(out)
    }
}

/// Reads back the raw row count (for tests and diagnostics).
impl SqliteStore {
    /// How many raw events are stored, in all projects.
    pub async fn event_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM analytics_events")
            .fetch_one(self.reader())
            .await
            .db("count events")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use analytics_core::testkit::fixtures::{self, now};

    #[test]
    fn bad_events_are_named_before_anything_is_written() {
        let ok = fixtures::api_request(now(), "/a", 200, 1.0);
        assert!(check_event(&ok).is_ok());
        for e in fixtures::one_of_each_kind(now()) {
            assert!(check_event(&e).is_ok(), "{}", e.kind);
        }
        let mut nan = ok.clone();
        if let Payload::ApiRequest(r) = &mut nan.payload {
            r.latency_ms = f64::NAN;
        }
        assert_eq!(check_event(&nan).unwrap_err().field, "payload.latency_ms");
        let mut rate = ok.clone();
        rate.sample_rate = 0.0;
        assert_eq!(check_event(&rate).unwrap_err().field, "sample_rate");
        let mut mismatch = ok;
        mismatch.kind = EventKind::Order;
        assert_eq!(check_event(&mismatch).unwrap_err().field, "payload");
    }
}
