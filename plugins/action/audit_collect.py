# Copyright (c) fleetsafe contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side half of fleetsafe.backup.audit_collect (docs in plugins/modules/audit_collect.py).

Per host: read the cursor from the central store, fetch the events after it
from the host in bounded batches (the module of the same name), verify and
store them, and record the collection.  The controller never trusts the
host's own chain verdict; it recomputes every hash (``_store.add_events``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.fleetsafe.backup.plugins.module_utils._audit_read import (
    AUDIT_COLLECT_INTERNAL_SPEC,
    AUDIT_COLLECT_USER_SPEC,
    ChainBreak,
    check_chain,
)
from ansible_collections.fleetsafe.backup.plugins.plugin_utils._store import (
    Cursor,
    Store,
    StoreError,
    log_breaks,
    resolve_controller_path,
    run_metadata,
)

MODULE = "fleetsafe.backup.audit_collect"


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        del tmp  # unused since Ansible 2.5

        _, args = self.validate_argument_spec(
            argument_spec={**AUDIT_COLLECT_USER_SPEC, **AUDIT_COLLECT_INTERNAL_SPEC},
            required_if=[("accept_chain_break", True, ("accept_reason",))],
        )
        host = task_vars.get("inventory_hostname") or self._task.get_name()
        store_path = resolve_controller_path(args["store"], args["relative_to"], task_vars)
        check_mode = bool(self._task.check_mode)
        started = datetime.now(UTC)
        try:
            with Store(store_path) as store:
                outcome = self._collect(store, host, args, task_vars, check_mode)
                if not check_mode and "module_failure" not in outcome:
                    err = outcome["chain_error"]
                    store.record_collection(
                        host,
                        started=started,
                        finished=datetime.now(UTC),
                        events_added=outcome["events_added"],
                        last_seq=outcome["last_seq"],
                        chain_ok=outcome["chain_ok"],
                        error=err.get("message") if err else None,
                        metadata=run_metadata(task_vars),
                    )
        except StoreError as exc:
            raise AnsibleActionFail(str(exc)) from exc
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)

        if "module_failure" in outcome:
            result.update(outcome["module_failure"])
            return result

        result.update({k: v for k, v in outcome.items() if k != "warnings"})
        result["store"] = store_path
        result["changed"] = outcome["events_added"] > 0
        err = outcome["chain_error"]
        if err:
            text = f"{host}: {err['message']}"
            if args["on_chain_break"] == "fail":
                result["failed"] = True
                result["msg"] = text
            else:
                result.setdefault("warnings", []).append(
                    text + " — recorded in the store; the fleet report shows the host red (AUD-LOG)."
                    " Accept it with accept_chain_break after investigation."
                )
        if "msg" not in result:
            verb = "would add" if check_mode else "added"
            result["msg"] = f"{verb} {outcome['events_added']} audit events, cursor at seq {outcome['last_seq']}"
        result.setdefault("warnings", []).extend(outcome.get("warnings", []))
        if not result["warnings"]:
            del result["warnings"]
        return result

    def _collect(self, store: Store, host: str, args: dict[str, Any], task_vars: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        warnings: list[str] = []
        cursor = store.cursor(host)
        accepted = False
        if args["accept_chain_break"]:
            row = store.host_row(host)
            if row and row["chain_status"] == "broken":
                if check_mode:
                    cursor = Cursor(cursor.epoch + 1, 0, None)
                else:
                    cursor = store.accept_break(host, args["accept_reason"]) or cursor
                accepted = True
                warnings.append(f"{host}: broken audit chain accepted ({args['accept_reason']}); a new epoch starts")

        module_args = {k: args[k] for k in ("path", "config", "max_events", "max_bytes")}
        module_args["store"] = args["store"]
        since, offset, scan = cursor.seq, 0, True
        # check mode walks the chain in memory, since nothing is written
        sim_seq: int | None = None if cursor.hash is None else cursor.seq
        sim_hash = cursor.hash
        added = batches = 0
        more = False
        brk: ChainBreak | None = None
        path = args["path"]
        log_present = False
        while batches < max(1, args["max_batches"]):
            res = self._execute_module(
                module_name=MODULE,
                module_args={**module_args, "since": since, "offset": offset, "scan": scan},
                task_vars=task_vars,
            )
            batches += 1
            if res.get("failed") or res.get("unreachable"):
                return {"module_failure": res}
            path = res.get("path", path)
            if scan:
                log_present = bool(res.get("log_present"))
                if not log_present and cursor.seq == 0:
                    warnings.append(f"{host}: no audit log at {path} yet (the agent has not run)")
                # warn once: only about torn lines among the events this run collects
                skipped = [i for i in res.get("skipped_lines") or [] if i.get("after_seq") is None or i["after_seq"] >= since]
                if skipped:
                    lines = ", ".join(str(item.get("line")) for item in skipped[:5])
                    warnings.append(
                        f"{host}: {len(skipped)} line(s) of {path} are not audit events (torn writes?), skipped: line {lines};"
                        " the chain was verified across them"
                    )
                found, go_on = log_breaks(cursor, res)
                if found is not None:
                    brk = found
                    if not check_mode:
                        store.record_break(host, found)
                    if not go_on:
                        break
            events = res.get("events") or []
            if events:
                if check_mode:
                    chk = check_chain(events, sim_seq, sim_hash)
                    added += chk["good"]
                    sim_seq, sim_hash = chk["last_seq"], chk["last_hash"]
                    new_break = chk["break"]
                else:
                    stored = store.add_events(host, events)
                    added += stored.added
                    since = stored.last_seq
                    new_break = stored.error
                if new_break is not None:
                    brk = brk or new_break
                    break
                if check_mode:
                    since = sim_seq or since
            more = bool(res.get("more"))
            if not more:
                break
            offset, scan = int(res.get("next_offset") or 0), False

        last_seq = sim_seq if check_mode and sim_seq is not None else store.cursor(host).seq
        error = brk.as_dict() if brk else None
        if error:
            error["message"] = brk.message()  # type: ignore[union-attr]
        row = store.host_row(host)
        if error is None and row and row["chain_status"] == "broken" and not (check_mode and accepted):
            # Tamper evidence is sticky: an earlier, unaccepted break still stands.
            open_breaks = [b for b in store.breaks(host) if not b["accepted_at"]]
            first = open_breaks[-1] if open_breaks else {}
            error = {
                "seq": first.get("seq"),
                "reason": first.get("reason", "chain broken"),
                "expected": first.get("expected"),
                "got": first.get("got"),
                "message": f"{row['chain_error']} (detected {row['chain_broken_at']}, not yet accepted)",
            }
        return {
            "events_added": added,
            "last_seq": last_seq,
            "chain_ok": error is None,
            "chain_error": error,
            "batches": batches,
            "log_present": log_present,
            "path": path,
            "more": more and brk is None,
            "warnings": warnings,
        }
