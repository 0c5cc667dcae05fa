"""Task templates in the emulator (test double): Nomad Variables read through a task's workload identity.

Only what hrwsi's job specs use is emulated: templates without `{{`, and the form
`{{ with nomadVar "PATH" }}{{ range .Tuples }}{{ .K }}={{ .V | toJSON }}\n{{ end }}{{ end }}`
(hrwsi.backends.nomad.job_spec). Reading a Variable follows Nomad:

- with ACL on, a workload may read only `nomad/jobs`, `nomad/jobs/<job>[/<group>[/<task>]]` of its own
  namespace, or what a namespace-wide workload policy grants (acl/acl.go; emulated in acl.py); a
  refusal is a template error, which kills the task with FailsTask and "Template failed: ..."
  (client/allocrunner/taskrunner/template/template.go);
- a Variable that does not exist is a missing dependency: the task waits, with a "Template" event
  "Missing: nomad.var.block(...)" (template.go), until it appears or the task is stopped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from hrwsi.testing.nomad_emulator.acl import workload_may_read

if TYPE_CHECKING:
    from hrwsi.testing.nomad_emulator.cluster import Cluster

NOMAD_VAR = re.compile(r'nomadVar\s+"([^"]+)"')
HRWSI_FORM = re.compile(r'\{\{ with nomadVar "(?P<path>[^"]+)" \}\}\{\{ range \.Tuples \}\}'
                        r'\{\{ \.K \}\}=\{\{ \.V \| toJSON \}\}\n\{\{ end \}\}\{\{ end \}\}')


def _variable_ref(reference: str, namespace: str) -> tuple[str, str, str]:
    """nomadVar's argument `path[@namespace[.region]]`: (path, namespace, how Nomad names the dependency)."""
    path, _, where = reference.partition("@")
    variable_namespace = where.split(".", 1)[0] if where else namespace
    return path, variable_namespace, f"nomad.var.block({path}@{variable_namespace}.global)"


def _read(cluster: Cluster, job: dict, group: dict, task: dict, reference: str) -> tuple[str | None, dict]:
    """(problem, items): problem is "Missing: ..." or an error text; None and the items when readable."""
    path, namespace, dependency = _variable_ref(reference, job["Namespace"])
    if cluster.acl_enabled and not workload_may_read(path, job["Namespace"], job.get("ParentID") or job["ID"],
                                                     group["Name"], task["Name"], namespace,
                                                     cluster.workload_variable_paths):
        return f"{dependency}: Unexpected response code: 403 (Permission denied)", {}
    variable = cluster.variables.get((namespace, path))
    if variable is None:
        return f"Missing: {dependency}", {}
    return None, dict(variable["Items"])


def _render_one(cluster: Cluster, job: dict, group: dict, task: dict, text: str) -> tuple[str | None, str]:
    if "{{" not in text:
        return None, text
    form = HRWSI_FORM.fullmatch(text)
    if form is None:
        return "emulator (test double): only the nomadVar template hrwsi writes is emulated", ""
    problem, items = _read(cluster, job, group, task, form.group("path"))
    if problem is not None:
        return problem, ""
    return None, "".join(f"{key}={json.dumps(value)}\n" for key, value in items.items())


def _env_file(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            env[key.strip()] = json.loads(value) if value.startswith('"') else value
    return env


def render_templates(cluster: Cluster, job: dict, group: dict, task: dict,
                     task_dir: Path) -> tuple[str | None, dict[str, str]]:
    """Render every template of the task into its directory: (problem or None, environment from env templates)."""
    env: dict[str, str] = {}
    missing = []
    for template in task.get("Templates") or []:
        problem, text = _render_one(cluster, job, group, task, template.get("EmbeddedTmpl") or "")
        if problem is not None and problem.startswith("Missing: "):
            missing.append(problem.removeprefix("Missing: "))
            continue
        if problem is not None:
            return problem, {}
        target = (task_dir / (template.get("DestPath") or "local/template")).resolve()
        if task_dir.resolve() not in target.parents:
            return f"template destination {template.get('DestPath')!r} escapes the task directory", {}
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if template.get("Envvars"):
            env.update(_env_file(text))
    if missing:
        return "Missing: " + ", ".join(sorted(missing)), {}
    return None, env
