"""`python -m agentmesh.tools.export [--out DIR] [--model NAME ...]`: write the .tflite files."""

from __future__ import annotations

import argparse
from pathlib import Path

from agentmesh.edge.models import MODEL_SPECS, model_file

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "edge" / "models"


def main(argv: list[str] | None = None) -> int:
    """Export each requested model with its seeded initial weights."""
    parser = argparse.ArgumentParser(prog="python -m agentmesh.tools.export")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--model", action="append", choices=sorted(MODEL_SPECS), help="default: all models"
    )
    args = parser.parse_args(argv)
    from agentmesh.tools.export.exporter import export_tflite  # imports TensorFlow

    for name in args.model or sorted(MODEL_SPECS):
        flatbuffer = export_tflite(MODEL_SPECS[name])
        target = args.out / model_file(name)
        target.write_bytes(flatbuffer)
        print(f"wrote {target} ({len(flatbuffer)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
