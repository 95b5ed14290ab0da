"""Scenario files: a TOML schema, ``--set`` overrides, and the Builder.

::

    from simkit.scenario import build, load_scenario

    scenario = load_scenario("scenarios/quickstart.toml", ["clients.count=20"])
    built = build(scenario)            # ScenarioSetup + Simulation
    built.setup.client_names[:3]       # ['c000', 'c001', 'c002']

Errors are :class:`ScenarioError` with one line naming the file and the key
(``scenarios/x.toml: clients.count: must be > 0, got -3``). See
docs/scenarios.md for every key, and :func:`scenario_json_schema` for the
JSON Schema editors complete files from.
"""

from simkit.scenario._build import Built, build, client_names
from simkit.scenario._load import (
    Scenario,
    ScenarioError,
    apply_overrides,
    load_scenario,
    parse_override,
)
from simkit.scenario._schema import ScenarioConfig, scenario_json_schema

__all__ = [
    "Built",
    "Scenario",
    "ScenarioConfig",
    "ScenarioError",
    "apply_overrides",
    "build",
    "client_names",
    "load_scenario",
    "parse_override",
    "scenario_json_schema",
]
