# Copyright (c) fleetsafe contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleetsafe.backup.fleet_report: the daily fleet report from the central store (docs in plugins/modules/fleet_report.py).

Runs only on the controller and touches no managed host: reports are made
from the store, never from memory or facts (DESIGN "Central store and reports").
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.fleetsafe.backup.plugins.plugin_utils._report import (
    ReportError,
    build_report,
    latest_fingerprint,
    merge_policy,
    write_report,
)
from ansible_collections.fleetsafe.backup.plugins.plugin_utils._report_html import (
    render_html,
)
from ansible_collections.fleetsafe.backup.plugins.plugin_utils._store import (
    Store,
    StoreError,
    parse_ts,
    resolve_controller_path,
    run_metadata,
)

ARGUMENT_SPEC: dict[str, Any] = {
    "store": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "hosts": {"type": "list", "elements": "str", "required": True},
    "policy": {"type": "dict", "default": {}},
    "relative_to": {"type": "str", "default": "inventory", "choices": ["inventory", "playbook", "cwd"]},
    "force": {"type": "bool", "default": False},
    "fail_on_red": {"type": "bool", "default": False},
    "now": {"type": "str"},
    "run_failures": {"type": "dict", "default": {}},
}


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False
    # Nothing runs on a host: no connection, no remote temp dir.
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        del tmp

        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        store_path = resolve_controller_path(args["store"], args["relative_to"], task_vars)
        dest = resolve_controller_path(args["dest"], args["relative_to"], task_vars)
        if args["now"]:
            now = parse_ts(args["now"])
            if now is None:
                raise AnsibleActionFail(f"now: not an ISO-8601 timestamp: {args['now']!r}")
        else:
            now = datetime.now(UTC)
        warnings: list[str] = []
        try:
            policy = merge_policy(args["policy"])
            store: Store | None = None
            run = run_metadata(task_vars)
            wanted = {str(h) for h in args["hosts"]}
            failures = {str(h): str(why) for h, why in args["run_failures"].items() if str(h) in wanted}
            if failures and not self._task.check_mode:
                # Recorded first, so the report below is still made from the store alone.
                with Store(store_path) as writer:
                    for host, why in failures.items():
                        writer.record_run_failure(host, why, now=now, metadata=run)
            if os.path.exists(store_path):
                store = Store(store_path, create=False)
            else:
                # No store yet is a state to report (every host "no data"), not a crash.
                warnings.append(f"store {store_path} does not exist yet; every host is reported as 'no data'")
            try:
                report = build_report(store, args["hosts"], policy, now, run=run, store_path=store_path)
            finally:
                if store is not None:
                    store.close()
            written = None
            unchanged = not args["force"] and latest_fingerprint(dest) == report["fingerprint"]
            if not unchanged and not self._task.check_mode:
                written = write_report(dest, report, render_html(report))
        except (ReportError, StoreError) as exc:
            raise AnsibleActionFail(str(exc)) from exc

        summary = report["summary"]
        result.update(
            {
                "changed": not unchanged,
                "summary": summary,
                "red_hosts": [h["name"] for h in report["hosts"] if h["status"] == "red"],
                "amber_hosts": [h["name"] for h in report["hosts"] if h["status"] == "amber"],
                "report_dir": written,
                "latest": f"{dest}/latest/index.html",
                "fingerprint": report["fingerprint"],
                "generated_at": report["generated_at"],
            }
        )
        state = "unchanged since the last report" if unchanged else ("would write" if self._task.check_mode else f"written to {written}")
        result["msg"] = (
            f"{summary['hosts']} hosts: {summary['green']} green, {summary['amber']} amber, {summary['red']} red; report {state}"
        )
        if warnings:
            result["warnings"] = warnings
        if args["fail_on_red"] and summary["red"]:
            result["failed"] = True
            result["msg"] += f" (red: {', '.join(result['red_hosts'])})"
        return result
