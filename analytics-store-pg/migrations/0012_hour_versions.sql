-- The version each hour's dirty marker had when it was last cleared, so an hour keeps a
-- version after it is rolled up: readers cache an hour's raw events on it (a new insert
-- gives the hour a new marker with a version never used before).
CREATE TABLE rollup_hour_versions (
    project text COLLATE "C" NOT NULL,
    hour    timestamptz NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (project, hour)
);
