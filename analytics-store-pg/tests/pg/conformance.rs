//! The store conformance suite of `analytics-core`, run against `PgStore`.

use crate::support::fresh;

analytics_core::store_conformance_tests!(fresh);
