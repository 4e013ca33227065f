//! `RollupStore` on SQLite: idempotent multi-row upserts keyed like `RollupKey`, and range
//! reads served by the primary key.

use analytics_core::ports::RollupStore;
use analytics_core::rollup::{Dimensions, Rollup, RollupKey, RollupQuery, RollupStats};
use analytics_core::{MetricName, ProjectId, Result};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;

use crate::codec::{
    MAX_BIND_PARAMS, chunk_sizes, get, get_parsed, get_time, get_u64, json, micros, to_i64,
    value_rows,
};
use crate::error::{DbResultExt, corrupt};
use crate::sql::{Arg, Where, query_with};
use crate::store::SqliteStore;

const ROLLUP_COLUMNS: usize = 17;

fn upsert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO analytics_rollups (project, granularity, bucket_start, metric, dimensions, \
         dimension_names, samples, count, sum, min, max, avg, p50, p95, p99, digest, computed_at) \
         VALUES {} ON CONFLICT (project, granularity, bucket_start, metric, dimensions) DO UPDATE \
         SET dimension_names = excluded.dimension_names, samples = excluded.samples, \
         count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max, \
         avg = excluded.avg, p50 = excluded.p50, p95 = excluded.p95, p99 = excluded.p99, \
         digest = excluded.digest, computed_at = excluded.computed_at",
        value_rows(rows, ROLLUP_COLUMNS)
    )
}

/// The JSON array of a set's dimension names, in order: what `dimension_names` holds.
fn names_json<'a>(names: impl Iterator<Item = &'a str>) -> Result<String> {
    json("dimension names", &names.collect::<Vec<_>>())
}

fn decode_rollup(row: &SqliteRow) -> Result<Rollup> {
    const W: &str = "rollup";
    let dims: String = get(row, W, "dimensions")?;
    Ok(Rollup {
        key: RollupKey {
            project: ProjectId::parse(get::<String>(row, W, "project")?)
                .map_err(|e| corrupt(W, e))?,
            granularity: get_parsed(row, W, "granularity")?,
            bucket_start: get_time(row, W, "bucket_start")?,
            metric: MetricName::parse(get::<String>(row, W, "metric")?)
                .map_err(|e| corrupt(W, e))?,
            dimensions: Dimensions::from_canonical(&dims).map_err(|e| corrupt(W, e))?,
        },
        stats: RollupStats {
            samples: get_u64(row, W, "samples")?,
            count: get(row, W, "count")?,
            sum: get(row, W, "sum")?,
            min: get(row, W, "min")?,
            max: get(row, W, "max")?,
            avg: get(row, W, "avg")?,
            p50: get(row, W, "p50")?,
            p95: get(row, W, "p95")?,
            p99: get(row, W, "p99")?,
        },
        digest: get(row, W, "digest")?,
        computed_at: get_time(row, W, "computed_at")?,
    })
}

#[async_trait]
impl RollupStore for SqliteStore {
    async fn upsert_rollups(&self, rows: &[Rollup]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut encoded = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let samples = to_i64(&format!("rows[{i}].stats.samples"), r.stats.samples)?;
            encoded.push((
                r,
                samples,
                r.key.dimensions.canonical(),
                names_json(r.key.dimensions.names())?,
            ));
        }
        let mut tx = self.begin_write("upsert rollups").await?;
        let mut it = encoded.into_iter();
        let max = MAX_BIND_PARAMS / ROLLUP_COLUMNS;
        for size in chunk_sizes(rows.len(), 256.min(max)) {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(upsert_sql(size)));
            for (r, samples, dims, names) in it.by_ref().take(size) {
                let s = &r.stats;
                q = q
                    .bind(r.key.project.as_str())
                    .bind(r.key.granularity.as_str())
                    .bind(micros(r.key.bucket_start))
                    .bind(r.key.metric.as_str())
                    .bind(dims)
                    .bind(names)
                    .bind(samples)
                    .bind(s.count)
                    .bind(s.sum)
                    .bind(s.min)
                    .bind(s.max)
                    .bind(s.avg)
                    .bind(s.p50)
                    .bind(s.p95)
                    .bind(s.p99)
                    .bind(r.digest.as_slice())
                    .bind(micros(r.computed_at));
            }
            q.execute(&mut *tx).await.db("upsert rollups")?;
        }
        self.commit(tx, "commit rollups").await?;
        Ok(rows.len() as u64)
    }

    async fn query_rollups(&self, query: &RollupQuery) -> Result<Vec<Rollup>> {
        let mut w = Where::default();
        w.and(
            "project = ? AND granularity = ? AND bucket_start >= ? AND bucket_start < ?",
            [
                Arg::Text(query.project.as_str().to_owned()),
                Arg::Text(query.granularity.as_str().to_owned()),
                Arg::Int(micros(query.range.start())),
                Arg::Int(micros(query.range.end())),
            ],
        );
        w.any_of(
            "metric",
            query
                .metrics
                .iter()
                .map(|m| Arg::Text(m.as_str().to_owned())),
        );
        if let Some(names) = &query.dimension_names {
            // Stored names are sorted; the query's may come in any order.
            let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
            names.sort_unstable();
            w.and(
                "dimension_names = ?",
                [Arg::Text(names_json(names.into_iter())?)],
            );
        }
        for (name, value) in query.dimensions.iter() {
            // Names are `[a-z][a-z0-9_]*` (checked by `Dimensions`), so the path is safe;
            // it is bound anyway.
            w.and(
                "json_extract(dimensions, ?) = ?",
                [
                    Arg::Text(format!("$.\"{name}\"")),
                    Arg::Text(value.to_owned()),
                ],
            );
        }
        let sql = format!(
            "SELECT project, granularity, bucket_start, metric, dimensions, samples, count, sum, \
             min, max, avg, p50, p95, p99, digest, computed_at FROM analytics_rollups{} \
             ORDER BY bucket_start, metric",
            w.sql()
        );
        let rows = query_with(sql, w.arguments([])?)
            .fetch_all(self.reader())
            .await
            .db("query rollups")?;
        let mut out = rows
            .iter()
            .map(decode_rollup)
            .filter(|r| r.as_ref().map_or(true, |r| query.matches(&r.key)))
            .collect::<Result<Vec<_>>>()?;
        // The canonical JSON text of the dimensions does not sort like `Dimensions` (a
        // `BTreeMap`), so the last key is ordered here; the input is already nearly sorted.
        analytics_core::rollup::sort_query_rows(&mut out);
        Ok(out)
    }
}
