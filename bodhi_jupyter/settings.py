"""Every effective setting of the bodhi configurables, where its value came from, and the few
that may change while the server runs: those whose trait is tagged ``runtime=True``, within
the trait's own bounds (``min=``/``max=``).

Precedence, highest first: database (set at run time through the API) > command line >
config file > environment > default. Run-time values are stored in the ``settings`` table,
applied to the live object at once, and applied again after config at every start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Float, TraitError, TraitType
from traitlets.config import Config, Configurable

from .errors import BodhiAPIError
if TYPE_CHECKING:  # SQLAlchemy loads when settings are first read, not with the server
    from .store.database import Database

#: settings whose default is read from an environment variable
ENV_DEFAULTS: dict[str, tuple[str, ...]] = {
    "ModelDiscovery.hf_home": ("HF_HOME",),
    "Database.url": ("JUPYTER_DATA_DIR",),
    "EngineSupervisor.log_dir": ("JUPYTER_DATA_DIR",),
}


@dataclass
class SettingView:
    key: str
    value: Any
    source: str  # "database" | "command line" | "config file" | "environment" | "default"
    mutable: bool
    help: str

    def to_json(self) -> dict:
        return {"key": self.key, "value": self.value, "source": self.source,
                "mutable": self.mutable, "help": self.help}


def runtime_mutable(trait: TraitType) -> bool:
    """May this setting change while the server runs (tagged ``runtime=True``)?"""
    return bool(trait.metadata.get("runtime"))


def _configured(config: Config | None, section: str, name: str) -> bool:
    return bool(config) and section in config and name in config[section]


def _jsonable(value: Any) -> Any:
    """Trait values as JSON: containers as themselves, anything odd as its text."""
    return json.loads(json.dumps(value, default=str))


def _mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: show nothing that could leak
        return "***"


class RuntimeSettings:
    """Reads and changes the settings of the live configurables.

    ``objects`` maps a config section (class name) to the live object configured by it;
    ``cli_config`` is what the command line set, ``config`` everything config set."""

    def __init__(self, database: Database, objects: dict[str, Configurable],
                 config: Config, cli_config: Config | None = None, log=None,
                 environ: dict[str, str] | None = None):
        self.database = database
        self.objects = {k: v for k, v in objects.items() if v is not None}
        self.config = config
        self.cli_config = cli_config or Config()
        self.log = log
        self.environ = os.environ if environ is None else environ

    # -- reading ---------------------------------------------------------------------------
    def _traits(self):
        """(key, section, name, object, trait) for every bodhi setting, sorted by key."""
        out = []
        for section, obj in self.objects.items():
            for name, trait in obj.traits(config=True).items():
                if not trait.this_class.__module__.startswith("bodhi_jupyter"):
                    continue  # Jupyter's own application traits are not ours to report
                out.append((f"{section}.{name}", section, name, obj, trait))
        return sorted(out, key=lambda t: t[0])

    def _stored(self) -> dict[str, Any]:
        from sqlalchemy import select

        from .store.tables import settings
        with self.database.read() as conn:
            return {row.key: row.value for row in conn.execute(select(settings))}

    def _source(self, key: str, section: str, name: str, stored: dict,
                trait: TraitType) -> str:
        if key in stored and runtime_mutable(trait):
            return "database"
        if _configured(self.cli_config, section, name):
            return "command line"
        if _configured(self.config, section, name):
            return "config file"
        if any(self.environ.get(var) for var in ENV_DEFAULTS.get(key, ())):
            return "environment"
        return "default"

    def list(self) -> list[SettingView]:
        stored = self._stored()
        views = []
        for key, section, name, obj, trait in self._traits():
            value = getattr(obj, name)
            if key == "Database.url":
                value = _mask_url(value)
            views.append(SettingView(key, _jsonable(value),
                                     self._source(key, section, name, stored, trait),
                                     runtime_mutable(trait), (trait.help or "").strip()))
        return views

    def get(self, key: str) -> SettingView:
        for view in self.list():
            if view.key == key:
                return view
        raise BodhiAPIError(404, f"No such setting: {key}", code="setting_not_found")

    # -- changing --------------------------------------------------------------------------
    def _mutable(self, key: str):
        """The live object, trait name and trait of a setting that may change, or a 4xx."""
        section, _, name = key.partition(".")
        obj = self.objects.get(section)
        trait = obj.traits(config=True).get(name) if obj is not None and name else None
        if trait is None:
            raise BodhiAPIError(404, f"No such setting: {key}", code="setting_not_found")
        if not runtime_mutable(trait):
            raise BodhiAPIError(400, f"The setting {key} cannot change while the server runs; "
                                "set it in config and restart", code="setting_not_mutable",
                                param="key")
        return obj, name, trait

    def validate(self, key: str, value: Any) -> Any:
        """The value as the trait would hold it (its type and bounds); 400 naming ``value``
        when it does not fit."""
        obj, name, trait = self._mutable(key)
        if isinstance(value, bool) and not isinstance(trait, Bool):
            raise BodhiAPIError(400, f"{key} must be a number, not a boolean",
                                code="invalid_value", param="value")
        if isinstance(trait, Float) and isinstance(value, int):
            value = float(value)
        try:
            value = trait.validate(obj, value)
        except TraitError as e:
            raise BodhiAPIError(400, f"Invalid value for {key}: {e}", code="invalid_value",
                                param="value") from None
        return value

    def set(self, key: str, value: Any, by: str | None = None) -> SettingView:
        value = self.validate(key, value)
        obj, name, _ = self._mutable(key)
        from sqlalchemy import select

        from .store.tables import settings as t
        with self.database.begin() as conn:
            if conn.execute(select(t.c.key).where(t.c.key == key)).first() is None:
                conn.execute(t.insert().values(key=key, value=value, updated_by=by))
            else:
                conn.execute(t.update().where(t.c.key == key)
                             .values(value=value, updated_by=by))
        setattr(obj, name, value)
        self._info("bodhi: setting %s = %r (by %s)", key, value, by)
        return self.get(key)

    def reset(self, key: str) -> SettingView:
        """Drop the run-time value: config (or the default) applies again."""
        obj, name, _ = self._mutable(key)
        from sqlalchemy import delete

        from .store.tables import settings as t
        with self.database.begin() as conn:
            conn.execute(delete(t).where(t.c.key == key))
        setattr(obj, name, obj.trait_defaults(name))
        section = key.partition(".")[0]
        if _configured(self.config, section, name):
            # traitlets' own loading of this one value (it parses command-line strings)
            obj.update_config(Config({section: {name: self.config[section][name]}}))
        self._info("bodhi: setting %s reset to %r", key, getattr(obj, name))
        return self.get(key)

    def apply_stored(self) -> None:
        """At start-up, after config: run-time values win. A value that no longer fits is
        logged and left out."""
        for key, value in self._stored().items():
            try:
                value = self.validate(key, value)
                obj, name, _ = self._mutable(key)
            except BodhiAPIError as e:
                if self.log:
                    self.log.warning("bodhi: ignoring stored setting %s: %s", key, e.message)
                continue
            setattr(obj, name, value)
            self._info("bodhi: setting %s = %r from the database", key, value)

    def _info(self, *args) -> None:
        if self.log:
            self.log.info(*args)
