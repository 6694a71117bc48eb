"""The web pages of the fleet (`shardmon dashboard`): an operator's live dashboard and a public
status page, served by aiohttp from the same Redis reads as the CLI. An edge: the core never
imports it."""

from shardmon.web.app import BindingRefused, check_binding, make_app, start
from shardmon.web.payloads import BoardSettings

__all__ = ["BindingRefused", "BoardSettings", "check_binding", "make_app", "start"]
