//! Test support shared by every store crate: the store conformance suite, fixtures, and
//! access to the real services (PostgreSQL, Redis) that the test script starts.

pub mod conformance;
pub mod fixtures;
pub mod health;
pub mod services;

/// Expands to one `#[tokio::test]` per conformance case, each calling `$make().await` for a
/// fresh, empty store (anything that derefs to `dyn Store`, e.g. `Box<dyn Store>` or
/// `Arc<dyn Store>`).
///
/// ```text
/// async fn fresh() -> Box<dyn analytics_core::ports::Store> { Box::new(MemoryStore::new()) }
/// analytics_core::store_conformance_tests!(fresh);
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@cases $make;
            events_are_inserted_once_and_resent_events_are_duplicates,
            duplicates_within_one_batch_are_reported,
            event_ids_are_unique_per_project,
            an_empty_batch_is_fine,
            events_round_trip_exactly,
            event_filters_select_exactly_the_matching_events,
            pages_never_skip_or_repeat_an_event,
            pages_stay_stable_while_newer_events_arrive,
            listings_span_many_days_newest_first,
            retention_deletes_only_older_events_of_the_project,
            inserts_mark_their_hour_dirty_until_cleared_at_that_version,
            hour_versions_change_on_insert_and_survive_clears,
            rollup_upserts_replace_by_key,
            rollup_queries_filter_and_order,
            alert_configs_are_versioned_and_audited,
            alert_config_engine_settings_round_trip,
            alert_config_names_are_unique_per_project,
            config_imports_are_atomic_and_audited,
            alert_configs_list_by_project_and_enabled,
            one_unresolved_alert_per_config,
            acknowledged_alerts_leave_the_active_list,
            alert_listings_filter_and_page,
            last_fired_and_notification_records,
            alert_steps_commit_transitions_outbox_and_state_together,
            outbox_enqueue_is_idempotent,
            outbox_entries_are_listed_per_alert,
            outbox_claims_lease_entries_and_critical_go_first,
            outbox_attempts_move_entries_to_sent_pending_or_failed,
            in_app_notifications_list_and_mark_read_per_user,
            preferences_are_replaced_whole,
            projects_are_unique_and_settings_update,
            api_keys_are_found_by_hash_and_revoked_once,
            api_key_use_is_recorded,
            deleting_a_project_removes_its_data_only,
            watermarks_round_trip,
            job_locks_are_exclusive_until_dropped,
            ping_answers,
        );
        $crate::store_conformance_tests!(@shared_cases $make;
            business_figures_equal_the_raw_truth,
            ml_figures_equal_the_raw_truth,
        );
    };
    (@shared_cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store: ::std::sync::Arc<dyn $crate::ports::Store> =
                    ::std::sync::Arc::from($make().await);
                $crate::testkit::conformance::$case(store).await;
            }
        )*
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $make().await;
                $crate::testkit::conformance::$case(&*store).await;
            }
        )*
    };
}

#[cfg(test)]
mod memory_conformance {
    use crate::memory::MemoryStore;
    use crate::ports::Store;

    async fn fresh() -> Box<dyn Store> {
        Box::new(MemoryStore::new())
    }

    crate::store_conformance_tests!(fresh);
}
