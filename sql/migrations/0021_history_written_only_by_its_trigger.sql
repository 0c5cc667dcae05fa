-- hrwsi schema, version 21: the task history has no foreign key to its task; only its trigger
-- writes it (issue 15).
--
-- Every row of hrwsi.task_event is written by hrwsi.record_task_events, the statement trigger of
-- processing_task, from the very rows that statement inserted or updated: its task exists by
-- construction. Its foreign key still probed the task and locked it (FOR KEY SHARE, a WAL record
-- for each lock) for every history row, three times in a task's life (created, dispatched,
-- ended): about 8 % of inserting, dispatching and recording a burst (50,000 tasks, 2,000
-- dispatched and 1,000 recorded at a time: the INSERT 1.50 s -> 1.37 s, dispatching 2.36 s ->
-- 2.19 s, recording 1.86 s -> 1.69 s). What the key guarded is kept otherwise:
-- - no role but the owner writes the history: the services lose their INSERT on it (the trigger
--   runs as the owner, SECURITY DEFINER), and no role may UPDATE or DELETE it (migration 0003);
-- - a task is deleted only by hrwsi.prune_finished_tasks, which deletes its history first, in the
--   same transaction, with the task locked (FOR UPDATE) so that no history row can be added between.
-- A test checks that no history row outlives its task after pruning.

ALTER TABLE hrwsi.task_event DROP CONSTRAINT task_event_task_id_fkey;
REVOKE INSERT ON hrwsi.task_event FROM hrwsi_service;
