"""What hkmeans owns in a run directory, and how it touches it: the names and
patterns of its files, the checks that keep every path inside the run (no symlink,
no step key out of its folder), deletion by exact pattern only, and the lock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None  # type: ignore[assignment]


from ..io import file_id, same_file


class RunDirError(ValueError):
    """A run directory that cannot be used; the message says why and what to do."""


TOOL = "hkmeans"  # the manifest's marker: only hkmeans writes it


MANIFEST = "manifest.json"


LOCK = ".lock"


#: Held while a command that shares the run's lock rewrites the manifest.
MANIFEST_LOCK = ".manifest.lock"


#: Seconds a command waits for another's rewrite of the manifest before going on unlocked.
MANIFEST_WAIT = 10.0


#: What hkmeans writes at the top of a run directory: all that ``--overwrite`` deletes.
OWNED_FILES = (
    MANIFEST,
    LOCK,
    MANIFEST_LOCK,
    "config.toml",
    "tree.npz",
    "data.npy",
    "ids.npy",
    "ids.npz",
    "dedup.npz",
)


DASK_SCRATCH = "scratch-dask"


OWNED_DIRS = ("steps", "centroids", DASK_SCRATCH)


#: Names of temporary files hkmeans writes (:func:`hkmeans.io.atomic_path`, the
#: write probe) and of scratch arrays (:meth:`RunDir.empty`): only these are deleted.
TEMPORARY = re.compile(r"\.tmp-[A-Za-z0-9_]{8}-[^/]*\Z|\.tmp-probe-[A-Za-z0-9_]{8}\Z")


SCRATCH_FILE = re.compile(r"scratch-[a-z]+\.npy\Z")


#: The step keys the engine writes: ``level0/step0003`` (and ``.../partial``).
STEP_KEY = re.compile(r"level\d{1,3}/step\d{4,6}\Z")


#: The outputs each command writes at the top of its run directory (a curated subset's
#: sidecar, ``indices.json``, records the pool it was drawn from and a digest of it):
#: the command replaces them, ``--overwrite`` deletes them all.
SAMPLE_OUTPUTS = re.compile(r"(indices(-\d+)?\.npy|selected(-\d+)?\.parquet|indices(-\d+)?\.json)\Z")


EXPORT_OUTPUTS = re.compile(r"(assignments|clusters)\.parquet\Z")


REPORT_OUTPUTS = re.compile(r"report\.html\Z")


OUTPUTS = (SAMPLE_OUTPUTS, EXPORT_OUTPUTS, REPORT_OUTPUTS)


def is_run_manifest(manifest) -> bool:
    """Whether ``manifest`` (parsed JSON) was written by hkmeans: it carries the
    marker, or (written before the marker) hkmeans' own version among its versions."""
    if not isinstance(manifest, dict):
        return False
    versions = manifest.get("versions")
    return manifest.get("tool") == TOOL or (
        "tool" not in manifest and isinstance(versions, dict) and "hkmeans" in versions
    )


def owned(path, run_dir=None) -> bool:
    """Whether ``path`` names a file or folder that hkmeans keeps in a run directory
    (``tree.npz``, ``steps/...``; not ``indices.npy`` and the other outputs): writing it from
    outside would corrupt the run. The run directory is ``run_dir`` (which need not
    exist yet) or any folder above ``path`` holding a run's manifest."""
    path = resolved(path)
    own = None if run_dir is None else os.path.realpath(run_dir)
    root = own if own is not None and below(path, own) else run_holding(os.path.dirname(path))
    if root is None or root == path:
        return False
    return _owned_name(os.path.relpath(path, root).split(os.sep)[0])


def written_in_run(path, run_dir) -> bool:
    """Whether ``path`` is one hkmeans writes or removes in the run directory
    ``run_dir`` (which need not exist yet): what :func:`owned` names, or an output
    (``indices.npy``, ``report.html``, ...). No input of a run may be one."""
    path, own = resolved(path), os.path.realpath(run_dir)
    if path == own or not below(path, own):
        return False
    top = os.path.relpath(path, own).split(os.sep)[0]
    return _owned_name(top) or any(p.match(top) for p in OUTPUTS)


def kept_at_top(run_dir) -> dict:
    """The files that the run directory ``run_dir`` keeps at its top under names
    hkmeans writes, by :func:`~hkmeans.io.file_id`: what no input of the run may be
    under another name (a hard link to the input placed at ``data.npy``, say)."""
    own = os.path.abspath(run_dir)
    try:
        names = sorted(os.listdir(own))
    except OSError:
        return {}
    kept: dict = {}
    for name in names:
        path = os.path.join(own, name)
        key = file_id(path)
        if key is not None and written_in_run(path, own):
            kept.setdefault(key, path)
    return kept


def read_json(file):
    """The parsed JSON file ``file``, or None if it is missing or not JSON."""
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_holding(path):
    """The run directory ``path`` is or lies in: the nearest of ``path`` and the folders
    above it that holds a manifest hkmeans wrote, links resolved (so the real path
    of that folder); None if there is none."""
    folder = os.path.realpath(path)
    while not is_run_manifest(read_json(os.path.join(folder, MANIFEST))):
        if folder == os.path.dirname(folder):
            return None
        folder = os.path.dirname(folder)
    return folder


def resolved(path) -> str:
    """``path`` absolute, its folder with every symbolic link resolved (the name itself
    is not: a link there is refused as such), so that a linked folder leads where the
    file would be."""
    full = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(full)), os.path.basename(full))


def refuse_inside_run(path) -> None:
    """:class:`RunDirError` if the folder ``path`` (which need not exist) lies inside a
    run directory, ``path`` itself not counted: that run's ``--overwrite`` could remove
    it (``steps/`` goes whole)."""
    holder = run_holding(os.path.dirname(resolved(path)))
    if holder is not None:
        raise RunDirError(f"{path}: inside the hkmeans run directory {holder}; give a folder outside it.")


def below(path, folder) -> bool:
    """Whether the absolute ``path`` is ``folder`` or lies in it."""
    return os.path.commonpath([path, folder]) == folder


def input_files(record) -> list:
    """The paths of the files an input record of a manifest names: the input, its
    files (shards, Parquet files) and its subset indices."""
    paths = [record["path"], *(f["path"] for f in record.get("files", []))]
    return paths + ([record["subset_indices"]["path"]] if "subset_indices" in record else [])


def read_files(manifest) -> list:
    """Every file a run reads: :func:`input_files` and the file of ids it was given."""
    ids = manifest.get("ids", {}).get("from")
    return input_files(manifest["input"]) + ([ids] if ids and os.path.isabs(ids) else [])


def _owned_name(name) -> bool:
    """Whether ``name``, at the top of a run directory, is one hkmeans keeps there."""
    return name in OWNED_FILES or name in OWNED_DIRS or bool(TEMPORARY.match(name)) or bool(SCRATCH_FILE.match(name))


def inside(root, *parts) -> str:
    """``root/parts...``, refused (:class:`RunDirError`) if a part is empty, ``.``,
    ``..`` or absolute, or if a component below ``root`` that exists is a symbolic
    link: what a run directory names stays inside it."""
    path = root
    for part in parts:
        if not part or part in (".", "..") or "/" in part or os.sep in part or os.path.isabs(part):
            raise RunDirError(
                f"{root}: the path {'/'.join(parts)!r} leads out of the run directory; use --overwrite to start over."
            )
        path = os.path.join(path, part)
        if os.path.islink(path):
            raise RunDirError(
                f"{path}: a symbolic link inside the run directory; hkmeans does not follow "
                "those. Remove it, or use another --out."
            )
    return path


def _remove(full) -> None:
    """Delete the file or folder ``full`` itself, never what a link points to."""
    if os.path.isdir(full) and not os.path.islink(full):
        shutil.rmtree(full)
    elif os.path.lexists(full):
        os.unlink(full)


def remove_owned(path, keep):
    """Delete what hkmeans writes at the top of the run directory ``path``, by exact
    name or pattern (never a path of ``keep``, the input's files, nor anything else)."""
    for name in sorted(os.listdir(path), key=lambda n: n == MANIFEST):  # the manifest last: still a run if killed
        full = os.path.join(path, name)
        if name == LOCK or any(same_file(full, k) for k in keep):
            continue
        if name in OWNED_DIRS or (_owned_name(name) or any(p.match(name) for p in OUTPUTS)) and not os.path.isdir(full):
            _remove(full)


def remove_scratch(path):
    """Delete the scratch arrays of a finished or killed fit: ``scratch-NAME.npy``
    files and the ``scratch-dask`` folder at the top of ``path``, nothing else."""
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if name == DASK_SCRATCH or SCRATCH_FILE.match(name) and not os.path.isdir(full):
            _remove(full)


def take_lock(path):
    """An exclusive lock on the run directory, held until the process ends (however
    it ends); :class:`RunDirError` if another process holds it. A ``.lock`` that is a
    symbolic link is refused, not followed. On a file system without ``flock`` (a
    Lustre mount without ``-o flock``, some FUSE and SMB mounts) the run goes on
    unlocked, with a warning."""
    file = os.path.join(path, LOCK)
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as e:
        if os.path.islink(file):
            raise RunDirError(f"{file}: a symbolic link; hkmeans does not follow it. Remove it.") from None
        raise RunDirError(f"{file}: cannot be opened ({e.strerror}).") from None
    f = os.fdopen(fd, "a")
    if fcntl is None:
        return f
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RunDirError(
            f"{path}: in use by another hkmeans process; wait for it to end, or use another --out."
        ) from None
    except OSError as e:  # ENOLCK, EOPNOTSUPP, ENOSYS: no flock on this file system
        warnings.warn(
            f"{path}: this file system cannot lock files ({e.strerror}); nothing keeps a second "
            "hkmeans process from writing this run at the same time.",
            UserWarning,
            stacklevel=2,
        )
    return f


def share_lock(path):
    """A shared lock on the run directory for a command that reads it (``sample``,
    ``export``, ``report``), held as long as the returned file is open: a fit cannot
    start over meanwhile, nor can it run when one starts. None where the run has no
    ``.lock`` (no fit ever ran there), it cannot be read (a read-only copy) or
    locked (a file system without ``flock``);
    :class:`RunDirError` if a fit holds the run."""
    file = os.path.join(path, LOCK)
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    f = os.fdopen(fd, "r")
    if fcntl is not None:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise RunDirError(f"{path}: a fit is running there; wait for it to end.") from None
        except OSError:  # a file system without flock (ENOLCK, EOPNOTSUPP): read unlocked
            f.close()
            return None
    return f


@contextmanager
def manifest_update(path):
    """Hold an exclusive lock of its own while a command that shares the run's lock
    reads, changes and rewrites the manifest of the run directory ``path``: two
    ``sample`` runs at once would otherwise each write it without the other's change.
    After :data:`MANIFEST_WAIT` seconds of another process holding it, or where it
    cannot be opened or locked in a run directory that can be written, the rewrite
    goes on unlocked, with a warning; quietly where the run cannot be written (the
    manifest cannot be either). A lock file that is a symbolic link is refused."""
    file = os.path.join(path, MANIFEST_LOCK)
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    fd, problem = None, None
    try:
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT | nofollow, 0o666)
        except PermissionError:  # another user's lock file: flock needs no write access
            fd = os.open(file, os.O_RDONLY | nofollow)
    except OSError as e:
        if os.path.islink(file):
            raise RunDirError(f"{file}: a symbolic link; hkmeans does not follow it. Remove it.") from None
        if os.access(path, os.W_OK):
            problem = f"{MANIFEST_LOCK} cannot be opened ({e.strerror})"
    try:
        if fd is not None and fcntl is not None:
            deadline = time.monotonic() + MANIFEST_WAIT
            while problem is None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        problem = f"another process held its lock for {MANIFEST_WAIT:g} s"
                    time.sleep(0.01)
                except OSError as e:  # ENOLCK, EOPNOTSUPP, ENOSYS: no flock on this file system
                    problem = f"this file system cannot lock files ({e.strerror})"
        if problem is not None:
            warnings.warn(
                f"{path}: the record of the files written goes into the manifest unlocked ({problem}); "
                "another command writing it at the same time may lose it.",
                UserWarning,
                stacklevel=3,
            )
        yield
    finally:
        if fd is not None:
            os.close(fd)  # lets the lock go


def remove_temporaries(path):
    """Delete what a killed process left: its Dask scratch folder, and the temporary
    files of its atomic writes at the top of ``path`` and in hkmeans's own folders
    (``steps/``, ``centroids/``), never following a link; a user's folders are not read."""
    full = os.path.join(path, DASK_SCRATCH)
    if os.path.lexists(full):
        _remove(full)
    folders = [path]
    for name in OWNED_DIRS:
        top = os.path.join(path, name)
        if os.path.isdir(top) and not os.path.islink(top):
            folders += [root for root, _, _ in os.walk(top)]  # os.walk does not follow links
    for folder in folders:
        for name in os.listdir(folder):
            file = os.path.join(folder, name)
            if TEMPORARY.match(name) and not os.path.isdir(file):
                os.unlink(file)


def check_writable(path):
    try:
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RunDirError(f"{path}: not writable ({e.strerror}).") from None
