#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fleetsafe contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: snapshot_info
short_description: List the fleetsafe snapshots of a host's repository
version_added: 1.0.0
description:
  - Runs C(fleetsafe snapshots --json) on the managed host and returns the
    snapshots, oldest first, with the newest full and incremental snapshot
    (evidence for FREQ-FULL, FREQ-INCR and LOC-ONSITE).
  - Read-only; it never changes the host or the repository.
author:
  - fleetsafe engineers (@fleetsafe)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - fleetsafe.backup.agent
attributes:
  check_mode:
    support: full
    details: The module is read-only and runs normally in check mode.
  diff_mode:
    support: N/A
    details: The module changes nothing.
  platform:
    platforms: posix
  action_group:
    support: full
    membership:
      - fleetsafe.backup.fleetsafe
options:
  last:
    description:
      - Return only the newest O(last) snapshots in RV(snapshots); C(0) returns all.
      - RV(count), RV(last_full) and RV(last_incremental) always consider every snapshot.
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: List snapshots
  fleetsafe.backup.snapshot_info:
  register: fleetsafe_snapshots

- name: Take a full backup only when the last one is missing
  fleetsafe.backup.backup:
    type: full
  when: fleetsafe_snapshots.last_full is none
"""

RETURN = r"""
snapshots:
  description: Snapshots, oldest first (the newest O(last) when set).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Snapshot id.
      type: str
      returned: always
    short_id:
      description: First characters of the id, unique in the repository.
      type: str
      returned: always
    type:
      description: C(full) or C(incremental).
      type: str
      returned: always
    start:
      description: Start time, ISO-8601 UTC.
      type: str
      returned: always
    end:
      description: End time, ISO-8601 UTC.
      type: str
      returned: always
    host:
      description: Host name recorded in the snapshot.
      type: str
      returned: always
    paths:
      description: Source paths.
      type: list
      elements: str
      returned: always
    status:
      description: C(success) or C(partial).
      type: str
      returned: always
    parent:
      description: Parent snapshot id of an incremental, or null.
      type: str
      returned: always
    stats:
      description: Files, bytes and other counters of the run.
      type: dict
      returned: always
  sample:
    - id: a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90
      short_id: a1b2c3d4
      type: full
      start: "2026-12-03T17:00:00Z"
      end: "2026-12-03T17:00:04Z"
      host: web1
      paths: [/etc]
      status: success
      parent: null
      stats: {files: 1203, bytes_added: 4096}
count:
  description: Number of snapshots in the repository.
  returned: always
  type: int
  sample: 14
last_full:
  description:
    - The newest full snapshot that covered the configured sources, or null when there is none.
    - Snapshots with C(policy_scope=false) (a backup of only some of the sources)
      are skipped; snapshots without the key (older agents) count.
  returned: always
  type: dict
  sample: {id: a1b2c3d4, type: full, start: "2026-12-03T17:00:00Z"}
last_incremental:
  description:
    - The newest incremental snapshot that covered the configured sources, or null when there is none.
    - Snapshots with C(policy_scope=false) are skipped, as for RV(last_full).
  returned: always
  type: dict
  sample: {id: b2c3d4e5, type: incremental, start: "2026-12-03T18:00:00Z"}
last_full_age_seconds:
  description: Seconds since the newest full snapshot started (host clock), or null (FREQ-FULL).
  returned: always
  type: float
  sample: 86400.0
last_incremental_age_seconds:
  description: Seconds since the newest incremental snapshot started (host clock), or null (FREQ-INCR).
  returned: always
  type: float
  sample: 3600.0
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetsafe.backup.plugins.module_utils._agent import (
    Agent,
    AgentError,
    common_argument_spec,
    list_snapshots,
)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(last=dict(type="int", default=0))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = list_snapshots(Agent.from_module(module), last=module.params["last"])
    except AgentError as exc:
        module.fail_json(msg=exc.msg, **exc.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
