"""The TCP proxy now lives in agent/devtools/proxy.py (shared with the fault campaign)."""

from agent.devtools.proxy import Proxy

__all__ = ["Proxy"]
