"""`make chaos`: fault injection on real service processes (see hrwsi.testing.chaos); prints the figures and
writes bench-results/chaos.json. Defaults: 20 runs of 1,000 inputs, 6 faults per run, the local backend
and the Nomad backend on the Nomad API emulator (test double) taking turns. Exits 1 when a figure that
must be 0 is not (a failed run keeps its database, logs and diagnosis.txt)."""

import argparse
import json
from pathlib import Path

from hrwsi.testing.chaos import BACKENDS, run_campaign
from hrwsi.testing.chaos_faults import FAULTS, NOMAD_FAULTS

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--faults-per-run", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stall", type=float, default=120.0,
                        help="a run fails when no task became final for this many seconds (default 120)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="the longest a run may take (default 1800 s)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated, taking turns run by run (default: local,nomad-emulator)")
    parser.add_argument("--faults", default=None,
                        help=f"comma-separated fault kinds to draw from (default: all that apply): "
                             f"{', '.join(FAULTS + NOMAD_FAULTS)}")
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "chaos.json"))
    args = parser.parse_args()
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if not backends or set(backends) - set(BACKENDS):
        parser.error(f"--backends: choose among {', '.join(BACKENDS)}")
    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip()) if args.faults else None
    if faults is not None and (not faults or set(faults) - set(FAULTS + NOMAD_FAULTS)):
        parser.error(f"--faults: choose among {', '.join(FAULTS + NOMAD_FAULTS)}")
    report = run_campaign(args.runs, args.inputs, seed=args.seed, faults_per_run=args.faults_per_run,
                          timeout_s=args.timeout, stall_s=args.stall, backends=backends, faults=faults)
    summary = report.summary()
    for key, value in summary.items():
        print(f"{key}: {value}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "runs": [vars(r) for r in report.runs]}, indent=2))
    print(f"written to {out}")
    raise SystemExit(1 if summary["runs_failed"] else 0)


if __name__ == "__main__":
    main()
