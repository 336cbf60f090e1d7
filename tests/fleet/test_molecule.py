"""Molecule scenarios (extensions/molecule/) run from pytest, so that ``make test``
shows them in its summary (ECOSYSTEM T5: plain pytest + ``molecule test``, no
pytest-ansible).

The scenarios start as soon as the first fleet test needs the controller
(``molecule_runs``), in the background, so that they overlap with the fleet test;
each test here then waits for its scenario. ``FLEET_MOLECULE_PARALLEL=0`` runs
them one after another instead.
"""

from __future__ import annotations

import pytest

SCENARIOS = ("default", "timer")


@pytest.mark.fleet
@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario, molecule_runs):
    run = molecule_runs.result(scenario)
    assert run.rc == 0, (f"molecule test -s {scenario}: rc={run.rc} after {run.seconds:.0f} s; "
                         f"log {run.log}\n{run.tail()}")
    print(f"molecule {scenario}: {run.seconds:.0f} s")
