#!/usr/bin/python
# Copyright (c) fleetsafe contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: EXE001 - modules carry the interpreter shebang Ansible rewrites; they are not run directly

from __future__ import annotations

DOCUMENTATION = r"""
---
module: audit_collect
short_description: Collect hosts' hash-chained audit events into the controller's central store
version_added: 0.1.0
description:
  - Pulls the new events of the agent's audit log (C(/var/log/fleetsafe/audit.jsonl)) from each
    managed host into one SQLite store on the controller (AUD-LOG).
  - The controller-side half (an action plugin) reads the host's cursor (the last verified event)
    from the store and asks the host-side half for the events after it in bounded batches
    (O(max_events), O(max_bytes)), so a host never sends its whole log.
  - Every event is re-checked on the controller with the documented chain rule
    (C(hash = sha256(canonical JSON without "hash")), C(prev) = the previous event's hash), and the
    first new event must continue the chain stored for that host. On a break (edited, removed,
    reordered lines, or a log that was truncated, reset or rewritten behind the cursor) nothing after
    the break is stored, the host's chain is marked C(broken) with the sequence number and the
    expected and actual values, and the task warns (or fails, see O(on_chain_break)).
  - The agent's head file (C(<state_dir>/audit.head), the last sequence number and hash it appended)
    is read too, to tell a freshly rotated log from lost events and to detect a cut-off tail.
  - The host's log is read directly (the documented JSON-lines format), not through
    C(fleetsafe audit), because the agent's command has no batch limit; reading the file also
    works when the agent itself is broken.
  - Each collection is recorded in the store with its time and, when the play runs in AWX/AAP,
    the job variables C(awx_job_id), C(awx_job_launch_type), C(awx_job_template_name),
    C(awx_schedule_name) and C(awx_user_name).
  - See C(docs/store.md) in the collection for the schema and the cursor semantics.
author:
  - fleetsafe engineers
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: In check mode the events are fetched, verified and counted but nothing is written to the store.
  diff_mode:
    support: none
  platform:
    platforms: posix
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
options:
  store:
    description:
      - Path of the SQLite store on the controller. Created (mode C(0600), directory C(0700)) if absent.
      - A relative path is resolved against the directory chosen by O(relative_to).
    type: path
    required: true
  relative_to:
    description:
      - Base directory for a relative O(store).
      - V(inventory) is the directory of the first inventory source (the store lives next to the
        inventory, as the design asks); with no inventory file (implicit localhost) it falls back to
        the playbook directory.
      - V(playbook) is the playbook directory, V(cwd) the directory C(ansible-playbook) was started in.
    type: str
    choices: [inventory, playbook, cwd]
    default: inventory
  path:
    description:
      - Audit log on the managed host. By default the C(audit_log) key of the agent configuration
        O(config), else C(/var/log/fleetsafe/audit.jsonl).
      - The log is mode C(0640) C(root:adm); collect with C(become) or as a member of C(adm).
    type: path
  config:
    description:
      - Agent configuration on the managed host, read only for its C(audit_log) key.
    type: path
    default: /etc/fleetsafe/agent.yml
  max_events:
    description:
      - Most events one batch returns from the host (ECOSYSTEM C7, never the whole log).
    type: int
    default: 500
  max_bytes:
    description:
      - Most bytes of event JSON one batch returns (a batch always holds at least one event).
    type: int
    default: 1048576
  max_batches:
    description:
      - Most batches in one task; the rest is collected on the next run (the cursor makes that safe).
    type: int
    default: 1000
  on_chain_break:
    description:
      - What a broken chain does to the task. V(warn) keeps the play going so that the fleet report is
        still written and shows the host red; V(fail) fails the task for that host.
      - Either way the break is recorded in the store and the host's chain stays C(broken) until it is
        accepted with O(accept_chain_break).
    type: str
    choices: [warn, fail]
    default: warn
  accept_chain_break:
    description:
      - Accept this host's broken chain after investigating it. The break records are marked accepted
        with O(accept_reason), a new epoch starts and the host's current log is collected from its
        first event, which becomes the new anchor. Events of the old epoch stay in the store.
      - Does nothing when the chain is not broken.
    type: bool
    default: false
  accept_reason:
    description:
      - Why the break is accepted (ticket reference); required with O(accept_chain_break=true).
    type: str
  since:
    description:
      - Internal, set by the action plugin from the store's cursor; a value given in a task is ignored.
    type: int
    default: 0
  offset:
    description:
      - Internal, set by the action plugin to continue a batch; a value given in a task is ignored.
    type: int
    default: 0
  scan:
    description:
      - Internal, set by the action plugin for the first batch; a value given in a task is ignored.
    type: bool
    default: true
notes:
  - Many hosts (forks) write the same store; SQLite serialises the short write transactions and waits
    for the lock. Keep the store on a local filesystem (SQLite's WAL mode does not work over NFS).
seealso:
  - module: fleetsafe.backup.fleet_report
"""

EXAMPLES = r"""
- name: Collect audit events into the central store (AUD-LOG)
  fleetsafe.backup.audit_collect:
    store: "{{ fleetsafe_store_path }}"
  become: true

- name: Fail the host when its audit chain is broken
  fleetsafe.backup.audit_collect:
    store: /srv/fleetsafe/state/fleetsafe.db
    on_chain_break: fail

- name: Accept a reset log after investigation (starts a new epoch)
  fleetsafe.backup.audit_collect:
    store: /srv/fleetsafe/state/fleetsafe.db
    accept_chain_break: true
    accept_reason: "INC-1234: audit log recreated after disk replacement"
  when: inventory_hostname == 'web1'
"""

RETURN = r"""
events_added:
  description: New events verified and stored by this task (in check mode, that would be stored).
  returned: always
  type: int
  sample: 14
last_seq:
  description: The host's cursor after the task, the sequence number of its last verified event.
  returned: always
  type: int
  sample: 212
chain_ok:
  description: Whether the host's chain is intact (false also while an earlier break is not accepted).
  returned: always
  type: bool
  sample: true
chain_error:
  description: The break, with seq, reason, expected and got, when the chain is broken.
  returned: always
  type: dict
  sample: {"seq": 57, "reason": "prev does not match the previous event's hash", "expected": "9c0e…", "got": "41aa…"}
batches:
  description: Batches fetched from the host.
  returned: always
  type: int
  sample: 1
log_present:
  description: Whether the audit log exists on the host (false before the agent ran once).
  returned: always
  type: bool
  sample: true
path:
  description: The audit log read on the host.
  returned: always
  type: str
  sample: /var/log/fleetsafe/audit.jsonl
store:
  description: Absolute path of the store written on the controller.
  returned: always
  type: str
  sample: /srv/fleetsafe/inventories/prod/state/fleetsafe.db
more:
  description: True when O(max_batches) stopped the task before the end of the log.
  returned: always
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fleetsafe.backup.plugins.module_utils._audit_read import (
    AUDIT_COLLECT_INTERNAL_SPEC,
    AUDIT_COLLECT_USER_SPEC,
    audit_log_from_config,
    read_batch,
    read_head,
)


def main() -> None:
    # Host-side half: the action plugin calls this with since/offset/scan for each batch.
    module = AnsibleModule(argument_spec={**AUDIT_COLLECT_USER_SPEC, **AUDIT_COLLECT_INTERNAL_SPEC}, supports_check_mode=True)
    params = module.params
    path = params["path"] or audit_log_from_config(params["config"])
    try:
        # the head file first: see read_head for why the order matters
        head = read_head(params["config"], path) if params["scan"] else None
        result = read_batch(
            path,
            since=params["since"],
            offset=params["offset"],
            max_events=max(1, params["max_events"]),
            max_bytes=max(1, params["max_bytes"]),
            scan=params["scan"],
        )
    except PermissionError as exc:
        module.fail_json(msg=f"cannot read audit log {path}: {exc.strerror}; it is 0640 root:adm, use become", path=path)
    except OSError as exc:
        module.fail_json(msg=f"cannot read audit log {path}: {exc}", path=path)
    module.exit_json(changed=False, head=head, **result)


if __name__ == "__main__":
    main()
