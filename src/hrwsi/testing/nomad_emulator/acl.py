"""ACL in the emulator (test double): tokens, the capabilities each endpoint needs, and workload identities.

A management token (NomadEmulator(acl_token=...)) may do anything. Other tokens carry a policy
(acl_policies={secret: AclPolicy(...)}) and are checked against the capability the endpoint needs,
as Nomad's endpoints do (nomad/job_endpoint.go, nomad/node_endpoint.go, nomad/event_endpoint.go,
client/fs_endpoint.go, nomad/variables_endpoint.go; names from acl/policy.go):

- the fs logs endpoint needs `read-logs` or `read-fs` (client/fs_endpoint.go, `logs`): a token with
  only submit-job/read-job/list-jobs gets 403 there;
- a task's workload identity may read, without any policy, only the Variables `nomad/jobs`,
  `nomad/jobs/<job>`, `nomad/jobs/<job>/<group>` and `nomad/jobs/<job>/<group>/<task>` of its own
  namespace (acl/acl.go, matchingVariablesCapabilitySet); anything else needs a policy attached to
  the namespace's workloads (workload_variable_paths).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

# What the write policy of a namespace expands to (acl/policy.go, expandNamespacePolicy).
READ = frozenset({"list-jobs", "parse-job", "read-job", "csi-list-volume", "csi-read-volume", "read-job-scaling",
                  "list-scaling-policies", "read-scaling-policy", "host-volume-read"})
WRITE = READ | {"scale-job", "submit-job", "dispatch-job", "read-logs", "read-fs", "alloc-exec", "alloc-lifecycle",
                "csi-mount-volume", "csi-write-volume", "submit-recommendation", "host-volume-create"}


@dataclass(frozen=True)
class AclPolicy:
    """What a non-management token may do: namespace capabilities, node and agent policies, Variables."""

    capabilities: frozenset[str] = frozenset()          # in the namespaces below
    namespaces: tuple[str, ...] = ("default",)
    node: str = ""                                      # "", "read" or "write"
    variables: dict[str, frozenset[str]] = field(default_factory=dict)  # path glob -> read/write/list/destroy
    node_pools: tuple[str, ...] = ()                    # pools with `node_pool "NAME" { policy = "read" }`


@dataclass(frozen=True)
class Need:
    """One permission an endpoint needs: a namespace capability (any of), or a node/management right."""

    any_of: tuple[str, ...] = ()
    node: str = ""             # "read" or "write"
    management: bool = False


def need_for(method: str, path: str, *, purge: bool = False) -> Need | None:
    """The permission a request needs; None: anyone may (status endpoints)."""
    if path.startswith("/v1/status/") or path in ("/v1/agent/health", "/v1/regions"):
        # (nomad/regions_endpoint.go Region.List: "intentionally throwing away any auth error")
        return None
    if path == "/v1/system/gc" or path.startswith("/v1/operator/"):
        # (operator:read or operator:write, nomad/operator_endpoint.go; AclPolicy has no operator rule)
        return Need(management=True)
    if path.startswith("/v1/client/fs/logs/"):
        return Need(any_of=("read-logs", "read-fs"))
    if path.startswith("/v1/client/fs/"):
        return Need(any_of=("read-fs",))
    if path.startswith("/v1/node"):
        return Need(node="write" if method in ("POST", "PUT") else "read")
    if path.startswith("/v1/var"):
        return Need(any_of=("variables",))  # checked against the policy's variables paths
    if path == "/v1/jobs" and method == "GET":
        return Need(any_of=("list-jobs",))
    if path.startswith("/v1/job/") and path.endswith("/plan"):
        # nomad/job_endpoint.go Job.Plan: submit-job or plan-job ("Check job submission permissions, which we
        # assume is the same for plan"); it registers nothing
        return Need(any_of=("submit-job", "plan-job"))
    if path.endswith("/dispatch"):
        return Need(any_of=("dispatch-job",))
    if path.startswith("/v1/job/") and path.endswith("/scale") and method in ("POST", "PUT"):
        # nomad/job_endpoint.go Job.Scale: scale-job or submit-job
        return Need(any_of=("scale-job", "submit-job"))
    if method in ("POST", "PUT"):
        return Need(any_of=("submit-job", "register-job"))
    if method == "DELETE":
        # nomad/job_endpoint.go Job.Deregister: submit-job or purge-job; deregister-job only to stop, not purge
        return Need(any_of=("submit-job", "purge-job") if purge else ("submit-job", "purge-job", "deregister-job"))
    return Need(any_of=("read-job",))


def allows(policy: AclPolicy, need: Need, namespace: str, variable_path: str = "",
           variable_capability: str = "read") -> bool:
    if need.management:
        return False
    if need.node:
        return policy.node == "write" or (need.node == "read" and policy.node == "read")
    if need.any_of == ("variables",):
        return any(fnmatch.fnmatchcase(variable_path, glob) and variable_capability in caps
                   for glob, caps in policy.variables.items())
    return namespace in policy.namespaces and any(c in policy.capabilities for c in need.any_of)


def workload_may_read(path: str, namespace: str, job: str, group: str, task: str, variable_namespace: str,
                      namespace_wide_paths: tuple[str, ...] = ()) -> bool:
    """Whether a task's workload identity may read a Variable (acl/acl.go, matchingVariablesCapabilitySet)."""
    if variable_namespace != namespace:
        return False
    implicit = ("nomad/jobs", f"nomad/jobs/{job}", f"nomad/jobs/{job}/{group}", f"nomad/jobs/{job}/{group}/{task}")
    return path in implicit or any(fnmatch.fnmatchcase(path, glob) for glob in namespace_wide_paths)
