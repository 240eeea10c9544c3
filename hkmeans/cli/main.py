"""``hkmeans``: the command line (argparse: the standard library, nothing to install).

Every error a user can cause is one line on stderr and exit status 2, raised before
anything is written or after what was written is complete.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import warnings

from .. import __version__
from .._progress import TqdmHandler, log
from ..io import InputError
from . import commands
from .config import ConfigError
from .rundir import RunDirError

USAGE_ERROR = 2
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other error
        self.exit(USAGE_ERROR, f"hkmeans: error: {message} (see {self.prog} --help)\n")


def _ints(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _fit_options(p):
    p.add_argument("--n-clusters", dest="n_clusters", type=_ints, metavar="K[,K...]", help="clusters per level, finest first")
    p.add_argument("--sample-size", dest="sample_size", type=_ints, metavar="S[,S...]", help="points per cluster per resampling")
    p.add_argument("--n-resamples", dest="n_resamples", type=_ints, metavar="R[,R...]")
    p.add_argument("--resample-strategy", dest="resample_strategy", choices=("closest", "random"))
    p.add_argument("--n-splits", dest="n_splits", type=_ints, metavar="S[,S...]")
    p.add_argument("--init", choices=("k-means++", "k-means||", "random"))
    p.add_argument("--n-init", dest="n_init", type=int)
    p.add_argument("--max-iter", dest="max_iter", type=int)
    p.add_argument("--tol", type=float)
    p.add_argument("--metric", choices=("euclidean", "cosine"))
    p.add_argument("--dtype", choices=("auto", "float32", "float64"), help="compute dtype (auto: float64 input stays float64, others float32)")
    p.add_argument("--checkpoint-interval", dest="checkpoint_interval", type=float, metavar="SECONDS",
                   help="how often a long k-means run saves its state (default 60)")
    p.add_argument("--overwrite", action="store_true", help="start over in a RUN_DIR that holds another run")


def _sample_options(p, required=False):
    p.add_argument("--target-size", dest="target_size", type=int, metavar="N", required=required)
    p.add_argument("--strategy", choices=("random", "closest", "furthest"))
    p.add_argument("--multiplier", type=int)
    p.add_argument("--method", choices=("hierarchical", "flat"))
    p.add_argument("-o", "--output", metavar="FILE", help="indices file (default: RUN_DIR/indices.npy)")


def _common(p):
    p.add_argument("--config", metavar="FILE", help="TOML file of parameters; flags override it")
    p.add_argument("--seed", type=int)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, help="errors and warnings only")
    g.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, help="timestamped log lines")
    p.set_defaults(verbosity=0)


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="hkmeans", description="Automatic data curation by hierarchical k-means.")
    top.add_argument("--version", action="version", version=f"hkmeans {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("fit", help="hierarchical k-means of an embeddings .npy into RUN_DIR")
    p.add_argument("embeddings", metavar="EMBEDDINGS.npy")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    _fit_options(p)
    _common(p)
    p.set_defaults(run=commands.fit)

    p = sub.add_parser("sample", help="indices of a balanced subset from a fitted RUN_DIR")
    p.add_argument("run_dir", metavar="RUN_DIR")
    _sample_options(p)
    _common(p)
    p.set_defaults(run=commands.sample)

    p = sub.add_parser("curate", help="fit, then sample")
    p.add_argument("embeddings", metavar="EMBEDDINGS.npy")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    _fit_options(p)
    _sample_options(p)
    _common(p)
    p.set_defaults(run=commands.curate)

    p = sub.add_parser("demo", help="the paper's ring example, with a plot")
    p.add_argument("--out", default="hkmeans-demo", metavar="DIR", help="where the PNG goes (default: hkmeans-demo)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=commands.demo, verbosity=0)

    p = sub.add_parser("info", help="levels, clusters and parameters of a RUN_DIR")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(run=commands.info, verbosity=0)
    return top


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"hkmeans: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.verbosity > 0:
        handler = TqdmHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    warnings.showwarning = _one_line_warnings
    try:
        args.run(args)
    except (InputError, ConfigError, RunDirError, ValueError, TypeError) as e:
        return _fail(e)
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        if e.errno in DISK_FULL:
            return _fail(f"cannot write{where}: {e.strerror} (disk full?); finished steps are kept: "
                         "free space and rerun the same command to resume.")
        return _fail(f"{e.strerror or e}{':' + where if where else ''}")
    except KeyboardInterrupt:
        print("hkmeans: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    return 0


def _fail(error) -> int:
    print(f"hkmeans: error: {error}", file=sys.stderr)
    return USAGE_ERROR
