"""peptide-losses: sequence spectra files, rescore another tool's PSMs, evaluate PSMs.

    peptide-losses sequence SPECTRA -o psms.mztab [--checkpoint PATH] [--beam-size K] [--top-k N]
    peptide-losses rescore PSMS.mztab SPECTRA -o rescored.mztab [--weight W]
    peptide-losses evaluate PSMS.mztab ANNOTATED [--peprec FILE] [--plot curve.png] [--json out.json]
    peptide-losses fit-judge ANNOTATED -o JUDGE.json [--peprec FILE] [--checkpoint PATH]

SPECTRA and ANNOTATED are MGF or mzML files, or the name of a real set that ships with the
package (:data:`peptide_losses.datasets.REAL_SETS`). Bad input (a missing or malformed file, a
spectrum without precursor, a PSM of no spectrum, an unknown modification, a checkpoint that does
not fit) ends with one line on stderr naming the file, the item and what is wrong, and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from . import evaluate, fit_judge, rescore, sequence
from .inputs import check_outputs

COMMANDS = {"sequence": sequence, "rescore": rescore, "evaluate": evaluate, "fit-judge": fit_judge}
#: Exit code of bad input, as argparse uses for a bad command line.
BAD_INPUT = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peptide-losses", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_arguments(commands.add_parser(name, help=module.HELP, description=module.__doc__,
                                                 formatter_class=argparse.RawDescriptionHelpFormatter))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def one_line(message, *_, **__):  # a warning reads like the errors, not as a source line and a traceback
        print(f"peptide-losses {args.command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = one_line
        try:
            check_outputs(args)
            return COMMANDS[args.command].run(args)
        except (ValueError, OSError) as err:  # bad input: every such error names its file and item
            print(f"peptide-losses {args.command}: error: {err}".splitlines()[0], file=sys.stderr)
            return BAD_INPUT
