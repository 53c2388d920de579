"""Typed configuration: ``load_config()`` returns a validated, frozen :class:`Config`."""

from issuerisk.conf.settings import Config, ConfigError, load_config, validate

__all__ = ["Config", "ConfigError", "load_config", "validate"]
