"""nomad-jobs/: every spec parses as HCL2; the services have Nomad-native HTTP health checks and no secret
literals; the example routine job is what build_job registers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

hcl2 = pytest.importorskip("hcl2")

from hrwsi.backends.base import JobSpec, job_id_for  # noqa: E402
from hrwsi.backends.nomad.config import NomadConfig  # noqa: E402
from hrwsi.backends.nomad.job_spec import META_KEYS, build_job  # noqa: E402
from hrwsi.testing.nomad_api_schema import PINNED_VERSIONS, check_hcl  # noqa: E402

JOBS = Path(__file__).resolve().parents[2] / "nomad-jobs"
SERVICES = ("harvester", "orchestrator", "launcher")
NS = 1_000_000_000
SECRET_LITERALS = [
    re.compile(r"postgres(?:ql)?://[^\s\"'/:@]+:[^\s\"'@.]+@", re.IGNORECASE),  # a URL with a password in it
    re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),  # a Nomad ACL token
    re.compile(r"(password|secret|token)\s*=\s*\"[^\"$]", re.IGNORECASE),  # key = "literal"
]


def _clean(value):
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        return value.replace('\\"', '"')
    return value


def load(path: Path) -> dict:
    text = path.read_text()
    options = getattr(hcl2, "SerializationOptions", None)
    if options is not None:
        try:
            return _clean(hcl2.loads(text, serialization_options=options(
                with_comments=False, explicit_blocks=False, strip_string_quotes=True, preserve_heredocs=False)))
        except TypeError:
            pass
    return _clean(hcl2.loads(text))


def labelled(body: dict, kind: str) -> dict[str, dict]:
    """{label: block body} of the labelled blocks `kind "label" { ... }`."""
    out = {}
    for entry in body.get(kind, []):
        for label, inner in entry.items():
            out[label] = inner
    return out


def single(body: dict, kind: str) -> dict:
    blocks = body.get(kind)
    assert blocks, f"no {kind} block"
    return blocks[0] if isinstance(blocks, list) else blocks


def job_of(path: Path) -> tuple[str, dict]:
    (name, body), = labelled(load(path), "job").items()
    return name, body


def duration_ns(text: str) -> int:
    units = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": NS, "m": 60 * NS, "h": 3600 * NS}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ns|us|ms|s|m|h)", text))


def test_the_specs_are_all_here_and_all_parse():
    specs = sorted(p.name for p in JOBS.glob("*.nomad.hcl"))
    assert specs == ["hrwsi-harvester.nomad.hcl", "hrwsi-launcher.nomad.hcl", "hrwsi-orchestrator.nomad.hcl",
                     "hrwsi-routine-example.nomad.hcl"]
    for name in specs:
        job_name, body = job_of(JOBS / name)
        assert job_name == name.removesuffix(".nomad.hcl") or name == "hrwsi-routine-example.nomad.hcl"
        assert body["type"] in ("service", "batch")
    assert (JOBS / "README.md").is_file()


@pytest.mark.parametrize("service", SERVICES)
def test_service_jobs_run_hrwsi_with_a_health_check(service):
    name, job = job_of(JOBS / f"hrwsi-{service}.nomad.hcl")
    assert name == f"hrwsi-{service}" and job["type"] == "service"
    group = labelled(job, "group")[service]
    task = labelled(group, "task")[service]
    config = single(task, "config")
    assert config["command"] == "${var.hrwsi_bin}" and config["args"] == [service]
    # Nomad-native HTTP checks on the instance's own endpoints (no Consul, no "any replica" check).
    assert "http" in labelled(single(group, "network"), "port")
    env = single(task, "env")
    assert env["HRWSI_HTTP_PORT"] == "${NOMAD_PORT_http}" and env["HRWSI_HTTP_HOST"] == "${NOMAD_IP_http}"
    registration = single(task, "service")
    assert registration["provider"] == "nomad" and registration["port"] == "http"
    checks = {c["path"]: c for c in registration["check"]}
    assert set(checks) == {"/healthz", "/readyz"}
    for check in checks.values():
        assert check["type"] == "http"
        assert duration_ns(check["interval"]) > 0 and 0 < duration_ns(check["timeout"]) < duration_ns(check["interval"])
    assert single(checks["/healthz"], "check_restart")["limit"] >= 1, "a hung instance is restarted"
    assert "check_restart" not in checks["/readyz"], "an instance waiting for the database is not restarted"
    assert single(task, "resources")["cpu"] > 0 and single(task, "resources")["memory"] > 0


@pytest.mark.parametrize("service", SERVICES)
def test_service_jobs_take_secrets_from_nomad_variables_only(service):
    path = JOBS / f"hrwsi-{service}.nomad.hcl"
    text = path.read_text()
    for pattern in SECRET_LITERALS:
        assert not pattern.search(text), f"{path.name}: a secret literal ({pattern.pattern})"
    _, job = job_of(path)
    task = labelled(labelled(job, "group")[service], "task")[service]
    env = single(task, "env")
    assert not [k for k in env if re.search(r"PASSWORD|SECRET|TOKEN|DATABASE_URL", k)]
    templates = task["template"]
    secret = next(t for t in templates if "nomadVar" in t["data"])
    assert '{{ with nomadVar "nomad/jobs/hrwsi" }}' in secret["data"]
    assert "HRWSI_DATABASE_URL=" in secret["data"]
    assert secret["env"] is True and secret["destination"].startswith("secrets/")
    if service == "launcher":
        assert "NOMAD_TOKEN=" in secret["data"]
        assert env["HRWSI_BACKEND"] == "nomad" and "NOMAD_ADDR" in env


def test_no_spec_carries_a_secret_literal():
    for path in JOBS.glob("*.nomad.hcl"):
        for pattern in SECRET_LITERALS:
            assert not pattern.search(path.read_text()), f"{path.name}: {pattern.pattern}"


def example_spec() -> JobSpec:
    """The attempt nomad-jobs/hrwsi-routine-example.nomad.hcl describes."""
    return JobSpec(
        job_id=job_id_for("snow_cover", 42, 1), task_id=42, attempt=1, routine="snow_cover",
        condition="l2a_for_snow",
        input_path=("/srv/hrwsi/data/products/atmospheric_correction/task-41/attempt-1/"
                    "S2A_L2A_20240501T103021_T32TPR.json"),
        tile="32TPR", worker="worker-large-01",
        command=("/opt/hrwsi/venv/bin/python", "-m", "hrwsi.routines.snow_cover"), image=None, cpu=1, ram_mb=3000,
        storage_mb=5000, output_dir="/srv/hrwsi/data/products/installation-uuid/snow_cover/task-42/attempt-1/output",
        log_path="/srv/hrwsi/data/logs/snow_cover/hrwsi-snow_cover-42-1.log", timeout_s=300, lane="nrt", priority=0)


def test_the_example_routine_job_is_what_build_job_registers():
    built = build_job(example_spec(), NomadConfig())
    name, job = job_of(JOBS / "hrwsi-routine-example.nomad.hcl")
    built_group, = built["TaskGroups"]
    built_task, = built_group["Tasks"]
    assert name == built["ID"]
    assert job["type"] == built["Type"] == "batch"
    assert job["datacenters"] == built["Datacenters"] and job["namespace"] == built["Namespace"]
    assert job["node_pool"] == built["NodePool"]
    assert job["priority"] == built["Priority"]
    # (the version: the release's with its schema's, as the example names it: "0.1.0+schema0050")
    example_version = single(job, "meta")["hrwsi_version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+\+schema\d{4}", example_version), example_version
    assert single(job, "meta") | {"hrwsi_version": built["Meta"]["hrwsi_version"]} == built["Meta"]
    assert tuple(single(job, "meta")) == META_KEYS
    (group_name, group), = labelled(job, "group").items()
    assert group_name == built_group["Name"] and group["count"] == built_group["Count"]
    constraint = single(group, "constraint")
    assert [{"LTarget": constraint["attribute"], "Operand": constraint["operator"],
             "RTarget": constraint["value"]}] == built_group["Constraints"]
    restart, reschedule = single(group, "restart"), single(group, "reschedule")
    assert (restart["attempts"], restart["mode"]) == (0, "fail")
    assert (restart["attempts"], restart["mode"], duration_ns(restart["interval"]), duration_ns(restart["delay"])) == \
        tuple(built_group["RestartPolicy"][k] for k in ("Attempts", "Mode", "Interval", "Delay"))
    assert (reschedule["attempts"], reschedule["unlimited"]) == (0, False)
    assert (reschedule["attempts"], reschedule["unlimited"], duration_ns(reschedule["interval"]),
            duration_ns(reschedule["delay"]), reschedule["delay_function"]) == \
        tuple(built_group["ReschedulePolicy"][k] for k in ("Attempts", "Unlimited", "Interval", "Delay",
                                                             "DelayFunction"))
    assert single(group, "ephemeral_disk")["size"] == built_group["EphemeralDisk"]["SizeMB"]
    disconnect = single(group, "disconnect")
    assert {"Replace": disconnect["replace"], "StopOnClientAfter": duration_ns(disconnect["stop_on_client_after"])} \
        == built_group["Disconnect"]
    (task_name, task), = labelled(group, "task").items()
    assert task_name == built_task["Name"] and task["driver"] == built_task["Driver"]
    config = single(task, "config")
    assert [config["command"], *config["args"]] == [built_task["Config"]["command"], *built_task["Config"]["args"]]
    assert single(task, "env") == built_task["Env"]
    resources = single(task, "resources")
    assert {"CPU": resources["cpu"], "MemoryMB": resources["memory"]} == built_task["Resources"]
    assert duration_ns(task["kill_timeout"]) == built_task["KillTimeout"]
    logs = single(task, "logs")
    assert {"MaxFiles": logs["max_files"], "MaxFileSizeMB": logs["max_file_size"]} == built_task["LogConfig"]


@pytest.mark.parametrize("version", PINNED_VERSIONS)
def test_every_block_and_attribute_is_one_nomads_job_parser_knows(version):
    # Nomad's HCL parser drops what it does not know: a misspelled block would be ignored, not refused.
    for path in sorted(JOBS.glob("*.nomad.hcl")):
        name, body = job_of(path)
        assert check_hcl(body, "Job", version, f"{path.name}: job {name}") == []


def test_a_misspelled_block_in_a_job_file_is_caught():
    _, body = job_of(JOBS / "hrwsi-routine-example.nomad.hcl")
    group = labelled(body, "group")
    (group_body,) = group.values()
    group_body["ephemeral_disc"] = group_body.pop("ephemeral_disk")
    problems = check_hcl(body, "Job", PINNED_VERSIONS[-1])
    assert len(problems) == 1 and "ephemeral_disc" in problems[0] and "'ephemeral_disk'" in problems[0]
