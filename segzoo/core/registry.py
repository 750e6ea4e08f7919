"""Name -> builder registries for encoders, decoders and named models.

Built-in entries register with decorators when segzoo is imported. Third-party
packages declare entry points in the groups ``segzoo.encoders``,
``segzoo.decoders`` and ``segzoo.models``; each entry point's name is the
registered name and its value the builder (``package.module:object``).

Plugins are lazy and isolated:

* entry points are read at the first lookup or listing, never at import;
* a plugin's module is imported only when one of its names is requested;
* a plugin that fails to import affects only its own names: asking for one
  raises :class:`PluginLoadError` naming the distribution and the cause;
* a name registered twice is an error naming both sources, never an overwrite; a plugin encoder named like a
  timm model is such a conflict too (it would silently replace timm's);
* a malformed ``entry_points.txt`` line in a ``segzoo.*`` group is skipped and reported, never fatal; a plugin
  that calls ``sys.exit`` at import is a load failure like any other.

``SEGZOO_DISABLE_PLUGINS=1`` turns entry-point loading off.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

from segzoo.core.errors import (
    InvalidTypeError,
    InvalidValueError,
    SegzooError,
    UnknownNameError,
)
from segzoo.core.io import env_flag

__all__ = [
    "Registry",
    "RegistryEntry",
    "PluginStatus",
    "UnknownNameError",
    "RegistryConflictError",
    "PluginLoadError",
    "ENCODERS",
    "DECODERS",
    "MODELS",
    "CONVERTERS",
    "register_encoder",
    "register_decoder",
    "register_model",
    "register_converter",
    "plugin_status",
    "reload_plugins",
]

CORE_SOURCE = "segzoo"
_REPORTED: set[str] = set()  # warnings already given (conflicts, malformed lines): once per process
_SECTION = re.compile(r"\[\s*([^\[\]\s]+)\s*\]")
_ENTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_ENTRY_VALUE = re.compile(r"[A-Za-z_][\w.]*(\s*:\s*[A-Za-z_][\w.]*)?(\s*\[[\w,\s.\-]*\])?")


class RegistryConflictError(SegzooError, ValueError):
    """The same name was registered by two sources."""


class PluginLoadError(SegzooError, ImportError):
    """A plugin's entry point could not be loaded."""


@dataclass(frozen=True)
class RegistryEntry:
    """One registered name: the builder and where it came from."""

    name: str
    obj: Any
    source: str  # "segzoo" for the core, else the plugin's distribution name
    origin: str  # module:qualname of the builder (or entry-point value)
    metadata: dict[str, Any]


@dataclass(frozen=True)
class PluginStatus:
    """What ``segzoo list --plugins`` shows for one entry point."""

    kind: str
    name: str
    distribution: str
    value: str
    state: str  # "not loaded" | "loaded" | "failed" | "conflict" | "malformed"
    error: str | None = None


class Fallback(Protocol):
    """Resolves names a registry does not hold itself (timm models for encoders)."""

    source: str  # reported as the entries' source

    def resolve(self, name: str) -> Any | None: ...

    def names(self, pattern: str) -> list[str]: ...


@dataclass
class _Plugin:
    name: str
    entry_point: metadata.EntryPoint
    distribution: str
    entry: RegistryEntry | None = None
    error: BaseException | None = None
    conflict: str | None = None
    shadowed: bool = False  # the name is the core's or the fallback's: lookups never reach this plugin


@dataclass(frozen=True)
class _Declared:
    """One well-formed entry point of a ``segzoo.*`` group, read from a distribution's ``entry_points.txt``."""

    group: str
    name: str
    value: str
    distribution: str


@dataclass
class _Scan:
    declared: list[_Declared]
    malformed: list[PluginStatus]


_SCAN: _Scan | None = None


def _parse_entry_points(text: str, distribution: str) -> tuple[list[_Declared], list[PluginStatus]]:
    """The ``segzoo.*`` entry points of one ``entry_points.txt``, and a row for each line of those groups (or a
    broken section header naming segzoo) that is not ``name = module:object``."""
    declared, malformed = [], []
    group: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            match = _SECTION.fullmatch(line)
            group = match.group(1) if match else None
            if match is None and "segzoo" in line:
                malformed.append(_malformed_row(distribution, number, raw, "a section header is [group.name]"))
            continue
        if group is None or not group.startswith("segzoo."):
            continue
        name, eq, value = (part.strip() for part in line.partition("="))
        if not eq or not _ENTRY_NAME.fullmatch(name) or not _ENTRY_VALUE.fullmatch(value):
            malformed.append(_malformed_row(distribution, number, raw, "an entry is name = package.module:object"))
            continue
        declared.append(_Declared(group, name, value, distribution))
    return declared, malformed


def _malformed_row(distribution: str, number: int, line: str, expected: str) -> PluginStatus:
    message = f"entry_points.txt line {number} {line.strip()[:80]!r} is malformed ({expected}); it is ignored"
    return PluginStatus("entry point", f"line {number}", distribution, line.strip()[:80], "malformed", message)


def _scan_distributions() -> _Scan:
    """Every installed distribution's ``segzoo.*`` entry points, read once per process (or reload); a distribution
    whose metadata cannot be read is skipped."""
    global _SCAN
    if _SCAN is not None:
        return _SCAN
    scan = _Scan([], [])
    for dist in metadata.distributions():
        try:
            text = dist.read_text("entry_points.txt")
            name = (dist.metadata["Name"] if text and "segzoo" in text else None) or "?"
        except Exception:  # unreadable metadata of some unrelated distribution must not break segzoo
            continue
        if not text or "segzoo" not in text:
            continue
        declared, malformed = _parse_entry_points(text, str(name))
        scan.declared.extend(declared)
        for row in malformed:
            scan.malformed.append(row)
            _warn_once(f"plugin distribution {row.distribution!r}: {row.error}")
    _SCAN = scan
    return scan


def _warn_once(message: str) -> None:
    if message not in _REPORTED:  # once per process, not per re-read
        _REPORTED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _plugins_disabled() -> bool:
    return env_flag("SEGZOO_DISABLE_PLUGINS")


def _origin(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}:{getattr(obj, '__qualname__', repr(obj))}"


def _source_of(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or ""
    top = module.split(".", 1)[0]
    return CORE_SOURCE if top == CORE_SOURCE else (top or "?")


class Registry:
    """A strict mapping from names to builders of one kind."""

    def __init__(self, kind: str, group: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = group
        self.fallback: Fallback | None = None
        self._entries: dict[str, RegistryEntry] = {}
        self._plugins: dict[str, _Plugin] | None = None
        self._builtins = builtins  # segzoo's own modules that register entries: imported at the first lookup
        self._builtins_loaded = not builtins

    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True  # before importing: the modules register into this registry
        for module in self._builtins:
            importlib.import_module(module)

    # -- registration -------------------------------------------------------------------
    def register(self, name: str, **meta: Any) -> Callable[[Any], Any]:
        """Decorator registering ``obj`` under ``name``; ``meta`` is kept with the entry."""
        if not isinstance(name, str) or not name:
            raise InvalidValueError(f"{self.kind} names must be non-empty strings, got {name!r}")

        def decorator(obj: Any) -> Any:
            self.add(name, obj, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: Any, *, source: str | None = None, **meta: Any) -> RegistryEntry:
        """Register ``obj`` under ``name``; a second registration of the name is an error."""
        entry = RegistryEntry(name, obj, source or _source_of(obj), _origin(obj), dict(meta))
        existing = self._entries.get(name)
        if existing is not None:
            if existing.obj is obj:  # re-import of the same module: idempotent
                return existing
            raise RegistryConflictError(
                f"{self.kind} {name!r} is registered twice: by {existing.source} ({existing.origin}) "
                f"and by {entry.source} ({entry.origin})"
            )
        self._entries[name] = entry
        return entry

    # -- plugins ------------------------------------------------------------------------
    def _plugin_table(self) -> dict[str, _Plugin]:
        self._load_builtins()
        if self._plugins is not None:
            return self._plugins
        table: dict[str, _Plugin] = {}
        if not _plugins_disabled():
            for declared in _scan_distributions().declared:
                if declared.group == self.group:
                    self._add_plugin(table, declared)
        self._plugins = table
        return table

    def _add_plugin(self, table: dict[str, _Plugin], declared: _Declared) -> None:
        name, dist, value = declared.name, declared.distribution, declared.value
        plugin = _Plugin(name, metadata.EntryPoint(name, value, self.group), dist)
        other = table.get(name)
        if other is not None:
            if other.distribution == dist and other.entry_point.value == value:
                return  # the same distribution seen twice on sys.path
            other.conflict = plugin.conflict = (
                f"{self.kind} {name!r} is registered twice: by {other.distribution} "
                f"(entry point {other.entry_point.value}) and by {dist} (entry point {value})"
            )
            table[name + "\0" + dist] = plugin  # keep both visible in the status listing
            return
        shadowed = self._shadowed(name)
        if shadowed is not None:
            plugin.conflict = (
                f"{self.kind} {name!r} is registered twice: by {shadowed} and by {dist} (entry point {value}); "
                f"the plugin's entry is ignored: give it a name of its own"
            )
            plugin.shadowed = True
            _warn_once(plugin.conflict)
        table[name] = plugin

    def _shadowed(self, name: str) -> str | None:
        """Who already owns ``name``: a core entry, or the fallback (a timm model for encoders)."""
        core = self._entries.get(name)
        if core is not None:
            return f"{core.source} ({core.origin})"
        if self.fallback is not None and self.fallback.resolve(name) is not None:
            return f"{self.fallback.source} (a {self.fallback.source} model of that name)"
        return None

    def reload_plugins(self) -> None:
        """Forget what was read from entry points; the next lookup reads (and reports) them again."""
        global _SCAN
        self._plugins = None
        _SCAN = None
        _REPORTED.clear()

    def _load_plugin(self, plugin: _Plugin) -> RegistryEntry:
        if plugin.conflict is not None:
            raise RegistryConflictError(plugin.conflict)
        if plugin.entry is not None:
            return plugin.entry
        if plugin.error is not None:
            raise self._plugin_error(plugin) from plugin.error
        try:
            obj = plugin.entry_point.load()
        except (Exception, SystemExit) as exc:  # isolation: any failure (sys.exit too) stays with its own names
            plugin.error = exc
            raise self._plugin_error(plugin) from exc
        plugin.entry = RegistryEntry(plugin.name, obj, plugin.distribution, plugin.entry_point.value, {})
        return plugin.entry

    def _plugin_error(self, plugin: _Plugin) -> PluginLoadError:
        exc = plugin.error
        return PluginLoadError(
            f"{self.kind} {plugin.name!r} comes from the plugin distribution {plugin.distribution!r} "
            f"(entry point {plugin.entry_point.value!r}), which failed to load: "
            f"{type(exc).__name__}: {exc}"
        )

    def plugin_status(self) -> list[PluginStatus]:
        rows = []
        for plugin in self._plugin_table().values():
            if plugin.conflict is not None:
                state, error = "conflict", plugin.conflict
            elif plugin.error is not None:
                state, error = "failed", f"{type(plugin.error).__name__}: {plugin.error}"
            elif plugin.entry is not None:
                state, error = "loaded", None
            else:
                state, error = "not loaded", None
            rows.append(
                PluginStatus(self.kind, plugin.name, plugin.distribution, plugin.entry_point.value, state, error)
            )
        return sorted(rows, key=lambda r: (r.name, r.distribution))

    def set_fallback(self, fallback: Fallback) -> None:
        """Resolve names this registry does not hold through ``fallback`` (registered or plugin names win)."""
        if self.fallback is not None and self.fallback is not fallback:
            raise RegistryConflictError(f"the {self.kind} registry already has a fallback ({self.fallback.source})")
        self.fallback = fallback

    def probe_plugins(self) -> None:
        """Import every plugin entry point (for ``segzoo list --plugins``), recording failures."""
        for plugin in self._plugin_table().values():
            try:
                self._load_plugin(plugin)
            except (PluginLoadError, RegistryConflictError):
                pass

    # -- lookup -------------------------------------------------------------------------
    def registered(self) -> list[RegistryEntry]:
        """The entries registered in this process (segzoo's own, and plugins already imported), by name; imports
        no plugin."""
        self._load_builtins()
        return [self._entries[name] for name in sorted(self._entries)]

    def own_names(self) -> list[str]:
        """Registered and plugin names (without the fallback's), sorted; imports no plugin."""
        self._load_builtins()
        names = set(self._entries)
        names.update(p.name for p in self._plugin_table().values() if p.conflict is None or p.name not in names)
        return sorted(names)

    def names(self, pattern: str = "*") -> list[str]:
        """Names matching the fnmatch ``pattern``, sorted; imports no plugin."""
        found = {n for n in self.own_names() if fnmatch.fnmatchcase(n, pattern)}
        if self.fallback is not None:
            found.update(self.fallback.names(pattern))
        return sorted(found)

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        if not isinstance(name, str):
            return False
        if name in self._entries or name in self._plugin_table():
            return True
        return self.fallback is not None and self.fallback.resolve(name) is not None

    def entry(self, name: str) -> RegistryEntry:
        """The entry for ``name``, importing its plugin if needed."""
        self._load_builtins()
        if not isinstance(name, str):
            raise InvalidTypeError(f"{self.kind} name must be a string, got {type(name).__name__}")
        if name in self._entries:
            return self._entries[name]
        plugin = self._plugin_table().get(name)
        if plugin is not None and not plugin.shadowed:
            return self._load_plugin(plugin)
        if self.fallback is not None:
            obj = self.fallback.resolve(name)
            if obj is not None:
                return RegistryEntry(name, obj, self.fallback.source, _origin(obj), {})
        raise self._unknown(name)

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def _unknown(self, name: str) -> UnknownNameError:
        candidates = self.own_names()
        if self.fallback is not None:
            candidates += self.fallback.names("*")
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        listing = {"model": "segzoo.list_models()", "encoder": "segzoo.list_encoders()"}.get(
            self.kind, f"segzoo.list_{self.kind}s()"
        )
        return UnknownNameError(f"unknown {self.kind} {name!r}.{hint} See {listing} for all names.")


# the entry-point group of each, and segzoo's own modules that register into it (imported at the first lookup, so
# that listing named models needs neither torch nor timm; segzoo.encoders adds timm's models as a fallback)
ENCODERS = Registry("encoder", "segzoo.encoders", ("segzoo.encoders",))
DECODERS = Registry("decoder", "segzoo.decoders", ("segzoo.decoders",))
MODELS = Registry("model", "segzoo.models", ("segzoo.models.named",))
CONVERTERS = Registry("converter", "segzoo.converters", ("segzoo.convert",))
LOSSES = Registry("loss", "segzoo.losses", ("segzoo.training.losses",))

_REGISTRIES = (ENCODERS, DECODERS, MODELS, CONVERTERS, LOSSES)


def register_encoder(name: str, **meta: Any) -> Callable[[Any], Any]:
    """Register an encoder class (or builder) under ``name``."""
    return ENCODERS.register(name, **meta)


def register_decoder(name: str, **meta: Any) -> Callable[[Any], Any]:
    """Register a decoder class under ``name``."""
    return DECODERS.register(name, **meta)


def register_model(name: str | Callable[..., Any] | None = None, **meta: Any) -> Callable[[Any], Any]:
    """Register a named model: a zero-argument function returning its ``ModelConfig``. The name is the function's
    unless given: ``@register_model`` / ``@register_model()`` over ``def unet_r18()`` registers ``unet_r18``."""
    if callable(name):  # used bare: @register_model
        MODELS.add(name.__name__, name, **meta)
        return name
    if name is None:
        def decorator(obj: Any) -> Any:
            MODELS.add(obj.__name__, obj, **meta)
            return obj

        return decorator
    return MODELS.register(name, **meta)


def register_converter(name: str, **meta: Any) -> Callable[[Any], Any]:
    """Register an importer: a function turning a foreign checkpoint (path, state dict or module) into a
    ``SegmentationModel`` whose outputs equal the original's."""
    return CONVERTERS.register(name, **meta)


def register_loss(name: str, **meta: Any) -> Callable[[Any], Any]:
    """Register a loss class under ``name`` (a term of a recipe's ``train.loss``, e.g. ``"0.5*ce+dice"``): it is
    built with ``ignore_index=`` and, where its signature has it, ``class_weights=``."""
    return LOSSES.register(name, **meta)


def plugin_status(probe: bool = True) -> list[PluginStatus]:
    """Status of every plugin entry point; with ``probe`` each is imported first."""
    rows: list[PluginStatus] = []
    for registry in _REGISTRIES:
        if probe:
            registry.probe_plugins()
        rows.extend(registry.plugin_status())
    if not _plugins_disabled():
        rows.extend(_scan_distributions().malformed)
    return rows


def reload_plugins() -> None:
    """Read entry points again at the next lookup (after installing a plugin at run time)."""
    for registry in _REGISTRIES:
        registry.reload_plugins()
    importlib.invalidate_caches()  # make distributions installed since the last scan visible
