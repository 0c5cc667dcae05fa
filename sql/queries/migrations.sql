-- The migration runner's own queries (hrwsi.migrations): its lock and its bookkeeping table.
-- Placeholders: psycopg (%(name)s).

-- name: lock_migrations
-- Serialises concurrent `hrwsi db init` calls across every hrwsi process (a session lock).
SELECT pg_advisory_lock(%(key)s);

-- name: unlock_migrations
SELECT pg_advisory_unlock(%(key)s);

-- name: create_migration_bookkeeping
-- Created before anything else, outside schema.sql: which path an install takes depends on it.
CREATE TABLE IF NOT EXISTS public.hrwsi_schema_migration (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migration_bookkeeping_exists
SELECT to_regclass('public.hrwsi_schema_migration') IS NOT NULL;

-- name: hrwsi_schema_exists
SELECT to_regnamespace('hrwsi') IS NOT NULL OR to_regclass('public.hrwsi_schema_migration') IS NOT NULL;

-- name: applied_migrations
SELECT version, name, checksum, applied_at FROM public.hrwsi_schema_migration ORDER BY version;

-- name: record_migration
INSERT INTO public.hrwsi_schema_migration (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s);

-- name: hrwsi_schema_relations
-- Tables and other relations already in schema hrwsi: a database with some and no migration
-- recorded was not installed by hrwsi, and is not installed over.
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'hrwsi';

-- name: session_settings
-- What hrwsi's own sessions read and write times in, whatever the server, database or role sets
-- (hrwsi.database.SESSION_SETTINGS, DateStyle and TimeZone, for its asyncpg pools): a DateStyle of 'German, DMY'
-- on the database stopped every service and most commands ("can't parse timestamptz"), and a
-- TimeZone or IntervalStyle of the database's changed what `hrwsi db check` read (found by
-- exploratory testing). A psycopg connection sets them with this, one statement; so do the
-- migrations on the caller's connection: a time without a zone in the schema (a CHECK's
-- '1950-01-01') is read in the session's zone, and an install in Europe/Paris made another
-- constraint than one in UTC. READ COMMITTED whatever the role sets: `hrwsi chain-missed` inserts
-- inputs, which a stricter isolation refuses for a time series (migration 0076). No transaction_timeout (PostgreSQL
-- 17 and later; read from pg_settings, which older servers' lack of it leaves NULL): transaction_timeout_off.
SELECT set_config('DateStyle', 'ISO, MDY', false), set_config('IntervalStyle', 'postgres', false),
       set_config('TimeZone', 'UTC', false), set_config('default_transaction_isolation', 'read committed', false),
       (SELECT set_config(name, '0', false) FROM pg_settings WHERE name = 'transaction_timeout');

-- name: transaction_timeout_off
-- hrwsi's asyncpg sessions on PostgreSQL 17 and later (hrwsi.database.TRANSACTION_TIMEOUT_SINCE): no
-- transaction_timeout, whatever the role or database sets. Set by the DBA (ALTER ROLE ... SET
-- transaction_timeout, a policy against forgotten sessions), it TERMINATED the session of any transaction longer
-- than it, a step's, a heartbeat's, `hrwsi status`'s read: at 60 ms during a burst of 2,000 inputs the services
-- said "could not reach the database" 27 times, a heartbeat among them, and `hrwsi status` failed; a step whose
-- transaction always takes longer is retried with the same work without end (found by fault injection). hrwsi
-- bounds its sessions itself: statement_timeout, lock_timeout, idle_in_transaction_session_timeout
-- (hrwsi.database.service_session_settings). Not a startup parameter: an older server refuses the connection
-- for a name it does not know.
SELECT set_config('transaction_timeout', '0', false);

-- name: hrwsi_roles_present
-- Which of the roles schema.sql grants to exist on the server (roles belong to the server: a
-- pg_dump of the database holds none of them).
SELECT rolname FROM pg_roles WHERE rolname IN ('hrwsi_readonly', 'hrwsi_data_engineer', 'hrwsi_service') ORDER BY 1;

-- name: newest_migration_recorded
-- The database's schema, as the last migration recorded: what `hrwsi status` and the dashboard
-- compare each service's version with (migrations.service_versions). No placeholder: read by
-- psycopg (status) and asyncpg (the dashboard) alike.
SELECT version, name FROM public.hrwsi_schema_migration ORDER BY version DESC LIMIT 1;

-- name: rules_not_valid
-- The rules (CHECK constraints) of schema hrwsi kept NOT VALID: a migration that adds one keeps rows
-- already there that break it (0066), and the rule then holds for new rows only.
SELECT n.nspname AS schema, c.relname AS relation, k.conname AS rule, pg_get_expr(k.conbin, k.conrelid) AS condition
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'hrwsi' AND k.contype = 'c' AND NOT k.convalidated
ORDER BY relation, rule;

-- name: rows_breaking_a_rule
-- Composed by migrations.rules_not_valid with psycopg.sql: {relation} an identifier, {condition} a rule's
-- own condition as pg_catalog prints it (never a value). One scan of the table, for such rules only.
SELECT count(*) FROM {relation} WHERE NOT ({condition});
