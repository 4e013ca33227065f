//! The day partitions of `analytics_events`: creating them on demand for writes, and
//! retention (drop whole days, delete rows of partly covered days and of one project).
//!
//! All partition DDL of all processes is serialised by one transaction-level advisory lock
//! and bounded by `ddl_lock_timeout` (DDL on a partition takes an ACCESS EXCLUSIVE lock on
//! `analytics_events`; a bounded wait keeps a long dashboard query from stalling every
//! writer queued behind the DDL).
//!
//! Retention of a whole day: detach the partition and rename it
//! (`analytics_events_retired_*`) in one short transaction, so no write reaches it any more
//! and the day's name is free; then delete its dedup keys (joined on their primary key, in
//! chunks of pages), count it and drop it, holding no lock on the parent. A retired table
//! left behind by a crash is finished by the next run. Rows of a partly covered day, and of
//! one project, are deleted in chunks together with their dedup keys, each chunk one
//! statement.

use std::collections::BTreeSet;

use analytics_core::ProjectId;
use analytics_core::error::Result;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use sqlx::{AssertSqlSafe, Postgres, Transaction};

use crate::PgStore;
use crate::error::pg_error;
use crate::sql::{ADVISORY_NAMESPACE, PARTITION_DDL_KEY};

const PREFIX: &str = "analytics_events_p";
const RETIRED_PREFIX: &str = "analytics_events_retired_";

/// The UTC day an instant falls in.
pub(crate) fn day_of(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

/// Most partitions created in one DDL transaction (each holds locks on its new tables and
/// indexes until commit).
const CREATE_CHUNK: usize = 32;

/// The partition holding `day`: `analytics_events_pYYYYMMDD` for the years 1 to 9999, and
/// `analytics_events_py<year>_MMDD` outside them (the astronomical year: 0 is 1 BC, -1 is
/// 2 BC; 10000 and later), so that every day has a name of its own. (Ingest never accepts
/// such days, but a store must not send a row to another day's partition.)
pub(crate) fn partition_name(day: NaiveDate) -> String {
    if (1..=9999).contains(&day.year()) {
        format!(
            "{PREFIX}{:04}{:02}{:02}",
            day.year(),
            day.month(),
            day.day()
        )
    } else {
        format!("{PREFIX}y{}_{:02}{:02}", day.year(), day.month(), day.day())
    }
}

/// The day of a partition name made by [`partition_name`].
pub(crate) fn parse_partition_name(name: &str) -> Option<NaiveDate> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match rest.strip_prefix('y') {
        None if digits(rest, 8) => NaiveDate::parse_from_str(rest, "%Y%m%d").ok(),
        None => None,
        Some(rest) => {
            let (year, month_day) = rest.split_once('_')?;
            let y: i32 = year.parse().ok()?;
            // Only the one spelling `partition_name` makes.
            if !digits(month_day, 4) || y.to_string() != year || (1..=9999).contains(&y) {
                return None;
            }
            NaiveDate::from_ymd_opt(
                y,
                month_day[..2].parse().ok()?,
                month_day[2..].parse().ok()?,
            )
        }
    }
}

/// Start of `day` as a PostgreSQL timestamptz literal (years before 1 AD in PostgreSQL's
/// `BC` notation: chrono's year 0 is 1 BC).
pub(crate) fn bound_literal(day: NaiveDate) -> String {
    let (year, era) = if day.year() <= 0 {
        (1 - day.year(), " BC")
    } else {
        (day.year(), "")
    };
    format!(
        "'{year:04}-{:02}-{:02} 00:00:00+00{era}'",
        day.month(),
        day.day()
    )
}

pub(crate) fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

pub(crate) fn day_end(day: NaiveDate) -> DateTime<Utc> {
    day_start(day) + Duration::days(1)
}

impl PgStore {
    /// Makes sure a partition exists for each day in `days`.
    pub(crate) async fn ensure_partitions(&self, days: &BTreeSet<NaiveDate>) -> Result<()> {
        let wanted: Vec<NaiveDate> = {
            let known = self.partition_cache();
            days.iter()
                .filter(|d| !known.contains(d))
                .copied()
                .collect()
        };
        if wanted.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = wanted.iter().map(|d| partition_name(*d)).collect();
        let attached: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'analytics_events'::regclass AND c.relname = ANY($1)",
        )
        .bind(&names)
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        let missing: Vec<NaiveDate> = wanted
            .iter()
            .zip(&names)
            .filter(|(_, n)| !attached.contains(n))
            .map(|(d, _)| *d)
            .collect();
        for days in missing.chunks(CREATE_CHUNK) {
            let mut tx = self.ddl_transaction().await?;
            for day in days {
                let sql = format!(
                    "CREATE TABLE IF NOT EXISTS \"{}\" PARTITION OF analytics_events \
                     FOR VALUES FROM ({}) TO ({})",
                    partition_name(*day),
                    bound_literal(*day),
                    bound_literal(day.succ_opt().unwrap_or(*day)),
                );
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_error)?;
            }
            tx.commit().await.map_err(pg_error)?;
            tracing::info!(days = ?days, "created event partitions");
        }
        self.partition_cache().extend(wanted);
        Ok(())
    }

    /// Forgets which partitions exist (after one was found missing).
    pub(crate) fn forget_partitions(&self) {
        self.partition_cache().clear();
    }

    fn partition_cache(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<NaiveDate>> {
        // The set is only a cache: a poisoned one is still a valid (possibly stale) cache.
        self.inner
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A transaction holding the partition-DDL advisory lock, with a bounded lock wait.
    async fn ddl_transaction(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool_ref().begin().await.map_err(pg_error)?;
        let timeout = format!(
            "{}ms",
            self.inner.options.ddl_lock_timeout.as_millis().max(1)
        );
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(timeout)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(ADVISORY_NAMESPACE)
            .bind(PARTITION_DDL_KEY)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        Ok(tx)
    }

    /// The attached partitions and their days, oldest first.
    pub(crate) async fn attached_partitions(&self) -> Result<Vec<(String, NaiveDate)>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'analytics_events'::regclass",
        )
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        let mut parts: Vec<(String, NaiveDate)> = names
            .into_iter()
            .filter_map(|n| parse_partition_name(&n).map(|d| (n, d)))
            .collect();
        parts.sort_by_key(|(_, d)| *d);
        Ok(parts)
    }

    /// Retention: see [`analytics_core::ports::EventStore::delete_events_before`].
    pub(crate) async fn delete_events(
        &self,
        project: Option<&ProjectId>,
        before: DateTime<Utc>,
    ) -> Result<u64> {
        let parts = self.attached_partitions().await?;
        let mut deleted = 0;
        match project {
            None => {
                for (name, day) in parts.iter().filter(|(_, d)| day_end(*d) <= before) {
                    self.retire_partition(name, *day).await?;
                }
                deleted += self.drop_retired_partitions().await?;
                for (name, _) in parts
                    .iter()
                    .filter(|(_, d)| day_start(*d) < before && before < day_end(*d))
                {
                    for p in self.projects_in(name).await? {
                        deleted += self.delete_rows(name, &p, before).await?;
                    }
                }
            }
            Some(p) => {
                for (name, _) in parts.iter().filter(|(_, d)| day_start(*d) < before) {
                    deleted += self.delete_rows(name, p.as_str(), before).await?;
                }
            }
        }
        Ok(deleted)
    }

    /// Detaches a partition and renames it out of the way in one short transaction: from
    /// then on no write reaches it, and the day's name is free to be created again.
    async fn retire_partition(&self, name: &str, day: NaiveDate) -> Result<()> {
        let mut tx = self.ddl_transaction().await?;
        let retired = format!(
            "{RETIRED_PREFIX}{}_{}",
            name.trim_start_matches("analytics_events_"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        // Checked again under the lock: another replica may have retired it already.
        let attached: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'analytics_events'::regclass AND c.relname = $1)",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(pg_error)?;
        if attached {
            for sql in [
                format!("ALTER TABLE analytics_events DETACH PARTITION \"{name}\""),
                format!("ALTER TABLE \"{name}\" RENAME TO \"{retired}\""),
            ] {
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_error)?;
            }
        }
        tx.commit().await.map_err(pg_error)?;
        self.partition_cache().remove(&day);
        Ok(())
    }

    /// Finishes every retired partition (this run's and any left by a crash): deletes its
    /// dedup keys, counts and drops it.
    async fn drop_retired_partitions(&self) -> Result<u64> {
        let retired: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c \
             WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::text::regnamespace \
               AND starts_with(c.relname::text, $1) \
             ORDER BY 1",
        )
        .bind(RETIRED_PREFIX)
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        let mut deleted = 0u64;
        for name in retired {
            // Nothing writes to a retired table, so the count and the keys are stable.
            let count: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT CASE WHEN to_regclass($1) IS NULL THEN NULL \
                    ELSE (SELECT count(*) FROM \"{name}\") END"
            )))
            .bind(format!("\"{name}\""))
            .fetch_one(self.pool_ref())
            .await
            .map_err(pg_error)?;
            let Some(count) = count else {
                continue; // dropped meanwhile by another replica
            };
            self.delete_keys_of(&name).await?;
            let mut tx = self.ddl_transaction().await?;
            sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS \"{name}\"")))
                .execute(&mut *tx)
                .await
                .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            deleted += u64::try_from(count).unwrap_or(0);
        }
        Ok(deleted)
    }

    /// Deletes the dedup keys of every row of a retired table, a range of its pages at a
    /// time (a TID range scan reads just those pages).
    async fn delete_keys_of(&self, table: &str) -> Result<()> {
        let pages: i64 = sqlx::query_scalar(
            "SELECT (pg_relation_size(to_regclass($1)) / current_setting('block_size')::int8)",
        )
        .bind(format!("\"{table}\""))
        .fetch_one(self.pool_ref())
        .await
        .map_err(pg_error)?;
        // About the chunk's row count: ~10 event rows per 8 KiB page.
        let step = i64::try_from(self.inner.options.delete_chunk_rows / 10)
            .unwrap_or(1000)
            .max(1);
        // One primary-key probe per row (the correlated sub-select), never a hash join
        // that would read the whole key table for every chunk.
        let sql = format!(
            "DELETE FROM analytics_event_ids i WHERE i.ctid = ANY(ARRAY( \
                 SELECT (SELECT k.ctid FROM analytics_event_ids k \
                         WHERE k.project = r.project AND k.id = r.id) \
                 FROM \"{table}\" r \
                 WHERE r.ctid >= format('(%s,0)', $1::int8)::tid \
                   AND r.ctid < format('(%s,0)', $2::int8)::tid))"
        );
        let mut first = 0;
        while first < pages {
            sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(first)
                .bind(first + step)
                .execute(self.pool_ref())
                .await
                .map_err(pg_error)?;
            first += step;
        }
        Ok(())
    }

    /// The distinct projects of a table whose primary key starts with `project`, by a loose
    /// index scan (one index probe per project, not a scan of every row).
    async fn projects_in(&self, table: &str) -> Result<Vec<String>> {
        let sql = format!(
            "WITH RECURSIVE pr(project) AS ( \
                (SELECT project FROM \"{table}\" ORDER BY project LIMIT 1) \
                UNION ALL \
                SELECT (SELECT t.project FROM \"{table}\" t WHERE t.project > pr.project \
                        ORDER BY t.project LIMIT 1) \
                FROM pr WHERE pr.project IS NOT NULL) \
             SELECT project FROM pr WHERE project IS NOT NULL"
        );
        sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_all(self.pool_ref())
            .await
            .map_err(pg_error)
    }

    /// Deletes one project's events before `before` from one partition, with their dedup
    /// keys, in chunks (each one statement, so no long transactions and nothing half done).
    async fn delete_rows(
        &self,
        partition: &str,
        project: &str,
        before: DateTime<Utc>,
    ) -> Result<u64> {
        let chunk = i64::try_from(self.inner.options.delete_chunk_rows.max(1)).unwrap_or(10_000);
        let sql = format!(
            "WITH gone AS ( \
                 DELETE FROM \"{partition}\" WHERE ctid = ANY(ARRAY( \
                     SELECT ctid FROM \"{partition}\" \
                     WHERE project = $1 AND occurred_at < $2 LIMIT $3)) \
                 RETURNING project, id), \
             keys AS ( \
                 DELETE FROM analytics_event_ids i USING gone \
                 WHERE i.project = gone.project AND i.id = gone.id) \
             SELECT count(*) FROM gone"
        );
        let mut deleted = 0u64;
        loop {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
                .bind(project)
                .bind(before)
                .bind(chunk)
                .fetch_one(self.pool_ref())
                .await
                .map_err(pg_error)?;
            deleted += u64::try_from(n).unwrap_or(0);
            if n < chunk {
                return Ok(deleted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn partition_names_round_trip() {
        for day in [
            d(2024, 3, 10),
            d(1970, 1, 1),
            d(9999, 12, 31),
            d(2024, 2, 29),
        ] {
            let name = partition_name(day);
            assert_eq!(parse_partition_name(&name), Some(day), "{name}");
            assert!(name.len() <= 63, "a PostgreSQL identifier");
        }
        assert_eq!(partition_name(d(2024, 3, 10)), "analytics_events_p20240310");
        for bad in [
            "analytics_events_p2024031",
            "analytics_events_p2024x310",
            "analytics_events_p20241310",
            "analytics_events_retired_p20240310_abcd",
            "other",
        ] {
            assert_eq!(parse_partition_name(bad), None, "{bad}");
        }
    }

    /// Years <= 0 all used to be named `..._p0000MMDD`: an event of 2 BC created the name,
    /// one of 1 BC found it taken (by the wrong day) and failed, poisoning its whole batch.
    #[test]
    fn every_day_of_every_year_has_its_own_partition_name() {
        let days = [
            d(-262_000, 1, 1),
            d(-1, 12, 31),
            d(-1, 1, 1),
            d(0, 12, 31),
            d(0, 1, 1),
            d(1, 1, 1),
            d(1, 12, 31),
            d(999, 1, 1),
            d(9999, 12, 31),
            d(10_000, 1, 1),
            d(262_000, 1, 1),
        ];
        let mut names = std::collections::HashSet::new();
        for day in days {
            let name = partition_name(day);
            assert!(names.insert(name.clone()), "{name} named twice");
            assert_eq!(parse_partition_name(&name), Some(day), "{name}");
            assert!(name.len() <= 63, "a PostgreSQL identifier: {name}");
        }
        assert_eq!(partition_name(d(0, 1, 1)), "analytics_events_py0_0101");
        assert_eq!(partition_name(d(-1, 12, 31)), "analytics_events_py-1_1231");
        assert_eq!(
            partition_name(d(10_000, 1, 1)),
            "analytics_events_py10000_0101"
        );
        // Every name parses to the day whose partition it is, and only its own spelling.
        for other in [
            "analytics_events_py2024_0310",
            "analytics_events_py-01_0101",
            "analytics_events_py+5_0101",
            "analytics_events_py0_101",
            "analytics_events_py0_1301",
            "analytics_events_py0",
        ] {
            assert_eq!(parse_partition_name(other), None, "{other}");
        }
    }

    #[test]
    fn bounds_are_utc_literals() {
        assert_eq!(bound_literal(d(2024, 3, 10)), "'2024-03-10 00:00:00+00'");
        assert_eq!(bound_literal(d(1, 1, 1)), "'0001-01-01 00:00:00+00'");
        assert_eq!(bound_literal(d(0, 6, 1)), "'0001-06-01 00:00:00+00 BC'");
        assert_eq!(bound_literal(d(10000, 1, 1)), "'10000-01-01 00:00:00+00'");
        assert_eq!(
            day_end(d(2024, 2, 28)),
            day_start(d(2024, 2, 29)),
            "days are consecutive"
        );
        assert_eq!(
            day_of(day_end(d(2024, 2, 29)) - Duration::microseconds(1)),
            d(2024, 2, 29)
        );
    }
}
