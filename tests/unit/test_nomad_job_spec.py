"""hrwsi.backends.nomad.job_spec: build_job, field by field, what the Nomad backend registers for one attempt;
and no secret in it, ever."""

from __future__ import annotations

import json

import pytest

from hrwsi.backends.base import JobSpec, job_id_for
from hrwsi.backends.nomad.config import NomadConfig
from hrwsi.backends.nomad.job_spec import META_KEYS, assert_no_secrets, build_job, nomad_cpu_mhz
from hrwsi.migrations import build_version

NS = 1_000_000_000


def make_spec(**overrides) -> JobSpec:
    values = dict(job_id=job_id_for("snow_cover", 42, 2), task_id=42, attempt=2, routine="snow_cover",
                  condition="l2a_for_snow", input_path="/data/L2A/S2A_L2A_20240501_T32TPR.json", tile="32TPR",
                  worker="worker-large-01", command=("/usr/bin/python3", "-m", "hrwsi.routines.snow_cover"),
                  image=None, cpu=1.5, ram_mb=3000, storage_mb=5000, output_dir="/data/products/snow_cover/42",
                  log_path="/data/logs/snow_cover/hrwsi-snow_cover-42-2.log", timeout_s=300.0,
                  env={"GDAL_CACHEMAX": "512"})
    values.update(overrides)
    return JobSpec(**values)


@pytest.fixture
def config() -> NomadConfig:
    return NomadConfig(address="https://nomad.example:4646", token="b7e1f0d2-0000-4000-8000-c0ffee000001",
                       namespace="eo-production")


def group_of(job: dict) -> dict:
    (group,) = job["TaskGroups"]
    return group


def task_of(job: dict) -> dict:
    (task,) = group_of(job)["Tasks"]
    return task


def test_identity_type_and_namespace(config):
    spec = make_spec()
    job = build_job(spec, config)
    assert job["ID"] == job["Name"] == "hrwsi-snow_cover-42-2"
    assert job["Type"] == "batch"  # Nomad's default is service: always send batch
    assert job["Namespace"] == "eo-production"
    assert job["Datacenters"] == ["*"]
    assert len(job["TaskGroups"]) == 1 and len(group_of(job)["Tasks"]) == 1
    assert group_of(job)["Count"] == 1
    assert task_of(job)["Name"] == "snow_cover"


def test_a_task_served_urgently_is_a_job_nomad_places_first_yet_never_preempts_running_work_for(config):
    # Nomad hands out waiting evaluations highest priority first (nomad/eval_broker.go); every job at 50, a fresh
    # scene's job waiting in Nomad for room was placed after back-fill's whose evaluation was written later.
    urgent = build_job(make_spec(lane="nrt", priority=0), config)["Priority"]
    aged = build_job(make_spec(lane="archive", priority=0), config)["Priority"]
    backfill = build_job(make_spec(lane="archive", priority=1), config)["Priority"]
    assert urgent == aged > backfill == 50, (urgent, aged, backfill)
    # (batch preemption, when an operator turns it on, evicts only jobs 10 or more below: scheduler/feasible/preemption.go)
    assert urgent - backfill < 10 and urgent - 50 < 10


def test_resources_cpu_in_mhz_memory_and_group_disk(config):
    job = build_job(make_spec(cpu=1.5, ram_mb=3000, storage_mb=5000), config)
    assert task_of(job)["Resources"] == {"CPU": 1500, "MemoryMB": 3000}
    assert "DiskMB" not in task_of(job)["Resources"]  # Nomad rejects task disk: it belongs to the group
    assert group_of(job)["EphemeralDisk"] == {"SizeMB": 5000, "Sticky": False, "Migrate": False}
    assert task_of(job)["LogConfig"] == {"MaxFiles": 5, "MaxFileSizeMB": 20}
    faster = NomadConfig(mhz_per_core=2400)
    assert task_of(build_job(make_spec(cpu=2), faster))["Resources"]["CPU"] == 4800


@pytest.mark.parametrize("cores, mhz, expected", [(0.5, 1000, 500), (0.3331, 1000, 334), (1.1, 1000, 1100),
                                                  (0.0001, 1000, 1), (4, 2600, 10400)])
def test_cpu_is_rounded_up(cores, mhz, expected):
    assert nomad_cpu_mhz(cores, mhz) == expected


def test_pin_placement_constrains_the_node_name(config):
    job = build_job(make_spec(worker="worker-small-02"), config)
    assert group_of(job)["Constraints"] == [
        {"LTarget": "${node.unique.name}", "Operand": "=", "RTarget": "worker-small-02"}]
    assert group_of(build_job(make_spec(worker=None), config))["Constraints"] == []


def test_flavour_placement_constrains_the_node_class():
    flavour_mode = NomadConfig(placement="flavour")
    job = build_job(make_spec(), flavour_mode, flavour="eo2.large")
    assert group_of(job)["Constraints"] == [{"LTarget": "${node.class}", "Operand": "=", "RTarget": "eo2.large"}]
    # A worker whose node has no class: pinned to it rather than placed anywhere.
    pinned = build_job(make_spec(), flavour_mode, flavour=None)
    assert group_of(pinned)["Constraints"][0]["LTarget"] == "${node.unique.name}"
    # In pin mode a flavour changes nothing.
    assert group_of(build_job(make_spec(), NomadConfig(), flavour="eo2.large"))["Constraints"][0]["RTarget"] == \
        "worker-large-01"


def test_hrwsi_owns_retries(config):
    group = group_of(build_job(make_spec(), config))
    assert group["RestartPolicy"]["Attempts"] == 0 and group["RestartPolicy"]["Mode"] == "fail"
    assert group["ReschedulePolicy"]["Attempts"] == 0 and group["ReschedulePolicy"]["Unlimited"] is False
    for policy in (group["RestartPolicy"], group["ReschedulePolicy"]):
        assert all(isinstance(policy[k], int) for k in ("Interval", "Delay"))  # integer nanoseconds
    assert group["RestartPolicy"]["Interval"] == 24 * 3600 * NS


def test_meta_shows_the_task_in_nomads_ui(config):
    job = build_job(make_spec(), config)
    assert job["Meta"] == {"hrwsi_task_id": "42", "hrwsi_input_path": "/data/L2A/S2A_L2A_20240501_T32TPR.json",
                           "hrwsi_routine": "snow_cover", "hrwsi_condition": "l2a_for_snow", "hrwsi_tile": "32TPR",
                           "hrwsi_attempt": "2", "hrwsi_version": build_version(),
                           "hrwsi_installation": ""}  # (make_spec's output directory names none)
    assert tuple(job["Meta"]) == META_KEYS
    assert build_job(make_spec(tile=None), config)["Meta"]["hrwsi_tile"] == ""
    assert all(isinstance(v, str) for v in job["Meta"].values())  # Nomad's Meta is a string map
    laid_out = make_spec(output_dir="/data/products/3f2b8c1e-5d4a-4e7b-9a61-0c8d2e4f7a19/snow_cover/task-42/attempt-2/output")
    # whose job it is: two installations sharing a namespace make the same job IDs (found by exploratory testing)
    assert build_job(laid_out, config)["Meta"]["hrwsi_installation"] == "3f2b8c1e-5d4a-4e7b-9a61-0c8d2e4f7a19"


def test_env_is_the_task_environment(config):
    spec = make_spec()
    assert task_of(build_job(spec, config))["Env"] == spec.environment()


def test_raw_exec_runs_the_routine_argv(config):
    spec = make_spec()
    task = task_of(build_job(spec, config))
    assert task["Driver"] == "raw_exec"
    assert [task["Config"]["command"], *task["Config"]["args"]] == spec.argv()



def test_hrwsi_keeps_nomad_from_replacing_a_lost_allocation(config):
    # Nomad replaces lost allocations whatever the reschedule policy says, unless Disconnect.Replace is
    # false (nomad/structs/structs.go TaskGroup.Replace): the launcher retries the attempt itself.
    # A client cut off from the servers stops the attempt after stop_on_client_after (client/heartbeatstop.go):
    # the launcher retries an attempt whose node is away only then.
    assert group_of(build_job(make_spec(), config))["Disconnect"] == {"Replace": False, "StopOnClientAfter": 60 * NS}
    assert task_of(build_job(make_spec(), config))["KillTimeout"] == 30 * NS
    configured = NomadConfig(stop_after_disconnect_s=90, kill_timeout_s=2.5)
    assert group_of(build_job(make_spec(), configured))["Disconnect"]["StopOnClientAfter"] == 90 * NS
    assert task_of(build_job(make_spec(), configured))["KillTimeout"] == 2_500_000_000
    assert "PreventRescheduleOnLost" not in group_of(build_job(make_spec(), config))  # deprecated and ignored


@pytest.mark.parametrize("storage_mb", [1, 10, 11, 40, 50, 100, 101, 400, 5000, 100_000])
def test_log_storage_stays_below_the_disk_nomad_reserves(storage_mb):
    # LogConfig.Validate (nomad/structs/structs.go): MaxFiles x MaxFileSizeMB < EphemeralDisk.SizeMB.
    group = group_of(build_job(make_spec(storage_mb=storage_mb), NomadConfig()))
    logs, disk = task_of({"TaskGroups": [group]})["LogConfig"], group["EphemeralDisk"]["SizeMB"]
    assert disk == max(10, storage_mb)  # Nomad's minimum disk is 10 MB
    assert logs["MaxFiles"] >= 1 and logs["MaxFileSizeMB"] >= 1
    assert logs["MaxFiles"] * logs["MaxFileSizeMB"] < disk
    assert logs["MaxFiles"] * logs["MaxFileSizeMB"] <= 100


def test_jobs_go_to_the_configured_node_pool():
    assert build_job(make_spec(), NomadConfig())["NodePool"] == "default"
    assert build_job(make_spec(), NomadConfig(node_pool="eo-processing"))["NodePool"] == "eo-processing"
    assert NomadConfig.from_env({"HRWSI_NOMAD_NODE_POOL": "all"}).node_pool == "all"


def test_exec_needs_the_data_in_a_host_volume_and_the_command_in_the_chroot():
    with pytest.raises(ValueError, match="HRWSI_NOMAD_HOST_VOLUME"):
        NomadConfig(exec_driver="exec")  # exec chroots the task: its products would not reach the launcher
    exec_config = NomadConfig(exec_driver="exec", host_volume="hrwsi-data:/data")
    spec = make_spec()
    job = build_job(spec, exec_config)
    task = task_of(job)
    assert task["Driver"] == "exec" and [task["Config"]["command"], *task["Config"]["args"]] == spec.argv()
    assert group_of(job)["Volumes"] == {"hrwsi-data": {"Name": "hrwsi-data", "Type": "host", "Source": "hrwsi-data",
                                                       "ReadOnly": False}}
    assert task["VolumeMounts"] == [{"Volume": "hrwsi-data", "Destination": "/data", "ReadOnly": False}]
    with pytest.raises(ValueError, match="chroot"):  # /opt is not in Nomad's DefaultChrootEnv
        build_job(make_spec(command=("/opt/hrwsi/venv/bin/python", "-m", "x")), exec_config)
    in_volume = make_spec(command=("/data/venv/bin/python", "-m", "x"))
    assert task_of(build_job(in_volume, exec_config))["Config"]["command"] == "/data/venv/bin/python"
    with pytest.raises(ValueError, match="outside the host volume"):
        build_job(make_spec(output_dir="/elsewhere/out"), exec_config)
    wider = NomadConfig(exec_driver="exec", host_volume="d:/data", exec_chroot=("/usr", "/opt/hrwsi"))
    assert task_of(build_job(make_spec(command=("/opt/hrwsi/venv/bin/python",)), wider))["Driver"] == "exec"


def test_docker_when_the_routine_has_an_image(config):
    with_image = make_spec(image="registry.example/hrwsi/fsc:2.3", command=())
    job = build_job(with_image, config)
    task = task_of(job)
    assert task["Driver"] == "docker"
    assert task["Config"]["image"] == "registry.example/hrwsi/fsc:2.3"
    assert "command" not in task["Config"] and task["Config"]["args"] == with_image.argv()
    # The attempt's directory (output and manifest) read-write, and the input itself read-only at its
    # own path: never its parent directory.
    assert task["Config"]["volumes"] == ["/data/products/snow_cover:/data/products/snow_cover",
                                         f"{with_image.input_path}:{with_image.input_path}:ro"]
    # Host paths need volumes enabled in the client's docker plugin (default false): only such nodes.
    assert {"LTarget": "${attr.driver.docker.volumes.enabled}", "Operand": "=", "RTarget": "true"} in \
        group_of(job)["Constraints"]
    through_volume = build_job(with_image, NomadConfig(host_volume="hrwsi-data:/data"))
    assert "volumes" not in task_of(through_volume)["Config"]  # a host volume needs no docker volumes
    assert task_of(through_volume)["VolumeMounts"][0]["Destination"] == "/data"
    assert all(c["LTarget"] != "${attr.driver.docker.volumes.enabled}" for c in group_of(through_volume)["Constraints"])
    both = make_spec(image="registry.example/hrwsi/fsc:2.3", command=("fsc", "--fast"))
    config_both = task_of(build_job(both, config))["Config"]
    assert [config_both["command"], *config_both["args"]] == both.argv()


def test_a_routine_with_neither_image_nor_command_is_refused(config):
    with pytest.raises(ValueError):
        build_job(make_spec(command=(), image=None), config)


def test_build_job_is_pure_and_json(config):
    spec = make_spec()
    assert build_job(spec, config) == build_job(spec, config)
    assert json.loads(json.dumps(build_job(spec, config))) == build_job(spec, config)


def test_no_secret_ever_reaches_the_spec(monkeypatch, config):
    secrets = {"NOMAD_TOKEN": config.token, "HRWSI_DATABASE_PASSWORD": "pg-pass-7c1d9e",
               "AWS_SECRET_ACCESS_KEY": "aws-secret-93ab0f", "REGISTRY_TOKEN": "reg-token-55e2aa",
               "PGPASSWORD": "another-pg-pass-1"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    spec = make_spec(env={"GDAL_CACHEMAX": "512", "S3_SECRET_KEY": "routine-secret-1", "API_TOKEN": "routine-tok-2",
                          "DB_PASSWORD": "routine-pass-3"})
    text = json.dumps(build_job(spec, config))
    for value in [*secrets.values(), "routine-secret-1", "routine-tok-2", "routine-pass-3"]:
        assert value not in text
    for fragment in ("PASSWORD", "SECRET", "TOKEN"):
        assert fragment not in text.upper()
    assert "GDAL_CACHEMAX" in text  # ordinary variables still go through
    assert "b7e1f0d2" not in repr(config)  # nor in logs of the configuration
    assert_no_secrets(build_job(spec, config), config)


def test_a_secret_value_in_a_command_is_refused(monkeypatch, config):
    monkeypatch.setenv("HRWSI_DATABASE_PASSWORD", "pg-pass-7c1d9e")
    leaky = make_spec(command=("/usr/bin/routine", "--db-password", "pg-pass-7c1d9e"))
    with pytest.raises(ValueError, match="HRWSI_DATABASE_PASSWORD"):
        assert_no_secrets(build_job(leaky, config), config)
    token_leak = make_spec(command=("/usr/bin/routine", config.token))
    with pytest.raises(ValueError, match="NOMAD_TOKEN"):
        assert_no_secrets(build_job(token_leak, config), config)


def test_secrets_variable_is_rendered_by_a_template_not_copied():
    config = NomadConfig(secrets_variable="nomad/jobs/hrwsi-routines")
    (template,) = task_of(build_job(make_spec(), config))["Templates"]
    assert 'nomadVar "nomad/jobs/hrwsi-routines"' in template["EmbeddedTmpl"]
    assert template["Envvars"] is True and template["DestPath"].startswith("secrets/")


def test_docker_mounts_exactly_the_data_the_task_reads_never_a_parent(config):
    import json

    manifest = {"members": [{"path": "/data/FSC/a.tif"}, {"path": "/data/SWS/b.tif"}],
                "series": {"previous_products": [{"path": "/data/L2A/prev.json"}]}}
    top_level = make_spec(image="img", command=(), input_path="/scene.SAFE", manifest=json.dumps(manifest))
    mounts = task_of(build_job(top_level, config))["Config"]["volumes"]
    assert "/:/:ro" not in mounts and "/scene.SAFE:/scene.SAFE:ro" in mounts
    assert {"/data/FSC/a.tif:/data/FSC/a.tif:ro", "/data/SWS/b.tif:/data/SWS/b.tif:ro",
            "/data/L2A/prev.json:/data/L2A/prev.json:ro"} <= set(mounts)


@pytest.mark.parametrize("field", ["input_path", "output_dir"])
def test_data_that_nomad_would_interpolate_is_refused(config, field):
    spec = make_spec(**{field: "/data/${node.unique.name}/x"})
    with pytest.raises(ValueError, match="which Nomad would interpolate"):
        build_job(spec, config)


def test_a_member_that_nomad_would_interpolate_is_refused(config):
    import json

    spec = make_spec(manifest=json.dumps({"members": [{"path": "/data/${NOMAD_TASK_DIR}/m.tif"}]}))
    with pytest.raises(ValueError, match="which Nomad would interpolate"):
        build_job(spec, config)


def test_a_path_of_the_tasks_own_data_nomad_would_interpolate_refuses_the_task_not_the_routine(config):
    """Charged to the routine, five such inputs put it on hold with a legitimate task (found by exploratory
    testing): the task's own data raises TaskRefused, what comes from the routine a plain refusal."""
    from hrwsi.backends.base import TaskRefused

    with pytest.raises(TaskRefused, match="task's data path"):
        build_job(make_spec(input_path="/data/in/${node.unique.name}.tif"), config)
    member = json.dumps({"members": [{"path": "/data/in/${attr.x}"}]})
    with pytest.raises(TaskRefused):
        build_job(make_spec(manifest=member), config)
    with pytest.raises(ValueError) as routine_refused:
        build_job(make_spec(command=("run", "--at", "${NOMAD_ALLOC_DIR}")), config)
    assert not isinstance(routine_refused.value, TaskRefused)
