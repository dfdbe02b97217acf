"""Where released weight files come from: a local path, the cache, or a one-time download.

A :class:`WeightSource` names a file as its authors published it (file name, download URL, the Hugging Face
repository when it lives there, and optionally its SHA-256). :func:`resolve_weights` returns a local path:
the path a user gave when given, else the cached copy, else it downloads the file once into the cache
(``$CONDBENCH_CACHE``, default ``~/.cache/condbench``), atomically. Offline, or when the download fails, the
error names the file, the URL, where it was looked for, and the option that takes a local copy.
"""
from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .checkpoints import CheckpointError, CheckpointNotFoundError, FileSetting, file_sha256, require_file
from .progress import progress_bar


@dataclass(frozen=True)
class WeightSource:
    """A released weight file: its official name, where it is published, and its hash when pinned."""

    filename: str
    url: str
    hf_repo: Optional[str] = None  # the file is ``hf_filename`` (default ``filename``) in this hub repository
    hf_filename: Optional[str] = None
    sha256: Optional[str] = None
    direct: bool = True  # False: the URL is a page (e.g. Google Drive) a person downloads from, not a file
    parts: tuple[str, ...] = ()  # URLs of pieces that, concatenated in order, are the file (split releases)

    def describe(self) -> str:
        return f"{self.filename} from {self.url}"


def cache_root() -> Path:
    """The download cache: ``$CONDBENCH_CACHE`` or ``~/.cache/condbench``."""
    return Path(os.environ.get("CONDBENCH_CACHE", Path.home() / ".cache" / "condbench")).expanduser()


def offline() -> bool:
    """True when the user asked for no downloads (``CONDBENCH_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("CONDBENCH_OFFLINE", "HF_HUB_OFFLINE"))


def local_files_only() -> bool:
    """For a Hugging Face load (``from_pretrained``, ``hf_hub_download``, ``snapshot_download``): True when offline,
    and then the hub library is switched offline for the rest of the process too. It reads ``HF_HUB_OFFLINE`` only
    when imported, and otherwise even a ``local_files_only`` load asks the hub for its agent registry, so
    ``CONDBENCH_OFFLINE=1`` alone would still reach the network."""
    if not offline():
        return False
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    return True


CHECKPOINT_OPTION = ("the model option ckpt (in a suite: model_options: {{{model}: {{ckpt: PATH}}}}; in Python: "
                     "ckpt=PATH; condbench analyze: --ckpt PATH)")
_failed_downloads: list[str] = []  # downloads that failed in this process: the network is not tried again


def checkpoint_option(model: str) -> str:
    """Where a user gives a model's checkpoint path, for :func:`resolve_weights`' messages."""
    return CHECKPOINT_OPTION.format(model=model)


def checkpoint_setting(model: str, filename: str) -> FileSetting:
    """The suite key of a model's checkpoint, for the missing-files snippet."""
    return FileSetting(("model_options", model, "ckpt"), placeholder_path(filename))


def placeholder_path(filename: str) -> str:
    """Where the missing-files snippet says a file goes: ``/path/to/`` and the file's own name."""
    return f"/path/to/{Path(filename).name}"


def resolve_weights(source: WeightSource, path: Optional[str | Path] = None, *, what: str,
                    option: Optional[str] = "the option that takes its path", download: bool = True,
                    setting: Optional[FileSetting] = None) -> Path:
    """A local copy of ``source``: ``path`` if given, else the cache, else a one-time download into the cache.

    ``option`` says where a user gives the path (a phrase: "the task option reference_batch"; None: no option takes
    it, the file goes in the cache), ``setting`` the
    same as suite keys (for the missing-files snippet). After one failed download the process tries no other
    (no retries against a network that is not there).
    """
    settings = (setting,) if setting else ()
    if path is not None:
        return require_file(path, what, f"check the path given as {option}, or leave it out to use "
                                        f"{source.describe()} (downloaded once into {cache_root() / 'weights'})",
                            setting)
    target = cache_root() / "weights" / source.filename
    if target.is_file():
        _verify(source, target)
        return target
    fetch = (f"download the parts {', '.join(source.parts)} and concatenate them in that order into {source.filename}"
             if source.parts else f"download {source.url} yourself")
    how = f"{fetch}, then {f'give its path as {option}, or ' if option else ''}place it at {target}"
    if not source.direct:
        raise CheckpointNotFoundError(
            f"{what} not found: {source.filename!r} is not in the cache ({target}), and it is published only on "
            f"a page a person downloads from (download it by hand): {source.url}\nHow to provide it: {how}.", settings)
    if not download or offline():
        raise CheckpointNotFoundError(
            f"{what} not found: {source.filename!r} is not in the cache ({target}) and downloads are off "
            f"(offline mode).\nHow to provide it: {how}.", settings)
    if _failed_downloads:
        raise CheckpointNotFoundError(
            f"{what} not found: {source.filename!r} is not in the cache ({target}); not downloaded from {source.url} "
            f"because an earlier download in this run failed ({_failed_downloads[0]}).\nHow to provide it: {how}.",
            settings)
    try:
        _download(source, target)
    except Exception as error:  # network, HTTP and hub errors all end here with the same remedy
        _failed_downloads.append(f"{source.filename}: {error.__class__.__name__}")
        raise CheckpointNotFoundError(
            f"{what} not found: {source.filename!r} is not in the cache ({target}) and downloading it from "
            f"{source.url} failed ({error.__class__.__name__}: {error}).\nHow to provide it: {how}.",
            settings) from None
    _verify(source, target)
    return target


def _download(source: WeightSource, target: Path) -> None:
    """Fetch the file into ``target`` through a temporary name, so a killed download leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        if source.hf_repo is not None:
            from huggingface_hub import hf_hub_download

            cached = hf_hub_download(source.hf_repo, source.hf_filename or source.filename,
                                     cache_dir=str(cache_root() / "hf"))
            os.link(cached, tmp) if _same_device(cached, tmp.parent) else _copy(Path(cached), tmp)
        else:
            with open(tmp, "wb") as out:
                for url in source.parts or (source.url,):
                    _append_url(url, out, source.filename)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _append_url(url: str, out, name: str) -> None:
    """Stream ``url`` onto the end of the open file ``out``, with a progress bar; a short read is an error."""
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        with progress_bar(total=total, unit="B", unit_scale=True, desc=name) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received != total:
        raise OSError(f"received {received} of {total} bytes from {url}")


def _same_device(path: str, directory: Path) -> bool:
    return os.stat(path).st_dev == os.stat(directory).st_dev


def _copy(src: Path, dst: Path) -> None:
    import shutil

    shutil.copyfile(src, dst)


def _verify(source: WeightSource, path: Path) -> None:
    """Check a pinned SHA-256; a mismatch removes nothing but says how to recover."""
    if source.sha256 is None:
        return
    digest = file_sha256(path)
    if digest != source.sha256:
        raise CheckpointError(f"{path} does not match the published {source.filename}: sha256 {digest} instead of "
                              f"{source.sha256}. The download is corrupt or a different file: delete it and run "
                              f"again, or give the path of a good copy.")
