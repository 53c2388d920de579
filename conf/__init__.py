"""Typed configuration: ``load_config()`` returns a validated, frozen :class:`Config`."""

from issuerisk.conf.loader import load_config, validate
from issuerisk.conf.settings import Config, ConfigError

__all__ = ["Config", "ConfigError", "load_config", "validate"]
