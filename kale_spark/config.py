"""Pipeline configuration: frozen dataclasses, loaded from YAML, with dotted overrides.

    cfg = load_config("conf/local.yaml", ["lake.root=/tmp/x", "spark.master=local[2]"])

Every section is a frozen dataclass; `build()` turns a plain dict into one, naming
the dotted key of anything unknown or of the wrong type. Values are checked in one
place: the loader coerces types, and `check_ranges` applies the bounds declared on
each field (`field(metadata=bounds(...))`); a section checks by hand only what is not
a range. Option objects owned by other packages (fetch.options, models.spec) are held
by field name, or inline (their keys directly under the section, as `fetch.deadline_s`),
so one YAML file describes a whole run and its hash is the run's config identity.

This module imports no runtime (pyspark, pandas, torch): tests/unit/test_layout.py.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

import yaml

from kale_spark.fetch.options import FetchStageOptions
from kale_spark.hashing import sha256_hex
from kale_spark.models.spec import GenerationParams, ModelSpec


class ConfigError(ValueError):
    """A configuration value is unknown, missing or invalid; the message names the key."""


# A field whose option object's keys sit directly under the section (fetch.deadline_s).
INLINE = {"inline": True}
# A long stage logs at least this often (lake/progress.py).
MAX_INTERVAL_S = 30.0


def bounds(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> dict[str, Any]:
    """Field metadata: the value must lie within [low, high] (open ends as given)."""
    return {"bounds": (low, high, low_open, high_open)}


def _bound_text(low, high, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_ranges(section: Any, name: str) -> None:
    """Raise ConfigError for the first field of `section` outside its declared bounds."""
    for f in dataclasses.fields(section):
        spec = f.metadata.get("bounds")
        value = getattr(section, f.name)
        if spec is None or value is None:
            continue
        low, high, low_open, high_open = spec
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            raise ConfigError(f"{name}.{f.name} must be {_bound_text(*spec)}")


class _Checked:
    """A config section: its bounds are checked when it is built."""

    _section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_ranges(self, self._section)


@dataclass(frozen=True)
class LakeConfig(_Checked):
    _section = "lake"
    root: str = "./lake"
    database: str = "kale"
    # Read a small plain table as the Parquet files its version checksum lists, not
    # through Delta's log replay (lake/checksum.py): ~2 s off a fresh driver's fetch.
    checksum_reads: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.root:
            raise ConfigError("lake.root must not be empty")
        if not self.database.isidentifier():
            raise ConfigError(f"lake.database must be an identifier, got {self.database!r}")


@dataclass(frozen=True)
class SparkConfig(_Checked):
    _section = "spark"
    master: str = "local[*]"
    app_name: str = "kale-spark"
    shuffle_partitions: int = field(default=8, metadata=bounds(1))
    arrow_batch_size: int = field(default=64, metadata=bounds(1))
    ui: bool = False
    # Resolve Delta's jar through spark.jars.packages (local, plain clusters). Off on
    # Databricks and on clusters whose images already carry Delta.
    delta_packages: bool = True
    log_level: str = "WARN"
    # A local driver JVM that kale launches runs C1-only and maps the class archive
    # `make setup` builds (kale_spark/spark/jvm.py): seconds off every local run's start.
    jvm_quick_start: bool = True
    # Start each stage's Python workers (and a model stage's model) while the driver
    # plans (spark/warmup.py); off: the first tasks start them.
    warm_workers: bool = True
    # Extra Spark properties, applied last (e.g. spark.executor.memory).
    conf: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.log_level.upper() not in {"ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"}:
            raise ConfigError(f"spark.log_level: unknown level {self.log_level!r}")
        object.__setattr__(self, "conf", types.MappingProxyType(dict(self.conf)))


@dataclass(frozen=True)
class SampleConfig(_Checked):
    _section = "sample"
    rows: int = field(default=120, metadata=bounds(1))
    seed: int = 0
    bad_fraction: float = field(default=0.1, metadata=bounds(0, 1, high_open=True))
    out: str = "./data/sample"
    max_side: int = field(default=2400, metadata=bounds(32))


@dataclass(frozen=True)
class IngestConfig(_Checked):
    _section = "ingest"
    # A parquet file, folder (recursive; a DataComp download's metadata/) or glob.
    input: str = "./data/sample/metadata"
    # Alt-texts longer than this are quarantined (DataComp's are short; a megabyte of
    # text is a scrape error, and it would blow the fusion prompt's token budget).
    max_text_chars: int = field(default=2000, metadata=bounds(1))
    url_schemes: tuple[str, ...] = ("http", "https", "file")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.url_schemes:
            raise ConfigError("ingest.url_schemes must not be empty")


@dataclass(frozen=True)
class FetchConfig(_Checked):
    """The fetch stage: every `fetch.*` key.

    `options` holds the network, decode and hash options (`fetch.allow_networks`,
    `fetch.deadline_s`, `fetch.max_bytes`, `fetch.concurrency`, `fetch.file_root`,
    `fetch.opt_out_directives`, ..., `fetch.image.*`, `fetch.hash_policy`): a
    fetch.options.FetchStageOptions, validated there, once. Its keys sit directly
    under `fetch` (inline) and read as attributes of this section too
    (`cfg.fetch.file_root`). This adds the rerun policy and the task sizing.
    """

    _section = "fetch"
    options: FetchStageOptions = field(default_factory=FetchStageOptions, metadata=INLINE)
    # Rows whose status is retryable are fetched again on a rerun, up to this many
    # attempts in all; after that the status is final.
    max_attempts_total: int = field(default=6, metadata=bounds(1))
    # img2dataset / WebDataset output to read images from instead of the network
    # (a list of paths; publish.webdataset, a bool, says whether to *write* tars).
    webdataset: tuple[str, ...] = ()
    # Rows per Spark task at most (a task fetches its rows with fetch.concurrency
    # threads and writes one file: 2000 490-px JPEGs are ~60-100 MB, near Delta's file
    # size); fewer, larger tasks also mean fewer waves.
    rows_per_task: int = field(default=2000, metadata=bounds(1))
    # Rows are partitioned by host (registered domain): one task owns a host's rows and
    # opens at most fetch.per_host_concurrency connections to it. A host with more rows
    # than host_rows_per_task is spread over host_salt tasks instead, so the cluster
    # opens at most per_host_concurrency x host_salt connections to one host.
    host_rows_per_task: int = field(default=2000, metadata=bounds(1))
    host_salt: int = field(default=16, metadata=bounds(1))

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this section lacks: the inline options' keys.
        if name.startswith("__") or name == "options" or not hasattr(self.options, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.options, name)


@dataclass(frozen=True)
class ModelsConfig(_Checked):
    """Where models run: shared by the caption, augment and student stages."""

    _section = "models"
    # Cache for the tiny locally-built models ("" = $KALE_MODEL_CACHE or ~/.cache).
    cache_dir: str = ""
    # torch threads per Python worker; 0 = executor cores / concurrent tasks.
    torch_threads: int = field(default=0, metadata=bounds(0))


@dataclass(frozen=True)
class ProgressConfig(_Checked):
    """The progress reporter every long stage uses (kale_spark/lake/progress.py)."""

    _section = "progress"
    # Seconds between progress lines (and `runs` figures); at most 30.
    interval_s: float = field(default=10.0, metadata=bounds(0, MAX_INTERVAL_S, low_open=True))


@dataclass(frozen=True)
class FilterConfig(_Checked):
    """The filter stage: leaked-prompt removal, then reject captions that end too short."""

    _section = "filter"
    # A cleaned caption with fewer words than this is rejected (`too_short`).
    min_words: int = field(default=5, metadata=bounds(0))
    # After the hand rules, also remove sentences the learned classifier calls leaks
    # (reason `learned`; docs/pipeline.md "The learned leak step"). On by default: on the
    # frozen holdout it adds recall and no false positive (bench/figures/artifacts.json).
    learned_leaks: bool = True


@dataclass(frozen=True)
class PublishConfig(_Checked):
    """The publish stage: the gold `kale` table and its exports."""

    _section = "publish"
    # Rows per exported Parquet shard (and WebDataset tar); the last shard holds the rest.
    rows_per_shard: int = field(default=10000, metadata=bounds(1))
    # Also write WebDataset tars (<uid>.jpg/.txt/.json) from the `images` table.
    webdataset: bool = False
    # Export the release right after publishing it.
    export: bool = True
    # Shards read from Spark per job when exporting: the driver holds this many shards
    # of rows (and their images, with `webdataset`) at once, whatever the table's size.
    shards_per_read: int = field(default=4, metadata=bounds(1))
    # Write the static release browser (kale_spark/release) beside the export.
    browser: bool = False


@dataclass(frozen=True)
class BrowseConfig(_Checked):
    """The static release browser (`kale browse`, kale_spark/release/browser.py)."""

    _section = "browse"
    # Rows a browser shows at most, drawn by uid hash: a 10M-row release writes a
    # sample, not 10M rows. A diff shows at most this many changed uids.
    sample_rows: int = field(default=2000, metadata=bounds(1))
    # Longest side of a thumbnail, in pixels.
    thumb_px: int = field(default=160, metadata=bounds(16, 1024))


@dataclass(frozen=True)
class SplitConfig(_Checked):
    """Which ok images the teacher (stage 1) captions; the student captions the rest.

    Deterministic by uid hash (kale_spark/split.py). Without a split section the
    teacher takes everything; KALE's ratio is 100/218 (conf/paper.yaml), the local
    profile about half.
    """

    _section = "split"
    teacher_fraction: float = field(default=1.0, metadata=bounds(0, 1))


@dataclass(frozen=True)
class FaultsConfig(_Checked):
    """Injected faults for the reliability tests (kale_spark/faults, docs/faults.md).

    All off by default, and refused in the paper profile: a fault only exists where a
    config turns it on. uids name rows of the run's input.
    """

    _section = "faults"
    # A model task raises when its rows hold one of these uids, on its first attempt
    # only (TaskContext.attemptNumber() == 0): Spark's task retry recovers.
    udf_raise_uids: tuple[str, ...] = ()
    # The first N model batches of more than one row in each Python worker raise a
    # CUDA-style out-of-memory error: the batch splits and succeeds.
    udf_oom_batches: int = field(default=0, metadata=bounds(0))
    # The Python worker exits (os._exit) mid-task on a first attempt holding one of these.
    kill_worker_uids: tuple[str, ...] = ()
    # fetch: these rows' bytes are corrupted between download and decode.
    corrupt_image_uids: tuple[str, ...] = ()
    # The first commit of a model stage's generated rows to each of these tables
    # fails, once per lake (a marker under <lake.root>/_faults records it).
    fail_commit_tables: tuple[str, ...] = ()
    # A local file each injected fault appends a JSON line to ("" = none).
    log: str = ""

    @property
    def active(self) -> bool:
        """True when any fault is turned on."""
        return bool(
            self.udf_raise_uids
            or self.udf_oom_batches
            or self.kill_worker_uids
            or self.corrupt_image_uids
            or self.fail_commit_tables
        )


# Profiles that run for real: injected faults are refused there.
NO_FAULT_PROFILES = ("paper",)


TRAIN_PARTS = ("projector", "projector_lm", "lora")
# Activations of transformers' ACT2FN a projector may use (named here: no torch import).
PROJECTOR_ACTS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "quick_gelu", "relu", "silu")


@dataclass(frozen=True)
class ProjectorConfig:
    """The vision → LM projector (LLaVA-1.5's two-layer MLP): its shape and inputs.

    ``hidden_act`` sits between the two linear layers (vision width → LM width →
    LM width); ``vision_feature_layers`` are the vision tower's hidden states fed to
    it, concatenated (one layer: the LLaVA default -2), which sets its input width.
    """

    hidden_act: str = "gelu"
    vision_feature_layers: tuple[int, ...] = (-2,)
    # "default" drops the CLS token, "full" keeps it.
    feature_select: str = "default"
    bias: bool = True

    def __post_init__(self) -> None:
        if self.hidden_act not in PROJECTOR_ACTS:
            raise ConfigError(f"student.projector.hidden_act: unknown {self.hidden_act!r}")
        if not self.vision_feature_layers:
            raise ConfigError("student.projector.vision_feature_layers must not be empty")
        if self.feature_select not in ("default", "full"):
            raise ConfigError("student.projector.feature_select must be default or full")


# student.caption.id: the checkpoint train-student made last (else a checkpoint path).
LATEST_STUDENT = "student:latest"


def _student_caption() -> ModelSpec:
    return ModelSpec(
        id=LATEST_STUDENT,
        prompt_id="student_v1",
        batch_size=8,
        max_input_tokens=128,
        generation=GenerationParams(max_new_tokens=32, min_new_tokens=16),
    )


@dataclass(frozen=True)
class StudentModelConfig(_Checked):
    """What the student is: its base models, projector and the parts that train.

    The base models are hub ids, local paths, or the tiny local stand-ins
    ``tiny:student-vision`` (a CLIP vision tower) and ``tiny:student-lm`` (a
    Qwen2-architecture LM), built on the spot like the stage-1 tiny models.
    """

    _section = "student.model"
    vision_model: str = "tiny:student-vision"
    vision_revision: str | None = None
    language_model: str = "tiny:student-lm"
    language_revision: str | None = None
    # Images are resized to this; the vision tower's position embeddings are
    # interpolated when it differs from the tower's own (the paper: 378 → 490).
    image_size: int = field(default=40, metadata=bounds(1))
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    train_parts: str = "projector_lm"  # projector | projector_lm | lora
    lora_r: int = field(default=16, metadata=bounds(1))
    lora_alpha: int = field(default=32, metadata=bounds(1))
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_parts not in TRAIN_PARTS:
            raise ConfigError(
                f"student.model.train_parts must be one of {', '.join(TRAIN_PARTS)}, "
                f"got {self.train_parts!r}"
            )


@dataclass(frozen=True)
class StudentTrainConfig(_Checked):
    """How train-student trains: optimiser, steps, data loading, processes, checkpoints."""

    _section = "student.train"
    # peak: reached after warmup_steps, then a cosine decay to 0
    lr: float = field(default=1e-3, metadata=bounds(0, low_open=True))
    warmup_steps: int = field(default=0, metadata=bounds(0))  # linear warmup from 0 to lr
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_steps: int = field(default=40, metadata=bounds(1))
    batch_size: int = field(default=4, metadata=bounds(1))  # per process
    # Recompute activations in the backward pass: less memory, more compute.
    gradient_checkpointing: bool = False
    # DataLoader worker processes per rank (decode, image preprocessing, tokenizing off
    # the training thread; 0 = on it) and the batches each worker prepares ahead.
    loader_workers: int = field(default=2, metadata=bounds(0))
    loader_prefetch: int = field(default=2, metadata=bounds(1))
    eval_interval: int = field(default=10, metadata=bounds(1))
    checkpoint_interval: int = field(default=10, metadata=bounds(1))
    keep_checkpoints: int = field(default=2, metadata=bounds(1))
    max_val_batches: int = field(default=8, metadata=bounds(1))
    val_fraction: float = field(default=0.2, metadata=bounds(0, 1, low_open=True, high_open=True))
    max_caption_tokens: int = field(default=128, metadata=bounds(1))
    seed: int = 0
    # Training keeps fp32 master weights and runs the forward under autocast in this
    # dtype (bfloat16 on GPUs; float32 = no autocast).
    dtype: str = "float32"
    # TorchDistributor: processes (GPUs) and where they run.
    num_processes: int = field(default=1, metadata=bounds(1))
    local_mode: bool = True
    use_gpu: bool = False
    # Checkpoints live under <checkpoint_dir>/<training key>/ ("" = <lake.root>/student).
    checkpoint_dir: str = ""
    # The filtered_captions version to train on (null: the latest at train time).
    source_version: int | None = field(default=None, metadata=bounds(0))
    # Parquet files of the training snapshot (ranks read equal shares of rows).
    snapshot_files: int = field(default=4, metadata=bounds(1))
    # Where snapshots live: a URI or path that Spark writes and every trainer reads
    # ("" = <checkpoint root>/snapshots). One snapshot per data key, reused by runs.
    snapshot_dir: str = ""
    # `kale train-student --clean-snapshots`: remove snapshots no resumable run uses.
    clean_snapshots: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"student.train.dtype: unknown {self.dtype!r}")


@dataclass(frozen=True)
class StudentConfig(_Checked):
    """Stage 2: the LLaVA-style student (``model``), its training (``train``) and its
    captioning (``caption``, a model spec like ``caption`` and ``augment``).

    ``caption.prompt_id`` and ``caption.max_input_tokens`` are the prompt the student
    reads and its token budget, at training and at captioning alike; ``caption.id`` is
    ``student:latest`` (the checkpoint train-student made last) or a checkpoint path.
    """

    _section = "student"
    model: StudentModelConfig = field(default_factory=StudentModelConfig)
    train: StudentTrainConfig = field(default_factory=StudentTrainConfig)
    caption: ModelSpec = field(default_factory=_student_caption)

    def __post_init__(self) -> None:
        super().__post_init__()
        from kale_spark.prompts import PROMPTS

        prompt = self.caption.prompt_id
        if prompt not in PROMPTS or "alt_text" not in PROMPTS[prompt].slots:
            raise ConfigError(f"student.caption.prompt_id {prompt!r}: needs a prompt with alt_text")


def _tiny_vlm() -> ModelSpec:
    return ModelSpec(id="tiny:vlm", prompt_id="dense_v1", batch_size=8)


def _tiny_lm() -> ModelSpec:
    return ModelSpec(id="tiny:lm", prompt_id="fuse_capsfusion_v1", batch_size=8)


@dataclass(frozen=True)
class Config:
    profile: str = "local"
    lake: LakeConfig = field(default_factory=LakeConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    progress: ProgressConfig = field(default_factory=ProgressConfig)
    caption: ModelSpec = field(default_factory=_tiny_vlm)
    augment: ModelSpec = field(default_factory=_tiny_lm)
    filter: FilterConfig = field(default_factory=FilterConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    browse: BrowseConfig = field(default_factory=BrowseConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)

    def __post_init__(self) -> None:
        from kale_spark.models.loading import check_pinned  # light: no torch import

        if self.faults.active and self.profile in NO_FAULT_PROFILES:
            raise ConfigError(
                f"faults.* injects failures for tests and is refused in the {self.profile} "
                "profile; remove the faults section (or its --set overrides)"
            )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ModelSpec):
                try:
                    check_pinned(value, f.name)
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return _to_builtins(self)

    def config_hash(self) -> str:
        """A stable identity of the run's settings, stored in the runs table (faults that
        are off leave it as it was before the faults section existed)."""
        data = self.to_dict()
        if not self.faults.active:
            data.pop("faults")
        blob = json.dumps(data, sort_keys=True, default=str)
        return sha256_hex(blob.encode())[:16]


def _to_builtins(value: Any) -> Any:
    """`value` as dicts, lists and scalars (dataclasses and mappings unpacked, tuples listed)."""
    if dataclasses.is_dataclass(value):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = _to_builtins(getattr(value, f.name))
            if f.metadata.get("inline"):
                out.update(item)  # its keys sit in this section, as in the YAML
            else:
                out[f.name] = item
        return out
    if isinstance(value, Mapping):
        return {k: _to_builtins(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_to_builtins(v) for v in value]
    return value


def build(cls: type, data: Mapping[str, Any] | None, prefix: str = "") -> Any:
    """Build dataclass `cls` from a plain mapping, checking keys and types."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    inline = {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.metadata.get("inline")}
    data, inline_kwargs = _build_inline(inline, data, prefix)
    names = {f.name for f in dataclasses.fields(cls) if f.init} - set(inline)
    names |= {n for tp in inline.values() for n in _field_names(tp)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key '{where}{unknown[0]}' (known: {', '.join(sorted(names))})"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = dict(inline_kwargs)
    for name, raw in data.items():
        key = f"{prefix}.{name}" if prefix else name
        default = _field_default(fields[name])
        if dataclasses.is_dataclass(default) and isinstance(raw, Mapping):
            # A section in YAML or --set overrides only the keys it names.
            raw = _deep_merge(_to_builtins(default), raw)
        kwargs[name] = _coerce(hints[name], raw, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from exc


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def _build_inline(
    inline: Mapping[str, type], data: Mapping[str, Any], prefix: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split off the keys of each inline option object and build it: (rest, built)."""
    rest, built = dict(data), {}
    for name, tp in inline.items():
        hints = typing.get_type_hints(tp)
        own = {k: rest.pop(k) for k in _field_names(tp) if k in rest}
        kwargs = {k: _coerce(hints[k], v, f"{prefix}.{k}") for k, v in own.items()}
        try:
            built[name] = tp(**kwargs)
        except ValueError as exc:  # an option object's message starts with its field's name
            raise ConfigError(f"{prefix}.{exc}") from None
    return rest, built


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _coerce(tp: Any, raw: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], raw, key)
    if dataclasses.is_dataclass(tp):
        return build(tp, raw, key)
    if tp is Any:
        return raw
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        raise ConfigError(f"{key}: expected true/false, got {raw!r}")
    if tp is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        raise ConfigError(f"{key}: expected an integer, got {raw!r}")
    if tp is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        raise ConfigError(f"{key}: expected a number, got {raw!r}")
    if tp is str:
        if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
            return str(raw)
        raise ConfigError(f"{key}: expected a string, got {raw!r}")
    if origin is tuple:
        if isinstance(raw, str) or not isinstance(raw, Sequence):
            raise ConfigError(f"{key}: expected a list, got {raw!r}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(raw))
    if origin in (Mapping, dict) or tp in (dict, Mapping):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {raw!r}")
        return {str(k): str(v) for k, v in raw.items()}
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def apply_override(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Return a copy of `data` with one `a.b.c=value` override applied.

    The value is parsed as YAML (`true`, `3`, `[a, b]`), falling back to the raw
    string, so `spark.master=local[2]` stays a string.
    """
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    dotted, _, text = assignment.partition("=")
    parts = [p for p in dotted.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set has an empty key: {assignment!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    if isinstance(value, str) or value is None:
        value = text if value is not None else None
    out = _deep_copy(data)
    node = out
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is not a section")
        node[part] = child = _deep_copy(child)
        node = child
    node[parts[-1]] = value
    return out


def _deep_copy(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in d.items()}


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a profile YAML (or the built-in defaults) and apply `--set` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        loaded = yaml.safe_load(p.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping")
        data = loaded or {}
    for assignment in overrides:
        data = apply_override(data, assignment)
    return build(Config, data)
