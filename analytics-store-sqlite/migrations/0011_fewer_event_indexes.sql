-- Every event index costs each insert a b-tree descent and a page update. Two of them only
-- ordered listings that are now read another way:
-- * ix_events_time (time alone) served listings and retention across all projects;
-- * ix_events_project_time served a project's listing over all (or several) kinds.
-- Both now scan ix_events_project_kind_time once per project and kind (a skip scan finds
-- them) and merge newest first, so both are dropped.
DROP INDEX IF EXISTS ix_events_time;
DROP INDEX IF EXISTS ix_events_project_time;
