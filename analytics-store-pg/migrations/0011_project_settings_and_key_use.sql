-- Project settings beyond retention and the sample rate (currency, session timeout, allowed
-- origins, rate limits, sampling, sources) as one JSON document; NULL in older rows means
-- the defaults. When an API key last authenticated a request.
ALTER TABLE projects ADD COLUMN settings jsonb;
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
