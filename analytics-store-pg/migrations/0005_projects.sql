-- Projects (tenants) and their API keys, kept only as SHA-256 hashes.

CREATE TABLE projects (
    id             text COLLATE "C" PRIMARY KEY,
    name           text NOT NULL,
    retention_days integer NOT NULL,
    sample_rate    double precision NOT NULL,
    created_at     timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY,
    project    text COLLATE "C" NOT NULL REFERENCES projects (id),
    name       text NOT NULL,
    prefix     text NOT NULL,
    hash       text NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    CONSTRAINT api_keys_hash_key UNIQUE (hash)
);
CREATE INDEX api_keys_project_idx ON api_keys (project, created_at, id);
