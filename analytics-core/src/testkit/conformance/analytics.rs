//! ML and business figures against the truth recomputed from generated raw events, on every
//! store: before the rollup tick (raw events), after it (rollups), and after retention
//! deleted the raw events of the older days.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::business::{BusinessAnalytics, Collections, ProductSort};
use crate::event::{Event, Payload};
use crate::funnel::{FunnelStepKind, Progress, STEPS, event_collections, session_key};
use crate::ml::{MlAnalytics, MlFilter, PriceTable, cents};
use crate::ports::Store;
use crate::rollup::read::RollupReader;
use crate::rollup::scheduler::{RollupScheduler, SchedulerOptions};
use crate::rollup::spec::RollupSpecs;
use crate::testkit::fixtures::{event_at, project, t};
use crate::time::{Granularity, RangePreset, TimeRange, Window};

/// "Now": not on an hour boundary, so windows have partial edges.
fn now() -> DateTime<Utc> {
    t("2024-03-10T10:17:00Z")
}

/// A small deterministic generator (no dependency in the library).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const PROVIDERS: [&str; 4] = ["replicate", "tripo", "huggingface", "gemini"];
const COLLECTION_INPUTS: [Option<&str>; 5] = [
    Some("Black Rose"),
    Some("love_hurts"),
    Some("signature"),
    Some("black-rose"),
    None,
];

/// The price table of the scenario: HuggingFace and Gemini events carry no cost.
fn prices() -> PriceTable {
    PriceTable::new([("huggingface", 0.01), ("gemini", 0.02)])
}

fn ev(v: Value, at: DateTime<Utc>) -> Event {
    let mut v = v;
    v["occurred_at"] = json!(at.to_rfc3339());
    event_at(v, at)
}

/// 35 days of ML jobs (several status events each, some never finishing), orders in two
/// currencies, shopping sessions (out-of-order and repeated steps, sessions known only by
/// user or not at all, sessions spanning midnight) and inventory snapshots.
fn generated() -> Vec<Event> {
    let mut rng = Lcg(42);
    let mut out = Vec::new();
    let start = now() - Duration::days(35);
    let mut at = start;
    let mut job = 0;
    while at < now() - Duration::minutes(30) {
        at += Duration::seconds(rng.below(5400) as i64 + 60);
        job += 1;
        let pipeline = ["3d", "descriptions", "assets"][rng.below(3) as usize];
        let provider = PROVIDERS[rng.below(4) as usize];
        let stage = ["ingestion", "versioning", "approval"][rng.below(3) as usize];
        let terminal = match rng.below(10) {
            0..6 => Some("succeeded"),
            6..8 => Some("failed"),
            8 => Some("cancelled"),
            _ => None,
        };
        let mut statuses = vec!["queued", "running"];
        statuses.extend(terminal);
        for (i, status) in statuses.iter().enumerate() {
            let mut payload = json!({"pipeline": pipeline, "provider": provider,
                "status": status, "duration_ms": (rng.below(90_000) + 100) as f64,
                "job_id": format!("job-{job}")});
            if pipeline == "assets" {
                payload["stage"] = json!(stage);
            }
            if matches!(provider, "replicate" | "tripo") {
                payload["cost_usd"] = json!((rng.below(500) + 1) as f64 / 100.0);
            }
            out.push(ev(
                json!({"kind": "ml_job", "payload": payload}),
                at + Duration::seconds(i as i64 * 20),
            ));
        }
    }
    let mut at = start;
    let mut session = 0;
    while at < now() - Duration::minutes(40) {
        at += Duration::seconds(rng.below(7200) as i64 + 60);
        session += 1;
        let (sid, uid) = match rng.below(10) {
            0 => (None, Some(format!("user-{}", session % 50))),
            1 => (None, None),
            _ => (Some(format!("s-{session}")), None),
        };
        let collection = COLLECTION_INPUTS[rng.below(5) as usize];
        let product = format!("p-{}", rng.below(12));
        // A funnel walk: each step with a chance of stopping, repeating or coming early.
        let mut steps = vec!["page_view"];
        for next in ["product_view", "cart_add", "checkout_start", "order"] {
            if rng.below(10) < 3 {
                break;
            }
            if rng.below(10) == 0 {
                steps.insert(0, next);
            }
            steps.push(next);
            if rng.below(8) == 0 {
                steps.push(next);
            }
        }
        let mut t_step = at;
        for step in steps {
            t_step += Duration::seconds(rng.below(900) as i64 + 1);
            let mut e = match step {
                "order" => {
                    let currency = if rng.below(8) == 0 { "EUR" } else { "USD" };
                    let mut items = Vec::new();
                    let mut amount_cents = 0u64;
                    for line in 0..=rng.below(3) {
                        let q = rng.below(3) + 1;
                        let price = rng.below(20_000) + 99;
                        amount_cents += q * price;
                        let c = if line == 0 {
                            collection
                        } else {
                            COLLECTION_INPUTS[rng.below(5) as usize]
                        };
                        let p = if line == 0 {
                            product.clone()
                        } else {
                            format!("p-{}", rng.below(12))
                        };
                        let mut item = json!({"product_id": p, "quantity": q,
                            "unit_price": price as f64 / 100.0});
                        if let Some(c) = c {
                            item["collection"] = json!(c);
                        }
                        items.push(item);
                    }
                    json!({"kind": "order", "payload": {"order_id": format!("o-{session}"),
                        "amount": amount_cents as f64 / 100.0, "currency": currency,
                        "items": items}})
                }
                "page_view" => json!({"kind": "page_view", "payload": {"path": "/"}}),
                kind => {
                    let mut p = json!({"product_id": product});
                    if let Some(c) = collection {
                        p["collection"] = json!(c);
                    }
                    json!({"kind": kind, "payload": p})
                }
            };
            if let Some(s) = &sid {
                e["session_id"] = json!(s);
            }
            if let Some(u) = &uid {
                e["user_id"] = json!(u);
            }
            out.push(ev(e, t_step));
        }
        if rng.below(6) == 0 {
            out.push(ev(
                json!({"kind": "inventory", "payload": {"product_id": product,
                    "on_hand": rng.below(100)}}),
                at,
            ));
        }
    }
    out.extend(midnight_session());
    out
}

/// A session spanning midnight five days before `now` (rolled into two day rows, and past
/// the 3-day retention), with an early checkout start that does not count and a repeated
/// one that does; and steps without any session key, which count nowhere.
fn midnight_session() -> Vec<Event> {
    let step = |kind: &str, at: &str, session: bool| {
        let mut e = match kind {
            "order" => json!({"kind": "order", "payload": {"order_id": "o-midnight",
                "amount": 12.5, "currency": "USD", "items": [{"product_id": "p-1",
                "collection": "Signature", "quantity": 1, "unit_price": 12.5}]}}),
            "page_view" => json!({"kind": kind, "payload": {"path": "/"}}),
            _ => json!({"kind": kind, "payload": {"product_id": "p-1",
                "collection": "signature"}}),
        };
        if session {
            e["session_id"] = json!("s-midnight");
        }
        ev(e, t(at))
    };
    vec![
        step("checkout_start", "2024-03-04T23:50:00Z", true),
        step("page_view", "2024-03-04T23:55:00Z", true),
        step("product_view", "2024-03-05T00:05:00Z", true),
        step("cart_add", "2024-03-05T00:20:00Z", true),
        step("checkout_start", "2024-03-05T01:10:00Z", true),
        step("order", "2024-03-05T01:30:00Z", true),
        step("page_view", "2024-03-05T01:35:00Z", false),
        step("product_view", "2024-03-05T01:36:00Z", false),
    ]
}

/// Shortens the project's raw retention to 3 days and ticks: the raw events of the older
/// days are deleted.
async fn apply_retention(store: &dyn Store) {
    let shop = project("shop");
    let mut settings = store.get_project(&shop).await.expect("project").settings;
    settings.retention_days = 3;
    store
        .update_project_settings(&shop, &settings)
        .await
        .expect("settings");
    tick(store, 3).await;
    let mut left = 0;
    let mut cursor = None;
    loop {
        let page = store
            .query_events(
                &crate::ports::EventFilter::default(),
                &crate::page::PageRequest::new(1000, cursor).expect("page"),
            )
            .await
            .expect("events");
        left += page.items.len();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(
        left > 0 && left < 1000,
        "retention deleted the older raw events ({left} left)"
    );
}

async fn tick(store: &dyn Store, retention_days: u32) {
    RollupScheduler::new(
        RollupSpecs::defaults(),
        SchedulerOptions {
            default_retention_days: retention_days,
            ..Default::default()
        },
    )
    .tick(store, now())
    .await
    .expect("tick");
}

fn reader(store: &Arc<dyn Store>) -> RollupReader {
    RollupReader::new(store.clone(), Arc::new(RollupSpecs::defaults()))
}

/// The windows checked, and the range the truth is taken over: after retention a window
/// starting before the sealed hours counts its whole first hour (documented).
fn windows(sealed: bool) -> Vec<(Window, TimeRange)> {
    [
        RangePreset::Last24Hours,
        RangePreset::Last7Days,
        RangePreset::Last30Days,
    ]
    .into_iter()
    .map(|p| {
        let w = Window::preset(p, now());
        let r = w.range();
        let effective = if sealed && p.duration() > Duration::days(3) {
            TimeRange::new(Granularity::Hour.bucket_start(r.start()), r.end()).expect("range")
        } else {
            r
        };
        (w, effective)
    })
    .collect()
}

fn in_range(events: &[Event], range: TimeRange) -> impl Iterator<Item = &Event> {
    events.iter().filter(move |e| range.contains(e.occurred_at))
}

async fn check_ml(store: &Arc<dyn Store>, events: &[Event], sealed: bool, when: &str) {
    let ml = MlAnalytics::new(reader(store), prices());
    let shop = project("shop");
    for (w, effective) in windows(sealed) {
        let what = format!("{when} {:?}", w.preset_used());
        for pipeline in [None, Some(crate::event::Pipeline::Assets)] {
            for provider in [None, Some("huggingface"), Some("tripo")] {
                let filter = MlFilter {
                    pipeline,
                    provider: provider.map(str::to_owned),
                    stage: None,
                };
                let got = ml.stats(&shop, w.range(), &filter).await.expect("ml");
                let (mut s, mut f, mut c, mut cost, mut max, mut n) =
                    (0u64, 0u64, 0u64, 0.0, None::<f64>, 0u64);
                let mut durations = Vec::new();
                for e in in_range(events, effective) {
                    let Payload::MlJob(j) = &e.payload else {
                        continue;
                    };
                    if !j.status.is_terminal()
                        || pipeline.is_some_and(|p| p != j.pipeline)
                        || provider.is_some_and(|p| p != j.provider)
                    {
                        continue;
                    }
                    match j.status.as_str() {
                        "succeeded" => s += 1,
                        "failed" => f += 1,
                        _ => c += 1,
                    }
                    cost += j
                        .cost_usd
                        .or_else(|| prices().price(&j.provider))
                        .unwrap_or(0.0);
                    max = Some(max.map_or(j.duration_ms, |m: f64| m.max(j.duration_ms)));
                    durations.push(j.duration_ms);
                    n += 1;
                }
                let ctx = format!("{what} {pipeline:?} {provider:?}");
                assert_eq!(
                    (got.succeeded, got.failed, got.cancelled, got.jobs),
                    (s, f, c, n),
                    "{ctx}: jobs counted once, by their terminal event"
                );
                assert_eq!(got.cost_usd, cents(cost), "{ctx}: cost");
                assert_eq!(got.duration_ms.max, max, "{ctx}: max duration");
                // Percentiles within one rank point of the exact nearest-rank quantile (the
                // digest's accuracy after merging hour, day and week digests).
                durations.sort_by(f64::total_cmp);
                let rank = |q: f64| {
                    let r =
                        ((q * durations.len() as f64).ceil() as usize).clamp(1, durations.len());
                    durations[r - 1]
                };
                for (q, est) in [(0.5, got.duration_ms.p50), (0.95, got.duration_ms.p95)] {
                    match est {
                        None => assert!(durations.is_empty(), "{ctx}: p{q}"),
                        Some(est) => assert!(
                            rank((q - 0.01_f64).max(0.0)) <= est
                                && est <= rank((q + 0.01_f64).min(1.0)),
                            "{ctx}: p{q} = {est}, exact {}",
                            rank(q)
                        ),
                    }
                }
                let rate = (s + f > 0).then(|| s as f64 / (s + f) as f64);
                assert_eq!(got.success_rate, rate, "{ctx}: success rate");
                let source = match provider {
                    Some("huggingface") if n > 0 => "price_table",
                    Some("tripo") if n > 0 => "events",
                    None if n > 0 => "mixed",
                    _ => "none",
                };
                assert_eq!(got.cost_source.as_str(), source, "{ctx}: cost source");
            }
        }
        let stages = ml.by_stage(&shop, w.range(), None).await.expect("stages");
        let total: u64 = stages.iter().map(|(_, s)| s.jobs).sum();
        let assets = ml
            .stats(
                &shop,
                w.range(),
                &MlFilter {
                    pipeline: Some(crate::event::Pipeline::Assets),
                    ..Default::default()
                },
            )
            .await
            .expect("assets");
        assert_eq!(
            total, assets.jobs,
            "{what}: stages partition the assets jobs"
        );
    }
}

/// The truth of one currency's sales in `range`.
#[derive(Default, Debug)]
struct Sales {
    revenue_cents: i64,
    orders: u64,
    units: u64,
    by_collection: BTreeMap<String, (i64, u64, u64)>,
    by_product: BTreeMap<String, (i64, u64, u64)>,
}

fn sales(events: &[Event], range: TimeRange, currency: &str) -> Sales {
    let mut out = Sales::default();
    for e in in_range(events, range) {
        let Payload::Order(o) = &e.payload else {
            continue;
        };
        if o.currency != currency {
            continue;
        }
        out.revenue_cents += (o.amount * 100.0).round() as i64;
        out.orders += 1;
        let mut cols = BTreeSet::new();
        let mut prods = BTreeSet::new();
        for l in &o.items {
            let line_cents = (f64::from(l.quantity) * l.unit_price * 100.0).round() as i64;
            out.units += u64::from(l.quantity);
            if let Some(c) = &l.collection {
                let x = out.by_collection.entry(c.clone()).or_default();
                x.0 += line_cents;
                x.1 += u64::from(l.quantity);
                if cols.insert(c.clone()) {
                    x.2 += 1;
                }
            }
            let x = out.by_product.entry(l.product_id.clone()).or_default();
            x.0 += line_cents;
            x.1 += u64::from(l.quantity);
            if prods.insert(l.product_id.clone()) {
                x.2 += 1;
            }
        }
    }
    out
}

fn money(c: i64) -> f64 {
    c as f64 / 100.0
}

/// The ordered per-session funnel recomputed from the raw events.
fn funnel_truth(events: &[Event], range: TimeRange, collection: Option<&str>) -> [u64; STEPS] {
    let mut sessions: HashMap<&str, Vec<(DateTime<Utc>, FunnelStepKind)>> = HashMap::new();
    for e in in_range(events, range) {
        let (Some(step), Some(key)) = (FunnelStepKind::of(&e.kind), session_key(e)) else {
            continue;
        };
        let cols = event_collections(e);
        if let Some(c) = collection
            && !cols.is_empty()
            && !cols.contains(c)
        {
            continue;
        }
        sessions.entry(key).or_default().push((e.occurred_at, step));
    }
    let mut counts = [0u64; STEPS];
    for steps in sessions.values_mut() {
        steps.sort();
        let reached = Progress::of_steps(steps.iter().map(|(_, s)| *s)).reached();
        for c in counts.iter_mut().take(usize::from(reached)) {
            *c += 1;
        }
    }
    counts
}

async fn check_business(store: &Arc<dyn Store>, events: &[Event], sealed: bool, when: &str) {
    let biz = BusinessAnalytics::new(reader(store), Collections::default());
    let shop = project("shop");
    for (w, effective) in windows(sealed) {
        let what = format!("{when} {:?}", w.preset_used());
        for currency in ["USD", "EUR"] {
            let want = sales(events, effective, currency);
            let got = biz
                .overview(&shop, w.range(), currency)
                .await
                .expect("overview");
            assert_eq!(got.revenue, money(want.revenue_cents), "{what} {currency}");
            assert_eq!(got.orders, want.orders, "{what} {currency}");
            assert_eq!(got.units, want.units, "{what} {currency}");
            let aov =
                (want.orders > 0).then(|| cents(money(want.revenue_cents) / want.orders as f64));
            assert_eq!(got.aov, aov, "{what} {currency}: aov");
            let other = if currency == "USD" { "EUR" } else { "USD" };
            let want_other = sales(events, effective, other);
            let listed: Vec<_> = got
                .other_currencies
                .iter()
                .map(|c| (c.currency.as_str(), c.orders, c.revenue))
                .collect();
            if want_other.orders > 0 {
                assert_eq!(
                    listed,
                    [(other, want_other.orders, money(want_other.revenue_cents))],
                    "{what} {currency}: other currencies"
                );
            }

            let cols = biz
                .collections_figures(&shop, w.range(), currency)
                .await
                .expect("collections");
            for c in &cols {
                let (r, u, o) = want
                    .by_collection
                    .get(&c.collection)
                    .copied()
                    .unwrap_or_default();
                assert_eq!(
                    (c.revenue, c.units, c.orders),
                    (money(r), u, o),
                    "{what} {currency} {}",
                    c.collection
                );
            }
            let slugs: Vec<&str> = cols.iter().map(|c| c.collection.as_str()).collect();
            assert_eq!(slugs, ["black-rose", "love-hurts", "signature"], "{what}");

            let products = biz
                .products(&shop, w.range(), currency, ProductSort::Revenue, 500)
                .await
                .expect("products");
            for p in &products {
                let (r, u, o) = want
                    .by_product
                    .get(&p.product_id)
                    .copied()
                    .unwrap_or_default();
                assert_eq!(
                    (p.revenue, p.units, p.orders),
                    (money(r), u, o),
                    "{what} {currency} {}",
                    p.product_id
                );
                let count = |kind: &str| {
                    in_range(events, effective)
                        .filter(|e| e.kind.as_str() == kind)
                        .filter(|e| {
                            matches!(&e.payload, Payload::Funnel(s)
                                if s.product_id.as_deref() == Some(p.product_id.as_str()))
                        })
                        .count() as u64
                };
                assert_eq!(p.views, count("product_view"), "{what} views");
                assert_eq!(p.cart_adds, count("cart_add"), "{what} cart adds");
                let conv = (p.views > 0).then(|| o as f64 / p.views as f64);
                assert_eq!(p.conversion_rate, conv, "{what} conversion");
            }
            assert!(
                products.windows(2).all(|x| x[0].revenue >= x[1].revenue),
                "{what}: by revenue"
            );
        }
        for collection in [None, Some("black-rose"), Some("signature")] {
            let got = biz
                .funnel(&shop, w.range(), collection)
                .await
                .expect("funnel");
            let counts: Vec<u64> = got.iter().map(|s| s.sessions).collect();
            assert_eq!(
                counts,
                funnel_truth(events, effective, collection).to_vec(),
                "{what} funnel {collection:?}"
            );
        }
    }
}

/// Business figures (revenue, orders, AOV, units per currency, collection and product;
/// views, cart adds, conversion; the ordered session funnel) equal the recomputation from
/// raw events before and after the rollup tick and after retention.
pub async fn business_figures_equal_the_raw_truth(store: Arc<dyn Store>) {
    let midnight = midnight_session();
    let whole =
        TimeRange::new(t("2024-03-04T00:00:00Z"), t("2024-03-06T00:00:00Z")).expect("range");
    assert_eq!(
        funnel_truth(&midnight, whole, None),
        [1; STEPS],
        "the scenario is complete"
    );
    let events = generated();
    for chunk in events.chunks(500) {
        store.write_batch(chunk).await.expect("write");
    }
    check_business(&store, &events, false, "raw").await;
    tick(store.as_ref(), 60).await;
    check_business(&store, &events, false, "rolled").await;
    apply_retention(store.as_ref()).await;
    check_business(&store, &events, true, "after retention").await;
}

/// ML figures (jobs counted once by their terminal event, success rate, event and
/// price-table costs, durations) equal the recomputation from raw events before and after
/// the rollup tick and after retention.
pub async fn ml_figures_equal_the_raw_truth(store: Arc<dyn Store>) {
    let events = generated();
    for chunk in events.chunks(500) {
        store.write_batch(chunk).await.expect("write");
    }
    check_ml(&store, &events, false, "raw").await;
    tick(store.as_ref(), 60).await;
    check_ml(&store, &events, false, "rolled").await;
    apply_retention(store.as_ref()).await;
    check_ml(&store, &events, true, "after retention").await;
}
