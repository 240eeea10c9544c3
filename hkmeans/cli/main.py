"""``hkmeans``: the command line (argparse: the standard library, nothing to install).

Every error a user can cause is one line on stderr and exit status 2, raised before
anything is written or after what was written is complete.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import warnings

from .._kernels import silence_compile_notice
from .._progress import Heartbeat, TqdmHandler, log
from .._version import __version__
from ..io import InputError
from . import commands, dedup
from . import config as cfg
from .config import ConfigError
from .run_layout import RunDirError

USAGE_ERROR = 2
#: Commands that may run for minutes: without a terminal (a batch job, a log file),
#: they write time-stamped progress lines instead of bars.
LONG = ("fit", "curate")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other error
        self.exit(USAGE_ERROR, f"hkmeans: error: {message} (see {self.prog} --help)\n")


def _flag(p, key, spec):
    """The flag of config key ``key``: its type, choices and help (with the default)
    all from the one table in :mod:`.config`."""
    if spec.choices is not None:
        kind = dict(choices=spec.choices)
    elif key in cfg.PER_LEVEL:
        kind = dict(type=cfg.int_list)
    else:
        kind = dict(type=spec.parse or (float if cfg.is_float(spec) else int))
    default = "" if spec.default is None else f" (default: {spec.default})"
    p.add_argument("--" + key.replace("_", "-"), dest=key, metavar=spec.metavar, help=spec.help + default, **kind)


def _fit_options(p):
    for key, spec in {**cfg.FIT_KEYS, **cfg.DEDUP_KEYS, **cfg.INPUT_KEYS, **cfg.RUN_KEYS}.items():
        if key != "seed":
            _flag(p, key, spec)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a RUN_DIR that holds another run (deletes only what hkmeans wrote there)",
    )


def _input(p):
    p.add_argument(
        "embeddings",
        metavar="EMBEDDINGS",
        help="a 2-D float or integer .npy file (memory-mapped); a directory or glob of .npy shards "
        "or of Parquet files; a Parquet file; or a zarr array's directory",
    )


def _sample_options(p):
    for key, spec in cfg.SAMPLE_KEYS.items():
        _flag(p, key, spec)
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="indices file, X.npy; the selected rows go beside it to X.parquet "
        "(default: RUN_DIR/indices.npy and RUN_DIR/selected.parquet)",
    )
    _force(p)


def _force(p):
    p.add_argument(
        "--force",
        action="store_true",
        help="replace output files that exist outside the run directory (never a file the run reads or keeps)",
    )


def _common(p):
    p.add_argument("--config", metavar="FILE", help="TOML file of parameters; flags override it")
    _flag(p, "seed", cfg.KEYS["seed"])
    _verbosity(p)


def _verbosity(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, help="errors and warnings only")
    g.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, help="timestamped log lines")
    p.set_defaults(verbosity=0)


EXAMPLES = {
    "fit": [
        "hkmeans fit emb.npy --out run/ --n-clusters 10000,1000,100",
        "hkmeans fit emb.npy --out run/ --config curation.toml --seed 1",
        "hkmeans fit 'shards/*.npy' --out run/ --n-clusters 1000,100 --subset-indices dedup.npy",
        "hkmeans fit pool.parquet --column emb --out run/ --n-clusters 1000,100",
    ],
    "sample": [
        "hkmeans sample run/ --target-size 200000 -o subset.npy",
        "hkmeans sample run/ --target-size 100000,500000,1000000",
        "hkmeans sample run/ --target-size 50000 --strategy closest --multiplier 2",
    ],
    "curate": [
        "hkmeans curate emb.npy --out run/ --n-clusters 10000,1000,100 --target-size 1000000",
        "hkmeans curate emb.npy --out run/ --config curation.toml -o subset.npy",
        "hkmeans curate emb.npy --out run/ --dedup 0.95 --n-clusters 1000,100 --target-size 10000",
    ],
    "demo": ["hkmeans demo", "hkmeans demo --out plots/ --seed 3"],
    "info": ["hkmeans info run/", "hkmeans info run/ | grep status"],
    "export": ["hkmeans export run/", "hkmeans export run/ --out tables/"],
    "report": [
        "hkmeans report run/ -o report.html",
        "hkmeans report run/ --labels meta.parquet --column source -o report.html",
    ],
    "dedup": dedup.EXAMPLES,
    "advise": [
        "hkmeans advise emb.npy --target-size 1000000",
        "hkmeans advise emb.npy --target-size 200000 > curation.toml",
        "hkmeans advise emb.npy --target-size 200000 --dedup 0.95 > curation.toml",
        "hkmeans advise 'shards/*.npy' --target-size 200000 --dedup 0.95 --workers 4",
        "hkmeans advise 'shards/*.npy' --target-size 200000 --cost-gpus 64",
    ],
}


def _subcommand(sub, name, help, run):
    epilog = "examples:\n" + "\n".join("  " + line for line in EXAMPLES[name])
    p = sub.add_parser(
        name, help=help, description=help, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.set_defaults(run=run)
    return p


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="hkmeans",
        description="Automatic data curation by hierarchical k-means.",
        epilog="examples:\n  hkmeans demo\n  " + EXAMPLES["curate"][0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"hkmeans {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = _subcommand(sub, "fit", "hierarchical k-means of embeddings into RUN_DIR", commands.fit)
    _input(p)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (required; made if missing)")
    _fit_options(p)
    _common(p)

    p = _subcommand(sub, "sample", "indices of a balanced subset from a fitted RUN_DIR", commands.sample)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of a finished fit")
    _sample_options(p)
    _common(p)

    p = _subcommand(sub, "curate", "fit, then sample", commands.curate)
    _input(p)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (required; made if missing)")
    _fit_options(p)
    _sample_options(p)
    _common(p)

    p = _subcommand(sub, "demo", "the paper's ring example, with a plot and a curation report", commands.demo)
    p.add_argument("--out", default="hkmeans-demo", metavar="DIR", help="where the PNG goes (default: hkmeans-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the fit (default: 0)")
    p.add_argument("--force", action="store_true", help="replace a rings.png or report.html a demo did not write")
    p.set_defaults(verbosity=0)

    p = _subcommand(sub, "info", "levels, clusters and parameters of a RUN_DIR", commands.info)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory")
    p.set_defaults(verbosity=0)

    p = _subcommand(sub, "export", "every row's clusters and every cluster as Parquet tables", commands.export)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of a finished fit")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where assignments.parquet and clusters.parquet go (default: RUN_DIR; made if missing)",
    )
    _force(p)
    p.set_defaults(verbosity=0)

    p = _subcommand(sub, "report", "an HTML report of what curation did in a fitted RUN_DIR", commands.report)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of a finished fit")
    p.add_argument("--labels", metavar="FILE", help="one label per pool row: a .npy file or a Parquet file")
    p.add_argument("--column", metavar="NAME", help="the labels' column of a Parquet file (default: label)")
    p.add_argument(
        "--target-size",
        type=int,
        metavar="N",
        help="report on a fresh sample of N points (default: the run's indices.npy and indices-N.npy)",
    )
    p.add_argument(
        "--show",
        metavar="COLUMN",
        help="values shown for the clusters' example members: a Parquet input's column or a file "
        "of one per row (.npy, .txt); text as snippets, image file paths as thumbnails",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="the HTML file (default: RUN_DIR/report.html)")
    _force(p)
    p.set_defaults(verbosity=0)

    dedup.add_arguments(_subcommand(sub, "dedup", "near-duplicate rows removed, exactly, into a folder", dedup.run))

    p = _subcommand(
        sub,
        "advise",
        "levels, clusters and sample sizes for a pool and a target size, and what the fit will cost",
        commands.advise,
    )
    _input(p)
    p.add_argument("--target-size", type=int, required=True, metavar="N", help="points wanted (required)")
    p.add_argument("--column", metavar="NAME", help="the embedding column of a Parquet input")
    for key, spec in cfg.DEDUP_KEYS.items():  # levels for the rows a dedup keeps
        _flag(p, key, spec)
    _flag(p, "seed", cfg.KEYS["seed"])
    dedup.add_dask_arguments(p)
    p.add_argument("--no-cost", dest="cost", action="store_false", help="leave out the time and memory of each level")
    p.add_argument(
        "--cost-workers", type=int, metavar="W", help="project level 0 on W Dask workers as fast as this machine"
    )
    p.add_argument(
        "--cost-gpus",
        type=int,
        metavar="G",
        help="project the fit on G GPUs (15 TFLOP/s each assumed, plus this machine's cost of each call)",
    )
    _verbosity(p)
    return top


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).split())  # a library's multi-line warning as one line
    print(f"hkmeans: warning: {text}", file=sys.stderr)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    handler = None
    if args.verbosity > 0 or (args.verbosity == 0 and args.command in LONG and not _is_terminal(sys.stderr)):
        # time-stamped lines, a step each and every few seconds within a long one:
        # a batch job's log shows that a fit is alive
        handler = Heartbeat() if args.verbosity == 0 else TqdmHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    if args.verbosity < 0:
        silence_compile_notice()
    warnings.showwarning = _one_line_warnings
    try:
        args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `hkmeans info run | head -3`: the reader has what it wanted
        _quiet_stdout()
        return 0
    except (InputError, ConfigError, RunDirError, ValueError, TypeError) as e:
        return _fail(e)
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        if e.errno in DISK_FULL:
            return _fail(
                f"cannot write{where}: {e.strerror} (disk full?); finished steps are kept: "
                "free space and rerun the same command to resume."
            )
        return _fail(f"{e.strerror or e}{':' + where if where else ''}")
    except MemoryError:
        return _fail(
            "out of memory; finished steps are kept: free memory (or fit on Dask workers) "
            "and rerun the same command to resume."
        )
    except KeyboardInterrupt:
        print("hkmeans: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
    return 0


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises nothing more."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _fail(error) -> int:
    print(f"hkmeans: error: {error}", file=sys.stderr)
    return USAGE_ERROR
