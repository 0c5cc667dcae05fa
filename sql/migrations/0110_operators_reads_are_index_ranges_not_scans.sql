-- hrwsi schema, version 110: what operators read at production scale is an index range, not a scan of the archive.
--
-- (Not the task list of one lane, `/tasks?lane=`: an index of the lane, even of every lane but the near-real-time
--   one, cost a 10,000-task change of state of its lane 7-8 % more WAL, at each of the five changes of a task's run,
--   for a page ops open now and then; a rare lane's page reads the task table, 32 ms at 350,000 tasks.)
-- - A held campaign's held tasks (`hrwsi status`, the overview: report_held_campaigns, web_held_campaigns) were counted
--   through processing_task_campaign_idx, every task of the campaign, finished ones included (1,722 buffers for 5 held
--   tasks of a campaign of 100,005), or through the state's index, every task held anywhere. The held tasks of
--   campaigns alone are indexed (by the state alone: an index of the four waiting states was estimated as costly as
--   the campaign's, each test of the state a guess, and not chosen).
-- - The inputs a correction superseded (`hrwsi retry --routine`'s list, report_tasks_to_retry, and the look-ups of an
--   input's correction by its superseded_by) were found by a scan of every input; the few superseded are indexed.
CREATE INDEX processing_task_campaign_held_idx ON hrwsi.processing_task (campaign_id)
    WHERE campaign_id IS NOT NULL AND state = 'on_hold';
CREATE INDEX input_superseded_by_idx ON hrwsi.input (superseded_by, id) WHERE superseded_by IS NOT NULL;
