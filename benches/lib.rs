//! Criterion benchmarks of the rollup math live in `benches/` of this crate; this library
//! holds the data generators they share.
