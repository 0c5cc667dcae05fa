# What the launcher's Nomad backend registers for one attempt (hrwsi.backends.nomad.job_spec.build_job), in HCL:
# attempt 1 of task 42, routine snow_cover, pinned to its planned worker. The launcher submits the
# JSON form through the API; this file is for reading, and for running one attempt by hand:
#
#   nomad job run nomad-jobs/hrwsi-routine-example.nomad.hcl
#
# tests/unit/test_nomad_jobs_hcl.py checks that it agrees with build_job field by field, and that every
# block and attribute is one Nomad's job parser knows (hrwsi.testing.nomad_api_schema).

job "hrwsi-snow_cover-42-1" {
  type        = "batch" # Nomad's default is "service": always say batch
  datacenters = ["*"]
  namespace   = "default"
  node_pool   = "default" # HRWSI_NOMAD_NODE_POOL; Nomad puts a job without one in "default"
  priority    = 59 # a task served urgently (near-real-time); back-fill 50, Nomad's default (job_spec.nomad_priority)

  # Shown in Nomad's UI: which hrwsi task, input and attempt this job is, and the hrwsi version and
  # installation that registered it (a launcher follows a job on its attempt's ID only if it is its own).
  meta {
    hrwsi_task_id      = "42"
    hrwsi_input_path   = "/srv/hrwsi/data/products/atmospheric_correction/task-41/attempt-1/S2A_L2A_20240501T103021_T32TPR.json"
    hrwsi_routine      = "snow_cover"
    hrwsi_condition    = "l2a_for_snow"
    hrwsi_tile         = "32TPR"
    hrwsi_attempt      = "1"
    hrwsi_version      = "0.1.0+schema0129"
    hrwsi_installation = "installation-uuid"  # (hrwsi.installation's id: a UUID)
  }

  group "hrwsi" {
    count = 1

    # Pin placement: the worker the orchestrator planned. Flavour placement (HRWSI_NOMAD_PLACEMENT=flavour)
    # says attribute = "${node.class}", value = "<the worker's flavour>" instead.
    constraint {
      attribute = "${node.unique.name}"
      operator  = "="
      value     = "worker-large-01"
    }

    # hrwsi owns retries: Nomad neither restarts nor reschedules an attempt.
    restart {
      attempts = 0
      mode     = "fail"
      interval = "24h"
      delay    = "15s"
    }

    reschedule {
      attempts       = 0
      unlimited      = false
      interval       = "24h"
      delay          = "5s"
      delay_function = "constant"
    }

    # A node that goes down: Nomad would replace the allocation whatever the reschedule block says;
    # with replace = false it leaves it "unknown", and the launcher retries the attempt itself, once
    # the node's client must have stopped it: a client cut off from the servers keeps running its
    # allocations for stop_on_client_after (HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S), then stops them.
    disconnect {
      replace              = false
      stop_on_client_after = "1m"
    }

    # The routine's storage: disk belongs to the group (a task asking for disk is rejected), and
    # must exceed the task's log storage (logs below: 5 x 20 MB).
    ephemeral_disk {
      size = 5000
    }

    task "snow_cover" {
      driver = "raw_exec" # "docker" with config.image when the routine names an image

      config {
        command = "/opt/hrwsi/venv/bin/python"
        args = [
          "-m", "hrwsi.routines.snow_cover",
          "--input", "/srv/hrwsi/data/products/atmospheric_correction/task-41/attempt-1/S2A_L2A_20240501T103021_T32TPR.json",
          "--output-dir", "/srv/hrwsi/data/products/installation-uuid/snow_cover/task-42/attempt-1/output",
          "--manifest", "/srv/hrwsi/data/products/installation-uuid/snow_cover/task-42/attempt-1/manifest.json",
        ]
      }

      # The task's metadata as the routine reads it, plus the routine's own variables. Never a secret:
      # with HRWSI_NOMAD_SECRETS_VARIABLE set, a template renders a Nomad Variable into the environment.
      env {
        HRWSI_JOB_ID     = "hrwsi-snow_cover-42-1"
        HRWSI_TASK_ID    = "42"
        HRWSI_ATTEMPT    = "1"
        HRWSI_ROUTINE    = "snow_cover"
        HRWSI_CONDITION  = "l2a_for_snow"
        HRWSI_INPUT_PATH = "/srv/hrwsi/data/products/atmospheric_correction/task-41/attempt-1/S2A_L2A_20240501T103021_T32TPR.json"
        HRWSI_OUTPUT_DIR = "/srv/hrwsi/data/products/installation-uuid/snow_cover/task-42/attempt-1/output"
        HRWSI_TILE       = "32TPR"
        HRWSI_MANIFEST   = "/srv/hrwsi/data/products/installation-uuid/snow_cover/task-42/attempt-1/manifest.json"
      }

      # 1 planned core = 1000 MHz (HRWSI_NOMAD_MHZ_PER_CORE), rounded up; memory in MB.
      resources {
        cpu    = 1000
        memory = 3000
      }

      kill_timeout = "30s"

      logs {
        max_files     = 5
        max_file_size = 20
      }
    }
  }
}
