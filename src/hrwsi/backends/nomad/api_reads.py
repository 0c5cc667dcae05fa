"""Every field the Nomad backend reads from Nomad's answers, by the API struct that carries it.

Nomad never errors on a field it does not have: a misspelled key in what hrwsi reads is just
always missing. tests/unit/test_nomad_api_fields.py checks each path below against the field
names of Nomad's own `api/` package (pinned in hrwsi.testing.nomad_api_fields, for the oldest and
the newest Nomad supported), and checks that every field name the backend's code uses is
declared here. A path steps through fields with `.`; `*` steps into a list or a map.
"""

from __future__ import annotations

READS: dict[str, tuple[str, ...]] = {
    # GET /v1/job/:id/allocations; Allocation events carry the same fields (and more)
    "AllocationListStub": ("ID", "JobID", "Namespace", "NodeID", "NodeName", "ClientStatus", "ClientDescription",
                           "DesiredStatus", "DesiredDescription", "CreateIndex", "ModifyIndex",
                           # (Name's [index]: the attempt's allocation is index 0; JobVersion: an admin's
                           # raised Count is scaled back once per job version)
                           "Name", "JobVersion",
                           "TaskStates.*.StartedAt", "TaskStates.*.FinishedAt", "TaskStates.*.Events.*.Type",
                           "TaskStates.*.Events.*.Time", "TaskStates.*.Events.*.Details",
                           "TaskStates.*.Events.*.DisplayMessage", "TaskStates.*.Events.*.Message",
                           # deprecated in favour of Details[...]: read only when Details lacks the value
                           "TaskStates.*.Events.*.ExitCode", "TaskStates.*.Events.*.Signal",
                           "TaskStates.*.Events.*.FailsTask", "TaskStates.*.Events.*.DriverError",
                           "TaskStates.*.Events.*.SetupError", "TaskStates.*.Events.*.ValidationError",
                           "TaskStates.*.Events.*.DownloadError"),
    "Allocation": ("ID", "JobID", "Namespace", "ClientStatus", "TaskStates"),
    # GET /v1/job/:id/evaluations and Evaluation events: why a job waits
    "Evaluation": ("JobID", "Namespace", "Status", "CreateIndex", "FailedTGAllocs.*.NodesEvaluated",
                   "FailedTGAllocs.*.NodesInPool", "FailedTGAllocs.*.NodesExhausted",
                   "FailedTGAllocs.*.DimensionExhausted", "FailedTGAllocs.*.ConstraintFiltered",
                   "FailedTGAllocs.*.QuotaExhausted"),
    # GET /v1/job/:id and Job events
    # (Meta: whose job it is, hrwsi_installation, and which registration made it; SubmitTime: when,
    # said of a job another timeline of the installation registered on an attempt's ID)
    # (Version, TaskGroups' Name and Count: an admin raised the group's count, `nomad job scale`)
    # (TaskGroups' Tasks' Env: the output directory a claim's own job was registered with, runs_as)
    "Job": ("ID", "Namespace", "Status", "Meta", "Stop", "SubmitTime", "Version", "TaskGroups.*.Name",
            "TaskGroups.*.Count", "TaskGroups.*.Tasks.*.Env"),
    # GET /v1/jobs (the blocking query without the event stream, list_jobs; with meta=true, whose jobs are in
    # the namespace: another installation's, _watch_the_namespace)
    "JobListStub": ("ID", "Status", "ModifyIndex", "JobSummary", "Stop", "Meta"),
    # POST /v1/jobs (JobModifyIndex: where the index of jobs stands while Nomad's state lasts)
    "JobRegisterResponse": ("Warnings", "JobModifyIndex"),
    # GET /v1/event/stream
    # (Key: a frame known again by its events, a server whose event buffer lags: following._frame_events)
    "Events": ("Index", "Events.*.Topic", "Events.*.Type", "Events.*.Key", "Events.*.Payload"),
    # GET /v1/nodes?resources=true
    "NodeListStub": ("ID", "Name", "Status", "SchedulingEligibility", "Drain", "NodeClass", "NodePool",
                     "NodeResources.Cpu.CpuShares", "NodeResources.Cpu.TotalCpuCores",
                     "NodeResources.Memory.MemoryMB", "NodeResources.Disk.DiskMB",
                     "ReservedResources.Cpu.CpuShares", "ReservedResources.Memory.MemoryMB",
                     "ReservedResources.Disk.DiskMB"),
    # a node read whole (older agents list nodes without NodeResources)
    "Node": ("Resources.CPU", "Resources.MemoryMB", "Resources.DiskMB", "Reserved.CPU", "Reserved.MemoryMB",
             "Reserved.DiskMB"),
}

# Names the backend's code uses that are values, not fields: event topics and types, task event types.
NOT_FIELDS = frozenset({
    "Allocation", "Evaluation", "Job", "JobDeregistered", "JobBatchDeregistered",
    "Started", "Terminated", "Killed", "Killing", "Template",
})
