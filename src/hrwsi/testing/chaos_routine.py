"""The routine of the fault-injection runs: works a moment, writes one small product named after its
task, and records its execution in the run's ledger.

The ledger (HRWSI_CHAOS_LEDGER, one per run) is append-only JSON lines written by the routines
themselves, so it says what really ran whatever the database says: a `start` line before any work
and an `end` line once the product is written, each with the task, attempt, job ID, pid and time.
Each line is one write(2) on a descriptor opened with O_APPEND: lines of routines running at the same
time never interleave. `hrwsi.testing.chaos_ledger` reads it.
"""

import json
import os
import random
import sys
import time
from pathlib import Path


def record(event: str) -> None:
    ledger = os.environ.get("HRWSI_CHAOS_LEDGER")
    if not ledger:
        return
    line = json.dumps({"event": event, "task": int(os.environ["HRWSI_TASK_ID"]),
                       "attempt": int(os.environ["HRWSI_ATTEMPT"]), "job": os.environ["HRWSI_JOB_ID"],
                       "pid": os.getpid(), "at": time.time()}) + "\n"
    descriptor = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


def main() -> None:
    product_type = sys.argv[1]
    record("start")
    # Long enough for a fault to catch routines in the middle of their work.
    time.sleep(random.uniform(0.05, float(os.environ.get("HRWSI_CHAOS_WORK_S", "0.4"))))
    output_dir = Path(os.environ["HRWSI_OUTPUT_DIR"])
    name = f"{product_type}-task{os.environ['HRWSI_TASK_ID']}-attempt{os.environ['HRWSI_ATTEMPT']}.txt"
    (output_dir / name).write_text(os.environ["HRWSI_INPUT_PATH"])
    record("end")


if __name__ == "__main__":
    main()
