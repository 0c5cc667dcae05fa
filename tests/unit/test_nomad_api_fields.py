"""What the Nomad backend writes and reads, checked against Nomad's own API field names (pinned).

Nomad decodes keys case-insensitively and drops unknown ones without a word, and a field read from
an answer that Nomad does not have is just always missing: only a check against Nomad's field
names (hrwsi.testing.nomad_api_schema, from the MPL-2.0 `api/` package of hashicorp/nomad, for the
oldest and the newest version supported) catches a misspelling.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hrwsi.backends.nomad import api_reads
from hrwsi.backends.nomad.api_reads import NOT_FIELDS, READS
from hrwsi.backends.nomad.config import NomadConfig
from hrwsi.backends.nomad.job_spec import build_job, register_body, scale_body
from hrwsi.testing.nomad_api_schema import PINNED_VERSIONS, check_json, check_read, pinned
from tests.unit.test_nomad_job_spec import make_spec

PACKAGE = Path(api_reads.__file__).parent
# Not readers of answers: the job spec and configuration, this declaration, HTTP transport, re-exports.
NOT_READERS = ("job_spec.py", "config.py", "api_reads.py", "event_stream.py", "client.py", "__init__.py")


def register_requests():
    """The registration bodies the backend sends, in every shape build_job makes."""
    shapes = {
        "raw_exec, pinned": (make_spec(), NomadConfig(region="eu-west")),
        "docker, host paths": (make_spec(image="registry.example/fsc:2", command=()), NomadConfig()),
        "docker, host volume": (make_spec(image="registry.example/fsc:2", command=("fsc",)),
                                NomadConfig(host_volume="hrwsi-data:/data")),
        "exec, host volume": (make_spec(), NomadConfig(exec_driver="exec", host_volume="hrwsi-data:/data")),
        "secrets template": (make_spec(), NomadConfig(secrets_variable="nomad/jobs")),
        "flavour": (make_spec(), NomadConfig(placement="flavour")),
    }
    for name, (spec, config) in shapes.items():
        job = build_job(spec, config, flavour="eo2.large" if config.placement == "flavour" else None)
        yield name, register_body(job)


@pytest.mark.parametrize("version", PINNED_VERSIONS)
def test_every_key_the_backend_registers_is_a_nomad_api_field(version):
    for name, body in register_requests():
        assert check_json(body, "JobRegisterRequest", version) == [], name


@pytest.mark.parametrize("version", PINNED_VERSIONS)
def test_a_misspelled_key_is_caught_though_nomad_would_ignore_it(version):
    job = build_job(make_spec(), NomadConfig())
    job["TaskGroups"][0]["Contraints"] = job["TaskGroups"][0].pop("Constraints")
    job["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMb"] = 1
    problems = sorted(check_json({"Job": job}, "JobRegisterRequest", version))
    assert len(problems) == 2
    assert problems[0].startswith("JobRegisterRequest.Job.TaskGroups[0].Contraints:") and "'Constraints'" in problems[0]
    assert problems[1].startswith("JobRegisterRequest.Job.TaskGroups[0].Tasks[0].Resources.MemoryMb:")
    assert "'MemoryMB'" in problems[1]


@pytest.mark.parametrize("version", PINNED_VERSIONS)
def test_every_field_the_backend_reads_exists_in_nomads_answers(version):
    problems = [check_read(struct, path, version) for struct, paths in READS.items() for path in paths]
    assert [p for p in problems if p] == []
    assert check_read("AllocationListStub", "TaskStates.*.Events.*.OOMKilled", version) is not None


def test_every_field_name_in_the_backends_code_is_a_declared_read():
    """A field name written in the code but not in READS could be misspelled unnoticed: declare it there."""
    declared = {step for paths in READS.values() for path in paths for step in path.split(".")} | set(READS)
    used = {}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name in NOT_READERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier() \
                    and node.value[:1].isupper() and not node.value.isupper() and node.value not in NOT_FIELDS:
                used.setdefault(node.value, path.name)
    assert {name: where for name, where in used.items() if name not in declared} == {}


def test_the_pinned_api_is_nomads_own_and_says_so():
    for version in PINNED_VERSIONS:
        structs = pinned(version)
        assert {"Job", "TaskGroup", "Task", "AllocationListStub", "Evaluation", "NodeListStub"} <= set(structs)
        assert structs["TaskGroup"]["Disconnect"]["hcl"] == "disconnect"


@pytest.mark.parametrize("version", PINNED_VERSIONS)
def test_the_scale_request_that_brings_an_admins_count_back_to_one_has_nomads_field_names(version):
    assert sorted(check_json(scale_body("hrwsi-snow-42-1", 1, "runs once"), "ScalingRequest", version)) == []
