# Test-only callback: records a playbook run as JSON for the fleet tests' assertions.
# ansible-core 2.19 has no json stdout callback (it lives in ansible.posix, which this
# project does not install), and parsing the human recap is brittle. Enabled with
# ANSIBLE_CALLBACKS_ENABLED=fleet_record and ANSIBLE_CALLBACK_PLUGINS=<this dir>;
# writes to $FLEET_RECORD_FILE. The normal stdout callback keeps printing the run.
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: fleet_record
type: aggregate
short_description: write per-host stats, changed tasks, failures and set_stats to a JSON file
description: Test helper of the fleetsafe fleet tests; not part of the collection.
requirements: [FLEET_RECORD_FILE in the environment]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleet_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._tasks: list[dict] = []

    def _record(self, result, status: str) -> None:
        r = result._result
        entry = {
            "host": result._host.get_name(),
            "task": result._task.get_name(),
            "action": result._task.action,
            "status": status,
            "changed": bool(r.get("changed")),
            "msg": str(r.get("msg", ""))[:2000],
        }
        if r.get("_ansible_no_log"):
            entry["msg"] = "(no_log)"
        self._tasks.append(entry)

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record(result, "unreachable")

    def v2_runner_on_skipped(self, result, **kwargs):
        pass

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        doc = {
            "stats": {h: stats.summarize(h) for h in hosts},
            "custom_stats": {h: stats.custom[h] for h in stats.custom if h != "_run"},
            "global_custom_stats": stats.custom.get("_run", {}),
            "tasks": self._tasks,
        }
        path = os.environ.get("FLEET_RECORD_FILE")
        if path:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, default=str)
