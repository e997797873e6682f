"""``python -m bench``: run every benchmark, save JSON, rewrite the README's table."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from bench import (
    dag_parse,
    embed_throughput,
    grounding_throughput,
    monitor,
    orchestration,
    train_step,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
BENCHMARKS = {
    "embed_throughput": embed_throughput.run,
    "train_step": train_step.run,
    "grounding_throughput": grounding_throughput.run,
    "dag_parse": dag_parse.run,
    "orchestration": orchestration.run,
    "monitor": monitor.run,
}


def machine() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {device}"
    )


def table(results: dict[str, list[dict]]) -> str:
    lines = [
        f"Measured on {machine()} (`make bench`).",
        "",
        "| benchmark | variant | throughput | peak RSS | vs baseline |",
        "|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        for row in rows:
            lines.append(
                f"| {name} | {row['variant']} | {row['throughput']:.1f} {row['unit']} | "
                f"{row['peak_rss_mb']:.0f} MB | {row['ratio']:.2f}x |"
            )
    return "\n".join(lines)


def update_readme(text: str) -> None:
    if not README.exists():
        return
    content = README.read_text()
    if START not in content or END not in content:
        return
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="run one benchmark")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md as it is")
    args = parser.parse_args(argv)
    results = {name: bench() for name, bench in BENCHMARKS.items() if args.only in (None, name)}
    previous = RESULTS / "latest.json"
    if args.only and previous.is_file():  # keep the other benchmarks' last results
        results = {**json.loads(previous.read_text()), **results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    rendered = table(results)
    print(rendered)
    if not args.no_readme:
        update_readme(rendered)


if __name__ == "__main__":
    main()
