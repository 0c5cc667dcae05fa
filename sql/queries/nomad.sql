-- Workers from Nomad's client nodes (hrwsi workers sync, hrwsi.backends.nomad.workers). psycopg style.
-- Flavours are upserted with upsert_flavour (configuration.sql).

-- name: upsert_node_worker
-- One worker per Nomad node: its name is the node name (what pin placement constrains on).
INSERT INTO hrwsi.worker (name, flavour, active, node_id, updated_at)
VALUES (%(name)s, %(flavour)s, %(active)s, %(node_id)s, now())
ON CONFLICT (name) DO UPDATE SET flavour = EXCLUDED.flavour, active = EXCLUDED.active,
                                 node_id = EXCLUDED.node_id, updated_at = now();

-- name: deactivate_vanished_node_workers
-- Workers synced from Nomad earlier whose node is gone; workers defined by hand (node_id NULL) stay.
UPDATE hrwsi.worker SET active = false, updated_at = now()
WHERE node_id IS NOT NULL AND active AND NOT (node_id = ANY(%(node_ids)s::text[]))
RETURNING name;

-- name: active_workers_without_a_node
-- Active workers defined by hand (node_id NULL) that no Nomad node of the pool is named after: with
-- the Nomad backend and pin placement, a task planned on one waits queued for ever ("Constraint
-- ${node.unique.name} = ... filtered N nodes"). `hrwsi workers sync` names them; it changes nothing.
SELECT name FROM hrwsi.worker
WHERE node_id IS NULL AND active AND NOT (name = ANY(%(names)s::text[]))
ORDER BY name;
