-- Describing the hrwsi schema from pg_catalog (hrwsi.schema), to compare two databases: a fresh
-- install from schema.sql with one built from the migrations, or a live database with a fresh
-- install. Objects are those of schema hrwsi, plus the migration bookkeeping table.
-- Owners, grantors and OIDs are left out: they differ between installs that are the same.
-- Placeholders: none.

-- name: describe_relations
-- Every relation, whatever its kind (r table, i index, S sequence, v view, ...).
SELECT c.relname, c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity, c.reloptions::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'hrwsi'
ORDER BY c.relname;

-- name: describe_columns
-- In column order: order matters to SELECT * and to INSERT without a column list.
SELECT n.nspname || '.' || c.relname AS relation, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid) AS default_value, a.attidentity, a.attgenerated,
       CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation::regcollation::text END AS collation,
       col_description(c.oid, a.attnum) AS comment
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE (n.nspname = 'hrwsi' OR c.oid = to_regclass('public.hrwsi_schema_migration'))
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY relation, a.attnum;

-- name: describe_constraints
-- With their names: PostgreSQL prints them in every refusal.
SELECT n.nspname || '.' || c.relname AS relation, k.conname, pg_get_constraintdef(k.oid)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'hrwsi' OR c.oid = to_regclass('public.hrwsi_schema_migration')
ORDER BY relation, k.conname;

-- name: describe_indexes
SELECT n.nspname || '.' || c.relname AS relation, i.relname, pg_get_indexdef(x.indexrelid)
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'hrwsi' OR c.oid = to_regclass('public.hrwsi_schema_migration')
ORDER BY relation, i.relname;

-- name: describe_triggers
SELECT n.nspname || '.' || c.relname AS relation, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'hrwsi' AND NOT t.tgisinternal
ORDER BY relation, t.tgname;

-- name: describe_functions
-- The whole definition as PostgreSQL keeps it: body, language, SECURITY DEFINER, SET options.
SELECT p.oid::regprocedure::text AS signature,
       CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE p.prokind::text END AS definition,
       obj_description(p.oid, 'pg_proc') AS comment
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'hrwsi'
ORDER BY signature;

-- name: describe_privileges
-- Who may do what on the schema, its tables, sequences, columns and functions. A NULL ACL means
-- the default one (e.g. EXECUTE for PUBLIC on a function), so it is spelled out with acldefault.
WITH object AS (
    SELECT 'schema ' || n.nspname AS object, coalesce(n.nspacl, acldefault('n', n.nspowner)) AS acl,
           n.nspowner AS owner
    FROM pg_namespace n WHERE n.nspname = 'hrwsi'
    UNION ALL
    SELECT CASE WHEN c.relkind = 'S' THEN 'sequence ' ELSE 'table ' END || n.nspname || '.' || c.relname,
           coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner)),
           c.relowner
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE (n.nspname = 'hrwsi' OR c.oid = to_regclass('public.hrwsi_schema_migration'))
      AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
    UNION ALL
    SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname, a.attacl, c.relowner
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE (n.nspname = 'hrwsi' OR c.oid = to_regclass('public.hrwsi_schema_migration'))
      AND a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure::text, coalesce(p.proacl, acldefault('f', p.proowner)), p.proowner
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'hrwsi'
)
SELECT o.object, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee,
       a.privilege_type, a.is_grantable
FROM object o, aclexplode(o.acl) a
WHERE a.grantee <> o.owner
ORDER BY 1, 2, 3;

-- name: describe_roles
-- The roles the schema is granted to, with what they may do on the server.
SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
       r.rolbypassrls
FROM pg_roles r
WHERE r.oid IN (SELECT a.grantee FROM pg_namespace n, aclexplode(n.nspacl) a
                WHERE n.nspname = 'hrwsi' AND a.grantee <> n.nspowner)
ORDER BY r.rolname;

-- name: describe_sequences
SELECT c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
       s.seqcycle
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'hrwsi'
ORDER BY c.relname;

-- name: describe_types
-- Enums, domains, ranges and composite types of the schema (not the row and array types that
-- come with every table), with their labels and domain constraints.
SELECT t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod), t.typnotnull,
       (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)::text,
       (SELECT array_agg(k.conname || ' ' || pg_get_constraintdef(k.oid) ORDER BY k.conname)
        FROM pg_constraint k WHERE k.contypid = t.oid)::text
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_class c ON c.oid = t.typrelid
WHERE n.nspname = 'hrwsi' AND t.typcategory <> 'A' AND (t.typrelid = 0 OR c.relkind = 'c')
ORDER BY t.typname;

-- name: describe_comments
-- Every comment on an object created after initdb (OIDs from 16384 on), whatever the object.
SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid) AS object, d.description
FROM pg_description d
WHERE d.objoid >= 16384
ORDER BY object;

-- name: describe_state_machines_exist
SELECT to_regclass('hrwsi.task_state') IS NOT NULL AND to_regclass('hrwsi.task_transition') IS NOT NULL
   AND to_regclass('hrwsi.job_state') IS NOT NULL AND to_regclass('hrwsi.job_transition') IS NOT NULL;

-- name: describe_state_machines
-- The task and job states and the transitions allowed: data, but data the schema defines.
SELECT 'task_state', to_jsonb(s)::text FROM hrwsi.task_state s
UNION ALL SELECT 'task_transition', to_jsonb(s)::text FROM hrwsi.task_transition s
UNION ALL SELECT 'job_state', to_jsonb(s)::text FROM hrwsi.job_state s
UNION ALL SELECT 'job_transition', to_jsonb(s)::text FROM hrwsi.job_transition s
ORDER BY 1, 2;

-- name: describe_recorded_migrations
SELECT version, name, checksum FROM public.hrwsi_schema_migration ORDER BY version;
