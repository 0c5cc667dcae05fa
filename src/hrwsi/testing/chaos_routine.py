"""The routine of the fault-injection runs: writes one small product named after its task."""

import os
import sys
from pathlib import Path


def main() -> None:
    product_type = sys.argv[1]
    output_dir = Path(os.environ["HRWSI_OUTPUT_DIR"])
    name = f"{product_type}-task{os.environ['HRWSI_TASK_ID']}-attempt{os.environ['HRWSI_ATTEMPT']}.txt"
    (output_dir / name).write_text(os.environ["HRWSI_INPUT_PATH"])


if __name__ == "__main__":
    main()
