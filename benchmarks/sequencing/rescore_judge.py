"""A judge of another tool's PSMs (``fit-judge --psms``, ``rescore --judge``) against the tool's own order
and the plain rescore, measured as a user runs them: the command line writes and reads mzTab.

    python -m benchmarks.sequencing.rescore_judge        # CPU, ~2 minutes on 2 cores

The tool is the shipped checkpoint's spectrum-guided beam with the spectrum rerank
(``sequence --decoding default --top-k K``): the one model whose PSMs on real annotated spectra
this sandbox can produce. Its judge is fitted on the MassIVE-KB calibration half only; every
number is on the Casanovo sample and the MassIVE-KB test half. Writes
``results/cpu/rescore_judge.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from peptide_losses.datasets import REPORTED_SETS

from ..environment import RESULTS_ROOT, describe, save_results
from .real_sets import run

ORDERS = {"the tool's order": [], "plain rescore (weight 100)": None, "rescore --judge": None}


def metrics(psms: Path, annotated: str, folder: Path) -> dict:
    out = folder / f"{psms.stem}.json"
    run(["evaluate", psms, annotated, "--json", out])
    record = json.loads(out.read_text())
    return {key: record[key] for key in ("spectra", "peptide_recall", "auc")}


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--top-k", type=int, default=20, help="the tool's PSMs per spectrum (default: %(default)s)")
    p.add_argument("--results", default=str(RESULTS_ROOT))
    args = p.parse_args(argv)
    results = {"environment": describe(torch.device("cpu")), "top_k": args.top_k, "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tool = {}
        for name in ("massivekb-calibration", *REPORTED_SETS):
            tool[name] = folder / f"{name}.mztab"
            run(["sequence", name, "-o", tool[name], "--decoding", "default", "--top-k", args.top_k,
                 "--no-progress"])
        judge = folder / "tool.judge.json"
        said = run(["fit-judge", "massivekb-calibration", "--psms", tool["massivekb-calibration"], "-o", judge,
                    "--no-progress"]).strip().splitlines()[-1]
        results["fit"] = said.split(": ")[-1].split(" -> ")[0]  # what it was fitted on, without the temporary paths
        for name in REPORTED_SETS:
            plain, judged = folder / f"{name}.plain.mztab", folder / f"{name}.judged.mztab"
            run(["rescore", tool[name], name, "-o", plain])
            run(["rescore", tool[name], name, "-o", judged, "--judge", judge])
            results["sets"][name] = {order: metrics(path, name, folder) for order, path in
                                     zip(ORDERS, (tool[name], plain, judged))}
    env = results["environment"]
    lines = [f"# A judge of a tool's PSMs (rescore --judge) on real spectra ({env['device']})", "",
             f"{env['date']}; torch {env['torch']}. The tool: the shipped checkpoint's `sequence --decoding default "
             f"--top-k {args.top_k}`. Judge fitted on the MassIVE-KB calibration half ({results['fit']}). Command: "
             "`python -m benchmarks.sequencing.rescore_judge`.", "",
             "| set | spectra | order | peptide recall | precision-coverage AUC |", "|---|---:|---|---:|---:|"]
    for name, orders in results["sets"].items():
        for order, m in orders.items():
            lines.append(f"| {name} | {m['spectra']} | {order} | {m['peptide_recall']:.3f} | {m['auc']:.3f} |")
    return save_results(Path(args.results) / "cpu", "rescore_judge", results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    print(main())
