//! `RollupStore`: idempotent upserts (one `INSERT ... SELECT FROM UNNEST ... ON CONFLICT DO
//! UPDATE` per call, so a call is atomic) and range reads of `analytics_rollups`.

use std::collections::HashMap;

use analytics_core::error::{Error, Result};
use analytics_core::ports::RollupStore;
use analytics_core::rollup::{Dimensions, Rollup, RollupKey, RollupQuery, RollupStats};
use analytics_core::{Granularity, MetricName, ProjectId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder};

use crate::PgStore;
use crate::error::pg_error;
use crate::sql::{col, parse, to_u64};

const WHAT: &str = "rollup";

fn rollup_from_row(row: &PgRow) -> Result<Rollup> {
    let project: String = col(row, "project", WHAT)?;
    let granularity: String = col(row, "granularity", WHAT)?;
    let metric: String = col(row, "metric", WHAT)?;
    let dimensions: String = col(row, "dimensions", WHAT)?;
    Ok(Rollup {
        key: RollupKey {
            project: parse(&project, WHAT, str::parse::<ProjectId>)?,
            granularity: parse(&granularity, WHAT, str::parse::<Granularity>)?,
            bucket_start: col(row, "bucket_start", WHAT)?,
            metric: parse(&metric, WHAT, str::parse::<MetricName>)?,
            dimensions: parse(&dimensions, WHAT, Dimensions::from_canonical)?,
        },
        stats: RollupStats {
            samples: to_u64(col(row, "samples", WHAT)?, WHAT)?,
            count: col(row, "count", WHAT)?,
            sum: col(row, "sum", WHAT)?,
            min: col(row, "min", WHAT)?,
            max: col(row, "max", WHAT)?,
            avg: col(row, "avg", WHAT)?,
            p50: col(row, "p50", WHAT)?,
            p95: col(row, "p95", WHAT)?,
            p99: col(row, "p99", WHAT)?,
        },
        digest: col(row, "digest", WHAT)?,
        computed_at: col(row, "computed_at", WHAT)?,
    })
}

#[async_trait]
impl RollupStore for PgStore {
    async fn upsert_rollups(&self, rows: &[Rollup]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        // One statement cannot update a row twice: the last row of a key wins, as if the
        // rows were written one after the other.
        let mut last: HashMap<&RollupKey, usize> = HashMap::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            last.insert(&r.key, i);
        }
        let mut order: Vec<usize> = last.into_values().collect();
        // Sorted by key: concurrent upserts lock rows in one order and cannot deadlock.
        order.sort_by(|&a, &b| rows[a].key.cmp(&rows[b].key));

        let n = order.len();
        let mut project = Vec::with_capacity(n);
        let mut granularity = Vec::with_capacity(n);
        let mut bucket_start: Vec<DateTime<Utc>> = Vec::with_capacity(n);
        let mut metric = Vec::with_capacity(n);
        let mut dimensions = Vec::with_capacity(n);
        let mut dim_names = Vec::with_capacity(n);
        let mut samples = Vec::with_capacity(n);
        let mut count = Vec::with_capacity(n);
        let mut sum = Vec::with_capacity(n);
        let mut min = Vec::with_capacity(n);
        let mut max = Vec::with_capacity(n);
        let mut avg = Vec::with_capacity(n);
        let mut p50 = Vec::with_capacity(n);
        let mut p95 = Vec::with_capacity(n);
        let mut p99 = Vec::with_capacity(n);
        let mut digest: Vec<&[u8]> = Vec::with_capacity(n);
        let mut computed_at: Vec<DateTime<Utc>> = Vec::with_capacity(n);
        for &i in &order {
            let r = &rows[i];
            let s = &r.stats;
            project.push(r.key.project.as_str());
            granularity.push(r.key.granularity.as_str());
            bucket_start.push(r.key.bucket_start);
            metric.push(r.key.metric.as_str());
            dimensions.push(r.key.dimensions.canonical());
            // Names are [a-z0-9_]: a comma-joined list is unambiguous.
            dim_names.push(r.key.dimensions.names().collect::<Vec<_>>().join(","));
            samples.push(
                i64::try_from(s.samples)
                    .map_err(|_| Error::invalid("stats.samples", "must be below 2^63"))?,
            );
            count.push(s.count);
            sum.push(s.sum);
            min.push(s.min);
            max.push(s.max);
            avg.push(s.avg);
            p50.push(s.p50);
            p95.push(s.p95);
            p99.push(s.p99);
            digest.push(r.digest.as_slice());
            computed_at.push(r.computed_at);
        }
        sqlx::query(
            "INSERT INTO analytics_rollups (project, granularity, bucket_start, metric, \
                 dimensions, dims, dim_names, samples, count, sum, min, max, avg, p50, p95, \
                 p99, digest, computed_at) \
             SELECT project, granularity, bucket_start, metric, dimensions, dimensions::jsonb, \
                 COALESCE(string_to_array(NULLIF(dim_names, ''), ','), '{}'), samples, count, \
                 sum, min, max, avg, p50, p95, p99, digest, computed_at \
             FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], \
                 $6::text[], $7::int8[], $8::float8[], $9::float8[], $10::float8[], \
                 $11::float8[], $12::float8[], $13::float8[], $14::float8[], $15::float8[], \
                 $16::bytea[], $17::timestamptz[]) \
               AS t(project, granularity, bucket_start, metric, dimensions, dim_names, \
                 samples, count, sum, min, max, avg, p50, p95, p99, digest, computed_at) \
             ON CONFLICT (project, granularity, metric, bucket_start, dimensions) DO UPDATE SET \
                 samples = EXCLUDED.samples, count = EXCLUDED.count, sum = EXCLUDED.sum, \
                 min = EXCLUDED.min, max = EXCLUDED.max, avg = EXCLUDED.avg, \
                 p50 = EXCLUDED.p50, p95 = EXCLUDED.p95, p99 = EXCLUDED.p99, \
                 digest = EXCLUDED.digest, computed_at = EXCLUDED.computed_at",
        )
        .bind(project)
        .bind(granularity)
        .bind(bucket_start)
        .bind(metric)
        .bind(dimensions)
        .bind(dim_names)
        .bind(samples)
        .bind(count)
        .bind(sum)
        .bind(min)
        .bind(max)
        .bind(avg)
        .bind(p50)
        .bind(p95)
        .bind(p99)
        .bind(digest)
        .bind(computed_at)
        .execute(self.pool_ref())
        .await
        .map_err(pg_error)?;
        Ok(rows.len() as u64)
    }

    async fn query_rollups(&self, query: &RollupQuery) -> Result<Vec<Rollup>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT project, granularity, bucket_start, metric, dimensions, samples, count, \
                 sum, min, max, avg, p50, p95, p99, digest, computed_at \
             FROM analytics_rollups WHERE project = ",
        );
        q.push_bind(query.project.as_str().to_owned());
        q.push(" AND granularity = ")
            .push_bind(query.granularity.as_str());
        q.push(" AND bucket_start >= ")
            .push_bind(query.range.start());
        q.push(" AND bucket_start < ").push_bind(query.range.end());
        if !query.metrics.is_empty() {
            let metrics: Vec<String> = query
                .metrics
                .iter()
                .map(|m| m.as_str().to_owned())
                .collect();
            q.push(" AND metric = ANY(").push_bind(metrics).push(")");
        }
        if !query.dimensions.is_empty() {
            q.push(" AND dims @> ")
                .push_bind(query.dimensions.canonical())
                .push("::jsonb");
        }
        if let Some(names) = &query.dimension_names {
            // Exact comparison with the stored (sorted) names; the query's may come in any
            // order, like `RollupQuery::matches`.
            let mut names = names.clone();
            names.sort_unstable();
            q.push(" AND dim_names = ")
                .push_bind(names)
                .push("::text[]");
        }
        let rows = q
            .build()
            .fetch_all(self.pool_ref())
            .await
            .map_err(pg_error)?;
        let mut out = rows
            .iter()
            .map(rollup_from_row)
            .collect::<Result<Vec<_>>>()?;
        // Sorted here, not in SQL: `Dimensions` order as maps, which is not the order of
        // their JSON text, and a sort of wide rows (digests) in the server can spill to disk.
        analytics_core::rollup::sort_query_rows(&mut out);
        Ok(out)
    }
}
