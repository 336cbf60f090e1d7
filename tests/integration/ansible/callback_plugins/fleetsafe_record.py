# Test helper: record task results and the recap of one ansible-playbook run as
# JSON (ansible-core 2.19 has no json stdout callback of its own).
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: fleetsafe_record
type: aggregate
short_description: write task results and stats to $FLEETSAFE_RECORD_FILE (tests only)
description: Test helper of the fleetsafe.backup collection.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleetsafe_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.tasks = []
        self.started = time.monotonic()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.started = time.monotonic()

    def v2_playbook_on_handler_task_start(self, task):
        self.started = time.monotonic()

    def _add(self, result, status):
        res = result._result
        self.tasks.append({
            "host": result._host.get_name(),
            # the name as written, without the "role : " prefix
            "task": result._task.name or result._task.get_name(),
            "full_name": result._task.get_name(),
            "seconds": round(time.monotonic() - self.started, 3),
            "status": status,
            "changed": bool(res.get("changed")),
            "msg": str(res.get("msg", ""))[:2000],
        })

    def v2_runner_on_ok(self, result):
        self._add(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._add(result, "failed")

    def v2_runner_item_on_failed(self, result):
        # a failed loop item: its message is not in the task's final result
        self._add(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._add(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._add(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        doc = {"stats": {h: stats.summarize(h) for h in hosts}, "tasks": self.tasks}
        path = os.environ.get("FLEETSAFE_RECORD_FILE")
        if path:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
