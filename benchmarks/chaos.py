"""`make chaos`: fault injection on real service processes (see hrwsi.testing.chaos); prints the figures and
writes bench-results/chaos.json. Defaults: 20 runs of 1,000 inputs, 4 faults per run, the local
backend and the Nomad backend on the Nomad API emulator (test double) taking turns."""

import argparse
import json
from pathlib import Path

from hrwsi.testing.chaos import BACKENDS, run_campaign

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--faults-per-run", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated, taking turns run by run (default: local,nomad-emulator)")
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "chaos.json"))
    args = parser.parse_args()
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    unknown = set(backends) - set(BACKENDS)
    if not backends or unknown:
        parser.error(f"--backends: choose among {', '.join(BACKENDS)}")
    report = run_campaign(args.runs, args.inputs, seed=args.seed, faults_per_run=args.faults_per_run,
                          backends=backends)
    summary = report.summary()
    for key, value in summary.items():
        print(f"{key}: {value}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "runs": [vars(r) | {"faults": dict(r.faults)}
                                                           for r in report.runs]}, indent=2))
    print(f"written to {out}")
    failed = any(run.failed for run in report.runs)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
