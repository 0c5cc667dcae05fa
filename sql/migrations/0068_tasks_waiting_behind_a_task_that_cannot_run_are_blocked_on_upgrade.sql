-- hrwsi schema, version 68: tasks left waiting behind a task that cannot run are blocked on upgrade.
--
-- Migrations 0060 and 0061 block the tasks after a blocked (or terminated, or cancelled) task of a
-- time series as it happens, but repaired nothing already in that state: after an upgrade from a
-- schema before them, a series' later scenes stayed `planned`, at a time long past and with no
-- reason, behind a blocked task, and every new scene of that tile queued behind them, with nothing
-- in `hrwsi status` (found by exploratory testing, 2026-12-06: an upgrade from 0056). Each task
-- waiting directly behind such a task is blocked as at run time, saying why; the task trigger blocks
-- the tasks after it in its chain (migration 0060), as it does at run time.

WITH behind AS (
    SELECT t.id, t.routine, d.id AS dependency, d.state AS dependency_state
    FROM hrwsi.processing_task t JOIN hrwsi.processing_task d ON d.id = t.depends_on
    WHERE t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
      AND d.state IN ('blocked', 'terminated', 'cancelled')
), blocked AS (
    UPDATE hrwsi.processing_task t
    SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
        state_reason = CASE WHEN b.dependency_state = 'blocked'
            THEN format('waits for task %s, which is blocked (`hrwsi task show %s` says why): it runs once that '
                        'task has run', b.dependency, b.dependency)
            ELSE format('its dependency, task %s, ended %s; `hrwsi retry %s` runs the dependency again, '
                        '`hrwsi release %s` runs this task without it', b.dependency, b.dependency_state,
                        b.dependency, t.id) END
    FROM behind b WHERE t.id = b.id
    RETURNING t.id, t.routine, t.state_reason, b.dependency_state
)
-- Ops are told of each task blocked by a dependency that ended, as at run time (not of those behind
-- a blocked one: its own alert was sent).
INSERT INTO hrwsi.alert (kind, subject, body, task_id, routine)
SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', id, routine), state_reason, id, routine
FROM blocked WHERE dependency_state <> 'blocked';
