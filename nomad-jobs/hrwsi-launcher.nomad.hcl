# hrwsi launcher: submits ready tasks as Nomad batch jobs and records how they end (a long-running service).
#
#   nomad var put nomad/jobs/hrwsi database_url=postgresql://hrwsi:...@db.internal:5432/hrwsi nomad_token=...
#   nomad job run -var 'hrwsi_bin=/opt/hrwsi/venv/bin/hrwsi' nomad-jobs/hrwsi-launcher.nomad.hcl
#
# No secret is written here: HRWSI_DATABASE_URL and NOMAD_TOKEN come from the Nomad Variable nomad/jobs/hrwsi through
# the template below (see nomad-jobs/README.md for the ACL policy that lets this job read it).

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "hrwsi_bin" {
  description = "the hrwsi executable on the client nodes (a virtualenv's bin/hrwsi)"
  type        = string
  default     = "/opt/hrwsi/venv/bin/hrwsi"
}

variable "nomad_addr" {
  description = "the Nomad HTTP API the launcher submits to (the local agent by default)"
  type        = string
  default     = "http://127.0.0.1:4646"
}

variable "placement" {
  description = "pin (a job runs on its planned node) or flavour (any node of the node class)"
  type        = string
  default     = "pin"
}

variable "mhz_per_core" {
  description = "Nomad counts CPU in MHz: how many MHz one planned core is"
  type        = string
  default     = "1000"
}

variable "log_format" {
  description = "the service's log on the allocation's stderr: text, or json (one JSON object a line) for a log shipper"
  type        = string
  default     = "text"
}

variable "hrwsi_home" {
  description = "where hrwsi keeps data (a shared filesystem in production)"
  type        = string
  default     = "/srv/hrwsi"
}

job "hrwsi-launcher" {
  type        = "service"
  datacenters = var.datacenters

  meta {
    hrwsi_service = "launcher"
  }

  group "launcher" {
    # Two copies are safe: dispatch is serialised by an advisory lock and a dead launcher's jobs
    # are adopted by the other (ADR 0002); Nomad jobs outlive a launcher restart.
    count = 1

    restart {
      attempts = 3
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    reschedule {
      unlimited      = true
      delay          = "30s"
      delay_function = "exponential"
      max_delay      = "10m"
    }

    # This instance's /metrics, /healthz and /readyz (HRWSI_HTTP_PORT below).
    network {
      port "http" {}
    }

    task "launcher" {
      driver = "raw_exec"

      config {
        command = var.hrwsi_bin
        args    = ["launcher"]
      }

      env {
        HRWSI_HOME               = var.hrwsi_home
        HRWSI_LOG_FORMAT         = var.log_format
        HRWSI_BACKEND            = "nomad"
        HRWSI_BACKSTOP_POLL_S    = "2"
        HRWSI_HEARTBEAT_S        = "5"
        NOMAD_ADDR               = var.nomad_addr
        HRWSI_NOMAD_PLACEMENT    = var.placement
        HRWSI_NOMAD_MHZ_PER_CORE = var.mhz_per_core
        HRWSI_NOMAD_PURGE        = "true"
        HRWSI_HTTP_PORT          = "${NOMAD_PORT_http}"
        HRWSI_HTTP_HOST          = "${NOMAD_IP_http}"
      }

      # Secrets: rendered from a Nomad Variable into the task's secrets directory, exported as env.
      template {
        destination = "secrets/hrwsi.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
        {{ with nomadVar "nomad/jobs/hrwsi" }}
        HRWSI_DATABASE_URL={{ .database_url | toJSON }}
        NOMAD_TOKEN={{ .nomad_token | toJSON }}
        {{ end }}
        EOT
      }

      # Nomad-native service and checks (no Consul), on THIS instance's own endpoints: /healthz fails
      # when its loop or its heartbeat task hangs (not when the database is away), and three failures
      # in a row restart it; /readyz also needs the database and a fresh heartbeat. Prometheus finds
      # the instances through the same registration (README.md, "Metrics and health").
      service {
        name     = "hrwsi-launcher"
        provider = "nomad"
        port     = "http"
        tags     = ["hrwsi", "metrics"]

        check {
          name     = "alive"
          type     = "http"
          path     = "/healthz"
          interval = "10s"
          timeout  = "3s"

          check_restart {
            limit = 3
            grace = "60s"
          }
        }

        check {
          name     = "ready"
          type     = "http"
          path     = "/readyz"
          interval = "10s"
          timeout  = "5s"
        }
      }

      resources {
        cpu    = 300
        memory = 256
      }

      # On stop the launcher leaves its running jobs to Nomad (another launcher adopts them).
      kill_timeout = "30s"
    }
  }
}
