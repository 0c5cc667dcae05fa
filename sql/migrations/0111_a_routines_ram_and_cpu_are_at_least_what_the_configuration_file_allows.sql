-- hrwsi schema, version 111: a routine's RAM is at least Nomad's least memory, 10 MB, and its CPU at least a
-- hundredth of a core, in the database too, as the configuration file says.
--
-- The configuration file refuses ram_mb below 10 (hrwsi.configuration.MIN_ROUTINE_RAM_MB: Nomad's Resources.Validate,
-- "minimum MemoryMB value is 10") and cpu below 0.01 (MIN_CPU); the database took any positive value, so that a
-- routine stored before, or by a data engineer's own UPDATE, kept 1 MB: every Nomad job of it was refused and charged
-- to it until the routine was held. Such a value is now raised by the upgrade and refused where it is written. The
-- RAM its attempts in flight hold (held_ram_mb, migration 0067) is raised with it, as migration 0108 did for storage.
-- A CPU below a hundredth (1e-300 was valid) was counted as nothing by the planner while the job builder reserved at
-- least 1 MHz (Nomad's least CPU): raised to 0.01, what the file asks. held_cpu is left alone: its job reserved
-- ceil(held_cpu x HRWSI_NOMAD_MHZ_PER_CORE) MHz, at least 1, which the database cannot say in cores.
UPDATE hrwsi.processing_routine SET ram_mb = 10 WHERE ram_mb < 10;
UPDATE hrwsi.processing_routine SET cpu = 0.01 WHERE cpu < 0.01;
UPDATE hrwsi.processing_task SET held_ram_mb = 10 WHERE held_ram_mb < 10;
ALTER TABLE hrwsi.processing_routine DROP CONSTRAINT routine_ram_mb_is_positive,
    ADD CONSTRAINT routine_ram_mb_is_at_least_nomads_least_memory CHECK (ram_mb >= 10),
    DROP CONSTRAINT routine_cpu_is_positive,
    ADD CONSTRAINT routine_cpu_is_at_least_a_hundredth CHECK (cpu >= 0.01);
