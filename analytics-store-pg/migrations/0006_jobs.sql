-- Background-job watermarks. (The singleton-job lock is a session advisory lock: no table.)
CREATE TABLE job_watermarks (
    job        text PRIMARY KEY,
    at         timestamptz NOT NULL
);
