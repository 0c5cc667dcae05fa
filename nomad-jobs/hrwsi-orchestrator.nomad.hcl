# hrwsi orchestrator: plans every pending task on the workers within the horizon (a long-running service).
#
#   nomad var put nomad/jobs/hrwsi database_url=postgresql://hrwsi:...@db.internal:5432/hrwsi
#   nomad job run -var 'hrwsi_bin=/opt/hrwsi/venv/bin/hrwsi' nomad-jobs/hrwsi-orchestrator.nomad.hcl
#
# No secret is written here: HRWSI_DATABASE_URL comes from the Nomad Variable nomad/jobs/hrwsi through
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

job "hrwsi-orchestrator" {
  type        = "service"
  datacenters = var.datacenters

  meta {
    hrwsi_service = "orchestrator"
  }

  group "orchestrator" {
    # One orchestrator plans at a time (advisory lock, ADR 0002): a second copy is a hot standby.
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

    task "orchestrator" {
      driver = "raw_exec"

      config {
        command = var.hrwsi_bin
        args    = ["orchestrator"]
      }

      env {
        HRWSI_HOME            = var.hrwsi_home
        HRWSI_LOG_FORMAT      = var.log_format
        HRWSI_BACKSTOP_POLL_S = "2"
        HRWSI_HEARTBEAT_S     = "5"
        HRWSI_HTTP_PORT       = "${NOMAD_PORT_http}"
        HRWSI_HTTP_HOST       = "${NOMAD_IP_http}"
      }

      # Secrets: rendered from a Nomad Variable into the task's secrets directory, exported as env.
      template {
        destination = "secrets/hrwsi.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
        {{ with nomadVar "nomad/jobs/hrwsi" }}
        HRWSI_DATABASE_URL={{ .database_url | toJSON }}
        {{ end }}
        EOT
      }

      # Nomad-native service and checks (no Consul), on THIS instance's own endpoints: /healthz fails
      # when its loop or its heartbeat task hangs (not when the database is away), and three failures
      # in a row restart it; /readyz also needs the database and a fresh heartbeat. Prometheus finds
      # the instances through the same registration (README.md, "Metrics and health").
      service {
        name     = "hrwsi-orchestrator"
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
        cpu    = 1000
        memory = 1024
      }

      kill_timeout = "20s"
    }
  }
}
