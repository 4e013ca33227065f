-- `analytics_events.id` loses its `CHECK (length(id) = 16)`. The check called a function for
-- every row, and a statement that calls a function may abort halfway as far as SQLite knows,
-- so it kept a statement journal (a copy of every page the statement changes) for each
-- multi-row insert: 4-9% of the writer's time. Ids are bound from 16-byte UUIDs only.
--
-- Dropping a CHECK does not change how rows are stored, so instead of copying the table the
-- stored `CREATE TABLE` text is edited in place, the procedure SQLite documents for removing
-- CHECK constraints (https://www.sqlite.org/lang_altertable.html, "Making Other Kinds Of
-- Table Schema Changes"). Creating and dropping a table bumps the schema version, so every
-- connection reloads the schema; `writable_schema = RESET` reloads this one's.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, 'NOT NULL CHECK (length(id) = 16)', 'NOT NULL')
 WHERE type = 'table' AND name = 'analytics_events';
CREATE TABLE schema_version_bump_0012 (x);
DROP TABLE schema_version_bump_0012;
PRAGMA writable_schema = RESET;
