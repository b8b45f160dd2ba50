"""The one exception tree of pipeyard.

Every error pipeyard raises on purpose derives from :class:`PipeyardError`, and also from the
standard exception that fits, so ``except FileNotFoundError`` keeps working around a missing
weights file. Each carries the values it is about as attributes, and its message says what to
change.

::

    PipeyardError
    ├── EnvironmentVariableError (ValueError)       a variable from constants.py is malformed
    ├── PipeyardHomeError (OSError)                 PIPEYARD_HOME cannot be read or written
    ├── SaveError (OSError)                         save_pretrained cannot write its folder (disk full,
    │                                               read-only); the previous content is kept
    ├── ConfigError (ValueError)
    │   ├── ConfigFileError                         a config / index JSON file that is not valid JSON, not
    │   │                                           an object, too large, too deep or repeats a key
    │   ├── MissingConfigKeyError (TypeError)       a required __init__ argument is not in the config
    │   ├── UnexpectedConfigKeyError (TypeError)    an override the class does not take
    │   ├── ConfigBuildError                        a config file whose values the class's __init__
    │   │                                           fails on, past every check that names them
    │   └── FrozenConfigError (TypeError)           someone tried to mutate ``obj.config``
    ├── EntryNotFoundError (FileNotFoundError)      a file missing from a folder or repo
    ├── LocalPathError (FileNotFoundError)          a local path that does not exist
    ├── OutsideRepositoryError (PermissionError)    a local repo's file links outside it, or is special
    ├── HubError (OSError)
    │   ├── RepositoryNotFoundError (FileNotFoundError)
    │   ├── RevisionNotFoundError (FileNotFoundError)
    │   ├── GatedRepoError (PermissionError)
    │   ├── OfflineError (ConnectionError)          offline and the file is not cached
    │   ├── InvalidRepoIdError (ValueError)         a repo id the Hub's naming rules refuse
    │   ├── InvalidSubfolderError (ValueError)      a subfolder that leaves its folder or repo
    │   ├── HubOptionError (ValueError)             a malformed revision, token, proxies, endpoint...
    │   ├── HubDownloadError (ValueError)           a file whose bytes or commit differ from what the
    │   │                                           Hub promised (sha256 ETag, size, X-Repo-Commit)
    │   └── HubCacheError                           the Hub cache cannot be written (full, read-only)
    ├── WeightsError
    │   ├── WeightsNotFoundError (FileNotFoundError)
    │   ├── VariantNotFoundError (FileNotFoundError)
    │   ├── StateDictMismatchError (KeyError)       missing / unexpected keys
    │   ├── ShapeMismatchError (ValueError)
    │   ├── CorruptWeightsError (ValueError)        a weights file or shard index that is damaged or
    │   │                                           malformed (checked before it is read)
    │   └── PickleWeightsError (PermissionError)    pickle (.bin) weights without allow_pickle=True
    ├── ComponentError
    │   ├── UnknownComponentClassError (LookupError)  a [library, Class] pair nothing can load
    │   ├── MissingComponentError (TypeError)       required components nobody supplied
    │   ├── UnexpectedArgumentError (TypeError)     a keyword that is neither component nor option
    │   ├── ComponentTypeError (TypeError)          a passed object of the wrong type
    │   ├── UnetChannelsError (ValueError)          an inpainting UNet with neither 4 nor 9 inputs
    │   └── EncoderLatentsError (AttributeError)    a VAE encode output holding no latents
    ├── SchedulerError (ValueError)                 bad scheduler config or call order
    │   ├── SchedulerConfigError                    a config value outside the valid choices
    │   │   └── UnsupportedSchedulerOptionError (NotImplementedError)  kept, not implemented
    │   ├── SchedulerOptionTypeError (TypeError)    a number option that is not a number (null, "x", [])
    │   ├── InferenceStepsError                     num_inference_steps < 1 or > training steps
    │   ├── SchedulerNotReadyError (RuntimeError)   step() before set_timesteps()
    │   ├── TimestepNotInScheduleError (LookupError)  a timestep the schedule does not hold
    │   ├── ModelOutputShapeError                   model output and sample shapes differ
    │   ├── UnknownSchedulerError (LookupError)     a scheduler class name pipeyard does not have
    │   └── ScheduleRequestError                    set_timesteps arguments that form no schedule
    ├── ModelInputError (ValueError)                bad model config or forward input
    │   ├── ModelConfigError                        a config value the model cannot build
    │   ├── UnknownBlockTypeError (LookupError)     a block type name no registry knows
    │   ├── InputShapeError                         forward input of the wrong shape
    │   ├── MissingModelInputError (TypeError)      a forward input the model needs is None
    │   └── AttentionProcessorError                 attention processors set or used wrongly
    ├── PipelineInputError (ValueError)             bad arguments to a pipeline's __call__
    │   ├── ImageSizeError                          height / width not a multiple of 8
    │   ├── ConflictingInputsError                  e.g. prompt and prompt_embeds both given
    │   ├── BatchSizeMismatchError                  generators / negative prompts of the wrong length
    │   ├── UnknownOutputTypeError                  output_type not "pil", "np", "pt" (or "latent")
    │   └── StrengthError                           img2img / inpainting strength outside [0, 1]
    ├── UnsupportedFeatureError (NotImplementedError)  a diffusers pipeline feature pipeyard does not
    │                                               have yet (LoRA / textual inversion loading,
    │                                               single-file checkpoints, FreeU, ...)
    ├── CustomPipelineError                         the custom-pipeline host (resolve → import)
    │   ├── PipelineNotFoundError (LookupError)     no source matched a custom_pipeline value
    │   ├── InvalidPipelineNameError (ValueError)
    │   ├── PipelineVerificationError (ValueError)  the file failed the AST checks
    │   │   ├── PipelineSyntaxError                 it does not parse (file, line, column)
    │   │   ├── PipelineEncodingError (UnicodeError)  it is not UTF-8
    │   │   ├── PipelineClassError                  zero or several DiffusionPipeline subclasses
    │   │   ├── DiffusersCompatibilityError         it imports diffusers names pipeyard lacks
    │   │   └── UnsafePackageFileError              a package file outside the closed set, refused unread
    │   ├── RequirementsError (ImportError)         declared or imported packages are missing
    │   ├── UntrustedCodeError (PermissionError)    the trust gate said no
    │   ├── TrustStoreError (ValueError)            trust.json is damaged
    │   ├── PipelineImportError (ImportError)       importing the verified file failed
    │   ├── PipelineFileExistsError (FileExistsError)  `pipeyard new` would overwrite a file
    │   └── CheckoutNotFoundError (FileNotFoundError)  `new` / `registry build|check` outside a checkout
    ├── DeviceError (ValueError)                    a device torch does not know or this machine lacks
    ├── GenerateError                               a batch generation job (pipeyard.generate)
    │   ├── JobSpecError (ValueError)               a bad items file row, grid or job option
    │   │   └── DuplicateItemError                  two items with the same id
    │   ├── ManifestError (ValueError)              manifest.jsonl damaged before its last line
    │   ├── ItemConflictError (ValueError)          a finished item id asked again with other settings
    │   ├── OutputBusyError (BlockingIOError)       another job holds the output folder
    │   ├── PinMismatchError (PermissionError)      a worker got code or weights that differ from the pin
    │   ├── EngineUnavailableError (ImportError)    --engine ray without ``pipeyard[ray]`` installed
    │   └── GenerateJobError (RuntimeError)         the engine gave up (worker retries exhausted)
    ├── PluginError                                 a plugin misbehaved at registration or call
    └── UtilityError                                diffusers-style helpers misused (pipeyard.utils)
        ├── DeprecationExpiredError (ValueError)    a deprecate() call past its removal version
        ├── UnexpectedKeywordError (TypeError)      keywords left over after deprecate(take_from=...)
        └── ExampleDocstringError (ValueError)      replace_example_docstring on a docstring with
                                                    no ``Examples:`` line

    PipeyardWarning (UserWarning)                   the category of every warning pipeyard emits
    └── PipeyardDeprecationWarning (FutureWarning)  what deprecate() warns with
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def _preview(items: Sequence[Any], limit: int = 20) -> str:
    """``a, b, c`` for at most ``limit`` items, then ``(+N more)``."""
    shown = ", ".join(str(item) for item in items[:limit])
    if len(items) > limit:
        shown += f" (+{len(items) - limit} more)"
    return shown


class PipeyardError(Exception):
    """Base class of every error pipeyard raises on purpose.

    ``str(error)`` is always the message given to ``__init__``: the standard bases mixed in
    (``OSError``, ``KeyError``) would otherwise print errno fields or the message's repr.
    """

    def __init__(self, message: str = "", *args: Any) -> None:
        self.message = message
        super().__init__(message, *args)

    def __str__(self) -> str:
        return self.message


class EnvironmentVariableError(PipeyardError, ValueError):
    """An environment variable read in :mod:`pipeyard.constants` holds an unusable value."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"environment variable {name}={value!r} is not valid: expected {expected}")


class PipeyardHomeError(PipeyardError, OSError):
    """``PIPEYARD_HOME`` (or a file in it) cannot be used: not a folder, read-only, full.

    Attributes:
        path: the file or folder that failed.
        action: what pipeyard was doing (``store a pipeline package``).
        reason: the operating system's words.
    """

    def __init__(self, path: str, action: str, reason: str) -> None:
        self.path = str(path)
        self.action = action
        self.reason = reason
        super().__init__(
            f"cannot {action}: {self.path}: {reason}. PIPEYARD_HOME must be a writable folder; "
            f"fix its permissions, free space, or point PIPEYARD_HOME elsewhere"
        )


class SaveError(PipeyardError, OSError):
    """``save_pretrained`` could not write its folder; what was there before is unchanged.

    Attributes:
        path: the file or folder that failed.
        reason: the operating system's words.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"cannot save to {self.path}: {reason}. The folder keeps its previous content; free "
            f"space, fix the permissions, or save elsewhere"
        )


# --------------------------------------------------------------------------- configuration


class ConfigError(PipeyardError, ValueError):
    """A configuration could not be read, built or changed."""


def clip(value: Any, limit: int = 100) -> str:
    """``str(value)`` cut to ``limit`` characters: messages never echo a stranger's huge value."""
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...(+{len(text) - limit} characters)"


class ConfigFileError(ConfigError):
    """A config or index JSON file that pipeyard refuses to use.

    It is not UTF-8 JSON, not an object at the top, larger or deeper than the limits of
    :mod:`pipeyard.fileio`, or gives one key twice. ``reason`` says which.
    """

    def __init__(self, path: Any, reason: str, line: int | None = None, column: int | None = None):
        self.path = str(path)
        self.reason = reason
        self.line = line
        self.column = column
        where = f"{self.path}:{line}:{column}" if line is not None else self.path
        super().__init__(f"config file {where} is not valid: {reason}. Fix or re-save the file.")


class MissingConfigKeyError(ConfigError, TypeError):
    """A required ``__init__`` argument is absent from the config used to build an object."""

    def __init__(self, class_name: str, keys: Sequence[str], source: str | None = None) -> None:
        self.class_name = class_name
        self.keys = list(keys)
        origin = f" (config from {source})" if source else ""
        super().__init__(
            f"{class_name} needs {_preview(self.keys)} but the config{origin} does not set "
            f"{'it' if len(self.keys) == 1 else 'them'}; add the key(s) to the config or pass "
            f"them as keyword overrides to from_config()"
        )


class UnexpectedConfigKeyError(ConfigError, TypeError):
    """Keyword overrides that the class's ``__init__`` does not accept."""

    def __init__(self, class_name: str, keys: Sequence[str], valid: Iterable[str]) -> None:
        self.class_name = class_name
        self.keys = list(keys)
        self.valid = sorted(valid)
        super().__init__(
            f"{class_name} takes no config argument {_preview(self.keys)}; "
            f"valid arguments: {_preview(self.valid, 60)}"
        )


class ConfigBuildError(ConfigError):
    """A config read from a file whose values make the class's ``__init__`` fail.

    A repository's config.json is data from a stranger: values of the wrong type or range (a
    string where a channel count goes, a negative number of training steps) that no check of
    the class names end here, not as a bare ``TypeError`` from deep inside a layer. The
    original exception is chained (``__cause__``).

    Attributes:
        class_name: the class being built.
        path: the config file.
        reason: ``Type: message`` of what ``__init__`` raised.
    """

    def __init__(self, class_name: str, path: str, reason: str) -> None:
        self.class_name = class_name
        self.path = path
        self.reason = reason
        super().__init__(
            f"{class_name} cannot be built from the config in {path}: {clip(reason, 300)}. Fix the "
            f"config's values, or load a repository whose config matches this class"
        )


class FrozenConfigError(ConfigError, TypeError):
    """Raised on any attempt to change a frozen config in place."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(
            f"config is frozen: {operation} is not allowed. Build a new object instead, e.g. "
            f"Cls.from_config(obj.config, key=value)"
        )


# --------------------------------------------------------------------------- files and hub


class EntryNotFoundError(PipeyardError, FileNotFoundError):
    """A file is missing from a local folder or a Hub repository."""

    def __init__(self, location: str, filename: str, revision: str | None = None, hint: str = "") -> None:
        self.location = location
        self.filename = filename
        self.revision = revision
        at = f" at revision {revision!r}" if revision else ""
        super().__init__(f"{filename!r} does not exist in {location!r}{at}" + (f": {hint}" if hint else ""))


class LocalPathError(PipeyardError, FileNotFoundError):
    """A value that looks like a local path names nothing on disk."""

    def __init__(self, path: str, what: str = "folder") -> None:
        self.path = path
        super().__init__(
            f"local {what} {path!r} does not exist; check the path (a Hub repo id looks like "
            f"'owner/name' and must not start with '/', './' or '~')"
        )




class OutsideRepositoryError(PipeyardError, PermissionError):
    """A file of a local repository folder leads outside it (a link) or is not a regular file.

    A repository is a closed set of files: nothing outside the folder the caller named is read.
    """

    def __init__(self, folder: str, name: str, reason: str) -> None:
        self.folder = str(folder)
        self.name = name
        super().__init__(
            f"refusing to read {name!r} of the repository folder {self.folder}: {reason}. Nothing "
            f"outside the folder you name is read; copy the file into the folder instead of linking it"
        )


class HubError(PipeyardError, OSError):
    """A Hub request failed."""


class RepositoryNotFoundError(HubError, FileNotFoundError):
    def __init__(self, repo_id: str, detail: str = "") -> None:
        self.repo_id = repo_id
        super().__init__(
            f"repository {repo_id!r} was not found on the Hub (or is private): check the id, or "
            f"pass token=... / set HF_TOKEN if it is private" + (f" [{detail}]" if detail else "")
        )


class RevisionNotFoundError(HubError, FileNotFoundError):
    def __init__(self, repo_id: str, revision: str) -> None:
        self.repo_id = repo_id
        self.revision = revision
        super().__init__(
            f"revision {revision!r} does not exist in {repo_id!r}: pass an existing branch, tag "
            f"or commit sha"
        )


class GatedRepoError(HubError, PermissionError):
    def __init__(self, repo_id: str) -> None:
        self.repo_id = repo_id
        super().__init__(
            f"repository {repo_id!r} is gated: accept its terms on the Hub, then pass token=... "
            f"or set HF_TOKEN"
        )


class OfflineError(HubError, ConnectionError):
    """Offline mode is on (or the network is unreachable) and the files are not cached."""

    def __init__(self, what: str, reason: str = "offline mode is on") -> None:
        self.what = what
        super().__init__(
            f"cannot fetch {what}: {reason} and it is not in the local cache. Run once online "
            f"(unset PIPEYARD_OFFLINE / HF_HUB_OFFLINE) or pass a local folder"
        )


class InvalidRepoIdError(HubError, ValueError):
    """A value that would be sent to the Hub as a repo id but breaks its naming rules.

    Raised before any request, instead of huggingface_hub's validation traceback.
    """

    def __init__(self, value: str, argument: str, reason: str) -> None:
        self.value = value
        self.argument = argument
        self.reason = reason
        super().__init__(
            f"{argument}={value!r} is not a Hub repo id: {reason}. A repo id is 'name' or "
            f"'owner/name' (letters, digits, '-', '_', '.'; at most 96 characters each; not starting "
            f"or ending with '-' or '.'); to load a local folder, pass a path that exists"
        )


class InvalidSubfolderError(HubError, ValueError):
    """A ``subfolder`` that is not a plain relative path inside the folder or repo."""

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(
            f"subfolder={value!r} is not valid: {reason}. Pass the name of a folder inside the "
            f"repository, e.g. subfolder='unet' or subfolder='models/unet'"
        )


class HubOptionError(HubError, ValueError):
    """A Hub loading option (``revision``, ``token``, ``proxies``, ``endpoint``...) that is malformed."""

    def __init__(self, option: str, value: Any, expected: str) -> None:
        self.option = option
        self.value = value
        shown = "<hidden>" if option == "token" else repr(value)
        super().__init__(f"{option}={shown} is not valid: expected {expected}")


class HubDownloadError(HubError, ValueError):
    """A Hub file that arrived, or lies in the Hub cache, other than the Hub described it.

    Attributes:
        repo_id, filename: the file.
        reason: what differs (its sha256 and the ETag's, its commit and the one asked for).
    """

    def __init__(self, repo_id: str, filename: str, reason: str) -> None:
        self.repo_id = repo_id
        self.filename = filename
        self.reason = reason
        super().__init__(
            f"{filename!r} of {repo_id!r} cannot be used: {reason.rstrip('.')}. No damaged copy is "
            f"kept in the Hub cache; load again (online) to download it anew"
        )


class HubCacheError(HubError):
    """A file of the Hub cache cannot be written: the disk is full or the folder read-only.

    Attributes:
        path: the file or folder that failed.
        reason: the operating system's words.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"cannot write the Hub cache: {self.path}: {reason}. Free space, fix the permissions, "
            f"or point HF_HUB_CACHE elsewhere"
        )


# --------------------------------------------------------------------------- weights


class WeightsError(PipeyardError):
    """Model weights could not be found or do not fit the model."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    def __init__(self, location: str, looked_for: Sequence[str], hint: str = "") -> None:
        self.location = location
        self.looked_for = list(looked_for)
        super().__init__(
            f"no weights in {location}: looked for {_preview(self.looked_for)}"
            + (f". {hint}" if hint else "")
        )


class VariantNotFoundError(WeightsError, FileNotFoundError):
    def __init__(self, location: str, variant: str | None, available: Sequence[str]) -> None:
        self.location = location
        self.variant = variant
        self.available = sorted(available)
        names = ", ".join(repr(v) for v in self.available) or "none"
        asked = f"variant {variant!r}" if variant else "the default (no variant) weights"
        super().__init__(
            f"{location} has no weights for {asked}; available variants: {names} "
            f"(None = no variant). Pass variant=... accordingly"
        )


class StateDictMismatchError(WeightsError, KeyError):
    """Checkpoint keys do not match the model's: lists missing and unexpected keys."""

    def __init__(
        self, class_name: str, checkpoint: str, missing: Sequence[str], unexpected: Sequence[str]
    ) -> None:
        self.class_name = class_name
        self.checkpoint = checkpoint
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {_preview([clip(k) for k in self.missing])}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {_preview([clip(k) for k in self.unexpected])}")
        super().__init__(
            f"checkpoint {clip(checkpoint, 400)} does not fit {class_name}: " + "; ".join(parts)
            + ". Is it a checkpoint of another architecture, or does config.json not match it?"
        )


class ShapeMismatchError(WeightsError, ValueError):
    def __init__(self, class_name: str, checkpoint: str, mismatches: Sequence[tuple[str, Any, Any]]):
        self.class_name = class_name
        self.checkpoint = checkpoint
        self.mismatches = list(mismatches)
        shown = "; ".join(
            f"{key}: checkpoint {clip(tuple(ckpt))} vs model {tuple(model)}"
            for key, ckpt, model in self.mismatches[:20]
        )
        more = f" (+{len(self.mismatches) - 20} more)" if len(self.mismatches) > 20 else ""
        super().__init__(
            f"checkpoint {clip(checkpoint, 400)} has tensors of the wrong shape for {class_name}: "
            f"{shown}{more}. Does config.json match the checkpoint?"
        )


class CorruptWeightsError(WeightsError, ValueError):
    """A weights file (or shard index) that is damaged, malformed or names files it must not.

    Found by checking the file against its own header before any tensor is read: a truncated
    or empty file, a header that is not a JSON object or claims more bytes than the file has,
    tensor data outside the file or not the size of its dtype and shape, a shard outside the
    index's folder. ``reason`` says which; ``fix`` what to do (for a file in the Hub cache, which
    folder to delete so that it is downloaded again).
    """

    def __init__(self, path: Any, reason: str, fix: str) -> None:
        self.path = str(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"weights file {self.path} cannot be used: {reason}. {fix}")


class PickleWeightsError(WeightsError, PermissionError):
    """Only pickle (``.bin``) weights were found, and the caller did not pass ``allow_pickle=True``.

    Unpickling can run any code the file names, so pipeyard reads pickle weights only when the
    caller opts in; even then only with ``torch.load(weights_only=True)``, which accepts tensors
    and plain containers and refuses everything else.
    """

    def __init__(self, location: str, files: Sequence[str]) -> None:
        self.location = location
        self.files = list(files)
        super().__init__(
            f"refusing to load {_preview(self.files, 3)} from {location}: .bin weights are Python "
            f"pickles, and unpickling a file can run code it names. Use safetensors weights (ask the "
            f"repository for them, or convert these where you trust them), or, if you trust this "
            f"repository, pass allow_pickle=True to from_pretrained (pipeyard then reads tensors "
            f"only, with torch.load(weights_only=True))"
        )


# --------------------------------------------------------------------------- components


class ComponentError(PipeyardError):
    """A pipeline component could not be found, loaded or accepted."""


class UnknownComponentClassError(ComponentError, LookupError):
    """A model_index ``[library, ClassName]`` pair that nothing can load.

    Attributes:
        looked_for: the repository files that could have defined the class (``unet/my_unet.py``,
            ``my_unet.py``) and do not exist; empty for a library pipeyard knows.
    """

    def __init__(
        self, component: str, library: str, class_name: str, loadable: Iterable[str], looked_for: Sequence[str] = ()
    ):
        self.component = component
        self.library = library
        self.class_name = class_name
        self.loadable = sorted(loadable)
        self.looked_for = list(looked_for)
        files = (
            f"; the repository has no module {' or '.join(clip(repr(f)) for f in self.looked_for)} defining it either"
            if self.looked_for else ""
        )
        super().__init__(
            f"component {clip(repr(component))} names [{clip(repr(library))}, {clip(repr(class_name))}], which pipeyard cannot "
            f"load; loadable libraries: {', '.join(self.loadable)}{files}. Fix model_index.json, pass "
            f"{component}=<object> yourself, or install a plugin that provides {clip(repr(library))}"
        )


class MissingComponentError(ComponentError, TypeError):
    def __init__(self, pipeline: str, missing: Sequence[tuple[str, str]]) -> None:
        self.pipeline = pipeline
        self.missing = list(missing)
        lines = "; ".join(f"{name} (expected {expected})" for name, expected in self.missing)
        example = self.missing[0][0]
        super().__init__(
            f"{pipeline} needs component(s) that neither the repository nor the call supplies: "
            f"{lines}. Pass them to from_pretrained, e.g. {example}=<loaded object>"
        )


class UnexpectedArgumentError(ComponentError, TypeError):
    def __init__(self, pipeline: str, names: Sequence[str], suggestions: dict[str, list[str]]):
        self.pipeline = pipeline
        self.names = list(names)
        self.suggestions = suggestions
        parts = []
        for name in self.names:
            close = suggestions.get(name)
            parts.append(f"{name!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
        super().__init__(
            f"{pipeline}.from_pretrained got argument(s) that are neither components nor loading "
            f"options: {', '.join(parts)}"
        )


class ComponentTypeError(ComponentError, TypeError):
    def __init__(self, component: str, expected: str, got: str) -> None:
        self.component = component
        self.expected = expected
        self.got = got
        super().__init__(f"component {component!r} must be a {expected}, got a {got}")


# --------------------------------------------------------------------------- runtime input


class SchedulerError(PipeyardError, ValueError):
    """A scheduler was configured or called wrongly."""


class SchedulerConfigError(SchedulerError):
    """A scheduler option whose value is not one of the valid choices; lists them."""

    def __init__(self, scheduler: str, key: str, value: Any, valid: Iterable[Any]) -> None:
        self.scheduler = scheduler
        self.key = key
        self.value = value
        self.valid = list(valid)
        choices = ", ".join(repr(v) for v in self.valid)
        super().__init__(
            f"{scheduler} does not support {clip(key)}={clip(repr(value))}; valid values: {choices}. "
            f"Pass one of them, e.g. {scheduler}.from_config(config, {key}={self.valid[0]!r})"
        )


class UnsupportedSchedulerOptionError(SchedulerConfigError, NotImplementedError):
    """A diffusers option pipeyard keeps in the config but does not implement, set to non-default."""

    def __init__(self, scheduler: str, key: str, value: Any, default: Any) -> None:
        self.scheduler = scheduler
        self.key = key
        self.value = value
        self.default = default
        self.valid = [default]
        SchedulerError.__init__(
            self,
            f"{scheduler}: {key}={value!r} is not implemented in pipeyard (only the default "
            f"{default!r} is). Use {scheduler}.from_config(config, {key}={default!r}), or a "
            f"scheduler that implements it",
        )


class SchedulerOptionTypeError(SchedulerError, TypeError):
    """A scheduler option annotated as a number whose value is not one (``null``, ``"10"``, ``[]``).

    Checked when the scheduler is built, so a config file's wrong value is named there rather
    than failing later in ``set_timesteps`` or ``step``.
    """

    def __init__(self, scheduler: str, key: str, value: Any, expected: str) -> None:
        self.scheduler = scheduler
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(
            f"{scheduler}: {clip(key)}={clip(repr(value))} is not {expected}. Fix it in the "
            f"scheduler_config.json it came from, or pass {key}=... to from_pretrained / from_config"
        )


class InferenceStepsError(SchedulerError):
    """``num_inference_steps`` is not an integer between 1 and ``num_train_timesteps``."""

    def __init__(self, scheduler: str, value: Any, num_train_timesteps: int) -> None:
        self.scheduler = scheduler
        self.value = value
        self.num_train_timesteps = num_train_timesteps
        super().__init__(
            f"{scheduler}.set_timesteps: num_inference_steps={value!r} is out of range; pass an "
            f"integer from 1 to num_train_timesteps={num_train_timesteps}"
        )


class SchedulerNotReadyError(SchedulerError, RuntimeError):
    """``step`` (or a lookup by timestep) was called before ``set_timesteps``."""

    def __init__(self, scheduler: str) -> None:
        self.scheduler = scheduler
        super().__init__(
            f"{scheduler} has no inference schedule yet: call "
            f"scheduler.set_timesteps(num_inference_steps) before step()"
        )


class TimestepNotInScheduleError(SchedulerError, LookupError):
    """A timestep that is not one of ``scheduler.timesteps``."""

    def __init__(self, scheduler: str, timestep: Any, schedule: Sequence[Any]) -> None:
        self.scheduler = scheduler
        self.timestep = timestep
        self.schedule = list(schedule)
        shown = ", ".join(str(t) for t in self.schedule[:6]) + (", ..." if len(self.schedule) > 6 else "")
        super().__init__(
            f"{scheduler}: timestep {timestep!r} is not in the schedule [{shown}]; pass the "
            f"values of scheduler.timesteps in order (not their indices), after set_timesteps"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class ModelOutputShapeError(SchedulerError):
    """The model output passed to ``step`` does not have the sample's shape."""

    def __init__(self, scheduler: str, got: Sequence[int], expected: Sequence[int]) -> None:
        self.scheduler = scheduler
        self.got = tuple(got)
        self.expected = tuple(expected)
        super().__init__(
            f"{scheduler}.step: model_output has shape {self.got} but sample has shape "
            f"{self.expected}; pass the model output for this sample (split off guidance "
            f"batches and learned-variance channels first)"
        )


class UnknownSchedulerError(SchedulerError, LookupError):
    """A scheduler class name that pipeyard does not export; lists the ones it does."""

    def __init__(self, name: str, valid: Iterable[str]) -> None:
        self.name = name
        self.valid = sorted(valid)
        super().__init__(f"unknown scheduler {clip(repr(name))}; pipeyard's schedulers: {', '.join(self.valid)}")

    def __str__(self) -> str:  # LookupError is fine, but keep the message as is
        return self.message


class ModelInputError(PipeyardError, ValueError):
    """A model was configured wrongly or called with unusable input."""


class ModelConfigError(ModelInputError):
    """A config value a model cannot be built with (unsupported, out of range, inconsistent)."""

    def __init__(self, model: str, key: str, value: Any, expected: str) -> None:
        self.model = model
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"{model}: unusable {clip(key)}={clip(repr(value))}; expected {expected}")


class UnknownBlockTypeError(ModelInputError, LookupError):
    """A down/mid/up block type name that the block registry does not know."""

    def __init__(self, block_type: str, kind: str, known: Iterable[str]) -> None:
        self.block_type = block_type
        self.kind = kind
        self.known = sorted(known)
        super().__init__(
            f"unknown {kind} block type {clip(repr(block_type))}; known {kind} block types: {', '.join(self.known)}"
        )

    def __str__(self) -> str:  # LookupError is fine, but keep the message as is
        return str(self.args[0])


class InputShapeError(ModelInputError):
    """A forward input whose shape does not fit the model."""

    def __init__(self, model: str, argument: str, expected: str, got: Sequence[int]) -> None:
        self.model = model
        self.argument = argument
        self.expected = expected
        self.got = tuple(got)
        super().__init__(f"{model}: {argument} must be {expected}, got shape {self.got}")


class MissingModelInputError(ModelInputError, TypeError):
    """A forward input the model needs was not given (or was None)."""

    def __init__(self, model: str, argument: str, why: str) -> None:
        self.model = model
        self.argument = argument
        super().__init__(f"{model} needs {argument}: {why}")


class PipelineInputError(PipeyardError, ValueError):
    """A pipeline's ``__call__`` got arguments it cannot use."""


class ImageSizeError(PipelineInputError):
    """A ``height`` / ``width`` the model cannot produce (not a multiple of the VAE's factor)."""

    def __init__(self, height: int, width: int, multiple: int) -> None:
        self.height = height
        self.width = width
        self.multiple = multiple
        fixed = (max(multiple, height // multiple * multiple), max(multiple, width // multiple * multiple))
        super().__init__(
            f"height and width must be multiples of {multiple}, got height={height}, width={width}; "
            f"use e.g. height={fixed[0]}, width={fixed[1]}"
        )


class ConflictingInputsError(PipelineInputError):
    """Two arguments that each say the same thing were both given (or neither was)."""

    def __init__(self, first: str, second: str, both: bool = True) -> None:
        self.first = first
        self.second = second
        if both:
            message = f"pass either {first} or {second}, not both (the pipeline would ignore one of them)"
        else:
            message = f"pass {first} or {second}: one of them is required"
        super().__init__(message)


class BatchSizeMismatchError(PipelineInputError):
    """A per-image argument (generators, negative prompts, embeddings) of the wrong length."""

    def __init__(self, argument: str, got: int, expected: int, fix: str) -> None:
        self.argument = argument
        self.got = got
        self.expected = expected
        super().__init__(f"{argument} has {got} entries but the batch has {expected}: {fix}")


class UnknownOutputTypeError(PipelineInputError):
    """An ``output_type`` the pipeline cannot produce."""

    def __init__(self, output_type: Any, allowed: Sequence[str]) -> None:
        self.output_type = output_type
        self.allowed = list(allowed)
        super().__init__(
            f"unknown output_type {output_type!r}; use one of {', '.join(repr(a) for a in self.allowed)}"
        )


class UnsupportedFeatureError(PipeyardError, NotImplementedError):
    """A pipeline feature diffusers has and pipeyard does not implement (yet).

    Attributes:
        feature: what was asked for, as the caller wrote it (``"load_lora_weights"``).
        owner: the class it was asked of.
    """

    def __init__(self, feature: str, owner: str, fix: str) -> None:
        self.feature = feature
        self.owner = owner
        super().__init__(f"{owner}.{feature} is not supported by pipeyard yet: {fix}")


# --------------------------------------------------------------------------- custom pipelines


class CustomPipelineError(PipeyardError):
    """The custom-pipeline host refused or failed to load a pipeline."""


class PipelineNotFoundError(CustomPipelineError, LookupError):
    """No source matched the ``custom_pipeline`` value; lists what was tried, in order."""

    def __init__(self, name: str, tried: Sequence[str]) -> None:
        self.name = name
        self.tried = list(tried)
        steps = "; ".join(f"{i}. {t}" for i, t in enumerate(self.tried, 1))
        super().__init__(f"custom pipeline {name!r} was not found. Tried: {steps}")


class InvalidPipelineNameError(CustomPipelineError, ValueError):
    """A ``custom_pipeline`` name or ``custom_revision`` that could escape where it belongs."""

    def __init__(self, value: str, reason: str, what: str = "custom_pipeline") -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"{what} {value!r} is not valid: {reason}")


class PipelineVerificationError(CustomPipelineError, ValueError):
    """A pipeline file failed verification; nothing of it ran."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"pipeline file {self.path} failed verification: {reason}")


class PipelineSyntaxError(PipelineVerificationError):
    """A package file does not parse; names the file, the line and the column.

    Only the file the caller named (the pipeline file) is quoted, one line cut to at most
    ~120 characters; a syntax error in a sibling module quotes nothing of it.

    Attributes:
        line, column: where the parser stopped (1-based; None when it does not say).
        source_line: the quoted line ("" for a sibling module).
        detail: the parser's message ("" for a sibling module).
    """

    def __init__(
        self, path: str, line: int | None, source_line: str, detail: str, column: int | None = None
    ) -> None:
        self.line = line
        self.column = column
        self.source_line = source_line
        self.detail = detail
        where = f"line {line}" if line is not None else "an unknown line"
        if column is not None:
            where += f", column {column}"
        if detail:
            reason = f"syntax error at {where}: {detail}" + (f"\n    {source_line.strip()}" if source_line else "")
        else:
            reason = (
                f"syntax error at {where}; open the file there (the text of a module the pipeline "
                f"file imports is never quoted)"
            )
        super().__init__(path, reason)


class PipelineEncodingError(PipelineVerificationError, UnicodeError):
    """The pipeline file is not UTF-8 text."""

    def __init__(self, path: str, position: int, detail: str) -> None:
        self.position = position
        PipelineVerificationError.__init__(
            self, path, f"it is not UTF-8 text (byte {position}: {detail}); re-save it as UTF-8"
        )


class PipelineClassError(PipelineVerificationError):
    """The file defines zero or several ``DiffusionPipeline`` subclasses (each with its line)."""

    def __init__(self, path: str, found: Sequence[tuple[str, int]]) -> None:
        self.found = list(found)
        if not self.found:
            reason = (
                "it defines no subclass of pipeyard's DiffusionPipeline; define exactly one, e.g. "
                "`from pipeyard import DiffusionPipeline` then `class MyPipeline(DiffusionPipeline)`"
            )
        else:
            listed = ", ".join(f"{name} (line {line})" for name, line in self.found)
            reason = (
                f"it defines {len(self.found)} DiffusionPipeline subclasses: {listed}; a pipeline "
                f"file must define exactly one. Move shared base classes into a sibling module "
                f"and import them relatively (`from .base import MyBase`)"
            )
        super().__init__(path, reason)


class UnsafePackageFileError(PipelineVerificationError):
    """A file of a pipeline package breaks the closed-set rules; it was refused before being read.

    A package is the pipeline file and the modules it imports relatively, all regular files
    inside its root folder, each at most a few MiB. A symbolic link leading out of the root, a
    relative import reaching above it, a FIFO, socket, device or folder where a module should
    be, or a file over the size cap are refused.

    Attributes:
        path: the package file (where it would be read, not where a link leads).
        rule: the rule it breaks.
        fix: what to change.
    """

    def __init__(self, path: str, rule: str, fix: str) -> None:
        self.rule = rule
        self.fix = fix
        super().__init__(path, f"{rule}; nothing was read from it. {fix}")


class DiffusersCompatibilityError(PipelineVerificationError):
    """A diffusers-written file imports diffusers names pipeyard does not provide; nothing ran.

    Attributes:
        missing: ``(path, line, "diffusers.x.Name")`` for each, in file order.
    """

    def __init__(self, path: str, missing: Sequence[tuple[str, int, str]]) -> None:
        self.missing = list(missing)
        listed = _preview([f"{name} ({where}:{line})" for where, line, name in self.missing])
        super().__init__(
            path,
            f"it needs what pipeyard's diffusers compatibility does not provide: {listed}. pipeyard "
            f"runs diffusers-written pipelines of the Stable Diffusion 1.x/2.x and UNet2DModel "
            f"families; docs/compatibility.md lists every diffusers name it covers",
        )


class RequirementsError(CustomPipelineError, ImportError):
    """Packages a pipeline needs are not installed (or the wrong version).

    Attributes:
        path: the pipeline file.
        unmet: one ``(requirement, what is installed)`` pair per unmet requirement.
        install_command: a ready ``pip install ...`` line, or "" if pip cannot help.
    """

    def __init__(self, path: str, unmet: Sequence[tuple[str, str]], install_command: str, note: str = "") -> None:
        self.path = str(path)
        self.unmet = list(unmet)
        self.install_command = install_command
        listed = "; ".join(f"{req} ({found})" for req, found in self.unmet)
        fix = f" Install them with: {install_command}" if install_command else ""
        super().__init__(
            f"pipeline file {self.path} needs what is not installed: {listed}.{fix}"
            + (f" {note}" if note else "")
        )
        self.path = str(path)  # ImportError.__init__ resets ``path`` to None


class UntrustedCodeError(CustomPipelineError, PermissionError):
    """The trust gate refused to run a pipeline file; says what it is and how to allow it.

    Attributes:
        source: where the code comes from (e.g. ``Hub repo 'alice/pipe' at 'main'``).
        commit: the resolved commit sha, or None where the source has none.
        sha256: the content digest the trust store would record; None when the source was
            refused before anything was downloaded (no content could have allowed it).
        path: a local copy of the file, to read before trusting it; None with ``sha256``.
        reason: why it is not trusted.
        remedy: what to change to allow it; by default, passing ``trust_remote_code=True`` or
            trusting the digest.
    """

    def __init__(
        self,
        source: str,
        commit: str | None,
        sha256: str | None,
        path: str | None,
        reason: str = "",
        remedy: str | None = None,
    ) -> None:
        self.source = source
        self.commit = commit
        self.sha256 = sha256
        self.path = None if path is None else str(path)
        self.reason = reason
        self.remedy = remedy or (
            f"either pass trust_remote_code=True, or trust this exact content once with "
            f"`pipeyard.trust.add({sha256!r})`"
        )
        why = f" ({reason})" if reason else ""
        seen = (
            "nothing was downloaded"
            if sha256 is None
            else f"commit {commit or 'n/a'}, sha256 {sha256}. Read it first: {self.path}"
        )
        super().__init__(f"refusing to run the code of {source}{why}: {seen}. To allow it, {self.remedy}")


class TrustStoreError(CustomPipelineError, ValueError):
    """The trust store file is damaged; it is neither used nor rewritten until fixed."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(
            f"the trust store {self.path} is damaged: {problem}. Nothing in it is trusted until it "
            f"is fixed: correct the entry by hand, or delete the file and trust again with "
            f"`pipeyard trust add SHA256`"
        )


class PipelineImportError(CustomPipelineError, ImportError):
    """Importing a verified pipeline file failed, or it did not yield the class verified."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"importing pipeline file {self.path} failed: {reason}")
        self.path = str(path)  # ImportError.__init__ resets ``path`` to None


class PipelineFileExistsError(CustomPipelineError, FileExistsError):
    """A file ``pipeyard new`` would write exists already; nothing was written."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path} exists already; pick another name or delete the file first")


class CheckoutNotFoundError(CustomPipelineError, FileNotFoundError):
    """A contributor command (``new``, ``registry build|check``) run outside a source checkout.

    They write ``community/`` and ``registry/`` files; outside a checkout that would mean
    writing into the installed package, so they refuse and ask for ``--root``.
    """

    def __init__(self, root: str, missing: str) -> None:
        self.root = str(root)
        self.missing = missing
        super().__init__(
            f"{self.root} is not a pipeyard source checkout (it has no {missing}); run the command "
            f"from the checkout's root folder or pass --root PATH_TO_CHECKOUT"
        )


# --------------------------------------------------------------------------- attention processors


class AttentionProcessorError(ModelInputError):
    """Attention processors set or used in a way the model cannot honour (a dict missing layers,
    a fused processor on unfused layers, ...)."""

    def __init__(self, owner: str, action: str, problem: str, fix: str) -> None:
        self.owner = owner
        self.action = action
        self.problem = problem
        self.fix = fix
        super().__init__(f"{owner}.{action}: {clip(problem, 400)}; {fix}")


# --------------------------------------------------------------------------- devices


class DeviceError(PipeyardError, ValueError):
    """A device name torch does not know, or a device this machine does not have."""

    def __init__(self, device: str, reason: str, available: Iterable[str]) -> None:
        self.device = device
        self.available = list(available)
        super().__init__(
            f"device {clip(device, 100)!r} {reason}; this machine has: {', '.join(self.available)}; "
            f"pick one of those (e.g. --device cpu)"
        )


# --------------------------------------------------------------------------- plugins


class PluginError(PipeyardError):
    """A plugin failed to register or misbehaved in a hook."""


class PipeyardWarning(UserWarning):
    """Warnings pipeyard emits (a plugin skipped, a component missing but optional, ...)."""


# --------------------------------------------------------------------------- utilities (diffusers surface)


class UtilityError(PipeyardError):
    """A helper of :mod:`pipeyard.utils` was called in a way it cannot honour."""


class DeprecationExpiredError(UtilityError, ValueError):
    """``deprecate(name, version, message)`` was called at or after ``version``.

    Attributes:
        attribute: the deprecated name.
        removal_version: the version named by the call.
        current_version: the diffusers version pipeyard's surface follows.
    """

    def __init__(self, attribute: str, removal_version: str, current_version: str) -> None:
        self.attribute = attribute
        self.removal_version = removal_version
        self.current_version = current_version
        super().__init__(
            f"deprecate({attribute!r}, {removal_version!r}, ...) has expired: the diffusers API pipeyard "
            f"follows is {current_version} >= {removal_version}. Remove the deprecated path from the "
            f"calling code (or raise its removal version)"
        )


class UnexpectedKeywordError(UtilityError, TypeError):
    """Keywords remained in ``take_from`` after ``deprecate`` took the deprecated ones out."""

    def __init__(self, function: str, filename: str, line: int, keys: Sequence[str]) -> None:
        self.function = function
        self.filename = filename
        self.line = line
        self.keys = list(keys)
        super().__init__(
            f"{function}() in {filename} line {line} got unexpected keyword argument(s) "
            f"{_preview(self.keys)}: remove them, or check their spelling"
        )


class ExampleDocstringError(UtilityError, ValueError):
    """``@replace_example_docstring`` found no ``Examples:`` placeholder line to replace."""

    def __init__(self, function: str) -> None:
        self.function = function
        super().__init__(
            f"@replace_example_docstring cannot document {function}: its docstring has no line "
            f"holding only 'Examples:' (or 'Example:'); add that line where the examples go"
        )


class ScheduleRequestError(SchedulerError):
    """``set_timesteps`` arguments that cannot form a schedule (LCM's step counts, custom timesteps).

    Attributes:
        scheduler: the scheduler class name.
        problem: what is wrong, with the values.
        fix: what to pass instead.
    """

    def __init__(self, scheduler: str, problem: str, fix: str) -> None:
        self.scheduler = scheduler
        self.problem = problem
        self.fix = fix
        super().__init__(f"{scheduler}.set_timesteps: {problem}; {fix}")


class PipeyardDeprecationWarning(PipeyardWarning, FutureWarning):
    """A deprecated name, argument or behaviour was used (what :func:`pipeyard.utils.deprecate` warns)."""


# --------------------------------------------------------------------------- image-to-image and inpainting


class StrengthError(PipelineInputError):
    """An image-to-image or inpainting ``strength`` outside [0, 1]."""

    def __init__(self, strength: Any) -> None:
        self.strength = strength
        super().__init__(
            f"strength must be between 0.0 and 1.0, got {clip(repr(strength))}: 1.0 ignores the input image's "
            f"content, 0.0 keeps it unchanged (e.g. strength=0.8)"
        )


class UnetChannelsError(ComponentError, ValueError):
    """An inpainting pipeline's UNet takes neither 4 (text-to-image) nor 9 (inpainting) input channels."""

    def __init__(self, owner: str, channels: Any) -> None:
        self.owner = owner
        self.channels = channels
        super().__init__(
            f"{owner} needs a UNet with 4 input channels (a text-to-image UNet) or 9 (an inpainting UNet: "
            f"latents, mask, masked-image latents), got {clip(repr(channels))} (unet/config.json in_channels): "
            f"load an inpainting repository's unet or a text-to-image one"
        )


class EncoderLatentsError(ComponentError, AttributeError):
    """``retrieve_latents`` got an encoder output with no ``latent_dist`` (for the mode asked) or ``latents``."""

    def __init__(self, output_type: str, sample_mode: Any) -> None:
        self.output_type = output_type
        self.sample_mode = sample_mode
        super().__init__(
            f"retrieve_latents(sample_mode={clip(repr(sample_mode))}) found no latents in a {clip(output_type)}: "
            f"pass a VAE encode() output with a latent_dist (sample_mode 'sample' or 'argmax') or a .latents tensor"
        )


# --------------------------------------------------------------------------- batch generation (pipeyard.generate)


class GenerateError(PipeyardError):
    """A batch generation job (:func:`pipeyard.generate`, ``pipeyard generate``) cannot go on.

    Picklable whatever the subclass's ``__init__`` takes: a worker's error crosses process
    boundaries (Ray) and arrives as the same type.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_error, (type(self), self.message, dict(self.__dict__))


def _rebuild_error(cls: type[PipeyardError], message: str, state: dict[str, Any]) -> PipeyardError:
    error = cls.__new__(cls)
    PipeyardError.__init__(error, message)
    error.__dict__.update(state)
    return error


class JobSpecError(GenerateError, ValueError):
    """A row of the items file, the grid or a job option is not usable.

    Attributes:
        where: the file and line (``items.jsonl:3``) or the option (``--seeds``).
        problem: what is wrong.
    """

    def __init__(self, where: str, problem: str, fix: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{clip(where)}: {clip(problem, 400)}; {fix}")


class DuplicateItemError(JobSpecError):
    """Two items of one job have the same id (an id names one image file)."""

    def __init__(self, item_id: str, first: str, second: str) -> None:
        self.item_id = item_id
        super().__init__(
            second, f"item id {clip(repr(item_id))} is already used by {clip(first)}",
            "give each row its own \"id\", or drop the \"id\" keys to get ids from the rows' content",
        )


class ManifestError(GenerateError, ValueError):
    """``manifest.jsonl`` is damaged somewhere other than a torn last line (edited by hand?)."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        self.path = path
        self.line = line
        super().__init__(
            f"{clip(path)}:{line}: {clip(problem)}; restore the file, or move it away together with the "
            f"images folder to start the job afresh"
        )


class ItemConflictError(GenerateError, ValueError):
    """An item id already finished in the output folder is asked again with different settings.

    Resuming never rewrites a finished image; a changed item needs a new id or a new folder.
    """

    def __init__(self, item_id: str, manifest: str, changed: str) -> None:
        self.item_id = item_id
        self.manifest = manifest
        super().__init__(
            f"item {clip(repr(item_id))} is finished in {clip(manifest)} with other settings ({clip(changed, 300)}): "
            f"a finished image is never rewritten; give the changed item a new id, or use a new output folder"
        )


class OutputBusyError(GenerateError, BlockingIOError):
    """Another generation job holds the output folder's lock."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        super().__init__(
            f"another pipeyard generate job is writing to {clip(folder)} (it holds .generate.lock): wait for "
            f"it to finish, or use another output folder"
        )


class PinMismatchError(GenerateError, PermissionError):
    """A worker was handed pipeline code or model files that do not match what the driver pinned.

    Attributes:
        what: ``pipeline code`` or ``model files``.
        expected, actual: the digests.
    """

    def __init__(self, what: str, where: str, expected: str, actual: str) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"the {what} at {clip(where)} hash to {clip(actual)}, but the job pinned {clip(expected)}: nothing was "
            f"loaded; give every node the same files (or a Hub repo id, pinned to one commit) and run again"
        )


class EngineUnavailableError(GenerateError, ImportError):
    """The engine asked for needs a package that is not installed."""

    def __init__(self, engine: str, package: str) -> None:
        self.engine = engine
        super().__init__(
            f"engine {clip(repr(engine))} needs {clip(package)}, which is not installed: "
            f"pip install \"pipeyard[ray]\", or use engine=\"local\""
        )


class GenerateJobError(GenerateError, RuntimeError):
    """The engine stopped the job (a worker kept dying past its retries, the cluster went away).

    Finished items are in the manifest already: run the same job again to resume.
    """

    def __init__(self, engine: str, reason: str) -> None:
        self.engine = engine
        self.reason = reason
        super().__init__(
            f"the {engine} engine stopped the job: {clip(reason, 600)}; the finished items are kept "
            f"in the manifest, run the same job again to resume"
        )
