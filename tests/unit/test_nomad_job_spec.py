"""hrwsi.backends.nomad.job_spec: build_job, field by field, what the Nomad backend registers for one attempt;
and no secret in it, ever."""

from __future__ import annotations

import json

import pytest

from hrwsi.backends.base import JobSpec, job_id_for
from hrwsi.backends.nomad.config import NomadConfig
from hrwsi.backends.nomad.job_spec import META_KEYS, assert_no_secrets, build_job, nomad_cpu_mhz

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


def test_resources_cpu_in_mhz_memory_and_group_disk(config):
    job = build_job(make_spec(cpu=1.5, ram_mb=3000, storage_mb=5000), config)
    assert task_of(job)["Resources"] == {"CPU": 1500, "MemoryMB": 3000}
    assert "DiskMB" not in task_of(job)["Resources"]  # Nomad rejects task disk: it belongs to the group
    assert group_of(job)["EphemeralDisk"] == {"SizeMB": 5000, "Sticky": False, "Migrate": False}
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
                           "hrwsi_attempt": "2"}
    assert tuple(job["Meta"]) == META_KEYS
    assert build_job(make_spec(tile=None), config)["Meta"]["hrwsi_tile"] == ""
    assert all(isinstance(v, str) for v in job["Meta"].values())  # Nomad's Meta is a string map


def test_env_is_the_task_environment(config):
    spec = make_spec()
    assert task_of(build_job(spec, config))["Env"] == spec.environment()


def test_raw_exec_runs_the_routine_argv(config):
    spec = make_spec()
    task = task_of(build_job(spec, config))
    assert task["Driver"] == "raw_exec"
    assert [task["Config"]["command"], *task["Config"]["args"]] == spec.argv()
    assert task_of(build_job(spec, NomadConfig(exec_driver="exec")))["Driver"] == "exec"


def test_docker_when_the_routine_has_an_image(config):
    with_image = make_spec(image="registry.example/hrwsi/fsc:2.3", command=())
    task = task_of(build_job(with_image, config))
    assert task["Driver"] == "docker"
    assert task["Config"]["image"] == "registry.example/hrwsi/fsc:2.3"
    assert "command" not in task["Config"] and task["Config"]["args"] == with_image.argv()
    assert "/data/products/snow_cover/42:/data/products/snow_cover/42" in task["Config"]["volumes"]
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
