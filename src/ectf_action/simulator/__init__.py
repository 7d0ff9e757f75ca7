"""A local, faithful stand-in for the eCTF testing server.

`Simulator` serves it in-process (port 0 picks a free port); `run_simulate` is what
`ectf-action simulate` runs. The scenario (`default.yaml`, or a file of your own) says
which teams exist, how flows run and which faults to inject; docs/simulator.md is the
reference.
"""

from .engine import ApiFailure, Engine, FlowSnapshot, JobSnapshot
from .faults import FaultInjector, FaultRule
from .scenario import (
    ArtifactSpec,
    FlowSpec,
    JobSpec,
    OutcomeRule,
    Scenario,
    ScenarioError,
    TeamSpec,
    default_scenario,
    load_scenario,
)
from .server import RequestRecord, Simulator, run_simulate

__all__ = [
    "ApiFailure",
    "ArtifactSpec",
    "Engine",
    "FaultInjector",
    "FaultRule",
    "FlowSnapshot",
    "FlowSpec",
    "JobSnapshot",
    "JobSpec",
    "OutcomeRule",
    "RequestRecord",
    "Scenario",
    "ScenarioError",
    "Simulator",
    "TeamSpec",
    "default_scenario",
    "load_scenario",
    "run_simulate",
]
