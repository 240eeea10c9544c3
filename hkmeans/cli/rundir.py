"""RUN_DIR: a fit's manifest, configuration, steps and results on disk.

::

    manifest.json       parameters, versions, input (path(s), shape, dtype, fingerprint),
                        finished steps, status
    config.toml         the effective configuration
    steps/level0/step0000.npz          centroids, Lloyd iterations, generator state
    steps/level0/step0000.labels.npz   labels and squared distances (newest step only)
    steps/level0/step0000.chunks/      the same on the dask backend: one .npy per chunk
                                       (labels-START-STOP.npy, sqdist-...), written by
                                       the workers
    steps/level0/step0001.partial.npz  a k-means run's state while it runs
    data.npy            the input cast to the compute dtype (while fitting, if needed)
    scratch-subset.npy  a resampling subset over 64 MB (while fitting)
    scratch-dask/       per-row state on the dask backend, one .npy per chunk (while fitting)
    dedup.npz           the rows a --dedup step kept and removed (rows of the whole
                        input), each removed row's kept row and similarity
    tree.npz            the ClusterTree;  centroids/level0.npy ...: per level
                        (and, for a split level, level0-parents.npy, level0-child-offsets.npy)
    ids.npy             one id per row of the input (when ids were given)
    indices.npy, selected.parquet, indices-N.npy, selected-N.parquet,
    assignments.parquet, clusters.parquet        outputs of sample, curate and export

Files are written atomically and a step counts as done once the manifest lists it,
so a run stopped at any moment resumes after its last finished step.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
import warnings
import zipfile
from datetime import datetime
from importlib import metadata

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None  # type: ignore[assignment]

import numpy as np

from .._progress import log
from .._version import __version__
from ..backends import arrays_of
from ..checkpoint import Checkpoints
from ..ids import decode, encode
from ..io import file_digest, save_json, save_npy, save_npz, save_text
from ..tree import ClusterTree
from .config import fit_params, to_toml
from .run_layout import (
    LOCK,
    MANIFEST,
    MANIFEST_LOCK,
    SCRATCH_FILE,
    STEP_KEY,
    TOOL,
    RunDirError,
    check_writable,
    input_files,
    inside,
    is_run_manifest,
    manifest_update,
    remove_owned,
    remove_scratch,
    remove_temporaries,
    take_lock,
)

FORMAT = 1


IDS = "ids.npy"  # integer ids


STRING_IDS = "ids.npz"  # string ids: their UTF-8 bytes and offsets (hkmeans.ids.encode)


DEDUP = "dedup.npz"  # the dedup step's result


#: The dedup file's arrays, all over rows of the whole input: the rows kept and
#: removed (sorted), and per removed row the kept row it duplicates and how close.
DEDUP_ARRAYS = ("kept", "removed", "duplicate_of", "similarity")


#: The manifest's keys and their types: a manifest without them is damaged.
_MANIFEST_KEYS = {"format": int, "input": dict, "params": dict, "steps": list, "status": str, "versions": dict}


_INPUT_KEYS = {"path": str, "shape": list, "dtype": str, "fingerprint": str}


def _is_record(value, **fields) -> bool:
    return isinstance(value, dict) and all(isinstance(value.get(k), kind) for k, kind in fields.items())


def _malformed_fields(manifest) -> list:
    """The names of the optional or nested fields the commands read that a hand edit
    left of the wrong kind (the keys of :data:`_MANIFEST_KEYS` checked already)."""
    bad = [key for key in ("created", "finished", "updated") if key in manifest and not isinstance(manifest[key], str)]
    source = manifest.get("input")
    if isinstance(source, dict):
        shape = source.get("shape")
        if isinstance(shape, list) and not (
            len(shape) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shape)
        ):
            bad.append("input.shape")
        if "subset_indices" in source and not _is_record(source["subset_indices"], path=str, digest=str):
            bad.append("input.subset_indices")
        files = source.get("files", [])
        if not isinstance(files, list) or not all(_is_record(f, path=str) for f in files):
            bad.append("input.files")
    if "ids" in manifest and not _is_record(manifest["ids"], dtype=str, n=int, **{"from": str}):
        bad.append("ids")
    outputs = manifest.get("outputs", {})
    if not isinstance(outputs, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in outputs.items()
    ):
        bad.append("outputs")
    counts = dict.fromkeys(("rows", "kept", "removed"), int)
    if "dedup" in manifest and not _is_record(manifest["dedup"], file=str, digest=str, **counts):
        bad.append("dedup")
    return bad


SCRATCH_BYTES = 64 << 20  # intermediate arrays above this go to files in RUN_DIR


DEPENDENCIES = ("numpy", "numba", "scipy", "scikit-learn", "threadpoolctl", "tqdm")


def _versions():
    out = {"hkmeans": __version__, "python": platform.python_version()}
    for name in DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def n_fitted(manifest) -> int:
    """The rows a run's level 0 is fitted on: those its dedup step kept, else its input's."""
    return manifest["dedup"]["kept"] if "dedup" in manifest else manifest["input"]["shape"][0]


class RunDir(Checkpoints):
    """A run directory, made or reopened for one input and one set of fit parameters."""

    def __init__(self, path, manifest, checkpoint_interval=60.0, lock=None):
        self.path = os.fspath(path)
        self.manifest = manifest
        self.checkpoint_interval = checkpoint_interval
        self._lock = lock  # held (open) as long as this object lives
        self._last_save = time.monotonic()

    # opening

    @staticmethod
    def read_manifest(path, whole=True) -> dict:
        """The manifest of an existing run directory; :class:`RunDirError` if ``path``
        is not one (no manifest, or one hkmeans did not write) or, when ``whole``, it
        is damaged (not ``whole``: enough to start the run over)."""
        file = inside(path, MANIFEST)
        if not os.path.isfile(file):
            raise RunDirError(f"{path}: not an hkmeans run directory (no {MANIFEST}); run 'hkmeans fit' first.")
        try:
            with open(file) as f:
                manifest = json.load(f)
        except (OSError, ValueError) as e:
            raise RunDirError(f"{file}: cannot be read ({e}).") from None
        if not is_run_manifest(manifest):
            raise RunDirError(f"{path}: not an hkmeans run directory (its {MANIFEST} was not written by hkmeans).")
        if not whole:
            return manifest
        if manifest.get("format") != FORMAT:
            raise RunDirError(
                f"{file}: run directory format {manifest.get('format')!r}, this hkmeans reads format {FORMAT}; "
                "use the hkmeans version that wrote it, or another --out."
            )
        bad = [key for key, kind in _MANIFEST_KEYS.items() if not isinstance(manifest.get(key), kind)]
        if isinstance(manifest.get("input"), dict):
            bad += [
                f"input.{key}" for key, kind in _INPUT_KEYS.items() if not isinstance(manifest["input"].get(key), kind)
            ]
        bad += _malformed_fields(manifest)
        if bad:
            raise RunDirError(
                f"{file}: damaged (missing or malformed: {', '.join(bad)}); use --overwrite to start over."
            )
        for key in manifest["steps"]:
            if not isinstance(key, str) or not STEP_KEY.match(key):
                raise RunDirError(
                    f"{file}: damaged (step {key!r} is not a step hkmeans writes); use --overwrite to start over."
                )
        return manifest

    @classmethod
    def open(cls, path, config, source: dict, overwrite=False, ids=None) -> RunDir:
        """Make the run directory ``path`` or reopen it to resume. ``source`` describes
        the input (shape, dtype, fingerprint and what
        :meth:`hkmeans.readers.Pool.describe` records), ``ids`` the record of the ids
        given (or None). Refused, before anything is written, if it holds a run of
        other parameters, another input or other ids (unless ``overwrite``), or cannot
        be written."""
        path = os.fspath(path)
        params = fit_params(config)
        flags = to_toml(config)
        try:
            flags.encode("utf-8")
        except UnicodeEncodeError as e:
            raise RunDirError(f"a path given is not valid UTF-8 ({e.object[e.start : e.end]!r}); rename it.") from None
        if os.path.exists(path) and not os.path.isdir(path):
            raise RunDirError(f"{path}: exists and is not a directory.")
        exists = os.path.isdir(path) and bool(set(os.listdir(path)) - {LOCK, MANIFEST_LOCK})
        if exists and not os.path.isfile(os.path.join(path, MANIFEST)):
            raise RunDirError(f"{path}: not empty and not an hkmeans run directory; choose another --out.")
        # refuses what hkmeans did not write; damage is what --overwrite is for
        manifest = cls.read_manifest(path, whole=not overwrite) if exists else None
        if exists and not overwrite:
            assert manifest is not None
            _check_resumable(path, manifest, source, params, ids)
            check_writable(path)
            lock = take_lock(path)
            try:  # the manifest as the last process to hold the lock left it: started over, maybe
                manifest = cls.read_manifest(path)
                _check_resumable(path, manifest, source, params, ids)
            except RunDirError:
                lock.close()
                raise
            remove_temporaries(path)  # left by a process killed while writing
            manifest["input"].update(source)  # the same bytes; paths and times as found now
            run = cls(path, manifest, config["checkpoint_interval"], lock)
            run.write_manifest()  # so that the next run need not read the input again
            save_text(inside(path, "config.toml"), flags)  # this run's flags
            return run
        if not exists:
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as e:
                raise RunDirError(f"{path}: cannot create the run directory ({e.strerror}).") from None
        check_writable(path)
        lock = take_lock(path)
        if exists:  # overwrite: only what hkmeans wrote, after the checks above
            remove_owned(path, keep=input_files(source))
        manifest = {
            "tool": TOOL,
            "format": FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": _versions(),
            "command": sys.argv,
            "input": source,
            "params": params,
            "steps": [],
            "status": "running",
        }
        run = cls(path, manifest, config["checkpoint_interval"], lock)
        run.write_manifest()  # first: a directory with a manifest is a run directory
        save_text(inside(path, "config.toml"), flags)
        return run

    def write_manifest(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        save_json(inside(self.path, MANIFEST), self.manifest)

    # checkpoints of the engine

    def _step_path(self, key, suffix):
        """``RUN_DIR/steps/LEVEL/STEP`` + ``suffix``, for a key the engine writes
        (:data:`STEP_KEY`), through no symbolic link: a run directory is input, and a
        path out of it would let it make hkmeans write or delete elsewhere."""
        if not STEP_KEY.match(key):
            raise RunDirError(f"{self.path}: step {key!r} is not a step hkmeans writes; use --overwrite to start over.")
        return inside(self.path, "steps", *key.split("/")[:-1], key.rpartition("/")[2] + suffix)

    def _file(self, key, kind=""):
        return self._step_path(key, kind + ".npz")

    def _chunks(self, key):
        """The folder of a step's per-row arrays on the dask backend."""
        return self._step_path(key, ".chunks")

    def _partial(self, key):
        """The file of a running k-means' state (key ``STEP/partial``), or None."""
        step, _, last = key.rpartition("/")
        return self._file(step, ".partial") if last == "partial" else None

    def load(self, key):
        partial = self._partial(key)
        if partial is not None or key not in self.manifest["steps"]:
            if partial is None or not os.path.isfile(partial):
                return None
            try:
                return _read_npz(partial)
            except RunDirError:  # a saved state is optional: that k-means starts over
                warnings.warn(f"{partial}: damaged; its k-means starts over.", UserWarning, stacklevel=2)
                return None
        out = _read_npz(self._file(key))
        if os.path.isfile(self._file(key, ".labels")):
            out.update(_read_npz(self._file(key, ".labels")))
        elif os.path.isdir(self._chunks(key)):
            try:
                rows = n_fitted(self.manifest) if key.startswith("level0/") else None  # level 0's rows
                chunked = _dask_io().load(self._chunks(key), n_rows=rows)
                if "labels" not in chunked:
                    raise ValueError("no file of its labels")
                out.update(chunked)
            except (OSError, ValueError) as e:
                raise RunDirError(f"{self._chunks(key)}: damaged ({e}); use --overwrite to start over.") from None
        elif key == self._previous(key):  # the level's newest step: the next one starts from its labels
            raise RunDirError(
                f"{self._file(key, '.labels')}: missing (a copy in part?); restore it, or use --overwrite to start over."
            )
        return out

    def save(self, key, arrays):
        partial = self._partial(key)
        file = partial or self._file(key)
        os.makedirs(os.path.dirname(file), exist_ok=True)
        self._last_save = time.monotonic()
        if partial is not None:
            save_npz(partial, **arrays)
            log.info("saved the state of %s after %d Lloyd iterations", key.rpartition("/")[0], int(arrays["n_iter"]))
            return
        large = {name: arrays[name] for name in ("labels", "sqdist") if name in arrays}
        small = {name: a for name, a in arrays.items() if name not in large}
        if large:  # from the workers chunk by chunk, for a fit on Dask
            arrays_of(next(iter(large.values()))).save(large, self._file(key, ".labels"), self._chunks(key))
        save_npz(file, **small)
        previous = self._previous(key)
        self.manifest["steps"].append(key)
        self.write_manifest()
        log.info("step %s done", key)
        # what only this step needed: the previous step's labels (within a level)
        if previous is not None and os.path.isfile(self._file(previous, ".labels")):
            os.unlink(self._file(previous, ".labels"))
        if previous is not None and os.path.isdir(self._chunks(previous)):
            shutil.rmtree(self._chunks(previous))

    def _previous(self, key):
        prefix = key.rsplit("/", 1)[0] + "/"
        earlier = [s for s in self.manifest["steps"] if s.startswith(prefix)]
        return earlier[-1] if earlier else None

    def discard(self, key):
        partial = self._partial(key)
        if partial is not None and os.path.isfile(partial):
            os.unlink(partial)

    def partial_due(self):
        return time.monotonic() - self._last_save >= self.checkpoint_interval

    def empty(self, name, shape, dtype):
        """Arrays over :data:`SCRATCH_BYTES` are backed by ``RUN_DIR/scratch-NAME.npy``:
        the kernel can write their pages out instead of holding them in memory."""
        if int(np.prod(shape)) * np.dtype(dtype).itemsize < SCRATCH_BYTES:
            return np.empty(shape, dtype=dtype)
        path = inside(self.path, f"scratch-{name}.npy")
        if os.path.lexists(path):  # a new file, not the old one truncated under a live mapping
            if not SCRATCH_FILE.match(os.path.basename(path)) or os.path.isdir(path) and not os.path.islink(path):
                raise RunDirError(f"{path}: in the way of a scratch file hkmeans writes; move it away.")
            os.unlink(path)
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    # results

    def finish(self, levels, tree: ClusterTree) -> None:
        """Write the tree and per-level centroids, then mark the run done."""
        tree.save(inside(self.path, "tree.npz"))
        os.makedirs(inside(self.path, "centroids"), exist_ok=True)
        for t, level in enumerate(levels):
            save_npy(inside(self.path, "centroids", f"level{t}.npy"), level.centroids)
            if level.parents is not None:  # a split level: what routes new rows
                save_npy(inside(self.path, "centroids", f"level{t}-parents.npy"), level.parents)
                save_npy(inside(self.path, "centroids", f"level{t}-child-offsets.npy"), level.child_offsets)
        remove_scratch(self.path)
        self.manifest["status"] = "done"
        self.manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.manifest["n_clusters"] = [int(len(level.centroids)) for level in levels]
        self.manifest["n_iter"] = [int(level.n_iter) for level in levels]
        self.write_manifest()

    def set_ids(self, ids, record: dict) -> None:
        """Keep ``ids`` (checked: one per row of the input) as ``ids.npy`` (integers)
        or ``ids.npz`` (strings) and what they came from in the manifest, so that later
        commands need not read them again."""
        if ids.dtype.kind == "O":
            offsets, data = encode(ids)
            save_npz(inside(self.path, STRING_IDS), offsets=offsets, data=data)
            other = IDS
        else:
            save_npy(inside(self.path, IDS), ids)
            other = STRING_IDS
        stale = inside(self.path, other)
        if os.path.isfile(stale):
            os.unlink(stale)
        self.manifest["ids"] = record
        self.write_manifest()

    def save_dedup(self, n_rows, **arrays) -> dict:
        """Keep the dedup step's result (:data:`DEDUP_ARRAYS`, over rows of the whole
        input; ``n_rows`` the rows it read) as ``dedup.npz``; the step is done once the
        manifest lists it, with a digest that ties the file to this run."""
        arrays = {name: np.ascontiguousarray(arrays[name]) for name in DEDUP_ARRAYS}
        save_npz(inside(self.path, DEDUP), **arrays)
        self.manifest["dedup"] = {
            "file": DEDUP,
            "rows": int(n_rows),
            "kept": int(len(arrays["kept"])),
            "removed": int(len(arrays["removed"])),
            "digest": _digest(arrays),
        }
        self.write_manifest()
        log.info("dedup done: %d of %d rows kept", len(arrays["kept"]), n_rows)
        return arrays

    @staticmethod
    def dedup(path, manifest=None) -> dict | None:
        """The dedup step's arrays of the run at ``path`` (see :data:`DEDUP_ARRAYS`), or
        None when the manifest lists none; :class:`RunDirError` if the file is damaged
        or is not the one the run wrote."""
        manifest = RunDir.read_manifest(path) if manifest is None else manifest
        record = manifest.get("dedup")
        if record is None:
            return None
        file = inside(path, DEDUP)
        arrays = _read_npz(file)
        if set(arrays) != set(DEDUP_ARRAYS) or record.get("digest") != _digest(arrays):
            raise RunDirError(
                f"{file}: not the dedup result this run wrote (changed or replaced); use --overwrite to start over."
            )
        return arrays

    @staticmethod
    def timings(path, n_levels) -> dict:
        """Seconds the fit took, created to finished, and per level (from its last
        step file's time to the level before's), where the manifest and the step files
        tell; an empty dict otherwise. A resumed run's figures include its pause."""
        manifest = RunDir.read_manifest(path)
        try:
            start, end = (
                datetime.strptime(manifest[key], "%Y-%m-%dT%H:%M:%S%z").timestamp() for key in ("created", "finished")
            )
        except (KeyError, ValueError):
            return {}
        out = {"fit, created to finished (s)": f"{end - start:.0f}"}
        for t in range(n_levels):
            folder = inside(path, "steps", f"level{t}")
            times = [e.stat().st_mtime for e in os.scandir(folder)] if os.path.isdir(folder) else []
            if not times:
                break
            out[f"level {t} (s)"] = f"{max(max(times) - start, 0):.1f}"
            start = max(times)
        return out

    @staticmethod
    def wrote(path, output) -> bool:
        """Whether the file ``output`` (outside the run directory ``path``) is one a
        command of this run wrote, as it left it: a rerun of the command may replace
        it without ``--force``. It is if the manifest lists it with the digest it has
        now, or with none (the command was killed while writing it)."""
        try:
            outputs = RunDir.read_manifest(path).get("outputs", {})
        except RunDirError:  # no run there, or a damaged one (being started over, say)
            return False
        key = os.path.abspath(output)
        return key in outputs and outputs[key] in (None, file_digest(output))

    @staticmethod
    def record_outputs(path, outputs, written: bool) -> None:
        """List the files ``outputs`` (outside the run directory ``path``) in its
        manifest: before they are written (``written`` false, no digest), then with
        their digests; nothing where the manifest cannot be written (a read-only run
        directory)."""
        if not outputs:
            return
        digests = {os.path.abspath(output): file_digest(output) if written else None for output in outputs}
        with manifest_update(path):
            manifest = RunDir.read_manifest(path)
            manifest.setdefault("outputs", {}).update(digests)
            try:
                save_json(inside(path, MANIFEST), manifest)
            except OSError:
                pass  # a rerun then asks for --force to replace the file

    @staticmethod
    def ids(path):
        """The ids kept with the run at ``path`` (int64, or an object array of ``str``), or None."""
        strings, integers = inside(path, STRING_IDS), inside(path, IDS)
        file = strings if os.path.isfile(strings) else integers
        if not os.path.isfile(file):
            kept = RunDir.read_manifest(path).get("ids")
            if kept:  # kept, then removed: tables without their ids would follow, silently
                file = strings if isinstance(kept, dict) and kept.get("dtype") == "str" else integers
                raise RunDirError(f"{file}: missing; rerun 'hkmeans fit' with the ids to write them again.")
            return None
        try:
            if file == strings:
                with np.load(file, allow_pickle=False) as f:
                    ids = decode(f["offsets"], f["data"])
            else:
                ids = np.load(file, allow_pickle=False)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise RunDirError(f"{file}: damaged ({e}); rerun 'hkmeans fit' with the ids to write it again.") from None
        n = RunDir.read_manifest(path).get("ids", {}).get("n")
        if n is not None and (ids.ndim != 1 or len(ids) != n):
            raise RunDirError(
                f"{file}: {len(ids) if ids.ndim == 1 else ids.shape} ids, where the run kept {n} (changed or replaced); "
                "rerun 'hkmeans fit' with the ids to write them again."
            )
        return ids

    @staticmethod
    def tree(path) -> ClusterTree:
        """The tree of a finished run; :class:`RunDirError` if the run is not done."""
        manifest = RunDir.read_manifest(path)
        if manifest.get("status") != "done":
            raise RunDirError(
                f"{path}: the fit has not finished; rerun 'hkmeans fit' with the same arguments to resume it."
            )
        file = inside(path, "tree.npz")
        try:
            tree = ClusterTree.load(file)
        except (OSError, ValueError) as e:
            raise RunDirError(f"{e} Rerun 'hkmeans fit' with --overwrite to fit it again.") from None
        rows = n_fitted(manifest)
        clusters = manifest.get("n_clusters", list(tree.n_clusters))
        if tree.n_samples != rows or list(tree.n_clusters) != clusters:
            raise RunDirError(
                f"{file}: a tree of {tree.n_samples} rows and {list(tree.n_clusters)} clusters, not the one this run "
                f"wrote ({rows} rows, {clusters} clusters); rerun 'hkmeans fit' with --overwrite to fit it again."
            )
        return tree


def _check_resumable(path, manifest, source, params, ids) -> None:
    """Refuse to resume the run of ``manifest`` on other input, parameters or ids."""
    if manifest["input"]["fingerprint"] != source["fingerprint"]:
        raise RunDirError(
            f"{path}: holds a run on other input ({manifest['input']['path']}, shape "
            f"{tuple(manifest['input']['shape'])}); use --overwrite to start over, or another --out."
        )
    if manifest["params"] != params:
        diff = ", ".join(
            f"{k}={manifest['params'].get(k)!r} there, {params.get(k)!r} here"
            for k in {**manifest["params"], **params}
            if manifest["params"].get(k) != params.get(k)
        )
        raise RunDirError(f"{path}: holds a run with other parameters ({diff}); use --overwrite to start over.")
    known = manifest.get("ids")
    if ids is not None and known is not None and known.get("digest") != ids["digest"]:
        raise RunDirError(
            f"{path}: holds a run with other ids ({known.get('from')}); give the same ids, "
            "or use --overwrite to start over."
        )


def _dask_io():
    from ..backends.dask import storage  # imports dask: only for a run on it

    return storage


def _digest(arrays) -> str:
    """BLAKE2b of the dedup arrays, in :data:`DEDUP_ARRAYS` order."""
    h = hashlib.blake2b(digest_size=16)
    for name in DEDUP_ARRAYS:
        a = arrays[name]
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _read_npz(file) -> dict:
    """The arrays of a step file; :class:`RunDirError` if it is damaged."""
    try:
        with np.load(file, allow_pickle=False) as f:
            return dict(f)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise RunDirError(f"{file}: damaged ({e}); use --overwrite to start over.") from None
