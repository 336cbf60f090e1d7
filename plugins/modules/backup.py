#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fleetsafe contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup
short_description: Take a full or incremental fleetsafe backup on a host
version_added: 1.0.0
description:
  - Runs C(fleetsafe backup --type full|incremental --json) on the managed host
    and returns the agent's result document (FREQ-FULL, FREQ-INCR, AUD-LOG).
  - Both types make a complete, independently restorable snapshot; C(incremental)
    reuses the parent snapshot's content for files whose metadata is unchanged,
    C(full) re-reads and re-hashes everything.
  - A partial run (some paths unreadable or a secondary target down, agent exit 3)
    is not a failure; the skipped paths and targets are returned as warnings and
    C(status=partial).
  - When another run holds the repository lock (agent exit 4) the task fails,
    unless O(fail_on_locked=false).
author:
  - fleetsafe engineers (@fleetsafe)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - fleetsafe.backup.agent
attributes:
  check_mode:
    support: full
    details: In check mode no snapshot is taken and the module reports C(changed=true).
  diff_mode:
    support: none
  platform:
    platforms: posix
  action_group:
    support: full
    membership:
      - fleetsafe.backup.fleetsafe
options:
  type:
    description:
      - C(full) re-reads every file (FREQ-FULL); C(incremental) trusts the parent snapshot's metadata (FREQ-INCR).
    type: str
    choices: [full, incremental]
    default: incremental
  sources:
    description:
      - Absolute paths to back up instead of the C(sources) of the agent configuration.
    type: list
    elements: path
  fail_on_locked:
    description:
      - Fail when another run (for example a timer) holds the repository lock.
      - With C(false) the task succeeds with C(changed=false), C(status=locked) and a warning.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Weekly full backup (FREQ-FULL)
  fleetsafe.backup.backup:
    type: full

- name: Incremental backup of two trees, tolerating a running timer
  fleetsafe.backup.backup:
    type: incremental
    sources:
      - /etc
      - /srv/data
    fail_on_locked: false
  register: fleetsafe_run

- name: Show the snapshot id
  ansible.builtin.debug:
    msg: "{{ fleetsafe_run.snapshot_id }} ({{ fleetsafe_run.status }})"
"""

RETURN = r"""
status:
  description: C(success), C(partial), C(locked) (only with O(fail_on_locked=false)) or C(check_mode).
  returned: always
  type: str
  sample: success
snapshot_id:
  description: Id of the new snapshot; null in check mode and when locked.
  returned: always
  type: str
  sample: a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90
type:
  description: The backup type that ran.
  returned: always
  type: str
  sample: incremental
parent:
  description: Snapshot whose metadata an incremental trusted, if any.
  returned: success
  type: str
  sample: 9c0d1e2f
host:
  description: Host name recorded in the snapshot.
  returned: success
  type: str
  sample: web1
repository:
  description: Repository id.
  returned: success
  type: str
  sample: 3f9a0c
target:
  description: Name of the primary target written to.
  returned: success
  type: str
  sample: onsite
start:
  description: Start time, ISO-8601 UTC.
  returned: success
  type: str
  sample: "2026-12-03T17:00:00Z"
end:
  description: End time, ISO-8601 UTC.
  returned: success
  type: str
  sample: "2026-12-03T17:00:04Z"
duration_seconds:
  description: Wall time of the run.
  returned: success
  type: float
  sample: 4.1
files:
  description: Files in the snapshot.
  returned: success
  type: int
  sample: 1203
dirs:
  description: Directories in the snapshot.
  returned: success
  type: int
  sample: 211
bytes_read:
  description: Bytes read from the sources.
  returned: success
  type: int
  sample: 10485760
bytes_added:
  description: New (not deduplicated) plaintext bytes.
  returned: success
  type: int
  sample: 4096
bytes_stored:
  description: Bytes written to the target after compression and encryption.
  returned: success
  type: int
  sample: 2100
data_sets:
  description: The source paths backed up.
  returned: always
  type: list
  elements: str
  sample: [/etc]
errors:
  description: Paths or targets skipped, at most 50 (see RV(errors_total)).
  returned: success
  type: list
  elements: dict
  sample: [{path: /etc/shadow-, error: Permission denied}]
errors_total:
  description: Number of errors when more than 50 were reported.
  returned: when more than 50 errors
  type: int
  sample: 312
exit_code:
  description: The agent's exit code (0 success, 3 partial).
  returned: success
  type: int
  sample: 0
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetsafe.backup.plugins.module_utils._agent import (
    Agent,
    AgentError,
    common_argument_spec,
    run_backup,
)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        type=dict(type="str", choices=["full", "incremental"], default="incremental"),
        sources=dict(type="list", elements="path"),
        fail_on_locked=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = run_backup(Agent.from_module(module), module.params["type"],
                            sources=module.params["sources"], check_mode=module.check_mode,
                            fail_on_locked=module.params["fail_on_locked"])
    except AgentError as exc:
        module.fail_json(msg=exc.msg, **exc.result)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
