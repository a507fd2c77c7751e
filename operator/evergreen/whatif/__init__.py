"""What-if over history: one replay priced under several retraining policies.

``evergreen backtest --compare`` replays the history once (:func:`evergreen.backtest.replay`),
then asks of each policy (this monitor's, fixed schedules, a naive drift alarm) which runs it
would have started under the monitor's guardrails, what they would have cost, and how long a
KPI would have stayed outside its bounds under a stated assumption of what a retrain fixes.
"""

from evergreen.whatif.comparison import Comparison, compare, document, jsonl, render, rows
from evergreen.whatif.policies import DEFAULT_POLICIES, Policy, PolicyKind, parse_policies
from evergreen.whatif.restoration import SimulatedRun
from evergreen.whatif.simulate import Assumptions, MissingRetraining, PolicyRuns, assumptions_for, simulate

__all__ = [
    "DEFAULT_POLICIES",
    "Assumptions",
    "Comparison",
    "MissingRetraining",
    "Policy",
    "PolicyKind",
    "PolicyRuns",
    "SimulatedRun",
    "assumptions_for",
    "compare",
    "document",
    "jsonl",
    "parse_policies",
    "render",
    "rows",
    "simulate",
]
