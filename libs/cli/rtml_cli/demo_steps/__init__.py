"""The steps of ``rtml demo``, one module each, sharing a :class:`DemoContext`."""

from rtml_cli.demo_steps.context import DemoContext, DemoError, DemoSettings, Section, Step

__all__ = ["DemoContext", "DemoError", "DemoSettings", "Section", "Step"]
