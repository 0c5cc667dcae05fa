-- hrwsi schema, version 19: a task's and a job's state are checked against the list of states, not
-- referenced as foreign keys (issue 15).
--
-- A foreign key to hrwsi.task_state (and hrwsi.job_state) probed the state's row, and locked it,
-- at every change of state of every task and job: at its creation, its dispatch, its start and its
-- end. That was about a tenth of the database time of dispatching and of recording a batch (50,000
-- tasks, 2,000 dispatched and 1,000 recorded at a time: dispatching 2.85 s -> 2.58 s, recording
-- 2.53 s -> 2.21 s). A change of state is already checked by the transition triggers
-- (hrwsi.task_transition, hrwsi.job_transition); the check keeps a new row's state one of the list,
-- under the same constraint name. The catalogue tables stay, with their descriptions, and a test
-- keeps each check's list equal to its table.

ALTER TABLE hrwsi.processing_task DROP CONSTRAINT task_state_must_exist;
ALTER TABLE hrwsi.processing_task ADD CONSTRAINT task_state_must_exist CHECK (state IN (
    'pending', 'planned', 'dispatched', 'queued', 'running', 'processed', 'on_hold', 'terminated',
    'cancelled', 'blocked'));

ALTER TABLE hrwsi.job DROP CONSTRAINT job_state_must_exist;
ALTER TABLE hrwsi.job ADD CONSTRAINT job_state_must_exist CHECK (state IN (
    'submitted', 'queued', 'running', 'processed', 'internal_error', 'external_error', 'lost', 'cancelled'));
